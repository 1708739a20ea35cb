/* h2conn.c - one HBONE connection: wolfSSL TLS 1.3 under nghttp2, no I/O.
 *
 * Bytes in:  zt_h2c_feed() -> wolfSSL's receive callback copies them into
 *            wolfSSL's record buffer -> decrypted in place -> wolfSSL_read()
 *            copies a record's plaintext into c->scratch -> nghttp2 parses it
 *            and hands DATA payloads to on_data as pointers into c->scratch.
 * Bytes out: zt_h2c_write() lends the caller's buffer to nghttp2 (NO_COPY
 *            data provider) -> send_data_cb() gives the 9-byte frame header
 *            and the payload to wolfSSL_write() (which copies into its record
 *            buffer and encrypts in place) -> wolfSSL's send callback appends
 *            the record to the output queue -> zt_h2c_out() -> socket.
 *
 * That is the path while the handshake runs, and for good with a wolfSSL
 * built without the secret callback. Normally (ZT_TLSREC) wolfSSL only does
 * the handshake: it gets exactly the handshake's records, hands over the
 * application traffic secrets, and from then on records are sealed and
 * opened here (hbone/tlsrec.c):
 * Bytes in:  zt_h2c_feed() -> zt_tlsrec_open() decrypts each record as its
 *            bytes arrive, from the caller's buffer into c->blk (a
 *            refcounted block) -> once authenticated, nghttp2 parses it and
 *            hands DATA payloads to on_data as pointers into the block. The
 *            owner may keep the block (zt_h2c_hold) and send the payload
 *            from where it was decrypted; the next record then gets a new
 *            block.
 * Bytes out: DATA frame header (with any small frames gathered in
 *            c->scratch) and the payload, still in the caller's buffer, are
 *            encrypted by zt_tlsrec_seal() straight into the output queue.
 * Copies per tunnel byte, beyond the kernel's and the cipher's own pass: in,
 * none here (and none in the owner if it holds the block); out, none (payload tails
 * up to COPY_MAX are gathered with the next frame's header). With wolfSSL's
 * records: in, two (into wolfSSL's record buffer; record plaintext into
 * c->scratch); out, two (wolfSSL_write into its record buffer, then its
 * record into our queue).
 *
 * Small things (HEADERS, WINDOW_UPDATE, PING, SETTINGS, DATA frame headers,
 * DATA payloads up to COPY_MAX) are gathered in c->scratch and encrypted as
 * one TLS record when the pump finishes or the record is full, so a burst of
 * control frames costs one record, not one each.
 *
 * Re-entrancy. Callbacks fire from inside nghttp2 (in_h2 > 0: on_connect,
 * on_response, on_data, on_eof, on_reset, on_goaway) or from settle() after
 * nghttp2 returned (on_writable, on_handshake_done, on_closed and the resets
 * of a dying connection). nghttp2 must not be re-entered for sending from
 * its own callbacks, so API calls made there only queue (submit/resume) and
 * the outermost call pumps when it unwinds (depth counts API nesting).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/openssl/x509v3.h> /* GEN_URI */

#include <nghttp2/nghttp2.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "hbone/h2conn.h"
#include "hbone/tlsrec.h"

#define TLS_RECORD_MAX 16384u /* largest TLS plaintext record */
#define COPY_MAX 2048u        /* DATA payloads up to this share a record with their header */
/* Output queue block: four full records of our own (or 64 KiB of wolfSSL's). */
#define OUT_CHUNK (4u * ZT_TLSREC_WIRE(ZT_TLSREC_PLAIN_MAX))
/* KeyUpdate after this many records under one key: far below AES-GCM's
 * limit of 2^24.5 full records (RFC 8446 5.5). */
#define KEY_UPDATE_RECORDS (1ull << 23)
#define HS_MSG_MAX (64u << 10) /* largest post-handshake message accepted */

/* New connections seal and open their own records (zt_h2c_own_records_default). */
static bool own_records_default = ZT_TLSREC;
#define MAX_URIS 4u           /* peer URI SANs kept */
#define PING_DRAIN 0x647261696e000001ull /* opaque of the drain PING ("drain") */

/* ztunnel's TLS 1.3 suites, in its order (src/tls/lib.rs provider()). */
static const char ZT_CIPHERS[] = "TLS13-AES256-GCM-SHA384:TLS13-AES128-GCM-SHA256";

struct out_chunk {
	struct out_chunk *next;
	uint32_t off, len; /* sent up to off, filled up to len */
	uint8_t data[OUT_CHUNK];
};

/* One stream. Linked on its connection until nghttp2 forgets the stream (or
 * never opens it); `active` says whether the owner still gets callbacks. */
struct h2s {
	struct h2s *next, *prev;
	struct h2s *due_next, *due_prev; /* on c->due while writable_due */
	int32_t id;
	void *sud;
	/* request headers while they arrive (server); freed after on_connect */
	char *method, *authority, *forwarded, *baggage, *traceparent;
	size_t hdr_bytes;
	int status; /* response :status (client) */
	/* the write in progress (zt_h2c_write) */
	const uint8_t *wp;
	size_t wn, woff;
	const uint8_t *frame_src; /* payload of the DATA frame being sent */
	uint64_t unconsumed;      /* delivered by on_data, not yet consumed */
	uint32_t credit;          /* consumed, not yet returned by WINDOW_UPDATE */
	bool active;              /* owner callbacks still owed */
	bool established;         /* 2xx sent (server) or received (client) */
	bool responded;           /* server: answered */
	bool eof_in;              /* END_STREAM received */
	bool wr_closed;           /* owner finished writing (END_STREAM queued) */
	bool want_writable;       /* a write took less than offered */
	bool writable_due;        /* fire on_writable at the next settle */
	bool out_blocked;         /* paused by ZT_H2C_OUT_LIMIT */
	bool rst_after_headers;   /* refused: RST_STREAM(NO_ERROR) once HEADERS left */
};

struct zt_h2c {
	enum zt_h2c_role role;
	uint32_t conn_credit; /* consumed, not yet returned to the connection window */
	const struct zt_h2c_cbs *cbs;
	void *ud;
	WOLFSSL *ssl;
	nghttp2_session *h2;

	/* input lent by zt_h2c_feed(), read by tls_recv_cb() */
	const uint8_t *in;
	size_t in_len, in_off;
	bool in_eof;

	/* ciphertext queue; bytes never move until zt_h2c_out_done() */
	struct out_chunk *out_head, *out_tail, *out_spare;
	size_t out_pending;
	bool oom; /* an output append failed */

	uint32_t stage_len; /* plaintext gathered in scratch for the next record */

	unsigned depth; /* API calls on the stack */
	unsigned in_h2; /* inside nghttp2 (mem_recv / mem_send) */

	bool hs_done, hs_reported;
	bool dying;   /* failure or end recorded; teardown at the next settle */
	bool dead;    /* torn down: on_closed fired */
	bool tls_broken;   /* no TLS output possible any more */
	bool send_goaway;  /* teardown: terminate the HTTP/2 session first */
	bool goaway_sent, goaway_recv, drain_ping;
	int err;
	uint32_t goaway_code; /* teardown GOAWAY code */
	int end_err;          /* error to report at a graceful-looking end */
	char detail[160];

	struct h2s streams; /* all streams (sentinel) */
	struct h2s due;     /* streams owed on_writable (sentinel, due_* links) */
	uint32_t n_streams;
	uint32_t max_streams;
	uint32_t n_out_blocked;
	bool h2_started; /* HTTP/2 bytes have gone out */

	bool ping_armed, ping_out, ping_acked;
	uint64_t ping_next, ping_sent, ping_seq;

	char *uris[MAX_URIS];
	unsigned n_uris;
	char cipher[48];

	/* Our own record layer (ZT_TLSREC). Until the handshake ends, wolfSSL
	 * is fed whole records only (hs_hdr/hs_left track where one ends) and
	 * its secret callback leaves the application traffic secrets here. */
	bool own_records;   /* wanted: switch at the end of the handshake */
	bool rl;            /* switched: records are sealed and opened here */
	bool ku_sending;    /* a KeyUpdate is being sealed */
	uint8_t hs_hdr[ZT_TLSREC_HDR], hs_hdr_len;
	uint32_t hs_left;   /* bytes of the current handshake record not yet given */
	uint8_t sec_client[ZT_TLSREC_SECRET_MAX], sec_server[ZT_TLSREC_SECRET_MAX];
	uint8_t sec_client_len, sec_server_len;
	struct zt_tlsrec_key tx;
	struct zt_tlsrec_rx *rx;
	struct zt_h2c_blk *blk; /* rx->plain's block (one reference is ours) */
	struct zt_h2c_blk_pool *blk_pool;
	uint8_t *hs_msg;     /* post-handshake messages being reassembled */
	size_t hs_msg_len;
	uint64_t ku_records; /* KeyUpdate after this many records */

	/* wolfSSL_read() target during feed, record staging during the pump;
	 * the two never overlap (the pump runs only between reads). */
	uint8_t scratch[TLS_RECORD_MAX];
};

static void settle(struct zt_h2c *c);

/* ---- small helpers -------------------------------------------------- */

static struct zt_h2c_blk *blk_new(struct zt_h2c_blk_pool *pool)
{
	struct zt_h2c_blk *b = pool ? pool->free : NULL;
	if (b) {
		pool->free = b->next;
		pool->n--;
	} else if (!(b = malloc(sizeof(*b)))) {
		return NULL;
	}
	b->refs = 1;
	b->pool = pool;
	return b;
}

