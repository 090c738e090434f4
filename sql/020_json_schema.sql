-- 020_json_schema: task contexts checked against a template's JSON Schema.
-- tasker_validate_json() returns every violation, one per array element,
-- each starting with the JSON path of the offending value.  The error that
-- task creation raises is shown through a test hook declared here.
CREATE FUNCTION pg_temp.assert_json(schema jsonb, instance jsonb, what text)
RETURNS void
AS '$libdir/tasker', 'tasker_json_schema_assert_sql'
LANGUAGE C STRICT;

-- The schema of an order_process template's context.
SELECT '{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "order_process context",
  "type": "object",
  "required": ["order_id", "customer", "items"],
  "properties": {
    "order_id": {"type": "integer", "minimum": 1},
    "customer": {
      "type": "object",
      "required": ["email"],
      "properties": {
        "email": {"type": "string", "pattern": "^[^@]+@[^@]+$"},
        "name": {"type": "string", "minLength": 1, "maxLength": 40}
      },
      "additionalProperties": false
    },
    "items": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "required": ["sku", "qty"],
        "properties": {
          "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
          "qty": {"type": "integer", "minimum": 1, "maximum": 100},
          "price": {"type": "number", "exclusiveMinimum": 0}
        }
      }
    },
    "priority": {"enum": ["low", "normal", "high"]},
    "currency": {"const": "EUR"},
    "gift wrap": {"type": "boolean"},
    "notes": {"type": ["string", "null"], "description": "free text"}
  }
}' AS schema \gset

-- A valid context: no violations.
SELECT tasker_validate_json(:'schema', '{
  "order_id": 1001,
  "customer": {"email": "ann@example.com", "name": "Ann"},
  "items": [{"sku": "ABC-0001", "qty": 2, "price": 9.5},
            {"sku": "XYZ-0420", "qty": 1.0}],
  "priority": "high",
  "currency": "EUR",
  "gift wrap": true,
  "notes": null
}') AS violations;

-- The same through the error path: nothing is raised.
SELECT pg_temp.assert_json(:'schema', '{
  "order_id": 1001,
  "customer": {"email": "ann@example.com"},
  "items": [{"sku": "ABC-0001", "qty": 2}]
}', 'context of task "order_process"');

-- invalid input: everything is reported at once.  The order is fixed:
-- keyword by keyword, and object members in jsonb's key order (shorter keys
-- first), which is not the order they were written in.
SELECT violation FROM unnest(tasker_validate_json(:'schema', '{
  "order_id": "1001",
  "customer": {"email": "ann.example.com", "name": "", "phone": "555"},
  "items": [{"sku": "ABC-0001", "qty": 2},
            {"sku": "abc-1", "qty": 0, "price": 0},
            {"qty": 101.5}],
  "priority": "urgent",
  "currency": "USD",
  "gift wrap": "yes",
  "notes": 42
}')) AS violation;

-- invalid input: a missing required property, and the wrong root type.
SELECT tasker_validate_json(:'schema', '{"order_id": 7, "items": []}');
SELECT tasker_validate_json(:'schema', '[1, 2, 3]');

-- invalid input: the error task creation raises lists every violation.
SELECT pg_temp.assert_json(:'schema', '{
  "order_id": 0,
  "customer": {"email": "nobody"},
  "items": [{"sku": "ABC-0001", "qty": 1000}]
}', 'context of task "order_process"');

-- Long values are cut in messages; paths quote keys that are not
-- identifiers; lengths count characters, not bytes.
SELECT tasker_validate_json('{"properties": {"comment": {"maxLength": 10}}}',
                            jsonb_build_object('comment', repeat('x', 100)));
SELECT tasker_validate_json('{"properties": {"ключ": {"maxLength": 3}}}',
                            '{"ключ": "дада"}');
SELECT tasker_validate_json('{"properties": {"ключ": {"maxLength": 4}}}',
                            '{"ключ": "дада"}');

-- The combining keywords.
SELECT tasker_validate_json('{"anyOf": [{"type": "string"}, {"minimum": 10}]}',
                            '5');
SELECT tasker_validate_json('{"oneOf": [{"type": "integer"}, {"minimum": 0}]}',
                            '5');
SELECT tasker_validate_json('{"not": {"type": "null"}}', 'null');
SELECT tasker_validate_json('{"allOf": [{"minimum": 1}, {"multipleOf": 2}]}',
                            '-3');

-- invalid input: a malformed schema names the place in the schema.
SELECT tasker_validate_json('{"properties": {"qty": {"minimum": "x"}}}', '{}');
SELECT tasker_validate_json('{"required": 5}', '{}');
SELECT tasker_validate_json('{"properties": {"sku": {"pattern": "(["}}}', '{}');
SELECT tasker_validate_json('{"items": [{"type": "int"}]}', '[]');

-- invalid input: a keyword tasker does not implement is refused, not
-- ignored, even where the instance would never reach it.
SELECT tasker_validate_json('{"properties": {"a": {"$ref": "#/definitions/a"}}}',
                            '{}');
SELECT tasker_validate_json('{"if": {"type": "string"}}', '1');
