#!/usr/bin/env bash
# bench/http_bench.sh: HTTP steps per second against a local stub server
# (test/http_stub.py on 127.0.0.1) that answers at once, with
# tasker.http_max_concurrency 1 and 64.
#
#   bench/http_bench.sh            # N=2000 tasks per run
#   N=5000 bench/http_bench.sh
#
# Each run creates N tasks of one api step (GET /json) in one transaction
# and times them from the first task's creation to the last step's
# completion (the steps' own timestamps, not the polling).  The per-host
# limit is raised to the concurrency, since every request goes to one host.
# Runs on a throwaway cluster with the default two workers; prints one line
# per concurrency.
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"

N=${N:-2000}
PORT=${TASKER_BENCH_PORT:-54349}
tasker_setup
tasker_workdir
cluster_start bench $PORT "shared_preload_libraries = 'tasker'" \
	"tasker.database_name = 'postgres'"

python3 "$TASKER_ROOT/test/http_stub.py" "$WORK/stub.port" >/dev/null 2>&1 &
stub=$!
trap 'kill $stub 2>/dev/null; tasker_cleanup' EXIT
for _ in $(seq 50); do [ -s "$WORK/stub.port" ] && break; sleep 0.1; done
stub_port=$(cat "$WORK/stub.port")

pgsql $PORT -q -d postgres <<SQL
CREATE EXTENSION tasker;
SELECT tasker_register_template(\$y\$
name: http_bench
step_templates:
  - {name: call, handler_config: {type: api, url: 'http://127.0.0.1:$stub_port/json', method: GET}}
\$y\$) \\g /dev/null
SQL
# Installed and created: let other runs of test/run proceed meanwhile.
flock -u 9

echo "== $N HTTP steps per run, stub on 127.0.0.1:$stub_port, $(nproc) cores, $(pgsql $PORT -qAt -d postgres -c 'SHOW server_version')"
for conc in 1 64; do
	pgsql $PORT -q -d postgres <<SQL
ALTER SYSTEM SET tasker.http_max_concurrency = $conc;
ALTER SYSTEM SET tasker.http_max_per_host = $conc;
SELECT pg_reload_conf() \\g /dev/null
TRUNCATE tasker_tasks CASCADE;
SQL
	sleep 1
	pgsql $PORT -q -d postgres -c \
		"SELECT count(tasker_create_task('http_bench', jsonb_build_object('i', i))) FROM generate_series(1, $N) i" >/dev/null
	for _ in $(seq 1200); do
		left=$(pgsql $PORT -qAt -d postgres -c \
			"SELECT count(*) FROM tasker_tasks WHERE current_state <> 'complete'")
		[ "$left" = 0 ] && break
		sleep 0.5
	done
	pgsql $PORT -qAt -d postgres -F ' ' <<SQL
SELECT 'http_max_concurrency=$conc',
       count(*) AS steps,
       round(extract(epoch FROM max(s.processed_at) - min(t.created_at))::numeric, 2) AS seconds,
       round(count(*) / extract(epoch FROM max(s.processed_at) - min(t.created_at))::numeric) AS steps_per_s,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY (s.results->>'elapsed_ms')::float)::numeric, 1) AS p50_request_ms
  FROM tasker_workflow_steps s JOIN tasker_tasks t USING (task_id)
 WHERE s.current_state = 'complete';
SQL
done
pgsql $PORT -q -d postgres -c "SELECT * FROM tasker_http_stats() WHERE requests > 0"
