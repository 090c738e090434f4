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

# A plain pg_dump leaves out an extension's member objects; in binary
# upgrade mode it writes each of them.  OIDs, transaction ids, sequence
# positions and pg_dump's random \restrict key differ between any two
# databases, so those lines are dropped and OIDs masked.
$node->safe_psql('fresh', 'CREATE EXTENSION tasker');
my @dump = ('pg_dump', '--schema-only', '--binary-upgrade', '--no-owner',
	'--exclude-table=ledger', '--exclude-schema=pg_toast', '-h', $node->host,
	'-p', $node->port);
sub schema_of
{
	my ($db) = @_;
	my @lines = grep {
		!/binary_upgrade_set_next|relfrozenxid|WHERE oid = '|pg_catalog\.setval\(|^\\(un)?restrict /
	} `@dump $db`;
	s/\b\d{5,}\b/OID/g for @lines;
	return join '', @lines;
}
my $fresh = schema_of('fresh');
$node->safe_psql('old', 'DROP TABLE ledger; DROP FUNCTION note(jsonb)');
my $old = schema_of('old');
ok(length($fresh) > 10000, 'pg_dump of the fresh install is not empty');
is($old, $fresh, 'an upgraded schema is the same as a fresh install');

done_testing();
