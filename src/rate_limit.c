/*-------------------------------------------------------------------------
 *
 * rate_limit.c
 *		Rate limits of steps: token buckets in shared memory, one per key
 *		(issue 11 item 4).
 *
 * Rules:
 * - A bucket is kept as the generic cell rate algorithm keeps it: one
 *   theoretical arrival time (tat) per key, over the starts that really
 *   happen.  With emission interval T = 1 / per_second and tolerance
 *   (burst - 1) * T, a step may start at now when tat - tolerance <= now,
 *   and its start moves tat to max(tat, now) + T.  So at most burst steps
 *   start at once and then one every T: in any window of W seconds, at
 *   most burst + W * per_second.
 * - A step over the rate gets a time to come back: the next free place in
 *   the key's queue (qat, which advances by T for each step sent away),
 *   never before the bucket could let it start.  The caller defers it to
 *   that time (step.c), so waiting steps come back one by one, not all at
 *   once, and nothing polls.  Coming back is not a reservation: the step
 *   asks again, so steps claimed late (their executor was busy) cannot
 *   start in a bunch.  A step that comes back and is still early (the
 *   step before it started late) waits only until the bucket lets it
 *   start, keeping its turn; a new step queues behind the waiting ones.
 * - Keys are per database, at most TASKER_RATE_KEY_MAX bytes; the table
 *   holds TASKER_RATE_BUCKETS buckets.  A bucket whose tat and qat have
 *   passed is as good as new, so its entry may be reused for another key.
 *   When every entry is in use, a step waits one second (and a warning
 *   says why) rather than run unlimited.
 * - Buckets live in shared memory and start again empty after a restart:
 *   at most one extra burst per key.  Without the preload there is no
 *   table; there are no executors either, and the claims of external
 *   workers then run unlimited (documented).
 * - A spinlock guards the table; the work under it is a probe of at most
 *   TASKER_RATE_BUCKETS entries, started at the key's hash.
 *
 * shmem.c reserves and attaches the table; step.c asks for starts.
 *
 * IDENTIFICATION
 *		src/rate_limit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "rate_limit.h"

typedef struct RateBucket
{
	Oid			database;		/* InvalidOid: never used */
	char		key[TASKER_RATE_KEY_MAX + 1];
	TimestampTz tat;			/* theoretical arrival time of the next start */
	TimestampTz qat;			/* the next time handed to a step sent away */
} RateBucket;

typedef struct RateTable
{
	slock_t		mutex;
	RateBucket	buckets[TASKER_RATE_BUCKETS];
} RateTable;

static RateTable *rate_table = NULL;

/*
 * tasker_rate_shmem_size: the bytes of the bucket table.
 */
Size
tasker_rate_shmem_size(void)
{
	return MAXALIGN(sizeof(RateTable));
}

/*
 * tasker_rate_shmem_init: create or attach to the bucket table (under
 * AddinShmemInitLock, from shmem.c).
 */
void
tasker_rate_shmem_init(void)
{
	bool		found;

	rate_table = ShmemInitStruct("tasker rate limits", sizeof(RateTable), &found);
	if (!found)
	{
		memset(rate_table, 0, sizeof(RateTable));
		SpinLockInit(&rate_table->mutex);
	}
}

/*
 * find_bucket: the bucket of (database, key), or a free or spent entry
 * made its bucket, or NULL when every entry is in use.  Under the mutex.
 */
static RateBucket *
find_bucket(const char *key, TimestampTz now)
{
	uint32		h = hash_bytes((const unsigned char *) key, strlen(key));
	RateBucket *spare = NULL;
	int			i;

	for (i = 0; i < TASKER_RATE_BUCKETS; i++)
	{
		RateBucket *b = &rate_table->buckets[(h + i) % TASKER_RATE_BUCKETS];

		if (b->database == MyDatabaseId && strcmp(b->key, key) == 0)
			return b;
		if (spare == NULL &&
			(b->database == InvalidOid || (b->tat <= now && b->qat <= now)))
			spare = b;
		if (b->database == InvalidOid)
			break;				/* the key was never stored further on */
	}
	if (spare != NULL)
	{
		spare->database = MyDatabaseId;
		strlcpy(spare->key, key, sizeof(spare->key));
		spare->tat = now;
		spare->qat = now;
	}
	return spare;
}

/*
 * tasker_rate_ask: whether a step of rate key 'key' may start at now (then
 * its start is counted): returns now; or the time it should come back
 * (see the file header).  returning: the step comes back from the queue.
 */
TimestampTz
tasker_rate_ask(const char *key, double per_second, int burst, bool returning,
				TimestampTz now)
{
	int64		interval = (int64) Max(ceil(1000000.0 / per_second), 1.0);
	int64		tolerance = interval * (int64) (Max(burst, 1) - 1);
	RateBucket *b;
	TimestampTz back;

	if (rate_table == NULL)
		return now;
	SpinLockAcquire(&rate_table->mutex);
	b = find_bucket(key, now);
	if (b == NULL)
	{
		SpinLockRelease(&rate_table->mutex);
		ereport(WARNING,
				(errmsg("tasker has no room for rate limit key \"%s\"", key),
				 errdetail("All %d rate buckets are in use.", TASKER_RATE_BUCKETS),
				 errhint("Use fewer distinct rate_limit keys; the step waits one second.")));
		return now + USECS_PER_SEC;
	}
	if (b->tat - tolerance <= now)
	{
		b->tat = Max(b->tat, now) + interval;
		SpinLockRelease(&rate_table->mutex);
		return now;
	}
	back = b->tat - tolerance;
	if (!returning)
	{
		back = Max(b->qat, back);
		b->qat = back + interval;
	}
	SpinLockRelease(&rate_table->mutex);
	return back;
}
