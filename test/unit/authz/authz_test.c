/* authz_test.c - table-driven tests of authz/ against ztunnel's semantics.
 *
 * Every policy here is written in the local config form and goes through
 * zt_config_parse(), so the tests also pin down the parser's form. Tables:
 *   match_rows     one policy, every field and not_ form, string match kinds,
 *                  CIDR edges (v4, v6, v4-mapped), empty match, rules /
 *                  clauses nesting; each row is run as an ALLOW and as a DENY
 *   scope_cases    Global (root namespace or not) / Namespace / selector
 *                  scope, DENY over ALLOW, unknown names, duplicates; run on
 *                  the index's own workloads and on copies from another
 *                  snapshot (the lookup path)
 *   dry_cases      dry-run DENY and ALLOW, reporting, truncation
 *   pa_cases       PeerAuthentication as istiod converts it (STRICT, port
 *                  exceptions) and plaintext
 *   guide_cases    the Istio guide "L4 networking and mTLS with ztunnel"
 *   bad_configs    policies the parser must reject
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authz/authz.h"
#include "check.h"
#include "common/log.h"

/* ---- connections ---- */

struct tconn {
	const char *name;
	const char *src, *dst; /* "ip", "ip:port" or "[v6]:port" */
	const char *id;        /* "td/namespace/sa", NULL = plaintext */
};

static const struct tconn conns[] = {
	/* the three connections of ztunnel's own rbac tests */
	{"plain", "127.0.0.1", "127.0.0.2:8080", NULL},
	{"tls", "127.0.0.1", "127.0.0.2:8080", "td/namespace/account"},
	{"alt", "127.0.0.3", "127.0.0.4:9090", "td-alt/ns-alt/sa=alt"},
	/* same as tls in another trust domain */
	{"otd", "127.0.0.1", "127.0.0.2:8080", "other.td/namespace/account"},
	{"v6", "fd00::1", "[fd00::2]:8080", "td/namespace/account"},
	{"v6plain", "fd00::1", "[fd00::2]:443", NULL},
	{"mapped", "::ffff:127.0.0.1", "[::ffff:127.0.0.2]:8080", "td/namespace/account"},
	/* either side of a /25 and of a /112 boundary */
	{"edge", "10.1.2.127", "10.1.2.128:80", "td/namespace/account"},
	{"v6edge", "fd00::ffff", "[fd00::1:0]:80", "td/namespace/account"},
	/* ztunnel's nesting test */
	{"a80", "10.0.0.9", "10.0.0.1:80", "td/a/account"},
	{"b80", "10.0.0.9", "10.0.0.1:80", "td/b/account"},
	{"bad80", "10.0.0.9", "10.0.0.1:80", "td/bad/account"},
	{"b81", "10.0.0.9", "10.0.0.1:81", "td/b/account"},
};

struct connbuf {
	struct zt_ip src;
	struct zt_sockaddr dst;
	struct zt_authz_identity id;
	char idbuf[256];
	struct zt_authz_conn conn;
};

static const struct zt_authz_conn *make_conn(struct connbuf *b, const char *src, const char *dst,
					     const char *id)
{
	memset(b, 0, sizeof(*b));
	if (zt_ip_parse(src, &b->src) || zt_sockaddr_parse(dst, &b->dst)) {
		fprintf(stderr, "bad test address %s / %s\n", src, dst);
		exit(2);
	}
	b->conn.src_ip = &b->src;
	b->conn.dst = &b->dst;
	if (id) {
		snprintf(b->idbuf, sizeof(b->idbuf), "%s", id);
		char *s1 = strchr(b->idbuf, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
		if (!s2) {
			fprintf(stderr, "bad test identity %s\n", id);
			exit(2);
		}
		*s1 = *s2 = 0;
		b->id = (struct zt_authz_identity){b->idbuf, s1 + 1, s2 + 1};
		b->conn.identity = &b->id;
	}
	return &b->conn;
}

static const struct tconn *find_conn(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(conns) / sizeof(conns[0]); i++)
		if (strlen(conns[i].name) == len && !strncmp(conns[i].name, name, len))
			return &conns[i];
	fprintf(stderr, "no test connection %.*s\n", (int)len, name);
	exit(2);
}

/* ---- helpers ---- */

static struct zt_snapshot *parse(const char *yaml)
{
	struct zt_snapshot *s = NULL;
	struct zt_config_error err;
	if (zt_config_parse(yaml, strlen(yaml), ZT_CONFIG_YAML, "t.yaml", &s, &err)) {
		fprintf(stderr, "[%s] parse: %s\n", check_label, err.msg);
		check_failures++;
		return NULL;
	}
	return s;
}

static struct zt_authz_index *build(const struct zt_snapshot *s)
{
	struct zt_authz_index *ix = NULL;
	int r = zt_authz_index_build(s, &ix);
	CHECK_INT(r, 0);
	return ix;
}

static char *key_of(const struct zt_authz_policy *p, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", p->namespace_, p->name);
	return buf;
}

/* A result without dry-run policies involved. */
static void check_no_dry_run(const struct zt_authz_result *res)
{
	CHECK_INT(res->n_dry_run, 0);
	CHECK(!res->dry_run_no_allow_match);
	CHECK(res->dry_run_allowed == res->allowed);
}

/* ---- 1. matching: one policy, every field ---- */

#define M(m) "[[[" m "]]]" /* one rule, one clause, one match */

struct match_row {
	const char *rules;  /* the policy's rules, YAML flow */
	const char *expect; /* "+conn" matches, "-conn" does not */
};

