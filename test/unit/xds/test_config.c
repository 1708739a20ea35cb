/* test_config.c - local config parsing: YAML and JSON into one snapshot shape,
 * every class of error with its exact message, limits, allocation failures.
 * Usage: test_config <examples dir> */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "xds/arena.h"
#include "xds/snapshot.h"

static const char *examples = "examples";

static struct zt_snapshot *parse_ok(const char *text, enum zt_config_format fmt)
{
	struct zt_snapshot *s = NULL;
	struct zt_config_error err;
	int r = zt_config_parse(text, strlen(text), fmt, "mesh.yaml", &s, &err);
	if (r) {
		fprintf(stderr, "unexpected error %d: %s\n", r, err.msg);
		check_failures++;
	}
	return s;
}

/* ---- deep equality of two snapshots ---- */

static bool str_eq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static bool ports_eq(const struct zt_port_map *a, size_t na, const struct zt_port_map *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) /* same document order in both formats */
		if (a[i].service_port != b[i].service_port || a[i].target_port != b[i].target_port)
			return false;
	return true;
}

static bool strs_eq(const char **a, size_t na, const char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!str_eq(a[i], b[i]))
			return false;
	return true;
}

static bool gw_eq(const struct zt_gateway *a, const struct zt_gateway *b)
{
	return a->kind == b->kind && str_eq(a->address.network, b->address.network) &&
	       zt_ip_eq(&a->address.ip, &b->address.ip) && str_eq(a->namespace_, b->namespace_) &&
	       str_eq(a->hostname, b->hostname) && a->hbone_mtls_port == b->hbone_mtls_port;
}

static bool wl_eq(const struct zt_workload *a, const struct zt_workload *b)
{
	if (!(str_eq(a->uid, b->uid) && str_eq(a->name, b->name) &&
	      str_eq(a->namespace_, b->namespace_) && str_eq(a->service_account, b->service_account) &&
	      str_eq(a->trust_domain, b->trust_domain) && str_eq(a->node, b->node) &&
	      str_eq(a->network, b->network) && str_eq(a->cluster_id, b->cluster_id) &&
	      str_eq(a->hostname, b->hostname) && str_eq(a->workload_name, b->workload_name) &&
	      str_eq(a->workload_type, b->workload_type) &&
	      str_eq(a->canonical_name, b->canonical_name) &&
	      str_eq(a->canonical_revision, b->canonical_revision)))
		return false;
	if (a->n_ips != b->n_ips || a->protocol != b->protocol || a->status != b->status ||
	    a->capacity != b->capacity || a->network_mode != b->network_mode ||
	    a->native_tunnel != b->native_tunnel)
		return false;
	for (size_t i = 0; i < a->n_ips; i++)
		if (!zt_ip_eq(&a->ips[i], &b->ips[i]))
			return false;
	return str_eq(a->locality.region, b->locality.region) &&
	       str_eq(a->locality.zone, b->locality.zone) &&
	       str_eq(a->locality.subzone, b->locality.subzone) &&
	       strs_eq(a->authorization_policies, a->n_authorization_policies,
		       b->authorization_policies, b->n_authorization_policies) &&
	       strs_eq(a->services, a->n_services, b->services, b->n_services) &&
	       gw_eq(&a->waypoint, &b->waypoint) && gw_eq(&a->network_gateway, &b->network_gateway) &&
	       a->application_tunnel.present == b->application_tunnel.present &&
	       a->application_tunnel.protocol == b->application_tunnel.protocol &&
	       a->application_tunnel.port == b->application_tunnel.port;
}

static bool svc_eq(const struct zt_service *a, const struct zt_service *b)
{
	if (!(str_eq(a->name, b->name) && str_eq(a->namespace_, b->namespace_) &&
	      str_eq(a->hostname, b->hostname) && a->n_vips == b->n_vips &&
	      ports_eq(a->ports, a->n_ports, b->ports, b->n_ports) &&
	      strs_eq(a->subject_alt_names, a->n_subject_alt_names, b->subject_alt_names,
		      b->n_subject_alt_names) &&
	      a->n_endpoints == b->n_endpoints && a->has_load_balancer == b->has_load_balancer &&
	      a->lb_mode == b->lb_mode && a->lb_health == b->lb_health &&
	      a->n_routing_preferences == b->n_routing_preferences &&
	      gw_eq(&a->waypoint, &b->waypoint) && a->ip_families == b->ip_families &&
	      a->canonical == b->canonical))
		return false;
	for (size_t i = 0; i < a->n_vips; i++)
		if (!str_eq(a->vips[i].network, b->vips[i].network) ||
		    !zt_ip_eq(&a->vips[i].ip, &b->vips[i].ip))
			return false;
	for (size_t i = 0; i < a->n_routing_preferences; i++)
		if (a->routing_preferences[i] != b->routing_preferences[i])
			return false;
	for (size_t i = 0; i < a->n_endpoints; i++) {
		const struct zt_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];
		if (!str_eq(x->workload->uid, y->workload->uid) || x->status != y->status ||
		    !ports_eq(x->ports, x->n_ports, y->ports, y->n_ports))
			return false;
	}
	return true;
}

static bool sm_eq(const struct zt_strmatch *a, size_t na, const struct zt_strmatch *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i].kind != b[i].kind || !str_eq(a[i].value, b[i].value))
			return false;
	return true;
}

static bool cidr_eq(const struct zt_cidr *a, size_t na, const struct zt_cidr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!zt_ip_eq(&a[i].ip, &b[i].ip) || a[i].len != b[i].len)
			return false;
	return true;
}

static bool u16_eq(const uint16_t *a, size_t na, const uint16_t *b, size_t nb)
{
	return na == nb && (na == 0 || !memcmp(a, b, na * sizeof(*a)));
}

