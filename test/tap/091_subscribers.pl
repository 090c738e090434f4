# 091_subscribers.pl: SQL subscribers of events.  A subscriber receives
# every event exactly once, in order, across a crash and restart of the
# server in the middle of the run; one whose function fails twice per event
# and then succeeds gets each event delivered once; one that keeps failing
# parks events and moves on; a pattern selects events; the function runs
# as the role that subscribed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('subs');
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

# Each subscriber writes what it receives in its own transaction, which
# commits together with its cursor.
$node->safe_psql('postgres', q{
	CREATE TABLE received (id bigserial PRIMARY KEY, subscriber text, event_id bigint,
	                       event jsonb, who text, UNIQUE (subscriber, event_id));
	CREATE FUNCTION keep_all(event jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO received (subscriber, event_id, event, who)
		VALUES ('all', (event->>'event_id')::bigint, event, current_user) $$;
	CREATE FUNCTION keep_steps(event jsonb) RETURNS void LANGUAGE sql AS $$
		INSERT INTO received (subscriber, event_id, event, who)
		VALUES ('steps', (event->>'event_id')::bigint, event, current_user) $$;
	-- Fails on the first two calls for each event, then succeeds: the
	-- sequence counts calls outside the transactions that roll back.
	CREATE SEQUENCE flaky_calls;
	CREATE FUNCTION flaky(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF nextval('flaky_calls') % 3 <> 0 THEN
			RAISE EXCEPTION 'flaky call for event %', event->>'event_id';
		END IF;
		INSERT INTO received (subscriber, event_id, event, who)
		VALUES ('flaky', (event->>'event_id')::bigint, event, current_user);
	END $$;
	CREATE FUNCTION picky(event jsonb) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		IF event->>'event' = 'task.completed' THEN
			RAISE EXCEPTION 'no completions' USING ERRCODE = '22023', HINT = 'picky';
		END IF;
		INSERT INTO received (subscriber, event_id, event, who)
		VALUES ('picky', (event->>'event_id')::bigint, event, current_user);
	END $$;
	CREATE ROLE alice;
	GRANT INSERT, SELECT ON received TO alice;
	GRANT USAGE ON SEQUENCE received_id_seq TO alice;
	GRANT EXECUTE ON FUNCTION tasker_subscribe(text, text, regprocedure, integer, interval, bigint) TO alice;
});

ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker event worker'"),
	'the event worker runs');
my $start = $node->safe_psql('postgres', q{
	SET ROLE alice;
	SELECT tasker_subscribe('all', '*', 'keep_all(jsonb)');});
$node->safe_psql('postgres', q{SELECT tasker_subscribe('steps', 'step.*', 'keep_steps(jsonb)')});

# create: n tasks of each shape.
sub create
{
	my ($n, $tag) = @_;
	$node->safe_psql('postgres', qq{
		SELECT count(tasker_create_task(name, jsonb_build_object('run', '$tag', 'i', i), namespace => 'shapes'))
		  FROM unnest(ARRAY['linear_workflow', 'diamond_workflow', 'tree_workflow']) AS name,
		       generate_series(1, $n) AS i});
}

# A run with a crash of the server in its middle: the first half of the
# tasks, a wait until the subscriber has some of their events, an
# immediate stop (a crash: the event worker's last commits may be lost,
# with their deliveries), a start, and the second half.
create(20, 'before');
ok($node->poll_query_until('postgres', q{SELECT count(*) > 50 FROM received WHERE subscriber = 'all'}),
	'the subscriber receives events while the tasks run');
$node->stop('immediate');
$node->start;
create(20, 'after');

# Two more, subscribed after the restart but from the same start: they
# also receive the events from before it.
$node->safe_psql('postgres', qq{
	SELECT tasker_subscribe('flaky', 'task.*', 'flaky(jsonb)', retry_delay => '10 ms',
	                        start_after => $start);
	SELECT tasker_subscribe('picky', 'task.*', 'picky(jsonb)', max_attempts => 2,
	                        retry_delay => '10 ms', start_after => $start);});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM tasker_tasks WHERE current_state <> 'complete'"),
	'every task completes');

# caught_up: the cursors of the subscribers chosen are at the end of the log.
sub caught_up
{
	my ($where) = @_;
	return qq{
	SELECT bool_and(last_event_id = (SELECT max(event_id) FROM tasker_event_log))
	  FROM tasker_subscribers WHERE $where};
}
ok($node->poll_query_until('postgres', caught_up('true')), 'every subscriber catches up with the log')
  or diag($node->safe_psql('postgres', 'SELECT * FROM tasker_subscriptions'));
is($node->safe_psql('postgres', q{
	SELECT failures, parked FROM tasker_subscriptions WHERE subscriber = 'all'}),
	'0|0', 'the subscriber never failed: no event came twice (its ledger is unique by event)');