static const struct match_row match_rows[] = {
	/* namespaces: the identity's namespace, "" without identity */
	{M("{namespaces: [{Exact: namespace}]}"), "-plain +tls -alt +otd"},
	{M("{notNamespaces: [{Exact: namespace}]}"), "+plain -tls +alt -otd"},
	{M("{namespaces: [{Prefix: name}]}"), "-plain +tls -alt"},
	{M("{notNamespaces: [{Prefix: name}]}"), "+plain -tls +alt"},
	{M("{namespaces: [{Suffix: space}]}"), "-plain +tls -alt"},
	{M("{namespaces: [{Suffix: alt}]}"), "-plain -tls +alt"},
	{M("{notNamespaces: [{Suffix: alt}]}"), "+plain +tls -alt"},
	{M("{namespaces: [{Presence: []}]}"), "-plain +tls +alt -v6plain"},
	{M("{notNamespaces: [{Presence: []}]}"), "+plain -tls -alt +v6plain"},
	{M("{namespaces: [{Exact: namespacex}]}"), "-tls"},
	{M("{namespaces: [{Prefix: namespacex}]}"), "-tls"},
	{M("{namespaces: [{Suffix: xnamespace}]}"), "-tls"},
	/* ztunnel compares "" for plaintext: an empty Exact/Prefix accepts it */
	{M("{namespaces: [{Exact: ''}]}"), "+plain -tls -alt"},
	{M("{namespaces: [{Prefix: ''}]}"), "+plain +tls +alt"},
	{M("{namespaces: [{Exact: nope}, {Exact: ns-alt}]}"), "-plain -tls +alt"},
	{M("{notNamespaces: [{Exact: nope}, {Exact: ns-alt}]}"), "+plain +tls -alt"},
	/* YAML-tagged string matches are the same thing */
	{M("{namespaces: [!Exact namespace]}"), "-plain +tls -alt"},
	{M("{namespaces: [!Prefix ns-]}"), "-plain -tls +alt"},

	/* principals: "<td>/ns/<ns>/sa/<sa>", "spiffe://" removed */
	{M("{principals: [{Exact: td/ns/namespace/sa/account}]}"), "-plain +tls -alt -otd +v6"},
	{M("{notPrincipals: [{Exact: td/ns/namespace/sa/account}]}"), "+plain -tls +alt +otd"},
	{M("{principals: [{Exact: 'spiffe://td/ns/namespace/sa/account'}]}"), "-plain -tls -alt"},
	{M("{principals: [{Exact: td/ns/namespace/sa/accoun}]}"), "-tls"},
	{M("{principals: [{Exact: td/ns/namespace/sa/accountx}]}"), "-tls"},
	{M("{principals: [{Prefix: td/}]}"), "-plain +tls -alt -otd"},
	{M("{principals: [{Prefix: td}]}"), "-plain +tls +alt -otd"},
	{M("{principals: [{Prefix: td/ns/namespace/sa/account}]}"), "+tls"},
	{M("{principals: [{Prefix: td/ns/namespace/sa/accountx}]}"), "-tls"},
	{M("{notPrincipals: [{Prefix: td/}]}"), "+plain -tls +alt +otd"},
	{M("{principals: [{Suffix: /sa/account}]}"), "-plain +tls -alt +otd"},
	{M("{principals: [{Suffix: 'sa=alt'}]}"), "-plain -tls +alt"},
	{M("{principals: [{Suffix: td/ns/namespace/sa/account}]}"), "+tls +otd"},
	{M("{principals: [{Suffix: .td/ns/namespace/sa/account}]}"), "-tls +otd"},
	{M("{principals: [{Suffix: xtd/ns/namespace/sa/account}]}"), "-tls"},
	{M("{principals: [{Suffix: ns/namespace/sa/}]}"), "-tls"},
	{M("{notPrincipals: [{Suffix: /sa/account}]}"), "+plain -tls +alt"},
	/* no identity: no principal matches, not even an empty prefix or Presence */
	{M("{principals: [{Prefix: ''}]}"), "-plain +tls +alt"},
	{M("{principals: [{Suffix: ''}]}"), "-plain +tls"},
	{M("{principals: [{Presence: []}]}"), "-plain +tls +alt -v6plain"},
	{M("{notPrincipals: [{Presence: []}]}"), "+plain -tls -alt +v6plain"},
	{M("{principals: [{Exact: nope}, {Suffix: 'sa=alt'}]}"), "-plain -tls +alt"},

	/* serviceAccounts: namespace and service account, trust domain ignored */
	{M("{serviceAccounts: [{namespace: namespace, serviceAccount: account}]}"),
	 "-plain +tls -alt +otd"},
	{M("{notServiceAccounts: [{namespace: namespace, serviceAccount: account}]}"),
	 "+plain -tls +alt -otd"},
	{M("{serviceAccounts: [{namespace: namespace, serviceAccount: accoun}]}"), "-tls"},
	{M("{serviceAccounts: [{namespace: namespac, serviceAccount: account}]}"), "-tls"},
	{M("{serviceAccounts: [{namespace: namespace, serviceAccount: accountx}]}"), "-tls"},
	{M("{serviceAccounts: [{namespace: namespace, serviceAccount: ''}]}"), "-tls -plain"},
	{M("{serviceAccounts: [{namespace: nope, serviceAccount: x},"
	   " {namespace: ns-alt, serviceAccount: 'sa=alt'}]}"),
	 "-plain -tls +alt"},
	{M("{notServiceAccounts: [{namespace: nope, serviceAccount: x}]}"), "+plain +tls +alt"},

	/* sourceIps */
	{M("{sourceIps: [127.0.0.1/32]}"), "+plain +tls -alt"},
	{M("{sourceIps: [127.0.0.1]}"), "+plain +tls -alt"},
	{M("{notSourceIps: [127.0.0.1/32]}"), "-plain -tls +alt"},
	{M("{sourceIps: [127.0.0.0/30]}"), "+plain +alt"},
	{M("{sourceIps: [127.0.0.2/31]}"), "-plain +alt"},
	{M("{sourceIps: [127.0.0.77/24]}"), "+plain +alt"}, /* host bits ignored */
	{M("{sourceIps: [0.0.0.0/0]}"), "+plain +alt -v6 -v6plain +mapped"},
	{M("{notSourceIps: [0.0.0.0/0]}"), "-plain +v6"},
	{M("{sourceIps: ['::/0']}"), "-plain +v6 +v6plain -mapped"},
	{M("{notSourceIps: ['::/0']}"), "+plain -v6 +mapped"},
	{M("{sourceIps: ['fd00::/64']}"), "+v6 -plain"},
	{M("{sourceIps: ['fd00::1/128']}"), "+v6"},
	{M("{sourceIps: ['fd00::1']}"), "+v6"},
	{M("{sourceIps: ['fd00::2/128']}"), "-v6"},
	{M("{sourceIps: ['fd00::/112']}"), "+v6edge"},
	{M("{sourceIps: ['fd00::fffe/127']}"), "+v6edge -v6"},
	{M("{sourceIps: [10.1.2.0/25]}"), "+edge"},
	{M("{sourceIps: [10.1.2.128/25]}"), "-edge"},
	{M("{sourceIps: [10.1.2.127/32]}"), "+edge"},
	{M("{sourceIps: [10.1.2.126/31]}"), "+edge"},
	/* v4-mapped connection addresses are IPv4; a v4-mapped CIDR is IPv6 */
	{M("{sourceIps: [127.0.0.1/32]}"), "+mapped"},
	{M("{sourceIps: ['::ffff:127.0.0.1/128']}"), "-mapped -plain"},
	{M("{sourceIps: [10.0.0.0/8, 127.0.0.3]}"), "-plain +alt +edge"},

	/* destinationIps */
	{M("{destinationIps: [127.0.0.2/32]}"), "+plain +tls -alt"},
	{M("{notDestinationIps: [127.0.0.2/32]}"), "-plain -tls +alt"},
	{M("{destinationIps: [127.0.0.1/24]}"), "+plain +tls +alt"},
	{M("{destinationIps: [10.1.2.0/25]}"), "-edge"},
	{M("{destinationIps: [10.1.2.128/25]}"), "+edge"},
	{M("{notDestinationIps: [10.1.2.128/25]}"), "-edge +plain"},
	{M("{destinationIps: ['fd00::2']}"), "+v6 -plain"},
	{M("{destinationIps: ['fd00::/112']}"), "-v6edge +v6"},
	{M("{destinationIps: ['fd00::1:0/112']}"), "+v6edge -v6"},
	{M("{destinationIps: [127.0.0.2]}"), "+mapped"},
	{M("{notDestinationIps: ['::/0']}"), "+plain -v6 +mapped"},

	/* destinationPorts */
	{M("{destinationPorts: [8080]}"), "+plain +tls -alt"},
	{M("{notDestinationPorts: [8080]}"), "-plain -tls +alt"},
	{M("{destinationPorts: [80, 9090]}"), "-plain +alt +edge"},
	{M("{notDestinationPorts: [80, 9090]}"), "+plain -alt -edge"},

	/* fields AND'd; positive and negative of one field */
	{M("{namespaces: [{Exact: namespace}], destinationPorts: [8080]}"), "-plain +tls -alt"},
	{M("{namespaces: [{Exact: namespace}], destinationPorts: [9090]}"), "-tls"},
	{M("{principals: [{Presence: []}], notPrincipals: [{Exact: td/ns/namespace/sa/account}]}"),
	 "-plain -tls +alt"},
	{M("{namespaces: [{Presence: []}], notNamespaces: [{Exact: ns-alt}]}"), "-plain +tls -alt"},
	{M("{sourceIps: [127.0.0.0/24], notSourceIps: [127.0.0.3]}"), "+plain -alt"},
	{M("{destinationPorts: [8080], notDestinationPorts: [8080]}"), "-plain -tls"},
	{M("{sourceIps: [127.0.0.1], destinationIps: [127.0.0.2], destinationPorts: [8080],"
	   " namespaces: [{Exact: namespace}], principals: [{Suffix: /account}],"
	   " serviceAccounts: [{namespace: namespace, serviceAccount: account}]}"),
	 "-plain +tls -alt +otd"},
	{M("{notSourceIps: [10.0.0.0/8], notDestinationIps: [10.0.0.0/8],"
	   " notDestinationPorts: [1], notNamespaces: [{Exact: x}],"
	   " notPrincipals: [{Exact: x}], notServiceAccounts: [{namespace: x, serviceAccount: y}]}"),
	 "+plain +tls +alt -edge"},

	/* structure: a policy without rules matches nothing; a rule without
	 * clauses and a clause without matches match everything; an empty
	 * match is skipped */
	{"[]", "-plain -tls -alt"},
	{"[[]]", "+plain +tls +alt"},
	{"[[[]]]", "+plain +tls +alt"},
	{M("{}"), "-plain -tls -alt"},
	{M("{}, {}"), "-plain -tls"},
	{M("{}, {destinationPorts: [8080]}"), "+plain +tls -alt"},
	{M("{sourceIps: []}"), "-plain -tls"}, /* empty lists: an empty match */
	/* clauses AND'd, matches OR'd (ztunnel's nesting test) */
	{"[[[{namespaces: [{Exact: a}]}, {namespaces: [{Exact: b}]}], [{destinationPorts: [80]}]]]",
	 "+a80 +b80 -bad80 -b81 -plain"},
	/* rules OR'd */
	{"[[[{namespaces: [{Exact: a}]}]], [[{namespaces: [{Exact: b}]}]]]", "+a80 +b80 -bad80 +b81"},
	{"[[[{destinationPorts: [80]}], []]]", "+a80 -b81"},
	{"[[[{destinationPorts: [80]}], [{}]]]", "-a80 -b81"},
	{"[[[{destinationPorts: [81]}]], []]", "+a80 +b81 +plain"},
	{"[[[{destinationPorts: [81]}]], [[{namespaces: [{Exact: a}]}]]]", "+a80 +b81 -b80"},
};

