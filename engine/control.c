#include "engine/control.h"

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "authz/authz.h"
#include "hbone/ca.h"
#include "hbone/certstore.h"
#include "hbone/identity.h"
#include "common/log.h"
#include "engine/caclient.h"
#include "engine/inpod.h"
#include "engine/metrics.h"
#include "engine/shard.h"
#include "engine/sock.h"
#include "engine/xdsclient.h"

#define TARGET "xds"

struct zt_control {
	struct zt_runtime *rt;
	pthread_t thread;
	int stop_fd;
	int inotify_fd;
	int ready_fd;
	int metrics_fd;
	char dir[4096];
	char base[256];
	uint64_t generation;
	struct zt_inpod *inpod; /* shared mode */
	struct zt_ca *ca;       /* the embedded CA (no CA_ADDRESS) */
	struct zt_xds *xds;     /* istiod (XDS_ADDRESS) */
	uint64_t ca_retry_ms;   /* istiod's CA: no call before (after a failure) */
	uint32_t ca_backoff_ms;
	uint64_t next_cert_check_ms;
};

#define CA_CALL_TIMEOUT_MS 10000
#define CA_BACKOFF_MIN_MS 500
#define CA_BACKOFF_MAX_MS 150000

/* One certificate for `id`: from the embedded CA, or from istiod's
 * (CA_ADDRESS; a failure backs off 0.5 s doubling to 150 s, as ztunnel, and
 * the old certificate, if any, stays meanwhile). */
static int issue(struct zt_control *c, const struct zt_identity *id, time_t now,
		 struct zt_issued *out)
{
	const struct zt_engine_opts *o = &c->rt->opts;
	if (c->ca) {
		int r = zt_ca_issue(c->ca, id, now, o->cert_ttl_s, out);
		if (r)
			ZT_WARN("ca", "cannot issue a certificate for %s", zt_identity_str(id));
		return r;
	}
	if (zt_now_ms() < c->ca_retry_ms)
		return -EAGAIN;
	struct zt_caclient_opts co = {
		.address = o->ca_address,
		.root_cert_path = o->ca_root_cert,
		.token_path = o->token_path,
		.cluster_id = o->cluster_id,
	};
	char err[512];
	char *roots = NULL;
	int r = zt_caclient_issue(&co, id, o->cert_ttl_s, CA_CALL_TIMEOUT_MS, out, &roots, err,
				  sizeof(err));
	free(roots); /* the mesh's roots are CA_ROOT_CA's (the store keeps its first) */
	if (r) {
		c->ca_backoff_ms = c->ca_backoff_ms ? c->ca_backoff_ms * 2 : CA_BACKOFF_MIN_MS;
		if (c->ca_backoff_ms > CA_BACKOFF_MAX_MS)
			c->ca_backoff_ms = CA_BACKOFF_MAX_MS;
		c->ca_retry_ms = zt_now_ms() + c->ca_backoff_ms;
		ZT_WARN("ca", "%s; retrying in %u ms", err, c->ca_backoff_ms);
		return r > 0 ? -EIO : r;
	}
	c->ca_backoff_ms = 0;
	return 0;
}

/* The trust roots of a first store: the embedded CA's root, or CA_ROOT_CA's
 * certificates (istio-ca-root-cert: the mesh's root). malloc'd. */
static char *trust_roots(struct zt_control *c)
{
	if (c->ca)
		return strdup(zt_ca_root_pem(c->ca));
	FILE *f = fopen(c->rt->opts.ca_root_cert, "r");
	if (!f) {
		ZT_ERROR("ca", "cannot read the mesh's root certificates from %s: %s",
			 c->rt->opts.ca_root_cert, strerror(errno));
		return NULL;
	}
	char *buf = malloc(1 << 20);
	size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[n] = 0;
	return buf;
}

/* Certificates for every identity of the snapshot's workloads, from the
 * embedded CA or istiod's: issued when new or past half-life, dropped when no
 * workload has the identity any more. With istiod's CA and NODE_NAME set, only
 * for the workloads on this node (as ztunnel: istiod signs a node proxy's
 * request only for identities running on its node). Publishes a new store
 * only when something changed. */
