-- 001_schema: every table, key column, constraint and index of the schema.
BEGIN;
SELECT plan(82);

-- The thirteen tables of the Ruby engine.
SELECT has_table(t) FROM unnest(ARRAY[
    'tasker_task_namespaces', 'tasker_named_tasks', 'tasker_dependent_systems',
    'tasker_named_steps', 'tasker_named_tasks_named_steps', 'tasker_annotation_types',
    'tasker_dependent_system_object_maps', 'tasker_tasks', 'tasker_workflow_steps',
    'tasker_workflow_step_edges', 'tasker_task_transitions',
    'tasker_workflow_step_transitions', 'tasker_task_annotations']) AS t;

-- Primary keys.
SELECT col_is_pk('tasker_tasks', 'task_id');
SELECT col_is_pk('tasker_workflow_steps', 'workflow_step_id');
SELECT col_is_pk('tasker_named_tasks', 'named_task_id');
SELECT col_is_pk('tasker_named_steps', 'named_step_id');

-- Column types: timestamps are timestamptz with defaults.
SELECT col_type_is('tasker_tasks', 'requested_at', 'timestamp with time zone');
SELECT col_type_is('tasker_tasks', 'created_at', 'timestamp with time zone');
SELECT col_has_default('tasker_tasks', 'created_at');
SELECT col_has_default('tasker_workflow_steps', 'updated_at');
SELECT col_type_is('tasker_workflow_steps', 'processed_at', 'timestamp with time zone');
SELECT col_type_is('tasker_tasks', 'context', 'jsonb');
SELECT col_type_is('tasker_tasks', 'bypass_steps', 'jsonb');
SELECT col_type_is('tasker_tasks', 'identity_hash', 'character varying(128)');
SELECT col_type_is('tasker_workflow_steps', 'attempts', 'integer');
SELECT col_not_null('tasker_workflow_steps', 'attempts');
SELECT col_type_is('tasker_workflow_steps', 'results', 'jsonb');
SELECT col_type_is('tasker_workflow_steps', 'backoff_request_seconds', 'integer');
SELECT col_type_is('tasker_named_tasks', 'configuration', 'jsonb');
SELECT col_default_is('tasker_named_tasks', 'configuration', '{}');
SELECT col_default_is('tasker_named_tasks', 'version', '0.1.0');
SELECT col_type_is('tasker_task_transitions', 'metadata', 'jsonb');
SELECT col_type_is('tasker_task_transitions', 'sort_key', 'integer');
SELECT col_type_is('tasker_workflow_step_transitions', 'from_state', 'tasker_state');

-- Columns the engine adds to find work fast.
SELECT has_column('tasker_tasks', 'current_state');
SELECT has_column('tasker_workflow_steps', 'current_state');
SELECT has_column('tasker_workflow_steps', 'unfinished_parents');
SELECT has_column('tasker_workflow_steps', 'next_attempt_at');
SELECT has_column('tasker_workflow_steps', 'lease_expires_at');

-- Every runtime table carries task_id.
SELECT has_column(t, 'task_id') FROM unnest(ARRAY[
    'tasker_tasks', 'tasker_workflow_steps', 'tasker_workflow_step_edges',
    'tasker_task_transitions', 'tasker_workflow_step_transitions',
    'tasker_task_annotations']) AS t;

-- Unique constraints the Ruby engine lacked, and the ones it had.
SELECT ok(pg_get_indexdef('tasker_workflow_steps_task_named_step_idx'::regclass)
          ~ 'UNIQUE .*\(task_id, named_step_id\) WHERE \(map_parent_id IS NULL\)',
          'one step per template step and task, map instances aside');
SELECT col_is_unique('tasker_workflow_step_edges', ARRAY['from_step_id', 'to_step_id']);
SELECT col_is_unique('tasker_named_tasks', ARRAY['task_namespace_id', 'name', 'version']);
SELECT col_is_unique('tasker_tasks', 'identity_hash');
SELECT col_is_unique('tasker_task_transitions', ARRAY['task_id', 'sort_key']);
SELECT col_is_unique('tasker_workflow_step_transitions', ARRAY['workflow_step_id', 'sort_key']);
SELECT col_is_unique('tasker_named_steps', ARRAY['dependent_system_id', 'name']);
SELECT col_is_unique('tasker_task_namespaces', 'name');
SELECT index_is_unique('tasker_task_transitions', 'tasker_task_transitions_most_recent_idx');
SELECT index_is_unique('tasker_workflow_step_transitions', 'tasker_step_transitions_most_recent_idx');

-- State columns are checked.
SELECT throws_ok($$INSERT INTO tasker_tasks (named_task_id, identity_hash, current_state)
                   VALUES (1, 'x', 'done')$$, '23514', NULL,
                 'state strings are checked');
SELECT throws_ok($$INSERT INTO tasker_task_transitions (task_id, to_state, sort_key)
                   VALUES (1, 'finished', 10)$$, '23514', NULL,
                 'transition states are checked');

