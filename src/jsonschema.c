/*-------------------------------------------------------------------------
 *
 * jsonschema.c
 *		A JSON Schema validator that walks jsonb values in place.
 *
 * Task contexts are checked against their template's schema when a task is
 * created, so this code sits on the task-creation path and runs in the
 * caller's transaction.  It reads both the schema and the instance through
 * the jsonb container API (no text re-parsing) and keeps no state between
 * calls.
 *
 * Validation happens in two passes.  check_schema() walks the whole schema
 * and raises for anything malformed or unsupported, so a schema error never
 * depends on the instance.  validate_value() then walks schema and instance
 * together, assumes a well-formed schema (a malformed one there is a
 * can't-happen elog) and collects every violation rather than stopping at
 * the first.  Keywords apply in the order of the keywords[] table.
 *
 * Instance paths in messages are '$' for the root, '.key' for identifier
 * keys, '["odd key"]' for others and '[n]' for array elements; schema paths
 * in errors use the same notation.
 *
 * IDENTIFICATION
 *		src/jsonschema.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/numeric.h"

#include "jsonschema.h"

/* What check_keyword() says "type" must be */
#define TYPE_NAMES_WANTED \
	"one of object, array, string, number, integer, boolean and null, " \
	"or a non-empty array of them"

/* Quoted values longer than this many characters are cut and end in "..." */
#define QUOTE_MAX_CHARS 60

/* What the value of a keyword must look like (checked by check_keyword) */
typedef enum KeywordValue
{
	KV_ANNOTATION,				/* anything; never applied */
	KV_ANY,						/* any JSON value */
	KV_BOOL,					/* true or false */
	KV_NUMBER,					/* any number */
	KV_LIMIT,					/* a number, or draft 4's boolean modifier */
	KV_POSITIVE,				/* a number above zero */
	KV_COUNT,					/* a non-negative integer */
	KV_ARRAY,					/* any array */
	KV_STRING_ARRAY,			/* an array of strings */
	KV_TYPE,					/* a type name or an array of them */
	KV_PATTERN,					/* a string that compiles as a regex */
	KV_SCHEMA,					/* a schema */
	KV_SCHEMA_ARRAY,			/* a non-empty array of schemas */
	KV_SCHEMA_MAP,				/* an object whose values are schemas */
	KV_ITEMS					/* a schema or an array of schemas */
} KeywordValue;

/* The state of one validation: the violations so far and where we are */
typedef struct Validation
{
	List	   *violations;		/* palloc'd "path: message" strings */
	StringInfoData path;		/* instance path of the current value */
} Validation;

/*
 * Applies one keyword: kw is the keyword's value, inst the instance value
 * and schema the schema object holding the keyword (for keywords that
 * depend on a sibling, such as additionalProperties on properties).
 */
typedef void (*ApplyFn) (Validation *v, const JsonbValue *kw,
						 const JsonbValue *inst, JsonbContainer *schema);

typedef struct Keyword
{
	const char *name;
	KeywordValue value;
	ApplyFn		apply;			/* NULL: ignored, or applied by sibling */
} Keyword;

static void validate_value(Validation *v, const JsonbValue *schema,
						   const JsonbValue *inst);

/* ----------------------------------------------------------------
 * Paths, values and messages
 * ----------------------------------------------------------------
 */

/*
 * is_identifier: whether a key can follow a dot in a path ([A-Za-z_]
 * followed by [A-Za-z0-9_]*, ASCII only).
 */
static bool
is_identifier(const char *key, int len)
{
	int			i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) key[i];

		if (IS_HIGHBIT_SET(c))
			return false;
		if (c == '_' || isalpha(c) || (i > 0 && isdigit(c)))
			continue;
		return false;
	}
	return true;
}

/*
 * append_key: extend a path by an object key, as .key or ["odd key"].
 */
static void
append_key(StringInfo path, const char *key, int len)
{
	char	   *copy;

	if (is_identifier(key, len))
	{
		appendStringInfoChar(path, '.');
		appendBinaryStringInfo(path, key, len);
		return;
	}
	copy = pnstrdup(key, len);
	appendStringInfoChar(path, '[');
	escape_json(path, copy);
	appendStringInfoChar(path, ']');
	pfree(copy);
}

/*
 * truncate_path: undo the appends made since the path was len long.
 */
static void
truncate_path(StringInfo path, int len)
{
	path->len = len;
	path->data[len] = '\0';
}

/*
 * quote_value: a value as JSON text for a message, cut to about
 * QUOTE_MAX_CHARS characters (at a character boundary) with "..." so that
 * a large object does not swamp the message.
 */
static char *
quote_value(const JsonbValue *val)
{
	Jsonb	   *jb = JsonbValueToJsonb((JsonbValue *) val);
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	int			len = strlen(text);
	int			cut;

	if (pg_mbstrlen_with_len(text, len) <= QUOTE_MAX_CHARS)
		return text;
	cut = pg_mbcliplen(text, len, QUOTE_MAX_CHARS - 3);
	strcpy(text + cut, "...");
	return text;
}

/*
 * root_value: the top-level value of a jsonb document, with a scalar
 * document unwrapped into a scalar JsonbValue.
 */
