/*-------------------------------------------------------------------------
 *
 * annotation.h
 *		Task annotations, in the Ruby engine's tables.
 *
 * IDENTIFICATION
 *		src/annotation.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_ANNOTATION_H
#define TASKER_ANNOTATION_H

#include "postgres.h"

#include "utils/jsonb.h"

extern int64 tasker_annotate_task_internal(int64 task_id, const char *type,
										   Jsonb *annotation);

#endif							/* TASKER_ANNOTATION_H */
