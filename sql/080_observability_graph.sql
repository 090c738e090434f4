-- 080_observability_graph: diagrams (Mermaid and DOT), bottlenecks and the
-- critical path of the Ruby engine's five workflow shapes
-- (test/fixtures/shapes.sql), with steps moved through the state machine,
-- run in this session, or failed for real.  Transition times are set to
-- fixed values so that observed durations are exact.  No worker runs here.
SET client_min_messages = warning;
\set SHOW_CONTEXT never
\set ECHO none
\i test/fixtures/shapes.sql
\set ECHO all

CREATE FUNCTION obs_task(shape text) RETURNS bigint LANGUAGE sql AS $$
    SELECT tasker_create_task(shape, '{}', namespace => 'shapes') $$;
CREATE FUNCTION obs_step(task bigint, name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT s.workflow_step_id FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
     WHERE s.task_id = task AND n.name = obs_step.name $$;
-- Move the named steps of a task through the state machine, in order.
CREATE FUNCTION obs_move(task bigint, state text, VARIADIC names text[]) RETURNS void LANGUAGE sql AS $$
    SELECT tasker_transition_step(obs_step(task, n), state)
      FROM unnest(names) WITH ORDINALITY AS u(n, i) ORDER BY i $$;
-- Start, then complete, each named step in order.
CREATE FUNCTION obs_complete(task bigint, VARIADIC names text[]) RETURNS void LANGUAGE sql AS $$
    SELECT tasker_transition_step(obs_step(task, n), 'in_progress'),
           tasker_transition_step(obs_step(task, n), 'complete')
      FROM unnest(names) WITH ORDINALITY AS u(n, i) ORDER BY i $$;
-- Give every transition of a task a fixed time: step number k (by name)
-- starts at 2030-01-01 + k minutes, and each transition after its first
-- is k seconds after the one before, so a step run once lasts k seconds.
CREATE FUNCTION obs_fix_times(task bigint) RETURNS void LANGUAGE sql AS $$
    WITH k AS (SELECT s.workflow_step_id, row_number() OVER (ORDER BY n.name COLLATE "C") AS k
                 FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
                WHERE s.task_id = task)
    UPDATE tasker_workflow_step_transitions x
       SET created_at = '2030-01-01 00:00:00+00'::timestamptz + k.k * interval '1 minute'
                        + (x.sort_key / 10 - 1) * k.k * interval '1 second'
      FROM k WHERE x.workflow_step_id = k.workflow_step_id $$;

-- The analyses without step ids (they depend on the earlier files).
CREATE FUNCTION obs_bottlenecks(task bigint, config jsonb DEFAULT '{}')
RETURNS TABLE (step_name text, current_state text, attempts integer, retry_limit integer,
               dependencies_satisfied boolean, downstream_count integer, blocked_count integer,
               critical_path_length integer, base_score numeric, path_score numeric,
               penalty_score numeric, severity_multiplier numeric, impact_score integer, severity text)
LANGUAGE sql AS $$
    SELECT step_name, current_state, attempts, retry_limit, dependencies_satisfied, downstream_count,
           blocked_count, critical_path_length, base_score, path_score, penalty_score,
           severity_multiplier, impact_score, severity
      FROM tasker_task_bottlenecks(task, config) $$;
CREATE FUNCTION obs_path(task bigint, config jsonb DEFAULT '{}')
RETURNS TABLE (path_position integer, step_name text, current_state text, attempts integer,
               duration_seconds numeric, duration_source text, cumulative_seconds numeric)
LANGUAGE sql AS $$
    SELECT path_position, step_name, current_state, attempts, duration_seconds, duration_source,
           cumulative_seconds
      FROM tasker_critical_path(task, config) $$;

SELECT obs_task('linear_workflow') AS linear \gset
SELECT obs_task('diamond_workflow') AS diamond \gset
SELECT obs_task('parallel_merge_workflow') AS pm \gset
SELECT obs_task('tree_workflow') AS tree \gset
SELECT obs_task('mixed_workflow') AS mixed \gset

-- Linear: run to completion in this session.
SELECT tasker_run_task(:linear);
SELECT obs_fix_times(:linear);
SELECT tasker_task_diagram(:linear);
SELECT tasker_task_diagram(:linear, 'dot');
-- Every step ran once (observed k seconds); nothing holds anything up.
SELECT * FROM obs_path(:linear);
SELECT step_name, downstream_count, blocked_count, critical_path_length, impact_score, severity
  FROM tasker_task_bottlenecks(:linear);

-- Diamond: the start and one branch step done by hand, the other branch
-- running.
SELECT obs_complete(:diamond, 'start_workflow', 'branch_one_process');
SELECT obs_move(:diamond, 'in_progress', 'branch_two_process');
SELECT obs_fix_times(:diamond);
SELECT tasker_task_diagram(:diamond);
SELECT tasker_task_diagram(:diamond, 'DOT');
SELECT * FROM obs_bottlenecks(:diamond);
-- start_workflow observed (7 s), 30 s estimated for each step not finished.
SELECT * FROM obs_path(:diamond);

-- Parallel merge: one fetch done, one failed for good after two attempts,
-- one failed with a retry to come (its backoff is set by hand).
SELECT obs_complete(:pm, 'fetch_user_data');
SELECT obs_move(:pm, 'in_progress', 'fetch_order_data', 'fetch_pricing_data');
SELECT obs_move(:pm, 'error', 'fetch_order_data', 'fetch_pricing_data');
UPDATE tasker_workflow_steps SET attempts = 3 WHERE workflow_step_id = obs_step(:pm, 'fetch_order_data');
UPDATE tasker_workflow_steps SET attempts = 1, next_attempt_at = '2030-01-01 01:00:00+00'
 WHERE workflow_step_id = obs_step(:pm, 'fetch_pricing_data');
SELECT obs_fix_times(:pm);
SELECT tasker_task_diagram(:pm);
SELECT * FROM obs_bottlenecks(:pm);
SELECT step_name, downstream_count, blocked_count, critical_path_length, retry_scheduled,
       path_blocked, path_error, path_retry, duration_seconds, duration_source
  FROM tasker_task_graph(:pm);
-- The failed fetch_order_data: 30 + 60 (error) + 2 * 30 (retries) = 150 s.
SELECT * FROM obs_path(:pm);

-- Tree: the root done, branch_b_setup cancelled (its subtree can never
-- run), and a_task_one resolved by hand although its parent is pending.
SELECT obs_complete(:tree, 'root_initialization');
SELECT tasker_cancel_step(obs_step(:tree, 'branch_b_setup'));
SELECT tasker_resolve_step(obs_step(:tree, 'a_task_one'), '{"by": "hand"}');
SELECT obs_fix_times(:tree);
SELECT tasker_task_diagram(:tree);
SELECT * FROM obs_bottlenecks(:tree);
SELECT * FROM obs_path(:tree);

-- Mixed: a real permanent failure.  shape_step fails when its step already
-- has a ledger row (unique_violation, SQLSTATE 23505, permanent), so
-- process_critical_data fails for good and finalize_and_report never runs.
INSERT INTO shape_ledger (task_id, step, attempt, parents)
VALUES (:mixed, 'process_critical_data', 0, '{}');
SELECT tasker_run_task(:mixed);
SELECT obs_fix_times(:mixed);
SELECT tasker_task_diagram(:mixed);
SELECT tasker_task_diagram(:mixed, 'dot');
SELECT * FROM obs_bottlenecks(:mixed);
SELECT * FROM obs_path(:mixed);

-- The guide's settings, overridden by group: heavier blocking, lower
-- thresholds, shorter estimates.
SELECT jsonb_pretty(tasker_bottleneck_config('{"impact_multipliers": {"blocked_weight": 20, "error_penalty": 40},
                                               "severity_thresholds": {"critical": 300, "high": 150, "medium": 60}}'));
SELECT step_name, base_score, penalty_score, severity_multiplier, impact_score, severity
  FROM tasker_task_bottlenecks(:pm, '{"impact_multipliers": {"blocked_weight": 20, "error_penalty": 40},
                                      "severity_thresholds": {"critical": 300, "high": 150, "medium": 60}}');
SELECT step_name, duration_seconds, cumulative_seconds
  FROM tasker_critical_path(:pm, '{"duration_estimates": {"base_step_seconds": 5, "error_penalty_seconds": 0}}');

-- Templates: the five shapes, and one with an api step and names that
-- need escaping in both formats.
SELECT tasker_template_diagram('linear_workflow', 'shapes');
SELECT tasker_template_diagram('diamond_workflow', 'shapes');
SELECT tasker_template_diagram('parallel_merge_workflow', 'shapes', '1.0.0');
SELECT tasker_template_diagram('tree_workflow', 'shapes', format => 'dot');
SELECT tasker_template_diagram('mixed_workflow', 'shapes');
SELECT tasker_register_template($y$
name: obs_odd
version: 1.0.0
step_templates:
  - name: 'say "hi" <b> & #1'
    handler_class: shape_step
  - name: 'back\slash'
    depends_on_step: 'say "hi" <b> & #1'
    handler_config:
      type: api
      url: http://127.0.0.1:1/hook
      method: post
$y$) > 0 AS registered;
SELECT tasker_register_template($y$
name: obs_odd
version: 1.1.0-beta.1
step_templates:
  - name: beta
    handler_class: shape_step
$y$) > 0 AS registered;
-- NULL version: the highest release, not the pre-release.
SELECT tasker_template_diagram('obs_odd');
SELECT tasker_template_diagram('obs_odd', format => 'dot');
SELECT tasker_template_diagram('obs_odd', version => '1.1.0-beta.1');

-- invalid input: NULL and unknown task ids
SELECT tasker_task_diagram(NULL);
SELECT tasker_task_diagram(-1);
SELECT * FROM tasker_task_bottlenecks(-1);
SELECT * FROM tasker_critical_path(NULL);
-- invalid input: formats
SELECT tasker_task_diagram(:linear, 'png');
SELECT tasker_task_diagram(:linear, NULL);
SELECT tasker_template_diagram('linear_workflow', 'shapes', format => 'svg');
-- invalid input: unknown templates, versions and namespaces
SELECT tasker_template_diagram('no_such_workflow', 'shapes');
SELECT tasker_template_diagram('linear_workflow', 'shapes', '9.9.9');
SELECT tasker_template_diagram('linear_workflow', 'no_such_namespace');
SELECT tasker_template_diagram(NULL);
-- invalid input: bottleneck settings
SELECT tasker_bottleneck_config(NULL);
SELECT tasker_bottleneck_config('[1]');
SELECT tasker_bottleneck_config('{"impact_multiplier": {}}');
SELECT tasker_bottleneck_config('{"impact_multipliers": 5}');
SELECT tasker_bottleneck_config('{"impact_multipliers": {"blocked_wieght": 20}}');
SELECT tasker_bottleneck_config('{"impact_multipliers": {"blocked_weight": -1}}');
SELECT tasker_bottleneck_config('{"severity_multipliers": {"error_state": "2"}}');
SELECT tasker_bottleneck_config('{"severity_thresholds": {"high": 500}}');
SELECT * FROM tasker_task_bottlenecks(:linear, '{"duration_estimates": {"step_seconds": 1}}');
-- invalid input: a graph that is not JSON arrays
SELECT tasker_render_diagram('x', '{}', '[]');
