#!/usr/bin/python3
"""(e) Upstream failures: the client's connection is closed or reset promptly and the
access log records the failure.
- refused: service VIP whose endpoint has no listener on the target port;
- unreachable: a workload whose address the network does not route (the router answers
  ICMP host unreachable at once, so a direct connect fails in well under 1 ms);
- connect timeout: a workload behind a black hole, with --connect-timeout 1000;
- self-call: the pod connects to its own address on 15001 (not redirected: it goes over
  lo), which would loop through zring forever; zring must close it;
after all of which zring still serves the healthy service."""
import errno
import socket
import time

import ztlib
from ztlib import (EP_A_IP, Mesh, Topology, check, say, service, svc_key, workload)

REFUSED_VIP = "10.96.0.20"
UNREACH_IP = "10.77.9.9"      # no such pod: the router answers unreachable
BLACKHOLE_IP = "10.77.8.8"    # the router drops silently


def attempt(ns, host, port, wait=10.0):
    """Connect (zring accepts at once), send a header, time how the connection ends."""
    t0 = time.monotonic()
    try:
        s = ns.connect(host, port, timeout=wait)
    except OSError as e:  # zring accepted and reset before connect() returned
        return errno.errorcode.get(e.errno, str(e.errno)), time.monotonic() - t0
    try:
        s.sendall(b"ZTD1 hello 1 0 0\n")
    except OSError as e:
        return "send: %s" % errno.errorcode.get(e.errno, e.errno), time.monotonic() - t0
    try:
        b = s.recv(100)
        how = "EOF" if not b else "data %r" % b[:40]
    except socket.timeout:
        how = "still open after %.0fs" % wait
    except OSError as e:
        how = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
    return how, time.monotonic() - t0


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t, zring_args=["--connect-timeout", "1000"])
        t.router.ip_cmd("route", "add", "blackhole", BLACKHOLE_IP + "/32")
        wl, svcs = ztlib.mesh_config()
        # ep-a also backs "refused": target port 9999, where nothing listens
        for w in wl:
            if w["name"] == "ep-a":
                w["services"][svc_key("refused")] = {"9000": 9999}
        svcs.append(service("refused", REFUSED_VIP, {9000: 9999}))
        wl.append(workload("ghost", UNREACH_IP))
        wl.append(workload("sinkhole", BLACKHOLE_IP))
        ztlib.write_config(m.config, wl, svcs)
        m.zring.wait_for(r"local config reloaded", 5)
        since = len(m.zring.lines())

        # a direct connect fails in well under a millisecond in the first two cases
        cases = [("refused", REFUSED_VIP, 9000, 0.5, "%s:9999" % EP_A_IP),
                 ("unreachable", UNREACH_IP, 8080, 0.5, "%s:8080" % UNREACH_IP),
                 ("connect timeout", BLACKHOLE_IP, 8080, 1.5, "%s:8080" % BLACKHOLE_IP)]
        problems = []
        for i in range(3):
            how, dt = attempt(m.client, ztlib.CLIENT_IP, 15001, wait=3)
            say("self-call #%d: %s after %.3fs", i + 1, how, dt)
            if how not in ("EOF", "ECONNRESET", "ECONNREFUSED", "send: ECONNRESET",
                           "send: EPIPE") or dt > 0.5:
                problems.append("self-call to %s:15001: %s after %.2fs" % (ztlib.CLIENT_IP, how,
                                                                            dt))
        check(m.zring.alive(), "zring died on a self-call")
        for what, host, port, limit, dst in cases:
            for i in range(3):
                how, dt = attempt(m.client, host, port)
                say("%s #%d: %s after %.3fs", what, i + 1, how, dt)
                if how not in ("EOF", "ECONNRESET", "send: ECONNRESET", "send: EPIPE"):
                    problems.append("%s: client connection ended with %s" % (what, how))
                elif dt > limit:
                    problems.append("%s: client connection closed only after %.2fs (limit %.1fs)"
                                    % (what, dt, limit))

            def lines():
                return [r for r in ztlib.access_records(m.zring, since)
                        if r["fields"].get("dst.addr") == dst]
            try:
                recs = ztlib.wait_until(lambda: len(lines()) >= 3 and lines(), 5,
                                        "3 access lines to %s" % dst)
            except ztlib.Fail as e:
                problems.append("%s: %s" % (what, e))
                continue
            for r in recs:
                if r["level"] not in ("error", "warn") or "error" not in r["fields"]:
                    problems.append("%s: access line without error level/field: %s" % (
                        what, r["raw"]))
            say("%s: access log: %s", what, recs[0]["raw"].split("\t", 4)[-1])

        # still serving
        rc, res, summ = m.run("echo", 1 << 20, seed=5, count=4, parallel=2)
        say("healthy service afterwards: %s", summ)
        check(not problems, "%d problem(s):\n  %s", len(problems), "\n  ".join(problems))


if __name__ == "__main__":
    ztlib.main("refused", body)
