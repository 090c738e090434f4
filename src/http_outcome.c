/*-------------------------------------------------------------------------
 *
 * http_outcome.c
 *		HTTP steps: the outcome of a finished request, as the step
 *		lifecycle records it.
 *
 * http_outcome_of() maps a request to a StepOutcome and to the counter it
 * adds to: a 2xx completes the step with {status, headers, body,
 * elapsed_ms}; 429 and 503 retry after Retry-After (seconds or an HTTP
 * date); 400, 401, 403, 404 and 422 fail for good; any other status, a
 * timeout or a connection error retries with the normal backoff; a body
 * over tasker.http_max_response_size, or a request that could not be
 * built, fails for good.  A failure's details carry the method, the url
 * without credentials, the status, curl's error text, the first
 * HTTP_ERROR_BODY_MAX bytes of the body and the elapsed time.  Response
 * text is kept only when it is valid in the database encoding (else
 * base64); a JSON body is parsed in a subtransaction, so a bad one is
 * data, not an error.
 *
 * Runs in the worker's record transaction (the subtransaction needs one);
 * makes no decision about retries, which the lifecycle's (step.c)
 * tasker_record_failure applies to every handler kind alike.
 *
 * IDENTIFICATION
 *		src/http_outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/xact.h"
#include "common/base64.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "http_internal.h"

/* Bytes of a failed response's body kept in the step's error. */
#define HTTP_ERROR_BODY_MAX		2048

/*
 * append_text: append bytes as a JSON string when they are valid text in
 * the database encoding (up to max bytes, cut at a character boundary);
 * returns false, appending nothing, when they are not.
 */
static bool
append_text(StringInfo buf, const char *data, int len, int max)
{
	int			n = Min(len, max);
	int			valid = pg_encoding_verifymbstr(GetDatabaseEncoding(), data, n);

	if (valid < n && (n == len || valid < n - MAX_MULTIBYTE_CHAR_LEN))
		return false;
	escape_json(buf, pnstrdup(data, valid));
	return true;
}

/*
 * append_headers: the response headers as a JSON object with lower-case
 * names (the last of repeated headers wins).
 */
static void
append_headers(StringInfo buf, HttpRequest *r)
{
	char	   *copy = pstrdup(r->resp_headers.data);
	char	   *line;
	char	   *save = NULL;
	bool		first = true;

	appendStringInfoChar(buf, '{');
	for (line = strtok_r(copy, "\r\n", &save); line != NULL; line = strtok_r(NULL, "\r\n", &save))
	{
		char	   *colon = strchr(line, ':');
		char	   *value;
		StringInfoData item;

		if (colon == NULL || strncmp(line, "HTTP/", 5) == 0)
			continue;
		*colon = '\0';
		value = colon + 1 + strspn(colon + 1, " \t");
		initStringInfo(&item);
		appendStringInfoString(&item, first ? "" : ", ");
		if (!append_text(&item, asc_tolower(line, strlen(line)), strlen(line), 1024))
			continue;
		appendStringInfoString(&item, ": ");
		if (!append_text(&item, value, strlen(value), HTTP_HEADERS_MAX))
			continue;
		appendStringInfoString(buf, item.data);
		first = false;
	}
	appendStringInfoChar(buf, '}');
}

/*
 * parse_jsonb: the body parsed as jsonb, or NULL when it is not valid
 * JSON (parsed in a subtransaction, so an error is data).
 */
static Jsonb *
parse_jsonb(const char *text)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *result = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		MemoryContextSwitchTo(cxt);
		result = (Jsonb *) PG_DETOAST_DATUM_COPY(JsonbPGetDatum(result));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		result = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return result;
}

/*
 * append_body: the response body: parsed JSON when the response says it
 * is JSON and it parses, else text; "body": null plus "body_base64" when
 * it is not valid text.
 */
