#include "engine/inpod.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/shard.h"
#include "engine/sock.h"
#include "engine/zds.h"

#define TARGET "inpod"

struct zt_inpod {
	struct zt_runtime *rt;
	struct zt_zds_session zds;
	bool connected;
	uint64_t retry_at_ms;
	uint32_t backoff_ms;
	struct zt_pod *pods;  /* served */
	struct zt_pod *dying; /* deleted, waiting for shards to let go */
	unsigned n_pods;
};

int zt_inpod_new(struct zt_runtime *rt, struct zt_inpod **out)
{
	struct zt_inpod *ip = calloc(1, sizeof(*ip));
	if (!ip)
		return -ENOMEM;
	ip->rt = rt;
	ip->zds.fd = -1;
	ip->backoff_ms = 100;
	*out = ip;
	return 0;
}

int zt_inpod_fd(const struct zt_inpod *ip)
{
	return ip->connected ? ip->zds.fd : -1;
}

unsigned zt_inpod_count(const struct zt_inpod *ip)
{
	return ip->n_pods;
}

static void pod_close(struct zt_pod *p)
{
	for (unsigned i = 0; p->lfd && i < p->n_lfd; i++)
		if (p->lfd[i] >= 0)
			close(p->lfd[i]);
	free(p->lfd);
	if (p->netns_fd >= 0)
		close(p->netns_fd);
	free(p);
}

/* Open the pod's listeners from inside its network namespace. */
static int pod_listen(struct zt_inpod *ip, struct zt_pod *p)
{
	const struct zt_engine_opts *o = &ip->rt->opts;
	uint16_t ports[3] = {o->outbound_port, o->inbound_port, 15008};
	int r = 0;

	/* One set shared by every shard, or one set per shard (SO_REUSEPORT
	 * spreads the connections). */
	p->n_lfd = o->pod_listeners_per_shard ? 3 * ip->rt->n_shards : 3;
	p->lfd = malloc(p->n_lfd * sizeof(*p->lfd));
	if (!p->lfd)
		return -ENOMEM;
	for (unsigned i = 0; i < p->n_lfd; i++)
		p->lfd[i] = -1;
	if (setns(p->netns_fd, CLONE_NEWNET))
		return -errno;
	for (unsigned j = 0; j < p->n_lfd && r == 0; j++) {
		unsigned i = j % 3;
		struct zt_sockaddr a = {.port = ports[i]};
		zt_ip_parse("::", &a.ip);
		int fd = zt_sock_listen(&a, 4096, true);
		if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
			zt_ip_parse("0.0.0.0", &a.ip);
			fd = zt_sock_listen(&a, 4096, true);
		}
		if (fd < 0) {
			r = fd;
			break;
		}
		int mark = ZT_SOCKET_MARK;
		setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
		if (i >= 1) /* inbound: istio-cni captures it with TPROXY */
			zt_sock_set_transparent(fd);
		p->lfd[j] = fd;
	}
	if (setns(ip->rt->host_netns_fd, CLONE_NEWNET)) {
		ZT_ERROR(TARGET, "cannot return to zring's network namespace: %s", strerror(errno));
		abort();
	}
	return r;
}

static struct zt_pod *find(struct zt_pod *list, const char *uid)
{
	for (struct zt_pod *p = list; p; p = p->next)
		if (!strcmp(p->uid, uid))
			return p;
	return NULL;
}

