/* zconnect: the two HTTP/1.1 CONNECT ends that put nghttpx in the bench's HBONE
 * comparison (bench/run.py, path nghttpx-pair). Single thread, epoll, plain libc.
 *
 *   zconnect client -l PORT -u UPSTREAM [-M MARK]
 *       Accepts redirected TCP on 0.0.0.0:PORT (iptables REDIRECT), reads the
 *       original destination (SO_ORIGINAL_DST), connects to UPSTREAM (an HTTP
 *       proxy: "unix:/path" or "ip:port"), sends "CONNECT dst HTTP/1.1", waits for
 *       a 2xx response and then relays both ways.
 *   zconnect server -l LISTEN
 *       A CONNECT terminator: accepts on LISTEN ("unix:/path" or "ip:port"), reads
 *       "CONNECT ip:port HTTP/1.x" and its header block, connects to ip:port (numeric
 *       addresses only, no DNS), answers "HTTP/1.1 200 OK" (or 502) and relays.
 *
 * Relaying: read into one shared 256 KiB buffer and write straight to the other
 * socket; only bytes the other socket does not take are copied to a per-connection
 * heap buffer (and reading that side pauses until they are sent), so an idle
 * connection costs its struct and nothing else. EOF is passed on as shutdown(SHUT_WR);
 * an error on either socket closes both (with a reset). -M sets SO_MARK on outgoing
 * sockets (so a mark-based capture rule skips them). Not part of any test suite.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)
#define HDRMAX 8192

enum { ST_CONNECTING, ST_HANDSHAKE, ST_RELAY };

struct side {
	int fd;
	bool rd_eof;      /* read returned 0 */
	bool wr_shut;     /* shutdown(SHUT_WR) done */
	uint32_t events;  /* registered epoll interest */
	char *pend;       /* bytes read from this side not yet written to the other */
	size_t plen, poff;
};

struct conn {
	int state;
	bool dead;         /* closed; freed after the current epoll batch */
	struct conn *next; /* on the dead list */
	/* s[0]: the accepted socket; s[1]: the one we connected */
	struct side s[2];
	char *hdr; /* handshake bytes (response in client mode, request in server mode) */
	size_t hlen;
};

static bool server_mode;
static int epfd, mark;
static struct sockaddr_storage upstream;
static socklen_t upstream_len;
static char buf[BUFSZ];
static long nconns;
static struct conn *dead_list;

/* The first few failures go to stderr (the bench keeps it in a log). */
static void note(const char *what, const char *detail)
{
	static int shown;
	if (shown++ < 20) {
		const char *eol = detail ? strpbrk(detail, "\r\n") : NULL;
		fprintf(stderr, "zconnect: %s%s%.*s\n", what, detail ? ": " : "",
			detail ? (int)(eol ? eol - detail : (long)strlen(detail)) : 0, detail ? detail : "");
	}
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static int parse_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (!strncmp(s, "unix:", 5)) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		if (strlen(s + 5) >= sizeof un->sun_path)
			return -1;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, s + 5);
		*len = sizeof *un;
		return 0;
	}
	char host[128];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	char *h = host;
	size_t hl = strlen(h);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h[hl - 1] = 0;
		h++;
	}
	int port = atoi(colon + 1);
	if (port <= 0 || port > 65535)
		return -1;
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof *in4;
		return 0;
	}
	if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof *in6;
		return 0;
	}
	return -1;
}

static void tune(int fd, int family)
{
	int one = 1;
	if (family != AF_UNIX)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static uint64_t tag(struct conn *c, int i)
{
	return (uint64_t)(uintptr_t)c | (uint64_t)i;
}

static void set_events(struct conn *c, int i, uint32_t ev)
{
	struct side *s = &c->s[i];
	if (s->fd < 0 || s->events == ev)
		return;
	struct epoll_event e = {.events = ev, .data.u64 = tag(c, i)};
	epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &e);
	s->events = ev;
}

