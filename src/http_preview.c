/*-------------------------------------------------------------------------
 *
 * http_preview.c
 *		HTTP steps: tasker_http_preview, the request a step would send
 *		now, built and shown but not sent.
 *
 * The step is read with the claim's own SQL (tasker_read_step in
 * step.c: the same envelope, attempt count and timeout a worker's
 * claim copies) and its request is built by http_request_prepare, the
 * code that builds the requests the workers send; so the method, url,
 * headers and body shown are those a claim made now would send (the
 * X-Tasker-Attempt header counts the next attempt).  A request that
 * cannot be built is shown as the permanent failure the step would get.
 *
 * Credentials are masked, here and only here: the user and password of
 * the url, the values of query parameters and headers whose names mark
 * them as secrets (Authorization and Proxy-Authorization keep their
 * scheme word, as in "Bearer ***"; Cookie; names containing auth, token,
 * secret, passw, cookie, session, credential or signature; names ending
 * in key, except Idempotency-Key).  The body is shown as it would be sent.
 *
 * Runs in the caller's transaction, inside an API scope (as the
 * extension's owner, after api.c checked that the caller may control the
 * step's task); reads, locks nothing, sends nothing.
 *
 * IDENTIFICATION
 *		src/http_preview.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "handler_http.h"
#include "http_internal.h"
#include "step.h"

#define MASK	"***"

/* Parts of a header name that mark its value as a secret. */
static const char *const secret_words[] = {
	"auth", "token", "secret", "passw", "cookie", "session", "credential",
	"signature", NULL
};

/*
 * secret_name: whether a header or query parameter name marks its value
 * as a credential.
 */
static bool
secret_name(const char *name)
{
	char	   *lower = asc_tolower(name, strlen(name));
	size_t		len = strlen(lower);
	int			i;

	for (i = 0; secret_words[i] != NULL; i++)
		if (strstr(lower, secret_words[i]) != NULL)
			return true;
	return len >= 3 && strcmp(lower + len - 3, "key") == 0 &&
		strcmp(lower, "idempotency-key") != 0;
}

/*
 * masked_value: the value of a header as shown: masked when its name is
 * a secret's; an Authorization keeps its scheme ("Bearer ***").
 */
static const char *
masked_value(const char *name, const char *value)
{
	const char *space = strchr(value, ' ');

	if (!secret_name(name))
		return value;
	if ((pg_strcasecmp(name, "Authorization") == 0 ||
		 pg_strcasecmp(name, "Proxy-Authorization") == 0) && space != NULL)
		return psprintf("%.*s " MASK, (int) (space - value), value);
	return MASK;
}

/*
 * masked_query: a query string with the values of secret parameters
 * masked.
 */
static char *
masked_query(const char *query)
{
	StringInfoData buf;
	char	   *copy = pstrdup(query);
	char	   *save = NULL;
	char	   *item;

	initStringInfo(&buf);
	for (item = strtok_r(copy, "&", &save); item != NULL; item = strtok_r(NULL, "&", &save))
	{
		char	   *eq = strchr(item, '=');

		if (buf.len > 0)
			appendStringInfoChar(&buf, '&');
		if (eq != NULL)
			*eq = '\0';
		appendStringInfoString(&buf, item);
		if (eq != NULL)
			appendStringInfo(&buf, "=%s", secret_name(item) ? MASK : eq + 1);
	}
	return buf.data;
}

/*
 * masked_url: url with its user, password and secret query parameters
 * masked.
 */
static char *
masked_url(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *part = NULL;
	char	   *out = NULL;
	char	   *result;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		elog(ERROR, "could not parse the url of a tasker HTTP preview");
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK)
		(void) curl_url_set(u, CURLUPART_USER, MASK, 0);
	curl_free(part);
	part = NULL;
	if (curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK)
		(void) curl_url_set(u, CURLUPART_PASSWORD, MASK, 0);
	curl_free(part);
	part = NULL;
	if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK)
		(void) curl_url_set(u, CURLUPART_QUERY, masked_query(part), 0);
	curl_free(part);
	if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
		elog(ERROR, "could not write the url of a tasker HTTP preview");
	result = pstrdup(out);
	curl_free(out);
	curl_url_cleanup(u);
	return result;
}

