"""test_self.py - h2conn_driver client -> h2conn_driver server over real
sockets on 127.0.0.1 (both sides zt_h2c), then to an echo server: many tunnels
on one connection, data checked end to end; a wrong expected identity and a
client certificate from another CA are refused."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop as I  # noqa: E402


def body(args, tmp, procs):
    certs = I.make_certs(tmp)
    echo = I.echo_server()
    srv, port = I.spawn(procs, [args.driver, "server", "--cert", certs["srv"][0], "--key",
                                certs["srv"][1], "--roots", certs["ca"][0]],
                        os.path.join(tmp, "server.log"), ready="READY")
    port = int(port)
    log = os.path.join(tmp, "client.log")
    auth = "127.0.0.1:%d" % echo.port

    t = time.time()
    rc, out, err = I.run_client(args.driver, certs, port, auth, I.spiffe("server"), streams=32,
                                nbytes=4 << 20, logpath=log)
    dt = time.time() - t
    I.check(rc == 0, "32 tunnels x 4 MiB failed: %s %s", out, err[-2000:])
    I.say("32 tunnels x 4 MiB echoed in %.2f s (%.0f MB/s each way)", dt, 32 * 4 / dt)
    I.check("TLS13-AES256-GCM-SHA384" in err, "cipher not AES-256-GCM: %s", err[-500:])

    rc, out, err = I.run_client(args.driver, certs, port, auth, I.spiffe("server"), streams=1,
                                nbytes=64 << 20, logpath=log)
    I.check(rc == 0, "one 64 MiB tunnel failed: %s %s", out, err[-2000:])

    rc, out, err = I.run_client(args.driver, certs, port, auth, I.spiffe("somebody-else"),
                                logpath=log, timeout=10)
    I.check(rc != 0 and "identity mismatch" in err, "wrong server identity accepted: %s", err)

    rc, out, err = I.run_client(args.driver, certs, port, auth, None, who="bad", logpath=log,
                                timeout=10)
    I.check(rc != 0, "client certificate from another CA accepted: %s", err)

    rc, out, err = I.run_client(args.driver, certs, port, auth, None, who="other", logpath=log,
                                timeout=10)
    I.check(rc != 0, "client identity outside the trust domain accepted: %s", err)

    # upstream refused: 503
    rc, out, err = I.run_client(args.driver, certs, port, "127.0.0.1:%d" % I.free_port(),
                                None, logpath=log, timeout=10)
    I.check(rc != 0 and "refused: 503" in err, "closed port did not give 503: %s", err)
    I.check(srv.poll() is None, "driver server died")


I.main(body)
