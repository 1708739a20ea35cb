/* certstore.c - immutable per-node certificate store; see certstore.h. */
#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strfmt.h"
#include "hbone/ca.h"
#include "hbone/certstore.h"

/* Store generations and entry versions come from one counter. Stores are
 * built on the control thread, but an atomic keeps tests that build on
 * several threads honest too. */
static _Atomic uint64_t next_number = 1;

static uint64_t take_number(void)
{
	/* relaxed: only uniqueness matters, nothing is ordered by it */
	return atomic_fetch_add_explicit(&next_number, 1, memory_order_relaxed);
}

/* An entry being assembled. Its bytes are either owned (parsed from PEM) or
 * borrowed from an older store. */
struct pend {
	struct zt_identity id;
	uint8_t *chain;
	size_t chain_len, leaf_len;
	uint8_t *key;
	size_t key_len;
	struct zt_cert_info info;
	uint64_t version; /* 0: new certificate, numbered at assembly */
	bool owned;
};

struct der_list {
	struct zt_der *v;
	size_t n, cap;
	bool owned; /* v[i].data malloc'd */
};

static void pend_clear(struct pend *p)
{
	if (p->owned) {
		free(p->chain);
		if (p->key) {
			explicit_bzero(p->key, p->key_len);
			free(p->key);
		}
	}
	memset(p, 0, sizeof *p);
}

static void der_list_free(struct der_list *l)
{
	if (l->owned)
		for (size_t i = 0; i < l->n; i++)
			free((void *)l->v[i].data);
	free(l->v);
	memset(l, 0, sizeof *l);
}

static int der_list_add(const uint8_t *der, size_t len, void *arg)
{
	struct der_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct zt_der *v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	uint8_t *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, der, len);
	l->v[l->n++] = (struct zt_der){copy, len};
	return 0;
}

static bool is_root(const struct zt_der *roots, size_t n, const uint8_t *der, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (roots[i].len == len && memcmp(roots[i].data, der, len) == 0)
			return true;
	return false;
}

/* Length of the DER SEQUENCE at p (header included), or 0 if it is not one
 * or does not fit in n. */
static size_t der_seq_len(const uint8_t *p, size_t n)
{
	if (n < 2 || p[0] != 0x30)
		return 0;
	size_t len, hdr;
	if (p[1] < 0x80) {
		len = p[1];
		hdr = 2;
	} else {
		size_t k = p[1] & 0x7f;
		if (k == 0 || k > 3 || n < 2 + k)
			return 0;
		len = 0;
		for (size_t i = 0; i < k; i++)
			len = len << 8 | p[2 + i];
		hdr = 2 + k;
	}
	return hdr + len <= n ? hdr + len : 0;
}

/* ---- wolfSSL contexts ---- */

static int ctx_make(const uint8_t *chain, size_t chain_len, const uint8_t *key,
		    size_t key_len, const struct zt_der *roots, size_t n_roots,
		    enum zt_tls_side side, WOLFSSL_CTX **out)
{
	*out = NULL;
	WOLFSSL_METHOD *m = side == ZT_TLS_SERVER ? wolfTLSv1_3_server_method()
						  : wolfTLSv1_3_client_method();
	if (!m)
		return -ENOMEM;
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(m); /* takes ownership of m */
	if (!ctx)
		return -ENOMEM;
	if (wolfSSL_CTX_set_cipher_list(ctx, ZT_TLS_CIPHERS) != WOLFSSL_SUCCESS)
		goto fail;
	if (wolfSSL_CTX_use_certificate_chain_buffer_format(ctx, chain, (long)chain_len,
							    WOLFSSL_FILETYPE_ASN1) !=
	    WOLFSSL_SUCCESS)
		goto fail;
	if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len, WOLFSSL_FILETYPE_ASN1) !=
	    WOLFSSL_SUCCESS)
		goto fail;
	for (size_t i = 0; i < n_roots; i++)
		if (wolfSSL_CTX_load_verify_buffer(ctx, roots[i].data, (long)roots[i].len,
						   WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS)
			goto fail;
	wolfSSL_CTX_set_verify(ctx,
			       side == ZT_TLS_SERVER ? WOLFSSL_VERIFY_PEER |
							       WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT
						     : WOLFSSL_VERIFY_PEER,
			       NULL);
	wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
	if (side == ZT_TLS_SERVER && wolfSSL_CTX_no_ticket_TLSv13(ctx) != 0)
		goto fail;
	*out = ctx;
	return 0;
fail:
	wolfSSL_CTX_free(ctx);
	return -EIO;
}

