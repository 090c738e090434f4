-- 050_controls_by_name: controls address a step by (task_id, step_name),
-- every control records who acted and why, and tasker_run_steps goes on
-- until nothing is ready (issue 15 D23).  No worker runs here.
SET client_min_messages = warning;

CREATE FUNCTION d23_ok(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('step', step->>'step_name') $$;
CREATE FUNCTION d23_fails(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker_permanent_error('d23_fails always fails');
    RETURN NULL;
END $$;
SELECT tasker_register_template($$
name: chain
step_templates:
  - name: one
    handler_class: d23_ok
  - name: two
    handler_class: d23_ok
    depends_on_step: one
  - name: three
    handler_class: d23_ok
    depends_on_step: two
  - name: four
    handler_class: d23_ok
    depends_on_step: three
$$) > 0 AS registered;
SELECT tasker_register_template($$
name: failing
step_templates:
  - name: fails
    handler_class: d23_fails
  - name: after
    handler_class: d23_ok
    depends_on_step: fails
$$) > 0 AS registered;

-- tasker_run_steps runs the four levels of the chain in one call.
SELECT tasker_create_task('chain') AS chain \gset
SELECT tasker_run_steps(50) >= 4 AS ran_all_levels;
SELECT current_state FROM tasker_tasks WHERE task_id = :chain;
-- ... and stops at its limit.
SELECT tasker_create_task('chain') AS chain2 \gset
SELECT tasker_run_steps(2) AS ran;
SELECT string_agg(s.current_state::text, ',' ORDER BY s.workflow_step_id)
  FROM tasker_workflow_steps s WHERE s.task_id = :chain2;

-- Cancel a step by name, with a reason.
SELECT tasker_cancel_step(:chain2, 'four', 'not needed any more');
-- invalid input: a step name the task does not have
SELECT tasker_cancel_step(:chain2, 'five');
-- invalid input: an unknown task
SELECT tasker_cancel_step(-1, 'four');
-- Resolve a step by name, with results and a reason.
SELECT tasker_resolve_step(:chain2, 'three', '{"by": "hand"}', 'done elsewhere');
-- The 0.1.0 forms keep their meaning: (step_id, results) resolves by id.
SELECT tasker_create_task('failing') AS failing \gset
SELECT tasker_run_task(:failing);
SELECT tasker_retry_task(:failing, 'the service is back');
SELECT tasker_run_task(:failing);
SELECT tasker_resolve_step(s.workflow_step_id, '{"manual": true}', reason => 'fixed by ops')
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :failing AND n.name = 'fails';
SELECT tasker_run_task(:failing);
SELECT tasker_create_task('chain') AS chain3 \gset
SELECT tasker_cancel_task(:chain3, 'duplicate order');

-- Each control's transition names the role that acted and the reason.
SELECT t.task_id = :chain2 AS chain2, n.name, t.to_state,
       t.metadata->>'reason' AS reason, t.metadata->>'actor' = current_user AS by_me
  FROM tasker_workflow_step_transitions t
  JOIN tasker_workflow_steps s USING (workflow_step_id)
  JOIN tasker_named_steps n USING (named_step_id)
 WHERE t.task_id IN (:chain2, :failing) AND t.metadata ? 'actor'
 ORDER BY t.task_id, t.sort_key, s.workflow_step_id;
SELECT t.to_state, t.metadata->>'reason' AS reason, t.metadata->>'actor' = current_user AS by_me
  FROM tasker_task_transitions t
 WHERE t.task_id IN (:failing, :chain3) AND t.metadata ? 'actor'
 ORDER BY t.task_id, t.sort_key;

SELECT * FROM tasker_check();
