# 010_worker.pl: the background workers run tasks end to end: the Ruby
# engine's five workflow shapes, retries with their spacing, permanent
# errors, retry-after, controls, custom events, and a LISTEN client that
# hears every event of a run in order.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 4
});
$node->start;

my $fixtures = "$ENV{TASKER_TREE}/test/fixtures";
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', "\\i $fixtures/shapes.sql");

# The launcher and both executors are up and visible.
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors report idle');
ok($node->poll_query_until('postgres',
		"SELECT string_agg(DISTINCT backend_type, ',' ORDER BY backend_type) FROM pg_stat_activity WHERE backend_type LIKE 'tasker%'",
		'tasker event worker,tasker launcher,tasker worker'),
	'workers show in pg_stat_activity with their backend_type (the relay connects later)');

# A LISTEN client, started before any task: it prints what it heard when
# its pg_sleep ends.
my ($listen_out, $listen_err) = ('', '');
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'),
	  '-c', 'LISTEN tasker_events', '-c', 'SELECT pg_sleep(12)' ],
	'>', \$listen_out, '2>', \$listen_err);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(12)' AND state = 'active'")
  or die 'listener did not start';

# Five tasks of each shape.
my $created = $node->safe_psql('postgres', q{
	SELECT count(tasker_create_task(name, jsonb_build_object('n', i), namespace => 'shapes'))
	  FROM unnest(ARRAY['linear_workflow', 'diamond_workflow', 'parallel_merge_workflow',
	                    'tree_workflow', 'mixed_workflow']) AS name,
	       generate_series(1, 5) AS i});
is($created, '25', '25 tasks created');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 25 FROM tasker_tasks WHERE current_state = 'complete'"),
	'the workers complete all 25 tasks');

is($node->safe_psql('postgres', 'SELECT count(*) FROM shape_ledger'),
	5 * (6 + 7 + 7 + 8 + 9), 'every step ran exactly once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM shape_ledger l
	  JOIN tasker_tasks t USING (task_id)
	  JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE l.parents IS DISTINCT FROM ARRAY(
	       SELECT parent FROM shape_edges e
	        WHERE e.template = nt.name AND e.step = l.step ORDER BY parent)}),
	'0', 'each step saw exactly its parents\' results');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM shape_ledger c
	  JOIN tasker_tasks t USING (task_id)
	  JOIN tasker_named_tasks nt USING (named_task_id)
	  JOIN shape_edges e ON e.template = nt.name AND e.step = c.step
	  JOIN shape_ledger p ON p.task_id = c.task_id AND p.step = e.parent
	 WHERE p.id > c.id}),
	'0', 'no step ran before one of its parents');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_workflow_steps
	 WHERE current_state <> 'complete' OR attempts <> 1 OR NOT processed}),
	'0', 'every step is complete after one attempt');

# The events went through the relay: it connected once the ring held some.
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tasker event relay'"),
	'1', 'the event relay runs and is connected to the tasker database');

# The listener heard each task's events in a consistent order.
$listener->finish;
my @events = map { /payload "(.*)" received/ ? $1 : () } split /\n/, $listen_out;
my $completed = grep { /"event":"task.completed"/ } @events;
is($completed, 25, 'the LISTEN client heard 25 task.completed events');
my $steps_done = grep { /"event":"step.completed"/ } @events;
is($steps_done, 185, 'and 185 step.completed events');
my (%seen_start, %bad);
for my $e (@events)
{
	my ($ev) = $e =~ /"event":"([^"]+)"/;
	my ($task) = $e =~ /"task_id":(\d+)/;
	my ($step) = $e =~ /"step_id":(\d+)/;
	$seen_start{$task} = 1 if $ev eq 'task.start_requested';
	$bad{"$task started after a step"} = 1
	  if $ev =~ /^step\./ && !$seen_start{$task};
	$seen_start{"s$step"} = 1 if $ev eq 'step.execution_requested';
	$bad{"step $step completed before it started"} = 1
	  if $ev eq 'step.completed' && !$seen_start{"s$step"};
	$bad{"$task completed early"} = 1
	  if $ev eq 'task.completed' && !$seen_start{$task};
}
is(join(', ', sort keys %bad), '', 'events arrive in transition order');
like($events[0] // '', qr/^\{"event":"task.initialize_requested","task_id":\d+,"task_name":"\w+","namespace":"shapes"/,
	'payloads are compact JSON with ids and names');