static void run_match_rows(void)
{
	char yaml[2048], label[1024], buf[128];
	for (size_t i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
		const struct match_row *row = &match_rows[i];
		for (int deny = 0; deny < 2; deny++) {
			snprintf(label, sizeof(label), "match %zu %s %s", i, deny ? "Deny" : "Allow",
				 row->rules);
			check_label = label;
			snprintf(yaml, sizeof(yaml),
				 "workloads:\n"
				 "- {uid: w, name: w, namespace: dstns, workloadIps: [127.0.0.2]}\n"
				 "policies:\n"
				 "- {name: p, namespace: dstns, scope: Namespace, action: %s,\n"
				 "   rules: %s}\n",
				 deny ? "Deny" : "Allow", row->rules);
			struct zt_snapshot *s = parse(yaml);
			if (!s)
				continue;
			struct zt_authz_index *ix = build(s);
			const char *e = row->expect;
			while (ix && *e) {
				while (*e == ' ')
					e++;
				bool want = *e++ == '+';
				size_t n = strcspn(e, " ");
				const struct tconn *tc = find_conn(e, n);
				e += n;
				snprintf(label, sizeof(label), "match %zu %s %s %s", i,
					 deny ? "Deny" : "Allow", tc->name, row->rules);
				struct connbuf cb;
				const struct zt_authz_conn *c = make_conn(&cb, tc->src, tc->dst, tc->id);
				CHECK(zt_authz_policy_matches(&s->policies[0], c) == want);
				struct zt_authz_result res;
				int r = zt_authz_check(ix, &s->workloads[0], c, &res);
				bool allowed = deny ? !want : want;
				CHECK_INT(res.allowed, allowed);
				CHECK_INT(r, allowed ? 0 : -EACCES);
				CHECK_INT(res.reason, deny ? (want ? ZT_AUTHZ_DENY_MATCHED
								   : ZT_AUTHZ_NO_ALLOW_POLICIES)
							   : (want ? ZT_AUTHZ_ALLOW_MATCHED
								   : ZT_AUTHZ_NOT_ALLOWED));
				if (want)
					CHECK_STR(res.policy ? key_of(res.policy, buf, sizeof(buf)) : NULL,
						  "dstns/p");
				else
					CHECK(res.policy == NULL);
				check_no_dry_run(&res);
			}
			zt_authz_index_free(ix);
			zt_snapshot_free(s);
		}
	}
	check_label = "";
}

