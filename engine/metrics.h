/* metrics.h - Istio's TCP metrics (istio_tcp_*), as ztunnel exports them.
 *
 * Each shard counts into its own table of label sets (no sharing, no locks):
 * the shard inserts and increments (relaxed atomics), the control thread
 * reads the published entries when Prometheus scrapes, and sums the shards.
 * Entries are never removed (a label set is a workload pair), and a shard
 * holds at most ZT_METRICS_MAX_SERIES of them; more fall into one series
 * whose labels are all "unknown".
 */
#ifndef ZT_METRICS_H
#define ZT_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ZT_METRICS_MAX_SERIES 65536

struct zt_metric_series {
	/* Written by the owning shard, read by the control thread. */
	_Atomic uint64_t opened, closed, received, sent;
	uint64_t hash;
	uint32_t len;
	char labels[]; /* the label set, Prometheus text: a="x",b="y" */
};

struct zt_metrics_shard;

/* Shard thread (new/free at start and exit). */
struct zt_metrics_shard *zt_metrics_shard_new(void);
void zt_metrics_shard_free(struct zt_metrics_shard *m);
/* Shard thread: the series for a label set, created on first use. NULL only
 * when out of memory. */
struct zt_metric_series *zt_metrics_series(struct zt_metrics_shard *m, const char *labels,
					   size_t len);

struct zt_workload;
struct zt_service;

/* Shard thread: the series of a new connection, ztunnel's label set
 * (src/proxy/metrics.rs CommonTrafficLabels): reporter "destination" for
 * inbound, source labels from `src` (principal only from an mTLS identity,
 * `src_principal`, NULL for plaintext), destination from `dst` and `svc`,
 * connection_security_policy mutual_tls when `mtls` (HBONE). Counts it as
 * opened. NULL when out of memory (the connection is then not counted). */
struct zt_metric_series *zt_metrics_open(struct zt_metrics_shard *m, bool inbound,
					 const struct zt_workload *src,
					 const struct zt_workload *dst,
					 const struct zt_service *svc, const char *src_principal,
					 bool mtls);
/* Shard thread: count a close under `flag` ("-", "DENY", "CONNECT"). */
void zt_metrics_close(struct zt_metrics_shard *m, struct zt_metric_series *e, const char *flag);

/* Control thread: render every shard's series, summed, as OpenMetrics text.
 * `extra` is appended before "# EOF" (gauges from the caller). Returns a
 * malloc'ed string (caller frees) or NULL. */
char *zt_metrics_render(struct zt_metrics_shard *const *shards, unsigned n, const char *extra);

/* Any thread: append `v` to `b` as a label value, escaped; "unknown" when
 * empty or NULL. Returns the new length or -1 when `cap` is too small. */
int zt_metrics_label(char *b, size_t cap, size_t off, const char *name, const char *v, bool last);

#endif
