# 051_upgrade_in_flight.pl: a 0.1.0 installation, with its own 0.1.0
# library and workers, is stopped while its tasks are in flight; the
# current library is installed, the server starts, the workers wait for
# ALTER EXTENSION tasker UPDATE, and then every task finishes, each SQL
# step having run exactly once.
#
# The released library is built from the 0.1.0 release commit (git archive)
# into a private copy of the PostgreSQL installation, so the shared one is
# never touched.  The test needs the project's git history, which a clone
# has; a tree without it (a release tarball) skips with the reason.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Path qw(make_path);
use Cwd qw(abs_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The commit that released 0.1.0: its sql/tasker--0.1.0.sql is the
# released script, byte for byte (checked below).
my $release = 'b1dafbb';
my $source = $ENV{TASKER_SOURCE};
my $git = "git -c safe.directory='*' -C '$source'";
if (system("$git cat-file -e $release^{commit} 2>/dev/null") != 0)
{
	plan skip_all => "the 0.1.0 release commit $release is not in $source (no git history)";
}
is(system("$git diff --quiet $release HEAD -- sql/tasker--0.1.0.sql"), 0,
	'the release commit holds the released install script unchanged');

# A private PostgreSQL installation: the same layout as Debian's, found by
# PostgreSQL relative to its binaries.
sub pg_config { my $v = `pg_config --$_[0]`; chomp $v; return $v; }
my $bindir = pg_config('bindir');
my $libroot = dirname($bindir);
my $sharedir = pg_config('sharedir');
my $pkglibdir = pg_config('pkglibdir');
my $includedir = dirname(dirname(pg_config('includedir-server')));
my $tmp = abs_path($PostgreSQL::Test::Utils::tmp_check);
my $root = "$tmp/pg_0_1_0";
my ($major) = $libroot =~ m{/(\d+)$};
make_path("$root/usr/lib/postgresql", "$root/usr/share/postgresql", "$root/usr/include");
system_or_bail('cp', '-a', $libroot, "$root/usr/lib/postgresql/$major");
system_or_bail('cp', '-a', $sharedir, "$root/usr/share/postgresql/$major");
symlink($includedir, "$root/usr/include/postgresql") or BAIL_OUT("symlink: $!");
my $root_lib = "$root/usr/lib/postgresql/$major";
my $root_config = "$root_lib/bin/pg_config";
is(`$root_config --sharedir`, "$root/usr/share/postgresql/$major\n",
	'the private installation finds its own files');

# The 0.1.0 library and scripts, built from the release commit.
my $old = "$tmp/tasker_0_1_0";
make_path($old);
system_or_bail("$git archive $release | tar -x -C '$old'");
system_or_bail("make -C '$old' -s -j2 PG_CONFIG='$root_config' install >'$old/build.log' 2>&1");

my $node = PostgreSQL::Test::Cluster->new('inflight', install_path => $root_lib);
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 2
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker VERSION '0.1.0';
	CREATE TABLE ledger (task_id bigint, step text, attempt int);
	CREATE FUNCTION note(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.ledger
		VALUES ((step->>'task_id')::bigint, step->>'step_name', (step->>'attempt')::int);
		RETURN '{"ok": true}';
	END $$;
	CREATE FUNCTION slow(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep(0.05);
		RETURN public.note(step);
	END $$;
	-- Fails its first attempt and asks to be retried 2 seconds later.
	CREATE FUNCTION flaky(step jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN
		IF (step->>'attempt')::int < 2 THEN
			PERFORM public.tasker_retry_error('not yet', 2);
		END IF;
		RETURN public.note(step);
	END $$;
	SELECT tasker_register_template($y$
name: in_flight
step_templates:
  - name: a
    handler_class: public.note
  - name: b
    handler_class: public.slow
    depends_on_step: a
  - name: c
    handler_class: public.flaky
    depends_on_step: b
    default_retry_limit: 3
  - name: d
    handler_class: public.note
    depends_on_step: a
$y$);
	SELECT tasker_create_task('in_flight', jsonb_build_object('n', g)) FROM generate_series(1, 60) g;
});
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'tasker'"),
	'0.1.0', 'the installation runs 0.1.0');

# Stop while the tasks are in flight: some steps ran, some wait for their
# retry, most tasks are not finished.
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 5 FROM tasker_workflow_steps
	 WHERE attempts > 0 AND current_state IN ('pending', 'error')}),
	'the 0.1.0 workers run the tasks');
$node->stop('fast');

# The state the 0.1.0 workers left, read with the server down for work:
# start it with the workers off to look, then stop again.
$node->append_conf('postgresql.conf', "tasker.enabled = off\n");
$node->start;
my $left = $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE current_state <> 'complete') || ' ' ||
	       (SELECT count(*) FROM ledger) || ' ' ||
	       (SELECT count(*) FROM tasker_workflow_steps
	         WHERE attempts > 0 AND current_state IN ('pending', 'error'))
	  FROM tasker_tasks});
my ($unfinished, $ran, $retrying) = split / /, $left;
cmp_ok($unfinished, '>', 0, "tasks are in flight at the upgrade ($unfinished of 60 unfinished)");
cmp_ok($ran, '>', 0, "steps ran before the upgrade ($ran)");
cmp_ok($retrying, '>', 0, "steps wait for a retry at the upgrade ($retrying)");
$node->stop('fast');

# Install the current library over the 0.1.0 one, as a package upgrade does.
copy("$pkglibdir/tasker.so", "$root_lib/lib/tasker.so") or BAIL_OUT("copy: $!");
for my $f (glob("$sharedir/extension/tasker*"))
{
	copy($f, "$root/usr/share/postgresql/$major/extension/") or BAIL_OUT("copy $f: $!");
}
$node->adjust_conf('postgresql.conf', 'tasker.enabled', 'on');
my $log_offset = -s $node->logfile;
$node->start;

# The new library's workers wait for the update and touch nothing.
ok($node->wait_for_log(qr/waits for the tasker extension of database "postgres" to be updated/, $log_offset),
	'the workers wait for ALTER EXTENSION UPDATE');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ledger'), $ran,
	'no step ran before the update');

$node->safe_psql('postgres', 'ALTER EXTENSION tasker UPDATE');
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'tasker'"),
	'0.2.0', 'the extension is updated');
ok($node->poll_query_until('postgres', q{
	SELECT bool_and(current_state = 'complete') FROM tasker_tasks}, 't'),
	'every task in flight finishes after the update');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  SELECT task_id, step FROM ledger GROUP BY 1, 2 HAVING count(*) <> 1) x}),
	'0', 'each SQL step ran exactly once across the upgrade');
is($node->safe_psql('postgres', 'SELECT count(*) FROM ledger'), '240',
	'every step of the 60 tasks ran');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ledger WHERE step = 'c' AND attempt < 2}),
	'0', 'the retried step completed on a later attempt');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tasker_check()'), '0',
	'tasker_check finds no broken invariant');

# A task created after the update runs too.
my $task = $node->safe_psql('postgres', "SELECT tasker_create_task('in_flight', '{\"n\": 61}')");
is($node->safe_psql('postgres', "SELECT tasker_wait_for_task($task, '60 seconds')"),
	'complete', 'a task created after the update completes');

$node->stop;
done_testing();