void zt_h2c_blk_put(struct zt_h2c_blk *b)
{
	if (!b || --b->refs)
		return;
	struct zt_h2c_blk_pool *pool = b->pool;
	if (!pool || pool->n >= pool->keep) {
		free(b);
		return;
	}
	b->next = pool->free;
	pool->free = b;
	pool->n++;
}

void zt_h2c_set_blk_pool(struct zt_h2c *c, struct zt_h2c_blk_pool *pool)
{
	c->blk_pool = pool;
}

void zt_h2c_blk_pool_drain(struct zt_h2c_blk_pool *pool)
{
	for (struct zt_h2c_blk *b = pool->free, *n; b; b = n) {
		n = b->next;
		free(b);
	}
	pool->free = NULL;
	pool->n = 0;
}

struct zt_h2c_blk *zt_h2c_hold(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	struct zt_h2c_blk *b = c->blk; /* set only with our own records */
	if (!b)
		return NULL;
	uintptr_t lo = (uintptr_t)b->data, at = (uintptr_t)p;
	if (at < lo || at - lo > sizeof(b->data) || n > sizeof(b->data) - (at - lo))
		return NULL;
	b->refs++;
	return b;
}

static void enter(struct zt_h2c *c)
{
	c->depth++;
}

/* Leave an API call; the outermost one pumps output and fires what is due. */
static void leave(struct zt_h2c *c)
{
	if (c->depth == 1)
		settle(c);
	c->depth--;
}

static int dead_err(const struct zt_h2c *c)
{
	return c->err ? c->err : -ESHUTDOWN;
}

/* Record the connection's end. The first reason wins; teardown (callbacks,
 * final frames) happens in settle() when no nghttp2 or wolfSSL call is on
 * the stack. */
static void fail(struct zt_h2c *c, int err, bool goaway, uint32_t code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void fail(struct zt_h2c *c, int err, bool goaway, uint32_t code, const char *fmt, ...)
{
	if (c->dying)
		return;
	c->dying = true;
	c->err = err;
	c->send_goaway = goaway;
	c->goaway_code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
}

static struct h2s *stream_new(struct zt_h2c *c)
{
	struct h2s *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->next = c->streams.next;
	s->prev = &c->streams;
	c->streams.next->prev = s;
	c->streams.next = s;
	c->n_streams++;
	return s;
}

static void stream_free_headers(struct h2s *s)
{
	free(s->method);
	free(s->authority);
	free(s->forwarded);
	free(s->baggage);
	free(s->traceparent);
	s->method = s->authority = s->forwarded = s->baggage = s->traceparent = NULL;
}

static void stream_unlink_free(struct zt_h2c *c, struct h2s *s)
{
	s->prev->next = s->next;
	s->next->prev = s->prev;
	c->n_streams--;
	if (s->writable_due) {
		s->due_prev->due_next = s->due_next;
		s->due_next->due_prev = s->due_prev;
	}
	if (s->out_blocked)
		c->n_out_blocked--;
	stream_free_headers(s);
	free(s);
}

/* nghttp2 knows streams once their HEADERS went out; a client stream whose
 * request is still queued is only on our list. */
static struct h2s *stream_find(struct zt_h2c *c, int32_t sid)
{
	if (sid <= 0)
		return NULL;
	struct h2s *s = nghttp2_session_get_stream_user_data(c->h2, sid);
	if (s)
		return s;
	for (s = c->streams.next; s != &c->streams; s = s->next)
		if (s->id == sid)
			return s;
	return NULL;
}

static void set_writable_due(struct zt_h2c *c, struct h2s *s)
{
	if (!s->writable_due) {
		s->writable_due = true;
		s->due_next = &c->due;
		s->due_prev = c->due.due_prev;
		c->due.due_prev->due_next = s;
		c->due.due_prev = s;
	}
}

static void set_out_blocked(struct zt_h2c *c, struct h2s *s)
{
	if (!s->out_blocked) {
		s->out_blocked = true;
		c->n_out_blocked++;
	}
}

/* Flow control: we send WINDOW_UPDATE ourselves (no_auto_window_update and
 * never nghttp2_session_consume), for a stream once 1/16 of its window was
 * consumed and for the connection once 1/16 of its window. nghttp2 would wait
 * for half a window: a fast tunnel then sat idle (measured: ~40% of the time,
 * 3.4 Gbit/s; with 1/16, 5.3-5.6 Gbit/s) while that half crossed the kernel
 * and our buffers. The windows themselves stay ztunnel's. */
#define CREDIT_STEP_STREAM (ZT_H2C_STREAM_WINDOW / 16)
#define CREDIT_STEP_CONN (ZT_H2C_CONN_WINDOW / 16)

static int credit(struct zt_h2c *c, struct h2s *s, int32_t sid, size_t n)
{
	int rv = 0;
	c->conn_credit += (uint32_t)n;
	if (c->conn_credit >= CREDIT_STEP_CONN) {
		rv = nghttp2_submit_window_update(c->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)c->conn_credit);
		c->conn_credit = 0;
	}
	if (s && rv == 0) {
		s->credit += (uint32_t)n;
		if (s->credit >= CREDIT_STEP_STREAM) {
			/* fails harmlessly if the stream has closed meanwhile */
			if (nghttp2_submit_window_update(c->h2, NGHTTP2_FLAG_NONE, sid,
							 (int32_t)s->credit) == NGHTTP2_ERR_NOMEM)
				rv = NGHTTP2_ERR_NOMEM;
			s->credit = 0;
		}
	}
	return rv;
}

/* Give bytes the owner will never consume back to the connection window. */
static void release_unconsumed(struct zt_h2c *c, struct h2s *s)
{
	if (s->unconsumed) {
		if (credit(c, NULL, 0, (size_t)s->unconsumed) == NGHTTP2_ERR_NOMEM)
			c->oom = true;
		s->unconsumed = 0;
	}
}

/* ---- output queue ---------------------------------------------------- */

/* A new empty block at the end of the queue (the spare one if kept). */
static struct out_chunk *out_new_tail(struct zt_h2c *c)
{
	struct out_chunk *nc = c->out_spare;
	if (nc)
		c->out_spare = NULL;
	else if (!(nc = malloc(sizeof(*nc))))
		return NULL;
	nc->next = NULL;
	nc->off = nc->len = 0;
	if (c->out_tail)
		c->out_tail->next = nc;
	else
		c->out_head = nc;
	c->out_tail = nc;
	return nc;
}

static int out_append(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	while (n) {
		struct out_chunk *t = c->out_tail;
		if ((!t || t->len == OUT_CHUNK) && !(t = out_new_tail(c)))
			return -ENOMEM;
		size_t k = OUT_CHUNK - t->len;
		if (k > n)
			k = n;
		memcpy(t->data + t->len, p, k);
		t->len += (uint32_t)k;
		c->out_pending += k;
		p += k;
		n -= k;
	}
	return 0;
}

/* Contiguous room for n bytes (n <= OUT_CHUNK) at the end of the queue;
 * out_commit() makes what was written there pending. */
static uint8_t *out_reserve(struct zt_h2c *c, size_t n)
{
	struct out_chunk *t = c->out_tail;
	if (t && OUT_CHUNK - t->len >= n)
		return t->data + t->len;
	if (t && t->off == t->len) {
		/* All of it sent (only the last block stays): start it over. */
		t->off = t->len = 0;
		return t->data;
	}
	struct out_chunk *nc = out_new_tail(c);
	return nc ? nc->data : NULL;
}

static void out_commit(struct zt_h2c *c, size_t n)
{
	c->out_tail->len += (uint32_t)n;
	c->out_pending += n;
}

/* ---- wolfSSL I/O callbacks ------------------------------------------ */

/* While the handshake runs, give wolfSSL no byte past the end of the
 * record it is reading: what follows the last handshake record is for our
 * record layer. Returns how many of the k bytes at p may go. */
static size_t hs_clip(struct zt_h2c *c, const uint8_t *p, size_t k)
{
	size_t i = 0;
	while (i < k) {
		if (c->hs_hdr_len < ZT_TLSREC_HDR) {
			c->hs_hdr[c->hs_hdr_len++] = p[i++];
			if (c->hs_hdr_len < ZT_TLSREC_HDR)
				continue;
			c->hs_left = (uint32_t)c->hs_hdr[3] << 8 | c->hs_hdr[4];
		} else {
			size_t t = k - i < c->hs_left ? k - i : c->hs_left;
			i += t;
			c->hs_left -= (uint32_t)t;
		}
		if (c->hs_hdr_len == ZT_TLSREC_HDR && !c->hs_left) {
			c->hs_hdr_len = 0; /* record end: stop here */
			break;
		}
	}
	return i;
}

static int tls_recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct zt_h2c *c = ctx;
	size_t avail = c->in_len - c->in_off;
	if (avail == 0)
		return c->in_eof ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
	size_t k = (size_t)sz < avail ? (size_t)sz : avail;
	if (c->own_records && !c->hs_done)
		k = hs_clip(c, c->in + c->in_off, k);
	memcpy(buf, c->in + c->in_off, k);
	c->in_off += k;
	return (int)k;
}

static int tls_send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct zt_h2c *c = ctx;
	if (out_append(c, (const uint8_t *)buf, (size_t)sz)) {
		c->oom = true;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	return sz;
}

