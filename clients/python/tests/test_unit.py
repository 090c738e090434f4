# clients/python/tests/test_unit.py: unit tests of tasker_worker that need
# no server: outcomes of handlers, the error object, handler lookup, the
# batch body, and the reporter's fallback from a short batch to one-by-one
# calls, against a fake statement layer.
#
# Rules: stdlib unittest only; no network, no threads left running, no
# sleeping.  Run with
#   PYTHONPATH=clients/python /usr/bin/python3 -m unittest discover -s clients/python/tests
# (test/tap/080_python_worker.pl runs it too).

import json
import logging
import unittest

import tasker_worker
from tasker_worker import PermanentError, RetryError, Step, Worker, db
from tasker_worker.errors import MAX_BACKTRACE_LINES, error_object
from tasker_worker.worker import _Held

# The reporter logs lost leases as warnings; the tests provoke them.
logging.getLogger("tasker_worker").setLevel(logging.CRITICAL)

ENVELOPE = {"task_id": 7, "step_id": 70, "step_name": "charge", "attempt": 2,
            "namespace": "pay", "task_name": "order", "version": "1.0.0",
            "context": {"amount": 5}, "inputs": {}, "handler_config": {"type": "worker"},
            "dependencies": {"validate": {"ok": True}}, "handler_class": "ChargeHandler",
            "queue": "payments"}


def held(step_id=70, token="00000000-0000-0000-0000-000000000001", envelope=None):
    env = dict(envelope or ENVELOPE, step_id=step_id)
    h = _Held(step_id, token, Step(env), 0.0)
    h.state = "reporting"
    return h


class FakeConn:
    closed = False
    broken = False


class FakeStatements:
    """Records calls; complete_many records only the step ids in `good`."""

    def __init__(self, good=(), lost=(), refuse=()):
        self.good, self.lost, self.refuse = set(good), set(lost), set(refuse)
        self.calls = []

    def complete_many(self, conn, items):
        self.calls.append(("complete_many", [i[0] for i in items]))
        return sum(1 for i in items if i[0] in self.good)

    def complete(self, conn, step_id, token, results):
        self.calls.append(("complete", step_id))
        if step_id in self.refuse:
            raise tasker_worker.worker.psycopg.errors.InvalidParameterValue("too large")
        if step_id in self.lost:
            return db.LOST
        return db.DUPLICATE if step_id in self.good else db.RECORDED

    def fail(self, conn, step_id, token, error, retryable, after):
        self.calls.append(("fail", step_id, error["message"], retryable, after))
        return db.RECORDED

    def release(self, conn, step_id, token):
        self.calls.append(("release", step_id))
        return db.RECORDED


class ErrorObjectTest(unittest.TestCase):
    def test_plain_exception_is_retryable(self):
        try:
            raise KeyError("missing")
        except KeyError as exc:
            err, retryable, after = error_object(exc)
        self.assertEqual(err["message"], "'missing'")
        self.assertEqual(err["class"], "KeyError")
        self.assertTrue(retryable)
        self.assertIsNone(after)
        self.assertTrue(any("raise KeyError" in line for line in err["backtrace"]))

    def test_permanent_with_details(self):
        err, retryable, after = error_object(
            PermanentError("card declined", details={"code": 51, "message": "ignored"}))
        self.assertFalse(retryable)
        self.assertEqual(err["message"], "card declined")
        self.assertEqual(err["code"], 51)
        self.assertEqual(err["class"], "tasker_worker.errors.PermanentError")

    def test_retry_after(self):
        err, retryable, after = error_object(RetryError("busy", after=2.5))
        self.assertTrue(retryable)
        self.assertEqual(after, 2.5)
        with self.assertRaises(ValueError):
            RetryError("x", after=-1)

    def test_empty_message_names_the_class(self):
        err, _, _ = error_object(ValueError())
        self.assertEqual(err["message"], "ValueError")

    def test_backtrace_is_capped(self):
        def down(n):
            if n == 0:
                raise RuntimeError("deep")
            down(n - 1)
        try:
            down(400)
        except RuntimeError as exc:
            err, _, _ = error_object(exc)
        self.assertLessEqual(len(err["backtrace"]), MAX_BACKTRACE_LINES)
        self.assertIn("RuntimeError: deep", err["backtrace"][-1])


class RegistryTest(unittest.TestCase):
    def test_class_wins_over_step_name(self):
        w = Worker("", "q")
        w.step("charge")(lambda s: "by name")
        self.assertEqual(w.find_handler(Step(ENVELOPE))(None), "by name")
        w.handler("ChargeHandler")(lambda s: "by class")
        self.assertEqual(w.find_handler(Step(ENVELOPE))(None), "by class")

    def test_default_registry_is_consulted_after_the_worker(self):
        w = Worker("", "q")
        tasker_worker.step("only_global")(lambda s: "global")
        try:
            self.assertEqual(w.find_handler(Step({"step_name": "only_global"}))(None), "global")
            self.assertIsNone(w.find_handler(Step({"step_name": "nobody"})))
        finally:
            del tasker_worker.default_registry.by_step["only_global"]

    def test_bad_names_are_refused(self):
        with self.assertRaises(TypeError):
            Worker("", "q").handler("")


