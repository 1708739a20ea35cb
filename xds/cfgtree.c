#include "xds/cfgtree.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "xds/arena.h"

const char *zt_cnode_kind_desc(const struct zt_cnode *n)
{
	if (!n)
		return "nothing";
	switch (n->kind) {
	case ZT_CN_NULL: return "null";
	case ZT_CN_BOOL: return "a boolean";
	case ZT_CN_INT: return "an integer";
	case ZT_CN_FLOAT: return "a number";
	case ZT_CN_STR: return "a string";
	case ZT_CN_SEQ: return "a sequence";
	case ZT_CN_MAP: return "a mapping";
	}
	return "?";
}

static int set_err(char *err, size_t errlen, uint32_t line, uint32_t col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int set_err(char *err, size_t errlen, uint32_t line, uint32_t col, const char *fmt, ...)
{
	int off = 0;
	if (line)
		off = snprintf(err, errlen, "line %" PRIu32 " column %" PRIu32 ": ", line, col);
	if (off < 0 || (size_t)off >= errlen)
		off = 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + off, errlen - (size_t)off, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- YAML 1.2 core schema resolution of plain scalars ---- */

static bool str_in(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(s, *set))
			return true;
	return false;
}

static int digit_val(char ch, int base)
{
	int v;
	if (ch >= '0' && ch <= '9')
		v = ch - '0';
	else if (ch >= 'a' && ch <= 'f')
		v = ch - 'a' + 10;
	else if (ch >= 'A' && ch <= 'F')
		v = ch - 'A' + 10;
	else
		return -1;
	return v < base ? v : -1;
}

/* Integer forms: [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+. */
static bool resolve_int(const char *s, struct zt_cnode *n)
{
	int base = 10;
	bool neg = false;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
		base = s[1] == 'x' ? 16 : 8;
		s += 2;
	} else if (*s == '-' || *s == '+') {
		neg = *s == '-';
		s++;
	}
	if (!*s)
		return false;
	uint64_t v = 0;
	bool over = false;
	for (; *s; s++) {
		int d = digit_val(*s, base);
		if (d < 0)
			return false;
		if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			over = true;
		else
			v = v * (uint64_t)base + (uint64_t)d;
	}
	if (!neg && v > (uint64_t)INT64_MAX)
		over = true;
	if (neg && v > (uint64_t)INT64_MAX + 1)
		over = true;
	n->kind = ZT_CN_INT;
	n->overflow = over;
	if (!over)
		n->i = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, infinities, NaN. */
static bool is_float(const char *s)
{
	static const char *const special[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
					      "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN",
					      NULL};
	if (str_in(s, special))
		return true;
	if (*s == '-' || *s == '+')
		s++;
	size_t int_digits = 0, frac_digits = 0;
	while (*s >= '0' && *s <= '9')
		s++, int_digits++;
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9')
			s++, frac_digits++;
	}
	if (!int_digits && !frac_digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == 0;
}

static void resolve_plain(struct zt_cnode *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	const char *s = n->text;

	if (strlen(s) != n->len) {
		n->kind = ZT_CN_STR;
	} else if (str_in(s, nulls)) {
		n->kind = ZT_CN_NULL;
	} else if (str_in(s, trues) || str_in(s, falses)) {
		n->kind = ZT_CN_BOOL;
		n->b = s[0] == 't' || s[0] == 'T';
	} else if (resolve_int(s, n)) {
		/* kind set */
	} else if (is_float(s)) {
		n->kind = ZT_CN_FLOAT;
	} else {
		n->kind = ZT_CN_STR;
	}
}

/* ---- building containers ---- */

struct frame {
	struct zt_cnode *node;
	struct zt_cnode *first, *last;
	uint32_t count;
};

struct builder {
	struct zt_arena *a;
	struct frame stack[ZT_CTREE_MAX_DEPTH + 1];
	int depth; /* open containers */
	size_t nodes;
	struct zt_cnode *root;
	bool have_root;
	char *err;
	size_t errlen;
};

static struct zt_cnode *new_node(struct builder *b, uint8_t kind, uint32_t line, uint32_t col, int *rc)
{
	if (++b->nodes > ZT_CTREE_MAX_NODES) {
		*rc = set_err(b->err, b->errlen, line, col, "more than %u values",
			      (unsigned)ZT_CTREE_MAX_NODES);
		return NULL;
	}
	struct zt_cnode *n = zt_arena_calloc(b->a, 1, sizeof(*n));
	if (!n) {
		*rc = -ENOMEM;
		return NULL;
	}
	n->kind = kind;
	n->line = line;
	n->col = col;
	return n;
}

static int attach(struct builder *b, struct zt_cnode *n)
{
	if (b->depth == 0) {
		b->root = n;
		b->have_root = true;
		return 0;
	}
	struct frame *f = &b->stack[b->depth - 1];
	if (f->node->kind == ZT_CN_MAP && f->count % 2 == 0 && n->kind >= ZT_CN_SEQ)
		return set_err(b->err, b->errlen, n->line, n->col, "mapping keys must be scalars");
	if (f->count == UINT32_MAX)
		return set_err(b->err, b->errlen, n->line, n->col, "too many values");
	if (f->last)
		f->last->_next = n;
	else
		f->first = n;
	f->last = n;
	f->count++;
	return 0;
}

static int open_container(struct builder *b, struct zt_cnode *n)
{
	if (b->depth >= ZT_CTREE_MAX_DEPTH)
		return set_err(b->err, b->errlen, n->line, n->col,
			       "nesting deeper than %d levels", ZT_CTREE_MAX_DEPTH);
	struct frame *f = &b->stack[b->depth++];
	f->node = n;
	f->first = f->last = NULL;
	f->count = 0;
	return 0;
}

static int cmp_pair_ptr(const void *x, const void *y)
{
	const struct zt_cpair *p = *(const struct zt_cpair *const *)x;
	const struct zt_cpair *q = *(const struct zt_cpair *const *)y;
	uint32_t lp = p->key->len, lq = q->key->len;
	int c = memcmp(p->key->text, q->key->text, lp < lq ? lp : lq);
	if (c)
		return c;
	if (lp != lq)
		return lp < lq ? -1 : 1;
	return p < q ? -1 : p > q; /* document order among equal keys */
}

/* Rejects a mapping with two equal keys, naming the later one. */
static int check_dup_keys(struct builder *b, struct zt_cnode *map)
{
	if (map->n < 2)
		return 0;
	if (map->n <= 8) {
		for (uint32_t i = 1; i < map->n; i++)
			for (uint32_t j = 0; j < i; j++) {
				const struct zt_cnode *k1 = map->pairs[i].key, *k2 = map->pairs[j].key;
				if (k1->len == k2->len && !memcmp(k1->text, k2->text, k1->len))
					return set_err(b->err, b->errlen, k1->line, k1->col,
						       "duplicate key \"%.64s\"", k1->text);
			}
		return 0;
	}
	const struct zt_cpair **sorted = zt_arena_alloc(b->a, sizeof(*sorted) * map->n);
	if (!sorted)
		return -ENOMEM;
	for (uint32_t i = 0; i < map->n; i++)
		sorted[i] = &map->pairs[i];
	qsort(sorted, map->n, sizeof(*sorted), cmp_pair_ptr);
	for (uint32_t i = 1; i < map->n; i++) {
		const struct zt_cnode *k1 = sorted[i]->key, *k0 = sorted[i - 1]->key;
		if (k1->len == k0->len && !memcmp(k1->text, k0->text, k1->len))
			return set_err(b->err, b->errlen, k1->line, k1->col, "duplicate key \"%.64s\"",
				       k1->text);
	}
	return 0;
}

static int close_container(struct builder *b)
{
	struct frame *f = &b->stack[--b->depth];
	struct zt_cnode *n = f->node, *c = f->first;
	if (n->kind == ZT_CN_SEQ) {
		n->n = f->count;
		n->items = zt_arena_alloc(b->a, sizeof(*n->items) * (f->count ? f->count : 1));
		if (!n->items)
			return -ENOMEM;
		for (uint32_t i = 0; c; c = c->_next, i++)
			n->items[i] = c;
	} else {
		n->n = f->count / 2; /* libyaml always pairs keys with values */
		n->pairs = zt_arena_alloc(b->a, sizeof(*n->pairs) * (n->n ? n->n : 1));
		if (!n->pairs)
			return -ENOMEM;
		for (uint32_t i = 0; i < n->n; i++) {
			n->pairs[i].key = c;
			c = c->_next;
			n->pairs[i].val = c;
			c = c->_next;
		}
		int r = check_dup_keys(b, n);
		if (r)
			return r;
	}
	return attach(b, n);
}

/* ---- YAML ---- */

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* Keeps application tags ("!Exact"); "!!str" and "!" force a string; other
 * standard tags are ignored (the node resolves as if untagged). */
static int apply_tag(struct builder *b, struct zt_cnode *n, const unsigned char *tag, bool *force_str)
{
	*force_str = false;
	if (!tag)
		return 0;
	const char *t = (const char *)tag;
	if (!strcmp(t, "!") || !strcmp(t, YAML_TAG_PREFIX "str")) {
		*force_str = true;
		return 0;
	}
	if (!strncmp(t, YAML_TAG_PREFIX, sizeof(YAML_TAG_PREFIX) - 1))
		return 0;
	n->tag = zt_arena_strdup(b->a, t);
	return n->tag ? 0 : -ENOMEM;
}

static int yaml_event_to_tree(struct builder *b, const yaml_event_t *ev)
{
	uint32_t line = (uint32_t)ev->start_mark.line + 1, col = (uint32_t)ev->start_mark.column + 1;
	struct zt_cnode *n;
	bool force_str;
	int r = 0;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (b->have_root)
			return set_err(b->err, b->errlen, line, col,
				       "more than one YAML document");
		return 0;
	case YAML_ALIAS_EVENT:
		return set_err(b->err, b->errlen, line, col, "YAML aliases are not supported");
	case YAML_SCALAR_EVENT:
		if (ev->data.scalar.length > UINT32_MAX - 1)
			return set_err(b->err, b->errlen, line, col, "scalar too long");
		n = new_node(b, ZT_CN_STR, line, col, &r);
		if (!n)
			return r;
		n->len = (uint32_t)ev->data.scalar.length;
		n->text = zt_arena_strndup(b->a, (const char *)ev->data.scalar.value, n->len);
		if (!n->text)
			return -ENOMEM;
		if ((r = apply_tag(b, n, ev->data.scalar.tag, &force_str)))
			return r;
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !force_str;
		if (n->plain)
			resolve_plain(n);
		return attach(b, n);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		n = new_node(b, ev->type == YAML_SEQUENCE_START_EVENT ? ZT_CN_SEQ : ZT_CN_MAP, line,
			     col, &r);
		if (!n)
			return r;
		if ((r = apply_tag(b, n,
				   ev->type == YAML_SEQUENCE_START_EVENT ? ev->data.sequence_start.tag
									 : ev->data.mapping_start.tag,
				   &force_str)))
			return r;
		return open_container(b, n);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return close_container(b);
	default:
		return 0;
	}
}

