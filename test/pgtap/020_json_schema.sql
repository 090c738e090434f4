-- 020_json_schema: the contract of tasker_validate_json(), keyword by
-- keyword: a conforming and a violating instance each, with the exact text
-- of every violation; then paths, malformed schemas and unsupported
-- keywords.
BEGIN;
SELECT plan(117);

-- The function itself.
SELECT has_function('tasker_validate_json', ARRAY['jsonb', 'jsonb']);
SELECT function_returns('tasker_validate_json', ARRAY['jsonb', 'jsonb'], 'text[]');
SELECT volatility_is('tasker_validate_json', ARRAY['jsonb', 'jsonb'], 'immutable');
SELECT is_strict('tasker_validate_json', ARRAY['jsonb', 'jsonb']);
SELECT is(tasker_validate_json(NULL, '{}'), NULL, 'a null schema gives null');

-- type
SELECT is(tasker_validate_json('{"type": "integer"}', '3'), '{}', 'type integer: 3');
SELECT is(tasker_validate_json('{"type": "integer"}', '3.0'), '{}', 'type integer: 3.0 is an integer');
SELECT is(tasker_validate_json('{"type": "integer"}', '-12000000000000000000000'), '{}', 'type integer: a big integer');
SELECT is(tasker_validate_json('{"type": "integer"}', '3.5'),
          ARRAY['$: 3.5 is not of type integer'], 'type integer: 3.5');
SELECT is(tasker_validate_json('{"type": "integer"}', '"3"'),
          ARRAY['$: "3" is not of type integer'], 'type integer: a numeric string');
SELECT is(tasker_validate_json('{"type": "number"}', '3'), '{}', 'type number: an integer is a number');
SELECT is(tasker_validate_json('{"type": "number"}', '0.25'), '{}', 'type number: 0.25');
SELECT is(tasker_validate_json('{"type": "number"}', 'true'),
          ARRAY['$: true is not of type number'], 'type number: true');
SELECT is(tasker_validate_json('{"type": "string"}', '1'),
          ARRAY['$: 1 is not of type string'], 'type string: 1');
SELECT is(tasker_validate_json('{"type": "boolean"}', '"true"'),
          ARRAY['$: "true" is not of type boolean'], 'type boolean: "true"');
SELECT is(tasker_validate_json('{"type": "null"}', 'null'), '{}', 'type null: null');
SELECT is(tasker_validate_json('{"type": "object"}', '[]'),
          ARRAY['$: [] is not of type object'], 'type object: an array');
SELECT is(tasker_validate_json('{"type": "array"}', '{}'),
          ARRAY['$: {} is not of type array'], 'type array: an object');
SELECT is(tasker_validate_json('{"type": ["string", "null"]}', 'null'), '{}', 'type list: null');
SELECT is(tasker_validate_json('{"type": ["integer", "string", "null"]}', '1.5'),
          ARRAY['$: 1.5 is not of type integer, string or null'], 'type list: 1.5');

-- required
SELECT is(tasker_validate_json('{"required": ["a", "b"]}', '{"a": 1, "b": null}'), '{}',
          'required: all present (null counts)');
SELECT is(tasker_validate_json('{"required": ["order_id", "a", "b"]}', '{"a": 1}'),
          ARRAY['$: required property "order_id" is missing',
                '$: required property "b" is missing'], 'required: two missing');
SELECT is(tasker_validate_json('{"required": ["a"]}', '[1]'), '{}', 'required: ignores non-objects');

-- properties
SELECT is(tasker_validate_json('{"properties": {"a": {"type": "string"}}}', '{"a": "x", "b": 1}'),
          '{}', 'properties: conforming, other properties allowed');
SELECT is(tasker_validate_json('{"properties": {"a": {"type": "string"}}}', '{"a": 1}'),
          ARRAY['$.a: 1 is not of type string'], 'properties: a wrong member');
SELECT is(tasker_validate_json('{"properties": {"a": {"type": "string"}}}', '{}'), '{}',
          'properties: an absent member is not checked');

-- additionalProperties
SELECT is(tasker_validate_json('{"properties": {"a": {}}, "additionalProperties": false}', '{"a": 1}'),
          '{}', 'additionalProperties false: only declared members');
SELECT is(tasker_validate_json('{"properties": {"a": {}}, "additionalProperties": false}',
                               '{"a": 1, "zz": 2, "odd key": 3}'),
          ARRAY['$: additional property "zz" is not allowed',
                '$: additional property "odd key" is not allowed'],
          'additionalProperties false: two extras');
