#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo fuzz, libFuzzer) and runs each in
# turn, from its committed seeds (fuzz/seeds/T) and the corpus earlier runs
# grew (fuzz/corpus/T, not committed):
#
#   scripts/fuzz.sh --short             # the test command's run: ~20 s a target
#   scripts/fuzz.sh --runs 10000000     # N inputs a target (the long run)
#   scripts/fuzz.sh --time 600 pipeline_pod   # seconds a target; some targets only
#
# Installs what it needs when missing: a nightly toolchain (rustup) and
# cargo-fuzz, kept in /var/cache/vswitch/cargo-fuzz. Prints one line per
# target (inputs run, inputs a second, seconds); a crash fails the run and
# leaves its input in fuzz/artifacts/T/. Replay one with
#   /var/cache/vswitch/fuzz-target/x86_64-unknown-linux-gnu/release/T fuzz/artifacts/T/crash-...
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/lib.sh

TARGETS_ALL=(pipeline_pod pipeline_uplink pipeline_host control cni manifest)
CACHE=${VSWITCH_CACHE:-/var/cache/vswitch}/cargo-fuzz
MODE=short
ARG=""
TARGETS=()
while [ $# -gt 0 ]; do
  case $1 in
    --short) MODE=short ;;
    --runs) MODE=runs; ARG=${2:?--runs N}; shift ;;
    --time) MODE=time; ARG=${2:?--time SECONDS}; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${TARGETS_ALL[@]}")

find_cargo || exit 1
if ! command -v rustup >/dev/null; then
  echo "fuzz: rustup is needed for the nightly toolchain cargo fuzz builds with" >&2
  exit 1
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal || exit 1
fi
if ! [ -x "$CACHE/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz into $CACHE"
  mkdir -p "$CACHE"
  cargo install cargo-fuzz --locked --root "$CACHE" || exit 1
fi
export PATH="$CACHE/bin:$PATH"

t0=$SECONDS
# Without a sanitizer: the code under test is safe Rust (unsafe lives only in
# vswitch's dpdk/, which no target reaches), so ASan would find nothing that
# bounds checks and debug assertions (on in cargo fuzz builds) do not, at
# half the speed.
# built where later runs find it: a cold build of the targets (the whole
# workspace's dependencies, with coverage instrumentation) takes minutes
TARGET_DIR=${VSWITCH_CACHE:-/var/cache/vswitch}/fuzz-target
if ! cargo +nightly fuzz build --sanitizer none --target-dir "$TARGET_DIR"; then
  echo "fuzz: build failed" >&2
  exit 1
fi
echo "fuzz: built in $((SECONDS - t0)) s"
BIN=$TARGET_DIR/x86_64-unknown-linux-gnu/release

rc=0
for t in "${TARGETS[@]}"; do
  [ -x "$BIN/$t" ] || { echo "fuzz: no target $t (have: ${TARGETS_ALL[*]})" >&2; rc=1; continue; }
  case $MODE in
    short) case $t in pipeline_*) limit=(-max_total_time=20) ;; *) limit=(-max_total_time=15) ;; esac ;;
    runs) limit=(-runs="$ARG") ;;
    time) limit=(-max_total_time="$ARG") ;;
  esac
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  s0=$SECONDS
  # new inputs go to the first directory; the seeds and the inputs of
  # crashes fixed (fuzz/regressions/T) stay as committed
  dirs=("fuzz/corpus/$t" "fuzz/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  "$BIN/$t" "${dirs[@]}" "${limit[@]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1
  status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  if [ $status = 0 ]; then
    echo "fuzz $t: ${runs:-?} inputs, ${rate:-?}/s, $((SECONDS - s0)) s, ${cov:-cov: ?}: ok"
  else
    rc=1
    echo "fuzz $t: FAILED after ${runs:-?} inputs (exit $status)"
    grep -E '^(==[0-9]+==|thread|panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -n 20
    tail -n 30 "$log"
  fi
  rm -f "$log"
done
exit $rc
