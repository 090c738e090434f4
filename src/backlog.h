/*-------------------------------------------------------------------------
 *
 * backlog.h
 *		Admission control: the backlog of ready steps, measured by the
 *		executors, and the check tasker_create_task makes against it.
 *
 * IDENTIFICATION
 *		src/backlog.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_BACKLOG_H
#define TASKER_BACKLOG_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern void tasker_sample_backlog(void);
extern void tasker_admit_task(void);
extern bool tasker_ready_backlog(uint64 *n, TimestampTz *at);

#endif							/* TASKER_BACKLOG_H */
