/*-------------------------------------------------------------------------
 *
 * template.c
 *		Task template registration: YAML text to catalog rows.
 *
 * This is the only file that uses libyaml.  The text is parsed event by
 * event into a tree of TNodes that remember their line and column, so that
 * every later error can point at the offending spot; libyaml's own memory
 * is released on every path, errors included, by PG_FINALLY.  Aliases share
 * the anchored subtree, found through a hash table whose hash is seeded per
 * parse.  Both the number of nodes and the bytes of text counted with
 * aliases expanded are bounded (the latter by tasker.max_template_size), as
 * is the nesting depth, so a small document can neither expand into a huge
 * one nor exhaust the stack.  Every loop that reads events or walks nodes
 * checks for interrupts, so statement_timeout and cancel stop any of them.
 * A text holds one template, or, for tasker_register_templates, a stream
 * of documents registered in order.  ERB (<%= ... %>), which the Ruby
 * engine evaluates before parsing, is refused with a message that says so.
 *
 * The environments.<tasker.environment> overrides are then deep-merged
 * into the tree, the result is validated in full (template_check.c) and
 * only then are catalog rows written (template_store.c).  Everything runs
 * in the caller's transaction, so a registration that fails leaves nothing
 * behind.
 *
 * IDENTIFICATION
 *		src/template.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <yaml.h>

#include "catalog/pg_authid.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/json.h"

#include "guc.h"
#include "security.h"
#include "template.h"

#define TEMPLATE_MAX_DEPTH		64
#define TEMPLATE_MAX_NODES		100000
#define TEMPLATE_MAX_NUMBER_DIGITS	1000

/*
 * The bytes a node counts for: its scalar text, if any, plus this much,
 * about what quotes and separators add when the node is written as JSON.
 */
#define TEMPLATE_NODE_BYTES		2

/* An anchor (&name) and the node it marks: an entry of an anchors_hash. */
typedef struct AnchorEntry
{
	const char *name;
	TNode	   *node;
	uint32		hash;
	char		status;			/* simplehash's */
} AnchorEntry;

/*
 * The hash of an anchor's name is seeded per parse (private_data points at
 * the seed), so that no document can be written to make names collide.
 */
#define SH_PREFIX		anchors
#define SH_ELEMENT_TYPE AnchorEntry
#define SH_KEY_TYPE		const char *
#define SH_KEY			name
#define SH_HASH_KEY(tb, key) \
	((uint32) hash_bytes_extended((const unsigned char *) (key), \
								  strlen(key), *(const uint64 *) (tb)->private_data))
#define SH_EQUAL(tb, a, b)	(strcmp(a, b) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* The state of one parse: libyaml's parser and its current event. */
typedef struct YamlReader
{
	yaml_parser_t parser;
	yaml_event_t event;
	bool		have_event;
	const char *input;			/* the text given to libyaml */
	size_t		input_len;
	anchors_hash *anchors;		/* by name; a redefinition replaces */
	uint64		seed;			/* of the anchors' hash */
	int			nodes;			/* nodes so far, aliases expanded */
	int64		bytes;			/* bytes so far, aliases expanded */
} YamlReader;

static TNode *read_node(YamlReader *r, int depth);

/*
 * template_error: raise the error of an invalid template.  The detail is
 * "Line L, column C: " (when at is known) followed by the formatted text,
 * which must be a sentence ending with a period.  name may be NULL when the
 * template's name is not known yet.
 */
void
template_error(const char *name, int sqlstate, const TNode *at,
			   const char *hint, const char *fmt,...)
{
	StringInfoData detail;

	initStringInfo(&detail);
	if (at != NULL)
		appendStringInfo(&detail, "Line %d, column %d: ", at->line, at->column);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&detail, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&detail, needed);
	}
	if (name != NULL)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("task template \"%s\" is invalid", name),
				 errdetail_internal("%s", detail.data),
				 errhint("%s", hint)));
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("task template is invalid"),
			 errdetail_internal("%s", detail.data),
			 errhint("%s", hint)));
	pg_unreachable();
}

/*
 * offset_position: the 1-based line and column of a byte offset of the
 * input (libyaml reports encoding errors by offset only).  Columns count
 * characters, not bytes.
 */
static void
offset_position(const YamlReader *r, size_t offset, int *line, int *column)
{
	size_t		i;

	*line = 1;
	*column = 1;
	for (i = 0; i < offset && i < r->input_len; i++)
	{
		if (r->input[i] == '\n')
		{
			(*line)++;
			*column = 1;
		}
		else if ((r->input[i] & 0xC0) != 0x80)
			(*column)++;
	}
}

/*
 * erb_tag: the first "<%" of the input, or NULL.  ERB (Ruby's templating,
 * <%= ... %>) is not YAML; templates written for the Ruby engine may hold
 * it, and tasker says so rather than let it pass as text.
 */
