/* ztdata - deterministic data streams for zring's integration tests (libc only).
 *
 * Both ends generate the same pseudo-random stream from a seed, so every byte that
 * crosses zring is checked without keeping a copy: byte i of stream(seed) is byte
 * i%8 (little endian) of splitmix64(seed + (i/8 + 1) * golden). test/integ/ztlib.py
 * has the same function in Python.
 *
 *   ztdata serve  --port P [--bind IP] [--name NAME] [--idle-timeout S]
 *   ztdata client --connect IP:PORT --op OP [--bytes N] [--seed S] [--arg N]
 *                 [--count N] [--parallel N] [--timeout S] [--rst-after N]
 *
 * Protocol: the client sends one line "ZTD1 <op> <seed> <bytes> <arg>\n"; the server
 * answers "HELLO <name> <conn-no>\n" at once, then:
 *   hello     nothing more; server half-closes and waits for the client's EOF
 *   up        client sends <bytes> of stream(seed) and half-closes; the server
 *             verifies them and answers "OK <n>\n" or "BAD <offset> ...\n"
 *   down      server sends <bytes> of stream(seed) (at <arg> bytes/s if arg > 0),
 *             half-closes; the client verifies them and expects EOF right after
 *   echo      server echoes until EOF, then half-closes; the client sends <bytes>
 *             of stream(seed) while verifying what comes back; arg > 0: the
 *             server waits <arg> us before echoing each piece (a slow upstream)
 *   rst       server sends <bytes> of stream(seed), then closes with RST
 *             (SO_LINGER 0); the client expects ECONNRESET
 *   sink      server reads until EOF or error and logs which (the client-RST test:
 *             client --rst-after N sends N bytes and closes with RST)
 *   stall     server reads nothing for <arg> ms, then reads to EOF (a slow reader:
 *             the client's sends must back up, not pile up in a proxy)
 *   srvfirst  server sends <bytes> of stream(seed) and half-closes first, then
 *             reads <arg> bytes of stream(seed+1) up to the client's EOF and logs
 *             the result (server-first half-close)
 * The server logs one line per connection:
 *   CONN no=<n> peer=<ip:port> op=<op> seed=<s> result=<ok|eof|reset|bad|error|timeout>
 *        in=<bytes> out=<bytes> detail=<text>
 * The client prints one RESULT line per connection and a SUMMARY line; exit 0 iff
 * every connection ended as the op expects.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

/* ---- the stream ---------------------------------------------------------------- */

static inline uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t word_at(uint64_t seed, uint64_t k)
{
	return mix(seed + (k + 1) * 0x9e3779b97f4a7c15ULL);
}

/* Fill buf with bytes [off, off+n) of stream(seed). */
static void stream_fill(uint64_t seed, uint64_t off, unsigned char *buf, size_t n)
{
	size_t i = 0;
	while (i < n && ((off + i) & 7)) {
		uint64_t w = word_at(seed, (off + i) >> 3);
		buf[i] = (unsigned char)(w >> (8 * ((off + i) & 7)));
		i++;
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w = word_at(seed, (off + i) >> 3);
		memcpy(buf + i, &w, 8); /* x86_64 is little endian; ztlib.py agrees */
	}
	for (; i < n; i++) {
		uint64_t w = word_at(seed, (off + i) >> 3);
		buf[i] = (unsigned char)(w >> (8 * ((off + i) & 7)));
	}
}

/* Compare buf with bytes [off, off+n); returns the index of the first mismatch or -1. */
static ssize_t stream_check(uint64_t seed, uint64_t off, const unsigned char *buf, size_t n,
			    unsigned char *scratch)
{
	stream_fill(seed, off, scratch, n);
	if (memcmp(buf, scratch, n) == 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != scratch[i])
			return (ssize_t)i;
	return -1;
}

/* ---- small helpers --------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void outf(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	pthread_mutex_lock(&out_lock);
	fwrite(line, 1, (size_t)n, stdout);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static const char *errname(int e)
{
	switch (e) {
	case ECONNRESET: return "ECONNRESET";
	case EPIPE: return "EPIPE";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case ECONNABORTED: return "ECONNABORTED";
	case EAGAIN: return "EAGAIN";
	default: return strerror(e);
	}
}

/* A connection end with a deadline for every wait (the client's) or socket
 * timeouts (the server's, where deadline is 0). */
