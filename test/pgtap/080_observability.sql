-- 080_observability: the contracts of the observability functions (issue
-- 12): signatures and columns (the Ruby analytics names first), SECURITY
-- DEFINER with a pinned search_path, comments, who may execute what, the
-- indexes behind the time windows, the guide's defaults, and an SQLSTATE
-- for every bad argument.
BEGIN;
SET client_min_messages = warning;
\ir ../fixtures/shapes.sql
SELECT plan(97);

-- Signatures.
SELECT has_function('tasker_system_health', ARRAY[]::text[]);
SELECT has_function('tasker_analytics_metrics', ARRAY['timestamp with time zone']);
SELECT has_function('tasker_slowest_steps', ARRAY['timestamp with time zone', 'integer', 'text', 'text', 'text']);
SELECT has_function('tasker_slowest_tasks', ARRAY['timestamp with time zone', 'integer', 'text', 'text', 'text']);
SELECT has_function('tasker_health', ARRAY[]::text[]);
SELECT has_function('tasker_task_summary', ARRAY['bigint']);
SELECT has_function('tasker_task_diagram', ARRAY['bigint', 'text']);
SELECT has_function('tasker_template_diagram', ARRAY['text', 'text', 'text', 'text']);
SELECT has_function('tasker_render_diagram', ARRAY['text', 'jsonb', 'jsonb', 'jsonb', 'text']);
SELECT has_function('tasker_task_bottlenecks', ARRAY['bigint', 'jsonb']);
SELECT has_function('tasker_critical_path', ARRAY['bigint', 'jsonb']);
SELECT has_function('tasker_task_graph', ARRAY['bigint', 'jsonb']);
SELECT has_function('tasker_bottleneck_config', ARRAY['jsonb']);

-- The Ruby columns come first, in the Ruby order.
CREATE FUNCTION pg_temp.out_columns(fn regprocedure) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(n ORDER BY i)
      FROM pg_proc p, unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS a(n, m, i)
     WHERE p.oid = fn AND m IN ('o', 't') $$;
SELECT is((pg_temp.out_columns('tasker_system_health()'))[1:16],
          ARRAY['total_tasks', 'pending_tasks', 'in_progress_tasks', 'complete_tasks', 'error_tasks',
                'cancelled_tasks', 'total_steps', 'pending_steps', 'in_progress_steps', 'complete_steps',
                'error_steps', 'retryable_error_steps', 'exhausted_retry_steps', 'in_backoff_steps',
                'active_connections', 'max_connections'],
          'tasker_system_health: the Ruby get_system_health_counts columns first');
SELECT is((pg_temp.out_columns('tasker_analytics_metrics(timestamptz)'))[1:14],
          ARRAY['active_tasks_count', 'total_namespaces_count', 'unique_task_types_count',
                'system_health_score', 'task_throughput', 'completion_count', 'error_count',
                'completion_rate', 'error_rate', 'avg_task_duration', 'avg_step_duration',
                'step_throughput', 'analysis_period_start', 'calculated_at'],
          'tasker_analytics_metrics: the Ruby get_analytics_metrics columns first');
SELECT ok(pg_temp.out_columns('tasker_analytics_metrics(timestamptz)')
              @> ARRAY['p50_task_duration', 'p95_task_duration', 'p99_task_duration',
                       'p50_step_duration', 'p95_step_duration', 'p99_step_duration'],
          'tasker_analytics_metrics: percentiles of task and step durations');
SELECT is((pg_temp.out_columns('tasker_slowest_steps(timestamptz, integer, text, text, text)'))[1:12],
          ARRAY['workflow_step_id', 'task_id', 'step_name', 'task_name', 'namespace_name', 'version',
                'duration_seconds', 'attempts', 'created_at', 'completed_at', 'retryable', 'step_status'],
          'tasker_slowest_steps: the Ruby get_slowest_steps columns');
SELECT is((pg_temp.out_columns('tasker_slowest_tasks(timestamptz, integer, text, text, text)'))[1:12],
          ARRAY['task_id', 'task_name', 'namespace_name', 'version', 'duration_seconds', 'step_count',
                'completed_steps', 'error_steps', 'created_at', 'completed_at', 'initiator', 'source_system'],
          'tasker_slowest_tasks: the Ruby get_slowest_tasks columns');
