-- 060_worker_protocol: the external-worker claim protocol (issue 9):
-- claim, complete, fail, complete_steps, extend, release, every error
-- path (TK003, unknown step, wrong kind, NULLs, bad arguments), and the
-- two ways a step becomes a worker step.  No tasker worker runs here;
-- the claims come from this session, as an external worker's would.
SET client_min_messages = warning;

CREATE FUNCTION w_sql(step jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '{"sql": true}'::jsonb $$;
SELECT tasker_register_template($$
name: shipping
namespace_name: orders
step_templates:
  - name: pick
    handler_config: {type: worker, queue: warehouse}
  - name: pack
    handler_class: PackHandler
    depends_on_step: pick
  - name: label
    handler_config: {type: worker}
    depends_on_step: pick
  - name: ship
    handler_class: w_sql
    depends_on_steps: [pack, label]
$$) > 0 AS needs_pack_handler;
-- PackHandler is neither registered nor a function yet: refused above.
SELECT tasker_register_handler('PackHandler', 'warehouse');
SELECT tasker_register_template($$
name: shipping
namespace_name: orders
step_templates:
  - name: pick
    handler_config: {type: worker, queue: warehouse}
  - name: pack
    handler_class: PackHandler
    depends_on_step: pick
  - name: label
    handler_config: {type: worker}
    depends_on_step: pick
  - name: ship
    handler_class: w_sql
    depends_on_steps: [pack, label]
$$) > 0 AS registered;

-- The kinds and queues the steps got: label's queue is the namespace.
SELECT tasker_create_task('shipping', '{"order": 7}', namespace => 'orders') AS task \gset
SELECT n.name, s.handler_kind, s.queue
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY n.name;

-- Nothing of another queue, nothing not yet ready.
SELECT count(*) FROM tasker_claim_steps('orders', 'w1');
-- Claim pick: an envelope with handler_class and queue, a token, a lease.
CREATE TEMP TABLE c AS SELECT * FROM tasker_claim_steps('warehouse', 'w1', 10, '1 minute');
SELECT count(*), bool_and(claim_token IS NOT NULL) AS token,
       bool_and(lease_expires_at > now() + interval '50 seconds') AS lease
  FROM c;
SELECT envelope->>'step_name' AS step, envelope->>'queue' AS queue,
       envelope->'handler_class' AS class, envelope->>'attempt' AS attempt,
       envelope->'context' AS context
  FROM c;
SELECT s.current_state, s.attempts, s.claimed_by, t.current_state AS task
  FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id), c
 WHERE s.workflow_step_id = c.step_id;
-- A second claim finds nothing: pick is taken.
SELECT count(*) FROM tasker_claim_steps('warehouse', 'w2');

-- Heartbeat, then complete; completing again with the same claim is false.
SELECT tasker_extend_lease(step_id, claim_token, '10 minutes') > now() + interval '9 minutes' AS extended FROM c;
SELECT tasker_complete_step(step_id, claim_token, '{"bin": "A3"}') FROM c;
SELECT tasker_complete_step(step_id, claim_token, '{"bin": "A3"}') FROM c;
-- A wrong token: lease lost.
SELECT tasker_complete_step(step_id, gen_random_uuid(), '{}') FROM c;
SELECT tasker_extend_lease(step_id, claim_token, '1 minute') FROM c;
SELECT results FROM tasker_workflow_steps WHERE workflow_step_id = (SELECT step_id FROM c);

-- pack (warehouse) and label (orders) are ready now, each on its queue.
DROP TABLE c;
CREATE TEMP TABLE c AS SELECT * FROM tasker_claim_steps('warehouse', 'w1');
SELECT envelope->>'step_name' AS step, envelope->>'handler_class' AS class,
       envelope->'dependencies' AS dependencies FROM c;
-- A retryable failure with a requested delay: error, retry scheduled.
SELECT tasker_fail_step(step_id, claim_token, '{"message": "scanner offline", "class": "IOError"}',
                        true, '30 seconds') FROM c;
SELECT tasker_fail_step(step_id, claim_token, '{"message": "scanner offline"}') FROM c;
SELECT s.current_state, s.attempts, s.results->'error'->>'message' AS message,
       s.results->'error'->>'class' AS class, s.backoff_request_seconds,
       s.next_attempt_at > now() + interval '25 seconds' AS delayed
  FROM tasker_workflow_steps s, c WHERE s.workflow_step_id = c.step_id;
-- Not due yet.
SELECT count(*) FROM tasker_claim_steps('warehouse', 'w1');
-- Make it due, claim it again (attempt 2), release it: attempt not counted.
UPDATE tasker_workflow_steps SET next_attempt_at = now()
 WHERE workflow_step_id = (SELECT step_id FROM c);
