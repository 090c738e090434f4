# tasker_worker/errors.py: the exceptions a handler raises to say how its
# step failed, and how a failure becomes the error object tasker stores.
#
# Rules: a handler's outcome is decided here and nowhere else.  Returning
# is success; PermanentError fails the step for good (retryable = false);
# RetryError asks for a retry, optionally after a delay (tasker caps it with
# tasker.max_backoff); any other exception is a retryable failure.  The
# error object always has "message" (what tasker stores as the step's
# error message), "class" and "backtrace" (the Python traceback as a list
# of lines, as tasker-engine names it); a handler may add JSON-able keys
# with details=.  Stdlib only.

import traceback

# A runaway recursion must not make the stored error megabytes long.
MAX_BACKTRACE_LINES = 200


class StepError(Exception):
    """Base of the exceptions that decide a step's outcome.

    message is the stored error message; details, a dict of JSON-able
    values, is merged into the stored error object (it cannot replace
    "message", "class" or "backtrace").
    """

    retryable = True

    def __init__(self, message="", details=None):
        super().__init__(message)
        self.message = str(message)
        self.details = dict(details or {})


class PermanentError(StepError):
    """The step failed and must not be retried (retryable = false)."""

    retryable = False


class RetryError(StepError):
    """The step failed and should be retried, after `after` seconds if
    given (a number >= 0; None keeps tasker's exponential backoff)."""

    def __init__(self, message="", after=None, details=None):
        super().__init__(message, details)
        if after is not None:
            after = float(after)
            if after < 0:
                raise ValueError("RetryError after= must be >= 0 seconds")
        self.after = after


def error_object(exc):
    """Return (error dict, retryable, retry_after seconds or None) for an
    exception raised by a handler."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = cls.__module__ + "." + name
    message = exc.message if isinstance(exc, StepError) else str(exc)
    if not message:
        message = cls.__name__
    err = {}
    if isinstance(exc, StepError):
        err.update(exc.details)
    err["message"] = message
    err["class"] = name
    lines = "".join(traceback.format_exception(cls, exc, exc.__traceback__)).splitlines()
    if len(lines) > MAX_BACKTRACE_LINES:
        lines = lines[:1] + ["..."] + lines[-(MAX_BACKTRACE_LINES - 2):]
    err["backtrace"] = lines
    retryable = getattr(exc, "retryable", True) if isinstance(exc, StepError) else True
    after = exc.after if isinstance(exc, RetryError) else None
    return err, retryable, after
