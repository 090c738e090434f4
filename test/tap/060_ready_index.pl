# 060_ready_index.pl: readiness is defined once (TASKER_READY_STEP_SQL,
# the predicate of the partial index tasker_workflow_steps_ready_idx), and
# the claim the workers and tasker_run_steps run finds ready steps through
# that index, in its order (priority order, issue 11), not by scanning or
# sorting the steps: auto_explain logs the plans of the statements tasker
# runs, on a table where most steps are finished.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('ready_index');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT tasker_register_template($y$
name: pair
step_templates:
  - {name: a, handler_class: noop}
  - {name: b, handler_class: noop, depends_on_step: a}
$y$);
	SELECT tasker_create_task('pair') FROM generate_series(1, 2000);
});
# Finish most of them, so that ready steps are few among many rows.
$node->safe_psql('postgres', 'SELECT tasker_run_steps(3900)');
$node->safe_psql('postgres', 'ANALYZE');
is($node->safe_psql('postgres',
		"SELECT count(*) < 200 FROM tasker_workflow_steps WHERE current_state = 'pending'"),
	't', 'most steps are finished');

my $log_start = -s $node->logfile;
$node->safe_psql('postgres', q{
	LOAD 'auto_explain';
	SET auto_explain.log_min_duration = 0;
	SET auto_explain.log_nested_statements = on;
	SET plan_cache_mode = force_generic_plan;
	SELECT tasker_run_steps(10);
});
my $log = slurp_file($node->logfile, $log_start);
my @claims = grep { /WITH claimed AS/ } split /(?=LOG:  duration:)/, $log;
ok(scalar(@claims) > 0, 'auto_explain logged the claim');
like($claims[0] // '', qr/tasker_workflow_steps_ready_idx/,
	'the claim reads ready steps through the ready index');
unlike($claims[0] // '', qr/Seq Scan on tasker_workflow_steps/,
	'and never scans the steps table');
unlike($claims[0] // '', qr/Sort Key: s(?:_\d+)?\.claim_key/,
	'nor sorts the ready steps (it locks each one\'s task as it reads)');

$node->stop;
done_testing();
