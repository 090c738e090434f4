# test/torture/torture.pl: the crash-and-load torture run (issue 13).
#
# For each seed, a fresh cluster runs a mixed workload while faults are
# injected at random moments drawn from the seed, then checks that nothing
# was lost or done twice.  The workload: TORTURE_TASKS tasks (default 300)
# of five templates, created by a client process throughout the run (in
# batches of 10, idempotent by identity key, retried after a fault):
#   diamond   four SQL steps writing ledger rows, one failing its first
#             attempt (a retry)
#   http      an SQL step, then an HTTP step against the loopback stub that
#             answers 503 with Retry-After the first time
#   worker    an external-worker step (a client process claiming and
#             completing, recording each run), then an SQL step
#   map       a map step over three items, each instance an SQL step
#   decision  a decision step choosing one of two branches, and a
#             convergence step
# Faults (TORTURE_FAULTS of them, default 6, every 1 to 4 s): SIGKILL of an
# executor, of the launcher, of the client's backend, or of the external
# worker; pg_ctl stop -m immediate then start; pg_terminate_backend of an
# executor; the HTTP stub stalled for 3 s (SIGSTOP, SIGCONT).
# Afterwards: every task is terminal and complete; every SQL step's ledger
# row exists exactly once; every HTTP step was requested at least once,
# always with its own Idempotency-Key (task_id-step_id), and every
# external step ran at least once; no step is in progress; every
# transition history is consistent (one most_recent row, the last; each
# from_state the previous to_state); tasker_check() is empty; the durable
# event log holds one event per step transition.  It prints
# the figures: tasks, faults by kind, crash recoveries, time to drain
# after the last fault.
#
#   test/torture/run                       one seed, the short run
#   TORTURE_SEEDS="1 2 ... 20" TORTURE_TASKS=2000 test/torture/run
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(:sys_wait_h);

my $tree = $ENV{TASKER_TREE} // '.';
my @seeds = split ' ', ($ENV{TORTURE_SEEDS} // '1');
my $ntasks = $ENV{TORTURE_TASKS} // 300;
my $nfaults = $ENV{TORTURE_FAULTS} // 6;

for my $seed (@seeds) { run_seed($seed); }
done_testing();

sub run_seed
{
	my ($seed) = @_;
	srand($seed);
	my $node = PostgreSQL::Test::Cluster->new("torture$seed");
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 2
restart_after_crash = on
});
	$node->start;
	my $portfile = $node->basedir . "/stub.port";
	my $stub = fork // die;
	if ($stub == 0)
	{
		exec('python3', "$tree/test/http_stub.py", $portfile) or die;
	}
	sleep 0.1 until -s $portfile;
	my $port = slurp_file($portfile);
	chomp $port;
	setup($node, $port);
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker'"),
		"seed $seed: executors up");

	my $t0 = time;
	my $client = spawn(sub { client($node) });
	my $worker = spawn(sub { external_worker($node) });
	my (%faults, $recoveries);
	my $last_fault = time;
	for my $i (1 .. $nfaults)
	{
		sleep(1 + rand(3));
		my @kinds = qw(executor launcher client_backend external_worker immediate terminate stall);
		my $kind = $kinds[int(rand(@kinds))];
		$worker = fault($node, $kind, $stub, $worker);
		$faults{$kind}++;
		$last_fault = time;
	}
	my $created = $node->poll_query_until('postgres',
		"SELECT count(*) >= $ntasks FROM tasker_tasks", 't');
	ok($created, "seed $seed: the client created its $ntasks tasks");
	waitpid($client, 0);
	my $drained = $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM tasker_tasks WHERE current_state IN ('pending', 'in_progress')", 't');
	my $drain = time - $last_fault;
	ok($drained, "seed $seed: every task is terminal");
	kill 'KILL', $worker;
	waitpid($worker, 0);
	check($node, $seed);
	$recoveries = () = slurp_file($node->logfile) =~ /all server processes terminated; reinitializing|database system is ready to accept connections/g;
	diag(sprintf("seed %s: %d tasks, %d faults (%s), %d start-ups and crash recoveries, drained %.1f s after the last fault, %.0f s in all",
			$seed, $ntasks, $nfaults,
			join(', ', map { "$_ $faults{$_}" } sort keys %faults),
			$recoveries, $drain, time - $t0));
	kill 'KILL', $stub;
	waitpid($stub, 0);
	$node->stop('immediate');
}

sub spawn
{
	my ($fn) = @_;
	my $pid = fork // die;
	if ($pid == 0) { $fn->(); POSIX::_exit(0); }
	return $pid;
}