static const char *
erb_tag(const char *s, size_t len)
{
	const char *p = s;

	while ((p = memchr(p, '<', len - (p - s))) != NULL)
	{
		if ((size_t) (p - s) + 1 < len && p[1] == '%')
			return p;
		p++;
	}
	return NULL;
}

#define ERB_HINT "Render the ERB before registering the template (tasker does not evaluate it), or use environments: and tasker.environment for values that vary."

/*
 * yaml_syntax_error: report the error libyaml's parser has just met.  When
 * the text holds ERB, the detail says where and the hint says why.
 */
static void
yaml_syntax_error(YamlReader *r)
{
	yaml_parser_t *p = &r->parser;
	StringInfoData detail;
	int			line = (int) p->problem_mark.line + 1;
	int			column = (int) p->problem_mark.column + 1;
	const char *erb = erb_tag(r->input, r->input_len);

	if (p->error == YAML_MEMORY_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("The YAML parser could not allocate memory.")));
	if (p->error == YAML_READER_ERROR)
		offset_position(r, p->problem_offset, &line, &column);

	initStringInfo(&detail);
	appendStringInfo(&detail, "Line %d, column %d: %s", line, column,
					 p->problem ? p->problem : "unknown problem");
	if (p->error == YAML_READER_ERROR && p->problem_value >= 0)
		appendStringInfo(&detail, " (value 0x%X)", (unsigned) p->problem_value);
	if (p->context != NULL)
		appendStringInfo(&detail, " %s at line %d, column %d",
						 p->context, (int) p->context_mark.line + 1,
						 (int) p->context_mark.column + 1);
	appendStringInfoChar(&detail, '.');
	if (erb != NULL)
	{
		offset_position(r, erb - r->input, &line, &column);
		appendStringInfo(&detail, " The text holds an ERB tag (<%%= ... %%>) at line %d, column %d.",
						 line, column);
	}
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("task template is not valid YAML"),
			 errdetail_internal("%s", detail.data),
			 errhint("%s", erb != NULL ? ERB_HINT :
					 "Check the indentation and quoting near that position; YAML indents with spaces, never tabs.")));
}

/*
 * next_event: release the current event and read the next one.  Every
 * loop of the reader goes through here, so this is where it interrupts.
 */
static void
next_event(YamlReader *r)
{
	CHECK_FOR_INTERRUPTS();
	if (r->have_event)
	{
		yaml_event_delete(&r->event);
		r->have_event = false;
	}
	if (!yaml_parser_parse(&r->parser, &r->event))
		yaml_syntax_error(r);
	r->have_event = true;
}

/*
 * mark_node: a node positioned at a libyaml mark, for errors raised before
 * a node exists.
 */
static TNode *
mark_node(yaml_mark_t mark)
{
	TNode	   *node = palloc0(sizeof(TNode));

	node->line = (int) mark.line + 1;
	node->column = (int) mark.column + 1;
	return node;
}

/*
 * count_nodes: add a subtree's nodes and bytes to the document's totals,
 * once for the node itself and once more for each alias to it.  A document
 * that grows beyond TEMPLATE_MAX_NODES nodes or tasker.max_template_size
 * is refused at the node or alias (at) that crosses the bound, before
 * anything is built from it.
 */
static void
count_nodes(YamlReader *r, int nodes, int64 bytes, const TNode *at)
{
	r->nodes += nodes;
	r->bytes += bytes;
	if (r->nodes > TEMPLATE_MAX_NODES)
		template_error(NULL, ERRCODE_PROGRAM_LIMIT_EXCEEDED, at,
					   "Split the template, or use fewer aliases.",
					   "the document has more than %d nodes (aliases counted in full).",
					   TEMPLATE_MAX_NODES);
	if (r->bytes > (int64) tasker_max_template_size * 1024)
		template_error(NULL, ERRCODE_PROGRAM_LIMIT_EXCEEDED, at,
					   "Use fewer or smaller aliases, or split the template; a superuser can raise tasker.max_template_size.",
					   "the document is larger than tasker.max_template_size (%d kB) with every alias expanded.",
					   tasker_max_template_size);
}

/*
 * new_node: a node of the given kind at the current event's start, whose
 * scalar text (if any) is text_len bytes long.
 */
static TNode *
new_node(YamlReader *r, TNodeKind kind, size_t text_len)
{
	TNode	   *node = mark_node(r->event.start_mark);

	node->kind = kind;
	node->size = 1;
	node->bytes = TEMPLATE_NODE_BYTES + (int64) text_len;
	count_nodes(r, node->size, node->bytes, node);
	return node;
}

/*
 * tnode_add: append an item (key NULL) to a sequence or a pair to a
 * mapping.
 */
