/*-------------------------------------------------------------------------
 *
 * retention.h
 *		The background purge: tasker.retention_period.
 *
 * IDENTIFICATION
 *		src/retention.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_RETENTION_H
#define TASKER_RETENTION_H

extern void tasker_retention_tick(void);

#endif							/* TASKER_RETENTION_H */
