/* xdsclient.c - Delta ADS client for istiod (see xdsclient.h). */
#include "engine/xdsclient.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "common/clock.h"
#include "common/log.h"
#include "discovery.pb.h"
#include "engine/grpc.h"
#include "xds/arena.h"
#include "xds/cfgtree.h"
#include "xds/snapshot.h"
#include "xds/xdsconv.h"

#define TARGET "xds"
#define ADS_PATH "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
#define BACKOFF_MIN_MS 10u
#define BACKOFF_MAX_MS 15000u
#define NACK_MAX 4096 /* bytes of error_detail.message */
#define MAX_DROPS 64u /* resources left out of one rebuild before it is given up */
/* A rebuild decodes every resource into a scratch arena and frees it; the
 * heap keeps that peak (about half of zring's RSS with 50k workloads). Once
 * updates have been quiet this long, hand the free memory back to the system.
 * Not sooner: the next update faults it all in again, which made updates at
 * 50k workloads 2.7x slower when trimmed after a quiet second
 * (bench/xds_scale.py). */
#define TRIM_QUIET_MS 30000

enum { T_ADDRESS = 0, T_AUTHZ = 1, N_TYPES };
static const char *const type_url[N_TYPES] = {ZT_XDS_TYPE_ADDRESS, ZT_XDS_TYPE_AUTHORIZATION};

/* One resource held: its serialized bytes, re-decoded at each rebuild. */
struct res {
	struct res *next, *prev; /* the type's list */
	struct res *hnext;       /* hash chain */
	char *name, *version;
	uint8_t *data;
	size_t len;
};

/* Resources in arrival order (a replaced one keeps its place), so that when
 * two conflict (a duplicate uid or VIP) the one that came later is the one
 * left out: an established service is not displaced by a newcomer. */
struct rtable {
	struct res *head, *tail;
	struct res **buckets;
	size_t nbuckets, n;
};

struct zt_xds {
	struct zt_xds_opts o; /* its strings are the caller's (they outlive x) */
	zt_xds_publish_fn publish;
	void *ud;

	struct zt_grpc *ch;
	struct zt_grpc_stream *st;
	uint64_t retry_at_ms; /* 0: connect at the next io */
	uint32_t backoff_ms;
	bool got[N_TYPES];
	struct rtable t[N_TYPES];
	uint64_t trim_at_ms; /* 0: nothing to trim */
};

/* ---- resource table ---- */

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static struct res *rt_find(struct rtable *t, const char *name)
{
	if (!t->nbuckets)
		return NULL;
	for (struct res *r = t->buckets[hash_str(name) & (t->nbuckets - 1)]; r; r = r->hnext)
		if (!strcmp(r->name, name))
			return r;
	return NULL;
}

