/* xdsclient.h - Delta ADS client for istiod (control thread).
 *
 * One gRPC stream on XDS_ADDRESS (/envoy.service.discovery.v3.
 * AggregatedDiscoveryService/DeltaAggregatedResources) with wildcard
 * subscriptions to istio.workload.Address and istio.security.Authorization,
 * as ztunnel keeps it:
 *   - on each (re)connect one request per type, carrying the node (id and
 *     metadata) and, after a reconnect, initial_resource_versions of what is
 *     held, so that istiod sends only what changed;
 *   - each response is applied (resources added or replaced, names removed),
 *     the whole snapshot is rebuilt from every resource held (xds/xdsconv.c,
 *     config.c's validation) and handed to the owner, then ACKed; a resource
 *     that does not decode or does not fit (duplicate uid or VIP, bad
 *     field) is left out and named in a NACK's error_detail
 *     ("<name>: <reason>; ..."), the others are applied all the same;
 *   - on any failure the stream is dropped and re-opened after a backoff
 *     (10 ms doubling to 15 s, back to 10 ms after a response); the last
 *     snapshot keeps serving meanwhile.
 * Runs in the owner's poll loop (zt_xds_fd/events/timeout/io), sans threads.
 */
#ifndef ZT_ENGINE_XDSCLIENT_H
#define ZT_ENGINE_XDSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct zt_snapshot;

struct zt_xds_kv {
	const char *key;
	const char *value;
};

struct zt_xds_opts {
	const char *address;        /* XDS_ADDRESS: https://host:port (or http:// for h2c) */
	const char *root_cert_path; /* XDS_ROOT_CA: PEM roots istiod's certificate chains to */
	const char *server_name;    /* TLS name to check; NULL: the address's host */
	const char *token_path;     /* bearer token, re-read at each connect; NULL/missing: none */
	const char *cluster_id;     /* "clusterid" header */
	const char *node_id;        /* Node.id */
	const struct zt_xds_kv *meta; /* Node.metadata (string values) */
	size_t n_meta;
	uint32_t backoff_max_ms; /* 0: 15000 */
};

/* The owner takes the snapshot (and must free it); `why` says what changed. */
typedef void (*zt_xds_publish_fn)(void *ud, struct zt_snapshot *snap, const char *why);

struct zt_xds;

/* Keeps o (its strings must outlive the client); connects at the first
 * zt_xds_io(). Returns 0 or -ENOMEM. */
int zt_xds_new(const struct zt_xds_opts *o, zt_xds_publish_fn publish, void *ud,
	       struct zt_xds **out);
void zt_xds_free(struct zt_xds *x);

/* For the owner's poll(): the fd (-1 while waiting to reconnect), events, and
 * the longest wait in ms before zt_xds_io() must run (-1: no limit). */
int zt_xds_fd(const struct zt_xds *x);
short zt_xds_events(const struct zt_xds *x);
int zt_xds_timeout(const struct zt_xds *x, uint64_t now_ms);
void zt_xds_io(struct zt_xds *x, short revents, uint64_t now_ms);

/* Both types have been received at least once since start (readiness). */
bool zt_xds_synced(const struct zt_xds *x);

#endif
