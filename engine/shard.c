/* shard.c - the shard thread: ring set-up, provided buffers, listeners and the
 * one completion dispatch loop. Connections themselves live in conn.c. */
#include "engine/shard-t.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/sock.h"
#include "engine/spill.h"
#include "engine/tunnel.h"

#define TARGET "shard"
/* Free buffers kept in the ring while receives find enough of them there
 * (buf_top_up): few, so the ones reused are still in cache. One: with at
 * most two buffers held per direction (zt_shard_recv_room) a busy relay then
 * cycles through about three, where four in the ring made it six (plain pair,
 * split: 10.88 -> 11.36 Gbit/s, HBONE pair 7.03 -> 7.48; bench/RESULTS.md,
 * 2026-11-26 11:47). The target doubles while receives find the ring empty. */
#define RING_TARGET_MIN 1u

static void buf_top_up(struct zt_shard *s);

struct zt_shard *zt_shard_new(struct zt_runtime *rt, unsigned id)
{
	struct zt_shard *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->rt = rt;
	s->id = id;
	s->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (s->wake_fd < 0) {
		free(s);
		return NULL;
	}
	s->live.next = s->live.prev = &s->live;
	pthread_mutex_init(&s->mb_lock, NULL);
	s->metrics = zt_metrics_shard_new();
	if (!s->metrics) {
		close(s->wake_fd);
		free(s);
		return NULL;
	}
	if (getrandom(&s->rnd, sizeof(s->rnd), 0) != sizeof(s->rnd))
		s->rnd = zt_now_ns() ^ ((uint64_t)id << 32);
	s->rnd |= 1;
	return s;
}

const struct zt_shard_stats *zt_shard_stats(const struct zt_shard *s)
{
	return &s->stats;
}

struct zt_metrics_shard *zt_shard_metrics(const struct zt_shard *s)
{
	return s->metrics;
}

void zt_shard_wake(struct zt_shard *s)
{
	uint64_t one = 1;
	ssize_t w = write(s->wake_fd, &one, sizeof(one));
	(void)w;
}

