/*-------------------------------------------------------------------------
 *
 * cron.c
 *		pg_cron, reached without depending on it: in this database, or
 *		through a short-lived worker in the database pg_cron runs in.
 *
 * tasker does not require pg_cron: its functions are looked up by name
 * when a schedule is made or changed, in the schema the pg_cron extension
 * was created in.  pg_cron keeps its jobs in one database of the server
 * (cron.database_name).  When that is this database, a request runs here,
 * in the caller's transaction, so a schedule and its job commit or roll
 * back together.  Otherwise this backend starts a dynamic background
 * worker ("tasker cron") connected to pg_cron's database, hands it the
 * request in a segment of dynamic shared memory, and waits for it: the
 * worker runs the request in a transaction of its own there (a job made
 * with cron.schedule_in_database to run in this database) and writes the
 * answer, or the error, back.  That change commits on its own: if the
 * caller's transaction then rolls back, the job stays, and its command
 * reports that its schedule does not exist (docs/operations.md).
 *
 * Without pg_cron every request raises OBJECT_NOT_IN_PREREQUISITE_STATE
 * with a hint on how to install and preload it.  The worker connects as
 * the bootstrap superuser and runs only the three fixed requests below, on
 * jobs that name the requesting database.
 *
 * This module calls bgw.c only.
 *
 * IDENTIFICATION
 *		src/cron.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "bgw.h"
#include "cron.h"

PGDLLEXPORT void tasker_cron_main(Datum arg);

/* What pg_cron needs on this server, for every "no pg_cron" hint. */
#define CRON_INSTALL_HINT \
	"Install pg_cron (Debian: apt-get install postgresql-" PG_MAJORVERSION "-cron), add pg_cron to " \
	"shared_preload_libraries, set cron.database_name to the database it should " \
	"keep its jobs in, restart the server, and run CREATE EXTENSION pg_cron in that database."

/*
 * cron_preloaded: whether pg_cron is in shared_preload_libraries.
 */
static bool
cron_preloaded(void)
{
	const char *libs = GetConfigOption("shared_preload_libraries", true, false);

	return libs != NULL && strstr(libs, "pg_cron") != NULL;
}

/*
 * cron_schema: the schema of pg_cron's objects, when the extension is
 * installed in this database, else NULL.  pg_cron's install script
 * creates its objects in the schema cron whatever the extension's own
 * schema (pg_extension.extnamespace) is.
 */
static char *
cron_schema(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("pg_cron"));
	rel = table_open(ExtensionRelationId, AccessShareLock);
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found ? "cron" : NULL;
}

/*
 * tasker_cron_database: the database pg_cron keeps tasker's jobs in:
 * this one when the extension is installed here, else cron.database_name
 * (pg_cron's default, postgres, when unset).  Raises when pg_cron is not
 * preloaded, or is meant for this database but not created in it.
 */
char *
tasker_cron_database(void)
{
	char	   *here = get_database_name(MyDatabaseId);
	const char *there;

	if (cron_schema() != NULL)
		return here;
	if (!cron_preloaded())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is not available on this server"),
				 errdetail("tasker schedules tasks with pg_cron jobs; pg_cron is not in shared_preload_libraries."),
				 errhint(CRON_INSTALL_HINT)));
	there = GetConfigOption("cron.database_name", true, false);
	if (there == NULL || there[0] == '\0')
		there = "postgres";
	if (strcmp(there, here) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is not installed in database \"%s\"", here),
				 errdetail("pg_cron is preloaded and keeps its jobs in this database (cron.database_name), but the extension was not created here."),
				 errhint("Run CREATE EXTENSION pg_cron in this database.")));
	return pstrdup(there);
}

/*
 * run_sql: one statement of a request, with text parameters.
 */
static void
run_sql(const char *sql, int nargs, Oid *types, Datum *values)
{
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0) < 0)
		elog(ERROR, "could not run: %s", sql);
}

/*
 * job_of_request: whether job op->jobid exists for op's database and job
 * name (a job tasker made for this schedule).
 */
static bool
job_of_request(const char *schema, TaskerCronOp *op)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(op->jobid), CStringGetTextDatum(op->database),
	CStringGetTextDatum(op->job_name)};

	run_sql(psprintf("SELECT 1 FROM %s.job WHERE jobid = $1 AND database = $2"
					 " AND jobname = $3", schema),
			3, types, values);
	return SPI_processed > 0;
}

/*
 * refuse_foreign_job: raise when pg_cron already has a job of that name
 * for that role that is not the one being replaced.
 */
static void
refuse_foreign_job(const char *schema, TaskerCronOp *op)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(op->job_name),
	CStringGetTextDatum(op->username)};
	bool		isnull;

	run_sql(psprintf("SELECT jobid, database FROM %s.job WHERE jobname = $1 AND username = $2",
					 schema),
			2, types, values);
	if (SPI_processed == 0 ||
		DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull)) == op->jobid)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_OBJECT),
			 errmsg("a pg_cron job named \"%s\" already exists", op->job_name),
			 errdetail("It runs in database \"%s\" as role \"%s\" and was not made by tasker_schedule for this database.",
					   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2),
					   op->username),
			 errhint("Choose another job name, or remove that job with cron.unschedule.")));
}

/*
 * schedule_here: create or replace the job, with pg_cron's own upsert on
 * (job name, role).
 */
