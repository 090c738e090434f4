/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *		Prepared statements of tasker, kept per backend.
 *
 * Every statement tasker runs through SPI is prepared once per backend and
 * kept (SPI_keepplan) in a static slot of the module that runs it.  Its
 * text names tasker's tables as @extschema@.tasker_..., and the first
 * preparation replaces @extschema@ with the quoted name of the schema the
 * extension was created in, so tasker works whatever the caller's (or the
 * worker's) search_path is.  Must be called inside a transaction, with SPI
 * connected.  Every statement is prepared and run with search_path set to
 * TASKER_PINNED_SEARCH_PATH, so no object a user creates can stand in for
 * a function or operator tasker's statements name.
 *
 * IDENTIFICATION
 *		src/spi_util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/xact.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_type.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "catalog/namespace.h"
#include "jit/jit.h"
#include "optimizer/cost.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "spi_util.h"

#define EXTSCHEMA_TOKEN "@extschema@"

/*
 * extension_row: the schema and owner of an extension, read from
 * pg_extension (PostgreSQL 15 exports no function for either).  False when
 * there is no such extension.
 */
static bool
extension_row(Oid ext, Oid *nsp, Oid *owner)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	found = HeapTupleIsValid(tup);
	if (found)
	{
		*nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
		*owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * tasker_extension: the schema and owner of tasker in this database, or
 * raise UNDEFINED_OBJECT.
 */
void
tasker_extension(Oid *nsp, Oid *owner)
{
	Oid			ext = get_extension_oid("tasker", true);

	if (!OidIsValid(ext) || !extension_row(ext, nsp, owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"tasker\" does not exist in this database"),
				 errhint("Run CREATE EXTENSION tasker.")));
}

/*
 * extension_schema: the quoted name of the schema holding tasker.
 */
static const char *
extension_schema(void)
{
	Oid			nsp;
	Oid			owner;
	char	   *name;

	tasker_extension(&nsp, &owner);
	name = get_namespace_name(nsp);
	if (name == NULL)
		elog(ERROR, "schema of extension tasker not found");
	return quote_identifier(name);
}

/*
 * qualify: sql with every @extschema@ replaced by the extension's schema.
 */
static char *
qualify(const char *sql)
{
	StringInfoData buf;
	const char *schema = NULL;
	const char *p = sql;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(p, EXTSCHEMA_TOKEN)) != NULL)
	{
		if (schema == NULL)
			schema = extension_schema();
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, schema);
		p = hit + strlen(EXTSCHEMA_TOKEN);
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * pinned: whether tasker's statement settings are in force.
 */
static bool
pinned(void)
{
	return !enable_seqscan && !jit_enabled && namespace_search_path != NULL &&
		strcmp(namespace_search_path, TASKER_PINNED_SEARCH_PATH) == 0;
}

/*
 * pin_search_path: put tasker's statement settings in force for one
 * statement of tasker's, unless they already are (the workers and every
 * API function run under them).  Returns the GUC nest level to pop, or 0.
 * An error in between pops it with the (sub)transaction.
 */
static int
pin_search_path(void)
{
	if (pinned())
		return 0;
	return tasker_push_statement_settings();
}

/*
 * tasker_push_statement_settings: a new GUC nest level with tasker's
 * statement settings: the pinned search_path and no sequential scans in
 * new plans (see the header).  Popped as tasker_push_search_path's.
 */