struct io_uring_sqe *zt_shard_sqe(struct zt_shard *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	if (!sqe) {
		/* SQ full: hand what we have to the kernel and retry once. */
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

/* ---- queues of received bytes (shard-t.h) ---- */

void zt_bufq_init(struct zt_bufq *q)
{
	*q = (struct zt_bufq){.head = ZT_BID_NONE, .tail = ZT_BID_NONE};
}

bool zt_bufq_push(struct zt_shard *s, struct zt_bufq *q, uint16_t b, uint32_t len)
{
	if (q->spill) { /* keep the order: behind the spilled bytes */
		uint32_t k = zt_spill_put(q->spill, s->bufs + (size_t)b * s->buf_size, len);
		zt_shard_buf_return(s, b);
		q->bytes += k;
		return k == len;
	}
	s->buf_len[b] = len;
	s->buf_next[b] = ZT_BID_NONE;
	q->nbufs++;
	if (q->tail == ZT_BID_NONE)
		q->head = b;
	else
		s->buf_next[q->tail] = b;
	q->tail = b;
	q->bytes += len;
	return true;
}

uint32_t zt_bufq_peek(const struct zt_shard *s, const struct zt_bufq *q, const uint8_t **p)
{
	if (q->spill)
		return zt_spill_peek(q->spill, p);
	if (q->head == ZT_BID_NONE)
		return 0;
	*p = s->bufs + (size_t)q->head * s->buf_size + q->off;
	return s->buf_len[q->head] - q->off;
}

void zt_bufq_consume(struct zt_shard *s, struct zt_bufq *q, uint32_t n)
{
	q->bytes -= n;
	if (q->spill) {
		zt_spill_consume(q->spill, n);
		if (!q->spill->count) { /* caught up: back to the provided buffers */
			free(q->spill);
			q->spill = NULL;
		}
		return;
	}
	while (n) {
		uint16_t b = q->head;
		uint32_t k = s->buf_len[b] - q->off < n ? s->buf_len[b] - q->off : n;
		q->off += k;
		n -= k;
		if (q->off == s->buf_len[b]) {
			q->head = s->buf_next[b];
			if (q->head == ZT_BID_NONE)
				q->tail = ZT_BID_NONE;
			q->off = 0;
			q->nbufs--;
			zt_shard_buf_return(s, b);
		}
	}
}

bool zt_bufq_spill(struct zt_shard *s, struct zt_bufq *q)
{
	if (q->head == ZT_BID_NONE)
		return true;
	if (!q->spill && !(q->spill = zt_spill_new(s->rt->opts.conn_buf_cap)))
		return false;
	while (q->head != ZT_BID_NONE) {
		uint16_t b = q->head;
		zt_spill_put(q->spill, s->bufs + (size_t)b * s->buf_size + q->off, s->buf_len[b] - q->off);
		q->off = 0;
		q->head = s->buf_next[b];
		zt_shard_buf_return(s, b);
	}
	q->tail = ZT_BID_NONE;
	q->nbufs = 0;
	atomic_fetch_add_explicit(&s->stats.spills, 1, memory_order_relaxed);
	return true;
}

void zt_bufq_clear(struct zt_shard *s, struct zt_bufq *q)
{
	while (q->head != ZT_BID_NONE) {
		uint16_t b = q->head;
		q->head = s->buf_next[b];
		zt_shard_buf_return(s, b);
	}
	free(q->spill);
	zt_bufq_init(q);
}

/* Before each wait: refill the ring; then, for receives that found no
 * buffer, either re-arm them (enough buffers are free again: the ring had
 * only run dry) or, when buffers are really short, make connections that
 * hold some move them into private memory (at most every 10 ms). */
static void relieve_starvation(struct zt_shard *s)
{
	buf_top_up(s);
	if (!s->n_starved && !zt_tun_starved(s))
		return;
	uint64_t now;
	if (s->bufs_free < ZT_REARM_MIN_FREE && (now = zt_now_ms()) - s->reclaim_ms >= 10) {
		s->reclaim_ms = now;
		zt_conn_reclaim(s);
		zt_tun_reclaim(s);
	}
	if (s->bufs_free >= ZT_REARM_MIN_FREE) {
		zt_conn_rearm_starved(s);
		zt_tun_rearm_starved(s);
	}
}

/* Ring set-up. Each flag is a request; the kernel may refuse and we retry
 * without it:
 *  SINGLE_ISSUER  only this thread submits: the kernel skips locking.
 *  DEFER_TASKRUN  completions run when we ask for them (in submit_and_wait),
 *                 not by interrupting us: batches work, fewer context switches.
 *  COOP_TASKRUN   (fallback for DEFER) no IPI to signal completions.
 *  SUBMIT_ALL     keep submitting after one SQE fails.
 *  CQSIZE         a CQ 4x the SQ: many multishot completions per submission. */
static int setup_ring(struct zt_shard *s)
{
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		0,
	};
	int r = -EINVAL;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p = {0};
		p.flags = tries[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = 16384;
		r = io_uring_queue_init_params(4096, &s->ring, &p);
		if (r == 0) {
			/* Enter through a registered ring index: no file lookup per
			 * io_uring_enter (5.18+; without it the fd is used). */
			bool reg = io_uring_register_ring_fd(&s->ring) == 1;
			if (s->id == 0)
				ZT_DEBUG(TARGET, "ring set-up flags 0x%x, ring fd %s", p.flags,
					 reg ? "registered" : "not registered");
			return 0;
		}
	}
	ZT_ERROR(TARGET, "shard %u: io_uring_queue_init failed: %s", s->id, strerror(-r));
	return r;
}

/* Provided buffer ring: liburing 2.3 has no io_uring_setup_buf_ring, so map
 * the ring memory ourselves and register it. */
static int setup_buffers(struct zt_shard *s)
{
	const struct zt_engine_opts *o = &s->rt->opts;
	s->buf_size = o->buf_size;
	s->buf_count = o->buf_count;
	s->br_len = s->buf_count * sizeof(struct io_uring_buf);
	s->br = mmap(NULL, s->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (s->br == MAP_FAILED) {
		s->br = NULL;
		return -ENOMEM;
	}
	/* Buffers are touched only when the kernel fills them: idle shards stay small. */
	s->bufs = mmap(NULL, (size_t)s->buf_size * s->buf_count, PROT_READ | PROT_WRITE,
		       MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (s->bufs == MAP_FAILED) {
		s->bufs = NULL;
		return -ENOMEM;
	}
	s->buf_next = calloc(s->buf_count, sizeof(*s->buf_next));
	s->buf_len = calloc(s->buf_count, sizeof(*s->buf_len));
	s->buf_stack = calloc(s->buf_count, sizeof(*s->buf_stack));
	if (!s->buf_next || !s->buf_len || !s->buf_stack)
		return -ENOMEM;

	struct io_uring_buf_reg reg = {
		.ring_addr = (unsigned long)s->br,
		.ring_entries = s->buf_count,
		.bgid = ZT_BUF_GROUP,
	};
	int r = io_uring_register_buf_ring(&s->ring, &reg, 0);
	if (r) {
		ZT_ERROR(TARGET, "shard %u: provided buffer ring: %s", s->id, strerror(-r));
		return r;
	}
	io_uring_buf_ring_init(s->br);
	for (uint32_t i = 0; i < s->buf_count; i++) /* buffer 0 on top */
		s->buf_stack[i] = (uint16_t)(s->buf_count - 1 - i);
	s->buf_stack_n = s->buf_count;
	s->bufs_free = s->buf_count;
	s->ring_target = RING_TARGET_MIN < s->buf_count ? RING_TARGET_MIN : s->buf_count;
	buf_top_up(s);
	return 0;
}

void zt_shard_buf_return(struct zt_shard *s, uint16_t bid)
{
	s->buf_stack[s->buf_stack_n++] = bid;
	s->bufs_free++;
}

/* Fill the ring up to its target from the stack (newest first); grow the
 * target while receives find the ring empty and the stack is not, shrink it
 * after a quiet second. */
static void buf_top_up(struct zt_shard *s)
{
	uint32_t in_ring = s->bufs_free - s->buf_stack_n;
	if (s->buf_stack_n && (s->n_starved || zt_tun_starved(s)) &&
	    s->ring_target < s->buf_count) {
		/* Receives found the ring empty with buffers to spare: more of
		 * them complete per wait than the ring held. */
		s->ring_target = s->ring_target * 2 < s->buf_count ? s->ring_target * 2 : s->buf_count;
		s->ring_grown_ms = zt_now_ms();
	} else if (s->ring_target > RING_TARGET_MIN && zt_now_ms() - s->ring_grown_ms > 1000) {
		s->ring_target /= 2; /* a quiet second: shrink back (down to the minimum) */
		s->ring_grown_ms = zt_now_ms();
	}
	int mask = io_uring_buf_ring_mask(s->buf_count), n = 0;
	while (in_ring + (uint32_t)n < s->ring_target && s->buf_stack_n) {
		uint16_t bid = s->buf_stack[--s->buf_stack_n];
		io_uring_buf_ring_add(s->br, s->bufs + (size_t)bid * s->buf_size, s->buf_size, bid,
				      mask, n);
		n++;
	}
	if (n)
		io_uring_buf_ring_advance(s->br, n);
}

int zt_uring_probe(struct zt_uring_features *f)
{
	static const struct {
		int op;
		const char *name;
	} need[] = {
		{IORING_OP_ACCEPT, "accept"},     {IORING_OP_RECV, "recv"},
		{IORING_OP_SEND, "send"},         {IORING_OP_CONNECT, "connect"},
		{IORING_OP_LINK_TIMEOUT, "link_timeout"}, {IORING_OP_ASYNC_CANCEL, "async_cancel"},
		{IORING_OP_READ, "read"},         {IORING_OP_PROVIDE_BUFFERS, "provide_buffers"},
	};
	struct io_uring ring;
	memset(f, 0, sizeof(*f));
	int r = io_uring_queue_init(8, &ring, 0);
	if (r) {
		ZT_ERROR(TARGET, "io_uring is not available: %s", strerror(-r));
		return -ENOSYS;
	}
	struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
	if (!p) {
		io_uring_queue_exit(&ring);
		ZT_ERROR(TARGET, "io_uring probe failed (kernel older than 5.6?)");
		return -ENOSYS;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!io_uring_opcode_supported(p, need[i].op)) {
			ZT_ERROR(TARGET, "the kernel's io_uring lacks %s", need[i].name);
			r = -ENOSYS;
		}
	io_uring_free_probe(p);

	/* Provided buffer rings (5.19): register a tiny one and drop it. */
	struct io_uring_buf_ring *br = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
					    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br != MAP_FAILED) {
		struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = 1, .bgid = 7};
		f->buf_ring = io_uring_register_buf_ring(&ring, &reg, 0) == 0;
		if (f->buf_ring)
			io_uring_unregister_buf_ring(&ring, 7);
		munmap(br, 4096);
	}
	if (!f->buf_ring) {
		ZT_ERROR(TARGET, "the kernel's io_uring lacks provided buffer rings (needs 5.19+)");
		r = -ENOSYS;
	}
	/* Multishot accept arrived with buffer rings (5.19). */
	f->multishot_accept = f->buf_ring;
	io_uring_queue_exit(&ring);

	struct io_uring_params prm = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
	if (io_uring_queue_init_params(8, &ring, &prm) == 0) {
		f->defer_taskrun = true;
		io_uring_queue_exit(&ring);
	}
	/* Multishot recv came in 6.0, before DEFER_TASKRUN (6.1). */
	f->multishot_recv = f->defer_taskrun;
	if (r == 0)
		ZT_INFO(TARGET, "io_uring features: provided buffer rings, %s accept, %s",
			f->multishot_accept ? "multishot" : "single-shot",
			f->defer_taskrun ? "deferred task run" : "cooperative task run");
	return r;
}

static void arm_accept(struct zt_shard *s, struct zt_listener *l)
{
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe)
		return;
	if (s->rt->uring.multishot_accept)
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &l->op);
	l->armed = true;
}

