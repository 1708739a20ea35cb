/* config.c - ztunnel's local config (LOCAL_XDS_PATH) into a snapshot.
 *
 * Control thread only. The input (YAML or JSON) becomes a generic tree
 * (cfgtree.h); this file validates that tree against ztunnel's LocalConfig
 * schema (camelCase keys, unknown keys rejected) and fills a snapshot whose
 * strings and arrays all live in the snapshot's arena. The first problem found,
 * in document order, is reported as "<file>: <key path>: <reason>".
 *
 * Differences from ztunnel's serde, all in the lenient direction: fields
 * ztunnel requires but that have an obvious empty value may be left out (a
 * workload's workloadIps and services, a service's vips and ports, an
 * endpoint's port and status, the fields of locality and loadBalancer, a
 * policy's dryRun); null counts as absent; trustDomain / serviceAccount /
 * clusterId get the defaults ztunnel gives xDS workloads ("cluster.local",
 * "default", "Kubernetes") where its local config would leave them empty;
 * CIDRs may be bare IPs. Also stricter: unknown keys are rejected everywhere
 * (ztunnel lets them pass inside locality and policy matches), and so are
 * duplicate uids, services, VIPs and policies, which ztunnel would overwrite.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/strfmt.h"
#include "xds/arena.h"
#include "xds/cfgtree.h"
#include "xds/snapshot-int.h"
#include "xds/xdsconv.h"

/* ---- key paths and error messages ---- */

/* One step of the path to the value being checked; lives on the C stack. */
struct path {
	const struct path *up;
	char kind;     /* 'f' field, 'i' index, 'k' string key, 'p' port key */
	const char *s; /* field name, key */
	size_t i;      /* index */
};

#define P_FIELD(u, name) ((struct path){(u), 'f', (name), 0})
#define P_INDEX(u, idx) ((struct path){(u), 'i', NULL, (idx)})
#define P_KEY(u, key) ((struct path){(u), 'k', (key), 0})
#define P_PORT(u, key) ((struct path){(u), 'p', (key), 0})

struct ctx {
	const char *name;            /* file name for messages */
	struct zt_config_error *err;
	struct zt_arena *a;          /* the snapshot's arena */
	struct zt_arena *t;          /* scratch, freed after the build */
	struct zt_config_where *where; /* element an error is in, or NULL */
};

/* "\"text\"" with control bytes escaped, cut after 64 bytes (on a UTF-8
 * boundary) with "...". */
static const char *quote(char *out, size_t cap, const char *s, size_t len)
{
	size_t off = 0, lim = len > 64 ? 64 : len;
	while (lim < len && lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80)
		lim--;
	zt_appendf(out, cap, &off, "\"");
	for (size_t i = 0; i < lim; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			zt_appendf(out, cap, &off, "\\%c", ch);
		else if (ch == '\n')
			zt_appendf(out, cap, &off, "\\n");
		else if (ch == '\t')
			zt_appendf(out, cap, &off, "\\t");
		else if (ch < 0x20 || ch == 0x7f)
			zt_appendf(out, cap, &off, "\\x%02x", ch);
		else
			zt_appendf(out, cap, &off, "%c", ch);
	}
	zt_appendf(out, cap, &off, lim < len ? "\"..." : "\"");
	return out;
}

static void format_path(char *buf, size_t cap, size_t *off, const struct path *p)
{
	char q[300];
	if (!p)
		return;
	format_path(buf, cap, off, p->up);
	switch (p->kind) {
	case 'f':
		zt_appendf(buf, cap, off, "%s%s", *off ? "." : "", p->s);
		break;
	case 'i':
		zt_appendf(buf, cap, off, "[%zu]", p->i);
		break;
	case 'k':
		zt_appendf(buf, cap, off, "[%s]", quote(q, sizeof(q), p->s, strlen(p->s)));
		break;
	default:
		zt_appendf(buf, cap, off, "[%s]", p->s);
		break;
	}
}

