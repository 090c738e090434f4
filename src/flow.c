/*-------------------------------------------------------------------------
 *
 * flow.c
 *		The flow handler kind: steps whose rule tasker applies itself
 *		when they become ready (issue 10), and tasker_signal.
 *
 * A step of kind flow is claimed like any other (step.c's claim, in the
 * executor's transaction), then:
 * - a map step (map_over) reads its array from the envelope, counts an
 *   attempt, and fans out into one instance per element (rows of the
 *   handler's kind, item and item_index in their envelopes), of which
 *   map_max_parallel are claimable at once; it stays in_progress until
 *   step.c has recorded the last instance.  An empty array completes it
 *   with [].  A missing or non-array value, or more than
 *   tasker.max_map_items elements, fails it for good.  Claimed again
 *   after tasker_retry_task, it keeps its instances and resumes them.
 * - a wait step completes at once with a signal sent before it was
 *   reached; otherwise it stays in_progress, holding no worker, until
 *   tasker_signal completes it or its timeout_seconds (its lease) runs
 *   out: flow_run_ready then fails it for good, reason timeout.
 * - a subtask step creates its child task (identity key from the step,
 *   so a retried step finds the same child) and stays in_progress until
 *   the child finishes (step.c, when it settles the child).
 * Every outcome goes through step.c; this file writes no state itself.
 *
 * IDENTIFICATION
 *		src/flow.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "events.h"
#include "flow.h"
#include "flow_rules.h"
#include "guc.h"
#include "handler.h"
#include "security.h"
#include "spi_util.h"
#include "step.h"
#include "task.h"

/* What a flow step's template says, and the value its path leads to. */
typedef struct FlowRule
{
	char	   *type;			/* map, wait, subtask */
	Jsonb	   *value;			/* map: the array; subtask: the context */
	char	   *value_type;		/* jsonb_typeof(value), NULL when missing */
	int			count;			/* map: the array's length */
	int			max_parallel;	/* map: 0 for no bound */
	char	   *path;			/* map_over or context_from */
	char	   *signal;			/* wait */
	char	   *task_name;		/* subtask */
	char	   *task_namespace;
	char	   *task_version;
	char	   *step_name;
} FlowRule;

static SPIPlanPtr rule_plan;
static SPIPlanPtr items_plan;
static SPIPlanPtr count_items_plan;
static SPIPlanPtr resume_plan;
static SPIPlanPtr take_signal_plan;
static SPIPlanPtr find_wait_plan;
static SPIPlanPtr keep_signal_plan;
static SPIPlanPtr child_state_plan;

/*
 * text_col: column n of the first result row, or NULL.
 */
static char *
text_col(int n)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, n);
}

/*
 * read_rule: the template rule of a claimed flow step, with its path
 * evaluated against the step's envelope.
 */
static void
read_rule(ClaimedStep *c, FlowRule *r)
{
	Oid			argtypes[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum(c->step_id), JsonbPGetDatum(c->call.envelope)};
	bool		isnull;
	Datum		d;

	tasker_run_plan(tasker_keep_plan(&rule_plan,
			 "SELECT l.flow->>'type', v.value, jsonb_typeof(v.value),"
			 "       CASE WHEN jsonb_typeof(v.value) = 'array' THEN jsonb_array_length(v.value) END,"
			 "       COALESCE((l.flow->>'map_max_parallel')::integer, 0),"
			 "       COALESCE(l.flow->>'map_over', l.flow->>'context_from'),"
			 "       l.flow->>'signal', l.flow->'task'->>'name', l.flow->'task'->>'namespace',"
			 "       l.flow->'task'->>'version', n.name::text"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 "  JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id"
			 "  JOIN @extschema@.tasker_named_tasks_named_steps l"
			 "    ON l.named_task_id = t.named_task_id AND l.named_step_id = s.named_step_id"
			 "  JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id"
			 " CROSS JOIN LATERAL (SELECT CASE"
			 "       WHEN l.flow ? 'map_over' THEN $2 #> string_to_array(l.flow->>'map_over', '.')"
			 "       WHEN l.flow ? 'context_from' THEN $2 #> string_to_array(l.flow->>'context_from', '.')"
			 "       ELSE $2->'context' END AS value) v"
			 " WHERE s.workflow_step_id = $1",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "the template row of flow step " INT64_FORMAT " is missing", c->step_id);
	memset(r, 0, sizeof(*r));
	r->type = text_col(1);
	d = tasker_col(0, 2, &isnull);
	r->value = isnull ? NULL : DatumGetJsonbPCopy(d);
	r->value_type = text_col(3);
	d = tasker_col(0, 4, &isnull);
	r->count = isnull ? 0 : DatumGetInt32(d);
	r->max_parallel = DatumGetInt32(tasker_col(0, 5, &isnull));
	r->path = text_col(6);
	r->signal = text_col(7);
	r->task_name = text_col(8);
	r->task_namespace = text_col(9);
	r->task_version = text_col(10);
	r->step_name = text_col(11);
	if (r->type == NULL)
		elog(ERROR, "flow step " INT64_FORMAT " has no rule in its template", c->step_id);
}

/*
 * complete_with: record the success of a started flow step.
 */
static void
complete_with(ClaimedStep *c, Jsonb *results)
{
	StepOutcome o;

	memset(&o, 0, sizeof(o));
	o.ok = true;
	o.results = results;
	tasker_record_success(c, &o);
}

/*
 * empty_array: the JSON value [].
 */
static Jsonb *
empty_array(void)
{
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("[]")));
}

