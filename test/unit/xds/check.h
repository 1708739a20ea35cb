/* check.h - minimal checks for the xds unit tests: a failed check prints
 * where and what, and the test exits 1 at the end. */
#ifndef ZT_TEST_CHECK_H
#define ZT_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
				__LINE__, #cond);                                     \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

#define CHECK_INT(a, b)                                                               \
	do {                                                                          \
		long long a_ = (long long)(a), b_ = (long long)(b);                   \
		if (a_ != b_) {                                                       \
			fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n",  \
				__FILE__, __LINE__, #a, a_, #b, b_);                  \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

#define CHECK_STR(a, b)                                                               \
	do {                                                                          \
		const char *a_ = (a), *b_ = (b);                                      \
		if (!a_ || !b_ || strcmp(a_, b_)) {                                   \
			fprintf(stderr, "%s:%d: %s is\n  \"%s\"\nexpected\n  \"%s\"\n", \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)",           \
				b_ ? b_ : "(null)");                                  \
			check_failures++;                                             \
		}                                                                     \
	} while (0)

static inline int check_done(const char *name)
{
	if (check_failures)
		fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
	else
		printf("%s: ok\n", name);
	return check_failures ? 1 : 0;
}

#endif
