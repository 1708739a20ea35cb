#!/usr/bin/python3
"""--busy-poll: a shard that just handled events polls for more before it sleeps, and
only then. One zring (1 shard, --busy-poll 5000) in front of the echo service:
(1) 1 MiB and 16 MiB echoes are checked byte for byte (completions found by polling
are handled like those found by waiting); (2) 20 one-byte round trips 40 ms apart,
each echoed after 1 ms, leave the shard polling for up to 5 ms after each event, so
zring's CPU time over them is far above what sleeping would cost (>= 40 ms; without
polling it is a few ms); (3) once traffic stops the shard sleeps: under 30 ms of CPU
over 1.5 idle seconds (a shard that kept polling would use all 1.5 s).
Then the same zring without polling and with --busy-poll-mode replies: (4) the
echoes are intact; (5) over the same 20 sparse round trips, without polling the
shard sleeps twice per round trip (for the reply, for the next request), with
"replies" once (it polls through the 1 ms wait for each reply): at least 10 fewer
sleeps; (6) "replies" does not poll after the replies: under half the CPU time of
"events" mode in (2)."""
import os
import time

import ztlib
from ztlib import Mesh, Topology, check, say

POLL_US = 5000
ROUNDS = 20
REPLY_DELAY_US = 1000  # the echo server's wait before each reply


def cpu_ms(proc):
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime: fields 14 and 15 of stat(5), here 12 and 13 after the comm
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def shard_sleeps(proc):
    """Voluntary context switches of zring's shard thread: one per sleep (a
    sched_yield between polls counts as involuntary)."""
    base = "/proc/%d/task" % proc.pid
    for tid in os.listdir(base):
        with open(os.path.join(base, tid, "comm")) as f:
            if f.read().strip() != "zring-shard-0":
                continue
        with open(os.path.join(base, tid, "status")) as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    check(False, "no zring-shard-0 thread in %s", base)
    return 0


def echoes(m, label):
    for seed, nbytes in ((1, 1 << 20), (2, 16 << 20)):
        rc, res, _ = m.run("echo", nbytes, seed=seed, timeout=60)
        check(res[0]["status"] == "ok", "%s: echo of %d bytes: %s", label, nbytes, res[0])
    say("%s: 1 MiB and 16 MiB echoes intact", label)


def sparse_round_trips(m, z):
    """ROUNDS one-byte round trips 40 ms apart through zring z on one connection,
    each echoed after REPLY_DELAY_US: returns (CPU ms, shard sleeps) over them; the
    connection stays open."""
    s = m.client.connect(ztlib.VIP, ztlib.SVC_PORT)
    s.sendall(b"ZTD1 echo 7 1000000 %d\n" % REPLY_DELAY_US)
    hello = b""
    while not hello.endswith(b"\n"):
        b = s.recv(256)
        check(b, "no HELLO from the echo server")
        hello += b
    data = ztlib.stream(7, 0, ROUNDS)
    c0, w0 = cpu_ms(z), shard_sleeps(z)
    for i in range(ROUNDS):
        s.sendall(data[i:i + 1])
        got = s.recv(1)
        check(got == data[i:i + 1], "round trip %d: sent %r, got %r", i, data[i:i + 1], got)
        time.sleep(0.04)
    return s, cpu_ms(z) - c0, shard_sleeps(z) - w0


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t, shards=1, zring_args=["--busy-poll", str(POLL_US)])
        echoes(m, "--busy-poll %d" % POLL_US)
        s, used, _ = sparse_round_trips(m, m.zring)
        try:
            say("%d round trips 40 ms apart: zring used %.0f ms of CPU", ROUNDS, used)
            check(used >= 40, "zring used %.0f ms of CPU over %d sparse round trips; with "
                  "--busy-poll %d each should leave it polling for up to 5 ms", used, ROUNDS,
                  POLL_US)
            # Idle: a connection is open but nothing moves.
            time.sleep(0.2)
            c1 = cpu_ms(m.zring)
            time.sleep(1.5)
            idle = cpu_ms(m.zring) - c1
            say("1.5 s idle: zring used %.0f ms of CPU", idle)
            check(idle < 30, "zring used %.0f ms of CPU over 1.5 idle seconds: the shard "
                  "kept polling", idle)
        finally:
            s.close()
        check(m.zring.alive(), "zring exited: %s", m.zring.returncode)
        m.zring.stop()

        # The same path without polling, then polling only while replies are due.
        runs = {}
        for label, name, args in (
                ("no polling", "zring-nopoll", []),
                ("--busy-poll-mode replies", "zring-replies",
                 ["--busy-poll", str(POLL_US), "--busy-poll-mode", "replies"])):
            z = ztlib.start_zring(ctx, m.client, m.config, label=name, shards=1, args=args)
            m.zring = z
            echoes(m, label)
            s, cpu, sleeps = sparse_round_trips(m, z)
            s.close()
            runs[label] = (cpu, sleeps)
            say("%s: %d round trips 40 ms apart: %.0f ms of CPU, the shard slept %d times",
                label, ROUNDS, cpu, sleeps)
            check(z.alive(), "zring (%s) exited: %s", label, z.returncode)
            z.stop()
        (_, off), (rcpu, rep) = runs["no polling"], runs["--busy-poll-mode replies"]
        check(off >= rep + ROUNDS // 2,
              "with --busy-poll-mode replies the shard slept %d times over %d round trips, "
              "without polling %d: it should poll through each reply instead of sleeping",
              rep, ROUNDS, off)
        check(rcpu < used / 2,
              "with --busy-poll-mode replies zring used %.0f ms of CPU over %d sparse round "
              "trips, \"events\" mode %.0f: it should not poll after the replies",
              rcpu, ROUNDS, used)


if __name__ == "__main__":
    ztlib.main("busypoll", body)
