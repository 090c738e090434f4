/*-------------------------------------------------------------------------
 *
 * events.c
 *		Events announcing task and step transitions on LISTEN/NOTIFY.
 *
 * Each transition queues one notification on the tasker_events channel
 * for when the transaction that makes it commits (through the relay of
 * notify.c), so listeners hear of a transition once it committed and
 * never of one that rolled back.  Payloads are
 * compact JSON carrying identifiers and states only, never a task's context
 * or a step's results, so they stay far below the 8000-byte limit of
 * NOTIFY.
 *
 * IDENTIFICATION
 *		src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/jsonfuncs.h"
#include "utils/timestamp.h"

#include "events.h"
#include "notify.h"
#include "worker.h"

static bool wake_pending = false;
static bool wake_callback_registered = false;

/*
 * tasker_event_name: the event of the Ruby catalog that announces a
 * transition (reference spec 2.5).
 */
const char *
tasker_event_name(bool is_step, const char *from_state, const char *to_state)
{
	bool		from_error = (from_state != NULL && strcmp(from_state, "error") == 0);

	if (strcmp(to_state, "pending") == 0)
	{
		if (from_error)
			return is_step ? "step.retry_requested" : "task.retry_requested";
		return is_step ? "step.initialize_requested" : "task.initialize_requested";
	}
	if (strcmp(to_state, "in_progress") == 0)
		return is_step ? "step.execution_requested" : "task.start_requested";
	if (strcmp(to_state, "complete") == 0)
		return is_step ? "step.completed" : "task.completed";
	if (strcmp(to_state, "error") == 0)
		return is_step ? "step.failed" : "task.failed";
	if (strcmp(to_state, "cancelled") == 0)
		return is_step ? "step.cancelled" : "task.cancelled";
	if (strcmp(to_state, "resolved_manually") == 0)
		return is_step ? "step.resolved_manually" : "task.resolved_manually";
	elog(ERROR, "unknown tasker state \"%s\"", to_state);
	return NULL;
}

/*
 * append_field: append ,"key":"value" (a JSON string) to buf; nothing when
 * value is NULL.
 */
static void
append_field(StringInfo buf, const char *key, const char *value)
{
	if (value == NULL)
		return;
	appendStringInfo(buf, ",\"%s\":", key);
	escape_json(buf, value);
}

/*
 * append_final: for a step.failed event, append ,"final":true|false, taken
 * from the "final" key of the transition's metadata (see
 * tasker_failure_metadata); a failure whose metadata does not say is final,
 * since only tasker_record_failure schedules retries and it always says.
 */
static void
append_final(StringInfo buf, const char *metadata_json)
{
	bool		final = true;

	if (metadata_json != NULL)
	{
		Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															CStringGetDatum(metadata_json)));
		JsonbValue	v;

		if (getKeyJsonValueFromContainer(&jb->root, "final", 5, &v) != NULL &&
			v.type == jbvBool)
			final = v.val.boolean;
	}
	appendStringInfo(buf, ",\"final\":%s", final ? "true" : "false");
}

/*
 * tasker_notify_transition: queue the event for a task transition (step_id
 * 0) or a step transition made at the time at (the created_at of its
 * transition row).  metadata_json (may be NULL) is the transition's
 * metadata; a step.failed event takes its "final" key.
 */
void
tasker_notify_transition(int64 step_id, int64 task_id, const char *task_name,
						 const char *namespace, const char *step_name,
						 const char *from_state, const char *to_state,
						 int32 attempt, TimestampTz at,
						 const char *metadata_json)
{
	StringInfoData buf;
	bool		is_step = (step_id != 0);

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"event\":");
	escape_json(&buf, tasker_event_name(is_step, from_state, to_state));
	appendStringInfo(&buf, ",\"task_id\":" INT64_FORMAT, task_id);
	if (is_step)
		appendStringInfo(&buf, ",\"step_id\":" INT64_FORMAT, step_id);
	append_field(&buf, "step_name", step_name);
	append_field(&buf, "task_name", task_name);
	append_field(&buf, "namespace", namespace);
	append_field(&buf, "from_state", from_state);
	append_field(&buf, "to_state", to_state);
	if (is_step)
		appendStringInfo(&buf, ",\"attempt\":%d", attempt);
	if (is_step && strcmp(to_state, "error") == 0)
		append_final(&buf, metadata_json);
	append_field(&buf, "at", JsonEncodeDateTime(NULL, TimestampTzGetDatum(at),
												 TIMESTAMPTZOID, NULL));
	appendStringInfoChar(&buf, '}');

	tasker_queue_event(buf.data);
	pfree(buf.data);
}

/*
 * wake_at_commit: transaction callback that wakes the workers once when a
 * transaction that asked for it commits; an abort forgets the request.
 */
static void
wake_at_commit(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
				tasker_wake_workers();
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/*
 * tasker_wake_workers_at_commit: ask for the workers to be woken when the
 * current transaction commits (coalesced: once per transaction however
 * often it is called; never on abort).  A no-op without the workers.
 */
void
tasker_wake_workers_at_commit(void)
{
	if (!tasker_workers_present())
		return;
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;
}
