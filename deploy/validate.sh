#!/usr/bin/env bash
# Validates the manifests under deploy/ with no cluster, using Debian's
# kubectl (deploy/kubectl.sh fetches it if needed):
#
#   deploy/validate.sh
#
# - kubectl reads every document of every manifest (kubectl label --local);
# - kubectl apply --dry-run=client -f, for each manifest, against a
#   kubeconfig whose server does not exist. kubectl 1.20 needs the API
#   server for this even for built-in kinds (discovery to map kinds to
#   resources, and a GET of the live object to compute the patch), so here it
#   can only show that it stops there; validate-server.sh runs it against a
#   real API server. Any other error fails;
# - kubectl kustomize deploy/ builds;
# - check-manifests.py: CRD structure and structural schemas, the examples
#   against the schemas, the CNI conflist against cni-shim's keys, the
#   DaemonSet's references, RBAC, and that the build holds every file.
#
# Exit 0 when every check passes. Needs python3 with PyYAML (python3-yaml).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE" || exit 1
KUBECTL=$("$HERE/kubectl.sh" --path) || exit 1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# kubectl keeps a cache under $HOME/.kube: a private HOME keeps it, and any
# real cluster's kubeconfig, out of this
export HOME=$WORK/home
mkdir -p "$HOME"
export KUBECONFIG=$WORK/kubeconfig
# 127.0.0.1:1: nothing listens there, so a connection is refused at once; the
# token keeps kubectl from prompting for credentials
cat > "$KUBECONFIG" <<'KC'
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: offline, user: {token: offline}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
KC

mapfile -t MANIFESTS < <(ls crds/*.yaml; echo rbac.yaml; echo configmap.yaml; echo daemonset.yaml)

OK=0
FAILED=0
pass() { OK=$((OK + 1)); echo "ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $*"; }
indent() { sed 's/^/      /'; }

echo "kubectl: $KUBECTL ($("$KUBECTL" version --client --short 2>/dev/null || "$KUBECTL" version --client 2>/dev/null | head -1))"

for f in "${MANIFESTS[@]}" examples/*.yaml; do
  if out=$("$KUBECTL" label --local -o name -f "$f" vswitch.dev/validate=1 </dev/null 2>&1); then
    pass "read $f: $(echo "$out" | tr '\n' ' ')"
  else
    fail "read $f"; echo "$out" | indent
  fi
done

# apply --dry-run=client
offline=0
for f in "${MANIFESTS[@]}"; do
  if out=$("$KUBECTL" apply --dry-run=client --request-timeout=10s -f "$f" </dev/null 2>&1); then
    pass "apply --dry-run=client -f $f: $(echo "$out" | tr '\n' ' ')"
  elif echo "$out" | grep -Eq '127\.0\.0\.1:1(:| was refused)'; then
    # kubectl asked the server (OpenAPI schema, discovery) before anything else
    offline=$((offline + 1))
    [ "$offline" = 1 ] && first=$(echo "$out" | grep -Em1 '127\.0\.0\.1:1')
  else
    fail "apply --dry-run=client -f $f"; echo "$out" | indent
  fi
done
if [ "$offline" -gt 0 ]; then
  echo "note  apply --dry-run=client needs an API server with this kubectl ($offline of ${#MANIFESTS[@]} files stopped before reading them: it asks the server for its OpenAPI schema and discovery first):"
  echo "$first" | indent
  echo "      deploy/validate-server.sh runs it, and --dry-run=server, against a real kube-apiserver"
fi

if "$KUBECTL" kustomize "$HERE" > "$WORK/build.yaml" 2> "$WORK/build.err"; then
  pass "kustomize deploy/: $(grep -c '^kind:' "$WORK/build.yaml") objects"
else
  fail "kustomize deploy/"; indent < "$WORK/build.err"
fi

if out=$(python3 "$HERE/check-manifests.py" --build "$WORK/build.yaml" 2>&1); then
  pass "$out"
else
  fail "check-manifests.py"; echo "$out" | indent
fi

if [ "$FAILED" -gt 0 ]; then
  echo "validate: $FAILED check(s) failed, $OK ok"
  exit 1
fi
echo "validate: all $OK checks ok"