unlike($listen_out, qr/"context"|"results"/, 'payloads carry no context or results');
my ($done) = grep { /"event":"task.completed"/ } @events;
my ($done_task) = $done =~ /"task_id":(\d+)/;
my ($done_at) = $done =~ /"at":"([^"]+)"/;
is($done_at, $node->safe_psql('postgres', qq{
	SELECT to_json(created_at) #>> '{}' FROM tasker_task_transitions
	 WHERE task_id = $done_task AND to_state = 'complete'}),
	'an event\'s "at" is the created_at of its transition row');

# Retries: a step that fails twice, then succeeds, waits about 1 s and 2 s.
$node->safe_psql('postgres', q{
	CREATE FUNCTION flaky(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (step->>'attempt')::int < 3 THEN
			RAISE EXCEPTION 'flaky attempt %', step->>'attempt';
		END IF;
		RETURN '{"ok": true}';
	END $$;
	CREATE FUNCTION refuse(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM tasker_permanent_error('card declined');
		RETURN NULL;
	END $$;
	CREATE FUNCTION later(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (step->>'attempt')::int = 1 THEN
			PERFORM tasker_retry_error('rate limited', 3);
		END IF;
		RETURN '{"ok": true}';
	END $$;
	SELECT tasker_register_template($y$
name: retrying
custom_events:
  - name: order.flagged
    description: An order needs a human look
step_templates:
  - {name: flaky, handler_class: flaky, default_retry_limit: 3}
  - {name: refuse, handler_class: refuse, default_retry_limit: 5}
  - {name: later, handler_class: later}
$y$)});
my $task = $node->safe_psql('postgres', "SELECT tasker_create_task('retrying', '{}')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '30 seconds')"),
	'error', 'a task with a permanently failed step ends in error');
my $rows = $node->safe_psql('postgres', qq{
	SELECT n.name, s.current_state, s.attempts
	  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
	 WHERE s.task_id = $task ORDER BY n.name});
is($rows, "flaky|complete|3\nlater|complete|2\nrefuse|error|1",
	'flaky succeeded on attempt 3, later on 2, refuse stopped after 1');
my $gaps = $node->safe_psql('postgres', qq{
	SELECT string_agg(round(extract(epoch FROM t.created_at - f.created_at)::numeric, 1)::text, ',' ORDER BY t.sort_key)
	  FROM tasker_workflow_step_transitions t
	  JOIN tasker_workflow_steps s USING (workflow_step_id)
	  JOIN tasker_named_steps n USING (named_step_id)
	  JOIN LATERAL (SELECT created_at FROM tasker_workflow_step_transitions f
	                 WHERE f.workflow_step_id = t.workflow_step_id AND f.sort_key = t.sort_key - 10) f ON true
	 WHERE s.task_id = $task AND n.name = 'flaky' AND t.from_state = 'error'});
my @gap = split /,/, $gaps;
is(scalar(@gap), 2, 'flaky was retried twice');
cmp_ok($gap[0], '>=', 0.9, "first retry waited at least 0.9 s ($gap[0])");
cmp_ok($gap[1], '>=', 1.8, "second retry waited at least 1.8 s ($gap[1])");
my $later_gap = $node->safe_psql('postgres', qq{
	SELECT extract(epoch FROM max(t.created_at) FILTER (WHERE t.to_state = 'pending')
	                         - max(t.created_at) FILTER (WHERE t.to_state = 'error'))
	  FROM tasker_workflow_step_transitions t
	  JOIN tasker_workflow_steps s USING (workflow_step_id)
	  JOIN tasker_named_steps n USING (named_step_id)
	 WHERE s.task_id = $task AND n.name = 'later'});
cmp_ok($later_gap, '>=', 2.9, "retry_after 3 s was honoured ($later_gap)");
like($node->safe_psql('postgres', qq{
	SELECT s.results::text FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
	 WHERE s.task_id = $task AND n.name = 'refuse'}),
	qr/"sqlstate": "TK001".*|"message": "card declined"/, 'the permanent error is stored with its SQLSTATE');

# Resolving the failed step by hand lets the task complete.
my $refuse = $node->safe_psql('postgres', qq{
	SELECT workflow_step_id FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
	 WHERE s.task_id = $task AND n.name = 'refuse'});
$node->safe_psql('postgres', "SELECT tasker_resolve_step($refuse, '{\"manual\": true}')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '10 seconds')"),
	'complete', 'after tasker_resolve_step the task completes');

# tasker_retry_task: a task whose step failed for good runs again.
$node->safe_psql('postgres', q{
	CREATE TABLE switch (on_ boolean);
	INSERT INTO switch VALUES (false);
	CREATE FUNCTION gated(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF NOT (SELECT on_ FROM switch) THEN
			PERFORM tasker_permanent_error('switch is off');
		END IF;
		RETURN '{"ok": true}';
	END $$;
	SELECT tasker_register_template($y$
name: gated
step_templates:
  - {name: gate, handler_class: gated}
  - {name: after_gate, handler_class: shape_step, depends_on_step: gate}
$y$)});
$task = $node->safe_psql('postgres', "SELECT tasker_create_task('gated', '{}')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '10 seconds')"),
	'error', 'the gated task fails');
$node->safe_psql('postgres', "UPDATE switch SET on_ = true; SELECT tasker_retry_task($task)");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '10 seconds')"),
	'complete', 'after tasker_retry_task it completes');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(to_state, ',' ORDER BY sort_key) FROM tasker_task_transitions WHERE task_id = $task}),
	'in_progress,error,pending,in_progress,complete', 'the task history shows the retry');

