/*-------------------------------------------------------------------------
 *
 * handler.h
 *		Step handlers: what running one step produces.
 *
 * IDENTIFICATION
 *		src/handler.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HANDLER_H
#define TASKER_HANDLER_H

#include "postgres.h"

#include "utils/jsonb.h"

/* SQLSTATEs raised by tasker_permanent_error and tasker_retry_error. */
#define ERRCODE_TASKER_PERMANENT_ERROR	MAKE_SQLSTATE('T','K','0','0','1')
#define ERRCODE_TASKER_RETRY_ERROR		MAKE_SQLSTATE('T','K','0','0','2')

/* The outcome of one attempt of one step. */
typedef struct StepOutcome
{
	bool		ok;
	Jsonb	   *results;		/* on success; NULL when the handler returned
								 * NULL */
	/* on failure: */
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *sqlstate;
	bool		permanent;		/* never retry */
	int			retry_after;	/* seconds the handler asked for, or -1 */
	Jsonb	   *details;		/* more keys for the stored error, or NULL */
} StepOutcome;

/* The step to run: what the claim query found. */
typedef struct StepCall
{
	int64		step_id;
	Oid			function;		/* (jsonb) RETURNS jsonb */
	Oid			owner;			/* role the handler runs as */
	int			timeout_seconds;	/* 0: none */
	Jsonb	   *envelope;
	/* The step's overrides of which SQLSTATEs are permanent: codes or classes */
	char	  **permanent_sqlstates;
	int			npermanent;
	char	  **retry_sqlstates;
	int			nretry;
} StepCall;

extern void tasker_run_sql_handler(const StepCall *call, StepOutcome *out);
extern void tasker_request_retry_after(int seconds);
extern int64 tasker_running_step(void);

#endif							/* TASKER_HANDLER_H */
