/*-------------------------------------------------------------------------
 *
 * event_log.c
 *		The durable event log: every event tasker sends is also a row of
 *		tasker_event_log, written by the transaction that makes it, with
 *		an id a consumer resumes from.
 *
 * At pre-commit, a transaction that made events (notify.c keeps them until
 * then) takes one id for each, in order, and inserts them all in one
 * statement, as the extension's owner; the payload sent on NOTIFY and the
 * row carry the same JSON, with its "event_id".  Taking the ids only at
 * pre-commit keeps the window between an id and its commit to the commit
 * itself (its WAL flush, a synchronous standby), however long the
 * transaction ran.
 *
 * The guarantee readers rely on: tasker_events_since(after_id) returns
 * only events below the horizon, an id below which every event is final:
 * committed (and visible to a snapshot taken after the horizon was read)
 * or rolled back (a gap forever).  So a consumer that resumes after the
 * largest id it received never steps over an event committed later with a
 * smaller id.  Two ways keep it, by whether the library is preloaded:
 *
 * - With shared memory, ids come from a counter per database (initialised
 *   from the table's largest id when first used after a start), and the
 *   transaction records its first id in its process's slot in the same
 *   critical section that hands it out; the slot is cleared at commit,
 *   once the commit is visible, or at abort.  The horizon is the smallest
 *   id a slot of this database holds, or the counter.  Readers and
 *   writers never wait for each other; the horizon waits only for
 *   commits in progress.
 * - Without it (or for a database beyond the EVENT_LOG_DBS the counters
 *   cover), a transaction takes an exclusive advisory lock at pre-commit,
 *   which it holds until its commit is visible, and continues from the
 *   table's largest id: ids then commit in order, and every committed
 *   event is below the horizon (PG_INT64_MAX).
 *
 * A transaction that logged events commits durably (synchronous_commit off
 * is raised to local for it): an event a reader saw is never lost in a
 * crash, so its id is never handed out again.
 *
 * Readers must see what committed up to the moment they read the horizon,
 * so tasker_events_since refuses a REPEATABLE READ or SERIALIZABLE
 * transaction, whose snapshot may be older.  Pruning (the event worker,
 * tasker_prune_event_log) deletes old events in short batches, never the
 * newest (the counter resumes from it after a restart) and never one a
 * subscriber has not passed.
 *
 * The shared part also holds the event worker's place (event_worker.c):
 * its latch, which a commit that logged events sets when there are
 * subscribers.  This file calls spi_util.c, security.c (acting as the
 * owner) and guc.c; notify.c calls it, and shmem.c reserves its memory.
 *
 * IDENTIFICATION
 *		src/event_log.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "event_log.h"
#include "guc.h"
#include "security.h"
#include "spi_util.h"

/* Databases whose ids the shared counters hand out. */
#define EVENT_LOG_DBS 16

/* The advisory lock of serialized appends: "tskr", "evlg", a kind no SQL
 * function uses (1 and 2 are pg_advisory_lock's). */
#define EVENT_LOCK_KEY1 0x74736B72
#define EVENT_LOCK_KEY2 0x65766C67
#define EVENT_LOCK_KIND 3

/* A database's next event id (dbid InvalidOid: a free entry). */
typedef struct EventLogDb
{
	Oid			dbid;
	int64		next_id;
} EventLogDb;

/* A process's first id in flight (0: none). */
typedef struct EventLogSlot
{
	Oid			dbid;
	int64		first_id;
} EventLogSlot;

typedef struct EventLogShared
{
	slock_t		mutex;
	EventLogDb	dbs[EVENT_LOG_DBS];
	/* The event worker (event_worker.c) */
	pid_t		worker_pid;
	Latch	   *worker_latch;
	Oid			worker_dbid;
	int			subscriptions;
	TimestampTz worker_started_at;
	/* One slot per PGPROC */
	int			nslots;
	EventLogSlot slots[FLEXIBLE_ARRAY_MEMBER];
} EventLogShared;

static EventLogShared *shared = NULL;

