/* grpc.c - non-blocking gRPC client: TCP -> wolfSSL (or h2c) -> nghttp2.
 *
 * Bytes out: nghttp2_session_mem_send() -> wolfSSL_write() -> send_cb()
 *            appends the records to ch->out (never "would block") -> send()
 *            from ch->out as far as the socket takes. h2c: frames straight
 *            into ch->out. nghttp2 is asked for more only while less than
 *            OUT_HIGH bytes wait, so a big message does not pile up here.
 * Bytes in:  recv_cb() reads the socket for wolfSSL -> wolfSSL_read() ->
 *            nghttp2_session_mem_recv(); h2c: recv() -> mem_recv. Reads go on
 *            until the socket (and wolfSSL) has nothing left, so poll() never
 *            sleeps on bytes wolfSSL already holds.
 * Messages: each stream reassembles its gRPC frames (5-byte prefix) and
 *            hands whole messages to on_message; data counts as consumed
 *            when delivered (nghttp2's automatic WINDOW_UPDATE), so the
 *            windows only bound what is in flight.
 *
 * Re-entrancy: nghttp2 callbacks fire inside mem_recv/mem_send, which run
 * only inside zt_grpc_io (depth > 0). Channel-level events (ready, GOAWAY,
 * fatal failure) are recorded there and reported by settle() at the end of
 * zt_grpc_io, where the session may be torn down. A free from a callback
 * only marks the channel (quiet: no more callbacks) until zt_grpc_io unwinds.
 */
#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h> /* DOMAIN_NAME_MISMATCH */

#include <nghttp2/nghttp2.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strfmt.h"
#include "engine/grpc.h"

#define TARGET "grpc"
#define OUT_HIGH (256u << 10)          /* stop asking nghttp2 for frames above this */
#define STREAM_WINDOW (8u << 20)       /* per-stream receive window */
#define CONN_WINDOW (32u << 20)        /* connection receive window */
#define MAX_HEADER_LIST (256u << 10)   /* response headers/trailers we accept */
#define MAX_MD 64u                     /* response headers kept for on_headers */
#define ERRMSG 256

enum chan_state {
	ST_TCP,       /* non-blocking connect in progress */
	ST_TLS,       /* TLS handshake */
	ST_READY,     /* HTTP/2 */
	ST_DRAINING,  /* GOAWAY received */
	ST_DEAD,
};

struct sendq {
	struct sendq *next;
	size_t len, off;
	uint8_t data[];
};

struct zt_grpc_stream {
	struct zt_grpc_stream *next, *prev;
	struct zt_grpc *ch;
	int32_t id;
	const struct zt_grpc_stream_cbs *cbs;
	void *sud;
	struct sendq *q_head, *q_tail;
	bool end_queued; /* half-close asked for */
	bool done;       /* on_close fired or cancelled: no more callbacks */
	bool validated;  /* response headers were fine */
	/* response */
	int http_status;
	char *content_type;
	int grpc_status; /* -1: none seen */
	char *grpc_message;
	struct zt_grpc_md *md;
	size_t n_md;
	int local_status; /* -1, or our verdict (the stream was reset) */
	char local_msg[ERRMSG];
	/* gRPC framing of the response */
	uint8_t hdr[5];
	uint8_t hdr_len;
	uint32_t msg_len;
	uint8_t *msg;
	size_t msg_have, msg_cap;
};

struct zt_grpc {
	const struct zt_grpc_cbs *cbs;
	void *ud;
	enum chan_state state;
	bool tls;
	int fd;
	char *host, *port, *authority, *server_name, *scheme;
	bool name_is_ip;
	struct addrinfo *ai_list, *ai_cur;
	char conn_err[ERRMSG]; /* why the last address failed */

	WOLFSSL_CTX *ctx;
	WOLFSSL *ssl;
	int sock_errno; /* recv/send error seen by a wolfSSL callback */
	bool sock_eof;

	nghttp2_session *h2;
	char h2_err[ERRMSG]; /* nghttp2's last error text */

	uint8_t *out;
	size_t out_off, out_len, out_cap;

	uint64_t now;
	uint64_t connect_deadline;
	uint32_t keepalive_ms, ping_timeout_ms;
	uint64_t next_ping, ping_sent;
	bool ping_out;
	size_t max_message;

	struct zt_grpc_stream streams; /* sentinel */

	unsigned depth;
	bool quiet, free_pending;
	bool ready_pending, goaway_pending;
	char goaway_msg[ERRMSG];
	bool failing;
	int err;
	char errmsg[ERRMSG];

	uint8_t rbuf[16384];
};

/* ---- small helpers ----------------------------------------------------- */

static const char *const code_names[] = {
	"OK",		 "CANCELLED",	 "UNKNOWN",	 "INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL",	 "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *zt_grpc_code_name(int code)
{
	if (code < 0 || code >= (int)(sizeof(code_names) / sizeof(code_names[0])))
		return "UNKNOWN";
	return code_names[code];
}

/* Record the channel's fatal error (the first one wins); settle() reports it. */
__attribute__((format(printf, 3, 4))) static void fail(struct zt_grpc *ch, int err,
						       const char *fmt, ...)
{
	if (ch->failing || ch->state == ST_DEAD)
		return;
	ch->failing = true;
	ch->err = err < 0 ? err : -EPROTO;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ch->errmsg, sizeof(ch->errmsg), fmt, ap);
	va_end(ap);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* grpc-message is percent-encoded (grpc/doc/PROTOCOL-HTTP2.md); a bad
 * escape is kept as it is. Returns a malloc'd string or NULL. */
static char *percent_decode(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1), *o = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int h, l;
		if (p[i] == '%' && i + 2 < n && (h = hexval((char)p[i + 1])) >= 0 && (l = hexval((char)p[i + 2])) >= 0) {
			*o++ = (char)(h << 4 | l);
			i += 2;
		} else {
			*o++ = (char)p[i];
		}
	}
	*o = '\0';
	return s;
}

/* HTTP status of a non-gRPC answer -> gRPC code (grpc/doc/http-grpc-status-mapping.md). */
static int http_to_grpc(int status)
{
	switch (status) {
	case 400:
		return ZT_GRPC_INTERNAL;
	case 401:
		return ZT_GRPC_UNAUTHENTICATED;
	case 403:
		return ZT_GRPC_PERMISSION_DENIED;
	case 404:
		return ZT_GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return ZT_GRPC_UNAVAILABLE;
	default:
		return ZT_GRPC_UNKNOWN;
	}
}

static int rst_to_grpc(uint32_t code)
{
	switch (code) {
	case NGHTTP2_REFUSED_STREAM:
		return ZT_GRPC_UNAVAILABLE;
	case NGHTTP2_CANCEL:
		return ZT_GRPC_CANCELLED;
	case NGHTTP2_ENHANCE_YOUR_CALM:
		return ZT_GRPC_RESOURCE_EXHAUSTED;
	case NGHTTP2_INADEQUATE_SECURITY:
		return ZT_GRPC_PERMISSION_DENIED;
	default:
		return ZT_GRPC_INTERNAL;
	}
}

