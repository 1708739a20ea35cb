/* check.h - tiny assertion helpers for unit tests: print and fail, never abort
 * silently. Exit code 77 means "skipped" (meson's convention). */
#ifndef ZT_TEST_CHECK_H
#define ZT_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int zt_test_failures;

#define CHECK(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,   \
				__LINE__, #cond);                                \
			zt_test_failures++;                                      \
		}                                                                \
	} while (0)

#define CHECK_STR(a, b)                                                          \
	do {                                                                     \
		const char *a_ = (a), *b_ = (b);                                 \
		if (!a_ || !b_ || strcmp(a_, b_)) {                              \
			fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", \
				__FILE__, __LINE__, a_ ? a_ : "(null)",          \
				b_ ? b_ : "(null)");                             \
			zt_test_failures++;                                      \
		}                                                                \
	} while (0)

#define TEST_DONE()                                                              \
	do {                                                                     \
		if (zt_test_failures) {                                          \
			fprintf(stderr, "%d check(s) failed\n", zt_test_failures); \
			return 1;                                                \
		}                                                                \
		printf("ok\n");                                                  \
		return 0;                                                        \
	} while (0)

#endif
