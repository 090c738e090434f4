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
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_steps_task_named_step_unique UNIQUE (task_id, named_step_id)
);
/* The ready-steps index: the worker claims steps by scanning only this. */
CREATE INDEX tasker_workflow_steps_ready_idx
    ON tasker_workflow_steps (next_attempt_at)
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