/* ---- 2-5. scenarios: several workloads and policies ---- */

struct scase {
	const char *wl; /* uid; NULL = no destination workload */
	const char *src, *dst, *id;
	bool allowed;
	enum zt_authz_reason reason;
	const char *policy; /* deciding policy "ns/name", NULL = none */
	/* dry run: NULL = none expected; else the matched dry-run policies,
	 * comma-separated, in order, and the two flags */
	const char *dry;
	bool dry_no_allow, dry_allowed;
	unsigned n_dry; /* when more than are stored */
};

#define ALLOW_NONE(w, s, d, i) {w, s, d, i, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL}
#define ALLOW_BY(w, s, d, i, p) {w, s, d, i, true, ZT_AUTHZ_ALLOW_MATCHED, p}
#define DENY_BY(w, s, d, i, p) {w, s, d, i, false, ZT_AUTHZ_DENY_MATCHED, p}
#define NOT_ALLOWED(w, s, d, i) {w, s, d, i, false, ZT_AUTHZ_NOT_ALLOWED, NULL}

static const struct zt_workload *find_wl(const struct zt_snapshot *s, const char *uid)
{
	if (!uid)
		return NULL;
	const struct zt_workload *w = zt_snapshot_workload_by_uid(s, uid);
	if (!w) {
		fprintf(stderr, "no test workload %s\n", uid);
		exit(2);
	}
	return w;
}

static void check_case(const char *table, size_t i, const struct scase *k,
		       const struct zt_authz_index *ix, const struct zt_workload *w, bool foreign)
{
	char label[256], buf[128], dry[512];
	snprintf(label, sizeof(label), "%s %zu%s: %s %s->%s %s", table, i,
		 foreign ? " (other snapshot)" : "", k->wl ? k->wl : "-", k->src, k->dst,
		 k->id ? k->id : "plaintext");
	check_label = label;
	struct connbuf cb;
	const struct zt_authz_conn *c = make_conn(&cb, k->src, k->dst, k->id);
	struct zt_authz_result res;
	memset(&res, 0x5a, sizeof(res)); /* every field must be set */
	int r = zt_authz_check(ix, w, c, &res);
	CHECK_INT(res.allowed, k->allowed);
	CHECK_INT(r, k->allowed ? 0 : -EACCES);
	CHECK_INT(res.reason, k->reason);
	if (k->policy)
		CHECK_STR(res.policy ? key_of(res.policy, buf, sizeof(buf)) : NULL, k->policy);
	else
		CHECK(res.policy == NULL);
	if (!k->dry) {
		check_no_dry_run(&res);
	} else {
		dry[0] = 0;
		for (uint32_t j = 0; j < res.n_dry_run && j < ZT_AUTHZ_DRY_RUN_MAX; j++) {
			size_t l = strlen(dry);
			snprintf(dry + l, sizeof(dry) - l, "%s%s", j ? "," : "",
				 key_of(res.dry_run[j], buf, sizeof(buf)));
		}
		CHECK_STR(dry, k->dry);
		if (k->n_dry)
			CHECK_INT(res.n_dry_run, k->n_dry);
		CHECK_INT(res.dry_run_no_allow_match, k->dry_no_allow);
		CHECK_INT(res.dry_run_allowed, k->dry_allowed);
	}
	check_label = "";
}

/* Run `cases` against `cfg`; also with workloads taken from a second parse
 * of `cfg` (not in the index's snapshot: resolved by content). */
static void run_cases(const char *table, const char *cfg, const struct scase *cases, size_t n)
{
	check_label = table;
	struct zt_snapshot *s = parse(cfg), *other = parse(cfg);
	struct zt_authz_index *ix = s ? build(s) : NULL;
	if (!s || !other || !ix)
		goto out;
	for (size_t i = 0; i < n; i++) {
		check_case(table, i, &cases[i], ix, find_wl(s, cases[i].wl), false);
		check_case(table, i, &cases[i], ix, find_wl(other, cases[i].wl), true);
	}
out:
	zt_authz_index_free(ix);
	zt_snapshot_free(s);
	zt_snapshot_free(other);
	check_label = "";
}