SELECT is(pg_temp.out_columns('tasker_health()'), ARRAY['check_name', 'status', 'detail'],
          'tasker_health: (check_name, status, detail)');
SELECT is((SELECT pg_get_function_arguments('tasker_slowest_steps(timestamptz, integer, text, text, text)'::regprocedure)),
          'since timestamp with time zone DEFAULT (now() - ''24:00:00''::interval), limit_count integer DEFAULT 10, namespace_filter text DEFAULT NULL::text, task_name_filter text DEFAULT NULL::text, version_filter text DEFAULT NULL::text',
          'tasker_slowest_steps: the Ruby parameters and defaults');
SELECT is((SELECT pg_get_function_arguments('tasker_analytics_metrics(timestamptz)'::regprocedure)),
          'since timestamp with time zone DEFAULT (now() - ''01:00:00''::interval)',
          'tasker_analytics_metrics: since defaults to an hour ago');

-- The readers run as their caller (so that row-level security applies,
-- issue 13) under a pinned search_path, and say what they do.
SELECT is(array_agg(p.proname::text ORDER BY p.proname), NULL,
          'every public observability function is SECURITY INVOKER with search_path pg_catalog, pg_temp')
  FROM pg_proc p
 WHERE p.proname IN ('tasker_system_health', 'tasker_analytics_metrics', 'tasker_slowest_steps',
                     'tasker_slowest_tasks', 'tasker_health', 'tasker_task_summary', 'tasker_task_diagram',
                     'tasker_template_diagram', 'tasker_task_bottlenecks', 'tasker_critical_path',
                     'tasker_task_graph')
   AND NOT (NOT p.prosecdef AND p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp']);
SELECT is(array_agg(p.oid::regprocedure::text ORDER BY 1), NULL, 'every observability function has a comment')
  FROM pg_proc p
 WHERE p.proname IN ('tasker_system_health', 'tasker_analytics_metrics', 'tasker_slowest_steps',
                     'tasker_slowest_tasks', 'tasker_health', 'tasker_task_summary', 'tasker_task_diagram',
                     'tasker_template_diagram', 'tasker_render_diagram', 'tasker_task_bottlenecks',
                     'tasker_critical_path', 'tasker_task_graph', 'tasker_bottleneck_config',
                     'tasker_check_window', 'tasker_require_task', 'tasker_template_for', 'tasker_state_styles')
   AND obj_description(p.oid, 'pg_proc') IS NULL;

-- Who may execute (issue 13): the reader level, not PUBLIC.
CREATE ROLE tasker_tap_watcher;
SELECT ok(NOT has_function_privilege('tasker_tap_watcher', 'tasker_task_summary(bigint)', 'EXECUTE'),
          'tasker_task_summary is not granted to PUBLIC');
SELECT ok(NOT has_function_privilege('tasker_tap_watcher', 'tasker_require_task(bigint)', 'EXECUTE'),
          'tasker_require_task is not granted to PUBLIC');
SELECT ok(NOT has_function_privilege('tasker_tap_watcher', 'tasker_template_for(text, text, text)', 'EXECUTE'),
          'tasker_template_for is not granted to PUBLIC');
SELECT ok(NOT has_function_privilege('tasker_tap_watcher', 'tasker_check_window(timestamptz, integer)', 'EXECUTE'),
          'tasker_check_window is not granted to PUBLIC');
SELECT ok(NOT has_function_privilege('tasker_tap_watcher', 'tasker_state_styles()', 'EXECUTE'),
          'tasker_state_styles is not granted to PUBLIC');
SELECT ok(NOT has_function_privilege('tasker_tap_watcher', 'tasker_health()', 'EXECUTE')
          AND has_function_privilege('tasker_reader', 'tasker_health()', 'EXECUTE')
          AND has_function_privilege('tasker_reader', 'tasker_analytics_metrics(timestamptz)', 'EXECUTE')
          AND has_function_privilege('tasker_reader', 'tasker_task_diagram(bigint, text)', 'EXECUTE')
          AND has_function_privilege('tasker_reader', 'tasker_task_bottlenecks(bigint, jsonb)', 'EXECUTE'),
          'health, analytics, diagrams and bottlenecks are for tasker_reader, not PUBLIC');
GRANT tasker_reader TO tasker_tap_watcher;
SELECT tasker_create_task('diamond_workflow', '{"order": 1}', namespace => 'shapes') AS diamond \gset
SET ROLE tasker_tap_watcher;
SELECT is(tasker_task_summary(:diamond)->'context', '{"order": 1}',
          'a member of tasker_reader reads the summary');
SELECT is((SELECT count(*) FROM tasker_task_bottlenecks(:diamond)), 7::bigint,
          'and analyses a task');
RESET ROLE;

-- The indexes behind the time windows.
SELECT has_index('tasker_workflow_step_transitions', 'tasker_step_transitions_created_at_idx', 'created_at');
SELECT has_index('tasker_task_transitions', 'tasker_task_transitions_created_at_idx', 'created_at');
SELECT has_index('tasker_tasks', 'tasker_tasks_created_at_idx', 'created_at');
SELECT index_is_type('tasker_workflow_step_transitions', 'tasker_step_transitions_created_at_idx', 'brin');
SELECT has_index('tasker_workflow_steps', 'tasker_workflow_steps_error_idx', 'task_id');
SELECT is(pg_get_expr(i.indpred, i.indrelid), '((current_state)::text = ''error''::text)',
          'the error index holds only steps in error')
  FROM pg_index i WHERE i.indexrelid = 'tasker_workflow_steps_error_idx'::regclass;

-- The Ruby guide's defaults, and overrides merged by group.
SELECT is(tasker_bottleneck_config(),
          '{"impact_multipliers": {"downstream_weight": 5, "blocked_weight": 15, "path_length_weight": 10,
                                   "completed_penalty": 15, "blocked_penalty": 25, "error_penalty": 30,
                                   "retry_penalty": 10},
            "severity_multipliers": {"error_state": 2.0, "exhausted_retry_bonus": 0.5, "dependency_issue": 1.2},
            "penalty_constants": {"retry_instability": 3, "non_retryable": 10, "exhausted_retry": 20},
            "severity_thresholds": {"critical": 100, "high": 50, "medium": 20},
            "duration_estimates": {"base_step_seconds": 30, "error_penalty_seconds": 60,
                                   "retry_penalty_seconds": 30}}'::jsonb,
          'the defaults are the Ruby developer guide''s');
