/* ca_test.c - the embedded CA: root generation, save/load, workload
 * certificates (verified by wolfSSL's cert manager, read back, inspected with
 * `openssl x509 -text` when openssl is installed), CSR round trip, refusals. */
#include "test/unit/hbone/pki_util.h"

#include <errno.h>
#include <time.h>

#include "hbone/ca.h"

static const char *SLEEP = "spiffe://cluster.local/ns/ambient-demo/sa/sleep";

static bool openssl_ok;

static int to_der(const char *pem, uint8_t *der, size_t cap)
{
	return wc_CertPemToDer((const unsigned char *)pem, (int)strlen(pem), der, (int)cap,
			       CERT_TYPE);
}

/* wolfSSL's own verification of a leaf (PEM) against a root (PEM). Returns
 * WOLFSSL_SUCCESS or wolfSSL's error code. */
static int cm_verify(const char *root_pem, const char *leaf_pem)
{
	WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
	if (!cm)
		return -1;
	int r = wolfSSL_CertManagerLoadCABuffer(cm, (const unsigned char *)root_pem,
						 (long)strlen(root_pem), WOLFSSL_FILETYPE_PEM);
	if (r == WOLFSSL_SUCCESS)
		r = wolfSSL_CertManagerVerifyBuffer(cm, (const unsigned char *)leaf_pem,
						    (long)strlen(leaf_pem), WOLFSSL_FILETYPE_PEM);
	wolfSSL_CertManagerFree(cm);
	return r;
}

static void check_leaf_text(const char *leaf_pem, const char *uri)
{
	if (!openssl_ok)
		return;
	char cmd[512], *out;
	snprintf(cmd, sizeof cmd, "openssl x509 -noout -text -in '%s'",
		 pki_write("leaf.pem", leaf_pem));
	CHECK(pki_run(cmd, &out) == 0);
	CHECK_HAS(out, "Version: 3 (0x2)");
	CHECK_HAS(out, "Signature Algorithm: ecdsa-with-SHA256");
	CHECK_HAS(out, "Public Key Algorithm: id-ecPublicKey");
	CHECK_HAS(out, "NIST CURVE: P-256");
	CHECK_HAS(out, "Issuer: O = cluster.local\n");
	CHECK_HAS(out, "Subject: \n"); /* empty subject */
	CHECK_HAS(out, "X509v3 Subject Alternative Name: critical\n");
	char want[300];
	snprintf(want, sizeof want, "URI:%s\n", uri);
	CHECK_HAS(out, want);
	CHECK_HAS(out, "X509v3 Key Usage: critical\n"
		       "                Digital Signature, Key Encipherment\n");
	CHECK_HAS(out, "X509v3 Extended Key Usage: \n"
		       "                TLS Web Server Authentication, TLS Web Client "
		       "Authentication\n");
	CHECK_HAS(out, "X509v3 Basic Constraints: critical\n"
		       "                CA:FALSE\n");
	CHECK_HAS(out, "X509v3 Authority Key Identifier:");
	CHECK(!strstr(out, "DNS:"));
	free(out);
}

static void check_root_text(const char *root_pem)
{
	if (!openssl_ok)
		return;
	char cmd[512], *out;
	snprintf(cmd, sizeof cmd, "openssl x509 -noout -text -in '%s'",
		 pki_write("root.pem", root_pem));
	CHECK(pki_run(cmd, &out) == 0);
	CHECK_HAS(out, "Subject: O = cluster.local\n");
	CHECK_HAS(out, "Issuer: O = cluster.local\n");
	CHECK_HAS(out, "X509v3 Basic Constraints: critical\n"
		       "                CA:TRUE\n");
	CHECK_HAS(out, "X509v3 Key Usage: critical\n"
		       "                Digital Signature, Certificate Sign, CRL Sign\n");
	CHECK_HAS(out, "X509v3 Subject Key Identifier:");
	CHECK_HAS(out, "NIST CURVE: P-256");
	free(out);
}

