/* grpc.h - a non-blocking gRPC client: one HTTP/2 connection (nghttp2) over
 * TLS 1.2/1.3 (wolfSSL) or plaintext h2c (prior knowledge), driven from the
 * caller's poll() loop. Used for istiod: Delta ADS (XDS_ADDRESS) and the CA's
 * CreateCertificate (CA_ADDRESS).
 *
 * Threads: one thread owns a channel and its streams (the control thread);
 * nothing is locked. wolfSSL must be initialised (zt_crypto_init or
 * wolfSSL_Init) before a TLS channel is created.
 *
 * Use:
 *   zt_grpc_new()          resolve, start a non-blocking connect
 *   zt_grpc_stream_open()  may be called at once: requests wait for the
 *                          connection
 *   zt_grpc_send()         queue a message (copied), optionally half-close
 *   loop: poll({zt_grpc_fd(), zt_grpc_events()}, zt_grpc_timeout())
 *         zt_grpc_io(ch, revents, now)   reads, writes, timers, callbacks
 *   zt_grpc_free()
 * All I/O happens inside zt_grpc_io(); the other calls only queue, so after
 * them ask zt_grpc_events() again before polling.
 *
 * Callbacks fire only from zt_grpc_io() (and zt_grpc_free() fires none). In
 * them the owner may send, open and cancel streams and free the channel
 * (deferred until zt_grpc_io() returns; no callback fires after it).
 *
 * A channel does not reconnect: after a fatal error it is dead (fd -1) and
 * the owner frees it and creates another (with its own backoff).
 */
#ifndef ZT_ENGINE_GRPC_H
#define ZT_ENGINE_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes (grpc/doc/statuscodes.md). */
enum zt_grpc_code {
	ZT_GRPC_OK = 0,
	ZT_GRPC_CANCELLED = 1,
	ZT_GRPC_UNKNOWN = 2,
	ZT_GRPC_INVALID_ARGUMENT = 3,
	ZT_GRPC_DEADLINE_EXCEEDED = 4,
	ZT_GRPC_NOT_FOUND = 5,
	ZT_GRPC_ALREADY_EXISTS = 6,
	ZT_GRPC_PERMISSION_DENIED = 7,
	ZT_GRPC_RESOURCE_EXHAUSTED = 8,
	ZT_GRPC_FAILED_PRECONDITION = 9,
	ZT_GRPC_ABORTED = 10,
	ZT_GRPC_OUT_OF_RANGE = 11,
	ZT_GRPC_UNIMPLEMENTED = 12,
	ZT_GRPC_INTERNAL = 13,
	ZT_GRPC_UNAVAILABLE = 14,
	ZT_GRPC_DATA_LOSS = 15,
	ZT_GRPC_UNAUTHENTICATED = 16,
};

#define ZT_GRPC_MAX_MESSAGE_DEFAULT (64u << 20) /* 64 MiB, each way */
#define ZT_GRPC_CONNECT_TIMEOUT_DEFAULT 10000u  /* ms: TCP connect + TLS handshake */
#define ZT_GRPC_PING_TIMEOUT_DEFAULT 20000u     /* ms */

enum zt_grpc_state {
	ZT_GRPC_CONNECTING, /* TCP connect or TLS handshake in progress */
	ZT_GRPC_READY,      /* HTTP/2 up */
	ZT_GRPC_DRAINING,   /* GOAWAY received: open streams finish, no new ones */
	ZT_GRPC_DEAD,       /* connection gone (fatal error reported) */
};

/* One metadata entry (an HTTP/2 header): key in lower case. */
struct zt_grpc_md {
	const char *key;
	const char *value;
};

struct zt_grpc_opts {
	/* "https://host:port" (TLS), "http://host:port" (h2c) or "host:port"
	 * (TLS unless plaintext). host: a DNS name, an IPv4 address or an
	 * IPv6 one in brackets. Port defaults to 443 / 80. */
	const char *address;
	bool plaintext;             /* scheme-less address: h2c prior knowledge */
	const char *root_cert_path; /* TLS: PEM roots the server chains to (required) */
	const char *server_name;    /* TLS: SNI and the name checked against the
				     * certificate's SANs (an IP is checked against
				     * IP SANs, without SNI); NULL: the address's host */
	const char *authority;      /* :authority; NULL: the address's host:port */
	uint32_t connect_timeout_ms; /* 0: ZT_GRPC_CONNECT_TIMEOUT_DEFAULT */
	/* HTTP/2 PING every keepalive_ms (0: none); no ACK within
	 * ping_timeout_ms (0: default) is fatal. istiod allows >= 15 s. */
	uint32_t keepalive_ms;
	uint32_t ping_timeout_ms;
	size_t max_message; /* largest message either way; 0: default */
};

struct zt_grpc_cbs {
	/* Optional: the connection is up (TLS verified, ALPN h2). */
	void (*on_ready)(void *ud);
	/* err is a negative errno (-ECONNREFUSED, -ETIMEDOUT, -EPROTO for a
	 * TLS failure, -ECONNRESET, -ESHUTDOWN after GOAWAY, ...), msg says
	 * what happened (a TLS failure names wolfSSL's verification error).
	 * fatal: the connection is gone; every open stream then gets
	 * on_close(ZT_GRPC_UNAVAILABLE, msg). Not fatal: a GOAWAY arrived;
	 * streams the server still serves run to their end, others close
	 * with UNAVAILABLE, and a fatal error follows when the last ends. */
	void (*on_error)(void *ud, int err, bool fatal, const char *msg);
};

struct zt_grpc_stream;

