/*-------------------------------------------------------------------------
 *
 * state.c
 *		The task and step state machines: the one place a state changes.
 *
 * tasker_transition() validates a requested transition against the table
 * of allowed transitions and its guards, writes the transition row (with
 * from_state, a sort_key 10 above the previous one and exactly one
 * most_recent row per entity), updates the state column kept on the
 * task or step row, and queues the event that announces it.  Everything
 * happens in the caller's transaction: a rolled-back transition leaves no
 * row and sends no notification.  A transition to the current state is a
 * no-op that writes nothing and returns false.
 *
 * tasker_start_steps() and tasker_complete_steps() make the two
 * transitions of every step's run (pending or error -> in_progress, and
 * in_progress -> complete) for a whole batch in one statement each: the
 * same rows, columns and events as one tasker_transition per step, set
 * based.  They refuse (raise) when any step is not in the state the batch
 * expects, and the batch then falls back to tasker_transition, one step
 * at a time.
 *
 * The same functions count what they moved, for tasker_metrics() (the
 * counters in shmem.c, added when the transaction commits): tasks that
 * complete, fail or are cancelled, and every step attempt that ends (a
 * step leaving in_progress) by its handler kind and outcome, with its run
 * time since the attempt started (last_attempted_at); attempts started
 * after the first count as retries.  A failed attempt is a retry or a
 * final failure as its caller decided (tasker_fail_attempt).  A step
 * transition that ends an attempt also keeps the attempt's start
 * (attempt_started_at: the in_progress transition before it), and a task
 * transition that finishes the task keeps the task's created_at
 * (task_created_at), for the analytics.
 *
 * The event of a transition of a task in a W3C trace names the trace and
 * a span (trace.c): the attempt's, when the transition starts an attempt
 * (its own sort_key) or ends one (the sort_key 10 below), else the task's.
 *
 * The entity row is locked FOR NO KEY UPDATE first, so two sessions that
 * move the same task or step serialise here and the second sees the
 * first's state; the key-share locks that inserting transition rows takes
 * through the foreign keys do not conflict with it.  Callers lock a task
 * row before its step rows (the lock order in control.c's header).
 *
 * IDENTIFICATION
 *		src/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "events.h"
#include "security.h"
#include "shmem.h"
#include "state.h"
#include "trace.h"

static const char *const state_names[TASKER_NUM_STATES] = {
	"pending",
	"in_progress",
	"complete",
	"error",
	"cancelled",
	"resolved_manually",
	"skipped"
};

#define S(st) (1 << (st))

/* Allowed next states of a task, indexed by the current state. */
static const int task_next[TASKER_NUM_STATES] = {
	[TASKER_PENDING] = S(TASKER_IN_PROGRESS) | S(TASKER_CANCELLED) | S(TASKER_ERROR),
	[TASKER_IN_PROGRESS] = S(TASKER_COMPLETE) | S(TASKER_ERROR) |
	S(TASKER_CANCELLED) | S(TASKER_PENDING),
	[TASKER_COMPLETE] = 0,
	[TASKER_ERROR] = S(TASKER_PENDING) | S(TASKER_RESOLVED_MANUALLY) | S(TASKER_CANCELLED),
	[TASKER_CANCELLED] = 0,
	[TASKER_RESOLVED_MANUALLY] = S(TASKER_CANCELLED)
};

/* Allowed next states of a step, indexed by the current state. */
static const int step_next[TASKER_NUM_STATES] = {
	[TASKER_PENDING] = S(TASKER_IN_PROGRESS) | S(TASKER_ERROR) |
	S(TASKER_CANCELLED) | S(TASKER_RESOLVED_MANUALLY) | S(TASKER_SKIPPED),
	[TASKER_IN_PROGRESS] = S(TASKER_COMPLETE) | S(TASKER_ERROR) | S(TASKER_CANCELLED) |
	S(TASKER_PENDING),			/* a leased step given back by its worker */
	[TASKER_COMPLETE] = 0,
	[TASKER_ERROR] = S(TASKER_PENDING) | S(TASKER_RESOLVED_MANUALLY),
	[TASKER_CANCELLED] = S(TASKER_RESOLVED_MANUALLY),
	[TASKER_RESOLVED_MANUALLY] = 0,
	[TASKER_SKIPPED] = 0
};

/* What the locking query found about the entity being moved. */
typedef struct EntityRow
{
	TaskerState state;
	int64		task_id;
	char	   *task_name;
	char	   *namespace;
	char	   *step_name;		/* steps only */
	int32		attempts;		/* steps only */
	char	   *kind;			/* steps only: handler_kind */
	double		run_seconds;	/* steps only: since the attempt started */
	char	   *trace_id;		/* the task's trace; NULL: none */
} EntityRow;

/* Saved plans, prepared on first use in each backend. */
static SPIPlanPtr lock_task_plan;
static SPIPlanPtr lock_step_plan;
static SPIPlanPtr task_guard_plan;
static SPIPlanPtr step_guard_plan;
static SPIPlanPtr task_insert_plan;
static SPIPlanPtr step_insert_plan;
static SPIPlanPtr task_update_plan;
static SPIPlanPtr step_update_plan;
static SPIPlanPtr release_children_plan;
static SPIPlanPtr release_children_010_plan;
static SPIPlanPtr start_steps_plan;
static SPIPlanPtr complete_steps_plan;

