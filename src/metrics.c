/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		tasker_metrics() and tasker_metrics_prometheus(): tasker's counters
 *		and gauges, as rows and in the Prometheus text exposition format.
 *
 * Counters come from shared memory (shmem.c), where the engine counts
 * what committed: reading them costs no table access, and they start
 * again at zero when the server restarts (Prometheus' rate() and
 * increase() handle such resets).  Gauges are read when asked, each
 * cheaply: the executors' slots and the HTTP requests in flight from
 * shared memory; the ready backlog (counted through the ready index, up
 * to TASKER_METRICS_READY_CAP per kind), the oldest ready step (the first
 * entry of the ready index per kind) and the leased steps in progress
 * (through the lease index) with one statement, run as the extension's
 * owner (security.c) in the caller's transaction.
 *
 * Under namespace isolation (tasker.namespace_isolation), a role that
 * does not see every namespace gets only the gauges of its namespaces'
 * steps and the executors' gauges (collect()).
 *
 * One table (families) names every metric family, with its type and
 * help text; samples are collected in that order, so both functions
 * return the same samples, and the text format keeps each family's
 * samples together after its # HELP and # TYPE lines.  Names follow the
 * Prometheus conventions: a tasker_ prefix, _total for counters, base
 * units (seconds) in the name.
 *
 * IDENTIFICATION
 *		src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <signal.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "http_limits.h"
#include "security.h"
#include "shmem.h"
#include "spi_util.h"
#include "step.h"

/* The most ready steps counted per handler kind. */
#define TASKER_METRICS_READY_CAP 10000

PG_FUNCTION_INFO_V1(tasker_metrics_sql);
PG_FUNCTION_INFO_V1(tasker_metrics_prometheus_sql);

/* The metric families, in the order they are reported. */
typedef enum MetricFamilyId
{
	F_TASKS_CREATED = 0,
	F_TASKS_COMPLETED,
	F_TASKS_FAILED,
	F_TASKS_CANCELLED,
	F_ATTEMPTS,
	F_RETRIES,
	F_DURATION,
	F_HTTP_REQUESTS,
	F_WORKER_CLAIMS,
	F_LOST_LEASES,
	F_READY,
	F_OLDEST_READY,
	F_IN_PROGRESS,
	F_HTTP_IN_FLIGHT,
	F_WORKERS_ALIVE,
	F_WORKERS_MAX,
	NUM_FAMILIES
} MetricFamilyId;

typedef struct MetricFamily
{
	const char *name;
	const char *type;
	const char *help;
} MetricFamily;

static const MetricFamily families[NUM_FAMILIES] = {
	[F_TASKS_CREATED] = {"tasker_tasks_created_total", "counter",
	"Tasks created"},
	[F_TASKS_COMPLETED] = {"tasker_tasks_completed_total", "counter",
	"Task transitions to complete"},
	[F_TASKS_FAILED] = {"tasker_tasks_failed_total", "counter",
	"Task transitions to error"},
	[F_TASKS_CANCELLED] = {"tasker_tasks_cancelled_total", "counter",
	"Task transitions to cancelled"},
	[F_ATTEMPTS] = {"tasker_step_attempts_total", "counter",
	"Step attempts that ended, by handler kind and outcome (complete, retry, failed, quarantined, cancelled)"},
	[F_RETRIES] = {"tasker_step_retries_total", "counter",
	"Step attempts started after a failed one (attempt 2 and later), by handler kind"},
	[F_DURATION] = {"tasker_step_duration_seconds", "histogram",
	"Run time of step attempts that ended (all outcomes but cancelled), from the attempt's start to its outcome, by handler kind"},
	[F_HTTP_REQUESTS] = {"tasker_http_requests_total", "counter",
	"HTTP requests of api steps that ended, by the class of their answer (2xx, 3xx, 4xx, 5xx, error, timeout)"},
	[F_WORKER_CLAIMS] = {"tasker_worker_claims_total", "counter",
	"Steps claimed by external workers (tasker_claim_steps)"},
	[F_LOST_LEASES] = {"tasker_lost_leases_total", "counter",
	"Leased steps reclaimed after their lease expired, by handler kind (a worker's later report of such a claim raises TK003)"},
	[F_READY] = {"tasker_ready_steps", "gauge",
	"Steps ready to run now, by handler kind, counted up to 10000"},
	[F_OLDEST_READY] = {"tasker_oldest_ready_step_age_seconds", "gauge",
	"Seconds since the oldest ready step became due, by handler kind (0 when none is ready)"},
	[F_IN_PROGRESS] = {"tasker_steps_in_progress", "gauge",
	"Leased steps in progress (HTTP requests and external workers' claims), by handler kind; an sql step is in progress only inside its batch's transaction, so sql reads 0"},
	[F_HTTP_IN_FLIGHT] = {"tasker_http_requests_in_flight", "gauge",
	"HTTP requests the executors have in flight now"},
	[F_WORKERS_ALIVE] = {"tasker_workers_alive", "gauge",
	"Executor processes running"},
	[F_WORKERS_MAX] = {"tasker_workers_max", "gauge",
	"Executor slots (tasker.max_workers when the server started); 0 when tasker is not in shared_preload_libraries, and then every counter reads 0"},
};

