/*-------------------------------------------------------------------------
 *
 * jsonschema.h
 *		Validate jsonb values against a JSON Schema held as jsonb.
 *
 * IDENTIFICATION
 *		src/jsonschema.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_JSONSCHEMA_H
#define TASKER_JSONSCHEMA_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

/*
 * Every way the instance breaks the schema, as palloc'd strings such as
 * '$.items[2].qty: 0 is less than the minimum 1'; NIL when it conforms.
 * Raises like tasker_json_schema_check() when the schema is malformed or
 * uses a keyword tasker does not support.
 */
extern List *tasker_json_schema_violations(Jsonb *schema, Jsonb *instance);

/*
 * Raise INVALID_PARAMETER_VALUE for a malformed schema and
 * FEATURE_NOT_SUPPORTED for an unsupported keyword; return when the schema
 * is usable.
 */
extern void tasker_json_schema_check(Jsonb *schema);

/*
 * Raise INVALID_PARAMETER_VALUE, "<what> does not match its schema", with
 * every violation in the detail, unless the instance conforms.
 */
extern void tasker_json_schema_validate_or_error(Jsonb *schema,
												 Jsonb *instance,
												 const char *what);

#endif							/* TASKER_JSONSCHEMA_H */