static void refresh_certs(struct zt_control *c)
{
	if (!c->ca && !c->rt->opts.ca_address)
		return;
	const struct zt_snapshot *snap = zt_rcu_deref(&c->rt->snapshot);
	struct zt_certstore *old = zt_rcu_deref(&c->rt->certs);
	size_t n = snap ? snap->n_workloads : 0;
	struct zt_identity *want = calloc(n ? n : 1, sizeof(*want));
	struct zt_cert_input *in = calloc(n ? n : 1, sizeof(*in));
	struct zt_issued *iss = calloc(n ? n : 1, sizeof(*iss));
	const struct zt_identity **rm = calloc(old && old->n ? old->n : 1, sizeof(*rm));
	size_t nw = 0, nin = 0, nrm = 0;
	time_t now = time(NULL);
	if (!want || !in || !iss || !rm)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct zt_workload *w = &snap->workloads[i];
		const char *node = c->rt->opts.node_name;
		if (!c->ca && node && (!w->node || strcmp(w->node, node)))
			continue;
		struct zt_identity id;
		if (zt_identity_set(&id, w->trust_domain, w->namespace_, w->service_account))
			continue; /* not a valid SPIFFE identity: no certificate */
		bool dup = false;
		for (size_t k = 0; k < nw && !dup; k++)
			dup = zt_identity_eq(&want[k], &id);
		if (dup)
			continue;
		want[nw++] = id;
		const struct zt_cert_entry *e = old ? zt_certstore_find(old, &id) : NULL;
		if (e && !zt_cert_entry_due(e, now))
			continue;
		if (issue(c, &want[nw - 1], now, &iss[nin]))
			continue;
		in[nin] = (struct zt_cert_input){&want[nw - 1], iss[nin].chain_pem,
						 strlen(iss[nin].chain_pem), iss[nin].key_pem,
						 strlen(iss[nin].key_pem)};
		nin++;
	}
	for (size_t i = 0; old && i < old->n; i++) {
		bool keep = false;
		for (size_t k = 0; k < nw && !keep; k++)
			keep = zt_identity_eq(&want[k], &old->entries[i].id);
		if (!keep)
			rm[nrm++] = &old->entries[i].id;
	}
	if (old && !nin && !nrm)
		goto out;
	struct zt_certstore *store = NULL;
	char err[256];
	char *root = old ? NULL : trust_roots(c);
	if (!old && !root)
		goto out;
	int r = old ? zt_certstore_update(old, in, nin, rm, nrm, &store, err, sizeof(err))
		    : zt_certstore_build(in, nin, root, strlen(root), &store, err, sizeof(err));
	free(root);
	if (r) {
		ZT_ERROR("ca", "certificate store: %s", err);
		goto out;
	}
	struct zt_certstore *prev = zt_rcu_publish(&c->rt->certs, store);
	if (prev)
		zt_qsbr_retire(&c->rt->qsbr, prev, zt_certstore_free_cb);
	ZT_INFO("ca", "certificates: %zu identities (%zu issued, %zu removed)", store->n, nin, nrm);
out:
	for (size_t i = 0; i < nin; i++)
		zt_issued_free(&iss[i]);
	free(want);
	free(in);
	free(iss);
	free(rm);
}

static int ca_init(struct zt_control *c)
{
	const struct zt_engine_opts *o = &c->rt->opts;
	char err[256];
	int r;
	if (o->ca_address) {
		ZT_INFO("ca", "workload certificates from istiod's CA at %s (roots %s)",
			o->ca_address, o->ca_root_cert);
		return 0;
	}
	if (o->ca_cert_path && o->ca_key_path && access(o->ca_cert_path, R_OK) == 0) {
		r = zt_ca_load_files(&c->ca, o->ca_cert_path, o->ca_key_path, err, sizeof(err));
		if (r) {
			ZT_ERROR("ca", "embedded CA: %s", err);
			return r;
		}
		ZT_INFO("ca", "embedded CA root loaded from %s", o->ca_cert_path);
		return 0;
	}
	r = zt_ca_generate(&c->ca, NULL, time(NULL), ZT_CA_ROOT_TTL);
	if (r) {
		ZT_ERROR("ca", "embedded CA: cannot generate a root: %s", strerror(-r));
		return r;
	}
	if (o->ca_cert_path && o->ca_key_path) {
		if ((r = zt_ca_save_files(c->ca, o->ca_cert_path, o->ca_key_path, err, sizeof(err)))) {
			ZT_ERROR("ca", "embedded CA: %s", err);
			return r;
		}
		ZT_INFO("ca", "embedded CA root generated and saved to %s", o->ca_cert_path);
	} else {
		ZT_INFO("ca", "embedded CA root generated (in memory only: other zrings will not "
			      "trust it; share one with --ca-cert/--ca-key)");
	}
	return 0;
}