static bool match_eq(const struct zt_authz_match *a, const struct zt_authz_match *b)
{
	return sm_eq(a->namespaces, a->n_namespaces, b->namespaces, b->n_namespaces) &&
	       sm_eq(a->not_namespaces, a->n_not_namespaces, b->not_namespaces, b->n_not_namespaces) &&
	       sm_eq(a->principals, a->n_principals, b->principals, b->n_principals) &&
	       sm_eq(a->not_principals, a->n_not_principals, b->not_principals, b->n_not_principals) &&
	       sm_eq(a->service_accounts, a->n_service_accounts, b->service_accounts,
		     b->n_service_accounts) &&
	       sm_eq(a->not_service_accounts, a->n_not_service_accounts, b->not_service_accounts,
		     b->n_not_service_accounts) &&
	       cidr_eq(a->source_ips, a->n_source_ips, b->source_ips, b->n_source_ips) &&
	       cidr_eq(a->not_source_ips, a->n_not_source_ips, b->not_source_ips,
		       b->n_not_source_ips) &&
	       cidr_eq(a->destination_ips, a->n_destination_ips, b->destination_ips,
		       b->n_destination_ips) &&
	       cidr_eq(a->not_destination_ips, a->n_not_destination_ips, b->not_destination_ips,
		       b->n_not_destination_ips) &&
	       u16_eq(a->destination_ports, a->n_destination_ports, b->destination_ports,
		      b->n_destination_ports) &&
	       u16_eq(a->not_destination_ports, a->n_not_destination_ports,
		      b->not_destination_ports, b->n_not_destination_ports);
}

static bool policy_eq(const struct zt_authz_policy *a, const struct zt_authz_policy *b)
{
	if (!str_eq(a->name, b->name) || !str_eq(a->namespace_, b->namespace_) ||
	    a->scope != b->scope || a->action != b->action || a->dry_run != b->dry_run ||
	    a->n_rules != b->n_rules)
		return false;
	for (size_t i = 0; i < a->n_rules; i++) {
		if (a->rules[i].n_clauses != b->rules[i].n_clauses)
			return false;
		for (size_t j = 0; j < a->rules[i].n_clauses; j++) {
			const struct zt_authz_clause *x = &a->rules[i].clauses[j], *y = &b->rules[i].clauses[j];
			if (x->n_matches != y->n_matches)
				return false;
			for (size_t k = 0; k < x->n_matches; k++)
				if (!match_eq(&x->matches[k], &y->matches[k]))
					return false;
		}
	}
	return true;
}

static bool snap_eq(const struct zt_snapshot *a, const struct zt_snapshot *b)
{
	if (!a || !b || a->n_workloads != b->n_workloads || a->n_services != b->n_services ||
	    a->n_policies != b->n_policies)
		return false;
	for (size_t i = 0; i < a->n_workloads; i++)
		if (!wl_eq(&a->workloads[i], &b->workloads[i])) {
			fprintf(stderr, "workloads[%zu] differ\n", i);
			return false;
		}
	for (size_t i = 0; i < a->n_services; i++)
		if (!svc_eq(&a->services[i], &b->services[i])) {
			fprintf(stderr, "services[%zu] differ\n", i);
			return false;
		}
	for (size_t i = 0; i < a->n_policies; i++)
		if (!policy_eq(&a->policies[i], &b->policies[i])) {
			fprintf(stderr, "policies[%zu] differ\n", i);
			return false;
		}
	return true;
}

/* ---- happy paths ---- */

static void test_localhost_example(void)
{
	char path[512];
	struct zt_snapshot *s = NULL;
	struct zt_config_error err;
	snprintf(path, sizeof(path), "%s/localhost.yaml", examples);
	int r = zt_config_load_file(path, &s, &err);
	CHECK_INT(r, 0);
	if (r) {
		fprintf(stderr, "%s\n", err.msg);
		return;
	}
	CHECK_INT(s->n_workloads, 2);
	CHECK_INT(s->n_services, 2);
	CHECK_INT(s->n_policies, 1);
	const struct zt_workload *w = &s->workloads[0];
	CHECK_STR(w->uid, "cluster1//v1/Pod/default/local");
	CHECK_STR(w->name, "local");
	CHECK_STR(w->namespace_, "default");
	CHECK_STR(w->service_account, "default");
	CHECK_STR(w->trust_domain, "cluster.local");
	CHECK_STR(w->cluster_id, "Kubernetes");
	CHECK_STR(w->node, "local");
	CHECK_STR(w->network, "");
	CHECK_INT(w->protocol, ZT_PROTO_HBONE);
	CHECK_INT(s->workloads[1].protocol, ZT_PROTO_TCP);
	CHECK_INT(w->n_ips, 1);
	CHECK_INT(w->capacity, 1);
	CHECK_INT(w->n_services, 2);
	CHECK_STR(w->services[0], "default/example.com");
	const struct zt_service *sv = &s->services[1];
	CHECK_STR(sv->hostname, "example2.com");
	CHECK_STR(sv->vips[0].network, "remote");
	CHECK_INT(sv->n_ports, 1);
	CHECK_INT(sv->ports[0].service_port, 80);
	CHECK_INT(sv->ports[0].target_port, 8080);
	CHECK_INT(s->services[0].n_endpoints, 2);
	CHECK_INT(s->services[0].n_subject_alt_names, 1);
	CHECK_STR(s->services[0].subject_alt_names[0], "spiffe://cluster.local/ns/default/sa/local");
	const struct zt_authz_policy *p = &s->policies[0];
	CHECK_STR(p->name, "deny-9999");
	CHECK_INT(p->action, ZT_AUTHZ_ALLOW);
	CHECK_INT(p->scope, ZT_SCOPE_NAMESPACE);
	CHECK_INT(p->n_rules, 1);
	CHECK_INT(p->rules[0].n_clauses, 1);
	CHECK_INT(p->rules[0].clauses[0].n_matches, 1);
	CHECK_INT(p->rules[0].clauses[0].matches[0].n_not_destination_ports, 1);
	CHECK_INT(p->rules[0].clauses[0].matches[0].not_destination_ports[0], 9999);
	zt_snapshot_free(s);
}

