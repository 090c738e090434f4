/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Definitions of every tasker.* configuration setting.
 *
 * Each C variable is named after its setting (tasker.batch_size is
 * tasker_batch_size).  Settings are defined in _PG_init, so they exist in
 * any backend that has loaded the library; the tasker prefix is reserved so
 * a misspelt tasker.* name is reported rather than silently kept.
 *
 * IDENTIFICATION
 *		src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "compat.h"
#include "guc.h"

/* tasker.environment: the environments.<name> overrides of templates. */
char	   *tasker_environment = NULL;

/*
 * tasker_define_gucs: define the settings and reserve the prefix.
 */
void
tasker_define_gucs(void)
{
	DefineCustomStringVariable("tasker.environment",
							   "Selects the environments: overrides that task templates apply when registered.",
							   "Empty applies none.",
							   &tasker_environment,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	MarkGUCPrefixReserved("tasker");
}
