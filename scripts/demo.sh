#!/usr/bin/env bash
# The demo: builds the switch, prepares the host, starts vswitchd with two
# testpmd pods attached over vhost-user and two kernel pods (network
# namespaces) attached through the CNI plugin, has the kernel pods ping each
# other, and shows live per-port packet rates.
#
#   scripts/demo.sh [--duration SEC | --forever] [--no-huge]
#
# The pods are dpdk-testpmd processes, each with one virtio-user port on a
# vhost-user socket of the switch, in macswap mode: each returns what it
# receives to its sender, so a few injected bursts circulate pod -> switch ->
# pod through L2 learning. Stops cleanly after --duration seconds (default
# 10), or at Ctrl-C with --forever.
set -euo pipefail

DUR=10
FOREVER=0
NOHUGE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DUR=$2; shift 2;;
    --forever) FOREVER=1; shift;;
    --no-huge) NOHUGE=1; shift;;
    -h|--help) sed -n '2,12p' "$0"; exit 0;;
    *) echo "demo: unknown option $1" >&2; exit 2;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/lib.sh"
log() { echo "[demo] $*" >&2; }
[ "$(id -u)" = 0 ] || { echo "demo: run as root (hugepages, vhost-user sockets): sudo $0" >&2; exit 1; }
find_cargo || exit 1

if [ -n "$NOHUGE" ]; then
  "$ROOT/deploy/host-setup.sh" --no-bench --hugepages 0
else
  "$ROOT/deploy/host-setup.sh" --no-bench
fi
if [ -x "$ROOT/target/release/vswitchd" ]; then
  log "building (release)"
else
  log "building (release; the first time takes about 10 minutes on 2 cores)..."
fi
# on a terminal cargo's own progress; quiet in logs
QUIET=(-q)
[ -t 2 ] && QUIET=()
(cd "$ROOT" && "$CARGO" build --release "${QUIET[@]}" -p vswitch -p ctl -p cni-shim)
VSWITCHD=$ROOT/target/release/vswitchd
VSCTL=$ROOT/target/release/vsctl
CNI=$ROOT/target/release/vswitch-cni

WORK=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
SOCK=/run/vswitch/vswitchd.sock
if [ -S "$SOCK" ] && "$VSCTL" --socket "$SOCK" status >/dev/null 2>&1; then
  log "a vswitchd already serves $SOCK; the demo runs its own beside it"
  SOCK=$WORK/vswitchd.sock
fi
PIDS=()
POD_FDS=()
NETNS=()
cni() {  # cni COMMAND NETNS: the plugin, called as a container runtime calls it
  CNI_COMMAND=$1 CNI_CONTAINERID=demo-$2 CNI_NETNS=/var/run/netns/$2 CNI_IFNAME=eth0 \
    CNI_PATH=$(dirname "$CNI") "$CNI" <<<"{\"cniVersion\": \"1.0.0\", \"name\": \"demo\", \"type\": \"vswitch-cni\", \"socket\": \"$SOCK\"}"
}
cleanup() {
  local fd pid ns
  trap - EXIT INT TERM
  for ns in "${NETNS[@]}"; do
    cni DEL "$ns" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for fd in "${POD_FDS[@]}"; do echo quit >&"$fd" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MEM_SW=()
MEM_POD=(--in-memory --single-file-segments -m 128)
if [ -n "$NOHUGE" ]; then
  MEM_SW=(--no-huge)
  MEM_POD=(--no-huge -m 256)
fi

log "starting vswitchd (control socket $SOCK)"
"$VSWITCHD" --socket "$SOCK" --lcores 0@0,1@1 --file-prefix "vsdemo$$" "${MEM_SW[@]}" \
  --state-dir "$WORK/state" \
  --port testpmd-a=vhost-server:"$WORK/testpmd-a.sock" \
  --port testpmd-b=vhost-server:"$WORK/testpmd-b.sock" >"$WORK/vswitchd.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; kill -0 "${PIDS[0]}" 2>/dev/null || break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$WORK/vswitchd.log" >&2; echo "demo: vswitchd did not start" >&2; exit 1; }

