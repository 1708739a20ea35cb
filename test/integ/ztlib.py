"""ztlib.py - what zring's integration tests share: arguments, skips, the stream,
zring processes, log parsing, config files and the standard mesh.

Each test_*.py is one meson test (suite 'integ'):
    test_x.py --zring PATH --ztdata PATH [--logdir DIR] [--keep]
exit 0 pass, 1 fail, 77 skipped (not root, a tool missing, zring not built).
"""

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402
from netns import Error, Topology  # noqa: E402,F401

SKIP = 77

# ---- the stream (same as ztdata.c) ------------------------------------------------------
_M = (1 << 64) - 1


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & _M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & _M
    return z ^ (z >> 31)


def stream(seed, off, n):
    """Bytes [off, off+n) of stream(seed)."""
    first, last = off // 8, (off + n + 7) // 8
    words = b"".join(_mix((seed + (k + 1) * 0x9e3779b97f4a7c15) & _M).to_bytes(8, "little")
                     for k in range(first, last))
    s = off - first * 8
    return words[s:s + n]


# ---- running a test ------------------------------------------------------------------------
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


class Ctx:
    """Arguments and paths of one test run."""

    def __init__(self, name, args):
        self.name = name
        self.zring = args.zring
        self.ztdata = args.ztdata
        self.keep = args.keep
        base = args.logdir or os.path.join(tempfile.gettempdir(), "zring-integ")
        self.logdir = os.path.join(base, name)
        os.makedirs(self.logdir, exist_ok=True)
        for f in os.listdir(self.logdir):  # logs of the previous run
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.logdir, f))

    def path(self, name):
        return os.path.join(self.logdir, name)


def main(name, body, tools=()):
    """Parse arguments, skip if the machine cannot run it, run body(ctx), report."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--zring", default=os.environ.get("ZRING", ""))
    ap.add_argument("--ztdata", default=os.environ.get("ZTDATA", ""))
    ap.add_argument("--logdir", default=os.environ.get("ZRING_INTEG_LOGDIR", ""))
    ap.add_argument("--keep", action="store_true", help="keep logs of passing runs too")
    args = ap.parse_args()
    # meson passes paths relative to the build dir; processes run from elsewhere too
    args.zring = os.path.abspath(args.zring) if args.zring else ""
    args.ztdata = os.path.abspath(args.ztdata) if args.ztdata else ""
    if not args.zring or not os.access(args.zring, os.X_OK):
        skip("zring binary not built (%s); build it with ninja -C build" % (args.zring or
                                                                               "no path given"))
    if not args.ztdata or not os.access(args.ztdata, os.X_OK):
        skip("ztdata helper not built (%s)" % (args.ztdata or "no path given"))
    why = netns.preflight(tools)
    if why:
        skip(why)
    Topology.cleanup_stale()
    ctx = Ctx(name, args)
    say("%s: logs in %s", name, ctx.logdir)
    t0 = time.monotonic()
    try:
        body(ctx)
    except Fail as e:
        say("FAIL %s: %s", name, e)
        say("logs: %s", ctx.logdir)
        sys.exit(1)
    except Error as e:
        say("FAIL %s (harness/process): %s", name, e)
        say("logs: %s", ctx.logdir)
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        say("FAIL %s: unexpected exception; logs: %s", name, ctx.logdir)
        sys.exit(1)
    reports = sanitizer_reports(ctx.logdir) + netns.CRASHES
    if reports:
        for r in reports:
            say("FAIL %s: %s", name, r)
        say("logs: %s", ctx.logdir)
        sys.exit(1)
    say("PASS %s (%.1fs)", name, time.monotonic() - t0)
    sys.exit(0)


_SANITIZER = re.compile(r"ERROR: (Address|Leak|Memory)Sanitizer|WARNING: ThreadSanitizer|"
                        r"runtime error: ")


def zring_defaults(zring):
    """zring's option defaults as its --help states them ("--conn-buf": 2097152, ...),
    so tests bound memory by the binary's own numbers, not copies of them."""
    out = subprocess.run([zring, "--help"], capture_output=True, text=True).stdout
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\s+(--[\w-]+) .*\(default (\d+)\)", out, re.M)}


def sanitizer_reports(logdir):
    """'sanitizer report in file: first report line' for every process log in logdir with one
    (a zring built with ASan/UBSan reports there, also while it shuts down, after the
    test's own checks)."""
    out = []
    for f in sorted(os.listdir(logdir)):
        path = os.path.join(logdir, f)
        if not f.endswith(".log") or not os.path.isfile(path):
            continue
        with open(path, "rb") as fh:
            for line in fh.read().decode("utf-8", "replace").splitlines():
                if _SANITIZER.search(line):
                    out.append("sanitizer report in %s: %s" % (f, line.strip()[:300]))
                    break
    return out