static void test_demo_mesh_yaml_equals_json(void)
{
	char py[512], pj[512];
	struct zt_snapshot *a = NULL, *b = NULL;
	struct zt_config_error err;
	snprintf(py, sizeof(py), "%s/demo-mesh.yaml", examples);
	snprintf(pj, sizeof(pj), "%s/demo-mesh.json", examples);
	CHECK_INT(zt_config_load_file(py, &a, &err), 0);
	CHECK_INT(zt_config_load_file(pj, &b, &err), 0);
	CHECK(snap_eq(a, b));
	if (a) {
		CHECK_INT(a->n_workloads, 3);
		CHECK_INT(a->n_services, 1);
		const struct zt_service *sv = &a->services[0];
		CHECK_STR(sv->hostname, "httpbin.ambient-demo.svc.cluster.local");
		CHECK_INT(sv->n_endpoints, 2);
		CHECK_STR(sv->endpoints[0].workload->name, "httpbin-1");
		CHECK_STR(sv->endpoints[1].workload->name, "httpbin-2");
		CHECK_INT(sv->endpoints[0].n_ports, 1);
		CHECK_INT(sv->endpoints[0].ports[0].target_port, 8080);
		CHECK_INT(sv->ports[0].service_port, 8000);
	}
	zt_snapshot_free(a);
	zt_snapshot_free(b);
}

/* Every field, in both formats. */
static const char full_yaml[] =
	"workloads:\n"
	"- uid: c1//v1/Pod/ns1/a\n"
	"  name: a\n"
	"  namespace: ns1\n"
	"  workloadIps: [10.0.0.1, \"fd00::1\"]\n"
	"  waypoint: {destination: ns1/wp.ns1.svc.cluster.local, hboneMtlsPort: 15008}\n"
	"  networkGateway: {destination: net2/192.168.0.1, hboneMtlsPort: 15008}\n"
	"  protocol: HBONE\n"
	"  networkMode: Standard\n"
	"  trustDomain: td\n"
	"  serviceAccount: sa1\n"
	"  network: net1\n"
	"  workloadName: a\n"
	"  workloadType: deployment\n"
	"  canonicalName: a-app\n"
	"  canonicalRevision: 1.0\n"
	"  hostname: a.example\n"
	"  node: node1\n"
	"  nativeTunnel: true\n"
	"  applicationTunnel: {protocol: PROXY, port: 15088}\n"
	"  authorizationPolicies: [ns1/p1]\n"
	"  status: Unhealthy\n"
	"  clusterId: c1\n"
	"  locality: {region: r1, zone: z1, subzone: s1}\n"
	"  capacity: 3\n"
	"  services:\n"
	"    ns1/svc.ns1.svc.cluster.local: {80: 8080, \"443\": 0}\n"
	"- {namespace: ns1, uid: b, networkMode: HostNetwork, workloadIps: [10.0.0.2]}\n"
	"services:\n"
	"- name: svc\n"
	"  namespace: ns1\n"
	"  hostname: svc.ns1.svc.cluster.local\n"
	"  vips: [net1/10.96.0.1, /10.96.0.2]\n"
	"  ports: {80: 8080, 443: 0}\n"
	"  endpoints:\n"
	"    b: {workloadUid: b, port: {80: 9090}, status: Healthy}\n"
	"  subjectAltNames: [spiffe://td/ns/ns1/sa/x]\n"
	"  waypoint: {destination: /10.1.1.1, hboneMtlsPort: 15008}\n"
	"  loadBalancer: {routingPreferences: [Network, Region, Zone, Subzone, Node, Cluster],\n"
	"                 mode: Failover, healthPolicy: AllowAll}\n"
	"  ipFamilies: IPv4\n"
	"  canonical: true\n"
	"policies:\n"
	"- name: p1\n"
	"  namespace: ns1\n"
	"  scope: WorkloadSelector\n"
	"  action: Deny\n"
	"  dryRun: true\n"
	"  rules:\n"
	"  - - - namespaces: [{Exact: ns2}, {Prefix: pre}]\n"
	"        notNamespaces: [{Suffix: suf}]\n"
	"        principals: [{Presence: []}]\n"
	"        notPrincipals: [!Exact td/ns/x/sa/y]\n"
	"        serviceAccounts: [{namespace: ns2, serviceAccount: sa2}]\n"
	"        notServiceAccounts: [{namespace: ns3, serviceAccount: sa3}]\n"
	"        sourceIps: [10.0.0.0/8]\n"
	"        notSourceIps: [\"10.1.0.0/16\"]\n"
	"        destinationIps: [\"fd00::/8\"]\n"
	"        notDestinationIps: [192.168.1.1]\n"
	"        destinationPorts: [80, 443]\n"
	"        notDestinationPorts: [22]\n"
	"    - []\n"
	"  - []\n";

static const char full_json[] =
	"{\"workloads\": [{\"uid\": \"c1//v1/Pod/ns1/a\", \"name\": \"a\", \"namespace\": \"ns1\","
	" \"workloadIps\": [\"10.0.0.1\", \"fd00::1\"],"
	" \"waypoint\": {\"destination\": \"ns1/wp.ns1.svc.cluster.local\", \"hboneMtlsPort\": 15008},"
	" \"networkGateway\": {\"destination\": \"net2/192.168.0.1\", \"hboneMtlsPort\": 15008},"
	" \"protocol\": \"HBONE\", \"networkMode\": \"Standard\", \"trustDomain\": \"td\","
	" \"serviceAccount\": \"sa1\", \"network\": \"net1\", \"workloadName\": \"a\","
	" \"workloadType\": \"deployment\", \"canonicalName\": \"a-app\", \"canonicalRevision\": \"1.0\","
	" \"hostname\": \"a.example\", \"node\": \"node1\", \"nativeTunnel\": true,"
	" \"applicationTunnel\": {\"protocol\": \"PROXY\", \"port\": 15088},"
	" \"authorizationPolicies\": [\"ns1/p1\"], \"status\": \"Unhealthy\", \"clusterId\": \"c1\","
	" \"locality\": {\"region\": \"r1\", \"zone\": \"z1\", \"subzone\": \"s1\"}, \"capacity\": 3,"
	" \"services\": {\"ns1/svc.ns1.svc.cluster.local\": {\"80\": 8080, \"443\": 0}}},"
	" {\"namespace\": \"ns1\", \"uid\": \"b\", \"networkMode\": \"HostNetwork\","
	" \"workloadIps\": [\"10.0.0.2\"]}],"
	"\"services\": [{\"name\": \"svc\", \"namespace\": \"ns1\","
	" \"hostname\": \"svc.ns1.svc.cluster.local\", \"vips\": [\"net1/10.96.0.1\", \"/10.96.0.2\"],"
	" \"ports\": {\"80\": 8080, \"443\": 0},"
	" \"endpoints\": {\"b\": {\"workloadUid\": \"b\", \"port\": {\"80\": 9090}, \"status\": \"Healthy\"}},"
	" \"subjectAltNames\": [\"spiffe://td/ns/ns1/sa/x\"],"
	" \"waypoint\": {\"destination\": \"/10.1.1.1\", \"hboneMtlsPort\": 15008},"
	" \"loadBalancer\": {\"routingPreferences\": [\"Network\", \"Region\", \"Zone\", \"Subzone\","
	" \"Node\", \"Cluster\"], \"mode\": \"Failover\", \"healthPolicy\": \"AllowAll\"},"
	" \"ipFamilies\": \"IPv4\", \"canonical\": true}],"
	"\"policies\": [{\"name\": \"p1\", \"namespace\": \"ns1\", \"scope\": \"WorkloadSelector\","
	" \"action\": \"Deny\", \"dryRun\": true, \"rules\": [[[{"
	" \"namespaces\": [{\"Exact\": \"ns2\"}, {\"Prefix\": \"pre\"}],"
	" \"notNamespaces\": [{\"Suffix\": \"suf\"}], \"principals\": [{\"Presence\": []}],"
	" \"notPrincipals\": [{\"Exact\": \"td/ns/x/sa/y\"}],"
	" \"serviceAccounts\": [{\"namespace\": \"ns2\", \"serviceAccount\": \"sa2\"}],"
	" \"notServiceAccounts\": [{\"namespace\": \"ns3\", \"serviceAccount\": \"sa3\"}],"
	" \"sourceIps\": [\"10.0.0.0/8\"], \"notSourceIps\": [\"10.1.0.0/16\"],"
	" \"destinationIps\": [\"fd00::/8\"], \"notDestinationIps\": [\"192.168.1.1\"],"
	" \"destinationPorts\": [80, 443], \"notDestinationPorts\": [22]}], []], []]}]}";