static void
root_value(Jsonb *jb, JsonbValue *out)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, out))
			elog(ERROR, "could not extract a scalar from a scalar jsonb");
		return;
	}
	out->type = jbvBinary;
	out->val.binary.data = &jb->root;
	out->val.binary.len = VARSIZE(jb) - VARHDRSZ;
}

/*
 * add_violation: record "<current path>: <message>".
 */
static void
pg_attribute_printf(2, 3)
add_violation(Validation *v, const char *fmt,...)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s: ", v->path.data);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	v->violations = lappend(v->violations, buf.data);
}

/*
 * schema_error: raise INVALID_PARAMETER_VALUE for a malformed schema at a
 * schema path; detail is a full sentence.
 */
static void
pg_attribute_noreturn()
schema_error(StringInfo path, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("JSON Schema is invalid at %s", path->data),
			 errdetail("%s", detail),
			 errhint("docs/json-schema.md lists the keywords tasker supports and the values they take.")));
}

/* ----------------------------------------------------------------
 * Value helpers
 * ----------------------------------------------------------------
 */

/*
 * is_object, is_array: the kind of a container value.
 */
static bool
is_object(const JsonbValue *val)
{
	return val->type == jbvBinary &&
		JsonContainerIsObject(val->val.binary.data);
}

static bool
is_array(const JsonbValue *val)
{
	return val->type == jbvBinary &&
		JsonContainerIsArray(val->val.binary.data);
}

/*
 * container_size: the number of elements or pairs of a container value.
 */
static int
container_size(const JsonbValue *val)
{
	return JsonContainerSize(val->val.binary.data);
}

/*
 * numeric_compare: <0, 0 or >0 as a is below, equal to or above b.
 */
static int
numeric_compare(const JsonbValue *a, const JsonbValue *b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
											 NumericGetDatum(a->val.numeric),
											 NumericGetDatum(b->val.numeric)));
}

/*
 * is_integer: whether a numeric has no fractional part (3.0 is one).
 */
static bool
is_integer(Numeric num)
{
	Datum		floor = DirectFunctionCall1(numeric_floor,
											NumericGetDatum(num));

	return DatumGetBool(DirectFunctionCall2(numeric_eq, floor,
											NumericGetDatum(num)));
}

/*
 * json_type: the JSON Schema type name of a value; a number without a
 * fractional part reports as "integer".
 */
static const char *
json_type(const JsonbValue *val)
{
	switch (val->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return is_integer(val->val.numeric) ? "integer" : "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return is_object(val) ? "object" : "array";
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) val->type);
	}
	return NULL;				/* keep the compiler quiet */
}

/*
 * json_equal: JSON equality; numbers compare by value (1 equals 1.0) and
 * objects key by key, as jsonb's own comparison does.
 */
static bool
json_equal(const JsonbValue *a, const JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val,
					   a->val.string.len) == 0;
		case jbvNumeric:
			return numeric_compare(a, b) == 0;
		case jbvBinary:
			return compareJsonbContainers(a->val.binary.data,
										  b->val.binary.data) == 0;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) a->type);
	}
	return false;				/* keep the compiler quiet */
}

/*
 * lookup: the value of key in an object container; false when absent.
 */
static bool
lookup(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), out) != NULL;
}

/*
 * array_element: element i of an array value (palloc'd).
 */
static JsonbValue *
array_element(const JsonbValue *array, int i)
{
	JsonbValue *elem = getIthJsonbValueFromContainer(array->val.binary.data,
													  i);

	if (elem == NULL)
		elog(ERROR, "jsonb array element %d is missing", i);
	return elem;
}

/*
 * next_pair: step an object iterator to its next key and value; false at
 * the end.  Nested containers come back as jbvBinary values.
 */
static bool
next_pair(JsonbIterator **it, JsonbValue *key, JsonbValue *val)
{
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(it, key, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		if (JsonbIteratorNext(it, val, true) != WJB_VALUE)
			elog(ERROR, "jsonb object key without a value");
		return true;
	}
	return false;
}

/*
 * count_value: a keyword value that check_schema() found to be a small
 * non-negative integer, as an int.
 */
static int
count_value(const JsonbValue *kw)
{
	bool		error = false;
	int32		n = numeric_int4_opt_error(kw->val.numeric, &error);

	if (error || n < 0)
		elog(ERROR, "JSON Schema count keyword escaped checking");
	return n;
}

/*
 * compile_pattern: compile a pattern as an advanced regular expression
 * (the ~ operator's flavour) under the default collation.  On failure,
 * fill errbuf and return false; the caller owns a compiled re and must
 * pg_regfree it.
 */
static bool
compile_pattern(const JsonbValue *pattern, regex_t *re,
				char *errbuf, size_t errlen)
{
	pg_wchar   *wide;
	int			wlen;
	int			rc;

	wide = palloc((pattern->val.string.len + 1) * sizeof(pg_wchar));
	wlen = pg_mb2wchar_with_len(pattern->val.string.val, wide,
								pattern->val.string.len);
	rc = pg_regcomp(re, wide, wlen, REG_ADVANCED | REG_NOSUB,
					DEFAULT_COLLATION_OID);
	pfree(wide);
	if (rc == REG_OKAY)
		return true;
	CHECK_FOR_INTERRUPTS();
	pg_regerror(rc, re, errbuf, errlen);
	return false;
}

