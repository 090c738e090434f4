# 052_guide_examples.pl: issue 15 D20.  The YAML examples of the Ruby
# engine's developer guide (../shared/reference/ruby-tasker-developer-guide.md
# from the repository root, read in place, never copied) load unchanged
# when they are templates the Ruby engine accepts, their handler classes
# mapped with tasker_register_handler first; the examples that rely on
# what tasker refuses (ERB, ${VAR}, retries) are refused with a reason.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $guide;
for my $root (grep { defined } ($ENV{TASKER_SOURCE}, $ENV{TASKER_TREE}, '.'))
{
	my $f = "$root/../shared/reference/ruby-tasker-developer-guide.md";
	if (-f $f) { $guide = $f; last; }
}
ok(defined $guide, 'the developer guide is found at ../shared/reference from the repository root')
  or BAIL_OUT('ruby-tasker-developer-guide.md not found');
my $text = slurp_file($guide);
my @blocks = $text =~ /^```yaml\n(.*?)^```/msg;
cmp_ok(scalar @blocks, '>=', 10, 'the guide has its YAML examples');

my $node = PostgreSQL::Test::Cluster->new('guide');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'no_worker_here'
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION public.noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
});
my %classes = map { $_ => 1 } $text =~ /handler_class:\s*([A-Z][\w:]+)/g;
$node->safe_psql('postgres',
	join('', map { "SELECT tasker_register_handler('$_', 'public.noop(jsonb)');\n" } sort keys %classes));

# register YAML [ENV]: tasker_register_templates, returning (rc, stderr).
sub register
{
	my ($yaml, $env) = @_;
	my $set = $env ? "SET tasker.environment = '$env';" : '';
	my ($rc, $out, $err) = $node->psql('postgres',
		"$set SELECT tasker_register_templates(\$y\$$yaml\$y\$, true)");
	return ($rc, $err);
}

my ($full, $refused) = (0, 0);
for my $i (0 .. $#blocks)
{
	my $b = $blocks[$i];
	my $n = $i + 1;
	if ($b =~ /<%/)
	{
		my ($rc, $err) = register("name: erb_example\n$b");
		like($err, qr/ERB/, "example $n (ERB) is refused, naming ERB");
		$refused++;
	}
	elsif ($b =~ /^step_templates:/m)
	{
		# A template the Ruby engine loads: with a name (an example that
		# shows only its steps is named after the file it says it is).
		my ($file) = $b =~ m{/(\w+)\.yaml};
		my $yaml = $b =~ /^name:/m ? $b : "name: $file\n$b";
		for my $env ('', 'development', 'production')
		{
			my ($rc, $err) = register($yaml, $env);
			is($rc, 0, "example $n loads" . ($env ? " (environment $env)" : ''))
			  or diag($err);
		}
		$full++;
	}
	elsif ($b =~ /^- name:/ && $b =~ /\$\{/)
	{
		(my $steps = $b) =~ s/^/  /mg;
		my ($rc, $err) = register("name: fragment_$n\nstep_templates:\n$steps");
		like($err, qr/tasker does not read|environment variable/,
			"example $n (a step with \${VAR}) is refused, saying why");
		$refused++;
	}
}
cmp_ok($full, '>=', 3, 'the guide\'s complete templates were all tried');
cmp_ok($refused, '>=', 2, 'and the examples tasker refuses');
is($node->safe_psql('postgres',
	q{SELECT template #>> '{handler_config,dependent_systems,0}' FROM tasker_named_tasks WHERE name = 'api_sync'}),
	'salesforce_api', 'api_sync keeps its template-level handler_config with dependent_systems');

done_testing();
