/* authz.c - compile a snapshot's authorization policies per workload, and
 * evaluate a connection against them. See authz.h for the semantics and the
 * ztunnel sources they follow.
 *
 * Layout of the index: one array of policy pointers (`pool`) holding, one
 * after the other, the policy sets of the index: the Global set, one set per
 * namespace that has Namespace-scope policies, and one set per workload that
 * names policies not already in those two. Inside a set the policies are
 * grouped by class in evaluation order (dry-run DENY, DENY, dry-run ALLOW,
 * ALLOW), document order within a class. A workload's entry (found by its
 * position in the snapshot's workload array) points at its namespace set and
 * its own set; the Global set is shared. Evaluation walks the three sets class
 * by class, in ztunnel's order: namespace, global, workload.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz/authz.h"
#include "common/log.h"

#define TARGET "rbac"
/* Unknown policy names are logged one by one up to this many per build. */
#define WARN_MAX 16

/* Policy classes, in evaluation order. */
enum { C_DENY_DRY = 0, C_DENY, C_ALLOW_DRY, C_ALLOW, N_CLASSES };

/* A set of policies; class c is pol[c ? end[c - 1] : 0 .. end[c]). */
struct pset {
	const struct zt_authz_policy *const *pol;
	uint32_t end[N_CLASSES];
};

struct ns_entry {
	const char *ns;
	struct pset set;
};

struct wl_entry {
	const struct pset *ns, *own; /* never NULL (empty_set) */
};

struct zt_authz_index {
	const struct zt_snapshot *snap;
	struct pset global;
	struct ns_entry *ns; /* sorted by namespace (strcmp) */
	size_t n_ns;
	struct wl_entry *wl; /* one per snap->workloads[i] */
	struct pset *own;
	size_t n_own;
	const struct zt_authz_policy **pool;
	size_t n_pool;
	struct zt_authz_stats stats;
};

static const struct pset empty_set;

/* The class of a policy, or -1 when it takes no part (action not ALLOW/DENY:
 * istiod sends only those two to ztunnel). */
static int class_of(const struct zt_authz_policy *p)
{
	switch (p->action) {
	case ZT_AUTHZ_DENY:
		return p->dry_run ? C_DENY_DRY : C_DENY;
	case ZT_AUTHZ_ALLOW:
		return p->dry_run ? C_ALLOW_DRY : C_ALLOW;
	default:
		return -1;
	}
}

/* Does policy `p`, named in w->authorization_policies, add to what the
 * namespace and global sets already give `w`? Global ones are in the global
 * set, Namespace ones of w's namespace in its namespace set. */
static bool own_applies(const struct zt_authz_policy *p, const struct zt_workload *w)
{
	if (class_of(p) < 0 || p->scope == ZT_SCOPE_GLOBAL)
		return false;
	return !(p->scope == ZT_SCOPE_NAMESPACE && !strcmp(p->namespace_, w->namespace_));
}

static const struct pset *find_ns(const struct zt_authz_index *ix, const char *ns)
{
	size_t lo = 0, hi = ix->n_ns;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ns, ix->ns[mid].ns);
		if (!c)
			return &ix->ns[mid].set;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return &empty_set;
}

/* ---- matching ---- */

/* The connection as the matchers read it. */
struct connv {
	struct zt_ip src, dst;
	uint16_t port;
	bool has_id;
	const char *ns; /* identity namespace, "" without identity */
	size_t ns_len;
	const char *sa;
	size_t sa_len;
	/* The principal "td/ns/<ns>/sa/<sa>" as five pieces, never assembled. */
	const char *seg[5];
	size_t seg_len[5];
	size_t plen;
};

static void canonical_ip(struct zt_ip *out, const struct zt_ip *in)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (!in) {
		memset(out, 0, sizeof(*out)); /* family 0: inside no CIDR */
		return;
	}
	*out = *in;
	if (in->family == AF_INET6 && !memcmp(in->b, v4mapped, sizeof(v4mapped))) {
		memset(out, 0, sizeof(*out));
		out->family = AF_INET;
		memcpy(out->b, in->b + 12, 4);
	}
}