SELECT is(tasker_bottleneck_config('{"impact_multipliers": {"blocked_weight": 20}}')->'impact_multipliers',
          '{"downstream_weight": 5, "blocked_weight": 20, "path_length_weight": 10, "completed_penalty": 15,
            "blocked_penalty": 25, "error_penalty": 30, "retry_penalty": 10}'::jsonb,
          'an override keeps the other settings of its group');

-- The analyses of a new diamond: its root holds everything up.
SELECT is((SELECT string_agg(step_name || ':' || downstream_count || '/' || blocked_count || '/'
                             || critical_path_length, ',' ORDER BY step_name)
             FROM tasker_task_bottlenecks(:diamond)),
          'branch_one_process:3/3/4,branch_one_validate:2/2/3,branch_two_process:3/3/4,branch_two_validate:2/2/3,end_workflow:0/0/1,merge_branches:1/1/2,start_workflow:6/6/5',
          'downstream/blocked/critical-path length of each step');
SELECT is((SELECT step_name FROM tasker_task_bottlenecks(:diamond) LIMIT 1), 'start_workflow',
          'the root comes first');
SELECT is((SELECT impact_score FROM tasker_task_bottlenecks(:diamond) WHERE step_name = 'start_workflow'),
          270, 'root: (6*5 + 6*15 + 5*10 + 4*25) * 1');
SELECT is((SELECT impact_score FROM tasker_task_bottlenecks(:diamond,
                      '{"impact_multipliers": {"downstream_weight": 0, "blocked_weight": 0, "path_length_weight": 0}}')
            WHERE step_name = 'end_workflow'),
          30, 'leaf waiting on its parent: 25 * 1.2');
SELECT is((SELECT string_agg(step_name, ',' ORDER BY path_position) FROM tasker_critical_path(:diamond)),
          'start_workflow,branch_one_process,branch_one_validate,merge_branches,end_workflow',
          'critical path: the longest chain, ties broken by name');
