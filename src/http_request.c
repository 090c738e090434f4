/*-------------------------------------------------------------------------
 *
 * http_request.c
 *		HTTP steps: the request of a step, built from its envelope and its
 *		handler_config; and the rules of what that handler_config may hold.
 *
 * http_request_prepare() turns a step's handler_config into what is sent:
 * the method (POST by default), the url with its {{reference}}s
 * interpolated and percent-encoded and its params appended, the body (the
 * handler_config's, interpolated, or the envelope itself), the headers
 * (interpolated, then tasker's own Idempotency-Key and X-Tasker-Attempt)
 * and the timeout, bounded by the step's timeout_seconds and by one day.
 * Every destination, the first and each redirect's, passes
 * http_check_destination(): http or https, a host, and a host in
 * tasker.http_allowed_hosts; it also keeps the url without its user and
 * password, the only form that is ever stored or logged.  A request that
 * cannot be built is a permanent failure of the step, returned as a
 * message, never raised.  The same code builds the requests the workers
 * send and the ones tasker_http_preview() shows.
 *
 * tasker_http_check_config() holds the rules of an api handler_config at
 * registration (template_check.c calls it): the keys read here, with the
 * types read here, and the methods sent here.  It raises template errors
 * with line and column.
 *
 * Nothing here does I/O or opens a transaction: the worker prepares a
 * request inside its claim transaction, a preview inside the caller's.
 * Memory comes from the current context, except curl's header list.
 *
 * IDENTIFICATION
 *		src/http_request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "guc.h"
#include "http_internal.h"
#include "http_request.h"
#include "yaml_reader.h"

/* The methods an api step may use, as they are sent. */
static const char *const http_methods[] = {
	"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL
};

/* ---- interpolation of {{...}} references ---- */

/*
 * lookup_path: follow the dot-separated keys of path (array elements by
 * number) from a container; false when a key is missing.
 */
static bool
lookup_path(JsonbContainer *cur, char *path, JsonbValue *out)
{
	char	   *save = NULL;
	char	   *key;

	out->type = jbvBinary;
	out->val.binary.data = cur;
	out->val.binary.len = 0;
	for (key = strtok_r(path, ".", &save); key != NULL; key = strtok_r(NULL, ".", &save))
	{
		JsonbValue *v = NULL;

		if (out->type != jbvBinary)
			return false;
		cur = out->val.binary.data;
		if (JsonContainerIsObject(cur))
			v = getKeyJsonValueFromContainer(cur, key, strlen(key), out);
		else if (JsonContainerIsArray(cur) && strspn(key, "0123456789") == strlen(key) &&
				 strlen(key) < 9)
		{
			v = getIthJsonbValueFromContainer(cur, (uint32) atoi(key));
			if (v != NULL)
				*out = *v;
		}
		if (v == NULL)
			return false;
	}
	return true;
}

/*
 * resolve_reference: the value a reference names in the step envelope:
 * context.KEY..., inputs.KEY..., dependencies.STEP.KEY..., or step.FIELD
 * (a top-level field of the envelope: step_id, task_id, attempt, ...).
 */
static bool
resolve_reference(Jsonb *envelope, const char *ref, JsonbValue *out)
{
	char	   *path = pstrdup(ref);
	char	   *dot = strchr(path, '.');
	char	   *rest = dot ? dot + 1 : "";

	if (dot != NULL)
		*dot = '\0';
	if (strcmp(path, "step") == 0 && *rest != '\0')
		return lookup_path(&envelope->root, rest, out);
	if (strcmp(path, "context") != 0 && strcmp(path, "inputs") != 0 &&
		strcmp(path, "dependencies") != 0)
		return false;
	if (!lookup_path(&envelope->root, path, out))
		return false;
	if (*rest == '\0')
		return true;
	if (out->type != jbvBinary)
		return false;
	return lookup_path(out->val.binary.data, rest, out);
}

/*
 * value_text: a JSON value as text: strings bare, null as the empty
 * string, objects and arrays as JSON.
 */
static char *
value_text(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvNull:
			return pstrdup("");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			elog(ERROR, "unexpected JSON value in a tasker reference");
	}
	return NULL;
}

/*
 * url_encode: append s percent-encoded (everything but the unreserved
 * characters of RFC 3986).
 */
