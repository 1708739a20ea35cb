#!/usr/bin/python3
"""The README's main job (run by scripts/demo.sh), after the Istio guide "L4
networking and mTLS with ztunnel", in network namespaces instead of a kind cluster:

    node-1   zring (PROXY_MODE=shared) + an istio-cni stand-in handing it its pods
      sleep-1    10.77.1.10   curl
      notsleep   10.77.1.11   curl
      httpbin-1  10.77.1.20   HTTP server on 8080 (page title httpbin.org)
    node-2   zring (PROXY_MODE=shared) + an istio-cni stand-in
      sleep-2    10.77.2.10
      httpbin-2  10.77.2.20
    client       10.77.9.10   outside the mesh: no capture, not handed to zring
    service httpbin.ambient-demo.svc.cluster.local  VIP 10.96.0.10:8000 -> 8080

Every pod of the mesh has istio-cni's in-pod rules (outbound -> 15001, inbound
TPROXY -> 15006) and its listeners are opened by its node's zring inside the pod's
network namespace. `curl httpbin:8000` from sleep goes through sleep's node's zring
(load-balanced to either replica) and the replica's node's zring; the client outside
the mesh reaches a replica through that replica's node's zring only. Each node's
access log and metrics are shown. Everything is torn down at the end unless --keep;
--down tears a kept demo down.
"""
import argparse
import collections
import contextlib
import html
import os
import re
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from cni_standin import CniStandin  # noqa: E402
from netns import Topology  # noqa: E402

TESTID = "demo"
LOGDIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), "zring-demo")
NS = "ambient-demo"
# pod: (ip, node)
PODS = {
    "sleep-1": ("10.77.1.10", "node-1"),
    "notsleep": ("10.77.1.11", "node-1"),
    "httpbin-1": ("10.77.1.20", "node-1"),
    "sleep-2": ("10.77.2.10", "node-2"),
    "httpbin-2": ("10.77.2.20", "node-2"),
}
CLIENT_IP = "10.77.9.10"
REPLICAS = ["httpbin-1", "httpbin-2"]
VIP, PORT, TARGET = "10.96.0.10", 8000, 8080
HOST = "httpbin"
CURLS = 10


def out(msg=""):
    print(msg, flush=True)


class StepFailed(Exception):
    pass


class Steps:
    def __init__(self):
        self.n = 0
        self.current = None

    @contextlib.contextmanager
    def __call__(self, what):
        self.n += 1
        self.current = "step %d (%s)" % (self.n, what)
        out("demo: [%d] %s" % (self.n, what))
        try:
            yield
        except StepFailed:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is reported with its step
            raise StepFailed("%s: %s" % (self.current, e)) from e


def down():
    names = Topology.down(TESTID)
    if names:
        out("demo: removed %s" % " ".join(names))
    else:
        out("demo: nothing to tear down (no zt-%s-* namespaces)" % TESTID)


def write_page(dirname, name, ip):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, "index.html"), "w") as f:
        f.write("<!DOCTYPE html>\n<html><head><title>httpbin.org</title></head>\n"
                "<body><h1>%s</h1><p>Hello from replica %s (pod %s:%d) of service httpbin in "
                "namespace ambient-demo.</p></body></html>\n" % (
                    html.escape(name), html.escape(name), ip, TARGET))


# The guide's policies, as istiod hands them to ztunnel (local-config form).
ALLOW_SLEEP = """- name: allow-sleep
  namespace: ambient-demo
  scope: WorkloadSelector
  action: Allow
  rules:
  - - - principals:
        - Exact: cluster.local/ns/ambient-demo/sa/sleep
"""
# The same policy with "to: operation: methods: [GET]": istiod drops ALLOW rules
# that need L7 attributes for ztunnel, so no rule is left and nothing matches.
ALLOW_SLEEP_GET = """- name: allow-sleep
  namespace: ambient-demo
  scope: WorkloadSelector
  action: Allow
  rules: []
"""
# PeerAuthentication STRICT, as istiod converts it.
STRICT = """- name: istio_converted_static_strict
  namespace: istio-system
  scope: WorkloadSelector
  action: Deny
  rules:
  - - - notPrincipals:
        - Presence: {}
"""


