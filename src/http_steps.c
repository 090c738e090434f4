/*-------------------------------------------------------------------------
 *
 * http_steps.c
 *		HTTP steps: the worker's short transactions around the network
 *		I/O: claim with a lease, record outcomes, reclaim expired leases,
 *		find cancelled steps.
 *
 * Invariant: no transaction is open during network I/O.  A claim is one
 * short transaction that takes ready steps through the lifecycle's shared
 * claim (tasker_claim_ready_steps), reserves their concurrency slots,
 * moves them to in_progress with a lease (now + timeout +
 * HTTP_LEASE_MARGIN_S), counts the attempt and commits; only then are the
 * requests handed to curl.  A step whose request cannot be built fails
 * for good in that same transaction, before any I/O.  The requests that
 * finished since the last look are recorded together in one more short
 * transaction, through step.c's tasker_record_success /
 * tasker_record_failure, so retries and backoff follow the same rules as
 * SQL steps.  An outcome is recorded only while the step is still
 * in_progress at the attempt that sent it; an outcome for a step that was
 * cancelled or reclaimed meanwhile is dropped; better, such a request is
 * aborted as soon as the worker sees it: when its latch is set (a cancel
 * wakes the workers at commit) and at least once a second, one read-only
 * query over the steps in flight finds those no longer in_progress at the
 * attempt sent, and their requests leave curl and give back their slots.
 *
 * A worker that dies leaves its steps in_progress with a lease; any worker
 * reclaims a step whose lease expired as a failed attempt (at most once a
 * second, in its claim transaction).  A worker asked to stop records its
 * in-flight requests as failed attempts before it exits, so they are
 * retried without waiting for the lease.
 *
 * The record transaction also counts each request by the class of its
 * answer, and a reclaim each lost lease (shmem.c, for tasker_metrics).
 *
 * IDENTIFICATION
 *		src/http_steps.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http_internal.h"
#include "step.h"
#include "spi_util.h"
#include "shmem.h"
#include "state.h"

/* Seconds a lease outlives the request's own timeout. */
#define HTTP_LEASE_MARGIN_S		10
/* Most expired leases reclaimed per look, and how often to look. */
#define HTTP_RECLAIM_BATCH		100
#define HTTP_RECLAIM_EVERY_MS	1000
/* How often, at least, to look for cancelled steps while requests run. */
#define HTTP_CANCEL_EVERY_MS	1000

static TimestampTz last_reclaim = 0;
static TimestampTz last_cancel_check = 0;
static bool api_steps_exist = true;	/* rechecked with each reclaim */

static SPIPlanPtr api_steps_plan;
static SPIPlanPtr gone_plan;

/*
 * col: binary value of column n of row i of the last result.
 */
static Datum
col(uint64 i, int n)
{
	bool		isnull;

	return SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, n, &isnull);
}

/*
 * begin_xact / commit_xact: a short transaction of the worker.
 */
static void
begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	SPI_connect();
}

static void
commit_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * count_request: count a request that was sent and ended, by the class of
 * its answer (timeout; error: no status, a response cut off as too
 * large, or a status outside 200 to 599), when the record transaction
 * commits.  One that was never sent (its request could not be built) or
 * is still in flight (the worker is stopping) is not counted.
 */
static void
count_request(HttpRequest *r)
{
	long		status = 0;

	if (!r->done || r->failure != NULL || r->easy == NULL)
		return;
	if (r->result == CURLE_OPERATION_TIMEDOUT)
	{
		tasker_count_http(TASKER_HTTP_TIMEOUT);
		return;
	}
	if (r->result == CURLE_OK && !r->too_large)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status < 600)
		tasker_count_http((TaskerHttpClass) (TASKER_HTTP_2XX + status / 100 - 2));
	else
		tasker_count_http(TASKER_HTTP_ERROR);
}

/*
 * http_record_requests: record the outcome of every finished request (of every
 * request, when stopping) in one short transaction, settle their tasks,
 * and forget them.  Returns the number recorded.
 */
int
http_record_requests(bool all)
{
	dlist_mutable_iter it;
	int64	   *tasks;
	int			ntasks = 0;
	int			n = 0;
	bool		wake = false;

	begin_xact("tasker: recording HTTP steps");
	dlist_foreach_modify(it, &http_requests)
		n++;
	tasks = palloc(sizeof(int64) * (n + 1));
	n = 0;
	/* The lock order of control.c: the task rows before their steps. */
	dlist_foreach_modify(it, &http_requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (r->done || (all && r->easy != NULL))
			tasks[ntasks++] = r->step.task_id;
	}
	tasker_lock_tasks(tasks, ntasks);
	ntasks = 0;
	dlist_foreach_modify(it, &http_requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);
		StepOutcome o;

		if (!r->done && (!all || r->easy == NULL))
			continue;
		http_count_outcome(http_outcome_of(r, &o));
		count_request(r);
		if (tasker_step_still_ours(&r->step))
		{
			if (o.ok)
				tasker_record_success(&r->step, &o);
			else
				tasker_record_failure(&r->step, &o);
			tasks[ntasks++] = r->step.task_id;
			n++;
		}
		wake |= http_free_request(r);
	}
	tasker_finalize_tasks(tasks, ntasks);
	commit_xact();
	if (wake)
		tasker_wake_workers();
	return n;
}

