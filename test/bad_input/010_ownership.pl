# 010_ownership.pl: issue 15 A3, A5, A7.  A template name in a namespace
# and a handler class belong to the role that first registered them;
# nobody else can add versions, replace them, remap the class or squat a
# class another role's template will name.  A handler function must be one
# the registering role may call (USAGE on its schema, EXECUTE on it).
# Owners are stored as regrole, so a dump and restore into another cluster
# keeps them by name.  Tasks run in-session with tasker_run_task, so no
# preload is needed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('ownership');
$node->init;
$node->start;

# Roles: alice and mallory are ordinary roles, bob is a member of alice.
# Table privileges are granted explicitly, as the README says, so that
# this test does not depend on how tasker's privilege model evolves.
my $roles = q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE mallory LOGIN;
	CREATE ROLE bob LOGIN IN ROLE alice;
};
$node->safe_psql('postgres', $roles . q{
	CREATE EXTENSION tasker;
	CREATE TABLE public.ledger (fn text, ran_as text);
	GRANT INSERT ON public.ledger TO PUBLIC;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO alice, mallory, bob;
	GRANT SELECT ON ALL TABLES IN SCHEMA public TO alice, mallory, bob;
	CREATE SCHEMA alice AUTHORIZATION alice;
	CREATE SCHEMA mallory AUTHORIZATION mallory;
	GRANT USAGE ON SCHEMA mallory TO PUBLIC;
	CREATE SCHEMA alice_shared AUTHORIZATION alice;
	GRANT USAGE ON SCHEMA alice_shared TO PUBLIC;
	SET ROLE alice;
	CREATE FUNCTION alice.charge(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO public.ledger VALUES ('alice.charge', current_user);
		SELECT '{"charged": true}'::jsonb $$;
	CREATE FUNCTION alice_shared.alice_private(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		SELECT '{}'::jsonb $$;
	REVOKE EXECUTE ON FUNCTION alice_shared.alice_private(jsonb) FROM PUBLIC;
	SET ROLE mallory;
	CREATE FUNCTION mallory.steal(step jsonb) RETURNS jsonb LANGUAGE sql AS $$
		INSERT INTO public.ledger VALUES ('mallory.steal', current_user);
		SELECT '{"stolen": true}'::jsonb $$;
	RESET ROLE;
});

# as_role ROLE SQL: run SQL as ROLE; returns (exit code, stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE $role;\n$sql",
		on_error_stop => 1);
	return ($rc, $out, $err);
}

# template YAML: a one-step template in namespace billing.
sub template
{
	my ($name, $version, $class) = @_;
	return "\$y\$\nname: $name\nnamespace_name: billing\nversion: $version\n"
	  . "step_templates:\n  - {name: charge, handler_class: \"$class\"}\n\$y\$";
}

my ($rc, $out, $err);
my $superuser = $node->safe_psql('postgres', 'SELECT current_user');

# ---------------------------------------------------------------------
# A3 (a): template names belong to the role that registered them first.
# ---------------------------------------------------------------------
($rc, $out, $err) = as_role('alice',
	'SELECT tasker_register_template(' . template('pay', '1.0.0', 'alice.charge') . ')');
is($rc, 0, 'alice registers template pay 1.0.0') or diag($err);

($rc, $out, $err) = as_role('mallory',
	'SELECT tasker_register_template(' . template('pay', '9.0.0', 'mallory.steal') . ')');
isnt($rc, 0, 'mallory cannot register a higher version of alice\'s template');
like($err, qr/ERROR:  permission denied to add a version to task template "pay"/,
	'the error says so');
like($err, qr/DETAIL:  Role "alice" registered task template "pay" in namespace "billing" first/,
	'the detail names the owner');
like($err, qr/HINT:  .*another name or namespace/, 'the hint says what to do instead');

($rc, $out, $err) = as_role('mallory',
	'SELECT tasker_register_template(' . template('pay', '1.0.0', 'mallory.steal') . ', true)');
like($err, qr/permission denied to replace task template "pay"/,
	'mallory cannot replace alice\'s version either');

($rc, $out, $err) = as_role('bob',
	'SELECT tasker_register_template(' . template('pay', '1.1.0', 'alice.charge') . ')');
is($rc, 0, 'bob, a member of alice, may add a version') or diag($err);
is($node->safe_psql('postgres', q{
	SELECT string_agg(version || ':' || owner, ',' ORDER BY version)
	  FROM tasker_templates WHERE namespace = 'billing' AND name = 'pay'}),
	'1.0.0:alice,1.1.0:bob', 'pay has alice\'s and bob\'s versions and no other');

($rc, $out, $err) = as_role('mallory',
	'SELECT tasker_register_template(' . template('mallory_pay', '1.0.0', 'mallory.steal') . ')');
is($rc, 0, 'mallory may still register a name of her own in the namespace') or diag($err);

