/* main.c - zring's entry point: options, logging, crypto, the control thread,
 * the shards, signals and draining. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/control.h"
#include "engine/runtime.h"
#include "engine/shard.h"
#include "engine/xdsclient.h"
#include "engine/zds.h"
#include "hbone/certstore.h"
#include "hbone/crypto.h"
#include "hbone/h2conn.h"

#define TARGET "zring"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: zring [options]\n"
		"  --config FILE        local config (ztunnel format, YAML or JSON)  [LOCAL_XDS_PATH]\n"
		"  --shards N           shard threads, one per CPU by default        [ZTUNNEL_WORKER_THREADS]\n"
		"  --no-pin             do not pin shards to CPUs\n"
		"  --log-level SPEC     e.g. info or info,access=warn                [RUST_LOG]\n"
		"  --log-json           JSON log lines                               [LOG_FORMAT=json]\n"
		"  --buf-size BYTES     provided buffer size (default 1044480)\n"
		"  --buf-count N        provided buffers per shard, power of two (default 16)\n"
		"  --conn-buf BYTES     unsent bytes per direction before reads pause (default 2097152)\n"
		"  --connect-timeout MS upstream connect timeout (default 10000)\n"
		"  --tls-records M      HBONE records after the handshake: \"own\" (sealed and opened\n"
		"                       by zring; the default when wolfSSL allows) or \"wolfssl\"\n"
		"  --busy-poll US       after handling events, poll up to US microseconds for more\n"
		"                       before sleeping (spends CPU for latency; default 0 = off)\n"
		"  --busy-poll-mode M   \"events\": poll after any events (the default); \"replies\":\n"
		"                       only after forwarding data toward an upstream, which a reply\n"
		"                       usually follows, and sleep between requests\n"
		"  --drain-seconds S    drain deadline on SIGTERM   [TERMINATION_GRACE_PERIOD_SECONDS rule]\n"
		"  --ca-cert F --ca-key F  embedded CA root: loaded if F exists, else generated and\n"
		"                       saved there (zrings sharing one root trust each other)\n"
		"  --cert-ttl S         workload certificate lifetime (default 86400; renewed at half)\n"
		"  --pod-listeners M    shared mode: \"per-shard\" (a set of listeners per shard and\n"
		"                       pod, SO_REUSEPORT; default) or \"shared\" (one set per pod)\n"
		"  --outbound-port P / --inbound-port P / --readiness-port P / --metrics-port P\n"
		"                       (15001 / 15006 / 15021 / 15020)\n"
		"Environment: PROXY_MODE=dedicated|shared (shared: pods from istio-cni over INPOD_UDS,\n"
		"default " ZT_ZDS_DEFAULT_PATH "). istiod: XDS_ADDRESS (default\n"
		"https://istiod.istio-system.svc:15012 inside Kubernetes without LOCAL_XDS_PATH, else\n"
		"off; \"\" = off), XDS_ROOT_CA, CLUSTER_ID, CLUSTER_DOMAIN, POD_NAME, POD_NAMESPACE,\n"
		"INSTANCE_IP, NODE_NAME, ISTIO_META_*; CA_ADDRESS (same default; FAKE_CA=true or\n"
		"--ca-cert: the embedded CA), CA_ROOT_CA (README: \"istiod\").\n");
}

static int parse_u32(const char *what, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "zring: %s: \"%s\" is not a number in %u..%u\n", what, s, min, max);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* ztunnel's rule: grace > 10 s leaves 5 s of margin, else 1 s (at least 1 s). */
static uint32_t drain_from_grace(uint32_t grace)
{
	if (grace > 10)
		return grace - 5;
	return grace > 1 ? grace - 1 : 1;
}

