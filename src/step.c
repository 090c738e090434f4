/*-------------------------------------------------------------------------
 *
 * step.c
 *		The step lifecycle, for every handler kind: claim, attempt start
 *		(in the claiming transaction, or under a lease), outcomes
 *		(complete, retry with backoff or a requested delay, permanent
 *		failure, quarantine), lease reclaim, and task finalization.
 *
 * Nothing else in tasker moves a step through its run: the handler kinds
 * (handler_sql.c, the HTTP kind in http_steps.c) only claim, run their
 * handler and hand the outcome back here.  Readiness is defined once
 * (TASKER_READY_STEP_SQL in step.h), and the claim query once
 * (tasker_claim_ready_steps), shared by every kind.  Attempts start and
 * complete set based, one statement for a whole batch
 * (tasker_start_attempts, tasker_record_successes, over state.c's
 * tasker_start_steps and tasker_complete_steps); failures are rarer and
 * go one step at a time through tasker_fail_attempt, which counts each
 * (for tasker_metrics) as the retry, final failure or quarantine decided
 * here.
 *
 * A claim locks each step's task row (SKIP LOCKED) before the step row,
 * the one lock order of every transaction that moves steps (see
 * control.c): a batch holds the task rows of its steps while their
 * handlers run, so an operator's control waits for the batch instead of
 * deadlocking with it, and two batches never work on one task at once.
 * The claim also starts the pending tasks of the steps it took.  Tasks are
 * settled in task_id order: complete when every step is complete or
 * resolved, error when no step can make progress any more.
 *
 * IDENTIFICATION
 *		src/step.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "concurrency.h"
#include "events.h"
#include "flow_rules.h"
#include "spi_util.h"
#include "guc.h"
#include "handler.h"
#include "step.h"
#include "security.h"
#include "shmem.h"
#include "rate_limit.h"
#include "state.h"

/*
 * The claim's SQL, for every handler kind (readiness itself is
 * TASKER_READY_STEP_SQL, in step.h).  TASKER_ENVELOPE_SQL builds the
 * step envelope handlers receive, and TASKER_CLAIMED_DETAILS_SQL is the
 * FROM clause it needs, over the step ids of a CTE named claimed.
 */
#define TASKER_ENVELOPE_SQL \
	"jsonb_build_object('task_id', s.task_id, 'step_id', s.workflow_step_id," \
	"  'step_name', n.name, 'attempt', s.attempts + 1, 'namespace', ns.name," \
	"  'task_name', nt.name, 'version', nt.version, 'context', t.context," \
	"  'inputs', COALESCE(s.inputs, t.context)," \
	"  'handler_config', l.handler_config," \
	"  'dependencies', COALESCE((SELECT jsonb_object_agg(pn.name, p.results)" \
	"     FROM @extschema@.tasker_workflow_step_edges e" \
	"     JOIN @extschema@.tasker_workflow_steps p ON p.workflow_step_id = e.from_step_id" \
	"     JOIN @extschema@.tasker_named_steps pn ON pn.named_step_id = p.named_step_id" \
	"    WHERE e.to_step_id = COALESCE(s.map_parent_id, s.workflow_step_id)" \
	"      AND p.current_state <> 'skipped'), '{}'))" \
	" || CASE WHEN s.map_parent_id IS NULL THEN '{}'::jsonb" \
	"    ELSE jsonb_build_object('item', s.map_item, 'item_index', s.map_index) END" \
	" || CASE WHEN t.trace_id IS NULL THEN '{}'::jsonb" \
	"    ELSE jsonb_build_object('traceparent', '00-' || t.trace_id || '-'" \
	"         || @extschema@.tasker_span_id(t.trace_id, t.task_id, s.workflow_step_id," \
	"                                       " TASKER_START_SORT_KEY_SQL ")" \
	"         || '-' || lpad(to_hex(t.trace_flags::integer), 2, '0')) END"

/* The OFFSET 0 subqueries keep each lookup a primary-key probe per step. */
#define TASKER_CLAIMED_DETAILS_SQL \
	" FROM @extschema@.tasker_workflow_steps s" \
	" CROSS JOIN LATERAL (SELECT * FROM @extschema@.tasker_tasks t" \
	"                      WHERE t.task_id = s.task_id OFFSET 0) t" \
	" CROSS JOIN LATERAL (SELECT * FROM @extschema@.tasker_named_tasks_named_steps l" \
	"                      WHERE l.named_task_id = t.named_task_id" \
	"                        AND l.named_step_id = s.named_step_id OFFSET 0) l" \
	" JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id" \
	" JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	" JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id" \
	" WHERE s.workflow_step_id = ANY (ARRAY(SELECT workflow_step_id FROM claimed))" \
	" ORDER BY s.next_attempt_at, s.task_id"
static int	transition_result(TaskerEntity entity, TaskerState to, const char *metadata_json);
static int	read_step(int64 step_id, int64 *task_id);
static void subtask_finished(int64 child_id, bool ok);
static void cancel_children(int64 task_id);
static void fail_map_step(ClaimedStep *c, StepOutcome *o);
static void settle_tasks(int64 *ids, int n);

static SPIPlanPtr claim_plan;
static SPIPlanPtr claim_ids_plan;
static SPIPlanPtr claim_one_plan;
static SPIPlanPtr read_step_plan;
static SPIPlanPtr step_state_plan;
static SPIPlanPtr quarantine_state_plan;
static SPIPlanPtr start_plan;
static SPIPlanPtr failure_plan;
static SPIPlanPtr retry_plan;
static SPIPlanPtr lock_task_plan;
static SPIPlanPtr leftover_plan;
static SPIPlanPtr quarantine_plan;
static SPIPlanPtr next_due_plan;
static SPIPlanPtr counts_plan;
static SPIPlanPtr counts_010_plan;
static SPIPlanPtr lock_tasks_plan;
static SPIPlanPtr stop_retries_plan;
static SPIPlanPtr reset_step_plan;
static SPIPlanPtr set_results_plan;
static SPIPlanPtr orphans_plan;
static SPIPlanPtr pending_tasks_plan;
static SPIPlanPtr ours_plan;
static SPIPlanPtr expired_plan;
static SPIPlanPtr queue_due_plan;
static SPIPlanPtr extend_plan;
static SPIPlanPtr release_plan;
static SPIPlanPtr attempts_plan;
static SPIPlanPtr pause_plan;
static SPIPlanPtr resume_plan;
static SPIPlanPtr defer_plan;
static uint64 rate_deferrals = 0;

/*
 * text_array: the elements of a text[] datum as C strings (none when
 * null); *n is their number.
 */
static char **
text_array(Datum d, bool isnull, int *n)
{
	Datum	   *elems;
	bool	   *elem_nulls;
	char	  **out;
	int			i;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elem_nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		out[i] = elem_nulls[i] ? "" : TextDatumGetCString(elems[i]);
	return out;
}

/*
 * copy_claimed: copy row i of the last claim result into *c.
 */
static void
copy_claimed(uint64 i, ClaimedStep *c)
{
	bool		isnull;

	c->step_id = DatumGetInt64(tasker_col(i, 1, &isnull));
	c->task_id = DatumGetInt64(tasker_col(i, 2, &isnull));
	c->from_error = DatumGetBool(tasker_col(i, 3, &isnull));
	c->retryable = DatumGetBool(tasker_col(i, 4, &isnull));
	c->retry_limit = DatumGetInt32(tasker_col(i, 5, &isnull));
	c->attempts = DatumGetInt32(tasker_col(i, 6, &isnull));
	c->call.step_id = c->step_id;
	c->call.function = DatumGetObjectId(tasker_col(i, 7, &isnull));
	c->call.owner = DatumGetObjectId(tasker_col(i, 8, &isnull));
	c->call.timeout_seconds = DatumGetInt32(tasker_col(i, 9, &isnull));
	c->call.envelope = DatumGetJsonbPCopy(tasker_col(i, 10, &isnull));
	c->call.permanent_sqlstates = text_array(tasker_col(i, 11, &isnull), isnull,
											 &c->call.npermanent);
	c->call.retry_sqlstates = text_array(tasker_col(i, 12, &isnull), isnull,
										 &c->call.nretry);
	c->step_type = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 13);
	c->map_parent_id = DatumGetInt64(tasker_col(i, 14, &isnull));
	if (isnull)
		c->map_parent_id = 0;
	c->rate_key = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 15);
	if (c->rate_key != NULL)
	{
		c->rate_per_second = DatumGetFloat8(tasker_col(i, 16, &isnull));
		c->rate_burst = DatumGetInt32(tasker_col(i, 17, &isnull));
		c->rate_returning = DatumGetBool(tasker_col(i, 18, &isnull));
	}
	c->namespace_id = DatumGetInt32(tasker_col(i, 19, &isnull));
}

