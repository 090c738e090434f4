/*-------------------------------------------------------------------------
 *
 * handler_registry.c
 *		The handler registry: step handler classes mapped to SQL functions.
 *
 * A template written for the Ruby engine names its step handlers by class,
 * such as OrderProcess::StepHandler::FetchOrderHandler.  The table
 * tasker_handler_registry maps such names to SQL functions of signature
 * (jsonb) RETURNS jsonb, so that the template loads unchanged.  A
 * handler_class resolves through the registry first and then as the name
 * of a function (schema.function or function, looked up as name(jsonb) on
 * the search_path).  Resolution happens once, when a template is
 * registered; the step rows keep the function's OID.
 *
 * A handler class belongs to the role that first registered it
 * (registered_by, a regrole so that a dump and restore keep it by name).
 * Only that role, its members and superusers may remap it, and a template
 * may bind to it only when its registering role is the owner or a member
 * of it, or the owner is a superuser (template_store.c), so no role can
 * squat a class name another role's template will use.  The function a
 * class maps to must be one the registering role may execute, in a schema
 * it may use (the rules are security.c's: tasker_handler_signature_problem
 * and tasker_handler_access_problem).  Every such decision is made for
 * tasker_caller(), the role that called tasker.
 *
 * Every function here runs in the caller's transaction; those that read or
 * write the registry expect SPI to be connected or connect it themselves,
 * as their comments say.
 *
 * IDENTIFICATION
 *		src/handler_registry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "handler_registry.h"
#include "security.h"
#include "spi_util.h"

static SPIPlanPtr registry_lookup_plan;
static SPIPlanPtr registry_owner_plan;
static SPIPlanPtr registry_insert_plan;
static SPIPlanPtr registry_update_plan;
static SPIPlanPtr registry_update_010_plan;
static SPIPlanPtr queue_lookup_plan;
static SPIPlanPtr queue_insert_plan;
static SPIPlanPtr queue_update_plan;

/*
 * registry_lookup: the function registered for a handler class and, in
 * *owner, the role that registered it; InvalidOid for both when the class
 * is not registered.  SPI must be connected.
 */
static Oid
registry_lookup(const char *handler_class, Oid *owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(handler_class)};
	SPIPlanPtr	plan;
	bool		isnull;

	plan = tasker_keep_plan(&registry_lookup_plan,
					 "SELECT function::oid, registered_by::oid"
					 "  FROM @extschema@.tasker_handler_registry"
					 " WHERE handler_class = $1",
					 1, argtypes);
	*owner = InvalidOid;
	if (tasker_run_plan(plan, values, NULL, SPI_OK_SELECT) == 0)
		return InvalidOid;
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull));
	return DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * function_name_list: the handler class as a qualified function name
 * (one or two identifiers, SQL quoting and case rules), or NIL when it
 * cannot be one, as a Ruby class name cannot.
 */
static List *
function_name_list(const char *handler_class)
{
	char	   *raw = pstrdup(handler_class);
	List	   *idents = NIL;
	List	   *names = NIL;
	ListCell   *lc;

	if (!SplitIdentifierString(raw, '.', &idents) ||
		list_length(idents) < 1 || list_length(idents) > 2)
		return NIL;
	foreach(lc, idents)
		names = lappend(names, makeString(pstrdup((char *) lfirst(lc))));
	return names;
}

/*
 * tasker_resolve_handler: resolve a handler class to a step handler
 * function, through the registry and then as a function name.  *fn is the
 * function found (for HANDLER_BAD_SIGNATURE, the one that does not fit);
 * *registered says whether the registry had the class and *owner is then
 * the role that registered it (else InvalidOid).  The caller decides
 * whether the owner and the function are acceptable.  SPI must be
 * connected.
 */
HandlerLookup
tasker_resolve_handler(const char *handler_class, Oid *fn, bool *registered,
					   Oid *owner)
{
	Oid			jsonb_arg[1] = {JSONBOID};
	List	   *names;
	FuncCandidateList candidates;
	int			nest;

	*fn = registry_lookup(handler_class, owner);
	*registered = OidIsValid(*fn);
	if (*registered)
	{
		if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(*fn)))
			return HANDLER_DROPPED;
		return tasker_handler_signature_problem(*fn) ? HANDLER_BAD_SIGNATURE : HANDLER_FOUND;
	}
	names = function_name_list(handler_class);
	if (names == NIL)
		return HANDLER_NOT_FOUND;
	/* An unqualified name is looked up as the caller would see it. */
	nest = tasker_use_caller_search_path();
	*fn = LookupFuncName(names, 1, jsonb_arg, true);
	candidates = OidIsValid(*fn) ? NULL :
		FuncnameGetCandidates(names, -1, NIL, false, false, false, true);
	tasker_restore_search_path(nest);
	if (OidIsValid(*fn))
		return tasker_handler_signature_problem(*fn) ? HANDLER_BAD_SIGNATURE : HANDLER_FOUND;
	if (candidates == NULL)
		return HANDLER_NOT_FOUND;
	*fn = candidates->oid;
	return HANDLER_BAD_SIGNATURE;
}

/*
 * check_registry_owner: lock the registry row of a handler class and
 * refuse to remap it unless the caller has the privileges of the role that
 * registered it.  SPI must be connected; the row must exist.
 */
static void
check_registry_owner(const char *handler_class)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(handler_class)};
	bool		isnull;
	Oid			owner;

	if (tasker_run_plan(tasker_keep_plan(&registry_owner_plan,
										 "SELECT registered_by::oid FROM @extschema@.tasker_handler_registry"
										 " WHERE handler_class = $1 FOR UPDATE",
										 1, argtypes),
						values, NULL, SPI_OK_SELECT) == 0)
		elog(ERROR, "handler class \"%s\" vanished from the registry", handler_class);
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	if (!has_privs_of_role(tasker_caller(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change handler class \"%s\"",
						handler_class),
				 errdetail("Role \"%s\" registered the class first, so it belongs to that role.",
						   tasker_role_name(owner)),
				 errhint("Only the role that registered a handler class, its members and superusers may remap it; register your handler under another class name.")));
}

