/*-------------------------------------------------------------------------
 *
 * schedule.c
 *		Task schedules: a row of tasker_schedule_jobs per schedule, a
 *		pg_cron job per row, and the job's command, which creates the
 *		task of one tick.
 *
 * tasker_schedule writes the schedule and creates (or replaces) its
 * pg_cron job through cron.c; the job runs, as the extension's owner,
 *   SELECT tasker_fire_schedule('<job>', date_trunc('minute', now()))
 * which creates the schedule's task with the identity key
 * "schedule:<job>@<minute in UTC>": a tick that fires twice (a retried
 * job, two pg_cron launchers after a failover) finds the task of the
 * first, so each tick creates one task.  Unschedule, pause and resume
 * change the job and the row together.
 *
 * Everything runs in the caller's transaction as the extension's owner
 * (api.c's AS_OWNER); a schedule belongs to the role that created it, and
 * only roles with its privileges may replace, remove, pause, resume or
 * fire it.  This module calls task.c (to create the task), cron.c,
 * security.c and spi_util.c.
 *
 * IDENTIFICATION
 *		src/schedule.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "cron.h"
#include "schedule.h"
#include "security.h"
#include "spi_util.h"
#include "task.h"

static SPIPlanPtr template_plan;
static SPIPlanPtr lock_plan;
static SPIPlanPtr upsert_plan;
static SPIPlanPtr delete_plan;
static SPIPlanPtr active_plan;
static SPIPlanPtr read_plan;
static SPIPlanPtr last_plan;

/* A schedule's row, as far as the controls need it. */
typedef struct ScheduleRow
{
	Oid			owner;
	int64		jobid;
	bool		active;
	char	   *cron_database;
} ScheduleRow;

/*
 * check_request: raise for a job name pg_cron cannot hold, an empty or
 * overlong schedule, and a context that is not a JSON object.
 */
static void
check_request(const TaskerScheduleRequest *req)
{
	if (req->job_name[0] == '\0' || strlen(req->job_name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job name must be 1 to %d bytes long", NAMEDATALEN - 1),
				 errdetail("The job name given is \"%s\".", req->job_name),
				 errhint("pg_cron keeps job names as the name type.")));
	if (req->schedule[0] == '\0' || strlen(req->schedule) >= 256)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schedule must be 1 to 255 characters long"),
				 errdetail("The schedule given is \"%s\".", req->schedule),
				 errhint("Pass a cron schedule such as '*/5 * * * *', or an interval such as '30 seconds'.")));
	if (!JB_ROOT_IS_OBJECT(req->context) || JB_ROOT_IS_SCALAR(req->context))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task context must be a JSON object"),
				 errdetail("The context given is %s.",
						   JsonbToCString(NULL, &req->context->root, VARSIZE(req->context))),
				 errhint("Pass the context as '{\"key\": \"value\"}'.")));
}

/*
 * require_template: raise UNDEFINED_OBJECT unless the template the
 * schedule names is registered.
 */
static void
require_template(const TaskerScheduleRequest *req)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3] = {CStringGetTextDatum(req->task_name),
		CStringGetTextDatum(req->namespace),
	req->version ? CStringGetTextDatum(req->version) : (Datum) 0};
	char		nulls[3] = {' ', ' ', req->version ? ' ' : 'n'};

	tasker_run_plan(tasker_keep_plan(&template_plan,
			 "SELECT 1 FROM @extschema@.tasker_named_tasks nt"
			 "  JOIN @extschema@.tasker_task_namespaces ns USING (task_namespace_id)"
			 " WHERE nt.name = $1 AND ns.name = $2 AND ($3 IS NULL OR nt.version = $3)",
			 3, argtypes),
		values, nulls, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task template \"%s\" %s%sis not registered in namespace \"%s\"",
						req->task_name, req->version ? "version " : "",
						req->version ? psprintf("%s ", req->version) : "", req->namespace),
				 errdetail("A schedule creates tasks of a registered template."),
				 errhint("Register the template first (tasker_register_template); tasker_templates lists them.")));
}

/*
 * lock_schedule: lock the row of a schedule; false when there is none.
 */
static bool
lock_schedule(const char *job_name, ScheduleRow *row)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(job_name)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&lock_plan,
			 "SELECT owner::oid, jobid, active, cron_database"
			 "  FROM @extschema@.tasker_schedule_jobs WHERE job_name = $1 FOR UPDATE",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	row->owner = DatumGetObjectId(tasker_col(0, 1, &isnull));
	row->jobid = DatumGetInt64(tasker_col(0, 2, &isnull));
	row->active = DatumGetBool(tasker_col(0, 3, &isnull));
	row->cron_database = TextDatumGetCString(tasker_col(0, 4, &isnull));
	return true;
}

/*
 * require_schedule_control: raise unless the caller has the privileges of
 * the schedule's owner.
 */
static void
require_schedule_control(const char *job_name, Oid owner, const char *action)
{
	Oid			caller = tasker_caller();

	if (superuser_arg(caller) || has_privs_of_role(caller, owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s schedule \"%s\"", action, job_name),
			 errdetail("The schedule belongs to role \"%s\".", tasker_role_name(owner)),
			 errhint("Only that role, its members and superusers may change or fire it.")));
}