static bool is_ip_literal(const char *s)
{
	struct in6_addr a;
	return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

/* ---- output queue ------------------------------------------------------ */

static size_t out_pending(const struct zt_grpc *ch)
{
	return ch->out_len - ch->out_off;
}

static int out_append(struct zt_grpc *ch, const uint8_t *p, size_t n)
{
	if (ch->out_off && ch->out_off == ch->out_len)
		ch->out_off = ch->out_len = 0;
	if (ch->out_len + n > ch->out_cap) {
		if (ch->out_off) { /* compact first */
			memmove(ch->out, ch->out + ch->out_off, out_pending(ch));
			ch->out_len -= ch->out_off;
			ch->out_off = 0;
		}
		if (ch->out_len + n > ch->out_cap) {
			size_t cap = ch->out_cap ? ch->out_cap : 65536;
			while (cap < ch->out_len + n)
				cap *= 2;
			uint8_t *b = realloc(ch->out, cap);
			if (!b)
				return -ENOMEM;
			ch->out = b;
			ch->out_cap = cap;
		}
	}
	memcpy(ch->out + ch->out_len, p, n);
	ch->out_len += n;
	return 0;
}

/* Send what is queued until the socket stops taking it. */
static void flush(struct zt_grpc *ch)
{
	while (out_pending(ch) && !ch->failing) {
		ssize_t n = send(ch->fd, ch->out + ch->out_off, out_pending(ch), MSG_NOSIGNAL);
		if (n > 0) {
			ch->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		int e = n < 0 ? errno : EPIPE;
		fail(ch, -e, "send to %s:%s: %s", ch->host, ch->port, strerror(e));
	}
	if (!out_pending(ch))
		ch->out_off = ch->out_len = 0;
}

/* ---- wolfSSL I/O callbacks --------------------------------------------- */

static int tls_recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct zt_grpc *ch = ctx;
	(void)ssl;
	for (;;) {
		ssize_t n = recv(ch->fd, buf, (size_t)sz, 0);
		if (n > 0)
			return (int)n;
		if (n == 0) {
			ch->sock_eof = true;
			return WOLFSSL_CBIO_ERR_CONN_CLOSE;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return WOLFSSL_CBIO_ERR_WANT_READ;
		ch->sock_errno = errno;
		return errno == ECONNRESET ? WOLFSSL_CBIO_ERR_CONN_RST : WOLFSSL_CBIO_ERR_GENERAL;
	}
}

/* Records go to our queue: wolfSSL never sees a socket that would block. */
static int tls_send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct zt_grpc *ch = ctx;
	(void)ssl;
	if (out_append(ch, (const uint8_t *)buf, (size_t)sz)) {
		ch->sock_errno = ENOMEM;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	return sz;
}

/* wolfSSL's verify result: OpenSSL's X509_V_ERR numbers (which its
 * X509_verify_cert_error_string() mostly does not name) or its own errors. */
static const char *verify_reason(long v)
{
	switch (v) {
	case 2:  /* X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT */
	case 20: /* X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY */
	case 21: /* X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE */
		return "the server's certificate does not chain to the configured roots";
	case 9:
		return "certificate not yet valid";
	case 10:
		return "certificate expired";
	case 18:
	case 19:
		return "self-signed certificate not among the roots";
	case 62:
	case DOMAIN_NAME_MISMATCH:
		return "the certificate does not name the server";
	default:
		return v < 0 ? "rejected by wolfSSL" : wolfSSL_X509_verify_cert_error_string(v);
	}
}

static void tls_fail(struct zt_grpc *ch, int e, const char *when)
{
	char buf[WOLFSSL_MAX_ERROR_SZ];
	if (ch->sock_eof) {
		fail(ch, -ECONNRESET, "%s:%s closed the connection during TLS %s", ch->host,
		     ch->port, when);
		return;
	}
	if (ch->sock_errno) {
		fail(ch, -ch->sock_errno, "TLS %s with %s:%s: %s", when, ch->host, ch->port,
		     strerror(ch->sock_errno));
		return;
	}
	/* wolfSSL keeps its own (negative) error as the verify result */
	long v = wolfSSL_get_verify_result(ch->ssl);
	if (v == 0 && e == DOMAIN_NAME_MISMATCH)
		v = e;
	if (v != 0) {
		wolfSSL_ERR_error_string_n((unsigned long)(v < 0 ? v : e), buf, sizeof(buf));
		if (v < 0)
			fail(ch, -EPROTO,
			     "TLS %s with %s:%s failed: certificate verification failed: %s "
			     "(wolfSSL %ld: %s; server name %s)",
			     when, ch->host, ch->port, verify_reason(v), v, buf, ch->server_name);
		else
			fail(ch, -EPROTO,
			     "TLS %s with %s:%s failed: certificate verification failed: %s "
			     "(X509 error %ld, wolfSSL %d: %s; server name %s)",
			     when, ch->host, ch->port, verify_reason(v), v, e, buf, ch->server_name);
		return;
	}
	wolfSSL_ERR_error_string_n((unsigned long)e, buf, sizeof(buf));
	fail(ch, -EPROTO, "TLS %s with %s:%s failed: wolfSSL %d: %s", when, ch->host,
		     ch->port, e, buf);
}

/* ---- streams ----------------------------------------------------------- */

static void md_clear(struct zt_grpc_stream *st)
{
	for (size_t i = 0; i < st->n_md; i++) {
		free((char *)st->md[i].key);
		free((char *)st->md[i].value);
	}
	free(st->md);
	st->md = NULL;
	st->n_md = 0;
}

static void stream_unlink_free(struct zt_grpc_stream *st)
{
	st->prev->next = st->next;
	st->next->prev = st->prev;
	while (st->q_head) {
		struct sendq *q = st->q_head;
		st->q_head = q->next;
		free(q);
	}
	md_clear(st);
	free(st->content_type);
	free(st->grpc_message);
	free(st->msg);
	free(st);
}

static bool quiet(const struct zt_grpc_stream *st)
{
	return st->done || st->ch->quiet;
}

/* Fire on_close once. */
static void stream_close_cb(struct zt_grpc_stream *st, int status, const char *msg)
{
	if (quiet(st)) {
		st->done = true;
		return;
	}
	st->done = true;
	ZT_DEBUG(TARGET, "stream %d closed: %s %s", st->id, zt_grpc_code_name(status), msg);
	st->cbs->on_close(st->sud, status, msg);
}

/* We give up on the stream: reset it, remember why (reported when it closes). */
__attribute__((format(printf, 3, 4))) static void stream_fail(struct zt_grpc_stream *st,
							      int status, const char *fmt, ...)
{
	if (st->local_status >= 0 || st->done)
		return;
	st->local_status = status;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->local_msg, sizeof(st->local_msg), fmt, ap);
	va_end(ap);
	if (st->ch->h2)
		nghttp2_submit_rst_stream(st->ch->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
}

/* The stream ended (END_STREAM or reset with NO_ERROR): work out its status. */
static void stream_finish(struct zt_grpc_stream *st)
{
	char buf[ERRMSG];
	if (st->done)
		return;
	if (st->local_status >= 0) {
		stream_close_cb(st, st->local_status, st->local_msg);
	} else if (st->http_status == 0) {
		stream_close_cb(st, ZT_GRPC_INTERNAL, "stream ended without response headers");
	} else if (st->http_status != 200) {
		snprintf(buf, sizeof(buf), "HTTP status %d from the server%s%s", st->http_status,
			 st->grpc_message ? ": " : "", st->grpc_message ? st->grpc_message : "");
		stream_close_cb(st, http_to_grpc(st->http_status), buf);
	} else if (!st->content_type || strncmp(st->content_type, "application/grpc", 16) ||
		   (st->content_type[16] && st->content_type[16] != '+' &&
		    st->content_type[16] != ';')) {
		snprintf(buf, sizeof(buf), "response content-type is not application/grpc: %s",
			 st->content_type ? st->content_type : "(none)");
		stream_close_cb(st, ZT_GRPC_INTERNAL, buf);
	} else if (st->grpc_status < 0) {
		stream_close_cb(st, ZT_GRPC_INTERNAL,
				"server ended the stream without grpc-status");
	} else if (st->grpc_status == ZT_GRPC_OK && (st->hdr_len || st->msg_have)) {
		stream_close_cb(st, ZT_GRPC_INTERNAL, "stream ended inside a message");
	} else {
		stream_close_cb(st, st->grpc_status, st->grpc_message ? st->grpc_message : "");
	}
}

static void deliver(struct zt_grpc_stream *st, const uint8_t *p, size_t n)
{
	if (!quiet(st) && st->cbs->on_message)
		st->cbs->on_message(st->sud, p, n);
}

/* gRPC length-prefixed messages out of DATA payloads. */
static void stream_data(struct zt_grpc_stream *st, const uint8_t *p, size_t n)
{
	while (n && !quiet(st) && st->local_status < 0) {
		if (st->hdr_len < 5) {
			size_t k = 5u - st->hdr_len < n ? 5u - st->hdr_len : n;
			memcpy(st->hdr + st->hdr_len, p, k);
			st->hdr_len = (uint8_t)(st->hdr_len + k);
			p += k;
			n -= k;
			if (st->hdr_len < 5)
				return;
			uint32_t len = (uint32_t)st->hdr[1] << 24 | (uint32_t)st->hdr[2] << 16 |
				       (uint32_t)st->hdr[3] << 8 | st->hdr[4];
			if (st->hdr[0] != 0) {
				stream_fail(st, ZT_GRPC_INTERNAL,
					    st->hdr[0] == 1
						    ? "compressed message received (no compression was offered)"
						    : "bad message flags 0x%02x",
					    st->hdr[0]);
				return;
			}
			if (len > st->ch->max_message) {
				stream_fail(st, ZT_GRPC_RESOURCE_EXHAUSTED,
					    "received message larger than max (%u vs. %zu)", len,
					    st->ch->max_message);
				return;
			}
			st->msg_len = len;
			st->msg_have = 0;
			if (len == 0) {
				st->hdr_len = 0;
				deliver(st, (const uint8_t *)"", 0);
				continue;
			}
			if (n >= len) { /* whole message in this chunk: no copy */
				st->hdr_len = 0;
				p += len;
				n -= len;
				deliver(st, p - len, len);
				continue;
			}
		}
		size_t want = st->msg_len - st->msg_have;
		size_t k = want < n ? want : n;
		if (st->msg_have + k > st->msg_cap) {
			/* grow with what arrives, not with what the prefix claims */
			size_t cap = st->msg_cap ? st->msg_cap : 4096;
			while (cap < st->msg_have + k)
				cap *= 2;
			if (cap > st->msg_len)
				cap = st->msg_len;
			uint8_t *b = realloc(st->msg, cap);
			if (!b) {
				stream_fail(st, ZT_GRPC_RESOURCE_EXHAUSTED,
					    "out of memory for a %u-byte message", st->msg_len);
				return;
			}
			st->msg = b;
			st->msg_cap = cap;
		}
		memcpy(st->msg + st->msg_have, p, k);
		st->msg_have += k;
		p += k;
		n -= k;
		if (st->msg_have == st->msg_len) {
			st->hdr_len = 0;
			st->msg_have = 0;
			deliver(st, st->msg, st->msg_len);
			/* a big buffer is not kept for the rest of the stream */
			if (st->msg_cap > (1u << 20)) {
				free(st->msg);
				st->msg = NULL;
				st->msg_cap = 0;
			}
		}
	}
}

/* ---- nghttp2 callbacks ------------------------------------------------- */

static struct zt_grpc_stream *stream_of(nghttp2_session *s, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
			const uint8_t *name, size_t namelen, const uint8_t *value, size_t valuelen,
			uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct zt_grpc_stream *st = stream_of(session, frame->hd.stream_id);
	if (!st || st->done)
		return 0;
	bool response = frame->headers.cat == NGHTTP2_HCAT_RESPONSE;
	if (namelen == 7 && !memcmp(name, ":status", 7)) {
		if (response) {
			int v = 0;
			for (size_t i = 0; i < valuelen && i < 4; i++)
				v = v * 10 + (value[i] - '0');
			st->http_status = v;
		}
	} else if (namelen == 11 && !memcmp(name, "grpc-status", 11)) {
		int v = 0;
		bool ok = valuelen > 0 && valuelen <= 3;
		for (size_t i = 0; ok && i < valuelen; i++) {
			ok = value[i] >= '0' && value[i] <= '9';
			v = v * 10 + (value[i] - '0');
		}
		st->grpc_status = ok ? v : ZT_GRPC_UNKNOWN;
		if (!ok && !st->grpc_message)
			st->grpc_message = strdup("malformed grpc-status");
	} else if (namelen == 12 && !memcmp(name, "grpc-message", 12)) {
		free(st->grpc_message);
		st->grpc_message = percent_decode(value, valuelen);
	} else if (response && namelen == 12 && !memcmp(name, "content-type", 12)) {
		free(st->content_type);
		st->content_type = strndup((const char *)value, valuelen);
	}
	if (response && name[0] != ':' && st->n_md < MAX_MD) {
		if (!st->md && !(st->md = calloc(MAX_MD, sizeof(*st->md))))
			return 0;
		char *k = strndup((const char *)name, namelen);
		char *v = strndup((const char *)value, valuelen);
		if (!k || !v) {
			free(k);
			free(v);
			return 0;
		}
		st->md[st->n_md++] = (struct zt_grpc_md){k, v};
	}
	return 0;
}

static void response_headers(struct zt_grpc_stream *st, bool end_stream)
{
	if (end_stream) /* trailers-only: judged by stream_finish */
		return;
	if (st->http_status != 200) {
		stream_fail(st, http_to_grpc(st->http_status), "HTTP status %d from the server",
			    st->http_status);
		return;
	}
	const char *ct = st->content_type;
	if (!ct || strncmp(ct, "application/grpc", 16) ||
	    (ct[16] && ct[16] != '+' && ct[16] != ';')) {
		stream_fail(st, ZT_GRPC_INTERNAL, "response content-type is not application/grpc: %s",
			    ct ? ct : "(none)");
		return;
	}
	st->validated = true;
	if (!quiet(st) && st->cbs->on_headers)
		st->cbs->on_headers(st->sud, st->md, st->n_md);
	md_clear(st);
}

static int on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct zt_grpc *ch = ud;
	switch (frame->hd.type) {
	case NGHTTP2_GOAWAY: {
		const nghttp2_goaway *g = &frame->goaway;
		if (ch->state == ST_READY)
			ch->state = ST_DRAINING;
		ch->goaway_pending = true;
		snprintf(ch->goaway_msg, sizeof(ch->goaway_msg),
			 "GOAWAY from %s:%s: %s, last stream %d%s%.*s", ch->host, ch->port,
			 nghttp2_http2_strerror(g->error_code), g->last_stream_id,
			 g->opaque_data_len ? ": " : "",
			 (int)(g->opaque_data_len > 120 ? 120 : g->opaque_data_len),
			 (const char *)g->opaque_data);
		return 0;
	}
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
			ch->ping_out = false;
			ch->next_ping = ch->now + ch->keepalive_ms;
		}
		return 0;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		break;
	default:
		return 0;
	}
	struct zt_grpc_stream *st = stream_of(session, frame->hd.stream_id);
	if (!st || st->done)
		return 0;
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
		response_headers(st, end);
	if (end) {
		stream_finish(st);
		/* the server is done: stop sending (the request may still be open) */
		if (!nghttp2_session_get_stream_local_close(session, st->id))
			nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id,
						  NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int on_data_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t id,
			    const uint8_t *data, size_t len, void *ud)
{
	(void)flags;
	(void)ud;
	struct zt_grpc_stream *st = stream_of(session, id);
	if (st && !st->done && st->validated && st->local_status < 0)
		stream_data(st, data, len);
	return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t id, uint32_t code, void *ud)
{
	(void)ud;
	struct zt_grpc_stream *st = stream_of(session, id);
	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(session, id, NULL);
	if (!st->done) {
		if (code != NGHTTP2_NO_ERROR && st->local_status < 0) {
			char buf[ERRMSG];
			snprintf(buf, sizeof(buf), "stream reset: %s%s",
				 nghttp2_http2_strerror(code),
				 code == NGHTTP2_REFUSED_STREAM ? " (not served by the server)" : "");
			stream_close_cb(st, rst_to_grpc(code), buf);
		} else {
			stream_finish(st);
		}
	}
	stream_unlink_free(st);
	return 0;
}

static int on_error_cb(nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
		       void *ud)
{
	(void)session;
	(void)lib_error_code;
	struct zt_grpc *ch = ud;
	snprintf(ch->h2_err, sizeof(ch->h2_err), "%.*s", (int)len, msg);
	ZT_DEBUG(TARGET, "nghttp2: %s", ch->h2_err);
	return 0;
}

static int on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	(void)session;
	struct zt_grpc *ch = ud;
	/* nghttp2 ends the session on a peer's protocol error with a GOAWAY */
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
		fail(ch, -EPROTO, "HTTP/2 error from %s:%s: %s%s%s", ch->host, ch->port,
		     nghttp2_http2_strerror(frame->goaway.error_code), ch->h2_err[0] ? ": " : "",
		     ch->h2_err);
	return 0;
}

