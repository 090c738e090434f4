/*
 * tasker_proxy--0.2.0.sql: the router of a scaled-out tasker (issue 14).
 *
 * The router is a database with this extension and no tasks.  Its shards
 * are ordinary tasker installations, each with its own workers, listed
 * in one PL/Proxy cluster, the SQL/MED server tasker_shards (partition
 * pN is shard N).  Rules:
 *   - a task lives whole on one shard; task and step ids carry the shard
 *     index in their high bits (id >> 48, tasker_shard_configure on the
 *     shard), so a call that names a task or step routes without a
 *     lookup;
 *   - the router offers tasker's API under the same names and arguments;
 *     each routed function is a PL/pgSQL wrapper around a PL/Proxy
 *     function tasker_proxy_call_X(target_shard, arguments...) that runs
 *     X on that shard (generated from one list below, so a new argument
 *     is one edit);
 *   - a shard's error reaches the caller with its own SQLSTATE, message,
 *     detail and hint (PL/Proxy's "REMOTE ERROR" prefixes removed); a
 *     shard that cannot be reached raises 08006 naming the shard;
 *   - tasks with an identity key go to shard hashtext(key) & (count - 1),
 *     so deduplication holds across shards; others go to the least
 *     loaded reachable shard, and to another when that one is down;
 *   - templates, handlers and namespace caps set through the router run
 *     on every shard and are kept in tasker_proxy_registry, so a shard
 *     added later gets them with tasker_proxy_sync_shard(shard);
 *   - reads that span tasks (metrics, health, analytics, the event log)
 *     are merged here, with the shard in a column or label; a shard that
 *     is down is reported, not fatal.
 * PL/Proxy runs each remote call in autocommit: nothing here is a
 * distributed transaction, and nothing needs one (docs/scale-out.md).
 *
 * IDENTIFICATION contrib/tasker_proxy/tasker_proxy--0.2.0.sql
 */
\echo Use "CREATE EXTENSION tasker_proxy" to load this file. \quit

/* ---- the shard list ---- */

/*
 * tasker_proxy_connstrs: the shards' connection strings, in shard order
 * (partition options p0, p1, ... of the server tasker_shards); empty
 * before tasker_proxy_set_shards.
 */
CREATE FUNCTION @extschema@.tasker_proxy_connstrs()
RETURNS text[]
LANGUAGE sql STABLE
AS $$
    SELECT COALESCE(pg_catalog.array_agg(pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1)
                        ORDER BY pg_catalog.substr(o, 2, pg_catalog.strpos(o, '=') - 2)::integer),
                    '{}')
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
     WHERE s.srvname = 'tasker_shards' AND o OPERATOR(pg_catalog.~) '^p[0-9]+='
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_connstrs() IS
    'The shards'' connection strings in shard order (the partitions of the PL/Proxy cluster tasker_shards)';

/* tasker_proxy_require_shards: the shard count; raises when there is none. */
CREATE FUNCTION @extschema@.tasker_proxy_require_shards()
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    n integer;
BEGIN
    /* On every routed call: the cheapest form of the count. */
    SELECT count(*) INTO n
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
     WHERE s.srvname = 'tasker_shards' AND o OPERATOR(pg_catalog.~) '^p[0-9]+=';
    IF n = 0 THEN
        RAISE EXCEPTION 'the tasker router has no shards'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The PL/Proxy cluster tasker_shards is not defined in this database.',
                  HINT = 'Call tasker_proxy_set_shards(ARRAY[''host=... dbname=...'', ...]) with a power-of-two number of shards.';
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_require_shards() IS
    'Internal: the number of shards, or an error when the router has none';

/*
 * tasker_proxy_shard_of: the shard of a task or step id (its high bits).
 * kind names the id in errors ('task', 'step').
 */
CREATE FUNCTION @extschema@.tasker_proxy_shard_of(id bigint, kind text DEFAULT 'task')
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    n integer := @extschema@.tasker_proxy_require_shards();
    s bigint;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION '% id must not be null', kind
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The router finds the shard of a task or step from its id.',
                  HINT = 'Pass the id that tasker_create_task or tasker_claim_steps returned.';
    END IF;
    s := id >> 48;
    IF id <= 0 OR s >= n THEN
        RAISE EXCEPTION '% % belongs to no shard of this router', kind, id
            USING ERRCODE = 'undefined_object',
                  DETAIL = pg_catalog.format('Ids carry their shard in their high bits: %s >> 48 = %s, and the router has %s shards (0 to %s).', id, s, n, n - 1),
                  HINT = 'The id was not made by this installation, or a shard is missing from tasker_proxy_set_shards.';
    END IF;
    RETURN s::integer;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_shard_of(bigint, text) IS
    'The shard of a task or step id: id >> 48, checked against the shard count';

/* tasker_proxy_shard_of_key: the shard of an identity key or job name. */
CREATE FUNCTION @extschema@.tasker_proxy_shard_of_key(key text, kind text DEFAULT 'identity key')
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF key IS NULL THEN
        RAISE EXCEPTION '% must not be null', kind
            USING ERRCODE = 'null_value_not_allowed',
                  DETAIL = 'The router places a keyed call on the shard hashtext(key) & (shard count - 1).',
                  HINT = 'Pass a key.';
    END IF;
    RETURN pg_catalog.hashtext(key) & (@extschema@.tasker_proxy_require_shards() - 1);
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_shard_of_key(text, text) IS
    'The shard of an identity key or schedule name: hashtext(key) & (shard count - 1)';

/*
 * tasker_proxy_unreachable: whether an error caught around a PL/Proxy
 * call means the shard could not be reached (PL/Proxy's own error,
 * SQLSTATE XX000, as opposed to an error the shard raised, which PL/Proxy
 * passes on with its SQLSTATE and a "REMOTE ERROR" prefix).
 */
