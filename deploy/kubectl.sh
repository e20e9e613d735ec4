#!/usr/bin/env bash
# Runs Debian 12's kubectl (package kubernetes-client, 1.20.2) with the
# arguments given, or prints its path with --path.
#
#   deploy/kubectl.sh [--path | KUBECTL-ARGS...]
#
# The validators use Debian's kubectl, the one our packaging documents, not
# whatever `kubectl` is first on PATH. Where kubernetes-client can't be
# installed because another package already owns /usr/bin/kubectl (some
# images carry a cloud SDK's), its .deb is fetched with apt-get download and
# unpacked under $VSWITCH_CACHE (default /var/cache/vswitch), leaving the
# system's kubectl alone. $KUBECTL overrides all of this.
set -euo pipefail

CACHE=${VSWITCH_CACHE:-/var/cache/vswitch}

find_kubectl() {
  if [ -n "${KUBECTL:-}" ]; then
    echo "$KUBECTL"
    return
  fi
  if [ "$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1)" = kubernetes-client ]; then
    echo /usr/bin/kubectl
    return
  fi
  local dir=$CACHE/kubernetes-client
  if [ ! -x "$dir/usr/bin/kubectl" ]; then
    echo "kubectl.sh: kubernetes-client is not installed; unpacking Debian's .deb into $dir" >&2
    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/.kubernetes-client.XXXXXX")
    # apt drops privileges to _apt for downloads: let it write there
    if id _apt >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then chown _apt "$tmp"; fi
    if ! (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null 2>&1); then
      # no package lists yet on a fresh machine
      [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null
      (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null) || {
        rm -rf "$tmp"
        echo "kubectl.sh: cannot download kubernetes-client (apt-get download, as root)" >&2
        exit 1
      }
    fi
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$tmp/root"
    dpkg-deb -f "$tmp"/kubernetes-client_*.deb Version > "$tmp/root/VERSION"
    rm -rf "$dir"
    mv "$tmp/root" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir/usr/bin/kubectl"
}

kubectl=$(find_kubectl)
if [ "${1:-}" = --path ]; then
  echo "$kubectl"
else
  exec "$kubectl" "$@"
fi
