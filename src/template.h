/*-------------------------------------------------------------------------
 *
 * template.h
 *		Task templates: the YAML node tree, the validated template, and the
 *		handler registry that step handler classes resolve through.
 *
 * A template goes through four stages, each in its own file:
 *	template.c			YAML text -> node tree (the only user of libyaml),
 *						environment overrides, JSON output, the entry points
 *	template_check.c	node tree -> TaskTemplate, every check that needs no
 *						catalog access
 *	handler_registry.c	handler_class -> SQL function
 *	template_store.c	TaskTemplate -> catalog rows
 *
 * IDENTIFICATION
 *		src/template.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_TEMPLATE_H
#define TASKER_TEMPLATE_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* Column widths of the catalog; longer names are refused, not truncated. */
#define TEMPLATE_NAME_MAX			64
#define TEMPLATE_NAMESPACE_MAX		64
#define TEMPLATE_VERSION_MAX		64
#define TEMPLATE_STEP_NAME_MAX		128
#define TEMPLATE_SYSTEM_MAX			64
#define TEMPLATE_DESCRIPTION_MAX	255
/* The longest timeout a template may give, in seconds (one day). */
#define TEMPLATE_TIMEOUT_MAX		86400

typedef enum TNodeKind
{
	TNODE_SCALAR,
	TNODE_SEQUENCE,
	TNODE_MAPPING
} TNodeKind;

/* What a scalar means, by the YAML 1.2 core schema (numbers as in JSON). */
typedef enum TScalarType
{
	TSCALAR_NULL,
	TSCALAR_BOOL,
	TSCALAR_NUMBER,
	TSCALAR_STRING
} TScalarType;

/*
 * One node of a parsed YAML document, with its 1-based position.  Nodes are
 * never changed once built, so an alias and an environment override can
 * share subtrees with the node they came from.
 */
typedef struct TNode
{
	TNodeKind	kind;
	int			line;
	int			column;
	bool		quoted;			/* scalar: quoted, block or !!str */
	char	   *value;			/* scalar: text in the server encoding */
	int			nitems;			/* sequence items or mapping pairs */
	int			capacity;
	struct TNode **keys;		/* mapping: the key of each pair */
	struct TNode **items;		/* sequence items, or mapping values */
	int			size;			/* nodes in this subtree, aliases expanded */
	int64		bytes;			/* its text, aliases expanded (see template.c) */
} TNode;

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
	int			nsteps;
	StepTemplate *steps;
	int		   *order;			/* step indexes sorted by name */
} TaskTemplate;

/* How a handler class resolved (handler_registry.c). */
typedef enum HandlerLookup
{
	HANDLER_FOUND,
	HANDLER_NOT_FOUND,			/* neither registered nor a function */
	HANDLER_BAD_SIGNATURE,		/* a function of that name, wrong type */
	HANDLER_DROPPED				/* registered, but the function is gone */
} HandlerLookup;

/* template.c */
extern int32 tasker_register_template_text(const char *text, size_t len,
										   bool replace);
extern int32 tasker_register_template_path(const char *path, bool replace);
extern int32 *tasker_register_templates_text(const char *text, size_t len,
											 bool replace, int *n);
extern TScalarType tnode_scalar_type(const TNode *node);
extern const TNode *tnode_get(const TNode *map, const char *key);
extern const char *tnode_describe(const TNode *node);
extern void tnode_to_json(StringInfo buf, const TNode *node,
						  const char *name);
extern void template_error(const char *name, int sqlstate, const TNode *at,
						   const char *hint, const char *fmt,...)
			pg_attribute_printf(5, 6) pg_attribute_noreturn();

/* template_check.c */
extern void template_check(TaskTemplate *t, const TNode *root);
extern void template_check_environments(TaskTemplate *t, const TNode *root);

/* handler_registry.c */
extern const char *tasker_role_name(Oid role);
extern char *tasker_handler_signature_problem(Oid fn);
extern char *tasker_handler_access_problem(Oid fn, Oid role);
extern HandlerLookup tasker_resolve_handler(const char *handler_class,
											Oid *fn, bool *registered,
											Oid *owner);
extern void tasker_register_handler(const char *handler_class, Oid fn);
extern char *tasker_handler_queue(const char *handler_class);
extern void tasker_register_handler_queue(const char *handler_class, const char *queue);

/* template_store.c */
extern void template_resolve_handlers(TaskTemplate *t);
extern int32 template_store(TaskTemplate *t, bool replace);

#endif							/* TASKER_TEMPLATE_H */