struct io {
	int fd;
	double deadline; /* 0: none, rely on SO_RCVTIMEO/SO_SNDTIMEO */
	int err;	 /* errno of the failure, ETIMEDOUT for a deadline */
};

static int wait_fd(struct io *io, short ev)
{
	if (!io->deadline)
		return 0;
	for (;;) {
		double left = io->deadline - now_s();
		if (left <= 0) {
			io->err = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {.fd = io->fd, .events = ev};
		int r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR) {
			io->err = errno;
			return -1;
		}
	}
}

/* recv up to n bytes: >0 bytes, 0 EOF, -1 error (io->err). */
static ssize_t io_recv(struct io *io, void *buf, size_t n)
{
	for (;;) {
		if (wait_fd(io, POLLIN))
			return -1;
		ssize_t r = recv(io->fd, buf, n, io->deadline ? MSG_DONTWAIT : 0);
		if (r >= 0)
			return r;
		if (errno == EINTR || (io->deadline && errno == EAGAIN))
			continue;
		io->err = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
		return -1;
	}
}

static int io_send_all(struct io *io, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		if (wait_fd(io, POLLOUT))
			return -1;
		ssize_t r = send(io->fd, p, n, MSG_NOSIGNAL | (io->deadline ? MSG_DONTWAIT : 0));
		if (r < 0) {
			if (errno == EINTR || (io->deadline && errno == EAGAIN))
				continue;
			io->err = (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Read one '\n'-terminated line (byte by byte: lines are tiny). */
static int io_line(struct io *io, char *line, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = io_recv(io, line + n, 1);
		if (r <= 0) {
			if (r == 0)
				io->err = 0;
			line[n] = 0;
			return -1;
		}
		if (line[n] == '\n') {
			line[n] = 0;
			return 0;
		}
		n++;
	}
	line[n] = 0;
	io->err = EMSGSIZE;
	return -1;
}

static void set_linger0(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

static void peer_str(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	out[0] = 0;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(out, cap, "%s:%u", ip, port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
		snprintf(out, cap, "[%s]:%u", ip, port);
	}
}

/* ---- server --------------------------------------------------------------------- */

static const char *srv_name = "server";
static int srv_idle_timeout = 60;
static atomic_ulong srv_conn_no;

struct srv_conn {
	int fd;
	unsigned long no;
};

/* Read until EOF (bounded by the socket timeout), counting bytes. */
static int drain_to_eof(struct io *io, unsigned char *buf, uint64_t *in)
{
	for (;;) {
		ssize_t r = io_recv(io, buf, CHUNK);
		if (r == 0)
			return 0;
		if (r < 0)
			return -1;
		*in += (uint64_t)r;
	}
}

static void *srv_thread(void *arg)
{
	struct srv_conn *sc = arg;
	int fd = sc->fd;
	unsigned long no = sc->no;
	free(sc);

	struct timeval tv = {.tv_sec = srv_idle_timeout};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct io io = {.fd = fd};
	char peer[80], line[256], op[16] = "?", detail[160] = "";
	const char *result = "error";
	uint64_t seed = 0, bytes = 0, xarg = 0, in = 0, out = 0;
	unsigned char *buf = malloc(CHUNK), *scratch = malloc(CHUNK);
	peer_str(fd, peer, sizeof(peer));
	if (!buf || !scratch) {
		snprintf(detail, sizeof(detail), "out of memory");
		goto done;
	}

	if (io_line(&io, line, sizeof(line))) {
		snprintf(detail, sizeof(detail), "no header: %s", io.err ? errname(io.err) : "EOF");
		result = io.err == ECONNRESET ? "reset" : io.err ? "error" : "eof";
		goto done;
	}
	if (sscanf(line, "ZTD1 %15s %" SCNu64 " %" SCNu64 " %" SCNu64, op, &seed, &bytes, &xarg) != 4) {
		snprintf(detail, sizeof(detail), "bad header");
		goto done;
	}
	char hello[128];
	int hn = snprintf(hello, sizeof(hello), "HELLO %s %lu\n", srv_name, no);
	if (io_send_all(&io, hello, (size_t)hn)) {
		snprintf(detail, sizeof(detail), "sending hello: %s", errname(io.err));
		goto fail_io;
	}

	if (!strcmp(op, "hello")) {
		shutdown(fd, SHUT_WR);
		if (drain_to_eof(&io, buf, &in))
			goto fail_io;
		result = "ok";
	} else if (!strcmp(op, "up")) {
		uint64_t off = 0;
		ssize_t bad = -1;
		while (off < bytes) {
			size_t want = bytes - off < CHUNK ? (size_t)(bytes - off) : CHUNK;
			ssize_t r = io_recv(&io, buf, want);
			if (r == 0) {
				snprintf(detail, sizeof(detail), "EOF after %" PRIu64 " of %" PRIu64, off, bytes);
				result = "eof";
				in = off;
				goto done;
			}
			if (r < 0) {
				in = off;
				goto fail_io;
			}
			if ((bad = stream_check(seed, off, buf, (size_t)r, scratch)) >= 0) {
				off += (uint64_t)bad;
				break;
			}
			off += (uint64_t)r;
		}
		in = off;
		char reply[128];
		int rn;
		if (bad >= 0) {
			rn = snprintf(reply, sizeof(reply), "BAD %" PRIu64 "\n", off);
			snprintf(detail, sizeof(detail), "mismatch at offset %" PRIu64, off);
			result = "bad";
		} else {
			rn = snprintf(reply, sizeof(reply), "OK %" PRIu64 "\n", off);
			result = "ok";
		}
		if (io_send_all(&io, reply, (size_t)rn))
			goto fail_io;
		shutdown(fd, SHUT_WR);
		if (bad < 0) {
			uint64_t extra = 0;
			if (drain_to_eof(&io, buf, &extra))
				goto fail_io;
			if (extra) {
				snprintf(detail, sizeof(detail), "%" PRIu64 " bytes beyond the stream", extra);
				result = "bad";
			}
			in += extra;
		}
	} else if (!strcmp(op, "down") || !strcmp(op, "rst") || !strcmp(op, "srvfirst")) {
		double t0 = now_s();
		/* paced sends go out in small pieces so that the pace is smooth */
		size_t piece = xarg ? (xarg / 20 < CHUNK ? (xarg / 20 ? xarg / 20 : 1) : CHUNK) : CHUNK;
		while (out < bytes) {
			size_t n = bytes - out < piece ? (size_t)(bytes - out) : piece;
			stream_fill(seed, out, buf, n);
			if (io_send_all(&io, buf, n))
				goto fail_io;
			out += n;
			if (xarg && strcmp(op, "down") == 0) {
				double due = t0 + (double)out / (double)xarg;
				double wait = due - now_s();
				if (wait > 0) {
					struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
					nanosleep(&ts, NULL);
				}
			}
		}
		if (!strcmp(op, "rst")) {
			set_linger0(fd);
			result = "ok";
			snprintf(detail, sizeof(detail), "closed with RST");
		} else if (!strcmp(op, "down")) {
			shutdown(fd, SHUT_WR);
			if (drain_to_eof(&io, buf, &in))
				goto fail_io;
			result = "ok";
		} else { /* srvfirst: we closed our side first; now take the client's data */
			shutdown(fd, SHUT_WR);
			uint64_t off = 0;
			for (;;) {
				ssize_t r = io_recv(&io, buf, CHUNK);
				if (r == 0)
					break;
				if (r < 0)
					goto fail_io;
				ssize_t bad = stream_check(seed + 1, off, buf, (size_t)r, scratch);
				if (bad >= 0) {
					snprintf(detail, sizeof(detail), "mismatch at offset %" PRIu64,
						 off + (uint64_t)bad);
					result = "bad";
					in = off + (uint64_t)r;
					goto done;
				}
				off += (uint64_t)r;
			}
			in = off;
			if (off == xarg) {
				result = "ok";
				snprintf(detail, sizeof(detail), "received %" PRIu64 " after our FIN", off);
			} else {
				result = "bad";
				snprintf(detail, sizeof(detail), "received %" PRIu64 " of %" PRIu64
					 " after our FIN", off, xarg);
			}
		}
	} else if (!strcmp(op, "echo")) {
		for (;;) {
			ssize_t r = io_recv(&io, buf, CHUNK);
			if (r == 0)
				break;
			if (r < 0)
				goto fail_io;
			in += (uint64_t)r;
			if (xarg)
				usleep(xarg < 1000000 ? (useconds_t)xarg : 1000000);
			if (io_send_all(&io, buf, (size_t)r))
				goto fail_io;
			out += (uint64_t)r;
		}
		shutdown(fd, SHUT_WR);
		result = "ok";
	} else if (!strcmp(op, "sink") || !strcmp(op, "stall")) {
		if (!strcmp(op, "stall") && xarg) {
			uint64_t ms = xarg < (uint64_t)srv_idle_timeout * 1000 ? xarg
									: (uint64_t)srv_idle_timeout * 1000;
			struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		if (drain_to_eof(&io, buf, &in))
			goto fail_io;
		result = "eof";
	} else {
		snprintf(detail, sizeof(detail), "unknown op");
	}
	goto done;

fail_io:
	result = io.err == ECONNRESET ? "reset" : io.err == ETIMEDOUT ? "timeout" : "error";
	if (!detail[0])
		snprintf(detail, sizeof(detail), "%s", errname(io.err));
done:
	outf("CONN no=%lu peer=%s op=%s seed=%" PRIu64 " result=%s in=%" PRIu64 " out=%" PRIu64
	     " detail=%s\n", no, peer, op, seed, result, in, out, detail[0] ? detail : "-");
	free(buf);
	free(scratch);
	close(fd);
	return NULL;
}

static int serve(const char *bind_ip, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, bind_ip, &a.sin_addr) != 1) {
		fprintf(stderr, "ztdata: bad bind address %s\n", bind_ip);
		return 2;
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0) {
		fprintf(stderr, "ztdata: listen %s:%d: %s\n", bind_ip, port, strerror(errno));
		return 1;
	}
	outf("LISTEN %s:%d name=%s\n", bind_ip, port, srv_name);
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
				if (errno == EMFILE || errno == ENFILE)
					usleep(10000);
				continue;
			}
			perror("accept");
			return 1;
		}
		struct srv_conn *sc = malloc(sizeof(*sc));
		if (!sc) {
			close(c);
			continue;
		}
		sc->fd = c;
		sc->no = atomic_fetch_add(&srv_conn_no, 1) + 1;
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 256 * 1024);
		if (pthread_create(&t, &at, srv_thread, sc)) {
			close(c);
			free(sc);
		}
		pthread_attr_destroy(&at);
	}
}

