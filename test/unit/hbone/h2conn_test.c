/* h2conn_test.c - two zt_h2c (client and server) wired together in memory.
 *
 * Certificates come from the openssl CLI at run time (a throwaway P-256 CA,
 * SPIFFE URI SANs) in a temporary directory; exit 77 without openssl.
 * The .c is included (h2o style) to reach the nghttp2 session for requests
 * zt_h2c would never send (GET) and for garbage inside TLS.
 */
#include "hbone/h2conn.c"

#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test/unit/common/check.h"

#define ID_SERVER "spiffe://cluster.local/ns/default/sa/server"
#define ID_CLIENT "spiffe://cluster.local/ns/default/sa/client"

static char tmpdir[] = "/tmp/h2conn_test.XXXXXX";

struct pem {
	char *p;
	size_t n;
};
static struct pem ca, ca2, srv_crt, srv_key, cli_crt, cli_key, bad_crt, bad_key;

static struct pem load(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "rb");
	struct pem r = {0};
	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	r.n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	r.p = malloc(r.n + 1);
	if (fread(r.p, 1, r.n, f) != r.n)
		exit(1);
	r.p[r.n] = 0;
	fclose(f);
	return r;
}

static int make_certs(void)
{
	if (system("openssl version >/dev/null 2>&1") != 0)
		return 77;
	if (!mkdtemp(tmpdir))
		return 1;
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
		 "set -e; cd %s;"
		 "mkca() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key;"
		 "  openssl req -x509 -new -key $1.key -subj /O=$1 -days 2 -out $1.pem"
		 "  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; };"
		 "leaf() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key;"
		 "  openssl req -new -key $1.key -subj /O=cluster.local -out $1.csr;"
		 "  printf 'subjectAltName=critical,URI:%%s\\nextendedKeyUsage=serverAuth,clientAuth\\n"
		 "keyUsage=critical,digitalSignature,keyEncipherment\\nbasicConstraints=critical,CA:FALSE\\n' $3 > $1.ext;"
		 "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -days 2"
		 "  -extfile $1.ext -out $1.pem; };"
		 "mkca ca; mkca ca2;"
		 "leaf srv ca " ID_SERVER "; leaf cli ca " ID_CLIENT "; leaf bad ca2 " ID_CLIENT ";"
		 ") >/dev/null 2>&1",
		 tmpdir);
	/* the subshell opened by the trailing ") " */
	char full[4200];
	snprintf(full, sizeof(full), "( %s", cmd);
	if (system(full) != 0) {
		fprintf(stderr, "openssl certificate generation failed\n");
		return 1;
	}
	ca = load("ca.pem");
	ca2 = load("ca2.pem");
	srv_crt = load("srv.pem");
	srv_key = load("srv.key");
	cli_crt = load("cli.pem");
	cli_key = load("cli.key");
	bad_crt = load("bad.pem");
	bad_key = load("bad.key");
	return 0;
}

static void rm_certs(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd)) {
	}
}

/* ---- a peer and its streams ---------------------------------------- */

#define MAXS 512

struct tstream {
	struct peer *p;
	int32_t sid;
	bool used;
	/* receive */
	uint64_t rx, rx_held, rx_held_max;
	bool bad_data, eof, reset;
	uint32_t reset_code;
	int status;
	/* send */
	uint64_t tx_goal, tx;
	bool close_after, closed_write;
	int writable_calls;
	/* server: request */
	char authority[128], forwarded[128], baggage[256], traceparent[128];
	struct zt_h2c_authority target;
};

struct peer {
	const char *name;
	struct zt_h2c *c;
	bool slow;          /* hold received bytes instead of consuming */
	bool respond_in_cb; /* server: answer 200 inside on_connect */
	int refuse_status;  /* server: on_connect returns this */
	bool write_in_data; /* try zt_h2c_write inside on_data */
	bool hold;          /* keep received payloads in their record blocks */
	struct held {
		struct zt_h2c_blk *b;
		const uint8_t *d;
		size_t n;
		int32_t sid;
		uint64_t at;
	} held[512];
	unsigned n_held;
	uint64_t held_bytes;
	bool abort_on_hs;
	bool hs, closed;
	int hs_err, closed_err;
	char peer_id[256];
	int goaways, connects;
	int32_t goaway_last;
	struct tstream s[MAXS];
	int pending_respond[MAXS];
	int n_pending;
	size_t out_max; /* largest out_pending seen */
	bool fast;      /* bench: no pattern fill or check */
	/* TLS records seen in this peer's output (when counting) */
	bool count_records;
	uint8_t rec_hdr[5];
	unsigned rec_hdr_len;
	size_t rec_left;
	uint64_t records, record_bytes, big_records, max_record;
};

/* Follow the TLS record layer of a peer's output. */
static void count_records(struct peer *p, const uint8_t *q, size_t n)
{
	while (n) {
		if (p->rec_left) {
			size_t k = n < p->rec_left ? n : p->rec_left;
			p->rec_left -= k;
			q += k;
			n -= k;
			continue;
		}
		p->rec_hdr[p->rec_hdr_len++] = *q++;
		n--;
		if (p->rec_hdr_len == 5) {
			size_t len = (size_t)p->rec_hdr[3] << 8 | p->rec_hdr[4];
			p->rec_hdr_len = 0;
			p->rec_left = len;
			p->records++;
			p->record_bytes += len;
			p->big_records += len >= 16000;
			if (len > p->max_record)
				p->max_record = len;
		}
	}
}

static struct tstream *ts_new(struct peer *p)
{
	for (int i = 0; i < MAXS; i++)
		if (!p->s[i].used) {
			memset(&p->s[i], 0, sizeof(p->s[i]));
			p->s[i].used = true;
			p->s[i].p = p;
			return &p->s[i];
		}
	abort();
}

static uint8_t pat(int32_t sid, uint64_t k)
{
	return (uint8_t)(k ^ (k >> 8) ^ (k >> 16) ^ (k >> 24) ^ (uint64_t)sid * 37);
}

static void try_send(struct tstream *t)
{
	static uint8_t buf[96 << 10];
	struct peer *p = t->p;
	while (t->tx < t->tx_goal) {
		size_t n = t->tx_goal - t->tx;
		if (n > sizeof(buf))
			n = sizeof(buf);
		for (size_t i = 0; i < n && !p->fast; i++)
			buf[i] = pat(t->sid, t->tx + i);
		ssize_t r = zt_h2c_write(p->c, t->sid, buf, n);
		if (r < 0) {
			fprintf(stderr, "%s: write sid %d: %zd\n", p->name, t->sid, r);
			return;
		}
		/* scribble over what was offered: nothing may still point here */
		if (!p->fast)
			memset(buf, 0xee, n);
		t->tx += (uint64_t)r;
		if ((size_t)r < n)
			return;
	}
	if (t->close_after && !t->closed_write) {
		CHECK(zt_h2c_close_write(p->c, t->sid) == 0);
		t->closed_write = true;
	}
}

static void cb_hs(void *ud, int err, const char *id)
{
	struct peer *p = ud;
	p->hs = true;
	p->hs_err = err;
	snprintf(p->peer_id, sizeof(p->peer_id), "%s", id ? id : "");
	if (!err && p->abort_on_hs)
		zt_h2c_abort(p->c, -EKEYREJECTED, "identity mismatch");
}