/* openssl's own chain check, as a second opinion. */
static void openssl_verify(const char *root_pem, const char *leaf_pem, bool want_ok)
{
	if (!openssl_ok)
		return;
	char cmd[512], *out;
	char root_path[128];
	snprintf(root_path, sizeof root_path, "%s", pki_write("v-root.pem", root_pem));
	snprintf(cmd, sizeof cmd, "openssl verify -purpose sslserver -CAfile '%s' '%s'",
		 root_path, pki_write("v-leaf.pem", leaf_pem));
	int rc = pki_run(cmd, &out);
	if ((rc == 0) != want_ok)
		fprintf(stderr, "openssl verify (want %s):\n%s\n", want_ok ? "ok" : "fail", out);
	CHECK((rc == 0) == want_ok);
	free(out);
	if (!want_ok)
		return;
	snprintf(cmd, sizeof cmd, "openssl verify -purpose sslclient -CAfile '%s' '%s'",
		 root_path, pki_write("v-leaf.pem", leaf_pem));
	CHECK(pki_run(cmd, &out) == 0);
	free(out);
	/* RFC 5280 strict mode (Python 3.13's default) accepts it too. */
	snprintf(cmd, sizeof cmd, "openssl verify -x509_strict -CAfile '%s' '%s'", root_path,
		 pki_write("v-leaf.pem", leaf_pem));
	rc = pki_run(cmd, &out);
	if (rc != 0)
		fprintf(stderr, "openssl verify -x509_strict:\n%s\n", out);
	CHECK(rc == 0);
	free(out);
}

static void test_issue(struct zt_ca *ca)
{
	struct zt_identity id;
	CHECK(zt_identity_parse(&id, SLEEP, strlen(SLEEP)) == 0);
	time_t now = time(NULL);
	struct zt_issued is;
	CHECK(zt_ca_issue(ca, &id, now, 0, &is) == 0);
	CHECK(is.cert_pem && is.chain_pem && is.key_pem);
	CHECK(is.not_before == now - ZT_CA_BACKDATE);
	CHECK(is.not_after == now + ZT_CA_WORKLOAD_TTL);
	CHECK(ZT_CA_WORKLOAD_TTL == 86400);
	CHECK(strncmp(is.key_pem, "-----BEGIN PRIVATE KEY-----", 27) == 0);
	/* chain = leaf then root */
	CHECK(strncmp(is.chain_pem, is.cert_pem, strlen(is.cert_pem)) == 0);
	CHECK_STR(is.chain_pem + strlen(is.cert_pem), zt_ca_root_pem(ca));

	/* wolfSSL verifies it against the root, and reads the identity back. */
	CHECK(cm_verify(zt_ca_root_pem(ca), is.cert_pem) == WOLFSSL_SUCCESS);
	uint8_t der[4096];
	int n = to_der(is.cert_pem, der, sizeof der);
	CHECK(n > 0);
	struct zt_identity back;
	CHECK(zt_identity_from_der(&back, der, (size_t)n) == 0);
	CHECK(zt_identity_eq(&back, &id));

	/* Validity and serial as read from the DER. */
	struct zt_cert_info info;
	CHECK(zt_cert_info(der, (size_t)n, &info) == 0);
	CHECK(info.not_before == is.not_before && info.not_after == is.not_after);
	CHECK(!info.is_ca);
	CHECK(strlen(info.serial) >= 30); /* 128 bits with the top bit clear: 37-39 digits */

	/* wolfSSL's parser sees the SAN as critical, the key usages as set. */
	WOLFSSL_X509 *x = wolfSSL_X509_d2i(NULL, der, n);
	CHECK(x != NULL);
	int crit = -1;
	WOLFSSL_STACK *sk = wolfSSL_X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	CHECK(sk && crit == 1);
	wolfSSL_sk_GENERAL_NAME_pop_free(sk, wolfSSL_GENERAL_NAME_free);
	CHECK(wolfSSL_X509_get_keyUsage(x) == (KEYUSE_DIGITAL_SIG | KEYUSE_KEY_ENCIPHER));
	/* XKU_SSL_SERVER 0x1 | XKU_SSL_CLIENT 0x2 (wolfssl/openssl/x509v3.h) */
	CHECK(wolfSSL_X509_get_extended_key_usage(x) == (0x1 | 0x2));
	CHECK(wolfSSL_X509_get_isCA(x) == 0);
	WOLFSSL_X509_NAME *subj = wolfSSL_X509_get_subject_name(x);
	CHECK(subj && wolfSSL_X509_NAME_entry_count(subj) == 0);
	wolfSSL_X509_free(x);

	/* Two certificates for the same identity differ in key and serial. */
	struct zt_issued is2;
	CHECK(zt_ca_issue(ca, &id, now, 3600, &is2) == 0);
	CHECK(is2.not_after == now + 3600);
	CHECK(strcmp(is.cert_pem, is2.cert_pem) != 0);
	CHECK(strcmp(is.key_pem, is2.key_pem) != 0);
	uint8_t der2[4096];
	int n2 = to_der(is2.cert_pem, der2, sizeof der2);
	struct zt_cert_info info2;
	CHECK(n2 > 0 && zt_cert_info(der2, (size_t)n2, &info2) == 0);
	CHECK(strcmp(info.serial, info2.serial) != 0);

	check_leaf_text(is.cert_pem, SLEEP);
	openssl_verify(zt_ca_root_pem(ca), is.cert_pem, true);
	zt_issued_free(&is);
	zt_issued_free(&is2);

	/* An identity struct that was never filled is refused. */
	struct zt_identity empty;
	memset(&empty, 0, sizeof empty);
	CHECK(zt_ca_issue(ca, &empty, now, 0, &is) == -EINVAL);
}