/* What a claim selects, after the claimed CTE. */
#define CLAIMED_STEP_SQL \
	"SELECT s.workflow_step_id, s.task_id, s.current_state = 'error'," \
	"       s.retryable, s.retry_limit, s.attempts," \
	"       l.handler_function::oid, nt.owner::oid, COALESCE(s.timeout_seconds, 0)," \
	"       " TASKER_ENVELOPE_SQL "," \
	"       l.permanent_sqlstates, l.retry_sqlstates, s.step_type, s.map_parent_id," \
	"       l.rate_limit ->> 'key', (l.rate_limit ->> 'per_second')::float8," \
	"       COALESCE((l.rate_limit ->> 'burst')::integer, 1)," \
	"       s.rate_slot_at IS NOT NULL, ns.task_namespace_id" \
	TASKER_CLAIMED_DETAILS_SQL

/*
 * The ready steps of handler kind $5 a claim takes, $1 at most, due by $3,
 * highest aged priority first (claim_key: priority.c, the order of the
 * ready index):
 * of task $2 unless it is 0, of tasks whose template owner role $4 has
 * the privileges of unless it is 0.  The lateral subquery locks each
 * step's task row (skipping tasks another transaction holds, or that a
 * control waits for) before the step row is locked: the lock order of
 * control.c's header.  It also skips tasks a concurrency key holds back
 * and, when $7 and some namespace has a cap, takes a namespace slot
 * (concurrency.c); the uncorrelated EXISTS is computed once per claim.
 */
#define CLAIM_CTE_SQL \
	"WITH claimed AS (" \
	"  SELECT s.workflow_step_id, s.task_id FROM @extschema@.tasker_workflow_steps s" \
	"   CROSS JOIN LATERAL (" TASKER_LOCK_TASK_SQL \
	"         AND t.current_state IN ('pending', 'in_progress')" \
	"         AND t.paused_at IS NULL" \
	TASKER_CLAIM_INTENT_SQL \
	"         AND ($4 = 0 OR pg_has_role($4, (SELECT nt.owner" \
	"                FROM @extschema@.tasker_named_tasks nt" \
	"               WHERE nt.named_task_id = t.named_task_id), 'USAGE'))" \
	"         AND " TASKER_ADMITTED_TASK_SQL \
	"         AND (NOT $7 OR NOT EXISTS (SELECT 1 FROM @extschema@.tasker_task_namespaces cap" \
	"                                     WHERE cap.max_in_progress IS NOT NULL)" \
	"              OR @extschema@.tasker_namespace_slot(t.named_task_id))" \
	"       FOR NO KEY UPDATE OF t SKIP LOCKED) lt" \
	"   WHERE s.handler_kind = $5" \
	"     AND " TASKER_READY_STEP_SQL \
	"     AND s.next_attempt_at <= $3" \
	"     AND ($2 = 0 OR s.task_id = $2)" \
	"     AND ($6 = '' OR s.queue = $6)" \
	"   ORDER BY s.claim_key, s.task_id" \
	"   LIMIT $1" \
	"   FOR NO KEY UPDATE OF s SKIP LOCKED)"

/*
 * claim_together: lock up to limit ready steps and build their envelopes
 * in one statement (the common case).  Returns the number claimed.
 */
