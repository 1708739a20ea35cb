/* shard-t.h - the shard's and the relay's types. Shard thread only (the
 * stats block is also read by other threads with relaxed loads). */
#ifndef ZT_SHARD_T_H
#define ZT_SHARD_T_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"
#include "engine/metrics.h"
#include "engine/shard.h"

/* Every SQE's user_data points at one of these, embedded in its owner. */
enum zt_op_kind {
	ZT_OP_ACCEPT = 1,
	ZT_OP_WAKE,
	ZT_OP_CONNECT,
	ZT_OP_CONNECT_TIMEOUT,
	ZT_OP_RECV,
	ZT_OP_SEND,
	ZT_OP_ERRPOLL,
	/* HBONE (tunnel.c) */
	ZT_OP_HC_CONNECT,
	ZT_OP_HC_TIMEOUT,
	ZT_OP_HC_RECV,
	ZT_OP_HC_SEND,
	ZT_OP_TUN_RECV,
	ZT_OP_TUN_SEND,
	ZT_OP_TUN_CONNECT,
	ZT_OP_TUN_TIMEOUT,
};

struct zt_op {
	uint8_t kind;
	uint8_t dir; /* relay direction for RECV/SEND */
};

enum zt_listener_kind { ZT_LISTEN_OUTBOUND = 0, ZT_LISTEN_INBOUND, ZT_LISTEN_HBONE };

/* A pod as one shard sees it. Shard thread only. */
struct zt_shard_pod {
	struct zt_shard_pod *next;
	struct zt_pod *pod;
	unsigned conns;          /* this shard's connections accepted for the pod */
	unsigned listeners;      /* this shard's listeners still alive */
	bool deleting;
	uint64_t drain_deadline_ms;
};

struct zt_listener {
	struct zt_op op;
	struct zt_listener *next;
	int fd;                  /* -1 once closing */
	bool owns_fd;            /* dedicated mode; pod listeners belong to the pod */
	bool armed;
	enum zt_listener_kind kind;
	struct zt_shard_pod *spod; /* NULL in dedicated mode */
	struct zt_sockaddr addr;
};

struct zt_shard_msg {
	enum zt_shard_cmd cmd;
	struct zt_pod *pod;
};

#define ZT_BID_NONE 0xffffu

/* Received bytes waiting to be passed on, in order: provided buffers threaded
 * through the shard's buffer table (no copy), or, once spilled, a private ring
 * (spill.h) that later bytes are appended to until it drains. */
struct zt_bufq {
	uint16_t head, tail;     /* buffer ids, ZT_BID_NONE when empty */
	uint16_t nbufs;          /* provided buffers held (0 while spilled) */
	uint32_t off;            /* bytes of the head buffer already taken */
	uint32_t bytes;          /* bytes queued */
	struct zt_spill *spill;  /* non-NULL: the bytes are here, not in buffers */
};

/* One direction of a relay: bytes read from fd[dir] and written to fd[!dir]. */
struct zt_dir {
	struct zt_op recv_op;
	struct zt_op send_op;
	struct zt_op err_op;     /* poll for errors on fd[dir], even while reads pause */
	bool err_armed;
	struct zt_bufq q;        /* received, not yet sent */
	uint64_t bytes;          /* bytes relayed */
	bool recv_armed;         /* a recv is in flight */
	bool starved;            /* recv ended for lack of buffers */
	bool send_inflight;
	bool eof;                /* read side saw FIN */
	bool shut;               /* FIN forwarded (shutdown SHUT_WR on fd[!dir]) */
	bool reclaim;            /* send cancelled to spill the queue */
	bool drained;            /* the last recv left fd[dir] empty */
};

enum zt_conn_state { ZT_CONN_CONNECTING = 0, ZT_CONN_RELAYING, ZT_CONN_CLOSING };

