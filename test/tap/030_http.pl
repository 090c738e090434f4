# 030_http.pl: api steps (handler_config type: api) run by the workers
# against a loopback stub server (test/http_stub.py): success and failure
# mapping, every method, interpolation, Retry-After, limits, security,
# concurrency with SQL steps flowing, and crash, kill and stop of a worker
# with requests in flight.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use Time::HiRes qw(time sleep);

my $tree = $ENV{TASKER_TREE};

# The stub, on a free port of 127.0.0.1.
my $portfile = PostgreSQL::Test::Utils::tempdir() . '/stub.port';
my $stub = IPC::Run::start([ 'python3', "$tree/test/http_stub.py", $portfile ],
	'>', '/dev/null', '2>', '/dev/null');
for (1 .. 100) { last if -s $portfile; sleep 0.1; }
END { $stub->kill_kill if $stub; }
my $port = PostgreSQL::Test::Utils::slurp_file($portfile);
my $base = "http://127.0.0.1:$port";
ok($port =~ /^\d+$/, "the stub listens on 127.0.0.1:$port");

my $node = PostgreSQL::Test::Cluster->new('http');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 3
restart_after_crash = on
log_min_messages = log
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');

# stub(path): GET a control endpoint of the stub, as text.
sub stub
{
	my ($path) = @_;
	return HTTP::Tiny->new(timeout => 10)->get("$base$path")->{content};
}

# stub_reset: wait until the stub answers no request (a request that
# tasker gave up on, a timeout, may still sleep there), then clear its log
# and counters.
sub stub_reset
{
	for (1 .. 100)
	{
		last if stub('/stats') =~ /"in_flight": 0,/;
		sleep 0.1;
	}
	stub('/reset');
}

my $ntemplates = 0;

# task(steps_yaml, context_json): register a template with these steps,
# create a task and return its id.
sub task
{
	my ($steps, $context, %opt) = @_;
	my $name = 'http_t' . ++$ntemplates;
	$context //= '{}';
	$node->safe_psql('postgres',
		"SELECT tasker_register_template(\$y\$\nname: $name\nstep_templates:\n$steps\n\$y\$)");
	return $node->safe_psql('postgres',
		"SELECT tasker_create_task('$name', '$context')");
}

# api_step(name, config): one api step of a template, in flow style.
sub api_step
{
	my ($name, $config, $extra) = @_;
	$extra = $extra ? ", $extra" : '';
	return "  - {name: $name, handler_config: {type: api, $config}$extra}\n";
}

sub wait_task
{
	my ($task, $secs) = @_;
	$secs //= 30;
	return $node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '$secs seconds')");
}

# step(task, name, expr): an expression over the step row s.
sub step
{
	my ($task, $name, $expr) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT $expr FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
		 WHERE s.task_id = $task AND n.name = '$name'});
}

ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors are up');

# ---- 2xx: JSON and text bodies
my $t = task(api_step('j', "url: '$base/json', method: GET")
	  . api_step('x', "url: '$base/text', method: get"));
is(wait_task($t), 'complete', 'a task of two GET steps completes');
is(step($t, 'j', "(s.results->'body'->>'hello') || (s.results->>'status') || s.attempts"),
	'world2001', 'a JSON body is stored parsed, with the status, after one attempt');
is(step($t, 'j', "s.results->'headers'->>'content-type'"), 'application/json',
	'response headers are stored with lower-case names');
is(step($t, 'j', "jsonb_typeof(s.results->'elapsed_ms')"), 'number', 'elapsed_ms is recorded');
is(step($t, 'x', "s.results->'body'"), '"plain text"', 'a text body is stored as a string');

# ---- every method, and the headers tasker adds
my $steps = '';
for my $m (qw(GET POST PUT PATCH DELETE HEAD))
{
	$steps .= api_step(lc $m, "url: '$base/echo/$m', method: $m");
}
$t = task($steps);
is(wait_task($t), 'complete', 'six steps, one per method, complete');
for my $m (qw(GET POST PUT PATCH DELETE))
{
	is(step($t, lc $m, "s.results->'body'->>'method'"), $m, "$m reaches the server as $m");
}
is(step($t, 'head', "(s.results->>'status') || coalesce(s.results->>'body', 'no body')"),
	'200no body', 'HEAD completes without a body');
