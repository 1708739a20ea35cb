#!/usr/bin/python3
"""(h) zring's logs on real connections.
Text (ztunnel's format): `<RFC3339 us Z>\\t<level>\\t<target>\\t<message>\\t<k=v ...>`;
every line of zring's output parses; access lines (target access, "connection
complete") carry src.addr, src.workload, src.namespace, dst.addr, dst.service,
dst.workload, dst.namespace, direction, bytes_sent, bytes_recv, duration in ztunnel's
order, addresses and numbers bare, strings quoted, duration "<N>ms"; values checked
for a service VIP, a workload IP and an unknown (passthrough) destination.
JSON (--log-json, and LOG_FORMAT=json): every line is a JSON object starting with
level, time, scope, message, then the dotted fields. RUST_LOG=info,access=warn hides
the access lines of successful connections."""
import datetime
import json
import re

import ztlib
from ztlib import (CLIENT_IP, EP_A_IP, EP_C_IP, Mesh, Topology, check, say)

ORDER = ["src.addr", "src.workload", "src.namespace", "src.identity", "dst.addr",
         "dst.hbone_addr", "dst.service", "dst.workload", "dst.namespace", "dst.identity",
         "direction", "bytes_sent", "bytes_recv", "duration", "error"]
QUOTED = {"src.workload", "src.namespace", "src.identity", "dst.service", "dst.workload",
          "dst.namespace", "dst.identity", "direction", "duration", "error"}
