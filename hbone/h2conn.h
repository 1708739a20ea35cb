/* h2conn.h - one HBONE connection: TLS 1.3 (wolfSSL) carrying HTTP/2 (nghttp2)
 * CONNECT tunnels, as a state machine without I/O.
 *
 * Shard thread only: a connection belongs to the shard that created it, and
 * nothing in here blocks, sleeps or touches a socket. The owner moves bytes:
 *
 *   socket -> zt_h2c_feed()          ciphertext in; callbacks fire from inside
 *   zt_h2c_out()/_out_iov() -> socket, then zt_h2c_out_done(n)
 *   zt_h2c_tick(now) at zt_h2c_deadline() for PING keepalive
 *
 * Every call that can produce output (feed, write, respond, connect, consumed,
 * close_write, reset, goaway, tick, out_done) leaves the new ciphertext queued;
 * the owner sends it when zt_h2c_out_pending() > 0. Bytes returned by
 * zt_h2c_out() stay where they are until zt_h2c_out_done() releases them, so
 * an asynchronous send (io_uring) may point straight at them.
 *
 * Wire behaviour is ztunnel's (src/tls/lib.rs, src/tls/certificate.rs,
 * src/proxy/h2/{client,server}.rs, src/proxy/h2.rs, src/proxy/inbound.rs in
 * istio/ztunnel): TLS 1.3 only, TLS_AES_256_GCM_SHA384 then
 * TLS_AES_128_GCM_SHA256, ALPN "h2" required, no SNI, no resumption, client
 * certificate required by the server; HTTP/2 stream window 4 MiB, connection
 * window 16 MiB, max frame 1 MiB, max header list 16 KiB (client) / 64 KiB
 * (server), 200 concurrent streams (server), at most 100 streams per
 * connection (client), PING every 10 s with a 20 s timeout (both roles).
 *
 * Streams. A stream carries one tunnelled TCP connection. The owner attaches
 * its own pointer to it (`sud`); stream callbacks hand it back. A stream's
 * callbacks stop after on_reset, or once the owner has both finished its
 * write side (zt_h2c_close_write) and received on_eof, or after the owner
 * called zt_h2c_reset or refused the stream (zt_h2c_respond with a non-2xx
 * status); from then on `sud` is never used again.
 *
 * Callbacks may call back into the same connection (respond, write, consumed,
 * close_write, reset, connect, goaway) but must never call zt_h2c_free(): the
 * owner frees the connection after the call that fired on_closed returns.
 *
 * Errors are negative errno values:
 *   -EINVAL        bad argument
 *   -ENOMEM        out of memory (the connection is then dead)
 *   -ENOENT        no such stream, or its callbacks have ended
 *   -ENOTCONN      the stream is not established yet (no 2xx response)
 *   -EPIPE         the stream's write side is already closed or reset
 *   -EALREADY      the request was already answered
 *   -EBUSY         no stream slot left on this connection (open another)
 *   -ESHUTDOWN     the connection is draining (GOAWAY) or dead
 * and for a dead connection (on_closed, zt_h2c_feed):
 *   -EPROTO        TLS or HTTP/2 protocol violation (by the peer or garbage)
 *   -EKEYREJECTED  the peer's certificate chain is not trusted
 *   -EKEYEXPIRED   the peer's certificate is expired or not yet valid
 *   -ENOKEY        the peer sent no certificate (server side)
 *   -ENOPROTOOPT   the peer does not speak ALPN "h2"
 *   -ECONNREFUSED  the peer aborted the handshake with an alert (it refused us)
 *   -ECONNRESET    the peer closed the transport with streams still open
 *   -ECONNABORTED  the peer sent GOAWAY with an error code
 *   -ETIMEDOUT     no PING acknowledgement within 20 s
 * zt_h2c_error_detail() has a sentence for logs ("wolfSSL -188: ASN no signer
 * to confirm failure").
 */
#ifndef ZT_HBONE_H2CONN_H
#define ZT_HBONE_H2CONN_H

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/addr.h"
#include "hbone/tlsrec.h"

enum zt_h2c_role { ZT_H2C_CLIENT, ZT_H2C_SERVER };

