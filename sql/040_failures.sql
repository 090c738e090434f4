-- 040_failures: what a failed attempt leaves behind (issue 15 D21) and
-- which SQLSTATEs are retried (D22), driven by tasker_run_task.
SET client_min_messages = warning;

CREATE TABLE d22_items (id int PRIMARY KEY);
INSERT INTO d22_items VALUES (1);
-- Fails on its first attempt with a plain (retryable) error.
CREATE FUNCTION once_flaky(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (step->>'attempt')::int < 2 THEN
        RAISE EXCEPTION 'gateway busy on attempt %', step->>'attempt'
            USING DETAIL = 'Simulated.', ERRCODE = 'P0001';
    END IF;
    RETURN '{"ok": true}';
END $$;
CREATE FUNCTION divides_by_zero(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RETURN jsonb_build_object('x', 1 / ((step->>'attempt')::int - 1));
END $$;
CREATE FUNCTION duplicates(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO d22_items VALUES (1);
    RETURN '{}';
END $$;
CREATE FUNCTION reads_missing_table(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE 'SELECT * FROM no_such_table';
    RETURN '{}';
END $$;
CREATE FUNCTION raises_p0001(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'always';
END $$;

-- D21: the first attempt's error stays in its transition after the retry
-- succeeded (the step's results only hold the last outcome).
SELECT tasker_register_template($$
name: d21_flaky
step_templates:
  - name: pay
    handler_class: once_flaky
$$) > 0 AS registered;
SELECT tasker_create_task('d21_flaky') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');
SELECT tr.from_state, tr.to_state, tr.metadata - 'error' AS metadata,
       tr.metadata #>> '{error,message}' AS message,
       tr.metadata #>> '{error,sqlstate}' AS sqlstate,
       tr.metadata #>> '{error,detail}' AS detail,
       tr.metadata #>> '{error,attempt}' AS attempt
  FROM tasker_workflow_step_transitions tr
  JOIN tasker_workflow_steps s USING (workflow_step_id)
 WHERE s.task_id = :task ORDER BY tr.sort_key;

-- D22: by default, data exceptions (22), integrity violations (23) and
-- undefined objects (42) fail at once, whatever attempts are left; other
-- errors are retried.
SELECT tasker_register_template($$
name: d22_defaults
step_templates:
  - name: zero
    handler_class: divides_by_zero
  - name: dup
    handler_class: duplicates
  - name: missing
    handler_class: reads_missing_table
$$) > 0 AS registered;
SELECT tasker_create_task('d22_defaults') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');
SELECT n.name, s.current_state, s.attempts, s.retryable,
       s.results #>> '{error,sqlstate}' AS sqlstate,
       s.results #>> '{error,permanent}' AS permanent,
       (SELECT tr.metadata->>'final' FROM tasker_workflow_step_transitions tr
         WHERE tr.workflow_step_id = s.workflow_step_id AND tr.to_state = 'error'
         ORDER BY tr.sort_key DESC LIMIT 1) AS final
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY n.name;

-- Per-step overrides: a code or a class in retry_sqlstates is retried, one
-- in permanent_sqlstates is not; a full code wins over its class.
SELECT tasker_register_template($$
name: d22_overrides
step_templates:
  - name: zero
    handler_class: divides_by_zero
    default_retry_limit: 2
    retry_sqlstates: ["22012"]
  - name: dup
    handler_class: duplicates
    permanent_sqlstates: ["23505"]
    retry_sqlstates: ["23"]
  - name: plain
    handler_class: raises_p0001
    permanent_sqlstates: [P0]
$$) > 0 AS registered;
SELECT tasker_create_task('d22_overrides') AS task \gset
SELECT tasker_run_task(:task, '30 seconds');
SELECT n.name, s.current_state, s.attempts,
       s.results #>> '{error,sqlstate}' AS sqlstate
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY n.name;
SELECT n.name, l.permanent_sqlstates, l.retry_sqlstates
  FROM tasker_named_tasks_named_steps l JOIN tasker_named_steps n USING (named_step_id)
  JOIN tasker_named_tasks t USING (named_task_id)
 WHERE t.name = 'd22_overrides' ORDER BY n.name;

\set VERBOSITY default
-- invalid input: not a SQLSTATE
SELECT tasker_register_template($$
name: d22_bad
step_templates:
  - name: a
    handler_class: raises_p0001
    permanent_sqlstates: ["2350"]
$$);
-- invalid input: lower case is not a SQLSTATE
SELECT tasker_register_template($$
name: d22_bad
step_templates:
  - name: a
    handler_class: raises_p0001
    retry_sqlstates: [p0001]
$$);
-- invalid input: the same code in both lists
SELECT tasker_register_template($$
name: d22_bad
step_templates:
  - name: a
    handler_class: raises_p0001
    permanent_sqlstates: ["40001"]
    retry_sqlstates: ["40001"]
$$);
-- invalid input: not a list
SELECT tasker_register_template($$
name: d22_bad
step_templates:
  - name: a
    handler_class: raises_p0001
    retry_sqlstates: "40001"
$$);
-- invalid input: an api step raises no SQLSTATE
SELECT tasker_register_template($$
name: d22_bad
step_templates:
  - name: a
    handler_config: {type: api, url: "http://127.0.0.1:1/x"}
    retry_sqlstates: ["40001"]
$$);