# ---- zring's logs -------------------------------------------------------------------------
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_KV = re.compile(r'([A-Za-z0-9_.]+)=("(?:[^"\\]|\\.)*"|[^ ]*)')


def parse_text_line(line):
    """A ztunnel text log line -> dict(time, level, target, message, fields, raw) or None.
    Field values keep their quotes' meaning: quoted -> ('s', value), bare -> ('r', value)."""
    parts = line.split("\t", 4)
    if len(parts) < 4 or not _TS.match(parts[0]):
        return None
    rec = {"time": parts[0], "level": parts[1], "target": parts[2], "message": parts[3],
           "fields": {}, "kinds": {}, "raw": line}
    if len(parts) == 5:
        rest = parts[4]
        pos = 0
        while pos < len(rest):
            m = _KV.match(rest, pos)
            if not m:
                rec["unparsed"] = rest[pos:]
                break
            k, v = m.group(1), m.group(2)
            if v.startswith('"'):
                rec["fields"][k] = json.loads(v) if _is_json_str(v) else v[1:-1]
                rec["kinds"][k] = "s"
            else:
                rec["fields"][k] = v
                rec["kinds"][k] = "r"
            pos = m.end()
            while pos < len(rest) and rest[pos] == " ":
                pos += 1
    return rec


def _is_json_str(v):
    try:
        json.loads(v)
        return True
    except ValueError:
        return False


def access_records(proc, since=0):
    """Parsed access-log records (text format) of a zring process."""
    out = []
    for line in proc.lines()[since:]:
        r = parse_text_line(line)
        if r and r["target"] == "access" and r["message"] == "connection complete":
            out.append(r)
    return out


def json_records(proc):
    out = []
    for line in proc.lines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


# ---- config files --------------------------------------------------------------------------
NS = "integ"


def workload(name, ip, services=None, protocol="TCP", sa=None, **extra):
    w = {"uid": "Kubernetes//Pod/%s/%s" % (NS, name), "name": name, "namespace": NS,
         "serviceAccount": sa or name, "workloadIps": [ip], "protocol": protocol,
         "node": "node-1"}
    if services:
        w["services"] = services
    w.update(extra)
    return w


def service(name, vip, ports, **extra):
    s = {"name": name, "namespace": NS, "hostname": "%s.%s.svc.cluster.local" % (name, NS),
         "vips": ["/%s" % vip], "ports": {str(k): v for k, v in ports.items()}}
    s.update(extra)
    return s


def svc_key(name):
    return "%s/%s.%s.svc.cluster.local" % (NS, name, NS)


def to_yaml(obj):
    """Block-style YAML for config files (dicts, lists, str, int, bool)."""
    return "\n".join(_yaml_lines(obj, 0)) + "\n"


def _yaml_key(k):
    k = str(k)
    return k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+", k) else json.dumps(k)


