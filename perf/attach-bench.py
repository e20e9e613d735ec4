#!/usr/bin/env python3
"""Measurements of perf/attach-bench (standard library only; run as root).

  attach-bench.py latency --work DIR --pods N --live K --warmup W --vswitchd-pid PID
  attach-bench.py tcp     --work DIR --seconds S --reps R --tool iperf3|python --vswitchd-pid PID
  attach-bench.py report  --work DIR --out REPORT.md
  attach-bench.py tcp-sink|tcp-source ...   (the python fallback for iperf3, run inside a pod)

The work dir holds the two network configs written by perf/attach-bench
(`vswitch.conf`, `bridge.conf`, each with its CNI_PATH in `<name>.path`).
Every netns and container this helper creates is appended to
`DIR/created.txt` *before* it is created, so that the bash script's EXIT
trap can remove whatever is left if this process dies; every server it
starts is appended to `DIR/pids.txt`.
"""

import argparse
import ctypes
import errno
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

SETS = ("vswitch", "bridge")
LABEL = {
    "vswitch": "vswitchd + vswitch-cni (own IPAM)",
    "bridge": "bridge + host-local (Linux bridge)",
}
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def log(msg):
    print(f"[attach-bench] {msg}", file=sys.stderr, flush=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def raw_icmp_socket_in(netns_path):
    """A raw ICMP socket living in the netns at netns_path (this thread
    enters the netns for the socket() call only)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        setns(target)
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)
    s.setblocking(False)
    return s


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    payload = struct.pack("!d", time.monotonic()) + bytes(range(48))
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    c = csum(hdr + payload)
    return struct.pack("!BBHHH", 8, 0, c, ident, seq) + payload


def first_reply(sock, dst, ident, interval, timeout):
    """Sends echo requests to dst every `interval` s until the first echo
    reply with our identifier arrives. Returns (monotonic time of the reply,
    requests sent, sequence number answered) or (None, sent, None) after
    `timeout` s."""
    start = time.monotonic()
    deadline = start + timeout
    seq = 0
    sent = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            return None, sent, None
        seq = (seq + 1) & 0xFFFF
        try:
            sock.sendto(echo_request(ident, seq), (dst, 0))
            sent += 1
        except OSError as e:
            # no route / neighbour failure yet: try again at the next tick
            if e.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOBUFS,
                               errno.EAGAIN, errno.ENETDOWN, errno.EINVAL):
                raise
        tick = min(time.monotonic() + interval, deadline)
        while True:
            left = tick - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                break
            while True:
                try:
                    pkt, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                t = time.monotonic()
                ihl = (pkt[0] & 0x0F) * 4
                if len(pkt) < ihl + 8:
                    continue
                typ, _code, _c, rid, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
                if typ == 0 and rid == ident and addr[0] == dst:
                    return t, sent, rseq


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))  # ceil
    return v[int(k) - 1]


# ------------------------------------------------------------------ CNI


class Net:
    """One CNI network (config + CNI_PATH) as a runtime sees it."""

    def __init__(self, work, name):
        self.name = name
        with open(os.path.join(work, f"{name}.conf")) as f:
            self.conf = f.read()
        with open(os.path.join(work, f"{name}.path")) as f:
            self.path = f.read().strip()
        ptype = json.loads(self.conf)["type"]
        for d in self.path.split(":"):
            cand = os.path.join(d, ptype)
            if os.access(cand, os.X_OK):
                self.plugin = cand
                break
        else:
            raise SystemExit(f"plugin {ptype} not found in CNI_PATH {self.path}")

    def run(self, command, cid, netns, ifname="eth0"):
        """Execs the plugin exactly as a runtime does; returns (rc, stdout)."""
        env = dict(os.environ)
        env.update(CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_NETNS=netns,
                   CNI_IFNAME=ifname, CNI_PATH=self.path)
        p = subprocess.run([self.plugin], input=self.conf.encode(), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


class Pod:
    def __init__(self, work, net, tag):
        self.net = net
        self.ns = tag
        self.cid = f"{tag}-cid"
        self.path = f"/var/run/netns/{tag}"
        self.ip = None
        with open(os.path.join(work, "created.txt"), "a") as f:
            f.write(f"{net.name} {self.ns} {self.cid}\n")
        subprocess.run(["ip", "netns", "add", self.ns], check=True)

    def add(self):
        rc, out = self.net.run("ADD", self.cid, self.path)
        if rc != 0:
            return rc, out
        try:
            res = json.loads(out)
            self.ip = res["ips"][0]["address"].split("/")[0]
        except (ValueError, KeyError, IndexError):
            return 99, out
        return 0, out

    def delete(self):
        """CNI DEL, then the netns; returns the plugin's DEL time in ms."""
        t = time.monotonic()
        rc, out = self.net.run("DEL", self.cid, self.path)
        dt = (time.monotonic() - t) * 1e3
        if rc != 0:
            log(f"DEL {self.cid} on {self.net.name}: rc={rc} {out.strip()[:300]}")
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)
        return dt


