/*-------------------------------------------------------------------------
 *
 * handler_worker.c
 *		The worker handler kind: steps run by external workers, in any
 *		language, through a claim protocol in SQL (issue 9).
 *
 * An external worker calls tasker_claim_steps(queue, worker_id, ...): one
 * transaction claims ready steps of the queue through the lifecycle's
 * shared claim (step.c), starts their attempts under a lease with a fresh
 * claim token each, and returns their envelopes.  The worker runs them
 * outside the database and reports each outcome with its step id and
 * token: tasker_complete_step / tasker_complete_steps / tasker_fail_step,
 * recorded by step.c exactly as for the other kinds (retry policy, backoff
 * or the requested delay, children released, task settled).  An outcome
 * is recorded only while its claim is current: the step in_progress with
 * that token.  The same claim reported twice (a client retrying its call)
 * returns false; a claim that is no longer current (the lease expired and
 * the step was reclaimed, the task was cancelled, the step released)
 * raises TK003.  tasker_extend_lease is the heartbeat and
 * tasker_release_step gives a step back without counting its attempt.
 * tasker's own executors reclaim expired leases, once a second, as failed
 * attempts (this kind's turn).  Claims are counted (shmem.c, for
 * tasker_metrics) when the claiming transaction commits.
 *
 * A claim with a wait that finds nothing sleeps on its latch, registered
 * in claim_wait.c, until a commit wakes it or the next retry of its queue
 * falls due, and stays interruptible.  It must run in READ COMMITTED, so
 * that each look sees what committed meanwhile.
 *
 * Every SQL entry point runs as the extension's owner (security.c), so a
 * role granted EXECUTE on these functions and nothing else can run a
 * worker.
 *
 * IDENTIFICATION
 *		src/handler_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "claim_wait.h"
#include "events.h"
#include "guc.h"
#include "handler.h"
#include "security.h"
#include "shmem.h"
#include "spi_util.h"
#include "state.h"
#include "step.h"

#define ERRCODE_TASKER_LEASE_LOST	MAKE_SQLSTATE('T','K','0','0','3')

/* How often the executors look for expired leases of worker steps. */
#define WORKER_RECLAIM_EVERY_MS	1000
#define WORKER_RECLAIM_BATCH	100
/* A waiting claim without a slot to be woken through polls this often. */
#define WORKER_POLL_MS			50
/* Most steps one claim takes. */
#define WORKER_MAX_CLAIM		1000

PG_FUNCTION_INFO_V1(tasker_claim_steps_sql);
PG_FUNCTION_INFO_V1(tasker_complete_step_sql);
PG_FUNCTION_INFO_V1(tasker_fail_step_sql);
PG_FUNCTION_INFO_V1(tasker_complete_steps_sql);
PG_FUNCTION_INFO_V1(tasker_extend_lease_sql);
PG_FUNCTION_INFO_V1(tasker_release_step_sql);

static SPIPlanPtr claimed_plan;
static SPIPlanPtr task_of_plan;
static SPIPlanPtr claim_state_plan;
static SPIPlanPtr tasks_of_plan;
static SPIPlanPtr current_claims_plan;

static TimestampTz last_reclaim = 0;

/* How a claim stands, when an outcome comes for it. */
typedef enum ClaimStatus
{
	CLAIM_CURRENT,				/* in_progress under this token */
	CLAIM_RECORDED,				/* this claim's outcome is recorded already */
	CLAIM_LOST					/* no longer this claim's */
} ClaimStatus;

/* One claimed step as tasker_claim_steps returns it. */
typedef struct ClaimRow
{
	int64		step_id;
	Datum		token;
	TimestampTz lease_expires_at;
	Jsonb	   *envelope;
} ClaimRow;

/*
 * interval_ms: an interval as milliseconds (months as 30 days).
 */
static int64
interval_ms(const Interval *iv)
{
	int64		usec = iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;

	return usec / 1000;
}

/*
 * lease_seconds: a lease interval as whole seconds (rounded up), between
 * 1 second and 1 day, or a clear error.
 */
