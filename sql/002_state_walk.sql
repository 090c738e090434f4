-- 002_state_walk: a task and a step walk through their state machines.
-- No worker is involved: the low-level transition functions are called
-- directly, as the engine calls them.
SET client_min_messages = notice;

-- A template with two steps, first -> second, made by hand (template
-- registration is covered elsewhere).
INSERT INTO tasker_named_tasks (name, task_namespace_id)
SELECT 'walk', task_namespace_id FROM tasker_task_namespaces WHERE name = 'default';
INSERT INTO tasker_named_steps (dependent_system_id, name)
SELECT dependent_system_id, s
  FROM tasker_dependent_systems, unnest(ARRAY['first', 'second']) AS s
 WHERE name = 'default';

INSERT INTO tasker_tasks (named_task_id, identity_hash, context)
SELECT named_task_id, 'walk-1', '{"order_id": 7}' FROM tasker_named_tasks WHERE name = 'walk'
RETURNING task_id AS task \gset
INSERT INTO tasker_workflow_steps (task_id, named_step_id, unfinished_parents, next_attempt_at)
SELECT :task, named_step_id, CASE name WHEN 'second' THEN 1 ELSE 0 END, now()
  FROM tasker_named_steps WHERE name IN ('first', 'second');
SELECT workflow_step_id AS first FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE task_id = :task AND n.name = 'first' \gset
SELECT workflow_step_id AS second FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE task_id = :task AND n.name = 'second' \gset
INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id)
VALUES (:task, :first, :second);

-- The task starts.
SELECT tasker_transition_task(:task, 'in_progress', '{"step_dependencies_established": 2}');
-- Moving to the current state is a no-op that records nothing.
SELECT tasker_transition_task(:task, 'in_progress');

-- invalid input: the second step cannot start before the first completes
SELECT tasker_transition_step(:second, 'in_progress');

-- The first step runs and fails, is retried, runs again and completes.
SELECT tasker_transition_step(:first, 'in_progress');
SELECT tasker_transition_step(:first, 'error', '{"error": "connection reset"}');
SELECT tasker_transition_step(:first, 'pending');
SELECT tasker_transition_step(:first, 'in_progress');
SELECT tasker_transition_step(:first, 'complete');

-- Completing the first step released the second.
SELECT n.name, s.current_state, s.unfinished_parents, s.processed
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE task_id = :task ORDER BY n.name;

-- invalid input: the task cannot complete while a step is unfinished
SELECT tasker_transition_task(:task, 'complete');

-- invalid input: a complete step cannot go back
SELECT tasker_transition_step(:first, 'pending');

SELECT tasker_transition_step(:second, 'in_progress');
SELECT tasker_transition_step(:second, 'complete');
SELECT tasker_transition_task(:task, 'complete');

-- The whole history, in order.
SELECT n.name AS step, t.from_state, t.to_state, t.sort_key, t.most_recent, t.metadata
  FROM tasker_workflow_step_transitions t
  JOIN tasker_workflow_steps s USING (workflow_step_id)
  JOIN tasker_named_steps n USING (named_step_id)
 WHERE t.task_id = :task
 ORDER BY n.name, t.sort_key;
SELECT from_state, to_state, sort_key, most_recent, metadata
  FROM tasker_task_transitions WHERE task_id = :task ORDER BY sort_key;
SELECT current_state, complete, completed_at IS NOT NULL AS has_completed_at
  FROM tasker_tasks WHERE task_id = :task;

-- invalid input: an unknown state
SELECT tasker_transition_task(:task, 'done');
-- invalid input: an unknown task
SELECT tasker_transition_task(-1, 'pending');
-- invalid input: metadata that is not an object
SELECT tasker_transition_task(:task, 'cancelled', '[1, 2]');

-- invalid input: a complete task is final (issue 15 C17): not cancelled
SELECT tasker_transition_task(:task, 'cancelled', '{"reason": "customer request"}');
-- invalid input: nor sent back
SELECT tasker_transition_task(:task, 'pending');