/* Scope: which policies apply to which workload. */
static const char scope_cfg[] =
	"workloads:\n"
	"- {uid: w-a, name: a, namespace: app, workloadIps: [10.0.0.1],\n"
	"   authorizationPolicies: [app/sel-a, app/missing, other/sel-x,\n"
	"     istio-system/deny-6666, app/ns-allow, app/sel-a, nowhere/gone]}\n"
	"- {uid: w-b, name: b, namespace: app, workloadIps: [10.0.0.2]}\n"
	"- {uid: w-c, name: c, namespace: other, workloadIps: [10.0.0.3]}\n"
	"- {uid: w-d, name: d, namespace: lonely, workloadIps: [10.0.0.4]}\n"
	"policies:\n"
	/* Global: from the root namespace, and from elsewhere (still global) */
	"- {name: deny-6666, namespace: istio-system, scope: Global, action: Deny,\n"
	"   rules: [[[{destinationPorts: [6666]}]]]}\n"
	"- {name: global-elsewhere, namespace: other, scope: Global, action: Deny,\n"
	"   rules: [[[{destinationPorts: [7777]}]]]}\n"
	/* Namespace */
	"- {name: ns-allow, namespace: app, scope: Namespace, action: Allow,\n"
	"   rules: [[[{principals: [{Exact: cluster.local/ns/client/sa/good}]}]]]}\n"
	"- {name: ns-other-deny, namespace: other, scope: Namespace, action: Deny,\n"
	"   rules: [[[{notNamespaces: [{Exact: other}]}]]]}\n"
	/* WorkloadSelector: applies only where named */
	"- {name: sel-a, namespace: app, scope: WorkloadSelector, action: Deny,\n"
	"   rules: [[[{sourceIps: [10.9.9.9]}]]]}\n"
	"- {name: sel-x, namespace: other, scope: WorkloadSelector, action: Allow,\n"
	"   rules: [[[{namespaces: [{Exact: friend}]}]]]}\n"
	"- {name: sel-unused, namespace: app, scope: WorkloadSelector, action: Deny,\n"
	"   rules: [[]]}\n";

#define GOOD "cluster.local/client/good"
#define BAD "cluster.local/client/bad"
#define FRIEND "cluster.local/friend/x"
#define OTHER "cluster.local/other/y"

static const struct scase scope_cases[] = {
	/* lonely: only the global policies */
	ALLOW_NONE("w-d", "10.0.0.9", "10.0.0.4:80", GOOD),
	ALLOW_NONE("w-d", "10.0.0.9", "10.0.0.4:80", NULL),
	DENY_BY("w-d", "10.0.0.9", "10.0.0.4:6666", GOOD, "istio-system/deny-6666"),
	DENY_BY("w-d", "10.0.0.9", "10.0.0.4:7777", NULL, "other/global-elsewhere"),
	/* app/b: global + app's namespace policy; not sel-a, not sel-unused */
	ALLOW_BY("w-b", "10.0.0.9", "10.0.0.2:80", GOOD, "app/ns-allow"),
	NOT_ALLOWED("w-b", "10.0.0.9", "10.0.0.2:80", BAD),
	NOT_ALLOWED("w-b", "10.0.0.9", "10.0.0.2:80", NULL),
	ALLOW_BY("w-b", "10.9.9.9", "10.0.0.2:80", GOOD, "app/ns-allow"),
	/* DENY over ALLOW */
	DENY_BY("w-b", "10.0.0.9", "10.0.0.2:6666", GOOD, "istio-system/deny-6666"),
	/* app/a: also its named policies, one from another namespace; unknown
	 * names skipped; duplicates harmless */
	ALLOW_BY("w-a", "10.0.0.9", "10.0.0.1:80", GOOD, "app/ns-allow"),
	DENY_BY("w-a", "10.9.9.9", "10.0.0.1:80", GOOD, "app/sel-a"),
	ALLOW_BY("w-a", "10.0.0.9", "10.0.0.1:80", FRIEND, "other/sel-x"),
	NOT_ALLOWED("w-a", "10.0.0.9", "10.0.0.1:80", BAD),
	NOT_ALLOWED("w-a", "10.0.0.9", "10.0.0.1:80", NULL),
	DENY_BY("w-a", "10.0.0.9", "10.0.0.1:6666", FRIEND, "istio-system/deny-6666"),
	/* other/c: its namespace's DENY; sel-x is not named by c */
	ALLOW_NONE("w-c", "10.0.0.9", "10.0.0.3:80", OTHER),
	DENY_BY("w-c", "10.0.0.9", "10.0.0.3:80", FRIEND, "other/ns-other-deny"),
	DENY_BY("w-c", "10.0.0.9", "10.0.0.3:80", NULL, "other/ns-other-deny"),
	/* no destination workload */
	{NULL, "10.0.0.9", "10.0.0.3:80", GOOD, false, ZT_AUTHZ_NO_WORKLOAD, NULL},
};

