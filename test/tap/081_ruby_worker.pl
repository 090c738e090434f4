# 081_ruby_worker.pl: the reference Ruby worker (clients/ruby) runs steps
# of external-worker queues: the Ruby guide's order-processing workflow
# (examples/ruby_migration) end to end; retryable errors, retry_after and
# permanent errors; heartbeats for a handler that outlives its lease; a
# SIGKILLed worker's step reclaimed and finished by another process;
# SIGTERM letting running steps finish and releasing the rest, within
# and past the grace period; and a server restart under running workers.
#
# The workers are `ruby clients/ruby/bin/tasker-worker` subprocesses; the
# handler classes are examples/ruby_migration/handlers.rb and
# test/fixtures/ruby_handlers.rb.  Skipped when ruby or ruby-pg is missing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time sleep);

my $tree = $ENV{TASKER_TREE};
my $source = $ENV{TASKER_SOURCE} // $tree;
if (system('ruby', '-e', 'require "pg"') != 0)
{
	plan skip_all => 'ruby and ruby-pg are not installed';
}

my $node = PostgreSQL::Test::Cluster->new('rbworker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 5
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $fixtures = "$tree/test/fixtures/ruby_handlers.rb";
my $nworkers = 0;
my @all_workers;

# start_worker(queue, require, args...): a tasker-worker subprocess;
# returns { h => harness, log => file, id => worker_id, pid => pid }.
sub start_worker
{
	my ($queue, $require, @args) = @_;
	my $n = ++$nworkers;
	my $w = { log => "$tmp/worker$n.log", id => "w$n" };
	$w->{h} = IPC::Run::start(
		[ 'ruby', "$tree/clients/ruby/bin/tasker-worker",
		  '--dsn', $node->connstr('postgres'), '--queue', $queue,
		  '--require', $require, '--worker-id', $w->{id}, '--wait', '2', @args ],
		'<', '/dev/null', '>', $w->{log}, '2>&1', IPC::Run::timeout(600));
	$w->{pid} = $w->{h}->{KIDS}->[0]->{PID};
	push @all_workers, $w;
	return $w;
}

END { for my $w (@all_workers) { eval { $w->{h}->kill_kill if $w->{h}->pumpable }; } }

# stop_worker(w, signal): signal it and wait for it to exit; returns its
# exit status (or "signal N") and the seconds it took.
sub stop_worker
{
	my ($w, $sig) = @_;
	my $t0 = time;
	$w->{h}->signal($sig // 'TERM');
	eval { $w->{h}->finish };
	my $status = $w->{h}->full_result(0) // -1;
	return (($status & 127) ? 'signal ' . ($status & 127) : $status >> 8, time - $t0);
}

sub worker_log
{
	my ($w) = @_;
	return -e $w->{log} ? PostgreSQL::Test::Utils::slurp_file($w->{log}) : '';
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

# register(name, queue, steps_yaml): map each handler class of the steps
# to the queue and register the template.
sub register
{
	my ($name, $queue, $steps) = @_;
	my %classes = map { $_ => 1 } $steps =~ /handler_class: (\w+)/g;
	sql("SELECT tasker_register_handler('$_', '$queue')") for sort keys %classes;
	sql("SELECT tasker_register_template(\$y\$\nname: $name\nstep_templates:\n$steps\$y\$)");
}

sub create { return sql("SELECT tasker_create_task('$_[0]', '$_[1]'::jsonb)"); }
sub wait_task { return sql("SELECT tasker_wait_for_task($_[0], '$_[1] seconds')"); }

# step(task, name, expr): an expression over the step row s.
sub step
{
	my ($task, $name, $expr) = @_;
	return sql(qq{
		SELECT $expr FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
		 WHERE s.task_id = $task AND n.name = '$name'});
}

# ---- the Ruby guide's order-processing workflow -------------------------

my $example = "$tree/examples/ruby_migration";
my $yaml = PostgreSQL::Test::Utils::slurp_file("$example/order_process.yaml");

# The template is the guide's, but for the declared custom events.
SKIP:
{
	my $guide = "$source/../shared/reference/ruby-tasker-developer-guide.md";
	skip 'the Ruby guide is not beside the clone', 1 unless -f $guide;
	my ($block) = PostgreSQL::Test::Utils::slurp_file($guide)
	  =~ /### Task Handler YAML Structure\s*```yaml\n(.*?)```/s;
	my $ours = $yaml;
	$ours =~ s/\A(#[^\n]*\n)+//;                                 # our header
	$ours =~ s/^    custom_events:\n(      [- ] [^\n]*\n)+//m;    # the addition
	$block =~ s/\A#[^\n]*\n//;                                    # the guide's file name
	is($ours, $block, 'order_process.yaml is the guide\'s template plus custom_events');
}

$node->safe_psql('postgres', "\\i $example/handlers.sql");
sql("SELECT tasker_register_template(\$y\$$yaml\$y\$)");
is(sql("SELECT string_agg(handler_class || '=' || queue, ',' ORDER BY handler_class)
        FROM tasker_handler_registry WHERE queue IS NOT NULL"),
	join(',', map { "OrderProcess::StepHandler::$_=orders" }
		qw(FetchOrderHandler ProcessPaymentHandler SendConfirmationHandler
		   UpdateInventoryHandler ValidateInventoryHandler)),
	'handlers.sql maps the five handler classes to the queue orders');

my $t7 = sql(q{SELECT tasker_create_task('order_process', '{"order_id": 7, "customer_id": 42}', namespace => 'payments')});
my $t9 = sql(q{SELECT tasker_create_task('order_process', '{"order_id": 9, "customer_id": 44}', namespace => 'payments')});

# A LISTEN client that ends when both tasks have; then prints what it heard.
my ($listen_out, $listen_err) = ('', '');
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'),
	  '-c', 'LISTEN tasker_events',
	  '-c', "SELECT tasker_wait_for_task($t7, '90 seconds')",
	  '-c', "SELECT tasker_wait_for_task($t9, '90 seconds')",
	  '-c', 'SELECT pg_sleep(1)', '-c', 'SELECT 1' ],
	'>', \$listen_out, '2>', \$listen_err, IPC::Run::timeout(120));
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT tasker_wait_for_task($t7,%'")
  or die 'the listener did not start';

my $orders = start_worker('orders', "$example/handlers.rb", '--threads', '2');
is(wait_task($t7, 60), 'complete', 'order 7 runs to completion on the Ruby worker');
is(wait_task($t9, 60), 'error', 'order 9 (held for review) ends in error');
$listener->finish;

is(step($t7, 'fetch_order', "s.results->>'total'"), '29.97', 'fetch_order found the order and its total');
is(step($t7, 'validate_inventory', "s.results #>> '{items,0,available}'"), '100',
	'validate_inventory read its parent\'s items and checked stock');
is(step($t7, 'process_payment', "s.attempts || ' ' || (s.results->>'status')"), '2 completed',
	'process_payment timed out once (RetryableError) and was charged on attempt 2');
like(step($t7, 'process_payment', "s.results->>'transaction_id'"), qr/^txn_[0-9a-f]{16}$/,
	'the charge has a transaction id');
is(step($t7, 'update_inventory', "s.results #>> '{updates,0,on_hand}'"), '97',
	'update_inventory took 3 widgets out of 100');
like(step($t7, 'send_confirmation', "s.results->>'subject' || ': ' || (s.results->>'body')"),
	qr/^Order 7 confirmed: 3 x widget; payment txn_[0-9a-f]{16}$/,
	'send_confirmation set step.results itself, read by the worker');
is(sql(qq{SELECT string_agg(current_state || ':' || attempts, ',' ORDER BY workflow_step_id)
          FROM tasker_workflow_steps WHERE task_id = $t7}),
	'complete:1,complete:1,complete:2,complete:1,complete:1', 'every step of order 7 is complete');
like(sql(qq{SELECT t.metadata::text FROM tasker_workflow_step_transitions t
            JOIN tasker_workflow_steps s USING (workflow_step_id)
            JOIN tasker_named_steps n USING (named_step_id)
           WHERE s.task_id = $t7 AND n.name = 'process_payment' AND t.to_state = 'error'}),
	qr/payment gateway timed out charging 29\.97 for order 7/,
	'the timed-out attempt is in the step\'s history with its message');

is(step($t9, 'process_payment', "s.current_state || ' ' || (s.results->>'status')"), 'complete risk_review',
	'order 9 was flagged for review');
is(step($t9, 'update_inventory', "s.current_state || ' ' || s.attempts"), 'error 1',
	'update_inventory failed for good on its first attempt (PermanentError)');
like(step($t9, 'update_inventory', 's.results::text'),
	qr/payment for order 9 is risk_review, not completed/, 'the permanent error\'s message is stored');
is(step($t9, 'send_confirmation', 's.current_state'), 'pending', 'its dependent never ran');

my @events = map { /payload "(.*)" received/ ? $1 : () } split /\n/, $listen_out;
my ($processed) = grep { /"event":"payment\.processed"/ } @events;
like($processed // '', qr/"task_id":$t7,"step_id":\d+,"step_name":"process_payment".*"payload":\{.*"order_id": 7.*"transaction_id": "txn_/,
	'publish_custom_event sent payment.processed about the step, with its payload')
  or diag("listener: $listen_out $listen_err");
ok((grep { /"event":"payment\.risk_flagged".*"task_id":$t9/ } @events),
	'and payment.risk_flagged for order 9');

# ---- failures: retryable, retry_after, permanent ------------------------

my $rb = start_worker('rbtest', $fixtures, '--threads', '4');
register('rb_retry', 'rbtest', "  - {name: flaky, handler_class: FlakyHandler, default_retry_limit: 3}\n"
	  . "  - {name: later, handler_class: LaterHandler}\n");
register('rb_refuse', 'rbtest', "  - {name: refuse, handler_class: RefuseHandler, default_retry_limit: 5}\n");
my $tr = create('rb_retry', '{}');
my $tf = create('rb_refuse', '{}');
is(wait_task($tr, 60), 'complete', 'a task of failing-then-passing Ruby steps completes');
is(step($tr, 'flaky', "s.attempts || ' ' || (s.results->>'attempt')"), '3 3',
	'a plain exception is retried: flaky succeeded on attempt 3, and knew it');
is(step($tr, 'later', 's.attempts'), '2', 'RetryableError: later succeeded on attempt 2');
my $gap = step($tr, 'later', q{
	(SELECT extract(epoch FROM min(b.created_at) - max(a.created_at))
	   FROM tasker_workflow_step_transitions a, tasker_workflow_step_transitions b
	  WHERE a.workflow_step_id = s.workflow_step_id AND a.to_state = 'error'
	    AND b.workflow_step_id = s.workflow_step_id AND b.to_state = 'in_progress'
	    AND b.sort_key > a.sort_key)});
cmp_ok($gap, '>=', 3, "retry_after: 3 was honoured: the next attempt began ${gap}s after the failure");
is(wait_task($tf, 30), 'error', 'a PermanentError puts the task in error');
is(step($tf, 'refuse', "s.current_state || ' ' || s.attempts"), 'error 1',
	'the step is not retried although its retry limit is 5');
is(step($tf, 'refuse', "concat_ws(' ', s.results #>> '{error,message}', s.results #>> '{error,class}',
                                    s.results #>> '{error,error_code}', s.results #>> '{error,sqlstate}')"),
	'card declined Tasker::PermanentError DECLINED TK001', 'its message, class and error_code are stored');

# ---- least privilege: a role with EXECUTE on the protocol only ---------

sql(q{CREATE ROLE rb_least LOGIN;
	GRANT EXECUTE ON FUNCTION
	    tasker_claim_steps(text, text, integer, interval, interval),
	    tasker_complete_step(bigint, uuid, jsonb), tasker_complete_steps(jsonb),
	    tasker_fail_step(bigint, uuid, jsonb, boolean, interval),
	    tasker_extend_lease(bigint, uuid, interval), tasker_release_step(bigint, uuid),
	    tasker_publish_event(text, jsonb), tasker_publish_event(text, jsonb, bigint, bigint)
	  TO rb_least});
sql(q{SELECT tasker_register_template($y$
name: rb_announce
custom_events:
  - {name: rb.announced, description: A Ruby step announced itself}
step_templates:
  - {name: announce, handler_class: AnnounceHandler, handler_config: {type: worker, queue: rbleast}}
  - {name: then, handler_class: FlakyHandler, depends_on_step: announce, default_retry_limit: 3,
     handler_config: {type: worker, queue: rbleast}}
$y$)});
my $least = start_worker('rbleast', $fixtures, '--dsn', $node->connstr('postgres') . ' user=rb_least');
my $ta = create('rb_announce', '{}');
is(wait_task($ta, 60), 'complete',
	'a worker whose role may only EXECUTE the protocol runs a task (queue named by handler_config)');
is(step($ta, 'announce', "s.claimed_by || ' ' || (s.results->>'announced')"), "$least->{id} true",
	'it published its custom event');
like(worker_log($least), qr/custom events are sent without their task and step: permission denied to publish an event about task $ta/,
	'naming the task was refused, and the worker said it sends events without it');
is((stop_worker($least))[0], 0, 'the least-privileged worker exits 0');

# ---- heartbeats: a handler that outlives its lease keeps it -------------

my $hb = start_worker('rbslow', $fixtures, '--threads', '1', '--lease', '2');
register('rb_slow', 'rbslow', "  - {name: nap, handler_class: SleepyHandler}\n");
my $ts = create('rb_slow', '{"sleep": 5}');
is(wait_task($ts, 60), 'complete', 'a 5 s step under a 2 s lease completes');
is(step($ts, 'nap', "s.attempts || ' ' || (s.results->>'pid')"), "1 $hb->{pid}",
	'on its first attempt: the heartbeats kept the lease');
is((stop_worker($hb))[0], 0, 'the worker exits 0 on SIGTERM');

# ---- SIGKILL mid-handler: reclaimed after the lease, done elsewhere ----

register('rb_kill', 'rbkill', "  - {name: nap, handler_class: SleepyHandler}\n");
my $doomed = start_worker('rbkill', $fixtures, '--threads', '1', '--lease', '2');
my $tk = create('rb_kill', '{"sleep": 60, "first_only": true}');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM tasker_workflow_steps
	 WHERE task_id = $tk AND current_state = 'in_progress' AND claimed_by = '$doomed->{id}'}),
	'the first worker claimed the step');
sleep 0.5;
stop_worker($doomed, 'KILL');
my $heir = start_worker('rbkill', $fixtures, '--threads', '1', '--lease', '2');
is(wait_task($tk, 60), 'complete', 'after a SIGKILL the step completes');
is(step($tk, 'nap', "s.attempts || ' ' || s.claimed_by || ' ' || (s.results->>'pid')"),
	"2 $heir->{id} $heir->{pid}", 'on attempt 2, in the other worker process');
is((stop_worker($heir))[0], 0, 'the other worker exits 0');

# ---- SIGTERM: running steps finish, queued ones are released ------------

register('rb_term', 'rbterm', "  - {name: nap, handler_class: SleepyHandler}\n");
my @tt = map { create('rb_term', '{"sleep": 3}') } 1 .. 6;
my $ids = join(',', @tt);
my $term = start_worker('rbterm', $fixtures, '--threads', '2', '--prefetch', '2', '--grace', '20');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 4 FROM tasker_workflow_steps
	 WHERE task_id IN ($ids) AND current_state = 'in_progress' AND claimed_by = '$term->{id}'}),
	'the worker holds 4 steps: 2 running, 2 claimed ahead');