static void arm_wake(struct zt_shard *s)
{
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, s->wake_fd, &s->wake_val, sizeof(s->wake_val), 0);
	io_uring_sqe_set_data(sqe, &s->wake_op);
}

static struct zt_listener *listener_new(struct zt_shard *s, int fd, bool owns_fd,
					enum zt_listener_kind kind, struct zt_shard_pod *sp)
{
	struct zt_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->op.kind = ZT_OP_ACCEPT;
	l->fd = fd;
	l->owns_fd = owns_fd;
	l->kind = kind;
	l->spod = sp;
	l->next = s->listeners;
	s->listeners = l;
	arm_accept(s, l);
	return l;
}

static void listener_unlink_free(struct zt_shard *s, struct zt_listener *l)
{
	for (struct zt_listener **pp = &s->listeners; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	struct zt_shard_pod *sp = l->spod;
	free(l);
	if (sp) {
		sp->listeners--;
		zt_shard_pod_maybe_release(s, sp);
	}
}

/* Stop accepting on `l`: cancel its accept; it is freed when the final
 * completion of that accept arrives. */
static void listener_close(struct zt_shard *s, struct zt_listener *l)
{
	if (l->fd < 0)
		return;
	if (l->armed) {
		struct io_uring_sqe *sqe = zt_shard_sqe(s);
		if (sqe) {
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&l->op, 0);
			io_uring_sqe_set_data(sqe, NULL);
			io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
		}
	}
	/* The in-flight accept holds its own file reference, so close() alone
	 * would leave the socket listening until the cancel lands; shutdown()
	 * stops it now and resets what waits in its accept queue. */
	if (l->owns_fd) {
		shutdown(l->fd, SHUT_RDWR);
		close(l->fd);
	}
	l->fd = -1;
	if (!l->armed)
		listener_unlink_free(s, l);
}

