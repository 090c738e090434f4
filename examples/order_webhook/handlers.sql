-- SQL step handlers of the order_webhook example: the HTTP step between
-- them needs none.
CREATE SCHEMA IF NOT EXISTS order_webhook;

CREATE TABLE order_webhook.deliveries (
    order_id        integer PRIMARY KEY,
    status          integer NOT NULL,
    idempotency_key text NOT NULL,
    elapsed_ms      numeric NOT NULL
);

CREATE FUNCTION order_webhook.build_payload(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('order', jsonb_build_object(
        'id', (step #>> '{context,order_id}')::integer,
        'items', 3, 'total', 29.97))
$$;

-- The HTTP step's results are {status, headers, body, elapsed_ms}; the stub
-- echoes the request, so body.headers shows what tasker sent.
CREATE FUNCTION order_webhook.record_delivery(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO order_webhook.deliveries
    SELECT (step #>> '{context,order_id}')::integer,
           (step #>> '{dependencies,notify_partner,status}')::integer,
           step #>> '{dependencies,notify_partner,body,headers,idempotency-key}',
           (step #>> '{dependencies,notify_partner,elapsed_ms}')::numeric
    RETURNING jsonb_build_object('recorded', order_id)
$$;
