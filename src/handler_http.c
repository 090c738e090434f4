/*-------------------------------------------------------------------------
 *
 * handler_http.c
 *		Run steps whose handler_config has type api: HTTP requests made
 *		asynchronously by the executor workers.
 *
 * Each executor owns one non-blocking curl multi handle.  Its loop calls
 * tasker_http_run(), which records the requests that finished and claims
 * more, and tasker_http_wait(), which sleeps on a WaitEventSet holding the
 * process latch and the sockets curl asked to watch, so SIGTERM, a reload
 * and new work are seen at once while requests are in flight.
 *
 * Invariant: no transaction is open during network I/O.  A claim is one
 * short transaction that moves steps to in_progress with a lease (now +
 * timeout + HTTP_LEASE_MARGIN_S), counts the attempt and commits; only then
 * are the requests handed to curl.  The requests that finished since the
 * last look are recorded together in one more short transaction, through
 * the scheduler's tasker_record_success / tasker_record_failure, so retries
 * and backoff follow the same rules as SQL steps.  An outcome is recorded
 * only while the step is still in_progress at the attempt that sent it; an
 * outcome for a step that was cancelled or reclaimed meanwhile is dropped;
 * better, such a request is aborted as soon as the worker sees it: when its
 * latch is set (a cancel wakes the workers at commit) and at least once a
 * second, one query over the steps in flight finds those no longer
 * in_progress at the attempt sent, and their requests leave curl and give
 * back their slots.  No request runs past its timeout, which is bounded by
 * the step's timeout_seconds and by one day.
 *
 * A worker that dies leaves its steps in_progress with a lease; any worker
 * reclaims a step whose lease expired as a failed attempt.  A worker asked
 * to stop (SIGTERM) records its in-flight requests as failed attempts
 * before it exits, so they are retried without waiting for the lease.
 *
 * The limits tasker.http_max_concurrency and tasker.http_max_per_host hold
 * over all workers: reservations are counted in shared memory (hosts by a
 * hash of their name) and given back when a request is recorded or, from
 * an exit callback, when the worker exits.  The counters of requests by
 * outcome live there too.  This is the only file that includes curl.
 *
 * IDENTIFICATION
 *		src/handler_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <curl/curl.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "postmaster/interrupt.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "handler.h"
#include "handler_http.h"
#include "scheduler.h"
#include "spi_util.h"
#include "state.h"
#include "worker.h"

/* Seconds a lease outlives the request's own timeout. */
#define HTTP_LEASE_MARGIN_S		10
/* Bytes of a failed response's body kept in the step's error. */
#define HTTP_ERROR_BODY_MAX		2048
/* Most bytes of response headers kept. */
#define HTTP_HEADERS_MAX		65536
#define HTTP_MAX_REDIRECTS		5
/* Distinct hosts in flight at once, over all workers. */
#define HTTP_HOST_SLOTS			256
/* Most expired leases reclaimed per look, and how often to look. */
#define HTTP_RECLAIM_BATCH		100
#define HTTP_RECLAIM_EVERY_MS	1000
/* Longest a request may take, whatever its step or the settings say. */
#define HTTP_MAX_TIMEOUT_S		86400
/* How often, at least, to look for cancelled steps while requests run. */
#define HTTP_CANCEL_EVERY_MS	1000

/* The outcomes counted in shared memory, in tasker_http_stats() order. */
typedef enum HttpOutcome
{
	HTTP_OUT_2XX = 0,
	HTTP_OUT_RETRYABLE,
	HTTP_OUT_PERMANENT,
	HTTP_OUT_TIMEOUT,
	HTTP_OUT_CONNECTION,
	HTTP_OUT_LEASE_EXPIRED,
	HTTP_NUM_OUTCOMES,
	HTTP_OUT_NONE				/* not counted: the worker stopped */
} HttpOutcome;

static const char *const outcome_names[HTTP_NUM_OUTCOMES] = {
	"2xx", "retryable", "permanent", "timeout", "connection_error",
	"lease_expired"
};

typedef struct HttpHostCount
{
	uint32		hash;
	int32		count;			/* 0: free */
} HttpHostCount;

typedef struct HttpShared
{
	slock_t		mutex;
	int32		in_flight;
	bool		starved;		/* someone was refused a slot */
	HttpHostCount hosts[HTTP_HOST_SLOTS];
	pg_atomic_uint64 requests[HTTP_NUM_OUTCOMES];
} HttpShared;

/* One step's request, from claim to record. */
typedef struct HttpRequest
{
	dlist_node	node;
	MemoryContext cxt;
	ClaimedStep step;
	Jsonb	   *envelope;
	JsonbContainer *config;		/* handler_config inside envelope */
	CURL	   *easy;
	struct curl_slist *headers;
	const char *method;
	char	   *body;			/* NULL: none */
	char	   *url;
	char	   *safe_url;		/* url without user:password */
	uint32		host_hash;
	bool		reserved;
	bool		follow_redirects;
	int			redirects;
	int			timeout_s;
	TimestampTz started;
	StringInfoData response;
	StringInfoData resp_headers;
	bool		too_large;
	bool		done;
	CURLcode	result;
	char	   *failure;		/* a permanent failure found by us */
	const char *failure_hint;
	char		errbuf[CURL_ERROR_SIZE];
} HttpRequest;

