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

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "state.h"
#include "template.h"

PG_FUNCTION_INFO_V1(tasker_transition_task_sql);
PG_FUNCTION_INFO_V1(tasker_transition_step_sql);
PG_FUNCTION_INFO_V1(tasker_allowed_transitions_sql);
PG_FUNCTION_INFO_V1(tasker_register_template_sql);
PG_FUNCTION_INFO_V1(tasker_register_template_file_sql);
PG_FUNCTION_INFO_V1(tasker_register_handler_sql);

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
 * require_arg: raise a clear error when argument n, called name, is null.
 */
static void
require_arg(FunctionCallInfo fcinfo, int n, const char *name,
			const char *hint)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"%s\" must not be null", name),
				 errdetail("The function was called with a null %s.", name),
				 errhint("%s", hint)));
}

/*
 * tasker_register_template(yaml text, replace boolean): named_task_id
 */
Datum
tasker_register_template_sql(PG_FUNCTION_ARGS)
{
	text	   *yaml;

	require_arg(fcinfo, 0, "yaml", "Pass the YAML or JSON text of a template.");
	require_arg(fcinfo, 1, "replace", "Pass replace => true or false.");
	yaml = PG_GETARG_TEXT_PP(0);
	PG_RETURN_INT32(tasker_register_template_text(VARDATA_ANY(yaml),
												  VARSIZE_ANY_EXHDR(yaml),
												  PG_GETARG_BOOL(1)));
}

/*
 * tasker_register_template_file(path text, replace boolean): named_task_id
 */
Datum
tasker_register_template_file_sql(PG_FUNCTION_ARGS)
{
	require_arg(fcinfo, 0, "path", "Pass the path of a template file on the server.");
	require_arg(fcinfo, 1, "replace", "Pass replace => true or false.");
	PG_RETURN_INT32(tasker_register_template_path(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												  PG_GETARG_BOOL(1)));
}

/*
 * tasker_register_handler(handler_class text, function regprocedure)
 */
Datum
tasker_register_handler_sql(PG_FUNCTION_ARGS)
{
	require_arg(fcinfo, 0, "handler_class", "Pass the class name templates use in handler_class.");
	require_arg(fcinfo, 1, "function", "Pass a function such as 'myschema.fetch_order(jsonb)'.");
	tasker_register_handler(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							PG_GETARG_OID(1));
	PG_RETURN_VOID();
}
