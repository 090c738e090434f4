-- 090_event_log: the durable event log and event subscriptions, without
-- the workers (none serves this database, so nothing is delivered here;
-- test/tap/091_subscribers.pl covers delivery): events logged with their
-- event_id, reading and paging, subscribing and its checks, pruning.
SET client_min_messages = warning;
\set SHOW_CONTEXT never

CREATE FUNCTION ev_ok(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{}'::jsonb $$;
SELECT tasker_register_template($y$
name: ev_two
step_templates:
  - {name: a, handler_class: ev_ok}
  - {name: b, handler_class: ev_ok, depends_on_step: a}
$y$) > 0 AS registered;

SELECT coalesce(max(event_id), 0) AS before FROM tasker_events_since(0, 1000000) \gset
SELECT tasker_create_task('ev_two', '{}') AS t \gset
SELECT tasker_run_task(:t);

-- Every event of the task, in order, with its event_id in the payload too.
SELECT row_number() OVER (ORDER BY event_id) AS n, event->>'event' AS event,
       event->>'step_name' AS step, (event->>'event_id')::bigint = event_id AS id_in_payload
  FROM tasker_events_since(:before)
 WHERE (event->>'task_id')::bigint = :t
 ORDER BY event_id;
-- The same as the transitions recorded (plus the task's creation).
SELECT (SELECT count(*) FROM tasker_events_since(:before) WHERE (event->>'task_id')::bigint = :t)
     = 1 + (SELECT count(*) FROM tasker_task_transitions WHERE task_id = :t)
         + (SELECT count(*) FROM tasker_workflow_step_transitions tr
              JOIN tasker_workflow_steps s USING (workflow_step_id) WHERE s.task_id = :t)
       AS one_event_per_transition;
-- Paging: max_events at a time, resuming after the last id returned.
SELECT count(*) AS first_page FROM tasker_events_since(:before, 3);
SELECT max(event_id) AS page_end FROM tasker_events_since(:before, 3) \gset
SELECT count(*) AS rest FROM tasker_events_since(:page_end)
 WHERE (event->>'task_id')::bigint = :t;
-- A rolled-back transaction leaves no event.
BEGIN;
SELECT tasker_create_task('ev_two', '{"gone": true}') > 0 AS created;
ROLLBACK;
SELECT count(*) AS rolled_back FROM tasker_events_since(:before) WHERE event->'gone' IS NOT NULL;
SELECT count(*) AS rolled_back_tasks FROM tasker_event_log l
 WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_id = (l.event->>'task_id')::bigint)
   AND l.event ? 'task_id';

-- invalid input: NULL arguments, a page size out of range.
SELECT * FROM tasker_events_since(NULL);
SELECT * FROM tasker_events_since(0, NULL);
SELECT * FROM tasker_events_since(0, 0);
-- invalid input: a snapshot older than the call.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM tasker_events_since(0);
ROLLBACK;

-- Subscriptions.  The function takes the event; its result is ignored.
CREATE TABLE ev_seen (event jsonb);
CREATE FUNCTION ev_keep(event jsonb) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO ev_seen VALUES (event) $$;
SELECT tasker_subscribe('audit', 'task.*', 'ev_keep(jsonb)')
     = (SELECT max(event_id) FROM tasker_events_since(0, 1000000)) AS starts_at_the_end;
SELECT subscriber, event_pattern, function, owner = current_user AS mine, delivered, failures,
       parked, pending_attempts, max_attempts, retry_delay
  FROM tasker_subscriptions;
-- Subscribing again changes it (by its owner); start_after moves the cursor.
SELECT tasker_subscribe('audit', 'task.completed', 'ev_keep(jsonb)', max_attempts => 3,
                        retry_delay => '250 ms', start_after => 0);
SELECT event_pattern, last_event_id, max_attempts, retry_delay FROM tasker_subscriptions;
-- Patterns: * matches any text; %, _ and \ match only themselves.
SELECT tasker_subscribe('odd', 'a%b_c\d*', 'ev_ok(jsonb)') >= 0 AS subscribed;
SELECT event_like FROM tasker_subscribers WHERE subscriber = 'odd';
SELECT tasker_unsubscribe('odd'), tasker_unsubscribe('odd') AS again;

-- invalid input: names, patterns, bounds.
SELECT tasker_subscribe('', '*', 'ev_keep(jsonb)');
SELECT tasker_subscribe('x', '', 'ev_keep(jsonb)');
SELECT tasker_subscribe(NULL, '*', 'ev_keep(jsonb)');
SELECT tasker_subscribe('x', '*', NULL);
SELECT tasker_subscribe('x', '*', 'ev_keep(jsonb)', max_attempts => 0);
SELECT tasker_subscribe('x', '*', 'ev_keep(jsonb)', retry_delay => '0');
SELECT tasker_subscribe('x', '*', 'ev_keep(jsonb)', start_after => -1);
-- invalid input: functions that cannot take an event.
CREATE FUNCTION ev_text(event text) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION ev_two_args(a jsonb, b jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION ev_set(event jsonb) RETURNS SETOF int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE PROCEDURE ev_proc(event jsonb) LANGUAGE sql AS $$ SELECT $$;
SELECT tasker_subscribe('x', '*', 'ev_text(text)');
SELECT tasker_subscribe('x', '*', 'ev_two_args(jsonb, jsonb)');
SELECT tasker_subscribe('x', '*', 'ev_set(jsonb)');
SELECT tasker_subscribe('x', '*', 'ev_proc(jsonb)');

-- A role may subscribe only functions it may execute, and change only its
-- own subscribers.
CREATE ROLE ev_bob;
GRANT EXECUTE ON FUNCTION tasker_subscribe(text, text, regprocedure, integer, interval, bigint),
                          tasker_unsubscribe(text) TO ev_bob;
CREATE FUNCTION ev_private(event jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
REVOKE EXECUTE ON FUNCTION ev_private(jsonb) FROM PUBLIC;
SET ROLE ev_bob;
-- invalid input: a function bob may not execute, a subscriber of another role.
SELECT tasker_subscribe('bobs', '*', 'ev_private(jsonb)');
SELECT tasker_subscribe('audit', '*', 'ev_ok(jsonb)');
SELECT tasker_unsubscribe('audit');
SELECT tasker_subscribe('bobs', 'step.*', 'ev_ok(jsonb)') >= 0 AS bob_subscribed;
-- invalid input: bob reads no table of tasker's.
SELECT count(*) FROM tasker_subscribers;
RESET ROLE;
SELECT subscriber, owner FROM tasker_subscriptions ORDER BY subscriber;
SELECT tasker_unsubscribe('bobs');

-- Pruning keeps the newest event and what a subscriber has not passed:
-- audit's cursor is at 0, so nothing goes while it is there.
SELECT tasker_prune_event_log(interval '0', 1000000) AS pruned_behind_audit;
SELECT tasker_unsubscribe('audit');
SELECT tasker_prune_event_log(interval '0', 1000000) > 0 AS pruned;
SELECT count(*) AS left_in_log FROM tasker_event_log;
-- invalid input: a negative age.
SELECT tasker_prune_event_log(interval '-1 day');

REVOKE EXECUTE ON FUNCTION tasker_subscribe(text, text, regprocedure, integer, interval, bigint),
                           tasker_unsubscribe(text) FROM ev_bob;
DROP FUNCTION ev_private(jsonb);
DROP ROLE ev_bob;