static void snapshot_free_cb(void *p)
{
	zt_snapshot_free(p);
}

static void authz_free_cb(void *ix)
{
	zt_authz_index_free(ix);
}

/* Attach the compiled authorization index. A snapshot without it would let
 * every connection through, so it is not published then. */
static int attach_authz(struct zt_snapshot *snap)
{
	struct zt_authz_index *ix = NULL;
	int r = zt_authz_index_build(snap, &ix);
	if (r)
		return r;
	snap->authz = ix;
	snap->authz_free = authz_free_cb;
	return 0;
}

static void publish(struct zt_control *c, struct zt_snapshot *snap)
{
	snap->generation = ++c->generation;
	struct zt_snapshot *old = zt_rcu_publish(&c->rt->snapshot, snap);
	if (old)
		zt_qsbr_retire(&c->rt->qsbr, old, snapshot_free_cb);
}

/* An empty mesh (no workloads, services or policies). */
static int publish_empty(struct zt_control *c)
{
	struct zt_snapshot *empty = zt_snapshot_empty();
	if (!empty || attach_authz(empty)) {
		zt_snapshot_free(empty);
		return -ENOMEM;
	}
	publish(c, empty);
	return 0;
}

static int load(struct zt_control *c, bool initial)
{
	const char *path = c->rt->opts.config_path;
	struct zt_snapshot *snap = NULL;
	struct zt_config_error err = {{0}};
	int r = zt_config_load_file(path, &snap, &err);
	if (r) {
		if (initial)
			ZT_ERROR(TARGET, "failed to load local config: %s", err.msg);
		else
			ZT_ERROR(TARGET, "failed to reload local config, keeping the previous one: %s",
				 err.msg);
		return r;
	}
	if ((r = attach_authz(snap))) {
		ZT_ERROR(TARGET, "cannot compile authorization policies: %s; %s", strerror(-r),
			 initial ? "giving up" : "keeping the previous config");
		zt_snapshot_free(snap);
		return r;
	}
	ZT_INFO(TARGET, "local config %s: workloads=%zu services=%zu policies=%zu",
		initial ? "loaded" : "reloaded", snap->n_workloads, snap->n_services,
		snap->n_policies);
	publish(c, snap);
	refresh_certs(c);
	return 0;
}

/* A snapshot built from istiod's resources (xdsclient.c). */
static void xds_publish(void *ud, struct zt_snapshot *snap, const char *why)
{
	struct zt_control *c = ud;
	int r = attach_authz(snap);
	if (r) {
		ZT_ERROR(TARGET, "cannot compile authorization policies: %s; keeping the previous "
				 "config", strerror(-r));
		zt_snapshot_free(snap);
		return;
	}
	ZT_INFO(TARGET, "xds update (%s): workloads=%zu services=%zu policies=%zu", why,
		snap->n_workloads, snap->n_services, snap->n_policies);
	publish(c, snap);
	refresh_certs(c);
}

/* Read a small HTTP request (bounded wait). Returns the fd or -1. */
static int read_request(int lfd, char *req, size_t len)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n = 0;
	if (poll(&p, 1, 1000) == 1)
		n = recv(fd, req, len - 1, 0);
	req[n > 0 ? n : 0] = 0;
	return fd;
}

