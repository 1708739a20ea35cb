#include "common/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_DIRECTIVES 16
#define LINE_MAX_LEN 4096

struct directive {
	char target[48];
	enum zt_log_level level;
};

/* Written only by zt_log_configure (start-up or control thread); read by any
 * thread. Readers may see a mix of old and new levels for a moment. */
static struct {
	struct directive d[MAX_DIRECTIVES];
	_Atomic int n;
	_Atomic int def;
	_Atomic bool json;
	_Atomic int fd;
	char spec[256];
} g = {.def = ZT_LOG_INFO, .fd = 2, .spec = "info"};

static const char *names[] = {"off", "error", "warn", "info", "debug", "trace"};

const char *zt_log_level_name(enum zt_log_level lvl)
{
	return (unsigned)lvl < 6 ? names[lvl] : "info";
}

enum zt_log_level zt_log_level_parse(const char *s)
{
	for (int i = 0; i < 6; i++)
		if (!strcasecmp(s, names[i]))
			return (enum zt_log_level)i;
	if (!strcasecmp(s, "warning"))
		return ZT_LOG_WARN;
	return (enum zt_log_level)-1;
}

int zt_log_configure(const char *spec, bool json)
{
	struct directive d[MAX_DIRECTIVES];
	int n = 0, def = ZT_LOG_INFO;
	char buf[256], *save = NULL;

	atomic_store_explicit(&g.json, json, memory_order_relaxed);
	if (!spec || !*spec)
		spec = "info";
	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		if (!*tok)
			continue;
		char *eq = strchr(tok, '=');
		if (!eq) {
			int l = zt_log_level_parse(tok);
			if (l < 0)
				return -EINVAL;
			def = l;
			continue;
		}
		*eq = 0;
		int l = zt_log_level_parse(eq + 1);
		if (l < 0 || n == MAX_DIRECTIVES || strlen(tok) >= sizeof(d[0].target) || !*tok)
			return -EINVAL;
		strcpy(d[n].target, tok);
		d[n].level = (enum zt_log_level)l;
		n++;
	}
	atomic_store_explicit(&g.n, 0, memory_order_release);
	memcpy(g.d, d, sizeof(d));
	snprintf(g.spec, sizeof(g.spec), "%s", spec);
	atomic_store_explicit(&g.def, def, memory_order_relaxed);
	/* release: directives are written before readers see the new count */
	atomic_store_explicit(&g.n, n, memory_order_release);
	return 0;
}

const char *zt_log_spec(void)
{
	return g.spec;
}

void zt_log_set_fd(int fd)
{
	atomic_store_explicit(&g.fd, fd, memory_order_relaxed);
}

bool zt_log_enabled(enum zt_log_level lvl, const char *target)
{
	/* acquire pairs with the release in zt_log_configure */
	int n = atomic_load_explicit(&g.n, memory_order_acquire);
	int best = -1;
	size_t best_len = 0;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(g.d[i].target);
		/* a directive "xds" covers targets "xds" and "xds::client" */
		if (!strncmp(target, g.d[i].target, l) &&
		    (target[l] == 0 || target[l] == ':') && l >= best_len) {
			best = (int)g.d[i].level;
			best_len = l;
		}
	}
	if (best < 0)
		best = atomic_load_explicit(&g.def, memory_order_relaxed);
	return (int)lvl <= best;
}

struct line {
	char b[LINE_MAX_LEN];
	size_t n;
};

static void put(struct line *l, const char *s, size_t len)
{
	size_t room = sizeof(l->b) - 2 - l->n; /* keep space for '\n' */
	if (len > room)
		len = room;
	memcpy(l->b + l->n, s, len);
	l->n += len;
}

static void puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void putf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct line *l, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(l->b) - 2 - l->n;
	va_start(ap, fmt);
	int w = vsnprintf(l->b + l->n, room + 1, fmt, ap);
	va_end(ap);
	if (w > 0)
		l->n += (size_t)w < room ? (size_t)w : room;
}

/* JSON string escape (also used for quoted text values). */
static void put_escaped(struct line *l, const char *s)
{
	put(l, "\"", 1);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(l, e, 2);
		} else if (c < 0x20) {
			putf(l, "\\u%04x", c);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
	put(l, "\"", 1);
}

static void put_time(struct line *l)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	putf(l, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
	     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

static void emit(struct line *l)
{
	l->b[l->n++] = '\n';
	int fd = atomic_load_explicit(&g.fd, memory_order_relaxed);
	/* one write per line so lines from shards do not interleave */
	ssize_t w = write(fd, l->b, l->n);
	(void)w;
}

void zt_log_fields(enum zt_log_level lvl, const char *target, const char *msg,
		   const struct zt_log_field *f, size_t n)
{
	struct line l = {.n = 0};
	bool json = atomic_load_explicit(&g.json, memory_order_relaxed);

	if (json) {
		puts_(&l, "{\"level\":");
		put_escaped(&l, zt_log_level_name(lvl));
		puts_(&l, ",\"time\":\"");
		put_time(&l);
		puts_(&l, "\",\"scope\":");
		put_escaped(&l, target);
		puts_(&l, ",\"message\":");
		put_escaped(&l, msg);
		for (size_t i = 0; i < n; i++) {
			puts_(&l, ",");
			put_escaped(&l, f[i].key);
			puts_(&l, ":");
			switch (f[i].kind) {
			case ZT_LF_STR:
			case ZT_LF_RAW: put_escaped(&l, f[i].s); break;
			case ZT_LF_U64: putf(&l, "%llu", (unsigned long long)f[i].u); break;
			case ZT_LF_I64: putf(&l, "%lld", (long long)f[i].i); break;
			}
		}
		puts_(&l, "}");
	} else {
		put_time(&l);
		putf(&l, "\t%s\t%s\t%s", zt_log_level_name(lvl), target, msg);
		for (size_t i = 0; i < n; i++) {
			puts_(&l, i ? " " : "\t");
			puts_(&l, f[i].key);
			puts_(&l, "=");
			switch (f[i].kind) {
			case ZT_LF_STR: put_escaped(&l, f[i].s); break;
			case ZT_LF_RAW: puts_(&l, f[i].s ? f[i].s : ""); break;
			case ZT_LF_U64: putf(&l, "%llu", (unsigned long long)f[i].u); break;
			case ZT_LF_I64: putf(&l, "%lld", (long long)f[i].i); break;
			}
		}
	}
	emit(&l);
}

void zt_logf(enum zt_log_level lvl, const char *target, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	zt_log_fields(lvl, target, msg, NULL, 0);
}