int zt_ctree_parse_yaml(struct zt_arena *a, const char *data, size_t len, struct zt_cnode **root,
			char *err, size_t errlen)
{
	yaml_parser_t parser;
	struct builder b = {.a = a, .err = err, .errlen = errlen};
	int rc = 0;

	*root = NULL;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev)) {
			if (parser.error == YAML_MEMORY_ERROR) {
				rc = -ENOMEM;
			} else if (parser.error == YAML_READER_ERROR) {
				/* encoding problems: libyaml knows the byte, not the line */
				rc = set_err(err, errlen, 0, 0, "byte %zu: %s", parser.problem_offset,
					     parser.problem ? parser.problem : "invalid input");
			} else {
				const char *problem = parser.problem ? parser.problem : "syntax error";
				rc = set_err(err, errlen, (uint32_t)parser.problem_mark.line + 1,
					     (uint32_t)parser.problem_mark.column + 1, "%s%s%s",
					     problem, parser.context ? " " : "",
					     parser.context ? parser.context : "");
			}
			break;
		}
		rc = yaml_event_to_tree(&b, &ev);
		bool done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (rc || done)
			break;
	}
	yaml_parser_delete(&parser);
	if (!rc)
		*root = b.root;
	return rc;
}

/* ---- JSON ---- */

