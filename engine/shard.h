/* shard.h - one pinned thread per CPU owning an io_uring ring, its listeners
 * and its connections. Created and joined by main; zt_shard_wake may be called
 * from any thread. */
#ifndef ZT_SHARD_H
#define ZT_SHARD_H

#include "engine/runtime.h"

/* Main thread. Allocate shard `id`; the thread starts with zt_shard_start. */
struct zt_shard *zt_shard_new(struct zt_runtime *rt, unsigned id);
/* Main thread. Start the thread; returns 0 or -errno. */
int zt_shard_start(struct zt_shard *s);
/* Main thread. Wait for the thread to exit and free the shard. */
void zt_shard_join(struct zt_shard *s);
/* Any thread: interrupt the shard's wait so it re-reads runtime flags. */
void zt_shard_wake(struct zt_shard *s);

/* Main thread, once at start: check that the kernel has every io_uring
 * operation zring needs and which optional features it has. Logs the result.
 * Returns 0, or -ENOSYS (naming what is missing) when zring cannot run. */
int zt_uring_probe(struct zt_uring_features *f);

/* Shard statistics, readable from any thread (relaxed counters). */
struct zt_shard_stats {
	_Atomic uint64_t accepted, active, closed, failed, oom;
};
const struct zt_shard_stats *zt_shard_stats(const struct zt_shard *s);

#endif
