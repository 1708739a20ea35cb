/* crypto_test.c - zt_crypto_init() succeeds and names the AES-GCM path. */
#include <stdio.h>
#include <string.h>

#include "hbone/crypto.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static int failures;
#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, \
				__LINE__, #cond);                             \
			failures++;                                           \
		}                                                             \
	} while (0)

#ifdef ZT_WOLFSSL_PINNED
static int cpu_has_aesni(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 25));
#else
	return 0;
#endif
}
#endif

int main(void)
{
	char desc[256];

	memset(desc, 'x', sizeof desc);
	CHECK(zt_crypto_init(desc, sizeof desc) == 0);
	printf("%s\n", desc);
	CHECK(strncmp(desc, "wolfSSL ", 8) == 0);
	CHECK(strstr(desc, "AES-GCM: ") != NULL);
	CHECK(strstr(desc, " GB/s measured") != NULL);
#ifdef ZT_WOLFSSL_PINNED
	/* The pinned build has AES-NI; it is used whenever the CPU has it. */
	CHECK(strstr(desc, "(pinned build)") != NULL);
	if (cpu_has_aesni())
		CHECK(strstr(desc, "AES-GCM: AES-NI") != NULL);
	else
		CHECK(strstr(desc, "CPU has no AES-NI") != NULL);
#else
	CHECK(strstr(desc, "(system)") != NULL);
#endif
	zt_crypto_cleanup();

	/* A short buffer is truncated and still NUL-terminated; NULL is allowed. */
	char small[8];
	CHECK(zt_crypto_init(small, sizeof small) == 0);
	CHECK(strlen(small) == sizeof small - 1);
	zt_crypto_cleanup();
	CHECK(zt_crypto_init(NULL, 0) == 0);
	zt_crypto_cleanup();

	return failures ? 1 : 0;
}
