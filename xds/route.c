/* route.c - outbound routing decisions (ztunnel's find_upstream / load_balance).
 *
 * Any thread. Reads an immutable snapshot only: no locks, no allocation. The
 * endpoint choice walks the service's endpoints at most three times (best rank,
 * total weight, pick) instead of building a candidate list.
 */
#include <errno.h>
#include <string.h>

#include "xds/snapshot.h"

static const struct zt_port_map *find_port(const struct zt_port_map *m, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].service_port == port)
			return &m[i];
	return NULL;
}

static bool family_allowed(enum zt_ip_families f, const struct zt_ip *ip)
{
	switch (f) {
	case ZT_IPF_IPV4:
		return ip->family == AF_INET;
	case ZT_IPF_IPV6:
		return ip->family == AF_INET6;
	default:
		return true;
	}
}

/* ztunnel's pick_workload_destination: the original IP if the workload owns
 * it, else the first IP the service's families allow, preferring the family of
 * the original destination. NULL if none (hostname-only workloads need DNS,
 * which the route does not do). */
static const struct zt_ip *pick_ip(const struct zt_workload *w, enum zt_ip_families f,
				   const struct zt_ip *orig)
{
	const struct zt_ip *first = NULL;
	for (size_t i = 0; i < w->n_ips; i++)
		if (zt_ip_eq(&w->ips[i], orig))
			return &w->ips[i];
	for (size_t i = 0; i < w->n_ips; i++) {
		if (!family_allowed(f, &w->ips[i]))
			continue;
		if (w->ips[i].family == orig->family)
			return &w->ips[i];
		if (!first)
			first = &w->ips[i];
	}
	return first;
}

static bool scope_matches(enum zt_lb_scope scope, const struct zt_workload *src,
			  const struct zt_workload *w)
{
	static const struct zt_workload nobody = {
		.node = "", .network = "", .cluster_id = "", .locality = {"", "", ""}};
	if (!src)
		src = &nobody;
	switch (scope) {
	case ZT_SCOPE_REGION:
		return !strcmp(src->locality.region, w->locality.region);
	case ZT_SCOPE_ZONE:
		return !strcmp(src->locality.zone, w->locality.zone);
	case ZT_SCOPE_SUBZONE:
		return !strcmp(src->locality.subzone, w->locality.subzone);
	case ZT_SCOPE_NODE:
		return !strcmp(src->node, w->node);
	case ZT_SCOPE_CLUSTER:
		return !strcmp(src->cluster_id, w->cluster_id);
	case ZT_SCOPE_NETWORK:
		return !strcmp(src->network, w->network);
	}
	return false;
}

/* Number of leading routing preferences the endpoint shares with the source. */
static size_t rank_of(const struct zt_service *svc, const struct zt_workload *src,
		      const struct zt_workload *w)
{
	size_t r = 0;
	while (r < svc->n_routing_preferences && scope_matches(svc->routing_preferences[r], src, w))
		r++;
	return r;
}

struct lb {
	const struct zt_service *svc;
	const struct zt_workload *src;
	const struct zt_ip *orig_ip;
	uint16_t svc_port, svc_target; /* svc_target 0: the endpoint must map the port */
	bool ranked, strict;
};

/* Can `ep` take the connection at all? Fills its dial IP. */
static bool usable(const struct lb *lb, const struct zt_endpoint *ep, const struct zt_ip **ip)
{
	const struct zt_service *svc = lb->svc;
	if (ep->status != ZT_HEALTHY && !(svc->has_load_balancer && svc->lb_health == ZT_LB_ALLOW_ALL))
		return false;
	if (lb->svc_target == 0) {
		const struct zt_port_map *pm = find_port(ep->ports, ep->n_ports, lb->svc_port);
		if (!pm || pm->target_port == 0)
			return false;
	}
	*ip = pick_ip(ep->workload, svc->ip_families, lb->orig_ip);
	return *ip != NULL;
}

/* Rank of a usable endpoint, or -1 when STRICT excludes it. */
static long endpoint_rank(const struct lb *lb, const struct zt_endpoint *ep)
{
	if (!lb->ranked)
		return 0;
	size_t r = rank_of(lb->svc, lb->src, ep->workload);
	if (lb->strict && r != lb->svc->n_routing_preferences)
		return -1;
	return (long)r;
}

