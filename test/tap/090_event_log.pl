# 090_event_log.pl: the durable event log.  Every event is logged with the
# payload NOTIFY sent; a listener disconnected while 1,000 events are made
# catches up with tasker_events_since and misses none (checked against the
# transitions written); a transaction that took smaller ids but commits
# later is never stepped over, with the workers (shared counters) and
# without them (serialized appends); ids continue after a restart; old
# events are pruned.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('evlog');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
synchronous_commit = local
synchronous_standby_names = 'nobody'
});
$node->start;
my $fixtures = "$ENV{TASKER_TREE}/test/fixtures";
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', "\\i $fixtures/shapes.sql");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'workers are up');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'tasker event worker'"),
	'the launcher started the event worker');

# parse: the fields of a flat JSON event we compare.
sub parse
{
	my ($json) = @_;
	my %e;
	for my $k (qw(event task_id step_id from_state to_state event_id))
	{
		($e{$k}) = $json =~ /"$k":\s*"?([^",}]*)"?/;
		$e{$k} //= '';
	}
	return \%e;
}

# transition_keys: every transition written, as task|step|from|to, and
# each task's creation (task.initialize_requested, which has no row).
sub transition_keys
{
	my ($where) = @_;
	return sort split /\n/, $node->safe_psql('postgres', qq{
		SELECT concat_ws('|', task_id, '', '', 'pending') FROM tasker_tasks WHERE $where
		UNION ALL
		SELECT concat_ws('|', task_id, '', coalesce(from_state, ''), to_state)
		  FROM tasker_task_transitions WHERE $where
		UNION ALL
		SELECT concat_ws('|', s.task_id, t.workflow_step_id, coalesce(t.from_state, ''), t.to_state)
		  FROM tasker_workflow_step_transitions t
		  JOIN tasker_workflow_steps s USING (workflow_step_id) WHERE s.$where});
}

sub event_key
{
	my ($e) = @_;
	return join('|', $e->{task_id}, $e->{step_id}, $e->{from_state}, $e->{to_state});
}

# ---- a listener disconnected during 1,000 events catches up --------------

# The consumer, following docs/events.md: LISTEN, read the log from its
# cursor (0 at first), hear what arrives, and before it goes read the log
# again; its cursor is the last event_id tasker_events_since returned.
my ($out, $err) = ('', '');
my $listener = IPC::Run::start(
	[ 'psql', '-X', '-qAt', '-d', $node->connstr('postgres'),
	  '-c', 'LISTEN tasker_events',
	  '-c', 'SELECT pg_sleep(4)',
	  '-c', "SELECT 'logged ' || event_id || ' ' || event FROM tasker_events_since(0, 1000000)" ],
	'>', \$out, '2>', \$err);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)' AND state = 'active'")
  or die 'listener did not start';
# Batch A: the listener hears it, and reads the log while it still runs.
$node->safe_psql('postgres', q{
	SELECT count(tasker_create_task('linear_workflow', jsonb_build_object('a', i), namespace => 'shapes'))
	  FROM generate_series(1, 60) i});
$listener->finish;
my @heard = map { /payload "(.*)" received/ ? $1 : () } split /\n/, $out;
my %first;
my $cursor = 0;
my $ordered = 1;
for my $line (split /\n/, $out)
{
	next unless $line =~ /^logged (\d+) (.*)$/;
	$ordered = 0 if $1 <= $cursor;
	$cursor = $1;
	$first{$1} = $2;
}
ok(@heard > 0, 'the listener heard events while connected (' . scalar(@heard) . ')');
ok($cursor > 0 && $ordered, "it read the log up to event $cursor, in id order");

# Every payload heard carries its event_id and equals the logged event.
my $values = join(',', map { "(\$\$$_\$\$)" } @heard);
is($node->safe_psql('postgres', qq{
	SELECT count(*) FROM (VALUES $values) h (p)
	  JOIN tasker_event_log l ON l.event_id = (h.p::jsonb->>'event_id')::bigint
	 WHERE l.event = h.p::jsonb}),
	scalar(@heard), 'each NOTIFY payload carries its event_id and is the logged event');

# Batch B, while no one listens: 70 linear tasks, 1,050 events (a task of
# 6 steps makes 15: its creation, start and completion, and each step's
# start and completion).
my $b_first = $node->safe_psql('postgres', q{
	SELECT min(t) FROM (SELECT tasker_create_task('linear_workflow', jsonb_build_object('b', i),
	                                              namespace => 'shapes') AS t
	                      FROM generate_series(1, 70) i) x});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM tasker_tasks WHERE current_state <> 'complete'"),
	'every task completes');

# Catch up: pages of 100 from the cursor.
my %caught;
my $pages = 0;
while (1)
{
	my $page = $node->safe_psql('postgres',
		"SELECT event_id || ' ' || event FROM tasker_events_since($cursor, 100)");
	last if $page eq '';
	$pages++;
	for my $line (split /\n/, $page)
	{
		my ($id, $json) = $line =~ /^(\d+) (.*)$/;
		$ordered = 0 if $id <= $cursor;
		$cursor = $id;
		$caught{$id} = $json;
	}
}
ok($pages >= 11 && $ordered, "the consumer caught up in $pages pages of at most 100, in id order");
my $batch_b = grep { parse($caught{$_})->{task_id} >= $b_first } keys %caught;
ok($batch_b >= 1050, "it caught up with the $batch_b events of the tasks made while it was away");

my @got = sort map { event_key(parse($_)) } (values %first, values %caught);
my @want = transition_keys('task_id > 0');
is(scalar(@got), scalar(@want), 'as many events as transitions: ' . scalar(@want));
is_deeply(\@got, \@want, 'the events read are exactly the transitions written: none missed, none twice');

