#include "engine/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xds/snapshot.h"

#define CHUNK 1024
#define N_CHUNKS (ZT_METRICS_MAX_SERIES / CHUNK)

struct zt_metrics_shard {
	/* shard-private lookup table, open addressing */
	struct zt_metric_series **slots;
	uint32_t cap, n;
	/* append-only list the control thread reads: chunk pointers are written
	 * before `published` is raised past them (release) */
	struct zt_metric_series **_Atomic chunks[N_CHUNKS];
	_Atomic uint32_t published;
	struct zt_metric_series *overflow;
};

static uint64_t hash_str(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

struct zt_metrics_shard *zt_metrics_shard_new(void)
{
	struct zt_metrics_shard *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cap = 256;
	m->slots = calloc(m->cap, sizeof(*m->slots));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	return m;
}

void zt_metrics_shard_free(struct zt_metrics_shard *m)
{
	if (!m)
		return;
	uint32_t n = atomic_load_explicit(&m->published, memory_order_relaxed);
	for (uint32_t i = 0; i < n; i++)
		free(m->chunks[i / CHUNK][i % CHUNK]);
	for (int i = 0; i < N_CHUNKS; i++)
		free(m->chunks[i]);
	free(m->overflow);
	free(m->slots);
	free(m);
}

static struct zt_metric_series *series_new(const char *labels, size_t len, uint64_t h)
{
	struct zt_metric_series *e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->hash = h;
	e->len = (uint32_t)len;
	memcpy(e->labels, labels, len);
	return e;
}

static int grow(struct zt_metrics_shard *m)
{
	uint32_t cap = m->cap * 2;
	struct zt_metric_series **s = calloc(cap, sizeof(*s));
	if (!s)
		return -1;
	for (uint32_t i = 0; i < m->cap; i++) {
		struct zt_metric_series *e = m->slots[i];
		if (!e)
			continue;
		uint32_t j = (uint32_t)e->hash & (cap - 1);
		while (s[j])
			j = (j + 1) & (cap - 1);
		s[j] = e;
	}
	free(m->slots);
	m->slots = s;
	m->cap = cap;
	return 0;
}

static struct zt_metric_series *overflow_series(struct zt_metrics_shard *m)
{
	if (!m->overflow) {
		static const char l[] = "reporter=\"unknown\",overflow=\"true\"";
		m->overflow = series_new(l, sizeof(l) - 1, 0);
	}
	return m->overflow;
}

struct zt_metric_series *zt_metrics_series(struct zt_metrics_shard *m, const char *labels, size_t len)
{
	uint64_t h = hash_str(labels, len);
	uint32_t i = (uint32_t)h & (m->cap - 1);
	for (struct zt_metric_series *e; (e = m->slots[i]); i = (i + 1) & (m->cap - 1))
		if (e->hash == h && e->len == len && !memcmp(e->labels, labels, len))
			return e;
	if (m->n >= ZT_METRICS_MAX_SERIES)
		return overflow_series(m);
	if ((m->n + 1) * 4 > m->cap * 3) {
		if (grow(m))
			return NULL;
		return zt_metrics_series(m, labels, len);
	}
	uint32_t k = m->n;
	if (!m->chunks[k / CHUNK]) {
		struct zt_metric_series **c = calloc(CHUNK, sizeof(*c));
		if (!c)
			return NULL;
		atomic_store_explicit(&m->chunks[k / CHUNK], c, memory_order_relaxed);
	}
	struct zt_metric_series *e = series_new(labels, len, h);
	if (!e)
		return NULL;
	m->slots[i] = e;
	m->chunks[k / CHUNK][k % CHUNK] = e;
	m->n++;
	/* release: the entry and its chunk are complete before readers see it */
	atomic_store_explicit(&m->published, m->n, memory_order_release);
	return e;
}

int zt_metrics_label(char *b, size_t cap, size_t off, const char *name, const char *v, bool last)
{
	if (!v || !*v)
		v = "unknown";
	size_t o = off;
	int w = snprintf(b + o, cap - o, "%s=\"", name);
	if (w < 0 || (size_t)w >= cap - o)
		return -1;
	o += (size_t)w;
	for (; *v; v++) {
		const char *esc = *v == '"' ? "\\\"" : *v == '\\' ? "\\\\" : *v == '\n' ? "\\n" : NULL;
		size_t need = esc ? 2 : 1;
		if (o + need + 3 >= cap)
			return -1;
		if (esc) {
			memcpy(b + o, esc, 2);
		} else {
			b[o] = *v;
		}
		o += need;
	}
	b[o++] = '"';
	if (!last)
		b[o++] = ',';
	b[o] = 0;
	return (int)o;
}

/* Control thread, per scrape: sum series with equal labels across shards. */
struct sum {
	const struct zt_metric_series *first;
	uint64_t v[4];
};

struct buf {
	char *p;
	size_t n, cap;
	bool oom;
};

static void bput(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 8192) + n;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void bputs(struct buf *b, const char *s)
{
	bput(b, s, strlen(s));
}

char *zt_metrics_render(struct zt_metrics_shard *const *shards, unsigned n, const char *extra)
{
	size_t total = 0;
	for (unsigned i = 0; i < n; i++)
		if (shards[i])
			total += atomic_load_explicit(&shards[i]->published, memory_order_acquire) +
				 (shards[i]->overflow ? 1 : 0);
	size_t cap = 16;
	while (cap < total * 2)
		cap *= 2;
	struct sum *t = calloc(cap, sizeof(*t));
	if (!t)
		return NULL;
	size_t used = 0;
	struct sum **order = calloc(total ? total : 1, sizeof(*order));
	if (!order) {
		free(t);
		return NULL;
	}
	for (unsigned s = 0; s < n; s++) {
		struct zt_metrics_shard *m = shards[s];
		if (!m)
			continue;
		/* acquire pairs with the shard's release in zt_metrics_series */
		uint32_t pub = atomic_load_explicit(&m->published, memory_order_acquire);
		for (uint32_t k = 0; k <= pub; k++) {
			const struct zt_metric_series *e;
			if (k < pub)
				e = m->chunks[k / CHUNK][k % CHUNK];
			else if (!(e = m->overflow))
				break;
			size_t j = e->hash & (cap - 1);
			while (t[j].first && !(t[j].first->len == e->len &&
					       !memcmp(t[j].first->labels, e->labels, e->len)))
				j = (j + 1) & (cap - 1);
			if (!t[j].first) {
				t[j].first = e;
				order[used++] = &t[j];
			}
			t[j].v[0] += atomic_load_explicit(&e->opened, memory_order_relaxed);
			t[j].v[1] += atomic_load_explicit(&e->closed, memory_order_relaxed);
			t[j].v[2] += atomic_load_explicit(&e->received, memory_order_relaxed);
			t[j].v[3] += atomic_load_explicit(&e->sent, memory_order_relaxed);
		}
	}
	static const struct {
		const char *name, *help;
	} fam[4] = {
		{"istio_tcp_connections_opened", "The total number of TCP connections opened."},
		{"istio_tcp_connections_closed", "The total number of TCP connections closed."},
		{"istio_tcp_received_bytes",
		 "The size of total bytes received during request in case of a TCP connection."},
		{"istio_tcp_sent_bytes",
		 "The size of total bytes sent during response in case of a TCP connection."},
	};
	struct buf b = {0};
	char line[64];
	for (int f = 0; f < 4; f++) {
		bputs(&b, "# HELP ");
		bputs(&b, fam[f].name);
		bputs(&b, " ");
		bputs(&b, fam[f].help);
		bputs(&b, "\n# TYPE ");
		bputs(&b, fam[f].name);
		bputs(&b, " counter\n");
		for (size_t i = 0; i < used; i++) {
			/* a series only counted on close (a response flag) has no
			 * "opened" sample, like ztunnel's families */
			if (order[i]->v[f] == 0 && f != 1)
				continue;
			if (f == 1 && order[i]->v[1] == 0)
				continue;
			bputs(&b, fam[f].name);
			bputs(&b, "_total{");
			bput(&b, order[i]->first->labels, order[i]->first->len);
			snprintf(line, sizeof(line), "} %llu\n", (unsigned long long)order[i]->v[f]);
			bputs(&b, line);
		}
	}
	if (extra)
		bputs(&b, extra);
	bputs(&b, "# EOF\n");
	free(order);
	free(t);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

struct zt_metric_series *zt_metrics_open(struct zt_metrics_shard *m, bool inbound,
					 const struct zt_workload *src,
					 const struct zt_workload *dst,
					 const struct zt_service *svc, const char *src_principal,
					 bool mtls)
{
	char b[2048], principal[512];
	int o = 0;
#define L(name, v) \
	if (o >= 0)  \
		o = zt_metrics_label(b, sizeof(b), (size_t)o, name, v, false)
	L("reporter", inbound ? "destination" : "source");
	L("source_workload", src ? src->workload_name : NULL);
	L("source_canonical_service", src ? src->canonical_name : NULL);
	L("source_canonical_revision", src ? src->canonical_revision : NULL);
	L("source_workload_namespace", src ? src->namespace_ : NULL);
	L("source_principal", src_principal);
	L("source_app", src ? src->canonical_name : NULL);
	L("source_version", src ? src->canonical_revision : NULL);
	L("source_cluster", src ? src->cluster_id : NULL);
	L("destination_service", svc ? svc->hostname : NULL);
	L("destination_service_namespace", svc ? svc->namespace_ : NULL);
	L("destination_service_name", svc ? svc->name : NULL);
	L("destination_workload", dst ? dst->workload_name : NULL);
	L("destination_canonical_service", dst ? dst->canonical_name : NULL);
	L("destination_canonical_revision", dst ? dst->canonical_revision : NULL);
	L("destination_workload_namespace", dst ? dst->namespace_ : NULL);
	if (dst)
		snprintf(principal, sizeof(principal), "spiffe://%s/ns/%s/sa/%s", dst->trust_domain,
			 dst->namespace_, dst->service_account);
	L("destination_principal", dst ? principal : NULL);
	L("destination_app", dst ? dst->canonical_name : NULL);
	L("destination_version", dst ? dst->canonical_revision : NULL);
	L("destination_cluster", dst ? dst->cluster_id : NULL);
	L("request_protocol", "tcp");
	L("response_flags", "-");
	bool locality = src || dst;
	if (o >= 0)
		o = zt_metrics_label(b, sizeof(b), (size_t)o, "connection_security_policy",
				     mtls ? "mutual_tls" : "unknown", !locality);
	if (locality) {
		L("source_region", src ? src->locality.region : NULL);
		L("source_zone", src ? src->locality.zone : NULL);
		L("destination_region", dst ? dst->locality.region : NULL);
		if (o >= 0)
			o = zt_metrics_label(b, sizeof(b), (size_t)o, "destination_zone",
					     dst ? dst->locality.zone : NULL, true);
	}
#undef L
	if (o < 0)
		return NULL; /* absurdly long names: not counted rather than truncated */
	struct zt_metric_series *e = zt_metrics_series(m, b, (size_t)o);
	if (e)
		atomic_fetch_add_explicit(&e->opened, 1, memory_order_relaxed);
	return e;
}

void zt_metrics_close(struct zt_metrics_shard *m, struct zt_metric_series *e, const char *flag)
{
	if (!e)
		return;
	if (strcmp(flag, "-") != 0) {
		/* same labels with response_flags="<flag>" */
		static const char key[] = "response_flags=\"-\"";
		char b[2048];
		const char *at = strstr(e->labels, key);
		size_t pre = at ? (size_t)(at - e->labels) : 0;
		int n = at ? snprintf(b, sizeof(b), "%.*sresponse_flags=\"%s\"%s", (int)pre, e->labels,
				      flag, at + sizeof(key) - 1)
			   : -1;
		if (n > 0 && (size_t)n < sizeof(b)) {
			struct zt_metric_series *f = zt_metrics_series(m, b, (size_t)n);
			if (f)
				e = f;
		}
	}
	atomic_fetch_add_explicit(&e->closed, 1, memory_order_relaxed);
}

