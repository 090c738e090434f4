/*-------------------------------------------------------------------------
 *
 * template_check.c
 *		Validation of a task template's node tree.
 *
 * template_check() turns the node tree (after environment overrides) into
 * a TaskTemplate, refusing anything that is not exactly what the YAML
 * reference describes: unknown keys (outside the free-form objects
 * handler_config, configuration and schema), values of the wrong type,
 * names too long for their column, invalid custom event names, api steps
 * without a usable url, and step graphs that are not acyclic or that
 * mention unknown steps.  Every error points at a line and column.  The
 * checks need no catalog access; handler resolution happens later, in
 * template_store.c.  This file reads nodes through yaml_reader.c and asks
 * http_request.c about an api step's handler_config; only template.c
 * calls it.
 *
 * IDENTIFICATION
 *		src/template_check.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"

#include <limits.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/json.h"
#include "utils/varlena.h"

#include "http_request.h"
#include "jsonschema.h"
#include "semver.h"
#include "template_check.h"
#include "yaml_reader.h"

/* The keys a mapping may have, and what to call such a mapping. */
typedef struct KeySet
{
	const char *const *keys;
	const char *what;
} KeySet;

/* Where a check is: the template and the thing being checked. */
typedef struct Ctx
{
	TaskTemplate *t;
	const char *subject;		/* "the template", "step \"fetch\"", ... */
} Ctx;

static const char *const task_key_list[] = {
	"name", "namespace_name", "version", "module_namespace",
	"task_handler_class", "description", "concurrent",
	"default_dependent_system", "named_steps", "schema", "configuration",
	"custom_events", "step_templates", "environments", "handler_config",
	"concurrency", NULL
};

/* An environment may override any key but environments. */
static const char *const env_key_list[] = {
	"name", "namespace_name", "version", "module_namespace",
	"task_handler_class", "description", "concurrent",
	"default_dependent_system", "named_steps", "schema", "configuration",
	"custom_events", "step_templates", "handler_config", "concurrency", NULL
};

static const char *const step_key_list[] = {
	"name", "description", "handler_class", "handler_config",
	"depends_on_step", "depends_on_steps", "default_retryable",
	"default_retry_limit", "skippable", "dependent_system", "custom_events",
	"timeout_seconds", "permanent_sqlstates", "retry_sqlstates",
	"type", "map_over", "map_max_parallel", "branches", "signal",
	"delay_seconds", "task", "context_from", "rate_limit", NULL
};

/* The keys of a template's concurrency and of a step's rate_limit. */
static const char *const concurrency_key_list[] = {"key", "limit", NULL};
static const char *const rate_limit_key_list[] = {"key", "per_second", "burst", NULL};

/* The keys of a subtask's task mapping. */
static const char *const subtask_key_list[] = {"name", "namespace", "version", NULL};

static const char *const event_key_list[] = {"name", "description", NULL};

static const KeySet task_keys = {task_key_list, "a template"};
static const KeySet env_keys = {env_key_list, "an environment"};
static const KeySet step_keys = {step_key_list, "a step template"};
static const KeySet event_keys = {event_key_list, "a custom event"};
static const KeySet subtask_keys = {subtask_key_list, "a subtask's task"};
static const KeySet concurrency_keys = {concurrency_key_list, "concurrency"};
static const KeySet rate_limit_keys = {rate_limit_key_list, "rate_limit"};

static const char *const reserved_event_prefixes[] = {
	"task.", "step.", "workflow.", "observability.", "test.", NULL
};

/*
 * Keys of the Ruby engine's examples, or guesses, that tasker spells
 * otherwise: refused (they were silently ignored), with the key to use.
 */
static const char *const key_aliases[][2] = {
	{"retries", "default_retry_limit"},
	{"retry_limit", "default_retry_limit"},
	{"retryable", "default_retryable"},
	{"timeout", "timeout_seconds"},
	{"depends_on", "depends_on_steps"},
	{NULL, NULL}
};

/*
 * closest_key: the allowed key nearest to a misspelt one, or NULL when none
 * is near enough to suggest.  A known alias of an allowed key comes first.
 */
static const char *
closest_key(const char *word, const char *const *keys)
{
	const char *best = NULL;
	int			best_distance = INT_MAX;
	int			wlen = strlen(word);
	int			i;

	if (wlen > 64)
		return NULL;
	for (i = 0; key_aliases[i][0] != NULL; i++)
	{
		int			k;

		if (strcmp(word, key_aliases[i][0]) != 0)
			continue;
		for (k = 0; keys[k] != NULL; k++)
			if (strcmp(keys[k], key_aliases[i][1]) == 0)
				return keys[k];
	}
	for (i = 0; keys[i] != NULL; i++)
	{
		int			klen = strlen(keys[i]);
		int			d = varstr_levenshtein(word, wlen, keys[i], klen,
										   1, 1, 1, true);

		if (d < best_distance && d <= Max(2, klen / 3))
		{
			best = keys[i];
			best_distance = d;
		}
	}
	return best;
}

/*
 * check_keys: refuse a key of a mapping that the key set does not allow,
 * suggesting the nearest allowed key.
 */
static void
check_keys(const Ctx *c, const TNode *map, const KeySet *set)
{
	int			i;
	int			k;

	for (i = 0; i < map->nitems; i++)
	{
		const char *key = map->keys[i]->value;
		const char *near;
		StringInfoData hint;

		for (k = 0; set->keys[k] != NULL; k++)
			if (strcmp(key, set->keys[k]) == 0)
				break;
		if (set->keys[k] != NULL)
			continue;
		initStringInfo(&hint);
		near = closest_key(key, set->keys);
		if (near != NULL)
			appendStringInfo(&hint, "Did you mean \"%s\"?", near);
		else
		{
			appendStringInfo(&hint, "The keys of %s are", set->what);
			for (k = 0; set->keys[k] != NULL; k++)
				appendStringInfo(&hint, "%s %s", k ? "," : "", set->keys[k]);
			appendStringInfoChar(&hint, '.');
		}
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE,
					   map->keys[i], hint.data,
					   "%s has an unknown key \"%s\".", c->subject, key);
	}
}

/*
 * is_null: whether a value is absent or null.
 */
static bool
is_null(const TNode *node)
{
	return node == NULL ||
		(node->kind == TNODE_SCALAR && tnode_scalar_type(node) == TSCALAR_NULL);
}

/*
 * get_string: the string value of a key, or NULL when absent or null.
 * Numbers count as strings (version: 2 is "2"); booleans and collections
 * do not.  maxlen > 0 limits the length in characters; nonempty refuses "".
 */
