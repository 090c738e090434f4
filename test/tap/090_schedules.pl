# 090_schedules.pl: task schedules through a real pg_cron (issue 11).
# tasker_schedule creates the pg_cron job and tasker_schedules shows it;
# running the job's command twice for one tick creates one task; pause,
# resume, replace and unschedule change the job; a schedule made in a
# database pg_cron does not run in goes through cron.schedule_in_database;
# pg_cron itself fires the jobs.  Without pg_cron see
# sql/092_schedules_without_cron.sql.  This node alone preloads pg_cron.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('schedules');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'tasker, pg_cron'
tasker.database_name = 'postgres'
tasker.max_workers = 1
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 20
});
$node->start;

my $template = q{
	CREATE FUNCTION public.tick_ok(step jsonb) RETURNS jsonb LANGUAGE sql
	    AS $$ SELECT jsonb_build_object('context', step->'context') $$;
	SELECT tasker_register_template($y$
name: ticked
namespace_name: ops
step_templates:
  - name: only
    handler_class: public.tick_ok
$y$);
};
$node->safe_psql('postgres', 'CREATE EXTENSION tasker');
$node->safe_psql('postgres', $template);

# pg_cron is preloaded for this database but not created in it yet.
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_schedule('early', '* * * * *', 'ticked', namespace => 'ops')");
isnt($rc, 0, 'without the pg_cron extension, tasker_schedule fails');
like($err, qr/pg_cron is not installed in database "postgres".*HINT:  Run CREATE EXTENSION pg_cron/s,
	'and the hint says to create it');

$node->safe_psql('postgres', 'CREATE EXTENSION pg_cron');

# A schedule in pg_cron's own database.
my $jobid = $node->safe_psql('postgres',
	q{SELECT tasker_schedule('every-minute', '* * * * *', 'ticked', '{"report": "daily"}', 'ops')});
like($jobid, qr/^\d+$/, 'tasker_schedule returns the pg_cron job id');
is($node->safe_psql('postgres', qq{
	SELECT schedule || '|' || database || '|' || active || '|' || jobname
	  FROM cron.job WHERE jobid = $jobid}),
	'* * * * *|postgres|true|every-minute', 'the pg_cron job exists, active, in this database');
like($node->safe_psql('postgres', "SELECT command FROM cron.job WHERE jobid = $jobid"),
	qr/tasker_fire_schedule\('every-minute', pg_catalog\.date_trunc\('minute', pg_catalog\.now\(\)\)\)/,
	'its command fires the schedule for the minute of the tick');
is($node->safe_psql('postgres', q{
	SELECT job_name || '|' || schedule || '|' || task_name || '|' || namespace || '|'
	       || coalesce(version, 'NULL') || '|' || active || '|'
	       || coalesce(last_task_id::text, 'NULL') || '|' || coalesce(last_created_at::text, 'NULL')
	  FROM tasker_schedules}),
	'every-minute|* * * * *|ticked|ops|NULL|true|NULL|NULL', 'tasker_schedules shows it');

# The job's command, run twice for the same tick, creates one task.
my $command = $node->safe_psql('postgres', "SELECT command FROM cron.job WHERE jobid = $jobid");
my $tick = q{'2030-01-01 10:15:00+00'};
(my $at_tick = $command) =~ s/pg_catalog\.date_trunc\('minute', pg_catalog\.now\(\)\)/$tick/;
my $first = $node->safe_psql('postgres', $at_tick);
my $second = $node->safe_psql('postgres', $at_tick);
like($first, qr/^\d+$/, 'the command creates a task');
is($second, $first, 'the same tick run again returns the same task');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'ticked'}),
	'1', 'one task exists for the tick');
is($node->safe_psql('postgres',
		"SELECT tasker_fire_schedule('every-minute', '2030-01-01 10:15:42+00') = $first"),
	't', 'any time within the same minute is the same tick');
my $next = $node->safe_psql('postgres',
	"SELECT tasker_fire_schedule('every-minute', '2030-01-01 10:16:00+00')");
isnt($next, $first, 'the next minute creates another task');
is($node->safe_psql('postgres', qq{
	SELECT context->>'report' || '|' || initiator || '|' || requested_at::timestamptz
	       AT TIME ZONE 'UTC' FROM tasker_tasks WHERE task_id = $first}),
	'daily|pg_cron|2030-01-01 10:15:00', 'the task has the schedule\'s context and the tick');
is($node->safe_psql('postgres',
		"SELECT last_task_id = $next AND last_created_at IS NOT NULL FROM tasker_schedules"),
	't', 'tasker_schedules shows the last task created');

# Replace, pause and resume change the same job.
is($node->safe_psql('postgres',
		q{SELECT tasker_schedule('every-minute', '*/5 * * * *', 'ticked', '{"report": "daily"}', 'ops')}),
	$jobid, 'replacing a schedule keeps its job');
is($node->safe_psql('postgres', "SELECT schedule FROM cron.job WHERE jobid = $jobid"),
	'*/5 * * * *', 'with the new cron schedule');
is($node->safe_psql('postgres', "SELECT tasker_pause_schedule('every-minute')"), 't',
	'tasker_pause_schedule pauses');
is($node->safe_psql('postgres', "SELECT active FROM cron.job WHERE jobid = $jobid"), 'f',
	'the pg_cron job is inactive');
