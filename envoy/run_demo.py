#!/usr/bin/env python3
"""`make run`: the mock upstream on :18080 and Envoy with the quota filter and
envoy/demo-config.json on :10000 (admin :9901), in the foreground until Ctrl-C.
Envoy also serves the demo page at /demo/ (envoy/demo/ and the client package
built by `make client`). Envoy's log goes to .run/envoy/envoy.log and is
followed on the terminal; its access log, the filter's ledger (one line of
JSON per classified request), to .run/envoy/ledger.log, written within a
second.

`make run-cluster` (--cluster): the same demo with its counters in a Redis
Cluster, shared by three Envoys on :10000, :10001, :10002 (admin :9901,
:9902, :9903). The cluster: three masters with a replica each on
:7001-:7006, TLS only, passwords on, in .run/redis-cluster (made afresh on
each start). Each Envoy reaches it as README's production layout does: the
filter calls its own webdis (:7390, :7391, :7392), which talks RESP to a
redis_proxy listener in the same Envoy (:6390, :6391, :6392), which talks
TLS to the cluster (envoy/examples/redis-cluster/, envoy/redis_cluster.py).
--mode picks counters.redis.mode. The first Envoy's log is followed; the
others' are .run/envoy-2/envoy.log and .run/envoy-3/envoy.log."""

import argparse
import json
import shutil
import signal
import sys
import time

import harness
import redis_cluster

ENVOY_DIR = harness.REPO_ROOT / "envoy"
DEMO_CONFIG = ENVOY_DIR / "demo-config.json"
DEMO_CURLS = ENVOY_DIR / "demo-curls.txt"
RUN_DIR = harness.REPO_ROOT / ".run" / "envoy"
UPSTREAM_PORT = 18080
LISTENER_PORT = 10000
ADMIN_PORT = 9901
REDIS_NODE_PORTS = list(range(7001, 7007))
REDIS_PROXY_PORT = 6390
WEBDIS_PORT = 7390
CLUSTER_ENVOYS = 3
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
                        help="counters in a Redis Cluster, shared by three Envoys (make run-cluster)")
    parser.add_argument("--mode", default="exact",
                        help="with --cluster: counters.redis.mode (default: exact)")
    args = parser.parse_args()
    cluster = args.cluster
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
        config, count = DEMO_CONFIG.read_text(), 1
        if cluster:
            redis_dir = harness.REPO_ROOT / ".run" / "redis-cluster"
            shutil.rmtree(redis_dir, ignore_errors=True)
            print("starting the Redis Cluster (6 nodes, TLS) ...", flush=True)
            redis = redis_cluster.start_cluster(ports=REDIS_NODE_PORTS, workdir=redis_dir)
            running.append(redis)
            count = CLUSTER_ENVOYS
            masters = ", ".join(f":{m.port}" for m in redis.masters())
            print(f"Redis Cluster: masters {masters}, each with a replica, TLS only "
                  f"(CA {redis.tls_dir / 'ca.crt'}), in {redis_dir}\n"
                  f"  redis-cli --tls --cacert {redis.tls_dir / 'ca.crt'} -p {REDIS_NODE_PORTS[0]} "
                  f"-a {redis.admin_password} --no-auth-warning -c")
        envoys = []
        for i in range(count):
            workdir = RUN_DIR if i == 0 else RUN_DIR.with_name(f"envoy-{i + 1}")
            kwargs = dict(upstream_port=upstream.port,
                          listener_port=LISTENER_PORT + i, admin_port=ADMIN_PORT + i,
                          workdir=workdir,
                          hold_headers=True,  # demo-config.json sets "hold_headers_for_body": true
                          demo_port=demo.port,
                          access_log_path=workdir / "ledger.log", extra_args=FLUSH_ARGS)
            if cluster:
                front = redis_cluster.Front(redis, workdir=workdir / "front",
                                            redis_proxy_port=REDIS_PROXY_PORT + i,
                                            webdis_port=WEBDIS_PORT + i)
                running.append(front)
                demo_config = json.loads(config)
                if args.mode != "exact":
                    # Lease and approximate modes charge one counter per request.
                    demo_config = harness.one_counter_per_request(demo_config)
                parsed = redis_cluster.with_counters(demo_config, front, on_error="fail_open", mode=args.mode)
                envoys.append(harness.start_envoy(json.dumps(parsed), extra_listeners=front.listeners,
                                                  extra_clusters=front.clusters, **kwargs))
                running.append(envoys[-1])
                front.start_webdis()
                redis_cluster.wait_discovered(envoys[-1])
                print(f"Envoy {i + 1}: webdis :{front.webdis_port} -> redis_proxy :{front.redis_proxy_port} "
                      f"-> the cluster (counters.redis.mode {args.mode})")
            else:
                envoys.append(harness.start_envoy(config, **kwargs))
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
        # The cluster's nodes and files stay in .run/redis-cluster until the next start.
        for thing in reversed(running):
            thing.stop()


if __name__ == "__main__":
    sys.exit(main())
