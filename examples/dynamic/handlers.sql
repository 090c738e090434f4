-- SQL step handlers of the dynamic-workflow examples (issue 10): a map
-- over order lines, an approval that waits for a signal, a decision that
-- routes shipping, and a parent that runs a fulfilment subtask.  Each
-- takes the step envelope (jsonb) and returns the step's results.
CREATE SCHEMA IF NOT EXISTS dynamic_example;

CREATE TABLE dynamic_example.reserved (
    order_id integer, line_index integer, sku text, quantity integer,
    PRIMARY KEY (order_id, line_index));

-- map: one instance per order line (item, item_index in the envelope).
CREATE FUNCTION dynamic_example.reserve_line(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    INSERT INTO dynamic_example.reserved
    VALUES ((step->'context'->>'order_id')::int, (step->>'item_index')::int,
            step->'item'->>'sku', (step->'item'->>'quantity')::int)
    ON CONFLICT DO NOTHING;
    SELECT jsonb_build_object('sku', step->'item'->>'sku', 'reserved', true)
$$;

-- After the map: its results are the array of the instances' results.
CREATE FUNCTION dynamic_example.confirm_order(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('lines', jsonb_array_length(step->'dependencies'->'reserve_lines'))
$$;

-- Any step that only reports what it saw.
CREATE FUNCTION dynamic_example.note(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('step', step->>'step_name', 'after', step->'dependencies')
$$;

-- decision: choose the branches to run.
CREATE FUNCTION dynamic_example.route_shipping(step jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('next',
        CASE WHEN step->'context'->>'country' = 'US'
             THEN '["domestic_shipping"]'::jsonb
             ELSE '["international_shipping"]'::jsonb END)
$$;
