/* xdsconv.c - one xDS resource (protobuf bytes) into a config tree element.
 *
 * Control thread only; see xdsconv.h. Field numbers are those of
 * xds/proto/workload.proto and authorization.proto (test/unit/xds checks them
 * against the nanopb-generated tags and against bytes made by the protobuf
 * library). Output keys and enum spellings are the ones config.c accepts.
 * Mapping choices, following ztunnel's conversion (src/state/workload.rs,
 * service.rs, src/rbac.rs):
 *  - addresses: 4 bytes -> IPv4 text, 16 -> IPv6 text, other sizes an error;
 *  - empty trust_domain / service_account / cluster_id are left out, so that
 *    config.c's defaults apply ("cluster.local", "default", "Kubernetes");
 *  - workload_type: lower-case enum name; an unknown value reads as
 *    "deployment", as prost's workload_type() does in ztunnel;
 *  - other enums: unknown values are errors (ztunnel rejects them too);
 *  - LoadBalancing.Mode UNSPECIFIED_MODE is "Standard", Scope
 *    UNSPECIFIED_SCOPE an error; IPFamilies AUTOMATIC leaves ipFamilies out;
 *  - capacity (UInt32Value) absent -> config.c's default 1;
 *  - map entries with the same key: the last one wins (protobuf semantics).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/strfmt.h"
#include "xds/arena.h"
#include "xds/cfgtree.h"
#include "xds/xdsconv.h"

/* ---- context, paths, messages ---- */

struct cv {
	struct zt_arena *a;
	const char *name;
	struct zt_config_error *err;
	size_t nodes; /* tree values made so far (bounded) */
};

/* One step of the proto field path; lives on the C stack. */
struct ppath {
	const struct ppath *up;
	const char *field; /* field name, or NULL for an index/key step */
	size_t idx;
	const char *key; /* map key (NUL-terminated), else NULL */
};

#define F(u, f) ((struct ppath){(u), (f), 0, NULL})
#define I(u, i) ((struct ppath){(u), NULL, (i), NULL})
#define K(u, k) ((struct ppath){(u), NULL, 0, (k)})

/* Printable form of untrusted text: control bytes, quotes and backslashes
 * escaped, cut after 64 bytes with "...". */
static void put_text(char *buf, size_t cap, size_t *off, const char *s)
{
	size_t i;
	for (i = 0; s[i] && i < 64; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			zt_appendf(buf, cap, off, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			zt_appendf(buf, cap, off, "\\x%02x", ch);
		else
			zt_appendf(buf, cap, off, "%c", ch);
	}
	if (s[i])
		zt_appendf(buf, cap, off, "...");
}

static void put_path(char *buf, size_t cap, size_t *off, const struct ppath *p)
{
	if (!p)
		return;
	put_path(buf, cap, off, p->up);
	if (p->field) {
		zt_appendf(buf, cap, off, "%s%s", *off ? "." : "", p->field);
	} else if (p->key) {
		zt_appendf(buf, cap, off, "[\"");
		put_text(buf, cap, off, p->key);
		zt_appendf(buf, cap, off, "\"]");
	} else {
		zt_appendf(buf, cap, off, "[%zu]", p->idx);
	}
}

static int fail(struct cv *c, const struct ppath *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct cv *c, const struct ppath *p, const char *fmt, ...)
{
	char path[256], reason[256];
	size_t off = 0, m = 0;
	path[0] = 0;
	put_path(path, sizeof(path), &off, p);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	c->err->msg[0] = 0;
	put_text(c->err->msg, sizeof(c->err->msg), &m, c->name);
	if (off)
		zt_appendf(c->err->msg, sizeof(c->err->msg), &m, ": %s", path);
	zt_appendf(c->err->msg, sizeof(c->err->msg), &m, ": %s", reason);
	return -EINVAL;
}

static int oom(struct cv *c)
{
	size_t m = 0;
	c->err->msg[0] = 0;
	put_text(c->err->msg, sizeof(c->err->msg), &m, c->name);
	zt_appendf(c->err->msg, sizeof(c->err->msg), &m, ": out of memory");
	return -ENOMEM;
}

/* ---- protobuf wire reading ---- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct rd {
	const uint8_t *p, *end;
};

static bool get_varint(struct rd *r, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned i = 0; i < 10; i++) {
		if (r->p >= r->end)
			return false;
		uint8_t b = *r->p++;
		if (i == 9 && b > 1)
			return false; /* more than 64 bits */
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return false;
}

/* Next field of the message `r` is reading (r->p < r->end). */
static int get_tag(struct cv *c, const struct ppath *p, struct rd *r, uint32_t *field, int *wt)
{
	uint64_t t;
	if (!get_varint(r, &t))
		return fail(c, p, "truncated or overlong field tag");
	*wt = (int)(t & 7);
	if ((t >> 3) == 0 || (t >> 3) > 0x1fffffff)
		return fail(c, p, "invalid field number %llu", (unsigned long long)(t >> 3));
	*field = (uint32_t)(t >> 3);
	if (*wt != WT_VARINT && *wt != WT_I64 && *wt != WT_LEN && *wt != WT_I32)
		return fail(c, p, "field %u: unsupported wire type %d", *field, *wt);
	return 0;
}

static int get_len(struct cv *c, const struct ppath *p, struct rd *r, struct rd *out)
{
	uint64_t n;
	if (!get_varint(r, &n))
		return fail(c, p, "truncated length");
	if (n > (uint64_t)(r->end - r->p))
		return fail(c, p, "length %llu exceeds the %zu bytes left", (unsigned long long)n,
			    (size_t)(r->end - r->p));
	out->p = r->p;
	out->end = r->p + n;
	r->p += n;
	return 0;
}

/* Skip the value of an unknown field. */
static int skip(struct cv *c, const struct ppath *p, struct rd *r, uint32_t field, int wt)
{
	uint64_t v;
	struct rd sub;
	size_t n = wt == WT_I64 ? 8 : 4;
	switch (wt) {
	case WT_VARINT:
		return get_varint(r, &v) ? 0 : fail(c, p, "field %u: truncated varint", field);
	case WT_LEN:
		return get_len(c, p, r, &sub);
	default:
		if ((size_t)(r->end - r->p) < n)
			return fail(c, p, "field %u: truncated fixed-size value", field);
		r->p += n;
		return 0;
	}
}

static int want(struct cv *c, const struct ppath *p, int wt, int expected)
{
	static const char *const names[] = {"varint", "64-bit", "length-delimited", "group start",
					    "group end", "32-bit"};
	if (wt == expected)
		return 0;
	return fail(c, p, "wrong wire type (%s, expected %s)", names[wt], names[expected]);
}

static int get_u64(struct cv *c, const struct ppath *p, struct rd *r, int wt, uint64_t *v)
{
	int rc = want(c, p, wt, WT_VARINT);
	if (rc)
		return rc;
	return get_varint(r, v) ? 0 : fail(c, p, "truncated varint");
}

/* uint32 / enum / bool fields: values beyond 32 bits are errors (an enum's
 * negative values, sign-extended to 64 bits, among them). */
