/* tunnel.c - HBONE on the shard's ring.
 *
 * An hconn is one TLS+HTTP/2 connection (hbone/h2conn.c does the protocol
 * without I/O): its socket is read into the shard's provided buffers, each
 * buffer is fed to zt_h2c_feed() and returned at once; its ciphertext goes
 * out with one send in flight, straight from h2conn's queue.
 *
 * A tun relays one TCP socket through one CONNECT stream:
 *   socket -> stream: recv into provided buffers (at most conn_buf_cap
 *     queued), zt_h2c_write() encrypts straight from them; a write that
 *     takes less waits for on_writable. FIN -> END_STREAM, reset -> RST_STREAM.
 *   stream -> socket: on_data's payload is sent from the record block it
 *     was decrypted into (zt_h2c_hold), or, when small or not in a block,
 *     copied into a chunk first; zt_h2c_consumed() reopens the
 *     peer's window only once the socket took them: the window (4 MiB) bounds
 *     what a stream can make us hold. END_STREAM -> shutdown(SHUT_WR),
 *     RST_STREAM -> reset.
 *
 * Client connections are pooled per shard by (source identity, destination
 * identity, destination address) and reused up to the stream limit.
 * Everything here runs on the shard thread.
 */
#include "engine/tunnel.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "authz/authz.h"
#include "common/clock.h"
#include "common/log.h"
#include "engine/metrics.h"
#include "engine/shard-t.h"
#include "engine/sock.h"
#include "hbone/certstore.h"
#include "hbone/h2conn.h"
#include "hbone/identity.h"

#define TARGET "hbone"
#define HBONE_PORT 15008
#define IDLE_MS (5 * 60 * 1000) /* ztunnel's pool idle eviction */
#define CTX_CACHE 32
#define HANDSHAKE_MS 10000

/* stream -> socket bytes wait in a list of chunks, and a send moves up to
 * CHUNK_SEND_MAX of them at once. A payload of at least HOLD_MIN bytes stays
 * in the record block h2conn decrypted it into: its chunk is a header that
 * points there and holds the block (so what a tunnel pins is at most about
 * twice the bytes it holds, which the peer's window bounds). Smaller
 * payloads, and all of them with wolfSSL's records, are copied into owned
 * chunks of CHUNK_BYTES, where they coalesce. Spent chunks go back to
 * per-shard free lists (at most CHUNK_POOL_MAX owned and HELD_POOL_MAX
 * headers kept) instead of malloc/free per record. */
#define CHUNK_BYTES (64u << 10)
#define CHUNK_POOL_MAX 64u
#define HELD_POOL_MAX 1024u
#define CHUNK_SEND_MAX 8
#define HOLD_MIN (8u << 10)
#define BLK_POOL_MAX 32u /* spare record blocks per shard (~16.6 KiB each) */

struct chunk {
	struct chunk *next;
	uint32_t len, off;
	uint8_t *p;             /* the bytes: data[], or inside blk */
	struct zt_h2c_blk *blk; /* held: the block p points into; owned: NULL */
	uint8_t data[];         /* owned: CHUNK_BYTES */
};

struct hconn {
	struct hconn *next, *prev;
	struct zt_shard *s;
	struct zt_h2c *h2;
	int fd;
	bool client, connected, closed, draining;
	uint32_t inflight;
	struct zt_op connect_op, timeout_op, recv_op, send_op;
	struct __kernel_timespec ts;
	struct sockaddr_in6 addr;
	socklen_t addrlen;
	bool recv_armed, send_inflight, starved;
	struct iovec iov[8]; /* the ciphertext in flight: h2conn's queue, in place */
	struct msghdr msg;
	int err;
	/* tuns whose t->hc is this one. A released connection (gone: socket
	 * and h2conn freed, off the shard's list) keeps its memory until the
	 * last of them is freed, so t->hc never dangles. */
	unsigned tuns;
	bool gone;
	uint64_t created_ms;
	uint64_t idle_since_ms;
	struct zt_shard_pod *spod;
	struct zt_sockaddr peer, local;
	char src_id[ZT_ID_URI_MAX + 1], dst_id[ZT_ID_URI_MAX + 1], peer_id[ZT_ID_URI_MAX + 1];
	/* client: other identities the server may present (the service's
	 * subject alt names) */
	char alt_ids[4][ZT_ID_URI_MAX + 1];
	unsigned n_alt;
};

enum tun_state { T_OPENING = 0, T_OPEN, T_CLOSING };

struct tun {
	struct tun *next, *prev;
	struct tun *check_next; /* on the shard's check list */
	bool on_check;
	struct hconn *hc;
	int32_t sid;
	int fd;
	bool outbound;
	enum tun_state state;
	uint32_t inflight;
	bool stream_live; /* h2conn may still call us with this tun as sud */
	struct zt_op recv_op, send_op, connect_op, timeout_op;
	/* socket -> stream */
	struct zt_bufq q;
	bool recv_armed, sock_eof, fin_sent, starved;
	bool drained; /* the last recv left fd empty */
	/* stream -> socket */
	struct chunk *c_head, *c_tail;
	uint32_t c_bytes;      /* bytes in the chunks, not yet sent */
	uint32_t c_unconsumed; /* of those, not yet given back to the peer's window */
	bool send_inflight, stream_eof, shut_sent;
	struct iovec siov[CHUNK_SEND_MAX]; /* the send in flight, in place */
	struct msghdr smsg;
	uint64_t up, down, start_ns;
	int error;
	char *err; /* why it failed (heap: most tunnels never need one) */
	struct __kernel_timespec ts;
	struct sockaddr_in6 addr;
	socklen_t addrlen;
	struct zt_shard_pod *spod;
	struct zt_sockaddr src, dst, target;
	char src_wl[64], src_ns[64], dst_wl[64], dst_ns[64], dst_svc[128];
	char src_id[ZT_ID_URI_MAX + 1], dst_id[ZT_ID_URI_MAX + 1];
	struct zt_metric_series *series;
	const char *flag; /* response flag for the metrics: "-", "DENY", "CONNECT" */
};

struct ctx_entry {
	char uri[ZT_ID_URI_MAX + 1];
	uint64_t version;
	WOLFSSL_CTX *ctx[2]; /* [ZT_TLS_SERVER], [ZT_TLS_CLIENT] */
};

struct zt_tun_shard {
	struct hconn hconns; /* list head */
	struct tun tuns;     /* list head */
	unsigned n_hconns, n_tuns;
	struct ctx_entry ctx[CTX_CACHE];
	unsigned n_ctx;
	/* tuns touched from inside h2conn callbacks: looked at (finished,
	 * freed) once the call into h2conn has returned */
	struct tun *check;
	struct chunk *spare; /* free owned chunks, n_spare of them */
	unsigned n_spare;
	struct chunk *spare_held; /* free held-chunk headers */
	unsigned n_spare_held;
	struct zt_h2c_blk_pool blks; /* record blocks of this shard's connections */
	unsigned n_starved; /* tuns and hconns waiting for provided buffers */
};

#define OF(T, op, field) ((T *)((char *)(op) - offsetof(T, field)))

static const struct zt_h2c_cbs client_cbs, server_cbs;

/* ---- helpers ------------------------------------------------------------- */

static struct zt_tun_shard *ts_of(struct zt_shard *s)
{
	if (!s->tun) {
		s->tun = calloc(1, sizeof(*s->tun));
		if (!s->tun)
			return NULL;
		s->tun->hconns.next = s->tun->hconns.prev = &s->tun->hconns;
		s->tun->blks.keep = BLK_POOL_MAX;
		s->tun->tuns.next = s->tun->tuns.prev = &s->tun->tuns;
	}
	return s->tun;
}

