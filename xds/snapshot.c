/* snapshot.c - the snapshot's hash indexes and lookups.
 *
 * Open addressing with linear probing; tables are sized to a power of two at
 * least twice the number of keys, built once by the control thread and only
 * read afterwards, so lookups are plain loads: no locks, no allocation.
 */
#include <errno.h>
#include <string.h>

#include "xds/arena.h"
#include "xds/snapshot-int.h"

struct str_slot {
	uint64_t hash;
	const char *key; /* NULL = empty slot */
	const void *val;
};

struct str_table {
	struct str_slot *slots;
	size_t mask;
};

struct addr_slot {
	uint64_t hash;
	const char *network; /* NULL = empty slot */
	struct zt_ip ip;
	const void *val;
};

struct addr_table {
	struct addr_slot *slots;
	size_t mask;
};

struct zt_snapshot_index {
	struct str_table wl_uid, wl_name, svc_key, policy_key;
	struct addr_table wl_addr, svc_vip;
};

/* FNV-1a then a 64-bit finalizer (splitmix64) so that low bits are mixed. */
static uint64_t mix64(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h;
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV_SEED 0xcbf29ce484222325ull

static uint64_t hash_str(const char *s)
{
	return mix64(fnv_bytes(FNV_SEED, s, strlen(s)));
}

static uint64_t hash_addr(const char *network, const struct zt_ip *ip)
{
	uint64_t h = fnv_bytes(FNV_SEED, network, strlen(network) + 1);
	h = fnv_bytes(h, &ip->family, 1);
	return mix64(fnv_bytes(h, ip->b, ip->family == AF_INET ? 4 : 16));
}

static bool addr_eq(const struct addr_slot *sl, const char *network, const struct zt_ip *ip)
{
	return zt_ip_eq(&sl->ip, ip) && !strcmp(sl->network, network);
}

static size_t table_size(size_t n)
{
	size_t sz = 8;
	while (sz < n * 2)
		sz <<= 1;
	return sz;
}

static int str_table_init(struct zt_arena *a, struct str_table *t, size_t n)
{
	size_t sz = table_size(n);
	t->slots = zt_arena_calloc(a, sz, sizeof(*t->slots));
	t->mask = sz - 1;
	return t->slots ? 0 : -ENOMEM;
}

static int addr_table_init(struct zt_arena *a, struct addr_table *t, size_t n)
{
	size_t sz = table_size(n);
	t->slots = zt_arena_calloc(a, sz, sizeof(*t->slots));
	t->mask = sz - 1;
	return t->slots ? 0 : -ENOMEM;
}

/* Returns the slot holding `key`, or the empty slot where it would go. */
static struct str_slot *str_find(const struct str_table *t, const char *key, uint64_t h)
{
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct str_slot *sl = &t->slots[i];
		if (!sl->key || (sl->hash == h && !strcmp(sl->key, key)))
			return sl;
	}
}

static struct addr_slot *addr_find(const struct addr_table *t, const char *network,
				   const struct zt_ip *ip, uint64_t h)
{
	for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct addr_slot *sl = &t->slots[i];
		if (!sl->network || (sl->hash == h && addr_eq(sl, network, ip)))
			return sl;
	}
}

/* Inserts unless present; returns the value already there, or NULL. */
static const void *str_insert(struct str_table *t, const char *key, const void *val)
{
	uint64_t h = hash_str(key);
	struct str_slot *sl = str_find(t, key, h);
	if (sl->key)
		return sl->val;
	sl->hash = h;
	sl->key = key;
	sl->val = val;
	return NULL;
}

/* When two workloads share an address ztunnel prefers a Pod (uid contains
 * "//Pod/"), then an HBONE one; among equals the later one wins. */
static int wl_addr_rank(const struct zt_workload *w)
{
	return (strstr(w->uid, "//Pod/") ? 2 : 0) + (w->protocol == ZT_PROTO_HBONE);
}

struct zt_snapshot *zt_snapshot_new_in(struct zt_arena *a)
{
	struct zt_snapshot *s = zt_arena_calloc(a, 1, sizeof(*s));
	if (!s)
		return NULL;
	s->_index = zt_arena_calloc(a, 1, sizeof(*s->_index));
	if (!s->_index)
		return NULL;
	s->_arena = a;
	return s;
}

struct zt_snapshot *zt_snapshot_empty(void)
{
	struct zt_arena *a = zt_arena_new();
	if (!a)
		return NULL;
	struct zt_snapshot *s = zt_snapshot_new_in(a);
	if (!s || zt_snapshot_index_build(s, NULL)) {
		zt_arena_destroy(a);
		return NULL;
	}
	return s;
}

void zt_snapshot_free(struct zt_snapshot *s)
{
	if (!s)
		return;
	if (s->authz_free)
		s->authz_free(s->authz);
	zt_arena_destroy(s->_arena); /* s itself lives in its arena */
}

static char *join_key(struct zt_arena *a, const char *ns, const char *name)
{
	size_t l1 = strlen(ns), l2 = strlen(name);
	char *k = zt_arena_alloc(a, l1 + l2 + 2);
	if (k) {
		memcpy(k, ns, l1);
		k[l1] = '/';
		memcpy(k + l1 + 1, name, l2 + 1);
	}
	return k;
}

