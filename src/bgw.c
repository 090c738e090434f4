/*-------------------------------------------------------------------------
 *
 * bgw.c
 *		What tasker's background workers share: how each is described to
 *		the postmaster, and how each sees a command that needs its database.
 *
 * tasker runs four kinds of background worker: the launcher and the
 * executors (worker.c), the event relay (notify.c) and the event worker
 * (event_worker.c).  They are described to the postmaster alike
 * (tasker_describe_bgworker), and those connected to
 * tasker.database_name leave it alike when a
 * command needs it to themselves (tasker_database_wanted).  Nothing here
 * runs in a transaction; this file calls no other tasker module, so the
 * worker loops above it and the relay below them can both use it.
 *
 * IDENTIFICATION
 *		src/bgw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "storage/lock.h"

#include "bgw.h"

/*
 * tasker_describe_bgworker: fill in one of tasker's background workers:
 * shared memory and a database connection, started once recovery is
 * finished, running function of this library, restarted restart_time
 * seconds after it exits (or never: BGW_NEVER_RESTART).
 */
void
tasker_describe_bgworker(BackgroundWorker *worker, const char *function,
						 const char *name, const char *type, int restart_time)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "tasker");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

/*
 * tasker_database_wanted: whether a command needs this database to itself: DROP
 * DATABASE, ALTER DATABASE ... SET TABLESPACE or RENAME, CREATE DATABASE
 * ... TEMPLATE.  Each takes (or queues for) a lock on the database object
 * that conflicts with the RowExclusiveLock a new session takes to connect,
 * then waits a few seconds for the sessions already connected to leave.
 * We ask for that lock without waiting, and at once let it go.
 */
bool
tasker_database_wanted(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, RowExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, true);
	return false;
}
