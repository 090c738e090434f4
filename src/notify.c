/*-------------------------------------------------------------------------
 *
 * notify.c
 *		The event relay: transactions hand their events to one process that
 *		sends them with NOTIFY, so that no commit waits for another's.
 *
 * A transaction that NOTIFYs takes a lock at commit that PostgreSQL holds
 * across the commit's WAL flush, so every such transaction in the server
 * commits one at a time.  tasker's events therefore do not NOTIFY from the
 * transaction that makes them.  Each event is kept in the transaction's
 * memory (dropped with a subtransaction that rolls back); at pre-commit the
 * transaction reserves room for them in a ring in shared memory, at commit
 * it copies them in and sets the relay's latch, and on abort it gives the
 * room back.  The relay (a background worker connected to
 * tasker.database_name) takes the events out in order and sends them on
 * the tasker_events channel, in batches, each batch one transaction of its
 * own.  A listener thus hears of a transition only after it committed,
 * never of one that rolled back, with the same payloads as before and in
 * the order the transactions committed.
 *
 * Without the workers, in another database than tasker.database_name, or
 * when the ring is full at pre-commit, a transaction notifies directly,
 * as before.  Either way, at pre-commit the transaction first appends its
 * events to the durable event log (event_log.c), which gives each its
 * "event_id"; the payloads sent carry it.  The payloads are events.c's;
 * this file only carries them, and calls no tasker module but event_log.c,
 * guc.c and bgw.c.  Events in the ring when the server stops (or crashes)
 * are not notified, as notifications are lost: NOTIFY is not a durable
 * channel, the event log is.
 *
 * IDENTIFICATION
 *		src/notify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "bgw.h"
#include "event_log.h"
#include "guc.h"
#include "notify.h"

/* Bytes of events the ring holds. */
#define RING_SIZE (4 * 1024 * 1024)

/* The shared ring: records of a uint32 length and the payload's bytes. */
typedef struct NotifyRing
{
	LWLock	   *lock;
	Latch	   *relay_latch;	/* NULL while no relay runs */
	uint64		head;			/* next byte to read, ever-growing */
	uint64		tail;			/* next byte to write, ever-growing */
	uint64		reserved;		/* bytes promised to committing transactions */
	char		data[RING_SIZE];
} NotifyRing;

/* An event kept by the current transaction until it ends. */
typedef struct PendingEvent
{
	dlist_node	node;
	int			nest;			/* subtransaction level that made it */
	uint32		len;
	char		payload[FLEXIBLE_ARRAY_MEMBER];
} PendingEvent;

static NotifyRing *ring = NULL;

static dlist_head pending = DLIST_STATIC_INIT(pending);
static uint64 pending_bytes = 0;
static uint64 my_reservation = 0;
static bool callbacks_registered = false;
static int	use_ring_here = -1; /* -1 unknown, 0 no, 1 yes */

PGDLLEXPORT void tasker_relay_main(Datum arg);

/*
 * tasker_notify_shmem_size: the bytes of the ring (shmem.c reserves
 * them, and the ring's lock).
 */
Size
tasker_notify_shmem_size(void)
{
	return MAXALIGN(sizeof(NotifyRing));
}

/*
 * tasker_notify_shmem_init: create or attach to the ring; called by
 * shmem.c with AddinShmemInitLock held.
 */
void
tasker_notify_shmem_init(void)
{
	bool		found;

	ring = ShmemInitStruct("tasker_notify", sizeof(NotifyRing), &found);
	if (!found)
	{
		ring->lock = &(GetNamedLWLockTranche(TASKER_NOTIFY_TRANCHE))->lock;
		ring->relay_latch = NULL;
		ring->head = ring->tail = ring->reserved = 0;
	}
}

/*
 * tasker_notify_register: while preloading, register the relay.
 */
void
tasker_notify_register(void)
{
	BackgroundWorker worker;

	tasker_describe_bgworker(&worker, "tasker_relay_main", "tasker event relay",
							 "tasker event relay", 1);
	RegisterBackgroundWorker(&worker);
}

/*
 * ring_here: whether this backend's events go through the ring: the relay
 * runs and serves this database.
 */
static bool
ring_here(void)
{
	if (ring == NULL || ring->relay_latch == NULL)
		return false;
	if (use_ring_here < 0)
	{
		char	   *db = get_database_name(MyDatabaseId);

		use_ring_here = (db != NULL && strcmp(db, tasker_database_name) == 0) ? 1 : 0;
	}
	return use_ring_here == 1;
}

/*
 * drop_pending: forget the events of subtransaction levels from nest up.
 */
