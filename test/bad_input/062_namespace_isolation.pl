# 062_namespace_isolation.pl: issue 13, tenant isolation.  With
# tasker.namespace_isolation on, a role sees (by direct SELECT, through
# the views and through the reports) and acts on only the namespaces
# granted to it with tasker_grant_namespace, at the level granted; a
# superuser sees everything; a role cannot turn isolation off.  Tasks run
# in-session, so no preload is needed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('isolation');
$node->init;
$node->append_conf('postgresql.conf', "tasker.namespace_isolation = on\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE ROLE ann LOGIN IN ROLE tasker_admin;
	CREATE ROLE ben LOGIN IN ROLE tasker_admin;
	CREATE ROLE opa LOGIN IN ROLE tasker_operator;
	CREATE ROLE rea LOGIN IN ROLE tasker_reader;
	CREATE ROLE rea_member LOGIN IN ROLE rea;
	CREATE ROLE wka LOGIN IN ROLE tasker_worker;
	CREATE ROLE nob LOGIN IN ROLE tasker_reader;
	SELECT tasker_grant_namespace('ann', 'a', 'admin');
	SELECT tasker_grant_namespace('ben', 'b', 'admin');
	SELECT tasker_grant_namespace('opa', 'a', 'operator');
	SELECT tasker_grant_namespace('rea', 'a', 'reader');
	CREATE FUNCTION public.ok(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
	CREATE FUNCTION public.fail(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT 1/0; SELECT '{}'::jsonb $$;
});

sub sqlstate
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET ROLE $role;\n$sql", on_error_stop => 1);
	return '' if $rc == 0;
	return $1 if $err =~ /ERROR:  ([0-9A-Z]{5}):/;
	return "failed without SQLSTATE: $err";
}

sub as_role
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', "SET ROLE $role; $sql");
}

sub template
{
	my ($ns) = @_;
	return "\$y\$\nname: job\nnamespace_name: $ns\nstep_templates:\n"
	  . "  - {name: first, handler_class: public.ok}\n"
	  . "  - {name: second, handler_class: public.fail, depends_on_step: first, default_retryable: false}\n\$y\$";
}

is($node->safe_psql('postgres', 'SHOW tasker.namespace_isolation'), 'on', 'isolation is on');

# Registration needs an admin grant on the namespace.
is(sqlstate('ann', 'SELECT tasker_register_template(' . template('a') . ')'), '',
	'ann registers in namespace a, granted to her');
is(sqlstate('ann', 'SELECT tasker_register_template(' . template('b') . ')'), '42501',
	'ann may not register in namespace b');
is(sqlstate('ben', 'SELECT tasker_register_template(' . template('b') . ')'), '',
	'ben registers in namespace b');

# Task creation needs an operator (or admin) grant.
my $ta = as_role('ann', "SELECT tasker_create_task('job', namespace => 'a')");
my $tb = as_role('ben', "SELECT tasker_create_task('job', namespace => 'b')");
is(as_role('ann', "SELECT tasker_run_task($ta)"), 'error', 'ann runs her task (its second step fails)');
is(as_role('ben', "SELECT tasker_run_task($tb)"), 'error', 'ben runs his');
$node->safe_psql('postgres', "INSERT INTO tasker_annotation_types (name) VALUES ('note');
	INSERT INTO tasker_task_annotations (task_id, annotation_type_id, annotation)
	SELECT t, (SELECT annotation_type_id FROM tasker_annotation_types WHERE name = 'note'), '{}'
	  FROM unnest(ARRAY[$ta, $tb]::bigint[]) t");
is(sqlstate('ben', "SELECT tasker_create_task('job', namespace => 'a')"), '42501',
	'ben may not create tasks in namespace a');
is(sqlstate('opa', "SELECT tasker_create_task('job', namespace => 'a')"), '',
	'opa, an operator of a, creates tasks there');
is(sqlstate('rea', "SELECT tasker_create_task('job', namespace => 'a')"), '42501',
	'rea, a reader, does not');

# Controls need an operator grant on the task's namespace.
is(sqlstate('opa', "SELECT tasker_retry_task($tb)"), '42501', 'opa may not retry a task of b');
is(sqlstate('ann', "SELECT tasker_cancel_task($tb)"), '42501', 'ann may not cancel a task of b');
is(sqlstate('ann', "SELECT tasker_run_task($tb)"), '42501', 'nor run it');
is(sqlstate('ann', 'SELECT tasker_run_steps(10)'), '42501',
	'a role that does not see every namespace may not run steps by the batch');
is(sqlstate('opa', "SELECT tasker_resolve_step($ta, 'second', '{}', 'by hand')"), '',
	'opa resolves a step of a task of a');

# Direct SELECTs on every runtime table: each role sees only its namespaces.
my @tables = split /\n/, $node->safe_psql('postgres', q{
	SELECT c.relname FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
	 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'tasker')
	   AND c.relkind = 'r'
	   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'task_id')
	 ORDER BY 1});
