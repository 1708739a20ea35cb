/* test_lookup.c - snapshot indexes: workloads by (network, IP) and uid,
 * services by (network, VIP) and "namespace/hostname", policies by key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "xds/snapshot.h"

static struct zt_snapshot *parse(const char *text)
{
	struct zt_snapshot *s = NULL;
	struct zt_config_error err;
	if (zt_config_parse(text, strlen(text), ZT_CONFIG_YAML, "t.yaml", &s, &err)) {
		fprintf(stderr, "parse: %s\n", err.msg);
		check_failures++;
	}
	return s;
}

static struct zt_ip ip(const char *s)
{
	struct zt_ip a;
	if (zt_ip_parse(s, &a)) {
		fprintf(stderr, "bad test IP %s\n", s);
		check_failures++;
	}
	return a;
}

static const char cfg[] =
	"workloads:\n"
	"- {uid: c//v1/Pod/ns/a, name: a, namespace: ns, workloadIps: [10.0.0.1, \"fd00::1\"]}\n"
	"- {uid: c//v1/Pod/ns/b, name: b, namespace: ns, network: net2, workloadIps: [10.0.0.1]}\n"
	"- {uid: host, name: h, namespace: ns, networkMode: HostNetwork, workloadIps: [10.0.0.9]}\n"
	/* same IP: the Pod wins over a non-Pod whatever the order */
	"- {uid: c//Pod/ns/p, name: pod, namespace: ns, workloadIps: [10.0.0.5]}\n"
	"- {uid: c//networking.istio.io/WorkloadEntry/ns/we, name: we, namespace: ns,\n"
	"   protocol: HBONE, workloadIps: [10.0.0.5]}\n"
	/* same IP, same rank: the later one wins; HBONE beats TCP */
	"- {uid: x1, name: x1, namespace: ns, workloadIps: [10.0.0.6]}\n"
	"- {uid: x2, name: x2, namespace: ns, workloadIps: [10.0.0.6]}\n"
	"- {uid: y1, name: y1, namespace: ns, protocol: HBONE, workloadIps: [10.0.0.7]}\n"
	"- {uid: y2, name: y2, namespace: ns, workloadIps: [10.0.0.7]}\n"
	"- {name: nouid, namespace: ns, workloadIps: [10.0.0.8]}\n"
	"services:\n"
	"- {name: s1, namespace: ns, hostname: s1.ns.svc.cluster.local,\n"
	"   vips: [/10.96.0.1, \"/fd00:96::1\", net2/10.96.0.1]}\n"
	"- {name: s1, namespace: other, hostname: s1.ns.svc.cluster.local, vips: [/10.96.0.2]}\n"
	"policies:\n"
	"- {name: p1, namespace: ns, scope: Namespace, action: Allow, rules: []}\n"
	"- {name: p1, namespace: '', scope: Global, action: Deny, rules: []}\n";

static void test_workloads(void)
{
	struct zt_snapshot *s = parse(cfg);
	if (!s)
		return;
	struct zt_ip a = ip("10.0.0.1");
	const struct zt_workload *w = zt_snapshot_workload_by_ip(s, NULL, &a);
	CHECK(w && !strcmp(w->name, "a"));
	CHECK(zt_snapshot_workload_by_ip(s, "", &a) == w);
	w = zt_snapshot_workload_by_ip(s, "net2", &a);
	CHECK(w && !strcmp(w->name, "b"));
	CHECK(zt_snapshot_workload_by_ip(s, "net3", &a) == NULL);
	struct zt_ip v6 = ip("fd00::1");
	w = zt_snapshot_workload_by_ip(s, NULL, &v6);
	CHECK(w && !strcmp(w->name, "a"));
	struct zt_ip h = ip("10.0.0.9");
	CHECK(zt_snapshot_workload_by_ip(s, NULL, &h) == NULL); /* host network */
	CHECK(zt_snapshot_workload_by_uid(s, "host") != NULL);
	struct zt_ip p = ip("10.0.0.5");
	w = zt_snapshot_workload_by_ip(s, NULL, &p);
	CHECK(w && !strcmp(w->name, "pod"));
	struct zt_ip x = ip("10.0.0.6");
	w = zt_snapshot_workload_by_ip(s, NULL, &x);
	CHECK(w && !strcmp(w->name, "x2"));
	struct zt_ip y = ip("10.0.0.7");
	w = zt_snapshot_workload_by_ip(s, NULL, &y);
	CHECK(w && !strcmp(w->name, "y1"));
	struct zt_ip nu = ip("10.0.0.8");
	w = zt_snapshot_workload_by_ip(s, NULL, &nu);
	CHECK(w && !strcmp(w->name, "nouid"));
	CHECK(zt_snapshot_workload_by_uid(s, "") == NULL);
	struct zt_ip none = ip("10.0.0.99");
	CHECK(zt_snapshot_workload_by_ip(s, NULL, &none) == NULL);

	w = zt_snapshot_workload_by_uid(s, "c//v1/Pod/ns/b");
	CHECK(w && !strcmp(w->name, "b"));
	CHECK(zt_snapshot_workload_by_uid(s, "c//v1/Pod/ns/zz") == NULL);
	zt_snapshot_free(s);
}

