-- 042_stuck_tasks: every task reaches a final state or an explicit blocked
-- report with its way out (issue 15 C17); tasker_check() lists the tasks
-- that break an invariant.  Driven in this session (no worker here).
SET client_min_messages = warning;

CREATE FUNCTION ok_step(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('step', step->>'step_name') $$;
CREATE FUNCTION bad_step(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker_permanent_error('bad_step always fails');
    RETURN NULL;
END $$;
CREATE FUNCTION step_of(task bigint, name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT s.workflow_step_id FROM tasker_workflow_steps s
      JOIN tasker_named_steps n USING (named_step_id)
     WHERE s.task_id = task AND n.name = step_of.name $$;

SELECT tasker_register_template($$
name: trio
step_templates:
  - name: a
    handler_class: ok_step
  - name: b
    handler_class: ok_step
    depends_on_step: a
  - name: c
    handler_class: ok_step
    depends_on_step: b
$$) > 0 AS registered;

-- Every step in bypass_steps: the task completes at once.
SELECT tasker_create_task('trio', bypass_steps => '{a,b,c}') AS task \gset
SELECT current_state, complete FROM tasker_tasks WHERE task_id = :task;
SELECT execution_status, health_status FROM tasker_task_execution_context(:task);

-- invalid input: a complete task is final; it cannot be cancelled
SELECT tasker_cancel_task(:task);
SELECT current_state FROM tasker_tasks WHERE task_id = :task;

-- A task in error because of a cancelled step.
SELECT tasker_create_task('trio') AS task \gset
SELECT tasker_cancel_step(step_of(:task, 'b'));
SELECT tasker_run_task(:task);
-- invalid input: retrying it would leave it pending with nothing to run
SELECT tasker_retry_task(:task);
SELECT current_state FROM tasker_tasks WHERE task_id = :task;
-- The cancelled step can be resolved by hand; the task then finishes.
SELECT tasker_resolve_step(step_of(:task, 'b'), '{"by": "hand"}');
SELECT tasker_run_task(:task);
SELECT n.name, s.current_state FROM tasker_workflow_steps s
  JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;

-- The same situation, ended by cancelling the task (error -> cancelled).
SELECT tasker_create_task('trio') AS task \gset
SELECT tasker_cancel_step(step_of(:task, 'c'));
SELECT tasker_run_task(:task);
SELECT tasker_cancel_task(:task, 'given up');
SELECT current_state FROM tasker_tasks WHERE task_id = :task;
SELECT execution_status, recommended_action, health_status
  FROM tasker_task_execution_context(:task);

-- A task in error because of a failed step can still be cancelled, and its
-- failed step stops retrying.
SELECT tasker_register_template($$
name: doomed
step_templates:
  - name: bad
    handler_class: bad_step
  - name: after
    handler_class: ok_step
    depends_on_step: bad
$$) > 0 AS registered;
SELECT tasker_create_task('doomed') AS task \gset
SELECT tasker_run_task(:task);
SELECT tasker_cancel_task(:task);
SELECT n.name, s.current_state, s.next_attempt_at IS NULL AS settled
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY s.workflow_step_id;

-- A task cancelled while a batch held its ready step, whose worker then
-- died: made here with the low-level transition, which cancels no step.
SELECT tasker_create_task('trio') AS orphan \gset
SELECT tasker_transition_task(:orphan, 'in_progress');
SELECT tasker_transition_task(:orphan, 'cancelled');
-- It is not healthy, and tasker_check() says what to do.
SELECT execution_status, ready_steps, health_status
  FROM tasker_task_execution_context(:orphan);
SELECT task_id = :orphan AS the_orphan, problem FROM tasker_check();
-- The next batch settles it.
SELECT tasker_run_steps(1000) >= 0 AS ran;
SELECT n.name, s.current_state FROM tasker_workflow_steps s
  JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :orphan ORDER BY s.workflow_step_id;

-- A task stuck pending with nothing to run is reported with the way out.
SELECT tasker_create_task('trio') AS stuck \gset
SELECT tasker_transition_step(step_of(:stuck, 'a'), 'cancelled');
SELECT problem, detail FROM tasker_check() WHERE task_id = :stuck;
SELECT tasker_cancel_task(:stuck);

-- replace => true while a task of that version is unfinished is refused:
-- that task's steps were made from the old template.
SELECT tasker_create_task('trio') AS running \gset
SELECT tasker_transition_task(:running, 'in_progress');
-- invalid input: replacing a template with unfinished tasks
SELECT tasker_register_template($$
name: trio
step_templates:
  - name: a
    handler_class: ok_step
  - name: c
    handler_config: {type: api, url: "http://127.0.0.1:1/"}
$$, replace => true);
SELECT tasker_run_task(:running);
-- Once every task of the version has finished, the replacement goes ahead.
SELECT tasker_register_template($$
name: trio
step_templates:
  - name: a
    handler_class: ok_step
  - name: c
    handler_class: ok_step
$$, replace => true) > 0 AS replaced;
-- Finished tasks keep their step rows.
SELECT count(*) AS steps_of_finished_task FROM tasker_workflow_steps WHERE task_id = :running;

-- The allowed transitions that give these ways out.
SELECT * FROM tasker_allowed_transitions('task')
 WHERE from_state IN ('error', 'complete') ORDER BY 1, 2;
SELECT * FROM tasker_allowed_transitions('step')
 WHERE from_state = 'cancelled' ORDER BY 1, 2;

-- Nothing is left in a state with no way out.
SELECT * FROM tasker_check();