# start_pod NAME MAC PEER_MAC: testpmd reading commands from a fifo we hold open
start_pod() {
  local name=$1 mac=$2 peer=$3 fifo fd
  fifo=$WORK/$name.fifo
  mkfifo "$fifo"
  exec {fd}<>"$fifo"
  stdbuf -oL dpdk-testpmd --lcores 0@0,1@0 --no-pci --file-prefix "$name$$" "${MEM_POD[@]}" \
    --vdev "net_virtio_user0,path=$WORK/$name.sock,server=0,mac=$mac,queue_size=256" \
    -- -i --forward-mode=macswap --nb-cores=1 --total-num-mbufs=4096 --eth-peer=0,"$peer" \
    <"$fifo" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  POD_FDS+=("$fd")
  eval "FD_$(echo "$name" | tr - _)=$fd"
}
log "starting testpmd pods testpmd-a (02:00:00:00:00:0a) and testpmd-b (02:00:00:00:00:0b)"
start_pod testpmd-a 02:00:00:00:00:0a 02:00:00:00:00:0b
start_pod testpmd-b 02:00:00:00:00:0b 02:00:00:00:00:0a
for name in testpmd-a testpmd-b; do
  for _ in $(seq 150); do grep -q 'testpmd> ' "$WORK/$name.log" && break; sleep 0.2; done
  grep -q 'testpmd> ' "$WORK/$name.log" || { tail -20 "$WORK/$name.log" >&2; echo "demo: $name did not start" >&2; exit 1; }
done
echo "start" >&"$FD_testpmd_b"

# both links up, then inject; a burst sent before the switch's queue is up is
# lost, so look at the switch's counters and inject again if nothing moves
for try in 1 2 3 4 5; do
  for _ in $(seq 50); do
    [ "$("$VSCTL" --socket "$SOCK" --json port list | grep -c '"link_up": true')" = 2 ] && break
    sleep 0.2
  done
  echo "stop" >&"$FD_testpmd_a"; sleep 0.2
  echo "start tx_first 8" >&"$FD_testpmd_a"
  sleep 1
  if "$VSCTL" --socket "$SOCK" stats --rate --count 1 --interval 0.5 | awk 'NR > 1 && $2 + 0 == 0 { z = 1 } END { exit z }'; then
    break
  fi
  log "traffic not circulating yet, injecting again ($try)"
done

log "kernel pods: an IPPool, two network namespaces attached through vswitch-cni"
cat > "$WORK/pool.yaml" <<'YAML'
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: demo-pool
spec:
  cidr: 10.99.0.0/24
  blockSize: 26
YAML
"$VSCTL" --socket "$SOCK" apply -f "$WORK/pool.yaml"
for ns in kpod-a$$ kpod-b$$; do
  ip netns add "$ns"
  NETNS+=("$ns")
  cni ADD "$ns" > "$WORK/$ns.result" || { cat "$WORK/$ns.result" >&2; echo "demo: CNI ADD failed" >&2; exit 1; }
done
"$VSCTL" --socket "$SOCK" get pods
B_IP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ips"][0]["address"].split("/")[0])' "$WORK/kpod-b$$.result")
log "kpod-a pings kpod-b ($B_IP) through vswitchd:"
ip netns exec "kpod-a$$" ping -c 3 -i 0.2 "$B_IP"

log "vswitchd forwards between the pods; live rates (vsctl --socket $SOCK stats --rate):"
if [ "$FOREVER" = 1 ]; then
  "$VSCTL" --socket "$SOCK" stats --rate || true
else
  "$VSCTL" --socket "$SOCK" stats --rate --count "$DUR"
fi
"$VSCTL" --socket "$SOCK" fdb show
