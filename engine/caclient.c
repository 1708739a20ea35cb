/* caclient.c - CreateCertificate on istiod's CA (see caclient.h).
 *
 * The request is encoded and the answer decoded with nanopb (xds/proto/
 * citadel.proto, FT_POINTER fields: the answer is malloc'd by pb_decode and
 * freed by pb_release, its size bounded by zt_grpc_unary's max_message before
 * decoding). Certificates are checked with wolfCrypt's parser and a
 * certificate manager, as hbone/certstore.c does.
 */
#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "common/strfmt.h"
#include "citadel.pb.h"
#include "engine/caclient.h"
#include "engine/grpc.h"
#include "hbone/certstore.h"

/* Certificates accepted in one answer (leaf + intermediates + roots). */
#define MAX_CERTS 16
/* An uncompressed P-256 point: 0x04 || X || Y. */
#define P256_POINT 65

/* ---- the request ---------------------------------------------------------- */

/* IstioCertificateRequest for csr_pem/ttl/identity into *out (malloc'd). */
static int request_encode(const char *csr_pem, uint32_t ttl, const char *uri, uint8_t **out,
			  size_t *len)
{
	char key[] = ZT_CACLIENT_IMPERSONATE;
	google_protobuf_Value value = google_protobuf_Value_init_zero;
	value.which_kind = google_protobuf_Value_string_value_tag;
	value.kind.string_value = (char *)uri;
	google_protobuf_Struct_FieldsEntry entry = {.key = key, .value = &value};
	google_protobuf_Struct meta = {.fields_count = 1, .fields = &entry};
	int64_t validity = ttl;
	istio_v1_auth_IstioCertificateRequest req = {
		.csr = (char *)csr_pem,
		.validity_duration = &validity,
		.metadata = &meta,
	};
	size_t n = 0;
	if (!pb_get_encoded_size(&n, istio_v1_auth_IstioCertificateRequest_fields, &req))
		return -EIO;
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return -ENOMEM;
	pb_ostream_t os = pb_ostream_from_buffer(buf, n);
	if (!pb_encode(&os, istio_v1_auth_IstioCertificateRequest_fields, &req) ||
	    os.bytes_written != n) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* ---- the answer ----------------------------------------------------------- */

struct der {
	uint8_t *data;
	size_t len;
};

/* The certificates of one answer, in order, and where each group starts. */
struct answer {
	struct der c[MAX_CERTS];
	size_t n;
	size_t n_chain; /* c[0..n_chain): leaf and intermediates; c[n_chain..n): roots */
};

static void answer_clear(struct answer *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->c[i].data);
	memset(a, 0, sizeof *a);
}

static int answer_add(const uint8_t *der, size_t len, void *arg)
{
	struct answer *a = arg;
	if (a->n == MAX_CERTS)
		return -E2BIG;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, der, len);
	a->c[a->n++] = (struct der){copy, len};
	return 0;
}

/* The public point of a PKCS#8 / SEC1 P-256 private key in PEM. */
static int key_point(const char *key_pem, uint8_t pt[P256_POINT])
{
	uint8_t *der = NULL;
	size_t der_len = 0;
	int ret = zt_pem_key_to_der(key_pem, strlen(key_pem), &der, &der_len);
	if (ret < 0)
		return ret;
	ecc_key key;
	if (wc_ecc_init(&key) != 0) {
		explicit_bzero(der, der_len);
		free(der);
		return -EIO;
	}
	word32 idx = 0, n = P256_POINT;
	if (wc_GetPkcs8TraditionalOffset(der, &idx, (word32)der_len) < 0)
		idx = 0;
	ret = -EIO;
	if (wc_EccPrivateKeyDecode(der, &idx, &key, (word32)der_len) == 0 &&
	    wc_ecc_export_x963(&key, pt, &n) == 0 && n == P256_POINT)
		ret = 0;
	wc_ecc_free(&key);
	explicit_bzero(der, der_len);
	free(der);
	return ret;
}

/* Does the leaf (DER) carry the public point `pt`? */
static bool leaf_has_key(const struct der *leaf, const uint8_t pt[P256_POINT])
{
	DecodedCert *dc = malloc(sizeof *dc);
	if (!dc)
		return false;
	bool ok = false;
	wc_InitDecodedCert(dc, leaf->data, (word32)leaf->len, NULL);
	if (wc_ParseCert(dc, CERT_TYPE, NO_VERIFY, NULL) == 0 && dc->keyOID == ECDSAk) {
		ecc_key pub;
		word32 idx = 0, n = P256_POINT;
		uint8_t got[P256_POINT];
		if (wc_ecc_init(&pub) == 0) {
			ok = wc_EccPublicKeyDecode(dc->publicKey, &idx, &pub, dc->pubKeySize) == 0 &&
			     wc_ecc_export_x963(&pub, got, &n) == 0 && n == P256_POINT &&
			     memcmp(got, pt, P256_POINT) == 0;
			wc_ecc_free(&pub);
		}
	}
	wc_FreeDecodedCert(dc);
	free(dc);
	return ok;
}

