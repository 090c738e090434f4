-- bench/analytics_load.sql: load a history of finished tasks straight into
-- tasker's tables, set based, for the analytics timings of bench/run
-- (workload analytics).  psql variables:
--   ntasks   tasks of the template linear5 (5 steps each, s1 -> ... -> s5)
--   days     the history spans the last :days days, tasks created at an
--            even pace, oldest first
-- The rows are what the engine leaves behind, as tasker_run_task would
-- write them: each task pending -> in_progress -> complete; each step
-- pending -> in_progress -> complete, its attempt running 1 ms to 2 s
-- (log-uniform), the steps of a task one after the other 10 ms apart; a
-- transition that ends an attempt keeps the attempt's start
-- (attempt_started_at), and one that finishes a task the task's creation
-- (task_created_at), as src/state.c writes them.
-- Every 50th step failed its first attempt and succeeded after a 1 s
-- backoff (in_progress -> error -> pending -> in_progress -> complete);
-- every 100th task failed for good at s3 (in_progress -> error, not
-- retryable), leaving s4 and s5 pending, and the task in error.  Rows go
-- in in time order, as the engine inserts them, so the BRIN indexes on
-- created_at see the same correlation.  Foreign keys are not checked
-- (session_replication_role = replica); sequences are moved past the new
-- ids at the end.  Deterministic: setseed(0.42).
\set ON_ERROR_STOP on
SET session_replication_role = replica;
SELECT setseed(0.42);

CREATE TEMP TABLE b_ids AS
SELECT (SELECT COALESCE(max(task_id), 0) FROM tasker_tasks) AS task0,
       (SELECT COALESCE(max(workflow_step_id), 0) FROM tasker_workflow_steps) AS step0,
       nt.named_task_id,
       (SELECT array_agg(l.named_step_id ORDER BY n.name)
          FROM tasker_named_tasks_named_steps l
          JOIN tasker_named_steps n USING (named_step_id)
         WHERE l.named_task_id = nt.named_task_id) AS named_steps
  FROM tasker_named_tasks nt WHERE nt.name = 'linear5';

-- One row per step: when its attempts ran.
CREATE TEMP TABLE b_step AS
WITH t AS (
    SELECT i, b.task0 + i AS task_id,
           now() - make_interval(days => :days) + (i - 1) * (make_interval(days => :days) / :ntasks) AS created_at,
           i % 100 = 0 AS failed
      FROM generate_series(1, :ntasks) i, b_ids b),
s AS (
    SELECT t.i, t.task_id, t.created_at, t.failed, j, b.step0 + (t.i - 1) * 5 + j AS step_id,
           b.named_steps[j] AS named_step_id,
           exp(random() * ln(2000)) / 1000.0 AS run_s,
           exp(random() * ln(2000)) / 1000.0 AS first_run_s,
           NOT (t.failed AND j = 3) AND ((t.i - 1) * 5 + j) % 50 = 0 AS retried,
           t.failed AND j >= 3 AS not_done
      FROM t CROSS JOIN generate_series(1, 5) j, b_ids b),
span AS (
    SELECT s.*, 0.01 + CASE WHEN retried THEN first_run_s + 1.0 ELSE 0 END + run_s AS span_s
      FROM s),
o AS (
    SELECT span.*,
           sum(span_s) OVER (PARTITION BY task_id ORDER BY j) - span_s AS start_s
      FROM span)
SELECT o.*,
       created_at + make_interval(secs => start_s + 0.01) AS first_start,
       created_at + make_interval(secs => start_s + 0.01 + first_run_s) AS first_error,
       created_at + make_interval(secs => start_s + 0.01 + first_run_s + 1.0) AS second_start,
       created_at + make_interval(secs => start_s + span_s - run_s) AS last_start,
       created_at + make_interval(secs => start_s + span_s) AS finished
  FROM o;

-- Tasks: complete, or in error at s3's failure.
INSERT INTO tasker_tasks (task_id, named_task_id, complete, requested_at, initiator, source_system,
                          reason, identity_hash, current_state, completed_at, created_at, updated_at)
SELECT s.task_id, b.named_task_id, NOT s.failed, s.created_at, 'bench', 'bench', 'analytics',
       'bench-analytics-' || s.task_id, CASE WHEN s.failed THEN 'error' ELSE 'complete' END,
       CASE WHEN s.failed THEN NULL ELSE s.finished END, s.created_at, s.finished
  FROM b_step s, b_ids b
 WHERE s.j = CASE WHEN s.failed THEN 3 ELSE 5 END
 ORDER BY s.task_id;

INSERT INTO tasker_workflow_steps (workflow_step_id, task_id, named_step_id, retryable, retry_limit,
                                   in_process, processed, processed_at, attempts, last_attempted_at,
                                   results, current_state, unfinished_parents, handler_kind,
                                   created_at, updated_at)