static const char *
get_string(const Ctx *c, const TNode *map, const char *key, int maxlen,
		   bool nonempty)
{
	const TNode *node = tnode_get(map, key);
	int			len;

	if (is_null(node))
		return NULL;
	if (node->kind != TNODE_SCALAR || tnode_scalar_type(node) == TSCALAR_BOOL)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write the value as a string, as in %s: \"text\".", key),
					   "\"%s\" of %s must be a string, not %s.",
					   key, c->subject, tnode_describe(node));
	if (nonempty && node->value[0] == '\0')
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Give it a value of at least one character.",
					   "\"%s\" of %s must not be empty.", key, c->subject);
	len = pg_mbstrlen_with_len(node->value, strlen(node->value));
	if (maxlen > 0 && len > maxlen)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Shorten it to %d characters or fewer; tasker does not truncate names.", maxlen),
					   "\"%s\" of %s is %d characters long; the limit is %d.",
					   key, c->subject, len, maxlen);
	return node->value;
}

/*
 * get_required_string: as get_string, but the key must be present.
 */
static const char *
get_required_string(const Ctx *c, const TNode *map, const char *key,
					int maxlen)
{
	const char *value = get_string(c, map, key, maxlen, true);

	if (value == NULL)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, map,
					   psprintf("Add a \"%s\" key to %s.", key, c->subject),
					   "%s has no \"%s\" key.", c->subject, key);
	return value;
}

/*
 * get_bool: the boolean value of a key (true or false, unquoted), or
 * default_value when absent.
 */
static bool
get_bool(const Ctx *c, const TNode *map, const char *key, bool default_value)
{
	const TNode *node = tnode_get(map, key);

	if (is_null(node))
		return default_value;
	if (node->kind != TNODE_SCALAR || tnode_scalar_type(node) != TSCALAR_BOOL)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Write true or false, without quotes.",
					   "\"%s\" of %s must be true or false, not %s.",
					   key, c->subject, tnode_describe(node));
	return node->value[0] == 't' || node->value[0] == 'T';
}

/*
 * get_int: the integer value of a key, at least min (0 or 1), or
 * default_value when absent.
 */
static int32
get_int(const Ctx *c, const TNode *map, const char *key, int32 min,
		int32 default_value)
{
	const TNode *node = tnode_get(map, key);
	const char *kind = (min > 0) ? "a positive integer" : "a non-negative integer";
	long long	value = -1;
	const char *p;

	if (is_null(node))
		return default_value;
	if (node->kind == TNODE_SCALAR && tnode_scalar_type(node) == TSCALAR_NUMBER)
	{
		for (p = node->value; *p >= '0' && *p <= '9'; p++)
			;
		if (*p == '\0' && strlen(node->value) <= 10)
			value = strtoll(node->value, NULL, 10);
	}
	if (value < min || value > PG_INT32_MAX)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write a whole number from %d to %d, without quotes.",
							   (int) min, (int) PG_INT32_MAX),
					   "\"%s\" of %s must be %s, not %s.",
					   key, c->subject, kind, tnode_describe(node));
	return (int32) value;
}

/*
 * get_timeout: a duration key in whole seconds, from 1 to
 * TEMPLATE_TIMEOUT_MAX, or 0 when absent; whose names the mapping.  Longer timeouts are refused
 * here: the executors turn them into deadlines and leases, where a value
 * near the integer limits would overflow and expire at once.
 */
static int32
get_timeout(const Ctx *c, const TNode *map, const char *key, const char *whose)
{
	int32		value = get_int(c, map, key, 1, 0);

	if (value > TEMPLATE_TIMEOUT_MAX)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE,
					   tnode_get(map, key),
					   psprintf("Give the timeout in whole seconds, at most %d (one day).",
								TEMPLATE_TIMEOUT_MAX),
					   "\"%s\" of %s is over one day (%d seconds).",
					   key, whose, (int) value);
	return value;
}

/*
 * get_object: the JSON text of a key whose value must be a mapping (a
 * free-form object), or NULL when absent.
 */
static char *
get_object(const Ctx *c, const TNode *map, const char *key)
{
	const TNode *node = tnode_get(map, key);
	StringInfoData buf;

	if (is_null(node))
		return NULL;
	if (node->kind != TNODE_MAPPING)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write %s as a mapping of keys to values.", key),
					   "\"%s\" of %s must be a mapping, not %s.",
					   key, c->subject, tnode_describe(node));
	initStringInfo(&buf);
	tnode_to_json(&buf, node, c->t->name);
	return buf.data;
}

/*
 * get_list: the value of a key that must be a list, or NULL when absent.
 */
static const TNode *
get_list(const Ctx *c, const TNode *map, const char *key)
{
	const TNode *node = tnode_get(map, key);

	if (is_null(node))
		return NULL;
	if (node->kind != TNODE_SEQUENCE)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write %s as a list, one \"- item\" a line or [a, b].", key),
					   "\"%s\" of %s must be a list, not %s.",
					   key, c->subject, tnode_describe(node));
	return node;
}

/*
 * list_string: item i of a list, which must be a non-empty string.
 */
static const char *
list_string(const Ctx *c, const TNode *list, int i, const char *key)
{
	const TNode *item = list->items[i];

	if (item->kind != TNODE_SCALAR || item->value[0] == '\0' ||
		tnode_scalar_type(item) == TSCALAR_NULL ||
		tnode_scalar_type(item) == TSCALAR_BOOL)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, item,
					   "Write each item as a name.",
					   "item %d of \"%s\" of %s must be a non-empty string, not %s.",
					   i + 1, key, c->subject, tnode_describe(item));
	return item->value;
}

/*
 * check_semver: refuse a version that is not MAJOR.MINOR.PATCH (numbers
 * without leading zeros), optionally followed by -prerelease and +build.
 */
static void
check_semver(const Ctx *c, const TNode *at, const char *v)
{
	if (!tasker_semver_valid(v))
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
					   "Write a semantic version: MAJOR.MINOR.PATCH, optionally followed by -prerelease and +build, such as 1.2.0 or 2.0.0-rc.1.",
					   "\"version\" of %s must be a semantic version, not \"%s\".",
					   c->subject, v);
}

/*
 * check_event_name: refuse a custom event name without a dot between two
 * names, or in one of tasker's own event namespaces.
 */
static void
check_event_name(const Ctx *c, const TNode *at, const char *name)
{
	const char *dot = strchr(name, '.');
	int			i;

	if (dot == NULL || dot == name || name[strlen(name) - 1] == '.')
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
					   "Name custom events \"namespace.event\", such as \"payment.gateway_error\".",
					   "custom event \"%s\" of %s must contain a dot with a name on each side.",
					   name, c->subject);
	for (i = 0; reserved_event_prefixes[i] != NULL; i++)
		if (pg_strncasecmp(name, reserved_event_prefixes[i],
						   strlen(reserved_event_prefixes[i])) == 0)
			template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
						   "The prefixes task., step., workflow., observability. and test. belong to tasker's own events; choose another.",
						   "custom event \"%s\" of %s uses the reserved prefix \"%s\".",
						   name, c->subject, reserved_event_prefixes[i]);
}

/*
 * check_custom_events: the JSON array of {name, description} objects of a
 * custom_events list; items are such mappings or plain names.
 */