static int cb_connect(void *ud, int32_t sid, const struct zt_h2c_request *req, void **sud)
{
	struct peer *p = ud;
	p->connects++;
	if (p->refuse_status)
		return p->refuse_status;
	struct tstream *t = ts_new(p);
	t->sid = sid;
	snprintf(t->authority, sizeof(t->authority), "%s", req->authority);
	snprintf(t->forwarded, sizeof(t->forwarded), "%s", req->forwarded ? req->forwarded : "");
	snprintf(t->baggage, sizeof(t->baggage), "%s", req->baggage ? req->baggage : "");
	snprintf(t->traceparent, sizeof(t->traceparent), "%s",
		 req->traceparent ? req->traceparent : "");
	t->target = req->target;
	*sud = t;
	if (p->respond_in_cb) {
		CHECK(zt_h2c_respond(p->c, sid, 200) == 0);
		t->status = 200;
	} else {
		p->pending_respond[p->n_pending++] = sid;
	}
	return 0;
}

static void cb_response(void *ud, int32_t sid, void *sud, int status)
{
	struct tstream *t = sud;
	t->status = status;
}

static void cb_data(void *ud, int32_t sid, void *sud, const uint8_t *d, size_t n)
{
	struct tstream *t = sud;
	struct peer *p = ud;
	for (size_t i = 0; i < n && !p->fast; i++)
		if (d[i] != pat(sid, t->rx + i)) {
			if (!t->bad_data)
				fprintf(stderr, "%s: sid %d: bad byte at %llu\n", p->name, sid,
					(unsigned long long)(t->rx + i));
			t->bad_data = true;
			break;
		}
	if (p->hold && p->n_held < sizeof(p->held) / sizeof(p->held[0])) {
		struct zt_h2c_blk *b = zt_h2c_hold(p->c, d, n);
		if (b) {
			p->held[p->n_held++] = (struct held){b, d, n, sid, t->rx};
			p->held_bytes += n;
		}
	}
	t->rx += n;
	if (p->write_in_data) {
		uint8_t b = 1;
		CHECK(zt_h2c_write(p->c, sid, &b, 1) == 0); /* inside nghttp2: later */
	}
	if (p->slow) {
		t->rx_held += n;
		if (t->rx_held > t->rx_held_max)
			t->rx_held_max = t->rx_held;
	} else {
		CHECK(zt_h2c_consumed(p->c, sid, n) == 0);
	}
}

static void cb_eof(void *ud, int32_t sid, void *sud)
{
	struct tstream *t = sud;
	CHECK(!t->eof);
	t->eof = true;
}

static void cb_reset(void *ud, int32_t sid, void *sud, uint32_t code)
{
	struct tstream *t = sud;
	CHECK(!t->reset);
	t->reset = true;
	t->reset_code = code;
}

static void cb_writable(void *ud, int32_t sid, void *sud)
{
	struct tstream *t = sud;
	t->writable_calls++;
	try_send(t);
}

static void cb_goaway(void *ud, int32_t last, uint32_t code)
{
	struct peer *p = ud;
	p->goaways++;
	p->goaway_last = last;
}

