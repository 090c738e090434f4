/*-------------------------------------------------------------------------
 *
 * flow_rules.c
 *		The rules of dynamic steps (issue 10) that apply when steps
 *		finish: a decision's branches, skipping, map instances'
 *		accounting, a subtask's child task.
 *
 * Rules, in one place:
 * - A decision step's results name the branches it takes: {"next":
 *   [...]} (for an api step, in the response body), a subset of its
 *   template's branches.  Its branches not taken are skipped.
 * - A skipped step finishes its children's dependency on it (state.c
 *   releases them).  A child whose parents are now all finished, none of
 *   them complete or resolved, is skipped too, and so on down the graph:
 *   a step runs when all its parents are complete, resolved or skipped
 *   and at least one is not skipped.
 * - A map step counts its unfinished instances (map_open).  Under
 *   map_max_parallel only that many are released (given a
 *   next_attempt_at) at once; each completion releases the next, lowest
 *   index first, from the hint map_next on.  When the count reaches zero
 *   the map step completes with the instances' results in index order.
 * - A subtask's child names its parent step (parent_step_id); cancelling
 *   a task cancels its children.
 * Only state.c moves states; this file decides which and reads what the
 * decisions need.  Runs in the caller's transaction, SPI connected.
 *
 * IDENTIFICATION
 *		src/flow_rules.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "flow_rules.h"
#include "spi_util.h"
#include "state.h"

static SPIPlanPtr decision_plan;
static SPIPlanPtr branches_plan;
static SPIPlanPtr skip_next_plan;
static SPIPlanPtr items_done_plan;
static SPIPlanPtr release_plan;
static SPIPlanPtr map_results_plan;
static SPIPlanPtr stop_items_plan;
static SPIPlanPtr parent_plan;
static SPIPlanPtr task_results_plan;
static SPIPlanPtr children_plan;

/*
 * text_list: a text[] datum as a List of C strings.
 */
static List *
text_list(Datum d, bool isnull)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *out = NIL;

	if (isnull)
		return NIL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			out = lappend(out, TextDatumGetCString(elems[i]));
	return out;
}

/*
 * tasker_decision_check: whether a decision step's results choose among
 * its branches.  Returns NULL and sets *not_chosen (char * names) when
 * they do, else the problem, in words, for a permanent failure.
 */
char *
tasker_decision_check(int64 step_id, Jsonb *results, List **not_chosen)
{
	Oid			argtypes[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum(step_id),
	results ? JsonbPGetDatum(results) : (Datum) 0};
	char		nulls[2] = {' ', results ? ' ' : 'n'};
	bool		isnull;
	char	   *kind;
	List	   *unknown;

	tasker_run_plan(tasker_keep_plan(&decision_plan,
			 "SELECT jsonb_typeof(x.nx),"
			 "       ARRAY(SELECT e FROM jsonb_array_elements_text(x.arr) e"
			 "              WHERE NOT x.br ? e),"
			 "       ARRAY(SELECT b FROM jsonb_array_elements_text(x.br) b"
			 "              WHERE NOT x.arr ? b),"
			 "       (SELECT bool_and(jsonb_typeof(e) = 'string') FROM jsonb_array_elements(x.arr) e),"
			 "       x.br::text"
			 "  FROM (SELECT l.flow->'branches' AS br, r.nx,"
			 "               CASE WHEN jsonb_typeof(r.nx) = 'array' THEN r.nx ELSE '[]' END AS arr"
			 "          FROM @extschema@.tasker_workflow_steps s"
			 "          JOIN @extschema@.tasker_tasks t ON t.task_id = s.task_id"
			 "          JOIN @extschema@.tasker_named_tasks_named_steps l"
			 "            ON l.named_task_id = t.named_task_id AND l.named_step_id = s.named_step_id"
			 "         CROSS JOIN LATERAL (SELECT COALESCE($2->'next', $2->'body'->'next') AS nx) r"
			 "         WHERE s.workflow_step_id = $1) x",
			 2, argtypes),
		values, nulls, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return pstrdup("the decision step's template row is missing");
	kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (kind == NULL || strcmp(kind, "array") != 0 ||
		(!DatumGetBool(tasker_col(0, 4, &isnull)) && !isnull))
		return psprintf("a decision step must return {\"next\": [branch, ...]} naming branches among %s; it returned %s",
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5),
						kind == NULL ? "no \"next\" key" : psprintf("a \"next\" that is %s", kind));
	unknown = text_list(tasker_col(0, 2, &isnull), isnull);
	if (unknown != NIL)
		return psprintf("decision returned \"%s\", which is not one of its branches %s",
						(char *) linitial(unknown),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5));
	*not_chosen = text_list(tasker_col(0, 3, &isnull), isnull);
	return NULL;
}

