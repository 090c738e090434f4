# 098_scaleout.pl: scale-out through the tasker_proxy router (issue 14,
# docs/scale-out.md).  Four shards, each an ordinary tasker installation
# with its own executor, and a router database with tasker_proxy over
# PL/Proxy; every connection is a unix socket.  Checked:
#   - templates registered through the router exist on every shard, and
#     shards added later get them with tasker_proxy_sync_shard (one call
#     each);
#   - 1,000 tasks created through the router all complete, spread over the
#     shards within 20 % of even, each on the shard its id names, each
#     found by id through the router; an identity key sent twice through
#     two router sessions gives one task;
#   - a shard stopped in the middle of a router session: creation without
#     an identity key goes to the other shards, a call for a task on the
#     stopped shard fails with 08006 naming it, the router's reads report
#     it; when it is back (after crash recovery) its tasks finish;
#   - the Python worker connected to the router completes worker steps of
#     every shard;
#   - merged reads: the event log with per-shard cursors, analytics,
#     health and metrics carry the shard.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd;
use IPC::Run;
use Time::HiRes qw(sleep);

my $tree = $ENV{TASKER_TREE};
my $python = '/usr/bin/python3';

my @shards;
for my $k (0 .. 3)
{
	my $s = PostgreSQL::Test::Cluster->new("shard$k");
	$s->init;
	$s->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 1
shared_buffers = 16MB
max_connections = 30
});
	$s->start;
	$s->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE FUNCTION so_step(step jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('total', 0, 'port', current_setting('port')) $$;
});
	push @shards, $s;
}
my $router = PostgreSQL::Test::Cluster->new('router');
$router->init;
$router->append_conf('postgresql.conf', "shared_buffers = 16MB\n");
$router->start;
$router->safe_psql('postgres', 'CREATE EXTENSION tasker_proxy CASCADE');

my @conn = map { $_->connstr('postgres') } @shards;
sub connarray { return 'ARRAY[' . join(', ', map { "\$c\$$_\$c\$" } @_) . ']'; }

# r(sql): run on the router; sq(k, sql): run on shard k.
sub r { return $router->safe_psql('postgres', $_[0]); }
sub sq { return $shards[ $_[0] ]->safe_psql('postgres', $_[1]); }

# ---- two shards first, templates, then two more
is(r('SELECT tasker_proxy_set_shards(' . connarray(@conn[0, 1]) . ')'), '2',
	'the router takes two shards');
my ($rc, $out, $err) = $router->psql('postgres',
	'SELECT tasker_proxy_set_shards(' . connarray(@conn[0 .. 2]) . ')');
like($err, qr/power of two/, 'three shards are refused (PL/Proxy partitions by powers of two)');
r(q{SELECT tasker_register_template($y$
name: so_fan
step_templates:
  - {name: a, handler_class: so_step}
  - {name: b, handler_class: so_step, depends_on_step: a}
$y$)});
is(join(',', map { sq($_, "SELECT count(*) FROM tasker_templates WHERE name = 'so_fan'") } 0, 1),
	'1,1', 'a template registered through the router exists on both shards');

($rc, $out, $err) = $router->psql('postgres',
	'SELECT tasker_proxy_set_shards(' . connarray(@conn) . ')');
is($out, '4', 'the router grows to four shards');
like($err, qr/shards 2 to 3 are new.*tasker_proxy_sync_shard/s, 'and says how to give the new ones the templates');
is(sq(2, "SELECT count(*) FROM tasker_templates WHERE name = 'so_fan'"), '0',
	'a shard added later has not the template yet');
is(r('SELECT tasker_proxy_sync_shard(2)') . ',' . r('SELECT tasker_proxy_sync_shard(3)'), '1,1',
	'tasker_proxy_sync_shard gives each new shard the one registration it missed');
is(join(',', map { sq($_, "SELECT count(*) FROM tasker_templates WHERE name = 'so_fan'") } 0 .. 3),
	'1,1,1,1', 'now every shard has it');
is(r('SELECT tasker_proxy_sync_shard(2)'), '0', 'a second sync has nothing to give');
is(join(',', map { sq($_, 'SELECT shard_index || \'/\' || shard_count FROM tasker_shard') } 0 .. 3),
	'0/4,1/4,2/4,3/4', 'each shard knows its index and the count');
is(r("SELECT string_agg(status, ',' ORDER BY shard) FROM tasker_proxy_shards"), 'up,up,up,up',
	'tasker_proxy_shards shows four shards up');

r(q{SELECT tasker_register_template($y$
name: so_work
step_templates:
  - {name: a, handler_class: so_step}
  - {name: w, handler_class: PyDiamond, handler_config: {type: worker, queue: soq}, depends_on_step: a}
$y$)});
is(join(',', map { sq($_, "SELECT count(*) FROM tasker_templates WHERE name = 'so_work'") } 0 .. 3),
	'1,1,1,1', 'a template registered with four shards exists on all four');
