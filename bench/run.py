#!/usr/bin/python3
"""zring benchmark harness: direct TCP vs zring vs HAProxy (vs nghttpx), side by side, one run.

Topology (all traffic stays inside two network namespaces this script creates):

    zbc (client ns, 10.77.0.1)  --veth-->  zbs (server ns, 10.77.0.2)
    load generators                         iperf3 -s :5201, zbench echo server :9000

Paths ("configs"):
    direct        no capture rule, no proxy
    zring         zring in zbc (outbound 15001, iptables OUTPUT REDIRECT, SO_MARK 1337)
    zring-log     the same with access logs on (RUST_LOG=info), written to a file
    haproxy1      one HAProxy in zbc (same capture rule shape, to :15101) - 1 proxy
    zring-pair    zring in zbc (outbound) + zring in zbs (inbound 15006, PREROUTING REDIRECT)
    haproxy-pair  HAProxy in zbc + HAProxy in zbs (PREROUTING REDIRECT to :15106), plain TCP
    haproxy-mtls  HAProxy mTLS pair (TLS 1.3, client certs, PROXY v2 carries the destination)
    zring-hbone   zring in zbc (outbound 15001) + zring in zbs, both workloads protocol HBONE:
                  mTLS 1.3 + HTTP/2 CONNECT to 10.77.0.2:15008, one CA root (--ca-cert/--ca-key)
    zring-poll, zring-pair-poll, zring-hbone-poll
                  the same three zring paths with --busy-poll 50 (not in the default set)
    zring-replies, zring-pair-replies, zring-hbone-replies
                  the same three zring paths with --busy-poll 50 --busy-poll-mode replies
                  (not in the default set)
    nghttpx-pair  HTTP/2 CONNECT over mTLS with nghttpx: zconnect shim (captured TCP -> HTTP/1
                  CONNECT) -> nghttpx -s (h2+TLS backend, client cert) -> :15008 nghttpx -s
                  (verify-client) -> zconnect terminator (HTTP/1 CONNECT -> TCP)
    connect-pair  the two zconnect ends alone, plain HTTP/1 CONNECT, no TLS (calibration)

Every (config, repetition) gets fresh namespaces, fresh servers and fresh proxies;
repetitions are interleaved across configs so drift hits all paths alike.
Run as root: bench/run.sh [--quick] [options]; see bench/README.md.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NS_C, NS_S = "zbc", "zbs"
IF_C, IF_S = "zbc0", "zbs0"
IP_C, IP_S = "10.77.0.1", "10.77.0.2"
PORT_IPERF, PORT_ECHO = 5201, 9000
ZRING_MARK = "0x539/0xfff"
# Local config for every zring of the bench: the two "pods" as plain-TCP workloads (inbound
# 15006 only serves known workloads, as ztunnel does). Outbound to a TCP workload is a plain
# passthrough to the original destination.
ZRING_CONFIG_T = """\
# written by bench/run.py
workloads:
- uid: Kubernetes//Pod/bench/client
  name: client
  namespace: bench
  serviceAccount: client
  workloadIps: ["%(c)s"]
  protocol: %(proto)s
- uid: Kubernetes//Pod/bench/server
  name: server
  namespace: bench
  serviceAccount: server
  workloadIps: ["%(s)s"]
  protocol: %(proto)s
