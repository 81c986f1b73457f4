#!/usr/bin/env python3
"""The criterion results of the core benchmarks as a markdown table.

    python3 bench/criterion_table.py [target/criterion] > target/bench/core.md

Reads each benchmark's latest estimates (`<id>/new/estimates.json`) in the
groups of core/benches/core/ and prints the median with its 95% confidence
interval, in the order the benchmarks ran.
"""

import json
import sys
from pathlib import Path

GROUPS = ["classify", "window", "decide", "headers"]


def fmt_ns(ns):
    if ns >= 1000:
        return f"{ns / 1000:.2f} µs"
    return f"{ns:.1f} ns"


def rows(root):
    found = []
    for group in GROUPS:
        for bench in (root / group).glob("*/new/benchmark.json"):
            meta = json.loads(bench.read_text())
            est = json.loads((bench.parent / "estimates.json").read_text())["median"]
            found.append((bench.stat().st_mtime, meta["full_id"], est))
    return [(name, est) for _, name, est in sorted(found)]


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    table = rows(root)
    if not table:
        sys.exit(f"no criterion results under {root}: run `cargo bench -p quota-core --bench core`")
    print("| benchmark | median | 95% CI |")
    print("|---|---:|---:|")
    for name, est in table:
        ci = est["confidence_interval"]
        print(f"| `{name}` | {fmt_ns(est['point_estimate'])} | "
              f"{fmt_ns(ci['lower_bound'])} – {fmt_ns(ci['upper_bound'])} |")


if __name__ == "__main__":
    main()
