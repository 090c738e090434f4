/*-------------------------------------------------------------------------
 *
 * http_limits.c
 *		HTTP steps: the concurrency limits and the request counters, in
 *		shared memory.
 *
 * The limits tasker.http_max_concurrency and tasker.http_max_per_host hold
 * over all workers: a worker reserves a slot, and one of the host's (hosts
 * are counted by a hash of their lower-case name, in a table of
 * HTTP_HOST_SLOTS), before it claims a step, and gives both back when the
 * request is recorded or aborted, or from an exit callback when the worker
 * exits (http_multi.c); a crash resets shared memory instead.  A worker
 * refused a slot marks the state starved, so that the next release wakes
 * the workers.  The counters of requests by outcome live here too, read
 * by tasker_http_stats() from any backend.
 *
 * This file owns the struct; shmem.c reserves and attaches it with the
 * rest of tasker's shared state.  Nothing here runs
 * in a transaction or touches curl; a spinlock guards the slots and the
 * counters are atomics.
 *
 * IDENTIFICATION
 *		src/http_limits.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "guc.h"
#include "http_limits.h"

/* Distinct hosts in flight at once, over all workers. */
#define HTTP_HOST_SLOTS			256

static const char *const outcome_names[HTTP_NUM_OUTCOMES] = {
	"2xx", "retryable", "permanent", "timeout", "connection_error",
	"lease_expired"
};

typedef struct HttpHostCount
{
	uint32		hash;
	int32		count;			/* 0: free */
} HttpHostCount;

typedef struct HttpShared
{
	slock_t		mutex;
	int32		in_flight;
	bool		starved;		/* someone was refused a slot */
	HttpHostCount hosts[HTTP_HOST_SLOTS];
	pg_atomic_uint64 requests[HTTP_NUM_OUTCOMES];
} HttpShared;

static HttpShared *http_shared = NULL;
/*
 * tasker_http_shmem_size: the bytes of the HTTP state (shmem.c reserves
 * them).
 */
Size
tasker_http_shmem_size(void)
{
	return MAXALIGN(sizeof(HttpShared));
}

/*
 * tasker_http_shmem_init: create or attach to the shared counters; called
 * by shmem.c with AddinShmemInitLock held.
 */
void
tasker_http_shmem_init(void)
{
	bool		found;
	int			i;

	http_shared = ShmemInitStruct("tasker http", sizeof(HttpShared), &found);
	if (!found)
	{
		memset(http_shared, 0, sizeof(HttpShared));
		SpinLockInit(&http_shared->mutex);
		for (i = 0; i < HTTP_NUM_OUTCOMES; i++)
			pg_atomic_init_u64(&http_shared->requests[i], 0);
	}
}

/*
 * http_limits_attached: whether this process has the shared state (the
 * library was preloaded).
 */
bool
http_limits_attached(void)
{
	return http_shared != NULL;
}

/*
 * tasker_http_stats: copy the counters of requests by outcome; returns how
 * many (all zero without the preload).
 */
int
tasker_http_stats(const char **names, uint64 *counts, int max)
{
	int			i;

	for (i = 0; i < HTTP_NUM_OUTCOMES && i < max; i++)
	{
		names[i] = outcome_names[i];
		counts[i] = http_shared ? pg_atomic_read_u64(&http_shared->requests[i]) : 0;
	}
	return i;
}

/*
 * http_count_outcome: add one request to the counter of its outcome.
 */
void
http_count_outcome(HttpOutcome kind)
{
	if (http_shared != NULL && kind < HTTP_NUM_OUTCOMES)
		pg_atomic_fetch_add_u64(&http_shared->requests[kind], 1);
}

/*
 * http_reserve_slot: take one in-flight slot, and one of the host, unless
 * a limit is reached.  *full is set when the global limit is the reason.
 */
bool
http_reserve_slot(uint32 host_hash, bool *full)
{
	HttpHostCount *slot = NULL;
	int			i;
	bool		ok = false;

	SpinLockAcquire(&http_shared->mutex);
	*full = http_shared->in_flight >= tasker_http_max_concurrency;
	for (i = 0; i < HTTP_HOST_SLOTS && !*full; i++)
	{
		HttpHostCount *h = &http_shared->hosts[i];

		if (h->count > 0 && h->hash == host_hash)
		{
			slot = h;
			break;
		}
		if (h->count == 0 && slot == NULL)
			slot = h;
	}
	if (slot != NULL && (slot->count == 0 || slot->count < tasker_http_max_per_host))
	{
		slot->hash = host_hash;
		slot->count++;
		http_shared->in_flight++;
		ok = true;
	}
	else
		http_shared->starved = true;
	SpinLockRelease(&http_shared->mutex);
	return ok;
}

/*
 * http_release_slot: give back a reservation.  Returns whether some worker
 * was refused a slot since the last release, and so should be woken.
 */
bool
http_release_slot(uint32 host_hash)
{
	bool		starved;
	int			i;

	SpinLockAcquire(&http_shared->mutex);
	for (i = 0; i < HTTP_HOST_SLOTS; i++)
		if (http_shared->hosts[i].count > 0 && http_shared->hosts[i].hash == host_hash)
		{
			http_shared->hosts[i].count--;
			break;
		}
	if (http_shared->in_flight > 0)
		http_shared->in_flight--;
	starved = http_shared->starved;
	http_shared->starved = false;
	SpinLockRelease(&http_shared->mutex);
	return starved;
}

/*
 * http_free_slots: how many more requests may start now.
 */
int
http_free_slots(void)
{
	int			n;

	if (http_shared == NULL)
		return 0;
	SpinLockAcquire(&http_shared->mutex);
	n = tasker_http_max_concurrency - http_shared->in_flight;
	SpinLockRelease(&http_shared->mutex);
	return Max(n, 0);
}

/*
 * http_in_flight: how many requests the executors have in flight now (0
 * without the preload).
 */
int
http_in_flight(void)
{
	int			n;

	if (http_shared == NULL)
		return 0;
	SpinLockAcquire(&http_shared->mutex);
	n = http_shared->in_flight;
	SpinLockRelease(&http_shared->mutex);
	return n;
}
