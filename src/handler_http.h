/*-------------------------------------------------------------------------
 *
 * handler_http.h
 *		HTTP steps: asynchronous requests driven from the executor loop.
 *
 * IDENTIFICATION
 *		src/handler_http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HANDLER_HTTP_H
#define TASKER_HANDLER_HTTP_H

#include "postgres.h"

extern void tasker_http_register(void);
extern int	tasker_http_run(bool claim_new);
extern void tasker_http_wait(long timeout_ms);
extern void tasker_http_shutdown(void);
extern int	tasker_http_stats(const char **names, uint64 *counts, int max);

#endif							/* TASKER_HANDLER_HTTP_H */
