/*-------------------------------------------------------------------------
 *
 * concurrency.c
 *		Concurrency keys of tasks and the caps on namespaces' steps in
 *		progress (issue 11 item 4).
 *
 * Rules:
 * - A template's concurrency {key, limit} is rendered here, once, when a
 *   task is created: each {{context.PATH}} of the key is replaced by the
 *   context's value at PATH (dot-separated keys; a string as it is, any
 *   other JSON value as JSON text).  A reference that does not resolve
 *   refuses the task (22023): a task without its key would escape the
 *   limit.  Keys longer than TASKER_CONCURRENCY_KEY_MAX bytes are refused,
 *   never truncated.  Which tasks the key admits is one SQL predicate,
 *   TASKER_ADMITTED_TASK_SQL (step.h), stated by the claim and the start
 *   of tasks; this file does not decide it.
 * - A namespace's cap (tasker_set_namespace_limit) counts the steps of
 *   the namespace in progress.  A claim takes a slot for each step it
 *   claims through tasker_namespace_slot(): a transaction-level advisory
 *   lock on (namespace, slot number), held while the claiming transaction
 *   runs (an SQL step runs inside it), plus, once that transaction has
 *   committed, the step's own in_progress row (a leased step: HTTP or an
 *   external worker).  A slot is granted while the locks this
 *   transaction took and saw taken, plus the namespace's committed
 *   in_progress steps (counted once, at its first slot), stay within the
 *   cap.  A step of another transaction that committed after that count,
 *   and whose slot this one then found free, would be missed: so after
 *   each claim the count is taken again (tasker_namespace_excess) and the
 *   claim gives back the steps over the cap.  Counting after probing can
 *   count a step twice, never miss one.  A slot that was locked and then
 *   refused or given back stays locked until the transaction ends.
 * - Flow steps (map fan-outs, waits, subtasks) take no slot: they hold no
 *   worker while they wait.
 *
 * This module calls the SPI helpers and security checks; step.c's claim
 * calls tasker_namespace_slot through SQL, task.c calls the rendering.
 *
 * IDENTIFICATION
 *		src/concurrency.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "concurrency.h"
#include "events.h"
#include "security.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(tasker_namespace_slot_sql);

/* The advisory lock class of namespace slots: 'ns' in the high bytes. */
#define NS_SLOT_CLASS 0x6E730000

/* A namespace's slots as this transaction knows them. */
typedef struct NsSlots
{
	int32		ns_id;
	int32		max;			/* 0: no cap */
	int32		next_probe;		/* slots below were probed */
	int32		mine;			/* locked by this transaction */
	int32		granted;		/* of mine, granted to a step */
	int32		others;			/* found locked by other transactions */
	int32		returned;		/* of mine, given back by claims */
	int64		committed;		/* leased steps in progress; -1: not counted */
	bool		full;
} NsSlots;

/* A template's namespace, as this transaction read it. */
typedef struct TemplateNs
{
	int32		named_task_id;
	int			slots;			/* index in ns_slots */
} TemplateNs;

#define NS_CACHE_SIZE 32
static NsSlots ns_slots[NS_CACHE_SIZE];
static int	ns_nslots = 0;
static TemplateNs ns_templates[NS_CACHE_SIZE];
static int	ns_ntemplates = 0;
static LocalTransactionId ns_cache_xact = InvalidLocalTransactionId;

static SPIPlanPtr render_plan;
static SPIPlanPtr set_key_plan;
static SPIPlanPtr ns_of_plan;
static SPIPlanPtr ns_count_plan;
static SPIPlanPtr set_limit_plan;

/*
 * context_value: the text of the context's value at a dot-separated path,
 * or NULL when it does not resolve.
 */
