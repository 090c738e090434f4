/*-------------------------------------------------------------------------
 *
 * template_store.c
 *		Handler resolution and the catalog rows of a validated template.
 *
 * template_resolve_handlers() resolves each step's handler_class to an SQL
 * function (api steps need none); template_store() then finds or creates
 * the namespace, the dependent systems and the named steps, and writes one
 * tasker_named_tasks row and one tasker_named_tasks_named_steps row per
 * step.  Replacing a template updates its tasker_named_tasks row in place,
 * so that its named_task_id, which tasks reference, stays the same, and
 * replaces its step rows.
 *
 * Ownership: a template name in a namespace belongs to the role that first
 * registered it (the owner of its oldest row), and only that role, its
 * members and superusers may add or replace versions of it; registrations
 * in one namespace are serialised by a lock on its row so that two roles
 * cannot both register a name first.  A handler class that resolves
 * through the registry must have been registered by the registering role,
 * a role it is a member of, or a superuser, and the registering role must
 * be able to call every handler function.  All of it is decided for
 * tasker_caller().
 *
 * Both run inside the caller's SPI connection and transaction, after every
 * check of template_check.c has passed, so an error here (a handler that
 * does not resolve, a duplicate) still leaves nothing behind.  Every value
 * travels as a parameter of a kept plan.  This file resolves through
 * handler_registry.c and decides through security.c; only template.c
 * calls it.
 *
 * IDENTIFICATION
 *		src/template_store.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/regproc.h"

#include "compat.h"
#include "handler_registry.h"
#include "security.h"
#include "spi_util.h"
#include "template_store.h"
#include "yaml_reader.h"

#define TASK_NARGS	12

static void store_limits(const TaskTemplate *t, int32 task_id);
static void check_rate_keys(void);
static SPIPlanPtr concurrency_plan;
static SPIPlanPtr rate_limit_plan;
static SPIPlanPtr rate_keys_plan;
static SPIPlanPtr step_flow_plan;
static SPIPlanPtr subtask_cycle_plan;
static SPIPlanPtr subtask_exists_plan;
static void store_step_flow(int32 task_id, Datum step_id, const StepTemplate *s);
static SPIPlanPtr unfinished_plan;
static SPIPlanPtr namespace_select_plan;
static SPIPlanPtr namespace_insert_plan;
static SPIPlanPtr system_select_plan;
static SPIPlanPtr system_insert_plan;
static SPIPlanPtr step_select_plan;
static SPIPlanPtr step_insert_plan;
static SPIPlanPtr namespace_lock_plan;
static SPIPlanPtr name_owner_plan;
static SPIPlanPtr task_select_plan;
static SPIPlanPtr task_insert_plan;
static SPIPlanPtr task_update_plan;
static SPIPlanPtr task_steps_delete_plan;
static SPIPlanPtr task_step_insert_plan;
static SPIPlanPtr task_step_sqlstates_plan;

/*
 * first_int: column n of the first result row, an integer or oid.
 */
static int32
first_int(int n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  n, &isnull);

	if (isnull)
		elog(ERROR, "unexpected null in tasker query");
	return DatumGetInt32(d);
}

/*
 * class_usable: whether a template registered by caller may bind to a
 * handler class registered by owner: the class is a superuser's, or the
 * caller is its owner or a member of it.  A superuser caller must really
 * be the owner or a member: has_privs_of_role() would let a superuser's
 * template bind, and its handler run as the superuser, to a class any
 * role squatted.
 */
static bool
class_usable(Oid caller, Oid owner)
{
	if (caller == owner || superuser_arg(owner))
		return true;
	if (superuser_arg(caller))
		return is_member_of_role_nosuper(caller, owner);
	return has_privs_of_role(caller, owner);
}

/*
 * check_class_owner: refuse a step whose handler_class another role
 * registered (see class_usable), so that a class name squatted by another
 * role never binds the caller's template to that role's function.
 */
