#!/usr/bin/python3
"""xds_scale.py - how zring's xDS client copes with a large mesh.

For each size N: a fake istiod (test/integ/fake_istiod.py, plaintext gRPC on
loopback inside a network namespace of its own) serves N workloads and N/20 services
(20 endpoints each) and one policy per 100 workloads; zring (dedicated mode, no local
config, XDS_ADDRESS=http://...) starts in the same namespace. Measured:
  - start to ready: zring's start until its log says the initial configuration
    arrived (both types applied, snapshot published);
  - one change: istiod pushes one re-versioned workload; the time from that push to
    zring's ACK (each update rebuilds the whole snapshot today), over --updates
    changes, median and spread;
  - zring's RSS once ready, and after the changes and 31 s of quiet (zring hands
    the rebuilds' scratch memory back after 30 quiet seconds).
Usage (root): bench/xds_scale.py --zring build/engine/zring [--sizes 1000,10000,50000]
"""
import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import rss_kib  # noqa: E402 (the harness's VmRSS reader)
ROOT = os.path.dirname(HERE)
FAKE = os.path.join(ROOT, "test", "integ", "fake_istiod.py")
PROTO = os.path.join(ROOT, "xds", "proto")
NS = "zt-xdsbench"
PORT = 15012


def ip_of(i):
    return bytes([10, 100 + (i >> 16), (i >> 8) & 255, i & 255])


def state(n):
    addr, authz = {}, {}
    for i in range(n):
        svc = "bench/svc-%d.bench.svc.cluster.local" % (i // 20)
        addr["Kubernetes//Pod/bench/w-%d" % i] = {"version": "1", "proto": {"workload": {
            "uid": "Kubernetes//Pod/bench/w-%d" % i, "name": "w-%d" % i, "namespace": "bench",
            "addresses": [base64.b64encode(ip_of(i)).decode()],
            "serviceAccount": "sa-%d" % (i % 50), "node": "node-%d" % (i % 100),
            "tunnelProtocol": "HBONE",
            "services": {svc: {"ports": [{"servicePort": 80, "targetPort": 8080}]}}}}}
    for k in range((n + 19) // 20):
        addr["bench/svc-%d.bench.svc.cluster.local" % k] = {"version": "1", "proto": {"service": {
            "name": "svc-%d" % k, "namespace": "bench",
            "hostname": "svc-%d.bench.svc.cluster.local" % k,
            "addresses": [{"network": "", "address": base64.b64encode(
                bytes([10, 200 + (k >> 16), (k >> 8) & 255, k & 255])).decode()}],
            "ports": [{"servicePort": 80, "targetPort": 8080}]}}}
    for k in range(max(1, n // 100)):
        authz["bench/pol-%d" % k] = {"version": "1", "proto": {
            "name": "pol-%d" % k, "namespace": "bench", "scope": "WORKLOAD_SELECTOR",
            "action": "ALLOW", "rules": [{"clauses": [{"matches": [{"principals": [
                {"exact": "cluster.local/ns/bench/sa/sa-%d" % (k % 50)}]}]}]}]}}
    return {"address": addr, "authorization": authz, "generation": 0}


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def log_records(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def wait(pred, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit("xds_scale: timed out waiting for %s" % what)


def run_size(zring, n, updates, tmp):
    st_path = os.path.join(tmp, "state-%d.json" % n)
    log = os.path.join(tmp, "istiod-%d.jsonl" % n)
    doc = state(n)
    with open(st_path, "w") as f:
        json.dump(doc, f)
    ist = subprocess.Popen(["ip", "netns", "exec", NS, "/usr/bin/python3", FAKE, "--listen",
                            "127.0.0.1:%d" % PORT, "--proto-dir", PROTO, "--state", st_path,
                            "--log", log, "--ca-cert", os.path.join(tmp, "root.pem"),
                            "--ca-key", os.path.join(tmp, "root.key")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ist.stdout.readline()  # "fake istiod listening"
    zlog = open(os.path.join(tmp, "zring-%d.log" % n), "w+")
    env = dict(os.environ, XDS_ADDRESS="http://127.0.0.1:%d" % PORT, INSTANCE_IP="10.0.0.1",
               POD_NAME="ztunnel-bench", POD_NAMESPACE="istio-system", NODE_NAME="node-0")
    t0 = time.monotonic()
    z = subprocess.Popen(["ip", "netns", "exec", NS, zring, "--shards", "1"], env=env,
                         stdout=zlog, stderr=subprocess.STDOUT)
    try:
        def ready():
            zlog.seek(0)
            return "initial configuration received" in zlog.read()
        wait(ready, 300, "zring's initial configuration (N=%d)" % n)
        t_ready = time.monotonic() - t0
        zpid = int(sh("pgrep", "-n", "-f", zring).stdout.split()[0])
        rss = rss_kib(zpid)
        lat = []
        for u in range(updates):
            before = len(log_records(log))
            name = "Kubernetes//Pod/bench/w-%d" % (u * 7 % n)
            doc["address"][name]["version"] = "u%d" % u
            tmpf = st_path + ".tmp"
            with open(tmpf, "w") as f:
                json.dump(doc, f)
            os.rename(tmpf, st_path)

            def acked():
                recs = log_records(log)[before:]
                push = [r for r in recs if r.get("event") == "push"]
                if not push:
                    return None
                ack = [r for r in recs if r.get("response_nonce") == push[0]["nonce"]]
                return (push[0], ack[0]) if ack else None
            push, ack = wait(acked, 120, "the ACK of update %d" % u)
            lat.append((ack["t"] - push["t"]) * 1000)
        time.sleep(31)  # zring trims its heap after 30 quiet seconds
        rss_after = rss_kib(zpid)
        zlog.seek(0)
        reb = re.findall(r"rebuilt in ([0-9.]+) ms, ([0-9.]+) decoding", zlog.read())[-updates:]
        return t_ready, rss, rss_after, lat, [(float(a), float(b)) for a, b in reb]
    finally:
        z.terminate()
        z.wait(10)
        ist.terminate()
        ist.wait(10)
        zlog.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zring", default=os.path.join(ROOT, "build", "engine", "zring"))
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--updates", type=int, default=7)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("xds_scale: needs root (a network namespace of its own)")
    zring = os.path.abspath(a.zring)
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        with tempfile.TemporaryDirectory(prefix="xds-scale-") as tmp:
            sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
               os.path.join(tmp, "root.key"))
            sh("openssl", "req", "-x509", "-new", "-key", os.path.join(tmp, "root.key"),
               "-subj", "/O=bench", "-days", "1", "-out", os.path.join(tmp, "root.pem"))
            print("| workloads | services | policies | start to ready (s) | RSS when ready / "
                  "31 s after the changes (MiB) | one change, push to ACK (ms): median [min-max] of %d | of which "
                  "the rebuild / decoding (ms, median) |" % a.updates)
            print("|---|---|---|---|---|---|---|")
            for n in [int(x) for x in a.sizes.split(",")]:
                t_ready, rss, rss_after, lat, reb = run_size(zring, n, a.updates, tmp)
                print("| %d | %d | %d | %.2f | %.1f / %.1f | %.1f [%.1f-%.1f] | %.1f / %.1f |" % (
                    n, (n + 19) // 20, max(1, n // 100), t_ready, rss / 1024, rss_after / 1024,
                    statistics.median(lat), min(lat), max(lat),
                    statistics.median(r[0] for r in reb) if reb else 0,
                    statistics.median(r[1] for r in reb) if reb else 0), flush=True)
    finally:
        sh("ip", "netns", "del", NS, check=False)


if __name__ == "__main__":
    sys.exit(main())
