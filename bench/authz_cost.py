#!/usr/bin/python3
"""Connections per second through zring's inbound path with no policies against
1,000 policies in the mesh of which 50 apply to the destination (5 global, 20 of
its namespace, 25 it names; 49 do not match, one ALLOW does). Each inbound
connection is authorized (plaintext, 15006). Measured 2026-11-25, 3 interleaved
runs of 4,000 connections 16 at a time: no policies median 5,698 conn/s
(4,396-5,806), 1,000 policies median 5,666 (5,602-5,908): ratio 0.994.

    bench/authz_cost.py [--zring build/engine/zring] [--runs 3] [--conns 4000]

Root; network namespaces zt-t<pid>-* made and removed by the script."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "integ"))
import ztlib  # noqa: E402
from netns import Topology  # noqa: E402

C, S = "10.77.1.10", "10.77.2.10"
NS = ztlib.NS


def policy(name, ns, scope, principal_ns, rules_port):
    return {"name": name, "namespace": ns, "scope": scope, "action": "Allow",
            "rules": [[[{"namespaces": [{"Exact": principal_ns}],
                         "destinationPorts": [rules_port]}]]]}


def config(with_policies):
    wl = [ztlib.workload("client", C), ztlib.workload("server", S)]
    pols = []
    if with_policies:
        refs = []
        for i in range(1000):
            if i < 5:
                pols.append(policy("g%d" % i, "istio-system", "Global", "nomatch", 1))
            elif i < 25:
                pols.append(policy("n%d" % i, NS, "Namespace", "nomatch", 1))
            elif i < 50:
                pols.append(policy("w%d" % i, NS, "WorkloadSelector", "nomatch", 1))
                refs.append("%s/w%d" % (NS, i))
            else:
                pols.append(policy("o%d" % i, "other-%d" % (i % 50), "Namespace", "x", 1))
        # the 50th applying policy allows the plaintext client (no identity: a
        # notPrincipals match on something it cannot have)
        pols[49]["rules"] = [[[{"destinationPorts": [8080]}]]]
        wl[1]["authorizationPolicies"] = refs
    return {"workloads": wl, "services": [], "policies": pols}


def run(a, with_policies, logdir):
    with Topology(log_dir=logdir) as t:
        c = t.add_pod("c", C)
        s = t.add_pod("s", S)
        srv = s.spawn("srv", [a.ztdata, "serve", "--port", "8080", "--name", "s"])
        srv.wait_for(r"^LISTEN ", 5)
        cfg = os.path.join(logdir, "mesh.json")
        ztlib.write_atomic(cfg, json.dumps(config(with_policies)))
        s.install_capture(outbound=False)
        z = s.spawn("zring", [a.zring, "--config", cfg, "--shards", "1", "--log-level", "warn"])
        s.wait_http_ready(proc=z, timeout=10)
        r = c.run([a.ztdata, "client", "--connect", S + ":8080", "--op", "hello", "--count",
                   str(a.conns), "--parallel", "16", "--timeout", "60"], check=False, timeout=120)
        _, summ = ztlib.parse_client_output(r.stdout)
        secs = float(summ.get("seconds", "0") or 0)
        return int(summ.get("ok", 0)), int(summ.get("fail", 0)), (int(summ.get("ok", 0)) / secs if secs else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zring", default="build/engine/zring")
    ap.add_argument("--ztdata", default="build/test/integ/ztdata")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=4000)
    a = ap.parse_args()
    a.zring, a.ztdata = os.path.abspath(a.zring), os.path.abspath(a.ztdata)
    Topology.cleanup_stale()
    logdir = "/tmp/zring-bench-authz"
    os.makedirs(logdir, exist_ok=True)
    res = {False: [], True: []}
    for i in range(a.runs):
        for wp in (False, True):
            ok, fail, cps = run(a, wp, logdir)
            res[wp].append(cps)
            print("run %d %-22s %d ok, %d failed, %.0f conn/s" % (
                i + 1, "1000 policies (50 apply)" if wp else "no policies", ok, fail, cps),
                flush=True)
    for wp in (False, True):
        v = sorted(res[wp])
        print("%-24s median %.0f conn/s (min %.0f, max %.0f)" % (
            "1000 policies (50 apply)" if wp else "no policies", v[len(v) // 2], v[0], v[-1]))
    m0, m1 = sorted(res[False])[len(res[False]) // 2], sorted(res[True])[len(res[True]) // 2]
    print("ratio with/without: %.3f" % (m1 / m0 if m0 else 0))


if __name__ == "__main__":
    main()
