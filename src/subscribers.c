/*-------------------------------------------------------------------------
 *
 * subscribers.c
 *		SQL functions subscribed to events (tasker_subscribe), and their
 *		delivery by the event worker, one event per transaction.
 *
 * A subscription (a row of tasker_subscribers) names a function
 * fn(event jsonb), the events it wants (a pattern where * matches any
 * text: 'step.*', 'task.completed', '*') and its cursor: the id of the
 * last event of the log it has passed.  A subscriber name belongs to the
 * role that first subscribed it (its owner); only roles with that role's
 * privileges may change it or unsubscribe it.  The function must take one
 * jsonb (any result, ignored) and be one the owner may execute, in a
 * schema it may use: security.c's rule for handlers, checked when
 * subscribing and again before every call.  It runs as the owner, in the
 * handler sandbox of security.c, like an SQL step handler.
 *
 * Delivery (tasker_deliver_events, the event worker's round): for each
 * subscription that is due, in one transaction per event: lock its row,
 * find the next matching event after the cursor and below the log's
 * horizon (event_log.c: nothing below it can still commit), call the
 * function in a subtransaction, and record the outcome with the cursor in
 * the same transaction.  So each subscriber sees events in id order,
 * after they committed, and what its function writes commits together
 * with the cursor's advance: at least once, and exactly once for effects
 * in this database.  A failed call is retried after retry_delay, doubled
 * each time up to tasker.max_backoff, while the subscription waits; after
 * max_attempts failed calls the event is parked (tasker_parked_events,
 * with the error) and the cursor moves on.  When no event matches, the
 * cursor moves to the last event below the horizon.
 *
 * Every function here runs as the extension's owner: tasker_subscribe and
 * tasker_unsubscribe in the caller's transaction (inside the API scope),
 * the delivery in transactions of its own, outside any.
 *
 * IDENTIFICATION
 *		src/subscribers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "event_log.h"
#include "guc.h"
#include "security.h"
#include "spi_util.h"
#include "subscribers.h"

/* Most events one subscription gets in a round before the next one's turn. */
#define DELIVER_BATCH 100

/* How delivering one event ended. */
typedef enum Delivery
{
	DELIVERY_GONE,				/* the subscription is gone or not due */
	DELIVERY_NONE,				/* no matching event is ready */
	DELIVERY_DONE,				/* the function returned */
	DELIVERY_PARKED,			/* it failed for the last time: parked */
	DELIVERY_RETRY				/* it failed; tried again later */
} Delivery;

/* A subscription's row, as delivery reads it. */
typedef struct Subscription
{
	int64		last_event_id;
	char	   *like;
	Oid			fn;
	Oid			owner;
	int			attempts;		/* failed calls for the next event */
	int			max_attempts;
	int64		retry_delay_ms;
} Subscription;

static SPIPlanPtr insert_plan;
static SPIPlanPtr update_plan;
static SPIPlanPtr owner_plan;
static SPIPlanPtr delete_plan;
static SPIPlanPtr due_plan;
static SPIPlanPtr lock_plan;
static SPIPlanPtr next_plan;
static SPIPlanPtr advance_plan;
static SPIPlanPtr delivered_plan;
static SPIPlanPtr retry_plan;
static SPIPlanPtr park_plan;

/*
 * subscriber_signature_problem: NULL when a function can be a subscriber,
 * that is, a plain function of one jsonb argument that does not return a
 * set; else a sentence fragment saying what is wrong.
 */
static char *
subscriber_signature_problem(Oid fn)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	char	   *problem = NULL;

	if (!HeapTupleIsValid(tuple))
		return pstrdup("it does not exist");
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	if (proc->prokind != PROKIND_FUNCTION)
		problem = pstrdup(proc->prokind == PROKIND_PROCEDURE ?
						  "it is a procedure" : "it is an aggregate or window function");
	else if (proc->pronargs != 1)
		problem = psprintf("it takes %d arguments", (int) proc->pronargs);
	else if (proc->proargtypes.values[0] != JSONBOID)
		problem = psprintf("it takes %s", format_type_be(proc->proargtypes.values[0]));
	else if (proc->proretset)
		problem = pstrdup("it returns a set");
	ReleaseSysCache(tuple);
	return problem;
}

