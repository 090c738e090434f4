/*-------------------------------------------------------------------------
 *
 * security.c
 *		Whom tasker acts for, whom it acts as, and the sandbox of a handler.
 *
 * Users hold EXECUTE on tasker's functions and no privilege on its tables.
 * Each public function that reads or writes them brackets its work with
 * tasker_api_enter/tasker_api_leave: the work runs as the extension's
 * owner, under the pinned search_path, while every decision about who may
 * do what uses the role that called (tasker_caller).  That role may
 * control a task (cancel, retry, resolve, run its steps) when it has the
 * privileges of the role the task's template belongs to.
 *
 * A step handler runs in a sandbox (tasker_handler_enter/leave): as the
 * template's owner, in a security-restricted operation (no temporary
 * objects, no LISTEN, no SET ROLE), in a GUC nest level that is rolled back
 * afterwards whatever the handler SET, with the search_path (and
 * enable_seqscan and jit, which tasker's own statements turn off) the server,
 * database or role configures rather than the caller's.  Before each call
 * the stored handler is checked again against the catalog (signature,
 * owner, privileges): no row of tasker's tables is trusted to name a
 * callable function.  The rules of what a handler function may be and who
 * may call it (tasker_handler_signature_problem,
 * tasker_handler_access_problem) are defined here, and registration
 * (handler_registry.c, template_store.c) asks them too.  A background worker also drops the session-level
 * advisory locks and prepared statements a handler left.
 *
 * A handler may call the controls (they take effect; tasker_nested_changes
 * tells the batch to look again) but not tasker_run_task or
 * tasker_run_steps: nesting a run inside a step is refused.
 *
 * Levels (issue 13): the group roles tasker_admin, tasker_operator (a
 * member of it controls every task, not only its templates' ones),
 * tasker_reader and tasker_worker hold EXECUTE on the functions of their
 * level (the upgrade script classifies each function).  With
 * tasker.namespace_isolation on, a role that does not see every namespace
 * (tasker_sees_all_namespaces: superusers and the extension's owner) must
 * also hold a grant of the right level on a task's namespace
 * (tasker_namespace_grants, written by tasker_grant_namespace) to create,
 * control or register in it; row-level security on the runtime tables
 * applies the same rule to what it reads.
 *
 * This module calls only spi_util.c below it; the template and handler
 * registry files call it, never the other way round.
 *
 * IDENTIFICATION
 *		src/security.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/prepare.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "compat.h"
#include "guc.h"
#include "security.h"
#include "spi_util.h"

/* The role whose call tasker is serving; InvalidOid outside any. */
static Oid	current_caller = InvalidOid;

/* The caller's search_path, to look up the names the caller gave. */
static char *caller_search_path = NULL;

/* How many handler calls are running in this backend, nested. */
static int	handler_depth = 0;

/* Changes that controls made from inside a handler. */
static uint64 nested_changes = 0;

static SPIPlanPtr task_owner_plan;
static SPIPlanPtr step_task_plan;
static SPIPlanPtr namespace_grant_plan;

/* The group role of each level, and the grant levels that satisfy it. */
static const struct
{
	const char *role;
	const char *name;
	const char *granted_by;		/* grant levels that include this one */
}			levels[] = {
	[TASKER_LEVEL_READER] = {"tasker_reader", "reader", "reader,operator,admin"},
	[TASKER_LEVEL_OPERATOR] = {"tasker_operator", "operator", "operator,admin"},
	[TASKER_LEVEL_ADMIN] = {"tasker_admin", "admin", "admin"},
	[TASKER_LEVEL_WORKER] = {"tasker_worker", "worker", ""},	/* no namespace grant */
};

/*
 * reset_at_end: at the end of any transaction no handler is running, even
 * when an error escaped past the code that would have said so.
 */
static void
reset_at_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		handler_depth = 0;
		current_caller = InvalidOid;
		caller_search_path = NULL;
	}
}

/*
 * ensure_reset_at_end: register reset_at_end once per backend.
 */
