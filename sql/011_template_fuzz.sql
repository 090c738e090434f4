-- 011_template_fuzz: damaged templates never crash the backend or leak an
-- internal error.  Each input is registered inside a PL/pgSQL block with an
-- exception handler; every outcome must be a registration or a clean error
-- (an SQLSTATE of the expected classes and a "task template" message).
-- Inputs come from a fixed seed, so the counts below are deterministic.
SELECT setseed(0.20250704);

CREATE SCHEMA fuzz;
CREATE FUNCTION fuzz.handler(step jsonb) RETURNS jsonb
    LANGUAGE sql AS $$ SELECT step $$;

-- The valid template every damaged input starts from.  It uses most
-- features: flow and block style, anchors, api steps, custom events,
-- environments.
CREATE TABLE fuzz.base (doc text NOT NULL);
INSERT INTO fuzz.base VALUES ($yaml$---
name: fuzz_task
namespace_name: fuzz
version: 1.0.0-beta.1+build.7
description: "A template to damage"
default_dependent_system: warehouse
named_steps: [fetch, reserve, charge, notify]
schema: {type: object, required: [order_id]}
configuration: {priority: high}
custom_events:
  - name: order.flagged
    description: Flagged for review
  - order.archived
step_templates:
  - name: fetch
    handler_class: fuzz.handler
    handler_config: &cfg {retries: 2, mode: fast}
  - name: reserve
    depends_on_step: fetch
    handler_class: fuzz.handler
    handler_config: *cfg
    default_retry_limit: 4
    timeout_seconds: 20
  - name: charge
    depends_on_steps: [fetch, reserve]
    handler_class: fuzz.handler
    skippable: false
    default_retryable: true
    custom_events: [{name: payment.failed}]
  - name: notify
    depends_on_steps:
      - charge
    handler_config:
      type: api
      url: 'https://hooks.example.com/orders/{{context.order_id}}'
      method: post
environments:
  production:
    step_templates:
      - name: charge
        default_retry_limit: 9
$yaml$);