static void
drop_pending(int nest)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &pending)
	{
		PendingEvent *e = dlist_container(PendingEvent, node, it.cur);

		if (e->nest >= nest)
		{
			dlist_delete(&e->node);
			pending_bytes -= sizeof(uint32) + e->len;
			pfree(e);
		}
	}
}

/*
 * notify_directly: send the pending events the classic way, from this
 * transaction, and forget them.
 */
static void
notify_directly(void)
{
	dlist_iter	it;

	dlist_foreach(it, &pending)
	{
		PendingEvent *e = dlist_container(PendingEvent, node, it.cur);

		Async_Notify(TASKER_EVENTS_CHANNEL, e->payload);
	}
	drop_pending(0);
}

/*
 * reserve: promise room in the ring for the pending events; false when it
 * has none.
 */
static bool
reserve(void)
{
	bool		ok;

	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ok = ring->relay_latch != NULL &&
		ring->tail - ring->head + ring->reserved + pending_bytes <= RING_SIZE;
	if (ok)
		ring->reserved += pending_bytes;
	LWLockRelease(ring->lock);
	if (ok)
		my_reservation = pending_bytes;
	return ok;
}

/*
 * ring_write: copy n bytes into the ring at position at (wrapping).
 */
static void
ring_write(uint64 at, const char *src, Size n)
{
	Size		off = at % RING_SIZE;
	Size		first = Min(n, RING_SIZE - off);

	memcpy(ring->data + off, src, first);
	if (first < n)
		memcpy(ring->data, src + first, n - first);
}

/*
 * ring_read: copy n bytes out of the ring from position at (wrapping).
 */
static void
ring_read(uint64 at, char *dst, Size n)
{
	Size		off = at % RING_SIZE;
	Size		first = Min(n, RING_SIZE - off);

	memcpy(dst, ring->data + off, first);
	if (first < n)
		memcpy(dst + first, ring->data, n - first);
}

/*
 * hand_over: after commit, put the pending events into the room reserved
 * for them and wake the relay.
 */
