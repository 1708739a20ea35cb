"""test_grpc.py - engine/grpc (grpc_client driver) against the python3-grpcio
server, in h2c and TLS (throwaway CA, server certificate with
SAN DNS:istiod.istio-system.svc + IP:127.0.0.1), and against deliberately
broken HTTP/2 peers (python3-h2).

Checks: unary echo 0 B / 1 B / 100 KiB / 10 MiB byte-exact; a bidi stream of
many messages both ways, in order; metadata reaching the server; statuses and
percent-decoded messages from the server; a deadline; the receive size bound;
TLS with a name (SNI + DNS SAN) and with an IP (IP SAN); wrong root, wrong
name, TLS/h2c mismatches refused without a hang; connection refused; server
killed mid-stream; wrong content-type, missing grpc-status, HTTP 503, garbage
frames, an oversized length prefix.

The server is this script run with --serve (a separate process, so it can be
killed). The driver must exit 0 on every run (so a sanitizer report fails the
test).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop as I  # noqa: E402

SVC = "istiod.istio-system.svc"
ABORT_MSG = "denied: 100% nope, caf\u00e9 \u2713"


# ---- the server (run as a separate process) ----------------------------------------------
def serve(argv):
    import argparse
    from concurrent import futures

    import grpc

    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    a = ap.parse_args(argv)

    def echo(req, ctx):
        return req

    def meta(req, ctx):
        return "\n".join("%s=%s" % (k, v) for k, v in ctx.invocation_metadata()).encode()

    def abort(req, ctx):
        ctx.abort(grpc.StatusCode.PERMISSION_DENIED, ABORT_MSG)

    def big(req, ctx):  # 1 KiB of response per request byte
        return b"b" * (len(req) * 1024)

    def slow(req, ctx):
        time.sleep(5)
        return req

    def bidi(it, ctx):
        for m in it:
            yield m

    u = grpc.unary_unary_rpc_method_handler
    handlers = {
        "Echo": u(echo), "Meta": u(meta), "Abort": u(abort), "Big": u(big), "Slow": u(slow),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("zt.test.Test", handlers),))
    if a.tls:
        with open(a.tls[0], "rb") as f:
            cert = f.read()
        with open(a.tls[1], "rb") as f:
            key = f.read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # SIGTERM: graceful stop (GOAWAY, 1 s for calls in flight)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop,
                                                              args=(1,)).start())
    print("LISTENING %d" % port, flush=True)
    server.wait_for_termination()


# ---- certificates ----------------------------------------------------------------------------
def make_certs(d):
    def run(*cmd):
        r = subprocess.run(cmd, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        I.check(r.returncode == 0, "openssl %s: %s", cmd[1], r.stdout.decode(errors="replace"))

    def key(name):
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", name + ".key")

    for ca in ("ca", "ca2"):
        key(ca)
        run("openssl", "req", "-x509", "-new", "-key", ca + ".key", "-subj", "/O=" + ca,
            "-days", "2", "-out", ca + ".pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key("istiod")
    run("openssl", "req", "-new", "-key", "istiod.key", "-subj", "/O=istiod", "-out", "istiod.csr")
    with open(os.path.join(d, "istiod.ext"), "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n"
                "keyUsage=critical,digitalSignature\n"
                "basicConstraints=critical,CA:FALSE\n" % SVC)
    run("openssl", "x509", "-req", "-in", "istiod.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "istiod.ext", "-out", "istiod.pem")
    return {n: os.path.join(d, n) for n in ("ca.pem", "ca2.pem", "istiod.pem", "istiod.key")}


# ---- helpers ---------------------------------------------------------------------------------
def start_server(procs, tmp, tls=None, name="grpc-server"):
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--serve"]
    if tls:
        cmd += ["--tls", tls[0], tls[1]]
    p, port = I.spawn(procs, cmd, os.path.join(tmp, name + ".log"), ready="LISTENING", timeout=20)
    return p, int(port)


def drive(args, mode, addr, *extra, timeout=60):
    cmd = [args.driver, mode, "--addr", addr] + [str(x) for x in extra]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise I.Fail("driver hung: %s" % " ".join(cmd))
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    I.check(r.returncode == 0, "driver %s exited %d:\n%s\n%s", " ".join(cmd), r.returncode, out,
            err[-4000:])
    return out


def status_line(out):
    for line in out.splitlines():
        if line.startswith("STATUS "):
            return line
    raise I.Fail("no STATUS line in: %s" % out)


def expect_status(out, code, *needles):
    line = status_line(out)
    I.check(line.startswith("STATUS %d " % code), "want status %d, got: %s", code, out)
    for n in needles:
        I.check(n in line, "want %r in: %s", n, line)
    return line


# ---- deliberately broken HTTP/2 servers (python3-h2) ---------------------------------------
def bad_server(kind):
    import h2.config
    import h2.connection
    import h2.events

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(30)
    port = ls.getsockname()[1]

    def one(s):
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                 validate_outbound_headers=False))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        s.settimeout(20)
        while True:
            data = s.recv(65536)
            if not data:
                return
            for ev in c.receive_data(data):
                if not isinstance(ev, h2.events.RequestReceived):
                    continue
                sid = ev.stream_id
                if kind == "html":
                    c.send_headers(sid, [(":status", "200"), ("content-type", "text/html")])
                    c.send_data(sid, b"<html>nope</html>", end_stream=True)
                elif kind == "nostatus":
                    c.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    c.send_data(sid, b"\0\0\0\0\x01x", end_stream=True)
                elif kind == "http503":
                    c.send_headers(sid, [(":status", "503"), ("content-type", "text/plain")],
                                   end_stream=True)
                elif kind == "hugeprefix":
                    c.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    c.send_data(sid, b"\0\xff\xff\xff\xffxxxx")
                elif kind == "garbage":
                    s.sendall(c.data_to_send())
                    # a DATA frame on stream 0: a connection error
                    s.sendall(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd" + os.urandom(64))
            s.sendall(c.data_to_send())

    def loop():
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            try:
                one(s)
            except Exception:
                pass
            finally:
                s.close()

    threading.Thread(target=loop, daemon=True).start()
    return ls, port


# ---- the test ------------------------------------------------------------------------------
def common_checks(args, addr, extra, label):
    for n in (0, 1, 100 << 10, 10 << 20):
        out = drive(args, "unary", addr, "--size", n, *extra)
        expect_status(out, 0, "len=%d " % n, "echo=ok")
    I.say("%s: unary echo 0 B, 1 B, 100 KiB, 10 MiB byte-exact", label)

    md = ["--md", "authorization=Bearer tok-123", "--md", "clusterid=Kubernetes"]
    out = drive(args, "bidi", addr, "--count", 300, *(md + extra))
    expect_status(out, 0)
    I.check("RECEIVED 300/300 inorder=yes" in out and "HEADERS " in out, "bidi: %s", out)
    I.say("%s: bidi 300 messages each way (some 70 KiB), in order", label)
    out = drive(args, "bidi", addr, "--count", 20, "--free-in-cb", *extra)
    expect_status(out, 0)
    I.check("FREED in on_close" in out, "free in callback: %s", out)

    out = drive(args, "unary", addr, "--path", "/zt.test.Test/Meta", "--print", *(md + extra))
    expect_status(out, 0)
    I.check("authorization=Bearer tok-123" in out and "clusterid=Kubernetes" in out,
            "metadata did not arrive: %s", out)
    I.say("%s: metadata arrives (authorization, clusterid)", label)

    out = drive(args, "unary", addr, "--path", "/zt.test.Test/Abort", *extra)
    line = expect_status(out, 7, "PERMISSION_DENIED")
    I.check(line.endswith("msg=" + ABORT_MSG), "grpc-message not decoded: %r", line)
    out = drive(args, "unary", addr, "--path", "/zt.test.Test/Nope", *extra)
    expect_status(out, 12, "UNIMPLEMENTED")
    I.say("%s: PERMISSION_DENIED with its percent-decoded message; UNIMPLEMENTED", label)

    t0 = time.time()
    out = drive(args, "unary", addr, "--path", "/zt.test.Test/Slow", "--timeout", 500, *extra)
    expect_status(out, 4, "DEADLINE_EXCEEDED")
    I.check(time.time() - t0 < 4, "deadline not kept")
    out = drive(args, "unary", addr, "--path", "/zt.test.Test/Big", "--size", 2048,
                "--max", 1 << 20, *extra)
    expect_status(out, 8, "RESOURCE_EXHAUSTED", "larger than max")
    I.say("%s: deadline 500 ms -> DEADLINE_EXCEEDED; 2 MiB response over a 1 MiB bound -> "
          "RESOURCE_EXHAUSTED", label)


def body(args, tmp, procs):
    try:
        import grpc  # noqa: F401
    except ImportError:
        I.skip("python3-grpcio is not installed")
    try:
        import h2  # noqa: F401
        have_h2 = True
    except ImportError:
        have_h2 = False
    certs = make_certs(tmp)

    # h2c
    _, pport = start_server(procs, tmp, name="plain")
    common_checks(args, "http://127.0.0.1:%d" % pport, [], "h2c")

    # TLS: by name (SNI + DNS SAN) and by IP (IP SAN)
    _, tport = start_server(procs, tmp, tls=(certs["istiod.pem"], certs["istiod.key"]), name="tls")
    taddr = "https://127.0.0.1:%d" % tport
    common_checks(args, taddr, ["--root", certs["ca.pem"], "--name", SVC], "TLS by name")
    out = drive(args, "unary", taddr, "--size", 1000, "--root", certs["ca.pem"])
    expect_status(out, 0, "echo=ok")
    out = drive(args, "unary", "127.0.0.1:%d" % tport, "--size", 10, "--root", certs["ca.pem"],
                "--name", SVC)
    expect_status(out, 0, "echo=ok")
    I.say("TLS by IP SAN, and a scheme-less address (TLS by default): fine")

    # TLS refusals, none may hang or crash
    out = drive(args, "unary", taddr, "--root", certs["ca2.pem"], "--name", SVC, timeout=30)
    expect_status(out, 14, "TLS handshake", "certificate verification")
    I.say("wrong root: %s", status_line(out))
    out = drive(args, "unary", taddr, "--root", certs["ca.pem"], "--name", "wrong.example",
                timeout=30)
    expect_status(out, 14, "TLS handshake")
    I.say("wrong name: %s", status_line(out))
    out = drive(args, "unary", "https://[::1]:%d" % tport, "--root", certs["ca.pem"], timeout=30)
    I.check(status_line(out).startswith("STATUS 14 "), "::1: %s", out)
    out = drive(args, "unary", "https://127.0.0.1:%d" % pport, "--root", certs["ca.pem"],
                "--name", SVC, "--timeout", 5000, timeout=30)
    I.check(status_line(out).split()[1] in ("14", "4"), "TLS to h2c server: %s", out)
    out = drive(args, "unary", "http://127.0.0.1:%d" % tport, "--timeout", 5000, timeout=30)
    I.check(status_line(out).split()[1] in ("14", "4", "13"), "h2c to TLS server: %s", out)
    I.say("TLS client -> h2c server and h2c client -> TLS server: errors, no hang")
    out = drive(args, "unary", taddr, "--root", os.path.join(tmp, "missing.pem"), timeout=30)
    expect_status(out, 3, "cannot load root certificates")

    # connection refused
    out = drive(args, "unary", "http://127.0.0.1:%d" % I.free_port(), timeout=30)
    expect_status(out, 14, "refused")
    out = drive(args, "bidi", "http://127.0.0.1:%d" % I.free_port(), timeout=30)
    I.check("NEW -111" in out or ("CHANNEL fatal=1" in out and "refused" in out), "%s", out)
    I.say("connection refused: %s", status_line(drive(
        args, "unary", "http://127.0.0.1:%d" % I.free_port(), timeout=30)))

    # server killed mid-stream, h2c and TLS
    for label, tls, extra in (("h2c", None, []),
                              ("TLS", (certs["istiod.pem"], certs["istiod.key"]),
                               ["--root", certs["ca.pem"], "--name", SVC]),
                              ("h2c, channel freed in on_close", None, ["--free-in-cb"])):
        sp, port = start_server(procs, tmp, tls=tls, name="victim-" + label)
        scheme = "https" if tls else "http"
        cmd = [args.driver, "hold", "--addr", "%s://127.0.0.1:%d" % (scheme, port),
               "--timeout", "20000"] + extra
        d = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        got = b""
        end = time.time() + 15
        while b"GOT 1" not in got and time.time() < end:
            line = d.stdout.readline()
            if not line:
                break
            got += line
        I.check(b"GOT 1" in got, "hold: no echo before the kill: %s", got)
        os.kill(sp.pid, signal.SIGKILL)
        sp.wait(5)
        try:
            rest, err = d.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            d.kill()
            raise I.Fail("%s: driver did not notice the server's death" % label)
        out = (got + rest).decode(errors="replace")
        I.check(d.returncode == 0, "hold exited %d: %s %s", d.returncode, out,
                err.decode(errors="replace")[-3000:])
        I.check("CHANNEL fatal=1" in out, "%s: no channel error: %s", label, out)
        expect_status(out, 14, "UNAVAILABLE")
        I.say("%s server killed mid-stream: %s", label,
              [x for x in out.splitlines() if x.startswith("CHANNEL")][0])

    # graceful server stop while a stream is open: GOAWAY (not fatal), then
    # the stream ends and the channel closes
    sp, port = start_server(procs, tmp, name="goaway")
    d = subprocess.Popen([args.driver, "hold", "--addr", "http://127.0.0.1:%d" % port,
                          "--timeout", "20000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = b""
    end = time.time() + 15
    while b"GOT 1" not in got and time.time() < end:
        line = d.stdout.readline()
        if not line:
            break
        got += line
    I.check(b"GOT 1" in got, "hold: no echo before the stop: %s", got)
    sp.terminate()
    try:
        rest, err = d.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        d.kill()
        raise I.Fail("driver did not notice the graceful stop")
    out = (got + rest).decode(errors="replace")
    I.check(d.returncode == 0, "hold exited %d: %s %s", d.returncode, out,
            err.decode(errors="replace")[-3000:])
    I.check("CHANNEL fatal=0 err=-108 msg=GOAWAY" in out and "CHANNEL fatal=1" in out,
            "graceful stop: %s", out)
    I.check(not status_line(out).startswith("STATUS 0 "), "stream OK after stop: %s", out)
    I.say("graceful server stop: %s; %s", [x for x in out.splitlines() if "fatal=0" in x][0],
          status_line(out))

    # a peer that accepts and says nothing: PING timeout (h2c), TLS handshake timeout
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    sport = silent.getsockname()[1]
    try:
        t0 = time.time()
        out = drive(args, "bidi", "http://127.0.0.1:%d" % sport, "--keepalive", 200,
                    "--ping-timeout", 300, "--timeout", 10000, timeout=30)
        I.check("CHANNEL fatal=1 err=-110" in out and "PING" in out, "ping timeout: %s", out)
        expect_status(out, 14, "PING")
        I.check(time.time() - t0 < 5, "PING timeout took too long")
        out = drive(args, "unary", "https://127.0.0.1:%d" % sport, "--root", certs["ca.pem"],
                    "--timeout", 800, timeout=30)
        expect_status(out, 4, "connecting")
        out = drive(args, "bidi", "https://127.0.0.1:%d" % sport, "--root", certs["ca.pem"],
                    "--connect-timeout", 500, timeout=30)
        I.check("CHANNEL fatal=1 err=-110" in out and "TLS handshake" in out, "%s", out)
    finally:
        silent.close()
    I.say("silent peer: PING timeout, unary deadline while connecting, TLS handshake timeout")

    # broken peers
    if not have_h2:
        I.say("python3-h2 missing: broken-peer cases skipped")
        return
    cases = [("html", 13, "content-type"), ("nostatus", 13, "without grpc-status"),
             ("http503", 14, "HTTP status 503"), ("hugeprefix", 8, "larger than max"),
             ("garbage", 14, "")]
    for kind, code, needle in cases:
        ls, port = bad_server(kind)
        try:
            out = drive(args, "unary", "http://127.0.0.1:%d" % port, "--size", 3,
                        "--timeout", 10000, timeout=30)
        finally:
            ls.close()
        expect_status(out, code, needle)
        I.say("broken peer %s: %s", kind, status_line(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[1:])
    else:
        I.main(body, timeout=220)
