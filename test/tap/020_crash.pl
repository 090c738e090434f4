# 020_crash.pl: nothing is lost and nothing runs twice when workers are
# terminated, killed, or the server stops abruptly; identity keys hold
# under concurrency; handlers run with their template owner's privileges.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
restart_after_crash = on
});
$node->start;
my $fixtures = "$ENV{TASKER_TREE}/test/fixtures";
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', "\\i $fixtures/shapes.sql");

sub worker_pids
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ' ' ORDER BY slot) FROM tasker_worker_status() WHERE role = 'worker' AND pid IS NOT NULL");
}

ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'workers are up');

# pg_terminate_backend: the launcher starts a new executor in the slot.
my ($first) = split / /, worker_pids();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($first)");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM tasker_worker_status()
	 WHERE role = 'worker' AND state = 'idle' AND pid <> $first}),
	'a terminated executor is replaced');
my $task = $node->safe_psql('postgres',
	"SELECT tasker_create_task('diamond_workflow', '{}', namespace => 'shapes')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '20 seconds')"),
	'complete', 'the replacement runs tasks');

# SIGKILL of an executor while a handler runs: the postmaster restarts
# every backend, the batch rolls back, and the workers run it again.
$node->safe_psql('postgres', q{
	CREATE TABLE runs (task_id bigint, step text, UNIQUE (task_id, step));
	CREATE FUNCTION sleepy(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO runs VALUES ((step->>'task_id')::bigint, step->>'step_name');
		PERFORM pg_sleep(0.3);
		RETURN '{}';
	END $$;
	SELECT tasker_register_template($y$
name: sleepy
step_templates:
  - {name: one, handler_class: sleepy}
  - {name: two, handler_class: sleepy, depends_on_step: one}
  - {name: three, handler_class: sleepy, depends_on_step: two}
  - {name: four, handler_class: sleepy, depends_on_step: three}
$y$)});
my $tasks = $node->safe_psql('postgres',
	"SELECT string_agg(tasker_create_task('sleepy', jsonb_build_object('i', i))::text, ',') FROM generate_series(1, 6) i");
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'tasker worker' AND wait_event = 'PgSleep'")
  or die 'no handler running';
my $victim = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker worker' AND wait_event = 'PgSleep' LIMIT 1");
my $log_at = -s $node->logfile;
kill 'KILL', $victim;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_at);
ok($node->poll_query_until('postgres', "SELECT 1", '1'), 'the server is back after the crash');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 6 FROM tasker_tasks WHERE task_id IN ($tasks) AND current_state = 'complete'"),
	'every task completes after the crash');
is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE task_id IN ($tasks)"),
	'24', 'the ledger holds each step once: nothing lost, nothing run twice');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker_workflow_steps WHERE task_id IN ($tasks)
	   AND (current_state <> 'complete' OR attempts <> 1)}),
	'0', 'the killed batch left no trace: one recorded attempt per step');

# An immediate shutdown in the middle of a batch: the same guarantees.
$tasks = $node->safe_psql('postgres',
	"SELECT string_agg(tasker_create_task('sleepy', jsonb_build_object('j', i))::text, ',') FROM generate_series(1, 6) i");
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'tasker worker' AND wait_event = 'PgSleep'");
$node->stop('immediate');
$node->start;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 6 FROM tasker_tasks WHERE task_id IN ($tasks) AND current_state = 'complete'"),
	'tasks interrupted by an immediate shutdown complete after restart');
is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE task_id IN ($tasks)"),
	'24', 'and their steps ran once each');