/*
 * check_function: refuse a function that cannot be a subscriber, or that
 * the caller may not call.
 */
static void
check_function(Oid fn)
{
	char	   *problem = subscriber_signature_problem(fn);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function %s cannot be an event subscriber", format_procedure(fn)),
				 errdetail("A subscriber takes one jsonb argument (the event), but %s.", problem),
				 errhint("Declare it as CREATE FUNCTION name(event jsonb) RETURNS void.")));
	problem = tasker_handler_access_problem(fn, tasker_caller());
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to subscribe function %s", format_procedure(fn)),
				 errdetail("The subscribing role must be able to call the function, but %s.", problem),
				 errhint("Subscribe a function you may call, or have its owner grant USAGE on its schema and EXECUTE on it.")));
}

/*
 * check_request: refuse bad arguments of tasker_subscribe.
 */
static void
check_request(const SubscribeRequest *req)
{
	if (req->subscriber[0] == '\0' || strlen(req->subscriber) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subscriber name must have 1 to 200 bytes"),
				 errdetail("The name given has %zu bytes.", strlen(req->subscriber)),
				 errhint("Name the subscriber after what it does, such as 'audit_log'.")));
	if (req->pattern[0] == '\0' || strlen(req->pattern) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event pattern must have 1 to 200 bytes"),
				 errdetail("The pattern given has %zu bytes.", strlen(req->pattern)),
				 errhint("Pass an event name, or a pattern such as 'step.*' or '*'.")));
	if (req->max_attempts < 1 || req->max_attempts > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be between 1 and 1000"),
				 errdetail("The value given is %d.", req->max_attempts),
				 errhint("Pass how many calls an event gets before it is parked, such as 5.")));
	if (req->retry_delay_ms < 1 || req->retry_delay_ms > 86400000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_delay must be between 1 millisecond and 1 day"),
				 errdetail("The value given is " INT64_FORMAT " ms.", req->retry_delay_ms),
				 errhint("Pass an interval such as '1 second'; it doubles after each failure.")));
	if (req->has_start && req->start_after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_after must not be negative"),
				 errdetail("The value given is " INT64_FORMAT ".", req->start_after),
				 errhint("Pass 0 to receive every event still in the log, or leave it out to receive new events only.")));
	check_function(req->fn);
}

/*
 * pattern_like: a subscription pattern as a LIKE pattern: * matches any
 * text, every other character only itself.
 */
static char *
pattern_like(const char *pattern)
{
	StringInfoData buf;
	const char *p;

	initStringInfo(&buf);
	for (p = pattern; *p != '\0'; p++)
	{
		if (*p == '*')
		{
			appendStringInfoChar(&buf, '%');
			continue;
		}
		if (*p == '%' || *p == '_' || *p == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/*
 * lock_owned: lock a subscription's row and raise unless the caller has
 * the privileges of its owner; false when there is no such subscription.
 * SPI must be connected.
 */
static bool
lock_owned(const char *subscriber, const char *action)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(subscriber)};
	bool		isnull;
	Oid			owner;

	if (tasker_run_plan(tasker_keep_plan(&owner_plan,
										 "SELECT owner::oid FROM @extschema@.tasker_subscribers"
										 " WHERE subscriber = $1 FOR UPDATE",
										 1, argtypes),
						values, NULL, SPI_OK_SELECT) == 0)
		return false;
	owner = DatumGetObjectId(tasker_col(0, 1, &isnull));
	if (!has_privs_of_role(tasker_caller(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s subscriber \"%s\"", action, subscriber),
				 errdetail("Role \"%s\" subscribed it first, so it belongs to that role.",
						   tasker_role_name(owner)),
				 errhint("Only that role, its members and superusers may change or remove it; subscribe under another name.")));
	return true;
}

/*
 * subscription_values: the parameters of the insert and the update.
 */
static void
subscription_values(const SubscribeRequest *req, int64 start, Datum *values,
					Oid *argtypes)
{
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, OIDOID, OIDOID, INT4OID,
	FLOAT8OID, INT8OID, BOOLOID};

	memcpy(argtypes, types, sizeof(types));
	values[0] = CStringGetTextDatum(req->subscriber);
	values[1] = CStringGetTextDatum(req->pattern);
	values[2] = CStringGetTextDatum(pattern_like(req->pattern));
	values[3] = ObjectIdGetDatum(req->fn);
	values[4] = ObjectIdGetDatum(tasker_caller());
	values[5] = Int32GetDatum(req->max_attempts);
	values[6] = Float8GetDatum((double) req->retry_delay_ms);
	values[7] = Int64GetDatum(start);
	values[8] = BoolGetDatum(req->has_start);
}

