/* conn.c - a TCP relay between an accepted socket and an upstream socket.
 *
 * Each direction reads into the shard's provided buffers (the kernel picks a
 * buffer only when data is there, so idle connections hold none) and sends
 * them on in order, one send in flight. A direction re-arms its recv only
 * while it holds less than conn_buf_cap unsent bytes, for at most the room
 * left: that is the backpressure, and the bound is strict (the cap).
 *
 * Unsent bytes normally wait in the provided buffers themselves (no copy).
 * When the shard runs out of buffers, zt_conn_reclaim() cancels the sends of
 * directions that hold some, moves their bytes into a private ring
 * (spill.h) and returns the buffers; such a direction keeps appending to its
 * ring until the reader has caught up. So readers that stop reading cost their
 * own cap in memory and never starve the rest of the shard.
 *
 * Why single-shot recv and not multishot: a multishot recv posts a burst of
 * completions before a cancel can land; measured in relay_test it held 1.6 MB
 * against a 64 KiB cap, so one slow reader could take a shard's whole buffer
 * ring. Accepts stay multishot. A recv that follows one which emptied the
 * socket waits for data before trying (zt_prep_buf_recv). FIN becomes
 * shutdown(SHUT_WR) on the other socket; a reset on one side becomes a reset
 * (SO_LINGER 0 close) on the other.
 *
 * A connection is freed only when no op that points into it is in flight
 * (`inflight`), so a late completion never touches freed memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include "authz/authz.h"
#include "common/clock.h"
#include "common/log.h"
#include "engine/accesslog.h"
#include "engine/shard-t.h"
#include "engine/sock.h"
#include "engine/spill.h"
#include "engine/tunnel.h"
#include "xds/snapshot.h"




#define CONN_OF(op, field) ((struct zt_conn *)((char *)(op) - offsetof(struct zt_conn, field)))

static uint64_t next_rnd(struct zt_shard *s)
{
	/* xorshift64*: cheap, per shard, good enough for load balancing */
	uint64_t x = s->rnd;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s->rnd = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static struct zt_conn *conn_alloc(struct zt_shard *s)
{
	struct zt_conn *c = s->free_conns;
	if (c)
		s->free_conns = c->next;
	else if (!(c = malloc(sizeof(*c))))
		return NULL;
	memset(c, 0, sizeof(*c));
	c->fd[0] = c->fd[1] = -1;
	for (int i = 0; i < 2; i++) {
		c->d[i].recv_op = (struct zt_op){.kind = ZT_OP_RECV, .dir = (uint8_t)i};
		c->d[i].send_op = (struct zt_op){.kind = ZT_OP_SEND, .dir = (uint8_t)i};
		c->d[i].err_op = (struct zt_op){.kind = ZT_OP_ERRPOLL, .dir = (uint8_t)i};
		zt_bufq_init(&c->d[i].q);
	}
	c->connect_op.kind = ZT_OP_CONNECT;
	c->timeout_op.kind = ZT_OP_CONNECT_TIMEOUT;
	c->next = s->live.next;
	c->prev = &s->live;
	s->live.next->prev = c;
	s->live.next = c;
	s->n_conns++;
	return c;
}

static void conn_free(struct zt_shard *s, struct zt_conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	s->n_conns--;
	/* Keep a bounded free list; the rest goes back to malloc. */
	if (s->n_conns < 1024) {
		c->next = s->free_conns;
		s->free_conns = c;
	} else {
		free(c);
	}
}

static void count_close(struct zt_shard *s, struct zt_conn *c);
static void cancel_errpolls(struct zt_shard *s, struct zt_conn *c);

