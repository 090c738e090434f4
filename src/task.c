/*-------------------------------------------------------------------------
 *
 * task.c
 *		Task creation: template resolution, context validation, and the
 *		task, its steps and its edges written in one transaction.
 *
 * tasker_create_task() runs in the caller's transaction.  It resolves the
 * template (a NULL version means the highest released semantic version, or
 * the highest pre-release when there is no release), validates
 * the context against the template's JSON Schema, and inserts the task, one
 * step per step template and one edge per dependency with set-based
 * statements, so the cost per step is a few index insertions.  The edges
 * are resolved from step names to step ids through hash tables in C, not
 * by a join, so creation is linear in the template's size whatever plan
 * the server would pick and however many tasks exist.  Each step
 * starts pending with unfinished_parents set to its number of parents and
 * next_attempt_at set, so root steps are in the ready-steps index at once.
 *
 * Two rules of issue 11 apply at creation: admission control (backlog.c)
 * refuses a new task while the ready backlog is over
 * tasker.max_ready_backlog, and adds the new task's ready steps to the
 * gauge at commit; a task's priority (priority.c) is stored on the task
 * and copied to its steps, whose claim_key a trigger derives from it.
 *
 * Each task created on the current schema joins a W3C trace (trace.c):
 * the traceparent argument's, else the context's traceparent key's, else
 * a new one; a bad traceparent is refused before anything is written.
 *
 * identity_key makes creation idempotent: the task row is inserted with
 * ON CONFLICT DO NOTHING on identity_hash, so a second create with the same
 * key (even a concurrent one, which waits for the first to commit) returns
 * the first task's id and creates nothing.  The hash encodes namespace,
 * name and key unambiguously; rows hashed by 0.1.0 are still found.
 *
 * IDENTIFICATION
 *		src/task.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

#include "spi_util.h"
#include "backlog.h"
#include "concurrency.h"
#include "events.h"
#include "jsonschema.h"
#include "security.h"
#include "semver.h"
#include "state.h"
#include "guc.h"
#include "handler.h"
#include "priority.h"
#include "shmem.h"
#include "step.h"
#include "task.h"
#include "trace.h"

static SPIPlanPtr versions_plan;
static SPIPlanPtr names_plan;
static SPIPlanPtr insert_task_plan;
static SPIPlanPtr insert_task_010_plan;
static SPIPlanPtr existing_task_plan;
static SPIPlanPtr parent_step_plan;
static SPIPlanPtr ns_paused_plan;
static SPIPlanPtr legacy_task_plan;
static SPIPlanPtr insert_steps_plan;
static SPIPlanPtr insert_steps_010_plan;
static SPIPlanPtr insert_edges_plan;
static SPIPlanPtr template_steps_plan;
static SPIPlanPtr bypass_plan;
static SPIPlanPtr priority_plan;

/* The template a request resolved to. */
typedef struct ResolvedTemplate
{
	int32		named_task_id;
	char	   *version;
	Jsonb	   *schema;			/* NULL when the template has none */
	Jsonb	   *concurrency;	/* NULL when the template has none */
} ResolvedTemplate;

/*
 * template_names: a comma-separated list of the templates registered in a
 * namespace (NULL when there is none), for the hint of an unknown name.
 */
static char *
template_names(const char *namespace)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(namespace)};

	tasker_keep_plan(&names_plan,
			  "SELECT string_agg(DISTINCT nt.name, ', ' ORDER BY nt.name)"
			  "  FROM @extschema@.tasker_named_tasks nt"
			  "  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id"
			  " WHERE ns.name = $1",
			  1, argtypes);
	(void) tasker_run_plan(names_plan, values, NULL, SPI_OK_SELECT);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * version_list: the versions in the current result (column 2), comma
 * separated, for the detail of an unknown version.
 */