"""
ZRING_CONFIG = ZRING_CONFIG_T % {"c": "10.77.0.1", "s": "10.77.0.2", "proto": "TCP"}
# The HBONE path: both workloads protocol HBONE, so the client zring tunnels to the
# server's 15008 (mTLS + HTTP/2 CONNECT) and the server zring terminates the tunnel.
ZRING_HBONE_CONFIG = ZRING_CONFIG_T % {"c": "10.77.0.1", "s": "10.77.0.2", "proto": "HBONE"}
HBONE_PORT = 15008

ALL_CONFIGS = ["direct", "zring", "zring-log", "zring-buf256k", "zring-poll", "zring-replies", "haproxy1", "zring-pair",
               "zring-pair-poll", "zring-pair-replies", "haproxy-pair", "haproxy-mtls", "zring-hbone",
               "zring-hbone-poll", "zring-hbone-replies",
               "nghttpx-pair", "connect-pair"]
# --busy-poll of the *-poll and *-replies paths (microseconds).
BUSY_POLL_US = 50
DEFAULT_CONFIGS = ["direct", "zring", "zring-log", "haproxy1", "zring-pair", "haproxy-pair"]
# --hbone adds these (issue 4: zring's HBONE against the two mTLS peers).
HBONE_CONFIGS = ["zring-hbone", "haproxy-mtls", "nghttpx-pair"]
PROXIES = {"direct": 0, "zring": 1, "zring-log": 1, "zring-buf256k": 1, "zring-poll": 1, "zring-replies": 1,
           "haproxy1": 1,
           "zring-pair": 2, "zring-pair-poll": 2, "zring-pair-replies": 2, "haproxy-pair": 2,
           "haproxy-mtls": 2, "zring-hbone": 2, "zring-hbone-poll": 2, "zring-hbone-replies": 2,
           "nghttpx-pair": 2, "connect-pair": 2}
# HAProxy path with the same number of proxies, for the "x HAProxy (same count)" column
# (for the tunnelled paths: the HAProxy mTLS pair).
SAME_COUNT_PEER = {"zring": "haproxy1", "zring-log": "haproxy1", "zring-buf256k": "haproxy1", "zring-poll": "haproxy1",
                   "zring-replies": "haproxy1",
                   "zring-pair": "haproxy-pair", "zring-pair-poll": "haproxy-pair",
                   "zring-pair-replies": "haproxy-pair",
                   "zring-hbone": "haproxy-mtls", "zring-hbone-poll": "haproxy-mtls",
                   "zring-hbone-replies": "haproxy-mtls",
                   "nghttpx-pair": "haproxy-mtls", "connect-pair": "haproxy-pair"}
# Paths that must carry every connection over a tunnel port: checked once per trial setup.
TUNNEL_PORT = {"zring-hbone": HBONE_PORT, "zring-hbone-poll": HBONE_PORT, "zring-hbone-replies": HBONE_PORT,
               "nghttpx-pair": HBONE_PORT,
               "haproxy-mtls": 15108}
DESCR = {
    "direct": "direct TCP (no proxy)",
    "zring": "zring, 1 proxy (client ns), plain relay",
    "zring-log": "zring, 1 proxy, access log on (RUST_LOG=info, to a file)",
    "zring-buf256k": "zring, 1 proxy, `--buf-size 262144 --buf-count 64 --conn-buf 524288` (the defaults "
                     "until 2026-11-26 08:35; now 1 MiB x 16 and 2 MiB)",
    "zring-poll": "zring, 1 proxy, `--busy-poll %d`" % BUSY_POLL_US,
    "zring-replies": "zring, 1 proxy, `--busy-poll %d --busy-poll-mode replies` (polls only after "
                     "forwarding a request)" % BUSY_POLL_US,
    "zring-pair-poll": "zring pair, both `--busy-poll %d`" % BUSY_POLL_US,
    "zring-hbone-poll": "zring HBONE pair, both `--busy-poll %d`" % BUSY_POLL_US,
    "zring-pair-replies": "zring pair, both `--busy-poll %d --busy-poll-mode replies`" % BUSY_POLL_US,
    "zring-hbone-replies": "zring HBONE pair, both `--busy-poll %d --busy-poll-mode replies`" % BUSY_POLL_US,
    "haproxy1": "HAProxy, 1 proxy (client ns), plain TCP",
    "zring-pair": "zring pair: outbound 15001 (client ns) + inbound 15006 (server ns)",
    "haproxy-pair": "HAProxy pair, plain TCP (client ns + server ns)",
    "haproxy-mtls": "HAProxy pair, mTLS (TLS 1.3, client certs)",
    "zring-hbone": "zring HBONE pair: outbound 15001 (client ns) → mTLS 1.3 + HTTP/2 CONNECT to :15008 → "
                   "zring (server ns) → the server; both workloads `protocol: HBONE`, one CA root",
    "nghttpx-pair": "nghttpx HTTP/2 CONNECT pair over mTLS 1.3 (`-s`, client certs), each `-n 1`; nghttpx takes "
                    "no raw TCP, so two single-thread zconnect helpers (captured TCP → HTTP/1 CONNECT on the "
                    "client side, HTTP/1 CONNECT → TCP on the server side, unix sockets) are part of the path, "
                    "and of its CPU and RSS",
    "connect-pair": "the two zconnect helpers alone: plain HTTP/1.1 CONNECT client ns → server ns, no TLS "
                    "(calibration: what the nghttpx path's helpers cost)",
}

PROCS = []          # Popen objects this script started (killed by pid on teardown)
COMMANDS = {}       # label -> command line, for the report
LOG = None


def log(*a):
    msg = " ".join(str(x) for x in a)
    print(msg, flush=True)
    if LOG:
        LOG.write(msg + "\n")
        LOG.flush()


def sh(cmd, timeout=30, check=True, ns=None, capture=True, env=None, stdin=None):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, timeout=timeout, capture_output=capture, text=True, env=env,
                       stdin=stdin if stdin is not None else subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s%s" % (
            r.returncode, shlex.join(cmd), r.stdout or "", r.stderr or ""))
    return r.stdout if capture else ""


def spawn(cmd, ns=None, env=None, stdout=None, stdin=subprocess.DEVNULL):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    # ip netns exec and taskset both exec(), so the pid is the program's own pid.
    p = subprocess.Popen(cmd, env=env, stdout=stdout if stdout is not None else subprocess.DEVNULL,
                         stderr=subprocess.STDOUT if stdout is not None else subprocess.DEVNULL,
                         stdin=stdin, text=True)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait=5):
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
            p.wait(timeout=wait)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(reversed(PROCS)):
        stop(p)


def ns_exists(ns):
    return ns in sh(["ip", "netns", "list"], check=False).split()


def ns_down():
    for ns in (NS_C, NS_S):
        if ns_exists(ns):
            sh(["ip", "netns", "del", ns], check=False)


def ns_up(args):
    ns_down()
    sh(["ip", "netns", "add", NS_C])
    sh(["ip", "netns", "add", NS_S])
    sh(["ip", "link", "add", IF_C, "netns", NS_C, "type", "veth", "peer", "name", IF_S, "netns", NS_S])
    for ns, ifn, ip in ((NS_C, IF_C, IP_C), (NS_S, IF_S, IP_S)):
        sh(["ip", "link", "set", "lo", "up"], ns=ns)
        sh(["ip", "addr", "add", ip + "/24", "dev", ifn], ns=ns)
        if args.mtu:
            sh(["ip", "link", "set", ifn, "mtu", str(args.mtu)], ns=ns)
        sh(["ip", "link", "set", ifn, "up"], ns=ns)
        # Many short connections: wide port range, reuse TIME_WAIT ports for new connects.
        sh(["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=10000 65000",
            "net.ipv4.tcp_tw_reuse=1"], ns=ns)


def wait_until(fn, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def listening(ns, port):
    out = sh(["ss", "-Hltn", "sport = :%d" % port], ns=ns, check=False)
    return bool(out.strip())


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Env:
    """Tools, paths and options shared by all trials."""

    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.zbench = find_tool(args, "zbench", ["-lpthread"])
        self.zconnect = None   # built on demand (nghttpx-pair, connect-pair)
        self.zring = args.zring
        self.pki = None
        # One CA root for every zring of the HBONE path (the first zring started generates it).
        self.ca = (os.path.join(args.out, "zring-ca", "root.pem"), os.path.join(args.out, "zring-ca", "root.key"))
        self.set_placement("none")

    def set_placement(self, pl):
        # split: load generators and servers on CPU 0, proxies on CPU 1.
        # one:   everything on CPU 0 (a cost comparison, no cross-core wake-ups).
        # none:  the scheduler decides (zring gets --no-pin so it floats like HAProxy).
        self.placement = pl
        self.load_cpu = {"none": None, "split": 0, "one": 0}[pl]
        self.proxy_cpu = {"none": None, "split": 1, "one": 0}[pl]

    def pin(self, cmd, proxy=False):
        cpu = self.proxy_cpu if proxy else self.load_cpu
        return cmd if cpu is None else ["taskset", "-c", str(cpu)] + cmd


def find_tool(args, name, libs=()):
    """build/bench/NAME if it is at least as new as bench/NAME.c, else compile it into out/."""
    built = os.path.join(ROOT, "build", "bench", name)
    src = os.path.join(HERE, name + ".c")
    if os.path.exists(built) and os.path.getmtime(built) >= os.path.getmtime(src):
        return built
    dst = os.path.join(args.out, name)
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        sh(["cc", "-O2", "-Wall", "-D_GNU_SOURCE", "-o", dst, src] + list(libs), timeout=120)
    return dst


class Trial:
    """Fresh namespaces + servers + the proxies of one config."""

    def __init__(self, env, config, tag):
        self.env, self.config, self.tag = env, config, tag
        self.proxies = []   # (name, Popen): everything the path adds, helpers included
        self.helpers = set()  # names of self.proxies that are helpers (zconnect), not proxies
        self.servers = []
        self.logs = []
        self.tunnel_check = None
        self.files = []       # unix sockets to remove at the end

    def __enter__(self):
        e = self.env
        ns_up(e.args)
        self.servers.append(spawn(e.pin(["iperf3", "-s", "-p", str(PORT_IPERF)]), ns=NS_S))
        self.servers.append(spawn(e.pin([e.zbench, "server", "-p", str(PORT_ECHO), "-t", "1"]), ns=NS_S))
        wait_until(lambda: listening(NS_S, PORT_IPERF) and listening(NS_S, PORT_ECHO), 10, "servers")
        getattr(self, "setup_" + self.config.replace("-", "_"))()
        if self.config in TUNNEL_PORT:
            self.verify_tunnel(TUNNEL_PORT[self.config])
        return self

    def __exit__(self, *exc):
        for _, p in self.proxies:
            stop(p)
        for p in self.servers:
            stop(p)
        for f in self.files:
            if os.path.exists(f):
                os.unlink(f)
        ns_down()
        return False

    # -- configs
    def setup_direct(self):
        pass

    def _zring(self, ns, name, log_on, extra=(), config=ZRING_CONFIG, cfg_name="zring-config.yaml"):
        e = self.env
        cfg = os.path.join(e.out, cfg_name)
        with open(cfg, "w") as f:
            f.write(config)
        env = dict(os.environ)
        env["RUST_LOG"] = "info" if log_on else e.args.zring_log
        env.pop("LOG_FORMAT", None)
        cmd = [e.zring, "--config", cfg, "--shards", "1"] + list(extra) + e.args.zring_arg
        if e.placement == "none":
            cmd.append("--no-pin")
        logf = open(os.path.join(e.out, "logs", "%s-%s-%s.log" % (name, e.placement, self.tag)), "w")
        self.logs.append(logf.name)
        p = spawn(e.pin(cmd, proxy=True), ns=ns, env=env, stdout=logf)
        COMMANDS["zring (%s)" % name] = "RUST_LOG=%s ip netns exec %s %s" % (
            env["RUST_LOG"], ns, shlex.join([c for c in cmd if c != "--no-pin"]))
        self.proxies.append((name, p))

        def ready():
            if p.poll() is not None:
                raise RuntimeError("zring (%s) exited with %s; log in %s" % (name, p.returncode, logf.name))
            return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "-m", "1", "-o", "/dev/null",
                                   "http://127.0.0.1:15021/healthz/ready"], capture_output=True).returncode == 0
        wait_until(ready, 15, "zring readiness (%s)" % name)
        return p

    def _capture_out(self, to_port, exclude, label=""):
        rule = ["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-d", "127.0.0.1/32"] + \
            exclude + ["-j", "REDIRECT", "--to-ports", str(to_port)]
        sh(rule, ns=NS_C)
        COMMANDS["capture rule, client ns -> %d%s" % (to_port, label)] = "ip netns exec %s %s" % (
            NS_C, shlex.join(rule))

    def _capture_in(self, to_port):
        rule = ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", IF_S, "-p", "tcp", "-m", "multiport",
                "--dports", "%d,%d" % (PORT_IPERF, PORT_ECHO), "-j", "REDIRECT", "--to-ports", str(to_port)]
        sh(rule, ns=NS_S)
        COMMANDS["capture rule, server ns -> %d" % to_port] = "ip netns exec %s %s" % (NS_S, shlex.join(rule))

    def setup_zring(self, name="zring-out", log=False, extra=()):
        """One zring in the client ns, outbound 15001."""
        self._capture_out(15001, ["-m", "mark", "!", "--mark", ZRING_MARK])
        self._zring(NS_C, name, log, extra)

    def setup_zring_log(self):
        self.setup_zring("zring-out-log", True)

    def setup_zring_buf256k(self):
        self.setup_zring("zring-out-buf256k", False,
                         ["--buf-size", "262144", "--buf-count", "64", "--conn-buf", "524288"])

    def setup_zring_pair(self, extra=()):
        self._capture_in(15006)
        self._zring(NS_S, "zring-in", False, extra)
        self.setup_zring("zring-out", False, extra)

    POLL = ["--busy-poll", str(BUSY_POLL_US)]
    REPLIES = POLL + ["--busy-poll-mode", "replies"]

    def setup_zring_poll(self):
        self.setup_zring("zring-out-poll", False, self.POLL)

    def setup_zring_pair_poll(self):
        self.setup_zring_pair(self.POLL)

    def setup_zring_hbone_poll(self):
        self.setup_zring_hbone(self.POLL)

    def setup_zring_replies(self):
        self.setup_zring("zring-out-replies", False, self.REPLIES)

    def setup_zring_pair_replies(self):
        self.setup_zring_pair(self.REPLIES)

    def setup_zring_hbone_replies(self):
        self.setup_zring_hbone(self.REPLIES)

    def setup_zring_hbone(self, extra=()):
        # No inbound capture: the client zring dials 10.77.0.2:15008 itself. The server zring
        # starts first: with --ca-cert/--ca-key naming missing files it generates the root and
        # saves it there; the client zring (and every later trial of the run) loads it.
        e = self.env
        os.makedirs(os.path.dirname(e.ca[0]), exist_ok=True)
        ca = ["--ca-cert", e.ca[0], "--ca-key", e.ca[1]] + list(extra)
        self._zring(NS_S, "zring-hbone-in", False, ca, ZRING_HBONE_CONFIG, "zring-hbone-config.yaml")
        self._capture_out(15001, ["-m", "mark", "!", "--mark", ZRING_MARK])
        self._zring(NS_C, "zring-hbone-out", False, ca, ZRING_HBONE_CONFIG, "zring-hbone-config.yaml")

    def _zconnect(self, ns, name, args, ready):
        e = self.env
        if not e.zconnect:
            e.zconnect = find_tool(e.args, "zconnect")
        cmd = [e.zconnect] + args + e.args.zconnect_arg
        logf = open(os.path.join(e.out, "logs", "%s-%s-%s.log" % (name, e.placement, self.tag)), "w")
        self.logs.append(logf.name)
        p = spawn(e.pin(cmd, proxy=True), ns=ns, stdout=logf)
        COMMANDS["zconnect (%s, %s)" % (self.config, name)] = "ip netns exec %s %s" % (ns, shlex.join(cmd))
        self.proxies.append((name, p))
        self.helpers.add(name)

        def ok():
            if p.poll() is not None:
                raise RuntimeError("zconnect (%s) exited with %s; log in %s" % (name, p.returncode, logf.name))
            return ready()
        wait_until(ok, 10, "zconnect (%s)" % name)

    # nghttpx: HTTP/2 flow-control windows (per stream / per connection) and the options every
    # half gets. The defaults (64 KiB windows) cap a single stream far below the link.
    NGHTTPX_WINDOW, NGHTTPX_CONN_WINDOW = 1 << 20, 1 << 24
    NGHTTPX_COMMON = ["--conf=/dev/null", "--single-process", "-n", "1", "-s", "--no-ocsp", "--no-via",
                      "--tls-min-proto-version=TLSv1.3", "--backend-connections-per-host=20000",
                      "--frontend-read-timeout=2m", "--backend-read-timeout=2m", "--backend-write-timeout=2m"]

    def _nghttpx(self, ns, name, args, ready):
        e = self.env
        logf = os.path.join(e.out, "logs", "%s-%s-%s.log" % (name, e.placement, self.tag))
        self.logs.append(logf)
        cmd = ["nghttpx"] + self.NGHTTPX_COMMON + args + e.args.nghttpx_arg + ["--errorlog-file=" + logf]
        keys = []
        if name.endswith("-in"):
            keys = [os.path.join(e.pki, "server.key"), os.path.join(e.pki, "server.pem")]
        p = spawn(e.pin(cmd + keys, proxy=True), ns=ns)
        COMMANDS["nghttpx (%s)" % name] = "ip netns exec %s %s" % (ns, shlex.join(cmd + keys).replace(
            e.out + "/", "bench/out/"))
        self.proxies.append((name, p))

        def ok():
            if p.poll() is not None:
                raise RuntimeError("nghttpx (%s) exited with %s; log in %s" % (name, p.returncode, logf))
            return ready()
        wait_until(ok, 10, "nghttpx (%s)" % name)

    def setup_nghttpx_pair(self):
        # app -(REDIRECT)-> zconnect client :15101 -(HTTP/1.1 CONNECT, unix socket)-> nghttpx -s
        # (plain HTTP/1 frontend; backend h2 over TLS 1.3 with a client certificate, pooled)
        # -> 10.77.0.2:15008 nghttpx -s (--verify-client) -(HTTP/1.1 CONNECT, unix socket)->
        # zconnect server -> 10.77.0.2:PORT. The client nghttpx runs as nobody, so its own
        # connections to :15008 are not captured (like HAProxy's uid rule).
        e = self.env
        term = os.path.join(e.out, "zb-nghttpx-term.sock")
        front = os.path.join(e.out, "zb-nghttpx-front.sock")
        for f in (term, front):
            if os.path.exists(f):
                os.unlink(f)
            self.files.append(f)
        self._zconnect(NS_S, "zconnect-term", ["server", "-l", "unix:" + term], lambda: os.path.exists(term))
        win = ["--frontend-http2-window-size=%d" % self.NGHTTPX_WINDOW,
               "--frontend-http2-connection-window-size=%d" % self.NGHTTPX_CONN_WINDOW]
        self._nghttpx(NS_S, "nghttpx-in", [
            "--frontend=%s,%d" % (IP_S, HBONE_PORT), "--backend=unix:" + term,
            "--verify-client", "--verify-client-cacert=" + os.path.join(e.pki, "ca.pem"),
            "--tls13-ciphers=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384"] + win,
            lambda: listening(NS_S, HBONE_PORT))
        self._nghttpx(NS_C, "nghttpx-out", [
            "--frontend=unix:%s;no-tls" % front,
            "--backend=%s,%d;;proto=h2;tls;sni=server.local" % (IP_S, HBONE_PORT),
            "--cacert=" + os.path.join(e.pki, "ca.pem"),
            "--client-private-key-file=" + os.path.join(e.pki, "client.key"),
            "--client-cert-file=" + os.path.join(e.pki, "client.pem"),
            "--tls13-client-ciphers=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
            "--backend-http2-window-size=%d" % self.NGHTTPX_WINDOW,
            "--backend-http2-connection-window-size=%d" % self.NGHTTPX_CONN_WINDOW,
            "--user=nobody"], lambda: os.path.exists(front))
        self._capture_out(15101, ["-m", "owner", "!", "--uid-owner", "nobody"], " (nghttpx-pair)")
        self._zconnect(NS_C, "zconnect-shim", ["client", "-l", "15101", "-u", "unix:" + front],
                       lambda: listening(NS_C, 15101))

    def setup_connect_pair(self):
        self._zconnect(NS_S, "zconnect-term", ["server", "-l", "%s:15109" % IP_S], lambda: listening(NS_S, 15109))
        self._capture_out(15101, ["-m", "mark", "!", "--mark", ZRING_MARK], " (connect-pair)")
        self._zconnect(NS_C, "zconnect-shim", ["client", "-l", "15101", "-u", "%s:15109" % IP_S, "-M", "0x539"],
                       lambda: listening(NS_C, 15101))

    def verify_tunnel(self, port):
        """Once per trial: one connection through the path must ride a tunnel to `port` and must
        not reach the server straight from the client ns (a benchmark of the plain path by
        mistake is a defect). Checks ss on both sides; for zring also the server's metrics."""
        e = self.env
        before = self._mtls_opened() if self.config.startswith("zring-hbone") else None
        last = None
        for attempt in range(3):
            h = spawn(e.pin([e.zbench, "hold", "-c", "%s:%d" % (IP_S, PORT_ECHO), "-n", "1", "-d", "20"]),
                      ns=NS_C, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            try:
                line = h.stdout.readline().split()
                if not line or line[0] != "ready" or line[1] != "1":
                    last = "no 1-byte echo through the path (%r)" % line
                    continue
                tun_c = sh(["ss", "-Htn", "state", "established", "( dport = :%d )" % port], ns=NS_C).splitlines()
                tun_s = sh(["ss", "-Htn", "state", "established", "( sport = :%d )" % port], ns=NS_S).splitlines()
                app = sh(["ss", "-Htn", "state", "established", "( sport = :%d )" % PORT_ECHO], ns=NS_S).splitlines()
                plain = [l for l in app if l.split()[-1].replace("[::ffff:", "").startswith(IP_C)]
                after = self._mtls_opened() if before is not None else None
            finally:
                h.stdin.close()
                h.stdout.read()
                h.wait(timeout=30)
                PROCS.remove(h)
            if plain:
                last = "the echo server has a connection straight from %s: %s" % (IP_C, plain[0])
                break
            if not tun_c or not tun_s:
                last = "no established connection to :%d (client ns %d, server ns %d)" % (port, len(tun_c), len(tun_s))
                continue
            if before is not None and not after > before:
                last = "the server zring counted no new mutual_tls connection (%s -> %s)" % (before, after)
                continue
            self.tunnel_check = "%d connection(s) to :%d in %s, %d in %s, none plain to :%d%s" % (
                len(tun_c), port, NS_C, len(tun_s), NS_S, PORT_ECHO,
                "; server zring mutual_tls opened %d -> %d" % (before, after) if before is not None else "")
            return
        raise RuntimeError("%s does not tunnel: %s" % (self.config, last))

    def _mtls_opened(self):
        """istio_tcp_connections_opened_total of the server zring with connection_security_policy
        mutual_tls (reporter destination), from :15020/metrics in the server ns."""
        out = sh(["curl", "-sf", "-m", "2", "http://127.0.0.1:15020/metrics"], ns=NS_S, check=False)
        n = 0
        for line in out.splitlines():
            if line.startswith("istio_tcp_connections_opened_total{") and \
                    'connection_security_policy="mutual_tls"' in line and 'reporter="destination"' in line:
                n += int(float(line.rsplit(None, 1)[1]))
        return n

    def _haproxy(self, ns, name, template, port):
        e = self.env
        with open(os.path.join(HERE, "haproxy", template)) as f:
            text = f.read()
        text = text.replace("@PKI@", e.pki or "/nonexistent").replace("@SERVER@", IP_S)
        cfg = os.path.join(e.out, "haproxy-" + template)
        with open(cfg, "w") as f:
            f.write(text)
        cmd = ["haproxy", "-db", "-f", cfg]
        logf = open(os.path.join(e.out, "logs", "%s-%s-%s.log" % (name, e.placement, self.tag)), "w")
        self.logs.append(logf.name)
        p = spawn(e.pin(cmd, proxy=True), ns=ns, stdout=logf)
        COMMANDS["haproxy (%s)" % name] = "ip netns exec %s %s   # from bench/haproxy/%s" % (
            ns, shlex.join(cmd), template)
        self.proxies.append((name, p))

        def ready():
            if p.poll() is not None:
                raise RuntimeError("haproxy (%s) exited with %s; log in %s" % (name, p.returncode, logf.name))
            return listening(ns, port)
        wait_until(ready, 10, "haproxy (%s)" % name)

    HAPROXY_EXCLUDE = ["-m", "owner", "!", "--uid-owner", "haproxy"]

    def setup_haproxy1(self):
        self._capture_out(15101, self.HAPROXY_EXCLUDE)
        self._haproxy(NS_C, "haproxy-out", "plain-client.cfg", 15101)

    def setup_haproxy_pair(self):
        self._capture_in(15106)
        self._haproxy(NS_S, "haproxy-in", "plain-server.cfg", 15106)
        self._capture_out(15101, self.HAPROXY_EXCLUDE)
        self._haproxy(NS_C, "haproxy-out", "plain-client.cfg", 15101)

    def setup_haproxy_mtls(self):
        self._haproxy(NS_S, "haproxy-in-mtls", "mtls-server.cfg", 15108)
        self._capture_out(15101, self.HAPROXY_EXCLUDE)
        self._haproxy(NS_C, "haproxy-out-mtls", "mtls-client.cfg", 15101)

    # -- helpers for metrics
    def proxy_pids(self):
        return [p.pid for _, p in self.proxies]

    def proxy_cpu_secs(self):
        """User+system CPU seconds of all proxy processes (all threads)."""
        return sum(self.proxy_cpu_by_proc().values())

    def proxy_cpu_by_proc(self):
        hz = os.sysconf("SC_CLK_TCK")
        out = {}
        for name, p in self.proxies:
            try:
                with open("/proc/%d/stat" % p.pid) as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                out[name] = (int(rest[11]) + int(rest[12])) / hz
            except (OSError, IndexError, ValueError):
                out[name] = 0.0
        return out

    def helper_cpu_secs(self, by_proc):
        return sum(v for k, v in by_proc.items() if k in self.helpers)

    def check_alive(self):
        for name, p in self.proxies:
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s during the benchmark" % (name, p.returncode))


# ------------------------------------------------------------------ metrics

def m_tput(t, secs, reverse=False):
    e = t.env
    cmd = ["iperf3", "-c", IP_S, "-p", str(PORT_IPERF), "-t", str(secs), "-O", "1", "-J"]
    if reverse:
        cmd.append("-R")
    COMMANDS["throughput" + (" (reverse)" if reverse else "")] = "ip netns exec %s %s" % (NS_C, shlex.join(cmd))
    p0, w0 = t.proxy_cpu_by_proc(), time.monotonic()
    out = sh(e.pin(cmd), ns=NS_C, timeout=secs + 30, check=False)
    p1, w1 = t.proxy_cpu_by_proc(), time.monotonic()
    j = json.loads(out)
    t.check_alive()
    if "error" in j:
        raise RuntimeError("iperf3: " + j["error"])
    gbps = j["end"]["sum_received"]["bits_per_second"] / 1e9
    # CPU of the proxies over the whole iperf3 run (including the omitted first second),
    # against the bytes of the whole run (rate x (secs + 1)).
    gbytes = gbps * (secs + 1) / 8
    per = {k: p1[k] - p0.get(k, 0.0) for k in p1}
    cpu = sum(per.values())
    return gbps, {"cpu_frac": cpu / (w1 - w0), "cpu_ms_per_gb": cpu * 1000 / gbytes if t.proxies else None,
                  "per_proc_cpu_s": per, "helper_cpu_frac": t.helper_cpu_secs(per) / (w1 - w0)}


def m_perf_tput(t, secs, label):
    """iperf3 while perf records the proxies; writes perf reports to out/."""
    e = t.env
    results = []
    cmd = ["iperf3", "-c", IP_S, "-p", str(PORT_IPERF), "-t", str(secs), "-J"]
    ip = subprocess.Popen(["ip", "netns", "exec", NS_C] + e.pin(cmd), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    PROCS.append(ip)
    time.sleep(1)
    perfs = []
    for name, p in t.proxies:
        data = os.path.join(e.out, "perf-%s-%s.data" % (label, name))
        pr = subprocess.Popen(["perf", "record", "-g", "-o", data, "-p", str(p.pid), "--", "sleep",
                               str(max(1, secs - 2))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        PROCS.append(pr)
        perfs.append((name, data, pr))
    for _, _, pr in perfs:
        pr.wait(timeout=secs + 30)
        PROCS.remove(pr)
    out, _ = ip.communicate(timeout=secs + 30)
    PROCS.remove(ip)
    gbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    for name, data, _ in perfs:
        COMMANDS["perf (each proxy, during iperf3 -t %d)" % secs] = "perf record -g -p PID -- sleep %d; " \
            "perf report --stdio --no-children -g none --sort dso,sym" % max(1, secs - 2)
        rep = os.path.join(e.out, "perf-%s-%s.txt" % (label, name))
        txt = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--percent-limit", "1", "-g", "none", "--sort", "dso,sym"],
                             capture_output=True, text=True, timeout=120).stdout
        with open(rep, "w") as f:
            f.write(txt)
        graph = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children",
                                "--percent-limit", "3", "--sort", "sym"],
                               capture_output=True, text=True, timeout=120).stdout
        with open(rep.replace(".txt", "-callgraph.txt"), "w") as f:
            f.write(graph)
        dso = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                              "--sort", "dso"], capture_output=True, text=True, timeout=120).stdout
        with open(rep.replace(".txt", "-dso.txt"), "w") as f:
            f.write(dso)
        results.append((name, rep))
    return gbps, results


