/*-------------------------------------------------------------------------
 *
 * handler_http.c
 *		Run steps whose handler_config has type api: HTTP requests made
 *		asynchronously by the executor workers.  The entry points.
 *
 * The executor's loop calls tasker_http_run(), which lets curl make
 * progress, records the requests that finished, aborts those whose steps
 * were cancelled and claims more; and tasker_http_wait(), which sleeps on
 * the latch and curl's sockets together.  When asked to stop it calls
 * tasker_http_shutdown().  The work is done by the files the HTTP kind is
 * split into by phase (see http_internal.h): http_steps.c (the short
 * transactions: claim with a lease, record, reclaim, cancel), http_multi.c
 * (curl's multi handle and the requests in flight), http_request.c
 * (building a request), http_outcome.c (response -> outcome) and
 * http_limits.c (shared slots and counters).
 *
 * Invariant: no transaction is open during network I/O; these functions
 * are called between the executor's transactions, never inside one.
 *
 * IDENTIFICATION
 *		src/handler_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/timestamp.h"

#include "handler_http.h"
#include "http_internal.h"

static bool woken = false;		/* the latch was set since the last check */

/*
 * tasker_http_run: one turn of the HTTP executor: let curl make progress
 * without waiting, record what finished, and (when claim is set) claim
 * more work.  Returns the number of steps recorded or claimed.
 */
int
tasker_http_run(bool claim_new)
{
	int			n = 0;

	if (!http_multi_started() && !claim_new)
		return 0;
	http_multi_init();
	(void) http_pump(0);
	http_collect_done();
	http_expire_overdue();
	if (http_ndone() > 0)
		n += http_record_requests(false);
	n += http_abort_gone(&woken);
	if (claim_new)
		n += http_claim();
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
		long		wait = http_until_timer((long) ((end - now) / 1000), now);

		if (http_pump(Max(wait, 0)))
		{
			woken = true;
			break;
		}
		http_collect_done();
		if (http_ndone() > 0 || ProcDiePending || ConfigReloadPending ||
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
	if (!http_multi_started() || dlist_is_empty(&http_requests))
		return;
	HOLD_INTERRUPTS();
	http_collect_done();
	(void) http_record_requests(true);
	RESUME_INTERRUPTS();
}