static void
schedule_here(const char *schema, TaskerCronOp *op)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5] = {CStringGetTextDatum(op->job_name),
		CStringGetTextDatum(op->schedule), CStringGetTextDatum(op->command),
	CStringGetTextDatum(op->database), CStringGetTextDatum(op->username)};
	bool		isnull;

	refuse_foreign_job(schema, op);
	if (strcmp(op->database, get_database_name(MyDatabaseId)) == 0)
		run_sql(psprintf("SELECT %s.schedule($1, $2, $3)", schema), 3, types, values);
	else
		run_sql(psprintf("SELECT %s.schedule_in_database($1, $2, $3, $4, $5, true)", schema),
				5, types, values);
	op->result_jobid = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * require_cron_14: raise unless pg_cron has the functions of 1.4
 * (schedule_in_database, alter_job).
 */
static void
require_cron_14(const char *schema)
{
	bool		isnull;

	run_sql(psprintf("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL"
					 "   AND pg_catalog.to_regprocedure(%s) IS NOT NULL",
					 quote_literal_cstr(psprintf("%s.schedule_in_database(text,text,text,text,text,boolean)", schema)),
					 quote_literal_cstr(psprintf("%s.alter_job(bigint,text,text,text,text,boolean)", schema))),
			0, NULL, NULL);
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_cron is too old for tasker schedules"),
				 errdetail("tasker needs cron.schedule_in_database and cron.alter_job, from pg_cron 1.4."),
				 errhint("Install pg_cron 1.4 or later, then run ALTER EXTENSION pg_cron UPDATE.")));
}

/*
 * run_here: run a request against the pg_cron of this database, in the
 * current transaction, as the current user.
 */
static void
run_here(TaskerCronOp *op)
{
	char	   *schema = cron_schema();
	Oid			types[2] = {INT8OID, BOOLOID};
	Datum		values[2] = {Int64GetDatum(op->jobid), BoolGetDatum(op->active)};

	if (schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("cron.database_name names this database, where tasker looks for pg_cron's jobs."),
				 errhint("Run CREATE EXTENSION pg_cron in this database, or set cron.database_name to the database that has it.")));
	SPI_connect();
	require_cron_14(schema);
	if (op->kind == TASKER_CRON_SCHEDULE)
		schedule_here(schema, op);
	else if ((op->found = job_of_request(schema, op)))
	{
		if (op->kind == TASKER_CRON_UNSCHEDULE)
			run_sql(psprintf("SELECT %s.unschedule($1)", schema), 1, types, values);
		else
			run_sql(psprintf("SELECT %s.alter_job($1, active => $2)", schema), 2, types, values);
	}
	SPI_finish();
}

/*
 * raise_answer: the worker of another database failed the request:
 * raise its error here.
 */
static void
raise_answer(TaskerCronOp *op)
{
	if (!op->done)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not reach pg_cron in database \"%s\"", op->cron_database),
				 errdetail("The worker that runs tasker's requests there ended without an answer."),
				 errhint("The server log says why; check that cron.database_name names a database that exists.")));
	if (op->failed)
		ereport(ERROR,
				(errcode(op->sqlerrcode),
				 errmsg("%s", op->message),
				 op->detail[0] ? errdetail("%s", op->detail) : 0,
				 op->hint[0] ? errhint("%s", op->hint) : 0,
				 errcontext("pg_cron in database \"%s\"", op->cron_database)));
}

/*
 * run_elsewhere: hand the request to a worker connected to database db,
 * wait for it to end, and copy its answer back.
 */
static void
run_elsewhere(TaskerCronOp *op, const char *db)
{
	dsm_segment *seg = dsm_create(sizeof(TaskerCronOp), 0);
	TaskerCronOp *shared = dsm_segment_address(seg);
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	strlcpy(op->cron_database, db, NAMEDATALEN);
	op->done = op->failed = false;
	memcpy(shared, op, sizeof(TaskerCronOp));
	tasker_describe_bgworker(&worker, "tasker_cron_main", "tasker cron", "tasker cron",
							 BGW_NEVER_RESTART);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a worker to reach pg_cron in database \"%s\"", db),
				 errdetail("Every background worker slot is taken."),
				 errhint("Raise max_worker_processes, or retry.")));
	(void) WaitForBackgroundWorkerShutdown(handle);
	memcpy(op, shared, sizeof(TaskerCronOp));
	dsm_detach(seg);
	raise_answer(op);
}

/*
 * tasker_cron_run: run a request against pg_cron, wherever it keeps its
 * jobs.  Raises pg_cron's errors, and OBJECT_NOT_IN_PREREQUISITE_STATE
 * without pg_cron.
 */
void
tasker_cron_run(TaskerCronOp *op)
{
	char	   *db = tasker_cron_database();

	if (strcmp(db, get_database_name(MyDatabaseId)) == 0)
		run_here(op);
	else
		run_elsewhere(op, db);
}

/*
 * keep_error: the worker's request failed: keep the error for the caller
 * and end the transaction.
 */
static void
keep_error(TaskerCronOp *op, MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	op->failed = true;
	op->sqlerrcode = edata->sqlerrcode;
	strlcpy(op->message, edata->message ? edata->message : "unknown error", TASKER_CRON_TEXT);
	strlcpy(op->detail, edata->detail ? edata->detail : "", TASKER_CRON_TEXT);
	strlcpy(op->hint, edata->hint ? edata->hint : "", TASKER_CRON_TEXT);
}

/*
 * tasker_cron_main: the worker in pg_cron's database: run the request of
 * the segment it was given in one transaction, write the answer, exit.
 */
void
tasker_cron_main(Datum arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	dsm_segment *seg;
	TaskerCronOp *op;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "tasker cron");
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(1);
	dsm_pin_mapping(seg);
	op = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnection(op->cron_database, NULL, 0);
	pgstat_report_appname("tasker cron");

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		run_here(op);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		keep_error(op, cxt);
	}
	PG_END_TRY();
	op->done = true;
	dsm_detach(seg);
	proc_exit(0);
}