/*
 * tasker_state_name: the SQL name of a state.
 */
const char *
tasker_state_name(TaskerState state)
{
	Assert(state >= 0 && state < TASKER_NUM_STATES);
	return state_names[state];
}

/*
 * tasker_state_from_name: parse a state name, raising a clear error for an
 * unknown one.
 */
TaskerState
tasker_state_from_name(const char *name)
{
	int			i;

	for (i = 0; i < TASKER_NUM_STATES; i++)
		if (strcmp(name, state_names[i]) == 0)
			return (TaskerState) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown state \"%s\"", name),
			 errdetail("The states are pending, in_progress, complete, error, cancelled, resolved_manually and skipped (steps only)."),
			 errhint("State names are lower case.")));
	return TASKER_PENDING;		/* keep the compiler quiet */
}

/*
 * tasker_report_missing: raise UNDEFINED_OBJECT for a task or step id that
 * names no row.
 */
void
tasker_report_missing(TaskerEntity entity, int64 id)
{
	const char *table = (entity == TASKER_ENTITY_TASK) ? "tasker_tasks" : "tasker_workflow_steps";

	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("%s " INT64_FORMAT " does not exist",
					entity == TASKER_ENTITY_TASK ? "task" : "step", id),
			 errdetail("No row of %s has that id.", table),
			 errhint("Look it up in %s.", table)));
}

/*
 * tasker_transition_allowed: whether the state machine of the entity allows
 * moving from one state to another (guards aside).
 */
bool
tasker_transition_allowed(TaskerEntity entity, TaskerState from, TaskerState to)
{
	const int  *next = (entity == TASKER_ENTITY_TASK) ? task_next : step_next;

	return (next[from] & S(to)) != 0;
}

/*
 * get_text: column n of the first result row as a palloc'd string (NULL
 * when the value is null).
 */
static char *
get_text(int n)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, n);
}

/*
 * get_int: column n of the first result row as an int64 (0 when null).
 */
static int64
get_int(int n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  n, &isnull);

	if (isnull)
		return 0;
	switch (SPI_gettypeid(SPI_tuptable->tupdesc, n))
	{
		case INT8OID:
			return DatumGetInt64(d);
		case INT4OID:
			return DatumGetInt32(d);
		default:
			elog(ERROR, "unexpected column type in tasker query");
	}
	return 0;
}

/*
 * get_float: column n of the first result row, a float8 (0 when null).
 */
static double
get_float(int n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  n, &isnull);

	return isnull ? 0 : DatumGetFloat8(d);
}

/*
 * What lock_entity reads, the task's trace id given as an expression over
 * t (the schema of 0.1.0, not yet updated, has none).
 */
#define LOCK_TASK_SQL(trace_id) \
	"SELECT t.current_state::text, t.task_id, nt.name::text, ns.name::text," \
	"       NULL, NULL, NULL, NULL, " trace_id \
	"  FROM @extschema@.tasker_tasks t" \
	"  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id" \
	"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	" WHERE t.task_id = $1 FOR NO KEY UPDATE OF t"
#define LOCK_STEP_SQL(trace_id) \
	"SELECT s.current_state::text, s.task_id, nt.name::text, ns.name::text," \
	"       st.name::text, s.attempts, s.handler_kind," \
	"       extract(epoch FROM clock_timestamp() - s.last_attempted_at)::float8, " trace_id \
	"  FROM @extschema@.tasker_workflow_steps s" \
	"  JOIN @extschema@.tasker_named_steps st ON st.named_step_id = s.named_step_id" \
	"  JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id" \
	"  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id" \
	"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	" WHERE s.workflow_step_id = $1 FOR NO KEY UPDATE OF s"

/*
 * lock_entity: lock the task or step row and read what a transition needs.
 */
static void
lock_entity(TaskerEntity entity, int64 id, EntityRow *row)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	SPIPlanPtr	plan;

	/* the catalog is read only when a plan is first prepared */
	bool		traced = (entity == TASKER_ENTITY_TASK ? lock_task_plan : lock_step_plan) != NULL ||
		tasker_has_column("tasker_tasks", "trace_id");

	if (entity == TASKER_ENTITY_TASK)
		plan = tasker_keep_plan(&lock_task_plan, traced ?
								LOCK_TASK_SQL("t.trace_id") : LOCK_TASK_SQL("NULL::text"),
								1, argtypes);
	else
		plan = tasker_keep_plan(&lock_step_plan, traced ?
								LOCK_STEP_SQL("t.trace_id") : LOCK_STEP_SQL("NULL::text"),
								1, argtypes);
	tasker_run_plan(plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		tasker_report_missing(entity, id);
	row->state = tasker_state_from_name(get_text(1));
	row->task_id = get_int(2);
	row->task_name = get_text(3);
	row->namespace = get_text(4);
	row->step_name = (entity == TASKER_ENTITY_STEP) ? get_text(5) : NULL;
	row->attempts = (entity == TASKER_ENTITY_STEP) ? (int32) get_int(6) : 0;
	row->kind = (entity == TASKER_ENTITY_STEP) ? get_text(7) : NULL;
	row->run_seconds = (entity == TASKER_ENTITY_STEP) ? get_float(8) : 0;
	row->trace_id = get_text(9);
}