static void
check_class_owner(const TaskTemplate *t, const StepTemplate *s, Oid owner)
{
	const TNode *at = s->handler_class_node;
	Oid			caller = tasker_caller();

	if (class_usable(caller, owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("handler class \"%s\" belongs to role \"%s\"",
					s->handler_class, tasker_role_name(owner)),
			 errdetail("%sStep \"%s\" of task template \"%s\" names the class, which role \"%s\" registered; role \"%s\", which registers the template, is neither that role nor a member of it.",
					   at ? psprintf("Line %d, column %d: ", at->line, at->column) : "",
					   s->name, t->name, tasker_role_name(owner),
					   tasker_role_name(caller)),
			 errhint("Register your handler under a class name of your own, or name its function directly as schema.function; a superuser can delete a class registered by the wrong role from tasker_handler_registry.")));
}

/*
 * resolve_step_handler: the function of a non-api step, raising the error
 * of a handler_class that does not resolve, belongs to another role or
 * names a function the caller cannot call.
 */
static Oid
resolve_step_handler(TaskTemplate *t, StepTemplate *s)
{
	Oid			fn;
	Oid			owner;
	bool		registered;
	const TNode *at = s->handler_class_node;
	HandlerLookup found = tasker_resolve_handler(s->handler_class, &fn,
												 &registered, &owner);
	char	   *problem;

	if (registered)
		check_class_owner(t, s, owner);
	switch (found)
	{
		case HANDLER_FOUND:
			break;
		case HANDLER_NOT_FOUND:
			template_error(t->name, ERRCODE_UNDEFINED_OBJECT, at,
						   psprintf("Map it to a function with SELECT tasker_register_handler('%s', 'schema.function(jsonb)'), or name an SQL function (step jsonb) RETURNS jsonb.",
									s->handler_class),
						   "handler_class \"%s\" of step \"%s\" is neither a registered handler class nor a function taking jsonb.",
						   s->handler_class, s->name);
		case HANDLER_DROPPED:
			template_error(t->name, ERRCODE_UNDEFINED_FUNCTION, at,
						   "Register the class again with tasker_register_handler.",
						   "handler_class \"%s\" of step \"%s\" is registered to a function that no longer exists.",
						   s->handler_class, s->name);
		case HANDLER_BAD_SIGNATURE:
			template_error(t->name, ERRCODE_UNDEFINED_FUNCTION, at,
						   "A step handler is declared as CREATE FUNCTION name(step jsonb) RETURNS jsonb.",
						   "handler_class \"%s\" of step \"%s\" %s function %s, which cannot be a step handler: %s.",
						   s->handler_class, s->name,
						   registered ? "is registered to" : "names",
						   format_procedure(fn),
						   tasker_handler_signature_problem(fn));
	}
	problem = tasker_handler_access_problem(fn, tasker_caller());
	if (problem != NULL)
		template_error(t->name, ERRCODE_INSUFFICIENT_PRIVILEGE, at,
					   "Grant USAGE on the function's schema and EXECUTE on the function to the role that registers the template; handlers run with that role's privileges.",
					   "the role registering the template must be able to call function %s, the handler of step \"%s\", but %s.",
					   format_procedure(fn), s->name, problem);
	return fn;
}

/*
 * set_worker_config: a step run by external workers: its queue (the one
 * its handler_config names, or its class is registered for, or else the
 * template's namespace) written into its handler_config as
 * {"type": "worker", "queue": ...}, which is what task creation reads.
 */
static void
set_worker_config(TaskTemplate *t, StepTemplate *s)
{
	StringInfoData extra;
	Datum		merged;

	if (s->queue == NULL)
		s->queue = t->namespace_name ? t->namespace_name : "default";
	initStringInfo(&extra);
	appendStringInfoString(&extra, "{\"type\": \"worker\", \"queue\": ");
	escape_json(&extra, s->queue);
	appendStringInfoChar(&extra, '}');
	merged = DirectFunctionCall2(jsonb_concat,
								 DirectFunctionCall1(jsonb_in, CStringGetDatum(s->handler_config_json)),
								 DirectFunctionCall1(jsonb_in, CStringGetDatum(extra.data)));
	s->handler_config_json = JsonbToCString(NULL, &DatumGetJsonbP(merged)->root,
											VARSIZE(DatumGetJsonbP(merged)));
}

