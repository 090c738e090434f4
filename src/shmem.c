/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The one home of tasker's shared memory: the worker slots and their
 *		latches, the counters, and one request/startup pair for every part.
 *
 * The struct here holds the executors' slots (pid, latch, state, steps
 * run; the launcher's pid) and the counters that tasker_metrics()
 * (metrics.c) reads: tasks by outcome, step attempts by kind and outcome,
 * retries, HTTP requests by answer, external-worker claims, lost leases,
 * and a histogram of step run times by kind.  They live as long as the
 * server: a restart (or a crash) starts them again at zero.
 * Five more parts live with the module that owns their rules: the HTTP
 * concurrency slots and request counters (http_limits.c), the event
 * relay's ring (notify.c), the latches of sessions waiting for work in
 * tasker_claim_steps (claim_wait.c), and the event log's id counters,
 * ids in flight and the event worker's latch (event_log.c), and the rate
 * limits' token buckets (rate_limit.c).  This file reserves all of them, and
 * the ring's lock, in one shmem_request_hook, and creates or attaches them
 * in one
 * shmem_startup_hook; nothing else installs a hook.  The hooks are
 * installed only while the library is preloaded: without the preload
 * there is no shared state, every reader here says so
 * (tasker_workers_present) and every writer does nothing.
 *
 * A spinlock guards the slots; a slot's latch is set without it.  The
 * counters are atomics, one per uint64 of TaskerCounts, and count what
 * committed: a backend keeps its counts per subtransaction level until
 * its transaction ends, adds them at commit and forgets them on abort (a
 * batch that rolls back left no attempt; a task whose creation rolled
 * back was never created).  Counts made outside a transaction are added
 * at once.  Counting takes no lock and reads no table.  The ready
 * backlog gauge (admission control, backlog.c) is kept here too: an
 * executor publishes what it measured, and each task created since adds
 * its ready steps at commit.
 *
 * This module calls nothing above it: the worker loops (worker.c), the
 * commit-time wake-up (events.c) and the SQL functions (api.c, control.c)
 * call here.
 *
 * IDENTIFICATION
 *		src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claim_wait.h"
#include "event_log.h"
#include "guc.h"
#include "http_limits.h"
#include "notify.h"
#include "rate_limit.h"
#include "shmem.h"

/* The counters, flat: TaskerCounts as an array of uint64. */
#define NUM_COUNTS ((int) (sizeof(TaskerCounts) / sizeof(uint64)))
/* The flat index of the first counter of a member of TaskerCounts. */
#define COUNT_INDEX(member) ((int) (offsetof(TaskerCounts, member) / sizeof(uint64)))

StaticAssertDecl(sizeof(TaskerCounts) % sizeof(uint64) == 0,
				 "TaskerCounts must hold nothing but uint64 counters");

const double tasker_duration_bounds[TASKER_NUM_DURATION_BOUNDS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300
};

static const char *const kind_names[TASKER_NUM_STEP_KINDS] = {
	"sql", "http", "worker", "flow"
};
static const char *const outcome_names[TASKER_NUM_ATTEMPT_OUTCOMES] = {
	"complete", "retry", "failed", "quarantined", "cancelled"
};
static const char *const http_class_names[TASKER_NUM_HTTP_CLASSES] = {
	"2xx", "3xx", "4xx", "5xx", "error", "timeout"
};

typedef struct TaskerShmem
{
	slock_t		mutex;
	pid_t		launcher_pid;
	int			nslots;
	TaskerWorkerSlot slots[TASKER_MAX_SLOTS];
	pg_atomic_uint64 counts[NUM_COUNTS];
	/* The ready backlog gauge (see "The ready backlog" below). */
	Oid			backlog_database;	/* under mutex */
	pg_atomic_uint64 backlog;
	pg_atomic_uint64 backlog_measured_at;	/* TimestampTz; 0: never */
	pg_atomic_uint64 backlog_sample_started_at; /* TimestampTz */
} TaskerShmem;

