/* tasker 0.1.0 -> 0.2.0 */
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit

/*
 * The install script of 0.2.0 is tasker--0.1.0.sql followed by this file
 * (see the Makefile), so everything here must work both on a fresh 0.1.0
 * schema and on one that has run for months.  Sections, in order:
 * security (issue 15 A), bad input and resource bounds (issue 15 B).
 */

/* ---- issue 15 A1/A2/A6: users call functions, never write tables ---- */

/*
 * Only the extension's owner writes tasker's tables.  The public functions
 * do their work as that owner (src/security.c), check what the caller may
 * do, and run every statement under a pinned search_path.  Privileges an
 * operator granted on the tables (0.1.0's README told them to) are taken
 * back here, from every role but the owner; SELECT stays where it was.
 */
DO $revoke$
DECLARE
    rel regclass;
    grantee text;
BEGIN
    FOR rel, grantee IN
        SELECT c.oid::regclass, a.grantee::regrole::text
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
          CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
         WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'tasker')
           AND d.deptype = 'e'
           AND c.relkind IN ('r', 'S', 'v', 'm')
           AND a.grantee <> c.relowner
           AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
         GROUP BY 1, 2
    LOOP
        EXECUTE pg_catalog.format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %s FROM %s',
                                  rel, CASE WHEN grantee = '-' THEN 'PUBLIC' ELSE pg_catalog.quote_ident(grantee) END);
    END LOOP;
END
$revoke$;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;

/* The functions that write, or run handlers, are granted, not public. */
REVOKE EXECUTE ON FUNCTION
    tasker_transition_task(bigint, text, jsonb),
    tasker_transition_step(bigint, text, jsonb),
    tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text),
    tasker_cancel_task(bigint, text),
    tasker_retry_task(bigint),
    tasker_resolve_step(bigint, jsonb),
    tasker_cancel_step(bigint),
    tasker_run_task(bigint, interval),
    tasker_run_steps(integer),
    tasker_wait_for_task(bigint, interval),
    tasker_register_handler(text, regprocedure),
    tasker_register_template(text, boolean),
    tasker_register_template_file(text, boolean),
    tasker_publish_event(text, jsonb)
FROM PUBLIC;

/*
 * The SQL functions read tables users may not: they run as the owner,
 * under a pinned search_path, like the C functions.
 */