/*
 * template_resolve_handlers: resolve the handler function of every step
 * but api and worker steps, whose handler_class is only a label (a worker
 * step's class may be registered for a queue), and wait and subtask
 * steps, which have none.  SPI must be connected.
 */
void
template_resolve_handlers(TaskTemplate *t)
{
	int			i;

	for (i = 0; i < t->nsteps; i++)
	{
		StepTemplate *s = &t->steps[i];

		if (!s->is_api && !s->is_worker && s->handler_class != NULL &&
			(s->queue = tasker_handler_queue(s->handler_class)) != NULL)
			s->is_worker = true;
		if (s->is_worker)
			set_worker_config(t, s);
		/* A wait or subtask step has no handler: tasker runs it (flow.c). */
		s->handler_function = (s->is_api || s->is_worker || s->handler_class == NULL)
			? InvalidOid : resolve_step_handler(t, s);
	}
}

/*
 * find_or_create: the id a select plan finds; else the id an insert plan
 * (INSERT ... ON CONFLICT DO NOTHING RETURNING) creates; else, when a
 * concurrent transaction created the row first, the id the select finds
 * now.  Both plans take the same leading parameters.
 */
static int32
find_or_create(SPIPlanPtr select_plan, SPIPlanPtr insert_plan, Datum *values)
{
	if (tasker_run_plan(select_plan, values, NULL, SPI_OK_SELECT) > 0)
		return first_int(1);
	if (tasker_run_plan(insert_plan, values, NULL, SPI_OK_INSERT_RETURNING) > 0)
		return first_int(1);
	if (tasker_run_plan(select_plan, values, NULL, SPI_OK_SELECT) > 0)
		return first_int(1);
	elog(ERROR, "tasker catalog row vanished during template registration");
	return 0;
}

/*
 * namespace_id: find or create a namespace.
 */
static int32
namespace_id(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	return find_or_create(tasker_keep_plan(&namespace_select_plan,
									"SELECT task_namespace_id FROM @extschema@.tasker_task_namespaces"
									" WHERE name = $1",
									1, argtypes),
						  tasker_keep_plan(&namespace_insert_plan,
									"INSERT INTO @extschema@.tasker_task_namespaces (name) VALUES ($1)"
									" ON CONFLICT (name) DO NOTHING"
									" RETURNING task_namespace_id",
									1, argtypes),
						  values);
}

/*
 * system_id: find or create a dependent system.
 */
static int32
system_id(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	return find_or_create(tasker_keep_plan(&system_select_plan,
									"SELECT dependent_system_id FROM @extschema@.tasker_dependent_systems"
									" WHERE name = $1",
									1, argtypes),
						  tasker_keep_plan(&system_insert_plan,
									"INSERT INTO @extschema@.tasker_dependent_systems (name) VALUES ($1)"
									" ON CONFLICT (name) DO NOTHING"
									" RETURNING dependent_system_id",
									1, argtypes),
						  values);
}

/*
 * named_step_id: find or create the named step of a step's dependent
 * system and name.
 */