static char *
check_custom_events(const Ctx *c, const TNode *map)
{
	const TNode *list = get_list(c, map, "custom_events");
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; list != NULL && i < list->nitems; i++)
	{
		const TNode *item = list->items[i];
		const char *name;
		const char *description = NULL;

		if (item->kind == TNODE_MAPPING)
		{
			Ctx			ec = {c->t, psprintf("custom event %d of %s", i + 1, c->subject)};

			check_keys(&ec, item, &event_keys);
			name = get_required_string(&ec, item, "name", 0);
			description = get_string(&ec, item, "description", 0, false);
		}
		else
			name = list_string(c, list, i, "custom_events");
		check_event_name(c, item, name);
		appendStringInfoString(&buf, i ? ", {\"name\": " : "{\"name\": ");
		escape_json(&buf, name);
		appendStringInfoString(&buf, ", \"description\": ");
		if (description != NULL)
			escape_json(&buf, description);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * step_subject: how messages name step index: by its name when it has a
 * usable one, else by its 1-based position.
 */
static const char *
step_subject(const TNode *step, int index)
{
	const TNode *name = tnode_get(step, "name");

	if (name != NULL && name->kind == TNODE_SCALAR && name->value[0] != '\0' &&
		tnode_scalar_type(name) != TSCALAR_NULL &&
		strlen(name->value) <= 4 * TEMPLATE_STEP_NAME_MAX)
		return psprintf("step \"%s\"", name->value);
	return psprintf("step %d", index + 1);
}

/*
 * check_step_handler: the handler_class and handler_config of a step; an
 * api step needs no handler_class, any other step does.
 */
static void
check_step_handler(const Ctx *c, const TNode *node, StepTemplate *s)
{
	const TNode *config = tnode_get(node, "handler_config");
	const TNode *type;
	StringInfoData buf;

	s->handler_class = get_string(c, node, "handler_class", 0, true);
	s->handler_class_node = tnode_get(node, "handler_class");
	if (get_object(c, node, "handler_config") == NULL)
		config = NULL;
	type = tnode_get(config, "type");
	s->is_api = (type != NULL && type->kind == TNODE_SCALAR &&
				 pg_strcasecmp(type->value, "api") == 0);
	s->is_worker = (type != NULL && type->kind == TNODE_SCALAR &&
					pg_strcasecmp(type->value, "worker") == 0);
	if (s->is_api)
		config = tasker_http_check_config(c->t->name, c->subject, config);
	else if (s->is_worker)
		s->queue = get_string(c, config, "queue", TEMPLATE_NAME_MAX, true);
	else if (s->handler_class == NULL && s->flow_type != NULL &&
			 (strcmp(s->flow_type, "wait") == 0 || strcmp(s->flow_type, "subtask") == 0))
		;						/* tasker itself runs the step */
	else if (s->handler_class == NULL)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Name a registered handler class, or an SQL function taking and returning jsonb, in handler_class; or set handler_config.type to api or worker.",
					   "%s has no \"handler_class\" key and is neither an api nor a worker step.",
					   c->subject);
	initStringInfo(&buf);
	if (config != NULL)
		tnode_to_json(&buf, config, c->t->name);
	else
		appendStringInfoString(&buf, "{}");
	s->handler_config_json = buf.data;
}

/*
 * name_order: qsort_arg comparator of indexes into an array of names, by
 * name then index.
 */
static int
name_order(const void *a, const void *b, void *arg)
{
	const char *const *names = (const char *const *) arg;
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;
	int			c = strcmp(names[ia], names[ib]);

	if (c != 0)
		return c;
	return (ia < ib) ? -1 : (ia > ib);
}

/*
 * add_dependencies: append n dependencies (names, each written at ats) to
 * a step, in order, keeping only the first of each name.  Repeats are
 * found by sorting, so that a long list costs n log n, not n squared.
 */
static void
add_dependencies(StepTemplate *s, const char **names, const TNode **ats,
				 int n)
{
	int		   *order = palloc(sizeof(int) * n);
	bool	   *keep = palloc0(sizeof(bool) * n);
	int			i;

	for (i = 0; i < n; i++)
		order[i] = i;
	qsort_arg(order, n, sizeof(int), name_order, names);
	for (i = 0; i < n; i++)
		keep[order[i]] = (i == 0 ||
						  strcmp(names[order[i]], names[order[i - 1]]) != 0);
	for (i = 0; i < n; i++)
	{
		if (!keep[i])
			continue;
		s->depends_on = lappend(s->depends_on, (void *) names[i]);
		s->depends_nodes = lappend(s->depends_nodes, (void *) ats[i]);
	}
	pfree(order);
	pfree(keep);
}

/*
 * check_step_dependencies: the union of depends_on_step and
 * depends_on_steps, in declaration order, without repeats.
 */
static void
check_step_dependencies(const Ctx *c, const TNode *node, StepTemplate *s)
{
	const char *one = get_string(c, node, "depends_on_step", 0, true);
	const TNode *list = get_list(c, node, "depends_on_steps");
	int			max = 1 + (list != NULL ? list->nitems : 0);
	const char **names = palloc(sizeof(char *) * max);
	const TNode **ats = palloc(sizeof(TNode *) * max);
	int			n = 0;
	int			i;

	if (one != NULL)
	{
		names[n] = one;
		ats[n++] = tnode_get(node, "depends_on_step");
	}
	for (i = 0; list != NULL && i < list->nitems; i++)
	{
		names[n] = list_string(c, list, i, "depends_on_steps");
		ats[n++] = list->items[i];
	}
	add_dependencies(s, names, ats, n);
}

/*
 * sql_config_timeout: the timeout of an SQL step's handler_config (where
 * the Ruby engine's examples put it), in seconds, which then arms the
 * step's statement_timeout as timeout_seconds does; 0 when absent.
 */
static int32
sql_config_timeout(const Ctx *c, const TNode *node)
{
	const TNode *config = tnode_get(node, "handler_config");

	if (config == NULL || config->kind != TNODE_MAPPING)
		return 0;
	return get_timeout(c, config, "timeout",
					   psprintf("the handler_config of %s", c->subject));
}

/*
 * sqlstate_list: the items of a permanent_sqlstates or retry_sqlstates
 * list, each a SQLSTATE (five digits or upper-case letters) or a class
 * (its first two).
 */
