/*-------------------------------------------------------------------------
 *
 * priority.h
 *		Task priorities with aging: the claim order of ready steps.
 *
 * IDENTIFICATION
 *		src/priority.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_PRIORITY_H
#define TASKER_PRIORITY_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* The range of priorities (tasker_tasks_priority_range). */
#define TASKER_PRIORITY_MIN (-1000)
#define TASKER_PRIORITY_MAX 1000

extern void tasker_check_priority(int32 priority);
extern TimestampTz tasker_claim_key(TimestampTz next_attempt_at, int32 priority);

#endif							/* TASKER_PRIORITY_H */