SELECT s.step_id, s.task_id, s.named_step_id, NOT (s.failed AND s.j = 3), 3, false,
       NOT s.not_done, CASE WHEN NOT s.not_done THEN s.finished END,
       CASE WHEN s.failed AND s.j > 3 THEN 0 WHEN s.retried THEN 2 ELSE 1 END,
       CASE WHEN s.failed AND s.j > 3 THEN NULL ELSE s.last_start END,
       CASE WHEN s.failed AND s.j = 3 THEN '{"error": {"message": "bench: failed for good", "attempt": 1, "permanent": true}}'::jsonb
            WHEN s.not_done THEN NULL ELSE '{"ok": true}'::jsonb END,
       CASE WHEN s.failed AND s.j = 3 THEN 'error' WHEN s.not_done THEN 'pending' ELSE 'complete' END,
       CASE WHEN s.failed AND s.j > 3 THEN 1 ELSE 0 END, 'sql', s.created_at,
       CASE WHEN s.failed AND s.j > 3 THEN s.created_at ELSE s.finished END
  FROM b_step s
 ORDER BY s.step_id;

INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id, created_at, updated_at)
SELECT s.task_id, s.step_id - 1, s.step_id, s.created_at, s.created_at
  FROM b_step s WHERE s.j > 1
 ORDER BY s.step_id;

-- Step transitions, in time order.
INSERT INTO tasker_workflow_step_transitions (workflow_step_id, task_id, from_state, to_state, metadata,
                                              sort_key, most_recent, created_at, updated_at,
                                              attempt_started_at)
SELECT x.step_id, x.task_id, x.from_state::tasker_state, x.to_state::tasker_state, x.metadata,
       x.sort_key, x.most_recent, x.at, x.at, x.started
  FROM (SELECT s.step_id, s.task_id, v.*
          FROM b_step s
         CROSS JOIN LATERAL (VALUES
               ('pending', 'in_progress', '{}'::jsonb, 10, false, s.first_start, NULL::timestamptz, true),
               ('in_progress', 'error',
                '{"reason": "attempt_failed", "final": false, "error": {"attempt": 1, "permanent": false, "message": "bench: first attempt failed"}}'::jsonb,
                20, false, s.first_error, s.first_start, s.retried),
               ('error', 'pending', '{"reason": "retry_backoff_elapsed"}'::jsonb, 30, false, s.second_start, NULL, s.retried),
               ('pending', 'in_progress', '{}'::jsonb, 40, false, s.second_start, NULL, s.retried),
               ('in_progress', 'error',
                '{"reason": "attempt_failed", "final": true, "error": {"attempt": 1, "permanent": true, "message": "bench: failed for good"}}'::jsonb,
                20, true, s.finished, s.last_start, s.failed AND s.j = 3),
               ('in_progress', 'complete', '{}'::jsonb, CASE WHEN s.retried THEN 50 ELSE 20 END, true,
                s.finished, s.last_start, NOT s.not_done)
               ) AS v(from_state, to_state, metadata, sort_key, most_recent, at, started, wanted)
         WHERE v.wanted AND NOT (s.failed AND s.j > 3)) x
 ORDER BY x.at, x.step_id, x.sort_key;

-- Task transitions: started with s1, finished with s5 (or failed at s3).
INSERT INTO tasker_task_transitions (task_id, from_state, to_state, metadata, sort_key, most_recent,
                                     created_at, updated_at, task_created_at)
SELECT x.task_id, x.from_state::tasker_state, x.to_state::tasker_state, x.metadata, x.sort_key,
       x.most_recent, x.at, x.at, CASE WHEN x.sort_key = 20 THEN x.task_created_at END
  FROM (SELECT f.task_id, f.created_at AS task_created_at, v.*
          FROM b_step f
          JOIN b_step l ON l.task_id = f.task_id AND l.j = CASE WHEN f.failed THEN 3 ELSE 5 END
         CROSS JOIN LATERAL (VALUES
               ('pending', 'in_progress', '{}'::jsonb, 10, false, f.first_start),
               ('in_progress', CASE WHEN f.failed THEN 'error' ELSE 'complete' END,
                CASE WHEN f.failed THEN '{"reason": "steps_in_error_state"}'::jsonb
                     ELSE '{"reason": "all_steps_complete"}'::jsonb END,
                20, true, l.finished)
               ) AS v(from_state, to_state, metadata, sort_key, most_recent, at)
         WHERE f.j = 1) x
 ORDER BY x.at, x.task_id, x.sort_key;

SELECT setval(pg_get_serial_sequence('tasker_tasks', 'task_id'), max(task_id)) FROM tasker_tasks;
SELECT setval(pg_get_serial_sequence('tasker_workflow_steps', 'workflow_step_id'), max(workflow_step_id))
  FROM tasker_workflow_steps;
RESET session_replication_role;
DROP TABLE b_step, b_ids;
