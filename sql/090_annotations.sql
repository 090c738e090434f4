-- 090_annotations: tasker_annotate_task stores annotations in the Ruby
-- engine's tables (a type is created on first use), and
-- tasker_tasks_by_annotation finds tasks by a key's value.  Issue 11.
-- No worker runs here.
SET client_min_messages = warning;

CREATE FUNCTION ann_ok(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($$
name: annotated
step_templates:
  - name: only
    handler_class: ann_ok
$$) > 0 AS registered;
SELECT tasker_create_task('annotated', '{"n": 1}') AS t1 \gset
SELECT tasker_create_task('annotated', '{"n": 2}') AS t2 \gset
SELECT tasker_create_task('annotated', '{"n": 3}') AS t3 \gset

-- A new type is created with the first annotation that names it.
SELECT count(*) FROM tasker_annotation_types WHERE name = 'order';
SELECT tasker_annotate_task(:t1, 'order', '{"order_id": "A-1", "total": 42, "rush": true}') > 0 AS annotated;
SELECT tasker_annotate_task(:t2, 'order', '{"order_id": "A-2", "total": 42.5}') > 0 AS annotated;
SELECT tasker_annotate_task(:t3, 'audit', '{"order_id": "A-1"}') > 0 AS annotated;
SELECT tasker_annotate_task(:t1, 'order', '{"note": "second annotation"}') > 0 AS annotated;
SELECT count(*) FROM tasker_annotation_types WHERE name IN ('order', 'audit');
SELECT t.task_id = :t1 AS is_t1, ty.name, a.annotation
  FROM tasker_task_annotations a
  JOIN tasker_annotation_types ty USING (annotation_type_id)
  JOIN tasker_tasks t USING (task_id)
 WHERE a.task_id IN (:t1, :t2, :t3)
 ORDER BY a.task_annotation_id;

-- By a string value, only within the type.
SELECT task_id = :t1 AS is_t1 FROM tasker_tasks_by_annotation('order', 'order_id', 'A-1');
SELECT task_id = :t3 AS is_t3 FROM tasker_tasks_by_annotation('audit', 'order_id', 'A-1');
-- By a number or a boolean, spelt as text; each task once.
SELECT count(*), bool_and(task_id = :t1) FROM tasker_tasks_by_annotation('order', 'total', '42');
SELECT task_id = :t2 AS is_t2 FROM tasker_tasks_by_annotation('order', 'total', '42.5');
SELECT task_id = :t1 AS is_t1 FROM tasker_tasks_by_annotation('order', 'rush', 'true');
-- The text '42' finds the number 42 and the string "42" alike (as ->>
-- would); a missing key or type finds nothing.
SELECT tasker_annotate_task(:t3, 'order', '{"total": "42"}') > 0 AS annotated;
SELECT count(*) FROM tasker_tasks_by_annotation('order', 'total', '42');
SELECT count(*) FROM tasker_tasks_by_annotation('order', 'missing', 'A-1');
SELECT count(*) FROM tasker_tasks_by_annotation('no_such_type', 'order_id', 'A-1');

-- invalid input: NULL arguments, a non-object annotation, an empty type,
-- an unknown task
SELECT tasker_annotate_task(NULL, 'order', '{}');
SELECT tasker_annotate_task(:t1, 'order', '[1, 2]');
SELECT tasker_annotate_task(:t1, '', '{}');
SELECT tasker_annotate_task(-1, 'order', '{}');
SELECT * FROM tasker_tasks_by_annotation('order', NULL, 'A-1');

-- Annotating is a control: a role that may not control the task is
-- refused; EXECUTE is not granted to PUBLIC.
DROP ROLE IF EXISTS regress_annotator;
CREATE ROLE regress_annotator;
SET ROLE regress_annotator;
-- invalid input: no EXECUTE privilege
SELECT tasker_annotate_task(:t1, 'order', '{}');
RESET ROLE;
GRANT EXECUTE ON FUNCTION tasker_annotate_task(bigint, text, jsonb) TO regress_annotator;
SET ROLE regress_annotator;
-- invalid input: the task's template belongs to another role (42501; the
-- message names the task's id)
\set VERBOSITY sqlstate
SELECT tasker_annotate_task(:t1, 'order', '{}');
\set VERBOSITY default
RESET ROLE;
REVOKE EXECUTE ON FUNCTION tasker_annotate_task(bigint, text, jsonb) FROM regress_annotator;
DROP ROLE regress_annotator;