/*
 * pattern_matches: whether a regular expression finds a match anywhere in
 * a string (JSON Schema patterns are not anchored).
 *
 * The regex library allocates with malloc, so nothing between compiling
 * and freeing may raise.
 */
static bool
pattern_matches(const JsonbValue *pattern, const JsonbValue *str)
{
	regex_t		re;
	pg_wchar   *data;
	int			dlen;
	int			rc;
	char		errbuf[256];

	data = palloc((str->val.string.len + 1) * sizeof(pg_wchar));
	dlen = pg_mb2wchar_with_len(str->val.string.val, data,
								str->val.string.len);
	if (!compile_pattern(pattern, &re, errbuf, sizeof(errbuf)))
		elog(ERROR, "checked JSON Schema pattern does not compile: %s",
			 errbuf);
	rc = pg_regexec(&re, data, dlen, 0, NULL, 0, NULL, 0);
	if (rc != REG_OKAY && rc != REG_NOMATCH)
		pg_regerror(rc, &re, errbuf, sizeof(errbuf));
	pg_regfree(&re);
	pfree(data);
	if (rc != REG_OKAY && rc != REG_NOMATCH)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("regular expression failed: %s", errbuf)));
	}
	return rc == REG_OKAY;
}

/* ----------------------------------------------------------------
 * Keywords on any value: type, enum, const
 * ----------------------------------------------------------------
 */

/*
 * type_matches: whether a value has a type name; "number" includes
 * integers.
 */
static bool
type_matches(const JsonbValue *inst, const JsonbValue *name)
{
	const char *actual = json_type(inst);
	int			len = name->val.string.len;

	if (len == (int) strlen(actual) &&
		strncmp(name->val.string.val, actual, len) == 0)
		return true;
	return len == 6 && strncmp(name->val.string.val, "number", 6) == 0 &&
		inst->type == jbvNumeric;
}

/*
 * apply_type: "type" is a name or an array of names, any of which may
 * match.  The message lists them as "integer, string or null".
 */
static void
apply_type(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
		   JsonbContainer *schema)
{
	StringInfoData names;
	int			n;
	int			i;

	if (kw->type == jbvString)
	{
		if (!type_matches(inst, kw))
			add_violation(v, "%s is not of type %.*s", quote_value(inst),
						  kw->val.string.len, kw->val.string.val);
		return;
	}
	n = container_size(kw);
	for (i = 0; i < n; i++)
		if (type_matches(inst, array_element(kw, i)))
			return;
	initStringInfo(&names);
	for (i = 0; i < n; i++)
	{
		JsonbValue *name = array_element(kw, i);

		if (i > 0)
			appendStringInfoString(&names, i == n - 1 ? " or " : ", ");
		appendBinaryStringInfo(&names, name->val.string.val,
							   name->val.string.len);
	}
	add_violation(v, "%s is not of type %s", quote_value(inst), names.data);
}

/*
 * apply_enum: the value must equal one of the listed values.
 */
static void
apply_enum(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
		   JsonbContainer *schema)
{
	int			n = container_size(kw);
	int			i;

	for (i = 0; i < n; i++)
		if (json_equal(inst, array_element(kw, i)))
			return;
	add_violation(v, "%s is not one of %s", quote_value(inst),
				  quote_value(kw));
}

/*
 * apply_const: the value must equal the constant.
 */
static void
apply_const(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			JsonbContainer *schema)
{
	if (!json_equal(inst, kw))
		add_violation(v, "%s does not equal the constant %s",
					  quote_value(inst), quote_value(kw));
}

/* ----------------------------------------------------------------
 * Object keywords
 * ----------------------------------------------------------------
 */

/*
 * validate_at_key: validate the value of an object member, with the key
 * appended to the path meanwhile.
 */
static void
validate_at_key(Validation *v, const JsonbValue *schema,
				const JsonbValue *key, const JsonbValue *inst)
{
	int			saved = v->path.len;

	append_key(&v->path, key->val.string.val, key->val.string.len);
	validate_value(v, schema, inst);
	truncate_path(&v->path, saved);
}

/*
 * apply_required: each listed property must be present.
 */
static void
apply_required(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			   JsonbContainer *schema)
{
	int			n = container_size(kw);
	int			i;
	JsonbValue	found;

	if (!is_object(inst))
		return;
	for (i = 0; i < n; i++)
	{
		JsonbValue *name = array_element(kw, i);

		if (getKeyJsonValueFromContainer(inst->val.binary.data,
										 name->val.string.val,
										 name->val.string.len,
										 &found) == NULL)
			add_violation(v, "required property %s is missing",
						  quote_value(name));
	}
}

/*
 * apply_properties: each property the instance has is validated against
 * its schema; absent ones are required's business.
 */
static void
apply_properties(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
				 JsonbContainer *schema)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	sub;
	JsonbValue	member;

	if (!is_object(inst))
		return;
	it = JsonbIteratorInit(kw->val.binary.data);
	while (next_pair(&it, &key, &sub))
		if (getKeyJsonValueFromContainer(inst->val.binary.data,
										 key.val.string.val,
										 key.val.string.len,
										 &member) != NULL)
			validate_at_key(v, &sub, &key, &member);
}

/*
 * apply_additional_properties: properties not named in the sibling
 * "properties" must match this schema; false forbids them outright.
 */
