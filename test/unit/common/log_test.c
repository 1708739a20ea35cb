/* Unit tests for common/log.c: level directives and both line formats. */
#include "common/log.h"

#include <errno.h>
#include <unistd.h>

#include "check.h"

static char out[8192];

static const char *capture(void (*fn)(void))
{
	int p[2];
	if (pipe(p))
		return "";
	zt_log_set_fd(p[1]);
	fn();
	close(p[1]);
	ssize_t n = read(p[0], out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = 0;
	close(p[0]);
	return out;
}

static void emit_access(void)
{
	struct zt_log_field f[] = {
		ZT_LF_R("src.addr", "10.0.0.1:3456"),
		ZT_LF_S("src.workload", "sleep \"x\""),
		ZT_LF_U("bytes_sent", 42),
	};
	zt_log_fields(ZT_LOG_INFO, "access", "connection complete", f, 3);
}

int main(void)
{
	CHECK(zt_log_configure("info", false) == 0);
	CHECK(zt_log_enabled(ZT_LOG_INFO, "access"));
	CHECK(!zt_log_enabled(ZT_LOG_DEBUG, "access"));

	CHECK(zt_log_configure("warn,access=debug,xds=off", false) == 0);
	CHECK(zt_log_enabled(ZT_LOG_DEBUG, "access"));
	CHECK(!zt_log_enabled(ZT_LOG_INFO, "proxy"));
	CHECK(zt_log_enabled(ZT_LOG_WARN, "proxy"));
	CHECK(!zt_log_enabled(ZT_LOG_ERROR, "xds"));
	CHECK(!zt_log_enabled(ZT_LOG_ERROR, "xds::client")); /* module path */
	CHECK(zt_log_enabled(ZT_LOG_WARN, "xdsfoo"));        /* not a prefix match */

	CHECK(zt_log_configure("loud", false) == -EINVAL);
	CHECK(zt_log_configure("access=loud", false) == -EINVAL);
	CHECK(zt_log_enabled(ZT_LOG_DEBUG, "access")); /* old setting kept */

	CHECK(zt_log_configure("info", false) == 0);
	const char *l = capture(emit_access);
	/* 2026-01-01T00:00:00.000000Z\tinfo\taccess\tconnection complete\t... */
	CHECK(strlen(l) > 28 && l[4] == '-' && l[10] == 'T' && l[26] == 'Z' && l[27] == '\t');
	CHECK(strstr(l, "\tinfo\taccess\tconnection complete\tsrc.addr=10.0.0.1:3456 "
		      "src.workload=\"sleep \\\"x\\\"\" bytes_sent=42\n") != NULL);

	CHECK(zt_log_configure("info", true) == 0);
	l = capture(emit_access);
	CHECK(strncmp(l, "{\"level\":\"info\",\"time\":\"", 24) == 0);
	CHECK(strstr(l, "\"scope\":\"access\",\"message\":\"connection complete\","
		      "\"src.addr\":\"10.0.0.1:3456\",\"src.workload\":\"sleep \\\"x\\\"\","
		      "\"bytes_sent\":42}\n") != NULL);
	TEST_DONE();
}
