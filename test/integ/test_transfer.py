#!/usr/bin/python3
"""(a) Outbound through zring to a service VIP with two endpoints: 1 MiB, 64 MiB and
1 GiB each way, checked byte for byte (uploads by the server, downloads by the client),
plus a simultaneous two-way echo; the access log accounts for every byte. Then many
at once: 64 echoes of 8 MiB, 200 downloads and 200 uploads of 4 MiB, all checked."""
import time

import ztlib
from ztlib import Mesh, Topology, check, say

SIZES = [(1 << 20, "1 MiB", 30), (64 << 20, "64 MiB", 60), (1 << 30, "1 GiB", 240)]


def header_len(op, seed, nbytes, arg=0):
    return len("ZTD1 %s %d %d %d\n" % (op, seed, nbytes, arg))


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t)
        seed = 100
        expect = []  # (op, seed, client->server bytes, server->client payload bytes)
        for nbytes, label, tmo in SIZES:
            for op in ("up", "down", "echo"):
                if op == "echo" and nbytes > (64 << 20):
                    continue  # 1 GiB is covered one way at a time
                seed += 1
                t0 = time.monotonic()
                rc, res, summ = m.run(op, nbytes, seed=seed, timeout=tmo)
                dt = time.monotonic() - t0
                r = res[0]
                check(r["status"] == "ok", "%s %s: %s", op, label, r)
                say("%-4s %-7s ok via %s in %.2fs (%.0f MiB/s)", op, label, r["server"], dt,
                    nbytes / (1 << 20) / max(dt, 1e-6))
                up = nbytes if op in ("up", "echo") else 0
                down = nbytes if op in ("down", "echo") else 0
                expect.append((op, seed, r["server"], up + header_len(op, seed, nbytes), down))
        # Every transfer has its access line with the right endpoint and byte counts.
        ztlib.wait_until(lambda: len(ztlib.access_records(m.zring)) >= len(expect), 5,
                         "an access log line per connection")
        recs = ztlib.access_records(m.zring)
        check(len(recs) == len(expect), "%d access lines for %d connections", len(recs),
              len(expect))
        for (op, seed, server, c2s, s2c), rec in zip(expect, recs):
            f = rec["fields"]
            check(f.get("direction") == "outbound", "direction: %s", rec["raw"])
            check(f.get("dst.workload") == server, "dst.workload %s, server said %s: %s",
                  f.get("dst.workload"), server, rec["raw"])
            check(f.get("dst.service") == "echo.integ.svc.cluster.local", "dst.service: %s",
                  rec["raw"])
            check(int(f.get("bytes_sent", -1)) == c2s,
                  "%s seed %d: bytes_sent=%s, the client sent %d: %s", op, seed,
                  f.get("bytes_sent"), c2s, rec["raw"])
            # server -> client: HELLO line, payload, and the OK line for uploads
            recv = int(f.get("bytes_recv", -1))
            check(s2c <= recv <= s2c + 64, "%s seed %d: bytes_recv=%d, expected %d + a line: %s",
                  op, seed, recv, s2c, rec["raw"])
        say("%d access lines match the transfers", len(recs))

        # many at once (shared buffer pools, back-pressure across connections)
        for op, nbytes, count in (("echo", 8 << 20, 64), ("down", 4 << 20, 200),
                                  ("up", 4 << 20, 200)):
            t0 = time.monotonic()
            rc, res, summ = m.run(op, nbytes, seed=10000, count=count, parallel=count,
                                  timeout=120)
            dt = time.monotonic() - t0
            say("%d concurrent %s of %d MiB: ok (%s) in %.2fs", count, op, nbytes >> 20,
                summ.get("servers"), dt)
        n = len(expect) + 64 + 200 + 200
        ztlib.wait_until(lambda: len(ztlib.access_records(m.zring)) >= n, 10,
                         "%d access lines" % n)
        check(m.zring.alive(), "zring exited: %s", m.zring.returncode)


if __name__ == "__main__":
    ztlib.main("transfer", body)
