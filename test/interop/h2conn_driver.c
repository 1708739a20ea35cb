/* h2conn_driver.c - drive zt_h2c over real sockets with poll(), for interop
 * tests against implementations nobody here wrote (python3-h2, nghttpx).
 *
 *   h2conn_driver server --cert C --key K --roots R [--port P] [--trust-domain TD]
 *       HBONE server on 127.0.0.1:P (0: any free port; "READY <port>" on
 *       stdout). Each CONNECT to 127.0.0.1:<port> is connected and relayed;
 *       other targets get 400 (as ztunnel does for an authority that is not
 *       the local pod), a refused connect 503. A client certificate outside
 *       the trust domain is refused after the handshake. Runs until killed.
 *
 *   h2conn_driver client --peer 127.0.0.1:P --authority A --cert C --key K
 *       --roots R [--expect-id URI] [--streams N] [--bytes B] [--timeout S]
 *       One HBONE connection, N CONNECT tunnels to A, each sending B bytes
 *       of a known stream then FIN; the far end (an echo server) must send
 *       them back, checked byte by byte, then FIN. Exit 0 when every tunnel
 *       round-tripped, 1 otherwise; a summary line on stdout.
 *
 * Only 127.0.0.1 is ever connected to. Everything is non-blocking and bounded
 * by --timeout (default 60 s).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "hbone/h2conn.h"

#define MAXC 64   /* HBONE connections (server) */
#define MAXT 1024 /* tunnels */
#define UBUF (64u << 10)

struct hconn;

struct tun {
	bool used;
	struct hconn *hc;
	int32_t sid;
	int idx; /* client: stream seed */
	/* server: the upstream socket */
	int fd;
	bool connecting, up_eof, down_eof, shut_up, closed_write;
	/* down -> up: bytes from on_data not yet sent upstream */
	uint8_t *q;
	size_t q_len, q_cap;
	/* up -> down: bytes read from upstream not yet taken by zt_h2c_write */
	uint8_t ubuf[UBUF];
	size_t u_off, u_len;
	/* client */
	uint64_t tx, rx;
	bool bad, got_eof, done, failed;
	int status;
};

struct hconn {
	bool used, closed;
	int fd;
	struct zt_h2c *h;
	char peer_id[300];
};

static struct hconn conns[MAXC];
static struct tun tuns[MAXT];
static const char *trust_domain = "cluster.local";
static const char *expect_id;
static bool is_server;
static uint64_t goal_bytes = 1 << 20;
static int verbose;
static volatile sig_atomic_t stopping; /* SIGTERM: free everything and exit 0 */

static void on_term(int sig)
{
	stopping = 1;
}

static uint8_t pat(int idx, uint64_t k)
{
	uint64_t x = k / 8 * 0x9e3779b97f4a7c15ull + (uint64_t)idx * 0xbf58476d1ce4e5b9ull;
	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (k % 8)));
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static struct tun *tun_new(struct hconn *hc)
{
	for (int i = 0; i < MAXT; i++)
		if (!tuns[i].used) {
			memset(&tuns[i], 0, sizeof(tuns[i]));
			tuns[i].used = true;
			tuns[i].hc = hc;
			tuns[i].fd = -1;
			tuns[i].idx = i;
			return &tuns[i];
		}
	return NULL;
}

static void tun_free(struct tun *t)
{
	if (t->fd >= 0)
		close(t->fd);
	free(t->q);
	t->used = false;
}