static void
apply_additional_properties(Validation *v, const JsonbValue *kw,
							const JsonbValue *inst, JsonbContainer *schema)
{
	JsonbValue	props;
	bool		have_props = lookup(schema, "properties", &props);
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	member;
	JsonbValue	ignored;

	if (!is_object(inst))
		return;
	it = JsonbIteratorInit(inst->val.binary.data);
	while (next_pair(&it, &key, &member))
	{
		if (have_props &&
			getKeyJsonValueFromContainer(props.val.binary.data,
										 key.val.string.val,
										 key.val.string.len,
										 &ignored) != NULL)
			continue;
		if (kw->type == jbvBool && !kw->val.boolean)
			add_violation(v, "additional property %s is not allowed",
						  quote_value(&key));
		else
			validate_at_key(v, kw, &key, &member);
	}
}

/*
 * apply_min_properties, apply_max_properties: bounds on an object's size.
 */
static void
apply_min_properties(Validation *v, const JsonbValue *kw,
					 const JsonbValue *inst, JsonbContainer *schema)
{
	if (is_object(inst) && container_size(inst) < count_value(kw))
		add_violation(v, "%s has fewer properties than the minimum %d",
					  quote_value(inst), count_value(kw));
}

static void
apply_max_properties(Validation *v, const JsonbValue *kw,
					 const JsonbValue *inst, JsonbContainer *schema)
{
	if (is_object(inst) && container_size(inst) > count_value(kw))
		add_violation(v, "%s has more properties than the maximum %d",
					  quote_value(inst), count_value(kw));
}

/* ----------------------------------------------------------------
 * Array keywords
 * ----------------------------------------------------------------
 */

/*
 * validate_at_index: validate an array element, with [i] appended to the
 * path meanwhile.
 */
static void
validate_at_index(Validation *v, const JsonbValue *schema,
				  const JsonbValue *inst, int i)
{
	int			saved = v->path.len;

	appendStringInfo(&v->path, "[%d]", i);
	validate_value(v, schema, inst);
	truncate_path(&v->path, saved);
}

/*
 * apply_items: a schema applies to every element; an array of schemas
 * (the tuple form) applies position by position, leaving the elements
 * beyond it to additionalItems.
 */
static void
apply_items(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			JsonbContainer *schema)
{
	int			n;
	int			i;

	if (!is_array(inst))
		return;
	n = container_size(inst);
	if (is_array(kw) && container_size(kw) < n)
		n = container_size(kw);
	for (i = 0; i < n; i++)
		validate_at_index(v, is_array(kw) ? array_element(kw, i) : kw,
						  array_element(inst, i), i);
}

/*
 * apply_additional_items: elements beyond a tuple-form "items" must match
 * this schema; false forbids them.  Without a tuple it does nothing.
 */
static void
apply_additional_items(Validation *v, const JsonbValue *kw,
					   const JsonbValue *inst, JsonbContainer *schema)
{
	JsonbValue	items;
	int			i;

	if (!is_array(inst) || !lookup(schema, "items", &items) ||
		!is_array(&items))
		return;
	for (i = container_size(&items); i < container_size(inst); i++)
	{
		JsonbValue *elem = array_element(inst, i);

		if (kw->type == jbvBool && !kw->val.boolean)
		{
			int			saved = v->path.len;

			appendStringInfo(&v->path, "[%d]", i);
			add_violation(v, "additional item %s is not allowed",
						  quote_value(elem));
			truncate_path(&v->path, saved);
		}
		else
			validate_at_index(v, kw, elem, i);
	}
}

/*
 * apply_min_items, apply_max_items: bounds on an array's length.
 */
static void
apply_min_items(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
				JsonbContainer *schema)
{
	if (is_array(inst) && container_size(inst) < count_value(kw))
		add_violation(v, "%s has fewer items than the minimum %d",
					  quote_value(inst), count_value(kw));
}

static void
apply_max_items(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
				JsonbContainer *schema)
{
	if (is_array(inst) && container_size(inst) > count_value(kw))
		add_violation(v, "%s has more items than the maximum %d",
					  quote_value(inst), count_value(kw));
}

/*
 * apply_unique_items: with true, no element may equal an earlier one; each
 * duplicate is reported at its own path, naming the first equal element.
 * The elements are fetched once, so the quadratic comparison allocates
 * nothing per pair.
 */
static void
apply_unique_items(Validation *v, const JsonbValue *kw,
				   const JsonbValue *inst, JsonbContainer *schema)
{
	JsonbValue **elems;
	int			n;
	int			i;
	int			j;

	if (!kw->val.boolean || !is_array(inst))
		return;
	n = container_size(inst);
	elems = palloc(Max(n, 1) * sizeof(JsonbValue *));
	for (i = 0; i < n; i++)
		elems[i] = array_element(inst, i);
	for (i = 1; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		for (j = 0; j < i; j++)
			if (json_equal(elems[i], elems[j]))
			{
				int			saved = v->path.len;

				appendStringInfo(&v->path, "[%d]", i);
				add_violation(v, "%s duplicates item %d",
							  quote_value(elems[i]), j);
				truncate_path(&v->path, saved);
				break;
			}
	}
	pfree(elems);
}

/* ----------------------------------------------------------------
 * String keywords
 * ----------------------------------------------------------------
 */

/*
 * char_length: the length of a string value in characters, not bytes.
 */
