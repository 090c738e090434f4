/*-------------------------------------------------------------------------
 *
 * trace.c
 *		W3C trace context (https://www.w3.org/TR/trace-context/): parsing
 *		and checking a traceparent, new trace ids, and the span ids of a
 *		task and of each attempt of its steps.
 *
 * A task belongs to one trace: the one its creator's traceparent names
 * (then the creator's span is the parent of the task's span), or a new
 * one tasker begins with a random trace id (then the task's span is the
 * root).  Only version 00 is accepted, written as the recommendation
 * writes it: lower-case hex, "00-<32 hex>-<16 hex>-<2 hex>", a trace id
 * and a parent id that are not all zeros.
 *
 * Span ids are derived, never stored: the first 8 bytes of the SHA-256
 * of "<trace_id>/<task_id>/<step_id>/<serial>" (step_id 0 and serial 0
 * for the task's own span), so the envelope a handler receives, the
 * events and tasker_task_spans() all name the same span without a
 * column to keep.  A step attempt's serial is the sort_key of its
 * transition to in_progress, which no later attempt of the step shares
 * (attempt numbers restart after tasker_retry_task; sort keys never do).
 * The rules that use it in SQL (the envelope in step.c, the span export in
 * the install script) call tasker_span_id(), the SQL face of
 * tasker_trace_span_id().  Nothing here touches a table: it runs in any
 * transaction, or none.
 *
 * IDENTIFICATION
 *		src/trace.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"

#include "trace.h"

#define TRACEPARENT_HINT \
	"Pass a W3C traceparent such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01, or NULL to begin a new trace."

/*
 * lower_hex: whether the n characters at s are lower-case hex digits.
 */
static bool
lower_hex(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/*
 * all_zero: whether the n characters at s are all '0'.
 */
static bool
all_zero(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (s[i] != '0')
			return false;
	return true;
}

/*
 * bad_traceparent: raise 22023 for a traceparent, with what is wrong.
 */
static void
bad_traceparent(const char *traceparent, const char *source, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the %s is not a valid W3C traceparent", source),
			 errdetail("The value given is \"%.80s\": %s.", traceparent, problem),
			 errhint(TRACEPARENT_HINT)));
}

/*
 * traceparent_problem: what is wrong with a traceparent, or NULL when it
 * is a valid one of version 00.
 */
static const char *
traceparent_problem(const char *t)
{
	size_t		len = strlen(t);

	if (len < 2 || !lower_hex(t, 2))
		return "it does not start with a version of two lower-case hex digits";
	if (strncmp(t, "00", 2) != 0)
		return "only version 00 is supported";
	if (len != TASKER_TRACEPARENT_LEN || t[2] != '-' || t[35] != '-' || t[52] != '-')
		return "version 00 has 55 characters: 00, a trace id of 32 hex digits, a parent id of 16 and flags of 2, separated by dashes";
	if (!lower_hex(t + 3, TASKER_TRACE_ID_LEN))
		return "the trace id is not 32 lower-case hex digits";
	if (all_zero(t + 3, TASKER_TRACE_ID_LEN))
		return "the trace id is all zeros";
	if (!lower_hex(t + 36, TASKER_SPAN_ID_LEN))
		return "the parent id is not 16 lower-case hex digits";
	if (all_zero(t + 36, TASKER_SPAN_ID_LEN))
		return "the parent id is all zeros";
	if (!lower_hex(t + 53, 2))
		return "the flags are not two lower-case hex digits";
	return NULL;
}

/*
 * tasker_trace_parse: check a traceparent (source names where it came
 * from, for the message) and split it into *out; raises 22023, with what
 * is wrong, for anything but a valid version-00 traceparent.
 */
void
tasker_trace_parse(const char *traceparent, const char *source, TraceContext *out)
{
	const char *problem = traceparent_problem(traceparent);

	if (problem != NULL)
		bad_traceparent(traceparent, source, problem);
	memcpy(out->trace_id, traceparent + 3, TASKER_TRACE_ID_LEN);
	out->trace_id[TASKER_TRACE_ID_LEN] = '\0';
	memcpy(out->parent_id, traceparent + 36, TASKER_SPAN_ID_LEN);
	out->parent_id[TASKER_SPAN_ID_LEN] = '\0';
	out->flags = (int) strtol(traceparent + 53, NULL, 16);
}

/*
 * tasker_trace_new: a new trace that tasker begins: a random trace id (not
 * all zeros), no parent, and the sampled flag set, so the services a step
 * calls record their part of it.
 */
void
tasker_trace_new(TraceContext *out)
{
	uint8		bytes[TASKER_TRACE_ID_LEN / 2];
	int			i;

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random trace id"),
				 errdetail("The server's source of strong random numbers failed."),
				 errhint("Pass a traceparent to tasker_create_task instead.")));
	bytes[sizeof(bytes) - 1] |= 1;	/* never all zeros */
	for (i = 0; i < (int) sizeof(bytes); i++)
		snprintf(out->trace_id + 2 * i, 3, "%02x", bytes[i]);
	out->parent_id[0] = '\0';
	out->flags = 1;
}

/*
 * tasker_trace_id_valid: whether a string is a trace id tasker stores: 32
 * lower-case hex digits, not all zeros.
 */
bool
tasker_trace_id_valid(const char *trace_id)
{
	return strlen(trace_id) == TASKER_TRACE_ID_LEN &&
		lower_hex(trace_id, TASKER_TRACE_ID_LEN) &&
		!all_zero(trace_id, TASKER_TRACE_ID_LEN);
}

/*
 * tasker_trace_span_id: the span id (16 hex digits and a NUL in out) of
 * the task's own span (step_id 0) or of the attempt of step step_id whose
 * transition to in_progress has sort_key serial: see the file header.
 * trace_id must be valid (tasker_trace_id_valid).
 */
void
tasker_trace_span_id(const char *trace_id, int64 task_id, int64 step_id,
					 int32 serial, char out[TASKER_SPAN_ID_LEN + 1])
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *input;
	int			i;

	input = psprintf("%s/" INT64_FORMAT "/" INT64_FORMAT "/%d", trace_id,
					 task_id, step_id, step_id == 0 ? 0 : serial);
	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) input, strlen(input)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute a span id: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	pfree(input);
	for (i = 0; i < TASKER_SPAN_ID_LEN / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", digest[i]);
	if (all_zero(out, TASKER_SPAN_ID_LEN))
		out[TASKER_SPAN_ID_LEN - 1] = '1';
}

/*
 * tasker_trace_span_id_checked: tasker_trace_span_id for arguments from
 * SQL: raises 22023 for a trace id that is not valid, and 22004 for a step
 * without its attempt's serial (serial_null).
 */
void
tasker_trace_span_id_checked(const char *trace_id, int64 task_id, int64 step_id,
							 bool serial_null, int32 serial,
							 char out[TASKER_SPAN_ID_LEN + 1])
{
	if (!tasker_trace_id_valid(trace_id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%.40s\" is not a W3C trace id", trace_id),
				 errdetail("A trace id is 32 lower-case hex digits, not all zeros."),
				 errhint("Pass the trace_id column of tasker_tasks.")));
	if (step_id != 0 && serial_null)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("attempt_serial must not be NULL for a step"),
				 errdetail("A step attempt's span is named by the sort_key of its transition to in_progress."),
				 errhint("Pass that sort_key, or omit step_id for the task's own span.")));
	tasker_trace_span_id(trace_id, task_id, step_id, serial, out);
}