/* One sample: a family, a suffix of its name, up to two labels, a value. */
typedef struct MetricSample
{
	MetricFamilyId family;
	const char *suffix;			/* "", "_bucket", "_sum" or "_count" */
	const char *keys[2];		/* NULL: no label */
	const char *values[2];
	double		value;
} MetricSample;

typedef struct MetricSamples
{
	MetricSample *items;
	int			n;
	int			max;
} MetricSamples;

/* What the gauges statement returns for one handler kind. */
typedef struct KindGauges
{
	double		ready;
	double		oldest_age;
	double		in_progress;
} KindGauges;

/*
 * The gauges statement, in two forms: for every namespace, and (under
 * namespace isolation, for a role that does not see them all) for the
 * steps of the namespaces granted to the role $1, as the row-level
 * security policy of tasker_tasks grants them.
 */
#define GAUGE_TASK_FILTER \
	" AND t.named_task_id IN (SELECT nt.named_task_id" \
	"       FROM @extschema@.tasker_named_tasks nt" \
	"       JOIN @extschema@.tasker_task_namespaces ns" \
	"         ON ns.task_namespace_id = nt.task_namespace_id" \
	"       JOIN @extschema@.tasker_namespace_grants g ON g.namespace = ns.name::text" \
	"      WHERE pg_catalog.pg_has_role($1, g.grantee::oid, 'USAGE'))"
#define GAUGES_SQL(filter) \
	"SELECT k.kind," \
	"  (SELECT count(*) FROM (SELECT 1 FROM @extschema@.tasker_workflow_steps s" \
	"      JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id" \
	"     WHERE s.handler_kind = k.kind AND " TASKER_READY_STEP_SQL \
	"       AND s.next_attempt_at <= now()" \
	"       AND t.current_state IN ('pending', 'in_progress')" filter \
	"     LIMIT " CppAsString2(TASKER_METRICS_READY_CAP) ") r)::float8," \
	"  COALESCE((SELECT extract(epoch FROM now() - s.next_attempt_at)" \
	"      FROM @extschema@.tasker_workflow_steps s" \
	"      JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id" \
	"     WHERE s.handler_kind = k.kind AND " TASKER_READY_STEP_SQL \
	"       AND s.next_attempt_at <= now()" \
	"       AND t.current_state IN ('pending', 'in_progress')" filter \
	"     ORDER BY s.next_attempt_at LIMIT 1), 0)::float8," \
	"  (SELECT count(*) FROM @extschema@.tasker_workflow_steps s" \
	"      JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id" \
	"     WHERE s.lease_expires_at IS NOT NULL AND s.current_state = 'in_progress'" \
	"       AND s.handler_kind = k.kind" filter ")::float8" \
	"  FROM unnest(ARRAY['sql', 'http', 'worker']) AS k(kind)"

static SPIPlanPtr gauges_plan;
static SPIPlanPtr scoped_gauges_plan;

/*
 * add_sample: append a sample with up to two labels (k2 NULL: one; k1
 * NULL: none).
 */
static void
add_sample(MetricSamples *s, MetricFamilyId family, const char *suffix,
		   double value, const char *k1, const char *v1,
		   const char *k2, const char *v2)
{
	MetricSample *m;

	if (s->n == s->max)
	{
		s->max = Max(64, s->max * 2);
		s->items = s->items == NULL ? palloc(s->max * sizeof(MetricSample)) :
			repalloc(s->items, s->max * sizeof(MetricSample));
	}
	m = &s->items[s->n++];
	m->family = family;
	m->suffix = suffix;
	m->keys[0] = k1;
	m->values[0] = v1;
	m->keys[1] = k2;
	m->values[1] = v2;
	m->value = value;
}

/*
 * format_number: a value as the text format writes it: whole numbers
 * without a fraction, others in the shortest form that reads back exactly.
 */
static char *
format_number(double v)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(v))
		return pstrdup("NaN");
	if (isinf(v))
		return pstrdup(v > 0 ? "+Inf" : "-Inf");
	if (v == floor(v) && fabs(v) < 1e15)
		return psprintf("%.0f", v);
	double_to_shortest_decimal_buf(v, buf);
	return pstrdup(buf);
}

/*
 * add_histogram: the samples of one kind's step duration histogram:
 * cumulative buckets up to +Inf, then _sum (seconds) and _count.
 */