static TaskerShmem *tasker_shmem = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * This backend's counts not yet committed: NUM_COUNTS per transaction
 * nest level (index 0 unused), in TopMemoryContext.
 */
static uint64 *pending_counts = NULL;
static int	pending_levels = 0;
static bool counts_pending = false; /* some level holds a count */
static bool counts_callbacks = false;

/*
 * slots_shmem_size: the bytes of the slots and counters.
 */
static Size
slots_shmem_size(void)
{
	return MAXALIGN(sizeof(TaskerShmem));
}

/*
 * slots_shmem_init: create or attach to the slots and counters.
 */
static void
slots_shmem_init(void)
{
	bool		found;
	int			i;

	tasker_shmem = ShmemInitStruct("tasker", sizeof(TaskerShmem), &found);
	if (!found)
	{
		memset(tasker_shmem, 0, sizeof(TaskerShmem));
		SpinLockInit(&tasker_shmem->mutex);
		tasker_shmem->nslots = Min(tasker_max_workers, TASKER_MAX_SLOTS);
		for (i = 0; i < NUM_COUNTS; i++)
			pg_atomic_init_u64(&tasker_shmem->counts[i], 0);
		pg_atomic_init_u64(&tasker_shmem->backlog, 0);
		pg_atomic_init_u64(&tasker_shmem->backlog_measured_at, 0);
		pg_atomic_init_u64(&tasker_shmem->backlog_sample_started_at, 0);
	}
}

/*
 * shmem_request: reserve every part, and the relay ring's lock.
 */
static void
shmem_request(void)
{
	Size		size = slots_shmem_size();

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	size = add_size(size, tasker_http_shmem_size());
	size = add_size(size, tasker_notify_shmem_size());
	size = add_size(size, tasker_claim_wait_shmem_size());
	size = add_size(size, tasker_event_log_shmem_size());
	size = add_size(size, tasker_rate_shmem_size());
	RequestAddinShmemSpace(size);
	RequestNamedLWLockTranche(TASKER_NOTIFY_TRANCHE, 1);
}

/*
 * shmem_startup: create or attach to every part.
 */
static void
shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	slots_shmem_init();
	tasker_http_shmem_init();
	tasker_notify_shmem_init();
	tasker_claim_wait_shmem_init();
	tasker_event_log_shmem_init();
	tasker_rate_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * tasker_shmem_register: while preloading, install the hooks.
 */