# A superuser's task with a NULL version runs alice's template.
my $task = $node->safe_psql('postgres',
	"SELECT tasker_create_task('pay', '{}', namespace => 'billing')");
is($node->safe_psql('postgres', "SELECT tasker_run_task($task)"), 'complete',
	'a superuser\'s task of pay completes');
is($node->safe_psql('postgres', q{SELECT string_agg(fn || ' as ' || ran_as, ',') FROM ledger}),
	'alice.charge as bob', 'it ran the highest version, bob\'s, with alice\'s function, not mallory\'s');

# ---------------------------------------------------------------------
# A3 (b): handler classes belong to the role that registered them first.
# ---------------------------------------------------------------------
($rc, $out, $err) = as_role('alice',
	"SELECT tasker_register_handler('Billing::Charge', 'alice.charge(jsonb)')");
is($rc, 0, 'alice registers class Billing::Charge') or diag($err);
($rc, $out, $err) = as_role('mallory',
	"SELECT tasker_register_handler('Billing::Charge', 'mallory.steal(jsonb)')");
like($err, qr/ERROR:  permission denied to change handler class "Billing::Charge".*DETAIL:  Role "alice" registered the class first/s,
	'mallory cannot remap alice\'s class');
($rc, $out, $err) = as_role('bob',
	"SELECT tasker_register_handler('Billing::Charge', 'alice.charge(jsonb)')");
is($rc, 0, 'bob, a member of alice, may remap it') or diag($err);
is($node->safe_psql('postgres',
		"SELECT owner || ' ' || function FROM tasker_handlers WHERE handler_class = 'Billing::Charge'"),
	'alice alice.charge(jsonb)', 'the class still belongs to alice');

# Squatting: mallory registers the class alice's template will name.
($rc, $out, $err) = as_role('mallory',
	"SELECT tasker_register_handler('Billing::Refund', 'mallory.steal(jsonb)')");
is($rc, 0, 'mallory registers a class name first') or diag($err);
($rc, $out, $err) = as_role('alice',
	'SELECT tasker_register_template(' . template('refund', '1.0.0', 'Billing::Refund') . ')');
isnt($rc, 0, 'alice\'s template does not bind to the squatted class');
like($err, qr/ERROR:  handler class "Billing::Refund" belongs to role "mallory"/,
	'the error names the class and its owner');
like($err, qr/DETAIL:  Line 6, column 35: Step "charge" of task template "refund" names the class, which role "mallory" registered; role "alice", which registers the template, is neither that role nor a member of it\./,
	'the detail names the step and the roles');
like($err, qr/HINT:  Register your handler under a class name of your own/, 'with a hint');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_named_tasks WHERE name = 'refund'"),
	'0', 'nothing of the refused template is stored');
($rc, $out, $err) = $node->psql('postgres',
	'SELECT tasker_register_template(' . template('su_refund', '1.0.0', 'Billing::Refund') . ')');
like($err, qr/ERROR:  handler class "Billing::Refund" belongs to role "mallory"/,
	'a superuser\'s template does not bind to the squatted class either');

# A class a superuser registered is shared: any role may bind to it.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.audit(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	SELECT tasker_register_handler('Shared::Audit', 'public.audit(jsonb)')});
($rc, $out, $err) = as_role('alice',
	'SELECT tasker_register_template(' . template('audit', '1.0.0', 'Shared::Audit') . ')');
is($rc, 0, 'alice may use a class a superuser registered') or diag($err);

# ---------------------------------------------------------------------
# A5: a handler function must be callable by the registering role.
# ---------------------------------------------------------------------
($rc, $out, $err) = as_role('mallory', q{
	SELECT tasker_register_handler('Mallory::Charge',
		(SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		  WHERE n.nspname = 'alice' AND p.proname = 'charge')::regprocedure)});
isnt($rc, 0, 'mallory cannot register a function (passed by OID) in a schema she cannot use');
like($err, qr/ERROR:  permission denied to register function alice\.charge\(jsonb\) as a step handler.*DETAIL:  .*role "mallory" has no USAGE privilege on schema "alice"/s,
	'the error names the missing schema privilege');
($rc, $out, $err) = as_role('mallory',
	"SELECT tasker_register_handler('Mallory::Private', 'alice_shared.alice_private(jsonb)')");
like($err, qr/DETAIL:  .*role "mallory" has no EXECUTE privilege on function alice_shared.alice_private\(jsonb\)/,
	'nor a function she may not execute');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM tasker_handler_registry WHERE handler_class LIKE 'Mallory::%'"),
	'0', 'neither registration is stored');

# A registration made before this check (or by hand) is checked again when
# a template resolves through it.
$node->safe_psql('postgres', q{
	INSERT INTO tasker_handler_registry (handler_class, function, registered_by)
	VALUES ('Mallory::Legacy', 'alice.charge(jsonb)', 'mallory'::regrole)});
($rc, $out, $err) = as_role('mallory',
	'SELECT tasker_register_template(' . template('legacy', '1.0.0', 'Mallory::Legacy') . ')');