/*
 * cron_request: a request to pg_cron about a job of this database that
 * runs as the current user (the extension's owner).
 */
static void
cron_request(TaskerCronOp *op, TaskerCronOpKind kind, const char *job_name,
			 int64 jobid)
{
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->jobid = jobid;
	strlcpy(op->job_name, job_name, NAMEDATALEN);
	strlcpy(op->database, get_database_name(MyDatabaseId), NAMEDATALEN);
	strlcpy(op->username, GetUserNameFromId(GetUserId(), false), NAMEDATALEN);
}

/*
 * fire_command: the command of a schedule's job.
 */
static char *
fire_command(const char *job_name)
{
	Oid			nsp;
	Oid			owner;

	tasker_extension(&nsp, &owner);
	return psprintf("SELECT %s.tasker_fire_schedule(%s, pg_catalog.date_trunc('minute', pg_catalog.now()))",
					quote_identifier(get_namespace_name(nsp)), quote_literal_cstr(job_name));
}

/*
 * save_schedule: insert or update the schedule's row, active (a replaced
 * schedule keeps its owner).
 */
static void
save_schedule(const TaskerScheduleRequest *req, const char *cron_db, int64 jobid)
{
	Oid			argtypes[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	OIDOID, INT8OID, TEXTOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(req->job_name);
	values[1] = CStringGetTextDatum(req->schedule);
	values[2] = CStringGetTextDatum(req->task_name);
	values[3] = CStringGetTextDatum(req->namespace);
	values[4] = req->version ? CStringGetTextDatum(req->version) : (Datum) 0;
	nulls[4] = req->version ? ' ' : 'n';
	values[5] = JsonbPGetDatum(req->context);
	values[6] = ObjectIdGetDatum(tasker_caller());
	values[7] = Int64GetDatum(jobid);
	values[8] = CStringGetTextDatum(cron_db);
	tasker_run_plan(tasker_keep_plan(&upsert_plan,
			 "INSERT INTO @extschema@.tasker_schedule_jobs (job_name, schedule, task_name,"
			 "   namespace, version, context, owner, jobid, cron_database)"
			 " VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, $8, $9)"
			 " ON CONFLICT (job_name) DO UPDATE"
			 "   SET schedule = EXCLUDED.schedule, task_name = EXCLUDED.task_name,"
			 "       namespace = EXCLUDED.namespace, version = EXCLUDED.version,"
			 "       context = EXCLUDED.context, jobid = EXCLUDED.jobid,"
			 "       cron_database = EXCLUDED.cron_database, active = true,"
			 "       updated_at = now()",
			 9, argtypes),
		values, nulls, SPI_OK_INSERT);
}

/*
 * tasker_schedule_task: create or replace a schedule and its pg_cron
 * job; returns the job's id.
 */
int64
tasker_schedule_task(const TaskerScheduleRequest *req)
{
	ScheduleRow row;
	TaskerCronOp op;
	char	   *cron_db;

	check_request(req);
	cron_db = tasker_cron_database();	/* without pg_cron, say so */
	SPI_connect();
	require_template(req);
	memset(&row, 0, sizeof(row));
	if (lock_schedule(req->job_name, &row))
		require_schedule_control(req->job_name, row.owner, "replace");
	cron_request(&op, TASKER_CRON_SCHEDULE, req->job_name,
				 row.cron_database && strcmp(row.cron_database, cron_db) == 0 ? row.jobid : 0);
	strlcpy(op.schedule, req->schedule, TASKER_CRON_TEXT);
	strlcpy(op.command, fire_command(req->job_name), TASKER_CRON_TEXT);
	tasker_cron_run(&op);
	save_schedule(req, cron_db, op.result_jobid);
	SPI_finish();
	return op.result_jobid;
}

/*
 * tasker_unschedule_task: remove a schedule and its pg_cron job (a job
 * already removed by hand is not an error); false when there was no such
 * schedule.
 */
bool
tasker_unschedule_task(const char *job_name)
{
	ScheduleRow row;
	TaskerCronOp op;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(job_name)};

	(void) tasker_cron_database();	/* without pg_cron, say so */
	SPI_connect();
	if (!lock_schedule(job_name, &row))
	{
		SPI_finish();
		return false;
	}
	require_schedule_control(job_name, row.owner, "remove");
	cron_request(&op, TASKER_CRON_UNSCHEDULE, job_name, row.jobid);
	tasker_cron_run(&op);
	tasker_run_plan(tasker_keep_plan(&delete_plan,
			 "DELETE FROM @extschema@.tasker_schedule_jobs WHERE job_name = $1",
			 1, argtypes),
		values, NULL, SPI_OK_DELETE);
	SPI_finish();
	return true;
}

/*
 * tasker_set_schedule_active: pause (active false) or resume a schedule's
 * pg_cron job; false when it already was so.
 */
