#!/usr/bin/python3
"""fake_istiod.py - a stand-in for istiod's two gRPC services zring uses, built on the
real gRPC stack (Debian python3-grpcio) and the real protobuf library (python3-protobuf,
messages generated at start from zring's xds/proto/*.proto with grpc_tools.protoc).

  /envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources
      Delta ADS, wildcard: the resources are those of a state file (JSON, below),
      re-read whenever it changes; each open stream gets what changed since it last
      heard (new or re-versioned resources, removed names). A reconnecting client's
      initial_resource_versions are honoured as istiod does. Every request is logged.
  /istio.v1.auth.IstioCertificateService/CreateCertificate
      signs the CSR with the given CA (the CSR's extensions copied, subject empty,
      validity as asked, else 24 h) and answers [leaf, root].

State file:
  {"address": {"<name>": {"version": "1", "proto": {<istio.workload.Address as
               protobuf JSON>}} | {"version": "1", "raw_b64": "<bytes>"}},
   "authorization": {"<name>": {"version": "1", "proto": {<istio.security.
               Authorization as protobuf JSON>}}},
   "generation": 0,          # change it to abort every open stream (UNAVAILABLE)
   "ca_fail": ""}            # non-empty: CreateCertificate fails with this message

Log (--log): one JSON object per line: {"rpc": "xds"|"ca", ...} with the request's
fields (type_url, response_nonce, error_detail, initial_resource_versions, node,
metadata) or, for the CA, the identity asked for and the headers.

Usage: fake_istiod.py --listen IP:PORT --proto-dir DIR --state FILE --log FILE
                      [--tls-cert F --tls-key F] --ca-cert F --ca-key F [--token T]
"""
import argparse
import base64
import datetime
import json
import os
import queue
import sys
import tempfile
import threading
import time

import grpc

ADDRESS_URL = "type.googleapis.com/istio.workload.Address"
AUTHZ_URL = "type.googleapis.com/istio.security.Authorization"
TYPES = {ADDRESS_URL: "address", AUTHZ_URL: "authorization"}


def load_protos(proto_dir, tmp):
    from grpc_tools import protoc
    import grpc_tools
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + proto_dir, "-I" + wkt, "--python_out=" + tmp,
                      "workload.proto", "authorization.proto", "discovery.proto",
                      "citadel.proto"])
    if rc != 0:
        raise SystemExit("fake_istiod: protoc failed on %s" % proto_dir)
    sys.path.insert(0, tmp)
    import workload_pb2
    import authorization_pb2
    import discovery_pb2
    import citadel_pb2
    return workload_pb2, authorization_pb2, discovery_pb2, citadel_pb2


class State:
    """The state file, re-read when its mtime or size changes."""

    def __init__(self, path, W, A):
        self.path, self.W, self.A = path, W, A
        self.key = None
        self.doc = {}
        self.values = {ADDRESS_URL: {}, AUTHZ_URL: {}}  # name -> (version, bytes)
        self.lock = threading.Lock()
        self.refresh()

    def refresh(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        key = (st.st_mtime_ns, st.st_size)
        if key == self.key:
            return False
        try:
            with open(self.path) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return False  # half-written: the next look gets it
        from google.protobuf import json_format
        values = {ADDRESS_URL: {}, AUTHZ_URL: {}}
        for url, field, cls in ((ADDRESS_URL, "address", self.W.Address),
                                (AUTHZ_URL, "authorization", self.A.Authorization)):
            for name, r in (doc.get(field) or {}).items():
                if "raw_b64" in r:
                    data = base64.b64decode(r["raw_b64"])
                else:
                    data = json_format.ParseDict(r["proto"], cls()).SerializeToString()
                values[url][name] = (str(r["version"]), data)
        with self.lock:
            self.key, self.doc, self.values = key, doc, values
        return True

    def snapshot(self):
        with self.lock:
            return self.doc, {u: dict(v) for u, v in self.values.items()}


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, **rec):
        rec["t"] = round(time.time(), 3)
        with self.lock:
            self.f.write(json.dumps(rec, sort_keys=True) + "\n")


