#!/usr/bin/env python3
"""contrib/opentelemetry/tasker_otlp.py: export tasker's spans as OTLP JSON.

    python3 tasker_otlp.py --dsn 'dbname=app' [--after EVENT_ID] [--once]
                           [--endpoint http://collector:4318/v1/traces]

A small listener for tasker's W3C trace context (docs/tracing.md).  It
reads the durable event log (tasker_events_since) from --after on; for
each task that finished (task.completed, task.failed, task.cancelled,
task.resolved_manually) it reads the task's spans (tasker_task_spans)
and turns them into one OTLP/JSON ExportTraceServiceRequest: the task's
span, child of the span of whoever created the task, and one span per
step attempt under it.  Each request is printed as one line of JSON on
standard output, or, with --endpoint, POSTed to an OpenTelemetry
collector's OTLP/HTTP receiver (JSON encoding).  Without --once it then
waits on LISTEN tasker_events and goes on; it prints the last event id
it handled on standard error, so a restart can pass it as --after and
lose nothing (the log, not NOTIFY, is the source).

Rules: python3 and python3-psycopg only (urllib for --endpoint); it reads
through the reader level's functions, so a role granted tasker_reader is
enough; it never writes to the database.
"""
import argparse
import json
import select
import sys
import urllib.request

import psycopg

FINISHED = ("task.completed", "task.failed", "task.cancelled", "task.resolved_manually")
STATUS = {"ok": 1, "error": 2}          # OTLP STATUS_CODE_OK, STATUS_CODE_ERROR
KIND_INTERNAL, KIND_CLIENT = 1, 3       # OTLP SPAN_KIND_*


def nanos(ts):
    """A timestamptz as OTLP's unix nanoseconds, a decimal string."""
    return str(int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000)


def attribute(key, value):
    """One OTLP KeyValue."""
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_span(row):
    """A row of tasker_task_spans as an OTLP span."""
    trace_id, span_id, parent, name, start, end, status, attrs = row
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": KIND_CLIENT if attrs.get("tasker.handler_kind") == "http" else KIND_INTERNAL,
        "startTimeUnixNano": nanos(start),
        "endTimeUnixNano": nanos(end or start),
        "attributes": [attribute(k, v) for k, v in sorted(attrs.items())],
        "status": {"code": STATUS.get(status, 0)},
    }
    if parent:
        span["parentSpanId"] = parent
    if status == "error" and "error.message" in attrs:
        span["status"]["message"] = attrs["error.message"]
    return span


def export_request(rows):
    """The spans of one task as an OTLP ExportTraceServiceRequest."""
    return {"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", "tasker")]},
        "scopeSpans": [{
            "scope": {"name": "tasker"},
            "spans": [otlp_span(r) for r in rows],
        }],
    }]}


def send(request, endpoint):
    """Print the request as one JSON line, or POST it to a collector."""
    body = json.dumps(request, separators=(",", ":"))
    if endpoint is None:
        print(body, flush=True)
        return
    req = urllib.request.Request(endpoint, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def catch_up(conn, after, endpoint):
    """Handle every logged event after the id after; returns the last id."""
    while True:
        rows = conn.execute("SELECT event_id, event FROM tasker_events_since(%s, 1000)",
                            (after,)).fetchall()
        if not rows:
            return after
        for event_id, event in rows:
            if event.get("event") in FINISHED and event.get("trace_id"):
                spans = conn.execute(
                    "SELECT trace_id, span_id, parent_span_id, name, start_time, end_time,"
                    "       status, attributes FROM tasker_task_spans(%s)",
                    (event["task_id"],)).fetchall()
                if spans:
                    send(export_request(spans), endpoint)
            after = event_id
        print("tasker_otlp: handled up to event %d" % after, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    parser.add_argument("--after", type=int, default=0, help="start after this event id")
    parser.add_argument("--once", action="store_true", help="export what is logged, then exit")
    parser.add_argument("--endpoint", help="OTLP/HTTP traces URL (default: print JSON lines)")
    args = parser.parse_args()

    conn = psycopg.connect(args.dsn, autocommit=True)
    if not args.once:
        conn.execute("LISTEN tasker_events")
    after = catch_up(conn, args.after, args.endpoint)
    while not args.once:
        # A notification only wakes us; the log says what happened.
        select.select([conn.fileno()], [], [], 10)
        after = catch_up(conn, after, args.endpoint)


if __name__ == "__main__":
    main()