/* Map a wolfSSL error to the errno the header promises. */
static int tls_errno(int e)
{
	switch (e) {
	case ASN_NO_SIGNER_E:
	case ASN_SELF_SIGNED_E:
	case ASN_SIG_CONFIRM_E:
	case ASN_SIG_OID_E:
	case ASN_SIG_HASH_E:
	case ASN_SIG_KEY_E:
	case ASN_PATHLEN_SIZE_E:
	case ASN_PATHLEN_INV_E:
	case VERIFY_CERT_ERROR:
	case VERIFY_SIGN_ERROR:
	case DOMAIN_NAME_MISMATCH:
		return -EKEYREJECTED;
	case ASN_AFTER_DATE_E:
	case ASN_BEFORE_DATE_E:
		return -EKEYEXPIRED;
	case NO_PEER_CERT:
		return -ENOKEY;
	case UNKNOWN_ALPN_PROTOCOL_NAME_E:
		return -ENOPROTOOPT;
	case FATAL_ERROR:
		return -ECONNREFUSED;
	case MEMORY_E:
	case MEMORY_ERROR:
		return -ENOMEM;
	case SOCKET_PEER_CLOSED_E:
	case ZERO_RETURN:
		return -ECONNRESET;
	default:
		return -EPROTO;
	}
}

static void tls_fail(struct zt_h2c *c, int e, const char *when)
{
	char buf[WOLFSSL_MAX_ERROR_SZ];
	wolfSSL_ERR_error_string_n((unsigned long)e, buf, sizeof(buf));
	int err = c->oom ? -ENOMEM : tls_errno(e);
	/* wolfSSL has queued its alert, if any; nothing more can be sent. */
	c->tls_broken = true;
	fail(c, err, false, 0, "TLS %s failed: wolfSSL %d: %s", when, e, buf);
}

