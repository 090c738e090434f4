/*-------------------------------------------------------------------------
 *
 * concurrency.h
 *		Concurrency keys of tasks and caps on namespaces' steps in progress.
 *
 * IDENTIFICATION
 *		src/concurrency.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_CONCURRENCY_H
#define TASKER_CONCURRENCY_H

#include "postgres.h"

#include "utils/jsonb.h"

/* The longest rendered concurrency key, in bytes. */
#define TASKER_CONCURRENCY_KEY_MAX 1000
/* The largest cap tasker_set_namespace_limit takes. */
#define TASKER_NAMESPACE_LIMIT_MAX 100000

extern void tasker_set_task_concurrency(int64 task_id, Jsonb *concurrency,
										Jsonb *context, const char *task_name);
extern bool tasker_namespace_slots_taken(void);
extern int	tasker_namespace_excess(int32 ns_id, int nclaimed);
extern void tasker_set_namespace_limit(const char *namespace, int32 max_in_progress,
									   bool remove);

#endif							/* TASKER_CONCURRENCY_H */