my $post = step($t, 'post', 's.workflow_step_id');
is(step($t, 'post', "s.results->'body'->'headers'->>'idempotency-key'"), "$t-$post",
	'Idempotency-Key is task_id-step_id');
is(step($t, 'post', "s.results->'body'->'headers'->>'x-tasker-attempt'"), '1',
	'X-Tasker-Attempt counts the attempt');
is(step($t, 'post', "s.results->'body'->'headers'->>'content-type'"), 'application/json',
	'a request with a body is sent as application/json');
is(step($t, 'post', "s.results->'body'->'body'->>'step_name'"), 'post',
	'POST without a body key sends the step envelope');
is(step($t, 'get', "s.results->'body'->'body'"), 'null', 'GET sends no body by default');

# ---- interpolation
$t = task(api_step('first', "url: '$base/json', method: GET")
	  . "  - name: second\n    depends_on_step: first\n    handler_config:\n"
	  . "      type: api\n      method: PUT\n"
	  . "      url: '$base/echo/{{context.order}}/{{ context.name }}'\n"
	  . "      params: {q: '{{context.name}}', n: 3}\n"
	  . "      headers: {X-Order: 'order-{{context.order}}', X-Step: '{{step.step_id}}'}\n"
	  . "      body: {id: '{{context.order}}', tags: '{{context.tags}}', greeting: 'hi {{context.name}}',"
	  . " parent: '{{dependencies.first.body.hello}}', attempt: '{{step.attempt}}'}\n",
	'{"order": 42, "name": "a b&c/d", "tags": ["x", "y"]}');
is(wait_task($t), 'complete', 'a step interpolating context, dependencies and step completes');
is(step($t, 'second', "s.results->'body'->>'path'"), '/echo/42/a%20b%26c%2Fd',
	'values are percent-encoded in the url');
is(step($t, 'second', "s.results->'body'->'query'"), '{"n": "3", "q": "a b&c/d"}',
	'params become the query string');
is(step($t, 'second', "(s.results->'body'->'headers'->>'x-order') || ',' || (s.results->'body'->'headers'->>'x-step' = s.workflow_step_id::text)::text"),
	'order-42,true', 'header values interpolate');
is(step($t, 'second', "s.results->'body'->'body'"),
	'{"id": 42, "tags": ["x", "y"], "parent": "world", "attempt": 1, "greeting": "hi a b&c/d"}',
	'body strings interpolate; a lone reference keeps its JSON type');

$t = task(api_step('bad', "url: '$base/echo/{{context.missing}}', method: GET"), '{"order": 1}');
is(wait_task($t), 'error', 'an unresolvable reference fails the task');
is(step($t, 'bad', "s.attempts || ',' || (s.results->'error'->>'permanent')"), '1,true',
	'after one attempt, permanently');
like(step($t, 'bad', "s.results->'error'->>'message'"),
	qr/reference \{\{context\.missing\}\} in the handler_config of step "bad" does not resolve/,
	'the error names the reference');

# ---- 429 and 503 with Retry-After, in seconds and as a date
$t = task(api_step('secs', "url: '$base/flaky/429/seconds/2', method: GET")
	  . api_step('date', "url: '$base/flaky/503/date/3', method: GET"));
is(wait_task($t), 'complete', '429 and 503 are retried until they succeed');
is(step($t, 'secs', 's.attempts') . step($t, 'date', 's.attempts'), '22', 'each after two attempts');
sub retry_gap
{
	my ($task, $name) = @_;
	return step($task, $name, q{
		(SELECT extract(epoch FROM max(t.created_at) FILTER (WHERE t.to_state = 'in_progress')
		                         - max(t.created_at) FILTER (WHERE t.to_state = 'error'))
		   FROM tasker_workflow_step_transitions t WHERE t.workflow_step_id = s.workflow_step_id)});
}
my $gap = retry_gap($t, 'secs');
cmp_ok($gap, '>=', 1.9, "Retry-After: 2 was honoured ($gap s)");
$gap = retry_gap($t, 'date');
cmp_ok($gap, '>=', 1.0, "a Retry-After date 3 s ahead was honoured ($gap s)");