/*
 * tasker_subscribe: create a subscription owned by the caller, or change
 * one the caller may change (its cursor moves only when start_after is
 * given).  A new subscription starts after start_after, or after the
 * last event already settled in the log: it receives the events that
 * commit from now on.  Returns the id it starts after.  Connects to SPI
 * itself.
 */
int64
tasker_subscribe(const SubscribeRequest *req)
{
	Datum		values[9];
	Oid			argtypes[9];
	int64		start;
	bool		isnull;

	check_request(req);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	start = req->has_start ? req->start_after : tasker_event_log_settled_end();
	subscription_values(req, start, values, argtypes);
	if (tasker_run_plan(tasker_keep_plan(&insert_plan,
			 "INSERT INTO @extschema@.tasker_subscribers"
			 " (subscriber, event_pattern, event_like, function, owner, max_attempts,"
			 "  retry_delay, last_event_id)"
			 " VALUES ($1, $2, $3, $4::regprocedure, $5::regrole, $6,"
			 "         $7 * interval '1 millisecond', $8)"
			 " ON CONFLICT (subscriber) DO NOTHING",
			 8, argtypes),
		values, NULL, SPI_OK_INSERT) == 0)
	{
		(void) lock_owned(req->subscriber, "change");
		tasker_run_plan(tasker_keep_plan(&update_plan,
			 "UPDATE @extschema@.tasker_subscribers"
			 "   SET event_pattern = $2, event_like = $3, function = $4::regprocedure,"
			 "       max_attempts = $6, retry_delay = $7 * interval '1 millisecond',"
			 "       last_event_id = CASE WHEN $9 THEN $8 ELSE last_event_id END,"
			 "       attempts = CASE WHEN $9 THEN 0 ELSE attempts END,"
			 "       next_attempt_at = CASE WHEN $9 THEN NULL ELSE next_attempt_at END,"
			 "       updated_at = now()"
			 " WHERE subscriber = $1"
			 " RETURNING last_event_id",
			 9, argtypes),
			values, NULL, SPI_OK_UPDATE_RETURNING);
		start = DatumGetInt64(tasker_col(0, 1, &isnull));
	}
	SPI_finish();
	return start;
}

/*
 * tasker_unsubscribe: remove a subscription the caller may change, with
 * its parked events; false when there is none of that name.  Connects to
 * SPI itself.
 */
bool
tasker_unsubscribe(const char *subscriber)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(subscriber)};
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	found = lock_owned(subscriber, "remove");
	if (found)
		tasker_run_plan(tasker_keep_plan(&delete_plan,
										 "DELETE FROM @extschema@.tasker_subscribers WHERE subscriber = $1",
										 1, argtypes),
						values, NULL, SPI_OK_DELETE);
	SPI_finish();
	return found;
}

/*
 * check_subscriber: before a call, check the stored subscription against
 * the catalog: the owner exists, and the function still fits and is one
 * the owner may call.  Raises (the call then counts as failed).
 */
static void
check_subscriber(Oid fn, Oid owner)
{
	char	   *problem;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the role that subscribed no longer exists"),
				 errdetail("The subscription belongs to role OID %u, which has been dropped.", owner),
				 errhint("Unsubscribe it, and subscribe again as an existing role.")));
	problem = subscriber_signature_problem(fn);
	if (problem == NULL)
		problem = tasker_handler_access_problem(fn, owner);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("subscriber function %s cannot be called", format_procedure(fn)),
				 errdetail("%s.", problem),
				 errhint("Subscribe again with a function (event jsonb) its owner may execute.")));
}

