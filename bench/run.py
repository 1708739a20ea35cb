#!/usr/bin/python3
"""zring benchmark harness: direct TCP vs zring vs HAProxy, side by side, one run.

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

ALL_CONFIGS = ["direct", "zring", "zring-log", "haproxy1", "zring-pair", "haproxy-pair", "haproxy-mtls"]
DEFAULT_CONFIGS = ["direct", "zring", "zring-log", "haproxy1", "zring-pair", "haproxy-pair"]
PROXIES = {"direct": 0, "zring": 1, "zring-log": 1, "haproxy1": 1, "zring-pair": 2,
           "haproxy-pair": 2, "haproxy-mtls": 2}
# HAProxy path with the same number of proxies, for the "x HAProxy (same count)" column.
SAME_COUNT_PEER = {"zring": "haproxy1", "zring-log": "haproxy1", "zring-pair": "haproxy-pair"}
DESCR = {
    "direct": "direct TCP (no proxy)",
    "zring": "zring, 1 proxy (client ns), plain relay",
    "zring-log": "zring, 1 proxy, access log on (RUST_LOG=info, to a file)",
    "haproxy1": "HAProxy, 1 proxy (client ns), plain TCP",
    "zring-pair": "zring pair: outbound 15001 (client ns) + inbound 15006 (server ns)",
    "haproxy-pair": "HAProxy pair, plain TCP (client ns + server ns)",
    "haproxy-mtls": "HAProxy pair, mTLS (TLS 1.3, client certs)",
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


def spawn(cmd, ns=None, env=None, stdout=None, cpu=None, stdin=subprocess.DEVNULL):
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
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
        self.zbench = find_zbench(args)
        self.zring = args.zring
        self.pki = None
        self.load_cpu = 0 if args.pin else None
        self.proxy_cpu = 1 if args.pin else None


def find_zbench(args):
    built = os.path.join(ROOT, "build", "bench", "zbench")
    src = os.path.join(HERE, "zbench.c")
    if os.path.exists(built) and os.path.getmtime(built) >= os.path.getmtime(src):
        return built
    dst = os.path.join(args.out, "zbench")
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        sh(["cc", "-O2", "-Wall", "-D_GNU_SOURCE", "-o", dst, src, "-lpthread"], timeout=120)
    return dst


class Trial:
    """Fresh namespaces + servers + the proxies of one config."""

    def __init__(self, env, config, tag):
        self.env, self.config, self.tag = env, config, tag
        self.proxies = []   # (name, Popen)
        self.servers = []

    def __enter__(self):
        e = self.env
        ns_up(e.args)
        self.servers.append(spawn(["iperf3", "-s", "-p", str(PORT_IPERF)], ns=NS_S, cpu=e.load_cpu))
        self.servers.append(spawn([e.zbench, "server", "-p", str(PORT_ECHO), "-t", "1"], ns=NS_S,
                                  cpu=e.load_cpu))
        wait_until(lambda: listening(NS_S, PORT_IPERF) and listening(NS_S, PORT_ECHO), 10, "servers")
        getattr(self, "setup_" + self.config.replace("-", "_"))()
        return self

    def __exit__(self, *exc):
        for _, p in self.proxies:
            stop(p)
        for p in self.servers:
            stop(p)
        ns_down()
        return False

    # -- configs
    def setup_direct(self):
        pass

    def _zring(self, ns, name, log_on):
        e = self.env
        cfg = os.path.join(e.out, "zring-config.yaml")
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                f.write("workloads: []\n")
        env = dict(os.environ)
        env["RUST_LOG"] = "info" if log_on else e.args.zring_log
        env.pop("LOG_FORMAT", None)
        cmd = [e.zring, "--config", cfg, "--shards", "1"] + e.args.zring_arg
        logf = open(os.path.join(e.out, "logs", "%s-%s.log" % (name, self.tag)), "w")
        p = spawn(cmd, ns=ns, env=env, stdout=logf, cpu=e.proxy_cpu)
        COMMANDS["zring (%s)" % name] = "RUST_LOG=%s ip netns exec %s %s%s" % (
            env["RUST_LOG"], ns, "taskset -c %d " % e.proxy_cpu if e.proxy_cpu is not None else "",
            shlex.join(cmd))
        self.proxies.append((name, p))

        def ready():
            if p.poll() is not None:
                raise RuntimeError("zring (%s) exited with %s; log in %s" % (name, p.returncode, logf.name))
            return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sf", "-m", "1", "-o", "/dev/null",
                                   "http://127.0.0.1:15021/healthz/ready"], capture_output=True).returncode == 0
        wait_until(ready, 15, "zring readiness (%s)" % name)
        return p

    def _capture_out(self, to_port, exclude):
        rule = ["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "!", "-d", "127.0.0.1/32"] + \
            exclude + ["-j", "REDIRECT", "--to-ports", str(to_port)]
        sh(rule, ns=NS_C)
        COMMANDS["capture rule, client ns -> %d" % to_port] = "ip netns exec %s %s" % (NS_C, shlex.join(rule))

    def _capture_in(self, to_port):
        rule = ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", IF_S, "-p", "tcp", "-m", "multiport",
                "--dports", "%d,%d" % (PORT_IPERF, PORT_ECHO), "-j", "REDIRECT", "--to-ports", str(to_port)]
        sh(rule, ns=NS_S)
        COMMANDS["capture rule, server ns -> %d" % to_port] = "ip netns exec %s %s" % (NS_S, shlex.join(rule))

    def setup_zring(self):
        self._capture_out(15001, ["-m", "mark", "!", "--mark", ZRING_MARK])
        self._zring(NS_C, "zring-out", False)

    def setup_zring_log(self):
        self._capture_out(15001, ["-m", "mark", "!", "--mark", ZRING_MARK])
        self._zring(NS_C, "zring-out-log", True)

    def setup_zring_pair(self):
        self._capture_in(15006)
        self._zring(NS_S, "zring-in", False)
        self._capture_out(15001, ["-m", "mark", "!", "--mark", ZRING_MARK])
        self._zring(NS_C, "zring-out", False)

    def _haproxy(self, ns, name, template, port):
        e = self.env
        with open(os.path.join(HERE, "haproxy", template)) as f:
            text = f.read()
        text = text.replace("@PKI@", e.pki or "/nonexistent").replace("@SERVER@", IP_S)
        cfg = os.path.join(e.out, "haproxy-" + template)
        with open(cfg, "w") as f:
            f.write(text)
        cmd = ["haproxy", "-db", "-f", cfg]
        logf = open(os.path.join(e.out, "logs", "%s-%s.log" % (name, self.tag)), "w")
        p = spawn(cmd, ns=ns, stdout=logf, cpu=e.proxy_cpu)
        COMMANDS["haproxy (%s)" % name] = "ip netns exec %s %s%s   # %s" % (
            ns, "taskset -c %d " % e.proxy_cpu if e.proxy_cpu is not None else "", shlex.join(cmd),
            "bench/haproxy/" + template)
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
    if e.load_cpu is not None:
        cmd = ["taskset", "-c", str(e.load_cpu)] + cmd
    COMMANDS["throughput" + (" (reverse)" if reverse else "")] = "ip netns exec %s %s" % (NS_C, shlex.join(cmd))
    out = sh(cmd, ns=NS_C, timeout=secs + 30)
    j = json.loads(out)
    t.check_alive()
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


def m_perf_tput(t, secs, label):
    """iperf3 while perf records the proxies; writes perf reports to out/."""
    e = t.env
    results = []
    cmd = ["iperf3", "-c", IP_S, "-p", str(PORT_IPERF), "-t", str(secs), "-J"]
    ip = subprocess.Popen(["ip", "netns", "exec", NS_C] + cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    PROCS.append(ip)
    time.sleep(1)
    perfs = []
    for name, p in t.proxies:
        data = os.path.join(e.out, "perf-%s-%s.data" % (label, name))
        perfs.append((name, data, subprocess.run(
            ["perf", "record", "-g", "-o", data, "-p", str(p.pid), "--", "sleep", str(max(1, secs - 2))],
            capture_output=True, text=True, timeout=secs + 30)))
    out, _ = ip.communicate(timeout=secs + 30)
    PROCS.remove(ip)
    gbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    for name, data, _ in perfs:
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
        results.append((name, rep))
    return gbps, results


def m_lat(t, size, secs):
    e = t.env
    cmd = [e.zbench, "pingpong", "-c", "%s:%d" % (IP_S, PORT_ECHO), "-s", str(size), "-d", str(secs),
           "-n", "2000000", "-w", "500"]
    if e.load_cpu is not None:
        cmd = ["taskset", "-c", str(e.load_cpu)] + cmd
    COMMANDS["latency %dB" % size] = "ip netns exec %s %s" % (NS_C, shlex.join(cmd))
    j = json.loads(sh(cmd, ns=NS_C, timeout=secs + 30))
    t.check_alive()
    return j


def m_conn(t, secs, conc):
    e = t.env
    cmd = [e.zbench, "connrate", "-c", "%s:%d" % (IP_S, PORT_ECHO), "-s", "1024", "-C", str(conc),
           "-d", str(secs), "-n", "2000000"]
    if e.load_cpu is not None:
        cmd = ["taskset", "-c", str(e.load_cpu)] + cmd
    COMMANDS["connections/s"] = "ip netns exec %s %s" % (NS_C, shlex.join(cmd))
    j = json.loads(sh(cmd, ns=NS_C, timeout=secs + 30))
    t.check_alive()
    return j


def m_rss(t, n):
    """RSS of the proxies before/after opening n idle connections through them."""
    e = t.env
    target = "%s:%d" % (IP_S, PORT_ECHO)
    # Warm up: 200 connections opened and closed, so one-time allocations are in the baseline.
    sh([e.zbench, "hold", "-c", target, "-n", "200", "-d", "20"], ns=NS_C, timeout=60)
    time.sleep(0.5)
    pids = t.proxy_pids()
    before = sum(rss_kib(p) for p in pids)
    fd_before = sum(nfds(p) for p in pids)
    cmd = [e.zbench, "hold", "-c", target, "-n", str(n), "-d", "120", "-P", "256"]
    COMMANDS["idle connections"] = "ip netns exec %s %s   # holds until stdin closes" % (NS_C, shlex.join(cmd))
    h = spawn(cmd, ns=NS_C, stdout=subprocess.PIPE, stdin=subprocess.PIPE)
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
    info["hypervisor"] = sh(["systemd-detect-virt"], check=False).strip() or "?"
    try:
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    info["haproxy"] = sh(["haproxy", "-v"], check=False).splitlines()[0] if shutil.which("haproxy") else "-"
    info["iperf3"] = sh(["iperf3", "--version"], check=False).splitlines()[0]
    if env.zring and os.path.exists(env.zring):
        rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=False).strip() or "(no commit)"
        dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], check=False).strip()
        info["zring"] = "%s, git %s%s, binary mtime %s" % (
            env.zring, rev, " (dirty tree)" if dirty else "",
            datetime.datetime.fromtimestamp(os.path.getmtime(env.zring)).strftime("%Y-%m-%d %H:%M"))
    return info


def report(env, configs, res, cmdline, started, info):
    a = env.args
    L = []
    L.append("# zring benchmark — %s" % started.strftime("%Y-%m-%d %H:%M"))
    L.append("")
    L.append("Command: `%s`" % cmdline)
    L.append("")
    L.append("Machine: %s, %s cores (%s), kernel %s, Debian %s. %s. %s." % (
        info["cpu"], info["cores"], info.get("hypervisor"), info["kernel"], info.get("debian", "?"),
        info["haproxy"], info["iperf3"]))
    if "zring" in info:
        L.append("zring: %s." % info["zring"])
    L.append("")
    L.append("Topology: client netns `%s` (%s) —veth (MTU %s)— server netns `%s` (%s); load generators in the "
             "client ns, iperf3 -s and the zbench echo server in the server ns. Every (path, repetition) "
             "starts from fresh namespaces, servers and proxies; repetitions are interleaved across paths. "
             "CPU pinning: %s. zring runs `--shards 1`; each HAProxy `nbthread 1`, `tune.bufsize 262144`." % (
                 NS_C, IP_C, a.mtu or 1500, NS_S, IP_S,
                 "load on CPU 0, proxies on CPU 1" if a.pin else "none (the scheduler places everything on "
                 "the %d cores)" % os.cpu_count()))
    L.append("")
    L.append("Paths:")
    L.append("")
    for c in configs:
        L.append("- **%s** (%d prox%s): %s" % (c, PROXIES[c], "y" if PROXIES[c] == 1 else "ies", DESCR[c]))
    L.append("")
    L.append("Ratios: `×direct` = path / direct; `×HAProxy pair` = path / haproxy-pair; `×HAProxy same` = path / "
             "the HAProxy path with the same number of proxies (zring→haproxy1, zring-pair→haproxy-pair). "
             "For throughput and connections/s higher is better; for latency lower is better. "
             "Cells are median (min–max) over the repetitions.")
    L.append("")

    def row_ratios(c, getter):
        v = getter(c)
        d = getter("direct") if "direct" in configs else None
        hp = getter("haproxy-pair") if "haproxy-pair" in configs else None
        same = SAME_COUNT_PEER.get(c)
        sv = getter(same) if same in configs else None
        return ratio(v, d), ratio(v, hp), ratio(v, sv) if same else "—"

    if "tput" in a.metrics:
        for key, title in (("tput", "Single-stream throughput (iperf3, Gbit/s)"),
                           ("tput_rev", "Single-stream throughput, reverse (iperf3 -R, Gbit/s)")):
            if not any(res[c].get(key) for c in configs):
                continue
            L.append("## %s" % title)
            L.append("")
            L.append("%d runs × %d s each (first second omitted)." % (a.runs, a.tput_secs))
            L.append("")
            L.append("| path | proxies | median | min–max | ×direct | ×HAProxy pair | ×HAProxy same |")
            L.append("|---|---|---|---|---|---|---|")
            med = lambda c: (stat(res[c].get(key, [])) or (None,))[0]
            for c in configs:
                s = stat(res[c].get(key, []))
                if not s:
                    continue
                r = row_ratios(c, med)
                L.append("| %s | %d | **%s** | %s–%s | %s | %s | %s |" % (
                    c, PROXIES[c], fmt(s[0]), fmt(s[1]), fmt(s[2]), *r))
            L.append("")

    if "lat" in a.metrics:
        L.append("## Request/response latency (zbench pingpong, one connection, µs)")
        L.append("")
        L.append("%d runs × %d s each per size; TCP_NODELAY; a message of N bytes is sent and the same N bytes "
                 "echoed back; each sample is one full round trip. Median of the per-run percentiles, "
                 "(min–max) across runs; ratios use the medians." % (a.runs, a.lat_secs))
        L.append("")
        L.append("| path | size | p50 | p50 min–max | p99 | p99 min–max | p50 ×direct | p99 ×direct | "
                 "p99 ×HAProxy pair | p99 ×HAProxy same | round trips/s |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for size in a.sizes:
            key = "lat%d" % size
            for c in configs:
                runs = res[c].get(key, [])
                if not runs:
                    continue
                p50 = stat([r["p50_us"] for r in runs])
                p99 = stat([r["p99_us"] for r in runs])
                rps = stat([r["rtt_per_s"] for r in runs])
                g50 = lambda x: (stat([r["p50_us"] for r in res[x].get(key, [])]) or (None,))[0]
                g99 = lambda x: (stat([r["p99_us"] for r in res[x].get(key, [])]) or (None,))[0]
                r50 = row_ratios(c, g50)
                r99 = row_ratios(c, g99)
                L.append("| %s | %d B | **%s** | %s–%s | **%s** | %s–%s | %s | %s | %s | %s | %s |" % (
                    c, size, fmt(p50[0], 1), fmt(p50[1], 1), fmt(p50[2], 1), fmt(p99[0], 1), fmt(p99[1], 1),
                    fmt(p99[2], 1), r50[0], r99[0], r99[1], r99[2], fmt(rps[0], 0)))
        L.append("")

    if "conn" in a.metrics:
        L.append("## New connections per second (zbench connrate)")
        L.append("")
        L.append("%d runs × %d s; %d concurrent loops, each: connect, send 1 KiB, read the 1 KiB echo, close "
                 "(client closes first). Latency = connect start → last response byte." % (
                     a.runs, a.conn_secs, a.conc))
        L.append("")
        L.append("| path | proxies | conn/s median | min–max | ×direct | ×HAProxy pair | ×HAProxy same | "
                 "p50 µs | p99 µs | errors |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for c in configs:
            runs = res[c].get("conn", [])
            if not runs:
                continue
            s = stat([r["conns_per_s"] for r in runs])
            med = lambda x: (stat([r["conns_per_s"] for r in res[x].get("conn", [])]) or (None,))[0]
            r = row_ratios(c, med)
            p50 = stat([r_["p50_us"] for r_ in runs])[0]
            p99 = stat([r_["p99_us"] for r_ in runs])[0]
            errs = sum(r_["errors"] for r_ in runs)
            L.append("| %s | %d | **%s** | %s–%s | %s | %s | %s | %s | %s | %d |" % (
                c, PROXIES[c], fmt(s[0]), fmt(s[1]), fmt(s[2]), *r, fmt(p50, 0), fmt(p99, 0), errs))
        L.append("")

    if "rss" in a.metrics:
        L.append("## Memory per %d idle connections (VmRSS of the proxy processes)" % a.idle)
        L.append("")
        L.append("A fresh proxy; 200 connections opened and closed (warm-up); baseline RSS; then zbench hold opens "
                 "%d connections through the proxy (a 1-byte round trip on each, so both legs are up) and holds "
                 "them; RSS again after 1 s. Sum over the path's proxies. Kernel socket memory is not in RSS. "
                 "`Δ MiB per 10k` scales the measured growth linearly to 10,000 connections%s."
                 % (a.idle, " (the open-file limit here is %d and cannot be raised without CAP_SYS_RESOURCE; a "
                    "proxy needs two descriptors per connection, so %d is the largest round test size)" % (
                        a.nofile, a.idle) if a.idle < 10000 else ""))
        L.append("")
        L.append("| path | proxies | held | RSS before (MiB) | RSS with %d idle (MiB) | Δ MiB per 10k | KiB per conn | "
                 "RSS after close (MiB) | proxy fds before→after | still open at end |" % a.idle)
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for c in configs:
            r = res[c].get("rss")
            if not r:
                continue
            per10k = r["delta_kib"] / 1024.0 * 10000.0 / max(1, r["ok"])
            L.append("| %s | %d | %d/%d | %.1f | %.1f | **%.1f** | %.2f | %.1f | %d→%d | %s |" % (
                c, PROXIES[c], r["ok"], r["n"], r["rss_before_kib"] / 1024.0, r["rss_after_kib"] / 1024.0,
                per10k, r["delta_kib"] / max(1, r["ok"]), r["rss_after_close_kib"] / 1024.0,
                r["fds_before"], r["fds_after"], r["alive_at_end"]))
        L.append("")

    if res.get("_perf"):
        L.append("## perf (iperf3 through the proxy, `perf record -g -p PID`)")
        L.append("")
        for label, gbps, reps in res["_perf"]:
            L.append("%s at %.2f Gbit/s while recording:" % (label, gbps))
            L.append("")
            for name, path in reps:
                L.append("- %s: `%s`" % (name, os.path.relpath(path, ROOT)))
                L.append("")
                L.append("```")
                L.extend(top_symbols(path, 15))
                L.append("```")
            L.append("")

    if res.get("_errors"):
        L.append("## Errors")
        L.append("")
        for e in res["_errors"]:
            L.append("- %s" % e)
        L.append("")

    L.append("## Exact commands")
    L.append("")
    L.append("Namespaces: `ip netns add %s; ip netns add %s; ip link add %s netns %s type veth peer name %s netns %s`; "
             "addresses %s/24 and %s/24; in both: `sysctl net.ipv4.ip_local_port_range='10000 65000' "
             "net.ipv4.tcp_tw_reuse=1`." % (NS_C, NS_S, IF_C, NS_C, IF_S, NS_S, IP_C, IP_S))
    L.append("Servers (server ns): `iperf3 -s -p %d`, `%s server -p %d -t 1`." % (
        PORT_IPERF, os.path.relpath(env.zbench, ROOT), PORT_ECHO))
    L.append("")
    for k in sorted(COMMANDS):
        L.append("- %s: `%s`" % (k, COMMANDS[k].replace(ROOT + "/", "")))
    L.append("")
    L.append("Raw numbers: `%s`." % os.path.relpath(os.path.join(env.out, "results-%s.json" % started.strftime(
        "%Y%m%d-%H%M%S")), ROOT))
    return "\n".join(L) + "\n"


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
    ap.add_argument("--quick", action="store_true", help="2 short runs per metric (about 3 minutes)")
    ap.add_argument("--configs", default=None,
                    help="comma list of paths (default: %s; also: haproxy-mtls)" % ",".join(DEFAULT_CONFIGS))
    ap.add_argument("--mtls", action="store_true", help="add the HAProxy mTLS pair")
    ap.add_argument("--metrics", default="tput,lat,conn,rss", help="comma list of tput,lat,conn,rss")
    ap.add_argument("--runs", type=int, help="repetitions per metric (default 5; quick 2)")
    ap.add_argument("--tput-secs", type=int, help="iperf3 seconds per run (default 10; quick 3)")
    ap.add_argument("--reverse", action="store_true", help="also measure iperf3 -R")
    ap.add_argument("--lat-secs", type=int, help="seconds per latency run (default 4; quick 2)")
    ap.add_argument("--sizes", default="1,1024", help="latency message sizes in bytes")
    ap.add_argument("--conn-secs", type=int, help="seconds per connection-rate run (default 4; quick 2)")
    ap.add_argument("--conc", type=int, default=16, help="concurrent connection loops (default 16)")
    ap.add_argument("--idle", type=int, default=0,
                    help="idle connections for the RSS test (default 10000, capped by the fd limit)")
    ap.add_argument("--pin", action="store_true", help="load generators+servers on CPU 0, proxies on CPU 1")
    ap.add_argument("--mtu", type=int, default=0, help="veth MTU (default: 1500)")
    ap.add_argument("--perf", action="store_true", help="perf record zring and haproxy1 during iperf3")
    ap.add_argument("--zring", default=os.path.join(ROOT, "build", "engine", "zring"), help="zring binary")
    ap.add_argument("--zring-log", default="warn", help="RUST_LOG for zring runs without access log (default warn)")
    ap.add_argument("--zring-arg", action="append", default=[], help="extra zring argument (repeatable)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output directory (default bench/out)")
    ap.add_argument("--publish", action="store_true", help="also copy the report to bench/RESULTS.md")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.py needs root (network namespaces, iptables)")
    q = a.quick
    a.runs = a.runs or (2 if q else 5)
    a.tput_secs = a.tput_secs or (3 if q else 10)
    a.lat_secs = a.lat_secs or (2 if q else 4)
    a.conn_secs = a.conn_secs or (2 if q else 4)
    a.sizes = [int(x) for x in a.sizes.split(",") if x]
    a.metrics = [m for m in a.metrics.split(",") if m]
    configs = a.configs.split(",") if a.configs else list(DEFAULT_CONFIGS)
    if a.mtls and "haproxy-mtls" not in configs:
        configs.append("haproxy-mtls")
    for c in configs:
        if c not in ALL_CONFIGS:
            sys.exit("unknown path %r (known: %s)" % (c, ", ".join(ALL_CONFIGS)))
    a.out = os.path.abspath(a.out)
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    for tool in ("iperf3", "haproxy", "iptables", "curl", "taskset", "ss"):
        if not shutil.which(tool):
            sys.exit("missing tool: %s (apt-get install iperf3 haproxy iptables curl util-linux iproute2)" % tool)
    if not os.path.exists(a.zring) and any(c.startswith("zring") for c in configs):
        print("warning: %s not found; skipping zring paths (build with ninja -C build)" % a.zring)
        configs = [c for c in configs if not c.startswith("zring")]
    # Descriptors for the idle-connection test, inherited by every child. A proxy needs two
    # per connection; without CAP_SYS_RESOURCE the hard limit caps the test size.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (200000, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
            break
        except (ValueError, OSError):
            continue
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap = (nofile - 150) // 2 // 100 * 100
    if not a.idle:
        a.idle = min(10000, cap)
    if a.idle > cap:
        print("warning: fd limit %d allows about %d connections through a proxy" % (nofile, cap))
    a.nofile = nofile

    started = datetime.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    LOG = open(os.path.join(a.out, "run-%s.log" % stamp), "w")
    cmdline = "bench/run.sh " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "bench/run.sh"
    log("# %s  configs=%s metrics=%s runs=%d" % (cmdline, ",".join(configs), ",".join(a.metrics), a.runs))

    env = Env(a)
    if "haproxy-mtls" in configs:
        env.pki = os.path.join(a.out, "pki")
        sh([os.path.join(HERE, "gen-certs.sh"), env.pki])
    info = machine_info(env)
    res = {c: {} for c in configs}
    res["_errors"] = []

    def handler(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)

    try:
        # Main loop: repetition-major so every path sees the same drift.
        timed = [m for m in a.metrics if m in ("tput", "lat", "conn")]
        if timed:
            for rep in range(a.runs):
                for c in configs:
                    try:
                        with Trial(env, c, "r%d" % rep) as t:
                            if "tput" in timed:
                                g = m_tput(t, a.tput_secs)
                                res[c].setdefault("tput", []).append(g)
                                log("[rep %d] %-13s throughput %.2f Gbit/s" % (rep, c, g))
                                if a.reverse:
                                    g = m_tput(t, a.tput_secs, reverse=True)
                                    res[c].setdefault("tput_rev", []).append(g)
                                    log("[rep %d] %-13s throughput -R %.2f Gbit/s" % (rep, c, g))
                            if "lat" in timed:
                                for size in a.sizes:
                                    j = m_lat(t, size, a.lat_secs)
                                    res[c].setdefault("lat%d" % size, []).append(j)
                                    log("[rep %d] %-13s latency %4dB p50 %.1f p99 %.1f us (%d samples)" % (
                                        rep, c, size, j["p50_us"], j["p99_us"], j["samples"]))
                            if "conn" in timed:
                                j = m_conn(t, a.conn_secs, a.conc)
                                res[c].setdefault("conn", []).append(j)
                                log("[rep %d] %-13s conn/s %.0f (errors %d, p99 %.0f us)" % (
                                    rep, c, j["conns_per_s"], j["errors"], j["p99_us"]))
                    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as e:
                        msg = "rep %d, %s: %s" % (rep, c, str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
                        log("ERROR " + msg)
                        res["_errors"].append(msg)
        if "rss" in a.metrics:
            for c in configs:
                if c == "direct":
                    continue
                try:
                    with Trial(env, c, "rss") as t:
                        r = m_rss(t, a.idle)
                        res[c]["rss"] = r
                        log("[rss] %-13s %d/%d held, RSS %.1f -> %.1f MiB (+%.1f), fds %d -> %d" % (
                            c, r["ok"], r["n"], r["rss_before_kib"] / 1024, r["rss_after_kib"] / 1024,
                            r["delta_kib"] / 1024, r["fds_before"], r["fds_after"]))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                    msg = "rss, %s: %s" % (c, str(e).strip().splitlines()[0])
                    log("ERROR " + msg)
                    res["_errors"].append(msg)
        if a.perf:
            res["_perf"] = []
            for c in [x for x in configs if x in ("zring", "haproxy1", "zring-pair", "haproxy-pair")]:
                try:
                    with Trial(env, c, "perf") as t:
                        gbps, reps = m_perf_tput(t, max(6, a.tput_secs), c)
                        res["_perf"].append((c, gbps, reps))
                        log("[perf] %s %.2f Gbit/s; %s" % (c, gbps, ", ".join(p for _, p in reps)))
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    res["_errors"].append("perf, %s: %s" % (c, str(e).strip().splitlines()[0]))
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        stop_all()
        ns_down()
        sys.exit(130)
    finally:
        stop_all()
        ns_down()

    with open(os.path.join(a.out, "results-%s.json" % stamp), "w") as f:
        json.dump({"args": {k: v for k, v in vars(a).items()}, "configs": configs, "results": res,
                   "machine": info, "commands": COMMANDS}, f, indent=1, default=str)
    md = report(env, configs, res, cmdline, started, info)
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