static void test_all_fields(void)
{
	struct zt_snapshot *y = parse_ok(full_yaml, ZT_CONFIG_YAML);
	struct zt_snapshot *j = parse_ok(full_json, ZT_CONFIG_JSON);
	struct zt_snapshot *auto_j = parse_ok(full_json, ZT_CONFIG_AUTO);
	CHECK(snap_eq(y, j));
	CHECK(snap_eq(y, auto_j));
	if (!y)
		goto out;
	const struct zt_workload *w = &y->workloads[0];
	char buf[64];
	CHECK_INT(w->n_ips, 2);
	CHECK_STR(zt_ip_str(&w->ips[1], buf, sizeof(buf)), "fd00::1");
	CHECK_INT(w->waypoint.kind, ZT_GW_HOSTNAME);
	CHECK_STR(w->waypoint.namespace_, "ns1");
	CHECK_STR(w->waypoint.hostname, "wp.ns1.svc.cluster.local");
	CHECK_INT(w->waypoint.hbone_mtls_port, 15008);
	CHECK_INT(w->network_gateway.kind, ZT_GW_ADDRESS);
	CHECK_STR(w->network_gateway.address.network, "net2");
	CHECK_STR(w->canonical_revision, "1.0"); /* a YAML float read as a string */
	CHECK_STR(w->trust_domain, "td");
	CHECK(w->native_tunnel);
	CHECK(w->application_tunnel.present);
	CHECK_INT(w->application_tunnel.protocol, ZT_APPTUN_PROXY);
	CHECK_INT(w->application_tunnel.port, 15088);
	CHECK_INT(w->status, ZT_UNHEALTHY);
	CHECK_STR(w->locality.subzone, "s1");
	CHECK_INT(w->capacity, 3);
	CHECK_INT(y->workloads[1].network_mode, ZT_NETMODE_HOST_NETWORK);
	CHECK_STR(y->workloads[1].service_account, "default");

	const struct zt_service *sv = &y->services[0];
	CHECK_INT(sv->n_ports, 2);
	CHECK_INT(sv->ports[1].service_port, 443);
	CHECK_INT(sv->ports[1].target_port, 0);
	CHECK_INT(sv->lb_mode, ZT_LB_FAILOVER);
	CHECK_INT(sv->lb_health, ZT_LB_ALLOW_ALL);
	CHECK_INT(sv->n_routing_preferences, 6);
	CHECK_INT(sv->routing_preferences[0], ZT_SCOPE_NETWORK);
	CHECK_INT(sv->routing_preferences[5], ZT_SCOPE_CLUSTER);
	CHECK_INT(sv->ip_families, ZT_IPF_IPV4);
	CHECK(sv->canonical);
	CHECK_INT(sv->waypoint.kind, ZT_GW_ADDRESS);
	/* explicit endpoint for "b", then workload a's own entry */
	CHECK_INT(sv->n_endpoints, 2);
	CHECK_STR(sv->endpoints[0].workload->uid, "b");
	CHECK_INT(sv->endpoints[0].ports[0].target_port, 9090);
	CHECK_STR(sv->endpoints[1].workload->uid, "c1//v1/Pod/ns1/a");
	CHECK_INT(sv->endpoints[1].status, ZT_UNHEALTHY);

	const struct zt_authz_policy *p = &y->policies[0];
	CHECK_INT(p->scope, ZT_SCOPE_WORKLOAD_SELECTOR);
	CHECK_INT(p->action, ZT_AUTHZ_DENY);
	CHECK(p->dry_run);
	CHECK_INT(p->n_rules, 2);
	CHECK_INT(p->rules[0].n_clauses, 2);
	CHECK_INT(p->rules[0].clauses[1].n_matches, 0);
	CHECK_INT(p->rules[1].n_clauses, 0);
	const struct zt_authz_match *m = &p->rules[0].clauses[0].matches[0];
	CHECK_INT(m->n_namespaces, 2);
	CHECK_INT(m->namespaces[1].kind, ZT_SM_PREFIX);
	CHECK_STR(m->namespaces[1].value, "pre");
	CHECK_INT(m->not_namespaces[0].kind, ZT_SM_SUFFIX);
	CHECK_INT(m->principals[0].kind, ZT_SM_PRESENCE);
	CHECK_INT(m->not_principals[0].kind, ZT_SM_EXACT);
	CHECK_STR(m->not_principals[0].value, "td/ns/x/sa/y");
	CHECK_STR(m->service_accounts[0].value, "ns2/sa2");
	CHECK_INT(m->source_ips[0].len, 8);
	CHECK_INT(m->destination_ips[0].len, 8);
	CHECK_INT(m->not_destination_ips[0].len, 32);
	CHECK_INT(m->n_destination_ports, 2);
	CHECK_INT(m->destination_ports[1], 443);
out:
	zt_snapshot_free(y);
	zt_snapshot_free(j);
	zt_snapshot_free(auto_j);
}

