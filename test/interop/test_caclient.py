"""test_caclient.py - engine/caclient (caclient_test driver) against the CA of
test/integ/fake_istiod.py (python3-grpcio; certificates signed by the
`cryptography` library), over TLS on 127.0.0.1.

Throwaway P-256 CAs from the openssl CLI: 'tls' signs istiod's serving
certificate (SAN DNS:istiod.istio-system.svc, IP:127.0.0.1), 'mesh' is the CA
that signs workload certificates, 'other' is trusted by nobody.

Checks:
  issue: a certificate for spiffe://cluster.local/ns/default/sa/app that
    openssl verifies against the mesh root, with that critical URI SAN, the
    TTL asked for, the key we hold; the returned roots are the mesh root; the
    driver puts it in a certificate store. With the IP (IP SAN) and with the
    DNS name (SNI + DNS SAN).
  what the CA saw (its JSON log): authorization "Bearer <token>" (token file
    re-read per call, trailing newline dropped), clusterid (given, and the
    "Kubernetes" default), ImpersonatedIdentity metadata, validity_duration,
    a critical URI SAN and an empty subject in a CSR whose signature holds.
  refusals: wrong token and no token (UNAUTHENTICATED + istiod's message);
    ca_fail (INTERNAL + message); wrong TLS root, wrong server name,
    connection refused (UNAVAILABLE); a silent peer (DEADLINE_EXCEEDED within
    the timeout); a leaf for another identity, a leaf with another key, a
    root that did not sign the leaf, and malformed answers (garbage bytes,
    truncated protobuf, a one-element chain, an element that is not PEM, a
    CA as leaf, 30 randomly damaged answers) refused with -EBADMSG and a
    message naming what was wrong; an answer over 1 MiB (RESOURCE_EXHAUSTED);
    a token path that cannot be read (-EISDIR, no call made).
  Two roots in the last element: both returned.

The driver exits 0 after every call (a sanitizer report fails the test).
"""

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop as I  # noqa: E402

SVC = "istiod.istio-system.svc"
ID = "spiffe://cluster.local/ns/default/sa/app"
TOKEN = "tok-3f9a.b64url_ok"
EBADMSG = -74
OPTS = None  # --fake-istiod, --proto-dir