static void respond(int fd, int status, const char *ctype, const char *body, size_t blen)
{
	char head[256];
	int hl = snprintf(head, sizeof(head),
			  "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
			  "connection: close\r\n\r\n",
			  status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Internal Server Error",
			  ctype, blen);
	/* the socket is non-blocking: wait a little for room, never forever */
	const char *parts[2] = {head, body};
	size_t lens[2] = {(size_t)hl, blen};
	for (int k = 0; k < 2; k++) {
		size_t off = 0;
		while (off < lens[k]) {
			ssize_t w = send(fd, parts[k] + off, lens[k] - off, MSG_NOSIGNAL);
			if (w > 0) {
				off += (size_t)w;
				continue;
			}
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (w < 0 && errno == EAGAIN && poll(&p, 1, 1000) == 1)
				continue;
			goto out;
		}
	}
out:
	close(fd);
}

static void serve_ready(struct zt_control *c)
{
	char req[1024];
	int fd = read_request(c->ready_fd, req, sizeof(req));
	if (fd < 0)
		return;
	const char *body;
	int status;
	char pending[128] = "";
	bool cfg = atomic_load_explicit(&c->rt->config_ready, memory_order_relaxed);
	bool listen = atomic_load_explicit(&c->rt->shards_listening, memory_order_relaxed) ==
		      c->rt->n_shards;
	bool drain = atomic_load_explicit(&c->rt->draining, memory_order_relaxed);
	bool pods = c->rt->opts.mode != ZT_MODE_SHARED ||
		    atomic_load_explicit(&c->rt->pods_ready, memory_order_relaxed);
	if (strncmp(req, "GET /healthz/ready", 18) != 0) {
		status = 404;
		body = "not found\n";
	} else if (cfg && listen && pods && !drain) {
		status = 200;
		body = "ready\n";
	} else {
		status = 500;
		const char *what[4];
		int n = 0;
		if (!cfg)
			what[n++] = "config";
		if (!listen)
			what[n++] = "proxy listeners";
		if (!pods)
			what[n++] = "workload proxy manager";
		if (drain)
			what[n++] = "draining";
		int off = snprintf(pending, sizeof(pending), "not ready, pending: ");
		for (int i = 0; i < n; i++)
			off += snprintf(pending + off, sizeof(pending) - (size_t)off, "%s%s",
					i ? ", " : "", what[i]);
		snprintf(pending + off, sizeof(pending) - (size_t)off, "\n");
		body = pending;
	}
	respond(fd, status, "text/plain", body, strlen(body));
}

