#!/usr/bin/python3
"""Shared mode: one set of pod listeners shared by all shards (zring's default)
against one set per shard (--pod-listeners per-shard). For each: file
descriptors and RSS with 300 pods handed over, then 4000 short connections
(16 at a time) from one pod to another through the node's zring: connections
per second and how the shards split the accepts.

    bench/pod_listeners.py [--zring build/engine/zring] [--shards 2]

Runs as root in network namespaces it creates (zt-t<pid>-*) and removes."""
import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integ"))
import netns  # noqa: E402
import ztlib  # noqa: E402
from cni_standin import CniStandin  # noqa: E402
from netns import Topology  # noqa: E402

C, S = "10.77.1.10", "10.77.1.20"


def one(mode, a, logdir):
    with Topology(log_dir=logdir) as t:
        node = t.add_node("n1")
        c = t.add_pod("c", C, node=node)
        s = t.add_pod("s", S, node=node)
        for p in (c, s):
            p.install_capture(inbound_mode="tproxy")
        srv = s.spawn("srv", [a.ztdata, "serve", "--port", "8080", "--name", "s"])
        srv.wait_for(r"^LISTEN ", 5)
        cfg = os.path.join(logdir, "mesh.json")
        ztlib.write_config(cfg, [ztlib.workload("c", C), ztlib.workload("s", S)], [])
        sock = os.path.join(logdir, "zds-%s.sock" % mode)
        cni = CniStandin(sock)
        z = node.spawn("zring", [a.zring, "--config", cfg, "--shards", str(a.shards),
                                 "--pod-listeners", mode, "--log-level", "warn"],
                       env={"PROXY_MODE": "shared", "INPOD_UDS": sock})
        cni.accept()
        time.sleep(0.3)
        fd0, rss0 = z.fd_count(), z.rss_kib()
        names = []
        for i in range(a.pods):
            n = t.ns_name("x%d" % i)
            netns.sh(["ip", "netns", "add", n])
            t._created.append(n)
            names.append(n)
        t0 = time.monotonic()
        for i, n in enumerate(names):
            cni.add("uid-x%d" % i, "/var/run/netns/" + n, "x%d" % i, "bench", "sa")
        add_s = time.monotonic() - t0
        cni.add("uid-c", c.path, "c", ztlib.NS, "c")
        cni.add("uid-s", s.path, "s", ztlib.NS, "s")
        cni.snapshot_sent()
        node.wait_http_ready(proc=z, timeout=10)
        time.sleep(0.3)
        fd1, rss1 = z.fd_count(), z.rss_kib()
        r = c.run([a.ztdata, "client", "--connect", S + ":8080", "--op", "hello", "--count",
                   str(a.conns), "--parallel", "16", "--timeout", "60"], check=False, timeout=120)
        _, summ = ztlib.parse_client_output(r.stdout)
        st, body = node.http_get("127.0.0.1", 15020, "/metrics")
        acc = [int(v) for v in re.findall(r'zring_shard_connections_accepted_total\{shard="\d+"\} (\d+)', body)]
        cni.close()
        secs = float(summ.get("seconds", "0") or 0)
        return {"mode": mode, "fds_per_pod": (fd1 - fd0) / (a.pods + 2),
                "fds": "%d -> %d" % (fd0, fd1), "rss_kib_per_pod": (rss1 - rss0) / (a.pods + 2),
                "add_s": add_s, "ok": summ.get("ok"), "fail": summ.get("fail"),
                "conn_per_s": (int(summ.get("ok", 0)) / secs) if secs else 0, "accepted": acc}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zring", default="build/engine/zring")
    ap.add_argument("--ztdata", default="build/test/integ/ztdata")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--conns", type=int, default=4000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    a.zring, a.ztdata = os.path.abspath(a.zring), os.path.abspath(a.ztdata)
    Topology.cleanup_stale()
    logdir = "/tmp/zring-bench-podl"
    os.makedirs(logdir, exist_ok=True)
    res = []
    for run in range(a.runs):
        for mode in ("shared", "per-shard"):  # interleaved
            r = one(mode, a, logdir)
            res.append(r)
            print("run %d %-9s fds %s (%.2f per pod), RSS %.1f KiB per pod, %d pods added in "
                  "%.2fs; %s ok / %s failed, %.0f conn/s, accepts per shard %s" % (
                      run + 1, mode, r["fds"], r["fds_per_pod"], r["rss_kib_per_pod"],
                      a.pods, r["add_s"], r["ok"], r["fail"], r["conn_per_s"], r["accepted"]),
                  flush=True)
    for mode in ("shared", "per-shard"):
        rs = sorted(x["conn_per_s"] for x in res if x["mode"] == mode)
        print("%-9s conn/s median %.0f (min %.0f, max %.0f)" % (mode, rs[len(rs) // 2], rs[0], rs[-1]))


if __name__ == "__main__":
    main()
