#!/usr/bin/env python3
"""Where a request's CPU time goes in the measured Envoy: the wasm code
itself (V8's JIT code), the Envoy binary (HTTP, host calls, V8's runtime),
the kernel, libc. Not part of `make bench`; evidence for BENCHMARKS.md.

    .venv/bin/python bench/profile_envoy.py [--rounds 2] [--cases noop,quota,...]
        [--compare-wasm PATH]   # and the case quota_compare: another build of the filter

Same setup as bench/load.py (one pinned worker, the Envoy upstream, wrk on
the other CPU). For each case: wrk for 7 s, and in its middle `perf record
-e cpu-clock` (a software event: works without hardware counters, as in a
VM) for 5 s on the measured Envoy, whose CPU time per request over that
window is split by the share of samples in each binary. Envoy's binary is
stripped, so the split stops at binaries, not functions. Needs `perf`
(Debian: linux-perf).
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
from load import harness  # noqa: E402

CASES = {
    "noop": ("noop", "headers"),
    "floor": ("floor", "headers"),
    **{f"floor_{name}": (f"floor_{name}", "headers") for name in load.FLOOR_VARIANTS},
    "quota": ("quota", "headers"),
    "quota_compare": ("quota_compare", "headers"),
    "quota_no_ledger": ("quota_no_ledger", "headers"),
    "quota_no_headers": ("quota_no_headers", "headers"),
    "noop_body": ("noop", "body"),
    "floor_body": ("floor_body", "body"),
    "quota_body": ("quota_body", "body"),
}


def dso_shares(perf_data):
    report = subprocess.run(["perf", "report", "-i", str(perf_data), "--sort", "dso", "--stdio"],
                            capture_output=True, text=True, check=True).stdout
    shares = {}
    for line in report.splitlines():
        match = re.match(r"\s+([\d.]+)%\s+(.+?)\s*$", line)
        if match:
            name = "wasm (V8 JIT code)" if match.group(2).startswith("[JIT]") else match.group(2)
            shares[name] = shares.get(name, 0.0) + float(match.group(1)) / 100
    return shares


def profile(envoy, workload, perf_data):
    cmd = load._wrk_cmd(envoy.url("/"), workload, load.CONNECTIONS, 7)
    with load.pinned(load.CLIENT_CPUS):
        wrk = subprocess.Popen(cmd, cwd=load.BENCH_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    cpu_before, started = load.cpu_ns(envoy.proc.pid), time.monotonic()
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-o", str(perf_data),
                    "-p", str(envoy.proc.pid), "--", "sleep", "5"], capture_output=True, check=True)
    cpu_used, elapsed = load.cpu_ns(envoy.proc.pid) - cpu_before, time.monotonic() - started
    result = load._wrk_result(*wrk.communicate())
    requests = result["requests"] / (result["duration_us"] / 1e6) * elapsed
    us_per_request = cpu_used / 1e3 / requests
    return us_per_request, {k: v * us_per_request for k, v in dso_shares(perf_data).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--compare-wasm", type=Path,
                        help="another build of the filter, profiled as the case quota_compare")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf is missing: apt-get install linux-perf")
    cases = [c for c in args.cases.split(",") if c in CASES]
    if args.compare_wasm and "quota_compare" not in cases:
        cases.append("quota_compare")
    if "quota_compare" in cases and not (args.compare_wasm and args.compare_wasm.exists()):
        sys.exit("quota_compare needs --compare-wasm PATH (an existing .wasm)")
    with load.pinned(load.CLIENT_CPUS):
        upstream = harness.start_bootstrap(load.upstream_bootstrap(), concurrency=1, log_level="warning")
    envoys, results = {}, {c: [] for c in cases}
    try:
        needed = sorted({CASES[c][0] for c in cases})
        with load.pinned(load.MEASURED_CPUS):
            for name, bootstrap in load.envoy_bootstraps(upstream.port, needed, compare_wasm=args.compare_wasm).items():
                envoys[name] = harness.start_bootstrap(bootstrap, concurrency=1, log_level="warning")
        for case in cases:  # warm-up
            envoy, workload = CASES[case]
            load.measure(envoys[envoy], workload, connections=load.CONNECTIONS, duration_s=2)
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for case in cases:
                    envoy, workload = CASES[case]
                    results[case].append(profile(envoys[envoy], workload, Path(tmp) / f"{case}.{r}.data"))
    finally:
        for envoy in envoys.values():
            envoy.stop()
        upstream.stop()
    print("| case | round | CPU µs/request | split (µs/request) |")
    print("|---|---:|---:|---|")
    for case in cases:
        for r, (total, split) in enumerate(results[case], 1):
            parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(split.items(), key=lambda kv: -kv[1]) if v >= 0.5)
            print(f"| {case} | {r} | {total:.1f} | {parts} |")


if __name__ == "__main__":
    main()
