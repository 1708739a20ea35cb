#!/usr/bin/python3
"""(g) The inbound plaintext path (15006).
- "app" (10.77.2.10) runs a server on 8080 behind its own zring with the in-pod capture
  rules; "outside" (10.77.1.10, no zring, not in the mesh) connects to 10.77.2.10:8080:
  the connection is captured into app's zring, which connects to the pod's own address
  (SO_ORIGINAL_DST) with mark 0x539 so that it is not captured again. Data checked both
  ways; the access log says direction="inbound" and names the app workload.
- "client" (10.77.3.10, with zring) -> app: outbound in the client's zring, inbound in
  app's zring; both log the connection."""
import collections

import ztlib
from ztlib import Topology, check, say, workload

APP_IP = "10.77.2.10"
OUT_IP = "10.77.1.10"
CLIENT_IP = "10.77.3.10"


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        outside = t.add_pod("outside", OUT_IP)
        app = t.add_pod("app", APP_IP)
        client = t.add_pod("client", CLIENT_IP)
        cfg = ctx.path("config.json")
        ztlib.write_config(cfg, [workload("app", APP_IP), workload("client", CLIENT_IP)], [])
        srv = ztlib.ztdata_server(ctx, app, "app")
        app.install_capture()
        client.install_capture()
        z_app = ztlib.start_zring(ctx, app, cfg, label="zring")
        z_cli = ztlib.start_zring(ctx, client, cfg, label="zring")
        target = "%s:8080" % APP_IP

        # 1. outside -> app through app's zring
        for op, size, count in (("hello", 0, 20), ("echo", 1 << 20, 4), ("up", 64 << 20, 1),
                                ("down", 64 << 20, 1)):
            rc, res, summ = ztlib.ztdata_client(ctx, outside, target, op, size, seed=10,
                                                count=count, parallel=4, timeout=60)
            say("outside -> app %s %d x %d bytes: %s", op, count, size, summ)
        n1 = 26
        ztlib.wait_until(lambda: len(ztlib.access_records(z_app)) >= n1, 5,
                         "%d inbound access lines in app's zring" % n1)
        recs = ztlib.access_records(z_app)
        check(len(recs) == n1, "app's zring logged %d connections, expected %d", len(recs), n1)
        for r in recs:
            f = r["fields"]
            check(f.get("direction") == "inbound", "direction: %s", r["raw"])
            check(f.get("dst.addr") == target, "dst.addr: %s", r["raw"])
            check(f.get("dst.workload") == "app", "dst.workload: %s", r["raw"])
            check(f.get("src.addr", "").startswith(OUT_IP + ":"), "src.addr: %s", r["raw"])
            check("src.workload" not in f, "outside is not a mesh workload: %s", r["raw"])
        say("app's zring: %d inbound lines, e.g. %s", len(recs), recs[-1]["raw"].split("\t", 4)[-1])
        # where the server saw them come from (the proxy connects from the pod itself)
        peers = collections.Counter(c["peer"].rsplit(":", 1)[0] for c in ztlib.server_conns(srv))
        say("the server saw connections from %s", dict(peers))
        check(set(peers) <= {APP_IP, OUT_IP}, "server peers: %s", dict(peers))

        # 2. mesh client -> app: outbound at the client, inbound at the app
        rc, res, summ = ztlib.ztdata_client(ctx, client, target, "echo", 4 << 20, seed=20,
                                            count=4, parallel=2)
        say("client -> app echo 4 x 4 MiB: %s", summ)
        ztlib.wait_until(lambda: len(ztlib.access_records(z_cli)) >= 4 and
                         len(ztlib.access_records(z_app)) >= n1 + 4, 5,
                         "access lines on both sides")
        out = ztlib.access_records(z_cli)
        inn = ztlib.access_records(z_app)[n1:]
        for r in out:
            f = r["fields"]
            check(f.get("direction") == "outbound" and f.get("dst.workload") == "app" and
                  f.get("src.workload") == "client", "client side: %s", r["raw"])
        for r in inn:
            f = r["fields"]
            check(f.get("direction") == "inbound" and f.get("dst.workload") == "app",
                  "app side: %s", r["raw"])
        say("client's zring: %s", out[-1]["raw"].split("\t", 4)[-1])
        say("app's zring:    %s", inn[-1]["raw"].split("\t", 4)[-1])
        check(z_app.alive() and z_cli.alive(), "a zring exited")


if __name__ == "__main__":
    ztlib.main("inbound", body)