static int fail(struct ctx *c, const struct path *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record which top-level element (workloads[i], services[i], policies[i])
 * the path `p` is in, for zt_config_build_*'s callers. */
static void note_where(struct ctx *c, const struct path *p)
{
	const struct path *elem = NULL;
	if (!c->where)
		return;
	*c->where = (struct zt_config_where){ZT_CFG_AT_NONE, 0};
	for (; p && p->up; p = p->up)
		elem = p;
	if (!p || !elem || p->kind != 'f' || elem->kind != 'i')
		return;
	if (!strcmp(p->s, "workloads"))
		c->where->section = ZT_CFG_AT_WORKLOADS;
	else if (!strcmp(p->s, "services"))
		c->where->section = ZT_CFG_AT_SERVICES;
	else if (!strcmp(p->s, "policies"))
		c->where->section = ZT_CFG_AT_POLICIES;
	c->where->index = elem->i;
}

static int fail(struct ctx *c, const struct path *p, const char *fmt, ...)
{
	char path[320], reason[400];
	size_t off = 0;
	note_where(c, p);
	path[0] = 0;
	format_path(path, sizeof(path), &off, p);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	size_t m = 0;
	c->err->msg[0] = 0;
	if (off)
		zt_appendf(c->err->msg, sizeof(c->err->msg), &m, "%s: %s: %s", c->name, path, reason);
	else
		zt_appendf(c->err->msg, sizeof(c->err->msg), &m, "%s: %s", c->name, reason);
	return -EINVAL;
}

static int oom(struct ctx *c)
{
	if (c->where)
		*c->where = (struct zt_config_where){ZT_CFG_AT_NONE, 0};
	snprintf(c->err->msg, sizeof(c->err->msg), "%s: out of memory", c->name);
	return -ENOMEM;
}

/* ---- typed access to tree nodes ---- */

static bool absent(const struct zt_cnode *n)
{
	return !n || n->kind == ZT_CN_NULL;
}

static int type_err(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		    const char *expected)
{
	return fail(c, p, "expected %s, got %s", expected, zt_cnode_kind_desc(n));
}

static int no_tag(struct ctx *c, const struct path *p, const struct zt_cnode *n)
{
	if (n && n->tag)
		return fail(c, p, "unexpected YAML tag %s", n->tag);
	return 0;
}

/* A string, or a YAML plain scalar read as one (name: 1.0). Not copied. */
static int str_view(struct ctx *c, const struct path *p, const struct zt_cnode *n, const char **out)
{
	int r;
	if ((r = no_tag(c, p, n)))
		return r;
	if (!n || !(n->kind == ZT_CN_STR || (n->plain && n->kind != ZT_CN_NULL)))
		return type_err(c, p, n, "a string");
	if (strlen(n->text) != n->len)
		return fail(c, p, "string contains a NUL character");
	*out = n->text;
	return 0;
}

static int get_str(struct ctx *c, const struct path *p, const struct zt_cnode *n, const char **out)
{
	const char *v = NULL;
	int r = str_view(c, p, n, &v);
	if (r)
		return r;
	*out = zt_arena_strndup(c->a, v, n->len);
	return *out ? 0 : oom(c);
}

/* Optional string: absent/null leaves *out as it is. */
static int opt_str(struct ctx *c, const struct path *p, const struct zt_cnode *n, const char **out)
{
	return absent(n) ? 0 : get_str(c, p, n, out);
}

static int opt_bool(struct ctx *c, const struct path *p, const struct zt_cnode *n, bool *out)
{
	int r;
	if (absent(n))
		return 0;
	if ((r = no_tag(c, p, n)))
		return r;
	if (n->kind != ZT_CN_BOOL)
		return type_err(c, p, n, "a boolean");
	*out = n->b;
	return 0;
}

static int get_int(struct ctx *c, const struct path *p, const struct zt_cnode *n, int64_t min,
		   int64_t max, int64_t *out)
{
	int r;
	if ((r = no_tag(c, p, n)))
		return r;
	if (!n || n->kind != ZT_CN_INT)
		return type_err(c, p, n, "an integer");
	if (n->overflow || n->i < min || n->i > max)
		return fail(c, p, "%.64s is out of range (%" PRId64 "..%" PRId64 ")", n->text, min, max);
	*out = n->i;
	return 0;
}

static int get_port(struct ctx *c, const struct path *p, const struct zt_cnode *n, uint16_t *out)
{
	int64_t v = 0;
	int r = get_int(c, p, n, 1, 65535, &v);
	if (!r)
		*out = (uint16_t)v;
	return r;
}

static int expect(struct ctx *c, const struct path *p, const struct zt_cnode *n, int kind)
{
	int r;
	if ((r = no_tag(c, p, n)))
		return r;
	if (!n || n->kind != kind)
		return type_err(c, p, n, kind == ZT_CN_MAP ? "a mapping" : "a sequence");
	return 0;
}

/* A sequence, or absent/null as an empty one: returns its length in *n_out. */
static int opt_seq(struct ctx *c, const struct path *p, const struct zt_cnode *n, size_t *n_out)
{
	*n_out = 0;
	if (absent(n))
		return 0;
	int r = expect(c, p, n, ZT_CN_SEQ);
	if (!r)
		*n_out = n->n;
	return r;
}

static int opt_map(struct ctx *c, const struct path *p, const struct zt_cnode *n, size_t *n_out)
{
	*n_out = 0;
	if (absent(n))
		return 0;
	int r = expect(c, p, n, ZT_CN_MAP);
	if (!r)
		*n_out = n->n;
	return r;
}

/* Array of `n` zeroed elements in the snapshot arena (n may be 0). */
static void *alloc_array(struct ctx *c, size_t n, size_t size)
{
	return zt_arena_calloc(c->a, n ? n : 1, size);
}

/* Names for "expected A, B or C". */
static void join_names(char *buf, size_t cap, const char *const *names)
{
	size_t off = 0, n = 0;
	while (names[n])
		n++;
	for (size_t i = 0; i < n; i++)
		zt_appendf(buf, cap, &off, "%s%s", i == 0 ? "" : (i + 1 == n ? " or " : ", "), names[i]);
}

static int get_enum(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		    const char *const *names, int *out)
{
	const char *v = NULL;
	int r = str_view(c, p, n, &v);
	if (r)
		return r;
	for (int i = 0; names[i]; i++)
		if (!strcmp(v, names[i])) {
			*out = i;
			return 0;
		}
	char q[300], list[200];
	join_names(list, sizeof(list), names);
	return fail(c, p, "%s is not one of %s", quote(q, sizeof(q), v, n->len), list);
}

/* Enum spellings: serde's variant names in ztunnel, in our enums' order. */
static const char *const protocol_names[] = {"TCP", "HBONE", NULL};
static const char *const health_names[] = {"Healthy", "Unhealthy", NULL};
static const char *const netmode_names[] = {"Standard", "HostNetwork", NULL};
static const char *const apptun_names[] = {"NONE", "PROXY", NULL};
static const char *const lb_mode_names[] = {"Standard", "Strict", "Failover", "Passthrough", NULL};
static const char *const lb_health_names[] = {"OnlyHealthy", "AllowAll", NULL};
static const char *const lb_scope_names[] = {"Region", "Zone", "Subzone", "Node",
					     "Cluster", "Network", NULL};
static const char *const ipf_names[] = {"Dual", "IPv4", "IPv6", NULL};
static const char *const authz_scope_names[] = {"Global", "Namespace", "WorkloadSelector", NULL};
static const char *const authz_action_names[] = {"Allow", "Deny", NULL};

#define UNKNOWN_FIELD(c, fp) fail((c), (fp), "unknown field")

static int missing(struct ctx *c, const struct path *p, const char *field)
{
	return fail(c, p, "missing field \"%s\"", field);
}

/* ---- addresses ---- */

static int get_ip(struct ctx *c, const struct path *p, const struct zt_cnode *n, struct zt_ip *out)
{
	const char *v = NULL;
	char q[300];
	int r = str_view(c, p, n, &v);
	if (r)
		return r;
	if (zt_ip_parse(v, out))
		return fail(c, p, "%s is not an IP address", quote(q, sizeof(q), v, n->len));
	return 0;
}

/* "network/ip" (ztunnel's NetworkAddress); the network may be empty. */
static bool parse_netaddr(struct ctx *c, const char *v, struct zt_netaddr *out, int *rc)
{
	const char *slash = strchr(v, '/');
	*rc = 0;
	if (!slash || zt_ip_parse(slash + 1, &out->ip))
		return false;
	out->network = zt_arena_strndup(c->a, v, (size_t)(slash - v));
	if (!out->network)
		*rc = oom(c);
	return true;
}

static int get_netaddr(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		       struct zt_netaddr *out)
{
	const char *v = NULL;
	char q[300];
	int r = str_view(c, p, n, &v);
	if (r)
		return r;
	if (!parse_netaddr(c, v, out, &r))
		return fail(c, p, "%s is not a network address (\"network/IP\")",
			    quote(q, sizeof(q), v, n->len));
	return r;
}

/* "namespace/hostname" split at the first '/'. */
static bool parse_nshost(struct ctx *c, const char *v, const char **ns, const char **host, int *rc)
{
	const char *slash = strchr(v, '/');
	*rc = 0;
	if (!slash)
		return false;
	*ns = zt_arena_strndup(c->a, v, (size_t)(slash - v));
	*host = zt_arena_strdup(c->a, slash + 1);
	if (!*ns || !*host)
		*rc = oom(c);
	return true;
}

/* "ip/len" or a bare IP (full length). */
static int get_cidr(struct ctx *c, const struct path *p, const struct zt_cnode *n, struct zt_cidr *out)
{
	const char *v = NULL;
	char q[300], ip[64];
	int r = str_view(c, p, n, &v);
	if (r)
		return r;
	const char *slash = strchr(v, '/');
	size_t iplen = slash ? (size_t)(slash - v) : strlen(v);
	unsigned long len = 0;
	bool ok = iplen < sizeof(ip);
	if (ok) {
		memcpy(ip, v, iplen);
		ip[iplen] = 0;
		ok = !zt_ip_parse(ip, &out->ip);
	}
	if (ok && slash) {
		const char *d = slash + 1;
		ok = *d && strlen(d) <= 3 && strspn(d, "0123456789") == strlen(d);
		if (ok)
			len = strtoul(d, NULL, 10);
	} else if (ok) {
		len = out->ip.family == AF_INET ? 32 : 128;
	}
	if (ok && len > (out->ip.family == AF_INET ? 32u : 128u))
		ok = false;
	if (!ok)
		return fail(c, p, "%s is not an IP address or CIDR", quote(q, sizeof(q), v, n->len));
	out->len = (uint8_t)len;
	return 0;
}

/* ---- port maps {servicePort: targetPort} ---- */

static int get_port_key(struct ctx *c, const struct path *p, const struct zt_cnode *k, uint16_t *out)
{
	char q[300];
	int64_t v = -1;
	if (k->kind == ZT_CN_INT && !k->overflow) {
		v = k->i;
	} else if (k->len > 0 && k->len <= 6 && strspn(k->text, "0123456789") == k->len) {
		v = strtol(k->text, NULL, 10);
	} else if (k->kind == ZT_CN_INT) {
		v = 65536; /* overflowed: out of range */
	} else {
		return fail(c, p, "%s is not a port number", quote(q, sizeof(q), k->text, k->len));
	}
	if (v < 1 || v > 65535)
		return fail(c, p, "port %.64s is out of range (1..65535)", k->text);
	*out = (uint16_t)v;
	return 0;
}

/* Target port 0 is allowed: ztunnel's "named port, not resolved". */
static int get_port_map(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			struct zt_port_map **out, size_t *n_out)
{
	size_t cnt;
	int r = opt_map(c, p, n, &cnt);
	if (r)
		return r;
	*out = alloc_array(c, cnt, sizeof(**out));
	if (!*out)
		return oom(c);
	*n_out = cnt;
	if (!cnt)
		return 0;
	/* Keys like 80 and "080" are equal as ports: small maps compare with the
	 * entries before, big ones use a bitmap of all ports. */
	uint8_t *seen = NULL;
	if (cnt > 16 && !(seen = zt_arena_calloc(c->t, 65536 / 8, 1)))
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		const struct zt_cpair *kv = &n->pairs[i];
		struct path kp = P_PORT(p, kv->key->text);
		uint16_t sp = 0;
		int64_t tp = 0;
		bool dup = false;
		if ((r = get_port_key(c, p, kv->key, &sp)))
			return r;
		if (seen) {
			dup = seen[sp / 8] & (1u << (sp % 8));
			seen[sp / 8] |= (uint8_t)(1u << (sp % 8));
		} else {
			for (size_t k = 0; k < i && !dup; k++)
				dup = (*out)[k].service_port == sp;
		}
		if (dup)
			return fail(c, p, "duplicate port %u", sp);
		if ((r = get_int(c, &kp, kv->val, 0, 65535, &tp)))
			return r;
		(*out)[i] = (struct zt_port_map){sp, (uint16_t)tp};
	}
	return 0;
}

