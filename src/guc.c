/*-------------------------------------------------------------------------
 *
 * guc.c
 *		Definitions of every tasker.* configuration setting.
 *
 * Each C variable is named after its setting (tasker.batch_size is
 * tasker_batch_size).  Settings are defined in _PG_init, so they exist in
 * any backend that has loaded the library; the tasker prefix is reserved so
 * a misspelt tasker.* name is reported rather than silently kept.  Bounds
 * are enforced by the GUC machinery, so a bad value fails at SET or at
 * reload with the setting's name in the message.
 *
 * IDENTIFICATION
 *		src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "compat.h"
#include "guc.h"

char	   *tasker_database_name = NULL;
bool		tasker_enabled = true;
int			tasker_max_workers = 2;
int			tasker_batch_size = 50;
int			tasker_poll_interval = 1000;
int			tasker_max_backoff = 300;
int			tasker_max_context_size = 8192;
int			tasker_max_results_size = 8192;
int			tasker_max_map_items = 10000;
/* tasker.environment: the environments.<name> overrides of templates. */
char	   *tasker_environment = NULL;
/* tasker.max_template_size: a template's size, aliases expanded (kB). */
int			tasker_max_template_size = 16384;
/* HTTP steps (handler_http.c) */
int			tasker_http_max_concurrency = 64;
int			tasker_http_max_per_host = 16;
int			tasker_http_default_timeout = 30;
int			tasker_http_max_response_size = 1024;
char	   *tasker_http_allowed_hosts = NULL;
/* tasker.namespace_isolation: roles see only their granted namespaces. */
bool		tasker_namespace_isolation = false;
/* The event log (event_log.c): seconds its events are kept, 0 forever. */
int			tasker_event_log_retention = 7 * 24 * 3600;
/* Operations (issue 11): retention, admission control */
int			tasker_retention_period = 0;
int			tasker_max_ready_backlog = 0;
int			tasker_priority_aging = 60;

/*
 * tasker_define_gucs: define the settings and reserve the prefix.
 */
