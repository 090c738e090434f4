# bench/pyworker_handlers.py: the handler bench/run's pyworker workload
# runs in one `python3 -m tasker_worker` process.
#
# Rules: trivial on purpose, so the workload measures the protocol and the
# worker, not the handler; it returns the wall-clock time at which it
# started (time.time(), the same clock as the server's commit timestamps
# on this machine), which the pickup-latency measure reads back.

import time

import tasker_worker


@tasker_worker.handler("BenchOnly")
@tasker_worker.step("only")
def only(step):
    return {"started": time.time()}
