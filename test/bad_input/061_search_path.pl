# 061_search_path.pl: issue 13, a hostile search_path.  Mallory creates,
# in a schema of hers, functions and operators named like pg_catalog's
# (now, clock_timestamp, pg_notify, jsonb_build_object, the = of bigint,
# integer and text, ...) whose bodies record the call and try to make her
# superuser.  With that schema first on the search_path (even before
# pg_catalog) of her own session, of the database, and so of the
# background workers, no statement of tasker's (API or worker) calls one
# of them.  The test first shows the shadows do fire for an ordinary
# query under that search_path, so it can fail.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('search_path');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker'
tasker.database_name = 'postgres'
tasker.max_workers = 1
tasker.poll_interval = 100
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE SCHEMA tasker;
	CREATE EXTENSION tasker SCHEMA tasker;
	CREATE ROLE mallory LOGIN IN ROLE tasker_admin;
	CREATE SCHEMA evil AUTHORIZATION mallory;
	GRANT USAGE ON SCHEMA evil TO PUBLIC;
	CREATE TABLE public.hits (fn text, by_role text);
	GRANT INSERT, SELECT, DELETE ON public.hits TO PUBLIC;
	CREATE TABLE public.ledger (task_id bigint, step text);
	GRANT INSERT ON public.ledger TO PUBLIC;
});

