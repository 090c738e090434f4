/*-------------------------------------------------------------------------
 *
 * dag.h
 *		Levels and depths of the steps of one task's graph.
 *
 * IDENTIFICATION
 *		src/dag.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_DAG_H
#define TASKER_DAG_H

#include "postgres.h"

/*
 * The steps of a task with, for each, its dependency level (the longest
 * distance from a root) and its shortest distance from a root; both are -1
 * for a step that no root reaches (only a cycle can do that).
 */
typedef struct StepDepths
{
	int			n;
	int64	   *ids;			/* workflow_step_id, ascending */
	int32	   *level;
	int32	   *depth;
} StepDepths;

extern void tasker_step_depths(int64 task_id, StepDepths *out);

#endif							/* TASKER_DAG_H */
