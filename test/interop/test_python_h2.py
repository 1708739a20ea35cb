"""test_python_h2.py - a python3-h2 + ssl client (an HTTP/2 stack nobody here
wrote) against zt_h2c as the HBONE server (h2conn_driver server):

- TLS 1.3 with a client certificate, ALPN h2, no SNI: CONNECT 127.0.0.1:<echo>
  gets 200 and data round-trips (several tunnels on one connection, half-close
  both ways); forwarded/baggage/traceparent reach the server;
- GET gets 400; a malformed :authority gets 400; a CONNECT to a closed port
  gets 503;
- no client certificate, a certificate from another CA, an identity outside
  the trust domain, no ALPN h2, and TLS 1.2 are all refused.
"""

import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop as I  # noqa: E402

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
except ImportError:
    I.skip("python3-h2 is not installed (apt install python3-h2)")


class Client:
    """A blocking HTTP/2 client over TLS, enough for CONNECT tunnels."""

    def __init__(self, port, certs, who="cli", alpn=("h2",), tls12=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # no SNI, identity checked below
        ctx.verify_mode = ssl.CERT_REQUIRED
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(certs["ca"][0])
        if who:
            ctx.load_cert_chain(*certs[who])
        ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=None)
        self.sock.settimeout(10)
        cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                        header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.h2.initiate_connection()
        # a roomy window so the echo never stalls on our side
        self.h2.increment_flow_control_window(64 << 20)
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 8 << 20})
        self.flush()
        self.responses = {}
        self.data = {}
        self.ended = set()
        self.resets = {}
        self.closed = False

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, until, timeout=20):
        end = time.time() + timeout
        while not until():
            if time.time() > end:
                raise I.Fail("timed out waiting for the server")
            if self.closed:
                return
            try:
                d = self.sock.recv(65536)
            except (ssl.SSLError, ConnectionError, socket.timeout) as e:
                self.closed = True
                self.error = e
                return
            if not d:
                self.closed = True
                self.error = None
                return
            for ev in self.h2.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.responses[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data.setdefault(ev.stream_id, bytearray()).extend(ev.data)
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.resets[ev.stream_id] = ev.error_code
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.closed = True
                    self.error = ev
            self.flush()

    def request(self, headers, end_stream=False):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, headers, end_stream=end_stream)
        self.flush()
        return sid

    def connect(self, authority, extra=()):
        return self.request([(":method", "CONNECT"), (":authority", authority)] + list(extra))

    def send(self, sid, data, end=False):
        """Send all of data, honouring the peer's windows."""
        off = 0
        while off < len(data):
            win = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if win <= 0:
                before = self.h2.local_flow_control_window(sid)
                self.pump(lambda: self.h2.local_flow_control_window(sid) > before, timeout=20)
                if self.closed:
                    raise I.Fail("connection closed while sending")
                continue
            chunk = data[off:off + win]
            self.h2.send_data(sid, chunk)
            off += len(chunk)
            self.flush()
        if end:
            self.h2.end_stream(sid)
            self.flush()

    def status(self, sid):
        self.pump(lambda: sid in self.responses or sid in self.resets, timeout=10)
        r = self.responses.get(sid)
        return int(r[":status"]) if r else None

    def close(self):
        try:
            self.h2.close_connection()
            self.flush()
            self.sock.close()
        except OSError:
            pass


def refused(port, certs, **kw):
    """True when the server refuses: handshake error, or the connection dies
    before any response to a CONNECT (TLS 1.3 client auth fails after the
    client's Finished)."""
    try:
        c = Client(port, certs, **kw)
    except (ssl.SSLError, ConnectionError, socket.timeout) as e:
        return True, "handshake: %s" % e
    try:
        sid = c.connect("127.0.0.1:9")
        c.pump(lambda: sid in c.responses, timeout=10)
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return True, "after handshake: %s" % e
    if sid in c.responses:
        return False, "got a response: %s" % c.responses[sid]
    return c.closed, "closed: %r" % (getattr(c, "error", None),)


