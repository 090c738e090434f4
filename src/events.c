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
 * NOTIFY.  A transaction that makes work for the workers asks here for
 * them to be woken when it commits (tasker_wake_workers_at_commit).
 *
 * This file builds the payloads and hands each to notify.c, which owns
 * how events leave (the ring, the relay, the channel); the wake-up sets
 * the latches of the worker slots in shmem.c.  Neither calls back here.
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
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/jsonfuncs.h"
#include "utils/timestamp.h"

#include "claim_wait.h"
#include "events.h"
#include "security.h"
#include "spi_util.h"
#include "notify.h"
#include "shmem.h"

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
	if (strcmp(to_state, "skipped") == 0 && is_step)
		return "step.skipped";
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
 * metadata; a step.failed event takes its "final" key.  trace_id and
 * span_id (NULL for a task without a trace) say which span the
 * transition belongs to (state.c decides).
 */
void
tasker_notify_transition(int64 step_id, int64 task_id, const char *task_name,
						 const char *namespace, const char *step_name,
						 const char *from_state, const char *to_state,
						 int32 attempt, TimestampTz at,
						 const char *metadata_json, const char *trace_id,
						 const char *span_id)
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
	append_field(&buf, "trace_id", trace_id);
	append_field(&buf, "span_id", span_id);
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
			{
				tasker_wake_workers();
				tasker_claim_waiters_wake();
			}
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
	if (!tasker_workers_present() && !tasker_claim_wait_available())
		return;
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_at_commit, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;
}

static SPIPlanPtr declared_plan;
static SPIPlanPtr subject_plan;

/* What a custom event is about: its task and, maybe, its step. */
typedef struct EventSubject
{
	int64		task_id;		/* 0: none */
	int64		step_id;		/* 0: none */
	char	   *step_name;
	char	   *task_name;
	char	   *namespace;
	char	   *trace_id;		/* NULL: the task has no trace */
	char	   *span_id;		/* the step's running attempt's, or the task's */
} EventSubject;

/*
 * check_declared: raise unless a template declares the custom event.
 */
static void
check_declared(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	tasker_run_plan(tasker_keep_plan(&declared_plan,
			 "SELECT 1 FROM @extschema@.tasker_event_catalog c"
			 " WHERE c.name = $1 AND c.category = 'custom'",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("custom event \"%s\" is not declared", name),
				 errdetail("Only events listed under custom_events in a registered template can be published."),
				 errhint("Declare the event in a template's custom_events, then register the template.")));
}

/*
 * The task (and step) of a custom event, with its trace id and span id
 * (expressions over t, the task, and x, the step's transition to
 * in_progress when it is running; the 0.1.0 schema has no trace).
 */
#define SUBJECT_SQL(trace_id, span_id) \
	"SELECT t.task_id, s.workflow_step_id, st.name::text, nt.name::text, ns.name::text," \
	"       " trace_id ", " span_id \
	"  FROM @extschema@.tasker_tasks t" \
	"  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id" \
	"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	"  LEFT JOIN @extschema@.tasker_workflow_steps s" \
	"         ON s.workflow_step_id = $2 AND s.task_id = t.task_id" \
	"  LEFT JOIN @extschema@.tasker_named_steps st ON st.named_step_id = s.named_step_id" \
	"  LEFT JOIN @extschema@.tasker_workflow_step_transitions x" \
	"         ON x.workflow_step_id = s.workflow_step_id AND x.most_recent" \
	"        AND x.to_state = 'in_progress'" \
	" WHERE t.task_id = CASE WHEN $1 <> 0 THEN $1 ELSE" \
	"        (SELECT s2.task_id FROM @extschema@.tasker_workflow_steps s2" \
	"          WHERE s2.workflow_step_id = $2) END"

/*
 * find_subject: the task (and step) a custom event is about, from a task
 * id or a step id (0 for none); false when there is none such.
 */