static int
lease_seconds(const Interval *iv)
{
	int64		ms = interval_ms(iv);

	if (ms <= 0 || ms > (int64) SECS_PER_DAY * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be between 1 second and 1 day"),
				 errdetail("The lease given is " INT64_FORMAT " ms.", ms),
				 errhint("Pass a lease such as '5 minutes', and extend it with tasker_extend_lease while the step runs.")));
	return (int) ((ms + 999) / 1000);
}

/*
 * claim_batch: claim up to max ready steps of a queue, start their
 * attempts under a lease of lease_s seconds, and copy out what
 * tasker_claim_steps returns.  Runs as the extension's owner, in the
 * caller's transaction.  Returns the number of rows in *out.
 */
static int
claim_batch(const char *queue, const char *worker_id, int max, int lease_s,
			ClaimRow **out)
{
	Oid			argtypes[2] = {INT8ARRAYOID, TEXTOID};
	Datum		values[2];
	ClaimedStep *steps;
	int64	   *ids;
	int64	   *skipped;
	ClaimRow   *rows;
	int			n;
	int			nids = 0;
	int			nskipped = 0;
	int			i;
	uint64		r;
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	n = tasker_claim_ready_steps("worker", 0, max, InvalidOid, queue, &steps);
	ids = palloc(sizeof(int64) * Max(n, 1));
	skipped = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (steps[i].skip)
			skipped[nskipped++] = steps[i].task_id;
		else
			ids[nids++] = steps[i].step_id;
	}
	tasker_start_attempts(steps, n, lease_s);
	tasker_count_worker_claims(nids);
	tasker_finalize_tasks(skipped, nskipped);
	/* The rows outlive SPI_finish: they are made in the caller's context. */
	rows = MemoryContextAllocZero(caller, sizeof(ClaimRow) * Max(nids, 1));
	if (nids > 0)
	{
		values[0] = tasker_int8_array(ids, nids);
		values[1] = CStringGetTextDatum(worker_id);
		tasker_run_plan(tasker_keep_plan(&claimed_plan,
				 "UPDATE @extschema@.tasker_workflow_steps s SET claimed_by = $2"
				 "  FROM @extschema@.tasker_tasks t, @extschema@.tasker_named_tasks_named_steps l"
				 " WHERE s.workflow_step_id = ANY ($1) AND t.task_id = s.task_id"
				 "   AND l.named_task_id = t.named_task_id AND l.named_step_id = s.named_step_id"
				 " RETURNING s.workflow_step_id, s.claim_token, s.lease_expires_at,"
				 "   jsonb_build_object('handler_class', l.handler_class, 'queue', s.queue)",
				 2, argtypes),
			values, NULL, SPI_OK_UPDATE_RETURNING);
		for (r = 0; r < SPI_processed; r++)
		{
			int64		id = DatumGetInt64(tasker_col(r, 1, &isnull));
			Jsonb	   *extra = DatumGetJsonbP(tasker_col(r, 4, &isnull));

			MemoryContext spi;

			for (i = 0; i < n; i++)
				if (steps[i].step_id == id)
					break;
			spi = MemoryContextSwitchTo(caller);
			rows[r].step_id = id;
			rows[r].token = datumCopy(tasker_col(r, 2, &isnull), false, UUID_LEN);
			rows[r].lease_expires_at = DatumGetTimestampTz(tasker_col(r, 3, &isnull));
			rows[r].envelope = DatumGetJsonbPCopy(DirectFunctionCall2(jsonb_concat,
												  JsonbPGetDatum(steps[i].call.envelope),
												  JsonbPGetDatum(extra)));
			MemoryContextSwitchTo(spi);
		}
		nids = (int) SPI_processed;
	}
	SPI_finish();
	*out = rows;
	return nids;
}

/*
 * wait_for_work: sleep until a commit wakes this session, the queue's next
 * retry falls due, or the deadline passes; interruptible.
 */
