#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/run's helper: process snapshots (procstat), one-line summaries (brief),
and the final report (report): JSON, markdown tables, gnuplot PNGs; with
--check, the smoke test's assertions (bytes verified, bursts served)."""

import argparse
import datetime
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- procstat

def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    # fields after comm start at field 3 (state); utime is field 14
    ppid = int(rest[1])
    cpu = sum(int(rest[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    user = int(rest[11]) + int(rest[13])
    return comm, ppid, cpu, user


def _machine():
    """Busy and total ticks over all CPUs: every process, softirq and
    ksoftirqd, so the whole cost of a path (client and server included)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    total = sum(v[:8])  # guest time is already inside user
    return total - idle, total


def _status(pid):
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss, threads


def procstat(pids):
    """Per root PID, the sum over it and its descendants (socat and sshd fork)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                _, ppid, _, _ = _stat(d)
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    roots = []
    for root in pids:
        root = int(root)
        agg = {"pid": root, "comm": "", "cpu_ticks": 0, "user_ticks": 0, "rss_kb": 0,
               "pss_kb": 0, "threads": 0, "nprocs": 0}
        todo = [root]
        while todo:
            pid = todo.pop()
            try:
                comm, _, cpu, user = _stat(pid)
                rss, pss, threads = _status(pid)
            except (OSError, ValueError, IndexError):
                continue
            if pid == root:
                agg["comm"] = comm
            agg["cpu_ticks"] += cpu
            agg["user_ticks"] += user
            agg["rss_kb"] += rss
            agg["pss_kb"] += pss
            agg["threads"] += threads
            agg["nprocs"] += 1
            todo.extend(children.get(pid, []))
        roots.append(agg)
    tot = {k: sum(r[k] for r in roots) for k in ("cpu_ticks", "user_ticks", "rss_kb", "pss_kb",
                                                  "threads", "nprocs")}
    tot["machine_busy_ticks"], tot["machine_ticks"] = _machine()
    tot["hz"] = HZ
    tot["roots"] = roots
    return tot


# ---------------------------------------------------------------- brief

def brief(r):
    if r.get("mode") == "burst":
        lat = r.get("latency_us", {})
        return (f"{r.get('served')}/{r.get('clients')} served, failed {r.get('failed')}, "
                f"mismatched {r.get('mismatched')}; first byte p50 {lat.get('p50', 0):.1f} us "
                f"p99 {lat.get('p99', 0):.1f} us max {lat.get('max', 0):.1f} us; all done in "
                f"{r.get('all_done_ms', 0):.1f} ms, ok={r.get('ok')} {r.get('error', '')}")
    if "gbps" in r and "streams" in r:
        return (f"{r['gbps']:.2f} Gbit/s, {r.get('verified_bytes', 0)} bytes verified, "
                f"mismatched {r.get('mismatched')}, ok={r.get('ok')}")
    if "ops_per_s" in r:
        lat = r.get("latency_us", {})
        return (f"{r['ops_per_s']:.0f}/s p50 {lat.get('p50', 0):.1f} us p99 "
                f"{lat.get('p99', 0):.1f} us, failed {r.get('failed')}, "
                f"mismatched {r.get('mismatched')}, ok={r.get('ok')}")
    if r.get("mode") == "idle":
        return f"{r['ok']}/{r['requested']} sessions ok, pass={r.get('pass')} {r.get('error', '')}"
    return json.dumps(r)[:200]


# ---------------------------------------------------------------- metadata

def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return ""
    lines = (r.stdout or r.stderr).splitlines()
    return lines[0] if lines else ""


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _word(text, i):
    parts = text.split()
    return parts[i].strip(",") if len(parts) > i else ""


def build_meta(a):
    """The run's description, from bench/run's plain values and this machine.
    Built here, not by shell interpolation, so that any text is quoted right."""
    skipped = []
    if a.skipped_file:
        with open(a.skipped_file) as f:
            skipped = [line.strip() for line in f if line.strip()]
    server = {}
    if a.server_file:
        try:
            with open(a.server_file) as f:
                server = json.loads(f.read() or "{}")
        except (OSError, ValueError):
            server = {}
    return {
        "loadavg_start": a.loadavg_start,
        "loadavg_end": a.loadavg_end,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname().split(".")[0],
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "quick": a.quick,
        "sp_threads": [int(t) for t in a.sp_threads.split()],
        "rounds": a.rounds,
        "stream_s": a.stream_s,
        "rr_s": a.rr_s,
        "idle_n": a.idle_n,
        "socat_idle_max": a.socat_idle_max,
        "burst_n": a.burst_n,
        "haproxy": _word(_first_line(["haproxy", "-v"]), 2),
        "ssh": _word(_first_line(["ssh", "-V"]), 0),
        "iperf3": _word(_first_line(["iperf3", "--version"]), 1),
        "skipped": skipped,
        "commit": a.commit,
        "baseline_build": a.baseline_build,
        "baseline_commit": a.baseline_commit,
        "server": server,
    }


# ---------------------------------------------------------------- summary

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    if x is None:
        return "–"
    return f"{x:.{nd}f}"


def pct(x):
    return "–" if x is None else f"{100 * x:.0f}%"


def ratio(x, base):
    if x is None or not base:
        return "–"
    return f"{x / base:.2f}x"


STREAM_TESTS = ("stream1", "stream8", "stream_down2")


def _streams(s, by):
    for t in STREAM_TESTS:
        if t in by:
            s[f"{t}_gbps"] = med(r["result"].get("gbps") for r in by[t])
            s[f"{t}_gbps_all"] = [r["result"].get("gbps") for r in by[t]]


def _cpu(s, by, relayed):
    cpu = user = byt = mach = mach_byt = 0.0
    for t in STREAM_TESTS:
        for r in by.get(t, []):
            b, a = r["before"], r["after"]
            if "machine_busy_ticks" in b and "machine_busy_ticks" in a:
                mach += (a["machine_busy_ticks"] - b["machine_busy_ticks"]) / HZ
                mach_byt += r["result"].get("bytes", 0)
            if b.get("roots"):
                cpu += (a["cpu_ticks"] - b["cpu_ticks"]) / HZ
                user += (a.get("user_ticks", 0) - b.get("user_ticks", 0)) / HZ
                byt += r["result"].get("bytes", 0)
    s["cpu_s_per_gb"] = cpu / (byt / 1e9) if byt and relayed else None
    s["user_share"] = user / cpu if cpu and relayed else None
    # The whole box: client, server, relays, softirq. Where every path
    # costs the same here, the relays' own code is not what limits them.
    s["machine_cpu_s_per_gb"] = mach / (mach_byt / 1e9) if mach_byt else None


def _latency(s, by):
    """rr, crr and burst: medians over rounds of each percentile, and the CDF
    of the median round (by p50) for the charts."""
    for t in ("rr", "crr", "burst"):
        if t not in by:
            continue
        runs = [r["result"] for r in by[t]]
        if t != "burst":
            s[f"{t}_ops_per_s"] = med(x.get("ops_per_s") for x in runs)
        # A round that timed nothing (every connection failed) reports 0 µs:
        # leave it out rather than let it pull the medians down.
        timed = [x for x in runs if x.get("latency_us", {}).get("count")]
        for q in ("p50", "p90", "p99", "p999", "max"):
            s[f"{t}_{q}_us"] = med(x["latency_us"].get(q) for x in timed)
        ranked = sorted(timed, key=lambda x: x["latency_us"].get("p50", 0))
        s[f"{t}_cdf_us"] = ranked[len(ranked) // 2].get("cdf_us", []) if ranked else []


def _burst(s, by):
    runs = [r["result"] for r in by.get("burst", [])]
    if not runs:
        return
    s["burst_clients"] = max(x.get("clients", 0) for x in runs)
    s["burst_rounds"] = len(runs)
    # The worst round decides: every client of every burst must be served.
    s["burst_served_min"] = min(x.get("served", 0) for x in runs)
    s["burst_failed_total"] = sum(x.get("failed", 0) + x.get("mismatched", 0) for x in runs)
    s["burst_all_served"] = all(x.get("ok") and x.get("served") == x.get("clients")
                                for x in runs)
    s["burst_all_done_ms"] = med(x.get("all_done_ms") for x in runs)
    s["burst_errors"] = sorted({x.get("error") for x in runs if x.get("error")})


def _procs(s, rs, by):
    snaps = [r["after"] for r in rs if r["after"].get("roots")]
    base = [r["before"] for r in by.get("baseline", []) if r["before"].get("roots")]
    procs = {}
    for snap in base[:1] + snaps:
        for i, root in enumerate(snap["roots"]):
            key = f"{i}:{root['comm']}"
            d = procs.setdefault(key, {"comm": root["comm"], "rss_kb_start": root["rss_kb"],
                                       "threads_start": root["threads"], "rss_kb_peak": 0,
                                       "threads_peak": 0, "nprocs_peak": 0})
            d["rss_kb_peak"] = max(d["rss_kb_peak"], root["rss_kb"])
            d["threads_peak"] = max(d["threads_peak"], root["threads"])
            d["nprocs_peak"] = max(d["nprocs_peak"], root["nprocs"])
    s["procs"] = list(procs.values())


def _idle(s, by):
    if "idle" not in by:
        return
    r = by["idle"][0]
    res = r["result"]
    n = res.get("requested", 0)
    s["idle_requested"] = n
    s["idle_ok"] = res.get("ok", 0)
    if r["before"].get("roots") and n:
        s["idle_rss_kb_per_session"] = (r["after"]["rss_kb"] - r["before"]["rss_kb"]) / n
        s["idle_pss_kb_per_session"] = (r["after"]["pss_kb"] - r["before"]["pss_kb"]) / n
        s["idle_pss_bytes_per_session"] = s["idle_pss_kb_per_session"] * 1024
        s["idle_threads_before"] = r["before"]["threads"]
        s["idle_threads_during"] = r["after"]["threads"]
        s["idle_procs"] = [{"comm": x["comm"], "rss_kb": x["rss_kb"],
                            "threads": x["threads"], "nprocs": x["nprocs"]}
                           for x in r["after"]["roots"]]


def summarize(records):
    """Per path, in first-seen order: medians over rounds of every figure."""
    paths = []
    for r in records:
        if r["path"] not in paths:
            paths.append(r["path"])
    out = {}
    for p in paths:
        rs = [r for r in records if r["path"] == p]
        by = {}
        for r in rs:
            by.setdefault(r["test"], []).append(r)
        s = {"path": p, "setup_failures": len(by.get("setup", []))}
        if p == "iperf3":
            s["stream1_gbps"] = med(r["result"].get("gbps") for r in by.get("stream1", []))
            s["stream8_gbps"] = med(r["result"].get("gbps") for r in by.get("stream8", []))
            out[p] = s
            continue
        _streams(s, by)
        _cpu(s, by, relayed=p != "direct")
        _latency(s, by)
        _burst(s, by)
        _procs(s, rs, by)
        _idle(s, by)
        out[p] = s
    return out


# ---------------------------------------------------------------- markdown

def _table(L, header, rows):
    """Appends a markdown table: `header` is [(title, align)], align "l" or "r"."""
    L.append("| " + " | ".join(h for h, _ in header) + " |")
    L.append("|" + "|".join("---" if a == "l" else "---:" for _, a in header) + "|")
    for row in rows:
        L.append("| " + " | ".join(row) + " |")
    L.append("")


def _threads_text(meta):
    ts = meta.get("sp_threads", [0])
    if isinstance(ts, int):  # results written before several settings per run
        ts = [ts]
    def one(t):
        return f"threads = {t}" + (" (one worker per CPU, as shipped)" if t == 0 else "")
    if len(ts) == 1:
        return f"sallyport relay and agent run with {one(ts[0])}"
    return ("Every sallyport path runs once per setting, rows NAME-tN: "
            + ", ".join(f"-t{t}: {one(t)}" for t in ts))


def _scorecard(L, summary, rows, d, h):
    """The figures issue 11 asks for, side by side, each with its ratio to the
    HAProxy chain (burst: p99 next to direct)."""
    L.append("## Against the HAProxy chain")
    L.append("")
    hdr = [("path", "l"), ("crr conn/s", "r"), ("vs HAProxy", "r"),
           ("crr first byte p99 µs", "r"), ("vs HAProxy", "r"), ("rr p99 µs", "r"),
           ("vs HAProxy", "r"), ("1 stream Gbit/s", "r"), ("vs HAProxy", "r"),
           ("8 streams Gbit/s", "r"), ("vs HAProxy", "r"), ("relay-side CPU s/GB", "r"),
           ("vs HAProxy", "r"), ("idle B/session (PSS)", "r"), ("vs HAProxy", "r"),
           ("burst served", "r"), ("burst first byte p99 µs", "r"), ("vs direct", "r")]
    out = []
    for p in rows:
        s = summary[p]
        served = (f"{s['burst_served_min']}/{s['burst_clients']}"
                  if "burst_clients" in s else "–")
        out.append([
            p, fmt(s.get("crr_ops_per_s"), 0), ratio(s.get("crr_ops_per_s"), h.get("crr_ops_per_s")),
            fmt(s.get("crr_p99_us")), ratio(s.get("crr_p99_us"), h.get("crr_p99_us")),
            fmt(s.get("rr_p99_us")), ratio(s.get("rr_p99_us"), h.get("rr_p99_us")),
            fmt(s.get("stream1_gbps"), 2), ratio(s.get("stream1_gbps"), h.get("stream1_gbps")),
            fmt(s.get("stream8_gbps"), 2), ratio(s.get("stream8_gbps"), h.get("stream8_gbps")),
            fmt(s.get("cpu_s_per_gb"), 3), ratio(s.get("cpu_s_per_gb"), h.get("cpu_s_per_gb")),
            fmt(s.get("idle_pss_bytes_per_session"), 0),
            ratio(s.get("idle_pss_bytes_per_session"), h.get("idle_pss_bytes_per_session")),
            served, fmt(s.get("burst_p99_us")), ratio(s.get("burst_p99_us"), d.get("burst_p99_us")),
        ])
    _table(L, hdr, out)
    L.append("Medians over rounds; ratios from the same run. Rates and Gbit/s: above 1.00x is "
             "better. Latency, CPU and bytes: below 1.00x is better. *burst served*: the worst "
             "round's served clients out of those that connected at once.")
    L.append("")


def markdown(summary, meta):
    d = summary.get("direct", {})
    h = summary.get("haproxy", {})
    rows = [p for p in summary if p != "iperf3"]
    L = []
    L.append(f"# sallyport bench: {meta['host']}, {meta['date']}")
    L.append("")
    L.append(f"{meta['cpus']} CPUs ({meta['cpu']}), kernel {meta['kernel']}, HAProxy "
             f"{meta['haproxy']}, {meta['ssh']}. {meta['rounds']} rounds, path order "
             f"alternating; medians. Streams {meta['stream_s']:g} s, rr/crr {meta['rr_s']:g} s, "
             f"{meta['idle_n']} idle sessions (socat capped at {meta['socat_idle_max']}), "
             f"bursts of {meta.get('burst_n', '–')} clients. "
             f"Load average (1/5/15 min) at start {meta.get('loadavg_start')}, at end "
             f"{meta.get('loadavg_end')}: other work on the machine shares its cores. "
             f"{_threads_text(meta)}; each "
             f"HAProxy hop with nbthread 1.")
    if meta.get("commit"):
        base = (f"; rows NAME-base: {meta['baseline_build']} at {meta.get('baseline_commit')}"
                if meta.get("baseline_build") else "")
        L.append("")
        L.append(f"sallyport at {meta['commit']}{base}.")
    if meta.get("skipped"):
        L.append("")
        L.append("Skipped: " + "; ".join(meta["skipped"]))
    L.append("")
    _scorecard(L, summary, rows, d, h)

    L.append("## Throughput and CPU")
    L.append("")
    out = []
    for p in rows:
        s = summary[p]
        out.append([p, fmt(s.get("stream1_gbps"), 2),
                    ratio(s.get("stream1_gbps"), d.get("stream1_gbps")),
                    ratio(s.get("stream1_gbps"), h.get("stream1_gbps")),
                    fmt(s.get("stream8_gbps"), 2),
                    ratio(s.get("stream8_gbps"), d.get("stream8_gbps")),
                    ratio(s.get("stream8_gbps"), h.get("stream8_gbps")),
                    fmt(s.get("cpu_s_per_gb"), 3),
                    ratio(s.get("cpu_s_per_gb"), h.get("cpu_s_per_gb")),
                    pct(s.get("user_share")), fmt(s.get("machine_cpu_s_per_gb"), 3)])
    _table(L, [("path", "l"), ("1 stream Gbit/s", "r"), ("vs direct", "r"),
               ("vs HAProxy", "r"), ("8 streams Gbit/s", "r"), ("vs direct", "r"),
               ("vs HAProxy", "r"), ("relay-side CPU s/GB", "r"), ("vs HAProxy", "r"),
               ("of which user space", "r"), ("whole-machine CPU s/GB", "r")], out)
    L.append("Relay-side CPU is the relay processes' user + system time (for HAProxy both hops, "
             "for sallyport relay and agent). Whole-machine CPU counts every core's busy time "
             "(load generator, server, relays, softirq) per GB moved; on loopback each hop's "
             "TCP receive work runs on the sender's CPU, so it shows the cost of the whole chain.")
    L.append("")

    L.append("## Latency (rr: 1-byte request/response on one connection; crr: connect, "
             "64-byte request, response, close, 2 in parallel)")
    L.append("")
    out = []
    for p in rows:
        s = summary[p]
        out.append([p, fmt(s.get("rr_ops_per_s"), 0),
                    ratio(s.get("rr_ops_per_s"), d.get("rr_ops_per_s")),
                    ratio(s.get("rr_ops_per_s"), h.get("rr_ops_per_s")),
                    fmt(s.get("rr_p50_us")), fmt(s.get("rr_p90_us")), fmt(s.get("rr_p99_us")),
                    fmt(s.get("rr_p999_us")), fmt(s.get("crr_ops_per_s"), 0),
                    ratio(s.get("crr_ops_per_s"), d.get("crr_ops_per_s")),
                    ratio(s.get("crr_ops_per_s"), h.get("crr_ops_per_s")),
                    fmt(s.get("crr_p50_us")), fmt(s.get("crr_p99_us"))])
    _table(L, [("path", "l"), ("rr ops/s", "r"), ("vs direct", "r"), ("vs HAProxy", "r"),
               ("rr p50 µs", "r"), ("p90", "r"), ("p99", "r"), ("p99.9", "r"),
               ("crr conn/s", "r"), ("vs direct", "r"), ("vs HAProxy", "r"),
               ("crr first byte p50 µs", "r"), ("p99", "r")], out)

    if any("burst_clients" in summary[p] for p in rows):
        L.append(f"## Burst ({meta.get('burst_n', '–')} clients connect at once, each sends a "
                 "small request and reads the echo)")
        L.append("")
        out = []
        for p in rows:
            s = summary[p]
            if "burst_clients" not in s:
                continue
            out.append([p, f"{s['burst_served_min']}/{s['burst_clients']}",
                        str(s["burst_failed_total"]), fmt(s.get("burst_p50_us")),
                        fmt(s.get("burst_p90_us")), fmt(s.get("burst_p99_us")),
                        ratio(s.get("burst_p99_us"), d.get("burst_p99_us")),
                        ratio(s.get("burst_p99_us"), h.get("burst_p99_us")),
                        fmt(s.get("burst_max_us")), fmt(s.get("burst_all_done_ms")),
                        "; ".join(s.get("burst_errors", [])) or "–"])
        _table(L, [("path", "l"), ("served (worst round)", "r"), ("failed (all rounds)", "r"),
                   ("first byte p50 µs", "r"), ("p90", "r"), ("p99", "r"), ("p99 vs direct", "r"),
                   ("p99 vs HAProxy", "r"), ("max", "r"), ("all answered ms", "r"),
                   ("first error", "l")], out)
        L.append("First byte: from each client's connect() to the first byte of its answer. "
                 "Every socket is made before a start gate; then all connect() calls are issued "
                 "back to back. *All answered*: from the gate to the last answer.")
        L.append("")

    L.append("## Memory and threads (relay-side processes)")
    L.append("")
    out = []
    for p in rows:
        s = summary[p]
        procs = ", ".join(
            f"{x['comm']}{'×' + str(x['nprocs_peak']) if x['nprocs_peak'] > 1 else ''} "
            f"{x['rss_kb_peak'] / 1024:.1f} MB/{x['threads_peak']} thr"
            for x in s.get("procs", [])) or "–"
        idle = (f"{s.get('idle_ok')}/{s.get('idle_requested')}"
                if "idle_requested" in s else "–")
        thr = (f"{s['idle_threads_before']} → {s['idle_threads_during']}"
               if "idle_threads_before" in s else "–")
        out.append([p, idle, fmt(s.get("idle_pss_kb_per_session")),
                    ratio(s.get("idle_pss_kb_per_session"), h.get("idle_pss_kb_per_session")),
                    fmt(s.get("idle_rss_kb_per_session")), thr, procs])
    _table(L, [("path", "l"), ("idle sessions ok", "r"), ("KB per idle session (PSS)", "r"),
               ("vs HAProxy", "r"), ("KB per idle session (RSS)", "r"),
               ("threads before → at idle N", "r"), ("processes: RSS MB peak, threads peak", "l")],
           out)

    i = summary.get("iperf3")
    if i and d:
        L.append("## Load generator check (direct loopback)")
        L.append("")
        _table(L, [("tool", "l"), ("1 stream Gbit/s", "r"), ("8 streams Gbit/s", "r")], [
            [f"iperf3 {meta.get('iperf3', '')}", fmt(i.get("stream1_gbps"), 2),
             fmt(i.get("stream8_gbps"), 2)],
            ["sallyport-bench (verifying every byte)", fmt(d.get("stream1_gbps"), 2),
             fmt(d.get("stream8_gbps"), 2)],
            ["ratio", ratio(d.get("stream1_gbps"), i.get("stream1_gbps")),
             ratio(d.get("stream8_gbps"), i.get("stream8_gbps"))]])
    failed = [f"{p} ({summary[p]['setup_failures']}x)" for p in rows
              if summary[p].get("setup_failures")]
    if failed:
        L.append("Path setup failed in some rounds (medians use the rounds that ran): "
                 + ", ".join(failed))
        L.append("")
    L.append("Ratios: throughput and rates above 1.00x are better than the reference; "
             "latency, CPU s/GB and KB per session below 1.00x are better. See bench/README.md.")
    return "\n".join(L) + "\n"


def gnuplot(summary, meta, outdir, stamp):
    rows = [p for p in summary if p != "iperf3"]
    tmp = os.path.join(outdir, f".{stamp}-plot")
    os.makedirs(tmp, exist_ok=True)
    with open(os.path.join(tmp, "tput.dat"), "w") as f:
        for p in rows:
            s = summary[p]
            f.write(f"{p} {s.get('stream1_gbps') or 0} {s.get('stream8_gbps') or 0}\n")
    with open(os.path.join(tmp, "cpu.dat"), "w") as f:
        for p in rows:
            v = summary[p].get("cpu_s_per_gb")
            if v is not None:
                f.write(f"{p} {v}\n")
    cdf_plots = {}
    for t in ("rr", "crr", "burst"):
        parts = []
        for idx, p in enumerate(rows):
            pts = summary[p].get(f"{t}_cdf_us") or []
            if not pts:
                continue
            fn = os.path.join(tmp, f"{t}-{idx}.dat")
            with open(fn, "w") as f:
                for v, frac in pts:
                    nines = 5.0 if frac >= 0.99999 else -math.log10(1 - frac)
                    f.write(f"{v} {nines}\n")
            parts.append(f"'{fn}' using 1:2 with steps lw 2 title '{p}'")
        cdf_plots[t] = parts
    tmax = max([summary[p].get("stream1_gbps") or 0 for p in rows] +
               [summary[p].get("stream8_gbps") or 0 for p in rows] + [1])
    g = [
        "set terminal pngcairo size 1000,600 font 'sans,11'",
        "set grid ytics",
        "set key top right",
        f"set output '{os.path.join(outdir, stamp + '-throughput.png')}'",
        "set title 'Throughput through each path (higher is better)'",
        "set ylabel 'Gbit/s'",
        "set style fill solid 0.8 border -1",
        "set boxwidth 0.38",
        f"set yrange [0:{tmax * 1.15}]",
        f"set xrange [-0.6:{len(rows) - 0.4}]",
        "set xtics nomirror",
        f"plot '{tmp}/tput.dat' using ($0-0.2):2:xtic(1) with boxes title '1 stream', "
        "'' using ($0+0.2):3 with boxes title '8 streams', "
        "'' using ($0-0.2):2:(sprintf('%.1f',$2)) with labels offset 0,0.8 notitle, "
        "'' using ($0+0.2):3:(sprintf('%.1f',$3)) with labels offset 0,0.8 notitle",
    ]
    cpus = [summary[p].get("cpu_s_per_gb") for p in rows
            if summary[p].get("cpu_s_per_gb") is not None]
    if cpus:
        g += [
            f"set output '{os.path.join(outdir, stamp + '-cpu.png')}'",
            "set title 'Relay-side CPU seconds per GB moved (lower is better)'",
            "set ylabel 'CPU s / GB'",
            f"set yrange [0:{max(cpus) * 1.15}]",
            f"set xrange [-0.6:{len(cpus) - 0.4}]",
            "set boxwidth 0.5",
            f"plot '{tmp}/cpu.dat' using 0:2:xtic(1) with boxes notitle, "
            "'' using 0:2:(sprintf('%.3f',$2)) with labels offset 0,0.8 notitle",
        ]
    titles = {"rr": "rr latency CDF: 1-byte request/response, 1 connection",
              "crr": "crr connect-to-first-byte CDF: connect, 64 B request, response, close",
              "burst": f"burst connect-to-first-byte CDF: {meta.get('burst_n')} clients at once"}
    for t, parts in cdf_plots.items():
        if not parts:
            continue
        g += [
            "set key bottom right", "set autoscale x", "set autoscale y",
            f"set output '{os.path.join(outdir, stamp + '-' + t + '-latency.png')}'",
            f"set title '{titles[t]} (further left is better)'",
            "set logscale x", "set xlabel 'latency, µs (log scale)'",
            "set ylabel 'percentile'", "set yrange [0:5]",
            "set ytics ('0' 0, '50' 0.30103, '90' 1, '99' 2, '99.9' 3, '99.99' 4, 'max' 5)",
            "plot " + ", ".join(parts),
            "unset logscale x", "unset xlabel",
        ]
    script = os.path.join(tmp, "plot.gp")
    with open(script, "w") as f:
        f.write("\n".join(g) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        print("gnuplot failed:\n" + r.stderr, file=sys.stderr)
    for fn in os.listdir(tmp):
        os.unlink(os.path.join(tmp, fn))
    os.rmdir(tmp)


def check(records):
    """The smoke test's assertions: every workload on every path moved bytes,
    every byte matched, and every burst client was served. Never a speed."""
    bad = []
    seen = set()
    for r in records:
        if r["path"] == "iperf3" or r["test"] == "baseline":
            continue
        seen.add(r["path"])
        res = r["result"]
        where = f"{r['path']} {r['test']}"
        if r["rc"] != 0:
            bad.append(f"{where}: exit {r['rc']} {res.get('error', '')}")
        if r["test"] == "idle":
            if not res.get("pass") or res.get("ok", 0) < 1:
                bad.append(f"{where}: {res.get('ok')}/{res.get('requested')} sessions ok")
            continue
        if r["test"] == "burst":
            if (not res.get("ok") or res.get("clients", 0) < 1
                    or res.get("served") != res.get("clients")):
                bad.append(f"{where}: {res.get('served')}/{res.get('clients')} served, "
                           f"{res.get('failed')} failed, {res.get('mismatched')} mismatched: "
                           f"{res.get('error', '')}")
            continue
        if not res.get("ok"):
            bad.append(f"{where}: not ok: {res.get('error', '')}")
        if res.get("mismatched", 1) != 0:
            bad.append(f"{where}: {res.get('mismatched')} mismatched")
        if "streams" in res and res.get("mode") == "stream":
            if res.get("verified_bytes", 0) <= 0:
                bad.append(f"{where}: no verified bytes")
            for st in res.get("per_stream", []):
                if not st.get("ok") or st.get("verified_bytes", 0) <= 0:
                    bad.append(f"{where}: a stream failed: {st.get('error')}")
        elif res.get("ops", 0) <= 0:
            bad.append(f"{where}: no operations completed")
    if not seen:
        bad.append("no path was measured")
    return bad


def report(a):
    with open(a.records) as f:
        records = [json.loads(line) for line in f if line.strip()]
    meta = build_meta(a)
    summary = summarize(records)
    os.makedirs(a.out, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "records": records}
    with open(os.path.join(a.out, a.stamp + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(summary, meta)
    with open(os.path.join(a.out, a.stamp + ".md"), "w") as f:
        f.write(md)
    if not meta.get("quick"):
        gnuplot(summary, meta, a.out, a.stamp)
    print(md)
    print(f"written: {os.path.join(a.out, a.stamp)}.{{json,md}}", file=sys.stderr)
    if a.check:
        bad = check(records)
        for b in bad:
            print("FAIL: " + b, file=sys.stderr)
        if bad:
            return 1
        print(f"bench quick: every path moved bytes with matching hashes and served every "
              f"burst client ({', '.join(sorted({r['path'] for r in records}))})")
    return 0


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="report.py", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("procstat", help="JSON snapshot of PIDs and their descendants")
    ps.add_argument("pids", nargs="*")
    sub.add_parser("brief", help="one line for a sallyport-bench JSON result on stdin")
    rp = sub.add_parser("report", help="write STAMP.json, STAMP.md and the charts")
    rp.add_argument("--records", required=True, help="JSON lines written by bench/run")
    rp.add_argument("--out", required=True, help="output directory")
    rp.add_argument("--stamp", required=True, help="file name stem")
    rp.add_argument("--check", action="store_true", help="exit 1 unless every path passed")
    rp.add_argument("--quick", action="store_true", help="a --quick run (no charts)")
    rp.add_argument("--sp-threads", default="1", help="the sallyport threads settings run")
    rp.add_argument("--rounds", type=int, default=0)
    rp.add_argument("--stream-s", type=float, default=0)
    rp.add_argument("--rr-s", type=float, default=0)
    rp.add_argument("--idle-n", type=int, default=0)
    rp.add_argument("--socat-idle-max", type=int, default=0)
    rp.add_argument("--burst-n", type=int, default=0)
    rp.add_argument("--loadavg-start", default="")
    rp.add_argument("--loadavg-end", default="")
    rp.add_argument("--skipped-file", help="paths skipped, one reason per line")
    rp.add_argument("--server-file", help="the benchmark server's JSON summary")
    rp.add_argument("--commit", default="", help="git describe of the sallyport measured")
    rp.add_argument("--baseline-build", default="", help="build dir of the NAME-base rows")
    rp.add_argument("--baseline-commit", default="", help="git describe of that build")
    return ap.parse_args(argv)


def main(argv):
    a = parse_args(argv[1:])
    if a.cmd == "procstat":
        print(json.dumps(procstat(a.pids), separators=(",", ":")))
        return 0
    if a.cmd == "brief":
        print(brief(json.load(sys.stdin)))
        return 0
    return report(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
