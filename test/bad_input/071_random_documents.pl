# 071_random_documents.pl: issue 13, hostile input at volume.  Random
# YAML templates (a full template mutated at random) and random JSON
# Schemas with random instances go through tasker_register_template and
# tasker_validate_json: TASKER_FUZZ_DOCS documents in all (default
# 100,000, half of each kind), generated in the server from a fixed seed
# so a failure can be replayed.  Each call must succeed or end with an
# SQLSTATE docs/errors.md lists; none may crash the server, raise an
# internal error or hit the statement_timeout that bounds each batch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $total = $ENV{TASKER_FUZZ_DOCS} // 100_000;
my $batch = 5_000;

my $node = PostgreSQL::Test::Cluster->new('random_documents');
$node->init;
$node->start;
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE SCHEMA rd;
	CREATE FUNCTION rd.h(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT step $$;
	CREATE TABLE rd.outcomes (kind text, sqlstate text, n bigint, example text,
	                          PRIMARY KEY (kind, sqlstate));

	CREATE FUNCTION rd.pick(options text[]) RETURNS text LANGUAGE sql VOLATILE AS $$
	    SELECT options[1 + floor(random() * array_length(options, 1))::integer]
	$$;

	-- A full template: every kind of node the reader and checks know.
	CREATE FUNCTION rd.base() RETURNS text LANGUAGE sql IMMUTABLE AS $b$ SELECT $y$---
name: order_flow
namespace_name: rd
version: 1.2.3-rc.1+build.5
description: "Random documents start here"
default_dependent_system: shop
named_steps: [fetch, check, pay, ship, notify]
schema: {type: object, required: [order_id], properties: {order_id: {type: integer, minimum: 1}}}
configuration: {priority: high, tags: [a, b]}
custom_events:
  - name: order.flagged
    description: Flagged
  - order.archived
step_templates:
  - name: fetch
    handler_class: rd.h
    handler_config: &cfg {retries: 2, mode: fast}
  - name: check
    depends_on_step: fetch
    handler_class: rd.h
    handler_config: *cfg
    default_retry_limit: 4
    timeout_seconds: 20
  - name: pay
    depends_on_steps: [fetch, check]
    handler_class: rd.h
    skippable: false
    default_retryable: true
    permanent_sqlstates: ['23505', '22']
  - name: ship
    depends_on_steps:
      - pay
    handler_config:
      type: api
      url: 'https://example.com/orders/{{context.order_id}}'
      method: post
      headers: {X-Trace: '{{task_id}}'}
  - name: notify
    depends_on_step: ship
    handler_class: rd.h
environments:
  production:
    step_templates:
      - name: pay
        default_retry_limit: 9
$y$ $b$;

	-- mutate(doc): doc with one to five random damages.
	CREATE FUNCTION rd.mutate(doc text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
	DECLARE
	    specials constant text[] := ARRAY[':', '-', '[', ']', '{', '}', ',', '&', '*', '!', '|', '>',
	        '''', '"', '%', '@', '#', '?', '~', ' ', E'\t', E'\n', '&a ', '*a', '<<: ', '--- ',
	        E'\u00e9', E'\u540d', E'\U0001F600', E'\u200b', '\x', '\u0000', '0x', '1e999', '~'];
	    lines text[];
	    pos integer;
	    a integer;
	    b integer;
	    t text;
	BEGIN
	    FOR k IN 1 .. 1 + floor(random() * 5)::integer LOOP
	        IF doc = '' THEN
	            doc := rd.pick(specials);
	            CONTINUE;
	        END IF;
	        pos := 1 + floor(random() * length(doc))::integer;
	        CASE floor(random() * 8)::integer
	        WHEN 0 THEN doc := overlay(doc PLACING '' FROM pos FOR 1 + floor(random() * 20)::integer);
	        WHEN 1 THEN doc := overlay(doc PLACING rd.pick(specials) FROM pos FOR 1);
	        WHEN 2 THEN doc := overlay(doc PLACING rd.pick(specials) FROM pos FOR 0);
	        WHEN 3 THEN doc := left(doc, pos);
	        ELSE
	            lines := string_to_array(doc, E'\n');
	            a := 1 + floor(random() * array_length(lines, 1))::integer;
	            b := 1 + floor(random() * array_length(lines, 1))::integer;
	            CASE floor(random() * 4)::integer
	            WHEN 0 THEN lines := lines[1:a] || lines[a:];
	            WHEN 1 THEN t := lines[a]; lines[a] := lines[b]; lines[b] := t;
	            WHEN 2 THEN lines[a] := repeat(' ', floor(random() * 8)::integer) || ltrim(lines[a]);
	            ELSE lines[a] := lines[a] || ' ' || lines[b];
	            END CASE;
	            doc := array_to_string(lines, E'\n');
	        END CASE;
	    END LOOP;
	    RETURN doc;
	END $$;

	-- value(depth): a random JSON value.
	CREATE FUNCTION rd.value(depth integer) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
	BEGIN
	    CASE floor(random() * (CASE WHEN depth > 0 THEN 8 ELSE 6 END))::integer
	    WHEN 0 THEN RETURN 'null';
	    WHEN 1 THEN RETURN to_jsonb(random() < 0.5);
	    WHEN 2 THEN RETURN to_jsonb(floor(random() * 200 - 100)::integer);
	    WHEN 3 THEN RETURN to_jsonb(random() * 1e6 - 5e5);
	    WHEN 4 THEN RETURN to_jsonb(rd.pick(ARRAY['', 'a', 'abc', 'x@y.z', '2024-01-01', E'\u540d', repeat('z', 300)]));
	    WHEN 5 THEN RETURN to_jsonb(rd.pick(ARRAY['order_id', 'type', 'items', '$ref', '#/definitions/x']));
	    WHEN 6 THEN RETURN (SELECT coalesce(jsonb_agg(rd.value(depth - 1)), '[]')
	                          FROM generate_series(1, floor(random() * 4)::integer));
	    ELSE RETURN (SELECT coalesce(jsonb_object_agg(rd.pick(ARRAY['a', 'b', 'order_id', 'type', 'x']) || i,
	                                                  rd.value(depth - 1)), '{}')
	                   FROM generate_series(1, floor(random() * 4)::integer) i);
	    END CASE;
	END $$;

	-- schema(depth): a random JSON Schema, valid or not.
	CREATE FUNCTION rd.schema(depth integer) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
	DECLARE
	    s jsonb := '{}';
	    kw text;
	BEGIN
	    FOR k IN 1 .. floor(random() * 5)::integer LOOP
	        kw := rd.pick(ARRAY['type', 'properties', 'items', 'required', 'enum', 'const', 'minimum',
	                            'maximum', 'exclusiveMinimum', 'minLength', 'maxLength', 'pattern',
	                            'format', 'minItems', 'maxItems', 'uniqueItems', 'additionalProperties',
	                            'allOf', 'anyOf', 'oneOf', 'not', 'multipleOf', '$ref', 'definitions',
	                            'unknownKeyword', 'description', 'title', 'default']);
	        s := s || jsonb_build_object(kw, CASE
	            WHEN kw = 'type' THEN to_jsonb(rd.pick(ARRAY['object', 'array', 'string', 'number', 'integer',
	                                                        'boolean', 'null', 'nonsense']))
	            WHEN kw IN ('properties', 'definitions') AND depth > 0 THEN
	                (SELECT coalesce(jsonb_object_agg('p' || i, rd.schema(depth - 1)), '{}')
	                   FROM generate_series(1, floor(random() * 3)::integer) i)
	            WHEN kw IN ('items', 'not', 'additionalProperties') AND depth > 0 THEN rd.schema(depth - 1)
	            WHEN kw IN ('allOf', 'anyOf', 'oneOf') AND depth > 0 THEN
	                (SELECT coalesce(jsonb_agg(rd.schema(depth - 1)), '[]')
	                   FROM generate_series(1, floor(random() * 3)::integer))
	            WHEN kw = 'pattern' THEN to_jsonb(rd.pick(ARRAY['^a+$', '(a|b)*c', '[', '(?=x)', '\d{2,}', '(a+)+$', '']))
	            WHEN kw = 'format' THEN to_jsonb(rd.pick(ARRAY['email', 'date', 'date-time', 'uuid', 'ipv4', 'unknown']))
	            ELSE rd.value(1)
	        END);
	    END LOOP;
	    RETURN s;
	END $$;

	-- note(kind, sqlstate, example): count an outcome.
	CREATE FUNCTION rd.note(kind text, st text, example text) RETURNS void LANGUAGE sql AS $$
	    INSERT INTO rd.outcomes VALUES (kind, st, 1, left(example, 2000))
	    ON CONFLICT (kind, sqlstate) DO UPDATE SET n = rd.outcomes.n + 1
	$$;

	-- run(count, seed): count documents of each kind, from seed.
	CREATE FUNCTION rd.run(count integer, seed float8) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
	    doc text;
	    s jsonb;
	    v jsonb;
	BEGIN
	    PERFORM setseed(seed);
	    FOR i IN 1 .. count LOOP
	        doc := rd.mutate(rd.base());
	        BEGIN
	            PERFORM tasker_register_template(doc);
	            RAISE EXCEPTION 'registered' USING ERRCODE = 'RD000';
	        EXCEPTION WHEN OTHERS THEN
	            PERFORM rd.note('yaml', CASE WHEN SQLSTATE = 'RD000' THEN 'success' ELSE SQLSTATE END, doc);
	        END;
	        s := rd.schema(3);
	        v := rd.value(3);
	        BEGIN
	            PERFORM tasker_validate_json(s, v);
	            PERFORM rd.note('json_schema', 'success', s::text);
	        EXCEPTION WHEN OTHERS THEN
	            PERFORM rd.note('json_schema', SQLSTATE, s::text || ' / ' || v::text);
	        END;
	    END LOOP;
	END $$;
});

my $per_kind = int($total / 2);
my $done = 0;
my $batches = 0;
while ($done < $per_kind)
{
	my $n = $per_kind - $done < $batch ? $per_kind - $done : $batch;
	my $seed = sprintf('%.6f', 0.001 + $batches / 1000);
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET statement_timeout = '600s'; SELECT rd.run($n, $seed)");
	if ($rc != 0)
	{
		fail("batch $batches (seed $seed) failed: $err");
		last;
	}
	$done += $n;
	$batches++;
}
is($done, $per_kind, "$done YAML templates and $done JSON Schemas went through in $batches batches");

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time,
	'no document crashed the server');
diag($node->safe_psql('postgres',
	q{SELECT kind || ' ' || sqlstate || ': ' || n FROM rd.outcomes ORDER BY kind, n DESC}));

my $doc = slurp_file(($ENV{TASKER_TREE} // '.') . '/docs/errors.md');
my %documented = map { $_ => 1 } ($doc =~ /^\| `([0-9A-Z]{5})` \|/mg);
my @raised = split /\n/, $node->safe_psql('postgres',
	q{SELECT DISTINCT sqlstate FROM rd.outcomes WHERE sqlstate <> 'success' ORDER BY 1});
my @undocumented = grep { !$documented{$_} } @raised;
is(join(', ', @undocumented), '', 'every outcome is a success or a documented SQLSTATE')
  or diag($node->safe_psql('postgres', q{SELECT kind || ' ' || sqlstate || ', e.g. ' || example
	FROM rd.outcomes WHERE sqlstate IN ('} . join("','", @undocumented) . q{')}));
is($node->safe_psql('postgres', q{SELECT coalesce(sum(n), 0) FROM rd.outcomes
		WHERE sqlstate LIKE 'XX%' OR sqlstate IN ('57014', '53200')}),
	'0', 'no internal error, out-of-memory or timeout');
ok($node->safe_psql('postgres', q{SELECT count(*) FROM rd.outcomes WHERE sqlstate = 'success'}) == 2,
	'both kinds have successes too (the generator is not all noise)');

done_testing();