sleep 0.5;
my ($rc, $took) = stop_worker($term, 'TERM');
is($rc, 0, "on SIGTERM the worker exits 0 (after ${took}s)");
is(sql("SELECT string_agg(current_state || ':' || attempts, ',' ORDER BY current_state) FROM
       (SELECT current_state, count(*) AS attempts FROM tasker_workflow_steps
         WHERE task_id IN ($ids) GROUP BY 1) x"),
	'complete:2,pending:4', 'the 2 running steps finished, the 2 claimed ahead were released, none is in progress');
like(worker_log($term), qr/stopped \(4 claimed, 2 completed, 0 failed, 2 released, 0 lost\)/,
	'the worker says so as it stops');
my $finisher = start_worker('rbterm', $fixtures, '--threads', '4');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 6 FROM tasker_tasks WHERE task_id IN ($ids) AND current_state = 'complete'}),
	'another worker finishes the rest');
is(sql("SELECT max(attempts) FROM tasker_workflow_steps WHERE task_id IN ($ids)"), '1',
	'a released step\'s attempt was not counted');

# Past the grace period, a step still running is released.
is((stop_worker($finisher))[0], 0, 'that worker exits 0 too');
my $tg = create('rb_term', '{"sleep": 30}');
my $short = start_worker('rbterm', $fixtures, '--threads', '1', '--grace', '1');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM tasker_workflow_steps
	 WHERE task_id = $tg AND current_state = 'in_progress' AND claimed_by = '$short->{id}'}),
	'a worker with a 1 s grace period runs a 30 s step');