static int
char_length(const JsonbValue *str)
{
	return pg_mbstrlen_with_len(str->val.string.val, str->val.string.len);
}

/*
 * apply_min_length, apply_max_length: bounds on a string's length in
 * characters.
 */
static void
apply_min_length(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
				 JsonbContainer *schema)
{
	if (inst->type == jbvString && char_length(inst) < count_value(kw))
		add_violation(v, "%s is shorter than the minimum length %d",
					  quote_value(inst), count_value(kw));
}

static void
apply_max_length(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
				 JsonbContainer *schema)
{
	if (inst->type == jbvString && char_length(inst) > count_value(kw))
		add_violation(v, "%s is longer than the maximum length %d",
					  quote_value(inst), count_value(kw));
}

/*
 * apply_pattern: the regular expression must match somewhere in the
 * string.
 */
static void
apply_pattern(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			  JsonbContainer *schema)
{
	if (inst->type == jbvString && !pattern_matches(kw, inst))
		add_violation(v, "%s does not match pattern %s",
					  quote_value(inst), quote_value(kw));
}

/* ----------------------------------------------------------------
 * Number keywords
 * ----------------------------------------------------------------
 */

/*
 * draft4_exclusive: whether the sibling keyword (exclusiveMinimum or
 * exclusiveMaximum) is draft 4's boolean true.
 */
static bool
draft4_exclusive(JsonbContainer *schema, const char *sibling)
{
	JsonbValue	flag;

	return lookup(schema, sibling, &flag) && flag.type == jbvBool &&
		flag.val.boolean;
}

/*
 * apply_minimum: inst >= minimum, or inst > minimum under draft 4's
 * "exclusiveMinimum": true.
 */
static void
apply_minimum(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			  JsonbContainer *schema)
{
	int			cmp;

	if (inst->type != jbvNumeric)
		return;
	cmp = numeric_compare(inst, kw);
	if (draft4_exclusive(schema, "exclusiveMinimum") && cmp <= 0)
		add_violation(v, "%s is not greater than the exclusive minimum %s",
					  quote_value(inst), quote_value(kw));
	else if (cmp < 0)
		add_violation(v, "%s is less than the minimum %s",
					  quote_value(inst), quote_value(kw));
}

/*
 * apply_maximum: inst <= maximum, or inst < maximum under draft 4's
 * "exclusiveMaximum": true.
 */
static void
apply_maximum(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			  JsonbContainer *schema)
{
	int			cmp;

	if (inst->type != jbvNumeric)
		return;
	cmp = numeric_compare(inst, kw);
	if (draft4_exclusive(schema, "exclusiveMaximum") && cmp >= 0)
		add_violation(v, "%s is not less than the exclusive maximum %s",
					  quote_value(inst), quote_value(kw));
	else if (cmp > 0)
		add_violation(v, "%s is greater than the maximum %s",
					  quote_value(inst), quote_value(kw));
}

/*
 * apply_exclusive_minimum, apply_exclusive_maximum: the draft 6 numeric
 * form; the boolean form is left to minimum and maximum.
 */
static void
apply_exclusive_minimum(Validation *v, const JsonbValue *kw,
						const JsonbValue *inst, JsonbContainer *schema)
{
	if (kw->type == jbvNumeric && inst->type == jbvNumeric &&
		numeric_compare(inst, kw) <= 0)
		add_violation(v, "%s is not greater than the exclusive minimum %s",
					  quote_value(inst), quote_value(kw));
}

static void
apply_exclusive_maximum(Validation *v, const JsonbValue *kw,
						const JsonbValue *inst, JsonbContainer *schema)
{
	if (kw->type == jbvNumeric && inst->type == jbvNumeric &&
		numeric_compare(inst, kw) >= 0)
		add_violation(v, "%s is not less than the exclusive maximum %s",
					  quote_value(inst), quote_value(kw));
}

/*
 * apply_multiple_of: inst divided by multipleOf leaves no remainder
 * (exact decimal arithmetic, so 0.3 is a multiple of 0.1).
 */
static void
apply_multiple_of(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
				  JsonbContainer *schema)
{
	bool		error = false;
	Numeric		rem;

	if (inst->type != jbvNumeric)
		return;
	rem = numeric_mod_opt_error(inst->val.numeric, kw->val.numeric, &error);
	if (error)
		elog(ERROR, "checked multipleOf is zero");
	if (DatumGetBool(DirectFunctionCall2(numeric_ne, NumericGetDatum(rem),
										 NumericGetDatum(int64_to_numeric(0)))))
		add_violation(v, "%s is not a multiple of %s",
					  quote_value(inst), quote_value(kw));
}

/* ----------------------------------------------------------------
 * Combining keywords
 * ----------------------------------------------------------------
 */

/*
 * count_violations: how many violations a subschema finds in the current
 * value, without adding them to the result.
 */
static int
count_violations(Validation *v, const JsonbValue *schema,
				 const JsonbValue *inst)
{
	List	   *saved = v->violations;
	int			n;

	v->violations = NIL;
	validate_value(v, schema, inst);
	n = list_length(v->violations);
	list_free_deep(v->violations);
	v->violations = saved;
	return n;
}

/*
 * count_matches: how many schemas of an array match the current value.
 */
