/*-------------------------------------------------------------------------
 *
 * pause.c
 *		Pausing and resuming tasks and namespaces (issue 11):
 *		tasker_pause_task, tasker_resume_task, tasker_pause_namespace,
 *		tasker_resume_namespace.
 *
 * Rules:
 * - A paused task's steps are not claimed by any handler kind; steps
 *   already running finish and are recorded, and a step their completion
 *   readies waits too.  The lifecycle does the holding (step.c:
 *   tasker_pause_tasks, tasker_resume_tasks) and never fails a paused task
 *   for want of ready steps.
 * - Pausing a namespace pauses its unfinished tasks (paused_by
 *   'namespace') and every task created in it until it is resumed;
 *   resuming it resumes those, not the tasks paused one by one.
 * - Every pause and resume writes a row of tasker_pause_log and sends an
 *   event (task.paused, task.resumed, namespace.paused,
 *   namespace.resumed) when the transaction commits.
 * - Pausing or resuming a task needs the right to control it; a namespace
 *   needs the right to control every task of it that it holds.
 * Task rows are locked in task_id order, after the control's intent lock,
 * the lock order of every control.
 *
 * IDENTIFICATION
 *		src/pause.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "events.h"
#include "notify.h"
#include "pause.h"
#include "security.h"
#include "spi_util.h"
#include "step.h"

static SPIPlanPtr log_plan;
static SPIPlanPtr task_event_plan;
static SPIPlanPtr ns_event_plan;
static SPIPlanPtr ns_mark_plan;
static SPIPlanPtr ns_tasks_plan;

/*
 * log_pause: one row of tasker_pause_log.
 */
static void
log_pause(int64 task_id, const char *namespace, const char *action,
		  const char *reason, int tasks)
{
	Oid			argtypes[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID};
	Datum		values[5] = {Int64GetDatum(task_id),
		namespace ? CStringGetTextDatum(namespace) : (Datum) 0,
		CStringGetTextDatum(action),
		reason ? CStringGetTextDatum(reason) : (Datum) 0,
	Int32GetDatum(tasks)};
	char		nulls[5] = {task_id ? ' ' : 'n', namespace ? ' ' : 'n', ' ',
	reason ? ' ' : 'n', ' '};

	tasker_run_plan(tasker_keep_plan(&log_plan,
			 "INSERT INTO @extschema@.tasker_pause_log (task_id, namespace, action, reason, tasks)"
			 " VALUES ($1, $2, $3, $4, $5)",
			 5, argtypes),
		values, nulls, SPI_OK_INSERT);
}

/*
 * announce_task: queue task.paused or task.resumed for a task (in the
 * task's span, trace.c, when it has a trace).
 */