CREATE FUNCTION @extschema@.tasker_proxy_unreachable(state text, message text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT state = 'XX000' AND pg_catalog.strpos(message, 'REMOTE ERROR: ') = 0
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_unreachable(text, text) IS
    'Internal: whether an error caught around a PL/Proxy call is the shard being unreachable';

/* tasker_proxy_masked: a connection string without its password. */
CREATE FUNCTION @extschema@.tasker_proxy_masked(connstr text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT pg_catalog.regexp_replace(connstr, 'password\s*=\s*(''[^'']*''|\S+)', 'password=***', 'g')
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_masked(text) IS
    'Internal: a connection string with its password masked, for messages';

/*
 * tasker_proxy_reraise: raise again an error caught around a call on a
 * shard: the shard's own error as the shard raised it, or 08006 naming
 * the shard when it could not be reached.
 */
CREATE FUNCTION @extschema@.tasker_proxy_reraise(shard integer, state text, message text,
                                                 detail text, hint text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    m text := message;
    d text := COALESCE(pg_catalog.regexp_replace(detail, '^Remote detail: ', ''), '');
    h text := COALESCE(pg_catalog.regexp_replace(hint, '^Remote hint: ', ''), '');
BEGIN
    IF @extschema@.tasker_proxy_unreachable(state, message) THEN
        RAISE EXCEPTION 'tasker shard % is unreachable', shard
            USING ERRCODE = 'connection_failure',
                  DETAIL = pg_catalog.format('Shard %s (%s): %s', shard,
                               @extschema@.tasker_proxy_masked((@extschema@.tasker_proxy_connstrs())[shard + 1]),
                               pg_catalog.regexp_replace(message, '^.*?\]\s*', '')),
                  HINT = 'The shard''s tasks wait on it until it is back; SELECT * FROM tasker_proxy_shards shows each shard. Tasks without an identity key are created on the other shards meanwhile.';
    END IF;
    IF pg_catalog.strpos(m, 'REMOTE ERROR: ') > 0 THEN
        m := pg_catalog.substr(m, pg_catalog.strpos(m, 'REMOTE ERROR: ') + 14);
    END IF;
    IF d <> '' AND h <> '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = m, DETAIL = d, HINT = h;
    ELSIF d <> '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = m, DETAIL = d;
    ELSIF h <> '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = m, HINT = h;
    END IF;
    RAISE EXCEPTION USING ERRCODE = state, MESSAGE = m;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_reraise(integer, text, text, text, text) IS
    'Internal: raise again an error caught around a call on a shard (the shard''s own error unchanged, or 08006 naming an unreachable shard)';

/* ---- what the router remembers: templates and handlers ---- */

/*
 * Every template and handler registered through the router, in order,
 * so that tasker_proxy_sync_shard can give them to a shard added later
 * (or one that was down when they were registered).
 */
CREATE TABLE @extschema@.tasker_proxy_registry (
    entry_id        bigserial PRIMARY KEY,
    call            text NOT NULL CHECK (call IN ('tasker_register_template', 'tasker_register_templates',
                                                  'tasker_register_handler', 'tasker_proxy_register_handler',
                                                  'tasker_set_namespace_limit')),
    args            text[] NOT NULL,
    missing_shards  integer[] NOT NULL DEFAULT '{}',
    registered_by   name NOT NULL DEFAULT current_user,
    registered_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.tasker_proxy_registry IS
    'The templates and handlers registered through the router, in order: what tasker_proxy_sync_shard replays on a shard';
COMMENT ON COLUMN @extschema@.tasker_proxy_registry.missing_shards IS
    'The shards that have not had this registration: down when it was made, or added since; tasker_proxy_sync_shard removes them';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tasker_proxy_registry', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tasker_proxy_registry_entry_id_seq', '');

/* ---- the PL/Proxy functions, and the routed API generated from one list ---- */

/* The row types of two of tasker's reports, as on a shard. */
CREATE TYPE @extschema@.tasker_task_execution_context AS (
    task_id bigint, named_task_id integer, status text, total_steps bigint, pending_steps bigint,
    in_progress_steps bigint, completed_steps bigint, failed_steps bigint, ready_steps bigint,
    execution_status text, recommended_action text, completion_percentage numeric, health_status text,
    skipped_steps bigint, waiting_steps bigint);
COMMENT ON TYPE @extschema@.tasker_task_execution_context IS
    'A row of tasker_task_execution_context, as on a shard';
CREATE TYPE @extschema@.tasker_step_readiness AS (
    workflow_step_id bigint, task_id bigint, named_step_id integer, name text, current_state text,
    dependencies_satisfied boolean, retry_eligible boolean, ready_for_execution boolean,
    last_failure_at timestamptz, next_retry_at timestamptz, total_parents integer, completed_parents integer,
    attempts integer, retry_limit integer, backoff_request_seconds integer, last_attempted_at timestamptz,
    step_type text, map_parent_id bigint, map_index integer, waiting_for text, waiting_detail jsonb);
COMMENT ON TYPE @extschema@.tasker_step_readiness IS
    'A row of tasker_step_readiness_status, as on a shard';

/*
 * Each row: a tasker function (its name and arguments as on a shard, with
 * their defaults), its result, and how the router routes it:
 *   id:ARG    on the shard of the task or step id in ARG
 *   key:ARG   on the shard hashtext(ARG) & (count - 1)
 *   all       on every shard in order; the first shard's result
 *   inner     only the PL/Proxy function (the wrapper is written below)
 * From each row come tasker_proxy_call_NAME(target_shard, ...), a PL/Proxy
 * function that runs NAME on one shard, and (unless inner) the wrapper of
 * the same name and arguments as on a shard.
 */
CREATE FUNCTION @extschema@.tasker_proxy_api()
RETURNS TABLE (fn text, args text[], result text, route text)
LANGUAGE sql IMMUTABLE
AS $$
    VALUES
    ('tasker_create_task', ARRAY['name text', 'context jsonb DEFAULT ''{}''', 'namespace text DEFAULT ''default''',
        'version text DEFAULT NULL', 'initiator text DEFAULT ''unknown''', 'source_system text DEFAULT ''unknown''',
        'reason text DEFAULT ''unknown''', 'tags text[] DEFAULT ''{}''', 'bypass_steps text[] DEFAULT ''{}''',
        'requested_at timestamptz DEFAULT now()', 'identity_key text DEFAULT NULL', 'priority integer DEFAULT 0',
        'traceparent text DEFAULT NULL'],
        'bigint', 'inner'),
    ('tasker_wait_for_task', ARRAY['task_id bigint', 'timeout interval DEFAULT ''60 seconds'''], 'text', 'id:task_id'),
    ('tasker_run_task', ARRAY['task_id bigint', 'timeout interval DEFAULT ''60 seconds'''], 'text', 'id:task_id'),
    ('tasker_cancel_task', ARRAY['task_id bigint', 'reason text DEFAULT NULL'], 'boolean', 'id:task_id'),
    ('tasker_retry_task', ARRAY['task_id bigint'], 'boolean', 'id:task_id'),
    ('tasker_retry_task', ARRAY['task_id bigint', 'reason text'], 'boolean', 'id:task_id'),
    ('tasker_resolve_step', ARRAY['step_id bigint', 'results jsonb DEFAULT ''{}'''], 'boolean', 'id:step_id'),
    ('tasker_resolve_step', ARRAY['step_id bigint', 'results jsonb', 'reason text'], 'boolean', 'id:step_id'),
    ('tasker_resolve_step', ARRAY['task_id bigint', 'step_name text', 'results jsonb', 'reason text DEFAULT NULL'],
        'boolean', 'id:task_id'),
    ('tasker_cancel_step', ARRAY['step_id bigint'], 'boolean', 'id:step_id'),
    ('tasker_cancel_step', ARRAY['task_id bigint', 'step_name text', 'reason text DEFAULT NULL'], 'boolean', 'id:task_id'),
    ('tasker_signal', ARRAY['task_id bigint', 'signal text', 'payload jsonb DEFAULT ''{}'''], 'boolean', 'id:task_id'),
    ('tasker_pause_task', ARRAY['task_id bigint', 'reason text DEFAULT NULL'], 'boolean', 'id:task_id'),
    ('tasker_resume_task', ARRAY['task_id bigint'], 'boolean', 'id:task_id'),
    ('tasker_annotate_task', ARRAY['task_id bigint', 'annotation_type text', 'annotation jsonb'], 'bigint', 'id:task_id'),
    ('tasker_task_summary', ARRAY['task_id bigint'], 'jsonb', 'id:task_id'),
    ('tasker_task_diagram', ARRAY['task_id bigint', 'format text DEFAULT ''mermaid'''], 'text', 'id:task_id'),
    ('tasker_http_preview', ARRAY['step_id bigint'], 'jsonb', 'id:step_id'),
    ('tasker_dependency_levels', ARRAY['task_id bigint'],
        'TABLE(workflow_step_id bigint, dependency_level integer)', 'id:task_id'),
    ('tasker_critical_path', ARRAY['task_id bigint', 'config jsonb DEFAULT ''{}'''],
        'TABLE(path_position integer, workflow_step_id bigint, step_name text, current_state text, attempts integer, duration_seconds numeric, duration_source text, cumulative_seconds numeric)',
        'id:task_id'),
    ('tasker_task_execution_context', ARRAY['task_id bigint', 'as_of timestamptz DEFAULT now()'],
        'SETOF @extschema@.tasker_task_execution_context', 'id:task_id'),
    ('tasker_step_readiness_status', ARRAY['task_id bigint', 'step_ids bigint[] DEFAULT NULL', 'as_of timestamptz DEFAULT now()'],
        'SETOF @extschema@.tasker_step_readiness', 'id:task_id'),
    ('tasker_task_bottlenecks', ARRAY['task_id bigint', 'config jsonb DEFAULT ''{}'''],
        'TABLE(workflow_step_id bigint, step_name text, current_state text, attempts integer, retry_limit integer, dependencies_satisfied boolean, downstream_count integer, blocked_count integer, critical_path_length integer, base_score numeric, path_score numeric, penalty_score numeric, severity_multiplier numeric, impact_score integer, severity text)',
        'id:task_id'),
    ('tasker_complete_step', ARRAY['step_id bigint', 'claim_token uuid', 'results jsonb'], 'boolean', 'id:step_id'),
    ('tasker_fail_step', ARRAY['step_id bigint', 'claim_token uuid', 'error jsonb', 'retryable boolean DEFAULT true',
        'retry_after interval DEFAULT NULL'], 'boolean', 'id:step_id'),
    ('tasker_extend_lease', ARRAY['step_id bigint', 'claim_token uuid', 'lease interval'], 'timestamptz', 'id:step_id'),
    ('tasker_release_step', ARRAY['step_id bigint', 'claim_token uuid'], 'boolean', 'id:step_id'),
    ('tasker_schedule', ARRAY['job_name text', 'schedule text', 'task_name text', 'context jsonb DEFAULT ''{}''',
        'namespace text DEFAULT ''default''', 'version text DEFAULT NULL'], 'bigint', 'key:job_name'),
    ('tasker_unschedule', ARRAY['job_name text'], 'boolean', 'key:job_name'),
    ('tasker_pause_schedule', ARRAY['job_name text'], 'boolean', 'key:job_name'),
    ('tasker_resume_schedule', ARRAY['job_name text'], 'boolean', 'key:job_name'),
    ('tasker_register_template', ARRAY['yaml text', 'replace boolean DEFAULT false'], 'integer', 'all'),
    ('tasker_register_templates', ARRAY['yaml text', 'replace boolean DEFAULT false'], 'integer[]', 'all'),
    ('tasker_register_handler', ARRAY['handler_class text', 'queue text'], 'void', 'all'),
    ('tasker_pause_namespace', ARRAY['namespace text'], 'boolean', 'all'),
    ('tasker_set_namespace_limit', ARRAY['namespace text', 'max_in_progress integer'], 'void', 'all'),
    ('tasker_resume_namespace', ARRAY['namespace text'], 'boolean', 'all'),
    ('tasker_complete_steps', ARRAY['completions jsonb'], 'integer', 'inner'),
    ('tasker_claim_steps', ARRAY['queue text', 'worker_id text', 'max_steps integer DEFAULT 10',
        'lease interval DEFAULT ''5 minutes''', 'wait interval DEFAULT ''0'''],
        'TABLE(step_id bigint, claim_token uuid, lease_expires_at timestamptz, envelope jsonb)', 'inner'),
    ('tasker_shard_status', ARRAY[]::text[],
        'TABLE(shard_index integer, shard_count integer, active_tasks bigint, ready_steps bigint)', 'inner'),
    ('tasker_shard_configure', ARRAY['shard_index integer', 'shard_count integer'], 'boolean', 'inner'),
    ('tasker_metrics', ARRAY[]::text[], 'TABLE(name text, labels jsonb, value double precision)', 'inner'),
    ('tasker_health', ARRAY[]::text[], 'TABLE(check_name text, status text, detail jsonb)', 'inner'),
    ('tasker_events_since', ARRAY['after_id bigint', 'max_events integer DEFAULT 1000'],
        'TABLE(event_id bigint, event jsonb)', 'inner'),
    ('tasker_worker_status', ARRAY[]::text[],
        'TABLE(role text, slot integer, pid integer, state text, steps_run bigint, last_activity timestamptz)', 'inner'),
    ('tasker_system_health', ARRAY[]::text[],
        'TABLE(total_tasks bigint, pending_tasks bigint, in_progress_tasks bigint, complete_tasks bigint, error_tasks bigint, cancelled_tasks bigint, total_steps bigint, pending_steps bigint, in_progress_steps bigint, complete_steps bigint, error_steps bigint, retryable_error_steps bigint, exhausted_retry_steps bigint, in_backoff_steps bigint, active_connections bigint, max_connections bigint, resolved_manually_tasks bigint, cancelled_steps bigint, resolved_manually_steps bigint)',
        'inner'),
    ('tasker_analytics_metrics', ARRAY['since timestamptz DEFAULT now() - interval ''1 hour'''],
        'TABLE(active_tasks_count bigint, total_namespaces_count bigint, unique_task_types_count bigint, system_health_score numeric, task_throughput bigint, completion_count bigint, error_count bigint, completion_rate numeric, error_rate numeric, avg_task_duration numeric, avg_step_duration numeric, step_throughput bigint, analysis_period_start timestamptz, calculated_at timestamptz, tasks_created bigint, p50_task_duration numeric, p95_task_duration numeric, p99_task_duration numeric, p50_step_duration numeric, p95_step_duration numeric, p99_step_duration numeric, step_error_count bigint, step_error_rate numeric)',
        'inner'),
    ('tasker_proxy_register_handler', ARRAY['handler_class text', 'function text'], 'void', 'all')
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_api() IS
    'The routed API: each tasker function the router offers, its arguments and result as on a shard, and its route (id:ARG, key:ARG, all, inner)';

/*
 * tasker_proxy_define: create the PL/Proxy function and the wrapper of one
 * row of tasker_proxy_api().  Run once, at CREATE EXTENSION.
 */
CREATE FUNCTION @extschema@.tasker_proxy_define(fn text, args text[], result text, route text)
RETURNS void
LANGUAGE plpgsql
AS $def$
DECLARE
    a text;
    i integer := 1;
    argname text;
    argtype text;
    inner_args text := 'target_shard integer';
    outer_args text := '';
    plain_args text := '';
    names text := 'target_shard';
    remote_args text := '';
    remote_fn text := CASE fn WHEN 'tasker_proxy_register_handler' THEN 'tasker_register_handler' ELSE fn END;
    inner_fn text := 'tasker_proxy_call_' || pg_catalog.substr(fn, 8);
    returns_set boolean := result ~* '^(TABLE|SETOF)';
BEGIN
    FOREACH a IN ARRAY args LOOP
        i := i + 1;
        argname := pg_catalog.split_part(a, ' ', 1);
        argtype := pg_catalog.regexp_replace(pg_catalog.substr(a, pg_catalog.length(argname) + 2), ' DEFAULT .*$', '');
        IF fn = 'tasker_proxy_register_handler' AND argname = 'function' THEN
            argtype := 'text';
        END IF;
        inner_args := inner_args || ', ' || argname || ' ' || argtype;
        outer_args := outer_args || CASE WHEN i > 2 THEN ', ' ELSE '' END || a;
        plain_args := plain_args || CASE WHEN i > 2 THEN ', ' ELSE '' END || argname || ' ' || argtype;
        names := names || ', ' || argname;
        remote_args := remote_args || CASE WHEN i > 2 THEN ', ' ELSE '' END || pg_catalog.format('$%s::%s', i,
            CASE WHEN fn = 'tasker_proxy_register_handler' AND argname = 'function' THEN 'regprocedure' ELSE argtype END);
    END LOOP;
    /* A void remote call is made to return 1: PL/Proxy needs a result type. */
    EXECUTE pg_catalog.format($f$
        CREATE FUNCTION @extschema@.%I(%s) RETURNS %s LANGUAGE plproxy AS $p$
            CLUSTER 'tasker_shards';
            RUN ON target_shard;
            SELECT %s FROM %s(%s);
        $p$$f$, inner_fn, inner_args, CASE WHEN result = 'void' THEN 'integer' ELSE result END,
        CASE WHEN result = 'void' THEN '1' ELSE '*' END, remote_fn, remote_args);
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION @extschema@.%I(%s) IS %L', inner_fn, inner_args,
        'Internal: run ' || remote_fn || ' on one shard (PL/Proxy)');
    IF route = 'inner' THEN
        RETURN;
    END IF;
    IF route = 'all' THEN
        EXECUTE @extschema@.tasker_proxy_define_all(fn, outer_args, result, inner_fn, names);
    ELSE
        EXECUTE @extschema@.tasker_proxy_define_routed(fn, outer_args, result, inner_fn, names, route, returns_set);
    END IF;
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION @extschema@.%I(%s) IS %L', fn, plain_args,
        CASE WHEN route = 'all' THEN 'Router: run ' || remote_fn || ' on every shard'
             WHEN route LIKE 'key:%' THEN 'Router: run ' || fn || ' on the shard of hashtext(' || pg_catalog.substr(route, 5) || ')'
             ELSE 'Router: run ' || fn || ' on the shard of ' || pg_catalog.substr(route, 4) END);
END
$def$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_define(text, text[], text, text) IS
    'Internal: create the PL/Proxy function and the router''s wrapper of one tasker function (CREATE EXTENSION)';

/* tasker_proxy_define_routed: the text of a wrapper routed by id or key. */
CREATE FUNCTION @extschema@.tasker_proxy_define_routed(fn text, outer_args text, result text, inner_fn text,
                                                       names text, route text, returns_set boolean)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $def$
    SELECT pg_catalog.format($f$
        CREATE FUNCTION @extschema@.%I(%s) RETURNS %s LANGUAGE plpgsql AS $o$
        DECLARE
            target_shard integer := %s;
            _st text; _msg text; _det text; _hnt text;
        BEGIN
            %s
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_reraise(target_shard, _st, _msg, _det, _hnt);
        END
        $o$$f$, fn, outer_args, result,
        CASE WHEN route LIKE 'id:%'
             THEN pg_catalog.format('@extschema@.tasker_proxy_shard_of(%s, %L)', pg_catalog.substr(route, 4),
                                    pg_catalog.split_part(pg_catalog.substr(route, 4), '_', 1))
             ELSE pg_catalog.format('@extschema@.tasker_proxy_shard_of_key(%s, %L)', pg_catalog.substr(route, 5),
                                    pg_catalog.substr(route, 5)) END,
        CASE WHEN returns_set
             THEN pg_catalog.format('RETURN QUERY SELECT * FROM @extschema@.%I(%s); RETURN;', inner_fn, names)
             ELSE pg_catalog.format('RETURN @extschema@.%I(%s);', inner_fn, names) END)
$def$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_define_routed(text, text, text, text, text, text, boolean) IS
    'Internal: the CREATE FUNCTION text of a wrapper routed by a task or step id or by a key';

/*
 * tasker_proxy_define_all: the text of a wrapper run on every shard.  A
 * shard's error stops it (shard 0 goes first, so an invalid template
 * reaches no shard); an unreachable shard is skipped with a warning that
 * names it.  Registrations are recorded in tasker_proxy_registry first.
 */
CREATE FUNCTION @extschema@.tasker_proxy_define_all(fn text, outer_args text, result text, inner_fn text,
                                                    names text)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $def$
    SELECT pg_catalog.format($f$
        CREATE FUNCTION @extschema@.%1$I(%2$s) RETURNS %3$s LANGUAGE plpgsql AS $o$
        DECLARE
            n integer := @extschema@.tasker_proxy_require_shards();
            target_shard integer;
            first_result %4$s;
            r %4$s;
            got boolean := false;
            down text;
            entry bigint;
            _st text; _msg text; _det text; _hnt text;
        BEGIN
            %5$s
            FOR target_shard IN 0 .. n - 1 LOOP
                BEGIN
                    r := @extschema@.%6$I(%7$s);
                    IF NOT got THEN
                        first_result := r;
                        got := true;
                    END IF;
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                            _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
                    IF NOT @extschema@.tasker_proxy_unreachable(_st, _msg) THEN
                        PERFORM @extschema@.tasker_proxy_reraise(target_shard, _st, _msg, _det, _hnt);
                    END IF;
                    down := pg_catalog.concat_ws(', ', down, target_shard::text);
                END;
            END LOOP;
            IF NOT got THEN
                RAISE EXCEPTION 'no tasker shard is reachable'
                    USING ERRCODE = 'connection_failure',
                          DETAIL = pg_catalog.format('%1$s reached none of the %%s shards.', n),
                          HINT = 'SELECT * FROM tasker_proxy_shards shows each shard.';
            END IF;
            IF down IS NOT NULL THEN
                UPDATE @extschema@.tasker_proxy_registry
                   SET missing_shards = pg_catalog.string_to_array(down, ', ')::integer[]
                 WHERE entry_id = entry;
                RAISE WARNING 'tasker shards %% are unreachable: %1$s did not run there', down
                    USING DETAIL = 'It ran on the other shards.',
                          HINT = %8$L;
            END IF;
            RETURN %9$s;
        END
        $o$$f$, fn, outer_args, result,
        CASE WHEN result = 'void' THEN 'integer' ELSE result END,
        CASE WHEN fn IN ('tasker_register_template', 'tasker_register_templates', 'tasker_register_handler',
                         'tasker_proxy_register_handler', 'tasker_set_namespace_limit')
             THEN pg_catalog.format('INSERT INTO @extschema@.tasker_proxy_registry (call, args) VALUES (%L, ARRAY[%s]::text[]) RETURNING entry_id INTO entry;',
                                    fn, pg_catalog.regexp_replace(pg_catalog.regexp_replace(names, '^target_shard, ', ''),
                                                                  '(\w+)', '\1::text', 'g'))
             ELSE '' END,
        inner_fn, names,
        CASE WHEN fn LIKE '%register%' OR fn = 'tasker_set_namespace_limit'
             THEN 'When they are back, SELECT tasker_proxy_sync_shard(shard) for each gives them what was registered meanwhile.'
             ELSE 'Call it again when they are back.' END,
        CASE WHEN result = 'void' THEN '' ELSE 'first_result' END)
$def$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_define_all(text, text, text, text, text) IS
    'Internal: the CREATE FUNCTION text of a wrapper run on every shard';

SELECT @extschema@.tasker_proxy_define(a.fn, a.args, a.result, a.route) FROM @extschema@.tasker_proxy_api() a;

/* ---- placing new tasks ---- */

/*
 * tasker_proxy_measure_loads: each shard's unfinished tasks, -1 for a
 * shard that cannot be reached.  Raises when a shard reports another
 * index than its place in the list: ids made there would route elsewhere.
 */
CREATE FUNCTION @extschema@.tasker_proxy_measure_loads()
RETURNS bigint[]
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := @extschema@.tasker_proxy_require_shards();
    loads bigint[] := pg_catalog.array_fill(-1::bigint, ARRAY[n]);
    st record;
    s integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. n - 1 LOOP
        BEGIN
            SELECT * INTO st FROM @extschema@.tasker_proxy_call_shard_status(s);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            IF NOT @extschema@.tasker_proxy_unreachable(_st, _msg) THEN
                PERFORM @extschema@.tasker_proxy_reraise(s, _st, _msg, _det, _hnt);
            END IF;
            CONTINUE;
        END;
        IF st.shard_index IS DISTINCT FROM s THEN
            RAISE EXCEPTION 'tasker shard % reports shard index %', s, COALESCE(st.shard_index::text, 'none')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Ids made on a shard carry its index; a task made there would be looked for on another shard.',
                      HINT = 'Call tasker_proxy_set_shards with the shards in the order they were first given.';
        END IF;
        loads[s + 1] := st.active_tasks;
    END LOOP;
    RETURN loads;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_measure_loads() IS
    'Internal: each shard''s unfinished tasks (-1: unreachable), checking that each shard knows its index';

/*
 * tasker_proxy_pick_shard: the least loaded reachable shard for a task
 * without an identity key.  Each session keeps the loads it measured
 * (tasker_proxy.placement, "epoch;l0,l1,...") for tasker_proxy.load_refresh
 * seconds (default 1), counting the tasks it placed since, so placement
 * costs no remote call and no catalog read most of the time (a shard
 * added meanwhile gets tasks from the next measure on); ties go round the
 * shards from a place that depends on the backend.
 */
CREATE FUNCTION @extschema@.tasker_proxy_pick_shard()
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer;
    state text := pg_catalog.current_setting('tasker_proxy.placement', true);
    refresh double precision := COALESCE(NULLIF(pg_catalog.current_setting('tasker_proxy.load_refresh', true), '')::double precision, 1);
    now_s double precision := extract(epoch FROM pg_catalog.clock_timestamp());
    at double precision;
    loads bigint[];
    best integer;
    s integer;
    k integer;
BEGIN
    IF state IS NOT NULL AND state <> '' THEN
        at := pg_catalog.split_part(state, ';', 1)::double precision;
        loads := pg_catalog.string_to_array(pg_catalog.split_part(state, ';', 2), ',')::bigint[];
    END IF;
    IF loads IS NULL OR now_s - at >= refresh OR now_s < at THEN
        loads := @extschema@.tasker_proxy_measure_loads();
        at := now_s;
    END IF;
    n := pg_catalog.cardinality(loads);
    FOR k IN 0 .. n - 1 LOOP
        s := (pg_catalog.pg_backend_pid() + k) % n;
        IF loads[s + 1] >= 0 AND (best IS NULL OR loads[s + 1] < loads[best + 1]) THEN
            best := s;
        END IF;
    END LOOP;
    IF best IS NULL THEN
        RAISE EXCEPTION 'no tasker shard is reachable'
            USING ERRCODE = 'connection_failure',
                  DETAIL = pg_catalog.format('None of the %s shards answered.', n),
                  HINT = 'SELECT * FROM tasker_proxy_shards shows each shard.';
    END IF;
    loads[best + 1] := loads[best + 1] + 1;
    PERFORM pg_catalog.set_config('tasker_proxy.placement', at || ';' || pg_catalog.array_to_string(loads, ','), false);
    RETURN best;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_pick_shard() IS
    'Internal: the least loaded reachable shard (session cache of the measured loads plus the tasks placed since)';

/* tasker_proxy_mark_down: take a shard out of this session's placement until the next measure. */
CREATE FUNCTION @extschema@.tasker_proxy_mark_down(shard integer)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    state text := pg_catalog.current_setting('tasker_proxy.placement', true);
    loads bigint[];
BEGIN
    IF state IS NULL OR state = '' THEN
        RETURN;
    END IF;
    loads := pg_catalog.string_to_array(pg_catalog.split_part(state, ';', 2), ',')::bigint[];
    loads[shard + 1] := -1;
    PERFORM pg_catalog.set_config('tasker_proxy.placement',
        pg_catalog.split_part(state, ';', 1) || ';' || pg_catalog.array_to_string(loads, ','), false);
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_mark_down(integer) IS
    'Internal: leave a shard that did not answer out of this session''s placement until the loads are measured again';

/*
 * tasker_create_task (its arguments are also listed in tasker_proxy_api(),
 * for the PL/Proxy call: a new argument goes in both places): with an
 * identity key, on the key's shard (so a
 * repeated key finds the task, whichever router session sends it; that
 * shard being down is an error); without one, on the least loaded
 * reachable shard, and on another if that one does not answer.
 */
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
LANGUAGE plpgsql
AS $$
DECLARE
    target_shard integer;
    keyed boolean := identity_key IS NOT NULL;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    LOOP
        target_shard := CASE WHEN keyed THEN @extschema@.tasker_proxy_shard_of_key(identity_key)
                             ELSE @extschema@.tasker_proxy_pick_shard() END;
        BEGIN
            RETURN @extschema@.tasker_proxy_call_create_task(target_shard, name, context, namespace, version,
                       initiator, source_system, reason, tags, bypass_steps, requested_at, identity_key,
                       priority, traceparent);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            IF keyed OR NOT @extschema@.tasker_proxy_unreachable(_st, _msg) THEN
                PERFORM @extschema@.tasker_proxy_reraise(target_shard, _st, _msg, _det, _hnt);
            END IF;
            PERFORM @extschema@.tasker_proxy_mark_down(target_shard);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text, integer, text) IS
    'Router: create a task on the shard of its identity key, or else on the least loaded reachable shard; returns its task_id';