static void
wait_for_work(const char *queue, TimestampTz deadline, int slot)
{
	long		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
	long		due;
	int			rc;

	SPI_connect();
	due = tasker_ms_until_next_queue_step(queue);
	SPI_finish();
	if (due >= 0)
		ms = Min(ms, Max(due, 1));
	if (slot < 0)
		ms = Min(ms, WORKER_POLL_MS);
	if (ms <= 0)
		return;
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
				   ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * tasker_claim_steps(queue text, worker_id text, max_steps integer,
 *					  lease interval, wait interval)
 *	 RETURNS TABLE (step_id bigint, claim_token uuid,
 *					lease_expires_at timestamptz, envelope jsonb)
 */
Datum
tasker_claim_steps_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *queue;
	char	   *worker_id;
	int			max;
	int			lease_s;
	int64		wait_ms;
	TimestampTz deadline;
	ClaimRow   *volatile rows = NULL;
	volatile int n = 0;
	int			i;
	volatile int slot = -1;

	tasker_require_arg(fcinfo, 0, "queue", "Pass the queue this worker serves.");
	tasker_require_arg(fcinfo, 1, "worker_id", "Pass a name for this worker, such as its host and pid.");
	tasker_require_arg(fcinfo, 2, "max_steps", "Pass how many steps this worker can take at once.");
	tasker_require_arg(fcinfo, 3, "lease", "Pass a lease such as '5 minutes'.");
	tasker_require_arg(fcinfo, 4, "wait", "Pass '0' not to wait, or how long to wait for work.");
	queue = text_to_cstring(PG_GETARG_TEXT_PP(0));
	worker_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	max = PG_GETARG_INT32(2);
	if (max < 1 || max > WORKER_MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_steps must be between 1 and %d", WORKER_MAX_CLAIM),
				 errdetail("max_steps is %d.", max),
				 errhint("Claim as many steps as the worker runs at once.")));
	lease_s = lease_seconds(PG_GETARG_INTERVAL_P(3));
	wait_ms = interval_ms(PG_GETARG_INTERVAL_P(4));
	if (wait_ms < 0 || wait_ms > 3600 * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must be between 0 and 1 hour"),
				 errdetail("The wait given is " INT64_FORMAT " ms.", wait_ms),
				 errhint("Long-poll for a few seconds to a minute, then call again.")));
	if (wait_ms > 0 && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("tasker_claim_steps with a wait must run in READ COMMITTED"),
				 errdetail("Under REPEATABLE READ or SERIALIZABLE the claim would never see the steps that become ready while it waits."),
				 errhint("Call it in autocommit mode, or with wait => '0'.")));
	tasker_refuse_in_handler("tasker_claim_steps");
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	PG_TRY();
	{
		for (;;)
		{
			TaskerApiScope scope;
			ClaimRow   *got;

			CHECK_FOR_INTERRUPTS();

			tasker_api_enter(&scope);
			n = claim_batch(queue, worker_id, max, lease_s, &got);
			rows = got;
			tasker_api_leave(&scope);
			if (n > 0 || GetCurrentTimestamp() >= deadline)
				break;
			if (slot < 0)
				slot = tasker_claim_wait_register();
			tasker_api_enter(&scope);
			wait_for_work(queue, deadline, slot);
			tasker_api_leave(&scope);
		}
	}
	PG_FINALLY();
	{
		tasker_claim_wait_unregister(slot);
	}
	PG_END_TRY();

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum(rows[i].step_id);
		values[1] = rows[i].token;
		values[2] = TimestampTzGetDatum(rows[i].lease_expires_at);
		values[3] = JsonbPGetDatum(rows[i].envelope);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * lock_task_of: lock the task row of a step (the lock order: task rows
 * before step rows); raise UNDEFINED_OBJECT for an unknown step.
 */
static void
lock_task_of(int64 step_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};
	int64		task_id;
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&task_of_plan,
			 "SELECT task_id FROM @extschema@.tasker_workflow_steps WHERE workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		tasker_report_missing(TASKER_ENTITY_STEP, step_id);
	task_id = DatumGetInt64(tasker_col(0, 1, &isnull));
	tasker_lock_tasks(&task_id, 1);
}

/*
 * check_claim: lock a step (its task first) and tell how the claim of
 * token stands; fill *c for a current claim.  A step that is not a worker
 * step is refused.
 */
