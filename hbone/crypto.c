/* crypto.c - wolfSSL start-up; which AES-GCM path is active and how fast it is. */
#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "hbone/crypto.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#ifdef ZT_WOLFSSL_PINNED
#define ZT_WOLFSSL_ORIGIN "pinned build"
#else
#define ZT_WOLFSSL_ORIGIN "system"
#endif

#define BENCH_BUF (256 * 1024)
#define BENCH_NS (20 * 1000000ULL)

/* The same CPUID bits wolfSSL's cpuid.c tests to pick its AES-GCM code. */
struct cpu_flags {
	bool aesni, avx1, avx2;
};

static struct cpu_flags cpu_flags(void)
{
	struct cpu_flags f = {0};
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;
	if (__get_cpuid(1, &a, &b, &c, &d)) {
		f.aesni = c & (1u << 25);
		f.avx1 = c & (1u << 28);
	}
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d))
		f.avx2 = b & (1u << 5);
#endif
	return f;
}

/* Name the AES-GCM implementation wolfSSL will use, from its build macros and the
 * CPU, the way wolfcrypt/src/aes.c chooses at run time. */
static const char *gcm_path(struct cpu_flags f)
{
#ifdef WOLFSSL_AESNI
	if (!f.aesni)
		return "C fallback (CPU has no AES-NI)";
#ifdef USE_INTEL_SPEEDUP /* aes.c then builds its AVX1 and AVX2 variants */
	if (f.avx2)
		return "AES-NI+AVX2 asm";
	if (f.avx1)
		return "AES-NI+AVX asm";
#endif
	return "AES-NI asm";
#else
	(void)f;
	return "C fallback (built without AES-NI)";
#endif
}

/* AES-128-GCM encrypt 256 KiB buffers for ~20 ms; bytes per ns = GB/s.
 * Returns <0 on a wolfCrypt error. */
static int measure_gbps(double *gbps)
{
	static const byte key[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	static const byte iv[12] = {0};
	byte tag[16];
	Aes aes;
	uint64_t bytes = 0, start, elapsed;
	int ret = -ENOMEM;

	byte *in = calloc(1, BENCH_BUF), *out = malloc(BENCH_BUF);
	if (!in || !out)
		goto out;
	ret = -EIO;
	if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0)
		goto out;
	if (wc_AesGcmSetKey(&aes, key, sizeof key) != 0)
		goto free_aes;

	start = zt_now_ns();
	do {
		if (wc_AesGcmEncrypt(&aes, out, in, BENCH_BUF, iv, sizeof iv, tag,
				     sizeof tag, NULL, 0) != 0)
			goto free_aes;
		bytes += BENCH_BUF;
		elapsed = zt_now_ns() - start;
	} while (elapsed < BENCH_NS);
	*gbps = (double)bytes / (double)elapsed;
	ret = 0;
free_aes:
	wc_AesFree(&aes);
out:
	free(in);
	free(out);
	return ret;
}

int zt_crypto_init(char *desc, size_t len)
{
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		return -EIO;

	double gbps = 0;
	int ret = measure_gbps(&gbps);
	if (ret < 0) {
		wolfSSL_Cleanup();
		return ret;
	}

#ifdef WOLFSSL_AESNI
	const char *hint = "";
#else
	const char *hint = " - run scripts/setup.sh for the AES-NI build";
#endif
	if (desc && len)
		snprintf(desc, len, "wolfSSL %s (%s), AES-GCM: %s, %.*f GB/s measured%s",
			 wolfSSL_lib_version(), ZT_WOLFSSL_ORIGIN, gcm_path(cpu_flags()),
			 gbps < 1 ? 2 : 1, gbps, hint);
	return 0;
}

void zt_crypto_cleanup(void)
{
	wolfSSL_Cleanup();
}