static int get_u32(struct cv *c, const struct ppath *p, struct rd *r, int wt, uint32_t *v)
{
	uint64_t x;
	int rc = get_u64(c, p, r, wt, &x);
	if (rc)
		return rc;
	if (x > UINT32_MAX)
		return fail(c, p, "value %llu is out of range", (unsigned long long)x);
	*v = (uint32_t)x;
	return 0;
}

/* ---- tree building ---- */

static struct zt_cnode *node_new(struct cv *c, int kind)
{
	if (c->nodes >= ZT_XDSCONV_MAX_NODES)
		return NULL;
	struct zt_cnode *n = zt_arena_calloc(c->a, 1, sizeof(*n));
	if (n) {
		n->kind = (uint8_t)kind;
		c->nodes++;
	}
	return n;
}

/* node_new's NULL: the budget or the memory ran out. */
static int no_node(struct cv *c, const struct ppath *p)
{
	if (c->nodes >= ZT_XDSCONV_MAX_NODES)
		return fail(c, p, "more than %u values in one resource", ZT_XDSCONV_MAX_NODES);
	return oom(c);
}

static bool utf8_ok(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t b = s[i];
		size_t k;
		uint32_t cp;
		if (b < 0x80) {
			i++;
			continue;
		} else if ((b & 0xe0) == 0xc0) {
			k = 1;
			cp = b & 0x1f;
		} else if ((b & 0xf0) == 0xe0) {
			k = 2;
			cp = b & 0x0f;
		} else if ((b & 0xf8) == 0xf0) {
			k = 3;
			cp = b & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static struct zt_cnode *text_node(struct cv *c, int kind, const char *s, size_t len)
{
	struct zt_cnode *n = node_new(c, kind);
	if (n && !(n->text = zt_arena_strndup(c->a, s, len)))
		n = NULL;
	if (n)
		n->len = (uint32_t)len;
	return n;
}

/* A proto3 string: valid UTF-8 without NUL (config.c refuses NUL too). */
static int str_node(struct cv *c, const struct ppath *p, const struct rd *v, struct zt_cnode **out)
{
	size_t n = (size_t)(v->end - v->p);
	if (memchr(v->p, 0, n))
		return fail(c, p, "string contains a NUL character");
	if (!utf8_ok(v->p, n))
		return fail(c, p, "string is not valid UTF-8");
	*out = text_node(c, ZT_CN_STR, (const char *)v->p, n);
	return *out ? 0 : no_node(c, p);
}

static struct zt_cnode *int_node(struct cv *c, int64_t v)
{
	char buf[24];
	int len = snprintf(buf, sizeof(buf), "%lld", (long long)v);
	struct zt_cnode *n = text_node(c, ZT_CN_INT, buf, (size_t)len);
	if (n) {
		n->i = v;
		n->plain = true;
	}
	return n;
}

static struct zt_cnode *bool_node(struct cv *c, bool v)
{
	struct zt_cnode *n = text_node(c, ZT_CN_BOOL, v ? "true" : "false", v ? 4 : 5);
	if (n) {
		n->b = v;
		n->plain = true;
	}
	return n;
}

static struct zt_cnode *cstr_node(struct cv *c, const char *s)
{
	return text_node(c, ZT_CN_STR, s, strlen(s));
}

/* Arrays grow by doubling inside the arena; the capacity is implied by the
 * count (0, 4, 8, 16, ...), so a node needs no extra field. */
static bool grow(struct cv *c, void **arr, size_t n, size_t size)
{
	if (n != 0 && (n < 4 || (n & (n - 1))))
		return true; /* room left */
	size_t ncap = n == 0 ? 4 : n * 2;
	void *na = zt_arena_calloc(c->a, ncap, size);
	if (!na)
		return false;
	if (n)
		memcpy(na, *arr, n * size);
	*arr = na;
	return true;
}

static int seq_push(struct cv *c, const struct ppath *p, struct zt_cnode *seq, struct zt_cnode *v)
{
	if (!v)
		return no_node(c, p);
	void *items = seq->items;
	if (!grow(c, &items, seq->n, sizeof(*seq->items)))
		return oom(c);
	seq->items = items;
	seq->items[seq->n++] = v;
	return 0;
}

/* Append key -> v to `map`; the caller knows that the key is new (or
 * removes duplicates later, see dedup_map). */
static int map_push(struct cv *c, const struct ppath *p, struct zt_cnode *map,
		    const struct zt_cnode *key, struct zt_cnode *v)
{
	if (!v || !key)
		return no_node(c, p);
	void *pairs = map->pairs;
	if (!grow(c, &pairs, map->n, sizeof(*map->pairs)))
		return oom(c);
	map->pairs = pairs;
	map->pairs[map->n++] = (struct zt_cpair){key, v};
	return 0;
}

/* Set key -> v, replacing an earlier value of the same key. A linear scan:
 * for maps with a few fixed keys only (a map that input can make large uses
 * map_push). */
static int map_set_key(struct cv *c, const struct ppath *p, struct zt_cnode *map,
		       const struct zt_cnode *key, struct zt_cnode *v)
{
	if (!v || !key)
		return no_node(c, p);
	for (uint32_t i = 0; i < map->n; i++)
		if (map->pairs[i].key->len == key->len &&
		    !memcmp(map->pairs[i].key->text, key->text, key->len)) {
			map->pairs[i].val = v;
			return 0;
		}
	return map_push(c, p, map, key, v);
}

struct keyref {
	const struct zt_cnode *key;
	uint32_t idx;
};

static int cmp_keyref(const void *x, const void *y)
{
	const struct keyref *a = x, *b = y;
	if (a->key->len != b->key->len)
		return a->key->len < b->key->len ? -1 : 1;
	int d = memcmp(a->key->text, b->key->text, a->key->len);
	if (d)
		return d;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Give a map filled by map_push protobuf's map semantics in O(n log n): of
 * the pairs with one key, the first keeps its place and takes the last
 * one's value; the others are removed. Returns 0 or -ENOMEM. */
static int dedup_map(struct cv *c, struct zt_cnode *map)
{
	if (map->n < 2)
		return 0;
	struct keyref *refs = zt_arena_calloc(c->a, map->n, sizeof(*refs));
	if (!refs)
		return oom(c);
	for (uint32_t i = 0; i < map->n; i++)
		refs[i] = (struct keyref){map->pairs[i].key, i};
	qsort(refs, map->n, sizeof(*refs), cmp_keyref);
	bool dups = false;
	for (uint32_t g = 0, e; g < map->n; g = e) {
		for (e = g + 1; e < map->n && refs[e].key->len == refs[g].key->len &&
				!memcmp(refs[e].key->text, refs[g].key->text, refs[g].key->len);
		     e++)
			map->pairs[refs[e].idx].key = NULL; /* removed below */
		if (e - g > 1) {
			map->pairs[refs[g].idx].val = map->pairs[refs[e - 1].idx].val;
			dups = true;
		}
	}
	uint32_t n = 0;
	for (uint32_t i = 0; dups && i < map->n; i++)
		if (map->pairs[i].key)
			map->pairs[n++] = map->pairs[i];
	if (dups)
		map->n = n;
	return 0;
}

static int map_set(struct cv *c, const struct ppath *p, struct zt_cnode *map, const char *key,
		   struct zt_cnode *v)
{
	if (!v)
		return no_node(c, p);
	return map_set_key(c, p, map, cstr_node(c, key), v);
}

/* The value of `key` in `map`, creating an empty container of `kind`. */
static struct zt_cnode *map_child(struct cv *c, struct zt_cnode *map, const char *key, int kind)
{
	for (uint32_t i = 0; i < map->n; i++)
		if (!strcmp(map->pairs[i].key->text, key))
			return (struct zt_cnode *)map->pairs[i].val;
	struct zt_cnode *n = node_new(c, kind);
	if (n && map_set(c, NULL, map, key, n))
		return NULL;
	return n;
}

static int set_str(struct cv *c, const struct ppath *p, struct rd *r, int wt, struct zt_cnode *map,
		   const char *key)
{
	struct rd v;
	struct zt_cnode *n;
	int rc;
	if ((rc = want(c, p, wt, WT_LEN)) || (rc = get_len(c, p, r, &v)) || (rc = str_node(c, p, &v, &n)))
		return rc;
	return map_set(c, p, map, key, n);
}

/* Like set_str, but an empty string (proto3's "unset") leaves the key out,
 * removing an earlier value: the config default applies. */
static int set_str_nonempty(struct cv *c, const struct ppath *p, struct rd *r, int wt,
			    struct zt_cnode *map, const char *key)
{
	struct rd v;
	struct zt_cnode *n;
	int rc;
	if ((rc = want(c, p, wt, WT_LEN)) || (rc = get_len(c, p, r, &v)) || (rc = str_node(c, p, &v, &n)))
		return rc;
	if (n->len == 0) {
		for (uint32_t i = 0; i < map->n; i++)
			if (!strcmp(map->pairs[i].key->text, key)) { /* last wins */
				memmove(&map->pairs[i], &map->pairs[i + 1],
					(map->n - i - 1) * sizeof(*map->pairs));
				map->n--; /* grow() still finds room: capacity >= implied */
				break;
			}
		return 0;
	}
	return map_set(c, p, map, key, n);
}

static int set_bool(struct cv *c, const struct ppath *p, struct rd *r, int wt, struct zt_cnode *map,
		    const char *key)
{
	uint64_t v;
	int rc = get_u64(c, p, r, wt, &v);
	return rc ? rc : map_set(c, p, map, key, bool_node(c, v != 0));
}

static int push_str(struct cv *c, const struct ppath *p, struct rd *r, int wt, struct zt_cnode *seq)
{
	struct rd v;
	struct zt_cnode *n;
	int rc;
	if ((rc = want(c, p, wt, WT_LEN)) || (rc = get_len(c, p, r, &v)) || (rc = str_node(c, p, &v, &n)))
		return rc;
	return seq_push(c, p, seq, n);
}

/* An enum value -> its name in `names` (NULL entries are invalid values). */
static int enum_name(struct cv *c, const struct ppath *p, uint32_t v, const char *const *names,
		     size_t n, const char **out)
{
	if (v >= n || !names[v])
		return fail(c, p, "unknown enum value %u", v);
	*out = names[v];
	return 0;
}

static int set_enum(struct cv *c, const struct ppath *p, struct rd *r, int wt, struct zt_cnode *map,
		    const char *key, const char *const *names, size_t n)
{
	uint32_t v;
	const char *s;
	int rc;
	if ((rc = get_u32(c, p, r, wt, &v)) || (rc = enum_name(c, p, v, names, n, &s)))
		return rc;
	return map_set(c, p, map, key, cstr_node(c, s));
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* IP bytes -> text. */
static int ip_text(struct cv *c, const struct ppath *p, const struct rd *v, char *buf, size_t cap)
{
	size_t n = (size_t)(v->end - v->p);
	if (n != 4 && n != 16)
		return fail(c, p, "%zu bytes is not an IPv4 (4) or IPv6 (16) address", n);
	if (!inet_ntop(n == 4 ? AF_INET : AF_INET6, v->p, buf, (socklen_t)cap))
		return fail(c, p, "cannot format the address");
	return 0;
}

/* ---- shared messages ---- */

/* NetworkAddress {network = 1, address = 2} -> "network/IP". */
static int netaddr_text(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct rd net = {NULL, NULL}, addr = {NULL, NULL};
	char ip[INET6_ADDRSTRLEN];
	int rc, wt;
	uint32_t f;
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		struct ppath fp = F(p, f == 1 ? "network" : "address");
		if (f == 1 || f == 2) {
			if ((rc = want(c, &fp, wt, WT_LEN)) ||
			    (rc = get_len(c, &fp, &r, f == 1 ? &net : &addr)))
				return rc;
		} else if ((rc = skip(c, p, &r, f, wt))) {
			return rc;
		}
	}
	struct ppath np = F(p, "network"), ap = F(p, "address");
	size_t nlen = net.p ? (size_t)(net.end - net.p) : 0;
	if (nlen && (memchr(net.p, '/', nlen) || memchr(net.p, 0, nlen) || !utf8_ok(net.p, nlen)))
		return fail(c, &np, "network name contains '/', NUL or invalid UTF-8");
	if (!addr.p)
		return fail(c, &ap, "missing address");
	if ((rc = ip_text(c, &ap, &addr, ip, sizeof(ip))))
		return rc;
	char buf[300 + INET6_ADDRSTRLEN];
	if (nlen > 256)
		return fail(c, &np, "network name longer than 256 bytes");
	int len = snprintf(buf, sizeof(buf), "%.*s/%s", (int)nlen, nlen ? (const char *)net.p : "", ip);
	*out = text_node(c, ZT_CN_STR, buf, (size_t)len);
	return *out ? 0 : no_node(c, p);
}

/* NamespacedHostname {namespace = 1, hostname = 2} -> "namespace/hostname". */
static int nshost_text(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct zt_cnode *ns = NULL, *host = NULL, *n;
	int rc, wt;
	uint32_t f;
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f != 1 && f != 2) {
			if ((rc = skip(c, p, &r, f, wt)))
				return rc;
			continue;
		}
		struct ppath fp = F(p, f == 1 ? "namespace" : "hostname");
		struct rd v;
		if ((rc = want(c, &fp, wt, WT_LEN)) || (rc = get_len(c, &fp, &r, &v)) ||
		    (rc = str_node(c, &fp, &v, &n)))
			return rc;
		if (f == 1 && memchr(n->text, '/', n->len))
			return fail(c, &fp, "namespace contains '/'");
		*(f == 1 ? &ns : &host) = n;
	}
	size_t l1 = ns ? ns->len : 0, l2 = host ? host->len : 0;
	char *s = zt_arena_alloc(c->a, l1 + l2 + 2);
	if (!s)
		return oom(c);
	memcpy(s, ns ? ns->text : "", l1);
	s[l1] = '/';
	memcpy(s + l1 + 1, host ? host->text : "", l2);
	s[l1 + 1 + l2] = 0;
	if (!(*out = node_new(c, ZT_CN_STR)))
		return no_node(c, p);
	(*out)->text = s;
	(*out)->len = (uint32_t)(l1 + l2 + 1);
	return 0;
}

/* GatewayAddress {hostname = 1 | address = 2, hbone_mtls_port = 3}
 * -> {destination, hboneMtlsPort}. */
static int gateway(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct zt_cnode *m = node_new(c, ZT_CN_MAP), *dest = NULL;
	uint32_t port = 0;
	int rc, wt;
	uint32_t f;
	if (!m)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		struct rd v;
		if (f == 1 || f == 2) {
			struct ppath fp = F(p, f == 1 ? "hostname" : "address");
			if ((rc = want(c, &fp, wt, WT_LEN)) || (rc = get_len(c, &fp, &r, &v)))
				return rc;
			rc = f == 1 ? nshost_text(c, &fp, v, &dest) : netaddr_text(c, &fp, v, &dest);
		} else if (f == 3) {
			struct ppath fp = F(p, "hbone_mtls_port");
			rc = get_u32(c, &fp, &r, wt, &port);
		} else {
			rc = skip(c, p, &r, f, wt);
		}
		if (rc)
			return rc;
	}
	struct ppath pp = F(p, "hbone_mtls_port");
	if (!dest)
		return fail(c, p, "neither hostname nor address is set");
	if (port < 1 || port > 65535)
		return fail(c, &pp, "%u is not a port (1..65535)", port);
	if ((rc = map_set(c, p, m, "destination", dest)) ||
	    (rc = map_set(c, p, m, "hboneMtlsPort", int_node(c, port))))
		return rc;
	*out = m;
	return 0;
}

