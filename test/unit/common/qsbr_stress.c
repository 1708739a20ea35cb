/* QSBR stress: a writer publishes snapshots as fast as it can while readers
 * dereference and check them; every retired object is poisoned then freed.
 * Under ThreadSanitizer (suite 'tsan') or ASan (suite 'unit') a reader that
 * touched a reclaimed object is reported; the checks also catch a poisoned
 * read without any sanitizer. Bounded: a fixed number of publications. */
#include "common/qsbr.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define READERS 3
#define PUBLICATIONS 20000
#define MAGIC 0x5a52494e47ULL

struct obj {
	uint64_t magic;
	uint64_t gen;
	uint64_t payload[8];
};

static struct zt_qsbr q;
static ZT_RCU(struct obj *) cur;
static _Atomic bool stop;
static _Atomic uint64_t bad, reads, freed;
static _Atomic unsigned started;

static void obj_free(void *p)
{
	struct obj *o = p;
	o->magic = 0xdead; /* poison: a late reader sees it */
	atomic_fetch_add_explicit(&freed, 1, memory_order_relaxed);
	free(o);
}

static void *reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	uint64_t last = 0, n = 0;
	zt_qsbr_online(&q, id);
	atomic_fetch_add(&started, 1);
	do {
		for (int i = 0; i < 64; i++) {
			struct obj *o = zt_rcu_deref(&cur);
			uint64_t sum = 0;
			for (int k = 0; k < 8; k++)
				sum += o->payload[k];
			if (o->magic != MAGIC || sum != o->gen * 8 || o->gen < last)
				atomic_fetch_add_explicit(&bad, 1, memory_order_relaxed);
			last = o->gen;
			n++;
		}
		if (id == 0 && (n & 16383) == 64) {
			/* Hold one object across a long pause without a quiescent
			 * point: the writer's retirements must wait for us, and the
			 * object must still be intact (not freed) afterwards. */
			struct obj *held = zt_rcu_deref(&cur);
			uint64_t gen = held->gen;
			usleep(2000);
			if (held->magic != MAGIC || held->gen != gen)
				atomic_fetch_add_explicit(&bad, 1, memory_order_relaxed);
		}
		zt_qsbr_quiescent(&q, id);
		if ((n & 65535) == 0) { /* go offline now and then, like a shard waiting */
			zt_qsbr_offline(&q, id);
			usleep(10);
			zt_qsbr_online(&q, id);
		}
	} while (!atomic_load_explicit(&stop, memory_order_relaxed));
	zt_qsbr_offline(&q, id);
	atomic_fetch_add_explicit(&reads, n, memory_order_relaxed);
	return NULL;
}

static struct obj *make(uint64_t gen)
{
	struct obj *o = malloc(sizeof(*o));
	o->magic = MAGIC;
	o->gen = gen;
	for (int k = 0; k < 8; k++)
		o->payload[k] = gen;
	return o;
}

int main(void)
{
	pthread_t t[READERS];
	if (zt_qsbr_init(&q, READERS))
		return 1;
	atomic_store(&cur, make(1));
	for (unsigned i = 0; i < READERS; i++)
		pthread_create(&t[i], NULL, reader, (void *)(uintptr_t)i);
	/* every reader is online before the first publication (bounded wait) */
	for (int i = 0; i < 5000 && atomic_load(&started) < READERS; i++)
		usleep(1000);
	size_t max_pending = 0;
	for (uint64_t g = 2; g <= PUBLICATIONS; g++) {
		struct obj *old = zt_rcu_publish(&cur, make(g));
		zt_qsbr_retire(&q, old, obj_free);
		/* right after the retire a reader has usually not passed a
		 * quiescent point yet: the object must still be pending */
		if (q.n_retired > max_pending)
			max_pending = q.n_retired;
		/* give readers time to hold the old object across the retire */
		for (volatile int k = 0; k < 2000; k++)
			;
		size_t p = zt_qsbr_poll(&q);
		if (p > max_pending)
			max_pending = p;
	}
	/* Readers keep passing quiescent points: everything retired gets freed
	 * without stopping them. Bounded wait. */
	for (int i = 0; i < 5000 && zt_qsbr_poll(&q); i++)
		usleep(1000);
	size_t left = zt_qsbr_poll(&q);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	zt_qsbr_destroy(&q);
	free(atomic_load(&cur));

	printf("publications=%d reads=%llu freed=%llu max_pending=%zu left_while_running=%zu bad=%llu\n",
	       PUBLICATIONS, (unsigned long long)reads, (unsigned long long)freed, max_pending, left,
	       (unsigned long long)bad);
	/* max_pending > 0: some retire really had to wait for a reader */
	if (bad || left || freed != PUBLICATIONS - 1 || reads == 0 || max_pending == 0) {
		fprintf(stderr, "FAIL\n");
		return 1;
	}
	return 0;
}
