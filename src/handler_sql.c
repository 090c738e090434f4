/*-------------------------------------------------------------------------
 *
 * handler_sql.c
 *		Run a step whose handler is an SQL function.
 *
 * The function is called with the step envelope in a subtransaction of the
 * transaction that claimed the step and will record its outcome, so its
 * database effects commit together with the step's completion, or not at
 * all.  It runs as the role that registered the template
 * (SetUserIdAndSecContext), with statement_timeout armed from the step's
 * timeout_seconds.  A raised error rolls back only the subtransaction; the
 * error is returned as data, not rethrown.
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

/* Set by tasker_retry_error just before it raises, read after the call. */
static int	requested_retry_after = -1;

/*
 * The statement timeout that was armed before a step's own was, so that a
 * step run from a user session (tasker_run_task) leaves the session's
 * statement_timeout as it found it.
 */
static bool step_timeout_armed = false;
static bool outer_timeout_active = false;
static TimestampTz outer_timeout_at = 0;

/*
 * arm_step_timeout: make the statement time out after the step's
 * timeout_seconds, unless an earlier deadline is already armed.
 */
static void
arm_step_timeout(int seconds)
{
	TimestampTz at;

	step_timeout_armed = false;
	if (seconds <= 0)
		return;
	at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) seconds * 1000);
	outer_timeout_active = get_timeout_active(STATEMENT_TIMEOUT);
	outer_timeout_at = outer_timeout_active ? get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	if (outer_timeout_active && outer_timeout_at <= at)
		return;
	enable_timeout_at(STATEMENT_TIMEOUT, at);
	step_timeout_armed = true;
}

/*
 * restore_statement_timeout: put back what arm_step_timeout replaced.
 */
static void
restore_statement_timeout(void)
{
	if (!step_timeout_armed)
		return;
	step_timeout_armed = false;
	if (outer_timeout_active)
		enable_timeout_at(STATEMENT_TIMEOUT, outer_timeout_at);
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
 * call_function: invoke the handler with the envelope as the owner role.
 * Runs inside the caller's subtransaction; errors propagate.
 */
static Jsonb *
call_function(const StepCall *call)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(call->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);

	if (pg_proc_aclcheck(call->function, call->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for step handler %s",
						format_procedure(call->function)),
				 errhint("The role that registered the template needs EXECUTE on the handler.")));

	fmgr_info(call->function, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(call->envelope);
	fcinfo->args[0].isnull = false;

	arm_step_timeout(call->timeout_seconds);
	result = FunctionCallInvoke(fcinfo);
	restore_statement_timeout();

	SetUserIdAndSecContext(save_userid, save_sec);
	return fcinfo->isnull ? NULL : DatumGetJsonbP(result);
}

/*
 * fill_failure: turn a caught error into the outcome of the attempt.
 */
static void
fill_failure(ErrorData *edata, StepOutcome *out)
{
	out->ok = false;
	out->message = edata->message ? edata->message : pstrdup("unknown error");
	out->detail = edata->detail;
	out->hint = edata->hint;
	out->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	out->permanent = (edata->sqlerrcode == ERRCODE_TASKER_PERMANENT_ERROR);
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
	Oid			save_userid;
	int			save_sec;

	memset(out, 0, sizeof(*out));
	out->retry_after = -1;
	requested_retry_after = -1;
	GetUserIdAndSecContext(&save_userid, &save_sec);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		Jsonb	   *result = call_function(call);

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

		restore_statement_timeout();
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		SetUserIdAndSecContext(save_userid, save_sec);
		fill_failure(edata, out);
	}
	PG_END_TRY();
}