/*
 * count_unfinished: for a task going to complete, its steps that are not
 * complete or resolved; for a step going to in_progress, its parents that
 * are not.
 */
static int64
count_unfinished(TaskerEntity entity, int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	SPIPlanPtr	plan;

	if (entity == TASKER_ENTITY_TASK)
		plan = tasker_keep_plan(&task_guard_plan,
							"SELECT count(*) FROM @extschema@.tasker_workflow_steps"
							" WHERE task_id = $1"
							"   AND current_state NOT IN " TASKER_FINISHED_STATES_SQL,
							1, argtypes);
	else
		plan = tasker_keep_plan(&step_guard_plan,
							"SELECT count(*) FROM @extschema@.tasker_workflow_step_edges e"
							"  JOIN @extschema@.tasker_workflow_steps p ON p.workflow_step_id = e.from_step_id"
							" WHERE e.to_step_id = $1"
							"   AND p.current_state NOT IN " TASKER_FINISHED_STATES_SQL,
							1, argtypes);
	tasker_run_plan(plan, values, NULL, SPI_OK_SELECT);
	return get_int(1);
}

/*
 * check_transition: raise OBJECT_NOT_IN_PREREQUISITE_STATE unless the state
 * machine allows the transition and its guard holds.
 */
static void
check_transition(TaskerEntity entity, int64 id, TaskerState from, TaskerState to)
{
	const char *what = (entity == TASKER_ENTITY_TASK) ? "task" : "step";
	int64		unfinished;

	if (!tasker_transition_allowed(entity, from, to))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s " INT64_FORMAT " cannot move from %s to %s",
						what, id, state_names[from], state_names[to]),
				 errdetail("The %s is in state \"%s\"; the requested state is \"%s\".",
						   what, state_names[from], state_names[to]),
				 errhint("SELECT * FROM tasker_allowed_transitions('%s') lists the allowed transitions.",
						 what)));

	if (entity == TASKER_ENTITY_TASK && to == TASKER_COMPLETE)
	{
		unfinished = count_unfinished(entity, id);
		if (unfinished > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("task " INT64_FORMAT " cannot complete", id),
					 errdetail("The task is in state \"%s\"; " INT64_FORMAT " of its steps are neither complete, resolved_manually nor skipped.",
							   state_names[from], unfinished),
					 errhint("Complete or resolve every step first.")));
	}
	else if (entity == TASKER_ENTITY_STEP && to == TASKER_IN_PROGRESS)
	{
		unfinished = count_unfinished(entity, id);
		if (unfinished > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("step " INT64_FORMAT " cannot start", id),
					 errdetail("The step is in state \"%s\"; " INT64_FORMAT " of its parents are neither complete, resolved_manually nor skipped.",
							   state_names[from], unfinished),
					 errhint("A step runs only after all of its dependencies.")));
	}
}

/*
 * A step's transition: clear the previous most_recent row and insert the
 * new one after it.  A transition out of in_progress ends an attempt, and
 * keeps when it started (the in_progress transition before it), so the
 * analytics read an attempt's run time from one row.  The second form is
 * for the schema of 0.1.0, not yet updated, which has no such column.
 */
#define STEP_INSERT_SQL \
	"WITH prev AS (" \
	"  UPDATE @extschema@.tasker_workflow_step_transitions" \
	"     SET most_recent = false, updated_at = now()" \
	"   WHERE workflow_step_id = $1 AND most_recent" \
	"  RETURNING sort_key, to_state, created_at)" \
	"INSERT INTO @extschema@.tasker_workflow_step_transitions" \
	" (workflow_step_id, task_id, from_state, to_state, metadata," \
	"  sort_key, created_at, attempt_started_at)" \
	" SELECT $1, $2, $3, $4, $5::jsonb," \
	"        COALESCE((SELECT max(sort_key) FROM prev), 0) + 10," \
	"        clock_timestamp()," \
	"        (SELECT max(created_at) FROM prev WHERE to_state = 'in_progress')" \
	" RETURNING created_at, sort_key"
#define STEP_INSERT_SQL_0_1_0 \
	"WITH prev AS (" \
	"  UPDATE @extschema@.tasker_workflow_step_transitions" \
	"     SET most_recent = false, updated_at = now()" \
	"   WHERE workflow_step_id = $1 AND most_recent" \
	"  RETURNING sort_key)" \
	"INSERT INTO @extschema@.tasker_workflow_step_transitions" \
	" (workflow_step_id, task_id, from_state, to_state, metadata," \
	"  sort_key, created_at)" \
	" SELECT $1, $2, $3, $4, $5::jsonb," \
	"        COALESCE((SELECT max(sort_key) FROM prev), 0) + 10," \
	"        clock_timestamp()" \
	" RETURNING created_at, sort_key"