/* The service ports of one port map, so that finding a duplicate costs the
 * same with 65535 ports as with 3: a linear scan while the map is small, then
 * a bitmap (filled from the map when it reaches PORTSET_SCAN ports). Lives on
 * the stack of whoever fills the map; `on` starts false. */
#define PORTSET_SCAN 16
struct portset {
	bool on;
	uint64_t bits[65536 / 64];
};

static bool portset_test_set(struct portset *ps, const struct zt_cnode *pmap, uint32_t port)
{
	if (!ps->on && pmap->n < PORTSET_SCAN) {
		for (uint32_t i = 0; i < pmap->n; i++)
			if (pmap->pairs[i].key->i == port)
				return true;
		return false;
	}
	if (!ps->on) {
		memset(ps->bits, 0, sizeof(ps->bits));
		for (uint32_t i = 0; i < pmap->n; i++) {
			uint32_t q = (uint32_t)pmap->pairs[i].key->i;
			ps->bits[q / 64] |= 1ull << (q % 64);
		}
		ps->on = true;
	}
	bool seen = ps->bits[port / 64] >> (port % 64) & 1;
	ps->bits[port / 64] |= 1ull << (port % 64);
	return seen;
}

/* Port {service_port = 1, target_port = 2} into a port map: a service port
 * of 0 or above 65535 is an error, a target port 0 means "named port". */
