/*-------------------------------------------------------------------------
 *
 * template_store.h
 *		A validated task template's handlers resolved, and its catalog rows
 *		written.
 *
 * IDENTIFICATION
 *		src/template_store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_TEMPLATE_STORE_H
#define TASKER_TEMPLATE_STORE_H

#include "postgres.h"

#include "template_check.h"

extern void template_resolve_handlers(TaskTemplate *t);
extern int32 template_store(TaskTemplate *t, bool replace);

#endif							/* TASKER_TEMPLATE_STORE_H */
