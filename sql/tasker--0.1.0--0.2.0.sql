/* tasker 0.1.0 -> 0.2.0 */
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit

/*
 * The install script of 0.2.0 is tasker--0.1.0.sql followed by this file
 * (see the Makefile), so everything here must work both on a fresh 0.1.0
 * schema and on one that has run for months.  Sections, in order:
 * security (issue 15 A), bad input and resource bounds (issue 15 B).
 */

/* ---- issue 15 A3/A5/A7: owners stored as roles, not raw OIDs ---- */

/*
 * The owner of a template and the role that registered a handler class
 * become regrole columns: pg_dump writes them as role names, so a restore
 * into another cluster keeps each owner by name, or fails when the role is
 * missing, instead of handing the row to whatever role has the same OID
 * there.  The values are the same OIDs, so C code reading them as oid is
 * unchanged.  The two views that read these columns are dropped and
 * created again around the type change, unchanged.  (A3 and A5, who may
 * add versions, remap classes and bind handlers, are enforced in C.)
 */
DROP VIEW tasker_templates;
DROP VIEW tasker_handlers;

ALTER TABLE tasker_named_tasks ALTER COLUMN owner DROP DEFAULT;
ALTER TABLE tasker_named_tasks
    ALTER COLUMN owner TYPE regrole USING owner::regrole;
ALTER TABLE tasker_named_tasks
    ALTER COLUMN owner SET DEFAULT 10::oid::regrole;
COMMENT ON COLUMN tasker_named_tasks.owner IS
    'The role that registered the template; SQL handlers run with its privileges.  The template''s name in its namespace belongs to the role of its oldest row';

ALTER TABLE tasker_handler_registry
    ALTER COLUMN registered_by TYPE regrole USING registered_by::regrole;
COMMENT ON COLUMN tasker_handler_registry.registered_by IS
    'The role that first registered the class; only roles with its privileges may remap it or bind templates to it';

CREATE VIEW tasker_templates AS
SELECT ns.name::text AS namespace,
       nt.name::text AS name,
       nt.version::text AS version,
       nt.description::text AS description,
       ARRAY(SELECT s.name::text
               FROM tasker_named_tasks_named_steps x
               JOIN tasker_named_steps s ON s.named_step_id = x.named_step_id
              WHERE x.named_task_id = nt.named_task_id
              ORDER BY x.position) AS step_names,
       pg_catalog.pg_get_userbyid(nt.owner) AS owner,
       nt.named_task_id,
       nt.created_at
  FROM tasker_named_tasks nt
  JOIN tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id;
COMMENT ON VIEW tasker_templates IS
    'Registered task templates: namespace, name, version, description, step names in order, owner';

CREATE VIEW tasker_handlers AS
SELECT handler_class,
       function,
       pg_catalog.pg_get_userbyid(registered_by) AS owner,
       updated_at AS registered_at
  FROM tasker_handler_registry;
COMMENT ON VIEW tasker_handlers IS
    'The handler registry: each handler class, its function, the role that registered it and when';