# ------------------------------------------------------------ CPU accounting


def _stat_ticks(pid, children=False):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None, 0
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    t = int(f[11]) + int(f[12])  # utime, stime
    if children:
        t += int(f[13]) + int(f[14])  # cutime, cstime (reaped children)
    return comm, t


class Cpu:
    """Machine-wide CPU use over a phase, split into ours (this helper and the
    children it reaped, the given long-lived pids, vswitchd) and the rest."""

    def __init__(self, ours):
        self.ours = list(ours)
        self.t0 = time.monotonic()
        self.m0 = self._machine()
        self.o0 = self._ours()
        self.p0 = self._all()

    @staticmethod
    def _machine():
        with open("/proc/stat") as f:
            a = [int(x) for x in f.readline().split()[1:9]]
        busy = a[0] + a[1] + a[2] + a[5] + a[6] + a[7]
        return busy, sum(a)

    def _ours(self):
        t = _stat_ticks("self", children=True)[1]
        for p in self.ours:
            t += _stat_ticks(p)[1]
        return t

    @staticmethod
    def _all():
        d = {}
        for e in os.listdir("/proc"):
            if e.isdigit():
                c, t = _stat_ticks(e)
                if c is not None:
                    d[int(e)] = (c, t)
        return d

    def done(self):
        m1, o1, p1 = self._machine(), self._ours(), self._all()
        dbusy, dtot = m1[0] - self.m0[0], m1[1] - self.m0[1]
        ours = o1 - self.o0
        foreign = max(0.0, 100.0 * (dbusy - ours) / dtot) if dtot > 0 else 0.0
        me = os.getpid()
        skip = set(self.ours) | {me}
        others = {}
        for pid, (c, t) in p1.items():
            if pid in skip:
                continue
            # a process that started during the phase counts with all its time
            d = t - self.p0[pid][1] if pid in self.p0 and self.p0[pid][0] == c else t
            if d > 0:
                others[c] = others.get(c, 0) + d
        hz = os.sysconf("SC_CLK_TCK")
        secs = time.monotonic() - self.t0
        top = sorted(others.items(), key=lambda kv: -kv[1])[:5]
        return {
            "seconds": round(secs, 1),
            "machine_busy_pct": round(100.0 * dbusy / dtot, 1) if dtot else 0.0,
            "foreign_pct": round(foreign, 1),
            "top_others": [f"{c}:{t / hz:.1f}s" for c, t in top],
        }


# ------------------------------------------------------------------ latency


def measure_one(pod, ident, interval, timeout):
    sock = raw_icmp_socket_in(pod.path)
    try:
        t0 = time.monotonic()
        rc, out = pod.add()
        t1 = time.monotonic()
        if rc != 0:
            return {"ok": False, "error": f"ADD rc={rc}: {out.strip()[:300]}",
                    "add_ms": (t1 - t0) * 1e3}
        t2, sent, seq = first_reply(sock, pod.anchor_ip, ident, interval, timeout)
    finally:
        sock.close()
    r = {"add_ms": (t1 - t0) * 1e3, "pings": sent, "answered": seq, "ip": pod.ip}
    if t2 is None:
        r.update(ok=False, error=f"no echo reply from {pod.anchor_ip} within {timeout}s")
    else:
        r.update(ok=True, total_ms=(t2 - t0) * 1e3, reply_ms=(t2 - t1) * 1e3)
    return r


