#include "common/qsbr.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

struct zt_qsbr_retired {
	struct zt_qsbr_retired *next;
	void *p;
	void (*fn)(void *);
	uint64_t epoch;
};

int zt_qsbr_init(struct zt_qsbr *q, unsigned n_readers)
{
	q->readers = aligned_alloc(64, sizeof(*q->readers) * (n_readers ? n_readers : 1));
	if (!q->readers)
		return -ENOMEM;
	q->n_readers = n_readers;
	for (unsigned i = 0; i < n_readers; i++)
		atomic_init(&q->readers[i].seen, 0);
	atomic_init(&q->epoch, 1);
	q->retired = NULL;
	q->n_retired = 0;
	return 0;
}

static bool grace_passed(struct zt_qsbr *q, uint64_t epoch)
{
	for (unsigned i = 0; i < q->n_readers; i++) {
		/* seq_cst pairs with zt_qsbr_online's store */
		uint64_t s = atomic_load_explicit(&q->readers[i].seen, memory_order_seq_cst);
		if (s != 0 && s < epoch)
			return false;
	}
	return true;
}

int zt_qsbr_retire(struct zt_qsbr *q, void *p, void (*fn)(void *))
{
	/* seq_cst: after the publication (zt_rcu_publish), before reader scans */
	uint64_t e = atomic_fetch_add_explicit(&q->epoch, 1, memory_order_seq_cst) + 1;
	struct zt_qsbr_retired *r = malloc(sizeof(*r));
	if (!r) {
		while (!grace_passed(q, e))
			sched_yield();
		fn(p);
		return -ENOMEM;
	}
	r->p = p;
	r->fn = fn;
	r->epoch = e;
	r->next = q->retired;
	q->retired = r;
	q->n_retired++;
	zt_qsbr_poll(q);
	return 0;
}

size_t zt_qsbr_poll(struct zt_qsbr *q)
{
	struct zt_qsbr_retired **pp = &q->retired;
	while (*pp) {
		struct zt_qsbr_retired *r = *pp;
		if (grace_passed(q, r->epoch)) {
			*pp = r->next;
			r->fn(r->p);
			free(r);
			q->n_retired--;
		} else {
			pp = &r->next;
		}
	}
	return q->n_retired;
}

void zt_qsbr_destroy(struct zt_qsbr *q)
{
	while (q->retired) {
		struct zt_qsbr_retired *r = q->retired;
		q->retired = r->next;
		r->fn(r->p);
		free(r);
	}
	q->n_retired = 0;
	free(q->readers);
	q->readers = NULL;
}
