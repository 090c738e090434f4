# tasker_worker/db.py: every SQL statement the worker sends, and how a
# connection to tasker is opened and judged broken.
#
# Rules: this module owns the worker's SQL (no statement text elsewhere);
# every value is a bound parameter, and the schema, the only name pasted
# into the text, is quoted as an identifier.  Connections are in
# autocommit mode, so each call is its own transaction and a claim commits
# at once (the protocol requires it).  A call returns a plain outcome; it
# raises only psycopg errors, and classifies a lost lease (SQLSTATE TK003)
# as the outcome LOST instead of raising it.  Connections are not shared
# between threads: each thread of the worker opens its own.

import datetime
import json

import psycopg
from psycopg import conninfo

LEASE_LOST = "TK003"

# Outcomes of recording one step.
RECORDED = "recorded"      # this call recorded it
DUPLICATE = "duplicate"    # the same claim was already recorded (a retried call)
LOST = "lost"              # the lease was lost: reclaimed, or the task cancelled


def connect(dsn, application_name):
    """An autocommit connection; application_name applies unless the DSN
    sets one."""
    kwargs = {"autocommit": True}
    try:
        given = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = {}
    if "application_name" not in given:
        kwargs["application_name"] = application_name
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = 10
    return psycopg.connect(dsn, **kwargs)


def watch_client(conn, ms=1000):
    """Have the server check every ms that this client is still there
    while a statement runs (PostgreSQL 14+, Linux): a long-poll claim of a
    killed worker then ends within a second instead of claiming steps for
    nobody (they would wait out their lease, an attempt lost).  Where the
    setting is refused, claims work as before."""
    try:
        conn.execute("SET client_connection_check_interval = %d" % int(ms))
    except psycopg.Error:
        if conn.broken:
            raise


def is_broken(conn, exc):
    """True when exc means conn is unusable and must be reopened (the
    server went away, restarted or terminated the session)."""
    if conn is None or conn.closed or conn.broken:
        return True
    # An administrator's or the server's shutdown (57P01..57P03) leaves the
    # socket open for a moment but the session is gone.
    return getattr(exc, "sqlstate", None) in ("57P01", "57P02", "57P03")


def is_lost(exc):
    return getattr(exc, "sqlstate", None) == LEASE_LOST


def seconds(s):
    return datetime.timedelta(seconds=float(s))


class Statements:
    """The worker's statements, qualified with the extension's schema if
    one is given (None: found through the search_path)."""

    def __init__(self, schema=None):
        p = ""
        if schema:
            p = '"' + schema.replace('"', '""') + '".'
        self.claim_sql = (
            "SELECT step_id, claim_token::text, lease_expires_at, envelope"
            " FROM %stasker_claim_steps(%%s, %%s, %%s, %%s::interval, %%s::interval)" % p)
        self.complete_many_sql = "SELECT %stasker_complete_steps(%%s::jsonb)" % p
        self.complete_sql = "SELECT %stasker_complete_step(%%s, %%s::uuid, %%s::jsonb)" % p
        self.fail_sql = ("SELECT %stasker_fail_step(%%s, %%s::uuid, %%s::jsonb, %%s, %%s::interval)"
                         % p)
        self.extend_sql = "SELECT %stasker_extend_lease(%%s, %%s::uuid, %%s::interval)" % p
        self.release_sql = "SELECT %stasker_release_step(%%s, %%s::uuid)" % p

    def claim(self, conn, queue, worker_id, max_steps, lease, wait):
        """Claim up to max_steps steps, waiting up to `wait` seconds for one:
        a list of (step_id, claim_token, lease_expires_at, envelope)."""
        return conn.execute(self.claim_sql, (queue, worker_id, int(max_steps),
                                             seconds(lease), seconds(wait))).fetchall()

    def complete_many(self, conn, items):
        """Record [(step_id, claim_token, results_json_text)] in one
        statement; returns how many were recorded."""
        body = ",".join('{"step_id":%d,"claim_token":"%s","results":%s}' % item
                        for item in items)
        return conn.execute(self.complete_many_sql, ("[" + body + "]",)).fetchone()[0]

    def complete(self, conn, step_id, token, results_json):
        return self._record(conn, self.complete_sql, (step_id, token, results_json))

    def fail(self, conn, step_id, token, error, retryable, retry_after):
        after = None if retry_after is None else seconds(retry_after)
        return self._record(conn, self.fail_sql,
                            (step_id, token, json.dumps(error), bool(retryable), after))

    def release(self, conn, step_id, token):
        return self._record(conn, self.release_sql, (step_id, token))

    def extend(self, conn, step_id, token, lease):
        """Extend a lease: the new expiry, or LOST."""
        try:
            return conn.execute(self.extend_sql, (step_id, token, seconds(lease))).fetchone()[0]
        except psycopg.Error as exc:
            if is_lost(exc):
                return LOST
            raise

    @staticmethod
    def _record(conn, sql, params):
        try:
            done = conn.execute(sql, params).fetchone()[0]
        except psycopg.Error as exc:
            if is_lost(exc):
                return LOST
            raise
        return RECORDED if done else DUPLICATE
