# 085_metrics.pl: tasker_metrics() and tasker_metrics_prometheus() (issue 12)
# with real workers:
# - known workflows move the counters by exactly the right amounts, and
#   every other counter not at all: SQL steps (one retried once, one failing
#   for good), HTTP steps against the loopback stub (each answer class, a
#   retry, a timeout, a connection error, a request cancelled in flight),
#   an external worker's claims with a lease lost and reclaimed (TK003);
#   the step duration histograms count every attempt but the cancelled;
# - what a rolled-back transaction did is not counted;
# - the gauges: ready steps and the oldest one's age, leased steps in
#   progress, HTTP requests in flight, executors alive;
# - the Prometheus text parses: every line a # HELP / # TYPE comment or
#   name{labels} value, each family's samples together after its TYPE,
#   the same samples as tasker_metrics(), histogram buckets cumulative
#   with +Inf equal to _count;
# - postgres_exporter with contrib/postgres_exporter/tasker.yaml, connected
#   as a role with no privilege granted, exports the same samples;
# - counters start at zero after a restart, and read zero (with
#   tasker_workers_max 0) without the preload.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use Time::HiRes qw(sleep);

my $tree = $ENV{TASKER_TREE};

# The stub, on a free port of 127.0.0.1.
my $portfile = PostgreSQL::Test::Utils::tempdir() . '/stub.port';
my $stub = IPC::Run::start([ 'python3', "$tree/test/http_stub.py", $portfile ],
	'>', '/dev/null', '2>', '/dev/null');
