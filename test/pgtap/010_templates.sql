-- 010_templates: the template loader and the handler registry.
BEGIN;
SELECT plan(53);

CREATE SCHEMA tap;
CREATE FUNCTION tap.h(step jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION tap.fetch_order(step jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT '{"order": 1}'::jsonb $$;
CREATE FUNCTION tap.bad(step jsonb) RETURNS integer
    LANGUAGE sql AS $$ SELECT 1 $$;

-- The objects exist.
SELECT has_function('tasker_register_template', ARRAY['text', 'boolean']);
SELECT has_function('tasker_register_template_file', ARRAY['text', 'boolean']);
SELECT has_function('tasker_register_templates', ARRAY['text', 'boolean']);
SELECT has_function('tasker_register_handler', ARRAY['text', 'regprocedure']);
SELECT has_table('tasker_handler_registry');
SELECT has_view('tasker_templates');
SELECT has_view('tasker_handlers');
SELECT columns_are('tasker_templates', ARRAY['namespace', 'name', 'version',
    'description', 'step_names', 'owner', 'named_task_id', 'created_at']);
SELECT columns_are('tasker_handlers', ARRAY['handler_class', 'function',
    'owner', 'registered_at']);

-- A multi-step template and its catalog rows.
SELECT lives_ok($$
    SELECT tasker_register_template($y$
name: diamond
namespace_name: tap
version: 1.0.0
step_templates:
  - name: start
    handler_class: tap.h
  - name: left
    depends_on_step: start
    handler_class: tap.h
    default_retry_limit: 7
  - name: right
    depends_on_step: start
    handler_class: tap.h
    dependent_system: elsewhere
  - name: join
    depends_on_steps: [left, right]
    depends_on_step: right
    handler_class: tap.h
    timeout_seconds: 45
$y$)$$, 'a four-step diamond registers');
SELECT results_eq(
    $$SELECT step_names FROM tasker_templates WHERE namespace = 'tap' AND name = 'diamond'$$,
    $$VALUES (ARRAY['start', 'left', 'right', 'join'])$$,
    'tasker_templates lists the steps in order');
SELECT results_eq(
    $$SELECT s.name::text, x.depends_on, x.default_retry_limit, x.timeout_seconds,
             x.handler_function::text, d.name::text
        FROM tasker_named_tasks_named_steps x
        JOIN tasker_named_tasks t USING (named_task_id)
        JOIN tasker_named_steps s USING (named_step_id)
        JOIN tasker_dependent_systems d USING (dependent_system_id)
       WHERE t.name = 'diamond' ORDER BY x.position$$,
    $$VALUES ('start', '{}'::text[], 3, NULL::integer, 'tap.h(jsonb)', 'default'),
             ('left', '{start}', 7, NULL, 'tap.h(jsonb)', 'default'),
             ('right', '{start}', 3, NULL, 'tap.h(jsonb)', 'elsewhere'),
             ('join', '{right,left}', 3, 45, 'tap.h(jsonb)', 'default')$$,
    'each step row has its dependencies, policy, handler and system');
SELECT is((SELECT owner FROM tasker_templates WHERE name = 'diamond'), current_user::name,
    'the registering role owns the template');

-- The handler registry: a Ruby template loads once its classes are registered.
SELECT throws_ok($$
    SELECT tasker_register_template($y$
name: order_process
namespace_name: tap
step_templates:
  - name: fetch_order
    handler_class: OrderProcess::StepHandler::FetchOrderHandler
  - name: ship
    depends_on_step: fetch_order
    handler_class: OrderProcess::StepHandler::ShipHandler
$y$)$$, '42704', NULL, 'an unregistered Ruby class does not resolve');
SELECT lives_ok($$SELECT tasker_register_handler('OrderProcess::StepHandler::FetchOrderHandler', 'tap.fetch_order(jsonb)')$$,
    'a handler class is registered');
SELECT lives_ok($$SELECT tasker_register_handler('OrderProcess::StepHandler::ShipHandler', 'tap.h(jsonb)')$$,
    'a second handler class is registered');
SELECT lives_ok($$
    SELECT tasker_register_template($y$
name: order_process
namespace_name: tap
step_templates:
  - name: fetch_order
    handler_class: OrderProcess::StepHandler::FetchOrderHandler
  - name: ship
    depends_on_step: fetch_order
    handler_class: OrderProcess::StepHandler::ShipHandler
$y$)$$, 'the same Ruby template loads unchanged after registration');
SELECT results_eq(
    $$SELECT x.handler_class, x.handler_function::text
        FROM tasker_named_tasks_named_steps x JOIN tasker_named_tasks t USING (named_task_id)
       WHERE t.name = 'order_process' ORDER BY x.position$$,
    $$VALUES ('OrderProcess::StepHandler::FetchOrderHandler', 'tap.fetch_order(jsonb)'),
             ('OrderProcess::StepHandler::ShipHandler', 'tap.h(jsonb)')$$,
    'step rows keep the class and the function it resolved to');
SELECT lives_ok($$SELECT tasker_register_handler('OrderProcess::StepHandler::ShipHandler', 'tap.fetch_order(jsonb)')$$,
    'registering a class again remaps it');
SELECT is((SELECT function::text FROM tasker_handlers WHERE handler_class = 'OrderProcess::StepHandler::ShipHandler'),
    'tap.fetch_order(jsonb)', 'tasker_handlers shows the new mapping');
SELECT throws_ok($$SELECT tasker_register_handler('Bad', 'tap.bad(jsonb)')$$, '22023',
    'function tap.bad(jsonb) cannot be a step handler', 'a function returning integer is refused');
SELECT throws_ok($$SELECT tasker_register_template('{name: x, step_templates: [{name: a, handler_class: tap.bad}]}')$$,
    '42883', NULL, 'a handler_class naming a function of the wrong signature is refused');

-- A YAML stream registers each document's template, in order.
SELECT is(array_length(tasker_register_templates($y$
name: streamed_a
step_templates: [{name: a, handler_class: tap.h}]
---
name: streamed_b
configuration: {limit: 3}
step_templates: [{name: b, handler_class: tap.h}]
...
$y$), 1), 2, 'tasker_register_templates returns one id per document');
SELECT results_eq($$SELECT name::text, step_names FROM tasker_templates WHERE name LIKE 'streamed%' ORDER BY name$$,
    $$VALUES ('streamed_a', ARRAY['a']), ('streamed_b', ARRAY['b'])$$,
    'each document of the stream is a template');

-- Several versions of one name coexist; the same name lives in two namespaces.
SELECT lives_ok($$SELECT tasker_register_template('{name: versioned, version: 1.0.0, step_templates: [{name: a, handler_class: tap.h}]}')$$,
    'version 1.0.0 registers');
SELECT lives_ok($$SELECT tasker_register_template('{name: versioned, version: 2.0.0-rc.1, step_templates: [{name: a, handler_class: tap.h}]}')$$,
    'version 2.0.0-rc.1 registers');
SELECT lives_ok($$SELECT tasker_register_template('{name: versioned, version: 2.0.0, step_templates: [{name: b, handler_class: tap.h}]}')$$,
    'version 2.0.0 registers');
SELECT results_eq($$SELECT version, step_names FROM tasker_templates WHERE name = 'versioned' ORDER BY version$$,
    $$VALUES ('1.0.0', ARRAY['a']), ('2.0.0', ARRAY['b']), ('2.0.0-rc.1', ARRAY['a'])$$,
    'three versions coexist, each with its own steps');
CREATE FUNCTION tap.version_ok(ver text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM tasker_register_template(format(
        '{name: semver, version: "%s", step_templates: [{name: a, handler_class: tap.h}]}', ver));
    RAISE EXCEPTION USING ERRCODE = 'TZ000';
EXCEPTION
    WHEN SQLSTATE 'TZ000' THEN RETURN true;
    WHEN SQLSTATE '22023' THEN RETURN false;
END
$f$;
SELECT results_eq($$SELECT v, tap.version_ok(v) FROM unnest(ARRAY['0.0.0', '10.20.30',
        '1.2.3-rc.1', '1.2.3-a+b-c.1', '1.2.3+a+b', '1.2.3-', '1.2.3-a..b', '01.2.3',
        '1.2', '1.2.3.4', 'v1.2.3']) WITH ORDINALITY AS u(v, n) ORDER BY n$$,
    $$VALUES ('0.0.0', true), ('10.20.30', true), ('1.2.3-rc.1', true), ('1.2.3-a+b-c.1', true),
             ('1.2.3+a+b', false), ('1.2.3-', false), ('1.2.3-a..b', false), ('01.2.3', false),
             ('1.2', false), ('1.2.3.4', false), ('v1.2.3', false)$$,
    'versions follow semantic versioning');
SELECT lives_ok($$SELECT tasker_register_template('{name: versioned, namespace_name: other, version: 1.0.0, step_templates: [{name: a, handler_class: tap.h}]}')$$,
    'the same name and version registers in another namespace');
SELECT is((SELECT count(DISTINCT namespace)::integer FROM tasker_templates WHERE name = 'versioned'), 2,
    'the name lives in two namespaces');

-- replace keeps the named_task_id; without it a duplicate is refused.
SELECT throws_ok($$SELECT tasker_register_template('{name: versioned, version: 1.0.0, step_templates: [{name: c, handler_class: tap.h}]}')$$,
    '42710', 'task template "versioned" version 1.0.0 already exists in namespace "default"',
    'registering an existing version without replace is refused');
CREATE TEMP TABLE ids AS
SELECT named_task_id AS old_id FROM tasker_templates WHERE name = 'versioned' AND version = '1.0.0' AND namespace = 'default';
SELECT is(tasker_register_template('{name: versioned, version: 1.0.0, description: new, step_templates: [{name: c, handler_class: tap.h}]}', replace => true),
    (SELECT old_id FROM ids), 'replace returns the same named_task_id');
SELECT results_eq($$SELECT description, step_names FROM tasker_templates WHERE named_task_id = (SELECT old_id FROM ids)$$,
    $$VALUES ('new'::text, ARRAY['c'])$$, 'replace updated the row and replaced its steps');

-- environments: applied when tasker.environment names one.
CREATE TEMP TABLE env_doc (doc text);
INSERT INTO env_doc VALUES ($y$
name: env_task
version: 1.0.0
step_templates:
  - name: send_email
    handler_class: tap.h
    default_retry_limit: 1
    handler_config: {email_service: smtp, from: shop@example.com}
environments:
  test:
    step_templates:
      - name: send_email
        handler_config: {email_service: mock}
  production:
    description: production build
    step_templates:
      - name: send_email
        default_retry_limit: 5
        handler_config: {email_service: sendgrid}
$y$);
SELECT ok(tasker_register_template(doc) > 0, 'the template registers with no environment') FROM env_doc;
SELECT results_eq($$SELECT x.default_retry_limit, x.handler_config FROM tasker_named_steps s
        JOIN tasker_named_tasks_named_steps x USING (named_step_id)
        JOIN tasker_named_tasks t USING (named_task_id) WHERE t.name = 'env_task'$$,
    $$VALUES (1, '{"email_service": "smtp", "from": "shop@example.com"}'::jsonb)$$,
    'without tasker.environment no override applies');
SET LOCAL tasker.environment = 'production';
SELECT ok(tasker_register_template(doc, replace => true) > 0, 'it registers again for production') FROM env_doc;
SELECT results_eq($$SELECT t.description::text, x.default_retry_limit, x.handler_config FROM tasker_named_steps s
        JOIN tasker_named_tasks_named_steps x USING (named_step_id)
        JOIN tasker_named_tasks t USING (named_task_id) WHERE t.name = 'env_task'$$,
    $$VALUES ('production build', 5, '{"email_service": "sendgrid", "from": "shop@example.com"}'::jsonb)$$,
    'the production overrides are deep-merged');
SET LOCAL tasker.environment = 'staging';
SELECT ok(tasker_register_template(doc, replace => true) > 0, 'it registers again for staging') FROM env_doc;
SELECT is((SELECT x.default_retry_limit FROM tasker_named_tasks_named_steps x JOIN tasker_named_tasks t USING (named_task_id)
            WHERE t.name = 'env_task'), 1, 'an environment the template does not name applies nothing');
RESET tasker.environment;

-- api steps: validated, and need no SQL function.
SELECT lives_ok($$SELECT tasker_register_template('{name: api_task, step_templates: [{name: call, handler_class: Legacy::ApiHandler, handler_config: {type: api, url: "https://api.example.com/x", method: patch}}]}')$$,
    'an api step with a Ruby class label registers');
SELECT results_eq($$SELECT x.handler_class, x.handler_function IS NULL, x.handler_config->>'method'
        FROM tasker_named_tasks_named_steps x JOIN tasker_named_tasks t USING (named_task_id) WHERE t.name = 'api_task'$$,
    $$VALUES ('Legacy::ApiHandler', true, 'PATCH')$$,
    'an api step keeps its label, has no function, and its method is upper case');
SELECT throws_ok($$SELECT tasker_register_template('{name: api_bad, step_templates: [{name: call, handler_config: {type: api}}]}')$$,
    '22023', NULL, 'an api step without a url is refused');
SELECT throws_ok($$SELECT tasker_register_template('{name: api_bad, step_templates: [{name: call, handler_config: {type: api, url: "mailto:x@example.com"}}]}')$$,
    '22023', NULL, 'an api step with a non-http url is refused');
SELECT throws_ok($$SELECT tasker_register_template('{name: api_bad, step_templates: [{name: call, handler_config: {type: api, url: "http://h", method: TRACE}}]}')$$,
    '22023', NULL, 'an api step with an unsupported method is refused');

-- Errors and their SQLSTATEs; nothing is left behind by a failure.
SELECT throws_ok($$SELECT tasker_register_template('name: [oops')$$, '42601', 'task template is not valid YAML',
    'malformed YAML is a syntax error');
SELECT throws_ok($$SELECT tasker_register_template('{name: cyc, step_templates: [{name: a, handler_class: tap.h, depends_on_step: b}, {name: b, handler_class: tap.h, depends_on_step: a}]}')$$,
    '22023', 'task template "cyc" is invalid', 'a cycle is refused');
SELECT is((SELECT count(*)::integer FROM tasker_named_tasks WHERE name IN ('cyc', 'api_bad')), 0,
    'failed registrations leave no row');
SELECT throws_ok($$SELECT tasker_register_template(NULL)$$, '22004', NULL, 'a null template is refused');

-- Ownership: another role may neither replace the template nor remap the class.
CREATE ROLE tasker_tap_other;
GRANT USAGE ON SCHEMA tap TO tasker_tap_other;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO tasker_tap_other;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tasker_tap_other;

SET LOCAL ROLE tasker_tap_other;
SELECT throws_ok($$SELECT tasker_register_template('{name: diamond, namespace_name: tap, version: 1.0.0, step_templates: [{name: a, handler_class: tap.h}]}', true)$$,
    '42501', 'permission denied to replace task template "diamond"', 'another role cannot replace a template');
SELECT throws_ok($$SELECT tasker_register_handler('OrderProcess::StepHandler::ShipHandler', 'tap.h(jsonb)')$$,
    '42501', NULL, 'another role cannot remap a handler class');
SELECT throws_ok($$SELECT tasker_register_template_file('/etc/hostname')$$,
    '42501', NULL, 'reading a template file needs pg_read_server_files');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION tap.h(jsonb) FROM PUBLIC;
SET LOCAL ROLE tasker_tap_other;
SELECT throws_ok($$SELECT tasker_register_template('{name: no_exec, step_templates: [{name: a, handler_class: tap.h}]}')$$,
    '42501', NULL, 'a handler the role cannot execute is refused');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
