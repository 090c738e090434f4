-- 013_privileges: the privilege model of issue 13, read from the catalog.
-- Every tasker function is classified once (tasker_function_levels) and
-- its privileges match the classification; PUBLIC holds nothing on the
-- tables, views and sequences; the runtime tables have row-level
-- security; nothing tasker runs depends on the caller's search_path.
-- These checks read whatever functions and tables exist, so a function
-- or table added later is checked too.
BEGIN;
SELECT plan(16);

CREATE TEMP VIEW ext_functions AS
SELECT p.oid, p.oid::regprocedure::text AS signature, p.proname::text AS name,
       p.prosecdef, p.proconfig, l.lanname, p.proacl, p.prokind
  FROM pg_depend d
  JOIN pg_proc p ON p.oid = d.objid
  JOIN pg_language l ON l.oid = p.prolang
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker');

CREATE TEMP VIEW ext_relations AS
SELECT c.oid, c.oid::regclass::text AS name, c.relkind, c.relacl, c.relrowsecurity,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'task_id'
                 AND a.attnum > 0 AND NOT a.attisdropped) AS has_task_id
  FROM pg_depend d
  JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker');

-- Whether a grantee (0 for PUBLIC) holds EXECUTE on a function directly.
CREATE FUNCTION pg_temp.direct_execute(acl aclitem[], grantee oid) RETURNS boolean
LANGUAGE sql AS $$
    SELECT CASE WHEN acl IS NULL THEN grantee = 0
                ELSE EXISTS (SELECT 1 FROM aclexplode(acl) a
                              WHERE a.grantee = $2 AND a.privilege_type = 'EXECUTE') END
$$;

-- The four levels are NOLOGIN group roles, nested admin > operator > reader.
SELECT is((SELECT array_agg(rolname::text ORDER BY rolname) FROM pg_roles
            WHERE rolname IN ('tasker_admin', 'tasker_operator', 'tasker_reader', 'tasker_worker')
              AND NOT rolcanlogin AND NOT rolsuper AND NOT rolbypassrls),
          ARRAY['tasker_admin', 'tasker_operator', 'tasker_reader', 'tasker_worker'],
          'the four levels are NOLOGIN roles without superuser or BYPASSRLS');
SELECT ok(pg_has_role('tasker_admin', 'tasker_operator', 'USAGE')
          AND pg_has_role('tasker_operator', 'tasker_reader', 'USAGE')
          AND NOT pg_has_role('tasker_reader', 'tasker_operator', 'USAGE')
          AND NOT pg_has_role('tasker_worker', 'tasker_reader', 'USAGE')
          AND NOT pg_has_role('tasker_admin', 'tasker_worker', 'USAGE'),
          'admin has the rights of operator, operator of reader; worker stands apart');

-- One classification, complete and applied.
SELECT is((SELECT array_agg(signature ORDER BY signature) FROM ext_functions f
            WHERE NOT EXISTS (SELECT 1 FROM tasker_function_levels() l WHERE l.function_name = f.name)),
          NULL,
          'every tasker function has a level in tasker_function_levels() (add a new one there)');
SELECT is((SELECT array_agg(DISTINCT lvl ORDER BY lvl)
             FROM tasker_function_levels() l, unnest(l.levels) lvl
            WHERE lvl NOT IN ('admin', 'operator', 'reader', 'worker', 'public', 'owner')),
          NULL, 'the classification names only known levels');
SELECT is((SELECT array_agg(f.signature || ' ' || coalesce(f.proacl::text, '(default: PUBLIC)') ORDER BY 1)
             FROM ext_functions f JOIN tasker_function_levels() l ON l.function_name = f.name
            WHERE pg_temp.direct_execute(f.proacl, 0) <> ('public' = ANY (l.levels))
               OR pg_temp.direct_execute(f.proacl, 'tasker_admin'::regrole) <> ('admin' = ANY (l.levels))
               OR pg_temp.direct_execute(f.proacl, 'tasker_operator'::regrole) <> ('operator' = ANY (l.levels))
               OR pg_temp.direct_execute(f.proacl, 'tasker_reader'::regrole) <> ('reader' = ANY (l.levels))
               OR pg_temp.direct_execute(f.proacl, 'tasker_worker'::regrole) <> ('worker' = ANY (l.levels))),
          NULL,
          'each function is executable by exactly the levels of its class (tasker_apply_privileges() ran last)');
SELECT is((SELECT array_agg(signature ORDER BY signature) FROM ext_functions
            WHERE pg_temp.direct_execute(proacl, 0)
              AND name NOT IN ('tasker_permanent_error', 'tasker_retry_error', 'tasker_running_step',
                               'tasker_allowed_transitions', 'tasker_validate_json',
                               'tasker_render_diagram', 'tasker_bottleneck_config',
                               'tasker_sees_all_namespaces', 'tasker_span_id')),
          NULL,
          'PUBLIC executes only what handlers call and pure helpers');