/* Whether the current transaction appended events. */
static bool appended = false;

static SPIPlanPtr max_plan;
static SPIPlanPtr insert_plan;
static SPIPlanPtr read_plan;
static SPIPlanPtr end_plan;
static SPIPlanPtr prune_plan;

/*
 * slot_count: one slot for every PGPROC.
 */
static int
slot_count(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/*
 * tasker_event_log_shmem_size: the bytes of the counters, the slots and
 * the event worker's place.
 */
Size
tasker_event_log_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(EventLogShared, slots),
							 mul_size(slot_count(), sizeof(EventLogSlot))));
}

/*
 * tasker_event_log_shmem_init: create or attach to the shared part; shmem.c
 * calls it with AddinShmemInitLock held.
 */
void
tasker_event_log_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("tasker event log", tasker_event_log_shmem_size(), &found);
	if (!found)
	{
		memset(shared, 0, tasker_event_log_shmem_size());
		SpinLockInit(&shared->mutex);
		shared->nslots = slot_count();
	}
}

/*
 * my_slot: this process's slot, or NULL without shared memory.
 */
static EventLogSlot *
my_slot(void)
{
	int			i;

	if (shared == NULL || MyProc == NULL)
		return NULL;
	i = TASKER_MY_PROC_NUMBER;
	if (i < 0 || i >= shared->nslots)
		elog(ERROR, "tasker event log has no slot for process number %d", i);
	return &shared->slots[i];
}

/*
 * log_exists: whether this database's tasker has the event log (a 0.1.0
 * schema not yet updated has none, and events are then only sent).
 */
static bool
log_exists(void)
{
	return OidIsValid(get_extension_oid("tasker", true)) &&
		tasker_has_column("tasker_event_log", "event_id");
}

/*
 * read_max: the largest id in the log (0 when empty), read with a new
 * snapshot, which sees every commit so far.  SPI must be connected.
 */
static int64
read_max(void)
{
	bool		isnull;

	tasker_run_plan_latest(tasker_keep_plan(&max_plan,
			 "SELECT coalesce(max(event_id), 0) FROM @extschema@.tasker_event_log",
			 0, NULL),
		NULL, SPI_OK_SELECT);
	return DatumGetInt64(tasker_col(0, 1, &isnull));
}

/*
 * find_db: this database's counter, with the mutex held; NULL when none.
 * *full says whether no entry is free.
 */
static EventLogDb *
find_db(bool *full)
{
	int			i;

	*full = true;
	for (i = 0; i < EVENT_LOG_DBS; i++)
	{
		if (shared->dbs[i].dbid == MyDatabaseId)
			return &shared->dbs[i];
		if (shared->dbs[i].dbid == InvalidOid)
			*full = false;
	}
	return NULL;
}

/*
 * db_entry: this database's counter, set up from the table on first use
 * after the server started (no id was handed out in this database since,
 * so the largest one in the table is the last); NULL without shared
 * memory or with every entry taken (appends are then serialized).  SPI
 * must be connected.
 */
static EventLogDb *
db_entry(void)
{
	EventLogDb *e;
	bool		full;
	int64		max;
	int			i;

	if (shared == NULL)
		return NULL;
	SpinLockAcquire(&shared->mutex);
	e = find_db(&full);
	SpinLockRelease(&shared->mutex);
	if (e != NULL || full)
		return e;
	max = read_max();
	SpinLockAcquire(&shared->mutex);
	e = find_db(&full);
	for (i = 0; e == NULL && i < EVENT_LOG_DBS; i++)
		if (shared->dbs[i].dbid == InvalidOid)
		{
			e = &shared->dbs[i];
			e->dbid = MyDatabaseId;
			e->next_id = max + 1;
		}
	SpinLockRelease(&shared->mutex);
	return e;
}

/*
 * serialized_first_id: without a counter, take the append lock (held
 * until the transaction ends, after its commit is visible) and continue
 * from the largest id committed.
 */
static int64
serialized_first_id(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, EVENT_LOCK_KEY1, EVENT_LOCK_KEY2,
						 EVENT_LOCK_KIND);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	return read_max() + 1;
}

