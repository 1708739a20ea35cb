#!/usr/bin/python3
"""--busy-poll: a shard that just handled events polls for more before it sleeps, and
only then. One zring (1 shard, --busy-poll 5000) in front of the echo service:
(1) 1 MiB and 16 MiB echoes are checked byte for byte (completions found by polling
are handled like those found by waiting); (2) 20 one-byte round trips 40 ms apart
each leave the shard polling for up to 5 ms, so zring's CPU time over them is far
above what sleeping would cost (>= 40 ms; without polling it is a few ms); (3) once
traffic stops the shard sleeps: under 30 ms of CPU over 1.5 idle seconds (a shard
that kept polling would use all 1.5 s)."""
import os
import time

import ztlib
from ztlib import Mesh, Topology, check, say

POLL_US = 5000


def cpu_ms(proc):
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime: fields 14 and 15 of stat(5), here 12 and 13 after the comm
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t, shards=1, zring_args=["--busy-poll", str(POLL_US)])
        for seed, nbytes in ((1, 1 << 20), (2, 16 << 20)):
            rc, res, _ = m.run("echo", nbytes, seed=seed, timeout=60)
            check(res[0]["status"] == "ok", "echo of %d bytes: %s", nbytes, res[0])
        say("1 MiB and 16 MiB echoes intact with --busy-poll %d", POLL_US)

        s = m.client.connect(ztlib.VIP, ztlib.SVC_PORT)
        try:
            s.sendall(b"ZTD1 echo 7 1000000 0\n")
            hello = b""
            while not hello.endswith(b"\n"):
                b = s.recv(256)
                check(b, "no HELLO from the echo server")
                hello += b
            data = ztlib.stream(7, 0, 20)
            c0 = cpu_ms(m.zring)
            for i in range(20):
                s.sendall(data[i:i + 1])
                got = s.recv(1)
                check(got == data[i:i + 1], "round trip %d: sent %r, got %r", i, data[i:i + 1], got)
                time.sleep(0.04)
            used = cpu_ms(m.zring) - c0
            say("20 round trips 40 ms apart: zring used %.0f ms of CPU", used)
            check(used >= 40, "zring used %.0f ms of CPU over 20 sparse round trips; with "
                  "--busy-poll %d each should leave it polling for up to 5 ms", used, POLL_US)
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


if __name__ == "__main__":
    ztlib.main("busypoll", body)
