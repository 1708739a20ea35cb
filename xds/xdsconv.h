/* xdsconv.h - istiod's xDS resources into the local config's tree shape.
 *
 * Control thread only. A Delta ADS response carries each resource as the
 * serialized bytes of an istio.workload.Address (a Workload or a Service) or
 * an istio.security.Authorization (xds/proto/workload.proto,
 * authorization.proto). zt_xdsconv_* decode one resource into a zt_cnode
 * mapping shaped like one element of the local config's `workloads`,
 * `services` or `policies` (camelCase keys, ztunnel's enum spellings, IPs as
 * text), so that config.c validates and builds xDS state with the same code
 * as LOCAL_XDS_PATH. zt_config_build_tree() / zt_config_build_lists() (in
 * config.c) then build a whole snapshot from the resources held.
 *
 * The decoder is a bounded protobuf reader of its own (no malloc outside the
 * arena): every length is checked against the bytes left, wire types are
 * checked for known fields, unknown fields are skipped, and a resource may not
 * exceed ZT_XDSCONV_MAX_BYTES nor produce more than ZT_XDSCONV_MAX_NODES tree
 * values. Singular fields seen twice: the last one wins (a repeated singular
 * message replaces the earlier one rather than merging with it).
 */
#ifndef ZT_XDSCONV_H
#define ZT_XDSCONV_H

#include <stddef.h>
#include <stdint.h>

#include "xds/snapshot.h"

struct zt_arena;
struct zt_cnode;

#define ZT_XDSCONV_MAX_BYTES (4u * 1024 * 1024)
#define ZT_XDSCONV_MAX_NODES (512u * 1024)

#define ZT_XDS_TYPE_ADDRESS "type.googleapis.com/istio.workload.Address"
#define ZT_XDS_TYPE_AUTHORIZATION "type.googleapis.com/istio.security.Authorization"

enum zt_xds_kind { ZT_XDS_WORKLOAD = 0, ZT_XDS_SERVICE, ZT_XDS_POLICY };

/* Decode one serialized istio.workload.Address named `name` (the xDS resource
 * name, used in messages). On success *kind is ZT_XDS_WORKLOAD or
 * ZT_XDS_SERVICE and *out a mapping allocated in `a`. A workload without a
 * uid gets `name` as its uid (xDS names workloads by uid). Returns 0,
 * -EINVAL with err->msg "<name>: <proto field path>: <reason>", or -ENOMEM.
 * On error nothing is returned; what was allocated stays in `a`. */
int zt_xdsconv_address(struct zt_arena *a, const char *name, const uint8_t *data, size_t len,
		       enum zt_xds_kind *kind, struct zt_cnode **out, struct zt_config_error *err);

/* Same for one serialized istio.security.Authorization (*out is shaped like an
 * element of `policies`). */
int zt_xdsconv_authorization(struct zt_arena *a, const char *name, const uint8_t *data,
			     size_t len, struct zt_cnode **out, struct zt_config_error *err);

/* ---- building snapshots from trees (implemented in config.c) ---- */

/* Which element an error of zt_config_build_* is about, so that the caller
 * can name (and drop) the resource: section ZT_CFG_AT_NONE when the error is
 * not inside one element (out of memory, top-level shape). For a duplicate
 * (uid, service, VIP, policy) it is the later of the two elements. */
enum zt_config_section {
	ZT_CFG_AT_NONE = 0, ZT_CFG_AT_WORKLOADS, ZT_CFG_AT_SERVICES, ZT_CFG_AT_POLICIES,
};
struct zt_config_where {
	enum zt_config_section section;
	size_t index;
};

/* Control thread. Build a snapshot from a tree shaped like the local config's
 * top level ({workloads: [...], services: [...], policies: [...]}; NULL = empty).
 * Validation and messages are zt_config_parse()'s, with `name` in place of the
 * file name. `where` may be NULL. Returns 0, -EINVAL or -ENOMEM. The tree is
 * only read; the snapshot copies what it keeps. */
int zt_config_build_tree(const struct zt_cnode *root, const char *name, struct zt_snapshot **out,
			 struct zt_config_error *err, struct zt_config_where *where);

/* Control thread. Same from arrays of element nodes (from zt_xdsconv_*), in
 * the order given: workloads, then services, then policies. A whole rebuild;
 * messages read "<name>: workloads[3].uid: ..." with indexes into the arrays. */
int zt_config_build_lists(const struct zt_cnode *const *workloads, size_t n_workloads,
			  const struct zt_cnode *const *services, size_t n_services,
			  const struct zt_cnode *const *policies, size_t n_policies,
			  const char *name, struct zt_snapshot **out, struct zt_config_error *err,
			  struct zt_config_where *where);

#endif
