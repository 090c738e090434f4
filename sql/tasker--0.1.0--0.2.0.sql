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
