# 041_alter_database.pl (issue 15, B15): commands that wait for every
# process to absorb a ProcSignalBarrier, or for every session of a database
# to leave, do not hang or fail because of the tasker workers.
#   - ALTER DATABASE ... SET TABLESPACE and DROP DATABASE of a database the
#     workers do not use (the launcher must absorb the barrier);
#   - ALTER DATABASE ... SET TABLESPACE and CREATE DATABASE ...
#     TEMPLATE of the database the workers are connected to: the workers step
#     aside while the command runs, then come back and run tasks again.
# Every command runs under a statement_timeout and a client timeout, so a
# hang fails the test instead of hanging the suite.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Cwd;

my $node = PostgreSQL::Test::Cluster->new('alter_db');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'work'
tasker.max_workers = 2
log_min_messages = log
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE work');
$node->safe_psql('work', 'CREATE EXTENSION tasker');
ok($node->poll_query_until('work',
		"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
	'two executors are up in database work');

my $space = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
$node->safe_psql('postgres', "CREATE TABLESPACE elsewhere LOCATION '$space'");

# run(sql): run one command from database postgres with a 60 s
# statement_timeout and a 120 s client timeout; returns (ok, stderr).
sub run
{
	my ($sql) = @_;
	my ($stdout, $stderr, $timed_out);
	my $rc = $node->psql('postgres', "SET statement_timeout = '60s'; $sql",
		stdout => \$stdout, stderr => \$stderr,
		timeout => 120, timed_out => \$timed_out);
	$stderr .= ' (client timeout)' if $timed_out;
	return ($rc == 0 && !$timed_out, $stderr);
}

# ---- a database the workers do not use
$node->safe_psql('postgres', 'CREATE DATABASE other');
my ($ok, $err) = run('ALTER DATABASE other SET TABLESPACE elsewhere');
ok($ok, 'ALTER DATABASE other SET TABLESPACE completes') or diag($err);
is($node->safe_psql('postgres',
		"SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE datname = 'other'"),
	'elsewhere', 'database other moved to the new tablespace');
($ok, $err) = run('DROP DATABASE other');
ok($ok, 'DROP DATABASE other completes') or diag($err);

# works_again(what): the workers are back in database work and run a task.
my $ntask = 0;
sub works_again
{
	my ($what) = @_;
	my $name = 'after_' . ++$ntask;
	ok($node->poll_query_until('work',
			"SELECT count(*) = 2 FROM tasker_worker_status() WHERE role = 'worker' AND state = 'idle'"),
		"after $what, both executors are back");
	$node->safe_psql('work', qq{
		CREATE OR REPLACE FUNCTION noop(jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
		SELECT tasker_register_template(\$y\$
name: $name
step_templates:
  - {name: one, handler_class: noop}
\$y\$)});
	my $t = $node->safe_psql('work', "SELECT tasker_create_task('$name', '{}')");
	is($node->safe_psql('work', "SELECT tasker_wait_for_task($t, '60 seconds')"), 'complete',
		"after $what, the workers run a task");
}

# ---- the database the workers are connected to
($ok, $err) = run('ALTER DATABASE work SET TABLESPACE elsewhere');
ok($ok, 'ALTER DATABASE work SET TABLESPACE completes while the workers use it') or diag($err);
is($node->safe_psql('postgres',
		"SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE datname = 'work'"),
	'elsewhere', 'database work moved to the new tablespace');
works_again('the move');

($ok, $err) = run('CREATE DATABASE copy TEMPLATE work');
ok($ok, 'CREATE DATABASE copy TEMPLATE work completes while the workers use it') or diag($err);
works_again('the copy');

($ok, $err) = run('ALTER DATABASE work SET TABLESPACE pg_default');
ok($ok, 'ALTER DATABASE work SET TABLESPACE pg_default completes') or diag($err);
works_again('the move back');

($ok, $err) = run('DROP DATABASE copy');
ok($ok, 'DROP DATABASE copy completes') or diag($err);
$node->safe_psql('postgres', 'DROP TABLESPACE elsewhere');

$node->stop;
done_testing();