void
tasker_shmem_register(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/*
 * tasker_workers_present: whether this server runs the tasker workers
 * (the library was preloaded and the shared state exists).
 */
bool
tasker_workers_present(void)
{
	return tasker_shmem != NULL && tasker_shmem->nslots > 0;
}

/*
 * tasker_wake_workers: set the latch of every running executor.  A no-op
 * without the workers.
 */
void
tasker_wake_workers(void)
{
	int			i;

	if (tasker_shmem == NULL)
		return;
	for (i = 0; i < tasker_shmem->nslots; i++)
	{
		Latch	   *latch = tasker_shmem->slots[i].latch;

		if (latch != NULL)
			SetLatch(latch);
	}
}

/*
 * tasker_worker_slots: copy the slots for tasker_worker_status(); returns
 * the number copied (0 without the workers).
 */
int
tasker_worker_slots(TaskerWorkerSlot *out, int max, pid_t *launcher_pid)
{
	int			n;

	*launcher_pid = 0;
	if (tasker_shmem == NULL)
		return 0;
	SpinLockAcquire(&tasker_shmem->mutex);
	n = Min(max, tasker_shmem->nslots);
	memcpy(out, tasker_shmem->slots, n * sizeof(TaskerWorkerSlot));
	*launcher_pid = tasker_shmem->launcher_pid;
	SpinLockRelease(&tasker_shmem->mutex);
	return n;
}

/*
 * tasker_slot_count: the number of executor slots (0 without the
 * workers).
 */
int
tasker_slot_count(void)
{
	return tasker_shmem == NULL ? 0 : tasker_shmem->nslots;
}

/*
 * tasker_launcher_attach: the launcher starts: record its pid, and let it
 * start an executor for every empty slot at once.
 */
void
tasker_launcher_attach(void)
{
	int			i;

	SpinLockAcquire(&tasker_shmem->mutex);
	tasker_shmem->launcher_pid = MyProcPid;
	for (i = 0; i < tasker_shmem->nslots; i++)
		tasker_shmem->slots[i].started_at = 0;
	SpinLockRelease(&tasker_shmem->mutex);
}

/*
 * tasker_slot_needs_worker: a slot is empty when no live process owns it
 * and no start was requested in the last few seconds.  A slot whose
 * process died is cleared on the way.
 */
bool
tasker_slot_needs_worker(int i)
{
	TaskerWorkerSlot *slot = &tasker_shmem->slots[i];
	bool		needs;

	SpinLockAcquire(&tasker_shmem->mutex);
	if (slot->pid != 0 && kill(slot->pid, 0) != 0)
	{
		slot->pid = 0;
		slot->latch = NULL;
	}
	needs = slot->pid == 0 &&
		TimestampDifferenceExceeds(slot->started_at, GetCurrentTimestamp(), 5000);
	SpinLockRelease(&tasker_shmem->mutex);
	return needs;
}

/*
 * tasker_slot_started: the launcher asked the postmaster for slot i's
 * executor just now.
 */
void
tasker_slot_started(int i)
{
	SpinLockAcquire(&tasker_shmem->mutex);
	tasker_shmem->slots[i].started_at = GetCurrentTimestamp();
	SpinLockRelease(&tasker_shmem->mutex);
}

/*
 * tasker_slots_wait_for_database: show every empty slot as
 * waiting_for_database.
 */
void
tasker_slots_wait_for_database(void)
{
	int			i;

	SpinLockAcquire(&tasker_shmem->mutex);
	for (i = 0; i < tasker_shmem->nslots; i++)
		if (tasker_shmem->slots[i].pid == 0)
			tasker_shmem->slots[i].state = TASKER_WORKER_WAITING_FOR_DATABASE;
	SpinLockRelease(&tasker_shmem->mutex);
}

/*
 * tasker_claim_slot: take slot i for this process unless it is out of
 * range or another live process holds it.
 */
bool
tasker_claim_slot(int i)
{
	TaskerWorkerSlot *slot;
	bool		ok;

	if (tasker_shmem == NULL || i < 0 || i >= tasker_shmem->nslots)
		return false;
	slot = &tasker_shmem->slots[i];
	SpinLockAcquire(&tasker_shmem->mutex);
	ok = (slot->pid == 0 || slot->pid == MyProcPid || kill(slot->pid, 0) != 0);
	if (ok)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->state = TASKER_WORKER_STARTING;
		slot->steps_run = 0;
		slot->last_activity = GetCurrentTimestamp();
	}
	SpinLockRelease(&tasker_shmem->mutex);
	return ok;
}

/*
 * tasker_release_slot: on exit, give slot i back (if this process holds
 * it) and tell the launcher, so that it can start another executor.
 */
void
tasker_release_slot(int i)
{
	pid_t		launcher;

	SpinLockAcquire(&tasker_shmem->mutex);
	if (i >= 0 && i < tasker_shmem->nslots &&
		tasker_shmem->slots[i].pid == MyProcPid)
	{
		tasker_shmem->slots[i].pid = 0;
		tasker_shmem->slots[i].latch = NULL;
		tasker_shmem->slots[i].state = TASKER_WORKER_STOPPED;
	}
	launcher = tasker_shmem->launcher_pid;
	SpinLockRelease(&tasker_shmem->mutex);
	if (launcher != 0)
		kill(launcher, SIGUSR1);
}

/*
 * tasker_set_slot_state: publish what the executor of slot i is doing,
 * and the steps it ran since it last said.
 */
