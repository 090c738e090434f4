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
 * Both run inside the caller's SPI connection and transaction, after every
 * check of template_check.c has passed, so an error here (a handler that
 * does not resolve, a duplicate) still leaves nothing behind.  Every value
 * travels as a parameter of a kept plan.
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
#include "utils/regproc.h"

#include "security.h"
#include "spi_util.h"
#include "compat.h"
#include "template.h"

#define TASK_NARGS	12

static SPIPlanPtr unfinished_plan;
static SPIPlanPtr namespace_select_plan;
static SPIPlanPtr namespace_insert_plan;
static SPIPlanPtr system_select_plan;
static SPIPlanPtr system_insert_plan;
static SPIPlanPtr step_select_plan;
static SPIPlanPtr step_insert_plan;
static SPIPlanPtr task_select_plan;
static SPIPlanPtr task_insert_plan;
static SPIPlanPtr task_update_plan;
static SPIPlanPtr task_steps_delete_plan;
static SPIPlanPtr task_step_insert_plan;

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
 * resolve_step_handler: the function of a non-api step, raising the error
 * of a handler_class that does not resolve or cannot be executed.
 */
static Oid
resolve_step_handler(TaskTemplate *t, StepTemplate *s)
{
	Oid			fn;
	bool		registered;
	const TNode *at = s->handler_class_node;

	switch (tasker_resolve_handler(s->handler_class, &fn, &registered))
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
	if (tasker_proc_aclcheck(fn, tasker_caller(), ACL_EXECUTE) != ACLCHECK_OK)
		template_error(t->name, ERRCODE_INSUFFICIENT_PRIVILEGE, at,
					   "Grant EXECUTE on the function to the role that registers the template; handlers run with that role's privileges.",
					   "the current role may not execute function %s, the handler of step \"%s\".",
					   format_procedure(fn), s->name);
	return fn;
}

/*
 * template_resolve_handlers: resolve the handler function of every step
 * but api steps, whose handler_class is only a label.  SPI must be
 * connected.
 */
void
template_resolve_handlers(TaskTemplate *t)
{
	int			i;

	for (i = 0; i < t->nsteps; i++)
	{
		StepTemplate *s = &t->steps[i];

		s->handler_function = s->is_api ? InvalidOid : resolve_step_handler(t, s);
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
 * existing_task: the named_task_id and owner of the template of the same
 * namespace, name and version, locked; false when there is none.
 */
static bool
existing_task(Datum *values, char *nulls, int32 *id, Oid *owner)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};

	if (tasker_run_plan(tasker_keep_plan(&task_select_plan,
						   "SELECT named_task_id, owner FROM @extschema@.tasker_named_tasks"
						   " WHERE name = $1 AND task_namespace_id = $3 AND version = $4"
						   " FOR UPDATE",
						   4, argtypes),
				 values, nulls, SPI_OK_SELECT) == 0)
		return false;
	*id = first_int(1);
	*owner = (Oid) first_int(2);
	return true;
}

/*
 * check_replace: refuse to overwrite an existing template without replace,
 * or one whose owner the caller cannot act as.
 */
static void
check_replace(const TaskTemplate *t, bool replace, Oid owner)
{
	const char *owner_name = GetUserNameFromId(owner, true);

	if (!replace)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("task template \"%s\" version %s already exists in namespace \"%s\"",
						t->name, t->version, t->namespace_name),
				 errdetail("A registered version stays as it is unless replaced, since tasks may refer to it."),
				 errhint("Pass replace => true to replace it, or register the template under a new version.")));
	if (!has_privs_of_role(tasker_caller(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to replace task template \"%s\"", t->name),
				 errdetail("Role \"%s\" registered version %s in namespace \"%s\".",
						   owner_name ? owner_name : "(dropped)", t->version,
						   t->namespace_name),
				 errhint("Only a role with the privileges of the template's owner may replace it; register a new version instead.")));
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
	Oid			owner;

	task_values(t, ns_id, values, nulls);
	if (!existing_task(values, nulls, &id, &owner))
	{
		tasker_run_plan(tasker_keep_plan(&task_insert_plan,
						   "INSERT INTO @extschema@.tasker_named_tasks"
						   " (name, description, task_namespace_id, version, configuration,"
						   "  module_namespace, task_handler_class, default_dependent_system,"
						   "  context_schema, custom_events, template, owner)"
						   " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9::jsonb,"
						   "         $10::jsonb, $11::jsonb, $12)"
						   " RETURNING named_task_id",
						   TASK_NARGS, argtypes),
				 values, nulls, SPI_OK_INSERT_RETURNING);
		return first_int(1);
	}
	check_replace(t, replace, owner);
	refuse_unfinished(t, id);
	values[TASK_NARGS] = Int32GetDatum(id);
	tasker_run_plan(tasker_keep_plan(&task_update_plan,
					   "UPDATE @extschema@.tasker_named_tasks"
					   "   SET name = $1, description = $2, task_namespace_id = $3,"
					   "       version = $4, configuration = $5::jsonb,"
					   "       module_namespace = $6, task_handler_class = $7,"
					   "       default_dependent_system = $8, context_schema = $9::jsonb,"
					   "       custom_events = $10::jsonb, template = $11::jsonb,"
					   "       owner = $12, updated_at = now()"
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
 * depends_on_array: a step's dependencies as a text[].
 */
static Datum
depends_on_array(const StepTemplate *s)
{
	int			n = list_length(s->depends_on);
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, s->depends_on)
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
	Oid			argtypes[13] = {INT4OID, INT4OID, BOOLOID, BOOLOID, INT4OID,
		INT4OID, TEXTOID, TEXTOID, OIDOID, TEXTOID, TEXTARRAYOID, INT4OID, TEXTOID};
	Datum		values[13];
	char		nulls[13];

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
	values[10] = depends_on_array(s);
	values[11] = Int32GetDatum(s->timeout_seconds);
	nulls[11] = (s->timeout_seconds > 0) ? ' ' : 'n';
	values[12] = CStringGetTextDatum(s->custom_events_json);
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
}

/*
 * template_store: write the catalog rows of a validated template whose
 * handlers are resolved; returns its named_task_id.  SPI must be
 * connected.
 */
int32
template_store(TaskTemplate *t, bool replace)
{
	int32		ns_id = namespace_id(t->namespace_name);
	int32		task_id = store_named_task(t, ns_id, replace);
	int			i;

	for (i = 0; i < t->nsteps; i++)
		store_step(t, task_id, i);
	return task_id;
}