static void connv_init(struct connv *c, const struct zt_authz_conn *conn)
{
	canonical_ip(&c->src, conn->src_ip);
	canonical_ip(&c->dst, conn->dst ? &conn->dst->ip : NULL);
	c->port = conn->dst ? conn->dst->port : 0;
	const struct zt_authz_identity *id = conn->identity;
	c->has_id = id != NULL;
	const char *td = id && id->trust_domain ? id->trust_domain : "";
	c->ns = id && id->namespace_ ? id->namespace_ : "";
	c->sa = id && id->service_account ? id->service_account : "";
	c->ns_len = strlen(c->ns);
	c->sa_len = strlen(c->sa);
	c->seg[0] = td;
	c->seg_len[0] = strlen(td);
	c->seg[1] = "/ns/";
	c->seg_len[1] = 4;
	c->seg[2] = c->ns;
	c->seg_len[2] = c->ns_len;
	c->seg[3] = "/sa/";
	c->seg_len[3] = 4;
	c->seg[4] = c->sa;
	c->seg_len[4] = c->sa_len;
	c->plen = c->seg_len[0] + 4 + c->ns_len + 4 + c->sa_len;
}

/* Is v[0..n) equal to the principal's bytes at [off, off + n)? */
static bool principal_eq_at(const struct connv *c, size_t off, const char *v, size_t n)
{
	for (int i = 0; i < 5 && n; i++) {
		size_t l = c->seg_len[i];
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t k = l - off < n ? l - off : n;
		if (memcmp(c->seg[i] + off, v, k))
			return false;
		v += k;
		n -= k;
		off = 0;
	}
	return n == 0;
}

static bool principal_match(const struct zt_strmatch *m, const struct connv *c)
{
	/* ztunnel strips "spiffe://" from the peer's id and fails when it is not
	 * there: without identity nothing matches, Presence included. */
	if (!c->has_id)
		return false;
	size_t vl = strlen(m->value);
	switch (m->kind) {
	case ZT_SM_EXACT:
		return vl == c->plen && principal_eq_at(c, 0, m->value, vl);
	case ZT_SM_PREFIX:
		return vl <= c->plen && principal_eq_at(c, 0, m->value, vl);
	case ZT_SM_SUFFIX:
		return vl <= c->plen && principal_eq_at(c, c->plen - vl, m->value, vl);
	case ZT_SM_PRESENCE:
		return c->plen != 0;
	}
	return false;
}

static bool str_match(const struct zt_strmatch *m, const char *s, size_t n)
{
	size_t vl;
	switch (m->kind) {
	case ZT_SM_EXACT:
		return !strcmp(m->value, s);
	case ZT_SM_PREFIX:
		vl = strlen(m->value);
		return vl <= n && !memcmp(s, m->value, vl);
	case ZT_SM_SUFFIX:
		vl = strlen(m->value);
		return vl <= n && !memcmp(s + n - vl, m->value, vl);
	case ZT_SM_PRESENCE:
		return n != 0;
	}
	return false;
}

static bool any_principal(const struct zt_strmatch *a, size_t n, const struct connv *c)
{
	for (size_t i = 0; i < n; i++)
		if (principal_match(&a[i], c))
			return true;
	return false;
}

static bool any_namespace(const struct zt_strmatch *a, size_t n, const struct connv *c)
{
	for (size_t i = 0; i < n; i++)
		if (str_match(&a[i], c->ns, c->ns_len))
			return true;
	return false;
}

/* Service accounts are stored as Exact "namespace/serviceaccount"; the trust
 * domain is not compared; no identity, no match. */
static bool any_service_account(const struct zt_strmatch *a, size_t n, const struct connv *c)
{
	if (!c->has_id)
		return false;
	size_t want = c->ns_len + 1 + c->sa_len;
	for (size_t i = 0; i < n; i++) {
		const char *v = a[i].value;
		if (strlen(v) == want && !memcmp(v, c->ns, c->ns_len) && v[c->ns_len] == '/' &&
		    !memcmp(v + c->ns_len + 1, c->sa, c->sa_len))
			return true;
	}
	return false;
}

