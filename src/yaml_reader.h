/*-------------------------------------------------------------------------
 *
 * yaml_reader.h
 *		The node tree of a YAML document, as the libyaml reader builds it,
 *		and the limits every check of a template shares.
 *
 * IDENTIFICATION
 *		src/yaml_reader.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_YAML_READER_H
#define TASKER_YAML_READER_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* Column widths of the catalog; longer names are refused, not truncated. */
#define TEMPLATE_NAME_MAX			64
#define TEMPLATE_NAMESPACE_MAX		64
#define TEMPLATE_VERSION_MAX		64
#define TEMPLATE_STEP_NAME_MAX		128
/* A rate_limit key, in bytes (rate_limit.h), and its largest per_second and burst. */
#define TEMPLATE_RATE_KEY_MAX		63
#define TEMPLATE_RATE_MAX			1000000
/* How many distinct rate_limit keys all templates may use (rate buckets). */
#define TEMPLATE_RATE_BUCKETS		256
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
	int64		bytes;			/* its text, aliases expanded (see yaml_reader.c) */
} TNode;

extern List *yaml_read(const char *text, size_t len, bool one);
extern void tnode_add(TNode *parent, TNode *key, TNode *value);
extern TScalarType tnode_scalar_type(const TNode *node);
extern const TNode *tnode_get(const TNode *map, const char *key);
extern const char *tnode_describe(const TNode *node);
extern void tnode_to_json(StringInfo buf, const TNode *node,
						  const char *name);
extern void template_error(const char *name, int sqlstate, const TNode *at,
						   const char *hint, const char *fmt,...)
			pg_attribute_printf(5, 6) pg_attribute_noreturn();

#endif							/* TASKER_YAML_READER_H */