static int open_listeners(struct zt_shard *s)
{
	const struct zt_engine_opts *o = &s->rt->opts;
	struct {
		uint16_t port;
		enum zt_listener_kind kind;
	} want[] = {{o->outbound_port, ZT_LISTEN_OUTBOUND},
		    {o->inbound_port, ZT_LISTEN_INBOUND},
		    {15008, ZT_LISTEN_HBONE}};

	int r;
	s->listening = true;
	if (o->mode == ZT_MODE_SHARED)
		return 0; /* pods bring their own listeners */
	for (size_t i = 0; i < 3; i++) {
		struct zt_sockaddr a = {0};
		/* Dual-stack [::] first; a namespace without IPv6 gets 0.0.0.0. */
		zt_ip_parse("::", &a.ip);
		a.port = want[i].port;
		int fd = zt_sock_listen(&a, 4096, true);
		if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
			zt_ip_parse("0.0.0.0", &a.ip);
			fd = zt_sock_listen(&a, 4096, true);
		}
		char as[ZT_ADDRSTRLEN];
		if (fd < 0) {
			ZT_ERROR(TARGET, "listen on %s: %s", zt_sockaddr_str(&a, as, sizeof(as)),
				 strerror(-fd));
			return fd;
		}
		if (want[i].kind != ZT_LISTEN_OUTBOUND && (r = zt_sock_set_transparent(fd)) && s->id == 0)
			ZT_WARN(TARGET, "inbound listener without IP_TRANSPARENT (%s): TPROXY capture "
					"will not reach it", strerror(-r));
		struct zt_listener *l = listener_new(s, fd, true, want[i].kind, NULL);
		if (!l) {
			close(fd);
			return -ENOMEM;
		}
		l->addr = a;
		if (s->id == 0)
			ZT_INFO("proxy", "listener established address=%s component=\"%s\" shards=%u",
				zt_sockaddr_str(&a, as, sizeof(as)),
				l->kind == ZT_LISTEN_OUTBOUND ? "outbound"
				: l->kind == ZT_LISTEN_INBOUND ? "inbound plaintext" : "inbound HBONE",
				s->rt->n_shards);
	}
	return 0;
}