SELECT is((SELECT max(cumulative_seconds) FROM tasker_critical_path(:diamond,
                      '{"duration_estimates": {"base_step_seconds": 7}}')), 35.000,
          'five estimated steps of 7 s');

-- Diagrams are deterministic and well formed.
SELECT is(tasker_task_diagram(:diamond), tasker_task_diagram(:diamond), 'the same diagram twice');
SELECT matches(tasker_task_diagram(:diamond), '^---\ntitle: "diamond_workflow 1\.0\.0 \(shapes\): pending"\n---\nflowchart TD\n',
               'Mermaid: a titled flowchart');
SELECT is((SELECT count(*) FROM regexp_matches(tasker_task_diagram(:diamond), ' --> ', 'g')), 7::bigint,
          'Mermaid: one arrow per edge');
SELECT is((SELECT count(*) FROM regexp_matches(tasker_task_diagram(:diamond, 'dot'), ' -> ', 'g')), 7::bigint,
          'DOT: one arrow per edge');
SELECT matches(tasker_task_diagram(:diamond, 'dot'), '^digraph tasker \{\n.*\n\}\n$', 'DOT: one digraph');
SELECT is(tasker_render_diagram('t', '[{"key": "a", "label": ["x\"y"]}]', '[]', '[]', 'dot'),
          E'digraph tasker {\n    graph [label="t", labelloc=t, fontname="Helvetica"];\n    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];\n    s1 [label="x\\"y"];\n}\n',
          'DOT escapes quotes');

-- Health: one row per check, overall last, statuses from a closed set.
SELECT is((SELECT array_agg(check_name) FROM tasker_health()),
          ARRAY['live', 'ready', 'extension_version', 'workers', 'caught_up', 'oldest_ready_step',
                'stuck_leases', 'quarantined_steps', 'connections', 'task_error_rate', 'step_error_rate',
                'overall'], 'the checks, in order');
SELECT is((SELECT count(*) FROM tasker_health() WHERE status NOT IN ('ok', 'degraded', 'failing')), 0::bigint,
          'every status is ok, degraded or failing');
-- No worker serves this database and the diamond's root is ready.
SELECT is((SELECT status FROM tasker_health() WHERE check_name = 'workers'), 'failing',
          'ready steps and no worker: failing');
SELECT is((SELECT status FROM tasker_health() WHERE check_name = 'overall'), 'failing', 'overall failing');

-- Bad arguments: an SQLSTATE each.
SELECT throws_ok('SELECT tasker_task_summary(NULL)', '22004', 'task_id must not be NULL');
SELECT throws_ok('SELECT tasker_task_summary(-1)', '42704', 'task -1 does not exist');
SELECT throws_ok('SELECT tasker_task_diagram(-1)', '42704', 'task -1 does not exist');
SELECT throws_ok(format('SELECT tasker_task_diagram(%s, %L)', :diamond, 'svg'), '22023', 'unknown diagram format "svg"');
SELECT throws_ok(format('SELECT tasker_task_diagram(%s, NULL)', :diamond), '22004', 'diagram format must not be NULL');
SELECT throws_ok($$SELECT tasker_template_diagram('nope', 'shapes')$$, '42704',
                 'task template "nope" does not exist in namespace "shapes"');
SELECT throws_ok($$SELECT tasker_template_diagram('linear_workflow', 'shapes', '2.0.0')$$, '42704',
                 'task template "shapes.linear_workflow" has no version "2.0.0"');
SELECT throws_ok($$SELECT tasker_template_diagram('linear_workflow', NULL)$$, '22004',
                 'task_name and namespace must not be NULL');
SELECT throws_ok('SELECT * FROM tasker_task_bottlenecks(NULL)', '22004', 'task_id must not be NULL');
SELECT throws_ok(format('SELECT * FROM tasker_task_bottlenecks(%s, NULL)', :diamond), '22004', 'config must not be NULL');
SELECT throws_ok(format($$SELECT * FROM tasker_task_bottlenecks(%s, '{"weights": {}}')$$, :diamond), '22023',
                 'unknown bottleneck setting group "weights"');
SELECT throws_ok(format($$SELECT * FROM tasker_critical_path(%s, '{"duration_estimates": {"base": 1}}')$$, :diamond),
                 '22023', 'unknown bottleneck setting "duration_estimates.base"');