for (1 .. 100) { last if -s $portfile; sleep 0.1; }
END { my $rc = $?; $stub->kill_kill if $stub; $? = $rc; }
my $port = PostgreSQL::Test::Utils::slurp_file($portfile);
my $base = "http://127.0.0.1:$port";
ok($port =~ /^\d+$/, "the stub listens on 127.0.0.1:$port");

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 1
});
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION tasker;
CREATE FUNCTION m_ok(step jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '{"ok": true}'::jsonb \$\$;
CREATE FUNCTION m_flaky(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    IF (step->>'attempt')::integer < 2 THEN
        RAISE EXCEPTION 'flaky: fails its first attempt';
    END IF;
    RETURN '{"ok": true}';
END \$\$;
CREATE FUNCTION m_perm(step jsonb) RETURNS jsonb LANGUAGE sql AS \$\$
    SELECT tasker_permanent_error('m_perm always fails'); SELECT NULL::jsonb \$\$;
SELECT tasker_register_template(\$y\$
name: m_sql
step_templates:
  - {name: a, handler_class: m_ok}
  - {name: b, handler_class: m_ok, depends_on_step: a}
  - {name: c, handler_class: m_flaky, depends_on_step: a}
  - {name: d, handler_class: m_ok, depends_on_steps: [b, c]}
\$y\$);
SELECT tasker_register_template(\$y\$
name: m_fail
step_templates:
  - {name: x, handler_class: m_ok}
  - {name: y, handler_class: m_perm}
\$y\$);
SELECT tasker_register_template(\$y\$
name: m_http
step_templates:
  - {name: h2xx, handler_config: {type: api, method: GET, url: '$base/json'}}
  - {name: h3xx, handler_config: {type: api, method: GET, url: '$base/redirect?to=/json'}, default_retry_limit: 1}
  - {name: h4xx, handler_config: {type: api, method: GET, url: '$base/status/404'}}
  - {name: h5xx, handler_config: {type: api, method: GET, url: '$base/status/500'}, default_retry_limit: 2}
  - {name: htimeout, handler_config: {type: api, method: GET, url: '$base/delay/5', timeout: 1}, default_retry_limit: 1}
  - {name: herror, handler_config: {type: api, method: GET, url: 'http://127.0.0.1:1/'}, default_retry_limit: 1}
\$y\$);
SELECT tasker_register_template(\$y\$
name: m_slow
step_templates:
  - {name: slow, handler_config: {type: api, method: GET, url: '$base/delay/30', timeout: 60}}
\$y\$);
SELECT tasker_register_template(\$y\$
name: m_worker
step_templates:
  - name: w
    handler_config: {type: worker, queue: mq}
    default_retry_limit: 3
\$y\$);
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors are up');

# metrics(): tasker_metrics() as a hash: "name{k=v,...}" => value.
sub metrics
{
	my ($n) = @_;
	$n //= $node;
	my %m;
	for my $line (split /\n/, $n->safe_psql('postgres', q{
		SELECT name || '{' || COALESCE((SELECT string_agg(key || '=' || value, ',' ORDER BY key)
		                                  FROM jsonb_each_text(labels)), '') || '}', value
		  FROM tasker_metrics()}))
	{
		my ($k, $v) = split /\|/, $line;
		$m{$k} = $v;
	}
	return \%m;
}

# check_deltas(before, after, {key => delta}, label): the counters listed
# moved by exactly their delta, every other counter (a _total, or a
# histogram's _count) did not move, and each histogram's _count moved by
# the attempts of its kind that ended other than cancelled.
sub check_deltas
{
	my ($b, $a, $want, $label) = @_;
	my @wrong;
	for my $k (sort keys %$a)
	{
		next unless $k =~ /^tasker_\w+_total\{/ || $k =~ /^tasker_step_duration_seconds_count\{/;
		my $d = $a->{$k} - ($b->{$k} // 0);
		my $w = $want->{$k};
		if ($k =~ /^tasker_step_duration_seconds_count\{kind=(\w+)\}/)
		{
			my $kind = $1;
			$w = 0;
			for my $o (qw(complete retry failed quarantined))
			{
				$w += $want->{"tasker_step_attempts_total{kind=$kind,outcome=$o}"} // 0;
			}
		}
		$w //= 0;
		push @wrong, "$k moved by $d, not $w" if $d != $w;
	}
	for my $k (sort keys %$want)
	{
		push @wrong, "$k is not reported" unless exists $a->{$k};
	}
	is(join('; ', @wrong), '', $label);
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_task
{
	my ($task, $secs) = @_;
	$secs //= 60;
	return sql("SELECT tasker_wait_for_task($task, '$secs seconds')");
}

# ---- SQL steps: one retried once, one failing for good
my $before = metrics();
my $ok = sql("SELECT tasker_create_task('m_sql')");
my $fail = sql("SELECT tasker_create_task('m_fail')");
is(wait_task($ok), 'complete', 'the task with a flaky step completes');
is(wait_task($fail), 'error', 'the task with a permanent failure ends in error');
is(sql("SELECT string_agg(n.name || s.attempts, ',' ORDER BY n.name) FROM tasker_workflow_steps s
       JOIN tasker_named_steps n USING (named_step_id) WHERE s.task_id IN ($ok, $fail)"),
	'a1,b1,c2,d1,x1,y1', 'the steps ran as expected: c twice');
my $after = metrics();
check_deltas($before, $after, {
		'tasker_tasks_created_total{}' => 2,
		'tasker_tasks_completed_total{}' => 1,
		'tasker_tasks_failed_total{}' => 1,
		'tasker_step_attempts_total{kind=sql,outcome=complete}' => 5,
		'tasker_step_attempts_total{kind=sql,outcome=retry}' => 1,
		'tasker_step_attempts_total{kind=sql,outcome=failed}' => 1,
		'tasker_step_retries_total{kind=sql}' => 1,
	},
	'SQL steps: 2 tasks created, 1 completed, 1 failed; 7 attempts: 5 complete, 1 retry, 1 failed; 1 retry started');
is(sql(q{
	SELECT count(*) FILTER (WHERE x.attempt_started_at IS DISTINCT FROM
	           (SELECT p.created_at FROM tasker_workflow_step_transitions p
	             WHERE p.workflow_step_id = x.workflow_step_id AND p.sort_key < x.sort_key
	               AND p.to_state = 'in_progress' ORDER BY p.sort_key DESC LIMIT 1))
	       || ',' || count(*) FILTER (WHERE x.from_state <> 'in_progress' AND x.attempt_started_at IS NOT NULL)
	       || ',' || count(*) FILTER (WHERE x.from_state = 'in_progress')
	  FROM tasker_workflow_step_transitions x
	 WHERE x.from_state = 'in_progress' OR x.attempt_started_at IS NOT NULL}),
	'0,0,7', 'each of the 7 attempts keeps its start on the transition that ended it, and no other row has one');
cmp_ok($after->{'tasker_step_duration_seconds_sum{kind=sql}'}, '>',
	$before->{'tasker_step_duration_seconds_sum{kind=sql}'}, 'the SQL run times add up');

# ---- a rolled-back transaction counts nothing
$before = metrics();
sql(q{BEGIN; SELECT tasker_run_task(tasker_create_task('m_fail')); ROLLBACK;});
check_deltas($before, metrics(), {}, 'a task created and run in a transaction that rolled back is not counted');
$before = metrics();
is(sql("SELECT tasker_run_task(tasker_create_task('m_fail'))"), 'error',
	'the same, committed, in this session');
check_deltas($before, metrics(), {
		'tasker_tasks_created_total{}' => 1,
		'tasker_tasks_failed_total{}' => 1,
		'tasker_step_attempts_total{kind=sql,outcome=complete}' => 1,
		'tasker_step_attempts_total{kind=sql,outcome=failed}' => 1,
	},
	'committed, it is counted');

# ---- HTTP steps: each answer class
$before = metrics();
my $h = sql("SELECT tasker_create_task('m_http')");
is(wait_task($h), 'error', 'the HTTP task ends in error');
is(sql("SELECT string_agg(n.name || s.attempts || s.current_state, ',' ORDER BY n.name) FROM tasker_workflow_steps s
       JOIN tasker_named_steps n USING (named_step_id) WHERE s.task_id = $h"),
	'h2xx1complete,h3xx1error,h4xx1error,h5xx2error,herror1error,htimeout1error',
	'its steps ran as expected: h5xx twice');
check_deltas($before, metrics(), {
		'tasker_tasks_created_total{}' => 1,
		'tasker_tasks_failed_total{}' => 1,
		'tasker_step_attempts_total{kind=http,outcome=complete}' => 1,
		'tasker_step_attempts_total{kind=http,outcome=retry}' => 1,
		'tasker_step_attempts_total{kind=http,outcome=failed}' => 5,
		'tasker_step_retries_total{kind=http}' => 1,
		'tasker_http_requests_total{class=2xx}' => 1,
		'tasker_http_requests_total{class=3xx}' => 1,
		'tasker_http_requests_total{class=4xx}' => 1,
		'tasker_http_requests_total{class=5xx}' => 2,
		'tasker_http_requests_total{class=timeout}' => 1,
		'tasker_http_requests_total{class=error}' => 1,
	},
	'HTTP: 7 requests by class (2xx, 3xx, 4xx, 5xx twice, timeout, error) and 7 attempts');

# ---- an HTTP request in flight, cancelled
$before = metrics();
my $slow = sql("SELECT tasker_create_task('m_slow')");
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'in_progress' FROM tasker_workflow_steps WHERE task_id = $slow"),
	'the slow request is in flight');
my $m = metrics();
is($m->{'tasker_http_requests_in_flight{}'} . ',' . $m->{'tasker_steps_in_progress{kind=http}'},
	'1,1', 'one HTTP request in flight, one leased HTTP step in progress');
is(sql("SELECT tasker_cancel_task($slow)"), 't', 'the task is cancelled');
ok($node->poll_query_until('postgres', q{
		SELECT value = 0 FROM tasker_metrics() WHERE name = 'tasker_http_requests_in_flight'}),
	'the request is aborted');
check_deltas($before, metrics(), {
		'tasker_tasks_created_total{}' => 1,
		'tasker_tasks_cancelled_total{}' => 1,
		'tasker_step_attempts_total{kind=http,outcome=cancelled}' => 1,
	},
	'a cancelled request: its attempt counts as cancelled, with no run time and no request');

# ---- external workers: claims, a lost lease (TK003), a retry
$before = metrics();
my $wt = sql("SELECT tasker_create_task('m_worker')");
my ($sid, $token) = split /\|/, sql(q{
	SELECT step_id, claim_token FROM tasker_claim_steps('mq', 'w-tap', 1, '1 second', '10 seconds')});
ok($sid, 'a worker claims the step with a lease of 1 s');
is(metrics()->{'tasker_steps_in_progress{kind=worker}'}, 1, 'one leased worker step in progress');
ok($node->poll_query_until('postgres',
		"SELECT current_state <> 'in_progress' FROM tasker_workflow_steps WHERE workflow_step_id = $sid"),
	'the executors reclaim the expired lease');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_complete_step($sid, '$token', '{}')");
like($err, qr/TK003|no longer/, 'the lost claim is refused (TK003)');
my ($sid2, $token2) = split /\|/, sql(q{
	SELECT step_id, claim_token FROM tasker_claim_steps('mq', 'w-tap', 1, '1 minute', '10 seconds')});
is($sid2, $sid, 'the retry is claimed again');
is(sql("SELECT tasker_complete_step($sid2, '$token2', '{\"done\": true}')"), 't', 'and completed');
is(wait_task($wt), 'complete', 'the worker task completes');
check_deltas($before, metrics(), {
		'tasker_tasks_created_total{}' => 1,
		'tasker_tasks_completed_total{}' => 1,
		'tasker_worker_claims_total{}' => 2,
		'tasker_lost_leases_total{kind=worker}' => 1,
		'tasker_step_attempts_total{kind=worker,outcome=retry}' => 1,
		'tasker_step_attempts_total{kind=worker,outcome=complete}' => 1,
		'tasker_step_retries_total{kind=worker}' => 1,
	},
	'external worker: 2 claims, 1 lost lease counted as a retry, 1 completion');

# ---- gauges: ready steps while the executors are paused
sql('ALTER SYSTEM SET tasker.enabled = off');
sql('SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'paused'"),
	'the executors are paused');
my $paused = sql("SELECT tasker_create_task('m_fail')");
sql("UPDATE tasker_workflow_steps SET next_attempt_at = now() - interval '30 seconds' WHERE task_id = $paused");
$m = metrics();
is($m->{'tasker_ready_steps{kind=sql}'} . ',' . $m->{'tasker_ready_steps{kind=http}'},
	'2,0', 'two SQL steps ready, no HTTP step');
cmp_ok($m->{'tasker_oldest_ready_step_age_seconds{kind=sql}'}, '>=', 30,
	'the oldest ready step has waited for 30 s or more');
is($m->{'tasker_oldest_ready_step_age_seconds{kind=http}'}, 0, 'no HTTP step waits: age 0');
is(join(',', map { $m->{$_} } 'tasker_workers_alive{}', 'tasker_workers_max{}', 'tasker_steps_in_progress{kind=sql}'),
	'2,2,0', 'two executors alive of two; no leased sql step');
sql('ALTER SYSTEM RESET tasker.enabled');
sql('SELECT pg_reload_conf()');
is(wait_task($paused), 'error', 'resumed, the executors run the task');
is(metrics()->{'tasker_ready_steps{kind=sql}'}, 0, 'and nothing is ready any more');

# ---- the Prometheus text
my $text = sql('SELECT tasker_metrics_prometheus()');
my $label = qr/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"/;
my $value = qr/[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN/;
my (@bad, %type, %seen, @samples);
my $family = '';
for my $line (split /\n/, $text)
{
	if ($line =~ /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S/)
	{
		next;
	}
	elsif ($line =~ /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/)
	{
		push @bad, "TYPE of $1 twice" if $type{$1};
		$type{$1} = $2;
		$family = $1;
	}
	elsif ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{$label(?:,$label)*\})? ($value)$/)
	{
		my ($name, $labels, $v) = ($1, $2 // '', $3);
		my $base = $name;
		$base =~ s/_(bucket|sum|count)$// if $type{$family} eq 'histogram';
		push @bad, "$name outside its family ($family)" if $base ne $family;
		push @bad, "$name$labels twice" if $seen{"$name$labels"}++;
		push @samples, [ $name, $labels, $v ];
	}
	else
	{
		push @bad, "unparsable line: $line";
	}
}
is(join("\n", @bad), '', 'every line of the Prometheus text is a comment or name{labels} value');
is($type{tasker_step_attempts_total} . ',' . $type{tasker_step_duration_seconds} . ',' . $type{tasker_ready_steps},
	'counter,histogram,gauge', 'each family has its type');
ok((grep { $_->[0] eq 'tasker_step_attempts_total' && $_->[1] eq '{kind="sql",outcome="complete"}' } @samples),
	'tasker_step_attempts_total{kind="sql",outcome="complete"} is a sample');
is(scalar(@samples), sql('SELECT count(*) FROM tasker_metrics()'),
	'as many samples as tasker_metrics() rows');

# Histograms: per kind, buckets in le order, cumulative, +Inf == _count.
my @hist_bad;
my $hist_total = 0;
for my $kind (qw(sql http worker))
{
	my @b = grep { $_->[0] eq 'tasker_step_duration_seconds_bucket' && $_->[1] =~ /kind="$kind"/ } @samples;
	my ($count) = map { $_->[2] } grep { $_->[0] eq 'tasker_step_duration_seconds_count' && $_->[1] eq "{kind=\"$kind\"}" } @samples;
	my ($sum) = map { $_->[2] } grep { $_->[0] eq 'tasker_step_duration_seconds_sum' && $_->[1] eq "{kind=\"$kind\"}" } @samples;
	push @hist_bad, "$kind: no buckets" unless @b;
	my ($prev_le, $prev_v) = (-1, 0);
	for my $s (@b)
	{
		my ($le) = $s->[1] =~ /le="([^"]+)"/;
		my $lev = $le eq '+Inf' ? 9**9**9 : $le;
		push @hist_bad, "$kind: le $le after $prev_le" unless $lev > $prev_le;
		push @hist_bad, "$kind: bucket le=$le ($s->[2]) below the one before ($prev_v)" if $s->[2] < $prev_v;
		($prev_le, $prev_v) = ($lev, $s->[2]);
	}
	push @hist_bad, "$kind: the last bucket is not +Inf" unless @b && $b[-1][1] =~ /le="\+Inf"/;
	push @hist_bad, "$kind: +Inf ($prev_v) differs from _count (" . ($count // 'none') . ")"
	  unless defined $count && $prev_v == $count;
	push @hist_bad, "$kind: no _sum" unless defined $sum && $sum >= 0;
	$hist_total += $count // 0;
}
is(join('; ', @hist_bad), '', 'histogram buckets are cumulative, in order, and +Inf equals _count');
cmp_ok($hist_total, '>=', 20, "the histograms hold the attempts that ran ($hist_total)");
my $rows = sql(q{SELECT string_agg(name || ' ' || value, ',' ORDER BY name, labels::text)
                 FROM tasker_metrics() WHERE name LIKE 'tasker_step_attempts_total'});
my $texts = join(',', map { "$_->[0] $_->[2]" } sort { $a->[1] cmp $b->[1] }
	  grep { $_->[0] eq 'tasker_step_attempts_total' } @samples);
is($texts, $rows, 'the text and tasker_metrics() give the same attempt counts');

# ---- postgres_exporter with contrib/postgres_exporter/tasker.yaml, as a
# role with the reader level only: the same samples as the text
sql('CREATE ROLE metrics_reader LOGIN IN ROLE tasker_reader');
my $exporter = '/usr/bin/prometheus-postgres-exporter';
ok(-x $exporter, "postgres_exporter is installed ($exporter; test/lib.sh installs it)");
my $eport = PostgreSQL::Test::Cluster::get_free_port();
my $ehandle = IPC::Run::start(
	[ $exporter, "--web.listen-address=127.0.0.1:$eport",
	  "--extend.query-path=$tree/contrib/postgres_exporter/tasker.yaml",
	  '--disable-default-metrics', '--disable-settings-metrics' ],
	'>', '/dev/null', '2>', \my $eerr,
	init => sub {
		$ENV{DATA_SOURCE_NAME} = 'host=' . $node->host . ' port=' . $node->port
		  . ' dbname=postgres user=metrics_reader sslmode=disable';
	});
my $scraped = '';
for (1 .. 100)
{
	$scraped = HTTP::Tiny->new(timeout => 10)->get("http://127.0.0.1:$eport/metrics")->{content} // '';
	last if $scraped =~ /^tasker_workers_max/m;
	sleep 0.1;
}
$ehandle->kill_kill;
# norm(labels): the labels sorted, without postgres_exporter's server label.
sub norm
{
	my ($labels) = @_;
	my @pairs = grep { !/^server=/ } ($labels // '') =~ /([a-zA-Z_]\w*="(?:[^"\\]|\\.)*")/g;
	return join(',', sort @pairs);
}
my (%native, %exported);
$native{"$_->[0]\{" . norm($_->[1]) . '}'} = $_->[2] for @samples;
for my $line (split /\n/, $scraped)
{
	next unless $line =~ /^(tasker_\w+)(\{[^}]*\})? (\S+)$/;
	$exported{"$1\{" . norm($2) . '}'} = $3;
}
my @diff;
for my $k (sort keys %native)
{
	push @diff, "$k: $native{$k} here, " . ($exported{$k} // 'missing') . ' from the exporter'
	  unless defined $exported{$k} && $exported{$k} == $native{$k};
}
push @diff, "$_ only from the exporter" for grep { !exists $native{$_} } sort keys %exported;
is(join("\n", @diff), '', 'postgres_exporter with tasker.yaml gives the same ' . scalar(keys %native)
	  . ' samples as tasker_metrics_prometheus()') or diag $eerr;

# ---- a restart starts the counters again at zero
$node->restart;
is(metrics()->{'tasker_tasks_created_total{}'}, 0, 'after a restart the counters start at zero');

# ---- without the preload: zeros, and tasker_workers_max 0
my $plain = PostgreSQL::Test::Cluster->new('metrics_plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION m_ok(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: p
step_templates:
  - {name: a, handler_class: m_ok}
$y$);
SELECT tasker_run_task(tasker_create_task('p'));
});
$m = metrics($plain);
is(join(',', map { $m->{$_} } 'tasker_workers_max{}', 'tasker_tasks_created_total{}', 'tasker_workers_alive{}'),
	'0,0,0', 'without the preload: tasker_workers_max 0 and no counts');
like($plain->safe_psql('postgres', 'SELECT tasker_metrics_prometheus()'),
	qr/\n# TYPE tasker_workers_max gauge\ntasker_workers_max 0\n/,
	'and the text says so');
# The library serves an extension not yet updated from 0.1.0 for
# registration and task creation: a bypassed step's transition is written
# without attempt_started_at, which 0.1.0 does not have.
$plain->safe_psql('postgres', q{
CREATE DATABASE old;
});
$plain->safe_psql('old', q{
CREATE EXTENSION tasker VERSION '0.1.0';
CREATE FUNCTION m_ok(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: p
step_templates:
  - {name: a, handler_class: m_ok}
$y$);
});
my $old_task = $plain->safe_psql('old', q{SELECT tasker_create_task('p', bypass_steps => ARRAY['a'])});
is($plain->safe_psql('old', "SELECT current_state FROM tasker_tasks WHERE task_id = $old_task"),
	'complete', 'under a 0.1.0 schema, a task whose step is bypassed completes at creation');
$plain->stop;
$node->stop;
$stub->kill_kill;
undef $stub;

done_testing();
