# 020_dag_and_keys.pl: identity keys that look alike across templates
# (issue 15 A4), DAG levels on graphs with exponentially many paths (B11),
# large templates over a history of tasks, and out-of-range timeouts
# (B14).  Work is asserted as rows and plans, never as time;
# statement_timeout only bounds a run that would otherwise take hours.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dag_and_keys');
$node->init;
$node->append_conf('postgresql.conf', 'autovacuum = off');
$node->start;

# sql(QUERY): the result of QUERY, run with a generous statement_timeout,
# or its error, so that one failing check does not stop the others.
sub sql
{
	my ($query) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"SET statement_timeout = '20s';\n$query", on_error_stop => 1);
	return $ret == 0 ? $stdout : "error: $stderr";
}

# fails(QUERY): the error QUERY raises ('' when it succeeds).
sub fails
{
	my ($query) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"SET statement_timeout = '20s';\n$query", on_error_stop => 1);
	return $ret == 0 ? '' : $stderr;
}

$node->safe_psql('postgres', q{
	CREATE EXTENSION tasker;
	CREATE FUNCTION noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	-- one_step(namespace, name): a template of one step
	CREATE FUNCTION one_step(ns text, name text) RETURNS integer LANGUAGE sql AS $$
		SELECT tasker_register_template(format(
			E'name: "%s"\nnamespace_name: "%s"\nstep_templates:\n  - name: a\n    handler_class: public.noop\n',
			name, ns)) $$;
	-- ladder(name, layers): steps a1, b1, a2, b2, ...; each of layer k
	-- depends on both steps of layer k - 1, so there are 2^(k-1) paths
	-- from the roots to each step of layer k.
	CREATE FUNCTION ladder(name text, layers integer) RETURNS integer LANGUAGE sql AS $$
		SELECT tasker_register_template('name: ' || name || E'\nstep_templates:\n' ||
			string_agg(format(E'  - name: %s%s\n    handler_class: public.noop\n%s', s, k,
				CASE WHEN k > 1 THEN format(E'    depends_on_steps: [a%s, b%s]\n', k - 1, k - 1)
				ELSE '' END), '' ORDER BY k, s))
		  FROM generate_series(1, layers) k, unnest(ARRAY['a', 'b']) s $$;
	-- chain(name, n): steps s1 .. sn, each depending on the one before.
	CREATE FUNCTION chain(name text, n integer) RETURNS integer LANGUAGE sql AS $$
		SELECT tasker_register_template('name: ' || name || E'\nstep_templates:\n' ||
			string_agg(format(E'  - name: s%s\n    handler_class: public.noop\n%s', k,
				CASE WHEN k > 1 THEN format(E'    depends_on_step: s%s\n', k - 1) ELSE '' END),
				'' ORDER BY k))
		  FROM generate_series(1, n) k $$;
});

# ---- A4: identity keys are scoped to one (namespace, name) ----

sql(q{SELECT one_step('n', 'a'), one_step('n', 'a/b'), one_step('x/y', 'z'), one_step('x', 'y/z')});
my $ab = sql(q{SELECT tasker_create_task('a/b', namespace => 'n', identity_key => 'c')});
my $a = sql(q{SELECT tasker_create_task('a', namespace => 'n', identity_key => 'b/c')});
isnt($a, $ab, 'templates "a" and "a/b" with keys "b/c" and "c" get two tasks');
is(sql(q{SELECT named_task_id = (SELECT named_task_id FROM tasker_templates WHERE namespace = 'n' AND name = 'a')
		  FROM tasker_tasks WHERE task_id = } . $a), 't',
	'the task returned for template "a" is one of template "a"');
my $xy = sql(q{SELECT tasker_create_task('z', namespace => 'x/y', identity_key => 'k')});
my $x = sql(q{SELECT tasker_create_task('y/z', namespace => 'x', identity_key => 'k')});
isnt($x, $xy, 'namespaces "x/y" and "x" with names "z" and "y/z" get two tasks');
is(sql(q{SELECT tasker_create_task('a', namespace => 'n', identity_key => 'b/c')}), $a,
	'a repeated key still returns its own task');
is(sql(q{SELECT count(*) FROM tasker_tasks}), '4', 'and creates nothing');