/* Request body: queued messages, then END_STREAM once half-closed. */
static ssize_t read_body_cb(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	(void)session;
	(void)id;
	(void)ud;
	struct zt_grpc_stream *st = src->ptr;
	size_t n = 0;
	while (n < length && st->q_head) {
		struct sendq *q = st->q_head;
		size_t k = q->len - q->off < length - n ? q->len - q->off : length - n;
		memcpy(buf + n, q->data + q->off, k);
		q->off += k;
		n += k;
		if (q->off == q->len) {
			st->q_head = q->next;
			if (!st->q_head)
				st->q_tail = NULL;
			free(q);
		}
	}
	if (!st->q_head && st->end_queued)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	else if (!n)
		return NGHTTP2_ERR_DEFERRED;
	return (ssize_t)n;
}

static int h2_session_new(struct zt_grpc *ch)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	if (nghttp2_session_callbacks_new(&cb))
		return -ENOMEM;
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send_cb);
	nghttp2_session_callbacks_set_error_callback2(cb, on_error_cb);
	if (nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cb);
		return -ENOMEM;
	}
	nghttp2_option_set_max_send_header_block_length(opt, 256u << 10);
	int r = nghttp2_session_client_new2(&ch->h2, cb, ch, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (r)
		return -ENOMEM;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
	};
	r = nghttp2_submit_settings(ch->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	if (!r)
		r = nghttp2_session_set_local_window_size(ch->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
	return r ? -ENOMEM : 0;
}

/* ---- connection -------------------------------------------------------- */

/* Split "[scheme://]host[:port][/]" into ch->scheme/host/port. */
static int parse_address(struct zt_grpc *ch, const char *addr, bool plaintext, char *err,
			 size_t errlen)
{
	const char *p = addr;
	ch->tls = !plaintext;
	if (!strncmp(p, "https://", 8)) {
		ch->tls = true;
		p += 8;
	} else if (!strncmp(p, "http://", 7)) {
		ch->tls = false;
		p += 7;
	} else if (strstr(p, "://")) {
		snprintf(err, errlen, "unsupported scheme in address %s", addr);
		return -EINVAL;
	}
	const char *end = p + strcspn(p, "/");
	if (*end && strcmp(end, "/")) {
		snprintf(err, errlen, "address has a path: %s", addr);
		return -EINVAL;
	}
	const char *h, *he, *port = NULL;
	if (*p == '[') {
		h = p + 1;
		he = memchr(h, ']', (size_t)(end - h));
		if (!he) {
			snprintf(err, errlen, "bad IPv6 address in %s", addr);
			return -EINVAL;
		}
		if (he + 1 < end) {
			if (he[1] != ':') {
				snprintf(err, errlen, "bad address %s", addr);
				return -EINVAL;
			}
			port = he + 2;
		}
	} else {
		h = p;
		he = memchr(h, ':', (size_t)(end - h));
		if (he)
			port = he + 1;
		else
			he = end;
	}
	ch->scheme = strdup(ch->tls ? "https" : "http");
	ch->host = strndup(h, (size_t)(he - h));
	ch->port = port ? strndup(port, (size_t)(end - port)) : strdup(ch->tls ? "443" : "80");
	if (!ch->scheme || !ch->host || !ch->port)
		return -ENOMEM;
	char *q;
	long pn = strtol(ch->port, &q, 10);
	if (!*ch->host || !*ch->port || *q || pn <= 0 || pn > 65535) {
		snprintf(err, errlen, "bad host or port in address %s", addr);
		return -EINVAL;
	}
	return 0;
}

/* Start connecting to ch->ai_cur or the addresses after it. Returns 0 with a
 * connect in progress (or done), or the last connect errno (negative). */
static int connect_next(struct zt_grpc *ch)
{
	int last = -EHOSTUNREACH;
	for (; ch->ai_cur; ch->ai_cur = ch->ai_cur->ai_next) {
		struct addrinfo *ai = ch->ai_cur;
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
			ch->fd = fd;
			return 0;
		}
		last = -errno;
		snprintf(ch->conn_err, sizeof(ch->conn_err), "connect to %s:%s: %s", ch->host,
			 ch->port, strerror(errno));
		close(fd);
	}
	return last;
}

