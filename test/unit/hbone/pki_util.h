/* pki_util.h - helpers for the identity / CA / cert store / TLS tests:
 * temporary files, running the openssl CLI (tests only), hand-made
 * certificates with arbitrary SANs, and an in-memory TLS pair.
 * Header-only; each test program includes it once. */
#ifndef ZT_TEST_PKI_UTIL_H
#define ZT_TEST_PKI_UTIL_H

#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test/unit/common/check.h"

/* ---- temporary directory and files ---- */

static char pki_dir[64];

static inline void pki_tmpdir_make(void)
{
	snprintf(pki_dir, sizeof pki_dir, "/tmp/zt-pki-XXXXXX");
	if (!mkdtemp(pki_dir)) {
		perror("mkdtemp");
		exit(1);
	}
}

static inline void pki_tmpdir_remove(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", pki_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", pki_dir);
}

/* Write s to <tmpdir>/name; returns the path (static buffer rotated 4 ways). */
static inline const char *pki_write(const char *name, const char *s)
{
	static char paths[4][128];
	static int k;
	char *p = paths[k++ % 4];
	snprintf(p, 128, "%s/%s", pki_dir, name);
	FILE *f = fopen(p, "w");
	if (!f || fputs(s, f) < 0 || fclose(f) != 0) {
		perror(p);
		exit(1);
	}
	return p;
}

/* ---- openssl CLI (tests only) ---- */

static inline bool have_openssl(void)
{
	return system("command -v openssl >/dev/null 2>&1") == 0;
}

/* Run a shell command, capture stdout+stderr into a malloc'd string; returns
 * the exit status (or -1). */
static inline int pki_run(const char *cmd, char **out)
{
	char full[1024];
	snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
	FILE *p = popen(full, "r");
	*out = NULL;
	if (!p)
		return -1;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + len, 1, cap - len - 1, p)) > 0) {
		len += r;
		if (cap - len < 1024) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	if (buf)
		buf[len] = '\0';
	int st = pclose(p);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CHECK_HAS(text, needle)                                                     \
	do {                                                                        \
		const char *t_ = (text);                                            \
		if (!t_ || !strstr(t_, (needle))) {                                 \
			fprintf(stderr, "%s:%d: missing \"%s\" in:\n%s\n", __FILE__, \
				__LINE__, (needle), t_ ? t_ : "(null)");            \
			zt_test_failures++;                                         \
		}                                                                   \
	} while (0)

/* ---- hand-made certificates ---- */

/* A self-signed P-256 certificate whose SAN extension is `san` (DER
 * GeneralNames; NULL: no SAN). For identity-extraction tests only. */
static inline int pki_selfsigned_with_san(const uint8_t *san, size_t san_len, uint8_t *der,
				   size_t cap)
{
	WC_RNG rng;
	ecc_key key;
	Cert *cert = malloc(sizeof *cert);
	int n = -1;
	if (!cert || wc_InitRng(&rng) != 0)
		goto out_nofree;
	wc_ecc_init(&key);
	if (wc_ecc_make_key_ex(&rng, 32, &key, ECC_SECP256R1) != 0 || wc_InitCert(cert) != 0)
		goto out;
	cert->sigType = CTC_SHA256wECDSA;
	cert->selfSigned = 1;
	cert->daysValid = 1;
	strcpy(cert->subject.commonName, "test");
	if (san) {
		memcpy(cert->altNames, san, san_len);
		cert->altNamesSz = (int)san_len;
	}
	n = wc_MakeCert_ex(cert, der, (word32)cap, ECC_TYPE, &key, &rng);
	if (n > 0)
		n = wc_SignCert_ex(cert->bodySz, cert->sigType, der, (word32)cap, ECC_TYPE, &key,
				   &rng);
out:
	wc_ecc_free(&key);
	wc_FreeRng(&rng);
out_nofree:
	free(cert);
	return n;
}

/* ---- an in-memory TLS pair ---- */

struct pki_pipe {
	uint8_t buf[1 << 16];
	size_t r, w;
};

static inline int pki_pipe_recv(WOLFSSL *ssl, char *out, int sz, void *ctx)
{
	(void)ssl;
	struct pki_pipe *p = ctx;
	size_t avail = p->w - p->r;
	if (avail == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = (size_t)sz < avail ? (size_t)sz : avail;
	memcpy(out, p->buf + p->r, n);
	p->r += n;
	if (p->r == p->w)
		p->r = p->w = 0;
	return (int)n;
}

static inline int pki_pipe_send(WOLFSSL *ssl, char *in, int sz, void *ctx)
{
	(void)ssl;
	struct pki_pipe *p = ctx;
	size_t room = sizeof p->buf - p->w;
	if (room == 0)
		return WOLFSSL_CBIO_ERR_WANT_WRITE;
	size_t n = (size_t)sz < room ? (size_t)sz : room;
	memcpy(p->buf + p->w, in, n);
	p->w += n;
	return (int)n;
}

struct pki_tls {
	WOLFSSL *client, *server;
	struct pki_pipe c2s, s2c;
	int client_err, server_err; /* wolfSSL_get_error() of a failed side */
};

/* Connect a client and a server WOLFSSL from the two CTXs over in-memory
 * pipes, both asking for ALPN "h2". Returns true when both finished the
 * handshake; on failure the error codes are in t. */
static inline bool pki_tls_handshake(struct pki_tls *t, WOLFSSL_CTX *cctx, WOLFSSL_CTX *sctx)
{
	memset(t, 0, sizeof *t);
	wolfSSL_SetIORecv(cctx, pki_pipe_recv);
	wolfSSL_SetIOSend(cctx, pki_pipe_send);
	wolfSSL_SetIORecv(sctx, pki_pipe_recv);
	wolfSSL_SetIOSend(sctx, pki_pipe_send);
	t->client = wolfSSL_new(cctx);
	t->server = wolfSSL_new(sctx);
	if (!t->client || !t->server)
		return false;
	wolfSSL_SetIOReadCtx(t->client, &t->s2c);
	wolfSSL_SetIOWriteCtx(t->client, &t->c2s);
	wolfSSL_SetIOReadCtx(t->server, &t->c2s);
	wolfSSL_SetIOWriteCtx(t->server, &t->s2c);
	char h2[] = "h2";
	wolfSSL_UseALPN(t->client, h2, 2, WOLFSSL_ALPN_FAILED_ON_MISMATCH);
	wolfSSL_UseALPN(t->server, h2, 2, WOLFSSL_ALPN_FAILED_ON_MISMATCH);

	bool cdone = false, sdone = false;
	for (int round = 0; round < 50 && !(cdone && sdone); round++) {
		if (!cdone) {
			int r = wolfSSL_connect(t->client);
			if (r == WOLFSSL_SUCCESS) {
				cdone = true;
			} else {
				int e = wolfSSL_get_error(t->client, r);
				if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) {
					t->client_err = e;
					cdone = true;
				}
			}
		}
		if (!sdone) {
			int r = wolfSSL_accept(t->server);
			if (r == WOLFSSL_SUCCESS) {
				sdone = true;
			} else {
				int e = wolfSSL_get_error(t->server, r);
				if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) {
					t->server_err = e;
					sdone = true;
				}
			}
		}
	}
	return cdone && sdone && !t->client_err && !t->server_err;
}

static inline void pki_tls_free(struct pki_tls *t)
{
	wolfSSL_free(t->client);
	wolfSSL_free(t->server);
	t->client = t->server = NULL;
}

#endif