/* Encrypt n plaintext bytes into TLS records of at most 16 KiB. */
static int tls_write(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	while (n) {
		int k = n > TLS_RECORD_MAX ? (int)TLS_RECORD_MAX : (int)n;
		int r = wolfSSL_write(c->ssl, p, k);
		if (r != k) {
			tls_fail(c, wolfSSL_get_error(c->ssl, r), "write");
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* ---- our own records (ZT_TLSREC) -------------------------------------- */

static int send_key_update(struct zt_h2c *c, bool request);

/* Seal one record (n plaintext bytes in the segments) into the queue. */
static int rl_seal(struct zt_h2c *c, uint8_t type, const struct iovec *v, int nv, size_t n)
{
	if (c->tx.seq >= c->ku_records && !c->ku_sending && send_key_update(c, false))
		return -1;
	uint8_t *o = out_reserve(c, ZT_TLSREC_WIRE(n));
	if (!o) {
		c->oom = true;
		return -1;
	}
	ssize_t r = zt_tlsrec_seal(&c->tx, type, v, nv, o);
	if (r < 0) {
		c->tls_broken = true;
		fail(c, -EIO, false, 0, "TLS record sealing failed (%zd)", r);
		return -1;
	}
	out_commit(c, (size_t)r);
	return 0;
}

/* KeyUpdate (RFC 8446 4.6.3) under the current key, then the next key. */
static int send_key_update(struct zt_h2c *c, bool request)
{
	uint8_t m[5] = {24, 0, 0, 1, request ? 1 : 0};
	struct iovec v = {m, sizeof(m)};
	c->ku_sending = true;
	int r = rl_seal(c, ZT_TLSREC_HANDSHAKE, &v, 1, sizeof(m));
	c->ku_sending = false;
	if (r)
		return r;
	if (zt_tlsrec_key_update(&c->tx)) {
		c->tls_broken = true;
		fail(c, -EIO, false, 0, "TLS KeyUpdate: deriving the next key failed");
		return -1;
	}
	ZT_DEBUG("hbone", "TLS KeyUpdate sent (key %llu)", (unsigned long long)c->tx.generation);
	return 0;
}

static void send_alert(struct zt_h2c *c, uint8_t level, uint8_t desc)
{
	uint8_t a[2] = {level, desc};
	struct iovec v = {a, sizeof(a)};
	rl_seal(c, ZT_TLSREC_ALERT, &v, 1, sizeof(a));
}

/* Encrypt the concatenation of the segments as records of up to 16 KiB. */
static int rec_write(struct zt_h2c *c, const struct iovec *v, int nv)
{
	if (!c->rl) {
		for (int i = 0; i < nv; i++)
			if (v[i].iov_len && tls_write(c, v[i].iov_base, v[i].iov_len))
				return -1;
		return 0;
	}
	struct iovec seg[4];
	int ns = 0;
	size_t n = 0, off = 0;
	for (int i = 0; i < nv;) {
		size_t left = v[i].iov_len - off;
		if (!left) {
			i++;
			off = 0;
			continue;
		}
		size_t k = ZT_TLSREC_PLAIN_MAX - n;
		if (k > left)
			k = left;
		seg[ns].iov_base = (uint8_t *)v[i].iov_base + off;
		seg[ns].iov_len = k;
		ns++;
		n += k;
		off += k;
		if (n == ZT_TLSREC_PLAIN_MAX || ns == (int)(sizeof(seg) / sizeof(seg[0]))) {
			if (rl_seal(c, ZT_TLSREC_APPDATA, seg, ns, n))
				return -1;
			ns = 0;
			n = 0;
		}
	}
	return n ? rl_seal(c, ZT_TLSREC_APPDATA, seg, ns, n) : 0;
}

static int stage_flush(struct zt_h2c *c)
{
	if (!c->stage_len)
		return 0;
	struct iovec v = {c->scratch, c->stage_len};
	c->stage_len = 0;
	return rec_write(c, &v, 1);
}

static int stage_put(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	while (n) {
		if (c->stage_len == sizeof(c->scratch) && stage_flush(c))
			return -1;
		size_t k = sizeof(c->scratch) - c->stage_len;
		if (k > n)
			k = n;
		memcpy(c->scratch + c->stage_len, p, k);
		c->stage_len += (uint32_t)k;
		p += k;
		n -= k;
	}
	return 0;
}

/* ---- nghttp2 callbacks ----------------------------------------------- */

static ssize_t data_read_cb(nghttp2_session *session, int32_t sid, uint8_t *buf,
			    size_t length, uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct zt_h2c *c = ud;
	struct h2s *s = src->ptr;
	if (s->wp && s->woff < s->wn) {
		if (c->out_pending >= ZT_H2C_OUT_LIMIT) {
			set_out_blocked(c, s);
			return NGHTTP2_ERR_DEFERRED;
		}
		size_t k = s->wn - s->woff;
		if (k > length)
			k = length;
		s->frame_src = s->wp + s->woff;
		s->woff += k;
		*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
		return (ssize_t)k;
	}
	if (s->wr_closed) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	/* nghttp2 would send now: the windows are open. */
	if (!s->wp && s->want_writable)
		set_writable_due(c, s);
	return NGHTTP2_ERR_DEFERRED;
}

static ssize_t data_len_cb(nghttp2_session *session, uint8_t type, int32_t sid,
			   int32_t conn_win, int32_t stream_win, uint32_t max_frame, void *ud)
{
	/* nghttp2 clamps this to the windows and the peer's max frame size. It
	 * grows its (unused, with NO_COPY) frame buffer to this size once. */
	return ZT_H2C_DATA_FRAME_MAX;
}

static int send_data_cb(nghttp2_session *session, nghttp2_frame *frame,
			const uint8_t *framehd, size_t length, nghttp2_data_source *src,
			void *ud)
{
	struct zt_h2c *c = ud;
	struct h2s *s = src->ptr;
	/* We never pad (no select_padding callback): header + payload. */
	if (stage_put(c, framehd, 9))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (!length)
		return 0;
	if (length <= COPY_MAX && c->stage_len + length <= sizeof(c->scratch)) {
		if (stage_put(c, s->frame_src, length))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	} else if (c->rl) {
		/* What is gathered (this frame's header at least) and the payload
		 * share records; a short tail waits for the next frame's header. */
		size_t tail = (c->stage_len + length) % ZT_TLSREC_PLAIN_MAX;
		if (tail > COPY_MAX || tail >= length)
			tail = 0;
		struct iovec v[2] = {{c->scratch, c->stage_len},
				     {(void *)s->frame_src, length - tail}};
		c->stage_len = 0;
		if (rec_write(c, v, 2) || (tail && stage_put(c, s->frame_src + length - tail, tail)))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	} else if (stage_flush(c) || tls_write(c, s->frame_src, length)) {
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return 0;
}

static bool hdr_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && !memcmp(name, lit, len);
}

static int hdr_keep(char **slot, const uint8_t *v, size_t n, bool join)
{
	if (*slot && !join)
		return 0; /* first one wins */
	size_t old = *slot ? strlen(*slot) : 0;
	char *p = realloc(*slot, old + (old ? 1 : 0) + n + 1);
	if (!p)
		return -1;
	if (old)
		p[old++] = ',';
	memcpy(p + old, v, n);
	p[old + n] = 0;
	*slot = p;
	return 0;
}

static int on_begin_headers_cb(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct zt_h2c *c = ud;
	if (c->role != ZT_H2C_SERVER || frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct h2s *s = stream_new(c);
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST this stream */
	s->id = frame->hd.stream_id;
	nghttp2_session_set_stream_user_data(session, s->id, s);
	return 0;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
			const uint8_t *name, size_t namelen, const uint8_t *value,
			size_t valuelen, uint8_t flags, void *ud)
{
	struct zt_h2c *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct h2s *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!s)
		return 0;
	if (c->role == ZT_H2C_CLIENT) {
		if (hdr_is(name, namelen, ":status") && valuelen == 3) {
			int st = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
			s->status = st;
		}
		return 0;
	}
	if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	/* RFC 9113 6.5.2 accounting, against ztunnel's 64 KiB server limit. */
	s->hdr_bytes += namelen + valuelen + 32;
	if (s->hdr_bytes > ZT_H2C_SERVER_MAX_HEADERS)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	int r = 0;
	if (hdr_is(name, namelen, ":method"))
		r = hdr_keep(&s->method, value, valuelen, false);
	else if (hdr_is(name, namelen, ":authority"))
		r = hdr_keep(&s->authority, value, valuelen, false);
	else if (hdr_is(name, namelen, "forwarded"))
		r = hdr_keep(&s->forwarded, value, valuelen, false);
	else if (hdr_is(name, namelen, "baggage"))
		r = hdr_keep(&s->baggage, value, valuelen, true);
	else if (hdr_is(name, namelen, "traceparent"))
		r = hdr_keep(&s->traceparent, value, valuelen, false);
	return r ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static const char *status_text(int status, char buf[4])
{
	buf[0] = (char)('0' + status / 100);
	buf[1] = (char)('0' + status / 10 % 10);
	buf[2] = (char)('0' + status % 10);
	buf[3] = 0;
	return buf;
}

#define NV(n, v, vl)                                                                   \
	((nghttp2_nv){.name = (uint8_t *)(n), .value = (uint8_t *)(v), .namelen = strlen(n), \
		      .valuelen = (vl), .flags = NGHTTP2_NV_FLAG_NONE})

/* Answer with a final non-2xx status and end the stream for the owner. */
static int respond_refuse(struct zt_h2c *c, struct h2s *s, int status)
{
	char st[4];
	nghttp2_nv nv = NV(":status", status_text(status, st), 3);
	s->responded = true;
	s->active = false;
	release_unconsumed(c, s);
	/* The response ends our side; if the client is still sending then, it
	 * is told to stop (RFC 9113 8.1: a complete response may be followed by
	 * RST_STREAM NO_ERROR). Only after the HEADERS left: a queued RST_STREAM
	 * makes nghttp2 drop the stream's pending HEADERS. */
	s->rst_after_headers = true;
	return nghttp2_submit_response(c->h2, s->id, &nv, 1, NULL);
}

static void deliver_eof(struct zt_h2c *c, struct h2s *s)
{
	if (s->eof_in)
		return;
	s->eof_in = true;
	if (!s->active)
		return;
	if (s->wr_closed)
		s->active = false; /* both ways done: this is the last callback */
	if (c->cbs->on_eof)
		c->cbs->on_eof(c->ud, s->id, s->sud);
}

static void dispatch_request(struct zt_h2c *c, struct h2s *s)
{
	struct zt_h2c_request req = {0};
	int status = 0;
	if (!s->method || strcmp(s->method, "CONNECT")) {
		ZT_DEBUG("hbone", "stream %d: method %s is not CONNECT: 400", s->id,
			 s->method ? s->method : "(none)");
		status = 400;
	} else if (!s->authority ||
		   zt_h2c_parse_authority(s->authority, strlen(s->authority), &req.target)) {
		ZT_DEBUG("hbone", "stream %d: bad authority \"%s\": 400", s->id,
			 s->authority ? s->authority : "");
		status = 400;
	} else if (!c->cbs->on_connect) {
		status = 503;
	} else {
		req.authority = s->authority;
		req.forwarded = s->forwarded;
		req.baggage = s->baggage;
		req.traceparent = s->traceparent;
		void *sud = NULL;
		s->active = true; /* on_connect may already respond or reset */
		int r = c->cbs->on_connect(c->ud, s->id, &req, &sud);
		if (r == 0) {
			s->sud = sud;
		} else if (s->active && !s->responded) {
			status = (r >= 200 && r <= 599) ? r : 503;
			if (status < 300)
				status = 503; /* a 2xx needs zt_h2c_respond() */
		}
	}
	stream_free_headers(s);
	if (status && !s->responded && respond_refuse(c, s, status))
		fail(c, -ENOMEM, true, NGHTTP2_INTERNAL_ERROR, "cannot queue a response");
}

static void got_response(struct zt_h2c *c, struct h2s *s, const nghttp2_frame *frame)
{
	int st = s->status;
	if (st >= 100 && st < 200)
		return; /* informational; the final response follows */
	if (!s->active)
		return;
	if (st >= 200 && st < 300) {
		s->established = true;
		if (c->cbs->on_response)
			c->cbs->on_response(c->ud, s->id, s->sud, st);
		return;
	}
	/* Refused (401, 503, ...): the stream is over for the owner. ztunnel
	 * drops such a stream, which cancels it. */
	s->active = false;
	if (c->cbs->on_response)
		c->cbs->on_response(c->ud, s->id, s->sud, st);
	release_unconsumed(c, s);
	nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

static int on_frame_recv_cb(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct zt_h2c *c = ud;
	struct h2s *s;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
		if (!s)
			return 0;
		if (c->role == ZT_H2C_SERVER && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			dispatch_request(c, s);
		else if (c->role == ZT_H2C_CLIENT && frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
			got_response(c, s, frame);
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			deliver_eof(c, s);
		break;
	case NGHTTP2_DATA:
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
			if (s)
				deliver_eof(c, s);
		}
		break;
	case NGHTTP2_GOAWAY:
		c->goaway_recv = true;
		if (frame->goaway.error_code != NGHTTP2_NO_ERROR && !c->end_err)
			c->end_err = -ECONNABORTED;
		ZT_DEBUG("hbone", "GOAWAY received: last stream %d, code %u",
			 frame->goaway.last_stream_id, frame->goaway.error_code);
		if (c->cbs->on_goaway)
			c->cbs->on_goaway(c->ud, frame->goaway.last_stream_id,
					  frame->goaway.error_code);
		break;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
			uint64_t v;
			memcpy(&v, frame->ping.opaque_data, 8);
			if (c->ping_out && v == c->ping_seq) {
				c->ping_out = false;
				c->ping_acked = true;
			} else if (c->drain_ping && v == PING_DRAIN) {
				/* A round trip after the shutdown notice: whatever the
				 * client started before it has arrived. */
				c->drain_ping = false;
				nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE,
						      nghttp2_session_get_last_proc_stream_id(session),
						      NGHTTP2_NO_ERROR, NULL, 0);
			}
		}
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk_cb(nghttp2_session *session, uint8_t flags, int32_t sid,
			    const uint8_t *data, size_t len, void *ud)
{
	struct zt_h2c *c = ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(session, sid);
	if (!s || !s->active || !c->cbs->on_data) {
		/* Nobody reads it: give the connection window back at once. */
		return credit(c, NULL, 0, len) == NGHTTP2_ERR_NOMEM ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
	}
	s->unconsumed += len;
	c->cbs->on_data(c->ud, sid, s->sud, data, len);
	return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t sid, uint32_t code, void *ud)
{
	struct zt_h2c *c = ud;
	struct h2s *s = nghttp2_session_get_stream_user_data(session, sid);
	if (!s)
		return 0;
	nghttp2_session_set_stream_user_data(session, sid, NULL);
	if (s->active) {
		s->active = false;
		if (c->cbs->on_reset)
			c->cbs->on_reset(c->ud, sid, s->sud, code);
	}
	/* The stream's window no longer matters; the connection's does. */
	release_unconsumed(c, s);
	stream_unlink_free(c, s);
	return 0;
}

static int on_frame_send_cb(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct zt_h2c *c = ud;
	if (frame->hd.type == NGHTTP2_HEADERS) {
		struct h2s *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
		if (s && s->rst_after_headers) {
			s->rst_after_headers = false;
			if (!nghttp2_session_get_stream_remote_close(session, s->id))
				nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id,
							  NGHTTP2_NO_ERROR);
		}
		return 0;
	}
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
	    !c->end_err) {
		c->end_err = -EPROTO;
		snprintf(c->detail, sizeof(c->detail), "HTTP/2 GOAWAY sent: %s",
			 nghttp2_http2_strerror(frame->goaway.error_code));
	}
	return 0;
}

static int on_frame_not_send_cb(nghttp2_session *session, const nghttp2_frame *frame,
				int lib_error, void *ud)
{
	struct zt_h2c *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS || c->role != ZT_H2C_CLIENT)
		return 0;
	/* A request that never left (GOAWAY received, stream cancelled): the
	 * stream was never opened, so on_stream_close will not come. */
	struct h2s *s = stream_find(c, frame->hd.stream_id);
	if (!s || nghttp2_session_find_stream(session, frame->hd.stream_id))
		return 0;
	if (s->active) {
		s->active = false;
		if (c->cbs->on_reset)
			c->cbs->on_reset(c->ud, s->id, s->sud, NGHTTP2_REFUSED_STREAM);
	}
	stream_unlink_free(c, s);
	return 0;
}

/* ---- pumping --------------------------------------------------------- */

/* Move nghttp2's output through TLS into the queue until nghttp2 is done or
 * the queue is full. */
static void pump(struct zt_h2c *c, bool even_if_dying)
{
	if (!c->hs_done || c->in_h2 || c->tls_broken || c->dead || (c->dying && !even_if_dying))
		return;
	c->in_h2++;
	for (;;) {
		if (c->out_pending >= ZT_H2C_OUT_LIMIT)
			break;
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(c->h2, &p);
		if (n < 0) {
			fail(c, n == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO, false, 0,
			     "HTTP/2 send failed: %s", nghttp2_strerror((int)n));
			break;
		}
		if (n == 0 || c->tls_broken)
			break;
		c->h2_started = true;
		if (stage_put(c, p, (size_t)n))
			break;
	}
	if (!c->tls_broken)
		stage_flush(c);
	c->in_h2--;
}

/* Pop streams off the due list one at a time: an on_writable that writes
 * may pump, and the pump may free any other stream. */
static void fire_writables(struct zt_h2c *c)
{
	while (c->due.due_next != &c->due && !c->dying) {
		struct h2s *s = c->due.due_next;
		c->due.due_next = s->due_next;
		s->due_next->due_prev = &c->due;
		s->writable_due = false;
		if (s->active && s->want_writable && !s->wr_closed) {
			s->want_writable = false;
			if (c->cbs->on_writable)
				c->cbs->on_writable(c->ud, s->id, s->sud);
		}
	}
}

/* Tear a dying connection down: last frames, resets, on_closed. */
static void teardown(struct zt_h2c *c)
{
	if (c->hs_done && !c->tls_broken) {
		/* No HTTP/2 at all to a peer refused right after the handshake:
		 * requests queued early must not reach it. */
		if (c->send_goaway && c->h2_started) {
			nghttp2_session_terminate_session(c->h2, c->goaway_code);
			pump(c, true);
		}
		if (!c->tls_broken) {
			stage_flush(c);
			if (c->rl)
				send_alert(c, 1, 0); /* close_notify */
			else
				wolfSSL_shutdown(c->ssl);
		}
	}
	c->dead = true;
	ZT_DEBUG("hbone", "HBONE connection closed: %s", c->err ? c->detail : "ok");
	if (!c->hs_reported) {
		c->hs_reported = true;
		if (c->cbs->on_handshake_done)
			c->cbs->on_handshake_done(c->ud, c->err ? c->err : -ECONNRESET, NULL);
	}
	for (struct h2s *s = c->streams.next; s != &c->streams; s = s->next) {
		if (!s->active)
			continue;
		s->active = false;
		if (c->cbs->on_reset)
			c->cbs->on_reset(c->ud, s->id, s->sud, ZT_H2C_RESET_CONN_LOST);
	}
	if (c->cbs->on_closed)
		c->cbs->on_closed(c->ud, c->err);
}

/* The HTTP/2 session has nothing left to do (GOAWAY exchanged, no streams). */
static bool h2_finished(struct zt_h2c *c)
{
	return c->hs_done && !c->drain_ping && !nghttp2_session_want_read(c->h2) &&
	       !nghttp2_session_want_write(c->h2);
}

static void settle(struct zt_h2c *c)
{
	for (int round = 0; round < 1000 && !c->dead; round++) {
		if (c->oom && !c->dying)
			fail(c, -ENOMEM, false, 0, "out of memory");
		if (c->dying) {
			teardown(c);
			return;
		}
		if (c->n_out_blocked && c->out_pending < ZT_H2C_OUT_LIMIT) {
			/* Room again: let nghttp2 ask the paused streams (data_read_cb
			 * marks them due for on_writable). */
			for (struct h2s *s = c->streams.next; s != &c->streams; s = s->next) {
				if (!s->out_blocked)
					continue;
				s->out_blocked = false;
				c->n_out_blocked--;
				nghttp2_session_resume_data(c->h2, s->id);
			}
		}
		pump(c, false);
		if (c->dying)
			continue;
		if (c->due.due_next != &c->due) {
			fire_writables(c);
			continue; /* the owner may have written */
		}
		if (h2_finished(c)) {
			char why[sizeof(c->detail)];
			snprintf(why, sizeof(why), "%s",
				 c->end_err ? c->detail : "HTTP/2 session finished");
			fail(c, c->end_err, false, 0, "%s", why);
			continue;
		}
		return;
	}
}

/* ---- TLS progress ---------------------------------------------------- */

static void grab_peer_uris(struct zt_h2c *c)
{
	WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
	if (!x)
		return;
	WOLFSSL_GENERAL_NAMES *names = wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int n = names ? wolfSSL_sk_GENERAL_NAME_num(names) : 0;
	for (int i = 0; i < n && c->n_uris < MAX_URIS; i++) {
		WOLFSSL_GENERAL_NAME *g = wolfSSL_sk_GENERAL_NAME_value(names, i);
		if (!g || g->type != GEN_URI || !g->d.uniformResourceIdentifier)
			continue;
		const unsigned char *d = wolfSSL_ASN1_STRING_data(g->d.uniformResourceIdentifier);
		int len = wolfSSL_ASN1_STRING_length(g->d.uniformResourceIdentifier);
		if (!d || len <= 0 || memchr(d, 0, (size_t)len))
			continue;
		char *u = strndup((const char *)d, (size_t)len);
		if (u)
			c->uris[c->n_uris++] = u;
	}
	if (names)
		wolfSSL_GENERAL_NAMES_free(names);
	wolfSSL_X509_free(x);
}

static void secrets_wipe(struct zt_h2c *c)
{
	explicit_bzero(c->sec_client, sizeof(c->sec_client));
	explicit_bzero(c->sec_server, sizeof(c->sec_server));
	c->sec_client_len = c->sec_server_len = 0;
}

#if ZT_TLSREC
/* wolfSSL's secret callback: keep the application traffic secrets. */
static int secret_cb(WOLFSSL *ssl, int id, const unsigned char *secret, int len, void *ctx)
{
	struct zt_h2c *c = ctx;
	if (len <= 0 || len > (int)ZT_TLSREC_SECRET_MAX)
		return 0;
	if (id == CLIENT_TRAFFIC_SECRET) {
		memcpy(c->sec_client, secret, (size_t)len);
		c->sec_client_len = (uint8_t)len;
	} else if (id == SERVER_TRAFFIC_SECRET) {
		memcpy(c->sec_server, secret, (size_t)len);
		c->sec_server_len = (uint8_t)len;
	}
	return 0;
}
#endif

/* Handshake done: take the records over from wolfSSL, which has seen
 * nothing past its last handshake record. Any trouble here leaves them with
 * wolfSSL (nothing of its state was touched). */
static void own_records_start(struct zt_h2c *c)
{
	size_t want = !strcmp(c->cipher, "TLS13-AES256-GCM-SHA384")   ? 48
		      : !strcmp(c->cipher, "TLS13-AES128-GCM-SHA256") ? 32
								       : 0;
	if (!want || c->sec_client_len != want || c->sec_server_len != want) {
		ZT_DEBUG("hbone", "TLS records stay with wolfSSL (%s, secrets %u/%u)", c->cipher,
			 c->sec_client_len, c->sec_server_len);
		secrets_wipe(c);
		return;
	}
	bool client = c->role == ZT_H2C_CLIENT;
	struct zt_tlsrec_rx *rx = calloc(1, sizeof(*rx));
	struct zt_h2c_blk *blk = blk_new(c->blk_pool);
	if (rx && blk) {
		rx->plain = blk->data;
		if (zt_tlsrec_key_init(&c->tx, client ? c->sec_client : c->sec_server, want) ||
		    zt_tlsrec_key_init(&rx->key, client ? c->sec_server : c->sec_client, want)) {
			zt_tlsrec_key_wipe(&c->tx);
			zt_tlsrec_key_wipe(&rx->key);
			free(rx);
			rx = NULL;
		}
	}
	secrets_wipe(c);
	if (!rx || !blk) {
		free(rx);
		zt_h2c_blk_put(blk);
		ZT_WARN("hbone", "TLS records stay with wolfSSL: setting up our own failed");
		return;
	}
	c->rx = rx;
	c->blk = blk;
	c->rl = true;
}

static void handshake_finished(struct zt_h2c *c)
{
	char *proto = NULL;
	unsigned short plen = 0;
	if (wolfSSL_ALPN_GetProtocol(c->ssl, &proto, &plen) != WOLFSSL_SUCCESS || plen != 2 ||
	    memcmp(proto, "h2", 2)) {
		c->tls_broken = true; /* nothing to say in HTTP/2 to this peer */
		fail(c, -ENOPROTOOPT, false, 0, "peer did not negotiate ALPN h2");
		return;
	}
	grab_peer_uris(c);
	snprintf(c->cipher, sizeof(c->cipher), "%s", wolfSSL_get_cipher_name(c->ssl));
	if (c->own_records)
		own_records_start(c);
	c->hs_done = true;
	c->hs_reported = true;
	ZT_DEBUG("hbone", "TLS handshake done: %s, peer %s", c->cipher,
		 c->n_uris ? c->uris[0] : "(no URI SAN)");
	if (c->cbs->on_handshake_done)
		c->cbs->on_handshake_done(c->ud, 0, c->n_uris ? c->uris[0] : "");
}

static void do_handshake(struct zt_h2c *c)
{
	int r = c->role == ZT_H2C_CLIENT ? wolfSSL_connect(c->ssl) : wolfSSL_accept(c->ssl);
	if (r == WOLFSSL_SUCCESS) {
		handshake_finished(c);
		return;
	}
	int e = wolfSSL_get_error(c->ssl, r);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return;
	tls_fail(c, e, "handshake");
}

/* The peer closed TLS (close_notify) or the transport. */
static void peer_gone(struct zt_h2c *c, const char *what)
{
	bool open = false;
	for (struct h2s *s = c->streams.next; s != &c->streams; s = s->next)
		open |= s->active;
	c->tls_broken = true;
	if (!c->hs_done)
		fail(c, -ECONNRESET, false, 0, "%s during the TLS handshake", what);
	else if (open)
		fail(c, -ECONNRESET, false, 0, "%s with streams open", what);
	else
		fail(c, c->end_err, false, 0, "%s", what);
}

/* Decrypted HTTP/2 bytes. */
static void h2_input(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	c->in_h2++;
	ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
	c->in_h2--;
	if (rv < 0)
		fail(c, rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO, rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC,
		     NGHTTP2_PROTOCOL_ERROR, "HTTP/2 receive failed: %s", nghttp2_strerror((int)rv));
}

/* RFC 8446 6 and its registry, the ones a peer may send us. */
static const char *tls_alert_name(unsigned a)
{
	switch (a) {
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 22: return "record_overflow";
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 116: return "certificate_required";
	case 120: return "no_application_protocol";
	default: return "unknown alert";
	}
}

static const char *alert_name(int a)
{
	switch (a) {
	case ZT_TLSREC_E_DECODE: return "malformed record";
	case ZT_TLSREC_E_UNEXPECTED: return "unexpected record or message";
	case ZT_TLSREC_E_BAD_MAC: return "record authentication failed";
	case ZT_TLSREC_E_OVERFLOW: return "record too long";
	default: return "internal error";
	}
}

/* A record we cannot accept: fatal alert, then the end. */
static void rec_refused(struct zt_h2c *c, int alert)
{
	if (!c->tls_broken)
		send_alert(c, 2, (uint8_t)alert);
	c->tls_broken = true;
	fail(c, alert == ZT_TLSREC_E_BAD_MAC ? -EBADMSG : -EPROTO, false, 0,
	     "TLS record refused: %s (alert %d)", alert_name(alert), alert);
}

static void on_alert(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	if (n != 2) {
		rec_refused(c, ZT_TLSREC_E_DECODE);
		return;
	}
	if (p[1] == 0) { /* close_notify */
		peer_gone(c, "peer sent close_notify");
		return;
	}
	if (p[1] == 90) /* user_canceled: a warning, close_notify follows */
		return;
	/* Any other alert is fatal in TLS 1.3 (6.2); wolfSSL's own records
	 * report it as FATAL_ERROR, which tls_errno() maps the same way. */
	c->tls_broken = true;
	fail(c, -ECONNREFUSED, false, 0, "peer sent TLS alert %u (%s)", p[1], tls_alert_name(p[1]));
}

/* Handshake messages after the handshake (RFC 8446 4.6): NewSessionTicket
 * (ignored: no resumption, like ztunnel) and KeyUpdate. A message may span
 * records; a KeyUpdate must end its record. */
static void on_post_handshake(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	if (c->hs_msg_len + n > HS_MSG_MAX + 4) {
		rec_refused(c, ZT_TLSREC_E_DECODE);
		return;
	}
	uint8_t *m = realloc(c->hs_msg, c->hs_msg_len + n);
	if (!m) {
		c->oom = true;
		return;
	}
	memcpy(m + c->hs_msg_len, p, n);
	c->hs_msg = m;
	c->hs_msg_len += n;
	size_t off = 0;
	while (c->hs_msg_len - off >= 4 && !c->dying) {
		uint8_t type = m[off];
		uint32_t len = (uint32_t)m[off + 1] << 16 | (uint32_t)m[off + 2] << 8 | m[off + 3];
		if (len > HS_MSG_MAX) {
			rec_refused(c, ZT_TLSREC_E_DECODE);
			return;
		}
		if (c->hs_msg_len - off - 4 < len)
			break;
		const uint8_t *b = m + off + 4;
		off += 4 + len;
		if (type == 4) /* NewSessionTicket */
			continue;
		if (type != 24) {
			rec_refused(c, ZT_TLSREC_E_UNEXPECTED);
			return;
		}
		if (len != 1 || b[0] > 1) {
			rec_refused(c, ZT_TLSREC_E_DECODE);
			return;
		}
		if (off != c->hs_msg_len) {
			rec_refused(c, ZT_TLSREC_E_UNEXPECTED);
			return;
		}
		if (zt_tlsrec_key_update(&c->rx->key)) {
			rec_refused(c, ZT_TLSREC_E_INTERNAL);
			return;
		}
		ZT_DEBUG("hbone", "TLS KeyUpdate received (key %llu%s)",
			 (unsigned long long)c->rx->key.generation, b[0] ? ", update requested" : "");
		if (b[0] && send_key_update(c, false))
			return;
	}
	c->hs_msg_len -= off;
	if (c->hs_msg_len)
		memmove(c->hs_msg, c->hs_msg + off, c->hs_msg_len);
	else {
		free(c->hs_msg);
		c->hs_msg = NULL;
	}
}

static void read_own_records(struct zt_h2c *c)
{
	while (!c->dying && c->in_off < c->in_len) {
		bool rec;
		uint8_t type;
		size_t len;
		ssize_t r = zt_tlsrec_open(c->rx, c->in + c->in_off, c->in_len - c->in_off, &rec,
					   &type, &len);
		if (r < 0) {
			rec_refused(c, (int)-r);
			return;
		}
		c->in_off += (size_t)r;
		if (!rec)
			continue;
		if (c->hs_msg_len && type != ZT_TLSREC_HANDSHAKE) {
			rec_refused(c, ZT_TLSREC_E_UNEXPECTED); /* interleaved with a message */
			return;
		}
		if (type == ZT_TLSREC_APPDATA)
			h2_input(c, c->rx->plain, len);
		else if (type == ZT_TLSREC_ALERT)
			on_alert(c, c->rx->plain, len);
		else if (type == ZT_TLSREC_HANDSHAKE)
			on_post_handshake(c, c->rx->plain, len);
		else
			rec_refused(c, ZT_TLSREC_E_UNEXPECTED);
		if (c->blk->refs > 1 && !c->dying) {
			/* The owner kept payload of this record: the next one
			 * goes to a new block. */
			struct zt_h2c_blk *b = blk_new(c->blk_pool);
			if (!b) {
				fail(c, -ENOMEM, false, 0, "out of memory");
				return;
			}
			zt_h2c_blk_put(c->blk);
			c->blk = b;
			c->rx->plain = b->data;
		}
	}
}

static void read_records(struct zt_h2c *c)
{
	if (c->rl) {
		read_own_records(c);
		return;
	}
	while (!c->dying) {
		int r = wolfSSL_read(c->ssl, c->scratch, sizeof(c->scratch));
		if (r > 0) {
			h2_input(c, c->scratch, (size_t)r);
			continue;
		}
		int e = wolfSSL_get_error(c->ssl, r);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return;
		if (e == WOLFSSL_ERROR_ZERO_RETURN) {
			peer_gone(c, "peer sent close_notify");
			return;
		}
		if (e == SOCKET_PEER_CLOSED_E && c->in_eof) {
			peer_gone(c, "peer closed the connection");
			return;
		}
		tls_fail(c, e, "read");
		return;
	}
}

/* ---- public API -------------------------------------------------------- */

int zt_h2c_ctx_new(enum zt_h2c_role role, const char *cert_pem, size_t cert_len,
		   const char *key_pem, size_t key_len, const char *roots_pem,
		   size_t roots_len, WOLFSSL_CTX **out)
{
	*out = NULL;
	if (!roots_pem || !roots_len || (!cert_pem != !key_pem) ||
	    (role == ZT_H2C_SERVER && !cert_pem))
		return -EINVAL;
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(role == ZT_H2C_SERVER ? wolfTLSv1_3_server_method()
								 : wolfTLSv1_3_client_method());
	if (!ctx)
		return -ENOMEM;
	int err = -EINVAL;
	if (wolfSSL_CTX_set_cipher_list(ctx, ZT_CIPHERS) != WOLFSSL_SUCCESS)
		goto fail_ctx;
	if (cert_pem) {
		if (wolfSSL_CTX_use_certificate_chain_buffer_format(
			    ctx, (const unsigned char *)cert_pem, (long)cert_len,
			    WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
			goto fail_ctx;
		if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, (const unsigned char *)key_pem,
						      (long)key_len,
						      WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
			goto fail_ctx;
		if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS)
			goto fail_ctx;
	}
	if (wolfSSL_CTX_load_verify_buffer(ctx, (const unsigned char *)roots_pem, (long)roots_len,
					   WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
		goto fail_ctx;
	wolfSSL_CTX_set_verify(ctx,
			       role == ZT_H2C_SERVER
				       ? WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT
				       : WOLFSSL_VERIFY_PEER,
			       NULL);
	/* No resumption (ztunnel: Resumption::disabled(), no ticketer). */
	wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
	if (role == ZT_H2C_SERVER)
		wolfSSL_CTX_no_ticket_TLSv13(ctx);
	*out = ctx;
	return 0;

fail_ctx:
	wolfSSL_CTX_free(ctx);
	return err;
}

static int h2_session_new(struct zt_h2c *c)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	int r;
	if (nghttp2_session_callbacks_new(&cb))
		return -ENOMEM;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close_cb);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send_cb);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send_cb);
	nghttp2_session_callbacks_set_send_data_callback(cb, send_data_cb);
	nghttp2_session_callbacks_set_data_source_read_length_callback(cb, data_len_cb);
	if (nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cb);
		return -ENOMEM;
	}
	/* WINDOW_UPDATE only once the owner has passed the bytes on. */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	/* Before the server's SETTINGS, assume ztunnel's per-connection cap. */
	nghttp2_option_set_peer_max_concurrent_streams(opt, ZT_H2C_CLIENT_MAX_STREAMS);
	if (c->role == ZT_H2C_CLIENT)
		r = nghttp2_session_client_new2(&c->h2, cb, c, opt);
	else
		r = nghttp2_session_server_new2(&c->h2, cb, c, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (r)
		return -ENOMEM;

	nghttp2_settings_entry iv[5];
	size_t n = 0;
	iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, ZT_H2C_STREAM_WINDOW};
	iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, ZT_H2C_MAX_FRAME};
	if (c->role == ZT_H2C_CLIENT) {
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
						   ZT_H2C_CLIENT_MAX_HEADERS};
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
	} else {
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
						   ZT_H2C_SERVER_MAX_HEADERS};
		iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
						   ZT_H2C_SERVER_MAX_STREAMS};
	}
	r = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, n);
	if (!r)
		r = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
							  ZT_H2C_CONN_WINDOW);
	return r ? -ENOMEM : 0;
}