static int
claim_together(Datum *values, ClaimedStep **out)
{
	Oid			argtypes[7] = {INT4OID, INT8OID, TIMESTAMPTZOID, OIDOID, TEXTOID, TEXTOID, BOOLOID};
	ClaimedStep *steps;
	uint64		i;

	tasker_run_plan(tasker_keep_plan(&claim_plan,
			 CLAIM_CTE_SQL CLAIMED_STEP_SQL, 7, argtypes),
		values, NULL, SPI_OK_SELECT);
	steps = palloc0(sizeof(ClaimedStep) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
		copy_claimed(i, &steps[i]);
	*out = steps;
	return (int) SPI_processed;
}

/* The arguments and result of claim_together through tasker_try. */
typedef struct ClaimArgs
{
	Datum	   *values;
	ClaimedStep **out;
	int			n;
} ClaimArgs;

/*
 * claim_together_call: claim_together for tasker_try.
 */
static void
claim_together_call(void *arg)
{
	ClaimArgs  *a = (ClaimArgs *) arg;

	a->n = claim_together(a->values, a->out);
}

/*
 * claim_one_by_one: after claim_together failed, lock the same steps
 * without their envelopes, then build each envelope in a subtransaction
 * of its own: a step whose envelope cannot be built (one that would
 * exceed jsonb's limits, say) is quarantined and skipped, and the others
 * run.
 */
static int
claim_one_by_one(Datum *values, ClaimedStep **out)
{
	Oid			argtypes[7] = {INT4OID, INT8OID, TIMESTAMPTZOID, OIDOID, TEXTOID, TEXTOID, BOOLOID};
	Oid			one_type[1] = {INT8ARRAYOID};
	ClaimedStep *steps;
	int64	   *ids;
	int64	   *tasks;
	uint64		n;
	uint64		i;
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&claim_ids_plan,
			 CLAIM_CTE_SQL "SELECT workflow_step_id, task_id FROM claimed", 7, argtypes),
		values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	tasks = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		ids[i] = DatumGetInt64(tasker_col(i, 1, &isnull));
		tasks[i] = DatumGetInt64(tasker_col(i, 2, &isnull));
	}
	steps = palloc0(sizeof(ClaimedStep) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		Datum		one[1];
		ErrorData  *edata;
		Datum		elem = Int64GetDatum(ids[i]);

		one[0] = PointerGetDatum(construct_array(&elem, 1, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		edata = tasker_try_plan(tasker_keep_plan(&claim_one_plan,
				 "WITH claimed AS (SELECT unnest($1::bigint[]) AS workflow_step_id) "
				 CLAIMED_STEP_SQL, 1, one_type),
			one, SPI_OK_SELECT);
		steps[i].step_id = ids[i];
		steps[i].task_id = tasks[i];
		if (edata == NULL && SPI_processed == 1)
			copy_claimed(0, &steps[i]);
		else
		{
			ErrorData	gone;

			/* Its task is settled with the others'. */
			steps[i].skip = true;
			if (edata == NULL)
			{
				memset(&gone, 0, sizeof(gone));
				gone.message = "the step's template or task row is missing";
				edata = &gone;
			}
			tasker_quarantine_step(&steps[i], edata);
		}
	}
	*out = steps;
	return (int) n;
}

/*
 * start_claimed_tasks: move the pending tasks of claimed steps (their rows
 * are locked by the claim) to in_progress, before any of their steps
 * moves, so that a task's start is announced before its steps'.
 */
static void
start_claimed_tasks(ClaimedStep *steps, int n)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	int64	   *ids;
	Datum		values[1];
	int			i;

	if (n == 0)
		return;
	ids = palloc(sizeof(int64) * n);
	for (i = 0; i < n; i++)
		ids[i] = steps[i].task_id;
	values[0] = tasker_int8_array(ids, n);
	tasker_run_plan(tasker_keep_plan(&pending_tasks_plan,
			 "SELECT task_id FROM @extschema@.tasker_tasks"
			 " WHERE task_id = ANY ($1) AND current_state = 'pending'"
			 " ORDER BY task_id",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	(void) transition_result(TASKER_ENTITY_TASK, TASKER_IN_PROGRESS,
							 "{\"reason\": \"ready_steps_available\"}");
}

/*
 * enforce_namespace_caps: give back the claimed steps over their
 * namespaces' caps (concurrency.c: the committed steps counted again after
 * the claim), last claimed first; returns how many stay.  Their rows stay
 * locked by this transaction and unchanged, to be claimed later.
 */
static int
enforce_namespace_caps(ClaimedStep *steps, int n)
{
	bool	   *seen;
	bool	   *gone;
	int			i;
	int			j;
	int			kept = 0;

	if (n == 0 || !tasker_namespace_slots_taken())
		return n;
	seen = palloc0(sizeof(bool) * n);
	gone = palloc0(sizeof(bool) * n);
	for (i = 0; i < n; i++)
	{
		int			count = 0;
		int			over;

		if (seen[i])
			continue;
		for (j = i; j < n; j++)
			if (steps[j].namespace_id == steps[i].namespace_id)
			{
				seen[j] = true;
				count++;
			}
		over = tasker_namespace_excess(steps[i].namespace_id, count);
		for (j = n - 1; j >= i && over > 0; j--)
			if (steps[j].namespace_id == steps[i].namespace_id)
			{
				gone[j] = true;
				over--;
			}
	}
	for (i = 0; i < n; i++)
		if (!gone[i])
			steps[kept++] = steps[i];
	return kept;
}

/*
 * defer_steps: the steps claimed over their rates wait until the times
 * their buckets gave them (rate_limit.c), as their next due time and in
 * rate_slot_at (cleared when an attempt starts), and then ask again; one
 * statement for the claim's deferrals.  Their rows stay locked by this
 * transaction and their states unchanged.
 */
static void
defer_steps(int64 *ids, Datum *backs, int n)
{
	Oid			argtypes[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = tasker_int8_array(ids, n);
	values[1] = PointerGetDatum(construct_array(backs, n, TIMESTAMPTZOID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	tasker_run_plan(tasker_keep_plan(&defer_plan,
			 "UPDATE @extschema@.tasker_workflow_steps s"
			 "   SET next_attempt_at = d.back, rate_slot_at = d.back"
			 "  FROM unnest($1::bigint[], $2::timestamptz[]) AS d (id, back)"
			 " WHERE s.workflow_step_id = d.id",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * apply_rate_limits: keep the claimed steps their rate limits let start
 * now, defer the others; returns how many stay, compacted at the front of
 * steps.  Deferred steps wake the executors when they fall due like any
 * step with a next_attempt_at.
 */
static int
apply_rate_limits(ClaimedStep *steps, int n)
{
	TimestampTz now = GetCurrentTimestamp();
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	Datum	   *backs = palloc(sizeof(Datum) * Max(n, 1));
	int			ndeferred = 0;
	int			kept = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		ClaimedStep *c = &steps[i];
		TimestampTz start = now;

		if (c->rate_key != NULL && !c->skip)
			start = tasker_rate_ask(c->rate_key, c->rate_per_second,
									c->rate_burst, c->rate_returning, now);
		if (start > now)
		{
			ids[ndeferred] = c->step_id;
			backs[ndeferred++] = TimestampTzGetDatum(start);
			continue;
		}
		if (kept != i)
			steps[kept] = *c;
		kept++;
	}
	defer_steps(ids, backs, ndeferred);
	rate_deferrals += ndeferred;
	return kept;
}

/*
 * tasker_claims_deferred: how many claimed steps this backend deferred
 * for their rate limits, since it started (the executors wake at once
 * after a claim that deferred some, to claim others in their place).
 */
uint64
tasker_claims_deferred(void)
{
	return rate_deferrals;
}

/*
 * tasker_claim_ready_steps: lock up to limit ready steps of a handler kind
 * ("sql", "http", "worker"; of one task when task_id is not 0; of tasks
 * whose template owner run_as has the privileges of, when it is valid; of
 * one queue, when queue is not NULL) and copy
 * what running them needs, envelopes included.  One row that cannot be
 * read never stops the claim of the others: it comes back quarantined,
 * with skip set, for its task to be settled.  Returns the number of
 * entries in *out.  Runs in the caller's transaction, SPI connected.
 */
int
tasker_claim_ready_steps(const char *kind, int64 task_id, int limit, Oid run_as,
						 const char *queue, ClaimedStep **out)
{
	bool		takes_slots = strcmp(kind, "flow") != 0;	/* flow steps hold no worker */
	Datum		values[7] = {Int32GetDatum(limit), Int64GetDatum(task_id),
		TimestampTzGetDatum(GetCurrentTimestamp()), ObjectIdGetDatum(run_as),
		CStringGetTextDatum(kind), CStringGetTextDatum(queue ? queue : ""),
	BoolGetDatum(takes_slots)};
	ClaimArgs	args = {values, out, 0};

	if (tasker_try(claim_together_call, &args) != NULL)
		args.n = claim_one_by_one(values, out);
	if (takes_slots)
		args.n = enforce_namespace_caps(*out, args.n);
	args.n = apply_rate_limits(*out, args.n);
	start_claimed_tasks(*out, args.n);
	return args.n;
}

/*
 * tasker_read_step: what a claim of step_id would copy (envelope, attempts,
 * timeout, ...) and its handler kind, read with the claim's own SQL but
 * without locking or claiming the step, for tasker_http_preview.  Returns
 * false when there is no such step (or its template or task row is
 * missing).  Runs in the caller's transaction, SPI connected; *kind is
 * allocated in the SPI context.
 */
bool
tasker_read_step(int64 step_id, ClaimedStep *out, char **kind)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&read_step_plan,
			 "WITH claimed AS (SELECT $1::bigint AS workflow_step_id)"
			 " SELECT c.*, k.handler_kind FROM (" CLAIMED_STEP_SQL ") c"
			 " JOIN @extschema@.tasker_workflow_steps k ON k.workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	memset(out, 0, sizeof(*out));
	copy_claimed(0, out);
	/* handler_kind is the last column, after those of copy_claimed */
	*kind = TextDatumGetCString(tasker_col(0, SPI_tuptable->tupdesc->natts, &isnull));
	return true;
}

/*
 * cmp_int64: qsort comparator.
 */
static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * tasker_finalize_tasks: settle the given tasks (ids may repeat; the array
 * is sorted in place), each once, in task_id order so that two workers
 * never deadlock on their rows.
 */
void
tasker_finalize_tasks(int64 *ids, int n)
{
	int			i;
	int			m = 0;

	if (n == 0)
		return;
	qsort(ids, n, sizeof(int64), cmp_int64);
	for (i = 0; i < n; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			ids[m++] = ids[i];
	settle_tasks(ids, m);
}
/*
 * tasker_lock_tasks: lock the given task rows (ids may repeat) in task_id
 * order, waiting for them, before a transaction locks steps of those tasks
 * it did not claim (an HTTP worker recording outcomes).  The caller holds
 * no step row yet, so the wait follows the lock order.
 */
void
tasker_lock_tasks(int64 *ids, int n)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1];

	if (n == 0)
		return;
	values[0] = tasker_int8_array(ids, n);
	SPI_connect();
	tasker_run_plan(tasker_keep_plan(&lock_tasks_plan,
			 "SELECT task_id FROM @extschema@.tasker_tasks"
			 " WHERE task_id = ANY ($1) ORDER BY task_id FOR NO KEY UPDATE",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	SPI_finish();
}

/*
 * transition_result: move every id in the first column of the last result
 * (copied first: each transition runs statements of its own) to a state.
 */
static int
transition_result(TaskerEntity entity, TaskerState to, const char *metadata_json)
{
	uint64		n = SPI_processed;
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	uint64		i;
	bool		isnull;

	for (i = 0; i < n; i++)
		ids[i] = DatumGetInt64(tasker_col(i, 1, &isnull));
	for (i = 0; i < n; i++)
		tasker_transition(entity, ids[i], to, metadata_json);
	return (int) n;
}

/*
 * settle_orphans: settle the cancelled tasks among those of the next ready
 * steps (of task_id only, when it is not 0).  Such steps were held by a
 * batch when their task was cancelled and then released without their
 * task being settled (their worker died): finalization cancels them.
 */
static void
settle_orphans(Datum *values)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, TIMESTAMPTZOID};
	uint64		n;
	uint64		i;
	int64	   *ids;
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&orphans_plan,
			 "SELECT t.task_id FROM @extschema@.tasker_tasks t"
			 " WHERE t.task_id = ANY (ARRAY("
			 "        SELECT s.task_id FROM @extschema@.tasker_workflow_steps s"
			 "         WHERE " TASKER_READY_STEP_SQL
			 "           AND s.next_attempt_at <= $3"
			 "           AND ($1 = 0 OR s.task_id = $1)"
			 "         ORDER BY s.claim_key, s.task_id LIMIT $2))"
			 "   AND t.current_state = 'cancelled'"
			 " ORDER BY t.task_id"
			 " FOR NO KEY UPDATE OF t SKIP LOCKED",
			 3, argtypes),
		values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
		ids[i] = DatumGetInt64(tasker_col(i, 1, &isnull));
	for (i = 0; i < n; i++)
		tasker_finalize_task(ids[i]);
}

/*
 * per_kind_sql: head, then one copy of part per handler kind (%s replaced
 * by the kind's name as a literal; the ready index leads with the kind,
 * so each part is one index range), joined by sep, then tail.
 */
static char *
per_kind_sql(const char *head, const char *part, const char *sep, const char *tail)
{
	StringInfoData buf;
	const TaskerHandlerKind *const *k;

	initStringInfo(&buf);
	appendStringInfoString(&buf, head);
	for (k = tasker_handler_kinds; *k != NULL; k++)
	{
		if (k != tasker_handler_kinds)
			appendStringInfoString(&buf, sep);
		appendStringInfo(&buf, part, quote_literal_cstr((*k)->name));
	}
	appendStringInfoString(&buf, tail);
	return buf.data;
}

/*
 * tasker_start_ready_tasks: move pending tasks that have a ready step (of
 * task_id only, when it is not 0) to in_progress; returns how many.  A
 * claim starts the tasks of the steps it takes; this starts them ahead of
 * it (tasker_run_task, tasker_run_steps), and settles the cancelled tasks
 * whose steps are still ready (their batch died): an idle worker calls it
 * for that.
 */
int
tasker_start_ready_tasks(int64 task_id, int limit)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[3] = {Int64GetDatum(task_id), Int32GetDatum(limit),
	TimestampTzGetDatum(GetCurrentTimestamp())};
	int			n;
	char	   *start_sql = NULL;

	SPI_connect();

	/*
	 * The next ready steps of each kind that no batch holds, in the order the batches
	 * claim them; their pending tasks are the ones to start.  A task row
	 * someone else holds (an operator cancelling it) is left for later.
	 */
	if (start_plan == NULL)
		start_sql = per_kind_sql(
			 "SELECT t.task_id FROM @extschema@.tasker_tasks t"
			 " WHERE t.task_id = ANY (ARRAY(",
			 "(SELECT task_id FROM (SELECT s.task_id FROM @extschema@.tasker_workflow_steps s"
			 "   WHERE s.handler_kind = %s"
			 "     AND " TASKER_READY_STEP_SQL
			 "     AND s.next_attempt_at <= $3"
			 "     AND ($1 = 0 OR s.task_id = $1)"
			 "   ORDER BY s.claim_key, s.task_id LIMIT $2"
			 "   FOR NO KEY UPDATE SKIP LOCKED) k)",
			 " UNION ",
			 "))"
			 "   AND t.current_state = 'pending'"
			 "   AND " TASKER_ADMITTED_TASK_SQL
			 " ORDER BY t.task_id"
			 " FOR NO KEY UPDATE OF t SKIP LOCKED");
	tasker_run_plan(tasker_keep_plan(&start_plan, start_sql, 3, argtypes),
		values, NULL, SPI_OK_SELECT);
	n = transition_result(TASKER_ENTITY_TASK, TASKER_IN_PROGRESS,
						  "{\"reason\": \"ready_steps_available\"}");
	settle_orphans(values);
	SPI_finish();
	return n;
}

/*
 * backoff_ms: the wait before retry number 'attempts' (1 after the first
 * failure): 1, 2, 4, ... seconds capped at tasker.max_backoff, +/-10 %.
 */
static int64
backoff_ms(int attempts)
{
	double		base;
	double		jitter;

	base = (attempts >= 30) ? tasker_max_backoff : ldexp(1.0, Max(attempts, 1) - 1);
	base = Min(base, (double) tasker_max_backoff);
	jitter = 0.9 + 0.2 * pg_prng_double(&pg_global_prng_state);
	return (int64) Max(base * jitter * 1000.0, 1.0);
}

/*
 * tasker_accept_results: whether a handler's results may be stored.
 * Results over tasker.max_results_size fail the attempt for good instead
 * (the same results would come back on every retry), and are not stored:
 * the failure is recorded here and false returned.
 */
bool
tasker_accept_results(ClaimedStep *c, StepOutcome *o)
{
	StepOutcome failure;

	if (o->results == NULL || VARSIZE(o->results) <= (Size) tasker_max_results_size * 1024)
		return true;
	memset(&failure, 0, sizeof(failure));
	failure.message = psprintf("step results are too large: %zu bytes",
							   (Size) VARSIZE(o->results));
	failure.detail = psprintf("tasker.max_results_size allows %d kB.", tasker_max_results_size);
	failure.hint = pstrdup("Keep large data in a table of your own and return its key.");
	failure.sqlstate = pstrdup("54000");
	failure.permanent = true;
	failure.retry_after = -1;
	tasker_record_failure(c, &failure);
	return false;
}

/*
 * tasker_start_attempts: count an attempt of each claimed step (those not
 * skipped) and move it to in_progress, in one statement; with
 * lease_seconds > 0, under a lease that long (a leased kind's steps run
 * outside the claiming transaction, and tasker_claim_expired_leases takes
 * back the steps whose lease ran out).  Runs in the caller's transaction.
 */
void
tasker_start_attempts(ClaimedStep *steps, int n, int lease_seconds)
{
	StepMove   *moves = palloc0(sizeof(StepMove) * Max(n, 1));
	int			nmoves = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (steps[i].skip)
			continue;
		moves[nmoves].step_id = steps[i].step_id;
		moves[nmoves].task_id = steps[i].task_id;
		moves[nmoves].from_error = steps[i].from_error;
		moves[nmoves].lease_seconds = lease_seconds;
		nmoves++;
	}
	tasker_start_steps(moves, nmoves);
}

/*
 * fail_decision: a decision step whose results choose no valid branch
 * fails for good, with the problem as its error.
 */
static void
fail_decision(ClaimedStep *c, char *problem)
{
	tasker_record_permanent_failure(c, "22023", problem,
									pstrdup("Return {\"next\": [...]} with names from the decision step's branches."),
									"attempt_failed");
}

/*
 * complete_map_step: every instance of a map step completed: it
 * completes with their results, in index order.
 */
static void
complete_map_step(int64 parent_id, int64 task_id)
{
	ClaimedStep p;
	StepOutcome o;
	ClaimedStep *pp = &p;
	StepOutcome *op = &o;

	memset(&p, 0, sizeof(p));
	memset(&o, 0, sizeof(o));
	p.step_id = parent_id;
	p.task_id = task_id;
	p.attempts = read_step(parent_id, &task_id) - 1;
	o.ok = true;
	o.results = tasker_map_results(parent_id);
	if (tasker_accept_results(&p, &o))
		tasker_record_successes(&pp, &op, 1);
}

/*
 * after_completions: the rules that follow the completion of dynamic
 * steps (flow_rules.c): a decision's branches not taken are skipped, and
 * each map step whose last instances completed completes in turn.
 */
static void
after_completions(ClaimedStep *const *steps, List **not_chosen, bool *done, int n)
{
	int			i;
	int			j;

	for (i = 0; i < n; i++)
		if (done[i] && not_chosen[i] != NIL)
			tasker_skip_branches(steps[i]->step_id, not_chosen[i]);
	for (i = 0; i < n; i++)
	{
		int64		parent = steps[i]->map_parent_id;
		int			count = 0;
		bool		first = true;

		if (!done[i] || parent == 0)
			continue;
		for (j = 0; j < n; j++)
			if (done[j] && steps[j]->map_parent_id == parent)
			{
				first = first && j >= i;
				count++;
			}
		if (first && tasker_map_items_done(parent, count))
			complete_map_step(parent, steps[i]->task_id);
	}
}

/*
 * tasker_record_successes: store the results of n in_progress steps and
 * complete them, in one statement (their children released, one event
 * each); then apply the rules of dynamic steps.  A decision step whose
 * results name no valid branch fails for good instead.  The results must
 * have been accepted (tasker_accept_results).  Runs in the caller's
 * transaction; the steps are locked.
 */
void
tasker_record_successes(ClaimedStep *const *steps, StepOutcome *const *outcomes, int n)
{
	StepMove   *moves = palloc0(sizeof(StepMove) * Max(n, 1));
	List	  **not_chosen = palloc0(sizeof(List *) * Max(n, 1));
	bool	   *done = palloc0(sizeof(bool) * Max(n, 1));
	bool		rules = false;
	int			m = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (steps[i]->step_type != NULL && strcmp(steps[i]->step_type, "decision") == 0)
		{
			char	   *problem = tasker_decision_check(steps[i]->step_id,
														outcomes[i]->results,
														&not_chosen[i]);

			if (problem != NULL)
			{
				fail_decision(steps[i], problem);
				continue;
			}
		}
		rules = rules || steps[i]->step_type != NULL || steps[i]->map_parent_id != 0;
		done[i] = true;
		moves[m].step_id = steps[i]->step_id;
		moves[m].task_id = steps[i]->task_id;
		moves[m++].results = outcomes[i]->results;
	}
	tasker_complete_steps(moves, m);
	if (rules)
		after_completions(steps, not_chosen, done, n);
	/* Children may be ready now, for any kind, external workers too. */
	if (m > 0)
		tasker_wake_workers_at_commit();
}

/*
 * tasker_record_success: store the results and complete one step (or
 * fail it, when its results are too large).  Runs in the caller's
 * transaction and SPI connection; the step is locked and in_progress.
 */
void
tasker_record_success(ClaimedStep *c, StepOutcome *o)
{
	if (tasker_accept_results(c, o))
		tasker_record_successes(&c, &o, 1);
}

/*
 * tasker_step_still_ours: lock a step and tell whether it is still
 * in_progress at the attempt the caller started (not cancelled, not
 * reclaimed after its lease ran out): only then is an outcome of a
 * leased kind recorded.
 */
bool
tasker_step_still_ours(ClaimedStep *c)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(c->step_id), Int32GetDatum(c->attempts + 1)};

	tasker_run_plan(tasker_keep_plan(&ours_plan,
			 "SELECT 1 FROM @extschema@.tasker_workflow_steps"
			 " WHERE workflow_step_id = $1 AND current_state = 'in_progress'"
			 "   AND attempts = $2"
			 " FOR NO KEY UPDATE",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	return SPI_processed == 1;
}

/*
 * tasker_claim_expired_leases: lock up to limit in_progress steps of a
 * handler kind whose lease ran out (their worker died or stalled), each with its task row
 * first (SKIP LOCKED), oldest lease first.  The caller records each as a
 * failed attempt (tasker_record_failure), so it retries under the normal
 * rules.  Returns the number in *out; attempts there is the count before
 * the expired attempt, as for a claim.
 */
int
tasker_claim_expired_leases(const char *kind, int limit, ClaimedStep **out)
{
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		values[2] = {Int32GetDatum(limit), CStringGetTextDatum(kind)};
	ClaimedStep *steps;
	uint64		i;
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&expired_plan,
			 "SELECT s.workflow_step_id, s.task_id, s.retryable, s.retry_limit, s.attempts,"
			 "       s.step_type, s.map_parent_id"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 " CROSS JOIN LATERAL (" TASKER_LOCK_TASK_SQL
			 "       FOR NO KEY UPDATE OF t SKIP LOCKED) lt"
			 " WHERE s.lease_expires_at < clock_timestamp() AND s.current_state = 'in_progress'"
			 "   AND s.handler_kind = $2"
			 " ORDER BY s.lease_expires_at LIMIT $1"
			 " FOR NO KEY UPDATE OF s SKIP LOCKED",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	steps = palloc0(sizeof(ClaimedStep) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		steps[i].step_id = DatumGetInt64(tasker_col(i, 1, &isnull));
		steps[i].task_id = DatumGetInt64(tasker_col(i, 2, &isnull));
		steps[i].retryable = DatumGetBool(tasker_col(i, 3, &isnull));
		steps[i].retry_limit = DatumGetInt32(tasker_col(i, 4, &isnull));
		steps[i].attempts = DatumGetInt32(tasker_col(i, 5, &isnull)) - 1;
		steps[i].step_type = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6);
		steps[i].map_parent_id = DatumGetInt64(tasker_col(i, 7, &isnull));
		if (isnull)
			steps[i].map_parent_id = 0;
	}
	*out = steps;
	return (int) SPI_processed;
}

