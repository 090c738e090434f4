/*-------------------------------------------------------------------------
 *
 * control.c
 *		Operator controls: cancel, retry, resolve; running a task in the
 *		calling session; waiting for the workers.
 *
 * Every control goes through the state machine (state.c), so each refuses
 * an illegal state with OBJECT_NOT_IN_PREREQUISITE_STATE, records its
 * transitions and sends their events, all in the caller's transaction.
 * The metadata of a control's transitions names the calling role (actor)
 * and the caller's reason, or the control's default one.
 * Controls that create runnable work wake the workers when that
 * transaction commits.
 *
 * Lock order.  Every transaction that moves a task's steps locks the task
 * row (FOR NO KEY UPDATE) before any of its step rows, and never waits for
 * a task row while it holds step rows of that task:
 *  - a control locks the task row first (waiting for it), then its steps;
 *  - a batch (a worker, tasker_run_steps, tasker_run_task) claims a step
 *    only together with its task row, both SKIP LOCKED, and keeps both
 *    until it commits, so finalization re-locks a row it already holds;
 *  - an HTTP worker recording outcomes locks the task rows, in task_id
 *    order, before it locks their steps; lease reclaims and claims of HTTP
 *    steps lock the task row SKIP LOCKED first, like the SQL claim.
 * So a control on a task a batch is running waits for that batch to commit
 * and then sees its outcome; it never deadlocks with it (issue 15, C16).
 * A waiting control holds the task's intent lock (step.h), which new
 * claims skip, so the workers cannot take the task again before it.
 * Several task rows are only ever locked by batches, SKIP LOCKED or in
 * task_id order.
 *
 * IDENTIFICATION
 *		src/control.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "control.h"
#include "events.h"
#include "guc.h"
#include "handler.h"
#include "step.h"
#include "security.h"
#include "state.h"
#include "shmem.h"

static SPIPlanPtr task_state_plan;
static SPIPlanPtr step_task_plan;
static SPIPlanPtr pending_steps_plan;
static SPIPlanPtr error_steps_plan;
static SPIPlanPtr next_due_plan;
static SPIPlanPtr peek_state_plan;
static SPIPlanPtr xmin_plan;
static SPIPlanPtr step_by_name_plan;

static TaskerState read_task_state(int64 task_id, bool lock);

/*
 * control_metadata: the metadata of a control's transitions: why (the
 * caller's reason, or the control's default) and who (the calling role).
 */
static char *
control_metadata(const char *reason, const char *default_reason)
{
	StringInfoData meta;

	initStringInfo(&meta);
	appendStringInfoString(&meta, "{\"reason\": ");
	escape_json(&meta, reason ? reason : default_reason);
	appendStringInfoString(&meta, ", \"actor\": ");
	escape_json(&meta, GetUserNameFromId(tasker_caller(), false));
	appendStringInfoChar(&meta, '}');
	return meta.data;
}

/*
 * tasker_step_by_name: the id of the step of a task with the given name,
 * or raise UNDEFINED_OBJECT.
 */
int64
tasker_step_by_name(int64 task_id, const char *step_name)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(task_id), CStringGetTextDatum(step_name)};
	bool		isnull;
	int64		id;

	SPI_connect();
	tasker_require_task_control(task_id, "act on a step of");
	tasker_run_plan(tasker_keep_plan(&step_by_name_plan,
					   "SELECT s.workflow_step_id FROM @extschema@.tasker_workflow_steps s"
					   "  JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id"
					   " WHERE s.task_id = $1 AND n.name = $2",
					   2, argtypes),
			 values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		(void) read_task_state(task_id, false);	/* an unknown task */
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task " INT64_FORMAT " has no step \"%s\"", task_id, step_name),
				 errdetail("No step of the task has that name."),
				 errhint("SELECT step_names FROM tasker_templates lists the steps of each template.")));
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return id;
}

/*
 * exec: prepare (once) and run a one-bigint-parameter statement.
 */
