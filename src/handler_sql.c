/*-------------------------------------------------------------------------
 *
 * handler_sql.c
 *		The sql handler kind: steps whose handler is an SQL function, run
 *		in the transaction that claims them.
 *
 * tasker_run_ready_steps() works inside the caller's transaction (a worker
 * batch, or tasker_run_task / tasker_run_steps in a user session): it
 * claims up to a limit of ready steps through the shared claim of step.c,
 * starts their attempts in one statement, runs each handler, records the
 * successes in one statement (failures one by one), and settles their
 * tasks.  All of it runs in one subtransaction; if anything in it fails
 * (not a handler: their errors are data), it is rolled back and run again
 * one step per subtransaction, so that the step at fault is quarantined
 * and the others still run.  Because the claim, the handler's effects and
 * the outcome commit together, a crash at any point re-runs a step at
 * most in a transaction that never commits.
 *
 * The function is called with the step envelope in a subtransaction of the
 * transaction that claimed the step and will record its outcome, so its
 * database effects commit together with the step's completion, or not at
 * all.  It runs in the handler sandbox of security.c (the template owner's
 * rights, a security-restricted operation, a GUC nest level undone
 * afterwards), after the stored function was checked against the catalog,
 * with statement_timeout armed from the step's timeout_seconds and put
 * back exactly afterwards.  A raised error rolls back only the
 * subtransaction; the error is returned as data, not rethrown.  A handler
 * that fails the check is a permanent failure.
 *
 * IDENTIFICATION
 *		src/handler_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/regproc.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "handler.h"
#include "security.h"
#include "spi_util.h"
#include "state.h"
#include "step.h"

/* Set by tasker_retry_error just before it raises, read after the call. */
static int	requested_retry_after = -1;

/* The step whose handler is running in this session, or 0. */
static int64 running_step_id = 0;

/*
 * The statement timeout from before a step's own was armed, kept by each
 * call on its own stack, so that nothing a handler does leaves the
 * session's statement_timeout other than it was.
 */
typedef struct SavedTimeout
{
	bool		armed;			/* the step's deadline replaced the outer one */
	bool		outer_active;
	TimestampTz outer_at;
} SavedTimeout;

/*
 * arm_step_timeout: make the statement time out after the step's
 * timeout_seconds, unless an earlier deadline is already armed.
 */
static void
arm_step_timeout(int seconds, SavedTimeout *saved)
{
	TimestampTz at;

	saved->armed = false;
	if (seconds <= 0)
		return;
	at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) seconds * 1000);
	saved->outer_active = get_timeout_active(STATEMENT_TIMEOUT);
	saved->outer_at = saved->outer_active ? get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	if (saved->outer_active && saved->outer_at <= at)
		return;
	enable_timeout_at(STATEMENT_TIMEOUT, at);
	saved->armed = true;
}

/*
 * restore_statement_timeout: put back exactly what arm_step_timeout
 * replaced.
 */
static void
restore_statement_timeout(SavedTimeout *saved)
{
	if (!saved->armed)
		return;
	saved->armed = false;
	if (saved->outer_active)
		enable_timeout_at(STATEMENT_TIMEOUT, saved->outer_at);
	else
		disable_timeout(STATEMENT_TIMEOUT, false);
}

/*
 * tasker_request_retry_after: remember the delay a handler asked for.
 */
void
tasker_request_retry_after(int seconds)
{
	requested_retry_after = seconds;
}

/*
 * tasker_running_step: the id of the step whose SQL handler this session
 * is running, or 0 outside a handler (tasker_publish_event names it).
 */
int64
tasker_running_step(void)
{
	return running_step_id;
}

/*
 * call_function: check the handler, then invoke it with the envelope in
 * the handler sandbox (security.c).  Runs inside the caller's
 * subtransaction; errors propagate, and *checked tells whether the
 * handler itself was reached.
 */
static Jsonb *
call_function(const StepCall *call, TaskerHandlerScope *scope,
			  SavedTimeout *saved, volatile bool *checked)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	tasker_check_handler(call->function, call->owner);
	*checked = true;
	fmgr_info(call->function, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(call->envelope);
	fcinfo->args[0].isnull = false;

	tasker_handler_enter(scope, call->owner);
	arm_step_timeout(call->timeout_seconds, saved);
	running_step_id = call->step_id;
	result = FunctionCallInvoke(fcinfo);
	running_step_id = 0;
	restore_statement_timeout(saved);
	tasker_handler_leave(scope);
	return fcinfo->isnull ? NULL : DatumGetJsonbP(result);
}

/*
 * code_listed: whether a SQLSTATE (len 5) or its class (len 2) is in a
 * list of codes and classes.
 */
static bool
code_listed(char **list, int n, const char *code, int len)
{
	int			i;

	for (i = 0; i < n; i++)
		if ((int) strlen(list[i]) == len && strncmp(list[i], code, len) == 0)
			return true;
	return false;
}

