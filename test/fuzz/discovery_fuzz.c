/* discovery_fuzz.c - libFuzzer target: one gRPC message of istiod's Delta ADS
 * stream as engine/xdsclient.c's on_message() reads it: nanopb pb_decode of an
 * envoy DeltaDiscoveryResponse (FT_POINTER fields, PB_ENABLE_MALLOC), then
 * each Resource's Any value through xdsconv (Address or Authorization by the
 * Any's type_url), the accepted ones built together with
 * zt_config_build_lists(), then pb_release. A failed decode is released as
 * on_message() releases it (pb_release after pb_decode's own cleanup). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>

#include "discovery.pb.h"
#include "google/protobuf/any.pb.h"
#include "xds/arena.h"
#include "xds/cfgtree.h"
#include "xds/xdsconv.h"

#define REQUIRE(c)                                                                     \
	do {                                                                           \
		if (!(c)) {                                                            \
			fprintf(stderr, "discovery_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                       \
		}                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	envoy_service_discovery_v3_DeltaDiscoveryResponse resp =
		envoy_service_discovery_v3_DeltaDiscoveryResponse_init_zero;
	pb_istream_t is = pb_istream_from_buffer(data, size);
	if (!pb_decode(&is, envoy_service_discovery_v3_DeltaDiscoveryResponse_fields, &resp)) {
		REQUIRE(PB_GET_ERROR(&is) != NULL);
		pb_release(envoy_service_discovery_v3_DeltaDiscoveryResponse_fields, &resp);
		return 0;
	}
	REQUIRE(resp.resources_count == 0 || resp.resources != NULL);
	REQUIRE(resp.removed_resources_count == 0 || resp.removed_resources != NULL);

	struct zt_arena *a = zt_arena_new();
	size_t n = resp.resources_count, counts[3] = {0, 0, 0};
	const struct zt_cnode **lists[3] = {
		calloc(n + 1, sizeof(*lists[0])), calloc(n + 1, sizeof(*lists[1])),
		calloc(n + 1, sizeof(*lists[2]))};
	if (!a || !lists[0] || !lists[1] || !lists[2])
		goto out;
	for (size_t i = 0; i < n; i++) {
		const envoy_service_discovery_v3_Resource *rs = &resp.resources[i];
		const google_protobuf_Any *any = rs->resource;
		const char *name = rs->name ? rs->name : "";
		if (!*name || !any || !any->type_url)
			continue;
		int authz = !strcmp(any->type_url, ZT_XDS_TYPE_AUTHORIZATION);
		if (!authz && strcmp(any->type_url, ZT_XDS_TYPE_ADDRESS))
			continue;
		const uint8_t *d = any->value ? any->value->bytes : NULL;
		size_t dl = any->value ? any->value->size : 0;
		struct zt_cnode *node = NULL;
		struct zt_config_error err = {{0}};
		enum zt_xds_kind kind = ZT_XDS_POLICY;
		int k = authz ? zt_xdsconv_authorization(a, name, d, dl, &node, &err)
			      : zt_xdsconv_address(a, name, d, dl, &kind, &node, &err);
		if (k) {
			REQUIRE((k == -EINVAL || k == -ENOMEM) && node == NULL && err.msg[0]);
			continue;
		}
		REQUIRE(node != NULL);
		lists[kind][counts[kind]++] = node;
	}
	if (counts[0] + counts[1] + counts[2]) {
		struct zt_snapshot *s = NULL;
		struct zt_config_error err = {{0}};
		struct zt_config_where where = {ZT_CFG_AT_NONE, 0};
		int rc = zt_config_build_lists(lists[0], counts[0], lists[1], counts[1], lists[2],
					       counts[2], "xds", &s, &err, &where);
		if (rc == 0) {
			REQUIRE(s != NULL && s->n_workloads == counts[0] &&
				s->n_services == counts[1] && s->n_policies == counts[2]);
			zt_snapshot_free(s);
		} else {
			REQUIRE((rc == -EINVAL || rc == -ENOMEM) && s == NULL && err.msg[0]);
		}
	}
out:
	for (int i = 0; i < 3; i++)
		free(lists[i]);
	zt_arena_destroy(a);
	pb_release(envoy_service_discovery_v3_DeltaDiscoveryResponse_fields, &resp);
	return 0;
}