static void test_other_root_and_expiry(struct zt_ca *ca)
{
	struct zt_identity id;
	CHECK(zt_identity_parse(&id, SLEEP, strlen(SLEEP)) == 0);
	time_t now = time(NULL);

	/* A certificate from another root does not verify against ours. */
	struct zt_ca *other;
	CHECK(zt_ca_generate(&other, NULL, now, 0) == 0);
	struct zt_issued is;
	CHECK(zt_ca_issue(other, &id, now, 0, &is) == 0);
	int r = cm_verify(zt_ca_root_pem(ca), is.cert_pem);
	CHECK(r != WOLFSSL_SUCCESS);
	printf("other root: %d (%s)\n", r, wc_GetErrorString(r));
	CHECK(cm_verify(zt_ca_root_pem(other), is.cert_pem) == WOLFSSL_SUCCESS);
	openssl_verify(zt_ca_root_pem(ca), is.cert_pem, false);
	zt_issued_free(&is);
	zt_ca_free(other);

	/* Valid two days ago for one day: expired. */
	CHECK(zt_ca_issue(ca, &id, now - 2 * 86400, 86400, &is) == 0);
	r = cm_verify(zt_ca_root_pem(ca), is.cert_pem);
	CHECK(r == ASN_AFTER_DATE_E);
	openssl_verify(zt_ca_root_pem(ca), is.cert_pem, false);
	zt_issued_free(&is);

	/* Not yet valid. */
	CHECK(zt_ca_issue(ca, &id, now + 86400, 86400, &is) == 0);
	CHECK(cm_verify(zt_ca_root_pem(ca), is.cert_pem) == ASN_BEFORE_DATE_E);
	zt_issued_free(&is);
}

