/* check.h - tiny assertions for the authz unit tests: a failed check prints
 * file, line and the expression (with a case label when one is set), counts,
 * and check_done() turns the count into the exit status. */
#ifndef ZT_AUTHZ_TEST_CHECK_H
#define ZT_AUTHZ_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures, check_count;
static const char *check_label = ""; /* the table row being run */

#define CHECK(cond)                                                                 \
	do {                                                                        \
		check_count++;                                                      \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__, \
				__LINE__, check_label, #cond);                      \
			check_failures++;                                           \
		}                                                                   \
	} while (0)

#define CHECK_INT(a, b)                                                             \
	do {                                                                        \
		long long a_ = (long long)(a), b_ = (long long)(b);                 \
		check_count++;                                                      \
		if (a_ != b_) {                                                     \
			fprintf(stderr, "%s:%d: [%s] %s == %lld, expected %lld\n",  \
				__FILE__, __LINE__, check_label, #a, a_, b_);       \
			check_failures++;                                           \
		}                                                                   \
	} while (0)

#define CHECK_STR(a, b)                                                             \
	do {                                                                        \
		const char *a_ = (a), *b_ = (b);                                    \
		check_count++;                                                      \
		if (!a_ || !b_ || strcmp(a_, b_)) {                                 \
			fprintf(stderr, "%s:%d: [%s] %s is \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, check_label, #a,                \
				a_ ? a_ : "(null)", b_ ? b_ : "(null)");            \
			check_failures++;                                           \
		}                                                                   \
	} while (0)

static inline int check_done(const char *name)
{
	if (check_failures)
		fprintf(stderr, "%s: %d of %d check(s) failed\n", name, check_failures,
			check_count);
	else
		printf("%s: ok (%d checks)\n", name, check_count);
	return check_failures ? 1 : 0;
}

#endif