like($err, qr/ERROR:  task template "legacy" is invalid.*DETAIL:  .*function alice\.charge\(jsonb\).*role "mallory" has no USAGE privilege on schema "alice"/s,
	'a template cannot bind a registered function in a schema the role cannot use');
($rc, $out, $err) = as_role('mallory',
	'SELECT tasker_register_template(' . template('direct', '1.0.0', 'alice.charge') . ')');
like($err, qr/permission denied for schema alice|no USAGE privilege on schema "alice"/,
	'nor name it as schema.function');
is($node->safe_psql('postgres', "SELECT count(*) FROM ledger"), '1',
	'no handler of alice ran on mallory\'s behalf');

# ---------------------------------------------------------------------
# A7: owners are roles (regrole), kept by name across dump and restore.
# ---------------------------------------------------------------------
is($node->safe_psql('postgres', q{
	SELECT format_type(atttypid, atttypmod) FROM pg_attribute
	 WHERE (attrelid, attname) IN (('tasker_named_tasks'::regclass, 'owner'),
	                               ('tasker_handler_registry'::regclass, 'registered_by'))
	 ORDER BY attrelid::regclass::text}),
	"regrole\nregrole", 'tasker_named_tasks.owner and tasker_handler_registry.registered_by are regrole');
is($node->safe_psql('postgres',
		"SELECT owner::text FROM tasker_named_tasks WHERE name = 'pay' AND version = '1.0.0'"),
	'alice', 'owner::text is the role name');
($rc, $out, $err) = $node->psql('postgres',
	"COPY tasker_handler_registry (handler_class, function, registered_by) FROM stdin;\n"
	  . "Ghost::Class\talice.charge(jsonb)\tghost\n\\.\n");
like($err, qr/role "ghost" does not exist/, 'a row naming an unknown role does not load');

# Dump, and restore into a cluster where the roles have other OIDs.
my $dumpfile = $node->basedir . '/ownership.sql';
$node->command_ok([ 'pg_dump', '-f', $dumpfile, '-d', $node->connstr('postgres') ],
	'pg_dump of the database');
my $other = PostgreSQL::Test::Cluster->new('restored');
$other->init;
$other->start;
$other->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE ROLE placeholder;
	CREATE ROLE bob LOGIN;
	CREATE ROLE alice LOGIN;
	GRANT alice TO bob;
	CREATE DATABASE restored});
isnt($other->safe_psql('postgres', "SELECT 'alice'::regrole::oid"),
	$node->safe_psql('postgres', "SELECT 'alice'::regrole::oid"),
	'alice has another OID in the other cluster');
$other->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $dumpfile,
	'-d', $other->connstr('restored') ], 'the dump restores');
is($other->safe_psql('restored', q{
	SELECT string_agg(name || ' ' || version || ' ' || owner, ',' ORDER BY name, version)
	  FROM tasker_templates WHERE namespace = 'billing'}),
	'audit 1.0.0 alice,mallory_pay 1.0.0 mallory,pay 1.0.0 alice,pay 1.1.0 bob',
	'every template keeps its owner by name');
is($other->safe_psql('restored', q{
	SELECT string_agg(handler_class || ' ' || owner, ',' ORDER BY handler_class)
	  FROM tasker_handlers}),
	"Billing::Charge alice,Billing::Refund mallory,Mallory::Legacy mallory,Shared::Audit $superuser",
	'every handler class keeps its owner by name');
$other->stop;

# The upgrade from 0.1.0 turns the stored OIDs into the same roles.
$node->safe_psql('postgres', q{
	CREATE DATABASE old;
	});
$node->safe_psql('old', q{
	CREATE EXTENSION tasker VERSION '0.1.0';
	CREATE FUNCTION public.noop(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
	GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO alice;
	GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO alice;
	SET ROLE alice;
	SELECT tasker_register_handler('Old::Noop', 'public.noop(jsonb)');
	SELECT tasker_register_template('{name: old, step_templates: [{name: a, handler_class: "Old::Noop"}]}');
	RESET ROLE;
	ALTER EXTENSION tasker UPDATE;
});
is($node->safe_psql('old', q{
	SELECT (SELECT owner::text FROM tasker_named_tasks WHERE name = 'old') || ' '
	    || (SELECT registered_by::text FROM tasker_handler_registry WHERE handler_class = 'Old::Noop')
	    || ' ' || (SELECT owner FROM tasker_templates WHERE name = 'old')}),
	'alice alice alice', 'after ALTER EXTENSION UPDATE the owners are the same roles');
is($node->safe_psql('old', q{
	SELECT string_agg(DISTINCT privilege_type, ',' ORDER BY privilege_type)
	  FROM information_schema.role_table_grants
	 WHERE grantee = 'alice' AND table_name LIKE 'tasker%'}),
	'SELECT', 'A2: the upgrade takes back the write privileges 0.1.0\'s README had granted');

$node->stop;
done_testing();