/*
 * allocate_ids: the first of n consecutive ids for this transaction's
 * events, recorded in its slot in the same critical section.  SPI must be
 * connected.
 */
static int64
allocate_ids(int n)
{
	EventLogDb *e = db_entry();
	EventLogSlot *slot;
	int64		first;

	if (e == NULL)
		return serialized_first_id();
	slot = my_slot();
	SpinLockAcquire(&shared->mutex);
	first = e->next_id;
	e->next_id += n;
	if (slot->first_id == 0)
	{
		slot->dbid = MyDatabaseId;
		slot->first_id = first;
	}
	SpinLockRelease(&shared->mutex);
	return first;
}

/*
 * with_event_id: the payload (a JSON object) with "event_id" added last.
 */
static char *
with_event_id(const char *payload, int64 id)
{
	size_t		len = strlen(payload);

	if (len < 2 || payload[len - 1] != '}')
		elog(ERROR, "tasker event payload is not a JSON object: %s", payload);
	return psprintf("%.*s,\"event_id\":" INT64_FORMAT "}", (int) (len - 1), payload, id);
}

/*
 * insert_events: one row per payload, ids first, first + 1, ...  SPI must
 * be connected.
 */
static void
insert_events(int64 first, char **payloads, int n)
{
	Oid			argtypes[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2];
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(payloads[i]);
	values[0] = Int64GetDatum(first);
	values[1] = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	tasker_run_plan(tasker_keep_plan(&insert_plan,
			 "INSERT INTO @extschema@.tasker_event_log (event_id, event)"
			 " SELECT $1 + u.o - 1, u.e::jsonb"
			 "   FROM pg_catalog.unnest($2) WITH ORDINALITY AS u (e, o)",
			 2, argtypes),
		values, NULL, SPI_OK_INSERT);
}

/*
 * commit_durably: a transaction that logged events commits at least with
 * synchronous_commit = local, for this transaction only.  Otherwise a
 * crash could lose events a reader had already seen, and their ids would
 * be handed out again (the counter resumes from the table), so a consumer
 * past them would miss the new ones.
 */