static int port_entry(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode *pmap,
		      struct portset *ps)
{
	uint32_t sp = 0, tp = 0;
	int rc, wt;
	uint32_t f;
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f == 1 || f == 2) {
			struct ppath fp = F(p, f == 1 ? "service_port" : "target_port");
			rc = get_u32(c, &fp, &r, wt, f == 1 ? &sp : &tp);
		} else {
			rc = skip(c, p, &r, f, wt);
		}
		if (rc)
			return rc;
	}
	struct ppath sp_p = F(p, "service_port"), tp_p = F(p, "target_port");
	if (sp < 1 || sp > 65535)
		return fail(c, &sp_p, "%u is not a port (1..65535)", sp);
	if (tp > 65535)
		return fail(c, &tp_p, "%u is not a port (0..65535)", tp);
	if (portset_test_set(ps, pmap, sp))
		return fail(c, &sp_p, "duplicate port %u", sp);
	return map_push(c, p, pmap, int_node(c, sp), int_node(c, tp));
}

/* ---- Workload ---- */

static const char *const tunnel_names[] = {"TCP", "HBONE"};
static const char *const health_names[] = {"Healthy", "Unhealthy"};
static const char *const netmode_names[] = {"Standard", "HostNetwork"};
static const char *const apptun_names[] = {"NONE", "PROXY"};
static const char *const wltype_names[] = {"deployment", "cronjob", "pod", "job"};

/* ApplicationTunnel {protocol = 1, port = 2}. */
static int app_tunnel(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct zt_cnode *m = node_new(c, ZT_CN_MAP);
	uint32_t proto = 0, port = 0;
	int rc, wt;
	uint32_t f;
	const char *s;
	if (!m)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f == 1 || f == 2) {
			struct ppath fp = F(p, f == 1 ? "protocol" : "port");
			rc = get_u32(c, &fp, &r, wt, f == 1 ? &proto : &port);
		} else {
			rc = skip(c, p, &r, f, wt);
		}
		if (rc)
			return rc;
	}
	struct ppath pp = F(p, "protocol"), portp = F(p, "port");
	if ((rc = enum_name(c, &pp, proto, apptun_names, N(apptun_names), &s)))
		return rc;
	if (port > 65535)
		return fail(c, &portp, "%u is not a port (0..65535)", port);
	if ((rc = map_set(c, p, m, "protocol", cstr_node(c, s))))
		return rc;
	if (port && (rc = map_set(c, p, m, "port", int_node(c, port))))
		return rc;
	*out = m;
	return 0;
}

/* Locality {region = 1, zone = 2, subzone = 3}. */
static int locality(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	static const char *const keys[] = {NULL, "region", "zone", "subzone"};
	struct zt_cnode *m = node_new(c, ZT_CN_MAP);
	int rc, wt;
	uint32_t f;
	if (!m)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f >= 1 && f <= 3) {
			struct ppath fp = F(p, keys[f]);
			rc = set_str(c, &fp, &r, wt, m, keys[f]);
		} else {
			rc = skip(c, p, &r, f, wt);
		}
		if (rc)
			return rc;
	}
	*out = m;
	return 0;
}

