-- 010_template_errors: tasker_register_template refuses every kind of
-- invalid template with an error that names the line and column, and a
-- valid one produces exactly the catalog rows the docs describe.
\set VERBOSITY default

-- Handlers used below.
CREATE SCHEMA tpl;
CREATE FUNCTION tpl.fetch_order(step jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT jsonb_build_object('order_id', 7) $$;
CREATE FUNCTION tpl.charge(step jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION tpl.takes_int(step integer) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION tpl.returns_text(step jsonb) RETURNS text
    LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE PROCEDURE tpl.a_procedure(step jsonb) LANGUAGE sql AS $$ SELECT 1 $$;

-- ---------------------------------------------------------------------
-- A valid template and the catalog rows it produces.
-- ---------------------------------------------------------------------
SELECT tasker_register_template($yaml$
---
name: order_process
namespace_name: payments
version: 1.2.0
module_namespace: OrderProcess
task_handler_class: OrderHandler
description: Take an order from fetch to confirmation
concurrent: true
default_dependent_system: shop_db
schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: integer}
configuration:
  priority: high
  max_execution_time: 300
custom_events:
  - name: order.flagged
    description: An order needs a human look
  - order.archived
step_templates:
  - name: fetch_order
    description: Retrieve the order
    handler_class: tpl.fetch_order
  - name: charge
    depends_on_step: fetch_order
    handler_class: tpl.charge
    default_retryable: true
    default_retry_limit: 2
    timeout_seconds: 30
    dependent_system: payment_gateway
    handler_config:
      payment_processor: stripe
    custom_events:
      - name: payment.gateway_error
        description: The gateway returned an error
  - name: notify
    depends_on_steps: [charge, fetch_order, charge]
    depends_on_step: charge
    skippable: true
    default_retryable: false
    handler_class: Notify::WebhookHandler
    handler_config:
      type: api
      url: https://hooks.example.com/orders/{{context.order_id}}
      method: post
$yaml$) > 0 AS registered;

SELECT ns.name AS namespace, nt.name, nt.version, nt.description,
       nt.module_namespace, nt.task_handler_class, nt.default_dependent_system,
       nt.configuration, nt.context_schema, nt.custom_events,
       pg_get_userbyid(nt.owner) = current_user AS owned_by_me
  FROM tasker_named_tasks nt
  JOIN tasker_task_namespaces ns USING (task_namespace_id)
 WHERE nt.name = 'order_process';

SELECT x.position, s.name, d.name AS dependent_system, x.description,
       x.handler_class, x.handler_function, x.handler_config, x.depends_on,
       x.skippable, x.default_retryable, x.default_retry_limit,
       x.timeout_seconds, x.custom_events
  FROM tasker_named_tasks_named_steps x
  JOIN tasker_named_tasks nt USING (named_task_id)
  JOIN tasker_named_steps s USING (named_step_id)
  JOIN tasker_dependent_systems d USING (dependent_system_id)
 WHERE nt.name = 'order_process'
 ORDER BY x.position;

-- The stored template is the whole template, as JSON.
SELECT jsonb_pretty(template) FROM tasker_named_tasks WHERE name = 'order_process';

SELECT namespace, name, version, step_names, owner = current_user AS owned_by_me
  FROM tasker_templates WHERE name = 'order_process';

-- JSON text is YAML too.
SELECT tasker_register_template('{"name": "json_task", "step_templates":
    [{"name": "only", "handler_class": "tpl.charge"}]}') > 0 AS registered;
SELECT namespace, name, version, step_names FROM tasker_templates WHERE name = 'json_task';

-- ---------------------------------------------------------------------
-- invalid input: malformed YAML, with libyaml's problem and position
-- ---------------------------------------------------------------------
SELECT tasker_register_template($yaml$
name: broken
step_templates:
  - name: a
    handler_class: [tpl.charge
$yaml$);

-- invalid input: a tab where YAML expects indentation
SELECT tasker_register_template(E'name: tabs\nstep_templates:\n\t- name: a\n');

-- invalid input: an empty text
SELECT tasker_register_template('');

-- invalid input: a document that is not a mapping
SELECT tasker_register_template($yaml$
- name: a_list
$yaml$);
SELECT tasker_register_template('just a string');

-- invalid input: two documents in one text
SELECT tasker_register_template($yaml$
name: one
step_templates: [{name: a, handler_class: tpl.charge}]
---
name: two
$yaml$);

-- invalid input: in a stream of templates, one invalid document registers
-- none, and the error names the document; anchors do not cross documents
SELECT tasker_register_templates($yaml$
name: stream_one
step_templates: [{name: a, handler_class: tpl.charge}]
---
name: stream_two
step_templates: [{name: a, handler_class: tpl.no_such_handler}]
$yaml$);
SELECT tasker_register_templates($yaml$
name: stream_one
configuration: &shared {retries: 3}
step_templates: [{name: a, handler_class: tpl.charge}]
---
name: stream_two
configuration: *shared
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);
SELECT tasker_register_templates('');
SELECT count(*) FROM tasker_named_tasks WHERE name LIKE 'stream%';

-- invalid input: ERB, which tasker does not evaluate, in a value and
-- around lines (templates written for the Ruby engine)
SELECT tasker_register_template($yaml$
name: erb
step_templates:
  - name: a
    handler_class: tpl.charge
    handler_config: {api_key: "<%= ENV['API_KEY'] %>"}
$yaml$);
SELECT tasker_register_template($yaml$
name: erb
<% if ENV['RETRY'] %>
step_templates: [{name: a, handler_class: tpl.charge}]
<% end %>
$yaml$);
SELECT tasker_register_template($yaml$
name: erb
step_templates: [{name: a, handler_class: tpl.charge, default_retry_limit: <%= 3 %>}]
$yaml$);

-- invalid input: missing required keys
SELECT tasker_register_template($yaml$
namespace_name: payments
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);
SELECT tasker_register_template($yaml$
name: no_steps
version: 1.0.0
$yaml$);
SELECT tasker_register_template($yaml$
name: empty_steps
step_templates: []
$yaml$);
SELECT tasker_register_template($yaml$
name: nameless_step
step_templates:
  - handler_class: tpl.charge
$yaml$);

-- invalid input: unknown keys (a typo is never ignored)
SELECT tasker_register_template($yaml$
name: typo
step_templates:
  - name: a
    handler_class: tpl.charge
  - name: b
    handler_class: tpl.charge
    depends_on_stpe: a
$yaml$);
SELECT tasker_register_template($yaml$
name: typo
step_template:
  - name: a
    handler_class: tpl.charge
$yaml$);
SELECT tasker_register_template($yaml$
name: typo
colour: blue
step_templates:
  - name: a
    handler_class: tpl.charge
$yaml$);

-- invalid input: wrong types
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - name: a
    handler_class: tpl.charge
    default_retry_limit: -1
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - name: a
    handler_class: tpl.charge
    default_retry_limit: "3"
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - name: a
    handler_class: tpl.charge
    timeout_seconds: 0
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - name: a
    handler_class: tpl.charge
    skippable: yes
$yaml$);
SELECT tasker_register_template($yaml$
name: [types]
step_templates:
  - name: a
    handler_class: tpl.charge
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  name: a
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - name: a
    handler_class: tpl.charge
    handler_config: [1, 2]
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - name: a
    handler_class: tpl.charge
  - name: b
    handler_class: tpl.charge
    depends_on_steps: a
$yaml$);
SELECT tasker_register_template($yaml$
name: types
schema: "{type: object}"
step_templates:
  - name: a
    handler_class: tpl.charge
$yaml$);
SELECT tasker_register_template($yaml$
name: types
step_templates:
  - just_a_string
$yaml$);

-- invalid input: versions that are not semantic
SELECT tasker_register_template($yaml$
name: versions
version: 1.0
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);
SELECT tasker_register_template($yaml$
name: versions
version: 01.2.3
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);
SELECT tasker_register_template($yaml$
name: versions
version: 1.2.3-
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);

-- invalid input: a key twice in one mapping
SELECT tasker_register_template($yaml$
name: twice
step_templates:
  - name: a
    handler_class: tpl.charge
    handler_class: tpl.fetch_order
$yaml$);

-- invalid input: duplicate step names
SELECT tasker_register_template($yaml$
name: dup_steps
step_templates:
  - name: a
    handler_class: tpl.charge
  - name: b
    handler_class: tpl.charge
  - name: a
    handler_class: tpl.charge
$yaml$);

-- invalid input: a dependency on an unknown step
SELECT tasker_register_template($yaml$
name: unknown_dep
step_templates:
  - name: a
    handler_class: tpl.charge
  - name: b
    handler_class: tpl.charge
    depends_on_steps: [a, c]
$yaml$);

-- invalid input: a step that depends on itself
SELECT tasker_register_template($yaml$
name: self_dep
step_templates:
  - name: a
    handler_class: tpl.charge
    depends_on_step: a
$yaml$);

-- invalid input: a dependency cycle
SELECT tasker_register_template($yaml$
name: cycle
step_templates:
  - name: start
    handler_class: tpl.charge
  - name: a
    handler_class: tpl.charge
    depends_on_steps: [start, c]
  - name: b
    handler_class: tpl.charge
    depends_on_step: a
  - name: c
    handler_class: tpl.charge
    depends_on_step: b
$yaml$);

-- invalid input: named_steps lists every step and dependency
SELECT tasker_register_template($yaml$
name: whitelist
named_steps: [a]
step_templates:
  - name: a
    handler_class: tpl.charge
  - name: b
    handler_class: tpl.charge
$yaml$);
SELECT tasker_register_template($yaml$
name: whitelist
named_steps: [b]
step_templates:
  - name: b
    handler_class: tpl.charge
    depends_on_step: a
  - name: a
    handler_class: tpl.charge
$yaml$);

-- invalid input: handlers that do not resolve
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    handler_class: OrderProcess::StepHandler::FetchOrderHandler
$yaml$);
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    handler_class: tpl.no_such_function
$yaml$);
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    handler_class: tpl.takes_int
$yaml$);
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    handler_class: tpl.returns_text
$yaml$);
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    handler_class: tpl.a_procedure
$yaml$);
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    description: no handler at all
$yaml$);

