/*-------------------------------------------------------------------------
 *
 * api.c
 *		Thin SQL-callable wrappers around the tasker modules.
 *
 * Each function here converts its arguments, calls into the module that
 * owns the behaviour and converts the result back.  No logic lives here.
 *
 * IDENTIFICATION
 *		src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "annotation.h"
#include "backlog.h"
#include "concurrency.h"
#include "control.h"
#include "dag.h"
#include "event_log.h"
#include "events.h"
#include "flow.h"
#include "pause.h"
#include "guc.h"
#include "handler.h"
#include "handler_http.h"
#include "handler_registry.h"
#include "http_limits.h"
#include "jsonschema.h"
#include "schedule.h"
#include "step.h"
#include "security.h"
#include "shmem.h"
#include "state.h"
#include "subscribers.h"
#include "task.h"
#include "template.h"
#include "trace.h"

PG_FUNCTION_INFO_V1(tasker_transition_task_sql);
PG_FUNCTION_INFO_V1(tasker_transition_step_sql);
PG_FUNCTION_INFO_V1(tasker_allowed_transitions_sql);
PG_FUNCTION_INFO_V1(tasker_create_task_sql);
PG_FUNCTION_INFO_V1(tasker_span_id_sql);
PG_FUNCTION_INFO_V1(tasker_cancel_task_sql);
PG_FUNCTION_INFO_V1(tasker_retry_task_sql);
PG_FUNCTION_INFO_V1(tasker_resolve_step_sql);
PG_FUNCTION_INFO_V1(tasker_cancel_step_sql);
PG_FUNCTION_INFO_V1(tasker_resolve_step_by_name_sql);
PG_FUNCTION_INFO_V1(tasker_cancel_step_by_name_sql);
PG_FUNCTION_INFO_V1(tasker_run_task_sql);
PG_FUNCTION_INFO_V1(tasker_run_steps_sql);
PG_FUNCTION_INFO_V1(tasker_wait_for_task_sql);
PG_FUNCTION_INFO_V1(tasker_worker_status_sql);
PG_FUNCTION_INFO_V1(tasker_permanent_error_sql);
PG_FUNCTION_INFO_V1(tasker_retry_error_sql);
PG_FUNCTION_INFO_V1(tasker_validate_json_sql);
PG_FUNCTION_INFO_V1(tasker_json_schema_assert_sql);
PG_FUNCTION_INFO_V1(tasker_register_template_sql);
PG_FUNCTION_INFO_V1(tasker_register_template_file_sql);
PG_FUNCTION_INFO_V1(tasker_register_templates_sql);
PG_FUNCTION_INFO_V1(tasker_register_handler_sql);
PG_FUNCTION_INFO_V1(tasker_register_handler_queue_sql);
PG_FUNCTION_INFO_V1(tasker_http_stats_sql);
PG_FUNCTION_INFO_V1(tasker_publish_event_sql);
PG_FUNCTION_INFO_V1(tasker_http_preview_sql);
PG_FUNCTION_INFO_V1(tasker_step_depths_sql);
PG_FUNCTION_INFO_V1(tasker_running_step_sql);
PG_FUNCTION_INFO_V1(tasker_signal_sql);
PG_FUNCTION_INFO_V1(tasker_pause_task_sql);
PG_FUNCTION_INFO_V1(tasker_resume_task_sql);
PG_FUNCTION_INFO_V1(tasker_pause_namespace_sql);
PG_FUNCTION_INFO_V1(tasker_resume_namespace_sql);
PG_FUNCTION_INFO_V1(tasker_sees_all_namespaces_sql);
PG_FUNCTION_INFO_V1(tasker_events_since_sql);
PG_FUNCTION_INFO_V1(tasker_subscribe_sql);
PG_FUNCTION_INFO_V1(tasker_unsubscribe_sql);
PG_FUNCTION_INFO_V1(tasker_prune_event_log_sql);
PG_FUNCTION_INFO_V1(tasker_set_namespace_limit_sql);

/*
 * AS_OWNER: run a statement as the extension's owner, for the caller
 * (security.c): users hold EXECUTE on tasker's functions, not privileges
 * on its tables.
 */
#define AS_OWNER(stmt) \
	do { \
		TaskerApiScope scope_; \
		tasker_api_enter(&scope_); \
		stmt; \
		tasker_api_leave(&scope_); \
	} while (0)

/*
 * transition_checked: a transition requested through SQL, by a caller who
 * may control the task.
 */
static bool
transition_checked(TaskerEntity entity, int64 id, TaskerState to,
				   const char *metadata_json)
{
	SPI_connect();
	if (entity == TASKER_ENTITY_TASK)
		tasker_require_task_control(id, "move");
	else
		tasker_require_step_control(id, "move");
	SPI_finish();
	return tasker_transition(entity, id, to, metadata_json);
}

/*
 * transition_sql: shared body of the two transition wrappers.
 */