sleep 0.5;
($rc, $took) = stop_worker($short, 'TERM');
ok($rc == 0 && $took < 10, "it exits 0 soon after SIGTERM (${took}s)");
is(step($tg, 'nap', "s.current_state || ' ' || s.attempts"), 'pending 0',
	'the step it could not finish in time was released, its attempt not counted');
like(worker_log($short), qr/1 released/, 'the worker says it released one step');

# ---- a server restart under running workers -----------------------------

register('rb_chain', 'rbchain', "  - {name: a, handler_class: SleepyHandler}\n"
	  . "  - {name: b, handler_class: SleepyHandler, depends_on_step: a}\n"
	  . "  - {name: c, handler_class: SleepyHandler, depends_on_step: b}\n");
my @chain = (start_worker('rbchain', $fixtures, '--threads', '4', '--lease', '5'),
	start_worker('rbchain', $fixtures, '--threads', '4', '--lease', '5'));
sql(q{SELECT count(tasker_create_task('rb_chain', '{"sleep": 0.2}')) FROM generate_series(1, 40)});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 20 FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
	  JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'rb_chain' AND s.current_state = 'complete'}),
	'the workers are running the chains');
$node->restart;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 40 FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'rb_chain' AND t.current_state = 'complete'}),
	'after a server restart the workers reconnect and all 40 tasks complete');
is(sql(q{SELECT count(*) FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
         JOIN tasker_named_tasks nt USING (named_task_id)
        WHERE nt.name = 'rb_chain' AND s.results->>'parent_pid' IS NULL AND s.workflow_step_id <> (
              SELECT min(workflow_step_id) FROM tasker_workflow_steps WHERE task_id = s.task_id)}),
	'0', 'each chained step saw its parent\'s results');
for my $w (@chain)
{
	like(worker_log($w), qr/reconnected/, "worker $w->{id} logged its reconnection");
	is((stop_worker($w))[0], 0, "worker $w->{id} exits 0");
}
for my $w ($orders, $rb)
{
	is((stop_worker($w))[0], 0, "worker $w->{id} exits 0");
}
unlike(join('', map { worker_log($_) } @all_workers), qr/ERROR/,
	'no worker logged an error');

# On failure, show what the workers said.
if (!Test::More->builder->is_passing)
{
	diag("--- $_->{log}\n" . worker_log($_)) for @all_workers;
}

done_testing();
