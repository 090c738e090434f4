/* tasker 0.1.0 -> 0.2.0 */
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit

/*
 * The install script of 0.2.0 is tasker--0.1.0.sql followed by this file
 * (see the Makefile), so everything here must work both on a fresh 0.1.0
 * schema and on one that has run for months.  Sections, in order:
 * security (issue 15 A), bad input and resource bounds (issue 15 B),
 * ..., and observability (issue 12: analytics, health, task summary,
 * diagrams, bottlenecks) at the end.
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
    ('step.resolved_manually', 'step', 'A step was settled by hand or bypassed', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.skipped', 'step', 'A step will not run: a decision did not take its branch, or every parent of it was skipped', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('task.paused', 'task', 'A task was paused (tasker_pause_task): its steps are not claimed until it is resumed', ARRAY['task_id', 'task_name', 'namespace', 'reason', 'at']),
    ('task.resumed', 'task', 'A paused task was resumed (tasker_resume_task)', ARRAY['task_id', 'task_name', 'namespace', 'at']),
    ('namespace.paused', 'namespace', 'A namespace was paused (tasker_pause_namespace), with the number of its tasks it holds', ARRAY['namespace', 'tasks', 'at']),
    ('namespace.resumed', 'namespace', 'A paused namespace was resumed, with the number of its tasks it resumed', ARRAY['namespace', 'tasks', 'at'])
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

/* ---- issue 12: observability ---- */

/*
 * Analytics read time windows of history ("what finished in the last
 * hour") from the transition tables and the tasks.  created_at follows the
 * order rows are inserted in (clock_timestamp() at insert), so a BRIN index
 * of a few pages narrows a window to the recent blocks whatever the size of
 * the history, and it costs the engine's inserts almost nothing (an
 * insert at most widens the summary of the last block range, where a
 * B-tree would add an entry for every transition the workers write).
 * (Old rows that an update moved to a new block widen a block range by the
 * age of the row, which for transitions is a step's lifetime.)  The
 * partial index on steps in error finds quarantined and failed steps
 * without reading the finished ones; state changes are never HOT updates
 * (the ready index's predicate reads current_state), so it adds an index
 * entry only to rows that are in error.  The readers run with jit off:
 * the cost estimates of their plans (a look-up per row of a window, a
 * count over every row) cross jit_above_cost, and compiling took longer
 * than the query (over 500 ms against 24 ms for tasker_slowest_steps
 * with 1,000,000 finished steps, bench/RESULTS.md).
 */
CREATE INDEX tasker_step_transitions_created_at_idx
    ON tasker_workflow_step_transitions USING brin (created_at);
CREATE INDEX tasker_task_transitions_created_at_idx
    ON tasker_task_transitions USING brin (created_at);
CREATE INDEX tasker_tasks_created_at_idx
    ON tasker_tasks USING brin (created_at);
CREATE INDEX tasker_workflow_steps_error_idx
    ON tasker_workflow_steps (task_id) WHERE current_state = 'error';

/*
 * A step transition out of in_progress (to complete, error, cancelled, or
 * pending for a step given back) ends an attempt, and keeps when that
 * attempt started: the created_at of the in_progress transition before it
 * (src/state.c writes it with the row).  The analytics read an attempt's
 * run time from the one row in their window instead of looking up the
 * start of each (a probe per row: over 100 ms for a day's window with
 * 1,000,000 finished steps, bench/RESULTS.md).  Rows written before 0.2.0
 * have none, and the readers look the start up for them.
 */
ALTER TABLE tasker_workflow_step_transitions ADD COLUMN attempt_started_at timestamptz;
COMMENT ON COLUMN tasker_workflow_step_transitions.attempt_started_at IS
    'For a transition out of in_progress (the end of an attempt): when the attempt started, the created_at of the in_progress transition before it; NULL otherwise, and on rows written before 0.2.0';

/*
 * Every foreign key's columns lead an index of their table
 * (test/pgtap/001_schema.sql checks it), so that deleting or checking a
 * referenced row probes an index instead of reading the referencing
 * table: the steps of a task (the purge's cascade, tasker_slowest_tasks'
 * step counts) had only the partial unique index on (task_id,
 * named_step_id) of steps that are not map instances, which a look-up by
 * task alone cannot use.
 */
CREATE INDEX tasker_workflow_steps_task_idx ON tasker_workflow_steps (task_id);
CREATE INDEX tasker_named_tasks_named_steps_step_idx
    ON tasker_named_tasks_named_steps (named_step_id);
CREATE INDEX tasker_dsom_system_two_idx
    ON tasker_dependent_system_object_maps (dependent_system_two_id);
CREATE INDEX tasker_task_annotations_type_idx
    ON tasker_task_annotations (annotation_type_id);

/*
 * A task transition that finishes the task (to complete or error) keeps
 * the task's created_at (src/state.c), so a task's duration, from its
 * creation to that outcome, is read from the one row; NULL on other rows
 * and on rows written before 0.2.0 (the readers look it up for those).
 */
ALTER TABLE tasker_task_transitions ADD COLUMN task_created_at timestamptz;
COMMENT ON COLUMN tasker_task_transitions.task_created_at IS
    'For a transition to complete or error (the task finished): the task''s created_at; NULL otherwise, and on rows written before 0.2.0';

/*
 * The attempts and tasks that finished in a window (complete or error),
 * read by tasker_analytics_metrics and the window reads of the slowest_*
 * functions: a B-tree on the finishing rows alone, carrying what the
 * readers compute from, so a window is one range of the index, read
 * without the table (the BRIN indexes on created_at read every
 * transition of the window's blocks: twice as many rows, and the table's
 * pages).  One entry per finishing row.
 *
 * The slowest steps and tasks of a window, from indexes in order of
 * duration (the run of the attempt; the task's time from creation),
 * slowest first: tasker_slowest_steps and tasker_slowest_tasks read the
 * slowest 5,000 finishing rows of all time and keep those of the window,
 * which for any window that holds a fair share of the history fills the
 * answer in a few dozen index entries (a week of 232,000 completed steps
 * among 1,000,000, bench/RESULTS.md); when it does not (a short window),
 * they read the window itself instead, which is then small.  The
 * durations are the readers' own expressions, rounded to the millisecond
 * as they report them, so the order is theirs, ties by id.  Rows whose
 * start is not on the row (written before 0.2.0, or a completion without
 * an attempt before it) are not in these indexes; the second index of
 * each pair finds them, and a window that holds one is read directly.
 * Each finishing row adds one entry to each index (one per step, one per
 * task); no other row does.
 */
CREATE INDEX tasker_step_transitions_finished_idx
    ON tasker_workflow_step_transitions (created_at)
       INCLUDE (to_state, attempt_started_at, workflow_step_id, sort_key)
    WHERE to_state IN ('complete', 'error');
CREATE INDEX tasker_task_transitions_finished_idx
    ON tasker_task_transitions (created_at)
       INCLUDE (to_state, task_created_at, task_id, sort_key)
    WHERE to_state IN ('complete', 'error');
CREATE INDEX tasker_step_transitions_duration_idx
    ON tasker_workflow_step_transitions
       ((round(extract(epoch FROM created_at - attempt_started_at), 3)) DESC, workflow_step_id)
       INCLUDE (created_at, attempt_started_at, task_id, id)
    WHERE to_state = 'complete' AND attempt_started_at IS NOT NULL;
CREATE INDEX tasker_step_transitions_unstarted_idx
    ON tasker_workflow_step_transitions (created_at)
    WHERE to_state = 'complete' AND attempt_started_at IS NULL;
CREATE INDEX tasker_task_transitions_duration_idx
    ON tasker_task_transitions
       ((round(extract(epoch FROM created_at - task_created_at), 3)) DESC, task_id)
       INCLUDE (created_at, task_created_at, sort_key, id)
    WHERE to_state IN ('complete', 'error') AND task_created_at IS NOT NULL;
CREATE INDEX tasker_task_transitions_unstarted_idx
    ON tasker_task_transitions (created_at)
    WHERE to_state IN ('complete', 'error') AND task_created_at IS NULL;

/*
 * tasker_state_counts: how many tasks and steps are in each state, kept as
 * the tables change, so tasker_system_health reads a few rows instead of
 * counting the whole history.  Each statement that inserts, updates or
 * deletes tasks or steps appends its net change by state (statement-level
 * triggers over the transition tables; nothing when no state changed), so
 * the counts commit and roll back with the change and a snapshot sees
 * exactly the changes it sees; no row is ever updated, so concurrent
 * batches never wait on each other here (a shared counter row would queue
 * every batch of every executor behind the one before).  A state's count
 * is the sum of its rows.  Every 128th appended row, the appending
 * statement folds the table's rows of that entity into one per state, when
 * no other transaction is folding them (a transaction advisory lock,
 * tried, never waited for) and only in READ COMMITTED (a later snapshot
 * would fail on rows a concurrent fold deleted).  TRUNCATE empties the
 * entity's counts.  The triggers fire ALWAYS, also under
 * session_replication_role = replica (bulk loads, logical replication).
 * pg_dump writes none of its rows (the filter 'WHERE false'): restoring
 * the tasks and steps through their triggers counts them again.
 * tasker_check() reports counts that disagree with the tables.
 */
CREATE TABLE tasker_state_counts (
    id     bigserial,
    entity text NOT NULL CHECK (entity IN ('task', 'step')),
    state  text NOT NULL,
    n      bigint NOT NULL
);
COMMENT ON TABLE tasker_state_counts IS
    'Tasks and steps by state, as changes: the count of an entity in a state is the sum of n over its rows (kept by triggers; read by tasker_system_health)';
SELECT pg_catalog.pg_extension_config_dump('tasker_state_counts', 'WHERE false');
SELECT pg_catalog.pg_extension_config_dump('tasker_state_counts_id_seq', '');

/*
 * tasker_count_states: the statement trigger of tasker_tasks and
 * tasker_workflow_steps (TG_ARGV[0]: task or step).  Appends the
 * statement's net change by state, folds the rows now and then (above);
 * after TRUNCATE, removes the entity's counts.  Runs as the extension's
 * owner: the rows are tasker's, whoever changed the tasks.
 */
CREATE FUNCTION @extschema@.tasker_count_states()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fold boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM @extschema@.tasker_state_counts c WHERE c.entity = TG_ARGV[0];
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        WITH ins AS (
            INSERT INTO @extschema@.tasker_state_counts (entity, state, n)
            SELECT TG_ARGV[0], r.current_state, count(*)
              FROM new_rows r GROUP BY r.current_state
            RETURNING id)
        SELECT bool_or(ins.id % 128 = 0) INTO fold FROM ins;
    ELSIF TG_OP = 'DELETE' THEN
        WITH ins AS (
            INSERT INTO @extschema@.tasker_state_counts (entity, state, n)
            SELECT TG_ARGV[0], r.current_state, -count(*)
              FROM old_rows r GROUP BY r.current_state
            RETURNING id)
        SELECT bool_or(ins.id % 128 = 0) INTO fold FROM ins;
    ELSE
        WITH d AS (
            SELECT r.current_state AS state, 1 AS n FROM new_rows r
            UNION ALL
            SELECT r.current_state, -1 FROM old_rows r),
        ins AS (
            INSERT INTO @extschema@.tasker_state_counts (entity, state, n)
            SELECT TG_ARGV[0], d.state, sum(d.n)
              FROM d GROUP BY d.state HAVING sum(d.n) <> 0
            RETURNING id)
        SELECT bool_or(ins.id % 128 = 0) INTO fold FROM ins;
    END IF;
    IF fold AND current_setting('transaction_isolation') = 'read committed'
       AND pg_try_advisory_xact_lock(1668183155, CASE TG_ARGV[0] WHEN 'task' THEN 1 ELSE 2 END) THEN
        WITH gone AS (
            DELETE FROM @extschema@.tasker_state_counts c
             WHERE c.entity = TG_ARGV[0]
            RETURNING c.state, c.n)
        INSERT INTO @extschema@.tasker_state_counts (entity, state, n)
        SELECT TG_ARGV[0], gone.state, sum(gone.n)
          FROM gone GROUP BY gone.state HAVING sum(gone.n) <> 0;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_count_states() IS
    'Internal: the statement trigger that keeps tasker_state_counts (the net change of tasks or steps by state)';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_count_states() FROM PUBLIC;

CREATE TRIGGER tasker_count_task_inserts AFTER INSERT ON tasker_tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('task');
CREATE TRIGGER tasker_count_task_updates AFTER UPDATE ON tasker_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('task');
CREATE TRIGGER tasker_count_task_deletes AFTER DELETE ON tasker_tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('task');
CREATE TRIGGER tasker_count_task_truncates AFTER TRUNCATE ON tasker_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('task');
CREATE TRIGGER tasker_count_step_inserts AFTER INSERT ON tasker_workflow_steps
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('step');
CREATE TRIGGER tasker_count_step_updates AFTER UPDATE ON tasker_workflow_steps
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('step');
CREATE TRIGGER tasker_count_step_deletes AFTER DELETE ON tasker_workflow_steps
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('step');
CREATE TRIGGER tasker_count_step_truncates AFTER TRUNCATE ON tasker_workflow_steps
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.tasker_count_states('step');
ALTER TABLE tasker_tasks
    ENABLE ALWAYS TRIGGER tasker_count_task_inserts,
    ENABLE ALWAYS TRIGGER tasker_count_task_updates,
    ENABLE ALWAYS TRIGGER tasker_count_task_deletes,
    ENABLE ALWAYS TRIGGER tasker_count_task_truncates;
ALTER TABLE tasker_workflow_steps
    ENABLE ALWAYS TRIGGER tasker_count_step_inserts,
    ENABLE ALWAYS TRIGGER tasker_count_step_updates,
    ENABLE ALWAYS TRIGGER tasker_count_step_deletes,
    ENABLE ALWAYS TRIGGER tasker_count_step_truncates;

/* The rows already there, counted under the triggers' locks (no change
 * can come between the count and the triggers). */
INSERT INTO tasker_state_counts (entity, state, n)
SELECT 'task', t.current_state, count(*) FROM tasker_tasks t GROUP BY t.current_state;
INSERT INTO tasker_state_counts (entity, state, n)
SELECT 'step', s.current_state, count(*) FROM tasker_workflow_steps s GROUP BY s.current_state;

/*
 * tasker_state_count_errors: the states whose kept count (the sum in
 * tasker_state_counts) differs from the table's, for tasker_check().  Only
 * for a role that sees every namespace (the counts are of them all):
 * empty for others.  It counts every row, as a check may.
 */
CREATE FUNCTION @extschema@.tasker_state_count_errors()
RETURNS TABLE (entity text, state text, kept bigint, actual bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    IF NOT @extschema@.tasker_sees_all_namespaces() THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT COALESCE(a.entity, b.entity), COALESCE(a.state, b.state),
           COALESCE(a.n, 0)::bigint, COALESCE(b.n, 0)::bigint
      FROM (SELECT c.entity, c.state, sum(c.n) AS n
              FROM @extschema@.tasker_state_counts c GROUP BY c.entity, c.state) a
      FULL JOIN (SELECT 'task'::text AS entity, t.current_state::text AS state, count(*) AS n
                   FROM @extschema@.tasker_tasks t GROUP BY t.current_state
                 UNION ALL
                 SELECT 'step', s.current_state::text, count(*)
                   FROM @extschema@.tasker_workflow_steps s GROUP BY s.current_state) b
        ON b.entity = a.entity AND b.state = a.state
     WHERE COALESCE(a.n, 0) <> COALESCE(b.n, 0)
     ORDER BY 1, 2;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_state_count_errors() IS
    'States whose count kept in tasker_state_counts differs from the tables (for tasker_check; empty for a role that does not see every namespace)';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_state_count_errors() FROM PUBLIC;

/*
 * tasker_recount_states: count the tasks and steps by state again, with
 * their writers held off (SHARE locks until the transaction ends), and
 * replace the kept counts: after a restore or load that bypassed the
 * triggers (pg_restore --disable-triggers).  Returns the rows written.
 */
CREATE FUNCTION @extschema@.tasker_recount_states()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    LOCK TABLE @extschema@.tasker_tasks, @extschema@.tasker_workflow_steps IN SHARE MODE;
    DELETE FROM @extschema@.tasker_state_counts;
    INSERT INTO @extschema@.tasker_state_counts (entity, state, n)
    SELECT 'task', t.current_state, count(*) FROM @extschema@.tasker_tasks t GROUP BY t.current_state
    UNION ALL
    SELECT 'step', s.current_state, count(*) FROM @extschema@.tasker_workflow_steps s GROUP BY s.current_state;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_recount_states() IS
    'Count tasks and steps by state again and replace the counts tasker_system_health reads (after a load or restore that bypassed the triggers); returns the rows written';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_recount_states() FROM PUBLIC;

/*
 * tasker_check_window: the argument checks of the slowest_* functions.
 * Internal (not granted); the readers call it as the owner.
 */
CREATE FUNCTION @extschema@.tasker_check_window(since timestamptz, limit_count integer)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The analysis window runs from since to now().',
                  HINT = 'Pass a time, such as now() - interval ''24 hours'', or leave the argument out for the last day.';
    END IF;
    IF limit_count IS NULL OR limit_count < 1 THEN
        RAISE EXCEPTION 'limit_count must be a positive number'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The limit given is %s.', COALESCE(limit_count::text, 'NULL')),
                  HINT = 'Pass how many rows to return, such as 10.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_check_window(timestamptz, integer) IS
    'Internal: raise for a NULL window start or a limit below 1 (the argument checks of tasker_slowest_steps and tasker_slowest_tasks)';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_check_window(timestamptz, integer) FROM PUBLIC;

/*
 * The Ruby get_system_health_counts_v01, with its defects fixed: counts by
 * the state columns (a task or step without a transition row is pending,
 * not missing), resolved_manually and cancelled counted too, and the retry
 * columns read next_attempt_at (the engine's own record of whether a retry
 * will come).  A role that sees every namespace reads the counts kept in
 * tasker_state_counts (a few rows, whatever the history) and the steps in
 * error through their partial index; a role that sees only some
 * namespaces counts the rows it sees (row-level security), one pass over
 * tasks and one over steps.
 */
CREATE FUNCTION @extschema@.tasker_system_health(
    OUT total_tasks bigint, OUT pending_tasks bigint, OUT in_progress_tasks bigint,
    OUT complete_tasks bigint, OUT error_tasks bigint, OUT cancelled_tasks bigint,
    OUT total_steps bigint, OUT pending_steps bigint, OUT in_progress_steps bigint,
    OUT complete_steps bigint, OUT error_steps bigint,
    OUT retryable_error_steps bigint, OUT exhausted_retry_steps bigint,
    OUT in_backoff_steps bigint, OUT active_connections bigint,
    OUT max_connections bigint, OUT resolved_manually_tasks bigint,
    OUT cancelled_steps bigint, OUT resolved_manually_steps bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
BEGIN
    IF @extschema@.tasker_sees_all_namespaces() THEN
        SELECT t.total, t.pending, t.in_progress, t.complete, t.error, t.cancelled, t.resolved,
               s.total, s.pending, s.in_progress, s.complete, s.error, s.cancelled, s.resolved,
               e.retrying, e.exhausted, e.backoff
          INTO total_tasks, pending_tasks, in_progress_tasks, complete_tasks, error_tasks,
               cancelled_tasks, resolved_manually_tasks,
               total_steps, pending_steps, in_progress_steps, complete_steps, error_steps,
               cancelled_steps, resolved_manually_steps,
               retryable_error_steps, exhausted_retry_steps, in_backoff_steps
          FROM (SELECT COALESCE(sum(c.n), 0) AS total,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'pending'), 0) AS pending,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'in_progress'), 0) AS in_progress,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'complete'), 0) AS complete,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'error'), 0) AS error,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'cancelled'), 0) AS cancelled,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'resolved_manually'), 0) AS resolved
                  FROM @extschema@.tasker_state_counts c WHERE c.entity = 'task') t,
               (SELECT COALESCE(sum(c.n), 0) AS total,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'pending'), 0) AS pending,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'in_progress'), 0) AS in_progress,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'complete'), 0) AS complete,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'error'), 0) AS error,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'cancelled'), 0) AS cancelled,
                       COALESCE(sum(c.n) FILTER (WHERE c.state = 'resolved_manually'), 0) AS resolved
                  FROM @extschema@.tasker_state_counts c WHERE c.entity = 'step') s,
               (SELECT count(*) FILTER (WHERE x.next_attempt_at IS NOT NULL) AS retrying,
                       count(*) FILTER (WHERE x.next_attempt_at IS NULL) AS exhausted,
                       count(*) FILTER (WHERE x.next_attempt_at > now()) AS backoff
                  FROM @extschema@.tasker_workflow_steps x WHERE x.current_state = 'error') e;
    ELSE
        SELECT t.total, t.pending, t.in_progress, t.complete, t.error, t.cancelled, t.resolved,
               s.total, s.pending, s.in_progress, s.complete, s.error, s.cancelled, s.resolved,
               s.retrying, s.exhausted, s.backoff
          INTO total_tasks, pending_tasks, in_progress_tasks, complete_tasks, error_tasks,
               cancelled_tasks, resolved_manually_tasks,
               total_steps, pending_steps, in_progress_steps, complete_steps, error_steps,
               cancelled_steps, resolved_manually_steps,
               retryable_error_steps, exhausted_retry_steps, in_backoff_steps
          FROM (SELECT count(*) AS total,
                       count(*) FILTER (WHERE x.current_state = 'pending') AS pending,
                       count(*) FILTER (WHERE x.current_state = 'in_progress') AS in_progress,
                       count(*) FILTER (WHERE x.current_state = 'complete') AS complete,
                       count(*) FILTER (WHERE x.current_state = 'error') AS error,
                       count(*) FILTER (WHERE x.current_state = 'cancelled') AS cancelled,
                       count(*) FILTER (WHERE x.current_state = 'resolved_manually') AS resolved
                  FROM @extschema@.tasker_tasks x) t,
               (SELECT count(*) AS total,
                       count(*) FILTER (WHERE x.current_state = 'pending') AS pending,
                       count(*) FILTER (WHERE x.current_state = 'in_progress') AS in_progress,
                       count(*) FILTER (WHERE x.current_state = 'complete') AS complete,
                       count(*) FILTER (WHERE x.current_state = 'error') AS error,
                       count(*) FILTER (WHERE x.current_state = 'error'
                                          AND x.next_attempt_at IS NOT NULL) AS retrying,
                       count(*) FILTER (WHERE x.current_state = 'error'
                                          AND x.next_attempt_at IS NULL) AS exhausted,
                       count(*) FILTER (WHERE x.current_state = 'error'
                                          AND x.next_attempt_at > now()) AS backoff,
                       count(*) FILTER (WHERE x.current_state = 'cancelled') AS cancelled,
                       count(*) FILTER (WHERE x.current_state = 'resolved_manually') AS resolved
                  FROM @extschema@.tasker_workflow_steps x) s;
    END IF;
    active_connections := (SELECT count(*) FROM pg_catalog.pg_stat_activity a
                            WHERE a.datname = current_database() AND a.state = 'active');
    max_connections := current_setting('max_connections')::bigint;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_system_health() IS
    'Tasks and steps by state, steps in error by whether a retry will come, and connection use (the Ruby get_system_health_counts_v01, counting by the state columns)';

