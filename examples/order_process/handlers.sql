-- SQL step handlers of the order_process example.  Each takes the step
-- envelope (jsonb) and returns the step's results (jsonb); each runs in the
-- same transaction as the step's state change, so its writes happen exactly
-- once.
CREATE SCHEMA IF NOT EXISTS order_process;

CREATE TABLE order_process.orders (
    order_id    integer PRIMARY KEY,
    customer_id integer NOT NULL,
    sku         text NOT NULL,
    quantity    integer NOT NULL,
    amount      numeric(10, 2) NOT NULL,
    status      text NOT NULL DEFAULT 'new'
);
CREATE TABLE order_process.inventory (sku text PRIMARY KEY, on_hand integer NOT NULL);
CREATE TABLE order_process.payments (
    order_id integer PRIMARY KEY, amount numeric(10, 2) NOT NULL,
    charged_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_process.shipments (order_id integer PRIMARY KEY, slot date NOT NULL);
CREATE TABLE order_process.emails (order_id integer PRIMARY KEY, body text NOT NULL);

INSERT INTO order_process.inventory VALUES ('widget', 100), ('gadget', 5);
INSERT INTO order_process.orders (order_id, customer_id, sku, quantity, amount) VALUES
    (7, 42, 'widget', 3, 29.97),
    (8, 43, 'gadget', 1, 99.00),
    (9, 44, 'widget', 10, 99.90);

CREATE FUNCTION order_process.fetch_order(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT to_jsonb(o) FROM order_process.orders o
     WHERE o.order_id = (step #>> '{context,order_id}')::integer
$$;

CREATE FUNCTION order_process.validate_inventory(step jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o jsonb := step #> '{dependencies,fetch_order}';
    available integer;
BEGIN
    SELECT on_hand INTO available FROM order_process.inventory WHERE sku = o->>'sku';
    IF available IS NULL THEN
        PERFORM tasker_permanent_error(format('unknown sku %s', o->>'sku'));
    END IF;
    IF available < (o->>'quantity')::integer THEN
        -- Stock may arrive: ask to be retried in a minute.
        PERFORM tasker_retry_error(format('only %s of %s in stock', available, o->>'sku'), 60);
    END IF;
    RETURN jsonb_build_object('sku', o->>'sku', 'available', available);
END $$;

CREATE FUNCTION order_process.process_payment(step jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    o order_process.orders;
BEGIN
    -- The demo's payment gateway times out on the first two attempts.
    IF (step->>'attempt')::integer < 3 THEN
        RAISE EXCEPTION 'payment gateway timed out (attempt %)', step->>'attempt';
    END IF;
    SELECT * INTO o FROM order_process.orders
     WHERE order_id = (step #>> '{context,order_id}')::integer;
    INSERT INTO order_process.payments (order_id, amount) VALUES (o.order_id, o.amount);
    RETURN jsonb_build_object('charged', o.amount, 'attempt', step->'attempt');
END $$;

CREATE FUNCTION order_process.update_inventory(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    UPDATE order_process.inventory i
       SET on_hand = on_hand - o.quantity
      FROM order_process.orders o
     WHERE o.order_id = (step #>> '{context,order_id}')::integer
       AND i.sku = o.sku
    RETURNING jsonb_build_object('sku', i.sku, 'on_hand', i.on_hand)
$$;

CREATE FUNCTION order_process.reserve_shipping(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO order_process.shipments (order_id, slot)
    VALUES ((step #>> '{context,order_id}')::integer, current_date + 2)
    RETURNING jsonb_build_object('slot', slot)
$$;

CREATE FUNCTION order_process.send_confirmation(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO order_process.emails (order_id, body)
    VALUES ((step #>> '{context,order_id}')::integer,
            format('Order %s confirmed: %s reserved (%s left), ships on %s',
                   step #>> '{context,order_id}',
                   step #>> '{dependencies,update_inventory,sku}',
                   step #>> '{dependencies,update_inventory,on_hand}',
                   step #>> '{dependencies,reserve_shipping,slot}'))
    RETURNING jsonb_build_object('email', body)
$$;

-- The template names Ruby classes; map each to its function.
SELECT tasker_register_handler('OrderProcess::StepHandler::FetchOrderHandler', 'order_process.fetch_order(jsonb)');
SELECT tasker_register_handler('OrderProcess::StepHandler::ValidateInventoryHandler', 'order_process.validate_inventory(jsonb)');
SELECT tasker_register_handler('OrderProcess::StepHandler::ProcessPaymentHandler', 'order_process.process_payment(jsonb)');
SELECT tasker_register_handler('OrderProcess::StepHandler::UpdateInventoryHandler', 'order_process.update_inventory(jsonb)');
SELECT tasker_register_handler('OrderProcess::StepHandler::ReserveShippingHandler', 'order_process.reserve_shipping(jsonb)');
SELECT tasker_register_handler('OrderProcess::StepHandler::SendConfirmationHandler', 'order_process.send_confirmation(jsonb)');