/*
 * invoke: check the subscription, then call fn(event) as the owner in the
 * handler sandbox.  Errors propagate.
 */
static void
invoke(Oid fn, Oid owner, Jsonb *event, TaskerHandlerScope *scope)
{
	FmgrInfo	flinfo;

	LOCAL_FCINFO(fcinfo, 1);

	check_subscriber(fn, owner);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = JsonbPGetDatum(event);
	fcinfo->args[0].isnull = false;
	tasker_handler_enter(scope, owner);
	(void) FunctionCallInvoke(fcinfo);
	tasker_handler_leave(scope);
}

/*
 * call_subscriber: invoke in a subtransaction; NULL when the function
 * returned (its effects kept), else its error, rolled back.  Cancels and
 * shutdowns propagate.
 */
static ErrorData *
call_subscriber(Oid fn, Oid owner, Jsonb *event)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	TaskerHandlerScope scope;
	ErrorData  *volatile edata = NULL;

	memset(&scope, 0, sizeof(scope));
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		invoke(fn, owner, event, &scope);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		if (!tasker_error_is_data())
			PG_RE_THROW();
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (scope.gucnest > 0)
			tasker_handler_abandon(&scope);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	tasker_clear_session_leftovers();
	return edata;
}

/*
 * lock_subscription: lock a due subscription's row and read it; false
 * when it is gone or waiting for a retry.  SPI must be connected.
 */
static bool
lock_subscription(const char *name, Subscription *sub)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		isnull;

	if (tasker_run_plan(tasker_keep_plan(&lock_plan,
			 "SELECT last_event_id, event_like, function::oid, owner::oid, attempts,"
			 "       max_attempts, (extract(epoch FROM retry_delay) * 1000)::bigint"
			 "  FROM @extschema@.tasker_subscribers"
			 " WHERE subscriber = $1 AND (next_attempt_at IS NULL OR next_attempt_at <= now())"
			 "   FOR UPDATE",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT) == 0)
		return false;
	sub->last_event_id = DatumGetInt64(tasker_col(0, 1, &isnull));
	sub->like = TextDatumGetCString(tasker_col(0, 2, &isnull));
	sub->fn = DatumGetObjectId(tasker_col(0, 3, &isnull));
	sub->owner = DatumGetObjectId(tasker_col(0, 4, &isnull));
	sub->attempts = DatumGetInt32(tasker_col(0, 5, &isnull));
	sub->max_attempts = DatumGetInt32(tasker_col(0, 6, &isnull));
	sub->retry_delay_ms = DatumGetInt64(tasker_col(0, 7, &isnull));
	return true;
}

/*
 * next_event: the first event after the cursor, below the horizon, that
 * matches; false when none, with *end the last event below the horizon,
 * where the cursor may move.  One statement, so the match and the end are
 * read in one snapshot.  SPI must be connected.
 */
static bool
next_event(const Subscription *sub, int64 *event_id, Jsonb **event, int64 *end)
{
	Oid			argtypes[3] = {INT8OID, INT8OID, TEXTOID};
	Datum		values[3];
	bool		isnull;

	values[0] = Int64GetDatum(sub->last_event_id);
	values[1] = Int64GetDatum(tasker_event_log_horizon());
	values[2] = CStringGetTextDatum(sub->like);
	tasker_run_plan(tasker_keep_plan(&next_plan,
			 "SELECT e.last, m.event_id, m.event"
			 "  FROM (SELECT coalesce(max(l.event_id), 0) AS last"
			 "          FROM @extschema@.tasker_event_log l WHERE l.event_id < $2) e"
			 "  LEFT JOIN LATERAL ("
			 "    SELECT l.event_id, l.event FROM @extschema@.tasker_event_log l"
			 "     WHERE l.event_id > $1 AND l.event_id <= e.last"
			 "       AND (l.event ->> 'event') LIKE $3"
			 "     ORDER BY l.event_id LIMIT 1) m ON true",
			 3, argtypes),
		values, NULL, SPI_OK_SELECT);
	*end = DatumGetInt64(tasker_col(0, 1, &isnull));
	*event_id = DatumGetInt64(tasker_col(0, 2, &isnull));
	if (isnull)
		return false;
	*event = DatumGetJsonbPCopy(tasker_col(0, 3, &isnull));
	return true;
}

