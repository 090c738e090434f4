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
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "events.h"
#include "security.h"
#include "state.h"

static const char *const state_names[TASKER_NUM_STATES] = {
	"pending",
	"in_progress",
	"complete",
	"error",
	"cancelled",
	"resolved_manually"
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
	S(TASKER_CANCELLED) | S(TASKER_RESOLVED_MANUALLY),
	[TASKER_IN_PROGRESS] = S(TASKER_COMPLETE) | S(TASKER_ERROR) | S(TASKER_CANCELLED),
	[TASKER_COMPLETE] = 0,
	[TASKER_ERROR] = S(TASKER_PENDING) | S(TASKER_RESOLVED_MANUALLY),
	[TASKER_CANCELLED] = S(TASKER_RESOLVED_MANUALLY),
	[TASKER_RESOLVED_MANUALLY] = 0
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
			 errdetail("The states are pending, in_progress, complete, error, cancelled and resolved_manually."),
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
 * lock_entity: lock the task or step row and read what a transition needs.
 */
static void
lock_entity(TaskerEntity entity, int64 id, EntityRow *row)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	SPIPlanPtr	plan;

	if (entity == TASKER_ENTITY_TASK)
		plan = tasker_keep_plan(&lock_task_plan,
							"SELECT t.current_state::text, t.task_id, nt.name::text, ns.name::text"
							"  FROM @extschema@.tasker_tasks t"
							"  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id"
							"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id"
							" WHERE t.task_id = $1 FOR NO KEY UPDATE OF t",
							1, argtypes);
	else
		plan = tasker_keep_plan(&lock_step_plan,
							"SELECT s.current_state::text, s.task_id, nt.name::text, ns.name::text,"
							"       st.name::text, s.attempts"
							"  FROM @extschema@.tasker_workflow_steps s"
							"  JOIN @extschema@.tasker_named_steps st ON st.named_step_id = s.named_step_id"
							"  JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id"
							"  JOIN @extschema@.tasker_named_tasks nt ON nt.named_task_id = t.named_task_id"
							"  JOIN @extschema@.tasker_task_namespaces ns ON ns.task_namespace_id = nt.task_namespace_id"
							" WHERE s.workflow_step_id = $1 FOR NO KEY UPDATE OF s",
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
							"   AND current_state NOT IN ('complete', 'resolved_manually')",
							1, argtypes);
	else
		plan = tasker_keep_plan(&step_guard_plan,
							"SELECT count(*) FROM @extschema@.tasker_workflow_step_edges e"
							"  JOIN @extschema@.tasker_workflow_steps p ON p.workflow_step_id = e.from_step_id"
							" WHERE e.to_step_id = $1"
							"   AND p.current_state NOT IN ('complete', 'resolved_manually')",
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
					 errdetail("The task is in state \"%s\"; " INT64_FORMAT " of its steps are neither complete nor resolved_manually.",
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
					 errdetail("The step is in state \"%s\"; " INT64_FORMAT " of its parents are neither complete nor resolved_manually.",
							   state_names[from], unfinished),
					 errhint("A step runs only after all of its dependencies.")));
	}
}

/*
 * record_transition: clear the previous most_recent row and insert the new
 * one with a sort_key 10 above it (10 for the first); returns its
 * created_at.
 */
static TimestampTz
record_transition(TaskerEntity entity, int64 id, int64 task_id,
				  TaskerState from, TaskerState to, const char *metadata_json)
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
		plan = tasker_keep_plan(&task_insert_plan,
								"WITH prev AS ("
								"  UPDATE @extschema@.tasker_task_transitions"
								"     SET most_recent = false, updated_at = now()"
								"   WHERE task_id = $1 AND most_recent"
								"  RETURNING sort_key)"
								"INSERT INTO @extschema@.tasker_task_transitions"
								" (task_id, from_state, to_state, metadata, sort_key, created_at)"
								" SELECT $1, $3, $4, $5::jsonb,"
								"        COALESCE((SELECT max(sort_key) FROM prev), 0) + 10,"
								"        clock_timestamp()"
								" RETURNING created_at",
								5, argtypes);
	else
		plan = tasker_keep_plan(&step_insert_plan,
								"WITH prev AS ("
								"  UPDATE @extschema@.tasker_workflow_step_transitions"
								"     SET most_recent = false, updated_at = now()"
								"   WHERE workflow_step_id = $1 AND most_recent"
								"  RETURNING sort_key)"
								"INSERT INTO @extschema@.tasker_workflow_step_transitions"
								" (workflow_step_id, task_id, from_state, to_state, metadata,"
								"  sort_key, created_at)"
								" SELECT $1, $2, $3, $4, $5::jsonb,"
								"        COALESCE((SELECT max(sort_key) FROM prev), 0) + 10,"
								"        clock_timestamp()"
								" RETURNING created_at",
								5, argtypes);
	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(task_id);
	values[2] = CStringGetTextDatum(state_names[from]);
	values[3] = CStringGetTextDatum(state_names[to]);
	values[4] = CStringGetTextDatum(metadata_json ? metadata_json : "{}");
	tasker_run_plan(plan, values, NULL, SPI_OK_INSERT_RETURNING);
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
						   "       processed = ($2 IN ('complete', 'resolved_manually')),"
						   "       processed_at = CASE WHEN $2 IN ('complete', 'resolved_manually')"
						   "                           THEN clock_timestamp() ELSE processed_at END,"
						   "       next_attempt_at = CASE WHEN $2 = 'pending' THEN now() END,"
						   "       lease_expires_at = CASE WHEN $2 = 'in_progress'"
						   "                               THEN lease_expires_at END"
						   " WHERE workflow_step_id = $1",
						   2, argtypes),
			  values, NULL, SPI_OK_UPDATE);

	if (to == TASKER_COMPLETE || to == TASKER_RESOLVED_MANUALLY)
		tasker_run_plan(tasker_keep_plan(&release_children_plan,
							   "UPDATE @extschema@.tasker_workflow_steps c"
							   "   SET unfinished_parents = c.unfinished_parents - 1"
							   "  FROM @extschema@.tasker_workflow_step_edges e"
							   " WHERE e.from_step_id = $1"
							   "   AND c.workflow_step_id = e.to_step_id",
							   1, argtypes),
				  values, NULL, SPI_OK_UPDATE);
}

/*
 * tasker_transition: move a task or step to a new state.
 *
 * Returns false, writing nothing, when the entity is already in that state.
 * Raises UNDEFINED_OBJECT for an unknown id and
 * OBJECT_NOT_IN_PREREQUISITE_STATE for a transition that the state machine
 * or its guard refuses.  metadata_json (may be NULL) is stored on the
 * transition row.  Runs in the caller's transaction.
 */
bool
tasker_transition(TaskerEntity entity, int64 id, TaskerState to,
				  const char *metadata_json)
{
	EntityRow	row;
	TimestampTz at;

	SPI_connect();
	lock_entity(entity, id, &row);
	if (row.state == to)
	{
		SPI_finish();
		return false;
	}
	check_transition(entity, id, row.state, to);
	tasker_note_change();
	at = record_transition(entity, id, row.task_id, row.state, to, metadata_json);
	update_entity(entity, id, to);

	tasker_notify_transition(entity == TASKER_ENTITY_STEP ? id : 0,
							 row.task_id, row.task_name, row.namespace,
							 row.step_name, state_names[row.state],
							 state_names[to], row.attempts, at, metadata_json);
	SPI_finish();
	return true;
}