/*
 * The Ruby get_analytics_metrics_v01 over the window [since, now()], with
 * its defects fixed: counts of tasks by their outcome in the window (not
 * "tasks with a complete step"), the health score the Ruby documentation
 * gives (1 - errors / throughput) over the same window rather than a fixed
 * hour, durations of tasks from creation to completion and of steps as
 * the run of the attempt that completed them (not from the step's creation,
 * which counted the wait for its parents), and percentiles.  Every figure
 * reads the window through the created_at indexes.
 */
CREATE FUNCTION @extschema@.tasker_analytics_metrics(
    since timestamptz DEFAULT now() - interval '1 hour')
RETURNS TABLE (active_tasks_count bigint, total_namespaces_count bigint,
               unique_task_types_count bigint, system_health_score numeric,
               task_throughput bigint, completion_count bigint, error_count bigint,
               completion_rate numeric, error_rate numeric,
               avg_task_duration numeric, avg_step_duration numeric,
               step_throughput bigint, analysis_period_start timestamptz,
               calculated_at timestamptz, tasks_created bigint,
               p50_task_duration numeric, p95_task_duration numeric,
               p99_task_duration numeric, p50_step_duration numeric,
               p95_step_duration numeric, p99_step_duration numeric,
               step_error_count bigint, step_error_rate numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
#variable_conflict use_column
BEGIN
    IF since IS NULL THEN
        RAISE EXCEPTION 'since must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The analysis window runs from since to now().',
                  HINT = 'Pass a time, such as now() - interval ''1 hour'', or leave the argument out for the last hour.';
    END IF;
    RETURN QUERY
    WITH task_done AS (
        -- each task's last outcome in the window
        SELECT DISTINCT ON (x.task_id) x.to_state::text AS outcome,
               extract(epoch FROM x.created_at - COALESCE(x.task_created_at, (
                   SELECT t.created_at FROM @extschema@.tasker_tasks t
                    WHERE t.task_id = x.task_id))) AS seconds
          FROM @extschema@.tasker_task_transitions x
         WHERE x.to_state IN ('complete', 'error')
           AND x.created_at >= since AND x.created_at <= now()
         ORDER BY x.task_id, x.sort_key DESC),
    step_done AS (
        -- each attempt that ended in the window, with its run time (the
        -- start kept on the row; looked up for rows older than 0.2.0),
        -- computed once per row (OFFSET 0), not once per aggregate
        SELECT x.to_state::text AS outcome,
               extract(epoch FROM x.created_at - COALESCE(x.attempt_started_at, (
                   SELECT p.created_at
                     FROM @extschema@.tasker_workflow_step_transitions p
                    WHERE p.workflow_step_id = x.workflow_step_id
                      AND p.sort_key < x.sort_key AND p.to_state = 'in_progress'
                    ORDER BY p.sort_key DESC LIMIT 1))) AS seconds
          FROM @extschema@.tasker_workflow_step_transitions x
         WHERE x.to_state IN ('complete', 'error')
           AND x.created_at >= since AND x.created_at <= now()
        OFFSET 0),
    tasks AS (
        SELECT count(*) AS finished,
               count(*) FILTER (WHERE d.outcome = 'complete') AS completed,
               count(*) FILTER (WHERE d.outcome = 'error') AS failed,
               avg(d.seconds) FILTER (WHERE d.outcome = 'complete') AS mean,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY d.seconds)
                   FILTER (WHERE d.outcome = 'complete') AS pct
          FROM task_done d),
    steps AS (
        SELECT count(*) FILTER (WHERE d.outcome = 'complete') AS completed,
               count(*) FILTER (WHERE d.outcome = 'error') AS failed,
               avg(d.seconds) FILTER (WHERE d.outcome = 'complete') AS mean,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY d.seconds)
                   FILTER (WHERE d.outcome = 'complete' AND d.seconds IS NOT NULL) AS pct
          FROM step_done d),
    used AS (
        -- templates that have tasks, found through the tasks' template index
        SELECT nt.task_namespace_id, nt.name
          FROM @extschema@.tasker_named_tasks nt
         WHERE EXISTS (SELECT 1 FROM @extschema@.tasker_tasks t
                        WHERE t.named_task_id = nt.named_task_id))
    SELECT (SELECT count(*) FROM @extschema@.tasker_tasks t
             WHERE t.current_state IN ('pending', 'in_progress')),
           (SELECT count(DISTINCT u.task_namespace_id) FROM used u),
           (SELECT count(*) FROM (SELECT DISTINCT u.task_namespace_id, u.name FROM used u) d),
           CASE WHEN tk.finished = 0 THEN 1.000
                ELSE round(1 - tk.failed::numeric / tk.finished, 3) END,
           tk.finished, tk.completed, tk.failed,
           CASE WHEN tk.finished = 0 THEN 0.00
                ELSE round(100 * tk.completed::numeric / tk.finished, 2) END,
           CASE WHEN tk.finished = 0 THEN 0.00
                ELSE round(100 * tk.failed::numeric / tk.finished, 2) END,
           round(tk.mean, 3), round(st.mean, 3), st.completed,
           since, now(),
           (SELECT count(*) FROM @extschema@.tasker_tasks t
             WHERE t.created_at >= since AND t.created_at <= now()),
           round(tk.pct[1]::numeric, 3), round(tk.pct[2]::numeric, 3), round(tk.pct[3]::numeric, 3),
           round(st.pct[1]::numeric, 3), round(st.pct[2]::numeric, 3), round(st.pct[3]::numeric, 3),
           st.failed,
           CASE WHEN st.completed + st.failed = 0 THEN 0.00
                ELSE round(100 * st.failed::numeric / (st.completed + st.failed), 2) END
      FROM tasks tk, steps st;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_analytics_metrics(timestamptz) IS
    'Throughput, completion and error rates, mean and p50/p95/p99 durations of tasks and steps, and a health score over the window from since to now() (the Ruby get_analytics_metrics_v01, fixed)';

/*
 * The Ruby get_slowest_steps_v01: the steps that completed in the window,
 * slowest first.  A step's duration is the run of the attempt that
 * completed it (Ruby measured from the step's creation, so the last steps
 * of every chain came first), read from the complete transition
 * (attempt_started_at; looked up for rows older than 0.2.0).  First from
 * the duration index (the slowest 5,000 completions of all time, kept if
 * in the window and of a template the filter matches: when that fills the
 * limit, no completion outside them can rank above the rows found); else,
 * or when the window holds a completion that index lacks, from the
 * window's transitions, ranked before the join to steps and names, a
 * filter being the set of templates it matches, checked against each
 * transition's task (joined only under a filter).
 */
CREATE FUNCTION @extschema@.tasker_slowest_steps(
    since timestamptz DEFAULT now() - interval '24 hours',
    limit_count integer DEFAULT 10, namespace_filter text DEFAULT NULL,
    task_name_filter text DEFAULT NULL, version_filter text DEFAULT NULL)
RETURNS TABLE (workflow_step_id bigint, task_id bigint, step_name text,
               task_name text, namespace_name text, version text,
               duration_seconds numeric, attempts integer,
               created_at timestamptz, completed_at timestamptz,
               retryable boolean, step_status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    templates integer[];
    picked bigint[];
BEGIN
    PERFORM @extschema@.tasker_check_window(since, limit_count);
    IF namespace_filter IS NOT NULL OR task_name_filter IS NOT NULL OR version_filter IS NOT NULL THEN
        templates := ARRAY(
            SELECT nt.named_task_id
              FROM @extschema@.tasker_named_tasks nt
              JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
             WHERE (namespace_filter IS NULL OR ns.name = namespace_filter)
               AND (task_name_filter IS NULL OR nt.name = task_name_filter)
               AND (version_filter IS NULL OR nt.version = version_filter));
    END IF;
    IF limit_count <= 1000 AND NOT EXISTS (
           SELECT 1 FROM @extschema@.tasker_workflow_step_transitions u
            WHERE u.to_state = 'complete' AND u.attempt_started_at IS NULL
              AND u.created_at >= since AND u.created_at <= now()) THEN
        picked := ARRAY(
            SELECT c.id
              FROM (SELECT x.id, x.task_id, x.created_at
                      FROM @extschema@.tasker_workflow_step_transitions x
                     WHERE x.to_state = 'complete' AND x.attempt_started_at IS NOT NULL
                     ORDER BY round(extract(epoch FROM x.created_at - x.attempt_started_at), 3) DESC,
                              x.workflow_step_id
                     LIMIT 5000) c
             WHERE c.created_at >= since AND c.created_at <= now()
               AND (templates IS NULL
                    OR (SELECT t.named_task_id FROM @extschema@.tasker_tasks t
                         WHERE t.task_id = c.task_id) = ANY (templates))
             LIMIT limit_count);
    END IF;
    IF cardinality(picked) < limit_count OR picked IS NULL THEN
        picked := ARRAY(
            WITH done AS (
                SELECT x.id, x.workflow_step_id,
                       round(extract(epoch FROM x.created_at - COALESCE(x.attempt_started_at, (
                           SELECT p.created_at
                             FROM @extschema@.tasker_workflow_step_transitions p
                            WHERE p.workflow_step_id = x.workflow_step_id
                              AND p.sort_key < x.sort_key AND p.to_state = 'in_progress'
                            ORDER BY p.sort_key DESC LIMIT 1))), 3) AS seconds
                  FROM @extschema@.tasker_workflow_step_transitions x
                  -- the task's template, read only under a filter (OFFSET 0:
                  -- one probe per task, not a hash of every task of the templates)
                  LEFT JOIN LATERAL (
                        SELECT t.named_task_id FROM @extschema@.tasker_tasks t
                         WHERE templates IS NOT NULL AND t.task_id = x.task_id OFFSET 0) tt ON true
                 WHERE x.to_state = 'complete'
                   AND x.created_at >= since AND x.created_at <= now()
                   AND (templates IS NULL OR tt.named_task_id = ANY (templates)))
            SELECT d.id FROM done d
             WHERE d.seconds IS NOT NULL
             ORDER BY d.seconds DESC, d.workflow_step_id
             LIMIT limit_count);
    END IF;
    RETURN QUERY
    SELECT s.workflow_step_id, s.task_id, n.name::text, nt.name::text, ns.name::text,
           nt.version::text, d.seconds, s.attempts, s.created_at, d.completed_at,
           s.retryable, s.current_state::text
      FROM (SELECT x.workflow_step_id, x.created_at AS completed_at,
                   round(extract(epoch FROM x.created_at - COALESCE(x.attempt_started_at, (
                       SELECT p.created_at
                         FROM @extschema@.tasker_workflow_step_transitions p
                        WHERE p.workflow_step_id = x.workflow_step_id
                          AND p.sort_key < x.sort_key AND p.to_state = 'in_progress'
                        ORDER BY p.sort_key DESC LIMIT 1))), 3) AS seconds
              FROM @extschema@.tasker_workflow_step_transitions x
             WHERE x.id = ANY (picked)) d
      JOIN @extschema@.tasker_workflow_steps s ON s.workflow_step_id = d.workflow_step_id
      JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
      JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id
      JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     ORDER BY d.seconds DESC, d.workflow_step_id;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_slowest_steps(timestamptz, integer, text, text, text) IS
    'The steps that completed since a time, slowest first, by the run time of the attempt that completed them, optionally filtered by namespace, task name and version (the Ruby get_slowest_steps_v01)';

/*
 * The Ruby get_slowest_tasks_v01: the tasks whose last outcome in the
 * window is complete or error, slowest first, from creation to that
 * outcome (Ruby took a step's transition and only tasks created in the
 * window).  task_status says which outcome.  First from the duration
 * index (the slowest 5,000 finishing transitions of all time, kept if in
 * the window, the task's last outcome there, and of a template the filter
 * matches), else, or when the window holds a finishing row that index
 * lacks, from the window's transitions; the step counts are read for the
 * tasks returned only.
 */
CREATE FUNCTION @extschema@.tasker_slowest_tasks(
    since timestamptz DEFAULT now() - interval '24 hours',
    limit_count integer DEFAULT 10, namespace_filter text DEFAULT NULL,
    task_name_filter text DEFAULT NULL, version_filter text DEFAULT NULL)