static void cb_closed(void *ud, int err)
{
	struct peer *p = ud;
	CHECK(!p->closed);
	p->closed = true;
	p->closed_err = err;
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

static WOLFSSL_CTX *sctx, *cctx;

static void peer_init(struct peer *p, const char *name, enum zt_h2c_role role, WOLFSSL_CTX *ctx)
{
	memset(p, 0, sizeof(*p));
	p->name = name;
	CHECK(zt_h2c_new(role, ctx, &cbs, p, &p->c) == 0);
}

static void peer_fini(struct peer *p)
{
	zt_h2c_free(p->c);
	p->c = NULL;
}

/* Move a's queued ciphertext into b (all of it, or at most `max` bytes). */
static size_t shuttle(struct peer *a, struct peer *b, size_t max)
{
	size_t moved = 0;
	for (;;) {
		size_t pend = zt_h2c_out_pending(a->c);
		if (pend > a->out_max)
			a->out_max = pend;
		const uint8_t *q;
		size_t n = zt_h2c_out(a->c, &q);
		if (!n || moved >= max)
			break;
		if (n > max - moved)
			n = max - moved;
		if (a->count_records)
			count_records(a, q, n);
		if (b)
			zt_h2c_feed(b->c, q, n); /* errors show in b->closed */
		zt_h2c_out_done(a->c, n);
		moved += n;
	}
	return moved;
}

static void respond_pending(struct peer *s)
{
	for (int i = 0; i < s->n_pending; i++) {
		int32_t sid = s->pending_respond[i];
		struct tstream *t = NULL;
		for (int k = 0; k < MAXS; k++)
			if (s->s[k].used && s->s[k].sid == sid)
				t = &s->s[k];
		CHECK(zt_h2c_respond(s->c, sid, 200) == 0);
		if (t)
			t->status = 200;
	}
	s->n_pending = 0;
}

static void kick_sends(struct peer *p)
{
	for (int i = 0; i < MAXS; i++) {
		struct tstream *t = &p->s[i];
		if (t->used && t->status == 200 && !t->reset && (t->tx < t->tx_goal ||
		    (t->close_after && !t->closed_write)))
			try_send(t);
	}
}

/* Run both until nothing moves. */
static void run(struct peer *a, struct peer *b)
{
	for (int i = 0; i < 100000; i++) {
		respond_pending(b);
		respond_pending(a);
		size_t m = shuttle(a, b, SIZE_MAX) + shuttle(b, a, SIZE_MAX);
		if (!m) {
			kick_sends(a);
			kick_sends(b);
			m = zt_h2c_out_pending(a->c) + zt_h2c_out_pending(b->c);
			if (!m)
				return;
		}
	}
	CHECK(!"run did not settle");
}

static void pair(struct peer *cl, struct peer *sv)
{
	peer_init(cl, "client", ZT_H2C_CLIENT, cctx);
	peer_init(sv, "server", ZT_H2C_SERVER, sctx);
}

static struct tstream *open_stream(struct peer *cl, const char *auth)
{
	struct tstream *t = ts_new(cl);
	int r = zt_h2c_connect(cl->c, auth, "for=\"10.0.0.1:4000\"", "k8s.cluster.name=c1",
			       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", t, &t->sid);
	CHECK(r == 0);
	if (r)
		t->used = false;
	return r ? NULL : t;
}

static struct tstream *find_ts(struct peer *p, int32_t sid)
{
	for (int i = 0; i < MAXS; i++)
		if (p->s[i].used && p->s[i].sid == sid)
			return &p->s[i];
	return NULL;
}

/* ---- tests ------------------------------------------------------------ */

static void test_handshake_and_tunnel(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	CHECK(zt_h2c_out_pending(cl.c) > 0); /* ClientHello queued at once */
	/* A CONNECT before the handshake goes out right after it. */
	struct tstream *t = open_stream(&cl, "10.1.2.3:8080");
	run(&cl, &sv);
	CHECK(cl.hs && cl.hs_err == 0);
	CHECK(sv.hs && sv.hs_err == 0);
	CHECK_STR(cl.peer_id, ID_SERVER);
	CHECK_STR(sv.peer_id, ID_CLIENT);
	CHECK(zt_h2c_peer_has_uri(cl.c, ID_SERVER));
	CHECK(zt_h2c_peer_uri(sv.c, 1) == NULL);
	CHECK(strstr(zt_h2c_cipher(cl.c), "AES256-GCM") != NULL);
	CHECK(strstr(zt_h2c_cipher(sv.c), "AES256-GCM") != NULL);
	CHECK(wolfSSL_version(cl.c->ssl) == TLS1_3_VERSION);
	CHECK(sv.connects == 1);
	CHECK(t && t->status == 200);
	struct tstream *st = find_ts(&sv, t ? t->sid : -1);
	CHECK(st != NULL);
	if (!t || !st)
		goto out;
	CHECK_STR(st->authority, "10.1.2.3:8080");
	CHECK(!st->target.is_host && st->target.port == 8080 && st->target.addr.ip.family == AF_INET);
	CHECK_STR(st->forwarded, "for=\"10.0.0.1:4000\"");
	CHECK_STR(st->baggage, "k8s.cluster.name=c1");
	CHECK_STR(st->traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");

	/* Several MiB each way at once, then FIN both ways. */
	t->tx_goal = 9u << 20;
	t->close_after = true;
	st->tx_goal = 7u << 20;
	st->close_after = true;
	cl.count_records = true;
	kick_sends(&cl);
	kick_sends(&sv);
	run(&cl, &sv);
	/* TLS records of ~16 KiB: a 64 KiB DATA frame is its 9-byte header
	 * (with any control frames) plus four full records. */
	fprintf(stderr, "  client->server: %llu records, %llu of >= 16000 bytes, avg %llu, max %llu\n",
		(unsigned long long)cl.records, (unsigned long long)cl.big_records,
		(unsigned long long)(cl.record_bytes / (cl.records ? cl.records : 1)),
		(unsigned long long)cl.max_record);
	CHECK(cl.max_record <= TLS_RECORD_MAX + 256);
	CHECK(cl.record_bytes / cl.records >= 12000);
	CHECK(cl.big_records * 16384 >= (9u << 20) * 9 / 10);
	CHECK(st->rx == 9u << 20 && !st->bad_data && st->eof);
	CHECK(t->rx == 7u << 20 && !t->bad_data && t->eof);
	CHECK(!t->reset && !st->reset);
	CHECK(zt_h2c_streams(cl.c) == 0 && zt_h2c_streams(sv.c) == 0);
	CHECK(cl.out_max <= ZT_H2C_OUT_LIMIT + ZT_H2C_DATA_FRAME_MAX + 4096);
	CHECK(sv.out_max <= ZT_H2C_OUT_LIMIT + ZT_H2C_DATA_FRAME_MAX + 4096);
	/* Idle: the output queue holds no memory. */
	CHECK(cl.c->out_head == NULL && cl.c->out_spare == NULL);
	CHECK(!cl.closed && !sv.closed);
	CHECK(zt_h2c_write(cl.c, t->sid, (const uint8_t *)"x", 1) == -ENOENT);
out:
	peer_fini(&cl);
	peer_fini(&sv);
}

static void test_many_streams(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	sv.respond_in_cb = true;
	CHECK(zt_h2c_streams_available(cl.c) == ZT_H2C_CLIENT_MAX_STREAMS);
	zt_h2c_set_max_streams(cl.c, 1000);
	run(&cl, &sv); /* handshake + SETTINGS: the server allows 200 */
	CHECK(zt_h2c_streams_available(cl.c) == ZT_H2C_SERVER_MAX_STREAMS);
	struct tstream *ts[200];
	for (int i = 0; i < 200; i++) {
		char a[32];
		snprintf(a, sizeof(a), "10.0.%d.%d:80", i / 250, i % 250 + 1);
		ts[i] = open_stream(&cl, a);
		if (!ts[i])
			goto out;
		ts[i]->tx_goal = 48u << 10;
		ts[i]->close_after = true;
	}
	int32_t dummy;
	CHECK(zt_h2c_connect(cl.c, "10.9.9.9:80", NULL, NULL, NULL, NULL, &dummy) == -EBUSY);
	run(&cl, &sv);
	CHECK(sv.connects == 200);
	for (int i = 0; i < MAXS; i++) {
		struct tstream *st = &sv.s[i];
		if (!st->used)
			continue;
		st->tx_goal = 40u << 10;
		st->close_after = true;
	}
	kick_sends(&sv);
	kick_sends(&cl);
	run(&cl, &sv);
	int ok = 0;
	for (int i = 0; i < 200; i++) {
		struct tstream *st = find_ts(&sv, ts[i]->sid);
		if (st && st->rx == 48u << 10 && st->eof && !st->bad_data && ts[i]->rx == 40u << 10 &&
		    ts[i]->eof && !ts[i]->bad_data && !ts[i]->reset)
			ok++;
	}
	CHECK(ok == 200);
	CHECK(zt_h2c_streams(cl.c) == 0 && zt_h2c_streams(sv.c) == 0);
out:
	peer_fini(&cl);
	peer_fini(&sv);
}

static void test_flow_control(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	sv.respond_in_cb = true;
	sv.slow = true;
	struct tstream *a = open_stream(&cl, "10.0.0.2:80");
	struct tstream *b = open_stream(&cl, "10.0.0.3:80");
	run(&cl, &sv);
	if (!a || !b)
		goto out;
	/* The writer offers far more than the windows. */
	a->tx_goal = 40u << 20;
	b->tx_goal = 40u << 20;
	a->close_after = b->close_after = true;

	/* First without the socket draining: writes stop at the output bound. */
	try_send(a);
	CHECK(a->tx < a->tx_goal);
	CHECK(zt_h2c_out_pending(cl.c) <= ZT_H2C_OUT_LIMIT + ZT_H2C_DATA_FRAME_MAX + 1024);
	run(&cl, &sv);
	struct tstream *sa = find_ts(&sv, a->sid), *sb = find_ts(&sv, b->sid);
	CHECK(sa && sb);
	if (!sa || !sb)
		goto out;
	/* The slow reader holds at most a stream window per stream. */
	CHECK(sa->rx_held <= ZT_H2C_STREAM_WINDOW);
	CHECK(sb->rx_held <= ZT_H2C_STREAM_WINDOW);
	CHECK(sa->rx_held + sb->rx_held <= ZT_H2C_CONN_WINDOW);
	CHECK(sa->rx_held >= ZT_H2C_STREAM_WINDOW / 2); /* and it did fill up */
	CHECK(a->tx < a->tx_goal && b->tx < b->tx_goal);
	/* Giving back 1/16 of a full window is enough for a WINDOW_UPDATE
	 * (nghttp2's own rule waits for half): the writer moves on by that much. */
	CHECK(sa->rx_held == ZT_H2C_STREAM_WINDOW);
	uint64_t before = sa->rx;
	size_t step = ZT_H2C_STREAM_WINDOW / 16 + 1000;
	CHECK(zt_h2c_consumed(sv.c, sa->sid, step) == 0);
	sa->rx_held -= step;
	run(&cl, &sv);
	CHECK(sa->rx >= before + ZT_H2C_STREAM_WINDOW / 16);
	CHECK(sa->rx_held <= ZT_H2C_STREAM_WINDOW);
	/* Drain slowly; on_writable brings the writers back. */
	for (int round = 0; round < 10000 && (!sa->eof || !sb->eof); round++) {
		size_t k = 300000;
		if (sa->rx_held) {
			size_t n = sa->rx_held < k ? sa->rx_held : k;
			CHECK(zt_h2c_consumed(sv.c, sa->sid, n) == 0);
			sa->rx_held -= n;
		}
		if (sb->rx_held) {
			size_t n = sb->rx_held < k ? sb->rx_held : k;
			CHECK(zt_h2c_consumed(sv.c, sb->sid, n) == 0);
			sb->rx_held -= n;
		}
		run(&cl, &sv);
	}
	CHECK(sa->rx == 40u << 20 && sb->rx == 40u << 20);
	CHECK(!sa->bad_data && !sb->bad_data && sa->eof && sb->eof);
	CHECK(sa->rx_held_max <= ZT_H2C_STREAM_WINDOW && sb->rx_held_max <= ZT_H2C_STREAM_WINDOW);
	CHECK(a->writable_calls > 0);
	CHECK(cl.out_max <= ZT_H2C_OUT_LIMIT + ZT_H2C_DATA_FRAME_MAX + 4096);
out:
	peer_fini(&cl);
	peer_fini(&sv);
}

static void test_half_close(void)
{
	for (int order = 0; order < 2; order++) {
		struct peer cl, sv;
		pair(&cl, &sv);
		sv.respond_in_cb = true;
		struct tstream *t = open_stream(&cl, "10.0.0.2:80");
		run(&cl, &sv);
		struct tstream *st = t ? find_ts(&sv, t->sid) : NULL;
		CHECK(st != NULL);
		if (!st)
			goto next;
		struct tstream *first = order ? st : t, *second = order ? t : st;
		struct peer *fp = order ? &sv : &cl;
		/* First side: some bytes then FIN. */
		first->tx_goal = 100000;
		first->close_after = true;
		try_send(first);
		run(&cl, &sv);
		CHECK(second->eof && second->rx == 100000);
		CHECK(!first->eof);
		/* The other direction still flows after the half-close. */
		second->tx_goal = 3u << 20;
		try_send(second);
		run(&cl, &sv);
		CHECK(first->rx == 3u << 20 && !first->bad_data && !first->eof);
		CHECK(zt_h2c_streams(cl.c) == 1);
		CHECK(zt_h2c_write(fp->c, first->sid, (const uint8_t *)"x", 1) == -EPIPE);
		second->close_after = true;
		try_send(second);
		run(&cl, &sv);
		CHECK(first->eof && !first->reset && !second->reset);
		CHECK(zt_h2c_streams(cl.c) == 0 && zt_h2c_streams(sv.c) == 0);
	next:
		peer_fini(&cl);
		peer_fini(&sv);
	}
}

static void test_reset(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	sv.respond_in_cb = true;
	sv.slow = true;
	struct tstream *a = open_stream(&cl, "10.0.0.2:80");
	struct tstream *b = open_stream(&cl, "10.0.0.3:80");
	struct tstream *c3 = open_stream(&cl, "10.0.0.4:80");
	run(&cl, &sv);
	if (!a || !b || !c3)
		goto out;
	/* Client resets a stream the server holds 4 MiB of, unconsumed. */
	a->tx_goal = 5u << 20;
	try_send(a);
	run(&cl, &sv);
	struct tstream *sa = find_ts(&sv, a->sid);
	CHECK(sa && sa->rx_held > 0);
	CHECK(zt_h2c_reset(cl.c, a->sid, NGHTTP2_CANCEL) == 0);
	CHECK(zt_h2c_reset(cl.c, a->sid, NGHTTP2_CANCEL) == -ENOENT);
	a->tx_goal = a->tx;
	run(&cl, &sv);
	CHECK(sa && sa->reset && sa->reset_code == NGHTTP2_CANCEL);
	CHECK(!a->reset); /* our own reset: no callback */
	/* The server gave the reset stream's window back: b can move 20 MiB
	 * through the 16 MiB connection window while the server consumes. */
	sv.slow = false;
	b->tx_goal = 20u << 20;
	b->close_after = true;
	try_send(b);
	run(&cl, &sv);
	struct tstream *sb = find_ts(&sv, b->sid);
	CHECK(sb && sb->rx == 20u << 20 && sb->eof);
	/* Server resets c3 with a code of its own. */
	struct tstream *sc = find_ts(&sv, c3->sid);
	CHECK(sc != NULL);
	if (sc)
		CHECK(zt_h2c_reset(sv.c, sc->sid, NGHTTP2_CONNECT_ERROR) == 0);
	run(&cl, &sv);
	CHECK(c3->reset && c3->reset_code == NGHTTP2_CONNECT_ERROR);
	CHECK(zt_h2c_write(cl.c, c3->sid, (const uint8_t *)"x", 1) == -ENOENT);
	CHECK(!cl.closed && !sv.closed);
out:
	peer_fini(&cl);
	peer_fini(&sv);
}

/* Submit a request zt_h2c would never send, tracked like a CONNECT. */
static struct tstream *raw_request(struct peer *cl, const nghttp2_nv *nva, size_t n)
{
	struct tstream *t = ts_new(cl);
	struct h2s *s = stream_new(cl->c);
	nghttp2_data_provider prd = {.source.ptr = s, .read_callback = data_read_cb};
	int32_t id = nghttp2_submit_request(cl->c->h2, NULL, nva, n, &prd, s);
	CHECK(id > 0);
	s->id = t->sid = id;
	s->sud = t;
	s->active = true;
	s->wr_closed = true; /* END_STREAM after the headers */
	return t;
}

static void test_refusals(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	sv.respond_in_cb = true;
	run(&cl, &sv);
	nghttp2_nv get[] = {
		NV(":method", "GET", 3), NV(":scheme", "https", 5), NV(":path", "/", 1),
		NV(":authority", "10.0.0.1:80", 11),
	};
	struct tstream *g = raw_request(&cl, get, 4);
	struct tstream *bad[5];
	const char *auths[] = {"no-port", "10.0.0.1:70000", "10.0.0.1:+80", "::1:80", "a b:80"};
	for (int i = 0; i < 5; i++) {
		nghttp2_nv nv[] = {NV(":method", "CONNECT", 7), NV(":authority", auths[i], strlen(auths[i]))};
		bad[i] = raw_request(&cl, nv, 2);
	}
	/* These are fine: IPv6 and a gateway hostname. */
	struct tstream *v6 = open_stream(&cl, "[fd00::1]:9080");
	struct tstream *hn = open_stream(&cl, "reviews.default.svc.cluster.local:9080");
	run(&cl, &sv);
	CHECK(g->status == 400);
	int n400 = 0, nrst = 0;
	for (int i = 0; i < 5; i++) {
		n400 += bad[i]->status == 400;
		nrst += bad[i]->reset; /* nghttp2 rejects some itself (PROTOCOL_ERROR) */
	}
	CHECK(n400 + nrst == 5);
	CHECK(n400 >= 3);
	CHECK(sv.connects == 2);
	struct tstream *s6 = v6 ? find_ts(&sv, v6->sid) : NULL;
	struct tstream *sh = hn ? find_ts(&sv, hn->sid) : NULL;
	CHECK(s6 && !s6->target.is_host && s6->target.addr.ip.family == AF_INET6 &&
	      s6->target.port == 9080);
	CHECK(sh && sh->target.is_host && sh->target.port == 9080);
	if (sh)
		CHECK_STR(sh->target.host, "reviews.default.svc.cluster.local");
	CHECK(v6 && v6->status == 200);

	/* on_connect refusing at once: 401, and the stream is over. */
	sv.refuse_status = 401;
	struct tstream *d = open_stream(&cl, "10.0.0.9:80");
	run(&cl, &sv);
	CHECK(d && d->status == 401 && !d->reset);
	/* Answering later with 503. */
	sv.refuse_status = 0;
	sv.respond_in_cb = false;
	struct tstream *u = open_stream(&cl, "10.0.0.10:80");
	shuttle(&cl, &sv, SIZE_MAX);
	CHECK(sv.n_pending == 1);
	int32_t usid = sv.pending_respond[0];
	sv.n_pending = 0;
	CHECK(zt_h2c_respond(sv.c, usid, 503) == 0);
	CHECK(zt_h2c_respond(sv.c, usid, 200) == -ENOENT);
	CHECK(zt_h2c_respond(sv.c, 9999, 200) == -ENOENT);
	CHECK(zt_h2c_respond(sv.c, usid, 42) == -EINVAL);
	run(&cl, &sv);
	CHECK(u && u->status == 503);
	CHECK(zt_h2c_write(cl.c, u->sid, (const uint8_t *)"x", 1) == -ENOENT);
	CHECK(!cl.closed && !sv.closed);
	CHECK(zt_h2c_streams(sv.c) == 2); /* v6 and hn stay open */
	peer_fini(&cl);
	peer_fini(&sv);
}

static void test_parse_authority(void)
{
	struct zt_h2c_authority a;
#define PA(s) zt_h2c_parse_authority(s, strlen(s), &a)
	CHECK(PA("1.2.3.4:80") == 0 && !a.is_host && a.port == 80);
	CHECK(PA("[::1]:0") == 0 && a.addr.ip.family == AF_INET6);
	CHECK(PA("host-1.ns.svc:15008") == 0 && a.is_host && a.port == 15008);
	CHECK(PA("1.2.3.4") == -EINVAL);
	CHECK(PA("1.2.3.4:") == -EINVAL);
	CHECK(PA(":80") == -EINVAL);
	CHECK(PA("1.2.3.4:65536") == -EINVAL);
	CHECK(PA("1.2.3.4: 80") == -EINVAL);
	CHECK(PA("::1:80") == -EINVAL);
	CHECK(PA("[::1]") == -EINVAL);
	CHECK(PA("a/b:80") == -EINVAL);
	CHECK(PA("user@h:80") == -EINVAL);
	CHECK(zt_h2c_parse_authority("1.2.3.4:80\0x", 12, &a) == -EINVAL);
#undef PA
}

static void test_goaway(void)
{
	for (int who = 0; who < 2; who++) {
		struct peer cl, sv;
		pair(&cl, &sv);
		sv.respond_in_cb = true;
		struct tstream *t = open_stream(&cl, "10.0.0.2:80");
		run(&cl, &sv);
		struct tstream *st = t ? find_ts(&sv, t->sid) : NULL;
		CHECK(st != NULL);
		if (!st)
			goto next;
		CHECK(zt_h2c_goaway(who ? cl.c : sv.c) == 0);
		run(&cl, &sv);
		struct peer *other = who ? &sv : &cl;
		CHECK(other->goaways >= 1);
		if (!who)
			CHECK(cl.goaway_last == t->sid);
		int32_t sid;
		CHECK(zt_h2c_connect(cl.c, "10.0.0.3:80", NULL, NULL, NULL, NULL, &sid) == -ESHUTDOWN);
		CHECK(zt_h2c_streams_available(cl.c) == 0);
		/* The open stream finishes its business. */
		t->tx_goal = st->tx_goal = 1u << 20;
		t->close_after = st->close_after = true;
		try_send(t);
		try_send(st);
		CHECK(!cl.closed && !sv.closed);
		run(&cl, &sv);
		CHECK(st->rx == 1u << 20 && t->rx == 1u << 20 && t->eof && st->eof);
		CHECK(cl.closed && sv.closed);
		CHECK(cl.closed_err == 0 && sv.closed_err == 0);
		CHECK(zt_h2c_closed(cl.c) && zt_h2c_error(cl.c) == 0);
	next:
		peer_fini(&cl);
		peer_fini(&sv);
	}
}

static void test_handshake_failures(void)
{
	struct {
		const char *what;
		struct pem *crt, *key, *roots;
		int cl_err_a, cl_err_b, sv_err;
	} cases[] = {
		/* client trusts another root: it refuses the server */
		{"wrong root", &cli_crt, &cli_key, &ca2, -EKEYREJECTED, -EKEYREJECTED, -ECONNREFUSED},
		/* no client certificate: the server refuses */
		{"no client cert", NULL, NULL, &ca, -ECONNREFUSED, -ECONNREFUSED, -ENOKEY},
		/* client certificate from another CA */
		{"client cert from another CA", &bad_crt, &bad_key, &ca, -ECONNREFUSED, -ECONNREFUSED,
		 -EKEYREJECTED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		WOLFSSL_CTX *x;
		int r = zt_h2c_ctx_new(ZT_H2C_CLIENT, cases[i].crt ? cases[i].crt->p : NULL,
				       cases[i].crt ? cases[i].crt->n : 0,
				       cases[i].key ? cases[i].key->p : NULL,
				       cases[i].key ? cases[i].key->n : 0, cases[i].roots->p,
				       cases[i].roots->n, &x);
		CHECK(r == 0);
		struct peer cl, sv;
		peer_init(&cl, "client", ZT_H2C_CLIENT, x);
		peer_init(&sv, "server", ZT_H2C_SERVER, sctx);
		wolfSSL_CTX_free(x); /* the connection keeps its own reference */
		sv.respond_in_cb = true;
		struct tstream *t = open_stream(&cl, "10.0.0.2:80");
		run(&cl, &sv);
		fprintf(stderr, "  %s: client %d (%s), server %d (%s)\n", cases[i].what,
			cl.closed_err, zt_h2c_error_detail(cl.c), sv.closed_err,
			zt_h2c_error_detail(sv.c));
		CHECK(cl.closed && sv.closed);
		CHECK(cl.closed_err == cases[i].cl_err_a || cl.closed_err == cases[i].cl_err_b);
		CHECK(sv.closed_err == cases[i].sv_err);
		CHECK(sv.hs && sv.hs_err == cases[i].sv_err);
		CHECK(sv.connects == 0);
		CHECK(t && t->reset && t->reset_code == ZT_H2C_RESET_CONN_LOST);
		CHECK(zt_h2c_feed(sv.c, (const uint8_t *)"x", 1) == -ESHUTDOWN);
		peer_fini(&cl);
		peer_fini(&sv);
	}
}

static void test_identity_abort(void)
{
	/* The client refuses the server's identity in on_handshake_done; its
	 * queued CONNECT must never reach that server. */
	struct peer cl, sv;
	pair(&cl, &sv);
	cl.abort_on_hs = true;
	struct tstream *t = open_stream(&cl, "10.0.0.2:80");
	run(&cl, &sv);
	CHECK(cl.closed && cl.closed_err == -EKEYREJECTED);
	CHECK(sv.connects == 0);
	CHECK(t && t->reset && t->reset_code == ZT_H2C_RESET_CONN_LOST);
	CHECK(sv.closed);
	fprintf(stderr, "  identity abort: server sees %d (%s)\n", sv.closed_err,
		zt_h2c_error_detail(sv.c));
	peer_fini(&cl);
	peer_fini(&sv);
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t x = rnd_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rnd_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void test_garbage(void)
{
	static uint8_t buf[20000];
	/* Random bytes straight at a server. */
	for (int i = 0; i < 300; i++) {
		struct peer sv;
		peer_init(&sv, "server", ZT_H2C_SERVER, sctx);
		size_t n = 1 + rnd() % sizeof(buf);
		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)rnd();
		if (i % 3 == 0)
			buf[0] = 0x16, buf[1] = 3, buf[2] = 1; /* looks like a handshake record */
		size_t off = 0;
		int r = 0;
		while (off < n && r == 0) {
			size_t k = 1 + rnd() % 2000;
			if (k > n - off)
				k = n - off;
			r = zt_h2c_feed(sv.c, buf + off, k);
			off += k;
			shuttle(&sv, NULL, SIZE_MAX);
		}
		if (r == 0)
			r = zt_h2c_feed_eof(sv.c);
		CHECK(r < 0);
		CHECK(sv.closed && sv.closed_err < 0);
		peer_fini(&sv);
	}
	/* Garbage inside TLS: the server expects the HTTP/2 preface. The
	 * client's records stay with wolfSSL so the test can write plaintext
	 * with wolfSSL_write (the server opens them with its own layer). */
	struct peer cl, sv;
	pair(&cl, &sv);
	CHECK(zt_h2c_set_own_records(cl.c, false) == 0);
	cl.c->hs_done = false; /* keep the client from sending its preface */
	shuttle(&cl, &sv, SIZE_MAX);
	shuttle(&sv, &cl, SIZE_MAX);
	shuttle(&cl, &sv, SIZE_MAX);
	CHECK(zt_h2c_handshake_done(sv.c));
	for (size_t k = 0; k < 5000; k++)
		buf[k] = (uint8_t)rnd();
	CHECK(wolfSSL_write(cl.c->ssl, buf, 5000) == 5000);
	shuttle(&cl, &sv, SIZE_MAX);
	CHECK(sv.closed && sv.closed_err == -EPROTO);
	peer_fini(&cl);
	peer_fini(&sv);
	/* Garbage HTTP/2 frames after a good preface: GOAWAY PROTOCOL_ERROR. */
	pair(&cl, &sv);
	CHECK(zt_h2c_set_own_records(cl.c, false) == 0);
	run(&cl, &sv);
	memset(buf, 0, 64);
	buf[2] = 8;    /* length 8 */
	buf[3] = 0x4;  /* SETTINGS */
	buf[8] = 1;    /* on stream 1: a connection error */
	CHECK(wolfSSL_write(cl.c->ssl, buf, 17) == 17);
	run(&cl, &sv);
	CHECK(sv.closed && sv.closed_err == -EPROTO);
	CHECK(cl.goaways == 1);
	CHECK(cl.closed && cl.closed_err == -ECONNABORTED);
	peer_fini(&cl);
	peer_fini(&sv);
}

/* Our own record layer against itself and against wolfSSL's: data both
 * ways with KeyUpdates every 64 records (ours) and one asked for by
 * wolfSSL_update_keys (theirs); then a tampered record. */
static void test_own_records(void)
{
	static const struct {
		bool cl, sv;
	} combos[] = {{true, true}, {true, false}, {false, true}};
	for (size_t i = 0; i < sizeof(combos) / sizeof(combos[0]); i++) {
		struct peer cl, sv;
		pair(&cl, &sv);
		CHECK(zt_h2c_set_own_records(cl.c, combos[i].cl) == 0);
		CHECK(zt_h2c_set_own_records(sv.c, combos[i].sv) == 0);
		zt_h2c_set_key_update_records(cl.c, 64);
		zt_h2c_set_key_update_records(sv.c, 64);
		struct tstream *t = open_stream(&cl, "10.1.2.3:8080");
		run(&cl, &sv);
		CHECK(zt_h2c_own_records(cl.c) == combos[i].cl);
		CHECK(zt_h2c_own_records(sv.c) == combos[i].sv);
		CHECK(zt_h2c_set_own_records(cl.c, true) == -EINVAL); /* too late */
		struct tstream *st = t ? find_ts(&sv, t->sid) : NULL;
		CHECK(t && t->status == 200 && st);
		if (!t || !st) {
			peer_fini(&cl);
			peer_fini(&sv);
			continue;
		}
		t->tx_goal = 6u << 20;
		st->tx_goal = 5u << 20;
		kick_sends(&cl);
		kick_sends(&sv);
		/* Half way, the wolfSSL side (if any) asks for a KeyUpdate. */
		for (int k = 0; k < 40; k++) {
			shuttle(&cl, &sv, 256u << 10);
			shuttle(&sv, &cl, 256u << 10);
			respond_pending(&sv);
			kick_sends(&cl);
			kick_sends(&sv);
		}
		struct peer *theirs = !combos[i].cl ? &cl : !combos[i].sv ? &sv : NULL;
		if (theirs)
			CHECK(wolfSSL_update_keys(theirs->c->ssl) == WOLFSSL_SUCCESS);
		t->close_after = st->close_after = true;
		kick_sends(&cl);
		kick_sends(&sv);
		run(&cl, &sv);
		CHECK(st->rx == 6u << 20 && !st->bad_data && st->eof);
		CHECK(t->rx == 5u << 20 && !t->bad_data && t->eof);
		CHECK(!cl.closed && !sv.closed);
		uint64_t cl_in, sv_in;
		uint64_t cl_out = zt_h2c_key_updates(cl.c, &cl_in);
		uint64_t sv_out = zt_h2c_key_updates(sv.c, &sv_in);
		fprintf(stderr, "  own records client %d server %d: KeyUpdates client sent %llu got %llu, "
			"server sent %llu got %llu\n", combos[i].cl, combos[i].sv,
			(unsigned long long)cl_out, (unsigned long long)cl_in,
			(unsigned long long)sv_out, (unsigned long long)sv_in);
		/* 6 MiB is ~390 records: at least 5 updates; the wolfSSL side's
		 * request is answered. */
		if (combos[i].cl)
			CHECK(cl_out >= 5);
		if (combos[i].sv)
			CHECK(sv_out >= 5);
		if (combos[i].cl && combos[i].sv)
			CHECK(cl_in == sv_out && sv_in == cl_out);
		if (!combos[i].cl)
			CHECK(sv_in == 1);
		if (!combos[i].sv)
			CHECK(cl_in == 1);
		peer_fini(&cl);
		peer_fini(&sv);
	}

	/* A record changed on the way: bad_record_mac, both ends close. */
	struct peer cl, sv;
	pair(&cl, &sv);
	struct tstream *t = open_stream(&cl, "10.1.2.3:8080");
	run(&cl, &sv);
	CHECK(zt_h2c_own_records(cl.c) && zt_h2c_own_records(sv.c));
	CHECK(t && t->status == 200);
	if (t) {
		t->tx_goal = 1000;
		try_send(t);
		const uint8_t *q;
		size_t n = zt_h2c_out(cl.c, &q);
		CHECK(n > 40);
		if (n > 40)
			((uint8_t *)q)[n - 20] ^= 0x40; /* inside the last tag */
		shuttle(&cl, &sv, SIZE_MAX);
		CHECK(sv.closed && sv.closed_err == -EBADMSG);
		CHECK(strstr(zt_h2c_error_detail(sv.c), "authentication failed") != NULL);
		shuttle(&sv, &cl, SIZE_MAX);
		CHECK(cl.closed && cl.closed_err == -ECONNREFUSED);
		CHECK(strstr(zt_h2c_error_detail(cl.c), "bad_record_mac") != NULL);
		fprintf(stderr, "  tampered: server \"%s\", client \"%s\"\n",
			zt_h2c_error_detail(sv.c), zt_h2c_error_detail(cl.c));
	}
	peer_fini(&cl);
	peer_fini(&sv);

	/* Hostile bytes after the handshake, fed in random pieces: each case
	 * ends the connection with its reason, never a crash or a hang. */
	static const struct {
		const char *what;
		uint8_t hdr[5];
		const char *detail;
	} bad[] = {
		{"handshake record type", {0x16, 3, 3, 0, 40}, "unexpected record"},
		{"ChangeCipherSpec", {0x14, 3, 3, 0, 1}, "unexpected record"},
		{"bad version", {0x17, 3, 1, 0, 40}, "malformed record"},
		{"too long", {0x17, 3, 3, 0x41, 0x01}, "record too long"},
		{"shorter than a tag", {0x17, 3, 3, 0, 16}, "malformed record"},
		{"random ciphertext", {0x17, 3, 3, 0x10, 0}, "authentication failed"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pair(&cl, &sv);
		run(&cl, &sv);
		CHECK(zt_h2c_own_records(sv.c));
		uint8_t buf[5 + 4096];
		memcpy(buf, bad[i].hdr, 5);
		for (size_t k = 5; k < sizeof(buf); k++)
			buf[k] = (uint8_t)rnd();
		int r = 0;
		for (size_t off = 0; off < sizeof(buf) && r == 0;) {
			size_t k = 1 + rnd() % 700;
			if (k > sizeof(buf) - off)
				k = sizeof(buf) - off;
			r = zt_h2c_feed(sv.c, buf + off, k);
			off += k;
		}
		CHECK(r < 0 && sv.closed);
		CHECK(strstr(zt_h2c_error_detail(sv.c), bad[i].detail) != NULL);
		fprintf(stderr, "  %s: %s\n", bad[i].what, zt_h2c_error_detail(sv.c));
		peer_fini(&cl);
		peer_fini(&sv);
	}
}

/* Payloads kept in their record blocks stay intact while later records
 * arrive and after the connection is gone; with wolfSSL's records nothing
 * can be kept. Released blocks go back to the pool, up to its limit. */
static void test_held_blocks(void)
{
	for (int own = 1; own >= 0; own--) {
		struct peer cl, sv;
		pair(&cl, &sv);
		CHECK(zt_h2c_set_own_records(sv.c, own) == 0);
		struct zt_h2c_blk_pool pool = {.keep = 4};
		zt_h2c_set_blk_pool(sv.c, &pool);
		sv.hold = true;
		struct tstream *t = open_stream(&cl, "10.1.2.3:8080");
		run(&cl, &sv);
		CHECK(t && t->status == 200);
		if (!t) {
			peer_fini(&cl);
			peer_fini(&sv);
			continue;
		}
		t->tx_goal = 3u << 20;
		t->close_after = true;
		kick_sends(&cl);
		run(&cl, &sv);
		struct tstream *st = find_ts(&sv, t->sid);
		CHECK(st && st->rx == 3u << 20 && !st->bad_data && st->eof);
		uint8_t outside[16] = {0};
		CHECK(zt_h2c_hold(sv.c, outside, sizeof(outside)) == NULL);
		peer_fini(&cl);
		peer_fini(&sv);
		fprintf(stderr, "  own records %d: %u payloads kept, %llu bytes\n", own, sv.n_held,
			(unsigned long long)sv.held_bytes);
		if (own)
			/* ~190 records of 3 MiB: nearly all of it kept */
			CHECK(sv.n_held >= 150 && sv.held_bytes >= (3u << 20) * 9 / 10);
		else
			CHECK(sv.n_held == 0);
		unsigned bad = 0;
		for (unsigned i = 0; i < sv.n_held; i++) {
			struct held *h = &sv.held[i];
			for (size_t k = 0; k < h->n; k++)
				if (h->d[k] != pat(h->sid, h->at + k)) {
					bad++;
					break;
				}
			zt_h2c_blk_put(h->b);
		}
		CHECK(bad == 0);
		CHECK(pool.n == (own ? 4u : 0u)); /* the rest were freed */
		zt_h2c_blk_pool_drain(&pool);
		CHECK(pool.n == 0 && !pool.free);
	}
}

static void test_ping(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	run(&cl, &sv);
	CHECK(zt_h2c_deadline(cl.c) == 0);
	uint64_t t0 = 1000000;
	/* Answered pings: the connection lives on. */
	for (uint64_t t = t0; t < t0 + 100000; t += 500) {
		CHECK(zt_h2c_tick(cl.c, t) == 0);
		CHECK(zt_h2c_tick(sv.c, t) == 0);
		run(&cl, &sv);
	}
	CHECK(!cl.closed && !sv.closed);
	CHECK(cl.c->ping_seq >= 8);
	/* Now the server's bytes are lost. */
	uint64_t t1 = t0 + 200000;
	CHECK(zt_h2c_tick(cl.c, t1) == 0);
	CHECK(zt_h2c_deadline(cl.c) <= t1 + ZT_H2C_PING_TIMEOUT_MS);
	uint64_t sent_at = 0;
	for (uint64_t t = t1; t < t1 + 60000 && !cl.closed; t += 100) {
		int r = zt_h2c_tick(cl.c, t);
		if (cl.c->ping_out && !sent_at)
			sent_at = t;
		if (r) {
			CHECK(r == -ETIMEDOUT);
			CHECK(sent_at && t - sent_at == ZT_H2C_PING_TIMEOUT_MS);
		}
		shuttle(&cl, &sv, SIZE_MAX);
		shuttle(&sv, NULL, SIZE_MAX); /* dropped */
	}
	CHECK(cl.closed && cl.closed_err == -ETIMEDOUT);
	/* a ping was due at t1 already, or 10 s after the last answer */
	CHECK(sent_at == t1 || sent_at == t1 + ZT_H2C_PING_INTERVAL_MS);
	peer_fini(&cl);
	peer_fini(&sv);
}

static void test_eof_and_misc(void)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	sv.respond_in_cb = true;
	sv.write_in_data = true;
	struct tstream *t = open_stream(&cl, "10.0.0.2:80");
	run(&cl, &sv);
	if (!t)
		goto out;
	t->tx_goal = 10;
	try_send(t);
	run(&cl, &sv);
	struct tstream *st = find_ts(&sv, t->sid);
	CHECK(st && st->writable_calls == 1); /* the write inside on_data came back */
	/* out_iov sees the same bytes as out. */
	CHECK(zt_h2c_write(cl.c, t->sid, (const uint8_t *)"hello", 5) == 5);
	struct iovec iov[8];
	int n = zt_h2c_out_iov(cl.c, iov, 8);
	size_t tot = 0;
	for (int i = 0; i < n; i++)
		tot += iov[i].iov_len;
	CHECK(n >= 1 && tot == zt_h2c_out_pending(cl.c));
	/* The transport dies: streams are reset, the connection is closed. */
	CHECK(zt_h2c_feed_eof(sv.c) == -ECONNRESET);
	CHECK(sv.closed && sv.closed_err == -ECONNRESET);
	CHECK(st && st->reset && st->reset_code == ZT_H2C_RESET_CONN_LOST);
	CHECK(zt_h2c_respond(sv.c, 1, 200) == -ESHUTDOWN);
	CHECK(zt_h2c_goaway(sv.c) == -ESHUTDOWN);
	CHECK(zt_h2c_deadline(sv.c) == UINT64_MAX);
out:
	peer_fini(&cl);
	peer_fini(&sv);
}

static void test_ctx_errors(void)
{
	WOLFSSL_CTX *x = (WOLFSSL_CTX *)1;
	CHECK(zt_h2c_ctx_new(ZT_H2C_SERVER, NULL, 0, NULL, 0, ca.p, ca.n, &x) == -EINVAL && !x);
	CHECK(zt_h2c_ctx_new(ZT_H2C_CLIENT, cli_crt.p, cli_crt.n, NULL, 0, ca.p, ca.n, &x) == -EINVAL);
	CHECK(zt_h2c_ctx_new(ZT_H2C_CLIENT, "junk", 4, "junk", 4, ca.p, ca.n, &x) == -EINVAL);
	/* key of another certificate */
	CHECK(zt_h2c_ctx_new(ZT_H2C_SERVER, srv_crt.p, srv_crt.n, cli_key.p, cli_key.n, ca.p, ca.n,
			     &x) == -EINVAL);
	CHECK(zt_h2c_ctx_new(ZT_H2C_SERVER, srv_crt.p, srv_crt.n, srv_key.p, srv_key.n, NULL, 0,
			     &x) == -EINVAL);
	struct zt_h2c *c;
	CHECK(zt_h2c_new(ZT_H2C_CLIENT, NULL, &cbs, NULL, &c) == -EINVAL);
}

/* ZT_H2C_BENCH=<MiB>: one tunnel, client -> server, in one thread: what a
 * byte costs through TLS + HTTP/2 on both ends (encrypt, frame, decrypt). */
static void bench(unsigned mib)
{
	struct peer cl, sv;
	pair(&cl, &sv);
	sv.respond_in_cb = true;
	cl.fast = sv.fast = true;
	struct tstream *t = open_stream(&cl, "10.0.0.2:80");
	run(&cl, &sv);
	if (!t)
		return;
	t->tx_goal = (uint64_t)mib << 20;
	struct timespec a, b;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	try_send(t);
	run(&cl, &sv);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	struct tstream *st = find_ts(&sv, t->sid);
	printf("bench: %u MiB in %.3f s CPU = %.2f GB/s (encrypt+decrypt, one core); "
	       "struct zt_h2c %zu bytes, %s\n",
	       mib, s, (double)((uint64_t)mib << 20) / s / 1e9, sizeof(struct zt_h2c),
	       zt_h2c_cipher(cl.c));
	CHECK(st && st->rx == t->tx_goal);
	peer_fini(&cl);
	peer_fini(&sv);
}

/* ZT_H2C_MEM=<n>: heap held per idle connection and per open stream. */
static void mem_report(int n)
{
	static struct peer cl[64], sv[64];
	if (n > 64)
		n = 64;
	struct mallinfo2 a = mallinfo2();
	for (int i = 0; i < n; i++) {
		pair(&cl[i], &sv[i]);
		sv[i].respond_in_cb = true;
		run(&cl[i], &sv[i]);
	}
	struct mallinfo2 b = mallinfo2();
	for (int i = 0; i < n; i++) {
		zt_h2c_set_max_streams(cl[i].c, 100);
		for (int k = 0; k < 100; k++)
			open_stream(&cl[i], "10.0.0.1:80");
		run(&cl[i], &sv[i]);
	}
	struct mallinfo2 c = mallinfo2();
	printf("mem: idle connection (client+server pair) %zu bytes each side on average; "
	       "open stream %zu bytes (both sides)\n",
	       (b.uordblks - a.uordblks) / (size_t)n / 2,
	       (c.uordblks - b.uordblks) / (size_t)n / 100);
	for (int i = 0; i < n; i++) {
		peer_fini(&cl[i]);
		peer_fini(&sv[i]);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int r = make_certs();
	if (r) {
		if (r == 77)
			printf("openssl CLI not found: skipped\n");
		return r;
	}
	if (getenv("ZT_TEST_DEBUG"))
		zt_log_configure("debug", false);
	else
		zt_log_configure("error", false);
	wolfSSL_Init();
	CHECK(zt_h2c_ctx_new(ZT_H2C_SERVER, srv_crt.p, srv_crt.n, srv_key.p, srv_key.n, ca.p, ca.n,
			     &sctx) == 0);
	CHECK(zt_h2c_ctx_new(ZT_H2C_CLIENT, cli_crt.p, cli_crt.n, cli_key.p, cli_key.n, ca.p, ca.n,
			     &cctx) == 0);
	struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{"parse_authority", test_parse_authority},
		{"ctx_errors", test_ctx_errors},
		{"handshake_and_tunnel", test_handshake_and_tunnel},
		{"many_streams", test_many_streams},
		{"flow_control", test_flow_control},
		{"half_close", test_half_close},
		{"reset", test_reset},
		{"refusals", test_refusals},
		{"goaway", test_goaway},
		{"handshake_failures", test_handshake_failures},
		{"identity_abort", test_identity_abort},
		{"garbage", test_garbage},
		{"own_records", test_own_records},
		{"held_blocks", test_held_blocks},
		{"ping", test_ping},
		{"eof_and_misc", test_eof_and_misc},
	};
	if (getenv("ZT_H2C_MEM")) {
		mem_report(atoi(getenv("ZT_H2C_MEM")));
		goto done;
	}
	if (getenv("ZT_H2C_BENCH")) {
		bench((unsigned)atoi(getenv("ZT_H2C_BENCH")));
		goto done;
	}
	const char *only = getenv("ZT_TEST_ONLY");
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (only && strcmp(only, tests[i].name))
			continue;
		int before = zt_test_failures;
		tests[i].fn();
		printf("%-24s %s\n", tests[i].name, zt_test_failures == before ? "ok" : "FAILED");
		fflush(stdout);
	}
done:
	wolfSSL_CTX_free(sctx);
	wolfSSL_CTX_free(cctx);
	wolfSSL_Cleanup();
	rm_certs();
	struct pem *all[] = {&ca, &ca2, &srv_crt, &srv_key, &cli_crt, &cli_key, &bad_crt, &bad_key};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]->p);
	TEST_DONE();
}