static void
url_encode(StringInfo buf, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char ch = (unsigned char) *s;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
			appendStringInfoChar(buf, (char) ch);
		else
			appendStringInfo(buf, "%%%c%c", hex[ch >> 4], hex[ch & 15]);
	}
}

/*
 * unresolved: the message of a reference that does not resolve.
 */
static char *
unresolved(HttpRequest *r, const char *ref)
{
	JsonbValue	v;
	const char *step = "?";

	if (getKeyJsonValueFromContainer(&r->envelope->root, "step_name", 9, &v) &&
		v.type == jbvString)
		step = pnstrdup(v.val.string.val, v.val.string.len);
	r->failure_hint = "References are {{context.KEY}}, {{inputs.KEY}}, {{dependencies.STEP.KEY}} and {{step.FIELD}}; check the task's context and the parent step's results.";
	return psprintf("the reference {{%s}} in the handler_config of step \"%s\" does not resolve",
					ref, step);
}

/*
 * interpolate: replace each {{reference}} of tmpl by its value as text,
 * percent-encoded when encode is set.  NULL, with *error set, when a
 * reference does not resolve.  Text without a closing }} stays as it is.
 */
static char *
interpolate(HttpRequest *r, const char *tmpl, bool encode, char **error)
{
	StringInfoData out;
	const char *p = tmpl;
	const char *start;

	initStringInfo(&out);
	while ((start = strstr(p, "{{")) != NULL)
	{
		const char *end = strstr(start + 2, "}}");
		char	   *ref;
		JsonbValue	v;

		if (end == NULL)
			break;
		appendBinaryStringInfo(&out, p, start - p);
		ref = pnstrdup(start + 2, end - start - 2);
		ref = pstrdup(ref + strspn(ref, " "));
		while (*ref && ref[strlen(ref) - 1] == ' ')
			ref[strlen(ref) - 1] = '\0';
		if (!resolve_reference(r->envelope, ref, &v))
		{
			*error = unresolved(r, ref);
			return NULL;
		}
		if (encode)
			url_encode(&out, value_text(&v));
		else
			appendStringInfoString(&out, value_text(&v));
		p = end + 2;
	}
	appendStringInfoString(&out, p);
	return out.data;
}

/*
 * interpolate_value: interpolate a string of the body in place.  A string
 * that is one reference and nothing else takes the referenced value with
 * its JSON type (a number stays a number, an object an object).
 */
static bool
interpolate_value(HttpRequest *r, JsonbValue *v, char **error)
{
	char	   *s = pnstrdup(v->val.string.val, v->val.string.len);
	size_t		len = strlen(s);
	char	   *text;

	if (strstr(s, "{{") == NULL)
		return true;
	if (len > 4 && strncmp(s, "{{", 2) == 0 && strcmp(s + len - 2, "}}") == 0 &&
		strstr(s + 2, "{{") == NULL && strstr(s + 2, "}}") == s + len - 2)
	{
		char	   *ref = pnstrdup(s + 2, len - 4);
		JsonbValue	found;

		ref = pstrdup(ref + strspn(ref, " "));
		while (*ref && ref[strlen(ref) - 1] == ' ')
			ref[strlen(ref) - 1] = '\0';
		if (!resolve_reference(r->envelope, ref, &found))
		{
			*error = unresolved(r, ref);
			return false;
		}
		*v = found;
		return true;
	}
	text = interpolate(r, s, false, error);
	if (text == NULL)
		return false;
	v->type = jbvString;
	v->val.string.val = text;
	v->val.string.len = strlen(text);
	return true;
}

/*
 * interpolate_body: a copy of body with its strings interpolated; NULL,
 * with *error set, when a reference does not resolve.
 */