class StepTest(unittest.TestCase):
    def test_attributes(self):
        s = Step(ENVELOPE)
        self.assertEqual((s.task_id, s.step_id, s.step_name, s.attempt, s.queue),
                         (7, 70, "charge", 2, "payments"))
        self.assertEqual(s.dependencies["validate"], {"ok": True})
        self.assertEqual(s.context["amount"], 5)
        with self.assertRaises(AttributeError):
            s.claim_token = "x"

    def test_missing_keys_default_to_empty(self):
        s = Step({"step_id": 1})
        self.assertEqual((s.context, s.inputs, s.dependencies, s.handler_config), ({}, {}, {}, {}))


class RunHandlerTest(unittest.TestCase):
    def setUp(self):
        self.w = Worker("", "q")

    def test_success_serialises_compactly(self):
        self.w.handler("ChargeHandler")(lambda s: {"charged": s.context["amount"]})
        h = held()
        self.assertEqual(self.w._run_handler(h), ("complete", h, '{"charged":5}'))

    def test_unserialisable_result_is_a_retryable_failure(self):
        self.w.handler("ChargeHandler")(lambda s: {"x": float("nan")})
        kind, _, err, retryable, _ = self.w._run_handler(held())
        self.assertEqual((kind, retryable), ("fail", True))
        self.assertEqual(err["class"], "ValueError")

    def test_no_handler_is_a_retryable_failure(self):
        kind, _, err, retryable, _ = self.w._run_handler(held())
        self.assertEqual((kind, retryable), ("fail", True))
        self.assertIn("no handler registered", err["message"])

    def test_sys_exit_in_a_handler_is_a_failure(self):
        def h(step):
            raise SystemExit(3)
        self.w.handler("ChargeHandler")(h)
        kind, _, err, retryable, _ = self.w._run_handler(held())
        self.assertEqual((kind, err["class"], retryable), ("fail", "SystemExit", True))

    def test_permanent(self):
        def h(step):
            raise PermanentError("declined")
        self.w.handler("ChargeHandler")(h)
        kind, _, err, retryable, after = self.w._run_handler(held())
        self.assertEqual((kind, err["message"], retryable, after), ("fail", "declined", False, None))


class ReporterTest(unittest.TestCase):
    def setUp(self):
        self.w = Worker("", "q")

    def send(self, fake, outcomes):
        self.w._sql = fake
        for o in outcomes:
            self.w._held[o[1].step_id] = o[1]
        pending = list(outcomes)
        self.w._send(FakeConn(), pending)
        self.assertEqual(pending, [])
        self.assertEqual(self.w._held, {})
        return fake.calls

    def test_full_batch_is_one_call(self):
        outs = [("complete", held(i), "{}") for i in (1, 2, 3)]
        calls = self.send(FakeStatements(good={1, 2, 3}), outs)
        self.assertEqual(calls, [("complete_many", [1, 2, 3])])

    def test_short_batch_falls_back_to_one_by_one(self):
        outs = [("complete", held(i), "{}") for i in (1, 2, 3)]
        calls = self.send(FakeStatements(good={1, 3}, lost={2}), outs)
        self.assertEqual(calls, [("complete_many", [1, 2, 3]), ("complete", 1),
                                 ("complete", 2), ("complete", 3)])

    def test_single_completion_skips_the_batch(self):
        calls = self.send(FakeStatements(), [("complete", held(5), "{}")])
        self.assertEqual(calls, [("complete", 5)])

    def test_refused_results_fail_the_attempt(self):
        calls = self.send(FakeStatements(refuse={5}), [("complete", held(5), "{}")])
        self.assertEqual(calls[0], ("complete", 5))
        self.assertEqual(calls[1][0:2], ("fail", 5))
        self.assertIn("refused the step's results", calls[1][2])

    def test_failures_and_releases_in_order(self):
        outs = [("fail", held(1), {"message": "m"}, False, None), ("release", held(2))]
        calls = self.send(FakeStatements(), outs)
        self.assertEqual(calls, [("fail", 1, "m", False, None), ("release", 2)])


class StatementsTest(unittest.TestCase):
    def test_schema_is_quoted(self):
        s = db.Statements('my"schema')
        self.assertIn('"my""schema".tasker_claim_steps(', s.claim_sql)
        self.assertIn("tasker_complete_steps(%s::jsonb)", db.Statements().complete_many_sql)

    def test_batch_body_is_json(self):
        seen = []

        class Conn:
            def execute(self, sql, params):
                seen.append(params[0])

                class R:
                    def fetchone(self):
                        return (2,)
                return R()
        n = db.Statements().complete_many(Conn(), [(1, "t1", '{"a":1}'), (2, "t2", "null")])
        self.assertEqual(n, 2)
        self.assertEqual(json.loads(seen[0]), [
            {"step_id": 1, "claim_token": "t1", "results": {"a": 1}},
            {"step_id": 2, "claim_token": "t2", "results": None}])


if __name__ == "__main__":
    unittest.main()
