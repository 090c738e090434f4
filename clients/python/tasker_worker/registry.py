# tasker_worker/registry.py: which Python function handles a step.
#
# Rules: a handler is found by the step's handler_class first, then by its
# step name; the first match wins and there is no fallback beyond that (a
# step nobody handles fails, retryably, so a worker of a newer release on
# the same queue can take its retry).  A Registry is filled at import time
# and only read while the worker runs, so it needs no lock.  The
# module-level `default_registry` is what the tasker_worker.handler and
# tasker_worker.step decorators fill; every Worker consults it after its
# own registrations.  Stdlib only.


class Registry:
    """Handlers by handler_class and by step name."""

    def __init__(self):
        self.by_class = {}
        self.by_step = {}

    def handler(self, handler_class):
        """Decorator: register fn for steps whose handler_class is
        handler_class."""
        return self._decorator(self.by_class, handler_class, "handler_class")

    def step(self, step_name):
        """Decorator: register fn for steps named step_name."""
        return self._decorator(self.by_step, step_name, "step name")

    @staticmethod
    def _decorator(table, key, what):
        if not isinstance(key, str) or not key:
            raise TypeError("a %s must be a non-empty string" % what)

        def register(fn):
            if not callable(fn):
                raise TypeError("a handler must be callable")
            table[key] = fn
            return fn
        return register

    def find(self, step):
        """The function for a Step, or None."""
        fn = None
        if step.handler_class:
            fn = self.by_class.get(step.handler_class)
        if fn is None and step.step_name:
            fn = self.by_step.get(step.step_name)
        return fn

    def __len__(self):
        return len(self.by_class) + len(self.by_step)


default_registry = Registry()