static ClaimStatus
check_claim(int64 step_id, Datum token, ClaimedStep *c)
{
	Oid			argtypes[2] = {INT8OID, UUIDOID};
	Datum		values[2] = {Int64GetDatum(step_id), token};
	bool		isnull;
	bool		same;
	char	   *state;
	char	   *kind;
	char	   *reason;

	lock_task_of(step_id);
	tasker_run_plan(tasker_keep_plan(&claim_state_plan,
			 "SELECT s.current_state::text, s.handler_kind, s.claim_token = $2,"
			 "       s.task_id, s.attempts, s.retryable, s.retry_limit,"
			 "       tr.metadata->>'reason', s.step_type, s.map_parent_id"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 "  LEFT JOIN @extschema@.tasker_workflow_step_transitions tr"
			 "    ON tr.workflow_step_id = s.workflow_step_id AND tr.most_recent"
			 " WHERE s.workflow_step_id = $1"
			 " FOR NO KEY UPDATE OF s",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	state = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	same = DatumGetBool(tasker_col(0, 3, &isnull)) && !isnull;
	reason = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8);
	if (strcmp(kind, "worker") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("step " INT64_FORMAT " is not run by external workers", step_id),
				 errdetail("Its handler kind is \"%s\".", kind),
				 errhint("Only steps claimed with tasker_claim_steps are recorded this way.")));
	memset(c, 0, sizeof(*c));
	c->step_id = step_id;
	c->task_id = DatumGetInt64(tasker_col(0, 4, &isnull));
	c->attempts = DatumGetInt32(tasker_col(0, 5, &isnull)) - 1;
	c->retryable = DatumGetBool(tasker_col(0, 6, &isnull));
	c->retry_limit = DatumGetInt32(tasker_col(0, 7, &isnull));
	c->step_type = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 9);
	c->map_parent_id = DatumGetInt64(tasker_col(0, 10, &isnull));
	if (isnull)
		c->map_parent_id = 0;
	if (same && strcmp(state, "in_progress") == 0)
		return CLAIM_CURRENT;
	if (same && (strcmp(state, "complete") == 0 ||
				 (strcmp(state, "error") == 0 && reason != NULL &&
				  strcmp(reason, "attempt_failed") == 0)))
		return CLAIM_RECORDED;
	return CLAIM_LOST;
}

/*
 * lease_lost: raise TK003 for a claim that is no longer current.
 */
static void
lease_lost(int64 step_id)
{
	TaskerState step;
	TaskerState task;

	tasker_step_state(step_id, &step, &task);
	ereport(ERROR,
			(errcode(ERRCODE_TASKER_LEASE_LOST),
			 errmsg("lease lost on step " INT64_FORMAT, step_id),
			 errdetail("The step is %s and its task is %s; this claim is no longer current.",
					   tasker_state_name(step), tasker_state_name(task)),
			 errhint("The lease expired and the step was reclaimed, or its task was cancelled, or the step was released: drop this outcome.")));
}

/*
 * record: check the claim, then record an outcome with record_fn; returns
 * whether it was recorded now (false: this claim's was already).
 */
static bool
record(int64 step_id, Datum token, StepOutcome *o)
{
	ClaimedStep c;
	ClaimStatus status;

	SPI_connect();
	status = check_claim(step_id, token, &c);
	if (status == CLAIM_LOST)
		lease_lost(step_id);
	if (status == CLAIM_CURRENT)
	{
		if (o->ok)
			tasker_record_success(&c, o);
		else
			tasker_record_failure(&c, o);
		tasker_finalize_task(c.task_id);
		tasker_wake_workers_at_commit();
	}
	SPI_finish();
	return status == CLAIM_CURRENT;
}

/*
 * tasker_complete_step(step_id bigint, claim_token uuid, results jsonb)
 */
Datum
tasker_complete_step_sql(PG_FUNCTION_ARGS)
{
	StepOutcome o;
	bool		done;
	TaskerApiScope scope;

	tasker_require_arg(fcinfo, 0, "step_id", "Pass the step_id the claim returned.");
	tasker_require_arg(fcinfo, 1, "claim_token", "Pass the claim_token the claim returned.");
	memset(&o, 0, sizeof(o));
	o.ok = true;
	o.retry_after = -1;
	o.results = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	tasker_api_enter(&scope);
	done = record(PG_GETARG_INT64(0), PG_GETARG_DATUM(1), &o);
	tasker_api_leave(&scope);
	PG_RETURN_BOOL(done);
}

