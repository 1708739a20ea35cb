// Validate Kubernetes objects offline against the API's schemas (kubernetes-models).
//   node validate.js <node_modules dir> <file.yaml>...
// Each file is a multi-document YAML stream (helm template's output). Prints one JSON
// line per object: {"file", "kind", "name", "ok", "error"} and exits 1 if any object
// failed, or is of a kind this script does not know (a new template must be added to
// KINDS below, or the test would pass without checking it).
//   node validate.js <node_modules dir> --parse <file.yaml>
// Prints the file's documents as one JSON array (test_chart.py reads YAML this way:
// Python's standard library has no YAML parser). YAML 1.1, as Kubernetes and Helm
// read it ("on", "yes" are booleans).
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const [modulesDir, ...files] = process.argv.slice(2);
if (!modulesDir || files.length === 0) {
  console.error("usage: node validate.js <node_modules dir> [--parse] <file.yaml>...");
  process.exit(2);
}
const req = createRequire(path.join(path.resolve(modulesDir), "noop.js"));
const YAML = req("yaml");

if (files[0] === "--parse") {
  const docs = YAML.parseAllDocuments(fs.readFileSync(files[1], "utf8"), { version: "1.1" });
  for (const doc of docs) {
    if (doc.errors.length) {
      console.error(`${files[1]}: ${doc.errors[0].message}`);
      process.exit(1);
    }
  }
  process.stdout.write(JSON.stringify(docs.map((d) => d.toJS()).filter((d) => d != null)));
  process.exit(0);
}

// apiVersion/kind -> module of kubernetes-models. PodMonitor (a CRD) has no model in
// kubernetes-models; test_chart.py checks its fields.
const KINDS = {
  "apps/v1/DaemonSet": "kubernetes-models/apps/v1/DaemonSet",
  "v1/ServiceAccount": "kubernetes-models/v1/ServiceAccount",
  "v1/ConfigMap": "kubernetes-models/v1/ConfigMap",
  "v1/ResourceQuota": "kubernetes-models/v1/ResourceQuota",
  "networking.k8s.io/v1/NetworkPolicy": "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
  "rbac.authorization.k8s.io/v1/ClusterRole": "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
    "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding",
};
const CHECKED_ELSEWHERE = new Set(["monitoring.coreos.com/v1/PodMonitor"]);

let failed = 0;
for (const file of files) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" });
  for (const doc of docs) {
    if (doc.errors.length) {
      failed++;
      console.log(JSON.stringify({ file, ok: false, error: `YAML: ${doc.errors[0].message}` }));
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue; // empty document
    const key = `${obj.apiVersion}/${obj.kind}`;
    const name = obj.metadata && obj.metadata.name;
    const out = { file, kind: obj.kind, apiVersion: obj.apiVersion, name, ok: true };
    if (CHECKED_ELSEWHERE.has(key)) {
      out.checked = "by test_chart.py";
    } else if (!KINDS[key]) {
      out.ok = false;
      out.error = `no schema known for ${key}`;
    } else {
      const Model = Object.values(req(KINDS[key])).find((v) => typeof v === "function");
      try {
        new Model(obj).validate();
      } catch (e) {
        out.ok = false;
        out.error = e.message;
      }
    }
    if (!out.ok) failed++;
    console.log(JSON.stringify(out));
  }
}
process.exit(failed ? 1 : 0);
