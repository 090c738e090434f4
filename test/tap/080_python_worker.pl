# 080_python_worker.pl: the reference Python worker (clients/python,
# python3 -m tasker_worker) against a cluster with tasker preloaded: its
# unit tests, a diamond of worker steps, retryable, delayed and permanent
# errors, SIGKILL mid-handler (the lease brings the step back to another
# process), heartbeats past the lease, SIGTERM (in-flight steps finish,
# queued ones are released, exit 0), a grace period that runs out, a
# completion after the lease was lost (TK003), and a server restart under
# running workers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time sleep);

my $tree = $ENV{TASKER_TREE};
my $python = '/usr/bin/python3';
if (system($python, '-c', 'import psycopg') != 0)
{
	plan skip_all => 'python3-psycopg is not installed';
}
$ENV{PYTHONPATH} = "$tree/clients/python:$tree/test/fixtures";
$ENV{PYTHONDONTWRITEBYTECODE} = '1';
my $dir = PostgreSQL::Test::Utils::tempdir();
my $starts = "$dir/starts.log";
$ENV{PYW_LOG} = $starts;

# ---- the unit tests, no server needed
my ($uout, $uerr) = ('', '');
IPC::Run::run([ $python, '-m', 'unittest', 'discover', '-s', "$tree/clients/python/tests" ],
	'>', \$uout, '2>', \$uerr);
like($uerr, qr/^OK$/m, 'the pure-Python unit tests pass') or diag($uerr);

my $node = PostgreSQL::Test::Cluster->new('pyworker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 1
log_min_messages = log
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors are up');

my %procs;
my $nworkers = 0;

# pyworker(queue, options...): start python3 -m tasker_worker on a queue;
# returns its name (its log is $dir/NAME.log).
sub pyworker
{
	my ($queue, @opt) = @_;
	my $name = "w" . ++$nworkers . "_$queue";
	$procs{$name} = IPC::Run::start(
		[ $python, '-m', 'tasker_worker', '--dsn', $node->connstr('postgres'),
		  '--queue', $queue, '--module', 'pyworker_handlers', '--worker-id', $name, @opt ],
		'<', \undef, '>', "$dir/$name.log", '2>&1');
	return $name;
}

sub pid_of { return $procs{ $_[0] }->{KIDS}[0]{PID}; }

sub wlog { return -e "$dir/$_[0].log" ? slurp_file("$dir/$_[0].log") : ''; }

# exited(name, seconds): the exit status ($? style) once the process
# has exited, undef if it is still running after that long.
sub exited
{
	my ($name, $secs) = @_;
	my $pid = pid_of($name);
	my $t0 = time;
	while (time - $t0 < $secs)
	{
		my $stat = -e "/proc/$pid/stat" ? slurp_file("/proc/$pid/stat") : '';
		if ($stat eq '' || $stat =~ /^\d+ \(.*\) Z /)
		{
			$procs{$name}->finish;
			return $procs{$name}->full_result(0);
		}
		sleep 0.05;
	}
	return undef;
}

END
{
	for my $h (values %procs) { $h->kill_kill if $h && $h->pumpable; }
	for my $h (values %procs) { eval { kill 'KILL', $h->{KIDS}[0]{PID} }; }
}

# starts_of(step_id): the "start PID NAME ID ATTEMPT" lines of a step.
sub starts_of
{
	my ($step) = @_;
	my $text = -e $starts ? slurp_file($starts) : '';
	return grep { (split / /)[3] == $step } split /\n/, $text;
}

sub wait_starts
{
	my ($step, $n) = @_;
	for (1 .. 300)
	{
		return 1 if starts_of($step) >= $n;
		sleep 0.1;
	}
	return 0;
}

my $ntemplates = 0;

# task(steps_yaml, context_json): register a template with these steps,
# create a task and return its id.
sub task
{
	my ($steps, $context) = @_;
	my $name = 'py_t' . ++$ntemplates;
	$node->safe_psql('postgres',
		"SELECT tasker_register_template(\$y\$\nname: $name\nstep_templates:\n$steps\n\$y\$)");
	return $node->safe_psql('postgres',
		"SELECT tasker_create_task('$name', '" . ($context // '{}') . "')");
}

sub wait_task
{
	my ($task, $secs) = @_;
	return $node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '" . ($secs // 60) . " seconds')");
}

sub step
{
	my ($task, $name, $expr) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT $expr FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
		 WHERE s.task_id = $task AND n.name = '$name'});
}

# ---- happy path: a diamond of worker steps, two tasks, one worker process
my $main = pyworker('pyq', '--concurrency', '4');
my $diamond = "  - {name: a, handler_class: PyDiamond, handler_config: {type: worker, queue: pyq}}\n"
  . "  - {name: b, handler_class: PyDiamond, handler_config: {type: worker, queue: pyq}, depends_on_step: a}\n"
  . "  - {name: c, handler_class: PyDiamond, handler_config: {type: worker, queue: pyq}, depends_on_step: a}\n"
  . "  - {name: d, handler_class: PyDiamond, handler_config: {type: worker, queue: pyq}, depends_on_steps: [b, c]}\n";