/* Longest text of an error kept in a transition's metadata, in bytes. */
#define TASKER_METADATA_TEXT_MAX 2000

/*
 * append_clipped: append ,"key": value (a JSON string, clipped to
 * TASKER_METADATA_TEXT_MAX bytes on a character boundary); nothing when
 * value is NULL.
 */
static void
append_clipped(StringInfo buf, const char *key, const char *value)
{
	int			len;

	if (value == NULL)
		return;
	len = pg_mbcliplen(value, strlen(value), TASKER_METADATA_TEXT_MAX);
	appendStringInfo(buf, ", \"%s\": ", key);
	escape_json(buf, pnstrdup(value, len));
}

/*
 * tasker_failure_metadata: the metadata of a step's transition to error:
 * why the attempt failed (message, SQLSTATE, detail, hint, attempt
 * number) and whether the failure is final (no retry is scheduled).  The
 * step's results keep only the last error; the transitions keep every
 * attempt's.  reason names what failed the step.
 */
char *
tasker_failure_metadata(const char *reason, const StepOutcome *o,
						int attempt, bool final)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"reason\": ");
	escape_json(&buf, reason);
	appendStringInfo(&buf, ", \"final\": %s, \"error\": {\"attempt\": %d, \"permanent\": %s",
					 final ? "true" : "false", attempt,
					 o->permanent ? "true" : "false");
	append_clipped(&buf, "message", o->message);
	append_clipped(&buf, "sqlstate", o->sqlstate);
	append_clipped(&buf, "detail", o->detail);
	append_clipped(&buf, "hint", o->hint);
	appendStringInfoString(&buf, "}}");
	return buf.data;
}

