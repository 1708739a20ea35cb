/* tunnel.h - HBONE in the shard: TLS+HTTP/2 connections (hbone/h2conn.c)
 * driven on the shard's ring, a per-shard pool of client connections, and
 * tunnels relaying one TCP socket through one CONNECT stream.
 * Shard thread only. */
#ifndef ZT_TUNNEL_H
#define ZT_TUNNEL_H

#include <liburing.h>

#include "common/addr.h"

struct zt_shard;
struct zt_op;
struct zt_listener;
struct zt_shard_pod;
struct zt_workload;
struct zt_service;

/* Outbound: the accepted socket `fd` (original destination `orig`) goes to
 * `dst_wl`, an HBONE workload, at `dst`: through a pooled connection to
 * dst_ip:15008 as `src_wl`'s identity. Takes ownership of fd. */
void zt_tun_outbound(struct zt_shard *s, struct zt_shard_pod *sp, int fd,
		     const struct zt_sockaddr *src, const struct zt_sockaddr *dst,
		     const struct zt_workload *src_wl, const struct zt_workload *dst_wl,
		     const struct zt_service *svc);
/* Inbound: a TLS connection accepted on 15008. Takes ownership of fd. */
void zt_tun_accept_hbone(struct zt_shard *s, struct zt_listener *l, int fd);
/* A completion for an HBONE op. */
void zt_tun_complete(struct zt_shard *s, struct zt_op *op, struct io_uring_cqe *cqe);
struct zt_snapshot;
/* A new snapshot: reset inbound tunnels its policies now deny. */
void zt_tun_recheck_policies(struct zt_shard *s, const struct zt_snapshot *snap);
/* Once per loop: PING keepalive, idle pool eviction. */
void zt_tun_tick(struct zt_shard *s);
/* Out of provided buffers: move tunnels' queued bytes into private memory. */
void zt_tun_reclaim(struct zt_shard *s);
/* Tunnel receives waiting for provided buffers, and their re-arm. */
unsigned zt_tun_starved(const struct zt_shard *s);
void zt_tun_rearm_starved(struct zt_shard *s);
/* Drain: GOAWAY on every connection; reset everything at the deadline. */
void zt_tun_drain(struct zt_shard *s, bool abort_all);
/* Live tunnels and HBONE connections (the shard exits when both are 0). */
unsigned zt_tun_count(const struct zt_shard *s);
void zt_tun_shard_free(struct zt_shard *s);

#endif
