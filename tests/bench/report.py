#!/usr/bin/env python3
"""Turns tests/bench.sh's raw samples into the report.

    report.py --raw RAW.tsv --out DIR --machine M --command C --date D --loadavg L
        writes DIR/results.json ({"metric": {"peer": median}}), DIR/results-full.json
        (every sample, median, min, max, load averages), DIR/table.md and DIR/plot.svg
    report.py --splice FILE.md --table TABLE.md
        replaces the text between <!-- bench:begin --> and <!-- bench:end --> in FILE.md

RAW.tsv has one sample a line: run, peer, metric, value, 1-minute load average.
Standard library only; the SVG is written by hand.
"""
import argparse
import json
import math
import statistics
from collections import defaultdict

PEERS = ["lvsd", "nft_dnat", "haproxy", "kernel_forward"]
MAIN = ["udp_pps", "tcp_cps", "p99_ms", "bulk_gbps"]
LABELS = {
    "udp_pps": "UDP packets/s delivered (60-byte frames, 4096 flows)",
    "tcp_cps": "TCP connections/s (wrk, Connection: close)",
    "p50_ms": "latency p50, ms (new connection + request, 500/s)",
    "p99_ms": "latency p99, ms (new connection + request, 500/s)",
    "bulk_gbps": "one-stream bulk, Gbit/s (iperf3, MTU 1500, offloads off)",
    "cpu_ns_per_pkt": "path CPU per delivered UDP packet, ns (see method)",
    "proc_cpu_ns_per_pkt": "of which the director process, ns/packet",
    "tcp_path_cpu_us_per_conn": "path CPU per TCP connection, us (see method)",
    "tcp_proc_cpu_us_per_conn": "of which the director process, us/connection",
}
HIGHER_IS_BETTER = {"udp_pps": True, "tcp_cps": True, "p99_ms": False, "p50_ms": False, "bulk_gbps": True,
                    "cpu_ns_per_pkt": False, "tcp_path_cpu_us_per_conn": False}


def num(v):
    try:
        x = float(v)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def load(raw):
    samples = defaultdict(list)  # (peer, metric) -> [(run, value, load)]
    for line in open(raw):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        run, peer, metric, value, la = parts
        samples[(peer, metric)].append((int(run), num(value), num(la)))
    return samples


def summary(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals), "samples": vals}


def derive(samples):
    """The reported metrics: udp_pps is the better of 1 and 2 generator threads
    (by median), and its CPU figures come from the same setting."""
    out = {}
    for peer in PEERS:
        s = {}
        for (p, metric), rows in samples.items():
            if p == peer:
                s[metric] = summary([v for _, v, _ in rows])
        best = None
        for gen in ("1gen", "2gen"):
            m = s.get("udp_pps_" + gen)
            if m and (best is None or m["median"] > s["udp_pps_" + best]["median"]):
                best = gen
        if best:
            s["udp_pps"] = dict(s["udp_pps_" + best], generator_threads=int(best[0]))
            if s.get("udp_pps_%s_cpu_ns" % best):
                s["cpu_ns_per_pkt"] = s["udp_pps_%s_cpu_ns" % best]
            if s.get("udp_pps_%s_proc_cpu_ns" % best):
                s["proc_cpu_ns_per_pkt"] = s["udp_pps_%s_proc_cpu_ns" % best]
        out[peer] = {k: v for k, v in s.items() if v is not None}
    return out


def fmt(x, metric):
    if x is None:
        return "n/a"
    if metric.endswith("_ms"):
        return "%.3f" % x
    if metric.endswith("gbps"):
        return "%.2f" % x
    if abs(x) >= 1000:
        return "{:,.0f}".format(x)
    return "%.1f" % x if x != int(x) else "%d" % x


def cell(d, metric):
    m = d.get(metric)
    if not m:
        return "n/a"
    if m["n"] > 1:
        return "%s (%s–%s)" % (fmt(m["median"], metric), fmt(m["min"], metric), fmt(m["max"], metric))
    return fmt(m["median"], metric)


def ratio(a, b, metric):
    if not a or not b or not b["median"]:
        return "n/a"
    r = a["median"] / b["median"]
    if not HIGHER_IS_BETTER.get(metric, True):
        r = b["median"] / a["median"] if a["median"] else float("nan")
    return "%.2fx" % r


def by_run(samples, d, peer, metric):
    """A peer's samples of a metric, by run (udp_pps: its reported generator setting)."""
    key = metric
    if metric == "udp_pps":
        if not d[peer].get("udp_pps"):
            return {}
        key = "udp_pps_%dgen" % d[peer]["udp_pps"]["generator_threads"]
    return {run: v for run, v, _ in samples.get((peer, key), []) if v is not None}


