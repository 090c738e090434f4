/*-------------------------------------------------------------------------
 *
 * retention.c
 *		The background purge: tasker.retention_period.
 *
 * When tasker.retention_period is set, the launcher (worker.c) calls
 * tasker_retention_tick every time round its loop; about once a minute
 * (more often for a retention shorter than a minute) it starts a dynamic
 * background worker, "tasker purge", unless the previous one is still
 * running.  That worker connects to tasker.database_name and deletes the
 * finished tasks whose last transition is older than the retention
 * period, by calling tasker_purge_batch (the install script's one
 * definition of a batch) once per transaction: each transaction deletes
 * at most TASKER_PURGE_BATCH tasks with their rows and commits, so no lock
 * is held longer than one batch and the rows it locks are finished ones
 * no executor reads.  It exits when a batch comes back short, when the
 * extension is missing or at another version, or when a command needs the
 * database to itself.
 *
 * The launcher side runs connected to no database and outside any
 * transaction; the purge worker runs its own transactions.  This module
 * calls bgw.c, spi_util.c and guc.c.
 *
 * IDENTIFICATION
 *		src/retention.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bgw.h"
#include "guc.h"
#include "retention.h"
#include "spi_util.h"

/* Tasks deleted per transaction by the background purge. */
#define TASKER_PURGE_BATCH 1000

/* Longest time between two background purges. */
#define TASKER_PURGE_EVERY_MS 60000

PGDLLEXPORT void tasker_purge_main(Datum arg);

static BackgroundWorkerHandle *purge_handle = NULL;
static TimestampTz last_purge_start = 0;

/*
 * purge_running: whether the purge worker the launcher started last is
 * still starting or running.
 */
static bool
purge_running(void)
{
	pid_t		pid;
	BgwHandleStatus status;

	if (purge_handle == NULL)
		return false;
	status = GetBackgroundWorkerPid(purge_handle, &pid);
	if (status == BGWH_STARTED || status == BGWH_NOT_YET_STARTED)
		return true;
	pfree(purge_handle);
	purge_handle = NULL;
	return false;
}

/*
 * tasker_retention_tick: the launcher, once round its loop, with
 * tasker.database_name present: start the purge worker when retention is
 * on, none is running, and the last one started long enough ago (a
 * minute, or the retention period when that is shorter).
 */
void
tasker_retention_tick(void)
{
	BackgroundWorker worker;
	MemoryContext oldcxt;
	int64		every_ms;

	if (tasker_retention_period <= 0 || purge_running())
		return;
	every_ms = Min((int64) TASKER_PURGE_EVERY_MS, (int64) tasker_retention_period * 1000);
	if (last_purge_start != 0 &&
		!TimestampDifferenceExceeds(last_purge_start, GetCurrentTimestamp(), (int) every_ms))
		return;
	last_purge_start = GetCurrentTimestamp();
	tasker_describe_bgworker(&worker, "tasker_purge_main", "tasker purge",
							 "tasker purge", BGW_NEVER_RESTART);
	worker.bgw_notify_pid = MyProcPid;
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &purge_handle))
	{
		purge_handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the tasker purge worker"),
				 errdetail("tasker.retention_period is set; the purge needs a background worker slot for a moment."),
				 errhint("Raise max_worker_processes by one.")));
	}
	MemoryContextSwitchTo(oldcxt);
}

/*
 * extension_ready: whether tasker is installed in this database at this
 * library's version (tasker_purge_batch exists from 0.2.0 on).  In a
 * transaction, with SPI connected.
 */
static bool
extension_ready(void)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(TASKER_EXTVERSION)};

	if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_extension"
							  " WHERE extname = 'tasker' AND extversion = $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_extension");
	return SPI_processed == 1;
}

/*
 * purge_one_batch: one transaction that deletes up to TASKER_PURGE_BATCH
 * finished tasks last changed before cutoff; returns how many, or -1 when
 * the extension is not ready for it.
 */
static int64
purge_one_batch(TimestampTz cutoff)
{
	static SPIPlanPtr batch_plan = NULL;
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {TimestampTzGetDatum(cutoff), Int32GetDatum(TASKER_PURGE_BATCH)};
	bool		isnull;
	int64		n = -1;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tasker: purging finished tasks");
	SPI_connect();
	if (extension_ready())
	{
		tasker_run_plan(tasker_keep_plan(&batch_plan,
				 "SELECT @extschema@.tasker_purge_batch($1, false, $2)",
				 2, argtypes),
			values, NULL, SPI_OK_SELECT);
		n = DatumGetInt64(tasker_col(0, 1, &isnull));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/*
 * tasker_purge_main: the purge worker: batches until one comes back
 * short, then exit.
 */
void
tasker_purge_main(Datum arg)
{
	TimestampTz cutoff;
	int64		total = 0;
	int64		n;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(tasker_database_name, NULL, 0);
	pgstat_report_appname("tasker purge");
	tasker_pin_session_settings();

	cutoff = GetCurrentTimestamp() - (TimestampTz) tasker_retention_period * USECS_PER_SEC;
	do
	{
		CHECK_FOR_INTERRUPTS();
		if (tasker_database_wanted())
			break;
		n = purge_one_batch(cutoff);
		total += Max(n, 0);
	} while (n == TASKER_PURGE_BATCH && tasker_retention_period > 0);
	if (total > 0)
		ereport(LOG,
				(errmsg("tasker purged " INT64_FORMAT " finished tasks of database \"%s\"",
						total, tasker_database_name),
				 errdetail("Their last transition was more than %d seconds ago (tasker.retention_period).",
						   tasker_retention_period)));
	proc_exit(0);
}
