/*-------------------------------------------------------------------------
 *
 * handler.c
 *		The handler kinds tasker runs (see handler.h).
 *
 * Each kind is one TaskerHandlerKind in its own file, registered by
 * _PG_init (tasker.c) in the order the executor runs them; the executor,
 * the claim and the lifecycle need no other change to run a new kind.
 * The list is filled at load, before any tasker function runs, and never
 * changes after.
 *
 * The list is here, below the lifecycle (step.c), which reads the kinds'
 * names, and below the kinds, which call the lifecycle: this file refers
 * to no kind, so no module depends on itself through it.
 *
 * IDENTIFICATION
 *		src/handler.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "handler.h"

/* Room for this many kinds. */
#define TASKER_MAX_HANDLER_KINDS 8

/* Every kind, NULL-terminated, in the order the executor runs them. */
const TaskerHandlerKind *tasker_handler_kinds[TASKER_MAX_HANDLER_KINDS + 1];

/*
 * tasker_register_handler_kind: add a kind to the list (from _PG_init).
 * Registering a kind twice, as a second load of the library would, keeps
 * one entry.
 */
void
tasker_register_handler_kind(const TaskerHandlerKind *kind)
{
	int			i;

	for (i = 0; tasker_handler_kinds[i] != NULL; i++)
		if (tasker_handler_kinds[i] == kind)
			return;
	if (i >= TASKER_MAX_HANDLER_KINDS)
		elog(ERROR, "too many tasker handler kinds");
	tasker_handler_kinds[i] = kind;
}

/*
 * tasker_run_in_transaction_kinds: claim, run and record up to limit
 * ready steps of each in-transaction kind (sql, then flow), in the
 * caller's transaction (of task_id only, when it is not 0; of templates
 * run_as may use, when it is valid).  Returns the number claimed.
 */
int
tasker_run_in_transaction_kinds(int64 task_id, int limit, Oid run_as)
{
	int			n = 0;
	int			i;

	for (i = 0; tasker_handler_kinds[i] != NULL; i++)
		if (tasker_handler_kinds[i]->run_ready != NULL)
			n += tasker_handler_kinds[i]->run_ready(task_id, limit, run_as);
	return n;
}
