/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The one home of tasker's shared memory: one request/startup pair
 *		for every part.
 *
 * tasker keeps four parts in shared memory, each defined and used by the
 * module that owns its rules: the worker slots and latches (worker.c),
 * the HTTP concurrency slots and request counters (http_limits.c), the
 * event relay's ring (notify.c), and the latches of sessions waiting for
 * work in tasker_claim_steps (claim_wait.c).  This file reserves them all, and their
 * lock, in one shmem_request_hook, and creates or attaches them all in one
 * shmem_startup_hook; nothing else installs a hook.  The hooks are
 * installed only while the library is preloaded: without the preload
 * there is no shared state, and every part says so (tasker_workers_present
 * and its kin).  Nothing here runs in a transaction.
 *
 * IDENTIFICATION
 *		src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "claim_wait.h"
#include "handler_http.h"
#include "notify.h"
#include "shmem.h"
#include "worker.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * shmem_request: reserve every part, and the relay ring's lock.
 */
static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(add_size(add_size(tasker_worker_shmem_size(),
													  tasker_http_shmem_size()),
											 tasker_notify_shmem_size()),
									tasker_claim_wait_shmem_size()));
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
	tasker_worker_shmem_init();
	tasker_http_shmem_init();
	tasker_notify_shmem_init();
	tasker_claim_wait_shmem_init();
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