SELECT throws_ok($$SELECT tasker_bottleneck_config('{"severity_thresholds": {"medium": "x"}}')$$, '22023',
                 'bottleneck setting "severity_thresholds.medium" must be a non-negative number');
SELECT throws_ok('SELECT * FROM tasker_analytics_metrics(NULL)', '22004', 'since must not be NULL');
SELECT throws_ok('SELECT * FROM tasker_slowest_steps(now(), -5)', '22023', 'limit_count must be a positive number');
SELECT throws_ok('SELECT * FROM tasker_slowest_tasks(NULL)', '22004', 'since must not be NULL');

-- The indexes behind tasker_system_health and the slowest_* functions.
SELECT has_index('tasker_workflow_steps', 'tasker_workflow_steps_task_idx', 'task_id');
SELECT has_index('tasker_workflow_step_transitions', 'tasker_step_transitions_finished_idx', 'created_at');
SELECT has_index('tasker_task_transitions', 'tasker_task_transitions_finished_idx', 'created_at');
SELECT ok(pg_get_indexdef('tasker_step_transitions_duration_idx'::regclass)
          ~ 'round\(EXTRACT\(epoch FROM \(created_at - attempt_started_at\)\), 3\) DESC, workflow_step_id\)',
          'the steps'' duration index: the run of the attempt, slowest first, ties by step');
SELECT ok(pg_get_indexdef('tasker_task_transitions_duration_idx'::regclass)
          ~ 'round\(EXTRACT\(epoch FROM \(created_at - task_created_at\)\), 3\) DESC, task_id\)',
          'the tasks'' duration index: from creation to the outcome, slowest first, ties by task');

-- State counts (tasker_state_counts), kept by the statement triggers: they
-- agree with the tables whatever changes them.
SELECT is((SELECT count(*) FROM tasker_state_count_errors()), 0::bigint,
          'the kept counts agree with the tables');
SELECT is((SELECT total_steps || ',' || pending_steps || ',' || total_tasks FROM tasker_system_health()),
          (SELECT count(*) || ',' || count(*) FILTER (WHERE current_state = 'pending') FROM tasker_workflow_steps)
          || ',' || (SELECT count(*) FROM tasker_tasks),
          'tasker_system_health counts steps and tasks as the tables do');
SELECT pending_steps AS p0, in_progress_steps AS i0 FROM tasker_system_health() \gset
SELECT tasker_transition_step((SELECT min(workflow_step_id) FROM tasker_workflow_steps WHERE task_id = :diamond),
                              'in_progress') IS NOT NULL AS moved \gset
SELECT is((SELECT pending_steps || ',' || in_progress_steps FROM tasker_system_health()),
          (:p0 - 1) || ',' || (:i0 + 1), 'a step that starts moves from pending to in_progress');
SELECT count(*) AS rows0 FROM tasker_state_counts \gset
UPDATE tasker_workflow_steps SET updated_at = now() WHERE task_id = :diamond;
SELECT is((SELECT count(*) FROM tasker_state_counts), :rows0::bigint,
          'an update that changes no state appends no count');
-- Many small changes: the rows are folded now and then.
DO $$
DECLARE
    sid bigint := (SELECT max(workflow_step_id) FROM tasker_workflow_steps);
BEGIN
    FOR i IN 1 .. 300 LOOP
        UPDATE tasker_workflow_steps
           SET current_state = CASE current_state WHEN 'pending' THEN 'cancelled' ELSE 'pending' END
         WHERE workflow_step_id = sid;
    END LOOP;
END
$$;
SELECT cmp_ok((SELECT count(*) FROM tasker_state_counts), '<', 150::bigint,
              '300 changes of state leave fewer than 150 rows (folded)');
SELECT is((SELECT count(*) FROM tasker_state_count_errors()), 0::bigint, 'and the counts still agree');
-- A load that bypasses ordinary triggers (replica) is counted too.
SET session_replication_role = replica;
INSERT INTO tasker_tasks (named_task_id, identity_hash, current_state)
SELECT named_task_id, 'replica-' || i, 'cancelled'
  FROM tasker_named_tasks, generate_series(1, 3) i WHERE name = 'linear_workflow';
