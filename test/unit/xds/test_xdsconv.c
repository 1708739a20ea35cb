/* test_xdsconv.c - xDS resources (bytes made by the protobuf library, see
 * xdsconv_vectors.py) into config trees and snapshots; malformed input fails
 * with a message naming the resource and the field.
 * Usage: test_xdsconv <vector dir> */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authorization.pb.h"
#include "check.h"
#include "workload.pb.h"
#include "xds/arena.h"
#include "xds/cfgtree.h"
#include "xds/xdsconv.h"

static const char *dir;

/* The field numbers xdsconv.c uses are the generated ones. */
_Static_assert(istio_workload_Workload_uid_tag == 20, "uid");
_Static_assert(istio_workload_Workload_addresses_tag == 3, "addresses");
_Static_assert(istio_workload_Workload_services_tag == 22, "services");
_Static_assert(istio_workload_Workload_capacity_tag == 27, "capacity");
_Static_assert(istio_workload_Workload_network_gateway_tag == 19, "network_gateway");
_Static_assert(istio_workload_Workload_application_tunnel_tag == 23, "application_tunnel");
_Static_assert(istio_workload_Workload_locality_tag == 24, "locality");
_Static_assert(istio_workload_Workload_network_mode_tag == 25, "network_mode");
_Static_assert(istio_workload_Workload_authorization_policies_tag == 16, "authz");
_Static_assert(istio_workload_Service_load_balancing_tag == 8, "lb");
_Static_assert(istio_workload_Service_ip_families_tag == 9, "ipf");
_Static_assert(istio_workload_Service_canonical_tag == 11, "canonical");
_Static_assert(istio_workload_GatewayAddress_hbone_mtls_port_tag == 3, "gw port");
_Static_assert(istio_security_Match_service_accounts_tag == 11, "sa");
_Static_assert(istio_security_Match_not_service_accounts_tag == 12, "not sa");
_Static_assert(istio_security_Clause_matches_tag == 2, "matches");
_Static_assert(istio_security_Authorization_rules_tag == 5, "rules");

static uint8_t *load(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		exit(2);
	}
	uint8_t *buf = malloc(1 << 20);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

static struct zt_cnode *conv(struct zt_arena *a, const char *name, enum zt_xds_kind want)
{
	size_t len;
	uint8_t *data = load(name, &len);
	struct zt_cnode *n = NULL;
	struct zt_config_error err;
	enum zt_xds_kind kind = ZT_XDS_POLICY;
	int r;
	if (want == ZT_XDS_POLICY)
		r = zt_xdsconv_authorization(a, name, data, len, &n, &err);
	else
		r = zt_xdsconv_address(a, name, data, len, &kind, &n, &err);
	free(data);
	if (r) {
		fprintf(stderr, "%s: unexpected error %d: %s\n", name, r, err.msg);
		check_failures++;
		return NULL;
	}
	CHECK_INT(kind, want);
	return n;
}

static void expect_fail(const char *name, bool policy, const char *msg)
{
	struct zt_arena *a = zt_arena_new();
	size_t len;
	uint8_t *data = load(name, &len);
	struct zt_cnode *n = (struct zt_cnode *)1;
	struct zt_config_error err;
	enum zt_xds_kind kind;
	int r = policy ? zt_xdsconv_authorization(a, name, data, len, &n, &err)
		       : zt_xdsconv_address(a, name, data, len, &kind, &n, &err);
	CHECK_INT(r, -EINVAL);
	CHECK(n == NULL);
	CHECK_STR(err.msg, msg);
	free(data);
	zt_arena_destroy(a);
}