static void add_fd(struct conn *c, int i, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.u64 = tag(c, i)};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->s[i].fd, &e))
		die("epoll_ctl");
	c->s[i].events = ev;
}

static void conn_close(struct conn *c, bool reset)
{
	if (c->dead)
		return;
	for (int i = 0; i < 2; i++) {
		struct side *s = &c->s[i];
		if (s->fd >= 0) {
			if (reset) {
				struct linger l = {1, 0};
				setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
			}
			close(s->fd); /* also leaves the epoll set */
			s->fd = -1;
		}
		free(s->pend);
		s->pend = NULL;
	}
	free(c->hdr);
	c->hdr = NULL;
	/* other events of this batch may still name c: free it after the batch */
	c->dead = true;
	c->next = dead_list;
	dead_list = c;
	nconns--;
}

/* Relay state: work out what each side waits for; close when both directions are done. */
static void relay_update(struct conn *c)
{
	for (int i = 0; i < 2; i++) {
		struct side *src = &c->s[i], *dst = &c->s[1 - i];
		if (src->rd_eof && !src->plen && !dst->wr_shut) {
			shutdown(dst->fd, SHUT_WR);
			dst->wr_shut = true;
		}
	}
	if (c->s[0].wr_shut && c->s[1].wr_shut) {
		conn_close(c, false);
		return;
	}
	for (int k = 0; k < 2; k++) {
		struct side *s = &c->s[k], *o = &c->s[1 - k];
		uint32_t ev = 0;
		if (!s->rd_eof && !s->plen)
			ev |= EPOLLIN;
		if (o->plen)
			ev |= EPOLLOUT;
		set_events(c, k, ev);
	}
}