static int32
named_step_id(const StepTemplate *s)
{
	Oid			argtypes[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = Int32GetDatum(system_id(s->dependent_system));
	values[1] = CStringGetTextDatum(s->name);
	values[2] = CStringGetTextDatum(s->description);
	return find_or_create(tasker_keep_plan(&step_select_plan,
									"SELECT named_step_id FROM @extschema@.tasker_named_steps"
									" WHERE dependent_system_id = $1 AND name = $2",
									2, argtypes),
						  tasker_keep_plan(&step_insert_plan,
									"INSERT INTO @extschema@.tasker_named_steps"
									" (dependent_system_id, name, description)"
									" VALUES ($1, $2, $3)"
									" ON CONFLICT ON CONSTRAINT named_step_by_system_uniq DO NOTHING"
									" RETURNING named_step_id",
									3, argtypes),
						  values);
}

/*
 * text_or_null: a text parameter, null when s is NULL.
 */
static Datum
text_or_null(const char *s, char *null)
{
	*null = (s == NULL) ? 'n' : ' ';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * task_values: the parameters $1..$12 of the tasker_named_tasks row.
 */
static void
task_values(const TaskTemplate *t, int32 ns_id, Datum *values, char *nulls)
{
	memset(nulls, ' ', TASK_NARGS + 1);
	values[0] = CStringGetTextDatum(t->name);
	values[1] = text_or_null(t->description, &nulls[1]);
	values[2] = Int32GetDatum(ns_id);
	values[3] = CStringGetTextDatum(t->version);
	values[4] = CStringGetTextDatum(t->configuration_json);
	values[5] = text_or_null(t->module_namespace, &nulls[5]);
	values[6] = text_or_null(t->task_handler_class, &nulls[6]);
	values[7] = CStringGetTextDatum(t->default_dependent_system);
	values[8] = text_or_null(t->schema_json, &nulls[8]);
	values[9] = CStringGetTextDatum(t->custom_events_json);
	values[10] = CStringGetTextDatum(t->template_json);
	values[11] = ObjectIdGetDatum(tasker_caller());
}

/*
 * lock_namespace: lock the namespace row of a registration until the end
 * of the transaction, so that registrations in one namespace run one at a
 * time and each sees the names the others committed.
 */
static void
lock_namespace(Datum *values, char *nulls)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};

	(void) tasker_run_plan(tasker_keep_plan(&namespace_lock_plan,
											"SELECT 1 FROM @extschema@.tasker_task_namespaces"
											" WHERE task_namespace_id = $3 FOR NO KEY UPDATE",
											4, argtypes),
						   values, nulls, SPI_OK_SELECT);
}

/*
 * name_owner: the role that first registered a template of this name in
 * this namespace, the owner of its oldest row; InvalidOid for a new name.
 */
static Oid
name_owner(Datum *values, char *nulls)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};

	if (tasker_run_plan(tasker_keep_plan(&name_owner_plan,
										 "SELECT owner::oid FROM @extschema@.tasker_named_tasks"
										 " WHERE name = $1 AND task_namespace_id = $3"
										 " ORDER BY named_task_id LIMIT 1",
										 4, argtypes),
						values, nulls, SPI_OK_SELECT) == 0)
		return InvalidOid;
	return (Oid) first_int(1);
}

/*
 * existing_task: the named_task_id of the template of the same namespace,
 * name and version, locked; false when there is none.
 */
static bool
existing_task(Datum *values, char *nulls, int32 *id)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};

	if (tasker_run_plan(tasker_keep_plan(&task_select_plan,
						   "SELECT named_task_id FROM @extschema@.tasker_named_tasks"
						   " WHERE name = $1 AND task_namespace_id = $3 AND version = $4"
						   " FOR UPDATE",
						   4, argtypes),
				 values, nulls, SPI_OK_SELECT) == 0)
		return false;
	*id = first_int(1);
	return true;
}

/*
 * check_name_owner: refuse to add or replace a version of a template name
 * that another role registered first, unless the caller has its
 * privileges.  replacing says whether the version exists and is to be
 * replaced, for the message.
 */
static void
check_name_owner(const TaskTemplate *t, Oid owner, bool replacing)
{
	if (!OidIsValid(owner) || has_privs_of_role(tasker_caller(), owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 replacing ?
			 errmsg("permission denied to replace task template \"%s\"", t->name) :
			 errmsg("permission denied to add a version to task template \"%s\"", t->name),
			 errdetail("Role \"%s\" registered task template \"%s\" in namespace \"%s\" first, so the name belongs to that role.",
					   tasker_role_name(owner), t->name, t->namespace_name),
			 errhint("Only the template's owner, its members and superusers may add or replace its versions; register your template under another name or namespace.")));
}

/*
 * check_replace: refuse to overwrite an existing template without replace.
 */
static void
check_replace(const TaskTemplate *t, bool replace)
{
	if (!replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("task template \"%s\" version %s already exists in namespace \"%s\"",
						t->name, t->version, t->namespace_name),
				 errdetail("A registered version stays as it is unless replaced, since tasks may refer to it."),
				 errhint("Pass replace => true to replace it, or register the template under a new version.")));
}

