#!/usr/bin/env bash
# Prepares a Debian 12 host for vswitchd: packages, hugepages, hugetlbfs.
# Idempotent: run it as often as you like. Needs root.
#
#   deploy/host-setup.sh [--hugepages N] [--no-bench] [--no-packages]
#
# --hugepages N   2 MiB pages to have reserved (default 1024; never lowers)
# --no-bench      skip the benchmark's packages (OVS-DPDK)
# --no-packages   only hugepages
set -euo pipefail

PAGES=1024
BENCH=1
PACKAGES=1
while [ $# -gt 0 ]; do
  case "$1" in
    --hugepages) PAGES=$2; shift 2;;
    --no-bench) BENCH=0; shift;;
    --no-packages) PACKAGES=0; shift;;
    -h|--help) sed -n '2,10p' "$0"; exit 0;;
    *) echo "host-setup: unknown option $1" >&2; exit 2;;
  esac
done

log() { echo "[host-setup] $*" >&2; }
[ "$(id -u)" = 0 ] || { echo "host-setup: needs root (packages, hugepages)" >&2; exit 1; }

# build and run: DPDK and its headers, bindgen's libclang, pkg-config;
# tests: testpmd comes with dpdk, iproute2 and python3 for the TAP checks;
# benchmark: OVS-DPDK as the reference switch, bc for the harness
need=(dpdk dpdk-dev libdpdk-dev pkg-config libclang-dev clang iproute2 iputils-ping python3 bc procps containernetworking-plugins iperf3 tshark python3-scapy bridge-utils ethtool)
[ "$BENCH" = 1 ] && need+=(openvswitch-switch-dpdk)
# deploy/validate.sh: Debian's kubectl and PyYAML. kubernetes-client ships
# /usr/bin/kubectl without Replaces, so where another package owns that file
# (some images carry a cloud SDK's kubectl) installing it fails and would take
# every other package of this list down with it; deploy/kubectl.sh then
# unpacks Debian's into a cache of its own instead
need+=(python3-yaml)
# tests/metrics: a real Prometheus scrapes vswitchd (a private one per test)
need+=(prometheus)
kubectl_owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
if [ ! -e /usr/bin/kubectl ] || [ "$kubectl_owner" = kubernetes-client ]; then
  need+=(kubernetes-client)
fi

if [ "$PACKAGES" = 1 ]; then
  missing=()
  for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # the OVS and Prometheus packages would start daemons of their own (where
    # an init runs); the harness and the tests run private ones: a
    # policy-rc.d of ours, for this install only, keeps the packages' from
    # starting
    ours_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      ours_policy=1
    fi
    rc=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [ "$ours_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { log "apt-get install failed ($rc)"; exit "$rc"; }
  else
    log "packages present"
  fi
  if [ "$BENCH" = 1 ] && systemctl is-active -q openvswitch-switch 2>/dev/null; then
    # a system OVS would take CPU from the benchmark
    systemctl stop openvswitch-switch || true
  fi
fi

cur=$(cat /proc/sys/vm/nr_hugepages)
if [ "$cur" -lt "$PAGES" ]; then
  echo "$PAGES" > /proc/sys/vm/nr_hugepages
  got=$(cat /proc/sys/vm/nr_hugepages)
  log "hugepages: $cur -> $got (asked $PAGES)"
  [ "$got" -ge "$PAGES" ] || log "WARNING: only $got hugepages could be reserved (memory fragmented?)"
fi
if ! awk '$3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages
  log "mounted hugetlbfs on /dev/hugepages"
fi
mkdir -p /run/vswitch
log "ready: $(grep -E 'HugePages_(Total|Free)' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
