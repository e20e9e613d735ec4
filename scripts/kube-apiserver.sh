#!/usr/bin/env bash
# scripts/kube-apiserver.sh -- the real API server the tests and deploy/validate-server.sh run: builds
# kube-apiserver from Debian's `kubernetes` source package and runs it with Debian's etcd.
# Build and run a real kube-apiserver (v1.20.2) + etcd (3.4.23) using only Debian bookworm's registry.
# Source: Debian source package `kubernetes` 1.20.5+really1.20.2 (orig tarball has vendor/ and cmd/kube-apiserver).
# Usage: kube-apiserver.sh build  WORKDIR      (~5-6 min on 2 cores; needs ~2 GB disk)
#        kube-apiserver.sh start  WORKDIR      (etcd on 127.0.0.1:2379, apiserver on https://127.0.0.1:6443, token "admin-token")
#        kube-apiserver.sh stop   WORKDIR
set -euo pipefail
cmd=${1:?build|start|stop}; W=$(realpath -m "${2:?workdir}"); mkdir -p "$W"
case "$cmd" in
build)
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends golang-go rsync jq etcd-server openssl curl \
      golang-github-modern-go-reflect2-dev dpkg-dev >/dev/null
  # private apt state, so the system's sources.list is untouched
  mkdir -p "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/apt/empty"
  # deb-src lines for the system's own Debian mirrors (one-line lists and deb822 .sources)
  {
    { grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } | { grep -i debian || true; } | sed 's/^deb /deb-src /'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] && awk 'BEGIN{RS=""} /Types:[^\n]*deb/ && /debian/ {
          u=s=c=""; n=split($0, L, "\n")
          for (i=1;i<=n;i++) { if (L[i] ~ /^URIs:/) u=substr(L[i],6); if (L[i] ~ /^Suites:/) s=substr(L[i],8); if (L[i] ~ /^Components:/) c=substr(L[i],12) }
          ns=split(s, S, " "); for (j=1;j<=ns;j++) print "deb-src" u " " S[j] c }' "$f"
    done
  } | sort -u > "$W/apt/sources.list"
  [ -s "$W/apt/sources.list" ] || { echo "no Debian mirror in the system's apt sources" >&2; exit 1; }
  APTO=(-o Dir::Etc::SourceList="$W/apt/sources.list" -o Dir::Etc::SourceParts="$W/apt/empty" -o Dir::State::Lists="$W/apt/lists" -o Dir::Cache="$W/apt/cache")
  apt-get "${APTO[@]}" update >/dev/null
  (cd "$W" && apt-get "${APTO[@]}" source --download-only kubernetes >/dev/null 2>&1)
  tar xzf "$W"/kubernetes_*.orig.tar.gz -C "$W"
  K=$(ls -d "$W"/kubernetes-1.*/ | head -1); K=${K%/}
  # vendored reflect2 v1.0.1 segfaults under Go >= 1.18 (json-iterator map encoding, e.g. on CRD create); Debian ships the fixed 1.0.2
  rm -rf "$K/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$K/vendor/github.com/modern-go/reflect2"
  rm -f "$K/vendor/github.com/modern-go/reflect2/go.mod"
  mkdir -p "$K/.go/src/k8s.io"; ln -sfn ../../.. "$K/.go/src/k8s.io/kubernetes"
  (cd "$K" && env HOME="$W/home" GOPATH="$K/.go" CGO_ENABLED=0 GOFLAGS= make WHAT=cmd/kube-apiserver >"$W/build.log" 2>&1)
  cp "$K/_output/bin/kube-apiserver" "$W/kube-apiserver"
  "$W/kube-apiserver" --version ;;
start)
  mkdir -p "$W/run/etcd" "$W/run/certs"
  [ -f "$W/run/sa.key" ] || { openssl genrsa -out "$W/run/sa.key" 2048 2>/dev/null; openssl rsa -in "$W/run/sa.key" -pubout -out "$W/run/sa.pub" 2>/dev/null; }
  echo "admin-token,admin,admin,system:masters" > "$W/run/tokens.csv"
  etcd --data-dir "$W/run/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
       --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
       --initial-cluster default=http://127.0.0.1:2380 >"$W/run/etcd.log" 2>&1 & echo $! >"$W/run/etcd.pid"
  "$W/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 --bind-address=127.0.0.1 --secure-port=6443 \
       --advertise-address=127.0.0.1 --endpoint-reconciler-type=none --cert-dir="$W/run/certs" \
       --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$W/run/sa.pub" \
       --service-account-signing-key-file="$W/run/sa.key" --api-audiences=https://kubernetes.default.svc \
       --token-auth-file="$W/run/tokens.csv" --authorization-mode=RBAC --service-cluster-ip-range=10.96.0.0/24 \
       --insecure-port=0 --allow-privileged=true >"$W/run/apiserver.log" 2>&1 & echo $! >"$W/run/apiserver.pid"
  for i in $(seq 1 60); do
    curl -sk -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer admin-token' https://127.0.0.1:6443/readyz 2>/dev/null | grep -q 200 && break; sleep 1
  done
  cat > "$W/run/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: admin-token}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
KC
  echo "KUBECONFIG=$W/run/kubeconfig" ;;
stop)
  for p in apiserver etcd; do [ -f "$W/run/$p.pid" ] && kill "$(cat "$W/run/$p.pid")" 2>/dev/null || true; done ;;
esac