int zt_h2c_new(enum zt_h2c_role role, WOLFSSL_CTX *ctx, const struct zt_h2c_cbs *cbs,
	       void *ud, struct zt_h2c **out)
{
	*out = NULL;
	if (!ctx || !cbs || (role != ZT_H2C_CLIENT && role != ZT_H2C_SERVER))
		return -EINVAL;
	struct zt_h2c *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->role = role;
	c->cbs = cbs;
	c->ud = ud;
	c->streams.next = c->streams.prev = &c->streams;
	c->due.due_next = c->due.due_prev = &c->due;
	c->max_streams = ZT_H2C_CLIENT_MAX_STREAMS;
	c->ku_records = KEY_UPDATE_RECORDS;
	int err = -ENOMEM;
	c->ssl = wolfSSL_new(ctx);
	if (!c->ssl)
		goto fail_conn;
#if ZT_TLSREC
	c->own_records = own_records_default;
	wolfSSL_set_tls13_secret_cb(c->ssl, secret_cb, c);
#endif
	wolfSSL_SSLSetIORecv(c->ssl, tls_recv_cb);
	wolfSSL_SSLSetIOSend(c->ssl, tls_send_cb);
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	/* ALPN "h2" or no connection. The client sends no SNI (none is set). */
	if (wolfSSL_UseALPN(c->ssl, (char *)"h2", 2, WOLFSSL_ALPN_FAILED_ON_MISMATCH) !=
	    WOLFSSL_SUCCESS)
		goto fail_ssl;
	if ((err = h2_session_new(c)))
		goto fail_ssl;
	if (role == ZT_H2C_CLIENT) {
		/* Queue the ClientHello (no callbacks can fire: depth 0, and a
		 * failure here is returned instead of reported). */
		do_handshake(c);
		if (c->dying) {
			err = c->err ? c->err : -EPROTO;
			goto fail_h2;
		}
	}
	*out = c;
	return 0;

fail_h2:
	nghttp2_session_del(c->h2);
fail_ssl:
	wolfSSL_free(c->ssl);
fail_conn:
	while (c->out_head) {
		struct out_chunk *n = c->out_head->next;
		free(c->out_head);
		c->out_head = n;
	}
	free(c);
	return err;
}