bool
tasker_set_schedule_active(const char *job_name, bool active)
{
	ScheduleRow row;
	TaskerCronOp op;
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		values[2] = {CStringGetTextDatum(job_name), BoolGetDatum(active)};

	(void) tasker_cron_database();	/* without pg_cron, say so */
	SPI_connect();
	if (!lock_schedule(job_name, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task schedule \"%s\" does not exist", job_name),
				 errdetail("No row of tasker_schedules has that job name."),
				 errhint("SELECT job_name FROM tasker_schedules lists the schedules.")));
	require_schedule_control(job_name, row.owner, active ? "resume" : "pause");
	if (row.active == active)
	{
		SPI_finish();
		return false;
	}
	cron_request(&op, TASKER_CRON_SET_ACTIVE, job_name, row.jobid);
	op.active = active;
	tasker_cron_run(&op);
	if (!op.found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the pg_cron job of task schedule \"%s\" is missing", job_name),
				 errdetail("pg_cron has no job %lld named \"%s\" for this database.",
						   (long long) row.jobid, job_name),
				 errhint("Run tasker_schedule again to create it.")));
	tasker_run_plan(tasker_keep_plan(&active_plan,
			 "UPDATE @extschema@.tasker_schedule_jobs SET active = $2, updated_at = now()"
			 " WHERE job_name = $1",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
	SPI_finish();
	return true;
}

/*
 * tick_identity: the identity key of a schedule's task for a tick: the
 * job name and the tick's minute in UTC, whatever the session's time zone.
 */
static char *
tick_identity(const char *job_name, TimestampTz tick)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(tick) || timestamp2tm(tick, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("tick must be a finite time"),
				 errhint("pg_cron's command passes date_trunc('minute', now()).")));
	return psprintf("schedule:%s@%04d-%02d-%02dT%02d:%02dZ", job_name,
					tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min);
}

/*
 * schedule_request: the task request of a schedule's row (the current
 * SPI result) for a tick.
 */
static void
schedule_request(TaskRequest *req, const char *job_name, TimestampTz tick)
{
	bool		isnull;
	Datum		d;
	StringInfoData tags;

	memset(req, 0, sizeof(*req));
	req->name = TextDatumGetCString(tasker_col(0, 1, &isnull));
	req->namespace = TextDatumGetCString(tasker_col(0, 2, &isnull));
	d = tasker_col(0, 3, &isnull);
	req->version = isnull ? NULL : TextDatumGetCString(d);
	req->context = DatumGetJsonbPCopy(tasker_col(0, 4, &isnull));
	req->initiator = "pg_cron";
	req->source_system = "tasker_schedule";
	req->reason = job_name;
	initStringInfo(&tags);
	appendStringInfoChar(&tags, '[');
	escape_json(&tags, psprintf("schedule:%s", job_name));
	appendStringInfoChar(&tags, ']');
	req->tags = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(tags.data)));
	req->bypass_steps = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("[]")));
	req->bypass_steps_array = NULL;
	req->requested_at = tick;
	req->identity_key = tick_identity(job_name, tick);
}

/*
 * minute_of: a time truncated to its minute.
 */
static TimestampTz
minute_of(TimestampTz t)
{
	TimestampTz rem = t % USECS_PER_MINUTE;

	return t - (rem < 0 ? rem + USECS_PER_MINUTE : rem);
}

/*
 * record_last_task: note on the schedule's row the task its latest tick
 * created (unchanged when a tick fired again).
 */
static void
record_last_task(const char *job_name, int64 task_id)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(job_name), Int64GetDatum(task_id)};

	tasker_run_plan(tasker_keep_plan(&last_plan,
			 "UPDATE @extschema@.tasker_schedule_jobs j"
			 "   SET last_task_id = $2,"
			 "       last_created_at = (SELECT t.created_at FROM @extschema@.tasker_tasks t"
			 "                           WHERE t.task_id = $2)"
			 " WHERE j.job_name = $1 AND j.last_task_id IS DISTINCT FROM $2",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * tasker_fire_schedule_task: the command of a schedule's job: create the
 * schedule's task for the minute of tick (or find the one created for it
 * already); *paused, and 0, while the schedule is paused.
 */
int64
tasker_fire_schedule_task(const char *job_name, TimestampTz tick, bool *paused)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(job_name)};
	TaskRequest req;
	bool		isnull;
	int64		task_id;

	SPI_connect();
	tasker_run_plan(tasker_keep_plan(&read_plan,
			 "SELECT task_name, namespace, version, context, owner::oid, active"
			 "  FROM @extschema@.tasker_schedule_jobs WHERE job_name = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task schedule \"%s\" does not exist", job_name),
				 errdetail("A pg_cron job fired for a schedule that tasker has no row for (removed, or its creation rolled back)."),
				 errhint("Remove the job with cron.unschedule('%s'), or create the schedule again with tasker_schedule.",
						 job_name)));
	require_schedule_control(job_name, DatumGetObjectId(tasker_col(0, 5, &isnull)), "fire");
	*paused = !DatumGetBool(tasker_col(0, 6, &isnull));
	if (*paused)
	{
		SPI_finish();
		return 0;
	}
	schedule_request(&req, job_name, minute_of(tick));
	task_id = tasker_create_task_internal(&req);
	record_last_task(job_name, task_id);
	SPI_finish();
	return task_id;
}