SELECT is(tasker_validate_json('{"additionalProperties": false}', '{"a": 1}'),
          ARRAY['$: additional property "a" is not allowed'], 'additionalProperties false without properties');
SELECT is(tasker_validate_json('{"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}',
                               '{"a": "s", "b": 2}'),
          '{}', 'additionalProperties schema: a conforming extra');
SELECT is(tasker_validate_json('{"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}',
                               '{"a": "s", "b": "x"}'),
          ARRAY['$.b: "x" is not of type integer'], 'additionalProperties schema: a wrong extra');

-- enum
SELECT is(tasker_validate_json('{"enum": [1, "a", null]}', '1.0'), '{}', 'enum: 1.0 equals 1');
SELECT is(tasker_validate_json('{"enum": [1, "a", null]}', '"b"'),
          ARRAY['$: "b" is not one of [1, "a", null]'], 'enum: a missing string');
SELECT is(tasker_validate_json('{"enum": [{"a": 1, "b": [1, 2]}]}', '{"b": [1, 2.0], "a": 1}'),
          '{}', 'enum: objects compare key-wise');
SELECT is(tasker_validate_json('{"enum": [{"a": 1}]}', '{"a": 1, "b": 2}'),
          ARRAY['$: {"a": 1, "b": 2} is not one of [{"a": 1}]'], 'enum: an object with an extra key');
SELECT is(tasker_validate_json('{"enum": ["1"]}', '1'),
          ARRAY['$: 1 is not one of ["1"]'], 'enum: a number is not a string');

-- const
SELECT is(tasker_validate_json('{"const": 1}', '1.00'), '{}', 'const: 1.00 equals 1');
SELECT is(tasker_validate_json('{"const": {"x": [1, {"y": null}], "z": "s"}}',
                               '{"z": "s", "x": [1.0, {"y": null}]}'),
          '{}', 'const: a nested object');
SELECT is(tasker_validate_json('{"const": {"a": 1}}', '{"a": 2}'),
          ARRAY['$: {"a": 2} does not equal the constant {"a": 1}'], 'const: a different object');
SELECT is(tasker_validate_json('{"const": [1, 2]}', '[2, 1]'),
          ARRAY['$: [2, 1] does not equal the constant [1, 2]'], 'const: array order matters');
SELECT is(tasker_validate_json('{"const": false}', 'null'),
          ARRAY['$: null does not equal the constant false'], 'const: null is not false');

-- minimum, maximum, exclusiveMinimum, exclusiveMaximum
SELECT is(tasker_validate_json('{"minimum": 1}', '1'), '{}', 'minimum: the bound itself');
SELECT is(tasker_validate_json('{"minimum": 1}', '0.999'),
          ARRAY['$: 0.999 is less than the minimum 1'], 'minimum: below');
SELECT is(tasker_validate_json('{"minimum": 1}', '"0"'), '{}', 'minimum: ignores strings');
SELECT is(tasker_validate_json('{"maximum": 2.5}', '2.5'), '{}', 'maximum: the bound itself');
SELECT is(tasker_validate_json('{"maximum": 2.5}', '3'),
          ARRAY['$: 3 is greater than the maximum 2.5'], 'maximum: above');
SELECT is(tasker_validate_json('{"exclusiveMinimum": 0}', '0.001'), '{}', 'exclusiveMinimum: above');
SELECT is(tasker_validate_json('{"exclusiveMinimum": 0}', '0'),
          ARRAY['$: 0 is not greater than the exclusive minimum 0'], 'exclusiveMinimum: the bound');
SELECT is(tasker_validate_json('{"exclusiveMaximum": 10}', '9'), '{}', 'exclusiveMaximum: below');
SELECT is(tasker_validate_json('{"exclusiveMaximum": 10}', '10.0'),
          ARRAY['$: 10.0 is not less than the exclusive maximum 10'], 'exclusiveMaximum: the bound');
SELECT is(tasker_validate_json('{"minimum": 5, "exclusiveMinimum": true}', '5'),
          ARRAY['$: 5 is not greater than the exclusive minimum 5'], 'draft 4 exclusiveMinimum true');
SELECT is(tasker_validate_json('{"maximum": 5, "exclusiveMaximum": true}', '5'),
          ARRAY['$: 5 is not less than the exclusive maximum 5'], 'draft 4 exclusiveMaximum true');
SELECT is(tasker_validate_json('{"maximum": 5, "exclusiveMaximum": false}', '5'),
          '{}', 'draft 4 exclusiveMaximum false');

-- minLength, maxLength count characters
SELECT is(tasker_validate_json('{"minLength": 2, "maxLength": 2}', '"日本"'), '{}',
          'minLength/maxLength: two characters in six bytes');