static void
ensure_reset_at_end(void)
{
	static bool registered = false;

	if (!registered)
	{
		RegisterXactCallback(reset_at_end, NULL);
		registered = true;
	}
}

/*
 * tasker_caller: the role that called the public function being served,
 * or the current user outside one.
 */
Oid
tasker_caller(void)
{
	return OidIsValid(current_caller) ? current_caller : GetUserId();
}

/*
 * tasker_api_enter: start serving a call of a public function: remember
 * the caller, then act as the extension's owner under the pinned
 * search_path.  An error before tasker_api_leave is undone by the
 * (sub)transaction abort.
 */
void
tasker_api_enter(TaskerApiScope *scope)
{
	Oid			nsp;
	Oid			owner;

	tasker_extension(&nsp, &owner);
	ensure_reset_at_end();
	GetUserIdAndSecContext(&scope->save_userid, &scope->save_sec);
	scope->save_caller = current_caller;
	current_caller = scope->save_userid;
	scope->save_caller_path = caller_search_path;
	caller_search_path = namespace_search_path ?
		MemoryContextStrdup(TopTransactionContext, namespace_search_path) : NULL;
	scope->gucnest = tasker_push_statement_settings();
	SetUserIdAndSecContext(owner, scope->save_sec | SECURITY_LOCAL_USERID_CHANGE);
}

/*
 * tasker_api_leave: back to the caller's identity and settings.
 */
void
tasker_api_leave(TaskerApiScope *scope)
{
	SetUserIdAndSecContext(scope->save_userid, scope->save_sec);
	AtEOXact_GUC(true, scope->gucnest);
	current_caller = scope->save_caller;
	caller_search_path = scope->save_caller_path;
}

/*
 * tasker_use_caller_search_path: inside an API scope, look up names (and
 * only that: no user code may run until tasker_restore_search_path) with
 * the caller's search_path.  Returns the GUC nest level to pop, or 0.
 */
int
tasker_use_caller_search_path(void)
{
	if (caller_search_path == NULL)
		return 0;
	return tasker_push_search_path(caller_search_path);
}

/*
 * tasker_restore_search_path: undo tasker_use_caller_search_path.
 */
void
tasker_restore_search_path(int nest)
{
	if (nest > 0)
		AtEOXact_GUC(true, nest);
}

/*
 * tasker_level_role: the group role of a level, or InvalidOid when it was
 * dropped (or the schema predates the levels).
 */
Oid
tasker_level_role(TaskerLevel level)
{
	return get_role_oid(levels[level].role, true);
}

/*
 * tasker_sees_all_namespaces: whether a role sees and may act in every
 * namespace: isolation is off, or the role is a superuser or has the
 * privileges of the extension's owner.
 */
bool
tasker_sees_all_namespaces(Oid role)
{
	Oid			nsp;
	Oid			owner;

	if (!tasker_namespace_isolation || superuser_arg(role))
		return true;
	tasker_extension(&nsp, &owner);
	return has_privs_of_role(role, owner);
}

/*
 * namespace_granted: whether role holds, directly or through a role whose
 * privileges it has, a grant on a namespace that includes level.  A schema
 * without the grants table (0.1.0, not yet updated) grants nothing.  SPI
 * must be connected.
 */
static bool
namespace_granted(Oid role, const char *namespace, TaskerLevel level)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, OIDOID};
	Datum		values[3] = {CStringGetTextDatum(namespace),
		CStringGetTextDatum(levels[level].granted_by), ObjectIdGetDatum(role)};

	if (!tasker_has_column("tasker_namespace_grants", "level"))
		return false;
	return tasker_run_plan(tasker_keep_plan(&namespace_grant_plan,
			 "SELECT 1 FROM @extschema@.tasker_namespace_grants g"
			 " WHERE g.namespace = $1"
			 "   AND g.level = ANY (pg_catalog.string_to_array($2, ','))"
			 "   AND pg_catalog.pg_has_role($3, g.grantee::oid, 'USAGE')"
			 " LIMIT 1",
			 3, argtypes),
		values, NULL, SPI_OK_SELECT) > 0;
}