static void
append_body(StringInfo buf, HttpRequest *r)
{
	char	   *type = NULL;
	Jsonb	   *json = NULL;
	StringInfoData text;

	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &type);
	appendStringInfoString(buf, ", \"body\": ");
	if (r->response.len == 0)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	if (type != NULL && strstr(asc_tolower(type, strlen(type)), "json") != NULL &&
		(int) strlen(r->response.data) == r->response.len)
		json = parse_jsonb(r->response.data);
	if (json != NULL)
	{
		appendStringInfoString(buf, JsonbToCString(NULL, &json->root, VARSIZE(json)));
		return;
	}
	initStringInfo(&text);
	if ((int) strlen(r->response.data) == r->response.len &&
		append_text(&text, r->response.data, r->response.len, r->response.len))
	{
		appendStringInfoString(buf, text.data);
		return;
	}
	appendStringInfoString(buf, "null, \"body_base64\": \"");
	enlargeStringInfo(buf, pg_b64_enc_len(r->response.len) + 2);
	buf->len += pg_b64_encode(r->response.data, r->response.len, buf->data + buf->len,
							  pg_b64_enc_len(r->response.len));
	buf->data[buf->len] = '\0';
	appendStringInfoChar(buf, '"');
}

/*
 * elapsed_ms: milliseconds since the request started.
 */
static double
elapsed_ms(HttpRequest *r)
{
	return (double) (GetCurrentTimestamp() - r->started) / 1000.0;
}

/*
 * success_results: {status, headers, body, elapsed_ms} of a 2xx response.
 */
static Jsonb *
success_results(HttpRequest *r, long status)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"status\": %ld, \"headers\": ", status);
	append_headers(&buf, r);
	append_body(&buf, r);
	appendStringInfo(&buf, ", \"elapsed_ms\": %.1f}", elapsed_ms(r));
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * failure_details: what the stored error adds for an HTTP failure: method,
 * url (without credentials), status, the client's error text, the first
 * 2 kB of the body, elapsed_ms and retry_after.
 */
static Jsonb *
failure_details(HttpRequest *r, long status, int retry_after)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"method\": ");
	escape_json(&buf, r->method);
	if (r->safe_url != NULL)
	{
		appendStringInfoString(&buf, ", \"url\": ");
		escape_json(&buf, r->safe_url);
	}
	if (status > 0)
		appendStringInfo(&buf, ", \"status\": %ld", status);
	if (r->done && r->result != CURLE_OK && !r->too_large)
	{
		appendStringInfoString(&buf, ", \"curl_error\": ");
		escape_json(&buf, r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result));
	}
	if (r->response.len > 0 && !r->too_large)
	{
		StringInfoData body;

		initStringInfo(&body);
		if (append_text(&body, r->response.data, r->response.len, HTTP_ERROR_BODY_MAX))
			appendStringInfo(&buf, ", \"body\": %s", body.data);
	}
	if (retry_after >= 0)
		appendStringInfo(&buf, ", \"retry_after\": %d", retry_after);
	if (r->started != 0)
		appendStringInfo(&buf, ", \"elapsed_ms\": %.1f", elapsed_ms(r));
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * retry_after: the Retry-After header in seconds (a number, or an HTTP
 * date turned into seconds from now), or -1 without a usable one.
 */
static int
retry_after(HttpRequest *r)
{
	char	   *copy = pstrdup(r->resp_headers.data);
	char	   *line;
	char	   *save = NULL;

	for (line = strtok_r(copy, "\r\n", &save); line != NULL; line = strtok_r(NULL, "\r\n", &save))
	{
		char	   *value;
		time_t		when;

		if (pg_strncasecmp(line, "retry-after:", 12) != 0)
			continue;
		value = line + 12 + strspn(line + 12, " \t");
		if (value[0] >= '0' && value[0] <= '9' && strspn(value, "0123456789") < 9)
			return atoi(value);
		when = curl_getdate(value, NULL);
		if (when != (time_t) -1)
			return (int) Min(Max((int64) (when - time(NULL)), 0), (int64) 86400 * 365);
	}
	return -1;
}

