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
 * connected.
 *
 * IDENTIFICATION
 *		src/spi_util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "spi_util.h"

#define EXTSCHEMA_TOKEN "@extschema@"

/*
 * extension_namespace: the schema of an extension, read from pg_extension
 * (PostgreSQL 15 does not export a function for it).
 */
static Oid
extension_namespace(Oid ext)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

/*
 * extension_schema: the quoted name of the schema holding tasker.
 */
static const char *
extension_schema(void)
{
	Oid			ext = get_extension_oid("tasker", true);
	char	   *name;

	if (!OidIsValid(ext))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"tasker\" does not exist in this database"),
				 errhint("Run CREATE EXTENSION tasker.")));
	name = get_namespace_name(extension_namespace(ext));
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
 * tasker_keep_plan: the kept plan in *slot, prepared from sql on first use.
 */
SPIPlanPtr
tasker_keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*slot != NULL)
		return *slot;
	plan = SPI_prepare(qualify(sql), nargs, argtypes);
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
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "tasker statement failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}
