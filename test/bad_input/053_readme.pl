# 053_readme.pl: issue 15 D26.  The README's set-up and quick start can be
# followed as written: the database is created before the extension, the
# quick start creates no second extension and uses no step ids it cannot
# know; least privilege and stuck tasks have their sections; the internals
# live in docs/architecture.md.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = $ENV{TASKER_TREE} // '.';
my $readme = slurp_file("$root/README.md");
my ($setup) = $readme =~ /^## Set-up\n(.*?)^## /ms;
my ($quick) = $readme =~ /^## Quick start\n(.*?)^## /ms;
my ($how) = $readme =~ /^## How it works\n(.*?)^## /ms;

ok(defined $setup && $setup =~ /CREATE DATABASE.*CREATE EXTENSION tasker;/s,
	'set-up creates the database before the extension');
unlike($quick // '', qr/CREATE EXTENSION/, 'the quick start creates no second extension');
unlike($readme, qr/(?:workflow_)?step_id\s*=\s*\d|tasker_resolve_step\(\d|tasker_cancel_step\(\d/,
	'no query uses a hard-coded step id');
like($setup // '', qr/least privilege/i, 'set-up says which EXECUTE grants a role needs');
like($readme, qr/^### Troubleshooting stuck tasks$/m, 'a troubleshooting section for stuck tasks');
ok(-f "$root/docs/architecture.md", 'docs/architecture.md exists');
my $arch = -f "$root/docs/architecture.md" ? slurp_file("$root/docs/architecture.md") : '';
like($arch, qr/^## Claiming$/m, 'the internals (claiming, ...) are in docs/architecture.md');
unlike($how // '', qr/^### (Workers|Claiming|Task finalization|States|Crash safety)$/m,
	'and no longer in the README');
cmp_ok(length($how // ''), '<', 12000, 'How it works is an overview');

done_testing();
