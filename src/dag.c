/*-------------------------------------------------------------------------
 *
 * dag.c
 *		Levels and depths of the steps of one task's graph, in O(V + E).
 *
 * tasker_step_depths() reads a task's steps and edges with two index
 * scans, numbers the steps through a hash table, lays the edges out by
 * parent (a counting sort) and visits each step once in topological
 * order (Kahn's algorithm), when its last parent has been visited:
 * level(v) = max(level(p) + 1) and depth(v) = min(depth(p) + 1) over its
 * parents p, 0 for roots.  Enumerating paths, as a recursive query does,
 * costs time exponential in the depth of a ladder-shaped graph; this
 * costs time linear in its size.  Runs in the caller's transaction and
 * writes nothing.
 *
 * IDENTIFICATION
 *		src/dag.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/hsearch.h"

#include "dag.h"
#include "spi_util.h"

static SPIPlanPtr steps_plan;
static SPIPlanPtr edges_plan;

/* A task's graph: steps 0..n-1, children of i in child[first[i]..first[i+1]). */
typedef struct Graph
{
	int			n;
	int64	   *ids;
	HTAB	   *index;			/* workflow_step_id -> StepIndex */
	int		   *first;
	int		   *child;
	int		   *parents;		/* number of parents of each step */
} Graph;

typedef struct StepIndex
{
	int64		workflow_step_id;	/* the key */
	int			i;
} StepIndex;

/*
 * load_steps: the task's step ids in ascending order, numbered 0..n-1.
 * ids is allocated in the caller's context (outside SPI), as it is part
 * of the result.
 */
static void
load_steps(int64 task_id, Graph *g)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};
	HASHCTL		ctl;
	bool		isnull;
	bool		found;
	int			i;

	tasker_keep_plan(&steps_plan,
			  "SELECT s.workflow_step_id FROM @extschema@.tasker_workflow_steps s"
			  " WHERE s.task_id = $1 ORDER BY s.workflow_step_id",
			  1, argtypes);
	g->n = (int) tasker_run_plan(steps_plan, values, NULL, SPI_OK_SELECT);
	g->ids = SPI_palloc(sizeof(int64) * Max(g->n, 1));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(StepIndex);
	ctl.hcxt = CurrentMemoryContext;
	g->index = hash_create("tasker step index", Max(g->n, 16), &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (i = 0; i < g->n; i++)
	{
		StepIndex  *e;

		g->ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 1, &isnull));
		e = hash_search(g->index, &g->ids[i], HASH_ENTER, &found);
		e->i = i;
	}
}

/*
 * step_index: the number of a step of the task, or -1 for another step.
 */
static int
step_index(const Graph *g, Datum id)
{
	int64		key = DatumGetInt64(id);
	StepIndex  *e = hash_search(g->index, &key, HASH_FIND, NULL);

	return e ? e->i : -1;
}

/*
 * load_edges: the task's edges, laid out by parent with a counting sort;
 * also counts each step's parents.
 */
static void
load_edges(int64 task_id, Graph *g)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};
	SPITupleTable *rows;
	uint64		m;
	uint64		k;
	int		   *from;
	int		   *to;
	int		   *next;
	bool		isnull;
	int			i;

	tasker_keep_plan(&edges_plan,
			  "SELECT e.from_step_id, e.to_step_id FROM @extschema@.tasker_workflow_step_edges e"
			  " WHERE e.task_id = $1",
			  1, argtypes);
	m = tasker_run_plan(edges_plan, values, NULL, SPI_OK_SELECT);
	rows = SPI_tuptable;
	from = palloc(sizeof(int) * Max(m, 1));
	to = palloc(sizeof(int) * Max(m, 1));
	g->first = palloc0(sizeof(int) * (g->n + 1));
	g->parents = palloc0(sizeof(int) * Max(g->n, 1));
	for (k = 0; k < m; k++)
	{
		from[k] = step_index(g, SPI_getbinval(rows->vals[k], rows->tupdesc, 1, &isnull));
		to[k] = step_index(g, SPI_getbinval(rows->vals[k], rows->tupdesc, 2, &isnull));
		if (from[k] < 0 || to[k] < 0)
			continue;
		g->first[from[k] + 1]++;
		g->parents[to[k]]++;
	}
	for (i = 0; i < g->n; i++)
		g->first[i + 1] += g->first[i];
	next = palloc(sizeof(int) * Max(g->n, 1));
	memcpy(next, g->first, sizeof(int) * g->n);
	g->child = palloc(sizeof(int) * Max(g->first[g->n], 1));
	for (k = 0; k < m; k++)
		if (from[k] >= 0 && to[k] >= 0)
			g->child[next[from[k]]++] = to[k];
}

/*
 * layer: Kahn's algorithm.  A step enters the queue when its last parent
 * leaves it, so each step and each edge is handled once.  level and depth
 * are -1 for steps that never enter it (on or behind a cycle).
 */
static void
layer(Graph *g, int32 *level, int32 *depth)
{
	int		   *queue = palloc(sizeof(int) * Max(g->n, 1));
	int		   *waiting = g->parents;
	int			head = 0;
	int			tail = 0;
	int			i;

	for (i = 0; i < g->n; i++)
	{
		level[i] = depth[i] = -1;
		if (waiting[i] == 0)
		{
			level[i] = depth[i] = 0;
			queue[tail++] = i;
		}
	}
	while (head < tail)
	{
		int			v = queue[head++];
		int			k;

		for (k = g->first[v]; k < g->first[v + 1]; k++)
		{
			int			c = g->child[k];

			level[c] = Max(level[c], level[v] + 1);
			depth[c] = (depth[c] < 0) ? depth[v] + 1 : Min(depth[c], depth[v] + 1);
			if (--waiting[c] == 0)
				queue[tail++] = c;
		}
	}
	for (i = 0; i < g->n; i++)
		if (waiting[i] > 0)
			level[i] = depth[i] = -1;
}

/*
 * tasker_step_depths: the level and depth of each step of a task (none for
 * an unknown task).  The result is allocated in the caller's context.
 */
void
tasker_step_depths(int64 task_id, StepDepths *out)
{
	Graph		g;

	SPI_connect();
	load_steps(task_id, &g);
	load_edges(task_id, &g);
	out->n = g.n;
	out->ids = g.ids;
	out->level = SPI_palloc(sizeof(int32) * Max(g.n, 1));
	out->depth = SPI_palloc(sizeof(int32) * Max(g.n, 1));
	layer(&g, out->level, out->depth);
	hash_destroy(g.index);
	SPI_finish();
}
