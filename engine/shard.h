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

/* Commands from the control thread to a shard. */
enum zt_shard_cmd { ZT_SHARD_ADD_POD = 1, ZT_SHARD_DEL_POD };

/* Any thread: queue a command and wake the shard. The shard takes a
 * reference on ADD and drops it (pod->refs) once, after DEL, when it no
 * longer uses the pod: no listener op in flight, no connection left.
 * Returns 0 or -ENOMEM. */
int zt_shard_post(struct zt_shard *s, enum zt_shard_cmd cmd, struct zt_pod *pod);

/* Shard statistics, readable from any thread (relaxed counters). */
struct zt_shard_stats {
	_Atomic uint64_t accepted, active, closed, failed, oom;
	_Atomic uint64_t spills; /* queues moved out of the provided buffers (spill.h) */
};
const struct zt_shard_stats *zt_shard_stats(const struct zt_shard *s);
/* The shard's metric series, read by the control thread when scraped. */
struct zt_metrics_shard *zt_shard_metrics(const struct zt_shard *s);

#endif