struct zt_conn {
	struct zt_conn *next, *prev; /* shard's list of live connections */
	int fd[2];                   /* 0 = downstream (accepted), 1 = upstream */
	struct zt_op connect_op;
	struct zt_op timeout_op;
	struct __kernel_timespec connect_ts;
	struct sockaddr_in6 up_addr; /* connect address (v4 fits too) */
	socklen_t up_len;
	struct zt_dir d[2];
	enum zt_conn_state state;
	enum zt_listener_kind kind;
	struct zt_shard_pod *spod;   /* shared mode: the pod it was accepted for */
	struct zt_metric_series *series; /* istio_tcp_* counters for its labels */
	const char *response_flag;   /* "-" unless DENY / CONNECT */
	bool handed_off;             /* fd[0] went to an HBONE tunnel: no log here */
	uint16_t inflight;           /* ops whose user_data points into this conn */
	int error;                   /* first error, negative errno, 0 = none */
	const char *error_what;      /* static text for the access log */
	uint64_t start_ns;
	struct zt_sockaddr src, orig_dst, dst;
	/* Names copied out of the snapshot at accept time: the snapshot may be
	 * reclaimed while the connection lives. */
	char src_workload[64], src_namespace[64];
	char dst_workload[64], dst_namespace[64], dst_service[128];
	char deny_reason[256]; /* authorization: why it was rejected */
};

struct zt_shard {
	struct io_uring ring;
	struct zt_runtime *rt;
	unsigned id;
	pthread_t thread;
	bool started;
	int wake_fd;
	struct zt_op wake_op;
	uint64_t wake_val;
	struct zt_listener *listeners;
	bool listening;
	struct zt_shard_pod *pods;
	unsigned pods_deleting;
	/* The data this shard forwarded last went toward an upstream (a request,
	 * so a reply is probably on its way): --busy-poll-mode replies polls only
	 * then. Set by the relay's and the tunnels' send paths. */
	bool expect_reply;

	/* Mailbox from the control thread: a mutex on the control path only. */
	pthread_mutex_t mb_lock;
	struct zt_shard_msg *mb;
	unsigned mb_len, mb_cap;

	/* Provided buffers: group 0, one ring, `buf_count` buffers. */
	struct io_uring_buf_ring *br;
	size_t br_len;
	uint8_t *bufs;
	uint32_t buf_size, buf_count;
	uint32_t bufs_free;      /* in the ring or on the stack */
	/* Free buffers wait on a stack; the ring holds only ring_target of them,
	 * so the kernel fills the most recently used (cache-warm) buffers first
	 * instead of cycling through all of them (buf_top_up in shard.c). */
	uint16_t *buf_stack;
	uint32_t buf_stack_n;
	uint32_t ring_target;
	uint64_t ring_grown_ms;  /* when ring_target last grew */
	uint16_t *buf_next; /* queue links, indexed by buffer id */
	uint32_t *buf_len;  /* bytes in each queued buffer */
	unsigned n_starved;
	uint64_t reclaim_ms;     /* last zt_shard_reclaim() walk */

	struct zt_conn live; /* list head */
	unsigned n_conns;
	struct zt_conn *free_conns;
	uint64_t rnd;
	uint64_t snap_gen; /* generation of the snapshot last looked at */

	struct zt_shard_stats stats;
	struct zt_metrics_shard *metrics;
	struct zt_tun_shard *tun; /* HBONE state (tunnel.c), created on first use */
};

#define ZT_BUF_GROUP 0

/* conn.c, called by shard.c */
void zt_conn_accepted(struct zt_shard *s, struct zt_listener *l, int fd);
void zt_conn_complete(struct zt_shard *s, struct zt_op *op, struct io_uring_cqe *cqe);
/* Re-arm receives that ended with -ENOBUFS (called once at least
 * ZT_REARM_MIN_FREE buffers are free, so they do not starve again at once;
 * with fewer the shard reclaims buffers from stalled connections instead). */
