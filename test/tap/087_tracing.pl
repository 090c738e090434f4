# 087_tracing.pl: W3C trace context (issue 12 item 7).  A task created
# with a traceparent runs an SQL step that fails once, an HTTP step
# against the loopback stub (test/http_stub.py) and an external-worker
# step: the SQL handler's envelope, the stub's request headers and the
# worker's claim carry a traceparent of the task's trace with the span of
# each attempt; every event (NOTIFY and the durable log) names the trace
# and the span; tasker_task_spans rebuilds the same spans, each attempt a
# child of the task's span, which is a child of the creator's span.  The
# context's traceparent key works, a task without one begins a new trace,
# and bad traceparents are refused with 22023, detail and hint.  The
# OpenTelemetry example (contrib/opentelemetry) turns the spans into OTLP
# JSON when python3-psycopg is installed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(sleep);

my $tree = $ENV{TASKER_TREE};
my $trace = '4bf92f3577b34da6a3ce929d0e0e4736';
my $parent = '00f067aa0ba902b7';

# The stub, on a free port of 127.0.0.1.
my $portfile = PostgreSQL::Test::Utils::tempdir() . '/stub.port';
my $stub = IPC::Run::start([ 'python3', "$tree/test/http_stub.py", $portfile ],
	'>', '/dev/null', '2>', '/dev/null');
for (1 .. 100) { last if -s $portfile; sleep 0.1; }
END { local $?; $stub->kill_kill if $stub; }
my $port = PostgreSQL::Test::Utils::slurp_file($portfile);
my $base = "http://127.0.0.1:$port";