/*
 * tasker_record_failure: store the error, move the step to error, and
 * schedule the retry when one is due: not after tasker_permanent_error,
 * nor for a non-retryable step, nor once attempts reach retry_limit.
 * The transition keeps the error in its metadata, and its step.failed
 * event says whether the failure is final.  o->details (may be NULL) adds keys to the stored error object.  Runs in
 * the caller's transaction and SPI connection; also used by
 * handler_http.c.
 */
void
tasker_record_failure(ClaimedStep *c, StepOutcome *o)
{
	tasker_record_failure_reason(c, o, "attempt_failed");
}

/*
 * tasker_record_failure_reason: tasker_record_failure with the reason its
 * transition's metadata gives (attempt_failed; lease_expired for a
 * reclaimed lease).
 */
void
tasker_record_failure_reason(ClaimedStep *c, StepOutcome *o, const char *reason)
{
	Oid			fail_types[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, JSONBOID};
	Oid			retry_types[3] = {INT8OID, INT8OID, BOOLOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	int			attempts = c->attempts + 1;
	bool		retry = !o->permanent && c->retryable && attempts < c->retry_limit;
	int64		delay_ms = 0;

	values[0] = Int64GetDatum(c->step_id);
	values[1] = CStringGetTextDatum(o->message);
	values[2] = CStringGetTextDatum(o->sqlstate ? o->sqlstate : "TK001");
	values[3] = o->detail ? CStringGetTextDatum(o->detail) : (Datum) 0;
	values[4] = o->hint ? CStringGetTextDatum(o->hint) : (Datum) 0;
	values[5] = BoolGetDatum(o->permanent);
	nulls[3] = o->detail ? ' ' : 'n';
	nulls[4] = o->hint ? ' ' : 'n';
	values[6] = o->details ? JsonbPGetDatum(o->details) : (Datum) 0;
	nulls[6] = o->details ? ' ' : 'n';
	(void) tasker_run_plan(tasker_keep_plan(&failure_plan,
							  "UPDATE @extschema@.tasker_workflow_steps SET results = jsonb_build_object('error',"
							  "   COALESCE($7, '{}') ||"
							  "   jsonb_strip_nulls(jsonb_build_object('message', $2, 'sqlstate', $3,"
							  "     'detail', $4, 'hint', $5, 'attempt', attempts, 'permanent', $6)))"
							  " WHERE workflow_step_id = $1",
							  7, fail_types),
						   values, nulls, SPI_OK_UPDATE);
	tasker_fail_attempt(c->step_id, retry ? TASKER_ATTEMPT_RETRY : TASKER_ATTEMPT_FAILED,
						tasker_failure_metadata(reason, o, attempts, !retry));

	if (retry)
		delay_ms = (o->retry_after >= 0)
			? (int64) Min(o->retry_after, tasker_max_backoff) * 1000
			: backoff_ms(attempts);
	values[1] = Int64GetDatum(retry ? delay_ms : -1);
	values[2] = BoolGetDatum(!o->permanent && c->retryable);
	tasker_run_plan(tasker_keep_plan(&retry_plan,
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET retryable = $3,"
			 "       next_attempt_at = CASE WHEN $2 >= 0"
			 "           THEN clock_timestamp() + $2 * interval '1 millisecond' END,"
			 "       backoff_request_seconds = CASE WHEN $2 >= 0"
			 "           THEN ceil($2 / 1000.0)::integer END"
			 " WHERE workflow_step_id = $1",
			 3, retry_types),
		values, NULL, SPI_OK_UPDATE);
	if (!retry && c->map_parent_id != 0)
		fail_map_step(c, o);
}

/*
 * read_step: the attempts counted on a step, and its task (*task_id; 0
 * when there is no such step).
 */
static int
read_step(int64 step_id, int64 *task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&attempts_plan,
			 "SELECT attempts, task_id FROM @extschema@.tasker_workflow_steps"
			 " WHERE workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	*task_id = SPI_processed == 1 ? DatumGetInt64(tasker_col(0, 2, &isnull)) : 0;
	return SPI_processed == 1 ? DatumGetInt32(tasker_col(0, 1, &isnull)) : 0;
}

/*
 * tasker_record_permanent_failure: fail a step for good with tasker's own
 * error (a decision without a valid branch, a failed child task, a flow
 * rule that cannot apply); reason goes into the transition.
 */
void
tasker_record_permanent_failure(ClaimedStep *c, const char *sqlstate, char *message,
								char *hint, const char *reason)
{
	StepOutcome f;

	memset(&f, 0, sizeof(f));
	f.message = message;
	f.sqlstate = pstrdup(sqlstate);
	f.hint = hint;
	f.permanent = true;
	f.retry_after = -1;
	tasker_record_failure_reason(c, &f, reason);
}

/*
 * fail_map_step: an instance of a map step failed for good: the map step
 * fails for good with its error, and its other instances are claimed no
 * more (those running finish and are recorded).
 */
static void
fail_map_step(ClaimedStep *c, StepOutcome *o)
{
	ClaimedStep p;
	StepOutcome f = *o;
	TaskerState step;
	TaskerState task;

	tasker_step_state(c->map_parent_id, &step, &task);
	if (step != TASKER_IN_PROGRESS)
		return;
	memset(&p, 0, sizeof(p));
	p.step_id = c->map_parent_id;
	p.task_id = c->task_id;
	p.attempts = read_step(p.step_id, &p.task_id) - 1;
	p.task_id = c->task_id;
	f.permanent = true;
	f.details = NULL;
	f.message = psprintf("map instance step " INT64_FORMAT " failed: %s",
						 c->step_id, o->message ? o->message : "");
	tasker_record_failure_reason(&p, &f, "map_item_failed");
	tasker_stop_map_items(p.step_id);
}

/*
 * tasker_step_state: the current state of a step and of its task.
 */
void
tasker_step_state(int64 step_id, TaskerState *step, TaskerState *task)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};

	tasker_run_plan(tasker_keep_plan(&step_state_plan,
			 "SELECT s.current_state::text, t.current_state::text"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 "  JOIN @extschema@.tasker_tasks t USING (task_id)"
			 " WHERE s.workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		tasker_report_missing(TASKER_ENTITY_STEP, step_id);
	*step = tasker_state_from_name(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	*task = tasker_state_from_name(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
}

/*
 * cancel_leftovers: cancel the pending steps of a cancelled task, and
 * those held outside a transaction (leased, waiting), that no
 * other transaction holds (a step released after its task was cancelled,
 * or one whose claim was dropped, even by a worker that died), and stop
 * the retries of its steps in error.
 */
static void
cancel_leftovers(int64 task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};

	tasker_run_plan(tasker_keep_plan(&leftover_plan,
			 "SELECT workflow_step_id FROM @extschema@.tasker_workflow_steps s"
			 " WHERE task_id = $1 AND (current_state = 'pending'"
			 "       OR (current_state = 'in_progress' AND " TASKER_LEASED_STEP_SQL("s") "))"
			 " ORDER BY workflow_step_id FOR NO KEY UPDATE SKIP LOCKED",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	(void) transition_result(TASKER_ENTITY_STEP, TASKER_CANCELLED,
							 "{\"reason\": \"task_cancelled\"}");
	tasker_stop_retries(task_id);
	cancel_children(task_id);
}

/*
 * tasker_stop_retries: the steps of a task in error are retried no more
 * (its task was cancelled).
 */
void
tasker_stop_retries(int64 task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};

	tasker_run_plan(tasker_keep_plan(&stop_retries_plan,
			 "UPDATE @extschema@.tasker_workflow_steps SET next_attempt_at = NULL"
			 " WHERE task_id = $1 AND current_state = 'error'"
			 "   AND next_attempt_at IS NOT NULL",
			 1, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * tasker_restart_step: a step in error starts over (tasker_retry_task):
 * attempts back to 0, retryable as its template says, and pending again.
 */
void
tasker_restart_step(int64 step_id, const char *metadata_json)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};

	tasker_run_plan(tasker_keep_plan(&reset_step_plan,
			 "UPDATE @extschema@.tasker_workflow_steps s"
			 "   SET attempts = 0, backoff_request_seconds = NULL,"
			 "       retryable = l.default_retryable"
			 "  FROM @extschema@.tasker_tasks t, @extschema@.tasker_named_tasks_named_steps l"
			 " WHERE s.workflow_step_id = $1 AND t.task_id = s.task_id"
			 "   AND l.named_task_id = t.named_task_id AND l.named_step_id = s.named_step_id",
			 1, argtypes),
		values, NULL, SPI_OK_UPDATE);
	tasker_transition(TASKER_ENTITY_STEP, step_id, TASKER_PENDING, metadata_json);
}

/*
 * tasker_resolve_step_by_hand: settle a step by hand with the given
 * results (resolved_manually); false when it already was.
 */
bool
tasker_resolve_step_by_hand(int64 step_id, Jsonb *results, const char *metadata_json)
{
	Oid			argtypes[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum(step_id), JsonbPGetDatum(results)};

	if (!tasker_transition(TASKER_ENTITY_STEP, step_id, TASKER_RESOLVED_MANUALLY, metadata_json))
		return false;
	tasker_run_plan(tasker_keep_plan(&set_results_plan,
			 "UPDATE @extschema@.tasker_workflow_steps SET results = $2"
			 " WHERE workflow_step_id = $1", 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
	return true;
}

/*
 * quarantine_row: fail a step for good with tasker's error message, as far
 * as its state allows: a step a control already settled (cancelled,
 * resolved) keeps that state, and a step in error stays there without a
 * transition.  The step is never ready again until an operator acts.
 */
static void
quarantine_row(ClaimedStep *c, const char *message)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(c->step_id), CStringGetTextDatum(message)};
	TaskerState step;
	TaskerState task;

	tasker_step_state(c->step_id, &step, &task);
	if (step != TASKER_PENDING && step != TASKER_IN_PROGRESS && step != TASKER_ERROR)
		return;
	tasker_run_plan(tasker_keep_plan(&quarantine_plan,
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET retryable = false, next_attempt_at = NULL, in_process = false,"
			 "       results = jsonb_build_object('error', jsonb_build_object("
			 "         'message', 'tasker could not run the step: ' || $2,"
			 "         'permanent', true))"
			 " WHERE workflow_step_id = $1",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
	if (step != TASKER_ERROR)
	{
		StepOutcome o;

		memset(&o, 0, sizeof(o));
		o.message = psprintf("tasker could not run the step: %s", message);
		o.permanent = true;
		tasker_fail_attempt(c->step_id, TASKER_ATTEMPT_QUARANTINED,
							tasker_failure_metadata("internal_error", &o,
													c->attempts + 1, true));
	}
}

/* The arguments of quarantine_row through tasker_try. */
typedef struct QuarantineArgs
{
	ClaimedStep *c;
	const char *message;
} QuarantineArgs;

/*
 * quarantine_row_call: quarantine_row for tasker_try.
 */
static void
quarantine_row_call(void *arg)
{
	QuarantineArgs *a = (QuarantineArgs *) arg;

	quarantine_row(a->c, a->message);
}

/*
 * park_step: the last resort when even quarantine_row failed: take the
 * step out of the ready set with one plain update, so that it cannot stop
 * its worker at every claim.
 */
static void
park_step(ClaimedStep *c)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(c->step_id)};

	tasker_run_plan(tasker_keep_plan(&quarantine_state_plan,
			 "UPDATE @extschema@.tasker_workflow_steps SET next_attempt_at = NULL"
			 " WHERE workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * tasker_quarantine_step: after tasker itself failed to run or record a step (not
 * the handler: its errors are data), fail the step for good so that it
 * cannot stop its worker again at every claim.  Never fails for the
 * step's state: quarantine_row runs in a subtransaction, and park_step
 * takes over if it fails.
 */
void
tasker_quarantine_step(ClaimedStep *c, ErrorData *edata)
{
	QuarantineArgs args = {c, edata->message};

	ereport(WARNING,
			(errmsg("tasker could not run step " INT64_FORMAT ": %s", c->step_id, edata->message),
			 errdetail("The step is failed for good; the error is in its results."),
			 errhint("Inspect the step, then tasker_retry_task or tasker_resolve_step.")));
	if (tasker_try(quarantine_row_call, &args) != NULL)
		park_step(c);
}

/*
 * tasker_ms_until_next_step: milliseconds until the earliest scheduled
 * step is due (0 if one is due now), or -1 when none is scheduled.  Lets an
 * idle worker wake exactly when a retry backoff ends.  A step that fell
 * due after claimed_at (the start of the caller's claim, which could not
 * see it due) counts as due in 1 ms, not 0: the caller looks again at
 * once instead of taking it for a step held elsewhere.
 */
long
tasker_ms_until_next_step(TimestampTz claimed_at)
{
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(claimed_at)};
	bool		isnull;
	Datum		d;
	long		ms;
	char	   *due_sql = NULL;

	SPI_connect();
	if (next_due_plan == NULL)
		due_sql = per_kind_sql(
			 "SELECT (SELECT GREATEST(0, ceil(extract(epoch FROM d - clock_timestamp()) * 1000))::bigint),"
			 "       d > $1 FROM (SELECT LEAST(",
			 "(SELECT min(s.next_attempt_at) FROM @extschema@.tasker_workflow_steps s"
			 "  WHERE s.handler_kind = %s AND " TASKER_READY_STEP_SQL
			 "    AND " TASKER_DUE_INDEX_SQL ")",
			 ", ",
			 /* a waiting flow step's deadline (wait timeout_seconds) */
			 ", (SELECT min(s.lease_expires_at) FROM @extschema@.tasker_workflow_steps s"
			 "    WHERE s.lease_expires_at IS NOT NULL AND s.handler_kind = 'flow'"
			 "      AND s.current_state = 'in_progress')"
			 ") AS d) due");
	tasker_run_plan(tasker_keep_plan(&next_due_plan, due_sql, 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	ms = isnull ? -1 : (long) DatumGetInt64(d);
	if (ms == 0 && DatumGetBool(tasker_col(0, 2, &isnull)))
		ms = 1;
	SPI_finish();
	return ms;
}

/*
 * subtask_finished: a task finished (complete, or error when ok is
 * false); if a subtask step created it and still waits for it, that step
 * completes with the task's results, or fails for good, and its task is
 * settled.  The parent's task row is locked after the child's: a
 * deadlock with a control on the parent is detected and retried.
 */
static void
subtask_finished(int64 child_id, bool ok)
{
	int64		parent = tasker_subtask_parent(child_id);
	ClaimedStep c;
	TaskerState step;
	TaskerState task;

	if (parent == 0)
		return;
	tasker_step_state(parent, &step, &task);
	if (step != TASKER_IN_PROGRESS)
		return;
	memset(&c, 0, sizeof(c));
	c.step_id = parent;
	c.attempts = read_step(parent, &c.task_id) - 1;
	tasker_lock_tasks(&c.task_id, 1);
	if (!tasker_step_still_ours(&c))
		return;
	if (ok)
	{
		StepOutcome o;

		memset(&o, 0, sizeof(o));
		o.ok = true;
		o.results = tasker_task_results(child_id);
		tasker_record_success(&c, &o);
	}
	else
		tasker_record_permanent_failure(&c, "TK001",
										psprintf("child task " INT64_FORMAT " failed", child_id),
										psprintf("Inspect task " INT64_FORMAT "; retry it, then retry this task.", child_id),
										"subtask_failed");
	tasker_finalize_task(c.task_id);
}

/*
 * cancel_children: the unfinished child tasks of a cancelled task's
 * subtask steps are cancelled too, and settled (their own children
 * follow).
 */
static void
cancel_children(int64 task_id)
{
	int			n;
	int64	   *ids = tasker_child_tasks(task_id, &n);
	int			i;

	for (i = 0; i < n; i++)
		if (tasker_transition(TASKER_ENTITY_TASK, ids[i], TASKER_CANCELLED,
							  "{\"reason\": \"parent_cancelled\"}"))
			tasker_finalize_task(ids[i]);
}

/*
 * settle: what a task's state and step counts call for: cancel the
 * leftovers of a cancelled task, complete a task whose steps are all
 * complete or resolved, fail one where none can make progress.  The task
 * row is locked.
 */
static void
settle(int64 task_id, const char *state, int64 total, int64 done, int64 live,
	   bool paused)
{
	if (strcmp(state, "cancelled") == 0)
		cancel_leftovers(task_id);
	else if (strcmp(state, "pending") == 0 || strcmp(state, "in_progress") == 0)
	{
		if (done == total)
		{
			tasker_transition(TASKER_ENTITY_TASK, task_id, TASKER_IN_PROGRESS, NULL);
			tasker_transition(TASKER_ENTITY_TASK, task_id, TASKER_COMPLETE,
							  "{\"reason\": \"all_steps_complete\"}");
			subtask_finished(task_id, true);
		}
		else if (live == 0 && !paused)
		{
			tasker_transition(TASKER_ENTITY_TASK, task_id, TASKER_ERROR,
							  "{\"reason\": \"steps_in_error_state\"}");
			subtask_finished(task_id, false);
		}
	}
}

/*
 * What settle_tasks reads of each task: its state, step counts (all,
 * finished, live: running or ready) and whether a pause holds it.
 */
#define COUNTS_SQL(paused) \
	"SELECT t.task_id, t.current_state::text, c.total, c.done, c.live, " paused \
	"  FROM @extschema@.tasker_tasks t" \
	" CROSS JOIN LATERAL (SELECT count(*) AS total," \
	"       count(*) FILTER (WHERE s.current_state IN " TASKER_FINISHED_STATES_SQL ") AS done," \
	"       count(*) FILTER (WHERE s.current_state = 'in_progress'" \
	"           OR (" TASKER_READY_STEP_SQL ")) AS live" \
	"  FROM @extschema@.tasker_workflow_steps s WHERE s.task_id = t.task_id) c" \
	" WHERE t.task_id = ANY ($1)" \
	" ORDER BY t.task_id"

/* One task's row as settle_tasks reads it. */
typedef struct TaskCounts
{
	int64		task_id;
	char	   *state;
	int64		total;
	int64		done;
	int64		live;
	bool		paused;			/* held by a pause: not failed for want of ready steps */
} TaskCounts;

/*
 * settle_tasks: settle the tasks of sorted, distinct ids: lock their rows
 * in task_id order, read their states and step counts in one statement,
 * and settle each that calls for it.  Complete when every step is
 * complete or resolved_manually, error when no step is running or can
 * still run.  The lock comes first, so of two transactions finishing a
 * task's last steps the later one sees both.
 */
static void
settle_tasks(int64 *ids, int n)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1] = {tasker_int8_array(ids, n)};
	TaskCounts *rows;
	uint64		nrows;
	uint64		i;
	bool		isnull;

	SPI_connect();
	tasker_run_plan(tasker_keep_plan(&lock_task_plan,
			 "SELECT task_id FROM @extschema@.tasker_tasks WHERE task_id = ANY ($1)"
			 " ORDER BY task_id FOR NO KEY UPDATE",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	/* A 0.1.0 schema, not yet updated, has no pause. */
	if (tasker_has_column("tasker_tasks", "paused_at"))
		tasker_run_plan(tasker_keep_plan(&counts_plan, COUNTS_SQL("t.paused_at IS NOT NULL"),
										 1, argtypes),
						values, NULL, SPI_OK_SELECT);
	else
		tasker_run_plan(tasker_keep_plan(&counts_010_plan, COUNTS_SQL("false"), 1, argtypes),
						values, NULL, SPI_OK_SELECT);
	nrows = SPI_processed;
	rows = palloc(sizeof(TaskCounts) * Max(nrows, 1));
	for (i = 0; i < nrows; i++)
	{
		rows[i].task_id = DatumGetInt64(tasker_col(i, 1, &isnull));
		rows[i].state = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		rows[i].total = DatumGetInt64(tasker_col(i, 3, &isnull));
		rows[i].done = DatumGetInt64(tasker_col(i, 4, &isnull));
		rows[i].live = DatumGetInt64(tasker_col(i, 5, &isnull));
		rows[i].paused = DatumGetBool(tasker_col(i, 6, &isnull));
	}
	for (i = 0; i < nrows; i++)
		settle(rows[i].task_id, rows[i].state, rows[i].total, rows[i].done, rows[i].live,
			   rows[i].paused);
	SPI_finish();
}

/*
 * tasker_finalize_task: settle one task after its steps moved.
 */
void
tasker_finalize_task(int64 task_id)
{
	settle_tasks(&task_id, 1);
}

/*
 * tasker_ms_until_next_queue_step: milliseconds until the earliest
 * scheduled worker step of a queue is due (0 if one is due now), or -1
 * when none is scheduled.
 */
long
tasker_ms_until_next_queue_step(const char *queue)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(queue)};
	bool		isnull;
	Datum		d;

	tasker_run_plan(tasker_keep_plan(&queue_due_plan,
			 "SELECT GREATEST(0, ceil(extract(epoch FROM"
			 "         (SELECT min(s.next_attempt_at) FROM @extschema@.tasker_workflow_steps s"
			 "           WHERE s.handler_kind = 'worker' AND s.queue = $1"
			 "             AND " TASKER_READY_STEP_SQL " AND " TASKER_DUE_INDEX_SQL ")"
			 "       - clock_timestamp()) * 1000))::bigint",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	d = tasker_col(0, 1, &isnull);
	return isnull ? -1 : (long) DatumGetInt64(d);
}

/*
 * tasker_extend_step_lease: the lease of an in_progress step runs until
 * now + seconds; returns the new expiry.
 */
TimestampTz
tasker_extend_step_lease(int64 step_id, int seconds)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(step_id), Int32GetDatum(seconds)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&extend_plan,
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET lease_expires_at = clock_timestamp() + $2 * interval '1 second'"
			 " WHERE workflow_step_id = $1 AND current_state = 'in_progress'"
			 " RETURNING lease_expires_at",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		elog(ERROR, "step " INT64_FORMAT " is not in progress", step_id);
	return DatumGetTimestampTz(tasker_col(0, 1, &isnull));
}

/*
 * tasker_release_attempt: an in_progress step given back by its worker:
 * its attempt is not counted, and it is ready again at once.
 */
void
tasker_release_attempt(int64 step_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};

	tasker_run_plan(tasker_keep_plan(&release_plan,
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET attempts = GREATEST(attempts - 1, 0)"
			 " WHERE workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_UPDATE);
	tasker_transition(TASKER_ENTITY_STEP, step_id, TASKER_PENDING,
					  "{\"reason\": \"released\"}");
}

/*
 * tasker_reclaim_expired: record the in_progress steps of a kind whose
 * lease ran out (their worker died or stalled) as failed attempts, so
 * they retry under the normal rules, and settle their tasks; each counts
 * as a lost lease.  Their claim tokens stay, but the claims are no longer
 * current.  Returns how many.
 */
int
tasker_reclaim_expired(const char *kind, int limit, const char *message,
					   const char *detail)
{
	ClaimedStep *steps;
	int64	   *tasks;
	int			n = tasker_claim_expired_leases(kind, limit, &steps);
	int			i;

	tasks = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		StepOutcome o;

		memset(&o, 0, sizeof(o));
		o.message = pstrdup(message);
		o.detail = pstrdup(detail);
		o.sqlstate = pstrdup("TK003");
		o.retry_after = -1;
		tasker_record_failure_reason(&steps[i], &o, "lease_expired");
		tasks[i] = steps[i].task_id;
	}
	if (tasker_step_kind(kind) >= 0)
		tasker_count_lost_leases((TaskerStepKind) tasker_step_kind(kind), n);
	tasker_finalize_tasks(tasks, n);
	return n;
}

/*
 * tasker_pause_tasks: mark the unfinished tasks among ids (not paused
 * yet) paused, by 'task' or 'namespace', and take their ready steps out
 * of the ready index, keeping when each was due.  The claim skips a
 * paused task; a step that becomes ready while its task is paused is
 * skipped that way too.  Returns the ids paused (*n of them), in order.
 */
int64 *
tasker_pause_tasks(int64 *ids, int n, const char *by, const char *reason, int *npaused)
{
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTOID, TEXTOID};
	Datum		values[3] = {tasker_int8_array(ids, n), CStringGetTextDatum(by),
	reason ? CStringGetTextDatum(reason) : (Datum) 0};
	char		nulls[3] = {' ', ' ', reason ? ' ' : 'n'};

	tasker_run_plan(tasker_keep_plan(&pause_plan,
			 "WITH t AS ("
			 "  UPDATE @extschema@.tasker_tasks SET paused_at = clock_timestamp(),"
			 "         paused_by = $2, pause_reason = $3"
			 "   WHERE task_id = ANY ($1) AND paused_at IS NULL"
			 "     AND current_state IN ('pending', 'in_progress', 'error')"
			 "  RETURNING task_id),"
			 "h AS ("
			 "  UPDATE @extschema@.tasker_workflow_steps s"
			 "     SET held_next_attempt_at = s.next_attempt_at, next_attempt_at = NULL"
			 "    FROM t WHERE s.task_id = t.task_id"
			 "     AND s.current_state IN ('pending', 'error') AND s.next_attempt_at IS NOT NULL"
			 "  RETURNING 1)"
			 "SELECT task_id FROM t ORDER BY task_id",
			 3, argtypes),
		values, nulls, SPI_OK_SELECT);
	return tasker_result_int8s(npaused);
}

/*
 * tasker_resume_tasks: the paused tasks among ids (paused by 'by' only,
 * when it is not NULL) run again: their held steps are due when they
 * were.  The caller settles them (a task whose steps all failed while it
 * was paused fails now).  Returns the ids resumed (*n of them).
 */
int64 *
tasker_resume_tasks(int64 *ids, int n, const char *by, int *nresumed)
{
	Oid			argtypes[2] = {INT8ARRAYOID, TEXTOID};
	Datum		values[2] = {tasker_int8_array(ids, n), by ? CStringGetTextDatum(by) : (Datum) 0};
	char		nulls[2] = {' ', by ? ' ' : 'n'};

	tasker_run_plan(tasker_keep_plan(&resume_plan,
			 "WITH t AS ("
			 "  UPDATE @extschema@.tasker_tasks SET paused_at = NULL, paused_by = NULL,"
			 "         pause_reason = NULL"
			 "   WHERE task_id = ANY ($1) AND paused_at IS NOT NULL"
			 "     AND ($2 IS NULL OR paused_by = $2)"
			 "  RETURNING task_id),"
			 "r AS ("
			 "  UPDATE @extschema@.tasker_workflow_steps s"
			 "     SET next_attempt_at = s.held_next_attempt_at, held_next_attempt_at = NULL"
			 "    FROM t WHERE s.task_id = t.task_id AND s.held_next_attempt_at IS NOT NULL"
			 "  RETURNING 1)"
			 "SELECT task_id FROM t ORDER BY task_id",
			 2, argtypes),
		values, nulls, SPI_OK_SELECT);
	return tasker_result_int8s(nresumed);
}