/*
 * A task's transition: the same, and one that finishes the task (complete
 * or error) keeps the task's created_at (task_created_at), so the
 * analytics read a task's duration from one row; the second form is for
 * the schema of 0.1.0.
 */
#define TASK_PREV_SQL \
	"WITH prev AS (" \
	"  UPDATE @extschema@.tasker_task_transitions" \
	"     SET most_recent = false, updated_at = now()" \
	"   WHERE task_id = $1 AND most_recent" \
	"  RETURNING sort_key)" \
	"INSERT INTO @extschema@.tasker_task_transitions"
#define TASK_INSERT_SQL \
	TASK_PREV_SQL \
	" (task_id, from_state, to_state, metadata, sort_key, created_at," \
	"  task_created_at)" \
	" SELECT $1, $3, $4, $5::jsonb," \
	"        COALESCE((SELECT max(sort_key) FROM prev), 0) + 10," \
	"        clock_timestamp()," \
	"        CASE WHEN $4 IN ('complete', 'error') THEN" \
	"          (SELECT t.created_at FROM @extschema@.tasker_tasks t" \
	"            WHERE t.task_id = $1) END" \
	" RETURNING created_at, sort_key"
#define TASK_INSERT_SQL_0_1_0 \
	TASK_PREV_SQL \
	" (task_id, from_state, to_state, metadata, sort_key, created_at)" \
	" SELECT $1, $3, $4, $5::jsonb," \
	"        COALESCE((SELECT max(sort_key) FROM prev), 0) + 10," \
	"        clock_timestamp()" \
	" RETURNING created_at, sort_key"

/*
 * record_transition: clear the previous most_recent row and insert the new
 * one with a sort_key 10 above it (10 for the first); returns its
 * created_at, and its sort_key in *sort_key.
 */
static TimestampTz
record_transition(TaskerEntity entity, int64 id, int64 task_id,
				  TaskerState from, TaskerState to, const char *metadata_json,
				  int32 *sort_key)
{
	Oid			argtypes[5] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[5];
	SPIPlanPtr	plan;
	bool		isnull;

	/*
	 * One statement: the CTE clears the previous most_recent row (whose
	 * sort_key is the highest), and the insert numbers the new row after
	 * it.  The partial unique index on most_recent does not see the cleared
	 * row as a conflict, since this transaction has replaced it.
	 */
	if (entity == TASKER_ENTITY_TASK)
		/* the catalog is read only when the plan is first prepared */
		plan = tasker_keep_plan(&task_insert_plan,
								task_insert_plan != NULL ||
								tasker_has_column("tasker_task_transitions",
												  "task_created_at") ?
								TASK_INSERT_SQL : TASK_INSERT_SQL_0_1_0,
								5, argtypes);
	else
		/* the catalog is read only when the plan is first prepared */
		plan = tasker_keep_plan(&step_insert_plan,
								step_insert_plan != NULL ||
								tasker_has_column("tasker_workflow_step_transitions",
												  "attempt_started_at") ?
								STEP_INSERT_SQL : STEP_INSERT_SQL_0_1_0,
								5, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(task_id);
	values[2] = CStringGetTextDatum(state_names[from]);
	values[3] = CStringGetTextDatum(state_names[to]);
	values[4] = CStringGetTextDatum(metadata_json ? metadata_json : "{}");
	tasker_run_plan(plan, values, NULL, SPI_OK_INSERT_RETURNING);
	*sort_key = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 2, &isnull));
	return DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * update_entity: keep the state column, and the columns derived from the
 * state, in step with the transition just recorded.  A step that finishes
 * (complete or resolved_manually) releases one unfinished parent of each of
 * its children.
 */