static Jsonb *
interpolate_body(HttpRequest *r, Jsonb *body, char **error)
{
	JsonbIterator *it;
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbValue *res = NULL;
	JsonbIteratorToken tok;

	if (JB_ROOT_IS_SCALAR(body))
	{
		(void) JsonbExtractScalar(&body->root, &v);
		if (v.type == jbvString && !interpolate_value(r, &v, error))
			return NULL;
		return JsonbValueToJsonb(&v);
	}
	it = JsonbIteratorInit(&body->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if ((tok == WJB_VALUE || tok == WJB_ELEM) && v.type == jbvString &&
			!interpolate_value(r, &v, error))
			return NULL;
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}

/* ---- building a request ---- */

/*
 * config_get: the value of a key of the step's handler_config.
 */
static bool
config_get(HttpRequest *r, const char *key, JsonbValue *out)
{
	return r->config != NULL &&
		getKeyJsonValueFromContainer(r->config, key, strlen(key), out) != NULL;
}

/*
 * config_int: an integer key of handler_config, or dflt, limited to
 * [min, max] either way (a template registered before the limits were
 * checked may hold any value).
 */
static int
config_int(HttpRequest *r, const char *key, int dflt, int min, int max)
{
	JsonbValue	v;
	double		d = dflt;

	if (config_get(r, key, &v) && v.type == jbvNumeric)
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											   NumericGetDatum(v.val.numeric)));
	if (d != d)
		d = dflt;
	return (int) Min(Max(d, (double) min), (double) max);
}

/*
 * host_allowed: whether tasker.http_allowed_hosts (empty: any) lists host,
 * compared without case and without IPv6 brackets.
 */
static bool
host_allowed(const char *host)
{
	char	   *list;
	char	   *item;
	char	   *save = NULL;
	size_t		hlen;

	if (tasker_http_allowed_hosts == NULL || tasker_http_allowed_hosts[0] == '\0')
		return true;
	if (host[0] == '[')
		host++;
	hlen = strcspn(host, "]");
	list = pstrdup(tasker_http_allowed_hosts);
	for (item = strtok_r(list, ", \t", &save); item != NULL;
		 item = strtok_r(NULL, ", \t", &save))
	{
		if (item[0] == '[')
			item++;
		if (strcspn(item, "]") == hlen && pg_strncasecmp(item, host, hlen) == 0)
			return true;
	}
	return false;
}

/*
 * http_check_destination: parse url; refuse a scheme other than http(s), a
 * missing host, or a host outside tasker.http_allowed_hosts.  Sets the
 * request's url, the url without credentials and the host's hash.
 * Returns NULL or the message of a permanent failure.
 */
char *
http_check_destination(HttpRequest *r, const char *url)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *safe = NULL;
	char	   *error = NULL;

	if (u == NULL)
		elog(ERROR, "out of memory parsing a tasker HTTP url");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		error = psprintf("the url of step " INT64_FORMAT " is not a valid http or https URL",
						 r->step.step_id);
	else if (pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0)
		error = psprintf("the url of step " INT64_FORMAT " uses scheme \"%s\"; only http and https are allowed",
						 r->step.step_id, scheme);
	else if (!host_allowed(host))
	{
		error = psprintf("host \"%s\" is not in tasker.http_allowed_hosts", host);
		r->failure_hint = "Add the host to tasker.http_allowed_hosts and reload the configuration, or change the url.";
	}
	else
	{
		char	   *lower = asc_tolower(host, strlen(host));

		r->host_hash = hash_bytes((const unsigned char *) lower, strlen(lower));
		(void) curl_url_set(u, CURLUPART_USER, NULL, 0);
		(void) curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
		if (curl_url_get(u, CURLUPART_URL, &safe, 0) == CURLUE_OK)
			r->safe_url = pstrdup(safe);
		r->url = pstrdup(url);
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(safe);
	curl_url_cleanup(u);
	return error;
}

/*
 * append_params: append handler_config.params to the url as a query
 * string, keys and values percent-encoded.
 */
static bool
append_params(HttpRequest *r, StringInfo url, char **error)
{
	JsonbValue	params;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = (strchr(url->data, '?') == NULL);

	if (!config_get(r, "params", &params) || params.type != jbvBinary ||
		!JsonContainerIsObject(params.val.binary.data))
		return true;
	it = JsonbIteratorInit(params.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *text;

		if (tok == WJB_KEY)
		{
			appendStringInfoChar(url, first ? '?' : '&');
			first = false;
			url_encode(url, pnstrdup(v.val.string.val, v.val.string.len));
			appendStringInfoChar(url, '=');
		}
		else if (tok == WJB_VALUE)
		{
			text = interpolate(r, value_text(&v), false, error);
			if (text == NULL)
				return false;
			url_encode(url, text);
		}
	}
	return true;
}

