/*-------------------------------------------------------------------------
 *
 * trace.h
 *		W3C trace context: traceparent values, trace ids and the span ids
 *		of tasks and step attempts.
 *
 * IDENTIFICATION
 *		src/trace.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_TRACE_H
#define TASKER_TRACE_H

#include "postgres.h"

/* Lengths, in hex digits, of the parts of a traceparent (version 00). */
#define TASKER_TRACE_ID_LEN 32
#define TASKER_SPAN_ID_LEN 16
#define TASKER_TRACEPARENT_LEN 55

/* A task's place in a trace. */
typedef struct TraceContext
{
	char		trace_id[TASKER_TRACE_ID_LEN + 1];	/* lower-case hex */
	char		parent_id[TASKER_SPAN_ID_LEN + 1];	/* "" when tasker began
													 * the trace */
	int			flags;			/* trace-flags, 0 to 255 */
} TraceContext;

extern void tasker_trace_parse(const char *traceparent, const char *source,
							   TraceContext *out);
extern void tasker_trace_new(TraceContext *out);
extern bool tasker_trace_id_valid(const char *trace_id);
extern void tasker_trace_span_id(const char *trace_id, int64 task_id,
								 int64 step_id, int32 serial,
								 char out[TASKER_SPAN_ID_LEN + 1]);
extern void tasker_trace_span_id_checked(const char *trace_id, int64 task_id,
										 int64 step_id, bool serial_null,
										 int32 serial,
										 char out[TASKER_SPAN_ID_LEN + 1]);

#endif							/* TASKER_TRACE_H */