static List *
sqlstate_list(const Ctx *c, const TNode *node, const char *key)
{
	const TNode *list = get_list(c, node, key);
	List	   *codes = NIL;
	int			i;

	for (i = 0; list != NULL && i < list->nitems; i++)
	{
		const char *code = list_string(c, list, i, key);
		int			len = strlen(code);

		if ((len != 2 && len != 5) ||
			(int) strspn(code, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") != len)
			template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE,
						   list->items[i],
						   "Write a five-character SQLSTATE such as \"23505\", or a two-character class such as \"23\", in quotes.",
						   "item %d of \"%s\" of %s is not a SQLSTATE or SQLSTATE class: \"%s\".",
						   i + 1, key, c->subject, code);
		codes = lappend(codes, (void *) code);
	}
	return codes;
}

/*
 * check_sqlstates: the SQLSTATE overrides of an SQL step's retry policy;
 * a code in both lists is refused, and an api step may have neither.
 */
static void
check_sqlstates(const Ctx *c, const TNode *node, StepTemplate *s)
{
	ListCell   *lc;

	s->permanent_sqlstates = sqlstate_list(c, node, "permanent_sqlstates");
	s->retry_sqlstates = sqlstate_list(c, node, "retry_sqlstates");
	if ((s->is_api || s->is_worker) &&
		(s->permanent_sqlstates != NIL || s->retry_sqlstates != NIL))
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE,
					   tnode_get(node, s->permanent_sqlstates != NIL ?
								 "permanent_sqlstates" : "retry_sqlstates"),
					   "HTTP steps retry by status code (docs/http.md) and external workers say whether a failure is retryable (docs/workers.md); remove the key.",
					   "%s is an api or worker step, which raises no SQLSTATE.", c->subject);
	foreach(lc, s->retry_sqlstates)
	{
		ListCell   *pc;

		foreach(pc, s->permanent_sqlstates)
			if (strcmp((const char *) lfirst(lc), (const char *) lfirst(pc)) == 0)
				template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE,
							   tnode_get(node, "retry_sqlstates"),
							   "Keep the code in one of the two lists.",
							   "\"%s\" of %s is in both permanent_sqlstates and retry_sqlstates.",
							   (const char *) lfirst(lc), c->subject);
	}
}

/* ---- dynamic rules (issue 10): map, decision, wait, subtask, delay ---- */

static int	find_step(const TaskTemplate *t, const char *name);

/*
 * check_path: a map_over or context_from path: context.KEY[.KEY...] or
 * dependencies.STEP[.KEY...], each part non-empty.  (That STEP is a
 * dependency is checked once every step is read.)
 */
static void
check_path(const Ctx *c, const TNode *at, const char *key, const char *path)
{
	bool		is_context = strncmp(path, "context.", 8) == 0;
	bool		is_deps = strncmp(path, "dependencies.", 13) == 0;
	const char *p;
	bool		empty_part = false;

	for (p = path; *p; p++)
		if (*p == '.' && (p[1] == '.' || p[1] == '\0'))
			empty_part = true;
	if ((!is_context && !is_deps) || empty_part)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
					   "Write the path as context.KEY[.KEY...] or dependencies.STEP[.KEY...], for example context.order.lines.",
					   "\"%s\" of %s is \"%s\", which is not a path into the context or a dependency's results.",
					   key, c->subject, path);
}

/*
 * flow_type_of: the step's type key: decision, wait or subtask (a map is
 * a step with map_over), or NULL for a plain step.
 */
static const char *
flow_type_of(const Ctx *c, const TNode *node)
{
	const char *type = get_string(c, node, "type", 0, true);

	if (type == NULL)
		return NULL;
	if (strcmp(type, "decision") != 0 && strcmp(type, "wait") != 0 &&
		strcmp(type, "subtask") != 0)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, tnode_get(node, "type"),
					   "Use type: decision, wait or subtask, or leave type out for a plain step (map_over makes a map step).",
					   "\"type\" of %s is \"%s\", which tasker does not know.",
					   c->subject, type);
	return type;
}

/*
 * refuse_key: a key that a step of this type does not take.
 */
static void
refuse_key(const Ctx *c, const TNode *node, const char *key, const char *why)
{
	if (!is_null(tnode_get(node, key)))
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, tnode_get(node, key),
					   psprintf("Remove \"%s\".", key),
					   "\"%s\" of %s has no meaning here: %s.", key, c->subject, why);
}

/*
 * check_map: map_over and map_max_parallel.
 */
static void
check_map(const Ctx *c, const TNode *node, StepTemplate *s, StringInfo flow)
{
	int32		parallel = get_int(c, node, "map_max_parallel", 1, 0);

	s->map_over = get_string(c, node, "map_over", 0, true);
	s->map_over_node = tnode_get(node, "map_over");
	if (s->map_over == NULL)
	{
		refuse_key(c, node, "map_max_parallel", "it bounds a map step, and this step has no map_over");
		return;
	}
	if (s->flow_type != NULL)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, s->map_over_node,
					   "Map a plain step, and make the decision, wait or subtask a step of its own.",
					   "%s has both type %s and map_over.", c->subject, s->flow_type);
	check_path(c, s->map_over_node, "map_over", s->map_over);
	s->flow_type = "map";
	appendStringInfoString(flow, "{\"type\": \"map\", \"map_over\": ");
	escape_json(flow, s->map_over);
	if (parallel > 0)
		appendStringInfo(flow, ", \"map_max_parallel\": %d", (int) parallel);
	appendStringInfoChar(flow, '}');
}

/*
 * check_decision: the branches of a decision step, names of steps (that
 * they exist and depend on it is checked once every step is read).
 */
static void
check_decision(const Ctx *c, const TNode *node, StepTemplate *s, StringInfo flow)
{
	const TNode *list = get_list(c, node, "branches");
	int			i;

	if (list == NULL || list->nitems == 0)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, list ? list : node,
					   "List the steps the decision may run in branches: [step, ...]; each of them depends on the decision step.",
					   "decision %s has no branches.", c->subject);
	s->branches_node = list;
	appendStringInfoString(flow, "{\"type\": \"decision\", \"branches\": [");
	for (i = 0; i < list->nitems; i++)
	{
		const char *b = list_string(c, list, i, "branches");

		s->branches = lappend(s->branches, (void *) b);
		if (i > 0)
			appendStringInfoString(flow, ", ");
		escape_json(flow, b);
	}
	appendStringInfoString(flow, "]}");
}

/*
 * check_wait: the signal of a wait step.
 */
static void
check_wait(const Ctx *c, const TNode *node, StepTemplate *s, StringInfo flow)
{
	s->signal = get_required_string(c, node, "signal", TEMPLATE_NAME_MAX);
	refuse_key(c, node, "handler_class", "tasker completes a wait step when its signal arrives");
	refuse_key(c, node, "handler_config", "tasker completes a wait step when its signal arrives");
	appendStringInfoString(flow, "{\"type\": \"wait\", \"signal\": ");
	escape_json(flow, s->signal);
	appendStringInfoChar(flow, '}');
}

/*
 * check_subtask: the task (name, namespace, version) a subtask step
 * creates, and the path of its context.
 */
