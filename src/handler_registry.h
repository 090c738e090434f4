/*-------------------------------------------------------------------------
 *
 * handler_registry.h
 *		The handler registry: step handler classes mapped to SQL functions.
 *
 * IDENTIFICATION
 *		src/handler_registry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HANDLER_REGISTRY_H
#define TASKER_HANDLER_REGISTRY_H

#include "postgres.h"

/* How a handler class resolved. */
typedef enum HandlerLookup
{
	HANDLER_FOUND,
	HANDLER_NOT_FOUND,			/* neither registered nor a function */
	HANDLER_BAD_SIGNATURE,		/* a function of that name, wrong type */
	HANDLER_DROPPED				/* registered, but the function is gone */
} HandlerLookup;

extern HandlerLookup tasker_resolve_handler(const char *handler_class,
											Oid *fn, bool *registered,
											Oid *owner);
extern void tasker_register_handler(const char *handler_class, Oid fn);
extern char *tasker_handler_queue(const char *handler_class);
extern void tasker_register_handler_queue(const char *handler_class, const char *queue);

#endif							/* TASKER_HANDLER_REGISTRY_H */