/* ---- shared sub-objects ---- */

static int get_str_list(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			const char ***out, size_t *n_out)
{
	size_t cnt;
	int r = opt_seq(c, p, n, &cnt);
	if (r)
		return r;
	*out = alloc_array(c, cnt, sizeof(**out));
	if (!*out)
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		struct path ip = P_INDEX(p, i);
		if ((r = get_str(c, &ip, n->items[i], &(*out)[i])))
			return r;
	}
	*n_out = cnt;
	return 0;
}

/* GatewayAddress {destination: "network/IP" | "namespace/hostname", hboneMtlsPort}. */
static int get_gateway(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		       struct zt_gateway *gw)
{
	bool have_dest = false, have_port = false;
	int r;
	if (absent(n))
		return 0;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "destination")) {
			const char *s = NULL;
			char q[300];
			if ((r = str_view(c, &fp, v, &s)))
				return r;
			if (parse_netaddr(c, s, &gw->address, &r)) {
				gw->kind = ZT_GW_ADDRESS;
			} else if (!r && parse_nshost(c, s, &gw->namespace_, &gw->hostname, &r)) {
				gw->kind = ZT_GW_HOSTNAME;
			} else if (!r) {
				return fail(c, &fp,
					    "%s is neither a network address (\"network/IP\") nor a "
					    "namespaced hostname (\"namespace/hostname\")",
					    quote(q, sizeof(q), s, v->len));
			}
			if (r)
				return r;
			have_dest = true;
		} else if (!strcmp(key, "hboneMtlsPort")) {
			if ((r = get_port(c, &fp, v, &gw->hbone_mtls_port)))
				return r;
			have_port = true;
		} else {
			return UNKNOWN_FIELD(c, &fp);
		}
	}
	if (!have_dest)
		return missing(c, p, "destination");
	if (!have_port)
		return missing(c, p, "hboneMtlsPort");
	if (gw->kind != ZT_GW_ADDRESS)
		gw->address.network = "";
	if (gw->kind != ZT_GW_HOSTNAME)
		gw->namespace_ = gw->hostname = "";
	return 0;
}

static int get_app_tunnel(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			  struct zt_app_tunnel *t)
{
	bool have_proto = false;
	int r, e;
	if (absent(n))
		return 0;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "protocol")) {
			if ((r = get_enum(c, &fp, v, apptun_names, &e)))
				return r;
			t->protocol = (enum zt_app_tunnel_proto)e;
			have_proto = true;
		} else if (!strcmp(key, "port")) {
			if (!absent(v) && (r = get_port(c, &fp, v, &t->port)))
				return r;
		} else {
			return UNKNOWN_FIELD(c, &fp);
		}
	}
	if (!have_proto)
		return missing(c, p, "protocol");
	t->present = true;
	return 0;
}

static int get_locality(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			struct zt_locality *l)
{
	int r;
	if (absent(n))
		return 0;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "region"))
			r = opt_str(c, &fp, v, &l->region);
		else if (!strcmp(key, "zone"))
			r = opt_str(c, &fp, v, &l->zone);
		else if (!strcmp(key, "subzone"))
			r = opt_str(c, &fp, v, &l->subzone);
		else
			r = UNKNOWN_FIELD(c, &fp);
		if (r)
			return r;
	}
	return 0;
}

/* ---- workloads ---- */

/* What a workload's `services` map says, kept until endpoints are built. */
struct wl_extra {
	struct zt_port_map **ports; /* per services[k] */
	size_t *n_ports;
};

static int get_wl_services(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			   struct zt_workload *w, struct wl_extra *x)
{
	size_t cnt;
	int r = opt_map(c, p, n, &cnt);
	if (r)
		return r;
	w->services = alloc_array(c, cnt, sizeof(*w->services));
	x->ports = zt_arena_calloc(c->t, cnt ? cnt : 1, sizeof(*x->ports));
	x->n_ports = zt_arena_calloc(c->t, cnt ? cnt : 1, sizeof(*x->n_ports));
	if (!w->services || !x->ports || !x->n_ports)
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		const struct zt_cnode *k = n->pairs[i].key;
		struct path kp = P_KEY(p, k->text);
		const char *ns, *host;
		char q[300];
		if (strlen(k->text) != k->len)
			return fail(c, p, "key contains a NUL character");
		if (!parse_nshost(c, k->text, &ns, &host, &r)) {
			return fail(c, p, "%s is not a namespaced hostname (\"namespace/hostname\")",
				    quote(q, sizeof(q), k->text, k->len));
		}
		if (r)
			return r;
		if (!(w->services[i] = zt_arena_strndup(c->a, k->text, k->len)))
			return oom(c);
		if ((r = get_port_map(c, &kp, n->pairs[i].val, &x->ports[i], &x->n_ports[i])))
			return r;
	}
	w->n_services = cnt;
	return 0;
}

