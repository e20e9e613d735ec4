#!/usr/bin/env bash
# Validates deploy/ against a real kube-apiserver: Kubernetes 1.20.2 with etcd,
# built from Debian's source package by scripts/kube-apiserver.sh.
#
#   deploy/validate-server.sh [DIR]
#
# DIR (default /var/cache/vswitch/kube-apiserver) caches the built server as
# DIR/kube-apiserver; when it is missing it is built first (about 5 minutes on
# 2 cores, 2 GB of disk, root, Debian's package archive). DIR/run holds the
# server's state for this run only: its etcd data is wiped at start.
#
# 1. kubectl apply --dry-run=server -f each CRD: the API server's own CRD
#    validation (structural schemas, defaults, printer columns);
# 2. the CRDs are created for real, and become Established;
# 3. every manifest: kubectl apply --dry-run=client -f (which kubectl 1.20
#    cannot do offline, see validate.sh), then --dry-run=server -f (field
#    validation of the built-in kinds, defaulting, admission), and the whole
#    kustomization with apply -k --dry-run=server;
# 4. the objects in deploy/examples/ with --dry-run=server: the CRDs accept
#    them and prune none of their fields, and an invalid one is refused;
# 5. RBAC created for real: the node's ServiceAccount may do what the agent
#    and vswitchd's IPAM store need and nothing else listed here (kubectl
#    auth can-i).
#
# The server listens on 127.0.0.1:6443 (etcd on 2379/2380), the fixed ports
# the tests' harness (crate testkube) uses too: both hold the host-wide lock
# /run/vswitch-test-kube-apiserver.lock while their server runs, so this
# script waits for a test holding it and a test waits for this script. It
# stops a server a killed run left behind, refuses to start when something
# else holds the ports, and stops its server on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DIR=$(realpath -m "${1:-${VSWITCH_KUBE_DIR:-/var/cache/vswitch/kube-apiserver}}")
LOCK=/run/vswitch-test-kube-apiserver.lock

log() { echo "[validate-server] $*" >&2; }
die() { log "$*"; exit 1; }

# kube-apiserver.sh as testkube finds it: $KUBE_APISERVER_SH, else the
# repository's scripts/kube-apiserver.sh
APISERVER_SH=${KUBE_APISERVER_SH:-$ROOT/scripts/kube-apiserver.sh}

[ "$(id -u)" = 0 ] || die "needs root (building the server installs packages)"
[ -f "$APISERVER_SH" ] || die "no $APISERVER_SH"
KUBECTL=$("$HERE/kubectl.sh" --path)
mkdir -p "$DIR"

# fd 9 holds the lock until this script exits; every child that outlives a
# command (the server, etcd) gets it closed (9>&-), or it would hold the lock
# after us
exec 9>"$LOCK"
if ! flock -n 9; then
  log "waiting for $LOCK (a test holds the API server)"
  flock 9
fi

if [ ! -x "$DIR/kube-apiserver" ]; then
  log "building kube-apiserver 1.20.2 into $DIR (log: $DIR/build.log)"
  # the build installs Go and etcd from Debian: the package lists must exist
  apt-get update -qq 9>&-
  bash "$APISERVER_SH" build "$DIR" 9>&-
fi