/*
 * query_gone: of the nrunning running requests, select the ids of the
 * steps that are no longer in_progress at the attempt that sent them
 * (cancelled, or reclaimed by another worker): one look-up by primary key
 * for each, in one statement.
 */
static void
query_gone(int nrunning)
{
	Oid			argtypes[2] = {INT8ARRAYOID, INT4ARRAYOID};
	Datum		values[2];
	Datum	   *ids = palloc(sizeof(Datum) * nrunning);
	Datum	   *attempts = palloc(sizeof(Datum) * nrunning);
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, &http_requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (!http_running(r) || n == nrunning)
			continue;
		ids[n] = Int64GetDatum(r->step.step_id);
		attempts[n++] = Int32GetDatum(r->step.attempts + 1);
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(attempts, n, INT4OID, sizeof(int32),
												true, TYPALIGN_INT));
	tasker_run_plan(tasker_keep_plan(&gone_plan,
			 "SELECT u.id FROM unnest($1::bigint[], $2::integer[]) AS u(id, attempt)"
			 " WHERE NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_steps s"
			 "                    WHERE s.workflow_step_id = u.id"
			 "                      AND s.current_state = 'in_progress'"
			 "                      AND s.attempts = u.attempt)",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
}

/*
 * http_abort_gone: when due (*woken: the latch was set, as a cancel does
 * at commit; or HTTP_CANCEL_EVERY_MS passed), abort the running requests
 * whose steps were cancelled or taken away, giving back their slots at
 * once; their outcome would be dropped anyway.  One short read-only
 * transaction.  Clears *woken when it looks.  Returns the number aborted.
 */
int
http_abort_gone(bool *woken)
{
	int			nrunning = http_count_running();
	int64	   *gone;
	uint64		ngone;
	uint64		i;
	int			n = 0;
	bool		wake = false;

	if (nrunning == 0 ||
		(!*woken && !TimestampDifferenceExceeds(last_cancel_check, GetCurrentTimestamp(),
											   HTTP_CANCEL_EVERY_MS)))
		return 0;
	*woken = false;
	last_cancel_check = GetCurrentTimestamp();
	begin_xact("tasker: looking for cancelled HTTP steps");
	query_gone(nrunning);
	ngone = SPI_processed;
	gone = MemoryContextAlloc(http_scratch_memory(), sizeof(int64) * Max(ngone, 1));
	for (i = 0; i < ngone; i++)
		gone[i] = DatumGetInt64(col(i, 1));
	commit_xact();
	for (i = 0; i < ngone; i++)
	{
		dlist_mutable_iter it;

		dlist_foreach_modify(it, &http_requests)
		{
			HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

			if (!http_running(r) || r->step.step_id != gone[i])
				continue;
			ereport(DEBUG1,
					(errmsg("tasker aborted the request of step " INT64_FORMAT ", which is no longer in progress",
							r->step.step_id)));
			wake |= http_free_request(r);
			n++;
		}
	}
	MemoryContextReset(http_scratch_memory());
	if (wake)
		tasker_wake_workers();
	return n;
}

/*
 * reclaim_expired: record as failed attempts the in_progress steps whose
 * lease expired (their worker died or stalled), so they retry under the
 * normal rules; skips the steps this worker itself still runs.
 */
static int
reclaim_expired(int64 **tasks, int *ntasks)
{
	uint64		i;
	uint64		n;
	ClaimedStep *steps;
	int			count = 0;

	n = tasker_claim_expired_leases("http", HTTP_RECLAIM_BATCH, &steps);
	*tasks = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		dlist_iter	it;
		bool		mine = false;
		StepOutcome o;

		dlist_foreach(it, &http_requests)
			mine |= (dlist_container(HttpRequest, node, it.cur)->step.step_id == steps[i].step_id);
		if (mine)
			continue;
		memset(&o, 0, sizeof(o));
		o.retry_after = -1;
		http_fail(&o, HTTP_OUT_LEASE_EXPIRED,
			 pstrdup("the lease of the HTTP request expired before its outcome was recorded"),
			 "The worker that sent it stopped or stalled; the attempt counts as failed.", NULL);
		tasker_record_failure(&steps[i], &o);
		http_count_outcome(HTTP_OUT_LEASE_EXPIRED);
		tasker_count_lost_leases(TASKER_STEP_HTTP, 1);
		(*tasks)[count++] = steps[i].task_id;
	}
	*ntasks = count;
	return count;
}

