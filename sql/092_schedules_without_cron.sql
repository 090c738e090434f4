-- 092_schedules_without_cron: on a server without pg_cron (this one does
-- not preload it), every schedule function says what is missing and how
-- to install it, and nothing is written.  Issue 11; test/tap/090_schedules.pl
-- runs schedules against a real pg_cron.
SET client_min_messages = warning;

CREATE FUNCTION sched_ok(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($$
name: nightly
step_templates:
  - name: only
    handler_class: sched_ok
$$) > 0 AS registered;

-- invalid input: pg_cron is not preloaded
SELECT tasker_schedule('nightly-report', '0 3 * * *', 'nightly');
SELECT tasker_unschedule('nightly-report');
SELECT tasker_pause_schedule('nightly-report');
SELECT tasker_resume_schedule('nightly-report');
SELECT count(*) FROM tasker_schedules;

-- invalid input: arguments are checked first
SELECT tasker_schedule(NULL, '0 3 * * *', 'nightly');
SELECT tasker_schedule('nightly-report', '0 3 * * *', 'nightly', '[]');
SELECT tasker_schedule(repeat('j', 64), '0 3 * * *', 'nightly');
-- invalid input: a job's command for a schedule that does not exist
SELECT tasker_fire_schedule('nightly-report', now());
-- invalid input: not granted to PUBLIC
DROP ROLE IF EXISTS regress_scheduler;
CREATE ROLE regress_scheduler;
SET ROLE regress_scheduler;
SELECT tasker_schedule('nightly-report', '0 3 * * *', 'nightly');
SELECT tasker_fire_schedule('nightly-report', now());
RESET ROLE;
DROP ROLE regress_scheduler;
