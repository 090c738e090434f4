/*-------------------------------------------------------------------------
 *
 * event_log.h
 *		The durable event log: every event tasker sends, kept in
 *		tasker_event_log with an id consumers can resume from.
 *
 * IDENTIFICATION
 *		src/event_log.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_EVENT_LOG_H
#define TASKER_EVENT_LOG_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"

/* Shared memory (shmem.c reserves and attaches it) */
extern Size tasker_event_log_shmem_size(void);
extern void tasker_event_log_shmem_init(void);

/* The transaction that sends events (notify.c, at pre-commit and end) */
extern char **tasker_event_log_append(char **payloads, int n);
extern void tasker_event_log_end_xact(bool committed);

/* Readers */
extern int64 tasker_event_log_horizon(void);
extern int64 tasker_event_log_settled_end(void);
extern void tasker_events_since(int64 after_id, int max_events,
								FunctionCallInfo fcinfo);
extern int64 tasker_event_log_prune(TimestampTz before, int max_rows);
extern TimestampTz tasker_event_log_cutoff(void);

/* The event worker's place: its latch, and whether it has subscribers */
extern bool tasker_event_worker_needs_start(void);
extern void tasker_event_worker_started(void);
extern bool tasker_event_worker_attach(void);
extern void tasker_event_worker_detach(void);
extern void tasker_event_worker_set_subscriptions(int n);

#endif							/* TASKER_EVENT_LOG_H */