/*
 * refuse_unfinished: refuse to replace a template while tasks created from
 * it are unfinished (pending, in_progress or error): their step rows were
 * made from the old steps, which a replacement would change or drop under
 * them.  Finished tasks keep their step rows and history.
 */
static void
refuse_unfinished(const TaskTemplate *t, int32 id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(id)};
	bool		isnull;
	int64		n;

	tasker_run_plan(tasker_keep_plan(&unfinished_plan,
					   "SELECT count(*) FROM @extschema@.tasker_tasks"
					   " WHERE named_task_id = $1"
					   "   AND current_state IN ('pending', 'in_progress', 'error')",
					   1, argtypes),
			 values, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (n > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("task template \"%s\" version %s has unfinished tasks", t->name,
						t->version ? t->version : "(none)"),
				 errdetail("Tasks of this version that are pending, in_progress or in error: " INT64_FORMAT "; their steps were made from the template being replaced.",
						   n),
				 errhint("Register the change under a new version, or let those tasks finish (or cancel them) first.")));
}

/*
 * store_named_task: insert the tasker_named_tasks row, or with replace
 * update the existing one in place and delete its step rows.
 */
static int32
store_named_task(const TaskTemplate *t, int32 ns_id, bool replace)
{
	Oid			argtypes[TASK_NARGS + 1] = {TEXTOID, TEXTOID, INT4OID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, OIDOID, INT4OID};
	Datum		values[TASK_NARGS + 1];
	char		nulls[TASK_NARGS + 1];
	int32		id;
	bool		exists;

	tasker_require_namespace(t->namespace_name, TASKER_LEVEL_ADMIN,
							 "register templates in");
	task_values(t, ns_id, values, nulls);
	lock_namespace(values, nulls);
	exists = existing_task(values, nulls, &id);
	check_name_owner(t, name_owner(values, nulls), exists && replace);
	if (!exists)
	{
		tasker_run_plan(tasker_keep_plan(&task_insert_plan,
						   "INSERT INTO @extschema@.tasker_named_tasks"
						   " (name, description, task_namespace_id, version, configuration,"
						   "  module_namespace, task_handler_class, default_dependent_system,"
						   "  context_schema, custom_events, template, owner)"
						   " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::jsonb,"
						   "         $10::jsonb, $11::jsonb, $12::regrole)"
						   " RETURNING named_task_id",
						   TASK_NARGS, argtypes),
				 values, nulls, SPI_OK_INSERT_RETURNING);
		return first_int(1);
	}
	check_replace(t, replace);
	refuse_unfinished(t, id);
	values[TASK_NARGS] = Int32GetDatum(id);
	tasker_run_plan(tasker_keep_plan(&task_update_plan,
					   "UPDATE @extschema@.tasker_named_tasks"
					   "   SET name = $1, description = $2, task_namespace_id = $3,"
					   "       version = $4, configuration = $5::jsonb,"
					   "       module_namespace = $6, task_handler_class = $7,"
					   "       default_dependent_system = $8, context_schema = $9::jsonb,"
					   "       custom_events = $10::jsonb, template = $11::jsonb,"
					   "       owner = $12::regrole, updated_at = now()"
					   " WHERE named_task_id = $13",
					   TASK_NARGS + 1, argtypes),
			 values, nulls, SPI_OK_UPDATE);
	tasker_run_plan(tasker_keep_plan(&task_steps_delete_plan,
					   "DELETE FROM @extschema@.tasker_named_tasks_named_steps WHERE named_task_id = $1",
					   1, &argtypes[TASK_NARGS]),
			 &values[TASK_NARGS], NULL, SPI_OK_DELETE);
	return id;
}

/*
 * string_array: a List of C strings (a step's dependencies, its SQLSTATE
 * lists) as a text[].
 */