# SIGTERM (pg_terminate_backend) stops an executor in the middle of a
# handler at once; its batch rolls back and runs again in a new executor.
$node->safe_psql('postgres', q{
	CREATE TABLE wake_up (now_ boolean);
	INSERT INTO wake_up VALUES (false);
	-- Sleeps 30 s, or until wake_up says so (each statement sees new commits).
	CREATE FUNCTION long_sleep(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	DECLARE
		stop timestamptz := clock_timestamp() + interval '30 seconds';
	BEGIN
		INSERT INTO runs VALUES ((step->>'task_id')::bigint, step->>'step_name');
		WHILE clock_timestamp() < stop AND NOT (SELECT now_ FROM wake_up) LOOP
			PERFORM pg_sleep(0.2);
		END LOOP;
		RETURN '{}';
	END $$;
	SELECT tasker_register_template($y$
name: long_sleep
step_templates:
  - {name: nap, handler_class: long_sleep}
$y$)});
$task = $node->safe_psql('postgres', "SELECT tasker_create_task('long_sleep', '{}')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker worker' AND wait_event = 'PgSleep'")
  or die 'the long handler did not start';
my $sleeper = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker worker' AND wait_event = 'PgSleep'");
my $t_term = time;
$node->safe_psql('postgres', "SELECT pg_terminate_backend($sleeper)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $sleeper"),
	'a terminated executor exits while its handler sleeps');
cmp_ok(time - $t_term, '<=', 3, 'within a few seconds, not after the 30 s handler');
is($node->safe_psql('postgres', "SELECT count(*) FROM runs WHERE task_id = $task"),
	'0', 'the interrupted attempt left nothing behind');
# The new executor runs the step again; a cancel would wait for its batch
# (controls lock the task row first, issue 15 C16), so end it instead.
$node->safe_psql('postgres', "UPDATE wake_up SET now_ = true");
$node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '20 seconds')");

# A fast shutdown stops the workers within a few seconds.
$node->safe_psql('postgres',
	"SELECT tasker_create_task('sleepy', jsonb_build_object('k', i)) FROM generate_series(1, 4) i");
my $t0 = time;
$node->stop('fast');
cmp_ok(time - $t0, '<=', 10, 'a fast shutdown is not held up by running handlers');
$node->start;

# Two sessions create a task with the same identity key at once: one task.
my ($out_a, $out_b, $err_a, $err_b) = ('', '', '', '');
my $a = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c',
	  "BEGIN; SELECT tasker_create_task('sleepy', '{}', identity_key => 'same-key'); SELECT pg_sleep(1); COMMIT;" ],
	'>', \$out_a, '2>', \$err_a);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'BEGIN; SELECT tasker_create_task%' AND wait_event = 'PgSleep'");
my $b = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c',
	  "SELECT tasker_create_task('sleepy', '{}', identity_key => 'same-key')" ],
	'>', \$out_b, '2>', \$err_b);
$a->finish;
$b->finish;
my ($id_a) = $out_a =~ /^(\d+)$/m;
my ($id_b) = $out_b =~ /^(\d+)$/m;
ok(defined $id_a, 'the first session created a task');
is($id_b, $id_a, 'the concurrent create with the same identity key returned the same task');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_tasks WHERE identity_hash LIKE 'kv2:%'"),
	'1', 'and only one task row exists');

# A handler runs as the role that registered its template: that role's
# missing privilege fails the step, whatever the worker could read.
$node->safe_psql('postgres', q{
	CREATE ROLE alice NOLOGIN;
	CREATE TABLE secret (v text);
	INSERT INTO secret VALUES ('the password');
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO alice;
	GRANT SELECT ON ALL TABLES IN SCHEMA public TO alice;
	REVOKE ALL ON secret FROM alice;
	GRANT CREATE ON SCHEMA public TO alice;
	SET ROLE alice;
	CREATE FUNCTION peek(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT jsonb_build_object('secret', (SELECT v FROM secret)) $$;
	SELECT tasker_register_template($y$
name: peek
step_templates:
  - {name: peek, handler_class: peek, default_retryable: false}
$y$);
	RESET ROLE;
});
is($node->safe_psql('postgres',
		"SELECT owner FROM tasker_templates WHERE name = 'peek'"),
	'alice', 'the template records its owner');
$task = $node->safe_psql('postgres', "SELECT tasker_create_task('peek', '{}')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '10 seconds')"),
	'error', 'the handler of an unprivileged owner fails');
is($node->safe_psql('postgres', qq{
	SELECT results #>> '{error,sqlstate}' || ' ' || (results #>> '{error,message}')
	  FROM tasker_workflow_steps WHERE task_id = $task}),
	'42501 permission denied for table secret', 'with the owner\'s permission error');

$node->stop;
done_testing();