/*
 * tasker_may_in_namespace: whether the caller may act at level in a
 * namespace: it sees them all, or holds a grant there.  SPI connected.
 */
bool
tasker_may_in_namespace(const char *namespace, TaskerLevel level)
{
	Oid			caller = tasker_caller();

	return tasker_sees_all_namespaces(caller) ||
		namespace_granted(caller, namespace, level);
}

/*
 * tasker_require_namespace: raise unless the caller may act at level in a
 * namespace (always, with isolation off).  action completes "permission
 * denied to ...", e.g. "create tasks in".  SPI must be connected.
 */
void
tasker_require_namespace(const char *namespace, TaskerLevel level,
						 const char *action)
{
	if (tasker_may_in_namespace(namespace, level))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s namespace \"%s\"", action, namespace),
			 errdetail("tasker.namespace_isolation is on, and role \"%s\" holds no %s grant on namespace \"%s\".",
					   tasker_role_name(tasker_caller()), levels[level].name, namespace),
			 errhint("A superuser grants one with tasker_grant_namespace(role, namespace, level).")));
}

/*
 * may_control: whether the caller has the privileges of a task's owner,
 * or of the operator level.
 */
static bool
may_control(Oid owner)
{
	Oid			caller = tasker_caller();
	Oid			operator_role = tasker_level_role(TASKER_LEVEL_OPERATOR);

	return superuser_arg(caller) || has_privs_of_role(caller, owner) ||
		(OidIsValid(operator_role) && has_privs_of_role(caller, operator_role));
}

/*
 * tasker_require_task_control: raise unless the caller may control the
 * task (a missing task is left for the caller's own lookup to report):
 * it has the privileges of the task's template owner or of
 * tasker_operator and, under namespace isolation, an operator grant on the
 * task's namespace.  Runs inside an API scope, with SPI connected.
 */
void
tasker_require_task_control(int64 task_id, const char *action)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};
	bool		isnull;
	Oid			owner;
	char	   *namespace;

	tasker_run_plan(tasker_keep_plan(&task_owner_plan,
			 "SELECT nt.owner::oid, ns.name::text FROM @extschema@.tasker_tasks t"
			 "  JOIN @extschema@.tasker_named_tasks nt USING (named_task_id)"
			 "  JOIN @extschema@.tasker_task_namespaces ns"
			 "    ON ns.task_namespace_id = nt.task_namespace_id"
			 " WHERE t.task_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	namespace = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!may_control(owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s task " INT64_FORMAT, action, task_id),
				 errdetail("The task's template belongs to role \"%s\".", tasker_role_name(owner)),
				 errhint("Only that role, its members, members of tasker_operator and superusers may control its tasks.")));
	if (!tasker_may_in_namespace(namespace, TASKER_LEVEL_OPERATOR))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s task " INT64_FORMAT, action, task_id),
				 errdetail("tasker.namespace_isolation is on, and role \"%s\" holds no operator grant on the task's namespace \"%s\".",
						   tasker_role_name(tasker_caller()), namespace),
				 errhint("A superuser grants one with tasker_grant_namespace(role, namespace, 'operator').")));
}

/*
 * tasker_require_step_control: tasker_require_task_control for the task
 * of a step.
 */
void
tasker_require_step_control(int64 step_id, const char *action)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(step_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&step_task_plan,
			 "SELECT task_id FROM @extschema@.tasker_workflow_steps"
			 " WHERE workflow_step_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	tasker_require_task_control(DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 1, &isnull)),
								action);
}

/*
 * tasker_run_as_filter: the role whose tasks tasker_run_steps may run for
 * the caller, or InvalidOid for all (a superuser, a worker, a member of
 * tasker_operator).  Under namespace isolation a role that does not see
 * every namespace may not run steps by the batch at all (the claim does
 * not filter by namespace): it raises.
 */
