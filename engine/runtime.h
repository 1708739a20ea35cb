/* runtime.h - what main, the control thread and the shards share.
 *
 * Nothing here is mutable on the data path except through atomics whose
 * ordering is commented where they are used. There is one zt_runtime per
 * process, created by main and passed to every thread (no globals).
 */
#ifndef ZT_RUNTIME_H
#define ZT_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/qsbr.h"
#include "xds/snapshot.h"

struct zt_shard;
struct zt_certstore;

enum zt_proxy_mode {
	ZT_MODE_DEDICATED = 0, /* serve the netns zring runs in (PROXY_MODE=dedicated) */
	ZT_MODE_SHARED,        /* every pod of the node, handed over by istio-cni (ZDS) */
};

/* A pod handed over by istio-cni. Created by the control thread, which opens
 * its listeners inside the pod's network namespace; read by shards. Fields
 * are immutable after zt_shard_post(ADD); `refs` counts the shards that have
 * not yet let go of it after DEL (the control thread frees it at zero). */
struct zt_pod {
	char uid[257], name[257], namespace_[257], service_account[257];
	char key[516]; /* "namespace/name": the pod's workload in the snapshot */
	int netns_fd;
	/* Listeners: outbound (15001), inbound plaintext (15006), HBONE (15008).
	 * Shared: lfd[k] for every shard. Per shard: lfd[3 * shard + k]. */
	int *lfd;
	unsigned n_lfd;
	_Atomic unsigned refs;
	bool seen;  /* control thread: announced since the last (re)connect */
	bool deleting;
	struct zt_pod *next; /* control thread's list */
};

struct zt_xds_kv;

struct zt_engine_opts {
	unsigned n_shards;          /* 0 = one per CPU zring may run on */
	bool pin;                   /* pin shard i to the i-th allowed CPU */
	uint32_t buf_size;          /* bytes per provided buffer */
	uint32_t buf_count;         /* buffers per shard (power of two) */
	uint32_t conn_buf_cap;      /* bytes queued per direction before reads pause */
	uint32_t connect_timeout_ms;
	uint32_t drain_ms;          /* SIGTERM: how long open connections may finish */
	uint16_t outbound_port;     /* 15001 */
	uint16_t inbound_port;      /* 15006 */
	uint16_t readiness_port;    /* 15021 */
	uint16_t metrics_port;      /* 15020 */
	const char *config_path;    /* LOCAL_XDS_PATH */
	enum zt_proxy_mode mode;    /* PROXY_MODE */
	const char *inpod_uds;      /* INPOD_UDS */
	bool pod_listeners_per_shard; /* --pod-listeners per-shard (else shared) */
	uint32_t cert_ttl_s;        /* workload certificate lifetime (24 h) */
	const char *ca_cert_path;   /* embedded CA root: load, or generate and save */
	const char *ca_key_path;
	uint32_t busy_poll_us;      /* --busy-poll: look for completions this long before sleeping */
	bool busy_poll_replies;     /* --busy-poll-mode replies: only while a reply is expected */
	/* istiod (engine/xdsclient.c): xds_address NULL = no xDS */
	const char *xds_address;    /* XDS_ADDRESS */
	const char *xds_root_cert;  /* XDS_ROOT_CA */
	const char *token_path;     /* istio-token (bearer for istiod) */
	const char *cluster_id;     /* CLUSTER_ID: the "clusterid" header */
	char *node_id;              /* ztunnel~<INSTANCE_IP>~<POD_NAME>.<NS>~<NS>.svc.<domain> */
	struct zt_xds_kv *node_meta; /* Node.metadata */
	size_t n_node_meta;
	/* istiod's CA (engine/caclient.c): ca_address NULL = the embedded CA */
	const char *ca_address;     /* CA_ADDRESS */
	const char *ca_root_cert;   /* CA_ROOT_CA: TLS roots and the mesh's trust roots */
	const char *node_name;      /* NODE_NAME: istiod's CA signs for this node's workloads */
};

/* io_uring features, probed once at start by main (zt_uring_probe). */
struct zt_uring_features {
	bool multishot_accept; /* else one accept per SQE, re-armed */
	bool buf_ring;         /* provided buffer rings (required) */
	bool defer_taskrun;
	bool multishot_recv;   /* recv multishot with provided buffers (6.0+) */
};

struct zt_runtime {
	struct zt_engine_opts opts;
	struct zt_uring_features uring;
	/* Current snapshot. Written by the control thread (zt_rcu_publish),
	 * read by shards (zt_rcu_deref) between qsbr online and quiescent. */
	ZT_RCU(struct zt_snapshot *) snapshot;
	/* Certificates of the identities this node serves (HBONE), published
	 * like the snapshot by the control thread. */
	ZT_RCU(struct zt_certstore *) certs;
	struct zt_qsbr qsbr; /* reader i = shard i */
	/* Set once by main on SIGTERM; shards poll it after a wake-up. */
	_Atomic bool draining;
	/* Monotonic ms at which draining shards abort what is left. */
	_Atomic uint64_t drain_deadline_ms;
	/* Set by the control thread when the first config is loaded. */
	_Atomic bool config_ready;
	/* Count of shards whose listeners are open. */
	_Atomic unsigned shards_listening;
	/* The network namespace zring started in: shards return to it after
	 * creating a socket inside a pod's namespace. */
	int host_netns_fd;
	/* Shared mode: set by the control thread once istio-cni's first
	 * snapshot has been processed (readiness). */
	_Atomic bool pods_ready;
	struct zt_shard **shards;
	unsigned n_shards;
};

#endif