void zt_h2c_free(struct zt_h2c *c)
{
	if (!c)
		return;
	if (c->depth) {
		/* Freed from inside one of its callbacks: the caller would return
		 * into freed memory. A bug in the owner, always fatal. */
		ZT_ERROR("hbone", "zt_h2c_free() called from a callback");
		abort();
	}
	nghttp2_session_del(c->h2); /* no callbacks */
	while (c->streams.next != &c->streams)
		stream_unlink_free(c, c->streams.next);
	wolfSSL_free(c->ssl);
	while (c->out_head) {
		struct out_chunk *n = c->out_head->next;
		free(c->out_head);
		c->out_head = n;
	}
	free(c->out_spare);
	for (unsigned i = 0; i < c->n_uris; i++)
		free(c->uris[i]);
	zt_tlsrec_key_wipe(&c->tx);
	if (c->rx) {
		zt_tlsrec_key_wipe(&c->rx->key);
		free(c->rx);
	}
	if (c->blk) {
		if (c->blk->refs == 1) /* kept payload is its holders' to handle */
			explicit_bzero(c->blk->data, sizeof(c->blk->data));
		zt_h2c_blk_put(c->blk);
	}
	free(c->hs_msg);
	secrets_wipe(c);
	free(c);
}

bool zt_h2c_own_records_default(bool on)
{
	own_records_default = on && ZT_TLSREC;
	return own_records_default;
}

