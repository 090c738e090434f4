/*-------------------------------------------------------------------------
 *
 * control.h
 *		Operator controls and running tasks from a session.
 *
 * IDENTIFICATION
 *		src/control.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_CONTROL_H
#define TASKER_CONTROL_H

#include "postgres.h"

#include "utils/jsonb.h"

extern bool tasker_cancel_task(int64 task_id, const char *reason);
extern bool tasker_retry_task(int64 task_id, const char *reason);
extern bool tasker_resolve_step(int64 step_id, Jsonb *results, const char *reason);
extern bool tasker_cancel_step(int64 step_id, const char *reason);
extern int64 tasker_step_by_name(int64 task_id, const char *step_name);
extern const char *tasker_run_task(int64 task_id, int64 timeout_ms);
extern const char *tasker_wait_for_task(int64 task_id, int64 timeout_ms);

#endif							/* TASKER_CONTROL_H */
