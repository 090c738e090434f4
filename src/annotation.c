/*-------------------------------------------------------------------------
 *
 * annotation.c
 *		Task annotations, in the Ruby engine's tables.
 *
 * tasker_annotate_task stores a jsonb object about a task in
 * tasker_task_annotations under a type named in tasker_annotation_types
 * (created the first time a name is used).  Annotating changes what
 * operators see about a task, so it is a control: the caller must be able
 * to control the task (security.c).  It runs in the caller's transaction,
 * as the extension's owner (api.c's AS_OWNER), with SPI connected here.
 * The search (tasker_tasks_by_annotation) is plain SQL in the install
 * script; it reads the GIN index on the annotation.
 *
 * This module calls security.c and spi_util.c only.
 *
 * IDENTIFICATION
 *		src/annotation.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "annotation.h"
#include "security.h"
#include "spi_util.h"

/* The longest type name tasker_annotation_types.name holds. */
#define ANNOTATION_TYPE_MAX 64

static SPIPlanPtr task_exists_plan;
static SPIPlanPtr type_plan;
static SPIPlanPtr insert_plan;

/*
 * check_annotation: raise for an empty or overlong type name and for an
 * annotation that is not a JSON object.
 */
static void
check_annotation(const char *type, Jsonb *annotation)
{
	if (type[0] == '\0' || strlen(type) > ANNOTATION_TYPE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("annotation type must be 1 to %d characters long",
						ANNOTATION_TYPE_MAX),
				 errdetail("The type given is \"%s\".", type),
				 errhint("Name the kind of annotation, such as 'order' or 'audit'.")));
	if (!JB_ROOT_IS_OBJECT(annotation) || JB_ROOT_IS_SCALAR(annotation))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("annotation must be a JSON object"),
				 errdetail("The annotation given is %s.",
						   JsonbToCString(NULL, &annotation->root, VARSIZE(annotation))),
				 errhint("Pass the annotation as '{\"key\": \"value\"}'.")));
}

/*
 * require_task: raise UNDEFINED_OBJECT for a task that does not exist,
 * and lock its row (FOR KEY SHARE, as the foreign key would) so that a
 * purge cannot remove it before the annotation commits.
 */
static void
require_task(int64 task_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(task_id)};

	tasker_run_plan(tasker_keep_plan(&task_exists_plan,
			 "SELECT 1 FROM @extschema@.tasker_tasks WHERE task_id = $1 FOR KEY SHARE",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("task " INT64_FORMAT " does not exist", task_id),
				 errdetail("No row of tasker_tasks has that id."),
				 errhint("Look it up in tasker_tasks; a purged task cannot be annotated.")));
}

/*
 * annotation_type_id: the id of the annotation type of that name,
 * created when it is new (a concurrent creator of the same name wins
 * and its row is used).
 */
static int32
annotation_type_id(const char *type)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(type)};
	bool		isnull;

	tasker_run_plan(tasker_keep_plan(&type_plan,
			 "WITH ins AS (INSERT INTO @extschema@.tasker_annotation_types (name)"
			 "             VALUES ($1) ON CONFLICT (name) DO NOTHING"
			 "             RETURNING annotation_type_id)"
			 " SELECT annotation_type_id FROM ins"
			 " UNION ALL"
			 " SELECT annotation_type_id FROM @extschema@.tasker_annotation_types"
			 "  WHERE name = $1",
			 1, argtypes),
		values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("annotation type \"%s\" is being created concurrently", type),
				 errdetail("The other transaction's row is not visible to this statement."),
				 errhint("Retry the transaction.")));
	return DatumGetInt32(tasker_col(0, 1, &isnull));
}

/*
 * tasker_annotate_task_internal: attach an annotation of a type to a task
 * the caller may control; returns the new task_annotation_id.
 */
int64
tasker_annotate_task_internal(int64 task_id, const char *type, Jsonb *annotation)
{
	Oid			argtypes[3] = {INT8OID, INT4OID, JSONBOID};
	Datum		values[3];
	bool		isnull;
	int64		id;

	check_annotation(type, annotation);
	SPI_connect();
	require_task(task_id);
	tasker_require_task_control(task_id, "annotate");
	values[0] = Int64GetDatum(task_id);
	values[1] = Int32GetDatum(annotation_type_id(type));
	values[2] = JsonbPGetDatum(annotation);
	tasker_run_plan(tasker_keep_plan(&insert_plan,
			 "INSERT INTO @extschema@.tasker_task_annotations"
			 "   (task_id, annotation_type_id, annotation)"
			 " VALUES ($1, $2, $3) RETURNING task_annotation_id",
			 3, argtypes),
		values, NULL, SPI_OK_INSERT_RETURNING);
	id = DatumGetInt64(tasker_col(0, 1, &isnull));
	SPI_finish();
	return id;
}