static int get_workload(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			struct zt_workload *w, struct wl_extra *x)
{
	bool have_ns = false;
	int r = 0, e;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	*w = (struct zt_workload){
		.uid = "", .name = "", .namespace_ = "", .service_account = "default",
		.trust_domain = "cluster.local", .node = "", .network = "",
		.cluster_id = "Kubernetes", .hostname = "", .workload_name = "",
		.workload_type = "", .canonical_name = "", .canonical_revision = "",
		.capacity = 1, .locality = {"", "", ""},
		.waypoint = {.address = {.network = ""}, .namespace_ = "", .hostname = ""},
		.network_gateway = {.address = {.network = ""}, .namespace_ = "", .hostname = ""},
	};
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "workloadIps")) {
			size_t cnt;
			if ((r = opt_seq(c, &fp, v, &cnt)))
				return r;
			if (!(w->ips = alloc_array(c, cnt, sizeof(*w->ips))))
				return oom(c);
			for (size_t k = 0; k < cnt; k++) {
				struct path ip = P_INDEX(&fp, k);
				if ((r = get_ip(c, &ip, v->items[k], &w->ips[k])))
					return r;
			}
			w->n_ips = cnt;
		} else if (!strcmp(key, "waypoint")) {
			r = get_gateway(c, &fp, v, &w->waypoint);
		} else if (!strcmp(key, "networkGateway")) {
			r = get_gateway(c, &fp, v, &w->network_gateway);
		} else if (!strcmp(key, "protocol")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, protocol_names, &e)))
				w->protocol = (enum zt_protocol)e;
		} else if (!strcmp(key, "networkMode")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, netmode_names, &e)))
				w->network_mode = (enum zt_network_mode)e;
		} else if (!strcmp(key, "uid")) {
			r = opt_str(c, &fp, v, &w->uid);
		} else if (!strcmp(key, "name")) {
			r = opt_str(c, &fp, v, &w->name);
		} else if (!strcmp(key, "namespace")) {
			r = get_str(c, &fp, v, &w->namespace_);
			have_ns = true;
		} else if (!strcmp(key, "trustDomain")) {
			r = opt_str(c, &fp, v, &w->trust_domain);
		} else if (!strcmp(key, "serviceAccount")) {
			r = opt_str(c, &fp, v, &w->service_account);
		} else if (!strcmp(key, "network")) {
			r = opt_str(c, &fp, v, &w->network);
		} else if (!strcmp(key, "workloadName")) {
			r = opt_str(c, &fp, v, &w->workload_name);
		} else if (!strcmp(key, "workloadType")) {
			r = opt_str(c, &fp, v, &w->workload_type);
		} else if (!strcmp(key, "canonicalName")) {
			r = opt_str(c, &fp, v, &w->canonical_name);
		} else if (!strcmp(key, "canonicalRevision")) {
			r = opt_str(c, &fp, v, &w->canonical_revision);
		} else if (!strcmp(key, "hostname")) {
			r = opt_str(c, &fp, v, &w->hostname);
		} else if (!strcmp(key, "node")) {
			r = opt_str(c, &fp, v, &w->node);
		} else if (!strcmp(key, "nativeTunnel")) {
			r = opt_bool(c, &fp, v, &w->native_tunnel);
		} else if (!strcmp(key, "applicationTunnel")) {
			r = get_app_tunnel(c, &fp, v, &w->application_tunnel);
		} else if (!strcmp(key, "authorizationPolicies")) {
			r = get_str_list(c, &fp, v, &w->authorization_policies,
					 &w->n_authorization_policies);
		} else if (!strcmp(key, "status")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, health_names, &e)))
				w->status = (enum zt_health)e;
		} else if (!strcmp(key, "clusterId")) {
			r = opt_str(c, &fp, v, &w->cluster_id);
		} else if (!strcmp(key, "locality")) {
			r = get_locality(c, &fp, v, &w->locality);
		} else if (!strcmp(key, "capacity")) {
			int64_t cap = 0;
			if (!absent(v) && !(r = get_int(c, &fp, v, 0, UINT32_MAX, &cap)))
				w->capacity = (uint32_t)cap;
		} else if (!strcmp(key, "services")) {
			r = get_wl_services(c, &fp, v, w, x);
		} else {
			r = UNKNOWN_FIELD(c, &fp);
		}
		if (r)
			return r;
	}
	if (!have_ns)
		return missing(c, p, "namespace");
	if (!w->ips && !(w->ips = alloc_array(c, 0, sizeof(*w->ips))))
		return oom(c);
	if (!w->authorization_policies &&
	    !(w->authorization_policies = alloc_array(c, 0, sizeof(char *))))
		return oom(c);
	if (!w->services && !(w->services = alloc_array(c, 0, sizeof(char *))))
		return oom(c);
	return 0;
}

/* ---- services ---- */

/* An explicit entry of a service's `endpoints` map, resolved after indexing. */
struct ep_extra {
	const char *key;          /* the map key, for messages */
	const char *workload_uid;
	struct zt_port_map *ports;
	size_t n_ports;
	enum zt_health status;
};

struct svc_extra {
	struct ep_extra *eps;
	size_t n_eps;
};

static int get_endpoint(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			struct ep_extra *ep)
{
	bool have_uid = false;
	int r, e;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "workloadUid")) {
			r = get_str(c, &fp, v, &ep->workload_uid);
			have_uid = true;
		} else if (!strcmp(key, "port")) {
			r = get_port_map(c, &fp, v, &ep->ports, &ep->n_ports);
		} else if (!strcmp(key, "status")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, health_names, &e)))
				ep->status = (enum zt_health)e;
		} else {
			r = UNKNOWN_FIELD(c, &fp);
		}
		if (r)
			return r;
	}
	if (!have_uid)
		return missing(c, p, "workloadUid");
	if (!ep->ports && !(ep->ports = alloc_array(c, 0, sizeof(*ep->ports))))
		return oom(c);
	return 0;
}

static int get_load_balancer(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			     struct zt_service *s)
{
	int r, e;
	if (absent(n))
		return 0;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "routingPreferences")) {
			size_t cnt;
			if ((r = opt_seq(c, &fp, v, &cnt)))
				return r;
			s->routing_preferences = alloc_array(c, cnt, sizeof(*s->routing_preferences));
			if (!s->routing_preferences)
				return oom(c);
			for (size_t k = 0; k < cnt; k++) {
				struct path ip = P_INDEX(&fp, k);
				if ((r = get_enum(c, &ip, v->items[k], lb_scope_names, &e)))
					return r;
				s->routing_preferences[k] = (enum zt_lb_scope)e;
			}
			s->n_routing_preferences = cnt;
		} else if (!strcmp(key, "mode")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, lb_mode_names, &e)))
				s->lb_mode = (enum zt_lb_mode)e;
		} else if (!strcmp(key, "healthPolicy")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, lb_health_names, &e)))
				s->lb_health = (enum zt_lb_health)e;
		} else {
			r = UNKNOWN_FIELD(c, &fp);
		}
		if (r)
			return r;
	}
	s->has_load_balancer = true;
	return 0;
}

