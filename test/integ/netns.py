"""netns.py - network-namespace topologies for zring's tests and demo (stdlib only).

A Topology is a set of network namespaces named  zt-<testid>-<name>:

    router   one per topology; forwards between everything attached to it and
             answers "unreachable" for addresses it has no route for (the service
             VIP range included). It has no link to the host: nothing in a
             topology can reach the outside, and the outside cannot reach in.
    node     (optional) a Kubernetes node: a namespace with an uplink to the router
             (node IP 10.77.0.<n>) that routes for the pods attached to it. Issue 3
             runs one zring per node and hands it the pods' namespaces.
    pod      a namespace with one interface, eth0, holding the pod's /32 address in
             10.77.0.0/16; attached to its node, or straight to the router. Pods
             route 10.77.0.0/16 and the service range 10.96.0.0/16 to their gateway
             and nothing else (no default route).

Every link is a veth pair created directly between the two namespaces (never in the
host's namespace); the parent side holds the child's next hop (169.254.0.1 on the
router, 169.254.1.1 on a node).

    with Topology(log_dir="/tmp/logs") as t:
        sleep = t.add_pod("sleep", "10.77.1.10")
        web = t.add_pod("web", "10.77.2.10")
        srv = web.spawn("server", ["ztdata", "serve", "--port", "8080"])
        sleep.install_capture()                 # istio-cni's in-pod rules
        z = sleep.spawn("zring", ["zring", "--config", cfg])
        wait_http_ready(sleep, 15021)
        sleep.run(["curl", "http://10.77.2.10:8080/"])
    # teardown: processes stopped (TERM, then KILL), namespaces deleted

Teardown also runs on SIGTERM/SIGINT/SIGHUP (they become SystemExit) and at interpreter
exit. Topology.cleanup_stale() removes namespaces left by test processes that died
(zt-t<pid>-* whose pid is gone); Topology.down(testid) removes a named topology
(the demo's "zt-demo-*").
"""

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

PREFIX = "zt"
# A child's next hop, held by the parent side of every veth: the router's and the
# nodes' must differ (a node is both a child of the router and a parent of pods).
ROUTER_GW = "169.254.0.1"
NODE_GW = "169.254.1.1"
POD_CIDR = "10.77.0.0/16"
VIP_CIDR = "10.96.0.0/16"
NODE_NET = "10.77.0."  # node n has 10.77.0.<n>

# zring's ports and mark (ztunnel's)
OUTBOUND_PORT = 15001
INBOUND_PLAINTEXT_PORT = 15006
INBOUND_HBONE_PORT = 15008
DNS_PORT = 15053
READINESS_PORT = 15021
PROXY_MARK = "0x539/0xfff"  # SO_MARK 1337 on every socket the proxy opens
CONN_MARK = "0x111/0xfff"  # connections that came from the proxy
PROBE_SNAT = "169.254.7.127"  # istio-cni's host-probe source address

REQUIRED_TOOLS = ("ip", "iptables", "iptables-restore")

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Error(Exception):
    pass


def log(msg):
    print("netns: %s" % msg, file=sys.stderr, flush=True)


def sh(argv, check=True, timeout=60, input=None, env=None):
    """Run argv, capturing output. Raises Error (with stderr) if check and it fails."""
    try:
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        raise Error("timed out after %ss: %s" % (timeout, " ".join(argv)))
    except FileNotFoundError:
        raise Error("not found: %s" % argv[0])
    if check and r.returncode != 0:
        raise Error("failed (exit %d): %s\n%s%s" % (r.returncode, " ".join(argv), r.stdout,
                                                    r.stderr))
    return r


def missing_tools(extra=()):
    return [t for t in tuple(REQUIRED_TOOLS) + tuple(extra) if shutil.which(t) is None]