static int
count_matches(Validation *v, const JsonbValue *schemas,
			  const JsonbValue *inst)
{
	int			n = container_size(schemas);
	int			matches = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (count_violations(v, array_element(schemas, i), inst) == 0)
			matches++;
	return matches;
}

/*
 * apply_all_of: every schema applies, and every violation is reported.
 */
static void
apply_all_of(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			 JsonbContainer *schema)
{
	int			n = container_size(kw);
	int			i;

	for (i = 0; i < n; i++)
		validate_value(v, array_element(kw, i), inst);
}

/*
 * apply_any_of: at least one schema must match.
 */
static void
apply_any_of(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			 JsonbContainer *schema)
{
	if (count_matches(v, kw, inst) == 0)
		add_violation(v, "%s does not match any schema in anyOf",
					  quote_value(inst));
}

/*
 * apply_one_of: exactly one schema must match.
 */
static void
apply_one_of(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
			 JsonbContainer *schema)
{
	int			matches = count_matches(v, kw, inst);

	if (matches == 0)
		add_violation(v, "%s does not match any schema in oneOf",
					  quote_value(inst));
	else if (matches > 1)
		add_violation(v, "%s matches %d schemas in oneOf, not exactly one",
					  quote_value(inst), matches);
}

/*
 * apply_not: the schema must not match.
 */
static void
apply_not(Validation *v, const JsonbValue *kw, const JsonbValue *inst,
		  JsonbContainer *schema)
{
	if (count_violations(v, kw, inst) == 0)
		add_violation(v, "%s must not match the schema in not",
					  quote_value(inst));
}

/* ----------------------------------------------------------------
 * The keyword table and the two walks
 * ----------------------------------------------------------------
 */

/* Every keyword tasker knows, in the order validation applies them */
static const Keyword keywords[] = {
	{"type", KV_TYPE, apply_type},
	{"enum", KV_ARRAY, apply_enum},
	{"const", KV_ANY, apply_const},
	{"required", KV_STRING_ARRAY, apply_required},
	{"properties", KV_SCHEMA_MAP, apply_properties},
	{"additionalProperties", KV_SCHEMA, apply_additional_properties},
	{"minProperties", KV_COUNT, apply_min_properties},
	{"maxProperties", KV_COUNT, apply_max_properties},
	{"items", KV_ITEMS, apply_items},
	{"additionalItems", KV_SCHEMA, apply_additional_items},
	{"minItems", KV_COUNT, apply_min_items},
	{"maxItems", KV_COUNT, apply_max_items},
	{"uniqueItems", KV_BOOL, apply_unique_items},
	{"minLength", KV_COUNT, apply_min_length},
	{"maxLength", KV_COUNT, apply_max_length},
	{"pattern", KV_PATTERN, apply_pattern},
	{"minimum", KV_NUMBER, apply_minimum},
	{"maximum", KV_NUMBER, apply_maximum},
	{"exclusiveMinimum", KV_LIMIT, apply_exclusive_minimum},
	{"exclusiveMaximum", KV_LIMIT, apply_exclusive_maximum},
	{"multipleOf", KV_POSITIVE, apply_multiple_of},
	{"allOf", KV_SCHEMA_ARRAY, apply_all_of},
	{"anyOf", KV_SCHEMA_ARRAY, apply_any_of},
	{"oneOf", KV_SCHEMA_ARRAY, apply_one_of},
	{"not", KV_SCHEMA, apply_not},
	{"$schema", KV_ANNOTATION, NULL},
	{"$id", KV_ANNOTATION, NULL},
	{"$comment", KV_ANNOTATION, NULL},
	{"title", KV_ANNOTATION, NULL},
	{"description", KV_ANNOTATION, NULL},
	{"default", KV_ANNOTATION, NULL},
	{"examples", KV_ANNOTATION, NULL}
};

/*
 * validate_value: apply every keyword of a (checked) schema to a value,
 * adding violations at the current path.  A boolean schema accepts
 * everything (true) or nothing (false).
 */
static void
validate_value(Validation *v, const JsonbValue *schema,
			   const JsonbValue *inst)
{
	JsonbContainer *obj;
	JsonbValue	kw;
	int			i;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (schema->type == jbvBool)
	{
		if (!schema->val.boolean)
			add_violation(v, "%s is not allowed here", quote_value(inst));
		return;
	}
	if (!is_object(schema))
		elog(ERROR, "checked JSON Schema is not an object");
	obj = schema->val.binary.data;
	for (i = 0; i < (int) lengthof(keywords); i++)
		if (keywords[i].apply != NULL && lookup(obj, keywords[i].name, &kw))
			keywords[i].apply(v, &kw, inst, obj);
}

static void check_schema(const JsonbValue *schema, StringInfo path);

/*
 * find_keyword: the table entry of a schema key; NULL when tasker does not
 * know it.
 */
static const Keyword *
find_keyword(const JsonbValue *key)
{
	int			i;

	for (i = 0; i < (int) lengthof(keywords); i++)
		if ((int) strlen(keywords[i].name) == key->val.string.len &&
			strncmp(keywords[i].name, key->val.string.val,
					key->val.string.len) == 0)
			return &keywords[i];
	return NULL;
}

/*
 * keyword_list: the names of the annotation keywords, or of the others, as
 * "a, b and c" in table order.
 */