static Datum
string_array(List *strings)
{
	int			n = list_length(strings);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, strings)
		elems[i++] = CStringGetTextDatum((const char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/*
 * store_step: the tasker_named_tasks_named_steps row of step i.
 */
static void
store_step(const TaskTemplate *t, int32 task_id, int i)
{
	const StepTemplate *s = &t->steps[i];
	Oid			argtypes[15] = {INT4OID, INT4OID, BOOLOID, BOOLOID, INT4OID,
		INT4OID, TEXTOID, TEXTOID, OIDOID, TEXTOID, TEXTARRAYOID, INT4OID, TEXTOID,
	TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[15];
	char		nulls[15];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = Int32GetDatum(task_id);
	values[1] = Int32GetDatum(named_step_id(s));
	values[2] = BoolGetDatum(s->skippable);
	values[3] = BoolGetDatum(s->default_retryable);
	values[4] = Int32GetDatum(s->default_retry_limit);
	values[5] = Int32GetDatum(i);
	values[6] = CStringGetTextDatum(s->description);
	values[7] = text_or_null(s->handler_class, &nulls[7]);
	values[8] = ObjectIdGetDatum(s->handler_function);
	nulls[8] = OidIsValid(s->handler_function) ? ' ' : 'n';
	values[9] = CStringGetTextDatum(s->handler_config_json);
	values[10] = string_array(s->depends_on);
	values[11] = Int32GetDatum(s->timeout_seconds);
	nulls[11] = (s->timeout_seconds > 0) ? ' ' : 'n';
	values[12] = CStringGetTextDatum(s->custom_events_json);
	values[13] = string_array(s->permanent_sqlstates);
	values[14] = string_array(s->retry_sqlstates);
	/*
	 * Without SQLSTATE lists the 0.1.0 columns suffice, so a 0.1.0 schema
	 * not yet updated still takes the templates it could express.
	 */
	if (s->permanent_sqlstates == NIL && s->retry_sqlstates == NIL)
		tasker_run_plan(tasker_keep_plan(&task_step_insert_plan,
						   "INSERT INTO @extschema@.tasker_named_tasks_named_steps"
						   " (named_task_id, named_step_id, skippable, default_retryable,"
						   "  default_retry_limit, position, description, handler_class,"
						   "  handler_function, handler_config, depends_on, timeout_seconds,"
						   "  custom_events)"
						   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::regprocedure,"
						   "         $10::jsonb, $11, $12, $13::jsonb)",
						   13, argtypes),
				 values, nulls, SPI_OK_INSERT);
	else
		tasker_run_plan(tasker_keep_plan(&task_step_sqlstates_plan,
						   "INSERT INTO @extschema@.tasker_named_tasks_named_steps"
						   " (named_task_id, named_step_id, skippable, default_retryable,"
						   "  default_retry_limit, position, description, handler_class,"
						   "  handler_function, handler_config, depends_on, timeout_seconds,"
						   "  custom_events, permanent_sqlstates, retry_sqlstates)"
						   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::regprocedure,"
						   "         $10::jsonb, $11, $12, $13::jsonb, $14, $15)",
						   15, argtypes),
				 values, nulls, SPI_OK_INSERT);
	if (s->flow_json != NULL || s->delay_seconds > 0)
		store_step_flow(task_id, values[1], s);
}

/*
 * store_step_flow: the dynamic rule and delay of a step template (issue
 * 10), which a 0.1.0 schema cannot hold.
 */
static void
store_step_flow(int32 task_id, Datum step_id, const StepTemplate *s)
{
	Oid			argtypes[4] = {INT4OID, INT4OID, TEXTOID, INT4OID};
	Datum		values[4];
	char		nulls[4] = "    ";

	if (!tasker_has_column("tasker_named_tasks_named_steps", "flow"))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("step \"%s\" uses a dynamic rule or a delay, which this database's tasker schema cannot store",
						s->name),
				 errdetail("The extension's schema is older than its library (0.2.0)."),
				 errhint("Run ALTER EXTENSION tasker UPDATE.")));
	values[0] = Int32GetDatum(task_id);
	values[1] = step_id;
	values[2] = s->flow_json ? CStringGetTextDatum(s->flow_json) : (Datum) 0;
	nulls[2] = s->flow_json ? ' ' : 'n';
	values[3] = Int32GetDatum(s->delay_seconds);
	tasker_run_plan(tasker_keep_plan(&step_flow_plan,
						   "UPDATE @extschema@.tasker_named_tasks_named_steps"
						   "   SET flow = $3::jsonb, delay_seconds = $4"
						   " WHERE named_task_id = $1 AND named_step_id = $2",
						   4, argtypes),
				 values, nulls, SPI_OK_UPDATE);
}

/*
 * subtask_cycle: the chain of registered templates (namespace/name, in
 * order) through which the child template of a subtask step creates, as
 * subtasks, the template being registered; NULL when none does.
 */
static char *
subtask_cycle(const TaskTemplate *t, const StepTemplate *s)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4] = {CStringGetTextDatum(s->subtask_namespace),
		CStringGetTextDatum(s->subtask_name), CStringGetTextDatum(t->namespace_name),
	CStringGetTextDatum(t->name)};

	tasker_run_plan(tasker_keep_plan(&subtask_cycle_plan,
						   "WITH RECURSIVE r(ns, name, depth, path) AS ("
						   "  SELECT $1, $2, 0, $1 || '/' || $2"
						   "  UNION"
						   "  SELECT l.flow->'task'->>'namespace', l.flow->'task'->>'name', r.depth + 1,"
						   "         r.path || ' -> ' || (l.flow->'task'->>'namespace') || '/'"
						   "           || (l.flow->'task'->>'name')"
						   "    FROM r"
						   "    JOIN @extschema@.tasker_task_namespaces ns ON ns.name = r.ns"
						   "    JOIN @extschema@.tasker_named_tasks nt"
						   "      ON nt.task_namespace_id = ns.task_namespace_id AND nt.name = r.name"
						   "    JOIN @extschema@.tasker_named_tasks_named_steps l"
						   "      ON l.named_task_id = nt.named_task_id"
						   "   WHERE l.flow->>'type' = 'subtask' AND r.depth < 32)"
						   " SELECT path FROM r WHERE ns = $3 AND name = $4 LIMIT 1",
						   4, argtypes),
				 values, NULL, SPI_OK_SELECT);
	return SPI_processed > 0 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
}