/* A socket curl asked us to watch. */
typedef struct HttpSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT or _INOUT */
} HttpSocket;

static HttpShared *http_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static CURLM *multi = NULL;
static MemoryContext http_cxt = NULL;
static MemoryContext scratch_cxt = NULL;
static dlist_head requests = DLIST_STATIC_INIT(requests);
static int	ndone = 0;
static HttpSocket *sockets = NULL;
static int	nsockets = 0;
static int	maxsockets = 0;
static bool timer_set = false;
static TimestampTz timer_at = 0;
static TimestampTz last_reclaim = 0;
static TimestampTz last_cancel_check = 0;
static bool woken = false;		/* the latch was set since the last check */
static bool api_steps_exist = true;	/* rechecked with each reclaim */

static SPIPlanPtr candidates_plan;
static SPIPlanPtr attempt_plan;
static SPIPlanPtr ours_plan;
static SPIPlanPtr expired_plan;
static SPIPlanPtr api_steps_plan;
static SPIPlanPtr gone_plan;

/*
 * http_shmem_request: reserve the shared counters.
 */
static void
http_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(HttpShared)));
}

/*
 * http_shmem_startup: create or attach to the shared counters.
 */
static void
http_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	http_shared = ShmemInitStruct("tasker http", sizeof(HttpShared), &found);
	if (!found)
	{
		memset(http_shared, 0, sizeof(HttpShared));
		SpinLockInit(&http_shared->mutex);
		for (i = 0; i < HTTP_NUM_OUTCOMES; i++)
			pg_atomic_init_u64(&http_shared->requests[i], 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * tasker_http_register: called while preloading, from the registration of
 * the workers: install the hooks of the shared state.
 */
void
tasker_http_register(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = http_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = http_shmem_startup;
}

/*
 * tasker_http_stats: copy the counters of requests by outcome; returns how
 * many (all zero without the preload).
 */
int
tasker_http_stats(const char **names, uint64 *counts, int max)
{
	int			i;

	for (i = 0; i < HTTP_NUM_OUTCOMES && i < max; i++)
	{
		names[i] = outcome_names[i];
		counts[i] = http_shared ? pg_atomic_read_u64(&http_shared->requests[i]) : 0;
	}
	return i;
}

/*
 * count_outcome: add one request to the counter of its outcome.
 */
static void
count_outcome(HttpOutcome kind)
{
	if (http_shared != NULL && kind < HTTP_NUM_OUTCOMES)
		pg_atomic_fetch_add_u64(&http_shared->requests[kind], 1);
}

/*
 * reserve_slot: take one in-flight slot, and one of the host, unless a
 * limit is reached.  *full is set when the global limit is the reason.
 */
static bool
reserve_slot(uint32 host_hash, bool *full)
{
	HttpHostCount *slot = NULL;
	int			i;
	bool		ok = false;

	SpinLockAcquire(&http_shared->mutex);
	*full = http_shared->in_flight >= tasker_http_max_concurrency;
	for (i = 0; i < HTTP_HOST_SLOTS && !*full; i++)
	{
		HttpHostCount *h = &http_shared->hosts[i];

		if (h->count > 0 && h->hash == host_hash)
		{
			slot = h;
			break;
		}
		if (h->count == 0 && slot == NULL)
			slot = h;
	}
	if (slot != NULL && (slot->count == 0 || slot->count < tasker_http_max_per_host))
	{
		slot->hash = host_hash;
		slot->count++;
		http_shared->in_flight++;
		ok = true;
	}
	else
		http_shared->starved = true;
	SpinLockRelease(&http_shared->mutex);
	return ok;
}

/*
 * release_slot: give back a reservation.  Returns whether some worker was
 * refused a slot since the last release, and so should be woken.
 */
static bool
release_slot(uint32 host_hash)
{
	bool		starved;
	int			i;

	SpinLockAcquire(&http_shared->mutex);
	for (i = 0; i < HTTP_HOST_SLOTS; i++)
		if (http_shared->hosts[i].count > 0 && http_shared->hosts[i].hash == host_hash)
		{
			http_shared->hosts[i].count--;
			break;
		}
	if (http_shared->in_flight > 0)
		http_shared->in_flight--;
	starved = http_shared->starved;
	http_shared->starved = false;
	SpinLockRelease(&http_shared->mutex);
	return starved;
}

/*
 * free_slots: how many more requests may start now.
 */
static int
free_slots(void)
{
	int			n;

	if (http_shared == NULL)
		return 0;
	SpinLockAcquire(&http_shared->mutex);
	n = tasker_http_max_concurrency - http_shared->in_flight;
	SpinLockRelease(&http_shared->mutex);
	return Max(n, 0);
}

/*
 * release_at_exit: when the worker exits, give back the slots of its
 * requests (a crash resets shared memory instead).
 */
static void
release_at_exit(int code, Datum arg)
{
	dlist_iter	it;

	if (http_shared == NULL)
		return;
	dlist_foreach(it, &requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (r->reserved)
			(void) release_slot(r->host_hash);
		r->reserved = false;
	}
}

/*
 * on_socket: curl's socket callback: remember which sockets to watch for
 * what, for the next wait.
 */
static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsockets; i++)
		if (sockets[i].fd == fd)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsockets)
			sockets[i] = sockets[--nsockets];
		return 0;
	}
	if (i == nsockets)
	{
		if (nsockets == maxsockets)
		{
			maxsockets = Max(16, maxsockets * 2);
			sockets = repalloc(sockets, sizeof(HttpSocket) * maxsockets);
		}
		nsockets++;
	}
	sockets[i].fd = fd;
	sockets[i].what = what;
	return 0;
}

