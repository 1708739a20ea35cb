/* certstore_test.c - building, looking up, renewing (fake clock), updating
 * and refusing certificate stores; RCU publication and reclamation. */
#include "test/unit/hbone/pki_util.h"

#include <errno.h>
#include <time.h>

#include "common/qsbr.h"
#include "hbone/ca.h"
#include "hbone/certstore.h"

#define TTL 1000

static struct zt_identity sleep_id, httpbin_id, other_id;

static struct zt_cert_input input(const struct zt_identity *id, const struct zt_issued *is)
{
	return (struct zt_cert_input){
		.id = id,
		.chain_pem = is->chain_pem,
		.chain_len = strlen(is->chain_pem),
		.key_pem = is->key_pem,
		.key_len = strlen(is->key_pem),
	};
}

static int leaf_der(const char *pem, uint8_t *der, size_t cap)
{
	return wc_CertPemToDer((const unsigned char *)pem, (int)strlen(pem), der, (int)cap,
			       CERT_TYPE);
}

static void test_build_and_renew(struct zt_ca *ca)
{
	const time_t t0 = time(NULL);
	struct zt_issued s1, h1;
	CHECK(zt_ca_issue(ca, &sleep_id, t0, TTL, &s1) == 0);
	CHECK(zt_ca_issue(ca, &httpbin_id, t0 + 100, TTL, &h1) == 0);

	/* httpbin first and with its identity left to the certificate: the
	 * store sorts, and reads the identity from the SAN. */
	struct zt_cert_input in[2] = {input(NULL, &h1), input(&sleep_id, &s1)};
	struct zt_certstore *s;
	char err[400] = "";
	const char *roots = zt_ca_root_pem(ca);
	CHECK(zt_certstore_build(in, 2, roots, strlen(roots), &s, err, sizeof err) == 0);
	if (!s) {
		fprintf(stderr, "build: %s\n", err);
		exit(1);
	}
	CHECK(s->n == 2 && s->n_roots == 1);
	size_t root_len;
	const uint8_t *root = zt_ca_root_der(ca, &root_len);
	CHECK(s->roots[0].len == root_len && memcmp(s->roots[0].data, root, root_len) == 0);
	CHECK(zt_identity_eq(&s->entries[0].id, &httpbin_id));
	CHECK(zt_identity_eq(&s->entries[1].id, &sleep_id));

	const struct zt_cert_entry *es = zt_certstore_find(s, &sleep_id);
	const struct zt_cert_entry *eh = zt_certstore_find(s, &httpbin_id);
	CHECK(es == &s->entries[1] && eh == &s->entries[0]);
	CHECK(zt_certstore_find(s, &other_id) == NULL);
	CHECK(zt_certstore_find_uri(s, sleep_id.uri, sleep_id.len) == es);
	CHECK(zt_certstore_find_uri(s, sleep_id.uri, sleep_id.len - 1) == NULL);
	CHECK(zt_certstore_find_uri(s, "spiffe://", 9) == NULL);

	/* The root copy in chain_pem was dropped: the chain is just the leaf. */
	uint8_t der[4096];
	int n = leaf_der(s1.cert_pem, der, sizeof der);
	CHECK(n > 0 && es->leaf.len == (size_t)n && memcmp(es->leaf.data, der, (size_t)n) == 0);
	CHECK(es->chain.data == es->leaf.data && es->chain.len == es->leaf.len);
	CHECK(es->key.len > 0);
	CHECK(es->not_before == s1.not_before && es->not_after == s1.not_after);
	CHECK(es->refresh_at == t0 - ZT_CA_BACKDATE + (TTL + ZT_CA_BACKDATE) / 2);
	CHECK(strlen(es->serial) > 20 && strcmp(es->serial, eh->serial) != 0);

	/* Renewal with a fake clock: sleep reaches half-life first. */
	const struct zt_identity *due[4];
	CHECK(zt_certstore_next_refresh(s) == es->refresh_at);
	CHECK(zt_certstore_due(s, t0 + 100, due, 4) == 0);
	CHECK(zt_certstore_due(s, es->refresh_at - 1, due, 4) == 0);
	CHECK(zt_certstore_due(s, es->refresh_at, due, 4) == 1 && due[0] == &es->id);
	CHECK(zt_certstore_due(s, eh->refresh_at - 1, due, 4) == 1);
	CHECK(zt_certstore_due(s, eh->refresh_at, due, 4) == 2);
	CHECK(zt_certstore_due(s, eh->refresh_at, due, 1) == 2); /* count, out[0] only */
	CHECK(zt_certstore_due(s, es->not_after + 1, due, 4) == 2); /* expired: due */
	/* A clock ahead of ours made it: replace at once, as ztunnel does. */
	CHECK(zt_certstore_due(s, eh->not_before - 1, due, 4) == 1 && due[0] == &eh->id);
	CHECK(zt_certstore_due(s, es->not_before - 1, due, 4) == 2);

	/* At half-life the control thread gets a new certificate and updates;
	 * until then the old one stays. The old store is untouched. */
	time_t t1 = es->refresh_at;
	struct zt_issued s2;
	CHECK(zt_ca_issue(ca, &sleep_id, t1, TTL, &s2) == 0);
	struct zt_cert_input in2 = input(&sleep_id, &s2);
	struct zt_certstore *s_2;
	CHECK(zt_certstore_update(s, &in2, 1, NULL, 0, &s_2, err, sizeof err) == 0);
	CHECK(s_2 && s_2->n == 2 && s_2->generation > s->generation);
	const struct zt_cert_entry *es2 = zt_certstore_find(s_2, &sleep_id);
	const struct zt_cert_entry *eh2 = zt_certstore_find(s_2, &httpbin_id);
	CHECK(es2 && eh2);
	CHECK(strcmp(es2->serial, es->serial) != 0);
	CHECK(es2->not_before == t1 - ZT_CA_BACKDATE);
	CHECK(!zt_cert_entry_due(es2, t1));
	CHECK(zt_cert_entry_due(es, t1)); /* old store still says so */
	/* httpbin carried over byte for byte */
	CHECK(strcmp(eh2->serial, eh->serial) == 0);
	CHECK(eh2->chain.len == eh->chain.len &&
	      memcmp(eh2->chain.data, eh->chain.data, eh->chain.len) == 0);
	CHECK(eh2->key.len == eh->key.len &&
	      memcmp(eh2->key.data, eh->key.data, eh->key.len) == 0);
	CHECK(eh2->refresh_at == eh->refresh_at);
	/* versions: httpbin's unchanged, sleep's new, all distinct otherwise */
	CHECK(eh2->version == eh->version);
	CHECK(es2->version != es->version && es->version != eh->version);
	CHECK(es2->version != s_2->generation);
	CHECK(s_2->roots[0].len == root_len);
	CHECK(zt_certstore_due(s_2, t1, due, 4) == 0);
	CHECK(zt_certstore_next_refresh(s_2) == eh->refresh_at);

	/* Removing an identity; adding one. */
	const struct zt_identity *rm[] = {&httpbin_id};
	struct zt_certstore *s_3;
	CHECK(zt_certstore_update(s_2, NULL, 0, rm, 1, &s_3, err, sizeof err) == 0);
	CHECK(s_3->n == 1 && zt_certstore_find(s_3, &httpbin_id) == NULL);
	struct zt_issued o1;
	CHECK(zt_ca_issue(ca, &other_id, t1, TTL, &o1) == 0);
	struct zt_cert_input in3 = input(&other_id, &o1);
	struct zt_certstore *s_4;
	CHECK(zt_certstore_update(s_3, &in3, 1, NULL, 0, &s_4, err, sizeof err) == 0);
	CHECK(s_4->n == 2 && zt_certstore_find(s_4, &other_id) != NULL);
	/* An empty store is fine too. */
	const struct zt_identity *rm2[] = {&sleep_id, &other_id};
	struct zt_certstore *s_5;
	CHECK(zt_certstore_update(s_4, NULL, 0, rm2, 2, &s_5, err, sizeof err) == 0);
	CHECK(s_5->n == 0 && zt_certstore_find(s_5, &sleep_id) == NULL);
	CHECK(zt_certstore_next_refresh(s_5) == 0 && zt_certstore_due(s_5, t1, due, 4) == 0);

	/* Shards make TLS contexts from entries. */
	WOLFSSL_CTX *ctx;
	CHECK(zt_certstore_ctx_new(s_4, zt_certstore_find(s_4, &other_id), ZT_TLS_SERVER,
				   &ctx) == 0);
	wolfSSL_CTX_free(ctx);
	CHECK(zt_certstore_ctx_new(s_4, zt_certstore_find(s_4, &sleep_id), ZT_TLS_CLIENT,
				   &ctx) == 0);
	wolfSSL_CTX_free(ctx);

	/* Published and reclaimed like the snapshot. */
	struct zt_qsbr q;
	CHECK(zt_qsbr_init(&q, 1) == 0);
	struct zt_certstore *ZT_RCU current = s;
	zt_qsbr_online(&q, 0);
	const struct zt_certstore *seen = zt_rcu_deref(&current);
	CHECK(zt_certstore_find(seen, &sleep_id) == es);
	struct zt_certstore *stores[] = {s_2, s_3, s_4, s_5};
	for (size_t i = 0; i < 4; i++) {
		struct zt_certstore *old = zt_rcu_publish(&current, stores[i]);
		CHECK(zt_qsbr_retire(&q, old, zt_certstore_free_cb) == 0);
	}
	CHECK(zt_qsbr_poll(&q) == 4); /* the reader has not passed a quiescent point */
	zt_qsbr_quiescent(&q, 0);
	CHECK(zt_qsbr_poll(&q) == 0);
	zt_qsbr_offline(&q, 0);
	zt_certstore_free(zt_rcu_publish(&current, NULL));
	zt_qsbr_destroy(&q);

	zt_issued_free(&s1);
	zt_issued_free(&s2);
	zt_issued_free(&h1);
	zt_issued_free(&o1);
}

