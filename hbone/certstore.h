/* certstore.h - the workload certificates this node serves, for the shards.
 *
 * Threads. The control thread builds a store (zt_certstore_build, or
 * zt_certstore_update from the previous one), publishes it through a
 * ZT_RCU pointer with zt_rcu_publish() and hands the old one to
 * zt_qsbr_retire(q, old, zt_certstore_free_cb) -- exactly like the snapshot.
 * A published store is immutable and has no reference count: a shard reads it
 * between zt_qsbr_online()/zt_qsbr_quiescent() and must not keep pointers into
 * it past its next quiescent point. Lookups are lock- and allocation-free.
 *
 * Contents. For each local identity: the leaf and intermediates as DER in the
 * order a TLS Certificate message carries them, the private key as PKCS#8
 * DER, validity times and the renewal time; once per store: the trust roots
 * as DER. Everything was decoded and checked when the store was built (the
 * leaf's URI SAN is the entry's identity, the chain verifies to the roots,
 * the key matches the leaf, wolfSSL loads all of it into a TLS 1.3 context),
 * so loading an entry on a shard cannot fail for reasons of content.
 *
 * WOLFSSL_CTX and threads -- decision: a shard makes its own WOLFSSL_CTX for
 * each identity it serves or connects as (zt_certstore_ctx_new), caches it
 * next to the store generation it came from, and never shares it with another
 * thread. wolfSSL would allow sharing a fully set-up CTX between threads (its
 * manual, "Thread Safety": WOLFSSL objects must not be used concurrently, the
 * library itself is thread-safe; this build is not SINGLE_THREADED), but in
 * 5.5.4 every wolfSSL_new()/wolfSSL_free() takes the CTX's countMutex (the
 * CTX is reference-counted by its sessions) and every peer verification takes
 * the CTX cert manager's caLock: a CTX shared by all shards would put two
 * cross-core mutexes on every handshake. Shard-local CTXs take the same
 * mutexes uncontended, and lifetime stays a single-thread matter: a WOLFSSL
 * keeps its CTX alive, so a shard may wolfSSL_CTX_free() an outdated CTX while
 * connections made from it finish. A CTX copies the DER it loads, so it does
 * not depend on the store once made. Building one takes ~3 µs on this
 * machine's pinned wolfSSL (parse chain, key and roots), once per identity
 * per shard per renewal; zt_cert_entry.version says when to rebuild.
 *
 * Renewal (control thread): zt_certstore_due() lists the identities whose
 * certificate passed half-life (ztunnel's refresh_at), zt_certstore_next_refresh()
 * says when to look again. The old certificate stays in the store until
 * zt_certstore_update() replaces it with the new one.
 */
#ifndef ZT_HBONE_CERTSTORE_H
#define ZT_HBONE_CERTSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hbone/identity.h"

/* TLS 1.3 suites offered and accepted, in order of preference: ztunnel's two
 * AES-GCM suites (never a null cipher), AES-128 first as it is the faster
 * one on AES-NI. wolfSSL's names. */
#define ZT_TLS_CIPHERS "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384"

struct zt_der {
	const uint8_t *data;
	size_t len;
};

/* Does `leaf` chain to one of `roots` through `inter` (leaf-first: inter[0]
 * issued the leaf)? Each intermediate must verify against what is already
 * trusted before it is trusted itself. Dates are not held against any of them
 * (an expired certificate is still better than none until renewal). Any
 * thread. Returns 0, -EINVAL with *why set, or -ENOMEM. */
int zt_chain_verify(const struct zt_der *roots, size_t n_roots, const struct zt_der *inter,
		    size_t n_inter, const struct zt_der *leaf, const char **why);

struct zt_cert_entry {
	struct zt_identity id;
	struct zt_der leaf;  /* the leaf alone (points into chain) */
	struct zt_der chain; /* leaf, then intermediates: concatenated DER */
	struct zt_der key;   /* PKCS#8 DER */
	time_t not_before, not_after;
	time_t refresh_at;   /* not_before + (not_after - not_before) / 2 */
	char serial[64];     /* leaf serial, decimal */
	/* Changes exactly when this identity's certificate does (unique in the
	 * process; carried over by zt_certstore_update). A shard keys its CTX
	 * cache on (id, version) and so rebuilds only what was renewed. */
	uint64_t version;
};