static void test_empty_and_null(void)
{
	const char *empties[] = {"", "# nothing\n", "---\n", "{}", "workloads:\nservices: ~\n",
				 "workloads: []\npolicies: []\n"};
	for (size_t i = 0; i < sizeof(empties) / sizeof(*empties); i++) {
		struct zt_snapshot *s = parse_ok(empties[i], ZT_CONFIG_YAML);
		if (s) {
			CHECK_INT(s->n_workloads + s->n_services + s->n_policies, 0);
			zt_snapshot_free(s);
		}
	}
	struct zt_snapshot *s = parse_ok("{}", ZT_CONFIG_JSON);
	zt_snapshot_free(s);
	s = zt_snapshot_empty();
	CHECK(s != NULL);
	if (s)
		CHECK_INT(s->n_workloads, 0);
	zt_snapshot_free(s);
	zt_snapshot_free(NULL);
}

/* ---- errors: exact messages ---- */

struct err_case {
	enum zt_config_format fmt;
	const char *in;
	const char *msg; /* exact, or a prefix when ending in "*" */
};

static const struct err_case err_cases[] = {
	/* bad values */
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n- namespace: b\n  workloadIps: [\"10.0.0.300\"]\n",
	 "mesh.yaml: workloads[1].workloadIps[0]: \"10.0.0.300\" is not an IP address"},
	{ZT_CONFIG_JSON, "{\"workloads\": [{\"namespace\": \"a\"}, {\"namespace\": \"b\", \"workloadIps\": [\"10.0.0.300\"]}]}",
	 "mesh.yaml: workloads[1].workloadIps[0]: \"10.0.0.300\" is not an IP address"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, vips: [10.0.0.1]}\n",
	 "mesh.yaml: services[0].vips[0]: \"10.0.0.1\" is not a network address (\"network/IP\")"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, vips: [/10.0.0.x]}\n",
	 "mesh.yaml: services[0].vips[0]: \"/10.0.0.x\" is not a network address (\"network/IP\")"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  services: {foo: {80: 80}}\n",
	 "mesh.yaml: workloads[0].services: \"foo\" is not a namespaced hostname (\"namespace/hostname\")"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  waypoint: {destination: nowhere, hboneMtlsPort: 15008}\n",
	 "mesh.yaml: workloads[0].waypoint.destination: \"nowhere\" is neither a network address "
	 "(\"network/IP\") nor a namespaced hostname (\"namespace/hostname\")"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  waypoint: {destination: /10.0.0.9}\n",
	 "mesh.yaml: workloads[0].waypoint: missing field \"hboneMtlsPort\""},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  applicationTunnel: {port: 1}\n",
	 "mesh.yaml: workloads[0].applicationTunnel: missing field \"protocol\""},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow,\n"
	 "   rules: [[[{sourceIps: [10.0.0.0/33]}]]]}\n",
	 "mesh.yaml: policies[0].rules[0][0][0].sourceIps[0]: \"10.0.0.0/33\" is not an IP address or CIDR"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, name: \"a\\0b\"}\n",
	 "mesh.yaml: workloads[0].name: string contains a NUL character"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, name: \"\\x01\\\"x\\\"\\u00e9\"}\n- {namespace: a, workloadIps: [\"\\x01\\\"x\\\"\\u00e9\"]}\n",
	 "mesh.yaml: workloads[1].workloadIps[0]: \"\\x01\\\"x\\\"\xc3\xa9\" is not an IP address"},
	/* unknown keys */
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  foo: 1\n", "mesh.yaml: workloads[0].foo: unknown field"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  workloadIP: 10.0.0.1\n",
	 "mesh.yaml: workloads[0].workloadIP: unknown field"},
	{ZT_CONFIG_YAML, "foo: []\n", "mesh.yaml: foo: unknown field"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, loadBalancer: {mode: Strict, x: 1}}\n",
	 "mesh.yaml: services[0].loadBalancer.x: unknown field"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, endpoints: {e1: {workloadUid: u, weight: 1}}}\n",
	 "mesh.yaml: services[0].endpoints[\"e1\"].weight: unknown field"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, locality: {zone: z, rack: r}}\n",
	 "mesh.yaml: workloads[0].locality.rack: unknown field"},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: [[[{ports: [1]}]]]}\n",
	 "mesh.yaml: policies[0].rules[0][0][0].ports: unknown field"},
	/* missing required fields */
	{ZT_CONFIG_YAML, "workloads:\n- name: a\n", "mesh.yaml: workloads[0]: missing field \"namespace\""},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n}\n", "mesh.yaml: services[0]: missing field \"hostname\""},
	{ZT_CONFIG_YAML, "policies:\n- {name: p, namespace: n, scope: Global, action: Allow}\n",
	 "mesh.yaml: policies[0]: missing field \"rules\""},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, endpoints: {e1: {port: {}}}}\n",
	 "mesh.yaml: services[0].endpoints[\"e1\"]: missing field \"workloadUid\""},
	/* duplicates */
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, uid: u1}\n- {namespace: a, uid: u1}\n",
	 "mesh.yaml: workloads[1].uid: duplicate uid \"u1\" (also workloads[0])"},
	{ZT_CONFIG_YAML,
	 "services:\n- {name: s, namespace: n, hostname: h1, vips: [/10.0.0.1]}\n"
	 "- {name: t, namespace: n, hostname: h2, vips: [net/10.0.0.1, /10.0.0.1]}\n",
	 "mesh.yaml: services[1].vips[1]: duplicate VIP \"/10.0.0.1\" (also services[0])"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h}\n- {name: t, namespace: n, hostname: h}\n",
	 "mesh.yaml: services[1]: duplicate service \"n/h\" (also services[0])"},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: []}\n"
	 "- {name: p, namespace: n, scope: Global, action: Deny, rules: []}\n",
	 "mesh.yaml: policies[1]: duplicate policy \"n/p\" (also policies[0])"},
	{ZT_CONFIG_YAML, "workloads: []\nworkloads: []\n", "mesh.yaml: line 2 column 1: duplicate key \"workloads\""},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, ports: {80: 1, 0x50: 2}}\n",
	 "mesh.yaml: services[0].ports: duplicate port 80"},
	{ZT_CONFIG_JSON, "{\"workloads\": [], \"workloads\": []}", "mesh.yaml: line 1 column 29: duplicate object key near '\"workloads\"'"},
	{ZT_CONFIG_YAML,
	 "workloads:\n- {namespace: a, uid: u}\nservices:\n"
	 "- {name: s, namespace: n, hostname: h, endpoints: {e1: {workloadUid: u}, e2: {workloadUid: u}}}\n",
	 "mesh.yaml: services[0].endpoints[\"e2\"].workloadUid: workload \"u\" already has an endpoint in this service"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, endpoints: {e1: {workloadUid: nope}}}\n",
	 "mesh.yaml: services[0].endpoints[\"e1\"].workloadUid: no workload has uid \"nope\""},
	/* ports */
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, ports: {0: 80}}\n",
	 "mesh.yaml: services[0].ports: port 0 is out of range (1..65535)"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, ports: {70000: 80}}\n",
	 "mesh.yaml: services[0].ports: port 70000 is out of range (1..65535)"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, ports: {80: 70000}}\n",
	 "mesh.yaml: services[0].ports[80]: 70000 is out of range (0..65535)"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, ports: {http: 80}}\n",
	 "mesh.yaml: services[0].ports: \"http\" is not a port number"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, ports: {80: \"8080\"}}\n",
	 "mesh.yaml: services[0].ports[80]: expected an integer, got a string"},
	{ZT_CONFIG_JSON, "{\"services\": [{\"name\": \"s\", \"namespace\": \"n\", \"hostname\": \"h\", \"ports\": {\"80\": \"8080\"}}]}",
	 "mesh.yaml: services[0].ports[80]: expected an integer, got a string"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: a\n  services: {ns/h: {80: -1}}\n",
	 "mesh.yaml: workloads[0].services[\"ns/h\"][80]: -1 is out of range (0..65535)"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, waypoint: {destination: /1.1.1.1, hboneMtlsPort: 0}}\n",
	 "mesh.yaml: workloads[0].waypoint.hboneMtlsPort: 0 is out of range (1..65535)"},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: [[[{destinationPorts: [0]}]]]}\n",
	 "mesh.yaml: policies[0].rules[0][0][0].destinationPorts[0]: 0 is out of range (1..65535)"},
	/* enums */
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, protocol: HTTP}\n",
	 "mesh.yaml: workloads[0].protocol: \"HTTP\" is not one of TCP or HBONE"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, status: healthy}\n",
	 "mesh.yaml: workloads[0].status: \"healthy\" is not one of Healthy or Unhealthy"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, loadBalancer: {routingPreferences: [Zone, Rack]}}\n",
	 "mesh.yaml: services[0].loadBalancer.routingPreferences[1]: \"Rack\" is not one of Region, Zone, "
	 "Subzone, Node, Cluster or Network"},
	{ZT_CONFIG_YAML, "services:\n- {name: s, namespace: n, hostname: h, loadBalancer: {mode: STRICT}}\n",
	 "mesh.yaml: services[0].loadBalancer.mode: \"STRICT\" is not one of Standard, Strict, Failover or Passthrough"},
	{ZT_CONFIG_YAML, "policies:\n- {name: p, namespace: n, scope: Global, action: Audit, rules: []}\n",
	 "mesh.yaml: policies[0].action: \"Audit\" is not one of Allow or Deny"},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: [[[{namespaces: [{Regex: x}]}]]]}\n",
	 "mesh.yaml: policies[0].rules[0][0][0].namespaces[0]: \"Regex\" is not one of Exact, Prefix, Suffix or Presence"},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: [[[{namespaces: [foo]}]]]}\n",
	 "mesh.yaml: policies[0].rules[0][0][0].namespaces[0]: expected a string match "
	 "({Exact|Prefix|Suffix: string} or {Presence: []}), got a string"},
	{ZT_CONFIG_YAML,
	 "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: [[[{principals: [{Presence: x}]}]]]}\n",
	 "mesh.yaml: policies[0].rules[0][0][0].principals[0].Presence: Presence takes no value (use [])"},
	/* types */
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, workloadIps: 10.0.0.1}\n",
	 "mesh.yaml: workloads[0].workloadIps: expected a sequence, got a string"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, name: [x]}\n",
	 "mesh.yaml: workloads[0].name: expected a string, got a sequence"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: ~}\n", "mesh.yaml: workloads[0].namespace: expected a string, got null"},
	{ZT_CONFIG_JSON, "{\"workloads\": [{\"namespace\": 5}]}",
	 "mesh.yaml: workloads[0].namespace: expected a string, got an integer"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, capacity: 1.5}\n",
	 "mesh.yaml: workloads[0].capacity: expected an integer, got a number"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, capacity: -1}\n",
	 "mesh.yaml: workloads[0].capacity: -1 is out of range (0..4294967295)"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, capacity: 99999999999999999999999}\n",
	 "mesh.yaml: workloads[0].capacity: 99999999999999999999999 is out of range (0..4294967295)"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, nativeTunnel: yes}\n",
	 "mesh.yaml: workloads[0].nativeTunnel: expected a boolean, got a string"},
	{ZT_CONFIG_YAML, "workloads: {namespace: a}\n", "mesh.yaml: workloads: expected a sequence, got a mapping"},
	{ZT_CONFIG_YAML, "workloads: [5]\n", "mesh.yaml: workloads[0]: expected a mapping, got an integer"},
	{ZT_CONFIG_YAML, "- 1\n", "mesh.yaml: expected a mapping at the top level, got a sequence"},
	{ZT_CONFIG_JSON, "\"x\"", "mesh.yaml: expected a mapping at the top level, got a string"},
	{ZT_CONFIG_YAML, "workloads:\n- {namespace: a, name: !foo x}\n",
	 "mesh.yaml: workloads[0].name: unexpected YAML tag !foo"},
	{ZT_CONFIG_YAML, "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: ~}\n",
	 "mesh.yaml: policies[0].rules: expected a sequence, got null"},
	{ZT_CONFIG_YAML, "policies:\n- {name: p, namespace: n, scope: Global, action: Allow, rules: [[{}]]}\n",
	 "mesh.yaml: policies[0].rules[0][0]: expected a sequence, got a mapping"},
	/* structure and limits */
	{ZT_CONFIG_YAML, "a: &x [1]\nb: *x\n", "mesh.yaml: line 2 column 4: YAML aliases are not supported"},
	{ZT_CONFIG_YAML, "workloads: []\n---\nworkloads: []\n", "mesh.yaml: line 2 column 1: more than one YAML document"},
	{ZT_CONFIG_YAML, "? [a]\n: 1\n", "mesh.yaml: line 1 column 3: mapping keys must be scalars"},
	{ZT_CONFIG_YAML, "workloads: [{namespace: a\n", "mesh.yaml: line *"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: \"a\n", "mesh.yaml: line *"},
	{ZT_CONFIG_YAML, "workloads:\n  - namespace: a\n - name: b\n", "mesh.yaml: line *"},
	{ZT_CONFIG_YAML, "workloads:\n- namespace: \xff\xfe\n", "mesh.yaml: byte 24: invalid leading UTF-8 octet"},
	{ZT_CONFIG_JSON, "{\"workloads\": [{\"namespace\": \"\xc3\x28\"}]}", "mesh.yaml: line 1 column 30: unable to decode byte 0xc3*"},
	{ZT_CONFIG_JSON, "{\"workloads\": [", "mesh.yaml: line 1 column 15: *"},
	{ZT_CONFIG_JSON, "{\"workloads\": [{\"capacity\": 123456789012345678901234567890}]}",
	 "mesh.yaml: line 1 *too big integer*"},
};