static Datum
transition_sql(TaskerEntity entity, FunctionCallInfo fcinfo)
{
	int64		id = PG_GETARG_INT64(0);
	char	   *to_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *metadata = PG_GETARG_JSONB_P(2);
	char	   *metadata_json;
	bool		changed;

	if (!JB_ROOT_IS_OBJECT(metadata) || JB_ROOT_IS_SCALAR(metadata))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transition metadata must be a JSON object"),
				 errdetail("The metadata given is %s.",
						   JsonbToCString(NULL, &metadata->root, VARSIZE(metadata))),
				 errhint("Pass metadata as '{\"key\": \"value\"}'.")));
	metadata_json = JsonbToCString(NULL, &metadata->root, VARSIZE(metadata));
	AS_OWNER(changed = transition_checked(entity, id, tasker_state_from_name(to_name),
										  metadata_json));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_transition_task(task_id bigint, to_state text, metadata jsonb)
 */
Datum
tasker_transition_task_sql(PG_FUNCTION_ARGS)
{
	return transition_sql(TASKER_ENTITY_TASK, fcinfo);
}

/*
 * tasker_transition_step(step_id bigint, to_state text, metadata jsonb)
 */
Datum
tasker_transition_step_sql(PG_FUNCTION_ARGS)
{
	return transition_sql(TASKER_ENTITY_STEP, fcinfo);
}

/*
 * tasker_allowed_transitions(entity text): the (from_state, to_state) pairs
 * that the state machine of 'task' or 'step' allows.
 */
Datum
tasker_allowed_transitions_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *entity_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TaskerEntity entity;
	int			from;
	int			to;

	if (strcmp(entity_name, "task") == 0)
		entity = TASKER_ENTITY_TASK;
	else if (strcmp(entity_name, "step") == 0)
		entity = TASKER_ENTITY_STEP;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown entity \"%s\"", entity_name),
				 errdetail("tasker has state machines for tasks and steps."),
				 errhint("Pass 'task' or 'step'.")));

	InitMaterializedSRF(fcinfo, 0);
	for (from = 0; from < TASKER_NUM_STATES; from++)
		for (to = 0; to < TASKER_NUM_STATES; to++)
		{
			Datum		values[2];
			bool		nulls[2] = {false, false};

			if (!tasker_transition_allowed(entity, from, to))
				continue;
			values[0] = CStringGetTextDatum(tasker_state_name(from));
			values[1] = CStringGetTextDatum(tasker_state_name(to));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 values, nulls);
		}
	PG_RETURN_NULL();
}

/*
 * arg_text: a text argument as a C string, or NULL when it is NULL.
 */
static char *
arg_text(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * required_text: a text argument that may not be NULL.
 */
static char *
required_text(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name),
				 errhint("Pass a value, or omit the argument to use its default.")));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * text_array_to_jsonb: a text[] as a JSON array of strings (no NULLs).
 */
static Jsonb *
text_array_to_jsonb(ArrayType *arr, const char *name)
{
	Datum	   *elems;
	int			n;
	int			i;
	StringInfoData buf;

	if (array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not contain NULL", name),
				 errhint("Remove the NULL elements.")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, TextDatumGetCString(elems[i]));
	}
	appendStringInfoChar(&buf, ']');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * The longest timeout of tasker_run_task and tasker_wait_for_task: 100
 * years of 365.25 days.  A deadline beyond about 292,000 years would
 * overflow the timestamp it is added to and pass at once.
 */
#define TASKER_MAX_WAIT_MS	(INT64CONST(100) * 36525 * 864000)

/*
 * interval_ms: a non-negative interval argument in milliseconds, at most
 * TASKER_MAX_WAIT_MS.
 */
static int64
interval_ms(FunctionCallInfo fcinfo, int n)
{
	Interval   *iv;
	int64		ms;

	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("timeout must not be NULL"),
				 errhint("Pass an interval such as '30 seconds'.")));
	iv = PG_GETARG_INTERVAL_P(n);
	ms = iv->time / 1000 + ((int64) iv->month * 30 + iv->day) * 86400000;
	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative"),
				 errhint("Pass an interval such as '30 seconds'.")));
	if (ms > TASKER_MAX_WAIT_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be at most 100 years"),
				 errdetail("The timeout given is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(iv)))),
				 errhint("Pass a shorter interval, such as '1 day'.")));
	return ms;
}

/*
 * tasker_create_task(name, context, namespace, version, initiator,
 *                    source_system, reason, tags, bypass_steps,
 *                    requested_at, identity_key[, priority, traceparent])
 */