/*
 * skip_steps: move pending steps to skipped (reason in their
 * transitions), then the children that this leaves with every parent
 * finished and none complete or resolved, and so on down the graph.
 */
static void
skip_steps(int64 *ids, int n, const char *reason)
{
	Oid			argtypes[1] = {INT8ARRAYOID};
	char	   *meta = psprintf("{\"reason\": \"%s\"}", reason);
	int			i;

	while (n > 0)
	{
		Datum		values[1];

		for (i = 0; i < n; i++)
			tasker_transition(TASKER_ENTITY_STEP, ids[i], TASKER_SKIPPED, meta);
		values[0] = tasker_int8_array(ids, n);
		tasker_run_plan(tasker_keep_plan(&skip_next_plan,
				 "SELECT DISTINCT c.workflow_step_id"
				 "  FROM @extschema@.tasker_workflow_step_edges e"
				 "  JOIN @extschema@.tasker_workflow_steps c ON c.workflow_step_id = e.to_step_id"
				 " WHERE e.from_step_id = ANY ($1)"
				 "   AND c.current_state = 'pending' AND c.unfinished_parents = 0"
				 "   AND NOT EXISTS (SELECT 1 FROM @extschema@.tasker_workflow_step_edges pe"
				 "         JOIN @extschema@.tasker_workflow_steps p"
				 "           ON p.workflow_step_id = pe.from_step_id"
				 "        WHERE pe.to_step_id = c.workflow_step_id"
				 "          AND p.current_state IN ('complete', 'resolved_manually'))"
				 " ORDER BY 1",
				 1, argtypes),
			values, NULL, SPI_OK_SELECT);
		ids = tasker_result_int8s(&n);
		meta = "{\"reason\": \"all_parents_skipped\"}";
	}
}

/*
 * tasker_skip_branches: skip the named steps of a decision's task (its
 * branches not taken), and what can only be reached through them.
 */
void
tasker_skip_branches(int64 decision_step_id, List *names)
{
	Oid			argtypes[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2];
	Datum	   *elems;
	ListCell   *lc;
	int			i = 0;
	int			n;
	int64	   *ids;

	if (names == NIL)
		return;
	elems = palloc(sizeof(Datum) * list_length(names));
	foreach(lc, names)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	values[0] = Int64GetDatum(decision_step_id);
	values[1] = PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
	tasker_run_plan(tasker_keep_plan(&branches_plan,
			 "SELECT s.workflow_step_id"
			 "  FROM @extschema@.tasker_workflow_steps d"
			 "  JOIN @extschema@.tasker_workflow_steps s ON s.task_id = d.task_id"
			 "  JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id"
			 " WHERE d.workflow_step_id = $1 AND s.map_parent_id IS NULL"
			 "   AND n.name = ANY ($2) AND s.current_state = 'pending'"
			 " ORDER BY s.workflow_step_id",
			 2, argtypes),
		values, NULL, SPI_OK_SELECT);
	ids = tasker_result_int8s(&n);
	skip_steps(ids, n, "branch_not_taken");
}

/*
 * tasker_map_items_done: n more instances of a map step completed;
 * release as many waiting ones (under map_max_parallel).  Returns true
 * when none is left and the map step, still in_progress, is to complete.
 */