/* '*' in `pattern` matches any run of characters. */
static bool glob_match(const char *pattern, const char *s)
{
	if (!*pattern)
		return !*s;
	if (*pattern == '*') {
		for (;; s++) {
			if (glob_match(pattern + 1, s))
				return true;
			if (!*s)
				return false;
		}
	}
	return *pattern == *s && glob_match(pattern + 1, s + 1);
}

static void test_errors(void)
{
	for (size_t i = 0; i < sizeof(err_cases) / sizeof(*err_cases); i++) {
		const struct err_case *ec = &err_cases[i];
		struct zt_snapshot *s = (void *)1;
		struct zt_config_error err;
		int r = zt_config_parse(ec->in, strlen(ec->in), ec->fmt, "mesh.yaml", &s, &err);
		if (r != -EINVAL || s != NULL) {
			fprintf(stderr, "case %zu: got %d (expected -EINVAL), msg \"%s\"\n", i, r,
				r ? err.msg : "");
			check_failures++;
			zt_snapshot_free(r ? NULL : s);
			continue;
		}
		bool ok = strchr(ec->msg, '*') ? glob_match(ec->msg, err.msg) : !strcmp(ec->msg, err.msg);
		if (!ok) {
			fprintf(stderr, "case %zu: message\n  %s\nexpected\n  %s\n", i, err.msg, ec->msg);
			check_failures++;
		}
	}
}

