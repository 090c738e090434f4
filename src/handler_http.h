/*-------------------------------------------------------------------------
 *
 * handler_http.h
 *		HTTP steps: asynchronous requests driven from the executor loop,
 *		and the preview of a request.
 *
 * The files of the HTTP kind (handler_http.c and the http_*.c it is split
 * into, see http_internal.h) are the only ones that include curl; the
 * rest of tasker reaches them through this header, http_limits.h (shared
 * state and counters) and http_request.h (the rules of an api
 * handler_config).
 *
 * IDENTIFICATION
 *		src/handler_http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HANDLER_HTTP_H
#define TASKER_HANDLER_HTTP_H

#include "postgres.h"

#include "utils/jsonb.h"

/* handler_http.c: the executor's turn, wait and stop */
extern int	tasker_http_run(bool claim_new);
extern void tasker_http_shutdown(void);

/* http_preview.c: what a step would send now */
extern Jsonb *tasker_http_preview(int64 step_id);

#endif							/* TASKER_HANDLER_HTTP_H */
