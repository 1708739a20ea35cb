/* qsbr.h - quiescent-state-based reclamation for the snapshot and cert store.
 *
 * Readers (shards) pay one relaxed load and one release store per loop
 * iteration: zt_qsbr_quiescent(). Before blocking in the kernel a reader goes
 * offline (zt_qsbr_offline) and comes back with zt_qsbr_online, after which it
 * may load RCU pointers again.
 *
 * The writer (control thread only: one writer) publishes a new object with
 * zt_rcu_publish(), hands the old one to zt_qsbr_retire(), and calls
 * zt_qsbr_poll() from time to time; an old object is freed once every online
 * reader has passed a quiescent point after the publication. The writer never
 * waits for readers.
 */
#ifndef ZT_QSBR_H
#define ZT_QSBR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Marks a pointer that readers load with zt_rcu_deref(). */
#define ZT_RCU _Atomic

struct zt_qsbr_reader {
	/* Written by its reader thread only; read by the writer. 0 = offline. */
	_Atomic uint64_t seen;
	char _pad[64 - sizeof(uint64_t)];
} __attribute__((aligned(64)));

struct zt_qsbr_retired;

struct zt_qsbr {
	_Atomic uint64_t epoch; /* bumped by the writer at each retire */
	unsigned n_readers;
	struct zt_qsbr_reader *readers;
	struct zt_qsbr_retired *retired; /* writer-private list, oldest last */
	size_t n_retired;
};

/* Any thread, before readers start. Returns 0 or -ENOMEM. */
int zt_qsbr_init(struct zt_qsbr *q, unsigned n_readers);
/* After all readers stopped: frees everything still retired. */
void zt_qsbr_destroy(struct zt_qsbr *q);

/* Reader `id`. */
static inline void zt_qsbr_quiescent(struct zt_qsbr *q, unsigned id)
{
	/* relaxed: the epoch value itself orders nothing; the release store
	 * below orders all earlier reads of RCU objects before the announcement. */
	uint64_t e = atomic_load_explicit(&q->epoch, memory_order_relaxed);
	atomic_store_explicit(&q->readers[id].seen, e, memory_order_release);
}

static inline void zt_qsbr_offline(struct zt_qsbr *q, unsigned id)
{
	/* release: reads of RCU objects happen before we declare ourselves out */
	atomic_store_explicit(&q->readers[id].seen, 0, memory_order_release);
}

static inline void zt_qsbr_online(struct zt_qsbr *q, unsigned id)
{
	/* seq_cst store then seq_cst loads of RCU pointers: if the writer saw us
	 * offline, our later pointer loads see its newer publication. */
	uint64_t e = atomic_load_explicit(&q->epoch, memory_order_seq_cst);
	atomic_store_explicit(&q->readers[id].seen, e, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
}

/* Load an RCU pointer (reader side, between online and the next quiescent). */
#define zt_rcu_deref(pp) atomic_load_explicit((pp), memory_order_acquire)

/* Writer: store `val` into `*pp` and return the previous value. seq_cst so the
 * publication is ordered before the epoch bump in zt_qsbr_retire(). */
#define zt_rcu_publish(pp, val) atomic_exchange_explicit((pp), (val), memory_order_seq_cst)

/* Writer: free `p` with `fn(p)` after a grace period. Returns 0, or -ENOMEM
 * (then it waits for the grace period synchronously, polling). */
int zt_qsbr_retire(struct zt_qsbr *q, void *p, void (*fn)(void *));
/* Writer: free what has passed its grace period. Returns how many remain. */
size_t zt_qsbr_poll(struct zt_qsbr *q);

#endif
