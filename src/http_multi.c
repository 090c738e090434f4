/*-------------------------------------------------------------------------
 *
 * http_multi.c
 *		HTTP steps: the curl multi handle of an executor and the requests
 *		in flight on it.
 *
 * Each executor owns one non-blocking curl multi handle and the list of
 * its requests, from claim to record (http_requests).  A prepared request
 * gets an easy handle here; it is handed to curl only after its claim
 * committed.  The executor's wait (worker.c) sleeps on a WaitEventSet
 * holding the process latch and the sockets curl asked to watch, and
 * wakes for curl's timer, so SIGTERM, a reload and new work are seen at
 * once while requests are in flight.  A finished transfer is marked done,
 * unless it is a redirect the step asked to follow: tasker follows
 * redirects itself, checking each destination as it checked the first.
 * No request outlives its timeout: one still running a second after it
 * ends here as timed out, whatever curl's timer does.
 *
 * Freeing a request gives back its concurrency slots (http_limits.c), and
 * an exit callback gives back those of the requests still listed when the
 * worker exits.  Nothing here opens a transaction or runs SQL: the
 * network I/O happens between the worker's short transactions.  Memory:
 * each request has its own context under "tasker http", freed with it.
 *
 * IDENTIFICATION
 *		src/http_multi.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "guc.h"
#include "http_internal.h"

#define HTTP_MAX_REDIRECTS		5

/* A socket curl asked us to watch. */
typedef struct HttpSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT or _INOUT */
} HttpSocket;

/* The requests of this worker, from claim to record. */
dlist_head	http_requests = DLIST_STATIC_INIT(http_requests);

static CURLM *multi = NULL;
static MemoryContext http_cxt = NULL;
static MemoryContext scratch_cxt = NULL;
static int	ndone = 0;
static HttpSocket *sockets = NULL;
static int	nsockets = 0;
static int	maxsockets = 0;
static bool timer_set = false;
static TimestampTz timer_at = 0;

/*
 * release_at_exit: when the worker exits, give back the slots of its
 * requests (a crash resets shared memory instead).
 */