static void test_snapshot(void)
{
	struct zt_arena *a = zt_arena_new();
	const struct zt_cnode *wl[3], *sv[2], *pol[1];
	wl[0] = conv(a, "wl_full", ZT_XDS_WORKLOAD);
	wl[1] = conv(a, "wl_min", ZT_XDS_WORKLOAD);
	wl[2] = conv(a, "wl_unknown", ZT_XDS_WORKLOAD);
	sv[0] = conv(a, "svc_full", ZT_XDS_SERVICE);
	sv[1] = conv(a, "svc_ts11", ZT_XDS_SERVICE);
	pol[0] = conv(a, "pol_full", ZT_XDS_POLICY);
	if (check_failures) {
		zt_arena_destroy(a);
		return;
	}
	struct zt_snapshot *s = NULL;
	struct zt_config_error err;
	struct zt_config_where where;
	int r = zt_config_build_lists(wl, 3, sv, 2, pol, 1, "xds", &s, &err, &where);
	if (r) {
		fprintf(stderr, "build: %d %s\n", r, err.msg);
		check_failures++;
		zt_arena_destroy(a);
		return;
	}
	zt_arena_destroy(a); /* the snapshot copied what it keeps */

	struct zt_ip ip;
	zt_ip_parse("10.0.0.1", &ip);
	const struct zt_workload *w = zt_snapshot_workload_by_ip(s, "net1", &ip);
	CHECK(w != NULL);
	if (w) {
		char buf[64];
		CHECK_STR(w->uid, "Kubernetes//Pod/default/app-1");
		CHECK_STR(w->name, "app-1");
		CHECK_STR(w->namespace_, "default");
		CHECK_INT(w->n_ips, 2);
		CHECK_STR(zt_ip_str(&w->ips[1], buf, sizeof(buf)), "fd00::1");
		CHECK_INT(w->protocol, ZT_PROTO_HBONE);
		CHECK_STR(w->trust_domain, "td.local");
		CHECK_STR(w->service_account, "app");
		CHECK_INT(w->waypoint.kind, ZT_GW_ADDRESS);
		CHECK_STR(w->waypoint.address.network, "net1");
		CHECK_STR(zt_ip_str(&w->waypoint.address.ip, buf, sizeof(buf)), "10.0.0.9");
		CHECK_INT(w->waypoint.hbone_mtls_port, 15008);
		CHECK_INT(w->network_gateway.kind, ZT_GW_HOSTNAME);
		CHECK_STR(w->network_gateway.namespace_, "istio-system");
		CHECK_STR(w->network_gateway.hostname, "eastwest.example.com");
		CHECK_STR(w->node, "node-a");
		CHECK_STR(w->canonical_name, "app");
		CHECK_STR(w->canonical_revision, "v1");
		CHECK_STR(w->workload_type, "pod");
		CHECK_STR(w->workload_name, "app");
		CHECK(w->native_tunnel);
		CHECK(w->application_tunnel.present);
		CHECK_INT(w->application_tunnel.protocol, ZT_APPTUN_PROXY);
		CHECK_INT(w->application_tunnel.port, 15088);
		CHECK_INT(w->n_services, 1);
		CHECK_STR(w->services[0], "default/svc.default.svc.cluster.local");
		CHECK_INT(w->n_authorization_policies, 1);
		CHECK_STR(w->authorization_policies[0], "default/allow-app");
		CHECK_INT(w->status, ZT_UNHEALTHY);
		CHECK_STR(w->cluster_id, "c1");
		CHECK_STR(w->locality.region, "r1");
		CHECK_STR(w->locality.zone, "z1");
		CHECK_STR(w->locality.subzone, "");
		CHECK_INT(w->capacity, 7);
	}
	zt_ip_parse("10.0.0.2", &ip);
	w = zt_snapshot_workload_by_ip(s, "", &ip);
	CHECK(w != NULL);
	if (w) {
		CHECK_STR(w->uid, "wl_min"); /* the resource name */
		CHECK_STR(w->namespace_, "");
		CHECK_STR(w->trust_domain, "cluster.local");
		CHECK_STR(w->service_account, "default");
		CHECK_STR(w->cluster_id, "Kubernetes");
		CHECK_STR(w->workload_type, "deployment");
		CHECK_INT(w->protocol, ZT_PROTO_TCP);
		CHECK_INT(w->capacity, 0); /* present and 0 */
	}
	CHECK(zt_snapshot_workload_by_uid(s, "u-unknown") != NULL);

	zt_ip_parse("10.96.0.1", &ip);
	const struct zt_service *sv0 = zt_snapshot_service_by_vip(s, "net1", &ip);
	CHECK(sv0 != NULL);
	zt_ip_parse("fd00::1", &ip);
	CHECK(zt_snapshot_service_by_vip(s, "", &ip) == sv0);
	if (sv0) {
		CHECK_STR(sv0->name, "svc");
		CHECK_STR(sv0->hostname, "svc.default.svc.cluster.local");
		CHECK_INT(sv0->n_ports, 2);
		CHECK_INT(sv0->ports[1].service_port, 443);
		CHECK_INT(sv0->ports[1].target_port, 8443);
		CHECK_INT(sv0->n_subject_alt_names, 1);
		CHECK_INT(sv0->waypoint.kind, ZT_GW_HOSTNAME);
		CHECK_STR(sv0->waypoint.hostname, "waypoint.default.svc.cluster.local");
		CHECK(sv0->has_load_balancer);
		CHECK_INT(sv0->lb_mode, ZT_LB_FAILOVER);
		CHECK_INT(sv0->lb_health, ZT_LB_ALLOW_ALL);
		CHECK_INT(sv0->n_routing_preferences, 2);
		CHECK_INT(sv0->routing_preferences[0], ZT_SCOPE_NETWORK);
		CHECK_INT(sv0->routing_preferences[1], ZT_SCOPE_ZONE);
		CHECK_INT(sv0->ip_families, ZT_IPF_DUAL);
		CHECK(sv0->canonical);
		/* Endpoint from the workload's services map, with its own ports. */
		CHECK_INT(sv0->n_endpoints, 1);
		if (sv0->n_endpoints == 1) {
			CHECK_STR(sv0->endpoints[0].workload->uid, "Kubernetes//Pod/default/app-1");
			CHECK_INT(sv0->endpoints[0].n_ports, 2);
			CHECK_INT(sv0->endpoints[0].ports[0].target_port, 8080);
			CHECK_INT(sv0->endpoints[0].ports[1].target_port, 0);
		}
	}
	const struct zt_service *sv1 = zt_snapshot_service_by_key(s, "ns/ts.ns");
	CHECK(sv1 != NULL && !sv1->canonical);

	const struct zt_authz_policy *p = zt_snapshot_policy_by_key(s, "default/allow-app");
	CHECK(p != NULL);
	if (p) {
		CHECK_INT(p->scope, ZT_SCOPE_WORKLOAD_SELECTOR);
		CHECK_INT(p->action, ZT_AUTHZ_DENY);
		CHECK_INT(p->n_rules, 2);
		CHECK_INT(p->rules[0].n_clauses, 2);
		CHECK_INT(p->rules[1].n_clauses, 0);
		const struct zt_authz_match *m = &p->rules[0].clauses[0].matches[0];
		CHECK_INT(m->n_principals, 2);
		CHECK_INT(m->principals[0].kind, ZT_SM_EXACT);
		CHECK_STR(m->principals[0].value, "td.local/ns/default/sa/client");
		CHECK_INT(m->principals[1].kind, ZT_SM_PREFIX);
		CHECK_INT(m->n_not_principals, 1);
		CHECK_INT(m->not_principals[0].kind, ZT_SM_PRESENCE);
		CHECK_INT(m->namespaces[0].kind, ZT_SM_SUFFIX);
		CHECK_STR(m->namespaces[0].value, "-prod");
		CHECK_INT(m->n_service_accounts, 1);
		CHECK_STR(m->service_accounts[0].value, "default/client");
		CHECK_STR(m->not_service_accounts[0].value, "bad/sa");
		CHECK_INT(m->n_source_ips, 1);
		CHECK_INT(m->source_ips[0].len, 16);
		CHECK_INT(m->n_not_destination_ips, 1);
		CHECK_INT(m->not_destination_ips[0].len, 64);
		CHECK_INT(m->n_destination_ports, 2);
		CHECK_INT(m->destination_ports[1], 443);
		CHECK_INT(m->n_not_destination_ports, 1);
		CHECK_INT(m->not_destination_ports[0], 22);
		CHECK_INT(p->rules[0].clauses[1].matches[0].destination_ports[0], 8080);
	}
	zt_snapshot_free(s);

	/* A conflict across resources names the later element. */
	a = zt_arena_new();
	const struct zt_cnode *dup[2] = {conv(a, "svc_full", ZT_XDS_SERVICE),
					 conv(a, "svc_full", ZT_XDS_SERVICE)};
	r = zt_config_build_lists(NULL, 0, dup, 2, NULL, 0, "xds", &s, &err, &where);
	CHECK_INT(r, -EINVAL);
	CHECK(s == NULL);
	CHECK_INT(where.section, ZT_CFG_AT_SERVICES);
	CHECK_INT(where.index, 1);
	CHECK_STR(err.msg, "xds: services[1]: duplicate service "
			   "\"default/svc.default.svc.cluster.local\" (also services[0])");
	zt_arena_destroy(a);
}