Oid
tasker_run_as_filter(void)
{
	Oid			caller = tasker_caller();
	Oid			operator_role = tasker_level_role(TASKER_LEVEL_OPERATOR);

	if (!tasker_sees_all_namespaces(caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to run steps of every namespace"),
				 errdetail("tasker.namespace_isolation is on, and role \"%s\" does not see every namespace.",
						   tasker_role_name(caller)),
				 errhint("Run your tasks one at a time with tasker_run_task, or let the background workers run them.")));
	if (superuser_arg(caller) ||
		(OidIsValid(operator_role) && has_privs_of_role(caller, operator_role)))
		return InvalidOid;
	return caller;
}

/*
 * tasker_refuse_in_handler: raise when called from inside a step handler.
 */
void
tasker_refuse_in_handler(const char *function)
{
	if (handler_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s cannot be called from a step handler", function),
				 errdetail("A step handler is running in this transaction; running steps inside it would nest one batch in another."),
				 errhint("Create the task from the handler and let the workers run it, or return and let a later step continue.")));
}

/*
 * tasker_note_change: a control moved a task or a step.  Counted only
 * inside a handler: the batch running it must then look again at what it
 * claimed.
 */
void
tasker_note_change(void)
{
	if (handler_depth > 0)
		nested_changes++;
}

/*
 * tasker_nested_changes: how many changes controls made inside handlers.
 */
uint64
tasker_nested_changes(void)
{
	return nested_changes;
}

/*
 * refuse_handler: the stored handler cannot be called as it is.
 */
static void
refuse_handler(Oid function, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
			 errmsg("step handler %s cannot be called", format_procedure(function)),
			 errdetail("%s", why),
			 errhint("Register the template again with a function (step jsonb) RETURNS jsonb that its owner may execute.")));
}

/*
 * tasker_handler_signature_problem: NULL when a function can be a step
 * handler, that is (jsonb) RETURNS jsonb, not a set, not a procedure or
 * aggregate; else a sentence fragment saying what is wrong ("it takes
 * integer"), or "it does not exist".
 */
char *
tasker_handler_signature_problem(Oid fn)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	char	   *problem = NULL;

	if (!HeapTupleIsValid(tuple))
		return pstrdup("it does not exist");
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	if (proc->prokind != PROKIND_FUNCTION)
		problem = pstrdup(proc->prokind == PROKIND_PROCEDURE ?
						  "it is a procedure" : "it is an aggregate or window function");
	else if (proc->pronargs == 0)
		problem = pstrdup("it takes no argument");
	else if (proc->pronargs > 1)
		problem = psprintf("it takes %d arguments", (int) proc->pronargs);
	else if (proc->proargtypes.values[0] != JSONBOID)
		problem = psprintf("it takes %s",
						   format_type_be(proc->proargtypes.values[0]));
	else if (proc->proretset)
		problem = pstrdup("it returns a set");
	else if (proc->prorettype != JSONBOID)
		problem = psprintf("it returns %s", format_type_be(proc->prorettype));
	ReleaseSysCache(tuple);
	return problem;
}

/*
 * tasker_role_name: a role's name, or "(dropped role OID)" for a role that
 * no longer exists, for messages.
 */
const char *
tasker_role_name(Oid role)
{
	const char *name = GetUserNameFromId(role, true);

	return name ? name : psprintf("(dropped role %u)", role);
}

/*
 * definer_problem: NULL unless fn is SECURITY DEFINER and owned by a role
 * whose privileges role lacks (a superuser has every role's): registering
 * or running it as a handler would then act with more rights than role's.
 */
static char *
definer_problem(Oid fn, Oid role)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	char	   *problem = NULL;

	if (!HeapTupleIsValid(tuple))
		return NULL;
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	if (proc->prosecdef && !has_privs_of_role(role, proc->proowner))
		problem = psprintf("function %s is SECURITY DEFINER and belongs to role \"%s\", whose privileges role \"%s\" does not have",
						   format_procedure(fn), tasker_role_name(proc->proowner),
						   tasker_role_name(role));
	ReleaseSysCache(tuple);
	return problem;
}

/*
 * tasker_handler_access_problem: NULL when a role may call a function as a
 * step handler, that is, has USAGE on its schema and EXECUTE on it, and
 * the function is not SECURITY DEFINER for a role whose privileges it
 * lacks; else a sentence fragment saying what is wrong.
 */