/* Send n bytes read from side i to the other side; keep what it does not take. */
static int forward(struct conn *c, int i, const char *p, size_t n)
{
	struct side *src = &c->s[i], *dst = &c->s[1 - i];
	size_t off = 0;
	while (off < n) {
		ssize_t w = send(dst->fd, p + off, n - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		return -1;
	}
	if (off < n) {
		src->pend = malloc(n - off);
		if (!src->pend)
			return -1;
		memcpy(src->pend, p + off, n - off);
		src->plen = n - off;
		src->poff = 0;
	}
	return 0;
}

/* splice() through one pipe shared by all connections: socket -> pipe -> socket without
 * copying to user space. The pipe is empty between calls: what the destination does not
 * take is read out of it into the connection's pending buffer (the same path as above). */
static int pipefd[2] = {-1, -1};
static size_t pipe_cap;

static int splice_readable(struct conn *c, int i)
{
	struct side *src = &c->s[i], *dst = &c->s[1 - i];
	for (int rounds = 0; rounds < 4 && !src->plen && !src->rd_eof; rounds++) {
		ssize_t n = splice(src->fd, NULL, pipefd[1], NULL, pipe_cap, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == 0) {
			src->rd_eof = true;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		size_t off = 0;
		while (off < (size_t)n) {
			ssize_t w = splice(pipefd[0], NULL, dst->fd, NULL, n - off,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (w > 0) {
				off += w;
			} else if (w < 0 && errno == EINTR) {
				continue;
			} else if (w < 0 && errno == EAGAIN) {
				break;
			} else {
				/* drain the pipe before failing: it is shared */
				while (off < (size_t)n) {
					ssize_t r = read(pipefd[0], buf, (n - off) < BUFSZ ? (n - off) : BUFSZ);
					if (r <= 0)
						break;
					off += r;
				}
				return -1;
			}
		}
		if (off < (size_t)n) {
			size_t left = n - off, got = 0;
			src->pend = malloc(left);
			while (got < left) {
				ssize_t r = read(pipefd[0], src->pend ? src->pend + got : buf,
						 src->pend ? left - got : ((left - got) < BUFSZ ? left - got : BUFSZ));
				if (r <= 0)
					return -1; /* cannot happen: the bytes are in the pipe */
				got += r;
			}
			if (!src->pend)
				return -1;
			src->plen = left;
			src->poff = 0;
		}
	}
	return 0;
}

static int on_readable(struct conn *c, int i)
{
	struct side *src = &c->s[i];
	if (pipefd[0] >= 0)
		return splice_readable(c, i);
	for (int rounds = 0; rounds < 4 && !src->plen && !src->rd_eof; rounds++) {
		ssize_t n = recv(src->fd, buf, BUFSZ, 0);
		if (n > 0) {
			if (forward(c, i, buf, n))
				return -1;
			if (n < BUFSZ)
				break;
		} else if (n == 0) {
			src->rd_eof = true;
		} else if (errno == EAGAIN || errno == EINTR) {
			break;
		} else {
			return -1;
		}
	}
	return 0;
}

static int on_writable(struct conn *c, int k)
{
	struct side *src = &c->s[1 - k], *dst = &c->s[k];
	while (src->plen) {
		ssize_t w = send(dst->fd, src->pend + src->poff, src->plen, MSG_NOSIGNAL);
		if (w > 0) {
			src->poff += w;
			src->plen -= w;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && errno == EAGAIN) {
			return 0;
		} else {
			return -1;
		}
	}
	free(src->pend);
	src->pend = NULL;
	src->poff = 0;
	return 0;
}

/* Enter the relay with `extra` bytes that arrived behind the handshake on side i. */
static void start_relay(struct conn *c, int i, const char *extra, size_t n)
{
	c->state = ST_RELAY;
	if (n && forward(c, i, extra, n)) {
		conn_close(c, true);
		return;
	}
	free(c->hdr);
	c->hdr = NULL;
	relay_update(c);
}

static char *hdr_end(struct conn *c)
{
	void *p = memmem(c->hdr, c->hlen, "\r\n\r\n", 4);
	return p ? (char *)p + 4 : NULL;
}

static int read_hdr(struct conn *c, int i)
{
	if (!c->hdr && !(c->hdr = malloc(HDRMAX)))
		return -1;
	ssize_t n = recv(c->s[i].fd, c->hdr + c->hlen, HDRMAX - c->hlen, 0);
	if (n == 0) {
		errno = 0;
		return -1;
	}
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	c->hlen += n;
	if (!hdr_end(c) && c->hlen == HDRMAX)
		return -1;
	return 1;
}

/* Read more of the HTTP/1 head from side i: its end once complete, else
 * NULL (incomplete, or failed: then the connection is closed). */
static char *head_in(struct conn *c, int i, const char *what)
{
	if (read_hdr(c, i) < 0) {
		note(what, errno ? strerror(errno) : "EOF");
		conn_close(c, true);
		return NULL;
	}
	return hdr_end(c);
}

/* A non-blocking connect; *done says it completed at once (unix sockets do). */
static int connect_to(const struct sockaddr_storage *ss, socklen_t len, bool *done)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (mark && ss->ss_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
	tune(fd, ss->ss_family);
	int r = connect(fd, (const struct sockaddr *)ss, len);
	if (r && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	*done = r == 0;
	return fd;
}

static const char *addr_str(const struct sockaddr_storage *ss, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(out, n, "%s:%u", ip, ntohs(a->sin_port));
	} else {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(out, n, "[%s]:%u", ip, ntohs(a->sin6_port));
	}
	return out;
}

static void send_all_small(int fd, const char *p, size_t n)
{
	/* a fresh socket's send buffer takes a header block */
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= w;
	}
}

static void on_accept(int lfd, int family)
{
	for (int k = 0; k < 64; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		tune(fd, family);
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		nconns++;
		c->s[0].fd = fd;
		c->s[1].fd = -1;
		if (server_mode) {
			c->state = ST_HANDSHAKE; /* read the CONNECT request */
			add_fd(c, 0, EPOLLIN);
			continue;
		}
		struct sockaddr_storage od;
		socklen_t olen = sizeof od;
		memset(&od, 0, sizeof od);
		if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &od, &olen)) {
			close(fd);
			free(c);
			nconns--;
			continue;
		}
		bool done = false;
		int ufd = connect_to(&upstream, upstream_len, &done);
		if (ufd < 0) {
			close(fd);
			free(c);
			nconns--;
			continue;
		}
		c->s[1].fd = ufd;
		c->state = ST_CONNECTING;
		add_fd(c, 0, 0);
		/* keep the CONNECT request in hdr until the upstream is connected */
		char a[80];
		c->hdr = malloc(HDRMAX);
		if (!c->hdr) {
			add_fd(c, 1, 0);
			conn_close(c, true);
			continue;
		}
		addr_str(&od, a, sizeof a);
		c->hlen = snprintf(c->hdr, HDRMAX, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", a, a);
		if (done) { /* connected at once: send the request now, wait for the answer */
			send_all_small(ufd, c->hdr, c->hlen);
			c->hlen = 0;
			c->state = ST_HANDSHAKE;
			add_fd(c, 1, EPOLLIN);
		} else {
			add_fd(c, 1, EPOLLOUT);
		}
	}
}

static const char *sock_err(int fd)
{
	int err = 0;
	socklen_t l = sizeof err;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
	return err ? strerror(err) : "hang-up";
}

static bool connected(int fd)
{
	int err = 0;
	socklen_t l = sizeof err;
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err == 0;
}

static void on_event(struct conn *c, int i, uint32_t ev)
{
	if (c->dead)
		return;
	if (c->state == ST_RELAY) {
		if (ev & EPOLLERR) {
			note(i ? "relay: error on the connected side" : "relay: error on the accepted side",
			     sock_err(c->s[i].fd));
			conn_close(c, true);
			return;
		}
		if ((ev & EPOLLOUT) && on_writable(c, i)) {
			note("relay: send", strerror(errno));
			conn_close(c, true);
			return;
		}
		if ((ev & (EPOLLIN | EPOLLHUP)) && on_readable(c, i)) {
			note("relay: recv/send", strerror(errno));
			conn_close(c, true);
			return;
		}
		relay_update(c);
		return;
	}
	/* before the relay only one side is waited on: side 1 in client mode and while
	 * connecting, side 0 while a server reads the request; the other side only
	 * reports errors and hang-ups */
	int want = (!server_mode || c->state == ST_CONNECTING) ? 1 : 0;
	if (i != want) {
		if (ev & (EPOLLERR | EPOLLHUP)) {
			note("peer went away during the CONNECT", sock_err(c->s[i].fd));
			conn_close(c, true);
		}
		return;
	}
	if (!server_mode) {
		if (c->state == ST_CONNECTING) { /* upstream (side 1) connected */
			if (!connected(c->s[1].fd)) {
				note("connect to the upstream proxy", sock_err(c->s[1].fd));
				conn_close(c, true);
				return;
			}
			send_all_small(c->s[1].fd, c->hdr, c->hlen);
			c->hlen = 0;
			c->state = ST_HANDSHAKE;
			set_events(c, 1, EPOLLIN);
			return;
		}
		/* the proxy's response */
		char *end = head_in(c, 1, "reading the CONNECT response");
		if (!end)
			return;
		if (c->hlen < 12 || strncmp(c->hdr, "HTTP/1.", 7) || c->hdr[9] != '2') {
			note("CONNECT refused", c->hdr);
			conn_close(c, true);
			return;
		}
		size_t extra = c->hlen - (end - c->hdr);
		/* bytes behind the response go to the client (side 0): forward from side 1 */
		start_relay(c, 1, end, extra);
		return;
	}
	/* server mode */
	if (c->state == ST_HANDSHAKE) {
		char *end = head_in(c, 0, "reading the CONNECT request");
		if (!end)
			return;
		char target[256];
		if (sscanf(c->hdr, "CONNECT %255s HTTP/1.", target) != 1) {
			send_all_small(c->s[0].fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
			conn_close(c, false);
			return;
		}
		struct sockaddr_storage ss;
		socklen_t len;
		bool done = false;
		int fd = parse_sockaddr(target, &ss, &len) || !strncmp(target, "unix:", 5)
				 ? -1
				 : connect_to(&ss, len, &done);
		if (fd < 0) {
			note("bad or unreachable CONNECT target", target);
			send_all_small(c->s[0].fd, "HTTP/1.1 502 Bad Gateway\r\n\r\n", 28);
			conn_close(c, false);
			return;
		}
		/* keep the request's trailing bytes: move them to the front of hdr */
		size_t extra = c->hlen - (end - c->hdr);
		memmove(c->hdr, end, extra);
		c->hlen = extra;
		c->s[1].fd = fd;
		c->state = ST_CONNECTING;
		set_events(c, 0, 0);
		add_fd(c, 1, done ? 0 : EPOLLOUT);
		if (!done)
			return;
	} else if (!connected(c->s[1].fd)) { /* ST_CONNECTING: the target (side 1) */
		note("connect to the CONNECT target", sock_err(c->s[1].fd));
		send_all_small(c->s[0].fd, "HTTP/1.1 502 Bad Gateway\r\n\r\n", 28);
		conn_close(c, false);
		return;
	}
	send_all_small(c->s[0].fd, "HTTP/1.1 200 OK\r\n\r\n", 19);
	start_relay(c, 0, c->hdr, c->hlen);
}

static int listen_on(const char *spec, int *family)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!strchr(spec, ':') && !strchr(spec, '/')) { /* a bare port */
		char tmp[64];
		snprintf(tmp, sizeof tmp, "0.0.0.0:%s", spec);
		return listen_on(tmp, family);
	}
	if (parse_sockaddr(spec, &ss, &len)) {
		fprintf(stderr, "zconnect: bad address %s\n", spec);
		exit(2);
	}
	if (ss.ss_family == AF_UNIX)
		unlink(((struct sockaddr_un *)&ss)->sun_path);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 4096))
		die(spec);
	*family = ss.ss_family;
	return fd;
}