my $node = PostgreSQL::Test::Cluster->new('tracing');
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
CREATE FUNCTION public.traced_sql(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
    IF (step->>'attempt')::integer = 1 THEN
        RAISE EXCEPTION 'first attempt fails';
    END IF;
    PERFORM tasker_publish_event('traced.noted', '{}');
    RETURN jsonb_build_object('traceparent', step->'traceparent');
END \$\$;
SELECT tasker_register_template(\$y\$
name: traced
custom_events: [traced.noted]
step_templates:
  - {name: a, handler_class: public.traced_sql, default_retry_limit: 3}
  - {name: h, depends_on_step: a, handler_config: {type: api, url: '$base/echo', method: GET}}
  - {name: w, depends_on_step: h, handler_config: {type: worker, queue: tq}}
\$y\$);
CREATE FUNCTION public.noop(step jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT '{}'::jsonb \$\$;
SELECT tasker_register_template(\$y\$
name: leaf
step_templates:
  - {name: l, handler_class: public.noop}
\$y\$);
SELECT tasker_register_template(\$y\$
name: nest
step_templates:
  - {name: sub, type: subtask, task: {name: leaf}}
\$y\$);
SELECT tasker_register_template(\$y\$
name: plain
step_templates:
  - {name: p, handler_class: public.traced_sql, default_retry_limit: 3}
\$y\$);
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors are up');

# one(sql): one value.
sub one { return $node->safe_psql('postgres', $_[0]); }

# ---- a task in the creator's trace
my $task = one(qq{SELECT tasker_create_task('traced', '{}', traceparent => '00-$trace-$parent-01')});
is(one("SELECT trace_id || ' ' || trace_parent_id || ' ' || trace_flags FROM tasker_tasks WHERE task_id = $task"),
	"$trace $parent 1", 'the task stores the trace id, the parent span id and the flags');
my $task_span = one("SELECT tasker_span_id('$trace', $task)");
like($task_span, qr/^[0-9a-f]{16}$/, 'the task span id is 16 hex digits');

# The worker step: claim it (waiting for the SQL and HTTP steps to run).
my $claim = one(q{SELECT step_id || ' ' || claim_token || ' ' || (envelope->>'traceparent')
	FROM tasker_claim_steps('tq', 'w-tap', 1, '30 seconds', '30 seconds')});
my ($wstep, $token, $wtp) = split / /, $claim;
ok(defined $wtp, 'an external worker claims the worker step') or diag("claim: $claim");
$wtp //= '';
like($wtp, qr/^00-$trace-[0-9a-f]{16}-01$/, 'the claim\'s envelope carries a traceparent of the task\'s trace');
one("SELECT tasker_complete_step($wstep, '$token', '{\"done\": true}')");
is(one("SELECT tasker_wait_for_task($task, '30 seconds')"), 'complete', 'the traced task completes');

# step(name, expr): an expression over the step row s of the task.
sub step
{
	my ($name, $expr) = @_;
	return one(qq{SELECT $expr FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
		 WHERE s.task_id = $task AND n.name = '$name'});
}

# The span of each attempt of a step, as the transitions give it.
sub attempt_spans
{
	my ($name) = @_;
	return split /\n/, one(qq{
		SELECT tasker_span_id('$trace', $task, x.workflow_step_id, x.sort_key)
		  FROM tasker_workflow_step_transitions x
		  JOIN tasker_workflow_steps s USING (workflow_step_id)
		  JOIN tasker_named_steps n USING (named_step_id)
		 WHERE s.task_id = $task AND n.name = '$name' AND x.to_state = 'in_progress'
		 ORDER BY x.sort_key});
}
my @a_spans = attempt_spans('a');
my @h_spans = attempt_spans('h');
my @w_spans = attempt_spans('w');
is(scalar(@a_spans), 2, 'the SQL step ran twice (the first attempt failed)');
isnt($a_spans[0], $a_spans[1], 'each attempt has its own span id');

# ---- the envelope of the SQL handler
is(step('a', "s.results->>'traceparent'"), "00-$trace-$a_spans[1]-01",
	'the SQL handler\'s envelope carries the traceparent of its attempt\'s span');

# ---- the HTTP step: the stub saw the header
my $seen = step('h', "s.results->'body'->'headers'->>'traceparent'");
is($seen, "00-$trace-$h_spans[0]-01", 'the HTTP stub received the traceparent header of the attempt\'s span');
my $log = decode_json(HTTP::Tiny->new(timeout => 10)->get("$base/log")->{content});
my @echo = grep { $_->{path} eq '/echo' } @$log;
is(scalar(@echo), 1, 'the stub logged the request');
like($echo[0]{traceparent} // '', qr/^00-$trace-/, 'the stub logged the same trace id');

# ---- the external worker's claim
is($wtp, "00-$trace-$w_spans[0]-01", 'the worker\'s claim carries the traceparent of its attempt\'s span');

# ---- events: the durable log (and so NOTIFY: the same payloads)
my $events = one(qq{
	SELECT count(*) || ' ' || count(*) FILTER (WHERE event->>'trace_id' = '$trace')
	       || ' ' || count(*) FILTER (WHERE event->>'span_id' ~ '^[0-9a-f]{16}\$')
	  FROM tasker_events_since(0, 100000) WHERE (event->>'task_id')::bigint = $task});
my ($n, $with_trace, $with_span) = split / /, $events;
ok($n > 10, "the task sent $n events");
is("$with_trace $with_span", "$n $n", 'every event of the task carries its trace_id and a span_id');
is(one(qq{SELECT string_agg(DISTINCT event->>'span_id', ',') FROM tasker_events_since(0, 100000)
	 WHERE (event->>'task_id')::bigint = $task AND event->>'event' LIKE 'task.%'}),
	$task_span, 'task events carry the task\'s span id');
is(one(qq{SELECT string_agg(event->>'span_id', ',' ORDER BY event_id) FROM tasker_events_since(0, 100000)
	 WHERE (event->>'task_id')::bigint = $task AND event->>'step_name' = 'a'
	   AND event->>'event' IN ('step.execution_requested', 'step.failed', 'step.completed')}),
	"$a_spans[0],$a_spans[0],$a_spans[1],$a_spans[1]",
	'the start and the end of each attempt carry the attempt\'s span id');

is(one(qq{SELECT event->>'trace_id' || ' ' || (event->>'span_id') FROM tasker_events_since(0, 100000)
	 WHERE (event->>'task_id')::bigint = $task AND event->>'event' = 'traced.noted'}),
	"$trace $a_spans[1]", 'a custom event published by a handler is in its attempt\'s span');

# A NOTIFY payload, heard by a listener.
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN tasker_events');
my $t2 = one(qq{SELECT tasker_create_task('plain', '{}', traceparent => '00-$trace-$parent-00')});
is(one("SELECT tasker_wait_for_task($t2, '30 seconds')"), 'complete', 'a second traced task completes');
my $heard = $listener->query_safe('SELECT 1');
like($heard, qr/"task_id":$t2,.*"trace_id":"$trace","span_id":"[0-9a-f]{16}"/,
	'a NOTIFY payload carries trace_id and span_id');
$listener->quit;

# ---- spans rebuilt from the history
my $spans = one(qq{
	SELECT name || '|' || span_id || '|' || coalesce(parent_span_id, '-') || '|' || status
	       || '|' || (end_time IS NOT NULL) || '|' || trace_id
	  FROM tasker_task_spans($task) ORDER BY start_time, span_id});
is($spans, join("\n",
		"traced|$task_span|$parent|ok|true|$trace",
		"a|$a_spans[0]|$task_span|error|true|$trace",
		"a|$a_spans[1]|$task_span|ok|true|$trace",
		"h|$h_spans[0]|$task_span|ok|true|$trace",
		"w|$w_spans[0]|$task_span|ok|true|$trace"),
	'tasker_task_spans: the task\'s span under the creator\'s, one span per attempt under it');
is(one(qq{SELECT attributes->>'error.message' FROM tasker_task_spans($task) WHERE span_id = '$a_spans[0]'}),
	'first attempt fails', 'a failed attempt\'s span carries the error message');
is(one(qq{SELECT attributes->>'tasker.handler_kind' FROM tasker_task_spans($task) WHERE span_id = '$h_spans[0]'}),
	'http', 'an attempt\'s span carries its handler kind');
is(one(qq{SELECT bool_and(start_time <= end_time) FROM tasker_task_spans($task)}), 't',
	'every span ends after it starts');

# ---- the context's traceparent key, the argument's precedence, a new trace
my $other = '0af7651916cd43dd8448eb211c80319c';
my $t3 = one(qq{SELECT tasker_create_task('plain', '{"traceparent": "00-$other-b7ad6b7169203331-00"}')});
is(one("SELECT trace_id || ' ' || trace_parent_id || ' ' || trace_flags FROM tasker_tasks WHERE task_id = $t3"),
	"$other b7ad6b7169203331 0", 'a traceparent key in the context puts the task in that trace');
my $t4 = one(qq{SELECT tasker_create_task('plain', '{"traceparent": "00-$other-b7ad6b7169203331-00"}',
	traceparent => '00-$trace-$parent-01')});
is(one("SELECT trace_id FROM tasker_tasks WHERE task_id = $t4"), $trace, 'the argument wins over the context\'s key');
my $t5 = one("SELECT tasker_create_task('plain', '{}')");
like(one("SELECT trace_id || ' ' || coalesce(trace_parent_id, '-') || ' ' || trace_flags FROM tasker_tasks WHERE task_id = $t5"),
	qr/^[0-9a-f]{32} - 1$/, 'a task without a traceparent begins a new, sampled trace');
isnt(one("SELECT trace_id FROM tasker_tasks WHERE task_id = $t5"),
	one("SELECT trace_id FROM tasker_tasks WHERE task_id = (SELECT tasker_create_task('plain', '{}'))"),
	'each new trace has its own id');
is(one("SELECT tasker_wait_for_task($t5, '30 seconds')"), 'complete', 'the task of a new trace completes');
is(one(qq{SELECT count(*) FILTER (WHERE parent_span_id IS NULL) || ' ' || count(*) FROM tasker_task_spans($t5)}),
	'1 3', 'a new trace: the task\'s span is the root, with its two attempts under it');

# ---- a subtask's child task joins its parent's trace, under the subtask step's span
my $nest = one(qq{SELECT tasker_create_task('nest', '{}', traceparent => '00-$trace-$parent-01')});
is(one("SELECT tasker_wait_for_task($nest, '30 seconds')"), 'complete', 'a task with a subtask completes');
is(one(qq{SELECT c.trace_id || ' ' || (c.trace_parent_id = tasker_span_id('$trace', $nest, x.workflow_step_id, x.sort_key))
	  FROM tasker_tasks c
	  JOIN tasker_workflow_step_transitions x ON x.workflow_step_id = c.parent_step_id AND x.to_state = 'in_progress'
	 WHERE x.task_id = $nest}),
	"$trace true", 'the child task is in the parent\'s trace, a child of the subtask step\'s attempt');

# ---- bad traceparents: 22023, with detail and hint
my $tasks_before = one("SELECT count(*) FROM tasker_tasks");
my @bad = (
	[ "01-$trace-$parent-01", 'only version 00' ],
	[ "ff-$trace-$parent-01", 'only version 00' ],
	[ '00-' . uc($trace) . "-$parent-01", 'trace id is not 32 lower-case hex' ],
	[ '00-' . ('0' x 32) . "-$parent-01", 'trace id is all zeros' ],
	[ "00-$trace-" . ('0' x 16) . '-01', 'parent id is all zeros' ],
	[ "00-$trace-$parent-zz", 'flags are not two lower-case hex' ],
	[ "00-$trace-$parent", '55 characters' ],
	[ "00-$trace-$parent-01-extra", '55 characters' ],
	[ '', 'does not start with a version' ],
);
for my $b (@bad)
{
	my ($tp, $why) = @$b;
	my ($rc, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSELECT tasker_create_task('plain', '{}', traceparent => '$tp')");
	like($err, qr/ERROR:  22023: the traceparent argument is not a valid W3C traceparent.*DETAIL:  .*\Q$why\E.*HINT:  Pass a W3C traceparent/s,
		"traceparent '$tp' is refused: $why");
}
my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT tasker_create_task('plain', '{\"traceparent\": \"00-$trace-$parent-1\"}')");
like($err, qr/22023: the context's traceparent key is not a valid W3C traceparent/,
	'a bad traceparent key in the context is refused');
($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT tasker_create_task('plain', '{\"traceparent\": [1]}')");
like($err, qr/22023: the context's traceparent key is not a string/, 'a traceparent key that is not a string is refused');
is(one("SELECT count(*) FROM tasker_tasks"), $tasks_before, 'no refused call created a task');

# ---- tasker_span_id
is(one("SELECT tasker_span_id('$trace', 1, 2, 10) = tasker_span_id('$trace', 1, 2, 10)"), 't',
	'tasker_span_id is deterministic');
is(one(qq{SELECT count(DISTINCT s) FROM (VALUES (tasker_span_id('$trace', 1)), (tasker_span_id('$trace', 1, 2, 10)),
	(tasker_span_id('$trace', 1, 2, 20)), (tasker_span_id('$trace', 1, 3, 10)), (tasker_span_id('$other', 1, 2, 10)),
	(tasker_span_id('$trace', 2))) v(s)}), '6', 'it differs by trace, task, step and attempt');
is(one("SELECT tasker_span_id(NULL, 1) IS NULL"), 't', 'no trace, no span');

# ---- the OpenTelemetry example: OTLP JSON from the spans
my $exporter = "$tree/contrib/opentelemetry/tasker_otlp.py";
my $python = '/usr/bin/python3';
is(system($python, '-m', 'py_compile', $exporter), 0, 'the exporter compiles');
SKIP:
{
	skip 'python3-psycopg is not installed', 3
	  if system($python, '-c', 'import psycopg') != 0;
	my ($otlp, $oerr) = ('', '');
	IPC::Run::run([ $python, $exporter, '--dsn', $node->connstr('postgres'), '--once' ],
		'>', \$otlp, '2>', \$oerr);
	my @lines = grep { /resourceSpans/ } split /\n/, $otlp;
	ok(@lines >= 3, 'the exporter prints OTLP JSON for each finished task') or diag($oerr);
	my ($doc) = grep { index($_, "\"$task_span\"") >= 0 } @lines;
	my $spans_out = $doc ? decode_json($doc)->{resourceSpans}[0]{scopeSpans}[0]{spans} : [];
	is(scalar(@$spans_out), 5, 'the traced task becomes five OTLP spans');
	is(join(',', sort map { $_->{traceId} } @$spans_out), join(',', ($trace) x 5),
		'every OTLP span is in the task\'s trace');
}

done_testing();