/*
 * count_items: how many instances a map step already has.
 */
static int64
count_items(int64 step_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&count_items_plan,
			 "SELECT count(*) FROM @extschema@.tasker_workflow_steps WHERE map_parent_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return DatumGetInt64(tasker_col(0, 1, &isnull));
}

/*
 * insert_items: one instance per element of the array, in one
 * statement; the first max_parallel (all, when 0) claimable now.
 */
static void
insert_items(ClaimedStep *c, FlowRule *r)
{
	Oid			argtypes[3] = {INT8OID, JSONBOID, INT4OID};
	Datum		values[3] = {Int64GetDatum(c->step_id), JsonbPGetDatum(r->value),
	Int32GetDatum(r->max_parallel)};

	tasker_run_plan(tasker_keep_plan(&items_plan,
			 "WITH m AS ("
			 "  SELECT s.workflow_step_id, s.task_id, s.named_step_id, s.priority, t.named_task_id"
			 "    FROM @extschema@.tasker_workflow_steps s"
			 "    JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id"
			 "   WHERE s.workflow_step_id = $1),"
			 "ins AS ("
			 "  INSERT INTO @extschema@.tasker_workflow_steps (task_id, named_step_id, retryable,"
			 "     retry_limit, skippable, timeout_seconds, unfinished_parents, next_attempt_at,"
			 "     handler_kind, queue, map_parent_id, map_index, map_item, priority)"
			 "  SELECT m.task_id, m.named_step_id, l.default_retryable, l.default_retry_limit,"
			 "         l.skippable, l.timeout_seconds, 0,"
			 "         CASE WHEN $3 <= 0 OR e.ord <= $3 THEN now() END,"
			 "         " TASKER_HANDLER_KIND_SQL("l") ","
			 "         CASE WHEN l.handler_config->>'type' = 'worker'"
			 "              THEN l.handler_config->>'queue' END,"
			 "         m.workflow_step_id, (e.ord - 1)::integer, e.item, m.priority"
			 "    FROM m"
			 "    JOIN @extschema@.tasker_named_tasks_named_steps l"
			 "      ON l.named_task_id = m.named_task_id AND l.named_step_id = m.named_step_id"
			 "   CROSS JOIN LATERAL jsonb_array_elements($2) WITH ORDINALITY AS e(item, ord)"
			 "  RETURNING 1)"
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET map_open = (SELECT count(*) FROM ins),"
			 "       map_next = CASE WHEN $3 > 0 THEN LEAST($3, (SELECT count(*) FROM ins)) END"
			 " WHERE workflow_step_id = $1",
			 3, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * resume_items: a map step claimed again (tasker_retry_task) keeps its
 * instances: count those not finished, and release the waiting ones
 * (up to max_parallel in flight).  Returns how many are not finished.
 */
static int
resume_items(ClaimedStep *c, FlowRule *r)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(c->step_id), Int32GetDatum(r->max_parallel)};
	bool		isnull;
	int			open;
	int			flight;

	tasker_run_plan(tasker_keep_plan(&resume_plan,
			 "WITH i AS ("
			 "  SELECT count(*) FILTER (WHERE current_state NOT IN " TASKER_FINISHED_STATES_SQL ") AS open,"
			 "         count(*) FILTER (WHERE current_state = 'in_progress'"
			 "             OR (current_state IN ('pending', 'error') AND next_attempt_at IS NOT NULL)) AS flight"
			 "    FROM @extschema@.tasker_workflow_steps WHERE map_parent_id = $1)"
			 "UPDATE @extschema@.tasker_workflow_steps s"
			 "   SET map_open = i.open, map_next = CASE WHEN $2 > 0 THEN 0 END"
			 "  FROM i WHERE s.workflow_step_id = $1"
			 " RETURNING i.open::integer, i.flight::integer",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE_RETURNING);
	open = DatumGetInt32(tasker_col(0, 1, &isnull));
	flight = DatumGetInt32(tasker_col(0, 2, &isnull));
	if (open > 0)
		tasker_release_map_items(c->step_id,
								 r->max_parallel > 0 ? Max(r->max_parallel - flight, 0) : open);
	return open;
}

/*
 * run_map: fan a map step out (see the file header).
 */
static void
run_map(ClaimedStep *c, FlowRule *r)
{
	tasker_start_attempts(c, 1, 0);
	if (r->value_type == NULL || strcmp(r->value_type, "array") != 0)
		tasker_record_permanent_failure(c, "22023",
					  psprintf("map_over %s of step \"%s\" is %s, not a JSON array",
							   r->path, r->step_name,
							   r->value_type ? r->value_type : "missing"),
					  pstrdup("Give the task a context (or the parent step results) with an array at that path."),
					  "map_over_not_array");
	else if (r->count > tasker_max_map_items)
		tasker_record_permanent_failure(c, "54000",
					  psprintf("map_over %s of step \"%s\" has %d elements; tasker.max_map_items allows %d",
							   r->path, r->step_name, r->count, tasker_max_map_items),
					  pstrdup("Split the work, or have a superuser raise tasker.max_map_items."),
					  "too_many_map_items");
	else if (count_items(c->step_id) > 0)
	{
		if (resume_items(c, r) == 0)
			complete_with(c, tasker_map_results(c->step_id));
	}
	else if (r->count == 0)
		complete_with(c, empty_array());
	else
		insert_items(c, r);
}

/*
 * take_signal: the payload of a signal kept for a task, removed; NULL
 * when none was sent.
 */
static Jsonb *
take_signal(int64 task_id, const char *signal)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(task_id), CStringGetTextDatum(signal)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&take_signal_plan,
			 "DELETE FROM @extschema@.tasker_signals WHERE task_id = $1 AND signal = $2"
			 " RETURNING payload",
			 2, argtypes),
		values, NULL, SPI_OK_DELETE_RETURNING);
	return SPI_processed == 1 ? DatumGetJsonbPCopy(tasker_col(0, 1, &isnull)) : NULL;
}