is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker_event_log l
	 WHERE l.event_id > $start
	   AND NOT EXISTS (SELECT 1 FROM received r WHERE r.subscriber = 'all' AND r.event_id = l.event_id)}),
	'0', 'the subscriber received every event of the log after it subscribed');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM received r WHERE r.subscriber = 'all'
	   AND (r.event_id <= $start
	        OR r.event IS DISTINCT FROM (SELECT event FROM tasker_event_log l WHERE l.event_id = r.event_id))}),
	'0', 'and only those, each as logged');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT event_id, lag(event_id) OVER (ORDER BY id) AS prev
	                        FROM received WHERE subscriber = 'all') x
	 WHERE event_id <= prev}),
	'0', 'in event order, each once (the ledger is unique by event)');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_tasks t
	 WHERE NOT EXISTS (SELECT 1 FROM received r WHERE r.subscriber = 'all'
	                     AND r.event->>'event' = 'task.completed'
	                     AND (r.event->>'task_id')::bigint = t.task_id)}),
	'0', 'including the completion of every task, before and after the crash');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT who, ',') FROM received WHERE subscriber = 'all'}),
	'alice', 'the function ran as the role that subscribed');

# A pattern: step events only, all of them.
is($node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE r.event->>'event' NOT LIKE 'step.%'),
	       count(*) = (SELECT count(*) FROM tasker_event_log
	                    WHERE event_id > $start AND event->>'event' LIKE 'step.%')
	  FROM received r WHERE r.subscriber = 'steps'}),
	'0|t', 'a step.* subscriber receives every step event and nothing else');

# Fails twice, then succeeds: each event once, in order, two failures each.
my $flaky = $node->safe_psql('postgres', q{
	SELECT delivered, failures, parked, pending_attempts FROM tasker_subscriptions WHERE subscriber = 'flaky'});
my ($delivered, $failures, $parked, $pending) = split /\|/, $flaky;
ok($delivered > 100, "the flaky subscriber got $delivered events");
is($failures, 2 * $delivered, 'after two failed calls for each');
is("$parked|$pending", '0|0', 'and none parked');
is($node->safe_psql('postgres', qq{
	SELECT count(*) = $delivered AND count(DISTINCT event_id) = $delivered
	  FROM received WHERE subscriber = 'flaky'}),
	't', 'each event recorded once, by the call that succeeded');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker_event_log l
	 WHERE l.event_id > $start AND l.event->>'event' LIKE 'task.%'
	   AND NOT EXISTS (SELECT 1 FROM received r WHERE r.subscriber = 'flaky' AND r.event_id = l.event_id)}),
	'0', 'none missed');

# Always fails on task.completed, max_attempts 2: those are parked, with the
# error; the others are delivered.
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tasker_parked_events WHERE subscriber = 'picky'
	          AND event->>'event' = 'task.completed' AND attempts = 2
	          AND error->>'sqlstate' = '22023' AND error->>'hint' = 'picky')
	     = (SELECT count(*) FROM tasker_tasks),
	       (SELECT parked FROM tasker_subscriptions WHERE subscriber = 'picky')
	     = (SELECT count(*) FROM tasker_tasks)}),
	't|t', 'a subscriber that keeps failing parks each such event after max_attempts, with the error');
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM tasker_event_log l
	 WHERE l.event_id > $start AND l.event->>'event' LIKE 'task.%'
	   AND l.event->>'event' <> 'task.completed'
	   AND NOT EXISTS (SELECT 1 FROM received r WHERE r.subscriber = 'picky' AND r.event_id = l.event_id)}),
	'0', 'and delivery moves on past them');

# Unsubscribing stops delivery and drops the parked events.
$node->safe_psql('postgres', q{SELECT tasker_unsubscribe('picky')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM tasker_parked_events}), '0',
	'tasker_unsubscribe removes the subscription and its parked events');

# The log keeps what a subscriber has not passed: with one paused behind,
# pruning stops at its cursor.
$node->safe_psql('postgres', q{
	UPDATE tasker_subscribers SET next_attempt_at = now() + interval '1 hour' WHERE subscriber = 'steps'});
my $held = $node->safe_psql('postgres', q{SELECT last_event_id FROM tasker_subscribers WHERE subscriber = 'steps'});
create(2, 'late');
ok($node->poll_query_until('postgres', caught_up("subscriber <> 'steps'")),
	'the others catch up');
my $after_held = $node->safe_psql('postgres', "SELECT count(*) FROM tasker_event_log WHERE event_id > $held");
ok($after_held > 0, "$after_held events came after the paused subscriber's cursor");
$node->safe_psql('postgres', "SELECT tasker_prune_event_log(interval '0', 100000)");
is($node->safe_psql('postgres', qq{
	SELECT count(*) FILTER (WHERE event_id <= $held), count(*) FILTER (WHERE event_id > $held)
	  FROM tasker_event_log}),
	"0|$after_held", 'tasker_prune_event_log deletes what every subscriber passed, and keeps the rest');
$node->stop;

done_testing();
