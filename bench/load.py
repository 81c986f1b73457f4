#!/usr/bin/env python3
"""The load benchmark of `make bench`: the quota filter in real Envoy, against
baselines measured in the same run, with wrk.

    .venv/bin/python bench/load.py [--rounds 5] [--duration 4] [--quick] [--cases ...]

Envoy configs (one Envoy process each, all in front of the same upstream):

  none        the router only
  noop        a proxy-wasm filter that does nothing (bench/noop-filter/): the
              floor any wasm filter pays
  floor       a proxy-wasm filter that makes the quota filter's host calls for
              an admitted, header-classified request and nothing else
              (bench/floor-filter/, its calls listed in its src/lib.rs and
              kept in step by the host test host_calls): the floor of the
              quota filter's own design
  floor_body  the floor filter's `body` variant: the quota filter's host
              calls for a request classified by its body (headers held, the
              body held and read), the floor the body workload is read against
  ratelimit   Envoy's native envoy.filters.http.local_ratelimit (a bucket too
              large to ever refuse: its cost, not its refusals)
  quota       the quota filter, demo matrix (envoy/demo-config.json) plus the
              tier `bench` of bench/bench-tier.json, identity from headers
  quota_body  the same, sent requests classified by their 2 KB JSON body
  quota_10k   the same, sent requests from 10,000 distinct users in rotation
  quota_opt   the same as quota, with the .wasm after `wasm-opt -Oz`
  quota_redis the same as quota, counters in Redis (exact mode: every
              request waits for Redis, through webdis)
  quota_redis_approx  the same, Redis approximate mode (sync every 100 ms)
  quota_redis_lease   the same, Redis lease mode (blocks of a tenth of what is left)
  quota_cluster the same as quota_redis, counters in a Redis Cluster (3
              masters, a replica each, TLS, passwords) as the README's
              production layout reaches it: webdis, then a redis_proxy
              listener in the measured Envoy (its cost counts there), then
              TLS (envoy/redis_cluster.py, envoy/examples/redis-cluster/)

Redis and webdis (Debian's, `make setup-redis`) run on the client CPU, the
cluster's six nodes too; the Redis cases are also compared with the
local-counter case `quota`.

--compare-wasm PATH adds the case quota_compare: the `quota` case with another
build of the filter (say, the last commit's), compared with `quota` round by
round, to measure a change to the filter in one run.

--peer-wasm PATH --peer-config FILE add the case `peer`: any public
proxy-wasm filter with its configuration (FILE holds the plugin
configuration, passed to the filter verbatim), the same workload as `quota`.
Nothing of the peer lives in this project; to build the one BENCHMARKS.md
reports, Kong's Rust rate-limiting filter, outside the tree:

    git clone https://github.com/Kong/proxy-wasm-rust-rate-limiting /work/peer/kong
    cd /work/peer/kong && cargo build --release --target wasm32-wasip1
    cat > /work/peer/kong.json <<'JSON'
    {"minute": 1000000000, "hour": 1000000000, "day": 1000000000,
     "limit_by": "header", "header_name": "x-user-id"}
    JSON
    .venv/bin/python bench/load.py --cases noop,floor,quota \
        --peer-wasm /work/peer/kong/target/wasm32-wasip1/release/proxy_wasm_rust_rate_limiting.wasm \
        --peer-config /work/peer/kong.json

(three windows whose limits are never reached, the caller from a header,
like the quota case; check the peer's own README for its current config
keys, and the peer's .wasm name, before a run.)

Every header case is reported against the do-nothing filter and the floor,
paired per round (each round's ratio of the two runs, median over rounds),
with the CPU µs per request it adds over each.

and, only when asked for with --cases, the quota filter with one part
switched off by its own config, to measure that part's share:
quota_no_headers (no response headers), quota_no_metrics (no stats),
quota_no_ledger (no ledger record), quota_prefix (the drafts glob rule
replaced by a prefix).

Workloads (wrk Lua scripts in bench/): headers.lua (a draft classified by
path, one caller), users.lua (the same from 10,000 callers), body.lua (a chat
completion with bench/body-2k.json, classified by its `model`). The bench tier's
limits are never reached, so every request is admitted in state `ok`, the
common path.

CPU layout (2 cores): every measured Envoy runs one worker (--concurrency 1)
pinned to CPU 0; the upstream (an Envoy answering every request itself with
`direct_response`, one worker) and wrk (one thread) share CPU 1. The measured
Envoy is the only benchmark process on its core, so its per-request cost
decides the throughput; its CPU time per request is read from /proc, and the
share of its core it got is reported (other load on the machine shows there).

Each round runs every case once (A B C ... then again, the order rotated each
round); the tables show the median of the rounds. Throughput runs use 32
connections (saturating); latency runs use 1 connection (no queueing), so
their p99 is the cost of one request, not the length of a queue.

First the .wasm is measured before and after `wasm-opt -Oz` (and the result
loaded into Envoy: it is the quota_opt case). Last, the memory run: a fresh
quota Envoy answering each request itself after the filter, one new user per
request until 10^4, 10^5 and 10^6 counters exist (in a counter table of
MEMORY_MAX_COUNTERS, so that none finds its bucket full), with Envoy's RSS and
allocated heap after each step, within --memory-budget seconds (a step not
reached is reported as such). Between the two, the approximate mode's
overshoot (--no-overshoot skips it): two Envoys sharing a hard limit of 1,000
through Redis, loaded by one wrk each, for sync intervals of 50, 100 and 250 ms.

Writes target/bench/load.json and target/bench/load.md, prints the markdown;
exits non-zero if any request failed.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "envoy"))

import harness  # noqa: E402
import redis_cluster  # noqa: E402

QUOTA_WASM = harness.DEFAULT_WASM
NOOP_WASM = REPO_ROOT / "target" / "bench-noop" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
FLOOR_WASM = REPO_ROOT / "target" / "bench-floor" / "wasm32-wasip1" / "release" / "floor_filter.wasm"
OUT_DIR = REPO_ROOT / "target" / "bench"
OPT_WASM = OUT_DIR / "quota_filter.opt.wasm"
MEASURED_CPUS = {0}
CLIENT_CPUS = {1}
CONNECTIONS = 32
# Features the Rust toolchain's wasm32-wasip1 output may use; the release
# build strips the section that would tell wasm-opt.
WASM_OPT_FEATURES = ["--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
                     "--enable-nontrapping-float-to-int", "--enable-multivalue",
                     "--enable-reference-types"]

WORKLOADS = {
    "headers": ["headers.lua"],
    "users": ["users.lua", "--", "10000"],
    "body": ["body.lua"],
}

# (case, envoy, workload, description); baselines are per workload.
CASES = [
    ("none", "none", "headers", "no filter"),
    ("noop", "noop", "headers", "do-nothing wasm filter"),
    ("floor", "floor", "headers", "floor filter: the quota filter's host calls only"),
    ("ratelimit", "ratelimit", "headers", "Envoy local_ratelimit"),
    ("quota", "quota", "headers", "quota filter: demo matrix, header identity"),
    ("quota_opt", "quota_opt", "headers", "quota filter after wasm-opt -Oz"),
    ("quota_10k", "quota_10k", "users", "quota filter: 10,000 distinct users"),
    ("none_body", "none", "body", "no filter, 2 KB JSON body"),
    ("noop_body", "noop", "body", "do-nothing wasm filter, 2 KB JSON body"),
    ("floor_body", "floor_body", "body", "floor filter, body variant: the quota filter's host calls for the 2 KB body"),
    ("quota_body", "quota_body", "body", "quota filter: JSON-body classification, 2 KB"),
    ("quota_redis", "quota_redis", "headers", "quota filter, counters in Redis (exact mode)"),
    ("quota_redis_approx", "quota_redis_approx", "headers", "quota filter, Redis approximate mode"),
    ("quota_redis_lease", "quota_redis_lease", "headers", "quota filter, Redis lease mode"),
    ("quota_cluster", "quota_cluster", "headers",
     "quota filter, counters in a TLS Redis Cluster via redis_proxy (exact mode)"),
]
# The local-counter case each Redis case (and another build) is compared with.
LOCAL_OF = {"quota_redis": "quota", "quota_redis_approx": "quota", "quota_redis_lease": "quota", "quota_compare": "quota",
            "quota_cluster": "quota",
            "quota_no_ledger": "quota"}
COMPARE = ("quota_compare", "quota_compare", "headers", "quota filter, the --compare-wasm build")
PEER = ("peer", "peer", "headers", "public peer (--peer-wasm)")
# The approximate mode's overshoot: a hard limit of OVERSHOOT_LIMIT on two
# Envoys loaded by one wrk each for OVERSHOOT_S seconds, per sync interval.
OVERSHOOT_LIMIT = 1000
OVERSHOOT_S = 3
OVERSHOOT_SYNC_MS = (50, 100, 250)
# counters.max_counters of the memory run (its largest step is 10^6 callers).
MEMORY_MAX_COUNTERS = 4_000_000
# Not part of `make bench`: the same filter with one part switched off by its
# own config, to measure that part's share in Envoy (--cases ... to run them).
ABLATIONS = [
    ("quota_no_headers", "quota_no_headers", "headers", "quota filter, response headers off"),
    ("quota_no_metrics", "quota_no_metrics", "headers", "quota filter, metrics off"),
    ("quota_no_ledger", "quota_no_ledger", "headers", "quota filter, ledger off"),
    ("quota_prefix", "quota_prefix", "headers", "quota filter, drafts glob replaced by a prefix"),
]
# The baselines each case is compared with: (no filter, do-nothing filter).
# The 10k-user load differs from `headers` only in the user id.
BASELINES = {
    "headers": ("none", "noop"),
    "users": ("none", "noop"),
    "body": ("none_body", "noop_body"),
}
# The floor filter each case is also compared with: its calls are those of a
# header-classified request, or (its `body` variant) of a body-classified one.
FLOORS = {"headers": "floor", "users": "floor", "body": "floor_body"}

# The floor filter's variants (bench/floor-filter/src/lib.rs): each leaves out
# or changes one of its calls, to measure that call (bench/profile_envoy.py).
FLOOR_VARIANTS = {v: v for v in ["no_shared", "no_flags", "no_response", "add_each", "replace_each", "no_ledger",
                                   "copies"]}
# The calls the header contract cannot do without: the request read, the
# counter's read and write, the response's headers read and written.
FLOOR_VARIANTS["essential"] = "no_flags no_ledger"
ABLATIONS += [(f"floor_{name}", f"floor_{name}", "headers", f"floor filter, variant: {words}")
              for name, words in FLOOR_VARIANTS.items()]


# --------------------------------------------------------------------------
# Envoy configs
# --------------------------------------------------------------------------

def bench_config():
    """The demo matrix with the tier `bench` (limits never reached)."""
    config = json.loads((REPO_ROOT / "envoy" / "demo-config.json").read_text())
    config["tiers"]["bench"] = json.loads((BENCH_DIR / "bench-tier.json").read_text())
    config["tier_order"].append("bench")
    return config


def memory_config():
    """The bench config with room for the memory run's 10^6 callers, all live
    (day windows): a table 4 times their number, so a new counter practically
    never finds its bucket full (see README, "How counting works")."""
    config = bench_config()
    config["counters"] = {"max_counters": MEMORY_MAX_COUNTERS}
    return config


def ablated_config(part):
    config = bench_config()
    if part == "headers":
        config["response_headers"] = {"quota": False, "ratelimit": False}
    elif part == "metrics":
        config["observability"] = {"metrics": False}
    elif part == "ledger":
        config["observability"] = {"ledger": False}
    elif part == "glob":
        drafts = next(c for c in config["classes"] if c["name"] == "drafts")
        drafts["match"][1]["path"] = {"prefix": "/v1/projects/"}
    return config


def upstream_bootstrap():
    """An Envoy that answers every request itself: a fast upstream that
    costs its core little (the Python mock upstream would be the bottleneck)."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": harness.LISTENER_NAME,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "upstream",
                    "route_config": {"virtual_hosts": [{
                        "name": "all", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"}, "direct_response": {
                            "status": 200,
                            "body": {"inline_string": '{"id":"bench","object":"chat.completion"}'},
                        }}],
                    }]},
                    "http_filters": [{
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": "type.googleapis.com/"
                                                  "envoy.extensions.filters.http.router.v3.Router"},
                    }],
                },
            }]}],
        }]},
    }