/*
 * sqlstate_permanent: whether an error of this SQLSTATE fails the step for
 * good.  tasker_permanent_error always does, tasker_retry_error never.
 * Otherwise the step's own lists decide, a full code before a class, and
 * permanent_sqlstates before retry_sqlstates; by default the errors that
 * the same input raises again are permanent: data exceptions (class 22),
 * integrity constraint violations (23) and syntax errors or undefined
 * objects (42).
 */
static bool
sqlstate_permanent(const StepCall *call, int sqlerrcode)
{
	const char *code = unpack_sql_state(sqlerrcode);
	int			len;

	if (sqlerrcode == ERRCODE_TASKER_PERMANENT_ERROR)
		return true;
	if (sqlerrcode == ERRCODE_TASKER_RETRY_ERROR)
		return false;
	for (len = 5; len >= 2; len -= 3)
	{
		if (code_listed(call->permanent_sqlstates, call->npermanent, code, len))
			return true;
		if (code_listed(call->retry_sqlstates, call->nretry, code, len))
			return false;
	}
	return strncmp(code, "22", 2) == 0 || strncmp(code, "23", 2) == 0 ||
		strncmp(code, "42", 2) == 0;
}

/*
 * fill_failure: turn a caught error into the outcome of the attempt.
 */
static void
fill_failure(const StepCall *call, ErrorData *edata, StepOutcome *out)
{
	out->ok = false;
	out->message = edata->message ? edata->message : pstrdup("unknown error");
	out->detail = edata->detail;
	out->hint = edata->hint;
	out->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	out->permanent = sqlstate_permanent(call, edata->sqlerrcode);
	out->retry_after = (edata->sqlerrcode == ERRCODE_TASKER_RETRY_ERROR) ?
		requested_retry_after : -1;
}

/*
 * tasker_run_sql_handler: one attempt of an SQL step.  Never raises for an
 * error of the handler; fills *out instead.
 */
void
tasker_run_sql_handler(const StepCall *call, StepOutcome *out)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	TaskerHandlerScope scope;
	SavedTimeout saved;
	volatile bool checked = false;

	memset(out, 0, sizeof(*out));
	memset(&scope, 0, sizeof(scope));
	memset(&saved, 0, sizeof(saved));
	out->retry_after = -1;
	requested_retry_after = -1;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		Jsonb	   *result = call_function(call, &scope, &saved, &checked);

		MemoryContextSwitchTo(oldcxt);
		out->ok = true;
		out->results = result ? (Jsonb *) PG_DETOAST_DATUM_COPY(JsonbPGetDatum(result)) : NULL;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		running_step_id = 0;
		restore_statement_timeout(&saved);
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (scope.gucnest > 0)
			tasker_handler_abandon(&scope);
		fill_failure(call, edata, out);
		/* A handler that cannot be called never will be: no retry. */
		out->permanent = out->permanent || !checked;
	}
	PG_END_TRY();
	tasker_clear_session_leftovers();
}

/* tasker_nested_changes() when the running batch claimed its steps. */
static uint64 batch_changes = 0;

/*
 * still_runnable: after a handler of this batch used a control (cancelled
 * a task, resolved a step), whether a claimed step is still one to run.
 */
static bool
still_runnable(ClaimedStep *c)
{
	TaskerState step;
	TaskerState task;

	tasker_step_state(c->step_id, &step, &task);
	return (step == TASKER_PENDING || step == TASKER_ERROR) && task == TASKER_IN_PROGRESS;
}

/*
 * still_running: after the step's own handler used a control, whether the
 * step is still in_progress, so that its outcome is to be recorded.  A
 * handler that cancelled its own step or task has decided the outcome.
 */
static bool
still_running(ClaimedStep *c)
{
	TaskerState step;
	TaskerState task;

	tasker_step_state(c->step_id, &step, &task);
	return step == TASKER_IN_PROGRESS;
}

/*
 * run_step: one attempt of one claimed step, recorded: the path of a
 * batch that failed as a whole, one step per subtransaction.  Controls
 * used by handlers (counted by tasker_nested_changes) are looked for only
 * when there were some, so the common path reads no state.
 */
static void
run_step(ClaimedStep *c)
{
	StepOutcome outcome;
	uint64		changes = tasker_nested_changes();

	if (c->skip || (changes != batch_changes && !still_runnable(c)))
		return;
	tasker_start_attempts(c, 1, 0);
	tasker_run_sql_handler(&c->call, &outcome);
	if (tasker_nested_changes() != changes && !still_running(c))
		return;
	if (outcome.ok)
		tasker_record_success(c, &outcome);
	else
		tasker_record_failure(c, &outcome);
}

/*
 * run_step_call: run_step for tasker_try.
 */
static void
run_step_call(void *arg)
{
	run_step((ClaimedStep *) arg);
}

/* A batch's steps, for run_steps_call. */
typedef struct StepsArgs
{
	ClaimedStep *steps;
	int			n;
} StepsArgs;

/*
 * settle_unrun: a claimed step that a handler earlier in the batch took
 * out of the run (a control cancelled its task or moved it): a step the
 * batch already moved to in_progress follows its cancelled task.
 */
