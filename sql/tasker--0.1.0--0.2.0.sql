/* tasker 0.1.0 -> 0.2.0 */
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit

/*
 * The install script of 0.2.0 is tasker--0.1.0.sql followed by this file
 * (see the Makefile), so everything here must work both on a fresh 0.1.0
 * schema and on one that has run for months.  Sections, in order:
 * security (issue 15 A), bad input and resource bounds (issue 15 B).
 */

/* ---- issue 15 A4/B11/B14: identity keys, DAG levels, large templates ---- */

/*
 * A4 and B14 change only C code (src/task.c): identity hashes written from
 * 0.2.0 on encode namespace, name and key unambiguously ("kv2:" rows), and
 * 0.1.0's "key:" rows are still found for their own template; a task's
 * edges are resolved through hash tables, in time linear in the template.
 *
 * B11: levels and depths were recursive queries that enumerate every path
 * from a root, exponential in the depth of a ladder-shaped graph.  One C
 * function now visits each step and edge of a task once (src/dag.c), and
 * the function and the view below read it.
 */
CREATE FUNCTION @extschema@.tasker_step_depths(task_id bigint,
                                   OUT workflow_step_id bigint,
                                   OUT dependency_level integer,
                                   OUT min_depth_from_root integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tasker_step_depths_sql'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.tasker_step_depths(bigint) IS
    'Each step of a task with its dependency level (longest distance from a root) and min_depth_from_root (shortest), in time linear in the task''s steps and edges';

CREATE OR REPLACE FUNCTION @extschema@.tasker_dependency_levels(task_id bigint)
RETURNS TABLE (workflow_step_id bigint, dependency_level integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.workflow_step_id, d.dependency_level
      FROM @extschema@.tasker_step_depths($1) d
     ORDER BY 2, 1
$$;

CREATE OR REPLACE VIEW @extschema@.tasker_step_dag_relationships AS
SELECT s.workflow_step_id, s.task_id, s.named_step_id,
       COALESCE((SELECT pg_catalog.jsonb_agg(e.from_step_id ORDER BY e.from_step_id)
                   FROM @extschema@.tasker_workflow_step_edges e
                  WHERE e.to_step_id = s.workflow_step_id), '[]') AS parent_step_ids,
       COALESCE((SELECT pg_catalog.jsonb_agg(e.to_step_id ORDER BY e.to_step_id)
                   FROM @extschema@.tasker_workflow_step_edges e
                  WHERE e.from_step_id = s.workflow_step_id), '[]') AS child_step_ids,
       (SELECT pg_catalog.count(*) FROM @extschema@.tasker_workflow_step_edges e
         WHERE e.to_step_id = s.workflow_step_id) AS parent_count,
       (SELECT pg_catalog.count(*) FROM @extschema@.tasker_workflow_step_edges e
         WHERE e.from_step_id = s.workflow_step_id) AS child_count,
       NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_step_edges e
                    WHERE e.to_step_id = s.workflow_step_id) AS is_root_step,
       NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_step_edges e
                    WHERE e.from_step_id = s.workflow_step_id) AS is_leaf_step,
       d.min_depth_from_root
  FROM @extschema@.tasker_workflow_steps s
  LEFT JOIN (SELECT t.task_id, x.workflow_step_id, x.min_depth_from_root
               FROM @extschema@.tasker_tasks t
              CROSS JOIN LATERAL @extschema@.tasker_step_depths(t.task_id) x) d
         ON d.task_id = s.task_id AND d.workflow_step_id = s.workflow_step_id;
COMMENT ON VIEW @extschema@.tasker_step_dag_relationships IS
    'Each step''s parents, children, root/leaf flags and shortest depth from a root (computed per task in linear time)';