static void
exec(SPIPlanPtr *slot, const char *sql, int64 id, int expected)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	(void) tasker_run_plan(tasker_keep_plan(slot, sql, 1, argtypes), values, NULL, expected);
}

/*
 * ids_of_result: the bigint first column of the last result.
 */
static int64 *
ids_of_result(uint64 *n)
{
	int64	   *ids = palloc(sizeof(int64) * Max(SPI_processed, 1));
	uint64		i;
	bool		isnull;

	for (i = 0; i < SPI_processed; i++)
		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	*n = SPI_processed;
	return ids;
}

/*
 * read_task_state: the current state of a task, locked FOR NO KEY UPDATE
 * when lock is true (after the control's intent lock, step.h, so the
 * batches' claims leave the task to this control); raises
 * UNDEFINED_OBJECT for an unknown task.
 */
static TaskerState
read_task_state(int64 task_id, bool lock)
{
	if (lock)
		(void) DirectFunctionCall2(pg_advisory_xact_lock_int4,
								   Int32GetDatum(TASKER_TASK_LOCK_CLASS),
								   Int32GetDatum(TASKER_TASK_LOCK_KEY(task_id)));
	if (lock)
		exec(&task_state_plan,
			 "SELECT current_state::text FROM @extschema@.tasker_tasks"
			 " WHERE task_id = $1 FOR NO KEY UPDATE",
			 task_id, SPI_OK_SELECT);
	else
		exec(&peek_state_plan,
			 "SELECT current_state::text FROM @extschema@.tasker_tasks WHERE task_id = $1",
			 task_id, SPI_OK_SELECT);
	if (SPI_processed == 0)
		tasker_report_missing(TASKER_ENTITY_TASK, task_id);
	return tasker_state_from_name(SPI_getvalue(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1));
}

/*
 * created_here: whether the current transaction (or one of its
 * subtransactions) inserted the task.
 */