static bool
find_subject(int64 task_id, int64 step_id, EventSubject *subject)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(task_id), Int64GetDatum(step_id)};
	HeapTuple	row;
	TupleDesc	desc;
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&subject_plan,
			 subject_plan != NULL || tasker_has_column("tasker_tasks", "trace_id") ?
			 SUBJECT_SQL("t.trace_id",
						 "@extschema@.tasker_span_id(t.trace_id, t.task_id, x.workflow_step_id,"
						 " x.sort_key)") :
			 SUBJECT_SQL("NULL::text", "NULL::text"),
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	subject->task_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	subject->step_id = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	if (isnull)
		subject->step_id = 0;
	subject->step_name = SPI_getvalue(row, desc, 3);
	subject->task_name = SPI_getvalue(row, desc, 4);
	subject->namespace = SPI_getvalue(row, desc, 5);
	subject->trace_id = SPI_getvalue(row, desc, 6);
	subject->span_id = SPI_getvalue(row, desc, 7);
	return step_id == 0 || subject->step_id != 0;
}

/*
 * custom_event_message: the payload of a custom event: the keys of the
 * built-in events, in their order, then the caller's payload.
 */
static char *
custom_event_message(const char *name, const EventSubject *subject, Jsonb *payload)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"event\":");
	escape_json(&buf, name);
	if (subject->task_id != 0)
		appendStringInfo(&buf, ",\"task_id\":" INT64_FORMAT, subject->task_id);
	if (subject->step_id != 0)
		appendStringInfo(&buf, ",\"step_id\":" INT64_FORMAT, subject->step_id);
	append_field(&buf, "step_name", subject->step_name);
	append_field(&buf, "task_name", subject->task_name);
	append_field(&buf, "namespace", subject->namespace);
	append_field(&buf, "at", JsonEncodeDateTime(NULL, TimestampTzGetDatum(GetCurrentTimestamp()),
												 TIMESTAMPTZOID, NULL));
	append_field(&buf, "trace_id", subject->trace_id);
	append_field(&buf, "span_id", subject->span_id);
	appendStringInfoString(&buf, ",\"payload\":");
	appendStringInfoString(&buf, JsonbToCString(NULL, &payload->root, VARSIZE(payload)));
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * tasker_publish_custom_event: send a custom event a template declares,
 * about a task or a step (0, 0: the running_step, the step whose handler
 * is running, if any, which the caller looks up), when the transaction
 * commits, in order with the built-in events.  Naming a task or step
 * needs the right to control it (security.c).  Runs as the extension's
 * owner, for the caller.
 */
void
tasker_publish_custom_event(const char *name, Jsonb *payload, int64 task_id,
							int64 step_id, int64 running_step)
{
	EventSubject subject;
	bool		named = (task_id != 0 || step_id != 0);
	char	   *message;

	memset(&subject, 0, sizeof(subject));
	SPI_connect();
	check_declared(name);
	if (!JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event payload must be a JSON object"),
				 errdetail("The payload given is %.100s.",
						   JsonbToCString(NULL, &payload->root, VARSIZE(payload))),
				 errhint("Pass the payload as '{\"key\": \"value\"}'.")));
	if (!named)
		step_id = running_step;
	if ((task_id != 0 || step_id != 0) && !find_subject(task_id, step_id, &subject))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the task or step of custom event \"%s\" does not exist", name),
				 errdetail("task_id %s, step_id %s.",
						   task_id ? psprintf(INT64_FORMAT, task_id) : "NULL",
						   step_id ? psprintf(INT64_FORMAT, step_id) : "NULL"),
				 errhint("Pass the id of an existing task, or of an existing step of that task.")));
	if (named)
		tasker_require_task_control(subject.task_id, "publish an event about");
	message = custom_event_message(name, &subject, payload);
	if (strlen(message) > 7900)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event payload is too large"),
				 errdetail("The notification would take %zu bytes; NOTIFY carries at most 7900 here.",
						   strlen(message)),
				 errhint("Send identifiers in the payload and let listeners read the rest from tables.")));
	tasker_queue_event(message);
	SPI_finish();
}