DROP TABLE c;
CREATE TEMP TABLE c AS SELECT * FROM tasker_claim_steps('warehouse', 'w1');
SELECT envelope->>'attempt' AS attempt FROM c;
SELECT tasker_release_step(step_id, claim_token) FROM c;
SELECT tasker_release_step(step_id, claim_token) FROM c;
SELECT current_state, attempts FROM tasker_workflow_steps WHERE workflow_step_id = (SELECT step_id FROM c);
-- The released claim is no longer current.
SELECT tasker_complete_step(step_id, claim_token, '{}') FROM c;

-- Batch completion: pack and label together, one element with a lost claim.
DROP TABLE c;
CREATE TEMP TABLE c AS
  SELECT * FROM tasker_claim_steps('warehouse', 'w1')
  UNION ALL SELECT * FROM tasker_claim_steps('orders', 'w1');
SELECT count(*) FROM c;
SELECT tasker_complete_steps(
         (SELECT jsonb_agg(jsonb_build_object(
                   'step_id', step_id, 'claim_token', claim_token,
                   'results', jsonb_build_object('done', envelope->>'step_name')))
            FROM c)
         || jsonb_build_array(jsonb_build_object(
                   'step_id', (SELECT min(step_id) FROM c),
                   'claim_token', gen_random_uuid())));
-- The same again: both recorded already, nothing recorded now.
SELECT tasker_complete_steps(jsonb_agg(jsonb_build_object(
         'step_id', step_id, 'claim_token', claim_token))) FROM c;
SELECT n.name, s.current_state, s.results
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task ORDER BY n.name;
-- ship is an SQL step: run it here; the task completes.
SELECT tasker_run_task(:task);
SELECT current_state FROM tasker_tasks WHERE task_id = :task;

-- A permanent failure fails the task.
SELECT tasker_create_task('shipping', '{"order": 8}', namespace => 'orders') AS task2 \gset
DROP TABLE c;
CREATE TEMP TABLE c AS SELECT * FROM tasker_claim_steps('warehouse', 'w1');
SELECT tasker_fail_step(step_id, claim_token, '{"message": "no such item"}', false) FROM c;
SELECT s.current_state, s.results->'error'->>'message' AS message,
       (s.results->'error'->>'permanent')::boolean AS permanent, t.current_state AS task
  FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id), c
 WHERE s.workflow_step_id = c.step_id;

-- A cancelled task takes the lease of its claimed steps.
SELECT tasker_create_task('shipping', '{"order": 9}', namespace => 'orders') AS task3 \gset
DROP TABLE c;
CREATE TEMP TABLE c AS SELECT * FROM tasker_claim_steps('warehouse', 'w1');
SELECT tasker_cancel_task(:task3);
SELECT tasker_complete_step(step_id, claim_token, '{}') FROM c;
SELECT current_state FROM tasker_workflow_steps WHERE workflow_step_id = (SELECT step_id FROM c);

-- Errors: unknown step, a step of another kind, NULLs, bad arguments.
SELECT tasker_complete_step(-1, gen_random_uuid(), '{}');
SELECT tasker_complete_step(s.workflow_step_id, gen_random_uuid(), '{}')
  FROM tasker_workflow_steps s JOIN tasker_named_steps n USING (named_step_id)
 WHERE s.task_id = :task AND n.name = 'ship';
SELECT tasker_complete_step(NULL, gen_random_uuid(), '{}');
SELECT tasker_fail_step(1, gen_random_uuid(), '"just a string"');
SELECT * FROM tasker_claim_steps(NULL, 'w1');
SELECT * FROM tasker_claim_steps('warehouse', 'w1', 0);
SELECT * FROM tasker_claim_steps('warehouse', 'w1', 10, '0 seconds');
SELECT * FROM tasker_claim_steps('warehouse', 'w1', 10, '1 minute', '2 hours');
SELECT tasker_complete_steps('{"step_id": 1}');
SELECT tasker_complete_steps('[{"claim_token": "00000000-0000-0000-0000-000000000000"}]');
SELECT tasker_complete_steps('[]');
SELECT tasker_register_handler('', 'q');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM tasker_claim_steps('warehouse', 'w1', 10, '1 minute', '1 second');
ROLLBACK;
-- A wait with nothing to claim returns empty when the wait is over.
SELECT count(*) FROM tasker_claim_steps('nothing-here', 'w1', 10, '1 minute', '200 milliseconds');

-- The transitions of a released step: in_progress -> pending is allowed.
SELECT * FROM tasker_allowed_transitions('step') WHERE from_state = 'in_progress' ORDER BY 1, 2;