static bool any_cidr(const struct zt_cidr *a, size_t n, const struct zt_ip *ip)
{
	for (size_t i = 0; i < n; i++)
		if (zt_ip_in_prefix(ip, &a[i].ip, a[i].len))
			return true;
	return false;
}

static bool any_port(const uint16_t *a, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] == port)
			return true;
	return false;
}

static bool match_is_empty(const struct zt_authz_match *m)
{
	return !(m->n_namespaces | m->n_not_namespaces | m->n_principals | m->n_not_principals |
		 m->n_service_accounts | m->n_not_service_accounts | m->n_source_ips |
		 m->n_not_source_ips | m->n_destination_ips | m->n_not_destination_ips |
		 m->n_destination_ports | m->n_not_destination_ports);
}

/* Every set positive field matches and no not_ value matches. Cheap checks
 * first; the result does not depend on the order. */
static bool match_ok(const struct zt_authz_match *m, const struct connv *c)
{
	if (m->n_destination_ports && !any_port(m->destination_ports, m->n_destination_ports, c->port))
		return false;
	if (any_port(m->not_destination_ports, m->n_not_destination_ports, c->port))
		return false;
	if (m->n_destination_ips && !any_cidr(m->destination_ips, m->n_destination_ips, &c->dst))
		return false;
	if (any_cidr(m->not_destination_ips, m->n_not_destination_ips, &c->dst))
		return false;
	if (m->n_source_ips && !any_cidr(m->source_ips, m->n_source_ips, &c->src))
		return false;
	if (any_cidr(m->not_source_ips, m->n_not_source_ips, &c->src))
		return false;
	if (m->n_service_accounts && !any_service_account(m->service_accounts, m->n_service_accounts, c))
		return false;
	if (any_service_account(m->not_service_accounts, m->n_not_service_accounts, c))
		return false;
	if (m->n_namespaces && !any_namespace(m->namespaces, m->n_namespaces, c))
		return false;
	if (any_namespace(m->not_namespaces, m->n_not_namespaces, c))
		return false;
	if (m->n_principals && !any_principal(m->principals, m->n_principals, c))
		return false;
	if (any_principal(m->not_principals, m->n_not_principals, c))
		return false;
	return true;
}

/* A clause without matches matches; empty matches are skipped (so a clause of
 * empty matches only does not). */
static bool clause_ok(const struct zt_authz_clause *cl, const struct connv *c)
{
	if (!cl->n_matches)
		return true;
	for (size_t i = 0; i < cl->n_matches; i++) {
		const struct zt_authz_match *m = &cl->matches[i];
		if (!match_is_empty(m) && match_ok(m, c))
			return true;
	}
	return false;
}

static bool policy_match(const struct zt_authz_policy *p, const struct connv *c)
{
	for (size_t r = 0; r < p->n_rules; r++) {
		const struct zt_authz_rule *rule = &p->rules[r];
		size_t k = 0;
		while (k < rule->n_clauses && clause_ok(&rule->clauses[k], c))
			k++;
		if (k == rule->n_clauses)
			return true;
	}
	return false; /* no rules: nothing matches */
}

bool zt_authz_policy_matches(const struct zt_authz_policy *p, const struct zt_authz_conn *conn)
{
	struct connv c;
	connv_init(&c, conn);
	return policy_match(p, &c);
}

/* ---- evaluation ---- */

/* The policies applying to one destination workload. */
struct view {
	const struct pset *sets[3]; /* namespace, global, workload's own */
	/* A workload outside the index's snapshot: its own policies are looked
	 * up by name at each walk instead of sets[2]. */
	const struct zt_workload *foreign;
	const struct zt_snapshot *snap;
};

struct walk {
	const struct view *v;
	int cls;
	unsigned s; /* set being walked; 3 = foreign references */
	uint32_t i;
	size_t r;
};

static void walk_start(struct walk *w, const struct view *v, int cls)
{
	w->v = v;
	w->cls = cls;
	w->s = 0;
	w->i = cls ? v->sets[0]->end[cls - 1] : 0;
	w->r = 0;
}

