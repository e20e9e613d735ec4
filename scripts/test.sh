#!/usr/bin/env bash
# The whole test suite, from a clean clone, as root:
#
#   scripts/test.sh
#
# Installs what it needs (Debian packages, hugepages), then runs: format and
# lint checks, the manifests offline and against a real kube-apiserver, unit
# tests, the DPDK integration tests (vswitchd with testpmd pods over
# vhost-user), the criterion benches once each as tests, a short run of every
# fuzz target, the demo, and a short PVP harness run. Every step must pass;
# the last line counts them.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/lib.sh
[ "$(id -u)" = 0 ] || { echo "test: run as root (hugepages, vhost-user, TAP): sudo $0" >&2; exit 1; }
find_cargo || exit 1

PASSED=0
FAILED=0
FAILED_STEPS=()
step() {
  local name=$1; shift
  echo
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "<== $name: ok ($((SECONDS - t0)) s)"
  else
    FAILED=$((FAILED + 1))
    FAILED_STEPS+=("$name")
    echo "<== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}

demo_check() {
  local out
  out=$(scripts/demo.sh --duration 3 2>&1) || { echo "$out"; return 1; }
  echo "$out" | tail -12
  # the kernel pods attached through the CNI plugin reached each other
  echo "$out" | grep -q '3 packets transmitted, 3 received' || { echo "$out"; return 1; }
  # every rate line of both testpmd pods must be nonzero
  echo "$out" | awk '$1 ~ /^testpmd-[ab]$/ && NF == 4 { n[$1]++; if ($2 + 0 == 0 || $3 + 0 == 0) bad = 1 }
    END { exit !(n["testpmd-a"] >= 3 && n["testpmd-b"] >= 3 && !bad) }'
}

pvp_smoke() {
  local out
  out=$(perf/pvp --switches io-ceiling,vswitch --runs 1 --duration 3 --report "$(mktemp -d)" 2>&1) || { echo "$out"; return 1; }
  echo "$out" | grep -E '^RESULT|^\|'
  [ "$(echo "$out" | grep -c '^RESULT ')" = 2 ]
}

pvp_policy_smoke() {
  local out
  out=$(perf/pvp-policy --switches io-ceiling,vswitch-policy --runs 1 --duration 3 --report "$(mktemp -d)" 2>&1) || { echo "$out"; return 1; }
  echo "$out" | grep -E '^RESULT|^\|'
  [ "$(echo "$out" | grep -c '^RESULT ')" = 2 ]
}

pvp_service_smoke() {
  local out
  out=$(perf/pvp-service --switches io-ceiling,vswitch-service --runs 1 --duration 3 --report "$(mktemp -d)" 2>&1) || { echo "$out"; return 1; }
  echo "$out" | grep -E '^RESULT|^\|'
  [ "$(echo "$out" | grep -c '^RESULT ')" = 2 ]
}
# the house rules (scripts/check-house.py): no import cycles between module
# files; vswitch's rooms import only the rooms below them (ARCHITECTURE.md:
# packet, dpdk, wire, counters, tables, pipeline, capture, inquiry, snapshot,
# worker, control),
# so dpdk/ knows nothing of the pipeline; `unsafe` only in dpdk-sys and
# vswitch's dpdk/
house_check() {
  local rc=0 other
  python3 scripts/check-house.py --self-test || rc=1
  python3 scripts/check-house.py vswitch/src --unsafe-only dpdk \
    --forbid 'dpdk->pipeline,tables,control,worker,snapshot,wire,counters,capture' \
    --forbid 'wire->tables,pipeline,control,worker,snapshot,counters,dpdk,capture' \
    --forbid 'tables->pipeline,control,worker,snapshot,dpdk,capture,inquiry' \
    --forbid 'pipeline->control,worker,snapshot,dpdk,capture,inquiry' \
    --forbid 'capture->dpdk,counters,tables,pipeline,snapshot,worker,control,inquiry' \
    --forbid 'inquiry->dpdk,pipeline,snapshot,worker,control,capture' \
    --forbid 'snapshot->control,worker' --forbid 'worker->control' \
    --forbid 'packet->dpdk,wire,counters,tables,pipeline,snapshot,worker,control,capture' \
    --forbid 'counters->dpdk,tables,pipeline,snapshot,worker,control,capture' || rc=1
  other=$(ls -d */src | grep -v '^vswitch/')
  # shellcheck disable=SC2086
  python3 scripts/check-house.py src $other || rc=1
  python3 scripts/check-house.py --repo-unsafe --allow-path vswitch/src/dpdk || rc=1
  return $rc
}
if ! deploy/host-setup.sh; then
  echo "host setup failed"; echo "0 passed, 1 failed"; exit 1
fi
export CARGO_TERM_COLOR=never
step "cargo fmt --check" cargo fmt --all -- --check
step "deploy/ manifests (Debian's kubectl, offline)" deploy/validate.sh
# takes the same host lock and ports as the tests' API server (crate testkube)
step "deploy/ against a real kube-apiserver (server-side dry run, RBAC)" deploy/validate-server.sh
step "house rules: module cycles, layering, unsafe" house_check
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --release -- -D warnings
step "cargo test (unit and DPDK integration)" cargo test --workspace --release
step "criterion benches run once" cargo bench -p perf -- --test
step "fuzz short run" scripts/fuzz.sh --short
step "demo: kernel pods ping, testpmd pods show nonzero rates" demo_check
step "PVP harness smoke run" pvp_smoke
step "policy PVP harness smoke run" pvp_policy_smoke
step "service PVP harness smoke run" pvp_service_smoke

echo
if [ "$FAILED" -gt 0 ]; then
  echo "failed steps: ${FAILED_STEPS[*]}"
fi
echo "suite: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