SELECT is(tasker_validate_json('{"maxLength": 1}', '"日本"'),
          ARRAY['$: "日本" is longer than the maximum length 1'], 'maxLength: too long');
SELECT is(tasker_validate_json('{"minLength": 3}', '"日本"'),
          ARRAY['$: "日本" is shorter than the minimum length 3'], 'minLength: too short');
SELECT is(tasker_validate_json('{"maxLength": 1}', '"😀"'), '{}', 'maxLength: an emoji is one character');
SELECT is(tasker_validate_json('{"maxLength": 0}', '5'), '{}', 'maxLength: ignores numbers');

-- pattern
SELECT is(tasker_validate_json('{"pattern": "^[^@]+@[^@]+$"}', '"a@b.c"'), '{}', 'pattern: a match');
SELECT is(tasker_validate_json('{"properties": {"customer": {"properties": {"email": {"pattern": "^[^@]+@[^@]+$"}}}}}',
                               '{"customer": {"email": "abc"}}'),
          ARRAY['$.customer.email: "abc" does not match pattern "^[^@]+@[^@]+$"'], 'pattern: no match');
SELECT is(tasker_validate_json('{"pattern": "b"}', '"abc"'), '{}', 'pattern: not anchored');
SELECT is(tasker_validate_json('{"pattern": "^\\d{3}$"}', '"123"'), '{}', 'pattern: a class escape');
SELECT is(tasker_validate_json('{"pattern": "^[a-z]+$"}', '"ABC"'),
          ARRAY['$: "ABC" does not match pattern "^[a-z]+$"'], 'pattern: case matters');
SELECT is(tasker_validate_json('{"pattern": "^é+$"}', '"éé"'), '{}', 'pattern: multibyte characters');

-- items, additionalItems
SELECT is(tasker_validate_json('{"items": {"type": "integer"}}', '[1, 2, 3]'), '{}', 'items: all conform');
SELECT is(tasker_validate_json('{"items": {"type": "integer"}}', '[1, "2", 3.5]'),
          ARRAY['$[1]: "2" is not of type integer', '$[2]: 3.5 is not of type integer'],
          'items: two wrong elements');
SELECT is(tasker_validate_json('{"items": [{"type": "string"}, {"type": "integer"}]}', '["a", 1, true]'),
          '{}', 'items tuple: conforming, extra elements allowed');
SELECT is(tasker_validate_json('{"items": [{"type": "string"}, {"type": "integer"}]}', '["a", "b"]'),
          ARRAY['$[1]: "b" is not of type integer'], 'items tuple: a wrong position');
SELECT is(tasker_validate_json('{"items": [{"type": "string"}, {"type": "integer"}]}', '["a"]'),
          '{}', 'items tuple: a shorter array');
SELECT is(tasker_validate_json('{"items": [{}, {}], "additionalItems": false}', '[1, 2, 3]'),
          ARRAY['$[2]: additional item 3 is not allowed'], 'additionalItems false');
SELECT is(tasker_validate_json('{"items": [{}], "additionalItems": {"type": "string"}}', '[1, "a", 2]'),
          ARRAY['$[2]: 2 is not of type string'], 'additionalItems schema');

-- minItems, maxItems, uniqueItems
SELECT is(tasker_validate_json('{"minItems": 1, "maxItems": 2}', '[1, 2]'), '{}', 'minItems/maxItems: within');
SELECT is(tasker_validate_json('{"minItems": 1}', '[]'),
          ARRAY['$: [] has fewer items than the minimum 1'], 'minItems: empty');
SELECT is(tasker_validate_json('{"maxItems": 2}', '[1, 2, 3]'),
          ARRAY['$: [1, 2, 3] has more items than the maximum 2'], 'maxItems: too many');
SELECT is(tasker_validate_json('{"uniqueItems": true}', '[1, "1", [1], {"a": 1}]'), '{}', 'uniqueItems: distinct');
SELECT is(tasker_validate_json('{"uniqueItems": true}', '[1, {"a": [1]}, 1.0, {"a": [1.00]}]'),
          ARRAY['$[2]: 1.0 duplicates item 0', '$[3]: {"a": [1.00]} duplicates item 1'],
          'uniqueItems: duplicates by JSON equality');
SELECT is(tasker_validate_json('{"uniqueItems": false}', '[1, 1]'), '{}', 'uniqueItems false');

-- minProperties, maxProperties, multipleOf
SELECT is(tasker_validate_json('{"minProperties": 1}', '{}'),
          ARRAY['$: {} has fewer properties than the minimum 1'], 'minProperties');
