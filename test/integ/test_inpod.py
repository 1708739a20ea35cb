#!/usr/bin/python3
"""Issue 3: shared mode (PROXY_MODE=shared), one zring per node serving every pod
of the node, handed over by an istio-cni stand-in speaking ZDS (python3-protobuf,
socket.send_fds: code that is not zring's). Pods use istio-cni's real in-pod rules
(TPROXY inbound).

1. readiness waits for istio-cni's snapshot ("workload proxy manager");
2. pods on two nodes talk through both nodes' zrings, data checked end to end,
   with an outbound access line on the client's node and an inbound one on the
   server's;
3. a pod is added and another removed while long transfers run: none breaks;
4. istio-cni restarts: zring reconnects, pods re-announced keep working, a pod
   not re-announced is dropped;
5. hostile ZDS requests get NACKs with reasons, and no fd leaks;
6. 300 pods on one node: fd count and memory reported, and released on delete."""
import os
import time

import ztlib
from cni_standin import CniStandin
from netns import Topology
from ztlib import check, say, workload

C1, S1, S2, S3 = "10.77.1.10", "10.77.2.10", "10.77.2.11", "10.77.2.12"
NPODS = 300


def start_node_zring(ctx, node, config, sock):
    env = dict(os.environ, PROXY_MODE="shared", INPOD_UDS=sock)
    return ztlib.start_zring(ctx, node, config, label="zring-" + node.short, env=env,
                             ready=False)


def ready_status(node):
    try:
        return node.http_get("127.0.0.1", 15021, "/healthz/ready")
    except OSError as e:
        return 0, str(e)