/* ---- client --------------------------------------------------------------------- */

struct copts {
	struct sockaddr_in addr;
	char op[16];
	uint64_t bytes, seed, arg;
	unsigned count, parallel;
	double timeout;
	long long rst_after; /* sink: send this many bytes, then RST */
	atomic_uint next, ok, fail;
	pthread_mutex_t lock;
	/* server name -> connections */
	char names[64][64];
	unsigned name_count[64];
	unsigned n_names;
};

static void note_server(struct copts *o, const char *name)
{
	pthread_mutex_lock(&o->lock);
	unsigned i;
	for (i = 0; i < o->n_names; i++)
		if (!strcmp(o->names[i], name))
			break;
	if (i == o->n_names && o->n_names < 64) {
		snprintf(o->names[i], sizeof(o->names[i]), "%s", name);
		o->n_names++;
	}
	if (i < 64)
		o->name_count[i]++;
	pthread_mutex_unlock(&o->lock);
}

/* One connection. Returns true if it ended as the op expects; fills status/detail. */
static bool client_one(struct copts *o, unsigned idx, char *server, size_t scap, char *detail,
		       size_t dcap, uint64_t *in, uint64_t *out)
{
	uint64_t seed = o->seed + idx;
	struct io io = {.fd = -1, .deadline = now_s() + o->timeout};
	unsigned char *buf = malloc(CHUNK), *scratch = malloc(CHUNK), *obuf = malloc(CHUNK);
	bool ok = false;
	*in = *out = 0;
	snprintf(server, scap, "-");
	if (!buf || !scratch || !obuf) {
		snprintf(detail, dcap, "out of memory");
		goto out;
	}
	io.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (io.fd < 0) {
		snprintf(detail, dcap, "socket: %s", strerror(errno));
		goto out;
	}
	if (connect(io.fd, (struct sockaddr *)&o->addr, sizeof(o->addr)) < 0 && errno != EINPROGRESS) {
		snprintf(detail, dcap, "connect: %s", errname(errno));
		goto out;
	}
	if (wait_fd(&io, POLLOUT)) {
		snprintf(detail, dcap, "connect: %s", errname(io.err));
		goto out;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	getsockopt(io.fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr) {
		snprintf(detail, dcap, "connect: %s", errname(soerr));
		goto out;
	}
	char line[256];
	int ln = snprintf(line, sizeof(line), "ZTD1 %s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", o->op, seed,
			  o->bytes, o->arg);
	if (io_send_all(&io, line, (size_t)ln)) {
		snprintf(detail, dcap, "sending header: %s", errname(io.err));
		goto out;
	}
	if (io_line(&io, line, sizeof(line))) {
		snprintf(detail, dcap, "no HELLO: %s", io.err ? errname(io.err) : "EOF");
		goto out;
	}
	char name[64] = "?";
	if (sscanf(line, "HELLO %63s", name) != 1) {
		snprintf(detail, dcap, "bad HELLO line");
		goto out;
	}
	snprintf(server, scap, "%s", name);

	if (!strcmp(o->op, "hello")) {
		ssize_t r = io_recv(&io, buf, CHUNK);
		if (r != 0) {
			snprintf(detail, dcap, "expected EOF after HELLO: %s",
				 r > 0 ? "data" : errname(io.err));
			goto out;
		}
		ok = true;
	} else if (!strcmp(o->op, "up")) {
		while (*out < o->bytes) {
			size_t n = o->bytes - *out < CHUNK ? (size_t)(o->bytes - *out) : CHUNK;
			stream_fill(seed, *out, obuf, n);
			if (io_send_all(&io, obuf, n)) {
				snprintf(detail, dcap, "send at %" PRIu64 ": %s", *out, errname(io.err));
				goto out;
			}
			*out += n;
		}
		shutdown(io.fd, SHUT_WR); /* the half-close: the reply must still arrive */
		if (io_line(&io, line, sizeof(line))) {
			snprintf(detail, dcap, "no reply after our FIN: %s",
				 io.err ? errname(io.err) : "EOF");
			goto out;
		}
		if (strncmp(line, "OK ", 3) != 0) {
			snprintf(detail, dcap, "server says: %.120s", line);
			goto out;
		}
		ssize_t r = io_recv(&io, buf, CHUNK);
		if (r != 0) {
			snprintf(detail, dcap, "expected EOF after reply: %s",
				 r > 0 ? "data" : errname(io.err));
			goto out;
		}
		ok = true;
	} else if (!strcmp(o->op, "down") || !strcmp(o->op, "rst") || !strcmp(o->op, "srvfirst")) {
		bool want_rst = !strcmp(o->op, "rst");
		for (;;) {
			ssize_t r = io_recv(&io, buf, CHUNK);
			if (r < 0) {
				if (want_rst && io.err == ECONNRESET) {
					snprintf(detail, dcap, "ECONNRESET after %" PRIu64, *in);
					ok = true;
				} else
					snprintf(detail, dcap, "recv after %" PRIu64 ": %s", *in,
						 errname(io.err));
				goto out;
			}
			if (r == 0)
				break;
			ssize_t bad = stream_check(seed, *in, buf, (size_t)r, scratch);
			if (bad >= 0 || *in + (uint64_t)r > o->bytes) {
				snprintf(detail, dcap, "mismatch at offset %" PRIu64,
					 *in + (uint64_t)(bad >= 0 ? bad : (ssize_t)(o->bytes - *in)));
				goto out;
			}
			*in += (uint64_t)r;
		}
		if (want_rst) {
			snprintf(detail, dcap, "EOF after %" PRIu64 ", expected ECONNRESET", *in);
			goto out;
		}
		if (*in != o->bytes) {
			snprintf(detail, dcap, "EOF after %" PRIu64 " of %" PRIu64, *in, o->bytes);
			goto out;
		}
		if (!strcmp(o->op, "srvfirst")) {
			/* The server closed its side first; our side must still carry data. */
			while (*out < o->arg) {
				size_t n = o->arg - *out < CHUNK ? (size_t)(o->arg - *out) : CHUNK;
				stream_fill(seed + 1, *out, obuf, n);
				if (io_send_all(&io, obuf, n)) {
					snprintf(detail, dcap, "send after the server's FIN, at %" PRIu64
						 ": %s", *out, errname(io.err));
					goto out;
				}
				*out += n;
			}
			shutdown(io.fd, SHUT_WR);
			/* wait for the full close: recv keeps returning 0; poll for HUP */
			struct pollfd p = {.fd = io.fd, .events = POLLRDHUP};
			double left = io.deadline - now_s();
			if (left > 0)
				poll(&p, 1, (int)(left * 1000));
			snprintf(detail, dcap, "sent %" PRIu64 " after the server's FIN (check the server log)",
				 *out);
		}
		ok = true;
	} else if (!strcmp(o->op, "echo")) {
		/* write and read at once: the relay must not deadlock */
		bool wdone = false;
		while (*in < o->bytes || !wdone) {
			struct pollfd p = {.fd = io.fd, .events = POLLIN | (wdone ? 0 : POLLOUT)};
			double left = io.deadline - now_s();
			if (left <= 0) {
				snprintf(detail, dcap, "timeout (sent %" PRIu64 ", received %" PRIu64 ")",
					 *out, *in);
				goto out;
			}
			if (poll(&p, 1, (int)(left * 1000) + 1) < 0 && errno != EINTR) {
				snprintf(detail, dcap, "poll: %s", strerror(errno));
				goto out;
			}
			if (!wdone && (p.revents & POLLOUT)) {
				size_t n = o->bytes - *out < CHUNK ? (size_t)(o->bytes - *out) : CHUNK;
				stream_fill(seed, *out, obuf, n);
				ssize_t w = send(io.fd, obuf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (w < 0 && errno != EAGAIN && errno != EINTR) {
					snprintf(detail, dcap, "send at %" PRIu64 ": %s", *out, errname(errno));
					goto out;
				}
				if (w > 0)
					*out += (uint64_t)w;
				if (*out == o->bytes) {
					wdone = true;
					shutdown(io.fd, SHUT_WR);
				}
			}
			if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
				ssize_t r = recv(io.fd, buf, CHUNK, MSG_DONTWAIT);
				if (r < 0 && errno != EAGAIN && errno != EINTR) {
					snprintf(detail, dcap, "recv after %" PRIu64 ": %s", *in, errname(errno));
					goto out;
				}
				if (r == 0) {
					snprintf(detail, dcap, "EOF after %" PRIu64 " of %" PRIu64, *in, o->bytes);
					goto out;
				}
				if (r > 0) {
					ssize_t bad = stream_check(seed, *in, buf, (size_t)r, scratch);
					if (bad >= 0 || *in + (uint64_t)r > o->bytes) {
						snprintf(detail, dcap, "mismatch at offset %" PRIu64,
							 *in + (uint64_t)(bad >= 0 ? bad : 0));
						goto out;
					}
					*in += (uint64_t)r;
				}
			}
		}
		ssize_t r = io_recv(&io, buf, CHUNK);
		if (r != 0) {
			snprintf(detail, dcap, "expected EOF after the echo: %s",
				 r > 0 ? "data" : errname(io.err));
			goto out;
		}
		ok = true;
	} else if (!strcmp(o->op, "sink")) {
		uint64_t limit = o->rst_after >= 0 ? (uint64_t)o->rst_after : o->bytes;
		while (*out < limit) {
			size_t n = limit - *out < CHUNK ? (size_t)(limit - *out) : CHUNK;
			stream_fill(seed, *out, obuf, n);
			if (io_send_all(&io, obuf, n)) {
				snprintf(detail, dcap, "send at %" PRIu64 ": %s", *out, errname(io.err));
				goto out;
			}
			*out += n;
		}
		if (o->rst_after >= 0) {
			set_linger0(io.fd);
			snprintf(detail, dcap, "closed with RST after %" PRIu64, *out);
		} else {
			shutdown(io.fd, SHUT_WR);
			ssize_t r = io_recv(&io, buf, CHUNK);
			if (r != 0) {
				snprintf(detail, dcap, "expected EOF: %s", r > 0 ? "data" : errname(io.err));
				goto out;
			}
		}
		ok = true;
	} else {
		snprintf(detail, dcap, "unknown op %s", o->op);
	}
out:
	if (io.fd >= 0)
		close(io.fd);
	free(buf);
	free(scratch);
	free(obuf);
	return ok;
}

static void *client_worker(void *arg)
{
	struct copts *o = arg;
	for (;;) {
		unsigned idx = atomic_fetch_add(&o->next, 1);
		if (idx >= o->count)
			return NULL;
		char server[64], detail[200] = "";
		uint64_t in, out;
		double t0 = now_s();
		bool ok = client_one(o, idx, server, sizeof(server), detail, sizeof(detail), &in, &out);
		double ms = (now_s() - t0) * 1000;
		if (ok) {
			atomic_fetch_add(&o->ok, 1);
			if (strcmp(server, "-"))
				note_server(o, server);
		} else
			atomic_fetch_add(&o->fail, 1);
		outf("RESULT i=%u server=%s op=%s status=%s in=%" PRIu64 " out=%" PRIu64 " ms=%.1f"
		     " detail=%s\n", idx, server, o->op, ok ? "ok" : "fail", in, out, ms,
		     detail[0] ? detail : "-");
	}
}

static uint64_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	uint64_t m = 1;
	if (*end == 'k' || *end == 'K')
		m = 1024;
	else if (*end == 'm' || *end == 'M')
		m = 1024 * 1024;
	else if (*end == 'g' || *end == 'G')
		m = 1024ULL * 1024 * 1024;
	return (uint64_t)(v * (double)m);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: ztdata serve --port P [--bind IP] [--name NAME] [--idle-timeout S]\n"
		"       ztdata client --connect IP:PORT --op hello|up|down|echo|rst|sink|srvfirst\n"
		"              [--bytes N[k|m|g]] [--seed S] [--arg N] [--count N] [--parallel N]\n"
		"              [--timeout S] [--rst-after N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[1], "serve")) {
		const char *bind_ip = "0.0.0.0";
		int port = -1;
		for (int i = 2; i < argc; i++) {
			if (i + 1 >= argc)
				usage();
			if (!strcmp(argv[i], "--port"))
				port = atoi(argv[++i]);
			else if (!strcmp(argv[i], "--bind"))
				bind_ip = argv[++i];
			else if (!strcmp(argv[i], "--name"))
				srv_name = argv[++i];
			else if (!strcmp(argv[i], "--idle-timeout"))
				srv_idle_timeout = atoi(argv[++i]);
			else
				usage();
		}
		if (port <= 0 || port > 65535)
			usage();
		return serve(bind_ip, port);
	}
	if (strcmp(argv[1], "client"))
		usage();

	static struct copts o = {.count = 1, .parallel = 1, .timeout = 60, .rst_after = -1,
				 .lock = PTHREAD_MUTEX_INITIALIZER};
	const char *target = NULL;
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i], *k = argv[i - 1];
		if (!strcmp(k, "--connect"))
			target = v;
		else if (!strcmp(k, "--op"))
			snprintf(o.op, sizeof(o.op), "%s", v);
		else if (!strcmp(k, "--bytes"))
			o.bytes = parse_size(v);
		else if (!strcmp(k, "--seed"))
			o.seed = strtoull(v, NULL, 0);
		else if (!strcmp(k, "--arg"))
			o.arg = parse_size(v);
		else if (!strcmp(k, "--count"))
			o.count = (unsigned)atoi(v);
		else if (!strcmp(k, "--parallel"))
			o.parallel = (unsigned)atoi(v);
		else if (!strcmp(k, "--timeout"))
			o.timeout = atof(v);
		else if (!strcmp(k, "--rst-after"))
			o.rst_after = (long long)parse_size(v);
		else
			usage();
	}
	if (!target || !o.op[0] || !o.count || !o.parallel || o.timeout <= 0)
		usage();
	char host[64];
	const char *colon = strrchr(target, ':');
	if (!colon || (size_t)(colon - target) >= sizeof(host))
		usage();
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = 0;
	o.addr.sin_family = AF_INET;
	o.addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &o.addr.sin_addr) != 1) {
		fprintf(stderr, "ztdata: bad address %s\n", target);
		return 2;
	}
	if (o.parallel > o.count)
		o.parallel = o.count;
	if (o.parallel > 512)
		o.parallel = 512;
	pthread_t th[512];
	double t0 = now_s();
	unsigned started = 0;
	for (unsigned i = 0; i < o.parallel; i++) {
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 256 * 1024);
		if (pthread_create(&th[i], &at, client_worker, &o) == 0)
			started++;
		pthread_attr_destroy(&at);
	}
	if (!started)
		client_worker(&o);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	char servers[1024] = "";
	size_t sl = 0;
	for (unsigned i = 0; i < o.n_names && sl < sizeof(servers) - 80; i++)
		sl += (size_t)snprintf(servers + sl, sizeof(servers) - sl, "%s%s:%u", i ? "," : "",
				       o.names[i], o.name_count[i]);
	outf("SUMMARY ok=%u fail=%u seconds=%.3f servers=%s\n", atomic_load(&o.ok),
	     atomic_load(&o.fail), now_s() - t0, sl ? servers : "-");
	return atomic_load(&o.fail) ? 1 : 0;
}