def paired(samples, d, metric, other):
    """lvsd against another peer run by run (both measured in the same run,
    minutes apart at most): the ratios in run order, or [] with fewer than two."""
    a, b = by_run(samples, d, "lvsd", metric), by_run(samples, d, other, metric)
    out = []
    for run in sorted(set(a) & set(b)):
        x, y = a[run], b[run]
        if not HIGHER_IS_BETTER.get(metric, True):
            x, y = y, x
        if y:
            out.append(x / y)
    return out if len(out) > 1 else []


def table(d, samples, args):
    lines = []
    lines.append("Command: `%s`  " % args.command)
    lines.append("Machine: %s  " % args.machine)
    lines.append("Date: %s; load average at the end: %s  " % (args.date, args.loadavg))
    loads = [la for rows in samples.values() for _, _, la in rows if la is not None]
    if loads:
        lines.append("1-minute load average while measuring: median %.2f, min %.2f, max %.2f (2 CPUs: above ~1 others were competing for them)"
                     % (statistics.median(loads), min(loads), max(loads)))
    lines.append("")
    lines.append("Medians over the runs, (min–max) when there were several. Ratios: lvsd against the peer, >1 is lvsd better (for latency: lower).")
    lines.append("")
    lines.append("| metric | lvsd | nft_dnat | haproxy | kernel_forward | lvsd / nft_dnat | lvsd / haproxy |")
    lines.append("|---|---|---|---|---|---|---|")
    for metric in ["udp_pps", "tcp_cps", "p50_ms", "p99_ms", "bulk_gbps", "cpu_ns_per_pkt", "proc_cpu_ns_per_pkt", "tcp_path_cpu_us_per_conn", "tcp_proc_cpu_us_per_conn"]:
        row = [LABELS[metric]] + [cell(d[p], metric) for p in PEERS]
        if metric in HIGHER_IS_BETTER:
            row += [ratio(d["lvsd"].get(metric), d["nft_dnat"].get(metric), metric),
                    ratio(d["lvsd"].get(metric), d["haproxy"].get(metric), metric)]
        else:
            row += ["", ""]
        lines.append("| " + " | ".join(row) + " |")
    pairs = []
    for other, metrics in (("nft_dnat", ("udp_pps", "tcp_cps", "p99_ms")), ("haproxy", ("tcp_cps",))):
        for metric in metrics:
            r = paired(samples, d, metric, other)
            if r:
                pairs.append("%s against %s %s (median %.2fx)" % (metric, other, ", ".join("%.2f" % x for x in r), statistics.median(r)))
    if pairs:
        lines.append("")
        lines.append("The ratios run by run (lvsd against the peer measured in the same run; >1 is lvsd better): " + "; ".join(pairs) + ".")
    lines.append("")
    lines.append("UDP packets/s by number of generator threads (the table above takes the better of the two per peer):")
    lines.append("")
    lines.append("| generator threads | lvsd | nft_dnat | haproxy | kernel_forward |")
    lines.append("|---|---|---|---|---|")
    for gen in ("1gen", "2gen"):
        lines.append("| %s | %s |" % (gen[0], " | ".join(cell(d[p], "udp_pps_" + gen) for p in PEERS)))
    lines.append("")
    lines.append("Errors (sum over runs): " + ", ".join(
        "%s wrk %s, latency probe %s" % (p, fmt(sum(d[p]["tcp_errors"]["samples"]), "x") if d[p].get("tcp_errors") else "n/a",
                                          fmt(sum(d[p]["lat_errors"]["samples"]), "x") if d[p].get("lat_errors") else "n/a")
        for p in PEERS))
    lv = d["lvsd"]
    if any(k.startswith("udp_pps_xdp_shards") or k.startswith("udp_pps_packet_shards") for k in lv):
        lines.append("")
        lines.append("Shard scaling, lvsd UDP packets/s by backend and number of shards (the lvsd column above is lvsd's defaults: "
                     "XDP, one shard per veth queue):")
        lines.append("")
        lines.append("| backend | shards | UDP, 1 generator thread | UDP, 2 generator threads | path CPU ns/packet (1 gen) | path CPU ns/packet (2 gen) | TCP conn/s | p50 / p99 ms |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for be in ("xdp", "packet"):
            for sh in ("1", "2"):
                k = "udp_pps_%s_shards%s_" % (be, sh)
                t = "%s_shards%s_" % (be, sh)
                lat = "%s / %s" % (cell(lv, t + "p50_ms"), cell(lv, t + "p99_ms"))
                lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (be, sh, cell(lv, k + "1gen"), cell(lv, k + "2gen"),
                                                                         cell(lv, k + "1gen_cpu_ns"), cell(lv, k + "2gen_cpu_ns"),
                                                                         cell(lv, t + "tcp_cps"), lat))
    if lv.get("swap_changes"):
        g = lambda k: fmt(lv[k]["median"], "x") if lv.get(k) else "n/a"
        lines.append("")
        lines.append("Rule swaps under load (lvsd): %s `lvsadm -e` changes applied (%s refused) in %s s while a 20,000 packets/s UDP load "
                     "and a wrk load ran: UDP %s sent, **%s lost**, %s duplicated; TCP about %s connections, **%s errors**."
                     % (g("swap_changes"), g("swap_change_errors"), fmt(lv["swap_seconds"]["median"], "x.1") if lv.get("swap_seconds") else "n/a",
                        g("swap_udp_sent"), g("swap_udp_lost"), g("swap_udp_dup"), g("swap_tcp_conns"), g("swap_tcp_errors")))
    lines.append("")
    lines.append("![lvsd against the peers](bench/plot.svg)")
    return "\n".join(lines) + "\n"