def _http_filters(bootstrap):
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def local_ratelimit_bootstrap(upstream_port):
    bootstrap = harness.render_bootstrap(upstream_port=upstream_port, wasm=None)
    percent_100 = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    _http_filters(bootstrap).insert(0, {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "local_rate_limiter",
            # Never empty: this measures what the check costs, not refusals.
            "token_bucket": {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000,
                             "fill_interval": "1s"},
            "filter_enabled": {"runtime_key": "local_rate_limit_enabled", **percent_100},
            "filter_enforced": {"runtime_key": "local_rate_limit_enforced", **percent_100},
        },
    })
    return bootstrap


def direct_response(bootstrap):
    """The listener answers every request itself, after the filters: no
    upstream round trip (the memory run needs many requests, not a proxy)."""
    routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    routes[-1] = {"match": {"prefix": "/"},
                  "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
    return bootstrap


def redis_config(mode="exact", sync_ms=None, key_prefix="quota:"):
    """The bench config with its counters in Redis, through the `webdis` cluster."""
    config = bench_config()
    if mode != "exact":
        config = harness.one_counter_per_request(config)
    config["counters"] = harness.redis_counters()
    config["counters"]["redis"].update(mode=mode, key_prefix=key_prefix)
    if sync_ms is not None:
        config["counters"]["redis"]["sync_ms"] = sync_ms
    return config


def envoy_bootstraps(upstream_port, needed, webdis_port=None, compare_wasm=None, peer=None, front=None):
    config = bench_config()
    clusters = [harness.webdis_cluster(webdis_port)] if webdis_port else []
    quota = lambda wasm, cfg=config: harness.render_bootstrap(  # noqa: E731
        upstream_port=upstream_port, filter_config=cfg, wasm=wasm, hold_headers=True,
        extra_clusters=clusters)
    makers = {
        "none": lambda: harness.render_bootstrap(upstream_port=upstream_port, wasm=None),
        "noop": lambda: harness.render_bootstrap(upstream_port=upstream_port, filter_config="",
                                                 wasm=NOOP_WASM, vm_id="noop"),
        "floor": lambda: harness.render_bootstrap(upstream_port=upstream_port, filter_config="",
                                                  wasm=FLOOR_WASM, vm_id="floor"),
        "floor_body": lambda: harness.render_bootstrap(upstream_port=upstream_port, filter_config="body",
                                                       wasm=FLOOR_WASM, vm_id="floor_body", hold_headers=True),
        **{f"floor_{name}": (lambda n=name, v=words: harness.render_bootstrap(
            upstream_port=upstream_port, filter_config=v, wasm=FLOOR_WASM, vm_id=f"floor_{n}"))
           for name, words in FLOOR_VARIANTS.items()},
        "peer": lambda: harness.render_bootstrap(upstream_port=upstream_port, filter_config=peer[1],
                                                 wasm=peer[0], vm_id="peer"),
        "ratelimit": lambda: local_ratelimit_bootstrap(upstream_port),
        "quota": lambda: quota(QUOTA_WASM),
        "quota_opt": lambda: quota(OPT_WASM),
        "quota_compare": lambda: quota(compare_wasm),
        "quota_10k": lambda: quota(QUOTA_WASM),
        "quota_body": lambda: quota(QUOTA_WASM),
        "quota_memory": lambda: direct_response(quota(QUOTA_WASM, memory_config())),
        "quota_no_headers": lambda: quota(QUOTA_WASM, ablated_config("headers")),
        "quota_no_metrics": lambda: quota(QUOTA_WASM, ablated_config("metrics")),
        "quota_no_ledger": lambda: quota(QUOTA_WASM, ablated_config("ledger")),
        "quota_prefix": lambda: quota(QUOTA_WASM, ablated_config("glob")),
        "quota_redis": lambda: quota(QUOTA_WASM, redis_config()),
        "quota_redis_approx": lambda: quota(QUOTA_WASM, redis_config("approximate", 100)),
        "quota_redis_lease": lambda: quota(QUOTA_WASM, redis_config("lease")),
        # The bench config with its counters in the cluster, through `front`'s
        # webdis and this Envoy's own redis_proxy listener.
        "quota_cluster": lambda: harness.render_bootstrap(
            upstream_port=upstream_port, wasm=QUOTA_WASM, hold_headers=True,
            filter_config=redis_cluster.with_counters(bench_config(), front, on_error="fail_open"),
            extra_listeners=front.listeners, extra_clusters=front.clusters),
    }
    return {name: makers[name]() for name in needed}


# --------------------------------------------------------------------------
# Processes, CPUs, measurements
# --------------------------------------------------------------------------

@contextlib.contextmanager
def pinned(cpus):
    """Children started inside inherit this CPU set (and so all their threads)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_ns(pid):
    """CPU time of every thread of `pid` so far, in nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_kib(pid):
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1))