/* services map entry {key = 1 "namespace/hostname", value = 2 PortList}. */
static int wl_service(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode *svcs)
{
	struct zt_cnode *key = NULL, *ports = node_new(c, ZT_CN_MAP);
	struct rd val = {NULL, NULL}, v;
	int rc, wt;
	uint32_t f;
	if (!ports)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f == 1) {
			struct ppath fp = F(p, "key");
			if ((rc = want(c, &fp, wt, WT_LEN)) || (rc = get_len(c, &fp, &r, &v)) ||
			    (rc = str_node(c, &fp, &v, &key)))
				return rc;
		} else if (f == 2) {
			struct ppath fp = F(p, "value");
			if ((rc = want(c, &fp, wt, WT_LEN)) || (rc = get_len(c, &fp, &r, &val)))
				return rc;
		} else if ((rc = skip(c, p, &r, f, wt))) {
			return rc;
		}
	}
	if (!key && !(key = cstr_node(c, "")))
		return no_node(c, p);
	struct ppath kp = K(p->up, key->text);
	if (!memchr(key->text, '/', key->len))
		return fail(c, &kp, "not a namespaced hostname (\"namespace/hostname\")");
	/* PortList {ports = 1 (repeated Port)} */
	size_t i = 0;
	struct rd pl = val;
	struct portset ps;
	ps.on = false;
	while (pl.p && pl.p < pl.end) {
		struct ppath lp = F(&kp, "ports");
		if ((rc = get_tag(c, &kp, &pl, &f, &wt)))
			return rc;
		if (f != 1) {
			if ((rc = skip(c, &kp, &pl, f, wt)))
				return rc;
			continue;
		}
		struct ppath ip = I(&lp, i++);
		if ((rc = want(c, &ip, wt, WT_LEN)) || (rc = get_len(c, &ip, &pl, &v)) ||
		    (rc = port_entry(c, &ip, v, ports, &ps)))
			return rc;
	}
	return map_push(c, p, svcs, key, ports); /* dedup_map() at the end */
}

static int workload(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode *m)
{
	struct zt_cnode *ips = NULL, *pols = NULL, *svcs = NULL, *n = NULL;
	size_t n_ips = 0, n_pols = 0, n_svcs = 0;
	int rc, wt;
	uint32_t f, v32;
	struct rd v;

	/* Keys config.c requires; an elided namespace reads as "". workload_type
	 * 0 (absent) is DEPLOYMENT, as in ztunnel. */
	if ((rc = map_set(c, p, m, "namespace", cstr_node(c, ""))) ||
	    (rc = map_set(c, p, m, "workloadType", cstr_node(c, wltype_names[0]))))
		return rc;
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		switch (f) {
		case 20: { struct ppath fp = F(p, "uid"); rc = set_str(c, &fp, &r, wt, m, "uid"); break; }
		case 1: { struct ppath fp = F(p, "name"); rc = set_str(c, &fp, &r, wt, m, "name"); break; }
		case 2: { struct ppath fp = F(p, "namespace"); rc = set_str(c, &fp, &r, wt, m, "namespace"); break; }
		case 21: { struct ppath fp = F(p, "hostname"); rc = set_str(c, &fp, &r, wt, m, "hostname"); break; }
		case 4: { struct ppath fp = F(p, "network"); rc = set_str(c, &fp, &r, wt, m, "network"); break; }
		case 6: { struct ppath fp = F(p, "trust_domain"); rc = set_str_nonempty(c, &fp, &r, wt, m, "trustDomain"); break; }
		case 7: { struct ppath fp = F(p, "service_account"); rc = set_str_nonempty(c, &fp, &r, wt, m, "serviceAccount"); break; }
		case 9: { struct ppath fp = F(p, "node"); rc = set_str(c, &fp, &r, wt, m, "node"); break; }
		case 10: { struct ppath fp = F(p, "canonical_name"); rc = set_str(c, &fp, &r, wt, m, "canonicalName"); break; }
		case 11: { struct ppath fp = F(p, "canonical_revision"); rc = set_str(c, &fp, &r, wt, m, "canonicalRevision"); break; }
		case 13: { struct ppath fp = F(p, "workload_name"); rc = set_str(c, &fp, &r, wt, m, "workloadName"); break; }
		case 18: { struct ppath fp = F(p, "cluster_id"); rc = set_str_nonempty(c, &fp, &r, wt, m, "clusterId"); break; }
		case 14: { struct ppath fp = F(p, "native_tunnel"); rc = set_bool(c, &fp, &r, wt, m, "nativeTunnel"); break; }
		case 5: {
			struct ppath fp = F(p, "tunnel_protocol");
			rc = set_enum(c, &fp, &r, wt, m, "protocol", tunnel_names, N(tunnel_names));
			break;
		}
		case 17: {
			struct ppath fp = F(p, "status");
			rc = set_enum(c, &fp, &r, wt, m, "status", health_names, N(health_names));
			break;
		}
		case 25: {
			struct ppath fp = F(p, "network_mode");
			rc = set_enum(c, &fp, &r, wt, m, "networkMode", netmode_names, N(netmode_names));
			break;
		}
		case 12: { /* lenient like ztunnel: unknown -> DEPLOYMENT */
			struct ppath fp = F(p, "workload_type");
			if (!(rc = get_u32(c, &fp, &r, wt, &v32)))
				rc = map_set(c, &fp, m, "workloadType",
					     cstr_node(c, wltype_names[v32 < N(wltype_names) ? v32 : 0]));
			break;
		}
		case 3: {
			struct ppath fp = F(p, "addresses"), ip = I(&fp, n_ips++);
			char buf[INET6_ADDRSTRLEN];
			if (!ips && !(ips = map_child(c, m, "workloadIps", ZT_CN_SEQ)))
				return no_node(c, &fp);
			if (!(rc = want(c, &ip, wt, WT_LEN)) && !(rc = get_len(c, &ip, &r, &v)) &&
			    !(rc = ip_text(c, &ip, &v, buf, sizeof(buf))))
				rc = seq_push(c, &ip, ips, cstr_node(c, buf));
			break;
		}
		case 16: {
			struct ppath fp = F(p, "authorization_policies"), ip = I(&fp, n_pols++);
			if (!pols && !(pols = map_child(c, m, "authorizationPolicies", ZT_CN_SEQ)))
				return no_node(c, &fp);
			rc = push_str(c, &ip, &r, wt, pols);
			break;
		}
		case 22: {
			struct ppath fp = F(p, "services"), ip = I(&fp, n_svcs++);
			if (!svcs && !(svcs = map_child(c, m, "services", ZT_CN_MAP)))
				return no_node(c, &fp);
			if (!(rc = want(c, &ip, wt, WT_LEN)) && !(rc = get_len(c, &ip, &r, &v)))
				rc = wl_service(c, &ip, v, svcs);
			break;
		}
		case 8:
		case 19: {
			struct ppath fp = F(p, f == 8 ? "waypoint" : "network_gateway");
			if (!(rc = want(c, &fp, wt, WT_LEN)) && !(rc = get_len(c, &fp, &r, &v)) &&
			    !(rc = gateway(c, &fp, v, &n)))
				rc = map_set(c, &fp, m, f == 8 ? "waypoint" : "networkGateway", n);
			break;
		}
		case 23: {
			struct ppath fp = F(p, "application_tunnel");
			if (!(rc = want(c, &fp, wt, WT_LEN)) && !(rc = get_len(c, &fp, &r, &v)) &&
			    !(rc = app_tunnel(c, &fp, v, &n)))
				rc = map_set(c, &fp, m, "applicationTunnel", n);
			break;
		}
		case 24: {
			struct ppath fp = F(p, "locality");
			if (!(rc = want(c, &fp, wt, WT_LEN)) && !(rc = get_len(c, &fp, &r, &v)) &&
			    !(rc = locality(c, &fp, v, &n)))
				rc = map_set(c, &fp, m, "locality", n);
			break;
		}
		case 27: { /* google.protobuf.UInt32Value {value = 1} */
			struct ppath fp = F(p, "capacity"), vp = F(&fp, "value");
			uint32_t cap = 0, g;
			int w2;
			if ((rc = want(c, &fp, wt, WT_LEN)) || (rc = get_len(c, &fp, &r, &v)))
				break;
			while (!rc && v.p < v.end) {
				if ((rc = get_tag(c, &fp, &v, &g, &w2)))
					break;
				rc = g == 1 ? get_u32(c, &vp, &v, w2, &cap) : skip(c, &fp, &v, g, w2);
			}
			if (!rc)
				rc = map_set(c, &fp, m, "capacity", int_node(c, cap));
			break;
		}
		default:
			rc = skip(c, p, &r, f, wt);
			break;
		}
		if (rc)
			return rc;
	}
	/* services entries with the same key: the last one wins. */
	return svcs ? dedup_map(c, svcs) : 0;
}

