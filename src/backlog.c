/*-------------------------------------------------------------------------
 *
 * backlog.c
 *		Admission control: measure the backlog of ready steps, and refuse
 *		new tasks while it is over tasker.max_ready_backlog.
 *
 * The gauge lives in shared memory (shmem.c).  An executor measures it
 * (tasker_sample_backlog) at most once a second over all executors, in a
 * short transaction of its own between batches, whether or not
 * tasker.enabled lets it run steps: it counts the due ready steps through
 * the ready index, up to the limit plus one, so a measure costs at most
 * the limit's worth of index entries however large the backlog.  Every
 * task created in that database adds its ready steps to the gauge when its
 * transaction commits.  So tasker_create_task reads one atomic, never a
 * table: the figure it compares is at most a second old plus exact about
 * what was created since; steps claimed since the measure still count,
 * which errs toward refusing, for at most a second.  Without the preload
 * (no executors, no shared memory), or in a database the executors do not
 * serve, nothing measures the backlog and admission control is off.
 *
 * The measure runs outside any transaction (it starts its own); the
 * admission check runs in the creating transaction.  This module reads
 * readiness from step.h, and calls shmem.c, spi_util.c and guc.c.
 *
 * IDENTIFICATION
 *		src/backlog.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "backlog.h"
#include "guc.h"
#include "shmem.h"
#include "spi_util.h"
#include "step.h"

/* How often the backlog is measured, over all executors. */
#define TASKER_BACKLOG_SAMPLE_MS 1000

static SPIPlanPtr count_plan;

/*
 * count_ready: the due ready steps, counted up to limit (through the
 * ready index).  In a transaction, with SPI connected.
 */
static uint64
count_ready(int64 limit)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(limit)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&count_plan,
			 "SELECT count(*) FROM (SELECT 1 FROM @extschema@.tasker_workflow_steps s"
			 "  WHERE " TASKER_READY_STEP_SQL " AND s.next_attempt_at <= now()"
			 "  LIMIT $1) r",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return (uint64) DatumGetInt64(tasker_col(0, 1, &isnull));
}

/*
 * tasker_sample_backlog: an executor, between transactions: measure the
 * backlog when admission control is on and it is this executor's turn,
 * and publish the figure.
 */
void
tasker_sample_backlog(void)
{
	uint64		n;

	if (tasker_max_ready_backlog <= 0 ||
		!tasker_backlog_sample_due(TASKER_BACKLOG_SAMPLE_MS))
		return;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tasker: measuring the ready backlog");
	SPI_connect();
	n = count_ready((int64) tasker_max_ready_backlog + 1);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	tasker_backlog_publish(MyDatabaseId, n, GetCurrentTimestamp());
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * tasker_admit_task: in the transaction creating a task, raise
 * CONFIGURATION_LIMIT_EXCEEDED (53400) when the ready backlog is over
 * tasker.max_ready_backlog.
 */
void
tasker_admit_task(void)
{
	uint64		n;
	TimestampTz at;
	long		secs;
	int			usecs;

	if (tasker_max_ready_backlog <= 0 || !tasker_backlog_read(MyDatabaseId, &n, &at) ||
		n <= (uint64) tasker_max_ready_backlog)
		return;
	TimestampDifference(at, GetCurrentTimestamp(), &secs, &usecs);
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("too many steps are waiting to run to accept a new task"),
			 errdetail("About " UINT64_FORMAT " steps are ready (measured %ld.%03d s ago, with the tasks created since); tasker.max_ready_backlog is %d.",
					   n, secs, usecs / 1000, tasker_max_ready_backlog),
			 errhint("Retry later, when the workers have caught up; or add workers (tasker.max_workers), or raise tasker.max_ready_backlog.")));
}

/*
 * tasker_ready_backlog: the gauge of this database: *n ready steps
 * measured at *at; false when nothing measures it.
 */
bool
tasker_ready_backlog(uint64 *n, TimestampTz *at)
{
	return tasker_backlog_read(MyDatabaseId, n, at);
}
