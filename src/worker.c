/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The tasker launcher and executor background workers.
 *
 * When the library is in shared_preload_libraries, _PG_init registers one
 * launcher.  The launcher keeps tasker.max_workers executors running (and
 * the event worker of event_worker.c, which delivers events to subscribers
 * and prunes the event log): each
 * executor owns a slot in shared memory (pid, latch, counters), and the
 * launcher starts a dynamic worker for every empty slot, again after the
 * executor exits or crashes, once tasker.database_name exists (until then
 * the slots show waiting_for_database).  The slots themselves, and the
 * latches other backends set to wake the executors, are shmem.c's; this
 * file only runs the loops that use them.  Executors connect to it, wait
 * until the extension exists there at the library's version (an older
 * schema waits for ALTER EXTENSION tasker UPDATE), and then loop: claim and run a
 * batch of ready steps in one transaction (step.c, handler_sql.c), then sleep on
 * their latch until a commit wakes them (events.c) or tasker.poll_interval
 * passes.
 *
 * Executors are crash-only: an ERROR ends the process and the launcher
 * starts another; the transaction that was running rolls back, so no step
 * is lost or half-done.  SIGTERM ends a worker at the next interrupt check;
 * SIGHUP reloads the configuration.  Every wait loop calls
 * CHECK_FOR_INTERRUPTS, which absorbs the ProcSignalBarriers that DROP
 * DATABASE and ALTER DATABASE wait for.  An executor also exits when a
 * command needs its database to itself (it sees the command's lock on the
 * database); its successor's connection waits until the command ends.
 *
 * This file is the top of tasker's worker side: it calls the step
 * lifecycle (step.c), the handler kinds (handler.c), the slots (shmem.c)
 * and the shared worker helpers (bgw.c); nothing calls back up into it.
 *
 * IDENTIFICATION
 *		src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/relcache.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "backlog.h"
#include "bgw.h"
#include "compat.h"
#include "event_worker.h"
#include "guc.h"
#include "handler.h"
#include "retention.h"
#include "shmem.h"
#include "step.h"
#include "spi_util.h"
#include "worker.h"

/* Longest an executor sleeps between two looks at its database's lock. */
#define TASKER_DB_PROBE_MS 1000

static int	my_slot = -1;

PGDLLEXPORT void tasker_launcher_main(Datum arg);
PGDLLEXPORT void tasker_executor_main(Datum arg);

/*
 * tasker_worker_register: called from _PG_init while preloading: register
 * the launcher.
 */
void
tasker_worker_register(void)
{
	BackgroundWorker worker;

	tasker_describe_bgworker(&worker, "tasker_launcher_main", "tasker launcher",
							 "tasker launcher", 1);
	RegisterBackgroundWorker(&worker);
}

/*
 * start_executor: register a dynamic executor for slot i.
 */
static void
start_executor(int i)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	tasker_describe_bgworker(&worker, "tasker_executor_main",
							 psprintf("tasker worker %d", i), "tasker worker",
							 BGW_NEVER_RESTART);
	worker.bgw_main_arg = Int32GetDatum(i);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start tasker worker %d", i),
				 errhint("Raise max_worker_processes above tasker.max_workers plus the other workers of the server.")));
	else
		tasker_slot_started(i);
}

/*
 * database_exists: whether tasker.database_name names a database, looked
 * up in pg_database (a shared catalog, which the launcher can read while
 * connected to no database) in a short transaction.
 */
