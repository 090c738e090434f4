/*-------------------------------------------------------------------------
 *
 * bgw.h
 *		What tasker's background workers share: how each is described to
 *		the postmaster, and how each sees a command that needs its database.
 *
 * IDENTIFICATION
 *		src/bgw.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_BGW_H
#define TASKER_BGW_H

#include "postgres.h"

#include "postmaster/bgworker.h"

extern void tasker_describe_bgworker(BackgroundWorker *worker, const char *function,
									 const char *name, const char *type,
									 int restart_time);
extern bool tasker_database_wanted(void);

#endif							/* TASKER_BGW_H */