static void
commit_durably(void)
{
	if (synchronous_commit < SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		(void) set_config_option("synchronous_commit", "local", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * tasker_event_log_append: at pre-commit, log the transaction's events
 * (n payloads, in order) and return them with their "event_id", to be
 * sent as they are; where there is no log, the payloads unchanged.  Runs
 * as the extension's owner; the returned strings are in the caller's
 * memory context.
 */
char	  **
tasker_event_log_append(char **payloads, int n)
{
	MemoryContext callercxt = CurrentMemoryContext;
	TaskerApiScope scope;
	char	  **out;
	int64		first;
	int			i;

	if (n == 0 || !log_exists())
		return payloads;
	tasker_api_enter(&scope);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	PushActiveSnapshot(GetTransactionSnapshot());
	first = allocate_ids(n);
	appended = true;
	out = MemoryContextAlloc(callercxt, sizeof(char *) * n);
	for (i = 0; i < n; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(callercxt);

		out[i] = with_event_id(payloads[i], first + i);
		MemoryContextSwitchTo(old);
	}
	insert_events(first, out, n);
	PopActiveSnapshot();
	SPI_finish();
	tasker_api_leave(&scope);
	commit_durably();
	return out;
}

/*
 * tasker_event_log_end_xact: the transaction ended: its ids are no longer
 * in flight (a commit is visible by now); a commit that logged events
 * wakes the event worker when it has subscribers in this database.
 */
void
tasker_event_log_end_xact(bool committed)
{
	EventLogSlot *slot;
	Latch	   *latch = NULL;

	slot = my_slot();
	/* Only this process sets its slot, so it may look without the lock. */
	if (slot == NULL || (!appended && slot->first_id == 0))
	{
		appended = false;
		return;
	}
	SpinLockAcquire(&shared->mutex);
	slot->first_id = 0;
	slot->dbid = InvalidOid;
	if (committed && appended && shared->subscriptions > 0 &&
		shared->worker_dbid == MyDatabaseId)
		latch = shared->worker_latch;
	SpinLockRelease(&shared->mutex);
	appended = false;
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * tasker_event_log_horizon: an id below which every event of this
 * database is final (see the header): the smallest id a transaction still
 * holds, or the next id; PG_INT64_MAX when appends are serialized.  SPI
 * must be connected.
 */
int64
tasker_event_log_horizon(void)
{
	EventLogDb *e = db_entry();
	int64		h;
	int			i;

	if (e == NULL)
		return PG_INT64_MAX;
	SpinLockAcquire(&shared->mutex);
	h = e->next_id;
	for (i = 0; i < shared->nslots; i++)
	{
		EventLogSlot *s = &shared->slots[i];

		if (s->first_id != 0 && s->first_id < h && s->dbid == MyDatabaseId)
			h = s->first_id;
	}
	SpinLockRelease(&shared->mutex);
	return h;
}

/*
 * refuse_old_snapshot: raise in a transaction whose snapshot may predate
 * the horizon.
 */
static void
refuse_old_snapshot(const char *function)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot run in a REPEATABLE READ or SERIALIZABLE transaction", function),
				 errdetail("It must see every event committed up to the moment it runs; the transaction's older snapshot could hide an event it would then step over."),
				 errhint("Call it in a READ COMMITTED transaction.")));
}

/*
 * tasker_event_log_settled_end: the largest id below the horizon (0 when
 * none): the position after which nothing committed is missed.  Read in
 * an older snapshot (REPEATABLE READ) it may be smaller, never larger.
 * SPI must be connected.
 */
int64
tasker_event_log_settled_end(void)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	bool		isnull;

	values[0] = Int64GetDatum(tasker_event_log_horizon());
	tasker_run_plan(tasker_keep_plan(&end_plan,
			 "SELECT coalesce(max(event_id), 0) FROM @extschema@.tasker_event_log"
			 " WHERE event_id < $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return DatumGetInt64(tasker_col(0, 1, &isnull));
}

/*
 * tasker_events_since: put into the materialized result of fcinfo (set up
 * by the caller) up to max_events events with ids above after_id and
 * below the horizon, in id order.  Runs as the owner, in the caller's
 * READ COMMITTED transaction: the statement's snapshot is taken after the
 * horizon is read.
 */
void
tasker_events_since(int64 after_id, int max_events, FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			argtypes[4] = {INT8OID, INT8OID, INT4OID, OIDOID};
	Datum		values[4];
	uint64		i;

	refuse_old_snapshot("tasker_events_since");
	if (max_events < 1 || max_events > 1000000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and 1000000"),
				 errdetail("The value given is %d.", max_events),
				 errhint("Read the log in pages: pass the last event_id returned as the next after_id.")));
	if (!log_exists())
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	values[0] = Int64GetDatum(after_id);
	values[1] = Int64GetDatum(tasker_event_log_horizon());
	values[2] = Int32GetDatum(max_events);
	/* Under namespace isolation, only the namespaces granted (security.c). */
	values[3] = ObjectIdGetDatum(tasker_sees_all_namespaces(tasker_caller()) ?
								 InvalidOid : tasker_caller());
	tasker_run_plan(tasker_keep_plan(&read_plan,
			 "SELECT event_id, event FROM @extschema@.tasker_event_log"
			 " WHERE event_id > $1 AND event_id < $2"
			 "   AND ($4 = 0 OR (event->>'namespace') IN ("
			 "        SELECT g.namespace FROM @extschema@.tasker_namespace_grants g"
			 "         WHERE pg_catalog.pg_has_role($4, g.grantee::oid, 'USAGE')))"
			 " ORDER BY event_id LIMIT $3",
			 4, argtypes),
		values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		Datum		row[2];
		bool		nulls[2] = {false, false};
		bool		isnull;

		row[0] = tasker_col(i, 1, &isnull);
		row[1] = PointerGetDatum(PG_DETOAST_DATUM(tasker_col(i, 2, &isnull)));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	SPI_finish();
}

/*
 * tasker_event_log_cutoff: the time before which tasker.event_log_retention
 * lets events go; -infinity when it is 0 (keep them all).
 */
TimestampTz
tasker_event_log_cutoff(void)
{
	if (tasker_event_log_retention <= 0)
		return DT_NOBEGIN;
	return GetCurrentTimestamp() - (TimestampTz) tasker_event_log_retention * USECS_PER_SEC;
}

/*
 * tasker_event_log_prune: delete up to max_rows of the oldest events
 * created before a time, in one statement of the caller's transaction,
 * except the newest event and those a subscriber has not yet passed.
 * Returns how many it deleted.  Runs as the caller (the owner).
 */
int64
tasker_event_log_prune(TimestampTz before, int max_rows)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2] = {TimestampTzGetDatum(before), Int32GetDatum(max_rows)};
	int64		n;

	if (!log_exists())
		return 0;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	n = (int64) tasker_run_plan(tasker_keep_plan(&prune_plan,
			 "DELETE FROM @extschema@.tasker_event_log"
			 " WHERE event_id IN ("
			 "   SELECT o.event_id FROM ("
			 "     SELECT l.event_id, l.created_at FROM @extschema@.tasker_event_log l"
			 "      ORDER BY l.event_id LIMIT $2) o"
			 "    WHERE o.created_at < $1"
			 "      AND o.event_id < (SELECT max(m.event_id) FROM @extschema@.tasker_event_log m)"
			 "      AND o.event_id <= coalesce((SELECT min(s.last_event_id)"
			 "                                    FROM @extschema@.tasker_subscribers s), o.event_id))",
			 2, argtypes),
		values, NULL, SPI_OK_DELETE);
	SPI_finish();
	return n;
}

