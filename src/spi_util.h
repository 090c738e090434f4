/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *		Prepared statements of tasker, kept per backend.
 *
 * IDENTIFICATION
 *		src/spi_util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SPI_UTIL_H
#define TASKER_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/* The search_path every statement of tasker's own runs under. */
#define TASKER_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

extern void tasker_extension(Oid *nsp, Oid *owner);
extern char *tasker_installed_version(void);
extern int	tasker_push_search_path(const char *path);
extern int	tasker_push_statement_settings(void);
extern int	tasker_push_user_settings(void);
extern void tasker_pin_session_settings(void);
extern SPIPlanPtr tasker_keep_plan(SPIPlanPtr *slot, const char *sql,
								   int nargs, Oid *argtypes);
extern uint64 tasker_run_plan(SPIPlanPtr plan, Datum *values,
							  const char *nulls, int expected);
extern uint64 tasker_run_plan_latest(SPIPlanPtr plan, Datum *values,
									 int expected);

extern Datum tasker_int8_array(const int64 *ids, int n);
extern Datum tasker_col(uint64 i, int n, bool *isnull);
extern int64 *tasker_result_int8s(int *n);
extern bool tasker_has_column(const char *table, const char *column);

extern bool tasker_error_is_data(void);
extern ErrorData *tasker_try(void (*fn) (void *), void *arg);
extern ErrorData *tasker_try_plan(SPIPlanPtr plan, Datum *values, int expected);

#endif							/* TASKER_SPI_UTIL_H */