ALTER FUNCTION tasker_step_readiness_status(bigint[], timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker_step_readiness_status(bigint, bigint[], timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker_task_execution_context(bigint[], timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker_task_execution_context(bigint, timestamptz)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker_dependency_levels(bigint)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION tasker_publish_event(text, jsonb)
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

/* ---- issue 15 B10 ---- */
/* (and D20: a YAML stream of several templates in one call) */
CREATE FUNCTION tasker_register_templates(yaml text, replace boolean DEFAULT false)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'tasker_register_templates_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_register_templates(text, boolean) IS
    'Register the template of each document of a YAML stream (documents separated by --- lines), in order, in one transaction; returns their named_task_ids';
REVOKE EXECUTE ON FUNCTION tasker_register_templates(text, boolean) FROM PUBLIC;

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
LANGUAGE C STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.tasker_step_depths(bigint) IS
    'Each step of a task with its dependency level (longest distance from a root) and min_depth_from_root (shortest), in time linear in the task''s steps and edges';

CREATE OR REPLACE FUNCTION @extschema@.tasker_dependency_levels(task_id bigint)
RETURNS TABLE (workflow_step_id bigint, dependency_level integer)
LANGUAGE sql STABLE SECURITY DEFINER
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

/* ---- issue 8: tasker_http_preview ---- */

/*
 * The request an api step would send now, built by the code the workers
 * use (src/http_request.c), sent nowhere.  It runs as the extension's
 * owner for a caller who may control the step's task (src/api.c).
 */
CREATE FUNCTION @extschema@.tasker_http_preview(step_id bigint)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'tasker_http_preview_sql'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION @extschema@.tasker_http_preview(bigint) IS
    'The HTTP request an api step would send now: method, url, headers, body, timeout and follow_redirects, with credentials masked (url user and password, Authorization, Cookie and other secret headers and query parameters); or the error that would fail it before any request';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_http_preview(bigint) FROM PUBLIC;

/* ---- issue 15 D ---- */

/*
 * D22: which SQLSTATEs fail a step for good.  Data exceptions (22),
 * integrity violations (23) and undefined objects or syntax errors (42)
 * are permanent by default; a step template's permanent_sqlstates and
 * retry_sqlstates (codes or two-character classes) override that.
 */
ALTER TABLE tasker_named_tasks_named_steps
    ADD COLUMN permanent_sqlstates text[] NOT NULL DEFAULT '{}',
    ADD COLUMN retry_sqlstates text[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN tasker_named_tasks_named_steps.permanent_sqlstates IS
    'SQLSTATEs or classes that fail the step for good (besides 22, 23 and 42)';
COMMENT ON COLUMN tasker_named_tasks_named_steps.retry_sqlstates IS
    'SQLSTATEs or classes that are retried even though permanent by default';

/*
 * D24: step.failed says whether the failure is final; custom events carry
 * the task and step they are about, in the shape of the built-in events.
 */
CREATE FUNCTION tasker_running_step()
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_running_step_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_running_step() IS
    'The id of the step whose SQL handler is running in this session, or NULL outside a handler';

CREATE FUNCTION tasker_publish_event(name text, payload jsonb, task_id bigint, step_id bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'tasker_publish_event_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_publish_event(text, jsonb, bigint, bigint) IS
    'Send a custom event declared by a template on the tasker_events channel, about a task or step (NULL, NULL: the step whose handler is running, if any)';
REVOKE EXECUTE ON FUNCTION tasker_publish_event(text, jsonb, bigint, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION tasker_publish_event(name text, payload jsonb DEFAULT '{}')
RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.tasker_publish_event(name, payload, NULL::bigint, NULL::bigint) $$;

CREATE OR REPLACE VIEW tasker_event_catalog AS
SELECT e.name, e.category, e.description, e.payload_fields
  FROM (VALUES
    ('task.initialize_requested', 'task', 'A task was created (or went back to pending from in_progress)', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('task.start_requested', 'task', 'A task started: its first step was claimed', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('task.completed', 'task', 'Every step of a task is complete or resolved_manually', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('task.failed', 'task', 'A task can make no more progress because of failed steps', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('task.retry_requested', 'task', 'A task in error was sent back to pending (tasker_retry_task, or a resolved step)', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('task.cancelled', 'task', 'A task was cancelled', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('task.resolved_manually', 'task', 'A task in error was resolved by hand', ARRAY['task_id', 'task_name', 'namespace', 'from_state', 'to_state', 'at']),
    ('step.execution_requested', 'step', 'A step was claimed and its handler is about to run', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.completed', 'step', 'A step''s handler succeeded; its results are stored', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.failed', 'step', 'An attempt of a step failed; the error is in its results and its transition. final: no retry is scheduled', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'final', 'at']),
    ('step.retry_requested', 'step', 'A failed step went back to pending for another attempt', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.cancelled', 'step', 'A step was cancelled (alone or with its task)', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.resolved_manually', 'step', 'A step was settled by hand or bypassed', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at'])
  ) AS e(name, category, description, payload_fields)
UNION ALL
SELECT DISTINCT ON (ce->>'name') ce->>'name', 'custom', ce->>'description',
       ARRAY['event', 'task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'at', 'payload']
  FROM (SELECT jsonb_array_elements(custom_events) AS ce FROM tasker_named_tasks
        UNION ALL
        SELECT jsonb_array_elements(custom_events) FROM tasker_named_tasks_named_steps) c
 WHERE jsonb_typeof(ce) = 'object' AND ce ? 'name';

/* ---- issue 15 C16/C17/D23 ---- */

/*
 * C17: the execution context of a cancelled task reports it cancelled,
 * never healthy with ready steps: steps of a task that is not pending or
 * in_progress are not ready.  Same signature; CREATE OR REPLACE resets the
 * function's attributes, so they are given again.
 */
CREATE OR REPLACE FUNCTION tasker_task_execution_context(task_ids bigint[],
                                                         as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_task_execution_context
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH counts AS (
        SELECT t.task_id, t.named_task_id, t.current_state::text AS status,
               count(r.workflow_step_id) AS total,
               count(*) FILTER (WHERE r.current_state = 'pending') AS pending,
               count(*) FILTER (WHERE r.current_state = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')) AS completed,
               count(*) FILTER (WHERE r.current_state = 'error') AS failed,
               count(*) FILTER (WHERE r.ready_for_execution
                                  AND t.current_state IN ('pending', 'in_progress')) AS ready,
               count(*) FILTER (WHERE (r.current_state = 'error' AND NOT r.retry_eligible)
                                   OR r.current_state = 'cancelled') AS blocked
          FROM @extschema@.tasker_tasks t
          LEFT JOIN @extschema@.tasker_step_readiness_status($1, $2) r ON r.task_id = t.task_id
         WHERE t.task_id = ANY ($1)
         GROUP BY t.task_id, t.named_task_id, t.current_state)
    SELECT task_id, named_task_id, status, total, pending, in_progress,
           completed, failed, ready,
           CASE WHEN status = 'cancelled' THEN 'cancelled'
                WHEN ready > 0 THEN 'has_ready_steps'
                WHEN in_progress > 0 THEN 'processing'
                WHEN blocked > 0 THEN 'blocked_by_failures'
                WHEN completed = total AND total > 0 THEN 'all_complete'
                ELSE 'waiting_for_dependencies' END,
           CASE WHEN status = 'cancelled' THEN 'none'
                WHEN ready > 0 THEN 'execute_ready_steps'
                WHEN in_progress > 0 THEN 'wait_for_completion'
                WHEN blocked > 0 THEN 'handle_failures'
                WHEN completed = total AND total > 0 THEN 'finalize_task'
                ELSE 'wait_for_dependencies' END,
           CASE WHEN total = 0 THEN 0.0
                ELSE round(completed::numeric / total * 100, 2) END,
           CASE WHEN status = 'cancelled' THEN 'cancelled'
                WHEN failed = 0 AND blocked = 0 THEN 'healthy'
                WHEN ready > 0 THEN 'recovering'
                WHEN blocked > 0 THEN 'blocked'
                ELSE 'recovering' END
      FROM counts
     ORDER BY task_id
$$;

/*
 * C17: tasker_check() lists every task that breaks an invariant of the
 * engine, with the way out.  Empty on a healthy installation.
 */
CREATE FUNCTION tasker_check()
RETURNS TABLE (task_id bigint, problem text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH counts AS (
        SELECT s.task_id,
               count(*) AS total,
               count(*) FILTER (WHERE s.current_state IN ('complete', 'resolved_manually')) AS done,
               count(*) FILTER (WHERE s.current_state = 'in_progress'
                                   OR (s.current_state IN ('pending', 'error')
                                       AND s.unfinished_parents = 0
                                       AND s.next_attempt_at IS NOT NULL)) AS live,
               count(*) FILTER (WHERE s.current_state IN ('pending', 'in_progress')
                                   OR (s.current_state = 'error'
                                       AND s.next_attempt_at IS NOT NULL)) AS unsettled
          FROM @extschema@.tasker_workflow_steps s
         GROUP BY s.task_id)
    SELECT t.task_id, 'no way forward',
           format('The task is %s, but none of its %s steps is running, ready or waiting for a retry (%s finished). Way out: tasker_resolve_step or tasker_cancel_step on the blocking steps, or tasker_cancel_task.',
                  t.current_state, c.total, c.done)
      FROM @extschema@.tasker_tasks t JOIN counts c ON c.task_id = t.task_id
     WHERE t.current_state IN ('pending', 'in_progress') AND c.live = 0 AND c.done < c.total
    UNION ALL
    SELECT t.task_id, 'finished but not complete',
           format('Every step of the task finished, but the task is %s. Way out: any batch that touches the task settles it (tasker_run_task).',
                  t.current_state)
      FROM @extschema@.tasker_tasks t JOIN counts c ON c.task_id = t.task_id
     WHERE t.current_state IN ('pending', 'in_progress') AND c.done = c.total
    UNION ALL
    SELECT t.task_id, 'cancelled with unsettled steps',
           format('The task is cancelled, but %s of its steps are pending, in progress or waiting for a retry. Way out: the next batch of any worker (or tasker_run_steps) cancels them.',
                  c.unsettled)
      FROM @extschema@.tasker_tasks t JOIN counts c ON c.task_id = t.task_id
     WHERE t.current_state = 'cancelled' AND c.unsettled > 0
    UNION ALL
    SELECT t.task_id, 'task state disagrees with its transitions',
           format('current_state is %s; the most recent transition goes to %s.',
                  t.current_state, COALESCE(tt.to_state::text, '(none: pending)'))
      FROM @extschema@.tasker_tasks t
      LEFT JOIN @extschema@.tasker_task_transitions tt
             ON tt.task_id = t.task_id AND tt.most_recent
     WHERE COALESCE(tt.to_state, 'pending') <> t.current_state
    UNION ALL
    SELECT s.task_id, 'step state disagrees with its transitions',
           format('Step %s has current_state %s; its most recent transition goes to %s.',
                  s.workflow_step_id, s.current_state,
                  COALESCE(st.to_state::text, '(none: pending)'))
      FROM @extschema@.tasker_workflow_steps s
      LEFT JOIN @extschema@.tasker_workflow_step_transitions st
             ON st.workflow_step_id = s.workflow_step_id AND st.most_recent
     WHERE COALESCE(st.to_state, 'pending') <> s.current_state
    UNION ALL
    SELECT s.task_id, 'unfinished_parents disagrees with the edges',
           format('Step %s counts %s unfinished parents; its edges give %s.',
                  s.workflow_step_id, s.unfinished_parents, p.n)
      FROM @extschema@.tasker_workflow_steps s
     CROSS JOIN LATERAL (
           SELECT count(*) AS n
             FROM @extschema@.tasker_workflow_step_edges e
             JOIN @extschema@.tasker_workflow_steps ps ON ps.workflow_step_id = e.from_step_id
            WHERE e.to_step_id = s.workflow_step_id
              AND ps.current_state NOT IN ('complete', 'resolved_manually')) p
     WHERE s.unfinished_parents <> p.n
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION tasker_check() IS
    'Tasks that break an invariant (no way forward, state columns that disagree with the transitions, unfinished_parents that disagrees with the edges), each with the way out; no rows when all is well';

/*
 * D23: controls by step name, and a reason on every control.  Each
 * control's transitions record the reason and the calling role (actor).
 * The 0.1.0 signatures stay as they were (their grants too); the reason
 * comes through new overloads in which it, or the results, are required,
 * so that no 0.1.0 call changes meaning: tasker_resolve_step(14, '{...}')
 * still resolves step 14.  tasker_cancel_step(step_id) takes no reason:
 * (bigint, text) is the by-name form.
 */
CREATE FUNCTION tasker_retry_task(task_id bigint, reason text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_retry_task_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_retry_task(bigint, text) IS
    'Send a task in error, and its failed steps (attempts reset), back to pending, recording why';

CREATE FUNCTION tasker_resolve_step(step_id bigint, results jsonb, reason text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_resolve_step_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_resolve_step(bigint, jsonb, text) IS
    'Settle a pending, failed or cancelled step by hand with the given results, recording why';

CREATE FUNCTION tasker_resolve_step(task_id bigint, step_name text, results jsonb,
                                    reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_resolve_step_by_name_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_resolve_step(bigint, text, jsonb, text) IS
    'Settle the step of a task with the given name by hand with the given results, recording why';

CREATE FUNCTION tasker_cancel_step(task_id bigint, step_name text, reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_cancel_step_by_name_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_cancel_step(bigint, text, text) IS
    'Cancel the step of a task with the given name, recording why; its dependents never run';

REVOKE EXECUTE ON FUNCTION
    tasker_retry_task(bigint, text),
    tasker_resolve_step(bigint, jsonb, text),
    tasker_resolve_step(bigint, text, jsonb, text),
    tasker_cancel_step(bigint, text, text)
FROM PUBLIC;

COMMENT ON FUNCTION tasker_run_steps(integer) IS
    'Claim and run ready steps of any task in this transaction, batch after batch as a worker runs them, until nothing is ready or max_steps ran; returns the number run';

/* ---- issue 9: external workers (src/handler_worker.c) ---- */

/*
 * A third handler kind, worker: steps run by processes outside the
 * database, in any language, through a claim protocol in SQL.  Their
 * steps carry the queue they are claimed from and the token of their
 * current claim.
 */
ALTER TABLE tasker_workflow_steps
    DROP CONSTRAINT tasker_workflow_steps_handler_kind_check,
    ADD CONSTRAINT tasker_workflow_steps_handler_kind_check
        CHECK (handler_kind IN ('sql', 'http', 'worker')),
    ADD COLUMN queue text,
    ADD COLUMN claim_token uuid,
    ADD COLUMN claimed_by text;
COMMENT ON COLUMN tasker_workflow_steps.handler_kind IS
    'sql (an SQL function run in the claiming transaction), http (a request run by the worker outside any transaction) or worker (run by an external worker through tasker_claim_steps)';
COMMENT ON COLUMN tasker_workflow_steps.queue IS
    'For a worker step: the queue external workers claim it from';
COMMENT ON COLUMN tasker_workflow_steps.claim_token IS
    'For a leased step: the token of its latest claim; an outcome is recorded only with the current one';
COMMENT ON COLUMN tasker_workflow_steps.claimed_by IS
    'For a worker step: the worker_id that made its latest claim';

/* A class served by external workers: mapped to a queue, not a function. */
ALTER TABLE tasker_handler_registry
    ALTER COLUMN function DROP NOT NULL,
    ADD COLUMN queue text,
    ADD CONSTRAINT handler_registry_one_target
        CHECK ((function IS NULL) <> (queue IS NULL)),
    ADD CONSTRAINT handler_registry_queue_not_empty CHECK (queue <> '');
COMMENT ON COLUMN tasker_handler_registry.queue IS
    'The queue whose external workers run steps of this class (function is then NULL)';

/*
 * A string literal reaches this overload before the regprocedure one, so
 * a second argument with a parenthesis still names a function.
 */
CREATE FUNCTION tasker_register_handler(handler_class text, queue text)
RETURNS void
AS 'MODULE_PATHNAME', 'tasker_register_handler_queue_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_register_handler(text, text) IS
    'Have the steps of a handler class run by the external workers of a queue (or, when the second argument has a parenthesis, by that SQL function), replacing an earlier mapping of the class';
REVOKE EXECUTE ON FUNCTION tasker_register_handler(text, text) FROM PUBLIC;

CREATE FUNCTION tasker_claim_steps(queue text, worker_id text, max_steps integer DEFAULT 10,
                                   lease interval DEFAULT '5 minutes',
                                   wait interval DEFAULT '0')
RETURNS TABLE (step_id bigint, claim_token uuid, lease_expires_at timestamptz, envelope jsonb)
AS 'MODULE_PATHNAME', 'tasker_claim_steps_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_claim_steps(text, text, integer, interval, interval) IS
    'Claim up to max_steps ready steps of a queue for an external worker, each under a lease; with wait, block until one is ready or wait passes';

CREATE FUNCTION tasker_complete_step(step_id bigint, claim_token uuid, results jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_complete_step_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_complete_step(bigint, uuid, jsonb) IS
    'Record the results of a claimed step: true when recorded, false when this claim was recorded already; SQLSTATE TK003 when the claim is no longer current';

CREATE FUNCTION tasker_fail_step(step_id bigint, claim_token uuid, error jsonb,
                                 retryable boolean DEFAULT true,
                                 retry_after interval DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_fail_step_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_fail_step(bigint, uuid, jsonb, boolean, interval) IS
    'Record a failed attempt of a claimed step (retried under the step''s policy unless retryable is false; after retry_after when given): true when recorded, false when this claim was recorded already; SQLSTATE TK003 when the claim is no longer current';

CREATE FUNCTION tasker_complete_steps(completions jsonb)
RETURNS integer
AS 'MODULE_PATHNAME', 'tasker_complete_steps_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_complete_steps(jsonb) IS
    'Record the results of many claimed steps at once: a JSON array of {step_id, claim_token, results}; returns how many were recorded (an element whose claim is no longer current, or was recorded already, is skipped)';

CREATE FUNCTION tasker_extend_lease(step_id bigint, claim_token uuid, lease interval)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'tasker_extend_lease_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_extend_lease(bigint, uuid, interval) IS
    'Extend the lease of a claimed step to now + lease (a heartbeat); returns the new expiry; SQLSTATE TK003 when the claim is no longer current';

CREATE FUNCTION tasker_release_step(step_id bigint, claim_token uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_release_step_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_release_step(bigint, uuid) IS
    'Give a claimed step back without counting its attempt (a worker shutting down): it is ready again at once; false when the claim is no longer current';

REVOKE EXECUTE ON FUNCTION
    tasker_claim_steps(text, text, integer, interval, interval),
    tasker_complete_step(bigint, uuid, jsonb),
    tasker_fail_step(bigint, uuid, jsonb, boolean, interval),
    tasker_complete_steps(jsonb),
    tasker_extend_lease(bigint, uuid, interval),
    tasker_release_step(bigint, uuid)
FROM PUBLIC;
