# 075_worker_protocol.pl: the external-worker protocol with tasker's
# background workers running (issue 9): a waiting claim is woken by the
# commit that readies a step (not by polling), and stays cancellable; the
# executors reclaim an expired lease as a failed attempt, after which the
# old claim is refused (TK003) and a new claim completes the step; a role
# granted EXECUTE on the protocol functions and nothing else runs a worker.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $node = PostgreSQL::Test::Cluster->new('wproto');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 2
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
SELECT tasker_register_template($y$
name: one
step_templates:
  - name: only
    handler_config: {type: worker, queue: q1}
    default_retry_limit: 3
$y$);
CREATE ROLE wrk LOGIN;
GRANT EXECUTE ON FUNCTION
    tasker_claim_steps(text, text, integer, interval, interval),
    tasker_complete_step(bigint, uuid, jsonb),
    tasker_fail_step(bigint, uuid, jsonb, boolean, interval),
    tasker_complete_steps(jsonb),
    tasker_extend_lease(bigint, uuid, interval),
    tasker_release_step(bigint, uuid)
  TO wrk;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'executors up');

# A claim that waits up to 60 s, as the worker role, with nothing ready.
my $waiter = $node->background_psql('postgres', on_error_stop => 0);
$waiter->query_safe('SET ROLE wrk');
$waiter->query_until(qr/waiting/, q{
\echo waiting
SELECT extract(epoch FROM clock_timestamp())::numeric(20,3) AS woke, step_id IS NOT NULL AS claimed
  FROM tasker_claim_steps('q1', 'w-tap', 1, '2 seconds', '60 seconds');
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%tasker_claim_steps(''q1''%' AND state = 'active'"),
	'the claim is waiting');
sleep 0.5;
my $created_at = (split /\n/, $node->safe_psql('postgres', q{
	SELECT tasker_create_task('one', '{}');
	SELECT extract(epoch FROM clock_timestamp())::numeric(20,3)}))[-1];
my $out = $waiter->query_safe('');
$out =~ /(\d+\.\d+)\|t/ or diag "claim output: $out";
my $woke = $1 // 0;
ok($woke > 0, 'the waiting claim took the step');
my $delay = $woke - $created_at;
# The wait was 60 s; a wake-up by polling would take the poll interval.
cmp_ok($delay, '<', 5, "woken by the commit, not by the end of its wait ($delay s)");
$waiter->quit;

# The lease of 2 s expires without an outcome: the executors reclaim it
# as a failed attempt (retried), and the old claim is refused.
my $step = $node->safe_psql('postgres', "SELECT workflow_step_id FROM tasker_workflow_steps");
my $token = $node->safe_psql('postgres', "SELECT claim_token FROM tasker_workflow_steps");
ok($node->poll_query_until('postgres', qq{
	SELECT results->'error'->>'message' LIKE '%lease of the external worker expired%'
	  FROM tasker_workflow_steps WHERE workflow_step_id = $step}),
	'the executors reclaim the expired lease as a failed attempt');
is($node->safe_psql('postgres', qq{
	SELECT metadata->>'reason' FROM tasker_workflow_step_transitions
	 WHERE workflow_step_id = $step AND to_state = 'error'}), 'lease_expired',
	'the transition says why');
my ($rc, $o, $err) = $node->psql('postgres',
	"SET ROLE wrk; SELECT tasker_complete_step($step, '$token', '{}')");
like($err, qr/lease lost on step $step/, 'the old claim is refused (TK003)');

# After the backoff, a new claim (the retry, attempt 2) completes it.
my $claimed = '';
for (1 .. 50)
{
	$claimed = $node->safe_psql('postgres', q{
		SET ROLE wrk;
		SELECT step_id || ' ' || claim_token || ' ' || (envelope->>'attempt')
		  FROM tasker_claim_steps('q1', 'w-tap', 1, '1 minute', '1 second')});
	last if $claimed ne '';
}
my ($sid, $tok, $attempt) = split / /, $claimed;
is($attempt, '2', 'the retry is attempt 2');
is($node->safe_psql('postgres', "SET ROLE wrk; SELECT tasker_complete_step($sid, '$tok', '{\"ok\": 1}')"),
	't', 'the worker role records it');
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks"), 'the task completes');

# The worker role can do nothing else.
($rc, $o, $err) = $node->psql('postgres', "SET ROLE wrk; SELECT count(*) FROM tasker_tasks");
like($err, qr/permission denied/, 'the worker role cannot read the tables');
($rc, $o, $err) = $node->psql('postgres', "SET ROLE wrk; SELECT tasker_create_task('one', '{}')");
like($err, qr/permission denied/, 'nor create tasks');

# A waiting claim is cancellable.
my $w2 = $node->background_psql('postgres', on_error_stop => 0);
$w2->query_until(qr/waiting/, q{
\echo waiting
SELECT count(*) FROM tasker_claim_steps('q-none', 'w-tap', 1, '1 minute', '60 seconds');
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%q-none%' AND state = 'active'"),
	'a second claim waits');
my $t0 = time;
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%q-none%' AND state = 'active' AND pid <> pg_backend_pid()");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE '%q-none%' AND state = 'active' AND pid <> pg_backend_pid()"),
	'pg_cancel_backend ends the wait');
cmp_ok(time - $t0, '<', 30, 'well before the wait would have');
$w2->quit;

$node->stop;
done_testing();