static void
check_subtask(const Ctx *c, const TNode *node, StepTemplate *s, StringInfo flow)
{
	const TNode *task = tnode_get(node, "task");
	Ctx			tc = {c->t, psprintf("the task of %s", c->subject)};

	if (is_null(task) || task->kind != TNODE_MAPPING)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, is_null(task) ? node : task,
					   "Name the child template: task: {name: NAME, namespace: NS, version: V} (namespace and version optional).",
					   "subtask %s has no \"task\" mapping.", c->subject);
	check_keys(&tc, task, &subtask_keys);
	s->subtask_node = task;
	s->subtask_name = get_required_string(&tc, task, "name", TEMPLATE_NAME_MAX);
	s->subtask_namespace = get_string(&tc, task, "namespace", TEMPLATE_NAMESPACE_MAX, true);
	if (s->subtask_namespace == NULL)
		s->subtask_namespace = "default";
	s->subtask_version = get_string(&tc, task, "version", TEMPLATE_VERSION_MAX, true);
	s->context_from = get_string(c, node, "context_from", 0, true);
	s->context_from_node = tnode_get(node, "context_from");
	if (s->context_from != NULL)
		check_path(c, s->context_from_node, "context_from", s->context_from);
	refuse_key(c, node, "handler_class", "a subtask step runs a child task, not a handler");
	refuse_key(c, node, "handler_config", "a subtask step runs a child task, not a handler");
	appendStringInfoString(flow, "{\"type\": \"subtask\", \"task\": {\"name\": ");
	escape_json(flow, s->subtask_name);
	appendStringInfoString(flow, ", \"namespace\": ");
	escape_json(flow, s->subtask_namespace);
	if (s->subtask_version != NULL)
	{
		appendStringInfoString(flow, ", \"version\": ");
		escape_json(flow, s->subtask_version);
	}
	appendStringInfoChar(flow, '}');
	if (s->context_from != NULL)
	{
		appendStringInfoString(flow, ", \"context_from\": ");
		escape_json(flow, s->context_from);
	}
	appendStringInfoChar(flow, '}');
}

/*
 * check_step_flow: the dynamic rule of a step (type, map_over and the
 * keys of each), and its delay_seconds.
 */
static void
check_step_flow(const Ctx *c, const TNode *node, StepTemplate *s)
{
	StringInfoData flow;

	initStringInfo(&flow);
	s->flow_type = flow_type_of(c, node);
	s->delay_seconds = get_int(c, node, "delay_seconds", 0, 0);
	if (s->delay_seconds > TEMPLATE_TIMEOUT_MAX)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, tnode_get(node, "delay_seconds"),
					   psprintf("Give the delay in whole seconds, at most %d (one day); schedule longer waits with tasker_schedule.",
								TEMPLATE_TIMEOUT_MAX),
					   "\"delay_seconds\" of %s is over one day.", c->subject);
	if (s->flow_type == NULL || strcmp(s->flow_type, "decision") != 0)
		refuse_key(c, node, "branches", "only a decision step (type: decision) has branches");
	if (s->flow_type == NULL || strcmp(s->flow_type, "wait") != 0)
		refuse_key(c, node, "signal", "only a wait step (type: wait) waits for a signal");
	if (s->flow_type == NULL || strcmp(s->flow_type, "subtask") != 0)
	{
		refuse_key(c, node, "task", "only a subtask step (type: subtask) names a task");
		refuse_key(c, node, "context_from", "only a subtask step (type: subtask) has context_from");
	}
	check_map(c, node, s, &flow);
	if (s->flow_type == NULL || strcmp(s->flow_type, "map") == 0)
		;
	else if (strcmp(s->flow_type, "decision") == 0)
		check_decision(c, node, s, &flow);
	else if (strcmp(s->flow_type, "wait") == 0)
		check_wait(c, node, s, &flow);
	else
		check_subtask(c, node, s, &flow);
	s->flow_json = (flow.len > 0) ? flow.data : NULL;
}

/*
 * depends_on_step: whether step s names dep among its dependencies.
 */
static bool
depends_on_step(const StepTemplate *s, const char *dep)
{
	ListCell   *lc;

	foreach(lc, s->depends_on)
		if (strcmp((const char *) lfirst(lc), dep) == 0)
			return true;
	return false;
}

/*
 * check_path_step: a dependencies.STEP path names a dependency of s.
 */
static void
check_path_step(const TaskTemplate *t, const StepTemplate *s, const TNode *at,
				const char *key, const char *path)
{
	const char *step;
	const char *dot;

	if (path == NULL || strncmp(path, "dependencies.", 13) != 0)
		return;
	step = path + 13;
	dot = strchr(step, '.');
	step = dot ? pnstrdup(step, dot - step) : step;
	if (!depends_on_step(s, step))
		template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
					   psprintf("Add \"%s\" to the depends_on_steps of step \"%s\", or correct the path.", step, s->name),
					   "\"%s\" of step \"%s\" reads the results of \"%s\", which is not one of its dependencies.",
					   key, s->name, step);
}

/*
 * check_flow_references: the names the dynamic rules use: each branch of
 * a decision is a step that depends on the decision, and each
 * dependencies.STEP path names a dependency of its step.
 */
static void
check_flow_references(TaskTemplate *t)
{
	int			i;

	for (i = 0; i < t->nsteps; i++)
	{
		StepTemplate *s = &t->steps[i];
		ListCell   *lc;
		int			j = 0;

		check_path_step(t, s, s->map_over_node, "map_over", s->map_over);
		check_path_step(t, s, s->context_from_node, "context_from", s->context_from);
		foreach(lc, s->branches)
		{
			const char *b = (const char *) lfirst(lc);
			int			k = find_step(t, b);
			const TNode *at = s->branches_node->items[j++];

			if (k < 0)
				template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
							   "Declare a step of that name in step_templates, or correct the branch.",
							   "branch \"%s\" of decision step \"%s\" is not a step of the template.",
							   b, s->name);
			if (!depends_on_step(&t->steps[k], s->name))
				template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
							   psprintf("Add \"%s\" to the depends_on_steps of step \"%s\".", s->name, b),
							   "branch \"%s\" of decision step \"%s\" does not depend on the decision.",
							   b, s->name);
		}
	}
}

/*
 * limit_mapping: the value of a limit key (concurrency, rate_limit),
 * which must be a mapping of the given keys, or NULL when absent.
 */
static const TNode *
limit_mapping(const Ctx *c, const TNode *map, const char *key, const KeySet *keys,
			  Ctx *sub)
{
	const TNode *node = tnode_get(map, key);

	if (is_null(node))
		return NULL;
	sub->t = c->t;
	sub->subject = psprintf("\"%s\" of %s", key, c->subject);
	if (node->kind != TNODE_MAPPING)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write %s as a mapping: %s.", key,
								strcmp(key, "concurrency") == 0
								? "{key: '{{context.customer_id}}', limit: 1}"
								: "{key: partner_api, per_second: 10, burst: 10}"),
					   "\"%s\" of %s must be a mapping, not %s.",
					   key, c->subject, tnode_describe(node));
	check_keys(sub, node, keys);
	return node;
}

/*
 * check_key_references: every {{...}} of a concurrency key must be
 * {{context.PATH}}: the context is all a task has when it is created.
 */
static void
check_key_references(const Ctx *c, const TNode *at, const char *key)
{
	const char *p = key;
	const char *start;

	while ((start = strstr(p, "{{")) != NULL)
	{
		const char *end = strstr(start + 2, "}}");

		if (end == NULL || strncmp(start + 2, "context.", 8) != 0 || end == start + 10)
			template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
						   "A concurrency key may name values of the task's context only, as in '{{context.customer_id}}'.",
						   "the key \"%s\" of %s has a reference that is not {{context.PATH}}.",
						   key, c->subject);
		p = end + 2;
	}
}