static void start_ready(struct zt_grpc *ch)
{
	ch->state = ST_READY;
	ch->ready_pending = true;
	if (ch->keepalive_ms)
		ch->next_ping = ch->now + ch->keepalive_ms;
	ZT_DEBUG(TARGET, "connected to %s:%s (%s)", ch->host, ch->port,
		 ch->tls ? wolfSSL_get_cipher_name(ch->ssl) : "h2c");
}

static void tls_start(struct zt_grpc *ch)
{
	ch->ssl = wolfSSL_new(ch->ctx);
	if (!ch->ssl) {
		fail(ch, -ENOMEM, "TLS: out of memory");
		return;
	}
	wolfSSL_SSLSetIORecv(ch->ssl, tls_recv_cb);
	wolfSSL_SSLSetIOSend(ch->ssl, tls_send_cb);
	wolfSSL_SetIOReadCtx(ch->ssl, ch);
	wolfSSL_SetIOWriteCtx(ch->ssl, ch);
	const char *name = ch->server_name;
	if (wolfSSL_UseALPN(ch->ssl, (char *)"h2", 2, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) !=
	    WOLFSSL_SUCCESS) {
		fail(ch, -ENOMEM, "TLS: cannot offer ALPN h2");
		return;
	}
	if (!ch->name_is_ip) {
		/* SNI (never an IP: RFC 6066 3) and the name the certificate must
		 * carry, checked by wolfSSL during the handshake */
		if (wolfSSL_UseSNI(ch->ssl, WOLFSSL_SNI_HOST_NAME, name, (unsigned short)strlen(name)) !=
			    WOLFSSL_SUCCESS ||
		    wolfSSL_check_domain_name(ch->ssl, name) != WOLFSSL_SUCCESS) {
			fail(ch, -ENOMEM, "TLS: cannot set the server name %s", name);
			return;
		}
	}
	ch->state = ST_TLS;
}