static void
release_at_exit(int code, Datum arg)
{
	dlist_iter	it;

	if (!http_limits_attached())
		return;
	dlist_foreach(it, &http_requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (r->reserved)
			(void) http_release_slot(r->host_hash);
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
 * http_multi_init: create the multi handle, once per worker process.
 */
void
http_multi_init(void)
{
	if (multi != NULL)
		return;
	if (!http_limits_attached())
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
 * http_setup_easy: create the easy handle of a prepared request.  TLS peers
 * are verified; redirects are never followed by curl (tasker follows them
 * itself when asked, checking each destination).
 */
void
http_setup_easy(HttpRequest *r)
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
	curl_easy_setopt(e, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	set_method(r);
}

/*
 * http_start_request: hand a claimed request to curl (after its claim
 * committed).
 */
void
http_start_request(HttpRequest *r)
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
 * http_free_request: forget a request, giving back its slot.  Returns whether
 * another worker waits for a slot.
 */
bool
http_free_request(HttpRequest *r)
{
	bool		wake = false;

	dlist_delete(&r->node);
	if (r->done)
		ndone--;
	if (r->reserved)
		wake = http_release_slot(r->host_hash);
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
	r->failure = http_check_destination(r, location);
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
 * http_collect_done: take the finished transfers from curl.
 */
void
http_collect_done(void)
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
 * http_fire_timer: call curl when its timer is due.
 */
void
http_fire_timer(void)
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
 * http_nsockets: how many sockets curl asks to be watched.
 */
int
http_nsockets(void)
{
	return multi != NULL ? nsockets : 0;
}

/*
 * http_add_sockets: add curl's sockets to a wait event set, each with
 * user_data.
 */
void
http_add_sockets(WaitEventSet *set, void *user_data)
{
	int			i;

	for (i = 0; multi != NULL && i < nsockets; i++)
		AddWaitEventToSet(set,
						  ((sockets[i].what & CURL_POLL_IN) ? WL_SOCKET_READABLE : 0) |
						  ((sockets[i].what & CURL_POLL_OUT) ? WL_SOCKET_WRITEABLE : 0),
						  sockets[i].fd, NULL, user_data);
}

/*
 * http_socket_ready: let curl act on a socket the wait found ready.
 */
void
http_socket_ready(const WaitEvent *event)
{
	int			flags = 0;
	int			running;

	if (event->events & WL_SOCKET_READABLE)
		flags |= CURL_CSELECT_IN;
	if (event->events & WL_SOCKET_WRITEABLE)
		flags |= CURL_CSELECT_OUT;
	if (flags != 0 && multi != NULL)
		curl_multi_socket_action(multi, event->fd, flags, &running);
}

/*
 * http_poll: let curl act, without waiting, on the sockets that are ready
 * and on its timer.
 */
void
http_poll(void)
{
	WaitEventSet *set;
	WaitEvent  *events;
	int			n;
	int			i;
	MemoryContext old;

	ensure_contexts();
	old = MemoryContextSwitchTo(scratch_cxt);
	set = tasker_create_wait_event_set(nsockets + 1);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	http_add_sockets(set, NULL);
	events = palloc(sizeof(WaitEvent) * (nsockets + 1));
	n = WaitEventSetWait(set, 0, events, nsockets + 1, PG_WAIT_EXTENSION);
	FreeWaitEventSet(set);
	for (i = 0; i < n; i++)
		http_socket_ready(&events[i]);
	http_fire_timer();
	MemoryContextSwitchTo(old);
	MemoryContextReset(scratch_cxt);
}

/*
 * http_running: whether a request is on the network (handed to curl and not
 * finished).
 */
bool
http_running(HttpRequest *r)
{
	return !r->done && r->started != 0 && r->easy != NULL;
}

/*
 * http_expire_overdue: a request still running a second after its timeout (curl
 * should have ended it) ends now as timed out, so no request outlives its
 * timeout whatever curl's timer does.
 */
void
http_expire_overdue(void)
{
	dlist_iter	it;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach(it, &http_requests)
	{
		HttpRequest *r = dlist_container(HttpRequest, node, it.cur);

		if (!http_running(r) ||
			now < TimestampTzPlusMilliseconds(r->started, (r->timeout_s + 1) * 1000L))
			continue;
		curl_multi_remove_handle(multi, r->easy);
		r->result = CURLE_OPERATION_TIMEDOUT;
		r->done = true;
		ndone++;
	}
}

/*
 * http_count_running: the number of running requests.
 */
int
http_count_running(void)
{
	dlist_iter	it;
	int			n = 0;

	dlist_foreach(it, &http_requests)
		n += http_running(dlist_container(HttpRequest, node, it.cur)) ? 1 : 0;
	return n;
}

/*
 * http_multi_started: whether this process has its multi handle.
 */
bool
http_multi_started(void)
{
	return multi != NULL;
}

/*
 * http_memory: the context requests are allocated under.
 */
MemoryContext
http_memory(void)
{
	ensure_contexts();
	return http_cxt;
}

/*
 * http_scratch_memory: a context for what must outlive a transaction but
 * not the current turn; its user resets it.
 */
MemoryContext
http_scratch_memory(void)
{
	ensure_contexts();
	return scratch_cxt;
}

/*
 * http_mark_done: a request that never reached curl (it could not be
 * built) is finished.
 */
void
http_mark_done(HttpRequest *r)
{
	r->done = true;
	ndone++;
}

/*
 * http_ndone: how many listed requests are finished and not yet recorded.
 */
int
http_ndone(void)
{
	return ndone;
}

/*
 * http_until_timer: wait_ms from now, shortened to when curl's timer is
 * due.
 */
long
http_until_timer(long wait_ms, TimestampTz now)
{
	if (timer_set)
		wait_ms = Min(wait_ms, (long) ((timer_at - now + 999) / 1000));
	return wait_ms;
}