static void
tnode_add(TNode *parent, TNode *key, TNode *value)
{
	if (parent->nitems == parent->capacity)
	{
		parent->capacity = parent->capacity ? parent->capacity * 2 : 4;
		if (parent->items == NULL)
		{
			parent->items = palloc(sizeof(TNode *) * parent->capacity);
			parent->keys = palloc(sizeof(TNode *) * parent->capacity);
		}
		else
		{
			parent->items = repalloc(parent->items,
									 sizeof(TNode *) * parent->capacity);
			parent->keys = repalloc(parent->keys,
									sizeof(TNode *) * parent->capacity);
		}
	}
	parent->keys[parent->nitems] = key;
	parent->items[parent->nitems] = value;
	parent->nitems++;
	parent->size += value->size + (key ? key->size : 0);
	parent->bytes += value->bytes + (key ? key->bytes : 0);
}

/*
 * scalar_to_server: copy a scalar's UTF-8 text into the server encoding.
 * libyaml has checked the UTF-8; a NUL (from an escape) cannot be stored.
 */
static char *
scalar_to_server(const TNode *at, const char *s, size_t len)
{
	char	   *copy;
	int			enc = GetDatabaseEncoding();

	if (memchr(s, '\0', len) != NULL)
		template_error(NULL, ERRCODE_UNTRANSLATABLE_CHARACTER, at,
					   "Remove the \\0 or \\x00 escape from the string.",
					   "the scalar contains a NUL character, which text cannot hold.");
	copy = pnstrdup(s, len);
	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return copy;
	return pg_any_to_server(copy, (int) len, PG_UTF8);
}

/*
 * check_erb: refuse a scalar holding an ERB tag (<% ... %>), which would
 * otherwise be kept as text and reach a handler unevaluated.
 */
static void
check_erb(const TNode *node)
{
	const char *open = strstr(node->value, "<%");

	if (open != NULL && strstr(open + 2, "%>") != NULL)
		template_error(NULL, ERRCODE_FEATURE_NOT_SUPPORTED, node, ERB_HINT,
					   "the scalar %s holds an ERB tag (<%%= ... %%>).",
					   tnode_describe(node));
}

/*
 * read_scalar: the node of the current scalar event.
 */
static TNode *
read_scalar(YamlReader *r)
{
	yaml_event_t *ev = &r->event;
	TNode	   *node = new_node(r, TNODE_SCALAR, ev->data.scalar.length);
	const char *tag = (const char *) ev->data.scalar.tag;

	node->value = scalar_to_server(node, (const char *) ev->data.scalar.value,
								   ev->data.scalar.length);
	check_erb(node);
	node->quoted = (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) ||
		(tag != NULL && strcmp(tag, YAML_STR_TAG) == 0);
	return node;
}

/*
 * read_alias: the anchored node an alias (*name) refers to, shared, and
 * counted in full at the alias's position.
 */
static TNode *
read_alias(YamlReader *r)
{
	const char *name = (const char *) r->event.data.alias.anchor;
	TNode	   *at = mark_node(r->event.start_mark);
	AnchorEntry *a = anchors_lookup(r->anchors, name);

	if (a == NULL)
		template_error(NULL, ERRCODE_SYNTAX_ERROR, at,
					   "Define the anchor (&name) before the alias (*name) that uses it.",
					   "the alias \"*%s\" refers to no anchor defined before it.",
					   pg_any_to_server(name, (int) strlen(name), PG_UTF8));
	count_nodes(r, a->node->size, a->node->bytes, at);
	return a->node;
}

/*
 * remember_anchor: record that an anchor (&name) marks a node; a later
 * anchor of the same name replaces it for the aliases that follow.
 */
static void
remember_anchor(YamlReader *r, const char *name, TNode *node)
{
	bool		found;
	AnchorEntry *a = anchors_insert(r->anchors, name, &found);

	a->node = node;
}

/*
 * read_sequence: the node of a sequence whose start event is current;
 * returns with its end event current.
 */
static TNode *
read_sequence(YamlReader *r, int depth)
{
	TNode	   *node = new_node(r, TNODE_SEQUENCE, 0);

	for (;;)
	{
		next_event(r);
		if (r->event.type == YAML_SEQUENCE_END_EVENT)
			break;
		tnode_add(node, NULL, read_node(r, depth + 1));
	}
	return node;
}

/*
 * key_order: qsort comparator of mapping keys: by text, then by position.
 */
static int
key_order(const void *a, const void *b)
{
	const TNode *ka = *(const TNode *const *) a;
	const TNode *kb = *(const TNode *const *) b;
	int			c = strcmp(ka->value, kb->value);

	if (c != 0)
		return c;
	if (ka->line != kb->line)
		return (ka->line < kb->line) ? -1 : 1;
	return (ka->column < kb->column) ? -1 : (ka->column > kb->column);
}

/*
 * check_duplicate_keys: refuse a mapping that repeats a key, reporting the
 * repetition that comes first in the document.
 */
