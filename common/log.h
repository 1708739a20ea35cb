/* log.h - ztunnel-style logs: text or JSON, levels per target (RUST_LOG syntax).
 * Any thread. zt_log_configure() is called once at start before threads run
 * (and again from the control thread for POST /logging; the level table is
 * read with relaxed atomics, a stale level for one line is harmless).
 *
 * Text:  <RFC3339 µs Z>\t<level>\t<target>\t<message>\t<k=v ...>
 * JSON:  {"level":..,"time":..,"scope":..,"message":..,<k>:<v>...}
 */
#ifndef ZT_LOG_H
#define ZT_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum zt_log_level {
	ZT_LOG_OFF = 0,
	ZT_LOG_ERROR,
	ZT_LOG_WARN,
	ZT_LOG_INFO,
	ZT_LOG_DEBUG,
	ZT_LOG_TRACE,
};

enum zt_log_kind { ZT_LF_STR, ZT_LF_RAW, ZT_LF_U64, ZT_LF_I64 };

/* One k=v field. STR values are quoted in text form; RAW (addresses) are not. */
struct zt_log_field {
	const char *key;
	enum zt_log_kind kind;
	union {
		const char *s;
		uint64_t u;
		int64_t i;
	};
};

#define ZT_LF_S(k, v) ((struct zt_log_field){.key = (k), .kind = ZT_LF_STR, .s = (v)})
#define ZT_LF_R(k, v) ((struct zt_log_field){.key = (k), .kind = ZT_LF_RAW, .s = (v)})
#define ZT_LF_U(k, v) ((struct zt_log_field){.key = (k), .kind = ZT_LF_U64, .u = (v)})

/* Parse a RUST_LOG-like spec: "info", "debug,access=warn", "xds=trace".
 * Returns 0, or -EINVAL (and the old setting stays) on a bad spec. */
int zt_log_configure(const char *spec, bool json);
/* Set the output fd (default 2). Tests use it. */
void zt_log_set_fd(int fd);
bool zt_log_enabled(enum zt_log_level lvl, const char *target);
enum zt_log_level zt_log_level_parse(const char *s);
const char *zt_log_level_name(enum zt_log_level lvl);
/* Current spec text, for the admin endpoint. */
const char *zt_log_spec(void);

void zt_log_fields(enum zt_log_level lvl, const char *target, const char *msg,
		   const struct zt_log_field *f, size_t n);
void zt_logf(enum zt_log_level lvl, const char *target, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define ZT_LOG(lvl, target, ...)                                      \
	do {                                                          \
		if (zt_log_enabled((lvl), (target)))                  \
			zt_logf((lvl), (target), __VA_ARGS__);        \
	} while (0)
#define ZT_ERROR(t, ...) ZT_LOG(ZT_LOG_ERROR, t, __VA_ARGS__)
#define ZT_WARN(t, ...) ZT_LOG(ZT_LOG_WARN, t, __VA_ARGS__)
#define ZT_INFO(t, ...) ZT_LOG(ZT_LOG_INFO, t, __VA_ARGS__)
#define ZT_DEBUG(t, ...) ZT_LOG(ZT_LOG_DEBUG, t, __VA_ARGS__)

#endif
