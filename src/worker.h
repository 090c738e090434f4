/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The tasker background workers and their shared state.
 *
 * IDENTIFICATION
 *		src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_WORKER_H
#define TASKER_WORKER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"

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

typedef struct TaskerWorkerSlot
{
	pid_t		pid;
	Latch	   *latch;
	TaskerWorkerState state;
	uint64		steps_run;
	TimestampTz last_activity;
	TimestampTz started_at;		/* when the launcher last asked for it */
} TaskerWorkerSlot;

extern Size tasker_worker_shmem_size(void);
extern void tasker_worker_shmem_init(void);
extern void tasker_worker_register(void);
extern void tasker_describe_bgworker(BackgroundWorker *worker, const char *function,
									 const char *name, const char *type,
									 int restart_time);
extern bool tasker_workers_present(void);
extern bool tasker_database_wanted(void);
extern void tasker_wake_workers(void);
extern int	tasker_worker_slots(TaskerWorkerSlot *out, int max, pid_t *launcher_pid);

#endif							/* TASKER_WORKER_H */
