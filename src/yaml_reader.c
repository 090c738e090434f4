/*-------------------------------------------------------------------------
 *
 * yaml_reader.c
 *		The libyaml reader: YAML text to a tree of nodes that remember
 *		their line and column, and what every later stage asks of a node.
 *
 * This is the only file that uses libyaml.  The text is parsed event by
 * event into a tree of TNodes that remember their line and column, so that
 * every later error can point at the offending spot (template_error);
 * libyaml's own memory is released on every path, errors included, by
 * PG_FINALLY.  Aliases share the anchored subtree, found through a hash
 * table whose hash is seeded per parse.  Both the number of nodes and the
 * bytes of text counted with aliases expanded are bounded (the latter by
 * tasker.max_template_size), as is the nesting depth, so a small document
 * can neither expand into a huge one nor exhaust the stack.  Every loop
 * that reads events or walks nodes checks for interrupts, so
 * statement_timeout and cancel stop any of them.  A text holds one
 * document, or a stream of them.  ERB (<%= ... %>), which the Ruby engine
 * evaluates before parsing, is refused with a message that says so.
 *
 * Scalars mean what the YAML 1.2 core schema says (numbers as in JSON):
 * tnode_scalar_type, and tnode_to_json, which writes a tree as JSON.
 * Everything runs in the caller's transaction and memory context.  This
 * file calls no tasker module but guc.c: the template files
 * (template.c, template_check.c, template_store.c) and http_request.c
 * build on it.
 *
 * IDENTIFICATION
 *		src/yaml_reader.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <yaml.h>

#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/json.h"

#include "guc.h"
#include "yaml_reader.h"

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
 * mapping (also used to build the merged tree of template.c).
 */
void
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
 * yaml_read: parse UTF-8 (or UTF-16 with a byte order mark) text into a
 * node tree per document (only one allowed with one).  libyaml's memory is
 * released however the parse ends.
 */
List *
yaml_read(const char *text, size_t len, bool one)
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