/*
 * check_concurrency: the template's concurrency {key, limit} as JSON, or
 * NULL when it has none.
 */
static char *
check_concurrency(const Ctx *c, const TNode *root)
{
	Ctx			sub;
	const TNode *node = limit_mapping(c, root, "concurrency", &concurrency_keys, &sub);
	const char *key;
	int32		limit;
	StringInfoData buf;

	if (node == NULL)
		return NULL;
	key = get_required_string(&sub, node, "key", 200);
	check_key_references(&sub, tnode_get(node, "key"), key);
	limit = get_int(&sub, node, "limit", 1, 0);
	if (limit == 0)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Add limit: N, how many tasks with the same key may run at once.",
					   "%s has no \"limit\" key.", sub.subject);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"key\": ");
	escape_json(&buf, key);
	appendStringInfo(&buf, ", \"limit\": %d}", (int) limit);
	return buf.data;
}

/*
 * get_rate: the per_second of a rate_limit: a number above 0, at most
 * TEMPLATE_RATE_MAX.
 */
static double
get_rate(const Ctx *c, const TNode *map)
{
	const TNode *node = tnode_get(map, "per_second");
	double		rate = -1;
	char	   *end = NULL;

	if (is_null(node))
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, map,
					   "Add per_second: R, the steps per second the key allows.",
					   "%s has no \"per_second\" key.", c->subject);
	if (node->kind == TNODE_SCALAR && tnode_scalar_type(node) == TSCALAR_NUMBER)
		rate = strtod(node->value, &end);
	if (end == NULL || *end != '\0' || !(rate > 0) || rate > TEMPLATE_RATE_MAX)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   psprintf("Write a number above 0 and at most %d, without quotes (0.5 is one step every two seconds).",
								TEMPLATE_RATE_MAX),
					   "\"per_second\" of %s must be a positive number, not %s.",
					   c->subject, tnode_describe(node));
	return rate;
}

/*
 * check_rate_limit: a step's rate_limit {key, per_second, burst} as JSON,
 * or NULL when it has none.
 */
static char *
check_rate_limit(const Ctx *c, const TNode *step)
{
	Ctx			sub;
	const TNode *node = limit_mapping(c, step, "rate_limit", &rate_limit_keys, &sub);
	const char *key;
	double		rate;
	int32		burst;
	StringInfoData buf;

	if (node == NULL)
		return NULL;
	key = get_required_string(&sub, node, "key", 0);
	if (strlen(key) > TEMPLATE_RATE_KEY_MAX)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, tnode_get(node, "key"),
					   psprintf("Shorten it to %d bytes or fewer; tasker does not truncate names.",
								TEMPLATE_RATE_KEY_MAX),
					   "the key of %s is %d bytes long; the limit is %d.",
					   sub.subject, (int) strlen(key), TEMPLATE_RATE_KEY_MAX);
	rate = get_rate(&sub, node);
	burst = get_int(&sub, node, "burst", 1, 1);
	if (burst > TEMPLATE_RATE_MAX)
		template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, tnode_get(node, "burst"),
					   psprintf("Give a burst from 1 to %d.", TEMPLATE_RATE_MAX),
					   "\"burst\" of %s is over %d.", sub.subject, TEMPLATE_RATE_MAX);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"key\": ");
	escape_json(&buf, key);
	appendStringInfo(&buf, ", \"per_second\": %.17g, \"burst\": %d}", rate, (int) burst);
	return buf.data;
}

/*
 * check_step: validate one item of step_templates.
 */
static void
check_step(TaskTemplate *t, const TNode *node, int index, StepTemplate *s)
{
	Ctx			c = {t, NULL};

	if (node->kind != TNODE_MAPPING)
		template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, node,
					   "Write each step template as a mapping with at least name and handler_class.",
					   "step %d of \"step_templates\" is %s, not a mapping.",
					   index + 1, tnode_describe(node));
	c.subject = step_subject(node, index);
	check_keys(&c, node, &step_keys);
	s->node = node;
	s->name = get_required_string(&c, node, "name", TEMPLATE_STEP_NAME_MAX);
	s->name_node = tnode_get(node, "name");
	c.subject = psprintf("step \"%s\"", s->name);
	s->description = get_string(&c, node, "description",
								TEMPLATE_DESCRIPTION_MAX, false);
	if (s->description == NULL)
		s->description = s->name;
	check_step_flow(&c, node, s);
	check_step_handler(&c, node, s);
	check_step_dependencies(&c, node, s);
	s->default_retryable = get_bool(&c, node, "default_retryable", true);
	s->default_retry_limit = get_int(&c, node, "default_retry_limit", 0, 3);
	s->skippable = get_bool(&c, node, "skippable", false);
	s->timeout_seconds = get_timeout(&c, node, "timeout_seconds", c.subject);
	if (!s->is_api && !s->is_worker && s->timeout_seconds == 0)
		s->timeout_seconds = sql_config_timeout(&c, node);
	s->dependent_system = get_string(&c, node, "dependent_system",
									 TEMPLATE_SYSTEM_MAX, true);
	if (s->dependent_system == NULL)
		s->dependent_system = t->default_dependent_system;
	s->custom_events_json = check_custom_events(&c, node);
	check_sqlstates(&c, node, s);
	s->rate_limit_json = check_rate_limit(&c, node);
}

/*
 * step_order: qsort_arg comparator of step indexes, by name then index.
 */
static int
step_order(const void *a, const void *b, void *arg)
{
	const TaskTemplate *t = (const TaskTemplate *) arg;
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;
	int			c = strcmp(t->steps[ia].name, t->steps[ib].name);

	if (c != 0)
		return c;
	return (ia < ib) ? -1 : (ia > ib);
}

/*
 * find_step: the index of the step of a name, or -1.
 */
static int
find_step(const TaskTemplate *t, const char *name)
{
	int			lo = 0;
	int			hi = t->nsteps - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(t->steps[t->order[mid]].name, name);

		if (c == 0)
			return t->order[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * check_duplicate_steps: sort the steps by name (for find_step) and refuse
 * a name declared twice, reporting the earliest second declaration.
 */
static void
check_duplicate_steps(TaskTemplate *t)
{
	int			i;
	int			dup = -1;
	int			first = -1;

	t->order = palloc(sizeof(int) * t->nsteps);
	for (i = 0; i < t->nsteps; i++)
		t->order[i] = i;
	qsort_arg(t->order, t->nsteps, sizeof(int), step_order, t);
	for (i = 1; i < t->nsteps; i++)
		if (strcmp(t->steps[t->order[i]].name,
				   t->steps[t->order[i - 1]].name) == 0 &&
			(dup < 0 || t->order[i] < dup))
		{
			dup = t->order[i];
			first = t->order[i - 1];
		}
	if (dup >= 0)
		template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE,
					   t->steps[dup].name_node,
					   "Step names must be unique within a template; rename or remove one of them.",
					   "step \"%s\" is declared a second time (the first is at line %d, column %d).",
					   t->steps[dup].name, t->steps[first].name_node->line,
					   t->steps[first].name_node->column);
}

/*
 * check_dependency_names: refuse a step that depends on itself or on a
 * step the template does not declare.
 */
static void
check_dependency_names(TaskTemplate *t)
{
	int			i;

	for (i = 0; i < t->nsteps; i++)
	{
		StepTemplate *s = &t->steps[i];
		ListCell   *lc;
		ListCell   *nc;

		forboth(lc, s->depends_on, nc, s->depends_nodes)
		{
			const char *dep = (const char *) lfirst(lc);
			const TNode *at = (const TNode *) lfirst(nc);

			if (strcmp(dep, s->name) == 0)
				template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
							   psprintf("Remove \"%s\" from its own depends_on_step and depends_on_steps.", s->name),
							   "step \"%s\" depends on itself.", s->name);
			if (find_step(t, dep) < 0)
				template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
							   "Declare a step of that name in step_templates, or correct the name.",
							   "step \"%s\" depends on unknown step \"%s\".",
							   s->name, dep);
		}
	}
}