/* Dry run: evaluated and reported, never enforced. */
static const char dry_cfg[] =
	"workloads:\n"
	"- {uid: w1, name: w1, namespace: dr1, workloadIps: [10.1.0.1]}\n"
	"- {uid: w2, name: w2, namespace: dr2, workloadIps: [10.1.0.2]}\n"
	"- {uid: w3, name: w3, namespace: dr3, workloadIps: [10.1.0.3]}\n"
	"- {uid: w4, name: w4, namespace: dr4, workloadIps: [10.1.0.4],\n"
	"   authorizationPolicies: [dr4/sel-dry-allow-all]}\n"
	"policies:\n"
	/* dr1: dry-run only */
	"- {name: dry-deny-80, namespace: dr1, scope: Namespace, action: Deny, dryRun: true,\n"
	"   rules: [[[{destinationPorts: [80]}]]]}\n"
	"- {name: dry-allow-good, namespace: dr1, scope: Namespace, action: Allow, dryRun: true,\n"
	"   rules: [[[{principals: [{Exact: cluster.local/ns/client/sa/good}]}]]]}\n"
	"- {name: not-dry, namespace: dr1, scope: Namespace, action: Deny, dryRun: false,\n"
	"   rules: [[[{destinationPorts: [99]}]]]}\n"
	/* dr2: an enforced ALLOW and a dry-run DENY */
	"- {name: allow-good, namespace: dr2, scope: Namespace, action: Allow,\n"
	"   rules: [[[{principals: [{Exact: cluster.local/ns/client/sa/good}]}]]]}\n"
	"- {name: dry-deny-good, namespace: dr2, scope: Namespace, action: Deny, dryRun: true,\n"
	"   rules: [[[{principals: [{Exact: cluster.local/ns/client/sa/good}]}]]]}\n"
	"- {name: dry-allow-plain, namespace: dr2, scope: Namespace, action: Allow, dryRun: true,\n"
	"   rules: [[[{notPrincipals: [{Presence: []}]}]]]}\n"
	/* dr3: more dry-run matches than a result stores */
	"- {name: d0, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d1, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d2, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d3, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d4, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d5, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d6, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d7, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d8, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	"- {name: d9, namespace: dr3, scope: Namespace, action: Deny, dryRun: true, rules: [[]]}\n"
	/* dr4: an enforced DENY stops before dry-run ALLOWs are looked at */
	"- {name: deny-81, namespace: dr4, scope: Namespace, action: Deny,\n"
	"   rules: [[[{destinationPorts: [81]}]]]}\n"
	"- {name: sel-dry-allow-all, namespace: dr4, scope: WorkloadSelector, action: Allow,\n"
	"   dryRun: true, rules: [[]]}\n";

static const struct scase dry_cases[] = {
	{"w1", "10.0.0.9", "10.1.0.1:80", GOOD, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL,
	 "dr1/dry-deny-80,dr1/dry-allow-good", false, false},
	{"w1", "10.0.0.9", "10.1.0.1:81", GOOD, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL,
	 "dr1/dry-allow-good", false, true},
	/* "dry-run no allow policies match" */
	{"w1", "10.0.0.9", "10.1.0.1:81", BAD, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL, "", true,
	 false},
	{"w1", "10.0.0.9", "10.1.0.1:80", NULL, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL,
	 "dr1/dry-deny-80", true, false},
	/* the enforced DENY among them still works */
	{"w1", "10.0.0.9", "10.1.0.1:99", BAD, false, ZT_AUTHZ_DENY_MATCHED, "dr1/not-dry", "",
	 false, false},
	{"w2", "10.0.0.9", "10.1.0.2:80", GOOD, true, ZT_AUTHZ_ALLOW_MATCHED, "dr2/allow-good",
	 "dr2/dry-deny-good", false, false},
	{"w2", "10.0.0.9", "10.1.0.2:80", BAD, false, ZT_AUTHZ_NOT_ALLOWED, NULL, "", false, false},
	/* a dry-run ALLOW would have let plaintext in */
	{"w2", "10.0.0.9", "10.1.0.2:80", NULL, false, ZT_AUTHZ_NOT_ALLOWED, NULL,
	 "dr2/dry-allow-plain", false, true},
	{"w3", "10.0.0.9", "10.1.0.3:80", GOOD, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL,
	 "dr3/d0,dr3/d1,dr3/d2,dr3/d3,dr3/d4,dr3/d5,dr3/d6,dr3/d7", false, false, 10},
	{"w4", "10.0.0.9", "10.1.0.4:80", GOOD, true, ZT_AUTHZ_NO_ALLOW_POLICIES, NULL,
	 "dr4/sel-dry-allow-all", false, true},
	{"w4", "10.0.0.9", "10.1.0.4:81", GOOD, false, ZT_AUTHZ_DENY_MATCHED, "dr4/deny-81", "",
	 false, false},
};

/* PeerAuthentication as istiod sends it to ztunnel (istio/istio
 * pilot/pkg/serviceregistry/kube/controller/ambient/authorization.go):
 * STRICT -> the workload names "<root ns>/istio_converted_static_strict", a
 * selector-scoped DENY of notPrincipals:[Presence]; a STRICT workload policy
 * with a PERMISSIVE port becomes "converted_peer_authentication_<name>", DENY
 * when [no principal AND port not excepted]; PERMISSIVE with a STRICT port is
 * DENY when [no principal AND that port]; PERMISSIVE/DISABLE -> nothing. */
static const char pa_cfg[] =
	"workloads:\n"
	"- {uid: strict, name: strict, namespace: pa, workloadIps: [10.2.0.1],\n"
	"   authorizationPolicies: [istio-system/istio_converted_static_strict]}\n"
	"- {uid: permissive, name: permissive, namespace: pa, workloadIps: [10.2.0.2]}\n"
	"- {uid: strict-8080-permissive, name: s8, namespace: pa, workloadIps: [10.2.0.3],\n"
	"   authorizationPolicies: [pa/converted_peer_authentication_pa1]}\n"
	"- {uid: permissive-9090-strict, name: p9, namespace: pa, workloadIps: [10.2.0.4],\n"
	"   authorizationPolicies: [pa/converted_peer_authentication_pa2]}\n"
	"- {uid: strict-and-allow, name: sa, namespace: pa2, workloadIps: [10.2.0.5],\n"
	"   authorizationPolicies: [istio-system/istio_converted_static_strict]}\n"
	"policies:\n"
	"- {name: istio_converted_static_strict, namespace: istio-system,\n"
	"   scope: WorkloadSelector, action: Deny,\n"
	"   rules: [[[{notPrincipals: [{Presence: []}]}]]]}\n"
	"- {name: converted_peer_authentication_pa1, namespace: pa, scope: WorkloadSelector,\n"
	"   action: Deny, rules: [[[{notPrincipals: [{Presence: []}]}],\n"
	"                         [{notDestinationPorts: [8080]}]]]}\n"
	"- {name: converted_peer_authentication_pa2, namespace: pa, scope: WorkloadSelector,\n"
	"   action: Deny, rules: [[[{notPrincipals: [{Presence: []}], destinationPorts: [9090]}]]]}\n"
	"- {name: allow-all-from-ns, namespace: pa2, scope: Namespace, action: Allow,\n"
	"   rules: [[[{namespaces: [{Prefix: ''}]}]]]}\n";

