/*-------------------------------------------------------------------------
 *
 * handler.h
 *		Step handlers: what running one step produces, and the handler
 *		kinds as an interface.
 *
 * A handler kind is a TaskerHandlerKind: how the executor runs the steps
 * whose handler_kind column names it.  An in-transaction kind (sql)
 * claims, runs and records its steps inside one transaction of the
 * executor (run_ready).  A leased kind (http; issue 9's external workers
 * next) claims its steps with a lease in one short transaction, runs them
 * outside any transaction, and records their outcomes in another (turn);
 * it may add sockets to the executor's wait.  Every kind claims and
 * records through step.c, so readiness, the claim, attempts, retries and
 * leases are the same for all.  tasker_handler_kinds lists them all.
 *
 * IDENTIFICATION
 *		src/handler.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HANDLER_H
#define TASKER_HANDLER_H

#include "postgres.h"

#include "storage/latch.h"
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

/*
 * The handler kind of a step's handler, from its template row (alias l of
 * tasker_named_tasks_named_steps), defined once: a worker step's
 * handler_config says so; a step with no function is an api step; a wait
 * or subtask step has no handler, and the executor applies its rule
 * (flow.c).  TASKER_STEP_KIND_SQL is the kind of the step row itself: a
 * map step is flow too (it fans out), its instances have its handler's
 * kind.
 */
#define TASKER_HANDLER_KIND_SQL(l) \
	"CASE WHEN " l ".flow->>'type' IN ('wait', 'subtask') THEN 'flow'" \
	" WHEN " l ".handler_config->>'type' = 'worker' THEN 'worker'" \
	" WHEN " l ".handler_function IS NULL THEN 'http' ELSE 'sql' END"
#define TASKER_STEP_KIND_SQL(l) \
	"CASE WHEN " l ".flow->>'type' = 'map' THEN 'flow' ELSE " \
	TASKER_HANDLER_KIND_SQL(l) " END"

/*
 * The steps (alias s) held outside a transaction: every kind but sql (a
 * waiting flow step, a map step waiting for its instances, too).
 */
#define TASKER_LEASED_STEP_SQL(s) s ".handler_kind <> 'sql'"

/* The steps (alias s) the executor runs inside a transaction when ready. */
#define TASKER_IN_TRANSACTION_STEP_SQL(s) s ".handler_kind IN ('sql', 'flow')"

/* A handler kind: how the executor runs its steps. */
typedef struct TaskerHandlerKind
{
	const char *name;			/* the handler_kind column of its steps */
	bool		leased;			/* runs outside the claiming transaction */

	/*
	 * In-transaction kinds: claim, run and record up to limit ready steps
	 * (of task_id only, when it is not 0; of templates run_as may use, when
	 * it is valid) in the caller's transaction; returns the number claimed.
	 */
	int			(*run_ready) (int64 task_id, int limit, Oid run_as);

	/*
	 * Leased kinds, called between the executor's transactions: record what
	 * finished, and claim more when claim_new; returns the steps moved.
	 */
	int			(*turn) (bool claim_new);

	/*
	 * Optional, for kinds that wait on sockets: how many events they add,
	 * adding them (user_data pointing at the kind), the wait shortened to
	 * their own timers, one of their events fired, and after each wait
	 * whether they have outcomes to record (so the wait ends).
	 */
	int			(*nwait_events) (void);
	void		(*add_wait_events) (WaitEventSet *set);
	long		(*bound_wait) (long timeout_ms);
	void		(*wait_event_fired) (const WaitEvent *event);
	bool		(*after_wait) (bool latch_set);

	/* Optional: the executor is asked to stop. */
	void		(*shutdown) (void);
} TaskerHandlerKind;

extern const TaskerHandlerKind tasker_sql_kind;
extern const TaskerHandlerKind tasker_http_kind;
extern const TaskerHandlerKind tasker_worker_kind;
extern const TaskerHandlerKind *tasker_handler_kinds[];
extern void tasker_register_handler_kind(const TaskerHandlerKind *kind);

extern int	tasker_run_ready_steps(int64 task_id, int limit, Oid run_as);
extern int	tasker_run_in_transaction_kinds(int64 task_id, int limit, Oid run_as);
extern void tasker_run_sql_handler(const StepCall *call, StepOutcome *out);
extern void tasker_request_retry_after(int seconds);
extern int64 tasker_running_step(void);

#endif							/* TASKER_HANDLER_H */
