# 054_events.pl: issue 15 D24.  step.failed says whether the failure is
# final, and custom events carry the task and step they are about in the
# shape of the built-in events.  No worker: tasker_run_task in a session
# that listens, whose psql prints each notification it receives.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('events');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'no_worker_here'
tasker.max_backoff = 1
});
$node->start;
$node->safe_psql('postgres', q{CREATE DATABASE no_worker_here});

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION once_flaky(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (step->>'attempt')::int < 2 THEN RAISE EXCEPTION 'busy'; END IF;
		PERFORM tasker_publish_event('order.flagged', '{"order_id": 7}');
		RETURN '{}';
	END $$;
	CREATE FUNCTION always_fails(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN RAISE EXCEPTION 'never'; END $$;
	SELECT tasker_register_template($y$
name: events
custom_events: [order.flagged]
step_templates:
  - name: flaky
    handler_class: once_flaky
  - name: doomed
    handler_class: always_fails
    default_retry_limit: 2
$y$);
});

# notifications OUT: the payloads psql printed, as hashes of their text.
sub notifications
{
	my ($out) = @_;
	return [ $out =~ /Asynchronous notification "tasker_events" with payload "(.*)" received/g ];
}

my ($rc, $out, $err) = $node->psql('postgres', q{
	LISTEN tasker_events;
	SELECT tasker_run_task(tasker_create_task('events'), '30 seconds');
});
my @events = @{ notifications($out) };
my @failed = grep { /"event":"step.failed"/ } @events;
is(scalar(grep { /"step_name":"flaky".*"attempt":1,"final":false/ } @failed), 1,
	'the retried failure of step flaky is not final');
is(scalar(grep { /"step_name":"doomed".*"attempt":1,"final":false/ } @failed), 1,
	'the first failure of step doomed is not final');
is(scalar(grep { /"step_name":"doomed".*"attempt":2,"final":true/ } @failed), 1,
	'its last failure is final');
my ($custom) = grep { /"event":"order.flagged"/ } @events;
like($custom // '',
	qr/^\{"event":"order.flagged","task_id":1,"step_id":\d+,"step_name":"flaky","task_name":"events","namespace":"default","at":"[^"]+","trace_id":"[0-9a-f]{32}","span_id":"[0-9a-f]{16}","payload":\{"order_id": 7\},"event_id":\d+\}$/,
	'a custom event published from a handler names its task and step, in the shape of the built-in events');

($rc, $out, $err) = $node->psql('postgres', q{
	LISTEN tasker_events;
	SELECT tasker_publish_event('order.flagged', '{}', 1, NULL);
	SELECT tasker_publish_event('order.flagged', '{}');
});
@events = @{ notifications($out) };
like($events[0] // '', qr/^\{"event":"order.flagged","task_id":1,"task_name":"events","namespace":"default","at":/,
	'a custom event names the task given');
like($events[1] // '', qr/^\{"event":"order.flagged","at":"[^"]+","payload":\{\},"event_id":\d+\}$/,
	'outside a handler, with no task given, it names none');

($rc, $out, $err) = $node->psql('postgres', q{
	SELECT tasker_publish_event('order.flagged', '{}', 1, 999999);
});
like($err, qr/the task or step of custom event "order.flagged" does not exist/,
	'a step that is not one of the task is refused');

# Naming a task in an event needs the right to control it (the task
# belongs to the superuser here).
$node->safe_psql('postgres', q{
	CREATE ROLE spoofer;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO spoofer});
($rc, $out, $err) = $node->psql('postgres', q{
	SET ROLE spoofer;
	SELECT tasker_publish_event('order.flagged', '{}', 1, NULL);
});
like($err, qr/permission denied to publish an event about task 1/,
	'a role cannot publish an event about a task it may not control');
is($node->psql('postgres', q{
	SET ROLE spoofer;
	SELECT tasker_publish_event('order.flagged', '{"mine": true}');
}), 0, 'it may publish one that names no task');

is($node->safe_psql('postgres', q{
	SELECT 'final' = ANY (payload_fields) FROM tasker_event_catalog WHERE name = 'step.failed'}),
	't', 'the catalog lists final among the fields of step.failed');

done_testing();
