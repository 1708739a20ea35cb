#!/usr/bin/python3
"""The README's main job (run by scripts/demo.sh): a small local mesh in network
namespaces with zring in front of the client.

    sleep      10.77.1.10  curl; zring (dedicated mode) + istio-cni's in-pod capture rules
    httpbin-1  10.77.2.10  HTTP server on 8080, page names the replica
    httpbin-2  10.77.3.10  HTTP server on 8080
    service httpbin.ambient-demo.svc.cluster.local  VIP 10.96.0.10:8000 -> 8080

`curl http://10.96.0.10:8000/` from sleep is captured into zring, which picks a replica;
then zring's access log lines are shown. Everything is torn down at the end unless
--keep; --down tears a kept demo down.
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
from netns import Topology  # noqa: E402

TESTID = "demo"
LOGDIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), "zring-demo")
SLEEP_IP = "10.77.1.10"
REPLICAS = [("httpbin-1", "10.77.2.10"), ("httpbin-2", "10.77.3.10")]
VIP, PORT, TARGET = "10.96.0.10", 8000, 8080
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


def main():
    ap = argparse.ArgumentParser(description="zring's local mesh demo")
    ap.add_argument("--zring", default="build/engine/zring")
    ap.add_argument("--config", default="examples/demo-mesh.yaml")
    ap.add_argument("--keep", action="store_true", help="leave the mesh running")
    ap.add_argument("--down", action="store_true", help="tear down a kept demo")
    a = ap.parse_args()

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
    ok = False
    try:
        with steps("checking the binary, the config and the tools"):
            if not os.access(zring, os.X_OK):
                raise Exception("no zring binary at %s (did the build fail?)" % zring)
            if not os.path.isfile(config):
                raise Exception("no config file at %s" % config)
            text = open(config).read()
            for name, ip in [("sleep", SLEEP_IP)] + REPLICAS:
                if ip not in text:
                    raise Exception("%s does not mention %s's address %s" % (config, name, ip))
            why = netns.preflight(("curl",))
            if why:
                raise Exception(why)

        with steps("building the mesh in network namespaces (zt-%s-*)" % TESTID):
            if any(n.startswith("%s-%s-" % (netns.PREFIX, TESTID)) for n in netns.list_netns()):
                out("demo:     removing the mesh of a previous run")
                Topology.down(TESTID)
            os.makedirs(LOGDIR, exist_ok=True)
            for f in os.listdir(LOGDIR):
                if f.endswith(".log") and f != "setup.log":
                    os.unlink(os.path.join(LOGDIR, f))
            topo = Topology(testid=TESTID, log_dir=LOGDIR)
            topo.__enter__()
            sleep = topo.add_pod("sleep", SLEEP_IP)
            pods = [(name, ip, topo.add_pod(name, ip)) for name, ip in REPLICAS]
            for line in topo.describe().splitlines():
                out("demo:     " + line)

        with steps("starting httpbin-1 and httpbin-2 (python3 http.server on :%d)" % TARGET):
            servers = []
            for name, ip, pod in pods:
                d = os.path.join(LOGDIR, "www-" + name)
                write_page(d, name, ip)
                servers.append((pod, pod.spawn("http", ["/usr/bin/python3", "-m", "http.server",
                                                        str(TARGET), "--bind", "0.0.0.0",
                                                        "--directory", d])))
            for pod, p in servers:
                pod.wait_listen(TARGET, timeout=10, proc=p)

        with steps("starting zring in sleep (dedicated mode) with %s" % os.path.relpath(config)):
            sleep.install_capture()
            z = sleep.spawn("zring", [zring, "--config", config],
                            env={"PROXY_MODE": "dedicated"})
            sleep.wait_http_ready(timeout=15, proc=z)
            out("demo:     zring is ready (GET :15021/healthz/ready -> 200); capture rules:")
            for line in sleep.iptables_save().splitlines():
                if line.startswith("-A ZT_") and ("REDIRECT" in line or "CONNMARK" in line):
                    out("demo:       " + line)

        with steps("curl http://%s:%d/ from sleep, %d times" % (VIP, PORT, CURLS)):
            seen = collections.Counter()
            failures = []
            for i in range(CURLS):
                r = sleep.run(["curl", "-sS", "-m", "5", "-w", "\n%{http_code}",
                               "http://%s:%d/" % (VIP, PORT)], check=False, timeout=15)
                body, _, code = r.stdout.rpartition("\n")
                m = re.search(r"<h1>(httpbin-\d)</h1>", body)
                if r.returncode == 0 and code == "200" and m:
                    seen[m.group(1)] += 1
                    out("demo:     %2d  HTTP %s  answered by %s" % (i + 1, code, m.group(1)))
                else:
                    failures.append(i + 1)
                    out("demo:     %2d  FAILED: curl exit %d, HTTP %s %s" % (
                        i + 1, r.returncode, code or "-", r.stderr.strip()))
            out("demo:     replicas: %s" % ", ".join("%s x%d" % kv for kv in sorted(seen.items())))
            if failures:
                raise Exception("%d of %d requests failed (zring log: %s)" % (
                    len(failures), CURLS, z.log_path))

        with steps("zring's access log (%s)" % z.log_path):
            deadline = time.monotonic() + 5
            while True:
                lines = [l for l in z.lines() if "\taccess\t" in l]
                if len(lines) >= CURLS or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            for l in lines:
                out(l)
            if len(lines) < CURLS:
                raise Exception("%d access lines for %d requests" % (len(lines), CURLS))
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
        out("demo: the mesh is still running. To look at it:")
        out("  ip netns exec zt-demo-sleep curl http://%s:%d/" % (VIP, PORT))
        out("  tail -f %s/sleep-zring.log            # zring's log (access lines)" % LOGDIR)
        out("  ip netns exec zt-demo-sleep curl -s http://127.0.0.1:15021/healthz/ready")
        out("  ip netns exec zt-demo-sleep iptables-save   # the capture rules")
        out("  ip netns list | grep zt-demo")
        out("Tear it down with:  scripts/demo.sh --down")
    else:
        out("demo: done (run scripts/demo.sh --keep to leave the mesh running)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