static void expect_build_error(const struct zt_cert_input *in, size_t n, const char *roots,
			       int want, const char *msg)
{
	struct zt_certstore *s = (void *)1;
	char err[400] = "";
	int r = zt_certstore_build(in, n, roots, roots ? strlen(roots) : 0, &s, err, sizeof err);
	if (r != want || !strstr(err, msg))
		fprintf(stderr, "want %d \"%s\", got %d \"%s\"\n", want, msg, r, err);
	CHECK(r == want);
	CHECK(s == NULL);
	CHECK_HAS(err, msg);
}

static void test_refusals(struct zt_ca *ca)
{
	time_t now = time(NULL);
	const char *roots = zt_ca_root_pem(ca);
	struct zt_issued s1, h1, expired, foreign;
	CHECK(zt_ca_issue(ca, &sleep_id, now, 0, &s1) == 0);
	CHECK(zt_ca_issue(ca, &httpbin_id, now, 0, &h1) == 0);
	CHECK(zt_ca_issue(ca, &sleep_id, now - 3 * 86400, 86400, &expired) == 0);
	struct zt_ca *other;
	CHECK(zt_ca_generate(&other, NULL, now, 0) == 0);
	CHECK(zt_ca_issue(other, &sleep_id, now, 0, &foreign) == 0);

	struct zt_cert_input in = input(&sleep_id, &s1);
	in.key_pem = h1.key_pem;
	in.key_len = strlen(h1.key_pem);
	expect_build_error(&in, 1, roots, -EINVAL, "sa/sleep: key does not match");

	in = input(&sleep_id, &foreign);
	expect_build_error(&in, 1, roots, -EINVAL,
			   "sa/sleep: certificate does not verify against the trust roots");

	in = input(&httpbin_id, &s1);
	expect_build_error(&in, 1, roots, -EINVAL,
			   "sa/httpbin: certificate is for spiffe://cluster.local/ns/"
			   "ambient-demo/sa/sleep");

	struct zt_cert_input two[2] = {input(&sleep_id, &s1), input(NULL, &s1)};
	expect_build_error(two, 2, roots, -EINVAL, "sa/sleep: listed twice");

	in = input(NULL, &s1);
	in.chain_pem = "not pem";
	in.chain_len = 7;
	expect_build_error(&in, 1, roots, -EINVAL, "certificate #0: chain is not PEM");

	in = input(NULL, &s1);
	in.key_pem = s1.cert_pem;
	in.key_len = strlen(s1.cert_pem);
	expect_build_error(&in, 1, roots, -EINVAL, "key is not a P-256 private key");

	in = input(NULL, &s1);
	in.chain_pem = roots;
	in.chain_len = strlen(roots);
	expect_build_error(&in, 1, roots, -EINVAL, "chain starts with a trust root");

	in = input(NULL, &s1);
	expect_build_error(&in, 1, NULL, -EINVAL, "no trust roots");
	expect_build_error(&in, 1, s1.cert_pem, -EINVAL, "trust root #0 is not a CA");

	/* A certificate without a usable identity. */
	size_t rl;
	const uint8_t *rd = zt_ca_root_der(other, &rl);
	(void)rd;
	in = input(NULL, &s1);
	in.chain_pem = zt_ca_root_pem(other); /* a CA: no SAN */
	in.chain_len = strlen(in.chain_pem);
	expect_build_error(&in, 1, roots, -EINVAL,
			   "certificate #0: certificate has no subjectAltName");

	/* An expired certificate still goes in (better than none until renewal
	 * succeeds), and is due at once. */
	in = input(&sleep_id, &expired);
	struct zt_certstore *s;
	char err[400];
	CHECK(zt_certstore_build(&in, 1, roots, strlen(roots), &s, err, sizeof err) == 0);
	const struct zt_identity *due[1];
	CHECK(s && zt_certstore_due(s, now, due, 1) == 1);
	zt_certstore_free(s);

	/* Two trust roots: certificates from either are accepted. */
	char *both = malloc(strlen(roots) + strlen(zt_ca_root_pem(other)) + 1);
	strcpy(both, roots);
	strcat(both, zt_ca_root_pem(other));
	struct zt_cert_input mix[2] = {input(&httpbin_id, &h1), input(&sleep_id, &foreign)};
	CHECK(zt_certstore_build(mix, 2, both, strlen(both), &s, err, sizeof err) == 0);
	CHECK(s && s->n_roots == 2 && s->n == 2);
	/* the foreign chain's root copy is dropped as well */
	CHECK(s && zt_certstore_find(s, &sleep_id)->chain.len ==
			   zt_certstore_find(s, &sleep_id)->leaf.len);
	zt_certstore_free(s);
	free(both);

	/* update refuses bad input and leaves *out NULL */
	CHECK(zt_certstore_build(NULL, 0, roots, strlen(roots), &s, err, sizeof err) == 0);
	in = input(&sleep_id, &foreign);
	struct zt_certstore *s2 = (void *)1;
	CHECK(zt_certstore_update(s, &in, 1, NULL, 0, &s2, err, sizeof err) == -EINVAL);
	CHECK(s2 == NULL);
	CHECK_HAS(err, "does not verify against the trust roots");
	zt_certstore_free(s);

	zt_issued_free(&s1);
	zt_issued_free(&h1);
	zt_issued_free(&expired);
	zt_issued_free(&foreign);
	zt_ca_free(other);
}