/* Does the leaf chain to the roots through the intermediates? Dates are not
 * held against it (as in zt_certstore_build). */
static int chain_verifies(const struct answer *a, const char **why)
{
	struct zt_der v[MAX_CERTS];
	for (size_t i = 0; i < a->n; i++)
		v[i] = (struct zt_der){a->c[i].data, a->c[i].len};
	int r = zt_chain_verify(v + a->n_chain, a->n - a->n_chain, v + 1, a->n_chain - 1, &v[0],
				why);
	return r == -EINVAL ? -EBADMSG : r;
}

/* Append the PEM of certificates c[from..to) to a new string *out. */
static int pem_join(const struct answer *a, size_t from, size_t to, char **out)
{
	size_t cap = 1, len = 0;
	int need[MAX_CERTS];
	for (size_t i = from; i < to; i++) {
		need[i] = wc_DerToPem(a->c[i].data, (word32)a->c[i].len, NULL, 0, CERT_TYPE);
		if (need[i] <= 0)
			return -EIO;
		cap += (size_t)need[i];
	}
	char *s = malloc(cap);
	if (!s)
		return -ENOMEM;
	for (size_t i = from; i < to; i++) {
		int n = wc_DerToPem(a->c[i].data, (word32)a->c[i].len, (byte *)s + len,
				    (word32)need[i], CERT_TYPE);
		if (n <= 0 || n > need[i]) {
			free(s);
			return -EIO;
		}
		len += (size_t)n;
	}
	s[len] = '\0';
	*out = s;
	return 0;
}

/* Decode and check the answer for `id` (key_pem: the CSR's key); fill out
 * (cert_pem, chain_pem, validity) and *roots. Returns 0, -EBADMSG (err says
 * why), -ENOMEM, -EIO. */
static int answer_take(const uint8_t *msg, size_t len, const struct zt_identity *id,
		       const char *key_pem, struct zt_issued *out, char **roots, char *err,
		       size_t errlen)
{
	istio_v1_auth_IstioCertificateResponse resp = istio_v1_auth_IstioCertificateResponse_init_zero;
	struct answer a = {0};
	int ret = -EBADMSG;
	pb_istream_t is = pb_istream_from_buffer(msg, len);
	if (!pb_decode(&is, istio_v1_auth_IstioCertificateResponse_fields, &resp)) {
		zt_errf(err, errlen, "not an IstioCertificateResponse (%s)", PB_GET_ERROR(&is));
		goto out;
	}
	if (resp.cert_chain_count < 2) {
		zt_errf(err, errlen, "cert_chain has %u element%s, want the leaf and the root(s)",
			(unsigned)resp.cert_chain_count, resp.cert_chain_count == 1 ? "" : "s");
		goto out;
	}
	for (pb_size_t i = 0; i < resp.cert_chain_count; i++) {
		const char *el = resp.cert_chain[i];
		if (i == resp.cert_chain_count - 1)
			a.n_chain = a.n;
		int r = el && *el ? zt_pem_each_cert(el, strlen(el), answer_add, &a) : -EINVAL;
		if (r == -ENOMEM) {
			ret = r;
			goto out;
		}
		if (r == -E2BIG) {
			zt_errf(err, errlen, "more than %d certificates", MAX_CERTS);
			goto out;
		}
		if (r < 0) {
			zt_errf(err, errlen, "cert_chain[%u] is not PEM certificates", (unsigned)i);
			goto out;
		}
	}
	for (size_t i = 0; i < a.n; i++) {
		struct zt_cert_info ci;
		if (zt_cert_info(a.c[i].data, a.c[i].len, &ci) < 0) {
			zt_errf(err, errlen, "certificate #%zu does not parse", i);
			goto out;
		}
		if (i == 0) {
			if (ci.is_ca) {
				zt_errf(err, errlen, "the leaf is a CA certificate");
				goto out;
			}
			out->not_before = ci.not_before;
			out->not_after = ci.not_after;
		}
	}
	struct zt_identity got;
	int r = zt_identity_from_der(&got, a.c[0].data, a.c[0].len);
	if (r == -ZT_ID_ENOMEM) {
		ret = -ENOMEM;
		goto out;
	}
	if (r < 0) {
		zt_errf(err, errlen, "leaf: %s", zt_identity_strerror(r));
		goto out;
	}
	if (!zt_identity_eq(&got, id)) {
		zt_errf(err, errlen, "the leaf is for %s, not the identity asked for", got.uri);
		goto out;
	}
	uint8_t pt[P256_POINT];
	if ((r = key_point(key_pem, pt)) < 0) {
		ret = r == -ENOMEM ? r : -EIO;
		zt_errf(err, errlen, "our own key does not decode");
		goto out;
	}
	if (!leaf_has_key(&a.c[0], pt)) {
		zt_errf(err, errlen, "the leaf's public key is not the one in our CSR");
		goto out;
	}
	const char *why = "";
	if ((r = chain_verifies(&a, &why)) < 0) {
		ret = r;
		zt_errf(err, errlen, "%s", r == -ENOMEM ? "out of memory" : why);
		goto out;
	}
	if ((ret = pem_join(&a, 0, 1, &out->cert_pem)) < 0 ||
	    (ret = pem_join(&a, 0, a.n_chain, &out->chain_pem)) < 0 ||
	    (ret = pem_join(&a, a.n_chain, a.n, roots)) < 0) {
		zt_errf(err, errlen, "cannot re-encode the certificates");
		goto out;
	}
	ret = 0;
out:
	answer_clear(&a);
	pb_release(istio_v1_auth_IstioCertificateResponse_fields, &resp);
	return ret;
}

