# 060_privilege_levels.pl: issue 13, privileges.  The four levels
# (tasker_admin, tasker_operator, tasker_reader, tasker_worker) each do
# what their level allows and get SQLSTATE 42501 for anything else; a role
# with no level gets 42501 everywhere but the few public helpers; handlers
# run as the role that registered their template; a handler must be a
# function the registering role may execute, and not a SECURITY DEFINER
# function of a role whose privileges it lacks.  Steps run in-session
# (tasker_run_task) and external-worker steps through the SQL protocol,
# so no preload is needed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('levels');
$node->init;
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE ROLE adm LOGIN IN ROLE tasker_admin;
	CREATE ROLE adm2 LOGIN IN ROLE tasker_admin;
	CREATE ROLE op LOGIN IN ROLE tasker_operator;
	CREATE ROLE rd LOGIN IN ROLE tasker_reader;
	CREATE ROLE wk LOGIN IN ROLE tasker_worker;
	CREATE ROLE nobody LOGIN;
	CREATE TABLE public.ledger (step text, ran_as text);
	GRANT INSERT ON public.ledger TO PUBLIC;
	CREATE SCHEMA h AUTHORIZATION adm;
	GRANT USAGE ON SCHEMA h TO PUBLIC;
	CREATE SCHEMA h2 AUTHORIZATION adm2;
	GRANT USAGE ON SCHEMA h2 TO PUBLIC;
	CREATE SCHEMA su;
	GRANT USAGE ON SCHEMA su TO PUBLIC;
	-- A superuser's SECURITY DEFINER function anyone may execute.
	CREATE FUNCTION su.definer(step jsonb) RETURNS jsonb LANGUAGE sql SECURITY DEFINER
	    SET search_path = pg_catalog AS $$
		INSERT INTO public.ledger VALUES ('su.definer', current_user);
		SELECT '{}'::jsonb $$;
	SET ROLE adm;
	CREATE FUNCTION h.note(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO public.ledger VALUES (step->>'step_name', current_user);
		SELECT '{"ok": true}'::jsonb $$;
	CREATE FUNCTION h.own_definer(step jsonb) RETURNS jsonb LANGUAGE sql SECURITY DEFINER
	    SET search_path = pg_catalog AS $$ SELECT '{}'::jsonb $$;
	CREATE FUNCTION h.later_definer(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT '{}'::jsonb $$;
	CREATE FUNCTION h.private(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	REVOKE EXECUTE ON FUNCTION h.private(jsonb) FROM PUBLIC;
	SET ROLE adm2;
	CREATE FUNCTION h2.definer(step jsonb) RETURNS jsonb LANGUAGE sql SECURITY DEFINER
	    SET search_path = pg_catalog AS $$ SELECT '{}'::jsonb $$;
	RESET ROLE;
});

# sqlstate ROLE SQL: '' when SQL succeeds as ROLE, else its SQLSTATE.
sub sqlstate
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET ROLE $role;\n$sql", on_error_stop => 1);
	return '' if $rc == 0;
	return $1 if $err =~ /ERROR:  ([0-9A-Z]{5}):/;
	return "failed without SQLSTATE: $err";
}

# check ROLE, SQL, EXPECTED, NAME: the call gives EXPECTED ('' = success).
sub check
{
	my ($role, $sql, $expected, $name) = @_;
	is(sqlstate($role, $sql), $expected, "$role: $name");
}

sub template
{
	my ($name, $class) = @_;
	return "\$y\$\nname: $name\nstep_templates:\n  - {name: s, handler_class: \"$class\"}\n\$y\$";
}

# ---------------------------------------------------------------------
# admin: templates and handlers, and everything an operator does.
# ---------------------------------------------------------------------
check('adm', 'SELECT tasker_register_template(' . template('work', 'h.note') . ')', '',
	'registers a template');
check('adm', "SELECT tasker_register_handler('Work::Note', 'h.note(jsonb)')", '',
	'registers a handler class');
check('adm', "SELECT tasker_register_handler('Remote::Work', 'remote')", '',
	'maps a class to an external worker queue');
check('adm', q{SELECT tasker_register_template($y$
name: remote
step_templates:
  - {name: r, handler_class: "Remote::Work"}
$y$)}, '', 'registers a template with a worker step');
check('adm', "SELECT tasker_create_task('work')", '', 'creates tasks (operator level)');
check('adm', 'SELECT count(*) FROM tasker_tasks', '', 'reads the tables (reader level)');
check('adm', "SELECT * FROM tasker_claim_steps('remote', 'w1')", '42501',
	'does not claim steps (worker level)');
check('adm', "SELECT tasker_transition_task(1, 'cancelled', '{}')", '42501',
	'does not move a task around the state machine\'s checks');
check('adm', "SELECT tasker_grant_namespace('adm', 'default', 'admin')", '42501',
	'does not grant namespaces');
check('adm', "UPDATE tasker_tasks SET current_state = 'complete'", '42501',
	'does not write the tables');

