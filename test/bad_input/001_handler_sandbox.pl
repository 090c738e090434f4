# 001_handler_sandbox.pl: issue 15 A1, A2, A6, B8, B9 and B12.  A hostile
# role cannot become superuser through tasker, no handler leaves session
# state behind, no catalog row crashes a worker, nested calls from
# handlers work or fail cleanly, and one poisoned row stops nobody else.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('sandbox');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 1
tasker.poll_interval = 100
tasker.max_backoff = 1
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE ROLE mallory LOGIN;
	CREATE ROLE alice LOGIN;
	-- The README's grants: EXECUTE on tasker's functions, SELECT to read.
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO mallory, alice;
	GRANT SELECT ON ALL TABLES IN SCHEMA public TO mallory, alice;
	CREATE SCHEMA evil AUTHORIZATION mallory;
	CREATE SCHEMA m AUTHORIZATION mallory;
	CREATE TABLE public.seen (step text, search_path text, statement_timeout text,
	                          lock_timeout text, advisory_locks bigint, who text);
	GRANT INSERT ON public.seen TO mallory, alice;
	CREATE FUNCTION public.see(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.seen SELECT step->>'step_name', current_setting('search_path'),
			current_setting('statement_timeout'), current_setting('lock_timeout'),
			-- not tasker's own claim intent locks on tasks (class 1952539499)
			(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
			    AND NOT (classid = 1952539499 AND objsubid = 2)),
			current_user;
		RETURN '{}';
	END $$;
});
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# Mallory's attack of the issue: functions that shadow pg_catalog's, and a
# handler that sets session state, takes a session advisory lock and points
# search_path at them.
$node->safe_psql('postgres', q{
	SET ROLE mallory;
	CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN pg_catalog.now();
	END $$;
	CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN
		EXECUTE 'ALTER ROLE mallory SUPERUSER';
		RETURN pg_catalog.clock_timestamp();
	END $$;
	CREATE FUNCTION m.poison(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM set_config('search_path', 'evil, pg_catalog, public', false);
		PERFORM set_config('statement_timeout', '1ms', false);
		PERFORM set_config('lock_timeout', '1ms', false);
		PERFORM pg_advisory_lock(4242);
		RETURN '{}';
	END $$;
	CREATE FUNCTION m.temp_table(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		CREATE TEMP TABLE left_behind (x int);
		RETURN '{}';
	END $$;
	SELECT tasker_register_template($y$
name: poison
step_templates:
  - name: a
    handler_class: m.poison
  - name: b
    handler_class: public.see
    depends_on_step: a
$y$);
	SELECT tasker_register_template($y$
name: temp_table
step_templates:
  - name: t
    handler_class: m.temp_table
    default_retryable: false
$y$);
	RESET ROLE;
	SELECT tasker_register_template($y$
name: admin_task
step_templates:
  - name: c
    handler_class: public.see
$y$);
});

my $poison = $node->safe_psql('postgres', "SET ROLE mallory; SELECT tasker_create_task('poison')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $poison"),
	'the poisoning task completes under the workers');
my $admin = $node->safe_psql('postgres', "SELECT tasker_create_task('admin_task')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $admin"),
	'a superuser task runs after it');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	'f', 'A1: mallory did not make herself superuser through tasker');
is($node->safe_psql('postgres', q{SELECT string_agg(format('%s|%s|%s|%s|%s|%s', step, search_path,
		statement_timeout, lock_timeout, advisory_locks, who), ';' ORDER BY step) FROM seen}),
	'b|"$user", public|0|0|0|mallory;c|"$user", public|0|0|0|postgres',
	'A1: later handlers see none of the settings or advisory locks of an earlier one, and run as their owners');
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE l.locktype = 'advisory' AND a.backend_type = 'tasker worker'}),
	'0', 'A1: the worker holds no advisory lock a handler took');

my $tt = $node->safe_psql('postgres', "SET ROLE mallory; SELECT tasker_create_task('temp_table')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'error' FROM tasker_tasks WHERE task_id = $tt"),
	'A1: a handler that creates a temporary table fails');
like($node->safe_psql('postgres',
		"SELECT results->'error'->>'message' FROM tasker_workflow_steps WHERE task_id = $tt"),
	qr/security-restricted operation/, 'A1: temporary objects are refused inside a handler');

# A2: users cannot write tasker's tables.
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE mallory; UPDATE tasker_named_tasks SET owner = 'postgres'::regrole::oid");
like($err, qr/permission denied for table tasker_named_tasks/,
	'A2: with the README grants a role cannot rewrite a template owner');