static int get_service(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		       struct zt_service *s, struct svc_extra *x)
{
	bool have_name = false, have_ns = false, have_host = false;
	int r = 0, e;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	*s = (struct zt_service){
		.name = "", .namespace_ = "", .hostname = "",
		.waypoint = {.address = {.network = ""}, .namespace_ = "", .hostname = ""},
	};
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "name")) {
			r = get_str(c, &fp, v, &s->name);
			have_name = true;
		} else if (!strcmp(key, "namespace")) {
			r = get_str(c, &fp, v, &s->namespace_);
			have_ns = true;
		} else if (!strcmp(key, "hostname")) {
			r = get_str(c, &fp, v, &s->hostname);
			have_host = true;
		} else if (!strcmp(key, "vips")) {
			size_t cnt;
			if ((r = opt_seq(c, &fp, v, &cnt)))
				return r;
			if (!(s->vips = alloc_array(c, cnt, sizeof(*s->vips))))
				return oom(c);
			for (size_t k = 0; k < cnt; k++) {
				struct path ip = P_INDEX(&fp, k);
				if ((r = get_netaddr(c, &ip, v->items[k], &s->vips[k])))
					return r;
			}
			s->n_vips = cnt;
		} else if (!strcmp(key, "ports")) {
			r = get_port_map(c, &fp, v, &s->ports, &s->n_ports);
		} else if (!strcmp(key, "endpoints")) {
			size_t cnt;
			if ((r = opt_map(c, &fp, v, &cnt)))
				return r;
			if (!(x->eps = zt_arena_calloc(c->t, cnt ? cnt : 1, sizeof(*x->eps))))
				return oom(c);
			for (size_t k = 0; k < cnt; k++) {
				const struct zt_cnode *kn = v->pairs[k].key;
				struct path kp = P_KEY(&fp, kn->text);
				x->eps[k].key = kn->text;
				if ((r = get_endpoint(c, &kp, v->pairs[k].val, &x->eps[k])))
					return r;
			}
			x->n_eps = cnt;
		} else if (!strcmp(key, "subjectAltNames")) {
			r = get_str_list(c, &fp, v, &s->subject_alt_names, &s->n_subject_alt_names);
		} else if (!strcmp(key, "waypoint")) {
			r = get_gateway(c, &fp, v, &s->waypoint);
		} else if (!strcmp(key, "loadBalancer")) {
			r = get_load_balancer(c, &fp, v, s);
		} else if (!strcmp(key, "ipFamilies")) {
			if (!absent(v) && !(r = get_enum(c, &fp, v, ipf_names, &e)))
				s->ip_families = (enum zt_ip_families)(e + 1);
		} else if (!strcmp(key, "canonical")) {
			r = opt_bool(c, &fp, v, &s->canonical);
		} else {
			r = UNKNOWN_FIELD(c, &fp);
		}
		if (r)
			return r;
	}
	if (!have_name)
		return missing(c, p, "name");
	if (!have_ns)
		return missing(c, p, "namespace");
	if (!have_host)
		return missing(c, p, "hostname");
	if ((!s->vips && !(s->vips = alloc_array(c, 0, sizeof(*s->vips)))) ||
	    (!s->ports && !(s->ports = alloc_array(c, 0, sizeof(*s->ports)))) ||
	    (!s->subject_alt_names && !(s->subject_alt_names = alloc_array(c, 0, sizeof(char *)))) ||
	    (!s->routing_preferences &&
	     !(s->routing_preferences = alloc_array(c, 0, sizeof(*s->routing_preferences)))))
		return oom(c);
	return 0;
}

/* ---- authorization policies (ztunnel's Authorization serde form) ---- */

/* {Exact|Prefix|Suffix: "s"}, {Presence: []}, or YAML-tagged !Exact s. */
static int get_strmatch(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			struct zt_strmatch *m)
{
	static const char *const kinds[] = {"Exact", "Prefix", "Suffix", "Presence", NULL};
	const char *kind;
	const struct zt_cnode *v;
	struct path vp = *p;

	if (n && n->tag) {
		kind = n->tag + (n->tag[0] == '!');
		v = n;
	} else if (n && n->kind == ZT_CN_MAP && n->n == 1) {
		kind = n->pairs[0].key->text;
		v = n->pairs[0].val;
		vp = P_FIELD(p, kind);
	} else {
		return fail(c, p,
			    "expected a string match ({Exact|Prefix|Suffix: string} or "
			    "{Presence: []}), got %s",
			    zt_cnode_kind_desc(n));
	}
	int k = 0;
	while (kinds[k] && strcmp(kinds[k], kind))
		k++;
	if (!kinds[k]) {
		char q[300];
		return fail(c, p, "%s is not one of Exact, Prefix, Suffix or Presence",
			    quote(q, sizeof(q), kind, strlen(kind)));
	}
	m->kind = k == 0 ? ZT_SM_EXACT : k == 1 ? ZT_SM_PREFIX : k == 2 ? ZT_SM_SUFFIX : ZT_SM_PRESENCE;
	if (m->kind == ZT_SM_PRESENCE) {
		if (!absent(v) && !((v->kind == ZT_CN_SEQ || v->kind == ZT_CN_MAP) && v->n == 0))
			return fail(c, &vp, "Presence takes no value (use [])");
		m->value = "";
		return 0;
	}
	if (v == n) { /* tagged scalar: read its text despite the tag */
		struct zt_cnode plain = *n;
		plain.tag = NULL;
		return get_str(c, &vp, &plain, &m->value);
	}
	return get_str(c, &vp, v, &m->value);
}

static int get_strmatch_list(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			     struct zt_strmatch **out, size_t *n_out)
{
	size_t cnt;
	int r = opt_seq(c, p, n, &cnt);
	if (r)
		return r;
	if (!(*out = alloc_array(c, cnt, sizeof(**out))))
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		struct path ip = P_INDEX(p, i);
		if ((r = get_strmatch(c, &ip, n->items[i], &(*out)[i])))
			return r;
	}
	*n_out = cnt;
	return 0;
}

/* ServiceAccountMatch {namespace, serviceAccount} as Exact "namespace/sa". */
static int get_sa_match(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			struct zt_strmatch *m)
{
	const char *ns = NULL, *sa = NULL;
	int r;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "namespace"))
			r = str_view(c, &fp, n->pairs[i].val, &ns);
		else if (!strcmp(key, "serviceAccount"))
			r = str_view(c, &fp, n->pairs[i].val, &sa);
		else
			r = UNKNOWN_FIELD(c, &fp);
		if (r)
			return r;
	}
	if (!ns)
		return missing(c, p, "namespace");
	if (!sa)
		return missing(c, p, "serviceAccount");
	size_t l1 = strlen(ns), l2 = strlen(sa);
	char *v = zt_arena_alloc(c->a, l1 + l2 + 2);
	if (!v)
		return oom(c);
	memcpy(v, ns, l1);
	v[l1] = '/';
	memcpy(v + l1 + 1, sa, l2 + 1);
	*m = (struct zt_strmatch){ZT_SM_EXACT, v};
	return 0;
}

static int get_sa_list(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		       struct zt_strmatch **out, size_t *n_out)
{
	size_t cnt;
	int r = opt_seq(c, p, n, &cnt);
	if (r)
		return r;
	if (!(*out = alloc_array(c, cnt, sizeof(**out))))
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		struct path ip = P_INDEX(p, i);
		if ((r = get_sa_match(c, &ip, n->items[i], &(*out)[i])))
			return r;
	}
	*n_out = cnt;
	return 0;
}

static int get_cidr_list(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			 struct zt_cidr **out, size_t *n_out)
{
	size_t cnt;
	int r = opt_seq(c, p, n, &cnt);
	if (r)
		return r;
	if (!(*out = alloc_array(c, cnt, sizeof(**out))))
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		struct path ip = P_INDEX(p, i);
		if ((r = get_cidr(c, &ip, n->items[i], &(*out)[i])))
			return r;
	}
	*n_out = cnt;
	return 0;
}