/*
 * append_header: add "name": "value" to a JSON object being written.
 */
static void
append_header(StringInfo buf, const char *name, const char *value)
{
	if (buf->data[buf->len - 1] != '{')
		appendStringInfoString(buf, ", ");
	escape_json(buf, name);
	appendStringInfoString(buf, ": ");
	escape_json(buf, masked_value(name, value));
}

/*
 * append_headers: the request's headers as a JSON object, masked, as curl
 * sends them: "Name;" is a header with an empty value, "Name:" removes a
 * header curl would add (and is not shown); the User-Agent is curl's.
 */
static void
append_headers(StringInfo buf, HttpRequest *r)
{
	struct curl_slist *h;

	appendStringInfoString(buf, "{");
	for (h = r->headers; h != NULL; h = h->next)
	{
		char	   *line = pstrdup(h->data);
		size_t		n = strcspn(line, ":;");

		if (line[n] == ';')
		{
			line[n] = '\0';
			append_header(buf, line, "");
			continue;
		}
		if (line[n] == '\0' || line[n + 1] == '\0')
			continue;
		line[n] = '\0';
		append_header(buf, line, line + n + 1 + strspn(line + n + 1, " "));
	}
	append_header(buf, "User-Agent", HTTP_USER_AGENT);
	appendStringInfoString(buf, "}");
}

/*
 * preview_text: the JSON text of the preview of a prepared request, or of
 * the permanent failure error the step would get instead.
 */
static char *
preview_text(HttpRequest *r, const char *error)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"step_id\": " INT64_FORMAT ", \"method\": ",
					 r->step.step_id);
	escape_json(&buf, r->method);
	if (error != NULL)
	{
		appendStringInfoString(&buf, ", \"error\": ");
		escape_json(&buf, error);
		appendStringInfoString(&buf, ", \"hint\": ");
		if (r->failure_hint != NULL)
			escape_json(&buf, r->failure_hint);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoChar(&buf, '}');
		return buf.data;
	}
	appendStringInfoString(&buf, ", \"url\": ");
	escape_json(&buf, masked_url(r->url));
	appendStringInfoString(&buf, ", \"headers\": ");
	append_headers(&buf, r);
	appendStringInfo(&buf, ", \"body\": %s, \"timeout\": %d, \"follow_redirects\": %s}",
					 r->body ? r->body : "null", r->timeout_s,
					 r->follow_redirects ? "true" : "false");
	return buf.data;
}

/*
 * preview_step: build the request of a step read as a claim reads it and
 * return its preview, allocated in cxt.
 */
static Jsonb *
preview_step(const ClaimedStep *c, MemoryContext cxt)
{
	HttpRequest *r = http_request_new(c, CurrentMemoryContext);
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	char	   *text = preview_text(r, http_request_prepare(r));
	Jsonb	   *result;

	MemoryContextSwitchTo(cxt);
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	MemoryContextSwitchTo(old);
	curl_slist_free_all(r->headers);
	MemoryContextDelete(r->cxt);
	return result;
}

/*
 * tasker_http_preview: the request step_id would send now, as jsonb
 * {step_id, method, url, headers, body, timeout, follow_redirects} with
 * credentials masked, or {step_id, method, error, hint} when the request
 * cannot be built.  Raises for an unknown step or one that is not an api
 * step.
 */
Jsonb *
tasker_http_preview(int64 step_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	ClaimedStep c;
	char	   *kind;
	Jsonb	   *result;

	SPI_connect();
	if (!tasker_read_step(step_id, &c, &kind))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("step " INT64_FORMAT " does not exist", step_id),
				 errdetail("No step of any task has the id " INT64_FORMAT ".", step_id),
				 errhint("Look the step up in tasker_workflow_steps.")));
	if (strcmp(kind, "http") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("step " INT64_FORMAT " is not an api step", step_id),
				 errdetail("Its handler kind is \"%s\"; only steps whose handler_config has type api send HTTP requests.",
						   kind),
				 errhint("Preview a step of type api; an SQL step's handler receives the step envelope instead.")));
	result = preview_step(&c, cxt);
	SPI_finish();
	return result;
}
