#!/usr/bin/python3
"""zring configured by istiod over Delta ADS (no local config), against fake_istiod.py
(python3-grpcio + python3-protobuf, TLS with a root made here) in its own pod:
1. zring connects (XDS_ADDRESS=https://<istiod pod IP>:15012, XDS_ROOT_CA), is ready
   only once both types arrived, and serves the service they describe: 40 echoes to
   the VIP reach both endpoints, byte for byte; istiod saw ztunnel's node id and
   metadata (ISTIO_META_* without the prefix), the clusterid and bearer-token headers,
   one wildcard subscription per type and an ACK (nonce, no error) for each response;
2. an endpoint's workload is removed: new connections go to the other one only;
3. a response with one broken resource (bytes that are not an Address) and one good
   one: the good one is applied, the broken one is named in a NACK's error_detail;
4. istiod goes away: the last config keeps serving; istiod comes back: zring
   reconnects and its subscriptions carry initial_resource_versions of what it holds;
5. a stream aborted by istiod (UNAVAILABLE): zring re-opens it;
6. certificates from istiod's CA (CA_ADDRESS, CA_ROOT_CA), for the workloads on this
   node (NODE_NAME) only: a second pod ("hb") runs
   its own zring, its workload says HBONE: 4 x 1 MiB echoes from the client go through
   HBONE, both zrings holding certificates the fake istiod signed (CSRs for both
   identities in its log, with the bearer token), and the server's access lines name
   the client's SPIFFE identity;
7. shared mode (PROXY_MODE=shared): zring takes pods from istio-cni (an istio-cni
   stand-in speaking ZDS) only after istiod answered, so no pod is served from an
   empty mesh: while istiod is down it does not connect, and is not ready; once istiod
   is back it connects, takes a pod and gets ready."""
import base64
import ipaddress
import json
import os
import subprocess
import time

import ztlib
from cni_standin import CniStandin
from netns import Topology
from ztlib import NS, check, say

CLIENT, EP_A, EP_B, EP_C, ISTIOD, HB = "10.77.1.10", "10.77.2.10", "10.77.3.10", \
    "10.77.4.10", "10.77.5.10", "10.77.6.10"
VIP = "10.96.0.10"
PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "xds", "proto")
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_istiod.py")
TOKEN = "tok-xds-test"


def b64ip(ip):
    return base64.b64encode(ipaddress.ip_address(ip).packed).decode()


def wl(name, ip, version="1", svc=True, hbone=False, node="node-2"):
    w = {"uid": "Kubernetes//Pod/%s/%s" % (NS, name), "name": name, "namespace": NS,
         "addresses": [b64ip(ip)], "serviceAccount": name, "node": node}
    if hbone:
        w["tunnelProtocol"] = "HBONE"
    if svc:
        w["services"] = {"%s/echo.%s.svc.cluster.local" % (NS, NS):
                         {"ports": [{"servicePort": 8000, "targetPort": 8080}]}}
    return {"version": version, "proto": {"workload": w}}


def echo_svc(version="1"):
    return {"version": version, "proto": {"service": {
        "name": "echo", "namespace": NS, "hostname": "echo.%s.svc.cluster.local" % NS,
        "addresses": [{"network": "", "address": b64ip(VIP)}],
        "ports": [{"servicePort": 8000, "targetPort": 8080}]}}}


def policy(version="1"):
    return {"version": version, "proto": {"name": "allow-all", "namespace": NS,
                                          "scope": "NAMESPACE", "action": "ALLOW",
                                          "rules": [{"clauses": []}]}}


def make_certs(d):
    def run(*argv):
        subprocess.run(argv, check=True, capture_output=True, cwd=d)
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key")
    run("openssl", "req", "-x509", "-new", "-key", "root.key", "-sha256", "-days", "2",
        "-subj", "/O=fake istiod test root", "-out", "root.pem")
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "tls.key")
    run("openssl", "req", "-new", "-key", "tls.key", "-subj", "/CN=istiod", "-out", "tls.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:istiod.istio-system.svc,IP:%s\n" % ISTIOD)
    run("openssl", "x509", "-req", "-in", "tls.csr", "-CA", "root.pem", "-CAkey", "root.key",
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "ext.cnf", "-out", "tls.pem")


