#!/usr/bin/python3
"""(b) A service VIP with two endpoints spreads 200 connections across both, each
getting a fair share; with capacities 3:1 the split follows the weights. zring's
access log names the same endpoint the server did for every connection. A burst of
3000 short connections, 100 at a time, all succeed."""
import collections

import ztlib
from ztlib import Mesh, Topology, check, say

N = 200


def spread(m, seed, since):
    rc, res, summ = m.run("hello", count=N, parallel=8, seed=seed, timeout=20)
    by_server = collections.Counter(r["server"] for r in res)
    ztlib.wait_until(lambda: len(ztlib.access_records(m.zring, since)) >= N, 5,
                     "%d access lines" % N)
    by_log = collections.Counter(r["fields"].get("dst.workload")
                                 for r in ztlib.access_records(m.zring, since))
    check(by_server == by_log, "servers saw %s but the access log says %s", dict(by_server),
          dict(by_log))
    return by_server


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t)
        c = spread(m, 1000, 0)
        say("equal weights: %s", dict(c))
        rc, res, summ = m.run("hello", count=3000, parallel=100, seed=5000, timeout=30)
        say("burst of 3000 connections, 100 at a time: %s", summ)
        # p = 1/2: mean 100, sd 7.1; 60..140 is more than 5 sd either way
        for ep in ("ep-a", "ep-b"):
            check(60 <= c[ep] <= 140, "%s got %d of %d connections: %s", ep, c[ep], N, dict(c))

        # Capacity 3 vs 1: ztunnel picks at random weighted by capacity.
        m.zring.stop()
        wl, svcs = ztlib.mesh_config()
        for w in wl:
            if w["name"] == "ep-a":
                w["capacity"] = 3
            elif w["name"] == "ep-b":
                w["capacity"] = 1
        ztlib.write_config(m.config, wl, svcs)
        m.zring = ztlib.start_zring(ctx, m.client, m.config, label="zring-weighted")
        c = spread(m, 2000, 0)
        say("capacity 3:1: %s", dict(c))
        # p = 3/4: mean 150, sd 6.1
        check(120 <= c["ep-a"] <= 180, "ep-a (capacity 3) got %d of %d: %s", c["ep-a"], N,
              dict(c))
        check(c["ep-b"] >= 20, "ep-b (capacity 1) got %d of %d: %s", c["ep-b"], N, dict(c))


if __name__ == "__main__":
    ztlib.main("lb", body)
