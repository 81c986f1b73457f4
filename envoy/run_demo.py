#!/usr/bin/env python3
"""`make run`: the mock upstream on :18080 and Envoy with the quota filter and
envoy/demo-config.json on :10000 (admin :9901), in the foreground until Ctrl-C.
Envoy also serves the demo page at /demo/ (envoy/demo/ and the client package
built by `make client`). Envoy's log goes to .run/envoy/envoy.log and is
followed on the terminal; its access log, the filter's ledger (one line of
JSON per classified request), to .run/envoy/ledger.log, written within a
second.

`make run-cluster` (--cluster): the same demo with its counters in Redis,
shared by two Envoys, on :10000 (admin :9901) and :10001 (admin :9902):
redis-server on :6390 with its append-only file in .run/redis, and webdis,
the HTTP front the filter reaches Redis through, on :7390. The first
Envoy's log is followed; the second's is .run/envoy-2/envoy.log."""

import argparse
import json
import signal
import sys
import time

import harness

ENVOY_DIR = harness.REPO_ROOT / "envoy"
DEMO_CONFIG = ENVOY_DIR / "demo-config.json"
DEMO_CURLS = ENVOY_DIR / "demo-curls.txt"
RUN_DIR = harness.REPO_ROOT / ".run" / "envoy"
UPSTREAM_PORT = 18080
LISTENER_PORT = 10000
ADMIN_PORT = 9901
REDIS_PORT = 6390
WEBDIS_PORT = 7390
# Envoy writes its access log files every 10 s by default: every second here.
FLUSH_ARGS = ("--file-flush-interval-msec", "1000")


def follow(envoy):
    """Print Envoy's log as it grows, until Envoy exits or Ctrl-C."""
    with open(envoy.log_path, errors="replace") as log:
        log.seek(0, 2)  # the startup part is in the file; show what comes next
        while envoy.proc.poll() is None:
            line = log.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.2)
        print(log.read(), end="")
    print(f"envoy exited with code {envoy.proc.returncode}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", action="store_true",
                        help="counters in Redis, shared by two Envoys (make run-cluster)")
    cluster = parser.parse_args().cluster
    if not DEMO_CONFIG.exists():
        sys.exit(f"{DEMO_CONFIG.relative_to(harness.REPO_ROOT)} is missing")
    if not harness.DEFAULT_WASM.exists():
        sys.exit(f"{harness.DEFAULT_WASM} is missing: run `make build`")
    # SIGTERM (e.g. from a process manager) stops the demo like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    running = []
    try:
        upstream = harness.start_mock_upstream(port=UPSTREAM_PORT, verbose=True)
        running.append(upstream)
        demo = harness.start_demo_server()
        running.append(demo)
        config, clusters, count = DEMO_CONFIG.read_text(), [], 1
        if cluster:
            redis_dir = harness.REPO_ROOT / ".run" / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            redis = harness.start_redis(port=REDIS_PORT, persistent=True, workdir=redis_dir)
            running.append(redis)
            webdis = harness.start_webdis(REDIS_PORT, port=WEBDIS_PORT)
            running.append(webdis)
            parsed = json.loads(config)
            parsed["counters"] = harness.redis_counters()
            config, clusters, count = json.dumps(parsed), [harness.webdis_cluster(WEBDIS_PORT)], 2
            print(f"Redis on 127.0.0.1:{REDIS_PORT} (append-only file in {redis_dir}), "
                  f"webdis on 127.0.0.1:{WEBDIS_PORT}")
        envoys = []
        for i in range(count):
            workdir = RUN_DIR if i == 0 else RUN_DIR.with_name(f"envoy-{i + 1}")
            envoys.append(harness.start_envoy(
                config, upstream_port=upstream.port,
                listener_port=LISTENER_PORT + i, admin_port=ADMIN_PORT + i,
                workdir=workdir,
                hold_headers=True,  # demo-config.json sets "hold_headers_for_body": true
                demo_port=demo.port, extra_clusters=clusters,
                access_log_path=workdir / "ledger.log", extra_args=FLUSH_ARGS,
            ))
            running.append(envoys[-1])
        for envoy in envoys:
            print(f"\nEnvoy with the quota filter: {envoy.url('/')}")
            print(f"Demo page (usage meters in the browser): {envoy.url(harness.DEMO_PREFIX)}")
            print(f"Envoy admin: {envoy.admin_url('/')} "
                  f"(stats: {envoy.admin_url('/stats/prometheus')})")
            print(f"Envoy log: {envoy.log_path}")
            print(f"Ledger (access log): {envoy.workdir / 'ledger.log'}")
        if not (harness.CLIENT_PKG / "quota_client.js").exists():
            print("  (the page needs the client package: run `make client`)")
        print(f"Mock upstream: {upstream.url('/')}\n")
        if DEMO_CURLS.exists():
            print(DEMO_CURLS.read_text())
        print("Ctrl-C stops everything.\n", flush=True)
        follow(envoys[0])
        return 1
    except (harness.EnvoyStartError, RuntimeError) as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 0
    finally:
        # RedisServer.stop keeps its append-only file in .run/redis.
        for thing in reversed(running):
            thing.stop()


if __name__ == "__main__":
    sys.exit(main())
