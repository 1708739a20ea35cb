/* identity_test.c - SPIFFE identity parsing, formatting, comparison, and
 * reading the URI SAN out of certificates (good, missing, several, bad). */
#include "test/unit/hbone/pki_util.h"

#include "hbone/identity.h"

struct bad_case {
	const char *s;
	int err;
};

static void test_parse_good(void)
{
	struct zt_identity id;
	const char *s = "spiffe://cluster.local/ns/ambient-demo/sa/sleep";
	CHECK(zt_identity_parse(&id, s, strlen(s)) == 0);
	CHECK_STR(zt_identity_str(&id), s);
	CHECK(id.len == strlen(s));
	CHECK(id.td_len == strlen("cluster.local"));
	CHECK(memcmp(id.uri + ZT_ID_SCHEME_LEN, "cluster.local", id.td_len) == 0);
	CHECK(id.ns_len == 12 && memcmp(id.uri + id.ns_off, "ambient-demo", 12) == 0);
	CHECK(id.sa_len == 5 && memcmp(id.uri + id.sa_off, "sleep", 5) == 0);

	const char *good[] = {
		"spiffe://td/ns/n/sa/a",
		"spiffe://my_td.example-1/ns/a/sa/b",
		"spiffe://cluster.local/ns/default/sa/my.sa-1",
		"spiffe://cluster.local/ns/0/sa/9",
		"spiffe://x/ns/istio-system/sa/ztunnel",
	};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		int r = zt_identity_parse(&id, good[i], strlen(good[i]));
		if (r)
			fprintf(stderr, "rejected %s: %s\n", good[i], zt_identity_strerror(r));
		CHECK(r == 0);
		CHECK_STR(id.uri, good[i]);
	}

	/* Parts at their maximum lengths. */
	char td[ZT_ID_TD_MAX + 1], ns[ZT_ID_NS_MAX + 1], sa[ZT_ID_SA_MAX + 1];
	memset(td, 't', ZT_ID_TD_MAX);
	td[ZT_ID_TD_MAX] = '\0';
	memset(ns, 'n', ZT_ID_NS_MAX);
	ns[ZT_ID_NS_MAX] = '\0';
	/* 253 = 63 + '.' + 63 + '.' + 63 + '.' + 61 */
	memset(sa, 's', ZT_ID_SA_MAX);
	sa[63] = sa[127] = sa[191] = '.';
	sa[ZT_ID_SA_MAX] = '\0';
	CHECK(zt_identity_set(&id, td, ns, sa) == 0);
	CHECK(id.len == ZT_ID_URI_MAX);
	struct zt_identity back;
	CHECK(zt_identity_parse(&back, id.uri, id.len) == 0);
	CHECK(zt_identity_eq(&id, &back));

	/* Too long by one, each part. */
	char td2[ZT_ID_TD_MAX + 2], ns2[ZT_ID_NS_MAX + 2], sa2[ZT_ID_SA_MAX + 2];
	memset(td2, 't', ZT_ID_TD_MAX + 1);
	td2[ZT_ID_TD_MAX + 1] = '\0';
	memset(ns2, 'n', ZT_ID_NS_MAX + 1);
	ns2[ZT_ID_NS_MAX + 1] = '\0';
	memcpy(sa2, sa, ZT_ID_SA_MAX);
	sa2[ZT_ID_SA_MAX] = 's';
	sa2[ZT_ID_SA_MAX + 1] = '\0';
	CHECK(zt_identity_set(&id, td2, ns, sa) == -ZT_ID_ETD);
	CHECK(zt_identity_set(&id, td, ns2, sa) == -ZT_ID_ENS);
	CHECK(zt_identity_set(&id, td, ns, sa2) == -ZT_ID_ESA);
	CHECK(id.len == 0 && id.uri[0] == '\0');
}

