#!/usr/bin/env python3
"""The soak of `make soak` (not part of `make test` or `make bench`): does
Envoy's memory level off while callers come and go?

    .venv/bin/python bench/soak.py [--rounds 10] [--round-size 100000] [--window 30s]
                                   [--compare-wasm PATH]

One real Envoy (one worker, pinned as in bench/load.py) with the quota filter
answering every request itself after the filter (no upstream round trip), and
a matrix of one class whose window is short: `--window` (a first-use window,
default 30 s, so the soak fits in minutes; a `minute` window works too, with
longer waits). Each round, wrk (bench/users.lua) sends `--round-size`
requests, each from a caller never seen before; then the soak waits until
every counter of the round is dead (its window ended one window length ago,
the table's reclamation rule), so the next round's callers can take their
room. After each round: Envoy's RSS (VmRSS), the allocator's heap (admin
/memory), and the filter's stats (admitted, fail_open, fail_closed,
store_full).

With the counter table the memory levels off after the first rounds: the
shared data holds at most `counters.max_counters` counters (the default,
10^6, here) in a fixed set of keys, and a dead counter's room is reused. For
contrast, `--compare-wasm` runs the same rounds on another build (say the one
before the table, one shared-data key per counter forever), without
`counters.max_counters` in its config (an older build refuses the field) and
without the waits (it reclaims nothing, so they would change nothing).

Writes target/bench/soak.json and target/bench/soak.md, prints the markdown;
exits non-zero if any request failed or a counter was refused.
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import load  # noqa: E402  (bench/load.py: Envoy, wrk and /proc helpers)
from load import harness  # noqa: E402

OUT_DIR = load.OUT_DIR
# Room between rounds' ids: wrk may send up to one request per connection
# past the round's size before it stops.
ID_STRIDE_PAD = 10 * load.CONNECTIONS


def soak_config(window, max_counters):
    """One class, a limit never reached, callers from `x-user-id`."""
    config = {
        "identity": {"user": [{"header": "x-user-id"}], "default_tier": "soak"},
        "classes": [{"name": "drafts", "unit": "draft", "match": [{"path": {"prefix": "/v1/"}}]}],
        "tiers": {"soak": {"limits": {"drafts": {"hard": 1000, "window": window}}}},
    }
    if max_counters is not None:
        config["counters"] = {"max_counters": max_counters}
    return config


def window_seconds(window):
    units = {"minute": 60, "hour": 3600}
    if window in units:
        return units[window]
    scale = {"s": 1, "m": 60, "h": 3600}[window[-1]]
    return int(window[:-1]) * scale


def soak_stats(envoy):
    stats = envoy.stats(filter=r"wasmcustom\.quota")
    pick = lambda suffix: sum(v for k, v in stats.items() if k.endswith(suffix))  # noqa: E731
    return {"requests": pick(".requests"), "fail_open": pick(".fail_open"),
            "fail_closed": pick(".fail_closed"), "store_full": pick("quota.store_full")}


def new_callers(envoy, first_id, count):
    """wrk sends until `count` new callers were decided, each request a new
    caller (wrk runs its whole duration unless stopped: load.wrk_until stops it)."""
    before = soak_stats(envoy)
    decided = lambda: sum(soak_stats(envoy)[k] - before[k] for k in ("requests", "fail_closed"))  # noqa: E731
    return load.wrk_until(envoy.url("/"), "users", [str(10**8), str(first_id), str(count)],
                          lambda: decided() >= count, connections=load.CONNECTIONS, limit_s=900)


def run_soak(label, wasm, config, rounds, round_size, wait_s, log):
    bootstrap = load.direct_response(harness.render_bootstrap(
        upstream_port=1, filter_config=config, wasm=wasm, hold_headers=True))
    with load.pinned(load.MEASURED_CPUS):
        envoy = harness.start_bootstrap(bootstrap, concurrency=1, log_level="warning")
    rows = []
    try:
        # Warm the VM, the connections and the allocator with one caller.
        load.wrk(envoy.url("/"), "headers", connections=load.CONNECTIONS, duration_s=2)
        time.sleep(0.5)
        base = {"rss_kib": load.rss_kib(envoy.proc.pid), "heap": load.heap_allocated(envoy),
                "stats": soak_stats(envoy)}
        log(f"{label}: base RSS {base['rss_kib'] / 1024:.1f} MiB")
        callers = 0
        for r in range(rounds):
            started = time.monotonic()
            result = new_callers(envoy, r * (round_size + ID_STRIDE_PAD), round_size)
            elapsed = time.monotonic() - started
            callers += result["requests"]
            time.sleep(0.5)
            stats = soak_stats(envoy)
            rss, heap = load.rss_kib(envoy.proc.pid), load.heap_allocated(envoy)
            row = {
                "round": r + 1, "callers": callers, "seconds": elapsed,
                "requests_per_s": result["requests"] / elapsed,
                "rss_mib": rss / 1024, "rss_growth_mib": (rss - base["rss_kib"]) / 1024,
                "heap_mib": heap / 2**20 if heap is not None else None,
                "errors": sum(result["errors"].values()) + result["non_2xx"],
                **{k: stats[k] - base["stats"][k] for k in ("requests", "fail_open", "fail_closed", "store_full")},
            }
            rows.append(row)
            log(f"{label}: round {r + 1}: {callers:,} callers, RSS {row['rss_mib']:.1f} MiB "
                f"(+{row['rss_growth_mib']:.1f}), {row['requests_per_s']:,.0f} req/s, "
                f"store_full {row['store_full']}, errors {row['errors']}")
            if wait_s and r + 1 < rounds:
                time.sleep(wait_s)
        return {"label": label, "wasm": str(wasm), "config": config, "base_rss_mib": base["rss_kib"] / 1024,
                "base_heap_mib": base["heap"] / 2**20 if base["heap"] is not None else None,
                "wait_s": wait_s, "rounds": rows}
    finally:
        envoy.stop()


def table(run):
    out = [f"**{run['label']}** (base RSS {run['base_rss_mib']:.1f} MiB):", "",
           "| round | callers so far | RSS MiB | RSS growth MiB | heap MiB | req/s | admitted | fail_open | store_full | errors |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in run["rounds"]:
        heap = f"{r['heap_mib']:.1f}" if r["heap_mib"] is not None else "n/a"
        out.append(f"| {r['round']} | {r['callers']:,} | {r['rss_mib']:.1f} | {r['rss_growth_mib']:+.1f} | {heap} "
                   f"| {r['requests_per_s']:,.0f} | {r['requests']:,} | {r['fail_open']:,} | {r['store_full']:,} "
                   f"| {r['errors']:,} |")
    rounds = run["rounds"]
    if len(rounds) >= 4:
        half = len(rounds) // 2
        late = (rounds[-1]["rss_mib"] - rounds[half - 1]["rss_mib"]) / (len(rounds) - half)
        first = rounds[0]["rss_growth_mib"]
        out += ["", f"Growth: {first:+.1f} MiB in round 1; {late:+.2f} MiB per round over rounds "
                    f"{half + 1}–{len(rounds)}."]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-size", type=int, default=100_000, help="new callers per round")
    parser.add_argument("--window", default="30s", help="the class's window (first-use like 15s, or minute)")
    parser.add_argument("--max-counters", type=int, default=None,
                        help="counters.max_counters (default: the filter's own, 10^6)")
    parser.add_argument("--wasm", type=Path, default=load.QUOTA_WASM)
    parser.add_argument("--compare-wasm", type=Path,
                        help="also soak this build (e.g. one before the counter table), without waits")
    args = parser.parse_args()

    started = time.monotonic()
    log = lambda line: print(f"[{time.monotonic() - started:6.1f}s] {line}", file=sys.stderr, flush=True)  # noqa: E731
    # A round's last counters are dead one window after their window ends.
    wait_s = 2 * window_seconds(args.window) + 1
    runs = [run_soak("counter table (this build)", args.wasm, soak_config(args.window, args.max_counters),
                     args.rounds, args.round_size, wait_s, log)]
    if args.compare_wasm:
        runs.append(run_soak(f"compared build ({args.compare_wasm})", args.compare_wasm,
                             soak_config(args.window, None), args.rounds, args.round_size, 0, log))
    minutes = (time.monotonic() - started) / 60
    version = subprocess.run([str(harness.ENVOY_BIN), "--version"], capture_output=True, text=True).stdout
    envoy = next((w for w in version.split() if "/1." in w), "envoy")
    text = "\n\n".join(
        [f"Soak: {args.rounds} rounds of {args.round_size:,} new callers, window {args.window}, "
         f"{wait_s} s between rounds for this build; {minutes:.1f} minutes; {platform.node()}; {envoy}."]
        + [table(run) for run in runs])
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "soak.json").write_text(json.dumps({"args": vars(args) | {"wasm": str(args.wasm),
                                                                         "compare_wasm": str(args.compare_wasm)},
                                                   "runs": runs, "minutes": minutes}, indent=2))
    (OUT_DIR / "soak.md").write_text(text + "\n")
    print(text)
    ours = runs[0]["rounds"]
    failed = sum(r["errors"] for run in runs for r in run["rounds"])
    refused = ours[-1]["store_full"] + ours[-1]["fail_open"] + ours[-1]["fail_closed"]
    if failed or refused:
        print(f"soak: {failed} failed requests, {refused} counters refused or uncounted", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
