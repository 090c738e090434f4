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

extern int	tasker_claim_ready_steps(const char *kind, int64 task_id, int limit,
									 Oid run_as, ClaimedStep **out);
extern bool tasker_read_step(int64 step_id, ClaimedStep *out, char **kind);
extern int	tasker_run_ready_steps(int64 task_id, int limit, Oid run_as);
extern void tasker_finalize_task(int64 task_id);
extern void tasker_finalize_tasks(int64 *ids, int n);
extern int	tasker_start_ready_tasks(int64 task_id, int limit);
extern long tasker_ms_until_next_step(void);
extern void tasker_record_success(ClaimedStep *c, StepOutcome *o);
extern void tasker_record_failure(ClaimedStep *c, StepOutcome *o);
extern char *tasker_failure_metadata(const char *reason, const StepOutcome *o,
									 int attempt, bool final);

#endif							/* TASKER_SCHEDULER_H */
