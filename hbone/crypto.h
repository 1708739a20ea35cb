/* crypto.h - wolfSSL start-up and a report of the AES-GCM path in use.
 *
 * Any thread; call zt_crypto_init() once at start, before any other wolfSSL
 * call and before shards start, and zt_crypto_cleanup() once at exit after
 * they have stopped.
 */
#ifndef ZT_HBONE_CRYPTO_H
#define ZT_HBONE_CRYPTO_H

#include <stddef.h>

/* Initialise wolfSSL and write a one-line description of the AES-GCM path into
 * desc (NUL-terminated, truncated to len), for example
 *   "wolfSSL 5.5.4 (pinned build), AES-GCM: AES-NI+AVX2 asm, 2.9 GB/s measured"
 * The speed comes from a ~20 ms AES-128-GCM self-measurement.
 * Returns 0, or a negative errno (-EIO if wolfSSL fails, -ENOMEM). */
int zt_crypto_init(char *desc, size_t len);

void zt_crypto_cleanup(void);

#endif