void
tasker_define_gucs(void)
{
	/*
	 * Settings that size the workers can change only at server start; a
	 * library loaded later (no preload, so no workers) may not define
	 * PGC_POSTMASTER settings, and there they have no effect anyway.
	 */
	GucContext	at_start = process_shared_preload_libraries_in_progress ?
		PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomStringVariable("tasker.database_name",
							   "Database in which the tasker workers run tasks.",
							   "The extension must be created in this database.",
							   &tasker_database_name, "postgres",
							   at_start, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("tasker.enabled",
							 "Whether the tasker workers run steps.",
							 "Off pauses execution without a restart; tasks can still be created.",
							 &tasker_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_workers",
							"Number of tasker executor workers.",
							"Each takes a background worker slot (max_worker_processes).",
							&tasker_max_workers, 2, 0, 64,
							at_start, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.batch_size",
							"Most steps a worker claims and runs in one transaction.",
							NULL,
							&tasker_batch_size, 50, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.poll_interval",
							"Longest a worker sleeps before looking for due steps.",
							"Commits that create or unblock work wake workers at once, and an idle worker wakes when the next retry falls due; this is a fallback.",
							&tasker_poll_interval, 1000, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_backoff",
							"Longest wait before retrying a failed step.",
							"Caps the exponential backoff and any requested retry-after.",
							&tasker_max_backoff, 300, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("tasker.environment",
							   "Selects the environments: overrides that task templates apply when registered.",
							   "Empty applies none.",
							   &tasker_environment,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	/*
	 * The bound protects the server's memory from whoever registers a
	 * template, so only a superuser may raise it (PGC_SUSET).  The largest
	 * value, 128 MB, keeps the template's JSON (up to six times the counted
	 * size, for escapes) within what one allocation can hold (1 GB).
	 */
	DefineCustomIntVariable("tasker.max_template_size",
							"Largest task template accepted, counted with every YAML alias expanded.",
							"Counts the text of every scalar and key plus a few bytes per node, each alias as often as it is used.",
							&tasker_max_template_size, 16384, 1, 128 * 1024,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	tasker_define_size_gucs();
	tasker_define_http_gucs();
	tasker_define_security_gucs();
	tasker_define_event_gucs();
	tasker_define_ops_gucs();
	MarkGUCPrefixReserved("tasker");
}

/*
 * tasker_define_security_gucs: tenant isolation (security.c and the
 * row-level security policies of the runtime tables).  It guards what
 * roles may see, so only a superuser may change it (PGC_SUSET), for the
 * server, a database or a role.
 */
void
tasker_define_security_gucs(void)
{
	DefineCustomBoolVariable("tasker.namespace_isolation",
							 "Whether roles see and act on only the namespaces granted to them.",
							 "On: tasks, steps, transitions and events are visible, and tasks controllable, only in the namespaces tasker_grant_namespace granted (superusers and the extension's owner see all).",
							 &tasker_namespace_isolation, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
}

/*
 * tasker_define_size_gucs: the bounds on what a task carries.  Only a
 * superuser may change them: a role that raised them could store a row
 * that no envelope can hold.  The cap of 64 MB keeps an envelope (the
 * context twice, the parents' results) under jsonb's 255 MB.
 */
void
tasker_define_size_gucs(void)
{
	DefineCustomIntVariable("tasker.max_context_size",
							"Largest context a task may be created with.",
							"A larger context is refused at creation; the envelope of each step carries it.",
							&tasker_max_context_size, 8192, 1, 65536,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_results_size",
							"Largest results a step may store.",
							"Larger results fail the attempt for good (or refuse tasker_resolve_step); they are never cut short.",
							&tasker_max_results_size, 8192, 1, 65536,
							PGC_SUSET, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_map_items",
							"Most instances a map step may fan out into.",
							"A map_over array with more elements fails the map step for good; it is never cut short.",
							&tasker_max_map_items, 10000, 0, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/*
 * tasker_define_http_gucs: the settings of HTTP steps.  The workers read
 * them, so they change with a reload (PGC_SIGHUP), never per session.
 */
void
tasker_define_http_gucs(void)
{
	DefineCustomIntVariable("tasker.http_max_concurrency",
							"Most HTTP requests in flight at once, over all tasker workers.",
							NULL,
							&tasker_http_max_concurrency, 64, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.http_max_per_host",
							"Most HTTP requests in flight at once to one host.",
							NULL,
							&tasker_http_max_per_host, 16, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.http_default_timeout",
							"Timeout of an HTTP step whose handler_config sets none.",
							"Covers the whole request: connection, sending and the response.",
							&tasker_http_default_timeout, 30, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.http_max_response_size",
							"Largest response body an HTTP step accepts.",
							"A larger body fails the attempt; it is never cut short.",
							&tasker_http_max_response_size, 1024, 1, 262144,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomStringVariable("tasker.http_allowed_hosts",
							   "Hosts HTTP steps may call, separated by commas.",
							   "Empty allows any host.  A request to another host fails for good.",
							   &tasker_http_allowed_hosts, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/*
 * tasker_define_event_gucs: the settings of the event log.  The event
 * worker prunes by them, so they change with a reload.
 */
void
tasker_define_event_gucs(void)
{
	DefineCustomIntVariable("tasker.event_log_retention",
							"How long the event log keeps an event.",
							"The event worker deletes older events in short batches, except the newest and those a subscriber has not yet passed; 0 keeps every event.",
							&tasker_event_log_retention, 7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/*
 * tasker_define_ops_gucs: the settings of running tasker for months:
 * retention, admission control and the aging of priorities.  The workers and every backend that
 * creates tasks read them, so they change with a reload (PGC_SIGHUP): no
 * session may lift a limit for itself.
 */
void
tasker_define_ops_gucs(void)
{
	DefineCustomIntVariable("tasker.retention_period",
							"Age after which the background purge deletes finished tasks.",
							"A task that is complete, cancelled or resolved_manually is deleted with all its rows once its last transition is this old.  0 turns the background purge off.",
							&tasker_retention_period, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.max_ready_backlog",
							"Most ready steps before tasker_create_task refuses new tasks.",
							"Over the limit, creating a task fails with SQLSTATE 53400.  Measured by the executors about once a second; 0 turns admission control off.",
							&tasker_max_ready_backlog, 0, 0, 100000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("tasker.priority_aging",
							"Seconds of waiting that raise a ready step's priority by one.",
							"A low-priority step overtakes newer work of higher priority once it has waited this long per level of difference.  0 makes priorities strict.",
							&tasker_priority_aging, 60, 0, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/*
 * tasker_check_size: raise PROGRAM_LIMIT_EXCEEDED when a value of size
 * bytes is over a limit in kilobytes set by the named setting.
 */
void
tasker_check_size(const char *what, Size size, int limit_kb, const char *setting)
{
	if (size <= (Size) limit_kb * 1024)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("%s is too large", what),
			 errdetail("It takes %zu bytes; %s allows %d kB.", size, setting, limit_kb),
			 errhint("Keep large data in a table of your own and pass its key, or have a superuser raise %s.", setting)));
}
