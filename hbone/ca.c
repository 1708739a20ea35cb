/* ca.c - embedded CA, CSRs and certificate facts, on wolfCrypt's certificate
 * generation (WOLFSSL_CERT_GEN / CERT_REQ / CERT_EXT / ALT_NAMES).
 *
 * Both ways to a workload certificate end in make_leaf(): zt_ca_issue() with
 * a key it generates, zt_ca_sign_csr() with the key taken from a verified CSR.
 *
 * wolfSSL 5.5.4 has no call that adds a URI SAN: the DER GeneralNames
 * (SEQUENCE { [6] IA5String }) goes into Cert.altNames as bytes. Criticality
 * of the SAN is the Cert.altNamesCrit bit, which the non-template encoder of
 * this version honours for certificates and requests alike (SetAltNames() in
 * wolfcrypt/src/asn.c writes BOOLEAN TRUE when it is set; the pinned build
 * does not use --enable-asn=template). basicConstraints has no such bit
 * (SetCa()/SetBC() always write it non-critical): bc_make_critical() sets it
 * in the unsigned TBSCertificate before signing.
 */
#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/strfmt.h"
#include "hbone/ca.h"

#define DER_MAX 4096       /* a leaf is ~600 bytes, a root ~450 */
#define PEM_FILE_MAX (1 << 20)
#define SERIAL_LEN 16      /* 128 random bits */
#define P256_LEN 32

struct zt_ca {
	ecc_key key;
	WC_RNG rng;
	uint8_t *der;
	size_t der_len;
	char *pem;
	time_t not_before, not_after;
};

/* ---- DER pieces ---- */

static size_t der_put_len(uint8_t *p, size_t n)
{
	if (n < 0x80) {
		p[0] = (uint8_t)n;
		return 1;
	}
	if (n < 0x100) {
		p[0] = 0x81;
		p[1] = (uint8_t)n;
		return 2;
	}
	p[0] = 0x82;
	p[1] = (uint8_t)(n >> 8);
	p[2] = (uint8_t)n;
	return 3;
}

/* GeneralNames with one uniformResourceIdentifier: 30 L 86 L <uri>.
 * Returns the length, or -EINVAL when it does not fit in cap. */
static int san_der(const struct zt_identity *id, uint8_t *out, size_t cap)
{
	uint8_t inner[4];
	size_t n = id->len;
	size_t il = der_put_len(inner, n);
	size_t body = 1 + il + n;
	uint8_t outer[4];
	size_t ol = der_put_len(outer, body);
	if (1 + ol + body > cap || n == 0)
		return -EINVAL;
	uint8_t *p = out;
	*p++ = 0x30; /* SEQUENCE */
	memcpy(p, outer, ol);
	p += ol;
	*p++ = 0x86; /* [6] IMPLICIT IA5String */
	memcpy(p, inner, il);
	p += il;
	memcpy(p, id->uri, n);
	p += n;
	return (int)(p - out);
}

/* An X.509 Time, tag and length included: UTCTime for 1950-2049, else
 * GeneralizedTime (RFC 5280 4.1.2.5). Returns the length, or -EINVAL. */