# A2: a role without table privileges of its own uses the reporting
# functions through the reader level (issue 13: they run as the caller,
# so that row-level security applies, and tasker_reader may SELECT).
$node->safe_psql('postgres', q{CREATE ROLE exec_only IN ROLE tasker_reader});
is($node->safe_psql('postgres', qq{SET ROLE exec_only;
		SELECT (SELECT count(*) FROM tasker_step_readiness_status($admin))
		     + (SELECT count(*) FROM tasker_task_execution_context($admin))
		     + (SELECT count(*) FROM tasker_dependency_levels($admin))}),
	'3', 'A2: readiness, context and levels work for a member of tasker_reader');

# A2: a stored handler of another signature is refused, not called.
$node->safe_psql('postgres', q{
	SELECT tasker_register_template($y$
name: retargeted
step_templates:
  - name: r
    handler_class: public.see
$y$);
	UPDATE tasker_named_tasks_named_steps SET handler_function = 'pg_catalog.textlen(text)'::regprocedure
	 WHERE named_task_id = (SELECT named_task_id FROM tasker_named_tasks WHERE name = 'retargeted');
});
my $rt = $node->safe_psql('postgres', "SELECT tasker_create_task('retargeted')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'error' FROM tasker_tasks WHERE task_id = $rt"),
	'A2: a step whose stored handler has the wrong signature fails');
like($node->safe_psql('postgres',
		"SELECT results->'error'->>'message' || ' / ' || (results->'error'->>'permanent') FROM tasker_workflow_steps WHERE task_id = $rt"),
	qr/step handler textlen\(text\) cannot be called \/ true/, 'A2: ... for good, with a clear message');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time,
	'A2: no backend crashed (the server never restarted)');

# A6: a role may drive and control only tasks whose template owner it has
# the privileges of.
$node->safe_psql('postgres', q{ALTER SYSTEM SET tasker.enabled = off; SELECT pg_reload_conf()});
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'running'");
my $su_task = $node->safe_psql('postgres', "SELECT tasker_create_task('admin_task')");
($rc, $out, $err) = $node->psql('postgres', "SET ROLE mallory; SELECT tasker_run_task($su_task)");
like($err, qr/permission denied to run task $su_task/, 'A6: mallory cannot run a superuser\'s task');
($rc, $out, $err) = $node->psql('postgres', "SET ROLE mallory; SELECT tasker_cancel_task($su_task)");
like($err, qr/permission denied to cancel task $su_task/, 'A6: nor cancel it');
is($node->safe_psql('postgres', "SET ROLE mallory; SELECT tasker_run_steps(10)"), '0',
	'A6: tasker_run_steps run by mallory claims none of the superuser\'s steps');
is($node->safe_psql('postgres', "SELECT current_state FROM tasker_workflow_steps WHERE task_id = $su_task"),
	'pending', 'A6: the superuser\'s step is untouched');
is($node->safe_psql('postgres', "SELECT tasker_run_task($su_task)"), 'complete',
	'A6: its owner runs it');

