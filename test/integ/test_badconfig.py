#!/usr/bin/python3
"""(k) A bad config at start: zring exits non-zero (promptly, without serving) with a
message naming the file, the key path and the reason. Also through LOCAL_XDS_PATH."""
import json

import ztlib
from ztlib import Topology, check, say, to_yaml, workload, service

GOOD_W = workload("a", "10.77.1.10")


def cases(ctx):
    def w(**kw):
        d = dict(GOOD_W)
        d.update(kw)
        return d
    yield ("bad.yaml", to_yaml({"workloads": [w(workloadIps=["10.0.0.300"])]}),
           ["bad.yaml", "workloads[0].workloadIps[0]", "10.0.0.300"])
    yield ("unknown.json", json.dumps({"workloads": [w(nmae="typo")]}),
           ["unknown.json", "workloads[0].nmae"])
    yield ("toplevel.yaml", to_yaml({"workloads": [GOOD_W], "service": []}),
           ["toplevel.yaml", "service"])
    yield ("port.yaml", to_yaml({"services": [service("s", "10.96.0.1", {"http": 80})]}),
           ["port.yaml", "services[0].ports", "http"])
    yield ("proto.json", json.dumps({"workloads": [w(protocol="SCTP")]}),
           ["proto.json", "workloads[0].protocol", "SCTP"])
    yield ("vip.yaml", to_yaml({"services": [service("s", "10.96.0.999", {80: 8080})]}),
           ["vip.yaml", "services[0].vips[0]", "10.96.0.999"])
    yield ("syntax.yaml", "workloads:\n- uid: a\n  name: [unclosed\n", ["syntax.yaml"])
    yield ("syntax.json", '{"workloads": [ {"uid": "a",, } ]}', ["syntax.json"])
    yield ("list.yaml", "- just\n- a list\n", ["list.yaml"])
    yield ("missing.yaml", None, ["missing.yaml"])


def body(ctx):
    with Topology(log_dir=ctx.logdir) as t:
        pod = t.add_pod("pod", "10.77.1.10")
        problems = []
        for i, (name, text, want) in enumerate(cases(ctx)):
            path = ctx.path(name)
            if text is not None:
                with open(path, "w") as f:
                    f.write(text)
            for how in ("flag", "env"):
                if how == "flag":
                    argv, env = [ctx.zring, "--config", path, "--shards", "1"], None
                else:
                    argv, env = [ctx.zring, "--shards", "1"], {"LOCAL_XDS_PATH": path}
                try:
                    r = pod.run(argv, check=False, timeout=10, env=env)
                except ztlib.Error:
                    problems.append("%s (%s): zring did not exit within 10 s" % (name, how))
                    continue
                out = (r.stdout + r.stderr).strip()
                errs = [l for l in out.splitlines() if "error" in l.lower()] or out.splitlines()
                line = errs[0] if errs else ""
                if r.returncode == 0:
                    problems.append("%s (%s): exit code 0; output: %s" % (name, how, out[-300:]))
                missing = [w for w in want if w not in out]
                if missing:
                    problems.append("%s (%s): message lacks %s: %s" % (name, how, missing,
                                                                     out[-400:]))
                if how == "flag":
                    say("%-13s exit %d: %s", name, r.returncode, line[-220:])
        check(not problems, "%d problem(s):\n  %s", len(problems), "\n  ".join(problems))


if __name__ == "__main__":
    ztlib.main("badconfig", body)
