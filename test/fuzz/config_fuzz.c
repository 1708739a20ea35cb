/* config_fuzz.c - libFuzzer target: the local config parser on arbitrary
 * bytes, read as YAML and as JSON. An accepted config is then walked through
 * every lookup and the outbound router, checking that what the indexes return
 * is consistent with the arrays. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xds/snapshot.h"

#define REQUIRE(c)                                                                   \
	do {                                                                         \
		if (!(c)) {                                                          \
			fprintf(stderr, "config_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                     \
		}                                                                    \
	} while (0)

static void exercise(const struct zt_snapshot *s)
{
	char key[1024];
	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct zt_workload *w = &s->workloads[i];
		if (*w->uid)
			REQUIRE(zt_snapshot_workload_by_uid(s, w->uid) == w);
		for (size_t k = 0; k < w->n_ips; k++) {
			const struct zt_workload *f = zt_snapshot_workload_by_ip(s, w->network, &w->ips[k]);
			REQUIRE(w->network_mode == ZT_NETMODE_HOST_NETWORK || f != NULL);
			struct zt_sockaddr d = {w->ips[k], 80};
			struct zt_route r;
			zt_route_outbound(s, w, &d, (uint64_t)i * 0x9e3779b97f4a7c15ull, &r);
		}
	}
	for (size_t i = 0; i < s->n_services; i++) {
		const struct zt_service *sv = &s->services[i];
		snprintf(key, sizeof(key), "%s/%s", sv->namespace_, sv->hostname);
		if (strlen(key) < sizeof(key) - 1)
			REQUIRE(zt_snapshot_service_by_key(s, key) == sv);
		for (size_t k = 0; k < sv->n_vips; k++) {
			REQUIRE(zt_snapshot_service_by_vip(s, sv->vips[k].network, &sv->vips[k].ip) == sv);
			for (size_t p = 0; p <= sv->n_ports; p++) {
				struct zt_sockaddr d = {sv->vips[k].ip,
							p < sv->n_ports ? sv->ports[p].service_port : 1};
				/* A source in the VIP's network, so that the VIP means sv. */
				struct zt_workload src = {
					.uid = "", .node = "", .cluster_id = "",
					.locality = {"", "", ""}};
				if (s->n_workloads)
					src = s->workloads[0];
				src.network = sv->vips[k].network;
				for (uint64_t rnd = 0; rnd < 4; rnd++) {
					struct zt_route r;
					int rc = zt_route_outbound(s, &src, &d, rnd * (UINT64_MAX / 3), &r);
					if (rc == 0 && r.kind == ZT_ROUTE_SERVICE) {
						REQUIRE(r.workload != NULL && r.service == sv);
						REQUIRE(r.dst.port != 0);
					}
				}
			}
		}
	}
	for (size_t i = 0; i < s->n_policies; i++) {
		const struct zt_authz_policy *p = &s->policies[i];
		snprintf(key, sizeof(key), "%s/%s", p->namespace_, p->name);
		if (strlen(key) < sizeof(key) - 1)
			REQUIRE(zt_snapshot_policy_by_key(s, key) == p);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum zt_config_format fmts[] = {ZT_CONFIG_YAML, ZT_CONFIG_JSON};
	for (size_t f = 0; f < 2; f++) {
		struct zt_snapshot *s = NULL;
		struct zt_config_error err;
		int r = zt_config_parse((const char *)data, size, fmts[f], "fuzz.yaml", &s, &err);
		if (r == 0) {
			REQUIRE(s != NULL);
			exercise(s);
			zt_snapshot_free(s);
		} else {
			REQUIRE(s == NULL);
			REQUIRE(!strncmp(err.msg, "fuzz.yaml: ", 11) && err.msg[11] != 0);
		}
	}
	return 0;
}
