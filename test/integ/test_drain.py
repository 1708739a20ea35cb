#!/usr/bin/python3
"""(j) SIGTERM drain.
1. TERMINATION_GRACE_PERIOD_SECONDS=6 (drain deadline 5 s): 3 downloads paced to take
   ~2 s are open at SIGTERM; new connections are refused at once; the 3 complete
   intact; zring exits 0 once they are done, well within the deadline.
2. TERMINATION_GRACE_PERIOD_SECONDS=3 (deadline 2 s): a download paced to take 64 s is
   open at SIGTERM; zring closes it at the deadline, logs it, and exits 0.
3. No connections: SIGTERM -> exit 0 within a second."""
import errno
import signal
import time

import ztlib
from ztlib import Mesh, Topology, VIP, SVC_PORT, check, say


def established_upstream(m):
    r = m.client.run(["ss", "-Htn", "state", "established", "( dport = :8080 )"], check=False)
    return len([l for l in r.stdout.splitlines() if l.strip()])


def try_new(m):
    t0 = time.monotonic()
    try:
        s = m.client.connect(VIP, SVC_PORT, timeout=2)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e)), time.monotonic() - t0
    try:
        s.sendall(b"ZTD1 hello 1 0 0\n")
        b = s.recv(100)
        how = "served: %r" % b[:30] if b else "accepted, then EOF"
    except OSError as e:
        how = "accepted, then %s" % errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
    return how, time.monotonic() - t0


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t, env={"TERMINATION_GRACE_PERIOD_SECONDS": "6"})
        z = m.zring

        # 1. drain completes
        load = ztlib.spawn_client(ctx, m.client, "load1", m.vip, "down", 4 << 20, seed=100,
                                  arg=2 << 20, count=3, parallel=3, timeout=30)
        ztlib.wait_until(lambda: established_upstream(m) >= 3, 10, "3 transfers established")
        time.sleep(0.2)
        t0 = time.monotonic()
        z.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        how, dt = try_new(m)
        say("new connection 0.2s after SIGTERM: %s (%.3fs)", how, dt)
        check(how in ("ECONNREFUSED", "ECONNRESET", "accepted, then ECONNRESET",
                      "accepted, then EOF") and dt < 1,
              "a new connection during the drain was not refused: %s after %.2fs", how, dt)
        rc = load.wait(30)
        res, summ = ztlib.parse_client_output(load.text())
        check(rc == 0 and summ.get("ok") == "3",
              "transfers open at SIGTERM did not complete: exit %s, %s, %s", rc, summ,
              [r for r in res if r["status"] != "ok"])
        t_load = time.monotonic() - t0
        code = z.wait(8)
        t_exit = time.monotonic() - t0
        check(code is not None, "zring still running %.1fs after SIGTERM (deadline 5 s)", t_exit)
        check(code == 0, "zring exit code %s after a drain", code)
        say("drain: 3 transfers completed %.2fs after SIGTERM; zring exited %d at %.2fs",
            t_load, code, t_exit)
        check(t_exit <= 5.5, "zring exited %.2fs after SIGTERM; deadline 5 s", t_exit)
        check(t_exit - t_load < 1.5,
              "zring took %.2fs after its last connection closed to exit", t_exit - t_load)
        check(len(ztlib.access_records(z)) >= 3, "the drained connections were not logged")

        # 2. deadline closes what is left
        z = ztlib.start_zring(ctx, m.client, m.config, label="zring2",
                              env={"TERMINATION_GRACE_PERIOD_SECONDS": "3"})
        load = ztlib.spawn_client(ctx, m.client, "load2", m.vip, "down", 64 << 20, seed=200,
                                  arg=1 << 20, count=1, timeout=90)
        ztlib.wait_until(lambda: established_upstream(m) >= 1, 10, "a transfer established")
        time.sleep(0.3)
        t0 = time.monotonic()
        z.send_signal(signal.SIGTERM)
        code = z.wait(6)
        t_exit = time.monotonic() - t0
        check(code is not None, "zring still running %.1fs after SIGTERM (deadline 2 s)", t_exit)
        check(code == 0, "zring exit code %s after the drain deadline", code)
        say("deadline: zring exited %d %.2fs after SIGTERM (deadline 2 s)", code, t_exit)
        check(1.5 <= t_exit <= 3.0, "zring exited %.2fs after SIGTERM; expected ~2 s", t_exit)
        rc = load.wait(5)
        check(rc is not None and rc != 0, "the cut transfer: client exit %s", rc)
        res, summ = ztlib.parse_client_output(load.text())
        say("the transfer cut at the deadline: %s", res[0]["detail"] if res else load.tail(3))
        recs = ztlib.access_records(z)
        check(recs, "the connection closed at the drain deadline has no access line")
        say("its access line: %s", recs[-1]["raw"].split("\t", 4)[-1])

        # 3. idle
        z = ztlib.start_zring(ctx, m.client, m.config, label="zring3")
        t0 = time.monotonic()
        z.send_signal(signal.SIGTERM)
        code = z.wait(5)
        dt = time.monotonic() - t0
        check(code == 0 and dt < 1.0, "idle zring: exit %s after %.2fs of SIGTERM", code, dt)
        say("idle: exit %d %.3fs after SIGTERM", code, dt)


if __name__ == "__main__":
    ztlib.main("drain", body, tools=("ss",))