/*
 * check_handler_function: refuse a function that cannot be a step handler,
 * or that the caller may not call (no USAGE on its schema or no EXECUTE
 * on it: a function passed by OID skips the schema check of the
 * regprocedure input, so it is made here).
 */
static void
check_handler_function(Oid fn)
{
	char	   *problem = tasker_handler_signature_problem(fn);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function %s cannot be a step handler", format_procedure(fn)),
				 errdetail("A step handler takes one jsonb argument and returns jsonb, but %s.", problem),
				 errhint("Declare the handler as CREATE FUNCTION name(step jsonb) RETURNS jsonb.")));
	problem = tasker_handler_access_problem(fn, tasker_caller());
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to register function %s as a step handler",
						format_procedure(fn)),
				 errdetail("The registering role must be able to call the function, but %s.",
						   problem),
				 errhint("Register a function you may call, or have its owner grant USAGE on its schema and EXECUTE on it.")));
}

/*
 * register_class: insert the registry row of a handler class with its
 * target (a function, or a queue when is_queue), owned by the caller; or
 * remap a class the caller may change.  Connects to SPI itself.
 */
static void
register_class(const char *handler_class, Datum target, bool is_queue)
{
	Oid			argtypes[3] = {TEXTOID, is_queue ? TEXTOID : OIDOID, OIDOID};
	Datum		values[3] = {CStringGetTextDatum(handler_class), target,
	ObjectIdGetDatum(tasker_caller())};
	SPIPlanPtr	insert;
	SPIPlanPtr	update;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	if (is_queue)
	{
		insert = tasker_keep_plan(&queue_insert_plan,
								  "INSERT INTO @extschema@.tasker_handler_registry"
								  " (handler_class, queue, registered_by)"
								  " VALUES ($1, $2, $3::regrole)"
								  " ON CONFLICT (handler_class) DO NOTHING",
								  3, argtypes);
		update = tasker_keep_plan(&queue_update_plan,
								  "UPDATE @extschema@.tasker_handler_registry"
								  "   SET function = NULL, queue = $2, updated_at = now()"
								  " WHERE handler_class = $1",
								  2, argtypes);
	}
	else
	{
		insert = tasker_keep_plan(&registry_insert_plan,
								  "INSERT INTO @extschema@.tasker_handler_registry"
								  " (handler_class, function, registered_by)"
								  " VALUES ($1, $2::regprocedure, $3::regrole)"
								  " ON CONFLICT (handler_class) DO NOTHING",
								  3, argtypes);
		/* The 0.1.0 schema, not yet updated, has no queue column. */
		update = tasker_has_column("tasker_handler_registry", "queue")
			? tasker_keep_plan(&registry_update_plan,
							   "UPDATE @extschema@.tasker_handler_registry"
							   "   SET function = $2::regprocedure, queue = NULL, updated_at = now()"
							   " WHERE handler_class = $1",
							   2, argtypes)
			: tasker_keep_plan(&registry_update_010_plan,
							   "UPDATE @extschema@.tasker_handler_registry"
							   "   SET function = $2::regprocedure, updated_at = now()"
							   " WHERE handler_class = $1",
							   2, argtypes);
	}
	if (tasker_run_plan(insert, values, NULL, SPI_OK_INSERT) == 0)
	{
		check_registry_owner(handler_class);
		(void) tasker_run_plan(update, values, NULL, SPI_OK_UPDATE);
	}
	SPI_finish();
}

/*
 * tasker_register_handler: map a handler class to a step handler function.
 * A new class belongs to the caller; remapping a registered class needs
 * the privileges of the role that registered it, which stays its owner.
 * Connects to SPI itself.
 */
void
tasker_register_handler(const char *handler_class, Oid fn)
{

	if (handler_class[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handler class must not be empty"),
				 errdetail("A handler class is the name templates give in handler_class."),
				 errhint("Pass a name such as 'OrderProcess::StepHandler::FetchOrderHandler'.")));
	check_handler_function(fn);

	register_class(handler_class, ObjectIdGetDatum(fn), false);
}

/*
 * tasker_handler_queue: the queue a handler class is registered for (its
 * steps run on external workers), or NULL.  SPI must be connected.
 */
char *
tasker_handler_queue(const char *handler_class)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(handler_class)};

	if (!tasker_has_column("tasker_handler_registry", "queue"))
		return NULL;
	if (tasker_run_plan(tasker_keep_plan(&queue_lookup_plan,
										 "SELECT queue FROM @extschema@.tasker_handler_registry"
										 " WHERE handler_class = $1 AND queue IS NOT NULL",
										 1, argtypes),
						values, NULL, SPI_OK_SELECT) == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * tasker_register_handler_queue: have the steps of a handler class run by
 * the external workers of a queue.  Ownership as for
 * tasker_register_handler.  Connects to SPI itself.
 */
void
tasker_register_handler_queue(const char *handler_class, const char *queue)
{

	if (handler_class[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("handler class must not be empty"),
				 errdetail("A handler class is the name templates give in handler_class."),
				 errhint("Pass a name such as 'OrderProcess::StepHandler::FetchOrderHandler'.")));
	if (queue[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("queue must not be empty"),
				 errdetail("A queue is the name external workers claim steps from."),
				 errhint("Pass a name such as 'payments', or a function such as 'myschema.fetch_order(jsonb)'.")));
	register_class(handler_class, CStringGetTextDatum(queue), true);
}