def _yaml_lines(obj, indent):
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, _yaml_key(k)))
                out += _yaml_lines(v, indent + 1)
            else:
                out.append("%s%s: %s" % (pad, _yaml_key(k), _scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict) and v:
                sub = _yaml_lines(v, indent + 1)
                sub[0] = pad + "- " + sub[0][len(pad) + 2:]
                out += sub
            elif isinstance(v, list) and v:
                out.append(pad + "-")
                out += _yaml_lines(v, indent + 1)
            else:
                out.append("%s- %s" % (pad, _scalar(v)))
    else:
        out.append(pad + _scalar(obj))
    return out


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return json.dumps(str(v))


def write_config(path, workloads, services, fmt=None):
    """Write atomically (temp file + rename, as a ConfigMap update does)."""
    doc = {"workloads": workloads, "services": services}
    fmt = fmt or ("json" if path.endswith(".json") else "yaml")
    text = json.dumps(doc, indent=2) + "\n" if fmt == "json" else to_yaml(doc)
    write_atomic(path, text)
    return text


def write_atomic(path, text):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# ---- zring ------------------------------------------------------------------------------
def start_zring(ctx, ns, config, label="zring", shards=2, env=None, args=(), ready=True,
                log_level=None, timeout=10.0):
    argv = [ctx.zring, "--shards", str(shards)] + list(args)
    if log_level:
        argv += ["--log-level", log_level]
    if config:
        argv += ["--config", config]
    z = ns.spawn(label, argv, env=env)
    if ready:
        ns.wait_http_ready(proc=z, timeout=timeout)
    return z


def ztdata_server(ctx, ns, name, port=8080):
    p = ns.spawn("ztdata-%d" % port, [ctx.ztdata, "serve", "--port", str(port), "--name", name,
                                      "--idle-timeout", "60"])
    p.wait_for(r"^LISTEN ", 5)
    return p


def ztdata_client(ctx, ns, target, op, nbytes=0, seed=1, arg=0, count=1, parallel=1,
                  timeout=60, extra=(), check_ok=True):
    """Run a ztdata client in ns; returns (rc, results, summary) where results are the
    parsed RESULT lines (dicts) and summary the SUMMARY dict."""
    argv = [ctx.ztdata, "client", "--connect", target, "--op", op, "--bytes", str(nbytes),
            "--seed", str(seed), "--arg", str(arg), "--count", str(count), "--parallel",
            str(parallel), "--timeout", str(timeout)] + list(extra)
    r = ns.run(argv, check=False, timeout=timeout + 30)
    res, summ = parse_client_output(r.stdout)
    if check_ok and r.returncode != 0:
        bad = [x for x in res if x.get("status") != "ok"][:5]
        raise Fail("ztdata %s %s to %s: exit %d; %s; first failures: %s%s" % (
            op, nbytes, target, r.returncode, summ, bad, r.stderr.strip()[-500:]))
    return r.returncode, res, summ


def spawn_client(ctx, ns, label, target, op, nbytes=0, seed=1, arg=0, count=1, parallel=1,
                 timeout=60, extra=()):
    argv = [ctx.ztdata, "client", "--connect", target, "--op", op, "--bytes", str(nbytes),
            "--seed", str(seed), "--arg", str(arg), "--count", str(count), "--parallel",
            str(parallel), "--timeout", str(timeout)] + list(extra)
    return ns.spawn(label, argv)


def parse_kv(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv) | {
        "detail": line.split("detail=", 1)[1] if "detail=" in line else ""}


def parse_client_output(text):
    res, summ = [], {}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            res.append(parse_kv(line))
        elif line.startswith("SUMMARY "):
            summ = dict(kv.split("=", 1) for kv in line.split()[1:])
    return res, summ


def server_conns(proc, since=0):
    return [parse_kv(l) for l in proc.lines()[since:] if l.startswith("CONN ")]


# ---- the standard mesh of the outbound tests -----------------------------------------
CLIENT_IP = "10.77.1.10"
EP_A_IP = "10.77.2.10"
EP_B_IP = "10.77.3.10"
EP_C_IP = "10.77.4.10"
VIP = "10.96.0.10"
SVC_PORT = 8000
TARGET_PORT = 8080


def mesh_config(endpoints=(("ep-a", EP_A_IP), ("ep-b", EP_B_IP)), extra_workloads=()):
    wl = [workload("client", CLIENT_IP)]
    for name, ip in endpoints:
        wl.append(workload(name, ip, services={svc_key("echo"): {str(SVC_PORT): TARGET_PORT}}))
    wl += list(extra_workloads)
    svcs = [service("echo", VIP, {SVC_PORT: TARGET_PORT})]
    return wl, svcs


class Mesh:
    """client (zring + capture) -> service echo (VIP 10.96.0.10:8000 -> 8080) on ep-a and
    ep-b, each running a ztdata server on 8080; ep-c is an extra pod for reload tests."""

    def __init__(self, ctx, topo, shards=2, log_level=None, env=None, config_fmt="json",
                 with_c=False, zring_args=()):
        self.ctx = ctx
        self.topo = topo
        self.config = ctx.path("config." + config_fmt)
        wl, svcs = mesh_config()
        write_config(self.config, wl, svcs)
        self.client = topo.add_pod("client", CLIENT_IP)
        self.ep_a = topo.add_pod("ep-a", EP_A_IP)
        self.ep_b = topo.add_pod("ep-b", EP_B_IP)
        self.ep_c = topo.add_pod("ep-c", EP_C_IP) if with_c else None
        self.srv_a = ztdata_server(ctx, self.ep_a, "ep-a")
        self.srv_b = ztdata_server(ctx, self.ep_b, "ep-b")
        self.srv_c = ztdata_server(ctx, self.ep_c, "ep-c") if with_c else None
        self.client.install_capture()
        self.shards = shards
        self.zring = start_zring(ctx, self.client, self.config, shards=shards,
                                 log_level=log_level, env=env, args=zring_args)

    @property
    def vip(self):
        return "%s:%d" % (VIP, SVC_PORT)

    def run(self, op, nbytes=0, **kw):
        return ztdata_client(self.ctx, self.client, self.vip, op, nbytes, **kw)


def fill_until_blocked(socks, seconds):
    """Send 64 KiB chunks on non-blocking sockets for `seconds` (their readers are
    stalled): returns the bytes the kernel and the proxy accepted."""
    sent, chunk, end = 0, b"x" * 65536, time.monotonic() + seconds
    while time.monotonic() < end:
        moved = False
        for s in socks:
            try:
                sent += s.send(chunk)
                moved = True
            except BlockingIOError:
                pass
        if not moved:
            time.sleep(0.05)
    return sent


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Fail("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)
