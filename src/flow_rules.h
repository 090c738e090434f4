/*-------------------------------------------------------------------------
 *
 * flow_rules.h
 *		The rules of dynamic steps (issue 10) that apply when steps
 *		finish: a decision's branches, skipping, map instances'
 *		accounting, a subtask's child task.
 *
 * step.c applies them as it records outcomes; flow.c (the flow kind)
 * applies the rules of steps becoming ready.  Everything runs in the
 * caller's transaction, SPI connected.
 *
 * IDENTIFICATION
 *		src/flow_rules.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_FLOW_RULES_H
#define TASKER_FLOW_RULES_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

extern char *tasker_decision_check(int64 step_id, Jsonb *results, List **not_chosen);
extern void tasker_skip_branches(int64 decision_step_id, List *names);
extern bool tasker_map_items_done(int64 parent_id, int n);
extern Jsonb *tasker_map_results(int64 parent_id);
extern void tasker_stop_map_items(int64 parent_id);
extern void tasker_release_map_items(int64 parent_id, int n);
extern int64 tasker_subtask_parent(int64 task_id);
extern Jsonb *tasker_task_results(int64 task_id);
extern int64 *tasker_child_tasks(int64 task_id, int *n);

#endif							/* TASKER_FLOW_RULES_H */
