/* cfgtree.h - one generic tree for YAML and JSON config input.
 *
 * Control thread only. The readers turn a YAML document (libyaml events) or a
 * JSON text (jansson) into the same tree of zt_cnode, allocated in an arena,
 * so that one validator (config.c) handles both formats. The readers enforce
 * the structural limits: nesting depth, node count, one YAML document, no YAML
 * aliases, scalar mapping keys, no duplicate keys.
 */
#ifndef ZT_CFGTREE_H
#define ZT_CFGTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zt_arena;

#define ZT_CTREE_MAX_DEPTH 64
/* Values (scalars, sequences, mappings, JSON keys) in one input: bounds the
 * tree's memory (about 100 bytes a value) well below what 64 MiB could ask. */
#define ZT_CTREE_MAX_NODES (4u * 1024 * 1024)

enum zt_cnode_kind {
	ZT_CN_NULL = 0,
	ZT_CN_BOOL,
	ZT_CN_INT,
	ZT_CN_FLOAT,
	ZT_CN_STR,
	ZT_CN_SEQ,
	ZT_CN_MAP,
};

struct zt_cpair;

struct zt_cnode {
	uint8_t kind;   /* enum zt_cnode_kind */
	bool plain;     /* YAML plain scalar: its text may also be read as a string */
	bool overflow;  /* INT whose value does not fit in int64 */
	bool b;         /* BOOL value */
	uint32_t line, col; /* 1-based position in the input; 0 when unknown (JSON) */
	uint32_t len;   /* scalar text length (the text may contain NUL bytes) */
	uint32_t n;     /* SEQ items / MAP pairs */
	const char *text; /* scalars: source text, NUL-terminated; NULL for containers */
	const char *tag;  /* YAML application tag such as "!Exact", else NULL */
	int64_t i;        /* INT value */
	union {
		struct zt_cnode **items; /* SEQ */
		struct zt_cpair *pairs;  /* MAP, in document order */
	};
	struct zt_cnode *_next; /* reader-private: sibling while the parent is open */
};

struct zt_cpair {
	const struct zt_cnode *key; /* always a scalar */
	const struct zt_cnode *val;
};

/* Parse `len` bytes. On success *root is the document's top node, or NULL for
 * an empty YAML stream. Returns 0, -EINVAL (syntax or limit; `err` holds
 * "line L column C: reason" or just "reason"), or -ENOMEM. */
int zt_ctree_parse_yaml(struct zt_arena *a, const char *data, size_t len,
			struct zt_cnode **root, char *err, size_t errlen);
int zt_ctree_parse_json(struct zt_arena *a, const char *data, size_t len,
			struct zt_cnode **root, char *err, size_t errlen);

/* "null", "a boolean", "an integer", "a number", "a string", "a sequence",
 * "a mapping": for "expected X, got Y" messages. */
const char *zt_cnode_kind_desc(const struct zt_cnode *n);

#endif
