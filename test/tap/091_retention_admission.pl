# 091_retention_admission.pl: the two limits the workers keep (issue 11).
# Admission control: over tasker.max_ready_backlog, tasker_create_task
# fails with SQLSTATE 53400 and a hint, measured from the executors'
# shared-memory gauge (also while tasker.enabled is off), and accepts tasks
# again once the workers catch up.  Retention: with tasker.retention_period
# set, the background purge deletes the finished tasks with all their rows
# and leaves live and failed tasks alone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('limits');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.enabled = off
tasker.max_ready_backlog = 20
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION public.quick(step jsonb) RETURNS jsonb LANGUAGE sql
	    AS $$ SELECT '{"ok": true}'::jsonb $$;
	CREATE FUNCTION public.broken(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN PERFORM tasker_permanent_error('broken'); RETURN NULL; END $$;
	SELECT tasker_register_template($y$
name: one_step
step_templates:
  - name: only
    handler_class: public.quick
$y$);
	SELECT tasker_register_template($y$
name: pair
step_templates:
  - name: first
    handler_class: public.quick
  - name: second
    handler_class: public.quick
    depends_on_step: first
$y$);
	SELECT tasker_register_template($y$
name: broken
step_templates:
  - name: only
    handler_class: public.broken
    default_retryable: false
$y$);
	SELECT tasker_register_template($y$
name: external
step_templates:
  - name: only
    handler_config:
      type: worker
      queue: nobody_listens
$y$);
});

# The executors measure the backlog even while paused.
ok($node->poll_query_until('postgres',
		'SELECT measured_at IS NOT NULL FROM tasker_ready_backlog()'),
	'the executors publish the ready backlog while tasker.enabled is off');
is($node->safe_psql('postgres', 'SELECT ready_steps || \'|\' || max_ready_backlog FROM tasker_ready_backlog()'),
	'0|20', 'nothing is ready yet');

# Create tasks one transaction at a time until creation is refused.
my $script = join('', map { "SELECT tasker_create_task('one_step', '{\"i\": $_}');\n" } 1 .. 40);
my ($rc, $out, $err) = $node->psql('postgres', $script, on_error_stop => 0);
my $created = $node->safe_psql('postgres', 'SELECT count(*) FROM tasker_tasks');
cmp_ok($created, '>', 20, 'tasks are created up to the limit');
cmp_ok($created, '<', 40, 'then creation is refused');
like($err, qr/too many steps are waiting to run to accept a new task/, 'with a clear message');
($rc, $out, $err) = $node->psql('postgres',
	q{\set VERBOSITY verbose
	  SELECT tasker_create_task('one_step')});
like($err, qr/ERROR:  53400:/, 'SQLSTATE 53400');
like($err, qr/HINT:  Retry later, when the workers have caught up; or add workers \(tasker\.max_workers\), or raise tasker\.max_ready_backlog\./,
	'and a hint');
like($err, qr/tasker\.max_ready_backlog is 20/, 'the detail names the limit');
ok($node->poll_query_until('postgres',
		"SELECT ready_steps = least($created, 21) FROM tasker_ready_backlog()"),
	'the gauge counts the ready steps (a measure stops at the limit plus one)');

# An identity key that exists is answered, not refused.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.max_ready_backlog = 0; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('tasker.max_ready_backlog') = '0'});
my $keyed = $node->safe_psql('postgres', q{SELECT tasker_create_task('one_step', identity_key => 'k')});
like($keyed, qr/^\d+$/, 'with the limit off, creation works over the backlog');
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.max_ready_backlog = 20; SELECT pg_reload_conf()});
$node->poll_query_until('postgres', q{SELECT current_setting('tasker.max_ready_backlog') = '20'});
($rc, $out, $err) = $node->psql('postgres', q{SELECT tasker_create_task('one_step')});
like($err, qr/too many steps are waiting/, 'back at 20, a new task is refused again');
is($node->safe_psql('postgres', q{SELECT tasker_create_task('one_step', identity_key => 'k')}),
	$keyed, 'but a repeated identity key returns its task');

# The workers drain the backlog; creation is accepted again.
$node->safe_psql('postgres', q{ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM tasker_tasks WHERE current_state <> 'complete'"),
	'the workers complete every task');
ok($node->poll_query_until('postgres', 'SELECT ready_steps <= 20 FROM tasker_ready_backlog()'),
	'the gauge falls with the backlog');
is($node->psql('postgres', q{SELECT tasker_create_task('one_step')}), 0,
	'and tasks are accepted again');

# Retention: old finished tasks go; live and failed ones stay.
$node->safe_psql('postgres', q{ALTER SYSTEM SET tasker.max_ready_backlog = 0; SELECT pg_reload_conf()});
$node->safe_psql('postgres', q{
	CREATE TABLE kept AS
	SELECT tasker_create_task('pair') AS task_id, 'complete' AS label
	UNION ALL SELECT tasker_create_task('broken'), 'error'
	UNION ALL SELECT tasker_create_task('external'), 'live'});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM tasker_tasks t JOIN kept k USING (task_id)
	 WHERE t.current_state IN ('complete', 'error')}),
	'the pair completes and the broken task fails');
my $finished = $node->safe_psql('postgres',
	"SELECT count(*) FROM tasker_tasks WHERE current_state = 'complete'");
cmp_ok($finished, '>', 20, "$finished complete tasks to purge");
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.retention_period = '1s'; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM tasker_tasks WHERE current_state = 'complete'"),
	'the background purge deletes every complete task');
is($node->safe_psql('postgres', q{
	SELECT string_agg(k.label || ':' || CASE WHEN t.current_state IN ('pending', 'in_progress')
	                                         THEN 'unfinished' ELSE t.current_state END,
	                  ',' ORDER BY k.label)
	  FROM kept k JOIN tasker_tasks t USING (task_id)}),
	'error:error,live:unfinished', 'the failed and the live task are untouched');
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM tasker_workflow_steps s
	         WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = s.task_id))
	     + (SELECT count(*) FROM tasker_workflow_step_transitions x
	         WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = x.task_id))
	     + (SELECT count(*) FROM tasker_task_transitions x
	         WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = x.task_id))
	     + (SELECT count(*) FROM tasker_workflow_step_edges x
	         WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = x.task_id))}),
	'0', 'no row of a purged task is left');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_workflow_steps s JOIN kept k USING (task_id)}),
	'2', 'the remaining tasks keep their steps');
ok($node->wait_for_log(qr/tasker purged \d+ finished tasks of database "postgres"/),
	'the purge says what it did in the log');

# A task completed now is purged in its turn.
my $late = $node->safe_psql('postgres', q{SELECT tasker_create_task('one_step')});
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM tasker_tasks WHERE task_id = $late"),
	'a task that completes later is purged once it is older than the period');

$node->stop;
done_testing();