sub setup
{
	my ($node, $port) = @_;
	$node->safe_psql('postgres', qq{
CREATE EXTENSION tasker;
CREATE TABLE ledger (task_id bigint, step text, at timestamptz DEFAULT clock_timestamp(),
                     PRIMARY KEY (task_id, step));
CREATE TABLE worker_runs (step_id bigint, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION ledger(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    IF step->>'step_name' = 'b' AND step->>'attempt' = '1' THEN
        RAISE EXCEPTION 'b fails its first attempt';
    END IF;
    INSERT INTO ledger (task_id, step)
    VALUES ((step->>'task_id')::bigint,
            (step->>'step_name') || COALESCE(':' || (step->>'item_index'), ''));
    RETURN '{}';
END \$\$;
CREATE FUNCTION choose(step jsonb) RETURNS jsonb LANGUAGE sql AS \$\$
    SELECT jsonb_build_object('next', CASE WHEN (step->'context'->>'n')::int % 2 = 0
                                           THEN '["x"]'::jsonb ELSE '["y"]'::jsonb END) \$\$;
});
	my @t = (
		"name: t_diamond\nstep_templates:\n  - {name: a, handler_class: ledger}\n  - {name: b, handler_class: ledger, depends_on_step: a}\n  - {name: c, handler_class: ledger, depends_on_step: a}\n  - {name: d, handler_class: ledger, depends_on_steps: [b, c]}\n",
		"name: t_http\nstep_templates:\n  - {name: s, handler_class: ledger}\n  - name: h\n    depends_on_step: s\n    default_retry_limit: 10\n    handler_config: {type: api, method: POST, timeout: 2, url: 'http://127.0.0.1:$port/flaky/503/seconds/1/{{context.n}}'}\n",
		"name: t_worker\nstep_templates:\n  - {name: w, handler_config: {type: worker, queue: tq}, default_retry_limit: 10}\n  - {name: s, handler_class: ledger, depends_on_step: w}\n",
		"name: t_map\nstep_templates:\n  - {name: m, handler_class: ledger, map_over: context.items}\n",
		"name: t_decision\nstep_templates:\n  - {name: d, handler_class: choose, type: decision, branches: [x, y]}\n  - {name: x, handler_class: ledger, depends_on_step: d}\n  - {name: y, handler_class: ledger, depends_on_step: d}\n  - {name: z, handler_class: ledger, depends_on_steps: [x, y]}\n",
	);
	for my $y (@t)
	{
		$node->safe_psql('postgres', "SELECT tasker_register_template(\$y\$$y\$y\$)");
	}
}

# client: create the tasks in batches of 10 (one transaction each), each
# batch retried until it commits; identity keys make a retry create none
# twice.
sub client
{
	my ($node) = @_;
	my @names = qw(t_diamond t_http t_worker t_map t_decision);
	for (my $i = 1; $i <= $ntasks; $i += 10)
	{
		my $last = $i + 9 > $ntasks ? $ntasks : $i + 9;
		my $sql = "SET application_name = 'torture-client'; BEGIN; "
		  . join(' ', map {
				"SELECT tasker_create_task('$names[$_ % 5]', '{\"n\": $_, \"items\": [1, 2, 3]}', identity_key => 'k$_');"
			} $i .. $last) . " COMMIT;";
		for (1 .. 200)
		{
			my ($rc) = $node->psql('postgres', $sql);
			last if $rc == 0;
			sleep 0.5;
		}
	}
}

# external_worker: claim up to 20 steps of queue tq, record each run,
# complete them; a lost lease (TK003) or a fault only costs a retry.
sub external_worker
{
	my ($node) = @_;
	while (1)
	{
		$node->psql('postgres', q{
SET application_name = 'torture-worker';
WITH c AS (SELECT * FROM tasker_claim_steps('tq', 'w1', 20, '3 seconds', '1 second')),
     r AS (INSERT INTO worker_runs (step_id) SELECT step_id FROM c)
SELECT count(tasker_complete_step(step_id, claim_token, '{"ok": true}')) FROM c;
});
		sleep 0.05;
	}
}

sub pid_of
{
	my ($node, $where) = @_;
	my ($rc, $out) = $node->psql('postgres', "SELECT pid FROM pg_stat_activity WHERE $where LIMIT 1");
	return $rc == 0 ? $out : '';
}

# fault: inject one fault; returns the external worker's pid (restarted
# when it was the victim).
sub fault
{
	my ($node, $kind, $stub, $worker) = @_;
	if ($kind eq 'executor' || $kind eq 'launcher' || $kind eq 'client_backend')
	{
		my $where = $kind eq 'executor' ? "backend_type = 'tasker worker'"
		  : $kind eq 'launcher' ? "backend_type = 'tasker launcher'"
		  : "application_name = 'torture-client'";
		my $pid = pid_of($node, $where);
		kill 'KILL', $pid if $pid;
	}
	elsif ($kind eq 'external_worker')
	{
		kill 'KILL', $worker;
		waitpid($worker, 0);
		$worker = spawn(sub { external_worker($node) });
	}
	elsif ($kind eq 'immediate')
	{
		$node->stop('immediate');
		$node->start;
	}
	elsif ($kind eq 'terminate')
	{
		$node->psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		                          WHERE backend_type = 'tasker worker' LIMIT 1");
	}
	elsif ($kind eq 'stall')
	{
		kill 'STOP', $stub;
		sleep 3;
		kill 'CONT', $stub;
	}
	return $worker;
}

sub check
{
	my ($node, $seed) = @_;
	my $q = sub { $node->safe_psql('postgres', $_[0]) };
	is($q->("SELECT count(*) FROM tasker_tasks WHERE current_state <> 'complete'"), '0',
		"seed $seed: every task completed");
	is($q->("SELECT count(*) FROM tasker_workflow_steps WHERE current_state = 'in_progress'"), '0',
		"seed $seed: no step is stuck in progress");
	is($q->("SELECT count(*) FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
	          WHERE s.handler_kind = 'sql' AND s.current_state = 'complete' AND s.step_type IS DISTINCT FROM 'decision'
	            AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.task_id = s.task_id
	                             AND l.step = n.name || COALESCE(':' || s.map_index, ''))"),
		'0', "seed $seed: every SQL step's ledger row exists");
	is($q->("SELECT count(*) - (SELECT count(*) FROM tasker_workflow_steps s WHERE s.handler_kind = 'sql'
	            AND s.current_state = 'complete' AND s.step_type IS DISTINCT FROM 'decision') FROM ledger"),
		'0', "seed $seed: and exactly once (one row per completed SQL step, under a unique key)");
	is($q->("SELECT count(*) FROM tasker_workflow_steps s WHERE s.handler_kind = 'worker'
	          AND NOT EXISTS (SELECT 1 FROM worker_runs r WHERE r.step_id = s.workflow_step_id)"),
		'0', "seed $seed: every external step ran at least once");
	my $log = `curl -s http://127.0.0.1:@{[ slurp_file($node->basedir . '/stub.port') =~ s/\s//gr ]}/log`;
	my %keys = map { $_ => 1 } ($log =~ /"idempotency_key": ?"([^"]*)"/g);
	my @http = split /\n/, $q->("SELECT task_id || '-' || workflow_step_id FROM tasker_workflow_steps WHERE handler_kind = 'http'");
	is(scalar(grep { !$keys{$_} } @http), 0,
		"seed $seed: every HTTP step was requested, with its own Idempotency-Key");
	my %mine = map { $_ => 1 } @http;
	is(scalar(grep { !$mine{$_} } keys %keys), 0, "seed $seed: and no request carried another key");
	is($q->("WITH t AS (
	            SELECT from_state, to_state, most_recent,
	                   lag(to_state) OVER w AS prev, row_number() OVER w AS rn,
	                   count(*) OVER (PARTITION BY workflow_step_id) AS n
	              FROM tasker_workflow_step_transitions
	            WINDOW w AS (PARTITION BY workflow_step_id ORDER BY sort_key))
	         SELECT count(*) FROM t WHERE (rn > 1 AND from_state IS DISTINCT FROM prev)
	                                   OR most_recent <> (rn = n)"),
		'0', "seed $seed: step histories are consistent");
	is($q->("WITH t AS (
	            SELECT from_state, to_state, most_recent,
	                   lag(to_state) OVER w AS prev, row_number() OVER w AS rn,
	                   count(*) OVER (PARTITION BY task_id) AS n
	              FROM tasker_task_transitions
	            WINDOW w AS (PARTITION BY task_id ORDER BY sort_key))
	         SELECT count(*) FROM t WHERE (rn > 1 AND from_state IS DISTINCT FROM prev)
	                                   OR most_recent <> (rn = n)"),
		'0', "seed $seed: task histories are consistent");
	is($q->("SELECT count(*) FROM tasker_check()"), '0', "seed $seed: tasker_check() finds nothing");
	is($q->("SELECT count(*)
	           FROM (SELECT workflow_step_id, to_state::text, count(*) AS n
	                   FROM tasker_workflow_step_transitions GROUP BY 1, 2) t
	           FULL JOIN (SELECT (event->>'step_id')::bigint AS step_id, event->>'to_state' AS to_state,
	                             count(*) AS n
	                        FROM tasker_event_log WHERE event ? 'step_id' AND event ? 'to_state'
	                       GROUP BY 1, 2) e
	             ON e.step_id = t.workflow_step_id AND e.to_state = t.to_state
	          WHERE t.n IS DISTINCT FROM e.n"),
		'0', "seed $seed: the durable event log has one event per step transition, none more");
}
