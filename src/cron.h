/*-------------------------------------------------------------------------
 *
 * cron.h
 *		pg_cron, reached without depending on it: in this database, or
 *		through a short-lived worker in the database pg_cron runs in.
 *
 * IDENTIFICATION
 *		src/cron.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_CRON_H
#define TASKER_CRON_H

#include "postgres.h"

/* Room for a schedule, a command or an error text. */
#define TASKER_CRON_TEXT 1024

typedef enum TaskerCronOpKind
{
	TASKER_CRON_SCHEDULE,		/* create or replace a job; result_jobid */
	TASKER_CRON_UNSCHEDULE,		/* remove job jobid; found */
	TASKER_CRON_SET_ACTIVE		/* make job jobid active or not; found */
} TaskerCronOpKind;

/*
 * One request to pg_cron and its answer.  Flat, so that it can be copied
 * into dynamic shared memory for the worker of another database.
 */
typedef struct TaskerCronOp
{
	TaskerCronOpKind kind;
	char		job_name[NAMEDATALEN];
	char		schedule[TASKER_CRON_TEXT];
	char		command[TASKER_CRON_TEXT];
	char		database[NAMEDATALEN];	/* where the job's command runs */
	char		username[NAMEDATALEN];	/* whom it runs as */
	int64		jobid;			/* the job to change; for SCHEDULE, the job
								 * being replaced or 0 */
	bool		active;
	/* the answer */
	int64		result_jobid;
	bool		found;
	/* set by the worker of another database */
	char		cron_database[NAMEDATALEN];
	bool		done;
	bool		failed;
	int			sqlerrcode;
	char		message[TASKER_CRON_TEXT];
	char		detail[TASKER_CRON_TEXT];
	char		hint[TASKER_CRON_TEXT];
} TaskerCronOp;

extern char *tasker_cron_database(void);
extern void tasker_cron_run(TaskerCronOp *op);

#endif							/* TASKER_CRON_H */