int zt_snapshot_index_build(struct zt_snapshot *s, struct zt_index_conflict *c)
{
	struct zt_snapshot_index *ix = s->_index;
	struct zt_arena *a = s->_arena;
	size_t n_ips = 0, n_vips = 0;

	for (size_t i = 0; i < s->n_workloads; i++)
		n_ips += s->workloads[i].n_ips;
	for (size_t i = 0; i < s->n_services; i++)
		n_vips += s->services[i].n_vips;
	if (str_table_init(a, &ix->wl_uid, s->n_workloads) ||
	    str_table_init(a, &ix->wl_name, s->n_workloads) ||
	    str_table_init(a, &ix->svc_key, s->n_services) ||
	    str_table_init(a, &ix->policy_key, s->n_policies) ||
	    addr_table_init(a, &ix->wl_addr, n_ips) || addr_table_init(a, &ix->svc_vip, n_vips))
		return -ENOMEM;

	for (size_t i = 0; i < s->n_workloads; i++) {
		const struct zt_workload *w = &s->workloads[i];
		if (*w->uid) { /* workloads without a uid are not indexed by uid */
			const struct zt_workload *prev = str_insert(&ix->wl_uid, w->uid, w);
			if (prev) {
				*c = (struct zt_index_conflict){ZT_DUP_UID, (size_t)(prev - s->workloads), i, 0};
				return -EEXIST;
			}
		}
		/* "namespace/name": how a pod handed over by istio-cni is found.
		 * Several workloads may share one (other clusters): first wins. */
		if (*w->name) {
			char *nk = join_key(a, w->namespace_, w->name);
			if (!nk)
				return -ENOMEM;
			str_insert(&ix->wl_name, nk, w);
		}
		if (w->network_mode == ZT_NETMODE_HOST_NETWORK)
			continue; /* its IPs are the node's: ztunnel does not index them */
		for (size_t k = 0; k < w->n_ips; k++) {
			uint64_t h = hash_addr(w->network, &w->ips[k]);
			struct addr_slot *sl = addr_find(&ix->wl_addr, w->network, &w->ips[k], h);
			if (sl->network && wl_addr_rank(sl->val) > wl_addr_rank(w))
				continue;
			*sl = (struct addr_slot){h, w->network, w->ips[k], w};
		}
	}
	for (size_t i = 0; i < s->n_services; i++) {
		const struct zt_service *sv = &s->services[i];
		char *key = join_key(a, sv->namespace_, sv->hostname);
		if (!key)
			return -ENOMEM;
		const struct zt_service *prev = str_insert(&ix->svc_key, key, sv);
		if (prev) {
			*c = (struct zt_index_conflict){ZT_DUP_SERVICE, (size_t)(prev - s->services), i, 0};
			return -EEXIST;
		}
		for (size_t k = 0; k < sv->n_vips; k++) {
			const struct zt_netaddr *v = &sv->vips[k];
			uint64_t h = hash_addr(v->network, &v->ip);
			struct addr_slot *sl = addr_find(&ix->svc_vip, v->network, &v->ip, h);
			if (sl->network) {
				const struct zt_service *o = sl->val;
				*c = (struct zt_index_conflict){ZT_DUP_VIP, (size_t)(o - s->services), i, k};
				return -EEXIST;
			}
			*sl = (struct addr_slot){h, v->network, v->ip, sv};
		}
	}
	for (size_t i = 0; i < s->n_policies; i++) {
		const struct zt_authz_policy *p = &s->policies[i];
		char *key = join_key(a, p->namespace_, p->name);
		if (!key)
			return -ENOMEM;
		const struct zt_authz_policy *prev = str_insert(&ix->policy_key, key, p);
		if (prev) {
			*c = (struct zt_index_conflict){ZT_DUP_POLICY, (size_t)(prev - s->policies), i, 0};
			return -EEXIST;
		}
	}
	return 0;
}

/* ---- lookups: any thread ---- */

const struct zt_workload *zt_snapshot_workload_by_ip(const struct zt_snapshot *s,
						     const char *network, const struct zt_ip *ip)
{
	if (!s || !s->_index->wl_addr.slots)
		return NULL;
	if (!network)
		network = "";
	const struct addr_slot *sl =
		addr_find(&s->_index->wl_addr, network, ip, hash_addr(network, ip));
	return sl->network ? sl->val : NULL;
}

const struct zt_workload *zt_snapshot_workload_by_uid(const struct zt_snapshot *s, const char *uid)
{
	if (!s || !s->_index->wl_uid.slots)
		return NULL;
	const struct str_slot *sl = str_find(&s->_index->wl_uid, uid, hash_str(uid));
	return sl->key ? sl->val : NULL;
}

const struct zt_workload *zt_snapshot_workload_by_name(const struct zt_snapshot *s,
						       const char *ns_slash_name)
{
	if (!s || !s->_index->wl_name.slots)
		return NULL;
	const struct str_slot *sl =
		str_find(&s->_index->wl_name, ns_slash_name, hash_str(ns_slash_name));
	return sl->key ? sl->val : NULL;
}

const struct zt_service *zt_snapshot_service_by_vip(const struct zt_snapshot *s,
						    const char *network, const struct zt_ip *ip)
{
	if (!s || !s->_index->svc_vip.slots)
		return NULL;
	if (!network)
		network = "";
	const struct addr_slot *sl =
		addr_find(&s->_index->svc_vip, network, ip, hash_addr(network, ip));
	return sl->network ? sl->val : NULL;
}

const struct zt_service *zt_snapshot_service_by_key(const struct zt_snapshot *s,
						    const char *ns_slash_hostname)
{
	if (!s || !s->_index->svc_key.slots)
		return NULL;
	const struct str_slot *sl =
		str_find(&s->_index->svc_key, ns_slash_hostname, hash_str(ns_slash_hostname));
	return sl->key ? sl->val : NULL;
}

const struct zt_authz_policy *zt_snapshot_policy_by_key(const struct zt_snapshot *s,
							const char *ns_slash_name)
{
	if (!s || !s->_index->policy_key.slots)
		return NULL;
	const struct str_slot *sl =
		str_find(&s->_index->policy_key, ns_slash_name, hash_str(ns_slash_name));
	return sl->key ? sl->val : NULL;
}