struct zt_grpc_stream_cbs {
	/* Optional: response headers (not for a trailers-only response). */
	void (*on_headers)(void *sud, const struct zt_grpc_md *md, size_t n);
	/* One whole message; msg is valid during the call only. */
	void (*on_message)(void *sud, const uint8_t *msg, size_t len);
	/* Last callback, exactly once (unless cancelled): status from
	 * grpc-status, message from grpc-message (percent-decoded), or a
	 * status of ours for a failed stream (UNAVAILABLE for a lost
	 * connection, INTERNAL for a broken response, RESOURCE_EXHAUSTED for
	 * an oversized message...) with a message saying why. The stream is
	 * freed after it returns. */
	void (*on_close)(void *sud, int status, const char *message);
};

struct zt_grpc;

/* Parse o->address, resolve it (getaddrinfo: blocks for a DNS name), set up
 * TLS and HTTP/2 and start a non-blocking connect; now_ms is the caller's
 * monotonic clock (zt_now_ms). Returns 0, or a negative errno with a reason
 * in err: -EINVAL (bad address or options), -ENOENT (root certificates
 * unreadable or not PEM), -EHOSTUNREACH (name did not resolve), -ENOMEM,
 * or a connect() errno when no address could even start connecting. */
int zt_grpc_new(const struct zt_grpc_opts *o, const struct zt_grpc_cbs *cbs, void *ud,
		uint64_t now_ms, struct zt_grpc **out, char *err, size_t errlen);

/* Close the connection and free everything; no callbacks fire. Open streams
 * are gone with it. From inside a callback, deferred to zt_grpc_io's end. */
void zt_grpc_free(struct zt_grpc *ch);

/* The socket to poll (-1 once dead) and the events to poll it for. */
int zt_grpc_fd(const struct zt_grpc *ch);
short zt_grpc_events(const struct zt_grpc *ch);
/* Milliseconds until zt_grpc_io() must run even without events (connect
 * deadline, keepalive), or -1: none. */
int zt_grpc_timeout(const struct zt_grpc *ch, uint64_t now_ms);

/* Make progress: connect, handshake, read, write, timers; fires callbacks.
 * revents may be 0 (timer only). Returns 0, or the fatal error (negative
 * errno) once the channel is dead. Returns 0 after a deferred free. */
int zt_grpc_io(struct zt_grpc *ch, short revents, uint64_t now_ms);

enum zt_grpc_state zt_grpc_state(const struct zt_grpc *ch);

/* Open a stream on path "/package.Service/Method" with extra metadata
 * (e.g. {"authorization", "Bearer ..."}, {"clusterid", "Kubernetes"};
 * "grpc-timeout" too if wanted). Returns 0, or -ENOTCONN (dead),
 * -ESHUTDOWN (draining), -EINVAL, -ENOMEM, -EAGAIN (no stream ids left). */
int zt_grpc_stream_open(struct zt_grpc *ch, const char *path, const struct zt_grpc_md *md,
			size_t n_md, const struct zt_grpc_stream_cbs *cbs, void *sud,
			struct zt_grpc_stream **out);

/* Queue one message (copied, framed) and, with end, half-close after it
 * (msg may then be NULL with len 0 for a bare half-close: no message).
 * Returns 0, -EMSGSIZE (over max_message), -EPIPE (already half-closed or
 * stream finished), -ENOMEM. */
int zt_grpc_send(struct zt_grpc_stream *st, const void *msg, size_t len, bool end);
/* Half-close without a message. */
int zt_grpc_close_send(struct zt_grpc_stream *st);

/* Reset the stream (RST_STREAM CANCEL); no callback fires for it any more
 * and the pointer is invalid after the call. */
void zt_grpc_cancel(struct zt_grpc_stream *st);

/* Name of a status code ("PERMISSION_DENIED"), "UNKNOWN" when out of range. */
const char *zt_grpc_code_name(int code);

/* ---- blocking unary call (own connection, own poll loop) ----------------- */

struct zt_grpc_reply {
	int status;    /* as returned */
	char *message; /* grpc-message or our reason; "" when OK (free with reply) */
	uint8_t *data; /* the response message (OK only) */
	size_t len;
};

/* One unary call on a fresh channel: connect, send req, half-close, wait for
 * the response, close. Bounded by timeout_ms in total (also sent as
 * grpc-timeout). Returns the gRPC status: ZT_GRPC_OK with exactly one
 * response message in rep->data, or the server's status, or
 * UNAVAILABLE (connection / TLS failure), DEADLINE_EXCEEDED, INTERNAL
 * (broken response) with rep->message saying why. Release rep with
 * zt_grpc_reply_free() whatever the status. */
int zt_grpc_unary(const struct zt_grpc_opts *o, const char *path, const struct zt_grpc_md *md,
		  size_t n_md, const void *req, size_t req_len, uint32_t timeout_ms,
		  struct zt_grpc_reply *rep);
void zt_grpc_reply_free(struct zt_grpc_reply *rep);

/* ---- the bearer token (istiod's calls) ----------------------------------- */

/* Largest token file read. */
#define ZT_GRPC_MAX_TOKEN (64u << 10)

/* The bearer token from `path` (re-read at each call: projected tokens
 * rotate), surrounding white space dropped, into *tok (malloc'd), or *tok
 * NULL when there is none (no path, no file, empty file). Returns 0, a
 * negative errno for a file that exists but cannot be used (err says why:
 * unreadable, over ZT_GRPC_MAX_TOKEN, a control character), -ENOMEM. */
int zt_grpc_token_read(const char *path, char **tok, char *err, size_t errlen);

#endif