static void
hand_over(void)
{
	dlist_iter	it;
	Latch	   *latch;

	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	dlist_foreach(it, &pending)
	{
		PendingEvent *e = dlist_container(PendingEvent, node, it.cur);

		ring_write(ring->tail, (const char *) &e->len, sizeof(uint32));
		ring_write(ring->tail + sizeof(uint32), e->payload, e->len);
		ring->tail += sizeof(uint32) + e->len;
	}
	ring->reserved -= my_reservation;
	latch = ring->relay_latch;
	LWLockRelease(ring->lock);
	my_reservation = 0;
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * give_back: an aborted transaction's reservation returns to the ring.
 */
static void
give_back(void)
{
	if (my_reservation == 0)
		return;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->reserved -= my_reservation;
	LWLockRelease(ring->lock);
	my_reservation = 0;
}

/*
 * new_pending: a pending event of this transaction, at nest level nest.
 */
static PendingEvent *
new_pending(const char *payload, int nest)
{
	uint32		len = strlen(payload) + 1;
	PendingEvent *e;

	e = MemoryContextAlloc(TopTransactionContext, offsetof(PendingEvent, payload) + len);
	e->nest = nest;
	e->len = len;
	memcpy(e->payload, payload, len);
	return e;
}

/*
 * log_pending: append the pending events to the event log; they are then
 * sent as logged, with their "event_id".
 */
static void
log_pending(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	int			n = 0;
	char	  **payloads;
	char	  **logged;
	dlist_iter	it;
	int			i;

	dlist_foreach(it, &pending)
		n++;
	payloads = palloc(sizeof(char *) * n);
	n = 0;
	dlist_foreach(it, &pending)
		payloads[n++] = dlist_container(PendingEvent, node, it.cur)->payload;
	logged = tasker_event_log_append(payloads, n);
	if (logged != payloads)
	{
		dlist_init(&pending);
		pending_bytes = 0;
		for (i = 0; i < n; i++)
		{
			PendingEvent *e = new_pending(logged[i], 1);

			dlist_push_tail(&pending, &e->node);
			pending_bytes += sizeof(uint32) + e->len;
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * at_xact_event: log the transaction's events at pre-commit and route
 * them; at its end, let the log know.
 */
static void
at_xact_event(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (dlist_is_empty(&pending))
				break;
			log_pending();
			if (!ring_here() || !reserve())
				notify_directly();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (!dlist_is_empty(&pending))
				notify_directly();	/* PREPARE then refuses, as for NOTIFY */
			break;
		case XACT_EVENT_COMMIT:
			if (my_reservation > 0)
				hand_over();
			dlist_init(&pending);	/* its memory goes with the transaction */
			pending_bytes = 0;
			tasker_event_log_end_xact(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			give_back();
			dlist_init(&pending);
			pending_bytes = 0;
			tasker_event_log_end_xact(false);
			break;
		default:
			break;
	}
}

/*
 * at_subxact_event: a subtransaction that rolls back takes its events
 * with it; one that commits hands them to its parent.
 */
static void
at_subxact_event(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			nest = GetCurrentTransactionNestLevel();
	dlist_iter	it;

	if (event == SUBXACT_EVENT_ABORT_SUB)
		drop_pending(nest);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		dlist_foreach(it, &pending)
		{
			PendingEvent *e = dlist_container(PendingEvent, node, it.cur);

			if (e->nest >= nest)
				e->nest = nest - 1;
		}
}

/*
 * tasker_queue_event: log an event and send it on the tasker_events
 * channel when the current transaction commits: through the relay where
 * it runs, else directly.
 */
void
tasker_queue_event(const char *payload)
{
	PendingEvent *e;

	if (!callbacks_registered)
	{
		RegisterXactCallback(at_xact_event, NULL);
		RegisterSubXactCallback(at_subxact_event, NULL);
		callbacks_registered = true;
	}
	e = new_pending(payload, GetCurrentTransactionNestLevel());
	dlist_push_tail(&pending, &e->node);
	pending_bytes += sizeof(uint32) + e->len;
}

/*
 * take_batch: copy up to max bytes of events out of the ring into buf;
 * returns the bytes taken (whole records only).
 */
static Size
take_batch(char *buf, Size max)
{
	Size		n = 0;
	uint32		len;

	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	while (ring->head < ring->tail)
	{
		ring_read(ring->head, (char *) &len, sizeof(uint32));
		if (n + sizeof(uint32) + len > max)
			break;
		memcpy(buf + n, &len, sizeof(uint32));
		ring_read(ring->head + sizeof(uint32), buf + n + sizeof(uint32), len);
		n += sizeof(uint32) + len;
		ring->head += sizeof(uint32) + len;
	}
	LWLockRelease(ring->lock);
	return n;
}

/*
 * relay_batch: send one batch of events in a transaction of the relay's
 * own; returns whether there was any.  The transaction changes nothing,
 * so its commit need not wait for a WAL flush.
 */
static bool
relay_batch(char *buf, Size max)
{
	Size		n = take_batch(buf, max);
	Size		at = 0;

	if (n == 0)
		return false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	while (at < n)
	{
		uint32		len;

		memcpy(&len, buf + at, sizeof(uint32));
		Async_Notify(TASKER_EVENTS_CHANNEL, buf + at + sizeof(uint32));
		at += sizeof(uint32) + len;
	}
	CommitTransactionCommand();
	return true;
}

/*
 * relay_detach: on exit, stop taking events (transactions notify
 * directly until a relay runs again).
 */
static void
relay_detach(int code, Datum arg)
{
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->relay_latch = NULL;
	LWLockRelease(ring->lock);
}

/*
 * ring_empty: whether the ring holds no event.
 */
static bool
ring_empty(void)
{
	bool		empty;

	LWLockAcquire(ring->lock, LW_SHARED);
	empty = (ring->head == ring->tail);
	LWLockRelease(ring->lock);
	return empty;
}

/*
 * relay_wait: sleep until the latch is set or a second passes, absorbing
 * interrupts (and so the barriers DROP DATABASE waits for).
 */
static void
relay_wait(void)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1000, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * tasker_relay_main: the relay's loop.  It offers the ring at once, but
 * connects to tasker.database_name only once the ring holds an event
 * (which a transaction in that database put there, so it exists); then it
 * sends what the ring holds each time its latch is set.
 */
void
tasker_relay_main(Datum arg)
{
	Size		max = RING_SIZE / 4;
	char	   *buf;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	buf = MemoryContextAlloc(TopMemoryContext, max);
	before_shmem_exit(relay_detach, (Datum) 0);
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->relay_latch = MyLatch;
	LWLockRelease(ring->lock);
	while (ring_empty())
		relay_wait();
	BackgroundWorkerInitializeConnection(tasker_database_name, NULL, 0);
	pgstat_report_appname("tasker event relay");
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	for (;;)
	{
		while (relay_batch(buf, max))
			CHECK_FOR_INTERRUPTS();
		relay_wait();
		if (tasker_database_wanted())
		{
			/* DROP or ALTER DATABASE waits for us: send what is left, go. */
			while (relay_batch(buf, max))
				CHECK_FOR_INTERRUPTS();
			proc_exit(1);
		}
	}
}
