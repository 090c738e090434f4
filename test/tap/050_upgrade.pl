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

# pg_dump leaves out an extension's own objects, so the schemas are
# compared through the catalogs: every member object of the extension with
# its definition (functions, views, columns, constraints, indexes).
my $describe = q{
	SELECT string_agg(line, E'\n' ORDER BY line)
	  FROM (SELECT pg_describe_object(d.classid, d.objid, 0) || ': ' || coalesce(
				   CASE WHEN d.classid = 'pg_proc'::regclass
						THEN pg_get_functiondef(d.objid)
						WHEN c.relkind = 'v' THEN pg_get_viewdef(d.objid)
						WHEN c.relkind = 'r' THEN
						(SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
										   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
										   || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
										   ', ' ORDER BY a.attnum)
						   FROM pg_attribute a
						   LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
						  WHERE a.attrelid = d.objid AND a.attnum > 0 AND NOT a.attisdropped)
						|| (SELECT coalesce(string_agg('; ' || pg_get_constraintdef(k.oid), '' ORDER BY k.conname), '')
							  FROM pg_constraint k WHERE k.conrelid = d.objid)
						|| (SELECT coalesce(string_agg('; ' || pg_get_indexdef(i.indexrelid), '' ORDER BY 1), '')
							  FROM pg_index i WHERE i.indrelid = d.objid)
				   END, '') AS line
			  FROM pg_depend d
			  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
			 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
			   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker')) o
};
$node->safe_psql('fresh', 'CREATE EXTENSION tasker');
my $fresh = $node->safe_psql('fresh', $describe);
my $old = $node->safe_psql('old', $describe);
ok(length($fresh) > 10000, 'the description of the fresh install is not empty');
is($old, $fresh, 'an upgraded schema is the same as a fresh install');

done_testing();
