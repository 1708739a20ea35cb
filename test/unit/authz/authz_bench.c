/* authz_bench.c - how fast is zt_authz_check() with a mesh-sized policy set?
 *
 * Builds a local config with 1,000 policies and 10,001 workloads, 50 of the
 * policies applying to the destination workload "target" (5 Global, 20 of its
 * namespace, 25 named by it), and times evaluations of connections that walk
 * all 50 (the ALLOW that matches is the last one looked at, or none does).
 * Prints parse and index build times and evaluations per second.
 * Not a meson test: run build/test/unit/authz/authz_bench [seconds-per-case].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authz/authz.h"

#define N_POLICIES 1000
#define N_NS 100
#define N_WORKLOADS 10000

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A typical L4 policy: from principals/namespace to ports, or from a CIDR.
 * `who` is the principal it lets in (or keeps out). */
static void policy(FILE *f, const char *name, const char *ns, const char *scope, const char *action,
		   const char *who)
{
	fprintf(f,
		"- {name: %s, namespace: %s, scope: %s, action: %s, rules: [\n"
		"   [[{principals: [{Exact: '%s'}, {Exact: cluster.local/ns/%s/sa/reader},\n"
		"                   {Prefix: cluster.local/ns/batch-}]},\n"
		"     {namespaces: [{Exact: monitoring}]}],\n"
		"    [{destinationPorts: [80, 443, 8080]}]],\n"
		"   [[{sourceIps: [10.200.0.0/16, 'fd00:200::/64'], notDestinationPorts: [15021]}]]]}\n",
		name, ns, scope, action, who, ns);
}

static char *make_config(size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	/* selector policies of namespace k >= 1: names p<i> with i % 99 == k - 1, odd i / 99 */
	fprintf(f, "workloads:\n");
	fprintf(f, "- {uid: target, name: target, namespace: ns0, workloadIps: [10.0.0.1],\n"
		   "   authorizationPolicies: [");
	for (int i = 0; i < 25; i++)
		fprintf(f, "%sns0/sel%d", i ? ", " : "", i);
	fprintf(f, "]}\n");
	for (int w = 0; w < N_WORKLOADS; w++) {
		int k = 1 + w % (N_NS - 1);
		fprintf(f, "- {uid: w%d, name: w%d, namespace: ns%d, workloadIps: [10.%d.%d.%d],\n"
			   "   authorizationPolicies: [",
			w, w, k, 1 + w / 65536, (w / 256) % 256, w % 256);
		/* its namespace's selector policies p<i>, i = (k - 1) + 99 * odd */
		int n = 0;
		for (int i = k - 1; i < N_POLICIES - 50; i += 99)
			if ((i / 99) % 2)
				fprintf(f, "%sns%d/p%d", n++ ? ", " : "", k, i);
		fprintf(f, "]}\n");
	}
	fprintf(f, "policies:\n");
	char name[32], ns[32];
	/* 5 Global DENY in the root namespace */
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "global%d", i);
		policy(f, name, "istio-system", "Global", "Deny", "cluster.local/ns/evil/sa/x");
	}
	/* 20 in ns0's namespace: 10 DENY, 10 ALLOW, none for our client */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "ns%d", i);
		policy(f, name, "ns0", "Namespace", i < 10 ? "Deny" : "Allow",
		       i < 10 ? "cluster.local/ns/evil/sa/y" : "cluster.local/ns/friend/sa/z");
	}
	/* 25 named by target: 10 DENY, 15 ALLOW, the last one for our client */
	for (int i = 0; i < 25; i++) {
		snprintf(name, sizeof(name), "sel%d", i);
		policy(f, name, "ns0", "WorkloadSelector", i < 10 ? "Deny" : "Allow",
		       i == 24 ? "cluster.local/ns/client/sa/app" : "cluster.local/ns/other/sa/w");
	}
	/* 950 elsewhere */
	for (int i = 0; i < N_POLICIES - 50; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		snprintf(ns, sizeof(ns), "ns%d", 1 + i % (N_NS - 1));
		policy(f, name, ns, (i / 99) % 2 ? "WorkloadSelector" : "Namespace",
		       i % 3 ? "Allow" : "Deny", "cluster.local/ns/client/sa/app");
	}
	if (fclose(f))
		return NULL;
	return buf;
}

static volatile int sink;

static void run(const char *what, const struct zt_authz_index *ix, const struct zt_workload *w,
		const struct zt_authz_conn *c, int want_allowed, double secs)
{
	struct zt_authz_result res;
	zt_authz_check(ix, w, c, &res);
	if ((int)res.allowed != want_allowed) {
		fprintf(stderr, "%s: unexpected decision %d\n", what, res.allowed);
		exit(1);
	}
	long n = 0;
	double t0 = now(), t;
	do {
		for (int i = 0; i < 10000; i++) {
			zt_authz_check(ix, w, c, &res);
			sink += res.allowed;
		}
		n += 10000;
		t = now();
	} while (t - t0 < secs);
	printf("%-58s %12.0f evaluations/s  %7.1f ns each\n", what, (double)n / (t - t0),
	       (t - t0) * 1e9 / (double)n);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	size_t len;
	char *cfg = make_config(&len);
	if (!cfg) {
		perror("config");
		return 1;
	}
	struct zt_snapshot *s = NULL, *other = NULL;
	struct zt_config_error err;
	double t0 = now();
	if (zt_config_parse(cfg, len, ZT_CONFIG_YAML, "bench.yaml", &s, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	double t1 = now();
	struct zt_authz_index *ix = NULL;
	if (zt_authz_index_build(s, &ix)) {
		fprintf(stderr, "index: out of memory\n");
		return 1;
	}
	double t2 = now();
	if (zt_config_parse(cfg, len, ZT_CONFIG_YAML, "bench.yaml", &other, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	free(cfg);
	const struct zt_authz_stats *st = zt_authz_index_stats(ix);
	printf("config: %zu bytes, %zu policies, %zu workloads; parse %.1f ms, index build %.2f ms\n",
	       len, s->n_policies, s->n_workloads, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
	printf("index: %zu global, %zu namespaces, %zu workload references\n", st->global,
	       st->namespaces, st->workload_refs);

	const struct zt_workload *w = zt_snapshot_workload_by_uid(s, "target");
	const struct zt_workload *w_other = zt_snapshot_workload_by_uid(other, "target");
	struct zt_ip src;
	struct zt_sockaddr dst;
	zt_ip_parse("10.0.0.5", &src);
	zt_sockaddr_parse("10.0.0.1:8080", &dst);
	struct zt_authz_identity app = {"cluster.local", "client", "app"};
	struct zt_authz_identity nope = {"cluster.local", "client", "nope"};
	struct zt_authz_conn c_app = {&src, &dst, &app}, c_nope = {&src, &dst, &nope},
			     c_plain = {&src, &dst, NULL};

	run("mTLS, allowed by the last of 50 policies", ix, w, &c_app, 1, secs);
	run("mTLS, no ALLOW matches (50 policies)", ix, w, &c_nope, 0, secs);
	run("plaintext, no ALLOW matches (50 policies)", ix, w, &c_plain, 0, secs);
	run("mTLS, allowed, workload of another snapshot (lookups)", ix, w_other, &c_app, 1, secs);

	zt_authz_index_free(ix);
	zt_snapshot_free(s);
	zt_snapshot_free(other);
	return sink == -1;
}
