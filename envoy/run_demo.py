#!/usr/bin/env python3
"""`make run`: the mock upstream on :18080 and Envoy with the quota filter and
envoy/demo-config.json on :10000 (admin :9901), in the foreground until Ctrl-C.
Envoy also serves the demo page at /demo/ (envoy/demo/ and the client package
built by `make client`). Envoy's log goes to .run/envoy/envoy.log and is
followed on the terminal."""

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
    if not DEMO_CONFIG.exists():
        sys.exit(f"{DEMO_CONFIG.relative_to(harness.REPO_ROOT)} is missing")
    if not harness.DEFAULT_WASM.exists():
        sys.exit(f"{harness.DEFAULT_WASM} is missing: run `make build`")
    # SIGTERM (e.g. from a process manager) stops the demo like Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    upstream = envoy = demo = None
    try:
        upstream = harness.start_mock_upstream(port=UPSTREAM_PORT, verbose=True)
        demo = harness.start_demo_server()
        envoy = harness.start_envoy(
            DEMO_CONFIG.read_text(), upstream_port=upstream.port,
            listener_port=LISTENER_PORT, admin_port=ADMIN_PORT, workdir=RUN_DIR,
            hold_headers=True,  # demo-config.json sets "hold_headers_for_body": true
            demo_port=demo.port,
        )
        print(f"\nEnvoy with the quota filter: {envoy.url('/')}")
        print(f"Demo page (usage meters in the browser): {envoy.url(harness.DEMO_PREFIX)}")
        if not (harness.CLIENT_PKG / "quota_client.js").exists():
            print("  (the page needs the client package: run `make client`)")
        print(f"Envoy admin: {envoy.admin_url('/')} "
              f"(stats: {envoy.admin_url('/stats/prometheus')})")
        print(f"Mock upstream: {upstream.url('/')}")
        print(f"Envoy log: {envoy.log_path}\n")
        if DEMO_CURLS.exists():
            print(DEMO_CURLS.read_text())
        print("Ctrl-C stops both.\n", flush=True)
        follow(envoy)
        return 1
    except harness.EnvoyStartError as err:
        print(err, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 0
    finally:
        if envoy:
            envoy.stop()
        if demo:
            demo.stop()
        if upstream:
            upstream.stop()


if __name__ == "__main__":
    sys.exit(main())
