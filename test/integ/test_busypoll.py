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
"events" mode in (2). (7) The same over HBONE (a client zring and a server zring,
both protocol HBONE): with "replies" each of them sleeps at least 10 times fewer
over the 20 round trips than without polling (the client's tunnel marks a request
when it writes into the tunnel, the server's when it sends to the app)."""
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
    s, cpu, sleeps = sparse_round_trips_to(m.client, ztlib.VIP, ztlib.SVC_PORT, [z])
    return s, cpu[0], sleeps[0]


def sparse_round_trips_to(pod, host, port, zrings):
    """The round trips of sparse_round_trips from pod to host:port: returns the
    socket and, per zring in zrings, the CPU ms and shard sleeps over them."""
    s = pod.connect(host, port)
    s.sendall(b"ZTD1 echo 7 1000000 %d\n" % REPLY_DELAY_US)
    hello = b""
    while not hello.endswith(b"\n"):
        b = s.recv(256)
        check(b, "no HELLO from the echo server")
        hello += b
    data = ztlib.stream(7, 0, ROUNDS)
    c0, w0 = [cpu_ms(z) for z in zrings], [shard_sleeps(z) for z in zrings]
    for i in range(ROUNDS):
        s.sendall(data[i:i + 1])
        got = s.recv(1)
        check(got == data[i:i + 1], "round trip %d: sent %r, got %r", i, data[i:i + 1], got)
        time.sleep(0.04)
    return (s, [cpu_ms(z) - c for z, c in zip(zrings, c0)],
            [shard_sleeps(z) - w for z, w in zip(zrings, w0)])


def hbone_sleeps(ctx, label, args):
    """Client zring -> HBONE -> server zring -> echo server, both zrings with args:
    the shard sleeps of (client zring, server zring) over the sparse round trips."""
    client_ip, server_ip = "10.77.1.10", "10.77.2.10"
    with Topology(log_dir=ctx.logdir) as t:
        client, server = t.add_pod("client", client_ip), t.add_pod("server", server_ip)
        ztlib.ztdata_server(ctx, server, "server")
        cfg = ctx.path("hbone.json")
        ztlib.write_config(cfg, [ztlib.workload("client", client_ip, protocol="HBONE"),
                                 ztlib.workload("server", server_ip, protocol="HBONE")], [])
        ca = ("--ca-cert", ctx.path("root.pem"), "--ca-key", ctx.path("root.key"))
        z = []
        for pod, name in ((server, "server"), (client, "client")):
            pod.install_capture()
            z.append(ztlib.start_zring(ctx, pod, cfg, label="zring-hbone-%s-%s" % (label, name),
                                       shards=1, args=ca + tuple(args)))
        s, _, sleeps = sparse_round_trips_to(client, server_ip, 8080, [z[1], z[0]])
        s.close()
        for x in z:
            check(x.alive(), "zring (HBONE, %s) exited: %s", label, x.returncode)
        say("HBONE, %s: %d round trips 40 ms apart: the client zring slept %d times, the "
            "server zring %d", label, ROUNDS, sleeps[0], sleeps[1])
        return sleeps


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

    off = hbone_sleeps(ctx, "nopoll", [])
    rep = hbone_sleeps(ctx, "replies", ["--busy-poll", str(POLL_US), "--busy-poll-mode", "replies"])
    for i, side in enumerate(("client", "server")):
        check(off[i] >= rep[i] + ROUNDS // 2,
              "HBONE: with --busy-poll-mode replies the %s zring slept %d times over %d round "
              "trips, without polling %d: it should poll through each reply", side, rep[i],
              ROUNDS, off[i])


if __name__ == "__main__":
    ztlib.main("busypoll", body)