/*
 * start_attempt: count the attempt and move the step to in_progress with
 * a lease of its timeout plus a margin.
 */
static void
start_attempt(HttpRequest *r)
{
	tasker_start_attempts(&r->step, 1, r->timeout_s + HTTP_LEASE_MARGIN_S);
}

/*
 * take_candidate: prepare a claimed step's request and reserve its slots;
 * a step whose request cannot be built fails for good at once.  Returns 1
 * when the step was claimed or failed, 0 when it was left for later; sets
 * *full when no slot is left at all.
 */
static int
take_candidate(const ClaimedStep *c, int64 *failed_task, bool *full)
{
	HttpRequest *r = http_request_new(c, http_memory());
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	char	   *error = http_request_prepare(r);

	MemoryContextSwitchTo(old);
	dlist_push_tail(&http_requests, &r->node);
	if (error == NULL && !(r->reserved = http_reserve_slot(r->host_hash, full)))
	{
		(void) http_free_request(r);
		return 0;
	}
	start_attempt(r);
	if (error != NULL)
	{
		StepOutcome o;

		memset(&o, 0, sizeof(o));
		o.retry_after = -1;
		r->failure = error;
		http_mark_done(r);
		http_count_outcome(http_outcome_of(r, &o));
		tasker_record_failure(&r->step, &o);
		*failed_task = r->step.task_id;
		(void) http_free_request(r);
		return 1;
	}
	MemoryContextSwitchTo(r->cxt);
	http_setup_easy(r);
	MemoryContextSwitchTo(old);
	return 1;
}

/*
 * any_api_steps: whether any template has an api step; while none has,
 * the workers skip the claim query (it would scan the ready SQL steps).
 */
static bool
any_api_steps(void)
{
	tasker_run_plan(tasker_keep_plan(&api_steps_plan,
			 "SELECT EXISTS (SELECT 1 FROM @extschema@.tasker_named_tasks_named_steps l"
			 "                WHERE " TASKER_HANDLER_KIND_SQL("l") " = 'http')",
			 0, NULL),
		NULL, NULL, SPI_OK_SELECT);
	return DatumGetBool(col(0, 1));
}

/*
 * claim_ready: claim as many ready HTTP steps as there are free slots, in
 * the caller's transaction; their requests are prepared, not started.
 */
static int
claim_ready(int nfree)
{
	ClaimedStep *steps;
	int64	   *tasks;
	int			ntasks = 0;
	int			n = 0;
	int			i;
	int			ncand;
	bool		full = false;

	ncand = tasker_claim_ready_steps("http", 0, Min(nfree * 4, 1000), InvalidOid, NULL, &steps);
	tasks = palloc(sizeof(int64) * Max(ncand, 1));
	for (i = 0; i < ncand && !full; i++)
	{
		int64		failed = 0;

		if (steps[i].skip)
			failed = steps[i].task_id;
		else
			n += take_candidate(&steps[i], &failed, &full);
		if (failed != 0)
			tasks[ntasks++] = failed;
	}
	tasker_finalize_tasks(tasks, ntasks);
	return n;
}

/*
 * http_claim: in one short transaction, reclaim expired leases (at most once a
 * second) and claim ready HTTP steps; after the commit, start their
 * requests.  Returns the steps moved.
 */
int
http_claim(void)
{
	int			nfree = http_free_slots();
	bool		reclaim = TimestampDifferenceExceeds(last_reclaim, GetCurrentTimestamp(),
													 HTTP_RECLAIM_EVERY_MS);
	int64	   *tasks = NULL;
	int			ntasks = 0;
	int			n = 0;
	dlist_iter	it;

	if (!reclaim && (nfree == 0 || !api_steps_exist))
		return 0;
	begin_xact("tasker: claiming HTTP steps");
	if (reclaim)
	{
		last_reclaim = GetCurrentTimestamp();
		api_steps_exist = any_api_steps();
		n += reclaim_expired(&tasks, &ntasks);
		tasker_finalize_tasks(tasks, ntasks);
	}
	if (nfree > 0 && api_steps_exist)
		n += claim_ready(nfree);
	commit_xact();
	dlist_foreach(it, &http_requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (!r->done && r->started == 0)
			http_start_request(r);
	}
	http_fire_timer();
	return n;
}