int zt_h2c_set_own_records(struct zt_h2c *c, bool on)
{
	if (c->hs_done || (on && !ZT_TLSREC))
		return -EINVAL;
	c->own_records = on;
	return 0;
}

bool zt_h2c_own_records(const struct zt_h2c *c)
{
	return c->rl;
}

void zt_h2c_set_key_update_records(struct zt_h2c *c, uint64_t n)
{
	c->ku_records = n ? n : KEY_UPDATE_RECORDS;
}

uint64_t zt_h2c_key_updates(const struct zt_h2c *c, uint64_t *received)
{
	if (received)
		*received = c->rx ? c->rx->key.generation : 0;
	return c->tx.generation;
}

int zt_h2c_feed(struct zt_h2c *c, const uint8_t *p, size_t n)
{
	if (c->depth)
		return -EINVAL; /* from one of its own callbacks */
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	enter(c);
	c->in = p;
	c->in_len = n;
	c->in_off = 0;
	if (!c->hs_done)
		do_handshake(c);
	if (c->hs_done && !c->dying)
		read_records(c);
	c->in = NULL;
	c->in_len = c->in_off = 0;
	leave(c);
	return c->err;
}

int zt_h2c_feed_eof(struct zt_h2c *c)
{
	if (c->depth)
		return -EINVAL;
	if (c->dead || c->dying)
		return c->err;
	enter(c);
	c->in_eof = true;
	peer_gone(c, "peer closed the connection");
	leave(c);
	return c->err;
}

size_t zt_h2c_out(struct zt_h2c *c, const uint8_t **p)
{
	struct out_chunk *h = c->out_head;
	if (!h || h->off == h->len) {
		*p = NULL;
		return 0;
	}
	*p = h->data + h->off;
	return h->len - h->off;
}

int zt_h2c_out_iov(struct zt_h2c *c, struct iovec *iov, int max)
{
	int n = 0;
	for (struct out_chunk *h = c->out_head; h && n < max; h = h->next) {
		if (h->off == h->len)
			continue;
		iov[n].iov_base = h->data + h->off;
		iov[n].iov_len = h->len - h->off;
		n++;
	}
	return n;
}

size_t zt_h2c_out_pending(const struct zt_h2c *c)
{
	return c->out_pending;
}

void zt_h2c_out_done(struct zt_h2c *c, size_t n)
{
	if (n > c->out_pending)
		n = c->out_pending;
	c->out_pending -= n;
	while (n) {
		struct out_chunk *h = c->out_head;
		size_t k = h->len - h->off;
		if (k > n)
			k = n;
		h->off += (uint32_t)k;
		n -= k;
		if (h->off < h->len)
			break;
		if (h == c->out_tail) {
			/* All sent: rewind the last block, nothing points into it. */
			h->off = h->len = 0;
			break;
		}
		c->out_head = h->next;
		if (!c->out_spare && c->n_streams)
			c->out_spare = h;
		else
			free(h);
	}
	if (!c->out_pending && !c->n_streams) {
		/* Idle: hold no output memory. */
		free(c->out_spare);
		c->out_spare = NULL;
		if (c->out_head && c->out_head == c->out_tail && !c->out_head->len) {
			free(c->out_head);
			c->out_head = c->out_tail = NULL;
		}
	}
	if (c->dead || c->dying || c->out_pending >= ZT_H2C_OUT_LIMIT)
		return;
	enter(c);
	leave(c); /* pumps what waited for room */
}

void zt_h2c_set_max_streams(struct zt_h2c *c, uint32_t n)
{
	c->max_streams = n ? n : 1;
}

uint32_t zt_h2c_streams(const struct zt_h2c *c)
{
	return c->n_streams;
}