/*
 * in_whitelist: whether a name is an item of named_steps.
 */
static bool
in_whitelist(const TNode *list, const char *name)
{
	int			i;

	for (i = 0; i < list->nitems; i++)
		if (strcmp(list->items[i]->value, name) == 0)
			return true;
	return false;
}

/*
 * check_named_steps: with a named_steps list, every step name and every
 * dependency must be listed in it.
 */
static void
check_named_steps(const Ctx *c, const TNode *root)
{
	TaskTemplate *t = c->t;
	const TNode *list = get_list(c, root, "named_steps");
	int			i;

	if (list == NULL)
		return;
	for (i = 0; i < list->nitems; i++)
		(void) list_string(c, list, i, "named_steps");
	for (i = 0; i < t->nsteps; i++)
	{
		StepTemplate *s = &t->steps[i];
		ListCell   *lc;
		ListCell   *nc;

		if (!in_whitelist(list, s->name))
			template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE,
						   s->name_node,
						   psprintf("Add \"%s\" to named_steps, or remove named_steps.", s->name),
						   "step \"%s\" is not listed in \"named_steps\".", s->name);
		forboth(lc, s->depends_on, nc, s->depends_nodes)
			if (!in_whitelist(list, (const char *) lfirst(lc)))
				template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE,
							   (const TNode *) lfirst(nc),
							   psprintf("Add \"%s\" to named_steps, or remove named_steps.",
										(const char *) lfirst(lc)),
							   "step \"%s\" depends on \"%s\", which is not listed in \"named_steps\".",
							   s->name, (const char *) lfirst(lc));
	}
}

/*
 * report_cycle: raise the error of a dependency cycle, which is the DFS
 * stack from position from to its top, closed by the dependency at.
 */
static void
report_cycle(TaskTemplate *t, const int *stack, int from, int top,
			 const TNode *at)
{
	StringInfoData path;
	int			i;

	initStringInfo(&path);
	for (i = from; i < top; i++)
		appendStringInfo(&path, "%s -> ", t->steps[stack[i]].name);
	appendStringInfoString(&path, t->steps[stack[from]].name);
	template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, at,
				   "Each arrow points from a step to a step it depends on; remove one of these dependencies, for a workflow must be acyclic.",
				   "the steps depend on each other in a cycle: %s.", path.data);
}

/*
 * check_cycles: refuse a dependency cycle, found by an iterative
 * depth-first search in declaration order (the steps are known to exist).
 */
static void
check_cycles(TaskTemplate *t)
{
	int		   *state = palloc0(sizeof(int) * t->nsteps);	/* 0, 1 open, 2 done */
	int		   *next = palloc0(sizeof(int) * t->nsteps);
	int		   *stack = palloc(sizeof(int) * t->nsteps);
	int			top;
	int			start;
	int			i;

	for (start = 0; start < t->nsteps; start++)
	{
		if (state[start] != 0)
			continue;
		top = 0;
		stack[top++] = start;
		state[start] = 1;
		while (top > 0)
		{
			StepTemplate *s = &t->steps[stack[top - 1]];
			int			w;

			if (next[stack[top - 1]] >= list_length(s->depends_on))
			{
				state[stack[--top]] = 2;
				continue;
			}
			i = next[stack[top - 1]]++;
			w = find_step(t, (const char *) list_nth(s->depends_on, i));
			if (state[w] == 1)
			{
				int			from = top - 1;

				while (stack[from] != w)
					from--;
				report_cycle(t, stack, from, top,
							 (const TNode *) list_nth(s->depends_nodes, i));
			}
			if (state[w] == 0)
			{
				state[w] = 1;
				stack[top++] = w;
			}
		}
	}
}

/*
 * check_env_steps: the step_templates of an environment: mappings with a
 * name, and only keys a step template may have.
 */
static void
check_env_steps(const Ctx *c, const TNode *env)
{
	const TNode *list = get_list(c, env, "step_templates");
	int			i;

	for (i = 0; list != NULL && i < list->nitems; i++)
	{
		const TNode *item = list->items[i];
		Ctx			sc = {c->t, NULL};

		if (item->kind != TNODE_MAPPING)
			template_error(c->t->name, ERRCODE_INVALID_PARAMETER_VALUE, item,
						   "Write each override as a mapping with the name of the step it changes.",
						   "step %d of \"step_templates\" of %s is %s, not a mapping.",
						   i + 1, c->subject, tnode_describe(item));
		sc.subject = psprintf("%s of %s", step_subject(item, i), c->subject);
		check_keys(&sc, item, &step_keys);
		(void) get_required_string(&sc, item, "name", TEMPLATE_STEP_NAME_MAX);
	}
}

/*
 * template_check_environments: check the keys of every environment of
 * environments, whichever tasker.environment selects, so that a misspelt
 * production override fails on a developer's machine too.
 */
void
template_check_environments(TaskTemplate *t, const TNode *root)
{
	const TNode *envs = tnode_get(root, "environments");
	int			i;

	if (is_null(envs))
		return;
	if (envs->kind != TNODE_MAPPING)
		template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, envs,
					   "Write environments as a mapping from environment name to overrides.",
					   "\"environments\" of the template must be a mapping, not %s.",
					   tnode_describe(envs));
	for (i = 0; i < envs->nitems; i++)
	{
		const TNode *env = envs->items[i];
		Ctx			ec = {t, psprintf("environment \"%s\"", envs->keys[i]->value)};

		if (is_null(env))
			continue;
		if (env->kind != TNODE_MAPPING)
			template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, env,
						   "Write the overrides of an environment as a mapping of template keys.",
						   "%s must be a mapping, not %s.", ec.subject,
						   tnode_describe(env));
		check_keys(&ec, env, &env_keys);
		check_env_steps(&ec, env);
	}
}

/*
 * check_context_schema: refuse a schema: that the JSON Schema validator
 * cannot use (a malformed keyword value, an unsupported keyword), with the
 * validator's reason and the key's line and column, at registration rather
 * than at the first task.
 */