def heap_allocated(envoy):
    """Bytes the allocator has handed out (admin /memory), or None."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(json.loads(envoy.admin_get("/memory"))["allocated"])
    return None


def _wrk_cmd(url, workload, connections, duration_s, extra_args=()):
    script, *args = WORKLOADS[workload]
    if extra_args:
        args = ["--", *extra_args]
    return ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s",
            "-s", script, url, *args]


def _wrk_result(stdout, stderr):
    line = next((l for l in stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{stdout}\n{stderr}")
    result = json.loads(line[len("BENCH "):])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    result["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    return result


def wrk(url, workload, *, connections, duration_s):
    """Runs wrk (one thread, on the client CPU); the parsed BENCH line."""
    cmd = _wrk_cmd(url, workload, connections, duration_s)
    with pinned(CLIENT_CPUS):
        out = subprocess.run(cmd, cwd=BENCH_DIR, capture_output=True, text=True, check=True,
                             timeout=duration_s + 60)
    return _wrk_result(out.stdout, out.stderr)


def wrk_until(url, workload, extra_args, done, *, connections, limit_s):
    """Runs wrk until `done()` says so (polled every 50 ms), then stops it
    with SIGINT, on which wrk reports as at the end of its duration."""
    cmd = _wrk_cmd(url, workload, connections, limit_s, extra_args)
    with pinned(CLIENT_CPUS):
        proc = subprocess.Popen(cmd, cwd=BENCH_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None and not done():
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _wrk_result(stdout, stderr)


def measure(envoy, workload, *, connections, duration_s):
    pid = envoy.proc.pid
    before = cpu_ns(pid)
    result = wrk(envoy.url("/"), workload, connections=connections, duration_s=duration_s)
    used = cpu_ns(pid) - before
    seconds = result["duration_us"] / 1e6
    return {
        "rps": result["requests"] / seconds,
        "p50_us": result["latency_us"]["p50"],
        "p99_us": result["latency_us"]["p99"],
        "cpu_util": used / 1e9 / seconds,
        "cpu_us_per_req": used / 1e3 / max(result["requests"], 1),
        "requests": result["requests"],
        "errors": sum(result["errors"].values()) + result["non_2xx"],
    }


def check_case(envoy, case, workload):
    """One request before measuring: it succeeds, and the quota filter
    answered. A Redis case gets a few tries: its first call may find its
    master cold (a new TLS connection, the script sent with EVAL)."""
    tries = 10 if case.startswith(("quota_redis", "quota_cluster")) else 1
    for attempt in range(tries):
        try:
            return _check_once(envoy, case, workload)
        except RuntimeError:
            if attempt + 1 == tries:
                raise
            time.sleep(0.5)


def _check_once(envoy, case, workload):
    headers = {"x-user-id": "check-user", "x-plan": "bench"}
    data, path = b"", "/v1/projects/p1/drafts"
    if workload == "body":
        data, path = (BENCH_DIR / "body-2k.json").read_bytes(), "/v1/chat/completions"
        headers["content-type"] = "application/json"
    req = urllib.request.Request(envoy.url(path), data=data, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        state = resp.headers.get("x-quota-state")
        quota_class = resp.headers.get("x-quota-class")
        if resp.status != 200:
            raise RuntimeError(f"{case}: status {resp.status}")
    writes_headers = (case.startswith("quota") and case != "quota_no_headers"
                      or case.startswith("floor") and case != "floor_no_response")
    if writes_headers and (state, quota_class) != ("ok", "drafts"):
        raise RuntimeError(f"{case}: expected x-quota-state ok, class drafts; got {state}, {quota_class}")
    if not writes_headers and case != "quota_no_headers" and state is not None:
        raise RuntimeError(f"{case}: a baseline answered with quota headers")


def quota_stats(envoy):
    stats = envoy.stats(filter=r"wasmcustom\.quota")
    pick = lambda suffix: sum(v for k, v in stats.items() if k.endswith(suffix))  # noqa: E731
    return {"requests": pick(".requests"), "fail_open": pick(".fail_open"),
            "fail_closed": pick(".fail_closed"), "blocked": pick(".blocked")}


# --------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------

def run_load(upstream_port, cases, rounds, duration_s, latency_s, log, webdis_port=None, compare_wasm=None,
             peer=None, front=None):
    envoys = {}
    try:
        needed = sorted({envoy for _, envoy, _, _ in cases})
        with pinned(MEASURED_CPUS):
            for name, bootstrap in envoy_bootstraps(upstream_port, needed, webdis_port, compare_wasm,
                                                    peer, front).items():
                envoys[name] = harness.start_bootstrap(bootstrap, concurrency=1, log_level="warning")
        if "quota_cluster" in envoys:
            with pinned(CLIENT_CPUS):
                front.start_webdis()
            redis_cluster.wait_discovered(envoys["quota_cluster"])
        for case, envoy, workload, _ in cases:
            check_case(envoys[envoy], case, workload)
        log("warm-up: 2 s per case")
        for case, envoy, workload, _ in cases:
            measure(envoys[envoy], workload, connections=CONNECTIONS, duration_s=2)
        runs = {case: {"throughput": [], "latency": []} for case, *_ in cases}
        for r in range(rounds):
            order = cases[r % len(cases):] + cases[:r % len(cases)]
            for case, envoy, workload, _ in order:
                runs[case]["throughput"].append(
                    measure(envoys[envoy], workload, connections=CONNECTIONS, duration_s=duration_s))
            for case, envoy, workload, _ in order:
                runs[case]["latency"].append(
                    measure(envoys[envoy], workload, connections=1, duration_s=latency_s))
            log(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{case} {runs[case]['throughput'][-1]['rps']:.0f}/s" for case, *_ in cases))
        stats = {name: quota_stats(e) for name, e in envoys.items() if name.startswith("quota")}
        return runs, stats
    finally:
        for envoy in envoys.values():
            envoy.stop()


def summarize(cases, runs):
    median = lambda xs: statistics.median(xs)  # noqa: E731
    rows = {}
    for case, envoy, workload, label in cases:
        t, l = runs[case]["throughput"], runs[case]["latency"]
        rows[case] = {
            "label": label, "workload": workload,
            "rps": median([x["rps"] for x in t]),
            "rps_min": min(x["rps"] for x in t), "rps_max": max(x["rps"] for x in t),
            "p50_us": median([x["p50_us"] for x in t]), "p99_us": median([x["p99_us"] for x in t]),
            "cpu_util": median([x["cpu_util"] for x in t]),
            "cpu_us_per_req": median([x["cpu_us_per_req"] for x in t]),
            "lat_p50_us": median([x["p50_us"] for x in l]), "lat_p99_us": median([x["p99_us"] for x in l]),
            "errors": sum(x["errors"] for x in t + l),
            "requests": sum(x["requests"] for x in t + l),
        }
    for case, row in rows.items():
        none, noop = BASELINES[row["workload"]]
        row["vs_none"] = row["rps"] / rows[none]["rps"] if none in rows else None
        row["vs_noop"] = row["rps"] / rows[noop]["rps"] if noop in rows else None
        if noop in rows:
            # Interleaving pairs each round's run with the baseline's run of the
            # same round: the median of those ratios shrugs off a slow round.
            pairs = list(zip(runs[case]["throughput"], runs[noop]["throughput"]))
            paired = [x["rps"] / y["rps"] for x, y in pairs]
            row["vs_noop_paired"] = (median(paired), min(paired), max(paired))
            row["cpu_added_us"] = median([x["cpu_us_per_req"] - y["cpu_us_per_req"] for x, y in pairs])
            row["p50_added_us"] = row["lat_p50_us"] - rows[noop]["lat_p50_us"]
            row["p99_added_us"] = row["lat_p99_us"] - rows[noop]["lat_p99_us"]
        floor = FLOORS.get(row["workload"])
        if floor in rows:
            pairs = list(zip(runs[case]["throughput"], runs[floor]["throughput"]))
            paired = [x["rps"] / y["rps"] for x, y in pairs]
            row["vs_floor_paired"] = (median(paired), min(paired), max(paired))
            row["cpu_over_floor_us"] = median([x["cpu_us_per_req"] - y["cpu_us_per_req"] for x, y in pairs])
        local = LOCAL_OF.get(case)
        if local in rows:
            pairs = list(zip(runs[case]["throughput"], runs[local]["throughput"]))
            row["vs_local"] = row["rps"] / rows[local]["rps"]
            row["vs_local_paired"] = median([x["rps"] / y["rps"] for x, y in pairs])
            row["cpu_vs_local_us"] = median([x["cpu_us_per_req"] - y["cpu_us_per_req"] for x, y in pairs])
    return rows


def run_overshoot(upstream_port, webdis_port, redis, log):
    """The approximate mode's overshoot: two Envoys (one worker each, on the
    measured CPU) share a hard limit of OVERSHOOT_LIMIT drafts through Redis;
    one wrk per Envoy (32 connections, the headers workload: one caller)
    sends for OVERSHOOT_S seconds. Admitted: wrk's 2xx answers; Redis's own
    count after the last sync must agree."""
    results = []
    for sync_ms in OVERSHOOT_SYNC_MS:
        prefix = f"overshoot-{sync_ms}:"
        config = redis_config("approximate", sync_ms, key_prefix=prefix)
        config["tiers"]["bench"]["limits"]["drafts"] = {"hard": OVERSHOOT_LIMIT, "window": "day"}
        sent, admitted = shared_limit_run(upstream_port, webdis_port, config, 2,
                                          settle_s=4 * sync_ms / 1000 + 0.5)  # every worker has synced since
        in_redis = int(redis.cli("HGET", prefix + "{u:bench-user}drafts", "u").strip() or 0)
        row = {"sync_ms": sync_ms, "sent": sent, "rps": sent / OVERSHOOT_S, "admitted": admitted,
               "in_redis": in_redis, "overshoot": admitted - OVERSHOOT_LIMIT,
               "overshoot_pct": 100 * (admitted - OVERSHOOT_LIMIT) / OVERSHOOT_LIMIT}
        results.append(row)
        log(f"overshoot, sync {sync_ms} ms: {admitted} admitted of {sent} for a limit of {OVERSHOOT_LIMIT}, "
            f"Redis says {in_redis}")
    return results


def shared_limit_run(upstream_port, webdis_port, config, count, settle_s=0.0):
    """`count` Envoys (one worker each, on the measured CPU) with `config`
    through the `webdis` cluster, one wrk each (the headers workload, one
    caller) for OVERSHOOT_S seconds; `settle_s` waited before the Envoys
    stop. Returns (sent, admitted: wrk's 2xx answers)."""
    bootstrap = harness.render_bootstrap(upstream_port=upstream_port, filter_config=config, wasm=QUOTA_WASM,
                                         extra_clusters=[harness.webdis_cluster(webdis_port)])
    envoys = []
    try:
        with pinned(MEASURED_CPUS):
            envoys = [harness.start_bootstrap(bootstrap, concurrency=1, log_level="warning") for _ in range(count)]
        with pinned(CLIENT_CPUS):
            procs = [subprocess.Popen(_wrk_cmd(e.url("/"), "headers", CONNECTIONS, OVERSHOOT_S), cwd=BENCH_DIR,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for e in envoys]
        outs = [_wrk_result(*p.communicate(timeout=OVERSHOOT_S + 60)) for p in procs]
        time.sleep(settle_s)
        return sum(o["requests"] for o in outs), sum(o["requests"] - o["non_2xx"] for o in outs)
    finally:
        for e in envoys:
            e.stop()


def run_lease_limit(upstream_port, webdis_port, redis, log):
    """The lease mode at the limit: 2, then 3 Envoys (one worker each, on the
    measured CPU) share a hard limit of OVERSHOOT_LIMIT drafts through Redis
    (lease_fraction 0.1); one wrk per Envoy sends for OVERSHOOT_S seconds.
    Admitted: wrk's 2xx answers, never more than the limit; Redis's count
    (units granted) and the stated refusal bound beside it."""
    results = []
    for count in (2, 3):
        prefix = f"lease-{count}:"
        config = redis_config("lease", key_prefix=prefix)
        config["tiers"]["bench"]["limits"]["drafts"] = {"hard": OVERSHOOT_LIMIT, "window": "day"}
        sent, admitted = shared_limit_run(upstream_port, webdis_port, config, count)
        reserved = int(redis.cli("HGET", prefix + "{u:bench-user}drafts", "u").strip() or 0)
        bound = 2 * -(-OVERSHOOT_LIMIT // 10) * (count - 1)
        row = {"envoys": count, "sent": sent, "rps": sent / OVERSHOOT_S, "admitted": admitted,
               "reserved": reserved, "bound": bound}
        results.append(row)
        log(f"lease, {count} Envoys: {admitted} admitted of {sent} for a limit of {OVERSHOOT_LIMIT} "
            f"(bound {OVERSHOOT_LIMIT - bound}..{OVERSHOOT_LIMIT}), Redis reserved {reserved}")
    return results


def run_memory(upstream_port, steps, budget_s, log):
    """Counters in shared data: RSS and heap once `steps` counters exist.

    A fresh quota Envoy answers every request itself after the filter (no
    upstream round trip); every request comes from a new user. Stops early,
    and says so, once `budget_s` is spent.
    """
    with pinned(MEASURED_CPUS):
        envoy = harness.start_bootstrap(envoy_bootstraps(upstream_port, ["quota_memory"])["quota_memory"],
                                        concurrency=1, log_level="warning")
    results = []
    deadline = time.monotonic() + budget_s
    try:
        # Warm the VM, the connections and the allocator with one caller.
        wrk(envoy.url("/"), "headers", connections=CONNECTIONS, duration_s=2)
        time.sleep(0.5)
        base_stats = quota_stats(envoy)
        base = {"rss_kib": rss_kib(envoy.proc.pid), "heap": heap_allocated(envoy)}
        log(f"memory: base RSS {base['rss_kib'] / 1024:.1f} MiB")
        counted = lambda: quota_stats(envoy)["requests"] - base_stats["requests"]  # noqa: E731
        next_id, errors = 0, 0
        for target in steps:
            started = time.monotonic()
            while (counters := counted()) < target and time.monotonic() < deadline:
                want = target - counters
                # users.lua: every request a new user (COUNT far above what is
                # sent); wrk's thread also stops itself after `want` responses.
                result = wrk_until(
                    envoy.url("/"), "users", [str(10**8), str(next_id), str(want)],
                    lambda: counted() >= target or time.monotonic() >= deadline,
                    connections=CONNECTIONS, limit_s=int(budget_s) + 1)
                errors += sum(result["errors"].values()) + result["non_2xx"]
                # Requests in flight at the stop may have been sent: skip their ids.
                next_id += result["requests"] + CONNECTIONS
            elapsed = time.monotonic() - started
            time.sleep(0.5)
            stats = quota_stats(envoy)
            counters = stats["requests"] - base_stats["requests"]
            rss, heap = rss_kib(envoy.proc.pid), heap_allocated(envoy)
            row = {
                "target": target, "counters": counters, "reached": counters >= target,
                "seconds": elapsed, "rss_mib": rss / 1024,
                "rss_bytes_per_counter": (rss - base["rss_kib"]) * 1024 / max(counters, 1),
                "heap_bytes_per_counter": (heap - base["heap"]) / max(counters, 1)
                if heap is not None and base["heap"] is not None else None,
                "errors": errors, "fail_open": stats["fail_open"], "fail_closed": stats["fail_closed"],
                "blocked": stats["blocked"],
            }
            results.append(row)
            log(f"memory: {counters:,} counters ({'reached' if row['reached'] else 'time budget spent'}), "
                f"RSS {row['rss_mib']:.1f} MiB, {row['rss_bytes_per_counter']:.0f} B/counter, errors {errors}")
            if not row["reached"]:
                break
        # The longest key this run wrote (the shared data's own size, logically).
        key_bytes = len(f"drafts:u:user-{next_id:07d}")
        return {"base_rss_mib": base["rss_kib"] / 1024, "steps": results, "key_bytes": key_bytes,
                "budget_s": budget_s}
    finally:
        envoy.stop()


def wasm_sizes(upstream_port, log):
    """The .wasm as built and after wasm-opt -Oz; whether the latter loads."""
    sizes = {"built": QUOTA_WASM.stat().st_size, "noop": NOOP_WASM.stat().st_size}
    if shutil.which("wasm-opt") is None:
        log("wasm-opt missing: skipping the optimised .wasm")
        return sizes
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["wasm-opt", "-Oz", *WASM_OPT_FEATURES, str(QUOTA_WASM), "-o", str(OPT_WASM)],
                   check=True)
    sizes["wasm_opt_Oz"] = OPT_WASM.stat().st_size
    version = subprocess.run(["wasm-opt", "--version"], capture_output=True, text=True).stdout.strip()
    sizes["wasm_opt_version"] = version
    bootstrap = envoy_bootstraps(upstream_port, ["quota_opt"])["quota_opt"]
    with harness.start_bootstrap(bootstrap, concurrency=1, log_level="warning") as envoy:
        check_case(envoy, "quota_opt", "headers")
    sizes["wasm_opt_loads"] = True
    return sizes


def machine_info():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    envoy = subprocess.run([str(harness.ENVOY_BIN), "--version"], capture_output=True, text=True)
    version = re.search(r"version: \S+/(\d+\.\d+\.\d+)/", envoy.stdout)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    wrk_version = wrk_version.split(" Copyright")[0]
    code = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                          capture_output=True, text=True).stdout.strip() or "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "envoy": version.group(1) if version else envoy.stdout.strip(),
            "wrk": wrk_version.strip(), "kernel": platform.release(), "python": platform.python_version(),
            "code": code}


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def fmt_ratio(x):
    return "–" if x is None else f"{x:.3f}"


