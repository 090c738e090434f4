/*-------------------------------------------------------------------------
 *
 * rate_limit.h
 *		Rate limits of steps: token buckets in shared memory.
 *
 * IDENTIFICATION
 *		src/rate_limit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_RATE_LIMIT_H
#define TASKER_RATE_LIMIT_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "yaml_reader.h"

/* The longest rate limit key, in bytes, and how many buckets there are. */
#define TASKER_RATE_KEY_MAX TEMPLATE_RATE_KEY_MAX
#define TASKER_RATE_BUCKETS TEMPLATE_RATE_BUCKETS

extern Size tasker_rate_shmem_size(void);
extern void tasker_rate_shmem_init(void);
extern TimestampTz tasker_rate_ask(const char *key, double per_second,
								   int burst, bool returning, TimestampTz now);

#endif							/* TASKER_RATE_LIMIT_H */
