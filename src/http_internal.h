/*-------------------------------------------------------------------------
 *
 * http_internal.h
 *		HTTP steps: what the files of the HTTP handler kind share.
 *
 * The HTTP kind is split by phase, one concern a file:
 *	handler_http.c	the entry points the executor calls (run, wait, shutdown)
 *	http_steps.c	the short transactions: claim with a lease, record
 *					outcomes, reclaim expired leases, find cancelled steps
 *	http_request.c	a request from the step envelope and handler_config,
 *					and the rules of what an api handler_config may hold
 *	http_multi.c	the curl multi handle: easy handles, sockets and timer
 *					in the executor's wait, the requests in flight
 *	http_outcome.c	a finished request -> StepOutcome
 *	http_limits.c	concurrency slots and counters in shared memory
 *	http_preview.c	tasker_http_preview: a request built, not sent
 * Calls go one way: handler_http calls http_steps and http_multi;
 * http_steps calls http_multi, http_request, http_outcome and http_limits;
 * http_multi calls http_request (to check a redirect's destination) and
 * http_limits; http_preview calls http_request; nothing calls back into a
 * file that calls it.  Only these files include <curl/curl.h>.  Not for
 * use outside them: the rest of tasker sees handler_http.h (the
 * executor's entry points, the preview), http_limits.h (the shared state,
 * for shmem.c, and its counters) and http_request.h (the rules of an api
 * handler_config, for template_check.c).
 *
 * IDENTIFICATION
 *		src/http_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HTTP_INTERNAL_H
#define TASKER_HTTP_INTERNAL_H

#include "postgres.h"

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/palloc.h"

#include "handler.h"
#include "http_limits.h"
#include "step.h"

/* The User-Agent of every request. */
#define HTTP_USER_AGENT			"tasker"
/* Most bytes of response headers kept. */
#define HTTP_HEADERS_MAX		65536
/* Longest a request may take, whatever its step or the settings say. */
#define HTTP_MAX_TIMEOUT_S		86400

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

/* http_request.c */
extern HttpRequest *http_request_new(const ClaimedStep *c, MemoryContext parent);
extern char *http_request_prepare(HttpRequest *r);
extern char *http_check_destination(HttpRequest *r, const char *url);

/* http_multi.c */
extern dlist_head http_requests;
extern bool http_multi_started(void);
extern void http_multi_init(void);
extern MemoryContext http_memory(void);
extern MemoryContext http_scratch_memory(void);
extern void http_setup_easy(HttpRequest *r);
extern void http_start_request(HttpRequest *r);
extern void http_mark_done(HttpRequest *r);
extern bool http_free_request(HttpRequest *r);
extern bool http_running(HttpRequest *r);
extern int	http_count_running(void);
extern int	http_ndone(void);
extern void http_poll(void);
extern int	http_nsockets(void);
extern void http_add_sockets(WaitEventSet *set, void *user_data);
extern void http_socket_ready(const WaitEvent *event);
extern void http_collect_done(void);
extern void http_fire_timer(void);
extern void http_expire_overdue(void);
extern long http_until_timer(long wait_ms, TimestampTz now);

/* http_outcome.c */
extern HttpOutcome http_outcome_of(HttpRequest *r, StepOutcome *o);
extern HttpOutcome http_fail(StepOutcome *o, HttpOutcome kind, char *message,
							 const char *detail, const char *hint);

/* http_steps.c */
extern int	http_record_requests(bool all);
extern int	http_abort_gone(bool *woken);
extern int	http_claim(void);

#endif							/* TASKER_HTTP_INTERNAL_H */