def body(args, tmp, procs):
    certs = I.make_certs(tmp)
    echo = I.echo_server()
    srvlog = os.path.join(tmp, "server.log")
    srv, port = I.spawn(procs, [args.driver, "server", "--cert", certs["srv"][0], "--key",
                                certs["srv"][1], "--roots", certs["ca"][0]], srvlog, ready="READY")
    port = int(port)

    # ---- the good path --------------------------------------------------------------
    c = Client(port, certs)
    I.check(c.sock.version() == "TLSv1.3", "TLS version %s", c.sock.version())
    I.check(c.sock.selected_alpn_protocol() == "h2", "ALPN %s", c.sock.selected_alpn_protocol())
    I.check(c.sock.cipher()[0] == "TLS_AES_256_GCM_SHA384", "cipher %s", c.sock.cipher())
    peer = c.sock.getpeercert()
    uris = [v for k, v in peer.get("subjectAltName", ()) if k == "URI"]
    I.check(uris == [I.spiffe("server")], "server SAN %s", uris)
    I.say("TLS: %s %s ALPN %s, server %s", c.sock.version(), c.sock.cipher()[0],
          c.sock.selected_alpn_protocol(), uris[0])
    auth = "127.0.0.1:%d" % echo.port
    extra = [("forwarded", 'for="10.0.0.1:4321"'), ("baggage", "k8s.cluster.name=Kubernetes"),
             ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")]
    sids = [c.connect(auth, extra) for _ in range(5)]
    for sid in sids:
        I.check(c.status(sid) == 200, "CONNECT stream %d: %s", sid, c.responses.get(sid))
    payloads = {sid: os.urandom((1 << 20) + sid * 977) for sid in sids}
    for sid in sids:
        c.send(sid, payloads[sid], end=True)
    c.pump(lambda: all(s in c.ended for s in sids), timeout=60)
    for sid in sids:
        got = bytes(c.data.get(sid, b""))
        I.check(got == payloads[sid], "stream %d: %d bytes back of %d", sid, len(got),
                len(payloads[sid]))
    I.say("5 tunnels: %d bytes each way, checked, END_STREAM both ways",
          sum(len(p) for p in payloads.values()))
    with open(srvlog) as f:
        log = f.read()
    I.check('forwarded=for="10.0.0.1:4321"' in log and "baggage=k8s.cluster.name=Kubernetes" in log
            and "traceparent=00-0af7651916cd43dd8448eb211c80319c" in log,
            "headers did not reach the server: %s", log[-1000:])

    # half-close: we FIN first, the echo keeps the other direction open until then
    sid = c.connect(auth)
    I.check(c.status(sid) == 200, "CONNECT for half-close")
    c.send(sid, b"ping" * 1000)
    c.pump(lambda: len(c.data.get(sid, b"")) >= 4000, timeout=10)
    I.check(sid not in c.ended, "server ended before we did")
    c.send(sid, b"", end=True)
    c.pump(lambda: sid in c.ended, timeout=10)
    I.check(bytes(c.data[sid]) == b"ping" * 1000, "half-close data")

    # ---- 400 / 503 ------------------------------------------------------------------
    sid = c.request([(":method", "GET"), (":scheme", "https"), (":path", "/"),
                     (":authority", auth)], end_stream=True)
    I.check(c.status(sid) == 400, "GET: %s", c.responses.get(sid))
    for bad in ("no-port-here", "127.0.0.1:99999", "127.0.0.1:+80", "::1:80"):
        sid = c.connect(bad)
        st = c.status(sid)
        I.check(st == 400, "authority %r: %s (reset %s)", bad, st, c.resets.get(sid))
    sid = c.connect("10.20.30.40:80")  # not this "pod": ztunnel answers 400
    I.check(c.status(sid) == 400, "foreign destination: %s", c.responses.get(sid))
    sid = c.connect("127.0.0.1:%d" % I.free_port())
    I.check(c.status(sid) == 503, "closed port: %s", c.responses.get(sid))
    I.say("GET -> 400, bad authorities -> 400, closed port -> 503")
    # a reset from the client reaches the server, the connection lives on
    sid = c.connect(auth)
    I.check(c.status(sid) == 200, "CONNECT before reset")
    c.send(sid, b"x" * 10000)
    c.h2.reset_stream(sid, 8)
    c.flush()
    sid = c.connect(auth)
    I.check(c.status(sid) == 200, "CONNECT after a reset")
    c.send(sid, b"after", end=True)
    c.pump(lambda: sid in c.ended, timeout=10)
    I.check(bytes(c.data[sid]) == b"after", "data after a reset")
    c.close()

    # ---- refusals -------------------------------------------------------------------
    for what, kw in (("no client certificate", {"who": None}),
                     ("client certificate from another CA", {"who": "bad"}),
                     ("identity outside the trust domain", {"who": "other"}),
                     ("no ALPN h2", {"alpn": ("http/1.1",)}),
                     ("TLS 1.2", {"tls12": True})):
        ok, why = refused(port, certs, **kw)
        I.check(ok, "%s was not refused: %s", what, why)
        I.say("refused: %-36s (%s)", what, why[:90])
    I.check(srv.poll() is None, "driver server died")
    with open(srvlog) as f:
        log = f.read()
    for needle in ("peer did not return a certificate", "certificate verify failed",
                   "outside the trust domain"):
        I.check(needle in log, "server log lacks %r", needle)


I.main(body)