Datum
tasker_create_task_sql(PG_FUNCTION_ARGS)
{
	TaskRequest req;
	ArrayType  *bypass;
	int64		task_id;

	memset(&req, 0, sizeof(req));
	req.name = required_text(fcinfo, 0, "name");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("context must not be NULL"),
				 errhint("Pass '{}' for a task that needs no context.")));
	req.context = PG_GETARG_JSONB_P(1);
	req.namespace = required_text(fcinfo, 2, "namespace");
	req.version = arg_text(fcinfo, 3);
	req.initiator = required_text(fcinfo, 4, "initiator");
	req.source_system = required_text(fcinfo, 5, "source_system");
	req.reason = required_text(fcinfo, 6, "reason");
	if (PG_ARGISNULL(7) || PG_ARGISNULL(8) || PG_ARGISNULL(9))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tags, bypass_steps and requested_at must not be NULL"),
				 errhint("Omit them to use their defaults.")));
	req.tags = text_array_to_jsonb(PG_GETARG_ARRAYTYPE_P(7), "tags");
	bypass = PG_GETARG_ARRAYTYPE_P(8);
	req.bypass_steps = text_array_to_jsonb(bypass, "bypass_steps");
	req.bypass_steps_array = ArrayGetNItems(ARR_NDIM(bypass), ARR_DIMS(bypass)) > 0 ? bypass : NULL;
	req.requested_at = PG_GETARG_TIMESTAMPTZ(9);
	req.identity_key = arg_text(fcinfo, 10);
	/* priority: 0.2.0's twelfth argument */
	if (PG_NARGS() > 11)
	{
		if (PG_ARGISNULL(11))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("priority must not be NULL"),
					 errhint("Omit it for the default priority, 0.")));
		req.priority = PG_GETARG_INT32(11);
	}
	/* traceparent: 0.2.0's thirteenth argument (NULL: the context's, or new) */
	if (PG_NARGS() > 12)
		req.traceparent = arg_text(fcinfo, 12);
	AS_OWNER(task_id = tasker_create_task_internal(&req));
	PG_RETURN_INT64(task_id);
}

/*
 * tasker_cancel_task(task_id bigint, reason text)
 */
Datum
tasker_cancel_task_sql(PG_FUNCTION_ARGS)
{
	bool		changed;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	AS_OWNER(changed = tasker_cancel_task(PG_GETARG_INT64(0), arg_text(fcinfo, 1)));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_signal(task_id bigint, signal text, payload jsonb DEFAULT '{}')
 *	 RETURNS boolean: deliver a signal to the task's wait step (flow.c).
 */
Datum
tasker_signal_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload;
	bool		done;

	tasker_require_arg(fcinfo, 0, "task_id", "Pass the task_id tasker_create_task returned.");
	tasker_require_arg(fcinfo, 1, "signal", "Pass the signal name of the wait step.");
	payload = PG_ARGISNULL(2)
		? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")))
		: PG_GETARG_JSONB_P(2);
	tasker_check_size("signal payload", VARSIZE(payload),
					  tasker_max_results_size, "tasker.max_results_size");
	AS_OWNER(done = tasker_signal(PG_GETARG_INT64(0), text_to_cstring(PG_GETARG_TEXT_PP(1)),
								  payload));
	PG_RETURN_BOOL(done);
}

/*
 * tasker_pause_task(task_id bigint, reason text DEFAULT NULL) RETURNS
 * boolean, tasker_resume_task(task_id bigint) RETURNS boolean, and the
 * namespace forms (pause.c).
 */
Datum
tasker_pause_task_sql(PG_FUNCTION_ARGS)
{
	bool		done;

	tasker_require_arg(fcinfo, 0, "task_id", "Pass the task_id tasker_create_task returned.");
	AS_OWNER(done = tasker_pause_task(PG_GETARG_INT64(0), arg_text(fcinfo, 1)));
	PG_RETURN_BOOL(done);
}

Datum
tasker_resume_task_sql(PG_FUNCTION_ARGS)
{
	bool		done;

	tasker_require_arg(fcinfo, 0, "task_id", "Pass the task_id tasker_create_task returned.");
	AS_OWNER(done = tasker_resume_task(PG_GETARG_INT64(0)));
	PG_RETURN_BOOL(done);
}

