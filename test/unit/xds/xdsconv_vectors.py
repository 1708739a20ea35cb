#!/usr/bin/python3
"""Make xDS resources with the real protobuf library, then run the C test.

Usage: xdsconv_vectors.py <proto dir> <test_xds_xdsconv binary>
Generates _pb2 modules from xds/proto/*.proto with grpc_tools.protoc (Debian
python3-grpc-tools) into a temporary directory, writes one <case>.bin per test
vector there, and runs the C test on that directory. Needs /usr/bin/python3
(the Debian one with python3-protobuf), not a pyenv python.
"""
import os
import subprocess
import sys
import tempfile


def main():
    proto_dir, test_bin = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="xdsconv-") as tmp:
        from grpc_tools import protoc
        import grpc_tools
        wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["protoc", "-I" + proto_dir, "-I" + wkt, "--python_out=" + tmp,
                          "workload.proto", "authorization.proto", "discovery.proto",
                          "citadel.proto"])
        if rc != 0:
            print("protoc failed", file=sys.stderr)
            return 1
        sys.path.insert(0, tmp)
        import workload_pb2 as W
        import authorization_pb2 as A
        import discovery_pb2 as D  # noqa: F401 (generated: checks the file compiles)
        import citadel_pb2 as C  # noqa: F401

        def out(name, msg_or_bytes):
            data = msg_or_bytes if isinstance(msg_or_bytes, bytes) else msg_or_bytes.SerializeToString()
            with open(os.path.join(tmp, name + ".bin"), "wb") as f:
                f.write(data)

        ip4 = bytes([10, 0, 0, 1])
        ip6 = bytes.fromhex("fd000000000000000000000000000001")

        # A full workload.
        a = W.Address()
        w = a.workload
        w.uid = "Kubernetes//Pod/default/app-1"
        w.name = "app-1"
        w.namespace = "default"
        w.addresses.extend([ip4, ip6])
        w.network = "net1"
        w.tunnel_protocol = W.HBONE
        w.trust_domain = "td.local"
        w.service_account = "app"
        w.waypoint.address.network = "net1"
        w.waypoint.address.address = bytes([10, 0, 0, 9])
        w.waypoint.hbone_mtls_port = 15008
        w.network_gateway.hostname.namespace = "istio-system"
        w.network_gateway.hostname.hostname = "eastwest.example.com"
        w.network_gateway.hbone_mtls_port = 15008
        w.node = "node-a"
        w.canonical_name = "app"
        w.canonical_revision = "v1"
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
        w.locality.region = "r1"
        w.locality.zone = "z1"
        w.network_mode = W.STANDARD
        w.capacity.value = 7
        out("wl_full", a)

        # A minimal workload (defaults), no uid: the resource name is used.
        a = W.Address()
        a.workload.addresses.append(bytes([10, 0, 0, 2]))
        a.workload.capacity.value = 0
        out("wl_min", a)

        # A service.
        a = W.Address()
        s = a.service
        s.name = "svc"
        s.namespace = "default"
        s.hostname = "svc.default.svc.cluster.local"
        s.addresses.add(network="net1", address=bytes([10, 96, 0, 1]))
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
        out("svc_full", a)

        # A policy.
        p = A.Authorization(name="allow-app", namespace="default", scope=A.WORKLOAD_SELECTOR,
                            action=A.DENY)
        r = p.rules.add()
        cl = r.clauses.add()
        m = cl.matches.add()
        m.principals.add(exact="td.local/ns/default/sa/client")
        m.principals.add(prefix="td.local/ns/")
        m.not_principals.add().presence.SetInParent()
        m.namespaces.add(suffix="-prod")
        m.service_accounts.add(namespace="default", serviceAccount="client")
        m.not_service_accounts.add(namespace="bad", serviceAccount="sa")
        m.source_ips.add(address=bytes([192, 168, 0, 0]), length=16)
        m.not_destination_ips.add(address=ip6, length=64)
        m.destination_ports.extend([80, 443])
        m.not_destination_ports.append(22)
        cl2 = r.clauses.add()
        cl2.matches.add().destination_ports.append(8080)
        p.rules.add()  # a rule without clauses
        out("pol_full", p)

        # Malformed inputs.
        good = open(os.path.join(tmp, "wl_full.bin"), "rb").read()
        out("bad_truncated", good[:len(good) - 3])
        a = W.Address()
        a.workload.addresses.append(bytes([1, 2, 3, 4, 5]))
        out("bad_iplen", a)
        a = W.Address()
        a.workload.tunnel_protocol = 7
        out("bad_enum", a)
        p = A.Authorization(name="x", namespace="y")
        p.rules.add().clauses.add().matches.add().source_ips.add(address=ip4, length=33)
        out("bad_cidr", p)
        p = A.Authorization(name="x", namespace="y")
        p.rules.add().clauses.add().matches.add().principals.add()
        out("bad_nomatch", p)
        a = W.Address()
        a.service.ports.add(service_port=0, target_port=1)
        out("bad_port0", a)
        a = W.Address()
        a.workload.waypoint.hbone_mtls_port = 15008
        out("bad_gw_nodest", a)
        p = A.Authorization(name="x", namespace="y", action=5)
        out("bad_action", p)
        out("bad_empty_address", b"")
        # Hand-made wire errors.
        out("bad_wiretype", bytes([0x0a, 0x03, 0xa0, 0x01, 0x05]))      # workload.uid(20) as varint
        out("bad_hugelen", bytes([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))  # workload, length 4 GiB
        out("bad_varint", bytes([0x0a, 0x0b, 0x28] + [0xff] * 10))       # 11-byte varint
        out("bad_group", bytes([0x0b, 0x0c]))                            # field 1 as a group
        out("bad_field0", bytes([0x00, 0x00]))
        out("bad_utf8", bytes([0x0a, 0x04, 0x0a, 0x02, 0xc3, 0x28]))     # workload.name
        out("bad_nul", bytes([0x0a, 0x04, 0x0a, 0x02, 0x61, 0x00]))
        # Unknown fields (all wire types) are skipped.
        a = W.Address()
        a.workload.uid = "u-unknown"
        a.workload.namespace = "ns"
        extra = bytes([0xf8, 0x07, 0x01,                 # field 127 varint
                       0xf9, 0x07] + [0] * 8 +           # field 127 fixed64
                      [0xfa, 0x07, 0x02, 0x41, 0x42,     # field 127 bytes
                       0xfd, 0x07] + [0] * 4)            # field 127 fixed32
        body = a.workload.SerializeToString() + extra
        out("wl_unknown", bytes([0x0a, len(body)]) + body)
        # Service field 11 as istio's Timestamp (length-delimited) is skipped.
        a = W.Address()
        a.service.name = "ts"
        a.service.namespace = "ns"
        a.service.hostname = "ts.ns"
        body = a.service.SerializeToString() + bytes([0x5a, 0x02, 0x08, 0x01])
        out("svc_ts11", bytes([0x12, len(body)]) + body)

        sys.stdout.flush()
        return subprocess.call([test_bin, tmp])


if __name__ == "__main__":
    sys.exit(main())