r("SELECT tasker_set_namespace_limit('default', 50)");
is(join(',', map { sq($_, "SELECT max_in_progress FROM tasker_task_namespaces WHERE name = 'default'") } 0 .. 3),
	'50,50,50,50', 'a namespace cap set through the router is set on every shard');
r("SELECT tasker_set_namespace_limit('default', NULL)");

# ---- 1,000 tasks through the router
my @ids = split /,/, r(q{
	SELECT string_agg(tasker_create_task('so_fan', jsonb_build_object('i', i))::text, ',' ORDER BY i)
	  FROM generate_series(1, 1000) i});
is(scalar(@ids), 1000, '1,000 tasks created through the router');
ok($router->poll_query_until('postgres',
		"SELECT sum(complete_tasks) = 1000 AND sum(total_tasks) = 1000 FROM tasker_system_health()"),
	'all 1,000 complete (the shards\' health, merged by the router)');
my @spread = map { sq($_, 'SELECT count(*) FROM tasker_tasks') } 0 .. 3;
ok((grep { $_ >= 200 && $_ <= 300 } @spread) == 4,
	'spread within 20 % of even: ' . join(', ', @spread));
is(join(',', map { sq($_, "SELECT count(*) FROM tasker_tasks WHERE task_id >> 48 <> $_") } 0 .. 3),
	'0,0,0,0', 'every task id names the shard that holds it');
is(join(',', map { sq($_, "SELECT count(*) FROM tasker_workflow_steps WHERE workflow_step_id >> 48 <> $_") } 0 .. 3),
	'0,0,0,0', 'and every step id');
my %shards_of_ids;
$shards_of_ids{ $_ >> 48 }++ for @ids;
is(join(',', map { $shards_of_ids{$_} // 0 } 0 .. 3), join(',', @spread),
	'the ids the router returned name the same spread');
is(r('SELECT count(*) FROM unnest(ARRAY[' . join(',', @ids) . q{]::bigint[]) id
	  WHERE (tasker_task_summary(id)->>'task_id')::bigint = id
	    AND tasker_task_summary(id)->>'state' = 'complete'}),
	'1000', 'each task is found by its id through the router, complete');

my $k1 = r("SELECT tasker_create_task('so_fan', identity_key => 'order-42')");
my $k2 = r("SELECT tasker_create_task('so_fan', '{\"again\": true}', identity_key => 'order-42')");
is($k2, $k1, 'an identity key created twice through the router (two sessions) gives one task');
is(r('SELECT sum(total_tasks) FROM tasker_system_health()'), '1001', 'exactly one');
is($k1 >> 48, r("SELECT hashtext('order-42') & 3"), 'on the shard of hashtext(identity key)');
my $traced = r("SELECT tasker_create_task('so_fan', traceparent => '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')");
is(sq($traced >> 48, "SELECT trace_id || '/' || trace_parent_id FROM tasker_tasks WHERE task_id = $traced"),
	'4bf92f3577b34da6a3ce929d0e0e4736/00f067aa0ba902b7', 'a traceparent given to the router reaches the task on its shard');

# ---- a shard down in the middle of a router session
my @before = split /,/, r(q{
	SELECT string_agg(tasker_create_task('so_work', jsonb_build_object('n', i))::text, ',')
	  FROM generate_series(1, 40) i});
my @on2 = grep { ($_ >> 48) == 2 } @before;
ok(@on2 >= 5, 'worker tasks on shard 2 before it stops: ' . scalar(@on2));
my $pg_ctl = `which pg_ctl`;
chomp $pg_ctl;
my $d2 = Cwd::abs_path($shards[2]->data_dir);
my $during = r(qq{
	SET tasker_proxy.load_refresh = 3600;
	SELECT tasker_create_task('so_work', '{"n": 0}') > 0;
	COPY (SELECT 1) TO PROGRAM '$pg_ctl -D $d2 -m immediate -w stop';
	SELECT string_agg((tasker_create_task('so_work', jsonb_build_object('n', i)) >> 48)::text, ',')
	  FROM generate_series(1, 20) i;
	SELECT split_part(split_part(current_setting('tasker_proxy.placement'), ';', 2), ',', 3)});