#define ZT_REARM_MIN_FREE 8u
void zt_conn_rearm_starved(struct zt_shard *s);
/* How much a direction holding queue q may receive next: the room under
 * conn_buf_cap, but 0 (do not read yet) while that room is smaller than a
 * quarter of the cap or a buffer, whichever is less, so reads stay large when
 * a slow reader keeps a connection near its cap; 0 as well while q holds as
 * many provided buffers as the cap has room for whole ones (at least one).
 * A receive takes a whole buffer however little it reads, so without the
 * second rule a direction fed in small pieces could hold most of the shard's
 * pool under its byte cap: the client side of the bench's plain pair had all
 * 16 buffers resident after 3 s, HAProxy one per direction (bench/RESULTS.md,
 * 2026-11-26 11:01). */
static inline uint32_t zt_shard_recv_room(const struct zt_shard *s, const struct zt_bufq *q)
{
	uint32_t cap = s->rt->opts.conn_buf_cap, held = q->bytes;
	uint32_t min = cap / 4 < s->buf_size ? cap / 4 : s->buf_size;
	uint32_t whole = cap / s->buf_size ? cap / s->buf_size : 1;
	if (held >= cap || cap - held < (min ? min : 1) || q->nbufs >= whole)
		return 0;
	return cap - held;
}

/* Prepare a recv of at most len bytes (0: a whole buffer) into the shard's
 * provided buffers. drained: the last recv on fd left it empty
 * (zt_recv_drained), so the kernel waits for data before trying rather than
 * trying, failing and then waiting: one failed recvmsg less per message on
 * request/response traffic (about 0.3 us per hop, bench/RESULTS.md). The
 * flag and the CQE's SOCK_NONEMPTY hint are 5.19, like provided buffer rings. */
static inline void zt_prep_buf_recv(struct io_uring_sqe *sqe, int fd, uint32_t len, bool drained)
{
	io_uring_prep_recv(sqe, fd, NULL, len, 0);
	if (drained)
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = ZT_BUF_GROUP;
}

/* True when the recv that completed as cqe left its socket empty. */
static inline bool zt_recv_drained(const struct io_uring_cqe *cqe)
{
	if (cqe->res > 0)
		return !(cqe->flags & IORING_CQE_F_SOCK_NONEMPTY);
	return cqe->res == -EAGAIN;
}

/* Queue operations (shard thread). */
void zt_bufq_init(struct zt_bufq *q);
/* Append buffer b holding len bytes (spilled queues copy it and return b).
 * false: the spill ring had no room (the bytes are lost: fail the connection). */
bool zt_bufq_push(struct zt_shard *s, struct zt_bufq *q, uint16_t b, uint32_t len);
/* The first contiguous queued piece (0 when empty). */
uint32_t zt_bufq_peek(const struct zt_shard *s, const struct zt_bufq *q, const uint8_t **p);
/* n bytes (at most the queue) were passed on: drop them, return spent buffers,
 * free a spill ring once empty. */
void zt_bufq_consume(struct zt_shard *s, struct zt_bufq *q, uint32_t n);
/* Move the queued buffers into a spill ring of conn_buf_cap and return them.
 * false: no memory for the ring (nothing moved). */
bool zt_bufq_spill(struct zt_shard *s, struct zt_bufq *q);
/* Return every buffer and free the ring. */
void zt_bufq_clear(struct zt_shard *s, struct zt_bufq *q);
/* The shard ran out of provided buffers: connections holding some move their
 * unsent bytes into private memory (spill.h). */
void zt_conn_reclaim(struct zt_shard *s);
void zt_conn_abort_all(struct zt_shard *s);
void zt_conn_abort_pod(struct zt_shard *s, struct zt_shard_pod *sp);
/* A new snapshot was published: close inbound connections it now denies. */
void zt_conn_recheck_policies(struct zt_shard *s, const struct zt_snapshot *snap);

/* shard.c, called by conn.c */
struct io_uring_sqe *zt_shard_sqe(struct zt_shard *s);
void zt_shard_buf_return(struct zt_shard *s, uint16_t bid);
void zt_shard_pod_maybe_release(struct zt_shard *s, struct zt_shard_pod *sp);

#endif