def preflight(extra_tools=()):
    """None if this machine can build topologies, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, iptables)"
    miss = missing_tools(extra_tools)
    if miss:
        return "missing tools: %s (Debian: iproute2 iptables)" % " ".join(miss)
    name = "%s-t%d-probe" % (PREFIX, os.getpid())
    r = sh(["ip", "netns", "add", name], check=False)
    if r.returncode != 0:
        return "cannot create a network namespace: %s" % r.stderr.strip()
    try:
        r = sh(["ip", "netns", "exec", name, "iptables", "-t", "nat", "-L", "-n"], check=False)
        if r.returncode != 0:
            return "iptables does not work in a network namespace: %s" % r.stderr.strip()
    finally:
        sh(["ip", "netns", "del", name], check=False)
    return None


def list_netns():
    r = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _kill_ns_procs(name, grace=2.0):
    """TERM, then KILL, every process in namespace name."""
    def pids():
        r = sh(["ip", "netns", "pids", name], check=False)
        return [int(p) for p in r.stdout.split() if p.isdigit()]
    ps = pids()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in ps:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        deadline = time.monotonic() + grace
        while ps and time.monotonic() < deadline:
            time.sleep(0.05)
            ps = pids()
        if not ps:
            return


def delete_netns(name):
    _kill_ns_procs(name)
    sh(["ip", "netns", "del", name], check=False)


def _owner_alive(pid):
    """Is the test process that made zt-t<pid>-* still there? pids wrap around quickly
    (pid_max is often 32768), so a live pid counts only if it is a python process."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    return b"python" in os.path.basename(argv0)


# Signals that mean a process crashed (not one we sent: SIGTERM, SIGKILL). Topology
# teardown notes every such exit here; the test harness fails the test on any.
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}
CRASHES = []


class Proc:
    """A background process (in a namespace or not) with its output in a log file."""

    def __init__(self, label, argv, log_path, ns=None, env=None, cwd=None):
        self.label = label
        self.argv = list(argv)
        self.log_path = log_path
        self.ns = ns
        full = (["ip", "netns", "exec", ns.name] if ns else []) + self.argv
        e = dict(os.environ)
        if env:
            e.update({k: str(v) for k, v in env.items()})
        self._log = open(log_path, "ab", buffering=0)
        # ip netns exec execs the program: the pid is the program's own.
        self.popen = subprocess.Popen(full, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=e, cwd=cwd,
                                      start_new_session=True)
        self.pid = self.popen.pid
        self.started = time.monotonic()

    def __repr__(self):
        return "<Proc %s pid=%d>" % (self.label, self.pid)

    @property
    def returncode(self):
        return self.popen.poll()

    def alive(self):
        return self.popen.poll() is None

    def send_signal(self, sig):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout):
        """Exit code, or None if still running after timeout seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=5.0, sig=signal.SIGTERM):
        """sig, then SIGKILL after timeout; returns the exit code (negative: signal)."""
        if self.alive():
            self.send_signal(sig)
            if self.wait(timeout) is None:
                self.send_signal(signal.SIGKILL)
                self.wait(5)
        # children it left in its session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self._log.close()
        return self.popen.returncode

    def text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def lines(self):
        return self.text().splitlines()

    def tail(self, n=30):
        return "\n".join(self.lines()[-n:])

    def wait_for(self, pattern, timeout, since=0, count=1):
        """Wait until regex pattern matches count lines (after line index since).
        Returns the matching lines; raises Error on timeout or if the process exits."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            hits = [l for l in self.lines()[since:] if rx.search(l)]
            if len(hits) >= count:
                return hits
            if time.monotonic() > deadline:
                raise Error("%s: %d of %d lines matching /%s/ within %ss; log tail:\n%s" % (
                    self.label, len(hits), count, pattern, timeout, self.tail()))
            if not self.alive():
                hits = [l for l in self.lines()[since:] if rx.search(l)]
                if len(hits) >= count:
                    return hits
                raise Error("%s exited (%s) before /%s/ appeared; log tail:\n%s" % (
                    self.label, self.returncode, pattern, self.tail()))
            time.sleep(0.05)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def threads(self):
        return len(os.listdir("/proc/%d/task" % self.pid))