# ---------------------------------------------------------------------
# operator: creates tasks and controls every task, registers nothing.
# ---------------------------------------------------------------------
my $adm_task = $node->safe_psql('postgres', "SET ROLE adm; SELECT tasker_create_task('work')");
check('op', 'SELECT tasker_register_template(' . template('op_work', 'h.note') . ')', '42501',
	'does not register templates');
check('op', "SELECT tasker_register_handler('Op::Note', 'h.note(jsonb)')", '42501',
	'does not register handlers');
check('op', "SELECT tasker_create_task('work')", '', 'creates tasks');
check('op', "SELECT tasker_cancel_task($adm_task, 'operator says so')", '',
	'cancels a task of another role\'s template');
my $op_task = $node->safe_psql('postgres', "SET ROLE op; SELECT tasker_create_task('work')");
check('op', "SELECT tasker_run_task($op_task)", '', 'runs a task in its session');
is($node->safe_psql('postgres', "SELECT string_agg(step || ' as ' || ran_as, ',') FROM ledger"),
	's as adm', 'the handler ran as the template\'s owner, not as the operator');
my $resolve_task = $node->safe_psql('postgres', "SET ROLE op; SELECT tasker_create_task('work')");
check('op', "SELECT tasker_resolve_step($resolve_task, 's', '{\"by\": \"hand\"}', 'test')", '',
	'resolves a step');
check('op', 'SELECT count(*) FROM tasker_workflow_step_transitions', '', 'reads the tables');
check('op', 'SELECT * FROM tasker_health()', '', 'reads the health');
check('op', "SELECT * FROM tasker_claim_steps('remote', 'w1')", '42501', 'does not claim steps');
check('op', "DELETE FROM tasker_tasks", '42501', 'does not write the tables');

# ---------------------------------------------------------------------
# reader: sees tables, views, reports and health; changes nothing.
# ---------------------------------------------------------------------
check('rd', 'SELECT count(*) FROM tasker_tasks JOIN tasker_workflow_steps USING (task_id)', '',
	'reads the runtime tables');
check('rd', 'SELECT count(*) FROM tasker_templates, tasker_step_dag_relationships', '',
	'reads the views');
check('rd', "SELECT tasker_task_summary($op_task)", '', 'reads a task summary');
check('rd', "SELECT * FROM tasker_task_execution_context($op_task)", '',
	'reads the execution context');
check('rd', 'SELECT * FROM tasker_health()', '', 'reads the health');
check('rd', 'SELECT * FROM tasker_analytics_metrics()', '', 'reads the analytics');
check('rd', 'SELECT * FROM tasker_worker_status()', '', 'reads the workers\' status');
check('rd', "SELECT tasker_create_task('work')", '42501', 'does not create tasks');
check('rd', "SELECT tasker_cancel_task($resolve_task)", '42501', 'does not cancel tasks');
check('rd', "SELECT tasker_retry_task($op_task)", '42501', 'does not retry tasks');
check('rd', 'SELECT tasker_register_template(' . template('rd_work', 'h.note') . ')', '42501',
	'does not register templates');
check('rd', "SELECT * FROM tasker_claim_steps('remote', 'w1')", '42501', 'does not claim steps');
check('rd', "INSERT INTO tasker_task_namespaces (name) VALUES ('x')", '42501',
	'does not write the tables');

# ---------------------------------------------------------------------
# worker: the claim protocol and nothing else.
# ---------------------------------------------------------------------
my $remote = $node->safe_psql('postgres', "SET ROLE adm; SELECT tasker_create_task('remote')");
my $claim = $node->safe_psql('postgres',
	"SET ROLE wk; SELECT step_id || ' ' || claim_token FROM tasker_claim_steps('remote', 'w1')");
like($claim, qr/^\d+ [0-9a-f-]{36}$/, 'wk: claims a step of its queue');
my ($step_id, $token) = split / /, $claim;
check('wk', "SELECT tasker_extend_lease($step_id, '$token', '1 minute')", '', 'extends its lease');
check('wk', "SELECT tasker_complete_step($step_id, '$token', '{\"done\": true}')", '',
	'completes it');
check('wk', 'SELECT count(*) FROM tasker_tasks', '42501', 'does not read the tables');
check('wk', "SELECT tasker_task_summary($remote)", '42501', 'does not read summaries');
check('wk', 'SELECT * FROM tasker_health()', '42501', 'does not read the health');
check('wk', "SELECT tasker_create_task('work')", '42501', 'does not create tasks');
check('wk', "SELECT tasker_cancel_task($remote)", '42501', 'does not cancel tasks');
check('wk', 'SELECT tasker_register_template(' . template('wk_work', 'h.note') . ')', '42501',
	'does not register templates');