/* ztunnel's HTTP/2 settings (istio/ztunnel src/config.rs defaults, applied in
 * src/proxy/h2/client.rs and server.rs). */
#define ZT_H2C_STREAM_WINDOW (4u << 20)     /* initial_window_size */
#define ZT_H2C_CONN_WINDOW (16u << 20)      /* initial_connection_window_size */
#define ZT_H2C_MAX_FRAME (1u << 20)         /* max_frame_size */
#define ZT_H2C_CLIENT_MAX_HEADERS (16u << 10) /* client max_header_list_size */
#define ZT_H2C_SERVER_MAX_HEADERS (64u << 10) /* server max_header_list_size */
#define ZT_H2C_SERVER_MAX_STREAMS 200u      /* server max_concurrent_streams */
#define ZT_H2C_CLIENT_MAX_STREAMS 100u      /* pool_max_streams_per_conn */
#define ZT_H2C_PING_INTERVAL_MS 10000u      /* src/proxy/h2.rs PING_INTERVAL */
#define ZT_H2C_PING_TIMEOUT_MS 20000u       /* src/proxy/h2.rs PING_TIMEOUT */

/* Ciphertext queued for the socket before HTTP/2 output is paused. The queue
 * may exceed it by one DATA frame (ZT_H2C_DATA_FRAME_MAX) plus control frames. */
#define ZT_H2C_OUT_LIMIT (256u << 10)
/* Largest DATA frame payload we build (nghttp2 grows its frame buffer to
 * this once per connection, although NO_COPY never writes into it). */
#define ZT_H2C_DATA_FRAME_MAX (64u << 10)

/* on_reset code when the connection itself died (not an HTTP/2 error code). */
#define ZT_H2C_RESET_CONN_LOST 0x100u

/* The CONNECT target from :authority. ztunnel accepts "ip:port" ("[v6]:port")
 * and, for requests through a gateway, "hostname:port". */
struct zt_h2c_authority {
	bool is_host;           /* false: `addr` is set; true: `host` and port */
	struct zt_sockaddr addr;
	char host[254];         /* NUL-terminated when is_host */
	uint16_t port;          /* both forms */
};

/* A CONNECT request as the server sees it. Strings are NUL-terminated and
 * valid only during on_connect; absent headers are NULL. Repeated baggage
 * headers are joined with ",". */
struct zt_h2c_request {
	const char *authority;  /* raw :authority */
	struct zt_h2c_authority target;
	const char *forwarded;
	const char *baggage;
	const char *traceparent;
};

struct zt_h2c;

struct zt_h2c_cbs {
	/* TLS and ALPN done (err 0): `peer_id` is the peer certificate's first
	 * URI SAN ("" if it has none). The caller checks it (server: trust
	 * domain; client: the expected identity) and calls zt_h2c_abort() to
	 * refuse. On failure err < 0, peer_id NULL, and on_closed follows. */
	void (*on_handshake_done)(void *ud, int err, const char *peer_id);
	/* Server: a well-formed CONNECT arrived (non-CONNECT methods and bad
	 * authorities were already answered 400). Return 0 to take the stream,
	 * setting *sud, and answer later (or now) with zt_h2c_respond(); or
	 * return an HTTP status (400..599) to refuse it at once. DATA and EOF
	 * for the stream may arrive before you answer. */
	int (*on_connect)(void *ud, int32_t sid, const struct zt_h2c_request *req,
			  void **sud);
	/* Client: the response to zt_h2c_connect(). 2xx: the tunnel is open and
	 * zt_h2c_write() may be called. Otherwise the stream is over (h2conn
	 * cancels it) and no more callbacks come for it. */
	void (*on_response)(void *ud, int32_t sid, void *sud, int status);
	/* Tunnel bytes, valid only during the call unless zt_h2c_hold() keeps
	 * them. Call zt_h2c_consumed() as they leave your buffers: that
	 * reopens the peer's flow-control window. */
	void (*on_data)(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n);
	/* The peer finished sending (END_STREAM): shutdown(SHUT_WR) onward. */
	void (*on_eof)(void *ud, int32_t sid, void *sud);
	/* The stream ended abnormally: RST_STREAM from the peer (its error
	 * code), a stream refused by GOAWAY (REFUSED_STREAM), or the connection
	 * died (ZT_H2C_RESET_CONN_LOST). Last callback for the stream. */
	void (*on_reset)(void *ud, int32_t sid, void *sud, uint32_t code);
	/* A zt_h2c_write() that took less than offered may now take more. */
	void (*on_writable)(void *ud, int32_t sid, void *sud);
	/* The peer sent GOAWAY: no new streams here; streams above last_sid
	 * get on_reset(REFUSED_STREAM), the others may finish. */
	void (*on_goaway)(void *ud, int32_t last_sid, uint32_t code);
	/* The connection is over (err 0 after a graceful end). Flush what
	 * zt_h2c_out() still holds, close the socket, then zt_h2c_free(). */
	void (*on_closed)(void *ud, int err);
};