def headers(context):
    return {k: v for k, v in context.invocation_metadata()
            if not k.startswith("grpc-") and k not in ("user-agent",)}


class Xds:
    def __init__(self, state, log, D, token):
        self.state, self.log, self.D, self.token = state, log, D, token
        self.nonce = 0
        self.lock = threading.Lock()

    def next_nonce(self):
        with self.lock:
            self.nonce += 1
            return "n%d" % self.nonce

    def response(self, url, values, sent, initial=None):
        """What changed for `url` since `sent` (name -> version), or None."""
        D = self.D
        resp = D.DeltaDiscoveryResponse(type_url=url)
        have = dict(initial) if initial is not None else sent
        for name, (version, data) in sorted(values.items()):
            if have.get(name) == version:
                sent[name] = version
                continue
            r = resp.resources.add(name=name, version=version)
            r.resource.type_url = url
            r.resource.value = data
            sent[name] = version
        for name in sorted(have):
            if name not in values:
                resp.removed_resources.append(name)
                sent.pop(name, None)
        if not resp.resources and not resp.removed_resources and initial is None:
            return None
        resp.nonce = self.next_nonce()
        resp.system_version_info = "fake"
        return resp

    def __call__(self, request_iterator, context):
        md = headers(context)
        if self.token and md.get("authorization") != "Bearer " + self.token:
            self.log.write(rpc="xds", event="unauthenticated", metadata=md)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failure")
        inbox = queue.Queue()

        def reader():
            try:
                for raw in request_iterator:
                    inbox.put(raw)
            except Exception:  # noqa: BLE001 - the client went away
                pass
            inbox.put(None)

        threading.Thread(target=reader, daemon=True).start()
        doc, _ = self.state.snapshot()
        generation = doc.get("generation", 0)
        sent = {}  # url -> {name: version}
        first = True
        while context.is_active():
            try:
                raw = inbox.get(timeout=0.05)
            except queue.Empty:
                raw = False
            if raw is None:
                return
            self.state.refresh()
            doc, values = self.state.snapshot()
            if doc.get("generation", 0) != generation:
                self.log.write(rpc="xds", event="abort")
                context.abort(grpc.StatusCode.UNAVAILABLE, "fake istiod: stream closed")
            if raw:
                req = self.D.DeltaDiscoveryRequest()
                req.ParseFromString(raw)
                rec = {"rpc": "xds", "type_url": req.type_url,
                       "response_nonce": req.response_nonce,
                       "initial_resource_versions": dict(req.initial_resource_versions),
                       "subscribe": list(req.resource_names_subscribe)}
                if req.HasField("error_detail"):
                    rec["error_detail"] = {"code": req.error_detail.code,
                                           "message": req.error_detail.message}
                if req.HasField("node"):
                    from google.protobuf import json_format
                    rec["node"] = json_format.MessageToDict(req.node)
                if first:
                    rec["metadata"] = md
                    first = False
                self.log.write(**rec)
                url = req.type_url
                if url in TYPES and url not in sent and not req.response_nonce:
                    sent[url] = {}
                    resp = self.response(url, values.get(url, {}), sent[url],
                                         initial=req.initial_resource_versions)
                    yield resp.SerializeToString()
                continue
            for url in list(sent):
                resp = self.response(url, values.get(url, {}), sent[url])
                if resp is not None:
                    self.log.write(rpc="xds", event="push", type_url=url, nonce=resp.nonce,
                                   resources=len(resp.resources),
                                   removed=len(resp.removed_resources))
                    yield resp.SerializeToString()