char *
tasker_handler_access_problem(Oid fn, Oid role)
{
	Oid			nsp = get_func_namespace(fn);

	if (OidIsValid(nsp) &&
		tasker_namespace_aclcheck(nsp, role, ACL_USAGE) != ACLCHECK_OK)
		return psprintf("role \"%s\" has no USAGE privilege on schema \"%s\"",
						tasker_role_name(role), get_namespace_name(nsp));
	if (tasker_proc_aclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
		return psprintf("role \"%s\" has no EXECUTE privilege on function %s",
						tasker_role_name(role), format_procedure(fn));
	return definer_problem(fn, role);
}

/*
 * tasker_check_handler: check a stored handler against the catalog before
 * calling it: the function exists, takes one jsonb and returns one jsonb,
 * is a plain function, and the owner (an existing role) may use its
 * schema and execute it.  Raises; never trusts the stored OID.
 */
void
tasker_check_handler(Oid function, Oid owner)
{
	HeapTuple	tup;
	Form_pg_proc p;
	bool		shape_ok;
	char	   *problem;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of the step's template no longer exists"),
				 errdetail("The template was registered by role OID %u, which has been dropped.", owner),
				 errhint("Register the template again as an existing role.")));
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("step handler function %u does not exist", function),
				 errdetail("The function was dropped after the template was registered."),
				 errhint("Create the function again and register the template again.")));
	p = (Form_pg_proc) GETSTRUCT(tup);
	shape_ok = p->prokind == PROKIND_FUNCTION && !p->proretset &&
		p->pronargs == 1 && p->proargtypes.values[0] == JSONBOID &&
		p->prorettype == JSONBOID;
	ReleaseSysCache(tup);
	if (!shape_ok)
		refuse_handler(function, "A step handler must be a function (step jsonb) RETURNS jsonb.");
	problem = tasker_handler_access_problem(function, owner);
	if (problem != NULL)
		refuse_handler(function, psprintf("The template's owner cannot call it: %s.", problem));
}

/*
 * tasker_handler_enter: start a handler call as owner, sandboxed.  Must be
 * paired with tasker_handler_leave (success) or tasker_handler_abandon
 * (after the subtransaction holding the call rolled back).
 */
void
tasker_handler_enter(TaskerHandlerScope *scope, Oid owner)
{
	ensure_reset_at_end();
	GetUserIdAndSecContext(&scope->save_userid, &scope->save_sec);
	scope->save_caller = current_caller;
	scope->gucnest = tasker_push_user_settings();
	SetUserIdAndSecContext(owner, scope->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	current_caller = owner;
	handler_depth++;
}

/*
 * tasker_handler_leave: undo every setting the handler changed, then get
 * back the identity and caller from before the call.
 */
void
tasker_handler_leave(TaskerHandlerScope *scope)
{
	AtEOXact_GUC(false, scope->gucnest);
	tasker_handler_abandon(scope);
}

/*
 * tasker_handler_abandon: after the handler's subtransaction rolled back
 * (which popped its GUC nest level and identity already), restore what
 * the rollback does not.
 */
void
tasker_handler_abandon(TaskerHandlerScope *scope)
{
	SetUserIdAndSecContext(scope->save_userid, scope->save_sec);
	current_caller = scope->save_caller;
	handler_depth--;
	if (handler_depth < 0)
		handler_depth = 0;
}

/*
 * tasker_clear_session_leftovers: in a background worker, drop what a
 * handler left at session level: advisory locks (tasker takes none at
 * session level) and prepared statements (tasker prepares none by name).
 * In a user's session (tasker_run_task) they belong to the caller.
 */
void
tasker_clear_session_leftovers(void)
{
	if (!IsBackgroundWorker)
		return;
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
}

/*
 * tasker_require_arg: raise a clear error when argument n of an SQL
 * function, called name, is null.
 */
void
tasker_require_arg(FunctionCallInfo fcinfo, int n, const char *name,
				   const char *hint)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" must not be null", name),
				 errdetail("The function was called with a null %s.", name),
				 errhint("%s", hint)));
}