static void test_parse_bad(void)
{
	static const struct bad_case bad[] = {
		{"", -ZT_ID_ESCHEME},
		{"cluster.local/ns/a/sa/b", -ZT_ID_ESCHEME},
		{"http://cluster.local/ns/a/sa/b", -ZT_ID_ESCHEME},
		{"SPIFFE://cluster.local/ns/a/sa/b", -ZT_ID_ESCHEME},
		{"spiffe:/cluster.local/ns/a/sa/b", -ZT_ID_ESCHEME},
		{"spiffe://", -ZT_ID_ETD},
		{"spiffe:///ns/a/sa/b", -ZT_ID_ETD},
		{"spiffe://Cluster.local/ns/a/sa/b", -ZT_ID_ETD},
		{"spiffe://td:8080/ns/a/sa/b", -ZT_ID_ETD},
		{"spiffe://user@td/ns/a/sa/b", -ZT_ID_ETD},
		{"spiffe://td", -ZT_ID_EPATH},
		{"spiffe://td/", -ZT_ID_EPATH},
		{"spiffe://td/ns/a", -ZT_ID_EPATH},
		{"spiffe://td/ns/a/sa", -ZT_ID_EPATH},
		{"spiffe://td/sa/b/ns/a", -ZT_ID_EPATH},
		{"spiffe://td/ns/a/b/sa/c", -ZT_ID_EPATH},
		{"spiffe://td/ns/a/sa/b/", -ZT_ID_EPATH},
		{"spiffe://td/ns/a/sa/b/c", -ZT_ID_EPATH},
		{"spiffe://td//ns/a/sa/b", -ZT_ID_EPATH},
		{"spiffe://td/NS/a/sa/b", -ZT_ID_EPATH},
		{"spiffe://td/ns//sa/b", -ZT_ID_ENS},
		{"spiffe://td/ns/A/sa/b", -ZT_ID_ENS},
		{"spiffe://td/ns/-a/sa/b", -ZT_ID_ENS},
		{"spiffe://td/ns/a-/sa/b", -ZT_ID_ENS},
		{"spiffe://td/ns/a.b/sa/c", -ZT_ID_ENS},
		{"spiffe://td/ns/a_b/sa/c", -ZT_ID_ENS},
		{"spiffe://td/ns/a/sa/", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/B", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/.b", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b.", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b..c", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/.", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b?x=1", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b#frag", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b%41", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b ", -ZT_ID_ESA},
		{"spiffe://td/ns/a/sa/b-", -ZT_ID_ESA},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct zt_identity id;
		memset(&id, 0xaa, sizeof id);
		int r = zt_identity_parse(&id, bad[i].s, strlen(bad[i].s));
		if (r != bad[i].err)
			fprintf(stderr, "\"%s\": got %d (%s), want %d (%s)\n", bad[i].s, r,
				zt_identity_strerror(r), bad[i].err,
				zt_identity_strerror(bad[i].err));
		CHECK(r == bad[i].err);
		CHECK(id.len == 0 && id.uri[0] == '\0');
	}

	/* An embedded NUL is not a terminator. */
	static const char nul[] = "spiffe://td/ns/a/sa/b\0c";
	struct zt_identity id;
	CHECK(zt_identity_parse(&id, nul, sizeof nul - 1) == -ZT_ID_ESA);
	/* Only the given length is read. */
	CHECK(zt_identity_parse(&id, nul, strlen(nul)) == 0);
	CHECK_STR(id.uri, "spiffe://td/ns/a/sa/b");

	/* zt_identity_set validates the same way. */
	CHECK(zt_identity_set(&id, "cluster.local", "ambient-demo", "sleep") == 0);
	CHECK_STR(id.uri, "spiffe://cluster.local/ns/ambient-demo/sa/sleep");
	CHECK(zt_identity_set(&id, "", "a", "b") == -ZT_ID_ETD);
	CHECK(zt_identity_set(&id, "td", "a/b", "c") == -ZT_ID_ENS);
	CHECK(zt_identity_set(&id, "td", "a", "b/c") == -ZT_ID_ESA);
}

static void test_compare(void)
{
	struct zt_identity a, b, c, d;
	CHECK(zt_identity_set(&a, "cluster.local", "ns1", "sa1") == 0);
	CHECK(zt_identity_set(&b, "cluster.local", "ns1", "sa1") == 0);
	CHECK(zt_identity_set(&c, "cluster.local", "ns1", "sa2") == 0);
	CHECK(zt_identity_set(&d, "other.domain", "ns1", "sa1") == 0);
	CHECK(zt_identity_eq(&a, &b));
	CHECK(!zt_identity_eq(&a, &c));
	CHECK(zt_identity_cmp(&a, &b) == 0);
	CHECK(zt_identity_cmp(&a, &c) < 0 && zt_identity_cmp(&c, &a) > 0);
	CHECK(zt_identity_same_td(&a, &c));
	CHECK(!zt_identity_same_td(&a, &d));
	CHECK(zt_identity_in_td(&a, "cluster.local", 13));
	CHECK(!zt_identity_in_td(&a, "cluster.loca", 12));
	CHECK(!zt_identity_in_td(&a, "cluster.locall", 14));
	/* The namespace and sa are not confused across boundaries. */
	struct zt_identity e, f;
	CHECK(zt_identity_set(&e, "td", "ab", "c") == 0);
	CHECK(zt_identity_set(&f, "td", "a", "bc") == 0);
	CHECK(!zt_identity_eq(&e, &f));
}

static void test_strerror(void)
{
	for (int e = 0; e < ZT_ID_EMAX_; e++) {
		const char *s = zt_identity_strerror(-e);
		CHECK(s && *s);
		CHECK(s == zt_identity_strerror(e));
		for (int f = 0; f < e; f++)
			CHECK(strcmp(s, zt_identity_strerror(f)) != 0);
	}
	CHECK_STR(zt_identity_strerror(-1000), "unknown identity error");
}

/* GeneralNames from a list of (tag, string): 0x86 URI, 0x82 dNSName. */
static size_t san_of(uint8_t *out, const uint8_t *tags, const char *const *vals, size_t n)
{
	size_t body = 0;
	for (size_t i = 0; i < n; i++)
		body += 2 + strlen(vals[i]);
	size_t k = 0;
	out[k++] = 0x30;
	out[k++] = (uint8_t)body; /* short form: tests keep it < 128 */
	for (size_t i = 0; i < n; i++) {
		out[k++] = tags[i];
		out[k++] = (uint8_t)strlen(vals[i]);
		memcpy(out + k, vals[i], strlen(vals[i]));
		k += strlen(vals[i]);
	}
	return k;
}

static int id_of_cert(const uint8_t *tags, const char *const *vals, size_t n,
		      struct zt_identity *id)
{
	uint8_t san[256], der[2048];
	size_t sl = n ? san_of(san, tags, vals, n) : 0;
	int len = pki_selfsigned_with_san(n ? san : NULL, sl, der, sizeof der);
	CHECK(len > 0);
	if (len <= 0)
		return 1;
	return zt_identity_from_der(id, der, (size_t)len);
}

static void test_from_cert(void)
{
	struct zt_identity id;
	const char *sleep = "spiffe://cluster.local/ns/ambient-demo/sa/sleep";

	uint8_t t1[] = {0x86};
	const char *v1[] = {sleep};
	CHECK(id_of_cert(t1, v1, 1, &id) == 0);
	CHECK_STR(id.uri, sleep);

	/* A DNS name beside the URI is ignored. */
	uint8_t t2[] = {0x82, 0x86};
	const char *v2[] = {"sleep.ambient-demo.svc", sleep};
	CHECK(id_of_cert(t2, v2, 2, &id) == 0);
	CHECK_STR(id.uri, sleep);

	/* No SAN at all; a SAN without a URI; two URIs; a URI that is not SPIFFE;
	 * a SPIFFE URI that is not an Istio identity. */
	CHECK(id_of_cert(NULL, NULL, 0, &id) == -ZT_ID_ENOSAN);
	uint8_t t3[] = {0x82};
	const char *v3[] = {"sleep.ambient-demo.svc"};
	CHECK(id_of_cert(t3, v3, 1, &id) == -ZT_ID_ENOURI);
	uint8_t t4[] = {0x86, 0x86};
	const char *v4[] = {sleep, "spiffe://cluster.local/ns/ambient-demo/sa/other"};
	CHECK(id_of_cert(t4, v4, 2, &id) == -ZT_ID_EMANYURI);
	const char *v5[] = {"https://example.com/x"};
	CHECK(id_of_cert(t1, v5, 1, &id) == -ZT_ID_ESCHEME);
	const char *v6[] = {"spiffe://cluster.local/workload/sleep"};
	CHECK(id_of_cert(t1, v6, 1, &id) == -ZT_ID_EPATH);
	CHECK(id.len == 0);

	/* Not a certificate; no certificate. */
	uint8_t junk[64];
	memset(junk, 0x30, sizeof junk);
	CHECK(zt_identity_from_der(&id, junk, sizeof junk) == -ZT_ID_ECERT);
	CHECK(zt_identity_from_der(&id, NULL, 0) == -ZT_ID_ENOCERT);
	CHECK(zt_identity_from_x509(&id, NULL) == -ZT_ID_ENOCERT);
	CHECK(zt_identity_from_peer(&id, NULL) == -ZT_ID_ENOCERT);
}

int main(void)
{
	CHECK(wolfSSL_Init() == WOLFSSL_SUCCESS);
	test_parse_good();
	test_parse_bad();
	test_compare();
	test_strerror();
	test_from_cert();
	wolfSSL_Cleanup();
	TEST_DONE();
}
