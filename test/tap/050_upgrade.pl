# 050_upgrade.pl: ALTER EXTENSION tasker UPDATE from the released 0.1.0
# keeps a running installation's templates and tasks, and leaves the same
# schema as a fresh install of the current version.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('old', q{
	CREATE EXTENSION tasker VERSION '0.1.0';
	CREATE TABLE ledger (task_id bigint, step text);
	CREATE FUNCTION note(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO public.ledger VALUES (($1->>'task_id')::bigint, $1->>'step_name');
		SELECT '{"ok": true}'::jsonb $$;
	SELECT tasker_register_template($y$
name: two_steps
step_templates:
  - name: a
    handler_class: public.note
  - name: b
    handler_class: public.note
    depends_on_step: a
$y$);
	SELECT tasker_create_task('two_steps', '{"n": 1}', identity_key => 'k1');
});

$node->safe_psql('old', 'ALTER EXTENSION tasker UPDATE');
is($node->safe_psql('old', "SELECT extversion FROM pg_extension WHERE extname = 'tasker'"),
	'0.2.0', 'the extension is at 0.2.0 after ALTER EXTENSION UPDATE');
is($node->safe_psql('old', 'SELECT tasker_run_task(1)'), 'complete',
	'a task created under 0.1.0 runs to completion under 0.2.0');
is($node->safe_psql('old', 'SELECT string_agg(step, \',\' ORDER BY step) FROM ledger'),
	'a,b', 'each of its steps ran once');
is($node->safe_psql('old', "SELECT tasker_create_task('two_steps', '{\"n\": 1}', identity_key => 'k1')"),
	'1', 'an identity key from 0.1.0 still finds its task');

$node->safe_psql('fresh', 'CREATE EXTENSION tasker');
# Every member object of the extension, with its definition, columns and
# privileges (pg_dump leaves extension members out).
my $describe = q{
	SELECT string_agg(x, E'\n' ORDER BY x) FROM (
	  SELECT pg_describe_object(d.classid, d.objid, 0) || ' ' ||
	         CASE WHEN d.classid = 'pg_proc'::regclass THEN
	                pg_get_functiondef(d.objid) || coalesce((SELECT proacl::text FROM pg_proc WHERE oid = d.objid), '')
	              WHEN d.classid = 'pg_class'::regclass THEN
	                coalesce((SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
	                                            || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
	                            FROM pg_attribute WHERE attrelid = d.objid AND attnum > 0 AND NOT attisdropped), '')
	                || coalesce((SELECT ' ' || relacl::text FROM pg_class WHERE oid = d.objid), '')
	                || coalesce((SELECT ' ' || pg_get_viewdef(d.objid) FROM pg_class WHERE oid = d.objid AND relkind = 'v'), '')
	              ELSE '' END AS x
	    FROM pg_depend d
	   WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
	     AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker')) s};
my $fresh = $node->safe_psql('fresh', $describe);
my $old = $node->safe_psql('old', $describe);
ok(length($fresh) > 10000, 'the fresh install has its objects');
is($old, $fresh, 'an upgraded schema is the same as a fresh install');

done_testing();