static int der_time(uint8_t out[CTC_DATE_SIZE], time_t t)
{
	struct tm tm;
	char s[24];
	if (!gmtime_r(&t, &tm))
		return -EINVAL;
	int year = tm.tm_year + 1900, n;
	if (year >= 1950 && year < 2050) {
		out[0] = ASN_UTC_TIME;
		n = snprintf(s, sizeof s, "%02d%02d%02d%02d%02d%02dZ", year % 100,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	} else if (year >= 0 && year <= 9999) {
		out[0] = ASN_GENERALIZED_TIME;
		n = snprintf(s, sizeof s, "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1,
			     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	} else {
		return -EINVAL;
	}
	out[1] = (uint8_t)n;
	memcpy(out + 2, s, (size_t)n);
	return n + 2;
}

static int digits(const uint8_t *s, size_t n)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Inverse of der_time() for the forms RFC 5280 allows (seconds, 'Z'). */
static int der_time_parse(const uint8_t *p, size_t len, time_t *t)
{
	if (len < 2 || p[1] + 2u != len)
		return -EINVAL;
	const uint8_t *s = p + 2;
	size_t n = p[1];
	struct tm tm = {0};
	int year;
	if (p[0] == ASN_UTC_TIME && n == 13) {
		year = digits(s, 2);
		if (year < 0)
			return -EINVAL;
		year += year < 50 ? 2000 : 1900;
		s += 2;
	} else if (p[0] == ASN_GENERALIZED_TIME && n == 15) {
		year = digits(s, 4);
		if (year < 0)
			return -EINVAL;
		s += 4;
	} else {
		return -EINVAL;
	}
	int mon = digits(s, 2), day = digits(s + 2, 2), h = digits(s + 4, 2),
	    m = digits(s + 6, 2), sec = digits(s + 8, 2);
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || h < 0 || h > 23 || m < 0 ||
	    m > 59 || sec < 0 || sec > 60 || s[10] != 'Z')
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = h;
	tm.tm_min = m;
	tm.tm_sec = sec;
	*t = timegm(&tm);
	return 0;
}

/* Big-endian unsigned integer to decimal. */
static void serial_decimal(const uint8_t *b, size_t n, char *out, size_t cap)
{
	uint8_t tmp[EXTERNAL_SERIAL_SIZE];
	char rev[64];
	size_t nd = 0;
	if (n > sizeof tmp)
		n = sizeof tmp;
	memcpy(tmp, b, n);
	for (;;) {
		unsigned rem = 0;
		bool nonzero = false;
		for (size_t i = 0; i < n; i++) {
			unsigned cur = rem * 256 + tmp[i];
			tmp[i] = (uint8_t)(cur / 10);
			rem = cur % 10;
			nonzero |= tmp[i] != 0;
		}
		rev[nd++] = (char)('0' + rem);
		if (!nonzero || nd == sizeof rev)
			break;
	}
	size_t i = 0;
	for (; i < nd && i + 1 < cap; i++)
		out[i] = rev[nd - 1 - i];
	if (cap)
		out[i] = '\0';
}

/* One DER element: tag at off, content at off + hdr, content length len. */
struct tlv {
	size_t off, hdr, len;
};

static int tlv_read(const uint8_t *b, size_t end, size_t off, struct tlv *t)
{
	if (off + 2 > end)
		return -EINVAL;
	size_t l = b[off + 1], hdr = 2;
	if (l & 0x80) {
		size_t k = l & 0x7f;
		if (k == 0 || k > 2 || off + 2 + k > end)
			return -EINVAL;
		l = 0;
		for (size_t i = 0; i < k; i++)
			l = l << 8 | b[off + 2 + i];
		hdr = 2 + k;
	}
	if (off + hdr + l > end)
		return -EINVAL;
	*t = (struct tlv){off, hdr, l};
	return 0;
}

static size_t tlv_end(const struct tlv *t)
{
	return t->off + t->hdr + t->len;
}

static size_t len_octets(size_t n)
{
	return n < 0x80 ? 1 : n < 0x100 ? 2 : 3;
}

/* The first child of `parent` (in b) with tag `tag`, or whose content starts
 * with prefix[0..plen). */
static int tlv_child(const uint8_t *b, const struct tlv *parent, int tag, const uint8_t *prefix,
		     size_t plen, struct tlv *out)
{
	size_t pos = parent->off + parent->hdr, end = tlv_end(parent);
	while (pos < end) {
		struct tlv c;
		if (tlv_read(b, end, pos, &c) < 0)
			return -EINVAL;
		if ((tag >= 0 && b[pos] == tag) ||
		    (prefix && c.len > plen && memcmp(b + c.off + c.hdr, prefix, plen) == 0)) {
			*out = c;
			return 0;
		}
		pos = tlv_end(&c);
	}
	return -ENOENT;
}

/* wolfSSL 5.5.4 always writes basicConstraints non-critical (SetCa()/SetBC()
 * have no flag), while RFC 5280 4.2.1.9 wants it critical in CA certificates
 * and OpenSSL's strict mode (Python 3.13's default) refuses a root without
 * it. The TBSCertificate that wc_MakeCert_ex() leaves in der[0..len) is not
 * signed yet, so the flag is added there: BOOLEAN TRUE after the extension's
 * OID, with the lengths of the four enclosing elements (extension,
 * extensions, [3], TBSCertificate) rewritten. Returns the new length. */
static int bc_make_critical(uint8_t *der, size_t len)
{
	static const uint8_t bc_oid[] = {0x06, 0x03, 0x55, 0x1d, 0x13};
	static const uint8_t crit[] = {0x01, 0x01, 0xff};
	struct tlv lv[4]; /* TBSCertificate, [3], Extensions, the extension */
	if (tlv_read(der, len, 0, &lv[0]) < 0 || der[0] != 0x30 || tlv_end(&lv[0]) != len)
		return -EINVAL;
	if (tlv_child(der, &lv[0], 0xa3, NULL, 0, &lv[1]) < 0 ||
	    tlv_child(der, &lv[1], 0x30, NULL, 0, &lv[2]) < 0 ||
	    tlv_child(der, &lv[2], -1, bc_oid, sizeof bc_oid, &lv[3]) < 0)
		return -EINVAL;
	size_t oid_end = lv[3].off + lv[3].hdr + sizeof bc_oid;
	if (der[oid_end] == 0x01)
		return (int)len; /* already critical */

	/* New content lengths, innermost first. */
	size_t nl[4];
	nl[3] = lv[3].len + sizeof crit;
	for (int i = 2; i >= 0; i--)
		nl[i] = lv[i].len - (lv[i + 1].hdr + lv[i + 1].len) +
			(1 + len_octets(nl[i + 1]) + nl[i + 1]);
	size_t total = 1 + len_octets(nl[0]) + nl[0];
	if (total > DER_MAX || nl[0] >= 0x10000)
		return -EINVAL;
	uint8_t *out = malloc(total), *p = out;
	if (!out)
		return -ENOMEM;
	/* Heads: each header, then the content up to the next level. */
	for (int i = 0; i < 4; i++) {
		*p++ = der[lv[i].off];
		p += der_put_len(p, nl[i]);
		size_t cs = lv[i].off + lv[i].hdr;
		size_t upto = i < 3 ? lv[i + 1].off : oid_end;
		memcpy(p, der + cs, upto - cs);
		p += upto - cs;
	}
	memcpy(p, crit, sizeof crit);
	p += sizeof crit;
	/* Tails, innermost first. */
	memcpy(p, der + oid_end, tlv_end(&lv[3]) - oid_end);
	p += tlv_end(&lv[3]) - oid_end;
	for (int i = 2; i >= 0; i--) {
		size_t from = tlv_end(&lv[i + 1]);
		memcpy(p, der + from, tlv_end(&lv[i]) - from);
		p += tlv_end(&lv[i]) - from;
	}
	if ((size_t)(p - out) != total) {
		free(out);
		return -EINVAL;
	}
	memcpy(der, out, total);
	free(out);
	return (int)total;
}

/* ---- PEM and keys ---- */

/* der -> malloc'd NUL-terminated PEM of the given wolfSSL type. */
static int pem_from_der(const uint8_t *der, size_t len, int type, char **out)
{
	int need = wc_DerToPem(der, (word32)len, NULL, 0, type);
	if (need <= 0)
		return -EIO;
	char *pem = malloc((size_t)need + 1);
	if (!pem)
		return -ENOMEM;
	int n = wc_DerToPem(der, (word32)len, (byte *)pem, (word32)need, type);
	if (n <= 0 || n > need) {
		free(pem);
		return -EIO;
	}
	pem[n] = '\0';
	*out = pem;
	return 0;
}

/* PKCS#8 DER (with the public key, as openssl writes it) of a private key. */
static int key_to_pkcs8(ecc_key *key, uint8_t **der, size_t *len)
{
	word32 need = 0;
	if (wc_EccKeyToPKCS8(key, NULL, &need) != LENGTH_ONLY_E || need == 0)
		return -EIO;
	uint8_t *buf = malloc(need);
	if (!buf)
		return -ENOMEM;
	int n = wc_EccKeyToPKCS8(key, buf, &need);
	if (n <= 0) {
		free(buf);
		return -EIO;
	}
	*der = buf;
	*len = (size_t)n;
	return 0;
}

static int key_to_pem(ecc_key *key, char **pem)
{
	uint8_t *der;
	size_t len;
	int ret = key_to_pkcs8(key, &der, &len);
	if (ret < 0)
		return ret;
	ret = pem_from_der(der, len, PKCS8_PRIVATEKEY_TYPE, pem);
	explicit_bzero(der, len);
	free(der);
	return ret;
}

/* A PEM private key (PKCS#8 or SEC1 "EC PRIVATE KEY") into *key, which the
 * caller has initialised. Only P-256 passes. */
static int key_from_pem(const char *pem, size_t len, ecc_key *key)
{
	if (len > INT32_MAX)
		return -EINVAL;
	uint8_t *der = malloc(len ? len : 1);
	if (!der)
		return -ENOMEM;
	int ret = -EINVAL;
	int n = wc_KeyPemToDer((const unsigned char *)pem, (int)len, der, (int)len, NULL);
	if (n <= 0)
		goto out;
	word32 idx = 0;
	if (wc_GetPkcs8TraditionalOffset(der, &idx, (word32)n) < 0)
		idx = 0; /* not PKCS#8: SEC1 as it is */
	if (wc_EccPrivateKeyDecode(der, &idx, key, (word32)n) != 0)
		goto out;
	if (wc_ecc_get_curve_id(key->idx) != ECC_SECP256R1)
		goto out;
	/* Some writers leave the public point out; PKCS#8 export wants it. */
	if (key->type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub(key, NULL) != 0)
		goto out;
	ret = 0;
out:
	explicit_bzero(der, len ? len : 1);
	free(der);
	return ret;
}

int zt_pem_key_to_der(const char *pem, size_t len, uint8_t **der, size_t *der_len)
{
	ecc_key key;
	if (wc_ecc_init(&key) != 0)
		return -EIO;
	int ret = key_from_pem(pem, len, &key);
	if (ret == 0)
		ret = key_to_pkcs8(&key, der, der_len);
	wc_ecc_free(&key);
	return ret;
}

int zt_pem_each_cert(const char *pem, size_t len,
		     int (*fn)(const uint8_t *der, size_t len, void *arg), void *arg)
{
	size_t off = 0;
	int n = 0;
	while (off < len) {
		/* Only whitespace left: done. */
		size_t k = off;
		while (k < len && (pem[k] == '\n' || pem[k] == '\r' || pem[k] == ' ' ||
				   pem[k] == '\t' || pem[k] == '\0'))
			k++;
		if (k == len)
			break;
		DerBuffer *der = NULL;
		EncryptedInfo info;
		memset(&info, 0, sizeof info);
		int ret = wc_PemToDer((const unsigned char *)pem + off, (long)(len - off),
				      CERT_TYPE, &der, NULL, &info, NULL);
		if (ret != 0 || info.consumed <= 0) {
			wc_FreeDer(&der);
			/* trailing text after the last block is tolerated */
			return ret == ASN_NO_PEM_HEADER && n > 0 ? 0 : -EINVAL;
		}
		n++;
		ret = fn(der->buffer, der->length, arg);
		wc_FreeDer(&der);
		if (ret)
			return ret;
		off += (size_t)info.consumed;
	}
	return n > 0 ? 0 : -EINVAL;
}

/* ---- certificate facts ---- */

static DecodedCert *decode(const uint8_t *der, size_t len, int type, int verify)
{
	DecodedCert *dc = malloc(sizeof *dc);
	if (!dc)
		return NULL;
	wc_InitDecodedCert(dc, der, (word32)len, NULL);
	if (wc_ParseCert(dc, type, verify, NULL) != 0) {
		wc_FreeDecodedCert(dc);
		free(dc);
		return NULL;
	}
	return dc;
}

static void decoded_free(DecodedCert *dc)
{
	if (dc) {
		wc_FreeDecodedCert(dc);
		free(dc);
	}
}

static int info_from_decoded(const DecodedCert *dc, struct zt_cert_info *out)
{
	memset(out, 0, sizeof *out);
	if (!dc->beforeDate || !dc->afterDate ||
	    der_time_parse(dc->beforeDate, (size_t)dc->beforeDateLen, &out->not_before) < 0 ||
	    der_time_parse(dc->afterDate, (size_t)dc->afterDateLen, &out->not_after) < 0)
		return -EINVAL;
	serial_decimal(dc->serial, (size_t)dc->serialSz, out->serial, sizeof out->serial);
	out->is_ca = dc->isCA;
	out->self_issued = dc->selfSigned;
	return 0;
}

int zt_cert_info(const uint8_t *der, size_t len, struct zt_cert_info *out)
{
	if (!der || !len || len > INT32_MAX)
		return -EINVAL;
	DecodedCert *dc = decode(der, len, CERT_TYPE, NO_VERIFY);
	if (!dc)
		return -EINVAL;
	int ret = info_from_decoded(dc, out);
	decoded_free(dc);
	return ret;
}

/* ---- the CA ---- */

static int random_serial(WC_RNG *rng, Cert *cert)
{
	if (wc_RNG_GenerateBlock(rng, cert->serial, SERIAL_LEN) != 0)
		return -EIO;
	cert->serial[0] &= 0x7f; /* positive */
	if (cert->serial[0] == 0)
		cert->serial[0] = 1; /* no leading zero byte: exactly 16 octets */
	cert->serialSz = SERIAL_LEN;
	return 0;
}

static int set_validity(Cert *cert, time_t nb, time_t na)
{
	int b = der_time(cert->beforeDate, nb), a = der_time(cert->afterDate, na);
	if (b < 0 || a < 0)
		return -EINVAL;
	cert->beforeDateSz = b;
	cert->afterDateSz = a;
	return 0;
}

/* Sign the certificate described by `cert` for `subject_key`'s public key
 * with the CA key; DER into der[DER_MAX]. */
static int sign_cert(struct zt_ca *ca, Cert *cert, ecc_key *subject_key, uint8_t *der,
		     size_t *len)
{
	int n = wc_MakeCert_ex(cert, der, DER_MAX, ECC_TYPE, subject_key, &ca->rng);
	if (n <= 0)
		return -EIO;
	if (cert->isCA || cert->basicConstSet) {
		n = bc_make_critical(der, (size_t)n);
		if (n < 0)
			return -EIO;
	}
	n = wc_SignCert_ex(n, cert->sigType, der, DER_MAX, ECC_TYPE, &ca->key, &ca->rng);
	if (n <= 0)
		return -EIO;
	*len = (size_t)n;
	return 0;
}

static void ca_free_fields(struct zt_ca *ca)
{
	wc_ecc_free(&ca->key);
	wc_FreeRng(&ca->rng);
	free(ca->der);
	free(ca->pem);
}

void zt_ca_free(struct zt_ca *ca)
{
	if (!ca)
		return;
	ca_free_fields(ca);
	free(ca);
}

static struct zt_ca *ca_new(void)
{
	struct zt_ca *ca = calloc(1, sizeof *ca);
	if (!ca)
		return NULL;
	if (wc_InitRng(&ca->rng) != 0) {
		free(ca);
		return NULL;
	}
	if (wc_ecc_init(&ca->key) != 0) {
		wc_FreeRng(&ca->rng);
		free(ca);
		return NULL;
	}
	return ca;
}

/* Take the CA certificate DER (copied) and derive PEM and validity. */
static int ca_set_cert(struct zt_ca *ca, const uint8_t *der, size_t len)
{
	struct zt_cert_info info;
	if (zt_cert_info(der, len, &info) < 0)
		return -EINVAL;
	ca->der = malloc(len);
	if (!ca->der)
		return -ENOMEM;
	memcpy(ca->der, der, len);
	ca->der_len = len;
	ca->not_before = info.not_before;
	ca->not_after = info.not_after;
	return pem_from_der(der, len, CERT_TYPE, &ca->pem);
}

int zt_ca_generate(struct zt_ca **out, const char *org, time_t now, uint32_t ttl)
{
	*out = NULL;
	if (!org)
		org = "cluster.local";
	if (!ttl)
		ttl = ZT_CA_ROOT_TTL;
	if (strlen(org) >= CTC_NAME_SIZE)
		return -EINVAL;
	struct zt_ca *ca = ca_new();
	if (!ca)
		return -ENOMEM;
	Cert *cert = malloc(sizeof *cert);
	uint8_t *der = malloc(DER_MAX);
	int ret = -ENOMEM;
	if (!cert || !der)
		goto fail;
	ret = -EIO;
	if (wc_ecc_make_key_ex(&ca->rng, P256_LEN, &ca->key, ECC_SECP256R1) != 0)
		goto fail;
	if (wc_InitCert(cert) != 0)
		goto fail;
	cert->sigType = CTC_SHA256wECDSA;
	cert->isCA = 1;
	cert->selfSigned = 1;
	strcpy(cert->subject.org, org);
	cert->keyUsage = KEYUSE_KEY_CERT_SIGN | KEYUSE_CRL_SIGN | KEYUSE_DIGITAL_SIG;
	if (wc_SetSubjectKeyIdFromPublicKey_ex(cert, ECC_TYPE, &ca->key) != 0)
		goto fail;
	if ((ret = random_serial(&ca->rng, cert)) < 0 ||
	    (ret = set_validity(cert, now - ZT_CA_BACKDATE, now + (time_t)ttl)) < 0)
		goto fail;
	size_t len;
	if ((ret = sign_cert(ca, cert, &ca->key, der, &len)) < 0)
		goto fail;
	if ((ret = ca_set_cert(ca, der, len)) < 0)
		goto fail;
	free(cert);
	free(der);
	*out = ca;
	return 0;
fail:
	free(cert);
	free(der);
	zt_ca_free(ca);
	return ret;
}

/* Does `key` sign what the public key in `dc` verifies? */
static bool key_matches(struct zt_ca *ca, const DecodedCert *dc)
{
	static const char probe[] = "zring CA key check";
	uint8_t hash[WC_SHA256_DIGEST_SIZE], sig[ECC_MAX_SIG_SIZE];
	word32 sig_len = sizeof sig, idx = 0;
	int ok = 0;
	ecc_key pub;
	if (wc_Sha256Hash((const byte *)probe, sizeof probe, hash) != 0)
		return false;
	if (wc_ecc_sign_hash(hash, sizeof hash, sig, &sig_len, &ca->rng, &ca->key) != 0)
		return false;
	if (wc_ecc_init(&pub) != 0)
		return false;
	if (wc_EccPublicKeyDecode(dc->publicKey, &idx, &pub, dc->pubKeySize) == 0 &&
	    wc_ecc_verify_hash(sig, sig_len, hash, sizeof hash, &ok, &pub) != 0)
		ok = 0;
	wc_ecc_free(&pub);
	return ok == 1;
}

int zt_ca_load_pem(struct zt_ca **out, const char *cert_pem, size_t cert_len,
		   const char *key_pem, size_t key_len, char *err, size_t errlen)
{
	*out = NULL;
	if (cert_len > INT32_MAX || key_len > INT32_MAX) {
		zt_errf(err, errlen, "input too large");
		return -EINVAL;
	}
	struct zt_ca *ca = ca_new();
	if (!ca)
		return -ENOMEM;
	DecodedCert *dc = NULL;
	uint8_t *der = malloc(cert_len ? cert_len : 1);
	int ret = -ENOMEM;
	if (!der)
		goto fail;
	ret = -EINVAL;
	int n = wc_CertPemToDer((const unsigned char *)cert_pem, (int)cert_len, der,
				(int)cert_len, CERT_TYPE);
	if (n <= 0) {
		zt_errf(err, errlen, "certificate: no PEM CERTIFICATE block that decodes");
		goto fail;
	}
	dc = decode(der, (size_t)n, CERT_TYPE, NO_VERIFY);
	if (!dc) {
		zt_errf(err, errlen, "certificate: cannot be parsed");
		goto fail;
	}
	if (!dc->isCA) {
		zt_errf(err, errlen, "certificate: not a CA (basicConstraints CA:TRUE missing)");
		goto fail;
	}
	if (dc->extKeyUsageSet && !(dc->extKeyUsage & KEYUSE_KEY_CERT_SIGN)) {
		zt_errf(err, errlen, "certificate: keyUsage lacks keyCertSign");
		goto fail;
	}
	if (dc->keyOID != ECDSAk || dc->pkCurveOID != ECC_SECP256R1_OID) {
		zt_errf(err, errlen, "certificate: key is not ECDSA P-256");
		goto fail;
	}
	if ((ret = key_from_pem(key_pem, key_len, &ca->key)) < 0) {
		zt_errf(err, errlen, "key: not an unencrypted P-256 private key in PEM");
		goto fail;
	}
	if (!key_matches(ca, dc)) {
		ret = -EINVAL;
		zt_errf(err, errlen, "key does not match the certificate");
		goto fail;
	}
	if ((ret = ca_set_cert(ca, der, (size_t)n)) < 0) {
		zt_errf(err, errlen, "certificate: validity cannot be read");
		goto fail;
	}
	decoded_free(dc);
	free(der);
	*out = ca;
	return 0;
fail:
	decoded_free(dc);
	free(der);
	zt_ca_free(ca);
	return ret;
}

/* Whole file into a malloc'd buffer. */
static int read_file(const char *path, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int e = 0;
	if (fstat(fd, &st) < 0)
		e = -errno;
	else if (!S_ISREG(st.st_mode))
		e = -EINVAL;
	else if (st.st_size > PEM_FILE_MAX)
		e = -EFBIG;
	if (e) {
		close(fd);
		return e;
	}
	char *b = malloc((size_t)st.st_size + 1);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	size_t off = 0;
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, b + off, (size_t)st.st_size - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	close(fd);
	b[off] = '\0';
	*buf = b;
	*len = off;
	return 0;
}

int zt_ca_load_files(struct zt_ca **out, const char *cert_path, const char *key_path,
		     char *err, size_t errlen)
{
	char *c = NULL, *k = NULL, why[160];
	size_t cl, kl;
	*out = NULL;
	int ret = read_file(cert_path, &c, &cl);
	if (ret < 0) {
		zt_errf(err, errlen, "%s: %s", cert_path, strerror(-ret));
		return ret;
	}
	ret = read_file(key_path, &k, &kl);
	if (ret < 0) {
		zt_errf(err, errlen, "%s: %s", key_path, strerror(-ret));
		free(c);
		return ret;
	}
	why[0] = '\0';
	ret = zt_ca_load_pem(out, c, cl, k, kl, why, sizeof why);
	if (ret < 0) {
		/* name the file the reason is about */
		bool about_key = strncmp(why, "key", 3) == 0;
		zt_errf(err, errlen, "%s: %s", about_key ? key_path : cert_path,
			why[0] ? why : strerror(-ret));
	}
	explicit_bzero(k, kl);
	free(c);
	free(k);
	return ret;
}

static int write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int ret = 0;
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			ret = w < 0 ? -errno : -EIO;
			break;
		}
		off += (size_t)w;
	}
	if (!ret && fchmod(fd, mode) < 0) /* the umask must not widen or narrow it */
		ret = -errno;
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int zt_ca_save_files(const struct zt_ca *ca, const char *cert_path, const char *key_path,
		     char *err, size_t errlen)
{
	char *key_pem = NULL;
	/* wolfCrypt's export takes a non-const key; it does not modify it. */
	int ret = key_to_pem((ecc_key *)&ca->key, &key_pem);
	if (ret < 0) {
		zt_errf(err, errlen, "cannot encode the CA key");
		return ret;
	}
	ret = write_file_atomic(key_path, key_pem, strlen(key_pem), 0600);
	if (ret < 0) {
		zt_errf(err, errlen, "%s: %s", key_path, strerror(-ret));
		goto out;
	}
	ret = write_file_atomic(cert_path, ca->pem, strlen(ca->pem), 0644);
	if (ret < 0)
		zt_errf(err, errlen, "%s: %s", cert_path, strerror(-ret));
out:
	explicit_bzero(key_pem, strlen(key_pem));
	free(key_pem);
	return ret;
}