/*
 * record: run one of the outcome statements on a subscription.
 */
static void
record(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes,
	   Datum *values, const char *nulls, int expected)
{
	tasker_run_plan(tasker_keep_plan(slot, sql, nargs, argtypes), values, nulls, expected);
}

/*
 * advance: move the cursor past events that do not match.
 */
static void
advance(const char *name, int64 end)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(name), Int64GetDatum(end)};

	record(&advance_plan,
		   "UPDATE @extschema@.tasker_subscribers SET last_event_id = $2"
		   " WHERE subscriber = $1 AND last_event_id < $2",
		   2, argtypes, values, NULL, SPI_OK_UPDATE);
}

/*
 * record_delivery: the function returned for the event: the cursor moves
 * to it.
 */
static void
record_delivery(const char *name, int64 event_id)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(name), Int64GetDatum(event_id)};

	record(&delivered_plan,
		   "UPDATE @extschema@.tasker_subscribers"
		   "   SET last_event_id = $2, attempts = 0, next_attempt_at = NULL,"
		   "       delivered = delivered + 1, last_delivered_at = now()"
		   " WHERE subscriber = $1",
		   2, argtypes, values, NULL, SPI_OK_UPDATE);
}

/*
 * error_json: a caught error as {"message", "sqlstate", "detail", "hint",
 * "attempt"}.
 */
static char *
error_json(ErrorData *edata, int attempt)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"message\": ");
	escape_json(&buf, edata->message ? edata->message : "unknown error");
	appendStringInfoString(&buf, ", \"sqlstate\": ");
	escape_json(&buf, unpack_sql_state(edata->sqlerrcode));
	if (edata->detail)
	{
		appendStringInfoString(&buf, ", \"detail\": ");
		escape_json(&buf, edata->detail);
	}
	if (edata->hint)
	{
		appendStringInfoString(&buf, ", \"hint\": ");
		escape_json(&buf, edata->hint);
	}
	appendStringInfo(&buf, ", \"attempt\": %d}", attempt);
	return buf.data;
}

/*
 * retry_delay_ms: the wait before the next call after the given number of
 * failed calls: retry_delay doubled each time, at most tasker.max_backoff.
 */
static double
retry_delay_ms(const Subscription *sub, int failed)
{
	double		ms = (double) sub->retry_delay_ms;
	int			i;

	for (i = 1; i < failed && ms < tasker_max_backoff * 1000.0; i++)
		ms *= 2;
	return Min(ms, tasker_max_backoff * 1000.0);
}

/*
 * record_failure: the function failed for the event: park the event after
 * max_attempts failed calls (the cursor moves on), else wait and retry
 * (*sleep_ms is lowered to the wait).
 */
static Delivery
record_failure(const char *name, const Subscription *sub, int64 event_id,
			   Jsonb *event, ErrorData *edata, long *sleep_ms)
{
	int			failed = sub->attempts + 1;
	Datum		subscriber = CStringGetTextDatum(name);
	Datum		error = CStringGetTextDatum(error_json(edata, failed));

	if (failed >= sub->max_attempts)
	{
		Oid			argtypes[5] = {TEXTOID, INT8OID, TEXTOID, JSONBOID, INT4OID};
		Datum		values[5] = {subscriber, Int64GetDatum(event_id), error,
		JsonbPGetDatum(event), Int32GetDatum(failed)};

		record(&park_plan,
			   "WITH parked AS ("
			   "  INSERT INTO @extschema@.tasker_parked_events"
			   "   (subscriber, event_id, event, attempts, error)"
			   "  VALUES ($1, $2, $4, $5, $3::jsonb)"
			   "  ON CONFLICT (subscriber, event_id) DO NOTHING)"
			   "UPDATE @extschema@.tasker_subscribers"
			   "   SET last_event_id = $2, attempts = 0, next_attempt_at = NULL,"
			   "       failures = failures + 1, last_error = $3::jsonb"
			   " WHERE subscriber = $1",
			   5, argtypes, values, NULL, SPI_OK_UPDATE);
		return DELIVERY_PARKED;
	}
	else
	{
		double		wait_ms = retry_delay_ms(sub, failed);
		Oid			argtypes[3] = {TEXTOID, TEXTOID, FLOAT8OID};
		Datum		values[3] = {subscriber, error, Float8GetDatum(wait_ms)};

		record(&retry_plan,
			   "UPDATE @extschema@.tasker_subscribers"
			   "   SET attempts = attempts + 1, failures = failures + 1,"
			   "       last_error = $2::jsonb,"
			   "       next_attempt_at = now() + $3 * interval '1 millisecond'"
			   " WHERE subscriber = $1",
			   3, argtypes, values, NULL, SPI_OK_UPDATE);
		*sleep_ms = Min(*sleep_ms, (long) ceil(wait_ms));
		return DELIVERY_RETRY;
	}
}