# A row as tasker 0.1.0 wrote it: "key:" and the SHA-256 of namespace/name/key.
my $old = sql(q{SELECT tasker_create_task('a/b', namespace => 'n')});
sql(qq{UPDATE tasker_tasks SET identity_hash = 'key:' || encode(sha256('n/a/b/legacy'), 'hex')
		WHERE task_id = $old});
is(sql(q{SELECT tasker_create_task('a/b', namespace => 'n', identity_key => 'legacy')}), $old,
	'a key hashed by 0.1.0 still finds its task');
isnt(sql(q{SELECT tasker_create_task('a', namespace => 'n', identity_key => 'b/legacy')}), $old,
	'but not for another template whose name and key hash the same under 0.1.0');

# ---- B11: levels and depths in time linear in the graph ----

sql(q{SELECT ladder('ladder40', 40)});
my $ladder = sql(q{SELECT tasker_create_task('ladder40')});
is(sql(qq{SELECT count(*) || ' steps, ' || count(*) FILTER (WHERE dependency_level = (r - 1) / 2)
			 || ' at level (row - 1) / 2, max ' || max(dependency_level)
		   FROM (SELECT dependency_level, row_number() OVER (ORDER BY dependency_level, workflow_step_id) AS r
				   FROM tasker_dependency_levels($ladder)) l}),
	'80 steps, 80 at level (row - 1) / 2, max 39',
	'a 40-layer ladder (2^39 paths) has levels 0 to 39, two steps each');
is(sql(qq{SELECT count(*) || ' steps, max depth ' || max(min_depth_from_root)
			 || ', roots ' || count(*) FILTER (WHERE is_root_step)
			 || ', leaves ' || count(*) FILTER (WHERE is_leaf_step)
		   FROM tasker_step_dag_relationships WHERE task_id = $ladder}),
	'80 steps, max depth 39, roots 2, leaves 2',
	'tasker_step_dag_relationships gives its depths');
is(sql(q{SELECT count(*) FILTER (WHERE min_depth_from_root IS NULL) FROM tasker_step_dag_relationships}),
	'0', 'the view over every task gives a depth to every step');
my $plan = sql(qq{EXPLAIN (COSTS OFF) SELECT * FROM tasker_step_dag_relationships WHERE task_id = $ladder});
unlike($plan, qr/Recursive Union|WorkTable Scan/, 'the view does not recurse over paths');
like($plan, qr/on tasker_tasks t\n\s+(Index Cond|Filter): \(task_id = $ladder\)/,
	'and computes depths for the one task asked for');

# Longest and shortest distances differ: a -> b -> c -> d and a -> d.
sql(q{SELECT tasker_register_template($y$
name: shortcut
step_templates:
  - {name: a, handler_class: public.noop}
  - {name: b, handler_class: public.noop, depends_on_step: a}
  - {name: c, handler_class: public.noop, depends_on_step: b}
  - {name: d, handler_class: public.noop, depends_on_steps: [a, c]}
$y$)});
my $sc = sql(q{SELECT tasker_create_task('shortcut')});
is(sql(qq{SELECT string_agg(n.name || '=' || l.dependency_level || '/' || r.min_depth_from_root, ' '
						  ORDER BY n.name)
		   FROM tasker_dependency_levels($sc) l
		   JOIN tasker_step_dag_relationships r USING (workflow_step_id)
		   JOIN tasker_named_steps n USING (named_step_id)}),
	'a=0/0 b=1/1 c=2/2 d=3/1', 'level is the longest distance from a root, depth the shortest');

# ---- B14: creation is linear in the template, whatever the history ----

# work(NAME): the rows that the statements creating a task of NAME handle:
# each plan node's rows, and the rows its filters remove, times its loops,
# summed over every statement that auto_explain sees.  Foreign-key checks
# (one index probe a row) are switched off so that only tasker's own
# statements are counted.
sub work
{
	my ($name) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', qq{
		SET session_replication_role = replica;
		LOAD 'auto_explain';
		SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_nested_statements = on;
		SET auto_explain.log_analyze = on;
		SET auto_explain.log_timing = off;
		SET auto_explain.log_format = json;
		SET auto_explain.log_level = notice;
		SET statement_timeout = '60s';
		SELECT tasker_create_task('$name');}, on_error_stop => 1);
	return "error: $stderr" if $ret != 0;
	my $rows = 0;
	for my $n (split /"Actual Rows": /, $stderr)
	{
		next unless $n =~ /^(\d+),\s*"Actual Loops": (\d+)/;
		my ($r, $loops) = ($1, $2);
		my $removed = 0;
		$removed += $1 while $n =~ /"Rows Removed by [A-Za-z ]+": (\d+)/g;
		$rows += ($r + $removed) * $loops;
	}
	return $rows;
}