/*
 * subtask_exists: whether the child template of a subtask step is
 * registered (in the version it names, if it names one).
 */
static bool
subtask_exists(const StepTemplate *s)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3] = {CStringGetTextDatum(s->subtask_namespace),
		CStringGetTextDatum(s->subtask_name),
	s->subtask_version ? CStringGetTextDatum(s->subtask_version) : (Datum) 0};
	char		nulls[3] = {' ', ' ', s->subtask_version ? ' ' : 'n'};

	tasker_run_plan(tasker_keep_plan(&subtask_exists_plan,
						   "SELECT 1 FROM @extschema@.tasker_named_tasks nt"
						   "  JOIN @extschema@.tasker_task_namespaces ns"
						   "    ON ns.task_namespace_id = nt.task_namespace_id"
						   " WHERE ns.name = $1 AND nt.name = $2 AND ($3 IS NULL OR nt.version = $3)"
						   " LIMIT 1",
						   3, argtypes),
				 values, nulls, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * check_subtasks: each subtask step names a registered template, and no
 * chain of subtasks leads back to the template being registered (its
 * tasks would create children without end).
 */
static void
check_subtasks(const TaskTemplate *t)
{
	int			i;

	for (i = 0; i < t->nsteps; i++)
	{
		const StepTemplate *s = &t->steps[i];
		char	   *cycle;

		if (s->subtask_name == NULL)
			continue;
		if (strcmp(s->subtask_name, t->name) == 0 &&
			strcmp(s->subtask_namespace, t->namespace_name) == 0)
			cycle = psprintf("%s/%s", t->namespace_name, t->name);
		else if (!subtask_exists(s))
			template_error(t->name, ERRCODE_UNDEFINED_OBJECT, s->subtask_node,
						   "Register the child template first, or correct its name, namespace or version.",
						   "subtask step \"%s\" names task \"%s\" in namespace \"%s\"%s, which is not registered.",
						   s->name, s->subtask_name, s->subtask_namespace,
						   s->subtask_version ? psprintf(" version %s", s->subtask_version) : "");
		else
			cycle = subtask_cycle(t, s);
		if (cycle != NULL)
			template_error(t->name, ERRCODE_INVALID_OBJECT_DEFINITION, s->subtask_node,
						   "A subtask must not lead back to its own template; break the chain.",
						   "subtask step \"%s\" of \"%s\" creates a cycle of subtasks: %s/%s -> %s.",
						   s->name, t->name, t->namespace_name, t->name, cycle);
	}
}

/*
 * store_limits: a template's concurrency and its steps' rate limits
 * (issue 11), which a 0.1.0 schema cannot hold.  The rate buckets are a
 * fixed table in shared memory, so the distinct rate limit keys of all
 * templates are capped at TASKER_RATE_BUCKETS (53400 beyond).
 */
static void
store_limits(const TaskTemplate *t, int32 task_id)
{
	Oid			argtypes[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	bool		any = (t->concurrency_json != NULL);
	int			i;

	for (i = 0; i < t->nsteps; i++)
		any |= (t->steps[i].rate_limit_json != NULL);
	if (!tasker_has_column("tasker_named_tasks", "concurrency"))
	{
		if (!any)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("template \"%s\" has a concurrency or rate_limit key, which this database's tasker schema cannot store",
						t->name),
				 errdetail("The extension's schema is older than its library (0.2.0)."),
				 errhint("Run ALTER EXTENSION tasker UPDATE.")));
	}
	/* always: a template replaced without concurrency loses the old one */
	values[0] = Int32GetDatum(task_id);
	values[1] = t->concurrency_json ? CStringGetTextDatum(t->concurrency_json) : (Datum) 0;
	nulls[1] = t->concurrency_json ? ' ' : 'n';
	tasker_run_plan(tasker_keep_plan(&concurrency_plan,
						   "UPDATE @extschema@.tasker_named_tasks SET concurrency = $2::jsonb"
						   " WHERE named_task_id = $1",
						   2, argtypes),
				 values, nulls, SPI_OK_UPDATE);
	for (i = 0; i < t->nsteps; i++)
	{
		if (t->steps[i].rate_limit_json == NULL)
			continue;
		values[1] = CStringGetTextDatum(t->steps[i].rate_limit_json);
		values[2] = CStringGetTextDatum(t->steps[i].name);
		tasker_run_plan(tasker_keep_plan(&rate_limit_plan,
						   "UPDATE @extschema@.tasker_named_tasks_named_steps l"
						   "   SET rate_limit = $2::jsonb"
						   "  FROM @extschema@.tasker_named_steps n"
						   " WHERE l.named_task_id = $1 AND n.named_step_id = l.named_step_id"
						   "   AND n.name = $3",
						   3, argtypes),
					 values, NULL, SPI_OK_UPDATE);
	}
	if (any)
		check_rate_keys();
}