static void
update_entity(TaskerEntity entity, int64 id, TaskerState to)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(id), CStringGetTextDatum(state_names[to])};

	if (entity == TASKER_ENTITY_TASK)
	{
		tasker_run_plan(tasker_keep_plan(&task_update_plan,
							   "UPDATE @extschema@.tasker_tasks"
							   "   SET current_state = $2, updated_at = now(),"
							   "       complete = CASE $2 WHEN 'complete' THEN true"
							   "                          WHEN 'pending' THEN false"
							   "                          ELSE complete END,"
							   "       completed_at = CASE WHEN $2 = 'complete' THEN clock_timestamp()"
							   "                           ELSE completed_at END"
							   " WHERE task_id = $1",
							   2, argtypes),
				  values, NULL, SPI_OK_UPDATE);
		return;
	}

	tasker_run_plan(tasker_keep_plan(&step_update_plan,
						   "UPDATE @extschema@.tasker_workflow_steps"
						   "   SET current_state = $2, updated_at = now(),"
						   "       in_process = ($2 = 'in_progress'),"
						   "       processed = ($2 IN " TASKER_FINISHED_STATES_SQL "),"
						   "       processed_at = CASE WHEN $2 IN " TASKER_FINISHED_STATES_SQL
						   "                           THEN clock_timestamp() ELSE processed_at END,"
						   "       next_attempt_at = CASE WHEN $2 = 'pending' THEN now() END,"
						   "       lease_expires_at = CASE WHEN $2 = 'in_progress'"
						   "                               THEN lease_expires_at END"
						   " WHERE workflow_step_id = $1",
						   2, argtypes),
			  values, NULL, SPI_OK_UPDATE);

	if ((to == TASKER_COMPLETE || to == TASKER_RESOLVED_MANUALLY || to == TASKER_SKIPPED) &&
		!tasker_has_column("tasker_workflow_steps", "delay_seconds"))
		tasker_run_plan(tasker_keep_plan(&release_children_010_plan,
							   "UPDATE @extschema@.tasker_workflow_steps c"
							   "   SET unfinished_parents = c.unfinished_parents - 1"
							   "  FROM @extschema@.tasker_workflow_step_edges e"
							   " WHERE e.from_step_id = $1"
							   "   AND c.workflow_step_id = e.to_step_id",
							   1, argtypes),
				  values, NULL, SPI_OK_UPDATE);
	else if (to == TASKER_COMPLETE || to == TASKER_RESOLVED_MANUALLY || to == TASKER_SKIPPED)
		tasker_run_plan(tasker_keep_plan(&release_children_plan,
							   "UPDATE @extschema@.tasker_workflow_steps c"
							   "   SET unfinished_parents = c.unfinished_parents - 1,"
							   "       next_attempt_at = " TASKER_RELEASE_DELAY_SQL("c", "1")
							   "  FROM @extschema@.tasker_workflow_step_edges e"
							   " WHERE e.from_step_id = $1"
							   "   AND c.workflow_step_id = e.to_step_id",
							   1, argtypes),
				  values, NULL, SPI_OK_UPDATE);
}

/*
 * count_task: count a task that completed, failed or was cancelled.
 */
static void
count_task(TaskerState to)
{
	if (to == TASKER_COMPLETE)
		tasker_count_tasks(TASKER_TASKS_COMPLETED, 1);
	else if (to == TASKER_ERROR)
		tasker_count_tasks(TASKER_TASKS_FAILED, 1);
	else if (to == TASKER_CANCELLED)
		tasker_count_tasks(TASKER_TASKS_CANCELLED, 1);
}

/*
 * count_attempt_end: count a step attempt of a kind (handler_kind) that
 * ended with an outcome after running for run_seconds; its run time goes
 * to the histogram unless it was cancelled.  A kind tasker does not know
 * is not counted.
 */
static void
count_attempt_end(const char *kind, TaskerAttemptOutcome outcome,
				  double run_seconds)
{
	int			k = tasker_step_kind(kind);

	if (k < 0)
		return;
	tasker_count_attempts((TaskerStepKind) k, outcome, 1);
	if (outcome != TASKER_ATTEMPT_CANCELLED)
		tasker_observe_step_seconds((TaskerStepKind) k, run_seconds);
}

/*
 * count_transition: count what a transition ended: a task's outcome, or
 * a step's attempt (it left in_progress; given back to pending, the
 * attempt does not count).  failure is the outcome of a move to error.
 */
static void
count_transition(TaskerEntity entity, const EntityRow *row, TaskerState to,
				 TaskerAttemptOutcome failure)
{
	if (entity == TASKER_ENTITY_TASK)
		count_task(to);
	else if (row->state == TASKER_IN_PROGRESS && to == TASKER_COMPLETE)
		count_attempt_end(row->kind, TASKER_ATTEMPT_COMPLETE, row->run_seconds);
	else if (row->state == TASKER_IN_PROGRESS && to == TASKER_ERROR)
		count_attempt_end(row->kind, failure, row->run_seconds);
	else if (row->state == TASKER_IN_PROGRESS && to == TASKER_CANCELLED)
		count_attempt_end(row->kind, TASKER_ATTEMPT_CANCELLED, 0);
}

/*
 * event_span: the span id (in out) of the span a transition's event
 * belongs to (trace.c): a step transition that starts an attempt (to
 * in_progress, at sort_key) or ends one (from in_progress: the attempt
 * whose start is the transition just before, 10 lower) is in that
 * attempt's span; every other transition is in the task's span.  NULL
 * when the task has no trace.
 */
static char *
event_span(const char *trace_id, int64 task_id, int64 step_id,
		   const char *from, const char *to, int32 sort_key,
		   char out[TASKER_SPAN_ID_LEN + 1])
{
	int32		serial = 0;

	if (trace_id == NULL)
		return NULL;
	if (step_id != 0 && strcmp(to, "in_progress") == 0)
		serial = sort_key;
	else if (step_id != 0 && from != NULL && strcmp(from, "in_progress") == 0)
		serial = sort_key - 10;
	tasker_trace_span_id(trace_id, task_id, serial != 0 ? step_id : 0, serial, out);
	return out;
}

/*
 * transition: tasker_transition, with the outcome a step attempt ending
 * in error counts as.
 */
