-- 081_observability_analytics: analytics, health and the task summary on
-- fixed data.  It all runs in one transaction that first deletes the tasks
-- of the earlier files and is rolled back at the end; now() is the start of
-- that transaction, so times set relative to it give exact figures.  No
-- worker serves this database: steps that are ready make health failing.
SET client_min_messages = warning;
\set SHOW_CONTEXT never

CREATE FUNCTION obs61_ok(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('step', step->>'step_name') $$;
SELECT tasker_register_template($y$
name: obs_pay
namespace_name: billing
version: 1.0.0
step_templates:
  - name: charge
    handler_class: obs61_ok
  - name: receipt
    handler_class: obs61_ok
    depends_on_step: charge
$y$) > 0 AS registered;
SELECT tasker_register_template($y$
name: obs_pay
namespace_name: billing
version: 2.0.0
step_templates:
  - name: charge
    handler_class: obs61_ok
  - name: receipt
    handler_class: obs61_ok
    depends_on_step: charge
$y$) > 0 AS registered;
SELECT tasker_register_template($y$
name: obs_ship
version: 1.0.0
step_templates:
  - name: pack
    handler_class: obs61_ok
  - name: notify
    depends_on_step: pack
    handler_config: {type: api, url: "http://127.0.0.1:1/notify"}
$y$) > 0 AS registered;

BEGIN;
DELETE FROM tasker_tasks;

-- The tasks, by label, with their creation time.
CREATE TEMP TABLE obs_t (label text PRIMARY KEY, task_id bigint, created_at timestamptz);
INSERT INTO obs_t VALUES
    ('a1', tasker_create_task('obs_pay', namespace => 'billing', version => '1.0.0', identity_key => 'a1'),
     now() - interval '50 minutes'),
    ('a2', tasker_create_task('obs_pay', namespace => 'billing', version => '1.0.0', identity_key => 'a2'),
     now() - interval '40 minutes'),
    ('a3', tasker_create_task('obs_pay', namespace => 'billing', version => '1.0.0', identity_key => 'a3'),
     now() - interval '30 minutes'),
    ('a4', tasker_create_task('obs_pay', namespace => 'billing', version => '2.0.0', identity_key => 'a4'),
     now() - interval '3 hours'),
    ('b1', tasker_create_task('obs_ship', identity_key => 'b1'), now() - interval '20 minutes'),
    ('b2', tasker_create_task('obs_ship', identity_key => 'b2'), now() - interval '10 minutes'),
    ('b3', tasker_create_task('obs_ship', identity_key => 'b3'), now() - interval '5 minutes'),
    ('b4', tasker_create_task('obs_ship', identity_key => 'b4'), now() - interval '4 minutes');
UPDATE tasker_tasks t SET created_at = o.created_at, requested_at = o.created_at
  FROM obs_t o WHERE o.task_id = t.task_id;
UPDATE tasker_workflow_steps s SET created_at = o.created_at
  FROM obs_t o WHERE o.task_id = s.task_id;

CREATE FUNCTION pg_temp.step(label text, name text) RETURNS bigint LANGUAGE sql AS $$
    SELECT s.workflow_step_id FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
      JOIN obs_t o ON o.task_id = s.task_id WHERE o.label = $1 AND n.name = $2 $$;
-- Move a step (or, with no step name, the task) through the state machine
-- and date the transition this many seconds after the task's creation.
CREATE FUNCTION pg_temp.go(label text, name text, state text, seconds numeric) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    task bigint := (SELECT task_id FROM obs_t WHERE obs_t.label = go.label);
    at timestamptz := (SELECT created_at FROM obs_t WHERE obs_t.label = go.label)
                      + seconds * interval '1 second';
BEGIN
    IF name IS NULL THEN
        PERFORM tasker_transition_task(task, state);
        UPDATE tasker_task_transitions SET created_at = at WHERE task_id = task AND most_recent;
    ELSE
        PERFORM tasker_transition_step(pg_temp.step(label, name), state);
        UPDATE tasker_workflow_step_transitions SET created_at = at
         WHERE workflow_step_id = pg_temp.step(label, name) AND most_recent;
        IF state = 'in_progress' THEN
            UPDATE tasker_workflow_steps SET attempts = attempts + 1, last_attempted_at = at
             WHERE workflow_step_id = pg_temp.step(label, name);
        END IF;
    END IF;
END $$;

-- a1 (50 min ago): charge 2 s, receipt 3 s, complete after 5 s.
SELECT pg_temp.go('a1', NULL, 'in_progress', 0), pg_temp.go('a1', 'charge', 'in_progress', 0),
       pg_temp.go('a1', 'charge', 'complete', 2), pg_temp.go('a1', 'receipt', 'in_progress', 2),
       pg_temp.go('a1', 'receipt', 'complete', 5), pg_temp.go('a1', NULL, 'complete', 5);
-- a2 (40 min ago): charge fails after 1 s, succeeds on its retry in 4 s,
-- receipt 1 s, complete after 8 s.
SELECT pg_temp.go('a2', NULL, 'in_progress', 0), pg_temp.go('a2', 'charge', 'in_progress', 0),
       pg_temp.go('a2', 'charge', 'error', 1), pg_temp.go('a2', 'charge', 'pending', 3),
       pg_temp.go('a2', 'charge', 'in_progress', 3), pg_temp.go('a2', 'charge', 'complete', 7),
       pg_temp.go('a2', 'receipt', 'in_progress', 7), pg_temp.go('a2', 'receipt', 'complete', 8),
       pg_temp.go('a2', NULL, 'complete', 8);
-- a3 (30 min ago): charge fails for good after 2 s; the task fails.
SELECT pg_temp.go('a3', NULL, 'in_progress', 0), pg_temp.go('a3', 'charge', 'in_progress', 0),
       pg_temp.go('a3', 'charge', 'error', 2), pg_temp.go('a3', NULL, 'error', 2);
-- a4 (3 hours ago, version 2.0.0): charge 12 s, receipt 8 s.
SELECT pg_temp.go('a4', NULL, 'in_progress', 0), pg_temp.go('a4', 'charge', 'in_progress', 0),
       pg_temp.go('a4', 'charge', 'complete', 12), pg_temp.go('a4', 'receipt', 'in_progress', 12),
       pg_temp.go('a4', 'receipt', 'complete', 20), pg_temp.go('a4', NULL, 'complete', 20);
-- b1 (20 min ago): pack 10 s; notify resolved by hand; complete after 10 s.
SELECT pg_temp.go('b1', NULL, 'in_progress', 0), pg_temp.go('b1', 'pack', 'in_progress', 0),
       pg_temp.go('b1', 'pack', 'complete', 10), pg_temp.go('b1', 'notify', 'resolved_manually', 10),
       pg_temp.go('b1', NULL, 'complete', 10);
-- a2's steps returned results.
UPDATE tasker_workflow_steps SET results = '{"charged": 29.97}' WHERE workflow_step_id = pg_temp.step('a2', 'charge');
UPDATE tasker_workflow_steps SET results = '{"sent": true}' WHERE workflow_step_id = pg_temp.step('a2', 'receipt');
-- b2 (10 min ago) waits: its pack step has been due since then.
UPDATE tasker_workflow_steps SET next_attempt_at = now() - interval '10 minutes'
 WHERE workflow_step_id = pg_temp.step('b2', 'pack');
-- b3 (5 min ago): pack failed after 1 s and waits for its retry in 5
-- minutes.
SELECT pg_temp.go('b3', NULL, 'in_progress', 0), pg_temp.go('b3', 'pack', 'in_progress', 0),
       pg_temp.go('b3', 'pack', 'error', 1);
UPDATE tasker_workflow_steps SET next_attempt_at = now() + interval '5 minutes'
 WHERE workflow_step_id = pg_temp.step('b3', 'pack');
-- b4 (4 min ago): pack 2 s; notify, an HTTP step, runs under a lease that
-- expired 2 minutes ago (a worker died holding it).
SELECT pg_temp.go('b4', NULL, 'in_progress', 0), pg_temp.go('b4', 'pack', 'in_progress', 0),
       pg_temp.go('b4', 'pack', 'complete', 2), pg_temp.go('b4', 'notify', 'in_progress', 2);
UPDATE tasker_workflow_steps SET lease_expires_at = now() - interval '2 minutes'
 WHERE workflow_step_id = pg_temp.step('b4', 'notify');
-- a3's charge was quarantined: tasker could not run it.
UPDATE tasker_workflow_steps
   SET retryable = false,
       results = '{"error": {"message": "tasker could not run the step: the step''s template or task row is missing", "permanent": true}}'
 WHERE workflow_step_id = pg_temp.step('a3', 'charge');

SELECT o.label, t.current_state, string_agg(n.name || ':' || s.current_state, ', ' ORDER BY n.name) AS steps
  FROM obs_t o JOIN tasker_tasks t USING (task_id)
  JOIN tasker_workflow_steps s USING (task_id) JOIN tasker_named_steps n USING (named_step_id)
 GROUP BY o.label, t.current_state ORDER BY o.label;

-- The last hour: a1, a2 and b1 completed (5, 8 and 10 s), a3 failed:
-- health 1 - 1/4; step runs of 2, 3, 4, 1, 10 and 2 s completed, three
-- attempts failed (a2's first charge, a3's charge, b3's pack).
SELECT active_tasks_count, total_namespaces_count, unique_task_types_count, system_health_score,
       task_throughput, completion_count, error_count, completion_rate, error_rate,
       avg_task_duration, avg_step_duration, step_throughput, tasks_created,
       analysis_period_start = now() - interval '1 hour' AS window_start, calculated_at = now() AS calculated_now
  FROM tasker_analytics_metrics();
SELECT p50_task_duration, p95_task_duration, p99_task_duration,
       p50_step_duration, p95_step_duration, p99_step_duration, step_error_count, step_error_rate
  FROM tasker_analytics_metrics(now() - interval '1 hour');
-- Four hours take in a4 (20 s; steps 12 and 8 s).
SELECT task_throughput, completion_count, error_count, system_health_score, avg_task_duration,
       p50_task_duration, step_throughput, avg_step_duration, tasks_created
  FROM tasker_analytics_metrics(now() - interval '4 hours');
-- A window with nothing in it.
SELECT task_throughput, system_health_score, completion_rate, error_rate, avg_task_duration,
       p50_task_duration, step_throughput, step_error_rate, tasks_created
  FROM tasker_analytics_metrics(now() + interval '1 minute');

-- Slowest steps of the last hour, then filtered.
SELECT o.label, s.step_name, s.task_name, s.namespace_name, s.version, s.duration_seconds,
       s.attempts, s.completed_at - now() AS completed, s.created_at = o.created_at AS created,
       s.retryable, s.step_status
  FROM tasker_slowest_steps(now() - interval '1 hour') WITH ORDINALITY s
  JOIN obs_t o USING (task_id) ORDER BY s.ordinality;
SELECT o.label, s.step_name, s.duration_seconds
  FROM tasker_slowest_steps(now() - interval '1 hour', 2) WITH ORDINALITY s
  JOIN obs_t o USING (task_id) ORDER BY s.ordinality;
SELECT o.label, s.step_name, s.duration_seconds
  FROM tasker_slowest_steps(now() - interval '1 hour', namespace_filter => 'billing') WITH ORDINALITY s
  JOIN obs_t o USING (task_id) ORDER BY s.ordinality;
SELECT o.label, s.step_name, s.duration_seconds
  FROM tasker_slowest_steps(now() - interval '4 hours', task_name_filter => 'obs_pay', version_filter => '2.0.0')
       WITH ORDINALITY s
  JOIN obs_t o USING (task_id) ORDER BY s.ordinality;
SELECT count(*) AS none FROM tasker_slowest_steps(now() - interval '1 hour', namespace_filter => 'nowhere');

-- Slowest tasks: by outcome in the window, failed ones included.
SELECT o.label, s.task_name, s.namespace_name, s.version, s.duration_seconds, s.step_count,
       s.completed_steps, s.error_steps, s.created_at = o.created_at AS created,
       s.completed_at - now() AS finished, s.initiator, s.source_system, s.task_status
  FROM tasker_slowest_tasks(now() - interval '1 hour') WITH ORDINALITY s
  JOIN obs_t o USING (task_id) ORDER BY s.ordinality;
SELECT o.label, s.duration_seconds, s.task_status
  FROM tasker_slowest_tasks(now() - interval '4 hours', 2, 'billing') WITH ORDINALITY s
  JOIN obs_t o USING (task_id) ORDER BY s.ordinality;

-- Counts by state; b3's pack is in error with a retry to come, in backoff;
-- a3's charge has none left.
SELECT total_tasks, pending_tasks, in_progress_tasks, complete_tasks, error_tasks, cancelled_tasks,
       resolved_manually_tasks, total_steps, pending_steps, in_progress_steps, complete_steps,
       error_steps, cancelled_steps, resolved_manually_steps, retryable_error_steps,
       exhausted_retry_steps, in_backoff_steps, active_connections >= 1 AS connected,
       max_connections = current_setting('max_connections')::bigint AS max_ok
  FROM tasker_system_health();

-- Health: b2's step is ready and has waited 10 minutes, no worker serves
-- this database (the cluster's workers serve tasker.database_name), b4's
-- lease expired, a3's charge is quarantined: failing.
SELECT check_name, status FROM tasker_health();
SELECT detail - 'states' - 'active' - 'executors' - 'preloaded' - 'database_name' - 'action' AS workers,
       detail ? 'action' AS says_what_to_do
  FROM tasker_health() WHERE check_name = 'workers';
SELECT check_name, detail - 'due_at' - 'step_id' - 'task_id' - 'step_ids' - 'oldest_expiry' AS detail
  FROM tasker_health()
 WHERE check_name IN ('caught_up', 'oldest_ready_step', 'stuck_leases', 'quarantined_steps',
                      'task_error_rate', 'step_error_rate', 'overall');
SELECT detail->>'age_seconds' AS age, detail->'task_id' = to_jsonb((SELECT task_id FROM obs_t WHERE label = 'b2')) AS b2
  FROM tasker_health() WHERE check_name = 'oldest_ready_step';
SELECT detail->'steps' AS steps, detail->'step_ids' = jsonb_build_array(pg_temp.step('b4', 'notify')) AS b4_notify
  FROM tasker_health() WHERE check_name = 'stuck_leases';
SELECT detail->'steps' AS steps, detail->'step_ids' = jsonb_build_array(pg_temp.step('a3', 'charge')) AS a3_charge
  FROM tasker_health() WHERE check_name = 'quarantined_steps';
SELECT detail->>'installed' = extversion AS installed, status
  FROM tasker_health(), pg_extension WHERE check_name = 'extension_version' AND extname = 'tasker';

-- With nothing ready, no lease expired and nothing quarantined, the missing
-- workers only degrade health.
SAVEPOINT calm;
UPDATE tasker_workflow_steps SET next_attempt_at = now() + interval '1 hour'
 WHERE workflow_step_id = pg_temp.step('b2', 'pack');
UPDATE tasker_workflow_steps SET lease_expires_at = now() + interval '1 minute'
 WHERE workflow_step_id = pg_temp.step('b4', 'notify');
UPDATE tasker_workflow_steps SET results = '{"error": {"message": "card declined"}}'
 WHERE workflow_step_id = pg_temp.step('a3', 'charge');
SELECT check_name, status FROM tasker_health();
-- A ready step of the worker kind waits for external workers, not for
-- tasker's executors: it does not make the workers check fail.
SELECT tasker_register_template($y$
name: obs_external
step_templates:
  - name: render
    handler_config: {type: worker, queue: renders}
$y$) > 0 AS registered;
SELECT tasker_create_task('obs_external') IS NOT NULL AS created;
SELECT check_name, status, detail->'ready_steps' AS ready_steps FROM tasker_health()
 WHERE check_name IN ('workers', 'caught_up', 'oldest_ready_step', 'overall');
-- More than half of the last hour's tasks failed: task_error_rate degrades.
UPDATE tasker_task_transitions x SET to_state = 'error'
  FROM obs_t o WHERE o.task_id = x.task_id AND o.label IN ('a1', 'a2') AND x.to_state = 'complete';
SELECT status, detail FROM tasker_health() WHERE check_name = 'task_error_rate';
ROLLBACK TO SAVEPOINT calm;

-- The summary of a2: the task, its steps with timings and results, edges.
SELECT s->>'name' AS name, s->>'namespace' AS namespace, s->>'version' AS version,
       s->>'state' AS state, s->'context' AS context,
       (s->>'created_at')::timestamptz - now() AS created, (s->>'started_at')::timestamptz - now() AS started,
       (s->>'completed_at') IS NOT NULL AS completed, s->'edges' AS edges
  FROM tasker_task_summary((SELECT task_id FROM obs_t WHERE label = 'a2')) s;
SELECT jsonb_pretty(tasker_task_summary((SELECT task_id FROM obs_t WHERE label = 'a2'))->'execution');
SELECT x->>'name' AS name, x->>'state' AS state, x->'attempts' AS attempts, x->'parents' AS parents,
       (x->>'started_at')::timestamptz - now() AS started, (x->>'finished_at')::timestamptz - now() AS finished,
       x->'run_seconds' AS run_seconds, x->'results' AS results, x->'error' AS error
  FROM jsonb_array_elements(tasker_task_summary((SELECT task_id FROM obs_t WHERE label = 'a2'))->'steps') x;
SELECT x->>'from_state' AS from_state, x->>'to_state' AS to_state, (x->>'at')::timestamptz - now() AS at
  FROM jsonb_array_elements(tasker_task_summary((SELECT task_id FROM obs_t WHERE label = 'a2'))->'transitions') x;
-- a3's failed step carries its error, b2's pending steps neither results nor error.
SELECT x->>'name' AS name, x->>'state' AS state, x->'error'->>'message' AS error, x->'results' AS results
  FROM obs_t o, jsonb_array_elements(tasker_task_summary(o.task_id)->'steps') x
 WHERE o.label IN ('a3', 'b2') ORDER BY o.label, x->>'name';

-- The readers are for tasker_reader (issue 13), not PUBLIC: a member
-- reads everything, a role outside it nothing.
CREATE ROLE regress_obs_reader IN ROLE tasker_reader;
CREATE ROLE regress_obs_nobody;
GRANT SELECT ON obs_t TO regress_obs_reader, regress_obs_nobody;
SAVEPOINT reader;
SET ROLE regress_obs_reader;
SELECT length(tasker_task_diagram((SELECT task_id FROM obs_t WHERE label = 'a2'))) > 0 AS diagram,
       (SELECT count(*) FROM tasker_task_bottlenecks((SELECT task_id FROM obs_t WHERE label = 'a2'))) AS steps,
       (SELECT task_throughput FROM tasker_analytics_metrics()) AS throughput,
       (SELECT status FROM tasker_health() WHERE check_name = 'overall') AS health;
SELECT tasker_task_summary((SELECT task_id FROM obs_t WHERE label = 'a2'))->>'state' AS summary;
ROLLBACK TO SAVEPOINT reader;
SET ROLE regress_obs_nobody;
-- invalid input: no EXECUTE on the summary nor the health
SELECT tasker_task_summary((SELECT task_id FROM obs_t WHERE label = 'a2'));
ROLLBACK TO SAVEPOINT reader;
SET ROLE regress_obs_nobody;
SELECT * FROM tasker_health();
ROLLBACK TO SAVEPOINT reader;
SELECT current_user = session_user AS role_reset;
ROLLBACK;

-- The rollback took every task of this file away, and left the others'
-- tasks alone.
SELECT count(*) > 0 AS earlier_tasks_back FROM tasker_tasks;

-- invalid input: NULL window, limits, ids
SELECT * FROM tasker_analytics_metrics(NULL);
SELECT * FROM tasker_slowest_steps(NULL);
SELECT * FROM tasker_slowest_steps(now() - interval '1 hour', 0);
SELECT * FROM tasker_slowest_tasks(now() - interval '1 hour', NULL);
SELECT tasker_task_summary(NULL);
SELECT tasker_task_summary(-1);
