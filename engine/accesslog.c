#include "engine/accesslog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/shard-t.h"

void zt_access_log(const struct zt_conn *c)
{
	enum zt_log_level lvl = c->error ? ZT_LOG_ERROR : ZT_LOG_INFO;
	if (!zt_log_enabled(lvl, "access"))
		return;

	char src[ZT_ADDRSTRLEN], dst[ZT_ADDRSTRLEN], dur[32], err[160];
	struct zt_log_field f[14];
	size_t n = 0;

	f[n++] = ZT_LF_R("src.addr", zt_sockaddr_str(&c->src, src, sizeof(src)));
	if (c->src_workload[0])
		f[n++] = ZT_LF_S("src.workload", c->src_workload);
	if (c->src_namespace[0])
		f[n++] = ZT_LF_S("src.namespace", c->src_namespace);
	f[n++] = ZT_LF_R("dst.addr", zt_sockaddr_str(&c->dst, dst, sizeof(dst)));
	if (c->dst_service[0])
		f[n++] = ZT_LF_S("dst.service", c->dst_service);
	if (c->dst_workload[0])
		f[n++] = ZT_LF_S("dst.workload", c->dst_workload);
	if (c->dst_namespace[0])
		f[n++] = ZT_LF_S("dst.namespace", c->dst_namespace);
	f[n++] = ZT_LF_S("direction", c->kind == ZT_LISTEN_OUTBOUND ? "outbound" : "inbound");
	/* As ztunnel: outbound bytes_sent is what went to the destination;
	 * inbound bytes_sent is what went back to the source. */
	bool out = c->kind == ZT_LISTEN_OUTBOUND;
	f[n++] = ZT_LF_U("bytes_sent", out ? c->d[0].bytes : c->d[1].bytes);
	f[n++] = ZT_LF_U("bytes_recv", out ? c->d[1].bytes : c->d[0].bytes);
	snprintf(dur, sizeof(dur), "%llums",
		 (unsigned long long)((zt_now_ns() - c->start_ns) / 1000000ULL));
	f[n++] = ZT_LF_S("duration", dur);
	if (c->error) {
		if (c->error == -EACCES) /* policy: the reason says it all */
			snprintf(err, sizeof(err), "%s", c->error_what);
		else
			snprintf(err, sizeof(err), "%s: %s", c->error_what ? c->error_what : "error",
				 strerror(-c->error));
		f[n++] = ZT_LF_S("error", err);
	}
	zt_log_fields(lvl, "access", "connection complete", f, n);
}
