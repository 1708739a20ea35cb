"""test_nghttpx.py - zt_h2c as the HBONE client (h2conn_driver client) against
nghttpx in HTTP/2 proxy mode with client-certificate verification (TLS 1.3,
ALPN h2): CONNECT tunnels through nghttpx -> an HTTP/1 CONNECT terminator (its
backend) -> an echo server, data checked end to end; our client refuses
nghttpx when it is not the identity it expects; nghttpx refuses a client
certificate from another CA.

nghttpx 1.52 quirk: it does not pass the client's END_STREAM on a CONNECT
tunnel to its backend (nghttp2/nghttp2#2868), so the echo closes after echoing
the expected byte count and its FIN comes back to us as END_STREAM.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop as I  # noqa: E402

NGHTTPX = "/usr/sbin/nghttpx"


def body(args, tmp, procs):
    I.need(NGHTTPX)
    certs = I.make_certs(tmp)
    streams, nbytes = 8, 4 << 20
    echo = I.echo_server(close_after=nbytes)
    term = I.connect_terminator()
    port = I.free_port()
    ngx_log = os.path.join(tmp, "nghttpx.log")
    cmd = [NGHTTPX, "--conf=/dev/null", "--http2-proxy",
           "--frontend=127.0.0.1,%d" % port, "--backend=127.0.0.1,%d" % term.port,
           "--verify-client", "--verify-client-cacert=" + certs["ca"][0],
           "--tls-min-proto-version=TLSv1.3", "--tls-max-proto-version=TLSv1.3",
           "--workers=1", "--no-ocsp", "--backend-connections-per-host=64",
           "--frontend-http2-window-size=4194304",
           "--frontend-http2-connection-window-size=16777216",
           "--errorlog-file=" + ngx_log, "--log-level=INFO",
           certs["nghttpx"][1], certs["nghttpx"][0]]
    I.spawn(procs, cmd, os.path.join(tmp, "nghttpx.stderr"))
    I.wait_port(port)
    log = os.path.join(tmp, "client.log")
    auth = "127.0.0.1:%d" % echo.port

    rc, out, err = I.run_client(args.driver, certs, port, auth, I.spiffe("nghttpx"),
                                streams=streams, nbytes=nbytes, logpath=log)
    I.check(rc == 0, "tunnels through nghttpx failed: %s %s", out, err[-3000:])
    I.check("RESULT %d/%d" % (streams, streams) in out, "result: %s", out)
    I.say("%d tunnels x %d MiB through nghttpx: echoed and checked", streams, nbytes >> 20)
    with open(ngx_log) as f:
        nl = f.read()
    I.check("protocol=TLSv1.3" in nl and "next protocol: h2" in nl,
            "nghttpx did not see TLS 1.3 + h2: %s", nl[-2000:])
    I.check("Forwarded: for=" in nl and "Traceparent: 00-" in nl and "Baggage: k8s." in nl,
            "HBONE headers did not reach nghttpx's backend request")

    # nghttpx is not who we expect: refused by our side after the handshake
    rc, out, err = I.run_client(args.driver, certs, port, auth, I.spiffe("server"),
                                logpath=log, timeout=10)
    I.check(rc != 0 and "identity mismatch" in err, "wrong identity accepted: %s", err)
    # our certificate from another CA: nghttpx refuses it
    rc, out, err = I.run_client(args.driver, certs, port, auth, None, who="bad", logpath=log,
                                timeout=10)
    I.check(rc != 0 and "connection closed: -111" in err,
            "nghttpx accepted a client from another CA: %s", err)
    I.say("refused: wrong server identity (by us), client certificate from another CA (by nghttpx)")
    # a tunnel to a closed port: nghttpx answers with an error status
    rc, out, err = I.run_client(args.driver, certs, port, "127.0.0.1:%d" % I.free_port(),
                                I.spiffe("nghttpx"), logpath=log, timeout=10)
    I.check(rc != 0 and "refused: 5" in err, "closed port: %s", err)


I.main(body)