ok(@tables >= 5, 'the runtime tables are found: ' . join(', ', @tables));
for my $table (@tables)
{
	my $all = $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE task_id = $ta) || '/' || count(*) FILTER (WHERE task_id = $tb) FROM $table");
	my ($all_a, $all_b) = split m{/}, $all;
	next if $all_b == 0 && $all_a == 0;
	is(as_role('rea', "SELECT count(*) FILTER (WHERE task_id = $ta) || '/' || count(*) FILTER (WHERE task_id = $tb) FROM $table"),
		"$all_a/0", "rea sees the rows of namespace a in $table, none of b");
	is(as_role('rea_member', "SELECT count(*) FILTER (WHERE task_id = $tb) FROM $table"),
		'0', "a member of rea sees none of b in $table either");
	is(as_role('nob', "SELECT count(*) FROM $table"), '0', "nob, granted no namespace, sees nothing in $table");
	is(as_role('ben', "SELECT count(*) FILTER (WHERE task_id = $ta) || '/' || count(*) FILTER (WHERE task_id = $tb) FROM $table"),
		"0/$all_b", "ben sees b's rows and none of a's in $table");
}
is(as_role('rea_member', "SELECT count(*) FROM tasker_tasks WHERE task_id = $ta"), '1',
	'a member of rea sees namespace a, through the grant to rea');
is(sqlstate('postgres', "SELECT tasker_grant_namespace('wka', 'a', 'worker')"), '22023',
	'there is no worker level per namespace (workers are kept apart by queue)');
is(sqlstate('postgres', "SELECT tasker_grant_namespace('wka', '', 'reader')"), '22023',
	'an empty namespace is refused');
is(sqlstate('postgres', "SELECT tasker_grant_namespace(NULL, 'a', 'reader')"), '22004',
	'so is a NULL role');
is(sqlstate('ann', "SELECT tasker_grant_namespace('ann', 'b', 'admin')"), '42501',
	'only the owner grants namespaces');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_tasks WHERE task_id IN ($ta, $tb)"), '2',
	'a superuser sees both');

# Views and reports read through the same policies.
is(as_role('rea', "SELECT (count(*) FILTER (WHERE task_id = $ta) > 0) || ':' || count(*) FILTER (WHERE task_id = $tb) FROM tasker_step_dag_relationships"),
	'true:0', 'the DAG view shows rea the steps of a, none of b');
is(sqlstate('rea', "SELECT tasker_task_summary($tb)"), '42704',
	'a task of b does not exist for rea\'s summary');
is(as_role('rea', "SELECT tasker_task_summary($ta)->>'state'"), 'complete',
	'a task of a does (opa resolved its failed step)');
is(as_role('rea', "SELECT count(*) FROM tasker_task_execution_context(ARRAY[$ta, $tb])"), '1',
	'the execution context of both tasks shows one to rea');
is(as_role('rea', "SELECT count(*) FROM tasker_step_readiness_status($tb)"), '0',
	'readiness of a task of b shows nothing');
is(as_role('rea', "SELECT total_tasks FROM tasker_system_health()"), '2',
	'system health counts the tasks rea sees (its own and opa\'s of a)');