/* One DER TLV at *p (within end): tag, content start and length. Returns
 * false when it does not fit (multi-byte tags and indefinite lengths are
 * not DER certificates' business). */
static bool der_next(const uint8_t **p, const uint8_t *end, uint8_t *tag, const uint8_t **c,
		     size_t *len)
{
	const uint8_t *q = *p;
	if (end - q < 2)
		return false;
	*tag = *q++;
	size_t l = *q++;
	if (l & 0x80) {
		unsigned k = l & 0x7f;
		if (k == 0 || k > 4 || (size_t)(end - q) < k)
			return false;
		for (l = 0; k; k--)
			l = l << 8 | *q++;
	}
	if ((size_t)(end - q) < l)
		return false;
	*c = q;
	*len = l;
	*p = q + l;
	return true;
}

/* Whether the DER certificate has the IP SAN want[wlen]: Certificate ->
 * tbsCertificate -> [3] extensions -> subjectAltName -> [7] iPAddress.
 * wolfSSL_X509_check_ip_asc() needs WOLFSSL_IP_ALT_NAME, which the pinned
 * build lacks (its parsed SAN list has no IP entries at all). */
static bool der_has_ip_san(const uint8_t *der, size_t n, const uint8_t *want, size_t wlen)
{
	static const uint8_t san_oid[] = {0x55, 0x1d, 0x11}; /* 2.5.29.17 */
	const uint8_t *p = der, *c, *end = der + n;
	size_t l;
	uint8_t t;
	if (!der_next(&p, end, &t, &c, &l) || t != 0x30) /* Certificate */
		return false;
	p = c;
	end = c + l;
	if (!der_next(&p, end, &t, &c, &l) || t != 0x30) /* tbsCertificate */
		return false;
	p = c;
	end = c + l;
	while (p < end) {
		if (!der_next(&p, end, &t, &c, &l))
			return false;
		if (t != 0xa3)
			continue;
		const uint8_t *e = c, *eend = c + l;
		if (!der_next(&e, eend, &t, &c, &l) || t != 0x30) /* Extensions */
			return false;
		e = c;
		eend = c + l;
		while (e < eend) {
			const uint8_t *x, *xend;
			if (!der_next(&e, eend, &t, &x, &l) || t != 0x30) /* Extension */
				return false;
			xend = x + l;
			if (!der_next(&x, xend, &t, &c, &l) || t != 0x06)
				return false;
			if (l != sizeof(san_oid) || memcmp(c, san_oid, l))
				continue;
			if (!der_next(&x, xend, &t, &c, &l))
				return false;
			if (t == 0x01 && !der_next(&x, xend, &t, &c, &l)) /* critical */
				return false;
			if (t != 0x04) /* extnValue */
				return false;
			const uint8_t *g = c, *gend = c + l;
			if (!der_next(&g, gend, &t, &c, &l) || t != 0x30) /* GeneralNames */
				return false;
			g = c;
			gend = c + l;
			while (g < gend) {
				if (!der_next(&g, gend, &t, &c, &l))
					return false;
				if (t == 0x87 && l == wlen && !memcmp(c, want, wlen))
					return true;
			}
			return false;
		}
		return false;
	}
	return false;
}

static bool cert_has_ip(WOLFSSL_X509 *x, const char *ip)
{
	uint8_t want[16];
	size_t wlen = inet_pton(AF_INET, ip, want) == 1 ? 4 : inet_pton(AF_INET6, ip, want) == 1 ? 16 : 0;
	int n = 0;
	const unsigned char *der = wlen ? wolfSSL_X509_get_der(x, &n) : NULL;
	return der && n > 0 && der_has_ip_san(der, (size_t)n, want, wlen);
}

/* After the handshake: ALPN h2 and, for an IP, the certificate's IP SAN. */
static bool tls_check_peer(struct zt_grpc *ch)
{
	char *proto = NULL;
	unsigned short plen = 0;
	if (wolfSSL_ALPN_GetProtocol(ch->ssl, &proto, &plen) != WOLFSSL_SUCCESS || plen != 2 ||
	    memcmp(proto, "h2", 2)) {
		fail(ch, -EPROTO, "%s:%s did not negotiate ALPN h2", ch->host, ch->port);
		return false;
	}
	if (ch->name_is_ip) {
		WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(ch->ssl);
		bool ok = x && cert_has_ip(x, ch->server_name);
		wolfSSL_X509_free(x);
		if (!ok) {
			fail(ch, -EPROTO,
			     "TLS handshake with %s:%s failed: certificate verification: the "
			     "certificate has no IP SAN %s",
			     ch->host, ch->port, ch->server_name);
			return false;
		}
	}
	return true;
}

static void tls_handshake(struct zt_grpc *ch)
{
	int r = wolfSSL_connect(ch->ssl);
	if (r == WOLFSSL_SUCCESS) {
		if (tls_check_peer(ch))
			start_ready(ch);
		return;
	}
	int e = wolfSSL_get_error(ch->ssl, r);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return;
	tls_fail(ch, e, "handshake");
}