# Retry-After beyond tasker.max_backoff (3 s) is capped.
$t = task(api_step('capped', "url: '$base/flaky/429/seconds/600', method: GET"));
is(wait_task($t, 30), 'complete', 'a Retry-After of 600 s is capped at tasker.max_backoff');

# ---- permanent statuses
$steps = '';
$steps .= api_step("s$_", "url: '$base/status/$_', method: GET") for (400, 401, 403, 404, 422);
$t = task($steps);
is(wait_task($t), 'error', 'a task with permanent failures ends in error');
for my $code (400, 401, 403, 404, 422)
{
	is(step($t, "s$code", q{s.attempts || ',' || (s.results->'error'->>'permanent') || ',' ||
		(s.results->'error'->>'status') || ',' || (s.results->'error' ? 'body')::text}),
		"1,true,$code,true", "$code fails after one attempt, for good, with its status");
}
like(step($t, 's404', "s.results->'error'->>'body'"), qr/stub status 404/,
	'the start of the body is kept in the error');
like(step($t, 's404', "s.results->'error'->>'message'"), qr{^GET http://127\.0\.0\.1:\d+/status/404 answered HTTP 404$},
	'the message says what answered what');

# ---- other statuses, timeouts and refused connections retry
$t = task(api_step('e500', "url: '$base/status/500', method: GET", 'default_retry_limit: 2')
	  . api_step('slow', "url: '$base/delay/5', method: GET, timeout: 1", 'default_retry_limit: 1')
	  . api_step('refused', "url: 'http://127.0.0.1:1/x', method: GET", 'default_retry_limit: 2'));
is(wait_task($t, 40), 'error', 'a task whose steps keep failing ends in error');
is(step($t, 'e500', "s.attempts || ',' || (s.results->'error'->>'permanent')"), '2,false',
	'500 is retried (2 attempts of 2)');
like(step($t, 'slow', "s.results->'error'->>'message'"), qr/timed out after 1 s/, 'a timeout is reported');
is(step($t, 'refused', "s.attempts"), '2', 'a refused connection is retried');
like(step($t, 'refused', "s.results->'error'->>'curl_error'"), qr/connect/i,
	'with the client error text');

# ---- oversized body
$t = task(api_step('big', "url: '$base/big/2000000', method: GET"));
is(wait_task($t), 'error', 'a body over tasker.http_max_response_size fails the step');
like(step($t, 'big', "s.results->'error'->>'message'"),
	qr/larger than tasker\.http_max_response_size \(1024 kB\)/, 'with a clear error');
$t = task(api_step('fits', "url: '$base/big/1000000', method: GET"));
is(wait_task($t), 'complete', 'a body under the limit is kept whole');
is(step($t, 'fits', "length(s.results->>'body')"), '1000000', 'not cut');

# ---- redirects
$t = task(api_step('nofollow', "url: '$base/redirect?to=/json', method: GET", 'default_retry_limit: 1')
	  . api_step('follow', "url: '$base/redirect?to=/json', method: GET, follow_redirects: true"));
wait_task($t);
is(step($t, 'nofollow', "s.current_state || ',' || (s.results->'error'->>'status')"), 'error,302',
	'a redirect is not followed by default');
is(step($t, 'follow', "s.current_state || ',' || (s.results->'body'->>'hello')"), 'complete,world',
	'follow_redirects: true follows it');

# ---- allowed hosts and credentials
$node->safe_psql('postgres',
	"ALTER SYSTEM SET tasker.http_allowed_hosts = '127.0.0.1, api.example.com'; SELECT pg_reload_conf()");
sleep 0.5;
$t = task(api_step('refused_host', "url: 'http://localhost:$port/json', method: GET")
	  . api_step('allowed_host', "url: '$base/json', method: GET"));
is(wait_task($t), 'error', 'a host outside tasker.http_allowed_hosts fails the task');
is(step($t, 'refused_host', "s.attempts || ',' || (s.results->'error'->>'permanent') || ',' || (s.results->'error'->>'message')"),
	'1,true,host "localhost" is not in tasker.http_allowed_hosts', 'permanently, before any request');
is(step($t, 'allowed_host', 's.current_state'), 'complete', 'a listed host is called');
$node->safe_psql('postgres', "ALTER SYSTEM RESET tasker.http_allowed_hosts; SELECT pg_reload_conf()");
sleep 0.5;
$t = task(api_step('creds', "url: 'http://alice:s3cr3t\@127.0.0.1:$port/status/404', method: GET"));
is(wait_task($t), 'error', 'a request with credentials in its url runs');
my $everything = $node->safe_psql('postgres', qq{
	SELECT s.results::text || (SELECT string_agg(metadata::text, '') FROM tasker_workflow_step_transitions WHERE task_id = $t)
	  FROM tasker_workflow_steps s WHERE s.task_id = $t});
unlike($everything, qr/s3cr3t/, 'the password appears in no stored error or transition');
like($everything, qr{http://127\.0\.0\.1:\d+/status/404}, 'the url is stored without it');
# The server log, without the statements this test itself sent.
my $server_log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
$server_log =~ s/^\S+ \S+ UTC \[\d+\] 030_http\.pl LOG:  statement: .*?(?=^\S+ \S+ UTC \[)//msg;
unlike($server_log, qr/s3cr3t/, 'nor in the server log');

# ---- counters
my %stats = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT outcome, requests FROM tasker_http_stats()');
cmp_ok($stats{'2xx'}, '>=', 15, "2xx requests are counted ($stats{'2xx'})");
cmp_ok($stats{permanent}, '>=', 7, "permanent failures are counted ($stats{permanent})");
cmp_ok($stats{retryable}, '>=', 4, "retryable failures are counted ($stats{retryable})");
cmp_ok($stats{timeout}, '>=', 1, 'timeouts are counted');
cmp_ok($stats{connection_error}, '>=', 2, 'connection errors are counted');

# ---- the per-host limit holds over both workers
$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.http_max_per_host = 3; SELECT pg_reload_conf()");
sleep 0.5;
stub_reset();
$node->safe_psql('postgres', "SELECT tasker_register_template(\$y\$
name: http_slow
step_templates:
  - {name: slow, handler_config: {type: api, url: '$base/delay/1', method: GET, timeout: 20}}
\$y\$)");
$node->safe_psql('postgres', "SELECT tasker_create_task('http_slow', jsonb_build_object('i', i)) FROM generate_series(1, 12) i");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 12 FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'http_slow' AND t.current_state = 'complete'}), '12 slow requests complete');
like(stub('/stats'), qr/"max_in_flight": [123],/, 'never more than 3 in flight to one host');

# ---- 200 concurrent slow requests, SQL steps flowing meanwhile, and no
# transaction open while requests are in flight
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET tasker.http_max_per_host = 200;
	ALTER SYSTEM SET tasker.http_max_concurrency = 200;
	SELECT pg_reload_conf();
	CREATE FUNCTION quick(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
	SELECT tasker_register_template($y$
name: sql_chain
step_templates:
  - {name: a, handler_class: quick}
  - {name: b, handler_class: quick, depends_on_step: a}
  - {name: c, handler_class: quick, depends_on_step: b}
$y$)});
sleep 0.5;
stub_reset();
my $start = time;
$node->safe_psql('postgres', "SELECT tasker_create_task('http_slow', jsonb_build_object('i', i)) FROM generate_series(1, 200) i");
$node->safe_psql('postgres', "SELECT tasker_create_task('sql_chain', jsonb_build_object('i', i)) FROM generate_series(1, 50) i");
my ($sql_done, $in_xact, $samples) = (undef, 0, 0);
while (time - $start < 60)
{
	my $r = $node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
		         WHERE nt.name = 'sql_chain' AND t.current_state = 'complete') || ',' ||
		       (SELECT count(*) FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
		         WHERE nt.name = 'http_slow' AND t.current_state = 'complete') || ',' ||
		       (SELECT count(*) FROM tasker_workflow_steps WHERE current_state = 'in_progress') || ',' ||
		       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tasker worker'
		         AND xact_start < now() - interval '300 milliseconds')});
	my ($sql, $http, $inflight, $long) = split /,/, $r;
	$sql_done //= time - $start if $sql == 50;
	if ($inflight > 50) { $samples++; $in_xact++ if $long > 0; }
	last if $http == 212;
	sleep 0.1;
}
my $elapsed = time - $start;
is($node->safe_psql('postgres', q{SELECT count(*) FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
		 WHERE nt.name = 'http_slow' AND t.current_state = 'complete'}), '212', '200 more slow requests complete');