const char *zt_ca_root_pem(const struct zt_ca *ca)
{
	return ca->pem;
}

const uint8_t *zt_ca_root_der(const struct zt_ca *ca, size_t *len)
{
	*len = ca->der_len;
	return ca->der;
}

time_t zt_ca_not_after(const struct zt_ca *ca)
{
	return ca->not_after;
}

void zt_issued_free(struct zt_issued *is)
{
	if (!is)
		return;
	free(is->cert_pem);
	free(is->chain_pem);
	if (is->key_pem) {
		explicit_bzero(is->key_pem, strlen(is->key_pem));
		free(is->key_pem);
	}
	memset(is, 0, sizeof *is);
}

/* The one place a workload certificate is made: for subject_key's public key,
 * identity id, valid [now - backdate, now + ttl]. Fills cert_pem, chain_pem
 * and the times; key_pem is the caller's business. */
static int make_leaf(struct zt_ca *ca, ecc_key *subject_key, const struct zt_identity *id,
		     time_t now, uint32_t ttl, struct zt_issued *out)
{
	if (!ttl)
		ttl = ZT_CA_WORKLOAD_TTL;
	Cert *cert = malloc(sizeof *cert);
	uint8_t *der = malloc(DER_MAX);
	int ret = -ENOMEM;
	if (!cert || !der)
		goto out;
	ret = -EIO;
	if (wc_InitCert(cert) != 0)
		goto out;
	cert->sigType = CTC_SHA256wECDSA;
	/* Subject stays empty (all CertName fields zero). The issuer is the CA
	 * certificate's subject copied byte for byte, so that verifiers that
	 * match names by hash (wolfSSL does) find the CA whatever made it. */
	if (wc_SetIssuerRaw(cert, ca->der, (int)ca->der_len) != 0)
		goto out;
	if (wc_SetAuthKeyIdFromCert(cert, ca->der, (int)ca->der_len) != 0)
		goto out;
	cert->keyUsage = KEYUSE_DIGITAL_SIG | KEYUSE_KEY_ENCIPHER;
	cert->extKeyUsage = EXTKEYUSE_SERVER_AUTH | EXTKEYUSE_CLIENT_AUTH;
	cert->basicConstSet = 1; /* CA:FALSE */
	int san = san_der(id, cert->altNames, sizeof cert->altNames);
	if (san < 0) {
		ret = san;
		goto out;
	}
	cert->altNamesSz = san;
	cert->altNamesCrit = 1; /* RFC 5280 4.2.1.6: empty subject => critical SAN */
	time_t nb = now - ZT_CA_BACKDATE, na = now + (time_t)ttl;
	if ((ret = random_serial(&ca->rng, cert)) < 0 || (ret = set_validity(cert, nb, na)) < 0)
		goto out;
	size_t len;
	if ((ret = sign_cert(ca, cert, subject_key, der, &len)) < 0)
		goto out;
	if ((ret = pem_from_der(der, len, CERT_TYPE, &out->cert_pem)) < 0)
		goto out;
	size_t a = strlen(out->cert_pem), b = strlen(ca->pem);
	out->chain_pem = malloc(a + b + 1);
	if (!out->chain_pem) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(out->chain_pem, out->cert_pem, a);
	memcpy(out->chain_pem + a, ca->pem, b + 1);
	out->not_before = nb;
	out->not_after = na;
	ret = 0;
out:
	free(cert);
	free(der);
	return ret;
}