void
tasker_set_slot_state(int i, TaskerWorkerState state, int steps)
{
	TaskerWorkerSlot *slot = &tasker_shmem->slots[i];

	SpinLockAcquire(&tasker_shmem->mutex);
	slot->state = state;
	slot->steps_run += steps;
	if (steps > 0 || state == TASKER_WORKER_RUNNING)
		slot->last_activity = GetCurrentTimestamp();
	SpinLockRelease(&tasker_shmem->mutex);
}

/*
 * tasker_wake_other_workers: set the latch of every executor but the one
 * of slot i.
 */
void
tasker_wake_other_workers(int i)
{
	int			j;

	for (j = 0; j < tasker_shmem->nslots; j++)
	{
		Latch	   *latch = tasker_shmem->slots[j].latch;

		if (j != i && latch != NULL)
			SetLatch(latch);
	}
}

/*
 * counts_at_xact: at commit, add the transaction's counts to the shared
 * counters; at its end however it ends, forget them (a prepared
 * transaction's counts are not counted).
 */
static void
counts_at_xact(XactEvent event, void *arg)
{
	int			level;
	int			i;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	if (!counts_pending)
		return;
	counts_pending = false;
	for (level = 1; level < pending_levels; level++)
		for (i = 0; i < NUM_COUNTS; i++)
		{
			uint64	   *n = &pending_counts[level * NUM_COUNTS + i];

			if (*n != 0 && (event == XACT_EVENT_COMMIT ||
							event == XACT_EVENT_PARALLEL_COMMIT))
				pg_atomic_fetch_add_u64(&tasker_shmem->counts[i], *n);
			*n = 0;
		}
}

/*
 * counts_at_subxact: a subtransaction that commits hands its counts to its
 * parent; one that rolls back forgets them.
 */
static void
counts_at_subxact(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (!counts_pending || level >= pending_levels ||
		(event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB))
		return;
	for (i = 0; i < NUM_COUNTS; i++)
	{
		uint64	   *n = &pending_counts[level * NUM_COUNTS + i];

		if (event == SUBXACT_EVENT_COMMIT_SUB)
			pending_counts[(level - 1) * NUM_COUNTS + i] += *n;
		*n = 0;
	}
}

/*
 * add_count: add n to counter i when the current transaction commits (at
 * once outside a transaction).  A no-op without shared memory.
 */
static void
add_count(int i, uint64 n)
{
	int			level;

	if (tasker_shmem == NULL || n == 0)
		return;
	if (!IsTransactionState())
	{
		pg_atomic_fetch_add_u64(&tasker_shmem->counts[i], n);
		return;
	}
	if (!counts_callbacks)
	{
		RegisterXactCallback(counts_at_xact, NULL);
		RegisterSubXactCallback(counts_at_subxact, NULL);
		counts_callbacks = true;
	}
	level = GetCurrentTransactionNestLevel();
	if (level >= pending_levels)
	{
		int			levels = Max(level + 1, 2 * pending_levels);

		pending_counts = pending_counts == NULL ?
			MemoryContextAllocZero(TopMemoryContext,
								   levels * NUM_COUNTS * sizeof(uint64)) :
			repalloc(pending_counts, levels * NUM_COUNTS * sizeof(uint64));
		memset(pending_counts + pending_levels * NUM_COUNTS, 0,
			   (levels - pending_levels) * NUM_COUNTS * sizeof(uint64));
		pending_levels = levels;
	}
	pending_counts[level * NUM_COUNTS + i] += n;
	counts_pending = true;
}

/*
 * tasker_count_tasks: count n tasks created, completed, failed or
 * cancelled by the current transaction.
 */
void
tasker_count_tasks(TaskerTaskCount what, uint64 n)
{
	Assert(what < TASKER_NUM_TASK_COUNTS);
	add_count(COUNT_INDEX(tasks) + what, n);
}

/*
 * tasker_count_attempts: count n step attempts of a kind that ended so in
 * the current transaction.
 */
