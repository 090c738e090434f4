# 001_no_preload.pl: tasker installs and its state machines work on a
# server that does not preload the library (no background worker then).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->start;

is($node->psql('postgres', 'CREATE EXTENSION tasker'), 0,
	'CREATE EXTENSION works without shared_preload_libraries');
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'the library is not preloaded');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM tasker_allowed_transitions('task')"),
	'11', 'the C functions load on demand');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'tasker%'"),
	'0', 'no tasker worker runs');

# A misspelt setting under the reserved prefix is refused.
my ($rc, $out, $err) = $node->psql('postgres',
	"LOAD 'tasker'; SET tasker.no_such_setting = 1");
isnt($rc, 0, 'an unknown tasker.* setting is refused');
like($err, qr/invalid configuration parameter name|unrecognized configuration parameter/,
	'with a clear error');

$node->safe_psql('postgres', 'DROP EXTENSION tasker');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_class WHERE relname LIKE 'tasker\\_%'"),
	'0', 'DROP EXTENSION removes every table');

$node->stop;
done_testing();