static bool
transition(TaskerEntity entity, int64 id, TaskerState to,
		   const char *metadata_json, TaskerAttemptOutcome failure)
{
	EntityRow	row;
	TimestampTz at;
	int32		sort_key;
	char		span[TASKER_SPAN_ID_LEN + 1];

	SPI_connect();
	lock_entity(entity, id, &row);
	if (row.state == to)
	{
		SPI_finish();
		return false;
	}
	check_transition(entity, id, row.state, to);
	tasker_note_change();
	at = record_transition(entity, id, row.task_id, row.state, to, metadata_json,
						   &sort_key);
	update_entity(entity, id, to);
	count_transition(entity, &row, to, failure);

	tasker_notify_transition(entity == TASKER_ENTITY_STEP ? id : 0,
							 row.task_id, row.task_name, row.namespace,
							 row.step_name, state_names[row.state],
							 state_names[to], row.attempts, at, metadata_json,
							 row.trace_id,
							 event_span(row.trace_id, row.task_id,
										entity == TASKER_ENTITY_STEP ? id : 0,
										state_names[row.state], state_names[to],
										sort_key, span));
	SPI_finish();
	return true;
}

/*
 * tasker_transition: move a task or step to a new state.
 *
 * Returns false, writing nothing, when the entity is already in that state.
 * Raises UNDEFINED_OBJECT for an unknown id and
 * OBJECT_NOT_IN_PREREQUISITE_STATE for a transition that the state machine
 * or its guard refuses.  metadata_json (may be NULL) is stored on the
 * transition row.  Runs in the caller's transaction.  A step attempt
 * moved to error here counts as failed for good.
 */
bool
tasker_transition(TaskerEntity entity, int64 id, TaskerState to,
				  const char *metadata_json)
{
	return transition(entity, id, to, metadata_json, TASKER_ATTEMPT_FAILED);
}

/*
 * tasker_fail_attempt: move a step to error (tasker_transition), its
 * attempt, if one was running, counted with the outcome the caller
 * decided: a retry, a final failure or a quarantine.
 */
bool
tasker_fail_attempt(int64 step_id, TaskerAttemptOutcome outcome,
					const char *metadata_json)
{
	return transition(TASKER_ENTITY_STEP, step_id, TASKER_ERROR, metadata_json,
					  outcome);
}

/*
 * The batch's steps, as a relation m (step_id, task_id, from_error,
 * results, lease, ord) over the arrays $1 to $5, and the clearing of their
 * previous most_recent transition rows (last: step id, sort_key, and when
 * the attempt started if that row was the move to in_progress).  The
 * aggregate reads all of prev before the first new row is inserted, so
 * no new most_recent row meets an old one not yet cleared in the partial
 * unique index.
 */
#define BATCH_STEPS_SQL \
	"WITH m AS (" \
	"  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::jsonb[]," \
	"                       $5::integer[])" \
	"         WITH ORDINALITY AS m(step_id, task_id, from_error, results, lease, ord))," \
	"prev AS (" \
	"  UPDATE @extschema@.tasker_workflow_step_transitions x" \
	"     SET most_recent = false, updated_at = now()" \
	"    FROM m WHERE x.workflow_step_id = m.step_id AND x.most_recent" \
	"  RETURNING x.workflow_step_id, x.sort_key, x.to_state, x.created_at)," \
	"last AS (SELECT workflow_step_id, max(sort_key) AS sort_key," \
	"                max(created_at) FILTER (WHERE to_state = 'in_progress') AS started_at" \
	"           FROM prev GROUP BY workflow_step_id),"

/*
 * What each new transition row announces, in the order of the rows (tr:
 * ord, k, step_id, task_id, from_state, to_state, metadata, attempts,
 * sort_key, most_recent, attempt_started_at), after inserting them (ins),
 * and what the
 * counters need: the step's kind and the run time of its attempt (s is
 * the row before the statement, so last_attempted_at is when the attempt
 * started; meaningless for a start); then the task's trace id and the
 * row's sort_key, for the event's span.
 */
#define BATCH_INSERT_AND_EVENTS_SQL \
	"ins AS (" \
	"  INSERT INTO @extschema@.tasker_workflow_step_transitions" \
	"   (workflow_step_id, task_id, from_state, to_state, metadata, sort_key," \
	"    most_recent, created_at, attempt_started_at)" \
	"  SELECT step_id, task_id, from_state, to_state, COALESCE(metadata, '{}')::jsonb," \
	"         sort_key, most_recent, clock_timestamp(), attempt_started_at" \
	"    FROM tr ORDER BY ord, k" \
	"  RETURNING workflow_step_id, sort_key, created_at)" \
	"SELECT tr.step_id, tr.task_id, tr.from_state, tr.to_state, tr.attempts," \
	"       ins.created_at, tr.metadata::text, nt.name::text, ns.name::text, st.name::text," \
	"       s.handler_kind, extract(epoch FROM ins.created_at - s.last_attempted_at)::float8," \
	"       t.trace_id, ins.sort_key" \
	"  FROM tr JOIN ins ON ins.workflow_step_id = tr.step_id AND ins.sort_key = tr.sort_key" \
	"  JOIN @extschema@.tasker_workflow_steps s ON s.workflow_step_id = tr.step_id" \
	"  JOIN @extschema@.tasker_named_steps st ON st.named_step_id = s.named_step_id" \
	"  JOIN @extschema@.tasker_tasks t ON t.task_id = tr.task_id" \
	"  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id" \
	"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id" \
	" ORDER BY tr.ord, tr.k"

