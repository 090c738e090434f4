/*-------------------------------------------------------------------------
 *
 * handler_sql.c
 *		Run a step whose handler is an SQL function.
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

#include "handler.h"
#include "security.h"

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