static const struct zt_endpoint *choose(const struct lb *lb, uint64_t rnd, const struct zt_ip **ip)
{
	const struct zt_service *svc = lb->svc;
	const struct zt_ip *dial;
	long best = -1;
	uint64_t total = 0;

	for (size_t i = 0; i < svc->n_endpoints; i++) {
		const struct zt_endpoint *ep = &svc->endpoints[i];
		if (usable(lb, ep, &dial)) {
			long r = endpoint_rank(lb, ep);
			if (r > best)
				best = r;
		}
	}
	if (best < 0)
		return NULL;
	for (size_t i = 0; i < svc->n_endpoints; i++) {
		const struct zt_endpoint *ep = &svc->endpoints[i];
		if (usable(lb, ep, &dial) && endpoint_rank(lb, ep) == best)
			total += ep->workload->capacity;
	}
	if (total == 0)
		return NULL; /* every candidate has capacity 0, as ztunnel's choose_weighted */
	/* Scale rnd into [0, total) with a multiply: uses the high bits, no modulo. */
	uint64_t pick = (uint64_t)(((unsigned __int128)rnd * total) >> 64);
	for (size_t i = 0; i < svc->n_endpoints; i++) {
		const struct zt_endpoint *ep = &svc->endpoints[i];
		if (!usable(lb, ep, &dial) || endpoint_rank(lb, ep) != best)
			continue;
		uint64_t cap = ep->workload->capacity;
		if (pick < cap) {
			*ip = dial;
			return ep;
		}
		pick -= cap;
	}
	return NULL; /* not reached */
}

static int route_service(const struct zt_service *svc, const struct zt_workload *src,
			 const struct zt_sockaddr *orig, uint64_t rnd, struct zt_route *out)
{
	out->kind = ZT_ROUTE_SERVICE;
	out->service = svc;
	/* ztunnel requires the port on the service (ServiceResolutionMode::Standard). */
	const struct zt_port_map *sp = find_port(svc->ports, svc->n_ports, orig->port);
	if (!sp)
		return -EHOSTUNREACH;
	struct lb lb = {
		.svc = svc,
		.src = src,
		.orig_ip = &orig->ip,
		.svc_port = orig->port,
		.svc_target = sp->target_port,
		.ranked = svc->has_load_balancer &&
			  (svc->lb_mode == ZT_LB_STRICT || svc->lb_mode == ZT_LB_FAILOVER),
		.strict = svc->has_load_balancer && svc->lb_mode == ZT_LB_STRICT,
	};
	const struct zt_ip *ip = NULL;
	const struct zt_endpoint *ep = choose(&lb, rnd, &ip);
	if (!ep)
		return -EHOSTUNREACH;
	/* The endpoint's own port map first, then the service's (ztunnel's order). */
	const struct zt_port_map *epm = find_port(ep->ports, ep->n_ports, orig->port);
	uint16_t port = epm && epm->target_port ? epm->target_port : sp->target_port;
	out->workload = ep->workload;
	out->dst.ip = *ip;
	out->dst.port = port;
	return 0;
}

int zt_route_outbound(const struct zt_snapshot *s, const struct zt_workload *src_wl,
		      const struct zt_sockaddr *orig, uint64_t rnd, struct zt_route *out)
{
	const char *network = src_wl ? src_wl->network : "";

	*out = (struct zt_route){.kind = ZT_ROUTE_PASSTHROUGH, .dst = *orig};
	if (!s)
		return 0;
	/* A service VIP wins over a workload IP, as in ztunnel's find_upstream. */
	const struct zt_service *svc = zt_snapshot_service_by_vip(s, network, &orig->ip);
	if (svc) {
		if (svc->has_load_balancer && svc->lb_mode == ZT_LB_PASSTHROUGH)
			return 0; /* original destination, no service attached (as ztunnel) */
		return route_service(svc, src_wl, orig, rnd, out);
	}
	const struct zt_workload *w = zt_snapshot_workload_by_ip(s, network, &orig->ip);
	if (w) {
		out->kind = ZT_ROUTE_WORKLOAD;
		out->workload = w;
	}
	return 0;
}
