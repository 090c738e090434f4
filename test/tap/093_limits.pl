# 093_limits.pl: concurrency keys, namespace caps and rate limits (issue 11
# item 4) with the workers running:
# - with concurrency limit 1, the tasks of one key never overlap and start
#   in creation order, while tasks of different keys do run at once;
# - a namespace cap of 1 keeps the namespace's SQL steps one at a time; a
#   cap of 2 lets an external worker hold two steps, no more, until one
#   finishes;
# - 100 SQL steps under per_second 20 take about 5 s and never start more
#   than the rate plus the burst in any one-second window; an external
#   worker's claims obey the same bucket;
# - bad templates and bad calls get their documented errors.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep time);

my $node = PostgreSQL::Test::Cluster->new('limits');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
tasker.batch_size = 1
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE TABLE runs (task_id bigint, step text, k text, started timestamptz, ended timestamptz);
CREATE FUNCTION slow(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE s timestamptz := clock_timestamp();
BEGIN
    PERFORM pg_sleep(0.15);
    INSERT INTO runs VALUES ((step->>'task_id')::bigint, step->>'step_name',
                             step->'context'->>'customer', s, clock_timestamp());
    RETURN '{}';
END $$;
CREATE FUNCTION stamp(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO runs VALUES ((step->>'task_id')::bigint, step->>'step_name', 'rate',
                             clock_timestamp(), clock_timestamp()) RETURNING '{}'::jsonb
$$;
SELECT tasker_register_template($y$
name: per_customer
concurrency: {key: 'customer-{{context.customer}}', limit: 1}
step_templates:
  - {name: a, handler_class: slow}
  - {name: b, handler_class: slow, depends_on_step: a}
$y$);
SELECT tasker_register_template($y$
name: capped
namespace_name: narrow
step_templates:
  - {name: a, handler_class: slow}
$y$);
SELECT tasker_register_template($y$
name: paced
step_templates:
  - name: call
    handler_class: stamp
    rate_limit: {key: partner, per_second: 20, burst: 1}
$y$);
SELECT tasker_register_template($y$
name: ext
namespace_name: wk
step_templates:
  - {name: only, handler_config: {type: worker, queue: wq}}
$y$);
SELECT tasker_register_template($y$
name: ext_paced
step_templates:
  - name: only
    handler_config: {type: worker, queue: rq}
    rate_limit: {key: slow_partner, per_second: 0.5, burst: 1}
$y$);
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker'"),
	'executors up');

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub all_done
{
	my ($name) = @_;
	return $node->poll_query_until('postgres',
		"SELECT bool_and(current_state = 'complete') FROM tasker_tasks t
		   JOIN tasker_named_tasks nt USING (named_task_id) WHERE nt.name = '$name'");
}

# ---- concurrency keys ----
sq("SELECT tasker_create_task('per_customer', jsonb_build_object('customer', c))
      FROM generate_series(1, 4) i, unnest(ARRAY['A', 'B']) c ORDER BY i, c");
is(sq("SELECT count(*) FROM tasker_tasks WHERE concurrency_key IN ('customer-A', 'customer-B')
          AND concurrency_limit = 1"), '8', 'each task has its rendered key and limit');
ok(all_done('per_customer'), 'every task of the two keys completes');
# one interval per task: from its first step's start to its last step's end
sq("CREATE VIEW spans AS SELECT task_id, k, min(started) AS s, max(ended) AS e
      FROM runs WHERE k IN ('A', 'B') GROUP BY task_id, k");
is(sq("SELECT count(*) FROM spans x JOIN spans y ON x.k = y.k AND x.task_id < y.task_id
        WHERE x.s < y.e AND y.s < x.e"), '0',
	'with limit 1, no two tasks of the same key overlap');
is(sq("SELECT count(*) FROM spans x JOIN spans y ON x.k = y.k AND x.task_id < y.task_id
        WHERE y.s < x.s"), '0', 'the tasks of one key start in creation order');
cmp_ok(sq("SELECT count(*) FROM spans x JOIN spans y ON x.k <> y.k
            WHERE x.s < y.e AND y.s < x.e"), '>', 0, 'tasks of different keys do run at once');
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_create_task('per_customer', '{\"other\": 1}')");
like($err, qr/concurrency key of task "per_customer" does not resolve/,
	'a context without the key\'s value is refused');
is(sq("SELECT count(*) FROM tasker_tasks WHERE context = '{\"other\": 1}'"), '0',
	'and leaves no task behind');
sq(q{SELECT tasker_register_template($y$
name: per_customer
step_templates:
  - {name: a, handler_class: slow}
  - {name: b, handler_class: slow, depends_on_step: a}
$y$, replace => true)});
my $unkeyed = sq("SELECT tasker_create_task('per_customer', '{\"customer\": \"C\"}')");
is(sq("SELECT concurrency_key IS NULL FROM tasker_tasks WHERE task_id = $unkeyed"),
	't', 'a template replaced without concurrency gives its new tasks no key');

# ---- namespace caps ----
sq("SELECT tasker_set_namespace_limit('narrow', 1)");
is(sq("SELECT kind || ':' || key || ':' || \"limit\" FROM tasker_limits WHERE kind = 'namespace'"),
	'namespace:narrow:1', 'tasker_limits shows the cap');
sq("SELECT tasker_create_task('capped', jsonb_build_object('customer', 'N' || i), 'narrow')
      FROM generate_series(1, 6) i");
ok(all_done('capped'), 'the capped namespace\'s tasks complete');
is(sq("SELECT count(*) FROM runs x JOIN runs y ON x.k LIKE 'N%' AND y.k LIKE 'N%'
         AND x.task_id < y.task_id WHERE x.started < y.ended AND y.started < x.ended"), '0',
	'with a cap of 1, no two SQL steps of the namespace run at once');

sq("SELECT tasker_set_namespace_limit('wk', 2)");
sq("SELECT tasker_create_task('ext', '{}', 'wk') FROM generate_series(1, 5)");
my @claimed = split /\n/, sq("SELECT step_id || ' ' || claim_token FROM tasker_claim_steps('wq', 'w1', 10)");
is(scalar(@claimed), 2, 'a cap of 2 lets an external worker claim two steps of five');
is(sq("SELECT count(*) FROM tasker_claim_steps('wq', 'w2', 10)"), '0',
	'and no more while they run');
my ($sid, $token) = split / /, $claimed[0];
sq("SELECT tasker_complete_step($sid, '$token', '{}')");
is(sq("SELECT count(*) FROM tasker_claim_steps('wq', 'w2', 10)"), '1',
	'one finished: one more may be claimed');
sq("SELECT tasker_set_namespace_limit('wk', NULL)");
is(sq("SELECT count(*) FROM tasker_claim_steps('wq', 'w3', 10)"), '2',
	'NULL removes the cap');

# ---- rate limits ----
my $t0 = time;
sq("SELECT tasker_create_task('paced', '{}') FROM generate_series(1, 100)");
ok(all_done('paced'), '100 rate-limited steps complete');
my $span = sq("SELECT extract(epoch FROM max(started) - min(started)) FROM runs WHERE k = 'rate'");
note(sprintf("100 steps at 20 per second: %.2f s from first to last start (%.1f s in all)",
	$span, time - $t0));
cmp_ok($span, '>=', 4.5, 'they take about 5 s: never faster than 20 a second');
cmp_ok($span, '<', 30, 'and do not stall');
my $window = sq("SELECT max((SELECT count(*) FROM runs y WHERE y.k = 'rate'
                     AND y.started >= x.started AND y.started < x.started + interval '1 second'))
         FROM runs x WHERE x.k = 'rate'");
note("the busiest one-second window started $window steps; starts: "
	. sq("SELECT string_agg(round(extract(epoch FROM started - (SELECT min(started) FROM runs WHERE k = 'rate')) * 1000)::text, ' ' ORDER BY started) FROM runs WHERE k = 'rate'"));
cmp_ok($window, '<=', 21, 'no one-second window holds more than the rate plus the burst');

sq("SELECT tasker_create_task('ext_paced', '{}') FROM generate_series(1, 3)");
is(sq("SELECT count(*) FROM tasker_claim_steps('rq', 'w', 10)"), '1',
	'an external worker\'s claim gets the burst only');
is(sq("SELECT count(*) FROM tasker_claim_steps('rq', 'w', 10)"), '0',
	'the others wait for their turn');
is(sq("SELECT count(*) FROM tasker_workflow_steps WHERE rate_slot_at IS NOT NULL"), '2',
	'each deferred step shows when it comes back (rate_slot_at)');
my ($late, $t1) = (0, time);
while ($late < 2 && time - $t1 < 60)
{
	$late += sq("SELECT count(*) FROM tasker_claim_steps('rq', 'w', 10)");
	sleep 0.05;
}
is($late, 2, 'the deferred steps are claimed once their starts come');
cmp_ok(time - $t1, '>=', 3.5, 'two seconds apart, at 0.5 a second');

# ---- errors ----
sub refused
{
	my ($sql, $re, $name) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	like($err, $re, $name);
}
refused("SELECT tasker_set_namespace_limit('nowhere', 3)", qr/namespace "nowhere" does not exist/,
	'an unknown namespace is refused');
refused("SELECT tasker_set_namespace_limit('narrow', 0)", qr/max_in_progress must be from 1 to 100000/,
	'a cap of 0 is refused');
refused("SELECT tasker_register_template('name: r1
step_templates:
  - {name: a, handler_class: stamp, rate_limit: {key: k, burst: 2}}')",
	qr/has no "per_second" key/, 'a rate limit without per_second is refused');
refused("SELECT tasker_register_template('name: r2
step_templates:
  - {name: a, handler_class: stamp, rate_limit: {key: k, per_second: 0}}')",
	qr/"per_second" of .* must be a positive number/, 'per_second 0 is refused');
refused("SELECT tasker_register_template('name: r3
step_templates:
  - {name: a, handler_class: stamp, rate_limit: {key: " . ('x' x 64) . ", per_second: 1}}')",
	qr/is 64 bytes long; the limit is 63/, 'a rate key over 63 bytes is refused');
refused("SELECT tasker_register_template('name: r4
step_templates:
  - {name: a, handler_class: stamp, rate_limit: {key: k, per_second: 1, per_minute: 3}}')",
	qr/unknown key "per_minute"/, 'an unknown rate_limit key is refused');
refused("SELECT tasker_register_template('name: r5
concurrency: {key: \"{{inputs.x}}\", limit: 1}
step_templates:
  - {name: a, handler_class: stamp}')",
	qr/reference that is not \{\{context.PATH\}\}/, 'a concurrency key must name the context');
refused("SELECT tasker_register_template('name: r6
concurrency: {key: k}
step_templates:
  - {name: a, handler_class: stamp}')",
	qr/has no "limit" key/, 'a concurrency without a limit is refused');
is(sq("SELECT count(*) FROM tasker_named_tasks WHERE name LIKE 'r_'"), '0',
	'refused templates leave nothing behind');

$node->stop;
done_testing();