/* An owned chunk (blk NULL) or a held-chunk header for `blk`. */
static struct chunk *chunk_get(struct zt_tun_shard *ts, struct zt_h2c_blk *blk)
{
	struct chunk **list = blk ? &ts->spare_held : &ts->spare;
	unsigned *n = blk ? &ts->n_spare_held : &ts->n_spare;
	struct chunk *c = *list;
	if (c) {
		*list = c->next;
		(*n)--;
	} else if (!(c = malloc(sizeof(*c) + (blk ? 0 : CHUNK_BYTES)))) {
		return NULL;
	}
	c->next = NULL;
	c->len = c->off = 0;
	c->p = blk ? NULL : c->data;
	c->blk = blk;
	return c;
}

static void chunk_put(struct zt_tun_shard *ts, struct chunk *c)
{
	bool held = c->blk != NULL;
	zt_h2c_blk_put(c->blk);
	struct chunk **list = held ? &ts->spare_held : &ts->spare;
	unsigned *n = held ? &ts->n_spare_held : &ts->n_spare;
	if (*n >= (held ? HELD_POOL_MAX : CHUNK_POOL_MAX)) {
		free(c);
		return;
	}
	c->next = *list;
	*list = c;
	(*n)++;
}

static void chunks_put(struct zt_tun_shard *ts, struct chunk *c)
{
	for (struct chunk *n; c; c = n) {
		n = c->next;
		chunk_put(ts, c);
	}
}

static void identity_of(const struct zt_workload *w, char *out, size_t len)
{
	snprintf(out, len, "spiffe://%s/ns/%s/sa/%s", w->trust_domain, w->namespace_,
		 w->service_account);
}

/* The shard's TLS context for `uri`, built from the current certificate
 * store when the identity's certificate changed. */
static WOLFSSL_CTX *get_ctx(struct zt_shard *s, const char *uri, enum zt_tls_side side)
{
	struct zt_tun_shard *ts = ts_of(s);
	const struct zt_certstore *store = zt_rcu_deref(&s->rt->certs);
	if (!ts || !store)
		return NULL;
	const struct zt_cert_entry *e = zt_certstore_find_uri(store, uri, strlen(uri));
	if (!e)
		return NULL;
	struct ctx_entry *ce = NULL;
	for (unsigned i = 0; i < ts->n_ctx; i++)
		if (!strcmp(ts->ctx[i].uri, uri)) {
			ce = &ts->ctx[i];
			break;
		}
	if (!ce) {
		ce = &ts->ctx[ts->n_ctx < CTX_CACHE ? ts->n_ctx++ : zt_now_ns() % CTX_CACHE];
		for (int k = 0; k < 2; k++)
			if (ce->ctx[k])
				wolfSSL_CTX_free(ce->ctx[k]);
		memset(ce, 0, sizeof(*ce));
		snprintf(ce->uri, sizeof(ce->uri), "%s", uri);
	}
	if (ce->version != e->version) {
		/* renewed: live connections keep their reference to the old one */
		for (int k = 0; k < 2; k++)
			if (ce->ctx[k]) {
				wolfSSL_CTX_free(ce->ctx[k]);
				ce->ctx[k] = NULL;
			}
		ce->version = e->version;
	}
	if (!ce->ctx[side] && zt_certstore_ctx_new(store, e, side, &ce->ctx[side]))
		ce->ctx[side] = NULL;
	return ce->ctx[side];
}

static int socket_for(struct zt_shard *s, struct zt_shard_pod *sp, int family)
{
	if (!sp)
		return zt_sock_upstream(family);
	if (setns(sp->pod->netns_fd, CLONE_NEWNET))
		return -errno;
	int fd = zt_sock_upstream(family);
	if (setns(s->rt->host_netns_fd, CLONE_NEWNET)) {
		ZT_ERROR(TARGET, "shard %u cannot return to its network namespace", s->id);
		abort();
	}
	return fd;
}

static void cancel_fd(struct zt_shard *s, int fd)
{
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe) {
		shutdown(fd, SHUT_RDWR);
		return;
	}
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data(sqe, NULL);
	io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
}

/* A recv into a provided buffer of at most `len` bytes (0: a whole buffer). */
static bool arm_recv_fd(struct zt_shard *s, int fd, struct zt_op *op, uint32_t len, bool drained)
{
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe)
		return false;
	zt_prep_buf_recv(sqe, fd, len, drained);
	io_uring_sqe_set_data(sqe, op);
	return true;
}

static bool prep_connect(struct zt_shard *s, int fd, const struct zt_sockaddr *to,
			 struct sockaddr_in6 *addr, socklen_t *alen, struct __kernel_timespec *ts,
			 struct zt_op *cop, struct zt_op *top)
{
	struct sockaddr_storage ss;
	*alen = zt_sockaddr_to_os(to, &ss);
	memcpy(addr, &ss, *alen);
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	struct io_uring_sqe *tsqe = sqe ? zt_shard_sqe(s) : NULL;
	if (!sqe || !tsqe)
		return false;
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)addr, *alen);
	io_uring_sqe_set_data(sqe, cop);
	sqe->flags |= IOSQE_IO_LINK;
	ts->tv_sec = s->rt->opts.connect_timeout_ms / 1000;
	ts->tv_nsec = (long long)(s->rt->opts.connect_timeout_ms % 1000) * 1000000;
	io_uring_prep_link_timeout(tsqe, ts, 0);
	io_uring_sqe_set_data(tsqe, top);
	return true;
}

static bool authz_identity(const char *uri, struct zt_authz_identity *aid, char *td, char *ns,
			   char *sa);

/* ---- hconn ------------------------------------------------------------- */

static void hc_flush(struct hconn *hc);

static struct hconn *hc_new(struct zt_shard *s, bool client)
{
	struct zt_tun_shard *ts = ts_of(s);
	struct hconn *hc = ts ? calloc(1, sizeof(*hc)) : NULL;
	if (!hc)
		return NULL;
	hc->s = s;
	hc->fd = -1;
	hc->client = client;
	hc->created_ms = zt_now_ms();
	hc->connect_op.kind = ZT_OP_HC_CONNECT;
	hc->timeout_op.kind = ZT_OP_HC_TIMEOUT;
	hc->recv_op.kind = ZT_OP_HC_RECV;
	hc->send_op.kind = ZT_OP_HC_SEND;
	hc->next = ts->hconns.next;
	hc->prev = &ts->hconns;
	ts->hconns.next->prev = hc;
	ts->hconns.next = hc;
	ts->n_hconns++;
	return hc;
}

/* Free once h2conn has said on_closed (or never started), nothing is in
 * flight and nothing is left to send. */
static void hc_maybe_free(struct hconn *hc)
{
	if (!hc->closed || hc->inflight)
		return;
	if (hc->fd >= 0 && hc->h2 && zt_h2c_out_pending(hc->h2) && !hc->err && hc->connected)
		return; /* flush the goodbye first */
	struct zt_shard *s = hc->s;
	struct zt_tun_shard *ts = s->tun;
	if (hc->starved) {
		hc->starved = false;
		ts->n_starved--;
	}
	if (hc->fd >= 0) {
		close(hc->fd);
		hc->fd = -1;
	}
	hc->prev->next = hc->next;
	hc->next->prev = hc->prev;
	ts->n_hconns--;
	zt_h2c_free(hc->h2);
	hc->h2 = NULL;
	struct zt_shard_pod *sp = hc->spod;
	hc->spod = NULL;
	hc->gone = true;
	if (!hc->tuns)
		free(hc);
	if (sp) { /* the pod's namespace is no longer needed by this connection */
		sp->conns--;
		zt_shard_pod_maybe_release(s, sp);
	}
}

