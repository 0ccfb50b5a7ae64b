#!/usr/bin/env python3
"""Renders a benchmark results.json (from matrix.py) as report.md and SVG plots beside it.

    python3 bench/report.py bench/results/results.json
"""
import json
import sys
from html import escape
from pathlib import Path

# Benchmark JSON keys that are not counters.
NOT_COUNTERS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type",
                "repetitions", "repetition_index", "threads", "iterations", "real_time",
                "cpu_time", "time_unit", "error_occurred", "error_message", "aggregate_name",
                "aggregate_unit", "label"}


def bench(suite, name):
    for b in suite.get("benchmarks", []):
        if b["name"].split("/")[0] == name:
            return b
    return None


def measured(b, key):
    """(median, min, max) of counter `key` (recorded as key_median/_min/_max), or None."""
    if not b or b.get("error_occurred") or f"{key}_median" not in b:
        return None
    return b[f"{key}_median"], b[f"{key}_min"], b[f"{key}_max"]


def why_not(b, what):
    if b is None:
        return f"{what}: not in this build"
    return b.get("error_message") or f"{what}: not measured"


def fmt_spread(m, scale=1.0, unit="s", digits=2):
    med, lo, hi = (v * scale for v in m)
    return f"{med:.{digits}f} {unit} ({lo:.{digits}f}–{hi:.{digits}f})"


def noisy(m, baseline):
    """A ratio is only claimed when the two measurements' ranges do not overlap; one run of
    either has no spread to judge by, and says so."""
    if not m or not baseline:
        return ""
    if m[1] == m[2] or baseline[1] == baseline[2]:
        return " (1 run)"
    overlap = m[1] <= baseline[2] and baseline[1] <= m[2]
    return " ~noisy" if overlap else ""


def vm_rows(doc):
    rows, bars, notes = [], [], []
    for name, s in doc["suites"].items():
        if s.get("micro") or s.get("clones"):
            continue
        memories = sorted({c["memory"] for c in doc["combinations"]
                           if (c["vmm"], c["storage"], c["network"]) == (s["vmm"], s["storage"], s["network"])})
        if s.get("error"):
            rows.append([s["vmm"], s["storage"], s["network"], ", ".join(memories), f"failed: {s['error']}"] + [""] * 4)
            continue
        boot = measured(bench(s, "BM_BareBoot"), "boot_s")
        cold_b = bench(s, "BM_ColdStart")
        cold = measured(cold_b, "exec_ready_s")
        fp = bench(s, "BM_VmFootprint")
        first_b = bench(s, "BM_FirstRequest")
        first = measured(first_b, "first_answer_s")
        get = measured(first_b, "get_s")
        loop = measured(bench(s, "BM_LoopbackRequest"), "get_s")
        cold_txt = (f"{fmt_spread(cold)}, {cold[0] / boot[0]:.2f}x bare boot{noisy(cold, boot)}"
                    if cold and boot else why_not(cold_b, "cold start"))
        cached_b = bench(s, "BM_CachedStart")
        cached = measured(cached_b, "exec_ready_s")
        cached_txt = (f"{fmt_spread(cached)}, {cached[0] / cold[0]:.2f}x cold start{noisy(cached, cold)}"
                      if cached and cold else why_not(cached_b, "cached start"))
        fp_txt = (f"{fp['pss_mib']:.0f} MiB (anon {fp['pss_anon_mib']:.0f}, file {fp['pss_file_mib']:.0f}); "
                  f"disk {fp['disk_mib']:.1f} MiB" if fp and not fp.get("error_occurred") else why_not(fp, "footprint"))
        first_txt = fmt_spread(first) if first else why_not(first_b, "first request")
        get_txt = (f"{fmt_spread(get, 1e3, 'ms', 1)}, {get[0] / loop[0]:.1f}x loopback{noisy(get, loop)}"
                   if get and loop else "—")
        rows.append([s["vmm"], s["storage"], s["network"], ", ".join(memories), cold_txt, cached_txt,
                     fp_txt, first_txt, get_txt])
        if cold:
            bars.append((f"{s['vmm']} / {s['storage']} / {s['network']}", cold, boot))
    return rows, bars, notes


def counter(b, key):
    return None if not b or b.get("error_occurred") or key not in b else b[key]