static void test_errors(void)
{
	expect_fail("bad_truncated", false,
		    "bad_truncated: workload: length 292 exceeds the 289 bytes left");
	expect_fail("bad_iplen", false,
		    "bad_iplen: workload.addresses[0]: 5 bytes is not an IPv4 (4) or IPv6 (16) address");
	expect_fail("bad_enum", false, "bad_enum: workload.tunnel_protocol: unknown enum value 7");
	expect_fail("bad_cidr", true,
		    "bad_cidr: rules[0].clauses[0].matches[0].source_ips[0].length: 33 is longer than "
		    "the address (32 bits)");
	expect_fail("bad_nomatch", true,
		    "bad_nomatch: rules[0].clauses[0].matches[0].principals[0]: no match type (exact, "
		    "prefix, suffix or presence) is set");
	expect_fail("bad_port0", false,
		    "bad_port0: service.ports[0].service_port: 0 is not a port (1..65535)");
	expect_fail("bad_gw_nodest", false,
		    "bad_gw_nodest: workload.waypoint: neither hostname nor address is set");
	expect_fail("bad_action", true, "bad_action: action: unknown enum value 5");
	expect_fail("bad_empty_address", false,
		    "bad_empty_address: Address has neither workload nor service");
	expect_fail("bad_wiretype", false,
		    "bad_wiretype: workload.uid: wrong wire type (varint, expected length-delimited)");
	expect_fail("bad_hugelen", false,
		    "bad_hugelen: workload: length 4294967295 exceeds the 0 bytes left");
	expect_fail("bad_varint", false, "bad_varint: workload.tunnel_protocol: truncated varint");
	expect_fail("bad_group", false, "bad_group: field 1: unsupported wire type 3");
	expect_fail("bad_field0", false, "bad_field0: invalid field number 0");
	expect_fail("bad_utf8", false, "bad_utf8: workload.name: string is not valid UTF-8");
	expect_fail("bad_nul", false, "bad_nul: workload.name: string contains a NUL character");
}