/*
 * build_url: the interpolated url with its query parameters, checked.
 */
static char *
build_url(HttpRequest *r)
{
	JsonbValue	v;
	char	   *error = NULL;
	char	   *url;
	StringInfoData buf;

	if (!config_get(r, "url", &v) || v.type != jbvString)
		return psprintf("the handler_config of step " INT64_FORMAT " has no url",
						r->step.step_id);
	url = interpolate(r, value_text(&v), true, &error);
	if (url == NULL)
		return error;
	initStringInfo(&buf);
	appendStringInfoString(&buf, url);
	if (strchr(buf.data, '#') != NULL)
		buf.data[strcspn(buf.data, "#")] = '\0';
	buf.len = strlen(buf.data);
	if (!append_params(r, &buf, &error))
		return error;
	return http_check_destination(r, buf.data);
}

/*
 * envelope_traceparent: the W3C traceparent of the step attempt, from its
 * envelope (step.c), or NULL for a task without a trace.
 */
static char *
envelope_traceparent(HttpRequest *r)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&r->envelope->root, "traceparent", 11, &v) == NULL ||
		v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * reserved_header: whether a header name is one tasker sets itself
 * (traceparent only when the step's task is in a trace).
 */
static bool
reserved_header(HttpRequest *r, const char *name)
{
	return pg_strcasecmp(name, "Idempotency-Key") == 0 ||
		pg_strcasecmp(name, "X-Tasker-Attempt") == 0 ||
		(pg_strcasecmp(name, "traceparent") == 0 && envelope_traceparent(r) != NULL);
}

/*
 * add_header: append "name: value" to the request's header list.
 */
static void
add_header(HttpRequest *r, const char *name, const char *value)
{
	char	   *line = value[0] ? psprintf("%s: %s", name, value) : psprintf("%s;", name);

	r->headers = curl_slist_append(r->headers, line);
	if (r->headers == NULL)
		elog(ERROR, "out of memory building the headers of a tasker HTTP request");
}

/*
 * build_headers: handler_config.headers interpolated, then tasker's own:
 * Idempotency-Key, X-Tasker-Attempt, traceparent (W3C trace context, for
 * a task in a trace) and, with a body, Content-Type application/json
 * unless given.
 */
static char *
build_headers(HttpRequest *r)
{
	JsonbValue	hv;
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	char	   *name = NULL;
	char	   *error = NULL;
	char	   *traceparent;
	bool		has_type = false;

	if (config_get(r, "headers", &hv) && hv.type == jbvBinary &&
		JsonContainerIsObject(hv.val.binary.data))
	{
		it = JsonbIteratorInit(hv.val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *value;

			if (tok == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			if (tok != WJB_VALUE || reserved_header(r, name))
				continue;
			value = interpolate(r, value_text(&v), false, &error);
			if (value == NULL)
				return error;
			if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL)
				return psprintf("header \"%s\" of step " INT64_FORMAT " contains a line break or a colon in its name",
								name, r->step.step_id);
			has_type |= (pg_strcasecmp(name, "Content-Type") == 0);
			add_header(r, name, value);
		}
	}
	add_header(r, "Idempotency-Key",
			   psprintf(INT64_FORMAT "-" INT64_FORMAT, r->step.task_id, r->step.step_id));
	add_header(r, "X-Tasker-Attempt", psprintf("%d", r->step.attempts + 1));
	if ((traceparent = envelope_traceparent(r)) != NULL)
		add_header(r, "traceparent", traceparent);
	/* "Expect:" with no value stops curl from waiting for 100-continue. */
	r->headers = curl_slist_append(r->headers, "Expect:");
	if (r->body != NULL && !has_type)
		add_header(r, "Content-Type", "application/json");
	return NULL;
}

/*
 * build_body: handler_config.body interpolated, as JSON text; without a
 * body key, the step envelope for POST, PUT and PATCH and nothing for the
 * others; body: null sends none.
 */
static char *
build_body(HttpRequest *r)
{
	JsonbValue	v;
	Jsonb	   *body;
	char	   *error = NULL;

	r->body = NULL;
	if (strcmp(r->method, "HEAD") == 0)
		return NULL;
	if (!config_get(r, "body", &v))
	{
		if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
			strcmp(r->method, "PATCH") == 0)
			r->body = JsonbToCString(NULL, &r->envelope->root, VARSIZE(r->envelope));
		return NULL;
	}
	if (v.type == jbvNull)
		return NULL;
	body = JsonbValueToJsonb(&v);
	body = interpolate_body(r, body, &error);
	if (body == NULL)
		return error;
	r->body = JsonbToCString(NULL, &body->root, VARSIZE(body));
	return NULL;
}

