# 070_hostile_calls.pl: issue 13, the hostile-input catalogue.  Every
# function of the extension (read from the catalog, so a new one is
# covered) is called once for each hostile value of each of its
# arguments, the others holding ordinary values: NULLs, empty strings,
# 100,000-character and injection-shaped or Unicode names, a 10 MB
# context, 10,000-level deep JSON, 10,000- and 100,000-element arrays,
# extreme numbers, intervals and timestamps, unknown ids.  Then functions
# are called with wrong types, in the wrong state, and a 10,000-step
# template is registered.  Each call must succeed or raise an SQLSTATE
# that docs/errors.md lists, with a message that is not an internal one;
# a failed call must leave every tasker table as it was; the server must
# never restart.  No preload: the calls run in the test's session.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->start;
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE SCHEMA hx;
	CREATE FUNCTION hx.ok(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
	SELECT tasker_register_template($y$
name: fx
step_templates:
  - {name: s, handler_class: hx.ok}
$y$);
	SELECT tasker_register_template($y$
name: fxw
step_templates:
  - {name: w, handler_class: "Hx::Remote"}
$y$) WHERE tasker_register_handler('Hx::Remote', 'q') IS NOT NULL;
	SELECT tasker_create_task('fx');                  -- task 1: complete
	SELECT tasker_run_task(1);
	SELECT tasker_create_task('fx');                  -- task 2: pending
	SELECT tasker_create_task('fxw');                 -- task 3: an external worker's

	-- Hostile values by argument type: (type, label, SQL expression).
	CREATE TABLE hx.hostile (type regtype, label text, expr text);
	INSERT INTO hx.hostile VALUES
	  ('text', 'NULL', 'NULL'),
	  ('text', 'empty', $$''$$),
	  ('text', '100,000 characters', $$repeat('x', 100000)$$),
	  ('text', 'injection', $$'''); DROP TABLE tasker_tasks; --'$$),
	  ('text', 'quotes and backslashes', $$E'"\\\\'' \\\\ {{context.x}} $1 %s'$$),
	  ('text', 'Unicode', $$E'na\u00efve \u540d\u524d \U0001F600 \u200b\u202e'$$),
	  ('text', 'control characters', $$E'a\nb\tc\r\u0001'$$),
	  ('text', '50,000 two-byte characters', $$repeat(E'\u00e9', 50000)$$),
	  ('jsonb', 'NULL', 'NULL'),
	  ('jsonb', 'array', $$'[]'::jsonb$$),
	  ('jsonb', 'JSON null', $$'null'::jsonb$$),
	  ('jsonb', 'string', $$'"s"'::jsonb$$),
	  ('jsonb', 'number', $$'1e308'::jsonb$$),
	  ('jsonb', '10,000-level deep', $$(repeat('[', 10000) || repeat(']', 10000))::jsonb$$),
	  ('jsonb', '10,000-level deep object', $$(repeat('{"a":', 10000) || '1' || repeat('}', 10000))::jsonb$$),
	  ('jsonb', '10 MB object', $$jsonb_build_object('blob', repeat('x', 10485760))$$),
	  ('jsonb', 'Unicode keys', $$jsonb_build_object(E'\u540d\u524d\U0001F600', E'\u202e', '', 'x')$$),
	  ('bigint', 'NULL', 'NULL'),
	  ('bigint', 'unknown id', '987654321'),
	  ('bigint', 'negative', '-1'),
	  ('bigint', 'zero', '0'),
	  ('bigint', 'largest', '9223372036854775807'),
	  ('bigint', 'smallest', '(-9223372036854775807 - 1)'),
	  ('integer', 'NULL', 'NULL'),
	  ('integer', 'negative', '-1'),
	  ('integer', 'zero', '0'),
	  ('integer', 'largest', '2147483647'),
	  ('integer', 'smallest', '(-2147483647 - 1)'),
	  ('interval', 'NULL', 'NULL'),
	  ('interval', 'negative', $$'-1 second'::interval$$),
	  ('interval', 'zero', $$'0'::interval$$),
	  ('interval', 'a million years', $$'1000000 years'::interval$$),
	  ('interval', 'a month', $$'1 mon'::interval$$),
	  ('boolean', 'NULL', 'NULL'),
	  ('text[]', 'NULL', 'NULL'),
	  ('text[]', 'NULL element', $$'{NULL}'::text[]$$),
	  ('text[]', 'empty element', $$'{""}'::text[]$$),
	  ('text[]', '10,000 elements', $$(SELECT array_agg('t' || i) FROM generate_series(1, 10000) i)$$),
	  ('text[]', 'a 100,000-character element', $$ARRAY[repeat('x', 100000)]$$),
	  ('text[]', 'two dimensions', $$'{{a,b},{c,d}}'::text[]$$),
	  ('bigint[]', 'NULL', 'NULL'),
	  ('bigint[]', 'empty', $$'{}'::bigint[]$$),
	  ('bigint[]', 'NULL element', $$'{NULL}'::bigint[]$$),
	  ('bigint[]', '100,000 ids', $$(SELECT array_agg(i::bigint) FROM generate_series(1, 100000) i)$$),
	  ('timestamptz', 'NULL', 'NULL'),
	  ('timestamptz', 'infinity', $$'infinity'::timestamptz$$),
	  ('timestamptz', '-infinity', $$'-infinity'::timestamptz$$),
	  ('timestamptz', 'year 200000', $$'200000-01-01'::timestamptz$$),
	  ('uuid', 'NULL', 'NULL'),
	  ('uuid', 'zero', $$'00000000-0000-0000-0000-000000000000'::uuid$$),
	  ('regprocedure', 'NULL', 'NULL'),
	  ('regprocedure', 'pg_catalog function', $$'pg_catalog.now()'::regprocedure$$),
	  ('regprocedure', 'a jsonb function of pg_catalog', $$'pg_catalog.jsonb_pretty(jsonb)'::regprocedure$$),
	  ('regrole', 'NULL', 'NULL'),
	  ('regrole', 'a predefined role', $$'pg_read_server_files'::regrole$$);

	-- The ordinary value of an argument, by name and then by type.
	CREATE FUNCTION hx.ordinary(argname text, argtype regtype) RETURNS text
	LANGUAGE sql IMMUTABLE AS $$
	    SELECT CASE
	      WHEN argname IN ('name', 'task_name') THEN $q$'fx'$q$
	      WHEN argname = 'namespace' THEN $q$'default'$q$
	      WHEN argname = 'entity' THEN $q$'task'$q$
	      WHEN argname = 'format' THEN $q$'mermaid'$q$
	      WHEN argname = 'queue' THEN $q$'q'$q$
	      WHEN argname = 'level' THEN $q$'reader'$q$
	      WHEN argname = 'step_name' THEN $q$'s'$q$
	      WHEN argname = 'wait' THEN $q$'0'::interval$q$
	      WHEN argname = 'path' THEN $q$'/nonexistent/fx.yaml'$q$
	      WHEN argname IN ('yaml') THEN $q$'name: fx2' || chr(10) || 'step_templates: [{name: s, handler_class: hx.ok}]'$q$
	      WHEN argname = 'schema' THEN $q$'{"type": "object"}'::jsonb$q$
	      WHEN argname = 'trace_id' THEN $q$'4bf92f3577b34da6a3ce929d0e0e4736'$q$
	      WHEN argname = 'traceparent' THEN $q$'00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'$q$
	      WHEN argtype = 'text'::regtype THEN $q$'fx'$q$
	      WHEN argtype = 'jsonb'::regtype THEN $q$'{}'::jsonb$q$
	      WHEN argtype IN ('bigint'::regtype, 'integer'::regtype) THEN '1'
	      WHEN argtype = 'interval'::regtype THEN $q$'1 second'::interval$q$
	      WHEN argtype = 'boolean'::regtype THEN 'false'
	      WHEN argtype = 'text[]'::regtype THEN $q$'{}'::text[]$q$
	      WHEN argtype = 'bigint[]'::regtype THEN $q$'{1}'::bigint[]$q$
	      WHEN argtype = 'timestamptz'::regtype THEN 'now()'
	      WHEN argtype = 'uuid'::regtype THEN 'gen_random_uuid()'
	      WHEN argtype = 'regprocedure'::regtype THEN $q$'hx.ok(jsonb)'::regprocedure$q$
	      WHEN argtype = 'regrole'::regtype THEN $q$'postgres'::regrole$q$
	    END
	$$;

	-- Rows in every tasker table, to see that a failed call left none.
	CREATE FUNCTION hx.rows() RETURNS bigint LANGUAGE plpgsql AS $$
	DECLARE
	    r regclass;
	    n bigint;
	    total bigint := 0;
	BEGIN
	    FOR r IN SELECT c.oid FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
	              WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker')
	                AND c.relkind = 'r' LOOP
	        EXECUTE format('SELECT count(*) FROM %s', r) INTO n;
	        total := total + n;
	    END LOOP;
	    RETURN total;
	END $$;

	CREATE TABLE hx.results (fn text, arg text, label text, sqlstate text, message text,
	                         detail text, hint text, rows_kept boolean);

	-- call(fn, arg, label, sql): run one call, record its outcome.  A
	-- success is rolled back (SQLSTATE HX000) so calls do not pile up.
	CREATE FUNCTION hx.call(fn text, arg text, label text, sql text) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
	    before bigint := hx.rows();
	    st text; msg text; det text; hin text;
	BEGIN
	    BEGIN
	        EXECUTE sql;
	        RAISE EXCEPTION 'succeeded' USING ERRCODE = 'HX000';
	    EXCEPTION WHEN OTHERS THEN
	        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
	                                det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
	    END;
	    INSERT INTO hx.results VALUES (fn, arg, label, NULLIF(st, 'HX000'),
	                                   CASE WHEN st = 'HX000' THEN NULL ELSE msg END,
	                                   det, hin, hx.rows() = before);
	END $$;
});

# Every function, every argument, every hostile value of its type: one
# statement per function, under a statement_timeout, so that a call that
# hangs is reported (as 57014) instead of stalling the test.
$node->safe_psql('postgres', q{
	CREATE FUNCTION hx.call_all(fsig text) RETURNS void LANGUAGE plpgsql AS $$
	DECLARE
	    f record;
	    h record;
	    i integer;
	    args text[];
	    ordinary text[];
	BEGIN
	    SELECT p.oid, p.proname::text AS name, p.proargtypes::regtype[] AS types,
	           coalesce(p.proargnames, '{}') AS names
	      INTO f FROM pg_proc p WHERE p.oid = fsig::regprocedure;
	    IF array_length(f.types, 1) IS NULL THEN
	        PERFORM hx.call(fsig, '-', 'no arguments', format('SELECT * FROM %s()', f.oid::regproc));
	        RETURN;
	    END IF;
	    ordinary := ARRAY(SELECT hx.ordinary(f.names[k], f.types[k - 1])
	                        FROM generate_series(1, array_length(f.types, 1)) k);
	    FOR i IN 0 .. array_length(f.types, 1) - 1 LOOP
	        FOR h IN SELECT * FROM hx.hostile WHERE type = f.types[i] LOOP
	            args := ordinary;
	            args[i + 1] := h.expr || '::' || f.types[i]::text;
	            PERFORM hx.call(fsig, coalesce(f.names[i + 1], '$' || (i + 1)), h.label,
	                            format('SELECT * FROM %s(%s)', f.oid::regproc,
	                                   array_to_string(args, ', ')));
	        END LOOP;
	    END LOOP;
	END $$;
});
my @functions = split /\n/, $node->safe_psql('postgres', q{
	SELECT p.oid::regprocedure::text
	  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
	 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker')
	   AND p.proname NOT IN ('tasker_apply_privileges')
	   -- procedures commit as they go (tasker_purge_in_batches): they cannot
	   -- run inside the calls' subtransactions, so they are not called here
	   AND p.prokind = 'f'
	 ORDER BY 1});
for my $fn (@functions)
{
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET statement_timeout = '120s'; SELECT hx.call_all('$fn')");
	next if $rc == 0;
	my $state = $err =~ /canceling statement due to statement timeout/ ? '57014' : 'XX000';
	$err =~ s/'/''/g;
	$node->safe_psql('postgres',
		"INSERT INTO hx.results VALUES ('$fn', '*', 'all its calls', '$state', '$err', NULL, NULL, true)");
}

# Wrong types, wrong states, unknown ids, and a 10,000-step template.
my $w = $node->safe_psql('postgres', q{SELECT step_id FROM tasker_claim_steps('q', 'w1')});
my @specials = (
	['tasker_create_task', 'wrong type', q{SELECT tasker_create_task(42)}],
	['tasker_cancel_task', 'wrong type', q{SELECT tasker_cancel_task('abc')}],
	['tasker_create_task', 'context is text', q{SELECT tasker_create_task('fx', 'not json')}],
	['tasker_create_task', 'a traceparent key that is a number', q{SELECT tasker_create_task('fx', '{"traceparent": 1}')}],
	['tasker_create_task', 'a traceparent of version ff', q{SELECT tasker_create_task('fx', traceparent => 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')}],
	['tasker_register_template', 'binary-looking text', q{SELECT tasker_register_template(E'name: \x01\x7f\n  - [')}],
	['tasker_retry_task', 'a pending task', q{SELECT tasker_retry_task(2)}],
	['tasker_resolve_step', 'a complete step', q{SELECT tasker_resolve_step((SELECT workflow_step_id FROM tasker_workflow_steps WHERE task_id = 1 AND current_state = 'complete' LIMIT 1), '{}')}],
	['tasker_cancel_task', 'twice', q{SELECT tasker_cancel_task(2) AND tasker_cancel_task(2)}],
	['tasker_complete_step', 'a wrong token', qq{SELECT tasker_complete_step($w, gen_random_uuid(), '{}')}],
	['tasker_run_task', 'a task waiting for an external worker', q{SELECT tasker_run_task(3, '1 second')}],
	['tasker_fail_step', 'an unknown step', q{SELECT tasker_fail_step(987654321, gen_random_uuid(), '{}')}],
	['tasker_complete_steps', 'a malformed batch', q{SELECT tasker_complete_steps('[{"step_id": "x"}]')}],
	['tasker_complete_steps', 'not an array', q{SELECT tasker_complete_steps('{"step_id": 1}')}],
	['tasker_transition_task', 'an illegal transition', q{SELECT tasker_transition_task(1, 'in_progress', '{}')}],
	['tasker_transition_step', 'an unknown state', q{SELECT tasker_transition_step(1, 'exploded', '{}')}],
	['tasker_resolve_step', 'a step of another task', q{SELECT tasker_resolve_step(2, 'nonexistent'::text, '{}'::jsonb)}],
	['tasker_register_template', '10,000 steps', q{SELECT tasker_register_template('name: big' || chr(10) || 'step_templates:' || chr(10) ||
		(SELECT string_agg('  - {name: s' || i || ', handler_class: hx.ok' || CASE WHEN i > 1 THEN ', depends_on_step: s' || (i - 1) ELSE '' END || '}', chr(10)) FROM generate_series(1, 10000) i))}],
	['tasker_register_template', '100,000-character step name', q{SELECT tasker_register_template('name: long' || chr(10) || 'step_templates: [{name: ' || repeat('s', 100000) || ', handler_class: hx.ok}]')}],
	['tasker_register_template', '10,000-level deep YAML', q{SELECT tasker_register_template('name: deep' || chr(10) || 'configuration: ' || repeat('[', 10000) || repeat(']', 10000) || chr(10) || 'step_templates: [{name: s, handler_class: hx.ok}]')}],
	['tasker_register_template_file', 'a directory', q{SELECT tasker_register_template_file('/')}],
	['tasker_register_template_file', 'a 300-byte file name', q{SELECT tasker_register_template_file(repeat('f', 300))}],
	['tasker_validate_json', '10,000-level deep schema', q{SELECT tasker_validate_json((repeat('{"items":', 10000) || '{}' || repeat('}', 10000))::jsonb, '[]')}],
);
for my $s (@specials)
{
	my ($fn, $label, $sql) = @$s;
	$sql =~ s/'/''/g;
	$node->safe_psql('postgres', "SELECT hx.call('$fn', 'special', '$label', '$sql')");
}

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time,
	'no call crashed the server');

my $cases = $node->safe_psql('postgres', 'SELECT count(*) FROM hx.results');
my $functions = $node->safe_psql('postgres', 'SELECT count(DISTINCT fn) FROM hx.results');
ok($cases > 500, "$cases hostile calls of $functions functions were made");
diag($node->safe_psql('postgres', q{
	SELECT s || ': ' || n FROM (SELECT coalesce(sqlstate, 'success') AS s, count(*) AS n
	                              FROM hx.results GROUP BY 1) x ORDER BY n DESC, s}));

# Every SQLSTATE raised is in the catalogue.
my $doc = slurp_file(($ENV{TASKER_TREE} // '.') . '/docs/errors.md');
my %documented = map { $_ => 1 } ($doc =~ /^\| `([0-9A-Z]{5})` \|/mg);
ok(keys(%documented) > 10, 'docs/errors.md lists the SQLSTATEs');
my @raised = split /\n/, $node->safe_psql('postgres',
	'SELECT DISTINCT sqlstate FROM hx.results WHERE sqlstate IS NOT NULL ORDER BY 1');
my @undocumented = grep { !$documented{$_} } @raised;
is(join(', ', @undocumented), '', 'every SQLSTATE raised is documented in docs/errors.md')
  or diag($node->safe_psql('postgres', q{SELECT fn || ' ' || arg || ' (' || label || '): ' || sqlstate || ' ' || message
	FROM hx.results WHERE sqlstate IN ('} . join("','", @undocumented) . q{')}));

is($node->safe_psql('postgres', q{
	SELECT coalesce(string_agg(fn || ' ' || arg || ' (' || label || '): ' || sqlstate || ' ' || message, E'\n'), '')
	  FROM hx.results WHERE sqlstate LIKE 'XX%' OR sqlstate IN ('57014', '53200')}),
	'', 'no call raised an internal error, ran out of memory, or timed out');
is($node->safe_psql('postgres', q{
	SELECT coalesce(string_agg(fn || ' ' || arg || ' (' || label || '): ' || message, E'\n'), '')
	  FROM hx.results
	 WHERE message ~* '(cache lookup|unrecognized node|could not find (tuple|function)|unexpected|invalid memory alloc|SPI_|palloc|null pointer)'
	    OR (message = '' AND sqlstate NOT IN ('TK001', 'TK002'))}),
	'', 'no message is an internal one');
is($node->safe_psql('postgres', q{
	SELECT coalesce(string_agg(fn || ' ' || arg || ' (' || label || ')', E'\n'), '')
	  FROM hx.results WHERE sqlstate IS NOT NULL AND NOT rows_kept}),
	'', 'a failed call leaves every tasker table as it was');

# The calls of the catalogue that must fail do, with the documented code.
my %expect = (
	'tasker_create_task|name|NULL' => '22004',
	'tasker_create_task|context|10 MB object' => '54000',
	'tasker_create_task|context|array' => '22023',
	'tasker_create_task|name|injection' => '42704',
	'tasker_cancel_task|task_id|unknown id' => '42704',
	'tasker_retry_task|special|a pending task' => '55000',
	'tasker_complete_step|special|a wrong token' => 'TK003',
	'tasker_transition_task|special|an illegal transition' => '55000',
	'tasker_register_template|special|10,000-level deep YAML' => '54000',
	'tasker_wait_for_task|timeout|negative' => '22023',
	'tasker_register_template_file|special|a directory' => '22023',
	'tasker_register_template_file|special|a 300-byte file name' => '22023',
	'tasker_validate_json|special|10,000-level deep schema' => '54001',
	'tasker_create_task|traceparent|empty' => '22023',
	'tasker_create_task|traceparent|injection' => '22023',
	'tasker_create_task|traceparent|100,000 characters' => '22023',
	'tasker_create_task|special|a traceparent key that is a number' => '22023',
	'tasker_create_task|special|a traceparent of version ff' => '22023',
	'tasker_span_id|trace_id|Unicode' => '22023',
	'tasker_span_id|trace_id|NULL' => 'success',
	'tasker_span_id|attempt_serial|NULL' => '22004',
	'tasker_span_id|step_id|largest' => 'success',
	'tasker_task_spans|task_id|unknown id' => '42704',
	'tasker_task_spans|task_id|NULL' => '22004',
);
for my $k (sort keys %expect)
{
	my ($fn, $arg, $label) = split /\|/, $k;
	my $got = $node->safe_psql('postgres', qq{
		SELECT string_agg(DISTINCT coalesce(sqlstate, 'success'), ',') FROM hx.results
		 WHERE (fn = '$fn' OR fn LIKE '$fn(%') AND arg = '$arg' AND label = '$label'});
	is($got, $expect{$k}, "$fn, $arg $label: $expect{$k}");
}
is($node->safe_psql('postgres', q{SELECT coalesce(sqlstate, 'success') FROM hx.results WHERE label = '10,000 steps'}),
	'success', 'a 10,000-step template registers');

done_testing();
