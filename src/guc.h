/*-------------------------------------------------------------------------
 *
 * guc.h
 *		The tasker.* configuration settings.
 *
 * IDENTIFICATION
 *		src/guc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_GUC_H
#define TASKER_GUC_H

extern char *tasker_database_name;
extern bool tasker_enabled;
extern int	tasker_max_workers;
extern int	tasker_batch_size;
extern int	tasker_poll_interval;	/* milliseconds */
extern int	tasker_max_backoff;		/* seconds */
extern PGDLLIMPORT char *tasker_environment;

extern void tasker_define_gucs(void);

#endif							/* TASKER_GUC_H */