static char *
version_list(void)
{
	StringInfoData buf;
	uint64		i;

	initStringInfo(&buf);
	for (i = 0; i < SPI_processed; i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
	return buf.data;
}

/*
 * newer_default: whether version a is preferred over b when no version is
 * asked for: releases over pre-releases, then the higher semantic version.
 * So 1.10.0 wins over 1.9.0 and over 2.0.0-beta.1, and a pre-release is
 * picked only when the name has no release at all.
 */
static bool
newer_default(const char *a, const char *b)
{
	bool		a_release = tasker_semver_is_release(a);
	bool		b_release = tasker_semver_is_release(b);

	if (a_release != b_release)
		return a_release;
	return tasker_semver_compare(a, b) > 0;
}

/* The versions of a template, with its concurrency (column) when the schema has it. */
#define VERSIONS_SQL(concurrency) \
	"SELECT nt.named_task_id, nt.version::text, nt.context_schema, " concurrency \
	"  FROM @extschema@.tasker_named_tasks nt" \
	"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	" WHERE ns.name = $1 AND nt.name = $2" \
	" ORDER BY nt.named_task_id"

/*
 * resolve_template: find the template (namespace, name, version), where a
 * NULL version picks the highest semantic version.  Raises UNDEFINED_OBJECT
 * with a hint listing what is registered.
 */
static void
resolve_template(const char *namespace, const char *name, const char *version,
				 ResolvedTemplate *out)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(namespace), CStringGetTextDatum(name)};
	int			best = -1;
	uint64		i;
	bool		isnull;
	char	   *listed;

	/* A 0.1.0 schema not yet updated has no concurrency column. */
	tasker_keep_plan(&versions_plan,
			  versions_plan != NULL ? NULL
			  : tasker_has_column("tasker_named_tasks", "concurrency")
			  ? VERSIONS_SQL("nt.concurrency") : VERSIONS_SQL("NULL::jsonb"),
			  2, argtypes);
	(void) tasker_run_plan(versions_plan, values, NULL, SPI_OK_SELECT);

	for (i = 0; i < SPI_processed; i++)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (version != NULL ? strcmp(v, version) == 0
			: (best < 0 || newer_default(v, SPI_getvalue(SPI_tuptable->vals[best],
														 SPI_tuptable->tupdesc, 2))))
			best = (int) i;
	}
	if (best >= 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[best];
		Datum		schema;

		out->named_task_id = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		out->version = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		schema = SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull);
		out->schema = isnull ? NULL : DatumGetJsonbPCopy(schema);
		schema = SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull);
		out->concurrency = isnull ? NULL : DatumGetJsonbPCopy(schema);
		return;
	}

	if (SPI_processed > 0)
	{
		listed = version_list();
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task template \"%s.%s\" has no version \"%s\"",
						namespace, name, version),
				 errdetail("Registered versions: %s.", listed),
				 errhint("Pass one of the registered versions, or NULL for the highest.")));
	}
	listed = template_names(namespace);
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("task template \"%s\" does not exist in namespace \"%s\"",
					name, namespace),
			 listed ? errdetail("Templates in namespace \"%s\": %s.", namespace, listed)
			 : errdetail("Namespace \"%s\" has no templates.", namespace),
			 errhint("Register the template with tasker_register_template first.")));
}

/*
 * sha256_hex: prefix followed by the SHA-256 of data in hexadecimal.
 */
static char *
sha256_hex(const char *prefix, const char *data, int len)
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	StringInfoData hex;
	int			i;

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute the identity hash: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);

	initStringInfo(&hex);
	appendStringInfoString(&hex, prefix);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		appendStringInfo(&hex, "%02x", digest[i]);
	return hex.data;
}

/*
 * identity_hash: the value stored in tasker_tasks.identity_hash.  Without a
 * key, a random UUID (no deduplication); with one, "kv2:" and the SHA-256
 * of the namespace, template name and key, the first two prefixed with
 * their length in bytes.  The encoding is unambiguous, so keys are scoped
 * to one (namespace, name) whatever characters the three contain.
 */
static char *
identity_hash(const char *namespace, const char *name, const char *key)
{
	StringInfoData input;

	if (key == NULL)
		return DatumGetCString(DirectFunctionCall1(uuid_out,
												   DirectFunctionCall1(gen_random_uuid, (Datum) 0)));
	initStringInfo(&input);
	appendStringInfo(&input, "%zu:%s%zu:%s", strlen(namespace), namespace,
					 strlen(name), name);
	appendStringInfoString(&input, key);
	return sha256_hex("kv2:", input.data, input.len);
}

/*
 * legacy_identity_task: the task that tasker 0.1.0 created with this
 * identity key for this template, or 0.  0.1.0 stored "key:" and the
 * SHA-256 of namespace/name/key, which two templates can share when their
 * names contain '/'; such a row counts only when its task belongs to the
 * same (namespace, name), and then its key is this key.  No new row has
 * this form, so the look-up cannot race with a concurrent create.
 */