def m_lat(t, size, secs, rate=0):
    e = t.env
    cmd = [e.zbench, "pingpong", "-c", "%s:%d" % (IP_S, PORT_ECHO), "-s", str(size), "-d", str(secs),
           "-n", "2000000", "-w", "500"] + (["-r", str(rate)] if rate else [])
    COMMANDS["latency %dB" % size] = "ip netns exec %s %s" % (NS_C, shlex.join(cmd))
    p0, w0 = t.proxy_cpu_secs(), time.monotonic()
    j = json.loads(sh(e.pin(cmd), ns=NS_C, timeout=secs + 30))
    p1, w1 = t.proxy_cpu_secs(), time.monotonic()
    t.check_alive()
    # The proxies' CPU over the run (warm-up included, a few ms), per round trip.
    j["proxy_cpu_frac"] = (p1 - p0) / (w1 - w0)
    j["proxy_cpu_us_per_rt"] = (p1 - p0) * 1e6 / j["samples"] if t.proxies and j["samples"] else None
    return j


def m_conn(t, secs, conc):
    e = t.env
    cmd = [e.zbench, "connrate", "-c", "%s:%d" % (IP_S, PORT_ECHO), "-s", "1024", "-C", str(conc),
           "-d", str(secs), "-n", "2000000"]
    COMMANDS["connections/s"] = "ip netns exec %s %s" % (NS_C, shlex.join(cmd))
    p0, w0 = t.proxy_cpu_by_proc(), time.monotonic()
    j = json.loads(sh(e.pin(cmd), ns=NS_C, timeout=secs + 30))
    p1, w1 = t.proxy_cpu_by_proc(), time.monotonic()
    t.check_alive()
    per = {k: p1[k] - p0.get(k, 0.0) for k in p1}
    c0, c1 = 0.0, sum(per.values())
    j["proxy_cpu_frac"] = (c1 - c0) / (w1 - w0)
    j["per_proc_cpu_s"] = per
    j["helper_cpu_frac"] = t.helper_cpu_secs(per) / (w1 - w0)
    j["proxy_cpu_us_per_conn"] = (c1 - c0) * 1e6 / j["conns"] if t.proxies and j["conns"] else None
    return j