# Without autovacuum nothing is analyzed: the planner knows nothing of a
# template registered just before, as when a task is created at once.
sql(q{SELECT chain('history', 2000)});
my $first = work('history');
cmp_ok($first, '<', 2000 * 20,
	"creating a 2,000-step chain just registered handles under 20 rows a step ($first)");
sql(q{SELECT tasker_create_task('history')});
sql(q{SELECT chain('chain2k', 2000)});
my $later = work('chain2k');
cmp_ok($later, '<', 2000 * 20,
	"so does one over 4,000 steps of history ($later)");
my $chain = sql(q{SELECT max(task_id) FROM tasker_tasks});
sql(q{ANALYZE});
is(sql(qq{WITH k AS (SELECT s.workflow_step_id, substr(n.name, 2)::int AS k
					   FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
					  WHERE s.task_id = $chain)
		  SELECT count(*) || ' edges, ' || count(*) FILTER (WHERE p.k + 1 = c.k) || ' from s(k) to s(k + 1)'
		    FROM tasker_workflow_step_edges e
		    JOIN k p ON p.workflow_step_id = e.from_step_id
		    JOIN k c ON c.workflow_step_id = e.to_step_id
		   WHERE e.task_id = $chain}),
	'1999 edges, 1999 from s(k) to s(k + 1)', 'its edges link each step to the next');
is(sql(qq{SELECT count(*) FILTER (WHERE unfinished_parents = 1) || ' waiting, '
			 || count(*) FILTER (WHERE unfinished_parents = 0) || ' ready'
		   FROM tasker_workflow_steps WHERE task_id = $chain}),
	'1999 waiting, 1 ready', 'and only its first step is ready');
is(sql(qq{SELECT max(dependency_level) FROM tasker_dependency_levels($chain)}), '1999',
	'its last step is at level 1999');
is(sql(qq{SELECT max(min_depth_from_root) FROM tasker_step_dag_relationships WHERE task_id = $chain}),
	'1999', 'and at depth 1999 (no cut-off at depth 50)');

# ---- B14: timeouts that would overflow are refused ----

my $tmpl = q{SELECT tasker_register_template($y$
name: slow_%1$s
step_templates:
  - name: a
    handler_class: public.noop
    timeout_seconds: %1$s
$y$)};
like(fails(sprintf($tmpl, '2147483647')),
	qr/ERROR:  task template "slow_2147483647" is invalid\nDETAIL:  Line 6, column 22: "timeout_seconds" of step "a" is over one day \(2147483647 seconds\)\.\nHINT:  Give the timeout in whole seconds, at most 86400 \(one day\)\./,
	'timeout_seconds of 68 years is refused at registration');
like(fails(sprintf($tmpl, '86401')), qr/is over one day \(86401 seconds\)/,
	'so is one day and a second');
is(fails(sprintf($tmpl, '86400')), '', 'one day is accepted');
like(fails(q{SELECT tasker_register_template($y$
name: slow_api
step_templates:
  - name: call
    handler_config: {type: api, url: "http://127.0.0.1:1/", timeout: 90000}
$y$)}), qr/"timeout" of the handler_config of step "call" is over one day \(90000 seconds\)/,
	'an api step\'s request timeout over one day is refused');
like(fails(q{SELECT tasker_run_task(1, '300000 years')}),
	qr/ERROR:  timeout must be at most 100 years\nDETAIL:  The timeout given is 300000 years\./,
	'tasker_run_task refuses a timeout that would overflow its deadline');
like(fails(q{SELECT tasker_wait_for_task(1, '292278 years')}),
	qr/timeout must be at most 100 years/, 'so does tasker_wait_for_task');
is(sql(qq{SELECT tasker_run_task($sc, '100 years')}), 'complete',
	'a timeout of 100 years runs the task');

done_testing();
