/*-------------------------------------------------------------------------
 *
 * security.h
 *		Whom tasker acts for, whom it acts as, and the sandbox of a handler.
 *
 * IDENTIFICATION
 *		src/security.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SECURITY_H
#define TASKER_SECURITY_H

#include "postgres.h"

#include "fmgr.h"

/* The levels of rights (issue 13), each a NOLOGIN group role. */
typedef enum TaskerLevel
{
	TASKER_LEVEL_READER,
	TASKER_LEVEL_OPERATOR,
	TASKER_LEVEL_ADMIN,
	TASKER_LEVEL_WORKER
} TaskerLevel;

/* What tasker_api_enter changed, for tasker_api_leave to undo. */
typedef struct TaskerApiScope
{
	Oid			save_userid;
	int			save_sec;
	int			gucnest;
	Oid			save_caller;
	char	   *save_caller_path;
} TaskerApiScope;

/* What tasker_handler_enter changed, for tasker_handler_leave to undo. */
typedef struct TaskerHandlerScope
{
	Oid			save_userid;
	int			save_sec;
	int			gucnest;
	Oid			save_caller;
} TaskerHandlerScope;

extern Oid	tasker_caller(void);
extern void tasker_api_enter(TaskerApiScope *scope);
extern void tasker_api_leave(TaskerApiScope *scope);
extern void tasker_require_arg(FunctionCallInfo fcinfo, int n, const char *name,
							   const char *hint);
extern int	tasker_use_caller_search_path(void);
extern void tasker_restore_search_path(int nest);
extern void tasker_require_task_control(int64 task_id, const char *action);
extern void tasker_require_step_control(int64 step_id, const char *action);
extern Oid	tasker_run_as_filter(void);
extern Oid	tasker_level_role(TaskerLevel level);
extern bool tasker_sees_all_namespaces(Oid role);
extern bool tasker_may_in_namespace(const char *namespace, TaskerLevel level);
extern void tasker_require_namespace(const char *namespace, TaskerLevel level,
									 const char *action);
extern void tasker_refuse_in_handler(const char *function);

extern uint64 tasker_nested_changes(void);
extern void tasker_note_change(void);
extern const char *tasker_role_name(Oid role);
extern char *tasker_handler_signature_problem(Oid fn);
extern char *tasker_handler_access_problem(Oid fn, Oid role);
extern void tasker_check_handler(Oid function, Oid owner);
extern void tasker_handler_enter(TaskerHandlerScope *scope, Oid owner);
extern void tasker_handler_leave(TaskerHandlerScope *scope);
extern void tasker_handler_abandon(TaskerHandlerScope *scope);
extern void tasker_clear_session_leftovers(void);

#endif							/* TASKER_SECURITY_H */
