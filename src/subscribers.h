/*-------------------------------------------------------------------------
 *
 * subscribers.h
 *		SQL functions subscribed to events, and their delivery.
 *
 * IDENTIFICATION
 *		src/subscribers.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SUBSCRIBERS_H
#define TASKER_SUBSCRIBERS_H

#include "postgres.h"

/* What tasker_subscribe is asked for. */
typedef struct SubscribeRequest
{
	const char *subscriber;
	const char *pattern;
	Oid			fn;
	int			max_attempts;
	int64		retry_delay_ms;
	bool		has_start;		/* start_after given */
	int64		start_after;
} SubscribeRequest;

extern int64 tasker_subscribe(const SubscribeRequest *req);
extern bool tasker_unsubscribe(const char *subscriber);
extern int	tasker_deliver_events(long *sleep_ms);

#endif							/* TASKER_SUBSCRIBERS_H */