static void unlink_pod(struct zt_inpod *ip, struct zt_pod *p)
{
	for (struct zt_pod **pp = &ip->pods; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	ip->n_pods--;
}

static void pod_delete(struct zt_inpod *ip, struct zt_pod *p, const char *why)
{
	unlink_pod(ip, p);
	p->deleting = true;
	p->next = ip->dying;
	ip->dying = p;
	for (unsigned i = 0; i < ip->rt->n_shards; i++)
		if (zt_shard_post(ip->rt->shards[i], ZT_SHARD_DEL_POD, p))
			atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
	ZT_INFO(TARGET, "pod removed uid=%s name=%s/%s reason=\"%s\"", p->uid, p->namespace_,
		p->name, why);
}

static const char *pod_add(struct zt_inpod *ip, struct zt_zds_msg *m, char *err, size_t errlen)
{
	struct zt_pod *p = find(ip->pods, m->uid);
	if (p) {
		/* Re-announced (istio-cni restarted): keep serving, drop the new fd. */
		p->seen = true;
		close(m->netns_fd);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(m->netns_fd);
		return "out of memory";
	}
	snprintf(p->uid, sizeof(p->uid), "%s", m->uid);
	snprintf(p->name, sizeof(p->name), "%s", m->name);
	snprintf(p->namespace_, sizeof(p->namespace_), "%s", m->namespace_);
	snprintf(p->service_account, sizeof(p->service_account), "%s", m->service_account);
	snprintf(p->key, sizeof(p->key), "%s/%s", p->namespace_, p->name);
	p->netns_fd = m->netns_fd;
	p->lfd = NULL;
	p->n_lfd = 0;
	p->seen = true;
	int r = pod_listen(ip, p);
	if (r) {
		snprintf(err, errlen, "cannot open listeners in the pod's network namespace: %s",
			 strerror(-r));
		pod_close(p);
		return err;
	}
	/* one reference per shard, dropped by each after DEL */
	atomic_init(&p->refs, ip->rt->n_shards);
	p->next = ip->pods;
	ip->pods = p;
	ip->n_pods++;
	for (unsigned i = 0; i < ip->rt->n_shards; i++)
		if (zt_shard_post(ip->rt->shards[i], ZT_SHARD_ADD_POD, p))
			atomic_fetch_sub_explicit(&p->refs, 1, memory_order_relaxed);
	ZT_INFO(TARGET, "pod received uid=%s name=%s/%s serviceAccount=%s", p->uid, p->namespace_,
		p->name, p->service_account);
	return NULL;
}

static void disconnect(struct zt_inpod *ip, const char *why)
{
	ZT_WARN(TARGET, "istio-cni connection lost (%s); retrying in %u ms, pods keep being served",
		why, ip->backoff_ms);
	zt_zds_close(&ip->zds);
	ip->connected = false;
	ip->retry_at_ms = zt_now_ms() + ip->backoff_ms;
	ip->backoff_ms = ip->backoff_ms * 2 > 5000 ? 5000 : ip->backoff_ms * 2;
	for (struct zt_pod *p = ip->pods; p; p = p->next)
		p->seen = false;
}

void zt_inpod_readable(struct zt_inpod *ip)
{
	for (int budget = 64; budget-- && ip->connected;) {
		struct zt_zds_msg m;
		char why[256], err[300];
		const char *nack = NULL;
		int r = zt_zds_recv(&ip->zds, &m, why, sizeof(why));
		if (r == -EAGAIN)
			return;
		if (r == -EBADMSG) {
			ZT_WARN(TARGET, "rejected a request from istio-cni: %s", why);
			zt_zds_ack(&ip->zds, why);
			continue;
		}
		if (r) {
			disconnect(ip, r == -ECONNRESET ? "closed by istio-cni" : strerror(-r));
			return;
		}
		switch (m.kind) {
		case ZT_ZDS_ADD:
			nack = pod_add(ip, &m, err, sizeof(err));
			break;
		case ZT_ZDS_KEEP: {
			struct zt_pod *p = find(ip->pods, m.uid);
			if (p)
				p->seen = true;
			break;
		}
		case ZT_ZDS_DEL: {
			struct zt_pod *p = find(ip->pods, m.uid);
			if (p)
				pod_delete(ip, p, "DelWorkload");
			break;
		}
		case ZT_ZDS_SNAPSHOT_SENT:
			for (struct zt_pod *p = ip->pods, *n; p; p = n) {
				n = p->next;
				if (!p->seen)
					pod_delete(ip, p, "not in istio-cni's snapshot");
			}
			if (!atomic_load_explicit(&ip->rt->pods_ready, memory_order_relaxed))
				ZT_INFO(TARGET, "istio-cni snapshot processed: %u pods", ip->n_pods);
			atomic_store_explicit(&ip->rt->pods_ready, true, memory_order_relaxed);
			ip->backoff_ms = 100;
			break;
		}
		if (nack)
			ZT_WARN(TARGET, "NACK to istio-cni for %s: %s", m.uid, nack);
		if (zt_zds_ack(&ip->zds, nack)) {
			disconnect(ip, "ack failed");
			return;
		}
	}
}

int zt_inpod_tick(struct zt_inpod *ip)
{
	uint64_t now = zt_now_ms();
	for (struct zt_pod **pp = &ip->dying; *pp;) {
		struct zt_pod *p = *pp;
		/* acquire pairs with the shards' release when they let go */
		if (atomic_load_explicit(&p->refs, memory_order_acquire) == 0) {
			*pp = p->next;
			pod_close(p);
		} else {
			pp = &p->next;
		}
	}
	if (!ip->connected && now >= ip->retry_at_ms) {
		int r = zt_zds_open(&ip->zds, ip->rt->opts.inpod_uds);
		if (r == 0) {
			ip->connected = true;
			ZT_INFO(TARGET, "connected to istio-cni at %s", ip->rt->opts.inpod_uds);
		} else {
			ZT_DEBUG(TARGET, "connect to %s: %s", ip->rt->opts.inpod_uds, strerror(-r));
			ip->retry_at_ms = now + ip->backoff_ms;
			ip->backoff_ms = ip->backoff_ms * 2 > 5000 ? 5000 : ip->backoff_ms * 2;
		}
	}
	if (!ip->connected) {
		uint64_t w = ip->retry_at_ms > now ? ip->retry_at_ms - now : 0;
		return w > 100 ? 100 : (int)w;
	}
	return 100;
}

void zt_inpod_free(struct zt_inpod *ip)
{
	if (!ip)
		return;
	zt_zds_close(&ip->zds);
	for (struct zt_pod *p = ip->pods, *n; p; p = n) {
		n = p->next;
		pod_close(p);
	}
	for (struct zt_pod *p = ip->dying, *n; p; p = n) {
		n = p->next;
		pod_close(p);
	}
	free(ip);
}
