#!/usr/bin/env bash
# bench/engine.sh: reproducible measurements of the execution engine.
#   1. task creation: a 9-step mixed template created by pgbench, workers
#      paused (server time per task and per step);
#   2. throughput: 2,000 tasks of a 5-step linear workflow with trivial SQL
#      handlers, created while the workers are paused, then run; steps/s;
#   3. latency: 100 single-step tasks, one at a time on an idle server: the
#      time from the commit that created the task (its commit timestamp) to
#      its task.completed transition (median, p90), on the server's clock;
#   4. a profile: the statements the engine ran during (2), by total time,
#      from pg_stat_statements (track = all).
# Usage: bench/engine.sh   (as root on Debian 12; installs what is missing)
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"

PORT=${TASKER_BENCH_PORT:-54349}
TASKS=${TASKS:-2000}
tasker_setup
tasker_workdir
cluster_start bench $PORT "shared_preload_libraries = 'tasker,pg_stat_statements'" \
	"tasker.database_name = 'postgres'" "tasker.max_workers = 2" "tasker.batch_size = ${BATCH:-50}" \
	"pg_stat_statements.track = all" "synchronous_commit = on" \
	"shared_buffers = '512MB'" "max_wal_size = '4GB'" "track_commit_timestamp = on"
cp -r "$TASKER_ROOT/test/fixtures" "$WORK/fixtures"
chown -R postgres: "$WORK/fixtures"
psqlb() { pgsql $PORT -d postgres -qAt "$@"; }

psqlb -c "CREATE EXTENSION tasker" -c "CREATE EXTENSION pg_stat_statements"
psqlb -f "$WORK/fixtures/shapes.sql" >/dev/null
psqlb <<'SQL'
CREATE FUNCTION trivial(step jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"ok": true}'::jsonb $$;
SELECT tasker_register_template($y$
name: linear5
step_templates:
  - {name: s1, handler_class: trivial}
  - {name: s2, handler_class: trivial, depends_on_step: s1}
  - {name: s3, handler_class: trivial, depends_on_step: s2}
  - {name: s4, handler_class: trivial, depends_on_step: s3}
  - {name: s5, handler_class: trivial, depends_on_step: s4}
$y$);
SELECT tasker_register_template($y$
name: single
step_templates:
  - {name: only, handler_class: trivial}
$y$);
SQL

echo "== machine"
echo "   $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "   $(psqlb -c 'SELECT version()')"

pause() {
	psqlb -c "ALTER SYSTEM SET tasker.enabled = $1" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1.2
}

echo "== 1. task creation (9-step mixed template, workers paused, pgbench 1 client, 10 s)"
pause off
echo "SELECT tasker_create_task('mixed_workflow', '{\"n\": 1}', namespace => 'shapes');" >"$WORK/create.sql"
chown postgres: "$WORK/create.sql"
as_pg "$PG_BIN/pgbench" -h "$WORK" -p $PORT -n -c 1 -T 10 -f "$WORK/create.sql" postgres 2>/dev/null |
	grep -E "latency average|tps" | sed 's/^/   /'
lat=$(as_pg "$PG_BIN/pgbench" -h "$WORK" -p $PORT -n -c 1 -t 2000 -f "$WORK/create.sql" postgres 2>/dev/null |
	awk '/latency average/ {print $4}')
echo "   second run, 2000 tasks: $lat ms per task = $(awk -v l="$lat" 'BEGIN { printf "%.4f", l / 9 }') ms per step (client round trip included)"
psqlb -c "TRUNCATE tasker_tasks CASCADE" >/dev/null

echo "== 2. throughput ($TASKS tasks x 5-step linear, trivial SQL handlers, 2 workers)"
psqlb -c "SELECT count(tasker_create_task('linear5', jsonb_build_object('i', i))) FROM generate_series(1, $TASKS) i" >/dev/null
psqlb -c "SELECT pg_stat_statements_reset()" >/dev/null
start=$(date +%s.%N)
pause on
while [ "$(psqlb -c "SELECT count(*) FROM tasker_tasks WHERE current_state <> 'complete'")" != 0 ]; do
	sleep 0.2
done
end=$(date +%s.%N)
psqlb <<SQL
SELECT '   server time, first step start to last task completion: ' ||
       round(extract(epoch FROM max(completed_at) - min(s.last_attempted_at))::numeric, 2) || ' s, ' ||
       round(count(*) / extract(epoch FROM max(completed_at) - min(s.last_attempted_at))::numeric) || ' steps/s'
  FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id);
SQL
echo "   wall clock incl. 1.2 s reload wait and polling: $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s"

echo "== 4. profile of (2): engine statements by total time (pg_stat_statements)"
psqlb -F ' | ' <<'SQL'
SELECT round(total_exec_time::numeric, 0) || ' ms', calls,
       round((total_exec_time / calls)::numeric, 3) || ' ms/call',
       left(regexp_replace(query, '\s+', ' ', 'g'), 90)
  FROM pg_stat_statements
 WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'SELECT count(*) FROM tasker_tasks%'
 ORDER BY total_exec_time DESC LIMIT 12;
SQL

echo "== 3. latency (100 single-step tasks, one at a time, idle server)"
psqlb -c "TRUNCATE tasker_tasks CASCADE" >/dev/null
# The row in bench_created shares the creating transaction, so its commit
# timestamp is the moment the task became visible.
psqlb -c "CREATE TABLE bench_created (task_id bigint)" >/dev/null
for i in $(seq 1 100); do
	t=$(psqlb -c "INSERT INTO bench_created SELECT tasker_create_task('single', '{}') RETURNING task_id")
	psqlb -c "SELECT tasker_wait_for_task($t, '10 seconds')" >/dev/null
done
psqlb <<'SQL'
SELECT '   create commit -> task.completed (from the creating commit): median ' ||
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 2) || ' ms, p90 ' ||
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY ms))::numeric, 2) || ' ms, max ' ||
       round(max(ms)::numeric, 2) || ' ms'
  FROM (SELECT extract(epoch FROM tr.created_at - pg_xact_commit_timestamp(b.xmin)) * 1000 AS ms
          FROM bench_created b
          JOIN tasker_task_transitions tr ON tr.task_id = b.task_id AND tr.to_state = 'complete') x;
SQL