static char *
keyword_list(bool annotations)
{
	StringInfoData buf;
	int			left = 0;
	int			i;

	for (i = 0; i < (int) lengthof(keywords); i++)
		if ((keywords[i].value == KV_ANNOTATION) == annotations)
			left++;
	initStringInfo(&buf);
	for (i = 0; i < (int) lengthof(keywords); i++)
	{
		if ((keywords[i].value == KV_ANNOTATION) != annotations)
			continue;
		appendStringInfoString(&buf, keywords[i].name);
		left--;
		if (left > 0)
			appendStringInfoString(&buf, left == 1 ? " and " : ", ");
	}
	return buf.data;
}

/*
 * unsupported_keyword: raise FEATURE_NOT_SUPPORTED for a schema key tasker
 * does not implement; ignoring it would accept contexts the author meant
 * to reject.
 */
static void
pg_attribute_noreturn()
unsupported_keyword(const JsonbValue *key, StringInfo path)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("JSON Schema keyword \"%.*s\" at %s is not supported",
					key->val.string.len, key->val.string.val, path->data),
			 errdetail("tasker validates %s, and ignores %s.",
					   keyword_list(false), keyword_list(true)),
			 errhint("Remove the keyword or express the constraint with supported keywords.")));
}

/*
 * require: raise a schema error unless ok, saying what the keyword's value
 * must be.
 */
static void
require(bool ok, StringInfo path, const char *name, const char *what,
		const JsonbValue *val)
{
	if (!ok)
		schema_error(path, psprintf("The value of \"%s\" must be %s, not %s.",
									name, what, quote_value(val)));
}

/*
 * is_count: whether a value is a non-negative integer that fits an int.
 */
static bool
is_count(const JsonbValue *val)
{
	bool		error = false;

	if (val->type != jbvNumeric || !is_integer(val->val.numeric))
		return false;
	return numeric_int4_opt_error(val->val.numeric, &error) >= 0 && !error;
}

/*
 * is_positive: whether a value is a number above zero.
 */
static bool
is_positive(const JsonbValue *val)
{
	return val->type == jbvNumeric &&
		DatumGetBool(DirectFunctionCall2(numeric_gt,
										 NumericGetDatum(val->val.numeric),
										 NumericGetDatum(int64_to_numeric(0))));
}

/*
 * is_type_name: whether a value is one of the seven type names.
 */
static bool
is_type_name(const JsonbValue *val)
{
	static const char *const names[] = {
		"object", "array", "string", "number", "integer", "boolean", "null"
	};
	int			i;

	if (val->type != jbvString)
		return false;
	for (i = 0; i < (int) lengthof(names); i++)
		if ((int) strlen(names[i]) == val->val.string.len &&
			strncmp(names[i], val->val.string.val, val->val.string.len) == 0)
			return true;
	return false;
}

/*
 * all_elements: whether every element of an array value passes a test.
 */
static bool
all_elements(const JsonbValue *array, bool (*test) (const JsonbValue *))
{
	int			n = container_size(array);
	int			i;

	for (i = 0; i < n; i++)
		if (!test(array_element(array, i)))
			return false;
	return true;
}

/*
 * is_string: whether a value is a string (a test for all_elements).
 */
static bool
is_string(const JsonbValue *val)
{
	return val->type == jbvString;
}

/*
 * check_pattern: a pattern must be a string that compiles.
 */
static void
check_pattern(const JsonbValue *val, StringInfo path)
{
	regex_t		re;
	char		errbuf[256];

	require(val->type == jbvString, path, "pattern", "a string", val);
	if (!compile_pattern(val, &re, errbuf, sizeof(errbuf)))
		schema_error(path,
					 psprintf("The pattern %s is not a valid regular expression: %s.",
							  quote_value(val), errbuf));
	pg_regfree(&re);
}

/*
 * check_schema_array: each element of an array value is a schema, checked
 * at path[i].
 */
static void
check_schema_array(const JsonbValue *array, StringInfo path)
{
	int			n = container_size(array);
	int			saved = path->len;
	int			i;

	for (i = 0; i < n; i++)
	{
		appendStringInfo(path, "[%d]", i);
		check_schema(array_element(array, i), path);
		truncate_path(path, saved);
	}
}

/*
 * check_schema_map: each value of an object is a schema, checked at
 * path.key.
 */
static void
check_schema_map(const JsonbValue *map, StringInfo path)
{
	JsonbIterator *it = JsonbIteratorInit(map->val.binary.data);
	JsonbValue	key;
	JsonbValue	sub;
	int			saved = path->len;

	while (next_pair(&it, &key, &sub))
	{
		append_key(path, key.val.string.val, key.val.string.len);
		check_schema(&sub, path);
		truncate_path(path, saved);
	}
}

/*
 * check_limit: exclusiveMinimum/Maximum is a number (draft 6) or a boolean
 * (draft 4), and draft 4's true needs the plain bound beside it.
 */
static void
check_limit(const Keyword *k, const JsonbValue *val, JsonbContainer *schema,
			StringInfo path)
{
	const char *bound = strcmp(k->name, "exclusiveMinimum") == 0 ?
		"minimum" : "maximum";
	JsonbValue	ignored;

	require(val->type == jbvNumeric || val->type == jbvBool, path, k->name,
			"a number or a boolean", val);
	if (val->type == jbvBool && val->val.boolean &&
		!lookup(schema, bound, &ignored))
		schema_error(path, psprintf("\"%s\": true needs \"%s\" beside it.",
									k->name, bound));
}

