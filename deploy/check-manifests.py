#!/usr/bin/env python3
"""Offline checks of deploy/ that kubectl cannot make without an API server.

    deploy/check-manifests.py [--build FILE]

- every manifest is listed in kustomization.yaml, and (with --build, the
  output of `kubectl kustomize deploy/`) the build holds exactly their objects;
- the CRDs are well formed and their schemas structural, as the API server
  requires of apiextensions.k8s.io/v1 (types everywhere, no uniqueItems, ...),
  with printer columns that point at fields of the schema;
- the objects in deploy/examples/ validate against those schemas, including
  unknown fields, which the API server would silently prune;
- the CNI conflist uses only vswitch-cni's configuration keys, as listed in
  cni-shim/README.md, and the paths the DaemonSet mounts;
- the DaemonSet's references (volumes, ConfigMaps and their keys, service
  account, hugepages) resolve, and RBAC grants what the agent needs and no
  more.

Exits 1 with one line per problem.
"""

import argparse
import json
import os
import re
import sys

import yaml

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEPLOY)

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
}

# plural.group -> (kind, scope, version) the agent expects
EXPECTED_CRDS = {
    "ippools.crd.projectcalico.org": ("IPPool", "Cluster", "v1"),
    "networkpolicies.crd.projectcalico.org": ("NetworkPolicy", "Namespaced", "v1"),
    "globalnetworkpolicies.crd.projectcalico.org": ("GlobalNetworkPolicy", "Cluster", "v1"),
    "tiers.crd.projectcalico.org": ("Tier", "Cluster", "v1"),
    "ipamblocks.vswitch.dev": ("IPAMBlock", "Cluster", "v1alpha1"),
    "blockaffinities.vswitch.dev": ("BlockAffinity", "Cluster", "v1alpha1"),
}

# what the agent reads: (group, resource); the node pod (vswitchd's IPAM
# store) writes only to vswitch.dev
AGENT_READS = {
    ("", "pods"),
    ("", "namespaces"),
    ("", "nodes"),
    ("", "services"),
    ("", "endpoints"),
    ("discovery.k8s.io", "endpointslices"),
    ("networking.k8s.io", "networkpolicies"),
    # Calico's API server, which the agent prefers when it is there
    ("projectcalico.org", "ippools"),
    ("projectcalico.org", "networkpolicies"),
    ("projectcalico.org", "globalnetworkpolicies"),
    ("projectcalico.org", "tiers"),
}
AGENT_WRITES = {("vswitch.dev", "ipamblocks"), ("vswitch.dev", "blockaffinities")}
READ_VERBS = {"get", "list", "watch"}
WRITE_VERBS = {"create", "update", "delete"}
# granted with exactly these verbs, nothing to read: the Events the agent
# posts on policies it cannot use (kube's recorder creates one and patches a
# repeat into a series)
AGENT_POSTS = {("events.k8s.io", "events"): {"create", "patch"}}

