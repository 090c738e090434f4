/*-------------------------------------------------------------------------
 *
 * step.h
 *		The step lifecycle, shared by every handler kind: readiness, the
 *		claim, attempts, outcomes, leases and task finalization.
 *
 * IDENTIFICATION
 *		src/step.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_STEP_H
#define TASKER_STEP_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "handler.h"
#include "state.h"

/*
 * Readiness, defined once: a step (aliased s) that may be claimed once
 * its next_attempt_at has passed.  It is the predicate of the partial
 * index tasker_workflow_steps_ready_idx (install script), so every query
 * that includes it can use that index; test/tap/060_ready_index.pl checks
 * that the claim does.  The claim, the start of tasks, the settling of
 * orphans, the next wake-up and task finalization all include it.
 */
#define TASKER_READY_STEP_SQL \
	"s.current_state IN ('pending', 'error') AND s.unfinished_parents = 0" \
	" AND s.next_attempt_at IS NOT NULL"

/*
 * The ready index orders ready steps for the claim (by claim_key, their
 * aged priority: priority.c).  A query that wants the next due time adds
 * this clause, always true of a ready step, to read the partial index
 * tasker_workflow_steps_due_idx in next_attempt_at order; the claim never
 * states it, so it can never read that index and sort.
 */
#define TASKER_DUE_INDEX_SQL "s.claim_key IS NOT NULL"

/*
 * Admission under a concurrency key (issue 11, concurrency.c), defined
 * once: a task (aliased t) may have steps claimed when it has no key, is
 * already in progress, or fewer than its limit of the tasks with its key
 * are in progress or pending ahead of it.  Pending tasks ahead keep their
 * place, so tasks of one key start in creation order.  The claim and the
 * start of tasks state it; the partial index tasker_tasks_concurrency_idx
 * serves the count.
 */
#define TASKER_ADMITTED_TASK_SQL \
	"(t.concurrency_key IS NULL OR t.current_state <> 'pending'" \
	" OR (SELECT count(*) FROM (SELECT 1 FROM @extschema@.tasker_tasks o" \
	"      WHERE o.concurrency_key = t.concurrency_key" \
	"        AND o.current_state IN ('pending', 'in_progress')" \
	"        AND (o.current_state = 'in_progress' OR o.task_id < t.task_id)" \
	"      LIMIT t.concurrency_limit) o) < t.concurrency_limit)"

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
	const char *step_type;		/* map, decision, wait, subtask; NULL: plain */
	int64		map_parent_id;	/* a map instance's map step, or 0 */
	const char *rate_key;		/* the step's rate limit key, or NULL */
	double		rate_per_second;
	int			rate_burst;
	bool		rate_returning; /* sent away by its rate limit before */
	int32		namespace_id;	/* its task's namespace */
	StepCall	call;
} ClaimedStep;

extern int	tasker_claim_ready_steps(const char *kind, int64 task_id, int limit,
									 Oid run_as, const char *queue,
									 ClaimedStep **out);
extern uint64 tasker_claims_deferred(void);
extern bool tasker_read_step(int64 step_id, ClaimedStep *out, char **kind);

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

extern void tasker_finalize_task(int64 task_id);
extern void tasker_finalize_tasks(int64 *ids, int n);
extern void tasker_lock_tasks(int64 *ids, int n);
extern int	tasker_start_ready_tasks(int64 task_id, int limit);
extern long tasker_ms_until_next_step(TimestampTz claimed_at);
extern void tasker_start_attempts(ClaimedStep *steps, int n, int lease_seconds);
extern bool tasker_accept_results(ClaimedStep *c, StepOutcome *o);
extern void tasker_record_successes(ClaimedStep *const *steps,
									StepOutcome *const *outcomes, int n);
extern void tasker_record_success(ClaimedStep *c, StepOutcome *o);
extern void tasker_record_failure(ClaimedStep *c, StepOutcome *o);
extern void tasker_record_failure_reason(ClaimedStep *c, StepOutcome *o,
										 const char *reason);
extern void tasker_record_permanent_failure(ClaimedStep *c, const char *sqlstate,
											char *message, char *hint,
											const char *reason);
extern char *tasker_failure_metadata(const char *reason, const StepOutcome *o,
									 int attempt, bool final);

extern void tasker_step_state(int64 step_id, TaskerState *step, TaskerState *task);
extern bool tasker_step_still_ours(ClaimedStep *c);
extern int	tasker_claim_expired_leases(const char *kind, int limit, ClaimedStep **out);
extern void tasker_quarantine_step(ClaimedStep *c, ErrorData *edata);
extern void tasker_stop_retries(int64 task_id);
extern long tasker_ms_until_next_queue_step(const char *queue);
extern TimestampTz tasker_extend_step_lease(int64 step_id, int seconds);
extern void tasker_release_attempt(int64 step_id);
extern int	tasker_reclaim_expired(const char *kind, int limit, const char *message,
								   const char *detail);
extern void tasker_restart_step(int64 step_id, const char *metadata_json);
extern int64 *tasker_pause_tasks(int64 *ids, int n, const char *by, const char *reason,
								 int *npaused);
extern int64 *tasker_resume_tasks(int64 *ids, int n, const char *by, int *nresumed);
extern bool tasker_resolve_step_by_hand(int64 step_id, Jsonb *results,
										const char *metadata_json);

#endif							/* TASKER_STEP_H */