static void
check_duplicate_keys(const TNode *map)
{
	TNode	  **sorted;
	const TNode *first = NULL;
	const TNode *second = NULL;
	int			i;

	if (map->nitems < 2)
		return;
	sorted = palloc(sizeof(TNode *) * map->nitems);
	memcpy(sorted, map->keys, sizeof(TNode *) * map->nitems);
	qsort(sorted, map->nitems, sizeof(TNode *), key_order);
	for (i = 1; i < map->nitems; i++)
	{
		if (strcmp(sorted[i - 1]->value, sorted[i]->value) != 0)
			continue;
		if (second == NULL || sorted[i]->line < second->line ||
			(sorted[i]->line == second->line &&
			 sorted[i]->column < second->column))
		{
			first = sorted[i - 1];
			second = sorted[i];
		}
	}
	if (second != NULL)
		template_error(NULL, ERRCODE_INVALID_PARAMETER_VALUE, second,
					   "Remove one of the two; a YAML mapping cannot repeat a key.",
					   "the key \"%s\" appears a second time in the same mapping (the first is at line %d, column %d).",
					   second->value, first->line, first->column);
	pfree(sorted);
}

/*
 * read_mapping: the node of a mapping whose start event is current;
 * returns with its end event current.  Keys must be scalars.
 */
static TNode *
read_mapping(YamlReader *r, int depth)
{
	TNode	   *node = new_node(r, TNODE_MAPPING, 0);

	for (;;)
	{
		TNode	   *key;

		next_event(r);
		if (r->event.type == YAML_MAPPING_END_EVENT)
			break;
		key = read_node(r, depth + 1);
		if (key->kind != TNODE_SCALAR)
			template_error(NULL, ERRCODE_INVALID_PARAMETER_VALUE, key,
						   "Use plain strings as keys.",
						   "a mapping key is %s; keys must be scalars.",
						   tnode_describe(key));
		next_event(r);
		tnode_add(node, key, read_node(r, depth + 1));
	}
	check_duplicate_keys(node);
	return node;
}

/*
 * read_node: the node whose first event is current; returns with the
 * node's last event current.  Records the node's anchor, if any.
 */
static TNode *
read_node(YamlReader *r, int depth)
{
	yaml_event_t *ev = &r->event;
	const char *anchor = NULL;
	TNode	   *node;

	check_stack_depth();
	if (depth > TEMPLATE_MAX_DEPTH)
		template_error(NULL, ERRCODE_PROGRAM_LIMIT_EXCEEDED,
					   mark_node(ev->start_mark),
					   "Flatten the template.",
					   "the document nests deeper than %d levels.",
					   TEMPLATE_MAX_DEPTH);
	if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.anchor)
		anchor = pstrdup((const char *) ev->data.scalar.anchor);
	else if (ev->type == YAML_SEQUENCE_START_EVENT && ev->data.sequence_start.anchor)
		anchor = pstrdup((const char *) ev->data.sequence_start.anchor);
	else if (ev->type == YAML_MAPPING_START_EVENT && ev->data.mapping_start.anchor)
		anchor = pstrdup((const char *) ev->data.mapping_start.anchor);

	switch (ev->type)
	{
		case YAML_ALIAS_EVENT:
			return read_alias(r);
		case YAML_SCALAR_EVENT:
			node = read_scalar(r);
			break;
		case YAML_SEQUENCE_START_EVENT:
			node = read_sequence(r, depth);
			break;
		case YAML_MAPPING_START_EVENT:
			node = read_mapping(r, depth);
			break;
		default:
			elog(ERROR, "unexpected YAML event %d", (int) ev->type);
			return NULL;
	}
	if (anchor != NULL)
		remember_anchor(r, anchor, node);
	return node;
}

/*
 * read_documents: the root node of each document of the stream, in order.
 * With one, a second document is an error at its start.  Anchors do not
 * reach across documents; the size bounds count the whole stream, which is
 * what one call holds in memory.
 */
static List *
read_documents(YamlReader *r, bool one)
{
	List	   *roots = NIL;

	next_event(r);				/* stream start */
	next_event(r);
	if (r->event.type == YAML_STREAM_END_EVENT)
		template_error(NULL, ERRCODE_INVALID_PARAMETER_VALUE, NULL,
					   "Pass the text of a template with at least name and step_templates.",
					   "The text contains no YAML document.");
	while (r->event.type != YAML_STREAM_END_EVENT)
	{
		if (one && roots != NIL)
			template_error(NULL, ERRCODE_INVALID_PARAMETER_VALUE,
						   mark_node(r->event.start_mark),
						   "Register each template with a call of its own, or all of them with tasker_register_templates.",
						   "a second YAML document starts here; the text must hold one template.");
		anchors_reset(r->anchors);
		next_event(r);			/* past the document start */
		roots = lappend(roots, read_node(r, 0));
		next_event(r);			/* document end */
		next_event(r);
	}
	return roots;
}