static const struct zt_authz_policy *walk_next(struct walk *w)
{
	while (w->s < 3) {
		const struct pset *ps = w->v->sets[w->s];
		if (w->i < ps->end[w->cls])
			return ps->pol[w->i++];
		if (++w->s < 3)
			w->i = w->cls ? w->v->sets[w->s]->end[w->cls - 1] : 0;
	}
	const struct zt_workload *fw = w->v->foreign;
	while (fw && w->r < fw->n_authorization_policies) {
		const struct zt_authz_policy *p =
			zt_snapshot_policy_by_key(w->v->snap, fw->authorization_policies[w->r++]);
		if (p && class_of(p) == w->cls && own_applies(p, fw))
			return p;
	}
	return NULL;
}

static void view_init(struct view *v, const struct zt_authz_index *ix, const struct zt_workload *w)
{
	v->sets[0] = v->sets[1] = v->sets[2] = &empty_set;
	v->foreign = NULL;
	v->snap = NULL;
	if (!ix)
		return;
	v->sets[1] = &ix->global;
	const struct zt_snapshot *s = ix->snap;
	/* uintptr_t: `w` may belong to another array, where pointer comparison
	 * would be undefined. */
	uintptr_t base = s ? (uintptr_t)s->workloads : 0, pw = (uintptr_t)w;
	if (s && s->n_workloads && pw >= base &&
	    pw < base + s->n_workloads * sizeof(struct zt_workload) &&
	    (pw - base) % sizeof(struct zt_workload) == 0) {
		const struct wl_entry *e = &ix->wl[(pw - base) / sizeof(struct zt_workload)];
		v->sets[0] = e->ns;
		v->sets[2] = e->own;
		return;
	}
	v->sets[0] = find_ns(ix, w->namespace_);
	v->foreign = w;
	v->snap = s;
}

static void note_dry_run(struct zt_authz_result *res, const struct zt_authz_policy *p)
{
	if (res->n_dry_run < ZT_AUTHZ_DRY_RUN_MAX)
		res->dry_run[res->n_dry_run] = p;
	res->n_dry_run++;
}

int zt_authz_check(const struct zt_authz_index *ix, const struct zt_workload *dst_wl,
		   const struct zt_authz_conn *conn, struct zt_authz_result *res)
{
	const struct zt_authz_policy *p;
	struct walk w;
	struct view v;
	struct connv c;

	res->allowed = false;
	res->policy = NULL;
	res->dry_run_no_allow_match = false;
	res->dry_run_allowed = false;
	res->n_dry_run = 0;
	if (!dst_wl) {
		res->reason = ZT_AUTHZ_NO_WORKLOAD;
		return -EACCES;
	}
	connv_init(&c, conn);
	view_init(&v, ix, dst_wl);

	/* 1. dry-run DENY: all evaluated, matches reported */
	bool dry_deny = false;
	walk_start(&w, &v, C_DENY_DRY);
	while ((p = walk_next(&w)))
		if (policy_match(p, &c)) {
			note_dry_run(res, p);
			dry_deny = true;
		}
	/* 2. DENY: the first match decides */
	walk_start(&w, &v, C_DENY);
	while ((p = walk_next(&w)))
		if (policy_match(p, &c)) {
			res->reason = ZT_AUTHZ_DENY_MATCHED;
			res->policy = p;
			return -EACCES;
		}
	/* 3. dry-run ALLOW: all evaluated, matches reported */
	bool dry_allow = false, dry_allow_matched = false;
	walk_start(&w, &v, C_ALLOW_DRY);
	while ((p = walk_next(&w))) {
		dry_allow = true;
		if (policy_match(p, &c)) {
			note_dry_run(res, p);
			dry_allow_matched = true;
		}
	}
	/* 4. no ALLOW policy: allowed */
	walk_start(&w, &v, C_ALLOW);
	p = walk_next(&w);
	if (!p) {
		res->allowed = true;
		res->reason = ZT_AUTHZ_NO_ALLOW_POLICIES;
		res->dry_run_no_allow_match = dry_allow && !dry_allow_matched;
		res->dry_run_allowed = !dry_deny && !res->dry_run_no_allow_match;
		return 0;
	}
	/* 5. ALLOW: the first match decides */
	for (; p; p = walk_next(&w))
		if (policy_match(p, &c)) {
			res->allowed = true;
			res->reason = ZT_AUTHZ_ALLOW_MATCHED;
			res->policy = p;
			res->dry_run_allowed = !dry_deny;
			return 0;
		}
	/* 6. ALLOW policies apply, none matched */
	res->reason = ZT_AUTHZ_NOT_ALLOWED;
	res->dry_run_allowed = !dry_deny && dry_allow_matched;
	return -EACCES;
}

