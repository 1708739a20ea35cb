/* Unit tests for the relay state machine (engine/conn.c) and buffer accounting
 * (engine/shard.c), driven on a real io_uring with real loopback TCP sockets.
 * The .c files are included so the test reaches their static helpers; the
 * test thread plays both peers with non-blocking sockets between loop steps. */
#include "engine/conn.c"
#include "engine/shard.c"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>

#include "test/unit/common/check.h"

/* A connected TCP pair on loopback: *a and *b, both non-blocking. */
static void tcp_pair(int *a, int *b)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	if (bind(l, (struct sockaddr *)&sa, sl) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &sl)) {
		perror("tcp_pair");
		exit(1);
	}
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*a, (struct sockaddr *)&sa, sl)) {
		perror("connect");
		exit(1);
	}
	*b = accept(l, NULL, NULL);
	close(l);
	fcntl(*a, F_SETFL, O_NONBLOCK);
	fcntl(*b, F_SETFL, O_NONBLOCK);
}

struct env {
	struct zt_runtime rt;
	struct zt_shard *s;
};

static void env_init(struct env *e, uint32_t buf_size, uint32_t buf_count, uint32_t cap)
{
	memset(e, 0, sizeof(*e));
	e->rt.opts.buf_size = buf_size;
	e->rt.opts.buf_count = buf_count;
	e->rt.opts.conn_buf_cap = cap;
	e->rt.opts.connect_timeout_ms = 1000;
	e->rt.n_shards = 1;
	zt_qsbr_init(&e->rt.qsbr, 1);
	e->s = zt_shard_new(&e->rt, 0);
	if (setup_ring(e->s) || setup_buffers(e->s)) {
		fprintf(stderr, "ring set-up failed\n");
		exit(77);
	}
}

static void env_free(struct env *e)
{
	e->s->started = false;
	zt_shard_join(e->s);
	zt_qsbr_destroy(&e->rt.qsbr);
}

/* One pass of the shard loop without blocking for long. */
static void step(struct env *e)
{
	struct zt_shard *s = e->s;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {.tv_nsec = 1000000};
	io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
	unsigned head, n = 0;
	io_uring_for_each_cqe(&s->ring, head, cqe) {
		dispatch(s, cqe);
		n++;
	}
	io_uring_cq_advance(&s->ring, n);
	relieve_starvation(s);
}

/* A relay between client<->[fd0 .. fd1]<->server; returns the conn. */
static struct zt_conn *relay(struct env *e, int *client, int *server)
{
	int c0, c1, u0, u1;
	tcp_pair(&c0, &c1); /* client end c0, zring's downstream c1 */
	tcp_pair(&u0, &u1); /* zring's upstream u0, server end u1 */
	fcntl(c1, F_SETFL, 0);
	fcntl(u0, F_SETFL, 0);
	struct zt_conn *c = conn_alloc(e->s);
	c->fd[0] = c1;
	c->fd[1] = u0;
	c->kind = ZT_LISTEN_OUTBOUND;
	c->start_ns = zt_now_ns();
	atomic_fetch_add(&e->s->stats.active, 1);
	start_relay(e->s, c);
	*client = c0;
	*server = u1;
	return c;
}

static uint8_t pattern(uint64_t i, uint8_t seed)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ seed;
	return (uint8_t)(x >> 56);
}

/* Pump: write `n` patterned bytes into `wfd`, read and verify from `rfd`. */
struct flow {
	int wfd, rfd;
	uint64_t n, wrote, read;
	uint8_t seed;
	bool bad, shut_after;
};

