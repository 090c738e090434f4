/*-------------------------------------------------------------------------
 *
 * event_worker.c
 *		The event worker: delivers events to subscribers and prunes the
 *		event log, apart from the executors.
 *
 * The launcher keeps one event worker running (tasker_event_worker_launch,
 * each turn of its loop) once tasker.database_name exists.  The worker
 * connects to it, waits until the extension is there at the library's
 * version, and then loops: a round of deliveries (subscribers.c: one
 * transaction per event), now and then a few short batches of pruning
 * (event_log.c), then a sleep on its latch until a commit that logged
 * events wakes it (event_log.c, when there are subscribers), the next
 * retry of a subscriber falls due, or tasker.poll_interval passes.  Its
 * transactions are READ COMMITTED (the log's horizon needs each statement
 * to see what committed before it) and commit asynchronously: a crash may
 * lose the last deliveries, but always together with the subscriber's
 * own writes of the same transaction, which the next worker then makes
 * again.  Nothing here slows the executors: they never wait for it.
 *
 * Like the executors it is crash-only (an ERROR ends it, the launcher
 * starts another), pauses with tasker.enabled, absorbs the barriers of
 * DROP DATABASE and leaves when a command needs the database.  This file
 * runs no SQL of its own.
 *
 * IDENTIFICATION
 *		src/event_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bgw.h"
#include "event_log.h"
#include "event_worker.h"
#include "guc.h"
#include "spi_util.h"
#include "subscribers.h"

/* Pruning: how often, how many events a transaction, how many of them. */
#define PRUNE_EVERY_MS 10000
#define PRUNE_BATCH 1000
#define PRUNE_BATCHES 10

PGDLLEXPORT void tasker_event_worker_main(Datum arg);

/*
 * tasker_event_worker_launch: for the launcher, once the database exists:
 * start the event worker unless it runs or was asked for just now.
 */
void
tasker_event_worker_launch(void)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	if (!tasker_event_worker_needs_start())
		return;
	tasker_describe_bgworker(&worker, "tasker_event_worker_main",
							 "tasker event worker", "tasker event worker",
							 BGW_NEVER_RESTART);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the tasker event worker"),
				 errdetail("Without it, no subscriber receives events and the event log is not pruned."),
				 errhint("Raise max_worker_processes above tasker.max_workers plus the other workers of the server.")));
	tasker_event_worker_started();
}

/*
 * detach: on exit, give the event worker's place back.
 */
static void
detach(int code, Datum arg)
{
	tasker_event_worker_detach();
}

/*
 * extension_ready: whether the extension is installed at this library's
 * version; looked up in a short transaction until it is, then not again
 * (if it is dropped later, the next statement fails and the worker exits).
 */
static bool
extension_ready(void)
{
	static bool ready = false;
	char	   *version;

	if (ready)
		return true;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	version = tasker_installed_version();
	ready = (version != NULL && strcmp(version, TASKER_EXTVERSION) == 0);
	CommitTransactionCommand();
	return ready;
}

/*
 * prune_log: every PRUNE_EVERY_MS (sooner while there is a backlog), delete
 * events older than tasker.event_log_retention, a batch a transaction.
 */
static void
prune_log(void)
{
	static TimestampTz last = 0;
	TimestampTz cutoff;
	int64		n = PRUNE_BATCH;
	int			i;

	if (!TimestampDifferenceExceeds(last, GetCurrentTimestamp(), PRUNE_EVERY_MS))
		return;
	cutoff = tasker_event_log_cutoff();
	for (i = 0; i < PRUNE_BATCHES && n == PRUNE_BATCH && cutoff != DT_NOBEGIN; i++)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "tasker: pruning the event log");
		n = tasker_event_log_prune(cutoff, PRUNE_BATCH);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	/* A full last batch: more to prune, at the next turn. */
	if (n < PRUNE_BATCH)
		last = GetCurrentTimestamp();
}

/*
 * one_turn: deliveries and pruning, when the worker may run; returns the
 * events delivered, and lowers *sleep_ms to the next retry.
 */
static int
one_turn(long *sleep_ms, MemoryContext cxt)
{
	int			n = 0;

	if (!tasker_enabled || !extension_ready())
		return 0;
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_RUNNING, "tasker: delivering events");
	n = tasker_deliver_events(sleep_ms);
	prune_log();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextReset(cxt);
	return n;
}

/*
 * tasker_event_worker_main: the event worker's loop.
 */
void
tasker_event_worker_main(Datum arg)
{
	MemoryContext cxt;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (!tasker_event_worker_attach())
		proc_exit(0);
	before_shmem_exit(detach, (Datum) 0);
	BackgroundWorkerInitializeConnection(tasker_database_name, NULL, 0);
	pgstat_report_appname("tasker event worker");
	tasker_pin_session_settings();
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	cxt = AllocSetContextCreate(TopMemoryContext, "tasker event worker",
								ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		sleep_ms = tasker_poll_interval;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (tasker_database_wanted())
			proc_exit(0);		/* the launcher starts another, which waits */
		if (one_turn(&sleep_ms, cxt) > 0)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(sleep_ms, 10), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
