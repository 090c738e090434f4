# 097_dump_restore.pl: pg_dump and pg_restore of a database with tasker and
# live tasks (issue 13): every table of the extension is marked for the
# dump, the restored database has the tasks, their steps, histories and
# sequences, and its workers finish them; a task created after the restore
# gets a new id.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $conf = qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
};
my $old = PostgreSQL::Test::Cluster->new('dumped');
$old->init;
$old->append_conf('postgresql.conf', $conf);
$old->start;
$old->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: held
step_templates:
  - {name: first, handler_class: noop}
  - {name: outside, handler_config: {type: worker, queue: dq}, depends_on_step: first}
  - {name: last, handler_class: noop, depends_on_step: outside}
$y$);
SELECT count(tasker_create_task('held', jsonb_build_object('i', i))) FROM generate_series(1, 10) i;
});
ok($old->poll_query_until('postgres',
		"SELECT count(*) = 10 FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
          WHERE n.name = 'first' AND s.current_state = 'complete'"),
	'the tasks are in flight, waiting for an external worker');
is($old->safe_psql('postgres', q{
SELECT string_agg(c.relname, ',' ORDER BY c.relname)
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker') AND d.deptype = 'e'
   AND c.relkind = 'r'
   AND c.oid <> ALL (COALESCE((SELECT extconfig FROM pg_extension WHERE extname = 'tasker'), '{}'))}), '',
	'every table of the extension is dumped with the database');
my $max = $old->safe_psql('postgres', 'SELECT max(task_id) FROM tasker_tasks');
my $history = $old->safe_psql('postgres', 'SELECT count(*) FROM tasker_workflow_step_transitions');
my $dump = $old->basedir . '/db.dump';
$old->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $old->connstr('postgres')], 'pg_dump');
$old->stop;

my $new = PostgreSQL::Test::Cluster->new('restored');
$new->init;
$new->append_conf('postgresql.conf', $conf);
$new->start;
$new->command_ok(['pg_restore', '-d', $new->connstr('postgres'), $dump], 'pg_restore');
is($new->safe_psql('postgres', "SELECT count(*) FROM tasker_tasks"), '10', 'the tasks are restored');
is($new->safe_psql('postgres', "SELECT count(*) FROM tasker_workflow_step_transitions"),
	$history, 'with their histories');
for (1 .. 30)
{
	last if $new->safe_psql('postgres', q{
SELECT count(tasker_complete_step(step_id, claim_token, '{}')) FROM tasker_claim_steps('dq', 'w', 50, '1 minute', '1 second');
SELECT count(*) = 10 FROM tasker_tasks WHERE current_state = 'complete'}) =~ /t$/;
}
ok($new->poll_query_until('postgres',
		"SELECT count(*) = 10 FROM tasker_tasks WHERE current_state = 'complete'"),
	'the restored tasks finish on the restored server');
ok($new->safe_psql('postgres', "SELECT tasker_create_task('held', '{}')") > $max,
	'a new task gets an id above the restored ones (the sequences were dumped)');
is($new->safe_psql('postgres', 'SELECT count(*) FROM tasker_check()'), '0', 'no task breaks an invariant');
$new->stop;
done_testing();
