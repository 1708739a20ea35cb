#!/usr/bin/python3
"""(f) Config reload under load.
While 20 paced transfers (8 MiB each at 2 MiB/s, ~4 s) run through the service VIP:
1. the config is replaced (rename over it, as a ConfigMap update does): the service's
   endpoints become ep-c only (a new workload); new connections must go to ep-c;
2. a broken config is written: zring logs an error naming the file, the key path and
   the reason, and keeps serving the previous config (new connections still to ep-c);
3. the config is rewritten in place (open/truncate/write) back to ep-a + ep-b.
None of the 20 transfers may break, and each must have been running during 1 and 2."""
import collections
import os
import time

import ztlib
from ztlib import (EP_C_IP, Mesh, Topology, check, say, svc_key, workload)

N = 20
SIZE = 8 << 20
RATE = 2 << 20


def new_conns(m, seed, count=30):
    rc, res, summ = m.run("hello", count=count, parallel=6, seed=seed, timeout=10)
    return collections.Counter(r["server"] for r in res)


def established_upstream(m):
    r = m.client.run(["ss", "-Htn", "state", "established", "( dport = :8080 )"], check=False)
    return len([l for l in r.stdout.splitlines() if l.strip()])


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t, config_fmt="yaml", with_c=True)
        cfg = m.config
        base = os.path.basename(cfg)
        c = new_conns(m, 1)
        check(set(c) <= {"ep-a", "ep-b"}, "before the reload: %s", dict(c))

        load = ztlib.spawn_client(ctx, m.client, "load", m.vip, "down", SIZE, seed=5000,
                                  arg=RATE, count=N, parallel=N, timeout=60)
        ztlib.wait_until(lambda: established_upstream(m) >= N, 10,
                         "%d transfers established" % N)
        say("%d transfers running", N)

        # 1. endpoints -> ep-c only
        wl, svcs = ztlib.mesh_config()
        for w in wl:
            w.pop("services", None)
        wl.append(workload("ep-c", EP_C_IP, services={svc_key("echo"): {"8000": 8080}}))
        mark = len(m.zring.lines())
        ztlib.write_config(cfg, wl, svcs)
        m.zring.wait_for(r"local config reloaded", 5, since=mark)
        # the snapshot is published once shards pass a quiescent point: allow a moment
        ztlib.wait_until(lambda: new_conns(m, 2, 1) == {"ep-c": 1}, 5,
                         "a new connection routed to ep-c")
        c = new_conns(m, 3)
        check(c == {"ep-c": 30}, "after the reload new connections went to %s", dict(c))
        check(load.alive(), "the transfers ended before the reload took effect")
        say("reload 1: new connections all to ep-c %s; transfers still running", dict(c))

        # 2. broken config: error logged, old config kept
        mark = len(m.zring.lines())
        bad = ztlib.to_yaml({"workloads": wl, "services": svcs}).replace(
            '"%s"' % EP_C_IP, '"10.77.4.300"')
        ztlib.write_atomic(cfg, bad)
        err = m.zring.wait_for(r"\terror\t", 5, since=mark)[0]
        say("reload 2 (broken): %s", err)
        for want in (base, "workloads[3].workloadIps[0]", "10.77.4.300"):
            check(want in err, "the error line does not mention %r: %s", want, err)
        time.sleep(0.3)
        c = new_conns(m, 4)
        check(c == {"ep-c": 30}, "after a broken config new connections went to %s", dict(c))
        check(load.alive(), "the transfers ended before the broken config was tried")
        say("reload 2: old config kept: %s", dict(c))

        # 3. in-place rewrite back to ep-a + ep-b
        wl, svcs = ztlib.mesh_config()
        wl.append(workload("ep-c", EP_C_IP))
        mark = len(m.zring.lines())
        with open(cfg, "w") as f:
            f.write(ztlib.to_yaml({"workloads": wl, "services": svcs}))
        m.zring.wait_for(r"local config reloaded", 5, since=mark)
        ztlib.wait_until(lambda: set(new_conns(m, 5, 4)) <= {"ep-a", "ep-b"}, 5,
                         "new connections back on ep-a/ep-b")
        c = new_conns(m, 6)
        check(set(c) == {"ep-a", "ep-b"}, "after the in-place rewrite: %s", dict(c))
        say("reload 3 (in place): %s", dict(c))

        rc = load.wait(60)
        out = load.text()
        res, summ = ztlib.parse_client_output(out)
        bad = [r for r in res if r["status"] != "ok"]
        check(rc == 0 and not bad and summ.get("ok") == str(N),
              "transfers across the reloads: exit %s, %s, failures: %s", rc, summ, bad[:5])
        check(set(summ["servers"].replace(":", ",").split(",")[::2]) <= {"ep-a", "ep-b"},
              "the transfers were not on the original endpoints: %s", summ)
        say("all %d transfers (8 MiB each, paced over ~4 s) completed intact: %s", N, summ)
        check(m.zring.alive(), "zring exited")


if __name__ == "__main__":
    ztlib.main("reload", body, tools=("ss",))