static int json_to_tree(struct builder *b, json_t *j, int depth, struct zt_cnode **out)
{
	struct zt_cnode *n;
	int r = 0;
	char buf[32];

	switch (json_typeof(j)) {
	case JSON_OBJECT:
	case JSON_ARRAY: {
		if (depth >= ZT_CTREE_MAX_DEPTH)
			return set_err(b->err, b->errlen, 0, 0, "nesting deeper than %d levels",
				       ZT_CTREE_MAX_DEPTH);
		bool obj = json_is_object(j);
		size_t cnt = obj ? json_object_size(j) : json_array_size(j);
		if (cnt > ZT_CTREE_MAX_NODES)
			return set_err(b->err, b->errlen, 0, 0, "more than %u values",
				       (unsigned)ZT_CTREE_MAX_NODES);
		n = new_node(b, obj ? ZT_CN_MAP : ZT_CN_SEQ, 0, 0, &r);
		if (!n)
			return r;
		n->n = (uint32_t)cnt;
		if (obj) {
			n->pairs = zt_arena_alloc(b->a, sizeof(*n->pairs) * (cnt ? cnt : 1));
			if (!n->pairs)
				return -ENOMEM;
			const char *key;
			json_t *v;
			size_t i = 0;
			json_object_foreach(j, key, v) {
				struct zt_cnode *k = new_node(b, ZT_CN_STR, 0, 0, &r);
				if (!k)
					return r;
				k->len = (uint32_t)strlen(key);
				k->text = zt_arena_strndup(b->a, key, k->len);
				if (!k->text)
					return -ENOMEM;
				struct zt_cnode *vn;
				if ((r = json_to_tree(b, v, depth + 1, &vn)))
					return r;
				n->pairs[i].key = k;
				n->pairs[i].val = vn;
				i++;
			}
		} else {
			n->items = zt_arena_alloc(b->a, sizeof(*n->items) * (cnt ? cnt : 1));
			if (!n->items)
				return -ENOMEM;
			for (size_t i = 0; i < cnt; i++)
				if ((r = json_to_tree(b, json_array_get(j, i), depth + 1, &n->items[i])))
					return r;
		}
		break;
	}
	case JSON_STRING:
		n = new_node(b, ZT_CN_STR, 0, 0, &r);
		if (!n)
			return r;
		if (json_string_length(j) > UINT32_MAX - 1)
			return set_err(b->err, b->errlen, 0, 0, "string too long");
		n->len = (uint32_t)json_string_length(j);
		n->text = zt_arena_strndup(b->a, json_string_value(j), n->len);
		if (!n->text)
			return -ENOMEM;
		break;
	case JSON_INTEGER:
		n = new_node(b, ZT_CN_INT, 0, 0, &r);
		if (!n)
			return r;
		n->i = (int64_t)json_integer_value(j);
		snprintf(buf, sizeof(buf), "%" PRId64, n->i);
		goto text;
	case JSON_REAL:
		n = new_node(b, ZT_CN_FLOAT, 0, 0, &r);
		if (!n)
			return r;
		snprintf(buf, sizeof(buf), "%g", json_real_value(j));
		goto text;
	case JSON_TRUE:
	case JSON_FALSE:
		n = new_node(b, ZT_CN_BOOL, 0, 0, &r);
		if (!n)
			return r;
		n->b = json_is_true(j);
		snprintf(buf, sizeof(buf), "%s", n->b ? "true" : "false");
		goto text;
	case JSON_NULL:
	default:
		n = new_node(b, ZT_CN_NULL, 0, 0, &r);
		if (!n)
			return r;
		snprintf(buf, sizeof(buf), "null");
		goto text;
	}
	*out = n;
	return 0;
text:
	n->len = (uint32_t)strlen(buf);
	n->text = zt_arena_strndup(b->a, buf, n->len);
	if (!n->text)
		return -ENOMEM;
	*out = n;
	return 0;
}