static void usage(void)
{
	fprintf(stderr, "usage: zconnect client -l PORT -u UPSTREAM [-M MARK] [-S]\n"
			"       zconnect server -l LISTEN [-S]      (ADDR: ip:port or unix:/path)\n"
			"  -S: relay with splice() through a shared pipe instead of recv/send\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	server_mode = !strcmp(argv[1], "server");
	if (!server_mode && strcmp(argv[1], "client"))
		usage();
	const char *lspec = NULL, *up = NULL;
	int opt;
	optind = 2;
	bool use_splice = false;
	while ((opt = getopt(argc, argv, "l:u:M:S")) != -1) {
		switch (opt) {
		case 'S': use_splice = true; break;
		case 'l': lspec = optarg; break;
		case 'u': up = optarg; break;
		case 'M': mark = (int)strtol(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (!lspec || (!server_mode && !up))
		usage();
	if (up && parse_sockaddr(up, &upstream, &upstream_len)) {
		fprintf(stderr, "zconnect: bad upstream %s\n", up);
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	if (use_splice) {
		if (pipe2(pipefd, O_NONBLOCK | O_CLOEXEC))
			die("pipe2");
		int sz = fcntl(pipefd[1], F_SETPIPE_SZ, BUFSZ);
		pipe_cap = sz > 0 ? (size_t)sz : 65536;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1");
	int family;
	int lfd = listen_on(lspec, &family);
	struct epoll_event le = {.events = EPOLLIN, .data.u64 = 0};
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le);
	fprintf(stderr, "zconnect %s listening on %s\n", argv[1], lspec);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(epfd, evs, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int k = 0; k < n; k++) {
			uint64_t d = evs[k].data.u64;
			if (d == 0) {
				on_accept(lfd, family);
				continue;
			}
			struct conn *c = (struct conn *)(uintptr_t)(d & ~(uint64_t)1);
			on_event(c, (int)(d & 1), evs[k].events);
		}
		while (dead_list) {
			struct conn *c = dead_list;
			dead_list = c->next;
			free(c);
		}
	}
}