SELECT is(tasker_validate_json('{"maxProperties": 1}', '{"a": 1, "b": 2}'),
          ARRAY['$: {"a": 1, "b": 2} has more properties than the maximum 1'], 'maxProperties');
SELECT is(tasker_validate_json('{"multipleOf": 0.1}', '0.3'), '{}', 'multipleOf: exact decimals');
SELECT is(tasker_validate_json('{"multipleOf": 3}', '10'),
          ARRAY['$: 10 is not a multiple of 3'], 'multipleOf: a remainder');

-- allOf, anyOf, oneOf, not
SELECT is(tasker_validate_json('{"allOf": [{"type": "string"}, {"maxLength": 2}]}', '"abc"'),
          ARRAY['$: "abc" is longer than the maximum length 2'], 'allOf: one schema fails');
SELECT is(tasker_validate_json('{"anyOf": [{"type": "string"}, {"type": "null"}]}', 'null'), '{}', 'anyOf: one matches');
SELECT is(tasker_validate_json('{"anyOf": [{"type": "string"}, {"type": "null"}]}', '1'),
          ARRAY['$: 1 does not match any schema in anyOf'], 'anyOf: none matches');
SELECT is(tasker_validate_json('{"oneOf": [{"type": "string"}, {"type": "integer"}]}', '1'), '{}', 'oneOf: exactly one');
SELECT is(tasker_validate_json('{"oneOf": [{"type": "number"}, {"type": "integer"}]}', '1'),
          ARRAY['$: 1 matches 2 schemas in oneOf, not exactly one'], 'oneOf: two match');
SELECT is(tasker_validate_json('{"not": {"type": "string"}}', '"s"'),
          ARRAY['$: "s" must not match the schema in not'], 'not');

-- boolean schemas and annotations
SELECT is(tasker_validate_json('{"properties": {"a": true, "b": false}}', '{"a": 1, "b": 2}'),
          ARRAY['$.b: 2 is not allowed here'], 'boolean schemas');
SELECT is(tasker_validate_json('{"$schema": "http://json-schema.org/draft-07/schema#", "$id": "x",
                                 "title": "t", "description": "d", "default": 1,
                                 "examples": [1], "$comment": "c"}', '"anything"'),
          '{}', 'annotations are ignored');

-- several violations together, nested paths, odd keys, long values
SELECT is(tasker_validate_json('{"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}, "n": {"maximum": 1}}}',
                               '{"n": 2}'),
          ARRAY['$: required property "id" is missing', '$.n: 2 is greater than the maximum 1'],
          'violations at different places are all reported');
SELECT is(tasker_validate_json('{"type": "integer", "minimum": 10, "multipleOf": 4}', '5.5'),
          ARRAY['$: 5.5 is not of type integer', '$: 5.5 is less than the minimum 10',
                '$: 5.5 is not a multiple of 4'],
          'violations of one value are all reported');
SELECT is(tasker_validate_json(
            '{"properties": {"orders": {"items": {"properties": {"lines": {"items": {"properties": {"qty": {"minimum": 1}}}}}}}}}',
            '{"orders": [{"lines": [{"qty": 1}]}, {"lines": [{"qty": 1}, {"qty": 0}]}]}'),
          ARRAY['$.orders[1].lines[1].qty: 0 is less than the minimum 1'], 'objects in arrays in objects');
SELECT is(tasker_validate_json('{"properties": {"odd key": {"properties": {"x": {"type": "string"}}}}}',
                               '{"odd key": {"x": 1}}'),
          ARRAY['$["odd key"].x: 1 is not of type string'], 'a key with a space');
SELECT is(tasker_validate_json('{"properties": {"1st": false, "say \"hi\"": false, "": false, "_ok9": false}}',
                               '{"1st": 1, "say \"hi\"": 2, "": 3, "_ok9": 4}'),
          ARRAY['$[""]: 3 is not allowed here', '$["1st"]: 1 is not allowed here',
                '$._ok9: 4 is not allowed here', '$["say \"hi\""]: 2 is not allowed here'],
          'keys that are not identifiers are quoted');
SELECT is(tasker_validate_json('{"type": "integer"}', to_jsonb(repeat('ab', 50))),
          ARRAY['$: "' || repeat('ab', 28) || '... is not of type integer'], 'long values are cut at 60 characters');

