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
           AND c.relkind IN ('r', 'S')
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