static void
add_histogram(MetricSamples *s, const TaskerCounts *c, TaskerStepKind k)
{
	const char *kind = tasker_step_kind_name(k);
	uint64		total = 0;
	int			b;

	for (b = 0; b <= TASKER_NUM_DURATION_BOUNDS; b++)
	{
		total += c->duration_buckets[k][b];
		add_sample(s, F_DURATION, "_bucket", (double) total, "kind", kind, "le",
				   b < TASKER_NUM_DURATION_BOUNDS ?
				   format_number(tasker_duration_bounds[b]) : "+Inf");
	}
	add_sample(s, F_DURATION, "_sum", (double) c->duration_sum_us[k] / 1000000.0,
			   "kind", kind, NULL, NULL);
	add_sample(s, F_DURATION, "_count", (double) total, "kind", kind, NULL, NULL);
}

/*
 * add_counters: the counters of shared memory (zeros without the preload).
 */
static void
add_counters(MetricSamples *s)
{
	TaskerCounts c;
	int			k;
	int			o;

	(void) tasker_read_counts(&c);
	add_sample(s, F_TASKS_CREATED, "", c.tasks[TASKER_TASKS_CREATED], NULL, NULL, NULL, NULL);
	add_sample(s, F_TASKS_COMPLETED, "", c.tasks[TASKER_TASKS_COMPLETED], NULL, NULL, NULL, NULL);
	add_sample(s, F_TASKS_FAILED, "", c.tasks[TASKER_TASKS_FAILED], NULL, NULL, NULL, NULL);
	add_sample(s, F_TASKS_CANCELLED, "", c.tasks[TASKER_TASKS_CANCELLED], NULL, NULL, NULL, NULL);
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		for (o = 0; o < TASKER_NUM_ATTEMPT_OUTCOMES; o++)
			add_sample(s, F_ATTEMPTS, "", c.attempts[k][o],
					   "kind", tasker_step_kind_name(k),
					   "outcome", tasker_attempt_outcome_name(o));
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		add_sample(s, F_RETRIES, "", c.retries[k], "kind", tasker_step_kind_name(k), NULL, NULL);
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		add_histogram(s, &c, k);
	for (k = 0; k < TASKER_NUM_HTTP_CLASSES; k++)
		add_sample(s, F_HTTP_REQUESTS, "", c.http[k], "class", tasker_http_class_name(k), NULL, NULL);
	add_sample(s, F_WORKER_CLAIMS, "", c.worker_claims[0], NULL, NULL, NULL, NULL);
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		add_sample(s, F_LOST_LEASES, "", c.lost_leases[k], "kind", tasker_step_kind_name(k), NULL, NULL);
}

/*
 * read_kind_gauges: the ready backlog, the oldest ready step's age and the
 * leased steps in progress, per handler kind, in one statement: each
 * figure reads an index (the ready index, bounded; its first entry; the
 * lease index, which holds only steps in progress).  Ready means what the
 * executors would claim: the ready index's predicate, due, of a pending or
 * in_progress task (as tasker_health counts it).  Runs as the
 * extension's owner; scope_role, when valid, keeps the steps of the
 * namespaces granted to that role.
 */
static void
read_kind_gauges(KindGauges *out, Oid scope_role)
{
	TaskerApiScope scope;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	uint64		i;
	bool		isnull;
	SPIPlanPtr	plan;

	memset(out, 0, sizeof(KindGauges) * TASKER_NUM_STEP_KINDS);
	tasker_api_enter(&scope);
	SPI_connect();
	values[0] = ObjectIdGetDatum(scope_role);
	if (OidIsValid(scope_role))
		plan = tasker_keep_plan(&scoped_gauges_plan,
								GAUGES_SQL(GAUGE_TASK_FILTER), 1, argtypes);
	else
		plan = tasker_keep_plan(&gauges_plan, GAUGES_SQL(""), 0, NULL);
	tasker_run_plan(plan, OidIsValid(scope_role) ? values : NULL, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		int			k = tasker_step_kind(SPI_getvalue(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 1));

		if (k < 0)
			continue;
		out[k].ready = DatumGetFloat8(tasker_col(i, 2, &isnull));
		out[k].oldest_age = DatumGetFloat8(tasker_col(i, 3, &isnull));
		out[k].in_progress = DatumGetFloat8(tasker_col(i, 4, &isnull));
	}
	SPI_finish();
	tasker_api_leave(&scope);
}

/*
 * workers_alive: the executor slots held by a live process.
 */
static int
workers_alive(void)
{
	TaskerWorkerSlot slots[TASKER_MAX_SLOTS];
	pid_t		launcher;
	int			n = tasker_worker_slots(slots, TASKER_MAX_SLOTS, &launcher);
	int			alive = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (slots[i].pid != 0 && kill(slots[i].pid, 0) == 0)
			alive++;
	return alive;
}