/*
 * run_wait: a wait step reached: complete it with a signal already sent,
 * or hold it in_progress, under a lease as long as its timeout.
 */
static void
run_wait(ClaimedStep *c, FlowRule *r)
{
	Jsonb	   *payload = take_signal(c->task_id, r->signal);

	tasker_start_attempts(c, 1, payload ? 0 : c->call.timeout_seconds);
	if (payload != NULL)
		complete_with(c, payload);
}

/* The child task a subtask step creates, for create_child through tasker_try. */
typedef struct ChildArgs
{
	TaskRequest req;
	int64		task_id;
} ChildArgs;

static void
create_child(void *arg)
{
	ChildArgs  *a = (ChildArgs *) arg;

	a->task_id = tasker_create_task_internal(&a->req);
}

/*
 * child_state: the state of a task.
 */
static char *
child_state(int64 task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};

	tasker_run_plan(tasker_keep_plan(&child_state_plan,
			 "SELECT current_state::text FROM @extschema@.tasker_tasks WHERE task_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return SPI_processed == 1 ? text_col(1) : NULL;
}

/*
 * envelope_traceparent: the traceparent of a claimed step's attempt (its
 * envelope's, step.c), or NULL: a subtask's child task joins the trace of
 * its parent task, as a child of the subtask step's span.
 */
static const char *
envelope_traceparent(ClaimedStep *c)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&c->call.envelope->root, "traceparent", 11, &v) == NULL ||
		v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * run_subtask: create a subtask step's child task (or find the one an
 * earlier attempt created) and wait for it; a child that already
 * finished settles the step at once.
 */