static int64
legacy_identity_task(const char *namespace, const char *name, const char *key)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	StringInfoData input;
	bool		isnull;

	initStringInfo(&input);
	appendStringInfo(&input, "%s/%s/", namespace, name);
	appendStringInfoString(&input, key);
	values[0] = CStringGetTextDatum(sha256_hex("key:", input.data, input.len));
	values[1] = CStringGetTextDatum(namespace);
	values[2] = CStringGetTextDatum(name);
	tasker_keep_plan(&legacy_task_plan,
			  "SELECT t.task_id FROM @extschema@.tasker_tasks t"
			  "  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id"
			  "  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id"
			  " WHERE t.identity_hash = $1 AND ns.name = $2 AND nt.name = $3",
			  3, argtypes);
	(void) tasker_run_plan(legacy_task_plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * insert_task: insert the task row.  Returns its id, or the id of the task
 * that already has this identity hash (then *created is false).
 */
static int64
insert_task(const TaskRequest *req, int32 named_task_id, const char *hash,
			const TraceContext *trace, bool *created)
{
	Oid			argtypes[12] = {INT4OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, JSONBOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID, INT2OID};
	Datum		values[12];
	char		nulls[12];
	Oid			lookup_types[1] = {TEXTOID};
	bool		isnull;

	values[0] = Int32GetDatum(named_task_id);
	values[1] = TimestampTzGetDatum(req->requested_at);
	values[2] = CStringGetTextDatum(req->initiator);
	values[3] = CStringGetTextDatum(req->source_system);
	values[4] = CStringGetTextDatum(req->reason);
	values[5] = JsonbPGetDatum(req->bypass_steps);
	values[6] = JsonbPGetDatum(req->tags);
	values[7] = JsonbPGetDatum(req->context);
	values[8] = CStringGetTextDatum(hash);
	memset(nulls, ' ', sizeof(nulls));
	if (trace == NULL)
		/* the schema of 0.1.0, not yet updated: no trace columns */
		(void) tasker_run_plan(tasker_keep_plan(&insert_task_010_plan,
				  "INSERT INTO @extschema@.tasker_tasks (named_task_id, requested_at, initiator,"
				  "   source_system, reason, bypass_steps, tags, context, identity_hash)"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
				  " ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id",
				  9, argtypes),
			values, nulls, SPI_OK_INSERT_RETURNING);
	else
	{
		values[9] = CStringGetTextDatum(trace->trace_id);
		values[10] = CStringGetTextDatum(trace->parent_id);
		nulls[10] = trace->parent_id[0] ? ' ' : 'n';
		values[11] = Int16GetDatum((int16) trace->flags);
		(void) tasker_run_plan(tasker_keep_plan(&insert_task_plan,
				  "INSERT INTO @extschema@.tasker_tasks (named_task_id, requested_at, initiator,"
				  "   source_system, reason, bypass_steps, tags, context, identity_hash,"
				  "   trace_id, trace_parent_id, trace_flags)"
				  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
				  " ON CONFLICT (identity_hash) DO NOTHING RETURNING task_id",
				  12, argtypes),
			values, nulls, SPI_OK_INSERT_RETURNING);
	}
	*created = (SPI_processed == 1);
	if (*created)
		return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));

	tasker_keep_plan(&existing_task_plan,
			  "SELECT task_id FROM @extschema@.tasker_tasks WHERE identity_hash = $1",
			  1, lookup_types);
	if (SPI_execute_plan(existing_task_plan, &values[8], NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("a task with identity key \"%s\" is being created concurrently",
						req->identity_key),
				 errdetail("The other task is not visible to this transaction's snapshot."),
				 errhint("Retry the transaction.")));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/* A step of the new task, found by its template step's name. */
typedef struct StepByName
{
	char	   *name;			/* the key: a pointer to a string */
	int64		workflow_step_id;
} StepByName;

/* A step of the new task, found by its named_step_id. */
typedef struct StepById
{
	int32		named_step_id;	/* the key */
	int64		workflow_step_id;
} StepById;