const char *zt_authz_result_str(const struct zt_authz_result *res, char *buf, size_t len)
{
	if (!len)
		return buf;
	const struct zt_authz_policy *p = res->policy;
	switch (res->reason) {
	case ZT_AUTHZ_NO_ALLOW_POLICIES:
		snprintf(buf, len, "allowed: no allow policies");
		break;
	case ZT_AUTHZ_ALLOW_MATCHED:
		snprintf(buf, len, "allowed by: %s/%s", p ? p->namespace_ : "", p ? p->name : "");
		break;
	case ZT_AUTHZ_DENY_MATCHED:
		snprintf(buf, len, "explicitly denied by: %s/%s", p ? p->namespace_ : "",
			 p ? p->name : "");
		break;
	case ZT_AUTHZ_NOT_ALLOWED:
		snprintf(buf, len, "allow policies exist, but none allowed");
		break;
	case ZT_AUTHZ_NO_WORKLOAD:
	default:
		snprintf(buf, len, "workload not found");
		break;
	}
	return buf;
}

/* ---- building ---- */

/* Append the `n` policies of `src` to the pool as one set, grouped by class. */
static void emit_set(struct zt_authz_index *ix, const struct zt_authz_policy *const *src, size_t n,
		     struct pset *ps)
{
	const struct zt_authz_policy **start = ix->pool + ix->n_pool;
	size_t k = 0;
	for (int cls = 0; cls < N_CLASSES; cls++) {
		for (size_t i = 0; i < n; i++)
			if (class_of(src[i]) == cls)
				start[k++] = src[i];
		ps->end[cls] = (uint32_t)k;
	}
	ps->pol = start;
	ix->n_pool += k;
}

/* By namespace, then document order (the policies are one array). */
static int cmp_by_namespace(const void *a, const void *b)
{
	const struct zt_authz_policy *pa = *(const struct zt_authz_policy *const *)a;
	const struct zt_authz_policy *pb = *(const struct zt_authz_policy *const *)b;
	int c = strcmp(pa->namespace_, pb->namespace_);
	if (c)
		return c;
	return (uintptr_t)pa < (uintptr_t)pb ? -1 : (uintptr_t)pa > (uintptr_t)pb;
}

static void warn_unknown(const struct zt_workload *w, const char *key)
{
	if (!zt_log_enabled(ZT_LOG_WARN, TARGET))
		return;
	struct zt_log_field f[] = {
		ZT_LF_S("policy", key),
		ZT_LF_S("workload", *w->uid ? w->uid : w->name),
	};
	zt_log_fields(ZT_LOG_WARN, TARGET, "skipping unknown policy", f, 2);
}

