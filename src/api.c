/*-------------------------------------------------------------------------
 *
 * api.c
 *		Thin SQL-callable wrappers around the tasker modules.
 *
 * Each function here converts its arguments, calls into the module that
 * owns the behaviour and converts the result back.  No logic lives here.
 *
 * IDENTIFICATION
 *		src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "jsonschema.h"
#include "state.h"

PG_FUNCTION_INFO_V1(tasker_transition_task_sql);
PG_FUNCTION_INFO_V1(tasker_transition_step_sql);
PG_FUNCTION_INFO_V1(tasker_allowed_transitions_sql);
PG_FUNCTION_INFO_V1(tasker_validate_json_sql);
PG_FUNCTION_INFO_V1(tasker_json_schema_assert_sql);

/*
 * transition_sql: shared body of the two transition wrappers.
 */
static Datum
transition_sql(TaskerEntity entity, FunctionCallInfo fcinfo)
{
	int64		id = PG_GETARG_INT64(0);
	char	   *to_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *metadata = PG_GETARG_JSONB_P(2);
	char	   *metadata_json;

	if (!JB_ROOT_IS_OBJECT(metadata) || JB_ROOT_IS_SCALAR(metadata))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("transition metadata must be a JSON object"),
				 errdetail("The metadata given is %s.",
						   JsonbToCString(NULL, &metadata->root, VARSIZE(metadata))),
				 errhint("Pass metadata as '{\"key\": \"value\"}'.")));
	metadata_json = JsonbToCString(NULL, &metadata->root, VARSIZE(metadata));
	PG_RETURN_BOOL(tasker_transition(entity, id, tasker_state_from_name(to_name),
									 metadata_json));
}

/*
 * tasker_transition_task(task_id bigint, to_state text, metadata jsonb)
 */
Datum
tasker_transition_task_sql(PG_FUNCTION_ARGS)
{
	return transition_sql(TASKER_ENTITY_TASK, fcinfo);
}

/*
 * tasker_transition_step(step_id bigint, to_state text, metadata jsonb)
 */
Datum
tasker_transition_step_sql(PG_FUNCTION_ARGS)
{
	return transition_sql(TASKER_ENTITY_STEP, fcinfo);
}

/*
 * tasker_allowed_transitions(entity text): the (from_state, to_state) pairs
 * that the state machine of 'task' or 'step' allows.
 */
Datum
tasker_allowed_transitions_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *entity_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TaskerEntity entity;
	int			from;
	int			to;

	if (strcmp(entity_name, "task") == 0)
		entity = TASKER_ENTITY_TASK;
	else if (strcmp(entity_name, "step") == 0)
		entity = TASKER_ENTITY_STEP;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown entity \"%s\"", entity_name),
				 errdetail("tasker has state machines for tasks and steps."),
				 errhint("Pass 'task' or 'step'.")));

	InitMaterializedSRF(fcinfo, 0);
	for (from = 0; from < TASKER_NUM_STATES; from++)
		for (to = 0; to < TASKER_NUM_STATES; to++)
		{
			Datum		values[2];
			bool		nulls[2] = {false, false};

			if (!tasker_transition_allowed(entity, from, to))
				continue;
			values[0] = CStringGetTextDatum(tasker_state_name(from));
			values[1] = CStringGetTextDatum(tasker_state_name(to));
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
								 values, nulls);
		}
	PG_RETURN_NULL();
}

/*
 * tasker_validate_json(schema jsonb, instance jsonb): every violation of the
 * schema by the instance, as a text array that is empty when it conforms.
 */
Datum
tasker_validate_json_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *instance = PG_GETARG_JSONB_P(1);
	List	   *violations = tasker_json_schema_violations(schema, instance);
	Datum	   *elems;
	ListCell   *lc;
	int			i = 0;

	if (violations == NIL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));
	elems = palloc(list_length(violations) * sizeof(Datum));
	foreach(lc, violations)
		elems[i++] = CStringGetTextDatum((const char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, i, TEXTOID, -1, false,
										  TYPALIGN_INT));
}

/*
 * tasker_json_schema_assert_sql(schema jsonb, instance jsonb, what text):
 * a test hook that shows the error task creation raises for a context that
 * breaks its schema.  The install script does not declare it; the
 * pg_regress file sql/020_json_schema.sql does, in pg_temp.
 */
Datum
tasker_json_schema_assert_sql(PG_FUNCTION_ARGS)
{
	tasker_json_schema_validate_or_error(PG_GETARG_JSONB_P(0),
										 PG_GETARG_JSONB_P(1),
										 text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PG_RETURN_VOID();
}
