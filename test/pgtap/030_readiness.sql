-- 030_readiness: readiness and execution context over the Ruby engine's
-- workflow shapes at fixed timestamps; version resolution; namespaces;
-- bypass_steps; dependency levels.
BEGIN;
SET client_min_messages = warning;
\ir ../fixtures/shapes.sql
SELECT plan(40);

CREATE FUNCTION pg_temp.task_of(shape text) RETURNS bigint LANGUAGE sql AS $$
    SELECT tasker_create_task(shape, '{}', namespace => 'shapes') $$;
-- The names of the ready steps of a task as of a time.
CREATE FUNCTION pg_temp.ready(task bigint, as_of timestamptz DEFAULT now() + interval '1 hour')
RETURNS text LANGUAGE sql AS $$
    SELECT COALESCE(string_agg(name, ',' ORDER BY name), '')
      FROM tasker_step_readiness_status(task, NULL, as_of) WHERE ready_for_execution $$;
-- Complete the named steps of a task through the state machine.
CREATE FUNCTION pg_temp.complete(task bigint, VARIADIC names text[]) RETURNS void LANGUAGE sql AS $$
    SELECT tasker_transition_step(s.workflow_step_id, 'in_progress'),
           tasker_transition_step(s.workflow_step_id, 'complete')
      FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
     WHERE s.task_id = task AND n.name = ANY (names)
     ORDER BY array_position(names, n.name::text) $$;