def svg(d):
    colors = {"lvsd": "#1f77b4", "nft_dnat": "#ff7f0e", "haproxy": "#2ca02c", "kernel_forward": "#7f7f7f"}
    titles = {"udp_pps": "UDP packets/s (higher is better)", "tcp_cps": "TCP connections/s (higher is better)",
              "p99_ms": "latency p99, ms (lower is better)", "bulk_gbps": "bulk, Gbit/s (higher is better)"}
    W, H, pw, ph = 960, 620, 440, 230
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (W, H, W, H),
           '<rect width="100%" height="100%" fill="white"/>']
    for i, metric in enumerate(MAIN):
        ox, oy = 40 + (i % 2) * (pw + 40), 30 + (i // 2) * (ph + 70)
        out.append('<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>' % (ox, oy, titles[metric]))
        vals = {p: d[p].get(metric) for p in PEERS}
        top = max([v["max"] for v in vals.values() if v] + [1e-9])
        base = oy + ph
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (ox, base, ox + pw, base))
        bw = pw / len(PEERS)
        for j, p in enumerate(PEERS):
            v = vals[p]
            x = ox + j * bw + bw * 0.15
            w = bw * 0.7
            if not v:
                out.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#888">n/a</text>' % (x + w / 2, base - 5))
            else:
                h = (ph - 20) * v["median"] / top
                out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (x, base - h, w, h, colors[p]))
                y1 = base - (ph - 20) * v["min"] / top
                y2 = base - (ph - 20) * v["max"] / top
                cx = x + w / 2
                out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>' % (cx, y1, cx, y2))
                for yy in (y1, y2):
                    out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>' % (cx - 6, yy, cx + 6, yy))
                out.append('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>' % (cx, min(y2, base - h) - 4, fmt(v["median"], metric)))
            out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x + w / 2, base + 16, p))
    out.append('<text x="40" y="%d" fill="#555">Bars: medians; whiskers: min and max over the runs. HAProxy has no UDP mode.</text>' % (H - 10))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw")
    ap.add_argument("--out")
    ap.add_argument("--machine", default="")
    ap.add_argument("--command", default="")
    ap.add_argument("--date", default="")
    ap.add_argument("--loadavg", default="")
    ap.add_argument("--splice")
    ap.add_argument("--table")
    a = ap.parse_args()
    if a.splice:
        doc = open(a.splice).read()
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
        i, j = doc.find(begin), doc.find(end)
        if i < 0 or j < i:
            raise SystemExit("%s has no %s ... %s markers" % (a.splice, begin, end))
        doc = doc[: i + len(begin)] + "\n" + open(a.table).read() + doc[j:]
        open(a.splice, "w").write(doc)
        return
    samples = load(a.raw)
    d = derive(samples)
    results = {m: {p: (d[p][m]["median"] if d[p].get(m) else None) for p in PEERS} for m in MAIN}
    json.dump(results, open(a.out + "/results.json", "w"), indent=2)
    full = {"machine": a.machine, "command": a.command, "date": a.date, "loadavg_end": a.loadavg,
            "peers": d,
            "samples": [{"run": r, "peer": p, "metric": m, "value": v, "load1": la}
                        for (p, m), rows in sorted(samples.items()) for r, v, la in rows]}
    json.dump(full, open(a.out + "/results-full.json", "w"), indent=1)
    open(a.out + "/table.md", "w").write(table(d, samples, a))
    open(a.out + "/plot.svg", "w").write(svg(d))


if __name__ == "__main__":
    main()