/* A tunnel lets go of its connection: true when that was the last hold on
 * a released one, which is freed. */
static bool hc_unref(struct hconn *hc)
{
	if (--hc->tuns || !hc->gone)
		return false;
	free(hc);
	return true;
}

static void hc_close(struct hconn *hc, int err, const char *why)
{
	if (hc->closed)
		return;
	if (hc->h2 && !zt_h2c_closed(hc->h2)) {
		zt_h2c_abort(hc->h2, err ? err : -ECONNABORTED, why); /* fires on_closed */
		return;
	}
	hc->closed = true;
	hc->err = err;
	if (hc->fd >= 0)
		cancel_fd(hc->s, hc->fd);
}

/* The TLS socket's recv is multishot where the kernel has it: each buffer is
 * fed to h2conn and returned at once, so a burst of completions cannot pile
 * up buffers (what h2conn keeps is bounded by the HTTP/2 windows), and the
 * socket stays armed instead of being re-armed per read. */
static void hc_arm_recv(struct hconn *hc)
{
	if (hc->recv_armed || hc->starved || hc->closed || hc->fd < 0 || !hc->connected)
		return;
	struct zt_shard *s = hc->s;
	if (!s->rt->uring.multishot_recv) {
		if (!arm_recv_fd(s, hc->fd, &hc->recv_op, 0, false))
			return;
	} else {
		struct io_uring_sqe *sqe = zt_shard_sqe(s);
		if (!sqe)
			return;
		io_uring_prep_recv_multishot(sqe, hc->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = ZT_BUF_GROUP;
		io_uring_sqe_set_data(sqe, &hc->recv_op);
	}
	hc->recv_armed = true;
	hc->inflight++;
}

static void hc_flush(struct hconn *hc)
{
	if (hc->send_inflight || hc->fd < 0 || !hc->connected || !hc->h2)
		return;
	/* everything queued (up to 8 blocks of 64 KiB) in one sendmsg */
	int n = zt_h2c_out_iov(hc->h2, hc->iov, 8);
	if (n <= 0)
		return;
	struct io_uring_sqe *sqe = zt_shard_sqe(hc->s);
	if (!sqe)
		return;
	memset(&hc->msg, 0, sizeof(hc->msg));
	hc->msg.msg_iov = hc->iov;
	hc->msg.msg_iovlen = (size_t)n;
	io_uring_prep_sendmsg(sqe, hc->fd, &hc->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, &hc->send_op);
	hc->send_inflight = true;
	hc->inflight++;
}

static int hc_start_h2(struct hconn *hc, WOLFSSL_CTX *ctx)
{
	int r = zt_h2c_new(hc->client ? ZT_H2C_CLIENT : ZT_H2C_SERVER, ctx,
			   hc->client ? &client_cbs : &server_cbs, hc, &hc->h2);
	if (!r)
		zt_h2c_set_blk_pool(hc->h2, &hc->s->tun->blks);
	return r;
}

/* ---- tun --------------------------------------------------------------- */

static struct tun *tun_new(struct zt_shard *s, int fd, bool outbound)
{
	struct zt_tun_shard *ts = ts_of(s);
	struct tun *t = ts ? calloc(1, sizeof(*t)) : NULL;
	if (!t)
		return NULL;
	t->fd = fd;
	t->outbound = outbound;
	zt_bufq_init(&t->q);
	t->recv_op.kind = ZT_OP_TUN_RECV;
	t->send_op.kind = ZT_OP_TUN_SEND;
	t->connect_op.kind = ZT_OP_TUN_CONNECT;
	t->timeout_op.kind = ZT_OP_TUN_TIMEOUT;
	t->start_ns = zt_now_ns();
	t->sid = -1;
	t->flag = "-";
	t->next = ts->tuns.next;
	t->prev = &ts->tuns;
	ts->tuns.next->prev = t;
	ts->tuns.next = t;
	ts->n_tuns++;
	return t;
}

static void tun_log(const struct tun *t)
{
	enum zt_log_level lvl = t->error ? ZT_LOG_ERROR : ZT_LOG_INFO;
	if (!zt_log_enabled(lvl, "access"))
		return;
	char src[ZT_ADDRSTRLEN], dst[ZT_ADDRSTRLEN], hb[ZT_ADDRSTRLEN], dur[32];
	struct zt_log_field f[18];
	size_t n = 0;
	f[n++] = ZT_LF_R("src.addr", zt_sockaddr_str(&t->src, src, sizeof(src)));
	if (t->src_wl[0])
		f[n++] = ZT_LF_S("src.workload", t->src_wl);
	if (t->src_ns[0])
		f[n++] = ZT_LF_S("src.namespace", t->src_ns);
	if (t->src_id[0])
		f[n++] = ZT_LF_S("src.identity", t->src_id);
	f[n++] = ZT_LF_R("dst.addr", zt_sockaddr_str(&t->dst, dst, sizeof(dst)));
	f[n++] = ZT_LF_R("dst.hbone_addr", zt_sockaddr_str(&t->target, hb, sizeof(hb)));
	if (t->dst_svc[0])
		f[n++] = ZT_LF_S("dst.service", t->dst_svc);
	if (t->dst_wl[0])
		f[n++] = ZT_LF_S("dst.workload", t->dst_wl);
	if (t->dst_ns[0])
		f[n++] = ZT_LF_S("dst.namespace", t->dst_ns);
	if (t->dst_id[0])
		f[n++] = ZT_LF_S("dst.identity", t->dst_id);
	f[n++] = ZT_LF_S("direction", t->outbound ? "outbound" : "inbound");
	/* What zring passed on from its socket side: towards the destination
	 * (outbound) or back to the source (inbound), as ztunnel logs it. */
	f[n++] = ZT_LF_U("bytes_sent", t->up);
	f[n++] = ZT_LF_U("bytes_recv", t->down);
	snprintf(dur, sizeof(dur), "%llums", (unsigned long long)((zt_now_ns() - t->start_ns) / 1000000));
	f[n++] = ZT_LF_S("duration", dur);
	if (t->error)
		f[n++] = ZT_LF_S("error", t->err ? t->err : "out of memory");
	zt_log_fields(lvl, "access", "connection complete", f, n);
}

static void tun_maybe_free(struct zt_shard *s, struct tun *t)
{
	if (t->state != T_CLOSING || t->inflight || t->stream_live)
		return;
	zt_bufq_clear(s, &t->q);
	if (t->starved) {
		t->starved = false;
		s->tun->n_starved--;
	}
	chunks_put(s->tun, t->c_head);
	t->c_head = t->c_tail = NULL;
	if (t->fd >= 0)
		close(t->fd);
	tun_log(t);
	zt_metrics_close(s->metrics, t->series, t->flag);
	struct zt_tun_shard *ts = s->tun;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	ts->n_tuns--;
	struct hconn *hc = t->hc;
	free(t->err);
	free(t);
	if (hc && !hc_unref(hc) && hc->client && !hc->closed && zt_h2c_streams(hc->h2) == 0)
		hc->idle_since_ms = zt_now_ms();
}

/* End the tunnel. rst: reset the socket (SO_LINGER 0) and the stream. */
static void tun_fail(struct zt_shard *s, struct tun *t, int err, bool rst, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void tun_fail(struct zt_shard *s, struct tun *t, int err, bool rst, const char *fmt, ...)
{
	if (t->state == T_CLOSING)
		return;
	if (err && !t->error) {
		t->error = err;
		char why[200];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
		t->err = strdup(why);
	}
	t->state = T_CLOSING;
	if (t->fd >= 0) {
		if (rst)
			zt_sock_set_rst(t->fd);
		cancel_fd(s, t->fd);
	}
	if (t->stream_live && t->hc && t->hc->h2 && t->sid >= 0) {
		t->stream_live = false;
		zt_h2c_reset(t->hc->h2, t->sid, 0x8 /* CANCEL */);
		hc_flush(t->hc);
	}
	t->stream_live = false;
}

static void tun_check_done(struct zt_shard *s, struct tun *t)
{
	if (t->state != T_OPEN)
		return;
	if (t->fin_sent && t->stream_eof && t->shut_sent && !t->send_inflight && !t->c_head) {
		t->state = T_CLOSING;
		t->stream_live = false; /* both halves ended: no more callbacks */
	}
}

static void tun_arm_recv(struct zt_shard *s, struct tun *t)
{
	uint32_t room = zt_shard_recv_room(s, &t->q);
	if (t->recv_armed || t->sock_eof || t->starved || t->state != T_OPEN || !room)
		return;
	if (arm_recv_fd(s, t->fd, &t->recv_op, room, t->drained)) {
		t->recv_armed = true;
		t->inflight++;
	}
}

/* socket -> stream: push queued buffers into h2conn. */
static void tun_push(struct zt_shard *s, struct tun *t)
{
	if (t->state != T_OPEN || !t->stream_live)
		return;
	uint64_t up = t->up;
	while (t->q.bytes) {
		const uint8_t *p;
		uint32_t n = zt_bufq_peek(s, &t->q, &p);
		ssize_t w = zt_h2c_write(t->hc->h2, t->sid, p, n);
		if (w < 0) {
			tun_fail(s, t, (int)w, true, "tunnel write failed: %s", strerror((int)-w));
			return;
		}
		if (w == 0)
			break; /* on_writable resumes */
		zt_bufq_consume(s, &t->q, (uint32_t)w);
		t->up += (uint64_t)w;
		if (t->series) /* outbound: request bytes; inbound: response bytes */
			atomic_fetch_add_explicit(t->outbound ? &t->series->received : &t->series->sent,
						  (uint64_t)w, memory_order_relaxed);
	}
	if (t->up != up) /* into the tunnel: a request if outbound */
		s->expect_reply = t->outbound;
	if (t->sock_eof && !t->q.bytes && !t->fin_sent) {
		zt_h2c_close_write(t->hc->h2, t->sid);
		t->fin_sent = true;
	}
	hc_flush(t->hc);
	tun_arm_recv(s, t);
	tun_check_done(s, t);
}

/* stream -> socket: send the head chunk. */
static void tun_send(struct zt_shard *s, struct tun *t)
{
	if (t->send_inflight || t->state == T_CLOSING || t->fd < 0)
		return;
	if (t->state == T_OPENING && !t->outbound)
		return; /* inbound: the app socket is not connected yet */
	if (!t->c_head) {
		if (t->stream_eof && !t->shut_sent) {
			shutdown(t->fd, SHUT_WR);
			t->shut_sent = true;
			tun_check_done(s, t);
		}
		return;
	}
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe)
		return;
	struct chunk *c = t->c_head;
	if (!c->next) {
		io_uring_prep_send(sqe, t->fd, c->p + c->off, c->len - c->off, MSG_NOSIGNAL);
	} else {
		int n = 0;
		for (; c && n < CHUNK_SEND_MAX; c = c->next, n++) {
			t->siov[n].iov_base = c->p + c->off;
			t->siov[n].iov_len = c->len - c->off;
		}
		memset(&t->smsg, 0, sizeof(t->smsg));
		t->smsg.msg_iov = t->siov;
		t->smsg.msg_iovlen = (size_t)n;
		io_uring_prep_sendmsg(sqe, t->fd, &t->smsg, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data(sqe, &t->send_op);
	s->expect_reply = !t->outbound; /* to the app: a request if inbound */
	t->send_inflight = true;
	t->inflight++;
}

static void tun_open(struct zt_shard *s, struct tun *t)
{
	t->state = T_OPEN;
	zt_sock_nodelay(t->fd);
	tun_arm_recv(s, t);
	tun_send(s, t);
}

static void mark(struct zt_shard *s, struct tun *t)
{
	if (t->on_check)
		return;
	t->on_check = true;
	t->check_next = s->tun->check;
	s->tun->check = t;
}

static void run_checks(struct zt_shard *s)
{
	struct zt_tun_shard *ts = s->tun;
	while (ts && ts->check) {
		struct tun *t = ts->check;
		ts->check = t->check_next;
		t->on_check = false;
		tun_check_done(s, t);
		tun_maybe_free(s, t);
	}
}

/* ---- h2conn callbacks ---------------------------------------------------- */

static void cb_handshake(void *ud, int err, const char *peer_id)
{
	struct hconn *hc = ud;
	if (err)
		return; /* on_closed follows */
	snprintf(hc->peer_id, sizeof(hc->peer_id), "%s", peer_id ? peer_id : "");
	struct zt_identity pid;
	if (zt_identity_parse(&pid, hc->peer_id, strlen(hc->peer_id))) {
		ZT_WARN(TARGET, "peer certificate without a SPIFFE identity (%s): refused", hc->peer_id);
		zt_h2c_abort(hc->h2, -EKEYREJECTED, "no SPIFFE identity");
		return;
	}
	if (hc->client) {
		bool ok = !strcmp(hc->peer_id, hc->dst_id);
		for (unsigned i = 0; i < hc->n_alt && !ok; i++)
			ok = !strcmp(hc->peer_id, hc->alt_ids[i]);
		if (!ok) {
			ZT_WARN(TARGET, "server identity %s is not the destination's %s: refused",
				hc->peer_id, hc->dst_id);
			zt_h2c_abort(hc->h2, -EKEYREJECTED, "wrong server identity");
		}
		return;
	}
	struct zt_identity own;
	if (zt_identity_parse(&own, hc->dst_id, strlen(hc->dst_id)) == 0 &&
	    !zt_identity_same_td(&own, &pid)) {
		ZT_WARN(TARGET, "client identity %s is outside our trust domain: refused", hc->peer_id);
		zt_h2c_abort(hc->h2, -EKEYREJECTED, "foreign trust domain");
	}
}

static void cb_response(void *ud, int32_t sid, void *sud, int status)
{
	struct tun *t = sud;
	struct zt_shard *s = ((struct hconn *)ud)->s;
	if (status >= 200 && status < 300) {
		t->stream_live = true;
		tun_open(s, t);
		return;
	}
	t->stream_live = false; /* h2conn ended the stream */
	t->flag = status == 401 ? "DENY" : "CONNECT";
	tun_fail(s, t, -ECONNREFUSED, true, "http status: %d", status);
	mark(s, t);
}

/* Give received bytes back to the peer's stream window. Like ztunnel (which
 * releases HTTP/2 capacity as soon as its copy loop has taken the bytes), we
 * do it on receipt, but only while the bytes we have already released and not
 * yet sent stay under conn_buf_cap; the rest is released as the socket takes
 * it. So a tunnel holds at most the window (4 MiB) plus the cap. */
static void tun_release(struct zt_shard *s, struct tun *t)
{
	uint32_t released = t->c_bytes - t->c_unconsumed; /* released, unsent */
	uint32_t cap = s->rt->opts.conn_buf_cap;
	if (!t->c_unconsumed || released >= cap || !t->stream_live || !t->hc)
		return;
	uint32_t k = cap - released < t->c_unconsumed ? cap - released : t->c_unconsumed;
	t->c_unconsumed -= k;
	zt_h2c_consumed(t->hc->h2, t->sid, k);
}

static void chunk_append(struct tun *t, struct chunk *c)
{
	if (t->c_tail)
		t->c_tail->next = c;
	else
		t->c_head = c;
	t->c_tail = c;
}

static void cb_data(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n)
{
	struct tun *t = sud;
	struct hconn *hc = ud;
	if (t->state == T_CLOSING)
		return;
	uint32_t total = (uint32_t)n;
	struct zt_h2c_blk *b = n >= HOLD_MIN ? zt_h2c_hold(hc->h2, p, n) : NULL;
	if (b) {
		/* Sent from where it was decrypted. */
		struct chunk *c = chunk_get(hc->s->tun, b);
		if (!c) {
			zt_h2c_blk_put(b);
			tun_fail(hc->s, t, -ENOMEM, true, "out of memory");
			return;
		}
		c->p = (uint8_t *)p;
		c->len = (uint32_t)n;
		chunk_append(t, c);
		n = 0;
	}
	while (n) {
		/* Append to the tail chunk if it is an owned one; bytes a send in
		 * flight points at stay put, new ones go after them. */
		struct chunk *c = t->c_tail;
		if (!c || c->blk || c->len == CHUNK_BYTES) {
			if (!(c = chunk_get(hc->s->tun, NULL))) {
				tun_fail(hc->s, t, -ENOMEM, true, "out of memory");
				return;
			}
			chunk_append(t, c);
		}
		size_t k = CHUNK_BYTES - c->len;
		if (k > n)
			k = n;
		memcpy(c->data + c->len, p, k);
		c->len += (uint32_t)k;
		p += k;
		n -= k;
	}
	t->c_bytes += total;
	t->c_unconsumed += total;
	tun_release(hc->s, t);
	tun_send(hc->s, t);
	mark(hc->s, t);
}

static void cb_eof(void *ud, int32_t sid, void *sud)
{
	struct tun *t = sud;
	t->stream_eof = true;
	tun_send(((struct hconn *)ud)->s, t);
	mark(((struct hconn *)ud)->s, t);
}

static void cb_reset(void *ud, int32_t sid, void *sud, uint32_t code)
{
	struct tun *t = sud;
	t->stream_live = false;
	mark(((struct hconn *)ud)->s, t);
	if (t->state == T_OPEN && t->fin_sent && t->stream_eof)
		return; /* ended cleanly already */
	tun_fail(((struct hconn *)ud)->s, t, -ECONNRESET, true,
		 code == ZT_H2C_RESET_CONN_LOST ? "tunnel connection lost"
						: "stream reset by peer (code %u)", code);
}

static void cb_writable(void *ud, int32_t sid, void *sud)
{
	tun_push(((struct hconn *)ud)->s, sud);
	mark(((struct hconn *)ud)->s, sud);
}

static void cb_goaway(void *ud, int32_t last_sid, uint32_t code)
{
	struct hconn *hc = ud;
	hc->draining = true;
}

static void cb_closed(void *ud, int err)
{
	struct hconn *hc = ud;
	if (err && hc->client)
		ZT_WARN(TARGET, "HBONE connection to %s closed: %s", hc->dst_id,
			zt_h2c_error_detail(hc->h2));
	else if (err)
		ZT_INFO(TARGET, "HBONE connection from %s closed: %s",
			hc->peer_id[0] ? hc->peer_id : "(handshake)", zt_h2c_error_detail(hc->h2));
	hc->closed = true;
	hc->err = err;
	hc_flush(hc);
	if (hc->fd >= 0 && !zt_h2c_out_pending(hc->h2))
		cancel_fd(hc->s, hc->fd);
}

/* Server: a CONNECT arrived. */
static int cb_connect(void *ud, int32_t sid, const struct zt_h2c_request *req, void **sud)
{
	struct hconn *hc = ud;
	struct zt_shard *s = hc->s;
	ZT_DEBUG(TARGET, "CONNECT %s from %s forwarded=%s baggage=%s traceparent=%s", req->authority,
		 hc->peer_id, req->forwarded ? req->forwarded : "-", req->baggage ? req->baggage : "-",
		 req->traceparent ? req->traceparent : "-");
	if (req->target.is_host || !zt_ip_eq(&req->target.addr.ip, &hc->local.ip)) {
		ZT_WARN(TARGET, "CONNECT %s from %s: the target is not the pod this connection "
				"reached (%s): 400", req->authority, hc->peer_id,
			zt_ip_str(&hc->local.ip, (char[64]){0}, 64));
		return 400;
	}
	const struct zt_snapshot *snap = zt_rcu_deref(&s->rt->snapshot);
	const struct zt_workload *wl =
		hc->spod ? zt_snapshot_workload_by_name(snap, hc->spod->pod->key) : NULL;
	if (!wl)
		wl = zt_snapshot_workload_by_ip(snap, NULL, &req->target.addr.ip);
	if (!wl)
		return 503; /* unknown local workload */
	const struct zt_workload *swl = zt_snapshot_workload_by_ip(snap, NULL, &hc->peer.ip);
	struct zt_metric_series *series =
		zt_metrics_open(s->metrics, true, swl, wl, NULL, hc->peer_id, true);
	char td[256], ns[64], sa[254];
	struct zt_authz_identity aid;
	authz_identity(hc->peer_id, &aid, td, ns, sa);
	struct zt_authz_conn ac = {.src_ip = &hc->peer.ip, .dst = &req->target.addr, .identity = &aid};
	struct zt_authz_result res;
	if (zt_authz_check(snap->authz, wl, &ac, &res)) {
		char why[200], src[ZT_ADDRSTRLEN];
		zt_authz_result_str(&res, why, sizeof(why));
		struct zt_log_field f[] = {
			ZT_LF_R("src.addr", zt_sockaddr_str(&hc->peer, src, sizeof(src))),
			ZT_LF_S("src.identity", hc->peer_id),
			ZT_LF_R("dst.addr", req->authority),
			ZT_LF_S("dst.workload", wl->name),
			ZT_LF_S("reason", why),
		};
		if (zt_log_enabled(ZT_LOG_INFO, "rbac"))
			zt_log_fields(ZT_LOG_INFO, "rbac", "RBAC rejected", f, 5);
		zt_metrics_close(s->metrics, series, "DENY");
		return 401;
	}
	struct tun *t = tun_new(s, -1, false);
	if (!t) {
		zt_metrics_close(s->metrics, series, "-");
		return 503;
	}
	t->series = series;
	int fd = socket_for(s, hc->spod, req->target.addr.ip.family);
	if (fd < 0) {
		t->state = T_CLOSING;
		tun_maybe_free(s, t);
		return 503;
	}
	t->fd = fd;
	t->hc = hc;
	hc->tuns++;
	t->sid = sid;
	t->stream_live = true;
	t->spod = hc->spod;
	t->src = hc->peer;
	t->dst = req->target.addr;
	t->target = req->target.addr;
	snprintf(t->src_id, sizeof(t->src_id), "%s", hc->peer_id);
	snprintf(t->dst_id, sizeof(t->dst_id), "%s", hc->dst_id);
	snprintf(t->dst_wl, sizeof(t->dst_wl), "%s", wl->name);
	snprintf(t->dst_ns, sizeof(t->dst_ns), "%s", wl->namespace_);
	if (swl) {
		snprintf(t->src_wl, sizeof(t->src_wl), "%s", swl->name);
		snprintf(t->src_ns, sizeof(t->src_ns), "%s", swl->namespace_);
	}
	if (!prep_connect(s, fd, &req->target.addr, &t->addr, &t->addrlen, &t->ts, &t->connect_op,
			  &t->timeout_op)) {
		t->stream_live = false;
		tun_fail(s, t, -ENOMEM, true, "submission queue full");
		tun_maybe_free(s, t);
		return 503;
	}
	t->inflight += 2;
	*sud = t;
	return 0;
}

static const struct zt_h2c_cbs client_cbs = {
	.on_handshake_done = cb_handshake,
	.on_response = cb_response,
	.on_data = cb_data,
	.on_eof = cb_eof,
	.on_reset = cb_reset,
	.on_writable = cb_writable,
	.on_goaway = cb_goaway,
	.on_closed = cb_closed,
};

static const struct zt_h2c_cbs server_cbs = {
	.on_handshake_done = cb_handshake,
	.on_connect = cb_connect,
	.on_data = cb_data,
	.on_eof = cb_eof,
	.on_reset = cb_reset,
	.on_writable = cb_writable,
	.on_goaway = cb_goaway,
	.on_closed = cb_closed,
};

/* ---- entry points --------------------------------------------------------- */

static struct hconn *pool_get(struct zt_shard *s, struct zt_shard_pod *sp, const char *src_id,
			      const char *dst_id, const struct zt_sockaddr *peer,
			      const struct zt_service *svc)
{
	struct zt_tun_shard *ts = ts_of(s);
	if (!ts)
		return NULL;
	for (struct hconn *hc = ts->hconns.next; hc != &ts->hconns; hc = hc->next)
		if (hc->client && !hc->closed && !hc->draining && hc->spod == sp &&
		    zt_ip_eq(&hc->peer.ip, &peer->ip) && !strcmp(hc->src_id, src_id) &&
		    !strcmp(hc->dst_id, dst_id) && zt_h2c_streams_available(hc->h2) > 0)
			return hc;
	WOLFSSL_CTX *ctx = get_ctx(s, src_id, ZT_TLS_CLIENT);
	if (!ctx) {
		ZT_WARN(TARGET, "no certificate for %s: cannot open HBONE", src_id);
		return NULL;
	}
	struct hconn *hc = hc_new(s, true);
	if (!hc)
		return NULL;
	hc->spod = sp;
	if (sp)
		sp->conns++;
	hc->peer = *peer;
	snprintf(hc->src_id, sizeof(hc->src_id), "%s", src_id);
	snprintf(hc->dst_id, sizeof(hc->dst_id), "%s", dst_id);
	for (size_t i = 0; svc && i < svc->n_subject_alt_names && hc->n_alt < 4; i++)
		snprintf(hc->alt_ids[hc->n_alt++], sizeof(hc->alt_ids[0]), "%s",
			 svc->subject_alt_names[i]);
	int fd = socket_for(s, sp, peer->ip.family);
	if (fd < 0 || hc_start_h2(hc, ctx)) {
		if (fd >= 0)
			close(fd);
		hc->closed = true;
		hc_maybe_free(hc);
		return NULL;
	}
	hc->fd = fd;
	if (!prep_connect(s, fd, peer, &hc->addr, &hc->addrlen, &hc->ts, &hc->connect_op,
			  &hc->timeout_op)) {
		hc->closed = true;
		hc_maybe_free(hc);
		return NULL;
	}
	hc->inflight += 2;
	return hc;
}

void zt_tun_outbound(struct zt_shard *s, struct zt_shard_pod *sp, int fd,
		     const struct zt_sockaddr *src, const struct zt_sockaddr *dst,
		     const struct zt_workload *src_wl, const struct zt_workload *dst_wl,
		     const struct zt_service *svc)
{
	struct tun *t = tun_new(s, fd, true);
	if (!t) {
		zt_sock_set_rst(fd);
		close(fd);
		return;
	}
	t->spod = sp;
	t->src = *src;
	t->target = *dst;
	t->dst = *dst;
	t->dst.port = HBONE_PORT;
	identity_of(dst_wl, t->dst_id, sizeof(t->dst_id));
	snprintf(t->dst_wl, sizeof(t->dst_wl), "%s", dst_wl->name);
	snprintf(t->dst_ns, sizeof(t->dst_ns), "%s", dst_wl->namespace_);
	if (svc)
		snprintf(t->dst_svc, sizeof(t->dst_svc), "%s", svc->hostname);
	if (!src_wl) {
		tun_fail(s, t, -EACCES, true, "source is not a known workload: no identity for HBONE");
		tun_maybe_free(s, t);
		return;
	}
	identity_of(src_wl, t->src_id, sizeof(t->src_id));
	t->series = zt_metrics_open(s->metrics, false, src_wl, dst_wl, svc, NULL, true);
	snprintf(t->src_wl, sizeof(t->src_wl), "%s", src_wl->name);
	snprintf(t->src_ns, sizeof(t->src_ns), "%s", src_wl->namespace_);
	struct hconn *hc = pool_get(s, sp, t->src_id, t->dst_id, &t->dst, svc);
	if (!hc) {
		tun_fail(s, t, -ECONNREFUSED, true, "cannot open an HBONE connection to %s", t->dst_id);
		tun_maybe_free(s, t);
		return;
	}
	/* ztunnel's request headers: forwarded (with the service host when the
	 * connection was addressed to one), baggage naming the source, and a
	 * fresh W3C traceparent */
	char auth[ZT_ADDRSTRLEN], fwd[ZT_ADDRSTRLEN + 300], a[ZT_ADDRSTRLEN], bag[768], tp[64];
	zt_sockaddr_str(&t->target, auth, sizeof(auth));
	int fl = snprintf(fwd, sizeof(fwd), "for=\"%s\"", zt_sockaddr_str(src, a, sizeof(a)));
	if (svc && fl > 0 && (size_t)fl < sizeof(fwd))
		snprintf(fwd + fl, sizeof(fwd) - (size_t)fl, ";host=%s", svc->hostname);
	snprintf(bag, sizeof(bag),
		 "k8s.cluster.name=%s,k8s.namespace.name=%s,k8s.%s.name=%s,service.name=%s,"
		 "service.version=%s",
		 src_wl->cluster_id, src_wl->namespace_,
		 *src_wl->workload_type ? src_wl->workload_type : "deployment",
		 *src_wl->workload_name ? src_wl->workload_name : src_wl->name,
		 *src_wl->canonical_name ? src_wl->canonical_name : src_wl->name,
		 *src_wl->canonical_revision ? src_wl->canonical_revision : "latest");
	uint64_t r1 = zt_now_ns() * 0x9E3779B97F4A7C15ULL ^ (uintptr_t)t, r2 = r1 * 0xBF58476D1CE4E5B9ULL;
	uint64_t r3 = (r2 ^ (r2 >> 31)) * 0x94D049BB133111EBULL;
	snprintf(tp, sizeof(tp), "00-%016llx%016llx-%016llx-00", (unsigned long long)r1,
		 (unsigned long long)r2, (unsigned long long)r3);
	int r = zt_h2c_connect(hc->h2, auth, fwd, bag, tp, t, &t->sid);
	if (r) {
		tun_fail(s, t, r, true, "CONNECT failed: %s", strerror(-r));
		tun_maybe_free(s, t);
		return;
	}
	t->hc = hc;
	hc->tuns++;
	t->stream_live = true;
	hc_flush(hc);
	run_checks(s);
}

void zt_tun_accept_hbone(struct zt_shard *s, struct zt_listener *l, int fd)
{
	struct hconn *hc = hc_new(s, false);
	if (!hc) {
		zt_sock_set_rst(fd);
		close(fd);
		return;
	}
	hc->fd = fd;
	hc->connected = true;
	/* TLS records (a WINDOW_UPDATE, then an echo) must not wait for Nagle */
	zt_sock_nodelay(fd);
	hc->spod = l->spod;
	if (hc->spod)
		hc->spod->conns++;
	zt_sock_peer(fd, &hc->peer);
	bool redirected;
	zt_sock_original_dst(fd, &hc->local, &redirected);
	const struct zt_snapshot *snap = zt_rcu_deref(&s->rt->snapshot);
	const struct zt_workload *wl =
		hc->spod ? zt_snapshot_workload_by_name(snap, hc->spod->pod->key) : NULL;
	if (!wl)
		wl = zt_snapshot_workload_by_ip(snap, NULL, &hc->local.ip);
	WOLFSSL_CTX *ctx = NULL;
	if (wl) {
		identity_of(wl, hc->dst_id, sizeof(hc->dst_id));
		ctx = get_ctx(s, hc->dst_id, ZT_TLS_SERVER);
	}
	if (!ctx || hc_start_h2(hc, ctx)) {
		char a[ZT_ADDRSTRLEN];
		ZT_WARN(TARGET, "HBONE connection to %s refused: %s",
			zt_sockaddr_str(&hc->local, a, sizeof(a)),
			wl ? "no certificate for the workload" : "no workload at this address");
		zt_sock_set_rst(fd);
		hc->closed = true;
		hc_maybe_free(hc);
		return;
	}
	hc_arm_recv(hc);
}

/* ---- completions ---------------------------------------------------------- */

static void hc_on_recv(struct zt_shard *s, struct hconn *hc, struct io_uring_cqe *cqe)
{
	if (cqe->res > 0) {
		uint16_t b = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		if (!hc->closed)
			zt_h2c_feed(hc->h2, s->bufs + (size_t)b * s->buf_size, (size_t)cqe->res);
		zt_shard_buf_return(s, b);
		hc_flush(hc);
		hc_arm_recv(hc);
		return;
	}
	if (zt_io_retry(cqe->res)) {
		hc_arm_recv(hc); /* a no-op while a multishot recv goes on */
		return;
	}
	if (cqe->res == -ENOBUFS) {
		/* out of provided buffers: re-armed once some are back (shard.c) */
		if (!hc->starved) {
			hc->starved = true;
			s->tun->n_starved++;
		}
		return;
	}
	if (!hc->closed) {
		zt_h2c_feed_eof(hc->h2); /* fires resets and on_closed */
		hc_flush(hc);
	}
}

void zt_tun_complete(struct zt_shard *s, struct zt_op *op, struct io_uring_cqe *cqe)
{
	struct hconn *hc = NULL;
	struct tun *t = NULL;
	switch (op->kind) {
	case ZT_OP_HC_CONNECT: {
		hc = OF(struct hconn, op, connect_op);
		hc->inflight--;
		int res = zt_sock_connect_result(hc->fd, cqe->res);
		if (res < 0) {
			char a[ZT_ADDRSTRLEN];
			ZT_WARN(TARGET, "HBONE connect to %s: %s", zt_sockaddr_str(&hc->peer, a, sizeof(a)),
				strerror(-res));
			hc_close(hc, res, "connect failed");
		} else if (!hc->closed) {
			hc->connected = true;
			hc_flush(hc);
			hc_arm_recv(hc);
		}
		break;
	}
	case ZT_OP_HC_TIMEOUT:
		hc = OF(struct hconn, op, timeout_op);
		hc->inflight--;
		break;
	case ZT_OP_HC_RECV:
		hc = OF(struct hconn, op, recv_op);
		if (!(cqe->flags & IORING_CQE_F_MORE)) { /* the recv is over */
			hc->inflight--;
			hc->recv_armed = false;
		}
		hc_on_recv(s, hc, cqe);
		break;
	case ZT_OP_HC_SEND:
		hc = OF(struct hconn, op, send_op);
		hc->inflight--;
		hc->send_inflight = false;
		if (cqe->res > 0) {
			zt_h2c_out_done(hc->h2, (size_t)cqe->res);
			hc_flush(hc);
		} else if (zt_io_retry(cqe->res) && !hc->closed) {
			hc_flush(hc); /* nothing went out: send it again */
		} else if (!hc->closed) {
			zt_h2c_feed_eof(hc->h2);
		}
		if (hc->closed && !hc->send_inflight && hc->fd >= 0)
			cancel_fd(s, hc->fd);
		break;
	case ZT_OP_TUN_RECV:
		t = OF(struct tun, op, recv_op);
		t->inflight--;
		t->recv_armed = false;
		t->drained = zt_recv_drained(cqe);
		if (cqe->res > 0) {
			uint16_t b = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			if (t->state != T_OPEN) {
				zt_shard_buf_return(s, b);
				break;
			}
			if (!zt_bufq_push(s, &t->q, b, (uint32_t)cqe->res)) {
				tun_fail(s, t, -ENOBUFS, true, "spill overflow");
				break;
			}
			tun_push(s, t);
		} else if (cqe->res == 0) {
			t->sock_eof = true;
			tun_push(s, t);
		} else if (zt_io_retry(cqe->res)) {
			tun_arm_recv(s, t); /* nothing read: read again */
		} else if (cqe->res == -ENOBUFS) {
			/* provided buffers ran out: re-armed once some are back */
			if (!t->starved) {
				t->starved = true;
				s->tun->n_starved++;
			}
		} else if (t->state != T_CLOSING) {
			tun_fail(s, t, cqe->res, false, "%s reset: %s",
				 t->outbound ? "downstream" : "upstream", strerror(-cqe->res));
		}
		break;
	case ZT_OP_TUN_SEND:
		t = OF(struct tun, op, send_op);
		t->inflight--;
		t->send_inflight = false;
		if (zt_io_retry(cqe->res)) {
			tun_send(s, t); /* nothing went out: send it again */
			break;
		}
		if (cqe->res < 0) {
			tun_fail(s, t, cqe->res, true, "write failed: %s", strerror(-cqe->res));
			break;
		}
		if (t->state == T_CLOSING)
			break;
		t->down += (uint64_t)cqe->res;
		if (t->series)
			atomic_fetch_add_explicit(t->outbound ? &t->series->sent : &t->series->received,
						  (uint64_t)cqe->res, memory_order_relaxed);
		/* sent bytes that were never released are released now */
		uint32_t sent = (uint32_t)cqe->res, released = t->c_bytes - t->c_unconsumed;
		t->c_bytes -= sent;
		if (sent > released) {
			t->c_unconsumed -= sent - released;
			if (t->stream_live && t->hc)
				zt_h2c_consumed(t->hc->h2, t->sid, sent - released);
		}
		tun_release(s, t);
		for (uint32_t left = (uint32_t)cqe->res; left;) {
			struct chunk *c = t->c_head;
			uint32_t k = c->len - c->off < left ? c->len - c->off : left;
			c->off += k;
			left -= k;
			if (c->off == c->len) {
				t->c_head = c->next;
				if (!t->c_head)
					t->c_tail = NULL;
				chunk_put(s->tun, c);
			}
		}
		if (t->hc)
			hc_flush(t->hc);
		tun_send(s, t);
		break;
	case ZT_OP_TUN_CONNECT: {
		t = OF(struct tun, op, connect_op);
		t->inflight--;
		int res = zt_sock_connect_result(t->fd, cqe->res);
		if (t->state == T_CLOSING)
			break;
		if (res < 0) {
			if (t->stream_live) {
				t->stream_live = false;
				zt_h2c_respond(t->hc->h2, t->sid, 503);
				hc_flush(t->hc);
			}
			t->flag = "CONNECT";
			tun_fail(s, t, res, false, "upstream connect failed: %s", strerror(-res));
			break;
		}
		if (t->stream_live) {
			zt_h2c_respond(t->hc->h2, t->sid, 200);
			tun_open(s, t);
			hc_flush(t->hc);
			tun_push(s, t);
		}
		break;
	}
	case ZT_OP_TUN_TIMEOUT:
		t = OF(struct tun, op, timeout_op);
		t->inflight--;
		break;
	default:
		return;
	}
	run_checks(s);
	if (t) {
		tun_check_done(s, t);
		tun_maybe_free(s, t);
	}
	if (hc)
		hc_maybe_free(hc);
}

/* Split a SPIFFE id into the authz identity's parts (buffers from the caller). */
static bool authz_identity(const char *uri, struct zt_authz_identity *aid, char *td, char *ns,
			   char *sa)
{
	struct zt_identity pid;
	if (zt_identity_parse(&pid, uri, strlen(uri)))
		return false;
	snprintf(td, 256, "%.*s", pid.td_len, pid.uri + ZT_ID_SCHEME_LEN);
	snprintf(ns, 64, "%.*s", pid.ns_len, pid.uri + pid.ns_off);
	snprintf(sa, 254, "%.*s", pid.sa_len, pid.uri + pid.sa_off);
	*aid = (struct zt_authz_identity){td, ns, sa};
	return true;
}

void zt_tun_recheck_policies(struct zt_shard *s, const struct zt_snapshot *snap)
{
	struct zt_tun_shard *ts = s->tun;
	if (!ts)
		return;
	for (struct tun *t = ts->tuns.next, *n; t != &ts->tuns; t = n) {
		n = t->next;
		if (t->outbound || t->state == T_CLOSING)
			continue;
		const struct zt_workload *wl =
			t->spod ? zt_snapshot_workload_by_name(snap, t->spod->pod->key) : NULL;
		if (!wl)
			wl = zt_snapshot_workload_by_ip(snap, NULL, &t->target.ip);
		char td[256], ns[64], sa[254];
		struct zt_authz_identity aid;
		if (!authz_identity(t->src_id, &aid, td, ns, sa))
			continue;
		struct zt_authz_conn ac = {.src_ip = &t->src.ip, .dst = &t->target, .identity = &aid};
		struct zt_authz_result res;
		if (zt_authz_check(snap->authz, wl, &ac, &res) == 0)
			continue;
		char why[200], src[ZT_ADDRSTRLEN], dst[ZT_ADDRSTRLEN];
		zt_authz_result_str(&res, why, sizeof(why));
		struct zt_log_field f[] = {
			ZT_LF_R("src.addr", zt_sockaddr_str(&t->src, src, sizeof(src))),
			ZT_LF_S("src.identity", t->src_id),
			ZT_LF_R("dst.addr", zt_sockaddr_str(&t->target, dst, sizeof(dst))),
			ZT_LF_S("dst.workload", t->dst_wl),
			ZT_LF_S("reason", why),
		};
		if (zt_log_enabled(ZT_LOG_INFO, "rbac"))
			zt_log_fields(ZT_LOG_INFO, "rbac", "RBAC rejected", f, 5);
		t->flag = "DENY";
		tun_fail(s, t, -EACCES, true, "connection closed due to policy rejection: %s", why);
		if (t->hc)
			hc_flush(t->hc);
		tun_maybe_free(s, t);
	}
}

/* The shard is short of provided buffers: tunnels whose queue waits for the
 * HTTP/2 windows move it into private memory (spill.h). */
void zt_tun_reclaim(struct zt_shard *s)
{
	struct zt_tun_shard *ts = s->tun;
	if (!ts)
		return;
	for (struct tun *t = ts->tuns.next; t != &ts->tuns; t = t->next) {
		if (!t->q.spill && !zt_bufq_spill(s, &t->q))
			return; /* out of memory: try again on the next walk */
	}
}

unsigned zt_tun_starved(const struct zt_shard *s)
{
	return s->tun ? s->tun->n_starved : 0;
}

void zt_tun_rearm_starved(struct zt_shard *s)
{
	struct zt_tun_shard *ts = s->tun;
	if (!ts)
		return;
	for (struct hconn *hc = ts->hconns.next; hc != &ts->hconns && ts->n_starved; hc = hc->next)
		if (hc->starved) {
			hc->starved = false;
			ts->n_starved--;
			hc_arm_recv(hc);
		}
	for (struct tun *t = ts->tuns.next; t != &ts->tuns && ts->n_starved; t = t->next)
		if (t->starved) {
			t->starved = false;
			ts->n_starved--;
			tun_arm_recv(s, t);
		}
}

void zt_tun_tick(struct zt_shard *s)
{
	struct zt_tun_shard *ts = s->tun;
	if (!ts || !ts->n_hconns)
		return;
	uint64_t now = zt_now_ms();
	for (struct hconn *hc = ts->hconns.next, *n; hc != &ts->hconns; hc = n) {
		n = hc->next;
		if (hc->closed || !hc->h2) {
			hc_maybe_free(hc);
			continue;
		}
		if (zt_h2c_deadline(hc->h2) <= now) {
			zt_h2c_tick(hc->h2, now);
			run_checks(s);
		}
		/* h2conn has no handshake timeout: a peer that never finishes
		 * its handshake must not hold a connection forever */
		if (!zt_h2c_handshake_done(hc->h2) && now - hc->created_ms > HANDSHAKE_MS) {
			hc_close(hc, -ETIMEDOUT, "TLS handshake timed out");
			run_checks(s);
		}
		if (hc->client && zt_h2c_streams(hc->h2) == 0 && hc->idle_since_ms &&
		    now - hc->idle_since_ms > IDLE_MS)
			zt_h2c_goaway(hc->h2);
		hc_flush(hc);
		hc_maybe_free(hc);
	}
}

void zt_tun_drain(struct zt_shard *s, bool abort_all)
{
	struct zt_tun_shard *ts = s->tun;
	if (!ts)
		return;
	if (abort_all)
		for (struct tun *t = ts->tuns.next, *n; t != &ts->tuns; t = n) {
			n = t->next;
			tun_fail(s, t, -ESHUTDOWN, true, "drain deadline");
			tun_maybe_free(s, t);
		}
	for (struct hconn *hc = ts->hconns.next, *n; hc != &ts->hconns; hc = n) {
		n = hc->next;
		if (hc->closed || !hc->h2)
			continue;
		if (abort_all)
			hc_close(hc, -ESHUTDOWN, "drain deadline");
		else if (!hc->draining) {
			hc->draining = true;
			zt_h2c_goaway(hc->h2);
		}
		hc_flush(hc);
		run_checks(s);
		hc_maybe_free(hc);
	}
}

unsigned zt_tun_count(const struct zt_shard *s)
{
	return s->tun ? s->tun->n_tuns + s->tun->n_hconns : 0;
}

void zt_tun_shard_free(struct zt_shard *s)
{
	struct zt_tun_shard *ts = s->tun;
	if (!ts)
		return;
	for (struct tun *t = ts->tuns.next, *n; t != &ts->tuns; t = n) {
		n = t->next;
		chunks_put(ts, t->c_head);
		free(t->q.spill);
		if (t->fd >= 0)
			close(t->fd);
		if (t->hc)
			hc_unref(t->hc);
		free(t->err);
		free(t);
	}
	for (struct hconn *hc = ts->hconns.next, *n; hc != &ts->hconns; hc = n) {
		n = hc->next;
		if (hc->fd >= 0)
			close(hc->fd);
		zt_h2c_free(hc->h2);
		free(hc);
	}
	for (unsigned i = 0; i < ts->n_ctx; i++)
		for (int k = 0; k < 2; k++)
			if (ts->ctx[i].ctx[k])
				wolfSSL_CTX_free(ts->ctx[i].ctx[k]);
	for (struct chunk *c = ts->spare, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	for (struct chunk *c = ts->spare_held, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	zt_h2c_blk_pool_drain(&ts->blks); /* every tun and hconn is gone: all back */
	free(ts);
	s->tun = NULL;
}