/*
 * add_gauges: the gauges, from the tables and from shared memory.
 */
static void
add_gauges(MetricSamples *s, Oid scope_role)
{
	KindGauges g[TASKER_NUM_STEP_KINDS];
	int			k;

	read_kind_gauges(g, scope_role);
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		add_sample(s, F_READY, "", g[k].ready, "kind", tasker_step_kind_name(k), NULL, NULL);
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		add_sample(s, F_OLDEST_READY, "", g[k].oldest_age, "kind", tasker_step_kind_name(k), NULL, NULL);
	for (k = 0; k < TASKER_NUM_STEP_KINDS; k++)
		add_sample(s, F_IN_PROGRESS, "", g[k].in_progress,
				   "kind", tasker_step_kind_name(k), NULL, NULL);
	if (!OidIsValid(scope_role))
		add_sample(s, F_HTTP_IN_FLIGHT, "", http_in_flight(), NULL, NULL, NULL, NULL);
	add_sample(s, F_WORKERS_ALIVE, "", workers_alive(), NULL, NULL, NULL, NULL);
	add_sample(s, F_WORKERS_MAX, "", tasker_slot_count(), NULL, NULL, NULL, NULL);
}

/*
 * collect: every sample, in family order.  Under namespace isolation, a
 * caller who does not see every namespace (security.c) gets the gauges of
 * the steps of its namespaces and the executors' gauges only: the
 * counters and the HTTP requests in flight are kept for the whole server,
 * not per namespace, so they would tell of other tenants' work.
 */
static MetricSamples *
collect(void)
{
	MetricSamples *s = palloc0(sizeof(MetricSamples));
	Oid			caller = tasker_caller();
	Oid			scope_role = tasker_sees_all_namespaces(caller) ? InvalidOid : caller;

	if (!OidIsValid(scope_role))
		add_counters(s);
	add_gauges(s, scope_role);
	return s;
}

/*
 * labels_jsonb: a sample's labels as a jsonb object ({} for none).
 */
static Datum
labels_jsonb(const MetricSample *m)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < 2 && m->keys[i] != NULL; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, m->keys[i]);
		appendStringInfoString(&buf, ": ");
		escape_json(&buf, m->values[i]);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * tasker_metrics(): one row per sample: the sample's name (the family's,
 * with _bucket, _sum or _count for a histogram), its labels, its value.
 */
Datum
tasker_metrics_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MetricSamples *s;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	s = collect();
	for (i = 0; i < s->n; i++)
	{
		MetricSample *m = &s->items[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = CStringGetTextDatum(psprintf("%s%s", families[m->family].name, m->suffix));
		values[1] = labels_jsonb(m);
		values[2] = Float8GetDatum(m->value);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * append_escaped: text with the escapes of the text format: backslash
 * and newline, and the double quote too in a label value.
 */
static void
append_escaped(StringInfo buf, const char *text, bool quote)
{
	const char *p;

	for (p = text; *p; p++)
	{
		if (*p == '\\')
			appendStringInfoString(buf, "\\\\");
		else if (*p == '\n')
			appendStringInfoString(buf, "\\n");
		else if (*p == '"' && quote)
			appendStringInfoString(buf, "\\\"");
		else
			appendStringInfoChar(buf, *p);
	}
}

/*
 * append_sample: one sample line: name{label="value",...} value.
 */
static void
append_sample(StringInfo buf, const MetricSample *m)
{
	int			i;

	appendStringInfo(buf, "%s%s", families[m->family].name, m->suffix);
	for (i = 0; i < 2 && m->keys[i] != NULL; i++)
	{
		appendStringInfo(buf, "%s%s=\"", i == 0 ? "{" : ",", m->keys[i]);
		append_escaped(buf, m->values[i], true);
		appendStringInfoChar(buf, '"');
	}
	appendStringInfo(buf, "%s %s\n", m->keys[0] != NULL ? "}" : "",
					 format_number(m->value));
}

/*
 * tasker_metrics_prometheus(): the samples of tasker_metrics() in the
 * Prometheus text exposition format (version 0.0.4): each family's
 * # HELP and # TYPE lines, then its samples.
 */
Datum
tasker_metrics_prometheus_sql(PG_FUNCTION_ARGS)
{
	MetricSamples *s = collect();
	StringInfoData buf;
	int			f;
	int			i;

	initStringInfo(&buf);
	for (f = 0; f < NUM_FAMILIES; f++)
	{
		appendStringInfo(&buf, "# HELP %s ", families[f].name);
		append_escaped(&buf, families[f].help, false);
		appendStringInfo(&buf, "\n# TYPE %s %s\n", families[f].name, families[f].type);
		for (i = 0; i < s->n; i++)
			if (s->items[i].family == (MetricFamilyId) f)
				append_sample(&buf, &s->items[i]);
	}
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}