/*
 * on_timer: curl's timer callback: when curl next wants to be called
 * whatever the sockets do (-1: no timer).
 */
static int
on_timer(CURLM *m, long timeout_ms, void *userp)
{
	timer_set = (timeout_ms >= 0);
	if (timer_set)
		timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * ensure_contexts: create the memory contexts of this file, once.
 */
static void
ensure_contexts(void)
{
	if (http_cxt != NULL)
		return;
	http_cxt = AllocSetContextCreate(TopMemoryContext, "tasker http",
									 ALLOCSET_DEFAULT_SIZES);
	scratch_cxt = AllocSetContextCreate(http_cxt, "tasker http scratch",
										ALLOCSET_DEFAULT_SIZES);
	sockets = MemoryContextAlloc(http_cxt, sizeof(HttpSocket) * 16);
	maxsockets = 16;
}

/*
 * http_init: create the multi handle, once per worker process.
 */
static void
http_init(void)
{
	if (multi != NULL)
		return;
	if (http_shared == NULL)
		elog(ERROR, "tasker HTTP steps need the shared state of the preloaded library");
	ensure_contexts();
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialise the HTTP client"),
				 errdetail("The HTTP library failed to start."),
				 errhint("Check the libcurl installation of the server.")));
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "could not create the HTTP client of the tasker worker");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
	before_shmem_exit(release_at_exit, (Datum) 0);
}

/*
 * col: binary value of column n of row i of the last result.
 */
static Datum
col(uint64 i, int n)
{
	bool		isnull;

	return SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, n, &isnull);
}

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
 * config_int: an integer key of handler_config, or dflt.
 */
static int
config_int(HttpRequest *r, const char *key, int dflt, int min, int max)
{
	JsonbValue	v;
	double		d;

	if (!config_get(r, key, &v) || v.type != jbvNumeric)
		return dflt;
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
										   NumericGetDatum(v.val.numeric)));
	if (d != d)
		return dflt;
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
 * check_destination: parse url; refuse a scheme other than http(s), a
 * missing host, or a host outside tasker.http_allowed_hosts.  Sets the
 * request's url, the url without credentials and the host's hash.
 * Returns NULL or the message of a permanent failure.
 */
static char *
check_destination(HttpRequest *r, const char *url)
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
	return check_destination(r, buf.data);
}

/*
 * reserved_header: whether a header name is one tasker sets itself.
 */
static bool
reserved_header(const char *name)
{
	return pg_strcasecmp(name, "Idempotency-Key") == 0 ||
		pg_strcasecmp(name, "X-Tasker-Attempt") == 0;
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
 * Idempotency-Key, X-Tasker-Attempt and, with a body, Content-Type
 * application/json unless given.
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
			if (tok != WJB_VALUE || reserved_header(name))
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
 * prepare_request: everything the request needs, from the step's
 * handler_config.  Returns NULL or the message of a permanent failure.
 */
static char *
prepare_request(HttpRequest *r)
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

/* ---- curl ---- */

/*
 * on_body: curl's write callback: keep the body, up to the size limit.
 */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *r = (HttpRequest *) arg;
	size_t		n = size * nmemb;

	if (r->response.len + n > (size_t) tasker_http_max_response_size * 1024)
	{
		r->too_large = true;
		return 0;
	}
	appendBinaryStringInfo(&r->response, data, (int) n);
	return n;
}

/*
 * on_header: curl's header callback: keep the headers of the last
 * response (an interim 1xx response is forgotten).
 */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *r = (HttpRequest *) arg;
	size_t		n = size * nmemb;

	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
		resetStringInfo(&r->resp_headers);
	if (r->resp_headers.len + n <= HTTP_HEADERS_MAX)
		appendBinaryStringInfo(&r->resp_headers, data, (int) n);
	return n;
}

/*
 * set_method: the method and body options of the easy handle.
 */
static void
set_method(HttpRequest *r)
{
	CURL	   *e = r->easy;

	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (strcmp(r->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(r->method, "POST") == 0 || r->body != NULL)
	{
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) (r->body ? strlen(r->body) : 0));
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
	}
	if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "POST") != 0 &&
		strcmp(r->method, "HEAD") != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	else if (strcmp(r->method, "GET") == 0 && r->body != NULL)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "GET");
}