static void copy_name(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static void finish(struct zt_shard *s, struct zt_conn *c)
{
	for (int i = 0; i < 2; i++) {
		struct zt_dir *d = &c->d[i];
		zt_bufq_clear(s, &d->q);
		if (d->starved) {
			d->starved = false;
			s->n_starved--;
		}
		d->reclaim = false;
	}
	for (int i = 0; i < 2; i++)
		if (c->fd[i] >= 0) {
			close(c->fd[i]);
			c->fd[i] = -1;
		}
	if (!c->handed_off) {
		zt_access_log(c);
		count_close(s, c);
	}
	if (c->spod) {
		c->spod->conns--;
		zt_shard_pod_maybe_release(s, c->spod);
		c->spod = NULL;
	}
	atomic_fetch_add_explicit(&s->stats.closed, 1, memory_order_relaxed);
	atomic_fetch_sub_explicit(&s->stats.active, 1, memory_order_relaxed);
	if (c->error)
		atomic_fetch_add_explicit(&s->stats.failed, 1, memory_order_relaxed);
	conn_free(s, c);
}

static void maybe_finish(struct zt_shard *s, struct zt_conn *c)
{
	if (c->state == ZT_CONN_CLOSING && c->inflight == 0)
		finish(s, c);
}

/* Stop everything: cancel the ops on both sockets; the sockets close when the
 * last op has completed. `rst_mask` bit i: close fd[i] with a reset.
 * Never frees: every entry point (zt_conn_complete, zt_conn_accepted, ...)
 * calls maybe_finish() once, last, so no handler touches a freed connection. */
static void conn_abort(struct zt_shard *s, struct zt_conn *c, int err, const char *what,
		       unsigned rst_mask)
{
	if (c->state == ZT_CONN_CLOSING)
		return;
	if (err && !c->error) {
		c->error = err;
		c->error_what = what;
	}
	c->state = ZT_CONN_CLOSING;
	for (int i = 0; i < 2; i++) {
		if (c->fd[i] < 0)
			continue;
		if (rst_mask & (1u << i))
			zt_sock_set_rst(c->fd[i]);
		struct io_uring_sqe *sqe = zt_shard_sqe(s);
		if (sqe) {
			io_uring_prep_cancel_fd(sqe, c->fd[i], IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data(sqe, NULL);
			io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
		} else {
			/* No SQE: shutdown wakes every op on the socket. */
			shutdown(c->fd[i], SHUT_RDWR);
		}
	}
}

static void arm_recv(struct zt_shard *s, struct zt_conn *c, int dir)
{
	struct zt_dir *d = &c->d[dir];
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe) {
		conn_abort(s, c, -ENOMEM, "submission queue full", 3);
		return;
	}
	/* At most the room left under the cap: what a direction holds never
	 * exceeds conn_buf_cap (dir_progress arms only with enough room). */
	zt_prep_buf_recv(sqe, c->fd[dir], zt_shard_recv_room(s, &d->q), d->drained);
	io_uring_sqe_set_data(sqe, &d->recv_op);
	d->recv_armed = true;
	c->inflight++;
}

static void send_head(struct zt_shard *s, struct zt_conn *c, int dir)
{
	struct zt_dir *d = &c->d[dir];
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe) {
		conn_abort(s, c, -ENOMEM, "submission queue full", 3);
		return;
	}
	if (d->q.spill) { /* the whole ring, in up to two pieces */
		zt_spill_msg(d->q.spill);
		io_uring_prep_sendmsg(sqe, c->fd[!dir], &d->q.spill->msg, MSG_NOSIGNAL);
	} else {
		const uint8_t *p;
		uint32_t n = zt_bufq_peek(s, &d->q, &p);
		io_uring_prep_send(sqe, c->fd[!dir], p, n, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data(sqe, &d->send_op);
	s->expect_reply = dir == 0; /* fd[1] is the upstream */
	d->send_inflight = true;
	c->inflight++;
}

/* After progress in direction `dir`: forward FIN, resume reads, finish. */
static void dir_progress(struct zt_shard *s, struct zt_conn *c, int dir)
{
	struct zt_dir *d = &c->d[dir];
	if (c->state != ZT_CONN_RELAYING)
		return;
	if (d->eof && d->q.bytes == 0 && !d->send_inflight && !d->shut) {
		shutdown(c->fd[!dir], SHUT_WR);
		d->shut = true;
	}
	if (!d->eof && !d->recv_armed && !d->starved && zt_shard_recv_room(s, &d->q))
		arm_recv(s, c, dir);
	if (c->d[0].shut && c->d[1].shut) {
		c->state = ZT_CONN_CLOSING; /* the caller's maybe_finish frees it */
		cancel_errpolls(s, c);
	}
}

/* Watch fd[dir] for a reset even while its reads are paused by backpressure:
 * a poll for errors only (POLLERR and POLLHUP are always reported). */
static void arm_errpoll(struct zt_shard *s, struct zt_conn *c, int dir)
{
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	if (!sqe)
		return; /* best effort: the relay still sees errors on its next I/O */
	io_uring_prep_poll_add(sqe, c->fd[dir], 0);
	io_uring_sqe_set_data(sqe, &c->d[dir].err_op);
	c->d[dir].err_armed = true;
	c->inflight++;
}

static void cancel_errpolls(struct zt_shard *s, struct zt_conn *c)
{
	for (int i = 0; i < 2; i++) {
		if (!c->d[i].err_armed)
			continue;
		struct io_uring_sqe *sqe = zt_shard_sqe(s);
		if (!sqe)
			return;
		io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&c->d[i].err_op);
		io_uring_sqe_set_data(sqe, NULL);
		io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
	}
}

static void on_errpoll(struct zt_shard *s, struct zt_conn *c, int dir, struct io_uring_cqe *cqe)
{
	c->d[dir].err_armed = false;
	if (c->state != ZT_CONN_RELAYING || cqe->res < 0 || !(cqe->res & POLLERR))
		return; /* cancelled, or a hang-up the relay handles as EOF */
	/* A recv waiting on this socket, or one re-armed before the next wait
	 * (starved: the buffer ring had run dry), returns what arrived before
	 * the reset and then the reset itself. Aborting here would drop those
	 * bytes unread (a server that writes a reply and resets at once). The
	 * poll is for sockets whose reads backpressure has paused. */
	if (c->d[dir].recv_armed || c->d[dir].starved)
		return;
	int err = 0;
	socklen_t l = sizeof(err);
	getsockopt(c->fd[dir], SOL_SOCKET, SO_ERROR, &err, &l);
	conn_abort(s, c, err ? -err : -ECONNRESET,
		   dir == 0 ? "downstream reset" : "upstream reset", 1u << !dir);
}

static void start_relay(struct zt_shard *s, struct zt_conn *c)
{
	c->state = ZT_CONN_RELAYING;
	zt_sock_nodelay(c->fd[0]);
	arm_recv(s, c, 0);
	arm_recv(s, c, 1);
	arm_errpoll(s, c, 0);
	arm_errpoll(s, c, 1);
}

static void on_recv(struct zt_shard *s, struct zt_conn *c, int dir, struct io_uring_cqe *cqe)
{
	struct zt_dir *d = &c->d[dir];
	d->recv_armed = false;
	d->drained = zt_recv_drained(cqe);
	if (cqe->res > 0) {
		uint16_t b = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		if (c->state != ZT_CONN_RELAYING) {
			zt_shard_buf_return(s, b);
			return;
		}
		/* recvs are armed only below the cap, so a spill ring has room */
		if (!zt_bufq_push(s, &d->q, b, (uint32_t)cqe->res)) {
			conn_abort(s, c, -ENOBUFS, "spill overflow", 3);
			return;
		}
		if (!d->send_inflight)
			send_head(s, c, dir);
		dir_progress(s, c, dir);
		return;
	}
	if (c->state != ZT_CONN_RELAYING)
		return;
	switch (cqe->res) {
	case 0:
		d->eof = true;
		dir_progress(s, c, dir);
		break;
	case -EINTR:
	case -EAGAIN: /* nothing read: read again */
		dir_progress(s, c, dir);
		break;
	case -ENOBUFS:
		/* Out of provided buffers: wait until some come back. */
		if (!d->starved) {
			d->starved = true;
			s->n_starved++;
		}
		break;
	default:
		/* Reset (or other error) reading fd[dir]: reset the other side too. */
		conn_abort(s, c, cqe->res, dir == 0 ? "downstream reset" : "upstream reset",
			   1u << !dir);
		break;
	}
}

static void on_send(struct zt_shard *s, struct zt_conn *c, int dir, struct io_uring_cqe *cqe)
{
	struct zt_dir *d = &c->d[dir];
	int res = zt_io_retry(cqe->res) ? 0 : cqe->res; /* 0: nothing went out, send again */
	d->send_inflight = false;
	if (c->state != ZT_CONN_RELAYING)
		return;
	if (res == -ECANCELED && d->reclaim) {
		/* zt_conn_reclaim() stopped a send that was waiting for room:
		 * nothing of it went out. Spill the queue and send from there. */
		d->reclaim = false;
		zt_bufq_spill(s, &d->q);
		send_head(s, c, dir);
		return;
	}
	if (res < 0) {
		/* The receiving socket failed: reset the sender's side. */
		conn_abort(s, c, res, dir == 0 ? "upstream write failed" : "downstream write failed",
			   1u << dir);
		return;
	}
	d->bytes += (uint64_t)res;
	if (c->series) /* request bytes are "received", response bytes "sent" */
		atomic_fetch_add_explicit(dir == 0 ? &c->series->received : &c->series->sent,
					  (uint64_t)res, memory_order_relaxed);
	zt_bufq_consume(s, &d->q, (uint32_t)res);
	if (d->reclaim) { /* the cancel came too late: spill what is left */
		d->reclaim = false;
		zt_bufq_spill(s, &d->q);
	}
	if (d->q.bytes)
		send_head(s, c, dir);
	dir_progress(s, c, dir);
}

static void on_connect(struct zt_shard *s, struct zt_conn *c, struct io_uring_cqe *cqe)
{
	if (c->state != ZT_CONN_CONNECTING)
		return;
	int res = zt_sock_connect_result(c->fd[1], cqe->res);
	if (res < 0) {
		c->response_flag = "CONNECT";
		conn_abort(s, c, res, "upstream connect failed", 1u);
		return;
	}
	start_relay(s, c);
}

void zt_conn_complete(struct zt_shard *s, struct zt_op *op, struct io_uring_cqe *cqe)
{
	struct zt_conn *c;
	switch (op->kind) {
	case ZT_OP_CONNECT:
		c = CONN_OF(op, connect_op);
		c->inflight--;
		on_connect(s, c, cqe);
		break;
	case ZT_OP_CONNECT_TIMEOUT:
		c = CONN_OF(op, timeout_op);
		c->inflight--;
		break;
	case ZT_OP_RECV:
		c = CONN_OF(op, d[op->dir].recv_op);
		c->inflight--;
		on_recv(s, c, op->dir, cqe);
		break;
	case ZT_OP_SEND:
		c = CONN_OF(op, d[op->dir].send_op);
		c->inflight--;
		on_send(s, c, op->dir, cqe);
		break;
	case ZT_OP_ERRPOLL:
		c = CONN_OF(op, d[op->dir].err_op);
		c->inflight--;
		on_errpoll(s, c, op->dir, cqe);
		break;
	default:
		return;
	}
	maybe_finish(s, c);
}

static void count_open(struct zt_shard *s, struct zt_conn *c, const struct zt_workload *src,
		       const struct zt_route *rt, bool inbound)
{
	c->response_flag = "-";
	c->series = zt_metrics_open(s->metrics, inbound, src, rt->workload, rt->service, NULL, false);
}

/* Closed: counted under the final response flag. */
static void count_close(struct zt_shard *s, struct zt_conn *c)
{
	zt_metrics_close(s->metrics, c->series, c->response_flag);
}

/* Fill the connection's names from the snapshot; called with the shard online. */
static void describe(struct zt_conn *c, const struct zt_workload *src, const struct zt_route *rt)
{
	if (src) {
		copy_name(c->src_workload, sizeof(c->src_workload), src->name);
		copy_name(c->src_namespace, sizeof(c->src_namespace), src->namespace_);
	}
	if (rt->workload) {
		copy_name(c->dst_workload, sizeof(c->dst_workload), rt->workload->name);
		copy_name(c->dst_namespace, sizeof(c->dst_namespace), rt->workload->namespace_);
	}
	if (rt->service)
		copy_name(c->dst_service, sizeof(c->dst_service), rt->service->hostname);
}

/* Shared mode: connections leave from inside the pod's network namespace
 * (outbound) or reach the app from inside it (inbound). setns() moves only
 * this thread, and only for the socket() call. */
static int upstream_in_netns(struct zt_shard *s, const struct zt_pod *pod, int family)
{
	if (setns(pod->netns_fd, CLONE_NEWNET))
		return -errno;
	int fd = zt_sock_upstream(family);
	if (setns(s->rt->host_netns_fd, CLONE_NEWNET)) {
		/* Stuck in the pod's namespace: nothing this shard does from now
		 * on would be right. */
		ZT_ERROR("proxy", "shard %u cannot return to its network namespace: %s",
			 s->id, strerror(errno));
		abort();
	}
	return fd;
}

/* L4 authorization of a plaintext inbound connection (no peer identity).
 * On deny: log "RBAC rejected" and close. Shard thread, snapshot online. */
static bool inbound_allowed(struct zt_shard *s, struct zt_conn *c, const struct zt_snapshot *snap,
			    const struct zt_workload *dst_wl)
{
	struct zt_authz_conn ac = {.src_ip = &c->src.ip, .dst = &c->orig_dst, .identity = NULL};
	struct zt_authz_result res;
	if (zt_authz_check(snap->authz, dst_wl, &ac, &res) == 0)
		return true;
	char why[200], src[ZT_ADDRSTRLEN], dst[ZT_ADDRSTRLEN];
	zt_authz_result_str(&res, why, sizeof(why));
	struct zt_log_field f[] = {
		ZT_LF_R("src.addr", zt_sockaddr_str(&c->src, src, sizeof(src))),
		ZT_LF_S("src.identity", ""),
		ZT_LF_R("dst.addr", zt_sockaddr_str(&c->orig_dst, dst, sizeof(dst))),
		ZT_LF_S("dst.workload", c->dst_workload),
		ZT_LF_S("reason", why),
	};
	if (zt_log_enabled(ZT_LOG_INFO, "rbac"))
		zt_log_fields(ZT_LOG_INFO, "rbac", "RBAC rejected", f, sizeof(f) / sizeof(f[0]));
	snprintf(c->deny_reason, sizeof(c->deny_reason), "connection closed due to policy rejection: %s", why);
	c->response_flag = "DENY";
	conn_abort(s, c, -EACCES, c->deny_reason, 1u);
	return false;
}

static bool is_own_port(const struct zt_engine_opts *o, uint16_t p)
{
	return p == o->outbound_port || p == o->inbound_port || p == 15008 || p == 15080;
}

void zt_conn_accepted(struct zt_shard *s, struct zt_listener *l, int fd)
{
	struct zt_runtime *rt = s->rt;
	struct zt_conn *c = conn_alloc(s);
	if (!c) {
		/* Out of memory: refuse this one, keep serving. */
		atomic_fetch_add_explicit(&s->stats.oom, 1, memory_order_relaxed);
		zt_sock_set_rst(fd);
		close(fd);
		return;
	}
	atomic_fetch_add_explicit(&s->stats.accepted, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->stats.active, 1, memory_order_relaxed);
	c->fd[0] = fd;
	c->kind = l->kind;
	c->spod = l->spod;
	if (c->spod)
		c->spod->conns++;
	c->start_ns = zt_now_ns();
	c->state = ZT_CONN_CONNECTING;

	bool redirected = false;
	if (zt_sock_peer(fd, &c->src) || zt_sock_original_dst(fd, &c->orig_dst, &redirected)) {
		conn_abort(s, c, -ENOTCONN, "socket vanished before it was read", 1u);
		goto out;
	}
	/* A connection straight to one of our ports would loop. (With TPROXY
	 * the local address is the original destination: not redirected, and
	 * fine.) */
	(void)redirected;
	if (is_own_port(&rt->opts, c->orig_dst.port)) {
		c->dst = c->orig_dst;
		conn_abort(s, c, -ELOOP, "refusing a call to zring's own port", 1u);
		goto out;
	}

	const struct zt_snapshot *snap = zt_rcu_deref(&rt->snapshot);
	/* The pod a shared-mode listener belongs to is known by name (istio-cni's
	 * WorkloadInfo): the source of outbound, the destination of inbound
	 * connections. Otherwise (and as a fallback) by address. */
	const struct zt_workload *pod_wl =
		c->spod ? zt_snapshot_workload_by_name(snap, c->spod->pod->key) : NULL;
	const struct zt_workload *src_wl = l->kind == ZT_LISTEN_OUTBOUND && pod_wl
						   ? pod_wl
						   : zt_snapshot_workload_by_ip(snap, NULL, &c->src.ip);
	struct zt_route route = {0};
	int r;
	if (l->kind == ZT_LISTEN_OUTBOUND) {
		r = zt_route_outbound(snap, src_wl, &c->orig_dst, next_rnd(s), &route);
	} else {
		/* Inbound plaintext: to the pod's own address, as sent, if the
		 * policies let a connection without identity in. */
		route.kind = ZT_ROUTE_WORKLOAD;
		route.dst = c->orig_dst;
		route.workload = pod_wl ? pod_wl : zt_snapshot_workload_by_ip(snap, NULL, &c->orig_dst.ip);
		r = 0;
	}
	if (r == 0 && l->kind == ZT_LISTEN_OUTBOUND && route.workload &&
	    route.workload->protocol == ZT_PROTO_HBONE) {
		/* An HBONE destination: the socket goes into a tunnel. */
		int dfd = c->fd[0];
		c->fd[0] = -1;
		c->handed_off = true;
		c->state = ZT_CONN_CLOSING;
		zt_tun_outbound(s, c->spod, dfd, &c->src, &route.dst, src_wl, route.workload,
				route.service);
		goto out;
	}
	describe(c, src_wl, &route);
	count_open(s, c, src_wl, &route, l->kind == ZT_LISTEN_INBOUND);
	if (l->kind == ZT_LISTEN_INBOUND && !inbound_allowed(s, c, snap, route.workload)) {
		c->dst = c->orig_dst;
		goto out;
	}
	c->dst = r == 0 ? route.dst : c->orig_dst;
	if (r) {
		conn_abort(s, c, r, "no healthy upstream", 1u);
		goto out;
	}

	int ufd = c->spod ? upstream_in_netns(s, c->spod->pod, c->dst.ip.family)
			  : zt_sock_upstream(c->dst.ip.family);
	if (ufd < 0) {
		conn_abort(s, c, ufd, "upstream socket", 1u);
		goto out;
	}
	c->fd[1] = ufd;

	/* Connect with a deadline: the linked timeout cancels the connect. The
	 * address lives in the connection until the SQE has been consumed. */
	struct sockaddr_storage ss;
	c->up_len = zt_sockaddr_to_os(&c->dst, &ss);
	memcpy(&c->up_addr, &ss, c->up_len);
	struct io_uring_sqe *sqe = zt_shard_sqe(s);
	struct io_uring_sqe *tsqe = sqe ? zt_shard_sqe(s) : NULL;
	if (!sqe || !tsqe) {
		conn_abort(s, c, -ENOMEM, "submission queue full", 1u);
		goto out;
	}
	io_uring_prep_connect(sqe, ufd, (struct sockaddr *)&c->up_addr, c->up_len);
	io_uring_sqe_set_data(sqe, &c->connect_op);
	sqe->flags |= IOSQE_IO_LINK;
	c->connect_ts.tv_sec = rt->opts.connect_timeout_ms / 1000;
	c->connect_ts.tv_nsec = (long long)(rt->opts.connect_timeout_ms % 1000) * 1000000;
	io_uring_prep_link_timeout(tsqe, &c->connect_ts, 0);
	io_uring_sqe_set_data(tsqe, &c->timeout_op);
	c->inflight += 2;
out:
	maybe_finish(s, c);
}

void zt_conn_rearm_starved(struct zt_shard *s)
{
	struct zt_conn *c = s->live.next;
	while (c != &s->live && s->n_starved) {
		struct zt_conn *n = c->next; /* c may be finished below */
		for (int i = 0; i < 2; i++) {
			struct zt_dir *d = &c->d[i];
			if (!d->starved)
				continue;
			d->starved = false;
			s->n_starved--;
			dir_progress(s, c, i);
		}
		maybe_finish(s, c);
		c = n;
	}
}

void zt_conn_reclaim(struct zt_shard *s)
{
	for (struct zt_conn *c = s->live.next; c != &s->live; c = c->next) {
		if (c->state != ZT_CONN_RELAYING)
			continue;
		for (int i = 0; i < 2; i++) {
			struct zt_dir *d = &c->d[i];
			if (!d->send_inflight || d->q.spill || d->reclaim || d->q.head == ZT_BID_NONE)
				continue;
			struct io_uring_sqe *sqe = zt_shard_sqe(s);
			if (!sqe)
				return;
			io_uring_prep_cancel(sqe, &d->send_op, 0);
			io_uring_sqe_set_data(sqe, NULL);
			io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
			d->reclaim = true;
		}
	}
}

void zt_conn_abort_all(struct zt_shard *s)
{
	struct zt_conn *c = s->live.next;
	while (c != &s->live) {
		struct zt_conn *n = c->next; /* c may be freed by conn_abort */
		conn_abort(s, c, -ESHUTDOWN, "drain deadline", 3u);
		maybe_finish(s, c);
		c = n;
	}
}

void zt_conn_abort_pod(struct zt_shard *s, struct zt_shard_pod *sp)
{
	struct zt_conn *c = s->live.next;
	while (c != &s->live) {
		struct zt_conn *n = c->next;
		if (c->spod == sp) {
			conn_abort(s, c, -ESHUTDOWN, "pod removed, drain deadline passed", 3u);
			maybe_finish(s, c);
		}
		c = n;
	}
}

void zt_conn_recheck_policies(struct zt_shard *s, const struct zt_snapshot *snap)
{
	struct zt_conn *c = s->live.next;
	while (c != &s->live) {
		struct zt_conn *n = c->next;
		if (c->kind == ZT_LISTEN_INBOUND && c->state != ZT_CONN_CLOSING) {
			/* the workload as the new snapshot has it: its policy list
			 * may have changed */
			const struct zt_workload *wl =
				c->spod ? zt_snapshot_workload_by_name(snap, c->spod->pod->key) : NULL;
			if (!wl)
				wl = zt_snapshot_workload_by_ip(snap, NULL, &c->orig_dst.ip);
			if (!inbound_allowed(s, c, snap, wl))
				maybe_finish(s, c);
		}
		c = n;
	}
}