/* Every prefix of a valid resource fails cleanly or succeeds; allocation
 * failures at every point return -ENOMEM without leaking (ASan checks). */
static void test_prefixes_and_oom(void)
{
	static const char *const names[] = {"wl_full", "svc_full", "pol_full"};
	for (size_t k = 0; k < 3; k++) {
		size_t len;
		uint8_t *data = load(names[k], &len);
		for (size_t cut = 0; cut <= len; cut++) {
			struct zt_arena *a = zt_arena_new();
			struct zt_cnode *n;
			struct zt_config_error err;
			enum zt_xds_kind kind;
			int r = k == 2 ? zt_xdsconv_authorization(a, names[k], data, cut, &n, &err)
				       : zt_xdsconv_address(a, names[k], data, cut, &kind, &n, &err);
			CHECK(r == 0 || (r == -EINVAL && !strncmp(err.msg, names[k], strlen(names[k]))));
			zt_arena_destroy(a);
		}
		for (long fail_at = 0; fail_at < 64; fail_at++) {
			struct zt_arena *a = zt_arena_new();
			struct zt_cnode *n;
			struct zt_config_error err;
			enum zt_xds_kind kind;
			zt_arena_fail_after(fail_at);
			int r = k == 2 ? zt_xdsconv_authorization(a, names[k], data, len, &n, &err)
				       : zt_xdsconv_address(a, names[k], data, len, &kind, &n, &err);
			zt_arena_fail_after(-1);
			CHECK(r == 0 || r == -ENOMEM);
			zt_arena_destroy(a);
		}
		free(data);
	}
}