/*
 * insert_steps: one step per step template, in a single set-based
 * statement; returns a hash table from named_step_id to the new step's id,
 * and in *roots the number of steps ready at once (no parent).
 * The statement reads the template's rows through their unique index, so
 * its cost is linear in the template's size whatever the plan.
 */
static HTAB *
insert_steps(int64 task_id, int32 named_task_id, int32 priority, int *roots)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, INT4OID};
	Datum		values[3] = {Int64GetDatum(task_id), Int32GetDatum(named_task_id),
	Int32GetDatum(priority)};
	HASHCTL		ctl;
	HTAB	   *by_id;
	uint64		n;
	uint64		i;
	bool		isnull;
	bool		found;
	SPIPlanPtr	plan;

	/* The 0.1.0 schema, not yet updated, has no queue column. */
	if (!tasker_has_column("tasker_workflow_steps", "queue"))
		plan = tasker_keep_plan(&insert_steps_010_plan,
			  "INSERT INTO @extschema@.tasker_workflow_steps (task_id, named_step_id, retryable,"
			  "   retry_limit, skippable, timeout_seconds, unfinished_parents,"
			  "   next_attempt_at, results, handler_kind)"
			  " SELECT $1, l.named_step_id, l.default_retryable, l.default_retry_limit,"
			  "        l.skippable, l.timeout_seconds, cardinality(l.depends_on), now(), NULL,"
			  "        CASE WHEN l.handler_function IS NULL THEN 'http' ELSE 'sql' END"
			  "   FROM @extschema@.tasker_named_tasks_named_steps l"
			  "  WHERE l.named_task_id = $2 ORDER BY l.position"
			  " RETURNING named_step_id, workflow_step_id, unfinished_parents = 0",
			  2, argtypes);
	else
		plan = tasker_keep_plan(&insert_steps_plan,
			  "INSERT INTO @extschema@.tasker_workflow_steps (task_id, named_step_id, retryable,"
			  "   retry_limit, skippable, timeout_seconds, unfinished_parents,"
			  "   next_attempt_at, results, handler_kind, queue, step_type, delay_seconds,"
			  "   priority)"
			  " SELECT $1, l.named_step_id, l.default_retryable, l.default_retry_limit,"
			  "        l.skippable, l.timeout_seconds, cardinality(l.depends_on),"
			  "        CASE WHEN l.delay_seconds > 0 AND cardinality(l.depends_on) = 0"
			  "             THEN clock_timestamp() + l.delay_seconds * interval '1 second'"
			  "             ELSE now() END, NULL,"
			  "        " TASKER_STEP_KIND_SQL("l") ","
			  "        CASE WHEN l.handler_config->>'type' = 'worker'"
			  "             THEN l.handler_config->>'queue' END,"
			  "        COALESCE(l.flow->>'type', NULL), l.delay_seconds, $3"
			  "   FROM @extschema@.tasker_named_tasks_named_steps l"
			  "  WHERE l.named_task_id = $2 ORDER BY l.position"
			  " RETURNING named_step_id, workflow_step_id, unfinished_parents = 0",
			  3, argtypes);
	n = tasker_run_plan(plan, values, NULL, SPI_OK_INSERT_RETURNING);

	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(StepById);
	ctl.hcxt = CurrentMemoryContext;
	by_id = hash_create("tasker new steps by id", Max(n, 16), &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		int32		id = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		StepById   *e = hash_search(by_id, &id, HASH_ENTER, &found);

		e->workflow_step_id = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		if (DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull)))
			(*roots)++;
	}
	return by_id;
}

/* name_hash, name_match: StepByName keys are pointers to strings. */
static uint32
name_hash(const void *key, Size keysize)
{
	const char *name = *(const char *const *) key;

	return hash_bytes((const unsigned char *) name, strlen(name));
}

static int
name_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * steps_by_name: a hash table from each template step's name to the id of
 * the new task's step, over the rows (named_step_id, name, depends_on) of
 * the template's steps.  The names stay in the SPI context.
 */