-- outcome(doc): 'ok' when the template registers (the registration is
-- rolled back at once), else SQLSTATE|whether the message is ours.
CREATE FUNCTION fuzz.outcome(doc text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    msg text;
BEGIN
    PERFORM tasker_register_template(doc);
    RAISE EXCEPTION 'registered' USING ERRCODE = 'TZ000';
EXCEPTION
    WHEN SQLSTATE 'TZ000' THEN
        RETURN 'ok';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
        RETURN SQLSTATE || '|' || (msg LIKE 'task template %');
END
$$;

-- delete_chars(doc, n): doc without n randomly chosen characters.
CREATE FUNCTION fuzz.delete_chars(doc text, n integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    pos integer;
BEGIN
    FOR i IN 1 .. n LOOP
        pos := 1 + floor(random() * length(doc))::integer;
        doc := overlay(doc PLACING '' FROM pos FOR 1);
    END LOOP;
    RETURN doc;
END
$$;

-- replace_chars(doc, n): doc with n characters replaced by YAML
-- indicators, spaces, tabs or newlines.
CREATE FUNCTION fuzz.replace_chars(doc text, n integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    specials constant text := E':-[]{},&*!|>''"%@#?~ \t\n';
    pos integer;
BEGIN
    FOR i IN 1 .. n LOOP
        pos := 1 + floor(random() * length(doc))::integer;
        doc := overlay(doc PLACING substr(specials,
                       1 + floor(random() * length(specials))::integer, 1)
                       FROM pos FOR 1);
    END LOOP;
    RETURN doc;
END
$$;

-- duplicate_line(doc): doc with one random line repeated.
CREATE FUNCTION fuzz.duplicate_line(doc text) RETURNS text
LANGUAGE sql AS $$
    WITH lines AS (
        SELECT l, n FROM unnest(string_to_array(doc, E'\n')) WITH ORDINALITY AS u(l, n)
    ), pick AS (
        SELECT 1 + floor(random() * (SELECT count(*) FROM lines))::integer AS n
    )
    SELECT string_agg(CASE WHEN lines.n = pick.n THEN l || E'\n' || l ELSE l END,
                      E'\n' ORDER BY lines.n)
      FROM lines, pick
$$;

-- garbage(len): random characters: printable ASCII, YAML indicators,
-- newlines, control characters and non-ASCII letters.
CREATE FUNCTION fuzz.garbage(len integer) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(
        CASE WHEN r < 0.10 THEN E'\n'
             WHEN r < 0.15 THEN chr(1 + floor(random() * 31)::integer)
             WHEN r < 0.35 THEN substr(E':-[]{},&*!|>''"%@#?~ ', 1 + floor(random() * 20)::integer, 1)
             WHEN r < 0.40 THEN chr(160 + floor(random() * 5000)::integer)
             ELSE chr(32 + floor(random() * 95)::integer) END, '' ORDER BY g), '')
      FROM (SELECT random() AS r, g FROM generate_series(1, len) AS g) AS x
$$;

CREATE TABLE fuzz.inputs (id serial, kind text NOT NULL, doc text NOT NULL);
INSERT INTO fuzz.inputs (kind, doc)
SELECT '1 prefix', left(doc, n) FROM fuzz.base, generate_series(0, length(doc)) AS n;
INSERT INTO fuzz.inputs (kind, doc)
SELECT '2 deletion', fuzz.delete_chars(doc, 1 + i % 5) FROM fuzz.base, generate_series(1, 200) AS i;
INSERT INTO fuzz.inputs (kind, doc)
SELECT '3 replacement', fuzz.replace_chars(doc, 1 + i % 3) FROM fuzz.base, generate_series(1, 200) AS i;
INSERT INTO fuzz.inputs (kind, doc)
SELECT '4 duplicate line', fuzz.duplicate_line(doc) FROM fuzz.base, generate_series(1, 50) AS i;
INSERT INTO fuzz.inputs (kind, doc)
SELECT '5 garbage', fuzz.garbage(i % 150) FROM generate_series(1, 200) AS i;
INSERT INTO fuzz.inputs (kind, doc)
SELECT '6 garbage after a valid start', left(doc, 200 + i) || fuzz.garbage(20) FROM fuzz.base, generate_series(1, 50) AS i;
INSERT INTO fuzz.inputs (kind, doc)
SELECT '7 adversarial', d FROM unnest(ARRAY[
    repeat('[', 40) || repeat(']', 40),
    repeat('[', 200) || repeat(']', 200),
    repeat('{a: ', 500),
    repeat('- ', 300) || 'x',
    'x: &a [*a]',
    '&a [*a, *a]',
    'a: &a [x, x, x, x, x, x, x, x]' || chr(10) ||
        'b: &b [*a, *a, *a, *a, *a, *a, *a, *a]' || chr(10) ||
        'c: &c [*b, *b, *b, *b, *b, *b, *b, *b]' || chr(10) ||
        'd: &d [*c, *c, *c, *c, *c, *c, *c, *c]' || chr(10) ||
        'e: &e [*d, *d, *d, *d, *d, *d, *d, *d]' || chr(10) ||
        'f: [*e, *e, *e, *e, *e, *e, *e, *e]',
    '!!binary aGVsbG8=',
    '%YAML 1.1' || chr(10) || '---' || chr(10) || 'name: x',
    '%YAML 9.9' || chr(10) || '---' || chr(10) || 'name: x',
    '? [complex, key]' || chr(10) || ': value',
    E'\ufeffname: bom',
    '"\ud800"',
    'name: "\x00"',
    repeat('a', 100000) || ': 1',
    'name: x' || chr(10) || 'configuration: {n: 1e999999999999999999999}',
    'name: x' || chr(10) || 'configuration: {n: 0.' || repeat('0', 2000) || '1}',
    'name: 1' || repeat('0', 1500)
]) AS d;

SELECT count(*) >= 300 AS enough_inputs FROM fuzz.inputs;

-- The undamaged template registers, with and without the environment.
SELECT fuzz.outcome(doc) FROM fuzz.base;
SET tasker.environment = 'production';

CREATE TABLE fuzz.outcomes AS
SELECT id, kind, fuzz.outcome(doc) AS outcome FROM fuzz.inputs ORDER BY id;
RESET tasker.environment;

-- Every outcome is a registration or a clean error.
SELECT kind,
       count(*) AS inputs,
       count(*) FILTER (WHERE outcome = 'ok') AS registered,
       count(*) FILTER (WHERE outcome <> 'ok') AS refused
  FROM fuzz.outcomes GROUP BY kind ORDER BY kind;

-- The SQLSTATEs seen, all of the expected classes: syntax (42601),
-- invalid value (22023), untranslatable character (22P05), unresolved
-- handler (42704, 42883), limits (54000) and a damaged context schema
-- using a keyword the validator does not support (0A000).
SELECT split_part(outcome, '|', 1) AS sqlstate, count(*) > 0 AS seen
  FROM fuzz.outcomes WHERE outcome <> 'ok' GROUP BY 1 ORDER BY 1;

-- Unexpected outcomes: none.
SELECT id, kind, outcome
  FROM fuzz.outcomes
 WHERE outcome <> 'ok'
   AND NOT (split_part(outcome, '|', 1) IN ('42601', '22023', '22P05', '42704', '42883', '54000', '0A000')
            AND split_part(outcome, '|', 2) = 'true')
 ORDER BY id;

-- Nothing was left behind, and the backend is alive.
SELECT count(*) AS fuzz_templates FROM tasker_named_tasks WHERE name = 'fuzz_task';
SELECT 'alive' AS backend;

SET client_min_messages = warning;
DROP SCHEMA fuzz CASCADE;