# keys a structural schema node may carry (apiextensions.k8s.io/v1)
SCHEMA_KEYS = {
    "type", "format", "title", "description", "default", "nullable", "enum",
    "maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf",
    "maxProperties", "minProperties", "required", "items", "properties",
    "additionalProperties", "allOf", "anyOf", "oneOf", "not", "example",
    "externalDocs", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def load(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    return docs


def ident(doc):
    md = doc.get("metadata") or {}
    return (doc.get("kind"), md.get("namespace", ""), md.get("name"))


# ---------------------------------------------------------------- schemas


def check_schema(node, where, root=False):
    """Structural-schema rules the API server enforces on v1 CRDs."""
    if not isinstance(node, dict):
        problem(where, "schema node is not a mapping")
        return
    for k in node:
        if k not in SCHEMA_KEYS:
            problem(where, f"unknown schema key {k!r}")
    t = node.get("type")
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if t is None and not int_or_string and not preserve:
        problem(where, "no type (structural schemas need one)")
    if t is not None and t not in TYPES:
        problem(where, f"type {t!r} is not one of {sorted(TYPES)}")
    if int_or_string and t is not None:
        problem(where, "x-kubernetes-int-or-string with a type")
    if node.get("uniqueItems") is True:
        problem(where, "uniqueItems: true is refused by the API server (use x-kubernetes-list-type: set)")
    if "properties" in node and "additionalProperties" in node:
        problem(where, "properties and additionalProperties together")
    if node.get("additionalProperties") is False:
        problem(where, "additionalProperties: false is refused by the API server")
    if "properties" in node and t not in (None, "object"):
        problem(where, f"properties on a {t}")
    if t == "array" and "items" not in node:
        problem(where, "array without items")
    if "items" in node and t != "array":
        problem(where, "items on a non-array")
    for k in ("allOf", "anyOf", "oneOf", "not"):
        if k in node and not int_or_string:
            # allowed only as value validation; we never need it
            problem(where, f"{k} outside x-kubernetes-int-or-string")
    if "enum" in node:
        for v in node["enum"]:
            errs = validate(v, {k: x for k, x in node.items() if k != "enum"}, where)
            if errs:
                problem(where, f"enum value {v!r}: {errs[0]}")
    if "default" in node:
        errs = validate(node["default"], node, where + ".default")
        if errs:
            problem(where, f"default does not validate: {errs[0]}")
    if root:
        if t != "object":
            problem(where, "root schema is not an object")
        md = (node.get("properties") or {}).get("metadata")
        if md is not None and set(md) - {"type", "description"}:
            problem(where + ".metadata", "only type/description allowed on metadata")
    for name, sub in (node.get("properties") or {}).items():
        check_schema(sub, f"{where}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        check_schema(node["additionalProperties"], where + ".*")
    if "items" in node:
        check_schema(node["items"], where + "[]")


def validate(value, schema, where):
    """Validate like the API server does, and report unknown fields
    (which it would prune without a word) as errors."""
    errs = []

    def v(val, s, path):
        if val is None:
            if s.get("nullable"):
                return
            errs.append(f"{path}: null")
            return
        if s.get("x-kubernetes-int-or-string"):
            if isinstance(val, bool) or not isinstance(val, (int, str)):
                errs.append(f"{path}: {val!r} is neither integer nor string")
            return
        t = s.get("type")
        ok = {
            None: True,
            "object": isinstance(val, dict),
            "array": isinstance(val, list),
            "string": isinstance(val, str),
            "integer": isinstance(val, int) and not isinstance(val, bool),
            "number": isinstance(val, (int, float)) and not isinstance(val, bool),
            "boolean": isinstance(val, bool),
        }[t]
        if not ok:
            errs.append(f"{path}: {val!r} is not {t}")
            return
        if "enum" in s and val not in s["enum"]:
            errs.append(f"{path}: {val!r} not in {s['enum']}")
        if "minimum" in s and val < s["minimum"]:
            errs.append(f"{path}: {val} < {s['minimum']}")
        if "maximum" in s and val > s["maximum"]:
            errs.append(f"{path}: {val} > {s['maximum']}")
        if "minLength" in s and len(val) < s["minLength"]:
            errs.append(f"{path}: shorter than {s['minLength']}")
        if "pattern" in s and not re.search(s["pattern"], val):
            errs.append(f"{path}: {val!r} does not match {s['pattern']}")
        if t == "array":
            for i, item in enumerate(val):
                v(item, s["items"], f"{path}[{i}]")
        if t == "object":
            props = s.get("properties")
            for r in s.get("required", []):
                if r not in val:
                    errs.append(f"{path}: missing required {r}")
            for k, item in val.items():
                if path == "" and k == "metadata":
                    # ObjectMeta: the API server's, not the CRD's, to check
                    continue
                if props is not None and k in props:
                    v(item, props[k], f"{path}.{k}")
                elif isinstance(s.get("additionalProperties"), dict):
                    v(item, s["additionalProperties"], f"{path}.{k}")
                elif s.get("x-kubernetes-preserve-unknown-fields"):
                    pass
                elif props is not None or "additionalProperties" not in s:
                    if not (path == "" and k in ("apiVersion", "kind")):
                        errs.append(f"{path}.{k}: unknown field (the API server would prune it)")

    v(value, schema, "")
    return errs


def schema_at(schema, json_path):
    """The schema node a printer column's simple .a.b path points at."""
    node = schema
    for part in json_path.lstrip(".").split("."):
        props = node.get("properties") or {}
        if part not in props:
            return None
        node = props[part]
    return node


def check_crd(doc, where):
    name = doc["metadata"]["name"]
    if doc.get("apiVersion") != "apiextensions.k8s.io/v1":
        problem(where, "CRDs must be apiextensions.k8s.io/v1")
    spec = doc.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group")
    if name != f"{names.get('plural')}.{group}":
        problem(where, f"name {name} is not <plural>.<group>")
    for k in ("kind", "plural", "singular", "listKind"):
        if k not in names:
            problem(where, f"names.{k} missing")
    expected = EXPECTED_CRDS.get(name)
    if expected is None:
        problem(where, f"{name} is not a CRD the agent knows")
        return None
    kind, scope, version = expected
    if names.get("kind") != kind:
        problem(where, f"kind {names.get('kind')}, expected {kind}")
    if spec.get("scope") != scope:
        problem(where, f"scope {spec.get('scope')}, expected {scope}")
    versions = spec.get("versions", [])
    if [v.get("name") for v in versions] != [version]:
        problem(where, f"versions {[v.get('name') for v in versions]}, expected [{version}]")
    if sum(1 for v in versions if v.get("storage")) != 1:
        problem(where, "exactly one version must be the storage version")
    for v in versions:
        w = f"{where} {v.get('name')}"
        if not v.get("served"):
            problem(w, "not served")
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            problem(w, "no openAPIV3Schema")
            continue
        check_schema(schema, w + " schema", root=True)
        if "spec" not in (schema.get("properties") or {}):
            problem(w, "schema has no spec")
        for col in v.get("additionalPrinterColumns", []):
            path = col.get("jsonPath", "")
            if path == ".metadata.creationTimestamp":
                if col.get("type") != "date":
                    problem(w, f"column {col.get('name')}: creationTimestamp is a date")
                continue
            target = schema_at(schema, path)
            if target is None:
                problem(w, f"column {col.get('name')}: {path} is not in the schema")
            elif target.get("type") != col.get("type"):
                problem(w, f"column {col.get('name')}: type {col.get('type')}, field is {target.get('type')}")
    return (group, names.get("plural"), kind, scope, versions[0]["name"] if versions else None,
            (versions[0].get("schema") or {}).get("openAPIV3Schema") if versions else None)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", help="output of `kubectl kustomize deploy/`")
    args = ap.parse_args()

    kust = load(os.path.join(DEPLOY, "kustomization.yaml"))[0]
    listed = kust.get("resources", [])
    on_disk = sorted(
        [os.path.join("crds", f) for f in os.listdir(os.path.join(DEPLOY, "crds")) if f.endswith(".yaml")]
        + [f for f in ("rbac.yaml", "configmap.yaml", "daemonset.yaml")]
    )
    if sorted(listed) != on_disk:
        problem("kustomization.yaml", f"resources {sorted(listed)} != manifests {on_disk}")

    objects = {}
    by_kind = {}
    for rel in listed:
        path = os.path.join(DEPLOY, rel)
        if not os.path.exists(path):
            continue
        for i, doc in enumerate(load(path)):
            where = f"{rel}#{i + 1}"
            if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
                problem(where, "no apiVersion/kind")
                continue
            md = doc.get("metadata") or {}
            if not md.get("name"):
                problem(where, "no metadata.name")
            if doc["kind"] in CLUSTER_SCOPED:
                if "namespace" in md:
                    problem(where, f"cluster-scoped {doc['kind']} with a namespace")
            elif md.get("namespace") != "kube-system":
                problem(where, f"{doc['kind']} {md.get('name')} not in kube-system")
            key = ident(doc)
            if key in objects:
                problem(where, f"duplicate {key}")
            objects[key] = (where, doc)
            by_kind.setdefault(doc["kind"], []).append((where, doc))

    # CRDs
    crds = {}
    for where, doc in by_kind.get("CustomResourceDefinition", []):
        info = check_crd(doc, where)
        if info:
            group, plural, kind, scope, version, schema = info
            crds[(f"{group}/{version}", kind)] = (plural, group, scope, schema)
    for name in EXPECTED_CRDS:
        if not any(f"{p}.{g}" == name for p, g, _, _ in crds.values()):
            problem("crds/", f"{name} missing")

    # examples against the CRDs
    examples_dir = os.path.join(DEPLOY, "examples")
    seen_kinds = set()
    for f in sorted(os.listdir(examples_dir)):
        if not f.endswith(".yaml"):
            continue
        for i, doc in enumerate(load(os.path.join(examples_dir, f))):
            where = f"examples/{f}#{i + 1} {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            crd = crds.get((doc.get("apiVersion"), doc.get("kind")))
            if crd is None:
                problem(where, f"no CRD serves {doc.get('apiVersion')} {doc.get('kind')}")
                continue
            plural, group, scope, schema = crd
            seen_kinds.add(doc["kind"])
            ns = (doc.get("metadata") or {}).get("namespace")
            if (scope == "Namespaced") != bool(ns):
                problem(where, f"{scope} object {'without' if not ns else 'with'} a namespace")
            for e in validate(doc, schema, where):
                problem(where, e)
    for _, kind in crds:
        if kind not in seen_kinds:
            problem("examples/", f"no example of {kind}")

    # the CNI config against cni-shim/README.md's keys
    readme = open(os.path.join(ROOT, "cni-shim", "README.md")).read()
    section = readme.split("## Configuration keys", 1)[1].split("\n## ", 1)[0]
    shim_keys = set()
    for row in re.findall(r"^\| (`[^|]+`) \|", section, re.M):
        for key in re.findall(r"`([^`]+)`", row):
            shim_keys.add(key.split(".")[0])
    if not shim_keys:
        problem("cni-shim/README.md", "no configuration keys found")
    versions = re.findall(r"CNI\s+((?:\d\.\d\.\d(?:,\s*|\s+and\s+))+\d\.\d\.\d)", readme)
    supported = set(re.findall(r"\d\.\d\.\d", versions[0])) if versions else set()
    conflist = None
    cm = objects.get(("ConfigMap", "kube-system", "vswitch-cni-config"))
    if cm is None:
        problem("configmap.yaml", "ConfigMap vswitch-cni-config missing")
    else:
        where, doc = cm
        raw = (doc.get("data") or {}).get("10-vswitch.conflist")
        if raw is None:
            problem(where, "no key 10-vswitch.conflist")
        else:
            try:
                conflist = json.loads(raw)
            except ValueError as e:
                problem(where, f"10-vswitch.conflist is not JSON: {e}")
    if conflist is not None:
        where = "configmap.yaml 10-vswitch.conflist"
        for k in ("cniVersion", "name", "plugins"):
            if k not in conflist:
                problem(where, f"no {k}")
        if supported and conflist.get("cniVersion") not in supported:
            problem(where, f"cniVersion {conflist.get('cniVersion')} not among vswitch-cni's {sorted(supported)}")
        plugins = conflist.get("plugins") or []
        if not plugins or plugins[0].get("type") != "vswitch-cni":
            problem(where, "the first plugin must be vswitch-cni")
        else:
            generic = {"type", "name", "cniVersion", "capabilities"}
            for k in plugins[0]:
                if k not in shim_keys | generic:
                    problem(where, f"key {k!r} is not one of vswitch-cni's ({sorted(shim_keys)})")

    # the DaemonSet
    ds_entry = objects.get(("DaemonSet", "kube-system", "vswitch-node"))
    if ds_entry is None:
        problem("daemonset.yaml", "DaemonSet vswitch-node missing")
        ds = None
    else:
        ds_where, ds = ds_entry
    if ds is not None:
        pod = ds["spec"]["template"]["spec"]
        sel = ds["spec"]["selector"]["matchLabels"]
        labels = ds["spec"]["template"]["metadata"].get("labels", {})
        if any(labels.get(k) != v for k, v in sel.items()):
            problem(ds_where, "selector does not match the template's labels")
        for k, want in (("hostNetwork", True), ("priorityClassName", "system-node-critical"),
                        ("serviceAccountName", "vswitch-node")):
            if pod.get(k) != want:
                problem(ds_where, f"{k} is {pod.get(k)!r}, expected {want!r}")
        if {"operator": "Exists"} not in pod.get("tolerations", []):
            problem(ds_where, "does not tolerate every taint")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        containers = {c["name"]: c for c in pod.get("initContainers", []) + pod.get("containers", [])}
        for want in ("install-cni", "vswitchd", "agent"):
            if want not in containers:
                problem(ds_where, f"no container {want}")
        configmaps = {n for (k, _, n) in objects if k == "ConfigMap"}
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problem(ds_where, f"volume {v['name']}: no ConfigMap {v['configMap']['name']}")
        mounts = {}
        for cname, c in containers.items():
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problem(ds_where, f"{cname}: mount of undeclared volume {m['name']}")
                mounts.setdefault(cname, {})[m["mountPath"]] = m
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and not ref.get("optional"):
                    cmo = objects.get(("ConfigMap", "kube-system", ref["name"]))
                    if cmo is None:
                        problem(ds_where, f"{cname}: env {e['name']}: no ConfigMap {ref['name']}")
                    elif ref["key"] not in (cmo[1].get("data") or {}):
                        problem(ds_where, f"{cname}: env {e['name']}: no key {ref['key']} in {ref['name']}")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in res.get(kind, {}):
                    if r.startswith("hugepages-") and res.get("requests", {}).get(r) != res.get("limits", {}).get(r):
                        problem(ds_where, f"{cname}: {r} requests and limits differ")
        vsd = containers.get("vswitchd", {})
        if vsd:
            hp = vsd.get("resources", {}).get("limits", {}).get("hugepages-2Mi")
            if hp is None:
                problem(ds_where, "vswitchd: no hugepages-2Mi limit")
            elif not any(volumes.get(m["name"], {}).get("emptyDir", {}).get("medium", "").startswith("HugePages")
                         for m in mounts.get("vswitchd", {}).values()):
                problem(ds_where, "vswitchd: hugepages requested but no HugePages emptyDir mounted")
            else:
                units = {"Mi": 1, "Gi": 1024}
                m = re.fullmatch(r"(\d+)(Mi|Gi)", str(hp))
                cfg = objects.get(("ConfigMap", "kube-system", "vswitch-node-config"))
                mem = int((cfg[1].get("data") or {}).get("mem", "0")) if cfg else 0
                if not m or int(m.group(1)) * units[m.group(2)] <= mem:
                    problem(ds_where, f"vswitchd: hugepages-2Mi {hp} leaves no room above --mem {mem} MiB")
            if not vsd.get("securityContext", {}).get("privileged"):
                problem(ds_where, "vswitchd: not privileged")
            for path in ("/dev/hugepages", "/run/vswitch", "/var/lib/vswitch", "/var/run/netns", "/sys", "/lib/modules"):
                if path not in mounts.get("vswitchd", {}):
                    problem(ds_where, f"vswitchd: {path} not mounted")
            netns = mounts.get("vswitchd", {}).get("/var/run/netns", {})
            if netns and netns.get("mountPropagation") != "Bidirectional":
                problem(ds_where, "vswitchd: /var/run/netns needs Bidirectional propagation")
            for path in ("/sys", "/lib/modules"):
                if path in mounts.get("vswitchd", {}) and not mounts["vswitchd"][path].get("readOnly"):
                    problem(ds_where, f"vswitchd: {path} should be read-only")
            for probe in ("livenessProbe", "startupProbe"):
                cmd = (vsd.get(probe) or {}).get("exec", {}).get("command")
                if cmd != ["vsctl", "status"]:
                    problem(ds_where, f"vswitchd: {probe} is not `vsctl status`")
        agent = containers.get("agent", {})
        if agent:
            if agent.get("command", [])[:2] != ["vsctl", "agent"]:
                problem(ds_where, "agent: does not run `vsctl agent`")
            env = {e["name"]: e for e in agent.get("env", [])}
            node = env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if node != "spec.nodeName":
                problem(ds_where, "agent: NODE_NAME not from spec.nodeName")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = (agent.get(probe) or {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") != 9099:
                    problem(ds_where, f"agent: {probe} is not GET {path} on 9099")
            if agent.get("securityContext", {}).get("privileged"):
                problem(ds_where, "agent: privileged")
            if "/run/vswitch" not in mounts.get("agent", {}):
                problem(ds_where, "agent: /run/vswitch not mounted")
        init = containers.get("install-cni", {})
        script = " ".join(init.get("args", []) + init.get("command", []))
        for want in ("/host/opt/cni/bin/vswitch-cni", "/host/etc/cni/net.d/10-vswitch.conflist"):
            if want not in script:
                problem(ds_where, f"install-cni: does not install {want}")
        host_paths = {v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v}
        for want in ("/opt/cni/bin", "/etc/cni/net.d", "/run/vswitch"):
            if want not in host_paths:
                problem(ds_where, f"no hostPath volume for {want}")
        if conflist is not None:
            plugin = (conflist.get("plugins") or [{}])[0]
            sock = plugin.get("socket", "/run/vswitch/vswitchd.sock")
            vhost = plugin.get("vhostSocketDir", "/var/run/vswitch/pods")
            norm = lambda p: p.replace("/var/run/", "/run/", 1)
            for p in (sock, vhost):
                if not norm(p).startswith("/run/vswitch/"):
                    problem("configmap.yaml 10-vswitch.conflist", f"{p} is outside /run/vswitch, which vswitchd shares with the host")

    # RBAC
    sa = objects.get(("ServiceAccount", "kube-system", "vswitch-node"))
    if sa is None:
        problem("rbac.yaml", "ServiceAccount vswitch-node missing")
    binding = objects.get(("ClusterRoleBinding", "", "vswitch-node"))
    role = None
    if binding is None:
        problem("rbac.yaml", "ClusterRoleBinding vswitch-node missing")
    else:
        where, b = binding
        subj = {"kind": "ServiceAccount", "name": "vswitch-node", "namespace": "kube-system"}
        if subj not in b.get("subjects", []):
            problem(where, "does not bind the vswitch-node ServiceAccount")
        role = objects.get(("ClusterRole", "", b["roleRef"]["name"]))
        if role is None:
            problem(where, f"ClusterRole {b['roleRef']['name']} missing")
    if role is not None:
        where, r = role
        grants = {}
        for rule in r.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                if "*" in rule.get(field, []):
                    problem(where, f"wildcard in {field}")
            if rule.get("nonResourceURLs"):
                problem(where, "nonResourceURLs granted")
            for g in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    grants.setdefault((g, res), set()).update(rule.get("verbs", []))
        crd_resources = {(g, p) for p, g, _, _ in crds.values()}
        for gr in AGENT_READS | crd_resources:
            missing = READ_VERBS - grants.get(gr, set())
            if missing:
                problem(where, f"{gr[0] or 'core'}/{gr[1]}: missing {sorted(missing)}")
        for gr in AGENT_WRITES:
            missing = WRITE_VERBS - grants.get(gr, set())
            if missing:
                problem(where, f"{gr[0]}/{gr[1]}: missing {sorted(missing)}")
        for gr, want in AGENT_POSTS.items():
            have = grants.get(gr, set())
            if have != want:
                problem(where, f"{gr[0]}/{gr[1]}: {sorted(have)}, not {sorted(want)}")
        for gr, verbs in grants.items():
            if gr in AGENT_POSTS:
                continue
            extra = verbs - READ_VERBS - (WRITE_VERBS if gr in AGENT_WRITES else set())
            if extra:
                problem(where, f"{gr[0] or 'core'}/{gr[1]}: more than needed: {sorted(extra)}")
            if gr not in AGENT_READS | crd_resources | AGENT_WRITES:
                problem(where, f"{gr[0] or 'core'}/{gr[1]}: granted but not used by the agent")

    # the kustomize build holds exactly the files' objects
    if args.build:
        built = {}
        for doc in load(args.build):
            built[ident(doc)] = doc
        if set(built) != set(objects):
            problem("kustomize build", f"objects differ: only in build {sorted(set(built) - set(objects))}, "
                                       f"only in files {sorted(set(objects) - set(built))}")
        for key, doc in built.items():
            if key[0] == "DaemonSet":
                images = {c["image"] for c in doc["spec"]["template"]["spec"].get("initContainers", [])
                          + doc["spec"]["template"]["spec"]["containers"]}
                if len(images) != 1:
                    problem("kustomize build", f"DaemonSet runs several images: {sorted(images)}")

    for p in problems:
        print(p)
    if problems:
        print(f"check-manifests: {len(problems)} problem(s)")
        return 1
    print(f"check-manifests: {len(objects)} objects in {len(listed)} files, "
          f"{sum(1 for f in os.listdir(examples_dir) if f.endswith('.yaml'))} example files: no problem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
