# tasker_worker/worker.py: the Worker: claims steps of one queue, runs
# their handlers on a pool of threads, reports outcomes, keeps leases alive
# and shuts down cleanly.
#
# Rules:
# - Three kinds of thread, each with its own connection where it needs
#   one: the claimer (long-polls tasker_claim_steps), `concurrency` handler
#   threads (run handlers; no connection), and the reporter (records
#   completions in batches, failures, releases and heartbeats, in that
#   order, on one connection).  The thread that calls run() only waits
#   and orchestrates shutdown; it installs the signal handlers.
# - A claimed step is "held" from its claim until its outcome is settled
#   (recorded, already recorded, or its lease lost).  Held steps are at
#   most concurrency + prefetch; every held step's lease is extended once a
#   heartbeat fraction of it has passed, whether it is queued, running or
#   waiting to be reported.  The held table and each step's state change
#   only under self._cond.  States: queued -> running -> reporting ->
#   (gone); queued -> released (shutdown); running -> abandoned (shutdown,
#   grace over); any -> lost (heartbeat found the lease gone).
# - Correctness rests on the lease, not on this process: every connection
#   error is met by closing, backing off and reconnecting; a claim in
#   flight is simply retried; an outcome not yet known to be recorded is
#   sent again (tasker answers "already recorded" for a retried claim).
# - Delivery is at least once: a handler whose lease is lost (a crash, a
#   partition, a shutdown past its grace) may run again elsewhere.

import json
import logging
import os
import queue as queue_module
import random
import signal
import socket
import threading
import time

import psycopg

from . import db
from .errors import error_object
from .registry import Registry, default_registry
from .step import Step

log = logging.getLogger("tasker_worker")

_EXIT = object()


