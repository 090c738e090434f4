/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The tasker launcher and executor background workers.
 *
 * IDENTIFICATION
 *		src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_WORKER_H
#define TASKER_WORKER_H

#include "postgres.h"

extern void tasker_worker_register(void);

#endif							/* TASKER_WORKER_H */