def openssl(d, *cmd, input=None):
    r = subprocess.run(("openssl",) + cmd, cwd=d, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    I.check(r.returncode == 0, "openssl %s: %s", " ".join(cmd),
            r.stdout.decode(errors="replace"))
    return r.stdout.decode(errors="replace")


def make_certs(d):
    for ca in ("tls", "mesh", "other"):
        openssl(d, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", ca + ".key")
        openssl(d, "req", "-x509", "-new", "-key", ca + ".key", "-subj", "/O=" + ca,
                "-days", "2", "-out", ca + ".pem",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                "-addext", "subjectKeyIdentifier=hash")
    openssl(d, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "istiod.key")
    openssl(d, "req", "-new", "-key", "istiod.key", "-subj", "/O=istiod", "-out", "istiod.csr")
    with open(os.path.join(d, "istiod.ext"), "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n"
                "keyUsage=critical,digitalSignature\n"
                "basicConstraints=critical,CA:FALSE\n" % SVC)
    openssl(d, "x509", "-req", "-in", "istiod.csr", "-CA", "tls.pem", "-CAkey", "tls.key",
            "-CAcreateserial", "-days", "2", "-extfile", "istiod.ext", "-out", "istiod.pem")
    return lambda n: os.path.join(d, n)


def der(d, path):
    r = subprocess.run(["openssl", "x509", "-in", path, "-outform", "DER"], cwd=d,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    I.check(r.returncode == 0, "openssl x509 %s failed", path)
    return r.stdout


def pem_blocks(path):
    with open(path) as f:
        return f.read().count("-----BEGIN CERTIFICATE-----")


class Fake:
    def __init__(self, tmp, procs, f):
        self.tmp, self.state, self.log = tmp, os.path.join(tmp, "state.json"), \
            os.path.join(tmp, "istiod.jsonl")
        self.set({})
        self.port = I.free_port()
        cmd = ["/usr/bin/python3", OPTS.fake_istiod, "--listen", "127.0.0.1:%d" % self.port,
               "--proto-dir", OPTS.proto_dir, "--state", self.state, "--log", self.log,
               "--tls-cert", f("istiod.pem"), "--tls-key", f("istiod.key"),
               "--ca-cert", f("mesh.pem"), "--ca-key", f("mesh.key"), "--token", TOKEN]
        self.p, _ = I.spawn(procs, cmd, os.path.join(tmp, "fake_istiod.log"),
                            ready="fake istiod listening", timeout=30)
        I.wait_port(self.port)
        self.gen = 0

    def set(self, doc):
        # a new size each time, so that the mtime+size check sees every change
        self.gen = getattr(self, "gen", 0) + 1
        doc = dict(doc, pad="x" * self.gen)
        tmp = self.state + ".tmp"
        with open(tmp, "w") as fp:
            json.dump(doc, fp)
        os.replace(tmp, self.state)

    def records(self):
        try:
            with open(self.log) as fp:
                return [json.loads(line) for line in fp if line.strip()]
        except FileNotFoundError:
            return []

    def ca_records(self):
        return [r for r in self.records() if r.get("rpc") == "ca"]


def drive(*args, timeout=40):
    cmd = [OPTS.driver] + [str(a) for a in args]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise I.Fail("driver hung: %s" % " ".join(cmd))
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    I.check(r.returncode == 0, "driver %s exited %d:\n%s\n%s", " ".join(cmd), r.returncode, out,
            err[-4000:])
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    I.check("RESULT" in lines, "no RESULT in: %s", out)
    code, msg = lines["RESULT"].split(" ", 1)
    return int(code), msg, lines, time.time() - t0


def expect(res, code, *needles):
    got, msg, lines, _ = res
    I.check(got == code, "want result %d, got %d: %s", code, got, msg)
    for n in needles:
        I.check(n in msg, "want %r in: %s", n, msg)
    return msg


def pb_string(field, s):
    b = s.encode() if isinstance(s, str) else s
    n, v = len(b), b""
    while True:
        v += bytes([(n & 0x7f) | (0x80 if n > 0x7f else 0)])
        n >>= 7
        if not n:
            break
    return bytes([field << 3 | 2]) + v + b


def body(args, tmp, procs):
    f = make_certs(tmp)
    fake = Fake(tmp, procs, f)
    tok = f("token")
    with open(tok, "w") as fp:
        fp.write(TOKEN + "\n")
    out = os.path.join(tmp, "out")
    os.mkdir(out)
    addr = "https://127.0.0.1:%d" % fake.port
    common = ["--addr", addr, "--root", f("tls.pem"), "--token-file", tok, "--id", ID]

    # ---- issue (IP SAN) ----
    now = time.time()
    res = drive(*common, "--cluster", "test-cluster", "--ttl", 3600, "--out", out)
    expect(res, 0)
    lines = res[2]
    I.check(lines.get("STORE") == "ok", "certificate store: %s", lines.get("STORE"))
    nb, na = (int(x) for x in lines["VALIDITY"].split())
    I.check(abs(na - (now + 3600)) < 15, "not_after %d, want ~now+3600 (%d)", na, now + 3600)
    I.check(nb <= now and now - nb < 120, "not_before %d vs now %d", nb, now)
    cert, chain, key, roots = (os.path.join(out, n) for n in
                               ("cert.pem", "chain.pem", "key.pem", "roots.pem"))
    v = openssl(tmp, "verify", "-CAfile", f("mesh.pem"), "-purpose", "sslclient", cert)
    I.check(": OK" in v, "openssl verify: %s", v)
    v = openssl(tmp, "verify", "-CAfile", roots, "-purpose", "sslserver", cert)
    I.check(": OK" in v, "openssl verify with the returned roots: %s", v)
    I.check(der(tmp, roots) == der(tmp, f("mesh.pem")) and pem_blocks(roots) == 1,
            "returned roots are not the mesh root")
    I.check(der(tmp, chain) == der(tmp, cert) and pem_blocks(chain) == 1,
            "chain_pem should be the leaf alone for a [leaf, root] answer")
    text = openssl(tmp, "x509", "-in", cert, "-noout", "-ext", "subjectAltName,basicConstraints")
    I.check("Subject Alternative Name: critical" in text and ("URI:" + ID) in text,
            "SAN: %s", text)
    I.check(text.count("URI:") == 1, "more than one URI: %s", text)
    pub_cert = openssl(tmp, "x509", "-in", cert, "-noout", "-pubkey")
    pub_key = openssl(tmp, "pkey", "-in", key, "-pubout")
    I.check(pub_cert == pub_key, "key does not match the certificate")
    I.check("EC" in openssl(tmp, "pkey", "-in", key, "-noout", "-text")[:200] or
            "ASN1 OID: prime256v1" in openssl(tmp, "pkey", "-in", key, "-noout", "-text"),
            "key is not P-256")
    recs = fake.ca_records()
    I.check(len(recs) == 1, "want 1 CA request, log has %d", len(recs))
    r = recs[-1]
    I.check(r["metadata"].get("authorization") == "Bearer " + TOKEN, "authorization: %s",
            r["metadata"])
    I.check(r["metadata"].get("clusterid") == "test-cluster", "clusterid: %s", r["metadata"])
    I.check(r["request_metadata"] == {"ImpersonatedIdentity": ID}, "metadata: %s",
            r["request_metadata"])
    I.check(r["identity"] == [ID] and r["san_critical"] is True, "CSR SAN: %s", r)
    I.check(r["subject"] == "", "CSR subject not empty: %r", r["subject"])
    I.check(r["validity"] == 3600 and r["csr_signature_ok"] is True, "CSR: %s", r)
    I.say("issued by name IP 127.0.0.1: %s .. %s, verified by openssl, headers and CSR as "
          "ztunnel's", nb, na)

    # ---- DNS name (SNI + DNS SAN), default cluster id, short TTL ----
    now = time.time()
    res = drive("--addr", "https://%s:%d" % (SVC, fake.port), "--name", SVC, "--root",
                f("tls.pem"), "--token-file", tok, "--id", ID, "--ttl", 120) \
        if _resolves(SVC) else \
        drive("--addr", addr, "--name", SVC, "--root", f("tls.pem"), "--token-file", tok,
              "--id", ID, "--ttl", 120)
    expect(res, 0)
    na = int(res[2]["VALIDITY"].split()[1])
    I.check(abs(na - (now + 120)) < 15, "not_after %d, want ~now+120", na)
    r = fake.ca_records()[-1]
    I.check(r["metadata"].get("clusterid") == "Kubernetes" and r["validity"] == 120,
            "default clusterid / ttl: %s", r)
    I.say("server name %s checked (SNI + DNS SAN), clusterid defaults to Kubernetes", SVC)

    # ---- the token: re-read at each call; wrong or missing ----
    with open(tok, "w") as fp:
        fp.write("not-the-token")
    expect(drive(*common), 16, "UNAUTHENTICATED", "authentication failure")
    I.check(fake.ca_records()[-1]["metadata"].get("authorization") == "Bearer not-the-token",
            "token not re-read")
    os.unlink(tok)
    expect(drive(*common), 16, "UNAUTHENTICATED")
    I.check("authorization" not in fake.ca_records()[-1]["metadata"],
            "authorization sent without a token file")
    with open(tok, "w") as fp:
        fp.write(TOKEN)
    expect(drive(*common), 0)
    I.say("wrong token and no token: UNAUTHENTICATED with istiod's message; token re-read")

    # ---- CA failure ----
    fake.set({"ca_fail": "CA is unhappy: signing backend down"})
    expect(drive(*common), 13, "INTERNAL", "CA is unhappy: signing backend down")
    fake.set({})
    I.say("ca_fail: INTERNAL with its message")

    # ---- TLS and connection failures ----
    n = len(fake.ca_records())
    msg = expect(drive("--addr", addr, "--root", f("other.pem"), "--token-file", tok,
                       "--id", ID), 14, "UNAVAILABLE", "TLS")
    I.say("wrong TLS root: %s", msg)
    msg = expect(drive("--addr", addr, "--name", "wrong.example.com", "--root", f("tls.pem"),
                       "--token-file", tok, "--id", ID), 14, "UNAVAILABLE")
    I.check(len(fake.ca_records()) == n, "a refused TLS peer got a request")
    I.say("wrong TLS name: %s", msg)
    msg = expect(drive("--addr", "https://127.0.0.1:%d" % I.free_port(), "--root", f("tls.pem"),
                       "--id", ID), 14, "UNAVAILABLE")
    I.say("connection refused: %s", msg)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        res = drive("--addr", "https://127.0.0.1:%d" % silent.getsockname()[1], "--root",
                    f("tls.pem"), "--id", ID, "--timeout", 700)
    finally:
        silent.close()
    expect(res, 4, "DEADLINE_EXCEEDED")
    I.check(res[3] < 5, "a 700 ms call took %.1f s", res[3])
    I.say("silent peer: %s (%.2f s)", res[1], res[3])

    # ---- answers that must be refused ----
    def refused(doc, *needles):
        fake.set(doc)
        m = expect(drive(*common, "--out", out), EBADMSG, "answer refused", *needles)
        fake.set({})
        return m

    I.say("wrong identity: %s", refused({"ca_wrong_identity": True}, "someone-else"))
    I.say("wrong key: %s", refused({"ca_wrong_key": True}, "public key"))
    with open(f("other.pem")) as fp:
        other = fp.read()
    with open(f("mesh.pem")) as fp:
        mesh = fp.read()
    I.say("foreign root: %s", refused({"ca_roots_pem": other}, "does not verify"))
    with open(f("istiod.pem")) as fp:
        leafish = fp.read()
    bad = {
        "garbage": (b"\xff\xff\xff\xff\xff", "not an IstioCertificateResponse"),
        "truncated": (pb_string(1, mesh)[:100], "not an IstioCertificateResponse"),
        "one element": (pb_string(1, leafish), "1 element"),
        "no element": (b"", "0 elements"),
        "not PEM": (pb_string(1, "hello") + pb_string(1, mesh), "cert_chain[0] is not PEM"),
        "empty root": (pb_string(1, leafish) + pb_string(1, ""), "cert_chain[1] is not PEM"),
        "CA as leaf": (pb_string(1, mesh) + pb_string(1, mesh), "leaf is a CA"),
        "no URI SAN": (pb_string(1, leafish) + pb_string(1, mesh), "leaf: "),
        "wrong field type": (b"\x08\x01" + pb_string(1, leafish), "not an IstioCertificateRes"),
    }
    for name, (raw, needle) in bad.items():
        m = refused({"ca_response_b64": base64.b64encode(raw).decode()}, needle)
        I.say("%s: %s", name, m)

    # over the 1 MiB bound: refused by the gRPC layer before decoding
    fake.set({"ca_response_b64": base64.b64encode(pb_string(1, "A" * (1100 << 10))).decode()})
    I.say("oversized answer: %s", expect(drive(*common), 8, "RESOURCE_EXHAUSTED"))
    fake.set({})

    # random damage to a well-formed answer: always refused, never a crash
    import random
    rnd = random.Random(4242)
    good = pb_string(1, leafish) + pb_string(1, "junk\n" + mesh) + pb_string(1, mesh)
    for i in range(30):
        raw = bytearray(good)
        for _ in range(rnd.randint(1, 8)):
            k = rnd.randrange(len(raw))
            raw[k] = rnd.randrange(256) if rnd.random() < 0.7 else raw[k] ^ 0x80
        if rnd.random() < 0.3:
            raw = raw[:rnd.randrange(len(raw))]
        fake.set({"ca_response_b64": base64.b64encode(bytes(raw)).decode()})
        expect(drive(*common), EBADMSG, "answer refused")
    fake.set({})
    I.say("30 damaged answers refused")

    # a token path that cannot be read: the call is not made
    n = len(fake.ca_records())
    msg = expect(drive("--addr", addr, "--root", f("tls.pem"), "--token-file", tmp, "--id", ID),
                 -21, "token")
    I.check(len(fake.ca_records()) == n, "a call was made without its token")
    I.say("unreadable token: %s", msg)

    # ---- two roots in the last element ----
    fake.set({"ca_roots_pem": other + mesh})
    expect(drive(*common, "--out", out), 0)
    fake.set({})
    I.check(pem_blocks(roots) == 2, "want both roots returned")
    I.say("two roots in the last element: both returned")


def _resolves(name):
    try:
        return socket.gethostbyname(name) == "127.0.0.1"
    except OSError:
        return False


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake-istiod", required=True)
    ap.add_argument("--proto-dir", required=True)
    OPTS, rest = ap.parse_known_args()
    if not os.path.exists(OPTS.fake_istiod):
        I.skip("%s is missing" % OPTS.fake_istiod)
    for mod in ("grpc", "grpc_tools", "cryptography"):
        try:
            __import__(mod)
        except ImportError:
            I.skip("python3 module %s is missing" % mod)
    sys.argv = [sys.argv[0]] + rest
    OPTS.driver = rest[rest.index("--driver") + 1] if "--driver" in rest else None
    I.main(body, timeout=170)