/* ---- external workers ---- */

/*
 * tasker_claim_steps: claim from the shards in turn, each without
 * waiting, starting one shard further at each call of the session, until
 * max_steps are claimed; when none had a step and wait allows, wait on
 * one shard at a time for at most 250 ms, in turn.  An unreachable shard
 * is skipped.
 */
CREATE FUNCTION @extschema@.tasker_claim_steps(queue text, worker_id text, max_steps integer DEFAULT 10,
                                               lease interval DEFAULT '5 minutes',
                                               wait interval DEFAULT '0')
RETURNS TABLE (step_id bigint, claim_token uuid, lease_expires_at timestamptz, envelope jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := @extschema@.tasker_proxy_require_shards();
    start integer := COALESCE(NULLIF(pg_catalog.current_setting('tasker_proxy.claim_next', true), '')::integer, 0) % n;
    deadline timestamptz := pg_catalog.clock_timestamp() + COALESCE(wait, '0');
    got integer := 0;
    c integer;
    k integer;
    s integer;
    slice interval;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    IF max_steps IS NULL OR max_steps < 1 THEN
        RAISE EXCEPTION 'max_steps must be at least 1'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('Got %s.', COALESCE(max_steps::text, 'NULL')),
                  HINT = 'Ask for as many steps as the worker can run at once.';
    END IF;
    PERFORM pg_catalog.set_config('tasker_proxy.claim_next', ((start + 1) % n)::text, false);
    LOOP
        FOR k IN 0 .. n - 1 LOOP
            EXIT WHEN got >= max_steps;
            s := (start + k) % n;
            slice := CASE WHEN k = n - 1 AND got = 0
                          THEN LEAST(GREATEST(deadline - pg_catalog.clock_timestamp(), '0'), interval '250 ms')
                          ELSE interval '0' END;
            BEGIN
                RETURN QUERY SELECT * FROM @extschema@.tasker_proxy_call_claim_steps(s, queue, worker_id,
                                                                                    max_steps - got, lease, slice);
                GET DIAGNOSTICS c = ROW_COUNT;
                got := got + c;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                        _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
                IF NOT @extschema@.tasker_proxy_unreachable(_st, _msg) THEN
                    PERFORM @extschema@.tasker_proxy_reraise(s, _st, _msg, _det, _hnt);
                END IF;
                IF slice > interval '0' THEN
                    PERFORM pg_catalog.pg_sleep(extract(epoch FROM slice));
                END IF;
            END;
        END LOOP;
        EXIT WHEN got > 0 OR pg_catalog.clock_timestamp() >= deadline;
        start := (start + 1) % n;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_claim_steps(text, text, integer, interval, interval) IS
    'Router: claim up to max_steps steps of a queue from the shards in turn (no wait on a shard while another may have steps; long-polls of at most 250 ms per shard while none has)';

/*
 * tasker_complete_steps: the batch split by the shard of each step id,
 * one call per shard; the count recorded on all of them.
 */
CREATE FUNCTION @extschema@.tasker_complete_steps(completions jsonb)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    part record;
    total integer := 0;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    IF completions IS NULL OR pg_catalog.jsonb_typeof(completions) <> 'array' THEN
        RAISE EXCEPTION 'completions must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The router splits the batch by the shard of each element''s step_id.',
                  HINT = 'Pass [{"step_id": ..., "claim_token": "...", "results": {...}}, ...].';
    END IF;
    FOR part IN
        SELECT @extschema@.tasker_proxy_shard_of((e->>'step_id')::bigint, 'step') AS shard,
               pg_catalog.jsonb_agg(e ORDER BY o) AS batch
          FROM pg_catalog.jsonb_array_elements(completions) WITH ORDINALITY AS x(e, o)
         GROUP BY 1 ORDER BY 1
    LOOP
        BEGIN
            total := total + @extschema@.tasker_proxy_call_complete_steps(part.shard, part.batch);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_reraise(part.shard, _st, _msg, _det, _hnt);
        END;
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_complete_steps(jsonb) IS
    'Router: record a batch of completions, split by the shard of each step id; returns how many were recorded';

/* ---- merged reads ---- */

/*
 * tasker_proxy_each_shard_error: handle an error caught around one shard
 * of a merged read: true (skip the shard) when it is unreachable, else
 * raise it.
 */
CREATE FUNCTION @extschema@.tasker_proxy_skip_down(shard integer, state text, message text,
                                                   detail text, hint text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT @extschema@.tasker_proxy_unreachable(state, message) THEN
        PERFORM @extschema@.tasker_proxy_reraise(shard, state, message, detail, hint);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_skip_down(integer, text, text, text, text) IS
    'Internal: in a merged read, true for an unreachable shard (skipped), else the shard''s error raised again';

CREATE FUNCTION @extschema@.tasker_metrics()
RETURNS TABLE (name text, labels jsonb, value double precision)
LANGUAGE plpgsql
AS $$
DECLARE
    s integer;
    up double precision;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. @extschema@.tasker_proxy_require_shards() - 1 LOOP
        BEGIN
            RETURN QUERY SELECT m.name, m.labels || pg_catalog.jsonb_build_object('shard', s::text), m.value
                           FROM @extschema@.tasker_proxy_call_metrics(s) m;
            up := 1;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_skip_down(s, _st, _msg, _det, _hnt);
            up := 0;
        END;
        name := 'tasker_proxy_shard_up';
        labels := pg_catalog.jsonb_build_object('shard', s::text);
        value := up;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_metrics() IS
    'Router: every shard''s metrics with a shard label, and tasker_proxy_shard_up (1 or 0) for each shard';

CREATE FUNCTION @extschema@.tasker_metrics_prometheus()
RETURNS text
LANGUAGE sql
AS $$
    SELECT COALESCE(pg_catalog.string_agg(pg_catalog.format('%s{%s} %s', m.name,
               (SELECT pg_catalog.string_agg(pg_catalog.format('%s="%s"', l.key,
                            pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(l.value, E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')),
                        ',' ORDER BY l.key)
                  FROM pg_catalog.jsonb_each_text(m.labels) l),
               CASE WHEN m.value = 'Infinity' THEN '+Inf' WHEN m.value = '-Infinity' THEN '-Inf'
                    ELSE m.value::text END),
           E'\n' ORDER BY m.name, m.labels::text) || E'\n', '')
      FROM @extschema@.tasker_metrics() m
$$;
COMMENT ON FUNCTION @extschema@.tasker_metrics_prometheus() IS
    'Router: tasker_metrics() in the Prometheus text format (samples only, each with its shard label)';

CREATE FUNCTION @extschema@.tasker_health()
RETURNS TABLE (shard integer, check_name text, status text, detail jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    s integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. @extschema@.tasker_proxy_require_shards() - 1 LOOP
        BEGIN
            RETURN QUERY SELECT s, h.check_name, h.status, h.detail FROM @extschema@.tasker_proxy_call_health(s) h;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_skip_down(s, _st, _msg, _det, _hnt);
            shard := s;
            check_name := 'shard_reachable';
            status := 'error';
            detail := pg_catalog.jsonb_build_object('message', pg_catalog.regexp_replace(_msg, '^.*?\]\s*', ''));
            RETURN NEXT;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_health() IS
    'Router: every shard''s health checks with the shard, and a failed shard_reachable check for each shard that does not answer';

CREATE FUNCTION @extschema@.tasker_system_health()
RETURNS TABLE (shard integer, total_tasks bigint, pending_tasks bigint, in_progress_tasks bigint,
               complete_tasks bigint, error_tasks bigint, cancelled_tasks bigint, total_steps bigint,
               pending_steps bigint, in_progress_steps bigint, complete_steps bigint, error_steps bigint,
               retryable_error_steps bigint, exhausted_retry_steps bigint, in_backoff_steps bigint,
               active_connections bigint, max_connections bigint, resolved_manually_tasks bigint,
               cancelled_steps bigint, resolved_manually_steps bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    s integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. @extschema@.tasker_proxy_require_shards() - 1 LOOP
        BEGIN
            RETURN QUERY SELECT s, h.* FROM @extschema@.tasker_proxy_call_system_health(s) h;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_skip_down(s, _st, _msg, _det, _hnt);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_system_health() IS
    'Router: tasker_system_health() of each reachable shard, one row each with the shard';

CREATE FUNCTION @extschema@.tasker_analytics_metrics(since timestamptz DEFAULT now() - interval '1 hour')
RETURNS TABLE (shard integer, active_tasks_count bigint, total_namespaces_count bigint,
               unique_task_types_count bigint, system_health_score numeric, task_throughput bigint,
               completion_count bigint, error_count bigint, completion_rate numeric, error_rate numeric,
               avg_task_duration numeric, avg_step_duration numeric, step_throughput bigint,
               analysis_period_start timestamptz, calculated_at timestamptz, tasks_created bigint,
               p50_task_duration numeric, p95_task_duration numeric, p99_task_duration numeric,
               p50_step_duration numeric, p95_step_duration numeric, p99_step_duration numeric,
               step_error_count bigint, step_error_rate numeric)
LANGUAGE plpgsql
AS $$
DECLARE
    s integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. @extschema@.tasker_proxy_require_shards() - 1 LOOP
        BEGIN
            RETURN QUERY SELECT s, a.* FROM @extschema@.tasker_proxy_call_analytics_metrics(s, since) a;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_skip_down(s, _st, _msg, _det, _hnt);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_analytics_metrics(timestamptz) IS
    'Router: tasker_analytics_metrics(since) of each reachable shard, one row each with the shard';

/*
 * tasker_events_since: the durable event logs of all shards.  Event ids
 * are per shard, so the cursor is per shard: after_ids[k + 1] is the last
 * event_id the caller has from shard k (missing or NULL: 0).  Up to
 * max_events from each reachable shard, in (shard, event_id) order; a
 * shard that is down keeps its cursor and loses nothing.
 */
CREATE FUNCTION @extschema@.tasker_events_since(after_ids bigint[], max_events integer DEFAULT 1000)
RETURNS TABLE (shard integer, event_id bigint, event jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    s integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. @extschema@.tasker_proxy_require_shards() - 1 LOOP
        BEGIN
            RETURN QUERY SELECT s, e.event_id, e.event
                           FROM @extschema@.tasker_proxy_call_events_since(s, COALESCE(after_ids[s + 1], 0), max_events) e;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_skip_down(s, _st, _msg, _det, _hnt);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_events_since(bigint[], integer) IS
    'Router: the durable event log of every reachable shard after a per-shard cursor (after_ids[k + 1] for shard k), with the shard';

/*
 * tasker_events_since(after_id): the shard's signature, for a router with
 * one shard (then the same as the shard's); with more, one cursor cannot
 * say where a reader is on each shard, so it refuses and names the form
 * that can.
 */
CREATE FUNCTION @extschema@.tasker_events_since(after_id bigint, max_events integer DEFAULT 1000)
RETURNS TABLE (event_id bigint, event jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := @extschema@.tasker_proxy_require_shards();
BEGIN
    IF n > 1 THEN
        RAISE EXCEPTION 'the router reads the event log with one cursor per shard'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = pg_catalog.format('Event ids are numbered per shard, and this router has %s shards.', n),
                  HINT = 'Call tasker_events_since(ARRAY[cursor of shard 0, cursor of shard 1, ...]::bigint[], max_events); it returns each event with its shard.';
    END IF;
    RETURN QUERY SELECT e.event_id, e.event
                   FROM @extschema@.tasker_events_since(ARRAY[after_id], max_events) e;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_events_since(bigint, integer) IS
    'Router: the event log after one cursor, for a router with one shard (with more, 0A000: use the per-shard form)';

CREATE FUNCTION @extschema@.tasker_worker_status()
RETURNS TABLE (shard integer, role text, slot integer, pid integer, state text, steps_run bigint,
               last_activity timestamptz)
LANGUAGE plpgsql
AS $$
DECLARE
    s integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    FOR s IN 0 .. @extschema@.tasker_proxy_require_shards() - 1 LOOP
        BEGIN
            RETURN QUERY SELECT s, w.* FROM @extschema@.tasker_proxy_call_worker_status(s) w;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_skip_down(s, _st, _msg, _det, _hnt);
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_worker_status() IS
    'Router: the workers of every reachable shard, with the shard';

/* ---- configuring the shards ---- */

/*
 * tasker_proxy_shard_status: each shard with its status: up (answers and
 * knows its index), misconfigured (answers with another index, or none)
 * or down; its load and ready steps when it answers.
 */
CREATE FUNCTION @extschema@.tasker_proxy_shard_status()
RETURNS TABLE (shard integer, connstr text, status text, shard_index integer, shard_count integer,
               active_tasks bigint, ready_steps bigint, error text)
LANGUAGE plpgsql
AS $$
DECLARE
    c text[] := @extschema@.tasker_proxy_connstrs();
    s integer;
    st record;
    _st text; _msg text;
BEGIN
    FOR s IN 0 .. pg_catalog.cardinality(c) - 1 LOOP
        shard := s;
        connstr := @extschema@.tasker_proxy_masked(c[s + 1]);
        BEGIN
            SELECT * INTO st FROM @extschema@.tasker_proxy_call_shard_status(s);
            status := CASE WHEN st.shard_index IS NOT DISTINCT FROM s AND st.shard_count = pg_catalog.cardinality(c)
                           THEN 'up' ELSE 'misconfigured' END;
            shard_index := st.shard_index;
            shard_count := st.shard_count;
            active_tasks := st.active_tasks;
            ready_steps := st.ready_steps;
            error := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT;
            status := CASE WHEN @extschema@.tasker_proxy_unreachable(_st, _msg) THEN 'down' ELSE 'misconfigured' END;
            shard_index := NULL;
            shard_count := NULL;
            active_tasks := NULL;
            ready_steps := NULL;
            error := pg_catalog.regexp_replace(_msg, '^.*?\]\s*', '');
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_shard_status() IS
    'Each shard of the router: connection string (password masked), status (up, down, misconfigured), the index and count it reports, its unfinished tasks and ready steps, the error when it does not answer';

CREATE VIEW @extschema@.tasker_proxy_shards AS
    SELECT * FROM @extschema@.tasker_proxy_shard_status();
COMMENT ON VIEW @extschema@.tasker_proxy_shards IS
    'The router''s shards and their status (tasker_proxy_shard_status())';

/*
 * tasker_proxy_set_shards: the shard list, in order: shard k is
 * connstrs[k + 1].  A power of two of them (PL/Proxy's rule); the list
 * may grow (new shards at the end) and a shard's connection string may
 * change, but shards are never removed or reordered (their tasks' ids
 * name them).  Defines the PL/Proxy cluster (SQL/MED server tasker_shards
 * with a user mapping for PUBLIC unless one exists), then makes each shard
 * shard k of n (tasker_shard_configure): every shard must answer.
 * Returns the shard count.
 */
CREATE FUNCTION @extschema@.tasker_proxy_set_shards(connstrs text[])
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := COALESCE(pg_catalog.cardinality(connstrs), 0);
    old text[] := @extschema@.tasker_proxy_connstrs();
    opts text;
    k integer;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    IF n = 0 OR n > 32768 OR (n & (n - 1)) <> 0 OR pg_catalog.array_position(connstrs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'the shard list must hold a power of two of connection strings'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('Got %s (with NULLs: %s); PL/Proxy partitions a cluster in 1, 2, 4, 8, ... parts.',
                                             n, pg_catalog.array_position(connstrs, NULL) IS NOT NULL),
                  HINT = 'To grow, double the list: the existing shards first, in their order, then the new ones.';
    END IF;
    IF (SELECT count(DISTINCT c) FROM pg_catalog.unnest(connstrs) c) <> n THEN
        RAISE EXCEPTION 'the shard list names a shard twice'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Each shard is its own database; two entries for one would give it two indexes.',
                  HINT = 'List each shard''s connection string once.';
    END IF;
    IF n < pg_catalog.cardinality(old) THEN
        RAISE EXCEPTION 'the router cannot drop shards (% now, % asked)', pg_catalog.cardinality(old), n
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Task and step ids name their shard; the tasks of a dropped shard could not be reached.',
                  HINT = 'Keep every shard; to move one, give its new connection string at the same place.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('p%s %L', o - 1, c), ', ' ORDER BY o) INTO opts
      FROM pg_catalog.unnest(connstrs) WITH ORDINALITY AS x(c, o);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server WHERE srvname = 'tasker_shards') THEN
        /* One statement: PL/Proxy checks the partition count after each. */
        EXECUTE 'ALTER SERVER tasker_shards OPTIONS (' ||
            (SELECT pg_catalog.string_agg(pg_catalog.format('%s p%s %L',
                        CASE WHEN o <= pg_catalog.cardinality(old) THEN 'SET' ELSE 'ADD' END, o - 1, c), ', ' ORDER BY o)
               FROM pg_catalog.unnest(connstrs) WITH ORDINALITY AS x(c, o)) || ')';
    ELSE
        EXECUTE 'CREATE SERVER tasker_shards FOREIGN DATA WRAPPER plproxy OPTIONS (' || opts || ')';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings WHERE srvname = 'tasker_shards') THEN
        CREATE USER MAPPING FOR PUBLIC SERVER tasker_shards;
    END IF;
    GRANT USAGE ON FOREIGN SERVER tasker_shards TO PUBLIC;
    FOR k IN 0 .. n - 1 LOOP
        BEGIN
            PERFORM @extschema@.tasker_proxy_call_shard_configure(k, k, n);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            PERFORM @extschema@.tasker_proxy_reraise(k, _st, _msg, _det, _hnt);
        END;
    END LOOP;
    UPDATE @extschema@.tasker_proxy_registry
       SET missing_shards = missing_shards || ARRAY(SELECT pg_catalog.generate_series(pg_catalog.cardinality(old), n - 1))
     WHERE n > pg_catalog.cardinality(old);
    IF n > pg_catalog.cardinality(old) AND EXISTS (SELECT 1 FROM @extschema@.tasker_proxy_registry) THEN
        RAISE NOTICE 'shards % to % are new', pg_catalog.cardinality(old), n - 1
            USING HINT = 'SELECT tasker_proxy_sync_shard(k) gives shard k the templates and handlers registered through the router.';
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_set_shards(text[]) IS
    'Define the shards (a power of two of connection strings, in shard order; the list may only grow): the PL/Proxy cluster tasker_shards, and each shard''s index and count; returns the count';

/*
 * tasker_proxy_sync_shard: give one shard the registrations it missed
 * (made while it was down, or before it was added), in order, with their
 * own arguments; a template the shard has already counts as given.
 * Returns the number of registrations replayed.
 */
CREATE FUNCTION @extschema@.tasker_proxy_sync_shard(shard integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    n integer := @extschema@.tasker_proxy_require_shards();
    e record;
    done integer := 0;
    _st text; _msg text; _det text; _hnt text;
BEGIN
    IF shard IS NULL OR shard NOT BETWEEN 0 AND n - 1 THEN
        RAISE EXCEPTION 'shard % is not a shard of this router', shard
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = pg_catalog.format('The router has %s shards, 0 to %s.', n, n - 1),
                  HINT = 'SELECT * FROM tasker_proxy_shards lists them.';
    END IF;
    FOR e IN SELECT r.entry_id, r.call, r.args FROM @extschema@.tasker_proxy_registry r
              WHERE shard = ANY (r.missing_shards) ORDER BY r.entry_id LOOP
        BEGIN
            CASE e.call
            WHEN 'tasker_register_template' THEN
                PERFORM @extschema@.tasker_proxy_call_register_template(shard, e.args[1], e.args[2]::boolean);
            WHEN 'tasker_register_templates' THEN
                PERFORM @extschema@.tasker_proxy_call_register_templates(shard, e.args[1], e.args[2]::boolean);
            WHEN 'tasker_register_handler' THEN
                PERFORM @extschema@.tasker_proxy_call_register_handler(shard, e.args[1], e.args[2]);
            WHEN 'tasker_set_namespace_limit' THEN
                PERFORM @extschema@.tasker_proxy_call_set_namespace_limit(shard, e.args[1], e.args[2]::integer);
            ELSE
                PERFORM @extschema@.tasker_proxy_call_proxy_register_handler(shard, e.args[1], e.args[2]);
            END CASE;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS _st = RETURNED_SQLSTATE, _msg = MESSAGE_TEXT,
                                    _det = PG_EXCEPTION_DETAIL, _hnt = PG_EXCEPTION_HINT;
            /* A template the shard has already (42710) is what the replay wants. */
            IF _st <> '42710' THEN
                PERFORM @extschema@.tasker_proxy_reraise(shard, _st, _msg, _det, _hnt);
            END IF;
        END;
        UPDATE @extschema@.tasker_proxy_registry r
           SET missing_shards = pg_catalog.array_remove(r.missing_shards, shard)
         WHERE r.entry_id = e.entry_id;
        done := done + 1;
    END LOOP;
    RETURN done;
END
$$;
COMMENT ON FUNCTION @extschema@.tasker_proxy_sync_shard(integer) IS
    'Give a shard (a new one, or one that was down) every template and handler registered through the router that it has not had, in order; returns how many were replayed';

/* Configuration is the administrator's; the rest runs with the caller's rights on each shard. */
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_proxy_set_shards(text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_proxy_sync_shard(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_proxy_define(text, text[], text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION @extschema@.tasker_proxy_call_shard_configure(integer, integer, integer) FROM PUBLIC;
