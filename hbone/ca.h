/* ca.h - the embedded CA (ztunnel's FAKE_CA equivalent, the default when
 * CA_ADDRESS is unset), workload CSRs for istiod's CA, and certificate facts.
 *
 * Threads: a struct zt_ca belongs to the control thread (it holds an RNG and
 * is not locked). zt_csr_build and zt_cert_info may be called from any thread.
 * zt_ca_load_files / zt_ca_save_files do blocking file I/O.
 *
 * Keys are ECDSA P-256 and signatures ECDSA-SHA256 everywhere.
 *
 * Workload certificates (zt_ca_issue, zt_ca_sign_csr) look like istiod's:
 *   subject         empty
 *   subjectAltName  critical, exactly one URI: the SPIFFE identity
 *   keyUsage        critical, digitalSignature + keyEncipherment
 *   extKeyUsage     serverAuth + clientAuth
 *   basicConstraints critical, CA:FALSE
 *   authorityKeyIdentifier = the root's subjectKeyIdentifier
 *   serial          128 random bits
 *   validity        [now - ZT_CA_BACKDATE, now + ttl]
 * The root (zt_ca_generate) has subject O=<org>, basicConstraints critical
 * CA:TRUE, keyUsage critical keyCertSign + cRLSign + digitalSignature, and a
 * subjectKeyIdentifier. (wolfSSL 5.5.4 writes basicConstraints non-critical
 * and has no switch for it; ca.c adds the flag before signing.)
 *
 * CSRs (zt_csr_build) are what istiod's IstioCertificateService expects and
 * what ztunnel sends: empty subject, one extension request holding a critical
 * SAN with the one URI, P-256 key, ECDSA-SHA256 signature.
 *
 * Functions return 0 or a negative errno: -ENOMEM; -EINVAL for input that is
 * not acceptable (a bad PEM, key, CSR or identity; `err` says which); -EIO when
 * wolfSSL fails where it should not; file errors as their errno.
 */
#ifndef ZT_HBONE_CA_H
#define ZT_HBONE_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hbone/identity.h"

/* Istio's default workload certificate lifetime (SECRET_TTL / the istio.io
 * FAQ: 24 hours). Renewal happens at half-life. */
#define ZT_CA_WORKLOAD_TTL (24u * 60 * 60)
/* Istio's self-signed root lifetime (10 years). */
#define ZT_CA_ROOT_TTL (10u * 365 * 24 * 60 * 60)
/* notBefore is set this many seconds in the past, for peers whose clock is a
 * little behind ours. */
#define ZT_CA_BACKDATE 60

struct zt_ca;

/* What the CA hands back; every string is NUL-terminated and malloc'd. */
struct zt_issued {
	char *cert_pem;  /* the leaf */
	char *chain_pem; /* the leaf, then the CA certificate */
	char *key_pem;   /* PKCS#8 "PRIVATE KEY"; NULL from zt_ca_sign_csr */
	time_t not_before, not_after;
};

/* A CSR and the private key that goes with it (PKCS#8 PEM). */
struct zt_csr {
	char *csr_pem;
	char *key_pem;
};

/* Facts about one certificate. */
struct zt_cert_info {
	time_t not_before, not_after;
	char serial[64]; /* decimal, as istioctl's config dump shows it */
	bool is_ca;
	bool self_issued; /* subject == issuer (a root) */
};

/* A new self-signed P-256 root with subject O=<org> (org NULL: "cluster.local"),
 * valid [now - ZT_CA_BACKDATE, now + ttl] (ttl 0: ZT_CA_ROOT_TTL). */
int zt_ca_generate(struct zt_ca **out, const char *org, time_t now, uint32_t ttl);

/* A CA from PEM text: a certificate with basicConstraints CA:TRUE and a P-256
 * key, and the private key ("PRIVATE KEY" or "EC PRIVATE KEY", unencrypted)
 * that matches it. On error `err` (if not NULL) says why. */
int zt_ca_load_pem(struct zt_ca **out, const char *cert_pem, size_t cert_len,
		   const char *key_pem, size_t key_len, char *err, size_t errlen);
/* The same from files; errors name the file. */
int zt_ca_load_files(struct zt_ca **out, const char *cert_path, const char *key_path,
		     char *err, size_t errlen);
/* Write the CA certificate (0644) and its key (0600, PKCS#8) so that other
 * zrings and tests can share the root. Each file is replaced atomically
 * (written beside it, then renamed). */
int zt_ca_save_files(const struct zt_ca *ca, const char *cert_path, const char *key_path,
		     char *err, size_t errlen);
void zt_ca_free(struct zt_ca *ca);

/* The CA certificate: PEM (NUL-terminated) and DER, owned by the CA. */
const char *zt_ca_root_pem(const struct zt_ca *ca);
const uint8_t *zt_ca_root_der(const struct zt_ca *ca, size_t *len);
time_t zt_ca_not_after(const struct zt_ca *ca);

/* Issue a workload certificate for `id` with a fresh P-256 key, valid
 * [now - ZT_CA_BACKDATE, now + ttl] (ttl 0: ZT_CA_WORKLOAD_TTL). */
int zt_ca_issue(struct zt_ca *ca, const struct zt_identity *id, time_t now, uint32_t ttl,
		struct zt_issued *out);

/* Sign a PEM CSR: its self-signature must verify, its key must be P-256 and
 * its SAN must hold exactly one URI that parses as an identity (other names
 * are dropped). When `expect` is not NULL the identity must equal it (what
 * istiod checks against the caller's token). The certificate is the same as
 * zt_ca_issue's; out->key_pem is NULL. Returns 0, -EINVAL (a bad CSR),
 * -EPERM (not `expect`), -ENOMEM or -EIO; `err` says why it was refused. */
int zt_ca_sign_csr(struct zt_ca *ca, const char *csr_pem, size_t len,
		   const struct zt_identity *expect, time_t now, uint32_t ttl,
		   struct zt_issued *out, char *err, size_t errlen);

void zt_issued_free(struct zt_issued *is);

/* A new P-256 key and a CSR for `id`. */
int zt_csr_build(const struct zt_identity *id, struct zt_csr *out);
void zt_csr_free(struct zt_csr *csr);

/* Validity, serial and CA flags of a DER certificate (not verified).
 * Returns 0 or -EINVAL. */
int zt_cert_info(const uint8_t *der, size_t len, struct zt_cert_info *out);

/* Split PEM text into DER certificates: calls fn(der, len, arg) for each
 * "CERTIFICATE" block in order, stopping at the first nonzero return, which
 * it returns. Returns -EINVAL when a block does not decode or there is none. */
int zt_pem_each_cert(const char *pem, size_t len,
		     int (*fn)(const uint8_t *der, size_t len, void *arg), void *arg);

/* Decode a PEM private key ("PRIVATE KEY" or "EC PRIVATE KEY") into the
 * PKCS#8 DER that wolfSSL loads; *der is malloc'd. Only P-256 keys pass.
 * Returns 0, -EINVAL or -ENOMEM. */
int zt_pem_key_to_der(const char *pem, size_t len, uint8_t **der, size_t *der_len);

#endif
