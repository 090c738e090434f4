-- 002_transitions: every allowed transition succeeds, every other raises
-- 55000, same-state requests write nothing, and the transition history
-- keeps its invariants.
BEGIN;
SELECT plan(114);

INSERT INTO tasker_named_tasks (name, task_namespace_id) VALUES ('machine', 1);
INSERT INTO tasker_named_steps (dependent_system_id, name) VALUES (1, 'solo');

-- A task (with no steps) or a lone step placed directly in a state.
CREATE FUNCTION pg_temp.task_in(state text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO tasker_tasks (named_task_id, identity_hash, current_state)
    SELECT named_task_id, gen_random_uuid()::text, state
      FROM tasker_named_tasks WHERE name = 'machine'
    RETURNING task_id $$;
CREATE FUNCTION pg_temp.step_in(state text) RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO tasker_workflow_steps (task_id, named_step_id, current_state)
    SELECT pg_temp.task_in('in_progress'), named_step_id, state
      FROM tasker_named_steps WHERE name = 'solo'
    RETURNING workflow_step_id $$;

CREATE TEMP TABLE states (s text, n int);
INSERT INTO states VALUES ('pending', 1), ('in_progress', 2), ('complete', 3),
    ('error', 4), ('cancelled', 5), ('resolved_manually', 6), ('skipped', 7);

-- The allowed pairs, written out here independently of the C table: the
-- Ruby engine's, plus step in_progress -> pending, a leased step given
-- back by its external worker (tasker_release_step, issue 9), and step
-- pending -> skipped, a decision's branch not taken (issue 10).
CREATE TEMP TABLE allowed (entity text, f text, t text);
INSERT INTO allowed VALUES
    ('task', 'pending', 'in_progress'), ('task', 'pending', 'cancelled'),
    ('task', 'pending', 'error'), ('task', 'in_progress', 'complete'),
    ('task', 'in_progress', 'error'), ('task', 'in_progress', 'cancelled'),
    ('task', 'in_progress', 'pending'), ('task', 'error', 'pending'),
    ('task', 'error', 'resolved_manually'), ('task', 'error', 'cancelled'),
    ('task', 'resolved_manually', 'cancelled'),
    ('step', 'pending', 'in_progress'), ('step', 'pending', 'error'),
    ('step', 'pending', 'cancelled'), ('step', 'pending', 'resolved_manually'),
    ('step', 'pending', 'skipped'),
    ('step', 'in_progress', 'complete'), ('step', 'in_progress', 'error'),
    ('step', 'in_progress', 'cancelled'), ('step', 'in_progress', 'pending'),
    ('step', 'error', 'pending'),
    ('step', 'error', 'resolved_manually'), ('step', 'cancelled', 'resolved_manually');

SELECT set_eq($$SELECT from_state, to_state FROM tasker_allowed_transitions('task')$$,
              $$SELECT f, t FROM allowed WHERE entity = 'task'$$,
              'the task machine allows exactly the Ruby transitions');
SELECT set_eq($$SELECT from_state, to_state FROM tasker_allowed_transitions('step')$$,
              $$SELECT f, t FROM allowed WHERE entity = 'step'$$,
              'the step machine allows exactly the Ruby transitions, the release and the skip');

-- 36 task pairs and 36 step pairs.
SELECT CASE
         WHEN a.s = b.s THEN
           is(tasker_transition_task(pg_temp.task_in(a.s), b.s), false,
              format('task %s -> %s is a no-op', a.s, b.s))
         WHEN EXISTS (SELECT 1 FROM allowed WHERE entity = 'task' AND f = a.s AND t = b.s) THEN
           lives_ok(format('SELECT tasker_transition_task(%s, %L)', pg_temp.task_in(a.s), b.s),
                    format('task %s -> %s is allowed', a.s, b.s))
         ELSE
           throws_ok(format('SELECT tasker_transition_task(%s, %L)', pg_temp.task_in(a.s), b.s),
                     '55000', NULL, format('task %s -> %s is refused', a.s, b.s))
       END
  FROM states a, states b ORDER BY a.n, b.n;

SELECT CASE
         WHEN a.s = b.s THEN
           is(tasker_transition_step(pg_temp.step_in(a.s), b.s), false,
              format('step %s -> %s is a no-op', a.s, b.s))
         WHEN EXISTS (SELECT 1 FROM allowed WHERE entity = 'step' AND f = a.s AND t = b.s) THEN
           lives_ok(format('SELECT tasker_transition_step(%s, %L)', pg_temp.step_in(a.s), b.s),
                    format('step %s -> %s is allowed', a.s, b.s))
         ELSE
           throws_ok(format('SELECT tasker_transition_step(%s, %L)', pg_temp.step_in(a.s), b.s),
                     '55000', NULL, format('step %s -> %s is refused', a.s, b.s))
       END
  FROM states a, states b ORDER BY a.n, b.n;

-- No-ops wrote nothing: every transition row has a different from and to.
SELECT is((SELECT count(*)::int FROM tasker_task_transitions WHERE from_state = to_state), 0,
          'no task transition row records a same-state move');
SELECT is((SELECT count(*)::int FROM tasker_workflow_step_transitions WHERE from_state = to_state), 0,
          'no step transition row records a same-state move');

-- Guards.
SELECT pg_temp.step_in('pending') AS guarded \gset
UPDATE tasker_workflow_steps SET current_state = 'in_progress' WHERE workflow_step_id = :guarded;
SELECT throws_ok(format('SELECT tasker_transition_task(%s, ''complete'')',
                        (SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id = :guarded)),
                 '55000', NULL, 'a task with an unfinished step cannot complete');
SELECT tasker_transition_step(:guarded, 'complete');
SELECT lives_ok(format('SELECT tasker_transition_task(%s, ''complete'')',
                       (SELECT task_id FROM tasker_workflow_steps WHERE workflow_step_id = :guarded)),
                'a task whose steps are all complete can complete');
SELECT is((SELECT complete FROM tasker_tasks t JOIN tasker_workflow_steps s USING (task_id)
            WHERE s.workflow_step_id = :guarded), true, 'a complete task has complete = true');

-- A sequence of transitions keeps sort_key and most_recent in order.
SELECT pg_temp.step_in('pending') AS seq \gset
SELECT tasker_transition_step(:seq, s)
  FROM unnest(ARRAY['in_progress', 'error', 'pending', 'in_progress', 'error',
                    'pending', 'in_progress', 'complete']) WITH ORDINALITY AS x(s, i)
 ORDER BY i;
SELECT results_eq(
    format('SELECT sort_key FROM tasker_workflow_step_transitions WHERE workflow_step_id = %s ORDER BY id', :seq),
    ARRAY[10, 20, 30, 40, 50, 60, 70, 80],
    'sort_key rises by 10 from 10');
SELECT is((SELECT count(*)::int FROM tasker_workflow_step_transitions
            WHERE workflow_step_id = :seq AND most_recent), 1,
          'exactly one most_recent row');
SELECT is((SELECT to_state::text FROM tasker_workflow_step_transitions
            WHERE workflow_step_id = :seq AND most_recent), 'complete',
          'the most_recent row is the last transition');
SELECT is((SELECT count(*)::int FROM tasker_workflow_step_transitions t
             JOIN tasker_workflow_step_transitions p
               ON p.workflow_step_id = t.workflow_step_id AND p.sort_key = t.sort_key - 10
            WHERE t.workflow_step_id = :seq AND t.from_state IS DISTINCT FROM p.to_state), 0,
          'each from_state is the previous to_state');
SELECT is((SELECT current_state::text FROM tasker_workflow_steps WHERE workflow_step_id = :seq),
          'complete', 'the state column follows the transitions');
SELECT is((SELECT row(processed, in_process, next_attempt_at IS NULL)::text
             FROM tasker_workflow_steps WHERE workflow_step_id = :seq),
          '(t,f,t)', 'a complete step is processed, not in process, not scheduled');

-- Unknown ids and states.
SELECT throws_ok('SELECT tasker_transition_task(-5, ''pending'')', '42704', NULL,
                 'an unknown task is reported');
SELECT throws_ok('SELECT tasker_transition_step(-5, ''pending'')', '42704', NULL,
                 'an unknown step is reported');
SELECT throws_ok(format('SELECT tasker_transition_step(%s, ''finished'')', :seq), '22023', NULL,
                 'an unknown state is reported');

SELECT * FROM finish();
ROLLBACK;