static void close_listeners(struct zt_shard *s)
{
	for (struct zt_listener *l = s->listeners, *n; l; l = n) {
		n = l->next; /* l may be freed */
		listener_close(s, l);
	}
	s->listening = false;
}

int zt_shard_post(struct zt_shard *s, enum zt_shard_cmd cmd, struct zt_pod *pod)
{
	pthread_mutex_lock(&s->mb_lock);
	if (s->mb_len == s->mb_cap) {
		unsigned cap = s->mb_cap ? s->mb_cap * 2 : 16;
		struct zt_shard_msg *m = realloc(s->mb, cap * sizeof(*m));
		if (!m) {
			pthread_mutex_unlock(&s->mb_lock);
			return -ENOMEM;
		}
		s->mb = m;
		s->mb_cap = cap;
	}
	s->mb[s->mb_len++] = (struct zt_shard_msg){.cmd = cmd, .pod = pod};
	pthread_mutex_unlock(&s->mb_lock);
	zt_shard_wake(s);
	return 0;
}

void zt_shard_pod_maybe_release(struct zt_shard *s, struct zt_shard_pod *sp)
{
	if (!sp->deleting || sp->conns || sp->listeners)
		return;
	for (struct zt_shard_pod **pp = &s->pods; *pp; pp = &(*pp)->next)
		if (*pp == sp) {
			*pp = sp->next;
			break;
		}
	s->pods_deleting--;
	/* release: everything this shard did with the pod happens before the
	 * control thread sees the count drop and frees it */
	atomic_fetch_sub_explicit(&sp->pod->refs, 1, memory_order_release);
	free(sp);
}

static void pod_add(struct zt_shard *s, struct zt_pod *pod)
{
	struct zt_shard_pod *sp = calloc(1, sizeof(*sp));
	if (!sp) {
		ZT_ERROR(TARGET, "shard %u: out of memory adding pod %s", s->id, pod->uid);
		atomic_fetch_sub_explicit(&pod->refs, 1, memory_order_release);
		return;
	}
	sp->pod = pod;
	sp->next = s->pods;
	s->pods = sp;
	static const enum zt_listener_kind kinds[3] = {ZT_LISTEN_OUTBOUND, ZT_LISTEN_INBOUND,
						       ZT_LISTEN_HBONE};
	unsigned base = pod->n_lfd > 3 ? 3 * s->id : 0; /* per-shard sets */
	for (unsigned i = 0; i < 3 && base + i < pod->n_lfd; i++)
		if (pod->lfd[base + i] >= 0 &&
		    listener_new(s, pod->lfd[base + i], false, kinds[i], sp))
			sp->listeners++;
}

static void pod_del(struct zt_shard *s, struct zt_pod *pod)
{
	struct zt_shard_pod *sp = s->pods;
	while (sp && sp->pod != pod)
		sp = sp->next;
	if (!sp || sp->deleting)
		return;
	sp->deleting = true;
	sp->drain_deadline_ms = zt_now_ms() + s->rt->opts.drain_ms;
	s->pods_deleting++;
	for (struct zt_listener *l = s->listeners, *n; l; l = n) {
		n = l->next;
		if (l->spod == sp)
			listener_close(s, l);
	}
	zt_shard_pod_maybe_release(s, sp);
}