# ---------------------------------------------------------------------
# A role with no level: nothing but the public helpers.
# ---------------------------------------------------------------------
for my $case (
	["SELECT tasker_create_task('work')", 'tasker_create_task'],
	["SELECT tasker_cancel_task($remote)", 'tasker_cancel_task'],
	["SELECT tasker_run_steps(10)", 'tasker_run_steps'],
	['SELECT tasker_register_template(' . template('x', 'h.note') . ')', 'tasker_register_template'],
	["SELECT tasker_register_handler('X', 'h.note(jsonb)')", 'tasker_register_handler'],
	["SELECT * FROM tasker_claim_steps('remote', 'w1')", 'tasker_claim_steps'],
	["SELECT * FROM tasker_task_execution_context($remote)", 'tasker_task_execution_context'],
	["SELECT * FROM tasker_step_readiness_status($remote)", 'tasker_step_readiness_status'],
	["SELECT tasker_task_summary($remote)", 'tasker_task_summary'],
	['SELECT * FROM tasker_health()', 'tasker_health'],
	['SELECT * FROM tasker_worker_status()', 'tasker_worker_status'],
	['SELECT count(*) FROM tasker_tasks', 'the tasks table'],
	['SELECT count(*) FROM tasker_templates', 'the templates view'],
	['SELECT count(*) FROM tasker_namespace_grants', 'the namespace grants'],
	["SELECT tasker_publish_event('x', '{}')", 'tasker_publish_event'])
{
	check('nobody', $case->[0], '42501', "PUBLIC gets nothing from $case->[1]");
}
check('nobody', "SELECT count(*) FROM tasker_allowed_transitions('task')", '',
	'the state machine\'s transitions are public');
check('nobody', q{SELECT tasker_validate_json('{"type": "object"}', '{}')}, '',
	'JSON Schema validation is public');

# ---------------------------------------------------------------------
# Handler functions: EXECUTE needed, no borrowed SECURITY DEFINER.
# ---------------------------------------------------------------------
check('adm', "SELECT tasker_register_handler('Private', 'h.private(jsonb)')", '',
	'the owner of a function without PUBLIC EXECUTE may register it');
check('adm2', "SELECT tasker_register_handler('Private2', 'h.private(jsonb)')", '42501',
	'another role without EXECUTE on it may not');
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE adm; SELECT tasker_register_handler('Definer', 'su.definer(jsonb)')");
like($err, qr/ERROR:  permission denied to register function su\.definer\(jsonb\) as a step handler/,
	'adm: a superuser\'s SECURITY DEFINER function is refused as a handler');
like($err, qr/DETAIL:  .*SECURITY DEFINER and belongs to role "\w+", whose privileges role "adm" does not have/,
	'the detail says why');
check('adm', 'SELECT tasker_register_handler(\'Definer\', \'su.definer(jsonb)\')', '42501',
	'... with 42501');
check('adm', 'SELECT tasker_register_template(' . template('definer_direct', 'su.definer') . ')',
	'42501', 'naming it directly in a template is refused too');
check('adm', 'SELECT tasker_register_template(' . template('definer_other', 'h2.definer') . ')',
	'42501', 'so is another (non-superuser) role\'s SECURITY DEFINER function');
check('adm2', 'SELECT tasker_register_template(' . template('definer_own', 'h2.definer') . ')',
	'', 'the function\'s owner registers its own SECURITY DEFINER function');
check('adm', 'SELECT tasker_register_template(' . template('own_definer', 'h.own_definer') . ')',
	'', 'and so does adm with its own');
is(sqlstate('postgres', 'SELECT tasker_register_template(' . template('su_definer', 'su.definer') . ')'),
	'', 'a superuser may register any SECURITY DEFINER function');
is($node->safe_psql('postgres', q{SELECT count(*) FROM tasker_named_tasks
		WHERE name IN ('definer_direct', 'definer_other')}), '0',
	'nothing of the refused templates is stored');

# A function that becomes a superuser's SECURITY DEFINER after
# registration is refused before it is called.
check('adm', 'SELECT tasker_register_template(' . template('later', 'h.later_definer') . ')', '',
	'adm registers a template with a plain function');
$node->safe_psql('postgres', q{
	ALTER FUNCTION h.later_definer(jsonb) SECURITY DEFINER;
	ALTER FUNCTION h.later_definer(jsonb) OWNER TO adm2;
});
my $later = $node->safe_psql('postgres', "SET ROLE adm; SELECT tasker_create_task('later')");
is($node->safe_psql('postgres', "SET ROLE adm; SELECT tasker_run_task($later)"), 'error',
	'the task fails instead of running the function as adm2');
like($node->safe_psql('postgres',
		"SELECT results->'error'->>'message' FROM tasker_workflow_steps WHERE task_id = $later"),
	qr/step handler h\.later_definer\(jsonb\) cannot be called/, 'the step says why');

# The levels survive in another database of the cluster.
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION tasker');
is($node->safe_psql('other', q{SELECT has_function_privilege('op',
		'tasker_create_task(text, jsonb, text, text, text, text, text, text[], text[], timestamptz, text, integer, text)', 'EXECUTE')}),
	't', 'a second database\'s CREATE EXTENSION finds the roles and grants them');

done_testing();
