/*-------------------------------------------------------------------------
 *
 * state.h
 *		Task and step states and the one function that changes them.
 *
 * IDENTIFICATION
 *		src/state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_STATE_H
#define TASKER_STATE_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "shmem.h"

typedef enum TaskerState
{
	TASKER_PENDING = 0,			/* next states: task: in_progress, cancelled,
								 * error; step: in_progress, error, cancelled,
								 * resolved_manually */
	TASKER_IN_PROGRESS,			/* next states: task: complete, error,
								 * cancelled, pending; step: complete, error,
								 * cancelled, pending (released) */
	TASKER_COMPLETE,			/* next states: none (final) */
	TASKER_ERROR,				/* next states: pending, resolved_manually;
								 * task: cancelled */
	TASKER_CANCELLED,			/* next states: task: none; step:
								 * resolved_manually */
	TASKER_RESOLVED_MANUALLY,	/* next states: task: cancelled; step: none */
	TASKER_SKIPPED				/* steps only (a decision's branch not taken,
								 * issue 10); next states: none (final) */
} TaskerState;

#define TASKER_NUM_STATES (TASKER_SKIPPED + 1)

/*
 * The step states that count as finished for the steps after them and
 * for their task: a step runs once every parent is one of these (and at
 * least one is not skipped), and a task completes once every step is.
 */
/*
 * The next_attempt_at of child step c once n more of its parents have
 * finished: a step whose last parent finishes and that has a delay
 * (delay_seconds) becomes claimable that many seconds from now; any
 * other keeps its time.  The wake-up is the ready index's, like a retry's.
 */
#define TASKER_RELEASE_DELAY_SQL(c, n) \
	"CASE WHEN " c ".unfinished_parents - " n " = 0 AND " c ".delay_seconds > 0" \
	" THEN clock_timestamp() + " c ".delay_seconds * interval '1 second'" \
	" ELSE " c ".next_attempt_at END"

#define TASKER_FINISHED_STATES_SQL "('complete', 'resolved_manually', 'skipped')"

typedef enum TaskerEntity
{
	TASKER_ENTITY_TASK,
	TASKER_ENTITY_STEP
} TaskerEntity;

extern const char *tasker_state_name(TaskerState state);
extern TaskerState tasker_state_from_name(const char *name);
extern void tasker_report_missing(TaskerEntity entity, int64 id) pg_attribute_noreturn();
extern bool tasker_transition_allowed(TaskerEntity entity, TaskerState from,
									  TaskerState to);
extern bool tasker_transition(TaskerEntity entity, int64 id, TaskerState to,
							  const char *metadata_json);
extern bool tasker_fail_attempt(int64 step_id, TaskerAttemptOutcome outcome,
								const char *metadata_json);

/* One step of a batch moved by tasker_start_steps or tasker_complete_steps. */
typedef struct StepMove
{
	int64		step_id;
	int64		task_id;
	bool		from_error;		/* start: the step is in error (a retry) */
	Jsonb	   *results;		/* complete: the results to store */
	int			lease_seconds;	/* start: > 0 for a lease that long */
} StepMove;

/*
 * The sort_key tasker_start_steps gives the transition to in_progress of
 * ready step s (one in error goes through pending first): 10 above its
 * most recent transition's, 20 from error.  A step attempt's span id is
 * derived from it (trace.c), so a claim can name the span of the attempt
 * it is about to start.
 */
#define TASKER_START_SORT_KEY_SQL \
	"(COALESCE((SELECT x.sort_key FROM @extschema@.tasker_workflow_step_transitions x" \
	"   WHERE x.workflow_step_id = s.workflow_step_id AND x.most_recent), 0)" \
	" + CASE WHEN s.current_state = 'error' THEN 20 ELSE 10 END)"

extern void tasker_start_steps(const StepMove *moves, int n);
extern void tasker_complete_steps(const StepMove *moves, int n);

#endif							/* TASKER_STATE_H */