static int rt_grow(struct rtable *t)
{
	size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
	struct res **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (struct res *r = t->head; r; r = r->next) {
		size_t i = hash_str(r->name) & (nb - 1);
		r->hnext = b[i];
		b[i] = r;
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

static void res_free(struct res *r)
{
	free(r->name);
	free(r->version);
	free(r->data);
	free(r);
}

static void rt_remove(struct rtable *t, struct res *r)
{
	struct res **pp = &t->buckets[hash_str(r->name) & (t->nbuckets - 1)];
	while (*pp != r)
		pp = &(*pp)->hnext;
	*pp = r->hnext;
	if (r->prev)
		r->prev->next = r->next;
	else
		t->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		t->tail = r->prev;
	t->n--;
	res_free(r);
}

/* Insert or replace `name`; copies everything. */
static int rt_put(struct rtable *t, const char *name, const char *version, const uint8_t *data,
		  size_t len)
{
	struct res *r = rt_find(t, name);
	char *v = strdup(version ? version : "");
	uint8_t *d = malloc(len ? len : 1);
	if (!v || !d) {
		free(v);
		free(d);
		return -ENOMEM;
	}
	if (len)
		memcpy(d, data, len);
	if (r) {
		free(r->version);
		free(r->data);
		r->version = v;
		r->data = d;
		r->len = len;
		return 0;
	}
	if ((t->n + 1) * 2 > t->nbuckets && rt_grow(t)) {
		free(v);
		free(d);
		return -ENOMEM;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->name = strdup(name))) {
		free(r);
		free(v);
		free(d);
		return -ENOMEM;
	}
	r->version = v;
	r->data = d;
	r->len = len;
	size_t i = hash_str(name) & (t->nbuckets - 1);
	r->hnext = t->buckets[i];
	t->buckets[i] = r;
	r->prev = t->tail;
	if (t->tail)
		t->tail->next = r;
	else
		t->head = r;
	t->tail = r;
	t->n++;
	return 0;
}

static void rt_clear(struct rtable *t)
{
	while (t->head) {
		struct res *r = t->head;
		t->head = r->next;
		res_free(r);
	}
	free(t->buckets);
	*t = (struct rtable){0};
}

/* ---- NACK text ---- */

struct errs {
	char buf[NACK_MAX];
	size_t len;
	unsigned n;
};

static void errs_add(struct errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void errs_add(struct errs *e, const char *fmt, ...)
{
	e->n++;
	if (e->len + 8 >= sizeof(e->buf))
		return;
	if (e->len) {
		e->buf[e->len++] = ';';
		e->buf[e->len++] = ' ';
	}
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(e->buf + e->len, sizeof(e->buf) - e->len, fmt, ap);
	va_end(ap);
	if (k > 0)
		e->len += (size_t)k < sizeof(e->buf) - e->len ? (size_t)k : sizeof(e->buf) - e->len - 1;
}

/* ---- snapshot rebuild ---- */

struct item {
	const struct zt_cnode *node;
	struct res *r;
};

/* Decode every resource held and build a snapshot; resources that do not
 * decode or do not fit are left out (and named in `e`). */
static int rebuild(struct zt_xds *x, struct zt_snapshot **out, struct errs *e,
		   uint64_t *decode_ns)
{
	uint64_t t0 = zt_now_ns();
	size_t cap = x->t[T_ADDRESS].n + x->t[T_AUTHZ].n + 1;
	struct item *wl = calloc(cap, sizeof(*wl)), *sv = calloc(cap, sizeof(*sv)),
		    *po = calloc(cap, sizeof(*po));
	const struct zt_cnode **nw = calloc(cap, sizeof(*nw)), **ns = calloc(cap, sizeof(*ns)),
			      **np = calloc(cap, sizeof(*np));
	struct zt_arena *a = zt_arena_new();
	int r = -ENOMEM;
	size_t n_wl = 0, n_sv = 0, n_po = 0;
	if (!wl || !sv || !po || !nw || !ns || !np || !a)
		goto out;
	for (int ty = 0; ty < N_TYPES; ty++) {
		for (struct res *rs = x->t[ty].head; rs; rs = rs->next) {
			struct zt_cnode *node = NULL;
			struct zt_config_error err = {{0}};
			enum zt_xds_kind kind = ZT_XDS_POLICY;
			int k = ty == T_ADDRESS
					? zt_xdsconv_address(a, rs->name, rs->data, rs->len, &kind, &node, &err)
					: zt_xdsconv_authorization(a, rs->name, rs->data, rs->len, &node, &err);
			if (k == -ENOMEM)
				goto out;
			if (k) {
				errs_add(e, "%s", err.msg);
				continue;
			}
			struct item it = {node, rs};
			if (kind == ZT_XDS_WORKLOAD)
				wl[n_wl++] = it;
			else if (kind == ZT_XDS_SERVICE)
				sv[n_sv++] = it;
			else
				po[n_po++] = it;
		}
	}
	*decode_ns = zt_now_ns() - t0;
	/* A resource that conflicts or fails validation is dropped and the build
	 * retried; each try is a whole build, so after MAX_DROPS of them the update
	 * is refused as a whole (the previous snapshot keeps serving). */
	r = -EINVAL;
	for (size_t tries = 0; tries <= n_wl + n_sv + n_po; tries++) {
		if (tries > MAX_DROPS) {
			errs_add(e, "more than %u resources left out: keeping the previous "
				    "configuration", MAX_DROPS);
			break;
		}
		for (size_t i = 0; i < n_wl; i++)
			nw[i] = wl[i].node;
		for (size_t i = 0; i < n_sv; i++)
			ns[i] = sv[i].node;
		for (size_t i = 0; i < n_po; i++)
			np[i] = po[i].node;
		struct zt_config_error err = {{0}};
		struct zt_config_where where = {0};
		r = zt_config_build_lists(nw, n_wl, ns, n_sv, np, n_po, "xds", out, &err, &where);
		if (r != -EINVAL)
			goto out;
		struct item *arr = where.section == ZT_CFG_AT_WORKLOADS ? wl
				   : where.section == ZT_CFG_AT_SERVICES ? sv
				   : where.section == ZT_CFG_AT_POLICIES ? po : NULL;
		size_t *n = where.section == ZT_CFG_AT_WORKLOADS ? &n_wl
			    : where.section == ZT_CFG_AT_SERVICES ? &n_sv : &n_po;
		if (!arr || where.index >= *n) {
			errs_add(e, "%s", err.msg);
			goto out; /* not about one resource: nothing to drop */
		}
		errs_add(e, "%s: %s", arr[where.index].r->name, err.msg);
		memmove(&arr[where.index], &arr[where.index + 1],
			(*n - where.index - 1) * sizeof(*arr));
		(*n)--;
	}
out:
	zt_arena_destroy(a);
	free(wl);
	free(sv);
	free(po);
	free(nw);
	free(ns);
	free(np);
	return r;
}

/* ---- requests ---- */

static bool enc_out(pb_ostream_t *s, const pb_msgdesc_t *f, const void *m, uint8_t **buf,
		    size_t *len)
{
	size_t sz;
	if (!pb_get_encoded_size(&sz, f, m))
		return false;
	uint8_t *b = malloc(sz ? sz : 1);
	if (!b)
		return false;
	*s = pb_ostream_from_buffer(b, sz);
	if (!pb_encode(s, f, m)) {
		free(b);
		return false;
	}
	*buf = b;
	*len = s->bytes_written;
	return true;
}

/* The first request of a stream for type `ty`: node, type, and what is held. */
static int send_subscribe(struct zt_xds *x, int ty)
{
	size_t nmeta = x->o.n_meta;
	google_protobuf_Struct_FieldsEntry *fe = calloc(nmeta ? nmeta : 1, sizeof(*fe));
	google_protobuf_Value *vals = calloc(nmeta ? nmeta : 1, sizeof(*vals));
	size_t nirv = x->t[ty].n;
	envoy_service_discovery_v3_DeltaDiscoveryRequest_InitialResourceVersionsEntry *irv =
		calloc(nirv ? nirv : 1, sizeof(*irv));
	int r = -ENOMEM;
	if (!fe || !vals || !irv)
		goto out;
	for (size_t i = 0; i < nmeta; i++) {
		vals[i].which_kind = google_protobuf_Value_string_value_tag;
		vals[i].kind.string_value = (char *)x->o.meta[i].value;
		fe[i].key = (char *)x->o.meta[i].key;
		fe[i].value = &vals[i];
	}
	size_t k = 0;
	for (struct res *rs = x->t[ty].head; rs; rs = rs->next, k++) {
		irv[k].key = rs->name;
		irv[k].value = rs->version;
	}
	google_protobuf_Struct md = {.fields_count = (pb_size_t)nmeta, .fields = fe};
	envoy_service_discovery_v3_Node node = {.id = (char *)x->o.node_id, .metadata = &md};
	envoy_service_discovery_v3_DeltaDiscoveryRequest req = {
		.node = &node,
		.type_url = (char *)type_url[ty],
		.initial_resource_versions_count = (pb_size_t)nirv,
		.initial_resource_versions = irv,
	};
	pb_ostream_t s;
	uint8_t *buf = NULL;
	size_t len = 0;
	if (!enc_out(&s, envoy_service_discovery_v3_DeltaDiscoveryRequest_fields, &req, &buf, &len))
		goto out;
	r = zt_grpc_send(x->st, buf, len, false);
	free(buf);
out:
	free(fe);
	free(vals);
	free(irv);
	return r;
}

static int send_ack(struct zt_xds *x, const char *url, const char *nonce, const struct errs *e)
{
	int32_t code = 3; /* INVALID_ARGUMENT, as Envoy and ztunnel NACK */
	envoy_service_discovery_v3_Status st = {.code = &code, .message = (char *)e->buf};
	envoy_service_discovery_v3_DeltaDiscoveryRequest req = {
		.type_url = (char *)url,
		.response_nonce = (char *)nonce,
		.error_detail = e->n ? &st : NULL,
	};
	pb_ostream_t s;
	uint8_t *buf = NULL;
	size_t len = 0;
	if (!enc_out(&s, envoy_service_discovery_v3_DeltaDiscoveryRequest_fields, &req, &buf, &len))
		return -ENOMEM;
	int r = zt_grpc_send(x->st, buf, len, false);
	free(buf);
	return r;
}

/* ---- stream ---- */

static void drop(struct zt_xds *x, const char *why);

static void on_message(void *sud, const uint8_t *msg, size_t len)
{
	struct zt_xds *x = sud;
	envoy_service_discovery_v3_DeltaDiscoveryResponse resp =
		envoy_service_discovery_v3_DeltaDiscoveryResponse_init_zero;
	pb_istream_t is = pb_istream_from_buffer(msg, len);
	if (!pb_decode(&is, envoy_service_discovery_v3_DeltaDiscoveryResponse_fields, &resp)) {
		ZT_WARN(TARGET, "xDS response does not decode (%s, %zu bytes): reconnecting",
			PB_GET_ERROR(&is), len);
		pb_release(envoy_service_discovery_v3_DeltaDiscoveryResponse_fields, &resp);
		drop(x, "bad response");
		return;
	}
	const char *url = resp.type_url ? resp.type_url : "";
	int ty = !strcmp(url, type_url[T_ADDRESS]) ? T_ADDRESS
		 : !strcmp(url, type_url[T_AUTHZ]) ? T_AUTHZ : -1;
	struct errs *e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	if (ty < 0) {
		errs_add(e, "unknown type_url \"%.200s\"", url);
		send_ack(x, url, resp.nonce ? resp.nonce : "", e);
		goto out;
	}
	unsigned added = 0, removed = 0;
	struct zt_arena *scratch = zt_arena_new();
	for (pb_size_t i = 0; i < resp.resources_count; i++) {
		const envoy_service_discovery_v3_Resource *rs = &resp.resources[i];
		const char *name = rs->name ? rs->name : "";
		const google_protobuf_Any *any = rs->resource;
		if (!*name) {
			errs_add(e, "resources[%u]: no name", (unsigned)i);
			continue;
		}
		if (!any || !any->type_url || strcmp(any->type_url, url)) {
			errs_add(e, "%s: resource of type \"%.200s\", not %s", name,
				 any && any->type_url ? any->type_url : "", url);
			continue;
		}
		const uint8_t *d = any->value ? any->value->bytes : NULL;
		size_t dl = any->value ? any->value->size : 0;
		/* Check it alone first: a broken one keeps its previous version. */
		struct zt_cnode *node = NULL;
		struct zt_config_error err = {{0}};
		enum zt_xds_kind kind;
		int k = !scratch ? -ENOMEM
			: ty == T_ADDRESS ? zt_xdsconv_address(scratch, name, d, dl, &kind, &node, &err)
					  : zt_xdsconv_authorization(scratch, name, d, dl, &node, &err);
		if (k) {
			errs_add(e, "%s", k == -ENOMEM ? "out of memory" : err.msg);
			continue;
		}
		if (rt_put(&x->t[ty], name, rs->version, d, dl)) {
			errs_add(e, "%s: out of memory", name);
			continue;
		}
		added++;
	}
	zt_arena_destroy(scratch);
	for (pb_size_t i = 0; i < resp.removed_resources_count; i++) {
		struct res *rs = rt_find(&x->t[ty], resp.removed_resources[i]);
		if (rs) {
			rt_remove(&x->t[ty], rs);
			removed++;
		}
	}
	bool first = !x->got[ty];
	x->got[ty] = true;
	x->backoff_ms = BACKOFF_MIN_MS; /* a working stream */
	if (!first && !added && !removed) { /* e.g. a reconnect where nothing changed */
		send_ack(x, url, resp.nonce ? resp.nonce : "", e);
		goto out;
	}
	struct zt_snapshot *snap = NULL;
	uint64_t t0 = zt_now_ns(), dec = 0;
	int r = rebuild(x, &snap, e, &dec);
	if (r == 0) {
		char why[200];
		uint64_t all = zt_now_ns() - t0;
		snprintf(why, sizeof(why),
			 "%s: %u added or updated, %u removed; rebuilt in %.1f ms, %.1f decoding",
			 url + strlen("type.googleapis.com/"), added, removed, (double)all / 1e6,
			 (double)dec / 1e6);
		x->publish(x->ud, snap, why);
		x->trim_at_ms = zt_now_ms() + TRIM_QUIET_MS;
	} else if (r == -ENOMEM) {
		errs_add(e, "out of memory building the snapshot");
	}
	if (e->n)
		ZT_WARN(TARGET, "xDS %s: rejecting %u resource(s): %s", url, e->n, e->buf);
	send_ack(x, url, resp.nonce ? resp.nonce : "", e);
out:
	free(e);
	pb_release(envoy_service_discovery_v3_DeltaDiscoveryResponse_fields, &resp);
}

static void on_close(void *sud, int status, const char *message)
{
	struct zt_xds *x = sud;
	x->st = NULL;
	char why[300];
	snprintf(why, sizeof(why), "stream closed: %s: %s", zt_grpc_code_name(status),
		 message ? message : "");
	drop(x, why);
}

static void on_error(void *ud, int err, bool fatal, const char *msg)
{
	struct zt_xds *x = ud;
	(void)err;
	if (!fatal) {
		ZT_INFO(TARGET, "XDS client connection: %s", msg);
		return;
	}
	drop(x, msg);
}

static const struct zt_grpc_stream_cbs stream_cbs = {.on_message = on_message, .on_close = on_close};
static const struct zt_grpc_cbs chan_cbs = {.on_error = on_error};

/* The next attempt after backoff_ms, which then doubles up to the maximum. */
static void schedule_retry(struct zt_xds *x, uint64_t now_ms)
{
	x->retry_at_ms = now_ms + x->backoff_ms;
	x->backoff_ms = x->backoff_ms * 2 > x->o.backoff_max_ms ? x->o.backoff_max_ms
								 : x->backoff_ms * 2;
}

/* Drop the connection; the next zt_xds_io() schedules the next attempt. */
static void drop(struct zt_xds *x, const char *why)
{
	if (x->st) {
		zt_grpc_cancel(x->st);
		x->st = NULL;
	}
	if (x->ch) {
		zt_grpc_free(x->ch); /* deferred when inside a callback */
		x->ch = NULL;
	}
	ZT_WARN(TARGET, "XDS client connection error: %s, retrying in %u ms", why, x->backoff_ms);
	x->retry_at_ms = UINT64_MAX; /* set from the clock in zt_xds_io */
}

static void connect_now(struct zt_xds *x, uint64_t now_ms)
{
	struct zt_grpc_opts go = {
		.address = x->o.address,
		.root_cert_path = x->o.root_cert_path,
		.server_name = x->o.server_name,
		.keepalive_ms = 30000,
	};
	char err[300];
	char *tok = NULL, *bearer = NULL;
	int r = zt_grpc_new(&go, &chan_cbs, x, now_ms, &x->ch, err, sizeof(err));
	if (!r && (r = zt_grpc_token_read(x->o.token_path, &tok, err, sizeof(err))))
		zt_grpc_free(x->ch);
	if (r) {
		x->ch = NULL;
		ZT_WARN(TARGET, "XDS client connection error: %s, retrying in %u ms", err, x->backoff_ms);
		schedule_retry(x, now_ms);
		return;
	}
	struct zt_grpc_md md[2] = {{"clusterid", x->o.cluster_id}};
	size_t nmd = 1;
	if (tok && asprintf(&bearer, "Bearer %s", tok) < 0)
		bearer = NULL; /* out of memory: asprintf leaves it undefined */
	if (bearer)
		md[nmd++] = (struct zt_grpc_md){"authorization", bearer};
	r = zt_grpc_stream_open(x->ch, ADS_PATH, md, nmd, &stream_cbs, x, &x->st);
	free(tok);
	free(bearer);
	if (r || send_subscribe(x, T_ADDRESS) || send_subscribe(x, T_AUTHZ)) {
		drop(x, "cannot open the ADS stream");
		return;
	}
	x->retry_at_ms = 0;
}

/* ---- public ---- */

static int xds_conn_timeout(const struct zt_xds *x, uint64_t now_ms);

int zt_xds_new(const struct zt_xds_opts *o, zt_xds_publish_fn publish, void *ud,
	       struct zt_xds **out)
{
	struct zt_xds *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->o = *o;
	if (!x->o.backoff_max_ms)
		x->o.backoff_max_ms = BACKOFF_MAX_MS;
	if (!x->o.cluster_id)
		x->o.cluster_id = "Kubernetes";
	if (!x->o.node_id)
		x->o.node_id = "";
	x->publish = publish;
	x->ud = ud;
	x->backoff_ms = BACKOFF_MIN_MS;
	*out = x;
	return 0;
}

void zt_xds_free(struct zt_xds *x)
{
	if (!x)
		return;
	if (x->ch)
		zt_grpc_free(x->ch);
	for (int i = 0; i < N_TYPES; i++)
		rt_clear(&x->t[i]);
	free(x);
}

int zt_xds_fd(const struct zt_xds *x)
{
	return x->ch ? zt_grpc_fd(x->ch) : -1;
}

short zt_xds_events(const struct zt_xds *x)
{
	return x->ch ? zt_grpc_events(x->ch) : 0;
}

int zt_xds_timeout(const struct zt_xds *x, uint64_t now_ms)
{
	int t = -1;
	if (x->trim_at_ms)
		t = x->trim_at_ms <= now_ms ? 0 : (int)(x->trim_at_ms - now_ms);
	int g = xds_conn_timeout(x, now_ms);
	return g < 0 ? t : t < 0 || g < t ? g : t;
}

static int xds_conn_timeout(const struct zt_xds *x, uint64_t now_ms)
{
	if (!x->ch) {
		if (x->retry_at_ms == UINT64_MAX || x->retry_at_ms <= now_ms)
			return 0;
		uint64_t d = x->retry_at_ms - now_ms;
		return d > 60000 ? 60000 : (int)d;
	}
	return zt_grpc_timeout(x->ch, now_ms);
}

void zt_xds_io(struct zt_xds *x, short revents, uint64_t now_ms)
{
	if (x->trim_at_ms && now_ms >= x->trim_at_ms) {
		x->trim_at_ms = 0;
		malloc_trim(0);
	}
	if (!x->ch) {
		if (x->retry_at_ms == UINT64_MAX) /* dropped: start the backoff now */
			schedule_retry(x, now_ms);
		if (now_ms >= x->retry_at_ms)
			connect_now(x, now_ms);
		return;
	}
	zt_grpc_io(x->ch, revents, now_ms);
}

bool zt_xds_synced(const struct zt_xds *x)
{
	return x->got[T_ADDRESS] && x->got[T_AUTHZ];
}