/* An upper bound of the number of values in a JSON text: one per ',' '[' '{'
 * outside strings, plus one. */
static size_t json_count_values(const char *p, size_t len)
{
	size_t n = 1;
	bool in_str = false;
	for (size_t i = 0; i < len; i++) {
		char ch = p[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == ',' || ch == '[' || ch == '{') {
			n++;
		}
	}
	return n;
}

int zt_ctree_parse_json(struct zt_arena *a, const char *data, size_t len, struct zt_cnode **root,
			char *err, size_t errlen)
{
	struct builder b = {.a = a, .err = err, .errlen = errlen};
	json_error_t jerr;

	*root = NULL;
	if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) { /* UTF-8 byte order mark */
		data += 3;
		len -= 3;
	}
	/* jansson builds its own tree first: bound its size before it does. */
	if (json_count_values(data, len) > ZT_CTREE_MAX_NODES)
		return set_err(err, errlen, 0, 0, "more than %u values", (unsigned)ZT_CTREE_MAX_NODES);
	json_t *j = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		if (json_error_code(&jerr) == json_error_out_of_memory)
			return -ENOMEM;
		if (jerr.line > 0)
			return set_err(err, errlen, (uint32_t)jerr.line, (uint32_t)jerr.column, "%s",
				       jerr.text);
		return set_err(err, errlen, 0, 0, "%s", jerr.text);
	}
	int rc = json_to_tree(&b, j, 0, root);
	json_decref(j);
	if (rc)
		*root = NULL;
	return rc;
}