static void
check_context_schema(const Ctx *c, const TNode *at, const char *schema_json)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ErrorData  *edata;

	PG_TRY();
	{
		tasker_json_schema_check(DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
																	CStringGetDatum(schema_json))));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		template_error(c->t->name, edata->sqlerrcode, at,
					   edata->hint ? edata->hint : "docs/json-schema.md lists what tasker supports.",
					   "\"schema\" of %s is not a JSON Schema tasker can use: %s%s%s",
					   c->subject, edata->message,
					   edata->detail ? ": " : ".", edata->detail ? edata->detail : "");
	}
	PG_END_TRY();
}

/*
 * check_task_keys: the scalar keys of the template itself.
 */
static void
check_task_keys(const Ctx *c, const TNode *root)
{
	TaskTemplate *t = c->t;
	const TNode *version_node = tnode_get(root, "version");

	t->namespace_name = get_string(c, root, "namespace_name",
								   TEMPLATE_NAMESPACE_MAX, true);
	if (t->namespace_name == NULL)
		t->namespace_name = "default";
	t->version = get_string(c, root, "version", TEMPLATE_VERSION_MAX, true);
	if (t->version != NULL)
		check_semver(c, version_node, t->version);
	else
		t->version = "0.1.0";
	t->module_namespace = get_string(c, root, "module_namespace", 0, false);
	t->task_handler_class = get_string(c, root, "task_handler_class", 0, false);
	t->description = get_string(c, root, "description",
								TEMPLATE_DESCRIPTION_MAX, false);
	(void) get_bool(c, root, "concurrent", true);
	t->default_dependent_system = get_string(c, root, "default_dependent_system",
											 TEMPLATE_SYSTEM_MAX, true);
	if (t->default_dependent_system == NULL)
		t->default_dependent_system = "default";
	t->schema_json = get_object(c, root, "schema");
	if (t->schema_json != NULL)
		check_context_schema(c, tnode_get(root, "schema"), t->schema_json);
	t->configuration_json = get_object(c, root, "configuration");
	if (t->configuration_json == NULL)
		t->configuration_json = "{}";
	t->custom_events_json = check_custom_events(c, root);
	/* The task handler's settings (Ruby): kept in the stored template. */
	(void) get_object(c, root, "handler_config");
	t->concurrency_json = check_concurrency(c, root);
}

/* How many errors of one template registration reports, at most. */
#define TEMPLATE_MAX_ERRORS 20

/* The errors found so far in one template (template_check). */
typedef struct CheckErrors
{
	int			n;
	ErrorData  *first;
	StringInfoData list;		/* one "Line L, column C: ..." a line */
} CheckErrors;

/* One part of the checks, run by try_check. */
typedef struct CheckPart
{
	TaskTemplate *t;
	const TNode *root;
	int			step;			/* the step to check, or -1: the task keys */
} CheckPart;

/*
 * check_part: the task's own keys, or one step template.
 */
static void
check_part(CheckPart *p)
{
	Ctx			c = {p->t, "the template"};

	if (p->step >= 0)
	{
		const TNode *steps = tnode_get(p->root, "step_templates");

		check_step(p->t, steps->items[p->step], p->step, &p->t->steps[p->step]);
		return;
	}
	check_keys(&c, p->root, &task_keys);
	p->t->name = get_required_string(&c, p->root, "name", TEMPLATE_NAME_MAX);
	check_task_keys(&c, p->root);
}

/*
 * try_check: run one part of the checks and add its error, if any, to
 * errs, so that one registration reports every part's first error.  The
 * checks only build memory (no catalog access, no locks), so an error is
 * caught without a subtransaction.  Errors that are not about the template
 * (a cancel, running out of memory) are raised again at once.
 */
static void
try_check(CheckErrors *errs, CheckPart *part)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		check_part(part);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		int			class;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
		if (edata->elevel > ERROR || class == ERRCODE_OPERATOR_INTERVENTION ||
			class == ERRCODE_INSUFFICIENT_RESOURCES ||
			class == ERRCODE_PROGRAM_LIMIT_EXCEEDED ||
			class == ERRCODE_INTERNAL_ERROR || edata->detail == NULL)
			PG_RE_THROW();
		FlushErrorState();
		if (errs->n++ == 0)
			errs->first = edata;
		appendStringInfo(&errs->list, "\n%s", edata->detail);
	}
	PG_END_TRY();
}

/*
 * raise_errors: raise the errors collected, if any: one error as it was,
 * several as one error whose detail lists each with its line and column.
 */
static void
raise_errors(TaskTemplate *t, CheckErrors *errs, bool more)
{
	if (errs->n == 0)
		return;
	if (errs->n == 1)
		ReThrowError(errs->first);
	ereport(ERROR,
			(errcode(errs->first->sqlerrcode),
			 t->name ? errmsg("task template \"%s\" is invalid", t->name)
			 : errmsg("task template is invalid"),
			 errdetail_internal("%d errors%s:%s", errs->n,
								more ? " (checking stopped there)" : "",
								errs->list.data),
			 errhint("Correct each of them; for the first: %s",
					 errs->first->hint ? errs->first->hint : "see its detail.")));
}

/*
 * template_check: validate a template's node tree (environment overrides
 * applied) and fill in t.  The task's keys and each step template are
 * checked in turn, and the first error of each (up to
 * TEMPLATE_MAX_ERRORS) is reported together; the checks across steps
 * (names, dependencies, cycles) run once the steps are valid.
 */
void
template_check(TaskTemplate *t, const TNode *root)
{
	Ctx			c = {t, "the template"};
	CheckErrors errs;
	CheckPart	part = {t, root, -1};
	const TNode *steps;
	int			i;

	memset(&errs, 0, sizeof(errs));
	initStringInfo(&errs.list);
	t->root = root;
	try_check(&errs, &part);
	steps = tnode_get(root, "step_templates");
	if (is_null(steps) || steps->kind != TNODE_SEQUENCE)
	{
		raise_errors(t, &errs, false);
		steps = get_list(&c, root, "step_templates");
		template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, root,
					   "Add a \"step_templates\" list with at least one step.",
					   "the template has no \"step_templates\" key.");
	}
	if (steps->nitems == 0)
	{
		raise_errors(t, &errs, false);
		template_error(t->name, ERRCODE_INVALID_PARAMETER_VALUE, steps,
					   "Add at least one step template.",
					   "\"step_templates\" of the template is empty.");
	}
	t->nsteps = steps->nitems;
	t->steps = palloc0(sizeof(StepTemplate) * t->nsteps);
	for (i = 0; i < t->nsteps && errs.n < TEMPLATE_MAX_ERRORS; i++)
	{
		CHECK_FOR_INTERRUPTS();
		part.step = i;
		try_check(&errs, &part);
	}
	raise_errors(t, &errs, i < t->nsteps);

	check_duplicate_steps(t);
	check_dependency_names(t);
	check_named_steps(&c, root);
	check_cycles(t);
	check_flow_references(t);
}
