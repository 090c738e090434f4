# tasker_worker: the reference Python worker for tasker's external-worker
# protocol (tasker_claim_steps, tasker_complete_steps, tasker_fail_step,
# tasker_extend_lease, tasker_release_step).
#
# Rules: the public API is exactly what __all__ lists; everything else is
# internal.  Dependencies are the standard library and psycopg 3 only
# (Debian: python3-psycopg).  A handler is a function of one Step that
# returns a JSON-able result or raises (see errors.py for what each
# exception means).  Handlers register either on a Worker
# (@worker.handler / @worker.step) or, for modules loaded by the runner
# (python3 -m tasker_worker), on the module-level registry with the
# decorators below, which every Worker consults after its own.

from .errors import PermanentError, RetryError, StepError
from .registry import Registry, default_registry
from .step import Step
from .worker import Worker

__all__ = ["Worker", "Step", "PermanentError", "RetryError", "StepError", "Registry",
           "default_registry", "handler", "step"]

__version__ = "0.1.0"


def handler(handler_class):
    """Decorator: register fn(step) in the module-level registry for
    steps with this handler_class."""
    return default_registry.handler(handler_class)


def step(step_name):
    """Decorator: register fn(step) in the module-level registry for
    steps with this name."""
    return default_registry.step(step_name)