# B8: handlers that call controls and runs.
$node->safe_psql('postgres', q{
	CREATE TABLE victims (task_id bigint);
	CREATE FUNCTION public.cancel_other(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM tasker_cancel_task(task_id, 'cancelled by a handler') FROM public.victims;
		RETURN '{}';
	END $$;
	CREATE FUNCTION public.cancel_self(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM tasker_cancel_task((step->>'task_id')::bigint, 'cancelled by itself');
		RETURN '{}';
	END $$;
	CREATE FUNCTION public.run_self(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM tasker_run_task((step->>'task_id')::bigint);
		RETURN '{}';
	END $$;
	CREATE FUNCTION public.run_steps(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM tasker_run_steps(5);
		RETURN '{}';
	END $$;
	SELECT tasker_register_template(format($y$
name: %s
step_templates:
  - name: s
    handler_class: public.%s
    default_retryable: false
$y$, n, n)) FROM unnest(ARRAY['cancel_other', 'cancel_self', 'run_self', 'run_steps']) n;
});
my $killer = $node->safe_psql('postgres', "SELECT tasker_create_task('cancel_other')");
my $victim = $node->safe_psql('postgres', "SELECT tasker_create_task('admin_task')");
$node->safe_psql('postgres', "INSERT INTO victims VALUES ($victim)");
is($node->safe_psql('postgres', 'SELECT tasker_run_steps(10)'), '2',
	'B8: one batch claims both the cancelling task and its victim');
is($node->safe_psql('postgres', "SELECT string_agg(current_state, ',' ORDER BY task_id) FROM tasker_tasks WHERE task_id IN ($killer, $victim)"),
	'complete,cancelled', 'B8: the handler\'s cancel takes effect and its own task completes');
is($node->safe_psql('postgres', "SELECT current_state FROM tasker_workflow_steps WHERE task_id = $victim"),
	'cancelled', 'B8: the victim\'s claimed step was skipped, not quarantined');

my $selfc = $node->safe_psql('postgres', "SELECT tasker_create_task('cancel_self')");
is($node->safe_psql('postgres', "SELECT tasker_run_task($selfc)"), 'cancelled',
	'B8: a handler that cancels its own task leaves it cancelled');

for my $name ('run_self', 'run_steps') {
	my $t = $node->safe_psql('postgres', "SELECT tasker_create_task('$name')");
	is($node->safe_psql('postgres', "SELECT tasker_run_task($t)"), 'error',
		"B8: a handler calling $name fails its step");
	my $fn = $name eq 'run_self' ? 'tasker_run_task' : 'tasker_run_steps';
	like($node->safe_psql('postgres', "SELECT results->'error'->>'message' FROM tasker_workflow_steps WHERE task_id = $t"),
		qr/$fn cannot be called from a step handler/, "B8: ... with a clear error");
}

# B12: a step timeout never outlives its handler, even when the handler
# tried to nest a run.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.nest_and_catch(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		BEGIN
			PERFORM tasker_run_task((step->>'task_id')::bigint);
		EXCEPTION WHEN object_not_in_prerequisite_state THEN NULL;
		END;
		RETURN '{}';
	END $$;
	SELECT tasker_register_template($y$
name: nest_and_catch
step_templates:
  - name: s
    handler_class: public.nest_and_catch
    timeout_seconds: 1
$y$);
});
my $nest = $node->safe_psql('postgres', "SELECT tasker_create_task('nest_and_catch')");
($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = 0; SELECT tasker_run_task($nest), pg_sleep(2.5)");
is($rc, 0, 'B12: the statement that ran the task is not cancelled by the step\'s timeout');
like($out, qr/^complete\|/, 'B12: the task completed');

# B9: context and results are bounded; a poisoned row stops nobody else.
($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_create_task('admin_task', jsonb_build_object('blob', repeat('x', 9 * 1024 * 1024)))");
like($err, qr/task context is too large/, 'B9: an oversized context is refused at creation');
like($err, qr/tasker.max_context_size allows 8192 kB/, 'B9: ... naming the setting');
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.big(step jsonb) RETURNS jsonb LANGUAGE sql AS
		$$ SELECT jsonb_build_object('blob', repeat('x', 9 * 1024 * 1024)) $$;
	SELECT tasker_register_template($y$
name: big_results
step_templates:
  - name: s
    handler_class: public.big
$y$);
});
my $big = $node->safe_psql('postgres', "SELECT tasker_create_task('big_results')");
is($node->safe_psql('postgres', "SELECT tasker_run_task($big)"), 'error',
	'B9: a step returning oversized results fails');
like($node->safe_psql('postgres', "SELECT results->'error'->>'message' || ' / ' || (results->'error'->>'permanent') FROM tasker_workflow_steps WHERE task_id = $big"),
	qr/step results are too large: \d+ bytes \/ true/, 'B9: ... for good, without storing them');

my $pill = $node->safe_psql('postgres', "SELECT tasker_create_task('admin_task')");
my $good = $node->safe_psql('postgres', "SELECT tasker_create_task('admin_task')");
# A row no envelope can be built for (attempt + 1 overflows).
$node->safe_psql('postgres', "UPDATE tasker_workflow_steps SET attempts = 2147483647, retry_limit = 2147483647 WHERE task_id = $pill");
$node->safe_psql('postgres', q{ALTER SYSTEM SET tasker.enabled = on; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $good"),
	'B9: the workers run other tasks past a poisoned step');
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'error' FROM tasker_tasks WHERE task_id = $pill"),
	'B9: the poisoned step is quarantined at claim time');
like($node->safe_psql('postgres', "SELECT results->'error'->>'message' FROM tasker_workflow_steps WHERE task_id = $pill"),
	qr/tasker could not run the step: integer out of range/, 'B9: ... with the reason in its results');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_time,
	'no backend crashed during the whole test');

done_testing();
