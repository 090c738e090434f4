EXTENSION = tasker
EXTVERSION = 0.2.0

MODULE_big = tasker
OBJS = \
	src/tasker.o \
	src/guc.o \
	src/state.o \
	src/flow_rules.o \
	src/flow.o \
	src/pause.o \
	src/events.o \
	src/notify.o \
	src/event_log.o \
	src/subscribers.o \
	src/event_worker.o \
	src/shmem.o \
	src/bgw.o \
	src/semver.o \
	src/trace.o \
	src/spi_util.o \
	src/security.o \
	src/task.o \
	src/dag.o \
	src/claim_wait.o \
	src/handler.o \
	src/handler_worker.o \
	src/handler_sql.o \
	src/http_limits.o \
	src/http_request.o \
	src/http_outcome.o \
	src/http_multi.o \
	src/http_steps.o \
	src/http_preview.o \
	src/handler_http.o \
	src/step.o \
	src/control.o \
	src/worker.o \
	src/jsonschema.o \
	src/yaml_reader.o \
	src/template.o \
	src/template_check.o \
	src/template_store.o \
	src/handler_registry.o \
	src/metrics.o \
	src/annotation.o \
	src/backlog.o \
	src/retention.o \
	src/cron.o \
	src/schedule.o \
	src/priority.o \
	src/concurrency.o \
	src/rate_limit.o \
	src/api.o \
	src/sanitize.o

# Released install scripts are never edited.  Each later version's install
# script is built: the first release's script followed by every upgrade
# script in order, so a fresh install and an upgraded one are the same by
# construction (the server drops the \\echo guard lines of each part).
DATA = sql/$(EXTENSION)--0.1.0.sql sql/$(EXTENSION)--0.1.0--0.2.0.sql
# The router extension of scale-out (docs/scale-out.md) installs with
# tasker: PL/pgSQL and PL/Proxy only, no library of its own.
DATA += contrib/tasker_proxy/tasker_proxy.control contrib/tasker_proxy/tasker_proxy--0.2.0.sql
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql
UPGRADES = sql/$(EXTENSION)--0.1.0--0.2.0.sql

# The numbered list is the schedule: pg_regress runs the files in this order.
REGRESS = \
	001_install \
	002_state_walk \
	010_template_errors \
	011_template_fuzz \
	012_template_input \
	020_json_schema \
	030_run_task \
	040_failures \
	041_http_preview \
	042_stuck_tasks \
	050_controls_by_name \
	060_worker_protocol \
	080_observability_graph \
	081_observability_analytics \
	090_event_log \
	090_annotations \
	091_purge \
	092_schedules_without_cron \
	093_shard

# Isolation specs (test/isolation/specs): concurrent claims; controls
# racing batches (lock order, issue 15 C16).
ISOLATION = claims control_cancel_step control_cancel_retry control_resolve_run worker_claims
ISOLATION_OPTS = --inputdir=test/isolation

PG_CONFIG ?= pg_config

PG_CPPFLAGS += -I$(srcdir)/src -DTASKER_EXTVERSION='"$(EXTVERSION)"' $(shell pkg-config --cflags yaml-0.1 libcurl)
SHLIB_LINK += $(shell pkg-config --libs yaml-0.1 libcurl)

# test/run builds with TASKER_WERROR=1
ifdef TASKER_WERROR
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror
endif

# test/run --sanitize builds with AddressSanitizer and UndefinedBehavior-
# Sanitizer (TASKER_SANITIZE=1).  The ASan runtime loads with tasker.so,
# so it cannot intercept PostgreSQL's siglongjmp (ereport): stack redzones
# would stay poisoned after an error and report false overflows, hence
# --param asan-stack=0.  Not for production: see README, "Development and
# tests".
ifdef TASKER_SANITIZE
PG_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer --param asan-stack=0
PG_CPPFLAGS += -DTASKER_SANITIZE_LOG='"$(TASKER_SANITIZE_LOG)"'
SHLIB_LINK += -fsanitize=address,undefined
TASKER_SANITIZE_LOG ?= /tmp/tasker-sanitizer
endif

EXTRA_CLEAN = results regression.diffs regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: sql/$(EXTENSION)--0.1.0.sql $(UPGRADES)
	cat $^ > $@

# PGXS tracks no header dependencies: rebuild every object when a header
# changes.
$(OBJS): $(wildcard src/*.h)

# pgTAP suites (test/pgtap/*.sql) against the server named by PGHOST/PGPORT.
.PHONY: pgtap
pgtap:
	pg_prove --verbose --failures test/pgtap/*.sql