static int get_port_list(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			 uint16_t **out, size_t *n_out)
{
	size_t cnt;
	int r = opt_seq(c, p, n, &cnt);
	if (r)
		return r;
	if (!(*out = alloc_array(c, cnt, sizeof(**out))))
		return oom(c);
	for (size_t i = 0; i < cnt; i++) {
		struct path ip = P_INDEX(p, i);
		if ((r = get_port(c, &ip, n->items[i], &(*out)[i])))
			return r;
	}
	*n_out = cnt;
	return 0;
}

static int get_authz_match(struct ctx *c, const struct path *p, const struct zt_cnode *n,
			   struct zt_authz_match *m)
{
	int r;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "namespaces"))
			r = get_strmatch_list(c, &fp, v, &m->namespaces, &m->n_namespaces);
		else if (!strcmp(key, "notNamespaces"))
			r = get_strmatch_list(c, &fp, v, &m->not_namespaces, &m->n_not_namespaces);
		else if (!strcmp(key, "principals"))
			r = get_strmatch_list(c, &fp, v, &m->principals, &m->n_principals);
		else if (!strcmp(key, "notPrincipals"))
			r = get_strmatch_list(c, &fp, v, &m->not_principals, &m->n_not_principals);
		else if (!strcmp(key, "serviceAccounts"))
			r = get_sa_list(c, &fp, v, &m->service_accounts, &m->n_service_accounts);
		else if (!strcmp(key, "notServiceAccounts"))
			r = get_sa_list(c, &fp, v, &m->not_service_accounts,
					&m->n_not_service_accounts);
		else if (!strcmp(key, "sourceIps"))
			r = get_cidr_list(c, &fp, v, &m->source_ips, &m->n_source_ips);
		else if (!strcmp(key, "notSourceIps"))
			r = get_cidr_list(c, &fp, v, &m->not_source_ips, &m->n_not_source_ips);
		else if (!strcmp(key, "destinationIps"))
			r = get_cidr_list(c, &fp, v, &m->destination_ips, &m->n_destination_ips);
		else if (!strcmp(key, "notDestinationIps"))
			r = get_cidr_list(c, &fp, v, &m->not_destination_ips,
					  &m->n_not_destination_ips);
		else if (!strcmp(key, "destinationPorts"))
			r = get_port_list(c, &fp, v, &m->destination_ports, &m->n_destination_ports);
		else if (!strcmp(key, "notDestinationPorts"))
			r = get_port_list(c, &fp, v, &m->not_destination_ports,
					  &m->n_not_destination_ports);
		else
			r = UNKNOWN_FIELD(c, &fp);
		if (r)
			return r;
	}
	return 0;
}

/* rules: [[[match, ...] (clause) ...] (rule) ...] */
static int get_rules(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		     struct zt_authz_policy *pol)
{
	size_t nr, nc, nm;
	int r;
	if ((r = opt_seq(c, p, n, &nr)))
		return r;
	if (!(pol->rules = alloc_array(c, nr, sizeof(*pol->rules))))
		return oom(c);
	for (size_t i = 0; i < nr; i++) {
		struct path rp = P_INDEX(p, i);
		struct zt_authz_rule *rule = &pol->rules[i];
		const struct zt_cnode *rn = n->items[i];
		if ((r = expect(c, &rp, rn, ZT_CN_SEQ)))
			return r;
		nc = rn->n;
		if (!(rule->clauses = alloc_array(c, nc, sizeof(*rule->clauses))))
			return oom(c);
		for (size_t j = 0; j < nc; j++) {
			struct path cp = P_INDEX(&rp, j);
			struct zt_authz_clause *cl = &rule->clauses[j];
			const struct zt_cnode *cn = rn->items[j];
			if ((r = expect(c, &cp, cn, ZT_CN_SEQ)))
				return r;
			nm = cn->n;
			if (!(cl->matches = alloc_array(c, nm, sizeof(*cl->matches))))
				return oom(c);
			for (size_t k = 0; k < nm; k++) {
				struct path mp = P_INDEX(&cp, k);
				if ((r = get_authz_match(c, &mp, cn->items[k], &cl->matches[k])))
					return r;
			}
			cl->n_matches = nm;
		}
		rule->n_clauses = nc;
	}
	pol->n_rules = nr;
	return 0;
}

static int get_policy(struct ctx *c, const struct path *p, const struct zt_cnode *n,
		      struct zt_authz_policy *pol)
{
	bool have_name = false, have_ns = false, have_scope = false, have_action = false;
	bool have_rules = false;
	int r, e;
	if ((r = expect(c, p, n, ZT_CN_MAP)))
		return r;
	*pol = (struct zt_authz_policy){.name = "", .namespace_ = ""};
	for (size_t i = 0; i < n->n; i++) {
		const char *key = n->pairs[i].key->text;
		const struct zt_cnode *v = n->pairs[i].val;
		struct path fp = P_FIELD(p, key);
		if (!strcmp(key, "name")) {
			r = get_str(c, &fp, v, &pol->name);
			have_name = true;
		} else if (!strcmp(key, "namespace")) {
			r = get_str(c, &fp, v, &pol->namespace_);
			have_ns = true;
		} else if (!strcmp(key, "scope")) {
			if (!(r = get_enum(c, &fp, v, authz_scope_names, &e)))
				pol->scope = (enum zt_authz_scope)e;
			have_scope = true;
		} else if (!strcmp(key, "action")) {
			if (!(r = get_enum(c, &fp, v, authz_action_names, &e)))
				pol->action = (enum zt_authz_action)e;
			have_action = true;
		} else if (!strcmp(key, "rules")) {
			if (absent(v))
				r = type_err(c, &fp, v, "a sequence");
			else
				r = get_rules(c, &fp, v, pol);
			have_rules = true;
		} else if (!strcmp(key, "dryRun")) {
			r = opt_bool(c, &fp, v, &pol->dry_run);
		} else {
			r = UNKNOWN_FIELD(c, &fp);
		}
		if (r)
			return r;
	}
	if (!have_name)
		return missing(c, p, "name");
	if (!have_ns)
		return missing(c, p, "namespace");
	if (!have_scope)
		return missing(c, p, "scope");
	if (!have_action)
		return missing(c, p, "action");
	if (!have_rules)
		return missing(c, p, "rules");
	return 0;
}

/* ---- endpoints ---- */

/* Temporary table (service, workload) -> endpoint slot for explicit endpoints. */
struct ep_slot {
	const struct zt_service *svc;
	const struct zt_workload *wl;
	struct zt_endpoint *ep;
};

static size_t ep_hash(const struct zt_service *s, const struct zt_workload *w, size_t mask)
{
	uint64_t h = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)w;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (size_t)h & mask;
}

static struct ep_slot *ep_find(struct ep_slot *t, size_t mask, const struct zt_service *s,
			       const struct zt_workload *w)
{
	for (size_t i = ep_hash(s, w, mask);; i = (i + 1) & mask)
		if (!t[i].svc || (t[i].svc == s && t[i].wl == w))
			return &t[i];
}

/* Endpoints: a service's explicit `endpoints` first, then every workload that
 * names the service in its `services` map. A workload entry replaces an
 * explicit one for the same workload (ztunnel inserts workloads' endpoints
 * last). Services not defined are ignored, as ztunnel stages them forever. */
