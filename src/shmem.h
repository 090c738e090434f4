/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		The one home of tasker's shared memory: the worker slots and their
 *		latches, the counters, and the request/startup pair that reserves
 *		and attaches every part.
 *
 * IDENTIFICATION
 *		src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SHMEM_H
#define TASKER_SHMEM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"

/* The most executors tasker.max_workers can ask for. */
#define TASKER_MAX_SLOTS 64

typedef enum TaskerWorkerState
{
	TASKER_WORKER_STOPPED = 0,
	TASKER_WORKER_STARTING,
	TASKER_WORKER_WAITING,		/* for the extension to be created */
	TASKER_WORKER_IDLE,
	TASKER_WORKER_RUNNING,
	TASKER_WORKER_PAUSED,		/* tasker.enabled = off */
	TASKER_WORKER_WAITING_FOR_DATABASE, /* tasker.database_name is missing */
	TASKER_WORKER_WAITING_FOR_UPDATE	/* the extension is at another version */
} TaskerWorkerState;

/* One executor's slot, as tasker_worker_slots copies it out. */
typedef struct TaskerWorkerSlot
{
	pid_t		pid;
	Latch	   *latch;
	TaskerWorkerState state;
	uint64		steps_run;
	TimestampTz last_activity;
	TimestampTz started_at;		/* when the launcher last asked for it */
} TaskerWorkerSlot;

/* What the task counters count. */
typedef enum TaskerTaskCount
{
	TASKER_TASKS_CREATED = 0,
	TASKER_TASKS_COMPLETED,		/* transitions to complete */
	TASKER_TASKS_FAILED,		/* transitions to error */
	TASKER_TASKS_CANCELLED,		/* transitions to cancelled */
	TASKER_NUM_TASK_COUNTS
} TaskerTaskCount;

/* The handler kinds steps are counted by (tasker_step_kind_name). */
typedef enum TaskerStepKind
{
	TASKER_STEP_SQL = 0,
	TASKER_STEP_HTTP,
	TASKER_STEP_WORKER,
	TASKER_STEP_FLOW,			/* map fan-out, wait, subtask (issue 10) */
	TASKER_NUM_STEP_KINDS
} TaskerStepKind;

/* How a step attempt ended, as counted (tasker_attempt_outcome_name). */
typedef enum TaskerAttemptOutcome
{
	TASKER_ATTEMPT_COMPLETE = 0,
	TASKER_ATTEMPT_RETRY,		/* failed, a retry is scheduled */
	TASKER_ATTEMPT_FAILED,		/* failed for good (permanent, or no retry
								 * left) */
	TASKER_ATTEMPT_QUARANTINED, /* tasker could not run or record it */
	TASKER_ATTEMPT_CANCELLED,	/* cancelled while in progress */
	TASKER_NUM_ATTEMPT_OUTCOMES
} TaskerAttemptOutcome;

/* HTTP requests by the class of their answer (tasker_http_class_name). */
typedef enum TaskerHttpClass
{
	TASKER_HTTP_2XX = 0,
	TASKER_HTTP_3XX,
	TASKER_HTTP_4XX,
	TASKER_HTTP_5XX,
	TASKER_HTTP_ERROR,			/* no answer: connection error, response too
								 * large, another status */
	TASKER_HTTP_TIMEOUT,
	TASKER_NUM_HTTP_CLASSES
} TaskerHttpClass;

/*
 * The upper bounds, in seconds, of the step duration histogram's buckets;
 * one more bucket counts what lies above the last.
 */
#define TASKER_NUM_DURATION_BOUNDS 14
extern const double tasker_duration_bounds[TASKER_NUM_DURATION_BOUNDS];

/*
 * A copy of the counters (tasker_read_counts).  Every member is an array
 * of uint64: shared memory keeps the same layout as one flat array of
 * atomics.
 */
typedef struct TaskerCounts
{
	uint64		tasks[TASKER_NUM_TASK_COUNTS];
	uint64		attempts[TASKER_NUM_STEP_KINDS][TASKER_NUM_ATTEMPT_OUTCOMES];
	uint64		retries[TASKER_NUM_STEP_KINDS]; /* attempts after the first
												 * started */
	uint64		http[TASKER_NUM_HTTP_CLASSES];
	uint64		worker_claims[1];
	uint64		lost_leases[TASKER_NUM_STEP_KINDS];
	/* per bucket, not cumulative; the last is above the largest bound */
	uint64		duration_buckets[TASKER_NUM_STEP_KINDS][TASKER_NUM_DURATION_BOUNDS + 1];
	uint64		duration_sum_us[TASKER_NUM_STEP_KINDS];
} TaskerCounts;

extern void tasker_shmem_register(void);

/* Every backend */
extern bool tasker_workers_present(void);
extern void tasker_wake_workers(void);
extern int	tasker_worker_slots(TaskerWorkerSlot *out, int max,
								pid_t *launcher_pid);

/* The launcher */
extern int	tasker_slot_count(void);
extern void tasker_launcher_attach(void);
extern bool tasker_slot_needs_worker(int i);
extern void tasker_slot_started(int i);
extern void tasker_slots_wait_for_database(void);

/* An executor, about its own slot */
extern bool tasker_claim_slot(int i);
extern void tasker_release_slot(int i);
extern void tasker_set_slot_state(int i, TaskerWorkerState state, int steps);
extern void tasker_wake_other_workers(int i);

/* The counters: counted when the current transaction commits */
extern void tasker_count_tasks(TaskerTaskCount what, uint64 n);
extern void tasker_count_attempts(TaskerStepKind kind,
								  TaskerAttemptOutcome outcome, uint64 n);
extern void tasker_observe_step_seconds(TaskerStepKind kind, double seconds);
extern void tasker_count_retries(TaskerStepKind kind, uint64 n);
extern void tasker_count_http(TaskerHttpClass what);
extern void tasker_count_worker_claims(uint64 n);
extern void tasker_count_lost_leases(TaskerStepKind kind, uint64 n);
extern bool tasker_read_counts(TaskerCounts *out);

/* The counters' label values */
extern int	tasker_step_kind(const char *name);
extern const char *tasker_step_kind_name(TaskerStepKind kind);
extern const char *tasker_attempt_outcome_name(TaskerAttemptOutcome outcome);
extern const char *tasker_http_class_name(TaskerHttpClass what);
/* The ready backlog gauge (admission control, backlog.c) */
extern void tasker_backlog_add_at_commit(uint64 n);
extern bool tasker_backlog_sample_due(int interval_ms);
extern void tasker_backlog_publish(Oid db, uint64 n, TimestampTz at);
extern bool tasker_backlog_read(Oid db, uint64 *n, TimestampTz *measured_at);

#endif							/* TASKER_SHMEM_H */