static void
run_subtask(ClaimedStep *c, FlowRule *r)
{
	ChildArgs	a;
	ErrorData  *edata;
	char	   *state;

	tasker_start_attempts(c, 1, 0);
	if (r->value_type == NULL || strcmp(r->value_type, "object") != 0)
	{
		tasker_record_permanent_failure(c, "22023",
					  psprintf("the context of subtask step \"%s\" (%s) is %s, not a JSON object",
							   r->step_name, r->path ? r->path : "context",
							   r->value_type ? r->value_type : "missing"),
					  pstrdup("Point context_from at an object."), "subtask_context");
		return;
	}
	memset(&a, 0, sizeof(a));
	a.req.name = r->task_name;
	a.req.namespace = r->task_namespace;
	a.req.version = r->task_version;
	a.req.context = r->value;
	a.req.initiator = "tasker";
	a.req.source_system = "tasker";
	a.req.reason = psprintf("subtask step " INT64_FORMAT " of task " INT64_FORMAT,
							c->step_id, c->task_id);
	a.req.tags = empty_array();
	a.req.bypass_steps = empty_array();
	a.req.requested_at = GetCurrentTimestamp();
	a.req.identity_key = psprintf("tasker.subtask." INT64_FORMAT, c->step_id);
	a.req.parent_step_id = c->step_id;
	a.req.traceparent = envelope_traceparent(c);
	edata = tasker_try(create_child, &a);
	if (edata != NULL)
	{
		tasker_record_permanent_failure(c, "TK001", psprintf("subtask step \"%s\" could not create its task: %s",
										   r->step_name, edata->message),
					  edata->hint ? pstrdup(edata->hint) : NULL, "subtask_not_created");
		return;
	}
	state = child_state(a.task_id);
	if (state != NULL && strcmp(state, "complete") == 0)
		complete_with(c, tasker_task_results(a.task_id));
	else if (state != NULL && strcmp(state, "error") == 0)
		tasker_record_permanent_failure(c, "TK001", psprintf("child task " INT64_FORMAT " failed", a.task_id),
					  psprintf("Inspect task " INT64_FORMAT "; retry it, then retry this task.", a.task_id),
					  "subtask_failed");
}

/*
 * run_rule: apply a claimed flow step's rule; for tasker_try.
 */
static void
run_rule(void *arg)
{
	ClaimedStep *c = (ClaimedStep *) arg;
	FlowRule	r;

	read_rule(c, &r);
	if (strcmp(r.type, "map") == 0)
		run_map(c, &r);
	else if (strcmp(r.type, "wait") == 0)
		run_wait(c, &r);
	else if (strcmp(r.type, "subtask") == 0)
		run_subtask(c, &r);
	else
		elog(ERROR, "flow step " INT64_FORMAT " has unknown type \"%s\"", c->step_id, r.type);
}

/*
 * fail_timeouts: the waiting flow steps whose deadline passed fail for
 * good, reason timeout.  Returns how many; *tasks gets their tasks.
 */
static int
fail_timeouts(int limit, int64 **tasks)
{
	ClaimedStep *steps;
	int			n = tasker_claim_expired_leases("flow", limit, &steps);
	int			i;

	*tasks = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		(*tasks)[i] = steps[i].task_id;
		tasker_record_permanent_failure(&steps[i], "TK004",
					  pstrdup("no signal came before the wait step's timeout"),
					  pstrdup("Resolve the step by hand (tasker_resolve_step), or retry the task to wait again."),
					  "timeout");
	}
	return n;
}

/*
 * flow_run_ready: the flow kind's batch, in the caller's transaction:
 * fail the waits whose time ran out, then claim up to limit ready flow
 * steps and apply their rules, each in a subtransaction (a rule that
 * fails on tasker's side quarantines its step), and settle the tasks.
 */
static int
flow_run_ready(int64 task_id, int limit, Oid run_as)
{
	ClaimedStep *steps;
	int64	   *expired;
	int64	   *tasks;
	int			n;
	int			nexp;
	int			i;

	tasker_refuse_in_handler(task_id != 0 ? "tasker_run_task" : "tasker_run_steps");
	SPI_connect();
	nexp = fail_timeouts(limit, &expired);
	tasker_finalize_tasks(expired, nexp);
	n = tasker_claim_ready_steps("flow", task_id, limit, run_as, NULL, &steps);
	tasks = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		ErrorData  *edata;

		tasks[i] = steps[i].task_id;
		if (steps[i].skip)
			continue;
		edata = tasker_try(run_rule, &steps[i]);
		if (edata != NULL)
			tasker_quarantine_step(&steps[i], edata);
	}
	tasker_finalize_tasks(tasks, n);
	if (n > 0)
		tasker_wake_workers_at_commit();
	SPI_finish();
	return n + nexp;
}