class Ca:
    """CreateCertificate. Test switches in the state file, besides ca_fail:
    "ca_wrong_identity": true  the leaf's URI SAN is another identity
    "ca_wrong_key": true       the leaf holds a fresh key, not the CSR's
    "ca_response_b64": "..."   answer these bytes instead (malformed answers)
    "ca_roots_pem": "..."      the last cert_chain element instead of the CA's root
    """

    def __init__(self, state, log, C, ca_cert, ca_key, token):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        self.state, self.log, self.C, self.token = state, log, C, token
        with open(ca_cert, "rb") as f:
            self.root_pem = f.read()
        self.root = x509.load_pem_x509_certificate(self.root_pem)
        with open(ca_key, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)

    def __call__(self, raw, context):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        md = headers(context)
        req = self.C.IstioCertificateRequest()
        req.ParseFromString(raw)
        meta = {k: v.string_value for k, v in req.metadata.fields.items()}
        csr = x509.load_pem_x509_csr(req.csr.encode())
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            critical = san.critical
        except x509.ExtensionNotFound:
            san, uris, critical = None, [], False
        self.log.write(rpc="ca", metadata=md, identity=uris, san_critical=critical,
                       subject=csr.subject.rfc4514_string(),
                       validity=req.validity_duration, request_metadata=meta,
                       csr_signature_ok=csr.is_signature_valid)
        if self.token and md.get("authorization") != "Bearer " + self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "authentication failure")
        self.state.refresh()
        doc, _ = self.state.snapshot()
        if doc.get("ca_fail"):
            context.abort(grpc.StatusCode.INTERNAL, doc["ca_fail"])
        if "ca_response_b64" in doc:
            return base64.b64decode(doc["ca_response_b64"])
        if not csr.is_signature_valid or san is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad CSR")
        now = datetime.datetime.now(datetime.timezone.utc)
        ttl = req.validity_duration if req.validity_duration > 0 else 24 * 3600
        san_value, public_key = san.value, csr.public_key()
        if doc.get("ca_wrong_identity"):
            san_value = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                "spiffe://cluster.local/ns/default/sa/someone-else")])
        if doc.get("ca_wrong_key"):
            from cryptography.hazmat.primitives.asymmetric import ec
            public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([]))
                .issuer_name(self.root.subject)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(seconds=60))
                .not_valid_after(now + datetime.timedelta(seconds=ttl))
                .add_extension(san_value, critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                             False, False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        resp = self.C.IstioCertificateResponse()
        resp.cert_chain.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        resp.cert_chain.append(doc.get("ca_roots_pem") or self.root_pem.decode())
        return resp.SerializeToString()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--ca-cert", required=True)
    ap.add_argument("--ca-key", required=True)
    ap.add_argument("--token", default="")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="fake-istiod-")
    W, A, D, C = load_protos(a.proto_dir, tmp)
    state = State(a.state, W, A)
    log = Log(a.log)
    from concurrent import futures
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    xds = Xds(state, log, D, a.token)
    ca = Ca(state, log, C, a.ca_cert, a.ca_key, a.token)
    handlers = {
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources":
            grpc.stream_stream_rpc_method_handler(xds),
        "/istio.v1.auth.IstioCertificateService/CreateCertificate":
            grpc.unary_unary_rpc_method_handler(ca),
    }

    class Generic(grpc.GenericRpcHandler):
        def service(self, details):
            return handlers.get(details.method)

    server.add_generic_rpc_handlers((Generic(),))
    if a.tls_cert:
        with open(a.tls_key, "rb") as f:
            key = f.read()
        with open(a.tls_cert, "rb") as f:
            crt = f.read()
        port = server.add_secure_port(a.listen, grpc.ssl_server_credentials([(key, crt)]))
    else:
        port = server.add_insecure_port(a.listen)
    if not port:
        raise SystemExit("fake_istiod: cannot listen on %s" % a.listen)
    server.start()
    print("fake istiod listening on %s (%s)" % (a.listen, "TLS" if a.tls_cert else "plaintext"),
          flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