static HTAB *
steps_by_name(SPITupleTable *rows, uint64 n, HTAB *by_id)
{
	HASHCTL		ctl;
	HTAB	   *by_name;
	uint64		i;
	bool		isnull;
	bool		found;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(StepByName);
	ctl.hash = name_hash;
	ctl.match = name_match;
	ctl.hcxt = CurrentMemoryContext;
	by_name = hash_create("tasker new steps by name", Max(n, 16), &ctl,
						  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	for (i = 0; i < n; i++)
	{
		int32		id = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(rows->vals[i], rows->tupdesc, 2);
		StepById   *step = hash_search(by_id, &id, HASH_FIND, NULL);
		StepByName *e = hash_search(by_name, &name, HASH_ENTER, &found);

		if (step == NULL || found)
			elog(ERROR, "template step \"%s\" has no single new step", name);
		e->workflow_step_id = step->workflow_step_id;
	}
	return by_name;
}

/*
 * step_named: the new step of a template step's name.  Registration
 * checked that every dependency names a step of the template.
 */
static int64
step_named(HTAB *by_name, char *name)
{
	StepByName *e = hash_search(by_name, &name, HASH_FIND, NULL);

	if (e == NULL)
		elog(ERROR, "template has no step \"%s\" to depend on", name);
	return e->workflow_step_id;
}

/* The edges of a new task, as two parallel arrays of step ids. */
typedef struct EdgeList
{
	Datum	   *from;
	Datum	   *to;
	int			n;
	int			cap;
} EdgeList;

/*
 * add_edge: append an edge, growing the arrays by doubling.
 */
static void
add_edge(EdgeList *edges, int64 from, int64 to)
{
	if (edges->n == edges->cap)
	{
		edges->cap = Max(64, edges->cap * 2);
		edges->from = edges->from ? repalloc(edges->from, edges->cap * sizeof(Datum))
			: palloc(edges->cap * sizeof(Datum));
		edges->to = edges->to ? repalloc(edges->to, edges->cap * sizeof(Datum))
			: palloc(edges->cap * sizeof(Datum));
	}
	edges->from[edges->n] = Int64GetDatum(from);
	edges->to[edges->n] = Int64GetDatum(to);
	edges->n++;
}

/*
 * collect_edges: one edge per dependency of each template step, over the
 * rows (named_step_id, name, depends_on) of the template's steps, each
 * resolved through a hash table: linear in the steps and edges.
 */
static void
collect_edges(SPITupleTable *rows, uint64 n, HTAB *by_id, EdgeList *edges)
{
	HTAB	   *by_name = steps_by_name(rows, n, by_id);
	uint64		i;
	bool		isnull;

	memset(edges, 0, sizeof(EdgeList));
	for (i = 0; i < n; i++)
	{
		int64		to = step_named(by_name, SPI_getvalue(rows->vals[i], rows->tupdesc, 2));
		Datum		deps = SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull);
		Datum	   *names;
		int			nnames;
		int			j;

		deconstruct_array(DatumGetArrayTypeP(deps), TEXTOID, -1, false,
						  TYPALIGN_INT, &names, NULL, &nnames);
		for (j = 0; j < nnames; j++)
			add_edge(edges, step_named(by_name, TextDatumGetCString(names[j])), to);
	}
	hash_destroy(by_name);
}

/*
 * insert_edges: the edges of the new task, found by collect_edges and
 * inserted from two arrays in one statement, so their cost does not
 * depend on the plan the server picks or on how many tasks exist.
 */
