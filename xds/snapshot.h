/* snapshot.h - the immutable view of the mesh that shards read.
 *
 * Built by the control thread (from the local config file now, from xDS later),
 * published whole through an RCU pointer (common/qsbr.h), never modified after
 * publication. Shards call the lookup functions: they are pure, lock-free and
 * allocation-free. Every string and array lives in the snapshot's own arena and
 * is freed with it by zt_snapshot_free().
 */
#ifndef ZT_SNAPSHOT_H
#define ZT_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"

enum zt_protocol { ZT_PROTO_TCP = 0, ZT_PROTO_HBONE = 1 };
enum zt_health { ZT_HEALTHY = 0, ZT_UNHEALTHY = 1 };
enum zt_lb_mode { ZT_LB_STANDARD = 0, ZT_LB_STRICT, ZT_LB_FAILOVER, ZT_LB_PASSTHROUGH };
enum zt_lb_health { ZT_LB_ONLY_HEALTHY = 0, ZT_LB_ALLOW_ALL };
enum zt_lb_scope {
	ZT_SCOPE_REGION = 0, ZT_SCOPE_ZONE, ZT_SCOPE_SUBZONE, ZT_SCOPE_NODE,
	ZT_SCOPE_CLUSTER, ZT_SCOPE_NETWORK,
};

struct zt_port_map {
	uint16_t service_port;
	uint16_t target_port; /* 0 = named port, unresolved */
};

struct zt_netaddr {
	const char *network; /* "" = default network */
	struct zt_ip ip;
};

struct zt_locality {
	const char *region, *zone, *subzone;
};

enum zt_network_mode { ZT_NETMODE_STANDARD = 0, ZT_NETMODE_HOST_NETWORK };

/* A waypoint or network gateway: an address or a service "namespace/hostname",
 * reached with HBONE on hbone_mtls_port. kind NONE = not set. */
enum zt_gateway_kind { ZT_GW_NONE = 0, ZT_GW_ADDRESS, ZT_GW_HOSTNAME };
struct zt_gateway {
	enum zt_gateway_kind kind;
	struct zt_netaddr address;        /* ZT_GW_ADDRESS */
	const char *namespace_, *hostname; /* ZT_GW_HOSTNAME */
	uint16_t hbone_mtls_port;
};

enum zt_app_tunnel_proto { ZT_APPTUN_NONE = 0, ZT_APPTUN_PROXY };
struct zt_app_tunnel {
	bool present;
	enum zt_app_tunnel_proto protocol;
	uint16_t port; /* 0 = unset */
};

enum zt_ip_families { ZT_IPF_AUTOMATIC = 0, ZT_IPF_DUAL, ZT_IPF_IPV4, ZT_IPF_IPV6 };

struct zt_workload {
	const char *uid, *name, *namespace_, *service_account, *trust_domain;
	const char *node, *network, *cluster_id, *hostname;
	const char *workload_name, *workload_type, *canonical_name, *canonical_revision;
	struct zt_ip *ips;
	size_t n_ips;
	enum zt_protocol protocol;
	enum zt_health status;
	uint32_t capacity; /* default 1 */
	struct zt_locality locality;
	const char **authorization_policies; /* "namespace/name" */
	size_t n_authorization_policies;
	const char **services; /* "namespace/hostname" keys this workload belongs to */
	size_t n_services;
	/* Strings are never NULL ("" when unset). trust_domain defaults to
	 * "cluster.local", service_account to "default", cluster_id to
	 * "Kubernetes". HOST_NETWORK workloads are not indexed by IP. */
	enum zt_network_mode network_mode;
	bool native_tunnel;
	struct zt_gateway waypoint, network_gateway;
	struct zt_app_tunnel application_tunnel;
};

/* Endpoints hold every workload of the service, unhealthy ones included;
 * zt_route_outbound() applies the service's health policy. */