cmp_ok($elapsed, '<', 30, sprintf('200 requests of 1 s took %.1f s, not minutes', $elapsed));
like(stub('/stats'), qr/"max_in_flight": (1\d\d|200),/, 'over a hundred were in flight at once');
ok(defined $sql_done && $sql_done < $elapsed, sprintf('the 50 SQL tasks finished meanwhile (after %.1f s)', $sql_done // -1));
cmp_ok($samples, '>', 0, "in-flight requests were sampled ($samples times)");
is($in_xact, 0, 'no worker held a transaction open while requests were in flight');

# ---- SIGKILL of a worker mid-request: the lease expires, the step is
# retried, the stub sees the same Idempotency-Key twice
stub_reset();
$node->safe_psql('postgres', "SELECT tasker_register_template(\$y\$
name: http_crash
step_templates:
  - {name: call, handler_config: {type: api, url: '$base/delay/2', method: GET, timeout: 3}}
\$y\$)");
$t = $node->safe_psql('postgres', "SELECT tasker_create_task('http_crash', '{}')");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM tasker_workflow_steps WHERE task_id = $t AND current_state = 'in_progress'}),
	'the step is in flight');
sleep 0.3;
my @pids = split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker worker'");
my $log_at = -s $node->logfile;
kill 'KILL', $pids[0];
# The postmaster restarts every process after the crash; wait for it to
# notice before asking whether the server is back.
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_at);
ok($node->poll_query_until('postgres', 'SELECT 1', '1'), 'the server is back after the crash');
is(wait_task($t, 60), 'complete', 'the task completes after the lease expires');
is(step($t, 'call', 's.attempts'), '2', 'the lost attempt was counted');
my $hist = $node->safe_psql('postgres', qq{
	SELECT string_agg(to_state, ',' ORDER BY sort_key) FROM tasker_workflow_step_transitions WHERE task_id = $t});
