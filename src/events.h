/*-------------------------------------------------------------------------
 *
 * events.h
 *		Event payloads sent on the tasker_events channel.
 *
 * IDENTIFICATION
 *		src/events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_EVENTS_H
#define TASKER_EVENTS_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern const char *tasker_event_name(bool is_step, const char *from_state,
									 const char *to_state);
extern void tasker_notify_transition(int64 step_id, int64 task_id,
									 const char *task_name,
									 const char *namespace,
									 const char *step_name,
									 const char *from_state,
									 const char *to_state, int32 attempt,
									 TimestampTz at,
									 const char *metadata_json,
									 const char *trace_id,
									 const char *span_id);

extern void tasker_wake_workers_at_commit(void);

#include "utils/jsonb.h"

extern void tasker_publish_custom_event(const char *name, Jsonb *payload,
										int64 task_id, int64 step_id,
										int64 running_step);

#endif							/* TASKER_EVENTS_H */