static void tcp_connected(struct zt_grpc *ch)
{
	int e = 0;
	socklen_t l = sizeof(e);
	if (getsockopt(ch->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
		e = errno;
	if (e == EINPROGRESS || e == EALREADY)
		return;
	if (e) {
		snprintf(ch->conn_err, sizeof(ch->conn_err), "connect to %s:%s: %s", ch->host,
			 ch->port, strerror(e));
		close(ch->fd);
		ch->fd = -1;
		ch->ai_cur = ch->ai_cur->ai_next;
		int r = connect_next(ch);
		if (r)
			fail(ch, r == -EHOSTUNREACH && e ? -e : r, "%s", ch->conn_err);
		return;
	}
	if (ch->tls) {
		tls_start(ch);
		if (!ch->failing)
			tls_handshake(ch);
	} else {
		start_ready(ch);
	}
}

static void h2_feed(struct zt_grpc *ch, const uint8_t *p, size_t n)
{
	ssize_t rv = nghttp2_session_mem_recv(ch->h2, p, n);
	if (rv < 0)
		fail(ch, rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO, "HTTP/2 from %s:%s: %s%s%s",
		     ch->host, ch->port, nghttp2_strerror((int)rv), ch->h2_err[0] ? ": " : "",
		     ch->h2_err);
}

static void peer_closed(struct zt_grpc *ch, int err, const char *how)
{
	if (ch->state == ST_DRAINING)
		fail(ch, -ESHUTDOWN, "%s:%s %s after GOAWAY", ch->host, ch->port, how);
	else
		fail(ch, err, "%s:%s %s", ch->host, ch->port, how);
}

/* Read until the socket (and wolfSSL) has nothing more. */
static void read_all(struct zt_grpc *ch)
{
	while (!ch->failing) {
		if (ch->tls) {
			int r = wolfSSL_read(ch->ssl, ch->rbuf, sizeof(ch->rbuf));
			if (r > 0) {
				h2_feed(ch, ch->rbuf, (size_t)r);
				continue;
			}
			int e = wolfSSL_get_error(ch->ssl, r);
			if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
				return;
			if (e == WOLFSSL_ERROR_ZERO_RETURN || ch->sock_eof)
				peer_closed(ch, -ECONNRESET, "closed the connection");
			else if (ch->sock_errno)
				peer_closed(ch, -ch->sock_errno, strerror(ch->sock_errno));
			else
				tls_fail(ch, e, "read");
			return;
		}
		ssize_t n = recv(ch->fd, ch->rbuf, sizeof(ch->rbuf), 0);
		if (n > 0) {
			h2_feed(ch, ch->rbuf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == 0)
			peer_closed(ch, -ECONNRESET, "closed the connection");
		else
			peer_closed(ch, -errno, strerror(errno));
	}
}

/* Frames from nghttp2 into the output queue (encrypted), up to OUT_HIGH. */
static void pump(struct zt_grpc *ch)
{
	while (!ch->failing && out_pending(ch) < OUT_HIGH && nghttp2_session_want_write(ch->h2)) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(ch->h2, &d);
		if (n < 0) {
			fail(ch, -EPROTO, "HTTP/2 send: %s", nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			return;
		if (ch->tls) {
			int w = wolfSSL_write(ch->ssl, d, (int)n);
			if (w != (int)n) {
				tls_fail(ch, wolfSSL_get_error(ch->ssl, w), "write");
				return;
			}
		} else if (out_append(ch, d, (size_t)n)) {
			fail(ch, -ENOMEM, "out of memory for output");
			return;
		}
	}
}

static void timers(struct zt_grpc *ch)
{
	if ((ch->state == ST_TCP || ch->state == ST_TLS) && ch->now >= ch->connect_deadline) {
		fail(ch, -ETIMEDOUT, "connecting to %s:%s timed out (%s)", ch->host, ch->port,
		     ch->state == ST_TCP ? "TCP connect" : "TLS handshake");
		return;
	}
	if (!ch->keepalive_ms || (ch->state != ST_READY && ch->state != ST_DRAINING))
		return;
	if (ch->ping_out && ch->now - ch->ping_sent >= ch->ping_timeout_ms) {
		fail(ch, -ETIMEDOUT, "%s:%s did not answer a PING within %u ms", ch->host, ch->port,
		     ch->ping_timeout_ms);
		return;
	}
	if (!ch->ping_out && ch->now >= ch->next_ping) {
		if (!nghttp2_submit_ping(ch->h2, NGHTTP2_FLAG_NONE, NULL)) {
			ch->ping_out = true;
			ch->ping_sent = ch->now;
		}
	}
}

static void free_session(struct zt_grpc *ch)
{
	if (ch->h2) {
		nghttp2_session_del(ch->h2);
		ch->h2 = NULL;
	}
	if (ch->ssl) {
		wolfSSL_free(ch->ssl);
		ch->ssl = NULL;
	}
	if (ch->fd >= 0) {
		close(ch->fd);
		ch->fd = -1;
	}
}

/* Report what io recorded; tear down a failed connection. */
static void settle(struct zt_grpc *ch)
{
	if (ch->ready_pending && !ch->failing) {
		ch->ready_pending = false;
		if (!ch->quiet && ch->cbs->on_ready)
			ch->cbs->on_ready(ch->ud);
	}
	if (ch->goaway_pending) {
		ch->goaway_pending = false;
		ZT_INFO(TARGET, "%s", ch->goaway_msg);
		if (!ch->quiet && !ch->failing && ch->cbs->on_error)
			ch->cbs->on_error(ch->ud, -ESHUTDOWN, false, ch->goaway_msg);
	}
	if (!ch->failing || ch->state == ST_DEAD)
		return;
	ch->state = ST_DEAD;
	if (ch->fd >= 0) {
		close(ch->fd);
		ch->fd = -1;
	}
	ZT_DEBUG(TARGET, "channel to %s:%s failed: %s", ch->host, ch->port, ch->errmsg);
	if (!ch->quiet && ch->cbs->on_error)
		ch->cbs->on_error(ch->ud, ch->err, true, ch->errmsg);
	while (ch->streams.next != &ch->streams) {
		struct zt_grpc_stream *st = ch->streams.next;
		stream_close_cb(st, ZT_GRPC_UNAVAILABLE, ch->errmsg);
		if (ch->h2)
			nghttp2_session_set_stream_user_data(ch->h2, st->id, NULL);
		stream_unlink_free(st);
	}
	free_session(ch);
}

/* ---- public ------------------------------------------------------------ */

static void destroy(struct zt_grpc *ch)
{
	free_session(ch);
	while (ch->streams.next != &ch->streams)
		stream_unlink_free(ch->streams.next);
	if (ch->ctx)
		wolfSSL_CTX_free(ch->ctx);
	if (ch->ai_list)
		freeaddrinfo(ch->ai_list);
	free(ch->out);
	free(ch->host);
	free(ch->port);
	free(ch->authority);
	free(ch->server_name);
	free(ch->scheme);
	free(ch);
}

void zt_grpc_free(struct zt_grpc *ch)
{
	if (!ch)
		return;
	if (ch->depth) {
		ch->quiet = true;
		ch->free_pending = true;
		return;
	}
	destroy(ch);
}

int zt_grpc_new(const struct zt_grpc_opts *o, const struct zt_grpc_cbs *cbs, void *ud,
		uint64_t now_ms, struct zt_grpc **out, char *err, size_t errlen)
{
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	*out = NULL;
	if (!o || !o->address || !cbs) {
		snprintf(err, errlen, "no address");
		return -EINVAL;
	}
	struct zt_grpc *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ch->cbs = cbs;
	ch->ud = ud;
	ch->fd = -1;
	ch->now = now_ms;
	ch->streams.next = ch->streams.prev = &ch->streams;
	ch->max_message = o->max_message ? o->max_message : ZT_GRPC_MAX_MESSAGE_DEFAULT;
	if (ch->max_message > 0xffffffffu)
		ch->max_message = 0xffffffffu;
	ch->keepalive_ms = o->keepalive_ms;
	ch->ping_timeout_ms = o->ping_timeout_ms ? o->ping_timeout_ms : ZT_GRPC_PING_TIMEOUT_DEFAULT;
	ch->connect_deadline =
		now_ms + (o->connect_timeout_ms ? o->connect_timeout_ms : ZT_GRPC_CONNECT_TIMEOUT_DEFAULT);
	int r = parse_address(ch, o->address, o->plaintext, err, errlen);
	if (r)
		goto fail_ch;
	r = -ENOMEM;
	if (o->authority) {
		ch->authority = strdup(o->authority);
	} else {
		size_t n = strlen(ch->host) + strlen(ch->port) + 4;
		if ((ch->authority = malloc(n))) {
			bool v6 = strchr(ch->host, ':');
			snprintf(ch->authority, n, v6 ? "[%s]:%s" : "%s:%s", ch->host, ch->port);
		}
	}
	ch->server_name = strdup(o->server_name && *o->server_name ? o->server_name : ch->host);
	if (!ch->authority || !ch->server_name) {
		snprintf(err, errlen, "out of memory");
		goto fail_ch;
	}
	ch->name_is_ip = is_ip_literal(ch->server_name);

	if (ch->tls) {
		if (!o->root_cert_path || !*o->root_cert_path) {
			snprintf(err, errlen, "TLS to %s needs root certificates", o->address);
			r = -EINVAL;
			goto fail_ch;
		}
		ch->ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
		if (!ch->ctx) {
			snprintf(err, errlen, "TLS: out of memory");
			goto fail_ch;
		}
		wolfSSL_CTX_SetMinVersion(ch->ctx, WOLFSSL_TLSV1_2);
		if (wolfSSL_CTX_load_verify_locations(ch->ctx, o->root_cert_path, NULL) !=
		    WOLFSSL_SUCCESS) {
			snprintf(err, errlen, "cannot load root certificates from %s",
				 o->root_cert_path);
			r = -ENOENT;
			goto fail_ch;
		}
		wolfSSL_CTX_set_verify(ch->ctx, WOLFSSL_VERIFY_PEER, NULL);
	}
	if ((r = h2_session_new(ch))) {
		snprintf(err, errlen, "HTTP/2: out of memory");
		goto fail_ch;
	}

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	int g = getaddrinfo(ch->host, ch->port, &hints, &ch->ai_list);
	if (g) {
		snprintf(err, errlen, "cannot resolve %s: %s", ch->host, gai_strerror(g));
		r = g == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
		goto fail_ch;
	}
	ch->ai_cur = ch->ai_list;
	if ((r = connect_next(ch))) {
		snprintf(err, errlen, "%s", ch->conn_err[0] ? ch->conn_err : "no address to connect to");
		goto fail_ch;
	}
	ch->state = ST_TCP;
	*out = ch;
	return 0;

fail_ch:
	destroy(ch);
	return r;
}

int zt_grpc_fd(const struct zt_grpc *ch)
{
	return ch->state == ST_DEAD ? -1 : ch->fd;
}

short zt_grpc_events(const struct zt_grpc *ch)
{
	switch (ch->state) {
	case ST_TCP:
		return POLLOUT;
	case ST_TLS:
		return POLLIN | (out_pending(ch) ? POLLOUT : 0);
	case ST_READY:
	case ST_DRAINING:
		return POLLIN | (out_pending(ch) || nghttp2_session_want_write(ch->h2) ? POLLOUT : 0);
	default:
		return 0;
	}
}

int zt_grpc_timeout(const struct zt_grpc *ch, uint64_t now_ms)
{
	uint64_t at = UINT64_MAX;
	if (ch->state == ST_TCP || ch->state == ST_TLS)
		at = ch->connect_deadline;
	else if ((ch->state == ST_READY || ch->state == ST_DRAINING) && ch->keepalive_ms)
		at = ch->ping_out ? ch->ping_sent + ch->ping_timeout_ms : ch->next_ping;
	if (at == UINT64_MAX)
		return -1;
	if (at <= now_ms)
		return 0;
	return at - now_ms > 0x7fffffff ? 0x7fffffff : (int)(at - now_ms);
}

enum zt_grpc_state zt_grpc_state(const struct zt_grpc *ch)
{
	switch (ch->state) {
	case ST_TCP:
	case ST_TLS:
		return ZT_GRPC_CONNECTING;
	case ST_READY:
		return ZT_GRPC_READY;
	case ST_DRAINING:
		return ZT_GRPC_DRAINING;
	default:
		return ZT_GRPC_DEAD;
	}
}

int zt_grpc_io(struct zt_grpc *ch, short revents, uint64_t now_ms)
{
	if (ch->state == ST_DEAD)
		return ch->err;
	ch->depth++;
	ch->now = now_ms;
	if (ch->state == ST_TCP && (revents & (POLLOUT | POLLERR | POLLHUP)))
		tcp_connected(ch);
	else if (ch->state == ST_TLS && !ch->failing)
		tls_handshake(ch);
	bool up = ch->state == ST_READY || ch->state == ST_DRAINING;
	if (up && !ch->failing) /* a read also finds what came with the handshake */
		read_all(ch);
	if (!ch->failing)
		timers(ch);
	if (!ch->failing && ch->state == ST_TLS)
		flush(ch);
	up = ch->state == ST_READY || ch->state == ST_DRAINING;
	/* bounded: mem_send may return nothing while want_write says yes */
	for (int i = 0; up && !ch->failing && i < 64; i++) {
		pump(ch);
		flush(ch);
		if (out_pending(ch) || !nghttp2_session_want_write(ch->h2))
			break;
	}
	if (up && !ch->failing && !out_pending(ch) && !nghttp2_session_want_read(ch->h2) &&
	    !nghttp2_session_want_write(ch->h2))
		peer_closed(ch, -ECONNRESET, "ended the HTTP/2 session");
	settle(ch);
	ch->depth--;
	if (ch->free_pending) {
		destroy(ch);
		return 0;
	}
	return ch->state == ST_DEAD ? ch->err : 0;
}

static bool md_ok(const struct zt_grpc_md *m)
{
	if (!m->key || !m->value || !m->key[0] || m->key[0] == ':')
		return false;
	for (const char *k = m->key; *k; k++)
		if ((*k >= 'A' && *k <= 'Z') || *k <= ' ' || *k == 0x7f)
			return false;
	for (const char *v = m->value; *v; v++)
		if (*v == '\r' || *v == '\n')
			return false;
	return true;
}

#define NV(n, v)                                                                          \
	((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE})

int zt_grpc_stream_open(struct zt_grpc *ch, const char *path, const struct zt_grpc_md *md,
			size_t n_md, const struct zt_grpc_stream_cbs *cbs, void *sud,
			struct zt_grpc_stream **out)
{
	*out = NULL;
	if (ch->state == ST_DEAD || ch->failing || ch->free_pending)
		return -ENOTCONN;
	if (ch->state == ST_DRAINING)
		return -ESHUTDOWN;
	if (!path || path[0] != '/' || !cbs || !cbs->on_close || n_md > 64)
		return -EINVAL;
	for (size_t i = 0; i < n_md; i++)
		if (!md_ok(&md[i]))
			return -EINVAL;
	struct zt_grpc_stream *st = calloc(1, sizeof(*st));
	nghttp2_nv *nv = calloc(7 + n_md, sizeof(*nv));
	if (!st || !nv) {
		free(st);
		free(nv);
		return -ENOMEM;
	}
	st->ch = ch;
	st->cbs = cbs;
	st->sud = sud;
	st->grpc_status = -1;
	st->local_status = -1;
	size_t n = 0;
	nv[n++] = NV(":method", "POST");
	nv[n++] = NV(":scheme", ch->scheme);
	nv[n++] = NV(":path", path);
	nv[n++] = NV(":authority", ch->authority);
	nv[n++] = NV("content-type", "application/grpc");
	nv[n++] = NV("te", "trailers");
	nv[n++] = NV("user-agent", "grpc-c-zring/0.1");
	for (size_t i = 0; i < n_md; i++)
		nv[n++] = NV(md[i].key, md[i].value);
	nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body_cb};
	int32_t id = nghttp2_submit_request(ch->h2, NULL, nv, n, &dp, st);
	free(nv);
	if (id < 0) {
		free(st);
		return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? -EAGAIN
		       : id == NGHTTP2_ERR_NOMEM		  ? -ENOMEM
								  : -EINVAL;
	}
	st->id = id;
	st->next = &ch->streams;
	st->prev = ch->streams.prev;
	ch->streams.prev->next = st;
	ch->streams.prev = st;
	*out = st;
	return 0;
}

int zt_grpc_send(struct zt_grpc_stream *st, const void *msg, size_t len, bool end)
{
	struct zt_grpc *ch = st->ch;
	if (st->done || st->end_queued || ch->state == ST_DEAD || ch->failing)
		return -EPIPE;
	if (len > ch->max_message)
		return -EMSGSIZE;
	if (msg || !end) { /* NULL + end: bare half-close */
		struct sendq *q = malloc(sizeof(*q) + 5 + len);
		if (!q)
			return -ENOMEM;
		q->next = NULL;
		q->off = 0;
		q->len = 5 + len;
		q->data[0] = 0;
		q->data[1] = (uint8_t)(len >> 24);
		q->data[2] = (uint8_t)(len >> 16);
		q->data[3] = (uint8_t)(len >> 8);
		q->data[4] = (uint8_t)len;
		if (len)
			memcpy(q->data + 5, msg, len);
		if (st->q_tail)
			st->q_tail->next = q;
		else
			st->q_head = q;
		st->q_tail = q;
	}
	st->end_queued = end;
	if (ch->h2)
		nghttp2_session_resume_data(ch->h2, st->id); /* fails harmlessly if not deferred */
	return 0;
}

int zt_grpc_close_send(struct zt_grpc_stream *st)
{
	return zt_grpc_send(st, NULL, 0, true);
}

void zt_grpc_cancel(struct zt_grpc_stream *st)
{
	struct zt_grpc *ch = st->ch;
	if (st->done)
		return;
	st->done = true;
	if (ch->h2 && ch->state != ST_DEAD && !ch->failing) {
		nghttp2_submit_rst_stream(ch->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
		return; /* freed when nghttp2 closes it */
	}
	/* no session to close it: unless settle() is walking the list, free now */
	if (!ch->failing) {
		if (ch->h2)
			nghttp2_session_set_stream_user_data(ch->h2, st->id, NULL);
		stream_unlink_free(st);
	}
}

/* ---- blocking unary call ------------------------------------------------ */

struct unary {
	bool done;
	int status;
	char *message;
	uint8_t *data;
	size_t len;
	unsigned n_msgs;
};

static void unary_on_message(void *sud, const uint8_t *msg, size_t len)
{
	struct unary *u = sud;
	if (u->n_msgs++ == 0) {
		u->data = malloc(len ? len : 1);
		if (u->data) {
			memcpy(u->data, msg, len);
			u->len = len;
		}
	}
}

static void unary_on_close(void *sud, int status, const char *message)
{
	struct unary *u = sud;
	u->done = true;
	u->status = status;
	u->message = strdup(message ? message : "");
}

static const struct zt_grpc_stream_cbs unary_stream_cbs = {
	.on_message = unary_on_message,
	.on_close = unary_on_close,
};

static const struct zt_grpc_cbs unary_cbs = {0};

static void reply_set(struct zt_grpc_reply *rep, int status, const char *msg)
{
	rep->status = status;
	free(rep->message);
	rep->message = strdup(msg);
}

int zt_grpc_unary(const struct zt_grpc_opts *o, const char *path, const struct zt_grpc_md *md,
		  size_t n_md, const void *req, size_t req_len, uint32_t timeout_ms,
		  struct zt_grpc_reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	struct unary u = {0};
	char err[ERRMSG];
	uint64_t now = zt_now_ms(), deadline = now + timeout_ms;
	struct zt_grpc *ch = NULL;
	int r = zt_grpc_new(o, &unary_cbs, NULL, now, &ch, err, sizeof(err));
	if (r) {
		reply_set(rep, r == -EINVAL || r == -ENOENT ? ZT_GRPC_INVALID_ARGUMENT
							     : ZT_GRPC_UNAVAILABLE,
			  err);
		return rep->status;
	}
	struct zt_grpc_md *all = calloc(n_md + 1, sizeof(*all));
	char tmo[24];
	if (!all) {
		zt_grpc_free(ch);
		reply_set(rep, ZT_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return rep->status;
	}
	if (n_md)
		memcpy(all, md, n_md * sizeof(*md));
	snprintf(tmo, sizeof(tmo), "%um", timeout_ms);
	all[n_md] = (struct zt_grpc_md){"grpc-timeout", tmo};
	struct zt_grpc_stream *st = NULL;
	r = zt_grpc_stream_open(ch, path, all, n_md + 1, &unary_stream_cbs, &u, &st);
	free(all);
	if (!r && (r = zt_grpc_send(st, req ? req : "", req_len, true)))
		zt_grpc_cancel(st);
	if (r) {
		zt_grpc_free(ch);
		snprintf(err, sizeof(err), "cannot start the call: %s", strerror(-r));
		reply_set(rep, r == -EMSGSIZE ? ZT_GRPC_RESOURCE_EXHAUSTED : ZT_GRPC_INTERNAL, err);
		return rep->status;
	}
	while (!u.done) {
		now = zt_now_ms();
		if (now >= deadline) {
			zt_grpc_cancel(st);
			snprintf(err, sizeof(err), "deadline of %u ms exceeded (%s)", timeout_ms,
				 zt_grpc_state(ch) == ZT_GRPC_CONNECTING ? "connecting" : "waiting for the response");
			u.status = ZT_GRPC_DEADLINE_EXCEEDED;
			u.message = strdup(err);
			break;
		}
		int t = zt_grpc_timeout(ch, now);
		uint64_t left = deadline - now;
		if (t < 0 || (uint64_t)t > left)
			t = (int)left;
		struct pollfd p = {.fd = zt_grpc_fd(ch), .events = zt_grpc_events(ch)};
		int n = poll(&p, 1, t);
		if (n < 0 && errno != EINTR) {
			zt_grpc_cancel(st);
			u.status = ZT_GRPC_INTERNAL;
			u.message = strdup("poll failed");
			break;
		}
		zt_grpc_io(ch, n > 0 ? p.revents : 0, zt_now_ms());
	}
	zt_grpc_free(ch);
	rep->status = u.status;
	rep->message = u.message ? u.message : strdup("");
	if (u.status == ZT_GRPC_OK) {
		if (u.n_msgs != 1 || !u.data) {
			free(u.data);
			reply_set(rep, ZT_GRPC_INTERNAL,
				  u.n_msgs ? "more than one response message for a unary call"
					   : "no response message for a unary call");
			return rep->status;
		}
		rep->data = u.data;
		rep->len = u.len;
	} else {
		free(u.data);
	}
	return rep->status;
}

void zt_grpc_reply_free(struct zt_grpc_reply *rep)
{
	free(rep->message);
	free(rep->data);
	memset(rep, 0, sizeof(*rep));
}

/* ---- the bearer token ---------------------------------------------------- */

int zt_grpc_token_read(const char *path, char **tok, char *err, size_t errlen)
{
	*tok = NULL;
	if (!path || !*path)
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		int e = errno;
		zt_errf(err, errlen, "token %s: %s", path, strerror(e));
		return -e;
	}
	char *buf = malloc(ZT_GRPC_MAX_TOKEN + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t n = 0;
	int ret = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, ZT_GRPC_MAX_TOKEN + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			zt_errf(err, errlen, "token %s: %s", path, strerror(errno));
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > ZT_GRPC_MAX_TOKEN) {
			ret = -EFBIG;
			zt_errf(err, errlen, "token %s: larger than %u bytes", path,
				ZT_GRPC_MAX_TOKEN);
			break;
		}
	}
	close(fd);
	size_t a = 0;
	while (!ret && a < n && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r' || buf[a] == '\n'))
		a++;
	while (!ret && n > a &&
	       (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r' || buf[n - 1] == '\n'))
		n--;
	/* A header value cannot carry control characters (nghttp2 would refuse
	 * the request with a less helpful message). */
	for (size_t i = a; !ret && i < n; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
			ret = -EINVAL;
			zt_errf(err, errlen, "token %s: control character at byte %zu", path, i);
		}
	if (ret || n == a) {
		explicit_bzero(buf, ZT_GRPC_MAX_TOKEN + 1);
		free(buf);
		return ret;
	}
	memmove(buf, buf + a, n - a);
	buf[n - a] = '\0';
	*tok = buf;
	return 0;
}
