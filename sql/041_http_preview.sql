-- 040_http_preview: tasker_http_preview shows the request an api step would
-- send now, built by the workers' code from the claim's envelope, with its
-- credentials masked.  Nothing is sent (no worker runs in this database).
SET client_min_messages = warning;

CREATE FUNCTION preview_noop(step jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT step';
-- An error's SQLSTATE, message, detail and hint, ids replaced by N.
CREATE FUNCTION preview_error(step_id bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m text;
    d text;
    h text;
BEGIN
    PERFORM tasker_http_preview(step_id);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ': ' || regexp_replace(m, '[0-9]+', 'N', 'g')
        || E'\nDETAIL: ' || regexp_replace(regexp_replace(d, '[0-9]+', 'N', 'g'),
                                          'role "[^"]*"', 'role "OWNER"')
        || E'\nHINT: ' || h;
END $$;

SELECT tasker_register_template($$
name: preview
step_templates:
  - name: fetch
    handler_config:
      type: api
      method: get
      url: "https://ops:s3cret@api.example.com/orders/{{context.order_id}}?api_key=k1&page=2"
      params: {access_token: "{{context.token}}", q: "{{context.name}}"}
      headers:
        Authorization: "Bearer {{context.token}}"
        X-Api-Key: "{{context.key}}"
        Cookie: "sid=abc"
        X-Request-Id: "order-{{context.order_id}}"
      timeout: 5
  - name: notify
    depends_on_step: fetch
    handler_config:
      type: api
      url: https://hooks.example.com/done
      follow_redirects: true
      body:
        order_id: "{{context.order_id}}"
        note: "order {{ context.order_id }} for {{context.name}}"
        items: "{{context.items}}"
        parent: "{{dependencies.fetch.status}}"
  - name: envelope
    timeout_seconds: 3
    handler_config:
      type: api
      method: PUT
      url: "http://hooks.example.com/put"
      headers: {Content-Type: text/plain, X-Empty: ""}
  - name: unresolved
    handler_config: {type: api, url: "https://api.example.com/{{context.nope}}"}
  - name: in_sql
    handler_class: preview_noop
$$) > 0 AS registered;

-- In a fixed trace, so the traceparent header (its span id derived from
-- the trace, task, step and attempt) is the same on every run.
SELECT tasker_create_task('preview',
         '{"order_id": 42, "token": "t0k3n", "key": "k3y", "name": "Ann & Bob", "items": [1, 2]}',
         traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01') AS task \gset
SELECT max(s.workflow_step_id) FILTER (WHERE n.name = 'fetch') AS fetch,
       max(s.workflow_step_id) FILTER (WHERE n.name = 'notify') AS notify,
       max(s.workflow_step_id) FILTER (WHERE n.name = 'envelope') AS envelope,
       max(s.workflow_step_id) FILTER (WHERE n.name = 'unresolved') AS unresolved,
       max(s.workflow_step_id) FILTER (WHERE n.name = 'in_sql') AS in_sql
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task \gset step_

-- A GET: method in upper case, url interpolated and percent-encoded with
-- params appended, no body; credentials masked in the url and headers.
SELECT p->>'method' AS method, p->>'url' AS url, p->'body' AS body,
       p->'timeout' AS timeout, p->'follow_redirects' AS follow_redirects
  FROM tasker_http_preview(:step_fetch) p;
SELECT h.key, h.value
  FROM tasker_http_preview(:step_fetch) p, jsonb_each_text(p->'headers') h
 WHERE h.key <> 'Idempotency-Key' ORDER BY 1;
-- The Idempotency-Key is the task and step ids; the preview names its step.
SELECT p->'headers'->>'Idempotency-Key' = :task || '-' || :step_fetch AS idempotency_key,
       (p->>'step_id')::bigint = :step_fetch AS step_id
  FROM tasker_http_preview(:step_fetch) p;
-- No secret appears anywhere in the preview.
SELECT p::text ~ '(s3cret|t0k3n|k3y|sid=abc|k1)' AS leaks
  FROM tasker_http_preview(:step_fetch) p;

-- A POST with a body: strings interpolated; a string that is one
-- reference keeps the value's JSON type.  A parent's results that do not
-- exist yet make the request fail before it is sent, as the step would.
SELECT jsonb_pretty(tasker_http_preview(:step_notify) - 'step_id');
UPDATE tasker_workflow_steps SET results = '{"status": 200}'
 WHERE workflow_step_id = :step_fetch;
SELECT p->>'method' AS method, p->>'url' AS url, jsonb_pretty(p->'body') AS body,
       p->'headers'->>'Content-Type' AS content_type, p->'follow_redirects' AS follow_redirects
  FROM tasker_http_preview(:step_notify) p;

-- Without a body key a PUT sends the step envelope; headers may set the
-- Content-Type and an empty value; the step's timeout_seconds bounds the
-- request's.
SELECT p->>'method' AS method, p->'body'->>'step_name' AS body_step,
       (p->'body'->>'step_id')::bigint = :step_envelope AS body_is_envelope,
       p->'body'->'context'->'order_id' AS body_order, p->'timeout' AS timeout
  FROM tasker_http_preview(:step_envelope) p;
SELECT h.key, h.value
  FROM tasker_http_preview(:step_envelope) p, jsonb_each_text(p->'headers') h
 WHERE h.key <> 'Idempotency-Key' ORDER BY 1;

-- A reference that does not resolve: the permanent failure it would get.
SELECT jsonb_pretty(tasker_http_preview(:step_unresolved) - 'step_id');

-- invalid input: an SQL step sends no request
SELECT preview_error(:step_in_sql);
-- invalid input: an unknown step
SELECT tasker_http_preview(-1);
-- invalid input: NULL
SELECT tasker_http_preview(NULL) IS NULL AS is_null;

-- invalid input: a role that may not control the task, even with EXECUTE
DROP ROLE IF EXISTS preview_outsider;
CREATE ROLE preview_outsider;
GRANT EXECUTE ON FUNCTION tasker_http_preview(bigint) TO preview_outsider;
SET ROLE preview_outsider;
SELECT preview_error(:step_fetch);
RESET ROLE;
-- and without EXECUTE it cannot call it at all.
REVOKE EXECUTE ON FUNCTION tasker_http_preview(bigint) FROM preview_outsider;
SET ROLE preview_outsider;
SELECT preview_error(:step_fetch);
RESET ROLE;
DROP ROLE preview_outsider;