bool
tasker_map_items_done(int64 parent_id, int n)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(parent_id), Int32GetDatum(n)};
	bool		isnull;
	bool		windowed;
	bool		running;
	int32		open;

	tasker_run_plan(tasker_keep_plan(&items_done_plan,
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET map_open = GREATEST(map_open - $2, 0)"
			 " WHERE workflow_step_id = $1"
			 " RETURNING map_open, current_state = 'in_progress', map_next IS NOT NULL",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		return false;
	open = DatumGetInt32(tasker_col(0, 1, &isnull));
	running = DatumGetBool(tasker_col(0, 2, &isnull));
	windowed = DatumGetBool(tasker_col(0, 3, &isnull));
	if (running && windowed && open > 0)
		tasker_release_map_items(parent_id, n);
	return running && open == 0;
}

/*
 * tasker_release_map_items: make up to n more waiting instances of a map
 * step claimable, lowest index first, and move the hint past them.
 */
void
tasker_release_map_items(int64 parent_id, int n)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(parent_id), Int32GetDatum(n)};

	tasker_run_plan(tasker_keep_plan(&release_plan,
			 "WITH r AS ("
			 "  SELECT i.workflow_step_id, i.map_index"
			 "    FROM @extschema@.tasker_workflow_steps i"
			 "   WHERE i.map_parent_id = $1"
			 "     AND i.map_index >= (SELECT COALESCE(m.map_next, 0)"
			 "                           FROM @extschema@.tasker_workflow_steps m"
			 "                          WHERE m.workflow_step_id = $1)"
			 "     AND i.current_state = 'pending' AND i.next_attempt_at IS NULL"
			 "   ORDER BY i.map_index LIMIT $2"
			 "   FOR NO KEY UPDATE),"
			 "u AS ("
			 "  UPDATE @extschema@.tasker_workflow_steps s SET next_attempt_at = now()"
			 "    FROM r WHERE s.workflow_step_id = r.workflow_step_id"
			 "  RETURNING r.map_index)"
			 "UPDATE @extschema@.tasker_workflow_steps"
			 "   SET map_next = COALESCE((SELECT max(map_index) + 1 FROM u), map_next)"
			 " WHERE workflow_step_id = $1",
			 2, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * tasker_map_results: the results of a map step's instances, in index
 * order, as a JSON array.
 */
Jsonb *
tasker_map_results(int64 parent_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(parent_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&map_results_plan,
			 "SELECT COALESCE(jsonb_agg(results ORDER BY map_index), '[]')"
			 "  FROM @extschema@.tasker_workflow_steps WHERE map_parent_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return DatumGetJsonbPCopy(tasker_col(0, 1, &isnull));
}

/*
 * tasker_stop_map_items: after an instance failed for good, the map
 * step's other instances that wait or would retry are claimed no more.
 */
void
tasker_stop_map_items(int64 parent_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(parent_id)};

	tasker_run_plan(tasker_keep_plan(&stop_items_plan,
			 "UPDATE @extschema@.tasker_workflow_steps SET next_attempt_at = NULL"
			 " WHERE map_parent_id = $1 AND current_state IN ('pending', 'error')"
			 "   AND next_attempt_at IS NOT NULL",
			 1, argtypes),
		values, NULL, SPI_OK_UPDATE);
}

/*
 * tasker_subtask_parent: the subtask step that created a task, or 0.
 */
int64
tasker_subtask_parent(int64 task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};
	bool		isnull;
	Datum		d;

	if (!tasker_has_column("tasker_tasks", "parent_step_id"))
		return 0;
	tasker_run_plan(tasker_keep_plan(&parent_plan,
			 "SELECT parent_step_id FROM @extschema@.tasker_tasks WHERE task_id = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return 0;
	d = tasker_col(0, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * tasker_task_results: a finished task's results, as a subtask step
 * completes with them: an object keyed by its step names.
 */
Jsonb *
tasker_task_results(int64 task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&task_results_plan,
			 "SELECT COALESCE(jsonb_object_agg(n.name, COALESCE(s.results, 'null')), '{}')"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 "  JOIN @extschema@.tasker_named_steps n ON n.named_step_id = s.named_step_id"
			 " WHERE s.task_id = $1 AND s.map_parent_id IS NULL",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return DatumGetJsonbPCopy(tasker_col(0, 1, &isnull));
}

/*
 * tasker_child_tasks: the unfinished child tasks of a task's subtask
 * steps, in task_id order; *n is their number.
 */
int64 *
tasker_child_tasks(int64 task_id, int *n)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};

	*n = 0;
	if (!tasker_has_column("tasker_tasks", "parent_step_id"))
		return NULL;
	tasker_run_plan(tasker_keep_plan(&children_plan,
			 "SELECT c.task_id"
			 "  FROM @extschema@.tasker_workflow_steps s"
			 "  JOIN @extschema@.tasker_tasks c ON c.parent_step_id = s.workflow_step_id"
			 " WHERE s.task_id = $1 AND s.step_type = 'subtask'"
			 "   AND c.current_state IN ('pending', 'in_progress', 'error')"
			 " ORDER BY c.task_id",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	return tasker_result_int8s(n);
}