SELECT ok(NOT has_function_privilege('tasker_admin', 'tasker_claim_steps(text, text, integer, interval, interval)', 'EXECUTE')
          AND NOT has_function_privilege('tasker_worker', 'tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text, integer, text)', 'EXECUTE')
          AND NOT has_function_privilege('tasker_worker', 'tasker_health()', 'EXECUTE')
          AND NOT has_function_privilege('tasker_reader', 'tasker_cancel_task(bigint, text)', 'EXECUTE')
          AND NOT has_function_privilege('tasker_operator', 'tasker_register_template(text, boolean)', 'EXECUTE')
          AND has_function_privilege('tasker_admin', 'tasker_cancel_task(bigint, text)', 'EXECUTE')
          AND has_function_privilege('tasker_operator', 'tasker_task_summary(bigint)', 'EXECUTE'),
          'no level reaches another level''s functions except through the admin > operator > reader chain');
SELECT ok(NOT has_function_privilege('tasker_admin', 'tasker_transition_task(bigint, text, jsonb)', 'EXECUTE')
          AND NOT has_function_privilege('tasker_admin', 'tasker_grant_namespace(regrole, text, text)', 'EXECUTE')
          AND NOT has_function_privilege('tasker_admin', 'tasker_apply_privileges()', 'EXECUTE'),
          'raw transitions and the privileges themselves stay with the owner');

-- Tables, views, sequences: nothing for PUBLIC, SELECT for readers.
SELECT is((SELECT array_agg(name ORDER BY name) FROM ext_relations r
            WHERE r.relacl IS NULL
               OR EXISTS (SELECT 1 FROM aclexplode(r.relacl) a WHERE a.grantee = 0)),
          NULL, 'PUBLIC holds no privilege on any tasker table, view or sequence');
SELECT is((SELECT array_agg(name ORDER BY name) FROM ext_relations r
            WHERE r.relkind IN ('r', 'p', 'v', 'm')
              AND NOT has_table_privilege('tasker_reader', r.oid, 'SELECT')),
          NULL, 'tasker_reader may SELECT every table and view');
SELECT is((SELECT array_agg(name || ' ' || p ORDER BY 1) FROM ext_relations r,
                  unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
            WHERE r.relkind IN ('r', 'p')
              AND (has_table_privilege('tasker_admin', r.oid, p)
                   OR has_table_privilege('tasker_worker', r.oid, p))),
          NULL, 'no level may write a table: the functions do, as the owner');
SELECT is((SELECT array_agg(name ORDER BY name) FROM ext_relations r
            WHERE r.relkind IN ('r', 'p') AND r.has_task_id
              AND NOT (r.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p
                                                   WHERE p.polrelid = r.oid
                                                     AND p.polname = 'tasker_namespace_isolation'))),
          NULL, 'every runtime table (with a task_id) has row-level security and the isolation policy');

-- search_path: every SQL function pins it; readers run as their caller.
-- A procedure that commits (tasker_purge_in_batches) cannot carry a SET
-- clause; its body qualifies every name and operator instead.
SELECT is((SELECT array_agg(signature ORDER BY signature) FROM ext_functions
            WHERE lanname IN ('sql', 'plpgsql') AND prokind = 'f'
              AND NOT EXISTS (SELECT 1 FROM unnest(proconfig) c
                               WHERE c LIKE 'search_path=pg_catalog, pg_temp')),
          NULL, 'every SQL and PL/pgSQL function pins search_path to pg_catalog, pg_temp');
SELECT is((SELECT array_agg(signature ORDER BY signature) FROM ext_functions
            WHERE prosecdef
              AND NOT EXISTS (SELECT 1 FROM unnest(proconfig) c
                               WHERE c LIKE 'search_path=pg_catalog, pg_temp')),
          NULL, 'no SECURITY DEFINER function runs with the caller''s search_path');
SELECT is((SELECT array_agg(f.signature ORDER BY 1) FROM ext_functions f
             JOIN tasker_function_levels() l ON l.function_name = f.name
            WHERE 'reader' = ANY (l.levels) AND f.prosecdef),
          NULL, 'reader functions run as the caller, so row-level security applies to them');
SELECT is((SELECT array_agg(name ORDER BY name) FROM ext_relations r
             JOIN pg_class c ON c.oid = r.oid
            WHERE r.relkind = 'v' AND NOT coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)),
          NULL, 'views read with the caller''s rights (security_invoker)');

SELECT * FROM finish();
ROLLBACK;
