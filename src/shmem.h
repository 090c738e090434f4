/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		The one home of tasker's shared memory.
 *
 * IDENTIFICATION
 *		src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SHMEM_H
#define TASKER_SHMEM_H

#include "postgres.h"

extern void tasker_shmem_register(void);

#endif							/* TASKER_SHMEM_H */