RETURNS TABLE (task_id bigint, task_name text, namespace_name text, version text,
               duration_seconds numeric, step_count bigint, completed_steps bigint,
               error_steps bigint, created_at timestamptz, completed_at timestamptz,
               initiator text, source_system text, task_status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    templates integer[];
    picked bigint[];
BEGIN
    PERFORM @extschema@.tasker_check_window(since, limit_count);
    IF namespace_filter IS NOT NULL OR task_name_filter IS NOT NULL OR version_filter IS NOT NULL THEN
        templates := ARRAY(
            SELECT nt.named_task_id
              FROM @extschema@.tasker_named_tasks nt
              JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
             WHERE (namespace_filter IS NULL OR ns.name = namespace_filter)
               AND (task_name_filter IS NULL OR nt.name = task_name_filter)
               AND (version_filter IS NULL OR nt.version = version_filter));
    END IF;
    IF limit_count <= 1000 AND NOT EXISTS (
           SELECT 1 FROM @extschema@.tasker_task_transitions u
            WHERE u.to_state IN ('complete', 'error') AND u.task_created_at IS NULL
              AND u.created_at >= since AND u.created_at <= now()) THEN
        picked := ARRAY(
            SELECT c.id
              FROM (SELECT x.id, x.task_id, x.sort_key, x.created_at
                      FROM @extschema@.tasker_task_transitions x
                     WHERE x.to_state IN ('complete', 'error') AND x.task_created_at IS NOT NULL
                     ORDER BY round(extract(epoch FROM x.created_at - x.task_created_at), 3) DESC,
                              x.task_id
                     LIMIT 5000) c
             WHERE c.created_at >= since AND c.created_at <= now()
               AND NOT EXISTS (
                   SELECT 1 FROM @extschema@.tasker_task_transitions y
                    WHERE y.task_id = c.task_id AND y.sort_key > c.sort_key
                      AND y.to_state IN ('complete', 'error')
                      AND y.created_at >= since AND y.created_at <= now())
               AND (templates IS NULL
                    OR (SELECT t.named_task_id FROM @extschema@.tasker_tasks t
                         WHERE t.task_id = c.task_id) = ANY (templates))
             LIMIT limit_count);
    END IF;
    IF cardinality(picked) < limit_count OR picked IS NULL THEN
        picked := ARRAY(
            WITH done AS (
                SELECT DISTINCT ON (x.task_id) x.id, x.task_id, x.created_at AS finished_at
                  FROM @extschema@.tasker_task_transitions x
                 WHERE x.to_state IN ('complete', 'error')
                   AND x.created_at >= since AND x.created_at <= now()
                 ORDER BY x.task_id, x.sort_key DESC)
            SELECT d.id
              FROM done d
              JOIN @extschema@.tasker_tasks t ON t.task_id = d.task_id
              JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
              JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
             WHERE (namespace_filter IS NULL OR ns.name = namespace_filter)
               AND (task_name_filter IS NULL OR nt.name = task_name_filter)
               AND (version_filter IS NULL OR nt.version = version_filter)
             ORDER BY round(extract(epoch FROM d.finished_at - t.created_at), 3) DESC, d.task_id
             LIMIT limit_count);
    END IF;
    RETURN QUERY
    SELECT t.task_id, nt.name::text, ns.name::text, nt.version::text,
           round(extract(epoch FROM x.created_at - t.created_at), 3),
           c.total, c.done, c.failed, t.created_at, x.created_at,
           t.initiator::text, t.source_system::text, x.to_state::text
      FROM @extschema@.tasker_task_transitions x
      JOIN @extschema@.tasker_tasks t ON t.task_id = x.task_id
      JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     CROSS JOIN LATERAL (
           SELECT count(*) AS total,
                  count(*) FILTER (WHERE s.current_state IN ('complete', 'resolved_manually')) AS done,
                  count(*) FILTER (WHERE s.current_state = 'error') AS failed
             FROM @extschema@.tasker_workflow_steps s
            WHERE s.task_id = t.task_id) c
     WHERE x.id = ANY (picked)
     ORDER BY 5 DESC, 1;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_slowest_tasks(timestamptz, integer, text, text, text) IS
    'The tasks that completed or failed since a time, slowest first, from creation to that outcome, optionally filtered by namespace, task name and version (the Ruby get_slowest_tasks_v01)';

/*
 * tasker_health: one row per check, then "overall", for probes and
 * dashboards.  ok: nothing to do; degraded: tasker runs but something
 * needs an operator; failing: work cannot run (a standby, no worker
 * serving this database while steps are ready, workers waiting for
 * ALTER EXTENSION UPDATE).  A check that is not ok says what to do in
 * detail->>'action'.  Ready steps are those the executors would claim now
 * (the ready index's predicate, due, of a pending or in_progress task, of
 * a kind the executors run: external workers run the worker kind's),
 * counted up to 10,000; the oldest ready step, of any kind, is found per
 * handler kind through the ready index.  Every check reads an index or a
 * small set.
 */
CREATE FUNCTION @extschema@.tasker_health()
RETURNS TABLE (check_name text, status text, detail jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
WITH RECURSIVE
kinds(kind) AS (
    SELECT min(s.handler_kind) FROM @extschema@.tasker_workflow_steps s
     WHERE s.current_state IN ('pending', 'error') AND s.unfinished_parents = 0
       AND s.next_attempt_at IS NOT NULL
    UNION ALL
    SELECT (SELECT min(s.handler_kind) FROM @extschema@.tasker_workflow_steps s
             WHERE s.current_state IN ('pending', 'error') AND s.unfinished_parents = 0
               AND s.next_attempt_at IS NOT NULL AND s.handler_kind > k.kind)
      FROM kinds k WHERE k.kind IS NOT NULL),
oldest AS (
    SELECT o.workflow_step_id, o.task_id, o.next_attempt_at
      FROM kinds k
     CROSS JOIN LATERAL (
           SELECT s.workflow_step_id, s.task_id, s.next_attempt_at
             FROM @extschema@.tasker_workflow_steps s
             JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id
            WHERE s.handler_kind = k.kind
              AND s.current_state IN ('pending', 'error') AND s.unfinished_parents = 0
              AND s.next_attempt_at IS NOT NULL AND s.next_attempt_at <= now()
              AND t.current_state IN ('pending', 'in_progress')
            ORDER BY s.next_attempt_at LIMIT 1) o
     ORDER BY o.next_attempt_at, o.workflow_step_id LIMIT 1),
ready AS (
    -- steps the executors run (external workers run the worker kind's)
    SELECT count(*) AS n
      FROM (SELECT 1 FROM @extschema@.tasker_workflow_steps s
              JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id
             WHERE s.current_state IN ('pending', 'error') AND s.unfinished_parents = 0
               AND s.next_attempt_at IS NOT NULL AND s.next_attempt_at <= now()
               AND s.handler_kind <> 'worker'
               AND t.current_state IN ('pending', 'in_progress')
             LIMIT 10000) r),
ws AS (SELECT * FROM @extschema@.tasker_worker_status()),
w AS (
    SELECT count(*) AS nrows,
           count(*) FILTER (WHERE ws.role = 'worker') AS executors,
           count(*) FILTER (WHERE ws.role = 'worker' AND ws.state IN ('idle', 'running')) AS active,
           count(*) FILTER (WHERE ws.role = 'worker' AND ws.state = 'waiting_for_update') AS waiting_update,
           COALESCE((SELECT jsonb_object_agg(x.state, x.n)
                       FROM (SELECT ws.state, count(*) AS n FROM ws
                              WHERE ws.role = 'worker' GROUP BY ws.state) x), '{}') AS states,
           COALESCE(current_setting('tasker.database_name', true), 'postgres') AS dbname,
           COALESCE(current_setting('tasker.enabled', true), 'on')::boolean AS enabled,
           COALESCE(current_setting('tasker.batch_size', true), '50')::bigint AS batch_size
      FROM ws),
v AS (
    SELECT (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'tasker') AS installed,
           (SELECT a.default_version FROM pg_catalog.pg_available_extensions a
             WHERE a.name = 'tasker') AS available),
env AS (
    SELECT w.*, v.*, ready.n AS ready_steps,
           w.executors > 0 AND w.dbname = current_database() AS serving
      FROM w, v, ready),
m AS (SELECT * FROM @extschema@.tasker_analytics_metrics(now() - interval '1 hour')),
leases AS (
    SELECT count(*) AS n, min(s.lease_expires_at) AS oldest,
           (array_agg(s.workflow_step_id ORDER BY s.lease_expires_at, s.workflow_step_id))[1:10] AS ids
      FROM @extschema@.tasker_workflow_steps s
     WHERE s.lease_expires_at < now() AND s.current_state = 'in_progress'),
quarantined AS (
    SELECT count(*) AS n,
           (array_agg(s.workflow_step_id ORDER BY s.workflow_step_id))[1:10] AS ids
      FROM @extschema@.tasker_workflow_steps s
     WHERE s.current_state = 'error'
       AND s.results->'error'->>'message' LIKE 'tasker could not run the step:%'),
conn AS (
    SELECT (SELECT count(*) FROM pg_catalog.pg_stat_activity a
             WHERE a.backend_type = 'client backend') AS n,
           current_setting('max_connections')::bigint AS max),
checks(ord, check_name, status, detail) AS (
    SELECT 1, 'live', 'ok', jsonb_build_object('database', current_database())
    UNION ALL
    SELECT 2, 'ready', CASE WHEN pg_is_in_recovery() THEN 'failing' ELSE 'ok' END,
           jsonb_strip_nulls(jsonb_build_object(
               'in_recovery', pg_is_in_recovery(),
               'action', CASE WHEN pg_is_in_recovery()
                              THEN 'This server is a standby: tasks are created and run on the primary.' END))
    UNION ALL
    SELECT 3, 'extension_version',
           CASE WHEN env.serving AND env.waiting_update > 0 THEN 'failing'
                WHEN env.installed IS DISTINCT FROM env.available THEN 'degraded'
                ELSE 'ok' END,
           jsonb_strip_nulls(jsonb_build_object(
               'installed', env.installed, 'available', env.available,
               'workers_waiting_for_update', env.waiting_update,
               'action', CASE WHEN env.serving AND env.waiting_update > 0
                              THEN 'The workers loaded a library of another version than the extension here: run ALTER EXTENSION tasker UPDATE in this database (restart the server first if the library is the older one).'
                              WHEN env.installed IS DISTINCT FROM env.available
                              THEN format('The installed files are at version %s: restart the server if tasker is preloaded (so that the workers load the new library), then run ALTER EXTENSION tasker UPDATE.', env.available) END))
      FROM env
    UNION ALL
    SELECT 4, 'workers', x.status,
           jsonb_strip_nulls(jsonb_build_object(
               'preloaded', env.nrows > 0, 'database_name', env.dbname,
               'serves_this_database', env.serving, 'enabled', env.enabled,
               'executors', env.executors, 'active', env.active, 'states', env.states,
               'ready_steps', env.ready_steps,
               'action', CASE WHEN x.status = 'ok' THEN NULL
                              WHEN env.nrows = 0
                              THEN 'No tasker worker runs on this server: add tasker to shared_preload_libraries and restart, or run steps with tasker_run_steps (for example from pg_cron).'
                              WHEN NOT env.serving
                              THEN format('The workers serve database %s (tasker.database_name), not this one: run steps here with tasker_run_steps, or set tasker.database_name to %s and restart.', env.dbname, current_database())
                              WHEN env.waiting_update > 0
                              THEN 'The workers wait for ALTER EXTENSION tasker UPDATE in this database.'
                              WHEN NOT env.enabled
                              THEN 'tasker.enabled is off: ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf();'
                              ELSE 'No executor is running: see tasker_worker_status() and the server log.' END))
      FROM env
     CROSS JOIN LATERAL (
           SELECT CASE WHEN env.serving AND env.waiting_update > 0 THEN 'failing'
                       WHEN env.serving AND env.enabled AND env.active > 0 THEN 'ok'
                       WHEN env.ready_steps > 0 THEN 'failing'
                       ELSE 'degraded' END AS status) x
    UNION ALL
    SELECT 5, 'caught_up', CASE WHEN env.ready_steps <= x.capacity THEN 'ok' ELSE 'degraded' END,
           jsonb_strip_nulls(jsonb_build_object(
               'ready_steps', env.ready_steps, 'capacity', x.capacity,
               'action', CASE WHEN env.ready_steps > x.capacity
                              THEN 'More steps are ready than one round of batches takes: see the workers check, or raise tasker.max_workers or tasker.batch_size.' END))
      FROM env
     CROSS JOIN LATERAL (
           SELECT CASE WHEN env.serving AND env.enabled THEN env.active * env.batch_size
                       ELSE 0 END AS capacity) x
    UNION ALL
    SELECT 6, 'oldest_ready_step',
           CASE WHEN o.next_attempt_at IS NULL OR o.next_attempt_at > now() - interval '1 minute'
                THEN 'ok' ELSE 'degraded' END,
           jsonb_strip_nulls(jsonb_build_object(
               'step_id', o.workflow_step_id, 'task_id', o.task_id, 'due_at', o.next_attempt_at,
               'age_seconds', round(extract(epoch FROM now() - o.next_attempt_at), 3),
               'action', CASE WHEN o.next_attempt_at <= now() - interval '1 minute'
                              THEN 'A ready step has waited for more than a minute: the workers are behind, or none serves this database (see the workers check).' END))
      FROM (SELECT 1) one LEFT JOIN oldest o ON true
    UNION ALL
    SELECT 7, 'stuck_leases', CASE WHEN l.n = 0 THEN 'ok' ELSE 'degraded' END,
           jsonb_strip_nulls(jsonb_build_object(
               'steps', l.n, 'oldest_expiry', l.oldest, 'step_ids', to_jsonb(l.ids),
               'action', CASE WHEN l.n > 0
                              THEN 'Leased steps (HTTP, or run by external workers) are still in_progress after their lease expired: the executors reclaim them; if they stay, no executor serves this database (see the workers check).' END))
      FROM leases l
    UNION ALL
    SELECT 8, 'quarantined_steps', CASE WHEN q.n = 0 THEN 'ok' ELSE 'degraded' END,
           jsonb_strip_nulls(jsonb_build_object(
               'steps', q.n, 'step_ids', to_jsonb(q.ids),
               'action', CASE WHEN q.n > 0
                              THEN 'tasker could not run these steps (results.error.message and the server log say why): fix the cause, then tasker_retry_task or tasker_resolve_step.' END))
      FROM quarantined q
    UNION ALL
    SELECT 9, 'connections', CASE WHEN c.n > 0.9 * c.max THEN 'degraded' ELSE 'ok' END,
           jsonb_strip_nulls(jsonb_build_object(
               'connections', c.n, 'max_connections', c.max,
               'action', CASE WHEN c.n > 0.9 * c.max
                              THEN 'More than 90 % of max_connections are in use.' END))
      FROM conn c
    UNION ALL
    SELECT 10, 'task_error_rate', CASE WHEN m.error_rate > 50 THEN 'degraded' ELSE 'ok' END,
           jsonb_strip_nulls(jsonb_build_object(
               'window', '1 hour', 'finished', m.task_throughput, 'failed', m.error_count,
               'error_rate', m.error_rate,
               'action', CASE WHEN m.error_rate > 50
                              THEN 'More than half of the tasks that finished in the last hour failed: see tasker_slowest_tasks and the failed steps'' errors.' END))
      FROM m
    UNION ALL
    SELECT 11, 'step_error_rate', CASE WHEN m.step_error_rate > 50 THEN 'degraded' ELSE 'ok' END,
           jsonb_strip_nulls(jsonb_build_object(
               'window', '1 hour', 'attempts', m.step_throughput + m.step_error_count,
               'failed', m.step_error_count, 'error_rate', m.step_error_rate,
               'action', CASE WHEN m.step_error_rate > 50
                              THEN 'More than half of the step attempts that ended in the last hour failed: each attempt''s error is in its transition''s metadata.' END))
      FROM m)
SELECT c.check_name, c.status, c.detail
  FROM (SELECT ord, check_name, status, detail FROM checks
        UNION ALL
        SELECT 12, 'overall',
               CASE WHEN bool_or(status = 'failing') THEN 'failing'
                    WHEN bool_or(status = 'degraded') THEN 'degraded'
                    ELSE 'ok' END,
               jsonb_build_object(
                   'failing', COALESCE(jsonb_agg(check_name ORDER BY ord) FILTER (WHERE status = 'failing'), '[]'),
                   'degraded', COALESCE(jsonb_agg(check_name ORDER BY ord) FILTER (WHERE status = 'degraded'), '[]'))
          FROM checks) c
 ORDER BY c.ord
$$;
COMMENT ON FUNCTION @extschema@.tasker_health() IS
    'Health checks (live, ready, extension_version, workers, caught_up, oldest_ready_step, stuck_leases, quarantined_steps, connections, task_error_rate, step_error_rate) and overall: ok, degraded or failing, each with its detail and, when not ok, the action to take';

/*
 * tasker_require_task: raise for a NULL or unknown task id, with the
 * message, detail and hint of the C API (src/state.c).  Internal (not
 * granted); the readers call it as the owner.
 */
CREATE FUNCTION @extschema@.tasker_require_task(task_id bigint)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF task_id IS NULL THEN
        RAISE EXCEPTION 'task_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The function reads one task, named by its id.',
                  HINT = 'Pass the id tasker_create_task returned.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tasker_tasks t WHERE t.task_id = $1) THEN
        RAISE EXCEPTION 'task % does not exist', task_id
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'No row of tasker_tasks has that id.',
                  HINT = 'Look it up in tasker_tasks.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_require_task(bigint) IS
    'Internal: raise 22004 for a NULL task id and 42704 for an unknown one (the argument check of the task readers)';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_require_task(bigint) FROM PUBLIC;

/*
 * tasker_task_summary: everything about one task in one jsonb value: the
 * task (with its execution context and its transitions), each step (state,
 * attempts, timings from its transitions, results or error, parents) and
 * the edges.  It shows the task's context and its steps' results, which
 * the tables' SELECT privilege guards: EXECUTE is not granted to PUBLIC.
 */
CREATE FUNCTION @extschema@.tasker_task_summary(task_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    summary jsonb;
BEGIN
    PERFORM @extschema@.tasker_require_task(task_id);
    WITH steps AS (
        SELECT s.*, n.name::text AS name, tr.first_started_at, tr.last_started_at,
               tr.last_transition_at
          FROM @extschema@.tasker_workflow_steps s
          JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
          LEFT JOIN LATERAL (
                SELECT min(x.created_at) FILTER (WHERE x.to_state = 'in_progress') AS first_started_at,
                       max(x.created_at) FILTER (WHERE x.to_state = 'in_progress') AS last_started_at,
                       max(x.created_at) AS last_transition_at
                  FROM @extschema@.tasker_workflow_step_transitions x
                 WHERE x.workflow_step_id = s.workflow_step_id) tr ON true
         WHERE s.task_id = $1 AND s.map_parent_id IS NULL),
    edges AS (
        SELECT e.from_step_id, e.to_step_id, p.name AS parent, c.name AS child
          FROM @extschema@.tasker_workflow_step_edges e
          JOIN steps p ON p.workflow_step_id = e.from_step_id
          JOIN steps c ON c.workflow_step_id = e.to_step_id
         WHERE e.task_id = $1)
    SELECT jsonb_build_object(
               'task_id', t.task_id, 'name', nt.name, 'namespace', ns.name,
               'version', nt.version, 'owner', pg_catalog.pg_get_userbyid(nt.owner),
               'state', t.current_state, 'complete', t.complete,
               'context', t.context, 'tags', t.tags, 'bypass_steps', t.bypass_steps,
               'initiator', t.initiator, 'source_system', t.source_system, 'reason', t.reason,
               'requested_at', t.requested_at, 'created_at', t.created_at,
               'started_at', (SELECT min(x.created_at) FROM @extschema@.tasker_task_transitions x
                               WHERE x.task_id = t.task_id AND x.to_state = 'in_progress'),
               'completed_at', t.completed_at,
               'execution', (SELECT to_jsonb(c) - 'task_id' - 'named_task_id' - 'status'
                               FROM @extschema@.tasker_task_execution_context(t.task_id) c),
               'transitions', COALESCE((
                    SELECT jsonb_agg(jsonb_build_object(
                               'from_state', x.from_state, 'to_state', x.to_state,
                               'at', x.created_at, 'metadata', x.metadata) ORDER BY x.sort_key)
                      FROM @extschema@.tasker_task_transitions x
                     WHERE x.task_id = t.task_id), '[]'),
               'steps', COALESCE((
                    SELECT jsonb_agg(jsonb_build_object(
                               'step_id', s.workflow_step_id, 'name', s.name,
                               'state', s.current_state, 'attempts', s.attempts,
                               'retry_limit', s.retry_limit, 'retryable', s.retryable,
                               'handler_kind', s.handler_kind,
                               'step_type', s.step_type,
                               'waiting_for', r.waiting_for,
                               'waiting_detail', r.waiting_detail,
                               'map_instances', CASE WHEN s.step_type = 'map' THEN (
                                    SELECT jsonb_object_agg(i.state, i.n)
                                      FROM (SELECT current_state::text AS state, count(*) AS n
                                              FROM @extschema@.tasker_workflow_steps
                                             WHERE map_parent_id = s.workflow_step_id
                                             GROUP BY 1) i) END,
                               'parents', COALESCE((SELECT jsonb_agg(e.parent ORDER BY e.parent COLLATE "C")
                                                      FROM edges e
                                                     WHERE e.to_step_id = s.workflow_step_id), '[]'),
                               'created_at', s.created_at,
                               'started_at', s.first_started_at,
                               'last_attempted_at', s.last_attempted_at,
                               'finished_at', CASE WHEN s.current_state IN ('complete', 'resolved_manually',
                                                                            'error', 'cancelled', 'skipped')
                                                   THEN s.last_transition_at END,
                               'run_seconds', CASE WHEN s.current_state = 'complete'
                                                   THEN round(extract(epoch FROM s.last_transition_at
                                                                      - s.last_started_at), 3) END,
                               'next_attempt_at', s.next_attempt_at,
                               'results', CASE WHEN s.current_state IN ('complete', 'resolved_manually')
                                               THEN s.results END,
                               'error', CASE WHEN s.current_state = 'error'
                                             THEN s.results->'error' END)
                           ORDER BY s.workflow_step_id)
                      FROM steps s
                      LEFT JOIN @extschema@.tasker_step_readiness_status($1) r
                             ON r.workflow_step_id = s.workflow_step_id), '[]'),
               'paused', CASE WHEN t.paused_at IS NOT NULL THEN jsonb_build_object(
                             'at', t.paused_at, 'by', t.paused_by, 'reason', t.pause_reason) END,
               'parent_step_id', t.parent_step_id,
               'children', COALESCE((
                    SELECT jsonb_agg(jsonb_build_object('task_id', c.task_id, 'state', c.current_state,
                                                        'step', s.name) ORDER BY c.task_id)
                      FROM steps s
                      JOIN @extschema@.tasker_tasks c ON c.parent_step_id = s.workflow_step_id), '[]'),
               'edges', COALESCE((SELECT jsonb_agg(jsonb_build_object('from', e.parent, 'to', e.child)
                                                   ORDER BY e.parent COLLATE "C", e.child COLLATE "C")
                                    FROM edges e), '[]'))
      INTO summary
      FROM @extschema@.tasker_tasks t
      JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     WHERE t.task_id = $1;
    RETURN summary;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_task_summary(bigint) IS
    'One task as jsonb: the task (context, execution context, transitions, pause, parent step, child tasks), each step (state, attempts, timings, results or error, parents, what it waits for, a map step''s instances by state) and the edges; raises 42704 for an unknown id';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_task_summary(bigint) FROM PUBLIC;

/*
 * tasker_render_diagram: a graph as Mermaid flowchart or Graphviz DOT
 * text.  nodes is an array of {"key", "label": [lines], "class"}, edges an
 * array of {"from", "to"} keys, styles an array of {"class", "fill",
 * "stroke", "color"}; the output follows the order of the arrays, so it is
 * as deterministic as they are.  Node ids are s1, s2, ... by position, and
 * labels are escaped for each format (no user text can break the syntax).
 * The two diagram functions build their graphs and call it.
 */
CREATE FUNCTION @extschema@.tasker_render_diagram(title text, nodes jsonb, edges jsonb,
                                                  styles jsonb DEFAULT '[]',
                                                  format text DEFAULT 'mermaid')
RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fmt text := lower(btrim(format));
    out text;
BEGIN
    IF format IS NULL THEN
        RAISE EXCEPTION 'diagram format must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The format names the text to produce.',
                  HINT = 'Use one of: mermaid, dot.';
    END IF;
    IF fmt NOT IN ('mermaid', 'dot') THEN
        RAISE EXCEPTION 'unknown diagram format "%"', format
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'tasker draws Mermaid flowcharts and Graphviz DOT graphs.',
                  HINT = 'Use one of: mermaid, dot.';
    END IF;
    IF jsonb_typeof(nodes) IS DISTINCT FROM 'array' OR jsonb_typeof(edges) IS DISTINCT FROM 'array'
       OR jsonb_typeof(styles) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'nodes, edges and styles must be JSON arrays'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Their types are %s, %s and %s.', COALESCE(jsonb_typeof(nodes), 'NULL'),
                                  COALESCE(jsonb_typeof(edges), 'NULL'), COALESCE(jsonb_typeof(styles), 'NULL')),
                  HINT = 'Pass nodes as [{"key": "a", "label": ["a"]}], edges as [{"from": "a", "to": "b"}] and styles as [] or [{"class": ..., "fill": ..., "stroke": ..., "color": ...}].';
    END IF;
    WITH n AS (
        SELECT x.node->>'key' AS key, 's' || x.i AS id, x.node->>'class' AS class, x.i,
               ARRAY(SELECT regexp_replace(l.line, '[[:cntrl:]]', ' ', 'g')
                       FROM jsonb_array_elements_text(
                                CASE jsonb_typeof(x.node->'label') WHEN 'array' THEN x.node->'label'
                                     ELSE jsonb_build_array(COALESCE(x.node->>'label', x.node->>'key')) END)
                            WITH ORDINALITY AS l(line, k)
                      ORDER BY l.k) AS lines
          FROM jsonb_array_elements(nodes) WITH ORDINALITY AS x(node, i)),
    e AS (
        SELECT f.id AS from_id, t.id AS to_id, x.i
          FROM jsonb_array_elements(edges) WITH ORDINALITY AS x(edge, i)
          JOIN n f ON f.key = x.edge->>'from'
          JOIN n t ON t.key = x.edge->>'to'),
    st AS (
        SELECT x.style->>'class' AS class, x.style->>'fill' AS fill,
               x.style->>'stroke' AS stroke, x.style->>'color' AS color, x.i
          FROM jsonb_array_elements(styles) WITH ORDINALITY AS x(style, i)),
    clean AS (SELECT regexp_replace(COALESCE(title, ''), '[[:cntrl:]]', ' ', 'g') AS title)
    SELECT CASE fmt
           WHEN 'mermaid' THEN concat_ws(E'\n',
               '---',
               'title: "' || replace(replace(clean.title, '\', '\\'), '"', '\"') || '"',
               '---',
               'flowchart TD',
               (SELECT string_agg('    ' || n.id || '["'
                                  || array_to_string(ARRAY(
                                         SELECT replace(replace(replace(replace(replace(line,
                                                    '#', '#35;'), '&', '#amp;'), '"', '#quot;'),
                                                    '<', '#lt;'), '>', '#gt;')
                                           FROM unnest(n.lines) WITH ORDINALITY AS u(line, k)
                                          ORDER BY u.k), '<br/>')
                                  || '"]' || COALESCE(':::' || n.class, ''), E'\n' ORDER BY n.i)
                  FROM n),
               (SELECT string_agg('    ' || e.from_id || ' --> ' || e.to_id, E'\n' ORDER BY e.i) FROM e),
               (SELECT string_agg(pg_catalog.format('    classDef %s fill:%s,stroke:%s,color:%s',
                                                    st.class, st.fill, st.stroke, st.color),
                                  E'\n' ORDER BY st.i)
                  FROM st))
           ELSE concat_ws(E'\n',
               'digraph tasker {',
               '    graph [label="' || replace(replace(clean.title, '\', '\\'), '"', '\"')
                   || '", labelloc=t, fontname="Helvetica"];',
               '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
               (SELECT string_agg('    ' || n.id || ' [label="'
                                  || array_to_string(ARRAY(
                                         SELECT replace(replace(line, '\', '\\'), '"', '\"')
                                           FROM unnest(n.lines) WITH ORDINALITY AS u(line, k)
                                          ORDER BY u.k), '\n')
                                  || '"'
                                  || CASE WHEN st.class IS NOT NULL
                                          THEN pg_catalog.format(', fillcolor="%s", color="%s", fontcolor="%s"',
                                                                 st.fill, st.stroke, st.color)
                                          ELSE '' END
                                  || '];', E'\n' ORDER BY n.i)
                  FROM n LEFT JOIN st ON st.class = n.class),
               (SELECT string_agg('    ' || e.from_id || ' -> ' || e.to_id || ';', E'\n' ORDER BY e.i) FROM e),
               '}')
           END || E'\n'
      INTO out
      FROM clean;
    RETURN out;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_render_diagram(text, jsonb, jsonb, jsonb, text) IS
    'Draw a graph given as JSON (nodes with labels and classes, edges, class styles) as a Mermaid flowchart or Graphviz DOT text; the task and template diagrams use it';

/*
 * tasker_state_styles: the colour of each state in the task diagrams, in
 * state order.  Internal.
 */
CREATE FUNCTION @extschema@.tasker_state_styles()
RETURNS jsonb
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '[{"class": "pending", "fill": "#f5f5f5", "stroke": "#9e9e9e", "color": "#212121"},
             {"class": "in_progress", "fill": "#e3f2fd", "stroke": "#1e88e5", "color": "#0d47a1"},
             {"class": "complete", "fill": "#e8f5e9", "stroke": "#43a047", "color": "#1b5e20"},
             {"class": "error", "fill": "#ffebee", "stroke": "#e53935", "color": "#b71c1c"},
             {"class": "cancelled", "fill": "#eceff1", "stroke": "#546e7a", "color": "#37474f"},
             {"class": "resolved_manually", "fill": "#fff8e1", "stroke": "#f9a825", "color": "#5d4037"},
             {"class": "skipped", "fill": "#fafafa", "stroke": "#bdbdbd", "color": "#9e9e9e"}]'::jsonb
$$;
COMMENT ON FUNCTION @extschema@.tasker_state_styles() IS
    'Internal: the fill, stroke and text colours of each state in tasker_task_diagram';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_state_styles() FROM PUBLIC;

/*
 * tasker_task_diagram: the live task, each step with its name, state and
 * attempts, coloured by state, a map step with its instances summarised
 * (map instances are not drawn one by one); steps in name order, edges in
 * (parent, child) name order.
 */
CREATE FUNCTION @extschema@.tasker_task_diagram(task_id bigint, format text DEFAULT 'mermaid')
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    title text;
    nodes jsonb;
    edges jsonb;
BEGIN
    PERFORM @extschema@.tasker_require_task(task_id);
    SELECT pg_catalog.format('%s %s (%s): %s', nt.name, nt.version, ns.name, t.current_state)
      INTO title
      FROM @extschema@.tasker_tasks t
      JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     WHERE t.task_id = $1;
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'key', s.workflow_step_id::text,
               'label', jsonb_build_array(n.name,
                            pg_catalog.format('%s, %s/%s attempts', s.current_state, s.attempts,
                                              GREATEST(s.retry_limit, 1)))
                        || CASE WHEN s.step_type = 'map' THEN jsonb_build_array((
                               SELECT pg_catalog.format('map: %s of %s complete',
                                          count(*) FILTER (WHERE i.current_state = 'complete'), count(*))
                                 FROM @extschema@.tasker_workflow_steps i
                                WHERE i.map_parent_id = s.workflow_step_id))
                           ELSE '[]'::jsonb END,
               'class', s.current_state) ORDER BY n.name COLLATE "C", s.workflow_step_id), '[]')
      INTO nodes
      FROM @extschema@.tasker_workflow_steps s
      JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
     WHERE s.task_id = $1 AND s.map_parent_id IS NULL;
    SELECT COALESCE(jsonb_agg(jsonb_build_object('from', e.from_step_id::text, 'to', e.to_step_id::text)
                              ORDER BY pn.name COLLATE "C", cn.name COLLATE "C"), '[]')
      INTO edges
      FROM @extschema@.tasker_workflow_step_edges e
      JOIN @extschema@.tasker_workflow_steps p ON p.workflow_step_id = e.from_step_id
      JOIN @extschema@.tasker_named_steps pn ON pn.named_step_id = p.named_step_id
      JOIN @extschema@.tasker_workflow_steps c ON c.workflow_step_id = e.to_step_id
      JOIN @extschema@.tasker_named_steps cn ON cn.named_step_id = c.named_step_id
     WHERE e.task_id = $1;
    RETURN @extschema@.tasker_render_diagram(title, nodes, edges,
                                             @extschema@.tasker_state_styles(), format);
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_task_diagram(bigint, text) IS
    'The live task as a Mermaid flowchart (format ''mermaid'', the default) or Graphviz DOT (''dot''): each step with its name, state and attempts, coloured by state';

/*
 * tasker_template_for: the named_task_id of a template, where a NULL
 * version picks the one tasker_create_task would: releases over
 * pre-releases, then the highest semantic version (pre-release identifiers
 * are compared as text here, by the semver rules in C).  Raises as
 * tasker_create_task does for an unknown name or version.  Internal.
 */
CREATE FUNCTION @extschema@.tasker_template_for(task_name text, namespace text, version text)
RETURNS integer
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found integer;
    listed text;
BEGIN
    IF task_name IS NULL OR namespace IS NULL THEN
        RAISE EXCEPTION 'task_name and namespace must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'A template is named by its namespace, name and version.',
                  HINT = 'Pass the name and namespace of a registered template (SELECT namespace, name, version FROM tasker_templates).';
    END IF;
    SELECT nt.named_task_id INTO found
      FROM @extschema@.tasker_named_tasks nt
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
      CROSS JOIN LATERAL (
            SELECT regexp_match(nt.version, '^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?') AS v) p
     WHERE ns.name = $2 AND nt.name = $1
       AND ($3 IS NULL OR nt.version = $3)
     ORDER BY p.v[4] IS NULL DESC, p.v[1]::numeric DESC, p.v[2]::numeric DESC,
              p.v[3]::numeric DESC, p.v[4] DESC, nt.named_task_id DESC
     LIMIT 1;
    IF found IS NOT NULL THEN
        RETURN found;
    END IF;
    SELECT string_agg(nt.version, ', ' ORDER BY nt.named_task_id) INTO listed
      FROM @extschema@.tasker_named_tasks nt
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     WHERE ns.name = $2 AND nt.name = $1;
    IF listed IS NOT NULL THEN
        RAISE EXCEPTION 'task template "%.%" has no version "%"', namespace, task_name, version
            USING ERRCODE = 'undefined_object',
                  DETAIL = pg_catalog.format('Registered versions: %s.', listed),
                  HINT = 'Pass one of the registered versions, or NULL for the highest.';
    END IF;
    SELECT string_agg(DISTINCT nt.name, ', ' ORDER BY nt.name) INTO listed
      FROM @extschema@.tasker_named_tasks nt
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     WHERE ns.name = $2;
    RAISE EXCEPTION 'task template "%" does not exist in namespace "%"', task_name, namespace
        USING ERRCODE = 'undefined_object',
              DETAIL = CASE WHEN listed IS NULL
                            THEN pg_catalog.format('Namespace "%s" has no templates.', namespace)
                            ELSE pg_catalog.format('Templates in namespace "%s": %s.', namespace, listed) END,
              HINT = 'Register the template with tasker_register_template first.';
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_template_for(text, text, text) IS
    'Internal: the named_task_id of a template by namespace, name and version (NULL: the version tasker_create_task would pick), or the error tasker_create_task raises';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_template_for(text, text, text) FROM PUBLIC;

/*
 * tasker_template_diagram: a registered template's steps and
 * dependencies, each step with its handler, coloured by handler kind.
 */
CREATE FUNCTION @extschema@.tasker_template_diagram(task_name text, namespace text DEFAULT 'default',
                                                    version text DEFAULT NULL,
                                                    format text DEFAULT 'mermaid')
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tmpl_id integer := @extschema@.tasker_template_for(task_name, namespace, version);
    title text;
    nodes jsonb;
    edges jsonb;
BEGIN
    SELECT pg_catalog.format('%s %s (%s): template', nt.name, nt.version, ns.name)
      INTO title
      FROM @extschema@.tasker_named_tasks nt
      JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
     WHERE nt.named_task_id = tmpl_id;
    WITH st AS (
        SELECT n.name::text AS name, x.depends_on,
               CASE lower(x.handler_config->>'type') WHEN 'api' THEN 'api'
                    WHEN 'worker' THEN 'worker' ELSE 'sql' END AS kind,
               x.handler_class, x.handler_function, x.handler_config
          FROM @extschema@.tasker_named_tasks_named_steps x
          JOIN @extschema@.tasker_named_steps n ON n.named_step_id = x.named_step_id
         WHERE x.named_task_id = tmpl_id)
    SELECT COALESCE((SELECT jsonb_agg(jsonb_build_object(
                         'key', st.name,
                         'label', jsonb_build_array(st.name,
                                      CASE st.kind
                                           WHEN 'api' THEN 'api ' || upper(COALESCE(st.handler_config->>'method', 'GET'))
                                           WHEN 'worker' THEN 'worker ' || COALESCE(st.handler_config->>'queue', st.handler_class, '')
                                           ELSE COALESCE(st.handler_class, st.handler_function::text, '') END),
                         'class', st.kind) ORDER BY st.name COLLATE "C")
                       FROM st), '[]'),
           COALESCE((SELECT jsonb_agg(jsonb_build_object('from', d.parent, 'to', st.name)
                                      ORDER BY d.parent COLLATE "C", st.name COLLATE "C")
                       FROM st CROSS JOIN LATERAL unnest(st.depends_on) AS d(parent)), '[]')
      INTO nodes, edges;
    RETURN @extschema@.tasker_render_diagram(title, nodes, edges,
        '[{"class": "sql", "fill": "#e3f2fd", "stroke": "#1e88e5", "color": "#0d47a1"},
          {"class": "api", "fill": "#f3e5f5", "stroke": "#8e24aa", "color": "#4a148c"},
          {"class": "worker", "fill": "#e0f2f1", "stroke": "#00897b", "color": "#004d40"}]',
        format);
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_template_diagram(text, text, text, text) IS
    'A registered template as a Mermaid flowchart (format ''mermaid'', the default) or Graphviz DOT (''dot''): each step with its handler, coloured by handler kind; version NULL picks the version tasker_create_task would';

/*
 * tasker_bottleneck_config: the settings of the bottleneck analysis, the
 * Ruby engine's dependency_graph configuration with its defaults (Ruby
 * developer guide, section 7), with the given overrides merged in.  An
 * unknown group or key, a value that is not a non-negative number, or
 * severity thresholds out of order raise 22023.
 */
CREATE FUNCTION @extschema@.tasker_bottleneck_config(config jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    defaults CONSTANT jsonb := '{
        "impact_multipliers": {"downstream_weight": 5, "blocked_weight": 15, "path_length_weight": 10,
                               "completed_penalty": 15, "blocked_penalty": 25, "error_penalty": 30,
                               "retry_penalty": 10},
        "severity_multipliers": {"error_state": 2.0, "exhausted_retry_bonus": 0.5, "dependency_issue": 1.2},
        "penalty_constants": {"retry_instability": 3, "non_retryable": 10, "exhausted_retry": 20},
        "severity_thresholds": {"critical": 100, "high": 50, "medium": 20},
        "duration_estimates": {"base_step_seconds": 30, "error_penalty_seconds": 60,
                               "retry_penalty_seconds": 30}}';
    merged jsonb := defaults;
    grp text;
    settings jsonb;
    key text;
    val jsonb;
BEGIN
    IF config IS NULL THEN
        RAISE EXCEPTION 'config must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'config holds the settings that differ from the defaults.',
                  HINT = 'Pass ''{}'' for the defaults.';
    END IF;
    IF jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'config must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The config given is %s.', left(config::text, 100)),
                  HINT = 'Write it as ''{"impact_multipliers": {"blocked_weight": 20}}''.';
    END IF;
    FOR grp, settings IN SELECT g.key, g.value FROM jsonb_each(config) g ORDER BY g.key LOOP
        IF NOT defaults ? grp THEN
            RAISE EXCEPTION 'unknown bottleneck setting group "%"', grp
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The groups are impact_multipliers, severity_multipliers, penalty_constants, severity_thresholds and duration_estimates, as in the Ruby engine''s dependency_graph configuration.',
                      HINT = 'Write settings by group, as ''{"impact_multipliers": {"blocked_weight": 20}}''.';
        END IF;
        IF jsonb_typeof(settings) <> 'object' THEN
            RAISE EXCEPTION 'bottleneck setting group "%" must be a JSON object', grp
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = pg_catalog.format('The value given is %s.', left(settings::text, 100)),
                      HINT = pg_catalog.format('Its keys are %s.',
                                               (SELECT string_agg(k, ', ' ORDER BY k)
                                                  FROM jsonb_object_keys(defaults->grp) k));
        END IF;
        FOR key, val IN SELECT s.key, s.value FROM jsonb_each(settings) s ORDER BY s.key LOOP
            IF NOT defaults->grp ? key THEN
                RAISE EXCEPTION 'unknown bottleneck setting "%.%"', grp, key
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = pg_catalog.format('The keys of %s are %s.', grp,
                                                     (SELECT string_agg(k, ', ' ORDER BY k)
                                                        FROM jsonb_object_keys(defaults->grp) k)),
                          HINT = 'Leave out the settings that keep their default.';
            END IF;
            IF jsonb_typeof(val) <> 'number' OR val::text::numeric < 0 THEN
                RAISE EXCEPTION 'bottleneck setting "%.%" must be a non-negative number', grp, key
                    USING ERRCODE = 'invalid_parameter_value',
                          DETAIL = pg_catalog.format('The value given is %s.', left(val::text, 100)),
                          HINT = pg_catalog.format('The default is %s.', defaults->grp->key);
            END IF;
        END LOOP;
        merged := jsonb_set(merged, ARRAY[grp], (defaults->grp) || settings);
    END LOOP;
    IF NOT ((merged #>> '{severity_thresholds,critical}')::numeric
                >= (merged #>> '{severity_thresholds,high}')::numeric
            AND (merged #>> '{severity_thresholds,high}')::numeric
                >= (merged #>> '{severity_thresholds,medium}')::numeric) THEN
        RAISE EXCEPTION 'severity thresholds must not decrease from critical to high to medium'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The thresholds would be %s.', merged->'severity_thresholds'),
                  HINT = 'A score at or above critical is Critical, at or above high is High, at or above medium is Medium.';
    END IF;
    RETURN merged;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_bottleneck_config(jsonb) IS
    'The settings of tasker_task_bottlenecks and tasker_critical_path: the Ruby dependency_graph defaults with the given overrides (by group) merged in; raises 22023 for an unknown group or key or a bad value';

/*
 * tasker_task_graph: the runtime graph analysis of one task, per step, in
 * one pass over its steps in reverse topological order (children before
 * parents, by tasker_step_depths' levels), so its cost is linear in the
 * task's steps and edges, plus the set of descendants of each step (a
 * recursive union, at most steps x steps pairs).  It is what
 * tasker_task_bottlenecks and tasker_critical_path read:
 *   downstream_count     steps that depend on the step, directly or not
 *   blocked_count        of those, the ones whose dependencies are not
 *                        satisfied now
 *   critical_path_length steps on the longest chain from the step to a leaf,
 *                        the step included; next_step_id is the next step of
 *                        that chain (ties: the lower name)
 *   path_*               that chain's finished steps, steps waiting on a
 *                        parent, steps in error or cancelled, and steps in
 *                        error with a retry to come
 *   duration_seconds     observed (first start to finish) for a finished
 *                        step, else estimated from duration_estimates
 *   longest_seconds      the largest total duration of a chain from the step
 *                        to a leaf; longest_next_step_id is its next step
 *                        (ties: more steps, then the lower name)
 */
CREATE FUNCTION @extschema@.tasker_task_graph(task_id bigint, config jsonb DEFAULT '{}')
RETURNS TABLE (workflow_step_id bigint, step_name text, current_state text,
               attempts integer, retry_limit integer, retryable boolean,
               retry_scheduled boolean, dependencies_satisfied boolean,
               dependency_level integer, is_root boolean,
               downstream_count integer, blocked_count integer,
               critical_path_length integer, next_step_id bigint,
               path_completed integer, path_blocked integer, path_error integer,
               path_retry integer, duration_seconds numeric, duration_source text,
               longest_seconds numeric, longest_steps integer, longest_next_step_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    est jsonb := @extschema@.tasker_bottleneck_config(config)->'duration_estimates';
    ids bigint[]; names text[]; states text[]; atts integer[]; lims integer[];
    retr boolean[]; sched boolean[]; sat boolean[]; lvls integer[]; roots boolean[];
    down integer[]; blk integer[]; durs numeric[]; srcs text[];
    kids integer[]; firsts integer[]; counts integer[];
    height integer[]; nxt integer[]; pc integer[]; pb integer[]; pe integer[]; pr integer[];
    wl numeric[]; wsteps integer[]; wn integer[];
    total integer; p integer; k integer; c integer; best integer; wbest integer;
BEGIN
    PERFORM @extschema@.tasker_require_task($1);
    WITH RECURSIVE
    depth AS (SELECT d.workflow_step_id AS id, COALESCE(d.dependency_level, 0) AS lvl
                FROM @extschema@.tasker_step_depths($1) d),
    st AS (
        SELECT s.workflow_step_id AS id, n.name::text AS name, s.current_state::text AS state,
               s.attempts, s.retry_limit, s.retryable,
               s.current_state = 'error' AND s.next_attempt_at IS NOT NULL AS sched,
               NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_step_edges e
                             JOIN @extschema@.tasker_workflow_steps ps ON ps.workflow_step_id = e.from_step_id
                            WHERE e.to_step_id = s.workflow_step_id
                              AND ps.current_state NOT IN ('complete', 'resolved_manually')) AS sat,
               NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_step_edges e
                            WHERE e.to_step_id = s.workflow_step_id) AS root,
               depth.lvl, tr.first_started_at, tr.finished_at
          FROM @extschema@.tasker_workflow_steps s
          JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
          JOIN depth ON depth.id = s.workflow_step_id
          LEFT JOIN LATERAL (
                SELECT min(x.created_at) FILTER (WHERE x.to_state = 'in_progress') AS first_started_at,
                       max(x.created_at) FILTER (WHERE x.most_recent) AS finished_at
                  FROM @extschema@.tasker_workflow_step_transitions x
                 WHERE x.workflow_step_id = s.workflow_step_id) tr ON true
         WHERE s.task_id = $1),
    ordered AS (
        SELECT st.*, row_number() OVER (ORDER BY st.lvl DESC, st.name COLLATE "C", st.id)::integer AS pos
          FROM st),
    task_edges AS MATERIALIZED (
        SELECT e.from_step_id, e.to_step_id
          FROM @extschema@.tasker_workflow_step_edges e WHERE e.task_id = $1),
    reach(anc, des) AS (
        SELECT e.from_step_id, e.to_step_id FROM task_edges e
        UNION
        SELECT r.anc, e.to_step_id FROM reach r JOIN task_edges e ON e.from_step_id = r.des),
    downstream AS (
        SELECT r.anc AS id, count(*)::integer AS down,
               count(*) FILTER (WHERE NOT d.sat)::integer AS blocked
          FROM reach r JOIN st d ON d.id = r.des
         GROUP BY r.anc),
    edge_pos AS (
        SELECT f.pos AS fpos, t.pos AS tpos
          FROM task_edges e
          JOIN ordered f ON f.id = e.from_step_id
          JOIN ordered t ON t.id = e.to_step_id),
    out_edges AS (
        SELECT o.id, COALESCE(c.n, 0) AS n,
               (sum(COALESCE(c.n, 0)) OVER (ORDER BY o.pos) - COALESCE(c.n, 0) + 1)::integer AS first_edge
          FROM ordered o
          LEFT JOIN (SELECT x.fpos, count(*)::integer AS n FROM edge_pos x GROUP BY x.fpos) c
                 ON c.fpos = o.pos),
    per_step AS (
        SELECT o.*, COALESCE(ds.down, 0) AS down, COALESCE(ds.blocked, 0) AS blocked,
               oe.first_edge, oe.n AS edge_count,
               CASE WHEN o.state IN ('complete', 'resolved_manually') AND o.first_started_at IS NOT NULL
                    THEN round(extract(epoch FROM o.finished_at - o.first_started_at), 3)
                    WHEN o.state = 'resolved_manually' THEN 0.000
                    ELSE round((est->>'base_step_seconds')::numeric
                               + CASE WHEN o.state = 'error' THEN (est->>'error_penalty_seconds')::numeric ELSE 0 END
                               + (est->>'retry_penalty_seconds')::numeric * GREATEST(o.attempts - 1, 0), 3) END AS dur,
               CASE WHEN o.state IN ('complete', 'resolved_manually')
                         AND (o.first_started_at IS NOT NULL OR o.state = 'resolved_manually')
                    THEN 'observed' ELSE 'estimated' END AS src
          FROM ordered o
          JOIN out_edges oe ON oe.id = o.id
          LEFT JOIN downstream ds ON ds.id = o.id)
    SELECT array_agg(x.id ORDER BY x.pos), array_agg(x.name ORDER BY x.pos),
           array_agg(x.state ORDER BY x.pos), array_agg(x.attempts ORDER BY x.pos),
           array_agg(x.retry_limit ORDER BY x.pos), array_agg(x.retryable ORDER BY x.pos),
           array_agg(x.sched ORDER BY x.pos), array_agg(x.sat ORDER BY x.pos),
           array_agg(x.lvl ORDER BY x.pos), array_agg(x.root ORDER BY x.pos),
           array_agg(x.down ORDER BY x.pos), array_agg(x.blocked ORDER BY x.pos),
           array_agg(x.dur ORDER BY x.pos), array_agg(x.src ORDER BY x.pos),
           array_agg(x.first_edge ORDER BY x.pos), array_agg(x.edge_count ORDER BY x.pos),
           (SELECT array_agg(y.tpos ORDER BY y.fpos, y.tpos) FROM edge_pos y),
           count(*)
      INTO ids, names, states, atts, lims, retr, sched, sat, lvls, roots, down, blk, durs, srcs,
           firsts, counts, kids, total
      FROM per_step x;

    -- Children come before their parents (a child's level is higher).
    FOR p IN 1 .. total LOOP
        best := NULL;
        wbest := NULL;
        FOR k IN firsts[p] .. firsts[p] + counts[p] - 1 LOOP
            c := kids[k];
            IF best IS NULL OR height[c] > height[best]
               OR (height[c] = height[best] AND names[c] COLLATE "C" < names[best]) THEN
                best := c;
            END IF;
            IF wbest IS NULL OR wl[c] > wl[wbest]
               OR (wl[c] = wl[wbest] AND (wsteps[c] > wsteps[wbest]
                   OR (wsteps[c] = wsteps[wbest] AND names[c] COLLATE "C" < names[wbest]))) THEN
                wbest := c;
            END IF;
        END LOOP;
        height[p] := 1 + COALESCE(height[best], 0);
        nxt[p] := best;
        pc[p] := (states[p] IN ('complete', 'resolved_manually'))::integer + COALESCE(pc[best], 0);
        pb[p] := (NOT sat[p])::integer + COALESCE(pb[best], 0);
        pe[p] := (states[p] IN ('error', 'cancelled'))::integer + COALESCE(pe[best], 0);
        pr[p] := (sched[p])::integer + COALESCE(pr[best], 0);
        wl[p] := durs[p] + COALESCE(wl[wbest], 0);
        wsteps[p] := 1 + COALESCE(wsteps[wbest], 0);
        wn[p] := wbest;
    END LOOP;

    RETURN QUERY
    SELECT ids[i], names[i], states[i], atts[i], lims[i], retr[i], sched[i], sat[i], lvls[i],
           roots[i], down[i], blk[i], height[i], ids[nxt[i]], pc[i], pb[i], pe[i], pr[i],
           durs[i], srcs[i], wl[i], wsteps[i], ids[wn[i]]
      FROM generate_series(1, total) AS i
     ORDER BY lvls[i], names[i] COLLATE "C", ids[i];
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_task_graph(bigint, jsonb) IS
    'Runtime graph analysis of one task, per step: downstream and blocked counts, the longest chain to a leaf (length, next step, its finished, waiting, failed and retrying steps), observed or estimated duration, and the longest duration to a leaf; what tasker_task_bottlenecks and tasker_critical_path read';

/*
 * tasker_task_bottlenecks: the Ruby engine's bottleneck scoring (developer
 * guide, section 7) per step of a task, worst first:
 *   base_score    = downstream_count * downstream_weight
 *                 + blocked_count * blocked_weight
 *   path_score    = critical_path_length * path_length_weight
 *   penalty_score = blocked_penalty, error_penalty and retry_penalty for each
 *                   step of the step's critical path that waits on a parent,
 *                   is in error (or cancelled), or is in error with a retry
 *                   to come, minus completed_penalty for each finished one
 *                   (the guide calls it a penalty that reduces priority),
 *                   plus the penalty constants of the step itself:
 *                   retry_instability per retry (attempt after the first),
 *                   exhausted_retry when it failed with no attempt left,
 *                   non_retryable when it failed for good otherwise
 *                   (a permanent error, a cancelled step or task)
 *   impact_score  = round((base + path + penalty) * severity_multiplier),
 *                   at least 0; severity_multiplier is error_state (plus
 *                   exhausted_retry_bonus when exhausted) for a step in
 *                   error or cancelled, dependency_issue for a pending step
 *                   waiting on a parent, else 1
 *   severity      = Critical, High, Medium or Low by severity_thresholds.
 * A finished step (complete or resolved_manually) holds nothing up: score
 * 0, severity None.
 */
CREATE FUNCTION @extschema@.tasker_task_bottlenecks(task_id bigint, config jsonb DEFAULT '{}')
RETURNS TABLE (workflow_step_id bigint, step_name text, current_state text,
               attempts integer, retry_limit integer, dependencies_satisfied boolean,
               downstream_count integer, blocked_count integer, critical_path_length integer,
               base_score numeric, path_score numeric, penalty_score numeric,
               severity_multiplier numeric, impact_score integer, severity text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH cfg AS (
        SELECT c->'impact_multipliers' AS im, c->'severity_multipliers' AS sm,
               c->'penalty_constants' AS pk, c->'severity_thresholds' AS th
          FROM @extschema@.tasker_bottleneck_config($2) AS c),
    g AS (
        SELECT g.*,
               g.current_state IN ('complete', 'resolved_manually') AS finished,
               g.current_state IN ('error', 'cancelled') AND NOT g.retry_scheduled AS failed,
               g.current_state = 'error' AND NOT g.retry_scheduled
                   AND g.attempts >= GREATEST(g.retry_limit, 1) AS exhausted
          FROM @extschema@.tasker_task_graph($1, $2) g),
    parts AS (
        SELECT g.*,
               g.downstream_count * (cfg.im->>'downstream_weight')::numeric
                 + g.blocked_count * (cfg.im->>'blocked_weight')::numeric AS base,
               g.critical_path_length * (cfg.im->>'path_length_weight')::numeric AS path,
               g.path_blocked * (cfg.im->>'blocked_penalty')::numeric
                 + g.path_error * (cfg.im->>'error_penalty')::numeric
                 + g.path_retry * (cfg.im->>'retry_penalty')::numeric
                 - g.path_completed * (cfg.im->>'completed_penalty')::numeric
                 + GREATEST(g.attempts - 1, 0) * (cfg.pk->>'retry_instability')::numeric
                 + CASE WHEN g.exhausted THEN (cfg.pk->>'exhausted_retry')::numeric
                        WHEN g.failed THEN (cfg.pk->>'non_retryable')::numeric
                        ELSE 0 END AS penalty,
               CASE WHEN g.current_state IN ('error', 'cancelled')
                    THEN (cfg.sm->>'error_state')::numeric
                         + CASE WHEN g.exhausted THEN (cfg.sm->>'exhausted_retry_bonus')::numeric ELSE 0 END
                    WHEN g.current_state = 'pending' AND NOT g.dependencies_satisfied
                    THEN (cfg.sm->>'dependency_issue')::numeric
                    ELSE 1 END AS multiplier
          FROM g, cfg),
    scored AS (
        SELECT p.*,
               CASE WHEN p.finished THEN 0
                    ELSE round(GREATEST(0, (p.base + p.path + p.penalty) * p.multiplier))::integer END AS score
          FROM parts p)
    SELECT s.workflow_step_id, s.step_name, s.current_state, s.attempts, s.retry_limit,
           s.dependencies_satisfied, s.downstream_count, s.blocked_count, s.critical_path_length,
           s.base, s.path, s.penalty, round(s.multiplier, 2), s.score,
           CASE WHEN s.finished THEN 'None'
                WHEN s.score >= (cfg.th->>'critical')::numeric THEN 'Critical'
                WHEN s.score >= (cfg.th->>'high')::numeric THEN 'High'
                WHEN s.score >= (cfg.th->>'medium')::numeric THEN 'Medium'
                ELSE 'Low' END
      FROM scored s, cfg
     ORDER BY s.score DESC, s.step_name COLLATE "C", s.workflow_step_id
$$;
COMMENT ON FUNCTION @extschema@.tasker_task_bottlenecks(bigint, jsonb) IS
    'Each step of a task scored as a bottleneck with the Ruby engine''s formula and defaults (overridable through config): downstream and blocked counts, critical-path length, the parts of the score, impact score and severity, worst first';

/*
 * tasker_critical_path: the chain of steps from a root to a leaf with the
 * largest total duration (ties: more steps, then lower names), in order,
 * each step with its duration (observed from its first start to its finish
 * for a finished step, estimated from config's duration_estimates
 * otherwise) and the running total.
 */
CREATE FUNCTION @extschema@.tasker_critical_path(task_id bigint, config jsonb DEFAULT '{}')
RETURNS TABLE (path_position integer, workflow_step_id bigint, step_name text,
               current_state text, attempts integer, duration_seconds numeric,
               duration_source text, cumulative_seconds numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE
    g AS (SELECT * FROM @extschema@.tasker_task_graph($1, $2)),
    chain(pos, id, total) AS (
        SELECT 1, s.workflow_step_id, s.duration_seconds
          FROM (SELECT g.workflow_step_id, g.duration_seconds
                  FROM g WHERE g.is_root
                 ORDER BY g.longest_seconds DESC, g.longest_steps DESC,
                          g.step_name COLLATE "C", g.workflow_step_id
                 LIMIT 1) s
        UNION ALL
        SELECT c.pos + 1, nx.workflow_step_id, c.total + nx.duration_seconds
          FROM chain c
          JOIN g cur ON cur.workflow_step_id = c.id
          JOIN g nx ON nx.workflow_step_id = cur.longest_next_step_id)
    SELECT c.pos, g.workflow_step_id, g.step_name, g.current_state, g.attempts,
           g.duration_seconds, g.duration_source, c.total
      FROM chain c JOIN g ON g.workflow_step_id = c.id
     ORDER BY c.pos
$$;
COMMENT ON FUNCTION @extschema@.tasker_critical_path(bigint, jsonb) IS
    'The longest chain of a task''s steps by duration, in order: each step''s duration (observed for a finished step, estimated from config''s duration_estimates otherwise) and the running total';

/* ---- issue 11: pausing and resuming tasks and namespaces (src/pause.c) ---- */

/*
 * A paused task's steps are not claimed, by any handler kind: the claim
 * skips a task whose paused_at is set, and its ready steps are taken out
 * of the ready index (their due time kept in held_next_attempt_at) so
 * that claims do not scan them.  A task of a paused namespace is paused
 * with paused_by = 'namespace', and so is a task created in one.
 */
ALTER TABLE tasker_tasks
    ADD COLUMN paused_at timestamptz,
    ADD COLUMN pause_reason text,
    ADD COLUMN paused_by text CHECK (paused_by IN ('task', 'namespace')),
    ADD CONSTRAINT tasker_tasks_paused_by CHECK ((paused_at IS NULL) = (paused_by IS NULL));
COMMENT ON COLUMN tasker_tasks.paused_at IS
    'When the task was paused (tasker_pause_task, or its namespace''s pause); NULL when it runs';
ALTER TABLE tasker_task_namespaces ADD COLUMN paused_at timestamptz;
COMMENT ON COLUMN tasker_task_namespaces.paused_at IS
    'When the namespace was paused (tasker_pause_namespace); NULL when it runs';
ALTER TABLE tasker_workflow_steps ADD COLUMN held_next_attempt_at timestamptz;
COMMENT ON COLUMN tasker_workflow_steps.held_next_attempt_at IS
    'While the step''s task is paused: when the step was due (next_attempt_at is NULL meanwhile)';

/* Every pause and resume, with who and why. */
CREATE TABLE tasker_pause_log (
    pause_log_id bigserial PRIMARY KEY,
    task_id      bigint REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    namespace    text,
    action       text NOT NULL CHECK (action IN ('paused', 'resumed')),
    reason       text,
    tasks        integer NOT NULL DEFAULT 1,
    by_role      name NOT NULL DEFAULT session_user,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX tasker_pause_log_task_idx ON tasker_pause_log (task_id) WHERE task_id IS NOT NULL;
COMMENT ON TABLE tasker_pause_log IS
    'The audit of tasker_pause_task, tasker_resume_task, tasker_pause_namespace and tasker_resume_namespace';

CREATE FUNCTION tasker_pause_task(task_id bigint, reason text DEFAULT NULL)
RETURNS boolean LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tasker_pause_task_sql';
COMMENT ON FUNCTION tasker_pause_task(bigint, text) IS
    'Stop claiming the task''s steps (running ones finish and are recorded); false when it is already paused or finished';
CREATE FUNCTION tasker_resume_task(task_id bigint)
RETURNS boolean LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tasker_resume_task_sql';
COMMENT ON FUNCTION tasker_resume_task(bigint) IS
    'Claim the paused task''s steps again; false when it was not paused';
CREATE FUNCTION tasker_pause_namespace(namespace text)
RETURNS boolean LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tasker_pause_namespace_sql';
COMMENT ON FUNCTION tasker_pause_namespace(text) IS
    'Pause every unfinished task of a namespace, and the tasks created in it until it is resumed; false when it already is paused';
CREATE FUNCTION tasker_resume_namespace(namespace text)
RETURNS boolean LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tasker_resume_namespace_sql';
COMMENT ON FUNCTION tasker_resume_namespace(text) IS
    'Resume a paused namespace and the tasks its pause held (not those paused one by one); false when it was not paused';
REVOKE ALL ON FUNCTION tasker_pause_task(bigint, text), tasker_resume_task(bigint),
    tasker_pause_namespace(text), tasker_resume_namespace(text) FROM PUBLIC;

/* ---- issue 10: dynamic workflows (src/flow.c, src/flow_rules.c) ---- */

/*
 * A new terminal step state, skipped: a decision's branch not taken, and
 * every step reachable only through such branches.  It counts as
 * finished (not failed) for readiness, the execution context and task
 * finalization.
 */
ALTER DOMAIN tasker_state DROP CONSTRAINT tasker_state_valid;
ALTER DOMAIN tasker_state ADD CONSTRAINT tasker_state_valid
    CHECK (VALUE IN ('pending', 'in_progress', 'complete', 'error',
                     'cancelled', 'resolved_manually', 'skipped'));

/*
 * A step template's dynamic rule: flow holds its type (map, decision,
 * wait, subtask) and that type's keys, as registered; delay_seconds
 * holds back the step after it is otherwise ready.
 */
ALTER TABLE tasker_named_tasks_named_steps
    ADD COLUMN flow jsonb,
    ADD COLUMN delay_seconds integer NOT NULL DEFAULT 0 CHECK (delay_seconds >= 0);
COMMENT ON COLUMN tasker_named_tasks_named_steps.flow IS
    'The step''s dynamic rule, or NULL for a plain step: {"type": "map"|"decision"|"wait"|"subtask", ...} with map_over, map_max_parallel, branches, signal, task, context_from';
COMMENT ON COLUMN tasker_named_tasks_named_steps.delay_seconds IS
    'Seconds the step waits after it is otherwise ready (delay_seconds in the YAML)';

/*
 * Steps: the lifecycle rule a step follows (step_type; NULL for a plain
 * step), its delay, and map instances: one row per element of a map
 * step's array, with the map step as map_parent_id and the element as
 * map_item.  A map step counts its unfinished instances (map_open) and
 * the next instance to release under map_max_parallel (map_next).
 * Steps whose rule the executor applies itself (map, wait, subtask) have
 * handler_kind flow; map instances have their handler's kind.
 * map_parent_id has no foreign key: an instance and its map step belong
 * to one task and go with it (task_id cascades), and a key checked for
 * each of 10,000 inserted instances would cost a third of the fan-out.
 */
ALTER TABLE tasker_workflow_steps
    DROP CONSTRAINT tasker_workflow_steps_handler_kind_check,
    ADD CONSTRAINT tasker_workflow_steps_handler_kind_check
        CHECK (handler_kind IN ('sql', 'http', 'worker', 'flow')),
    ADD COLUMN step_type text
        CHECK (step_type IN ('map', 'decision', 'wait', 'subtask')),
    ADD COLUMN delay_seconds integer NOT NULL DEFAULT 0 CHECK (delay_seconds >= 0),
    ADD COLUMN map_parent_id bigint,
    ADD COLUMN map_index integer CHECK (map_index >= 0),
    ADD COLUMN map_item jsonb,
    ADD COLUMN map_open integer CHECK (map_open >= 0),
    ADD COLUMN map_next integer CHECK (map_next >= 0),
    ADD CONSTRAINT tasker_workflow_steps_map_instance
        CHECK ((map_parent_id IS NULL) = (map_index IS NULL));
ALTER TABLE tasker_workflow_steps DROP CONSTRAINT workflow_steps_task_named_step_unique;
CREATE UNIQUE INDEX tasker_workflow_steps_task_named_step_idx
    ON tasker_workflow_steps (task_id, named_step_id) WHERE map_parent_id IS NULL;
CREATE UNIQUE INDEX tasker_workflow_steps_map_instance_idx
    ON tasker_workflow_steps (map_parent_id, map_index) WHERE map_parent_id IS NOT NULL;
COMMENT ON COLUMN tasker_workflow_steps.step_type IS
    'The dynamic rule the step follows (map, decision, wait, subtask), or NULL for a plain step';
COMMENT ON COLUMN tasker_workflow_steps.map_parent_id IS
    'For a map instance: its map step';
COMMENT ON COLUMN tasker_workflow_steps.map_item IS
    'For a map instance: its element of the mapped array (the envelope''s item)';
COMMENT ON COLUMN tasker_workflow_steps.map_open IS
    'For a map step that fanned out: its instances not yet complete';
COMMENT ON COLUMN tasker_workflow_steps.map_next IS
    'For a map step that fanned out: the index of the next instance map_max_parallel releases';

/* A subtask's child task names the step that created it. */
ALTER TABLE tasker_tasks
    ADD COLUMN parent_step_id bigint
        REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE SET NULL;
CREATE INDEX tasker_tasks_parent_step_idx ON tasker_tasks (parent_step_id)
    WHERE parent_step_id IS NOT NULL;
COMMENT ON COLUMN tasker_tasks.parent_step_id IS
    'For a subtask''s child task: the subtask step of the parent task that created it';

/* Signals that arrived before their wait step was reached. */
CREATE TABLE tasker_signals (
    task_id     bigint NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    signal      text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (task_id, signal)
);
COMMENT ON TABLE tasker_signals IS
    'Signals sent with tasker_signal before the task reached its wait step; used when it does';

CREATE FUNCTION tasker_signal(task_id bigint, signal text, payload jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'tasker_signal_sql';
COMMENT ON FUNCTION tasker_signal(bigint, text, jsonb) IS
    'Complete the task''s wait step for this signal with the payload as its results (or keep the signal until the step is reached); false when the task has no such wait step or it already finished';
REVOKE ALL ON FUNCTION tasker_signal(bigint, text, jsonb) FROM PUBLIC;

/*
 * C17: tasker_check() lists every task that breaks an invariant of the
 * engine, with the way out.  Empty on a healthy installation.  skipped
 * counts as finished wherever a step's finish is counted, and a paused
 * task is not stuck: it is defined here, after the pause columns and the
 * skipped state.
 */
CREATE FUNCTION tasker_check()
RETURNS TABLE (task_id bigint, problem text, detail text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH counts AS (
        SELECT s.task_id,
               count(*) AS total,
               count(*) FILTER (WHERE s.current_state IN ('complete', 'resolved_manually', 'skipped')) AS done,
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
       AND t.paused_at IS NULL
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
              AND ps.current_state NOT IN ('complete', 'resolved_manually', 'skipped')) p
     WHERE s.unfinished_parents <> p.n
    UNION ALL
    SELECT NULL::bigint, 'state count disagrees with the table',
           format('tasker_state_counts keeps %s %s in state %s; the table has %s. Way out: SELECT tasker_recount_states();',
                  e.kept, e.entity || 's', e.state, e.actual)
      FROM @extschema@.tasker_state_count_errors() e
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION tasker_check() IS
    'Tasks that break an invariant (no way forward, state columns that disagree with the transitions, unfinished_parents that disagrees with the edges), and state counts kept for tasker_system_health that disagree with the tables (task_id NULL), each with the way out; no rows when all is well';


/*
 * Readiness reports the dynamic rules: the step's type, a map instance's
 * map step and index, and what a step waits for (waiting_for: paused,
 * signal, subtask, map_instances, delay, map_parallel_limit) with the details
 * (the signal and its deadline, the child task, the open instances, the
 * time a delay ends).  A parent that was skipped counts as finished.
 */
ALTER TYPE tasker_step_readiness
    ADD ATTRIBUTE step_type text,
    ADD ATTRIBUTE map_parent_id bigint,
    ADD ATTRIBUTE map_index integer,
    ADD ATTRIBUTE waiting_for text,
    ADD ATTRIBUTE waiting_detail jsonb;

CREATE OR REPLACE FUNCTION tasker_step_readiness_status(task_ids bigint[],
                                                        as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_step_readiness
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.workflow_step_id, s.task_id, s.named_step_id, n.name::text,
           s.current_state::text,
           p.total = p.done,
           s.attempts = 0 OR (s.retryable AND s.attempts < s.retry_limit),
           s.current_state IN ('pending', 'error')
             AND NOT s.processed AND NOT s.in_process
             AND p.total = p.done
             AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.retry_limit))
             AND s.next_attempt_at IS NOT NULL AND s.next_attempt_at <= as_of
             AND NOT pz.paused,
           lf.created_at,
           CASE WHEN s.current_state = 'error' THEN s.next_attempt_at END,
           p.total::integer, p.done::integer, s.attempts, s.retry_limit,
           s.backoff_request_seconds, s.last_attempted_at,
           s.step_type, s.map_parent_id, s.map_index, w.waiting_for, w.detail
      FROM @extschema@.tasker_workflow_steps s
      JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
     CROSS JOIN LATERAL (
           SELECT count(*) AS total,
                  count(*) FILTER (WHERE ps.current_state IN ('complete', 'resolved_manually', 'skipped')) AS done
             FROM @extschema@.tasker_workflow_step_edges e
             JOIN @extschema@.tasker_workflow_steps ps ON ps.workflow_step_id = e.from_step_id
            WHERE e.to_step_id = s.workflow_step_id) p
     CROSS JOIN LATERAL (
           SELECT t.paused_at IS NOT NULL AS paused
             FROM @extschema@.tasker_tasks t WHERE t.task_id = s.task_id) pz
     CROSS JOIN LATERAL (
           SELECT CASE
                    WHEN s.current_state IN ('pending', 'error') AND pz.paused THEN 'paused'
                    WHEN s.current_state = 'in_progress' AND s.step_type = 'wait' THEN 'signal'
                    WHEN s.current_state = 'in_progress' AND s.step_type = 'subtask' THEN 'subtask'
                    WHEN s.current_state = 'in_progress' AND s.step_type = 'map' THEN 'map_instances'
                    WHEN s.current_state = 'pending' AND s.unfinished_parents = 0
                         AND s.delay_seconds > 0 AND s.next_attempt_at > as_of THEN 'delay'
                    WHEN s.current_state = 'pending' AND s.map_parent_id IS NOT NULL
                         AND s.next_attempt_at IS NULL THEN 'map_parallel_limit'
                  END AS waiting_for,
                  CASE
                    WHEN s.current_state IN ('pending', 'error') AND pz.paused THEN
                      jsonb_build_object('due', s.held_next_attempt_at)
                    WHEN s.current_state = 'in_progress' AND s.step_type = 'wait' THEN
                      (SELECT jsonb_build_object('signal', l.flow->>'signal',
                                                 'deadline', s.lease_expires_at)
                         FROM @extschema@.tasker_tasks t
                         JOIN @extschema@.tasker_named_tasks_named_steps l
                           ON l.named_task_id = t.named_task_id AND l.named_step_id = s.named_step_id
                        WHERE t.task_id = s.task_id)
                    WHEN s.current_state = 'in_progress' AND s.step_type = 'subtask' THEN
                      (SELECT jsonb_build_object('child_task_id', c.task_id,
                                                 'child_state', c.current_state)
                         FROM @extschema@.tasker_tasks c
                        WHERE c.parent_step_id = s.workflow_step_id
                        ORDER BY c.task_id LIMIT 1)
                    WHEN s.current_state = 'in_progress' AND s.step_type = 'map' THEN
                      jsonb_build_object('open', s.map_open,
                                         'total', (SELECT count(*) FROM @extschema@.tasker_workflow_steps i
                                                    WHERE i.map_parent_id = s.workflow_step_id))
                    WHEN s.current_state = 'pending' AND s.unfinished_parents = 0
                         AND s.delay_seconds > 0 AND s.next_attempt_at > as_of THEN
                      jsonb_build_object('until', s.next_attempt_at)
                  END AS detail) w
      LEFT JOIN @extschema@.tasker_workflow_step_transitions lf
             ON lf.workflow_step_id = s.workflow_step_id AND lf.most_recent
            AND lf.to_state = 'error'
     WHERE s.task_id = ANY (task_ids)
     ORDER BY s.task_id, s.workflow_step_id
$$;

/*
 * The execution context counts skipped steps (finished, not failed) and
 * waiting ones (a wait, a subtask, a map step, a delay); a task whose
 * only activity is waiting reports execution_status waiting, and a paused
 * task paused (recommended_action resume_task).
 */
ALTER TYPE tasker_task_execution_context
    ADD ATTRIBUTE skipped_steps bigint,
    ADD ATTRIBUTE waiting_steps bigint;

CREATE OR REPLACE FUNCTION tasker_task_execution_context(task_ids bigint[],
                                                         as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_task_execution_context
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH counts AS (
        SELECT t.task_id, t.named_task_id, t.current_state::text AS status,
               t.paused_at IS NOT NULL AS paused,
               count(r.workflow_step_id) AS total,
               count(*) FILTER (WHERE r.current_state = 'pending') AS pending,
               count(*) FILTER (WHERE r.current_state = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')) AS completed,
               count(*) FILTER (WHERE r.current_state = 'error') AS failed,
               count(*) FILTER (WHERE r.ready_for_execution
                                  AND t.current_state IN ('pending', 'in_progress')) AS ready,
               count(*) FILTER (WHERE (r.current_state = 'error' AND NOT r.retry_eligible)
                                   OR r.current_state = 'cancelled') AS blocked,
               count(*) FILTER (WHERE r.current_state = 'skipped') AS skipped,
               count(*) FILTER (WHERE r.waiting_for IS NOT NULL) AS waiting,
               count(*) FILTER (WHERE r.current_state = 'in_progress'
                                  AND r.waiting_for IS NULL) AS running
          FROM @extschema@.tasker_tasks t
          LEFT JOIN @extschema@.tasker_step_readiness_status($1, $2) r ON r.task_id = t.task_id
         WHERE t.task_id = ANY ($1)
         GROUP BY t.task_id, t.named_task_id, t.current_state, t.paused_at)
    SELECT task_id, named_task_id, status, total, pending, in_progress,
           completed, failed, ready,
           CASE WHEN status = 'cancelled' THEN 'cancelled'
                WHEN paused AND status IN ('pending', 'in_progress', 'error') THEN 'paused'
                WHEN ready > 0 THEN 'has_ready_steps'
                WHEN running > 0 THEN 'processing'
                WHEN waiting > 0 AND status IN ('pending', 'in_progress') THEN 'waiting'
                WHEN blocked > 0 THEN 'blocked_by_failures'
                WHEN completed + skipped = total AND total > 0 THEN 'all_complete'
                ELSE 'waiting_for_dependencies' END,
           CASE WHEN status = 'cancelled' THEN 'none'
                WHEN paused AND status IN ('pending', 'in_progress', 'error') THEN 'resume_task'
                WHEN ready > 0 THEN 'execute_ready_steps'
                WHEN running > 0 THEN 'wait_for_completion'
                WHEN waiting > 0 AND status IN ('pending', 'in_progress') THEN 'wait_for_signal_subtask_or_timer'
                WHEN blocked > 0 THEN 'handle_failures'
                WHEN completed + skipped = total AND total > 0 THEN 'finalize_task'
                ELSE 'wait_for_dependencies' END,
           CASE WHEN total = 0 THEN 0.0
                ELSE round((completed + skipped)::numeric / total * 100, 2) END,
           CASE WHEN status = 'cancelled' THEN 'cancelled'
                WHEN failed = 0 AND blocked = 0 THEN 'healthy'
                WHEN ready > 0 THEN 'recovering'
                WHEN blocked > 0 THEN 'blocked'
                ELSE 'recovering' END,
           skipped, waiting
      FROM counts
     ORDER BY task_id
$$;
/* ---- issue 12: metrics ---- */

/*
 * Counters kept in shared memory by the engine (src/shmem.c: counted when
 * the transaction that moved the task or step commits, zero again after a
 * server restart) and gauges read cheaply (src/metrics.c), as rows and as
 * the Prometheus text format.  For the reader level, as tasker_system_health
 * is (tasker_function_levels, issue 13 section):
 * they show counts and timings, never a task's data.
 */
CREATE FUNCTION @extschema@.tasker_metrics()
RETURNS TABLE (name text, labels jsonb, value double precision)
AS 'MODULE_PATHNAME', 'tasker_metrics_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_metrics() IS
    'tasker''s counters (tasks, step attempts by kind and outcome, retries, step duration histograms, HTTP requests by answer class, external-worker claims, lost leases; since the server started) and gauges (ready steps, oldest ready step, leased steps in progress, HTTP requests in flight, executors alive), one row per Prometheus sample';

CREATE FUNCTION @extschema@.tasker_metrics_prometheus()
RETURNS text
AS 'MODULE_PATHNAME', 'tasker_metrics_prometheus_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_metrics_prometheus() IS
    'The samples of tasker_metrics() in the Prometheus text exposition format, with # HELP and # TYPE lines';

/* ---- issue 12: the durable event log and subscribers ---- */

/*
 * Every event tasker sends on tasker_events is also a row here, written at
 * pre-commit by the transaction that makes it (src/event_log.c), with the
 * same JSON, which carries its event_id.  Ids grow in the order events are
 * appended; tasker_events_since returns only ids below which nothing can
 * still commit, so a consumer that resumes after the last id it received
 * misses nothing.  The event worker prunes events older than
 * tasker.event_log_retention, never the newest one (ids continue from it
 * after a restart) and never one a subscriber has not yet passed.
 */
CREATE TABLE tasker_event_log (
    event_id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    event jsonb NOT NULL
);
COMMENT ON TABLE tasker_event_log IS
    'The durable event log: every event sent on tasker_events, in event_id order; read it with tasker_events_since';
COMMENT ON COLUMN tasker_event_log.event_id IS
    'Increases in the order events were appended; a gap is an id of a transaction that rolled back';
COMMENT ON COLUMN tasker_event_log.event IS
    'The payload sent on NOTIFY, with its event_id';
SELECT pg_catalog.pg_extension_config_dump('tasker_event_log', '');

CREATE FUNCTION tasker_events_since(after_id bigint, max_events integer DEFAULT 1000)
RETURNS TABLE (event_id bigint, event jsonb)
AS 'MODULE_PATHNAME', 'tasker_events_since_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_events_since(bigint, integer) IS
    'Up to max_events events of the durable log with ids above after_id, in order, only ever ones below which no event can still commit: resume from the last event_id returned and nothing is missed (READ COMMITTED only)';

CREATE FUNCTION tasker_prune_event_log(older_than interval DEFAULT NULL, max_rows integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_prune_event_log_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_prune_event_log(interval, integer) IS
    'Delete up to max_rows of the oldest events created more than older_than ago (NULL: tasker.event_log_retention), keeping the newest event and those a subscriber has not passed; returns how many were deleted';
REVOKE EXECUTE ON FUNCTION tasker_prune_event_log(interval, integer) FROM PUBLIC;

/*
 * Subscribers: SQL functions the event worker calls with each matching
 * event, one event per transaction, in event order, at least once
 * (src/subscribers.c).  A subscriber name belongs to the role that first
 * subscribed it; its function runs with that role's privileges.
 */
CREATE TABLE tasker_subscribers (
    subscriber text PRIMARY KEY CHECK (subscriber <> ''),
    event_pattern text NOT NULL CHECK (event_pattern <> ''),
    event_like text NOT NULL,
    function regprocedure NOT NULL,
    owner regrole NOT NULL,
    max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 1000),
    retry_delay interval NOT NULL DEFAULT '1 second',
    last_event_id bigint NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error jsonb,
    delivered bigint NOT NULL DEFAULT 0,
    failures bigint NOT NULL DEFAULT 0,
    last_delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker_subscribers IS
    'Event subscriptions: the function called with each event matching the pattern, and the cursor of its delivery';
COMMENT ON COLUMN tasker_subscribers.event_like IS
    'event_pattern as a LIKE pattern (* becomes %, other characters match themselves)';
COMMENT ON COLUMN tasker_subscribers.owner IS
    'The role that subscribed first: the function runs with its privileges, and only roles with them may change or remove the subscription';
COMMENT ON COLUMN tasker_subscribers.last_event_id IS
    'The cursor: the last event of the log delivered, parked or passed over';
COMMENT ON COLUMN tasker_subscribers.attempts IS
    'Failed calls for the next matching event (0 when none failed)';
SELECT pg_catalog.pg_extension_config_dump('tasker_subscribers', '');

CREATE TABLE tasker_parked_events (
    subscriber text NOT NULL REFERENCES tasker_subscribers ON DELETE CASCADE,
    event_id bigint NOT NULL,
    event jsonb NOT NULL,
    attempts integer NOT NULL,
    error jsonb NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, event_id)
);
COMMENT ON TABLE tasker_parked_events IS
    'Events a subscriber''s function failed on max_attempts times, with the last error; delivery moved on past them';
SELECT pg_catalog.pg_extension_config_dump('tasker_parked_events', '');

CREATE FUNCTION tasker_subscribe(subscriber text, event_pattern text, fn regprocedure,
                                 max_attempts integer DEFAULT 5,
                                 retry_delay interval DEFAULT '1 second',
                                 start_after bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_subscribe_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_subscribe(text, text, regprocedure, integer, interval, bigint) IS
    'Have the event worker call fn(event jsonb) with each event matching event_pattern (* matches any text), in order, each call in a transaction of its own, retried after retry_delay (doubling) up to max_attempts calls, then parked; starts after start_after, or with the events that commit from now on; returns the event_id it starts after';

CREATE FUNCTION tasker_unsubscribe(subscriber text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_unsubscribe_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_unsubscribe(text) IS
    'Remove a subscription and its parked events; false when there is none of that name';

REVOKE EXECUTE ON FUNCTION
    tasker_subscribe(text, text, regprocedure, integer, interval, bigint),
    tasker_unsubscribe(text)
FROM PUBLIC;

CREATE VIEW tasker_subscriptions AS
SELECT s.subscriber,
       s.event_pattern,
       s.function,
       pg_catalog.pg_get_userbyid(s.owner) AS owner,
       s.last_event_id,
       s.delivered,
       s.failures,
       (SELECT pg_catalog.count(*) FROM tasker_parked_events p
         WHERE p.subscriber = s.subscriber) AS parked,
       s.attempts AS pending_attempts,
       s.next_attempt_at,
       s.last_error,
       s.max_attempts,
       s.retry_delay,
       s.last_delivered_at,
       s.created_at
  FROM tasker_subscribers s;
COMMENT ON VIEW tasker_subscriptions IS
    'Each event subscription: pattern, function, owner, cursor (last_event_id), events delivered, failed calls, parked events, and the retry it waits for';

/* ---- issue 11: operations (annotations, retention, admission control, schedules) ---- */

/*
 * Annotations, in the Ruby engine's tables: tasker_annotation_types names
 * each kind, tasker_task_annotations holds the jsonb values.  Annotating
 * is a control (the caller must be able to control the task, src/
 * annotation.c); a type named for the first time is created.  Searching
 * reads the GIN index on the annotation through @>: a value matches a
 * top-level key whose JSON value is that string, or that number or
 * boolean when the text spells one.
 */
CREATE FUNCTION @extschema@.tasker_annotate_task(task_id bigint, annotation_type text,
                                                 annotation jsonb)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_annotate_task_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_annotate_task(bigint, text, jsonb) IS
    'Attach an annotation (a JSON object) of a type to a task, creating the type if it is new; returns the task_annotation_id';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_annotate_task(bigint, text, jsonb) FROM PUBLIC;

CREATE FUNCTION @extschema@.tasker_tasks_by_annotation(annotation_type text, key text, value text)
RETURNS TABLE (task_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    scalar jsonb;
BEGIN
    IF annotation_type IS NULL OR key IS NULL OR value IS NULL THEN
        RAISE EXCEPTION 'annotation_type, key and value must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The search finds tasks with an annotation of that type whose key has that value.',
                  HINT = 'Pass the three as text, such as (''order'', ''order_id'', ''42'').';
    END IF;
    IF value ~ '^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$' OR value IN ('true', 'false') THEN
        scalar := jsonb_build_object(key, value::jsonb);
    END IF;
    RETURN QUERY
    SELECT DISTINCT a.task_id
      FROM @extschema@.tasker_task_annotations a
      JOIN @extschema@.tasker_annotation_types ty ON ty.annotation_type_id = a.annotation_type_id
     WHERE ty.name = annotation_type
       AND (a.annotation @> jsonb_build_object(key, value) OR a.annotation @> scalar)
     ORDER BY 1;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_tasks_by_annotation(text, text, text) IS
    'The tasks with an annotation of a type whose top-level key has the value (a JSON string equal to it, or the number or boolean it spells), by task_id';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_tasks_by_annotation(text, text, text) FROM PUBLIC;

/*
 * Retention.  A finished task (complete, cancelled or resolved_manually;
 * error too when asked) whose last transition (updated_at) is older than
 * the cutoff is deleted with every row that carries its task_id: step
 * transitions, task transitions, edges, annotations, any other table of
 * the extension with a task_id column, steps, then the task.  One batch
 * takes at most batch_size tasks, locked FOR UPDATE SKIP LOCKED: it never
 * waits for a lock, and the rows it locks are finished ones no worker or
 * claim reads.  tasker_purge_batch is the one definition of a batch;
 * tasker_purge runs batches in the caller's transaction,
 * tasker_purge_in_batches commits after each, and the background purge
 * (tasker.retention_period, src/retention.c) runs each in a transaction of
 * its own.
 */
CREATE FUNCTION @extschema@.tasker_purge_batch(cutoff timestamptz, include_errors boolean,
                                               batch_size integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids bigint[];
    rel regclass;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be a positive number'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('batch_size is %s.', COALESCE(batch_size::text, 'NULL')),
                  HINT = 'Pass how many tasks one transaction may delete, such as 1000.';
    END IF;
    SELECT array_agg(x.task_id) INTO ids
      FROM (SELECT t.task_id FROM @extschema@.tasker_tasks t
             WHERE (t.current_state IN ('complete', 'cancelled', 'resolved_manually')
                    OR (include_errors AND t.current_state = 'error'))
               AND t.updated_at < cutoff AND t.created_at < cutoff
             LIMIT batch_size
               FOR UPDATE SKIP LOCKED) x;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM @extschema@.tasker_workflow_step_transitions x WHERE x.task_id = ANY (ids);
    DELETE FROM @extschema@.tasker_task_transitions x WHERE x.task_id = ANY (ids);
    DELETE FROM @extschema@.tasker_workflow_step_edges x WHERE x.task_id = ANY (ids);
    DELETE FROM @extschema@.tasker_task_annotations x WHERE x.task_id = ANY (ids);
    -- any other table of the extension keyed by task_id
    FOR rel IN
        SELECT c.oid::regclass
          FROM pg_depend d
          JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'task_id'
                             AND NOT a.attisdropped
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'tasker')
           AND c.relkind IN ('r', 'p')
           AND c.relname NOT IN ('tasker_tasks', 'tasker_workflow_steps',
                                 'tasker_workflow_step_edges', 'tasker_task_transitions',
                                 'tasker_workflow_step_transitions', 'tasker_task_annotations')
         ORDER BY c.relname
    LOOP
        EXECUTE format('DELETE FROM %s WHERE task_id = ANY ($1)', rel) USING ids;
    END LOOP;
    DELETE FROM @extschema@.tasker_workflow_steps x WHERE x.task_id = ANY (ids);
    DELETE FROM @extschema@.tasker_tasks x WHERE x.task_id = ANY (ids);
    RETURN cardinality(ids);
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_purge_batch(timestamptz, boolean, integer) IS
    'Internal: delete up to batch_size finished tasks whose last transition is before cutoff (and tasks in error when include_errors), with every row of theirs; returns how many';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_purge_batch(timestamptz, boolean, integer) FROM PUBLIC;

/* tasker_purge_check: the argument checks of the two purge entry points. */
CREATE FUNCTION @extschema@.tasker_purge_check(older_than interval, include_errors boolean,
                                               batch_size integer)
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF older_than IS NULL OR include_errors IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'older_than, include_errors and batch_size must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The purge deletes finished tasks whose last transition is older than older_than.',
                  HINT = 'Pass an interval such as ''30 days'', and leave the others out for their defaults.';
    END IF;
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The interval given is %s.', older_than),
                  HINT = 'Pass how old a finished task must be to be deleted, such as ''30 days''.';
    END IF;
    IF batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The batch size given is %s.', batch_size),
                  HINT = 'Each batch deletes this many tasks; 1000 keeps each one short.';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_purge_check(interval, boolean, integer) IS
    'Internal: raise for a NULL, negative or out-of-range purge argument';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_purge_check(interval, boolean, integer) FROM PUBLIC;

CREATE FUNCTION @extschema@.tasker_purge(older_than interval, include_errors boolean DEFAULT false,
                                         batch_size integer DEFAULT 1000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := now() - older_than;
    n bigint;
    total bigint := 0;
BEGIN
    PERFORM @extschema@.tasker_purge_check(older_than, include_errors, batch_size);
    LOOP
        n := @extschema@.tasker_purge_batch(cutoff, include_errors, batch_size);
        total := total + n;
        EXIT WHEN n < batch_size;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_purge(interval, boolean, integer) IS
    'Delete the finished tasks (complete, cancelled, resolved_manually; error too when include_errors) whose last transition is older than older_than, with all their rows, batch_size tasks per statement group, in the caller''s transaction; returns how many tasks';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_purge(interval, boolean, integer) FROM PUBLIC;

/*
 * A procedure may commit only without SECURITY DEFINER or a SET clause:
 * it runs as the caller, names everything by schema, and calls the batch
 * function, which the caller must be granted too.
 */
CREATE PROCEDURE @extschema@.tasker_purge_in_batches(older_than interval,
                                                     include_errors boolean DEFAULT false,
                                                     batch_size integer DEFAULT 1000,
                                                     INOUT purged bigint DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    cutoff timestamptz := pg_catalog.now() OPERATOR(pg_catalog.-) older_than;
    n bigint;
BEGIN
    PERFORM @extschema@.tasker_purge_check(older_than, include_errors, batch_size);
    purged := 0;
    LOOP
        n := @extschema@.tasker_purge_batch(cutoff, include_errors, batch_size);
        purged := purged OPERATOR(pg_catalog.+) n;
        COMMIT;
        EXIT WHEN n OPERATOR(pg_catalog.<) batch_size;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE @extschema@.tasker_purge_in_batches(interval, boolean, integer, bigint) IS
    'tasker_purge committing after each batch (CALL it outside a transaction block): each transaction holds its locks for one batch only; purged returns how many tasks';
REVOKE EXECUTE ON PROCEDURE @extschema@.tasker_purge_in_batches(interval, boolean, integer, bigint) FROM PUBLIC;

/*
 * Admission control: tasker.max_ready_backlog.  The backlog of ready
 * steps is a gauge in shared memory that the executors sample (src/
 * backlog.c); this function shows it.
 */
CREATE FUNCTION @extschema@.tasker_ready_backlog(OUT ready_steps bigint, OUT measured_at timestamptz,
                                                 OUT max_ready_backlog integer)
RETURNS record
AS 'MODULE_PATHNAME', 'tasker_ready_backlog_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_ready_backlog() IS
    'The backlog of ready steps tasker_create_task compares with tasker.max_ready_backlog: the executors'' last measure plus the ready steps created since, when it was measured, and the limit (NULLs when no executor measures this database)';

/*
 * Schedules through pg_cron.  A schedule is a row here (the task to
 * create) and a pg_cron job whose command calls tasker_fire_schedule with
 * the minute of its tick; the task's identity key is the job name and
 * that minute, so a tick fired twice creates one task.  pg_cron is not a
 * requirement of tasker: src/schedule.c finds its functions when a
 * schedule is made, in this database, or through a short-lived worker in
 * the database pg_cron runs in (cron.database_name).
 */
CREATE TABLE @extschema@.tasker_schedule_jobs (
    job_name            text PRIMARY KEY CHECK (job_name <> ''),
    schedule            text NOT NULL,
    task_name           text NOT NULL,
    namespace           text NOT NULL,
    version             text,
    context             jsonb NOT NULL DEFAULT '{}',
    owner               regrole NOT NULL,
    active              boolean NOT NULL DEFAULT true,
    cron_database       text NOT NULL,
    jobid               bigint NOT NULL,
    last_task_id        bigint,
    last_created_at     timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.tasker_schedule_jobs IS
    'Task schedules: the task each pg_cron job creates, the job''s id and database, and the last task it created';
SELECT pg_catalog.pg_extension_config_dump('tasker_schedule_jobs', '');

CREATE VIEW @extschema@.tasker_schedules AS
SELECT job_name, schedule, task_name, namespace, version, active, last_task_id,
       last_created_at, jobid, context, pg_catalog.pg_get_userbyid(owner) AS owner,
       cron_database
  FROM @extschema@.tasker_schedule_jobs;
COMMENT ON VIEW @extschema@.tasker_schedules IS
    'Task schedules: job name, cron schedule, the task they create, whether active, the last task created and when, the pg_cron job id, the context, the owner and the database pg_cron runs in';

CREATE FUNCTION @extschema@.tasker_schedule(job_name text, schedule text, task_name text,
                                            context jsonb DEFAULT '{}',
                                            namespace text DEFAULT 'default',
                                            version text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_schedule_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_schedule(text, text, text, jsonb, text, text) IS
    'Create or replace a pg_cron job that creates a task on each tick of a cron schedule (one task per tick, even when the tick fires twice); returns the pg_cron job id';

CREATE FUNCTION @extschema@.tasker_unschedule(job_name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_unschedule_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_unschedule(text) IS
    'Remove a task schedule and its pg_cron job; false when there was no such schedule';

CREATE FUNCTION @extschema@.tasker_pause_schedule(job_name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_pause_schedule_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_pause_schedule(text) IS
    'Stop a task schedule''s pg_cron job from running (cron.alter_job active false); false when it was paused already';

CREATE FUNCTION @extschema@.tasker_resume_schedule(job_name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_resume_schedule_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_resume_schedule(text) IS
    'Let a paused task schedule''s pg_cron job run again; false when it was active already';

CREATE FUNCTION @extschema@.tasker_fire_schedule(job_name text, tick timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_fire_schedule_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_fire_schedule(text, timestamptz) IS
    'The command of a schedule''s pg_cron job: create the schedule''s task for the tick (identity key: job name and tick), or return the task already created for it; NULL while the schedule is paused';

REVOKE EXECUTE ON FUNCTION
    @extschema@.tasker_schedule(text, text, text, jsonb, text, text),
    @extschema@.tasker_unschedule(text),
    @extschema@.tasker_pause_schedule(text),
    @extschema@.tasker_resume_schedule(text),
    @extschema@.tasker_fire_schedule(text, timestamptz)
FROM PUBLIC;

/* ---- issue 11 item 3: priorities with aging ---- */

/*
 * A task's priority (higher runs first) is copied to its steps.  The
 * claim orders ready steps by claim_key, which a trigger keeps equal to
 * next_attempt_at moved earlier by priority * tasker.priority_aging
 * seconds (src/priority.c): a step of priority p that became due at t
 * ranks as a step of priority 0 due at t - p * aging, so it runs before
 * lower priorities, and a waiting step gains one level of priority every
 * tasker.priority_aging seconds, which keeps low priorities from starving.
 * With aging off (0) each level counts as a year: strict priority.  The
 * key is computed with the aging in effect when next_attempt_at or the
 * priority was last written.
 */
ALTER TABLE tasker_tasks
    ADD COLUMN priority integer NOT NULL DEFAULT 0
        CONSTRAINT tasker_tasks_priority_range CHECK (priority BETWEEN -1000 AND 1000);
COMMENT ON COLUMN tasker_tasks.priority IS
    'The task''s priority, -1000 to 1000, higher first; its steps carry it';
ALTER TABLE tasker_workflow_steps
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN claim_key timestamptz;
COMMENT ON COLUMN tasker_workflow_steps.priority IS
    'The priority of the step''s task when the step was created';
COMMENT ON COLUMN tasker_workflow_steps.claim_key IS
    'The order in which ready steps are claimed: next_attempt_at moved earlier by priority times tasker.priority_aging (kept by a trigger)';

CREATE FUNCTION @extschema@.tasker_step_claim_key()
RETURNS trigger
AS 'MODULE_PATHNAME', 'tasker_step_claim_key'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.tasker_step_claim_key() IS
    'Internal: the trigger that keeps tasker_workflow_steps.claim_key';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_step_claim_key() FROM PUBLIC;
CREATE TRIGGER tasker_step_claim_key
    BEFORE INSERT OR UPDATE OF next_attempt_at, priority ON @extschema@.tasker_workflow_steps
    FOR EACH ROW EXECUTE FUNCTION @extschema@.tasker_step_claim_key();
UPDATE @extschema@.tasker_workflow_steps SET next_attempt_at = next_attempt_at
 WHERE next_attempt_at IS NOT NULL;

/*
 * The ready index keeps its predicate (readiness, defined once) and now
 * orders by claim_key, so that the claim, which must never sort (it locks
 * each step's task as it reads), reads it in order.  The queries that want
 * the next due time (the executors' sleep) read a second partial index in
 * next_attempt_at order; its predicate adds claim_key IS NOT NULL (always
 * true of a ready step), which the claim does not state, so the claim can
 * never pick it and sort.
 */
DROP INDEX @extschema@.tasker_workflow_steps_ready_idx;
CREATE INDEX tasker_workflow_steps_ready_idx
    ON @extschema@.tasker_workflow_steps (handler_kind, claim_key, task_id)
    WHERE current_state IN ('pending', 'error') AND unfinished_parents = 0
      AND next_attempt_at IS NOT NULL;
CREATE INDEX tasker_workflow_steps_due_idx
    ON @extschema@.tasker_workflow_steps (handler_kind, next_attempt_at)
    WHERE current_state IN ('pending', 'error') AND unfinished_parents = 0
      AND next_attempt_at IS NOT NULL AND claim_key IS NOT NULL;

/*
 * tasker_create_task gains priority, and traceparent (issue 12: the W3C
 * trace the task joins; see the tracing section below).  A function's
 * arguments cannot be added in place, so the 0.1.0 form is dropped and
 * the final one created; the EXECUTE grants an operator gave on the
 * 0.1.0 form are given again on the new one.
 */
SELECT pg_catalog.set_config('tasker_upgrade.create_task_grants', COALESCE((
    SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                               ELSE pg_catalog.quote_ident(a.grantee::regrole::text) END,
               'grantable', a.is_grantable))::text
      FROM pg_catalog.pg_proc p CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
     WHERE p.oid = '@extschema@.tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text)'::regprocedure
       AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'), '[]'), true);
DROP FUNCTION @extschema@.tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text);
CREATE FUNCTION @extschema@.tasker_create_task(name text, context jsonb DEFAULT '{}',
                                               namespace text DEFAULT 'default',
                                               version text DEFAULT NULL,
                                               initiator text DEFAULT 'unknown',
                                               source_system text DEFAULT 'unknown',
                                               reason text DEFAULT 'unknown',
                                               tags text[] DEFAULT '{}',
                                               bypass_steps text[] DEFAULT '{}',
                                               requested_at timestamptz DEFAULT now(),
                                               identity_key text DEFAULT NULL,
                                               priority integer DEFAULT 0,
                                               traceparent text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_create_task_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text, integer, text) IS
    'Create a task from a registered template, with a priority (-1000 to 1000, higher first, default 0) and in the W3C trace of traceparent (or of the context''s traceparent key; a new trace without either); returns its task_id (the existing one for a repeated identity_key)';
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text, integer, text) FROM PUBLIC;
DO $grants$
DECLARE
    g jsonb;
BEGIN
    FOR g IN SELECT pg_catalog.jsonb_array_elements(
                 pg_catalog.current_setting('tasker_upgrade.create_task_grants')::jsonb) LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION @extschema@.tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text, integer, text) TO %s%s',
                                  g->>'grantee',
                                  CASE WHEN (g->>'grantable')::boolean THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$grants$;

/* ---- issue 11 item 4: concurrency keys, namespace limits, rate limits (src/concurrency.c, src/rate_limit.c) ---- */

/*
 * A template's concurrency: {key, limit} is rendered at task creation from
 * the context into tasker_tasks.concurrency_key and concurrency_limit.  A
 * pending task with a key starts only while fewer than its limit of tasks
 * with the same key are in progress or pending ahead of it (lower
 * task_id), so with limit 1 one key's tasks run one at a time, in
 * creation order.  The claim and the start of tasks state it once
 * (TASKER_ADMITTED_TASK_SQL, src/step.h), reading the index below.
 */
ALTER TABLE tasker_named_tasks ADD COLUMN concurrency jsonb;
COMMENT ON COLUMN tasker_named_tasks.concurrency IS
    'The template''s concurrency: {"key": "...{{context.PATH}}...", "limit": N}, or NULL';
ALTER TABLE tasker_tasks
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit integer,
    ADD CONSTRAINT tasker_tasks_concurrency CHECK
        ((concurrency_key IS NULL) = (concurrency_limit IS NULL) AND concurrency_limit >= 1);
COMMENT ON COLUMN tasker_tasks.concurrency_key IS
    'The task''s concurrency key, rendered from its template''s concurrency.key and its context; NULL: none';
COMMENT ON COLUMN tasker_tasks.concurrency_limit IS
    'How many tasks with the same concurrency_key may be in progress at once';
CREATE INDEX tasker_tasks_concurrency_idx ON tasker_tasks (concurrency_key, task_id)
    WHERE concurrency_key IS NOT NULL AND current_state IN ('pending', 'in_progress');

/*
 * A step template's rate_limit: {key, per_second, burst}: a token bucket
 * in shared memory (src/rate_limit.c) shared by every step naming the key.
 * A step claimed over the rate is not run: its next_attempt_at and
 * rate_slot_at become the time the bucket gave it (its place in the key's
 * queue), so it waits without holding a worker, then asks again.
 */
ALTER TABLE tasker_named_tasks_named_steps ADD COLUMN rate_limit jsonb;
COMMENT ON COLUMN tasker_named_tasks_named_steps.rate_limit IS
    'The step''s rate limit: {"key": NAME, "per_second": R, "burst": B}, or NULL';
ALTER TABLE tasker_workflow_steps ADD COLUMN rate_slot_at timestamptz;
COMMENT ON COLUMN tasker_workflow_steps.rate_slot_at IS
    'When the step, sent away by its rate limit, comes back to be claimed; NULL: not waiting for its rate';

/*
 * A namespace's cap on its steps in progress (tasker_set_namespace_limit).
 * A step takes one of max_in_progress slots when it is claimed: a
 * transaction advisory lock while its claiming transaction runs, then its
 * committed in_progress row (src/concurrency.c).
 */
ALTER TABLE tasker_task_namespaces
    ADD COLUMN max_in_progress integer
        CONSTRAINT tasker_task_namespaces_max_in_progress CHECK (max_in_progress BETWEEN 1 AND 100000);
COMMENT ON COLUMN tasker_task_namespaces.max_in_progress IS
    'At most this many steps of the namespace in progress at once (tasker_set_namespace_limit); NULL: no cap';

CREATE FUNCTION @extschema@.tasker_set_namespace_limit(namespace text, max_in_progress integer)
RETURNS void LANGUAGE C CALLED ON NULL INPUT VOLATILE
AS 'MODULE_PATHNAME', 'tasker_set_namespace_limit_sql';
COMMENT ON FUNCTION @extschema@.tasker_set_namespace_limit(text, integer) IS
    'Cap the steps of a namespace in progress at once (1 to 100000); NULL removes the cap';

CREATE FUNCTION @extschema@.tasker_namespace_slot(named_task_id integer)
RETURNS boolean LANGUAGE C STRICT VOLATILE COST 1000
AS 'MODULE_PATHNAME', 'tasker_namespace_slot_sql';
COMMENT ON FUNCTION @extschema@.tasker_namespace_slot(integer) IS
    'Internal, for the claim: take a slot of the namespace of a template for one step of this transaction; false when the namespace is at its cap';

/* What the limits hold now: for operators and tasker_health readers. */
CREATE VIEW @extschema@.tasker_limits AS
SELECT 'namespace'::text AS kind, ns.name AS key, ns.max_in_progress AS "limit",
       (SELECT count(*) FROM @extschema@.tasker_workflow_steps s
          JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id
          JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
         WHERE nt.task_namespace_id = ns.task_namespace_id
           AND s.current_state = 'in_progress' AND s.handler_kind <> 'flow') AS in_progress,
       NULL::bigint AS waiting
  FROM @extschema@.tasker_task_namespaces ns
 WHERE ns.max_in_progress IS NOT NULL
UNION ALL
SELECT 'concurrency', t.concurrency_key, max(t.concurrency_limit),
       count(*) FILTER (WHERE t.current_state = 'in_progress'),
       count(*) FILTER (WHERE t.current_state = 'pending')
  FROM @extschema@.tasker_tasks t
 WHERE t.concurrency_key IS NOT NULL AND t.current_state IN ('pending', 'in_progress')
 GROUP BY t.concurrency_key;
COMMENT ON VIEW @extschema@.tasker_limits IS
    'Namespace caps (steps in progress against the cap) and concurrency keys (tasks in progress and waiting) in use';

/* ---- issue 12 item 7: W3C trace context (src/trace.c) ---- */

/*
 * Each task belongs to one W3C trace: the one the traceparent given to
 * tasker_create_task (or the context's traceparent key) names, whose span
 * becomes the parent of the task's span, or a new one tasker begins.
 * Tasks created before this version have no trace (NULL): their envelopes
 * and events carry no trace fields and they have no spans.  Span ids are
 * derived, not stored (tasker_span_id): the task's from its trace id and
 * task id, a step attempt's also from its step id and the sort_key of its
 * transition to in_progress.
 */
ALTER TABLE tasker_tasks
    ADD COLUMN trace_id text,
    ADD COLUMN trace_parent_id text,
    ADD COLUMN trace_flags smallint;
COMMENT ON COLUMN tasker_tasks.trace_id IS
    'The W3C trace id (32 lower-case hex digits) of the trace the task belongs to; NULL for a task created before tasker 0.2.0';
COMMENT ON COLUMN tasker_tasks.trace_parent_id IS
    'The span id (16 hex digits) of the creator''s span, from the traceparent given at creation; NULL when tasker began the trace';
COMMENT ON COLUMN tasker_tasks.trace_flags IS
    'The W3C trace-flags (0 to 255; 1 is sampled) passed on in every traceparent of the task';

CREATE FUNCTION @extschema@.tasker_span_id(trace_id text, task_id bigint,
                                           step_id bigint DEFAULT NULL,
                                           attempt_serial integer DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'tasker_span_id_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.tasker_span_id(text, bigint, bigint, integer) IS
    'The W3C span id (16 hex digits) of a task''s span (step_id NULL) or of a step attempt (attempt_serial: the sort_key of the attempt''s transition to in_progress); NULL when trace_id or task_id is NULL';

/*
 * tasker_task_spans: the spans of a task, rebuilt from its transitions
 * for export (contrib/opentelemetry): the task's span, from its creation
 * to its last finishing transition, child of the creator's span; and one
 * span per step attempt, from its transition to in_progress to the
 * transition that ended it, child of the task's span.  An attempt still
 * running, or a task not finished, has no end_time.  status is ok, error
 * or unset (cancelled, given back, running).  Runs as the caller, so
 * namespace isolation applies (tasker_apply_privileges).
 */
CREATE FUNCTION @extschema@.tasker_task_spans(task_id bigint)
RETURNS TABLE (trace_id text, span_id text, parent_span_id text, name text,
               start_time timestamptz, end_time timestamptz, status text,
               attributes jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@.tasker_require_task(task_id);
    RETURN QUERY
    WITH task AS (
        SELECT t.task_id, t.trace_id, t.trace_parent_id, t.created_at, t.current_state::text AS state,
               nt.name::text AS task_name, nt.version::text AS version, ns.name::text AS namespace,
               @extschema@.tasker_span_id(t.trace_id, t.task_id) AS span_id,
               (SELECT x.created_at FROM @extschema@.tasker_task_transitions x
                 WHERE x.task_id = t.task_id AND x.most_recent
                   AND x.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')) AS ended_at
          FROM @extschema@.tasker_tasks t
          JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id
          JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id
         WHERE t.task_id = $1 AND t.trace_id IS NOT NULL),
    attempt AS (
        SELECT x.workflow_step_id, x.sort_key, x.created_at AS started_at,
               n.name::text AS step_name, s.handler_kind, s.step_type,
               e.to_state::text AS outcome, e.created_at AS ended_at, e.metadata
          FROM @extschema@.tasker_workflow_step_transitions x
          JOIN @extschema@.tasker_workflow_steps s ON s.workflow_step_id = x.workflow_step_id
          JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
          LEFT JOIN LATERAL (
                SELECT y.to_state, y.created_at, y.metadata
                  FROM @extschema@.tasker_workflow_step_transitions y
                 WHERE y.workflow_step_id = x.workflow_step_id AND y.sort_key > x.sort_key
                 ORDER BY y.sort_key LIMIT 1) e ON true
         WHERE x.task_id = $1 AND x.to_state = 'in_progress')
    SELECT k.trace_id, k.span_id, k.trace_parent_id, k.task_name, k.created_at, k.ended_at,
           CASE k.state WHEN 'complete' THEN 'ok' WHEN 'resolved_manually' THEN 'ok'
                        WHEN 'error' THEN 'error' ELSE 'unset' END,
           jsonb_build_object('tasker.task_id', k.task_id, 'tasker.namespace', k.namespace,
                              'tasker.task_name', k.task_name, 'tasker.version', k.version,
                              'tasker.state', k.state)
      FROM task k
    UNION ALL
    SELECT k.trace_id,
           @extschema@.tasker_span_id(k.trace_id, k.task_id, a.workflow_step_id, a.sort_key),
           k.span_id, a.step_name, a.started_at, a.ended_at,
           CASE a.outcome WHEN 'complete' THEN 'ok' WHEN 'error' THEN 'error' ELSE 'unset' END,
           jsonb_strip_nulls(jsonb_build_object(
               'tasker.task_id', k.task_id, 'tasker.step_id', a.workflow_step_id,
               'tasker.step_name', a.step_name, 'tasker.handler_kind', a.handler_kind,
               'tasker.step_type', a.step_type, 'tasker.attempt_serial', a.sort_key,
               'tasker.attempt', a.metadata->'error'->'attempt',
               'tasker.outcome', a.outcome,
               'error.message', a.metadata->'error'->>'message',
               'error.sqlstate', a.metadata->'error'->>'sqlstate'))
      FROM task k CROSS JOIN attempt a
     ORDER BY 5, 2;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_task_spans(bigint) IS
    'The spans of a task, rebuilt from its transitions for export to OpenTelemetry: the task''s (child of the creator''s span) and one per step attempt (child of the task''s), with start and end times, status (ok, error, unset) and attributes; none for a task without a trace; raises 42704 for an unknown id';

/* ---- issue 14: a shard of a scaled-out installation (contrib/tasker_proxy) ---- */

/*
 * Scale-out puts tasker on several nodes, each an ordinary installation
 * with its own workers, behind a router database running the
 * tasker_proxy extension (PL/Proxy, docs/scale-out.md).  A task lives
 * whole on one shard, so the only thing a shard must know is its index:
 * task and step ids carry it in their high bits,
 *
 *     id = shard_index * 2^48 + n,    1 <= n < 2^48,    0 <= shard_index < 32768
 *
 * so ids are unique across shards and the router finds a task's shard
 * from its id alone (id >> 48), without a lookup.  The encoding does not
 * depend on the shard count: adding shards later changes no existing id.
 * Shard 0 keeps the ids of an unsharded installation, and ids stay below
 * 2^53 (exact in a JSON double) while there are fewer than 32 shards.
 * tasker_shard_configure moves the two sequences into the shard's range;
 * it refuses to change the index of a shard that holds tasks.
 */
CREATE TABLE @extschema@.tasker_shard (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shard_index     integer NOT NULL CHECK (shard_index BETWEEN 0 AND 32767),
    shard_count     integer NOT NULL CHECK (shard_count BETWEEN 1 AND 32768),
    configured_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (shard_index < shard_count)
);
COMMENT ON TABLE @extschema@.tasker_shard IS
    'This node''s place in a scaled-out installation (one row, or none when it is not a shard): its index, encoded in the high bits of task and step ids, and the shard count';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tasker_shard', '');

/*
 * tasker_shard_range: the first and last id of a shard's range (shard 0
 * starts at 1, as an unsharded installation does).
 */
CREATE FUNCTION @extschema@.tasker_shard_range(shard_index integer,
                                               OUT first_id bigint, OUT last_id bigint)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (($1::bigint) << 48) + 1, (($1::bigint + 1) << 48) - 1
$$;
COMMENT ON FUNCTION @extschema@.tasker_shard_range(integer) IS
    'The first and last task and step id of a shard: shard_index * 2^48 + 1 to (shard_index + 1) * 2^48 - 1';

/*
 * tasker_shard_move_sequence: put one id sequence into a range, its next
 * value after the highest id already in the range.  Refuses when the
 * table holds an id outside the range.
 */
CREATE FUNCTION @extschema@.tasker_shard_move_sequence(seq regclass, tab regclass, col name,
                                                       first_id bigint, last_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    outside bigint;
    top bigint;
BEGIN
    EXECUTE pg_catalog.format('SELECT min(%1$I) FROM %2$s WHERE %1$I NOT BETWEEN $1 AND $2', col, tab)
       INTO outside USING first_id, last_id;
    IF outside IS NOT NULL THEN
        RAISE EXCEPTION 'id % of % is outside this shard''s range', outside, tab
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = pg_catalog.format('The shard''s ids run from %s to %s; rows created under another shard index stay where they are.', first_id, last_id),
                  HINT = 'Configure a node as a shard before it holds tasks, or keep the index it already has.';
    END IF;
    EXECUTE pg_catalog.format('SELECT max(%I) FROM %s', col, tab) INTO top;
    EXECUTE pg_catalog.format('ALTER SEQUENCE %1$s MINVALUE %2$s MAXVALUE %3$s START WITH %2$s RESTART WITH %4$s',
                              seq, first_id, last_id, COALESCE(top + 1, first_id));
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_shard_move_sequence(regclass, regclass, name, bigint, bigint) IS
    'Internal: move an id sequence into a shard''s range (tasker_shard_configure)';

CREATE FUNCTION @extschema@.tasker_shard_configure(shard_index integer, shard_count integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    old @extschema@.tasker_shard;
BEGIN
    IF shard_index IS NULL OR shard_count IS NULL OR shard_count NOT BETWEEN 1 AND 32768
       OR shard_index NOT BETWEEN 0 AND shard_count - 1 THEN
        RAISE EXCEPTION 'shard % of % is not a valid shard', shard_index, shard_count
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The shard count is 1 to 32768 and the index 0 to the count minus one.',
                  HINT = 'The router (tasker_proxy_set_shards) configures each shard with its position in its list.';
    END IF;
    SELECT * INTO old FROM @extschema@.tasker_shard FOR UPDATE;
    IF FOUND AND old.shard_index = shard_index AND old.shard_count = shard_count THEN
        RETURN false;
    END IF;
    r := @extschema@.tasker_shard_range(shard_index);
    PERFORM @extschema@.tasker_shard_move_sequence('@extschema@.tasker_tasks_task_id_seq',
                '@extschema@.tasker_tasks', 'task_id', r.first_id, r.last_id);
    PERFORM @extschema@.tasker_shard_move_sequence('@extschema@.tasker_workflow_steps_workflow_step_id_seq',
                '@extschema@.tasker_workflow_steps', 'workflow_step_id', r.first_id, r.last_id);
    INSERT INTO @extschema@.tasker_shard (shard_index, shard_count)
    VALUES (shard_index, shard_count)
    ON CONFLICT (singleton) DO UPDATE
       SET shard_index = EXCLUDED.shard_index, shard_count = EXCLUDED.shard_count,
           configured_at = now();
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_shard_configure(integer, integer) IS
    'Make this node shard shard_index of shard_count: new task and step ids are shard_index * 2^48 + n; refuses a new index while the node holds ids of another; false when nothing changed';

/*
 * tasker_shard_status: what the router reads to place tasks and to show
 * its shards: the configured index and count (NULL when the node is not
 * a shard), the unfinished tasks (its load) and the ready steps.
 */
CREATE FUNCTION @extschema@.tasker_shard_status(OUT shard_index integer, OUT shard_count integer,
                                                OUT active_tasks bigint, OUT ready_steps bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT s.shard_index FROM @extschema@.tasker_shard s),
           (SELECT s.shard_count FROM @extschema@.tasker_shard s),
           (SELECT count(*) FROM @extschema@.tasker_tasks t
             WHERE t.current_state IN ('pending', 'in_progress')),
           (SELECT count(*) FROM @extschema@.tasker_workflow_steps w
             WHERE w.current_state IN ('pending', 'error') AND w.unfinished_parents = 0
               AND w.next_attempt_at IS NOT NULL AND w.next_attempt_at <= now())
$$;
COMMENT ON FUNCTION @extschema@.tasker_shard_status() IS
    'This shard''s index and count (NULL when not a shard), its unfinished tasks and its ready steps: what the tasker_proxy router reads';

/* ---- issue 13: privilege levels and tenant isolation ---- */

/*
 * Four levels of rights, each a NOLOGIN group role.  Roles belong to the
 * cluster, not to a database: the first CREATE EXTENSION creates them,
 * later ones (other databases) find them, and DROP EXTENSION leaves them.
 * tasker_operator is a member of tasker_reader, and tasker_admin of
 * tasker_operator, so each level has the rights of the ones below it;
 * tasker_worker stands apart (the claim protocol only).  A role of these
 * names that can log in, or is a superuser, is refused: granting a
 * level to an existing account must be a decision, not a side effect.
 */
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['tasker_reader', 'tasker_operator', 'tasker_admin', 'tasker_worker'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                       WHERE rolname = r AND (rolcanlogin OR rolsuper OR rolbypassrls)) THEN
            RAISE EXCEPTION 'role "%" exists and can log in, or is a superuser', r
                USING ERRCODE = 'duplicate_object',
                      DETAIL = 'tasker uses this name for the group role of a level of rights.',
                      HINT = 'Rename that role, or make it NOLOGIN NOSUPERUSER NOBYPASSRLS, then create the extension again.';
        END IF;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members
                    WHERE roleid = 'tasker_reader'::regrole AND member = 'tasker_operator'::regrole) THEN
        GRANT tasker_reader TO tasker_operator;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members
                    WHERE roleid = 'tasker_operator'::regrole AND member = 'tasker_admin'::regrole) THEN
        GRANT tasker_operator TO tasker_admin;
    END IF;
END
$roles$;
GRANT USAGE ON SCHEMA @extschema@ TO tasker_reader, tasker_worker;

/*
 * Tenant isolation: which role may act at which level in which namespace.
 * Read only under tasker.namespace_isolation = on (src/security.c, and
 * the row-level security policies below).  A grant may name a namespace
 * that has no template yet.
 */
CREATE TABLE @extschema@.tasker_namespace_grants (
    grantee     regrole NOT NULL,
    namespace   text NOT NULL CHECK (namespace <> ''),
    level       text NOT NULL CHECK (level IN ('reader', 'operator', 'admin')),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grantee, namespace, level)
);
CREATE INDEX tasker_namespace_grants_namespace_idx
    ON @extschema@.tasker_namespace_grants (namespace);
COMMENT ON TABLE @extschema@.tasker_namespace_grants IS
    'Under tasker.namespace_isolation: the namespaces each role may see (reader), control and create tasks in (operator) or register templates in (admin)';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tasker_namespace_grants', '');

CREATE FUNCTION @extschema@.tasker_grant_namespace(role regrole, namespace text, level text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL OR namespace IS NULL OR level IS NULL THEN
        RAISE EXCEPTION 'role, namespace and level must not be null'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Call tasker_grant_namespace(''app''::regrole, ''billing'', ''operator'').';
    END IF;
    IF level NOT IN ('reader', 'operator', 'admin') THEN
        RAISE EXCEPTION 'unknown namespace level "%"', level
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The namespace levels are reader, operator and admin; external workers are kept apart by queue, not by namespace.',
                  HINT = 'reader sees the namespace, operator also creates and controls its tasks, admin also registers its templates.';
    END IF;
    IF namespace = '' THEN
        RAISE EXCEPTION 'namespace must not be empty'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the namespace_name of the templates, such as ''default''.';
    END IF;
    INSERT INTO @extschema@.tasker_namespace_grants (grantee, namespace, level)
    VALUES (role, namespace, level)
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_grant_namespace(regrole, text, text) IS
    'Under tasker.namespace_isolation, let a role (and its members) act at a level (reader, operator, admin) in a namespace; false when it already could';

CREATE FUNCTION @extschema@.tasker_revoke_namespace(role regrole, namespace text, level text DEFAULT NULL)
RETURNS integer
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM @extschema@.tasker_namespace_grants g
         WHERE g.grantee = $1 AND g.namespace = $2 AND ($3 IS NULL OR g.level = $3)
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
COMMENT ON FUNCTION @extschema@.tasker_revoke_namespace(regrole, text, text) IS
    'Take back the grants of a role on a namespace (of one level, or all when level is NULL); returns how many were removed';

CREATE FUNCTION @extschema@.tasker_sees_all_namespaces()
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_sees_all_namespaces_sql'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.tasker_sees_all_namespaces() IS
    'Whether the current role sees every namespace: tasker.namespace_isolation is off, or it is a superuser or has the privileges of the extension''s owner (used by the row-level security policies)';

/*
 * The one classification of tasker's functions.  Each function name (all
 * its overloads alike) has the levels whose group role gets EXECUTE:
 * admin, operator, reader, worker; public (every role: what a handler,
 * running as its template's owner, calls, and pure helpers); owner (no
 * grant: the extension's owner and superusers only).  A new function is
 * added HERE, with the levels that may call it; tasker_apply_privileges(),
 * which must stay the LAST statement of this script, applies the list and
 * refuses to finish while a tasker function is missing from it, and
 * test/pgtap/013_privileges.sql fails on any function whose privileges do
 * not match the list.  Names of functions that issues 10 to 12 announce
 * are listed ahead: a name without a function changes nothing.
 */
CREATE FUNCTION @extschema@.tasker_function_levels()
RETURNS TABLE (function_name text, levels text[])
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
    -- admin: templates, handlers, schedules, limits, subscriptions, retention
    ('tasker_register_template', '{admin}'::text[]),
    ('tasker_register_template_file', '{admin}'),
    ('tasker_register_templates', '{admin}'),
    ('tasker_register_handler', '{admin}'),
    ('tasker_schedule', '{admin}'),
    ('tasker_unschedule', '{admin}'),
    ('tasker_pause_schedule', '{admin}'),
    ('tasker_resume_schedule', '{admin}'),
    ('tasker_set_namespace_limit', '{admin}'),
    ('tasker_namespace_slot', '{owner}'),
    ('tasker_subscribe', '{admin}'),
    ('tasker_unsubscribe', '{admin}'),
    ('tasker_purge', '{admin}'),
    ('tasker_prune_event_log', '{admin}'),
    ('tasker_purge_batch', '{admin}'),
    ('tasker_purge_check', '{admin}'),
    ('tasker_purge_in_batches', '{admin}'),
    ('tasker_fire_schedule', '{admin}'),
    ('tasker_shard_configure', '{admin}'),
    -- operator: create tasks and control them
    ('tasker_create_task', '{operator}'),
    ('tasker_cancel_task', '{operator}'),
    ('tasker_retry_task', '{operator}'),
    ('tasker_resolve_step', '{operator}'),
    ('tasker_cancel_step', '{operator}'),
    ('tasker_run_task', '{operator}'),
    ('tasker_run_steps', '{operator}'),
    ('tasker_wait_for_task', '{operator}'),
    ('tasker_http_preview', '{operator}'),
    ('tasker_signal', '{operator}'),
    ('tasker_pause_task', '{operator}'),
    ('tasker_resume_task', '{operator}'),
    ('tasker_pause_namespace', '{operator}'),
    ('tasker_resume_namespace', '{operator}'),
    ('tasker_annotate_task', '{operator}'),
    ('tasker_publish_event', '{operator,worker}'),
    -- reader: reports, health, metrics, events (run as the caller: RLS applies)
    ('tasker_task_execution_context', '{reader}'),
    ('tasker_step_readiness_status', '{reader}'),
    ('tasker_dependency_levels', '{reader}'),
    ('tasker_step_depths', '{reader}'),
    ('tasker_check', '{reader}'),
    ('tasker_worker_status', '{reader}'),
    ('tasker_http_stats', '{reader}'),
    ('tasker_system_health', '{reader}'),
    ('tasker_analytics_metrics', '{reader}'),
    ('tasker_slowest_steps', '{reader}'),
    ('tasker_slowest_tasks', '{reader}'),
    ('tasker_health', '{reader}'),
    ('tasker_task_summary', '{reader}'),
    ('tasker_task_diagram', '{reader}'),
    ('tasker_template_diagram', '{reader}'),
    ('tasker_task_graph', '{reader}'),
    ('tasker_task_bottlenecks', '{reader}'),
    ('tasker_critical_path', '{reader}'),
    ('tasker_require_task', '{reader}'),
    ('tasker_template_for', '{reader}'),
    ('tasker_check_window', '{reader}'),
    ('tasker_state_styles', '{reader}'),
    ('tasker_events_since', '{reader}'),
    ('tasker_metrics', '{reader}'),
    ('tasker_metrics_prometheus', '{reader}'),
    ('tasker_tasks_by_annotation', '{reader}'),
    ('tasker_ready_backlog', '{reader}'),
    ('tasker_task_spans', '{reader}'),
    ('tasker_shard_status', '{reader}'),
    ('tasker_shard_range', '{reader}'),
    -- worker: the external workers' protocol (issue 7)
    ('tasker_claim_steps', '{worker}'),
    ('tasker_complete_step', '{worker}'),
    ('tasker_complete_steps', '{worker}'),
    ('tasker_fail_step', '{worker}'),
    ('tasker_extend_lease', '{worker}'),
    ('tasker_release_step', '{worker}'),
    -- public: called by handlers, pure helpers, the RLS policies' test
    ('tasker_permanent_error', '{public}'),
    ('tasker_retry_error', '{public}'),
    ('tasker_running_step', '{public}'),
    ('tasker_allowed_transitions', '{public}'),
    ('tasker_validate_json', '{public}'),
    ('tasker_render_diagram', '{public}'),
    ('tasker_bottleneck_config', '{public}'),
    ('tasker_sees_all_namespaces', '{public}'),
    ('tasker_span_id', '{public}'),
    -- owner: raw state changes, and the privileges themselves
    ('tasker_transition_task', '{owner}'),
    ('tasker_transition_step', '{owner}'),
    ('tasker_step_claim_key', '{owner}'),
    ('tasker_count_states', '{owner}'),
    ('tasker_state_count_errors', '{reader}'),
    ('tasker_recount_states', '{admin}'),
    ('tasker_shard_move_sequence', '{owner}'),
    ('tasker_grant_namespace', '{owner}'),
    ('tasker_revoke_namespace', '{owner}'),
    ('tasker_function_levels', '{owner}'),
    ('tasker_apply_privileges', '{owner}')
$$;
COMMENT ON FUNCTION @extschema@.tasker_function_levels() IS
    'The levels (admin, operator, reader, worker, public, owner) that may execute each tasker function, by name: the one place a function is classified';

/*
 * tasker_apply_privileges: make the privileges match the classification.
 * Functions: EXECUTE for the levels listed, taken from PUBLIC and from the
 * other levels; a reader function runs as its caller (SECURITY INVOKER),
 * so that row-level security decides what it reads.  Tables and views:
 * SELECT for tasker_reader, nothing for PUBLIC.  Runtime tables (every
 * table with a task_id column, and tasker_tasks): row-level security with
 * one SELECT policy, tasker_namespace_isolation, which passes every row
 * for a role that sees every namespace and otherwise only the rows of
 * tasks in namespaces granted to the role (through its memberships).  The
 * table owner (the extension's owner, as whom tasker's C functions do
 * their work) is not subject to it.  Idempotent.
 */
CREATE FUNCTION @extschema@.tasker_apply_privileges()
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname = 'tasker');
    f record;
    r record;
    lvl text;
    missing text;
BEGIN
    SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1) INTO missing
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_proc p ON p.oid = d.objid
     WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
       AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext
       AND p.proname::text NOT IN (SELECT l.function_name FROM @extschema@.tasker_function_levels() l);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'tasker functions without a level: %', missing
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Classify each in tasker_function_levels() (sql/tasker--0.1.0--0.2.0.sql, issue 13 section).';
    END IF;
    FOR f IN
        SELECT p.oid::regprocedure AS fn, p.prosecdef, l.levels
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
          JOIN @extschema@.tasker_function_levels() l ON l.function_name = p.proname::text
         WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC, tasker_admin, tasker_operator, tasker_reader, tasker_worker', f.fn);
        FOREACH lvl IN ARRAY f.levels LOOP
            IF lvl = 'public' THEN
                EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO PUBLIC', f.fn);
            ELSIF lvl IN ('admin', 'operator', 'reader', 'worker') THEN
                EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %I', f.fn, 'tasker_' || lvl);
            ELSIF lvl <> 'owner' THEN
                RAISE EXCEPTION 'unknown level "%" for %', lvl, f.fn
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END LOOP;
        IF 'reader' = ANY (f.levels) AND f.prosecdef THEN
            EXECUTE pg_catalog.format('ALTER FUNCTION %s SECURITY INVOKER', f.fn);
        END IF;
    END LOOP;
    FOR r IN
        SELECT c.oid::regclass AS rel, c.relkind,
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attname = 'task_id'
                          AND a.attnum > 0 AND NOT a.attisdropped) AS has_task_id
          FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e'
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', r.rel);
        IF r.relkind = 'S' THEN
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO tasker_reader', r.rel);
        IF r.relkind = 'v' THEN
            EXECUTE pg_catalog.format('ALTER VIEW %s SET (security_invoker = true)', r.rel);
        END IF;
        IF r.relkind IN ('r', 'p') AND r.rel::text LIKE '%tasker_event_log' THEN
            /* The durable event log: each event names its namespace. */
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.rel);
            EXECUTE pg_catalog.format('DROP POLICY IF EXISTS tasker_namespace_isolation ON %s', r.rel);
            EXECUTE pg_catalog.format($p$
                CREATE POLICY tasker_namespace_isolation ON %s FOR SELECT
                USING ((SELECT @extschema@.tasker_sees_all_namespaces())
                       OR (event->>'namespace') IN (
                          SELECT g.namespace FROM @extschema@.tasker_namespace_grants g
                           WHERE pg_catalog.pg_has_role(g.grantee::oid, 'USAGE')))$p$, r.rel);
            CONTINUE;
        END IF;
        IF r.relkind IN ('r', 'p') AND r.rel::text LIKE '%tasker_state_counts' THEN
            /* Counts of every namespace together: for roles that see them all. */
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.rel);
            EXECUTE pg_catalog.format('DROP POLICY IF EXISTS tasker_namespace_isolation ON %s', r.rel);
            EXECUTE pg_catalog.format($p$
                CREATE POLICY tasker_namespace_isolation ON %s FOR SELECT
                USING ((SELECT @extschema@.tasker_sees_all_namespaces()))$p$, r.rel);
            CONTINUE;
        END IF;
        IF r.relkind NOT IN ('r', 'p') OR NOT (r.has_task_id OR r.rel = '@extschema@.tasker_tasks'::regclass) THEN
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', r.rel);
        EXECUTE pg_catalog.format('DROP POLICY IF EXISTS tasker_namespace_isolation ON %s', r.rel);
        IF r.rel = '@extschema@.tasker_tasks'::regclass THEN
            EXECUTE pg_catalog.format($p$
                CREATE POLICY tasker_namespace_isolation ON %s FOR SELECT
                USING ((SELECT @extschema@.tasker_sees_all_namespaces())
                       OR named_task_id IN (
                          SELECT nt.named_task_id
                            FROM @extschema@.tasker_named_tasks nt
                            JOIN @extschema@.tasker_task_namespaces ns
                              ON ns.task_namespace_id = nt.task_namespace_id
                            JOIN @extschema@.tasker_namespace_grants g
                              ON g.namespace = ns.name::text
                           WHERE pg_catalog.pg_has_role(g.grantee::oid, 'USAGE')))$p$, r.rel);
        ELSE
            EXECUTE pg_catalog.format($p$
                CREATE POLICY tasker_namespace_isolation ON %s FOR SELECT
                USING ((SELECT @extschema@.tasker_sees_all_namespaces())
                       OR task_id IN (SELECT t.task_id FROM @extschema@.tasker_tasks t))$p$, r.rel);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_apply_privileges() IS
    'Grant each function to the levels tasker_function_levels() lists (and nothing to PUBLIC beyond them), SELECT on every table and view to tasker_reader, and row-level security on the runtime tables; raises when a tasker function has no level';


/* ---- issue 13: every table and sequence of tasker is dumped (after every CREATE TABLE) ---- */

/*
 * pg_dump dumps an extension's tables only when they are marked as its
 * configuration.  0.1.0 marked its own; this marks every table added
 * since, and the sequences they own, so that pg_dump and pg_restore carry
 * live tasks and their ids across (test/tap/097_dump_restore.pl).  It is
 * after every section that creates a table, so that it reaches them all.
 */
DO $dump$
DECLARE
    rel regclass;
    ext oid := (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'tasker');
BEGIN
    FOR rel IN
        SELECT c.oid::regclass
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid AND d.classid = 'pg_catalog.pg_class'::regclass
         WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext
           AND d.deptype = 'e' AND c.relkind IN ('r', 'p')
           AND c.oid <> ALL (COALESCE((SELECT extconfig FROM pg_catalog.pg_extension WHERE oid = ext), '{}'))
         ORDER BY c.relname
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(rel, '');
        PERFORM pg_catalog.pg_extension_config_dump(s.objid::regclass, '')
           FROM pg_catalog.pg_depend s
           JOIN pg_catalog.pg_class sc ON sc.oid = s.objid AND sc.relkind = 'S'
          WHERE s.refobjid = rel AND s.deptype IN ('a', 'i');
    END LOOP;
END
$dump$;

/* Keep this the last statement of the script (see tasker_function_levels). */
SELECT @extschema@.tasker_apply_privileges();
