/*-------------------------------------------------------------------------
 *
 * claim_wait.c
 *		Sessions waiting in tasker_claim_steps for work, woken at commit.
 *
 * An external worker's claim with a wait (handler_worker.c) that finds
 * nothing registers its process latch in a slot here and sleeps on it.
 * Every commit that may have made steps ready (a task created, steps
 * completed, a retry or a release, a control) wakes the executors and
 * these sessions together (events.c, at commit), so a waiting claim
 * returns within moments of the commit that readied a step, without
 * polling.  Waiters are not told which queue got work: each looks again
 * and sleeps again if nothing of its queue is there.  The slots live in
 * shared memory (reserved by shmem.c); without the preload, or when every
 * slot is taken, a waiting claim polls instead (every 50 ms).  Nothing
 * here runs SQL; the slot array is guarded by a spinlock, held only to
 * take or free a slot and to copy the latches out.
 *
 * IDENTIFICATION
 *		src/claim_wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "claim_wait.h"

typedef struct ClaimWaiters
{
	slock_t		mutex;
	Latch	   *latches[TASKER_CLAIM_WAITERS_MAX];	/* NULL: free */
} ClaimWaiters;

static ClaimWaiters *waiters = NULL;

/*
 * tasker_claim_wait_shmem_size: the shared memory the slots need.
 */
Size
tasker_claim_wait_shmem_size(void)
{
	return MAXALIGN(sizeof(ClaimWaiters));
}

/*
 * tasker_claim_wait_shmem_init: create or attach to the slots (the caller
 * holds AddinShmemInitLock).
 */
void
tasker_claim_wait_shmem_init(void)
{
	bool		found;

	waiters = ShmemInitStruct("tasker claim waiters", sizeof(ClaimWaiters), &found);
	if (!found)
	{
		SpinLockInit(&waiters->mutex);
		memset(waiters->latches, 0, sizeof(waiters->latches));
	}
}

/*
 * tasker_claim_wait_available: whether waiting sessions can be woken
 * (the library was preloaded).
 */
bool
tasker_claim_wait_available(void)
{
	return waiters != NULL;
}

/*
 * tasker_claim_wait_register: take a slot for this session's latch;
 * returns it, or -1 when none is free (the caller polls).
 */
int
tasker_claim_wait_register(void)
{
	int			i;
	int			slot = -1;

	if (waiters == NULL)
		return -1;
	SpinLockAcquire(&waiters->mutex);
	for (i = 0; i < TASKER_CLAIM_WAITERS_MAX && slot < 0; i++)
		if (waiters->latches[i] == NULL)
		{
			waiters->latches[i] = MyLatch;
			slot = i;
		}
	SpinLockRelease(&waiters->mutex);
	return slot;
}

/*
 * tasker_claim_wait_unregister: free a slot taken by this session.
 */
void
tasker_claim_wait_unregister(int slot)
{
	if (waiters == NULL || slot < 0 || slot >= TASKER_CLAIM_WAITERS_MAX)
		return;
	SpinLockAcquire(&waiters->mutex);
	if (waiters->latches[slot] == MyLatch)
		waiters->latches[slot] = NULL;
	SpinLockRelease(&waiters->mutex);
}

/*
 * tasker_claim_waiters_wake: set the latch of every waiting session.
 */
void
tasker_claim_waiters_wake(void)
{
	Latch	   *latches[TASKER_CLAIM_WAITERS_MAX];
	int			n = 0;
	int			i;

	if (waiters == NULL)
		return;
	SpinLockAcquire(&waiters->mutex);
	for (i = 0; i < TASKER_CLAIM_WAITERS_MAX; i++)
		if (waiters->latches[i] != NULL)
			latches[n++] = waiters->latches[i];
	SpinLockRelease(&waiters->mutex);
	for (i = 0; i < n; i++)
		SetLatch(latches[i]);
}