/*
 * remaining_ms: what is left of the request's timeout (at least 1 ms).
 */
static long
remaining_ms(HttpRequest *r)
{
	int64		spent = (GetCurrentTimestamp() - r->started) / 1000;
	int64		left = (int64) r->timeout_s * 1000 - spent;

	return (long) Min(Max(left, 1), (int64) HTTP_MAX_TIMEOUT_S * 1000);
}

/*
 * setup_easy: create the easy handle of a prepared request.  TLS peers
 * are verified; redirects are never followed by curl (tasker follows them
 * itself when asked, checking each destination).
 */
static void
setup_easy(HttpRequest *r)
{
	CURL	   *e = curl_easy_init();

	if (e == NULL)
		elog(ERROR, "out of memory creating a tasker HTTP request");
	r->easy = e;
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "tasker");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	set_method(r);
}

/*
 * start_request: hand a claimed request to curl (after its claim
 * committed).
 */
static void
start_request(HttpRequest *r)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	r->started = GetCurrentTimestamp();
	r->errbuf[0] = '\0';
	resetStringInfo(&r->response);
	resetStringInfo(&r->resp_headers);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, remaining_ms(r));
	if (curl_multi_add_handle(multi, r->easy) != CURLM_OK)
		elog(ERROR, "could not start a tasker HTTP request");
	MemoryContextSwitchTo(old);
}

/*
 * free_request: forget a request, giving back its slot.  Returns whether
 * another worker waits for a slot.
 */
static bool
free_request(HttpRequest *r)
{
	bool		wake = false;

	dlist_delete(&r->node);
	if (r->done)
		ndone--;
	if (r->reserved)
		wake = release_slot(r->host_hash);
	if (r->easy != NULL)
	{
		if (!r->done)
			curl_multi_remove_handle(multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->headers);
	MemoryContextDelete(r->cxt);
	return wake;
}

/*
 * follow_redirect: for a request with follow_redirects whose response is
 * a redirect, send it again to the new location (303, and 301/302 after a
 * POST, become a GET without body).  Returns whether it was sent again;
 * a refused destination becomes the request's permanent failure.
 */
static bool
follow_redirect(HttpRequest *r)
{
	long		status = 0;
	char	   *location = NULL;
	MemoryContext old;

	if (!r->follow_redirects || r->result != CURLE_OK || r->redirects >= HTTP_MAX_REDIRECTS)
		return false;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &location);
	if (location == NULL || (status != 301 && status != 302 && status != 303 &&
							 status != 307 && status != 308))
		return false;
	old = MemoryContextSwitchTo(r->cxt);
	location = pstrdup(location);
	r->failure = check_destination(r, location);
	if (r->failure == NULL)
	{
		r->redirects++;
		if (status == 303 || ((status == 301 || status == 302) && strcmp(r->method, "POST") == 0))
		{
			r->method = "GET";
			r->body = NULL;
		}
		curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
		set_method(r);
		curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, remaining_ms(r));
		r->errbuf[0] = '\0';
		resetStringInfo(&r->response);
		resetStringInfo(&r->resp_headers);
		if (curl_multi_add_handle(multi, r->easy) != CURLM_OK)
			elog(ERROR, "could not restart a tasker HTTP request");
	}
	MemoryContextSwitchTo(old);
	return r->failure == NULL;
}

/*
 * collect_done: take the finished transfers from curl.
 */
static void
collect_done(void)
{
	CURLMsg    *msg;
	int			left;

	if (multi == NULL)
		return;
	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HttpRequest *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		r->result = msg->data.result;
		curl_multi_remove_handle(multi, r->easy);
		if (!follow_redirect(r))
		{
			r->done = true;
			ndone++;
		}
	}
}

/*
 * fire_timer: call curl when its timer is due.
 */
static void
fire_timer(void)
{
	int			running;
	int			i;

	for (i = 0; i < 10 && multi != NULL && timer_set &&
		 timer_at <= GetCurrentTimestamp(); i++)
	{
		timer_set = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

/*
 * pump: wait up to timeout_ms on the latch and curl's sockets, and let
 * curl act on the sockets that are ready and on its timer.  Returns
 * whether the latch was set.
 */
static bool
pump(long timeout_ms)
{
	WaitEventSet *set;
	WaitEvent  *events;
	int			n;
	int			i;
	int			running;
	bool		latch = false;
	MemoryContext old;

	ensure_contexts();
	old = MemoryContextSwitchTo(scratch_cxt);

	set = tasker_create_wait_event_set(nsockets + 2);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nsockets; i++)
		AddWaitEventToSet(set,
						  ((sockets[i].what & CURL_POLL_IN) ? WL_SOCKET_READABLE : 0) |
						  ((sockets[i].what & CURL_POLL_OUT) ? WL_SOCKET_WRITEABLE : 0),
						  sockets[i].fd, NULL, NULL);
	events = palloc(sizeof(WaitEvent) * (nsockets + 2));
	n = WaitEventSetWait(set, timeout_ms, events, nsockets + 2, PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	for (i = 0; i < n; i++)
	{
		int			flags = 0;

		if (events[i].events & WL_LATCH_SET)
			latch = true;
		if (events[i].events & WL_SOCKET_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events[i].events & WL_SOCKET_WRITEABLE)
			flags |= CURL_CSELECT_OUT;
		if (flags != 0 && multi != NULL)
			curl_multi_socket_action(multi, events[i].fd, flags, &running);
	}
	fire_timer();
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch_cxt);
	return latch;
}

/* ---- outcomes ---- */

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
 * fail: fill a failure outcome.
 */
static HttpOutcome
fail(StepOutcome *o, HttpOutcome kind, char *message, const char *detail,
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
		return fail(o, HTTP_OUT_RETRYABLE, what,
					"The service asked to be called again later.", NULL);
	}
	o->details = failure_details(r, status, -1);
	if (status == 400 || status == 401 || status == 403 || status == 404 || status == 422)
		return fail(o, HTTP_OUT_PERMANENT, what,
					"Statuses 400, 401, 403, 404 and 422 fail the step without a retry.",
					"Fix the request or the service, then retry the task with tasker_retry_task.");
	return fail(o, HTTP_OUT_RETRYABLE, what, NULL, NULL);
}