int zt_ca_issue(struct zt_ca *ca, const struct zt_identity *id, time_t now, uint32_t ttl,
		struct zt_issued *out)
{
	memset(out, 0, sizeof *out);
	if (!id->len)
		return -EINVAL;
	ecc_key key;
	if (wc_ecc_init(&key) != 0)
		return -EIO;
	int ret = -EIO;
	if (wc_ecc_make_key_ex(&ca->rng, P256_LEN, &key, ECC_SECP256R1) != 0)
		goto out;
	if ((ret = make_leaf(ca, &key, id, now, ttl, out)) < 0)
		goto out;
	ret = key_to_pem(&key, &out->key_pem);
out:
	wc_ecc_free(&key);
	if (ret < 0)
		zt_issued_free(out);
	return ret;
}

int zt_ca_sign_csr(struct zt_ca *ca, const char *csr_pem, size_t len,
		   const struct zt_identity *expect, time_t now, uint32_t ttl,
		   struct zt_issued *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (len > INT32_MAX) {
		zt_errf(err, errlen, "CSR too large");
		return -EINVAL;
	}
	uint8_t *der = malloc(len ? len : 1);
	if (!der)
		return -ENOMEM;
	DecodedCert *dc = NULL;
	ecc_key pub;
	bool pub_init = false;
	struct zt_identity id;
	int ret = -EINVAL;
	int n = wc_CertPemToDer((const unsigned char *)csr_pem, (int)len, der, (int)len,
				CERTREQ_TYPE);
	if (n <= 0) {
		zt_errf(err, errlen, "no PEM CERTIFICATE REQUEST block that decodes");
		goto out;
	}
	/* VERIFY on a request checks its self-signature with its own key. */
	dc = decode(der, (size_t)n, CERTREQ_TYPE, VERIFY);
	if (!dc) {
		zt_errf(err, errlen, "CSR cannot be parsed or its signature does not verify");
		goto out;
	}
	if (dc->keyOID != ECDSAk || dc->pkCurveOID != ECC_SECP256R1_OID) {
		zt_errf(err, errlen, "CSR key is not ECDSA P-256");
		goto out;
	}
	const DNS_entry *uri = NULL;
	int n_uri = 0;
	for (const DNS_entry *e = dc->altNames; e; e = e->next)
		if (e->type == ASN_URI_TYPE) {
			uri = e;
			n_uri++;
		}
	if (n_uri != 1) {
		zt_errf(err, errlen, "CSR must carry exactly one URI SAN, it has %d", n_uri);
		goto out;
	}
	int r = zt_identity_parse(&id, uri->name, (size_t)uri->len);
	if (r < 0) {
		zt_errf(err, errlen, "CSR URI SAN: %s", zt_identity_strerror(r));
		goto out;
	}
	if (expect && !zt_identity_eq(&id, expect)) {
		zt_errf(err, errlen, "CSR identity %s is not the expected %s", id.uri,
			expect->uri);
		ret = -EPERM;
		goto out;
	}
	if (wc_ecc_init(&pub) != 0) {
		ret = -EIO;
		goto out;
	}
	pub_init = true;
	word32 idx = 0;
	if (wc_EccPublicKeyDecode(dc->publicKey, &idx, &pub, dc->pubKeySize) != 0) {
		zt_errf(err, errlen, "CSR public key does not decode");
		goto out;
	}
	ret = make_leaf(ca, &pub, &id, now, ttl, out);
	if (ret < 0)
		zt_errf(err, errlen, "signing failed");
out:
	if (pub_init)
		wc_ecc_free(&pub);
	decoded_free(dc);
	free(der);
	if (ret < 0)
		zt_issued_free(out);
	return ret;
}

