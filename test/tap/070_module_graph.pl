# 070_module_graph.pl: the modules of src/ depend on each other without a
# cycle, so that they can be read, and changed, from the bottom up
# (docs/architecture.md lists the layers).
#
# A module is src/NAME.c with src/NAME.h; a header without a .c of its own
# (http_internal.h, compat.h) is a module too.  Module A depends
# on module B when a file of A includes "B.h", or when A.c names a function
# or variable that B.c defines (non-static, at file scope), wherever that is
# declared.  The second kind catches a dependency hidden behind a header
# that declares another file's functions.  The test also holds each header
# to declaring its own module's functions only, except the headers of the
# two handler kinds, whose functions are split over a family of files
# (%family below); a file of a family including the family's header is
# not a dependency, its uses of the other files are.
#
# Only core Perl and the sources: no server, no build.  On a cycle, it
# prints the cycle and why each step of it is there.
use strict;
use warnings;
use File::Basename qw(dirname);
use Test::More;

my $src = defined $ENV{TASKER_TREE} ? "$ENV{TASKER_TREE}/src"
  : dirname(__FILE__) . '/../../src';

# The headers of a family of files, and the files whose functions they may
# declare.
my %family = (
	handler       => qr/^handler(_sql|_http|_worker)?$/,
	handler_http  => qr/^(handler_http|http_\w+)$/,
	http_internal => qr/^(handler_http|http_\w+)$/,
);

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', $path or die "cannot read $path: $!";
	local $/;
	return <$fh>;
}

# strip: the text without comments, string and character literals.
sub strip
{
	my ($t) = @_;
	$t =~ s{/\*.*?\*/}{ }gs;
	$t =~ s{"(?:\\.|[^"\\\n])*"}{""}g;
	$t =~ s{'(?:\\.|[^'\\\n])*'}{''}g;
	return $t;
}

sub module_of
{
	my ($path) = @_;
	my ($m) = $path =~ m{([^/]+)\.[ch]$};
	return $m;
}

# definitions: the functions and variables a .c file defines at file scope
# and does not declare static (PostgreSQL's layout: the return type on the
# line above the function's name, which starts its line).
sub definitions
{
	my ($text) = @_;
	my @names;
	my $depth = 0;
	my $prev  = '';
	for my $line (split /\n/, $text)
	{
		if ($depth == 0)
		{
			if ($line =~ /^([A-Za-z_]\w*)\s*\(/)
			{
				my $name = $1;
				push @names, $name
				  if $prev =~ /\S/
				  && $prev !~ /^\s*static\b/
				  && $prev !~ /^#/
				  && $prev !~ /[;{})]\s*$/;
			}
			elsif ($line =~
				/^(?!static\b|extern\b|typedef\b|PG_)[A-Za-z_][\w\s*]*?\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?\s*(?:=|;)/)
			{
				push @names, $1;
			}
		}
		my $open  = () = $line =~ /\{/g;
		my $close = () = $line =~ /\}/g;
		$depth += $open - $close;
		$prev = $line;
	}
	return @names;
}

# declarations: the names a header declares extern.
sub declarations
{
	my ($text) = @_;
	my @names;
	while ($text =~ /\bextern\b([^;]*);/gs)
	{
		my $decl = $1;
		if ($decl =~ /\(\s*\*\s*(\w+)\s*\)/)
		{
			push @names, $1;
		}
		elsif ($decl =~ /(\w+)\s*\(/)
		{
			push @names, $1;
		}
		elsif ($decl =~ /(\w+)\s*(?:\[[^\]]*\])?\s*$/)
		{
			push @names, $1;
		}
	}
	return @names;
}

my (%modules, %text_c, %text_h, %defined_in, %edge);