static void
insert_edges(int64 task_id, int32 named_task_id, HTAB *by_id)
{
	Oid			template_types[1] = {INT4OID};
	Datum		template_values[1] = {Int32GetDatum(named_task_id)};
	Oid			argtypes[3] = {INT8OID, INT8ARRAYOID, INT8ARRAYOID};
	Datum		values[3];
	EdgeList	edges;
	uint64		n;

	tasker_keep_plan(&template_steps_plan,
			  "SELECT l.named_step_id, n.name::text, l.depends_on"
			  "  FROM @extschema@.tasker_named_tasks_named_steps l"
			  "  JOIN @extschema@.tasker_named_steps n ON n.named_step_id = l.named_step_id"
			  " WHERE l.named_task_id = $1",
			  1, template_types);
	n = tasker_run_plan(template_steps_plan, template_values, NULL, SPI_OK_SELECT);
	collect_edges(SPI_tuptable, n, by_id, &edges);
	if (edges.n == 0)
		return;

	tasker_keep_plan(&insert_edges_plan,
			  "INSERT INTO @extschema@.tasker_workflow_step_edges (task_id, from_step_id, to_step_id)"
			  " SELECT $1, u.from_step_id, u.to_step_id"
			  "   FROM unnest($2::bigint[], $3::bigint[]) AS u(from_step_id, to_step_id)",
			  3, argtypes);
	values[0] = Int64GetDatum(task_id);
	values[1] = PointerGetDatum(construct_array(edges.from, edges.n, INT8OID,
												sizeof(int64), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(edges.to, edges.n, INT8OID,
												sizeof(int64), FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	(void) tasker_run_plan(insert_edges_plan, values, NULL, SPI_OK_INSERT);
}

/*
 * insert_steps_and_edges: the steps and edges of a new task, in time
 * linear in the template's size; returns the number of steps ready at
 * once.
 */
static int
insert_steps_and_edges(int64 task_id, int32 named_task_id, int32 priority)
{
	int			roots = 0;
	HTAB	   *by_id = insert_steps(task_id, named_task_id, priority, &roots);

	insert_edges(task_id, named_task_id, by_id);
	hash_destroy(by_id);
	return roots;
}

/*
 * bypass_steps: move each named step to resolved_manually (which releases
 * its children).  An unknown name is an error.
 */
static void
bypass_steps(int64 task_id, const char *task_name, ArrayType *names)
{
	Oid			argtypes[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2] = {Int64GetDatum(task_id), PointerGetDatum(names)};
	uint64		i;
	uint64		n;
	SPITupleTable *found;
	bool		isnull;

	tasker_keep_plan(&bypass_plan,
			  "SELECT b.name, s.workflow_step_id"
			  "  FROM unnest($2::text[]) WITH ORDINALITY AS b(name, i)"
			  "  LEFT JOIN (@extschema@.tasker_workflow_steps s"
			  "        JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id)"
			  "    ON s.task_id = $1 AND n.name = b.name"
			  " ORDER BY b.i",
			  2, argtypes);
	(void) tasker_run_plan(bypass_plan, values, NULL, SPI_OK_SELECT);
	found = SPI_tuptable;
	n = SPI_processed;
	for (i = 0; i < n; i++)
	{
		Datum		id = SPI_getbinval(found->vals[i], found->tupdesc, 2, &isnull);

		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("task template \"%s\" has no step \"%s\"", task_name,
							SPI_getvalue(found->vals[i], found->tupdesc, 1)),
					 errdetail("bypass_steps names steps that start as resolved_manually."),
					 errhint("SELECT step_names FROM tasker_templates lists the template's steps.")));
		tasker_transition(TASKER_ENTITY_STEP, DatumGetInt64(id),
						  TASKER_RESOLVED_MANUALLY, "{\"reason\": \"bypass_steps\"}");
	}
}

/*
 * namespace_paused: whether tasks created in a namespace start paused
 * (tasker_pause_namespace, issue 11).
 */
static bool
namespace_paused(const char *namespace)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(namespace)};

	if (!tasker_has_column("tasker_task_namespaces", "paused_at"))
		return false;
	tasker_run_plan(tasker_keep_plan(&ns_paused_plan,
			  "SELECT 1 FROM @extschema@.tasker_task_namespaces"
			  " WHERE name = $1 AND paused_at IS NOT NULL",
			  1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * set_parent_step: a subtask's child task records the step that created
 * it (flow.c completes that step when the child finishes).
 */
static void
set_parent_step(int64 task_id, int64 step_id)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(task_id), Int64GetDatum(step_id)};

	tasker_run_plan(tasker_keep_plan(&parent_step_plan,
			  "UPDATE @extschema@.tasker_tasks SET parent_step_id = $2 WHERE task_id = $1",
			  2, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * set_priority: the new task's priority (its steps get it as they are
 * inserted).  The 0.1.0 schema, not yet updated, has none.
 */
static void
set_priority(int64 task_id, int32 priority)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(task_id), Int32GetDatum(priority)};

	if (!tasker_has_column("tasker_tasks", "priority"))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("task priorities need the tasker extension at version %s", TASKER_EXTVERSION),
				 errdetail("The extension in this database is older than the library."),
				 errhint("Run ALTER EXTENSION tasker UPDATE.")));
	tasker_run_plan(tasker_keep_plan(&priority_plan,
			  "UPDATE @extschema@.tasker_tasks SET priority = $2 WHERE task_id = $1",
			  2, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * resolve_trace: the trace a new task joins (trace.c): the traceparent
 * argument, else the context's traceparent key, else a new trace.
 * Returns NULL, checking nothing, on the 0.1.0 schema (no trace columns).
 */
static TraceContext *
resolve_trace(const TaskRequest *req)
{
	TraceContext *trace;
	JsonbValue	v;

	if (!tasker_has_column("tasker_tasks", "trace_id"))
		return NULL;
	trace = palloc0(sizeof(TraceContext));
	if (req->traceparent != NULL)
		tasker_trace_parse(req->traceparent, "traceparent argument", trace);
	else if (getKeyJsonValueFromContainer(&req->context->root, "traceparent", 11, &v) == NULL)
		tasker_trace_new(trace);
	else if (v.type == jbvString)
		tasker_trace_parse(pnstrdup(v.val.string.val, v.val.string.len),
						   "context's traceparent key", trace);
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the context's traceparent key is not a string"),
				 errdetail("A traceparent in the context is a W3C traceparent string."),
				 errhint("Pass \"traceparent\": \"00-<trace id>-<parent id>-<flags>\", or remove the key.")));
	return trace;
}