static void close_rst(int fd)
{
	struct linger l = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

/* ---- server relay ------------------------------------------------------- */

static void up_flush(struct tun *t)
{
	while (t->q_len && !t->connecting) {
		ssize_t n = send(t->fd, t->q, t->q_len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			zt_h2c_reset(t->hc->h, t->sid, 0x8 /* CANCEL */);
			tun_free(t);
			return;
		}
		memmove(t->q, t->q + n, t->q_len - (size_t)n);
		t->q_len -= (size_t)n;
		zt_h2c_consumed(t->hc->h, t->sid, (size_t)n);
	}
	if (!t->q_len && t->down_eof && !t->shut_up && !t->connecting) {
		shutdown(t->fd, SHUT_WR);
		t->shut_up = true;
	}
}

static void down_push(struct tun *t)
{
	while (t->u_off < t->u_len) {
		ssize_t n = zt_h2c_write(t->hc->h, t->sid, t->ubuf + t->u_off, t->u_len - t->u_off);
		if (n < 0) {
			fprintf(stderr, "driver: write sid %d: %zd\n", t->sid, n);
			return;
		}
		if (n == 0)
			return; /* on_writable comes back */
		t->u_off += (size_t)n;
	}
	t->u_off = t->u_len = 0;
	if (t->up_eof && !t->closed_write) {
		zt_h2c_close_write(t->hc->h, t->sid);
		t->closed_write = true;
	}
}

static void maybe_done(struct tun *t)
{
	if (t->used && t->closed_write && t->shut_up && t->got_eof) {
		if (verbose)
			fprintf(stderr, "driver: tunnel %d done\n", t->sid);
		tun_free(t);
	}
}

/* ---- callbacks ---------------------------------------------------------------- */

static void cb_hs(void *ud, int err, const char *id)
{
	struct hconn *hc = ud;
	if (err) {
		fprintf(stderr, "driver: handshake failed: %d %s\n", err, zt_h2c_error_detail(hc->h));
		return;
	}
	snprintf(hc->peer_id, sizeof(hc->peer_id), "%s", id);
	fprintf(stderr, "driver: handshake ok, peer %s, %s\n", id, zt_h2c_cipher(hc->h));
	if (is_server) {
		char want[300];
		snprintf(want, sizeof(want), "spiffe://%s/", trust_domain);
		if (strncmp(id, want, strlen(want)))
			zt_h2c_abort(hc->h, -EKEYREJECTED, "client identity outside the trust domain");
	} else if (expect_id && !zt_h2c_peer_has_uri(hc->h, expect_id)) {
		fprintf(stderr, "driver: server is %s, expected %s\n", id, expect_id);
		zt_h2c_abort(hc->h, -EKEYREJECTED, "server identity mismatch");
	}
}

static int cb_connect(void *ud, int32_t sid, const struct zt_h2c_request *req, void **sud)
{
	struct hconn *hc = ud;
	fprintf(stderr, "driver: CONNECT %s forwarded=%s baggage=%s traceparent=%s\n",
		req->authority, req->forwarded ? req->forwarded : "-",
		req->baggage ? req->baggage : "-", req->traceparent ? req->traceparent : "-");
	if (req->target.is_host || req->target.addr.ip.family != AF_INET ||
	    memcmp(req->target.addr.ip.b, "\x7f\0\0\1", 4))
		return 400;
	struct tun *t = tun_new(hc);
	if (!t)
		return 503;
	t->sid = sid;
	t->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(req->target.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1;
	setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(t->fd, (struct sockaddr *)&sa, sizeof(sa)) && errno != EINPROGRESS) {
		tun_free(t);
		return 503;
	}
	t->connecting = true;
	*sud = t;
	return 0;
}

static void client_push(struct tun *t);

static void cb_response(void *ud, int32_t sid, void *sud, int status)
{
	struct tun *t = sud;
	t->status = status;
	if (status != 200) {
		fprintf(stderr, "driver: tunnel %d refused: %d\n", sid, status);
		t->failed = t->done = true;
		return;
	}
	client_push(t); /* takes nothing yet (inside nghttp2); on_writable follows */
}

static void cb_data(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n)
{
	struct tun *t = sud;
	struct hconn *hc = ud;
	if (!is_server) {
		for (size_t i = 0; i < n && !t->bad; i++)
			if (p[i] != pat(t->idx, t->rx + i)) {
				fprintf(stderr, "driver: tunnel %d: wrong byte at %llu\n", sid,
					(unsigned long long)(t->rx + i));
				t->bad = true;
			}
		t->rx += n;
		zt_h2c_consumed(hc->h, sid, n);
		return;
	}
	/* Try the upstream socket first; queue only what it does not take. */
	size_t sent = 0;
	if (!t->connecting && !t->q_len) {
		ssize_t k = send(t->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k > 0) {
			sent = (size_t)k;
			zt_h2c_consumed(hc->h, sid, sent);
		}
	}
	if (sent < n) {
		if (t->q_len + n - sent > t->q_cap) {
			size_t cap = t->q_cap ? t->q_cap : 65536;
			while (cap < t->q_len + n - sent)
				cap *= 2;
			t->q = realloc(t->q, cap);
			t->q_cap = cap;
		}
		memcpy(t->q + t->q_len, p + sent, n - sent);
		t->q_len += n - sent;
	}
}

static void cb_eof(void *ud, int32_t sid, void *sud)
{
	struct tun *t = sud;
	t->got_eof = true;
	t->down_eof = true;
	if (is_server) {
		up_flush(t);
		if (t->used)
			maybe_done(t);
		return;
	}
	{
		t->done = true;
		if (t->rx != goal_bytes || t->bad) {
			fprintf(stderr, "driver: tunnel %d: got %llu of %llu bytes back\n", sid,
				(unsigned long long)t->rx, (unsigned long long)goal_bytes);
			t->failed = true;
		}
	}
}

static void cb_reset(void *ud, int32_t sid, void *sud, uint32_t code)
{
	struct tun *t = sud;
	fprintf(stderr, "driver: tunnel %d reset (code %u)\n", sid, code);
	if (!is_server) {
		t->failed = t->done = true;
		return;
	}
	if (t->fd >= 0) {
		close_rst(t->fd);
		t->fd = -1;
	}
	tun_free(t);
}

static void cb_writable(void *ud, int32_t sid, void *sud)
{
	struct tun *t = sud;
	if (is_server) {
		down_push(t);
		maybe_done(t);
	} else {
		client_push(t);
	}
}

static void cb_goaway(void *ud, int32_t last, uint32_t code)
{
	fprintf(stderr, "driver: GOAWAY last=%d code=%u\n", last, code);
}

static void cb_closed(void *ud, int err)
{
	struct hconn *hc = ud;
	hc->closed = true;
	fprintf(stderr, "driver: connection closed: %d %s\n", err, zt_h2c_error_detail(hc->h));
}

static const struct zt_h2c_cbs cbs = {
	.on_handshake_done = cb_hs,
	.on_connect = cb_connect,
	.on_response = cb_response,
	.on_data = cb_data,
	.on_eof = cb_eof,
	.on_reset = cb_reset,
	.on_writable = cb_writable,
	.on_goaway = cb_goaway,
	.on_closed = cb_closed,
};

/* ---- client generator ----------------------------------------------------------- */

static void client_push(struct tun *t)
{
	static uint8_t buf[UBUF];
	while (t->status == 200 && t->tx < goal_bytes) {
		size_t n = goal_bytes - t->tx < UBUF ? (size_t)(goal_bytes - t->tx) : UBUF;
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(t->idx, t->tx + i);
		ssize_t k = zt_h2c_write(t->hc->h, t->sid, buf, n);
		if (k <= 0)
			return;
		t->tx += (uint64_t)k;
	}
	if (t->status == 200 && t->tx == goal_bytes && !t->closed_write) {
		zt_h2c_close_write(t->hc->h, t->sid);
		t->closed_write = true;
	}
}

/* ---- socket plumbing --------------------------------------------------------- */

static void conn_flush(struct hconn *hc)
{
	while (zt_h2c_out_pending(hc->h)) {
		struct iovec iov[16];
		int n = zt_h2c_out_iov(hc->h, iov, 16);
		ssize_t k = writev(hc->fd, iov, n);
		if (k < 0) {
			if (errno != EAGAIN)
				zt_h2c_out_done(hc->h, zt_h2c_out_pending(hc->h)); /* peer gone */
			return;
		}
		zt_h2c_out_done(hc->h, (size_t)k);
	}
}

static void conn_read(struct hconn *hc)
{
	static uint8_t buf[256 << 10];
	for (int i = 0; i < 16 && !hc->closed; i++) {
		ssize_t n = read(hc->fd, buf, sizeof(buf));
		if (n > 0) {
			zt_h2c_feed(hc->h, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EAGAIN)
			return;
		zt_h2c_feed_eof(hc->h);
		return;
	}
}

static void conn_free(struct hconn *hc)
{
	conn_flush(hc);
	/* Lingering close: FIN after our last bytes (alert, GOAWAY,
	 * close_notify), then drain what the peer still sends for a moment, so
	 * that closing with unread input does not turn into an RST that makes
	 * the peer drop those last bytes. */
	shutdown(hc->fd, SHUT_WR);
	uint64_t until = zt_now_ms() + 500;
	for (;;) {
		uint64_t now = zt_now_ms();
		if (now >= until)
			break;
		struct pollfd p = {.fd = hc->fd, .events = POLLIN};
		if (poll(&p, 1, (int)(until - now)) <= 0)
			break;
		char junk[4096];
		ssize_t k = read(hc->fd, junk, sizeof(junk));
		if (k == 0 || (k < 0 && errno != EAGAIN))
			break;
	}
	for (int i = 0; i < MAXT; i++)
		if (tuns[i].used && tuns[i].hc == hc) {
			if (is_server)
				tun_free(&tuns[i]);
			else
				tuns[i].hc = NULL;
		}
	zt_h2c_free(hc->h);
	close(hc->fd);
	hc->used = false;
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	*out = malloc(*len + 1);
	size_t r = fread(*out, 1, *len, f);
	fclose(f);
	return r == *len ? 0 : -1;
}

static void upstream_events(struct tun *t, short re)
{
	if (t->connecting && (re & (POLLOUT | POLLERR | POLLHUP))) {
		int e = 0;
		socklen_t l = sizeof(e);
		getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &l);
		t->connecting = false;
		if (e) {
			zt_h2c_respond(t->hc->h, t->sid, 503);
			tun_free(t);
			return;
		}
		zt_h2c_respond(t->hc->h, t->sid, 200);
		up_flush(t);
		return;
	}
	if (!t->used)
		return;
	if (re & POLLOUT)
		up_flush(t);
	if (!t->used)
		return;
	if ((re & (POLLIN | POLLHUP | POLLERR)) && !t->up_eof && t->u_len == 0) {
		ssize_t n = recv(t->fd, t->ubuf, UBUF, 0);
		if (n > 0) {
			t->u_len = (size_t)n;
			down_push(t);
		} else if (n == 0) {
			t->up_eof = true;
			down_push(t);
		} else if (errno != EAGAIN) {
			zt_h2c_reset(t->hc->h, t->sid, 0x8);
			tun_free(t);
			return;
		}
	}
	maybe_done(t);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_term);
	const char *cert = NULL, *key = NULL, *roots = NULL, *peer = NULL, *authority = NULL;
	int port = 0, nstreams = 1, timeout_s = 60;
	if (argc < 2)
		goto usage;
	is_server = !strcmp(argv[1], "server");
	if (!is_server && strcmp(argv[1], "client"))
		goto usage;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-v")) {
			verbose = 1;
			continue;
		}
		if (!v)
			goto usage;
		i++;
		if (!strcmp(a, "--cert"))
			cert = v;
		else if (!strcmp(a, "--key"))
			key = v;
		else if (!strcmp(a, "--roots"))
			roots = v;
		else if (!strcmp(a, "--port"))
			port = atoi(v);
		else if (!strcmp(a, "--trust-domain"))
			trust_domain = v;
		else if (!strcmp(a, "--peer"))
			peer = v;
		else if (!strcmp(a, "--authority"))
			authority = v;
		else if (!strcmp(a, "--expect-id"))
			expect_id = v;
		else if (!strcmp(a, "--streams"))
			nstreams = atoi(v);
		else if (!strcmp(a, "--bytes"))
			goal_bytes = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--timeout"))
			timeout_s = atoi(v);
		else
			goto usage;
	}
	if (!cert || !key || !roots || (!is_server && (!peer || !authority)))
		goto usage;
	zt_log_configure(verbose ? "debug" : "warn", false);
	wolfSSL_Init();
	char *cp, *kp, *rp;
	size_t cl, kl, rl;
	if (read_file(cert, &cp, &cl) || read_file(key, &kp, &kl) || read_file(roots, &rp, &rl)) {
		fprintf(stderr, "driver: cannot read certificate files\n");
		return 2;
	}
	WOLFSSL_CTX *ctx;
	int r = zt_h2c_ctx_new(is_server ? ZT_H2C_SERVER : ZT_H2C_CLIENT, cp, cl, kp, kl, rp, rl, &ctx);
	free(cp);
	free(kp);
	free(rp);
	if (r) {
		fprintf(stderr, "driver: TLS context: %s\n", strerror(-r));
		return 2;
	}
	uint64_t deadline = zt_now_ms() + (uint64_t)timeout_s * 1000;
	int lfd = -1;
	if (is_server) {
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		int one = 1;
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t sl = sizeof(sa);
		if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 64) ||
		    getsockname(lfd, (struct sockaddr *)&sa, &sl)) {
			perror("driver: listen");
			return 2;
		}
		printf("READY %d\n", ntohs(sa.sin_port));
		fflush(stdout);
	} else {
		struct hconn *hc = &conns[0];
		hc->used = true;
		char host[64];
		const char *colon = strrchr(peer, ':');
		if (!colon || colon - peer >= (int)sizeof(host))
			goto usage;
		memcpy(host, peer, (size_t)(colon - peer));
		host[colon - peer] = 0;
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
		if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || sa.sin_addr.s_addr != htonl(INADDR_LOOPBACK)) {
			fprintf(stderr, "driver: only 127.0.0.1 peers\n");
			return 2;
		}
		hc->fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(hc->fd, (struct sockaddr *)&sa, sizeof(sa))) {
			perror("driver: connect");
			return 1;
		}
		int one = 1;
		setsockopt(hc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		nonblock(hc->fd);
		if (zt_h2c_new(ZT_H2C_CLIENT, ctx, &cbs, hc, &hc->h))
			return 2;
		zt_h2c_set_max_streams(hc->h, (uint32_t)nstreams);
		for (int i = 0; i < nstreams; i++) {
			struct tun *t = tun_new(hc);
			char fwd[64];
			snprintf(fwd, sizeof(fwd), "for=\"127.0.0.1:%d\"", 40000 + i);
			r = zt_h2c_connect(hc->h, authority, fwd,
					   "k8s.cluster.name=Kubernetes,k8s.namespace.name=default",
					   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", t,
					   &t->sid);
			if (r) {
				fprintf(stderr, "driver: connect #%d: %s\n", i, strerror(-r));
				return 1;
			}
		}
	}
	for (;;) {
		uint64_t now = zt_now_ms();
		if (stopping) {
			/* A clean exit, so that leak checkers see everything freed. */
			for (int i = 0; i < MAXC; i++)
				if (conns[i].used)
					conn_free(&conns[i]);
			for (int i = 0; i < MAXT; i++)
				if (tuns[i].used)
					tun_free(&tuns[i]);
			if (lfd >= 0)
				close(lfd);
			wolfSSL_CTX_free(ctx);
			wolfSSL_Cleanup();
			return 0;
		}
		if (is_server)
			deadline = now + 1000; /* a server runs until SIGTERM */
		if (now >= deadline) {
			fprintf(stderr, "driver: timeout\n");
			for (int i = 0; i < MAXT; i++)
				if (tuns[i].used && !is_server)
					fprintf(stderr, "driver: tunnel %d: status %d sent %llu%s got %llu%s\n",
						tuns[i].sid, tuns[i].status,
						(unsigned long long)tuns[i].tx,
						tuns[i].closed_write ? "+FIN" : "",
						(unsigned long long)tuns[i].rx,
						tuns[i].got_eof ? "+FIN" : "");
			break;
		}
		if (!is_server) {
			bool all = true, ok = true;
			int good = 0, total = 0;
			for (int i = 0; i < MAXT; i++)
				if (tuns[i].used) {
					total++;
					all &= tuns[i].done;
					ok &= !tuns[i].failed;
					good += tuns[i].done && !tuns[i].failed;
				}
			if (all || !conns[0].used) {
				printf("RESULT %d/%d tunnels round-tripped %llu bytes each\n", good, total,
				       (unsigned long long)goal_bytes);
				if (conns[0].used) {
					zt_h2c_goaway(conns[0].h);
					conn_free(&conns[0]);
				}
				wolfSSL_CTX_free(ctx);
				wolfSSL_Cleanup();
				return all && ok && good == total ? 0 : 1;
			}
		}
		static struct pollfd pf[1 + MAXC + MAXT];
		static void *who[1 + MAXC + MAXT];
		int n = 0, wait = 200;
		if (lfd >= 0) {
			pf[n] = (struct pollfd){.fd = lfd, .events = POLLIN};
			who[n++] = NULL;
		}
		for (int i = 0; i < MAXC; i++) {
			struct hconn *hc = &conns[i];
			if (!hc->used)
				continue;
			zt_h2c_tick(hc->h, now);
			if (hc->closed) {
				conn_free(hc);
				continue;
			}
			conn_flush(hc);
			uint64_t dl = zt_h2c_deadline(hc->h);
			if (dl != UINT64_MAX && dl < now + (uint64_t)wait)
				wait = dl > now ? (int)(dl - now) : 0;
			pf[n] = (struct pollfd){.fd = hc->fd, .events = POLLIN};
			if (zt_h2c_out_pending(hc->h))
				pf[n].events |= POLLOUT;
			who[n++] = hc;
		}
		for (int i = 0; i < MAXT; i++) {
			struct tun *t = &tuns[i];
			if (!t->used || t->fd < 0)
				continue;
			short ev = 0;
			if (t->connecting || t->q_len)
				ev |= POLLOUT;
			if (!t->connecting && !t->up_eof && t->u_len == 0)
				ev |= POLLIN;
			pf[n] = (struct pollfd){.fd = t->fd, .events = ev};
			who[n++] = t;
		}
		if (poll(pf, (nfds_t)n, wait) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			short re = pf[i].revents;
			if (!re)
				continue;
			if (pf[i].fd == lfd) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
				if (fd < 0)
					continue;
				struct hconn *hc = NULL;
				for (int k = 0; k < MAXC && !hc; k++)
					if (!conns[k].used)
						hc = &conns[k];
				if (!hc) {
					close(fd);
					continue;
				}
				memset(hc, 0, sizeof(*hc));
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				if (zt_h2c_new(ZT_H2C_SERVER, ctx, &cbs, hc, &hc->h)) {
					close(fd);
					continue;
				}
				hc->used = true;
				hc->fd = fd;
				continue;
			}
			if (who[i] >= (void *)conns && who[i] < (void *)(conns + MAXC)) {
				struct hconn *hc = who[i];
				if (!hc->used || hc->fd != pf[i].fd || hc->closed)
					continue;
				if (re & (POLLIN | POLLHUP | POLLERR))
					conn_read(hc);
				if (!hc->closed)
					conn_flush(hc);
				continue;
			}
			struct tun *t = who[i];
			if (t->used && t->fd == pf[i].fd)
				upstream_events(t, re);
		}
	}
	return 1;
usage:
	fprintf(stderr, "usage: %s server|client ... (see the top of h2conn_driver.c)\n", argv[0]);
	return 2;
}