/* Hand-made wire bytes for test_large. */
static size_t put_varint(uint8_t *b, uint64_t v)
{
	size_t n = 0;
	for (; v >= 0x80; v >>= 7)
		b[n++] = (uint8_t)(v | 0x80);
	b[n++] = (uint8_t)v;
	return n;
}

/* field tag, then (LEN fields) the length; returns the bytes written. */
static size_t put_tag(uint8_t *b, uint32_t field, int wt, size_t len)
{
	size_t n = put_varint(b, (uint64_t)field << 3 | (uint32_t)wt);
	return wt == 2 ? n + put_varint(b + n, len) : n;
}

/* Port {service_port, target_port} as a field `field` of the enclosing message. */
static size_t put_port(uint8_t *b, uint32_t field, uint32_t sp, uint32_t tp)
{
	uint8_t body[16];
	size_t m = put_tag(body, 1, 0, 0);
	m += put_varint(body + m, sp);
	m += put_tag(body + m, 2, 0, 0);
	m += put_varint(body + m, tp);
	size_t n = put_tag(b, field, 2, m);
	memcpy(b + n, body, m);
	return n + m;
}

/* Wrap body[0..len) as Address field `field` (1 workload, 2 service) in out. */
static size_t wrap(uint8_t *out, uint32_t field, const uint8_t *body, size_t len)
{
	size_t n = put_tag(out, field, 2, len);
	memcpy(out + n, body, len);
	return n + len;
}

/* Resources with tens of thousands of ports or workload services entries
 * decode in linear time (duplicate checks were a linear scan each: 20-30 s
 * per resource of this size, on the control thread at every rebuild), with
 * protobuf's semantics kept: a duplicate service port is an error, services
 * entries with the same key keep the first one's place and the last one's
 * value. The bound is CPU time, generous for ASan. */
static void test_large(void)
{
	enum { NPORTS = 65535, NSVC = 100000, NKEYS = 40000 };
	uint8_t *body = malloc(4u << 20), *res = malloc(4u << 20);
	CHECK(body && res);
	if (!body || !res)
		goto out;
	clock_t t0 = clock();

	/* A service with every port, then the same with port 7 once more. */
	size_t n = put_tag(body, 3, 2, 1);
	body[n++] = 'h';
	for (uint32_t p = 1; p <= NPORTS; p++)
		n += put_port(body + n, 5, p, p);
	for (int dup = 0; dup < 2; dup++) {
		size_t bl = dup ? n + put_port(body + n, 5, 7, 1) : n, rl = wrap(res, 2, body, bl);
		struct zt_arena *a = zt_arena_new();
		struct zt_cnode *m = NULL;
		struct zt_config_error err;
		enum zt_xds_kind kind;
		int r = zt_xdsconv_address(a, "big", res, rl, &kind, &m, &err);
		if (dup) {
			CHECK_INT(r, -EINVAL);
			CHECK_STR(err.msg, "big: service.ports[65535].service_port: duplicate port 7");
		} else {
			CHECK_INT(r, 0);
			const struct zt_cnode *ports = NULL;
			for (uint32_t i = 0; m && i < m->n; i++)
				if (!strcmp(m->pairs[i].key->text, "ports"))
					ports = m->pairs[i].val;
			CHECK(ports && ports->n == NPORTS);
			if (ports && ports->n == NPORTS)
				CHECK(ports->pairs[99].key->i == 100 && ports->pairs[99].val->i == 100);
		}
		zt_arena_destroy(a);
	}

	/* A workload with NSVC services entries over NKEYS keys: entry i has
	 * key "ns/h<i % NKEYS>" and one port, i % 60000 + 1. */
	n = put_tag(body, 20, 2, 1);
	body[n++] = 'u';
	for (uint32_t i = 0; i < NSVC; i++) {
		uint8_t ent[64], pl[16];
		char key[32];
		size_t kl = (size_t)snprintf(key, sizeof(key), "ns/h%u", i % NKEYS);
		size_t pn = put_port(pl, 1, i % 60000 + 1, 0), e = put_tag(ent, 1, 2, kl);
		memcpy(ent + e, key, kl);
		e += kl;
		e += put_tag(ent + e, 2, 2, pn);
		memcpy(ent + e, pl, pn);
		e += pn;
		n += put_tag(body + n, 22, 2, e);
		memcpy(body + n, ent, e);
		n += e;
	}
	size_t rl = wrap(res, 1, body, n);
	struct zt_arena *a = zt_arena_new();
	struct zt_cnode *m = NULL;
	struct zt_config_error err;
	enum zt_xds_kind kind;
	CHECK_INT(zt_xdsconv_address(a, "big", res, rl, &kind, &m, &err), 0);
	const struct zt_cnode *svcs = NULL;
	for (uint32_t i = 0; m && i < m->n; i++)
		if (!strcmp(m->pairs[i].key->text, "services"))
			svcs = m->pairs[i].val;
	CHECK(svcs && svcs->n == NKEYS);
	for (uint32_t k = 0; svcs && svcs->n == NKEYS && k < NKEYS; k += 997) {
		char key[32];
		snprintf(key, sizeof(key), "ns/h%u", k);
		CHECK_STR(svcs->pairs[k].key->text, key);
		/* the last entry with this key, and its port */
		uint32_t last = k + NKEYS * ((NSVC - 1 - k) / NKEYS);
		const struct zt_cnode *pm = svcs->pairs[k].val;
		CHECK(pm->n == 1 && pm->pairs[0].key->i == last % 60000 + 1);
	}
	zt_arena_destroy(a);

	double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	if (secs > 5)
		fprintf(stderr, "test_large: %.1f s of CPU\n", secs);
	CHECK(secs <= 5);
out:
	free(body);
	free(res);
}

