#!/usr/bin/env python3
"""Runs the benchmark suites over every plugin combination that works on this host.

Called by scripts/bench (which builds fcvm and the guest kernel first). Writes one JSON
document with every measurement, the machine and the skipped combinations with their
reasons, then renders it with report.py.

The axes: VMM x storage x network x memory. The memory backend only matters for clones, so
the boot suite (fcvm_combination_bench) runs once per VMM x storage x network and the clone
suite (fcvm_clone_bench) once per full combination. --quick runs the clone suite without a
network, on storage-squashfs, with 3 clones per fleet.
"""
import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

AXES = {
    "vmm": ["vmm-qemu", "vmm-firecracker"],
    "storage": ["storage-squashfs", "storage-btrfs"],
    "network": ["none", "network-bridged", "network-slirp"],
    "memory": ["file", "memory-uffd", "memory-uffd+prefetch"],
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def plugin_probes(fcvm, data_dir):
    out = subprocess.run([fcvm, "--data-dir", data_dir, "plugins", "--json"],
                         check=True, capture_output=True, text=True).stdout
    probes = {}
    for row in json.loads(out):
        if "name" in row:
            probes[row["name"]] = (row["available"], row.get("reason", ""))
    return probes


def unavailable(probes, names):
    """The first reason one of `names` cannot run here, or None."""
    for name in names:
        if name in ("none", "file"):
            continue
        plugin = name.split("+")[0]
        if plugin == "storage-btrfs" and plugin in probes:
            # Its probe wants a data dir on btrfs; the benchmarks make one per run
            # (`fcvm setup storage`: a loop-mounted volume), which needs root and btrfs-progs.
            if os.geteuid() != 0:
                return "storage-btrfs: the benchmarks set up a loop-mounted btrfs, which needs root"
            if not shutil.which("mkfs.btrfs"):
                return "storage-btrfs: mkfs.btrfs not found; apt-get install btrfs-progs"
            continue
        if plugin not in probes:
            return f"{plugin} is not built"
        ok, reason = probes[plugin]
        if not ok:
            return f"{plugin}: {reason}"
    return None


def machine():
    hw_kvm = Path("/sys/module/kvm_intel").exists() or Path("/sys/module/kvm_amd").exists()
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cores": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "accelerator": "KVM" if hw_kvm else "TCG",
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def run_suite(binary, env, out_json):
    """Runs one Google Benchmark binary; returns its benchmarks as a list of dicts."""
    cmd = [str(binary), "--benchmark_out_format=json", f"--benchmark_out={out_json}",
           "--benchmark_format=console"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not Path(out_json).exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, f"{binary.name} exited {proc.returncode}: {' | '.join(tail)}"
    return json.loads(Path(out_json).read_text()).get("benchmarks", []), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="the build directory")
    ap.add_argument("--kernel", required=True, help="the guest kernel (vmlinux)")
    ap.add_argument("--out", required=True, help="directory for results.json, report.md, plots")
    ap.add_argument("--quick", action="store_true", help="one repetition, no slirp: under 10 minutes")
    ap.add_argument("--reps", type=int, default=0, help="repetitions per measurement (default 3, quick 1)")
    args = ap.parse_args()

    build = Path(args.build)
    fcvm = str(build / "bin" / "fcvm")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reps = args.reps or (1 if args.quick else 3)
    scratch = out / "raw"
    scratch.mkdir(exist_ok=True)

    probes = plugin_probes(fcvm, str(scratch / "probe-data"))
    doc = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "mode": "quick" if args.quick else "full", "repetitions": reps,
           "combinations": [], "skipped": [], "suites": {}}

    # VM-level suite: one run per VMM x storage x network.
    triples, seen = [], set()
    for combo in itertools.product(*AXES.values()):
        c = dict(zip(AXES.keys(), combo))
        if args.quick and c["network"] == "network-slirp":
            doc["skipped"].append({**c, "reason": "--quick leaves out network-slirp"})
            continue
        why = unavailable(probes, combo)
        if why:
            doc["skipped"].append({**c, "reason": why})
            continue
        key = (c["vmm"], c["storage"], c["network"])
        doc["combinations"].append(c)
        if key not in seen:
            seen.add(key)
            triples.append(key)

    clone_combos = [c for c in doc["combinations"]
                    if not args.quick or (c["network"] == "none" and c["storage"] == "storage-squashfs")]
    vm_suites = {"fcvm_combination_bench", "fcvm_clone_bench"}
    micro = sorted(p for p in (build / "bench").glob("fcvm_*_bench")
                   if p.name not in vm_suites and os.access(p, os.X_OK))
    per_triple = 25 * reps + 20  # seconds under TCG on 2 cores
    per_clone_combo = 60 + 15 * reps + (20 if args.quick else 60)
    log(f"{len(triples)} VM combinations, {len(clone_combos)} clone combinations ({len(doc['skipped'])} skipped) "
        f"and {len(micro)} micro suites, {reps} repetition(s); about "
        f"{(len(triples) * per_triple + len(clone_combos) * per_clone_combo + 60 * len(micro)) // 60 + 1} min")

    env_base = dict(os.environ, FCVM_BENCH_KERNEL=args.kernel, FCVM_BENCH_REPS=str(reps))
    if args.quick:
        env_base["FCVM_BENCH_CLONES"] = "3"
    started = time.monotonic()
    for i, (vmm, storage, network) in enumerate(triples, 1):
        t0 = time.monotonic()
        name = f"{vmm}+{storage}+{network}"
        log(f"[{i}/{len(triples)}] {name}")
        env = dict(env_base, FCVM_BENCH_VMM=vmm, FCVM_BENCH_STORAGE=storage, FCVM_BENCH_NETWORK=network)
        results, err = run_suite(build / "bench" / "fcvm_combination_bench", env, scratch / f"{name}.json")
        doc["suites"][name] = {"vmm": vmm, "storage": storage, "network": network,
                               "benchmarks": results or [], "error": err}
        took = time.monotonic() - t0
        left = (time.monotonic() - started) / i * (len(triples) - i)
        log(f"[{i}/{len(triples)}] {name}: {took:.0f} s{'; ' + err if err else ''}; about {left / 60:.1f} min left")

    clones_started = time.monotonic()
    for i, c in enumerate(clone_combos, 1):
        name = f"clones:{c['vmm']}+{c['storage']}+{c['network']}+{c['memory']}"
        log(f"[clones {i}/{len(clone_combos)}] {name}")
        env = dict(env_base, FCVM_BENCH_VMM=c["vmm"], FCVM_BENCH_STORAGE=c["storage"],
                   FCVM_BENCH_NETWORK=c["network"], FCVM_BENCH_MEMORY=c["memory"])
        results, err = run_suite(build / "bench" / "fcvm_clone_bench", env,
                                 scratch / f"{name.replace(':', '-')}.json")
        doc["suites"][name] = {"clones": True, **c, "benchmarks": results or [], "error": err}
        left = (time.monotonic() - clones_started) / i * (len(clone_combos) - i)
        log(f"[clones {i}/{len(clone_combos)}] {name}{': ' + err if err else ''}; about {left / 60:.1f} min left")

    for i, binary in enumerate(micro, 1):
        log(f"[micro {i}/{len(micro)}] {binary.name}")
        results, err = run_suite(binary, env_base, scratch / f"{binary.name}.json")
        doc["suites"][binary.name] = {"micro": True, "benchmarks": results or [], "error": err}

    doc["seconds"] = round(time.monotonic() - started)
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(f"done in {doc['seconds']} s: {out / 'results.json'}")
    subprocess.run([sys.executable, str(Path(__file__).with_name("report.py")), str(out / "results.json")],
                   check=True)


if __name__ == "__main__":
    main()