-- the examples in docs/json-schema.md
SELECT is(tasker_validate_json(
  '{"type": "object",
    "required": ["order_id"],
    "properties": {
      "customer": {"properties": {"email": {"pattern": "^[^@]+@[^@]+$"}}},
      "items": {"items": {"properties": {"qty": {"type": "integer", "minimum": 1}}}}}}',
  '{"customer": {"email": "abc"}, "items": [{"qty": 1}, {"qty": 2}, {"qty": 0}]}'),
          ARRAY['$: required property "order_id" is missing',
                '$.items[2].qty: 0 is less than the minimum 1',
                '$.customer.email: "abc" does not match pattern "^[^@]+@[^@]+$"'],
          'the first example of the documentation');
SELECT is(tasker_validate_json('{"items": {"pattern": "\\ycat\\y"}}', '["a cat", "concatenate"]'),
          ARRAY['$[1]: "concatenate" does not match pattern "\\ycat\\y"'],
          'pattern: \y is a word boundary, as documented');

-- malformed schemas: 22023 naming the schema path
SELECT throws_ok($$SELECT tasker_validate_json('{"properties": {"qty": {"minimum": "x"}}}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.properties.qty.minimum', 'minimum: "x"');
SELECT throws_ok($$SELECT tasker_validate_json('{"required": 5}', '{}')$$,
                 '22023', 'JSON Schema is invalid at $.required', 'required: 5');
SELECT throws_ok($$SELECT tasker_validate_json('{"required": ["a", 1]}', '{}')$$,
                 '22023', 'JSON Schema is invalid at $.required', 'required: a number in the list');
SELECT throws_ok($$SELECT tasker_validate_json('{"type": "int"}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.type', 'type: an unknown name');
SELECT throws_ok($$SELECT tasker_validate_json('{"type": []}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.type', 'type: an empty list');
SELECT throws_ok($$SELECT tasker_validate_json('{"minLength": -1}', '""')$$,
                 '22023', 'JSON Schema is invalid at $.minLength', 'minLength: negative');
SELECT throws_ok($$SELECT tasker_validate_json('{"maxItems": 1.5}', '[]')$$,
                 '22023', 'JSON Schema is invalid at $.maxItems', 'maxItems: a fraction');
SELECT throws_ok($$SELECT tasker_validate_json('{"items": {"pattern": "a("}}', '[]')$$,
                 '22023', 'JSON Schema is invalid at $.items.pattern', 'pattern: an invalid regex');
SELECT throws_ok($$SELECT tasker_validate_json('{"properties": []}', '{}')$$,
                 '22023', 'JSON Schema is invalid at $.properties', 'properties: an array');
SELECT throws_ok($$SELECT tasker_validate_json('{"properties": {"a b": 5}}', '{}')$$,
                 '22023', 'JSON Schema is invalid at $.properties["a b"]', 'a subschema that is a number');
SELECT throws_ok($$SELECT tasker_validate_json('{"multipleOf": 0}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.multipleOf', 'multipleOf: zero');
SELECT throws_ok($$SELECT tasker_validate_json('{"exclusiveMinimum": true}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.exclusiveMinimum', 'draft 4 exclusiveMinimum without minimum');
SELECT throws_ok($$SELECT tasker_validate_json('{"anyOf": []}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.anyOf', 'anyOf: empty');
SELECT throws_ok($$SELECT tasker_validate_json('{"oneOf": [{}, {"uniqueItems": 1}]}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.oneOf[1].uniqueItems', 'uniqueItems: a number');
SELECT throws_ok($$SELECT tasker_validate_json('"object"', '{}')$$,
                 '22023', 'JSON Schema is invalid at $', 'a schema that is a string');
SELECT throws_ok($$SELECT tasker_validate_json('{"enum": 1}', '1')$$,
                 '22023', 'JSON Schema is invalid at $.enum', 'enum: not an array');

-- unsupported keywords: 0A000 naming keyword and path, even when unreached
SELECT throws_ok($$SELECT tasker_validate_json('{"properties": {"a": {"$ref": "#/x"}}}', '{}')$$,
                 '0A000', 'JSON Schema keyword "$ref" at $.properties.a["$ref"] is not supported', '$ref');
SELECT throws_ok($$SELECT tasker_validate_json('{"if": {}, "then": {}}', '1')$$,
                 '0A000', 'JSON Schema keyword "if" at $.if is not supported', 'if');
SELECT throws_ok($$SELECT tasker_validate_json('{"items": {"format": "email"}}', '[]')$$,
                 '0A000', 'JSON Schema keyword "format" at $.items.format is not supported', 'format');
SELECT throws_ok($$SELECT tasker_validate_json('{"patternProperties": {}}', '{}')$$,
                 '0A000', 'JSON Schema keyword "patternProperties" at $.patternProperties is not supported',
                 'patternProperties');

SELECT * FROM finish();
ROLLBACK;