/*
 * request_timeout: the seconds the whole request may take: handler_config's
 * timeout, else the step's timeout_seconds, else
 * tasker.http_default_timeout; never more than the step's timeout_seconds
 * (when set) nor HTTP_MAX_TIMEOUT_S, so a request cannot outlive its step,
 * and the lease (timeout + margin) and curl's timeout in milliseconds stay
 * far from overflowing.
 */
static int
request_timeout(HttpRequest *r)
{
	int			step = r->step.call.timeout_seconds;
	int			dflt = (step > 0) ? step : tasker_http_default_timeout;
	int			timeout;

	dflt = Min(Max(dflt, 1), HTTP_MAX_TIMEOUT_S);
	timeout = config_int(r, "timeout", dflt, 1, HTTP_MAX_TIMEOUT_S);
	if (step > 0)
		timeout = Min(timeout, step);
	return timeout;
}

/*
 * http_request_prepare: everything the request needs, from the step's
 * handler_config: method, url, body, headers and timeout.  Returns NULL
 * or the message of a permanent failure.  Allocates in the current memory
 * context (the request's), plus the header list, which curl allocates.
 */
char *
http_request_prepare(HttpRequest *r)
{
	JsonbValue	v;
	char	   *error;

	r->method = "POST";
	if (config_get(r, "method", &v) && v.type == jbvString)
		r->method = asc_toupper(v.val.string.val, v.val.string.len);
	r->follow_redirects = config_get(r, "follow_redirects", &v) &&
		v.type == jbvBool && v.val.boolean;
	r->timeout_s = request_timeout(r);
	if ((error = build_url(r)) != NULL)
		return error;
	if ((error = build_body(r)) != NULL)
		return error;
	return build_headers(r);
}

/*
 * http_request_new: a request for a claimed step, in a memory context of
 * its own under parent, with a copy of the step's envelope.
 */
HttpRequest *
http_request_new(const ClaimedStep *c, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "tasker http request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	HttpRequest *r = palloc0(sizeof(HttpRequest));
	JsonbValue	v;

	r->cxt = cxt;
	r->step = *c;
	r->envelope = palloc(VARSIZE(c->call.envelope));
	memcpy(r->envelope, c->call.envelope, VARSIZE(c->call.envelope));
	r->step.call.envelope = r->envelope;
	if (getKeyJsonValueFromContainer(&r->envelope->root, "handler_config", 14, &v) &&
		v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		r->config = v.val.binary.data;
	r->safe_url = "(no url)";
	initStringInfo(&r->response);
	initStringInfo(&r->resp_headers);
	MemoryContextSwitchTo(old);
	return r;
}

/* ---- the rules of an api handler_config, at registration ---- */

/*
 * Where a check is: the template (for the message) and the step
 * ("step \"fetch\"").  The type checks below read and word their errors
 * as template_check.c's do for every other key.
 */
typedef struct ConfigCheck
{
	const char *template_name;
	const char *subject;
} ConfigCheck;

/*
 * absent: whether a value is missing or null.
 */
static bool
absent(const TNode *node)
{
	return node == NULL ||
		(node->kind == TNODE_SCALAR && tnode_scalar_type(node) == TSCALAR_NULL);
}

/*
 * check_string: the value of a key that must be a non-empty string (a
 * number counts as one), or NULL when absent.
 */
static const char *
check_string(const ConfigCheck *c, const TNode *config, const char *key)
{
	const TNode *node = tnode_get(config, key);

	if (absent(node))
		return NULL;
	if (node->kind != TNODE_SCALAR || tnode_scalar_type(node) == TSCALAR_BOOL)
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write the value as a string, as in %s: \"text\".", key),
					   "\"%s\" of %s must be a string, not %s.",
					   key, c->subject, tnode_describe(node));
	if (node->value[0] == '\0')
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Give it a value of at least one character.",
					   "\"%s\" of %s must not be empty.", key, c->subject);
	return node->value;
}