/*
 * json_text: the string value of key in a jsonb object, or NULL.
 */
static char *
json_text(Jsonb *obj, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (obj == NULL || !JB_ROOT_IS_OBJECT(obj))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * tasker_fail_step(step_id bigint, claim_token uuid, error jsonb,
 *					retryable boolean, retry_after interval)
 */
Datum
tasker_fail_step_sql(PG_FUNCTION_ARGS)
{
	StepOutcome o;
	Jsonb	   *error;
	bool		done;
	TaskerApiScope scope;

	tasker_require_arg(fcinfo, 0, "step_id", "Pass the step_id the claim returned.");
	tasker_require_arg(fcinfo, 1, "claim_token", "Pass the claim_token the claim returned.");
	tasker_require_arg(fcinfo, 2, "error", "Pass an object such as {\"message\": \"...\"}.");
	tasker_require_arg(fcinfo, 3, "retryable", "Pass true to retry under the step's policy, false to fail it for good.");
	error = PG_GETARG_JSONB_P(2);
	if (!JB_ROOT_IS_OBJECT(error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("error must be a JSON object"),
				 errdetail("The error given is not an object."),
				 errhint("Pass an object such as {\"message\": \"card declined\", \"class\": \"PaymentError\"}.")));
	memset(&o, 0, sizeof(o));
	o.ok = false;
	o.permanent = !PG_GETARG_BOOL(3);
	o.message = json_text(error, "message");
	if (o.message == NULL)
		o.message = pstrdup("the external worker reported a failure");
	o.detail = json_text(error, "detail");
	o.hint = json_text(error, "hint");
	o.sqlstate = json_text(error, "sqlstate");
	if (o.sqlstate == NULL)
		o.sqlstate = pstrdup(o.permanent ? "TK001" : "TK002");
	o.details = error;
	o.retry_after = -1;
	if (!PG_ARGISNULL(4))
		o.retry_after = (int) Min(Max((interval_ms(PG_GETARG_INTERVAL_P(4)) + 999) / 1000, 0),
								  (int64) INT_MAX);
	tasker_api_enter(&scope);
	done = record(PG_GETARG_INT64(0), PG_GETARG_DATUM(1), &o);
	tasker_api_leave(&scope);
	PG_RETURN_BOOL(done);
}

/*
 * complete_many: record the completions whose claims are current, in one
 * statement; returns how many.
 */
static int
complete_many(int64 *ids, Datum *tokens, Jsonb **results, int n)
{
	Oid			tasks_types[1] = {INT8ARRAYOID};
	Oid			claims_types[2] = {INT8ARRAYOID, UUIDARRAYOID};
	Datum		values[2];
	int64	   *task_ids;
	uint64		ntasks;
	uint64		r;
	int			i;
	ClaimedStep *steps;
	ClaimedStep **done;
	StepOutcome **outs;
	int			ndone = 0;
	bool		isnull;

	SPI_connect();
	values[0] = tasker_int8_array(ids, n);
	values[1] = PointerGetDatum(construct_array(tokens, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	tasker_run_plan(tasker_keep_plan(&tasks_of_plan,
			 "SELECT DISTINCT task_id FROM @extschema@.tasker_workflow_steps"
			 " WHERE workflow_step_id = ANY ($1) ORDER BY task_id",
			 1, tasks_types),
		values, NULL, SPI_OK_SELECT);
	ntasks = SPI_processed;
	task_ids = palloc(sizeof(int64) * Max(ntasks, 1));
	for (r = 0; r < ntasks; r++)
		task_ids[r] = DatumGetInt64(tasker_col(r, 1, &isnull));
	tasker_lock_tasks(task_ids, (int) ntasks);
	tasker_run_plan(tasker_keep_plan(&current_claims_plan,
			 "SELECT s.workflow_step_id, s.task_id,"
			 "       s.attempts, s.retryable, s.retry_limit, u.i"
			 "  FROM unnest($1::bigint[], $2::uuid[]) WITH ORDINALITY AS u(id, token, i)"
			 "  JOIN @extschema@.tasker_workflow_steps s ON s.workflow_step_id = u.id"
			 " WHERE s.current_state = 'in_progress' AND s.claim_token = u.token"
			 "   AND s.handler_kind = 'worker'"
			 " ORDER BY s.workflow_step_id"
			 " FOR NO KEY UPDATE OF s",
			 2, claims_types),
		values, NULL, SPI_OK_SELECT);
	steps = palloc0(sizeof(ClaimedStep) * Max(SPI_processed, 1));
	done = palloc(sizeof(ClaimedStep *) * Max(SPI_processed, 1));
	outs = palloc(sizeof(StepOutcome *) * Max(SPI_processed, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		int64		at = DatumGetInt64(tasker_col(r, 6, &isnull)) - 1;

		steps[r].step_id = DatumGetInt64(tasker_col(r, 1, &isnull));
		steps[r].task_id = DatumGetInt64(tasker_col(r, 2, &isnull));
		steps[r].attempts = DatumGetInt32(tasker_col(r, 3, &isnull)) - 1;
		steps[r].retryable = DatumGetBool(tasker_col(r, 4, &isnull));
		steps[r].retry_limit = DatumGetInt32(tasker_col(r, 5, &isnull));
		outs[r] = palloc0(sizeof(StepOutcome));
		outs[r]->ok = true;
		outs[r]->retry_after = -1;
		outs[r]->results = results[at];
	}
	for (i = 0; i < (int) SPI_processed; i++)
		if (tasker_accept_results(&steps[i], outs[i]))
		{
			done[ndone] = &steps[i];
			outs[ndone++] = outs[i];
		}
	tasker_record_successes(done, outs, ndone);
	tasker_finalize_tasks(task_ids, (int) ntasks);
	if (ntasks > 0)
		tasker_wake_workers_at_commit();
	SPI_finish();
	return ndone;
}

/*
 * element_field: a field of a completion, or a clear error.
 */
static JsonbValue *
element_field(JsonbContainer *elem, const char *key, int index, bool required)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(elem, JB_FOBJECT, &k);
	if (v == NULL && required)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("completion %d has no \"%s\"", index + 1, key),
				 errdetail("Each completion is {\"step_id\": ..., \"claim_token\": ..., \"results\": ...}."),
				 errhint("Pass the step_id and claim_token tasker_claim_steps returned.")));
	return v;
}

/*
 * first_of_each: keep the first completion of each step id, in order;
 * returns how many are left.
 */
static int
first_of_each(int64 *ids, Datum *tokens, Jsonb **results, int n)
{
	int			kept = 0;
	int			i;
	int			j;

	for (i = 0; i < n; i++)
	{
		for (j = 0; j < kept && ids[j] != ids[i]; j++)
			;
		if (j < kept)
			continue;
		ids[kept] = ids[i];
		tokens[kept] = tokens[i];
		results[kept++] = results[i];
	}
	return kept;
}

/*
 * tasker_complete_steps(completions jsonb) RETURNS integer
 */
Datum
tasker_complete_steps_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *arr;
	int			n;
	int			i;
	int64	   *ids;
	Datum	   *tokens;
	Jsonb	  **results;
	int			recorded;
	TaskerApiScope scope;

	tasker_require_arg(fcinfo, 0, "completions", "Pass a JSON array of {step_id, claim_token, results}.");
	arr = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(arr) || JB_ROOT_IS_SCALAR(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("completions must be a JSON array"),
				 errdetail("Each element is {\"step_id\": ..., \"claim_token\": ..., \"results\": ...}."),
				 errhint("Pass [] to record nothing.")));
	n = JB_ROOT_COUNT(arr);
	if (n > WORKER_MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many completions: %d", n),
				 errdetail("One call records at most %d.", WORKER_MAX_CLAIM),
				 errhint("Split the completions into several calls.")));
	ids = palloc(sizeof(int64) * Max(n, 1));
	tokens = palloc(sizeof(Datum) * Max(n, 1));
	results = palloc(sizeof(Jsonb *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&arr->root, i);
		JsonbValue *id;
		JsonbValue *token;
		JsonbValue *res;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("completion %d is not an object", i + 1),
					 errdetail("Each element is {\"step_id\": ..., \"claim_token\": ..., \"results\": ...}."),
					 errhint("Pass the step_id and claim_token tasker_claim_steps returned.")));
		id = element_field(elem->val.binary.data, "step_id", i, true);
		token = element_field(elem->val.binary.data, "claim_token", i, true);
		res = element_field(elem->val.binary.data, "results", i, false);
		if (id->type != jbvNumeric || token->type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("completion %d has a step_id that is not a number or a claim_token that is not a string", i + 1),
					 errdetail("step_id is a bigint and claim_token a uuid, as tasker_claim_steps returned them."),
					 errhint("Pass them back as they came.")));
		ids[i] = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(id->val.numeric)));
		tokens[i] = DirectFunctionCall1(uuid_in,
										CStringGetDatum(pnstrdup(token->val.string.val,
																 token->val.string.len)));
		results[i] = (res == NULL || res->type == jbvNull) ? NULL : JsonbValueToJsonb(res);
	}
	n = first_of_each(ids, tokens, results, n);
	if (n == 0)
		PG_RETURN_INT32(0);
	tasker_api_enter(&scope);
	recorded = complete_many(ids, tokens, results, n);
	tasker_api_leave(&scope);
	PG_RETURN_INT32(recorded);
}

