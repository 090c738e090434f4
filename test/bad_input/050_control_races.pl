# 050_control_races.pl (issue 15 C16/C17): five sessions send random
# controls (cancel, retry, resolve, cancel a step, run a batch, create) at
# tasks the workers are running, for 20 seconds.  No session and no worker
# ever hits a deadlock (40P01), and afterwards tasker_check() finds no task
# that breaks an invariant.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('control_races');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.batch_size = 5
tasker.poll_interval = 100
tasker.max_backoff = 1
deadlock_timeout = 50ms
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE TABLE outcomes (action text, sqlstate text);
	CREATE FUNCTION work(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(random() * 0.02);
		IF random() < 0.2 THEN
			RAISE EXCEPTION 'random failure';
		END IF;
		RETURN '{}';
	END $$;
	SELECT tasker_register_template($y$
name: fan
step_templates:
  - {name: a, handler_class: work, default_retry_limit: 2}
  - {name: b1, handler_class: work, depends_on_step: a, default_retry_limit: 2}
  - {name: b2, handler_class: work, depends_on_step: a, default_retry_limit: 2}
  - {name: b3, handler_class: work, depends_on_step: a, default_retry_limit: 2}
  - {name: c, handler_class: work, depends_on_steps: [b1, b2, b3], default_retry_limit: 2}
$y$);
	SELECT tasker_create_task('fan') FROM generate_series(1, 20);

	-- One control per transaction, on a random recent task or step.
	CREATE PROCEDURE races(seconds int) LANGUAGE plpgsql AS $$
	DECLARE
		stop timestamptz := clock_timestamp() + seconds * interval '1 second';
		task bigint;
		step bigint;
		action text;
		state text;
	BEGIN
		WHILE clock_timestamp() < stop LOOP
			SELECT t.task_id INTO task FROM tasker_tasks t
			 ORDER BY t.task_id DESC OFFSET floor(random() * 20)::int LIMIT 1;
			SELECT s.workflow_step_id INTO step FROM tasker_workflow_steps s
			 WHERE s.task_id = task ORDER BY random() LIMIT 1;
			action := (ARRAY['cancel_task', 'retry_task', 'resolve_step',
			                 'cancel_step', 'run_steps', 'create_task'])[1 + floor(random() * 6)::int];
			state := '00000';
			BEGIN
				CASE action
					WHEN 'cancel_task' THEN PERFORM tasker_cancel_task(task, 'race');
					WHEN 'retry_task' THEN PERFORM tasker_retry_task(task, 'race');
					WHEN 'resolve_step' THEN PERFORM tasker_resolve_step(step, '{}', reason => 'race');
					WHEN 'cancel_step' THEN PERFORM tasker_cancel_step(step);
					WHEN 'run_steps' THEN PERFORM tasker_run_steps(5);
					ELSE PERFORM tasker_create_task('fan');
				END CASE;
			EXCEPTION WHEN OTHERS THEN
				state := SQLSTATE;
			END;
			INSERT INTO outcomes VALUES (action, state);
			COMMIT;
		END LOOP;
	END $$;
});

my @sessions;
for my $i (1 .. 5)
{
	my ($out, $err) = ('', '');
	push @sessions, IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', 'CALL races(20)' ],
		'>', \$out, '2>', \$err);
}
$_->finish for @sessions;

my $counts = $node->safe_psql('postgres',
	"SELECT string_agg(sqlstate || '=' || n, ' ' ORDER BY sqlstate) FROM (SELECT sqlstate, count(*) n FROM outcomes GROUP BY 1) c");
note "control outcomes: $counts";
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM outcomes"), '>', 100,
	'the sessions sent many controls');
is($node->safe_psql('postgres', "SELECT count(*) FROM outcomes WHERE sqlstate = '40P01'"),
	'0', 'no control hit a deadlock');
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT sqlstate, ',') FROM outcomes WHERE sqlstate NOT IN ('00000', '55000')"),
	'', 'the controls that failed were refused for the state of their task or step only');

# Let the workers settle what is still running, then look for invariants.
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM tasker_tasks WHERE current_state IN ('pending', 'in_progress')")
  or diag('tasks still running: '
	  . $node->safe_psql('postgres', "SELECT count(*) FROM tasker_tasks WHERE current_state IN ('pending', 'in_progress')"));
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_check()"), '0',
	'tasker_check() finds no task that breaks an invariant')
  or diag($node->safe_psql('postgres', "SELECT * FROM tasker_check() LIMIT 10"));

my $log = slurp_file($node->logfile);
my $deadlocks = () = $log =~ /deadlock detected/g;
is($deadlocks, 0, 'the server log records no deadlock');

$node->stop;
done_testing();