static void test_services_policies(void)
{
	struct zt_snapshot *s = parse(cfg);
	if (!s)
		return;
	struct zt_ip v = ip("10.96.0.1"), v6 = ip("fd00:96::1"), v2 = ip("10.96.0.2");
	const struct zt_service *sv = zt_snapshot_service_by_vip(s, NULL, &v);
	CHECK(sv && !strcmp(sv->namespace_, "ns"));
	CHECK(zt_snapshot_service_by_vip(s, NULL, &v6) == sv);
	CHECK(zt_snapshot_service_by_vip(s, "net2", &v) == sv);
	CHECK(zt_snapshot_service_by_vip(s, "net3", &v) == NULL);
	sv = zt_snapshot_service_by_vip(s, "", &v2);
	CHECK(sv && !strcmp(sv->namespace_, "other"));
	/* the workload IP is not a VIP */
	struct zt_ip a = ip("10.0.0.1");
	CHECK(zt_snapshot_service_by_vip(s, NULL, &a) == NULL);

	sv = zt_snapshot_service_by_key(s, "ns/s1.ns.svc.cluster.local");
	CHECK(sv && !strcmp(sv->namespace_, "ns"));
	sv = zt_snapshot_service_by_key(s, "other/s1.ns.svc.cluster.local");
	CHECK(sv && !strcmp(sv->namespace_, "other"));
	CHECK(zt_snapshot_service_by_key(s, "s1.ns.svc.cluster.local") == NULL);
	CHECK(zt_snapshot_service_by_key(s, "ns/s1") == NULL);

	const struct zt_authz_policy *p = zt_snapshot_policy_by_key(s, "ns/p1");
	CHECK(p && p->action == ZT_AUTHZ_ALLOW);
	p = zt_snapshot_policy_by_key(s, "/p1");
	CHECK(p && p->action == ZT_AUTHZ_DENY && p->scope == ZT_SCOPE_GLOBAL);
	CHECK(zt_snapshot_policy_by_key(s, "ns/p2") == NULL);
	zt_snapshot_free(s);
}

static void test_empty_and_null(void)
{
	struct zt_ip a = ip("10.0.0.1");
	struct zt_snapshot *s = zt_snapshot_empty();
	CHECK(s != NULL);
	CHECK(zt_snapshot_workload_by_ip(s, NULL, &a) == NULL);
	CHECK(zt_snapshot_workload_by_uid(s, "x") == NULL);
	CHECK(zt_snapshot_service_by_vip(s, NULL, &a) == NULL);
	CHECK(zt_snapshot_service_by_key(s, "a/b") == NULL);
	CHECK(zt_snapshot_policy_by_key(s, "a/b") == NULL);
	zt_snapshot_free(s);
	CHECK(zt_snapshot_workload_by_ip(NULL, NULL, &a) == NULL);
	CHECK(zt_snapshot_workload_by_uid(NULL, "x") == NULL);
	CHECK(zt_snapshot_service_by_vip(NULL, NULL, &a) == NULL);
	CHECK(zt_snapshot_service_by_key(NULL, "a/b") == NULL);
	CHECK(zt_snapshot_policy_by_key(NULL, "a/b") == NULL);
}

/* Many entries: every one is found through the tables (probing, growth). */
static void test_many(void)
{
	enum { N = 5000 };
	size_t cap = (size_t)N * 200 + 256;
	char *buf = malloc(cap);
	if (!buf)
		return;
	size_t n = (size_t)snprintf(buf, cap, "workloads:\n");
	for (int i = 0; i < N; i++)
		n += (size_t)snprintf(buf + n, cap - n, "- {uid: u%d, namespace: ns, workloadIps: [10.%d.%d.1]}\n",
				     i, i / 256, i % 256);
	n += (size_t)snprintf(buf + n, cap - n, "services:\n");
	for (int i = 0; i < N; i++)
		n += (size_t)snprintf(buf + n, cap - n, "- {name: s%d, namespace: ns, hostname: s%d, vips: [/172.16.%d.%d]}\n",
				     i, i, i / 256, i % 256);
	struct zt_snapshot *s = parse(buf);
	free(buf);
	if (!s)
		return;
	int missing = 0;
	for (int i = 0; i < N; i++) {
		char t[64];
		struct zt_ip a;
		snprintf(t, sizeof(t), "10.%d.%d.1", i / 256, i % 256);
		zt_ip_parse(t, &a);
		const struct zt_workload *w = zt_snapshot_workload_by_ip(s, NULL, &a);
		snprintf(t, sizeof(t), "u%d", i);
		if (!w || strcmp(w->uid, t) || zt_snapshot_workload_by_uid(s, t) != w)
			missing++;
		snprintf(t, sizeof(t), "172.16.%d.%d", i / 256, i % 256);
		zt_ip_parse(t, &a);
		const struct zt_service *sv = zt_snapshot_service_by_vip(s, NULL, &a);
		snprintf(t, sizeof(t), "ns/s%d", i);
		if (!sv || zt_snapshot_service_by_key(s, t) != sv)
			missing++;
	}
	CHECK_INT(missing, 0);
	zt_snapshot_free(s);
}

int main(void)
{
	test_workloads();
	test_services_policies();
	test_empty_and_null();
	test_many();
	return check_done("test_lookup");
}
