"""interop.py - what the interop tests share: arguments, skips, throwaway
certificates from the openssl CLI, an echo server, an HTTP/1 CONNECT
terminator, and the h2conn_driver process.

Everything listens on 127.0.0.1 only and every wait is bounded.
Exit codes: 0 pass, 1 fail, 77 skipped (a tool is missing).
"""

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
TD = "cluster.local"


def spiffe(sa, td=TD, ns="default"):
    return "spiffe://%s/ns/%s/sa/%s" % (td, ns, sa)


class Fail(Exception):
    pass


def check(cond, msg, *args):
    if not cond:
        raise Fail(msg % args if args else msg)


def say(msg, *args):
    print(("%s  " % time.strftime("%H:%M:%S")) + (msg % args if args else msg), flush=True)


def skip(msg):
    print("SKIP: %s" % msg, flush=True)
    sys.exit(SKIP)


def need(tool):
    if not shutil.which(tool) and not os.path.exists(tool):
        skip("%s is not installed" % tool)


def main(body, timeout=150):
    """Parse --driver, make a temp dir, run body(args, tmpdir); exit 0/1/77."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    need("openssl")
    if not os.path.exists(args.driver):
        skip("driver not built: %s" % args.driver)

    def on_alarm(*_):
        print("FAIL: test took longer than %d s" % timeout, flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    tmp = tempfile.mkdtemp(prefix="zt-interop-")
    procs = []
    try:
        body(args, tmp, procs)
        rc = 0
    except Fail as e:
        print("FAIL: %s" % e, flush=True)
        rc = 1
    finally:
        for p in procs:
            stop(p)
            # our own processes exit 0 on SIGTERM (after freeing everything,
            # so a sanitizer build reports leaks and errors here)
            if rc == 0 and getattr(p, "must_exit_clean", False) and p.returncode != 0:
                print("FAIL: %s exited %s after SIGTERM (see %s)" % (p.args[0], p.returncode,
                                                                   p.logpath), flush=True)
                rc = 1
        if rc == 0:
            print("PASS", flush=True)
        for p in procs:
            if getattr(p, "logpath", None) and rc:
                try:
                    with open(p.logpath) as f:
                        print("---- %s ----\n%s" % (p.logpath, f.read()[-6000:]), flush=True)
                except OSError:
                    pass
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s" % tmp)
    sys.exit(rc)


# ---- certificates ---------------------------------------------------------------------------
def make_certs(d):
    """CA 'ca' and an untrusted 'ca2' (P-256), and leaves:
    srv, cli (ca), nghttpx (ca), bad (ca2, client identity), other (ca, identity
    in another trust domain). Files <name>.pem / <name>.key in d."""

    def run(*cmd):
        r = subprocess.run(cmd, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        check(r.returncode == 0, "openssl %s: %s", cmd[1], r.stdout.decode(errors="replace"))

    def key(name):
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", name + ".key")

    def ca(name):
        key(name)
        run("openssl", "req", "-x509", "-new", "-key", name + ".key", "-subj", "/O=" + name,
            "-days", "2", "-out", name + ".pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, issuer, uri):
        key(name)
        run("openssl", "req", "-new", "-key", name + ".key", "-subj", "/O=" + TD, "-out", name + ".csr")
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=critical,URI:%s\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "basicConstraints=critical,CA:FALSE\n" % uri)
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", issuer + ".pem",
            "-CAkey", issuer + ".key", "-CAcreateserial", "-days", "2",
            "-extfile", name + ".ext", "-out", name + ".pem")

    ca("ca")
    ca("ca2")
    leaf("srv", "ca", spiffe("server"))
    leaf("cli", "ca", spiffe("client"))
    leaf("nghttpx", "ca", spiffe("nghttpx"))
    leaf("bad", "ca2", spiffe("client"))
    leaf("other", "ca", spiffe("client", td="evil.example"))
    return {n: (os.path.join(d, n + ".pem"), os.path.join(d, n + ".key"))
            for n in ("ca", "ca2", "srv", "cli", "nghttpx", "bad", "other")}


# ---- helpers: echo server, CONNECT terminator ----------------------------------------------
def _pump(a, b):
    """Copy a -> b until EOF, then half-close b. Errors end both."""
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Listener:
    def __init__(self, handler):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.count = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c)
        finally:
            c.close()


def echo_server(close_after=None):
    """Echo everything; FIN after the peer's FIN, or once close_after bytes
    were echoed (for peers that do not pass a FIN on: nghttpx)."""

    def h(c):
        n = 0
        try:
            while close_after is None or n < close_after:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
                n += len(d)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):  # drain until the peer closes too
                pass
        except OSError:
            pass

    return Listener(h)


def connect_terminator():
    """An HTTP/1.1 proxy that only knows CONNECT to 127.0.0.1 (nghttpx's backend)."""

    def h(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(4096)
            if not d:
                return
            buf += d
            if len(buf) > 65536:
                return
        head, rest = buf.split(b"\r\n\r\n", 1)
        line = head.split(b"\r\n")[0].decode(errors="replace").split()
        if len(line) < 2 or line[0] != "CONNECT" or not line[1].startswith("127.0.0.1:"):
            c.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            return
        try:
            up = socket.create_connection(("127.0.0.1", int(line[1].split(":")[1])), timeout=5)
            up.settimeout(None)
        except OSError:
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
            return
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            up.sendall(rest)
        t = threading.Thread(target=_pump, args=(up, c), daemon=True)
        t.start()
        _pump(c, up)
        t.join(60)
        up.close()

    return Listener(h)


# ---- processes -------------------------------------------------------------------------------
def spawn(procs, cmd, logpath, ready=None, timeout=10):
    """Start cmd with stderr to logpath. With ready='READY', wait for that line
    on stdout and return (proc, rest-of-line)."""
    log = open(logpath, "w")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    p.logpath = logpath
    p.must_exit_clean = ready == "READY"  # the driver
    procs.append(p)
    if not ready:
        return p, None
    end = time.time() + timeout
    line = b""
    while time.time() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            ch = p.stdout.read1(1) if hasattr(p.stdout, "read1") else p.stdout.read(1)
            if not ch:
                break
            line += ch
            if ch == b"\n":
                s = line.decode().strip()
                if s.startswith(ready):
                    return p, s[len(ready):].strip()
                line = b""
        if p.poll() is not None:
            break
    raise Fail("%s did not become ready (see %s)" % (cmd[0], logpath))


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Fail("nothing listens on 127.0.0.1:%d" % port)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def run_client(driver, certs, peer_port, authority, expect_id=None, streams=1, nbytes=1 << 20,
               who="cli", roots="ca", timeout=60, logpath=None):
    """Run the driver as a client; returns (exit code, stdout, stderr)."""
    cert, key = certs[who]
    cmd = [driver, "client", "--peer", "127.0.0.1:%d" % peer_port, "--authority", authority,
           "--cert", cert, "--key", key, "--roots", certs[roots][0], "--streams", str(streams),
           "--bytes", str(nbytes), "--timeout", str(timeout)]
    if expect_id:
        cmd += ["--expect-id", expect_id]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 15)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if logpath:
        with open(logpath, "a") as f:
            f.write("$ %s\n%s%s\n" % (" ".join(cmd), out, err))
    return r.returncode, out, err
