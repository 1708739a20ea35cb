/* xdsconv_fuzz.c - libFuzzer target: istiod's resources (protobuf bytes)
 * through xds/xdsconv.c and then config.c, as engine/xdsclient.c's rebuild()
 * does it.
 *
 * One input is read twice:
 *  1. whole, as one istio.workload.Address and as one
 *     istio.security.Authorization (so a raw resource is a seed as it is);
 *     each accepted one is built alone into a snapshot;
 *  2. as a list of resources, each record [kind:1][len:2 little-endian]
 *     [len bytes] (kind bit 0: 0 Address, 1 Authorization; a length past the
 *     end takes what is left). Every accepted one goes into the lists given to
 *     zt_config_build_lists(); an element it refuses is dropped and the build
 *     retried, as rebuild() does, so that duplicates and references between
 *     workloads, services and policies are exercised.
 * Everything decoded lives in one arena destroyed at the end; snapshots are
 * freed with zt_snapshot_free(). Checked: the out-parameters' contracts
 * (node and kind on success, NULL and a message naming the resource on
 * error), and that a built snapshot finds what it holds. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xds/arena.h"
#include "xds/cfgtree.h"
#include "xds/xdsconv.h"

#define REQUIRE(c)                                                                   \
	do {                                                                         \
		if (!(c)) {                                                          \
			fprintf(stderr, "xdsconv_fuzz: %s:%d: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                     \
		}                                                                    \
	} while (0)

/* Records read from one input: bounds the build retries (quadratic). */
#define MAX_RECORDS 64

static const char NAME[] = "fuzz-res";

static void check_err(int rc, const struct zt_cnode *node, const struct zt_config_error *err)
{
	REQUIRE(rc == -EINVAL || rc == -ENOMEM);
	REQUIRE(node == NULL);
	REQUIRE(!strncmp(err->msg, NAME, sizeof(NAME) - 1) && err->msg[sizeof(NAME) - 1] == ':');
	REQUIRE(memchr(err->msg, 0, sizeof(err->msg)) != NULL);
}

static void check_snapshot(const struct zt_snapshot *s, size_t n_wl, size_t n_sv, size_t n_po)
{
	char key[1024];
	REQUIRE(s->n_workloads == n_wl && s->n_services == n_sv && s->n_policies == n_po);
	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct zt_workload *w = &s->workloads[i];
		REQUIRE(*w->uid && zt_snapshot_workload_by_uid(s, w->uid) == w);
	}
	for (size_t i = 0; i < s->n_services; i++) {
		const struct zt_service *sv = &s->services[i];
		snprintf(key, sizeof(key), "%s/%s", sv->namespace_, sv->hostname);
		if (strlen(key) < sizeof(key) - 1)
			REQUIRE(zt_snapshot_service_by_key(s, key) == sv);
		for (size_t k = 0; k < sv->n_vips; k++)
			REQUIRE(zt_snapshot_service_by_vip(s, sv->vips[k].network, &sv->vips[k].ip) == sv);
	}
	for (size_t i = 0; i < s->n_policies; i++) {
		const struct zt_authz_policy *p = &s->policies[i];
		snprintf(key, sizeof(key), "%s/%s", p->namespace_, p->name);
		if (strlen(key) < sizeof(key) - 1)
			REQUIRE(zt_snapshot_policy_by_key(s, key) == p);
	}
}

/* Decode one resource; on success append its node to the matching list. */
static void decode(struct zt_arena *a, int authz, const uint8_t *d, size_t n,
		   const struct zt_cnode **lists[3], size_t counts[3])
{
	struct zt_cnode *node = (struct zt_cnode *)1; /* must be overwritten */
	struct zt_config_error err;
	enum zt_xds_kind kind = ZT_XDS_POLICY;
	memset(&err, 'x', sizeof(err));
	int rc = authz ? zt_xdsconv_authorization(a, NAME, d, n, &node, &err)
		       : zt_xdsconv_address(a, NAME, d, n, &kind, &node, &err);
	if (rc) {
		check_err(rc, node, &err);
		return;
	}
	REQUIRE(node != NULL && node->kind == ZT_CN_MAP);
	REQUIRE(authz || kind == ZT_XDS_WORKLOAD || kind == ZT_XDS_SERVICE);
	lists[kind][counts[kind]++] = node;
}

/* Build from the lists, dropping what the build refuses (rebuild()'s loop). */
static void build(const struct zt_cnode **lists[3], size_t counts[3])
{
	size_t total = counts[0] + counts[1] + counts[2];
	for (size_t tries = 0; tries <= total; tries++) {
		struct zt_snapshot *s = (struct zt_snapshot *)1;
		struct zt_config_error err;
		struct zt_config_where where = {ZT_CFG_AT_NONE, 0};
		memset(&err, 'x', sizeof(err));
		int rc = zt_config_build_lists(lists[0], counts[0], lists[1], counts[1], lists[2],
					       counts[2], "xds", &s, &err, &where);
		if (rc == 0) {
			REQUIRE(s != NULL);
			check_snapshot(s, counts[0], counts[1], counts[2]);
			zt_snapshot_free(s);
			return;
		}
		REQUIRE(rc == -EINVAL || rc == -ENOMEM);
		REQUIRE(s == NULL);
		REQUIRE(!strncmp(err.msg, "xds: ", 5) && memchr(err.msg, 0, sizeof(err.msg)));
		if (rc != -EINVAL || where.section == ZT_CFG_AT_NONE)
			return;
		size_t sec = where.section == ZT_CFG_AT_WORKLOADS ? 0
			     : where.section == ZT_CFG_AT_SERVICES ? 1 : 2;
		REQUIRE(where.section <= ZT_CFG_AT_POLICIES && where.index < counts[sec]);
		memmove(&lists[sec][where.index], &lists[sec][where.index + 1],
			(counts[sec] - where.index - 1) * sizeof(*lists[sec]));
		counts[sec]--;
	}
	REQUIRE(!"a build failed more often than it had elements");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct zt_arena *a = zt_arena_new();
	if (!a)
		return 0;
	const struct zt_cnode *wl[MAX_RECORDS], *sv[MAX_RECORDS], *po[MAX_RECORDS];
	const struct zt_cnode **lists[3] = {wl, sv, po};

	/* 1. The whole input as one resource of each type, each built alone. */
	for (int authz = 0; authz < 2; authz++) {
		size_t counts[3] = {0, 0, 0};
		decode(a, authz, data, size, lists, counts);
		if (counts[0] + counts[1] + counts[2])
			build(lists, counts);
	}

	/* 2. Framed records, built together. */
	size_t counts[3] = {0, 0, 0}, off = 0;
	for (int k = 0; k < MAX_RECORDS && size - off >= 3; k++) {
		int authz = data[off] & 1;
		size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
		off += 3;
		if (len > size - off)
			len = size - off;
		decode(a, authz, data + off, len, lists, counts);
		off += len;
	}
	if (counts[0] + counts[1] + counts[2])
		build(lists, counts);

	zt_arena_destroy(a);
	return 0;
}