/* ---- Service ---- */

static const char *const lb_scope_names[] = {NULL, "Region", "Zone", "Subzone", "Node",
					     "Cluster", "Network"};
static const char *const lb_mode_names[] = {"Standard", "Strict", "Failover", "Passthrough"};
static const char *const lb_health_names[] = {"OnlyHealthy", "AllowAll"};
static const char *const ipf_names[] = {NULL, "IPv4", "IPv6", "Dual"};

/* LoadBalancing {routing_preference = 1 (repeated enum, packed or not),
 * mode = 2, health_policy = 3}. */
static int load_balancing(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct zt_cnode *m = node_new(c, ZT_CN_MAP), *prefs = NULL;
	size_t n_prefs = 0;
	int rc, wt;
	uint32_t f, v32;
	const char *s;
	if (!m)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f == 1) {
			struct ppath fp = F(p, "routing_preference");
			struct rd packed = {r.p, r.p}, *src = &r;
			if (!prefs && !(prefs = map_child(c, m, "routingPreferences", ZT_CN_SEQ)))
				return no_node(c, &fp);
			if (wt == WT_LEN) {
				if ((rc = get_len(c, &fp, &r, &packed)))
					return rc;
				src = &packed;
				if (packed.p == packed.end) /* empty packed: no value */
					continue;
			} else if ((rc = want(c, &fp, wt, WT_VARINT))) {
				return rc;
			}
			do {
				struct ppath ip = I(&fp, n_prefs++);
				if ((rc = get_u32(c, &ip, src, WT_VARINT, &v32)) ||
				    (rc = enum_name(c, &ip, v32, lb_scope_names, N(lb_scope_names), &s)) ||
				    (rc = seq_push(c, &ip, prefs, cstr_node(c, s))))
					return rc;
			} while (src == &packed && packed.p < packed.end);
		} else if (f == 2) {
			struct ppath fp = F(p, "mode");
			rc = set_enum(c, &fp, &r, wt, m, "mode", lb_mode_names, N(lb_mode_names));
		} else if (f == 3) {
			struct ppath fp = F(p, "health_policy");
			rc = set_enum(c, &fp, &r, wt, m, "healthPolicy", lb_health_names,
				      N(lb_health_names));
		} else {
			rc = skip(c, p, &r, f, wt);
		}
		if (rc)
			return rc;
	}
	*out = m;
	return 0;
}

static int service(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode *m)
{
	struct zt_cnode *vips = NULL, *ports = NULL, *sans = NULL, *n = NULL;
	size_t n_vips = 0, n_ports = 0, n_sans = 0;
	int rc, wt;
	uint32_t f, v32;
	struct rd v;
	const char *s;
	struct portset ps;
	ps.on = false; /* the bitmap is cleared only when needed */

	if ((rc = map_set(c, p, m, "name", cstr_node(c, ""))) ||
	    (rc = map_set(c, p, m, "namespace", cstr_node(c, ""))) ||
	    (rc = map_set(c, p, m, "hostname", cstr_node(c, ""))))
		return rc;
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		switch (f) {
		case 1: { struct ppath fp = F(p, "name"); rc = set_str(c, &fp, &r, wt, m, "name"); break; }
		case 2: { struct ppath fp = F(p, "namespace"); rc = set_str(c, &fp, &r, wt, m, "namespace"); break; }
		case 3: { struct ppath fp = F(p, "hostname"); rc = set_str(c, &fp, &r, wt, m, "hostname"); break; }
		case 4: {
			struct ppath fp = F(p, "addresses"), ip = I(&fp, n_vips++);
			if (!vips && !(vips = map_child(c, m, "vips", ZT_CN_SEQ)))
				return no_node(c, &fp);
			if (!(rc = want(c, &ip, wt, WT_LEN)) && !(rc = get_len(c, &ip, &r, &v)) &&
			    !(rc = netaddr_text(c, &ip, v, &n)))
				rc = seq_push(c, &ip, vips, n);
			break;
		}
		case 5: {
			struct ppath fp = F(p, "ports"), ip = I(&fp, n_ports++);
			if (!ports && !(ports = map_child(c, m, "ports", ZT_CN_MAP)))
				return no_node(c, &fp);
			if (!(rc = want(c, &ip, wt, WT_LEN)) && !(rc = get_len(c, &ip, &r, &v)))
				rc = port_entry(c, &ip, v, ports, &ps);
			break;
		}
		case 6: {
			struct ppath fp = F(p, "subject_alt_names"), ip = I(&fp, n_sans++);
			if (!sans && !(sans = map_child(c, m, "subjectAltNames", ZT_CN_SEQ)))
				return no_node(c, &fp);
			rc = push_str(c, &ip, &r, wt, sans);
			break;
		}
		case 7: {
			struct ppath fp = F(p, "waypoint");
			if (!(rc = want(c, &fp, wt, WT_LEN)) && !(rc = get_len(c, &fp, &r, &v)) &&
			    !(rc = gateway(c, &fp, v, &n)))
				rc = map_set(c, &fp, m, "waypoint", n);
			break;
		}
		case 8: {
			struct ppath fp = F(p, "load_balancing");
			if (!(rc = want(c, &fp, wt, WT_LEN)) && !(rc = get_len(c, &fp, &r, &v)) &&
			    !(rc = load_balancing(c, &fp, v, &n)))
				rc = map_set(c, &fp, m, "loadBalancer", n);
			break;
		}
		case 9: {
			struct ppath fp = F(p, "ip_families");
			if ((rc = get_u32(c, &fp, &r, wt, &v32)))
				break;
			if (v32 == 0) { /* AUTOMATIC: leave the key out (a later 0 resets) */
				for (uint32_t i = 0; i < m->n; i++)
					if (!strcmp(m->pairs[i].key->text, "ipFamilies"))
						m->pairs[i].val = node_new(c, ZT_CN_NULL);
				break;
			}
			if (!(rc = enum_name(c, &fp, v32, ipf_names, N(ipf_names), &s)))
				rc = map_set(c, &fp, m, "ipFamilies", cstr_node(c, s));
			break;
		}
		case 11: { /* ztunnel: bool canonical; istio (some versions): a Timestamp */
			struct ppath fp = F(p, "canonical");
			rc = wt == WT_LEN ? skip(c, p, &r, f, wt) : set_bool(c, &fp, &r, wt, m, "canonical");
			break;
		}
		default:
			rc = skip(c, p, &r, f, wt);
			break;
		}
		if (rc)
			return rc;
	}
	/* A NULL value left by ip_families reset means "absent" to config.c. */
	for (uint32_t i = 0; i < m->n; i++)
		if (!m->pairs[i].val)
			return oom(c);
	return 0;
}