def cmd_latency(a):
    nets = {n: Net(a.work, n) for n in SETS}
    pid = os.getpid()
    anchors = {}
    live = {n: [] for n in SETS}
    rows = []
    fails = {n: 0 for n in SETS}
    cpu = Cpu([a.vswitchd_pid])
    try:
        for n in SETS:
            p = Pod(a.work, nets[n], f"ab{n[:2]}{pid}-anchor")
            rc, out = p.add()
            if rc != 0:
                raise SystemExit(f"{n}: ADD of the anchor pod failed: {out.strip()}")
            anchors[n] = p
            log(f"{n}: anchor pod {p.ns} at {p.ip}")
        total = a.warmup + a.pods
        for i in range(total):
            # alternate which set goes first so that neither always follows the other
            order = SETS if i % 2 == 0 else SETS[::-1]
            for n in order:
                if len(live[n]) >= a.live:
                    old = live[n].pop(0)
                    dt = old.delete()
                    for r in rows:
                        if r["set"] == n and r["ns"] == old.ns:
                            r["del_ms"] = dt
                p = Pod(a.work, nets[n], f"ab{n[:2]}{pid}-{i}")
                p.anchor_ip = anchors[n].ip
                r = measure_one(p, (pid + i * 2 + (n == "bridge")) & 0xFFFF,
                                a.interval / 1e3, a.timeout)
                r.update(set=n, i=i - a.warmup, ns=p.ns, warmup=i < a.warmup)
                rows.append(r)
                live[n].append(p)
                if not r["ok"]:
                    fails[n] += 1
                    log(f"{n} pod {i}: {r['error']}")
                    if fails[n] > max(3, a.pods // 10):
                        raise SystemExit(f"{n}: too many failures, giving up")
            if (i + 1) % 10 == 0 or i + 1 == total:
                msg = []
                for n in SETS:
                    v = [r["total_ms"] for r in rows if r["set"] == n and r["ok"] and not r["warmup"]]
                    if v:
                        msg.append(f"{n} p50={pct(v, 50):.1f} ms max={max(v):.1f} ms")
                log(f"{i + 1}/{total} pods: " + ", ".join(msg))
    finally:
        usage = cpu.done()
        for n in SETS:
            for p in live[n]:
                dt = p.delete()
                for r in rows:
                    if r["set"] == n and r["ns"] == p.ns:
                        r["del_ms"] = dt
            if n in anchors:
                anchors[n].delete()
        with open(os.path.join(a.work, "latency.json"), "w") as f:
            json.dump({"rows": rows, "cpu": usage, "pods": a.pods, "live": a.live,
                       "warmup": a.warmup, "interval_ms": a.interval}, f, indent=1)
    log(f"latency phase: {usage['seconds']} s, machine busy {usage['machine_busy_pct']} %, "
        f"others {usage['foreign_pct']} % ({', '.join(usage['top_others'])})")


# ---------------------------------------------------------------------- tcp


def track(work, proc):
    with open(os.path.join(work, "pids.txt"), "a") as f:
        f.write(f"{proc.pid}\n")


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_server(a, pod, port):
    if a.tool == "iperf3":
        cmd = ["ip", "netns", "exec", pod.ns, "iperf3", "-s", "-B", pod.ip, "-p", str(port)]
    else:
        cmd = ["ip", "netns", "exec", pod.ns, sys.executable, os.path.abspath(__file__),
               "tcp-sink", "--bind", pod.ip, "--port", str(port)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    track(a.work, p)
    # wait until it listens (ss in the pod's netns)
    for _ in range(100):
        out = subprocess.run(["ip", "netns", "exec", pod.ns, "ss", "-Htln", f"sport = :{port}"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        if out.strip():
            break
        time.sleep(0.05)
    return p


def run_client(a, client, server_ip, port, raw_path):
    if a.tool == "iperf3":
        cmd = ["ip", "netns", "exec", client.ns, "iperf3", "-c", server_ip, "-p", str(port),
               "-t", str(a.seconds), "-J"]
    else:
        cmd = ["ip", "netns", "exec", client.ns, sys.executable, os.path.abspath(__file__),
               "tcp-source", "--to", server_ip, "--port", str(port), "--seconds", str(a.seconds)]
    for attempt in range(3):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = p.stdout.decode(errors="replace")
        with open(raw_path, "w") as f:
            f.write(out + p.stderr.decode(errors="replace"))
        try:
            j = json.loads(out)
        except ValueError:
            j = {"error": f"rc={p.returncode} {p.stderr.decode(errors='replace').strip()[:200]}"}
        if "error" not in j:
            break
        log(f"client attempt {attempt + 1}: {j['error']}")
        time.sleep(1)
    if "error" in j:
        return {"ok": False, "error": j["error"]}
    if a.tool == "iperf3":
        e = j["end"]
        return {"ok": True, "gbps": e["sum_received"]["bits_per_second"] / 1e9,
                "retransmits": e["sum_sent"].get("retransmits")}
    return {"ok": True, "gbps": j["gbps"], "retransmits": None}


def cmd_tcp(a):
    nets = {n: Net(a.work, n) for n in SETS}
    pid = os.getpid()
    pods, servers = {}, {}
    rows = []
    port = 5201
    rawdir = os.path.join(a.work, "raw")
    os.makedirs(rawdir, exist_ok=True)
    try:
        for n in SETS:
            srv = Pod(a.work, nets[n], f"ab{n[:2]}{pid}-tcps")
            cli = Pod(a.work, nets[n], f"ab{n[:2]}{pid}-tcpc")
            for p in (srv, cli):
                rc, out = p.add()
                if rc != 0:
                    raise SystemExit(f"{n}: ADD failed: {out.strip()}")
            pods[n] = (srv, cli)
            servers[n] = start_server(a, srv, port)
            log(f"{n}: tcp server {srv.ns} {srv.ip}, client {cli.ns} {cli.ip}")
        for rep in range(a.reps):
            order = SETS if rep % 2 == 0 else SETS[::-1]
            for n in order:
                srv, cli = pods[n]
                cpu = Cpu([a.vswitchd_pid, servers[n].pid])
                r = run_client(a, cli, srv.ip, port, os.path.join(rawdir, f"tcp-{n}-{rep + 1}.json"))
                r.update(set=n, rep=rep + 1, cpu=cpu.done())
                rows.append(r)
                if r["ok"]:
                    log(f"{n} run {rep + 1}: {r['gbps']:.2f} Gbit/s "
                        f"(retransmits {r['retransmits']}, others used {r['cpu']['foreign_pct']} % of the CPUs)")
                else:
                    log(f"{n} run {rep + 1}: FAILED {r['error']}")
    finally:
        for n in servers:
            stop(servers[n])
        for n in pods:
            for p in pods[n]:
                p.delete()
        with open(os.path.join(a.work, "tcp.json"), "w") as f:
            json.dump({"rows": rows, "seconds": a.seconds, "reps": a.reps, "tool": a.tool}, f, indent=1)


def cmd_tcp_sink(a):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.bind, a.port))
    ls.listen(4)
    while True:
        c, _ = ls.accept()
        with c:
            while c.recv(1 << 20):
                pass


def cmd_tcp_source(a):
    try:
        s = socket.create_connection((a.to, a.port), timeout=5)
    except OSError as e:
        print(json.dumps({"error": str(e)}))
        return
    buf = b"\0" * (1 << 17)
    n = 0
    t0 = time.monotonic()
    end = t0 + a.seconds
    while time.monotonic() < end:
        n += s.send(buf)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the sink closes after it has read everything
    t = time.monotonic() - t0
    s.close()
    print(json.dumps({"gbps": n * 8 / t / 1e9, "bytes": n, "seconds": t}))


# ------------------------------------------------------------------- report


def median(v):
    v = sorted(v)
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def cmd_report(a):
    lat = tcp = None
    p = os.path.join(a.work, "latency.json")
    if os.path.exists(p):
        with open(p) as f:
            lat = json.load(f)
    p = os.path.join(a.work, "tcp.json")
    if os.path.exists(p):
        with open(p) as f:
            tcp = json.load(f)
    meta = ""
    p = os.path.join(a.work, "meta.txt")
    if os.path.exists(p):
        with open(p) as f:
            meta = f.read()
    out = []
    table = []
    if lat:
        table.append(f"Pod attach latency, CNI ADD until the first echo reply from the anchor pod "
                     f"({lat['pods']} pods per plugin, ms):")
        table.append("")
        table.append("| plugin | ok/pods | p50 | p99 | max | ADD alone p50 | ADD p99 | ADD max "
                     "| reply after ADD p50 | reply p99 | reply max | DEL p50 |")
        table.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in SETS:
            rs = [r for r in lat["rows"] if r["set"] == n and not r["warmup"]]
            ok = [r for r in rs if r["ok"]]
            if not ok:
                table.append(f"| {LABEL[n]} | 0/{len(rs)} | | | | | | | | | | |")
                continue
            tot = [r["total_ms"] for r in ok]
            add = [r["add_ms"] for r in ok]
            rep = [r["reply_ms"] for r in ok]
            dels = [r["del_ms"] for r in rs if "del_ms" in r]
            table.append(
                f"| {LABEL[n]} | {len(ok)}/{len(rs)} | {pct(tot, 50):.1f} | {pct(tot, 99):.1f} | "
                f"{max(tot):.1f} | {pct(add, 50):.1f} | {pct(add, 99):.1f} | {max(add):.1f} | "
                f"{pct(rep, 50):.1f} | {pct(rep, 99):.1f} | {max(rep):.1f} | "
                f"{(pct(dels, 50) if dels else float('nan')):.1f} |")
        table.append("")
    if tcp:
        table.append(f"Pod-to-pod TCP throughput ({tcp['tool']}, {tcp['seconds']} s per run, "
                     f"{tcp['reps']} runs per path):")
        table.append("")
        table.append("| path | median Gbit/s | runs Gbit/s | retransmits | others' CPU % per run |")
        table.append("|---|---|---|---|---|")
        for n in SETS:
            rs = [r for r in tcp["rows"] if r["set"] == n]
            g = [r["gbps"] for r in rs if r["ok"]]
            runs = " ".join(f"{r['gbps']:.2f}" if r["ok"] else "failed" for r in rs)
            retr = " ".join("-" if r.get("retransmits") is None else str(r["retransmits"])
                            for r in rs if r["ok"])
            fo = " ".join(str(r["cpu"]["foreign_pct"]) for r in rs)
            med = f"{median(g):.2f}" if g else "-"
            table.append(f"| {LABEL[n]} | {med} | {runs} | {retr} | {fo} |")
        table.append("")
    out.append("# Pod attach benchmark (perf/attach-bench)")
    out.append("")
    out += table
    if lat:
        c = lat["cpu"]
        out.append("## How it was measured")
        out.append("")
        out.append(
            f"Per plugin an anchor pod is attached first. Then, alternating between the two plugins "
            f"(which one goes first alternates too), {lat['warmup']} unmeasured warm-up pod(s) and "
            f"{lat['pods']} measured pods: `ip netns add`, a raw ICMP socket opened in the new netns, "
            f"then the clock starts (`time.monotonic()`), the plugin is executed as a runtime does "
            f"(CNI_COMMAND=ADD, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME=eth0, CNI_PATH, config on "
            f"stdin) and, once it has returned, an ICMP echo request goes to the anchor pod every "
            f"{lat['interval_ms']} ms until the first echo reply; that reply stops the clock. "
            f"*ADD alone* is the plugin's run time, *reply after ADD* the rest. At most "
            f"{lat['live']} measured pods per plugin are alive at once (plus the anchor): before "
            f"the next ADD the oldest is deleted (CNI DEL, then `ip netns del`; *DEL p50* is the "
            f"plugin's DEL time). Percentiles are nearest-rank (p99 of 100 values is the 99th "
            f"smallest).")
        out.append("")
        out.append(f"CPU during the latency phase ({c['seconds']} s): machine busy "
                   f"{c['machine_busy_pct']} %, of which not by this benchmark's processes "
                   f"{c['foreign_pct']} % (kernel workers doing work for our pods, netns teardown and "
                   f"IPv6 addrconf, count as not ours); top other processes: "
                   f"{', '.join(c['top_others']) or '-'}.")
        out.append("")
        for n in SETS:
            ok = [r for r in lat["rows"] if r["set"] == n and r["ok"] and not r["warmup"]]
            if ok:
                first = sum(1 for r in ok if r.get("answered") == 1)
                out.append(f"- {LABEL[n]}: the first echo request was the one answered for "
                           f"{first}/{len(ok)} pods; most requests sent before a reply: "
                           f"{max(r['pings'] for r in ok)}.")
        drops = []
        for phase, fname in (("after the latency phase", "vswitchd-stats-after-latency.json"),
                             ("after the TCP phase", "vswitchd-stats-after-tcp.json")):
            p = os.path.join(a.work, fname)
            try:
                with open(p) as f:
                    st = json.load(f)
                nz = {k: v for k, v in st.get("drops", {}).items() if v}
                drops.append(f"{phase}: " + (", ".join(f"{k}={v}" for k, v in nz.items()) or "none"))
            except (OSError, ValueError):
                pass
        if drops:
            out.append(f"- vswitchd's drop counters (cumulative) {'; '.join(drops)}.")
        out.append("")
        fails = [r for r in lat["rows"] if not r["ok"]]
        if fails:
            out.append("Failures:")
            out.append("")
            for r in fails:
                out.append(f"- {r['set']} pod {r['i']}: {r['error']}")
            out.append("")
    if tcp:
        out.append(f"TCP: two pods per plugin, a server in one "
                   f"({'`iperf3 -s`' if tcp['tool'] == 'iperf3' else 'a python sink'}) and the client "
                   f"in the other, {tcp['seconds']} s per run, runs alternating between the paths; "
                   f"the rate is what the receiver got. vswitchd keeps running (its worker polling) "
                   f"during the Linux bridge runs too.")
        out.append("")
        for r in tcp["rows"]:
            c = r["cpu"]
            out.append(f"- {r['set']} run {r['rep']}: "
                       + (f"{r['gbps']:.3f} Gbit/s" if r["ok"] else f"failed ({r['error']})")
                       + f"; machine busy {c['machine_busy_pct']} %, others {c['foreign_pct']} %"
                       + (f" ({', '.join(c['top_others'])})" if c["top_others"] else ""))
        out.append("")
    if meta:
        out.append("## Setup")
        out.append("")
        out.append("```")
        out.append(meta.rstrip())
        out.append("```")
        out.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(out))
    if lat:
        with open(os.path.join(os.path.dirname(a.out), "pods.csv"), "w") as f:
            f.write("plugin,pod,warmup,ok,add_ms,reply_ms,total_ms,del_ms,pings,answered,ip,error\n")
            for r in lat["rows"]:
                f.write(",".join(str(x) for x in (
                    r["set"], r["i"], int(r["warmup"]), int(r["ok"]),
                    f"{r['add_ms']:.3f}", f"{r.get('reply_ms', float('nan')):.3f}",
                    f"{r.get('total_ms', float('nan')):.3f}", f"{r.get('del_ms', float('nan')):.3f}",
                    r.get("pings", ""), r.get("answered", ""), r.get("ip", ""),
                    '"' + r.get("error", "").replace('"', "'") + '"')) + "\n")
    print("\n".join(table))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--work", required=True)
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--live", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--interval", type=float, default=1.0, help="ms between echo requests")
    p.add_argument("--timeout", type=float, default=5.0, help="s until a pod counts as failed")
    p.add_argument("--vswitchd-pid", type=int, required=True)
    p = sub.add_parser("tcp")
    p.add_argument("--work", required=True)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tool", choices=("iperf3", "python"), default="iperf3")
    p.add_argument("--vswitchd-pid", type=int, required=True)
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("tcp-sink")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("tcp-source")
    p.add_argument("--to", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args()
    {"latency": cmd_latency, "tcp": cmd_tcp, "report": cmd_report,
     "tcp-sink": cmd_tcp_sink, "tcp-source": cmd_tcp_source}[a.cmd](a)


if __name__ == "__main__":
    main()
