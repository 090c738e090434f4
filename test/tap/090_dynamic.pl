# 090_dynamic.pl: dynamic workflows (issue 10) with the background
# workers running: map steps (happy path, empty array, a path into a
# parent's results, retries inside an instance, a permanent failure that
# stops the other instances, map_max_parallel bounding 1,000 instances,
# an external-worker map), decision steps (branches skipped, convergence,
# a branch outside the list), signals (before and after the wait step is
# reached, unknown and late signals, timeout then resolution by hand),
# delays, subtasks (results, a failing child, cancelling the parent), a
# SIGKILL in the middle of a map with exactly-once SQL effects, and the
# registration errors.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $node = PostgreSQL::Test::Cluster->new('dynamic');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.max_backoff = 1
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE TABLE ledger (item int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE flaky (item int PRIMARY KEY, tries int);
CREATE TABLE peak (n int);
CREATE FUNCTION double_it(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('double', (step->>'item')::int * 2,
                                    'index', step->'item_index') $$;
CREATE FUNCTION sum_up(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('sum', (SELECT sum((x->>'double')::int)
                                            FROM jsonb_array_elements(step->'dependencies'->'fan') x)) $$;
CREATE FUNCTION make_list(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{"lines": [10, 20, 30]}'::jsonb $$;
CREATE FUNCTION flaky_item(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE t int;
BEGIN
    INSERT INTO flaky VALUES ((step->>'item')::int, 1)
        ON CONFLICT (item) DO UPDATE SET tries = flaky.tries + 1 RETURNING tries INTO t;
    IF (step->>'item')::int = 2 AND step->>'attempt' = '1' THEN
        RAISE EXCEPTION 'item 2 fails once';
    END IF;
    RETURN jsonb_build_object('item', step->'item');
END $$;
CREATE FUNCTION fatal_item(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (step->>'item')::int = 2 THEN
        PERFORM tasker_permanent_error('item 2 is broken');
    END IF;
    RETURN '{}';
END $$;
CREATE FUNCTION watch_peak(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO peak SELECT count(*) FROM tasker_workflow_steps
     WHERE map_parent_id = (SELECT map_parent_id FROM tasker_workflow_steps
                             WHERE workflow_step_id = (step->>'step_id')::bigint)
       AND current_state = 'in_progress';
    SELECT '{}'::jsonb $$;
CREATE FUNCTION ledger_item(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO ledger (item) VALUES ((step->>'item')::int);
    SELECT pg_sleep(0.02);
    SELECT '{}'::jsonb $$;
CREATE FUNCTION choose(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('next', step->'context'->'next') $$;
CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('ran', step->>'step_name',
                                    'saw', (SELECT jsonb_agg(k ORDER BY k) FROM jsonb_object_keys(step->'dependencies') k)) $$;
CREATE FUNCTION boom(step jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN PERFORM tasker_permanent_error('child step fails'); RETURN NULL; END $$;
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker'"),
	'executors up');

sub reg
{
	my ($yaml) = @_;
	return $node->safe_psql('postgres', "SELECT tasker_register_template(\$y\$$yaml\$y\$)");
}

sub reg_error
{
	my ($yaml) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SELECT tasker_register_template(\$y\$$yaml\$y\$)");
	return $err;
}

sub create
{
	my ($name, $ctx) = @_;
	$ctx //= '{}';
	return $node->safe_psql('postgres', "SELECT tasker_create_task('$name', '$ctx')");
}

sub wait_state
{
	my ($id, $state, $what) = @_;
	ok($node->poll_query_until('postgres',
			"SELECT current_state = '$state' FROM tasker_tasks WHERE task_id = $id"),
		$what);
}

sub sq { return $node->safe_psql('postgres', $_[0]); }

# ---- registration errors ----
like(reg_error(q{
name: bad_path
step_templates:
  - {name: fan, handler_class: double_it, map_over: items}
}), qr/not a path into the context/, 'map_over must be a context or dependencies path');
like(reg_error(q{
name: bad_dep_path
step_templates:
  - {name: a, handler_class: make_list}
  - {name: fan, handler_class: double_it, map_over: dependencies.b.lines, depends_on_step: a}
}), qr/reads the results of "b", which is not one of its dependencies/,
	'a dependencies path names a dependency');
like(reg_error(q{
name: bad_branch
step_templates:
  - {name: d, handler_class: choose, type: decision, branches: [x, nope]}
  - {name: x, handler_class: noop, depends_on_step: d}
}), qr/branch "nope" of decision step "d" is not a step/, 'unknown branch refused');
like(reg_error(q{
name: loose_branch
step_templates:
  - {name: d, handler_class: choose, type: decision, branches: [x]}
  - {name: x, handler_class: noop}
}), qr/branch "x" of decision step "d" does not depend on the decision/,
	'a branch must depend on its decision');
like(reg_error(q{
name: selfish
step_templates:
  - {name: me, type: subtask, task: {name: selfish}}
}), qr/cycle of subtasks/, 'a subtask of its own template is a cycle');
reg(q{
name: leaf_a
step_templates:
  - {name: x, handler_class: noop}
});
reg(q{
name: mid_b
step_templates:
  - {name: sub, type: subtask, task: {name: leaf_a}}
});
like(reg_error(q{
name: leaf_a
version: 0.2.0
step_templates:
  - {name: sub, type: subtask, task: {name: mid_b}}
}), qr/cycle of subtasks: default\/leaf_a -> default\/mid_b -> default\/leaf_a/,
	'a cycle through another template is refused');
like(reg_error(q{
name: ghost_parent
step_templates:
  - {name: sub, type: subtask, task: {name: no_such_template}}
}), qr/names task "no_such_template" in namespace "default", which is not registered/,
	'a subtask names a registered template');
like(reg_error(q{
name: wait_no_signal
step_templates:
  - {name: w, type: wait}
}), qr/has no "signal" key/, 'a wait step names its signal');
like(reg_error(q{
name: odd_type
step_templates:
  - {name: w, type: sleep, handler_class: noop}
}), qr/"type" of step "w" is "sleep"/, 'unknown step type refused');

# ---- map: happy path, order, envelope, history ----
reg(q{
name: map_basic
step_templates:
  - {name: fan, handler_class: double_it, map_over: context.items}
  - {name: total, handler_class: sum_up, depends_on_step: fan}
});
my $t = create('map_basic', '{"items": [5, 1, 4, 2, 3]}');
wait_state($t, 'complete', 'map task completes');
is(sq("SELECT results FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
       WHERE task_id = $t AND n.name = 'fan' AND map_parent_id IS NULL"),
	'[{"index": 0, "double": 10}, {"index": 1, "double": 2}, {"index": 2, "double": 8}, {"index": 3, "double": 4}, {"index": 4, "double": 6}]',
	'map results are the instances\' results in index order, with item and item_index');
is(sq("SELECT results->>'sum' FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
       WHERE task_id = $t AND n.name = 'total'"), '30', 'the dependent step sees the array');
is(sq("SELECT count(*) FROM tasker_workflow_step_transitions tr JOIN tasker_workflow_steps s USING (workflow_step_id)
       WHERE s.task_id = $t AND s.map_parent_id IS NOT NULL AND tr.to_state = 'complete'"),
	'5', 'each instance has its own history');
is(sq("SELECT jsonb_array_length(tasker_task_summary($t)->'steps') || ':' ||
              (tasker_task_summary($t)->'steps'->0->'map_instances')::text"),
	'2:{"complete": 5}', 'the task summary shows the map step with its instances by state');
like(sq("SELECT tasker_task_diagram($t)"), qr/map: 5 of 5 complete/, 'the diagram summarises the instances');

$t = create('map_basic', '{"items": []}');
wait_state($t, 'complete', 'an empty map completes');
is(sq("SELECT results FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
       WHERE task_id = $t AND n.name = 'fan'"), '[]', 'with []');

$t = create('map_basic', '{"items": "nope"}');
wait_state($t, 'error', 'a map over a non-array fails the task');
like(sq("SELECT results->'error'->>'message' FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
         WHERE task_id = $t AND n.name = 'fan'"),
	qr/map_over context.items of step "fan" is string, not a JSON array/, 'with a clear error');

$node->safe_psql('postgres', "ALTER SYSTEM SET tasker.max_map_items = 3; SELECT pg_reload_conf()");
sleep 1;
$t = create('map_basic', '{"items": [1, 2, 3, 4]}');
wait_state($t, 'error', 'over tasker.max_map_items the map fails');
like(sq("SELECT results->'error'->>'message' FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
         WHERE task_id = $t AND n.name = 'fan'"),
	qr/has 4 elements; tasker.max_map_items allows 3/, 'permanently, naming the limit');
$node->safe_psql('postgres', "ALTER SYSTEM RESET tasker.max_map_items; SELECT pg_reload_conf()");
sleep 1;

# ---- map over a parent's results ----
reg(q{
name: map_deps
step_templates:
  - {name: list, handler_class: make_list}
  - {name: fan, handler_class: double_it, map_over: dependencies.list.lines, depends_on_step: list}
});
$t = create('map_deps');
wait_state($t, 'complete', 'map over dependencies.STEP.KEY');
is(sq("SELECT jsonb_path_query_array(results, '\$[*].double')::text FROM tasker_workflow_steps s
       JOIN tasker_named_steps n USING (named_step_id) WHERE task_id = $t AND n.name = 'fan' AND map_parent_id IS NULL"),
	'[20, 40, 60]', 'over the parent results');

# ---- retries inside an instance ----
reg(q{
name: map_flaky
step_templates:
  - {name: fan, handler_class: flaky_item, map_over: context.items, default_retry_limit: 3}
});
$t = create('map_flaky', '{"items": [1, 2, 3]}');
wait_state($t, 'complete', 'an instance that fails once is retried on its own');
is(sq("SELECT string_agg(map_index || ':' || attempts, ',' ORDER BY map_index)
        FROM tasker_workflow_steps WHERE task_id = $t AND map_parent_id IS NOT NULL"), '0:1,1:2,2:1',
	'only the failing instance ran twice');
is(sq("SELECT count(*) FROM tasker_workflow_step_transitions tr JOIN tasker_workflow_steps s USING (workflow_step_id)
        WHERE s.task_id = $t AND s.map_index = 1 AND tr.to_state = 'error'"), '1',
	'its failed attempt is in its own history');

# ---- a permanent failure stops the other instances ----
reg(q{
name: map_fatal
step_templates:
  - {name: fan, handler_class: fatal_item, map_over: context.items, map_max_parallel: 1}
});
$t = create('map_fatal', '{"items": [1, 2, 3, 4, 5]}');
wait_state($t, 'error', 'a permanent instance failure fails the task');
is(sq("SELECT string_agg(map_index || ':' || current_state || ':' || attempts, ',' ORDER BY map_index)
        FROM tasker_workflow_steps WHERE task_id = $t AND map_parent_id IS NOT NULL"),
	'0:complete:1,1:error:1,2:pending:0,3:pending:0,4:pending:0',
	'the other instances are never claimed');
like(sq("SELECT results->'error'->>'message' FROM tasker_workflow_steps WHERE task_id = $t AND map_parent_id IS NULL"),
	qr/map instance step \d+ failed: item 2 is broken/, 'the map step fails with the instance error');

# ---- 1,000 items, at most 10 in progress ----
reg(q{
name: map_wide
step_templates:
  - {name: fan, handler_class: watch_peak, map_over: context.items, map_max_parallel: 10}
});
$t = create('map_wide', '{"items": ' . '[' . join(',', 1 .. 1000) . ']}');
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $t", 't'),
	'a map of 1,000 items completes');
is(sq("SELECT count(*) FROM peak"), '1000', 'every instance ran once');
is(sq("SELECT max(n) <= 10 FROM peak"), 't', 'never more than 10 instances in progress');

# ---- a map of external-worker steps honours map_max_parallel too ----
reg(q{
name: map_workers
step_templates:
  - {name: fan, handler_config: {type: worker, queue: mq}, map_over: context.items, map_max_parallel: 2}
});
$t = create('map_workers', '{"items": ["a", "b", "c"]}');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_workflow_steps WHERE task_id = $t AND map_parent_id IS NOT NULL AND next_attempt_at IS NOT NULL"),
	'two instances released');
my $claimed = sq("SELECT string_agg(envelope->>'item' || ':' || (envelope->>'item_index'), ',' ORDER BY envelope->>'item_index')
                 FROM tasker_claim_steps('mq', 'w1', 10)");
is($claimed, 'a:0,b:1', 'a worker claims only the released instances, with item and item_index');
# The two claimed above are in progress under their tokens; complete them.
sq("SELECT tasker_complete_step(workflow_step_id, claim_token, jsonb_build_object('i', map_index))
     FROM tasker_workflow_steps WHERE task_id = $t AND current_state = 'in_progress' AND map_parent_id IS NOT NULL");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM tasker_workflow_steps WHERE task_id = $t AND map_index = 2 AND next_attempt_at IS NOT NULL"),
	'the third is released when the first two complete');
sq("SELECT tasker_complete_step(step_id, claim_token, '{\"i\": 2}') FROM tasker_claim_steps('mq', 'w1', 10)");
wait_state($t, 'complete', 'the worker map completes');

# ---- decisions ----
reg(q{
name: shipping
step_templates:
  - {name: route, handler_class: choose, type: decision, branches: [domestic, international]}
  - {name: domestic, handler_class: noop, depends_on_step: route}
  - {name: international, handler_class: noop, depends_on_step: route}
  - {name: customs, handler_class: noop, depends_on_step: international}
  - {name: notify, handler_class: noop, depends_on_steps: [domestic, international]}
});
$t = create('shipping', '{"next": ["domestic"]}');
wait_state($t, 'complete', 'a decision task completes');
is(sq("SELECT string_agg(n.name || ':' || s.current_state, ',' ORDER BY n.name) FROM tasker_workflow_steps s
       JOIN tasker_named_steps n USING (named_step_id) WHERE task_id = $t"),
	'customs:skipped,domestic:complete,international:skipped,notify:complete,route:complete',
	'the branch not taken and what only it reaches are skipped; the convergence step runs');
is(sq("SELECT s.results->>'saw' FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
       WHERE task_id = $t AND n.name = 'notify'"), '["domestic"]',
	'the convergence step sees its completed parent');
is(sq("SELECT string_agg(tr.metadata->>'reason', ',' ORDER BY n.name) FROM tasker_workflow_step_transitions tr
       JOIN tasker_workflow_steps s USING (workflow_step_id) JOIN tasker_named_steps n USING (named_step_id)
      WHERE s.task_id = $t AND tr.to_state = 'skipped'"),
	'all_parents_skipped,branch_not_taken', 'each skip is a transition row with its reason');
is(sq("SELECT execution_status || ':' || skipped_steps || ':' || completion_percentage
        FROM tasker_task_execution_context($t)"), 'all_complete:2:100.00',
	'the execution context counts skipped as finished');

$t = create('shipping', '{"next": []}');
wait_state($t, 'complete', 'a decision that takes no branch');
is(sq("SELECT string_agg(n.name || ':' || s.current_state, ',' ORDER BY n.name) FROM tasker_workflow_steps s
       JOIN tasker_named_steps n USING (named_step_id) WHERE task_id = $t"),
	'customs:skipped,domestic:skipped,international:skipped,notify:skipped,route:complete',
	'a convergence step whose parents are all skipped is skipped');

$t = create('shipping', '{"next": ["moon"]}');
wait_state($t, 'error', 'a decision outside its branches fails');
like(sq("SELECT results->'error'->>'message' FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
         WHERE task_id = $t AND n.name = 'route'"),
	qr/decision returned "moon", which is not one of its branches \["domestic", "international"\]/,
	'with a clear, permanent error');
is(sq("SELECT retryable FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
       WHERE task_id = $t AND n.name = 'route'"), 'f', 'not retried');

# events: step.skipped is announced
my $events = $node->safe_psql('postgres', qq{
LISTEN tasker_events;
SELECT tasker_create_task('shipping', '{"next": ["international"]}') \\gset
SELECT tasker_run_task(:tasker_create_task);
SELECT pg_sleep(1);
});
# The relay sends each event after its commit, whoever ran the step (this
# session or a worker): the pause lets psql print what arrives meanwhile.
like($events, qr/"event":"step.skipped"[^\n]*"step_name":"domestic"/, 'step.skipped is announced');
is(sq("SELECT count(*) FROM tasker_event_catalog WHERE name = 'step.skipped'"), '1', 'and catalogued');

# ---- signals ----
reg(q{
name: approval
step_templates:
  - {name: prepare, handler_class: noop, delay_seconds: 2}
  - {name: approve, type: wait, signal: manager_approved, timeout_seconds: 60, depends_on_step: prepare}
  - {name: ship, handler_class: noop, depends_on_step: approve}
});
$t = create('approval');
is(sq("SELECT waiting_for FROM tasker_step_readiness_status($t) WHERE name = 'prepare'"), 'delay',
	'a delayed step reports waiting_for delay');
is(sq("SELECT tasker_signal($t, 'manager_approved', '{\"by\": \"ann\"}')"), 't',
	'a signal before the wait step is reached is kept');
wait_state($t, 'complete', 'and used when the step is reached');
is(sq("SELECT results->>'by' FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
       WHERE task_id = $t AND n.name = 'approve'"), 'ann', 'the payload is the step results');
is(sq("SELECT extract(epoch FROM p.created_at - t.created_at) >= 1.9
        FROM tasker_workflow_step_transitions p
        JOIN tasker_workflow_steps s USING (workflow_step_id)
        JOIN tasker_named_steps n USING (named_step_id)
        JOIN tasker_tasks t ON t.task_id = s.task_id
       WHERE s.task_id = $t AND n.name = 'prepare' AND p.to_state = 'in_progress'"), 't',
	'the delayed step started no sooner than delay_seconds after it was ready');
is(sq("SELECT tasker_signal($t, 'manager_approved')"), 'f', 'a signal after the step finished returns false');

$t = create('approval');
ok($node->poll_query_until('postgres',
		"SELECT waiting_for = 'signal' FROM tasker_step_readiness_status($t) WHERE name = 'approve'"),
	'the wait step waits for its signal');
is(sq("SELECT execution_status FROM tasker_task_execution_context($t)"), 'waiting',
	'the execution context reports waiting');
is(sq("SELECT count(*) FROM tasker_worker_status() WHERE state = 'busy'"), '0', 'holding no worker');
is(sq("SELECT tasker_signal($t, 'other_signal')"), 'f', 'an unknown signal returns false');
is(sq("SELECT tasker_signal($t, 'manager_approved', '{\"by\": \"bob\"}')"), 't', 'the signal completes the wait');
wait_state($t, 'complete', 'and the task');

reg(q{
name: approval_short
step_templates:
  - {name: approve, type: wait, signal: manager_approved, timeout_seconds: 1}
  - {name: ship, handler_class: noop, depends_on_step: approve}
});
$t = create('approval_short');
wait_state($t, 'error', 'a wait that times out fails the task');
is(sq("SELECT tr.metadata->>'reason' || ':' || (s.results->'error'->>'sqlstate')
        FROM tasker_workflow_steps s JOIN tasker_workflow_step_transitions tr USING (workflow_step_id)
        JOIN tasker_named_steps n ON n.named_step_id = s.named_step_id
       WHERE s.task_id = $t AND n.name = 'approve' AND tr.most_recent"), 'timeout:TK004',
	'with the reason timeout');
sq("SELECT tasker_resolve_step(workflow_step_id, '{\"by\": \"hand\"}') FROM tasker_workflow_steps s
     JOIN tasker_named_steps n USING (named_step_id) WHERE task_id = $t AND n.name = 'approve'");
wait_state($t, 'complete', 'resolved by hand, the task goes on');

# ---- subtasks ----
reg(q{
name: fulfil
step_templates:
  - {name: pick, handler_class: noop}
  - {name: pack, handler_class: noop, depends_on_step: pick}
});
reg(q{
name: order
step_templates:
  - {name: take, handler_class: noop}
  - {name: fulfilment, type: subtask, task: {name: fulfil}, context_from: context.shipment, depends_on_step: take}
  - {name: bill, handler_class: noop, depends_on_step: fulfilment}
});
$t = create('order', '{"shipment": {"box": 3}}');
wait_state($t, 'complete', 'a parent with a subtask completes');
my $child = sq("SELECT task_id FROM tasker_tasks WHERE parent_step_id = (SELECT workflow_step_id
                FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
               WHERE task_id = $t AND n.name = 'fulfilment')");
ok($child ne '', 'the child records its parent step');
is(sq("SELECT (tasker_task_summary($t)->'children'->0->>'task_id') || ':' || (tasker_task_summary($t)->'children'->0->>'step')"),
	"$child:fulfilment", 'the parent summary lists its child task');
is(sq("SELECT context::text FROM tasker_tasks WHERE task_id = $child"), '{"box": 3}', 'context_from');
is(sq("SELECT string_agg(k, ',' ORDER BY k) FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id),
             jsonb_object_keys(s.results) k WHERE task_id = $t AND n.name = 'fulfilment'"),
	'pack,pick', 'the subtask step completes with the child results by step name');

reg(q{
name: fulfil_bad
step_templates:
  - {name: pick, handler_class: boom}
});
reg(q{
name: order_bad
step_templates:
  - {name: fulfilment, type: subtask, task: {name: fulfil_bad}}
});
$t = create('order_bad');
wait_state($t, 'error', 'a failing child fails the parent');
like(sq("SELECT results->'error'->>'message' FROM tasker_workflow_steps WHERE task_id = $t"),
	qr/child task \d+ failed/, 'naming the child');

reg(q{
name: fulfil_slow
step_templates:
  - {name: hold, type: wait, signal: go}
});
reg(q{
name: order_slow
step_templates:
  - {name: fulfilment, type: subtask, task: {name: fulfil_slow}}
});
$t = create('order_slow');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM tasker_tasks c JOIN tasker_workflow_steps s ON s.workflow_step_id = c.parent_step_id
          WHERE s.task_id = $t AND c.current_state = 'in_progress'"),
	'the child is running');
sq("SELECT tasker_cancel_task($t)");
is(sq("SELECT c.current_state FROM tasker_tasks c JOIN tasker_workflow_steps s ON s.workflow_step_id = c.parent_step_id
       WHERE s.task_id = $t"), 'cancelled', 'cancelling the parent cancels the child');

# ---- cancelling a task in the middle of its map ----
reg(q{
name: map_slow
step_templates:
  - {name: fan, handler_class: ledger_item, map_over: context.items, map_max_parallel: 2}
});
$t = create('map_slow', '{"items": [' . join(',', 1001 .. 1100) . ']}');
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 4 FROM tasker_workflow_steps WHERE task_id = $t AND map_parent_id IS NOT NULL AND current_state = 'complete'"),
	'the map is under way');
sq("SELECT tasker_cancel_task($t)");
sleep 1;
is(sq("SELECT count(*) FROM tasker_workflow_steps WHERE task_id = $t AND current_state IN ('pending', 'in_progress', 'error')"),
	'0', 'cancelling the task settles the map step and every instance');
my $ran = sq("SELECT count(*) FROM ledger WHERE item > 1000");
sleep 1;
is(sq("SELECT count(*) FROM ledger WHERE item > 1000"), $ran, 'no instance runs after the cancel');
is(sq("SELECT count(*) FROM ledger WHERE item > 1000") eq sq("SELECT count(*) FROM tasker_workflow_steps WHERE task_id = $t AND map_parent_id IS NOT NULL AND current_state = 'complete'") ? 1 : 0,
	1, 'each instance that completed wrote its row once');
sq("DELETE FROM ledger WHERE item > 1000");

# ---- a SIGKILL in the middle of a map: exactly-once SQL effects ----
reg(q{
name: map_ledger
step_templates:
  - {name: fan, handler_class: ledger_item, map_over: context.items}
});
$t = create('map_ledger', '{"items": ' . '[' . join(',', 1 .. 300) . ']}');
ok($node->poll_query_until('postgres', "SELECT count(*) > 20 FROM ledger"), 'the map is running');
my $pid = sq("SELECT pid FROM tasker_worker_status() WHERE role = 'worker' AND state = 'busy' LIMIT 1")
  || sq("SELECT pid FROM tasker_worker_status() WHERE role = 'worker' LIMIT 1");
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
		"SELECT current_state = 'complete' FROM tasker_tasks WHERE task_id = $t"),
	'after a SIGKILL and crash recovery, the map completes');
is(sq("SELECT count(*) || ':' || count(DISTINCT item) FROM ledger"), '300:300',
	'each instance wrote its ledger row exactly once');
is(sq("SELECT string_agg(task_id || ': ' || problem, '; ') FROM tasker_check()"), '',
	'no task breaks an invariant');

$node->stop;
done_testing();