def m_rss(t, n):
    """RSS of the proxies before/after opening n idle connections through them."""
    e = t.env
    target = "%s:%d" % (IP_S, PORT_ECHO)
    # Warm up: 200 connections opened and closed, so one-time allocations are in the baseline.
    sh(e.pin([e.zbench, "hold", "-c", target, "-n", "200", "-d", "20"]), ns=NS_C, timeout=60)
    time.sleep(0.5)
    pids = t.proxy_pids()
    before = sum(rss_kib(p) for p in pids)
    per_proc_before = {name: rss_kib(p.pid) for name, p in t.proxies}
    fd_before = sum(nfds(p) for p in pids)
    cmd = [e.zbench, "hold", "-c", target, "-n", str(n), "-d", "120", "-P", "256"]
    COMMANDS["idle connections"] = "ip netns exec %s %s   # holds until stdin closes" % (NS_C, shlex.join(cmd))
    h = spawn(e.pin(cmd), ns=NS_C, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    line = h.stdout.readline().split()
    if not line or line[0] != "ready":
        stop(h)
        raise RuntimeError("hold did not get ready: %r" % line)
    ok, failed, secs = int(line[1]), int(line[2]), float(line[3])
    time.sleep(1.0)
    t.check_alive()
    after = sum(rss_kib(p) for p in pids)
    fd_after = sum(nfds(p) for p in pids)
    per_proc = {name: rss_kib(p.pid) for name, p in t.proxies}
    per_proc_fds = {name: nfds(p.pid) for name, p in t.proxies}
    h.stdin.close()
    rest = h.stdout.read()
    h.wait(timeout=30)
    PROCS.remove(h)
    alive = None
    for tok in rest.split():
        if tok.startswith("alive="):
            alive = int(tok.split("=")[1])
    time.sleep(1.0)
    released = sum(rss_kib(p) for p in pids)
    t.check_alive()
    return {"n": n, "ok": ok, "failed": failed, "open_secs": secs, "alive_at_end": alive,
            "rss_before_kib": before, "rss_after_kib": after, "rss_after_close_kib": released,
            "fds_before": fd_before, "fds_after": fd_after, "per_proc_after_kib": per_proc,
            "per_proc_before_kib": per_proc_before, "per_proc_fds_after": per_proc_fds,
            "helpers": sorted(t.helpers),
            "delta_kib": after - before}


# ------------------------------------------------------------------ report

def stat(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return statistics.median(xs), min(xs), max(xs)


def fmt(v, digits=2):
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return "%.0f" % v
        return ("%%.%df" % digits) % v
    return str(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return "%.2f×" % (a / b)


def cpu_snapshot():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
            comm = st[st.index("(") + 1:st.rindex(")")]
            rest = st[st.rindex(")") + 2:].split()
            procs[int(pid)] = (comm, int(rest[11]) + int(rest[12]))
        except (OSError, ValueError, IndexError):
            continue
    return sum(v), idle, procs


def machine_load(secs=2.0):
    """CPU use by everything on the machine over a short window (the bench is idle then)."""
    t0, i0, p0 = cpu_snapshot()
    time.sleep(secs)
    t1, i1, p1 = cpu_snapshot()
    busy = 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))
    hz = os.sysconf("SC_CLK_TCK")
    top = []
    for pid, (comm, ticks) in p1.items():
        if pid in p0 and p0[pid][0] == comm:
            pct = 100.0 * (ticks - p0[pid][1]) / hz / secs
            if pct >= 5:
                top.append((pct, comm, pid))
    top.sort(reverse=True)
    return busy, top[:5]


class ForeignLoad:
    """CPU used during a trial by processes that are not part of it, in % of all CPUs.

    busy jiffies of the machine (/proc/stat) minus the trial's own: this script and its
    reaped children (load generators), the proxies and servers, and ksoftirqd (which mostly
    carries the trial's packets). Approximate (tick accounting), good enough to spot a
    compile or a test suite running next to the benchmark."""

    def __init__(self, trial):
        self.t = trial
        self.b0, self.o0 = self._busy(), self._ours()

    @staticmethod
    def _busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4], sum(v)

    def _ours(self):
        tm = os.times()
        hz = os.sysconf("SC_CLK_TCK")
        own = (tm.user + tm.system + tm.children_user + tm.children_system) * hz
        pids = [p.pid for _, p in self.t.proxies] + [p.pid for p in self.t.servers]
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/comm" % pid) as f:
                        if f.read().startswith("ksoftirqd"):
                            pids.append(int(pid))
                except OSError:
                    pass
        for pid in pids:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    rest = f.read().rsplit(")", 1)[1].split()
                own += int(rest[11]) + int(rest[12])
            except (OSError, IndexError, ValueError):
                pass
        return own

    def stop(self):
        (b1, t1), o1 = self._busy(), self._ours()
        total = max(1, t1 - self.b0[1])
        foreign = (b1 - self.b0[0]) - (o1 - self.o0)
        return max(0.0, 100.0 * foreign / total)