static void read_mailbox(struct zt_shard *s)
{
	struct zt_shard_msg local[64];
	for (;;) {
		unsigned n;
		pthread_mutex_lock(&s->mb_lock);
		n = s->mb_len < 64 ? s->mb_len : 64;
		if (n) {
			memcpy(local, s->mb, n * sizeof(*local));
			memmove(s->mb, s->mb + n, (s->mb_len - n) * sizeof(*local));
			s->mb_len -= n;
		}
		pthread_mutex_unlock(&s->mb_lock);
		if (!n)
			return;
		for (unsigned i = 0; i < n; i++) {
			if (local[i].cmd == ZT_SHARD_ADD_POD)
				pod_add(s, local[i].pod);
			else
				pod_del(s, local[i].pod);
		}
	}
}

/* Pods being deleted whose connections outlive the drain deadline. */
static void expire_pods(struct zt_shard *s)
{
	uint64_t now = zt_now_ms();
	for (struct zt_shard_pod *sp = s->pods, *n; sp; sp = n) {
		n = sp->next; /* sp may be released */
		if (sp->deleting && sp->conns && now >= sp->drain_deadline_ms)
			zt_conn_abort_pod(s, sp);
	}
}

static void handle_accept(struct zt_shard *s, struct zt_listener *l, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		l->armed = false;
	if (cqe->res >= 0) {
		if (l->fd < 0) { /* closing: refuse */
			zt_sock_set_rst(cqe->res);
			close(cqe->res);
		} else if (l->kind == ZT_LISTEN_HBONE) {
			zt_tun_accept_hbone(s, l, cqe->res);
		} else {
			zt_conn_accepted(s, l, cqe->res);
		}
	} else if (cqe->res != -ECANCELED) {
		ZT_WARN(TARGET, "accept: %s", strerror(-cqe->res));
	}
	if (!l->armed) {
		if (l->fd >= 0)
			arm_accept(s, l);
		else
			listener_unlink_free(s, l);
	}
}

static void dispatch(struct zt_shard *s, struct io_uring_cqe *cqe)
{
	struct zt_op *op = io_uring_cqe_get_data(cqe);
	if (cqe->flags & IORING_CQE_F_BUFFER)
		s->bufs_free--; /* the handler keeps it or returns it */
	if (!op)
		return; /* cancel requests and other fire-and-forget SQEs */
	switch (op->kind) {
	case ZT_OP_ACCEPT:
		handle_accept(s, (struct zt_listener *)((char *)op - offsetof(struct zt_listener, op)), cqe);
		break;
	case ZT_OP_WAKE:
		read_mailbox(s);
		arm_wake(s);
		break;
	default:
		if (op->kind >= ZT_OP_HC_CONNECT)
			zt_tun_complete(s, op, cqe);
		else
			zt_conn_complete(s, op, cqe);
		break;
	}
}

static void pin_cpu(struct zt_shard *s)
{
	cpu_set_t allowed, one;
	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return;
	unsigned n = 0;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &allowed))
			continue;
		if (n++ == s->id % (unsigned)CPU_COUNT(&allowed)) {
			CPU_ZERO(&one);
			CPU_SET(c, &one);
			pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
			return;
		}
	}
}

/* --busy-poll: submit what is queued and look for completions for up to
 * `ns` before the caller goes to sleep in io_uring_enter. Waking a sleeping
 * CPU costs tens of microseconds per message in a VM (and a few on bare
 * metal); a shard that keeps looking skips that at the price of CPU time.
 * The CPU is yielded between looks so the other threads on the core (a
 * second zring, the workloads) still run. True when completions are ready. */
static bool busy_poll(struct zt_shard *s, uint64_t ns)
{
	uint64_t end = zt_now_ns() + ns;
	for (;;) {
		int r = io_uring_submit_and_get_events(&s->ring);
		if (io_uring_cq_ready(&s->ring))
			return true;
		if ((r < 0 && r != -EINTR && r != -EBUSY) || zt_now_ns() >= end)
			return false;
		sched_yield();
	}
}