def body(ctx):
    d = ctx.path("pki")
    os.makedirs(d, exist_ok=True)
    make_certs(d)
    # zring reads its bearer token from ./var/run/secrets/tokens/istio-token
    cwd = ctx.path("zring-cwd")
    os.makedirs(os.path.join(cwd, "var/run/secrets/tokens"), exist_ok=True)
    with open(os.path.join(cwd, "var/run/secrets/tokens/istio-token"), "w") as f:
        f.write(TOKEN + "\n")
    state = ctx.path("state.json")
    log = ctx.path("istiod.jsonl")
    doc = {"address": {"Kubernetes//Pod/%s/client" % NS: wl("client", CLIENT, svc=False,
                                                             hbone=True, node="node-1"),
                       "Kubernetes//Pod/%s/hb" % NS: wl("hb", HB, svc=False, hbone=True,
                                                         node="node-1"),
                       "Kubernetes//Pod/%s/ep-a" % NS: wl("ep-a", EP_A),
                       "Kubernetes//Pod/%s/ep-b" % NS: wl("ep-b", EP_B),
                       "%s/echo.%s.svc.cluster.local" % (NS, NS): echo_svc()},
           "authorization": {"%s/allow-all" % NS: policy()},
           "generation": 0}

    def write():
        ztlib.write_atomic(state, json.dumps(doc))

    def records(**match):
        out = []
        try:
            with open(log) as f:
                for line in f:
                    r = json.loads(line)
                    if all(r.get(k) == v for k, v in match.items()):
                        out.append(r)
        except FileNotFoundError:
            pass
        return out

    write()
    with Topology(log_dir=ctx.logdir) as t:
        pods = {n: t.add_pod(n, ip) for n, ip in
                (("client", CLIENT), ("ep-a", EP_A), ("ep-b", EP_B), ("ep-c", EP_C),
                 ("istiod", ISTIOD), ("hb", HB))}
        srv = {n: ztlib.ztdata_server(ctx, pods[n], n) for n in ("ep-a", "ep-b", "ep-c", "hb")}

        def start_istiod():
            p = pods["istiod"].spawn("fake-istiod", [
                "/usr/bin/python3", FAKE, "--listen", "%s:15012" % ISTIOD,
                "--proto-dir", PROTO_DIR, "--state", state, "--log", log,
                "--tls-cert", os.path.join(d, "tls.pem"), "--tls-key", os.path.join(d, "tls.key"),
                "--ca-cert", os.path.join(d, "root.pem"), "--ca-key", os.path.join(d, "root.key"),
                "--token", TOKEN])
            p.wait_for(r"fake istiod listening", 30)
            return p

        istiod = start_istiod()
        pods["client"].install_capture()
        env = {"XDS_ADDRESS": "https://%s:15012" % ISTIOD,
               "XDS_ROOT_CA": os.path.join(d, "root.pem"),
               "INSTANCE_IP": CLIENT, "POD_NAME": "ztunnel-abc", "POD_NAMESPACE": "istio-system",
               "NODE_NAME": "node-1", "ISTIO_META_FOO": "bar", "CLUSTER_ID": "c-test",
               "CA_ADDRESS": "https://%s:15012" % ISTIOD,
               "CA_ROOT_CA": os.path.join(d, "root.pem")}
        z = pods["client"].spawn("zring", [ctx.zring, "--shards", "2"], env=env, cwd=cwd)
        pods["client"].wait_http_ready(proc=z, timeout=20)
        pods["hb"].install_capture()
        zhb = pods["hb"].spawn("zring", [ctx.zring, "--shards", "2"],
                               env=dict(env, INSTANCE_IP=HB, POD_NAME="ztunnel-hb"), cwd=cwd)
        pods["hb"].wait_http_ready(proc=zhb, timeout=20)
        z.wait_for(r"xds: initial configuration received", 5)

        # 1. the service from istiod's resources
        mark = {n: len(srv[n].lines()) for n in srv}
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8000" % VIP, "echo",
                                            64 << 10, count=40, parallel=8, timeout=30)
        servers = summ.get("servers", "")
        check("ep-a:" in servers and "ep-b:" in servers and "ep-c" not in servers,
              "40 echoes to the VIP spread over %s (want ep-a and ep-b)", servers)
        first = records(rpc="xds")
        want_id = "ztunnel~%s~ztunnel-abc.istio-system~istio-system.svc.cluster.local" % CLIENT
        subs = [r for r in first if not r.get("response_nonce")
                and r.get("node", {}).get("id") == want_id]
        types = sorted(r["type_url"] for r in subs)
        check(types == sorted([ztlib_type("Address"), ztlib_type("Authorization")]),
              "initial subscriptions with node id %s: %s (all: %s)", want_id, types,
              [r.get("node", {}).get("id") for r in first])
        node = subs[0].get("node", {})
        meta = node.get("metadata", {})
        check(meta.get("NAME") == "ztunnel-abc" and meta.get("NAMESPACE") == "istio-system" and
              meta.get("INSTANCE_IPS") == CLIENT and meta.get("NODE_NAME") == "node-1" and
              meta.get("FOO") == "bar", "node metadata %s", meta)
        md = subs[0].get("metadata", {})
        check(md.get("authorization") == "Bearer " + TOKEN and md.get("clusterid") == "c-test",
              "headers on the ADS stream: %s", md)
        acks = [r for r in first if r.get("response_nonce")]
        check(len(acks) >= 2 and not any("error_detail" in r for r in acks),
              "ACKs after the first responses: %s", acks)
        say("1. ready after both types arrived; 40 echoes via the VIP: %s; node %s, "
            "metadata %s, %d ACKs", servers, node.get("id"), sorted(meta), len(acks))

        # 2. ep-b's workload goes away
        del doc["address"]["Kubernetes//Pod/%s/ep-b" % NS]
        n_acks = len([r for r in records(rpc="xds") if r.get("response_nonce")])
        write()
        ztlib.wait_until(lambda: len([r for r in records(rpc="xds") if r.get("response_nonce")])
                         > n_acks, 10, "an ACK for the removal")
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8000" % VIP, "echo",
                                            16 << 10, count=20, parallel=4, timeout=30)
        check(summ.get("servers", "").startswith("ep-a:") and "ep-b" not in summ["servers"],
              "after removing ep-b: %s", summ)
        say("2. ep-b removed by istiod: 20 echoes all on %s", summ["servers"])

        # 3. one broken resource beside a good one (ep-c joins the service)
        doc["address"]["Kubernetes//Pod/%s/broken" % NS] = {
            "version": "1", "raw_b64": base64.b64encode(b"\x0a\xff\xff\xff\xff\x0f").decode()}
        doc["address"]["Kubernetes//Pod/%s/ep-c" % NS] = wl("ep-c", EP_C)
        write()
        nacks = ztlib.wait_until(lambda: [r for r in records(rpc="xds") if "error_detail" in r],
                                 10, "a NACK")
        msg = nacks[0]["error_detail"]["message"]
        check("Kubernetes//Pod/%s/broken" % NS in msg, "NACK message %r names the resource", msg)
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8000" % VIP, "echo",
                                            16 << 10, count=30, parallel=6, timeout=30)
        check("ep-c:" in summ.get("servers", ""), "ep-c was not applied beside the broken "
              "resource: %s", summ)
        say("3. NACK %r (code %s); the good resource beside it applied: %s", msg,
            nacks[0]["error_detail"].get("code"), summ["servers"])
        del doc["address"]["Kubernetes//Pod/%s/broken" % NS]
        write()

        # 3b. a resource that decodes but does not fit: a second service on echo's VIP
        n_nack = len([r for r in records(rpc="xds") if "error_detail" in r])
        dup = echo_svc()
        dup["proto"]["service"]["name"] = "dup"
        dup["proto"]["service"]["hostname"] = "dup.%s.svc.cluster.local" % NS
        doc["address"]["%s/dup.%s.svc.cluster.local" % (NS, NS)] = dup
        write()
        nacks = ztlib.wait_until(lambda: [r for r in records(rpc="xds") if "error_detail" in r]
                                 [n_nack:], 10, "a NACK for the duplicate VIP")
        msg = nacks[0]["error_detail"]["message"]
        check("dup.%s.svc.cluster.local" % NS in msg, "NACK message %r names the duplicate", msg)
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8000" % VIP, "echo",
                                            16 << 10, count=10, parallel=2, timeout=30)
        check("ep-" in summ.get("servers", "") and "hb" not in summ["servers"],
              "echo's VIP after the duplicate: %s", summ)
        say("3b. a second service on echo's VIP: NACK %r; the VIP still serves echo: %s", msg,
            summ["servers"])
        del doc["address"]["%s/dup.%s.svc.cluster.local" % (NS, NS)]
        write()

        # 4. istiod goes away, then comes back
        istiod.stop()
        time.sleep(1)
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8000" % VIP, "echo",
                                            16 << 10, count=10, parallel=2, timeout=30)
        say("4. istiod down: 10 echoes on the last config: %s", summ["servers"])
        lines = len(records(rpc="xds"))
        istiod = start_istiod()
        resub = ztlib.wait_until(
            lambda: [r for r in records(rpc="xds")[lines:] if not r.get("response_nonce")
                     and "event" not in r and r.get("type_url") == ztlib_type("Address")],
            30, "a re-subscription")
        irv = resub[0].get("initial_resource_versions", {})
        check("Kubernetes//Pod/%s/ep-a" % NS in irv and irv.get(
              "%s/echo.%s.svc.cluster.local" % (NS, NS)) == "1",
              "initial_resource_versions after reconnecting: %s", irv)
        say("4. istiod back: zring re-subscribed with %d resource versions", len(irv))

        # 5. the stream aborted by istiod
        lines = len(records(rpc="xds"))
        doc["generation"] = 1
        write()
        ztlib.wait_until(lambda: [r for r in records(rpc="xds")[lines:]
                                  if not r.get("response_nonce") and "event" not in r
                                  and "type_url" in r],
                         30, "a new stream after the abort")
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8000" % VIP, "echo",
                                            16 << 10, count=10, parallel=2, timeout=30)
        check(z.alive(), "zring exited")
        say("5. stream aborted by istiod: re-opened; echoes %s", summ["servers"])

        # 6. HBONE with certificates from istiod's CA
        lz = len(zhb.lines())
        rc, res, summ = ztlib.ztdata_client(ctx, pods["client"], "%s:8080" % HB, "echo",
                                            1 << 20, count=4, parallel=2, timeout=30)
        recs = ztlib.wait_until(
            lambda: [r["fields"] for r in ztlib.access_records(zhb, lz)
                     if r["fields"].get("direction") == "inbound"] or None,
            10, "inbound access lines on hb's zring")
        sid = "spiffe://cluster.local/ns/%s/sa/client" % NS
        check(len(recs) >= 4 and all(r.get("src.identity") == sid for r in recs),
              "inbound HBONE access lines: %s", recs[:2])
        csrs = {tuple(r["identity"]): r for r in records(rpc="ca")}
        check(sorted(k[0].rsplit("/", 1)[1] for k in csrs) == ["client", "hb"],
              "CSRs for the workloads on NODE_NAME's node only: %s", sorted(csrs))
        for who in ("client", "hb"):
            r = csrs.get(("spiffe://cluster.local/ns/%s/sa/%s" % (NS, who),))
            check(r is not None, "no CSR for %s in istiod's log: %s", who, list(csrs))
            check(r["metadata"].get("authorization") == "Bearer " + TOKEN and r["san_critical"]
                  and r["subject"] == "" and r["csr_signature_ok"],
                  "CSR for %s: %s", who, r)
        say("6. HBONE echo 4 x 1 MiB: %s; certificates from istiod's CA for %s; the server "
            "saw %s", summ, sorted(k[0] for k in csrs), sid)

        # 7. shared mode waits for istiod before it takes pods from istio-cni
        istiod.stop()
        node = t.add_node("n1")
        p7 = t.add_pod("p7", "10.77.7.10", node=node)
        p7.install_capture(inbound_mode="tproxy")
        sock = ctx.path("n1-ztunnel.sock")
        cni = CniStandin(sock)
        zn = node.spawn("zring-shared", [ctx.zring, "--shards", "2"],
                        env=dict(env, PROXY_MODE="shared", INPOD_UDS=sock, INSTANCE_IP="10.77.0.1",
                                 POD_NAME="ztunnel-n1"), cwd=cwd)
        zn.wait_for(r"xds: connecting to", 10)
        early = None
        try:
            cni.accept(timeout=2)
            early = "zring connected to istio-cni before istiod answered"
        except OSError:  # socket.timeout: no connection, as wanted
            pass
        check(early is None, "%s", early)
        st = node.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "http://127.0.0.1:15021/healthz/ready"], check=False).stdout.strip()
        check(st == "500", "readiness with istiod down: %s", st)
        istiod = start_istiod()
        cni.accept(timeout=20)
        check(cni.add("Kubernetes//Pod/%s/p7" % NS, p7.path, name="p7", namespace=NS,
                      service_account="p7") == "", "pod add NACKed")
        check(cni.snapshot_sent() == "", "SnapshotSent NACKed")
        node.wait_http_ready(proc=zn, timeout=20)
        say("7. shared mode: no istio-cni connection and not ready (%s) while istiod was "
            "down; connected, took a pod and got ready once it answered", st)
        cni.close()


def ztlib_type(short):
    return "type.googleapis.com/istio.%s.%s" % ("workload" if short == "Address" else
                                                 "security", short)


if __name__ == "__main__":
    ztlib.main("xds", body, tools=("openssl",))
