-- 012_template_input: input that tasker used to ignore is refused or
-- honoured at registration (issue 15 D19), template-level handler_config
-- loads (D20), and a registration reports every error it finds (D25).
SET client_min_messages = notice;
\set VERBOSITY default
CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;

-- invalid input: the Ruby key retries on a step
SELECT tasker_register_template($$
name: d19
step_templates:
  - name: a
    handler_class: noop
    retries: 3
$$);
-- invalid input: retries in an api step's handler_config (the guide's example)
SELECT tasker_register_template($$
name: d19
step_templates:
  - name: fetch_external_data
    handler_config:
      type: api
      url: https://api.external-service.com/data
      timeout: 15
      retries: 3
$$);
-- invalid input: ${VAR} in a header would be sent as written
SELECT tasker_register_template($$
name: d19
step_templates:
  - name: fetch_external_data
    handler_config:
      type: api
      url: https://api.external-service.com/data
      headers:
        Authorization: "Bearer ${API_TOKEN}"
$$);
-- invalid input: ${VAR} in the url
SELECT tasker_register_template($$
name: d19
step_templates:
  - name: a
    handler_config: {type: api, url: "https://${HOST}/data"}
$$);

-- type: API in upper case is an api step (stored as api), not an SQL step
SELECT tasker_register_template($$
name: d19_upper
namespace_name: d19
step_templates:
  - name: a
    handler_config: {type: API, url: "https://api.example.com/data", method: get}
$$) > 0 AS registered;
SELECT l.handler_function IS NULL AS no_function, l.handler_config
  FROM tasker_named_tasks_named_steps l JOIN tasker_named_tasks t USING (named_task_id)
 WHERE t.name = 'd19_upper';

-- handler_config.timeout of an SQL step is its timeout_seconds
SELECT tasker_register_template($$
name: d19_timeout
namespace_name: d19
step_templates:
  - name: a
    handler_class: noop
    handler_config: {payment_processor: stripe, timeout: 30}
  - name: b
    handler_class: noop
    timeout_seconds: 5
    handler_config: {timeout: 30}
$$) > 0 AS registered;
SELECT n.name, l.timeout_seconds
  FROM tasker_named_tasks_named_steps l JOIN tasker_named_tasks t USING (named_task_id)
  JOIN tasker_named_steps n USING (named_step_id)
 WHERE t.name = 'd19_timeout' ORDER BY n.name;
-- invalid input: handler_config.timeout of an SQL step that is not seconds
SELECT tasker_register_template($$
name: d19
step_templates:
  - name: a
    handler_class: noop
    handler_config: {timeout: 30s}
$$);

-- a tasker.environment that the template does not define: a notice
SET tasker.environment = 'prodution';
SELECT tasker_register_template($$
name: d19_env
namespace_name: d19
step_templates:
  - name: a
    handler_class: noop
environments:
  production:
    description: live
$$) > 0 AS registered;
RESET tasker.environment;

-- D20: template-level handler_config, with dependent_systems (api_sync)
SELECT tasker_register_template($$
name: api_sync
namespace_name: integrations
version: 1.3.0
task_handler_class: Integrations::ApiSyncHandler
handler_config:
  max_concurrent_requests: 5
  dependent_systems:
    - salesforce_api
    - inventory_service
step_templates:
  - name: fetch_data
    handler_class: noop
    dependent_system: salesforce_api
$$) > 0 AS registered;
SELECT template->'handler_config' FROM tasker_named_tasks WHERE name = 'api_sync';
-- invalid input: a template-level handler_config that is not a mapping
SELECT tasker_register_template($$
name: d20
handler_config: [a]
step_templates:
  - name: a
    handler_class: noop
$$);

-- D25: every error of the template, each with its line and column
SELECT tasker_register_template($$
name: d25
versoin: 1.0.0
step_templates:
  - name: a
    handler_class: noop
    default_retry_limit: -1
  - name: b
    handler_class: noop
    retries: 2
  - name: c
    handler_config: {type: api}
$$);
-- one error alone is reported as before
SELECT tasker_register_template($$
name: d25
step_templates:
  - name: a
    handler_class: noop
    skippable: maybe
$$);
-- at most 20 are listed
SELECT tasker_register_template(
  E'name: d25\nstep_templates:\n' ||
  string_agg(format(E'  - name: s%s\n    handler_class: noop\n    skippable: maybe\n', i), '' ORDER BY i))
  FROM generate_series(1, 25) i;
