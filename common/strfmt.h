/* strfmt.h - bounded formatting into caller buffers (any thread). */
#ifndef ZT_COMMON_STRFMT_H
#define ZT_COMMON_STRFMT_H

#include <stddef.h>

/* printf into err[errlen] (nothing when err is NULL or errlen 0): the
 * "err, errlen" out-parameters of functions that explain a failure. */
void zt_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* printf at buf + *off, never past buf[cap - 1] (NUL-terminated); *off
 * advances by what was written and stops at cap - 1 once the buffer is full. */
void zt_appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