def load_text(busy, top):
    s = "%.0f%% of all CPUs busy" % busy
    if top:
        s += " (" + ", ".join("%s %.0f%%" % (c, p) for p, c, _ in top) + ")"
    return s


def machine_info(env):
    info = {}
    info["kernel"] = platform.release()
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info["cpu"] = model
    info["cores"] = os.cpu_count()
    info["hypervisor"] = (sh(["systemd-detect-virt", "--vm"], check=False).strip() or "?") + " VM"
    try:
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    info["haproxy"] = sh(["haproxy", "-v"], check=False).splitlines()[0] if shutil.which("haproxy") else "-"
    info["iperf3"] = sh(["iperf3", "--version"], check=False).splitlines()[0]
    if shutil.which("nghttpx"):
        info["nghttpx"] = (sh(["nghttpx", "--version"], check=False).strip().splitlines() or ["nghttpx ?"])[0]
    if env.zring and os.path.exists(env.zring):
        rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).strip() or "(no commit)"
        dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], check=False).strip()
        info["zring"] = "%s, git %s%s, binary mtime %s" % (
            env.zring, rev, " (dirty tree)" if dirty else "",
            datetime.datetime.fromtimestamp(os.path.getmtime(env.zring)).strftime("%Y-%m-%d %H:%M"))
    return info


PLACEMENT_TEXT = {
    "split": "load generators and servers on CPU 0, proxies on CPU 1 (taskset); each hop that crosses "
             "between a proxy and an endpoint is a cross-core wake-up",
    "one": "everything (load generators, servers, proxies) on CPU 0 (taskset): throughput and connection "
           "rate measure the total CPU cost of a path; no cross-core wake-ups",
    "none": "no pinning; the scheduler places everything on the cores (zring runs with --no-pin); "
            "noisiest, latency is bimodal depending on placement",
}


def report(env, configs, allres, cmdline, started, info, stamp):
    a = env.args
    L = []
    L.append("# zring benchmark — %s" % started.strftime("%Y-%m-%d %H:%M"))
    L.append("")
    L.append("Command: `%s` (as root, from the repository root)" % cmdline)
    L.append("")
    L.append("Machine: %s, %s cores (%s), kernel %s, Debian %s. %s. %s." % (
        info["cpu"], info["cores"], info.get("hypervisor"), info["kernel"], info.get("debian", "?"),
        info["haproxy"], info["iperf3"]))
    if "zring" in info:
        L.append("zring: %s." % info["zring"])
    if "nghttpx-pair" in configs and info.get("nghttpx"):
        L.append("nghttpx: %s (Debian's nghttp2-proxy)." % info["nghttpx"])
    L.append("Other load on the machine (2 s sample, bench idle): before the run %s; after it %s. Run time %s." % (
        info.get("load_start", "?"), info.get("load_end", "?"), info.get("duration", "?")))
    qs = allres.get("_quiet")
    if qs and a.wait_quiet > 0:
        L.append("Before each of the %d trials the harness waited (up to %d s) for the other CPU use to drop to "
                 "≤%.0f%%: %.0f s of waiting in all; %d trial(s) ran while the machine was still busy." % (
                     qs["trials"], a.wait_quiet, a.quiet_pct, qs["waited_s"], qs["busy_trials"]))
    if qs and qs.get("foreign"):
        f = sorted(qs["foreign"])
        L.append("CPU used by other processes during the trials (%% of all CPUs): median %.0f%%, max %.0f%%; "
                 "%d trial(s) discarded and re-run because it exceeded %.0f%%, %d kept although busy "
                 "(retries exhausted)." % (statistics.median(f), f[-1], qs["retried"], a.quiet_pct, qs["kept_busy"]))
    L.append("")
    L.append("Topology: client netns `%s` (%s) —veth (MTU %s)— server netns `%s` (%s); load generators in the "
             "client ns, iperf3 -s and the zbench echo server in the server ns. Every (path, repetition) "
             "starts from fresh namespaces, servers and proxies; repetitions are interleaved across paths. "
             "zring runs `--shards 1` (one shard thread; it also has a control thread, idle here); each HAProxy "
             "`nbthread 1`, `tune.bufsize 1044480`%s." % (
                 NS_C, IP_C, a.mtu or 1500, NS_S, IP_S,
                 "; each nghttpx `-n 1 --single-process`, h2 windows %d KiB per stream / %d MiB per connection, "
                 "`--backend-connections-per-host=20000`; the zconnect helpers are single-threaded; every process "
                 "of a path is pinned like the proxies" % (Trial.NGHTTPX_WINDOW >> 10, Trial.NGHTTPX_CONN_WINDOW >> 20)
                 if "nghttpx-pair" in configs else ""))
    L.append("")
    L.append("Paths:")
    L.append("")
    for c in configs:
        L.append("- **%s** (%d prox%s): %s" % (c, PROXIES[c], "y" if PROXIES[c] == 1 else "ies", DESCR[c]))
    L.append("")
    same = ", ".join("%s→%s" % (c, SAME_COUNT_PEER[c]) for c in configs if c in SAME_COUNT_PEER)
    L.append("Ratios: `×direct` = path / direct; `×HAProxy pair` = path / haproxy-pair; `×HAProxy same` = path / "
             "the HAProxy path with the same number of proxies (%s; for the tunnelled paths the HAProxy mTLS "
             "pair). Higher is better for throughput and connections/s, lower for latency. "
             "Cells: median (min–max) over the repetitions." % (same or "none in this run"))
    L.append("")
    checked = []
    for c in configs:
        if c in TUNNEL_PORT:
            n = sum(len(allres[pl].get(c, {}).get("tunnel_check", [])) for pl in a.placements if pl in allres)
            checked.append("%s %d" % (c, n))
    if checked:
        L.append("Tunnel check (one held connection must ride the tunnel port in both namespaces, none straight "
                 "to the server; see Exact commands) passed in the kept trials: %s; a failed check fails the "
                 "trial (Errors)." % ", ".join(checked))
        L.append("")
    if any(c.startswith("zring-hbone") for c in configs):
        L.extend(report_targets(env, configs, allres))
    for pl in a.placements:
        L.extend(report_placement(env, configs, allres[pl], pl))
    rss_pl = a.placements[0]
    if "rss" in a.metrics:
        L.extend(report_rss(env, configs, allres["_rss"], rss_pl))
    if allres.get("_perf"):
        L.append("## perf (iperf3 through the proxy, `perf record -g -p PID`, placement %s)" % rss_pl)
        L.append("")
        for label, gbps, reps in allres["_perf"]:
            L.append("%s at %.2f Gbit/s while recording:" % (label, gbps))
            L.append("")
            for name, path in reps:
                L.append("- %s: `%s` (self time by object, then by symbol ≥1%%)" % (
                    name, os.path.relpath(path, ROOT)))
                L.append("")
                L.append("```")
                L.extend(top_symbols(path.replace(".txt", "-dso.txt"), 4))
                L.append("--")
                L.extend(top_symbols(path, 14))
                L.append("```")
            L.append("")
    if allres.get("_errors"):
        L.append("## Errors")
        L.append("")
        for e in allres["_errors"]:
            L.append("- %s" % e)
        L.append("")

    L.append("## Exact commands")
    L.append("")
    L.append("Namespaces: `ip netns add %s; ip netns add %s; ip link add %s netns %s type veth peer name %s netns %s`; "
             "addresses %s/24 and %s/24; in both: `sysctl net.ipv4.ip_local_port_range='10000 65000' "
             "net.ipv4.tcp_tw_reuse=1`." % (NS_C, NS_S, IF_C, NS_C, IF_S, NS_S, IP_C, IP_S))
    L.append("Servers (server ns): `iperf3 -s -p %d`, `%s server -p %d -t 1`." % (
        PORT_IPERF, os.path.relpath(env.zbench, ROOT), PORT_ECHO))
    L.append("zring config (`%s`, written by run.py): two workloads, client %s and server "
             "%s, `protocol: TCP` (inbound 15006 serves only known workloads; outbound to them is a plain "
             "passthrough)." % (os.path.relpath(os.path.join(env.out, "zring-config.yaml"), ROOT), IP_C, IP_S))
    if "zring-hbone" in configs:
        L.append("zring-hbone: the same two workloads with `protocol: HBONE` (`%s`); both zrings get `--ca-cert %s "
                 "--ca-key %s`: the server zring, started first in the run's first zring-hbone trial, generates "
                 "the root (P-256) and saves it, every other zring of the run loads it. No inbound capture rule: "
                 "the client zring dials %s:%d. Each trial starts with a tunnel check: one connection held "
                 "through the path must show an established connection to :%d in both namespaces, none from "
                 "%s straight to the echo server, and one more `mutual_tls` connection in the server zring's "
                 "`istio_tcp_connections_opened_total` (:15020/metrics); else the trial fails. haproxy-mtls "
                 "(:15108) and nghttpx-pair (:%d) get the same ss check." % (
                     os.path.relpath(os.path.join(env.out, "zring-hbone-config.yaml"), ROOT),
                     os.path.relpath(env.ca[0], ROOT), os.path.relpath(env.ca[1], ROOT), IP_S, HBONE_PORT,
                     HBONE_PORT, IP_C, HBONE_PORT))
    if "nghttpx-pair" in configs:
        L.append("nghttpx-pair chain: app → (REDIRECT, `-m owner ! --uid-owner nobody`) → zconnect client :15101 "
                 "(SO_ORIGINAL_DST) → `CONNECT ip:port HTTP/1.1` on a unix socket → nghttpx `-s` (client ns, plain "
                 "HTTP/1 frontend, runs as nobody; backend `proto=h2;tls;sni=server.local` with the client "
                 "certificate of bench/gen-certs.sh, pooled) → %s:%d nghttpx `-s --verify-client` (server ns) → "
                 "`CONNECT ip:port HTTP/1.1` on a unix socket → zconnect server → TCP to the server." % (
                     IP_S, HBONE_PORT))
    L.append("Placement prefixes: split → `taskset -c 0` for load generators and servers, `taskset -c 1` for "
             "proxies; one → `taskset -c 0` for everything; none → no taskset, zring gets `--no-pin`.")
    L.append("")
    for k in sorted(COMMANDS):
        L.append("- %s: `%s`" % (k, COMMANDS[k].replace(ROOT + "/", "")))
    L.append("")
    L.append("Raw numbers: `%s`; per-process logs in `bench/out/logs/`." % os.path.relpath(
        os.path.join(env.out, "results-%s.json" % stamp), ROOT))
    return "\n".join(L) + "\n"