/*
 * check_bool: a key that must be true or false when present.
 */
static void
check_bool(const ConfigCheck *c, const TNode *config, const char *key)
{
	const TNode *node = tnode_get(config, key);

	if (!absent(node) &&
		(node->kind != TNODE_SCALAR || tnode_scalar_type(node) != TSCALAR_BOOL))
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Write true or false, without quotes.",
					   "\"%s\" of %s must be true or false, not %s.",
					   key, c->subject, tnode_describe(node));
}

/*
 * check_mapping: a key that must be a mapping when present.
 */
static void
check_mapping(const ConfigCheck *c, const TNode *config, const char *key)
{
	const TNode *node = tnode_get(config, key);

	if (!absent(node) && node->kind != TNODE_MAPPING)
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write %s as a mapping of keys to values.", key),
					   "\"%s\" of %s must be a mapping, not %s.",
					   key, c->subject, tnode_describe(node));
}

/*
 * check_timeout: the timeout key, when present, in whole seconds from 1
 * to TEMPLATE_TIMEOUT_MAX (the request's timeout becomes a deadline and a
 * lease, where a value near the integer limits would overflow).
 */
static void
check_timeout(const ConfigCheck *c, const TNode *config)
{
	const TNode *node = tnode_get(config, "timeout");
	long long	value = -1;
	const char *p;

	if (absent(node))
		return;
	if (node->kind == TNODE_SCALAR && tnode_scalar_type(node) == TSCALAR_NUMBER)
	{
		for (p = node->value; *p >= '0' && *p <= '9'; p++)
			;
		if (*p == '\0' && strlen(node->value) <= 10)
			value = strtoll(node->value, NULL, 10);
	}
	if (value < 1 || value > PG_INT32_MAX)
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write a whole number from %d to %d, without quotes.",
								1, (int) PG_INT32_MAX),
					   "\"%s\" of %s must be %s, not %s.",
					   "timeout", c->subject, "a positive integer", tnode_describe(node));
	if (value > TEMPLATE_TIMEOUT_MAX)
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Give the timeout in whole seconds, at most %d (one day).",
								TEMPLATE_TIMEOUT_MAX),
					   "\"%s\" of %s is over one day (%d seconds).",
					   "timeout", psprintf("the handler_config of %s", c->subject),
					   (int) value);
}

/*
 * check_url: refuse an api url without an http or https scheme and a host
 * (before interpolation; http_check_destination checks it again after).
 */
static void
check_url(const ConfigCheck *c, const TNode *at, const char *url)
{
	const char *sep = strstr(url, "://");
	const char *host;
	const char *end;
	const char *at_sign;
	int			scheme_len = sep ? (int) (sep - url) : 0;

	if (sep == NULL ||
		!((scheme_len == 4 && pg_strncasecmp(url, "http", 4) == 0) ||
		  (scheme_len == 5 && pg_strncasecmp(url, "https", 5) == 0)))
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, at,
					   "Write an absolute URL such as https://api.example.com/orders.",
					   "the url \"%s\" of %s does not start with http:// or https://.",
					   url, c->subject);
	host = sep + 3;
	end = host + strcspn(host, "/?#");
	at_sign = memchr(host, '@', end - host);
	while (at_sign != NULL)
	{
		host = at_sign + 1;
		at_sign = memchr(host, '@', end - host);
	}
	if (host == end || *host == ':')
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, at,
					   "Write an absolute URL such as https://api.example.com/orders.",
					   "the url \"%s\" of %s has no host.", url, c->subject);
}

/*
 * check_method: the index in http_methods of a method given in any case;
 * raises for a method tasker does not send.
 */
static int
check_method(const ConfigCheck *c, const TNode *config, const char *method)
{
	int			m;

	for (m = 0; http_methods[m] != NULL; m++)
		if (pg_strcasecmp(method, http_methods[m]) == 0)
			return m;
	template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE,
				   tnode_get(config, "method"),
				   "Use GET, POST, PUT, PATCH, DELETE or HEAD.",
				   "\"method\" of %s must be an HTTP method tasker supports, not \"%s\".",
				   c->subject, method);
	pg_unreachable();
}

