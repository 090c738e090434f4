-- 093_shard: a node made a shard of a scaled-out installation (issue 14,
-- contrib/tasker_proxy) makes task and step ids that carry its index in
-- their high bits; it refuses an index that its existing ids contradict.
-- The files before this one left tasks behind.
SELECT count(*) > 0 AS has_tasks FROM tasker_tasks;

SELECT * FROM tasker_shard_range(0);
SELECT * FROM tasker_shard_range(5);
SELECT shard_index, shard_count, active_tasks >= 0 AS counted FROM tasker_shard_status();

-- invalid input: index out of the count, a count of 0, NULLs
SELECT tasker_shard_configure(4, 4);
SELECT tasker_shard_configure(0, 0);
SELECT tasker_shard_configure(NULL, 4);

-- invalid input: this node holds ids of shard 0, so it cannot become shard 2
SELECT tasker_shard_configure(2, 4);
SELECT count(*) AS shard_rows FROM tasker_shard;

-- It can be shard 0 of 4 (its ids are in that range); again changes nothing.
SELECT tasker_shard_configure(0, 4);
SELECT tasker_shard_configure(0, 4);
SELECT shard_index, shard_count FROM tasker_shard_status();

-- New ids stay below 2^48, after the ones before.
CREATE FUNCTION shard_noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: shard_t
step_templates:
  - {name: one, handler_class: shard_noop}
$y$) > 0 AS registered;
SELECT tasker_create_task('shard_t') >> 48 AS task_shard,
       (SELECT max(task_id) FROM tasker_tasks) = (SELECT max(task_id) FROM tasker_tasks WHERE task_id < 1::bigint << 48)
           AS below_2_48;
SELECT max(workflow_step_id) >> 48 AS step_shard FROM tasker_workflow_steps;

-- The count may change (the router grows); the index stays.
SELECT tasker_shard_configure(0, 8);
SELECT shard_index, shard_count FROM tasker_shard;