def report_placement(env, configs, res, pl):
    a = env.args
    L = ["## Placement `%s`" % pl, "", PLACEMENT_TEXT[pl] + ".", ""]

    def med_of(key, field=None):
        def g(c):
            if c not in res:
                return None
            runs = res[c].get(key, [])
            xs = [r[field] for r in runs] if field else runs
            s = stat(xs)
            return s[0] if s else None
        return g

    def ratios(c, g):
        v = g(c)
        d = g("direct") if "direct" in configs else None
        hp = g("haproxy-pair") if "haproxy-pair" in configs else None
        same = SAME_COUNT_PEER.get(c)
        sv = g(same) if same in configs else None
        return ratio(v, d), ratio(v, hp), (ratio(v, sv) if same else "—")

    if "tput" in a.metrics:
        for key, title in (("tput", "Single-stream throughput (iperf3, Gbit/s)"),
                           ("tput_rev", "Single-stream throughput, reverse (iperf3 -R, Gbit/s)")):
            if not any(res[c].get(key) for c in configs):
                continue
            L += ["### %s" % title, "",
                  "%d runs × %d s (first second omitted)." % (a.runs, a.tput_secs), "",
                  "| path | proxies | median | min–max | ×direct | ×HAProxy pair | ×HAProxy same | "
                  "proxy CPU (% of a core) | proxy CPU ms per GB |",
                  "|---|---|---|---|---|---|---|---|---|"]
            g = med_of(key)
            for c in configs:
                s = stat(res[c].get(key, []))
                if s:
                    cpu = res[c].get(key + "_cpu", [])
                    frac = stat([x["cpu_frac"] for x in cpu])
                    mspg = stat([x["cpu_ms_per_gb"] for x in cpu])
                    L.append("| %s | %d | **%s** | %s–%s | %s | %s | %s | %s | %s |" % (
                        c, PROXIES[c], fmt(s[0]), fmt(s[1]), fmt(s[2]), *ratios(c, g),
                        fmt(100 * frac[0], 0) if frac and PROXIES[c] else "—", fmt(mspg[0], 0) if mspg else "—"))
            L.append("")
            L.extend(helper_note(configs, res, key + "_cpu", "cpu_frac"))

    if "lat" in a.metrics:
        L += ["### Request/response latency (zbench pingpong, one connection, µs)", "",
              "%d runs × %d s per size; TCP_NODELAY; N bytes sent, the same N bytes echoed back; one sample per "
              "round trip%s. Cells: median of the per-run percentiles (min–max across runs). Proxy CPU: "
              "all proxy processes over the run, per round trip." % (
                  a.runs, a.lat_secs, "; at most %d round trips per second (`-r %d`)" % (a.lat_rate, a.lat_rate)
                  if a.lat_rate else ", back to back"), "",
              "| path | size | p50 | p99 | p50 ×direct | p99 ×direct | p99 ×HAProxy pair | p99 ×HAProxy same | "
              "round trips/s | proxy CPU µs per round trip |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for size in a.sizes:
            key = "lat%d" % size
            g50, g99 = med_of(key, "p50_us"), med_of(key, "p99_us")
            for c in configs:
                runs = res[c].get(key, [])
                if not runs:
                    continue
                p50 = stat([r["p50_us"] for r in runs])
                p99 = stat([r["p99_us"] for r in runs])
                rps = stat([r["rtt_per_s"] for r in runs])
                cpu = [r["proxy_cpu_us_per_rt"] for r in runs if r.get("proxy_cpu_us_per_rt")]
                r50, r99 = ratios(c, g50), ratios(c, g99)
                L.append("| %s | %d B | **%s** (%s–%s) | **%s** (%s–%s) | %s | %s | %s | %s | %s | %s |" % (
                    c, size, fmt(p50[0], 1), fmt(p50[1], 1), fmt(p50[2], 1), fmt(p99[0], 1), fmt(p99[1], 1),
                    fmt(p99[2], 1), r50[0], r99[0], r99[1], r99[2], fmt(rps[0], 0),
                    fmt(stat(cpu)[0], 1) if cpu else "—"))
        L.append("")

    if "conn" in a.metrics:
        L += ["### New connections per second (zbench connrate)", "",
              "%d runs × %d s; %d concurrent loops, each: connect, send 1 KiB, read the 1 KiB echo, close "
              "(client closes first). Latency: connect start → last response byte." % (
                  a.runs, a.conn_secs, a.conc), "",
              "| path | proxies | conn/s | min–max | ×direct | ×HAProxy pair | ×HAProxy same | "
              "p50 µs | p99 µs | errors | proxy CPU (% of a core) | proxy CPU µs per conn |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        g = med_of("conn", "conns_per_s")
        for c in configs:
            runs = res[c].get("conn", [])
            if not runs:
                continue
            s = stat([r["conns_per_s"] for r in runs])
            p50 = stat([r["p50_us"] for r in runs])[0]
            p99 = stat([r["p99_us"] for r in runs])[0]
            errs = sum(r["errors"] + r.get("unfinished", 0) for r in runs)
            frac = stat([r["proxy_cpu_frac"] for r in runs if "proxy_cpu_frac" in r])
            upc = stat([r.get("proxy_cpu_us_per_conn") for r in runs])
            L.append("| %s | %d | **%s** | %s–%s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                c, PROXIES[c], fmt(s[0], 0), fmt(s[1], 0), fmt(s[2], 0), *ratios(c, g), fmt(p50, 0), fmt(p99, 0),
                errs, fmt(100 * frac[0], 0) if frac and PROXIES[c] else "—", fmt(upc[0], 1) if upc else "—"))
        L.append("")
        L.extend(helper_note(configs, res, "conn", "proxy_cpu_frac"))
        if "nghttpx-pair" in configs and res.get("nghttpx-pair", {}).get("conn"):
            L.append("nghttpx-pair: the client nghttpx ends every tunnel with RST_STREAM (its HTTP/1 CONNECT "
                     "frontend has no half-close), and Debian's nghttp2 (CVE-2023-44487 fix) answers a burst of "
                     "~1000 resets with GOAWAY, so under this load the server half closes the h2 connection about "
                     "every thousand tunnels; streams in flight then fail (the errors column) and the next "
                     "connection pays a TLS handshake.")
            L.append("")
        if any(c in configs for c in ("zring-hbone", "nghttpx-pair")):
            L.append("Tunnelled paths (zring-hbone, nghttpx-pair) carry each new connection as a stream on a pooled "
                     "TLS connection (no handshake per connection); haproxy-mtls does a full TLS handshake per "
                     "connection.")
            L.append("")
    return L


def helper_note(configs, res, key, field):
    """For paths with zconnect helpers: how much of the path's CPU the helpers used."""
    L = []
    for c in configs:
        runs = res.get(c, {}).get(key, [])
        hs = [r.get("helper_cpu_frac") for r in runs if r and r.get("helper_cpu_frac") is not None]
        tot = [r.get(field) for r in runs if r and r.get(field) is not None]
        if hs and tot and any(h > 0 for h in hs) and statistics.median(hs) < statistics.median(tot) - 0.005:
            L.append("%s: of its %.0f%% of a core above, the zconnect helpers used %.0f%% (medians)." % (
                c, 100 * statistics.median(tot), 100 * statistics.median(hs)))
    if L:
        L.append("")
    return L


# Issue 4 (HBONE) targets: (label, metric key, field, peer path, factor, higher is better).
TARGETS = [
    ("throughput ≥ 1.3× haproxy-mtls", "tput", None, "haproxy-mtls", 1.3, True),
    ("throughput ≥ 0.35× direct", "tput", None, "direct", 0.35, True),
    ("p99 1 B round trip ≤ 0.8× haproxy-mtls", "lat1", "p99_us", "haproxy-mtls", 0.8, False),
    ("p99 1 KiB round trip ≤ 0.8× haproxy-mtls", "lat1024", "p99_us", "haproxy-mtls", 0.8, False),
    ("tunnelled conn/s ≥ 5× haproxy-mtls", "conn", "conns_per_s", "haproxy-mtls", 5.0, True),
]
RSS_TARGET_KIB = 8.0


def report_targets(env, configs, allres):
    """The issue-4 targets for zring-hbone, each with a verdict computed from this run's medians."""
    a = env.args
    paths = [c for c in ("zring-hbone", "zring-hbone-poll", "zring-hbone-replies") if c in configs]
    L = ["## Issue 4 (HBONE) targets: %s" % ", ".join(paths), "",
         "Medians of this run; the verdict compares the zring path with the target computed from the peer's "
         "median in the same run and placement. `n/a`: a number is missing (path or metric not run). "
         "zring-hbone runs zring's defaults; zring-hbone-poll adds `--busy-poll %d` (CPU spent polling "
         "for latency, off by default), zring-hbone-replies `--busy-poll %d --busy-poll-mode replies`." % (
             BUSY_POLL_US, BUSY_POLL_US), "",
         "| placement | target | path | zring | peer | target value | verdict |",
         "|---|---|---|---|---|---|---|"]

    def med(res, c, key, field):
        runs = res.get(c, {}).get(key, [])
        xs = [r[field] if field else r for r in runs if r is not None]
        s = stat(xs)
        return s[0] if s else None

    unit = {"tput": "Gbit/s", "lat1": "µs", "lat1024": "µs", "conn": "conn/s"}
    for pl, zp in [(pl, zp) for pl in a.placements for zp in paths]:
        res = allres.get(pl, {})
        for label, key, field, peer, factor, higher in TARGETS:
            if key.startswith("lat") and int(key[3:]) not in a.sizes:
                continue
            if ("lat" if key.startswith("lat") else key) not in a.metrics:
                continue
            v = med(res, zp, key, field)
            pv = med(res, peer, key, field) if peer in configs else None
            tv = pv * factor if pv is not None else None
            if v is None or tv is None:
                verdict = "n/a"
            else:
                verdict = "**met**" if (v >= tv if higher else v <= tv) else "**missed**"
            d = {"tput": 2, "conn": 0}.get(key, 1)
            L.append("| %s | %s | %s | %s %s | %s %s | %s %s | %s |" % (
                pl, label, zp, fmt(v, d), unit[key], peer, fmt(pv, d), "≥" if higher else "≤", fmt(tv, d), verdict))
    for zp in paths if "rss" in a.metrics else ():
        r = allres.get("_rss", {}).get(zp)
        if r and r.get("ok"):
            per = r["delta_kib"] / r["ok"]
            verdict = "**met**" if per <= RSS_TARGET_KIB else "**missed**"
            L.append("| %s | RSS per tunnelled connection ≤ %.0f KiB (both zrings, %d held) | %s | %.2f KiB | — "
                     "| ≤ %.0f KiB | %s |" % (a.placements[0], RSS_TARGET_KIB, r["ok"], zp, per, RSS_TARGET_KIB,
                                              verdict))
        else:
            L.append("| %s | RSS per tunnelled connection ≤ %.0f KiB | %s | — | — | ≤ %.0f KiB | n/a |" % (
                a.placements[0], RSS_TARGET_KIB, zp, RSS_TARGET_KIB))
    L.append("")
    return L


def report_rss(env, configs, rres, pl):
    a = env.args
    L = ["## Memory per 10k idle connections (VmRSS of the proxy processes; placement `%s`)" % pl, "",
         "A fresh proxy; 200 connections opened and closed (warm-up); baseline VmRSS; then `zbench hold` opens "
         "%d connections through the path (a 1-byte round trip on each, so both legs are up) and holds them; "
         "VmRSS again after 1 s. Sum over the path's proxies. Kernel socket memory is not in RSS. "
         "`Δ MiB per 10k` scales the measured growth linearly to 10,000 connections%s." % (
             a.idle, " (this machine's open-file hard limit is %d and cannot be raised without CAP_SYS_RESOURCE; "
             "a proxy needs two descriptors per connection, so %d is the largest round size)" % (a.nofile, a.idle)
             if a.idle < 10000 and a.idle == (a.nofile - 150) // 2 // 100 * 100 else ""), "",
         "| path | proxies | held | RSS before (MiB) | RSS held (MiB) | Δ MiB per 10k | KiB per conn | "
         "RSS after close (MiB) | proxy fds before→held | alive at end |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for c in configs:
        r = rres.get(c)
        if not r:
            continue
        per10k = r["delta_kib"] / 1024.0 * 10000.0 / max(1, r["ok"])
        fds = "+".join(str(v) for v in r.get("per_proc_fds_after", {}).values()) or str(r["fds_after"])
        L.append("| %s | %d | %d/%d | %.1f | %.1f | **%.1f** | %.2f | %.1f | %d→%s | %s |" % (
            c, PROXIES[c], r["ok"], r["n"], r["rss_before_kib"] / 1024.0, r["rss_after_kib"] / 1024.0,
            per10k, r["delta_kib"] / max(1, r["ok"]), r["rss_after_close_kib"] / 1024.0,
            r["fds_before"], fds, r["alive_at_end"]))
    L.append("")
    for c in configs:
        r = rres.get(c)
        if not r or len(r.get("per_proc_after_kib", {})) < 2 or not r.get("per_proc_before_kib"):
            continue
        parts = ["%s%s %+.2f" % (n, " (helper)" if n in r.get("helpers", []) else "",
                                 (r["per_proc_after_kib"][n] - r["per_proc_before_kib"].get(n, 0)) / max(1, r["ok"]))
                 for n in r["per_proc_after_kib"]]
        L.append("%s, KiB per connection by process: %s." % (c, ", ".join(parts)))
    L.append("")
    return L


def top_symbols(path, n):
    out = []
    try:
        with open(path) as f:
            for line in f:
                s = line.rstrip()
                if not s or s.startswith("#"):
                    continue
                out.append(s.strip())
                if len(out) >= n:
                    break
    except OSError:
        pass
    return out



# ------------------------------------------------------------------ main

def main():
    global LOG
    ap = argparse.ArgumentParser(description="zring vs direct vs HAProxy benchmark (run as root)")
    ap.add_argument("--quick", action="store_true",
                    help="2 short runs per metric, placement split only (a few minutes)")
    ap.add_argument("--configs", default=None,
                    help="comma list of paths (default: %s; also: %s)" % (
                        ",".join(DEFAULT_CONFIGS), ",".join(c for c in ALL_CONFIGS if c not in DEFAULT_CONFIGS)))
    ap.add_argument("--mtls", action="store_true", help="add the HAProxy mTLS pair (haproxy-mtls)")
    ap.add_argument("--hbone", action="store_true",
                    help="add the HBONE comparison: %s (and its issue-4 target table)" % ",".join(HBONE_CONFIGS))
    ap.add_argument("--poll", action="store_true",
                    help="add the --busy-poll variant (zring-poll, zring-pair-poll, zring-hbone-poll) of every "
                    "zring path in the run")
    ap.add_argument("--nghttpx-arg", action="append", default=[],
                    help="extra argument for both nghttpx halves (repeatable)")
    ap.add_argument("--zconnect-arg", action="append", default=[],
                    help="extra argument for the zconnect helpers (repeatable; e.g. -S: splice)")
    ap.add_argument("--metrics", default="tput,lat,conn,rss", help="comma list of tput,lat,conn,rss")
    ap.add_argument("--pin", default=None,
                    help="comma list of CPU placements, each a full pass: split (load+servers CPU 0, proxies "
                    "CPU 1), one (everything on CPU 0), none (scheduler decides). Default split,one; quick split")
    ap.add_argument("--runs", type=int, help="repetitions per metric (default 5; quick 2)")
    ap.add_argument("--tput-secs", type=int, help="iperf3 seconds per run (default 8; quick 3)")
    ap.add_argument("--reverse", action="store_true", help="also measure iperf3 -R")
    ap.add_argument("--lat-secs", type=int, help="seconds per latency run (default 4; quick 2)")
    ap.add_argument("--lat-rate", type=int, default=0,
                    help="latency runs at most this many round trips per second (zbench pingpong -r; "
                         "default 0: back to back)")
    ap.add_argument("--sizes", default="1,1024", help="latency message sizes in bytes (default 1,1024)")
    ap.add_argument("--conn-secs", type=int, help="seconds per connection-rate run (default 4; quick 2)")
    ap.add_argument("--conc", type=int, default=16, help="concurrent connection loops (default 16)")
    ap.add_argument("--idle", type=int, default=0,
                    help="idle connections for the RSS test (default 10000, capped by the fd limit)")
    ap.add_argument("--mtu", type=int, default=0, help="veth MTU (default: 1500)")
    ap.add_argument("--perf", action="store_true", help="perf record the proxies of zring/haproxy paths during iperf3")
    ap.add_argument("--zring", default=os.path.join(ROOT, "build", "engine", "zring"), help="zring binary")
    ap.add_argument("--zring-log", default="warn", help="RUST_LOG for zring without access log (default warn)")
    ap.add_argument("--zring-arg", action="append", default=[], help="extra zring argument (repeatable)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output directory (default bench/out)")
    ap.add_argument("--wait-quiet", type=int, default=120,
                    help="before each trial wait up to this many seconds for the machine's other CPU use to "
                    "drop to --quiet-pct (default 120; 0 = don't wait)")
    ap.add_argument("--wait-budget", type=int, default=1800,
                    help="stop waiting for quiet once this many seconds were spent waiting (default 1800)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-run a trial (up to N times) when other processes used more than --quiet-pct of "
                    "the CPUs during it (default 2)")
    ap.add_argument("--quiet-pct", type=float, default=8, help="see --wait-quiet (default 8%% of all CPUs)")
    ap.add_argument("--publish", action="store_true", help="also copy the report to bench/RESULTS.md")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root (network namespaces, iptables)")
    q = a.quick
    a.runs = a.runs or (2 if q else 5)
    a.tput_secs = a.tput_secs or (3 if q else 8)
    a.lat_secs = a.lat_secs or (2 if q else 4)
    a.conn_secs = a.conn_secs or (2 if q else 4)
    a.sizes = [int(x) for x in a.sizes.split(",") if x]
    a.metrics = [m for m in a.metrics.split(",") if m]
    a.placements = [p for p in (a.pin or ("split" if q else "split,one")).split(",") if p]
    for p in a.placements:
        if p not in PLACEMENT_TEXT:
            sys.exit("unknown placement %r (split, one, none)" % p)
    configs = a.configs.split(",") if a.configs else list(DEFAULT_CONFIGS)
    if a.mtls and "haproxy-mtls" not in configs:
        configs.append("haproxy-mtls")
    if a.hbone:
        configs += [c for c in HBONE_CONFIGS if c not in configs]
    if a.poll:
        configs += [c + "-poll" for c in ("zring", "zring-pair", "zring-hbone")
                    if c in configs and c + "-poll" not in configs]
    for c in configs:
        if c not in ALL_CONFIGS:
            sys.exit("unknown path %r (known: %s)" % (c, ", ".join(ALL_CONFIGS)))
    a.out = os.path.abspath(a.out)
    a.zring = os.path.abspath(a.zring)
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    for tool in ("iperf3", "haproxy", "iptables", "curl", "taskset", "ss", "openssl"):
        if not shutil.which(tool):
            sys.exit("missing tool: %s (apt-get install iperf3 haproxy iptables curl util-linux iproute2 openssl)"
                     % tool)
    if a.perf and not shutil.which("perf"):
        sys.exit("--perf needs perf (apt-get install linux-perf)")
    if "nghttpx-pair" in configs and not shutil.which("nghttpx"):
        sys.exit("nghttpx-pair needs nghttpx (apt-get install nghttp2-proxy)")
    if not os.path.exists(a.zring) and any(c.startswith("zring") for c in configs):
        print("warning: %s not found; skipping zring paths (build: ninja -C build)" % a.zring)
        configs = [c for c in configs if not c.startswith("zring")]
    for ns in (NS_C, NS_S):
        if ns_exists(ns):
            sys.exit("namespace %s exists: another bench running? (ip netns del %s to clear a stale one)" % (ns, ns))
    # Descriptors for the idle-connection test, inherited by every child. A proxy needs two
    # per connection; without CAP_SYS_RESOURCE the hard limit caps the test size.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (200000, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            break
        except (ValueError, OSError):
            continue
    a.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = (a.nofile - 150) // 2 // 100 * 100
    if not a.idle:
        a.idle = min(10000, cap)
    if a.idle > cap:
        print("warning: the fd limit %d allows about %d connections through a proxy" % (a.nofile, cap))

    started = datetime.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    LOG = open(os.path.join(a.out, "run-%s.log" % stamp), "w")
    cmdline = "bench/run.sh " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "bench/run.sh"
    log("# %s  paths=%s metrics=%s placements=%s runs=%d" % (
        cmdline, ",".join(configs), ",".join(a.metrics), ",".join(a.placements), a.runs))

    env = Env(a)
    if "haproxy-mtls" in configs or "nghttpx-pair" in configs:
        env.pki = os.path.join(a.out, "pki")
        sh([os.path.join(HERE, "gen-certs.sh"), env.pki])
    if any(c.startswith("zring-hbone") for c in configs):
        # A fresh root per run, generated by the first zring started (see setup_zring_hbone).
        for f in env.ca:
            if os.path.exists(f):
                os.unlink(f)
    if "nghttpx-pair" in configs or "connect-pair" in configs:
        env.zconnect = find_tool(a, "zconnect")
    info = machine_info(env)
    busy, top = machine_load()
    info["load_start"] = load_text(busy, top)
    log("machine load before the run: " + info["load_start"])
    if busy > 10:
        log("WARNING: the machine is busy; the numbers will be noisy")
    allres = {"_errors": [], "_rss": {}}

    def handler(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)

    def err(msg):
        log("ERROR " + msg)
        allres["_errors"].append(msg)

    def first_line(e):
        s = str(e).strip()
        return s.splitlines()[0] if s else repr(e)

    quiet_stats = {"trials": 0, "waited_s": 0.0, "busy_trials": 0, "foreign": [], "retried": 0, "kept_busy": 0}
    allres["_quiet"] = quiet_stats

    def wait_quiet():
        """On a shared machine, wait (bounded) until other processes leave the CPUs alone."""
        quiet_stats["trials"] += 1
        if a.wait_quiet <= 0 or quiet_stats["waited_s"] > a.wait_budget:
            return
        t0 = time.monotonic()
        while True:
            busy, top = machine_load(0.5)
            if busy <= a.quiet_pct:
                break
            if time.monotonic() - t0 > a.wait_quiet:
                quiet_stats["busy_trials"] += 1
                log("  machine still busy after %ds (%s); running anyway" % (a.wait_quiet, load_text(busy, top)))
                break
            time.sleep(1)
        w = time.monotonic() - t0
        quiet_stats["waited_s"] += w
        if w > 2:
            log("  waited %.0f s for other load to stop" % w)

    timed = [m for m in a.metrics if m in ("tput", "lat", "conn")]

    def run_trial(t, c, tag, out):
        if "tput" in timed:
            for key in ("tput", "tput_rev") if a.reverse else ("tput",):
                g, cpu = m_tput(t, a.tput_secs, reverse=key == "tput_rev")
                out[key], out[key + "_cpu"] = g, cpu
                log("%s throughput%s %.2f Gbit/s (proxy CPU %.0f%% of a core%s)" % (
                    tag, " -R" if key == "tput_rev" else "", g, 100 * cpu["cpu_frac"],
                    ", %.0f ms/GB" % cpu["cpu_ms_per_gb"] if cpu["cpu_ms_per_gb"] else ""))
        if "lat" in timed:
            for size in a.sizes:
                j = out["lat%d" % size] = m_lat(t, size, a.lat_secs, a.lat_rate)
                log("%s latency %4dB p50 %.1f p99 %.1f us (%d samples%s)" % (
                    tag, size, j["p50_us"], j["p99_us"], j["samples"],
                    ", proxy CPU %.0f%% of a core, %.1f us per round trip" % (
                        100 * j["proxy_cpu_frac"], j["proxy_cpu_us_per_rt"]) if j["proxy_cpu_us_per_rt"] else ""))
        if "conn" in timed:
            j = out["conn"] = m_conn(t, a.conn_secs, a.conc)
            log("%s conn/s %.0f (errors %d, unfinished %d, p99 %.0f us, proxy CPU %.0f%%%s)" % (
                tag, j["conns_per_s"], j["errors"], j["unfinished"], j["p99_us"],
                100 * j["proxy_cpu_frac"], ", %.0f us/conn" % j["proxy_cpu_us_per_conn"]
                if j["proxy_cpu_us_per_conn"] else ""))
        if c == "zring-log":
            out["log_lines"] = sum(1 for lf in t.logs for _ in open(lf))
            log("%s access log: %d lines" % (tag, out["log_lines"]))

    try:
        for pl in a.placements:
            env.set_placement(pl)
            res = allres[pl] = {c: {} for c in configs}
            # Repetition-major, so every path sees the same drift.
            for rep in range(a.runs if timed else 0):
                for c in configs:
                    for attempt in range(1 + a.retries):
                        tag = "[%s r%d%s] %-13s" % (pl, rep, "" if not attempt else " retry%d" % attempt, c)
                        wait_quiet()
                        out = {}
                        try:
                            with Trial(env, c, "r%d" % rep) as t:
                                if t.tunnel_check:
                                    log("%s tunnel check: %s" % (tag, t.tunnel_check))
                                    out["tunnel_check"] = t.tunnel_check
                                meter = ForeignLoad(t)
                                run_trial(t, c, tag, out)
                                foreign = meter.stop()
                        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as e:
                            err("%s r%d, %s: %s" % (pl, rep, c, first_line(e)))
                            break
                        quiet_stats["foreign"].append(foreign)
                        busy = foreign > a.quiet_pct
                        log("%s other processes used %.0f%% of the CPUs during the trial%s" % (
                            tag, foreign, " — discarding and retrying" if busy and attempt < a.retries else ""))
                        if busy and attempt < a.retries:
                            quiet_stats["retried"] += 1
                            continue
                        if busy:
                            quiet_stats["kept_busy"] += 1
                        for k, v in out.items():
                            res[c].setdefault(k, []).append(v)
                        res[c].setdefault("foreign_pct", []).append(foreign)
                        break
        env.set_placement(a.placements[0])
        if "rss" in a.metrics:
            for c in configs:
                if c == "direct":
                    continue
                wait_quiet()
                try:
                    with Trial(env, c, "rss") as t:
                        if t.tunnel_check:
                            log("[rss] %-13s tunnel check: %s" % (c, t.tunnel_check))
                        r = m_rss(t, a.idle)
                        allres["_rss"][c] = r
                        log("[rss] %-13s %d/%d held, RSS %.1f -> %.1f MiB (+%.1f), fds %d -> %d" % (
                            c, r["ok"], r["n"], r["rss_before_kib"] / 1024, r["rss_after_kib"] / 1024,
                            r["delta_kib"] / 1024, r["fds_before"], r["fds_after"]))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                    err("rss, %s: %s" % (c, first_line(e)))
        if a.perf:
            allres["_perf"] = []
            for c in [x for x in configs if x in (
                    "zring", "zring-buf256k", "haproxy1", "zring-pair", "haproxy-pair", "haproxy-mtls",
                    "zring-hbone", "zring-hbone-poll", "nghttpx-pair", "connect-pair")]:
                wait_quiet()
                try:
                    with Trial(env, c, "perf") as t:
                        gbps, reps = m_perf_tput(t, max(6, a.tput_secs), c)
                        allres["_perf"].append((c, gbps, reps))
                        log("[perf] %s %.2f Gbit/s; %s" % (c, gbps, ", ".join(p for _, p in reps)))
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
                    err("perf, %s: %s" % (c, first_line(e)))
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        stop_all()
        ns_down()
        sys.exit(130)
    finally:
        stop_all()
        ns_down()

    busy, top = machine_load()
    info["load_end"] = load_text(busy, top)
    info["duration"] = "%.0f min" % ((datetime.datetime.now() - started).total_seconds() / 60)
    with open(os.path.join(a.out, "results-%s.json" % stamp), "w") as f:
        json.dump({"args": vars(a), "configs": configs, "results": allres, "machine": info,
                   "commands": COMMANDS}, f, indent=1, default=str)
    md = report(env, configs, allres, cmdline, started, info, stamp)
    path = os.path.join(a.out, "results-%s.md" % started.strftime("%Y-%m-%d-%H%M"))
    with open(path, "w") as f:
        f.write(md)
    log("\n" + md)
    log("wrote %s" % path)
    if a.publish:
        shutil.copyfile(path, os.path.join(HERE, "RESULTS.md"))
        log("copied to bench/RESULTS.md")


if __name__ == "__main__":
    main()