/* ---- Authorization ---- */

static const char *const scope_names[] = {"Global", "Namespace", "WorkloadSelector"};
static const char *const action_names[] = {"Allow", "Deny"};

/* StringMatch {exact = 1 | prefix = 2 | suffix = 3 | presence = 4 (Empty)}. */
static int string_match(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	static const char *const kinds[] = {NULL, "Exact", "Prefix", "Suffix", "Presence"};
	struct zt_cnode *m = node_new(c, ZT_CN_MAP), *val = NULL;
	uint32_t kind = 0, f;
	int rc, wt;
	struct rd v;
	if (!m)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f < 1 || f > 4) {
			if ((rc = skip(c, p, &r, f, wt)))
				return rc;
			continue;
		}
		struct ppath fp = F(p, kinds[f]);
		if ((rc = want(c, &fp, wt, WT_LEN)) || (rc = get_len(c, &fp, &r, &v)))
			return rc;
		if (f == 4) /* Empty: its content is ignored */
			val = node_new(c, ZT_CN_SEQ);
		else if ((rc = str_node(c, &fp, &v, &val)))
			return rc;
		if (!val)
			return no_node(c, &fp);
		kind = f; /* oneof: the last one wins */
	}
	if (!kind)
		return fail(c, p, "no match type (exact, prefix, suffix or presence) is set");
	if ((rc = map_set(c, p, m, kinds[kind], val)))
		return rc;
	*out = m;
	return 0;
}

/* ServiceAccountMatch {namespace = 1, serviceAccount = 2}. */
static int sa_match(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct zt_cnode *m = node_new(c, ZT_CN_MAP);
	int rc, wt;
	uint32_t f;
	if (!m || (rc = map_set(c, p, m, "namespace", cstr_node(c, ""))) ||
	    (rc = map_set(c, p, m, "serviceAccount", cstr_node(c, ""))))
		return m ? rc : no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		struct ppath fp = F(p, f == 1 ? "namespace" : "serviceAccount");
		if (f == 1 || f == 2)
			rc = set_str(c, &fp, &r, wt, m, f == 1 ? "namespace" : "serviceAccount");
		else
			rc = skip(c, p, &r, f, wt);
		if (rc)
			return rc;
	}
	/* config.c joins them as "namespace/serviceaccount". */
	for (uint32_t i = 0; i < m->n; i++)
		if (memchr(m->pairs[i].val->text, '/', m->pairs[i].val->len)) {
			struct ppath fp = F(p, m->pairs[i].key->text);
			return fail(c, &fp, "contains '/'");
		}
	*out = m;
	return 0;
}

/* Address {address = 1 (bytes), length = 2} -> "IP/length". */
static int cidr(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct rd addr = {NULL, NULL};
	uint32_t len = 0, f;
	int rc, wt;
	char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 8];
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		struct ppath fp = F(p, f == 1 ? "address" : "length");
		if (f == 1)
			rc = want(c, &fp, wt, WT_LEN) ? -EINVAL : get_len(c, &fp, &r, &addr);
		else if (f == 2)
			rc = get_u32(c, &fp, &r, wt, &len);
		else
			rc = skip(c, p, &r, f, wt);
		if (rc)
			return rc;
	}
	struct ppath ap = F(p, "address"), lp = F(p, "length");
	if (!addr.p)
		return fail(c, &ap, "missing address");
	if ((rc = ip_text(c, &ap, &addr, ip, sizeof(ip))))
		return rc;
	unsigned max = addr.end - addr.p == 4 ? 32 : 128;
	if (len > max)
		return fail(c, &lp, "%u is longer than the address (%u bits)", len, max);
	int n = snprintf(buf, sizeof(buf), "%s/%u", ip, len);
	*out = text_node(c, ZT_CN_STR, buf, (size_t)n);
	return *out ? 0 : no_node(c, p);
}

static int push_ports(struct cv *c, const struct ppath *fp, struct rd *r, int wt,
		      struct zt_cnode *seq, size_t *count)
{
	struct rd packed = {r->p, r->p}, *src = r;
	uint32_t v;
	int rc;
	if (wt == WT_LEN) {
		if ((rc = get_len(c, fp, r, &packed)))
			return rc;
		src = &packed;
		if (packed.p == packed.end)
			return 0;
	} else if ((rc = want(c, fp, wt, WT_VARINT))) {
		return rc;
	}
	do {
		struct ppath ip = I(fp, (*count)++);
		if ((rc = get_u32(c, &ip, src, WT_VARINT, &v)))
			return rc;
		if (v < 1 || v > 65535)
			return fail(c, &ip, "%u is not a port (1..65535)", v);
		if ((rc = seq_push(c, &ip, seq, int_node(c, v))))
			return rc;
	} while (src == &packed && packed.p < packed.end);
	return 0;
}

/* Match: repeated fields 1-12 -> the local config's camelCase lists. */
static int match(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	static const char *const fields[] = {
		NULL, "namespaces", "not_namespaces", "principals", "not_principals",
		"source_ips", "not_source_ips", "destination_ips", "not_destination_ips",
		"destination_ports", "not_destination_ports", "service_accounts",
		"not_service_accounts"};
	static const char *const keys[] = {
		NULL, "namespaces", "notNamespaces", "principals", "notPrincipals",
		"sourceIps", "notSourceIps", "destinationIps", "notDestinationIps",
		"destinationPorts", "notDestinationPorts", "serviceAccounts",
		"notServiceAccounts"};
	struct zt_cnode *m = node_new(c, ZT_CN_MAP), *lists[13] = {0}, *n = NULL;
	size_t counts[13] = {0};
	int rc, wt;
	uint32_t f;
	struct rd v;
	if (!m)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f < 1 || f > 12) {
			if ((rc = skip(c, p, &r, f, wt)))
				return rc;
			continue;
		}
		struct ppath fp = F(p, fields[f]);
		if (!lists[f] && !(lists[f] = map_child(c, m, keys[f], ZT_CN_SEQ)))
			return no_node(c, &fp);
		if (f == 9 || f == 10) {
			if ((rc = push_ports(c, &fp, &r, wt, lists[f], &counts[f])))
				return rc;
			continue;
		}
		struct ppath ip = I(&fp, counts[f]++);
		if ((rc = want(c, &ip, wt, WT_LEN)) || (rc = get_len(c, &ip, &r, &v)))
			return rc;
		if (f <= 4)
			rc = string_match(c, &ip, v, &n);
		else if (f <= 8)
			rc = cidr(c, &ip, v, &n);
		else
			rc = sa_match(c, &ip, v, &n);
		if (rc || (rc = seq_push(c, &ip, lists[f], n)))
			return rc;
	}
	*out = m;
	return 0;
}