int zt_certstore_ctx_new(const struct zt_certstore *s, const struct zt_cert_entry *e,
			 enum zt_tls_side side, WOLFSSL_CTX **out)
{
	return ctx_make(e->chain.data, e->chain.len, e->key.data, e->key.len, s->roots,
			s->n_roots, side, out);
}

/* ---- checking one input ---- */

int zt_chain_verify(const struct zt_der *roots, size_t n_roots, const struct zt_der *inter,
		    size_t n_inter, const struct zt_der *leaf, const char **why)
{
	WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
	if (!cm)
		return -ENOMEM;
	int ret = -EINVAL;
	for (size_t i = 0; i < n_roots; i++)
		if (wolfSSL_CertManagerLoadCABuffer(cm, roots[i].data, (long)roots[i].len,
						    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
			*why = "a trust root does not load";
			goto out;
		}
	/* Nearest the root first; loading a CA makes it a trust anchor, so each
	 * must verify against what is already trusted before it is loaded. */
	while (n_inter--) {
		const struct zt_der *d = &inter[n_inter];
		if (wolfSSL_CertManagerVerifyBuffer(cm, d->data, (long)d->len,
						    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS ||
		    wolfSSL_CertManagerLoadCABuffer(cm, d->data, (long)d->len,
						    WOLFSSL_FILETYPE_ASN1) != WOLFSSL_SUCCESS) {
			*why = "an intermediate does not verify against the trust roots";
			goto out;
		}
	}
	int r = wolfSSL_CertManagerVerifyBuffer(cm, leaf->data, (long)leaf->len,
						WOLFSSL_FILETYPE_ASN1);
	/* A date error is only reported after the signature checked out. */
	if (r == WOLFSSL_SUCCESS || r == ASN_AFTER_DATE_E || r == ASN_BEFORE_DATE_E)
		ret = 0;
	else
		*why = "certificate does not verify against the trust roots";
out:
	wolfSSL_CertManagerFree(cm);
	return ret;
}

/* Does the leaf chain (through the intermediates that follow it) to a root? */
static int verify_chain(const struct pend *p, const struct zt_der *roots, size_t n_roots,
			const char **why)
{
	struct zt_der inter[16];
	size_t n_inter = 0;
	for (size_t off = p->leaf_len; off < p->chain_len;) {
		size_t len = der_seq_len(p->chain + off, p->chain_len - off);
		if (n_inter == 16 || len == 0) {
			*why = "too many intermediates or a bad one";
			return -EINVAL;
		}
		inter[n_inter++] = (struct zt_der){p->chain + off, len};
		off += len;
	}
	struct zt_der leaf = {p->chain, p->leaf_len};
	return zt_chain_verify(roots, n_roots, inter, n_inter, &leaf, why);
}

/* Parse and check one input into *p. Returns 0, -EINVAL (with err), -ENOMEM. */
static int pend_from_input(struct pend *p, const struct zt_cert_input *in, size_t idx,
			   const struct zt_der *roots, size_t n_roots, char *err,
			   size_t errlen)
{
	memset(p, 0, sizeof *p);
	p->owned = true;
	char who[ZT_ID_URI_MAX + 32];
	if (in->id)
		snprintf(who, sizeof who, "%s", in->id->uri);
	else
		snprintf(who, sizeof who, "certificate #%zu", idx);

	struct der_list certs = {.owned = true};
	int ret = zt_pem_each_cert(in->chain_pem, in->chain_len, der_list_add, &certs);
	if (ret < 0) {
		if (ret != -ENOMEM)
			zt_errf(err, errlen, "%s: chain is not PEM certificates", who);
		goto fail;
	}
	ret = -EINVAL;
	if (is_root(roots, n_roots, certs.v[0].data, certs.v[0].len)) {
		zt_errf(err, errlen, "%s: chain starts with a trust root", who);
		goto fail;
	}
	/* Concatenate leaf and intermediates, dropping roots: ours, and any other
	 * self-issued CA (peers must have the root already; sending it is
	 * useless, and an unknown one fails the chain check below anyway). */
	size_t total = 0;
	for (size_t i = 0; i < certs.n; i++)
		total += certs.v[i].len;
	p->chain = malloc(total);
	if (!p->chain) {
		ret = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < certs.n; i++) {
		struct zt_cert_info ci;
		if (i > 0 && (is_root(roots, n_roots, certs.v[i].data, certs.v[i].len) ||
			      (zt_cert_info(certs.v[i].data, certs.v[i].len, &ci) == 0 &&
			       ci.is_ca && ci.self_issued)))
			continue;
		memcpy(p->chain + p->chain_len, certs.v[i].data, certs.v[i].len);
		p->chain_len += certs.v[i].len;
	}
	p->leaf_len = certs.v[0].len;
	der_list_free(&certs);

	int r = zt_identity_from_der(&p->id, p->chain, p->leaf_len);
	if (r < 0) {
		zt_errf(err, errlen, "%s: %s", who, zt_identity_strerror(r));
		ret = r == -ZT_ID_ENOMEM ? -ENOMEM : -EINVAL;
		goto fail;
	}
	if (in->id && !zt_identity_eq(&p->id, in->id)) {
		zt_errf(err, errlen, "%s: certificate is for %s", who, p->id.uri);
		goto fail;
	}
	snprintf(who, sizeof who, "%s", p->id.uri);
	if (zt_cert_info(p->chain, p->leaf_len, &p->info) < 0) {
		zt_errf(err, errlen, "%s: validity cannot be read", who);
		goto fail;
	}
	if (p->info.is_ca) {
		zt_errf(err, errlen, "%s: leaf is a CA certificate", who);
		goto fail;
	}
	ret = zt_pem_key_to_der(in->key_pem, in->key_len, &p->key, &p->key_len);
	if (ret < 0) {
		if (ret != -ENOMEM)
			zt_errf(err, errlen, "%s: key is not a P-256 private key in PEM", who);
		goto fail;
	}
	const char *why = NULL;
	if ((ret = verify_chain(p, roots, n_roots, &why)) < 0) {
		if (why)
			zt_errf(err, errlen, "%s: %s", who, why);
		goto fail;
	}
	/* What the shards will do, done once here so that they cannot fail. */
	WOLFSSL_CTX *ctx;
	ret = ctx_make(p->chain, p->chain_len, p->key, p->key_len, roots, n_roots,
		       ZT_TLS_SERVER, &ctx);
	if (ret < 0) {
		zt_errf(err, errlen, "%s: wolfSSL does not load the certificate and key", who);
		goto fail;
	}
	r = wolfSSL_CTX_check_private_key(ctx);
	wolfSSL_CTX_free(ctx);
	if (r != WOLFSSL_SUCCESS) {
		zt_errf(err, errlen, "%s: key does not match the certificate", who);
		ret = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	der_list_free(&certs);
	pend_clear(p);
	return ret;
}

/* ---- assembling a store ---- */

static int cmp_pend(const void *a, const void *b)
{
	return zt_identity_cmp(&((const struct pend *)a)->id, &((const struct pend *)b)->id);
}

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

/* One allocation: the store, its entries, its root table, then the bytes.
 * Sorts `v` by identity and fails on duplicates. */
static int assemble(struct pend *v, size_t n, const struct zt_der *roots, size_t n_roots,
		    struct zt_certstore **out, char *err, size_t errlen)
{
	qsort(v, n, sizeof *v, cmp_pend);
	for (size_t i = 1; i < n; i++)
		if (zt_identity_eq(&v[i - 1].id, &v[i].id)) {
			zt_errf(err, errlen, "%s: listed twice", v[i].id.uri);
			return -EINVAL;
		}
	size_t head = ALIGN8(sizeof(struct zt_certstore));
	size_t ent = ALIGN8(n * sizeof(struct zt_cert_entry));
	size_t rt = ALIGN8(n_roots * sizeof(struct zt_der));
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += v[i].chain_len + v[i].key_len;
	for (size_t i = 0; i < n_roots; i++)
		bytes += roots[i].len;
	char *mem = calloc(1, head + ent + rt + bytes);
	if (!mem)
		return -ENOMEM;
	struct zt_certstore *s = (struct zt_certstore *)mem;
	struct zt_cert_entry *e = (struct zt_cert_entry *)(mem + head);
	struct zt_der *r = (struct zt_der *)(mem + head + ent);
	uint8_t *b = (uint8_t *)(mem + head + ent + rt);

	for (size_t i = 0; i < n_roots; i++) {
		memcpy(b, roots[i].data, roots[i].len);
		r[i] = (struct zt_der){b, roots[i].len};
		b += roots[i].len;
	}
	for (size_t i = 0; i < n; i++) {
		const struct pend *p = &v[i];
		e[i].id = p->id;
		memcpy(b, p->chain, p->chain_len);
		e[i].chain = (struct zt_der){b, p->chain_len};
		e[i].leaf = (struct zt_der){b, p->leaf_len};
		b += p->chain_len;
		memcpy(b, p->key, p->key_len);
		e[i].key = (struct zt_der){b, p->key_len};
		b += p->key_len;
		e[i].not_before = p->info.not_before;
		e[i].not_after = p->info.not_after;
		e[i].refresh_at =
			p->info.not_before + (p->info.not_after - p->info.not_before) / 2;
		memcpy(e[i].serial, p->info.serial, sizeof e[i].serial);
		e[i].version = p->version ? p->version : take_number();
	}
	s->n = n;
	s->entries = n ? e : NULL;
	s->n_roots = n_roots;
	s->roots = r;
	s->generation = take_number();
	*out = s;
	return 0;
}

static int roots_from_pem(const char *pem, size_t len, struct der_list *roots, char *err,
			  size_t errlen)
{
	memset(roots, 0, sizeof *roots);
	roots->owned = true;
	if (!pem || !len) {
		zt_errf(err, errlen, "no trust roots");
		return -EINVAL;
	}
	int ret = zt_pem_each_cert(pem, len, der_list_add, roots);
	if (ret < 0) {
		if (ret != -ENOMEM)
			zt_errf(err, errlen, "trust roots: not PEM certificates");
		der_list_free(roots);
		return ret;
	}
	for (size_t i = 0; i < roots->n; i++) {
		struct zt_cert_info info;
		if (zt_cert_info(roots->v[i].data, roots->v[i].len, &info) < 0 || !info.is_ca) {
			zt_errf(err, errlen, "trust root #%zu is not a CA certificate", i);
			der_list_free(roots);
			return -EINVAL;
		}
	}
	return 0;
}

int zt_certstore_build(const struct zt_cert_input *in, size_t n, const char *roots_pem,
		       size_t roots_len, struct zt_certstore **out, char *err, size_t errlen)
{
	*out = NULL;
	struct der_list roots;
	int ret = roots_from_pem(roots_pem, roots_len, &roots, err, errlen);
	if (ret < 0)
		return ret;
	struct pend *v = calloc(n ? n : 1, sizeof *v);
	size_t done = 0;
	if (!v) {
		ret = -ENOMEM;
		goto out;
	}
	for (; done < n; done++) {
		ret = pend_from_input(&v[done], &in[done], done, roots.v, roots.n, err, errlen);
		if (ret < 0)
			goto out;
	}
	ret = assemble(v, n, roots.v, roots.n, out, err, errlen);
out:
	for (size_t i = 0; i < done; i++)
		pend_clear(&v[i]);
	free(v);
	der_list_free(&roots);
	return ret;
}

int zt_certstore_update(const struct zt_certstore *old, const struct zt_cert_input *in,
			size_t n, const struct zt_identity *const *remove, size_t n_remove,
			struct zt_certstore **out, char *err, size_t errlen)
{
	*out = NULL;
	struct pend *v = calloc(old->n + n ? old->n + n : 1, sizeof *v);
	if (!v)
		return -ENOMEM;
	size_t nv = 0;
	int ret = 0;
	for (; nv < n; nv++) {
		ret = pend_from_input(&v[nv], &in[nv], nv, old->roots, old->n_roots, err, errlen);
		if (ret < 0)
			goto out;
	}
	/* Carry over what is neither replaced nor removed (borrowed bytes). */
	for (size_t i = 0; i < old->n; i++) {
		const struct zt_cert_entry *e = &old->entries[i];
		bool skip = false;
		for (size_t j = 0; j < n && !skip; j++)
			skip = zt_identity_eq(&v[j].id, &e->id);
		for (size_t j = 0; j < n_remove && !skip; j++)
			skip = zt_identity_eq(remove[j], &e->id);
		if (skip)
			continue;
		struct pend *p = &v[nv++];
		p->id = e->id;
		p->chain = (uint8_t *)e->chain.data;
		p->chain_len = e->chain.len;
		p->leaf_len = e->leaf.len;
		p->key = (uint8_t *)e->key.data;
		p->key_len = e->key.len;
		p->info.not_before = e->not_before;
		p->info.not_after = e->not_after;
		memcpy(p->info.serial, e->serial, sizeof p->info.serial);
		p->version = e->version;
		p->owned = false;
	}
	ret = assemble(v, nv, old->roots, old->n_roots, out, err, errlen);
out:
	for (size_t i = 0; i < nv; i++)
		pend_clear(&v[i]);
	free(v);
	return ret;
}

void zt_certstore_free(struct zt_certstore *s)
{
	if (!s)
		return;
	/* Keys live in the block: wipe them before giving it back. */
	for (size_t i = 0; i < s->n; i++)
		explicit_bzero((void *)s->entries[i].key.data, s->entries[i].key.len);
	free(s);
}

void zt_certstore_free_cb(void *s)
{
	zt_certstore_free(s);
}

const struct zt_cert_entry *zt_certstore_find_uri(const struct zt_certstore *s,
						  const char *uri, size_t len)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct zt_cert_entry *e = &s->entries[mid];
		size_t m = e->id.len < len ? e->id.len : len;
		int c = memcmp(e->id.uri, uri, m);
		if (c == 0)
			c = e->id.len < len ? -1 : e->id.len > len ? 1 : 0;
		if (c == 0)
			return e;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct zt_cert_entry *zt_certstore_find(const struct zt_certstore *s,
					      const struct zt_identity *id)
{
	return zt_certstore_find_uri(s, id->uri, id->len);
}

bool zt_cert_entry_due(const struct zt_cert_entry *e, time_t now)
{
	return now >= e->refresh_at || now < e->not_before;
}

size_t zt_certstore_due(const struct zt_certstore *s, time_t now,
			const struct zt_identity **out, size_t max)
{
	size_t count = 0;
	for (size_t i = 0; i < s->n; i++) {
		if (!zt_cert_entry_due(&s->entries[i], now))
			continue;
		if (count < max)
			out[count] = &s->entries[i].id;
		count++;
	}
	return count;
}

time_t zt_certstore_next_refresh(const struct zt_certstore *s)
{
	time_t t = 0;
	for (size_t i = 0; i < s->n; i++)
		if (i == 0 || s->entries[i].refresh_at < t)
			t = s->entries[i].refresh_at;
	return t;
}
