#!/usr/bin/python3
"""(c) Half-close through zring, each direction on its own:
- the client shuts down its write side and still receives the server's reply
  (ztdata "up": verify, then reply after the client's FIN; and an echo that only
  answers once it has seen the FIN);
- the server closes first and the client's data still reaches it (ztdata
  "srvfirst": 1 MiB after the server's FIN, verified by the server);
and zring finishes each connection (an access line) once both sides are closed."""
import socket

import ztlib
from ztlib import Mesh, Topology, VIP, SVC_PORT, check, say


def recv_all(s, limit=1 << 22):
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            return data
        data += b
        if len(data) > limit:
            return data


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t)

        # 1. client FIN first, reply still arrives (10 connections, 1 MiB each)
        rc, res, summ = m.run("up", 1 << 20, seed=10, count=10, parallel=5, timeout=20)
        say("client half-close (up 1 MiB, FIN, then the server's OK): %s", summ)

        # 2. The same by hand: echo server answers everything it got, then its FIN
        # follows ours; the answer comes back after we shut down our side.
        s = m.client.connect(VIP, SVC_PORT, timeout=10)
        payload = ztlib.stream(77, 0, 100000)
        s.sendall(b"ZTD1 echo 77 0 0\n" + payload)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        hello, _, echoed = got.partition(b"\n")
        check(hello.startswith(b"HELLO "), "no HELLO after our FIN: %r", got[:80])
        check(echoed == payload, "echo after our FIN: got %d bytes, sent %d (first diff at %s)",
              len(echoed), len(payload),
              next((i for i, (a, b) in enumerate(zip(echoed, payload)) if a != b),
                   min(len(echoed), len(payload))))
        say("client half-close by hand: %d bytes echoed after our FIN, then EOF", len(echoed))

        # 3. server FIN first: the client reads to EOF, then sends 1 MiB more
        srv_lines = {"ep-a": len(m.srv_a.lines()), "ep-b": len(m.srv_b.lines())}
        rc, res, summ = m.run("srvfirst", 1 << 20, arg=1 << 20, seed=500, count=6, parallel=3,
                              timeout=20)
        seeds = {500 + int(r["i"]) for r in res}
        def srv_done():
            got = {}
            for name, srv in (("ep-a", m.srv_a), ("ep-b", m.srv_b)):
                for c in ztlib.server_conns(srv, srv_lines[name]):
                    if c.get("op") == "srvfirst" and int(c["seed"]) in seeds:
                        got[int(c["seed"])] = c
            return got if len(got) == len(seeds) else None
        got = ztlib.wait_until(srv_done, 10, "the servers' results for srvfirst")
        bad = {k: v for k, v in got.items() if v["result"] != "ok"}
        check(not bad, "data sent after the server's FIN did not arrive intact: %s", bad)
        say("server half-close: 6 x 1 MiB delivered after the server's FIN (%s)",
            sorted({v["detail"] for v in got.values()}))

        # 4. every connection is finished by zring
        want = 10 + 1 + 6
        ztlib.wait_until(lambda: len(ztlib.access_records(m.zring)) >= want, 10,
                         "%d access lines (connections finished)" % want)
        recs = ztlib.access_records(m.zring)
        sf = [r for r in recs[-6:]]
        for r in sf:
            check(int(r["fields"]["bytes_sent"]) >= 1 << 20 and
                  int(r["fields"]["bytes_recv"]) >= 1 << 20,
                  "srvfirst access line does not show 1 MiB each way: %s", r["raw"])
        check(m.zring.alive(), "zring exited")


if __name__ == "__main__":
    ztlib.main("halfclose", body)