my ($first, $placed, $mark) = split /\n/, $during;
my @placed = split /,/, $placed;
is(scalar(@placed), 20, 'with shard 2 stopped mid-session, 20 creations without identity key succeed');
unlike($placed, qr/\b2\b/, 'none on shard 2: ' . $placed);
is($mark, '-1', 'the session tried shard 2, found it down and left it out');
($rc, $out, $err) = $router->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT tasker_task_summary($on2[0])");
like($err, qr/08006: tasker shard 2 is unreachable/, 'a call for a task on the stopped shard fails with 08006 naming the shard');
like($err, qr/DETAIL:  Shard 2 \(.*port=\d+/, 'its detail names the shard\'s connection');
($rc, $out, $err) = $router->psql('postgres',
	"SELECT tasker_create_task('so_fan', identity_key => 'key-on-2-' || i) FROM generate_series(1, 40) i");
like($err, qr/tasker shard 2 is unreachable/, 'an identity key of the stopped shard is refused, not placed elsewhere');
is(r("SELECT status FROM tasker_proxy_shards WHERE shard = 2"), 'down', 'tasker_proxy_shards shows it down');
is(r("SELECT value FROM tasker_metrics() WHERE name = 'tasker_proxy_shard_up' AND labels->>'shard' = '2'"),
	'0', 'tasker_proxy_shard_up is 0 for it');
is(r("SELECT status FROM tasker_health() WHERE shard = 2 AND check_name = 'shard_reachable'"), 'error',
	'tasker_health reports it');
is(r('SELECT string_agg(shard::text, \',\' ORDER BY shard) FROM tasker_system_health()'), '0,1,3',
	'merged reads go on with the other shards');
$shards[2]->_update_pid(-1);
$shards[2]->start;
is(r("SELECT string_agg(status, ',' ORDER BY shard) FROM tasker_proxy_shards"), 'up,up,up,up',
	'shard 2 is back');

# ---- the Python worker, connected to the router
SKIP:
{
	skip 'python3-psycopg is not installed', 5
	  if system($python, '-c', 'import psycopg') != 0;
	local $ENV{PYTHONPATH} = "$tree/clients/python:$tree/test/fixtures";
	local $ENV{PYTHONDONTWRITEBYTECODE} = '1';
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $w = IPC::Run::start(
		[ $python, '-m', 'tasker_worker', '--dsn', $router->connstr('postgres'),
		  '--queue', 'soq', '--module', 'pyworker_handlers', '--worker-id', 'router-worker',
		  '--concurrency', '4', '--claim-wait', '2' ],
		'<', \undef, '>', "$dir/w.log", '2>&1');
	my @work = (@before, map { r("SELECT tasker_create_task('so_work', '{\"n\": 7}')") } 1 .. 8);
	ok($router->poll_query_until('postgres',
			'SELECT bool_and(tasker_task_summary(id)->>\'state\' = \'complete\') FROM unnest(ARRAY['
			  . join(',', @work) . ']::bigint[]) id'),
		'every worker task completes, those of the shard that was down included');
	is(join(',', map { sq($_, q{SELECT count(*) > 0 FROM tasker_workflow_steps WHERE handler_kind = 'worker'
	                              AND current_state = 'complete'}) } 0 .. 3),
		't,t,t,t', 'the worker connected to the router completed steps of every shard');
	is(r('SELECT count(*) FROM unnest(ARRAY[' . join(',', @work) . q{]::bigint[]) id,
	        jsonb_array_elements(tasker_task_summary(id)->'steps') st
	      WHERE st->>'name' = 'w' AND (st->'results'->>'total')::int = (tasker_task_summary(id)->'context'->>'n')::int + 1}),
		scalar(@work), 'each worker step saw its own task\'s context');
	is(r(q{SELECT count(*) FROM tasker_claim_steps('soq', 'probe', 10, '1 minute', '0')}), '0',
		'a claim with every shard empty returns nothing, at once');
	$w->signal('TERM');
	$w->finish;
	is($w->result(0), 0, 'the worker exits cleanly on SIGTERM');
}

# ---- merged reads
my $events = r(q{SELECT string_agg(shard || ':' || n || ':' || last, ',' ORDER BY shard)
	FROM (SELECT shard, count(*) AS n, max(event_id) AS last FROM tasker_events_since('{}'::bigint[], 100000) GROUP BY shard) e});
my @ev = map { [ split /:/ ] } split /,/, $events;
is(scalar(@ev), 4, 'the event log is read from all four shards');
my $cursors = 'ARRAY[' . join(',', map { $_->[2] } @ev) . ']::bigint[]';
is(r("SELECT count(*) FROM tasker_events_since($cursors)"), '0',
	'with each shard\'s last event id as its cursor, nothing is read twice');
r("SELECT tasker_create_task('so_fan', identity_key => 'after-cursor')");
ok($router->poll_query_until('postgres',
		"SELECT tasker_task_summary(tasker_create_task('so_fan', identity_key => 'after-cursor'))->>'state' = 'complete'"),
	'one more task completes');
is(r("SELECT string_agg(DISTINCT shard::text, ',') FROM tasker_events_since($cursors)"),
	r("SELECT (hashtext('after-cursor') & 3)::text"), 'its events come from its shard only, after the cursor');
($rc, $out, $err) = $router->psql('postgres', "\\set VERBOSITY verbose\nSELECT * FROM tasker_events_since(0)");
like($err, qr/0A000: the router reads the event log with one cursor per shard/,
	'the single-cursor form refuses with four shards and names the per-shard one');
is(r('SELECT count(DISTINCT shard) FROM tasker_analytics_metrics(now() - interval \'1 hour\')'), '4',
	'analytics: one row per shard');
is(r("SELECT count(DISTINCT labels->>'shard') FROM tasker_metrics() WHERE name <> 'tasker_proxy_shard_up'"), '4',
	'metrics: every shard\'s, labelled with it');
like(r('SELECT tasker_metrics_prometheus()'), qr/^tasker_proxy_shard_up\{shard="3"\} 1$/m,
	'the Prometheus text carries the shard label');

done_testing();
