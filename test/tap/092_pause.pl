# 092_pause.pl: pausing and resuming (issue 11) with the workers running:
# a task paused in the middle of its workflow keeps its remaining steps
# unclaimed (SQL steps and external-worker steps alike) for as long as it
# stays paused, reports the pause in readiness and the execution context,
# and completes when resumed; a namespace pause holds every task of that
# namespace, those created during the pause too, and no other; each pause
# and resume is logged and announced; a role without control rights is
# refused.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = PostgreSQL::Test::Cluster->new('pause');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: three
namespace_name: ns1
step_templates:
  - {name: first, handler_config: {type: worker, queue: pq}}
  - {name: second, handler_class: noop, depends_on_step: first}
  - {name: third, handler_class: noop, depends_on_step: second}
$y$);
SELECT tasker_register_template($y$
name: one
namespace_name: ns1
step_templates:
  - {name: only, handler_class: noop}
$y$);
SELECT tasker_register_template($y$
name: one
namespace_name: ns2
step_templates:
  - {name: only, handler_class: noop}
$y$);
SELECT tasker_register_template($y$
name: wq
namespace_name: ns1
step_templates:
  - {name: only, handler_config: {type: worker, queue: nq}}
$y$);
CREATE ROLE stranger LOGIN;
GRANT EXECUTE ON FUNCTION tasker_pause_task(bigint, text) TO stranger;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker'"),
	'executors up');
unlike(slurp_file($node->logfile), qr/cannot read pg_class without having selected a database/,
	'the launcher reads pg_database at start-up without a FATAL (no shared relcache init file yet)');

sub sq { return $node->safe_psql('postgres', $_[0]); }

# ---- a task paused in the middle ----
my $t = sq("SELECT tasker_create_task('three', '{}', 'ns1')");
my $claim = sq("SELECT step_id || ' ' || claim_token FROM tasker_claim_steps('pq', 'w', 1)");
my ($sid, $token) = split / /, $claim;
ok($sid, 'the first step is claimed by a worker');
is(sq("SELECT tasker_pause_task($t, 'maintenance')"), 't', 'the task is paused');
is(sq("SELECT tasker_pause_task($t)"), 'f', 'pausing it again returns false');
is(sq("SELECT tasker_complete_step($sid, '$token', '{}')"), 't',
	'the step running when the task was paused finishes and is recorded');
sleep 2;
is(sq("SELECT string_agg(n.name || ':' || s.current_state || ':' || s.attempts, ',' ORDER BY s.workflow_step_id)
        FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id) WHERE task_id = $t"),
	'first:complete:1,second:pending:0,third:pending:0', 'the remaining steps stay unclaimed');
is(sq("SELECT execution_status || ':' || recommended_action FROM tasker_task_execution_context($t)"),
	'paused:resume_task', 'the execution context reports the pause');
is(sq("SELECT waiting_for || ':' || ready_for_execution FROM tasker_step_readiness_status($t) WHERE name = 'second'"),
	'paused:false', 'readiness reports the pause');
is(sq("SELECT current_state FROM tasker_tasks WHERE task_id = $t"), 'in_progress',
	'a paused task is not failed for want of ready steps');
my ($rc, $out, $err) = $node->psql('postgres', "SELECT tasker_pause_task($t)",
	extra_params => ['-U', 'stranger']);
like($err, qr/permission denied to pause task/, 'a role without control rights is refused');
is(sq("SELECT tasker_resume_task($t)"), 't', 'the task is resumed');
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $t"),
	'and completes');
is(sq("SELECT tasker_resume_task($t)"), 'f', 'resuming a task that is not paused returns false');
is(sq("SELECT string_agg(action || ':' || COALESCE(reason, '-'), ',' ORDER BY pause_log_id)
        FROM tasker_pause_log WHERE task_id = $t"), 'paused:maintenance,resumed:-',
	'each pause and resume is logged');

# ---- a namespace pause ----
my $before = sq("SELECT tasker_create_task('wq', '{}', 'ns1')");
is(sq("SELECT tasker_pause_namespace('ns1')"), 't', 'the namespace is paused');
is(sq("SELECT tasker_pause_namespace('ns1')"), 'f', 'pausing it again returns false');
my $b = sq("SELECT tasker_create_task('one', '{}', 'ns1')");
my $c = sq("SELECT tasker_create_task('one', '{}', 'ns2')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $c"),
	'a task of another namespace runs');
sleep 1;
is(sq("SELECT current_state || ':' || paused_by FROM tasker_tasks WHERE task_id = $b"), 'pending:namespace',
	'a task created in the paused namespace waits');
is(sq("SELECT count(*) FROM tasker_claim_steps('nq', 'w', 5)"), '0',
	'an external worker claims nothing of the paused namespace');
my ($rc2, $o2, $e2) = $node->psql('postgres', "SELECT tasker_pause_namespace('nope')");
like($e2, qr/namespace "nope" does not exist/, 'an unknown namespace is an error');
is(sq("SELECT tasker_resume_namespace('ns1')"), 't', 'the namespace is resumed');
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $b"),
	'its tasks run');
is(sq("SELECT count(*) FROM tasker_claim_steps('nq', 'w', 5)"), '1',
	'and the worker step of the task created before the pause is claimable again');

# ---- events ----
my $events = $node->safe_psql('postgres', q{
LISTEN tasker_events;
SELECT tasker_pause_namespace('ns2');
SELECT tasker_resume_namespace('ns2');
SELECT pg_sleep(1);
SELECT 1;
});
like($events, qr/"event" ?: ?"namespace.paused"/, 'namespace.paused is announced');
like($events, qr/"event" ?: ?"namespace.resumed"/, 'namespace.resumed is announced');
is(sq("SELECT count(*) FROM tasker_event_catalog WHERE name IN ('task.paused', 'task.resumed', 'namespace.paused', 'namespace.resumed')"),
	'4', 'the pause events are catalogued');
is(sq("SELECT count(*) FROM tasker_check()"), '0', 'no task breaks an invariant');

$node->stop;
done_testing();