/* Build a WOLFSSL_CTX for HBONE. cert_pem: leaf then intermediates; key_pem:
 * its private key; roots_pem: trust roots (one or more). The client may pass
 * cert_pem = key_pem = NULL (no client certificate; servers will refuse it).
 * Server: client certificate required and verified. Client: server chain
 * verified (its identity is the caller's check in on_handshake_done).
 * Any thread (typically the control thread when certificates change; live
 * connections keep the context they were made with).
 * Returns 0, -EINVAL (unparsable PEM, key not matching the certificate,
 * no roots), -ENOMEM. */
int zt_h2c_ctx_new(enum zt_h2c_role role, const char *cert_pem, size_t cert_len,
		   const char *key_pem, size_t key_len, const char *roots_pem,
		   size_t roots_len, WOLFSSL_CTX **out);

/* Create a connection. `ctx` is referenced (the caller may free its own
 * reference at any time); `cbs` must outlive the connection. A client queues
 * its ClientHello at once: send zt_h2c_out() after this.
 * Returns 0, -EINVAL (ctx or cbs NULL), -ENOMEM. */
int zt_h2c_new(enum zt_h2c_role role, WOLFSSL_CTX *ctx, const struct zt_h2c_cbs *cbs,
	       void *ud, struct zt_h2c **out);

/* Free a connection and everything it holds, in any state, without any
 * callback. Never from inside a callback. NULL is allowed. */
void zt_h2c_free(struct zt_h2c *c);

/* Ciphertext from the socket. Consumes all n bytes (wolfSSL keeps partial
 * records); `p` may be reused when it returns. Drives the handshake,
 * decrypts, runs HTTP/2, fires callbacks. Not from this connection's own
 * callbacks. Returns 0 (alive, or ended gracefully: see zt_h2c_closed()),
 * the error the connection died of during this call (see the top),
 * -ESHUTDOWN if it was already closed, -EINVAL from a callback. */
int zt_h2c_feed(struct zt_h2c *c, const uint8_t *p, size_t n);

/* The socket reached EOF (or failed). The connection ends: 0 if nothing was
 * open, else -ECONNRESET; open streams get on_reset(ZT_H2C_RESET_CONN_LOST).
 * Returns the connection's error. */
int zt_h2c_feed_eof(struct zt_h2c *c);

/* Queued ciphertext: the first contiguous piece (*p, return value; 0 when
 * nothing is queued), or up to `max` pieces as an iovec (returns the count).
 * The bytes stay put until zt_h2c_out_done(). */
size_t zt_h2c_out(struct zt_h2c *c, const uint8_t **p);
int zt_h2c_out_iov(struct zt_h2c *c, struct iovec *iov, int max);
/* Total queued ciphertext in bytes. */
size_t zt_h2c_out_pending(const struct zt_h2c *c);
/* The socket took n bytes from the front of the queue (n <= pending). When
 * the queue falls below ZT_H2C_OUT_LIMIT, paused output resumes and
 * on_writable may fire. */
void zt_h2c_out_done(struct zt_h2c *c, size_t n);

