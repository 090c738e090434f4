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

extern SPIPlanPtr tasker_keep_plan(SPIPlanPtr *slot, const char *sql,
								   int nargs, Oid *argtypes);
extern uint64 tasker_run_plan(SPIPlanPtr plan, Datum *values,
							  const char *nulls, int expected);

#endif							/* TASKER_SPI_UTIL_H */