/*
 * check_keyword: raise unless a keyword's value has the shape its table
 * entry demands; recurse into subschemas.
 */
static void
check_keyword(const Keyword *k, const JsonbValue *val, JsonbContainer *schema,
			  StringInfo path)
{
	switch (k->value)
	{
		case KV_ANNOTATION:
		case KV_ANY:
			break;
		case KV_BOOL:
			require(val->type == jbvBool, path, k->name, "a boolean", val);
			break;
		case KV_NUMBER:
			require(val->type == jbvNumeric, path, k->name, "a number", val);
			break;
		case KV_LIMIT:
			check_limit(k, val, schema, path);
			break;
		case KV_POSITIVE:
			require(is_positive(val), path, k->name,
					"a number greater than 0", val);
			break;
		case KV_COUNT:
			require(is_count(val), path, k->name,
					"a non-negative integer", val);
			break;
		case KV_ARRAY:
			require(is_array(val), path, k->name, "an array", val);
			break;
		case KV_STRING_ARRAY:
			require(is_array(val) && all_elements(val, is_string), path,
					k->name, "an array of strings", val);
			break;
		case KV_TYPE:
			require(is_type_name(val) ||
					(is_array(val) && container_size(val) > 0 &&
					 all_elements(val, is_type_name)),
					path, k->name, TYPE_NAMES_WANTED, val);
			break;
		case KV_PATTERN:
			check_pattern(val, path);
			break;
		case KV_SCHEMA:
			check_schema(val, path);
			break;
		case KV_SCHEMA_ARRAY:
			require(is_array(val) && container_size(val) > 0, path, k->name,
					"a non-empty array of schemas", val);
			check_schema_array(val, path);
			break;
		case KV_SCHEMA_MAP:
			require(is_object(val), path, k->name,
					"an object whose values are schemas", val);
			check_schema_map(val, path);
			break;
		case KV_ITEMS:
			if (is_array(val))
				check_schema_array(val, path);
			else
				check_schema(val, path);
			break;
	}
}

/*
 * check_schema: raise for anything malformed or unsupported in a schema
 * and, recursively, in its subschemas.  path is the schema path of the
 * value and is restored before returning.
 */
static void
check_schema(const JsonbValue *schema, StringInfo path)
{
	JsonbIterator *it;
	JsonbValue	key;
	JsonbValue	val;
	int			saved = path->len;

	check_stack_depth();
	if (schema->type == jbvBool)
		return;
	if (!is_object(schema))
		schema_error(path,
					 psprintf("A schema must be an object or a boolean, not %s.",
							  quote_value(schema)));
	it = JsonbIteratorInit(schema->val.binary.data);
	while (next_pair(&it, &key, &val))
	{
		const Keyword *k = find_keyword(&key);

		append_key(path, key.val.string.val, key.val.string.len);
		if (k == NULL)
			unsupported_keyword(&key, path);
		check_keyword(k, &val, schema->val.binary.data, path);
		truncate_path(path, saved);
	}
}

/* ----------------------------------------------------------------
 * Public entry points
 * ----------------------------------------------------------------
 */

/*
 * tasker_json_schema_check: raise INVALID_PARAMETER_VALUE for a malformed
 * schema and FEATURE_NOT_SUPPORTED for an unsupported keyword, each naming
 * the schema path; return quietly for a usable schema.
 */
void
tasker_json_schema_check(Jsonb *schema)
{
	StringInfoData path;
	JsonbValue	root;

	initStringInfo(&path);
	appendStringInfoChar(&path, '$');
	root_value(schema, &root);
	check_schema(&root, &path);
	pfree(path.data);
}

/*
 * tasker_json_schema_violations: check the schema, then return every
 * violation of it by the instance (NIL when there is none) as palloc'd
 * "path: message" strings in the current memory context.
 */
List *
tasker_json_schema_violations(Jsonb *schema, Jsonb *instance)
{
	Validation	v;
	JsonbValue	schema_root;
	JsonbValue	inst_root;

	tasker_json_schema_check(schema);
	root_value(schema, &schema_root);
	root_value(instance, &inst_root);
	v.violations = NIL;
	initStringInfo(&v.path);
	appendStringInfoChar(&v.path, '$');
	validate_value(&v, &schema_root, &inst_root);
	pfree(v.path.data);
	return v.violations;
}

/*
 * tasker_json_schema_validate_or_error: raise INVALID_PARAMETER_VALUE
 * naming what was validated (e.g. 'context of task "order_process"'),
 * with one violation per detail line, unless the instance conforms.
 */
void
tasker_json_schema_validate_or_error(Jsonb *schema, Jsonb *instance,
									 const char *what)
{
	List	   *violations = tasker_json_schema_violations(schema, instance);
	StringInfoData detail;
	ListCell   *lc;

	if (violations == NIL)
		return;
	initStringInfo(&detail);
	foreach(lc, violations)
	{
		if (detail.len > 0)
			appendStringInfoChar(&detail, '\n');
		appendStringInfoString(&detail, (const char *) lfirst(lc));
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s does not match its schema", what),
			 errdetail("%s", detail.data),
			 errhint("The template's schema: key lists what the context needs.")));
}