is($node->safe_psql('postgres', "SELECT active FROM tasker_schedules"), 'f',
	'tasker_schedules shows it paused');
is($node->safe_psql('postgres', "SELECT tasker_pause_schedule('every-minute')"), 'f',
	'pausing again changes nothing');
is($node->safe_psql('postgres',
		"SELECT tasker_fire_schedule('every-minute', '2030-01-01 11:00:00+00') IS NULL"),
	't', 'a paused schedule creates no task');
is($node->safe_psql('postgres', "SELECT tasker_resume_schedule('every-minute')"), 't',
	'tasker_resume_schedule resumes');
is($node->safe_psql('postgres', "SELECT active FROM cron.job WHERE jobid = $jobid"), 't',
	'the pg_cron job is active again');

# A pg_cron job tasker did not make is not taken over.
$node->safe_psql('postgres', q{SELECT cron.schedule('vacuum-nightly', '0 3 * * *', 'VACUUM')});
($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_schedule('vacuum-nightly', '* * * * *', 'ticked', namespace => 'ops')");
like($err, qr/a pg_cron job named "vacuum-nightly" already exists/, 'a foreign job of the same name is refused');
is($node->safe_psql('postgres', "SELECT command FROM cron.job WHERE jobname = 'vacuum-nightly'"),
	'VACUUM', 'and left as it was');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_schedule('bad', 'every tuesday', 'ticked', namespace => 'ops')");
like($err, qr/invalid schedule/, 'pg_cron\'s own errors come through');
($rc, $out, $err) = $node->psql('postgres',
	"SELECT tasker_schedule('bad', '* * * * *', 'no_such_template')");
like($err, qr/task template "no_such_template" is not registered/, 'an unknown template is refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM cron.job WHERE jobname = 'bad'"), '0',
	'and no job is left behind');

# A schedule made in a database pg_cron does not run in.
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION tasker');
$node->safe_psql('app', $template);
my $app_job = $node->safe_psql('app',
	q{SELECT tasker_schedule('app-minute', '* * * * *', 'ticked', '{"from": "app"}', 'ops')});
like($app_job, qr/^\d+$/, 'tasker_schedule works from another database');
is($node->safe_psql('postgres', "SELECT database || '|' || active FROM cron.job WHERE jobid = $app_job"),
	'app|true', 'the job runs in that database (cron.schedule_in_database)');
is($node->safe_psql('app', "SELECT jobid || '|' || cron_database FROM tasker_schedules"),
	"$app_job|postgres", 'tasker_schedules there names the job and pg_cron\'s database');
my $app_cmd = $node->safe_psql('postgres', "SELECT command FROM cron.job WHERE jobid = $app_job");
(my $app_at_tick = $app_cmd) =~ s/pg_catalog\.date_trunc\('minute', pg_catalog\.now\(\)\)/$tick/;
is($node->safe_psql('app', $app_at_tick), $node->safe_psql('app', $app_at_tick),
	'the same tick twice creates one task there too');
is($node->safe_psql('app', "SELECT tasker_pause_schedule('app-minute')"), 't', 'pause from there');
is($node->safe_psql('postgres', "SELECT active FROM cron.job WHERE jobid = $app_job"), 'f',
	'reaches the job in pg_cron\'s database');
is($node->safe_psql('app', "SELECT tasker_resume_schedule('app-minute')"), 't', 'and so does resume');
($rc, $out, $err) = $node->psql('app',
	"SELECT tasker_schedule('app-bad', 'every tuesday', 'ticked', namespace => 'ops')");
like($err, qr/invalid schedule.*CONTEXT:  pg_cron in database "postgres"/s,
	'pg_cron\'s errors there come back with where they happened');

# pg_cron fires both jobs at the next minute; each creates its tick's task.
$node->safe_psql('postgres', q{SELECT tasker_schedule('every-minute', '* * * * *', 'ticked', '{"report": "daily"}', 'ops')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM tasker_tasks t JOIN tasker_named_tasks nt USING (named_task_id)
	 WHERE nt.name = 'ticked' AND t.initiator = 'pg_cron' AND t.requested_at < '2030-01-01'}),
	'pg_cron fired the job and it created a task');
ok($node->poll_query_until('app', q{
	SELECT count(*) > 0 FROM tasker_tasks t WHERE t.requested_at < '2030-01-01'}),
	'pg_cron fired the job of the other database too');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	 WHERE j.jobname IN ('every-minute', 'app-minute') AND d.status = 'failed'}),
	'0', 'no run of either job failed');

# Unschedule removes the job and the schedule.
is($node->safe_psql('postgres', "SELECT tasker_unschedule('every-minute')"), 't',
	'tasker_unschedule removes a schedule');
is($node->safe_psql('postgres', "SELECT count(*) FROM cron.job WHERE jobid = $jobid"), '0',
	'its pg_cron job is gone');
is($node->safe_psql('postgres', "SELECT count(*) FROM tasker_schedules"), '0',
	'and tasker_schedules no longer shows it');
is($node->safe_psql('postgres', "SELECT tasker_unschedule('every-minute')"), 'f',
	'unscheduling again returns false');
is($node->safe_psql('app', "SELECT tasker_unschedule('app-minute')"), 't',
	'unschedule from the other database');
is($node->safe_psql('postgres', "SELECT count(*) FROM cron.job WHERE jobid = $app_job"), '0',
	'removes its job in pg_cron\'s database');

$node->stop;
done_testing();
