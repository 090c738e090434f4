# tasker_worker/step.py: the Step a handler receives, built from the
# envelope that tasker_claim_steps returns.
#
# Rules: a Step is read-only data for the handler; the claim's bookkeeping
# (claim token, lease) lives in the worker, not here, so a handler cannot
# complete or release its own step behind the worker's back.  Every
# envelope key of the protocol is an attribute; keys tasker adds later are
# still reachable through step.envelope.  Stdlib only.


class Step:
    """One claimed step, as its handler sees it.

    Attributes: task_id, step_id, step_name, attempt (1-based), namespace,
    task_name, version, context (the task's context), inputs,
    dependencies (parent step name -> that step's results),
    handler_config, handler_class, queue, and envelope (the whole dict).
    """

    __slots__ = ("task_id", "step_id", "step_name", "attempt", "namespace",
                 "task_name", "version", "context", "inputs", "dependencies",
                 "handler_config", "handler_class", "queue", "envelope")

    def __init__(self, envelope, step_id=None):
        env = envelope or {}
        self.envelope = env
        self.task_id = env.get("task_id")
        self.step_id = env.get("step_id", step_id)
        self.step_name = env.get("step_name")
        self.attempt = env.get("attempt")
        self.namespace = env.get("namespace")
        self.task_name = env.get("task_name")
        self.version = env.get("version")
        self.context = env.get("context") or {}
        self.inputs = env.get("inputs") or {}
        self.dependencies = env.get("dependencies") or {}
        self.handler_config = env.get("handler_config") or {}
        self.handler_class = env.get("handler_class")
        self.queue = env.get("queue")

    def __repr__(self):
        return ("Step(task_id=%r, step_id=%r, step_name=%r, attempt=%r, handler_class=%r)"
                % (self.task_id, self.step_id, self.step_name, self.attempt,
                   self.handler_class))
