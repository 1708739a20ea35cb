/* test_route.c - zt_route_outbound: service VIP load balancing (weights,
 * health, locality preferences, port mapping, IP families), workload and
 * passthrough destinations. Usage: test_route <examples dir> */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "xds/snapshot.h"

static const char *examples = "examples";

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

static struct zt_sockaddr sa(const char *s)
{
	struct zt_sockaddr a;
	if (zt_sockaddr_parse(s, &a)) {
		fprintf(stderr, "bad test address %s\n", s);
		check_failures++;
	}
	return a;
}

static const char *dst_str(const struct zt_route *r)
{
	static char buf[ZT_ADDRSTRLEN];
	return zt_sockaddr_str(&r->dst, buf, sizeof(buf));
}

/* splitmix64: a reproducible stream of random values for the statistics. */
static uint64_t next_rnd(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Picks `n` times; counts how often each endpoint name came out. */
static int count_picks(const struct zt_snapshot *s, const struct zt_workload *src, const char *dst,
		       int n, const char *name)
{
	uint64_t st = 42;
	int hits = 0;
	struct zt_sockaddr d = sa(dst);
	for (int i = 0; i < n; i++) {
		struct zt_route r;
		if (zt_route_outbound(s, src, &d, next_rnd(&st), &r) == 0 && r.workload &&
		    !strcmp(r.workload->name, name))
			hits++;
	}
	return hits;
}

static void test_demo_mesh(void)
{
	char path[512];
	struct zt_snapshot *s = NULL;
	struct zt_config_error err;
	snprintf(path, sizeof(path), "%s/demo-mesh.yaml", examples);
	if (zt_config_load_file(path, &s, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		check_failures++;
		return;
	}
	struct zt_ip sip;
	zt_ip_parse("10.77.1.10", &sip);
	const struct zt_workload *sleep = zt_snapshot_workload_by_ip(s, NULL, &sip);
	CHECK(sleep && !strcmp(sleep->name, "sleep"));

	struct zt_sockaddr vip = sa("10.96.0.10:8000");
	struct zt_route r;
	CHECK_INT(zt_route_outbound(s, sleep, &vip, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_SERVICE);
	CHECK_STR(r.service->name, "httpbin");
	CHECK_STR(r.workload->name, "httpbin-1");
	CHECK_STR(dst_str(&r), "10.77.2.10:8080");
	CHECK_INT(zt_route_outbound(s, sleep, &vip, UINT64_MAX, &r), 0);
	CHECK_STR(r.workload->name, "httpbin-2");
	CHECK_STR(dst_str(&r), "10.77.3.10:8080");
	/* the same rnd gives the same answer */
	struct zt_route r2;
	CHECK_INT(zt_route_outbound(s, sleep, &vip, 0x7fffffffffffffffull, &r), 0);
	CHECK_INT(zt_route_outbound(s, sleep, &vip, 0x7fffffffffffffffull, &r2), 0);
	CHECK(r.workload == r2.workload);
	int n1 = count_picks(s, sleep, "10.96.0.10:8000", 10000, "httpbin-1");
	CHECK(n1 > 4500 && n1 < 5500);

	/* a port the service does not have */
	struct zt_sockaddr bad = sa("10.96.0.10:9000");
	CHECK_INT(zt_route_outbound(s, sleep, &bad, 0, &r), -EHOSTUNREACH);
	CHECK_INT(r.kind, ZT_ROUTE_SERVICE);
	CHECK(r.workload == NULL && r.service != NULL);

	/* a workload IP: direct, original port */
	struct zt_sockaddr pod = sa("10.77.3.10:8080");
	CHECK_INT(zt_route_outbound(s, sleep, &pod, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_WORKLOAD);
	CHECK_STR(r.workload->name, "httpbin-2");
	CHECK(r.service == NULL);
	CHECK_STR(dst_str(&r), "10.77.3.10:8080");

	/* unknown: passthrough */
	struct zt_sockaddr ext = sa("93.184.216.34:443");
	CHECK_INT(zt_route_outbound(s, sleep, &ext, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_PASSTHROUGH);
	CHECK(r.workload == NULL && r.service == NULL);
	CHECK_STR(dst_str(&r), "93.184.216.34:443");

	/* no source workload: default network */
	CHECK_INT(zt_route_outbound(s, NULL, &vip, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_SERVICE);
	zt_snapshot_free(s);

	/* no snapshot at all */
	CHECK_INT(zt_route_outbound(NULL, NULL, &vip, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_PASSTHROUGH);
}

static void test_weights(void)
{
	struct zt_snapshot *s = parse(
		"workloads:\n"
		"- {uid: a, name: a, namespace: n, workloadIps: [10.0.0.1], capacity: 1, services: {n/h: {80: 8080}}}\n"
		"- {uid: b, name: b, namespace: n, workloadIps: [10.0.0.2], capacity: 3, services: {n/h: {80: 8080}}}\n"
		"- {uid: z, name: z, namespace: n, workloadIps: [10.0.0.3], capacity: 0, services: {n/h: {80: 8080}}}\n"
		"- {uid: c, name: c, namespace: n, workloadIps: [10.0.0.4], capacity: 0, services: {n/zero: {80: 80}}}\n"
		"services:\n"
		"- {name: h, namespace: n, hostname: h, vips: [/10.96.0.1], ports: {80: 8080}}\n"
		"- {name: zero, namespace: n, hostname: zero, vips: [/10.96.0.2], ports: {80: 80}}\n");
	if (!s)
		return;
	enum { N = 10000 };
	int a = count_picks(s, NULL, "10.96.0.1:80", N, "a");
	int b = count_picks(s, NULL, "10.96.0.1:80", N, "b");
	int z = count_picks(s, NULL, "10.96.0.1:80", N, "z");
	printf("weights 1:3:0 over %d picks: %d / %d / %d\n", N, a, b, z);
	CHECK_INT(a + b, N);
	CHECK_INT(z, 0);
	CHECK(a > N * 20 / 100 && a < N * 30 / 100); /* 25% +- 5 */
	CHECK(b > N * 70 / 100 && b < N * 80 / 100); /* 75% +- 5 */
	/* exact boundaries: [0, 1/4) -> a, [1/4, 1) -> b */
	struct zt_route r;
	struct zt_sockaddr d = sa("10.96.0.1:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, (UINT64_MAX / 4), &r), 0);
	CHECK_STR(r.workload->name, "a");
	CHECK_INT(zt_route_outbound(s, NULL, &d, (UINT64_MAX / 4) + 2, &r), 0);
	CHECK_STR(r.workload->name, "b");
	/* only capacity 0: nothing to choose, as ztunnel's choose_weighted */
	struct zt_sockaddr zd = sa("10.96.0.2:80");
	CHECK_INT(zt_route_outbound(s, NULL, &zd, 0, &r), -EHOSTUNREACH);
	zt_snapshot_free(s);
}

static void test_health(void)
{
	struct zt_snapshot *s = parse(
		"workloads:\n"
		"- {uid: a, name: a, namespace: n, workloadIps: [10.0.0.1], services: {n/h: {80: 80}, n/all: {80: 80}, n/dead: {80: 80}}}\n"
		"- {uid: b, name: b, namespace: n, workloadIps: [10.0.0.2], status: Unhealthy,\n"
		"   services: {n/h: {80: 80}, n/all: {80: 80}, n/dead: {80: 80}, n/deadall: {80: 80}}}\n"
		"services:\n"
		"- {name: h, namespace: n, hostname: h, vips: [/10.96.0.1], ports: {80: 80}}\n"
		"- {name: all, namespace: n, hostname: all, vips: [/10.96.0.2], ports: {80: 80},\n"
		"   loadBalancer: {healthPolicy: AllowAll}}\n"
		"- {name: deadall, namespace: n, hostname: deadall, vips: [/10.96.0.4], ports: {80: 80},\n"
		"   loadBalancer: {healthPolicy: AllowAll, mode: Standard}}\n"
		"- {name: dead, namespace: n, hostname: dead, vips: [/10.96.0.3], ports: {80: 80},\n"
		"   endpoints: {x: {workloadUid: a, status: Unhealthy}}}\n");
	if (!s)
		return;
	CHECK_INT(count_picks(s, NULL, "10.96.0.1:80", 1000, "b"), 0);
	CHECK_INT(count_picks(s, NULL, "10.96.0.1:80", 1000, "a"), 1000);
	int b = count_picks(s, NULL, "10.96.0.2:80", 1000, "b");
	CHECK(b > 400 && b < 600);
	/* workload a's entry overrides the explicit unhealthy one, b is unhealthy */
	CHECK_INT(count_picks(s, NULL, "10.96.0.3:80", 100, "a"), 100);
	CHECK_INT(count_picks(s, NULL, "10.96.0.4:80", 100, "b"), 100);
	zt_snapshot_free(s);

	s = parse("workloads:\n"
		  "- {uid: b, namespace: n, workloadIps: [10.0.0.2], status: Unhealthy, services: {n/h: {80: 80}}}\n"
		  "services:\n- {name: h, namespace: n, hostname: h, vips: [/10.96.0.1], ports: {80: 80}}\n");
	if (!s)
		return;
	struct zt_route r;
	struct zt_sockaddr d = sa("10.96.0.1:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), -EHOSTUNREACH);
	zt_snapshot_free(s);
}

static const char locality_cfg[] =
	"workloads:\n"
	"- {uid: src, name: src, namespace: n, workloadIps: [10.0.0.1], node: n1, network: '',\n"
	"   locality: {region: r1, zone: z1, subzone: s1}}\n"
	"- {uid: same-zone, name: same-zone, namespace: n, workloadIps: [10.0.1.1], node: n2,\n"
	"   locality: {region: r1, zone: z1, subzone: s2}, services: {n/f: {80: 80}, n/s: {80: 80}}}\n"
	"- {uid: same-region, name: same-region, namespace: n, workloadIps: [10.0.2.1], node: n3,\n"
	"   locality: {region: r1, zone: z2}, services: {n/f: {80: 80}, n/s: {80: 80}, n/f2: {80: 80}}}\n"
	"- {uid: far, name: far, namespace: n, workloadIps: [10.0.3.1], node: n4,\n"
	"   locality: {region: r2, zone: z1}, services: {n/f: {80: 80}, n/s: {80: 80}, n/f2: {80: 80},\n"
	"   n/s2: {80: 80}}}\n"
	"- {uid: same-node, name: same-node, namespace: n, workloadIps: [10.0.4.1], node: n1,\n"
	"   locality: {region: r9}, services: {n/node: {80: 80}}}\n"
	"- {uid: other-node, name: other-node, namespace: n, workloadIps: [10.0.5.1], node: n5,\n"
	"   locality: {region: r1, zone: z1, subzone: s1}, services: {n/node: {80: 80}}}\n"
	"services:\n"
	"- {name: f, namespace: n, hostname: f, vips: [/10.96.0.1], ports: {80: 80},\n"
	"   loadBalancer: {mode: Failover, routingPreferences: [Region, Zone, Subzone]}}\n"
	"- {name: s, namespace: n, hostname: s, vips: [/10.96.0.2], ports: {80: 80},\n"
	"   loadBalancer: {mode: Strict, routingPreferences: [Region, Zone]}}\n"
	"- {name: f2, namespace: n, hostname: f2, vips: [/10.96.0.3], ports: {80: 80},\n"
	"   loadBalancer: {mode: Failover, routingPreferences: [Region, Zone]}}\n"
	"- {name: s2, namespace: n, hostname: s2, vips: [/10.96.0.4], ports: {80: 80},\n"
	"   loadBalancer: {mode: Strict, routingPreferences: [Region]}}\n"
	"- {name: node, namespace: n, hostname: node, vips: [/10.96.0.5], ports: {80: 80},\n"
	"   loadBalancer: {mode: Failover, routingPreferences: [Network, Node, Region]}}\n"
	"- {name: std, namespace: n, hostname: std, vips: [/10.96.0.6], ports: {80: 80},\n"
	"   loadBalancer: {mode: Standard, routingPreferences: [Region]}}\n";

static void test_locality(void)
{
	struct zt_snapshot *s = parse(locality_cfg);
	if (!s)
		return;
	const struct zt_workload *src = zt_snapshot_workload_by_uid(s, "src");
	/* failover: the same zone wins (rank 2 of 3; no subzone match anywhere) */
	CHECK_INT(count_picks(s, src, "10.96.0.1:80", 1000, "same-zone"), 1000);
	/* strict region+zone: only the same zone */
	CHECK_INT(count_picks(s, src, "10.96.0.2:80", 1000, "same-zone"), 1000);
	/* failover without a same-zone endpoint: the same region */
	CHECK_INT(count_picks(s, src, "10.96.0.3:80", 1000, "same-region"), 1000);
	/* strict region without a match: nothing */
	struct zt_route r;
	struct zt_sockaddr d = sa("10.96.0.4:80");
	CHECK_INT(zt_route_outbound(s, src, &d, 0, &r), -EHOSTUNREACH);
	/* network, then node: preferences are matched in order */
	CHECK_INT(count_picks(s, src, "10.96.0.5:80", 1000, "same-node"), 1000);
	/* no source workload: only endpoints with empty values would match */
	d = sa("10.96.0.2:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), -EHOSTUNREACH);
	/* standard mode ignores preferences */
	zt_snapshot_free(s);
}

static void test_ports(void)
{
	struct zt_snapshot *s = parse(
		"workloads:\n"
		"- {uid: a, name: a, namespace: n, workloadIps: [10.0.0.1],\n"
		"   services: {n/h: {80: 9090, 443: 8443}, n/named: {80: 7070}}}\n"
		"- {uid: b, name: b, namespace: n, workloadIps: [10.0.0.2], services: {n/h: {}, n/named: {}}}\n"
		"services:\n"
		"- {name: h, namespace: n, hostname: h, vips: [/10.96.0.1], ports: {80: 8080, 443: 443, 8000: 0}}\n"
		"- {name: named, namespace: n, hostname: named, vips: [/10.96.0.2], ports: {80: 0}}\n");
	if (!s)
		return;
	struct zt_route r;
	struct zt_sockaddr d = sa("10.96.0.1:80");
	/* the endpoint's own map first */
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), 0);
	CHECK_STR(r.workload->name, "a");
	CHECK_STR(dst_str(&r), "10.0.0.1:9090");
	/* then the service's */
	CHECK_INT(zt_route_outbound(s, NULL, &d, UINT64_MAX, &r), 0);
	CHECK_STR(r.workload->name, "b");
	CHECK_STR(dst_str(&r), "10.0.0.2:8080");
	/* named port (target 0): only endpoints mapping the port qualify */
	CHECK_INT(count_picks(s, NULL, "10.96.0.2:80", 200, "a"), 200);
	d = sa("10.96.0.2:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, UINT64_MAX, &r), 0);
	CHECK_STR(dst_str(&r), "10.0.0.1:7070");
	/* named port that no endpoint maps */
	d = sa("10.96.0.1:8000");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), -EHOSTUNREACH);
	zt_snapshot_free(s);
}

static void test_passthrough_and_networks(void)
{
	struct zt_snapshot *s = parse(
		"workloads:\n"
		"- {uid: src2, name: src2, namespace: n, network: net2, workloadIps: [10.1.0.1]}\n"
		"- {uid: a, name: a, namespace: n, workloadIps: [10.0.0.1], services: {n/p: {80: 80}}}\n"
		"- {uid: b, name: b, namespace: n, network: net2, workloadIps: [10.0.0.1],\n"
		"   services: {n/h2: {80: 81}}}\n"
		"services:\n"
		"- {name: p, namespace: n, hostname: p, vips: [/10.96.0.1], ports: {80: 80},\n"
		"   loadBalancer: {mode: Passthrough}}\n"
		"- {name: h2, namespace: n, hostname: h2, vips: [net2/10.96.0.2], ports: {80: 80}}\n"
		/* a VIP that is also a workload IP: the service wins */
		"- {name: shadow, namespace: n, hostname: shadow, vips: [/10.0.0.1], ports: {80: 80}}\n");
	if (!s)
		return;
	struct zt_route r;
	struct zt_sockaddr d = sa("10.96.0.1:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_PASSTHROUGH);
	CHECK(r.service == NULL && r.workload == NULL);
	CHECK_STR(dst_str(&r), "10.96.0.1:80");

	const struct zt_workload *src2 = zt_snapshot_workload_by_uid(s, "src2");
	d = sa("10.96.0.2:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), 0); /* not in the default network */
	CHECK_INT(r.kind, ZT_ROUTE_PASSTHROUGH);
	CHECK_INT(zt_route_outbound(s, src2, &d, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_SERVICE);
	CHECK_STR(r.workload->name, "b");
	CHECK_STR(dst_str(&r), "10.0.0.1:81");

	d = sa("10.0.0.1:80");
	CHECK_INT(zt_route_outbound(s, src2, &d, 0, &r), 0);
	CHECK_INT(r.kind, ZT_ROUTE_WORKLOAD);
	CHECK_STR(r.workload->name, "b");
	/* in the default network 10.0.0.1 is a VIP with no endpoints */
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), -EHOSTUNREACH);
	CHECK_STR(r.service->name, "shadow");
	zt_snapshot_free(s);
}

static void test_ip_families(void)
{
	struct zt_snapshot *s = parse(
		"workloads:\n"
		"- {uid: d, name: d, namespace: n, workloadIps: [10.0.0.1, \"fd00::1\"],\n"
		"   services: {n/auto: {80: 80}, n/v6: {80: 80}, n/v4: {80: 80}}}\n"
		"- {uid: h, name: h, namespace: n, hostname: h.example, services: {n/v4: {80: 80}}}\n"
		"services:\n"
		"- {name: auto, namespace: n, hostname: auto, vips: [/10.96.0.1, \"/fd00:96::1\"], ports: {80: 80}}\n"
		"- {name: v6, namespace: n, hostname: v6, vips: [/10.96.0.2], ports: {80: 80}, ipFamilies: IPv6}\n"
		"- {name: v4, namespace: n, hostname: v4, vips: [\"/fd00:96::3\"], ports: {80: 80}, ipFamilies: IPv4}\n");
	if (!s)
		return;
	struct zt_route r;
	struct zt_sockaddr d = sa("10.96.0.1:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), 0);
	CHECK_STR(dst_str(&r), "10.0.0.1:80");
	d = sa("[fd00:96::1]:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), 0);
	CHECK_STR(dst_str(&r), "[fd00::1]:80");
	d = sa("10.96.0.2:80");
	CHECK_INT(zt_route_outbound(s, NULL, &d, 0, &r), 0);
	CHECK_STR(dst_str(&r), "[fd00::1]:80");
	/* IPv4 only, v6 client; the hostname-only workload is never picked */
	d = sa("[fd00:96::3]:80");
	CHECK_INT(count_picks(s, NULL, "[fd00:96::3]:80", 100, "d"), 100);
	CHECK_INT(zt_route_outbound(s, NULL, &d, UINT64_MAX, &r), 0);
	CHECK_STR(dst_str(&r), "10.0.0.1:80");
	zt_snapshot_free(s);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		examples = argv[1];
	test_demo_mesh();
	test_weights();
	test_health();
	test_locality();
	test_ports();
	test_passthrough_and_networks();
	test_ip_families();
	return check_done("test_route");
}