def _first_line(exc):
    """libpq's messages run over several lines; a log line takes one."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class _Held:
    """A claimed step and its bookkeeping; mutated under Worker._cond."""

    __slots__ = ("step_id", "token", "step", "leased_at", "state")

    def __init__(self, step_id, token, step, leased_at):
        self.step_id = step_id
        self.token = token
        self.step = step
        self.leased_at = leased_at
        self.state = "queued"


class _Backoff:
    """Exponential backoff with jitter for reconnecting: 0.1 s doubling
    to `cap` seconds, reset by a success."""

    def __init__(self, cap=5.0):
        self.cap = cap
        self.delay = 0.0

    def next(self):
        self.delay = min(self.cap, max(0.1, self.delay * 2))
        return self.delay * random.uniform(0.8, 1.2)

    def reset(self):
        self.delay = 0.0


class Worker:
    """A worker for one tasker queue.

    dsn: a libpq connection string; queue: the queue to claim from;
    concurrency: handler threads; worker_id: recorded with each claim
    (default host:pid); lease: seconds a claim is held before tasker may
    reclaim it, renewed by heartbeats; claim_wait: seconds one claim call
    long-polls; prefetch: steps claimed beyond the free handler threads;
    batch_size: most steps per claim call; grace: seconds in-flight
    handlers get at shutdown; heartbeat: the fraction of the lease after
    which a held step's lease is extended (None: never); schema: the
    extension's schema if it is not on the search_path.
    """

    def __init__(self, dsn, queue, concurrency=4, worker_id=None, lease=30.0,
                 claim_wait=10.0, prefetch=None, batch_size=100, grace=25.0,
                 heartbeat=1.0 / 3, schema=None):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease < 1:
            raise ValueError("lease must be at least 1 second")
        if heartbeat is not None and not 0 < heartbeat < 1:
            raise ValueError("heartbeat must be a fraction of the lease, between 0 and 1")
        self.dsn = dsn
        self.queue = queue
        self.concurrency = int(concurrency)
        self.worker_id = worker_id or "%s:%d" % (socket.gethostname(), os.getpid())
        self.lease = float(lease)
        self.claim_wait = float(claim_wait)
        self.prefetch = self.concurrency if prefetch is None else int(prefetch)
        self.batch_size = int(batch_size)
        self.grace = float(grace)
        self.heartbeat = heartbeat
        self.registry = Registry()
        self._sql = db.Statements(schema)
        self._cond = threading.Condition()
        self._held = {}
        self._work = queue_module.Queue()
        self._reports = queue_module.Queue()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._claim_cancel = None
        self._in_claim = False
        self._threads = []

    # ---- registration ---------------------------------------------------

    def handler(self, handler_class):
        """Decorator: fn(step) handles steps with this handler_class."""
        return self.registry.handler(handler_class)

    def step(self, step_name):
        """Decorator: fn(step) handles steps with this name."""
        return self.registry.step(step_name)

    def find_handler(self, step):
        """This worker's handler for a Step, then the default registry's."""
        return self.registry.find(step) or default_registry.find(step)

    # ---- running --------------------------------------------------------

    def run(self, install_signal_handlers=True):
        """Run until stop() or SIGTERM/SIGINT, then shut down gracefully
        and return.  Signal handlers are installed only in the main
        thread."""
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        self._start_threads()
        log.info("worker %s: claiming from queue %r with %d handler threads",
                 self.worker_id, self.queue, self.concurrency)
        while not self._stopping.wait(1.0):
            pass
        self._shutdown()

    def stop(self, hurry=False):
        """Ask run() to stop (thread-safe); hurry cuts the grace short."""
        if hurry:
            self._hurry.set()
        self._stopping.set()

    def _on_signal(self, signum, frame):
        if self._stopping.is_set():
            log.warning("second signal: releasing in-flight steps now")
            self._hurry.set()
        else:
            log.info("signal %d: stopping (grace %.0f s)", signum, self.grace)
        self._stopping.set()

    def _start_threads(self):
        specs = [("tasker-claimer", self._claim_loop), ("tasker-reporter", self._report_loop)]
        specs += [("tasker-handler-%d" % i, self._handler_loop) for i in range(self.concurrency)]
        for name, target in specs:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    # ---- shutdown -------------------------------------------------------

    def _shutdown(self):
        """Stop claiming, release queued steps, give running handlers the
        grace period, release what is still running, flush the reports."""
        claimer, reporter = self._threads[0], self._threads[1]
        while claimer.is_alive():
            cancel = self._claim_cancel
            if self._in_claim and cancel is not None:
                try:
                    cancel.cancel()
                except psycopg.Error:
                    pass
            claimer.join(0.5)
        with self._cond:
            for h in self._held.values():
                if h.state == "queued":
                    h.state = "released"
                    self._reports.put(("release", h))
            deadline = time.monotonic() + self.grace
            while (any(h.state == "running" for h in self._held.values())
                   and not self._hurry.is_set() and time.monotonic() < deadline):
                self._cond.wait(0.1)
            for h in self._held.values():
                if h.state == "running":
                    log.warning("step %d still running after the grace period: releasing it",
                                h.step_id)
                    h.state = "abandoned"
                    self._reports.put(("release", h))
        for _ in range(self.concurrency):
            self._work.put(None)
        self._reports.put(_EXIT)
        reporter.join()
        log.info("worker %s stopped", self.worker_id)

    # ---- claiming -------------------------------------------------------

    def _capacity(self):
        return self.concurrency + self.prefetch - len(self._held)

    def _claim_loop(self):
        conn = None
        backoff = _Backoff()
        while not self._stopping.is_set():
            with self._cond:
                while self._capacity() <= 0 and not self._stopping.is_set():
                    self._cond.wait(1.0)
                n = min(self._capacity(), self.batch_size)
            if self._stopping.is_set():
                break
            try:
                if conn is None:
                    conn = db.connect(self.dsn, "tasker_worker claim " + self.worker_id)
                    db.watch_client(conn)
                    self._claim_cancel = conn.pgconn.get_cancel()
                    if backoff.delay:
                        log.info("claimer reconnected")
                self._in_claim = True
                try:
                    rows = self._sql.claim(conn, self.queue, self.worker_id, n,
                                           self.lease, self.claim_wait)
                finally:
                    self._in_claim = False
                backoff.reset()
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                conn = self._claim_error(conn, exc, backoff)
                continue
            # A long poll claims at its end: the leases start about now.
            self._enqueue(rows, time.monotonic())
        if conn is not None:
            conn.close()

    def _claim_error(self, conn, exc, backoff):
        """Log a failed claim and back off; returns the connection to keep
        (None when it had to be closed)."""
        if db.is_broken(conn, exc):
            if not backoff.delay:
                log.warning("claimer has no connection (%s); reconnecting", _first_line(exc))
            if conn is not None:
                conn.close()
            conn = None
        else:
            log.error("claim failed: %s", exc)
        self._stopping.wait(backoff.next())
        return conn

    def _enqueue(self, rows, leased_at):
        with self._cond:
            for step_id, token, _expires, envelope in rows:
                h = _Held(step_id, token, Step(envelope, step_id), leased_at)
                self._held[step_id] = h
                self._work.put(h)

    # ---- handlers -------------------------------------------------------

    def _handler_loop(self):
        while True:
            h = self._work.get()
            if h is None:
                return
            with self._cond:
                if h.state != "queued":
                    continue
                h.state = "running"
            outcome = self._run_handler(h)
            with self._cond:
                if h.state == "running":
                    h.state = "reporting"
                    self._reports.put(outcome)
                else:
                    log.warning("step %d finished after its lease was %s; outcome dropped",
                                h.step_id, "released" if h.state == "abandoned" else "lost")

    def _run_handler(self, h):
        """Run h's handler: ("complete", h, results_json) or ("fail", h,
        error, retryable, retry_after)."""
        step = h.step
        fn = self.find_handler(step)
        if fn is None:
            err = {"message": "no handler registered for handler_class %r or step %r in worker %s"
                   % (step.handler_class, step.step_name, self.worker_id),
                   "class": "tasker_worker.HandlerNotFound"}
            return ("fail", h, err, True, None)
        try:
            results = json.dumps(fn(step), allow_nan=False, separators=(",", ":"))
        except BaseException as exc:    # sys.exit() in a handler must not kill its thread
            err, retryable, after = error_object(exc)
            if retryable:
                log.info("step %d (%s) failed, retryable: %s", h.step_id, step.step_name,
                         err["message"])
            else:
                log.info("step %d (%s) failed permanently: %s", h.step_id, step.step_name,
                         err["message"])
            return ("fail", h, err, retryable, after)
        return ("complete", h, results)

    # ---- reporting ------------------------------------------------------

    def _report_loop(self):
        conn = None
        backoff = _Backoff()
        pending = []
        exiting = False
        flush_deadline = None
        tick = min(1.0, self.lease * (self.heartbeat or 0.5) / 2)
        while True:
            exiting = self._collect(pending, tick) or exiting
            if exiting and flush_deadline is None:
                flush_deadline = time.monotonic() + max(5.0, self.grace)
            try:
                if conn is None and (pending or self._held):
                    conn = db.connect(self.dsn, "tasker_worker report " + self.worker_id)
                    if backoff.delay:
                        log.info("reporter reconnected")
                if conn is not None:
                    self._send(conn, pending)
                    if self.heartbeat and not exiting:
                        self._heartbeats(conn)
                backoff.reset()
            except psycopg.Error as exc:
                if conn is not None and not db.is_broken(conn, exc):
                    log.error("reporting failed: %s", exc)
                else:
                    if not backoff.delay:
                        log.warning("reporter has no connection (%s); reconnecting",
                                    _first_line(exc))
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(backoff.next())
            if exiting and (not pending or time.monotonic() > flush_deadline):
                break
        if pending:
            log.error("could not report %d outcomes before exiting; their leases will expire",
                      len(pending))
        if conn is not None:
            conn.close()

    def _collect(self, pending, tick):
        """Move queued reports into pending, waiting up to tick for the
        first when there is nothing to send; True once _EXIT was seen."""
        exiting = False
        try:
            item = self._reports.get(timeout=tick) if not pending else self._reports.get_nowait()
            while True:
                if item is _EXIT:
                    exiting = True
                else:
                    pending.append(item)
                item = self._reports.get_nowait()
        except queue_module.Empty:
            pass
        return exiting

    def _send(self, conn, pending):
        """Record pending outcomes, removing each from the list once it is
        settled; a connection error leaves the rest for the next try."""
        done = [o for o in pending if o[0] == "complete"]
        if len(done) > 1:
            batch = done[:1000]
            try:
                n = self._sql.complete_many(conn, [(o[1].step_id, o[1].token, o[2])
                                                   for o in batch])
            except psycopg.Error as exc:
                if db.is_broken(conn, exc):
                    raise
                n = -1      # one by one below finds the element tasker refused
            if n == len(batch):
                for o in batch:
                    self._settle(pending, o, db.RECORDED)
        while pending:
            o = pending[0]
            self._settle(pending, o, self._send_one(conn, o))

    def _send_one(self, conn, o):
        kind, h = o[0], o[1]
        try:
            if kind == "complete":
                return self._sql.complete(conn, h.step_id, h.token, o[2])
            if kind == "fail":
                return self._sql.fail(conn, h.step_id, h.token, o[2], o[3], o[4])
            return self._sql.release(conn, h.step_id, h.token)
        except psycopg.Error as exc:
            if db.is_broken(conn, exc):
                raise
            if kind != "complete":
                log.error("step %d: %s refused (%s); its lease will expire", h.step_id, kind, exc)
                return db.LOST
            # tasker refused the results (too large, ...): fail the attempt
            # instead, so that the step does not wait for its lease.
            err = {"message": "tasker refused the step's results: %s" % exc,
                   "class": "%s.%s" % (type(exc).__module__, type(exc).__qualname__)}
        return self._send_one(conn, ("fail", h, err, True, None))

    def _settle(self, pending, o, result):
        kind, h = o[0], o[1]
        pending.remove(o)
        if result == db.LOST:
            log.warning("step %d: lease lost, %s not recorded (the step was reclaimed or its "
                        "task cancelled)", h.step_id, kind)
        with self._cond:
            if self._held.get(h.step_id) is h:
                del self._held[h.step_id]
            self._cond.notify_all()

    def _heartbeats(self, conn):
        """Extend the lease of every held step that is a heartbeat
        fraction into its lease."""
        now = time.monotonic()
        with self._cond:
            due = [h for h in self._held.values()
                   if h.state in ("queued", "running", "reporting")
                   and now - h.leased_at >= self.lease * self.heartbeat]
        for h in due:
            sent = time.monotonic()
            expires = self._sql.extend(conn, h.step_id, h.token, self.lease)
            with self._cond:
                if expires != db.LOST:
                    h.leased_at = sent
                elif h.state in ("queued", "running"):
                    # A reporting step's outcome is being sent: _settle
                    # logs the loss and forgets it.
                    log.warning("step %d: lease lost while %s (reclaimed, or its task "
                                "cancelled)", h.step_id, h.state)
                    h.state = "lost"
                    if self._held.get(h.step_id) is h:
                        del self._held[h.step_id]
                    self._cond.notify_all()