/*
 * http_fail: fill a failure outcome.
 */
HttpOutcome
http_fail(StepOutcome *o, HttpOutcome kind, char *message, const char *detail,
	 const char *hint)
{
	o->ok = false;
	o->permanent = (kind == HTTP_OUT_PERMANENT);
	o->sqlstate = o->permanent ? "TK001" : "TK002";
	o->message = message;
	o->detail = detail ? pstrdup(detail) : NULL;
	o->hint = hint ? pstrdup(hint) : NULL;
	return kind;
}

/*
 * status_outcome: the outcome of a response: 2xx completes; 429 and 503
 * retry after Retry-After; 400, 401, 403, 404 and 422 are permanent; any
 * other status retries with the normal backoff.
 */
static HttpOutcome
status_outcome(HttpRequest *r, long status, StepOutcome *o)
{
	char	   *what = psprintf("%s %s answered HTTP %ld", r->method,
								r->safe_url, status);

	if (status >= 200 && status < 300)
	{
		o->ok = true;
		o->results = success_results(r, status);
		return HTTP_OUT_2XX;
	}
	if (status == 429 || status == 503)
	{
		o->retry_after = retry_after(r);
		o->details = failure_details(r, status, o->retry_after);
		return http_fail(o, HTTP_OUT_RETRYABLE, what,
					"The service asked to be called again later.", NULL);
	}
	o->details = failure_details(r, status, -1);
	if (status == 400 || status == 401 || status == 403 || status == 404 || status == 422)
		return http_fail(o, HTTP_OUT_PERMANENT, what,
					"Statuses 400, 401, 403, 404 and 422 fail the step without a retry.",
					"Fix the request or the service, then retry the task with tasker_retry_task.");
	return http_fail(o, HTTP_OUT_RETRYABLE, what, NULL, NULL);
}

/*
 * http_outcome_of: the outcome of a finished request (or, when it is still in
 * flight, of one the worker gives up because it is stopping).
 */
HttpOutcome
http_outcome_of(HttpRequest *r, StepOutcome *o)
{
	long		status = 0;

	memset(o, 0, sizeof(*o));
	o->retry_after = -1;
	if (!r->done)
	{
		o->details = failure_details(r, 0, -1);
		http_fail(o, HTTP_OUT_NONE, psprintf("the tasker worker stopped while %s %s was in flight",
										r->method, r->safe_url),
			 "The request may or may not have reached the service; the attempt counts.", NULL);
		return HTTP_OUT_NONE;
	}
	if (r->failure != NULL)
	{
		o->details = failure_details(r, 0, -1);
		return http_fail(o, HTTP_OUT_PERMANENT, r->failure, NULL, r->failure_hint);
	}
	if (r->too_large)
	{
		o->details = failure_details(r, 0, -1);
		return http_fail(o, HTTP_OUT_PERMANENT,
					psprintf("the response of %s %s is larger than tasker.http_max_response_size (%d kB)",
							 r->method, r->safe_url, tasker_http_max_response_size),
					"The body was not kept; tasker never cuts a body short.",
					"Raise tasker.http_max_response_size, then retry the task with tasker_retry_task.");
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (r->result != CURLE_OK)
	{
		o->details = failure_details(r, status, -1);
		if (r->result == CURLE_OPERATION_TIMEDOUT)
			return http_fail(o, HTTP_OUT_TIMEOUT,
						psprintf("%s %s timed out after %d s", r->method, r->safe_url, r->timeout_s),
						NULL, "Raise timeout in the step's handler_config if the service is slow.");
		return http_fail(o, HTTP_OUT_CONNECTION,
					psprintf("%s %s failed: %s", r->method, r->safe_url,
							 r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result)),
					NULL, NULL);
	}
	return status_outcome(r, status, o);
}