my $t1 = task($diamond, '{"n": 10}');
my $t2 = $node->safe_psql('postgres', "SELECT tasker_create_task('py_t1', '{\"n\": 100}')");
is(wait_task($t1), 'complete', 'a diamond of Python steps completes');
is(wait_task($t2), 'complete', 'and a second task of it');
is(step($t1, 'a', "s.results->>'total'"), '11', 'a saw the context (10 + 1)');
is(step($t1, 'd', "s.results->>'total'"), '55', 'd summed the context and both parents (10 + 22 + 22 + 1)');
is(step($t1, 'd', "s.results->'parents'"), '["b", "c"]', 'd got exactly its parents\' results as dependencies');
is(step($t2, 'd', "s.results->>'total'"), '505', 'the second task kept its own context');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(DISTINCT s.attempts::text || '/' || s.current_state, ',')
	  FROM tasker_workflow_steps s WHERE s.task_id IN ($t1, $t2)}),
	'1/complete', 'every step completed on its first attempt');
is($node->safe_psql('postgres', qq{
	SELECT count(DISTINCT s.results->>'pid') FROM tasker_workflow_steps s WHERE s.task_id IN ($t1, $t2)}),
	'1', 'one worker process ran them');

# ---- retryable, delayed and permanent errors
my $t = task("  - {name: flaky, handler_config: {type: worker, queue: pyq}, default_retry_limit: 3}\n"
	  . "  - {name: later, handler_config: {type: worker, queue: pyq}}\n"
	  . "  - {name: declined, handler_config: {type: worker, queue: pyq}, default_retry_limit: 5}\n");
is(wait_task($t), 'error', 'a task with a permanently failed Python step ends in error');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(n.name || '|' || s.current_state || '|' || s.attempts, ',' ORDER BY n.name)
	  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id) WHERE s.task_id = $t}),
	'declined|error|1,flaky|complete|3,later|complete|2',
	'flaky succeeded on attempt 3, later (RetryError) on 2, declined stopped after 1');
is(step($t, 'flaky', "s.results->>'attempt'"), '3', 'the handler saw the attempt number');
my $declined = step($t, 'declined', 's.results::text');
like($declined, qr/card declined/, 'the permanent error\'s message is stored');
like($declined, qr/tasker_worker.errors.PermanentError/, 'with the exception\'s class');
like($declined, qr/"code": 51/, 'and the details the handler gave');
my $later_gap = $node->safe_psql('postgres', qq{
	SELECT extract(epoch FROM max(t.created_at) FILTER (WHERE t.to_state = 'in_progress')
	                         - min(t.created_at) FILTER (WHERE t.to_state = 'error'))
	  FROM tasker_workflow_step_transitions t JOIN tasker_workflow_steps s USING (workflow_step_id)
	  JOIN tasker_named_steps n USING (named_step_id) WHERE s.task_id = $t AND n.name = 'later'});
cmp_ok($later_gap, '>=', 0.9, "RetryError(after=1) was honoured ($later_gap s)");

# ---- a completion after the lease was lost is refused (TK003), at the SQL level
$t = task("  - {name: orphan, handler_config: {type: worker, queue: nobody}}\n");
my ($sid, $tok) = split /\|/, $node->safe_psql('postgres',
	"SELECT step_id, claim_token FROM tasker_claim_steps('nobody', 'sql-test', 1, '1 second')");
ok($sid && $tok, 'a step claimed by hand with a 1 s lease');
ok($node->poll_query_until('postgres',
		"SELECT claim_token IS DISTINCT FROM '$tok' OR current_state <> 'in_progress' FROM tasker_workflow_steps WHERE workflow_step_id = $sid"),
	'the lease expires and tasker reclaims the step');
my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT tasker_complete_step($sid, '$tok', '{\"late\": true}')");
like($err, qr/TK003/, 'completing with the lost claim raises TK003');
is($node->safe_psql('postgres', "SELECT tasker_complete_steps('[{\"step_id\": $sid, \"claim_token\": \"$tok\", \"results\": {}}]')"),
	'0', 'tasker_complete_steps skips the lost claim');
$node->safe_psql('postgres', "SELECT tasker_cancel_task($t)");

# ---- SIGKILL mid-handler: the step comes back after its lease and
# completes on another process, its lost attempt counted
my $victim = pyworker('killq', '--lease', '2');
$t = task("  - {name: slow, handler_config: {type: worker, queue: killq, sleep_first: 120}}\n");
my $slow = step($t, 'slow', 's.workflow_step_id');
ok(wait_starts($slow, 1), 'the first process started the step');
sleep 2.5;    # past one lease: only heartbeats keep it
is(step($t, 'slow', 's.current_state || s.attempts'), 'in_progress1',
	'heartbeats keep a handler running past its 2 s lease');