/*
 * check_rate_keys: refuse more distinct rate limit keys than there are
 * rate buckets.
 */
static void
check_rate_keys(void)
{
	bool		isnull;
	int64		n;

	tasker_run_plan(tasker_keep_plan(&rate_keys_plan,
						   "SELECT count(DISTINCT rate_limit ->> 'key')"
						   "  FROM @extschema@.tasker_named_tasks_named_steps"
						   " WHERE rate_limit IS NOT NULL",
						   0, NULL),
				 NULL, NULL, SPI_OK_SELECT);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (n > TEMPLATE_RATE_BUCKETS)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("the templates would use %lld distinct rate limit keys", (long long) n),
				 errdetail("tasker keeps at most %d rate buckets in shared memory.",
						   TEMPLATE_RATE_BUCKETS),
				 errhint("Share rate limit keys between steps that call the same service.")));
}

/*
 * template_store: write the catalog rows of a validated template whose
 * handlers are resolved; returns its named_task_id.  SPI must be
 * connected.
 */
int32
template_store(TaskTemplate *t, bool replace)
{
	int32		ns_id;
	int32		task_id;
	int			i;

	check_subtasks(t);
	ns_id = namespace_id(t->namespace_name);
	task_id = store_named_task(t, ns_id, replace);

	for (i = 0; i < t->nsteps; i++)
		store_step(t, task_id, i);
	store_limits(t, task_id);
	return task_id;
}