Datum
tasker_pause_namespace_sql(PG_FUNCTION_ARGS)
{
	bool		done;

	tasker_require_arg(fcinfo, 0, "namespace", "Pass a namespace name, as in tasker_templates.");
	AS_OWNER(done = tasker_pause_namespace(text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_BOOL(done);
}

Datum
tasker_resume_namespace_sql(PG_FUNCTION_ARGS)
{
	bool		done;

	tasker_require_arg(fcinfo, 0, "namespace", "Pass a namespace name, as in tasker_templates.");
	AS_OWNER(done = tasker_resume_namespace(text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_BOOL(done);
}

Datum
tasker_set_namespace_limit_sql(PG_FUNCTION_ARGS)
{
	tasker_require_arg(fcinfo, 0, "namespace", "Pass a namespace name, as in tasker_templates.");
	AS_OWNER(tasker_set_namespace_limit(text_to_cstring(PG_GETARG_TEXT_PP(0)),
										PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
										PG_ARGISNULL(1)));
	PG_RETURN_VOID();
}

/*
 * any_null: whether one of the first n arguments is NULL (the overloads
 * that take a reason are not STRICT, since the reason may be NULL).
 */
static bool
any_null(FunctionCallInfo fcinfo, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (PG_ARGISNULL(i))
			return true;
	return false;
}

/*
 * tasker_retry_task(task_id bigint [, reason text])
 */
Datum
tasker_retry_task_sql(PG_FUNCTION_ARGS)
{
	bool		changed;

	if (any_null(fcinfo, 1))
		PG_RETURN_NULL();
	AS_OWNER(changed = tasker_retry_task(PG_GETARG_INT64(0),
										 PG_NARGS() > 1 ? arg_text(fcinfo, 1) : NULL));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_resolve_step(step_id bigint, results jsonb [, reason text])
 */
Datum
tasker_resolve_step_sql(PG_FUNCTION_ARGS)
{
	bool		changed;

	if (any_null(fcinfo, 2))
		PG_RETURN_NULL();
	AS_OWNER(changed = tasker_resolve_step(PG_GETARG_INT64(0), PG_GETARG_JSONB_P(1),
										   PG_NARGS() > 2 ? arg_text(fcinfo, 2) : NULL));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_cancel_step(step_id bigint)
 */
Datum
tasker_cancel_step_sql(PG_FUNCTION_ARGS)
{
	bool		changed;

	AS_OWNER(changed = tasker_cancel_step(PG_GETARG_INT64(0), NULL));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_resolve_step(task_id bigint, step_name text, results jsonb,
 *                     reason text)
 */
Datum
tasker_resolve_step_by_name_sql(PG_FUNCTION_ARGS)
{
	bool		changed;

	if (any_null(fcinfo, 3))
		PG_RETURN_NULL();
	AS_OWNER(changed = tasker_resolve_step(tasker_step_by_name(PG_GETARG_INT64(0),
															   arg_text(fcinfo, 1)),
										   PG_GETARG_JSONB_P(2), arg_text(fcinfo, 3)));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_cancel_step(task_id bigint, step_name text, reason text)
 */
Datum
tasker_cancel_step_by_name_sql(PG_FUNCTION_ARGS)
{
	bool		changed;

	if (any_null(fcinfo, 2))
		PG_RETURN_NULL();
	AS_OWNER(changed = tasker_cancel_step(tasker_step_by_name(PG_GETARG_INT64(0),
															  arg_text(fcinfo, 1)),
										  arg_text(fcinfo, 2)));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_run_task(task_id bigint, timeout interval)
 */
Datum
tasker_run_task_sql(PG_FUNCTION_ARGS)
{
	int64		task_id = PG_GETARG_INT64(0);
	int64		timeout_ms = interval_ms(fcinfo, 1);
	const char *state;

	AS_OWNER(state = tasker_run_task(task_id, timeout_ms));
	PG_RETURN_TEXT_P(cstring_to_text(state));
}

/*
 * run_steps_until_done: batches, as a worker runs them, in the caller's
 * transaction, until nothing is ready or max_steps steps ran (the steps a
 * batch finished may have made their children ready).  Returns the number
 * run.
 */
static int
run_steps_until_done(int max_steps)
{
	int			total = 0;
	int			n;

	do
	{
		CHECK_FOR_INTERRUPTS();
		(void) tasker_start_ready_tasks(0, max_steps - total);
		n = tasker_run_in_transaction_kinds(0, max_steps - total, tasker_run_as_filter());
		total += n;
	} while (n > 0 && total < max_steps);
	return total;
}

/*
 * tasker_run_steps(max_steps integer): ready steps of any task, batch
 * after batch as a worker runs them, in the caller's transaction, until
 * nothing is ready or max_steps ran.
 */
Datum
tasker_run_steps_sql(PG_FUNCTION_ARGS)
{
	int32		max_steps = PG_GETARG_INT32(0);
	int			n;

	if (max_steps < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_steps must be at least 1"),
				 errdetail("The value given is %d.", max_steps),
				 errhint("Pass the largest number of steps to run in this call.")));
	tasker_refuse_in_handler("tasker_run_steps");
	AS_OWNER(n = run_steps_until_done(max_steps));
	PG_RETURN_INT32(n);
}

/*
 * tasker_wait_for_task(task_id bigint, timeout interval)
 */
Datum
tasker_wait_for_task_sql(PG_FUNCTION_ARGS)
{
	int64		task_id = PG_GETARG_INT64(0);
	int64		timeout_ms = interval_ms(fcinfo, 1);
	const char *state;

	AS_OWNER(state = tasker_wait_for_task(task_id, timeout_ms));
	PG_RETURN_TEXT_P(cstring_to_text(state));
}

static const char *const worker_state_names[] = {
	"stopped", "starting", "waiting_for_extension", "idle", "running", "paused",
	"waiting_for_database", "waiting_for_update"
};

/*
 * tasker_worker_status(): one row for the launcher and one per executor
 * slot; no rows when the workers are not running on this server.
 */
Datum
tasker_worker_status_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TaskerWorkerSlot slots[TASKER_MAX_SLOTS];
	pid_t		launcher;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	n = tasker_worker_slots(slots, TASKER_MAX_SLOTS, &launcher);
	if (!tasker_workers_present())
		PG_RETURN_NULL();
	for (i = -1; i < n; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		pid_t		pid = (i < 0) ? launcher : slots[i].pid;

		values[0] = CStringGetTextDatum(i < 0 ? "launcher" : "worker");
		values[1] = Int32GetDatum(i < 0 ? 0 : i);
		values[2] = Int32GetDatum(pid);
		nulls[2] = (pid == 0);
		values[3] = CStringGetTextDatum(i < 0 ? (launcher ? "running" : "stopped")
										: worker_state_names[slots[i].state]);
		values[4] = Int64GetDatum(i < 0 ? 0 : (int64) slots[i].steps_run);
		values[5] = TimestampTzGetDatum(i < 0 ? 0 : slots[i].last_activity);
		nulls[5] = (i < 0 || slots[i].last_activity == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/*
 * tasker_running_step(): the id of the step whose handler is running in
 * this session, or NULL outside a handler.
 */
Datum
tasker_running_step_sql(PG_FUNCTION_ARGS)
{
	int64		step_id = tasker_running_step();

	if (step_id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(step_id);
}

/*
 * tasker_permanent_error(message text): fail the current step for good.
 */
Datum
tasker_permanent_error_sql(PG_FUNCTION_ARGS)
{
	char	   *message = PG_ARGISNULL(0) ? "permanent error" : arg_text(fcinfo, 0);

	ereport(ERROR,
			(errcode(ERRCODE_TASKER_PERMANENT_ERROR),
			 errmsg("%s", message),
			 errdetail("The step handler reported a permanent error; the step will not be retried.")));
	PG_RETURN_VOID();
}

/*
 * tasker_retry_error(message text, retry_after_seconds integer): fail the
 * current attempt and ask for the retry after the given delay.
 */
Datum
tasker_retry_error_sql(PG_FUNCTION_ARGS)
{
	char	   *message = PG_ARGISNULL(0) ? "retry requested" : arg_text(fcinfo, 0);
	int32		seconds = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);

	if (!PG_ARGISNULL(1) && seconds < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_after_seconds must not be negative"),
				 errdetail("The value given is %d.", seconds),
				 errhint("Pass 0 to retry at once, or NULL for the normal backoff.")));
	tasker_request_retry_after(seconds);
	ereport(ERROR,
			(errcode(ERRCODE_TASKER_RETRY_ERROR),
			 errmsg("%s", message),
			 seconds >= 0 ? errdetail("The step handler asked for a retry after %d seconds.", seconds)
			 : errdetail("The step handler asked for a retry.")));
	PG_RETURN_VOID();
}

/*
 * tasker_validate_json(schema jsonb, instance jsonb): every violation of the
 * schema by the instance, as a text array that is empty when it conforms.
 */
Datum
tasker_validate_json_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *instance = PG_GETARG_JSONB_P(1);
	List	   *violations = tasker_json_schema_violations(schema, instance);
	Datum	   *elems;
	ListCell   *lc;
	int			i = 0;

	if (violations == NIL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	elems = palloc(list_length(violations) * sizeof(Datum));
	foreach(lc, violations)
		elems[i++] = CStringGetTextDatum((const char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, i, TEXTOID, -1, false,
										  TYPALIGN_INT));
}

/*
 * tasker_json_schema_assert_sql(schema jsonb, instance jsonb, what text):
 * a test hook that shows the error task creation raises for a context that
 * breaks its schema.  The install script does not declare it; the
 * pg_regress file sql/020_json_schema.sql does, in pg_temp.
 */
Datum
tasker_json_schema_assert_sql(PG_FUNCTION_ARGS)
{
	tasker_json_schema_validate_or_error(PG_GETARG_JSONB_P(0),
										 PG_GETARG_JSONB_P(1),
										 text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PG_RETURN_VOID();
}

/*
 * tasker_register_template(yaml text, replace boolean): named_task_id
 */
Datum
tasker_register_template_sql(PG_FUNCTION_ARGS)
{
	text	   *yaml;
	int32		id;

	tasker_require_arg(fcinfo, 0, "yaml", "Pass the YAML or JSON text of a template.");
	tasker_require_arg(fcinfo, 1, "replace", "Pass replace => true or false.");
	yaml = PG_GETARG_TEXT_PP(0);
	AS_OWNER(id = tasker_register_template_text(VARDATA_ANY(yaml),
												VARSIZE_ANY_EXHDR(yaml),
												PG_GETARG_BOOL(1)));
	PG_RETURN_INT32(id);
}

/*
 * tasker_register_template_file(path text, replace boolean): named_task_id
 */
Datum
tasker_register_template_file_sql(PG_FUNCTION_ARGS)
{
	int32		id;

	tasker_require_arg(fcinfo, 0, "path", "Pass the path of a template file on the server.");
	tasker_require_arg(fcinfo, 1, "replace", "Pass replace => true or false.");
	AS_OWNER(id = tasker_register_template_path(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												PG_GETARG_BOOL(1)));
	PG_RETURN_INT32(id);
}

/*
 * tasker_register_templates(yaml text, replace boolean): the named_task_id
 * of each document's template, in order
 */
Datum
tasker_register_templates_sql(PG_FUNCTION_ARGS)
{
	text	   *yaml;
	int32	   *ids;
	Datum	   *datums;
	int			n;
	int			i;

	tasker_require_arg(fcinfo, 0, "yaml", "Pass the YAML text of one or more templates, separated by --- lines.");
	tasker_require_arg(fcinfo, 1, "replace", "Pass replace => true or false.");
	yaml = PG_GETARG_TEXT_PP(0);
	AS_OWNER(ids = tasker_register_templates_text(VARDATA_ANY(yaml),
												  VARSIZE_ANY_EXHDR(yaml),
												  PG_GETARG_BOOL(1), &n));
	datums = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		datums[i] = Int32GetDatum(ids[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(datums, n, INT4OID, sizeof(int32),
										  true, TYPALIGN_INT));
}

/*
 * tasker_register_handler(handler_class text, function regprocedure)
 */
Datum
tasker_register_handler_sql(PG_FUNCTION_ARGS)
{
	tasker_require_arg(fcinfo, 0, "handler_class", "Pass the class name templates use in handler_class.");
	tasker_require_arg(fcinfo, 1, "function", "Pass a function such as 'myschema.fetch_order(jsonb)', or the queue of the external workers that run the class.");
	AS_OWNER(tasker_register_handler(text_to_cstring(PG_GETARG_TEXT_PP(0)),
									 PG_GETARG_OID(1)));
	PG_RETURN_VOID();
}

/*
 * tasker_register_handler(handler_class text, target text): the text
 * overload.  A target with a parenthesis names a function, as the
 * regprocedure overload's argument does (a string literal reaches this
 * overload first); any other target is a queue whose external workers
 * run the class's steps.
 */
Datum
tasker_register_handler_queue_sql(PG_FUNCTION_ARGS)
{
	char	   *target;

	tasker_require_arg(fcinfo, 0, "handler_class", "Pass the class name templates use in handler_class.");
	tasker_require_arg(fcinfo, 1, "function", "Pass a function such as 'myschema.fetch_order(jsonb)', or the queue of the external workers that run the class.");
	target = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strchr(target, '(') != NULL)
	{
		Oid			fn = DatumGetObjectId(DirectFunctionCall1(regprocedurein,
															  CStringGetDatum(target)));

		AS_OWNER(tasker_register_handler(text_to_cstring(PG_GETARG_TEXT_PP(0)), fn));
	}
	else
		AS_OWNER(tasker_register_handler_queue(text_to_cstring(PG_GETARG_TEXT_PP(0)),
											   target));
	PG_RETURN_VOID();
}

/*
 * tasker_http_stats(): HTTP requests by outcome since the server started.
 */
Datum
tasker_http_stats_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *names[16];
	uint64		counts[16];
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	n = tasker_http_stats(names, counts, 16);
	for (i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int64GetDatum((int64) counts[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * preview_checked: the preview of a step's request, for a caller who may
 * control the step's task.
 */
static Jsonb *
preview_checked(int64 step_id)
{
	SPI_connect();
	tasker_require_step_control(step_id, "preview a step of");
	SPI_finish();
	return tasker_http_preview(step_id);
}

/*
 * tasker_http_preview(step_id bigint): the request an api step would send
 * now, credentials masked.
 */
Datum
tasker_http_preview_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *preview;

	AS_OWNER(preview = preview_checked(PG_GETARG_INT64(0)));
	PG_RETURN_JSONB_P(preview);
}

/*
 * tasker_step_depths(task_id bigint): each step's workflow_step_id,
 * dependency_level and min_depth_from_root (NULL when no root reaches it).
 */
Datum
tasker_step_depths_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StepDepths	d;
	int			i;

	tasker_step_depths(PG_GETARG_INT64(0), &d);
	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < d.n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, d.level[i] < 0, d.depth[i] < 0};

		values[0] = Int64GetDatum(d.ids[i]);
		values[1] = Int32GetDatum(d.level[i]);
		values[2] = Int32GetDatum(d.depth[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}

/*
 * tasker_publish_event(name text, payload jsonb, task_id bigint,
 *                      step_id bigint): a custom event, sent at commit.
 */
Datum
tasker_publish_event_sql(PG_FUNCTION_ARGS)
{
	char	   *name;
	Jsonb	   *payload;
	int64		task_id = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	int64		step_id = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event name and payload must not be NULL"),
				 errhint("Pass the name of a declared custom event and a JSON object.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	payload = PG_GETARG_JSONB_P(1);
	AS_OWNER(tasker_publish_custom_event(name, payload, task_id, step_id,
										 tasker_running_step()));
	PG_RETURN_VOID();
}

/*
 * tasker_sees_all_namespaces() RETURNS boolean: whether the current role
 * sees every namespace (the row-level security policies of the runtime
 * tables call it).
 */
Datum
tasker_sees_all_namespaces_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(tasker_sees_all_namespaces(GetUserId()));
}

/*
 * tasker_events_since(after_id bigint, max_events integer): the durable
 * event log from after_id on.
 */
Datum
tasker_events_since_sql(PG_FUNCTION_ARGS)
{
	tasker_require_arg(fcinfo, 0, "after_id", "Pass 0 to read from the start of the log, or the last event_id you received.");
	tasker_require_arg(fcinfo, 1, "max_events", "Pass how many events to return at most, such as 1000.");
	InitMaterializedSRF(fcinfo, 0);
	AS_OWNER(tasker_events_since(PG_GETARG_INT64(0), PG_GETARG_INT32(1), fcinfo));
	PG_RETURN_NULL();
}

/*
 * plain_interval_ms: an interval in milliseconds (a month as 30 days),
 * clamped to what an int64 of milliseconds holds comfortably.
 */
static int64
plain_interval_ms(Interval *iv)
{
	double		ms = iv->time / 1000.0 + ((double) iv->month * 30 + iv->day) * 86400000.0;

	return (int64) Max(Min(ms, 1e15), -1e15);
}

/*
 * tasker_subscribe(subscriber text, event_pattern text, fn regprocedure,
 *                  max_attempts integer, retry_delay interval,
 *                  start_after bigint)
 */
Datum
tasker_subscribe_sql(PG_FUNCTION_ARGS)
{
	SubscribeRequest req;
	int64		start;

	tasker_require_arg(fcinfo, 0, "subscriber", "Name the subscriber, such as 'audit_log'.");
	tasker_require_arg(fcinfo, 1, "event_pattern", "Pass an event name, or a pattern such as 'step.*' or '*'.");
	tasker_require_arg(fcinfo, 2, "fn", "Pass a function such as 'myschema.on_event(jsonb)'.");
	tasker_require_arg(fcinfo, 3, "max_attempts", "Pass how many calls an event gets before it is parked, such as 5.");
	tasker_require_arg(fcinfo, 4, "retry_delay", "Pass an interval such as '1 second'.");
	req.subscriber = text_to_cstring(PG_GETARG_TEXT_PP(0));
	req.pattern = text_to_cstring(PG_GETARG_TEXT_PP(1));
	req.fn = PG_GETARG_OID(2);
	req.max_attempts = PG_GETARG_INT32(3);
	req.retry_delay_ms = plain_interval_ms(PG_GETARG_INTERVAL_P(4));
	req.has_start = !PG_ARGISNULL(5);
	req.start_after = req.has_start ? PG_GETARG_INT64(5) : 0;
	AS_OWNER(start = tasker_subscribe(&req));
	PG_RETURN_INT64(start);
}

/*
 * tasker_unsubscribe(subscriber text)
 */
Datum
tasker_unsubscribe_sql(PG_FUNCTION_ARGS)
{
	bool		found;

	tasker_require_arg(fcinfo, 0, "subscriber", "Pass the name given to tasker_subscribe.");
	AS_OWNER(found = tasker_unsubscribe(text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_BOOL(found);
}

/*
 * tasker_prune_event_log(older_than interval, max_rows integer): delete
 * old events now; older_than NULL follows tasker.event_log_retention.
 */
Datum
tasker_prune_event_log_sql(PG_FUNCTION_ARGS)
{
	TimestampTz before;
	int64		n;

	tasker_require_arg(fcinfo, 1, "max_rows", "Pass how many events to delete at most, such as 10000.");
	if (PG_ARGISNULL(0))
		before = tasker_event_log_cutoff();
	else
	{
		int64		ms = plain_interval_ms(PG_GETARG_INTERVAL_P(0));

		if (ms < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("older_than must not be negative"),
					 errdetail("Events created in the future do not exist."),
					 errhint("Pass an interval such as '7 days', or NULL for tasker.event_log_retention.")));
		before = GetCurrentTimestamp() - ms * INT64CONST(1000);
	}
	AS_OWNER(n = tasker_event_log_prune(before, Max(PG_GETARG_INT32(1), 0)));
	PG_RETURN_INT64(n);
}

/* ---- issue 11: operations ---- */

PG_FUNCTION_INFO_V1(tasker_annotate_task_sql);
PG_FUNCTION_INFO_V1(tasker_ready_backlog_sql);

/*
 * tasker_annotate_task(task_id bigint, annotation_type text,
 *                      annotation jsonb) RETURNS bigint
 */
Datum
tasker_annotate_task_sql(PG_FUNCTION_ARGS)
{
	char	   *type;
	int64		id;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("task_id, annotation_type and annotation must not be NULL"),
				 errhint("Pass a task id, a type name such as 'order', and a JSON object.")));
	type = text_to_cstring(PG_GETARG_TEXT_PP(1));
	AS_OWNER(id = tasker_annotate_task_internal(PG_GETARG_INT64(0), type,
												PG_GETARG_JSONB_P(2)));
	PG_RETURN_INT64(id);
}

/*
 * tasker_ready_backlog(OUT ready_steps bigint, OUT measured_at
 *                      timestamptz, OUT max_ready_backlog integer)
 */
Datum
tasker_ready_backlog_sql(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	uint64		n;
	TimestampTz at;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "tasker_ready_backlog must return a record");
	desc = BlessTupleDesc(desc);
	if (tasker_ready_backlog(&n, &at))
	{
		values[0] = Int64GetDatum((int64) n);
		values[1] = TimestampTzGetDatum(at);
	}
	else
		nulls[0] = nulls[1] = true;
	values[2] = Int32GetDatum(tasker_max_ready_backlog);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

PG_FUNCTION_INFO_V1(tasker_schedule_sql);
PG_FUNCTION_INFO_V1(tasker_unschedule_sql);
PG_FUNCTION_INFO_V1(tasker_pause_schedule_sql);
PG_FUNCTION_INFO_V1(tasker_resume_schedule_sql);
PG_FUNCTION_INFO_V1(tasker_fire_schedule_sql);

/*
 * tasker_schedule(job_name, schedule, task_name, context, namespace,
 *                 version) RETURNS bigint
 */
Datum
tasker_schedule_sql(PG_FUNCTION_ARGS)
{
	TaskerScheduleRequest req;
	int64		jobid;

	req.job_name = required_text(fcinfo, 0, "job_name");
	req.schedule = required_text(fcinfo, 1, "schedule");
	req.task_name = required_text(fcinfo, 2, "task_name");
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("context must not be NULL"),
				 errhint("Pass '{}' for tasks that need no context.")));
	req.context = PG_GETARG_JSONB_P(3);
	req.namespace = required_text(fcinfo, 4, "namespace");
	req.version = arg_text(fcinfo, 5);
	AS_OWNER(jobid = tasker_schedule_task(&req));
	PG_RETURN_INT64(jobid);
}

/*
 * tasker_unschedule(job_name text) RETURNS boolean
 */
Datum
tasker_unschedule_sql(PG_FUNCTION_ARGS)
{
	char	   *job_name = required_text(fcinfo, 0, "job_name");
	bool		removed;

	AS_OWNER(removed = tasker_unschedule_task(job_name));
	PG_RETURN_BOOL(removed);
}

/*
 * schedule_active_sql: shared body of pause and resume.
 */
static Datum
schedule_active_sql(FunctionCallInfo fcinfo, bool active)
{
	char	   *job_name = required_text(fcinfo, 0, "job_name");
	bool		changed;

	AS_OWNER(changed = tasker_set_schedule_active(job_name, active));
	PG_RETURN_BOOL(changed);
}

/*
 * tasker_pause_schedule(job_name text) RETURNS boolean
 */
Datum
tasker_pause_schedule_sql(PG_FUNCTION_ARGS)
{
	return schedule_active_sql(fcinfo, false);
}

/*
 * tasker_resume_schedule(job_name text) RETURNS boolean
 */
Datum
tasker_resume_schedule_sql(PG_FUNCTION_ARGS)
{
	return schedule_active_sql(fcinfo, true);
}

/*
 * tasker_fire_schedule(job_name text, tick timestamptz) RETURNS bigint:
 * NULL while the schedule is paused.
 */
Datum
tasker_fire_schedule_sql(PG_FUNCTION_ARGS)
{
	char	   *job_name = required_text(fcinfo, 0, "job_name");
	bool		paused;
	int64		task_id;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tick must not be NULL"),
				 errhint("pg_cron's command passes date_trunc('minute', now()).")));
	AS_OWNER(task_id = tasker_fire_schedule_task(job_name, PG_GETARG_TIMESTAMPTZ(1), &paused));
	if (paused)
		PG_RETURN_NULL();
	PG_RETURN_INT64(task_id);
}

/*
 * tasker_span_id(trace_id text, task_id bigint, step_id bigint DEFAULT
 * NULL, attempt_serial integer DEFAULT NULL): the span id of a task or of
 * a step attempt (trace.c).  NULL for a NULL trace_id or task_id.
 */
Datum
tasker_span_id_sql(PG_FUNCTION_ARGS)
{
	char		span[TASKER_SPAN_ID_LEN + 1];
	char	   *trace_id;
	int64		step_id = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	trace_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	tasker_trace_span_id_checked(trace_id, PG_GETARG_INT64(1), step_id,
								 PG_ARGISNULL(3), PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3),
								 span);
	PG_RETURN_TEXT_P(cstring_to_text(span));
}
