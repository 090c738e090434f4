/* tasker--0.1.0.sql: install script of the tasker extension */

\echo Use "CREATE EXTENSION tasker" to load this file. \quit

/*
 * State names shared by tasks and steps.  The CHECK constraints below and the
 * C state machine (src/state.c) agree on this list.
 */
CREATE DOMAIN tasker_state AS text
    CONSTRAINT tasker_state_valid CHECK (VALUE IN ('pending', 'in_progress',
        'complete', 'error', 'cancelled', 'resolved_manually'));
COMMENT ON DOMAIN tasker_state IS
    'A task or step state: pending, in_progress, complete, error, cancelled or resolved_manually';

/* ------------------------------------------------------------------------
 * Catalog tables: namespaces, templates, steps, systems
 * ------------------------------------------------------------------------ */

CREATE TABLE tasker_task_namespaces (
    task_namespace_id   serial PRIMARY KEY,
    name                varchar(64) NOT NULL
                        CONSTRAINT task_namespaces_name_unique UNIQUE,
    description         varchar(255),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker_task_namespaces IS
    'Namespaces that group task templates (the default one is "default")';

INSERT INTO tasker_task_namespaces (name, description)
    VALUES ('default', 'The namespace of templates that name none');

CREATE TABLE tasker_named_tasks (
    named_task_id       serial PRIMARY KEY,
    name                varchar(64) NOT NULL,
    description         varchar(255),
    task_namespace_id   integer NOT NULL
                        REFERENCES tasker_task_namespaces (task_namespace_id),
    version             varchar(64) NOT NULL DEFAULT '0.1.0',
    configuration       jsonb NOT NULL DEFAULT '{}',
    module_namespace    text,
    task_handler_class  text,
    default_dependent_system text,
    context_schema      jsonb,
    custom_events       jsonb NOT NULL DEFAULT '[]',
    template            jsonb NOT NULL DEFAULT '{}',
    owner               oid NOT NULL DEFAULT 10,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT named_tasks_namespace_name_version_unique
        UNIQUE (task_namespace_id, name, version)
);
CREATE INDEX tasker_named_tasks_name_idx ON tasker_named_tasks (name);
COMMENT ON TABLE tasker_named_tasks IS
    'Registered task templates, one row per (namespace, name, version)';
COMMENT ON COLUMN tasker_named_tasks.owner IS
    'The role that registered the template; SQL handlers run with its privileges';
COMMENT ON COLUMN tasker_named_tasks.template IS
    'The template as registered, after environment overrides, as JSON';

CREATE TABLE tasker_dependent_systems (
    dependent_system_id serial PRIMARY KEY,
    name                varchar(64) NOT NULL
                        CONSTRAINT dependent_systems_name_unique UNIQUE,
    description         varchar(255),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker_dependent_systems IS
    'Systems that steps talk to (the template key dependent_system)';

INSERT INTO tasker_dependent_systems (name, description)
    VALUES ('default', 'Steps that name no dependent system');

CREATE TABLE tasker_named_steps (
    named_step_id       serial PRIMARY KEY,
    dependent_system_id integer NOT NULL
                        REFERENCES tasker_dependent_systems (dependent_system_id),
    name                varchar(128) NOT NULL,
    description         varchar(255),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT named_step_by_system_uniq UNIQUE (dependent_system_id, name)
);
CREATE INDEX tasker_named_steps_name_idx ON tasker_named_steps (name);
COMMENT ON TABLE tasker_named_steps IS
    'Step names, unique per dependent system, shared by every template';

CREATE TABLE tasker_named_tasks_named_steps (
    id                  serial PRIMARY KEY,
    named_task_id       integer NOT NULL
                        REFERENCES tasker_named_tasks (named_task_id) ON DELETE CASCADE,
    named_step_id       integer NOT NULL
                        REFERENCES tasker_named_steps (named_step_id),
    skippable           boolean NOT NULL DEFAULT false,
    default_retryable   boolean NOT NULL DEFAULT true,
    default_retry_limit integer NOT NULL DEFAULT 3
                        CHECK (default_retry_limit >= 0),
    position            integer NOT NULL DEFAULT 0,
    description         text,
    handler_class       text,
    handler_function    regprocedure,
    handler_config      jsonb NOT NULL DEFAULT '{}',
    depends_on          text[] NOT NULL DEFAULT '{}',
    timeout_seconds     integer CHECK (timeout_seconds > 0),
    custom_events       jsonb NOT NULL DEFAULT '[]',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT named_tasks_steps_ids_unique UNIQUE (named_task_id, named_step_id)
);
COMMENT ON TABLE tasker_named_tasks_named_steps IS
    'The step templates of each task template: handler, retry policy and dependencies by step name';

CREATE TABLE tasker_annotation_types (
    annotation_type_id  serial PRIMARY KEY,
    name                varchar(64) NOT NULL
                        CONSTRAINT annotation_types_name_unique UNIQUE,
    description         varchar(255),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker_annotation_types IS 'Kinds of task annotation';

CREATE TABLE tasker_dependent_system_object_maps (
    dependent_system_object_map_id bigserial PRIMARY KEY,
    dependent_system_one_id integer NOT NULL
                        REFERENCES tasker_dependent_systems (dependent_system_id),
    dependent_system_two_id integer NOT NULL
                        REFERENCES tasker_dependent_systems (dependent_system_id),
    remote_id_one       varchar(128) NOT NULL,
    remote_id_two       varchar(128) NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dependent_system_object_maps_unique
        UNIQUE (dependent_system_one_id, dependent_system_two_id,
                remote_id_one, remote_id_two)
);
CREATE INDEX tasker_dsom_remote_id_two_idx
    ON tasker_dependent_system_object_maps (remote_id_two);
COMMENT ON TABLE tasker_dependent_system_object_maps IS
    'Maps an object id in one dependent system to its id in another';

/* ------------------------------------------------------------------------
 * Runtime tables: tasks, steps, edges, transitions, annotations.
 * Every one carries task_id and is deleted with its task.
 * ------------------------------------------------------------------------ */

CREATE TABLE tasker_tasks (
    task_id             bigserial PRIMARY KEY,
    named_task_id       integer NOT NULL
                        REFERENCES tasker_named_tasks (named_task_id),
    complete            boolean NOT NULL DEFAULT false,
    requested_at        timestamptz NOT NULL DEFAULT now(),
    initiator           varchar(128),
    source_system       varchar(128),
    reason              varchar(128),
    bypass_steps        jsonb NOT NULL DEFAULT '[]',
    tags                jsonb NOT NULL DEFAULT '[]',
    context             jsonb NOT NULL DEFAULT '{}',
    identity_hash       varchar(128) NOT NULL
                        CONSTRAINT index_tasks_on_identity_hash UNIQUE,
    current_state       tasker_state NOT NULL DEFAULT 'pending',
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasker_tasks_named_task_id_idx ON tasker_tasks (named_task_id);
CREATE INDEX tasker_tasks_requested_at_idx ON tasker_tasks (requested_at);
CREATE INDEX tasker_tasks_unfinished_idx ON tasker_tasks (task_id)
    WHERE current_state IN ('pending', 'in_progress');
CREATE INDEX tasker_tasks_context_idx ON tasker_tasks USING gin (context jsonb_path_ops);
CREATE INDEX tasker_tasks_tags_idx ON tasker_tasks USING gin (tags jsonb_path_ops);
COMMENT ON TABLE tasker_tasks IS 'Tasks: one run of a task template';
COMMENT ON COLUMN tasker_tasks.current_state IS
    'The state of the most recent transition (pending when there is none)';

CREATE TABLE tasker_workflow_steps (
    workflow_step_id    bigserial PRIMARY KEY,
    task_id             bigint NOT NULL
                        REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    named_step_id       integer NOT NULL
                        REFERENCES tasker_named_steps (named_step_id),
    retryable           boolean NOT NULL DEFAULT true,
    retry_limit         integer NOT NULL DEFAULT 3 CHECK (retry_limit >= 0),
    in_process          boolean NOT NULL DEFAULT false,
    processed           boolean NOT NULL DEFAULT false,
    processed_at        timestamptz,
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_attempted_at   timestamptz,
    backoff_request_seconds integer CHECK (backoff_request_seconds >= 0),
    inputs              jsonb,
    results             jsonb,
    skippable           boolean NOT NULL DEFAULT false,
    current_state       tasker_state NOT NULL DEFAULT 'pending',
    unfinished_parents  integer NOT NULL DEFAULT 0 CHECK (unfinished_parents >= 0),
    next_attempt_at     timestamptz,
    lease_expires_at    timestamptz,
    timeout_seconds     integer CHECK (timeout_seconds > 0),
    handler_kind        text NOT NULL DEFAULT 'sql'
                        CHECK (handler_kind IN ('sql', 'http')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_steps_task_named_step_unique UNIQUE (task_id, named_step_id)
);
/*
 * The ready-steps index: the workers claim steps by scanning only this, one
 * handler kind at a time, in (next_attempt_at, task_id) order, so the steps
 * of one task, which share their creation time, are claimed together and
 * older tasks finish first.
 */
CREATE INDEX tasker_workflow_steps_ready_idx
    ON tasker_workflow_steps (handler_kind, next_attempt_at, task_id)
    WHERE current_state IN ('pending', 'error')
      AND unfinished_parents = 0
      AND next_attempt_at IS NOT NULL;
CREATE INDEX tasker_workflow_steps_lease_idx
    ON tasker_workflow_steps (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;
CREATE INDEX tasker_workflow_steps_named_step_idx
    ON tasker_workflow_steps (named_step_id);
COMMENT ON TABLE tasker_workflow_steps IS 'The steps of each task';
COMMENT ON COLUMN tasker_workflow_steps.unfinished_parents IS
    'Parents not yet complete or resolved_manually; the step can run when it is 0';
COMMENT ON COLUMN tasker_workflow_steps.next_attempt_at IS
    'When the step may next be attempted; NULL when no attempt is due (running, finished, or out of retries)';
COMMENT ON COLUMN tasker_workflow_steps.handler_kind IS
    'sql (an SQL function run in the claiming transaction) or http (a request run by the worker outside any transaction)';
COMMENT ON COLUMN tasker_workflow_steps.lease_expires_at IS
    'For a step claimed outside a transaction (HTTP): when another worker may reclaim it';

CREATE TABLE tasker_workflow_step_edges (
    id                  bigserial PRIMARY KEY,
    task_id             bigint NOT NULL
                        REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    from_step_id        bigint NOT NULL
                        REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE,
    to_step_id          bigint NOT NULL
                        REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE,
    name                varchar(64) NOT NULL DEFAULT 'provides',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_step_edges_unique UNIQUE (from_step_id, to_step_id),
    CONSTRAINT workflow_step_edges_no_self_loop CHECK (from_step_id <> to_step_id)
);
CREATE INDEX tasker_workflow_step_edges_to_idx
    ON tasker_workflow_step_edges (to_step_id, from_step_id);
CREATE INDEX tasker_workflow_step_edges_task_idx
    ON tasker_workflow_step_edges (task_id);
COMMENT ON TABLE tasker_workflow_step_edges IS
    'Dependencies between steps: from_step_id (the parent) provides to to_step_id (the child)';

CREATE TABLE tasker_task_transitions (
    id                  bigserial PRIMARY KEY,
    task_id             bigint NOT NULL
                        REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    to_state            tasker_state NOT NULL,
    from_state          tasker_state,
    metadata            jsonb NOT NULL DEFAULT '{}',
    sort_key            integer NOT NULL,
    most_recent         boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_transitions_sort_key_unique UNIQUE (task_id, sort_key)
);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent_idx
    ON tasker_task_transitions (task_id) WHERE most_recent;
COMMENT ON TABLE tasker_task_transitions IS
    'Every state change of every task, in order of sort_key';

CREATE TABLE tasker_workflow_step_transitions (
    id                  bigserial PRIMARY KEY,
    workflow_step_id    bigint NOT NULL
                        REFERENCES tasker_workflow_steps (workflow_step_id) ON DELETE CASCADE,
    task_id             bigint NOT NULL
                        REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    to_state            tasker_state NOT NULL,
    from_state          tasker_state,
    metadata            jsonb NOT NULL DEFAULT '{}',
    sort_key            integer NOT NULL,
    most_recent         boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT step_transitions_sort_key_unique UNIQUE (workflow_step_id, sort_key)
);
CREATE UNIQUE INDEX tasker_step_transitions_most_recent_idx
    ON tasker_workflow_step_transitions (workflow_step_id) WHERE most_recent;
CREATE INDEX tasker_step_transitions_task_idx
    ON tasker_workflow_step_transitions (task_id);
COMMENT ON TABLE tasker_workflow_step_transitions IS
    'Every state change of every step, in order of sort_key';

CREATE TABLE tasker_task_annotations (
    task_annotation_id  bigserial PRIMARY KEY,
    task_id             bigint NOT NULL
                        REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    annotation_type_id  integer NOT NULL
                        REFERENCES tasker_annotation_types (annotation_type_id),
    annotation          jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasker_task_annotations_task_idx ON tasker_task_annotations (task_id);
CREATE INDEX tasker_task_annotations_annotation_idx
    ON tasker_task_annotations USING gin (annotation jsonb_path_ops);
COMMENT ON TABLE tasker_task_annotations IS 'Free-form annotations on tasks, by type';

/* User data is dumped with the database (pg_dump keeps it). */
SELECT pg_catalog.pg_extension_config_dump('tasker_task_namespaces', 'WHERE name <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('tasker_dependent_systems', 'WHERE name <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('tasker_named_tasks', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_named_steps', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_named_tasks_named_steps', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_annotation_types', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_dependent_system_object_maps', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_tasks', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_workflow_steps', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_workflow_step_edges', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_task_transitions', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_workflow_step_transitions', '');
SELECT pg_catalog.pg_extension_config_dump('tasker_task_annotations', '');

/* ... and so are the sequences behind their keys. */
DO $$
DECLARE
    seq regclass;
BEGIN
    FOR seq IN
        SELECT d.objid::regclass
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind = 'S'
         WHERE d.refobjid IN (SELECT t::regclass FROM unnest(ARRAY[
                   'tasker_task_namespaces', 'tasker_dependent_systems',
                   'tasker_named_tasks',
                   'tasker_named_steps',
                   'tasker_named_tasks_named_steps',
                   'tasker_annotation_types',
                   'tasker_dependent_system_object_maps',
                   'tasker_tasks',
                   'tasker_workflow_steps',
                   'tasker_workflow_step_edges',
                   'tasker_task_transitions',
                   'tasker_workflow_step_transitions',
                   'tasker_task_annotations']) AS t)
           AND d.deptype = 'a'
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(seq, '');
    END LOOP;
END
$$;

/* ------------------------------------------------------------------------
 * State machines (src/state.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION tasker_transition_task(task_id bigint, to_state text,
                                       metadata jsonb DEFAULT '{}')
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_transition_task_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_transition_task(bigint, text, jsonb) IS
    'Low level: move a task to a state through the task state machine, recording the transition; false when it is already there';

CREATE FUNCTION tasker_transition_step(step_id bigint, to_state text,
                                       metadata jsonb DEFAULT '{}')
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_transition_step_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_transition_step(bigint, text, jsonb) IS
    'Low level: move a step to a state through the step state machine, recording the transition; false when it is already there';

REVOKE ALL ON FUNCTION tasker_transition_task(bigint, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION tasker_transition_step(bigint, text, jsonb) FROM PUBLIC;

CREATE FUNCTION tasker_allowed_transitions(entity text)
RETURNS TABLE (from_state text, to_state text)
AS 'MODULE_PATHNAME', 'tasker_allowed_transitions_sql'
LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION tasker_allowed_transitions(text) IS
    'The transitions the state machine of ''task'' or ''step'' allows';

/* ---- tasks and execution (src/task.c, src/scheduler.c, src/control.c) ---- */

CREATE FUNCTION tasker_create_task(name text, context jsonb DEFAULT '{}',
                                   namespace text DEFAULT 'default',
                                   version text DEFAULT NULL,
                                   initiator text DEFAULT 'unknown',
                                   source_system text DEFAULT 'unknown',
                                   reason text DEFAULT 'unknown',
                                   tags text[] DEFAULT '{}',
                                   bypass_steps text[] DEFAULT '{}',
                                   requested_at timestamptz DEFAULT now(),
                                   identity_key text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'tasker_create_task_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text) IS
    'Create a task from a registered template; returns its task_id (the existing one for a repeated identity_key)';

CREATE FUNCTION tasker_cancel_task(task_id bigint, reason text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_cancel_task_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_cancel_task(bigint, text) IS
    'Cancel a task and its pending steps; false if it was already cancelled';

CREATE FUNCTION tasker_retry_task(task_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_retry_task_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_retry_task(bigint) IS
    'Send a task in error, and its failed steps (attempts reset), back to pending';

CREATE FUNCTION tasker_resolve_step(step_id bigint, results jsonb DEFAULT '{}')
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_resolve_step_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_resolve_step(bigint, jsonb) IS
    'Settle a pending or failed step by hand with the given results; its dependents become ready';

CREATE FUNCTION tasker_cancel_step(step_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'tasker_cancel_step_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_cancel_step(bigint) IS
    'Cancel a pending or running step; its dependents never run';

CREATE FUNCTION tasker_run_task(task_id bigint, timeout interval DEFAULT '60 seconds')
RETURNS text
AS 'MODULE_PATHNAME', 'tasker_run_task_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_run_task(bigint, interval) IS
    'Run a task''s steps in this session (no worker needed) until it is final, blocked, or the timeout passes; returns its state';

CREATE FUNCTION tasker_run_steps(max_steps integer DEFAULT 50)
RETURNS integer
AS 'MODULE_PATHNAME', 'tasker_run_steps_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_run_steps(integer) IS
    'Claim and run up to max_steps ready steps of any task in this transaction, as one worker batch does; returns the number run';

CREATE FUNCTION tasker_wait_for_task(task_id bigint, timeout interval DEFAULT '60 seconds')
RETURNS text
AS 'MODULE_PATHNAME', 'tasker_wait_for_task_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_wait_for_task(bigint, interval) IS
    'Wait until the workers bring a task to a final state, or the timeout passes; returns its state';

CREATE FUNCTION tasker_worker_status(
    OUT role text, OUT slot integer, OUT pid integer, OUT state text,
    OUT steps_run bigint, OUT last_activity timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tasker_worker_status_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_worker_status() IS
    'The launcher and each executor worker: pid, state, steps run, last activity';

CREATE FUNCTION tasker_permanent_error(message text)
RETURNS void
AS 'MODULE_PATHNAME', 'tasker_permanent_error_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_permanent_error(text) IS
    'Raise from a step handler: the step fails and is never retried (SQLSTATE TK001)';

CREATE FUNCTION tasker_retry_error(message text, retry_after_seconds integer DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'tasker_retry_error_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_retry_error(text, integer) IS
    'Raise from a step handler: the attempt fails and the retry waits the given seconds (SQLSTATE TK002)';
/* ------------------------------------------------------------------------
 * JSON Schema (src/jsonschema.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION tasker_validate_json(schema jsonb, instance jsonb)
RETURNS text[]
AS 'MODULE_PATHNAME', 'tasker_validate_json_sql'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION tasker_validate_json(jsonb, jsonb) IS
    'Every violation of a JSON Schema by a jsonb value, one message per element, each starting with the value''s path; empty when the value conforms';

/* ---- readiness, execution context and the DAG (plain SQL) ---- */

CREATE TYPE tasker_step_readiness AS (
    workflow_step_id bigint, task_id bigint, named_step_id integer,
    name text, current_state text, dependencies_satisfied boolean,
    retry_eligible boolean, ready_for_execution boolean,
    last_failure_at timestamptz, next_retry_at timestamptz,
    total_parents integer, completed_parents integer,
    attempts integer, retry_limit integer,
    backoff_request_seconds integer, last_attempted_at timestamptz);
COMMENT ON TYPE tasker_step_readiness IS
    'A row of tasker_step_readiness_status: the Ruby get_step_readiness_status columns';

CREATE TYPE tasker_task_execution_context AS (
    task_id bigint, named_task_id integer, status text,
    total_steps bigint, pending_steps bigint, in_progress_steps bigint,
    completed_steps bigint, failed_steps bigint, ready_steps bigint,
    execution_status text, recommended_action text,
    completion_percentage numeric, health_status text);
COMMENT ON TYPE tasker_task_execution_context IS
    'A row of tasker_task_execution_context: the Ruby get_task_execution_context columns';

CREATE FUNCTION tasker_step_readiness_status(task_ids bigint[],
                                             as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_step_readiness
LANGUAGE sql STABLE
AS $$
    SELECT s.workflow_step_id, s.task_id, s.named_step_id, n.name::text,
           s.current_state::text,
           p.total = p.done,
           s.attempts = 0 OR (s.retryable AND s.attempts < s.retry_limit),
           s.current_state IN ('pending', 'error')
             AND NOT s.processed AND NOT s.in_process
             AND p.total = p.done
             AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.retry_limit))
             AND s.next_attempt_at IS NOT NULL AND s.next_attempt_at <= as_of,
           lf.created_at,
           CASE WHEN s.current_state = 'error' THEN s.next_attempt_at END,
           p.total::integer, p.done::integer, s.attempts, s.retry_limit,
           s.backoff_request_seconds, s.last_attempted_at
      FROM @extschema@.tasker_workflow_steps s
      JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id
     CROSS JOIN LATERAL (
           SELECT count(*) AS total,
                  count(*) FILTER (WHERE ps.current_state IN ('complete', 'resolved_manually')) AS done
             FROM @extschema@.tasker_workflow_step_edges e
             JOIN @extschema@.tasker_workflow_steps ps ON ps.workflow_step_id = e.from_step_id
            WHERE e.to_step_id = s.workflow_step_id) p
      LEFT JOIN @extschema@.tasker_workflow_step_transitions lf
             ON lf.workflow_step_id = s.workflow_step_id AND lf.most_recent
            AND lf.to_state = 'error'
     WHERE s.task_id = ANY (task_ids)
     ORDER BY s.task_id, s.workflow_step_id
$$;
COMMENT ON FUNCTION tasker_step_readiness_status(bigint[], timestamptz) IS
    'Readiness of every step of the given tasks as of a time (the Ruby get_step_readiness_status_batch, with its defects fixed)';

CREATE FUNCTION tasker_step_readiness_status(task_id bigint,
                                             step_ids bigint[] DEFAULT NULL,
                                             as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_step_readiness
LANGUAGE sql STABLE
AS $$
    SELECT r.*
      FROM @extschema@.tasker_step_readiness_status(ARRAY[$1], $3) r
     WHERE $2 IS NULL OR r.workflow_step_id = ANY ($2)
$$;
COMMENT ON FUNCTION tasker_step_readiness_status(bigint, bigint[], timestamptz) IS
    'Readiness of the steps of one task (all, or those in step_ids) as of a time (the Ruby get_step_readiness_status)';

CREATE FUNCTION tasker_task_execution_context(task_ids bigint[],
                                              as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_task_execution_context
LANGUAGE sql STABLE
AS $$
    WITH counts AS (
        SELECT t.task_id, t.named_task_id, t.current_state::text AS status,
               count(r.workflow_step_id) AS total,
               count(*) FILTER (WHERE r.current_state = 'pending') AS pending,
               count(*) FILTER (WHERE r.current_state = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')) AS completed,
               count(*) FILTER (WHERE r.current_state = 'error') AS failed,
               count(*) FILTER (WHERE r.ready_for_execution) AS ready,
               count(*) FILTER (WHERE (r.current_state = 'error' AND NOT r.retry_eligible)
                                   OR r.current_state = 'cancelled') AS blocked
          FROM @extschema@.tasker_tasks t
          LEFT JOIN @extschema@.tasker_step_readiness_status($1, $2) r ON r.task_id = t.task_id
         WHERE t.task_id = ANY ($1)
         GROUP BY t.task_id, t.named_task_id, t.current_state)
    SELECT task_id, named_task_id, status, total, pending, in_progress,
           completed, failed, ready,
           CASE WHEN ready > 0 THEN 'has_ready_steps'
                WHEN in_progress > 0 THEN 'processing'
                WHEN blocked > 0 THEN 'blocked_by_failures'
                WHEN completed = total AND total > 0 THEN 'all_complete'
                ELSE 'waiting_for_dependencies' END,
           CASE WHEN ready > 0 THEN 'execute_ready_steps'
                WHEN in_progress > 0 THEN 'wait_for_completion'
                WHEN blocked > 0 THEN 'handle_failures'
                WHEN completed = total AND total > 0 THEN 'finalize_task'
                ELSE 'wait_for_dependencies' END,
           CASE WHEN total = 0 THEN 0.0
                ELSE round(completed::numeric / total * 100, 2) END,
           CASE WHEN failed = 0 AND blocked = 0 THEN 'healthy'
                WHEN ready > 0 THEN 'recovering'
                WHEN blocked > 0 THEN 'blocked'
                ELSE 'recovering' END
      FROM counts
     ORDER BY task_id
$$;
COMMENT ON FUNCTION tasker_task_execution_context(bigint[], timestamptz) IS
    'Step counts, execution status, recommended action and health of the given tasks (the Ruby get_task_execution_contexts_batch)';

CREATE FUNCTION tasker_task_execution_context(task_id bigint,
                                              as_of timestamptz DEFAULT now())
RETURNS SETOF tasker_task_execution_context
LANGUAGE sql STABLE
AS $$
    SELECT * FROM @extschema@.tasker_task_execution_context(ARRAY[$1], $2)
$$;
COMMENT ON FUNCTION tasker_task_execution_context(bigint, timestamptz) IS
    'Step counts, execution status, recommended action and health of one task (the Ruby get_task_execution_context)';

CREATE FUNCTION tasker_dependency_levels(task_id bigint)
RETURNS TABLE (workflow_step_id bigint, dependency_level integer)
LANGUAGE sql STABLE
AS $$
    WITH RECURSIVE levels(workflow_step_id, level) AS (
        SELECT s.workflow_step_id, 0
          FROM @extschema@.tasker_workflow_steps s
         WHERE s.task_id = $1
           AND NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_step_edges e
                            WHERE e.to_step_id = s.workflow_step_id)
        UNION ALL
        SELECT e.to_step_id, l.level + 1
          FROM levels l
          JOIN @extschema@.tasker_workflow_step_edges e ON e.from_step_id = l.workflow_step_id
    )
    SELECT workflow_step_id, max(level)::integer
      FROM levels
     GROUP BY workflow_step_id
     ORDER BY 2, 1
$$;
COMMENT ON FUNCTION tasker_dependency_levels(bigint) IS
    'Each step''s dependency level: 0 for roots, else its longest distance from a root';

CREATE VIEW tasker_step_dag_relationships AS
WITH RECURSIVE depths(workflow_step_id, depth) AS (
    SELECT s.workflow_step_id, 0
      FROM tasker_workflow_steps s
     WHERE NOT EXISTS (SELECT 1 FROM tasker_workflow_step_edges e
                        WHERE e.to_step_id = s.workflow_step_id)
    UNION ALL
    SELECT e.to_step_id, d.depth + 1
      FROM depths d
      JOIN tasker_workflow_step_edges e ON e.from_step_id = d.workflow_step_id
     WHERE d.depth < 50
)
SELECT s.workflow_step_id, s.task_id, s.named_step_id,
       COALESCE((SELECT jsonb_agg(e.from_step_id ORDER BY e.from_step_id)
                   FROM tasker_workflow_step_edges e
                  WHERE e.to_step_id = s.workflow_step_id), '[]') AS parent_step_ids,
       COALESCE((SELECT jsonb_agg(e.to_step_id ORDER BY e.to_step_id)
                   FROM tasker_workflow_step_edges e
                  WHERE e.from_step_id = s.workflow_step_id), '[]') AS child_step_ids,
       (SELECT count(*) FROM tasker_workflow_step_edges e
         WHERE e.to_step_id = s.workflow_step_id) AS parent_count,
       (SELECT count(*) FROM tasker_workflow_step_edges e
         WHERE e.from_step_id = s.workflow_step_id) AS child_count,
       NOT EXISTS (SELECT 1 FROM tasker_workflow_step_edges e
                    WHERE e.to_step_id = s.workflow_step_id) AS is_root_step,
       NOT EXISTS (SELECT 1 FROM tasker_workflow_step_edges e
                    WHERE e.from_step_id = s.workflow_step_id) AS is_leaf_step,
       (SELECT min(d.depth) FROM depths d
         WHERE d.workflow_step_id = s.workflow_step_id) AS min_depth_from_root
  FROM tasker_workflow_steps s;
COMMENT ON VIEW tasker_step_dag_relationships IS
    'Each step''s parents, children, root/leaf flags and shortest depth from a root';

/* ---- events (src/events.c) ---- */

CREATE VIEW tasker_event_catalog AS
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
    ('step.failed', 'step', 'An attempt of a step failed; the error is in its results', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.retry_requested', 'step', 'A failed step went back to pending for another attempt', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.cancelled', 'step', 'A step was cancelled (alone or with its task)', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at']),
    ('step.resolved_manually', 'step', 'A step was settled by hand or bypassed', ARRAY['task_id', 'step_id', 'step_name', 'task_name', 'namespace', 'from_state', 'to_state', 'attempt', 'at'])
  ) AS e(name, category, description, payload_fields)
UNION ALL
SELECT DISTINCT ON (ce->>'name') ce->>'name', 'custom', ce->>'description', ARRAY['event', 'payload', 'at']
  FROM (SELECT jsonb_array_elements(custom_events) AS ce FROM tasker_named_tasks
        UNION ALL
        SELECT jsonb_array_elements(custom_events) FROM tasker_named_tasks_named_steps) c
 WHERE jsonb_typeof(ce) = 'object' AND ce ? 'name';
COMMENT ON VIEW tasker_event_catalog IS
    'Every event sent on the tasker_events channel: the built-in ones and the custom events that templates declare';

CREATE FUNCTION tasker_publish_event(name text, payload jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    message text;
BEGIN
    IF name IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'event name and payload must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the name of a declared custom event and a JSON object.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.tasker_event_catalog c
                    WHERE c.name = tasker_publish_event.name AND c.category = 'custom') THEN
        RAISE EXCEPTION 'custom event "%" is not declared', name
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'Only events listed under custom_events in a registered template can be published.',
                  HINT = 'Declare the event in a template''s custom_events, then register the template.';
    END IF;
    IF jsonb_typeof(payload) <> 'object' THEN
        RAISE EXCEPTION 'event payload must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The payload given is %s.', left(payload::text, 100)),
                  HINT = 'Pass the payload as ''{"key": "value"}''.';
    END IF;
    message := jsonb_build_object('event', name, 'payload', payload,
                                  'at', clock_timestamp())::text;
    IF octet_length(message) > 7900 THEN
        RAISE EXCEPTION 'event payload is too large'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('The notification would take %s bytes; NOTIFY carries at most 7900 here.', octet_length(message)),
                  HINT = 'Send identifiers in the payload and let listeners read the rest from tables.';
    END IF;
    PERFORM pg_catalog.pg_notify('tasker_events', message);
END
$$;
COMMENT ON FUNCTION tasker_publish_event(text, jsonb) IS
    'Send a custom event declared by a template on the tasker_events channel';
/* ---- templates and handlers (src/template.c) ---- */

CREATE TABLE tasker_handler_registry (
    handler_class       text PRIMARY KEY
                        CONSTRAINT handler_registry_class_not_empty
                        CHECK (handler_class <> ''),
    function            regprocedure NOT NULL,
    registered_by       oid NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tasker_handler_registry IS
    'Step handler classes (as Ruby templates name them) mapped to SQL functions (jsonb) RETURNS jsonb';
COMMENT ON COLUMN tasker_handler_registry.registered_by IS
    'The role that registered the class; only roles with its privileges may remap it';
SELECT pg_catalog.pg_extension_config_dump('tasker_handler_registry', '');

CREATE FUNCTION tasker_register_handler(handler_class text, function regprocedure)
RETURNS void
AS 'MODULE_PATHNAME', 'tasker_register_handler_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_register_handler(text, regprocedure) IS
    'Map a step handler class to an SQL function (jsonb) RETURNS jsonb, replacing an earlier mapping of the class';

CREATE FUNCTION tasker_register_template(yaml text, replace boolean DEFAULT false)
RETURNS integer
AS 'MODULE_PATHNAME', 'tasker_register_template_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_register_template(text, boolean) IS
    'Validate a task template (YAML or JSON text) and write its catalog rows; returns its named_task_id';

CREATE FUNCTION tasker_register_template_file(path text, replace boolean DEFAULT false)
RETURNS integer
AS 'MODULE_PATHNAME', 'tasker_register_template_file_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_register_template_file(text, boolean) IS
    'As tasker_register_template, reading the template from a server file (needs the privileges of pg_read_server_files)';

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

/* ---- HTTP steps (src/handler_http.c) ---- */

CREATE FUNCTION tasker_http_stats(OUT outcome text, OUT requests bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'tasker_http_stats_sql'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION tasker_http_stats() IS
    'HTTP requests of api steps by outcome (2xx, retryable, permanent, timeout, connection_error, lease_expired) since the server started';