def render_config(base, policy, refs):
    """The base config with `policy` (YAML list items) and httpbin referencing
    `refs` ("ns/name" keys), as istiod would send them."""
    out = []
    for line in base.splitlines():
        out.append(line)
        m = re.match(r"^  name: (httpbin-\d)$", line)
        if m and refs:
            out.append("  authorizationPolicies: [%s]" % ", ".join('"%s"' % r for r in refs))
    text = "\n".join(out) + "\n"
    if policy:
        text += "policies:\n" + policy
    return text


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def curl(pod, url, resolve=None):
    """(ok, replica or error text) of one curl from pod."""
    argv = ["curl", "-sS", "-m", "5", "-w", "\n%{http_code}"]
    if resolve:
        argv += ["--resolve", resolve]
    r = pod.run(argv + [url], check=False, timeout=15)
    body, _, code = r.stdout.rpartition("\n")
    m = re.search(r"<h1>(httpbin-\d)</h1>", body)
    if r.returncode == 0 and code == "200" and m and "<title>httpbin.org</title>" in body:
        return True, m.group(1)
    return False, "curl exit %d, HTTP %s %s" % (r.returncode, code or "-", r.stderr.strip())


def main():
    global TESTID, LOGDIR
    ap = argparse.ArgumentParser(description="zring's local mesh demo")
    ap.add_argument("--zring", default="build/engine/zring")
    ap.add_argument("--config", default="examples/ambient-demo.yaml")
    ap.add_argument("--keep", action="store_true", help="leave the mesh running")
    ap.add_argument("--down", action="store_true", help="tear down a kept demo")
    ap.add_argument("--testid", default=TESTID,
                    help="namespace prefix zt-<testid>- (the test suite runs it as 'guide')")
    ap.add_argument("--logdir", default=LOGDIR)
    ap.add_argument("--ztdata", help=argparse.SUPPRESS)  # passed by meson like other tests
    a = ap.parse_args()
    TESTID, LOGDIR = a.testid, a.logdir

    if os.geteuid() != 0:
        out("demo: FAILED: must run as root (network namespaces, veth, iptables)")
        return 1
    if a.down:
        down()
        return 0

    zring = os.path.abspath(a.zring)
    config = os.path.abspath(a.config)
    steps = Steps()
    topo = None
    cnis = {}
    ok = False
    try:
        with steps("checking the binary, the config and the tools"):
            if not os.access(zring, os.X_OK):
                raise Exception("no zring binary at %s (did the build fail?)" % zring)
            if not os.path.isfile(config):
                raise Exception("no config file at %s" % config)
            text = open(config).read()
            for name, (ip, _) in PODS.items():
                if ip not in text:
                    raise Exception("%s does not mention %s's address %s" % (config, name, ip))
            why = netns.preflight(("curl",))
            if why:
                raise Exception(why)

        with steps("building two nodes and their pods in network namespaces (zt-%s-*)" % TESTID):
            if any(n.startswith("%s-%s-" % (netns.PREFIX, TESTID)) for n in netns.list_netns()):
                out("demo:     removing the mesh of a previous run")
                Topology.down(TESTID)
            os.makedirs(LOGDIR, exist_ok=True)
            for f in os.listdir(LOGDIR):
                if f.endswith(".log") and f != "setup.log" or f.endswith(".sock"):
                    os.unlink(os.path.join(LOGDIR, f))
            topo = Topology(testid=TESTID, log_dir=LOGDIR)
            topo.__enter__()
            nodes = {"node-1": topo.add_node("node-1"), "node-2": topo.add_node("node-2")}
            pods = {name: topo.add_pod(name, ip, node=nodes[node])
                    for name, (ip, node) in PODS.items()}
            client = topo.add_pod("client", CLIENT_IP)
            for line in topo.describe().splitlines():
                out("demo:     " + line)

        with steps("starting httpbin-1 and httpbin-2 (python3 http.server on :%d)" % TARGET):
            servers = []
            for name in REPLICAS:
                d = os.path.join(LOGDIR, "www-" + name)
                write_page(d, name, PODS[name][0])
                pod = pods[name]
                servers.append((pod, pod.spawn("http", ["/usr/bin/python3", "-m", "http.server",
                                                        str(TARGET), "--bind", "0.0.0.0",
                                                        "--directory", d])))
            for pod, p in servers:
                pod.wait_listen(TARGET, timeout=10, proc=p)

        with steps("starting zring on each node (PROXY_MODE=shared) with %s" % os.path.relpath(config)):
            base = open(config).read()
            live = os.path.join(LOGDIR, "mesh.yaml")  # what istiod would push: edited below
            write_atomic(live, render_config(base, None, []))
            ca = [os.path.join(LOGDIR, "root-cert.pem"), os.path.join(LOGDIR, "root-key.pem")]
            for f in ca:
                if os.path.exists(f):
                    os.unlink(f)
            zr = {}
            for nname, node in nodes.items():
                sock = os.path.join(LOGDIR, "%s-ztunnel.sock" % nname)
                cnis[nname] = CniStandin(sock)
                zr[nname] = node.spawn("zring", [zring, "--config", live, "--ca-cert", ca[0],
                                                 "--ca-key", ca[1]],
                                       env={"PROXY_MODE": "shared", "INPOD_UDS": sock})
                if nname == "node-1":  # node-1 creates the shared root, node-2 loads it
                    zr[nname].wait_for(r"embedded CA root", 10)
            for nname in nodes:
                cnis[nname].accept(timeout=10)
                st, body = nodes[nname].http_get("127.0.0.1", 15021, "/healthz/ready")
                out("demo:     %s: zring connected to istio-cni; readiness %d %s" % (
                    nname, st, body.strip()))

        with steps("istio-cni adds the pods to the mesh: in-pod rules, then their netns to zring"):
            for name, pod in pods.items():
                pod.install_capture(inbound_mode="tproxy")
                node = PODS[name][1]
                err = cnis[node].add("Kubernetes//Pod/%s/%s" % (NS, name), pod.path, name, NS,
                                     name.rsplit("-", 1)[0] if name[-1].isdigit() else name)
                if err:
                    raise Exception("%s: AddWorkload NACKed: %s" % (name, err))
                out("demo:     %-9s -> %s's zring: ACK" % (name, node))
            for nname, node in nodes.items():
                if cnis[nname].snapshot_sent():
                    raise Exception("SnapshotSent NACKed by %s" % nname)
                node.wait_http_ready(timeout=15, proc=zr[nname])
            out("demo:     both nodes ready (GET :15021/healthz/ready -> 200)")

        marks = {n: len(z.lines()) for n, z in zr.items()}
        with steps("curl http://%s:%d/ from sleep-1 (node-1), %d times" % (HOST, PORT, CURLS)):
            seen = collections.Counter()
            failures = 0
            for i in range(CURLS):
                good, what = curl(pods["sleep-1"], "http://%s:%d/" % (HOST, PORT),
                                  resolve="%s:%d:%s" % (HOST, PORT, VIP))
                if good:
                    seen[what] += 1
                    out("demo:     %2d  HTTP 200 <title>httpbin.org</title>  answered by %s" % (
                        i + 1, what))
                else:
                    failures += 1
                    out("demo:     %2d  FAILED: %s" % (i + 1, what))
            out("demo:     replicas: %s" % ", ".join("%s x%d" % kv for kv in sorted(seen.items())))
            if failures:
                raise Exception("%d of %d requests failed" % (failures, CURLS))

        with steps("curl httpbin-1 directly from the client outside the mesh"):
            good, what = curl(client, "http://%s:%d/" % (PODS["httpbin-1"][0], TARGET))
            if not good:
                raise Exception(what)
            out("demo:     HTTP 200 from %s (captured on arrival by node-1's zring)" % what)

        with steps("each node's access log"):
            time.sleep(0.3)
            total = 0
            for nname, z in zr.items():
                lines = [l for l in z.lines()[marks[nname]:] if "\taccess\t" in l]
                total += len(lines)
                out("demo:   --- %s (%s)" % (nname, z.log_path))
                for l in lines:
                    out(l)
            hb = sum(1 for z in zr.values() for l in z.lines() if "dst.hbone_addr=" in l)
            out("demo:     %d of those lines went through HBONE (mTLS + HTTP/2 CONNECT)" % hb)
            if total < CURLS * 2 + 1:
                raise Exception("%d access lines, expected at least %d" % (total, CURLS * 2 + 1))

        with steps("node-1's metrics (GET :15020/metrics), opened connections"):
            st, body = nodes["node-1"].http_get("127.0.0.1", 15020, "/metrics")
            for l in body.splitlines():
                if l.startswith("istio_tcp_connections_opened_total"):
                    lab = dict(re.findall(r'(\w+)="([^"]*)"', l))
                    out("demo:     %s  reporter=%s %s -> %s/%s  %s" % (
                        l.rsplit(" ", 1)[1], lab.get("reporter"),
                        lab.get("source_workload"), lab.get("destination_service"),
                        lab.get("destination_workload"), lab.get("response_flags")))

        def apply(what, policy, refs):
            marks_ = {n: len(z.lines()) for n, z in zr.items()}
            write_atomic(live, render_config(base, policy, refs))
            for n, z in zr.items():
                z.wait_for(r"local config reloaded", 10, since=marks_[n])
            out("demo:     applied: %s" % what)

        def expect(pod_name, want_ok, target=None):
            pod = client if pod_name == "client" else pods[pod_name]
            if target:
                good, what = curl(pod, target)
            else:
                good, what = curl(pod, "http://%s:%d/" % (HOST, PORT),
                                  resolve="%s:%d:%s" % (HOST, PORT, VIP))
            out("demo:     %-8s -> %-24s %s" % (pod_name, target or "httpbin:8000",
                                                ("HTTP 200 from " + what) if good else
                                                ("rejected (" + what + ")")))
            if good != want_ok:
                raise Exception("%s: expected %s" % (pod_name, "success" if want_ok else
                                                      "rejection"))

        direct = "http://%s:%d/" % (PODS["httpbin-1"][0], TARGET)
        with steps("AuthorizationPolicy allow-sleep: ALLOW principal cluster.local/ns/ambient-demo/sa/sleep on httpbin"):
            expect("notsleep", True)
            rb = {n: len(z.lines()) for n, z in zr.items()}
            apply("allow-sleep", ALLOW_SLEEP, ["ambient-demo/allow-sleep"])
            expect("sleep-1", True)
            expect("sleep-2", True)
            expect("notsleep", False)
            time.sleep(0.3)
            for n, z in zr.items():
                for l in z.lines()[rb[n]:]:
                    if "RBAC rejected" in l:
                        out(l)

        with steps("the same policy with an HTTP condition (methods: GET): istiod drops the L7 rule"):
            apply("allow-sleep with to.operation.methods=[GET] (no rule left)", ALLOW_SLEEP_GET,
                  ["ambient-demo/allow-sleep"])
            expect("sleep-1", False)
            expect("notsleep", False)

        with steps("PeerAuthentication STRICT for httpbin (no other policy)"):
            apply("STRICT", STRICT, ["istio-system/istio_converted_static_strict"])
            expect("sleep-1", True)
            expect("client", False, direct)

        with steps("PeerAuthentication PERMISSIVE"):
            apply("PERMISSIVE (nothing sent to ztunnel)", None, [])
            expect("client", True, direct)
            expect("sleep-1", True)
        ok = True
    except StepFailed as e:
        out("")
        out("demo: FAILED at %s" % e)
        if os.environ.get("DEMO_DEBUG"):
            traceback.print_exc()
        if topo is not None:
            for p in topo._procs:
                out("demo: --- last lines of %s (%s)" % (p.label, p.log_path))
                out(p.tail(15))
    except KeyboardInterrupt:
        out("demo: interrupted")
    finally:
        for c in cnis.values():
            with contextlib.suppress(Exception):
                c.close()
        if topo is not None:
            if ok and a.keep:
                topo.detach()
            else:
                out("demo: tearing down")
                topo.teardown()
    if not ok:
        return 1
    out("")
    if a.keep:
        out("demo: the mesh is still running (zring keeps serving its pods without istio-cni).")
        out("To look at it:")
        out("  ip netns exec zt-demo-sleep-1 curl --resolve %s:%d:%s http://%s:%d/" % (
            HOST, PORT, VIP, HOST, PORT))
        out("  tail -f %s/node-1-zring.log %s/node-2-zring.log" % (LOGDIR, LOGDIR))
        out("  ip netns exec zt-demo-node-1 curl -s http://127.0.0.1:15020/metrics")
        out("  ip netns exec zt-demo-sleep-1 iptables-save   # istio-cni's in-pod rules")
        out("  ip netns list | grep zt-demo")
        out("Tear it down with:  scripts/demo.sh --down")
    else:
        out("demo: done (run scripts/demo.sh --keep to leave the mesh running)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