/*
 * tasker_extend_lease(step_id bigint, claim_token uuid, lease interval)
 */
Datum
tasker_extend_lease_sql(PG_FUNCTION_ARGS)
{
	ClaimedStep c;
	int			lease_s;
	TimestampTz until = 0;
	TaskerApiScope scope;

	tasker_require_arg(fcinfo, 0, "step_id", "Pass the step_id the claim returned.");
	tasker_require_arg(fcinfo, 1, "claim_token", "Pass the claim_token the claim returned.");
	tasker_require_arg(fcinfo, 2, "lease", "Pass a lease such as '5 minutes'.");
	lease_s = lease_seconds(PG_GETARG_INTERVAL_P(2));
	tasker_api_enter(&scope);
	SPI_connect();
	if (check_claim(PG_GETARG_INT64(0), PG_GETARG_DATUM(1), &c) != CLAIM_CURRENT)
		lease_lost(c.step_id);
	until = tasker_extend_step_lease(c.step_id, lease_s);
	SPI_finish();
	tasker_api_leave(&scope);
	PG_RETURN_TIMESTAMPTZ(until);
}

/*
 * tasker_release_step(step_id bigint, claim_token uuid)
 */
Datum
tasker_release_step_sql(PG_FUNCTION_ARGS)
{
	ClaimedStep c;
	bool		current;
	TaskerApiScope scope;

	tasker_require_arg(fcinfo, 0, "step_id", "Pass the step_id the claim returned.");
	tasker_require_arg(fcinfo, 1, "claim_token", "Pass the claim_token the claim returned.");
	tasker_api_enter(&scope);
	SPI_connect();
	current = check_claim(PG_GETARG_INT64(0), PG_GETARG_DATUM(1), &c) == CLAIM_CURRENT;
	if (current)
	{
		tasker_release_attempt(c.step_id);
		tasker_wake_workers_at_commit();
	}
	SPI_finish();
	tasker_api_leave(&scope);
	PG_RETURN_BOOL(current);
}

/*
 * worker_turn: the executor's turn for this kind: at most once a second,
 * in a short transaction, record the worker steps whose lease expired as
 * failed attempts.  Returns the number reclaimed.
 */
static int
worker_turn(bool claim_new)
{
	int			n;

	if (!claim_new || !TimestampDifferenceExceeds(last_reclaim, GetCurrentTimestamp(),
												  WORKER_RECLAIM_EVERY_MS))
		return 0;
	last_reclaim = GetCurrentTimestamp();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tasker: reclaiming expired worker leases");
	SPI_connect();
	n = tasker_reclaim_expired("worker", WORKER_RECLAIM_BATCH,
							   "the lease of the external worker expired before its outcome was recorded",
							   "The worker stopped, stalled or lost its connection; the attempt counts as failed.");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/* The worker kind: leased; claims come from SQL, the executors reclaim. */
const TaskerHandlerKind tasker_worker_kind = {
	.name = "worker",
	.leased = true,
	.turn = worker_turn,
};
