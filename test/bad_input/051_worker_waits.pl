# 051_worker_waits.pl: issue 15 D18.  With tasker.database_name naming a
# database that does not exist, the workers wait, visibly, instead of
# failing at every start; they start when it is created.  In a database
# whose extension is at another version than the library, they wait for
# ALTER EXTENSION tasker UPDATE, and then run its tasks.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('waits');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'jobs'
tasker.max_workers = 2
tasker.poll_interval = 100
});
$node->start;
# tasker_worker_status() reads shared memory: any database with the
# extension shows the workers of the server.
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
my $states = q{SELECT string_agg(DISTINCT state, ',') FROM tasker_worker_status() WHERE role = 'worker'};

ok($node->poll_query_until('postgres', $states, 'waiting_for_database'),
	'with no database "jobs", the workers show waiting_for_database');
sleep 6;
is($node->safe_psql('postgres', $states), 'waiting_for_database', 'and keep waiting');
my $log = slurp_file($node->logfile);
unlike($log, qr/FATAL:.*database "jobs" does not exist/,
	'no worker tried to connect to the missing database');
like($log, qr/tasker workers wait for database "jobs" to be created/,
	'the log says once what the workers wait for');

# The database appears with the released 0.1.0 schema.
$node->safe_psql('postgres', 'CREATE DATABASE jobs');
$node->safe_psql('jobs', q{
	CREATE EXTENSION tasker VERSION '0.1.0';
	CREATE FUNCTION done(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
	SELECT tasker_register_template($y$
name: one_step
step_templates:
  - name: a
    handler_class: public.done
$y$);
	SELECT tasker_create_task('one_step');
});
ok($node->poll_query_until('postgres', $states, 'waiting_for_update'),
	'with the extension at 0.1.0, the workers show waiting_for_update');
sleep 1;
is($node->safe_psql('jobs', 'SELECT current_state FROM tasker_tasks WHERE task_id = 1'),
	'pending', 'and run nothing');
like(slurp_file($node->logfile),
	qr/waits for the tasker extension of database "jobs" to be updated/,
	'the log says why');

$node->safe_psql('jobs', 'ALTER EXTENSION tasker UPDATE');
is($node->safe_psql('jobs', q{SELECT tasker_wait_for_task(1, '30 seconds')}),
	'complete', 'after ALTER EXTENSION tasker UPDATE the workers run the task');
ok($node->poll_query_until('postgres', $states, 'idle'), 'and show idle');

done_testing();
