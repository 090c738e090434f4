/*-------------------------------------------------------------------------
 *
 * claim_wait.h
 *		Sessions waiting in tasker_claim_steps for work, woken at commit.
 *
 * IDENTIFICATION
 *		src/claim_wait.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_CLAIM_WAIT_H
#define TASKER_CLAIM_WAIT_H

#include "postgres.h"

/* Sessions that can wait at once; more poll (claim_wait.c). */
#define TASKER_CLAIM_WAITERS_MAX	256

extern Size tasker_claim_wait_shmem_size(void);
extern void tasker_claim_wait_shmem_init(void);
extern bool tasker_claim_wait_available(void);
extern int	tasker_claim_wait_register(void);
extern void tasker_claim_wait_unregister(int slot);
extern void tasker_claim_waiters_wake(void);

#endif							/* TASKER_CLAIM_WAIT_H */