static bool
created_here(int64 task_id)
{
	bool		isnull;
	Datum		xmin;

	exec(&xmin_plan, "SELECT xmin FROM @extschema@.tasker_tasks WHERE task_id = $1",
		 task_id, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	xmin = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return TransactionIdIsCurrentTransactionId(DatumGetTransactionId(xmin));
}

/*
 * task_of_step: the task of a step, or raise UNDEFINED_OBJECT.
 */
static int64
task_of_step(int64 step_id)
{
	bool		isnull;

	exec(&step_task_plan,
		 "SELECT task_id FROM @extschema@.tasker_workflow_steps WHERE workflow_step_id = $1",
		 step_id, SPI_OK_SELECT);
	if (SPI_processed == 0)
		tasker_report_missing(TASKER_ENTITY_STEP, step_id);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * tasker_cancel_task: cancel a task, its pending steps and its HTTP steps
 * in flight; error steps stop retrying.  A worker aborts the request of a
 * cancelled HTTP step when this transaction commits (it is woken then), so
 * the request's concurrency slot frees at once.  A running SQL step
 * finishes, but its dependents never start: a step a worker holds is
 * skipped here, and the worker cancels what is left when it settles the
 * task.  A task in error can be cancelled; a complete one is final.
 * Returns false when the task was already cancelled.
 */
bool
tasker_cancel_task(int64 task_id, const char *reason)
{
	char	   *meta = control_metadata(reason, "cancelled by request");
	int64	   *ids;
	uint64		n;
	uint64		i;
	bool		changed;

	SPI_connect();
	tasker_require_task_control(task_id, "cancel");
	if (read_task_state(task_id, true) == TASKER_COMPLETE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task " INT64_FORMAT " is complete", task_id),
				 errdetail("Every step of the task finished; a complete task is final."),
				 errhint("Undo its effects with a new task instead.")));
	changed = tasker_transition(TASKER_ENTITY_TASK, task_id, TASKER_CANCELLED, meta);
	if (changed)
	{
		exec(&pending_steps_plan,
			 "SELECT workflow_step_id FROM @extschema@.tasker_workflow_steps s"
			 " WHERE task_id = $1 AND (current_state = 'pending'"
			 "       OR (current_state = 'in_progress' AND " TASKER_LEASED_STEP_SQL("s") "))"
			 " ORDER BY workflow_step_id FOR NO KEY UPDATE SKIP LOCKED",
			 task_id, SPI_OK_SELECT);
		ids = ids_of_result(&n);
		for (i = 0; i < n; i++)
			tasker_transition(TASKER_ENTITY_STEP, ids[i], TASKER_CANCELLED, meta);
		tasker_stop_retries(task_id);
		/* Settling a cancelled task cancels its subtasks' children too. */
		tasker_finalize_task(task_id);
		tasker_wake_workers_at_commit();
	}
	SPI_finish();
	return changed;
}

/*
 * tasker_retry_task: an error task goes back to pending, and so do its
 * failed steps, with attempts reset and retryable restored from the
 * template.  A task with no failed step (only cancelled ones block it) is
 * refused: it would wait forever.
 */
bool
tasker_retry_task(int64 task_id, const char *reason)
{
	char	   *meta = control_metadata(reason, "retry_requested");
	TaskerState state;
	int64	   *ids;
	uint64		n;
	uint64		i;

	SPI_connect();
	tasker_require_task_control(task_id, "retry");
	state = read_task_state(task_id, true);
	if (state != TASKER_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task " INT64_FORMAT " is not in error", task_id),
				 errdetail("The task is in state \"%s\"; only a task in state \"error\" can be retried.",
						   tasker_state_name(state)),
				 errhint("tasker_resolve_step settles a single step instead.")));
	exec(&error_steps_plan,
		 "SELECT workflow_step_id FROM @extschema@.tasker_workflow_steps"
		 " WHERE task_id = $1 AND current_state = 'error' ORDER BY workflow_step_id",
		 task_id, SPI_OK_SELECT);
	ids = ids_of_result(&n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task " INT64_FORMAT " has no failed step to retry", task_id),
				 errdetail("The task is blocked by cancelled steps only; a retry would leave it pending with nothing to run."),
				 errhint("Resolve the cancelled steps with tasker_resolve_step, or cancel the task with tasker_cancel_task.")));
	tasker_transition(TASKER_ENTITY_TASK, task_id, TASKER_PENDING, meta);
	for (i = 0; i < n; i++)
		tasker_restart_step(ids[i], meta);
	tasker_finalize_task(task_id);
	SPI_finish();
	tasker_wake_workers_at_commit();
	return true;
}

/*
 * tasker_resolve_step: settle a step (pending, in error, or cancelled) by
 * hand with the given results; its dependents become ready, and a task
 * blocked in error resumes.
 */
bool
tasker_resolve_step(int64 step_id, Jsonb *results, const char *reason)
{
	char	   *meta = control_metadata(reason, "resolved_by_request");
	int64		task_id;
	bool		changed;

	tasker_check_size("step results", VARSIZE(results), tasker_max_results_size,
					  "tasker.max_results_size");
	SPI_connect();
	task_id = task_of_step(step_id);
	tasker_require_task_control(task_id, "resolve a step of");
	(void) read_task_state(task_id, true);
	changed = tasker_resolve_step_by_hand(step_id, results, meta);
	if (changed && read_task_state(task_id, true) == TASKER_ERROR)
		tasker_transition(TASKER_ENTITY_TASK, task_id, TASKER_PENDING,
						  control_metadata(reason, "step_resolved"));
	tasker_finalize_task(task_id);
	SPI_finish();
	tasker_wake_workers_at_commit();
	return changed;
}

/*
 * tasker_cancel_step: cancel one step; its dependents can never run, so a
 * task with nothing else to do goes to error.  An HTTP step in flight has
 * its request aborted by its worker, woken when this transaction commits.
 */
bool
tasker_cancel_step(int64 step_id, const char *reason)
{
	char	   *meta = control_metadata(reason, "cancelled_by_request");
	int64		task_id;
	bool		changed;

	SPI_connect();
	task_id = task_of_step(step_id);
	tasker_require_task_control(task_id, "cancel a step of");
	(void) read_task_state(task_id, true);
	changed = tasker_transition(TASKER_ENTITY_STEP, step_id, TASKER_CANCELLED, meta);
	tasker_finalize_task(task_id);
	SPI_finish();
	if (changed)
		tasker_wake_workers_at_commit();
	return changed;
}