/*
 * normalized: a copy of config whose type is "api" and whose method (when
 * m is not NULL) is the upper-case name m (nodes are never changed in
 * place: they may be shared).
 */
static const TNode *
normalized(const TNode *config, const char *m)
{
	TNode	   *copy = palloc(sizeof(TNode));
	int			i;

	*copy = *config;
	copy->items = palloc(sizeof(TNode *) * config->nitems);
	for (i = 0; i < config->nitems; i++)
	{
		const char *key = config->keys[i]->value;
		TNode	   *norm;

		copy->items[i] = config->items[i];
		if (strcmp(key, "type") != 0 && (m == NULL || strcmp(key, "method") != 0))
			continue;
		norm = palloc(sizeof(TNode));
		*norm = *config->items[i];
		norm->value = pstrdup(strcmp(key, "type") == 0 ? "api" : m);
		norm->quoted = true;
		copy->items[i] = norm;
	}
	return copy;
}

/*
 * check_no_env_vars: refuse a ${VAR} in a value of the handler_config (the
 * url, a header, a parameter, the body): the Ruby engine's YAML is read by
 * Ruby tooling that may expand them, tasker would send them as written.
 */
static void
check_no_env_vars(const ConfigCheck *c, const TNode *node, const char *key)
{
	int			i;

	if (node == NULL)
		return;
	if (node->kind == TNODE_SCALAR)
	{
		const char *dollar = strstr(node->value, "${");

		if (dollar != NULL && strchr(dollar, '}') != NULL)
			template_error(c->template_name, ERRCODE_FEATURE_NOT_SUPPORTED, node,
						   "tasker does not read environment variables, and would send the text as written. Put the value in the task's context and write {{context.KEY}}, or register the template with the value in place.",
						   "\"%s\" of the handler_config of %s contains an environment variable reference: \"%s\".",
						   key, c->subject, node->value);
		return;
	}
	for (i = 0; i < node->nitems; i++)
		check_no_env_vars(c, node->items[i], key);
}

/*
 * check_api_extras: what the Ruby engine's examples write in an api
 * step's handler_config that tasker would ignore or send as written:
 * refused, with what to write instead.
 */
static void
check_api_extras(const ConfigCheck *c, const TNode *config)
{
	const TNode *retries = tnode_get(config, "retries");

	if (retries != NULL)
		template_error(c->template_name, ERRCODE_INVALID_PARAMETER_VALUE, retries,
					   "Set default_retry_limit on the step: the number of attempts in all, the first included.",
					   "the handler_config of %s has \"retries\", which tasker does not read.",
					   c->subject);
	check_no_env_vars(c, tnode_get(config, "url"), "url");
	check_no_env_vars(c, tnode_get(config, "headers"), "headers");
	check_no_env_vars(c, tnode_get(config, "params"), "params");
	check_no_env_vars(c, tnode_get(config, "body"), "body");
}

/*
 * tasker_http_check_config: validate the handler_config (a mapping) of an
 * api step, subject naming the step in messages, and return it with its
 * type in lower case and its method in upper case.  Raises the template's error, with line and
 * column, at the first problem.  Needs no catalog access.
 */
const TNode *
tasker_http_check_config(const char *template_name, const char *subject,
						 const TNode *config)
{
	ConfigCheck c = {template_name, subject};
	const char *url = check_string(&c, config, "url");
	const char *method = check_string(&c, config, "method");

	if (url == NULL)
		template_error(template_name, ERRCODE_INVALID_PARAMETER_VALUE, config,
					   "Give the endpoint, as in url: https://api.example.com/orders.",
					   "the handler_config of %s has type api but no \"url\".",
					   subject);
	check_api_extras(&c, config);
	check_url(&c, tnode_get(config, "url"), url);
	/* The other keys http_request_prepare reads. */
	check_bool(&c, config, "follow_redirects");
	check_timeout(&c, config);
	check_mapping(&c, config, "headers");
	check_mapping(&c, config, "params");
	return normalized(config, method == NULL ? NULL :
					  http_methods[check_method(&c, config, method)]);
}