/* ---- the call ------------------------------------------------------------- */

int zt_caclient_issue(const struct zt_caclient_opts *o, const struct zt_identity *id,
		      uint32_t ttl_s, uint32_t timeout_ms, struct zt_issued *out,
		      char **roots_pem, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	*roots_pem = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!o || !o->address || !*o->address || !id || !id->len) {
		zt_errf(err, errlen, "CA: no address or no identity");
		return -EINVAL;
	}
	if (!ttl_s)
		ttl_s = ZT_CA_WORKLOAD_TTL;
	char why[256] = "";
	char *token = NULL, *bearer = NULL;
	uint8_t *req = NULL;
	size_t req_len = 0;
	struct zt_csr csr = {0};
	struct zt_grpc_reply rep = {0};
	int ret = zt_grpc_token_read(o->token_path, &token, why, sizeof why);
	if (ret < 0) {
		zt_errf(err, errlen, "CA %s for %s: %s", o->address, id->uri,
			ret == -ENOMEM ? "out of memory" : why);
		return ret;
	}
	if ((ret = zt_csr_build(id, &csr)) < 0) {
		zt_errf(err, errlen, "CA %s for %s: cannot build the CSR (%s)", o->address, id->uri,
			strerror(-ret));
		goto out;
	}
	if ((ret = request_encode(csr.csr_pem, ttl_s, id->uri, &req, &req_len)) < 0) {
		zt_errf(err, errlen, "CA %s for %s: cannot encode the request (%s)", o->address,
			id->uri, strerror(-ret));
		goto out;
	}
	struct zt_grpc_md md[2];
	size_t n_md = 0;
	md[n_md++] = (struct zt_grpc_md){"clusterid", o->cluster_id ? o->cluster_id : "Kubernetes"};
	if (token) {
		size_t n = strlen(token) + sizeof "Bearer ";
		if (!(bearer = malloc(n))) {
			ret = -ENOMEM;
			zt_errf(err, errlen, "CA %s for %s: out of memory", o->address, id->uri);
			goto out;
		}
		snprintf(bearer, n, "Bearer %s", token);
		md[n_md++] = (struct zt_grpc_md){"authorization", bearer};
	}
	struct zt_grpc_opts go = {
		.address = o->address,
		.root_cert_path = o->root_cert_path,
		.server_name = o->server_name,
		/* the call's deadline covers the connect: it fires first and says
		 * DEADLINE_EXCEEDED (the channel's own timeout would be UNAVAILABLE) */
		.connect_timeout_ms = timeout_ms > UINT32_MAX - 1000 ? UINT32_MAX : timeout_ms + 1000,
		.max_message = ZT_CACLIENT_MAX_RESPONSE,
	};
	int st = zt_grpc_unary(&go, ZT_CACLIENT_PATH, md, n_md, req, req_len, timeout_ms, &rep);
	if (st != ZT_GRPC_OK) {
		zt_errf(err, errlen, "CA %s for %s: %s: %s", o->address, id->uri,
			zt_grpc_code_name(st), rep.message ? rep.message : "");
		ret = st;
		goto out;
	}
	ret = answer_take(rep.data, rep.len, id, csr.key_pem, out, roots_pem, why, sizeof why);
	if (ret < 0) {
		zt_errf(err, errlen, "CA %s for %s: answer refused: %s", o->address, id->uri,
			ret == -ENOMEM && !why[0] ? "out of memory" : why);
		goto out;
	}
	out->key_pem = csr.key_pem; /* the key goes to the caller */
	csr.key_pem = NULL;
out:
	if (ret != 0) {
		zt_issued_free(out);
		free(*roots_pem);
		*roots_pem = NULL;
	}
	zt_grpc_reply_free(&rep);
	zt_csr_free(&csr);
	free(req);
	if (bearer) {
		explicit_bzero(bearer, strlen(bearer));
		free(bearer);
	}
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	return ret;
}