static void test_depth_limit(void)
{
	char y[512], j[512];
	size_t n;
	struct zt_snapshot *s;
	struct zt_config_error err;

	/* 64 levels: accepted by the reader (then rejected by the schema). */
	n = 0;
	n += (size_t)snprintf(y + n, sizeof(y) - n, "x: ");
	for (int i = 0; i < 63; i++)
		y[n++] = '[';
	for (int i = 0; i < 63; i++)
		y[n++] = ']';
	y[n] = 0;
	CHECK_INT(zt_config_parse(y, n, ZT_CONFIG_YAML, "deep.yaml", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "deep.yaml: x: unknown field");
	/* 65 levels: the reader stops. */
	n = 0;
	n += (size_t)snprintf(y + n, sizeof(y) - n, "x: ");
	for (int i = 0; i < 64; i++)
		y[n++] = '[';
	for (int i = 0; i < 64; i++)
		y[n++] = ']';
	y[n] = 0;
	CHECK_INT(zt_config_parse(y, n, ZT_CONFIG_YAML, "deep.yaml", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "deep.yaml: line 1 column 67: nesting deeper than 64 levels");

	n = 0;
	n += (size_t)snprintf(j + n, sizeof(j) - n, "{\"x\": ");
	for (int i = 0; i < 64; i++)
		j[n++] = '[';
	for (int i = 0; i < 64; i++)
		j[n++] = ']';
	j[n++] = '}';
	j[n] = 0;
	CHECK_INT(zt_config_parse(j, n, ZT_CONFIG_JSON, "deep.json", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "deep.json: nesting deeper than 64 levels");

	/* Very deep input does not reach the stack or the heap. */
	size_t big = 1 << 20;
	char *d = malloc(big + 1);
	if (d) {
		memset(d, '[', big);
		d[big] = 0;
		CHECK_INT(zt_config_parse(d, big, ZT_CONFIG_YAML, "deep.yaml", &s, &err), -EINVAL);
		CHECK_INT(zt_config_parse(d, big, ZT_CONFIG_JSON, "deep.json", &s, &err), -EINVAL);
		free(d);
	}
}

static void test_size_limit(void)
{
	struct zt_snapshot *s;
	struct zt_config_error err;
	size_t len = ZT_CONFIG_MAX_BYTES + 1;
	char *big = malloc(len);
	if (!big)
		return;
	memset(big, ' ', len);
	CHECK_INT(zt_config_parse(big, len, ZT_CONFIG_YAML, "big.yaml", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "big.yaml: larger than 64 MiB");
	free(big);
}

/* More values than the tree allows: rejected, in bounded memory. */
static void test_value_limit(void)
{
	struct zt_snapshot *s;
	struct zt_config_error err;
	size_t n = 4u * 1024 * 1024 + 1, len = 2 * n + 8, off = 0;
	char *big = malloc(len);
	if (!big)
		return;
	big[off++] = '[';
	for (size_t i = 0; i < n; i++) {
		big[off++] = '0';
		big[off++] = ',';
	}
	big[off - 1] = ']';
	CHECK_INT(zt_config_parse(big, off, ZT_CONFIG_JSON, "many.json", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "many.json: more than 4194304 values");
	CHECK_INT(zt_config_parse(big, off, ZT_CONFIG_YAML, "many.yaml", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "many.yaml: line 1 column 8388608: more than 4194304 values");
	free(big);
}

static void test_load_file_errors(void)
{
	struct zt_snapshot *s;
	struct zt_config_error err;
	CHECK_INT(zt_config_load_file("/nonexistent/zring.yaml", &s, &err), -ENOENT);
	CHECK_STR(err.msg, "/nonexistent/zring.yaml: No such file or directory");
	CHECK_INT(zt_config_load_file("/", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "/: not a regular file");
}

/* Scalars: YAML int keys, quoted keys, hex/octal, JSON keys. */
static void test_scalars(void)
{
	struct zt_snapshot *s = parse_ok(
		"services:\n- name: 123\n  namespace: true\n  hostname: h\n"
		"  ports: {80: 0x1F90, \"81\": 0o17, 082: 8082}\n",
		ZT_CONFIG_YAML);
	if (s) {
		CHECK_STR(s->services[0].name, "123");
		CHECK_STR(s->services[0].namespace_, "true");
		CHECK_INT(s->services[0].ports[0].target_port, 8080);
		CHECK_INT(s->services[0].ports[1].service_port, 81);
		CHECK_INT(s->services[0].ports[1].target_port, 15);
		CHECK_INT(s->services[0].ports[2].service_port, 82);
		zt_snapshot_free(s);
	}
	/* !!str and quotes keep numbers as strings */
	s = parse_ok("workloads:\n- {namespace: !!str 5, name: '6', uid: \"7\"}\n", ZT_CONFIG_YAML);
	if (s) {
		CHECK_STR(s->workloads[0].namespace_, "5");
		CHECK_STR(s->workloads[0].name, "6");
		CHECK_STR(s->workloads[0].uid, "7");
		zt_snapshot_free(s);
	}
	/* 17 ports: the bitmap path of duplicate detection */
	char buf[1024];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "services:\n- {name: s, namespace: n, hostname: h, ports: {");
	for (int i = 1; i <= 17; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%d: %d, ", i, i + 1000);
	snprintf(buf + n, sizeof(buf) - n, "17: 1}}\n");
	struct zt_config_error err;
	CHECK_INT(zt_config_parse(buf, strlen(buf), ZT_CONFIG_YAML, "p.yaml", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "p.yaml: line 2 column 209: duplicate key \"17\"");
	snprintf(buf + n, sizeof(buf) - n, "0x11: 1}}\n");
	CHECK_INT(zt_config_parse(buf, strlen(buf), ZT_CONFIG_YAML, "p.yaml", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "p.yaml: services[0].ports: duplicate port 17");
	snprintf(buf + n, sizeof(buf) - n, "18: 1}}\n");
	s = parse_ok(buf, ZT_CONFIG_YAML);
	if (s)
		CHECK_INT(s->services[0].n_ports, 18);
	zt_snapshot_free(s);
}

/* Workload entries override explicit ones; unknown services are ignored. */
static void test_endpoint_merge(void)
{
	struct zt_snapshot *s = parse_ok(
		"workloads:\n"
		"- {uid: w1, namespace: n, workloadIps: [10.0.0.1], status: Unhealthy,\n"
		"   services: {n/h: {80: 81}, n/missing: {80: 80}}}\n"
		"- {uid: w2, namespace: n, workloadIps: [10.0.0.2]}\n"
		"services:\n"
		"- name: s\n  namespace: n\n  hostname: h\n  ports: {80: 8080}\n"
		"  endpoints:\n"
		"    e1: {workloadUid: w1, port: {80: 99}}\n"
		"    e2: {workloadUid: w2}\n",
		ZT_CONFIG_YAML);
	if (!s)
		return;
	const struct zt_service *sv = &s->services[0];
	CHECK_INT(sv->n_endpoints, 2);
	CHECK_STR(sv->endpoints[0].workload->uid, "w1");
	CHECK_INT(sv->endpoints[0].ports[0].target_port, 81);
	CHECK_INT(sv->endpoints[0].status, ZT_UNHEALTHY);
	CHECK_STR(sv->endpoints[1].workload->uid, "w2");
	CHECK_INT(sv->endpoints[1].n_ports, 0);
	CHECK_INT(sv->endpoints[1].status, ZT_HEALTHY);
	zt_snapshot_free(s);
}

/* Every allocation failure inside the arenas is reported cleanly, no leak. */
static void test_alloc_failures(void)
{
	const char *inputs[] = {full_yaml, full_json};
	for (int f = 0; f < 2; f++) {
		int successes = 0;
		for (long k = 0; k < 100000 && !successes; k++) {
			struct zt_snapshot *s = NULL;
			struct zt_config_error err;
			zt_arena_fail_after(k);
			int r = zt_config_parse(inputs[f], strlen(inputs[f]),
						f ? ZT_CONFIG_JSON : ZT_CONFIG_YAML, "oom.yaml", &s, &err);
			zt_arena_fail_after(-1);
			if (r == 0) {
				successes++;
				zt_snapshot_free(s);
			} else if (r != -ENOMEM || strcmp(err.msg, "oom.yaml: out of memory") || s) {
				fprintf(stderr, "fail_after %ld: r=%d msg=%s\n", k, r, err.msg);
				check_failures++;
				break;
			}
		}
		CHECK_INT(successes, 1);
	}
	zt_arena_fail_after(0);
	CHECK(zt_snapshot_empty() == NULL);
	zt_arena_fail_after(-1);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		examples = argv[1];
	test_localhost_example();
	test_demo_mesh_yaml_equals_json();
	test_all_fields();
	test_empty_and_null();
	test_errors();
	test_depth_limit();
	test_size_limit();
	test_value_limit();
	test_load_file_errors();
	test_scalars();
	test_endpoint_merge();
	test_alloc_failures();
	return check_done("test_config");
}