static void *shard_main(void *arg)
{
	struct zt_shard *s = arg;
	struct zt_runtime *rt = s->rt;
	char name[16];

	snprintf(name, sizeof(name), "zring-shard-%u", s->id);
	pthread_setname_np(pthread_self(), name);
	if (rt->opts.pin)
		pin_cpu(s);
	/* The ring is created here: with SINGLE_ISSUER the creating thread is
	 * the only one allowed to submit. */
	if (setup_ring(s) || setup_buffers(s) || open_listeners(s)) {
		ZT_ERROR(TARGET, "shard %u failed to start", s->id);
		atomic_store_explicit(&rt->draining, true, memory_order_relaxed);
		return (void *)(intptr_t)-1;
	}
	s->wake_op.kind = ZT_OP_WAKE;
	arm_wake(s);
	/* relaxed: main only counts; readiness reads it */
	atomic_fetch_add_explicit(&rt->shards_listening, 1, memory_order_relaxed);

	zt_qsbr_online(&rt->qsbr, s->id);
	bool aborted = false;
	uint64_t busy = 0; /* ns to poll before the next sleep */
	for (;;) {
		/* Nothing read from the snapshot survives this point. */
		zt_qsbr_quiescent(&rt->qsbr, s->id);

		/* relaxed: a wake-up follows the store, and the flag is re-read
		 * every loop anyway */
		if (atomic_load_explicit(&rt->draining, memory_order_relaxed)) {
			if (s->listening) {
				close_listeners(s);
				zt_tun_drain(s, false); /* GOAWAY */
			}
			if (s->n_conns == 0 && zt_tun_count(s) == 0)
				break;
			uint64_t dl = atomic_load_explicit(&rt->drain_deadline_ms, memory_order_relaxed);
			if (!aborted && zt_now_ms() >= dl) {
				ZT_WARN(TARGET, "shard %u: drain deadline passed, closing %u connections",
					s->id, s->n_conns);
				zt_conn_abort_all(s);
				zt_tun_drain(s, true);
				aborted = true;
			}
		}

		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
		relieve_starvation(s);
		zt_qsbr_offline(&rt->qsbr, s->id);
		int r;
		if (busy && busy_poll(s, busy))
			r = (int)io_uring_cq_ready(&s->ring);
		else
			r = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
		zt_qsbr_online(&rt->qsbr, s->id);
		if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) {
			ZT_ERROR(TARGET, "shard %u: io_uring_submit_and_wait: %s", s->id, strerror(-r));
			break;
		}
		unsigned head, n = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			dispatch(s, cqe);
			n++;
		}
		io_uring_cq_advance(&s->ring, n);
		/* An idle shard sleeps at once; one that just worked polls (in
		 * "replies" mode only while a reply to what it forwarded is due). */
		busy = n && (!rt->opts.busy_poll_replies || s->expect_reply)
			       ? (uint64_t)rt->opts.busy_poll_us * 1000 : 0;
		if (s->pods_deleting)
			expire_pods(s);
		zt_tun_tick(s);
		const struct zt_snapshot *snap = zt_rcu_deref(&rt->snapshot);
		if (snap && snap->generation != s->snap_gen) {
			/* The first look just records the generation. */
			if (s->snap_gen && s->n_conns)
				zt_conn_recheck_policies(s, snap);
			if (s->snap_gen)
				zt_tun_recheck_policies(s, snap);
			s->snap_gen = snap->generation;
		}
	}
	zt_qsbr_offline(&rt->qsbr, s->id);
	/* The registration belongs to this thread; the ring is freed by main. */
	io_uring_unregister_ring_fd(&s->ring);
	return NULL;
}

int zt_shard_start(struct zt_shard *s)
{
	int r = pthread_create(&s->thread, NULL, shard_main, s);
	if (r)
		return -r;
	s->started = true;
	return 0;
}

void zt_shard_join(struct zt_shard *s)
{
	if (s->started)
		pthread_join(s->thread, NULL);
	if (s->ring.ring_fd > 0)
		io_uring_queue_exit(&s->ring);
	for (struct zt_listener *l = s->listeners, *n; l; l = n) {
		n = l->next;
		if (l->owns_fd && l->fd >= 0)
			close(l->fd);
		free(l);
	}
	for (struct zt_shard_pod *sp = s->pods, *n; sp; sp = n) {
		n = sp->next;
		atomic_fetch_sub_explicit(&sp->pod->refs, 1, memory_order_release);
		free(sp);
	}
	zt_tun_shard_free(s);
	free(s->mb);
	pthread_mutex_destroy(&s->mb_lock);
	zt_metrics_shard_free(s->metrics);
	for (struct zt_conn *c = s->free_conns, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	if (s->br)
		munmap(s->br, s->br_len);
	if (s->bufs)
		munmap(s->bufs, (size_t)s->buf_size * s->buf_count);
	free(s->buf_next);
	free(s->buf_stack);
	free(s->buf_len);
	close(s->wake_fd);
	free(s);
}
