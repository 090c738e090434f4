# 080_observability.pl: the observability functions (issue 12) with real
# workers and a large history:
# - tasker_health() is ok while the workers serve the database, and failing
#   while they are paused (tasker.enabled off) and a step is ready;
# - the analytics read a time window of a large history through the
#   indexes of finishing transitions, never scanning the transition tables
#   (auto_explain logs the plans, custom and generic); the slowest steps
#   and tasks read the duration indexes when the starts are on the rows,
#   and give the window's answer;
# - every diagram in DOT format is one that Graphviz's dot renders.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('observability');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
});
$node->start;

my $fixtures = "$ENV{TASKER_TREE}/test/fixtures";
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', "\\i $fixtures/shapes.sql");

# --- health with the workers running, then paused ---
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors report idle');
$node->safe_psql('postgres', q{
	SELECT tasker_create_task(name, '{}', namespace => 'shapes')
	  FROM unnest(ARRAY['linear_workflow', 'diamond_workflow', 'parallel_merge_workflow',
	                    'tree_workflow', 'mixed_workflow']) AS name});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 5 FROM tasker_tasks WHERE current_state = 'complete'"),
	'the workers complete the five shapes');
is($node->safe_psql('postgres',
		"SELECT string_agg(check_name || '=' || status, ',') FILTER (WHERE status <> 'ok') FROM tasker_health()"),
	'', 'every check is ok while the workers serve this database');
is($node->safe_psql('postgres',
		"SELECT detail->>'serves_this_database' || ',' || (detail->>'active') FROM tasker_health() WHERE check_name = 'workers'"),
	'true,2', 'the workers check sees both executors serving this database');
is($node->safe_psql('postgres', q{
	SELECT task_throughput || ',' || completion_count || ',' || system_health_score || ',' || step_throughput
	  FROM tasker_analytics_metrics()}),
	'5,5,1.000,37', 'the analytics count the five tasks and their 37 steps');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_slowest_steps() s JOIN tasker_workflow_steps w USING (workflow_step_id)
	 WHERE s.duration_seconds >= 0 AND s.completed_at >= w.created_at}),
	'10', 'the ten slowest steps, with their run times');
is($node->safe_psql('postgres', q{
	SELECT string_agg(step_name, ',' ORDER BY path_position) FROM tasker_critical_path(
	       (SELECT t.task_id FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
	         WHERE nt.name = 'linear_workflow'))}),
	'initialize_data,validate_input,process_data,transform_results,validate_output,finalize_workflow',
	'the critical path of a linear task that ran is the chain');

$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.enabled = off');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'paused'"),
	'tasker.enabled = off pauses the executors');
$node->safe_psql('postgres', "SELECT tasker_create_task('linear_workflow', '{\"n\": 2}', namespace => 'shapes')");
is($node->safe_psql('postgres',
		"SELECT status || ',' || (detail->>'enabled') || ',' || (detail->>'ready_steps') FROM tasker_health() WHERE check_name = 'workers'"),
	'failing,false,1', 'paused workers and a ready step: the workers check fails');
like($node->safe_psql('postgres', "SELECT detail->>'action' FROM tasker_health() WHERE check_name = 'workers'"),
	qr/tasker\.enabled is off/, 'and says how to turn them back on');
is($node->safe_psql('postgres', "SELECT status FROM tasker_health() WHERE check_name = 'overall'"),
	'failing', 'overall failing');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET tasker.enabled');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 6 FROM tasker_tasks WHERE current_state = 'complete'"),
	'resumed, the workers complete the new task');
ok($node->poll_query_until('postgres',
		"SELECT status = 'ok' FROM tasker_health() WHERE check_name = 'overall'"),
	'and health is ok again');

# --- every DOT diagram renders with Graphviz ---
my $diagrams = $node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  SELECT tasker_task_diagram(task_id, 'dot') FROM tasker_tasks
	  UNION ALL
	  SELECT tasker_template_diagram(name, namespace, format => 'dot') FROM tasker_templates) d});
my $rendered = 0;
foreach my $query (
	"SELECT tasker_task_diagram(task_id, 'dot') FROM tasker_tasks ORDER BY task_id",
	"SELECT tasker_template_diagram(name, namespace, format => 'dot') FROM tasker_templates ORDER BY name")
{
	my $all = $node->safe_psql('postgres', "SELECT string_agg(d, E'\\x01') FROM ($query) x(d)");
	foreach my $dot (split /\x01/, $all)
	{
		my ($svg, $err) = ('', '');
		my $ok = IPC::Run::run([ 'dot', '-Tsvg' ], '<', \$dot, '>', \$svg, '2>', \$err);
		$ok &&= $svg =~ /<svg/ && $err !~ /syntax|error/i;
		$rendered++ if $ok;
		diag("dot failed: $err\n$dot") unless $ok;
	}
}
is($rendered, $diagrams, "Graphviz renders all $diagrams DOT diagrams");

