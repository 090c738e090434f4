/*-------------------------------------------------------------------------
 *
 * handler.c
 *		The handler kinds tasker runs (see handler.h).
 *
 * Adding a kind means one TaskerHandlerKind in its own file and one entry
 * here; the executor, the claim and the lifecycle need no other change.
 *
 * IDENTIFICATION
 *		src/handler.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "handler.h"

/* Every kind, NULL-terminated, in the order the executor runs them. */
const TaskerHandlerKind *const tasker_handler_kinds[] = {
	&tasker_sql_kind,
	&tasker_http_kind,
	&tasker_worker_kind,
	NULL
};