-- invalid input: custom event names
SELECT tasker_register_template($yaml$
name: events
custom_events: [orderflagged]
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);
SELECT tasker_register_template($yaml$
name: events
step_templates:
  - name: a
    handler_class: tpl.charge
    custom_events:
      - name: step.exploded
$yaml$);
SELECT tasker_register_template($yaml$
name: events
step_templates:
  - name: a
    handler_class: tpl.charge
    custom_events:
      - description: an event without a name
$yaml$);
SELECT tasker_register_template($yaml$
name: events
custom_events:
  - name: order.flagged
    payload: {}
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);

-- invalid input: api steps need an http(s) url with a host and a known method
SELECT tasker_register_template($yaml$
name: api
step_templates:
  - name: call
    handler_config: {type: api, method: GET}
$yaml$);
SELECT tasker_register_template($yaml$
name: api
step_templates:
  - name: call
    handler_config: {type: api, url: ftp://files.example.com/x}
$yaml$);
SELECT tasker_register_template($yaml$
name: api
step_templates:
  - name: call
    handler_config: {type: api, url: "https:///orders"}
$yaml$);
SELECT tasker_register_template($yaml$
name: api
step_templates:
  - name: call
    handler_config: {type: api, url: "https://api.example.com", method: FETCH}
$yaml$);

-- invalid input: names longer than their columns (never truncated)
SELECT tasker_register_template(format($yaml$
name: %s
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$, repeat('n', 65)));
SELECT tasker_register_template(format($yaml$
name: long_step
step_templates: [{name: %s, handler_class: tpl.charge}]
$yaml$, repeat('s', 129)));
SELECT tasker_register_template(format($yaml$
name: long_namespace
namespace_name: %s
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$, repeat('p', 65)));
SELECT tasker_register_template(format($yaml$
name: long_version
version: 1.0.0-%s
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$, repeat('r', 60)));

-- invalid input: environments must use known keys, in every environment
SELECT tasker_register_template($yaml$
name: envs
step_templates: [{name: a, handler_class: tpl.charge}]
environments:
  production:
    step_templates:
      - name: a
        handler_confg: {timeout: 30}
$yaml$);
SELECT tasker_register_template($yaml$
name: envs
step_templates: [{name: a, handler_class: tpl.charge}]
environments: [production]
$yaml$);

-- invalid input: aliases must refer to an anchor, and expand to a bounded size
SELECT tasker_register_template($yaml$
name: alias
step_templates: [*nothing]
$yaml$);
SELECT tasker_register_template($yaml$
name: laughs
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
$yaml$);

-- invalid input: aliases may not expand beyond tasker.max_template_size
SET tasker.max_template_size = '4kB';
SELECT tasker_register_template(format($yaml$
name: wide
configuration:
  text: &text %s
  copies: [*text, *text, *text, *text, *text]
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$, repeat('x', 1000)));
RESET tasker.max_template_size;

-- invalid input: nesting too deep
SELECT tasker_register_template('name: deep' || chr(10) || 'x: ' || repeat('[', 100) || repeat(']', 100));

-- invalid input: a number jsonb cannot hold
SELECT tasker_register_template($yaml$
name: huge
configuration: {limit: 1e999999}
step_templates: [{name: a, handler_class: tpl.charge}]
$yaml$);

-- invalid input: a NUL character from an escape
SELECT tasker_register_template(E'name: "nul\\0"\nstep_templates: [{name: a, handler_class: tpl.charge}]');

-- invalid input: null arguments
SELECT tasker_register_template(NULL);
SELECT tasker_register_template('name: x', NULL);

-- ---------------------------------------------------------------------
-- Registering again: a duplicate without replace, then with replace
-- ---------------------------------------------------------------------
SELECT named_task_id AS order_id FROM tasker_named_tasks WHERE name = 'order_process' \gset

-- invalid input: the same namespace, name and version without replace
SELECT tasker_register_template($yaml$
name: order_process
namespace_name: payments
version: 1.2.0
step_templates: [{name: only, handler_class: tpl.charge}]
$yaml$);

-- replace keeps the named_task_id and replaces the step rows
SELECT tasker_register_template($yaml$
name: order_process
namespace_name: payments
version: 1.2.0
description: Replaced
step_templates: [{name: only, handler_class: tpl.charge}]
$yaml$, replace => true) = :order_id AS same_id;
SELECT description, step_names FROM tasker_templates WHERE named_task_id = :order_id;

-- a failed replace leaves the template as it was
SELECT tasker_register_template($yaml$
name: order_process
namespace_name: payments
version: 1.2.0
description: Broken
step_templates: [{name: only, handler_class: tpl.nothing_here}]
$yaml$, replace => true);
SELECT description, step_names FROM tasker_templates WHERE named_task_id = :order_id;

-- ---------------------------------------------------------------------
-- The handler registry
-- ---------------------------------------------------------------------
-- invalid input: a function that cannot be a step handler
SELECT tasker_register_handler('Bad::Handler', 'tpl.takes_int(integer)');
SELECT tasker_register_handler('Bad::Handler', 'tpl.returns_text(jsonb)');
-- invalid input: an empty or null class, a null function
SELECT tasker_register_handler('', 'tpl.charge(jsonb)');
SELECT tasker_register_handler(NULL, 'tpl.charge(jsonb)');
SELECT tasker_register_handler('Good::Handler', NULL);

SELECT tasker_register_handler('OrderProcess::StepHandler::FetchOrderHandler',
                               'tpl.fetch_order(jsonb)');
SELECT tasker_register_template($yaml$
name: handlers
step_templates:
  - name: fetch
    handler_class: OrderProcess::StepHandler::FetchOrderHandler
$yaml$) > 0 AS registered;
SELECT x.handler_class, x.handler_function
  FROM tasker_named_tasks_named_steps x JOIN tasker_named_tasks t USING (named_task_id)
 WHERE t.name = 'handlers';
SELECT handler_class, function, owner = current_user AS owned_by_me FROM tasker_handlers;

-- invalid input: a registered class whose function was dropped since
CREATE FUNCTION tpl.short_lived(step jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_handler('Short::Lived', 'tpl.short_lived(jsonb)');
DROP FUNCTION tpl.short_lived(jsonb);
SELECT tasker_register_template($yaml$
name: dropped
step_templates: [{name: a, handler_class: "Short::Lived"}]
$yaml$);

-- ---------------------------------------------------------------------
-- Environment overrides, selected by tasker.environment
-- ---------------------------------------------------------------------
SET tasker.environment = 'production';
SELECT tasker_register_template($yaml$
name: env_task
description: base
step_templates:
  - name: pay
    handler_class: tpl.charge
    default_retry_limit: 1
    handler_config: {processor: test, retries: {max: 1, backoff: linear}}
  - name: ship
    handler_class: tpl.charge
    depends_on_step: pay
environments:
  development:
    description: in development
  production:
    description: in production
    step_templates:
      - name: pay
        default_retry_limit: 5
        handler_config: {processor: stripe, retries: {max: 4}}
      - name: not_a_step
        handler_class: tpl.no_such_function
$yaml$) > 0 AS registered;
RESET tasker.environment;
SELECT t.description, x.position, x.default_retry_limit, x.handler_config
  FROM tasker_named_tasks t JOIN tasker_named_tasks_named_steps x USING (named_task_id)
 WHERE t.name = 'env_task' ORDER BY x.position;
SELECT template ? 'environments' AS keeps_environments
  FROM tasker_named_tasks WHERE name = 'env_task';

-- ---------------------------------------------------------------------
-- Template files
-- ---------------------------------------------------------------------
-- A file in the data directory, registered by a relative path.
DO $$
BEGIN
    EXECUTE format('COPY (SELECT unnest(%L::text[])) TO %L',
                   ARRAY['name: file_task', 'namespace_name: files',
                         'step_templates:', '  - name: a',
                         '    handler_class: tpl.charge'],
                   current_setting('data_directory') || '/tasker_010_template.yaml');
END
$$;
SELECT tasker_register_template_file('tasker_010_template.yaml') > 0 AS registered;
SELECT namespace, name, version, step_names FROM tasker_templates WHERE name = 'file_task';

-- invalid input: registering the file twice; the context names the file
SELECT tasker_register_template_file('tasker_010_template.yaml');

-- invalid input: a file that does not exist
SELECT tasker_register_template_file('/nonexistent/tasker/template.yaml');

-- invalid input: a role without pg_read_server_files
CREATE ROLE tasker_regress_reader;
GRANT EXECUTE ON FUNCTION tasker_register_template_file(text, boolean) TO tasker_regress_reader;
SET ROLE tasker_regress_reader;
SELECT tasker_register_template_file('/nonexistent/tasker/template.yaml');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION tasker_register_template_file(text, boolean) FROM tasker_regress_reader;
DROP ROLE tasker_regress_reader;

-- invalid input: a context schema that is not a valid JSON Schema is
-- refused at registration, not at the first task
SELECT tasker_register_template($$
name: bad_schema
schema:
  type: object
  properties:
    qty: {type: integer, minimum: "one"}
step_templates:
  - name: a
    handler_class: tpl.charge
$$);

-- invalid input: an api step whose request timeout is over a day
SELECT tasker_register_template($$
name: slow_api
step_templates:
  - name: call
    handler_config: {type: api, url: "https://example.com/hook", timeout: 90000}
$$);
