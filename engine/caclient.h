/* caclient.h - the client of istiod's CA (CA_ADDRESS):
 * /istio.v1.auth.IstioCertificateService/CreateCertificate, as ztunnel calls
 * it (src/identity/caclient.rs).
 *
 * Threads: the control thread. zt_caclient_issue() blocks (DNS, connect, TLS,
 * one unary call on its own connection: zt_grpc_unary), never longer than
 * its timeout. wolfSSL must be initialised (zt_crypto_init).
 *
 * One call, for one SPIFFE identity:
 *   - a fresh P-256 key and a CSR (zt_csr_build: empty subject, one critical
 *     URI SAN);
 *   - IstioCertificateRequest {csr = PEM, validity_duration = ttl seconds,
 *     metadata = Struct {"ImpersonatedIdentity": "<identity>"}} (ztunnel asks
 *     for every local workload's identity with its own token: istiod must
 *     trust the caller, CA_TRUSTED_NODE_ACCOUNTS);
 *   - headers "authorization: Bearer <token>" (the token file is re-read at
 *     each call, surrounding white space dropped; a missing or empty file
 *     sends no header) and "clusterid: <cluster id>";
 *   - TLS verified against the root-cert file, server name checked;
 *   - IstioCertificateResponse {cert_chain: leaf, intermediates..., roots}:
 *     the last element is the trust root(s), possibly several PEM blocks in
 *     one string (istiod concatenates them there; ztunnel splits it), the
 *     elements between leaf and last are intermediates. At least the leaf
 *     and one root are required, as in ztunnel.
 * The answer is checked before it is accepted: every element is PEM that
 * holds certificates that parse; the leaf is not a CA, holds exactly one URI
 * SAN, the identity asked for, and the public key of our CSR; the leaf chains
 * to the returned roots through the intermediates (dates are not held
 * against it, as in zt_certstore_build). Anything else is refused.
 */
#ifndef ZT_ENGINE_CACLIENT_H
#define ZT_ENGINE_CACLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "hbone/ca.h"
#include "hbone/identity.h"

#define ZT_CACLIENT_PATH "/istio.v1.auth.IstioCertificateService/CreateCertificate"
/* Largest IstioCertificateResponse accepted (a chain is a few KiB). */
#define ZT_CACLIENT_MAX_RESPONSE (1u << 20)
/* The metadata key that names the identity asked for. */
#define ZT_CACLIENT_IMPERSONATE "ImpersonatedIdentity"

struct zt_caclient_opts {
	/* CA_ADDRESS: "https://istiod.istio-system.svc:15012" (any form
	 * zt_grpc_opts.address takes; "http://" is h2c, for tests). */
	const char *address;
	const char *root_cert_path; /* PEM roots for the CA's TLS certificate (required) */
	const char *server_name;    /* TLS name to check; NULL: the address's host */
	const char *token_path;     /* bearer token file; NULL: none */
	const char *cluster_id;     /* "clusterid" header; NULL: "Kubernetes" */
};

/* Ask the CA for a certificate for `id` valid ttl_s seconds (0:
 * ZT_CA_WORKLOAD_TTL), within timeout_ms in all (connect included).
 *
 * On success returns 0 and fills *out (malloc'd, zt_issued_free):
 *   cert_pem   the leaf
 *   chain_pem  the leaf, then the intermediates (no roots: peers have them,
 *              and zt_certstore_build would drop them; with istiod's usual
 *              [leaf, root] answer this is the leaf alone)
 *   key_pem    the CSR's private key (PKCS#8)
 *   not_before, not_after  the leaf's
 * and *roots_pem (malloc'd, free()) with the root certificate(s) of the
 * answer, PEM, for the caller's trust store. Every PEM is re-encoded from the
 * checked DER.
 *
 * On failure *out is zeroed, *roots_pem NULL, and err says what failed; the
 * return value is
 *   > 0      a gRPC status (enum zt_grpc_code): the CA's own (e.g.
 *            UNAUTHENTICATED: message from istiod), or zt_grpc_unary's
 *            UNAVAILABLE (connection or TLS failure), DEADLINE_EXCEEDED,
 *            INTERNAL (broken HTTP/2 or gRPC answer), RESOURCE_EXHAUSTED
 *            (answer over ZT_CACLIENT_MAX_RESPONSE), INVALID_ARGUMENT (bad
 *            address or unreadable root-cert file);
 *   -EBADMSG the answer was refused: not an IstioCertificateResponse, too
 *            few elements, a certificate that does not parse, wrong identity,
 *            wrong key, a CA leaf, a chain that does not verify;
 *   -EINVAL  bad arguments (no address, empty identity);
 *   -EACCES, -EFBIG, ...  the token file exists but cannot be used;
 *   -ENOMEM, -EIO (wolfSSL failed building the CSR or checking).
 */
int zt_caclient_issue(const struct zt_caclient_opts *o, const struct zt_identity *id,
		      uint32_t ttl_s, uint32_t timeout_ms, struct zt_issued *out,
		      char **roots_pem, char *err, size_t errlen);

#endif
