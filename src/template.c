/*-------------------------------------------------------------------------
 *
 * template.c
 *		Task template registration: YAML text to catalog rows.
 *
 * A template goes through four stages, each in its own file, each using
 * only the ones above it in this list:
 *	yaml_reader.c		YAML text -> node tree (the only user of libyaml)
 *	template_check.c	node tree -> TaskTemplate, every check that needs no
 *						catalog access
 *	template_store.c	TaskTemplate -> catalog rows; handler classes
 *						resolved through handler_registry.c
 *	template.c			environment overrides; the entry points
 *
 * A text holds one template, or, for tasker_register_templates, a stream
 * of documents registered in order.  The environments.<tasker.environment>
 * overrides are deep-merged into each document's tree, the result is
 * validated in full (template_check.c) and only then are catalog rows
 * written (template_store.c).  Everything runs in the caller's
 * transaction, so a registration that fails leaves nothing behind.
 *
 * IDENTIFICATION
 *		src/template.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"

#include "guc.h"
#include "security.h"
#include "template.h"
#include "template_check.h"
#include "template_store.h"
#include "yaml_reader.h"

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
	return register_root((const TNode *) linitial(yaml_read(text, len, true)),
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
	roots = yaml_read(text, len, false);
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
 * file_errcode: the SQLSTATE of a failed file access: what
 * errcode_for_file_access gives (missing file, permissions, ...), except
 * for the errors of a path that names no regular file (too long, a
 * directory, a loop of links), which are bad arguments, not internal
 * errors.
 */
static int
file_errcode(int saved_errno)
{
	if (saved_errno == ENAMETOOLONG || saved_errno == EISDIR ||
		saved_errno == ELOOP)
		return errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	return errcode_for_file_access();
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
	int			saved_errno;

	file = AllocateFile(path, PG_BINARY_R);
	saved_errno = errno;
	if (file == NULL)
		ereport(ERROR,
				(file_errcode(saved_errno),
				 errmsg("could not open task template file \"%s\": %m", path),
				 errdetail("The server process reads the file; a relative path is relative to the data directory."),
				 errhint("Check the path and the file's permissions.")));
	while ((n = fread(chunk, 1, sizeof(chunk), file)) > 0)
		appendBinaryStringInfo(buf, chunk, (int) n);
	saved_errno = errno;
	if (ferror(file))
		ereport(ERROR,
				(file_errcode(saved_errno),
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