/* Client: open a tunnel. `authority` is "ip:port" ("[v6]:port"); forwarded,
 * baggage and traceparent are sent when not NULL. May be called before the
 * handshake finishes (the request goes out right after it). *sid receives the
 * stream id; `sud` comes back in the stream's callbacks.
 * Returns 0, -EINVAL (not a client, empty authority), -EBUSY (stream limit:
 * min(zt_h2c_set_max_streams, the server's SETTINGS_MAX_CONCURRENT_STREAMS)),
 * -ESHUTDOWN (GOAWAY sent or received, or dead), -ENOMEM. */
int zt_h2c_connect(struct zt_h2c *c, const char *authority, const char *forwarded,
		   const char *baggage, const char *traceparent, void *sud, int32_t *sid);

/* Client: streams per connection (default ZT_H2C_CLIENT_MAX_STREAMS). */
void zt_h2c_set_max_streams(struct zt_h2c *c, uint32_t n);
/* Client: how many more zt_h2c_connect() calls would succeed now. */
uint32_t zt_h2c_streams_available(const struct zt_h2c *c);
/* Streams h2conn is tracking (open, or closing with frames still queued). */
uint32_t zt_h2c_streams(const struct zt_h2c *c);

/* Server: answer a CONNECT. 2xx opens the tunnel (zt_h2c_write may follow);
 * anything else ends the stream (HEADERS with END_STREAM, then RST_STREAM
 * NO_ERROR if the client is still sending) and its callbacks stop.
 * Returns 0, -EINVAL (not a server, status outside 200..599), -ENOENT,
 * -EALREADY, -ESHUTDOWN, -ENOMEM. */
int zt_h2c_respond(struct zt_h2c *c, int32_t sid, int status);

/* Send tunnel bytes. Encrypts straight from `p` (nothing is kept after the
 * call returns) and returns how many bytes were taken: limited by the peer's
 * stream and connection windows and by ZT_H2C_OUT_LIMIT. When it takes less
 * than n (possibly 0), on_writable fires once more can go (unless the stream
 * resets first). Inside an nghttp2-driven callback (on_data, on_connect, ...)
 * it takes nothing and on_writable follows right after.
 * Returns bytes taken (>= 0), -EINVAL (n == 0), -ENOENT, -ENOTCONN, -EPIPE,
 * -ESHUTDOWN, -ENOMEM. */
ssize_t zt_h2c_write(struct zt_h2c *c, int32_t sid, const uint8_t *p, size_t n);

/* Finish the write side: an empty DATA frame with END_STREAM (ztunnel's FIN).
 * Returns 0, -ENOENT, -ENOTCONN, -EPIPE, -ESHUTDOWN. */
int zt_h2c_close_write(struct zt_h2c *c, int32_t sid);

/* RST_STREAM with `code` (an HTTP/2 error code; CANCEL for a reset relayed
 * from TCP). The stream's callbacks stop; unconsumed bytes are released.
 * Returns 0, -ENOENT, -ESHUTDOWN. */
int zt_h2c_reset(struct zt_h2c *c, int32_t sid, uint32_t code);

/* A received record's plaintext, refcounted. */
struct zt_h2c_blk_pool;
struct zt_h2c_blk {
	uint32_t refs;
	struct zt_h2c_blk_pool *pool; /* where it goes back, or NULL: free() */
	struct zt_h2c_blk *next;      /* on the pool's free list */
	uint8_t data[ZT_TLSREC_BODY_MAX];
};

/* Spare blocks for the connections of one thread (a shard's): a record's
 * block comes from here and goes back when its last holder lets go, so a
 * busy flow reuses a few cache-warm blocks instead of a malloc and a free
 * per record. At most `keep` spares are kept. */
struct zt_h2c_blk_pool {
	struct zt_h2c_blk *free;
	unsigned n, keep;
};
/* Take this connection's blocks from `pool` (set before the handshake ends;
 * without one, each block is malloc'd and freed). */
void zt_h2c_set_blk_pool(struct zt_h2c *c, struct zt_h2c_blk_pool *pool);
/* Free the spares; every block taken from the pool must be back. */
void zt_h2c_blk_pool_drain(struct zt_h2c_blk_pool *pool);