/*
 * tasker_event_worker_needs_start: for the launcher: no event worker runs
 * (a dead one's place is cleared on the way) and none was asked for in the
 * last few seconds.
 */
bool
tasker_event_worker_needs_start(void)
{
	bool		needs;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	if (shared->worker_pid != 0 && kill(shared->worker_pid, 0) != 0)
	{
		shared->worker_pid = 0;
		shared->worker_latch = NULL;
	}
	needs = shared->worker_pid == 0 &&
		TimestampDifferenceExceeds(shared->worker_started_at, GetCurrentTimestamp(), 5000);
	SpinLockRelease(&shared->mutex);
	return needs;
}

/*
 * tasker_event_worker_started: the launcher asked for the event worker
 * just now.
 */
void
tasker_event_worker_started(void)
{
	SpinLockAcquire(&shared->mutex);
	shared->worker_started_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);
}

/*
 * tasker_event_worker_attach: take the event worker's place for this
 * process; false when another live process holds it.
 */
bool
tasker_event_worker_attach(void)
{
	bool		ok;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	ok = shared->worker_pid == 0 || kill(shared->worker_pid, 0) != 0;
	if (ok)
	{
		shared->worker_pid = MyProcPid;
		shared->worker_latch = MyLatch;
		shared->worker_dbid = InvalidOid;
		shared->subscriptions = 0;
	}
	SpinLockRelease(&shared->mutex);
	return ok;
}

/*
 * tasker_event_worker_detach: on exit, give the place back.
 */
void
tasker_event_worker_detach(void)
{
	SpinLockAcquire(&shared->mutex);
	if (shared->worker_pid == MyProcPid)
	{
		shared->worker_pid = 0;
		shared->worker_latch = NULL;
		shared->subscriptions = 0;
	}
	SpinLockRelease(&shared->mutex);
}

/*
 * tasker_event_worker_set_subscriptions: the event worker says how many
 * subscriptions its database has, so that commits there wake it.
 */
void
tasker_event_worker_set_subscriptions(int n)
{
	SpinLockAcquire(&shared->mutex);
	shared->worker_dbid = MyDatabaseId;
	shared->subscriptions = n;
	SpinLockRelease(&shared->mutex);
}