static bool
database_exists(void)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/*
	 * A heap scan, as InitPostgres reads pg_database: connected to no
	 * database, the launcher cannot open the catalog's index until a
	 * backend has written the shared relcache init file (just after
	 * initdb, none has), and get_database_oid would fail.
	 */
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(tasker_database_name));
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = systable_beginscan(rel, DatabaseNameIndexId, criticalSharedRelcachesBuilt,
							  NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * wait_for_database: with tasker.database_name missing, start no executor
 * (its connection would fail, and the launcher would start another every
 * few seconds): show every empty slot as waiting_for_database, and say so
 * in the log once until the database appears.
 */
static void
wait_for_database(bool *logged)
{
	if (!*logged)
		ereport(LOG,
				(errmsg("tasker workers wait for database \"%s\" to be created",
						tasker_database_name),
				 errdetail("tasker.database_name names a database that does not exist."),
				 errhint("CREATE DATABASE %s and CREATE EXTENSION tasker in it, or set tasker.database_name and reload.",
						 quote_identifier(tasker_database_name))));
	*logged = true;
	tasker_slots_wait_for_database();
}

/*
 * tasker_launcher_main: keep one executor per slot running, once the
 * database exists.
 */
void
tasker_launcher_main(Datum arg)
{
	int			i;
	bool		logged = false;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	/* Connected to no database: only so it shows in pg_stat_activity. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	tasker_launcher_attach();

	while (!ShutdownRequestPending)
	{
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!database_exists())
			wait_for_database(&logged);
		else
		{
			logged = false;
			for (i = 0; i < tasker_slot_count(); i++)
				if (tasker_slot_needs_worker(i))
					start_executor(i);
			tasker_event_worker_launch();
			tasker_retention_tick();
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* Absorbs ProcSignalBarriers, which DROP DATABASE waits for. */
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}

/*
 * release_slot: on exit, give the slot back so the launcher can refill it.
 */
static void
release_slot(int code, Datum arg)
{
	tasker_release_slot(my_slot);
}

/*
 * set_slot_state: publish what this executor is doing.
 */
static void
set_slot_state(TaskerWorkerState state, int steps)
{
	tasker_set_slot_state(my_slot, state, steps);
}

/*
 * extension_state: whether this database's extension is ready for this
 * library: installed (else TASKER_WORKER_WAITING) and at the library's own
 * version (else TASKER_WORKER_WAITING_FOR_UPDATE: the SQL objects of
 * another version are not what this code expects).  Looked up in a short
 * transaction of its own until it is ready, then not again: if the
 * extension is dropped later, the next batch fails, the executor exits,
 * and its successor waits here again.
 */
static TaskerWorkerState
extension_state(void)
{
	static bool ready = false;
	static bool logged = false;
	MemoryContext oldcxt = CurrentMemoryContext;
	char	   *version;

	if (ready)
		return TASKER_WORKER_IDLE;
	StartTransactionCommand();
	version = tasker_installed_version();
	version = version ? MemoryContextStrdup(oldcxt, version) : NULL;
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
	if (version == NULL)
		return TASKER_WORKER_WAITING;
	ready = (strcmp(version, TASKER_EXTVERSION) == 0);
	if (!ready && !logged)
		ereport(LOG,
				(errmsg("tasker worker %d waits for the tasker extension of database \"%s\" to be updated",
						my_slot, tasker_database_name),
				 errdetail("The extension is at version %s; the library is version %s.",
						   version, TASKER_EXTVERSION),
				 errhint("Run ALTER EXTENSION tasker UPDATE in that database.")));
	logged = !ready;
	return ready ? TASKER_WORKER_IDLE : TASKER_WORKER_WAITING_FOR_UPDATE;
}

/*
 * shutdown_kinds: the executor is asked to stop: let each handler kind
 * settle what it has in flight (the HTTP kind records its requests as
 * failed attempts, retried later).
 */
static void
shutdown_kinds(void)
{
	const TaskerHandlerKind *const *k;

	for (k = tasker_handler_kinds; *k != NULL; k++)
		if ((*k)->shutdown != NULL)
			(*k)->shutdown();
}

/*
 * leased_turns: one turn of each leased kind (record what finished, claim
 * more when claim_new); returns the steps moved.
 */
static int
leased_turns(bool claim_new)
{
	const TaskerHandlerKind *const *k;
	int			n = 0;

	for (k = tasker_handler_kinds; *k != NULL; k++)
		if ((*k)->turn != NULL)
			n += (*k)->turn(claim_new);
	return n;
}

/*
 * wait_once: one wait on the latch, postmaster death and the sockets the
 * kinds add, up to timeout_ms (shortened to the kinds' timers).  Returns
 * true when the wait should end: the latch was set or a kind has
 * outcomes to record.
 */
static bool
wait_once(long timeout_ms)
{
	const TaskerHandlerKind *const *k;
	WaitEventSet *set;
	WaitEvent  *events;
	int			nevents = 2;
	int			n;
	int			i;
	bool		latch = false;
	bool		progress = false;

	for (k = tasker_handler_kinds; *k != NULL; k++)
	{
		if ((*k)->nwait_events != NULL)
			nevents += (*k)->nwait_events();
		if ((*k)->bound_wait != NULL)
			timeout_ms = (*k)->bound_wait(timeout_ms);
	}
	set = tasker_create_wait_event_set(nevents);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (k = tasker_handler_kinds; *k != NULL; k++)
		if ((*k)->add_wait_events != NULL)
			(*k)->add_wait_events(set);
	events = palloc(sizeof(WaitEvent) * nevents);
	n = WaitEventSetWait(set, Max(timeout_ms, 0), events, nevents, PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	for (i = 0; i < n; i++)
	{
		const TaskerHandlerKind *kind = (const TaskerHandlerKind *) events[i].user_data;

		if (events[i].events & WL_LATCH_SET)
			latch = true;
		else if (kind != NULL && kind->wait_event_fired != NULL)
			kind->wait_event_fired(&events[i]);
	}
	pfree(events);
	for (k = tasker_handler_kinds; *k != NULL; k++)
		if ((*k)->after_wait != NULL)
			progress |= (*k)->after_wait(latch);
	return latch || progress;
}

/*
 * executor_wait: the executor's sleep, which it owns: until its latch is
 * set, a kind has outcomes to record, a signal asks for attention, or
 * timeout_ms passes.
 */
static void
executor_wait(long timeout_ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		long		left = (long) ((end - GetCurrentTimestamp()) / 1000);

		if (wait_once(left) || ProcDiePending || ConfigReloadPending ||
			GetCurrentTimestamp() >= end)
			break;
	}
}

/*
 * step_aside: leave the database for the command that needs it: settle the
 * HTTP requests in flight (as failed attempts, retried later) and exit.
 * The launcher starts a successor, whose connection waits on the
 * database's lock until the command ends, and then runs as before.
 */
static void
step_aside(void)
{
	ereport(LOG,
			(errmsg("tasker worker %d leaves database \"%s\" for a command that needs it alone",
					my_slot, tasker_database_name),
			 errdetail("DROP DATABASE, ALTER DATABASE and CREATE DATABASE ... TEMPLATE wait for every session of the database to leave."),
			 errhint("A new worker connects when the command ends.")));
	shutdown_kinds();
	proc_exit(0);
}

/*
 * wake_other_workers: set the latch of every other executor.
 */
static void
wake_other_workers(void)
{
	tasker_wake_other_workers(my_slot);
}

/*
 * run_in_transaction_kinds: claim, run and record up to batch_size ready
 * steps of each in-transaction kind, in the current transaction.
 */
static int
run_in_transaction_kinds(void)
{
	return tasker_run_in_transaction_kinds(0, tasker_batch_size, InvalidOid);
}

/*
 * run_one_batch: one transaction that claims and runs up to batch_size
 * ready steps (starting their pending tasks).  Returns the number of
 * steps run; *sleep_ms is how long the worker may sleep if it ran none
 * (until the next retry falls due, at most tasker.poll_interval).  A
 * batch that ran steps wakes the other workers at its commit: the tasks
 * it held, and the children it released, are theirs to claim too.
 */
static int
run_one_batch(long *sleep_ms)
{
	int			n;
	uint64		deferred = tasker_claims_deferred();
	TimestampTz claimed_at = GetCurrentTimestamp();

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "tasker: running steps");
	n = run_in_transaction_kinds();
	*sleep_ms = tasker_poll_interval;
	if (tasker_claims_deferred() != deferred)
	{
		/*
		 * The claim deferred steps over their rate limits: other ready
		 * steps may wait behind them, so look again at once.
		 */
		*sleep_ms = 0;
	}
	else if (n == 0)
	{
		long		due;

		/* Settle the cancelled tasks a dead batch left with ready steps. */
		(void) tasker_start_ready_tasks(0, tasker_batch_size);
		due = tasker_ms_until_next_step(claimed_at);

		/*
		 * A step due now that no batch could claim is held elsewhere (or
		 * is not for this worker): the poll interval applies, or the
		 * commit of the batch that holds it wakes us.
		 */
		if (due > 0)
			*sleep_ms = Min(due, (long) tasker_poll_interval);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (n > 0)
		wake_other_workers();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/*
 * tasker_executor_main: the executor loop.
 */
void
tasker_executor_main(Datum arg)
{
	my_slot = DatumGetInt32(arg);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (!tasker_claim_slot(my_slot))
		proc_exit(0);
	before_shmem_exit(release_slot, (Datum) 0);

	BackgroundWorkerInitializeConnection(tasker_database_name, NULL, 0);
	pgstat_report_appname("tasker worker");
	/*
	 * Pin tasker's statement settings for the whole session, so that its
	 * statements need no GUC nest level of their own (spi_util.c); a
	 * handler still gets the reset values (security.c).
	 */
	tasker_pin_session_settings();

	for (;;)
	{
		int			ran = 0;
		long		sleep_ms = tasker_poll_interval;
		TaskerWorkerState state = TASKER_WORKER_PAUSED;
		bool		ready;

		/* Asked to stop: settle the HTTP requests in flight first. */
		if (ProcDiePending)
			shutdown_kinds();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (tasker_database_wanted())
			step_aside();

		if (tasker_enabled)
			state = extension_state();
		else if (extension_state() == TASKER_WORKER_IDLE)
			state = TASKER_WORKER_PAUSED;
		/* Admission control's measure goes on while paused. */
		if (state == TASKER_WORKER_IDLE || state == TASKER_WORKER_PAUSED)
			tasker_sample_backlog();
		ready = (state == TASKER_WORKER_IDLE);
		if (ready)
		{
			set_slot_state(TASKER_WORKER_RUNNING, 0);
			ran = run_one_batch(&sleep_ms);
		}
		/* Leased kinds: record what finished, claim more when ready. */
		ran += leased_turns(ready);
		set_slot_state(state, ran);

		/*
		 * Steps that ran may have released their children: look again at
		 * once.  Sleep only when there was nothing to do.
		 */
		if (ran > 0)
			continue;
		/*
		 * The wait, also watching the kinds' sockets; short enough to see
		 * in time a command that needs the database.
		 */
		executor_wait(Min(sleep_ms, TASKER_DB_PROBE_MS));
		ResetLatch(MyLatch);
	}
}
