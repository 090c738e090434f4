/*-------------------------------------------------------------------------
 *
 * template_check.h
 *		A task template, validated: what template_check builds from a node
 *		tree, and what template_store writes to the catalog.
 *
 * IDENTIFICATION
 *		src/template_check.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_TEMPLATE_CHECK_H
#define TASKER_TEMPLATE_CHECK_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "yaml_reader.h"

/* One step template, validated. */
typedef struct StepTemplate
{
	const TNode *node;			/* the step's mapping */
	const TNode *name_node;
	const char *name;
	const char *description;
	const char *handler_class;
	const TNode *handler_class_node;
	bool		is_api;			/* handler_config.type is api */
	bool		is_worker;		/* run by external workers (issue 9) */
	const char *queue;			/* is_worker: the queue (default: namespace) */
	char	   *handler_config_json;
	List	   *depends_on;		/* char *, de-duplicated, in order */
	List	   *depends_nodes;	/* the TNode of each of depends_on */
	bool		default_retryable;
	int32		default_retry_limit;
	bool		skippable;
	int32		timeout_seconds;	/* 0: none */
	const char *dependent_system;
	char	   *custom_events_json;
	List	   *permanent_sqlstates;	/* char *: codes or classes */
	List	   *retry_sqlstates;	/* char *: codes or classes */
	Oid			handler_function;	/* InvalidOid for api steps */

	/* Dynamic rules (issue 10): NULL flow_type for a plain step. */
	const char *flow_type;		/* map, decision, wait, subtask */
	char	   *flow_json;		/* the flow column: type and its keys */
	int32		delay_seconds;
	char	   *rate_limit_json;	/* {key, per_second, burst}, or NULL */
	const char *map_over;		/* map: the path of the array */
	const TNode *map_over_node;
	List	   *branches;		/* decision: char *, the steps it may run */
	const TNode *branches_node;
	const char *signal;			/* wait */
	const char *subtask_name;	/* subtask: the child template */
	const char *subtask_namespace;
	const char *subtask_version;	/* NULL: the highest */
	const TNode *subtask_node;
	const char *context_from;	/* subtask: the path of the child's context */
	const TNode *context_from_node;
} StepTemplate;

/* A task template, validated. */
typedef struct TaskTemplate
{
	const TNode *root;			/* after environment overrides */
	const char *name;			/* NULL until known, for messages */
	const char *namespace_name;
	const char *version;
	const char *module_namespace;
	const char *task_handler_class;
	const char *description;
	const char *default_dependent_system;
	char	   *schema_json;	/* NULL when absent */
	char	   *configuration_json;
	char	   *custom_events_json;
	char	   *template_json;
	char	   *concurrency_json;	/* {key, limit}, or NULL */
	int			nsteps;
	StepTemplate *steps;
	int		   *order;			/* step indexes sorted by name */
} TaskTemplate;

extern void template_check(TaskTemplate *t, const TNode *root);
extern void template_check_environments(TaskTemplate *t, const TNode *root);

#endif							/* TASKER_TEMPLATE_CHECK_H */
