# 030_yaml_bombs.pl: hostile YAML (issue 15 B10).  Aliases cannot expand a
# small document into a huge one, thousands of anchors do not make parsing
# quadratic, deep nesting is refused before it can exhaust the stack, and
# only a superuser can raise tasker.max_template_size.
#
# Every registration runs under statement_timeout = '10s', and the tests
# check that each ends with its own error (or succeeds), never with the
# timeout: the old reader took 8 s and 2 GB for the first document below,
# and 30 s for the anchors.  Nothing here measures time.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('yaml_bombs');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION public.step(step jsonb) RETURNS jsonb
		LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	CREATE ROLE alice LOGIN;
});

my $head = "step_templates: [{name: a, handler_class: public.step}]\n"
  . "configuration:\n";

# register(YAML[, ROLE, SETTINGS]): register a template under a 10 s
# statement_timeout; returns psql's stdout and stderr (with SQLSTATEs).
sub register
{
	my ($yaml, $role, $settings) = @_;
	my ($out, $err) = ('', '');
	my $sql = "\\set VERBOSITY verbose\n"
	  . "SET statement_timeout = '10s';\n"
	  . ($role ? "SET ROLE $role;\n" : '')
	  . ($settings // '')
	  . "SELECT tasker_register_template(\$tasker_yaml\$$yaml\$tasker_yaml\$);\n";
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		on_error_stop => 1);
	return ($out, $err);
}

# refused_ok(YAML, SQLSTATE, PATTERN, NAME): the registration fails with
# that SQLSTATE and a detail matching PATTERN, not with a timeout; returns
# psql's stderr.
sub refused_ok
{
	my ($yaml, $sqlstate, $pattern, $name) = @_;
	my ($out, $err) = register($yaml);
	unlike($err, qr/statement timeout|out of memory/, "$name: no timeout or OOM");
	like($err, qr/ERROR:  $sqlstate: task template (?:"[^"]*" )?is invalid/, "$name: SQLSTATE $sqlstate");
	like($err, $pattern, "$name: the message says why");
	return $err;
}

# 1. One 10 kB scalar aliased 99,000 times: 600 kB of text, 1 GB expanded,
# within the node bound.  Refused at the alias that crosses 16 MB.
my $big = 'x' x 10_000;
my $wide = "name: wide\n$head  big: &big $big\n  copies: ["
  . join(', ', ('*big') x 99_000) . "]\n";
my $err = refused_ok($wide, '54000',
	qr/DETAIL:  Line 5, column \d+: the document is larger than tasker\.max_template_size \(16384 kB\) with every alias expanded\./,
	'a scalar aliased 99,000 times');
like($err, qr/HINT:  .*a superuser can raise tasker\.max_template_size/,
	'the hint names the setting');

# 2. The classic billion laughs: nine levels of ten aliases each.
my $laughs = "name: laughs\n$head  l0: &l0 lol\n";
$laughs .= "  l$_: &l$_ [" . join(', ', ('*l' . ($_ - 1)) x 10) . "]\n"
  for 1 .. 9;
refused_ok($laughs, '54000',
	qr/the document has more than 100000 nodes \(aliases counted in full\)/,
	'a billion laughs');

# 3. A nested bomb whose nodes stay few but whose bytes do not.
my $nested = "name: nested\n$head  a: &a " . ('y' x 1000) . "\n"
  . "  b: &b [" . join(', ', ('*a') x 100) . "]\n"
  . "  c: &c [" . join(', ', ('*b') x 100) . "]\n"
  . "  d: [" . join(', ', ('*c') x 100) . "]\n";
refused_ok($nested, '54000', qr/larger than tasker\.max_template_size/,
	'aliases of aliases of a 1 kB scalar');

# 4. 45,000 anchors with 200-character names, each aliased (19 MB): the
# anchors are hashed, so this registers well within the timeout.
my $prefix = 'p' x 200;
my $anchors = "name: anchors\n$head  anchors:\n"
  . join('', map { "    - &$prefix$_ $_\n" } 1 .. 45_000)
  . "  aliases:\n"
  . join('', map { '    - *' . $prefix . (45_001 - $_) . "\n" } 1 .. 45_000);
my ($out, $anchor_err) = register($anchors);
is($anchor_err, '', '45,000 anchors and aliases: no error');
like($out, qr/^\d+$/, '45,000 anchors and aliases: registered');
is($node->safe_psql('postgres', q{
	SELECT configuration->'aliases'->>0 || ',' || (configuration->'aliases'->>44999)
	  FROM tasker_named_tasks WHERE name = 'anchors'}),
	'45000,1', 'each alias is the node of its anchor');

# 5. One step depending on 95,000 distinct steps is reported correctly.
# (De-duplicating them took 27 s before it sorted; that is measured, not
# tested here: the error came before any interrupt check, so the old code
# passes this too, only slowly.)
my $deps = "name: deps\nstep_templates:\n  - name: a\n    handler_class: public.step\n"
  . '    depends_on_steps: [' . join(', ', map { "s$_" } 1 .. 95_000) . "]\n";
refused_ok($deps, '22023', qr/step "a" depends on unknown step "s1"/,
	'95,000 dependencies');

# 6. Deep nesting, in flow and in block style, is refused at level 65.
refused_ok("name: deep\nx: " . ('[' x 1_000_000) . (']' x 1_000_000) . "\n",
	'54000', qr/Line 2, column 68: the document nests deeper than 64 levels/,
	'a million nested flow sequences');
refused_ok("name: deep\nx:\n" . ('- ' x 200_000) . "x\n",
	'54000', qr/the document nests deeper than 64 levels/,
	'200,000 nested block sequences');

# 7. Only a superuser may raise the bound (PGC_SUSET): alice's SET fails
# once the library is loaded, and a value she set before it loaded is
# dropped when it loads.
$node->psql('postgres', "\\set VERBOSITY verbose\nLOAD 'tasker';\nSET ROLE alice;\n"
	  . "SET tasker.max_template_size = '1GB';\n",
	stderr => \$err);
like($err, qr/ERROR:  42501: permission denied to set parameter "tasker\.max_template_size"/,
	'an ordinary role cannot raise tasker.max_template_size');
is($node->safe_psql('postgres', "SET ROLE alice;\n"
	  . "SET tasker.max_template_size = '1GB';\nRESET ROLE;\nLOAD 'tasker';\n"
	  . "SHOW tasker.max_template_size;"),
	'16MB', 'a value an ordinary role set before the library loaded is dropped');

# 8. A superuser can raise it, and then a large template registers.
my $fine = "name: fine\n$head  big: &big $big\n  copies: ["
  . join(', ', ('*big') x 2_000) . "]\n";
(undef, $err) = register($fine);
like($err, qr/larger than tasker\.max_template_size/,
	'20 MB expanded is refused by default');
($out, $err) = register($fine, undef, "SET tasker.max_template_size = '32MB';\n");
like($out, qr/^\d+$/, 'and registers with tasker.max_template_size = 32MB');

$node->stop;
done_testing();