def markdown(info, params, rows, stats, memory, sizes, overshoot=None, lease=None):
    out = [f"Machine: {info['cpu']}, {info['cores']} cores; Envoy {info['envoy']}; {info['wrk']}; "
           f"Linux {info['kernel']}; code {info['code']}. Load average {params['loadavg_start']} at the start, "
           f"{params['loadavg_end']} at the end.",
           "",
           f"{params['rounds']} rounds, interleaved; throughput runs {params['duration_s']} s with "
           f"{CONNECTIONS} connections, latency runs {params['latency_s']} s with 1 connection; "
           "medians of the rounds. Measured Envoy: 1 worker on CPU 0; upstream Envoy and wrk on CPU 1.",
           "",
           "| case | req/s | min–max | p50 µs | p99 µs | Envoy CPU % | CPU µs/req | "
           "p50 µs (1 conn) | p99 µs (1 conn) | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows.values():
        out.append(
            f"| {row['label']} | {row['rps']:,.0f} | {row['rps_min']:,.0f}–{row['rps_max']:,.0f} | "
            f"{row['p50_us']} | {row['p99_us']} | {100 * row['cpu_util']:.0f} | {row['cpu_us_per_req']:.1f} | "
            f"{row['lat_p50_us']} | {row['lat_p99_us']} | {row['errors']} |")
    out += ["", "Ratios (req/s of the medians; and paired: each round against the baseline's run in the same "
            "round, median and range), and what the case adds to the do-nothing filter and to the floor "
            "filter (the quota filter's host calls only; for the body workload, its `body` variant):", "",
            "| case | vs no filter | vs do-nothing | vs do-nothing, paired | CPU µs/req added | "
            "vs floor, paired | CPU µs/req over the floor | p50 / p99 µs added (1 conn) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows.values():
        def paired_text(paired):
            return "–" if paired is None else f"{paired[0]:.3f} ({paired[1]:.3f}–{paired[2]:.3f})"
        cpu = "–" if row.get("cpu_added_us") is None else f"{row['cpu_added_us']:+.1f}"
        cpu_floor = "–" if row.get("cpu_over_floor_us") is None else f"{row['cpu_over_floor_us']:+.1f}"
        lat = "–" if row.get("p99_added_us") is None else \
            f"{row['p50_added_us']:+.0f} / {row['p99_added_us']:+.0f}"
        out.append(f"| {row['label']} | {fmt_ratio(row['vs_none'])} | {fmt_ratio(row['vs_noop'])} | "
                   f"{paired_text(row.get('vs_noop_paired'))} | {cpu} | "
                   f"{paired_text(row.get('vs_floor_paired'))} | {cpu_floor} | {lat} |")
    redis_rows = [row for case, row in rows.items() if "vs_local" in row]
    if redis_rows:
        out += ["", "Against the quota filter with local counters, the `quota` case (the same workload; Redis and "
                "webdis on the client CPU):", "",
                "| case | req/s vs local | paired | CPU µs/req added, paired | p50 / p99 µs (1 conn) | "
                "local p50 / p99 µs (1 conn) |",
                "|---|---:|---:|---:|---:|---:|"]
        for case, row in rows.items():
            if "vs_local" in row:
                local = rows[LOCAL_OF[case]]
                out.append(f"| {row['label']} | {row['vs_local']:.3f} | {row['vs_local_paired']:.3f} | "
                           f"{row['cpu_vs_local_us']:+.1f} | "
                           f"{row['lat_p50_us']} / {row['lat_p99_us']} | "
                           f"{local['lat_p50_us']} / {local['lat_p99_us']} |")
    if overshoot:
        out += ["", f"Approximate mode's overshoot: two Envoys, a hard limit of {OVERSHOOT_LIMIT}, one wrk per "
                f"Envoy ({CONNECTIONS} connections, {OVERSHOOT_S} s, one caller):", "",
                "| sync_ms | requests/s (both) | admitted | in Redis after sync | overshoot |",
                "|---:|---:|---:|---:|---:|"]
        for o in overshoot:
            out.append(f"| {o['sync_ms']} | {o['rps']:,.0f} | {o['admitted']:,} | {o['in_redis']:,} | "
                       f"{o['overshoot']:,} ({o['overshoot_pct']:.0f}%) |")
    if lease:
        out += ["", f"Lease mode at the limit: a hard limit of {OVERSHOOT_LIMIT}, lease_fraction 0.1, one wrk per "
                f"Envoy ({CONNECTIONS} connections, {OVERSHOOT_S} s, one caller):", "",
                "| Envoys | requests/s (all) | admitted | reserved in Redis | admitted at least (stated bound) |",
                "|---:|---:|---:|---:|---:|"]
        for o in lease:
            out.append(f"| {o['envoys']} | {o['rps']:,.0f} | {o['admitted']:,} | {o['reserved']:,} | "
                       f"{OVERSHOOT_LIMIT - o['bound']:,} |")
    out += ["", "Quota filter stats after the runs (admitted requests; fail-open, fail-closed, blocked):", ""]
    for name, s in stats.items():
        if name == "quota_no_metrics":
            continue  # no stats to read: that is what it measures
        out.append(f"- {name}: {s['requests']:,} admitted, {s['fail_open']} fail_open, "
                   f"{s['fail_closed']} fail_closed, {s['blocked']} blocked")
    if memory:
        out += ["", f"Memory (one Envoy answering after the filter, base RSS {memory['base_rss_mib']:.1f} MiB; "
                f"counter keys like `drafts:u:user-0000001`, {memory['key_bytes']} bytes, records 15 bytes "
                f"(a day window's compact record), in buckets of the counter table "
                f"(`max_counters` {MEMORY_MAX_COUNTERS:,}); "
                f"time budget {memory['budget_s']:.0f} s):", "",
                "| counters | target reached | RSS MiB | RSS bytes/counter | heap bytes/counter | seconds | "
                "errors | fail_open | fail_closed |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in memory["steps"]:
            heap = "–" if s["heap_bytes_per_counter"] is None else f"{s['heap_bytes_per_counter']:.0f}"
            out.append(f"| {s['counters']:,} | {'yes' if s['reached'] else 'no (time budget)'} | "
                       f"{s['rss_mib']:.1f} | {s['rss_bytes_per_counter']:.0f} | {heap} | "
                       f"{s['seconds']:.0f} | {s['errors']} | {s['fail_open']} | {s['fail_closed']} |")
    if sizes:
        out += ["", "| .wasm | bytes |", "|---|---:|",
                f"| quota_filter.wasm as built | {sizes['built']:,} |"]
        if "wasm_opt_Oz" in sizes:
            out.append(f"| after `wasm-opt -Oz` ({sizes['wasm_opt_version']}); loads in Envoy: "
                       f"{'yes' if sizes.get('wasm_opt_loads') else 'no'} | {sizes['wasm_opt_Oz']:,} |")
        out.append(f"| noop_filter.wasm (for scale) | {sizes['noop']:,} |")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per throughput run")
    parser.add_argument("--latency-duration", type=int, default=2, help="seconds per latency run")
    parser.add_argument("--memory-steps", default="10000,100000,1000000",
                        help="counter totals to measure memory at ('' skips the memory run)")
    parser.add_argument("--memory-budget", type=float, default=360,
                        help="seconds the memory run may spend filling counters")
    parser.add_argument("--cases", default=",".join(c for c, *_ in CASES),
                        help="comma-separated, of: " + ", ".join(c for c, *_ in CASES + ABLATIONS))
    parser.add_argument("--no-overshoot", dest="overshoot", action="store_false",
                        help="skip the Redis approximate mode's overshoot run and the lease mode's run at the limit")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, memory up to 10^4: a smoke run")
    parser.add_argument("--compare-wasm", type=Path,
                        help="another build of the filter, run as the case quota_compare beside quota")
    parser.add_argument("--peer-wasm", type=Path,
                        help="a public proxy-wasm filter's .wasm, run as the case `peer` (with --peer-config)")
    parser.add_argument("--peer-config", type=Path,
                        help="the peer's plugin configuration (a file, passed verbatim)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.latency_duration, args.memory_steps = 1, 2, 1, "10000"
    log = lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    for need in ("wrk",):
        if shutil.which(need) is None:
            sys.exit(f"{need} is missing: apt-get install {need} (make bench does)")
    for wasm, how in ((QUOTA_WASM, "make build"), (NOOP_WASM, "make bench"), (FLOOR_WASM, "make bench")):
        if not wasm.exists():
            sys.exit(f"{wasm} is missing: {how} builds it")
    wanted = args.cases.split(",")
    cases = [c for c in CASES + ABLATIONS if c[0] in wanted]
    if args.compare_wasm:
        if not args.compare_wasm.exists():
            sys.exit(f"{args.compare_wasm} is missing")
        cases.append(COMPARE)
    peer = None
    if args.peer_wasm or args.peer_config:
        if not (args.peer_wasm and args.peer_config):
            sys.exit("--peer-wasm and --peer-config go together")
        for path in (args.peer_wasm, args.peer_config):
            if not path.exists():
                sys.exit(f"{path} is missing")
        peer = (args.peer_wasm.resolve(), args.peer_config.read_text())
        label = f"public peer: {args.peer_wasm.name}"
        cases.append((PEER[0], PEER[1], PEER[2], label))
    params = {"rounds": args.rounds, "duration_s": args.duration, "latency_s": args.latency_duration,
              "connections": CONNECTIONS, "loadavg_start": "%.2f %.2f %.2f" % os.getloadavg()}
    info = machine_info()
    log(f"{info['cpu']}, Envoy {info['envoy']}")
    started = time.monotonic()
    redis = webdis = cluster = front = None
    with pinned(CLIENT_CPUS):
        upstream = harness.start_bootstrap(upstream_bootstrap(), concurrency=1, log_level="warning")
        if any(c[0].startswith("quota_redis") for c in cases) or args.overshoot:
            redis = harness.start_redis()
            webdis = harness.start_webdis(redis.port)
        if any(c[0] == "quota_cluster" for c in cases):
            log("starting a Redis Cluster (6 nodes, TLS)")
            cluster = redis_cluster.start_cluster()
            front = redis_cluster.Front(cluster)
    try:
        sizes = wasm_sizes(upstream.port, log)
        if "wasm_opt_Oz" not in sizes:
            cases = [c for c in cases if c[0] != "quota_opt"]
        runs, stats = run_load(upstream.port, cases, args.rounds, args.duration, args.latency_duration, log,
                               webdis.port if webdis else None, args.compare_wasm, peer, front)
        rows = summarize(cases, runs)
        overshoot = run_overshoot(upstream.port, webdis.port, redis, log) if args.overshoot else None
        lease = run_lease_limit(upstream.port, webdis.port, redis, log) if args.overshoot else None
        steps = [int(s) for s in args.memory_steps.split(",") if s]
        memory = run_memory(upstream.port, steps, args.memory_budget, log) if steps else None
    finally:
        upstream.stop()
        if webdis:
            webdis.stop()
        if redis:
            redis.close()
        if front:
            front.stop()
        if cluster:
            cluster.stop()
    params["loadavg_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    params["seconds"] = time.monotonic() - started
    report = markdown(info, params, rows, stats, memory, sizes, overshoot, lease)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "load.json").write_text(json.dumps(
        {"machine": info, "params": params, "cases": rows, "runs": runs, "quota_stats": stats,
         "memory": memory, "wasm": sizes, "overshoot": overshoot, "lease": lease}, indent=2))
    (OUT_DIR / "load.md").write_text(report)
    print(report)
    log(f"done in {params['seconds']:.0f} s; {OUT_DIR / 'load.md'}")
    errors = sum(r["errors"] for r in rows.values()) + sum(s["errors"] for s in (memory or {}).get("steps", []))
    if errors:
        sys.exit(f"{errors} requests failed: see the errors columns")


if __name__ == "__main__":
    main()