/*
 * deliver_in_transaction: deliver the next matching event of a
 * subscription, in the current transaction.  SPI must be connected.
 */
static Delivery
deliver_in_transaction(const char *name, long *sleep_ms)
{
	Subscription sub;
	int64		event_id;
	int64		end;
	Jsonb	   *event;
	ErrorData  *edata;

	if (!lock_subscription(name, &sub))
		return DELIVERY_GONE;
	if (!next_event(&sub, &event_id, &event, &end))
	{
		if (end > sub.last_event_id)
			advance(name, end);
		return DELIVERY_NONE;
	}
	edata = call_subscriber(sub.fn, sub.owner, event);
	if (edata == NULL)
	{
		record_delivery(name, event_id);
		return DELIVERY_DONE;
	}
	return record_failure(name, &sub, event_id, event, edata, sleep_ms);
}

/*
 * deliver_next: one transaction that delivers the next event of a
 * subscription; a failure lowers *sleep_ms to the wait before its retry.
 */
static Delivery
deliver_next(const char *name, long *sleep_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	Delivery	d;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	d = deliver_in_transaction(name, sleep_ms);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return d;
}

/*
 * due_subscriptions: the names of the subscriptions not waiting for a
 * retry, in the caller's memory context; *sleep_ms is lowered to the
 * wait until the next retry falls due.  Publishes how many subscriptions
 * there are, so that commits wake the event worker.  A transaction of its
 * own.
 */
static List *
due_subscriptions(long *sleep_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *names = NIL;
	uint64		i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	tasker_run_plan(tasker_keep_plan(&due_plan,
			 "SELECT subscriber, next_attempt_at IS NULL OR next_attempt_at <= now(),"
			 "       ceil(extract(epoch FROM next_attempt_at - now()) * 1000)::bigint"
			 "  FROM @extschema@.tasker_subscribers ORDER BY subscriber",
			 0, NULL),
		NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext old;

		if (!DatumGetBool(tasker_col(i, 2, &isnull)))
		{
			*sleep_ms = Min(*sleep_ms, (long) DatumGetInt64(tasker_col(i, 3, &isnull)));
			continue;
		}
		old = MemoryContextSwitchTo(cxt);
		names = lappend(names, TextDatumGetCString(tasker_col(i, 1, &isnull)));
		MemoryContextSwitchTo(old);
	}
	tasker_event_worker_set_subscriptions((int) SPI_processed);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return names;
}

/*
 * tasker_deliver_events: one round of the event worker: up to
 * DELIVER_BATCH events to each due subscription, each in a transaction of
 * its own.  Returns the events delivered or parked; *sleep_ms (the
 * caller's longest sleep) is lowered to when the next retry falls due.
 * Called outside any transaction.
 */
int
tasker_deliver_events(long *sleep_ms)
{
	List	   *names = due_subscriptions(sleep_ms);
	ListCell   *lc;
	int			n = 0;

	foreach(lc, names)
	{
		int			k;

		for (k = 0; k < DELIVER_BATCH; k++)
		{
			Delivery	d = deliver_next((const char *) lfirst(lc), sleep_ms);

			if (d == DELIVERY_DONE || d == DELIVERY_PARKED)
				n++;
			if (d != DELIVERY_DONE && d != DELIVERY_PARKED)
				break;
		}
		if (k == DELIVER_BATCH)
			*sleep_ms = 0;		/* more may be waiting */
	}
	return n;
}