void
tasker_count_attempts(TaskerStepKind kind, TaskerAttemptOutcome outcome,
					  uint64 n)
{
	Assert(kind < TASKER_NUM_STEP_KINDS);
	Assert(outcome < TASKER_NUM_ATTEMPT_OUTCOMES);
	add_count(COUNT_INDEX(attempts) + kind * TASKER_NUM_ATTEMPT_OUTCOMES + outcome, n);
}

/*
 * tasker_observe_step_seconds: add the run time of one step attempt of a
 * kind to its histogram (a negative or unknown time counts as 0).
 */
void
tasker_observe_step_seconds(TaskerStepKind kind, double seconds)
{
	int			b = 0;

	Assert(kind < TASKER_NUM_STEP_KINDS);
	if (!(seconds > 0))
		seconds = 0;
	while (b < TASKER_NUM_DURATION_BOUNDS && seconds > tasker_duration_bounds[b])
		b++;
	add_count(COUNT_INDEX(duration_buckets) + kind * (TASKER_NUM_DURATION_BOUNDS + 1) + b, 1);
	add_count(COUNT_INDEX(duration_sum_us) + kind,
			  (uint64) Min(seconds * 1000000.0 + 0.5, (double) PG_INT64_MAX));
}

/*
 * tasker_count_retries: count n attempts of a kind started after a
 * failed one (attempt 2 and later).
 */
void
tasker_count_retries(TaskerStepKind kind, uint64 n)
{
	Assert(kind < TASKER_NUM_STEP_KINDS);
	add_count(COUNT_INDEX(retries) + kind, n);
}

/*
 * tasker_count_http: count one HTTP request by the class of its answer.
 */
void
tasker_count_http(TaskerHttpClass what)
{
	Assert(what < TASKER_NUM_HTTP_CLASSES);
	add_count(COUNT_INDEX(http) + what, 1);
}

/*
 * tasker_count_worker_claims: count n steps claimed by external workers.
 */
void
tasker_count_worker_claims(uint64 n)
{
	add_count(COUNT_INDEX(worker_claims), n);
}

/*
 * tasker_count_lost_leases: count n leased steps of a kind reclaimed after
 * their lease expired.
 */
void
tasker_count_lost_leases(TaskerStepKind kind, uint64 n)
{
	Assert(kind < TASKER_NUM_STEP_KINDS);
	add_count(COUNT_INDEX(lost_leases) + kind, n);
}

/*
 * tasker_read_counts: copy the counters (what committed so far, since
 * the server started); false, and zeros, without shared memory.
 */
bool
tasker_read_counts(TaskerCounts *out)
{
	uint64	   *flat = (uint64 *) out;
	int			i;

	memset(out, 0, sizeof(*out));
	if (tasker_shmem == NULL)
		return false;
	for (i = 0; i < NUM_COUNTS; i++)
		flat[i] = pg_atomic_read_u64(&tasker_shmem->counts[i]);
	return true;
}

/*
 * tasker_step_kind: the kind of a handler_kind name, or -1 for a name
 * tasker does not count.
 */
