#!/usr/bin/python3
"""Seed corpora for xdsconv_fuzz and discovery_fuzz, made with the protobuf library.

Usage: xds_seeds.py <xds/proto dir> <corpus dir>
Writes <corpus>/xdsconv/seed-*.bin (raw istio.workload.Address and
istio.security.Authorization resources, and framed lists of them: records
[kind:1][len:2 LE][bytes], kind 0 Address, 1 Authorization; see
xdsconv_fuzz.c) and <corpus>/discovery/seed-*.bin (envoy
DeltaDiscoveryResponse messages). Needs /usr/bin/python3 with
python3-protobuf and python3-grpc-tools (as test/unit/xds/xdsconv_vectors.py).
"""
import os
import struct
import sys
import tempfile


def _varint(n):
    b = b""
    while n >= 0x80:
        b += bytes([n & 0x7f | 0x80])
        n >>= 7
    return b + bytes([n])


def main():
    proto_dir, corpus = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="xds-seeds-") as tmp:
        from grpc_tools import protoc
        import grpc_tools
        wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        if protoc.main(["protoc", "-I" + proto_dir, "-I" + wkt, "--python_out=" + tmp,
                        "workload.proto", "authorization.proto", "discovery.proto"]):
            print("protoc failed", file=sys.stderr)
            return 1
        sys.path.insert(0, tmp)
        import workload_pb2 as W
        import authorization_pb2 as A
        import discovery_pb2 as D

        xc = os.path.join(corpus, "xdsconv")
        dc = os.path.join(corpus, "discovery")
        os.makedirs(xc, exist_ok=True)
        os.makedirs(dc, exist_ok=True)

        def ser(m):
            return m if isinstance(m, bytes) else m.SerializeToString()

        def out(d, name, data):
            with open(os.path.join(d, "seed-" + name + ".bin"), "wb") as f:
                f.write(data)

        def framed(items):
            b = b""
            for kind, m in items:
                data = ser(m)
                b += bytes([kind]) + struct.pack("<H", len(data)) + data
            return b

        ip4 = lambda *o: bytes(o)  # noqa: E731
        ip6 = bytes.fromhex("fd000000000000000000000000000001")

        def wl(uid, name, ns, ips, svc=None, ports=(), sa="app", pols=()):
            a = W.Address()
            w = a.workload
            w.uid, w.name, w.namespace = uid, name, ns
            w.addresses.extend(ips)
            w.tunnel_protocol = W.HBONE
            w.service_account = sa
            w.node = "node-a"
            if svc:
                pl = w.services[svc]
                for sp, tp in ports:
                    pl.ports.add(service_port=sp, target_port=tp)
            w.authorization_policies.extend(pols)
            return a

        def svc(name, ns, vip, ports, waypoint=False):
            a = W.Address()
            s = a.service
            s.name, s.namespace = name, ns
            s.hostname = name + "." + ns + ".svc.cluster.local"
            s.addresses.add(network="", address=vip)
            for sp, tp in ports:
                s.ports.add(service_port=sp, target_port=tp)
            if waypoint:
                s.waypoint.hostname.namespace = ns
                s.waypoint.hostname.hostname = "waypoint." + ns + ".svc.cluster.local"
                s.waypoint.hbone_mtls_port = 15008
            return a

        # Valid workloads.
        w_full = W.Address()
        w = w_full.workload
        w.uid = "Kubernetes//Pod/default/app-1"
        w.name, w.namespace = "app-1", "default"
        w.addresses.extend([ip4(10, 0, 0, 1), ip6])
        w.network = "net1"
        w.tunnel_protocol = W.HBONE
        w.trust_domain, w.service_account = "td.local", "app"
        w.waypoint.address.network = "net1"
        w.waypoint.address.address = ip4(10, 0, 0, 9)
        w.waypoint.hbone_mtls_port = 15008
        w.network_gateway.hostname.namespace = "istio-system"
        w.network_gateway.hostname.hostname = "eastwest.example.com"
        w.network_gateway.hbone_mtls_port = 15008
        w.node, w.canonical_name, w.canonical_revision = "node-a", "app", "v1"
        w.workload_type = W.POD
        w.workload_name = "app"
        w.native_tunnel = True
        w.application_tunnel.protocol = W.ApplicationTunnel.PROXY
        w.application_tunnel.port = 15088
        pl = w.services["default/svc.default.svc.cluster.local"]
        pl.ports.add(service_port=80, target_port=8080)
        pl.ports.add(service_port=443, target_port=0)
        w.authorization_policies.append("default/allow-app")
        w.status = W.UNHEALTHY
        w.cluster_id = "c1"
        w.locality.region, w.locality.zone, w.locality.subzone = "r1", "z1", "s1"
        w.network_mode = W.STANDARD
        w.capacity.value = 7
        out(xc, "wl-full", ser(w_full))
        w_min = W.Address()
        w_min.workload.addresses.append(ip4(10, 0, 0, 2))
        out(xc, "wl-min", ser(w_min))
        w_host = wl("Kubernetes//Pod/kube-system/h", "h", "kube-system", [ip4(172, 18, 0, 3)])
        w_host.workload.network_mode = W.HOST_NETWORK
        out(xc, "wl-hostnet", ser(w_host))

        # Valid services.
        s_full = W.Address()
        s = s_full.service
        s.name, s.namespace, s.hostname = "svc", "default", "svc.default.svc.cluster.local"
        s.addresses.add(network="net1", address=ip4(10, 96, 0, 1))
        s.addresses.add(address=ip6)
        s.ports.add(service_port=80, target_port=8080)
        s.ports.add(service_port=443, target_port=8443)
        s.subject_alt_names.append("spiffe://td.local/ns/default/sa/app")
        s.waypoint.hostname.namespace = "default"
        s.waypoint.hostname.hostname = "waypoint.default.svc.cluster.local"
        s.waypoint.hbone_mtls_port = 15008
        s.load_balancing.routing_preference.extend([W.LoadBalancing.NETWORK, W.LoadBalancing.ZONE])
        s.load_balancing.mode = W.LoadBalancing.FAILOVER
        s.load_balancing.health_policy = W.LoadBalancing.ALLOW_ALL
        s.ip_families = W.DUAL
        s.canonical = True
        out(xc, "svc-full", ser(s_full))
        s_min = svc("echo", "demo", ip4(10, 96, 1, 1), [(8080, 8080)])
        out(xc, "svc-min", ser(s_min))

        # Valid policies.
        p_full = A.Authorization(name="allow-app", namespace="default",
                                 scope=A.WORKLOAD_SELECTOR, action=A.DENY)
        m = p_full.rules.add().clauses.add().matches.add()
        m.principals.add(exact="td.local/ns/default/sa/client")
        m.principals.add(prefix="td.local/ns/")
        m.not_principals.add().presence.SetInParent()
        m.namespaces.add(suffix="-prod")
        m.not_namespaces.add(exact="kube-system")
        m.service_accounts.add(namespace="default", serviceAccount="client")
        m.not_service_accounts.add(namespace="bad", serviceAccount="sa")
        m.source_ips.add(address=ip4(192, 168, 0, 0), length=16)
        m.not_source_ips.add(address=ip4(192, 168, 1, 0), length=24)
        m.destination_ips.add(address=ip4(10, 0, 0, 0), length=8)
        m.not_destination_ips.add(address=ip6, length=64)
        m.destination_ports.extend([80, 443])
        m.not_destination_ports.append(22)
        p_full.rules[0].clauses.add().matches.add().destination_ports.append(8080)
        p_full.rules.add()
        out(xc, "pol-full", ser(p_full))
        p_ns = A.Authorization(name="deny-all", namespace="demo", scope=A.NAMESPACE,
                               action=A.DENY)
        out(xc, "pol-ns", ser(p_ns))
        p_glob = A.Authorization(name="allow-mesh", namespace="istio-system", scope=A.GLOBAL)
        p_glob.rules.add().clauses.add().matches.add().principals.add(suffix="/sa/ingress")
        out(xc, "pol-global", ser(p_glob))

        # Many ports (the duplicate check switches from a scan to a bitmap),
        # and workload services entries with one key several times
        # (concatenated messages merge: the last entry wins).
        s_many = svc("many", "demo", ip4(10, 96, 2, 1), [(p, p + 1000) for p in range(1, 21)])
        out(xc, "svc-20ports", ser(s_many))
        s_many.service.ports.add(service_port=7, target_port=1)
        out(xc, "bad-svc-dupport", ser(s_many))
        parts = [wl("Kubernetes//Pod/demo/m", "m", "demo", [ip4(10, 0, 2, 1)], key, ports)
                 for key, ports in [("demo/a.demo", [(80, 8080)]),
                                    ("demo/b.demo", [(p, 0) for p in range(100, 120)]),
                                    ("demo/a.demo", [(81, 8081)]),
                                    ("demo/c.demo", [(90, 0)]),
                                    ("demo/b.demo", [(443, 8443)])]]
        body = b"".join(ser(a.workload) for a in parts)
        out(xc, "wl-dupsvc", bytes([0x0a]) + _varint(len(body)) + body)

        # Malformed ones.
        good = ser(w_full)
        out(xc, "bad-truncated", good[:-3])
        a = W.Address()
        a.workload.addresses.append(bytes([1, 2, 3, 4, 5]))
        out(xc, "bad-iplen", ser(a))
        p = A.Authorization(name="x", namespace="y")
        p.rules.add().clauses.add().matches.add().source_ips.add(address=ip4(1, 2, 3, 4),
                                                                 length=33)
        out(xc, "bad-cidr", ser(p))
        out(xc, "bad-hugelen", bytes([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))
        out(xc, "bad-varint", bytes([0x0a, 0x0b, 0x28] + [0xff] * 10))
        out(xc, "bad-group", bytes([0x0b, 0x0c]))

        # Framed lists (built together): a small mesh, and conflicts.
        w1 = wl("Kubernetes//Pod/demo/echo-1", "echo-1", "demo", [ip4(10, 0, 1, 1)],
                "demo/echo.demo.svc.cluster.local", [(8080, 8080)], pols=["demo/deny-all"])
        w2 = wl("Kubernetes//Pod/demo/echo-2", "echo-2", "demo", [ip4(10, 0, 1, 2)],
                "demo/echo.demo.svc.cluster.local", [(8080, 9090)])
        s_wp = svc("echo", "demo", ip4(10, 96, 1, 1), [(8080, 8080)], waypoint=True)
        mesh = [(0, w1), (0, w2), (0, s_min), (1, p_ns), (1, p_glob)]
        out(xc, "list-mesh", framed(mesh))
        out(xc, "list-mesh-waypoint", framed([(0, w1), (0, w2), (0, s_wp), (1, p_full)]))
        out(xc, "list-dup-uid", framed([(0, w1), (0, w1), (0, s_min)]))
        w1b = wl("Kubernetes//Pod/demo/echo-3", "echo-3", "demo", [ip4(10, 0, 1, 1)])
        out(xc, "list-dup-ip", framed([(0, w1), (0, w1b)]))
        s2 = svc("other", "demo", ip4(10, 96, 1, 1), [(80, 80)])
        out(xc, "list-dup-vip", framed([(0, s_min), (0, s2), (1, p_ns), (1, p_ns)]))
        out(xc, "list-mixed-bad", framed([(0, w_full), (1, bytes([0x0a, 0x05])), (0, s_full),
                                          (0, w_host), (1, p_full)]))

        # Delta ADS responses.
        TA = "type.googleapis.com/istio.workload.Address"
        TZ = "type.googleapis.com/istio.security.Authorization"

        def resp(type_url, items, removed=(), nonce="n1"):
            r = D.DeltaDiscoveryResponse(type_url=type_url, nonce=nonce,
                                         system_version_info="v1")
            for name, t, m in items:
                res = r.resources.add(name=name, version="1")
                res.resource.type_url = t
                res.resource.value = ser(m)
            r.removed_resources.extend(removed)
            return r.SerializeToString()

        out(dc, "addresses", resp(TA, [("Kubernetes//Pod/demo/echo-1", TA, w1),
                                       ("Kubernetes//Pod/demo/echo-2", TA, w2),
                                       ("demo/echo.demo.svc.cluster.local", TA, s_min)]))
        out(dc, "full", resp(TA, [("Kubernetes//Pod/default/app-1", TA, w_full),
                                  ("default/svc.default.svc.cluster.local", TA, s_full)]))
        out(dc, "authz", resp(TZ, [("demo/deny-all", TZ, p_ns),
                                   ("default/allow-app", TZ, p_full)]))
        out(dc, "removal", resp(TA, [], removed=["Kubernetes//Pod/demo/echo-1", "x"]))
        out(dc, "mixed-bad", resp(TA, [("a", TA, bytes([0x0a, 0x05])), ("", TA, w1),
                                       ("b", TZ, p_ns), ("c", TA, w2)]))
        out(dc, "dup", resp(TA, [("u1", TA, w1), ("u2", TA, w1)]))
        out(dc, "truncated", resp(TA, [("Kubernetes//Pod/demo/echo-1", TA, w1)])[:-7])
        out(dc, "empty", b"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