RESET session_replication_role;
SELECT is((SELECT cancelled_tasks FROM tasker_system_health()),
          (SELECT count(*) FROM tasker_tasks WHERE current_state = 'cancelled'),
          'rows inserted with session_replication_role = replica are counted');
-- A count that disagrees is reported, and recounted.
INSERT INTO tasker_state_counts (entity, state, n) VALUES ('step', 'complete', 5);
SELECT is((SELECT problem || ': ' || detail FROM tasker_check() WHERE task_id IS NULL),
          'state count disagrees with the table: tasker_state_counts keeps 5 steps in state complete; the table has 0. Way out: SELECT tasker_recount_states();',
          'tasker_check reports a count that disagrees');
SELECT cmp_ok(tasker_recount_states(), '>', 0::bigint, 'tasker_recount_states writes the counts again');
SELECT is((SELECT count(*) FROM tasker_state_count_errors()), 0::bigint, 'and they agree');
SELECT ok(NOT has_function_privilege('tasker_reader', 'tasker_recount_states()', 'EXECUTE')
          AND has_function_privilege('tasker_admin', 'tasker_recount_states()', 'EXECUTE'),
          'recounting is for tasker_admin');

-- The slowest steps and tasks: the answer from the duration indexes (a
-- limit of 1,000 or less) is the window's own (a limit above 1,000 reads
-- the window), over 300 finished tasks of one step across 30 days, with
-- durations in 50 values (ties), every tenth task failing once before it
-- completes (the 300th is created at now() and finishes after it: it is
-- in no window).
CREATE TEMP TABLE slow_t AS
SELECT i, now() - interval '30 days' + i * interval '144 minutes' AS created_at,
       ((i * 7919) % 50) / 10.0 AS dur
  FROM generate_series(1, 300) i;
INSERT INTO tasker_tasks (named_task_id, identity_hash, current_state, complete, created_at)
SELECT nt.named_task_id, 'slow-' || s.i, 'complete', true, s.created_at
  FROM slow_t s, tasker_named_tasks nt WHERE nt.name = 'linear_workflow';
INSERT INTO tasker_workflow_steps (task_id, named_step_id, current_state, attempts, created_at)
SELECT t.task_id, (SELECT min(named_step_id) FROM tasker_named_steps), 'complete', 1, t.created_at
  FROM tasker_tasks t WHERE t.identity_hash LIKE 'slow-%';
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, sort_key,
                                              most_recent, created_at, attempt_started_at)
SELECT w.workflow_step_id, w.task_id, v.f, v.t, v.k, v.k = 20, v.at, v.started
  FROM tasker_workflow_steps w
  JOIN tasker_tasks t ON t.task_id = w.task_id
  JOIN slow_t s ON 'slow-' || s.i = t.identity_hash
 CROSS JOIN LATERAL (VALUES
       ('pending', 'in_progress', 10, s.created_at + interval '1 second', NULL::timestamptz),
       ('in_progress', 'complete', 20, s.created_at + interval '1 second' + s.dur * interval '1 second',
        s.created_at + interval '1 second')) v(f, t, k, at, started);
INSERT INTO tasker_task_transitions (task_id, from_state, to_state, sort_key, most_recent, created_at,
                                     task_created_at)
SELECT t.task_id, v.f, v.t, v.k, v.k = 40, v.at, CASE WHEN v.t IN ('complete', 'error') THEN s.created_at END
  FROM tasker_tasks t
  JOIN slow_t s ON 'slow-' || s.i = t.identity_hash
 CROSS JOIN LATERAL (VALUES
       ('pending', 'in_progress', 10, s.created_at),
       ('in_progress', 'error', 20, s.created_at + interval '2 seconds' + s.dur * interval '1 second'),
       ('error', 'in_progress', 30, s.created_at + interval '3 seconds' + s.dur * interval '1 second'),
       ('in_progress', 'complete', 40, s.created_at + interval '9 seconds' + s.dur * interval '1 second')) v(f, t, k, at)
 WHERE v.k IN (10, 40) OR s.i % 10 = 0;
