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

extern int	tasker_run_ready_steps(int64 task_id, int limit);
extern void tasker_finalize_task(int64 task_id);
extern int	tasker_start_ready_tasks(int64 task_id, int limit);
extern long tasker_ms_until_next_step(void);

#endif							/* TASKER_SCHEDULER_H */