for my $path (sort glob("$src/*.c"), sort glob("$src/*.h"))
{
	my $m    = module_of($path);
	my $text = strip(slurp($path));
	$modules{$m} = 1;
	if ($path =~ /\.c$/)
	{
		$text_c{$m} = $text;
		$defined_in{$_} //= $m for definitions($text);
	}
	else
	{
		$text_h{$m} = $text;
	}
	# Includes are read before strip() emptied the strings.
	for my $target (slurp($path) =~ /^\s*#\s*include\s+"([\w.\/]+)\.h"/mg)
	{
		next unless -e "$src/$target.h";
		next if $target eq $m;
		# A file of a family includes the family's header for its own
		# declarations; what it uses of the others' is counted below.
		next if $family{$target} && $m =~ $family{$target};
		push @{ $edge{$m}{$target} }, "includes $target.h";
	}
}

for my $m (sort keys %text_c)
{
	my %seen;
	for my $id ($text_c{$m} =~ /\b([A-Za-z_]\w*)\b/g)
	{
		next if $seen{$id}++;
		my $d = $defined_in{$id};
		next if !defined $d || $d eq $m;
		push @{ $edge{$m}{$d} }, "$m.c uses $id";
	}
}

# The reading works: known modules, definitions and both kinds of edges.
ok(keys %modules >= 20, 'found the modules of src/') or diag("in $src");
is($defined_in{tasker_shmem_register}, 'shmem', 'finds where a function is defined');
ok((grep { /includes shmem\.h/ } @{ $edge{tasker}{shmem} || [] }), 'finds an include');
ok((grep { /uses tasker_shmem_register/ } @{ $edge{tasker}{shmem} || [] }), 'finds a use');

# Tarjan's strongly connected components; a component of more than one
# module holds a cycle.
my ($counter, %index, %low, @stack, %on_stack, @components) = (0);
my $visit;
$visit = sub {
	my ($v) = @_;
	$index{$v} = $low{$v} = $counter++;
	push @stack, $v;
	$on_stack{$v} = 1;
	for my $w (sort keys %{ $edge{$v} || {} })
	{
		if (!defined $index{$w})
		{
			$visit->($w);
			$low{$v} = $low{$w} if $low{$w} < $low{$v};
		}
		elsif ($on_stack{$w})
		{
			$low{$v} = $index{$w} if $index{$w} < $low{$v};
		}
	}
	if ($low{$v} == $index{$v})
	{
		my @c;
		my $w;
		do
		{
			$w = pop @stack;
			$on_stack{$w} = 0;
			push @c, $w;
		} while ($w ne $v);
		push @components, [ sort @c ] if @c > 1;
	}
};
$visit->($_) for grep { !defined $index{$_} } sort keys %modules;

# one_cycle: a shortest cycle through the first module of a component,
# each step with its reason.
sub one_cycle
{
	my ($component) = @_;
	my %in = map { $_ => 1 } @$component;
	my $start = $component->[0];
	my %from = ($start => undef);
	my @queue = ($start);
	while (@queue)
	{
		my $v = shift @queue;
		for my $w (sort keys %{ $edge{$v} })
		{
			next unless $in{$w};
			if ($w eq $start)
			{
				my @path = ($v);
				unshift @path, $from{ $path[0] } while defined $from{ $path[0] };
				push @path, $start;
				return join "\n", map { "  $path[$_] -> $path[$_ + 1]: " . join(', ', @{ $edge{ $path[$_] }{ $path[ $_ + 1 ] } }) }
				  0 .. $#path - 1;
			}
			next if exists $from{$w};
			$from{$w} = $v;
			push @queue, $w;
		}
	}
	return '';
}

is(scalar(@components), 0, 'no cycle between the modules of src/')
  or diag(join "\n",
	map { "modules in a cycle: @$_\n" . one_cycle($_) } @components);

# Each header declares what its own module defines.
my @misplaced;
for my $h (sort keys %text_h)
{
	for my $name (declarations($text_h{$h}))
	{
		my $d = $defined_in{$name};
		next if !defined $d || $d eq $h;
		next if $family{$h} && $d =~ $family{$h};
		push @misplaced, "$h.h declares $name, which $d.c defines";
	}
}
is(scalar(@misplaced), 0, 'each header declares its own module\'s functions')
  or diag(join "\n", @misplaced);

done_testing();
