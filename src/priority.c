/*-------------------------------------------------------------------------
 *
 * priority.c
 *		Task priorities with aging: the claim order of ready steps.
 *
 * A task's priority (higher first) is copied to its steps, and the claim
 * takes ready steps in claim_key order (step.c, in the order of the ready
 * index tasker_workflow_steps_ready_idx).  claim_key is next_attempt_at moved
 * earlier by priority * tasker.priority_aging seconds: a step of priority
 * p due at t ranks with the steps of priority 0 due at t - p * aging.
 * Ordering by it is ordering by the aged priority p + (now - t) / aging,
 * whatever now is, so the order needs no recomputation as steps wait, the
 * index keeps it, and a low-priority step overtakes new high-priority work
 * once it has waited (difference of priorities) * aging seconds: nothing
 * starves.  With tasker.priority_aging = 0 a level counts as a year
 * (strict priority, first due first within a level).
 *
 * The key is kept by a BEFORE trigger on tasker_workflow_steps
 * (tasker_step_claim_key), on every insert and every write of
 * next_attempt_at or priority, so that every path that makes a step due
 * (creation, retries, controls, leases) orders it without knowing about
 * priorities.  It uses the aging in effect at that write.  The trigger
 * runs in the writing transaction.  This module calls guc.c only.
 *
 * IDENTIFICATION
 *		src/priority.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "priority.h"

PG_FUNCTION_INFO_V1(tasker_step_claim_key);

/* What a level of priority is worth with aging off: a year. */
#define STRICT_LEVEL_USECS ((int64) 36525 * USECS_PER_DAY / 100)

/*
 * tasker_check_priority: raise INVALID_PARAMETER_VALUE for a priority out
 * of range.
 */
void
tasker_check_priority(int32 priority)
{
	if (priority < TASKER_PRIORITY_MIN || priority > TASKER_PRIORITY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority must be between %d and %d", TASKER_PRIORITY_MIN,
						TASKER_PRIORITY_MAX),
				 errdetail("The priority given is %d.", priority),
				 errhint("Higher priorities run first; 0 is the default.")));
}

/*
 * tasker_claim_key: the claim order of a step due at next_attempt_at with
 * a priority, under the current tasker.priority_aging.
 */
TimestampTz
tasker_claim_key(TimestampTz next_attempt_at, int32 priority)
{
	int64		level = tasker_priority_aging > 0 ?
		(int64) tasker_priority_aging * USECS_PER_SEC : STRICT_LEVEL_USECS;

	if (TIMESTAMP_NOT_FINITE(next_attempt_at))
		return next_attempt_at;
	return next_attempt_at - (int64) priority * level;
}

/*
 * tasker_step_claim_key: BEFORE INSERT OR UPDATE OF next_attempt_at,
 * priority ON tasker_workflow_steps, FOR EACH ROW: set claim_key.
 */
Datum
tasker_step_claim_key(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	Datum		next;
	Datum		priority;
	Datum		key;
	bool		next_null;
	bool		priority_null;
	int			key_att;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "tasker_step_claim_key must be a BEFORE ROW trigger");
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);
	next = heap_getattr(tuple, SPI_fnumber(desc, "next_attempt_at"), desc, &next_null);
	priority = heap_getattr(tuple, SPI_fnumber(desc, "priority"), desc, &priority_null);
	key_att = SPI_fnumber(desc, "claim_key");
	if (key_att <= 0)
		elog(ERROR, "tasker_workflow_steps has no column claim_key");
	if (!next_null)
		key = TimestampTzGetDatum(tasker_claim_key(DatumGetTimestampTz(next),
												   priority_null ? 0 : DatumGetInt32(priority)));
	else
		key = (Datum) 0;
	tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &key_att, &key, &next_null);
	return PointerGetDatum(tuple);
}