/*
 * The flow kind: in the executor's transaction, like sql; its steps hold
 * no worker while they wait.
 */
const TaskerHandlerKind tasker_flow_kind = {
	.name = "flow",
	.leased = false,
	.run_ready = flow_run_ready,
};

/*
 * find_wait: the wait step of a task for a signal: its id, state and
 * attempts, and the task's state.  False when there is none.
 */
static bool
find_wait(int64 task_id, const char *signal, int64 *step_id, char **state,
		  int *attempts, char **task_state)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(task_id), CStringGetTextDatum(signal)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&find_wait_plan,
			 "SELECT s.workflow_step_id, s.current_state::text, s.attempts, t.current_state::text"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 "  JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id"
			 "  JOIN @extschema@.tasker_named_tasks_named_steps l"
			 "    ON l.named_task_id = t.named_task_id AND l.named_step_id = s.named_step_id"
			 " WHERE s.task_id = $1 AND s.step_type = 'wait' AND s.map_parent_id IS NULL"
			 "   AND l.flow->>'signal' = $2"
			 " ORDER BY s.workflow_step_id LIMIT 1",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*step_id = DatumGetInt64(tasker_col(0, 1, &isnull));
	*state = text_col(2);
	*attempts = DatumGetInt32(tasker_col(0, 3, &isnull));
	*task_state = text_col(4);
	return true;
}

/*
 * keep_signal: store a signal for a wait step not yet reached (a later
 * signal of the same name replaces it).
 */
static void
keep_signal(int64 task_id, const char *signal, Jsonb *payload)
{
	Oid			argtypes[3] = {INT8OID, TEXTOID, JSONBOID};
	Datum		values[3] = {Int64GetDatum(task_id), CStringGetTextDatum(signal),
	JsonbPGetDatum(payload)};

	tasker_run_plan(tasker_keep_plan(&keep_signal_plan,
			 "INSERT INTO @extschema@.tasker_signals (task_id, signal, payload)"
			 " VALUES ($1, $2, $3)"
			 " ON CONFLICT (task_id, signal)"
			 " DO UPDATE SET payload = EXCLUDED.payload, received_at = clock_timestamp()",
			 3, argtypes),
		values, NULL, SPI_OK_INSERT);
}

/*
 * signal_waiting: complete a waiting step with the payload; false when
 * it is no longer the wait this signal is for.
 */
static bool
signal_waiting(int64 task_id, int64 step_id, int attempts, Jsonb *payload)
{
	ClaimedStep c;
	StepOutcome o;

	memset(&c, 0, sizeof(c));
	c.step_id = step_id;
	c.task_id = task_id;
	c.attempts = attempts - 1;
	c.step_type = "wait";
	if (!tasker_step_still_ours(&c))
		return false;
	memset(&o, 0, sizeof(o));
	o.ok = true;
	o.results = payload;
	if (tasker_accept_results(&c, &o))
		tasker_record_success(&c, &o);
	tasker_finalize_task(task_id);
	return true;
}

/*
 * tasker_signal: deliver a signal to a task's wait step (see the file
 * header).  Returns false when the task has no wait step for it, or the
 * step or its task already finished.  Runs inside an API scope.
 */
bool
tasker_signal(int64 task_id, const char *signal, Jsonb *payload)
{
	int64		step_id;
	char	   *state;
	char	   *task_state;
	int			attempts;
	bool		done = false;

	SPI_connect();
	tasker_require_task_control(task_id, "signal");
	tasker_lock_tasks(&task_id, 1);
	if (find_wait(task_id, signal, &step_id, &state, &attempts, &task_state) &&
		(strcmp(task_state, "pending") == 0 || strcmp(task_state, "in_progress") == 0))
	{
		if (strcmp(state, "in_progress") == 0)
			done = signal_waiting(task_id, step_id, attempts, payload);
		else if (strcmp(state, "pending") == 0)
		{
			keep_signal(task_id, signal, payload);
			done = true;
		}
	}
	SPI_finish();
	return done;
}
