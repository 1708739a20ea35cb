/* tls_test.c - mutual TLS 1.3 in memory between contexts made from the
 * certificate store: ALPN h2, AES-GCM only, each side sees the other's SPIFFE
 * identity; handshakes that must fail (other root, no client certificate,
 * expired certificate, a client offering no suite we accept). */
#include "test/unit/hbone/pki_util.h"

#include <time.h>

#include "hbone/ca.h"
#include "hbone/certstore.h"

static struct zt_identity sleep_id, httpbin_id;

/* A store holding certificates for sleep and httpbin from `ca`, issued at
 * `now` with lifetime ttl. */
static struct zt_certstore *store_for(struct zt_ca *ca, time_t now, uint32_t ttl)
{
	struct zt_issued a, b;
	CHECK(zt_ca_issue(ca, &sleep_id, now, ttl, &a) == 0);
	CHECK(zt_ca_issue(ca, &httpbin_id, now, ttl, &b) == 0);
	struct zt_cert_input in[2] = {
		{&sleep_id, a.chain_pem, strlen(a.chain_pem), a.key_pem, strlen(a.key_pem)},
		{&httpbin_id, b.chain_pem, strlen(b.chain_pem), b.key_pem, strlen(b.key_pem)},
	};
	struct zt_certstore *s = NULL;
	char err[300];
	const char *roots = zt_ca_root_pem(ca);
	CHECK(zt_certstore_build(in, 2, roots, strlen(roots), &s, err, sizeof err) == 0);
	if (!s) {
		fprintf(stderr, "build: %s\n", err);
		exit(1);
	}
	zt_issued_free(&a);
	zt_issued_free(&b);
	return s;
}

static WOLFSSL_CTX *ctx_for(const struct zt_certstore *s, const struct zt_identity *id,
			    enum zt_tls_side side)
{
	WOLFSSL_CTX *ctx = NULL;
	CHECK(zt_certstore_ctx_new(s, zt_certstore_find(s, id), side, &ctx) == 0);
	if (!ctx)
		exit(1);
	return ctx;
}

static void alpn_is_h2(WOLFSSL *ssl)
{
	char *proto = NULL;
	unsigned short len = 0;
	CHECK(wolfSSL_ALPN_GetProtocol(ssl, &proto, &len) == WOLFSSL_SUCCESS);
	CHECK(len == 2 && proto && memcmp(proto, "h2", 2) == 0);
}

/* Move application data across once the handshake is done. */
static void exchange(struct pki_tls *t)
{
	char buf[64];
	CHECK(wolfSSL_write(t->client, "ping", 4) == 4);
	CHECK(wolfSSL_read(t->server, buf, sizeof buf) == 4 && memcmp(buf, "ping", 4) == 0);
	CHECK(wolfSSL_write(t->server, "pong!", 5) == 5);
	CHECK(wolfSSL_read(t->client, buf, sizeof buf) == 5 && memcmp(buf, "pong!", 5) == 0);
}

static void test_mutual_tls(struct zt_ca *ca)
{
	struct zt_certstore *s = store_for(ca, time(NULL), 0);
	WOLFSSL_CTX *sctx = ctx_for(s, &httpbin_id, ZT_TLS_SERVER);
	WOLFSSL_CTX *cctx = ctx_for(s, &sleep_id, ZT_TLS_CLIENT);
	/* The contexts hold copies: the store may be reclaimed before they are
	 * used (a shard keeps its CTX across a store switch). */
	zt_certstore_free(s);

	struct pki_tls t;
	bool ok = pki_tls_handshake(&t, cctx, sctx);
	if (!ok)
		fprintf(stderr, "handshake: client %d (%s), server %d (%s)\n", t.client_err,
			wolfSSL_ERR_reason_error_string(t.client_err), t.server_err,
			wolfSSL_ERR_reason_error_string(t.server_err));
	CHECK(ok);
	if (ok) {
		CHECK_STR(wolfSSL_get_version(t.client), "TLSv1.3");
		CHECK_STR(wolfSSL_get_version(t.server), "TLSv1.3");
		/* TLS_AES_128_GCM_SHA256 in wolfSSL's naming */
		CHECK_STR(wolfSSL_get_cipher_name(t.client), "TLS13-AES128-GCM-SHA256");
		CHECK_STR(wolfSSL_get_cipher_name(t.server), "TLS13-AES128-GCM-SHA256");
		alpn_is_h2(t.client);
		alpn_is_h2(t.server);
		/* Each side sees the other's SPIFFE identity. */
		struct zt_identity peer;
		CHECK(zt_identity_from_peer(&peer, t.server) == 0);
		CHECK(zt_identity_eq(&peer, &sleep_id));
		CHECK(zt_identity_from_peer(&peer, t.client) == 0);
		CHECK(zt_identity_eq(&peer, &httpbin_id));
		CHECK(zt_identity_same_td(&peer, &sleep_id));
		/* no resumption material from the server */
		CHECK(wolfSSL_session_reused(t.client) == 0);
		exchange(&t);
	}
	pki_tls_free(&t);

	/* A client that only offers AES-256-GCM gets it. */
	CHECK(wolfSSL_CTX_set_cipher_list(cctx, "TLS13-AES256-GCM-SHA384") == WOLFSSL_SUCCESS);
	CHECK(pki_tls_handshake(&t, cctx, sctx));
	if (t.client)
		CHECK_STR(wolfSSL_get_cipher_name(t.client), "TLS13-AES256-GCM-SHA384");
	pki_tls_free(&t);

	/* One that only offers ChaCha20-Poly1305 (the build has it) is refused:
	 * the server accepts AES-GCM only. */
	CHECK(wolfSSL_CTX_set_cipher_list(cctx, "TLS13-CHACHA20-POLY1305-SHA256") ==
	      WOLFSSL_SUCCESS);
	CHECK(!pki_tls_handshake(&t, cctx, sctx));
	CHECK(t.server_err != 0);
	printf("chacha-only client: server %d (%s)\n", t.server_err,
	       wolfSSL_ERR_reason_error_string(t.server_err));
	pki_tls_free(&t);

	wolfSSL_CTX_free(cctx);
	wolfSSL_CTX_free(sctx);
}