stop_server() {
  bash "$APISERVER_SH" stop "$DIR" || true
  # the stop script only signals: wait so that the ports are free for the
  # next user, then forget the pids so that a later stop can't hit a reused one
  local p pid
  for p in apiserver etcd; do
    pid=$(cat "$DIR/run/$p.pid" 2>/dev/null || true)
    for _ in $(seq 1 20); do
      { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || break
      sleep 0.5
    done
    rm -f "$DIR/run/$p.pid"
  done
}
# with the lock held, a server of ours still running was left by a killed run
stop_server
for port in 6443 2379 2380; do
  if ss -Hltn "sport = :$port" | grep -q .; then
    die "port $port is in use by something that is not this cache's kube-apiserver or etcd"
  fi
done
rm -rf "$DIR/run/etcd"

WORK=$(mktemp -d)
trap 'stop_server; rm -rf "$WORK"' EXIT

# kube-apiserver's --allow-privileged defaults to false; the DaemonSet's
# vswitchd is privileged, as every CNI dataplane is, and real clusters
# (kubeadm, kind, k3s) allow it. So the server is started by a copy of the
# script with the flag added (harmless when the script already passes it, as
# scripts/kube-apiserver.sh does; needed for a $KUBE_APISERVER_SH that does not).
SERVER_SH=$WORK/kube-apiserver.sh
sed 's|"\$W/kube-apiserver" --etcd-servers|"$W/kube-apiserver" --allow-privileged=true --etcd-servers|' \
  "$APISERVER_SH" > "$SERVER_SH"
grep -q -- '--allow-privileged=true' "$SERVER_SH" \
  || die "cannot add --allow-privileged=true to $APISERVER_SH: its kube-apiserver command line changed"

log "starting etcd and kube-apiserver"
bash "$SERVER_SH" start "$DIR" >/dev/null 9>&-
export KUBECONFIG=$DIR/run/kubeconfig
export HOME=$WORK/home
mkdir -p "$HOME"
k() { "$KUBECTL" --request-timeout=30s "$@"; }
ready=0
for _ in $(seq 1 60); do
  if k get --raw /readyz >/dev/null 2>&1; then ready=1; break; fi
  sleep 1
done
[ "$ready" = 1 ] || { tail -20 "$DIR/run/apiserver.log" >&2; die "kube-apiserver did not become ready"; }
log "server $(k version --short 2>/dev/null | grep -i server || true), kubectl $("$KUBECTL" version --client --short)"

OK=0
FAILED=0
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    OK=$((OK + 1)); echo "ok    $name"
    [ -z "$out" ] || echo "$out" | sed 's/^/      /'
  else
    FAILED=$((FAILED + 1)); echo "FAIL  $name"
    echo "$out" | sed 's/^/      /'
  fi
}

