-- 085_metrics: the contracts of the metrics functions (issue 12):
-- signatures, comments, open to any role (no table privilege needed), the
-- readers' jit setting and the column that keeps an attempt's start.  What
-- the counters count, and the text format, are checked with the workers
-- running in test/tap/085_metrics.pl.
BEGIN;
SET client_min_messages = warning;
SELECT plan(12);

SELECT has_function('tasker_metrics', ARRAY[]::text[]);
SELECT has_function('tasker_metrics_prometheus', ARRAY[]::text[]);
SELECT is(pg_get_function_result('tasker_metrics()'::regprocedure),
          'TABLE(name text, labels jsonb, value double precision)',
          'tasker_metrics returns (name, labels, value)');
SELECT function_returns('tasker_metrics_prometheus', ARRAY[]::text[], 'text');
SELECT is(array_agg(p.oid::regprocedure::text ORDER BY 1), NULL, 'both have a comment')
  FROM pg_proc p
 WHERE p.proname IN ('tasker_metrics', 'tasker_metrics_prometheus')
   AND obj_description(p.oid, 'pg_proc') IS NULL;

-- A role with the reader level reads them, with no privilege of its own.
CREATE ROLE tasker_tap_scraper IN ROLE tasker_reader;
SET ROLE tasker_tap_scraper;
SELECT ok((SELECT count(*) FROM tasker_metrics()) > 50
          AND (SELECT bool_and(jsonb_typeof(labels) = 'object' AND value >= 0) FROM tasker_metrics()),
          'a reader reads the samples, each with a label object and a value');
SELECT matches(tasker_metrics_prometheus(), '^# HELP tasker_tasks_created_total ',
               'the text starts with the first family''s # HELP line');
SELECT is((SELECT count(*) FROM tasker_metrics() WHERE name = 'tasker_step_duration_seconds_bucket'
            AND labels->>'kind' = 'sql'), 15::bigint,
          'the sql step duration histogram has 15 buckets, +Inf included');
SELECT is((SELECT string_agg(DISTINCT labels->>'kind', ',') FROM tasker_metrics()
            WHERE name = 'tasker_step_attempts_total'), 'flow,http,sql,worker',
          'attempts are counted for the four handler kinds');
RESET ROLE;

-- The readers of history run without JIT (it cost more than the queries).
SELECT is(array_agg(p.proname::text ORDER BY p.proname), NULL, 'the analytics readers run with jit off')
  FROM pg_proc p
 WHERE p.proname IN ('tasker_system_health', 'tasker_analytics_metrics', 'tasker_slowest_steps',
                     'tasker_slowest_tasks', 'tasker_health')
   AND NOT p.proconfig @> ARRAY['jit=off'];

-- A transition that ends an attempt keeps the attempt's start.
SELECT has_column('tasker_workflow_step_transitions', 'attempt_started_at');
SELECT col_type_is('tasker_workflow_step_transitions', 'attempt_started_at', 'timestamp with time zone');

SELECT * FROM finish();
ROLLBACK;