/* Rule {clauses = 1} of Clause {matches = 2}: rules are a sequence of
 * clauses, each a sequence of matches. */
static int rule(struct cv *c, const struct ppath *p, struct rd r, struct zt_cnode **out)
{
	struct zt_cnode *rs = node_new(c, ZT_CN_SEQ), *cs, *mn;
	size_t nc = 0;
	int rc, wt;
	uint32_t f;
	struct rd v;
	if (!rs)
		return no_node(c, p);
	while (r.p < r.end) {
		if ((rc = get_tag(c, p, &r, &f, &wt)))
			return rc;
		if (f != 1) {
			if ((rc = skip(c, p, &r, f, wt)))
				return rc;
			continue;
		}
		struct ppath fp = F(p, "clauses"), cp = I(&fp, nc++);
		size_t nm = 0;
		if ((rc = want(c, &cp, wt, WT_LEN)) || (rc = get_len(c, &cp, &r, &v)))
			return rc;
		if (!(cs = node_new(c, ZT_CN_SEQ)))
			return no_node(c, &cp);
		while (v.p < v.end) {
			if ((rc = get_tag(c, &cp, &v, &f, &wt)))
				return rc;
			if (f != 2) {
				if ((rc = skip(c, &cp, &v, f, wt)))
					return rc;
				continue;
			}
			struct ppath mf = F(&cp, "matches"), mp = I(&mf, nm++);
			struct rd mv;
			if ((rc = want(c, &mp, wt, WT_LEN)) || (rc = get_len(c, &mp, &v, &mv)) ||
			    (rc = match(c, &mp, mv, &mn)) || (rc = seq_push(c, &mp, cs, mn)))
				return rc;
		}
		if ((rc = seq_push(c, &cp, rs, cs)))
			return rc;
	}
	*out = rs;
	return 0;
}

static int authorization(struct cv *c, struct rd r, struct zt_cnode *m)
{
	struct zt_cnode *rules, *n;
	size_t nr = 0;
	int rc, wt;
	uint32_t f;
	struct rd v;
	if ((rc = map_set(c, NULL, m, "name", cstr_node(c, ""))) ||
	    (rc = map_set(c, NULL, m, "namespace", cstr_node(c, ""))) ||
	    (rc = map_set(c, NULL, m, "scope", cstr_node(c, scope_names[0]))) ||
	    (rc = map_set(c, NULL, m, "action", cstr_node(c, action_names[0]))))
		return rc;
	if (!(rules = map_child(c, m, "rules", ZT_CN_SEQ)))
		return no_node(c, NULL);
	while (r.p < r.end) {
		if ((rc = get_tag(c, NULL, &r, &f, &wt)))
			return rc;
		switch (f) {
		case 1: { struct ppath fp = F(NULL, "name"); rc = set_str(c, &fp, &r, wt, m, "name"); break; }
		case 2: { struct ppath fp = F(NULL, "namespace"); rc = set_str(c, &fp, &r, wt, m, "namespace"); break; }
		case 3: {
			struct ppath fp = F(NULL, "scope");
			rc = set_enum(c, &fp, &r, wt, m, "scope", scope_names, N(scope_names));
			break;
		}
		case 4: {
			struct ppath fp = F(NULL, "action");
			rc = set_enum(c, &fp, &r, wt, m, "action", action_names, N(action_names));
			break;
		}
		case 5: {
			struct ppath fp = F(NULL, "rules"), ip = I(&fp, nr++);
			if (!(rc = want(c, &ip, wt, WT_LEN)) && !(rc = get_len(c, &ip, &r, &v)) &&
			    !(rc = rule(c, &ip, v, &n)))
				rc = seq_push(c, &ip, rules, n);
			break;
		}
		default:
			rc = skip(c, NULL, &r, f, wt);
			break;
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- entry points ---- */

static int begin(struct cv *c, struct zt_arena *a, const char *name, struct zt_config_error *err,
		 size_t len, struct zt_cnode **m)
{
	static struct zt_config_error dummy;
	*c = (struct cv){a, name ? name : "(unnamed)", err ? err : &dummy, 0};
	c->err->msg[0] = 0;
	if (len > ZT_XDSCONV_MAX_BYTES)
		return fail(c, NULL, "resource larger than %u MiB", ZT_XDSCONV_MAX_BYTES >> 20);
	if (!(*m = node_new(c, ZT_CN_MAP)))
		return oom(c);
	return 0;
}

int zt_xdsconv_address(struct zt_arena *a, const char *name, const uint8_t *data, size_t len,
		       enum zt_xds_kind *kind, struct zt_cnode **out, struct zt_config_error *err)
{
	struct cv c;
	struct zt_cnode *m = NULL;
	struct rd r = {data, data + len}, body = {NULL, NULL};
	uint32_t f, which = 0;
	int rc, wt;

	*out = NULL;
	if ((rc = begin(&c, a, name, err, len, &m)))
		return rc;
	/* oneof type {workload = 1, service = 2}: the last one wins. */
	while (r.p < r.end) {
		if ((rc = get_tag(&c, NULL, &r, &f, &wt)))
			return rc;
		if (f == 1 || f == 2) {
			struct ppath fp = F(NULL, f == 1 ? "workload" : "service");
			if ((rc = want(&c, &fp, wt, WT_LEN)) || (rc = get_len(&c, &fp, &r, &body)))
				return rc;
			which = f;
		} else if ((rc = skip(&c, NULL, &r, f, wt))) {
			return rc;
		}
	}
	if (!which)
		return fail(&c, NULL, "Address has neither workload nor service");
	struct ppath top = F(NULL, which == 1 ? "workload" : "service");
	if (which == 2) {
		if ((rc = service(&c, &top, body, m)))
			return rc;
		*kind = ZT_XDS_SERVICE;
	} else {
		if ((rc = workload(&c, &top, body, m)))
			return rc;
		bool has_uid = false;
		for (uint32_t i = 0; i < m->n; i++)
			if (!strcmp(m->pairs[i].key->text, "uid") && m->pairs[i].val->len)
				has_uid = true;
		if (!has_uid && (rc = map_set(&c, &top, m, "uid", cstr_node(&c, c.name))))
			return rc;
		*kind = ZT_XDS_WORKLOAD;
	}
	*out = m;
	return 0;
}

int zt_xdsconv_authorization(struct zt_arena *a, const char *name, const uint8_t *data,
			     size_t len, struct zt_cnode **out, struct zt_config_error *err)
{
	struct cv c;
	struct zt_cnode *m = NULL;
	int rc;

	*out = NULL;
	if ((rc = begin(&c, a, name, err, len, &m)))
		return rc;
	if ((rc = authorization(&c, (struct rd){data, data + len}, m)))
		return rc;
	*out = m;
	return 0;
}