/*
 * batch_arrays: the five arrays of BATCH_STEPS_SQL for n moves.
 */
static void
batch_arrays(const StepMove *moves, int n, Datum *values, char *nulls)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *tasks = palloc(sizeof(Datum) * n);
	Datum	   *errs = palloc(sizeof(Datum) * n);
	Datum	   *results = palloc(sizeof(Datum) * n);
	Datum	   *leases = palloc(sizeof(Datum) * n);
	bool	   *rnulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(moves[i].step_id);
		tasks[i] = Int64GetDatum(moves[i].task_id);
		errs[i] = BoolGetDatum(moves[i].from_error);
		results[i] = moves[i].results ? JsonbPGetDatum(moves[i].results) : (Datum) 0;
		rnulls[i] = moves[i].results == NULL;
		leases[i] = Int32GetDatum(moves[i].lease_seconds);
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(tasks, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(errs, n, BOOLOID, 1, true, TYPALIGN_CHAR));
	values[3] = PointerGetDatum(construct_md_array(results, rnulls, 1, dims, lbs,
												   JSONBOID, -1, false, TYPALIGN_INT));
	values[4] = PointerGetDatum(construct_array(leases, n, INT4OID, 4, true, TYPALIGN_INT));
	memset(nulls, ' ', 5);
}

/*
 * count_batch_row: count what one transition row of a batch ended or
 * started: a completed attempt, with its run time; an attempt after the
 * first, a retry.
 */
static void
count_batch_row(HeapTuple row, TupleDesc desc)
{
	char	   *from = SPI_getvalue(row, desc, 3);
	char	   *to = SPI_getvalue(row, desc, 4);
	char	   *kind = SPI_getvalue(row, desc, 11);
	bool		isnull;
	int			k;
	Datum		d;

	if (strcmp(from, "in_progress") == 0 && strcmp(to, "complete") == 0)
	{
		d = SPI_getbinval(row, desc, 12, &isnull);
		count_attempt_end(kind, TASKER_ATTEMPT_COMPLETE, isnull ? 0 : DatumGetFloat8(d));
	}
	else if (strcmp(to, "in_progress") == 0 &&
			 DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull)) > 1 &&
			 (k = tasker_step_kind(kind)) >= 0)
		tasker_count_retries((TaskerStepKind) k, 1);
}

/*
 * announce_batch: queue the event of every transition row the batch
 * statement returned (in its order), after checking that there are as
 * many as expected: a step that was not in the expected state moved
 * nothing, and the batch must not go on as if it had.
 */
static void
announce_batch(uint64 expected)
{
	uint64		i;
	bool		isnull;

	if (SPI_processed != expected)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("a step of the batch is not in the state the batch expects"),
				 errdetail("The batch moved " UINT64_FORMAT " of " UINT64_FORMAT " transitions.",
						   SPI_processed, expected),
				 errhint("The batch is run again one step at a time.")));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		step_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		int64		task_id = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
		char	   *trace_id = SPI_getvalue(row, desc, 13);
		char		span[TASKER_SPAN_ID_LEN + 1];

		tasker_note_change();
		count_batch_row(row, desc);
		tasker_notify_transition(step_id, task_id,
								 SPI_getvalue(row, desc, 8), SPI_getvalue(row, desc, 9),
								 SPI_getvalue(row, desc, 10), SPI_getvalue(row, desc, 3),
								 SPI_getvalue(row, desc, 4),
								 DatumGetInt32(SPI_getbinval(row, desc, 5, &isnull)),
								 DatumGetTimestampTz(SPI_getbinval(row, desc, 6, &isnull)),
								 SPI_getvalue(row, desc, 7), trace_id,
								 event_span(trace_id, task_id, step_id,
											SPI_getvalue(row, desc, 3),
											SPI_getvalue(row, desc, 4),
											DatumGetInt32(SPI_getbinval(row, desc, 14, &isnull)),
											span));
	}
}

/*
 * tasker_start_steps: move a batch of claimed steps to in_progress and
 * count their attempts (each under its lease, if it has one), in one
 * statement: a step in error goes through
 * pending first (reason retry_backoff_elapsed), as tasker_transition
 * would move it.  The steps are locked by the caller's claim and ready.
 */
