/* snapshot-int.h - what config.c (the builder) needs from snapshot.c.
 * Control thread only; not for shards. */
#ifndef ZT_SNAPSHOT_INT_H
#define ZT_SNAPSHOT_INT_H

#include <stddef.h>

#include "xds/snapshot.h"

/* A duplicate found while indexing: indexes into the snapshot's arrays. */
struct zt_index_conflict {
	enum { ZT_DUP_UID, ZT_DUP_SERVICE, ZT_DUP_VIP, ZT_DUP_POLICY } kind;
	size_t first, second; /* earlier and later workload / service / policy */
	size_t item;          /* ZT_DUP_VIP: index of the VIP in services[second] */
};

/* A snapshot with no content, allocated inside `a`, which it then owns.
 * NULL on OOM (the arena is left to the caller). */
struct zt_snapshot *zt_snapshot_new_in(struct zt_arena *a);

/* Build the hash indexes over s->workloads, s->services and s->policies.
 * Returns 0, -ENOMEM, or -EEXIST with `c` describing the duplicate. */
int zt_snapshot_index_build(struct zt_snapshot *s, struct zt_index_conflict *c);

#endif