static char *
context_value(Jsonb *context, const char *path)
{
	Oid			argtypes[2] = {JSONBOID, TEXTOID};
	Datum		values[2] = {JsonbPGetDatum(context), CStringGetTextDatum(path)};
	bool		isnull;
	Datum		d;

	tasker_run_plan(tasker_keep_plan(&render_plan,
			 "SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' ELSE v::text END"
			 "  FROM (SELECT $1 #> string_to_array($2, '.') AS v) x"
			 " WHERE v IS NOT NULL AND jsonb_typeof(v) <> 'null'",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	d = tasker_col(0, 1, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * render_key: the key template with each {{context.PATH}} replaced.
 */
static char *
render_key(const char *tmpl, Jsonb *context, const char *task_name)
{
	StringInfoData out;
	const char *p = tmpl;
	const char *start;

	initStringInfo(&out);
	while ((start = strstr(p, "{{")) != NULL)
	{
		const char *end = strstr(start + 2, "}}");
		char	   *ref;
		char	   *value;

		if (end == NULL)
			break;
		appendBinaryStringInfo(&out, p, start - p);
		ref = pnstrdup(start + 2, end - start - 2);
		value = strncmp(ref, "context.", 8) == 0 ? context_value(context, ref + 8) : NULL;
		if (value == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the concurrency key of task \"%s\" does not resolve", task_name),
					 errdetail("The reference {{%s}} of the key \"%s\" has no value in the task's context.",
							   ref, tmpl),
					 errhint("Give the context the value the template's concurrency.key names.")));
		appendStringInfoString(&out, value);
		p = end + 2;
	}
	appendStringInfoString(&out, p);
	if (out.len > TASKER_CONCURRENCY_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("the concurrency key of task \"%s\" is too long", task_name),
				 errdetail("The rendered key has %d bytes; the limit is %d.",
						   out.len, TASKER_CONCURRENCY_KEY_MAX),
				 errhint("Key the template's concurrency on a shorter value of the context.")));
	return out.data;
}

/*
 * tasker_set_task_concurrency: give a new task its concurrency key and
 * limit from its template's concurrency ({"key": ..., "limit": N}).
 * Runs SPI connected, inside task creation.
 */
void
tasker_set_task_concurrency(int64 task_id, Jsonb *concurrency, Jsonb *context,
							const char *task_name)
{
	Oid			argtypes[3] = {INT8OID, TEXTOID, JSONBOID};
	Datum		values[3];
	JsonbValue	k;
	JsonbValue *key;

	k.type = jbvString;
	k.val.string.val = "key";
	k.val.string.len = 3;
	key = findJsonbValueFromContainer(&concurrency->root, JB_FOBJECT, &k);
	if (key == NULL || key->type != jbvString)
		return;
	values[0] = Int64GetDatum(task_id);
	values[1] = CStringGetTextDatum(render_key(pnstrdup(key->val.string.val, key->val.string.len),
											   context, task_name));
	values[2] = JsonbPGetDatum(concurrency);
	tasker_run_plan(tasker_keep_plan(&set_key_plan,
			 "UPDATE @extschema@.tasker_tasks"
			 "   SET concurrency_key = $2, concurrency_limit = ($3 ->> 'limit')::integer"
			 " WHERE task_id = $1",
			 3, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * namespace_slots: this transaction's entry for the namespace whose id
 * and cap are given, made on first use.
 */
static int
namespace_slots(int32 ns_id, int32 max)
{
	int			i;

	for (i = 0; i < ns_nslots; i++)
		if (ns_slots[i].ns_id == ns_id)
			return i;
	memset(&ns_slots[i], 0, sizeof(NsSlots));
	ns_slots[i].ns_id = ns_id;
	ns_slots[i].max = max;
	ns_slots[i].committed = -1;
	ns_nslots++;
	return i;
}

/*
 * slots_of: this transaction's entry for the namespace of a template,
 * read once per transaction.
 */
static NsSlots *
slots_of(int32 named_task_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(named_task_id)};
	bool		isnull;
	int			i;

	if (ns_cache_xact != MyProc->lxid || ns_ntemplates == NS_CACHE_SIZE ||
		ns_nslots == NS_CACHE_SIZE)
	{
		/* a new transaction (or a full cache: probing starts again) */
		ns_nslots = ns_ntemplates = 0;
		ns_cache_xact = MyProc->lxid;
	}
	for (i = 0; i < ns_ntemplates; i++)
		if (ns_templates[i].named_task_id == named_task_id)
			return &ns_slots[ns_templates[i].slots];
	tasker_run_plan(tasker_keep_plan(&ns_of_plan,
			 "SELECT ns.task_namespace_id, COALESCE(ns.max_in_progress, 0)"
			 "  FROM @extschema@.tasker_named_tasks nt"
			 "  JOIN @extschema@.tasker_task_namespaces ns"
			 "    ON ns.task_namespace_id = nt.task_namespace_id"
			 " WHERE nt.named_task_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	ns_templates[ns_ntemplates].named_task_id = named_task_id;
	ns_templates[ns_ntemplates].slots =
		SPI_processed == 1
		? namespace_slots(DatumGetInt32(tasker_col(0, 1, &isnull)),
						  DatumGetInt32(tasker_col(0, 2, &isnull)))
		: namespace_slots(-1, 0);
	return &ns_slots[ns_templates[ns_ntemplates++].slots];
}

/*
 * committed_in_progress: the namespace's leased steps in progress that
 * committed, read with a new snapshot (after the locks were probed).
 */
static int64
committed_in_progress(int32 ns_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(ns_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&ns_count_plan,
			 "SELECT count(*) FROM @extschema@.tasker_workflow_steps s"
			 "  JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id"
			 "  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id"
			 " WHERE s.lease_expires_at IS NOT NULL AND s.current_state = 'in_progress'"
			 "   AND s.handler_kind <> 'flow' AND nt.task_namespace_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return DatumGetInt64(tasker_col(0, 1, &isnull));
}

/*
 * take_slot: lock the next free slot of e's namespace; false when every
 * slot was probed.
 */
static bool
take_slot(NsSlots *e)
{
	while (e->next_probe < e->max)
	{
		int32		slot = e->next_probe++;

		if (DatumGetBool(DirectFunctionCall2(pg_try_advisory_xact_lock_int4,
											 Int32GetDatum(NS_SLOT_CLASS | (e->ns_id & 0xFFFF)),
											 Int32GetDatum(slot))))
		{
			e->mine++;
			return true;
		}
		e->others++;
	}
	return false;
}

/*
 * tasker_namespace_slot_sql: tasker_namespace_slot(named_task_id): a slot
 * of the template's namespace for one step claimed by this transaction;
 * true at once when the namespace has no cap.
 */
Datum
tasker_namespace_slot_sql(PG_FUNCTION_ARGS)
{
	int32		named_task_id = PG_GETARG_INT32(0);
	NsSlots    *e;
	bool		ok = false;

	SPI_connect();
	e = slots_of(named_task_id);
	if (e->max == 0)
		ok = true;
	else if (!e->full && take_slot(e))
	{
		if (e->committed < 0)
			e->committed = committed_in_progress(e->ns_id);
		ok = e->mine + e->others + e->committed <= e->max;
		e->granted += ok ? 1 : 0;
	}
	if (!ok && e->max > 0)
		e->full = true;
	SPI_finish();
	PG_RETURN_BOOL(ok);
}

/*
 * tasker_namespace_excess: after a claim that took nclaimed steps of
 * namespace ns_id, how many of them to give back because this
 * transaction's slots there are over the cap, counting the committed
 * leased steps again (see the file header).  The ones given back still
 * hold their locks, but no longer count as steps of this transaction.
 */
int
tasker_namespace_excess(int32 ns_id, int nclaimed)
{
	int			i;
	int64		over = 0;

	if (ns_cache_xact != MyProc->lxid)
		return 0;
	for (i = 0; i < ns_nslots; i++)
	{
		NsSlots    *e = &ns_slots[i];

		if (e->ns_id != ns_id || e->max == 0 || e->granted == 0)
			continue;
		SPI_connect();
		e->committed = committed_in_progress(ns_id);
		SPI_finish();
		over = Min((int64) nclaimed,
				   (e->granted - e->returned) + e->others + e->committed - e->max);
		if (over <= 0)
			return 0;
		e->full = true;
		e->returned += (int32) over;
	}
	return (int) Max(over, 0);
}

/*
 * tasker_namespace_slots_taken: whether this transaction took a slot of
 * a capped namespace (the claim then checks tasker_namespace_excess).
 */
bool
tasker_namespace_slots_taken(void)
{
	int			i;

	if (ns_cache_xact != MyProc->lxid)
		return false;
	for (i = 0; i < ns_nslots; i++)
		if (ns_slots[i].granted > ns_slots[i].returned)
			return true;
	return false;
}

/*
 * tasker_set_namespace_limit: cap a namespace's steps in progress at
 * max_in_progress, or remove its cap.  Runs as the extension's owner, for a
 * caller that administers the namespace.
 */
void
tasker_set_namespace_limit(const char *namespace, int32 max_in_progress, bool remove)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(namespace), Int32GetDatum(max_in_progress)};
	char		nulls[2] = {' ', remove ? 'n' : ' '};

	if (!remove && (max_in_progress < 1 || max_in_progress > TASKER_NAMESPACE_LIMIT_MAX))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_in_progress must be from 1 to %d, not %d",
						TASKER_NAMESPACE_LIMIT_MAX, max_in_progress),
				 errdetail("It caps how many steps of namespace \"%s\" run at once.", namespace),
				 errhint("Pass NULL to remove the cap.")));
	SPI_connect();
	tasker_require_namespace(namespace, TASKER_LEVEL_ADMIN, "set limits in");
	tasker_run_plan(tasker_keep_plan(&set_limit_plan,
			 "UPDATE @extschema@.tasker_task_namespaces SET max_in_progress = $2"
			 " WHERE name = $1",
			 2, argtypes),
		values, nulls, SPI_OK_UPDATE);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("namespace \"%s\" does not exist", namespace),
				 errdetail("A namespace exists once a template is registered in it."),
				 errhint("Register a template with namespace_name: %s first, or check the name in tasker_templates.",
						 namespace)));
	SPI_finish();
	/* A raised or removed cap frees steps that wait for a slot. */
	tasker_wake_workers_at_commit();
}