static void flow_io(struct flow *f)
{
	uint8_t buf[65536];
	while (f->wrote < f->n) {
		size_t len = f->n - f->wrote < sizeof(buf) ? (size_t)(f->n - f->wrote) : sizeof(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = pattern(f->wrote + i, f->seed);
		ssize_t w = send(f->wfd, buf, len, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		f->wrote += (uint64_t)w;
	}
	if (f->wrote == f->n && f->shut_after) {
		shutdown(f->wfd, SHUT_WR);
		f->shut_after = false;
	}
	for (;;) {
		ssize_t r = recv(f->rfd, buf, sizeof(buf), 0);
		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pattern(f->read + (uint64_t)i, f->seed))
				f->bad = true;
		f->read += (uint64_t)r;
	}
}

static bool eof(int fd)
{
	char b;
	return recv(fd, &b, 1, 0) == 0;
}

static void test_both_ways_and_half_close(void)
{
	struct env e;
	env_init(&e, 16384, 64, 65536);
	int cl, sv;
	relay(&e, &cl, &sv);
	struct flow up = {.wfd = cl, .rfd = sv, .n = 8 << 20, .seed = 1, .shut_after = true};
	struct flow down = {.wfd = sv, .rfd = cl, .n = 3 << 20, .seed = 2};
	for (int i = 0; i < 200000 && (up.read < up.n || down.read < down.n); i++) {
		step(&e);
		flow_io(&up);
		flow_io(&down);
	}
	CHECK(up.read == up.n && !up.bad);
	CHECK(down.read == down.n && !down.bad);
	/* client's FIN reached the server; the server can still talk */
	for (int i = 0; i < 100; i++)
		step(&e);
	CHECK(eof(sv));
	CHECK(send(sv, "late", 4, 0) == 4);
	char b[8] = {0};
	ssize_t got = 0;
	for (int i = 0; i < 1000 && got < 4; i++) {
		step(&e);
		ssize_t r = recv(cl, b + got, sizeof(b) - 1 - (size_t)got, 0);
		if (r > 0)
			got += r;
	}
	CHECK(got == 4 && !memcmp(b, "late", 4));
	CHECK(e.s->n_conns == 1);
	shutdown(sv, SHUT_WR);
	for (int i = 0; i < 1000 && e.s->n_conns; i++)
		step(&e);
	CHECK(eof(cl));
	CHECK(e.s->n_conns == 0);
	CHECK(e.s->bufs_free == e.s->buf_count); /* every buffer came back */
	close(cl);
	close(sv);
	env_free(&e);
}

static void close_all(struct env *e, struct flow *f, int n)
{
	for (int k = 0; k < n; k++) {
		close(f[k].wfd);
		close(f[k].rfd);
	}
	for (int i = 0; i < 2000 && e->s->n_conns; i++)
		step(e);
	CHECK(e->s->n_conns == 0 && e->s->bufs_free == e->s->buf_count && e->s->n_starved == 0);
	env_free(e);
}

/* A held-back flow's reader starts reading (from rfd): every byte must arrive,
 * in order; then close and check the shard is back to rest. */
static void read_all_and_close(struct env *e, struct flow *f, int rfd)
{
	f->rfd = rfd;
	for (int i = 0; i < 400000 && f->read < f->n; i++) {
		step(e);
		flow_io(f);
	}
	CHECK(f->read == f->n && !f->bad);
	close_all(e, f, 1);
}

/* Buffer reuse: the ring holds only a few free buffers and is refilled with
 * the most recently returned ones, so one busy flow keeps reusing the same
 * few (cache-warm, and the rest never get memory). With a FIFO ring of all
 * 64 it would cycle through every one of them. */
static void test_buffers_reused_warm(void)
{
	struct env e;
	env_init(&e, 65536, 64, 262144);
	int cl, sv;
	relay(&e, &cl, &sv);
	struct flow up = {.wfd = cl, .rfd = sv, .n = 48 << 20, .seed = 9};
	for (int i = 0; i < 400000 && up.read < up.n; i++) {
		step(&e);
		flow_io(&up);
	}
	CHECK(up.read == up.n && !up.bad);
	/* Which buffers ever received data: their pages are resident. */
	long pg = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)e.s->buf_size * e.s->buf_count;
	unsigned char *vec = calloc(len / (size_t)pg, 1);
	unsigned touched = 0;
	if (vec && mincore(e.s->bufs, len, vec) == 0) {
		for (uint32_t b = 0; b < e.s->buf_count; b++)
			touched += vec[(size_t)b * e.s->buf_size / (size_t)pg] & 1;
	}
	free(vec);
	printf("buffer reuse: 48 MiB through one relay touched %u of %u buffers (ring target %u)\n",
	       touched, e.s->buf_count, e.s->ring_target);
	CHECK(touched >= 1 && touched <= 16);
	close_all(&e, &up, 1);
}

/* A direction fed in small pieces while its reader is stalled holds at most as
 * many buffers as the cap has room for whole ones (here 4), not one per piece
 * up to the byte cap: each receive takes a whole buffer. */