def clone_rows(doc):
    """One row per VMM x storage x network x memory clone suite, and the plot data."""
    rows, bars, pss_points = [], [], []
    for name, s in doc["suites"].items():
        if not s.get("clones"):
            continue
        head = [s["vmm"], s["storage"], s["network"], s["memory"]]
        if s.get("error"):
            rows.append(head + [f"failed: {s['error']}"] + [""] * 4)
            continue
        create_b, clone_b = bench(s, "BM_SnapshotCreate"), bench(s, "BM_CloneExecReady")
        cold = measured(bench(s, "BM_ColdStart"), "exec_ready_s")
        bare = measured(bench(s, "BM_BareRestore"), "restore_s")
        clone = measured(clone_b, "exec_ready_s")
        if clone:
            parts = [fmt_spread(clone)]
            if cold:
                parts.append(f"{clone[0] / cold[0]:.2f}x cold start{noisy(clone, cold)}")
            if bare:
                parts.append(f"{clone[0] / bare[0]:.2f}x bare restore{noisy(clone, bare)}")
            clone_txt = ", ".join(parts)
            bars.append((f"{s['vmm']} / {s['storage']} / {s['network']} / {s['memory']}", clone, cold))
        else:
            clone_txt = why_not(clone_b, "clone")
        pause = counter(create_b, "pause_ms")
        pause_txt = f"{pause:.0f} ms" if pause is not None else why_not(create_b, "snapshot create")
        pss_b = bench(s, "BM_ClonePss")
        if counter(pss_b, "clonesN_pss_mib") is not None:
            n = int(pss_b["clones_n"])
            pss_txt = (f"1: {pss_b['clone1_pss_mib']:.0f} MiB; {n}: {pss_b['clonesN_pss_mib']:.0f} MiB "
                       f"(anon {pss_b['clonesN_pss_anon_mib']:.0f}, file {pss_b['clonesN_pss_file_mib']:.0f}) = "
                       f"{pss_b['clonesN_vs_one_vm']:.2f}x one VM ({pss_b['vm_pss_mib']:.0f} MiB); "
                       f"disk {pss_b['clone_disk_mib']:.1f} MiB/clone")
            faults = counter(pss_b, "faults_served")
            faults_txt = f"{faults:.0f}" if faults is not None else "—"
            pss_points.append((s["memory"], s["storage"], s["network"],
                               [(1, pss_b["clone1_pss_mib"]), (n, pss_b["clonesN_pss_mib"])], pss_b["vm_pss_mib"]))
        else:
            pss_txt, faults_txt = why_not(pss_b, "PSS"), "—"
        fleet_b = bench(s, "BM_ClonesAtOnce")
        fleet_txt = (f"{fleet_b['at_once_s']:.1f} s vs {fleet_b['one_after_another_s']:.1f} s "
                     f"({fleet_b['at_once_vs_one_after_another']:.2f}x)"
                     if counter(fleet_b, "at_once_s") is not None else why_not(fleet_b, "fleet"))
        rows.append(head + [clone_txt, pause_txt, pss_txt, faults_txt, fleet_txt])
    return rows, bars, pss_points