/* From inside on_data: keep the `n` bytes at `p` (the call's payload, or
 * part of it) where they are, in the record block they were decrypted into,
 * instead of copying them. Returns the block with a reference taken for
 * the caller (release with zt_h2c_blk_put; the bytes stay valid until
 * then, also after the connection is freed), or NULL when the payload is
 * not in a block (records left to wolfSSL): copy it then. A block is
 * ZT_TLSREC_BODY_MAX bytes whatever part of it is kept. */
struct zt_h2c_blk *zt_h2c_hold(struct zt_h2c *c, const uint8_t *p, size_t n);
void zt_h2c_blk_put(struct zt_h2c_blk *b);

/* `n` bytes delivered by on_data left the owner's buffers: reopen the peer's
 * window by that much (a WINDOW_UPDATE once 1/16 of the stream's window,
 * and of the connection's, is consumed). After the stream closed, it is a no-op.
 * Returns 0, -ENOENT (stream gone; nothing to do), -ESHUTDOWN. */
int zt_h2c_consumed(struct zt_h2c *c, int32_t sid, size_t n);

/* Graceful drain: GOAWAY (last stream processed so far, NO_ERROR), no new
 * streams; the connection closes once its streams are done.
 * Returns 0, -ESHUTDOWN (already dead), -ENOMEM. */
int zt_h2c_goaway(struct zt_h2c *c);

/* Kill the connection now (for example: the peer identity is not the one
 * expected). Queues a TLS alert or HTTP/2 GOAWAY as fits, resets streams
 * (on_reset CONN_LOST), fires on_closed(err). err < 0. */
void zt_h2c_abort(struct zt_h2c *c, int err, const char *why);

/* Keepalive: call with a monotonic clock in ms, at least at zt_h2c_deadline().
 * Sends PING 10 s after the handshake and 10 s after each acknowledgement;
 * no acknowledgement within 20 s kills the connection.
 * Returns 0, or -ETIMEDOUT (and the connection is dead), or the error of an
 * already dead connection. */
int zt_h2c_tick(struct zt_h2c *c, uint64_t now_ms);
/* When zt_h2c_tick() next has something to do (UINT64_MAX: nothing). */
uint64_t zt_h2c_deadline(const struct zt_h2c *c);

/* State. */
bool zt_h2c_handshake_done(const struct zt_h2c *c);
bool zt_h2c_closed(const struct zt_h2c *c);
/* 0 while alive or after a graceful end; the error otherwise. */
int zt_h2c_error(const struct zt_h2c *c);
const char *zt_h2c_error_detail(const struct zt_h2c *c);

/* Peer certificate URI SANs (after the handshake): the idx-th one, or NULL. */
const char *zt_h2c_peer_uri(const struct zt_h2c *c, unsigned idx);
/* Is `uri` among the peer's URI SANs? */
bool zt_h2c_peer_has_uri(const struct zt_h2c *c, const char *uri);
/* Negotiated TLS cipher suite name (wolfSSL's), for logs; "" before. */
const char *zt_h2c_cipher(const struct zt_h2c *c);

/* Parse a CONNECT :authority the way ztunnel does. Returns 0 or -EINVAL. */
int zt_h2c_parse_authority(const char *s, size_t len, struct zt_h2c_authority *out);

/* Records. Once the handshake is done a connection seals and opens its TLS
 * records itself (hbone/tlsrec.c) when wolfSSL has the secret callback and
 * streaming AES-GCM (ZT_TLSREC), else wolfSSL keeps doing it. The default
 * for new connections (returns what is in force: false without ZT_TLSREC),
 * and per connection before its handshake ends (-EINVAL after, or when not
 * built in). zt_h2c_own_records: are this connection's records ours? */
bool zt_h2c_own_records_default(bool on);
int zt_h2c_set_own_records(struct zt_h2c *c, bool on);
bool zt_h2c_own_records(const struct zt_h2c *c);
/* Our records: send a KeyUpdate after n records under one key (0: the
 * default, 2^23); KeyUpdates sent so far (and received, in *received). */
void zt_h2c_set_key_update_records(struct zt_h2c *c, uint64_t n);
uint64_t zt_h2c_key_updates(const struct zt_h2c *c, uint64_t *received);

#endif