struct zt_endpoint {
	const struct zt_workload *workload;
	struct zt_port_map *ports; /* this workload's port map for the service */
	size_t n_ports;
	enum zt_health status;
};

struct zt_service {
	const char *name, *namespace_, *hostname;
	struct zt_netaddr *vips;
	size_t n_vips;
	struct zt_port_map *ports;
	size_t n_ports;
	const char **subject_alt_names;
	size_t n_subject_alt_names;
	struct zt_endpoint *endpoints;
	size_t n_endpoints;
	bool has_load_balancer;
	enum zt_lb_mode lb_mode;
	enum zt_lb_health lb_health;
	enum zt_lb_scope *routing_preferences;
	size_t n_routing_preferences;
	struct zt_gateway waypoint;
	enum zt_ip_families ip_families;
	bool canonical;
};

/* Authorization policies are parsed and validated here; authz/ compiles and
 * evaluates them. A string match is exact, prefix ("x*"), suffix ("*x") or
 * presence ("*"). */
enum zt_strmatch_kind { ZT_SM_EXACT = 0, ZT_SM_PREFIX, ZT_SM_SUFFIX, ZT_SM_PRESENCE };
struct zt_strmatch {
	enum zt_strmatch_kind kind;
	const char *value; /* without the '*' */
};
struct zt_cidr {
	struct zt_ip ip;
	uint8_t len;
};
/* service_accounts / not_service_accounts come from ztunnel's
 * ServiceAccountMatch {namespace, serviceAccount}: stored as ZT_SM_EXACT with
 * value "namespace/serviceaccount" (neither part can contain '/'). */
struct zt_authz_match {
	struct zt_strmatch *namespaces, *not_namespaces;
	struct zt_strmatch *principals, *not_principals;
	struct zt_strmatch *service_accounts, *not_service_accounts;
	struct zt_cidr *source_ips, *not_source_ips;
	struct zt_cidr *destination_ips, *not_destination_ips;
	uint16_t *destination_ports, *not_destination_ports;
	size_t n_namespaces, n_not_namespaces, n_principals, n_not_principals;
	size_t n_service_accounts, n_not_service_accounts;
	size_t n_source_ips, n_not_source_ips, n_destination_ips, n_not_destination_ips;
	size_t n_destination_ports, n_not_destination_ports;
};
struct zt_authz_clause {
	struct zt_authz_match *matches;
	size_t n_matches;
};
struct zt_authz_rule {
	struct zt_authz_clause *clauses;
	size_t n_clauses;
};
enum zt_authz_action { ZT_AUTHZ_ALLOW = 0, ZT_AUTHZ_DENY, ZT_AUTHZ_AUDIT };
enum zt_authz_scope { ZT_SCOPE_GLOBAL = 0, ZT_SCOPE_NAMESPACE, ZT_SCOPE_WORKLOAD_SELECTOR };
struct zt_authz_policy {
	const char *name, *namespace_;
	enum zt_authz_scope scope;
	enum zt_authz_action action;
	bool dry_run;
	struct zt_authz_rule *rules;
	size_t n_rules;
};

struct zt_snapshot_index; /* private hash tables */
struct zt_arena;

struct zt_snapshot {
	uint64_t generation; /* set by the publisher, increasing */
	struct zt_workload *workloads;
	size_t n_workloads;
	struct zt_service *services;
	size_t n_services;
	struct zt_authz_policy *policies;
	size_t n_policies;
	struct zt_snapshot_index *_index;
	struct zt_arena *_arena;
	/* Derived indexes that layers above xds attach before publication (the
	 * authorization index, authz/): freed with the snapshot. */
	void *authz;
	void (*authz_free)(void *);
};

/* Limits of zt_config_parse(): larger or deeper input is rejected. */
#define ZT_CONFIG_MAX_BYTES (64u * 1024 * 1024)
#define ZT_CONFIG_MAX_DEPTH 64

/* Errors while building: "<file>: <key path>: <reason>". */
struct zt_config_error {
	char msg[512];
};

