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
extern int	tasker_max_context_size;	/* kilobytes */
extern int	tasker_max_results_size;	/* kilobytes */
extern int	tasker_max_map_items;
extern PGDLLIMPORT char *tasker_environment;
extern int	tasker_max_template_size;	/* kilobytes */
extern int	tasker_http_max_concurrency;
extern int	tasker_http_max_per_host;
extern int	tasker_http_default_timeout;	/* seconds */
extern int	tasker_http_max_response_size;	/* kilobytes */
extern char *tasker_http_allowed_hosts;
extern bool tasker_namespace_isolation;
extern int	tasker_event_log_retention; /* seconds, 0: forever */
extern int	tasker_retention_period;	/* seconds; 0: off */
extern int	tasker_max_ready_backlog;	/* 0: off */
extern int	tasker_priority_aging;	/* seconds; 0: strict priorities */

extern void tasker_define_gucs(void);
extern void tasker_define_size_gucs(void);
extern void tasker_define_http_gucs(void);
extern void tasker_define_security_gucs(void);
extern void tasker_define_event_gucs(void);
extern void tasker_define_ops_gucs(void);
extern void tasker_check_size(const char *what, Size size, int limit_kb,
							  const char *setting);

#endif							/* TASKER_GUC_H */