uint32_t zt_h2c_streams_available(const struct zt_h2c *c)
{
	if (c->role != ZT_H2C_CLIENT || c->dead || c->dying || c->goaway_sent || c->goaway_recv)
		return 0;
	uint32_t lim = nghttp2_session_get_remote_settings(c->h2,
							   NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	if (lim > c->max_streams)
		lim = c->max_streams;
	/* Stream ids run out at 2^31: then this connection is done. */
	if (nghttp2_session_get_next_stream_id(c->h2) > (1u << 31) - 2)
		return 0;
	return c->n_streams >= lim ? 0 : lim - c->n_streams;
}

int zt_h2c_connect(struct zt_h2c *c, const char *authority, const char *forwarded,
		   const char *baggage, const char *traceparent, void *sud, int32_t *sid)
{
	if (c->role != ZT_H2C_CLIENT || !authority || !*authority)
		return -EINVAL;
	if (c->dead || c->dying || c->goaway_sent || c->goaway_recv)
		return -ESHUTDOWN;
	if (!zt_h2c_streams_available(c))
		return -EBUSY;
	/* ztunnel's request: CONNECT with :authority only (no :scheme/:path). */
	nghttp2_nv nva[5];
	size_t n = 0;
	nva[n++] = NV(":method", "CONNECT", 7);
	nva[n++] = NV(":authority", authority, strlen(authority));
	if (forwarded)
		nva[n++] = NV("forwarded", forwarded, strlen(forwarded));
	if (baggage)
		nva[n++] = NV("baggage", baggage, strlen(baggage));
	if (traceparent) {
		nva[n] = NV("traceparent", traceparent, strlen(traceparent));
		nva[n++].flags = NGHTTP2_NV_FLAG_NO_INDEX; /* unique per request */
	}
	struct h2s *s = stream_new(c);
	if (!s)
		return -ENOMEM;
	nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
	int32_t id = nghttp2_submit_request(c->h2, NULL, nva, n, &prd, s);
	if (id < 0) {
		stream_unlink_free(c, s);
		return id == NGHTTP2_ERR_NOMEM ? -ENOMEM : -ESHUTDOWN;
	}
	s->id = id;
	s->sud = sud;
	s->active = true;
	*sid = id;
	enter(c);
	leave(c);
	return 0;
}

int zt_h2c_respond(struct zt_h2c *c, int32_t sid, int status)
{
	if (c->role != ZT_H2C_SERVER || status < 200 || status > 599)
		return -EINVAL;
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	struct h2s *s = stream_find(c, sid);
	if (!s || !s->active)
		return s && s->responded ? -EALREADY : -ENOENT;
	if (s->responded)
		return -EALREADY;
	int r;
	enter(c);
	if (status < 300) {
		char st[4];
		nghttp2_nv nv = NV(":status", status_text(status, st), 3);
		nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
		r = nghttp2_submit_response(c->h2, sid, &nv, 1, &prd);
		if (!r) {
			s->responded = true;
			s->established = true;
		}
	} else {
		r = respond_refuse(c, s, status);
	}
	if (r == NGHTTP2_ERR_NOMEM)
		fail(c, -ENOMEM, true, NGHTTP2_INTERNAL_ERROR, "cannot queue a response");
	leave(c);
	if (r)
		return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -ENOENT;
	return 0;
}

ssize_t zt_h2c_write(struct zt_h2c *c, int32_t sid, const uint8_t *p, size_t n)
{
	if (!n)
		return -EINVAL;
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	struct h2s *s = stream_find(c, sid);
	if (!s || !s->active)
		return s && s->wr_closed ? -EPIPE : -ENOENT;
	if (s->wr_closed)
		return -EPIPE;
	if (!s->established)
		return -ENOTCONN;
	s->want_writable = false;
	if (c->in_h2 || !c->hs_done) {
		/* Inside nghttp2: cannot send now; come back right after. */
		s->want_writable = true;
		set_writable_due(c, s);
		return 0;
	}
	enter(c);
	s->wp = p;
	s->wn = n;
	s->woff = 0;
	nghttp2_session_resume_data(c->h2, sid); /* fails harmlessly if not deferred */
	pump(c, false);
	size_t took = s->woff;
	s->wp = NULL;
	s->wn = s->woff = 0;
	if (took < n) {
		s->want_writable = true;
		if (c->out_pending >= ZT_H2C_OUT_LIMIT)
			set_out_blocked(c, s);
	}
	leave(c);
	if (c->dying || c->dead)
		return took ? (ssize_t)took : -ESHUTDOWN;
	return (ssize_t)took;
}

int zt_h2c_close_write(struct zt_h2c *c, int32_t sid)
{
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	struct h2s *s = stream_find(c, sid);
	if (!s || !s->active)
		return s && s->wr_closed ? -EPIPE : -ENOENT;
	if (s->wr_closed)
		return -EPIPE;
	if (!s->established)
		return -ENOTCONN;
	enter(c);
	s->wr_closed = true;
	s->want_writable = false;
	if (s->eof_in)
		s->active = false; /* both ways done */
	nghttp2_session_resume_data(c->h2, sid);
	leave(c);
	return 0;
}

int zt_h2c_reset(struct zt_h2c *c, int32_t sid, uint32_t code)
{
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	struct h2s *s = stream_find(c, sid);
	if (!s || !s->active)
		return -ENOENT;
	enter(c);
	s->active = false;
	release_unconsumed(c, s);
	if (nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, sid, code) == NGHTTP2_ERR_NOMEM)
		fail(c, -ENOMEM, true, NGHTTP2_INTERNAL_ERROR, "cannot queue RST_STREAM");
	leave(c);
	return 0;
}

int zt_h2c_consumed(struct zt_h2c *c, int32_t sid, size_t n)
{
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	struct h2s *s = stream_find(c, sid);
	if (!s)
		return -ENOENT;
	if (n > s->unconsumed)
		n = (size_t)s->unconsumed;
	if (!n)
		return 0;
	s->unconsumed -= n;
	enter(c);
	if (credit(c, s, sid, n) == NGHTTP2_ERR_NOMEM)
		fail(c, -ENOMEM, true, NGHTTP2_INTERNAL_ERROR, "cannot queue WINDOW_UPDATE");
	leave(c);
	return 0;
}

int zt_h2c_goaway(struct zt_h2c *c)
{
	if (c->dead || c->dying)
		return -ESHUTDOWN;
	if (c->goaway_sent)
		return 0;
	c->goaway_sent = true;
	enter(c);
	int r;
	if (c->role == ZT_H2C_SERVER) {
		/* As h2's graceful_shutdown (ztunnel's server drain): GOAWAY with
		 * the highest id, a PING, and the real last id once it returns, so
		 * requests already in flight are not refused. */
		uint64_t v = PING_DRAIN;
		uint8_t op[8];
		memcpy(op, &v, 8);
		r = nghttp2_submit_shutdown_notice(c->h2);
		if (!r)
			r = nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, op);
		if (!r)
			c->drain_ping = true;
	} else {
		r = nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
					  nghttp2_session_get_last_proc_stream_id(c->h2),
					  NGHTTP2_NO_ERROR, NULL, 0);
	}
	if (r)
		fail(c, -ENOMEM, false, 0, "cannot queue GOAWAY");
	leave(c);
	return r ? -ENOMEM : 0;
}

void zt_h2c_abort(struct zt_h2c *c, int err, const char *why)
{
	if (c->dead || c->dying)
		return;
	enter(c);
	fail(c, err < 0 ? err : -ECONNABORTED, true, NGHTTP2_NO_ERROR, "%s",
	     why ? why : "aborted");
	leave(c);
}

int zt_h2c_tick(struct zt_h2c *c, uint64_t now_ms)
{
	if (c->dead || c->dying)
		return dead_err(c);
	if (!c->hs_done)
		return 0;
	enter(c);
	if (!c->ping_armed || c->ping_acked) {
		c->ping_armed = true;
		c->ping_acked = false;
		c->ping_next = now_ms + ZT_H2C_PING_INTERVAL_MS;
	}
	if (c->ping_out) {
		if (now_ms - c->ping_sent >= ZT_H2C_PING_TIMEOUT_MS)
			fail(c, -ETIMEDOUT, true, NGHTTP2_NO_ERROR, "HBONE ping timeout");
	} else if (now_ms >= c->ping_next) {
		uint8_t op[8];
		c->ping_seq++;
		memcpy(op, &c->ping_seq, 8);
		if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, op))
			fail(c, -ENOMEM, false, 0, "cannot queue PING");
		c->ping_out = true;
		c->ping_sent = now_ms;
	}
	leave(c);
	return c->dead || c->dying ? dead_err(c) : 0;
}

uint64_t zt_h2c_deadline(const struct zt_h2c *c)
{
	if (c->dead || c->dying || !c->hs_done)
		return UINT64_MAX;
	if (!c->ping_armed || c->ping_acked)
		return 0;
	if (c->ping_out)
		return c->ping_sent + ZT_H2C_PING_TIMEOUT_MS;
	return c->ping_next;
}

bool zt_h2c_handshake_done(const struct zt_h2c *c)
{
	return c->hs_done;
}

bool zt_h2c_closed(const struct zt_h2c *c)
{
	return c->dead;
}

int zt_h2c_error(const struct zt_h2c *c)
{
	return c->err;
}

const char *zt_h2c_error_detail(const struct zt_h2c *c)
{
	return c->detail;
}

const char *zt_h2c_peer_uri(const struct zt_h2c *c, unsigned idx)
{
	return idx < c->n_uris ? c->uris[idx] : NULL;
}

bool zt_h2c_peer_has_uri(const struct zt_h2c *c, const char *uri)
{
	for (unsigned i = 0; i < c->n_uris; i++)
		if (!strcmp(c->uris[i], uri))
			return true;
	return false;
}

const char *zt_h2c_cipher(const struct zt_h2c *c)
{
	return c->cipher;
}

/* ztunnel (src/proxy.rs, HboneAddress::try_from): the authority is first
 * parsed as a socket address; failing that, as host and port (a service
 * hostname reached through a gateway); failing that, 400. We accept a
 * hostname of DNS characters only. */
int zt_h2c_parse_authority(const char *s, size_t len, struct zt_h2c_authority *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > 300 || memchr(s, 0, len))
		return -EINVAL;
	const char *colon = NULL;
	for (size_t i = len; i > 0; i--)
		if (s[i - 1] == ':') {
			colon = s + i - 1;
			break;
		}
	if (!colon)
		return -EINVAL;
	size_t plen = len - (size_t)(colon + 1 - s);
	if (plen == 0 || plen > 5)
		return -EINVAL;
	unsigned port = 0;
	for (size_t i = 0; i < plen; i++) {
		char ch = colon[1 + i];
		if (ch < '0' || ch > '9')
			return -EINVAL;
		port = port * 10 + (unsigned)(ch - '0');
	}
	if (port > 65535)
		return -EINVAL;
	char buf[301];
	memcpy(buf, s, len);
	buf[len] = 0;
	if (zt_sockaddr_parse(buf, &out->addr) == 0) {
		out->port = out->addr.port;
		return 0;
	}
	memset(&out->addr, 0, sizeof(out->addr));
	size_t hlen = (size_t)(colon - s);
	if (hlen == 0 || hlen >= sizeof(out->host))
		return -EINVAL;
	for (size_t i = 0; i < hlen; i++) {
		char ch = s[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_';
		if (!ok)
			return -EINVAL;
	}
	memcpy(out->host, s, hlen);
	out->host[hlen] = 0;
	out->is_host = true;
	out->port = (uint16_t)port;
	return 0;
}