void
tasker_start_steps(const StepMove *moves, int n)
{
	Oid			argtypes[5] = {INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID, JSONBARRAYOID,
	INT4ARRAYOID};
	Datum		values[5];
	char		nulls[5];
	uint64		expected = n;
	int			i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++)
		expected += moves[i].from_error ? 1 : 0;
	batch_arrays(moves, n, values, nulls);
	SPI_connect();
	tasker_run_plan(tasker_keep_plan(&start_steps_plan,
			 BATCH_STEPS_SQL
			 "moved AS ("
			 "  UPDATE @extschema@.tasker_workflow_steps s"
			 "     SET current_state = 'in_progress', updated_at = now(), in_process = true,"
			 "         processed = false, next_attempt_at = NULL, rate_slot_at = NULL,"
			 "         attempts = s.attempts + 1, last_attempted_at = clock_timestamp(),"
			 "         lease_expires_at = CASE WHEN m.lease > 0"
			 "             THEN clock_timestamp() + m.lease * interval '1 second' END,"
			 "         claim_token = CASE WHEN m.lease > 0 THEN gen_random_uuid()"
			 "             ELSE s.claim_token END"
			 "    FROM m"
			 "   WHERE s.workflow_step_id = m.step_id AND s.unfinished_parents = 0"
			 "     AND s.current_state = CASE WHEN m.from_error THEN 'error' ELSE 'pending' END"
			 "  RETURNING s.workflow_step_id, s.attempts),"
			 "tr AS ("
			 "  SELECT m.ord, 1 AS k, m.step_id, m.task_id, 'error' AS from_state,"
			 "         'pending' AS to_state, '{\"reason\": \"retry_backoff_elapsed\"}' AS metadata,"
			 "         mv.attempts - 1 AS attempts, COALESCE(p.sort_key, 0) + 10 AS sort_key,"
			 "         false AS most_recent, NULL::timestamptz AS attempt_started_at"
			 "    FROM m JOIN moved mv ON mv.workflow_step_id = m.step_id"
			 "    LEFT JOIN last p ON p.workflow_step_id = m.step_id"
			 "   WHERE m.from_error"
			 "  UNION ALL"
			 "  SELECT m.ord, 2, m.step_id, m.task_id, 'pending', 'in_progress', NULL,"
			 "         mv.attempts,"
			 "         COALESCE(p.sort_key, 0) + CASE WHEN m.from_error THEN 20 ELSE 10 END,"
			 "         true, NULL"
			 "    FROM m JOIN moved mv ON mv.workflow_step_id = m.step_id"
			 "    LEFT JOIN last p ON p.workflow_step_id = m.step_id),"
			 BATCH_INSERT_AND_EVENTS_SQL,
			 5, argtypes),
		values, nulls, SPI_OK_SELECT);
	announce_batch(expected);
	SPI_finish();
}

/*
 * tasker_complete_steps: store the results of a batch of in_progress
 * steps and complete them, in one statement, releasing one unfinished
 * parent of each of their children per completed parent.  No step of the
 * batch may be a child of another (a batch claims ready steps only).
 */
void
tasker_complete_steps(const StepMove *moves, int n)
{
	Oid			argtypes[5] = {INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID, JSONBARRAYOID,
	INT4ARRAYOID};
	Datum		values[5];
	char		nulls[5];

	if (n == 0)
		return;
	batch_arrays(moves, n, values, nulls);
	SPI_connect();
	tasker_run_plan(tasker_keep_plan(&complete_steps_plan,
			 BATCH_STEPS_SQL
			 "moved AS ("
			 "  UPDATE @extschema@.tasker_workflow_steps s"
			 "     SET results = COALESCE(m.results, '{}'), backoff_request_seconds = NULL,"
			 "         current_state = 'complete', updated_at = now(), in_process = false,"
			 "         processed = true, processed_at = clock_timestamp(),"
			 "         next_attempt_at = NULL, lease_expires_at = NULL"
			 "    FROM m"
			 "   WHERE s.workflow_step_id = m.step_id AND s.current_state = 'in_progress'"
			 "  RETURNING s.workflow_step_id, s.attempts),"
			 "kids AS ("
			 "  UPDATE @extschema@.tasker_workflow_steps c"
			 "     SET unfinished_parents = c.unfinished_parents - k.n,"
			 "         next_attempt_at = " TASKER_RELEASE_DELAY_SQL("c", "k.n")
			 "    FROM (SELECT e.to_step_id, count(*)::integer AS n"
			 "            FROM @extschema@.tasker_workflow_step_edges e"
			 "            JOIN moved mv ON mv.workflow_step_id = e.from_step_id"
			 "           GROUP BY e.to_step_id) k"
			 "   WHERE c.workflow_step_id = k.to_step_id),"
			 "tr AS ("
			 "  SELECT m.ord, 1 AS k, m.step_id, m.task_id, 'in_progress' AS from_state,"
			 "         'complete' AS to_state, NULL::text AS metadata, mv.attempts,"
			 "         COALESCE(p.sort_key, 0) + 10 AS sort_key, true AS most_recent,"
			 "         p.started_at AS attempt_started_at"
			 "    FROM m JOIN moved mv ON mv.workflow_step_id = m.step_id"
			 "    LEFT JOIN last p ON p.workflow_step_id = m.step_id),"
			 BATCH_INSERT_AND_EVENTS_SQL,
			 5, argtypes),
		values, nulls, SPI_OK_SELECT);
	announce_batch(n);
	SPI_finish();
}