static void test_refused(struct zt_ca *ca)
{
	time_t now = time(NULL);
	struct zt_ca *other;
	CHECK(zt_ca_generate(&other, NULL, now, 0) == 0);
	struct zt_certstore *ours = store_for(ca, now, 0);
	struct zt_certstore *theirs = store_for(other, now, 0);
	struct zt_certstore *expired = store_for(ca, now - 2 * 86400, 86400);
	WOLFSSL_CTX *sctx = ctx_for(ours, &httpbin_id, ZT_TLS_SERVER);
	struct pki_tls t;

	/* A client certificate from another root: the server refuses. */
	WOLFSSL_CTX *foreign = ctx_for(theirs, &sleep_id, ZT_TLS_CLIENT);
	/* the foreign client trusts our root, so only the server can object */
	size_t rl;
	const uint8_t *rd = zt_ca_root_der(ca, &rl);
	CHECK(wolfSSL_CTX_load_verify_buffer(foreign, rd, (long)rl, WOLFSSL_FILETYPE_ASN1) ==
	      WOLFSSL_SUCCESS);
	CHECK(!pki_tls_handshake(&t, foreign, sctx));
	CHECK(t.server_err != 0);
	printf("client from another root: server %d (%s)\n", t.server_err,
	       wolfSSL_ERR_reason_error_string(t.server_err));
	struct zt_identity peer;
	CHECK(zt_identity_from_peer(&peer, t.client) == 0 || t.client_err != 0);
	pki_tls_free(&t);
	wolfSSL_CTX_free(foreign);

	/* A server certificate from another root: the client refuses. */
	WOLFSSL_CTX *cctx = ctx_for(ours, &sleep_id, ZT_TLS_CLIENT);
	WOLFSSL_CTX *fsrv = ctx_for(theirs, &httpbin_id, ZT_TLS_SERVER);
	CHECK(!pki_tls_handshake(&t, cctx, fsrv));
	CHECK(t.client_err != 0);
	printf("server from another root: client %d (%s)\n", t.client_err,
	       wolfSSL_ERR_reason_error_string(t.client_err));
	pki_tls_free(&t);
	wolfSSL_CTX_free(fsrv);

	/* No client certificate at all. */
	WOLFSSL_CTX *anon = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	CHECK(anon && wolfSSL_CTX_load_verify_buffer(anon, rd, (long)rl, WOLFSSL_FILETYPE_ASN1) ==
			      WOLFSSL_SUCCESS);
	CHECK(!pki_tls_handshake(&t, anon, sctx));
	CHECK(t.server_err != 0);
	printf("no client certificate: server %d (%s)\n", t.server_err,
	       wolfSSL_ERR_reason_error_string(t.server_err));
	pki_tls_free(&t);
	wolfSSL_CTX_free(anon);

	/* An expired client certificate from the right root. */
	WOLFSSL_CTX *old = ctx_for(expired, &sleep_id, ZT_TLS_CLIENT);
	CHECK(!pki_tls_handshake(&t, old, sctx));
	CHECK(t.server_err != 0);
	printf("expired client certificate: server %d (%s)\n", t.server_err,
	       wolfSSL_ERR_reason_error_string(t.server_err));
	pki_tls_free(&t);
	wolfSSL_CTX_free(old);

	/* And the right client still gets in. */
	CHECK(pki_tls_handshake(&t, cctx, sctx));
	pki_tls_free(&t);

	wolfSSL_CTX_free(cctx);
	wolfSSL_CTX_free(sctx);
	zt_certstore_free(ours);
	zt_certstore_free(theirs);
	zt_certstore_free(expired);
	zt_ca_free(other);
}

int main(void)
{
	CHECK(wolfSSL_Init() == WOLFSSL_SUCCESS);
	CHECK(zt_identity_set(&sleep_id, "cluster.local", "ambient-demo", "sleep") == 0);
	CHECK(zt_identity_set(&httpbin_id, "cluster.local", "ambient-demo", "httpbin") == 0);
	struct zt_ca *ca;
	CHECK(zt_ca_generate(&ca, NULL, time(NULL), 0) == 0);
	if (!ca)
		return 1;
	test_mutual_tls(ca);
	test_refused(ca);
	zt_ca_free(ca);
	wolfSSL_Cleanup();
	TEST_DONE();
}