/*
 * parse_yaml: parse UTF-8 (or UTF-16 with a byte order mark) text into a
 * node tree per document (only one allowed with one).  libyaml's memory is
 * released however the parse ends.
 */
static List *
parse_yaml(const char *text, size_t len, bool one)
{
	YamlReader	r;
	List	   *volatile roots = NIL;

	memset(&r, 0, sizeof(r));
	r.input = text;
	r.input_len = len;
	r.seed = pg_prng_uint64(&pg_global_prng_state);
	r.anchors = anchors_create(CurrentMemoryContext, 64, &r.seed);
	if (!yaml_parser_initialize(&r.parser))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("The YAML parser could not be initialised.")));
	yaml_parser_set_input_string(&r.parser, (const unsigned char *) text, len);
	PG_TRY();
	{
		roots = read_documents(&r, one);
	}
	PG_FINALLY();
	{
		if (r.have_event)
			yaml_event_delete(&r.event);
		yaml_parser_delete(&r.parser);
	}
	PG_END_TRY();
	return roots;
}

/*
 * is_json_number: whether text is a number by JSON's grammar.
 */
static bool
is_json_number(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (*s >= '0' && *s <= '9')
			s++;
	else
		return false;
	if (*s == '.')
	{
		if (!(*++s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	if (*s == 'e' || *s == 'E')
	{
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

/*
 * plain_scalar_type: what an unquoted scalar means: null (~, null, empty),
 * a boolean (true, false), a number (in JSON's syntax) or else a string.
 */
static TScalarType
plain_scalar_type(const char *v)
{
	if (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
		strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0)
		return TSCALAR_NULL;
	if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 ||
		strcmp(v, "TRUE") == 0 || strcmp(v, "false") == 0 ||
		strcmp(v, "False") == 0 || strcmp(v, "FALSE") == 0)
		return TSCALAR_BOOL;
	if (is_json_number(v))
		return TSCALAR_NUMBER;
	return TSCALAR_STRING;
}

/*
 * tnode_scalar_type: what a scalar means.  Quoted scalars are strings;
 * plain ones follow plain_scalar_type.
 */
TScalarType
tnode_scalar_type(const TNode *node)
{
	Assert(node->kind == TNODE_SCALAR);
	if (node->quoted)
		return TSCALAR_STRING;
	return plain_scalar_type(node->value);
}

/*
 * tnode_get: the value of a key of a mapping, or NULL.
 */
const TNode *
tnode_get(const TNode *map, const char *key)
{
	int			i;

	if (map == NULL || map->kind != TNODE_MAPPING)
		return NULL;
	for (i = 0; i < map->nitems; i++)
		if (strcmp(map->keys[i]->value, key) == 0)
			return map->items[i];
	return NULL;
}

/*
 * tnode_describe: "a mapping", "a list", "null", or a scalar's text
 * (quoted, and shortened to 40 characters) for messages.  A quoted scalar
 * that would be a number, boolean or null unquoted is "the string ...",
 * so that "not \"3\"" cannot be misread.
 */
const char *
tnode_describe(const TNode *node)
{
	StringInfoData buf;
	int			len;
	int			clip;

	if (node->kind == TNODE_MAPPING)
		return "a mapping";
	if (node->kind == TNODE_SEQUENCE)
		return "a list";
	if (tnode_scalar_type(node) == TSCALAR_NULL)
		return "null";
	len = strlen(node->value);
	clip = pg_mbcliplen(node->value, len, 40);
	initStringInfo(&buf);
	if (node->quoted && plain_scalar_type(node->value) != TSCALAR_STRING)
		appendStringInfoString(&buf, "the string ");
	appendStringInfoChar(&buf, '"');
	appendBinaryStringInfo(&buf, node->value, clip);
	if (clip < len)
		appendStringInfoString(&buf, "...");
	appendStringInfoChar(&buf, '"');
	return buf.data;
}

/*
 * number_in_range: whether a JSON number (known to be well formed) has at
 * most TEMPLATE_MAX_NUMBER_DIGITS digits before and after its decimal point
 * once its exponent is applied, so that jsonb can hold it.
 */
static bool
number_in_range(const char *s)
{
	long		int_digits = 0;
	long		frac_digits = 0;
	long		exponent = 0;
	bool		negative = false;

	if (*s == '-')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
		int_digits++;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
			frac_digits++;
	if (*s == 'e' || *s == 'E')
	{
		s++;
		negative = (*s == '-');
		if (*s == '+' || *s == '-')
			s++;
		for (; *s >= '0' && *s <= '9' && exponent <= TEMPLATE_MAX_NUMBER_DIGITS * 4; s++)
			exponent = exponent * 10 + (*s - '0');
		if (negative)
			exponent = -exponent;
	}
	return int_digits + exponent <= TEMPLATE_MAX_NUMBER_DIGITS &&
		frac_digits - exponent <= TEMPLATE_MAX_NUMBER_DIGITS;
}

/*
 * tnode_to_json: append a node as JSON.  Scalars follow tnode_scalar_type;
 * a number too large or too precise for jsonb is an error of the template
 * called name (NULL if unknown).
 */
void
tnode_to_json(StringInfo buf, const TNode *node, const char *name)
{
	int			i;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (node->kind == TNODE_SCALAR)
	{
		switch (tnode_scalar_type(node))
		{
			case TSCALAR_NULL:
				appendStringInfoString(buf, "null");
				break;
			case TSCALAR_BOOL:
				appendStringInfoString(buf, (node->value[0] == 't' ||
											 node->value[0] == 'T') ? "true" : "false");
				break;
			case TSCALAR_NUMBER:
				if (!number_in_range(node->value))
					template_error(name, ERRCODE_INVALID_PARAMETER_VALUE, node,
								   "Quote the value to keep it as a string.",
								   "the number %s has more than %d digits before or after its decimal point.",
								   tnode_describe(node), TEMPLATE_MAX_NUMBER_DIGITS);
				appendStringInfoString(buf, node->value);
				break;
			case TSCALAR_STRING:
				escape_json(buf, node->value);
				break;
		}
		return;
	}
	appendStringInfoChar(buf, node->kind == TNODE_MAPPING ? '{' : '[');
	for (i = 0; i < node->nitems; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		if (node->kind == TNODE_MAPPING)
		{
			escape_json(buf, node->keys[i]->value);
			appendStringInfoString(buf, ": ");
		}
		tnode_to_json(buf, node->items[i], name);
	}
	appendStringInfoChar(buf, node->kind == TNODE_MAPPING ? '}' : ']');
}

/*
 * copy_collection: a shallow copy of a mapping or sequence, so that a merge
 * can change the copy's pairs while the original is shared.
 */
static TNode *
copy_collection(const TNode *node)
{
	TNode	   *copy = palloc(sizeof(TNode));

	*copy = *node;
	copy->capacity = node->nitems;
	if (node->nitems > 0)
	{
		copy->keys = palloc(sizeof(TNode *) * node->nitems);
		copy->items = palloc(sizeof(TNode *) * node->nitems);
		memcpy(copy->keys, node->keys, sizeof(TNode *) * node->nitems);
		memcpy(copy->items, node->items, sizeof(TNode *) * node->nitems);
	}
	else
	{
		copy->keys = NULL;
		copy->items = NULL;
	}
	return copy;
}

/*
 * step_name_of: the name of a step template mapping, or NULL.
 */
static const char *
step_name_of(const TNode *step)
{
	const TNode *name = tnode_get(step, "name");

	if (name == NULL || name->kind != TNODE_SCALAR)
		return NULL;
	return name->value;
}

/* A name and the index of the pair or item it names, for sorted lookup. */
typedef struct NameIndex
{
	const char *name;
	int			index;
} NameIndex;

/*
 * name_index_order: qsort comparator of NameIndex: by name, then index.
 */
static int
name_index_order(const void *a, const void *b)
{
	const NameIndex *na = (const NameIndex *) a;
	const NameIndex *nb = (const NameIndex *) b;
	int			c = strcmp(na->name, nb->name);

	if (c != 0)
		return c;
	return (na->index < nb->index) ? -1 : (na->index > nb->index);
}

/*
 * sort_names: the n names that are not NULL, with their indexes, sorted
 * (*count of them), so that a merge finds each name in log time rather
 * than by a scan per override.
 */
static NameIndex *
sort_names(const char **names, int n, int *count)
{
	NameIndex  *sorted = palloc(sizeof(NameIndex) * Max(n, 1));
	int			i;

	*count = 0;
	for (i = 0; i < n; i++)
	{
		if (names[i] == NULL)
			continue;
		sorted[*count].name = names[i];
		sorted[(*count)++].index = i;
	}
	qsort(sorted, *count, sizeof(NameIndex), name_index_order);
	return sorted;
}

/*
 * find_name: the position in sorted of the first entry called name, or
 * count when there is none.
 */
static int
find_name(const NameIndex *sorted, int count, const char *name)
{
	int			lo = 0;
	int			hi = count;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (strcmp(sorted[mid].name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < count && strcmp(sorted[lo].name, name) == 0)
		return lo;
	return count;
}

static TNode *merge_nodes(const TNode *base, const TNode *over, bool top);

/*
 * merge_steps: merge override step templates into the base ones by name
 * (into each base step of that name, should there be several); an
 * override for a step the base does not have is ignored.
 */
static TNode *
merge_steps(const TNode *base, const TNode *over)
{
	TNode	   *result = copy_collection(base);
	const char **names = palloc(sizeof(char *) * Max(base->nitems, 1));
	NameIndex  *sorted;
	int			count;
	int			i;
	int			k;

	for (i = 0; i < base->nitems; i++)
		names[i] = base->items[i]->kind == TNODE_MAPPING ?
			step_name_of(base->items[i]) : NULL;
	sorted = sort_names(names, base->nitems, &count);
	for (i = 0; i < over->nitems; i++)
	{
		const char *name = step_name_of(over->items[i]);

		CHECK_FOR_INTERRUPTS();
		if (name == NULL || over->items[i]->kind != TNODE_MAPPING)
			continue;
		for (k = find_name(sorted, count, name);
			 k < count && strcmp(sorted[k].name, name) == 0; k++)
			result->items[sorted[k].index] =
				merge_nodes(result->items[sorted[k].index], over->items[i],
							false);
	}
	return result;
}

/*
 * merge_nodes: deep-merge an override into a base mapping: mappings merge
 * key by key, step_templates (at the top) merge by step name, and any other
 * value replaces the base's.  Keys are unique in both (the reader refuses
 * repeats), so each override key matches at most one base key.
 */
static TNode *
merge_nodes(const TNode *base, const TNode *over, bool top)
{
	TNode	   *result;
	const char **names;
	NameIndex  *sorted;
	int			count;
	int			i;

	check_stack_depth();
	if (base->kind != TNODE_MAPPING || over->kind != TNODE_MAPPING)
		return (TNode *) over;
	result = copy_collection(base);
	names = palloc(sizeof(char *) * Max(base->nitems, 1));
	for (i = 0; i < base->nitems; i++)
		names[i] = base->keys[i]->value;
	sorted = sort_names(names, base->nitems, &count);
	for (i = 0; i < over->nitems; i++)
	{
		const TNode *value = over->items[i];
		int			k = find_name(sorted, count, over->keys[i]->value);
		int			j = (k < count) ? sorted[k].index : -1;

		CHECK_FOR_INTERRUPTS();
		if (j < 0)
			tnode_add(result, over->keys[i], (TNode *) value);
		else if (top && strcmp(over->keys[i]->value, "step_templates") == 0 &&
				 result->items[j]->kind == TNODE_SEQUENCE &&
				 value->kind == TNODE_SEQUENCE)
			result->items[j] = merge_steps(result->items[j], value);
		else
			result->items[j] = merge_nodes(result->items[j], value, false);
	}
	return result;
}

/*
 * without_key: a copy of a mapping without one of its keys.
 */
static TNode *
without_key(const TNode *map, const char *key)
{
	TNode	   *result = copy_collection(map);
	int			i;
	int			n = 0;

	for (i = 0; i < map->nitems; i++)
	{
		if (strcmp(map->keys[i]->value, key) == 0)
			continue;
		result->keys[n] = map->keys[i];
		result->items[n] = map->items[i];
		n++;
	}
	result->nitems = n;
	return result;
}

/*
 * apply_environment: the template with the overrides of the environment
 * that tasker.environment names merged in, and without its environments
 * key.  Every environment's overrides are checked, chosen or not.
 */
static const TNode *
apply_environment(TaskTemplate *t, const TNode *root)
{
	const TNode *envs = tnode_get(root, "environments");
	const TNode *over;

	if (envs == NULL)
		return root;
	template_check_environments(t, root);
	over = NULL;
	if (tasker_environment != NULL && tasker_environment[0] != '\0')
	{
		over = tnode_get(envs, tasker_environment);
		if (over == NULL && envs->kind == TNODE_MAPPING)
			ereport(NOTICE,
					(errcode(ERRCODE_WARNING),
					 errmsg("template \"%s\" has no environment \"%s\"",
							t->name ? t->name : "(unnamed)", tasker_environment),
					 errdetail("tasker.environment is \"%s\"; the template is registered without environment overrides.",
							   tasker_environment),
					 errhint("Check the spelling of tasker.environment, or add \"%s\" to the template's environments.",
							 tasker_environment)));
	}
	if (over != NULL && over->kind == TNODE_MAPPING)
		root = merge_nodes(root, over, true);
	return without_key(root, "environments");
}

/*
 * preliminary_name: the template's name as written, for messages raised
 * before it is validated; NULL when there is no usable one.
 */
static const char *
preliminary_name(const TNode *root)
{
	const TNode *name = tnode_get(root, "name");

	if (name == NULL || name->kind != TNODE_SCALAR ||
		tnode_scalar_type(name) == TSCALAR_NULL || name->value[0] == '\0')
		return NULL;
	if (strlen(name->value) > 4 * TEMPLATE_NAME_MAX)
		return NULL;
	return name->value;
}

/*
 * register_root: validate the template of one document and write its
 * catalog rows; returns its named_task_id.
 */
static int32
register_root(const TNode *root, bool replace)
{
	TaskTemplate t;
	StringInfoData json;
	int32		named_task_id;

	memset(&t, 0, sizeof(t));
	if (root->kind != TNODE_MAPPING)
		template_error(NULL, ERRCODE_INVALID_PARAMETER_VALUE, root,
					   "A template is a mapping with keys such as name and step_templates.",
					   "the document is %s, not a mapping.", tnode_describe(root));
	t.name = preliminary_name(root);
	root = apply_environment(&t, root);
	template_check(&t, root);

	initStringInfo(&json);
	tnode_to_json(&json, root, t.name);
	t.template_json = json.data;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	template_resolve_handlers(&t);
	named_task_id = template_store(&t, replace);
	SPI_finish();
	return named_task_id;
}

/*
 * text_to_utf8: the text given (in the server encoding) as UTF-8, which is
 * what libyaml reads.
 */
static const char *
text_to_utf8(const char *text, size_t *len)
{
	int			enc = GetDatabaseEncoding();

	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return text;
	text = pg_server_to_any(text, (int) *len, PG_UTF8);
	*len = strlen(text);
	return text;
}

/*
 * tasker_register_template_text: register the template in a YAML or JSON
 * text (in the server encoding) and return its named_task_id.  With
 * replace, an existing template of the same namespace, name and version is
 * updated in place.  The text must hold one document.
 */
int32
tasker_register_template_text(const char *text, size_t len, bool replace)
{
	text = text_to_utf8(text, &len);
	return register_root((const TNode *) linitial(parse_yaml(text, len, true)),
						 replace);
}

/*
 * document_error_context: name the document of a stream in the context of
 * errors.
 */
static void
document_error_context(void *arg)
{
	errcontext("YAML document %d of the text", *(const int *) arg + 1);
}

/*
 * tasker_register_templates_text: register the template of each document
 * of a YAML text, in order, as tasker_register_template_text does, and
 * return their named_task_ids (*n of them).  All run in the caller's
 * transaction, so one invalid document registers none.
 */
int32 *
tasker_register_templates_text(const char *text, size_t len, bool replace,
							   int *n)
{
	List	   *roots;
	ListCell   *lc;
	int32	   *ids;
	int			document = 0;
	ErrorContextCallback callback;

	text = text_to_utf8(text, &len);
	roots = parse_yaml(text, len, false);
	ids = palloc(sizeof(int32) * list_length(roots));
	callback.callback = document_error_context;
	callback.arg = (void *) &document;
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	foreach(lc, roots)
	{
		CHECK_FOR_INTERRUPTS();
		ids[document] = register_root((const TNode *) lfirst(lc), replace);
		document++;
	}
	error_context_stack = callback.previous;
	*n = list_length(roots);
	return ids;
}

/*
 * file_error_context: name the template file in the context of errors.
 */
static void
file_error_context(void *arg)
{
	errcontext("task template file \"%s\"", (const char *) arg);
}

/*
 * read_template_file: the whole content of a server file.
 */
static StringInfo
read_template_file(const char *path)
{
	StringInfo	buf = makeStringInfo();
	FILE	   *file;
	char		chunk[8192];
	size_t		n;

	file = AllocateFile(path, PG_BINARY_R);
	if (file == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open task template file \"%s\": %m", path),
				 errdetail("The server process reads the file; a relative path is relative to the data directory."),
				 errhint("Check the path and the file's permissions.")));
	while ((n = fread(chunk, 1, sizeof(chunk), file)) > 0)
		appendBinaryStringInfo(buf, chunk, (int) n);
	if (ferror(file))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read task template file \"%s\": %m", path),
				 errdetail("The server process reads the file; a relative path is relative to the data directory."),
				 errhint("Check that the path names a readable regular file.")));
	FreeFile(file);
	return buf;
}

/*
 * tasker_register_template_path: register the template in a server file.
 * The caller needs the privileges of pg_read_server_files.
 */
int32
tasker_register_template_path(const char *path, bool replace)
{
	StringInfo	content;
	ErrorContextCallback callback;
	int32		named_task_id;

	if (!has_privs_of_role(tasker_caller(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read task template file \"%s\"", path),
				 errdetail("Only roles with the privileges of the pg_read_server_files role may read files on the server."),
				 errhint("Ask an administrator to grant pg_read_server_files, or pass the text to tasker_register_template.")));
	content = read_template_file(path);
	if (memchr(content->data, '\0', content->len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("task template file \"%s\" contains a zero byte", path),
				 errdetail("A template file is YAML or JSON text."),
				 errhint("Check that the path names the template, not a binary file.")));

	callback.callback = file_error_context;
	callback.arg = (void *) path;
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	named_task_id = tasker_register_template_text(content->data, content->len,
												  replace);
	error_context_stack = callback.previous;
	return named_task_id;
}