# ---- ids still in flight are never stepped over ---------------------------

# A synchronous standby that never comes (synchronous_standby_names is
# set from the start) holds a commit after its WAL flush and before it is
# visible: its events have ids, but no reader may pass them.  Every other
# session commits with synchronous_commit = local.

# stalled_commit: start a session whose transaction creates a task and
# then waits in its commit; returns the IPC::Run handle.
sub stalled_commit
{
	my ($n, $tag) = @_;
	my ($o, $e) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-qAt', '-d', $n->connstr('postgres'),
		  '-c', "SET synchronous_commit = on; SET application_name = '$tag'; SELECT tasker_create_task('linear_workflow', '{\"tag\": \"$tag\"}', namespace => 'shapes')" ],
		'>', \$o, '2>', \$e);
	$n->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = '$tag' AND wait_event = 'SyncRep'")
	  or die "$tag did not reach its commit";
	return $h;
}

sub ids_of
{
	my ($n, $after, $tag) = @_;
	return $n->safe_psql('postgres', qq{
		SELECT string_agg((e.event->>'event_id'), ',' ORDER BY e.event_id)
		  FROM tasker_events_since($after, 1000000) e
		  JOIN tasker_tasks t ON t.task_id = (e.event->>'task_id')::bigint
		 WHERE t.context->>'tag' = '$tag'});
}

$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.enabled = off");
$node->reload;
my $before = $node->safe_psql('postgres', 'SELECT max(event_id) FROM tasker_event_log');
my $stalled = stalled_commit($node, 'early');
$node->safe_psql('postgres', q{
	SELECT tasker_create_task('linear_workflow', '{"tag": "late"}', namespace => 'shapes')});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_tasks WHERE context->>'tag' = 'late'}), '1',
	'a later transaction committed');
ok($node->safe_psql('postgres', q{
	SELECT max(event_id) FROM tasker_event_log}) > $before + 1,
	'its events are in the table, with ids above the stalled transaction\'s');
is(ids_of($node, $before, 'late'), '',
	'tasker_events_since does not return them while a smaller id is still in flight');
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'early'");
$stalled->finish;
my $early = ids_of($node, $before, 'early');
my $late = ids_of($node, $before, 'late');
ok($early ne '' && $late ne '', "once it commits, both are returned (early $early; late $late)");
my ($early_last) = $early =~ /(\d+)$/;
my ($late_first) = $late =~ /^(\d+)/;
ok($early_last < $late_first, 'the early transaction\'s events come first, in id order');

# A REPEATABLE READ snapshot may predate the horizon: refused.
my ($rc, $stdout, $stderr) = $node->psql('postgres', q{
	BEGIN ISOLATION LEVEL REPEATABLE READ;
	SELECT count(*) FROM tasker_events_since(0);
	COMMIT;});
like($stderr, qr/cannot run in a REPEATABLE READ or SERIALIZABLE transaction/,
	'tasker_events_since refuses a REPEATABLE READ transaction');

# ---- ids continue after a restart; pruning --------------------------------

$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.enabled = on");
my $max_before = $node->safe_psql('postgres', 'SELECT max(event_id) FROM tasker_event_log');
$node->restart;
my $t = $node->safe_psql('postgres',
	"SELECT tasker_create_task('linear_workflow', '{}', namespace => 'shapes')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($t, '30 seconds')"), 'complete',
	'a task runs after the restart');
is($node->safe_psql('postgres', qq{
	SELECT min(event_id) > $max_before FROM tasker_event_log WHERE (event->>'task_id')::bigint = $t}),
	't', 'event ids continue above those from before the restart');

$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.event_log_retention = '1s'");
$node->reload;
my $newest = $node->safe_psql('postgres', 'SELECT max(event_id) FROM tasker_event_log');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM tasker_event_log', 't'),
	'the event worker prunes events older than tasker.event_log_retention');
is($node->safe_psql('postgres', 'SELECT max(event_id) FROM tasker_event_log'), $newest,
	'but keeps the newest one');
$node->stop;

# ---- without the preload: appends are serialized --------------------------

my $plain = PostgreSQL::Test::Cluster->new('evlog_plain');
$plain->init(allows_streaming => 1);
$plain->append_conf('postgresql.conf', qq{
synchronous_commit = local
synchronous_standby_names = 'nobody'
});
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION tasker');
$plain->safe_psql('postgres', "\\i $fixtures/shapes.sql");
my $b0 = $plain->safe_psql('postgres', 'SELECT coalesce(max(event_id), 0) FROM tasker_event_log');
my $early2 = stalled_commit($plain, 'early');
my ($lo, $le) = ('', '');
my $later = IPC::Run::start(
	[ 'psql', '-X', '-qAt', '-d', $plain->connstr('postgres'),
	  '-c', "SET application_name = 'late'; SELECT tasker_create_task('linear_workflow', '{\"tag\": \"late\"}', namespace => 'shapes')" ],
	'>', \$lo, '2>', \$le);
ok($plain->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE application_name = 'late' AND wait_event_type = 'Lock' AND wait_event = 'advisory'}),
	'without shared memory, a second commit with events waits for the first');
$plain->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'early'");
$early2->finish;
$later->finish;
my $e2 = ids_of($plain, $b0, 'early');
my $l2 = ids_of($plain, $b0, 'late');
my ($e2_last) = $e2 =~ /(\d+)$/;
my ($l2_first) = $l2 =~ /^(\d+)/;
ok(defined $e2_last && defined $l2_first && $e2_last < $l2_first,
	"and takes its ids after it, so ids commit in order (early $e2; late $l2)");
$plain->stop;

done_testing();
