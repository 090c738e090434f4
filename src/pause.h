/*-------------------------------------------------------------------------
 *
 * pause.h
 *		Pausing and resuming tasks and namespaces (issue 11).
 *
 * IDENTIFICATION
 *		src/pause.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_PAUSE_H
#define TASKER_PAUSE_H

#include "postgres.h"

extern bool tasker_pause_task(int64 task_id, const char *reason);
extern bool tasker_resume_task(int64 task_id);
extern bool tasker_pause_namespace(const char *namespace);
extern bool tasker_resume_namespace(const char *namespace);

#endif							/* TASKER_PAUSE_H */