int zt_csr_build(const struct zt_identity *id, struct zt_csr *out)
{
	memset(out, 0, sizeof *out);
	if (!id->len)
		return -EINVAL;
	WC_RNG rng;
	ecc_key key;
	if (wc_InitRng(&rng) != 0)
		return -EIO;
	if (wc_ecc_init(&key) != 0) {
		wc_FreeRng(&rng);
		return -EIO;
	}
	Cert *req = malloc(sizeof *req);
	uint8_t *der = malloc(DER_MAX);
	int ret = -ENOMEM;
	if (!req || !der)
		goto out;
	ret = -EIO;
	if (wc_ecc_make_key_ex(&rng, P256_LEN, &key, ECC_SECP256R1) != 0)
		goto out;
	if (wc_InitCert(req) != 0)
		goto out;
	req->version = 0; /* PKCS#10 v1 */
	req->sigType = CTC_SHA256wECDSA;
	/* empty subject; the SAN is the only extension requested */
	int san = san_der(id, req->altNames, sizeof req->altNames);
	if (san < 0) {
		ret = san;
		goto out;
	}
	req->altNamesSz = san;
	req->altNamesCrit = 1;
	int n = wc_MakeCertReq_ex(req, der, DER_MAX, ECC_TYPE, &key);
	if (n <= 0)
		goto out;
	n = wc_SignCert_ex(req->bodySz, req->sigType, der, DER_MAX, ECC_TYPE, &key, &rng);
	if (n <= 0)
		goto out;
	if ((ret = pem_from_der(der, (size_t)n, CERTREQ_TYPE, &out->csr_pem)) < 0)
		goto out;
	ret = key_to_pem(&key, &out->key_pem);
out:
	free(req);
	free(der);
	wc_ecc_free(&key);
	wc_FreeRng(&rng);
	if (ret < 0)
		zt_csr_free(out);
	return ret;
}

void zt_csr_free(struct zt_csr *csr)
{
	if (!csr)
		return;
	free(csr->csr_pem);
	if (csr->key_pem) {
		explicit_bzero(csr->key_pem, strlen(csr->key_pem));
		free(csr->key_pem);
	}
	memset(csr, 0, sizeof *csr);
}