is($node->safe_psql('postgres', "SELECT total_tasks FROM tasker_system_health()"), '3',
	'a superuser\'s counts all three');
is(as_role('rea', "SELECT count(*) FROM tasker_dependency_levels($tb)"), '0',
	'dependency levels of a task of b show nothing');

# The durable event log, through tasker_events_since and directly.
is($node->safe_psql('postgres', q{SELECT count(*) FILTER (WHERE event->>'namespace' = 'a') > 0
		AND count(*) FILTER (WHERE event->>'namespace' = 'b') > 0 FROM tasker_events_since(0, 100000)}),
	't', 'a superuser reads the events of both namespaces');
is(as_role('rea', q{SELECT count(*) FILTER (WHERE event->>'namespace' = 'a') > 0
		AND count(*) FILTER (WHERE event->>'namespace' IS DISTINCT FROM 'a') = 0 FROM tasker_events_since(0, 100000)}),
	't', 'tasker_events_since shows rea the events of a and no other');
is(as_role('rea', q{SELECT count(*) FILTER (WHERE event->>'namespace' = 'a') > 0
		AND count(*) FILTER (WHERE event->>'namespace' IS DISTINCT FROM 'a') = 0 FROM tasker_event_log}),
	't', 'and so does a direct SELECT on tasker_event_log');
is(as_role('nob', 'SELECT count(*) FROM tasker_events_since(0, 100000)'), '0',
	'nob reads no event');

# Metrics: a role that does not see every namespace gets the gauges of its
# namespaces' steps and none of the server-wide counters.
my $ready = q{SELECT value FROM tasker_metrics()
	WHERE name = 'tasker_ready_steps' AND labels->>'kind' = 'sql'};
my $all_before = $node->safe_psql('postgres', $ready);
my $rea_before = as_role('rea', $ready);
as_role('ben', "SELECT tasker_create_task('job', namespace => 'b')");
is($node->safe_psql('postgres', $ready), $all_before + 1, 'the superuser counts a new ready step of b');
is(as_role('rea', $ready), $rea_before, 'rea does not');
is(as_role('rea', q{SELECT count(*) FROM tasker_metrics()
		WHERE name LIKE '%_total' OR name LIKE 'tasker_step_duration%' OR name = 'tasker_http_requests_in_flight'}),
	'0', 'rea gets no server-wide counter');
is($node->safe_psql('postgres', q{SELECT count(*) > 0 FROM tasker_metrics() WHERE name LIKE '%_total'}),
	't', 'the superuser gets them');
as_role('opa', "SELECT tasker_create_task('job', namespace => 'a')");
is(as_role('rea', $ready), $rea_before + 1, 'rea counts a new ready step of a');
my $n = $rea_before + 1;
like(as_role('rea', 'SELECT tasker_metrics_prometheus()'), qr/^tasker_ready_steps\{kind="sql"\} $n$/m,
	'and so does the text format');

# Isolation is a superuser's setting.
is(sqlstate('rea', 'SELECT tasker_sees_all_namespaces(); SET tasker.namespace_isolation = off'), '42501',
	'a role cannot turn isolation off for its session');
is(as_role('rea', "SET tasker.namespace_isolation = off; SELECT count(*) FROM tasker_tasks WHERE task_id = $tb"), '0',
	'nor by setting it before the library is loaded (the placeholder is refused when it loads)');

# Revoking a grant takes the sight away.
$node->safe_psql('postgres', "SELECT tasker_revoke_namespace('rea', 'a')");
is(as_role('rea', 'SELECT count(*) FROM tasker_tasks'), '0', 'after the revoke rea sees nothing');

# With isolation off every reader sees every namespace again.
$node->safe_psql('postgres', 'ALTER SYSTEM SET tasker.namespace_isolation = off; SELECT pg_reload_conf()');
is(as_role('nob', "SELECT count(*) FROM tasker_tasks WHERE task_id IN ($ta, $tb)"), '2',
	'isolation off: a reader sees both namespaces');
is(sqlstate('opa', "SELECT tasker_retry_task($tb)"), '', 'and an operator controls any task');

done_testing();