/*
 * outcome_of: the outcome of a finished request (or, when it is still in
 * flight, of one the worker gives up because it is stopping).
 */
static HttpOutcome
outcome_of(HttpRequest *r, StepOutcome *o)
{
	long		status = 0;

	memset(o, 0, sizeof(*o));
	o->retry_after = -1;
	if (!r->done)
	{
		o->details = failure_details(r, 0, -1);
		fail(o, HTTP_OUT_NONE, psprintf("the tasker worker stopped while %s %s was in flight",
										r->method, r->safe_url),
			 "The request may or may not have reached the service; the attempt counts.", NULL);
		return HTTP_OUT_NONE;
	}
	if (r->failure != NULL)
	{
		o->details = failure_details(r, 0, -1);
		return fail(o, HTTP_OUT_PERMANENT, r->failure, NULL, r->failure_hint);
	}
	if (r->too_large)
	{
		o->details = failure_details(r, 0, -1);
		return fail(o, HTTP_OUT_PERMANENT,
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
			return fail(o, HTTP_OUT_TIMEOUT,
						psprintf("%s %s timed out after %d s", r->method, r->safe_url, r->timeout_s),
						NULL, "Raise timeout in the step's handler_config if the service is slow.");
		return fail(o, HTTP_OUT_CONNECTION,
					psprintf("%s %s failed: %s", r->method, r->safe_url,
							 r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result)),
					NULL, NULL);
	}
	return status_outcome(r, status, o);
}

/* ---- transactions ---- */

/*
 * begin_xact / commit_xact: a short transaction of the worker.
 */
static void
begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	SPI_connect();
}

static void
commit_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * still_ours: lock the step and tell whether it is still in_progress at
 * the attempt this worker made (not cancelled, not reclaimed).
 */
static bool
still_ours(ClaimedStep *c)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(c->step_id), Int32GetDatum(c->attempts + 1)};

	tasker_run_plan(tasker_keep_plan(&ours_plan,
			 "SELECT 1 FROM @extschema@.tasker_workflow_steps"
			 " WHERE workflow_step_id = $1 AND current_state = 'in_progress'"
			 "   AND attempts = $2"
			 " FOR NO KEY UPDATE",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	return SPI_processed == 1;
}

/*
 * record_requests: record the outcome of every finished request (of every
 * request, when stopping) in one short transaction, settle their tasks,
 * and forget them.  Returns the number recorded.
 */
static int
record_requests(bool all)
{
	dlist_mutable_iter it;
	int64	   *tasks;
	int			ntasks = 0;
	int			n = 0;
	bool		wake = false;

	begin_xact("tasker: recording HTTP steps");
	dlist_foreach_modify(it, &requests)
		n++;
	tasks = palloc(sizeof(int64) * (n + 1));
	n = 0;
	/* The lock order of control.c: the task rows before their steps. */
	dlist_foreach_modify(it, &requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (r->done || (all && r->easy != NULL))
			tasks[ntasks++] = r->step.task_id;
	}
	tasker_lock_tasks(tasks, ntasks);
	ntasks = 0;
	dlist_foreach_modify(it, &requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);
		StepOutcome o;

		if (!r->done && (!all || r->easy == NULL))
			continue;
		count_outcome(outcome_of(r, &o));
		if (still_ours(&r->step))
		{
			if (o.ok)
				tasker_record_success(&r->step, &o);
			else
				tasker_record_failure(&r->step, &o);
			tasks[ntasks++] = r->step.task_id;
			n++;
		}
		wake |= free_request(r);
	}
	tasker_finalize_tasks(tasks, ntasks);
	commit_xact();
	if (wake)
		tasker_wake_workers();
	return n;
}

/*
 * running: whether a request is on the network (handed to curl and not
 * finished).
 */
static bool
running(HttpRequest *r)
{
	return !r->done && r->started != 0 && r->easy != NULL;
}

