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

extern PGDLLIMPORT char *tasker_environment;

extern void tasker_define_gucs(void);

#endif							/* TASKER_GUC_H */
