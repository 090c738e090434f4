/*-------------------------------------------------------------------------
 *
 * task.h
 *		Task creation.
 *
 * IDENTIFICATION
 *		src/task.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_TASK_H
#define TASKER_TASK_H

#include "postgres.h"

#include "utils/array.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* The arguments of tasker_create_task, converted. */
typedef struct TaskRequest
{
	const char *name;
	Jsonb	   *context;
	const char *namespace;
	const char *version;		/* NULL: the highest semantic version */
	const char *initiator;
	const char *source_system;
	const char *reason;
	Jsonb	   *tags;			/* JSON array of strings */
	Jsonb	   *bypass_steps;	/* JSON array of strings */
	ArrayType  *bypass_steps_array; /* NULL when empty */
	TimestampTz requested_at;
	const char *identity_key;	/* NULL: no deduplication */
	int64		parent_step_id; /* a subtask's child: the step creating it */
	int32		priority;		/* higher first; 0 by default */
	const char *traceparent;	/* W3C; NULL: the context's, or a new trace */
} TaskRequest;

extern int64 tasker_create_task_internal(const TaskRequest *req);

#endif							/* TASKER_TASK_H */
