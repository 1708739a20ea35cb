/* Unit tests for engine/metrics.c: label escaping, per-shard series, sums
 * across shards, the OpenMetrics text and the series cap. */
#include "engine/metrics.h"

#include <stdlib.h>

#include "test/unit/common/check.h"

int main(void)
{
	char b[256];
	int o = zt_metrics_label(b, sizeof(b), 0, "a", "x\"y\\z\nw", false);
	o = zt_metrics_label(b, sizeof(b), (size_t)o, "b", "", true);
	CHECK(o > 0);
	CHECK_STR(b, "a=\"x\\\"y\\\\z\\nw\",b=\"unknown\"");
	CHECK(zt_metrics_label(b, 8, 0, "long", "value", true) == -1);

	struct zt_metrics_shard *m[2] = {zt_metrics_shard_new(), zt_metrics_shard_new()};
	const char *l1 = "reporter=\"source\",x=\"1\"", *l2 = "reporter=\"source\",x=\"2\"";
	struct zt_metric_series *a = zt_metrics_series(m[0], l1, strlen(l1));
	CHECK(a == zt_metrics_series(m[0], l1, strlen(l1))); /* found again */
	struct zt_metric_series *a2 = zt_metrics_series(m[1], l1, strlen(l1));
	struct zt_metric_series *c = zt_metrics_series(m[1], l2, strlen(l2));
	atomic_fetch_add(&a->opened, 2);
	atomic_fetch_add(&a2->opened, 3);
	atomic_fetch_add(&a->received, 100);
	atomic_fetch_add(&c->closed, 1);
	char *t = zt_metrics_render(m, 2, "# extra\n");
	CHECK(t && strstr(t, "# TYPE istio_tcp_connections_opened counter\n"));
	CHECK(t && strstr(t, "istio_tcp_connections_opened_total{reporter=\"source\",x=\"1\"} 5\n"));
	CHECK(t && strstr(t, "istio_tcp_received_bytes_total{reporter=\"source\",x=\"1\"} 100\n"));
	CHECK(t && strstr(t, "istio_tcp_connections_closed_total{reporter=\"source\",x=\"2\"} 1\n"));
	CHECK(t && !strstr(t, "istio_tcp_connections_opened_total{reporter=\"source\",x=\"2\"}"));
	size_t tl = t ? strlen(t) : 0;
	CHECK(tl > 14 && !strcmp(t + tl - 14, "# extra\n# EOF\n"));
	free(t);

	/* many series: the table grows; past the cap they share one series */
	char l[64];
	for (int i = 0; i < ZT_METRICS_MAX_SERIES + 10; i++) {
		int n = snprintf(l, sizeof(l), "reporter=\"source\",i=\"%d\"", i);
		struct zt_metric_series *e = zt_metrics_series(m[0], l, (size_t)n);
		CHECK(e != NULL);
		if (e)
			atomic_fetch_add(&e->opened, 1);
		if (!e)
			break;
	}
	t = zt_metrics_render(m, 2, NULL);
	CHECK(t && strstr(t, "overflow=\"true\"} 11\n")); /* 10 over the cap + 1 (l1 took a slot) */
	free(t);
	zt_metrics_shard_free(m[0]);
	zt_metrics_shard_free(m[1]);
	TEST_DONE();
}