int zt_authz_index_build(const struct zt_snapshot *s, struct zt_authz_index **out)
{
	*out = NULL;
	struct zt_authz_index *ix = calloc(1, sizeof(*ix));
	if (!ix)
		return -ENOMEM;
	ix->snap = s;
	size_t np = s ? s->n_policies : 0, nw = s ? s->n_workloads : 0;
	size_t cap = np, max_refs = 0;
	for (size_t i = 0; i < nw; i++) {
		size_t r = s->workloads[i].n_authorization_policies;
		cap += r;
		if (r > max_refs)
			max_refs = r;
	}
	size_t ntmp = np > max_refs ? np : max_refs;
	/* Set offsets are 32-bit; the config parser's limits keep far below. */
	if (ntmp >= UINT32_MAX || cap >= SIZE_MAX / sizeof(*ix->pool)) {
		free(ix);
		return -ENOMEM;
	}
	const struct zt_authz_policy **tmp = malloc((ntmp + 1) * sizeof(*tmp));
	size_t *mark = calloc(np + 1, sizeof(*mark));
	ix->pool = malloc((cap + 1) * sizeof(*ix->pool));
	ix->ns = malloc((np + 1) * sizeof(*ix->ns));
	ix->wl = malloc((nw + 1) * sizeof(*ix->wl));
	ix->own = malloc((nw + 1) * sizeof(*ix->own));
	if (!tmp || !mark || !ix->pool || !ix->ns || !ix->wl || !ix->own) {
		free(tmp);
		free(mark);
		zt_authz_index_free(ix);
		return -ENOMEM;
	}
	ix->stats.policies = np;

	/* Global: scope Global, whatever the namespace (ztunnel files them
	 * under "" in its PolicyStore, src/state/policy.rs). */
	size_t n = 0;
	for (size_t i = 0; i < np; i++) {
		const struct zt_authz_policy *p = &s->policies[i];
		if (class_of(p) < 0)
			ix->stats.skipped_actions++;
		else if (p->scope == ZT_SCOPE_GLOBAL)
			tmp[n++] = p;
	}
	emit_set(ix, tmp, n, &ix->global);
	ix->stats.global = n;

	/* Namespace: one set per namespace. */
	n = 0;
	for (size_t i = 0; i < np; i++) {
		const struct zt_authz_policy *p = &s->policies[i];
		if (class_of(p) >= 0 && p->scope == ZT_SCOPE_NAMESPACE)
			tmp[n++] = p;
	}
	qsort(tmp, n, sizeof(*tmp), cmp_by_namespace);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && !strcmp(tmp[j]->namespace_, tmp[i]->namespace_); j++)
			;
		struct ns_entry *e = &ix->ns[ix->n_ns++];
		e->ns = tmp[i]->namespace_;
		emit_set(ix, tmp + i, j - i, &e->set);
	}
	ix->stats.namespaces = ix->n_ns;

	/* Workloads: their namespace's set, and the named policies that add to
	 * it and to the global set, each once. */
	for (size_t wi = 0; wi < nw; wi++) {
		const struct zt_workload *w = &s->workloads[wi];
		ix->wl[wi].ns = find_ns(ix, w->namespace_);
		n = 0;
		for (size_t r = 0; r < w->n_authorization_policies; r++) {
			const char *key = w->authorization_policies[r];
			const struct zt_authz_policy *p = zt_snapshot_policy_by_key(s, key);
			if (!p) {
				if (ix->stats.unknown_refs++ < WARN_MAX)
					warn_unknown(w, key);
				continue;
			}
			if (!own_applies(p, w))
				continue;
			size_t pi = (size_t)(p - s->policies);
			if (pi < np) {
				if (mark[pi] == wi + 1)
					continue;
				mark[pi] = wi + 1;
			}
			tmp[n++] = p;
		}
		if (n) {
			struct pset *ps = &ix->own[ix->n_own++];
			emit_set(ix, tmp, n, ps);
			ix->wl[wi].own = ps;
			ix->stats.workload_refs += n;
		} else {
			ix->wl[wi].own = &empty_set;
		}
	}
	if (ix->stats.unknown_refs > WARN_MAX)
		ZT_WARN(TARGET, "skipped %zu more references to unknown policies",
			ix->stats.unknown_refs - WARN_MAX);
	if (ix->stats.skipped_actions)
		ZT_DEBUG(TARGET, "ignored %zu policies whose action is neither ALLOW nor DENY",
			 ix->stats.skipped_actions);
	free(tmp);
	free(mark);
	*out = ix;
	return 0;
}

void zt_authz_index_free(struct zt_authz_index *ix)
{
	if (!ix)
		return;
	free(ix->pool);
	free(ix->ns);
	free(ix->wl);
	free(ix->own);
	free(ix);
}

const struct zt_authz_stats *zt_authz_index_stats(const struct zt_authz_index *ix)
{
	static const struct zt_authz_stats none;
	return ix ? &ix->stats : &none;
}

const struct zt_snapshot *zt_authz_index_snapshot(const struct zt_authz_index *ix)
{
	return ix ? ix->snap : NULL;
}