static int build_endpoints(struct ctx *c, struct zt_snapshot *s, struct wl_extra *wx,
			   struct svc_extra *sx)
{
	size_t *count = zt_arena_calloc(c->t, s->n_services ? s->n_services : 1, sizeof(size_t));
	size_t n_explicit = 0;
	if (!count)
		return oom(c);
	for (size_t i = 0; i < s->n_services; i++) {
		count[i] = sx[i].n_eps;
		n_explicit += sx[i].n_eps;
	}
	for (size_t i = 0; i < s->n_workloads; i++)
		for (size_t k = 0; k < s->workloads[i].n_services; k++) {
			const struct zt_service *sv =
				zt_snapshot_service_by_key(s, s->workloads[i].services[k]);
			if (sv)
				count[sv - s->services]++;
		}
	for (size_t i = 0; i < s->n_services; i++)
		if (!(s->services[i].endpoints = alloc_array(c, count[i], sizeof(struct zt_endpoint))))
			return oom(c);

	size_t mask = 7;
	while (mask + 1 < n_explicit * 2)
		mask = mask * 2 + 1;
	struct ep_slot *tab = zt_arena_calloc(c->t, mask + 1, sizeof(*tab));
	if (!tab)
		return oom(c);

	for (size_t i = 0; i < s->n_services; i++) {
		struct zt_service *sv = &s->services[i];
		for (size_t k = 0; k < sx[i].n_eps; k++) {
			const struct ep_extra *e = &sx[i].eps[k];
			const struct zt_workload *w = zt_snapshot_workload_by_uid(s, e->workload_uid);
			struct path sp = P_FIELD(NULL, "services"), ip = P_INDEX(&sp, i),
				    fp = P_FIELD(&ip, "endpoints"), kp = P_KEY(&fp, e->key),
				    up = P_FIELD(&kp, "workloadUid");
			char q[300];
			if (!w)
				return fail(c, &up, "no workload has uid %s",
					    quote(q, sizeof(q), e->workload_uid, strlen(e->workload_uid)));
			struct ep_slot *slot = ep_find(tab, mask, sv, w);
			if (slot->svc)
				return fail(c, &up, "workload %s already has an endpoint in this service",
					    quote(q, sizeof(q), e->workload_uid, strlen(e->workload_uid)));
			struct zt_endpoint *ep = &sv->endpoints[sv->n_endpoints++];
			*ep = (struct zt_endpoint){w, e->ports, e->n_ports, e->status};
			*slot = (struct ep_slot){sv, w, ep};
		}
	}
	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct zt_workload *w = &s->workloads[i];
		for (size_t k = 0; k < w->n_services; k++) {
			struct zt_service *sv =
				(struct zt_service *)zt_snapshot_service_by_key(s, w->services[k]);
			if (!sv)
				continue;
			struct zt_endpoint *ep = NULL;
			if (sx[sv - s->services].n_eps) {
				struct ep_slot *slot = ep_find(tab, mask, sv, w);
				if (slot->svc)
					ep = slot->ep;
			}
			if (!ep)
				ep = &sv->endpoints[sv->n_endpoints++];
			*ep = (struct zt_endpoint){w, wx[i].ports[k], wx[i].n_ports[k], w->status};
		}
	}
	return 0;
}

/* ---- the whole document ---- */

static int conflict_msg(struct ctx *c, const struct zt_snapshot *s, const struct zt_index_conflict *cf)
{
	char q[300], ip[64], key[600];
	struct path top, item, field, sub;
	switch (cf->kind) {
	case ZT_DUP_UID: {
		const char *uid = s->workloads[cf->second].uid;
		top = P_FIELD(NULL, "workloads");
		item = P_INDEX(&top, cf->second);
		field = P_FIELD(&item, "uid");
		return fail(c, &field, "duplicate uid %s (also workloads[%zu])",
			    quote(q, sizeof(q), uid, strlen(uid)), cf->first);
	}
	case ZT_DUP_SERVICE: {
		const struct zt_service *sv = &s->services[cf->second];
		snprintf(key, sizeof(key), "%s/%s", sv->namespace_, sv->hostname);
		top = P_FIELD(NULL, "services");
		item = P_INDEX(&top, cf->second);
		return fail(c, &item, "duplicate service %s (also services[%zu])",
			    quote(q, sizeof(q), key, strlen(key)), cf->first);
	}
	case ZT_DUP_VIP: {
		const struct zt_netaddr *v = &s->services[cf->second].vips[cf->item];
		snprintf(key, sizeof(key), "%s/%s", v->network, zt_ip_str(&v->ip, ip, sizeof(ip)));
		top = P_FIELD(NULL, "services");
		item = P_INDEX(&top, cf->second);
		field = P_FIELD(&item, "vips");
		sub = P_INDEX(&field, cf->item);
		return fail(c, &sub, "duplicate VIP %s (also services[%zu])",
			    quote(q, sizeof(q), key, strlen(key)), cf->first);
	}
	case ZT_DUP_POLICY:
	default: {
		const struct zt_authz_policy *pol = &s->policies[cf->second];
		snprintf(key, sizeof(key), "%s/%s", pol->namespace_, pol->name);
		top = P_FIELD(NULL, "policies");
		item = P_INDEX(&top, cf->second);
		return fail(c, &item, "duplicate policy %s (also policies[%zu])",
			    quote(q, sizeof(q), key, strlen(key)), cf->first);
	}
	}
}

static int build(struct ctx *c, const struct zt_cnode *root, struct zt_snapshot *s)
{
	const struct zt_cnode *wn = NULL, *sn = NULL, *pn = NULL;
	struct path wp = P_FIELD(NULL, "workloads"), sp = P_FIELD(NULL, "services"),
		    pp = P_FIELD(NULL, "policies");
	struct wl_extra *wx;
	struct svc_extra *sx;
	int r;

	if (root && root->kind != ZT_CN_NULL) {
		if (root->tag)
			return fail(c, NULL, "unexpected YAML tag %s", root->tag);
		if (root->kind != ZT_CN_MAP)
			return fail(c, NULL, "expected a mapping at the top level, got %s",
				    zt_cnode_kind_desc(root));
		for (size_t i = 0; i < root->n; i++) {
			const char *key = root->pairs[i].key->text;
			struct path fp = P_FIELD(NULL, key);
			if (!strcmp(key, "workloads"))
				wn = root->pairs[i].val;
			else if (!strcmp(key, "services"))
				sn = root->pairs[i].val;
			else if (!strcmp(key, "policies"))
				pn = root->pairs[i].val;
			else
				return UNKNOWN_FIELD(c, &fp);
		}
	}
	if ((r = opt_seq(c, &wp, wn, &s->n_workloads)) || (r = opt_seq(c, &sp, sn, &s->n_services)) ||
	    (r = opt_seq(c, &pp, pn, &s->n_policies)))
		return r;
	s->workloads = alloc_array(c, s->n_workloads, sizeof(*s->workloads));
	s->services = alloc_array(c, s->n_services, sizeof(*s->services));
	s->policies = alloc_array(c, s->n_policies, sizeof(*s->policies));
	wx = zt_arena_calloc(c->t, s->n_workloads ? s->n_workloads : 1, sizeof(*wx));
	sx = zt_arena_calloc(c->t, s->n_services ? s->n_services : 1, sizeof(*sx));
	if (!s->workloads || !s->services || !s->policies || !wx || !sx)
		return oom(c);

	/* Document order: workloads, services and policies as they appear. */
	for (size_t i = 0; i < (root ? root->n : 0); i++) {
		const struct zt_cnode *v = root->pairs[i].val;
		if (v == wn) {
			for (size_t k = 0; k < s->n_workloads; k++) {
				struct path ip = P_INDEX(&wp, k);
				if ((r = get_workload(c, &ip, wn->items[k], &s->workloads[k], &wx[k])))
					return r;
			}
		} else if (v == sn) {
			for (size_t k = 0; k < s->n_services; k++) {
				struct path ip = P_INDEX(&sp, k);
				if ((r = get_service(c, &ip, sn->items[k], &s->services[k], &sx[k])))
					return r;
			}
		} else if (v == pn) {
			for (size_t k = 0; k < s->n_policies; k++) {
				struct path ip = P_INDEX(&pp, k);
				if ((r = get_policy(c, &ip, pn->items[k], &s->policies[k])))
					return r;
			}
		}
	}

	struct zt_index_conflict cf;
	r = zt_snapshot_index_build(s, &cf);
	if (r == -EEXIST)
		return conflict_msg(c, s, &cf);
	if (r)
		return oom(c);
	return build_endpoints(c, s, wx, sx);
}

