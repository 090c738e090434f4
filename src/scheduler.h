/*-------------------------------------------------------------------------
 *
 * scheduler.h
 *		Claiming and running ready steps; settling tasks.
 *
 * IDENTIFICATION
 *		src/scheduler.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SCHEDULER_H
#define TASKER_SCHEDULER_H

#include "postgres.h"

#include "handler.h"

/* A claimed step, copied out of a claim query's result. */
typedef struct ClaimedStep
{
	int64		step_id;
	int64		task_id;
	bool		from_error;		/* state error: goes through pending */
	bool		retryable;
	int			retry_limit;
	int			attempts;		/* before this attempt */
	bool		skip;			/* quarantined at claim time: not run */
	StepCall	call;
} ClaimedStep;

/*
 * SQL shared by the claims of SQL steps (scheduler.c) and HTTP steps
 * (handler_http.c).  TASKER_READY_STEP_SQL is the predicate of the partial
 * ready-steps index over a step aliased s; TASKER_ENVELOPE_SQL builds the
 * step envelope handlers receive, and TASKER_CLAIMED_DETAILS_SQL is the
 * FROM clause it needs, over the step ids of a CTE named claimed.
 */
#define TASKER_READY_STEP_SQL \
	"s.current_state IN ('pending', 'error') AND s.unfinished_parents = 0" \
	" AND s.next_attempt_at IS NOT NULL"

/*
 * The opening of a lateral subquery that locks the task row of step s;
 * the caller adds conditions and the locking clause (FOR NO KEY UPDATE OF
 * t SKIP LOCKED) and closes it.
 */
#define TASKER_LOCK_TASK_SQL \
	"SELECT t.task_id FROM @extschema@.tasker_tasks t" \
	" WHERE t.task_id = s.task_id"

/*
 * A control announces that it waits for a task by taking an exclusive
 * transaction advisory lock on (TASKER_TASK_LOCK_CLASS, task key) before
 * it locks the task row; a claim takes the same lock shared, without
 * waiting, and skips the task when a control holds it.  So a control
 * waits for the batch that holds the task and is served next, instead of
 * losing the row to the workers' next claim over and over.
 */
#define TASKER_TASK_LOCK_CLASS 1952539499	/* 'task' */
#define TASKER_TASK_LOCK_KEY(task_id) ((int32) ((task_id) & 0x7FFFFFFF))
#define TASKER_CLAIM_INTENT_SQL \
	" AND pg_catalog.pg_try_advisory_xact_lock_shared(1952539499," \
	"       (t.task_id & 2147483647)::integer)"

#define TASKER_ENVELOPE_SQL \
	"jsonb_build_object('task_id', s.task_id, 'step_id', s.workflow_step_id," \
	"  'step_name', n.name, 'attempt', s.attempts + 1, 'namespace', ns.name," \
	"  'task_name', nt.name, 'version', nt.version, 'context', t.context," \
	"  'inputs', COALESCE(s.inputs, t.context)," \
	"  'handler_config', l.handler_config," \
	"  'dependencies', COALESCE((SELECT jsonb_object_agg(pn.name, p.results)" \
	"     FROM @extschema@.tasker_workflow_step_edges e" \
	"     JOIN @extschema@.tasker_workflow_steps p ON p.workflow_step_id = e.from_step_id" \
	"     JOIN @extschema@.tasker_named_steps pn ON pn.named_step_id = p.named_step_id" \
	"    WHERE e.to_step_id = s.workflow_step_id), '{}'))"

/* The OFFSET 0 subqueries keep each lookup a primary-key probe per step. */
#define TASKER_CLAIMED_DETAILS_SQL \
	" FROM @extschema@.tasker_workflow_steps s" \
	" CROSS JOIN LATERAL (SELECT * FROM @extschema@.tasker_tasks t" \
	"                      WHERE t.task_id = s.task_id OFFSET 0) t" \
	" CROSS JOIN LATERAL (SELECT * FROM @extschema@.tasker_named_tasks_named_steps l" \
	"                      WHERE l.named_task_id = t.named_task_id" \
	"                        AND l.named_step_id = s.named_step_id OFFSET 0) l" \
	" JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id" \
	" JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	" JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id" \
	" WHERE s.workflow_step_id = ANY (ARRAY(SELECT workflow_step_id FROM claimed))" \
	" ORDER BY s.next_attempt_at, s.task_id"

extern int	tasker_run_ready_steps(int64 task_id, int limit, Oid run_as);
extern void tasker_finalize_task(int64 task_id);
extern void tasker_finalize_tasks(int64 *ids, int n);
extern void tasker_lock_tasks(int64 *ids, int n);
extern int	tasker_start_ready_tasks(int64 task_id, int limit);
extern long tasker_ms_until_next_step(void);
extern void tasker_record_success(ClaimedStep *c, StepOutcome *o);
extern void tasker_record_failure(ClaimedStep *c, StepOutcome *o);

#endif							/* TASKER_SCHEDULER_H */