static void test_csr(struct zt_ca *ca)
{
	struct zt_identity id;
	CHECK(zt_identity_parse(&id, SLEEP, strlen(SLEEP)) == 0);
	struct zt_csr csr;
	CHECK(zt_csr_build(&id, &csr) == 0);
	CHECK(strncmp(csr.csr_pem, "-----BEGIN CERTIFICATE REQUEST-----", 35) == 0);
	CHECK(strncmp(csr.key_pem, "-----BEGIN PRIVATE KEY-----", 27) == 0);

	if (openssl_ok) {
		char cmd[512], *out;
		snprintf(cmd, sizeof cmd, "openssl req -noout -text -verify -in '%s'",
			 pki_write("csr.pem", csr.csr_pem));
		CHECK(pki_run(cmd, &out) == 0);
		CHECK_HAS(out, "verify OK");
		CHECK_HAS(out, "Version: 1 (0x0)");
		CHECK_HAS(out, "Subject: \n");
		CHECK_HAS(out, "NIST CURVE: P-256");
		CHECK_HAS(out, "Signature Algorithm: ecdsa-with-SHA256");
		CHECK_HAS(out, "Requested Extensions:");
		CHECK_HAS(out, "X509v3 Subject Alternative Name: critical\n");
		CHECK_HAS(out, "URI:spiffe://cluster.local/ns/ambient-demo/sa/sleep\n");
		/* the SAN is the only extension requested */
		const char *ext = strstr(out, "Requested Extensions:");
		int n_ext = 0;
		for (const char *q = ext; q && (q = strstr(q, "X509v3 ")); q++)
			n_ext++;
		CHECK(n_ext == 1);
		free(out);
		/* openssl can pair the key with the CSR */
		snprintf(cmd, sizeof cmd,
			 "test \"$(openssl req -noout -pubkey -in '%s/csr.pem' | sha256sum)\" = "
			 "\"$(openssl pkey -pubout -in '%s' | sha256sum)\"",
			 pki_dir, pki_write("csr-key.pem", csr.key_pem));
		CHECK(pki_run(cmd, &out) == 0);
		free(out);
	}

	/* The CA signs it; the result verifies, carries the identity and the
	 * CSR's key (the returned leaf works with csr.key_pem). */
	time_t now = time(NULL);
	struct zt_issued is;
	char err[200] = "";
	CHECK(zt_ca_sign_csr(ca, csr.csr_pem, strlen(csr.csr_pem), &id, now, 0, &is, err,
			     sizeof err) == 0);
	CHECK(is.key_pem == NULL);
	CHECK(cm_verify(zt_ca_root_pem(ca), is.cert_pem) == WOLFSSL_SUCCESS);
	uint8_t der[4096];
	int n = to_der(is.cert_pem, der, sizeof der);
	struct zt_identity back;
	CHECK(n > 0 && zt_identity_from_der(&back, der, (size_t)n) == 0);
	CHECK(zt_identity_eq(&back, &id));
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	CHECK(ctx != NULL);
	CHECK(wolfSSL_CTX_use_certificate_buffer(ctx, (const unsigned char *)is.cert_pem,
						 (long)strlen(is.cert_pem),
						 WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS);
	CHECK(wolfSSL_CTX_use_PrivateKey_buffer(ctx, (const unsigned char *)csr.key_pem,
						(long)strlen(csr.key_pem),
						WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS);
	CHECK(wolfSSL_CTX_check_private_key(ctx) == WOLFSSL_SUCCESS);
	wolfSSL_CTX_free(ctx);
	check_leaf_text(is.cert_pem, SLEEP);
	zt_issued_free(&is);

	/* Signing without an expectation; with a different one (refused). */
	CHECK(zt_ca_sign_csr(ca, csr.csr_pem, strlen(csr.csr_pem), NULL, now, 60, &is, NULL,
			     0) == 0);
	CHECK(is.not_after == now + 60);
	zt_issued_free(&is);
	struct zt_identity other;
	CHECK(zt_identity_set(&other, "cluster.local", "ambient-demo", "httpbin") == 0);
	CHECK(zt_ca_sign_csr(ca, csr.csr_pem, strlen(csr.csr_pem), &other, now, 0, &is, err,
			     sizeof err) == -EPERM);
	CHECK_HAS(err, "is not the expected");
	CHECK(is.cert_pem == NULL);

	/* A tampered CSR (one base64 character of the body changed) fails. */
	char *bad = strdup(csr.csr_pem);
	size_t mid = strlen(bad) / 2;
	bad[mid] = bad[mid] == 'A' ? 'B' : 'A';
	int r = zt_ca_sign_csr(ca, bad, strlen(bad), NULL, now, 0, &is, err, sizeof err);
	CHECK(r == -EINVAL);
	printf("tampered CSR: %s\n", err);
	free(bad);
	CHECK(zt_ca_sign_csr(ca, "junk", 4, NULL, now, 0, &is, err, sizeof err) == -EINVAL);
	CHECK_HAS(err, "no PEM CERTIFICATE REQUEST");
	zt_csr_free(&csr);

	/* A CSR with a non-SPIFFE URI is refused with the parse reason, and one
	 * from openssl with no SAN at all is refused too. */
	if (openssl_ok) {
		char cmd[768], *out;
		snprintf(cmd, sizeof cmd,
			 "cd '%s' && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
			 "-nodes -keyout k.pem -subj / -addext "
			 "'subjectAltName=critical,URI:spiffe://cluster.local/ns/a/sa/b' "
			 "-out ossl.csr && openssl req -new -newkey ec -pkeyopt "
			 "ec_paramgen_curve:P-256 -nodes -keyout k2.pem -subj /CN=x -out nosan.csr",
			 pki_dir);
		CHECK(pki_run(cmd, &out) == 0);
		free(out);
		char path[160], *pem;
		snprintf(path, sizeof path, "%s/ossl.csr", pki_dir);
		snprintf(cmd, sizeof cmd, "cat '%s'", path);
		CHECK(pki_run(cmd, &pem) == 0);
		/* openssl's CSR for the same kind of identity is accepted */
		CHECK(zt_ca_sign_csr(ca, pem, strlen(pem), NULL, now, 0, &is, err, sizeof err) ==
		      0);
		CHECK(cm_verify(zt_ca_root_pem(ca), is.cert_pem) == WOLFSSL_SUCCESS);
		zt_issued_free(&is);
		free(pem);
		snprintf(cmd, sizeof cmd, "cat '%s/nosan.csr'", pki_dir);
		CHECK(pki_run(cmd, &pem) == 0);
		CHECK(zt_ca_sign_csr(ca, pem, strlen(pem), NULL, now, 0, &is, err, sizeof err) ==
		      -EINVAL);
		CHECK_HAS(err, "exactly one URI SAN, it has 0");
		free(pem);
	}
}

static void test_save_load(struct zt_ca *ca)
{
	char cert_path[160], key_path[160], err[300];
	snprintf(cert_path, sizeof cert_path, "%s/ca-cert.pem", pki_dir);
	snprintf(key_path, sizeof key_path, "%s/ca-key.pem", pki_dir);
	CHECK(zt_ca_save_files(ca, cert_path, key_path, err, sizeof err) == 0);
	struct stat st;
	CHECK(stat(key_path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(cert_path, &st) == 0 && (st.st_mode & 0777) == 0644);

	/* A second CA loaded from the files issues certificates that the first
	 * one's root verifies: a mesh of zrings can share one root. */
	struct zt_ca *copy;
	CHECK(zt_ca_load_files(&copy, cert_path, key_path, err, sizeof err) == 0);
	if (!copy)
		return;
	CHECK_STR(zt_ca_root_pem(copy), zt_ca_root_pem(ca));
	CHECK(zt_ca_not_after(copy) == zt_ca_not_after(ca));
	struct zt_identity id;
	CHECK(zt_identity_parse(&id, SLEEP, strlen(SLEEP)) == 0);
	struct zt_issued is;
	CHECK(zt_ca_issue(copy, &id, time(NULL), 0, &is) == 0);
	CHECK(cm_verify(zt_ca_root_pem(ca), is.cert_pem) == WOLFSSL_SUCCESS);
	zt_issued_free(&is);
	zt_ca_free(copy);

	if (openssl_ok) {
		/* openssl agrees the key file is the root's key */
		char cmd[512], *out;
		snprintf(cmd, sizeof cmd,
			 "test \"$(openssl x509 -noout -pubkey -in '%s' | sha256sum)\" = "
			 "\"$(openssl pkey -pubout -in '%s' | sha256sum)\"",
			 cert_path, key_path);
		CHECK(pki_run(cmd, &out) == 0);
		free(out);
		/* and a root and key made by openssl (SEC1 key) load */
		snprintf(cmd, sizeof cmd,
			 "cd '%s' && openssl ecparam -name prime256v1 -genkey -noout -out "
			 "o-key.pem && openssl req -x509 -new -key o-key.pem -subj "
			 "'/O=cluster.local' -days 3650 -addext basicConstraints=critical,CA:TRUE "
			 "-addext keyUsage=critical,keyCertSign,cRLSign -out o-cert.pem",
			 pki_dir);
		CHECK(pki_run(cmd, &out) == 0);
		free(out);
		char oc[160], ok[160];
		snprintf(oc, sizeof oc, "%s/o-cert.pem", pki_dir);
		snprintf(ok, sizeof ok, "%s/o-key.pem", pki_dir);
		struct zt_ca *ossl;
		CHECK(zt_ca_load_files(&ossl, oc, ok, err, sizeof err) == 0);
		if (ossl) {
			CHECK(zt_ca_issue(ossl, &id, time(NULL), 0, &is) == 0);
			CHECK(cm_verify(zt_ca_root_pem(ossl), is.cert_pem) == WOLFSSL_SUCCESS);
			openssl_verify(zt_ca_root_pem(ossl), is.cert_pem, true);
			zt_issued_free(&is);
			zt_ca_free(ossl);
		}
		/* a SEC1 key without its public point loads, and saves as PKCS#8 */
		snprintf(cmd, sizeof cmd,
			 "cd '%s' && openssl ec -in o-key.pem -no_public -out o-key-nopub.pem",
			 pki_dir);
		CHECK(pki_run(cmd, &out) == 0);
		free(out);
		char nk[160], sc[160], sk[160];
		snprintf(nk, sizeof nk, "%s/o-key-nopub.pem", pki_dir);
		snprintf(sc, sizeof sc, "%s/s-cert.pem", pki_dir);
		snprintf(sk, sizeof sk, "%s/s-key.pem", pki_dir);
		CHECK(zt_ca_load_files(&ossl, oc, nk, err, sizeof err) == 0);
		if (ossl) {
			CHECK(zt_ca_save_files(ossl, sc, sk, err, sizeof err) == 0);
			zt_ca_free(ossl);
			CHECK(zt_ca_load_files(&ossl, sc, sk, err, sizeof err) == 0);
			zt_ca_free(ossl);
		}
		/* mismatched pair: openssl's cert with our key */
		CHECK(zt_ca_load_files(&ossl, oc, key_path, err, sizeof err) == -EINVAL);
		CHECK_HAS(err, "key does not match the certificate");
		CHECK(ossl == NULL);
	}

	/* Errors name the file and the reason. */
	struct zt_ca *bad;
	char missing[160];
	snprintf(missing, sizeof missing, "%s/nope.pem", pki_dir);
	CHECK(zt_ca_load_files(&bad, missing, key_path, err, sizeof err) == -ENOENT);
	CHECK_HAS(err, "nope.pem: No such file or directory");
	CHECK(zt_ca_load_files(&bad, cert_path, cert_path, err, sizeof err) == -EINVAL);
	CHECK_HAS(err, "ca-cert.pem: key: not an unencrypted P-256 private key");
	CHECK(zt_ca_load_files(&bad, key_path, key_path, err, sizeof err) == -EINVAL);
	CHECK_HAS(err, "ca-key.pem: certificate: no PEM CERTIFICATE");

	/* A workload (non-CA) certificate is not a CA. */
	struct zt_issued leaf;
	CHECK(zt_ca_issue(ca, &id, time(NULL), 0, &leaf) == 0);
	CHECK(zt_ca_load_pem(&bad, leaf.cert_pem, strlen(leaf.cert_pem), leaf.key_pem,
			     strlen(leaf.key_pem), err, sizeof err) == -EINVAL);
	CHECK_HAS(err, "not a CA");
	zt_issued_free(&leaf);

	/* Saving where it cannot write reports the path. */
	CHECK(zt_ca_save_files(ca, "/nonexistent-dir/c.pem", "/nonexistent-dir/k.pem", err,
			       sizeof err) == -ENOENT);
	CHECK_HAS(err, "/nonexistent-dir/k.pem");
}

static void test_generate(struct zt_ca **out)
{
	time_t now = time(NULL);
	CHECK(zt_ca_generate(out, NULL, now, 0) == 0);
	struct zt_ca *ca = *out;
	if (!ca)
		exit(1);
	CHECK(zt_ca_not_after(ca) == now + (time_t)ZT_CA_ROOT_TTL);
	size_t len;
	const uint8_t *der = zt_ca_root_der(ca, &len);
	struct zt_cert_info info;
	CHECK(zt_cert_info(der, len, &info) == 0);
	CHECK(info.is_ca);
	CHECK(info.not_before == now - ZT_CA_BACKDATE);
	struct zt_identity id;
	CHECK(zt_identity_from_der(&id, der, len) == -ZT_ID_ENOSAN);
	/* self-signed: verifies against itself */
	CHECK(cm_verify(zt_ca_root_pem(ca), zt_ca_root_pem(ca)) == WOLFSSL_SUCCESS);
	check_root_text(zt_ca_root_pem(ca));

	struct zt_ca *named;
	CHECK(zt_ca_generate(&named, "example.org", now, 600) == 0);
	CHECK(zt_ca_not_after(named) == now + 600);
	if (openssl_ok) {
		char cmd[256], *o;
		snprintf(cmd, sizeof cmd, "openssl x509 -noout -subject -in '%s'",
			 pki_write("named.pem", zt_ca_root_pem(named)));
		CHECK(pki_run(cmd, &o) == 0);
		CHECK_HAS(o, "subject=O = example.org");
		free(o);
	}
	zt_ca_free(named);
}

static void test_time_encoding(struct zt_ca *ca)
{
	/* Validity beyond 2049 switches to GeneralizedTime; both read back. */
	struct zt_identity id;
	CHECK(zt_identity_parse(&id, SLEEP, strlen(SLEEP)) == 0);
	time_t t2049 = 2524607940; /* 2049-12-31T23:59:00Z */
	struct zt_issued is;
	CHECK(zt_ca_issue(ca, &id, t2049, 3600, &is) == 0);
	uint8_t der[4096];
	int n = to_der(is.cert_pem, der, sizeof der);
	struct zt_cert_info info;
	CHECK(n > 0 && zt_cert_info(der, (size_t)n, &info) == 0);
	CHECK(info.not_before == t2049 - ZT_CA_BACKDATE);
	CHECK(info.not_after == t2049 + 3600);
	if (openssl_ok) {
		char cmd[256], *o;
		snprintf(cmd, sizeof cmd, "openssl x509 -noout -dates -in '%s'",
			 pki_write("y2050.pem", is.cert_pem));
		CHECK(pki_run(cmd, &o) == 0);
		CHECK_HAS(o, "notBefore=Dec 31 23:58:00 2049 GMT");
		CHECK_HAS(o, "notAfter=Jan  1 00:59:00 2050 GMT");
		free(o);
	}
	zt_issued_free(&is);
}

int main(void)
{
	CHECK(wolfSSL_Init() == WOLFSSL_SUCCESS);
	pki_tmpdir_make();
	openssl_ok = have_openssl();
	if (!openssl_ok)
		printf("SKIP openssl checks: no openssl binary on PATH\n");

	struct zt_ca *ca = NULL;
	test_generate(&ca);
	test_issue(ca);
	test_other_root_and_expiry(ca);
	test_csr(ca);
	test_save_load(ca);
	test_time_encoding(ca);
	zt_ca_free(ca);

	pki_tmpdir_remove();
	wolfSSL_Cleanup();
	TEST_DONE();
}