int
tasker_step_kind(const char *name)
{
	int			k;

	for (k = 0; name != NULL && k < TASKER_NUM_STEP_KINDS; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}

/*
 * tasker_step_kind_name: a kind's name, as handler_kind spells it.
 */
const char *
tasker_step_kind_name(TaskerStepKind kind)
{
	Assert(kind < TASKER_NUM_STEP_KINDS);
	return kind_names[kind];
}

/*
 * tasker_attempt_outcome_name: an attempt outcome's label value.
 */
const char *
tasker_attempt_outcome_name(TaskerAttemptOutcome outcome)
{
	Assert(outcome < TASKER_NUM_ATTEMPT_OUTCOMES);
	return outcome_names[outcome];
}

/*
 * tasker_http_class_name: an HTTP answer class's label value.
 */
const char *
tasker_http_class_name(TaskerHttpClass what)
{
	Assert(what < TASKER_NUM_HTTP_CLASSES);
	return http_class_names[what];
}

/*
 * The ready backlog.  backlog.c measures the ready steps of the executors'
 * database about once a second and publishes the figure here
 * (tasker_backlog_publish); every transaction that creates tasks in that
 * database adds their ready steps when it commits
 * (tasker_backlog_add_at_commit), so that a burst of creations counts
 * before the next measure.  Steps claimed since the measure are not taken
 * off: between two measures the gauge can only be too high, never too low.
 */

/* Ready steps created by this backend's transaction, added at commit. */
static uint64 backlog_pending = 0;
static bool backlog_callback = false;

/*
 * backlog_at_xact: at commit, add the transaction's new ready steps to
 * the gauge; however the transaction ends, forget them.
 */
static void
backlog_at_xact(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	if (backlog_pending != 0 && (event == XACT_EVENT_COMMIT ||
								 event == XACT_EVENT_PARALLEL_COMMIT))
		pg_atomic_fetch_add_u64(&tasker_shmem->backlog, backlog_pending);
	backlog_pending = 0;
}

/*
 * tasker_backlog_add_at_commit: n steps became ready in this transaction
 * (a new task's roots).  Counted only in the database the gauge measures.
 */
void
tasker_backlog_add_at_commit(uint64 n)
{
	if (tasker_shmem == NULL || n == 0 ||
		pg_atomic_read_u64(&tasker_shmem->backlog_measured_at) == 0)
		return;
	SpinLockAcquire(&tasker_shmem->mutex);
	if (tasker_shmem->backlog_database != MyDatabaseId)
		n = 0;
	SpinLockRelease(&tasker_shmem->mutex);
	if (n == 0)
		return;
	if (!backlog_callback)
	{
		RegisterXactCallback(backlog_at_xact, NULL);
		backlog_callback = true;
	}
	backlog_pending += n;
}

/*
 * tasker_backlog_sample_due: whether it is this process's turn to measure
 * the backlog: no measure started in the last interval_ms.  At most one
 * process in an interval gets true.
 */
bool
tasker_backlog_sample_due(int interval_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		last;

	if (tasker_shmem == NULL)
		return false;
	last = pg_atomic_read_u64(&tasker_shmem->backlog_sample_started_at);
	if (!TimestampDifferenceExceeds((TimestampTz) last, now, interval_ms))
		return false;
	return pg_atomic_compare_exchange_u64(&tasker_shmem->backlog_sample_started_at,
										  &last, (uint64) now);
}

/*
 * tasker_backlog_publish: the backlog of database db measured n ready
 * steps at a time.
 */
void
tasker_backlog_publish(Oid db, uint64 n, TimestampTz at)
{
	if (tasker_shmem == NULL)
		return;
	SpinLockAcquire(&tasker_shmem->mutex);
	tasker_shmem->backlog_database = db;
	SpinLockRelease(&tasker_shmem->mutex);
	pg_atomic_write_u64(&tasker_shmem->backlog, n);
	pg_atomic_write_u64(&tasker_shmem->backlog_measured_at, (uint64) at);
}

/*
 * tasker_backlog_read: the gauge of database db (the last measure plus
 * the ready steps created since) and when it was measured; false when
 * there is no shared memory or no measure of that database.
 */
bool
tasker_backlog_read(Oid db, uint64 *n, TimestampTz *measured_at)
{
	Oid			measured_db;

	if (tasker_shmem == NULL)
		return false;
	SpinLockAcquire(&tasker_shmem->mutex);
	measured_db = tasker_shmem->backlog_database;
	SpinLockRelease(&tasker_shmem->mutex);
	*measured_at = (TimestampTz) pg_atomic_read_u64(&tasker_shmem->backlog_measured_at);
	if (*measured_at == 0 || measured_db != db)
		return false;
	*n = pg_atomic_read_u64(&tasker_shmem->backlog);
	return true;
}