BARE = {"src.addr", "dst.addr", "dst.hbone_addr", "bytes_sent", "bytes_recv"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def hdr(op, seed, n, arg=0):
    return len("ZTD1 %s %d %d %d\n" % (op, seed, n, arg))


def traffic(m, seed0):
    """Three connections; returns the expected access-log facts for each, in order."""
    exp = []
    rc, res, _ = m.run("up", 1000, seed=seed0)
    exp.append({"dst.service": "echo.integ.svc.cluster.local", "dst.workload": res[0]["server"],
                "dst.namespace": "integ", "bytes_sent": 1000 + hdr("up", seed0, 1000),
                "dst.port": 8080, "dst.ip": {"ep-a": EP_A_IP, "ep-b": ztlib.EP_B_IP}[
                    res[0]["server"]], "min_ms": 0})
    rc, res, _ = ztlib.ztdata_client(m.ctx, m.client, "%s:8080" % EP_A_IP, "down", 1 << 20,
                                     seed=seed0 + 1, arg=2 << 20)  # paced: ~500 ms
    exp.append({"dst.workload": "ep-a", "dst.namespace": "integ", "dst.ip": EP_A_IP,
                "dst.port": 8080, "bytes_sent": hdr("down", seed0 + 1, 1 << 20, 2 << 20),
                "min_ms": 400})
    rc, res, _ = ztlib.ztdata_client(m.ctx, m.client, "%s:8080" % EP_C_IP, "hello",
                                     seed=seed0 + 2)
    exp.append({"dst.ip": EP_C_IP, "dst.port": 8080, "bytes_sent": hdr("hello", seed0 + 2, 0),
                "min_ms": 0})
    return exp


def check_access(rec_fields, kinds, exp, raw):
    f = rec_fields
    check(f.get("src.addr", "").rsplit(":", 1)[0] == CLIENT_IP, "src.addr: %s", raw)
    check(f.get("src.workload") == "client" and f.get("src.namespace") == "integ",
          "src workload/namespace: %s", raw)
    check(f.get("dst.addr") == "%s:%d" % (exp["dst.ip"], exp["dst.port"]), "dst.addr: %s", raw)
    for k in ("dst.service", "dst.workload", "dst.namespace"):
        check(f.get(k) == exp.get(k), "%s is %r, expected %r: %s", k, f.get(k), exp.get(k), raw)
    check(f.get("direction") == "outbound", "direction: %s", raw)
    check(int(f.get("bytes_sent")) == exp["bytes_sent"], "bytes_sent %s, expected %d: %s",
          f.get("bytes_sent"), exp["bytes_sent"], raw)
    check(int(f.get("bytes_recv")) > 0, "bytes_recv: %s", raw)
    d = re.fullmatch(r"(\d+)ms", str(f.get("duration")))
    check(d, "duration is not <N>ms: %s", raw)
    check(exp["min_ms"] <= int(d.group(1)) <= 5000, "duration %s, expected >= %dms: %s",
          f.get("duration"), exp["min_ms"], raw)
    keys = list(f)
    check(keys == [k for k in ORDER if k in f], "field order %s, ztunnel's is %s: %s", keys,
          [k for k in ORDER if k in f], raw)
    if kinds:
        for k in keys:
            if k in QUOTED:
                check(kinds[k] == "s", "%s should be quoted: %s", k, raw)
            if k in BARE:
                check(kinds[k] == "r", "%s should be bare: %s", k, raw)
    else:  # JSON: numbers are numbers, the rest strings
        for k in keys:
            want = int if k in ("bytes_sent", "bytes_recv") else str
            check(type(f[k]) is want, "%s should be a JSON %s: %s", k, want.__name__, raw)


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        m = Mesh(ctx, t, with_c=True)  # ep-c runs a server but is not in the config

        # --- text
        exp = traffic(m, 10)
        ztlib.wait_until(lambda: len(ztlib.access_records(m.zring)) >= 3, 5, "3 access lines")
        now = datetime.datetime.now(datetime.timezone.utc)
        for line in m.zring.lines():
            r = ztlib.parse_text_line(line)
            check(r is not None, "not a ztunnel text log line: %r", line)
            check(r["level"] in ("error", "warn", "info", "debug", "trace"), "level: %r", line)
            check("unparsed" not in r, "fields do not parse as k=v: %r", line)
            ts = datetime.datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc)
            check(abs((now - ts).total_seconds()) < 120, "timestamp not UTC now: %r", line)
        recs = ztlib.access_records(m.zring)
        check(len(recs) == 3, "%d access lines for 3 connections", len(recs))
        for rec, e in zip(recs, exp):
            check(rec["level"] == "info", "level of a clean connection: %s", rec["raw"])
            check_access(rec["fields"], rec["kinds"], e, rec["raw"])
            say("text ok: %s", rec["raw"])
        m.zring.stop()

        # --- JSON, by flag and by env
        for label, args, env in (("json-flag", ["--log-json"], None),
                                 ("json-env", [], {"LOG_FORMAT": "json"})):
            z = ztlib.start_zring(ctx, m.client, m.config, label="zring-" + label, args=args,
                                  env=env)
            m.zring = z
            exp = traffic(m, 20)
            ztlib.wait_until(lambda: len([r for r in ztlib.json_records(z)
                                          if r.get("scope") == "access"]) >= 3, 5,
                             "3 JSON access lines")
            for line in z.lines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise ztlib.Fail("%s: not a JSON line: %r" % (label, line))
                check(list(obj)[:4] == ["level", "time", "scope", "message"],
                      "%s: keys start %s: %s", label, list(obj)[:4], line)
                check(TS.match(obj["time"]), "%s: time %r", label, obj["time"])
            recs = [r for r in ztlib.json_records(z) if r.get("scope") == "access"]
            for rec, e in zip(recs, exp):
                check(rec["level"] == "info" and rec["message"] == "connection complete",
                      "%s: %s", label, rec)
                fields = {k: v for k, v in rec.items()
                          if k not in ("level", "time", "scope", "message")}
                check_access(fields, None, e, json.dumps(rec))
                say("%s ok: %s", label, json.dumps(rec))
            z.stop()

        # --- RUST_LOG filter
        z = ztlib.start_zring(ctx, m.client, m.config, label="zring-filter",
                              env={"RUST_LOG": "info,access=warn"})
        m.zring = z
        traffic(m, 30)
        rc, res, _ = m.run("hello", count=5, seed=40)
        import time
        time.sleep(0.5)
        check(not ztlib.access_records(z), "RUST_LOG=info,access=warn still logs access lines: %s",
              [r["raw"] for r in ztlib.access_records(z)][:2])
        check(any("\tinfo\t" in l for l in z.lines()), "RUST_LOG=info,...: no info lines at all")
        say("RUST_LOG=info,access=warn: no access lines for 8 clean connections")


if __name__ == "__main__":
    ztlib.main("logs", body)