kill 'KILL', pid_of($victim);
isnt(exited($victim, 10), undef, 'the first process is killed');
my $rescuer = pyworker('killq', '--lease', '2');
is(wait_task($t), 'complete', 'the task completes after the lease expires');
is(step($t, 'slow', 's.attempts'), '2', 'the killed attempt was counted');
is(step($t, 'slow', "s.results->>'pid'"), pid_of($rescuer), 'the second process ran it');
is(join(',', map { (split / /)[4] } starts_of($slow)), '1,2', 'attempt 1 on the first process, 2 on the second');
kill 'TERM', pid_of($rescuer);
is(exited($rescuer, 30), 0, 'the second process exits 0 on SIGTERM');

# ---- SIGTERM: two steps running, two queued; the running finish, the
# queued are released, nothing stays in_progress, exit 0
my $four = join '', map { "  - {name: s$_, handler_class: Slow, handler_config: {type: worker, queue: termq, sleep_first: 2, sleep: 0}}\n" } 1 .. 4;
$t = task($four);
my $term = pyworker('termq', '--concurrency', '2', '--prefetch', '2');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 4 FROM tasker_workflow_steps WHERE task_id = $t AND current_state = 'in_progress'"),
	'the worker holds four steps');
my @ids = map { step($t, "s$_", 's.workflow_step_id') } 1 .. 4;
my $started = sub { scalar grep { starts_of($_) } @ids };
for (1 .. 100) { last if $started->() >= 2; sleep 0.1; }
is($started->(), 2, 'two handlers run, two steps wait in the queue');
kill 'TERM', pid_of($term);
is(exited($term, 30), 0, 'SIGTERM: the process exits 0');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_workflow_steps WHERE task_id = $t AND current_state = 'in_progress'"),
	'0', 'nothing is left in_progress');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_workflow_steps WHERE task_id = $t AND current_state = 'complete'"),
	'2', 'the two running steps completed');
like(wlog($term), qr/stopped/, 'the worker logged its stop');
my $after = pyworker('termq');
is(wait_task($t), 'complete', 'another worker runs the released steps');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT attempts::text, ',') FROM tasker_workflow_steps WHERE task_id = $t"),
	'1', 'each step ran once: releasing did not count an attempt');
kill 'TERM', pid_of($after);
is(exited($after, 30), 0, 'and it exits 0 too');

# ---- SIGTERM with a handler that outlasts the grace period: released
my $hold = "$dir/hold";
$ENV{PYW_HOLD} = $hold;
append_to_file($hold, '');
$t = task("  - {name: slow, handler_config: {type: worker, queue: graceq, hold: true}}\n");
$slow = step($t, 'slow', 's.workflow_step_id');
my $grace = pyworker('graceq', '--grace', '1');
ok(wait_starts($slow, 1), 'a long handler started');
kill 'TERM', pid_of($grace);
is(exited($grace, 30), 0, 'SIGTERM past the grace period: exit 0, without waiting for the handler');
is(step($t, 'slow', 's.current_state'), 'pending', 'the unfinished step was released, ready again');
like(wlog($grace), qr/still running after the grace period/, 'the worker said so');
unlink $hold;
my $grace2 = pyworker('graceq');
is(wait_task($t), 'complete', 'another worker completes it');
kill 'TERM', pid_of($grace2);
is(exited($grace2, 30), 0, 'and exits 0');

# ---- server restart while workers run: they reconnect, tasks finish
my $chain = "  - {name: pulse1, handler_class: Pulse, handler_config: {type: worker, queue: pyq, sleep: 0.2}}\n";
$chain .= "  - {name: pulse$_, handler_class: Pulse, handler_config: {type: worker, queue: pyq, sleep: 0.2}, depends_on_step: pulse" . ($_ - 1) . "}\n"
  for 2 .. 4;
$t = task($chain);
my $second = pyworker('pyq', '--concurrency', '2');
$node->safe_psql('postgres', "SELECT tasker_create_task('py_t$ntemplates', jsonb_build_object('i', i)) FROM generate_series(1, 7) i");
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 4 FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id) WHERE n.name LIKE 'pulse%' AND s.current_state = 'complete'"),
	'the chains are under way');
$node->restart;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
	 WHERE n.name LIKE 'pulse%' AND s.current_state <> 'complete'}),
	'after the restart every chain completes');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT s.results->>'n', ',') FROM tasker_workflow_steps s
	  JOIN tasker_named_steps n USING (named_step_id) WHERE n.name = 'pulse4'}),
	'4', 'each chain\'s last step saw the whole chain');
ok(!defined exited($main, 0.1) && !defined exited($second, 0.1), 'both workers survived the restart');
like(wlog($main) . wlog($second), qr/reconnect/, 'and reconnected');

# ---- the workers stop cleanly at the end
for my $w ($main, $second)
{
	kill 'TERM', pid_of($w);
	is(exited($w, 30), 0, "$w exits 0 on SIGTERM");
}
unlike(join('', map { wlog($_) } sort keys %procs), qr/Traceback/,
	'no worker crashed with an unexpected traceback');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_workflow_steps WHERE current_state = 'in_progress'"),
	'0', 'no step is left in_progress');

$node->stop;
done_testing();
