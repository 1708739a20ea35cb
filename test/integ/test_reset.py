#!/usr/bin/python3
"""(d) Reset propagation through zring:
- the server closes with RST (SO_LINGER 0) -> the client gets ECONNRESET, not a clean
  EOF (after 64 KiB of data, and right after the HELLO line); also in three bursts
  of 1000 such connections, each of which must get its HELLO before the reset;
- the client closes with RST -> the server's read fails with ECONNRESET."""
import socket
import struct
import time

import ztlib
from ztlib import Mesh, Topology, VIP, SVC_PORT, check, say


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t)

        # 1. server RST -> client ECONNRESET
        for nbytes in (0, 64 << 10, 4 << 20):
            rc, res, summ = m.run("rst", nbytes, seed=1, count=10, parallel=5, timeout=10,
                                  check_ok=False)
            bad = [r for r in res if r["status"] != "ok"]
            check(not bad, "server RST after %d bytes: %d of 10 clients saw no reset, e.g. %s",
                  nbytes, len(bad), bad[:3])
            say("server RST after %d bytes: 10/10 clients got ECONNRESET", nbytes)

        # 1b. the same for many at once: in such a burst zring's receives often find
        # its buffer ring dry (they are re-armed before the next wait), and a reset
        # noticed meanwhile must not drop the reply that came before it. The ring
        # shrinks back after a quiet second, so three bursts with pauses between.
        burst, rounds = 1000, 3
        for k in range(rounds):
            if k:
                time.sleep(1.2)
            rc, res, summ = m.run("rst", 0, seed=1000 + k * burst, count=burst, parallel=30,
                                  timeout=20, check_ok=False)
            bad = [r for r in res if r["status"] != "ok"]
            check(len(res) == burst and not bad,
                  "server RST right after HELLO, burst %d of %d connections: %d results, "
                  "%d without HELLO then ECONNRESET, e.g. %s", k + 1, burst, len(res),
                  len(bad), bad[:3])
        say("server RST right after HELLO: %d bursts of %d, every client got HELLO, then "
            "ECONNRESET", rounds, burst)

        # 2. client RST -> server sees a reset (sink: server reads until EOF or error)
        marks = {"ep-a": len(m.srv_a.lines()), "ep-b": len(m.srv_b.lines())}
        rc, res, summ = m.run("sink", 1 << 30, seed=700, count=10, parallel=5, timeout=10,
                              extra=["--rst-after", str(256 << 10)])
        seeds = {700 + i for i in range(10)}

        def results():
            got = {}
            for name, srv in (("ep-a", m.srv_a), ("ep-b", m.srv_b)):
                for c in ztlib.server_conns(srv, marks[name]):
                    if c.get("op") == "sink" and int(c["seed"]) in seeds:
                        got[int(c["seed"])] = c
            return got if len(got) == len(seeds) else None
        got = ztlib.wait_until(results, 10, "the servers' view of 10 client resets")
        bad = {k: "%s %s" % (v["result"], v["detail"]) for k, v in got.items()
               if v["result"] != "reset"}
        check(not bad, "client RST did not reach the server as a reset (%d of 10): %s",
              len(bad), bad)
        say("client RST: 10/10 servers saw ECONNRESET")

        # 3. a Python client with RST right after connecting (no data)
        s = m.client.connect(VIP, SVC_PORT, timeout=5)
        s.sendall(b"ZTD1 sink 999 0 0\n")
        s.recv(100)  # HELLO: the upstream connection exists
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        def sink999():
            for srv in (m.srv_a, m.srv_b):
                for c in ztlib.server_conns(srv):
                    if c.get("op") == "sink" and c["seed"] == "999":
                        return c
        c = ztlib.wait_until(sink999, 10, "the server's view of an RST after the header")
        check(c["result"] == "reset", "client RST after the header: server saw %s (%s)",
              c["result"], c["detail"])
        say("client RST after the header: server saw ECONNRESET")
        check(m.zring.alive(), "zring exited")
        n = 30 + rounds * burst + 10 + 1
        ztlib.wait_until(lambda: len(ztlib.access_records(m.zring)) >= n, 10,
                         "%d access lines" % n)


if __name__ == "__main__":
    ztlib.main("reset", body)
