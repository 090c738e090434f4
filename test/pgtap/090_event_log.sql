-- 090_event_log: the contracts of the event log and subscriptions (issue
-- 12 item 8): signatures, result columns, comments, who may execute
-- what, the tables users cannot write, and an SQLSTATE for each bad
-- argument.
BEGIN;
SET client_min_messages = warning;
SELECT plan(24);

SELECT has_table('tasker_event_log');
SELECT col_is_pk('tasker_event_log', 'event_id');
SELECT has_table('tasker_subscribers');
SELECT has_table('tasker_parked_events');
SELECT has_view('tasker_subscriptions');
SELECT has_function('tasker_events_since', ARRAY['bigint', 'integer']);
SELECT has_function('tasker_subscribe', ARRAY['text', 'text', 'regprocedure', 'integer', 'interval', 'bigint']);
SELECT has_function('tasker_unsubscribe', ARRAY['text']);
SELECT has_function('tasker_prune_event_log', ARRAY['interval', 'integer']);
SELECT is((SELECT pg_get_function_result('tasker_events_since(bigint, integer)'::regprocedure)),
          'TABLE(event_id bigint, event jsonb)', 'tasker_events_since returns (event_id, event)');
SELECT is((SELECT pg_get_function_arguments('tasker_events_since(bigint, integer)'::regprocedure)),
          'after_id bigint, max_events integer DEFAULT 1000', 'max_events defaults to 1000');
SELECT is((SELECT pg_get_function_arguments('tasker_subscribe(text, text, regprocedure, integer, interval, bigint)'::regprocedure)),
          'subscriber text, event_pattern text, fn regprocedure, max_attempts integer DEFAULT 5, retry_delay interval DEFAULT ''00:00:01''::interval, start_after bigint DEFAULT NULL::bigint',
          'tasker_subscribe: (subscriber, event_pattern, fn) and its defaults');
SELECT columns_are('tasker_subscriptions',
                   ARRAY['subscriber', 'event_pattern', 'function', 'owner', 'last_event_id', 'delivered',
                         'failures', 'parked', 'pending_attempts', 'next_attempt_at', 'last_error',
                         'max_attempts', 'retry_delay', 'last_delivered_at', 'created_at']);
SELECT ok(obj_description('tasker_events_since(bigint, integer)'::regprocedure, 'pg_proc') IS NOT NULL
          AND obj_description('tasker_subscribe(text, text, regprocedure, integer, interval, bigint)'::regprocedure, 'pg_proc') IS NOT NULL
          AND obj_description('tasker_unsubscribe(text)'::regprocedure, 'pg_proc') IS NOT NULL
          AND obj_description('tasker_prune_event_log(interval, integer)'::regprocedure, 'pg_proc') IS NOT NULL
          AND obj_description('tasker_subscriptions'::regclass, 'pg_class') IS NOT NULL
          AND obj_description('tasker_event_log'::regclass, 'pg_class') IS NOT NULL,
          'every new object has a comment');

-- Reading the log is the reader level's (issue 13: under namespace
-- isolation it shows each role its namespaces' events only); subscribing
-- and pruning are granted.
SELECT ok(NOT has_function_privilege('public', 'tasker_events_since(bigint, integer)', 'EXECUTE')
          AND has_function_privilege('tasker_reader', 'tasker_events_since(bigint, integer)', 'EXECUTE'),
          'tasker_reader reads the log, PUBLIC does not');
SELECT ok(NOT has_function_privilege('public', 'tasker_subscribe(text, text, regprocedure, integer, interval, bigint)', 'EXECUTE'),
          'tasker_subscribe is granted, not public');
SELECT ok(NOT has_function_privilege('public', 'tasker_unsubscribe(text)', 'EXECUTE'),
          'tasker_unsubscribe is granted, not public');
SELECT ok(NOT has_function_privilege('public', 'tasker_prune_event_log(interval, integer)', 'EXECUTE'),
          'tasker_prune_event_log is granted, not public');
SELECT ok(NOT has_table_privilege('public', 'tasker_event_log', 'INSERT')
          AND NOT has_table_privilege('public', 'tasker_subscribers', 'UPDATE')
          AND NOT has_table_privilege('public', 'tasker_parked_events', 'DELETE'),
          'no one but the owner writes the tables');

-- SQLSTATEs.
SELECT throws_ok($$SELECT * FROM tasker_events_since(NULL)$$, '22004');
SELECT throws_ok($$SELECT * FROM tasker_events_since(0, 0)$$, '22023');
CREATE FUNCTION pg_temp.bad_sub(x text) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT throws_ok($$SELECT tasker_subscribe('x', '*', 'pg_temp.bad_sub(text)')$$, '22023');
SELECT throws_ok($$SELECT tasker_subscribe('x', '*', 'jsonb_typeof(jsonb)', max_attempts => 0)$$, '22023');
SELECT throws_ok($$SELECT tasker_prune_event_log(interval '-1 s')$$, '22023');

SELECT * FROM finish();
ROLLBACK;