struct zt_certstore {
	uint64_t generation; /* unique per store in this process, increasing */
	size_t n;
	const struct zt_cert_entry *entries; /* sorted by id.uri */
	size_t n_roots;
	const struct zt_der *roots;
};

/* One certificate to put in a store. */
struct zt_cert_input {
	/* Expected identity; NULL takes it from the leaf's URI SAN. */
	const struct zt_identity *id;
	/* Leaf first, then intermediates (PEM). Roots in it (the trust roots, or
	 * any self-issued CA), as istiod and zt_issued.chain_pem append, are
	 * dropped. */
	const char *chain_pem;
	size_t chain_len;
	const char *key_pem; /* "PRIVATE KEY" or "EC PRIVATE KEY", P-256 */
	size_t key_len;
};

/* A store with n certificates and the trust roots in roots_pem (one or more
 * CERTIFICATE blocks). Checks everything listed above; an expired
 * certificate is accepted (it is still better than none until renewal
 * succeeds). Returns 0, -EINVAL (err: "<identity or input #i>: <reason>"),
 * -ENOMEM or -EIO. */
int zt_certstore_build(const struct zt_cert_input *in, size_t n, const char *roots_pem,
		       size_t roots_len, struct zt_certstore **out, char *err, size_t errlen);

/* A new store from `old`: entries in `in` are added, or replace the entry
 * with the same identity; identities in `remove` are left out; other entries
 * and the roots are carried over unchanged (copied, not re-checked). `old`
 * is not modified. Errors as zt_certstore_build. */
int zt_certstore_update(const struct zt_certstore *old, const struct zt_cert_input *in,
			size_t n, const struct zt_identity *const *remove, size_t n_remove,
			struct zt_certstore **out, char *err, size_t errlen);

void zt_certstore_free(struct zt_certstore *s);
/* The same, with the signature zt_qsbr_retire() takes. */
void zt_certstore_free_cb(void *s);

/* The entry for an identity, or NULL. Shard-safe. */
const struct zt_cert_entry *zt_certstore_find(const struct zt_certstore *s,
					      const struct zt_identity *id);
const struct zt_cert_entry *zt_certstore_find_uri(const struct zt_certstore *s,
						  const char *uri, size_t len);

/* Renew now? True from half-life on, and also while now < not_before (a
 * certificate from a clock ahead of ours is replaced at once, as ztunnel
 * does). */
bool zt_cert_entry_due(const struct zt_cert_entry *e, time_t now);
/* The identities due at `now`: fills out[0..min(count, max)) with pointers
 * into the store and returns count. */
size_t zt_certstore_due(const struct zt_certstore *s, time_t now,
			const struct zt_identity **out, size_t max);
/* Earliest refresh_at in the store, or 0 when it is empty. */
time_t zt_certstore_next_refresh(const struct zt_certstore *s);

enum zt_tls_side { ZT_TLS_SERVER, ZT_TLS_CLIENT };

/* A TLS 1.3-only WOLFSSL_CTX for entry `e` of store `s` (see the threading
 * decision above: call it on the shard that will use the CTX): certificate
 * chain and key of `e`, trust roots of `s`, cipher list ZT_TLS_CIPHERS, peer
 * verification (a server requires a client certificate), no session tickets
 * or session cache (ztunnel does no resumption). ALPN and the SPIFFE checks
 * (trust domain, expected identity: zt_identity_from_peer) are per
 * connection and the caller's. Returns 0, -ENOMEM or -EIO. */
struct WOLFSSL_CTX;
int zt_certstore_ctx_new(const struct zt_certstore *s, const struct zt_cert_entry *e,
			 enum zt_tls_side side, struct WOLFSSL_CTX **out);

#endif
