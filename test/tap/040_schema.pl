# 040_schema.pl: tasker created in a schema of its own works for callers
# and workers whose search_path does not include that schema.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('schema');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE SCHEMA workflows;
	CREATE EXTENSION tasker SCHEMA workflows;
	CREATE TABLE done (task_id bigint, step text);
	CREATE FUNCTION note(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO done VALUES ((step->>'task_id')::bigint, step->>'step_name')
		RETURNING jsonb_build_object('ok', true) $$;
});
is($node->safe_psql('postgres', 'SHOW search_path'), '"$user", public',
	'the schema is not on the search_path');
ok($node->safe_psql('postgres', q{
	SELECT workflows.tasker_register_template($y$
name: elsewhere
step_templates:
  - {name: first, handler_class: note}
  - {name: second, handler_class: note, depends_on_step: first}
$y$)}) > 0, 'a template registers through the qualified function');
my $task = $node->safe_psql('postgres', "SELECT workflows.tasker_create_task('elsewhere', '{}')");
is($node->safe_psql('postgres', "SELECT workflows.tasker_wait_for_task($task, '20 seconds')"),
	'complete', 'the workers run it');
is($node->safe_psql('postgres', "SELECT string_agg(step, ',' ORDER BY step) FROM done WHERE task_id = $task"),
	'first,second', 'every step ran');
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = off');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$task = $node->safe_psql('postgres', "SELECT workflows.tasker_create_task('elsewhere', '{}')");
is($node->safe_psql('postgres', "SELECT workflows.tasker_run_task($task, '20 seconds')"),
	'complete', 'tasker_run_task works from a session without the schema on its path');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM workflows.tasker_step_readiness_status($task)"),
	'2', 'the readiness functions work too');
$node->stop;
done_testing();