# Cancelling a task while its step runs: the step finishes, its dependent
# never starts.
$node->safe_psql('postgres', q{
	CREATE FUNCTION slow(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT '{"slow": true}'::jsonb FROM pg_sleep(1.5) $$;
	SELECT tasker_register_template($y$
name: slow
step_templates:
  - {name: slow_step, handler_class: slow}
  - {name: never, handler_class: shape_step, depends_on_step: slow_step}
$y$)});
$task = $node->safe_psql('postgres', "SELECT tasker_create_task('slow', '{}')");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker worker' AND wait_event = 'PgSleep'");
is($node->safe_psql('postgres', "SELECT tasker_cancel_task($task, 'changed my mind')"), 't',
	'a running task can be cancelled (the call waits for the running batch, issue 15 C16)');
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 0 FROM tasker_workflow_steps WHERE task_id = $task AND current_state = 'pending'});
is($node->safe_psql('postgres', qq{
	SELECT string_agg(n.name || '=' || s.current_state, ',' ORDER BY n.name)
	  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
	 WHERE s.task_id = $task}),
	'never=cancelled,slow_step=complete', 'the running step finished and its dependent was cancelled');
is($node->safe_psql('postgres', "SELECT count(*) FROM shape_ledger WHERE task_id = $task"),
	'0', 'the dependent never ran');

# Custom events: a declared one is published on the same channel, an
# undeclared one is refused.
# (The event relay sends it after the commit: the session waits a moment,
# then runs one more command, after which psql prints what arrived.)
my ($ret, $out, $err) = $node->psql('postgres',
	"LISTEN tasker_events; SELECT tasker_publish_event('order.flagged', '{\"order_id\": 7}'); SELECT pg_sleep(1); SELECT 1");
like($err . $out, qr/order\.flagged.*"order_id": 7|"order_id":7/, 'a declared custom event is delivered')
  or diag("out: $out err: $err");
($ret, $out, $err) = $node->psql('postgres',
	"SELECT tasker_publish_event('order.unknown', '{}')");
like($err, qr/custom event "order.unknown" is not declared/, 'an undeclared event is refused');
is($node->safe_psql('postgres',
		"SELECT category FROM tasker_event_catalog WHERE name = 'order.flagged'"),
	'custom', 'the catalog lists the custom event');

# tasker.enabled = off pauses execution without a restart.
$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'paused'"),
	'workers pause');
$task = $node->safe_psql('postgres',
	"SELECT tasker_create_task('linear_workflow', '{}', namespace => 'shapes')");
sleep 1;
is($node->safe_psql('postgres', "SELECT current_state FROM tasker_tasks WHERE task_id = $task"),
	'pending', 'a paused server runs nothing');
$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '10 seconds')"),
	'complete', 'after tasker.enabled = on the task runs');

$node->stop;
done_testing();