is($hist, 'in_progress,error,pending,in_progress,complete', 'recorded as a failed attempt, then retried');
my $log = stub('/log');
my $step_id = step($t, 'call', 's.workflow_step_id');
my @keys = $log =~ /"idempotency_key": "$t-$step_id", "attempt": "(\d)"/g;
is(join(',', @keys), '1,2', 'the stub saw the same Idempotency-Key on both attempts');
cmp_ok($node->safe_psql('postgres', "SELECT requests FROM tasker_http_stats() WHERE outcome = 'lease_expired'"),
	'>=', 1, 'the expired lease is counted');

# ---- SIGTERM with 100 requests in flight: the workers stop at once,
# and after their restart the steps are retried and complete
stub_reset();
$node->safe_psql('postgres', "SELECT tasker_register_template(\$y\$
name: http_stop
step_templates:
  - {name: call, handler_config: {type: api, url: '$base/delay/4', method: GET, timeout: 20}}
\$y\$)");
$node->safe_psql('postgres', "SELECT tasker_create_task('http_stop', jsonb_build_object('i', i)) FROM generate_series(1, 100) i");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 100 FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
	  JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'http_stop' AND s.current_state = 'in_progress'}), '100 requests are in flight');
sleep 0.5;
@pids = split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'tasker worker'");
my $logpos = -s $node->logfile;
my $sent = time;
kill 'TERM', @pids;
my $gone = 0;
while (time - $sent < 10)
{
	my $tail = substr(PostgreSQL::Test::Utils::slurp_file($node->logfile), $logpos);
	my $exited = grep { $tail =~ /\(PID $_\) exited/ } @pids;
	if ($exited == scalar @pids) { $gone = time - $sent; last; }
	sleep 0.05;
}
ok($gone > 0 && $gone < 3, sprintf('both workers exited %.2f s after SIGTERM', $gone));
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 100 FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'http_stop' AND t.current_state = 'complete'}), 'after the restart all 100 complete');
is($node->safe_psql('postgres', q{
	SELECT min(s.attempts) || ',' || max(s.attempts) FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
	  JOIN tasker_named_tasks nt USING (named_task_id) WHERE nt.name = 'http_stop'}),
	'2,2', 'each on its second attempt, the interrupted one counted');

$node->stop;
$stub->kill_kill;
done_testing();
