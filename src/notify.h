/*-------------------------------------------------------------------------
 *
 * notify.h
 *		The event relay: events leave a transaction at commit through a
 *		shared ring, and one process sends them with NOTIFY.
 *
 * IDENTIFICATION
 *		src/notify.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_NOTIFY_H
#define TASKER_NOTIFY_H

#include "postgres.h"

/* The channel every tasker event is sent on. */
#define TASKER_EVENTS_CHANNEL "tasker_events"

/* The named LWLock tranche of the ring (one lock). */
#define TASKER_NOTIFY_TRANCHE "tasker_notify"

extern Size tasker_notify_shmem_size(void);
extern void tasker_notify_shmem_init(void);
extern void tasker_notify_register(void);
extern void tasker_queue_event(const char *payload);

#endif							/* TASKER_NOTIFY_H */