/*
 * expire_overdue: a request still running a second after its timeout (curl
 * should have ended it) ends now as timed out, so no request outlives its
 * timeout whatever curl's timer does.
 */
static void
expire_overdue(void)
{
	dlist_iter	it;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach(it, &requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (!running(r) ||
			now < TimestampTzPlusMilliseconds(r->started, (r->timeout_s + 1) * 1000L))
			continue;
		curl_multi_remove_handle(multi, r->easy);
		r->result = CURLE_OPERATION_TIMEDOUT;
		r->done = true;
		ndone++;
	}
}

/*
 * count_running: the number of running requests.
 */
static int
count_running(void)
{
	dlist_iter	it;
	int			n = 0;

	dlist_foreach(it, &requests)
		n += running(dlist_container(HttpRequest, node, it.cur)) ? 1 : 0;
	return n;
}

/*
 * query_gone: of the nrunning running requests, select the ids of the
 * steps that are no longer in_progress at the attempt that sent them
 * (cancelled, or reclaimed by another worker): one look-up by primary key
 * for each, in one statement.
 */
static void
query_gone(int nrunning)
{
	Oid			argtypes[2] = {INT8ARRAYOID, INT4ARRAYOID};
	Datum		values[2];
	Datum	   *ids = palloc(sizeof(Datum) * nrunning);
	Datum	   *attempts = palloc(sizeof(Datum) * nrunning);
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, &requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (!running(r) || n == nrunning)
			continue;
		ids[n] = Int64GetDatum(r->step.step_id);
		attempts[n++] = Int32GetDatum(r->step.attempts + 1);
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(attempts, n, INT4OID, sizeof(int32),
												true, TYPALIGN_INT));
	tasker_run_plan(tasker_keep_plan(&gone_plan,
			 "SELECT u.id FROM unnest($1::bigint[], $2::integer[]) AS u(id, attempt)"
			 " WHERE NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_steps s"
			 "                    WHERE s.workflow_step_id = u.id"
			 "                      AND s.current_state = 'in_progress'"
			 "                      AND s.attempts = u.attempt)",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
}

/*
 * abort_gone: when due (the latch was set, as a cancel does at commit, or
 * HTTP_CANCEL_EVERY_MS passed), abort the running requests whose steps
 * were cancelled or taken away, giving back their slots at once; their
 * outcome would be dropped anyway.  One short read-only transaction.
 * Returns the number aborted.
 */
static int
abort_gone(void)
{
	int			nrunning = count_running();
	int64	   *gone;
	uint64		ngone;
	uint64		i;
	int			n = 0;
	bool		wake = false;

	if (nrunning == 0 ||
		(!woken && !TimestampDifferenceExceeds(last_cancel_check, GetCurrentTimestamp(),
											   HTTP_CANCEL_EVERY_MS)))
		return 0;
	woken = false;
	last_cancel_check = GetCurrentTimestamp();
	begin_xact("tasker: looking for cancelled HTTP steps");
	query_gone(nrunning);
	ngone = SPI_processed;
	gone = MemoryContextAlloc(scratch_cxt, sizeof(int64) * Max(ngone, 1));
	for (i = 0; i < ngone; i++)
		gone[i] = DatumGetInt64(col(i, 1));
	commit_xact();
	for (i = 0; i < ngone; i++)
	{
		dlist_mutable_iter it;

		dlist_foreach_modify(it, &requests)
		{
			HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

			if (!running(r) || r->step.step_id != gone[i])
				continue;
			ereport(DEBUG1,
					(errmsg("tasker aborted the request of step " INT64_FORMAT ", which is no longer in progress",
							r->step.step_id)));
			wake |= free_request(r);
			n++;
		}
	}
	MemoryContextReset(scratch_cxt);
	if (wake)
		tasker_wake_workers();
	return n;
}

/*
 * reclaim_expired: record as failed attempts the in_progress steps whose
 * lease expired (their worker died or stalled), so they retry under the
 * normal rules; skips the steps this worker itself still runs.
 */
static int
reclaim_expired(int64 **tasks, int *ntasks)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(HTTP_RECLAIM_BATCH)};
	uint64		i;
	uint64		n;
	ClaimedStep *steps;
	int			count = 0;

	tasker_run_plan(tasker_keep_plan(&expired_plan,
			 "SELECT s.workflow_step_id, s.task_id, s.retryable, s.retry_limit, s.attempts"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 " CROSS JOIN LATERAL (" TASKER_LOCK_TASK_SQL
			 "       FOR NO KEY UPDATE OF t SKIP LOCKED) lt"
			 " WHERE s.lease_expires_at < clock_timestamp() AND s.current_state = 'in_progress'"
			 " ORDER BY s.lease_expires_at LIMIT $1"
			 " FOR NO KEY UPDATE OF s SKIP LOCKED",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	n = SPI_processed;
	steps = palloc0(sizeof(ClaimedStep) * Max(n, 1));
	*tasks = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		steps[i].step_id = DatumGetInt64(col(i, 1));
		steps[i].task_id = DatumGetInt64(col(i, 2));
		steps[i].retryable = DatumGetBool(col(i, 3));
		steps[i].retry_limit = DatumGetInt32(col(i, 4));
		steps[i].attempts = DatumGetInt32(col(i, 5)) - 1;
	}
	for (i = 0; i < n; i++)
	{
		dlist_iter	it;
		bool		mine = false;
		StepOutcome o;

		dlist_foreach(it, &requests)
			mine |= (dlist_container(HttpRequest, node, it.cur)->step.step_id == steps[i].step_id);
		if (mine)
			continue;
		memset(&o, 0, sizeof(o));
		o.retry_after = -1;
		fail(&o, HTTP_OUT_LEASE_EXPIRED,
			 pstrdup("the lease of the HTTP request expired before its outcome was recorded"),
			 "The worker that sent it stopped or stalled; the attempt counts as failed.", NULL);
		tasker_record_failure(&steps[i], &o);
		count_outcome(HTTP_OUT_LEASE_EXPIRED);
		(*tasks)[count++] = steps[i].task_id;
	}
	*ntasks = count;
	return count;
}

