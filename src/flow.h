/*-------------------------------------------------------------------------
 *
 * flow.h
 *		The flow handler kind: the steps tasker runs itself (map fan-out,
 *		wait, subtask), and signals.
 *
 * IDENTIFICATION
 *		src/flow.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_FLOW_H
#define TASKER_FLOW_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "handler.h"

/* SQLSTATE of a wait step whose signal did not come in time. */
#define ERRCODE_TASKER_WAIT_TIMEOUT	MAKE_SQLSTATE('T','K','0','0','4')

/* The flow kind (its steps are tasker's own: map, wait, subtask). */
extern const TaskerHandlerKind tasker_flow_kind;

extern bool tasker_signal(int64 task_id, const char *signal, Jsonb *payload);

#endif							/* TASKER_FLOW_H */
