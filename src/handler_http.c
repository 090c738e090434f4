/*-------------------------------------------------------------------------
 *
 * handler_http.c
 *		Run steps whose handler_config has type api: HTTP requests made
 *		asynchronously by the executor workers.  The entry points.
 *
 * The executor runs this kind through tasker_http_kind (handler.h): its
 * turn, tasker_http_run(), lets curl make progress, records the requests
 * that finished, aborts those whose steps were cancelled and claims more;
 * its wait hooks add curl's sockets and timer to the executor's own wait.
 * When asked to stop, the executor calls tasker_http_shutdown().  The work is done by the files the HTTP kind is
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
 * tasker_http_run: one turn of the HTTP kind: let curl make progress
 * without waiting, record what finished, and (when claim_new is set)
 * claim more work.  Returns the number of steps recorded or claimed.
 */
int
tasker_http_run(bool claim_new)
{
	int			n = 0;

	if (!http_multi_started() && !claim_new)
		return 0;
	http_multi_init();
	http_poll();
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

/*
 * The executor's wait, for the HTTP kind: curl's sockets, curl's timer.
 */
static void
http_add_wait_events(WaitEventSet *set)
{
	http_add_sockets(set, (void *) &tasker_http_kind);
}

static long
http_bound_wait(long timeout_ms)
{
	return http_until_timer(timeout_ms, GetCurrentTimestamp());
}

/*
 * http_after_wait: after the executor's wait, fire curl's timer and
 * collect the transfers that finished; true when there are outcomes to
 * record.  A set latch (a cancel wakes the workers at commit) makes the
 * next turn look for cancelled steps.
 */
static bool
http_after_wait(bool latch_set)
{
	if (latch_set)
		woken = true;
	if (!http_multi_started())
		return false;
	http_fire_timer();
	http_collect_done();
	return http_ndone() > 0;
}

/* The http kind: leased, outside any transaction, sockets in the wait. */
const TaskerHandlerKind tasker_http_kind = {
	.name = "http",
	.leased = true,
	.turn = tasker_http_run,
	.nwait_events = http_nsockets,
	.add_wait_events = http_add_wait_events,
	.bound_wait = http_bound_wait,
	.wait_event_fired = http_socket_ready,
	.after_wait = http_after_wait,
	.shutdown = tasker_http_shutdown,
};