CREATE FUNCTION pg_temp.step(task bigint, name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT s.workflow_step_id FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
     WHERE s.task_id = task AND n.name = step.name $$;

-- Linear: one step at a time.
SELECT pg_temp.task_of('linear_workflow') AS linear \gset
SELECT is(pg_temp.ready(:linear), 'initialize_data', 'linear: only the root is ready');
SELECT pg_temp.complete(:linear, 'initialize_data', 'validate_input');
SELECT is(pg_temp.ready(:linear), 'process_data', 'linear: the next step follows its parent');
SELECT is((SELECT dependency_status FROM (
             SELECT CASE WHEN total_parents = 0 THEN 'no_dependencies'
                         WHEN completed_parents = total_parents THEN 'all_satisfied'
                         ELSE completed_parents || '/' || total_parents || '_satisfied' END AS dependency_status
               FROM tasker_step_readiness_status(:linear) WHERE name = 'transform_results') x),
          '0/1_satisfied', 'linear: parent counts are reported');

-- Diamond: both branches after the start, the merge after both.
SELECT pg_temp.task_of('diamond_workflow') AS diamond \gset
SELECT pg_temp.complete(:diamond, 'start_workflow');
SELECT is(pg_temp.ready(:diamond), 'branch_one_process,branch_two_process', 'diamond: both branches are ready');
SELECT pg_temp.complete(:diamond, 'branch_one_process', 'branch_one_validate', 'branch_two_process');
SELECT is(pg_temp.ready(:diamond), 'branch_two_validate', 'diamond: merge waits for the slower branch');
SELECT pg_temp.complete(:diamond, 'branch_two_validate');
SELECT is(pg_temp.ready(:diamond), 'merge_branches', 'diamond: merge is ready once both branches are done');

-- Parallel merge: four roots at once; the merge needs four parents.
SELECT pg_temp.task_of('parallel_merge_workflow') AS pm \gset
SELECT is(pg_temp.ready(:pm), 'fetch_inventory_data,fetch_order_data,fetch_pricing_data,fetch_user_data',
          'parallel merge: four roots are ready');
SELECT pg_temp.complete(:pm, 'fetch_user_data', 'fetch_order_data', 'fetch_inventory_data',
                        'fetch_pricing_data', 'process_user_data');
SELECT is(pg_temp.ready(:pm), 'process_order_data', 'parallel merge: merge_all_data still waits');
SELECT is((SELECT total_parents || '/' || completed_parents FROM tasker_step_readiness_status(:pm)
            WHERE name = 'merge_all_data'), '4/3', 'parallel merge: 3 of 4 parents done');

-- Tree: four leaves after two setups; the aggregate after all four.
SELECT pg_temp.task_of('tree_workflow') AS tree \gset
SELECT pg_temp.complete(:tree, 'root_initialization', 'branch_a_setup');
SELECT is(pg_temp.ready(:tree), 'a_task_one,a_task_two,branch_b_setup', 'tree: branch a fans out');
SELECT pg_temp.complete(:tree, 'branch_b_setup', 'a_task_one', 'a_task_two', 'b_task_one');
SELECT is(pg_temp.ready(:tree), 'b_task_two', 'tree: the aggregate waits for the last leaf');

-- Mixed: two roots, a join, a dangling leaf.
SELECT pg_temp.task_of('mixed_workflow') AS mixed \gset
SELECT is(pg_temp.ready(:mixed), 'init_auth,init_config', 'mixed: two roots');
SELECT pg_temp.complete(:mixed, 'init_config', 'setup_environment');
SELECT is(pg_temp.ready(:mixed), 'cleanup_temp_files,init_auth', 'mixed: cleanup needs only the environment');
SELECT pg_temp.complete(:mixed, 'init_auth', 'validate_permissions', 'begin_processing', 'cleanup_temp_files');
SELECT is(pg_temp.ready(:mixed), 'process_critical_data,process_optional_data', 'mixed: processing fans out');
SELECT results_eq(
    format($$SELECT n.name::text, l.dependency_level FROM tasker_dependency_levels(%s) l
             JOIN tasker_workflow_steps s USING (workflow_step_id)
             JOIN tasker_named_steps n USING (named_step_id) ORDER BY 2, 1$$, :mixed),
    $$VALUES ('init_auth', 0), ('init_config', 0), ('setup_environment', 1), ('validate_permissions', 1),
             ('begin_processing', 2), ('cleanup_temp_files', 2), ('process_critical_data', 3),
             ('process_optional_data', 3), ('finalize_and_report', 4)$$,
    'mixed: dependency levels are longest distances from a root');
SELECT is((SELECT string_agg(n.name || ':' || r.is_root_step || r.is_leaf_step || r.min_depth_from_root, ',' ORDER BY n.name)
             FROM tasker_step_dag_relationships r JOIN tasker_named_steps n USING (named_step_id)
            WHERE r.task_id = :mixed AND n.name IN ('init_auth', 'process_optional_data', 'finalize_and_report')),
          'finalize_and_report:falsetrue3,init_auth:truefalse0,process_optional_data:falsetrue3',
          'mixed: roots, leaves and shortest depths');

-- Execution context while work is ready, running, and done.
SELECT is((SELECT execution_status || '/' || recommended_action || '/' || health_status || '/' || completion_percentage
             FROM tasker_task_execution_context(:mixed)),
          'has_ready_steps/execute_ready_steps/healthy/66.67', 'context: ready steps');
SELECT tasker_transition_step(pg_temp.step(:mixed, 'process_critical_data'), 'in_progress');
SELECT tasker_transition_step(pg_temp.step(:mixed, 'process_optional_data'), 'in_progress');
SELECT is((SELECT execution_status FROM tasker_task_execution_context(:mixed)), 'processing',
          'context: steps in progress');
SELECT is((SELECT string_agg(task_id::text || '=' || execution_status, ',' ORDER BY task_id)
             FROM tasker_task_execution_context(ARRAY[:linear, :diamond]::bigint[])),
          :linear || '=has_ready_steps,' || :diamond || '=has_ready_steps', 'the batch form covers every task');

-- Retries at fixed timestamps: a failed step waits out its backoff.
SELECT pg_temp.task_of('linear_workflow') AS retry \gset
SELECT pg_temp.step(:retry, 'initialize_data') AS failed \gset
SELECT tasker_transition_step(:failed, 'in_progress');
SELECT tasker_transition_step(:failed, 'error');
UPDATE tasker_workflow_steps SET attempts = 1, next_attempt_at = '2030-01-01 00:00:10+00',
       last_attempted_at = '2030-01-01 00:00:00+00', backoff_request_seconds = 10
 WHERE workflow_step_id = :failed;
SELECT is(pg_temp.ready(:retry, '2030-01-01 00:00:05+00'), '', 'retry: not ready during the backoff');
SELECT is((SELECT retry_eligible::text || '/' || next_retry_at FROM tasker_step_readiness_status(:retry, ARRAY[:failed::bigint], '2030-01-01 00:00:05+00')),
          'true/2030-01-01 00:00:10+00', 'retry: eligible, with its next retry time');
SELECT is(pg_temp.ready(:retry, '2030-01-01 00:00:15+00'), 'initialize_data', 'retry: ready once the backoff passed');
SELECT is((SELECT execution_status || '/' || health_status FROM tasker_task_execution_context(:retry, '2030-01-01 00:00:05+00')),
          'waiting_for_dependencies/recovering', 'context: waiting out a backoff is not blocked');
SELECT is((SELECT execution_status || '/' || health_status FROM tasker_task_execution_context(:retry, '2030-01-01 00:00:15+00')),
          'has_ready_steps/recovering', 'context: recovering once the retry is due');
-- Out of attempts: permanently blocked.
UPDATE tasker_workflow_steps SET attempts = 3 WHERE workflow_step_id = :failed;
SELECT is(pg_temp.ready(:retry, '2030-01-01 00:00:15+00'), '', 'exhausted: never ready again');
SELECT is((SELECT execution_status || '/' || recommended_action || '/' || health_status
             FROM tasker_task_execution_context(:retry, '2030-01-01 00:00:15+00')),
          'blocked_by_failures/handle_failures/blocked', 'exhausted: the task is blocked');
-- A non-retryable error with attempts left is blocked too (a Ruby defect fixed).
UPDATE tasker_workflow_steps SET attempts = 1, retryable = false WHERE workflow_step_id = :failed;
SELECT is((SELECT execution_status FROM tasker_task_execution_context(:retry, '2030-01-01 00:00:15+00')),
          'blocked_by_failures', 'non-retryable error: blocked, not waiting forever');
-- A non-retryable step is still ready for its first attempt (a Ruby defect fixed).
SELECT pg_temp.task_of('linear_workflow') AS first \gset
UPDATE tasker_workflow_steps SET retryable = false WHERE task_id = :first;
SELECT is(pg_temp.ready(:first), 'initialize_data', 'non-retryable: the first attempt is always eligible');

-- Version resolution: the highest semantic version, pre-releases below releases.
SELECT tasker_register_template(format($$
name: versioned
version: %s
step_templates:
  - name: v%s
    handler_class: shape_step
$$, v, replace(v, '.', '_'))) FROM unnest(ARRAY['1.0.0', '1.10.0', '1.9.0', '2.0.0-beta.1']) AS v;
SELECT tasker_create_task('versioned') AS v_task \gset
SELECT is((SELECT nt.version::text FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
            WHERE t.task_id = :v_task), '1.10.0',
          'NULL version picks 1.10.0 over 1.9.0, 1.0.0 and 2.0.0-beta.1');
SELECT tasker_create_task('versioned', version => '2.0.0-beta.1') AS v_task \gset
SELECT is((SELECT nt.version::text FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
            WHERE t.task_id = :v_task), '2.0.0-beta.1',
          'an explicit pre-release version is honoured');
SELECT throws_ok($$SELECT tasker_create_task('versioned', version => '3.0.0')$$, '42704',
                 'task template "default.versioned" has no version "3.0.0"',
                 'an unknown version is refused');

-- Namespaces: the same name, different templates.
SELECT tasker_register_template($$
name: process_refund
namespace_name: payments
version: 2.1.0
step_templates:
  - {name: refund_card, handler_class: shape_step}
$$);
SELECT tasker_register_template($$
name: process_refund
namespace_name: customer_success
version: 1.3.0
step_templates:
  - {name: open_ticket, handler_class: shape_step}
  - {name: approve, handler_class: shape_step, depends_on_step: open_ticket}
$$);
SELECT tasker_create_task('process_refund', namespace => 'payments') AS ns_task \gset
SELECT is((SELECT string_agg(n.name, ',' ORDER BY n.name) FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
            WHERE s.task_id = :ns_task),
          'refund_card', 'payments.process_refund has its own steps');
SELECT tasker_create_task('process_refund', namespace => 'customer_success') AS ns_task \gset
SELECT is((SELECT string_agg(n.name, ',' ORDER BY n.name) FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
            WHERE s.task_id = :ns_task),
          'approve,open_ticket', 'customer_success.process_refund has its own steps');
SELECT throws_ok($$SELECT tasker_create_task('process_refund')$$, '42704', NULL,
                 'the default namespace does not see either');

-- bypass_steps: resolved at creation, releasing their dependents.
SELECT tasker_create_task('diamond_workflow', '{}', namespace => 'shapes',
                          bypass_steps => '{start_workflow,branch_one_process}') AS bypassed \gset
SELECT is(pg_temp.ready(:bypassed), 'branch_one_validate,branch_two_process', 'bypassed steps release their children');
SELECT is((SELECT string_agg(n.name || '=' || s.current_state, ',' ORDER BY n.name)
             FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
            WHERE s.task_id = :bypassed AND s.current_state <> 'pending'),
          'branch_one_process=resolved_manually,start_workflow=resolved_manually', 'bypassed steps are resolved_manually');
SELECT is((SELECT bypass_steps FROM tasker_tasks WHERE task_id = :bypassed), '["start_workflow", "branch_one_process"]'::jsonb,
          'the task records its bypass_steps');
SELECT throws_ok($$SELECT tasker_create_task('diamond_workflow', '{}', namespace => 'shapes', bypass_steps => '{nope}')$$,
                 '42704', NULL, 'an unknown bypassed step is refused');

-- identity_key: one task per key.
SELECT is(tasker_create_task('linear_workflow', '{}', namespace => 'shapes', identity_key => 'k1'),
          tasker_create_task('linear_workflow', '{"other": 1}', namespace => 'shapes', identity_key => 'k1'),
          'a repeated identity key returns the first task');
SELECT is((SELECT count(*)::int FROM tasker_tasks WHERE identity_hash LIKE 'kv2:%'), 1,
          'and creates nothing');

SELECT * FROM finish();
ROLLBACK;