/* A chain with an intermediate (made by openssl from our root): the store
 * keeps leaf + intermediate and drops the root. */
static void test_intermediate(struct zt_ca *root)
{
	if (!have_openssl()) {
		printf("SKIP intermediate chain: no openssl binary on PATH\n");
		return;
	}
	char cp[160], kp[160], err[400], cmd[1024], *out;
	snprintf(cp, sizeof cp, "%s/root.pem", pki_dir);
	snprintf(kp, sizeof kp, "%s/root-key.pem", pki_dir);
	CHECK(zt_ca_save_files(root, cp, kp, err, sizeof err) == 0);
	snprintf(cmd, sizeof cmd,
		 "cd '%s' && printf 'basicConstraints=critical,CA:TRUE\\n"
		 "keyUsage=critical,keyCertSign,cRLSign\\n"
		 "subjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid\\n' > ext && "
		 "openssl ecparam -name prime256v1 -genkey -noout -out int-key.pem && "
		 "openssl req -new -key int-key.pem -subj '/O=intermediate.cluster.local' "
		 "-out int.csr && openssl x509 -req -in int.csr -CA root.pem -CAkey "
		 "root-key.pem -CAcreateserial -days 30 -extfile ext -out int.pem",
		 pki_dir);
	CHECK(pki_run(cmd, &out) == 0);
	free(out);
	char ic[160], ik[160];
	snprintf(ic, sizeof ic, "%s/int.pem", pki_dir);
	snprintf(ik, sizeof ik, "%s/int-key.pem", pki_dir);
	struct zt_ca *inter;
	CHECK(zt_ca_load_files(&inter, ic, ik, err, sizeof err) == 0);
	if (!inter) {
		fprintf(stderr, "intermediate: %s\n", err);
		return;
	}
	struct zt_issued is;
	CHECK(zt_ca_issue(inter, &sleep_id, time(NULL), 0, &is) == 0);
	/* istiod's shape: leaf, intermediate, root */
	size_t need = strlen(is.chain_pem) + strlen(zt_ca_root_pem(root)) + 1;
	char *full = malloc(need);
	snprintf(full, need, "%s%s", is.chain_pem, zt_ca_root_pem(root));
	struct zt_cert_input in = input(&sleep_id, &is);
	in.chain_pem = full;
	in.chain_len = strlen(full);
	struct zt_certstore *s;
	const char *roots = zt_ca_root_pem(root);
	CHECK(zt_certstore_build(&in, 1, roots, strlen(roots), &s, err, sizeof err) == 0);
	if (s) {
		const struct zt_cert_entry *e = zt_certstore_find(s, &sleep_id);
		size_t il;
		const uint8_t *id = zt_ca_root_der(inter, &il);
		CHECK(e->chain.len == e->leaf.len + il);
		CHECK(memcmp(e->chain.data + e->leaf.len, id, il) == 0);
		zt_certstore_free(s);
	} else {
		fprintf(stderr, "intermediate build: %s\n", err);
	}
	/* Without the intermediate the leaf does not reach the root. */
	in.chain_pem = is.cert_pem;
	in.chain_len = strlen(is.cert_pem);
	expect_build_error(&in, 1, roots, -EINVAL, "does not verify against the trust roots");
	free(full);
	zt_issued_free(&is);
	zt_ca_free(inter);
}

int main(void)
{
	CHECK(wolfSSL_Init() == WOLFSSL_SUCCESS);
	pki_tmpdir_make();
	CHECK(zt_identity_set(&sleep_id, "cluster.local", "ambient-demo", "sleep") == 0);
	CHECK(zt_identity_set(&httpbin_id, "cluster.local", "ambient-demo", "httpbin") == 0);
	CHECK(zt_identity_set(&other_id, "cluster.local", "other", "default") == 0);
	struct zt_ca *ca;
	CHECK(zt_ca_generate(&ca, NULL, time(NULL), 0) == 0);
	if (!ca)
		return 1;
	test_build_and_renew(ca);
	test_refusals(ca);
	test_intermediate(ca);
	zt_ca_free(ca);
	pki_tmpdir_remove();
	wolfSSL_Cleanup();
	TEST_DONE();
}
