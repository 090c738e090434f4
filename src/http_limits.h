/*-------------------------------------------------------------------------
 *
 * http_limits.h
 *		HTTP steps: the concurrency slots and request counters shared by
 *		all workers.
 *
 * IDENTIFICATION
 *		src/http_limits.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HTTP_LIMITS_H
#define TASKER_HTTP_LIMITS_H

#include "postgres.h"

/* The outcomes counted in shared memory, in tasker_http_stats() order. */
typedef enum HttpOutcome
{
	HTTP_OUT_2XX = 0,
	HTTP_OUT_RETRYABLE,
	HTTP_OUT_PERMANENT,
	HTTP_OUT_TIMEOUT,
	HTTP_OUT_CONNECTION,
	HTTP_OUT_LEASE_EXPIRED,
	HTTP_NUM_OUTCOMES,
	HTTP_OUT_NONE				/* not counted: the worker stopped */
} HttpOutcome;

/* shmem.c reserves and attaches the state; api.c reads the counters */
extern Size tasker_http_shmem_size(void);
extern void tasker_http_shmem_init(void);
extern int	tasker_http_stats(const char **names, uint64 *counts, int max);

extern bool http_limits_attached(void);
extern void http_count_outcome(HttpOutcome kind);
extern bool http_reserve_slot(uint32 host_hash, bool *full);
extern bool http_release_slot(uint32 host_hash);
extern int	http_free_slots(void);
extern int	http_in_flight(void);

#endif							/* TASKER_HTTP_LIMITS_H */