# Each shadow records its call, tries to escalate (which works only when
# a superuser is the one calling), then does what the real one does.
my $shadows = q{
	CREATE FUNCTION evil.hit(fn text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.hits VALUES (fn, current_user);
		BEGIN
			EXECUTE 'ALTER ROLE mallory SUPERUSER';
		EXCEPTION WHEN insufficient_privilege THEN NULL;
		END;
	END $$;
	CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('now'); RETURN pg_catalog.now(); END $$;
	CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
	CREATE FUNCTION evil.statement_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('statement_timestamp'); RETURN pg_catalog.statement_timestamp(); END $$;
	CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('pg_notify'); PERFORM pg_catalog.pg_notify($1, $2); END $$;
	CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('gen_random_uuid'); RETURN pg_catalog.gen_random_uuid(); END $$;
	CREATE FUNCTION evil.jsonb_build_object(text, text) RETURNS jsonb LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('jsonb_build_object'); RETURN pg_catalog.jsonb_build_object($1, $2); END $$;
	CREATE FUNCTION evil.format(text, text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('format'); RETURN pg_catalog.format($1, $2); END $$;
	CREATE FUNCTION evil.pg_has_role(oid, oid, text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('pg_has_role'); RETURN pg_catalog.pg_has_role($1, $2, $3); END $$;
	CREATE FUNCTION evil.int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('= bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8eq);
	CREATE FUNCTION evil.int4eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('= integer'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR evil.= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int4eq);
	CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
	BEGIN PERFORM evil.hit('= text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
	CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
};
$node->safe_psql('postgres', "SET ROLE mallory; $shadows");

my $hostile = 'evil, tasker, pg_catalog, public';

# The shadows work: an ordinary query under the hostile path calls them.
is($node->safe_psql('postgres', qq{SET search_path = $hostile;
		SELECT now() IS NOT NULL AND 1::bigint = 1::bigint AND 'a'::text = 'a'::text;
		SELECT string_agg(DISTINCT fn, ',' ORDER BY fn) FROM public.hits}),
	"t\n= bigint,= text,now", 'an unqualified query under the hostile path calls the shadows');
is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	't', 'and a superuser calling them would make mallory superuser');
$node->safe_psql('postgres', q{ALTER ROLE mallory NOSUPERUSER; DELETE FROM public.hits});

# The handler's own search_path is its declaration's: the sandbox gives a
# handler the configured path, which is hostile here (see the README).
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.note(step jsonb) RETURNS jsonb LANGUAGE sql
	    SET search_path = pg_catalog, public AS $$
		INSERT INTO public.ledger VALUES ((step->>'task_id')::bigint, step->>'step_name');
		SELECT '{"ok": true}'::jsonb $$;
	GRANT EXECUTE ON FUNCTION public.note(jsonb) TO PUBLIC;
});

# ---------------------------------------------------------------------
# The API, called by mallory with the hostile path.
# ---------------------------------------------------------------------
my $api = qq{SET search_path = $hostile;
	BEGIN;
	SELECT tasker_register_template(\$y\$
name: diamond
step_templates:
  - {name: a, handler_class: public.note}
  - {name: b, handler_class: public.note, depends_on_step: a}
  - {name: c, handler_class: public.note, depends_on_step: a}
  - {name: d, handler_class: public.note, depends_on_steps: [b, c]}
\$y\$);
	SELECT tasker_register_handler('Mallory::Note', 'public.note(jsonb)');
	SELECT tasker_create_task('diamond', '{"n": 1}', identity_key => 'k1') AS t1 \\gset
	SELECT tasker_create_task('diamond', '{"n": 1}', identity_key => 'k1');
	SELECT tasker_cancel_task(:t1, 'changed my mind');
	SELECT tasker_create_task('diamond', '{"n": 2}') AS t2 \\gset
	SELECT tasker_resolve_step(:t2, 'a', '{"by": "hand"}', 'test');
	SELECT tasker_cancel_step(:t2, 'b', 'test');
	SELECT count(*) FROM tasker_task_execution_context(:t2);
	SELECT count(*) FROM tasker_step_readiness_status(:t2);
	SELECT tasker_task_summary(:t2) IS NOT NULL;
	SELECT count(*) FROM tasker_health();
	SELECT count(*) FROM tasker_analytics_metrics();
	SELECT count(*) FROM tasker_task_bottlenecks(:t2);
	SELECT length(tasker_task_diagram(:t2));
	SELECT count(*) FROM tasker_step_dag_relationships;
	SELECT count(*) FROM tasker_check();
	COMMIT;
	SELECT tasker_publish_event('nothing_declared', '{}');
};
my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE mallory; $api");
like($err, qr/custom event "nothing_declared"|not declared/,
	'the API ran to its last call (an undeclared event is refused)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tasker.tasker_tasks'), '2',
	'mallory\'s calls created their tasks');
is($node->safe_psql('postgres', 'SELECT coalesce(string_agg(fn || \' by \' || by_role, \', \'), \'none\') FROM hits'),
	'none', 'no API function called a shadow');

# ---------------------------------------------------------------------
# The workers, with the hostile path in the database's settings.
# ---------------------------------------------------------------------
$node->safe_psql('postgres', qq{ALTER DATABASE postgres SET search_path = $hostile});
$node->restart;
# From here on, every check of this test's own sets a safe path first:
# the database's hostile one would call the shadows as superuser.
my $safe = 'SET search_path = pg_catalog, public;';

# wait_for SQL: poll SQL (run after $safe, quietly) until it returns t.
sub wait_for
{
	my ($sql) = @_;
	for (1 .. 1800)
	{
		return 1 if $node->safe_psql('postgres', "$safe $sql") eq 't';
		usleep(100_000);
	}
	return 0;
}
wait_for(
	"SELECT count(*) > 0 FROM tasker.tasker_worker_status() WHERE role = 'worker' AND state <> 'stopped'")
  or diag('no worker started');
is($node->safe_psql('postgres', 'SHOW search_path'), $hostile,
	'new sessions of the database start with the hostile path');
my $t3 = $node->safe_psql('postgres', q{SET ROLE mallory; SELECT tasker_create_task('diamond', '{"n": 3}')});
ok(wait_for(
		"SELECT current_state = 'complete' FROM tasker.tasker_tasks WHERE task_id = $t3"),
	'the workers run a task to completion under the hostile path');
my $t2 = $node->safe_psql('postgres', qq{$safe SELECT task_id FROM tasker.tasker_tasks WHERE context->>'n' = '2'});
$node->safe_psql('postgres', "$safe SELECT tasker.tasker_resolve_step($t2, 'b', '{}', 'go on')");
ok(wait_for(
		"SELECT current_state = 'complete' FROM tasker.tasker_tasks WHERE task_id = $t2"),
	'and the task resumed by hand');
is($node->safe_psql('postgres', "$safe SELECT string_agg(step, ',' ORDER BY step) FROM ledger WHERE task_id = $t3"),
	'a,b,c,d', 'each step of the task ran once');
is($node->safe_psql('postgres', "$safe " . 'SELECT coalesce(string_agg(fn || \' by \' || by_role, \', \'), \'none\') FROM hits'),
	'none', 'no worker statement called a shadow');
is($node->safe_psql('postgres', "$safe SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"),
	'f', 'mallory is not superuser');

done_testing();
