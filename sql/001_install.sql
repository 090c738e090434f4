-- 001_install: the extension installs, and its schema is what the docs say.
CREATE EXTENSION tasker;

-- The tables, in name order.
SELECT c.relname
  FROM pg_class c
  JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'tasker'
 WHERE c.relkind = 'r'
 ORDER BY 1;

-- Seed rows: the default namespace and dependent system.
SELECT name FROM tasker_task_namespaces ORDER BY 1;
SELECT name FROM tasker_dependent_systems ORDER BY 1;

-- The transitions each state machine allows.
SELECT * FROM tasker_allowed_transitions('task') ORDER BY 1, 2;
SELECT * FROM tasker_allowed_transitions('step') ORDER BY 1, 2;

-- invalid input: an entity that has no state machine
SELECT * FROM tasker_allowed_transitions('workflow');
