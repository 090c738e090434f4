/*-------------------------------------------------------------------------
 *
 * schedule.h
 *		Task schedules through pg_cron.
 *
 * IDENTIFICATION
 *		src/schedule.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SCHEDULE_H
#define TASKER_SCHEDULE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* The arguments of tasker_schedule, converted. */
typedef struct TaskerScheduleRequest
{
	const char *job_name;
	const char *schedule;
	const char *task_name;
	Jsonb	   *context;
	const char *namespace;
	const char *version;		/* NULL: the highest when each task is made */
} TaskerScheduleRequest;

extern int64 tasker_schedule_task(const TaskerScheduleRequest *req);
extern bool tasker_unschedule_task(const char *job_name);
extern bool tasker_set_schedule_active(const char *job_name, bool active);
extern int64 tasker_fire_schedule_task(const char *job_name, TimestampTz tick,
									   bool *paused);

#endif							/* TASKER_SCHEDULE_H */