cd "$HERE"
CRDS=(crds/*.yaml)
OTHERS=(rbac.yaml configmap.yaml daemonset.yaml)

# 1, 2
for f in "${CRDS[@]}"; do
  check "apply --dry-run=server -f $f" k apply --dry-run=server -f "$f"
done
check "create the CRDs" k apply -f crds/
check "CRDs established" k wait --for condition=established --timeout=60s \
  crd/ippools.crd.projectcalico.org crd/networkpolicies.crd.projectcalico.org \
  crd/globalnetworkpolicies.crd.projectcalico.org crd/tiers.crd.projectcalico.org \
  crd/ipamblocks.vswitch.dev crd/blockaffinities.vswitch.dev

# 3
for f in "${CRDS[@]}" "${OTHERS[@]}"; do
  check "apply --dry-run=client -f $f" k apply --dry-run=client -f "$f"
done
for f in "${OTHERS[@]}"; do
  check "apply --dry-run=server -f $f" k apply --dry-run=server -f "$f"
done
check "apply -k deploy/ --dry-run=server" k apply -k "$HERE" --dry-run=server

# 4: what the server would store must keep every field we sent
unpruned() {
  local f=$1
  # --validate=false: kubectl 1.20's own (client-side) schema check does not
  # know nullable array items and refuses the nulls of an IPAMBlock's
  # allocations; the server still validates the object against the CRD
  k apply --dry-run=server --validate=false -o json -f "$f" > "$WORK/stored.json" || return 1
  python3 - "$f" "$WORK/stored.json" <<'PY'
import json, sys, yaml
sent = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
# one List, or one JSON object per applied object, depending on the version
text, got, dec, i = open(sys.argv[2]).read(), [], json.JSONDecoder(), 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    obj, i = dec.raw_decode(text, i)
    got.extend(obj.get("items", [obj]) if obj.get("kind", "").endswith("List") else [obj])
stored = {(o["kind"], o["metadata"]["name"]): o for o in got}
lost = []
def walk(a, b, path):
    if isinstance(a, dict):
        for k, v in a.items():
            if not isinstance(b, dict) or k not in b:
                lost.append(path + "." + k)
            else:
                walk(v, b[k], path + "." + k)
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            lost.append(path)
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")
for d in sent:
    o = stored.get((d["kind"], d["metadata"]["name"]))
    if o is None:
        lost.append(f"{d['kind']} {d['metadata']['name']}: not returned")
        continue
    for part in ("spec", "status"):
        if part in d:
            walk(d[part], o.get(part), f"{d['kind']} {d['metadata']['name']} {part}")
for l in lost:
    print("pruned or changed:", l)
sys.exit(1 if lost else 0)
PY
}
if k get namespace default >/dev/null 2>&1; then :; else k create namespace default >/dev/null; fi
for f in examples/*.yaml; do
  check "examples: apply --dry-run=server -f $f, nothing pruned" unpruned "$f"
done
refused() {
  cat > "$WORK/bad.yaml" <<'YAML'
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  name: bad
spec:
  cidr: 10.9.0.0/16
  ipipMode: Sometimes
YAML
  local out
  if out=$(k apply --dry-run=server -f "$WORK/bad.yaml" 2>&1); then
    echo "accepted: $out"
    return 1
  fi
  echo "$out" | grep -q 'ipipMode' || { echo "$out"; return 1; }
  echo "$out" | head -1
}
check "an IPPool with ipipMode: Sometimes is refused" refused

# 5
check "create RBAC" k apply -f rbac.yaml
SA=system:serviceaccount:kube-system:vswitch-node
can() { [ "$(k auth can-i --as="$SA" "$@" 2>/dev/null)" = yes ]; }
rbac() {
  local bad=0 spec
  for spec in "list pods" "watch nodes" "watch namespaces" "watch services" "watch endpoints" \
              "watch endpointslices.discovery.k8s.io" "watch networkpolicies.networking.k8s.io" \
              "watch ippools.crd.projectcalico.org" "watch networkpolicies.crd.projectcalico.org" \
              "watch globalnetworkpolicies.crd.projectcalico.org" "watch tiers.crd.projectcalico.org" \
              "list ippools.crd.projectcalico.org" \
              "list ipamblocks.vswitch.dev" "create ipamblocks.vswitch.dev" "update ipamblocks.vswitch.dev" \
              "delete ipamblocks.vswitch.dev" "list blockaffinities.vswitch.dev" "get blockaffinities.vswitch.dev" \
              "create blockaffinities.vswitch.dev" "update blockaffinities.vswitch.dev" \
              "delete blockaffinities.vswitch.dev" "create events.events.k8s.io" "patch events.events.k8s.io"; do
    # shellcheck disable=SC2086
    can $spec || { echo "may not: $spec"; bad=1; }
  done
  for spec in "get secrets" "update pods" "update pods --subresource=status" "update nodes" "patch ipamblocks.vswitch.dev" \
              "patch blockaffinities.vswitch.dev" "deletecollection ipamblocks.vswitch.dev" \
              "update ippools.crd.projectcalico.org" "create ippools.crd.projectcalico.org" \
              "delete ippools.crd.projectcalico.org" "create networkpolicies.networking.k8s.io" \
              "delete services" "create pods" "delete events.events.k8s.io" "create events"; do
    # shellcheck disable=SC2086
    if can $spec; then echo "may, but should not: $spec"; bad=1; fi
  done
  return $bad
}
check "the agent's ServiceAccount may do what it needs, no more" rbac

if [ "$FAILED" -gt 0 ]; then
  echo "validate-server: $FAILED check(s) failed, $OK ok"
  exit 1
fi
echo "validate-server: all $OK checks ok"
