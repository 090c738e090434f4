# tasker_worker/__main__.py: the runner,
#   python3 -m tasker_worker --dsn DSN --queue Q --module MOD [options]
#
# Rules: each --module is imported in order; a module registers its
# handlers at import time with @tasker_worker.handler / @tasker_worker.step,
# and/or defines register(worker), which the runner calls with the Worker.
# A run that registers no handler at all is refused (exit 2), so a typo in
# a module name cannot become a worker that fails every step.  The process
# exits 0 after a graceful stop (SIGTERM, SIGINT), 2 on bad arguments
# (including a connection string libpq cannot parse).
# Options map one to one onto Worker's arguments.

import argparse
import importlib
import logging
import os
import sys

import psycopg
from psycopg import conninfo

from . import Worker, default_registry


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m tasker_worker",
                                description="Run tasker steps of one queue with Python handlers.")
    p.add_argument("--dsn", default=os.environ.get("TASKER_DSN", ""),
                   help="libpq connection string (default: $TASKER_DSN, else libpq's PG* variables)")
    p.add_argument("--queue", required=True, help="the queue to claim steps from")
    p.add_argument("--module", action="append", required=True, metavar="MODULE",
                   help="a module that registers handlers (repeatable)")
    p.add_argument("--concurrency", type=int, default=4, help="handler threads (default 4)")
    p.add_argument("--prefetch", type=int, default=None,
                   help="steps claimed beyond the free threads (default: concurrency)")
    p.add_argument("--batch-size", type=int, default=100, help="most steps per claim (default 100)")
    p.add_argument("--worker-id", default=None, help="recorded with each claim (default host:pid)")
    p.add_argument("--lease", type=float, default=30.0, help="lease in seconds (default 30)")
    p.add_argument("--claim-wait", type=float, default=10.0,
                   help="seconds one claim long-polls (default 10)")
    p.add_argument("--grace", type=float, default=25.0,
                   help="seconds in-flight steps get at shutdown (default 25)")
    p.add_argument("--no-heartbeat", action="store_true",
                   help="never extend leases (a handler must finish within the lease)")
    p.add_argument("--schema", default=None, help="tasker's schema if not on the search_path")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s")
    try:
        conninfo.conninfo_to_dict(args.dsn)
    except psycopg.ProgrammingError as exc:
        print("tasker_worker: bad --dsn: %s" % exc, file=sys.stderr)
        return 2
    try:
        worker = Worker(args.dsn, args.queue, concurrency=args.concurrency,
                        worker_id=args.worker_id, lease=args.lease, claim_wait=args.claim_wait,
                        prefetch=args.prefetch, batch_size=args.batch_size, grace=args.grace,
                        heartbeat=None if args.no_heartbeat else 1.0 / 3, schema=args.schema)
    except ValueError as exc:
        print("tasker_worker: %s" % exc, file=sys.stderr)
        return 2
    for name in args.module:
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if callable(register):
            register(worker)
    if not len(worker.registry) and not len(default_registry):
        print("tasker_worker: the modules %s register no handler" % ", ".join(args.module),
              file=sys.stderr)
        return 2
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