static void
announce_task(const char *event, int64 task_id, const char *reason)
{
	Oid			argtypes[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		values[3] = {CStringGetTextDatum(event), Int64GetDatum(task_id),
	reason ? CStringGetTextDatum(reason) : (Datum) 0};
	char		nulls[3] = {' ', ' ', reason ? ' ' : 'n'};

	tasker_run_plan(tasker_keep_plan(&task_event_plan,
			 "SELECT jsonb_strip_nulls(jsonb_build_object('event', $1, 'task_id', t.task_id,"
			 "         'task_name', nt.name, 'namespace', ns.name, 'reason', $3,"
			 "         'at', clock_timestamp(), 'trace_id', t.trace_id,"
			 "         'span_id', @extschema@.tasker_span_id(t.trace_id, t.task_id)))::text"
			 "  FROM @extschema@.tasker_tasks t"
			 "  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id"
			 "  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id"
			 " WHERE t.task_id = $2",
			 3, argtypes),
		values, nulls, SPI_OK_SELECT);
	if (SPI_processed == 1)
		tasker_queue_event(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
}

/*
 * announce_namespace: queue namespace.paused or namespace.resumed.
 */
static void
announce_namespace(const char *event, const char *namespace, int tasks)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3] = {CStringGetTextDatum(event), CStringGetTextDatum(namespace),
	Int32GetDatum(tasks)};

	tasker_run_plan(tasker_keep_plan(&ns_event_plan,
			 "SELECT jsonb_build_object('event', $1, 'namespace', $2, 'tasks', $3,"
			 "         'at', clock_timestamp())::text",
			 3, argtypes),
		values, NULL, SPI_OK_SELECT);
	tasker_queue_event(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
}

/*
 * tasker_pause_task: see the file header.  Returns false when the task
 * is already paused or finished.  Runs inside an API scope.
 */
bool
tasker_pause_task(int64 task_id, const char *reason)
{
	int			n;

	SPI_connect();
	tasker_require_task_control(task_id, "pause");
	tasker_lock_tasks(&task_id, 1);
	(void) tasker_pause_tasks(&task_id, 1, "task", reason, &n);
	if (n > 0)
	{
		log_pause(task_id, NULL, "paused", reason, 1);
		announce_task("task.paused", task_id, reason);
	}
	SPI_finish();
	return n > 0;
}

/*
 * tasker_resume_task: see the file header.  Returns false when the task
 * was not paused.  Runs inside an API scope.
 */
bool
tasker_resume_task(int64 task_id)
{
	int			n;

	SPI_connect();
	tasker_require_task_control(task_id, "resume");
	tasker_lock_tasks(&task_id, 1);
	(void) tasker_resume_tasks(&task_id, 1, NULL, &n);
	if (n > 0)
	{
		log_pause(task_id, NULL, "resumed", NULL, 1);
		announce_task("task.resumed", task_id, NULL);
		tasker_finalize_task(task_id);
		tasker_wake_workers_at_commit();
	}
	SPI_finish();
	return n > 0;
}

/*
 * mark_namespace: set or clear a namespace's paused_at; false when it
 * already was so.  An unknown namespace is an error.
 */
static bool
mark_namespace(const char *namespace, bool pause)
{
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		values[2] = {CStringGetTextDatum(namespace), BoolGetDatum(pause)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&ns_mark_plan,
			 "WITH old AS (SELECT task_namespace_id, paused_at IS NOT NULL AS was"
			 "               FROM @extschema@.tasker_task_namespaces WHERE name = $1 FOR UPDATE)"
			 "UPDATE @extschema@.tasker_task_namespaces n"
			 "   SET paused_at = CASE WHEN $2 THEN COALESCE(n.paused_at, clock_timestamp()) END"
			 "  FROM old WHERE n.task_namespace_id = old.task_namespace_id"
			 " RETURNING old.was",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("namespace \"%s\" does not exist", namespace),
				 errdetail("No template has been registered in that namespace."),
				 errhint("SELECT DISTINCT namespace FROM tasker_templates lists the namespaces.")));
	return DatumGetBool(tasker_col(0, 1, &isnull)) != pause;
}

/*
 * namespace_tasks: the unfinished tasks of a namespace (paused by it
 * only, when by_namespace), in task_id order, each checked for the
 * caller's right to control it.
 */
static int64 *
namespace_tasks(const char *namespace, bool by_namespace, const char *action, int *n)
{
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		values[2] = {CStringGetTextDatum(namespace), BoolGetDatum(by_namespace)};
	int64	   *ids;
	int			i;

	tasker_run_plan(tasker_keep_plan(&ns_tasks_plan,
			 "SELECT t.task_id FROM @extschema@.tasker_tasks t"
			 "  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id"
			 "  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id"
			 " WHERE ns.name = $1 AND t.current_state IN ('pending', 'in_progress', 'error')"
			 "   AND (NOT $2 OR t.paused_by = 'namespace')"
			 " ORDER BY t.task_id",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	ids = tasker_result_int8s(n);
	for (i = 0; i < *n; i++)
		tasker_require_task_control(ids[i], action);
	return ids;
}

/*
 * tasker_pause_namespace: see the file header.  Returns false when the
 * namespace already was paused.  Runs inside an API scope.
 */
bool
tasker_pause_namespace(const char *namespace)
{
	int			n;
	int			paused = 0;
	int64	   *ids;
	bool		changed;

	SPI_connect();
	changed = mark_namespace(namespace, true);
	if (changed)
	{
		ids = namespace_tasks(namespace, false, "pause", &n);
		tasker_lock_tasks(ids, n);
		(void) tasker_pause_tasks(ids, n, "namespace", NULL, &paused);
		log_pause(0, namespace, "paused", NULL, paused);
		announce_namespace("namespace.paused", namespace, paused);
	}
	SPI_finish();
	return changed;
}

/*
 * tasker_resume_namespace: see the file header.  Returns false when the
 * namespace was not paused.  Runs inside an API scope.
 */
bool
tasker_resume_namespace(const char *namespace)
{
	int			n;
	int			resumed = 0;
	int64	   *ids;
	int64	   *done;
	bool		changed;

	SPI_connect();
	changed = mark_namespace(namespace, false);
	if (changed)
	{
		ids = namespace_tasks(namespace, true, "resume", &n);
		tasker_lock_tasks(ids, n);
		done = tasker_resume_tasks(ids, n, "namespace", &resumed);
		log_pause(0, namespace, "resumed", NULL, resumed);
		announce_namespace("namespace.resumed", namespace, resumed);
		tasker_finalize_tasks(done, resumed);
		tasker_wake_workers_at_commit();
	}
	SPI_finish();
	return changed;
}