-- Foreign keys from runtime tables cascade from their task.
SELECT fk_ok('tasker_workflow_steps', 'task_id', 'tasker_tasks', 'task_id');
SELECT fk_ok('tasker_workflow_step_edges', 'task_id', 'tasker_tasks', 'task_id');
SELECT fk_ok('tasker_workflow_step_edges', 'from_step_id', 'tasker_workflow_steps', 'workflow_step_id');
SELECT fk_ok('tasker_workflow_step_edges', 'to_step_id', 'tasker_workflow_steps', 'workflow_step_id');
SELECT fk_ok('tasker_task_transitions', 'task_id', 'tasker_tasks', 'task_id');
SELECT fk_ok('tasker_workflow_step_transitions', 'workflow_step_id', 'tasker_workflow_steps', 'workflow_step_id');
SELECT fk_ok('tasker_workflow_step_transitions', 'task_id', 'tasker_tasks', 'task_id');
SELECT fk_ok('tasker_task_annotations', 'task_id', 'tasker_tasks', 'task_id');
SELECT fk_ok('tasker_tasks', 'named_task_id', 'tasker_named_tasks', 'named_task_id');
SELECT is(
    (SELECT count(*)::int FROM pg_constraint
      WHERE contype = 'f' AND confdeltype = 'c'
        AND confrelid = 'tasker_tasks'::regclass),
    7, 'the seven runtime tables that reference tasker_tasks cascade its deletes');

-- Every foreign key's columns lead an index of their table, so that a
-- delete of the referenced row (the purge's cascades) or a look-up by the
-- key probes an index: the index's first columns are the key's columns, in
-- any order, and it is not partial, or only on those columns IS NOT NULL
-- (which an equality on the key implies).
SELECT is(array_agg(c.conrelid::regclass::text || '(' || k.cols || ')' ORDER BY 1), NULL,
          'every foreign key of tasker''s tables leads an index')
  FROM pg_constraint c
 CROSS JOIN LATERAL (
       SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) AS cols,
              string_agg('(' || quote_ident(a.attname) || ' IS NOT NULL)', ' AND ' ORDER BY a.attnum) AS notnull
         FROM pg_attribute a
        WHERE a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)) k
 WHERE c.contype = 'f'
   AND c.conrelid IN (SELECT d.objid FROM pg_depend d
                       WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker')
                         AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass)
   AND NOT EXISTS (
       SELECT 1 FROM pg_index i
        WHERE i.indrelid = c.conrelid
          AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
          AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey
          AND (i.indpred IS NULL OR pg_get_expr(i.indpred, i.indrelid) = k.notnull));

-- The partial index that makes "ready steps" an index scan.
SELECT has_index('tasker_workflow_steps', 'tasker_workflow_steps_ready_idx');
SELECT ok(pg_get_indexdef('tasker_workflow_steps_ready_idx'::regclass)
          ~ 'WHERE .*unfinished_parents = 0',
          'the ready-steps index is partial on unfinished_parents = 0');
SELECT has_index('tasker_workflow_steps', 'tasker_workflow_steps_lease_idx');
SELECT has_index('tasker_workflow_step_edges', 'tasker_workflow_step_edges_to_idx');

-- Deleting a task removes everything that belongs to it.
INSERT INTO tasker_named_tasks (name, task_namespace_id) VALUES ('cascade', 1);
INSERT INTO tasker_named_steps (dependent_system_id, name) VALUES (1, 'c1'), (1, 'c2');
INSERT INTO tasker_tasks (named_task_id, identity_hash)
SELECT named_task_id, 'cascade-1' FROM tasker_named_tasks WHERE name = 'cascade';
INSERT INTO tasker_workflow_steps (task_id, named_step_id, next_attempt_at)
SELECT t.task_id, s.named_step_id, now() FROM tasker_tasks t, tasker_named_steps s
 WHERE t.identity_hash = 'cascade-1' AND s.name IN ('c1', 'c2');
INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id)
SELECT task_id, min(workflow_step_id), max(workflow_step_id)
  FROM tasker_workflow_steps WHERE task_id = (SELECT task_id FROM tasker_tasks WHERE identity_hash = 'cascade-1')
 GROUP BY task_id;
SELECT lives_ok($$SELECT tasker_transition_step(min(workflow_step_id), 'in_progress')
                    FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
                   WHERE t.identity_hash = 'cascade-1'$$, 'a step of the doomed task moves');
SELECT throws_ok($$INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id)
                   SELECT task_id, min(workflow_step_id), max(workflow_step_id)
                     FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
                    WHERE t.identity_hash = 'cascade-1' GROUP BY task_id$$,
                 '23505', NULL, 'an edge cannot be inserted twice');
SELECT throws_ok($$INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id)
                   SELECT task_id, min(workflow_step_id), min(workflow_step_id)
                     FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
                    WHERE t.identity_hash = 'cascade-1' GROUP BY task_id$$,
                 '23514', NULL, 'a step cannot depend on itself');
SELECT throws_ok($$INSERT INTO tasker_workflow_steps (task_id, named_step_id)
                   SELECT t.task_id, s.named_step_id FROM tasker_tasks t, tasker_named_steps s
                    WHERE t.identity_hash = 'cascade-1' AND s.name = 'c1'$$,
                 '23505', NULL, 'a named step appears once per task');
DELETE FROM tasker_tasks WHERE identity_hash = 'cascade-1';
SELECT is((SELECT count(*)::int FROM tasker_workflow_steps s
            WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = s.task_id)),
          0, 'deleting a task deletes its steps');
SELECT is((SELECT count(*)::int FROM tasker_workflow_step_transitions), 0,
          'deleting a task deletes its step transitions');
SELECT is((SELECT count(*)::int FROM tasker_workflow_step_edges), 0,
          'deleting a task deletes its edges');

-- User data is dumped with the database.
SELECT ok((SELECT extconfig @> ARRAY['tasker_tasks'::regclass::oid]
             FROM pg_extension WHERE extname = 'tasker'),
          'tasker_tasks is marked for pg_dump');
SELECT ok((SELECT extconfig @> ARRAY['tasker_tasks_task_id_seq'::regclass::oid]
             FROM pg_extension WHERE extname = 'tasker'),
          'the task id sequence is marked for pg_dump');

SELECT * FROM finish();
ROLLBACK;