def add(cni, pod):
    err = cni.add("uid-" + pod.short, pod.path, pod.short, ztlib.NS, "sa-" + pod.short)
    check(err == "", "AddWorkload %s NACKed: %s", pod.short, err)


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        n1, n2 = t.add_node("n1"), t.add_node("n2")
        c1 = t.add_pod("c1", C1, node=n1)
        s1 = t.add_pod("s1", S1, node=n2)
        s2 = t.add_pod("s2", S2, node=n2)
        s3 = t.add_pod("s3", S3, node=n2)
        for p in (c1, s1, s2, s3):
            p.install_capture(inbound_mode="tproxy")
        srv = {p.short: ztlib.ztdata_server(ctx, p, p.short) for p in (s1, s2, s3)}
        cfg = ctx.path("mesh.json")
        ztlib.write_config(cfg, [workload(p.short, p.ip) for p in (c1, s1, s2, s3)], [])

        sock1, sock2 = ctx.path("n1-ztunnel.sock"), ctx.path("n2-ztunnel.sock")
        cni1, cni2 = CniStandin(sock1), CniStandin(sock2)
        z1 = start_node_zring(ctx, n1, cfg, sock1)
        z2 = start_node_zring(ctx, n2, cfg, sock2)
        cni1.accept()
        cni2.accept()

        # 1. not ready until the snapshot is processed
        time.sleep(0.3)
        st, text = ready_status(n1)
        check(st == 500 and "workload proxy manager" in text,
              "readiness before SnapshotSent: %s %r", st, text)
        add(cni1, c1)
        check(cni1.snapshot_sent() == "", "SnapshotSent NACKed")
        for p in (s1, s2):
            add(cni2, p)
        check(cni2.snapshot_sent() == "", "SnapshotSent NACKed")
        n1.wait_http_ready(proc=z1, timeout=10)
        n2.wait_http_ready(proc=z2, timeout=10)
        say("1. readiness: 500 %r before the snapshot, ready after", text.strip())

        # 2. c1 (node 1) -> s1 (node 2): both zrings on the path
        l1, l2 = len(z1.lines()), len(z2.lines())
        rc, res, summ = ztlib.ztdata_client(ctx, c1, S1 + ":8080", "echo", 16 << 20, count=4,
                                            parallel=2, timeout=60)
        say("2. c1 -> s1 echo 4 x 16 MiB through two nodes: %s", summ)
        def lines(z, since):
            return [r["fields"] for r in ztlib.access_records(z, since)
                    if r["fields"].get("dst.addr") == S1 + ":8080"]
        # a line is written once both sides have closed: wait for them
        out = ztlib.wait_until(lambda: len(lines(z1, l1)) >= 4 and lines(z1, l1), 5,
                               "4 outbound access lines on node 1")
        inn = ztlib.wait_until(lambda: len(lines(z2, l2)) >= 4 and lines(z2, l2), 5,
                               "4 inbound access lines on node 2")
        check(all(r.get("direction") == "outbound" for r in out), "node 1: %s", out[:2])
        check(all(r.get("direction") == "inbound" for r in inn), "node 2: %s", inn[:2])
        # 16 MiB plus the test protocol's header line, each way
        check(all(int(r["bytes_sent"]) >= 16 << 20 and int(r["bytes_recv"]) >= 16 << 20
                  for r in out + inn), "bytes: %s", out[:1] + inn[:1])

        # 3. pods come and go under load
        # paced downloads (20 MB/s each, ~3 s): still running while pods change
        load = ztlib.spawn_client(ctx, c1, "load", S1 + ":8080", "down", 64 << 20,
                                  arg=20 << 20, count=6, parallel=3, timeout=120)
        time.sleep(1.0)
        add(cni2, s3)
        s2.remove_capture()  # istio-cni removes the pod's rules, then tells zring
        getattr(cni2, "delete")("uid-s2")
        z2.wait_for(r"pod removed uid=uid-s2", 5)
        ztlib.ztdata_client(ctx, c1, S3 + ":8080", "echo", 1 << 20, count=2, timeout=30)
        load.wait(150)
        res, summ = ztlib.parse_client_output(load.text())
        check(load.returncode == 0 and summ.get("fail") == "0",
              "transfers during pod add/remove: rc=%s %s", load.returncode, summ)
        say("3. added s3 and removed s2 during 6 paced transfers: %s", summ)

        # 4. istio-cni restarts on node 2: s1 re-announced, s3 not
        cni2.close_conn()
        z2.wait_for(r"istio-cni connection lost", 5)
        cni2.accept(timeout=15)
        add(cni2, s1)
        check(cni2.snapshot_sent() == "", "SnapshotSent after restart NACKed")
        z2.wait_for(r"pod removed uid=uid-s3 .*not in istio-cni's snapshot", 5)
        ztlib.ztdata_client(ctx, c1, S1 + ":8080", "echo", 1 << 20, count=2, timeout=30)
        say("4. istio-cni restart: reconnected, s1 kept, s3 dropped")

        # 5. hostile requests: NACK with a reason, no fd leak
        time.sleep(0.5)
        fds0 = z2.fd_count()
        pb = __import__("cni_standin").pb
        nacks = {
            "garbage": cni2.send_raw(b"\xff" * 40),
            "add without fd": cni2.add("uid-x", s1.path, nfds=0),
            "add with 2 fds": cni2.add("uid-y", s1.path, nfds=2),
            "keep after snapshot": cni2.keep("uid-s1"),
            "empty uid": cni2.add("", s1.path),
            "oversized": cni2.send_raw(b"\x0a" + b"\x80" * 3000, [os.open(s1.path, os.O_RDONLY)]),
        }
        for what, err in nacks.items():
            check(err, "%s was not NACKed", what)
        time.sleep(0.3)
        fds1 = z2.fd_count()
        check(fds1 == fds0, "fd count changed after hostile requests: %d -> %d", fds0, fds1)
        check(z2.alive(), "zring died")
        say("5. NACKs: %s; zring fds %d -> %d", nacks, fds0, fds1)
        del pb

        # 6. 300 pods on node 1
        base_fds, base_rss = z1.fd_count(), z1.rss_kib()
        names = []
        for i in range(NPODS):
            name = t.ns_name("x%d" % i)
            ztlib.netns.sh(["ip", "netns", "add", name])
            t._created.append(name)
            names.append(name)
        t0 = time.monotonic()
        for i, name in enumerate(names):
            err = cni1.add("uid-x%d" % i, "/var/run/netns/" + name, "x%d" % i, "inpod", "sa")
            check(err == "", "pod %d NACKed: %s", i, err)
        dt = time.monotonic() - t0
        time.sleep(0.5)
        fds, rss = z1.fd_count(), z1.rss_kib()
        say("6. %d pods added in %.2fs: zring fds %d -> %d (%.1f per pod), RSS %d -> %d KiB "
            "(%.1f KiB per pod)", NPODS, dt, base_fds, fds, (fds - base_fds) / NPODS, base_rss,
            rss, (rss - base_rss) / NPODS)
        # 15001, 15006 and 15008 listeners for each of the 2 shards, and the netns fd
        check(fds - base_fds <= 7 * NPODS, "more than 7 fds per pod: %d", fds - base_fds)
        for i in range(NPODS):
            check(getattr(cni1, "delete")("uid-x%d" % i) == "", "DelWorkload %d NACKed", i)
        ztlib.wait_until(lambda: z1.fd_count() <= base_fds, 10, "fds back to the baseline")
        say("6. all deleted: fds back to %d", z1.fd_count())
        ztlib.ztdata_client(ctx, c1, S1 + ":8080", "echo", 1 << 20, count=1, timeout=30)
        cni1.close()
        cni2.close()


if __name__ == "__main__":
    ztlib.main("inpod", body, tools=("curl",))
