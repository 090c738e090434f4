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

extern void tasker_notify_register(void);
extern void tasker_queue_event(const char *payload);
extern uint64 tasker_events_relayed(void);

#endif							/* TASKER_NOTIFY_H */
