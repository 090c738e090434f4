# 096_failover.pl: failover (issue 13).  A streaming standby of a primary
# running tasks starts no tasker worker (they start only once recovery
# finishes), so its log has no error loop; after the primary dies and the
# standby is promoted, the workers start there by themselves and every
# task committed on the old primary completes on the new one, external
# worker steps included.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $conf = qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
};
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', $conf);
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION tasker;
CREATE TABLE ledger (task_id bigint, step text, PRIMARY KEY (task_id, step));
CREATE FUNCTION ledger(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO ledger VALUES ((step->>'task_id')::bigint, step->>'step_name');
    SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: relay
step_templates:
  - {name: first, handler_class: ledger}
  - {name: outside, handler_config: {type: worker, queue: fq}, depends_on_step: first}
  - {name: last, handler_class: ledger, depends_on_step: outside}
$y$);
SELECT count(tasker_create_task('relay', jsonb_build_object('i', i))) FROM generate_series(1, 20) i;
});
ok($primary->poll_query_until('postgres',
		"SELECT count(*) = 20 FROM ledger WHERE step = 'first'"),
	'the primary runs the first steps');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres',
	"SELECT count(tasker_create_task('relay', jsonb_build_object('i', i))) FROM generate_series(21, 30) i");
$primary->wait_for_catchup($standby);
sleep 2;
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'tasker%'"),
	'0', 'a standby starts no tasker worker');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM tasker_tasks'), '30',
	'it has every task the primary committed');
unlike(slurp_file($standby->logfile), qr/ERROR|FATAL:  (?!the database system is starting up)/,
	'its log has no error');

$primary->stop('immediate');
$standby->promote;
ok($standby->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'tasker worker'"),
	'promoted, the standby starts the workers by itself');
ok($standby->poll_query_until('postgres',
		"SELECT count(*) = 30 FROM ledger WHERE step = 'first'"),
	'the tasks created last run their first step there');
# An external worker, now against the new primary.
for (1 .. 60)
{
	last if $standby->safe_psql('postgres', q{
SELECT count(tasker_complete_step(step_id, claim_token, '{}')) FROM tasker_claim_steps('fq', 'w', 50, '1 minute', '1 second');
SELECT count(*) = 30 FROM tasker_tasks WHERE current_state = 'complete'}) =~ /t$/;
}
ok($standby->poll_query_until('postgres',
		"SELECT count(*) = 30 FROM tasker_tasks WHERE current_state = 'complete'"),
	'every task committed on the old primary completes on the new one');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM ledger'), '60',
	'each SQL step ran exactly once across the failover');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM tasker_check()'), '0',
	'no task breaks an invariant');
$standby->stop;
done_testing();