/*
 * query_candidates: lock up to limit ready HTTP steps of started tasks
 * and read what their requests need (the same envelope SQL handlers get).
 */
static void
query_candidates(int limit)
{
	Oid			argtypes[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int32GetDatum(limit),
	TimestampTzGetDatum(GetCurrentTimestamp())};

	tasker_run_plan(tasker_keep_plan(&candidates_plan,
			 "WITH claimed AS ("
			 "  SELECT s.workflow_step_id FROM @extschema@.tasker_workflow_steps s"
			 "   CROSS JOIN LATERAL (" TASKER_LOCK_TASK_SQL
			 "         AND t.current_state = 'in_progress'"
			 TASKER_CLAIM_INTENT_SQL
			 "       FOR NO KEY UPDATE OF t SKIP LOCKED) lt"
			 "   WHERE s.handler_kind = 'http'"
			 "     AND " TASKER_READY_STEP_SQL
			 "     AND s.next_attempt_at <= $2"
			 "   ORDER BY s.next_attempt_at, s.task_id"
			 "   LIMIT $1"
			 "   FOR NO KEY UPDATE OF s SKIP LOCKED)"
			 "SELECT s.workflow_step_id, s.task_id, s.current_state = 'error',"
			 "       s.retryable, s.retry_limit, s.attempts, COALESCE(s.timeout_seconds, 0),"
			 "       " TASKER_ENVELOPE_SQL
			 TASKER_CLAIMED_DETAILS_SQL,
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
}

/*
 * new_request: a request for row i of the candidates, in its own memory
 * context.
 */
static HttpRequest *
new_request(uint64 i)
{
	MemoryContext cxt = AllocSetContextCreate(http_cxt, "tasker http request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	HttpRequest *r = palloc0(sizeof(HttpRequest));
	JsonbValue	v;

	r->cxt = cxt;
	r->step.step_id = DatumGetInt64(col(i, 1));
	r->step.task_id = DatumGetInt64(col(i, 2));
	r->step.from_error = DatumGetBool(col(i, 3));
	r->step.retryable = DatumGetBool(col(i, 4));
	r->step.retry_limit = DatumGetInt32(col(i, 5));
	r->step.attempts = DatumGetInt32(col(i, 6));
	r->step.call.timeout_seconds = DatumGetInt32(col(i, 7));
	r->envelope = DatumGetJsonbPCopy(col(i, 8));
	if (getKeyJsonValueFromContainer(&r->envelope->root, "handler_config", 14, &v) &&
		v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
		r->config = v.val.binary.data;
	r->safe_url = "(no url)";
	initStringInfo(&r->response);
	initStringInfo(&r->resp_headers);
	MemoryContextSwitchTo(old);
	return r;
}

/*
 * start_attempt: count the attempt and move the step to in_progress with
 * a lease of its timeout plus a margin.
 */
static void
start_attempt(HttpRequest *r)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(r->step.step_id),
	Int32GetDatum(r->timeout_s + HTTP_LEASE_MARGIN_S)};

	if (r->step.from_error)
		tasker_transition(TASKER_ENTITY_STEP, r->step.step_id, TASKER_PENDING,
						  "{\"reason\": \"retry_backoff_elapsed\"}");
	tasker_run_plan(tasker_keep_plan(&attempt_plan,
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET attempts = attempts + 1, last_attempted_at = clock_timestamp(),"
			 "       lease_expires_at = clock_timestamp() + $2 * interval '1 second'"
			 " WHERE workflow_step_id = $1",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
	tasker_transition(TASKER_ENTITY_STEP, r->step.step_id, TASKER_IN_PROGRESS, NULL);
}

/*
 * take_candidate: prepare row i's request and reserve its slots; a step
 * whose request cannot be built fails for good at once.  Returns 1 when
 * the step was claimed or failed, 0 when it was left for later; sets
 * *full when no slot is left at all.
 */
static int
take_candidate(uint64 i, int64 *failed_task, bool *full)
{
	HttpRequest *r = new_request(i);
	MemoryContext old = MemoryContextSwitchTo(r->cxt);
	char	   *error = prepare_request(r);

	MemoryContextSwitchTo(old);
	dlist_push_tail(&requests, &r->node);
	if (error == NULL && !(r->reserved = reserve_slot(r->host_hash, full)))
	{
		(void) free_request(r);
		return 0;
	}
	start_attempt(r);
	if (error != NULL)
	{
		StepOutcome o;

		memset(&o, 0, sizeof(o));
		o.retry_after = -1;
		r->failure = error;
		r->done = true;
		ndone++;
		count_outcome(outcome_of(r, &o));
		tasker_record_failure(&r->step, &o);
		*failed_task = r->step.task_id;
		(void) free_request(r);
		return 1;
	}
	MemoryContextSwitchTo(r->cxt);
	setup_easy(r);
	MemoryContextSwitchTo(old);
	return 1;
}

/*
 * any_api_steps: whether any template has an api step; while none has,
 * the workers skip the claim query (it would scan the ready SQL steps).
 */
static bool
any_api_steps(void)
{
	tasker_run_plan(tasker_keep_plan(&api_steps_plan,
			 "SELECT EXISTS (SELECT 1 FROM @extschema@.tasker_named_tasks_named_steps"
			 "                WHERE handler_function IS NULL)",
			 0, NULL),
		NULL, NULL, SPI_OK_SELECT);
	return DatumGetBool(col(0, 1));
}

/*
 * claim_ready: claim as many ready HTTP steps as there are free slots, in
 * the caller's transaction; their requests are prepared, not started.
 */
static int
claim_ready(int nfree)
{
	int64	   *tasks;
	int			ntasks = 0;
	int			n = 0;
	uint64		i;
	uint64		ncand;
	bool		full = false;

	query_candidates(Min(nfree * 4, 1000));
	ncand = SPI_processed;
	tasks = palloc(sizeof(int64) * Max(ncand, 1));
	for (i = 0; i < ncand && !full; i++)
	{
		SPITupleTable *rows = SPI_tuptable;
		int64		failed = 0;

		n += take_candidate(i, &failed, &full);
		SPI_tuptable = rows;
		if (failed != 0)
			tasks[ntasks++] = failed;
	}
	tasker_finalize_tasks(tasks, ntasks);
	return n;
}

/*
 * claim: in one short transaction, reclaim expired leases (at most once a
 * second) and claim ready HTTP steps; after the commit, start their
 * requests.  Returns the steps moved.
 */
static int
claim(void)
{
	int			nfree = free_slots();
	bool		reclaim = TimestampDifferenceExceeds(last_reclaim, GetCurrentTimestamp(),
													 HTTP_RECLAIM_EVERY_MS);
	int64	   *tasks = NULL;
	int			ntasks = 0;
	int			n = 0;
	dlist_iter	it;

	if (!reclaim && (nfree == 0 || !api_steps_exist))
		return 0;
	begin_xact("tasker: claiming HTTP steps");
	if (reclaim)
	{
		last_reclaim = GetCurrentTimestamp();
		api_steps_exist = any_api_steps();
		n += reclaim_expired(&tasks, &ntasks);
		tasker_finalize_tasks(tasks, ntasks);
	}
	if (nfree > 0 && api_steps_exist)
		n += claim_ready(nfree);
	commit_xact();
	dlist_foreach(it, &requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (!r->done && r->started == 0)
			start_request(r);
	}
	fire_timer();
	return n;
}

/*
 * tasker_http_run: one turn of the HTTP executor: let curl make progress
 * without waiting, record what finished, and (when claim is set) claim
 * more work.  Returns the number of steps recorded or claimed.
 */
int
tasker_http_run(bool claim_new)
{
	int			n = 0;

	if (multi == NULL && !claim_new)
		return 0;
	http_init();
	(void) pump(0);
	collect_done();
	expire_overdue();
	if (ndone > 0)
		n += record_requests(false);
	n += abort_gone();
	if (claim_new)
		n += claim();
	return n;
}

/*
 * tasker_http_wait: the executor's sleep: wait on the latch and curl's
 * sockets until the latch is set, a request finishes, or timeout_ms
 * passes.  Without requests in flight it is a plain latch wait.
 */
void
tasker_http_wait(long timeout_ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		wait = (long) ((end - now) / 1000);

		if (timer_set)
			wait = Min(wait, (long) ((timer_at - now + 999) / 1000));
		if (pump(Max(wait, 0)))
		{
			woken = true;
			break;
		}
		collect_done();
		if (ndone > 0 || ProcDiePending || ConfigReloadPending ||
			GetCurrentTimestamp() >= end)
			break;
	}
}

/*
 * tasker_http_shutdown: the worker is asked to stop: record every request
 * still in flight as a failed attempt (it retries under the normal
 * rules), so the steps need not wait for their leases.  Interrupts are
 * held meanwhile; an error here leaves the steps to their leases.
 */
void
tasker_http_shutdown(void)
{
	if (multi == NULL || dlist_is_empty(&requests))
		return;
	HOLD_INTERRUPTS();
	collect_done();
	(void) record_requests(true);
	RESUME_INTERRUPTS();
}
