-- 091_purge: tasker_purge deletes exactly the finished tasks whose last
-- transition is older than the cutoff, with every row of theirs, and
-- leaves the others (live ones, recent ones, failed ones unless asked)
-- untouched.  Issue 11.  No worker runs here; tasks are aged by moving
-- their timestamps back, so that the tasks of other tests (all recent)
-- are out of every cutoff used.
SET client_min_messages = warning;

CREATE FUNCTION purge_ok(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{"ok": true}'::jsonb $$;
CREATE FUNCTION purge_fails(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tasker_permanent_error('purge_fails always fails');
    RETURN NULL;
END $$;
SELECT tasker_register_template($$
name: purge_pair
step_templates:
  - name: first
    handler_class: purge_ok
  - name: second
    handler_class: purge_ok
    depends_on_step: first
$$) > 0 AS registered;
SELECT tasker_register_template($$
name: purge_failing
step_templates:
  - name: fails
    handler_class: purge_fails
$$) > 0 AS registered;

CREATE TEMP TABLE ages (label text, task_id bigint);
-- complete, cancelled, in error, still pending: all made old below
INSERT INTO ages SELECT 'complete', tasker_create_task('purge_pair');
INSERT INTO ages SELECT 'cancelled', tasker_create_task('purge_pair');
INSERT INTO ages SELECT 'error', tasker_create_task('purge_failing');
INSERT INTO ages SELECT 'pending', tasker_create_task('purge_pair');
-- and a complete task that is recent
INSERT INTO ages SELECT 'recent', tasker_create_task('purge_pair');
SELECT tasker_run_task(task_id) FROM ages WHERE label IN ('complete', 'error', 'recent') ORDER BY label;
SELECT tasker_cancel_task(task_id) FROM ages WHERE label = 'cancelled';
SELECT tasker_annotate_task(task_id, 'purge_test', '{"k": "v"}') > 0 FROM ages WHERE label = 'complete';
UPDATE tasker_tasks t SET created_at = '2001-01-01', updated_at = '2001-01-02'
  FROM ages a WHERE a.task_id = t.task_id AND a.label <> 'recent';

-- What each table holds for these tasks.
CREATE TEMP VIEW held AS
SELECT a.label,
       (SELECT count(*) FROM tasker_tasks x WHERE x.task_id = a.task_id) AS tasks,
       (SELECT count(*) FROM tasker_workflow_steps x WHERE x.task_id = a.task_id) AS steps,
       (SELECT count(*) FROM tasker_workflow_step_edges x WHERE x.task_id = a.task_id) AS edges,
       (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_id = a.task_id) AS task_transitions,
       (SELECT count(*) FROM tasker_workflow_step_transitions x WHERE x.task_id = a.task_id) AS step_transitions,
       (SELECT count(*) FROM tasker_task_annotations x WHERE x.task_id = a.task_id) AS annotations
  FROM ages a ORDER BY a.label;
SELECT * FROM held;

-- Finished and older than 20 years: the complete and the cancelled task.
SELECT tasker_purge('20 years');
SELECT * FROM held;
-- Nothing more to purge at that age.
SELECT tasker_purge('20 years');
-- include_errors takes the failed one too; the pending one stays.
SELECT tasker_purge('20 years', include_errors => true);
SELECT * FROM held;
SELECT t.current_state, count(s.*) AS pending_steps
  FROM ages a JOIN tasker_tasks t USING (task_id)
  JOIN tasker_workflow_steps s ON s.task_id = t.task_id AND s.current_state = 'pending'
 WHERE a.label = 'pending' GROUP BY 1;
-- The pending task still runs to completion.
SELECT tasker_run_task(task_id) FROM ages WHERE label = 'pending';
SELECT count(*) AS problems FROM tasker_check() c JOIN ages a USING (task_id);

-- Batches: five old tasks, two per batch.
DELETE FROM ages;
INSERT INTO ages SELECT 'batch', tasker_create_task('purge_pair') FROM generate_series(1, 5);
SELECT count(*) FILTER (WHERE tasker_run_task(task_id) = 'complete') FROM ages;
UPDATE tasker_tasks t SET created_at = '2001-01-01', updated_at = '2001-01-02'
  FROM ages a WHERE a.task_id = t.task_id;
SELECT tasker_purge('20 years', batch_size => 2);
SELECT sum(tasks) AS tasks, sum(steps) AS steps FROM held;

-- The procedure commits after each batch.
DELETE FROM ages;
INSERT INTO ages SELECT 'batch', tasker_create_task('purge_pair') FROM generate_series(1, 3);
SELECT count(*) FILTER (WHERE tasker_run_task(task_id) = 'complete') FROM ages;
UPDATE tasker_tasks t SET created_at = '2001-01-01', updated_at = '2001-01-02'
  FROM ages a WHERE a.task_id = t.task_id;
CALL tasker_purge_in_batches('20 years', batch_size => 2);
SELECT sum(tasks) AS tasks FROM held;

-- invalid input: NULL, negative and out-of-range arguments
SELECT tasker_purge(NULL);
SELECT tasker_purge('-1 day');
SELECT tasker_purge('1 day', batch_size => 0);
SELECT tasker_purge('1 day', include_errors => NULL);
-- invalid input: the procedure inside a transaction block cannot commit
BEGIN;
CALL tasker_purge_in_batches('20 years');
ROLLBACK;
-- invalid input: not granted to PUBLIC
DROP ROLE IF EXISTS regress_purger;
CREATE ROLE regress_purger;
SET ROLE regress_purger;
SELECT tasker_purge('1 day');
RESET ROLE;
DROP ROLE regress_purger;