static void test_small_pieces_hold_few_buffers(void)
{
	struct env e;
	env_init(&e, 65536, 64, 262144);
	int cl, sv;
	struct zt_conn *c = relay(&e, &cl, &sv);
	int small = 4096; /* the kernel's buffers towards the server fill at once */
	setsockopt(c->fd[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct flow up = {.wfd = cl, .rfd = -1, .n = 1 << 20, .seed = 5};
	uint32_t max_nbufs = 0, max_q = 0;
	for (int i = 0; i < 3000; i++) {
		uint8_t buf[100];
		for (size_t k = 0; k < sizeof(buf); k++)
			buf[k] = pattern(up.wrote + k, 5);
		ssize_t w = send(cl, buf, sizeof(buf), MSG_NOSIGNAL);
		if (w > 0)
			up.wrote += (uint64_t)w;
		step(&e);
		if (c->d[0].q.nbufs > max_nbufs)
			max_nbufs = c->d[0].q.nbufs;
		if (c->d[0].q.bytes > max_q)
			max_q = c->d[0].q.bytes;
	}
	printf("small pieces: client wrote %llu bytes in 100-byte sends, relay held at most %u buffers (%u bytes), "
	       "%u of %u buffers free\n", (unsigned long long)up.wrote, max_nbufs, max_q, e.s->bufs_free,
	       e.s->buf_count);
	CHECK(max_nbufs >= 2);               /* pieces did queue up behind the stalled server */
	CHECK(max_nbufs <= 4);               /* 262144 / 65536 */
	CHECK(max_q < 262144);               /* far below the byte cap */
	CHECK(!c->d[0].recv_armed);          /* reads pause on the buffer count */
	CHECK(e.s->bufs_free >= 64 - 4);
	/* the server reads: every byte arrives, in order */
	up.n = up.wrote;
	read_all_and_close(&e, &up, sv);
}

static void test_backpressure_bounded(void)
{
	struct env e;
	env_init(&e, 16384, 256, 65536);
	int cl, sv;
	struct zt_conn *c = relay(&e, &cl, &sv);
	/* The server does not read: once the kernel's socket buffers are full
	 * the relay must hold back at its cap and push back on the client. */
	struct flow up = {.wfd = cl, .rfd = -1, .n = 96 << 20, .seed = 3};
	uint32_t max_q = 0, min_free = e.s->buf_count;
	for (int i = 0; i < 3000; i++) {
		step(&e);
		while (up.wrote < up.n) {
			uint8_t buf[16384];
			for (size_t k = 0; k < sizeof(buf); k++)
				buf[k] = pattern(up.wrote + k, 3);
			ssize_t w = send(cl, buf, sizeof(buf), MSG_NOSIGNAL);
			if (w <= 0)
				break;
			up.wrote += (uint64_t)w;
		}
		if (c->d[0].q.bytes > max_q)
			max_q = c->d[0].q.bytes;
		if (e.s->bufs_free < min_free)
			min_free = e.s->bufs_free;
	}
	printf("backpressure: client wrote %llu of %llu, relay held at most %u bytes, min free buffers %u/%u\n",
	       (unsigned long long)up.wrote, (unsigned long long)up.n, max_q, min_free, e.s->buf_count);
	CHECK(up.wrote < up.n);                  /* the client was pushed back */
	CHECK(max_q <= 65536);                   /* never above the cap: recvs are sized to the room left */
	CHECK(!c->d[0].recv_armed);              /* reads are paused */
	/* now the server reads everything: all bytes arrive, in order */
	read_all_and_close(&e, &up, sv);
}

static void test_reset_propagates(void)
{
	struct env e;
	env_init(&e, 16384, 64, 65536);
	int cl, sv;
	relay(&e, &cl, &sv);
	send(cl, "hello", 5, 0);
	char b[16];
	ssize_t r = -1;
	for (int i = 0; i < 1000 && r <= 0; i++) {
		step(&e);
		r = recv(sv, b, sizeof(b), 0);
	}
	CHECK(r == 5);
	zt_sock_set_rst(sv);
	close(sv); /* server resets */
	int err = 0;
	for (int i = 0; i < 1000 && !err; i++) {
		step(&e);
		if (recv(cl, b, sizeof(b), 0) < 0 && errno != EAGAIN)
			err = errno;
	}
	CHECK(err == ECONNRESET);
	for (int i = 0; i < 100 && e.s->n_conns; i++)
		step(&e);
	CHECK(e.s->n_conns == 0 && e.s->bufs_free == e.s->buf_count);
	CHECK(atomic_load(&e.s->stats.failed) == 1);
	close(cl);
	env_free(&e);
}

/* Close n flows' ends; every connection must finish and give back its buffers. */
static void test_starvation_recovers(void)
{
	/* 16 small buffers shared by 6 busy connections: reads hit ENOBUFS,
	 * wait, resume, and every byte still arrives. */
	struct env e;
	env_init(&e, 4096, 16, 16384);
	enum { N = 6 };
	struct flow f[N];
	for (int k = 0; k < N; k++) {
		int cl, sv;
		relay(&e, &cl, &sv);
		f[k] = (struct flow){.wfd = cl, .rfd = sv, .n = 2 << 20, .seed = (uint8_t)(10 + k)};
	}
	bool done = false;
	for (int i = 0; i < 400000 && !done; i++) {
		step(&e);
		done = true;
		for (int k = 0; k < N; k++) {
			/* read slowly on odd flows to keep buffers held */
			if (k % 2 == 0 || i % 4 == 0)
				flow_io(&f[k]);
			done &= f[k].read == f[k].n;
		}
	}
	for (int k = 0; k < N; k++)
		CHECK(f[k].read == f[k].n && !f[k].bad);
	close_all(&e, f, N);
}

static void test_stalled_readers_spill(void)
{
	/* 16 buffers of 16 KiB, cap 64 KiB: 6 connections whose servers never
	 * read could pin 24 buffers. They must move their bytes into private
	 * memory instead, so a healthy connection keeps flowing; once the
	 * servers read, every stalled byte arrives in order. */
	struct env e;
	env_init(&e, 16384, 16, 65536);
	enum { N = 6 };
	struct flow f[N + 1];
	struct zt_conn *cs[N + 1];
	for (int k = 0; k <= N; k++) {
		int cl, sv;
		cs[k] = relay(&e, &cl, &sv);
		/* stalled flows: more than the kernel's socket buffers absorb */
		f[k] = (struct flow){.wfd = cl, .rfd = sv, .n = k < N ? 24u << 20 : 16u << 20,
				     .seed = (uint8_t)(40 + k)};
	}
	/* phase 1: only the healthy flow (k == N) reads (at most 20 s: starved,
	 * it would never finish) */
	uint64_t until = zt_now_ms() + 20000;
	for (int i = 0; i < 400000 && f[N].read < f[N].n && zt_now_ms() < until; i++) {
		step(&e);
		for (int k = 0; k < N; k++) {
			int rfd = f[k].rfd;
			f[k].rfd = -1; /* write only */
			flow_io(&f[k]);
			f[k].rfd = rfd;
		}
		flow_io(&f[N]);
	}
	uint64_t spills = atomic_load(&e.s->stats.spills);
	unsigned spilled = 0;
	for (int k = 0; k < N; k++)
		spilled += cs[k]->d[0].q.spill != NULL;
	printf("stalled readers: healthy flow %llu/%llu bytes, %llu spills, %u of %d stalled directions spilled, "
	       "free buffers %u/%u\n", (unsigned long long)f[N].read, (unsigned long long)f[N].n,
	       (unsigned long long)spills, spilled, N, e.s->bufs_free, e.s->buf_count);
	CHECK(f[N].read == f[N].n && !f[N].bad); /* not starved by the stalled ones */
	CHECK(spills >= 1 && spilled >= 1);
	for (int k = 0; k < N; k++)
		CHECK(cs[k]->d[0].q.bytes <= 65536);  /* still bounded by the cap */
	/* phase 2: the stalled servers read everything */
	bool done = false;
	for (int i = 0; i < 400000 && !done; i++) {
		step(&e);
		done = true;
		for (int k = 0; k < N; k++) {
			flow_io(&f[k]);
			done &= f[k].read == f[k].n;
		}
	}
	for (int k = 0; k < N; k++)
		CHECK(f[k].read == f[k].n && !f[k].bad);
	close_all(&e, f, N + 1);
}

int main(void)
{
	zt_log_configure("warn,access=off", false);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "relay_test: %s\n", "both_ways_and_half_close");
	test_both_ways_and_half_close();
	fprintf(stderr, "relay_test: %s\n", "buffers_reused_warm");
	test_buffers_reused_warm();
	fprintf(stderr, "relay_test: %s\n", "small_pieces_hold_few_buffers");
	test_small_pieces_hold_few_buffers();
	fprintf(stderr, "relay_test: %s\n", "backpressure_bounded");
	test_backpressure_bounded();
	fprintf(stderr, "relay_test: %s\n", "reset_propagates");
	test_reset_propagates();
	fprintf(stderr, "relay_test: %s\n", "starvation_recovers");
	test_starvation_recovers();
	fprintf(stderr, "relay_test: %s\n", "stalled_readers_spill");
	test_stalled_readers_spill();
	TEST_DONE();
}
