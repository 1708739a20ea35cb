/* identity.h - SPIFFE workload identities, as Istio writes them:
 *   spiffe://<trust domain>/ns/<namespace>/sa/<service account>
 *
 * Any thread. Parsing, formatting and comparing are pure and allocation-free;
 * the certificate functions call wolfSSL (which allocates) and may be called
 * from a shard after a handshake.
 *
 * Validation is stricter than ztunnel's (which only splits on '/'):
 *   trust domain     1-255 chars of [a-z0-9._-]            (SPIFFE ID spec)
 *   namespace        1-63 chars, a DNS-1123 label           (Kubernetes)
 *   service account  1-253 chars, a DNS-1123 subdomain      (Kubernetes)
 * so every identity that Kubernetes and istiod can produce is accepted, and
 * anything else (upper case, empty or "." segments, query, fragment, port,
 * percent-encoding, trailing '/') is refused with a reason.
 *
 * Errors are returned as negative enum zt_id_err values; zt_identity_strerror()
 * turns them into text for logs ("peer certificate has no URI SAN").
 */
#ifndef ZT_HBONE_IDENTITY_H
#define ZT_HBONE_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZT_ID_SCHEME "spiffe://"
#define ZT_ID_SCHEME_LEN 9
#define ZT_ID_TD_MAX 255
#define ZT_ID_NS_MAX 63
#define ZT_ID_SA_MAX 253
/* "spiffe://" td "/ns/" ns "/sa/" sa */
#define ZT_ID_URI_MAX (ZT_ID_SCHEME_LEN + ZT_ID_TD_MAX + 4 + ZT_ID_NS_MAX + 4 + ZT_ID_SA_MAX)

/* A parsed identity. The canonical URI is kept whole (for logs, SANs and
 * comparisons) with the offsets of its three parts; none of them is
 * NUL-terminated except the URI itself. */
struct zt_identity {
	char uri[ZT_ID_URI_MAX + 1];
	uint16_t len;            /* strlen(uri) */
	uint16_t td_len;         /* trust domain at uri + ZT_ID_SCHEME_LEN */
	uint16_t ns_off, ns_len; /* namespace at uri + ns_off */
	uint16_t sa_off, sa_len; /* service account at uri + sa_off */
};

enum zt_id_err {
	ZT_ID_OK = 0,
	ZT_ID_ESCHEME,   /* does not start with "spiffe://" */
	ZT_ID_ETD,       /* trust domain empty, too long or has a bad character */
	ZT_ID_EPATH,     /* path is not /ns/<namespace>/sa/<service account> */
	ZT_ID_ENS,       /* namespace is not a DNS-1123 label */
	ZT_ID_ESA,       /* service account is not a DNS-1123 subdomain */
	ZT_ID_ENOCERT,   /* no (peer) certificate */
	ZT_ID_ECERT,     /* the certificate cannot be parsed */
	ZT_ID_ENOSAN,    /* the certificate has no subjectAltName */
	ZT_ID_ENOURI,    /* the subjectAltName has no URI */
	ZT_ID_EMANYURI,  /* more than one URI SAN (an X509-SVID has exactly one) */
	ZT_ID_ENOMEM,
	ZT_ID_EMAX_
};

/* Text for an error (sign ignored), e.g. "namespace is not a DNS-1123 label". */
const char *zt_identity_strerror(int err);

/* Parse s[0..len). Returns 0, or -ZT_ID_ESCHEME/-ETD/-EPATH/-ENS/-ESA. On error
 * *id is left zeroed (len 0). */
int zt_identity_parse(struct zt_identity *id, const char *s, size_t len);

/* Build from parts (NUL-terminated), validated as by zt_identity_parse. */
int zt_identity_set(struct zt_identity *id, const char *trust_domain,
		    const char *ns, const char *sa);

static inline const char *zt_identity_str(const struct zt_identity *id)
{
	return id->uri;
}

/* Exact comparison (identities are case-sensitive; canonical form is unique). */
bool zt_identity_eq(const struct zt_identity *a, const struct zt_identity *b);
/* Total order (by URI bytes) for sorting and binary search. */
int zt_identity_cmp(const struct zt_identity *a, const struct zt_identity *b);
/* True when id belongs to trust domain td[0..td_len). */
bool zt_identity_in_td(const struct zt_identity *id, const char *td, size_t td_len);
/* True when a and b have the same trust domain. */
bool zt_identity_same_td(const struct zt_identity *a, const struct zt_identity *b);

/* The identity in a certificate's URI SAN. The SAN must hold exactly one URI,
 * which must parse (other SAN types are ignored). Returns 0, or -ZT_ID_ENOCERT,
 * -ECERT, -ENOSAN, -ENOURI, -EMANYURI, -ENOMEM, or a parse error. */
struct WOLFSSL_X509;
struct WOLFSSL;
int zt_identity_from_x509(struct zt_identity *id, struct WOLFSSL_X509 *x509);
/* The same from a DER certificate. */
int zt_identity_from_der(struct zt_identity *id, const uint8_t *der, size_t len);
/* The same from the leaf the peer presented on a finished handshake (needs
 * wolfSSL's KEEP_PEER_CERT, which the pinned build has). */
int zt_identity_from_peer(struct zt_identity *id, struct WOLFSSL *ssl);

#endif