class Netns:
    """One network namespace of a topology."""

    def __init__(self, topo, short, kind, ip=None):
        self.topo = topo
        self.short = short
        self.kind = kind
        self.name = topo.ns_name(short)
        self.ip = ip
        self.parent = None
        self.procs = []
        self._links = 0

    def __repr__(self):
        return "<%s %s %s>" % (self.kind, self.name, self.ip or "")

    @property
    def path(self):
        """The namespace's bind mount: what istio-cni hands to the node proxy as an fd."""
        return "/run/netns/%s" % self.name

    def open_fd(self):
        """An O_RDONLY fd of this namespace (e.g. for SCM_RIGHTS in a ZDS AddWorkload)."""
        return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    # -- commands ------------------------------------------------------------------
    def run(self, argv, check=True, timeout=60, input=None, env=None):
        e = None
        if env:
            e = dict(os.environ)
            e.update({k: str(v) for k, v in env.items()})
        return sh(["ip", "netns", "exec", self.name] + list(argv), check=check, timeout=timeout,
                  input=input, env=e)

    def shell(self, script, check=True, timeout=60):
        return self.run(["sh", "-c", script], check=check, timeout=timeout)

    def ip_cmd(self, *args):
        return sh(["ip", "-n", self.name] + list(args))

    def sysctl(self, key, value):
        self.run(["sysctl", "-q", "-w", "%s=%s" % (key, value)])

    def spawn(self, label, argv, env=None, cwd=None):
        """Start argv in this namespace in the background; output to <log_dir>/<ns>-<label>.log."""
        path = os.path.join(self.topo.log_dir, "%s-%s.log" % (self.short, label))
        p = Proc("%s/%s" % (self.short, label), argv, path, ns=self, env=env, cwd=cwd)
        self.procs.append(p)
        self.topo._procs.append(p)
        return p

    # -- sockets made in this namespace by this process ----------------------------
    @contextlib.contextmanager
    def entered(self):
        """The calling thread is in this namespace for the with-block: sockets created
        there stay in it. (setns affects only the calling thread.)"""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = self.open_fd()
            try:
                if _libc.setns(target, _CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns(%s): %s" % (self.name, os.strerror(e)))
                try:
                    yield self
                finally:
                    if _libc.setns(home, _CLONE_NEWNET) != 0:
                        # a thread stuck in the wrong namespace must not go on
                        os._exit(70)
            finally:
                os.close(target)
        finally:
            os.close(home)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        with self.entered():
            return socket.socket(family, type)

    def connect(self, host, port, timeout=5.0):
        s = self.socket()
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s

    def http_get(self, host, port, path="/", timeout=2.0):
        """(status, body) of a tiny HTTP/1.0 GET from this namespace."""
        with contextlib.closing(self.connect(host, port, timeout)) as s:
            s.sendall(("GET %s HTTP/1.0\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode())
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
                if len(data) > 1 << 20:
                    break
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        return status, body.decode("utf-8", "replace")

    def wait_http_ready(self, port=READINESS_PORT, path="/healthz/ready", timeout=10.0,
                        proc=None, host="127.0.0.1"):
        """Poll GET path until 200; raises Error with the last answer (and proc's log tail)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                st, body = self.http_get(host, port, path, timeout=1.0)
                if st == 200:
                    return body
                last = "%d %r" % (st, body)
            except OSError as e:
                last = str(e)
            if proc is not None and not proc.alive():
                raise Error("%s exited (%s) before %s:%d%s was ready; log tail:\n%s" % (
                    proc.label, proc.returncode, host, port, path, proc.tail()))
            if time.monotonic() > deadline:
                tail = ("; log tail:\n" + proc.tail()) if proc is not None else ""
                raise Error("%s: %s:%d%s not ready within %ss (last: %s)%s" % (
                    self.name, host, port, path, timeout, last, tail))
            time.sleep(0.05)

    def wait_listen(self, port, timeout=5.0, proc=None, host="127.0.0.1"):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect(host, port, 0.5).close()
                return
            except OSError as e:
                last = e
            if proc is not None and not proc.alive():
                raise Error("%s exited (%s) before listening on %d; log tail:\n%s" % (
                    proc.label, proc.returncode, port, proc.tail()))
            if time.monotonic() > deadline:
                raise Error("%s: nothing listening on %s:%d within %ss (%s)" % (
                    self.name, host, port, timeout, last))
            time.sleep(0.05)

    # -- capture --------------------------------------------------------------------
    def capture_rules(self, outbound=True, inbound=True, inbound_mode="redirect"):
        """iptables-restore input for istio-cni's in-pod capture (istio/istio
        cni/pkg/iptables, "in-pod" mode), adapted to a plain-TCP dedicated proxy:

        - mangle: packets carrying the proxy's mark set connmark 0x111; replies on such
          connections get the mark back, and ip rule fwmark 0x111 -> table 100 (local)
          keeps them in the pod (install_capture adds the rule and the route).
        - nat OUTPUT: TCP not to 127.0.0.1 and not marked 0x539 -> 15001 (outbound);
          connections already marked 0x111 and traffic over lo are left alone.
        - inbound: TCP to the pod, not to 15008, not from the proxy -> 15006.
          inbound_mode "redirect" (nat PREROUTING REDIRECT: the proxy reads the pod's
          address with SO_ORIGINAL_DST) or "tproxy" (mangle TPROXY as istio-cni does:
          needs IP_TRANSPARENT listeners).
        - skipped: DNS capture to 15053 (no DNS proxy yet).
        """
        m = []
        n = []
        m += [":ZT_PRERT - [0:0]", ":ZT_OUTPUT - [0:0]",
              "-A PREROUTING -j ZT_PRERT", "-A OUTPUT -j ZT_OUTPUT",
              "-A ZT_PRERT -m mark --mark %s -j CONNMARK --set-xmark %s" % (PROXY_MARK,
                                                                          CONN_MARK),
              "-A ZT_PRERT -s %s/32 -p tcp -j ACCEPT" % PROBE_SNAT,
              "-A ZT_OUTPUT -m connmark --mark %s -j CONNMARK --restore-mark "
              "--nfmask 0xffffffff --ctmask 0xffffffff" % CONN_MARK]
        n += [":ZT_PRERT - [0:0]", ":ZT_OUTPUT - [0:0]",
              "-A PREROUTING -j ZT_PRERT", "-A OUTPUT -j ZT_OUTPUT",
              "-A ZT_OUTPUT -d %s/32 -p tcp -j ACCEPT" % PROBE_SNAT]
        if inbound:
            if inbound_mode == "tproxy":
                m += ["-A ZT_PRERT ! -d 127.0.0.1/32 -p tcp -i lo -j ACCEPT",
                      "-A ZT_PRERT -p tcp --dport %d -m mark ! --mark %s -j TPROXY "
                      "--on-port %d --tproxy-mark %s" % (INBOUND_HBONE_PORT, PROXY_MARK,
                                                         INBOUND_HBONE_PORT, CONN_MARK),
                      "-A ZT_PRERT -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                      "-A ZT_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark %s -j TPROXY "
                      "--on-port %d --tproxy-mark %s" % (PROXY_MARK, INBOUND_PLAINTEXT_PORT,
                                                         CONN_MARK)]
            elif inbound_mode == "redirect":
                n += ["-A ZT_PRERT -s %s/32 -p tcp -j ACCEPT" % PROBE_SNAT,
                      "-A ZT_PRERT -i lo -j ACCEPT",
                      "-A ZT_PRERT -p tcp --dport %d -j ACCEPT" % INBOUND_HBONE_PORT,
                      "-A ZT_PRERT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark %s -j REDIRECT "
                      "--to-ports %d" % (PROXY_MARK, INBOUND_PLAINTEXT_PORT)]
            else:
                raise ValueError("inbound_mode: redirect or tproxy")
        if outbound:
            n += ["-A ZT_OUTPUT -p tcp -m mark --mark %s -j ACCEPT" % CONN_MARK,
                  "-A ZT_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT",
                  "-A ZT_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark %s -j REDIRECT "
                  "--to-ports %d" % (PROXY_MARK, OUTBOUND_PORT)]
        return "*mangle\n%s\nCOMMIT\n*nat\n%s\nCOMMIT\n" % ("\n".join(m), "\n".join(n))

    def install_capture(self, outbound=True, inbound=True, inbound_mode="redirect"):
        self.run(["iptables-restore", "--noflush", "--wait", "10"],
                 input=self.capture_rules(outbound, inbound, inbound_mode))
        self.ip_cmd("route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
        r = sh(["ip", "-n", self.name, "rule", "show", "pref", "32764"], check=False)
        if "lookup 100" not in r.stdout:
            self.ip_cmd("rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100")
        self.captured = True

    def remove_capture(self):
        for table in ("nat", "mangle"):
            for chain, hook in (("ZT_PRERT", "PREROUTING"), ("ZT_OUTPUT", "OUTPUT")):
                self.run(["iptables", "-w", "10", "-t", table, "-D", hook, "-j", chain],
                         check=False)
                self.run(["iptables", "-w", "10", "-t", table, "-F", chain], check=False)
                self.run(["iptables", "-w", "10", "-t", table, "-X", chain], check=False)
        sh(["ip", "-n", self.name, "rule", "del", "pref", "32764"], check=False)
        self.captured = False

    def iptables_save(self):
        return self.run(["iptables-save"], check=False).stdout


class Topology:
    """Namespaces, links and processes of one test; torn down by teardown()/with."""

    def __init__(self, testid=None, log_dir=None, prefix=PREFIX, quiet=True):
        self.testid = testid or "t%d" % os.getpid()
        if not re.fullmatch(r"[a-z0-9]{1,20}", self.testid):
            raise ValueError("testid: 1-20 of [a-z0-9]")
        self.prefix = prefix
        self.log_dir = log_dir or "/tmp/%s-%s" % (prefix, self.testid)
        os.makedirs(self.log_dir, exist_ok=True)
        self.quiet = quiet
        self.router = None
        self.nodes = []
        self.pods = []
        self._procs = []
        self._created = []  # namespace names, in creation order
        self._old_handlers = {}
        self._torn_down = False

    def ns_name(self, short):
        return "%s-%s-%s" % (self.prefix, self.testid, short)

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self):
        self._install_signal_handlers()
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def _install_signal_handlers(self):
        def raise_exit(signum, frame):
            raise SystemExit(128 + signum)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old_handlers[s] = signal.signal(s, raise_exit)
        import atexit
        atexit.register(self.teardown)

    def setup(self):
        """Create the router namespace (add_node/add_pod do the rest)."""
        if self.router:
            return
        for name in list_netns():
            if name.startswith(self.ns_name("")):
                log("removing leftover namespace %s" % name)
                delete_netns(name)
        self.router = self._new_ns("router", "router")
        self.router.sysctl("net.ipv4.ip_forward", 1)
        # answer every packet to an unknown address at once (no ICMP rate limit)
        self.router.sysctl("net.ipv4.icmp_ratelimit", 0)
        # Whatever is not a known pod or node: unreachable (fast failure, no leak).
        self.router.ip_cmd("route", "add", "unreachable", POD_CIDR)
        self.router.ip_cmd("route", "add", "unreachable", VIP_CIDR)

    def _new_ns(self, short, kind, ip=None):
        ns = Netns(self, short, kind, ip)
        sh(["ip", "netns", "add", ns.name])
        self._created.append(ns.name)
        ns.ip_cmd("link", "set", "lo", "up")
        # no IPv6 on the links: no DAD/RS chatter, nothing routable anyway
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        return ns

    def _link(self, parent, child, child_ip):
        """veth parent:<name> <-> child:eth0; child_ip/32 on eth0; next hop on parent side."""
        parent._links += 1
        pif = ("v%d%s" % (parent._links, child.short))[:15]
        gw = ROUTER_GW if parent.kind == "router" else NODE_GW
        sh(["ip", "-n", parent.name, "link", "add", pif, "type", "veth", "peer", "name", "eth0",
            "netns", child.name])
        parent.ip_cmd("addr", "add", gw + "/32", "dev", pif)
        parent.ip_cmd("link", "set", pif, "up")
        parent.ip_cmd("route", "add", child_ip + "/32", "dev", pif)
        child.ip_cmd("addr", "add", child_ip + "/32", "dev", "eth0")
        child.ip_cmd("link", "set", "eth0", "up")
        child.ip_cmd("route", "add", gw, "dev", "eth0", "scope", "link")
        child.ip_cmd("route", "add", POD_CIDR, "via", gw, "dev", "eth0")
        child.ip_cmd("route", "add", VIP_CIDR, "via", gw, "dev", "eth0")
        child.parent = parent
        child.parent_if = pif
        return pif

    def add_node(self, short, ip=None):
        """A node namespace attached to the router; pods may be attached to it."""
        self.setup()
        ip = ip or "%s%d" % (NODE_NET, len(self.nodes) + 1)
        node = self._new_ns(short, "node", ip)
        node.sysctl("net.ipv4.ip_forward", 1)
        self._link(self.router, node, ip)
        self.nodes.append(node)
        return node

    def add_pod(self, short, ip, node=None):
        """A pod namespace with ip/32 on eth0, attached to node (or the router)."""
        self.setup()
        pod = self._new_ns(short, "pod", ip)
        parent = node or self.router
        self._link(parent, pod, ip)
        if node is not None:
            self.router.ip_cmd("route", "add", ip + "/32", "via", node.ip, "dev",
                               node.parent_if, "onlink")
        pod.node = node
        self.pods.append(pod)
        return pod

    def pod(self, short):
        for p in self.pods:
            if p.short == short:
                return p
        raise KeyError(short)

    def teardown(self):
        if self._torn_down:
            return
        self._torn_down = True
        for p in reversed(self._procs):
            with contextlib.suppress(Exception):
                rc = p.stop(timeout=3)
                if rc is not None and -rc in CRASH_SIGNALS:
                    CRASHES.append("%s (pid %d) died of %s" % (p.label, p.pid,
                                                            signal.Signals(-rc).name))
        # pods first (their veths go with them), then nodes, then the router
        for name in reversed(self._created):
            delete_netns(name)
        for s, h in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(s, h)

    def detach(self):
        """Leave everything running (no teardown at exit); Topology.down(testid) later."""
        self._torn_down = True
        for s, h in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(s, h)

    def describe(self):
        lines = []
        for ns in ([self.router] if self.router else []) + self.nodes + self.pods:
            lines.append("%-6s %-28s %s" % (ns.kind, ns.name, ns.ip or ""))
        return "\n".join(lines)

    # -- housekeeping -----------------------------------------------------------------
    @staticmethod
    def cleanup_stale(prefix=PREFIX):
        """Delete namespaces of test processes that are gone: <prefix>-t<pid>-*."""
        rx = re.compile(r"^%s-t(\d+)-" % re.escape(prefix))
        removed = []
        for name in list_netns():
            m = rx.match(name)
            if m and int(m.group(1)) != os.getpid() and not _owner_alive(int(m.group(1))):
                delete_netns(name)
                removed.append(name)
        if removed:
            log("removed stale namespaces: %s" % " ".join(removed))
        return removed

    @staticmethod
    def down(testid, prefix=PREFIX):
        """Delete every namespace of topology testid (processes in them killed)."""
        names = [n for n in list_netns() if n.startswith("%s-%s-" % (prefix, testid))]
        # pods before router: the order of creation is lost; routers last is enough
        names.sort(key=lambda n: n.endswith("-router"))
        for n in names:
            delete_netns(n)
        return names


if __name__ == "__main__":
    # python3 netns.py stale            delete namespaces of dead test processes
    # python3 netns.py down <testid>    delete zt-<testid>-*
    # python3 netns.py list             list zt-* namespaces
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["stale", "down", "list"])
    ap.add_argument("testid", nargs="?")
    a = ap.parse_args()
    if a.cmd == "stale":
        Topology.cleanup_stale()
    elif a.cmd == "down":
        if not a.testid:
            ap.error("down needs a testid")
        for n in Topology.down(a.testid):
            print("deleted %s" % n)
    else:
        for n in list_netns():
            if n.startswith(PREFIX + "-"):
                print(n)