#define STRICT_KEY "istio-system/istio_converted_static_strict"

static const struct scase pa_cases[] = {
	DENY_BY("strict", "10.0.0.9", "10.2.0.1:80", NULL, STRICT_KEY),
	ALLOW_NONE("strict", "10.0.0.9", "10.2.0.1:80", GOOD),
	ALLOW_NONE("strict", "fd00::9", "[fd00::1]:80", GOOD),
	DENY_BY("strict", "fd00::9", "[fd00::1]:80", NULL, STRICT_KEY),
	ALLOW_NONE("permissive", "10.0.0.9", "10.2.0.2:80", NULL),
	ALLOW_NONE("permissive", "10.0.0.9", "10.2.0.2:80", GOOD),
	ALLOW_NONE("strict-8080-permissive", "10.0.0.9", "10.2.0.3:8080", NULL),
	DENY_BY("strict-8080-permissive", "10.0.0.9", "10.2.0.3:80", NULL,
		"pa/converted_peer_authentication_pa1"),
	ALLOW_NONE("strict-8080-permissive", "10.0.0.9", "10.2.0.3:80", GOOD),
	DENY_BY("permissive-9090-strict", "10.0.0.9", "10.2.0.4:9090", NULL,
		"pa/converted_peer_authentication_pa2"),
	ALLOW_NONE("permissive-9090-strict", "10.0.0.9", "10.2.0.4:8080", NULL),
	ALLOW_NONE("permissive-9090-strict", "10.0.0.9", "10.2.0.4:9090", GOOD),
	/* an ALLOW that would let plaintext in does not beat the STRICT DENY */
	DENY_BY("strict-and-allow", "10.0.0.9", "10.2.0.5:80", NULL, STRICT_KEY),
	ALLOW_BY("strict-and-allow", "10.0.0.9", "10.2.0.5:80", GOOD, "pa2/allow-all-from-ns"),
};

/* The Istio guide "L4 networking and mTLS with ztunnel": allow-sleep, then
 * the same policy with an HTTP condition, which istiod drops from an ALLOW
 * (leaving no rules, so nothing matches). */
static const char guide_cfg[] =
	"workloads:\n"
	"- {uid: httpbin, name: httpbin, namespace: ambient-demo, serviceAccount: httpbin,\n"
	"   protocol: HBONE, workloadIps: [10.3.0.1],\n"
	"   authorizationPolicies: [ambient-demo/allow-sleep]}\n"
	"- {uid: httpbin-l7, name: httpbin-l7, namespace: ambient-demo2, serviceAccount: httpbin,\n"
	"   protocol: HBONE, workloadIps: [10.3.0.2],\n"
	"   authorizationPolicies: [ambient-demo2/allow-sleep]}\n"
	"policies:\n"
	"- {name: allow-sleep, namespace: ambient-demo, scope: WorkloadSelector, action: Allow,\n"
	"   rules: [[[{principals: [{Exact: cluster.local/ns/ambient-demo/sa/sleep}]}]]]}\n"
	"- {name: allow-sleep, namespace: ambient-demo2, scope: WorkloadSelector, action: Allow,\n"
	"   rules: []}\n";

#define SLEEP "cluster.local/ambient-demo/sleep"
#define NOTSLEEP "cluster.local/ambient-demo/notsleep"

static const struct scase guide_cases[] = {
	ALLOW_BY("httpbin", "10.3.0.9", "10.3.0.1:8000", SLEEP, "ambient-demo/allow-sleep"),
	NOT_ALLOWED("httpbin", "10.3.0.8", "10.3.0.1:8000", NOTSLEEP),
	NOT_ALLOWED("httpbin", "10.3.0.7", "10.3.0.1:8000", NULL),
	NOT_ALLOWED("httpbin-l7", "10.3.0.9", "10.3.0.2:8000", SLEEP),
	NOT_ALLOWED("httpbin-l7", "10.3.0.8", "10.3.0.2:8000", NOTSLEEP),
};

/* ---- index: stats, unknown names logged, empty and NULL inputs ---- */

static void test_index(void)
{
	check_label = "index";
	struct zt_snapshot *s = parse(scope_cfg);
	if (!s)
		return;
	/* capture the "rbac" warnings */
	FILE *logf = tmpfile();
	CHECK(logf != NULL);
	if (logf)
		zt_log_set_fd(fileno(logf));
	struct zt_authz_index *ix = build(s);
	zt_log_set_fd(2);
	if (logf) {
		char text[4096] = {0};
		rewind(logf);
		size_t n = fread(text, 1, sizeof(text) - 1, logf);
		text[n] = 0;
		CHECK(strstr(text, "rbac") && strstr(text, "skipping unknown policy"));
		CHECK(strstr(text, "app/missing") && strstr(text, "nowhere/gone"));
		CHECK(strstr(text, "w-a") != NULL);
		fclose(logf);
	}
	const struct zt_authz_stats *st = zt_authz_index_stats(ix);
	CHECK_INT(st->policies, 7);
	CHECK_INT(st->global, 2);
	CHECK_INT(st->namespaces, 2);
	CHECK_INT(st->unknown_refs, 2);
	CHECK_INT(st->workload_refs, 2); /* w-a: app/sel-a, other/sel-x */
	CHECK_INT(st->skipped_actions, 0);
	CHECK(zt_authz_index_snapshot(ix) == s);
	zt_authz_index_free(ix);

	/* no index: no policies, everything allowed (but a workload is needed) */
	struct connbuf cb;
	const struct zt_authz_conn *c = make_conn(&cb, "10.0.0.9", "10.0.0.1:80", NULL);
	struct zt_authz_result res;
	CHECK_INT(zt_authz_check(NULL, &s->workloads[0], c, &res), 0);
	CHECK(res.allowed && res.reason == ZT_AUTHZ_NO_ALLOW_POLICIES);
	CHECK_INT(zt_authz_check(NULL, NULL, c, &res), -EACCES);
	CHECK(!res.allowed && res.reason == ZT_AUTHZ_NO_WORKLOAD);
	CHECK_INT(zt_authz_index_stats(NULL)->policies, 0);
	zt_snapshot_free(s);

	/* an empty snapshot */
	s = zt_snapshot_empty();
	CHECK(s != NULL);
	ix = build(s);
	CHECK_INT(zt_authz_index_stats(ix)->policies, 0);
	struct zt_workload stray = {.uid = "x", .name = "x", .namespace_ = "app",
				    .authorization_policies = NULL};
	CHECK_INT(zt_authz_check(ix, &stray, c, &res), 0);
	CHECK(res.reason == ZT_AUTHZ_NO_ALLOW_POLICIES);
	zt_authz_index_free(ix);
	zt_snapshot_free(s);
	zt_authz_index_free(NULL);

	/* AUDIT (not sent by istiod, not in the local config form) is ignored */
	s = parse("workloads:\n- {uid: w, name: w, namespace: n, workloadIps: [10.0.0.1]}\n"
		  "policies:\n- {name: p, namespace: n, scope: Namespace, action: Deny,"
		  " rules: [[]]}\n");
	if (s) {
		s->policies[0].action = ZT_AUTHZ_AUDIT;
		ix = build(s);
		CHECK_INT(zt_authz_index_stats(ix)->skipped_actions, 1);
		CHECK_INT(zt_authz_check(ix, &s->workloads[0], c, &res), 0);
		CHECK(res.reason == ZT_AUTHZ_NO_ALLOW_POLICIES);
		zt_authz_index_free(ix);
		zt_snapshot_free(s);
	}
	check_label = "";
}