/*
 * tasker_create_task_internal: create a task from a request; returns its id.
 */
int64
tasker_create_task_internal(const TaskRequest *req)
{
	ResolvedTemplate tmpl;
	StringInfoData what;
	TraceContext *trace;
	char		span[TASKER_SPAN_ID_LEN + 1];
	char	   *hash;
	bool		created;
	int64		task_id;

	tasker_check_size("task context", VARSIZE(req->context),
					  tasker_max_context_size, "tasker.max_context_size");
	tasker_check_priority(req->priority);
	if (!JB_ROOT_IS_OBJECT(req->context) || JB_ROOT_IS_SCALAR(req->context))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task context must be a JSON object"),
				 errdetail("The context given is %s.",
						   JsonbToCString(NULL, &req->context->root, VARSIZE(req->context))),
				 errhint("Pass the context as '{\"key\": \"value\"}'.")));

	SPI_connect();
	trace = resolve_trace(req);
	tasker_require_namespace(req->namespace, TASKER_LEVEL_OPERATOR, "create tasks in");
	resolve_template(req->namespace, req->name, req->version, &tmpl);
	if (tmpl.schema != NULL)
	{
		initStringInfo(&what);
		appendStringInfo(&what, "context of task \"%s\"", req->name);
		tasker_json_schema_validate_or_error(tmpl.schema, req->context, what.data);
	}

	if (req->identity_key != NULL &&
		(task_id = legacy_identity_task(req->namespace, req->name,
										req->identity_key)) > 0)
	{
		SPI_finish();
		return task_id;
	}
	hash = identity_hash(req->namespace, req->name, req->identity_key);
	task_id = insert_task(req, tmpl.named_task_id, hash, trace, &created);
	if (created)
	{
		/* Admission control: refuse new work over the ready backlog. */
		tasker_admit_task();
		if (req->parent_step_id != 0)
			set_parent_step(task_id, req->parent_step_id);
		if (req->priority != 0)
			set_priority(task_id, req->priority);
		if (tmpl.concurrency != NULL)
			tasker_set_task_concurrency(task_id, tmpl.concurrency, req->context,
										req->name);
		tasker_backlog_add_at_commit(insert_steps_and_edges(task_id, tmpl.named_task_id,
															req->priority));
		if (namespace_paused(req->namespace))
		{
			int			n;

			(void) tasker_pause_tasks(&task_id, 1, "namespace", NULL, &n);
		}
		tasker_count_tasks(TASKER_TASKS_CREATED, 1);
		if (trace != NULL)
			tasker_trace_span_id(trace->trace_id, task_id, 0, 0, span);
		tasker_notify_transition(0, task_id, req->name, req->namespace, NULL,
								 NULL, "pending", 0, GetCurrentTimestamp(),
								 NULL, trace ? trace->trace_id : NULL,
								 trace ? span : NULL);
		if (req->bypass_steps_array != NULL)
		{
			bypass_steps(task_id, req->name, req->bypass_steps_array);
			/* Every step bypassed: the task completes at once. */
			tasker_finalize_task(task_id);
		}
		tasker_wake_workers_at_commit();
	}
	SPI_finish();
	return task_id;
}