static void
settle_unrun(ClaimedStep *c)
{
	TaskerState step;
	TaskerState task;

	tasker_step_state(c->step_id, &step, &task);
	if (step == TASKER_IN_PROGRESS && task == TASKER_CANCELLED)
		tasker_transition(TASKER_ENTITY_STEP, c->step_id, TASKER_CANCELLED,
						  "{\"reason\": \"task_cancelled\"}");
}

/*
 * run_started_step: run the handler of a step the batch started (it is
 * in_progress); returns true when it succeeded with results to store,
 * which the caller records with the batch's.  Failures are recorded here,
 * one at a time.
 */
static bool
run_started_step(ClaimedStep *c, StepOutcome *outcome)
{
	uint64		changes = tasker_nested_changes();
	TaskerState step;
	TaskerState task;

	if (changes != batch_changes)
	{
		tasker_step_state(c->step_id, &step, &task);
		if (step != TASKER_IN_PROGRESS || task != TASKER_IN_PROGRESS)
		{
			settle_unrun(c);
			return false;
		}
	}
	tasker_run_sql_handler(&c->call, outcome);
	if (tasker_nested_changes() != changes && !still_running(c))
		return false;
	if (outcome->ok)
		return tasker_accept_results(c, outcome);
	tasker_record_failure(c, outcome);
	return false;
}

/*
 * run_steps_call: run a whole batch, set based: one statement starts
 * every step, the handlers run one after the other, and one statement
 * completes every step that succeeded (failures are rarer, and recorded
 * one at a time).  For tasker_try.
 */
static void
run_steps_call(void *arg)
{
	StepsArgs  *a = (StepsArgs *) arg;
	ClaimedStep **done = palloc(sizeof(ClaimedStep *) * a->n);
	StepOutcome **outcomes = palloc(sizeof(StepOutcome *) * a->n);
	int			ndone = 0;
	int			i;

	tasker_start_attempts(a->steps, a->n, 0);
	for (i = 0; i < a->n; i++)
	{
		StepOutcome *outcome = palloc0(sizeof(StepOutcome));

		if (a->steps[i].skip || !run_started_step(&a->steps[i], outcome))
			continue;
		done[ndone] = &a->steps[i];
		outcomes[ndone++] = outcome;
	}
	tasker_record_successes(done, outcomes, ndone);
}

/*
 * run_step_guarded: run_step in a subtransaction.  An error there is
 * tasker's own (a handler that cancelled its own step, a broken catalog
 * row): the step's work is rolled back and the step quarantined.  A
 * serialization failure or deadlock only drops the step from this batch;
 * it is claimed again later.
 */
static void
run_step_guarded(ClaimedStep *c)
{
	ErrorData  *edata = tasker_try(run_step_call, c);

	if (edata != NULL && ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_TRANSACTION_ROLLBACK)
		tasker_quarantine_step(c, edata);
}

/*
 * run_steps_together: run the claimed steps in one subtransaction.  This is
 * the common case, and it keeps the transaction to one subtransaction ID
 * for tasker's own bookkeeping (plus one per handler that writes), well
 * below the 64 a backend can track before every snapshot in the server
 * must consult pg_subtrans.  If anything in it fails (not a handler: their
 * errors are caught inside), all of it rolls back and the caller runs the
 * steps again one subtransaction each, to isolate the step at fault.
 */
static bool
run_steps_together(ClaimedStep *steps, int n)
{
	StepsArgs	args = {steps, n};

	return tasker_try(run_steps_call, &args) == NULL;
}

/*
 * tasker_run_ready_steps: claim, run and record up to limit ready steps
 * (of task_id only, when it is not 0; of tasks whose template owner
 * run_as has the privileges of, when it is valid), then settle their
 * tasks.  Runs in the caller's transaction; refused inside a handler.
 * Returns the number of steps claimed.
 */
int
tasker_run_ready_steps(int64 task_id, int limit, Oid run_as)
{
	ClaimedStep *steps;
	int64	   *task_ids;
	int			n;
	int			i;

	tasker_refuse_in_handler(task_id != 0 ? "tasker_run_task" : "tasker_run_steps");
	SPI_connect();
	n = tasker_claim_ready_steps("sql", task_id, limit, run_as, NULL, &steps);
	batch_changes = tasker_nested_changes();
	if (n > 0)
	{
		if (!run_steps_together(steps, n))
			for (i = 0; i < n; i++)
				run_step_guarded(&steps[i]);
		task_ids = palloc(sizeof(int64) * n);
		for (i = 0; i < n; i++)
			task_ids[i] = steps[i].task_id;
		tasker_finalize_tasks(task_ids, n);
	}
	SPI_finish();
	return n;
}

/*
 * The sql kind: runs in the claiming transaction, no lease.
 */
const TaskerHandlerKind tasker_sql_kind = {
	.name = "sql",
	.leased = false,
	.run_ready = tasker_run_ready_steps,
};
