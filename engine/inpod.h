/* inpod.h - shared mode (PROXY_MODE=shared): istio-cni hands every pod of the
 * node to zring over ZDS; for each pod, zring opens its listeners inside the
 * pod's network namespace and hands them to every shard.
 * Control thread only. */
#ifndef ZT_INPOD_H
#define ZT_INPOD_H

#include "engine/runtime.h"

struct zt_inpod;

int zt_inpod_new(struct zt_runtime *rt, struct zt_inpod **out);
/* The ZDS socket to poll for input, or -1 while disconnected. */
int zt_inpod_fd(const struct zt_inpod *ip);
/* Handle whatever istio-cni sent. */
void zt_inpod_readable(struct zt_inpod *ip);
/* Reconnect when due, free pods the shards let go of. Call often. Returns
 * the ms until it wants to be called again (at most 100). */
int zt_inpod_tick(struct zt_inpod *ip);
/* After the shards have stopped. */
void zt_inpod_free(struct zt_inpod *ip);
/* Pods currently served (for logs and tests). */
unsigned zt_inpod_count(const struct zt_inpod *ip);

#endif