/*
 * is_final: whether a task state ends waiting.
 */
static bool
is_final(TaskerState s)
{
	return s == TASKER_COMPLETE || s == TASKER_ERROR ||
		s == TASKER_CANCELLED || s == TASKER_RESOLVED_MANUALLY;
}

/*
 * sleep_ms: an interruptible sleep on the process latch.
 */
static void
sleep_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Max(ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * next_due_ms: milliseconds until the task's next step is due (0 when one
 * is due now), or -1 when no step is scheduled.
 */
static long
next_due_ms(int64 task_id)
{
	bool		isnull;
	Datum		d;

	exec(&next_due_plan,
		 "SELECT GREATEST(0, ceil(extract(epoch FROM min(s.next_attempt_at) - clock_timestamp()) * 1000))::bigint"
		 "  FROM @extschema@.tasker_workflow_steps s"
		 " WHERE s.task_id = $1 AND " TASKER_IN_TRANSACTION_STEP_SQL("s")
		 "   AND " TASKER_READY_STEP_SQL,
		 task_id, SPI_OK_SELECT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? -1 : (long) DatumGetInt64(d);
}

/*
 * tasker_run_task: drive one task in this session, with the workers' code
 * path, until it is final, nothing more can run, or the timeout passes
 * (waiting out retry backoffs on the way).  Returns the task's state.
 */
const char *
tasker_run_task(int64 task_id, int64 timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	TaskerState state;
	long		due;

	tasker_refuse_in_handler("tasker_run_task");
	SPI_connect();
	tasker_require_task_control(task_id, "run");
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		state = read_task_state(task_id, false);
		if (is_final(state))
			break;
		(void) tasker_start_ready_tasks(task_id, 1);
		if (tasker_run_in_transaction_kinds(task_id, tasker_batch_size, InvalidOid) > 0)
			continue;
		due = next_due_ms(task_id);
		if (due < 0 || GetCurrentTimestamp() + Max(due, 10) * 1000 > deadline)
			break;
		/* A due step that could not be claimed is locked by a worker. */
		sleep_ms(Max(due, 10));
	}
	state = read_task_state(task_id, false);
	SPI_finish();
	return tasker_state_name(state);
}

/*
 * tasker_wait_for_task: wait until the workers bring a task to a final
 * state, or the timeout passes.  Returns the task's state.
 */
const char *
tasker_wait_for_task(int64 task_id, int64 timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	TaskerState state;

	if (!tasker_workers_present())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the tasker workers are not running on this server"),
				 errdetail("Nothing would move task " INT64_FORMAT ".", task_id),
				 errhint("Add tasker to shared_preload_libraries and restart, or drive the task in this session with tasker_run_task.")));
	if (strcmp(get_database_name(MyDatabaseId), tasker_database_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the tasker workers do not run in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("tasker.database_name is \"%s\"; nothing would move task " INT64_FORMAT " here.",
						   tasker_database_name, task_id),
				 errhint("Set tasker.database_name to this database and restart, or drive the task in this session with tasker_run_task.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot wait for a task in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("The transaction's snapshot would never show the task's progress."),
				 errhint("Wait in a READ COMMITTED transaction.")));
	SPI_connect();
	if (created_here(task_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task " INT64_FORMAT " was created in this transaction", task_id),
				 errdetail("The workers cannot see the task before the transaction commits."),
				 errhint("Commit first, or drive the task in this transaction with tasker_run_task.")));
	for (;;)
	{
		state = read_task_state(task_id, false);
		if (is_final(state) || GetCurrentTimestamp() >= deadline)
			break;
		SPI_finish();
		sleep_ms(20);
		SPI_connect();
	}
	SPI_finish();
	return tasker_state_name(state);
}