static unsigned cpus_allowed(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

#define ROOT_CERT_DEFAULT "./var/run/secrets/istio/root-cert.pem"
#define ISTIOD_DEFAULT "https://istiod.istio-system.svc:15012"

/* The value of environment variable `name`, or dflt when unset or empty. */
static const char *env_or(const char *name, const char *dflt)
{
	const char *e = getenv(name);
	return e && *e ? e : dflt;
}

/* istiod's address from environment variable `name` (XDS_ADDRESS or
 * CA_ADDRESS), with ztunnel's rules: "" = off; unset = istiod's service
 * inside Kubernetes when there is no local config, else off; an address
 * without a scheme is https. Into buf; NULL when off. */
static const char *istiod_address(const char *name, const struct zt_engine_opts *o, char *buf,
				  size_t cap)
{
	const char *e = getenv(name);
	if (e && !*e)
		return NULL;
	if (!e) {
		if (o->config_path || !getenv("KUBERNETES_SERVICE_HOST"))
			return NULL;
		e = ISTIOD_DEFAULT;
	}
	snprintf(buf, cap, "%s%s", strstr(e, "://") ? "" : "https://", e);
	return buf;
}

/* What the xDS and CA clients share: the token file and the cluster id. */
static void istiod_common(struct zt_engine_opts *o)
{
	o->token_path = "./var/run/secrets/tokens/istio-token";
	o->cluster_id = env_or("CLUSTER_ID", env_or("ISTIO_META_CLUSTER_ID", "Kubernetes"));
}

/* istiod's CA (ztunnel's rules, src/config.rs): FAKE_CA=true, CA_ADDRESS="",
 * --ca-cert/--ca-key or a local config outside Kubernetes keep the embedded
 * CA; CA_ADDRESS set, or inside Kubernetes without a local config, use
 * istiod's. */
static void ca_from_env(struct zt_engine_opts *o)
{
	static char addr[512];
	const char *fake = getenv("FAKE_CA");
	if ((fake && !strcmp(fake, "true")) || o->ca_cert_path ||
	    !(o->ca_address = istiod_address("CA_ADDRESS", o, addr, sizeof(addr))))
		return;
	o->node_name = env_or("NODE_NAME", NULL);
	o->ca_root_cert = env_or("CA_ROOT_CA", ROOT_CERT_DEFAULT);
	istiod_common(o);
}

/* istiod's address and the node's description, with ztunnel's variables and
 * defaults (src/config.rs). xDS is off when LOCAL_XDS_PATH names a file
 * (zring takes one source of config), when XDS_ADDRESS is set empty, and
 * outside Kubernetes unless XDS_ADDRESS is set. */
static int xds_from_env(struct zt_engine_opts *o)
{
	static char addr[512];
	if (!(o->xds_address = istiod_address("XDS_ADDRESS", o, addr, sizeof(addr))))
		return 0;
	istiod_common(o);
	o->xds_root_cert = env_or("XDS_ROOT_CA", ROOT_CERT_DEFAULT);
	const char *ip = env_or("INSTANCE_IP", ""), *pod = env_or("POD_NAME", ""),
		   *ns = env_or("POD_NAMESPACE", ""), *node = env_or("NODE_NAME", ""),
		   *dom = env_or("CLUSTER_DOMAIN", "cluster.local");
	size_t idl = strlen(ip) + strlen(pod) + 2 * strlen(ns) + strlen(dom) + 32;
	/* kept for the process's life (static: reachable, not a leak) */
	static char *node_id;
	static struct zt_xds_kv *meta;
	if (!(o->node_id = node_id = malloc(idl)))
		return -ENOMEM;
	snprintf(o->node_id, idl, "ztunnel~%s~%s.%s~%s.svc.%s", ip, pod, ns, ns, dom);
	extern char **environ;
	size_t n = 4;
	for (char **ev = environ; *ev; ev++)
		n += !strncmp(*ev, "ISTIO_META_", 11);
	if (!(o->node_meta = meta = calloc(n, sizeof(*o->node_meta))))
		return -ENOMEM;
	struct zt_xds_kv *m = o->node_meta;
	size_t k = 0;
	if (*pod)
		m[k++] = (struct zt_xds_kv){"NAME", pod};
	if (*ns)
		m[k++] = (struct zt_xds_kv){"NAMESPACE", ns};
	if (*ip)
		m[k++] = (struct zt_xds_kv){"INSTANCE_IPS", ip};
	if (*node)
		m[k++] = (struct zt_xds_kv){"NODE_NAME", node};
	for (char **ev = environ; *ev && k < n; ev++) {
		const char *eq = strchr(*ev, '=');
		if (strncmp(*ev, "ISTIO_META_", 11) || !eq || eq == *ev + 11)
			continue;
		char *key = strndup(*ev + 11, (size_t)(eq - *ev - 11));
		if (!key)
			return -ENOMEM;
		m[k++] = (struct zt_xds_kv){key, eq + 1};
	}
	o->n_node_meta = k;
	return 0;
}

int main(int argc, char **argv)
{
	struct zt_runtime rt = {0};
	struct zt_engine_opts *o = &rt.opts;
	const char *log_spec = getenv("RUST_LOG");
	const char *fmt = getenv("LOG_FORMAT");
	bool json = fmt && !strcmp(fmt, "json");
	uint32_t v, drain_s = 5;
	int tls_records = -1; /* --tls-records: -1 default, 0 wolfssl, 1 own */

	*o = (struct zt_engine_opts){
		.pin = true,
		/* 1 MiB less a page: buffers of exactly 1 MiB moved 4% less
		 * through a plain pair (bench/RESULTS.md, 2026-11-26 10:09). */
		.buf_size = 1044480,
		.buf_count = 16,
		.conn_buf_cap = 2097152,
		.connect_timeout_ms = 10000,
		.outbound_port = 15001,
		.inbound_port = 15006,
		.readiness_port = 15021,
		.metrics_port = 15020,
		.cert_ttl_s = 24 * 3600,
		/* measured (bench/pod_listeners.py): one shared set sends every
		 * accept to one shard; a set per shard splits them evenly */
		.pod_listeners_per_shard = true,
		.config_path = getenv("LOCAL_XDS_PATH"),
	};
	const char *e;
	if ((e = getenv("ZTUNNEL_WORKER_THREADS")) &&
	    parse_u32("ZTUNNEL_WORKER_THREADS", e, 1, 1024, &o->n_shards))
		return 2;
	if ((e = getenv("TERMINATION_GRACE_PERIOD_SECONDS"))) {
		if (parse_u32("TERMINATION_GRACE_PERIOD_SECONDS", e, 0, 86400, &v))
			return 2;
		drain_s = drain_from_grace(v);
	}
	if ((e = getenv("PROXY_MODE"))) {
		if (!strcmp(e, "shared"))
			o->mode = ZT_MODE_SHARED;
		else if (strcmp(e, "dedicated")) {
			fprintf(stderr, "zring: PROXY_MODE=%s: want \"shared\" or \"dedicated\"\n", e);
			return 2;
		}
	}
	o->inpod_uds = getenv("INPOD_UDS");
	if (!o->inpod_uds || !*o->inpod_uds)
		o->inpod_uds = ZT_ZDS_DEFAULT_PATH;

	enum { O_SHARDS = 256, O_NOPIN, O_LOG, O_JSON, O_BUFSZ, O_BUFN, O_CONNBUF, O_CTO, O_DRAIN,
	       O_OUT, O_IN, O_READY, O_METRICS, O_CACERT, O_CAKEY, O_CERTTTL, O_PODL, O_BUSY, O_BUSYMODE, O_TLSREC };
	static const struct option lo[] = {
		{"config", required_argument, NULL, 'c'},
		{"shards", required_argument, NULL, O_SHARDS},
		{"no-pin", no_argument, NULL, O_NOPIN},
		{"log-level", required_argument, NULL, O_LOG},
		{"log-json", no_argument, NULL, O_JSON},
		{"buf-size", required_argument, NULL, O_BUFSZ},
		{"buf-count", required_argument, NULL, O_BUFN},
		{"conn-buf", required_argument, NULL, O_CONNBUF},
		{"connect-timeout", required_argument, NULL, O_CTO},
		{"drain-seconds", required_argument, NULL, O_DRAIN},
		{"outbound-port", required_argument, NULL, O_OUT},
		{"inbound-port", required_argument, NULL, O_IN},
		{"readiness-port", required_argument, NULL, O_READY},
		{"metrics-port", required_argument, NULL, O_METRICS},
		{"ca-cert", required_argument, NULL, O_CACERT},
		{"ca-key", required_argument, NULL, O_CAKEY},
		{"cert-ttl", required_argument, NULL, O_CERTTTL},
		{"pod-listeners", required_argument, NULL, O_PODL},
		{"busy-poll", required_argument, NULL, O_BUSY},
		{"busy-poll-mode", required_argument, NULL, O_BUSYMODE},
		{"tls-records", required_argument, NULL, O_TLSREC},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
		int r = 0;
		switch (ch) {
		case 'c': o->config_path = optarg; break;
		case O_SHARDS: r = parse_u32("--shards", optarg, 1, 1024, &o->n_shards); break;
		case O_NOPIN: o->pin = false; break;
		case O_LOG: log_spec = optarg; break;
		case O_JSON: json = true; break;
		case O_BUFSZ: r = parse_u32("--buf-size", optarg, 4096, 1 << 20, &o->buf_size); break;
		case O_BUFN: r = parse_u32("--buf-count", optarg, 16, 32768, &o->buf_count); break;
		case O_CONNBUF: r = parse_u32("--conn-buf", optarg, 4096, 1 << 30, &o->conn_buf_cap); break;
		case O_BUSY: r = parse_u32("--busy-poll", optarg, 0, 100000, &o->busy_poll_us); break;
		case O_CTO: r = parse_u32("--connect-timeout", optarg, 1, 600000, &o->connect_timeout_ms); break;
		case O_DRAIN: r = parse_u32("--drain-seconds", optarg, 0, 86400, &drain_s); break;
		case O_OUT: r = parse_u32("--outbound-port", optarg, 1, 65535, &v); o->outbound_port = (uint16_t)v; break;
		case O_IN: r = parse_u32("--inbound-port", optarg, 1, 65535, &v); o->inbound_port = (uint16_t)v; break;
		case O_READY: r = parse_u32("--readiness-port", optarg, 1, 65535, &v); o->readiness_port = (uint16_t)v; break;
		case O_METRICS: r = parse_u32("--metrics-port", optarg, 1, 65535, &v); o->metrics_port = (uint16_t)v; break;
		case O_CACERT: o->ca_cert_path = optarg; break;
		case O_CAKEY: o->ca_key_path = optarg; break;
		case O_BUSYMODE:
			if (strcmp(optarg, "events") && strcmp(optarg, "replies")) {
				fprintf(stderr, "zring: --busy-poll-mode: want events or replies\n");
				return 2;
			}
			o->busy_poll_replies = !strcmp(optarg, "replies");
			break;
		case O_TLSREC:
			if (strcmp(optarg, "own") && strcmp(optarg, "wolfssl")) {
				fprintf(stderr, "zring: --tls-records: want own or wolfssl\n");
				return 2;
			}
			tls_records = !strcmp(optarg, "own");
			break;
		case O_PODL:
			if (!strcmp(optarg, "per-shard"))
				o->pod_listeners_per_shard = true;
			else if (!strcmp(optarg, "shared"))
				o->pod_listeners_per_shard = false;
			else {
				fprintf(stderr, "zring: --pod-listeners: want shared or per-shard\n");
				return 2;
			}
			break;
		case O_CERTTTL: r = parse_u32("--cert-ttl", optarg, 2, 365 * 86400, &o->cert_ttl_s); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (r)
			return 2;
	}
	bool own_records = zt_h2c_own_records_default(tls_records != 0);
	if (tls_records == 1 && !own_records) {
		fprintf(stderr, "zring: --tls-records own: this wolfSSL lacks the secret callback "
				"or streaming AES-GCM (scripts/build-wolfssl.sh builds one that has both)\n");
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "zring: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	ca_from_env(o);
	if (xds_from_env(o)) {
		fprintf(stderr, "zring: out of memory\n");
		return 2;
	}
	if (o->buf_count & (o->buf_count - 1)) {
		fprintf(stderr, "zring: --buf-count %u is not a power of two\n", o->buf_count);
		return 2;
	}
	o->drain_ms = drain_s * 1000;
	if (!o->n_shards)
		o->n_shards = cpus_allowed();
	zt_log_set_fd(1); /* ztunnel logs to stdout */
	if (zt_log_configure(log_spec, json)) {
		fprintf(stderr, "zring: bad log level spec \"%s\"\n", log_spec);
		return 2;
	}

	/* Signals go to main only: block them before any thread starts. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	char crypto[256];
	if (zt_crypto_init(crypto, sizeof(crypto)) == 0)
		ZT_INFO(TARGET, "crypto: %s; HBONE records after the handshake: %s", crypto,
			own_records ? "zring's own (AES-GCM straight between its buffers)" : "wolfSSL's");
	else
		ZT_WARN(TARGET, "crypto: wolfSSL failed to initialise (%s)", crypto);
	ZT_INFO(TARGET, "zring starting: version=0.1.0 mode=%s shards=%u pinned=%s",
		o->mode == ZT_MODE_SHARED ? "shared" : "dedicated", o->n_shards,
		o->pin ? "true" : "false");
	rt.host_netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (rt.host_netns_fd < 0 && o->mode == ZT_MODE_SHARED) {
		ZT_ERROR(TARGET, "shared mode needs /proc/self/ns/net: %s", strerror(errno));
		return 1;
	}

	if (zt_uring_probe(&rt.uring))
		return 1;
	rt.n_shards = o->n_shards;
	if (zt_qsbr_init(&rt.qsbr, rt.n_shards))
		return 1;
	struct zt_control *ctl = NULL;
	int r = zt_control_start(&rt, &ctl);
	if (r)
		return 1; /* the reason is logged */

	rt.shards = calloc(rt.n_shards, sizeof(*rt.shards));
	for (unsigned i = 0; i < rt.n_shards; i++) {
		rt.shards[i] = zt_shard_new(&rt, i);
		if (!rt.shards[i] || zt_shard_start(rt.shards[i])) {
			ZT_ERROR(TARGET, "cannot start shard %u", i);
			return 1;
		}
	}
	if (zt_control_run(ctl)) {
		ZT_ERROR(TARGET, "cannot start the control thread");
		return 1;
	}

	/* Wait for SIGTERM/SIGINT, or a shard that failed to start. */
	int exit_code = 0;
	for (;;) {
		struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
		int sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig > 0) {
			ZT_INFO(TARGET, "received %s, draining for up to %u s", strsignal(sig), drain_s);
			break;
		}
		if (atomic_load_explicit(&rt.draining, memory_order_relaxed)) {
			exit_code = 1; /* a shard failed; it logged why */
			break;
		}
	}
	/* relaxed: shards re-read both after the wake-up below */
	atomic_store_explicit(&rt.drain_deadline_ms, zt_now_ms() + o->drain_ms, memory_order_relaxed);
	atomic_store_explicit(&rt.draining, true, memory_order_release);
	for (unsigned i = 0; i < rt.n_shards; i++)
		zt_shard_wake(rt.shards[i]);
	for (unsigned i = 0; i < rt.n_shards; i++)
		zt_shard_join(rt.shards[i]);
	zt_control_stop(ctl);

	struct zt_snapshot *last = zt_rcu_publish(&rt.snapshot, NULL);
	struct zt_certstore *certs = zt_rcu_publish(&rt.certs, NULL);
	zt_qsbr_destroy(&rt.qsbr);
	zt_snapshot_free(last);
	zt_certstore_free(certs);
	free(rt.shards);
	zt_crypto_cleanup();
	ZT_INFO(TARGET, "zring stopped");
	return exit_code;
}