static enum zt_config_format sniff(const char *data, size_t len)
{
	size_t i = 0;
	if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3))
		i = 3;
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;
	return i < len && data[i] == '{' ? ZT_CONFIG_JSON : ZT_CONFIG_YAML;
}

/* The end of zt_config_parse and zt_config_build_tree: unless r already says
 * why not, build the snapshot s (in arena c->a) from root; the scratch arena
 * c->t goes either way, c->a with a failure. */
static int finish(struct ctx *c, int r, const struct zt_cnode *root, struct zt_snapshot *s,
		  struct zt_snapshot **out)
{
	if (!r)
		r = build(c, root, s);
	zt_arena_destroy(c->t);
	if (r) {
		zt_arena_destroy(c->a);
		return r;
	}
	*out = s;
	return 0;
}

int zt_config_parse(const char *data, size_t len, enum zt_config_format fmt, const char *name,
		    struct zt_snapshot **out, struct zt_config_error *err)
{
	struct zt_config_error dummy;
	struct ctx c = {.name = name ? name : "config", .err = err ? err : &dummy};
	struct zt_cnode *root = NULL;
	char perr[400];
	int r;

	*out = NULL;
	c.err->msg[0] = 0;
	if (len > ZT_CONFIG_MAX_BYTES)
		return fail(&c, NULL, "larger than %u MiB", ZT_CONFIG_MAX_BYTES >> 20);
	if (fmt == ZT_CONFIG_AUTO)
		fmt = sniff(data, len);

	c.t = zt_arena_new();
	c.a = zt_arena_new();
	struct zt_snapshot *s = c.a ? zt_snapshot_new_in(c.a) : NULL;
	if (!c.t || !s) {
		r = oom(&c);
		goto fail;
	}
	perr[0] = 0;
	if (fmt == ZT_CONFIG_JSON)
		r = zt_ctree_parse_json(c.t, data, len, &root, perr, sizeof(perr));
	else
		r = zt_ctree_parse_yaml(c.t, data, len, &root, perr, sizeof(perr));
	if (r == -ENOMEM) {
		r = oom(&c);
		goto fail;
	}
	if (r)
		snprintf(c.err->msg, sizeof(c.err->msg), "%s: %s", c.name, perr);
fail:
	return finish(&c, r, root, s, out);
}

int zt_config_build_tree(const struct zt_cnode *root, const char *name, struct zt_snapshot **out,
			 struct zt_config_error *err, struct zt_config_where *where)
{
	struct zt_config_error dummy;
	struct ctx c = {.name = name ? name : "xds", .err = err ? err : &dummy, .where = where};

	*out = NULL;
	c.err->msg[0] = 0;
	if (where)
		*where = (struct zt_config_where){ZT_CFG_AT_NONE, 0};
	c.t = zt_arena_new();
	c.a = zt_arena_new();
	struct zt_snapshot *s = c.a ? zt_snapshot_new_in(c.a) : NULL;
	return finish(&c, !c.t || !s ? oom(&c) : 0, root, s, out);
}

int zt_config_build_lists(const struct zt_cnode *const *workloads, size_t n_workloads,
			  const struct zt_cnode *const *services, size_t n_services,
			  const struct zt_cnode *const *policies, size_t n_policies,
			  const char *name, struct zt_snapshot **out, struct zt_config_error *err,
			  struct zt_config_where *where)
{
	static const char *const keys[3] = {"workloads", "services", "policies"};
	const struct zt_cnode *const *arrs[3] = {workloads, services, policies};
	size_t counts[3] = {n_workloads, n_services, n_policies};
	struct zt_cnode knodes[3], seqs[3], root;
	struct zt_cpair pairs[3];

	/* The tree is only read by build(): the const casts never lead to writes. */
	for (int i = 0; i < 3; i++) {
		if (counts[i] > UINT32_MAX) {
			struct zt_config_error dummy;
			snprintf((err ? err : &dummy)->msg, sizeof(err->msg), "%s: too many %s",
				 name ? name : "xds", keys[i]);
			*out = NULL;
			return -EINVAL;
		}
		knodes[i] = (struct zt_cnode){.kind = ZT_CN_STR, .text = keys[i],
					      .len = (uint32_t)strlen(keys[i])};
		seqs[i] = (struct zt_cnode){.kind = ZT_CN_SEQ, .n = (uint32_t)counts[i],
					    .items = (struct zt_cnode **)arrs[i]};
		pairs[i] = (struct zt_cpair){&knodes[i], &seqs[i]};
	}
	root = (struct zt_cnode){.kind = ZT_CN_MAP, .n = 3, .pairs = pairs};
	return zt_config_build_tree(&root, name, out, err, where);
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t l = strlen(s), m = strlen(suffix);
	return l >= m && !strcmp(s + l - m, suffix);
}

int zt_config_load_file(const char *path, struct zt_snapshot **out, struct zt_config_error *err)
{
	struct zt_config_error dummy;
	enum zt_config_format fmt = ZT_CONFIG_AUTO;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int r = 0;

	if (!err)
		err = &dummy;
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = -errno;
		goto fail_io;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err->msg, sizeof(err->msg), "%s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > ZT_CONFIG_MAX_BYTES) {
		snprintf(err->msg, sizeof(err->msg), "%s: larger than %u MiB", path,
			 ZT_CONFIG_MAX_BYTES >> 20);
		close(fd);
		return -EFBIG;
	}
	/* Read up to one byte past the limit: the file may grow while we read. */
	size_t cap = (size_t)st.st_size + 1;
	if (!(buf = malloc(cap))) {
		close(fd);
		snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto fail_io;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			if (cap > ZT_CONFIG_MAX_BYTES) {
				snprintf(err->msg, sizeof(err->msg), "%s: larger than %u MiB", path,
					 ZT_CONFIG_MAX_BYTES >> 20);
				free(buf);
				close(fd);
				return -EFBIG;
			}
			size_t ncap = cap * 2 > ZT_CONFIG_MAX_BYTES + 1 ? ZT_CONFIG_MAX_BYTES + 1 : cap * 2;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				close(fd);
				snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
				return -ENOMEM;
			}
			buf = nb;
			cap = ncap;
		}
	}
	close(fd);
	if (ends_with(path, ".json"))
		fmt = ZT_CONFIG_JSON;
	else if (ends_with(path, ".yaml") || ends_with(path, ".yml"))
		fmt = ZT_CONFIG_YAML;
	r = zt_config_parse(buf, len, fmt, path, out, err);
	free(buf);
	return r;

fail_io:
	snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(-r));
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}
