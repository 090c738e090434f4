# 095_torture.pl: the short torture run in the default suite: one seed,
# 300 tasks, 6 faults (test/torture/torture.pl; test/torture/run runs the
# long one).
use strict;
use warnings;
use File::Basename qw(dirname);
# Loaded here, at compile time: their INIT blocks must run.
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{TORTURE_SEEDS} //= '1';
$ENV{TORTURE_TASKS} //= '300';
$ENV{TORTURE_FAULTS} //= '6';
my $tree = $ENV{TASKER_TREE} // dirname(__FILE__) . '/../..';
do "$tree/test/torture/torture.pl" or die($@ || $!);
