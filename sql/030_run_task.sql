-- 030_run_task: tasks driven to the end in this session by tasker_run_task,
-- with the code path the workers use (no worker runs in this database).
SET client_min_messages = warning;

-- A ledger records each handler run; its unique key proves that every step
-- ran exactly once in a committed transaction.
CREATE TABLE ledger (task_id bigint, step text, attempt int, seen jsonb,
                     UNIQUE (task_id, step));
CREATE FUNCTION record_step(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger VALUES ((step->>'task_id')::bigint, step->>'step_name',
                               (step->>'attempt')::int,
                               (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(step->'dependencies') k));
    RETURN jsonb_build_object('step', step->>'step_name', 'order', step #> '{context,order_id}');
END $$;
-- Fails on its first two attempts.
CREATE FUNCTION flaky(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (step->>'attempt')::int < 3 THEN
        RAISE EXCEPTION 'flaky failure on attempt %', step->>'attempt'
            USING DETAIL = 'Simulated.', HINT = 'Try again.';
    END IF;
    RETURN record_step(step);
END $$;
CREATE FUNCTION always_fails(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cannot do this (attempt %)', step->>'attempt';
END $$;
CREATE FUNCTION refuses(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker_permanent_error('order is closed');
    RETURN NULL;
END $$;

-- The diamond: start -> (left, right) -> merge; right is flaky.
SELECT tasker_register_template($$
name: diamond
step_templates:
  - name: start
    handler_class: record_step
  - name: left
    depends_on_step: start
    handler_class: record_step
  - name: right
    depends_on_step: start
    handler_class: flaky
    default_retry_limit: 3
  - name: merge
    depends_on_steps: [left, right]
    handler_class: record_step
$$) > 0 AS registered;

SELECT tasker_create_task('diamond', '{"order_id": 7}') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');

-- Every step ran once, after its parents, and saw its parents' results.
SELECT step, attempt, seen FROM ledger WHERE task_id = :task ORDER BY step;
SELECT n.name, s.current_state, s.attempts, s.results
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;
-- The flaky step's history: two failures, two retries, then success.
SELECT t.from_state, t.to_state, t.sort_key, t.metadata
  FROM tasker_workflow_step_transitions t
  JOIN tasker_workflow_steps s USING (workflow_step_id)
  JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task AND n.name = 'right' ORDER BY t.sort_key;
SELECT from_state, to_state, metadata FROM tasker_task_transitions
 WHERE task_id = :task ORDER BY sort_key;
SELECT status, total_steps, completed_steps, execution_status, completion_percentage, health_status
  FROM tasker_task_execution_context(:task);

-- A step that keeps failing exhausts its retries; the other branch still
-- runs to completion, then the task fails.
SELECT tasker_register_template($$
name: exhausted
step_templates:
  - name: first
    handler_class: record_step
  - name: doomed
    depends_on_step: first
    handler_class: always_fails
    default_retry_limit: 2
  - name: sibling
    depends_on_step: first
    handler_class: record_step
  - name: after_doomed
    depends_on_step: doomed
    handler_class: record_step
$$) > 0 AS registered;
SELECT tasker_create_task('exhausted', '{}') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');
SELECT n.name, s.current_state, s.attempts, s.retryable, s.next_attempt_at IS NULL AS no_more_attempts,
       s.results #>> '{error,message}' AS error
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;
SELECT execution_status, recommended_action, health_status, failed_steps
  FROM tasker_task_execution_context(:task);
SELECT metadata FROM tasker_task_transitions WHERE task_id = :task AND most_recent;

-- An operator settles the failed step by hand: its dependent runs and the
-- task completes.
SELECT workflow_step_id AS doomed FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task AND n.name = 'doomed' \gset
SELECT tasker_resolve_step(:doomed, '{"resolved_by": "ops"}');
SELECT current_state FROM tasker_tasks WHERE task_id = :task;
SELECT tasker_run_task(:task, '30 seconds');
SELECT step FROM ledger WHERE task_id = :task ORDER BY step;

-- A permanent error is never retried, even with retries left.
SELECT tasker_register_template($$
name: closed_order
step_templates:
  - name: check
    handler_class: refuses
    default_retry_limit: 5
$$) > 0 AS registered;
SELECT tasker_create_task('closed_order', '{}') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');
SELECT s.attempts, s.retryable, s.results->'error' AS error
  FROM tasker_workflow_steps s WHERE s.task_id = :task;

-- tasker_retry_task gives the task and its failed step a fresh start.
SELECT tasker_retry_task(:task);
SELECT s.current_state, s.attempts, s.retryable
  FROM tasker_workflow_steps s WHERE s.task_id = :task;
SELECT from_state, to_state, metadata FROM tasker_task_transitions
 WHERE task_id = :task ORDER BY sort_key;
-- invalid input: only a task in error can be retried
SELECT tasker_retry_task(:task);

-- Cancelling a task cancels its pending steps.
SELECT tasker_create_task('diamond', '{"order_id": 8}') AS task \gset
SELECT tasker_cancel_task(:task, 'customer withdrew');
SELECT n.name, s.current_state FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;
SELECT tasker_run_task(:task, '1 second');
SELECT count(*) AS ledger_rows FROM ledger WHERE task_id = :task;
SELECT tasker_cancel_task(:task);
-- invalid input: a cancelled task cannot be retried
SELECT tasker_retry_task(:task);

-- bypass_steps start as resolved_manually and release their dependents.
SELECT tasker_create_task('diamond', '{"order_id": 9}', bypass_steps => '{right}') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');
SELECT step FROM ledger WHERE task_id = :task ORDER BY step;

-- Cancelling a step blocks its dependents; the task fails once the rest is done.
SELECT tasker_create_task('diamond', '{"order_id": 10}') AS task \gset
SELECT workflow_step_id AS right_step FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task AND n.name = 'right' \gset
SELECT tasker_cancel_step(:right_step);
SELECT tasker_run_task(:task, '30 seconds');
SELECT n.name, s.current_state FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;
-- A cancelled step can be resolved by hand (issue 15 C17).
SELECT tasker_resolve_step(:right_step);

-- invalid input: unknown task and step ids
SELECT tasker_run_task(-1);
SELECT tasker_cancel_task(-1);
SELECT tasker_resolve_step(-1);
-- invalid input: a negative timeout
SELECT tasker_run_task(1, '-1 second');
-- invalid input: waiting needs the workers, which this database does not run
SELECT tasker_wait_for_task(1, '1 second');

-- identity_key: a repeated create returns the first task and creates nothing.
SELECT tasker_create_task('diamond', '{"order_id": 11}', identity_key => 'order-11') AS first \gset
SELECT tasker_create_task('diamond', '{"order_id": 11}', identity_key => 'order-11') = :first AS same_task;
SELECT count(*) AS tasks_with_order_11 FROM tasker_tasks WHERE context @> '{"order_id": 11}';
-- ... scoped to the template: another template may use the same key.
SELECT tasker_create_task('exhausted', '{}', identity_key => 'order-11') <> :first AS other_task;

-- Creation defaults and arguments are stored.
SELECT t.initiator, t.source_system, t.reason, t.tags, t.bypass_steps, t.complete, t.current_state
  FROM tasker_tasks t WHERE t.task_id = :first;
SELECT tasker_create_task('diamond', '{"order_id": 12}', initiator => 'ops', source_system => 'crm',
                          reason => 'manual', tags => '{urgent,vip}') AS task \gset
SELECT initiator, source_system, reason, tags FROM tasker_tasks WHERE task_id = :task;

-- invalid input: an unknown template
SELECT tasker_create_task('no_such_template', '{}');
-- invalid input: an unknown namespace
SELECT tasker_create_task('diamond', '{}', namespace => 'nowhere');
-- invalid input: an unknown version
SELECT tasker_create_task('diamond', '{}', version => '9.9.9');
-- invalid input: a context that is not an object
SELECT tasker_create_task('diamond', '[1, 2]');
-- invalid input: a NULL context
SELECT tasker_create_task('diamond', NULL);
-- invalid input: bypassing a step the template does not have
SELECT tasker_create_task('diamond', '{}', bypass_steps => '{left,nowhere}');
-- invalid input: NULL inside tags
SELECT tasker_create_task('diamond', '{}', tags => ARRAY['a', NULL]);
-- invalid input: a context that breaks the template's schema
SELECT tasker_register_template($$
name: typed
schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: integer, minimum: 1}
    priority: {enum: [low, high]}
step_templates:
  - name: only
    handler_class: record_step
$$) > 0 AS registered;
SELECT tasker_create_task('typed', '{"order_id": 0, "priority": "urgent"}');
SELECT tasker_create_task('typed', '{"priority": "low"}');
-- ... nothing was created by the failed calls.
SELECT count(*) AS typed_tasks FROM tasker_tasks t JOIN tasker_named_tasks n USING (named_task_id)
 WHERE n.name = 'typed';
SELECT tasker_create_task('typed', '{"order_id": 3}') > 0 AS created;

-- timeout_seconds: a handler that runs too long is cancelled, and the
-- attempt fails with the statement-timeout SQLSTATE; the session's own
-- statement_timeout is left as it was.
CREATE FUNCTION sleeper(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT '{"slept": true}'::jsonb FROM pg_sleep(5) $$;
SELECT tasker_register_template($$
name: too_slow
step_templates:
  - name: nap
    handler_class: sleeper
    timeout_seconds: 1
    default_retryable: false
$$) > 0 AS registered;
SET statement_timeout = '20s';
SELECT tasker_create_task('too_slow', '{}') AS task \gset
SELECT tasker_run_task(:task, '10 seconds');
SELECT s.attempts, s.results #>> '{error,sqlstate}' AS sqlstate, s.results #>> '{error,message}' AS message
  FROM tasker_workflow_steps s WHERE s.task_id = :task;
SHOW statement_timeout;
RESET statement_timeout;

-- A handler that cancels its own step decides its outcome: the step stays
-- cancelled (its results are not recorded), and the run goes on.
CREATE FUNCTION self_cancel(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker_cancel_step((step->>'step_id')::bigint);
    RETURN '{}';
END $$;
SELECT tasker_register_template($$
name: self_cancel
step_templates:
  - name: odd
    handler_class: self_cancel
  - name: fine
    handler_class: record_step
$$) > 0 AS registered;
SELECT tasker_create_task('self_cancel', '{"order_id": 99}') AS task \gset
SELECT tasker_run_task(:task, '10 seconds');
SELECT n.name, s.current_state, s.retryable, s.results #>> '{error,message}' AS error
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;
SELECT step FROM ledger WHERE task_id = :task;
