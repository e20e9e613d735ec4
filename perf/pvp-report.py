#!/usr/bin/env python3
"""pvp-report.py REPORT_DIR -- turn perf/pvp's runs.csv into report.md and runs.svg.

Reads REPORT_DIR/runs.csv and REPORT_DIR/meta.txt (written by perf/pvp,
perf/pvp-policy or perf/pvp-tunnel; optional keys title, svg_title, y_label,
rate_desc, params_md and csv_desc replace perf/pvp's wording, refs names the
switches of the ratio columns [io-ceiling,ovs-normal], and REPORT_DIR/extra.md, when there,
is added after the runs), writes
REPORT_DIR/report.md and REPORT_DIR/runs.svg, and prints the RESULT lines and
the markdown summary table on stdout.  Standard library only.

Statistics:
  median/min/max   over the runs of a switch with status "ok"
  ratio to REF     per round r: mpps(switch, r) / mpps(REF, r), over the rounds
                   both have; the median (min, max) of these ratios.  Rounds
                   are interleaved, so a per-round ratio cancels most of the
                   slow drift of the machine.
"""
import csv
import math
import os
import platform
import shutil
import subprocess
import sys
from xml.sax.saxutils import escape

REFS = ("io-ceiling", "ovs-normal")
COLORS = {
    "io-ceiling": "#7f7f7f",
    "ovs-normal": "#1f77b4",
    "ovs-flows": "#17becf",
    "ovs-routed": "#17becf",
    "vswitch": "#d62728",
    "custom": "#9467bd",
}
PALETTE = ["#2ca02c", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22"]


def median(v):
    v = sorted(v)
    n = len(v)
    if n == 0:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def read_meta(path):
    meta = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, v = line.split("=", 1)
                    meta[k] = v
    except OSError:
        pass
    return meta


def run(cmd, timeout=10):
    """First non-empty output of a command, or None."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        return None
    out = (p.stdout or p.stderr).strip()
    return out or None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    return "unknown"


def versions(meta):
    v = []
    dpdk = run(["dpkg-query", "-W", "-f", "${Version}", "dpdk"])
    lib = run(["pkg-config", "--modversion", "libdpdk"])
    s = "DPDK: "
    s += ("package dpdk %s" % dpdk) if dpdk else "package dpdk not found"
    if lib:
        s += ", libdpdk %s" % lib
    v.append(s)
    if meta.get("ovs_vswitchd"):
        out = run([meta["ovs_vswitchd"], "--version"])
        pkg = run(["dpkg-query", "-W", "-f", "${Version}", "openvswitch-switch-dpdk"])
        s = "OVS: "
        s += " / ".join(out.splitlines()) if out else meta["ovs_vswitchd"]
        if pkg:
            s += " (package openvswitch-switch-dpdk %s)" % pkg
        v.append(s)
    if meta.get("vswitchd"):
        path = meta["vswitchd"]
        s = "vswitchd: %s" % path
        out = run([path, "--version"], timeout=5)
        if out:
            s += ", `%s`" % out.splitlines()[0]
        try:
            import datetime
            mt = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
            s += ", built %s" % mt.strftime("%Y-%m-%d %H:%M UTC")
        except OSError:
            pass
        v.append(s)
    repo = meta.get("repo")
    if repo and shutil.which("git"):
        head = run(["git", "-C", repo, "log", "-1", "--format=%h %cd", "--date=short"])
        if head:
            dirty = run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"])
            v.append("repository: commit %s%s" % (head, " (with uncommitted changes)" if dirty else ""))
        else:
            v.append("repository: no commit yet")
    return v


def load(dirpath):
    rows = []
    with open(os.path.join(dirpath, "runs.csv"), newline="") as f:
        for r in csv.DictReader(f):
            r["run"] = int(r["run"])
            r["mpps"] = float(r["mpps"]) if r.get("mpps") else None
            rows.append(r)
    return rows


def fmt(x, d=3):
    return "" if x is None else "%.*f" % (d, x)


class Analysis:
    def __init__(self, rows, meta):
        order = [s for s in meta.get("switches", "").split(",") if s]
        for r in rows:
            if r["switch"] not in order:
                order.append(r["switch"])
        self.switches = order
        self.ok = {s: {} for s in order}          # switch -> {run: mpps}
        self.noisy = {s: [] for s in order}       # switch -> [(run, mpps)]
        self.failed = {}                          # switch -> (run, reason)
        self.cpp = {s: [] for s in order}         # switch -> cycles/pkt of ok runs
        for r in rows:
            s = r["switch"]
            if r["status"] == "ok":
                self.ok[s][r["run"]] = r["mpps"]
                if r.get("switch_cycles_per_pkt"):
                    try:
                        self.cpp[s].append(float(r["switch_cycles_per_pkt"]))
                    except ValueError:
                        pass
            elif r["status"] == "noisy":
                self.noisy[s].append((r["run"], r["mpps"]))
            elif r["status"] == "failed":
                self.failed[s] = (r["run"], r.get("extra", ""))
        # references for the ratio columns: meta "refs" (comma-separated) or REFS
        refs = [s for s in meta.get("refs", "").split(",") if s] or REFS
        self.refs = [s for s in refs if s in order]
        if not self.refs and len(order) > 1:
            self.refs = [order[0]]

    def stats(self, s):
        v = list(self.ok[s].values())
        if not v:
            return None
        return median(v), min(v), max(v), len(v)

    def ratio(self, s, ref):
        a, b = self.ok[s], self.ok[ref]
        rs = [a[r] / b[r] for r in sorted(a) if r in b and b[r]]
        if not rs:
            return None
        return median(rs), min(rs), max(rs), len(rs)


def result_lines(an, length):
    out = []
    for s in an.switches:
        st = an.stats(s)
        if st:
            line = "RESULT switch=%s len=%s runs=%d median=%.3f min=%.3f max=%.3f Mpps" % (
                s, length, st[3], st[0], st[1], st[2])
            for ref in an.refs:
                if ref == s:
                    continue
                rt = an.ratio(s, ref)
                if rt:
                    line += " ratio_vs_%s median=%.3f min=%.3f max=%.3f" % (ref, rt[0], rt[1], rt[2])
            out.append(line)
        if s in an.failed:
            run_, reason = an.failed[s]
            out.append("FAILED switch=%s len=%s run=%d reason=%s" % (s, length, run_, reason))
    return out


def summary_table(an):
    head = ["switch", "median Mpps", "min", "max"] + ["ratio to %s" % r for r in an.refs]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for s in an.switches:
        st = an.stats(s)
        if not st:
            if s in an.failed:
                cells = [s, "FAILED (run %d: %s)" % an.failed[s], "", ""] + [""] * len(an.refs)
            else:
                cells = [s, "no completed run", "", ""] + [""] * len(an.refs)
        else:
            name = s + (" (failed in run %d)" % an.failed[s][0] if s in an.failed else "")
            cells = [name, fmt(st[0]), fmt(st[1]), fmt(st[2])]
            for ref in an.refs:
                if ref == s:
                    cells.append("1 (reference)")
                else:
                    rt = an.ratio(s, ref)
                    cells.append(fmt(rt[0]) if rt else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------- SVG
def nice_step(span, target=6):
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def svg_plot(an, meta, machine):
    n = len(an.switches)
    slot = 170
    left, right, top, bottom = 84, 24, 78, 60 + 18 * max(1, len(an.refs))
    sub = "%s runs per switch, %s s windows; %s; %s" % (
        meta.get("runs", "?"), meta.get("duration", "?"), meta.get("started", ""), machine)
    title = "%s, %s B frames" % (meta.get("svg_title", "PVP loopback"), meta.get("len", "?"))
    status = meta.get("status", "complete")
    need = max(len(sub) * 6.4, len(title) * 9.6 + 14 + (0 if status == "complete" else (len(status) + 2) * 9.2))
    pw = max(slot * n, 460, int(need) - left + 10)
    ph = 320
    W, H = left + pw + right, top + ph + bottom
    slot = pw / n
    vals = [v for s in an.switches for v in an.ok[s].values()]
    vals += [v for s in an.switches for _, v in an.noisy[s] if v is not None]
    vmax = max(vals) if vals else 1.0
    step = nice_step(vmax * 1.12)
    ymax = step * math.ceil(vmax * 1.12 / step)

    def Y(v):
        return top + ph - v / ymax * ph

    o = []
    a = o.append
    a('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
      'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">' % (W, H, W, H))
    a('<rect x="0" y="0" width="%d" height="%d" fill="white"/>' % (W, H))
    a('<text x="%d" y="26" font-size="16" font-weight="bold">%s</text>' % (left, escape(title)))
    if meta.get("status", "complete") != "complete":
        a('<text x="%d" y="26" font-size="13" font-weight="bold" fill="#c00">[%s]</text>' % (
            left + int(len(title) * 9.6) + 14, escape(meta["status"])))
    a('<text x="%d" y="46" font-size="11" fill="#555">%s</text>' % (left, escape(sub)))
    # grid and y axis
    t = 0.0
    while t <= ymax + 1e-9:
        y = Y(t)
        a('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e3e3e3" stroke-width="1"/>' % (left, y, left + pw, y))
        a('<text x="%d" y="%.1f" font-size="11" text-anchor="end" fill="#333">%s</text>' % (
            left - 6, y + 4, ("%g" % round(t, 6))))
        t += step
    a('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>' % (left, top, left, top + ph))
    a('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>' % (left, top + ph, left + pw, top + ph))
    a('<text transform="translate(%d,%.1f) rotate(-90)" font-size="12" text-anchor="middle" fill="#333">'
      '%s</text>' % (22, top + ph / 2, escape(meta.get("y_label", "Mpps delivered to the pods (both directions)"))))
    # legend
    lx, ly = left, 64
    a('<rect x="%d" y="%d" width="14" height="10" fill="#999" fill-opacity="0.35" stroke="#999"/>' % (lx, ly - 9))
    a('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555" stroke-width="3"/>' % (lx, ly - 9, lx + 14, ly - 9))
    a('<text x="%d" y="%d" font-size="11" fill="#333">median (value at its right)</text>' % (lx + 19, ly))
    a('<circle cx="%d" cy="%d" r="4.5" fill="#555" stroke="white"/>' % (lx + 180, ly - 4))
    a('<text x="%d" y="%d" font-size="11" fill="#333">one run (rounds left to right)</text>' % (lx + 188, ly))
    if any(an.noisy.values()):
        a('<circle cx="%d" cy="%d" r="4" fill="none" stroke="#888" stroke-width="1.5"/>' % (lx + 365, ly - 4))
        a('<text x="%d" y="%d" font-size="11" fill="#333">discarded (noisy)</text>' % (lx + 373, ly))
    extra_colors = iter(PALETTE)
    for i, s in enumerate(an.switches):
        cx = left + slot * (i + 0.5)
        col = COLORS.get(s) or next(extra_colors, "#333")
        st = an.stats(s)
        # x labels: name, then ratios
        a('<text x="%.1f" y="%d" font-size="13" font-weight="bold" text-anchor="middle">%s</text>' % (
            cx, top + ph + 20, escape(s)))
        ly2 = top + ph + 38
        if st:
            for ref in an.refs:
                if ref == s:
                    txt = "reference"
                else:
                    rt = an.ratio(s, ref)
                    txt = ("%.2f\u00d7 %s" % (rt[0], ref)) if rt else ""
                if txt:
                    a('<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#444">%s</text>' % (
                        cx, ly2, escape(txt)))
                ly2 += 16
        if not st:
            a('<text x="%.1f" y="%.1f" font-size="14" font-weight="bold" text-anchor="middle" fill="#c00">'
              '%s</text>' % (cx, top + ph / 2, "FAILED" if s in an.failed else "no run"))
            continue
        med = st[0]
        bw = min(slot * 0.5, 90)
        a('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.28" stroke="%s" '
          'stroke-opacity="0.6"><title>%s median %.3f Mpps</title></rect>' % (
              cx - bw / 2, Y(med), bw, Y(0) - Y(med), col, col, escape(s), med))
        a('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>' % (
            cx - bw / 2, Y(med), cx + bw / 2, Y(med), col))
        runs = sorted(an.ok[s].items())
        k = len(runs)
        dstep = min(11.0, (bw * 0.8) / max(k - 1, 1))
        for j, (r, v) in enumerate(runs):
            x = cx + (j - (k - 1) / 2) * dstep
            a('<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s" stroke="white" stroke-width="1">'
              '<title>%s run %d: %.3f Mpps</title></circle>' % (x, Y(v), col, escape(s), r, v))
        for r, v in an.noisy[s]:
            if v is not None:
                a('<circle cx="%.1f" cy="%.1f" r="4" fill="none" stroke="#888" stroke-width="1.5">'
                  '<title>%s run %d (discarded, noisy): %.3f Mpps</title></circle>' % (
                      cx - bw / 2 - 9, Y(v), escape(s), r, v))
        # the median's value, right of the bar at the height of its line
        a('<text x="%.1f" y="%.1f" font-size="12" font-weight="bold" fill="#222">%.2f</text>' % (
            cx + bw / 2 + 4, Y(med) + 4, med))
        top_val = max([med] + [v for _, v in runs])
        if s in an.failed:
            a('<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle" fill="#c00">failed in run %d</text>' % (
                cx, Y(top_val) - 12, an.failed[s][0]))
    a("</svg>")
    return "\n".join(o) + "\n"


# ---------------------------------------------------------------- markdown
def report_md(an, meta, rows, machine_lines, version_lines, table):
    L = []
    a = L.append
    a("# %s: %s, %s B frames" % (meta.get("title", "PVP benchmark"), ", ".join(an.switches), meta.get("len", "?")))
    a("")
    status = meta.get("status", "complete")
    if status != "complete":
        a("**Status: %s.**%s" % (status, (" Failures: " + meta["failed"]) if meta.get("failed") else ""))
        a("")
    a("Median of %s runs per switch (runs interleaved round-robin, everything restarted per run), "
      "%s s measurement window after %s s warm-up. Mpps = %s." % (
          meta.get("runs", "?"), meta.get("duration", "?"), meta.get("warmup", "?"),
          meta.get("rate_desc", "packets per second the switch delivered "
                   "to the two pod ports together (both directions)")))
    if an.refs:
        a("Ratios are the median over rounds of switch / reference within the same round.")
    a("")
    L.extend(table)
    a("")
    a("![runs](runs.svg)")
    a("")
    a("## Runs")
    a("")
    nr = max([r["run"] for r in rows] or [0])
    head = ["switch"] + ["run %d" % i for i in range(1, nr + 1)] + ["busy cycles/pkt (median)"]
    a("| " + " | ".join(head) + " |")
    a("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for s in an.switches:
        cells = [s]
        for i in range(1, nr + 1):
            if i in an.ok[s]:
                cells.append(fmt(an.ok[s][i]))
            elif s in an.failed and an.failed[s][0] == i:
                cells.append("failed")
            else:
                cells.append("")
        c = median(an.cpp[s])
        cells.append(fmt(c, 0) if c is not None else "")
        a("| " + " | ".join(cells) + " |")
    a("")
    a("Busy cycles per packet are the switch's own accounting over the window: testpmd "
      "`--record-core-cycles` (io-ceiling), OVS `pmd-stats-show` avg processing cycles per packet, "
      "vswitchd `workers[].busy_cycles / packets` from `vsctl --json stats`.")
    a("")
    extra_md = os.path.join(meta.get("_dir", ""), "extra.md")
    if meta.get("_dir") and os.path.exists(extra_md):
        # further sections a harness wrote beside runs.csv (perf/pvp-policy: per-run checks)
        with open(extra_md) as f:
            a(f.read().rstrip("\n"))
        a("")
    ratio_rows = []
    for s in an.switches:
        for ref in an.refs:
            if ref != s and an.ratio(s, ref):
                rt = an.ratio(s, ref)
                ratio_rows.append("| %s | %s | %.3f | %.3f | %.3f | %d |" % (s, ref, rt[0], rt[1], rt[2], rt[3]))
    if ratio_rows:
        a("Per-round ratios:")
        a("")
        a("| switch | reference | median | min | max | rounds |")
        a("|---|---|---:|---:|---:|---:|")
        L.extend(ratio_rows)
        a("")
    noisy = [(s, r, v) for s in an.switches for r, v in an.noisy[s]]
    if noisy:
        a("Discarded runs (other processes used more than %s%% of the CPUs during the window): %s." % (
            meta.get("max_foreign", "?"),
            ", ".join("%s run %d (%s Mpps)" % (s, r, fmt(v)) for s, r, v in noisy)))
        a("")
    foreign = [int(r["foreign_cpu_pct"]) for r in rows if r["status"] == "ok" and r.get("foreign_cpu_pct")]
    if foreign and max(foreign) > 5:
        a("Warning: other processes used up to %d%% of the machine during a measurement window "
          "(column `foreign_cpu_pct` of runs.csv); those runs are noisy." % max(foreign))
        a("")
    for s, (r, reason) in an.failed.items():
        a("**%s failed in run %d**: %s (logs in `raw/failed-%s-run%d/`)." % (s, r, reason, s, r))
        a("")
    a("## Setup")
    a("")
    a("- command: `%s`" % meta.get("cmdline", "?"))
    a("- date (UTC): %s to %s" % (meta.get("started", "?"), meta.get("finished", "?")))
    for m in machine_lines:
        a("- " + m)
    for v in version_lines:
        a("- " + v)
    if meta.get("params_md"):
        a("- parameters: " + meta["params_md"])
    else:
        a("- parameters: len=%s B, window=%s s, warm-up=%s s, tx_first bursts=%s, pod fwd mode=%s, "
          "vhost-user server=%s, switch CPU=%s, pod CPU=%s, queue size=%s" % tuple(
              meta.get(k, "?") for k in ("len", "duration", "warmup", "bursts", "pod_mode",
                                         "vhost_server", "s_cpu", "t_cpu", "queue_size")))
    a("- EAL memory: pods `%s`, io-ceiling `%s`; hugepages: %s" % (
        meta.get("mem_pod", "?"), meta.get("mem_switch", "?"), meta.get("hugepages", "?")))
    if meta.get("vswitch_extra"):
        a("- vswitchd extra args: `%s`" % meta["vswitch_extra"])
    if meta.get("custom_cmd"):
        a("- custom switch: `%s`" % meta["custom_cmd"])
    if meta.get("workdir"):
        a("- work dir (logs): `%s`" % meta["workdir"])
    a("")
    a("## Files")
    a("")
    a("- `runs.csv`: " + meta.get("csv_desc", "one row per run: switch, run (round), attempt, status (ok | noisy | failed), "
      "mpps, pod rx/tx per port (Mpps), prerun_busy_pct (machine load before the run), "
      "foreign_cpu_pct (CPU used by other processes during the window), switch_cycles_per_pkt, extra."))
    a("- `runs.svg`: each dot one run, bar and thick line the median.")
    a("- `raw/`: counters per run (OVS pmd-stats and FDB, vswitchd stats JSON), logs of failed runs.")
    a("")
    return "\n".join(L)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    d = sys.argv[1]
    meta = read_meta(os.path.join(d, "meta.txt"))
    meta["_dir"] = d
    rows = load(d)
    an = Analysis(rows, meta)
    length = meta.get("len", "?")
    machine = "%d CPUs, %s" % (os.cpu_count() or 0, cpu_model())
    machine_lines = [
        "machine: %s, nproc %d, CPU model: %s, memory %s, kernel %s" % (
            platform.node(), os.cpu_count() or 0, cpu_model(), mem_total(), platform.release()),
    ]
    table = summary_table(an)
    with open(os.path.join(d, "runs.svg"), "w") as f:
        f.write(svg_plot(an, meta, machine))
    with open(os.path.join(d, "report.md"), "w") as f:
        f.write(report_md(an, meta, rows, machine_lines, versions(meta), table))
    for line in result_lines(an, length):
        print(line)
    print()
    for line in table:
        print(line)
    print()


if __name__ == "__main__":
    main()
