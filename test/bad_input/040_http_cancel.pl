# 040_http_cancel.pl (issue 15, B13): a cancelled HTTP step gives back its
# concurrency slot at once.  With tasker.http_max_concurrency = 1, a step
# that hangs on the stub holds the only slot; cancelling its task (or the
# step itself) must abort the transfer so that another task's HTTP step
# runs, instead of waiting for the hanging request's timeout.  Also: a huge
# timeout_seconds is bounded, so the lease of the request never overflows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use Time::HiRes qw(sleep);

my $tree = $ENV{TASKER_TREE};

# The stub, on a free port of 127.0.0.1 (as in test/tap/030_http.pl).
my $portfile = PostgreSQL::Test::Utils::tempdir() . '/stub.port';
my $stub = IPC::Run::start([ 'python3', "$tree/test/http_stub.py", $portfile ],
	'>', '/dev/null', '2>', '/dev/null');
for (1 .. 100) { last if -s $portfile; sleep 0.1; }
END { local $?; $stub->kill_kill if $stub; }
my $port = PostgreSQL::Test::Utils::slurp_file($portfile);
my $base = "http://127.0.0.1:$port";
ok($port =~ /^\d+$/, "the stub listens on 127.0.0.1:$port");

my $node = PostgreSQL::Test::Cluster->new('http_cancel');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.http_max_concurrency = 1
log_min_messages = log
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors are up');

my $ntemplates = 0;

# task(step_yaml): register a template of one step and create a task.
sub task
{
	my ($step) = @_;
	my $name = 'cancel_t' . ++$ntemplates;
	$node->safe_psql('postgres',
		"SELECT tasker_register_template(\$y\$\nname: $name\nstep_templates:\n$step\n\$y\$)");
	return $node->safe_psql('postgres', "SELECT tasker_create_task('$name', '{}')");
}

# hanging_task: a task whose one step waits an hour on the stub, with an
# hour's timeout; returns (task, step) once the request is in flight.
sub hanging_task
{
	my $t = task("  - {name: hang, handler_config: {type: api, url: '$base/delay/3600',"
		  . " method: GET, timeout: 3600}}\n");
	ok($node->poll_query_until('postgres',
			"SELECT current_state = 'in_progress' FROM tasker_workflow_steps WHERE task_id = $t"),
		"the hanging step of task $t is in flight");
	return ($t, $node->safe_psql('postgres',
			"SELECT workflow_step_id FROM tasker_workflow_steps WHERE task_id = $t"));
}

# quick_task_completes: with the only slot taken before, a task of one
# quick GET step must complete.
sub quick_task_completes
{
	my ($what) = @_;
	my $t = task("  - {name: quick, handler_config: {type: api, url: '$base/json', method: GET}}\n");
	ok($node->poll_query_until('postgres',
			"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $t"),
		"after $what, another task's HTTP step gets the slot and completes");
}

# ---- cancelling the task
my ($t1, $s1) = hanging_task();
is($node->safe_psql('postgres', "SELECT tasker_cancel_task($t1, 'test')"), 't',
	'the task of the hanging step is cancelled');
quick_task_completes('cancelling a task');
is($node->safe_psql('postgres',
		"SELECT current_state FROM tasker_workflow_steps WHERE workflow_step_id = $s1"),
	'cancelled', "the in-flight step of a cancelled task is cancelled");
is($node->safe_psql('postgres',
		"SELECT attempts FROM tasker_workflow_steps WHERE workflow_step_id = $s1"),
	'1', 'the aborted request is not sent again');

# ---- cancelling the step
my ($t2, $s2) = hanging_task();
is($node->safe_psql('postgres', "SELECT tasker_cancel_step($s2)"), 't',
	'the hanging step is cancelled');
quick_task_completes('cancelling a step');
is($node->safe_psql('postgres', "SELECT current_state FROM tasker_tasks WHERE task_id = $t2"),
	'error', 'the task of the cancelled step, with nothing left to run, is in error');

# ---- a huge timeout_seconds (registration refuses it now, so it is
# written as a template from before that check would have it): the lease
# stays in range
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.http_max_concurrency = 4; SELECT pg_reload_conf()');
$node->safe_psql('postgres', qq{SELECT tasker_register_template(\$y\$
name: huge_timeout
step_templates:
  - {name: slow, timeout_seconds: 60, handler_config: {type: api, url: '$base/delay/2', method: GET}}
\$y\$);
	UPDATE tasker_named_tasks_named_steps SET timeout_seconds = 2147483647
	 WHERE named_task_id = (SELECT named_task_id FROM tasker_named_tasks WHERE name = 'huge_timeout')});
my $t3 = $node->safe_psql('postgres', "SELECT tasker_create_task('huge_timeout', '{}')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'in_progress' FROM tasker_workflow_steps WHERE task_id = $t3"),
	'a step with timeout_seconds 2147483647 is in flight');
is($node->safe_psql('postgres', qq{
	SELECT lease_expires_at > now() AND lease_expires_at < now() + interval '1 day 1 hour'
	  FROM tasker_workflow_steps WHERE task_id = $t3}),
	't', 'its lease is bounded by the one-day limit of a request, and not in the past');
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($t3, '60 seconds')"), 'complete',
	'the step completes');
is($node->safe_psql('postgres', "SELECT attempts FROM tasker_workflow_steps WHERE task_id = $t3"),
	'1', 'in one attempt (its lease was not reclaimed while it ran)');

$node->stop;
done_testing();