static void test_result_str(void)
{
	check_label = "result_str";
	struct zt_authz_policy p = {.name = "deny-all", .namespace_ = "foo"};
	struct zt_authz_result r = {.reason = ZT_AUTHZ_DENY_MATCHED, .policy = &p};
	char buf[128];
	CHECK_STR(zt_authz_result_str(&r, buf, sizeof(buf)), "explicitly denied by: foo/deny-all");
	r.reason = ZT_AUTHZ_NOT_ALLOWED;
	r.policy = NULL;
	CHECK_STR(zt_authz_result_str(&r, buf, sizeof(buf)), "allow policies exist, but none allowed");
	r.reason = ZT_AUTHZ_NO_WORKLOAD;
	CHECK_STR(zt_authz_result_str(&r, buf, sizeof(buf)), "workload not found");
	r.reason = ZT_AUTHZ_ALLOW_MATCHED;
	r.policy = &p;
	CHECK_STR(zt_authz_result_str(&r, buf, sizeof(buf)), "allowed by: foo/deny-all");
	r.reason = ZT_AUTHZ_NO_ALLOW_POLICIES;
	CHECK_STR(zt_authz_result_str(&r, buf, sizeof(buf)), "allowed: no allow policies");
	r.reason = ZT_AUTHZ_DENY_MATCHED;
	CHECK_STR(zt_authz_result_str(&r, buf, 10), "explicitl");
	check_label = "";
}

/* ---- policies the parser rejects (a config error, never a crash) ---- */

static const char *const bad_policies[] = {
	"rules: [[[{sourceIps: [10.0.0.300/24]}]]]",
	"rules: [[[{sourceIps: [10.0.0.0/33]}]]]",
	"rules: [[[{destinationIps: ['fd00::/129']}]]]",
	"rules: [[[{destinationIps: [10.0.0.0/]}]]]",
	"rules: [[[{destinationPorts: [65536]}]]]",
	"rules: [[[{namespaces: [{Regex: x}]}]]]",
	"rules: [[[{namespaces: [{Exact: a, Prefix: b}]}]]]",
	"rules: [[[{principals: [{Presence: x}]}]]]",
	"rules: [[[{serviceAccounts: [{namespace: a}]}]]]",
	"rules: [[[{methods: [GET]}]]]",
	"rules: [[{destinationPorts: [80]}]]",
	"rules: [[[[]]]]",
	"rules: {}",
	"action: Audit, rules: []",
	"action: Custom, rules: []",
	"action: allow, rules: []",
	"scope: Cluster, rules: []",
	"dryRun: maybe, rules: []",
};

static void test_bad_policies(void)
{
	char yaml[1024], label[256];
	for (size_t i = 0; i < sizeof(bad_policies) / sizeof(bad_policies[0]); i++) {
		const char *body = bad_policies[i];
		snprintf(yaml, sizeof(yaml), "policies:\n- {name: p, namespace: n, %s%s%s}\n",
			 strstr(body, "scope:") ? "" : "scope: Namespace, ",
			 strstr(body, "action:") ? "" : "action: Allow, ", body);
		snprintf(label, sizeof(label), "bad policy %s", body);
		check_label = label;
		struct zt_snapshot *s = NULL;
		struct zt_config_error err = {{0}};
		int r = zt_config_parse(yaml, strlen(yaml), ZT_CONFIG_YAML, "bad.yaml", &s, &err);
		CHECK(r < 0);
		CHECK(s == NULL);
		CHECK(strstr(err.msg, "bad.yaml: policies[0]") == err.msg);
		zt_snapshot_free(s);
	}
	check_label = "";
}

int main(void)
{
	zt_log_configure("warn", false);
	run_match_rows();
	run_cases("scope", scope_cfg, scope_cases, sizeof(scope_cases) / sizeof(scope_cases[0]));
	run_cases("dry-run", dry_cfg, dry_cases, sizeof(dry_cases) / sizeof(dry_cases[0]));
	run_cases("peerauthn", pa_cfg, pa_cases, sizeof(pa_cases) / sizeof(pa_cases[0]));
	run_cases("guide", guide_cfg, guide_cases, sizeof(guide_cases) / sizeof(guide_cases[0]));
	test_index();
	test_result_str();
	test_bad_policies();
	return check_done("authz_test");
}