enum zt_config_format { ZT_CONFIG_AUTO = 0, ZT_CONFIG_YAML, ZT_CONFIG_JSON };

/* Control thread. Parse a local config (ztunnel's format, YAML or JSON) and
 * build a snapshot. `name` is used in error messages. Returns 0, or -EINVAL /
 * -ENOMEM / -errno with `err` filled. Unknown keys and bad values are errors. */
int zt_config_parse(const char *data, size_t len, enum zt_config_format fmt, const char *name,
		    struct zt_snapshot **out, struct zt_config_error *err);
/* Control thread. Reads the file (format from extension .json / .yaml / .yml,
 * else sniffed) and calls zt_config_parse. */
int zt_config_load_file(const char *path, struct zt_snapshot **out, struct zt_config_error *err);
/* An empty snapshot (no workloads): what runs before any config arrives. */
struct zt_snapshot *zt_snapshot_empty(void);
void zt_snapshot_free(struct zt_snapshot *s);

/* Any thread, lock-free. NULL when absent. `network` NULL means "". */
const struct zt_workload *zt_snapshot_workload_by_ip(const struct zt_snapshot *s,
						     const char *network, const struct zt_ip *ip);
const struct zt_workload *zt_snapshot_workload_by_uid(const struct zt_snapshot *s, const char *uid);
/* "namespace/name" of a pod (istio-cni's WorkloadInfo). */
const struct zt_workload *zt_snapshot_workload_by_name(const struct zt_snapshot *s,
						       const char *ns_slash_name);
const struct zt_service *zt_snapshot_service_by_vip(const struct zt_snapshot *s,
						    const char *network, const struct zt_ip *ip);
const struct zt_service *zt_snapshot_service_by_key(const struct zt_snapshot *s,
						    const char *ns_slash_hostname);
const struct zt_authz_policy *zt_snapshot_policy_by_key(const struct zt_snapshot *s,
							const char *ns_slash_name);

/* Where an outbound connection goes. */
enum zt_route_kind {
	ZT_ROUTE_PASSTHROUGH = 0, /* unknown destination: connect to the original dst */
	ZT_ROUTE_WORKLOAD,        /* a known workload address (direct, no service) */
	ZT_ROUTE_SERVICE,         /* a service VIP, load-balanced to an endpoint */
};

struct zt_route {
	enum zt_route_kind kind;
	struct zt_sockaddr dst;              /* address to connect to */
	const struct zt_workload *workload;  /* destination workload, or NULL */
	const struct zt_service *service;    /* service addressed, or NULL */
};

/* Any thread, lock-free, allocation-free. Decide where a connection from
 * `src_wl` (may be NULL) to original destination `orig` goes, ztunnel's way:
 * a service VIP picks an endpoint at random weighted by capacity among healthy
 * ones (all with health policy ALLOW_ALL), with the service port mapped to the
 * endpoint's target port (the endpoint's own map first, then the service's,
 * as ztunnel does); FAILOVER and STRICT rank by routing preference against
 * `src_wl`; PASSTHROUGH keeps the original destination; a workload IP routes
 * to that workload; otherwise passthrough. Lookups use `src_wl`'s network ("" if
 * NULL). `rnd` is a random 64-bit value from the caller. For a service the
 * endpoint IP is the workload's first one allowed by the service's IP families,
 * preferring the family of `orig`; endpoints without such an IP are skipped.
 * The route does not apply waypoints or network gateways: the caller looks at
 * workload->waypoint / service->waypoint / workload->network for those.
 * Returns 0, or -EHOSTUNREACH when the service has no usable endpoint (then
 * `out` is kind SERVICE with workload NULL, for logging). `s` may be NULL. */
int zt_route_outbound(const struct zt_snapshot *s, const struct zt_workload *src_wl,
		      const struct zt_sockaddr *orig, uint64_t rnd, struct zt_route *out);

#endif