-- Task 150 failed 100 s after its creation and completed 200 s after: its
-- two outcomes are the slowest rows of all.
UPDATE tasker_task_transitions x
   SET created_at = s.created_at + CASE x.to_state WHEN 'error' THEN interval '100 seconds'
                                                   ELSE interval '200 seconds' END
  FROM tasker_tasks t JOIN slow_t s ON 'slow-' || s.i = t.identity_hash
 WHERE x.task_id = t.task_id AND s.i = 150 AND x.to_state IN ('error', 'complete');
CREATE FUNCTION pg_temp.same(q1 text, q2 text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE a text; b text;
BEGIN
    EXECUTE format('SELECT array_agg(x::text) FROM (%s) x', q1) INTO a;
    EXECUTE format('SELECT array_agg(x::text) FROM (%s) x', q2) INTO b;
    RETURN a IS NOT NULL AND a = b;
END $$;
SELECT ok(pg_temp.same($$SELECT * FROM tasker_slowest_steps(now() - interval '31 days', 7)$$,
                       $$SELECT * FROM tasker_slowest_steps(now() - interval '31 days', 1001) LIMIT 7$$),
          'slowest steps of 30 days: the index''s answer is the window''s');
SELECT ok(pg_temp.same($$SELECT * FROM tasker_slowest_steps(now() - interval '3 days', 5, 'shapes')$$,
                       $$SELECT * FROM tasker_slowest_steps(now() - interval '3 days', 1001, 'shapes') LIMIT 5$$),
          'slowest steps of 3 days in a namespace: the same');
SELECT is((SELECT count(*) FROM tasker_slowest_steps(now() - interval '3 days', 5, 'default')), 0::bigint,
          'none in a namespace without them');
SELECT ok(pg_temp.same($$SELECT * FROM tasker_slowest_tasks(now() - interval '31 days', 7)$$,
                       $$SELECT * FROM tasker_slowest_tasks(now() - interval '31 days', 1001) LIMIT 7$$),
          'slowest tasks of 30 days: the index''s answer is the window''s');
SELECT ok(pg_temp.same($$SELECT * FROM tasker_slowest_tasks(now() - interval '5 days', 12, task_name_filter => 'linear_workflow')$$,
                       $$SELECT * FROM tasker_slowest_tasks(now() - interval '5 days', 1001, task_name_filter => 'linear_workflow') LIMIT 12$$),
          'slowest tasks of 5 days of one template: the same');
SELECT is((SELECT count(DISTINCT task_id) FROM tasker_slowest_tasks(now() - interval '31 days', 2)), 2::bigint,
          'the two slowest tasks are two tasks (an earlier outcome of the slowest is not its own row)');
SELECT is((SELECT string_agg(task_status, ',') FROM tasker_slowest_tasks(now() - interval '31 days', 1000)
            WHERE task_id IN (SELECT task_id FROM tasker_tasks t JOIN slow_t s ON 'slow-' || s.i = t.identity_hash
                               WHERE s.i % 10 = 0 AND s.i < 300)),
          repeat('complete,', 28) || 'complete',
          'a task that failed, then completed, counts once, by its last outcome');
UPDATE tasker_workflow_step_transitions SET attempt_started_at = NULL
 WHERE to_state = 'complete'
   AND task_id = (SELECT t.task_id FROM tasker_tasks t JOIN slow_t s ON 'slow-' || s.i = t.identity_hash
                   ORDER BY s.dur DESC, s.i DESC LIMIT 1);
SELECT ok(pg_temp.same($$SELECT * FROM tasker_slowest_steps(now() - interval '31 days', 3)$$,
                       $$SELECT * FROM tasker_slowest_steps(now() - interval '31 days', 1001) LIMIT 3$$),
          'a completion without its start on the row (before 0.2.0) is looked up, in the window''s answer');

-- Deleting tasks, and TRUNCATE, keep the counts.
DELETE FROM tasker_tasks WHERE identity_hash LIKE 'slow-%';
SELECT is((SELECT count(*) FROM tasker_state_count_errors()), 0::bigint,
          'deleting tasks (their steps by cascade) keeps the counts');
TRUNCATE tasker_tasks CASCADE;
SELECT is((SELECT total_tasks || ',' || total_steps FROM tasker_system_health()), '0,0',
          'after TRUNCATE, no task and no step');

SELECT * FROM finish();
ROLLBACK;
