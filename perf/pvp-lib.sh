# perf/pvp-lib.sh -- shell functions shared by perf/pvp, perf/pvp-policy and
# perf/pvp-tunnel.
# Sourced, not run.  The functions work on the caller's globals:
#   WORK TAG PIDS QUITTABLE TIMEOUT_START TESTPMD   (all)
#   SWITCH RUN S_CPU T_CPU VHOST_SERVER SOCK0 SOCK1 S_FD S_PID OVSDIR
#   MEM_S S_EXTRA OVS_SOCKET_MEM OVS_VSWITCHD VSWITCHD VSWITCH_EXTRA VSCTL
#   HUGEPAGES                                        (the parts that use them)
# and expect the caller to define log().  Optional for start_vswitch:
#   VS_PORT0 VS_PORT1  names of its two vhost-user ports [vhu0 vhu1]
#   VS_OPTS            array of extra daemon options put before VSWITCH_EXTRA
#   VS_NOHUGE          nonempty: vswitchd runs without hugepages (--no-huge)
# shellcheck shell=bash

quote_args() {  # shell-quote only the words that need it
  local a out=""
  for a; do
    if [[ $a =~ ^[A-Za-z0-9_./,:=@%+-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
  done
  echo "${out# }"
}

stop_pid() {  # stop_pid PID [grace-seconds]: TERM, wait, KILL -- only this PID
  local pid=$1 grace=${2:-5} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# nap SEC: sleep in the background and wait for it, so that a TERM/INT trap
# runs at once instead of after the sleep
NAP_PID=""
nap() {
  sleep "$1" & NAP_PID=$!
  wait "$NAP_PID" || true
  NAP_PID=""
}

wait_for() {  # wait_for SECONDS CMD... : poll until CMD succeeds
  local t=$1; shift
  local end=$((SECONDS + t))
  until "$@"; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.2
  done
}

# ---------------------------------------------------------------- hugepages
setup_hugepages() {
  [ "$HUGEPAGES" -gt 0 ] || return 0
  local cur
  cur=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$cur" -lt "$HUGEPAGES" ]; then
    echo "$HUGEPAGES" > /proc/sys/vm/nr_hugepages
    log "nr_hugepages $cur -> $(cat /proc/sys/vm/nr_hugepages)"
  fi
  if ! grep -q ' hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages
    log "mounted hugetlbfs on /dev/hugepages"
  fi
}

# ---------------------------------------------------------------- testpmd helpers
# start_testpmd NAME FDVAR ARGS... : testpmd in interactive mode, stdin from a fifo
# we hold open.  Sets LAST_PID.
start_testpmd() {
  local name=$1 fdvar=$2; shift 2
  local fifo=$WORK/$name.fifo fd
  mkfifo "$fifo" || return 1
  : > "$WORK/$name.log"             # exists before anyone greps it
  exec {fd}<>"$fifo"               # read-write open never blocks
  # stdbuf: testpmd's printf output must be line-buffered or it lands in the
  # log long after the prompt that follows it
  stdbuf -oL -eL "$TESTPMD" "$@" <"$fifo" >"$WORK/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID"); QUITTABLE+=("$LAST_PID")
  printf -v "$fdvar" '%s' "$fd"
  echo "$TESTPMD $*" > "$WORK/$name.cmdline"
}

# tcmd FD LOG CMD : send a command to an interactive testpmd, wait for the next
# prompt and print the command's output (the log text between the two prompts)
tcmd() {
  local fd=$1 logf=$2 cmd=$3 off
  off=$(stat -c %s "$logf") || return 1
  echo "$cmd" 1>&"$fd" || return 1
  # the prompt preceding the command was printed before $off; wait for the next one
  if ! wait_for 15 bash -c "[ \$(tail -c +$((off + 1)) '$logf' | grep -o 'testpmd> ' | wc -l) -ge 1 ]"; then
    log "no prompt after '$cmd'"; return 1
  fi
  tail -c +$((off + 1)) "$logf"
}

alive() { kill -0 "$1" 2>/dev/null; }

start_io_ceiling() {
  local client=0
  [ "$VHOST_SERVER" = pod ] && client=1
  start_testpmd sw S_FD \
    --lcores "0@$T_CPU,1@$S_CPU" --no-pci --file-prefix="$TAG-s" $MEM_S \
    --vdev "net_vhost0,iface=$SOCK0,client=$client" \
    --vdev "net_vhost1,iface=$SOCK1,client=$client" \
    -- -i --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 --record-core-cycles $S_EXTRA || return 1
  S_PID=$LAST_PID
  wait_for "$TIMEOUT_START" bash -c "grep -q 'testpmd> ' '$WORK/sw.log' || ! kill -0 $S_PID" \
    && alive "$S_PID" || { log "switch testpmd failed:"; tail -20 "$WORK/sw.log" >&2; return 1; }
  tcmd "$S_FD" "$WORK/sw.log" "start" >/dev/null
}

ovs_vsctl() { ovs-vsctl --db="unix:$OVSDIR/db.sock" --timeout=20 "$@"; }
ovs_ofctl() { ovs-ofctl "$@"; }

# start_ovs_daemons: a private ovsdb-server and ovs-vswitchd (DPDK initialized,
# PMD on S_CPU) in WORK/SWITCH.ovs.RUN, no bridge yet.  Sets OVSDIR, S_PID.
start_ovs_daemons() {
  OVSDIR=$WORK/$SWITCH.ovs.$RUN
  rm -rf "$OVSDIR"; mkdir -p "$OVSDIR"
  export OVS_RUNDIR=$OVSDIR OVS_DBDIR=$OVSDIR OVS_LOGDIR=$OVSDIR OVS_SYSCONFDIR=$OVSDIR
  ovsdb-tool create "$OVSDIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
  ovsdb-server "$OVSDIR/conf.db" --remote="punix:$OVSDIR/db.sock" \
    --pidfile="$OVSDIR/ovsdb-server.pid" --log-file="$OVSDIR/ovsdb-server.log" \
    --unixctl="$OVSDIR/ovsdb-server.ctl" >"$OVSDIR/ovsdb-server.out" 2>&1 &
  PIDS+=("$!")
  wait_for "$TIMEOUT_START" test -S "$OVSDIR/db.sock" || { log "ovsdb-server did not start"; return 1; }
  ovs_vsctl --no-wait init || return 1
  local s_mask t_mask
  s_mask=$(printf '0x%x' $((1 << S_CPU)))
  t_mask=$(printf '0x%x' $((1 << T_CPU)))
  ovs_vsctl --no-wait set Open_vSwitch . \
    other_config:dpdk-init=true \
    other_config:dpdk-lcore-mask="$t_mask" \
    other_config:pmd-cpu-mask="$s_mask" \
    other_config:dpdk-socket-mem="$OVS_SOCKET_MEM" \
    other_config:dpdk-socket-limit="$OVS_SOCKET_MEM" \
    other_config:vhost-sock-dir="." \
    other_config:dpdk-extra="--no-pci --file-prefix=$TAG-ovs --in-memory" || return 1
  "$OVS_VSWITCHD" "unix:$OVSDIR/db.sock" --pidfile="$OVSDIR/ovs-vswitchd.pid" \
    --log-file="$OVSDIR/ovs-vswitchd.log" --unixctl="$OVSDIR/ovs-vswitchd.ctl" \
    -vconsole:off >"$OVSDIR/ovs-vswitchd.out" 2>&1 &
  S_PID=$!
  PIDS+=("$S_PID")
  wait_for "$TIMEOUT_START" test -S "$OVSDIR/ovs-vswitchd.ctl" || { log "ovs-vswitchd did not start"; tail -20 "$OVSDIR/ovs-vswitchd.log" >&2; return 1; }
  wait_for "$TIMEOUT_START" bash -c "[ \"\$(ovs-vsctl --db=unix:$OVSDIR/db.sock get Open_vSwitch . dpdk_initialized 2>/dev/null)\" = true ]" \
    || { log "DPDK init in OVS failed"; tail -30 "$OVSDIR/ovs-vswitchd.log" >&2; return 1; }
}

start_ovs() {
  start_ovs_daemons || return 1
  ovs_vsctl add-br br0 -- set bridge br0 datapath_type=netdev || return 1
  local i sock
  for i in 0 1; do
    if [ "$VHOST_SERVER" = switch ]; then
      ovs_vsctl add-port br0 "vhu$i" -- set Interface "vhu$i" type=dpdkvhostuser ofport_request=$((i + 1)) || return 1
    else
      sock=$WORK/vhu$i
      ovs_vsctl add-port br0 "vhu$i" -- set Interface "vhu$i" type=dpdkvhostuserclient \
        options:vhost-server-path="$sock" ofport_request=$((i + 1)) || return 1
    fi
  done
  if [ "$SWITCH" = ovs-flows ]; then
    ovs_ofctl del-flows br0 || return 1
    ovs_ofctl add-flow br0 in_port=1,actions=output:2 || return 1
    ovs_ofctl add-flow br0 in_port=2,actions=output:1 || return 1
  fi
  # OVS (server mode) names the sockets after the ports in vhost-sock-dir
  if [ "$VHOST_SERVER" = switch ]; then
    wait_for "$TIMEOUT_START" test -S "$OVSDIR/vhu0" -a -S "$OVSDIR/vhu1" || { log "OVS vhost sockets missing"; return 1; }
    SOCK0=$OVSDIR/vhu0; SOCK1=$OVSDIR/vhu1
  fi
}

start_vswitch() {
  local cmd=("$VSWITCHD" --lcores "0@$T_CPU,1@$S_CPU" --file-prefix "$TAG-v"
             --socket "$WORK/vswitchd.sock" ${VS_NOHUGE:+--no-huge}
             --port "${VS_PORT0:-vhu0}=vhost-server:$SOCK0" --port "${VS_PORT1:-vhu1}=vhost-server:$SOCK1"
             ${VS_OPTS[@]+"${VS_OPTS[@]}"})
  # VSWITCH_EXTRA is split into words on purpose
  # shellcheck disable=SC2086
  set -- "${cmd[@]}" $VSWITCH_EXTRA
  echo "$*" > "$WORK/sw.cmdline"
  "$@" >"$WORK/sw.log" 2>&1 &
  S_PID=$!
  PIDS+=("$S_PID")
  wait_for "$TIMEOUT_START" bash -c "[ -S '$SOCK0' -a -S '$SOCK1' ] || ! kill -0 $S_PID" || true
  if ! alive "$S_PID" || [ ! -S "$SOCK0" ] || [ ! -S "$SOCK1" ]; then
    if alive "$S_PID"; then log "vswitchd made no vhost-user sockets in ${TIMEOUT_START}s:"
    else log "vswitchd exited:"; fi
    log "  $*"
    tail -20 "$WORK/sw.log" >&2
    return 1
  fi
}

# vswitchd's own counters: "vsctl --json stats" (the command may not exist in
# every build: failures are ignored)
vswitch_stats() {  # vswitch_stats OUTFILE
  [ -x "$VSCTL" ] || return 1
  timeout 5 "$VSCTL" --socket "$WORK/vswitchd.sock" --json stats >"$1" 2>"$1.err" && [ -s "$1" ] || { rm -f "$1"; return 1; }
  rm -f "$1.err"
}

# busy cycles per packet of vswitchd's workers: over the window when both
# snapshots exist, else since start.  Prints nothing if the fields are missing.
vswitch_cpp() {  # vswitch_cpp END_JSON [BEGIN_JSON]
  python3 - "$@" <<'EOF' 2>/dev/null || true
import json, sys
def find_workers(d):
    # the Stats object itself, or wrapped in an envelope such as the control
    # socket's {"status":"ok","result":{"kind":"stats","data":{...}}}
    if isinstance(d, dict):
        if isinstance(d.get("workers"), list):
            return d["workers"]
        for v in d.values():
            w = find_workers(v)
            if w is not None:
                return w
    return None
def tot(path):
    with open(path) as f:
        ws = find_workers(json.load(f))
    return sum(int(w["busy_cycles"]) for w in ws), sum(int(w["packets"]) for w in ws)
c1, p1 = tot(sys.argv[1])
c0, p0 = 0, 0
if len(sys.argv) > 2:
    try:
        c0, p0 = tot(sys.argv[2])
    except Exception:
        pass
if p1 - p0 > 0:
    print("%.1f" % ((c1 - c0) / (p1 - p0)))
EOF
}

# stdin: output of "show port stats all" -> "rx0 tx0 rx1 tx1" (pps)
pps_of() {
  awk '/NIC statistics for port/ { p = $(NF-1) + 0 }
       /Rx-pps:/ { rx[p] = $2 }
       /Tx-pps:/ { tx[p] = $2 }
       END { printf "%d %d %d %d\n", rx[0], tx[0], rx[1], tx[1] }'
}

ovs_appctl() { ovs-appctl -t "$OVSDIR/ovs-vswitchd.ctl" "$@"; }

# share of CPU busy over 1 s while none of our processes run: foreign load
foreign_load() {
  local a b
  read -r -a a < <(head -1 /proc/stat)
  nap 1
  read -r -a b < <(head -1 /proc/stat)
  local busy=0 total=0 i d
  for i in 1 2 3 4 5 6 7 8; do
    d=$((b[i] - a[i])); total=$((total + d))
    [ "$i" != 4 ] && [ "$i" != 5 ] && busy=$((busy + d))
  done
  echo $((total > 0 ? 100 * busy / total : 0))
}

# "busy total ours" jiffies: machine-wide non-idle, all, and our processes
cpu_snapshot() {
  local a ours=0 pid f
  read -r -a a < <(head -1 /proc/stat)
  for pid in "${PIDS[@]}"; do
    # fields 14/15 of /proc/PID/stat: utime, stime (all threads); comm has no spaces here
    f=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -r -a f <<<"$f"
    ours=$((ours + f[13] + f[14]))
  done
  echo "$((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])) $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8])) $ours"
}

mpps() { echo "$1/1000000" | bc -l; }