int
tasker_push_statement_settings(void)
{
	int			nest = tasker_push_search_path(TASKER_PINNED_SEARCH_PATH);

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * tasker_push_user_settings: a new GUC nest level for user code (a
 * handler): search_path and enable_seqscan as the session would have
 * them without tasker.
 */
int
tasker_push_user_settings(void)
{
	const char *path = GetConfigOptionResetString("search_path");
	const char *seqscan = GetConfigOptionResetString("enable_seqscan");
	const char *jit = GetConfigOptionResetString("jit");
	int			nest = tasker_push_search_path(path ? path : "");

	(void) set_config_option("enable_seqscan", seqscan ? seqscan : "on",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", jit ? jit : "on",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * tasker_pin_session_settings: tasker's statement settings for the whole
 * session of a background worker, so that its statements need no GUC
 * nest level of their own.
 */
void
tasker_pin_session_settings(void)
{
	SetConfigOption("search_path", TASKER_PINNED_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("jit", "off", PGC_USERSET, PGC_S_SESSION);
}

/*
 * tasker_push_search_path: a new GUC nest level with search_path set to
 * path; AtEOXact_GUC on the returned level (or the (sub)transaction's
 * abort) puts the old one back.
 */
int
tasker_push_search_path(const char *path)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * unpin_search_path: undo pin_search_path.
 */
static void
unpin_search_path(int nest)
{
	if (nest > 0)
		AtEOXact_GUC(true, nest);
}

/*
 * tasker_keep_plan: the kept plan in *slot, prepared from sql on first use.
 */
SPIPlanPtr
tasker_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;
	int			nest;

	if (*slot != NULL)
		return *slot;
	nest = pin_search_path();
	plan = SPI_prepare(qualify(sql), nargs, argtypes);
	unpin_search_path(nest);
	if (plan == NULL)
		elog(ERROR, "could not prepare tasker statement: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	*slot = plan;
	return plan;
}

/*
 * tasker_run_plan: execute a kept plan (nulls as SPI_execute_plan takes
 * them, NULL for none), raise unless the result code is the one expected,
 * and return the number of rows processed.
 */
uint64
tasker_run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			nest = pin_search_path();
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	unpin_search_path(nest);
	if (rc != expected)
		elog(ERROR, "tasker statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * tasker_error_is_data: in a PG_CATCH block, whether the error being
 * handled may be caught and turned into data: not a cancel, a timeout or
 * a shutdown, which must end the statement.
 */
bool
tasker_error_is_data(void)
{
	int			code = geterrcode();

	return code != ERRCODE_QUERY_CANCELED && code != ERRCODE_ADMIN_SHUTDOWN &&
		code != ERRCODE_CRASH_SHUTDOWN && code != ERRCODE_OUT_OF_MEMORY;
}

/*
 * tasker_try: run fn(arg) in a subtransaction of its own.  Returns NULL
 * when it returned (the subtransaction is kept), or the error it raised,
 * rolled back, with the memory context and resource owner restored;
 * cancels, timeouts and shutdowns propagate.  SPI results of fn stay
 * readable after a success.
 */
ErrorData *
tasker_try(void (*fn) (void *), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		if (!tasker_error_is_data())
			PG_RE_THROW();
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return edata;
}

/* The arguments of one tasker_try_plan. */
typedef struct PlanCall
{
	SPIPlanPtr	plan;
	Datum	   *values;
	int			expected;
} PlanCall;

/*
 * run_plan_call: tasker_run_plan for tasker_try.
 */
static void
run_plan_call(void *arg)
{
	PlanCall   *call = (PlanCall *) arg;

	(void) tasker_run_plan(call->plan, call->values, NULL, call->expected);
}

/*
 * tasker_try_plan: tasker_run_plan in a subtransaction of its own.
 * Returns NULL when the statement ran (its result is in SPI_tuptable), or
 * the error it raised, rolled back.
 */
ErrorData *
tasker_try_plan(SPIPlanPtr plan, Datum *values, int expected)
{
	PlanCall	call = {plan, values, expected};

	return tasker_try(run_plan_call, &call);
}

/*
 * tasker_int8_array: a bigint[] datum of n ids, for a statement's array
 * parameter.
 */
Datum
tasker_int8_array(const int64 *ids, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * tasker_has_column: whether tasker's table has a column: false on the
 * schema of an older version of the extension, not yet updated, which
 * this library still serves for registration and task creation.
 */
bool
tasker_has_column(const char *table, const char *column)
{
	Oid			nsp;
	Oid			owner;
	Oid			rel;

	tasker_extension(&nsp, &owner);
	rel = get_relname_relid(table, nsp);
	return OidIsValid(rel) && get_attnum(rel, column) != InvalidAttrNumber;
}

/*
 * tasker_col: binary value of column n of row i of the last SPI result.
 */
Datum
tasker_col(uint64 i, int n, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, n, isnull);
}

/*
 * tasker_result_int8s: the bigint first column of every row of the last
 * SPI result, copied (*n of them).
 */
int64 *
tasker_result_int8s(int *n)
{
	int64	   *ids = palloc(sizeof(int64) * Max(SPI_processed, 1));
	uint64		i;
	bool		isnull;

	for (i = 0; i < SPI_processed; i++)
		ids[i] = DatumGetInt64(tasker_col(i, 1, &isnull));
	*n = (int) SPI_processed;
	return ids;
}

/*
 * tasker_run_plan_latest: tasker_run_plan for a read-only statement, run
 * with a new snapshot that sees every transaction committed so far, even
 * in a transaction whose own snapshot is older.
 */
uint64
tasker_run_plan_latest(SPIPlanPtr plan, Datum *values, int expected)
{
	int			nest = pin_search_path();
	int			rc = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
										  InvalidSnapshot, true, false, 0);

	unpin_search_path(nest);
	if (rc != expected)
		elog(ERROR, "tasker statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * tasker_installed_version: the installed version of the extension in this
 * database (palloc'd in the caller's context), or NULL when it is not
 * installed.  Runs in the caller's transaction.
 */
char *
tasker_installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("tasker"));
	rel = table_open(ExtensionRelationId, AccessShareLock);
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}