/* GET /metrics or /stats/prometheus: OpenMetrics text. */
static void serve_metrics(struct zt_control *c)
{
	char req[1024];
	int fd = read_request(c->metrics_fd, req, sizeof(req));
	if (fd < 0)
		return;
	if (strncmp(req, "GET /metrics", 12) && strncmp(req, "GET /stats/prometheus", 21)) {
		respond(fd, 404, "text/plain", "not found\n", 10);
		return;
	}
	struct zt_metrics_shard *ms[256];
	unsigned n = c->rt->n_shards < 256 ? c->rt->n_shards : 256;
	for (unsigned i = 0; i < n; i++)
		ms[i] = c->rt->shards ? zt_shard_metrics(c->rt->shards[i]) : NULL;
	char extra[8192];
	snprintf(extra, sizeof(extra),
		 "# HELP istio_build Istio component build info.\n"
		 "# TYPE istio_build gauge\n"
		 "istio_build{component=\"ztunnel\",tag=\"zring-0.1.0\"} 1\n"
		 "# HELP workload_manager_active_proxy_count The total number current workloads with active proxies.\n"
		 "# TYPE workload_manager_active_proxy_count gauge\n"
		 "workload_manager_active_proxy_count %u\n",
		 c->inpod ? zt_inpod_count(c->inpod) : 0);
	/* per-shard accept counts: how evenly the listeners spread connections */
	size_t el = strlen(extra);
	el += (size_t)snprintf(extra + el, sizeof(extra) - el,
			       "# HELP zring_shard_connections_accepted Connections accepted by each shard.\n"
			       "# TYPE zring_shard_connections_accepted counter\n");
	for (unsigned i = 0; c->rt->shards && i < n && el < sizeof(extra) - 80; i++)
		el += (size_t)snprintf(extra + el, sizeof(extra) - el,
				       "zring_shard_connections_accepted_total{shard=\"%u\"} %llu\n", i,
				       (unsigned long long)atomic_load_explicit(
					       &zt_shard_stats(c->rt->shards[i])->accepted,
					       memory_order_relaxed));
	char *body = zt_metrics_render(ms, n, extra);
	if (!body) {
		respond(fd, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	respond(fd, 200, "application/openmetrics-text; version=1.0.0; charset=utf-8", body,
		strlen(body));
	free(body);
}

static void drain_inotify(struct zt_control *c, bool *changed)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(c->inotify_fd, buf, sizeof(buf));
		if (n <= 0)
			return;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			/* the file itself, or a Kubernetes ConfigMap mount swapping its
			 * "..data" symlink to a new revision */
			if (ev->len && (!strcmp(ev->name, c->base) || !strcmp(ev->name, "..data")))
				*changed = true;
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void *control_main(void *arg)
{
	struct zt_control *c = arg;
	pthread_setname_np(pthread_self(), "zring-control");
	uint64_t reload_at = 0;
	for (;;) {
		int timeout = 100; /* at least every 100 ms: reclaim retired snapshots */
		if (c->inpod)
			timeout = zt_inpod_tick(c->inpod);
		if (c->xds) {
			int t = zt_xds_timeout(c->xds, zt_now_ms());
			if (t >= 0 && t < timeout)
				timeout = t;
		}
		struct pollfd p[6] = {
			{.fd = c->stop_fd, .events = POLLIN},
			{.fd = c->inotify_fd, .events = POLLIN},
			{.fd = c->ready_fd, .events = POLLIN},
			{.fd = c->inpod ? zt_inpod_fd(c->inpod) : -1, .events = POLLIN},
			{.fd = c->metrics_fd, .events = POLLIN},
			{.fd = c->xds ? zt_xds_fd(c->xds) : -1,
			 .events = c->xds ? zt_xds_events(c->xds) : 0},
		};
		if (poll(p, 6, timeout) < 0 && errno != EINTR)
			break;
		if (c->xds) {
			zt_xds_io(c->xds, p[5].revents, zt_now_ms());
			if (!atomic_load_explicit(&c->rt->config_ready, memory_order_relaxed) &&
			    zt_xds_synced(c->xds)) {
				ZT_INFO(TARGET, "xds: initial configuration received from %s",
					c->rt->opts.xds_address);
				atomic_store_explicit(&c->rt->config_ready, true, memory_order_relaxed);
				if (c->rt->opts.mode == ZT_MODE_SHARED && !c->inpod &&
				    zt_inpod_new(c->rt, &c->inpod))
					ZT_ERROR(TARGET, "out of memory: cannot take pods from istio-cni");
			}
		}
		if (p[4].revents)
			serve_metrics(c);
		if (p[3].revents)
			zt_inpod_readable(c->inpod);
		if (p[0].revents)
			break;
		if (p[1].revents) {
			bool changed = false;
			drain_inotify(c, &changed);
			/* Editors write in several steps: wait 50 ms of quiet. */
			if (changed)
				reload_at = zt_now_ms() + 50;
		}
		if (p[2].revents)
			serve_ready(c);
		if (reload_at && zt_now_ms() >= reload_at) {
			reload_at = 0;
			load(c, false);
		}
		if (zt_now_ms() >= c->next_cert_check_ms) { /* renewals at half-life */
			c->next_cert_check_ms = zt_now_ms() + 1000;
			refresh_certs(c);
		}
		zt_qsbr_poll(&c->rt->qsbr);
	}
	return NULL;
}

int zt_control_start(struct zt_runtime *rt, struct zt_control **out)
{
	struct zt_control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->rt = rt;
	c->stop_fd = c->inotify_fd = c->ready_fd = c->metrics_fd = -1;
	int r;

	if ((r = ca_init(c)))
		goto fail;
	if (rt->opts.config_path) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s", rt->opts.config_path);
		snprintf(c->base, sizeof(c->base), "%s", basename(tmp));
		snprintf(tmp, sizeof(tmp), "%s", rt->opts.config_path);
		snprintf(c->dir, sizeof(c->dir), "%s", dirname(tmp));
		if ((r = load(c, true)))
			goto fail;
		if (rt->opts.xds_address)
			ZT_INFO(TARGET, "local config in use: not connecting to istiod (%s)",
				rt->opts.xds_address);
		c->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (c->inotify_fd < 0 ||
		    inotify_add_watch(c->inotify_fd, c->dir,
				      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY) < 0)
			ZT_WARN(TARGET, "cannot watch %s for changes: %s", c->dir, strerror(errno));
	} else if (rt->opts.xds_address) {
		const struct zt_engine_opts *o = &rt->opts;
		struct zt_xds_opts xo = {
			.address = o->xds_address,
			.root_cert_path = o->xds_root_cert,
			.token_path = o->token_path,
			.cluster_id = o->cluster_id,
			.node_id = o->node_id,
			.meta = o->node_meta,
			.n_meta = o->n_node_meta,
		};
		if ((r = zt_xds_new(&xo, xds_publish, c, &c->xds)))
			goto fail;
		/* Nothing is known until istiod answers: an empty mesh meanwhile,
		 * and not ready (readiness waits for both types). */
		if ((r = publish_empty(c)))
			goto fail;
		ZT_INFO(TARGET, "xds: connecting to %s as %s (cluster %s)", o->xds_address,
			o->node_id, o->cluster_id);
	} else {
		ZT_WARN(TARGET, "no local config (LOCAL_XDS_PATH / --config): empty mesh, every "
				"connection passes through");
		if ((r = publish_empty(c)))
			goto fail;
	}
	if (!c->xds)
		atomic_store_explicit(&rt->config_ready, true, memory_order_relaxed);

	struct zt_sockaddr ra;
	zt_ip_parse("::", &ra.ip);
	ra.port = rt->opts.readiness_port;
	c->ready_fd = zt_sock_listen(&ra, 64, false);
	if (c->ready_fd < 0) {
		zt_ip_parse("0.0.0.0", &ra.ip);
		c->ready_fd = zt_sock_listen(&ra, 64, false);
	}
	if (c->ready_fd < 0) {
		ZT_ERROR(TARGET, "readiness listener on port %u: %s", ra.port, strerror(-c->ready_fd));
		r = c->ready_fd;
		goto fail;
	}
	zt_ip_parse("::", &ra.ip);
	ra.port = rt->opts.metrics_port;
	c->metrics_fd = zt_sock_listen(&ra, 64, false);
	if (c->metrics_fd < 0) {
		zt_ip_parse("0.0.0.0", &ra.ip);
		c->metrics_fd = zt_sock_listen(&ra, 64, false);
	}
	if (c->metrics_fd < 0) {
		ZT_ERROR(TARGET, "metrics listener on port %u: %s", ra.port, strerror(-c->metrics_fd));
		r = c->metrics_fd;
		goto fail;
	}
	c->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (c->stop_fd < 0) {
		r = -errno;
		goto fail;
	}
	/* Shared mode with istiod: pods are taken from istio-cni only once the
	 * configuration arrived (below), so that none is served from an empty
	 * mesh meanwhile; istio-cni keeps them with the proxy it had, if any. */
	if (rt->opts.mode == ZT_MODE_SHARED && !c->xds && (r = zt_inpod_new(rt, &c->inpod)))
		goto fail;
	*out = c;
	return 0;
fail:
	if (c->stop_fd >= 0)
		close(c->stop_fd);
	if (c->inotify_fd >= 0)
		close(c->inotify_fd);
	if (c->ready_fd >= 0)
		close(c->ready_fd);
	if (c->metrics_fd >= 0)
		close(c->metrics_fd);
	zt_ca_free(c->ca);
	zt_xds_free(c->xds);
	free(c);
	return r;
}

int zt_control_run(struct zt_control *c)
{
	return -pthread_create(&c->thread, NULL, control_main, c);
}

void zt_control_stop(struct zt_control *c)
{
	uint64_t one = 1;
	ssize_t w = write(c->stop_fd, &one, sizeof(one));
	(void)w;
	pthread_join(c->thread, NULL);
	zt_inpod_free(c->inpod);
	close(c->stop_fd);
	if (c->inotify_fd >= 0)
		close(c->inotify_fd);
	close(c->ready_fd);
	close(c->metrics_fd);
	zt_ca_free(c->ca);
	zt_xds_free(c->xds);
	free(c);
}