def pss_chart(points, path):
    """Total PSS against clone count, a line per combination, one VM's PSS as the baseline."""
    if not points:
        return False
    width, height, left, bottom, top = 760, 360, 70, 50, 40
    nmax = max(p[-1][0] for _, _, _, p, _ in points)
    vmax = max(max([v for _, v in p] + [vm]) for _, _, _, p, vm in points) * 1.15
    x = lambda n: left + (width - left - 230) * (n - 1) / max(1, nmax - 1)
    y = lambda v: height - bottom - (height - bottom - top) * v / vmax
    colours = ["#4a7fb5", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d35400"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="10" y="22" font-size="15" font-weight="bold">Total PSS of running clones against their count</text>',
             f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" x2="{width - 230}" y1="{height - bottom}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{(left + width - 230) / 2}" y="{height - 15}" text-anchor="middle">clones</text>',
             f'<text x="15" y="{(top + height - bottom) / 2}" transform="rotate(-90 15 {(top + height - bottom) / 2})" text-anchor="middle">MiB</text>']
    for tick in range(0, 5):
        v = vmax * tick / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for n in sorted({1, nmax}):
        parts.append(f'<text x="{x(n):.1f}" y="{height - bottom + 16}" text-anchor="middle">{n}</text>')
    for i, (memory, storage, network, pts, vm) in enumerate(points):
        c = colours[i % len(colours)]
        d = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in pts)
        parts.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
        for n, v in pts:
            parts.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{c}"/>')
        parts.append(f'<line x1="{left}" x2="{width - 230}" y1="{y(vm):.1f}" y2="{y(vm):.1f}" stroke="{c}" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{width - 222}" y="{top + 14 + 16 * i}" fill="{c}">{escape(f"{memory} / {storage} / {network}")}</text>')
    parts.append(f'<text x="{width - 222}" y="{top + 14 + 16 * len(points) + 8}">dashed: one booted VM</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")
    return True


def micro_tables(doc):
    out = []
    for name, s in doc["suites"].items():
        if not s.get("micro"):
            continue
        out.append(f"\n### {name}\n")
        if s.get("error"):
            out.append(f"failed: {s['error']}\n")
            continue
        out.append("| benchmark | time | counters |\n|---|---|---|")
        for b in s["benchmarks"]:
            if b.get("error_occurred"):
                out.append(f"| {b['name']} | skipped | {b.get('error_message', '')} |")
                continue
            counters = ", ".join(f"{k} {v:.3g}" for k, v in b.items()
                                 if k not in NOT_COUNTERS and isinstance(v, (int, float)))
            out.append(f"| {b['name']} | {b['real_time']:.3g} {b['time_unit']} | {counters} |")
    return out


def bar_chart(bars, path, title, baseline_label="bare QEMU boot (baseline, same run)"):
    """Horizontal bars: median with a min–max whisker, and the bare-boot baseline as a tick."""
    if not bars:
        return False
    width, left, row = 760, 300, 28
    top = 40
    height = top + row * len(bars) + 40
    vmax = max(max(m[2], b[2] if b else 0) for _, m, b in bars) * 1.1
    x = lambda v: left + (width - left - 20) * v / vmax
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="100%" height="100%" fill="white"/>',
             f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    for i, (label, m, b) in enumerate(bars):
        y = top + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{x(m[0]) - left:.1f}" height="16" fill="#4a7fb5"/>')
        parts.append(f'<line x1="{x(m[1]):.1f}" x2="{x(m[2]):.1f}" y1="{y + 12}" y2="{y + 12}" stroke="black"/>')
        parts.append(f'<text x="{x(m[2]) + 4:.1f}" y="{y + 16}">{m[0]:.2f} s</text>')
        if b:
            parts.append(f'<line x1="{x(b[0]):.1f}" x2="{x(b[0]):.1f}" y1="{y + 1}" y2="{y + 23}" stroke="#c0392b" stroke-width="2"/>')
    base_y = top + row * len(bars) + 20
    parts.append(f'<line x1="{left}" x2="{left + 14}" y1="{base_y}" y2="{base_y}" stroke="#c0392b" stroke-width="2"/>')
    parts.append(f'<text x="{left + 20}" y="{base_y + 4}">{escape(baseline_label)}; whiskers: min–max</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")
    return True


def main():
    results = Path(sys.argv[1])
    doc = json.loads(results.read_text())
    out_dir = results.parent
    m = doc["machine"]
    lines = [f"# fcvm benchmarks ({doc['mode']})", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, accelerator {m['accelerator']}, "
             f"host kernel {m['kernel']}. Started {doc['started']}, took {doc.get('seconds', 0)} s, "
             f"{doc['repetitions']} repetition(s) per measurement: medians with (min–max); a ratio marked "
             "~noisy compares overlapping ranges; one marked (1 run) has a side measured once.", "",
             "## VM combinations", "",
             "| VMM | storage | network | memory (clone suites) | cold start to exec-ready "
             "| cached start (startup snapshot) | one VM: PSS, disk "
             "| `run -d` to first HTTP answer | GET through published port |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows, bars, _ = vm_rows(doc)
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if bar_chart(bars, out_dir / "cold_start.svg", "Cold start to exec-ready per combination"):
        lines += ["", "![cold start per combination](cold_start.svg)"]
    crows, cbars, points = clone_rows(doc)
    if crows:
        lines += ["", "## Clones", "",
                  "| VMM | storage | network | memory | clone to exec-ready | snapshot pause | PSS of clones "
                  "| page faults served | clones at once vs one after another |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in crows]
        if bar_chart(cbars, out_dir / "clone_start.svg", "Clone to exec-ready per combination",
                     "cold start of the same image (baseline, same run)"):
            lines += ["", "![clone to exec-ready per combination](clone_start.svg)"]
        if pss_chart(points, out_dir / "clone_pss.svg"):
            lines += ["", "![total PSS against clone count](clone_pss.svg)"]
    if doc["skipped"]:
        lines += ["", "## Not run here", "", "| VMM | storage | network | memory | why |", "|---|---|---|---|---|"]
        lines += [f"| {s['vmm']} | {s['storage']} | {s['network']} | {s['memory']} | {s['reason']} |"
                  for s in doc["skipped"]]
    micro = micro_tables(doc)
    if micro:
        lines += ["", "## Micro-benchmarks"] + micro
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    print(out_dir / "report.md")


if __name__ == "__main__":
    main()
