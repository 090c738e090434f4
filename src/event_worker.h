/*-------------------------------------------------------------------------
 *
 * event_worker.h
 *		The event worker: delivers events to subscribers and prunes the
 *		event log, apart from the executors.
 *
 * IDENTIFICATION
 *		src/event_worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_EVENT_WORKER_H
#define TASKER_EVENT_WORKER_H

#include "postgres.h"

extern void tasker_event_worker_launch(void);

#endif							/* TASKER_EVENT_WORKER_H */