/* The value of `key` in map `m`, or NULL. */
static const struct zt_cnode *get(const struct zt_cnode *m, const char *key)
{
	for (uint32_t i = 0; m && i < m->n; i++)
		if (!strcmp(m->pairs[i].key->text, key))
			return m->pairs[i].val;
	return NULL;
}

/* Wire forms protobuf allows that encoders rarely make: a trust_domain given
 * twice, the last one empty (proto3: unset, so the default applies, not ""),
 * and an empty packed routing_preference (no values, not an error). */
static void test_rare_wire_forms(void)
{
	/* Address{workload{uid "u", trust_domain "td.x", trust_domain ""}} */
	static const uint8_t wl[] = {0x0a, 0x0c, 0xa2, 0x01, 0x01, 'u', 0x32, 0x04,
				     't', 'd', '.', 'x', 0x32, 0x00};
	/* Address{service{name "s", hostname "h", load_balancing{
	 * routing_preference [] (packed, empty), mode STRICT}}} */
	static const uint8_t svc[] = {0x12, 0x0c, 0x0a, 0x01, 's', 0x1a, 0x01, 'h',
				      0x42, 0x04, 0x0a, 0x00, 0x10, 0x01};
	struct zt_arena *a = zt_arena_new();
	struct zt_cnode *m = NULL;
	struct zt_config_error err;
	enum zt_xds_kind kind;
	CHECK_INT(zt_xdsconv_address(a, "wl", wl, sizeof(wl), &kind, &m, &err), 0);
	CHECK(m && !get(m, "trustDomain"));
	const struct zt_cnode *const wls[] = {m};
	struct zt_snapshot *s = NULL;
	CHECK_INT(zt_config_build_lists(wls, 1, NULL, 0, NULL, 0, "xds", &s, &err, NULL), 0);
	if (s)
		CHECK_STR(s->workloads[0].trust_domain, "cluster.local");
	zt_snapshot_free(s);
	CHECK_INT(zt_xdsconv_address(a, "svc", svc, sizeof(svc), &kind, &m, &err), 0);
	const struct zt_cnode *lb = get(m, "loadBalancer");
	CHECK(lb && get(lb, "routingPreferences") && get(lb, "routingPreferences")->n == 0);
	CHECK(lb && get(lb, "mode") && !strcmp(get(lb, "mode")->text, "Strict"));
	zt_arena_destroy(a);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <vector dir>\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	test_snapshot();
	test_errors();
	test_prefixes_and_oom();
	test_large();
	test_rare_wire_forms();
	return check_done("test_xdsconv");
}