# --- a large history: windows read through the indexes ---
# 20,000 finished two-step tasks spread over 60 days, written directly (the
# workers do not serve this database), then a few recent ones.
$node->safe_psql('postgres', 'CREATE DATABASE history');
$node->safe_psql('history', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT tasker_register_template($y$
name: pair
step_templates:
  - {name: a, handler_class: noop}
  - {name: b, handler_class: noop, depends_on_step: a}
$y$);
	SELECT count(tasker_create_task('pair')) FROM generate_series(1, 20000);
	UPDATE tasker_tasks SET created_at = now() - (20000 - task_id) * interval '260 seconds';
	INSERT INTO tasker_workflow_step_transitions
	       (workflow_step_id, task_id, from_state, to_state, sort_key, most_recent, created_at)
	SELECT s.workflow_step_id, s.task_id, f, t, k, k = 20,
	       tk.created_at + (s.workflow_step_id % 2 + k / 10) * interval '1 second'
	  FROM tasker_workflow_steps s JOIN tasker_tasks tk USING (task_id),
	       (VALUES ('pending', 'in_progress', 10), ('in_progress', 'complete', 20)) AS v(f, t, k)
	 ORDER BY 7;
	INSERT INTO tasker_task_transitions (task_id, from_state, to_state, sort_key, most_recent, created_at)
	SELECT task_id, f, t, k, k = 20, created_at + k * interval '1 second'
	  FROM tasker_tasks, (VALUES ('pending', 'in_progress', 10), ('in_progress', 'complete', 20)) AS v(f, t, k)
	 ORDER BY 6;
	UPDATE tasker_workflow_steps SET current_state = 'complete', attempts = 1, next_attempt_at = NULL;
	UPDATE tasker_tasks SET current_state = 'complete', complete = true;
});
$node->safe_psql('history', 'VACUUM ANALYZE');
is($node->safe_psql('history', q{
	SELECT task_throughput = (SELECT count(*) FROM tasker_task_transitions
	                           WHERE to_state = 'complete' AND created_at BETWEEN now() - interval '1 day' AND now())
	       AND task_throughput > 300
	  FROM tasker_analytics_metrics(now() - interval '1 day')}),
	't', 'the analytics count the day\'s finished tasks of the history');

my $log_start = -s $node->logfile;
$node->safe_psql('history', q{
	LOAD 'auto_explain';
	SET auto_explain.log_min_duration = 0;
	SET auto_explain.log_nested_statements = on;
	SELECT count(*) FROM tasker_analytics_metrics();
	SELECT count(*) FROM tasker_slowest_steps();
	SELECT count(*) FROM tasker_slowest_tasks();
	SET plan_cache_mode = force_generic_plan;
	SELECT count(*) FROM tasker_analytics_metrics();
	SELECT count(*) FROM tasker_slowest_steps();
	SELECT count(*) FROM tasker_slowest_tasks();
});
my $log = slurp_file($node->logfile, $log_start);
my @plans = grep { /tasker_(?:workflow_step|task)_transitions/ } split /(?=LOG:  duration:)/, $log;
cmp_ok(scalar(@plans), '>=', 6, 'auto_explain logged the window queries');
# (Joining the window's rows to their steps and tasks by key is the
# planner's choice: with a history this small it may hash a whole table.)
is(scalar(grep { /Seq Scan on tasker_(?:workflow_step_transitions|task_transitions)\b/ } @plans), 0,
	'no window query scans the transition tables');
cmp_ok(scalar(grep { /tasker_step_transitions_finished_idx/ } @plans), '>=', 2,
	'the step windows (custom and generic) read the index of finishing rows');
cmp_ok(scalar(grep { /tasker_task_transitions_finished_idx/ } @plans), '>=', 2,
	'the task windows read theirs');
cmp_ok(scalar(grep { /tasker_(?:step|task)_transitions_unstarted_idx/ } @plans), '>=', 4,
	'the slowest steps and tasks look for rows without their start (written as before 0.2.0) through their index');

# With the starts on the rows, as the engine writes them, the slowest steps
# and tasks come from the duration indexes, and give the window's answer.
$node->safe_psql('history', q{
	UPDATE tasker_workflow_step_transitions x SET attempt_started_at = p.created_at
	  FROM tasker_workflow_step_transitions p
	 WHERE x.to_state = 'complete' AND p.workflow_step_id = x.workflow_step_id AND p.to_state = 'in_progress';
	UPDATE tasker_task_transitions x SET task_created_at = t.created_at
	  FROM tasker_tasks t WHERE x.to_state = 'complete' AND t.task_id = x.task_id;
	VACUUM ANALYZE tasker_workflow_step_transitions, tasker_task_transitions;
});
$log_start = -s $node->logfile;
my $answers = $node->safe_psql('history', q{
	LOAD 'auto_explain';
	SET auto_explain.log_min_duration = 0;
	SET auto_explain.log_nested_statements = on;
	SELECT (SELECT array_agg(x::text) FROM tasker_slowest_steps(now() - interval '30 days') x)
	     = (SELECT array_agg(x::text) FROM (SELECT * FROM tasker_slowest_steps(now() - interval '30 days', 1001) LIMIT 10) x),
	       (SELECT array_agg(x::text) FROM tasker_slowest_tasks(now() - interval '30 days') x)
	     = (SELECT array_agg(x::text) FROM (SELECT * FROM tasker_slowest_tasks(now() - interval '30 days', 1001) LIMIT 10) x);
});
is($answers, 't|t', 'the duration indexes give the window\'s answer, for steps and tasks');
$log = slurp_file($node->logfile, $log_start);
@plans = split /(?=LOG:  duration:)/, $log;
ok(scalar(grep { /tasker_step_transitions_duration_idx/ } @plans), 'the slowest steps read the duration index');
ok(scalar(grep { /tasker_task_transitions_duration_idx/ } @plans), 'the slowest tasks read theirs');

$node->stop;
done_testing();
