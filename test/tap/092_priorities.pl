# 092_priorities.pl: task priorities with aging (issue 11 item 3).  A
# high-priority task created behind a backlog of 2,000 low-priority steps
# runs in the next batch; aging lets a low-priority step run under a
# constant stream of higher-priority work, and with aging off it waits;
# external workers' claims follow priorities too; the claim reads the
# ready index in priority order (the plan is shown).  Batches run in this session
# (tasker_run_steps), so the order is deterministic.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('priorities');
$node->init;
$node->append_conf('postgresql.conf', "tasker.batch_size = 50\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION public.noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT tasker_register_template($y$
name: one
step_templates:
  - {name: only, handler_class: public.noop}
$y$);
	SELECT tasker_register_template($y$
name: queued
step_templates:
  - name: only
    handler_config: {type: worker, queue: prio}
$y$);
});

sub set_aging
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"LOAD 'tasker'; ALTER SYSTEM SET tasker.priority_aging = '$value'; SELECT pg_reload_conf()");
	$node->poll_query_until('postgres',
		"SELECT current_setting('tasker.priority_aging', true) = '$value'")
	  or die "tasker.priority_aging did not become $value";
}

# A backlog of 2,000 low-priority steps, then one high-priority task.
$node->safe_psql('postgres',
	"SELECT count(tasker_create_task('one', jsonb_build_object('i', i), priority => -5)) FROM generate_series(1, 2000) i");
my $high = $node->safe_psql('postgres', q{SELECT tasker_create_task('one', '{"high": true}', priority => 10)});
$node->safe_psql('postgres', 'ANALYZE');
is($node->safe_psql('postgres', 'SELECT tasker_run_steps(50)'), '50', 'one batch runs 50 steps');
is($node->safe_psql('postgres', "SELECT current_state FROM tasker_tasks WHERE task_id = $high"),
	'complete', 'the high-priority task ran in the next batch, ahead of 2,000 older steps');
is($node->safe_psql('postgres', "SELECT priority FROM tasker_workflow_steps WHERE task_id = $high"),
	'10', 'its step carries the task\'s priority');

# The claim reads the claim index (the plan, from auto_explain).
my $log_start = -s $node->logfile;
$node->safe_psql('postgres', q{
	LOAD 'auto_explain';
	SET auto_explain.log_min_duration = 0;
	SET auto_explain.log_nested_statements = on;
	SET plan_cache_mode = force_generic_plan;
	SELECT tasker_run_steps(10);
});
my @claims = grep { /WITH claimed AS/ } split /(?=LOG:  duration:)/,
  slurp_file($node->logfile, $log_start);
ok(scalar(@claims) > 0, 'auto_explain logged the claim');
note("the claim's plan:\n" . ($claims[0] // ''));
like($claims[0] // '', qr/Index Scan using tasker_workflow_steps_ready_idx/,
	'the claim takes steps in priority order from the ready index');
unlike($claims[0] // '', qr/Seq Scan on tasker_workflow_steps|Sort Key: s(?:_\d+)?\.claim_key/,
	'without scanning or sorting the steps');
$node->safe_psql('postgres', 'SELECT tasker_run_steps(100000)');

# Strict priorities: a low-priority task waits as long as higher work comes.
set_aging('0');
my $low = $node->safe_psql('postgres', q{SELECT tasker_create_task('one', '{"low": true}')});
sleep(2);
for my $round (1 .. 3)
{
	$node->safe_psql('postgres', q{
		SELECT count(tasker_create_task('one', jsonb_build_object('stream', i), priority => 1))
		  FROM generate_series(1, 20) i;
		SELECT tasker_run_steps(10)});
}
is($node->safe_psql('postgres', "SELECT current_state FROM tasker_tasks WHERE task_id = $low"),
	'pending', 'with aging off, a low-priority task waits behind a stream of higher priority');

# With aging, the same wait lets it overtake new higher-priority work.
$node->safe_psql('postgres', 'SELECT tasker_run_steps(100000)');
set_aging('1s');
$low = $node->safe_psql('postgres', q{SELECT tasker_create_task('one', '{"low": true}')});
sleep(2);    # one level of difference: waiting over a second is enough
my $rounds = 0;
while ($node->safe_psql('postgres', "SELECT current_state FROM tasker_tasks WHERE task_id = $low") ne 'complete'
	&& $rounds < 3)
{
	$rounds++;
	$node->safe_psql('postgres', q{
		SELECT count(tasker_create_task('one', jsonb_build_object('stream', i), priority => 1))
		  FROM generate_series(1, 20) i;
		SELECT tasker_run_steps(10)});
}
is($rounds, 1, 'with tasker.priority_aging = 1s it runs in the first batch after its wait');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_tasks t
	 WHERE t.context ? 'stream' AND t.current_state = 'pending' AND t.priority = 1}),
	'11', 'while the new higher-priority tasks still wait for later batches');

# External workers claim by priority too.
$node->safe_psql('postgres', 'SELECT tasker_run_steps(100000)');
$node->safe_psql('postgres',
	"SELECT count(tasker_create_task('queued', jsonb_build_object('i', i))) FROM generate_series(1, 20) i");
my $urgent = $node->safe_psql('postgres', q{SELECT tasker_create_task('queued', '{"urgent": true}', priority => 3)});
is($node->safe_psql('postgres', q{
	SELECT (envelope->>'task_id')::bigint FROM tasker_claim_steps('prio', 'w1', 1)}),
	$urgent, 'tasker_claim_steps hands out the highest priority first');

# Bad priorities are refused.
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT tasker_create_task('one', priority => 1001)});
like($err, qr/priority must be between -1000 and 1000/, 'a priority out of range is refused');
($rc, $out, $err) = $node->psql('postgres', q{SELECT tasker_create_task('one', priority => NULL)});
like($err, qr/priority must not be NULL/, 'a NULL priority is refused');

$node->stop;
done_testing();
