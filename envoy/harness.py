"""Run Envoy with the quota wasm filter in front of the mock upstream.

Used by `make run` (run_demo.py) and the end-to-end tests (tests/conftest.py).
Every Envoy gets its own work directory, its own ports (chosen by the kernel
unless given) and no hot-restart state, so several can run at once.

    with start_mock_upstream() as upstream, \\
         start_envoy(filter_config, upstream_port=upstream.port) as envoy:
        urllib.request.urlopen(envoy.url("/v1/embeddings"))
        print(envoy.stats(filter="wasmcustom"))
"""

import ctypes
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVOY_BIN = REPO_ROOT / ".venv" / "bin" / "envoy"
DEFAULT_WASM = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "quota_filter.wasm"
MOCK_UPSTREAM = Path(__file__).resolve().parent / "mock_upstream.py"
# The demo page (envoy/demo/) and the client package it imports (`make client`),
# served under DEMO_PREFIX through Envoy, beside the API (see start_demo_server).
DEMO_DIR = Path(__file__).resolve().parent / "demo"
CLIENT_PKG = REPO_ROOT / "client" / "pkg"
DEMO_PREFIX = "/demo/"
LISTENER_NAME = "main"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

_PR_SET_PDEATHSIG = 1

# Envoy's buffers, set in every config rendered here (see the README's "Envoy's
# buffer limit"). The listener reads at most this much from a client at a time
# and holds at most this much for it (Envoy's edge recommendation, 32 KiB)...
CONNECTION_BUFFER_BYTES = 32 * 1024
# ...and the filter's default max_body_bytes, when its config does not say.
DEFAULT_MAX_BODY_BYTES = 256 * 1024

# The access log format that prints the filter's ledger record (one line of
# JSON per classified request, `-` for any other request): the filter state
# the filter sets from its `on_log`, printed as it is (PLAIN: no quoting).
LEDGER_FORMAT = "%FILTER_STATE(wasm.quota_ledger:PLAIN)%\n"


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM when the thread that started it
    dies (Linux; here always the main thread), so a killed test run or demo
    never leaves an Envoy holding ports."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _popen(args, **kwargs):
    # A new session keeps Ctrl-C away from the children: the Python parent gets
    # it and stops them in order.
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_die_with_parent, **kwargs)


def _terminate(proc, timeout=STOP_TIMEOUT_S):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_INVENTORY_RE = re.compile(
    r"\[source/server/server\.cc:\d+\] ( {2}|statically linked extensions|HTTP header map info)")


def without_inventory(log):
    """The log without Envoy's startup inventory of extensions and header maps:
    ~100 long lines that bury the ones that explain a failure."""
    return "\n".join(line for line in log.splitlines() if not _INVENTORY_RE.search(line))


class EnvoyStartError(RuntimeError):
    """Envoy exited (exit_code set) or never became ready (exit_code None).

    `log` holds the whole log; the message shows it without the startup
    inventory.
    """

    def __init__(self, message, log, exit_code=None):
        super().__init__(f"{message}\n----- envoy log (startup inventory left out) -----\n"
                         f"{without_inventory(log)}")
        self.log = log
        self.exit_code = exit_code


# --------------------------------------------------------------------------
# Mock upstream
# --------------------------------------------------------------------------

class MockUpstream(NamedTuple):
    """The mock upstream process; unpacks as `(process, port)`."""

    process: subprocess.Popen
    port: int

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        _terminate(self.process)
        self.process.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_mock_upstream(*, port=0, verbose=False):
    """Start envoy/mock_upstream.py and wait for its `LISTENING <port>` line."""
    args = [sys.executable, str(MOCK_UPSTREAM), "--port", str(port)]
    if verbose:
        args.append("--verbose")
    proc = _popen(args, stdout=subprocess.PIPE, text=True)
    # The mock prints this line once it is bound, so no polling is needed.
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        _terminate(proc)
        raise RuntimeError(f"mock upstream failed to start (exit {proc.returncode}): {line!r}")
    return MockUpstream(proc, int(line.split()[1]))


# --------------------------------------------------------------------------
# Demo page
# --------------------------------------------------------------------------

class _StaticFiles(SimpleHTTPRequestHandler):
    """GET/HEAD of files under a few mounts ({url prefix: directory}), never
    cached, so a rebuilt client package or an edited page shows on reload."""

    protocol_version = "HTTP/1.1"
    mounts = {}  # set per server by start_demo_server
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".ts": "text/plain",
    }

    def translate_path(self, path):
        path = urllib.parse.urlsplit(path).path
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if path.startswith(prefix):
                self.directory = str(self.mounts[prefix])
                return super().translate_path("/" + path[len(prefix):])
        return str(DEMO_DIR / "no-such-mount" / "missing")  # a 404

    def end_headers(self):
        self.send_header("cache-control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):
        pass


class DemoServer:
    """The demo page's static files on 127.0.0.1:port, in a thread of this
    process. A context manager."""

    def __init__(self, server):
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="demo-server",
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_demo_server(*, port=0):
    """Serve envoy/demo/ at DEMO_PREFIX and the client package (client/pkg/,
    built by `make client`) at DEMO_PREFIX + "quota-client/". Give Envoy the
    port as demo_port so the page and the API share one origin."""
    handler = type("DemoFiles", (_StaticFiles,), {
        "mounts": {DEMO_PREFIX: DEMO_DIR, DEMO_PREFIX + "quota-client/": CLIENT_PKG},
    })
    return DemoServer(ThreadingHTTPServer(("127.0.0.1", port), handler))


# --------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------

def _free_port():
    """A port nothing listens on right now (for servers that cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port, proc, what, timeout=START_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not listening on {port} after {timeout:.0f}s") from None
            time.sleep(0.05)


class RedisServer:
    """A redis-server on loopback (Debian's, see `make setup-redis`); use
    `start_redis`. A context manager. With `persistent`, every write is in
    the append-only file before Redis answers (appendfsync always), so a
    restart (`restart()`) loses nothing."""

    def __init__(self, *, port=0, persistent=False, workdir=None):
        self.port = port or _free_port()
        self.persistent = persistent
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="redis-"))
        self.proc = None

    def start(self):
        durability = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                      else ["--appendonly", "no"])
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log"), *durability]
        self.proc = _popen(args, stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "redis-server")
        return self

    def stop(self):
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def cli(self, *args):
        """Runs redis-cli against this server; its output as text."""
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def start_redis(**kwargs):
    return RedisServer(**kwargs).start()


# Webdis answers only the calls the filter makes: the script, by hash or
# itself (after Redis lost its script cache). Everything else is refused.
WEBDIS_COMMANDS = ["EVALSHA", "EVAL"]


class Webdis:
    """webdis (Debian's): the HTTP front through which the filter reaches
    Redis. A context manager; use `start_webdis`."""

    def __init__(self, redis_port, *, port=0, workdir=None):
        self.port = port or _free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="webdis-"))
        config = {
            "redis_host": "127.0.0.1", "redis_port": redis_port,
            "http_host": "127.0.0.1", "http_port": self.port,
            "threads": 2, "pool_size": 16, "daemonize": False, "database": 0,
            "acl": [{"disabled": ["*"]}, {"enabled": WEBDIS_COMMANDS}],
            "verbosity": 3, "logfile": str(self.workdir / "webdis.log"),
        }
        (self.workdir / "webdis.json").write_text(json.dumps(config, indent=2))
        self.proc = _popen(["webdis", str(self.workdir / "webdis.json")], stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc, "webdis")

    def stop(self):
        _terminate(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_webdis(redis_port, **kwargs):
    return Webdis(redis_port, **kwargs)


def webdis_cluster(webdis_port, name="webdis"):
    """The Envoy cluster the filter's `counters.redis.cluster` names."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _socket_address(webdis_port)}},
            ]}],
        },
    }


def one_counter_per_request(config):
    """`config` (a dict) for the Redis modes that charge one counter per
    request (lease, approximate): each stacked cell keeps its member's own
    limit, and `admin` (grants need one exact balance) goes."""
    config = json.loads(json.dumps(config))
    config.pop("admin", None)
    for tier in config.get("tiers", {}).values():
        for name, cell in tier.get("limits", {}).items():
            if isinstance(cell, list):
                own = [c for c in cell if c.get("scope", "user") == "user"]
                tier["limits"][name] = {k: v for k, v in (own or cell)[0].items() if k != "admin_cap"}
    return config


def redis_counters(on_error="fail_open", timeout_ms=200, cluster="webdis"):
    """The filter's `counters` object for the Redis store behind `webdis_cluster`."""
    return {"store": "redis", "on_error": on_error,
            "redis": {"cluster": cluster, "timeout_ms": timeout_ms}}


# --------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------

class Prometheus:
    """Debian's Prometheus (`make setup-prometheus`) on a loopback port the
    kernel picks, with the given config (a dict; JSON is YAML) and a
    temporary data directory; use `start_prometheus`. A context manager.
    `api(path, **params)` calls its HTTP API and returns the answer's `data`."""

    def __init__(self, config, *, workdir=None, timeout=START_TIMEOUT_S):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="prometheus-"))
        self.log_path = self.workdir / "prometheus.log"
        self._final_log = None
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2))
        args = ["prometheus", f"--config.file={config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--web.listen-address=127.0.0.1:0"]
        with open(self.log_path, "wb") as log_file:
            self.proc = _popen(args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = None
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout):
        # Prometheus logs the port it bound: `msg="Listening on" address=127.0.0.1:41234`.
        listening = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with code {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {timeout:.0f}s:\n{self.log()}")
            if self.port is None and (match := listening.search(self.log())):
                self.port = int(match.group(1))
            if self.port is not None:
                try:
                    with urllib.request.urlopen(self.url("/-/ready"), timeout=1.0) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    pass  # 503 while the TSDB starts
            time.sleep(0.05)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def api(self, path, **params):
        """GET /api/v1/<path>?params; the answer's `data`. Raises on an error
        answer (a query that does not parse, say), with Prometheus' message."""
        url = self.url(f"/api/v1/{path}") + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10.0) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            answer = json.loads(err.read() or b"{}")
        if answer.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr, at=None):
        """An instant query (at `at`, Unix seconds, or now): the result's list."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        return self.api("query", **params)["result"]

    def log(self):
        """Prometheus' log so far (kept after stop)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        """Stop Prometheus and remove its config and data (the log is kept)."""
        if self._final_log is not None:
            return
        _terminate(self.proc)
        self._final_log = self.log()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_prometheus(config, **kwargs):
    return Prometheus(config, **kwargs)


def max_body_bytes(filter_config):
    """The filter's max_body_bytes (a config dict or its JSON text; the
    default when it does not say or cannot be read)."""
    if isinstance(filter_config, str):
        try:
            filter_config = json.loads(filter_config)
        except ValueError:
            return DEFAULT_MAX_BODY_BYTES
    value = filter_config.get("max_body_bytes") if isinstance(filter_config, dict) else None
    usable = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if usable else DEFAULT_MAX_BODY_BYTES


def request_body_buffer_limit(filter_config):
    """What Envoy must be able to hold for one request while the filter reads
    its body: up to max_body_bytes held, plus one more read from the client,
    which Envoy adds before the filter sees it (the listener's limit and a
    16 KiB slice or two; twice a listener limit of 32 KiB covers it). Below
    this, a body past the cap could get Envoy's own 413 instead of the
    filter's answer."""
    return max_body_bytes(filter_config) + 2 * CONNECTION_BUFFER_BYTES


def _socket_address(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def render_bootstrap(*, upstream_port, filter_config=None, wasm=DEFAULT_WASM, vm_id="quota",
                     listener_port=0, admin_port=0, extra_clusters=(),
                     stat_prefix="ingress_http", hold_headers=False, demo_port=None,
                     normalize_paths=True, access_log_path=None, extra_listeners=()):
    """The Envoy bootstrap as a dict (Envoy reads it as JSON).

    filter_config: dict (serialised to JSON) or str (passed verbatim, so tests
    can send invalid JSON). wasm=None leaves the wasm filter out: router only.
    Port 0 lets the kernel choose (see EnvoyProcess for reading it back).
    hold_headers sets the plugin's allow_on_headers_stop_iteration (Envoy >=
    1.35), which the filter's "hold_headers_for_body": true relies on.
    normalize_paths: Envoy's own path normalisation (normalize_path,
    merge_slashes, escaped slashes unescaped), as every config we ship sets;
    False shows what the filter's own normalisation does without it.
    demo_port: a start_demo_server() port; DEMO_PREFIX then goes there, with
    the quota filter switched off for that route, and everything else still
    goes through the filter to the upstream (same origin for the page).
    Envoy's buffers: the listener's per_connection_buffer_limit_bytes is
    CONNECTION_BUFFER_BYTES and the virtual host's request_body_buffer_limit
    is request_body_buffer_limit(filter_config), so a body the filter is
    reading never outgrows what Envoy will hold.
    access_log_path: a file the connection manager's access log writes, one
    line per request in LEDGER_FORMAT (the ledger; see ledger_access_log).
    Envoy buffers the file: it is complete once Envoy stopped (or after
    --file-flush-interval-msec).
    extra_listeners: listeners after the main one (e.g. the redis_proxy
    listener of envoy/redis_cluster.py).
    """
    http_filters = []
    if wasm is not None:
        if not isinstance(filter_config, str):
            filter_config = json.dumps(filter_config)
        http_filters.append({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "quota",
                    "root_id": "quota",
                    "vm_config": {
                        "vm_id": vm_id,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": str(wasm)}},
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": filter_config,
                    },
                    "fail_open": False,
                    **({"allow_on_headers_stop_iteration": True} if hold_headers else {}),
                },
            },
        })
    http_filters.append({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    })

    upstream_cluster = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _socket_address(upstream_port)}},
            ]}],
        },
    }
    return {
        "admin": {"address": _socket_address(admin_port)},
        # The filter's stats are quota.<class>.<tier>.<event>; these turn class
        # and tier into Prometheus labels (see the README's Observability).
        "stats_config": {"stats_tags": [
            {"tag_name": "quota_class", "regex": r"^wasmcustom\.quota\.(([^.]+)\.)[^.]+\.[^.]+$"},
            {"tag_name": "quota_tier", "regex": r"^wasmcustom\.quota\.[^.]+\.(([^.]+)\.)[^.]+$"},
        ]},
        "static_resources": {
            "listeners": [{
                "name": LISTENER_NAME,
                "address": _socket_address(listener_port),
                # One read from a client, and what Envoy holds toward it.
                "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_BYTES,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                 "http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": stat_prefix,
                        # One spelling of each path for every filter and route, so
                        # `/v1/chat/%63ompletions` or `//v1/chat/./completions`
                        # cannot reach the upstream unclassified.
                        **({"normalize_path": True, "merge_slashes": True,
                            "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD"}
                           if normalize_paths else {}),
                        "route_config": {
                            "name": "local",
                            "virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                # A body the filter reads is held here, not
                                # in the listener's 32 KiB (see above).
                                "request_body_buffer_limit":
                                    request_body_buffer_limit(filter_config),
                                "routes": [*_demo_routes(demo_port),
                                           {"match": {"prefix": "/"},
                                            "route": {"cluster": "upstream"}}],
                            }],
                        },
                        "http_filters": http_filters,
                        **({"access_log": [ledger_access_log(access_log_path)]}
                           if access_log_path is not None else {}),
                    },
                }]}],
            }, *extra_listeners],
            "clusters": [upstream_cluster, *_demo_clusters(demo_port), *extra_clusters],
        },
    }


def ledger_access_log(path):
    """The connection manager's access log that writes the ledger to a file."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"text_format_source": {"inline_string": LEDGER_FORMAT}},
        },
    }


def _demo_routes(demo_port):
    if demo_port is None:
        return []
    # Static files are never a quota matter, whatever the config classifies.
    no_quota = {"envoy.filters.http.wasm": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
        "disabled": True,
    }}
    return [
        {"match": {"path": DEMO_PREFIX.rstrip("/")},
         "redirect": {"path_redirect": DEMO_PREFIX},
         "typed_per_filter_config": no_quota},
        {"match": {"prefix": DEMO_PREFIX},
         "route": {"cluster": "demo"},
         "typed_per_filter_config": no_quota},
    ]


def _demo_clusters(demo_port):
    if demo_port is None:
        return []
    return [{
        "name": "demo",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "demo",
            "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _socket_address(demo_port)}},
            ]}],
        },
    }]


class EnvoyProcess:
    """A running Envoy; use `start_envoy` to make one. A context manager.

    port / admin_port are the ports Envoy actually bound, known once ready.
    """

    def __init__(self, bootstrap, *, concurrency, log_level, extra_args, workdir):
        if workdir is None:
            self.workdir, self._owns_workdir = Path(tempfile.mkdtemp(prefix="envoy-")), True
        else:
            self.workdir, self._owns_workdir = Path(workdir), False
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "envoy.log"
        self.port = None
        self.admin_port = None
        self._final_log = None
        bootstrap_path = self.workdir / "bootstrap.json"
        bootstrap_path.write_text(json.dumps(bootstrap, indent=2))
        self._admin_address_path = self.workdir / "admin-address"
        self._admin_address_path.unlink(missing_ok=True)  # stale from a reused workdir
        args = [
            str(ENVOY_BIN),
            "-c", str(bootstrap_path),
            "--concurrency", str(concurrency),
            "-l", log_level,
            # Envoy writes the admin address it bound here (admin port 0).
            "--admin-address-path", str(self._admin_address_path),
            # Hot restart shares memory and a domain socket, keyed by --base-id,
            # between Envoys on a host. Without it, any number of Envoys run side
            # by side with no base id to coordinate.
            "--disable-hot-restart",
            *extra_args,
        ]
        with open(self.log_path, "wb") as log_file:
            self.proc = _popen(args, stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path="/"):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def admin_get(self, path, timeout=5.0):
        """GET an admin path; the body as text."""
        with urllib.request.urlopen(self.admin_url(path), timeout=timeout) as resp:
            return resp.read().decode()

    def log(self):
        """Envoy's log so far (kept after stop)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern, timeout=10.0):
        """Wait until the log matches the regex `pattern`; the match, or None
        on timeout or when Envoy exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log())
            if match or self.proc.poll() is not None or time.monotonic() > deadline:
                return match
            time.sleep(0.05)

    def stats(self, filter=None):
        """Counters and gauges as {name: value}; `filter` is Envoy's regex
        filter on names (e.g. "wasmcustom" for the filter's own metrics)."""
        query = "/stats?format=json"
        if filter:
            query += "&filter=" + urllib.parse.quote(filter)
        entries = json.loads(self.admin_get(query))["stats"]
        return {e["name"]: e["value"] for e in entries if "value" in e}

    def wait_for_stats(self, filter, until, timeout=10.0):
        """The stats `filter` selects (see `stats`) once `until(stats)` holds;
        on timeout, or when Envoy exits, the last read, for the test's
        assertion to show. The quota filter counts its stats in the VM and
        adds them to Envoy's on each worker's tick (every 100 ms), so a test
        waits for the counts it expects instead of reading them at once."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats(filter)
            if until(stats) or self.proc.poll() is not None or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)

    def stop(self):
        """Stop Envoy (SIGTERM, then SIGKILL) and remove its temporary files."""
        if self._final_log is not None:
            return
        _terminate(self.proc)
        self._final_log = self.log_path.read_text(errors="replace")
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _wait_ready(self, timeout):
        """Wait for /ready to say LIVE, then read back the listener's port."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EnvoyStartError(f"envoy exited with code {self.proc.returncode}",
                                      self.log(), self.proc.returncode)
            if time.monotonic() > deadline:
                raise EnvoyStartError(f"envoy not ready after {timeout:.0f}s", self.log())
            if self.admin_port is None and self._admin_address_path.exists():
                address = self._admin_address_path.read_text().strip()
                if address:
                    self.admin_port = int(address.rsplit(":", 1)[1])
            if self.admin_port is not None and self._is_live():
                break
            time.sleep(0.05)
        listeners = json.loads(self.admin_get("/listeners?format=json"))["listener_statuses"]
        self.port = next(listener["local_address"]["socket_address"]["port_value"]
                         for listener in listeners if listener["name"] == LISTENER_NAME)

    def _is_live(self):
        try:
            return self.admin_get("/ready", timeout=1.0).strip() == "LIVE"
        except OSError:
            return False  # not listening yet, or 503 while initializing


def start_envoy(filter_config, *, upstream_port, concurrency=2, listener_port=0, admin_port=0,
                wasm=DEFAULT_WASM, vm_id="quota", log_level="info", extra_clusters=(),
                stat_prefix="ingress_http", hold_headers=False, workdir=None, extra_args=(),
                timeout=START_TIMEOUT_S, demo_port=None, normalize_paths=True, access_log_path=None,
                extra_listeners=()):
    """Start Envoy in front of 127.0.0.1:upstream_port and wait until it is ready.

    filter_config, wasm, vm_id, ports, extra_clusters, stat_prefix, hold_headers, demo_port,
    normalize_paths, access_log_path, extra_listeners: see
    render_bootstrap. `workdir` (default: a temporary directory, removed on
    stop) receives bootstrap.json and envoy.log. Raises EnvoyStartError, with
    the whole log, if Envoy exits or is not ready within `timeout` seconds.
    """
    bootstrap = render_bootstrap(
        upstream_port=upstream_port, filter_config=filter_config, wasm=wasm, vm_id=vm_id,
        listener_port=listener_port, admin_port=admin_port,
        extra_clusters=extra_clusters, stat_prefix=stat_prefix, hold_headers=hold_headers,
        demo_port=demo_port, normalize_paths=normalize_paths, access_log_path=access_log_path,
        extra_listeners=extra_listeners,
    )
    return start_bootstrap(bootstrap, concurrency=concurrency, log_level=log_level,
                           workdir=workdir, extra_args=extra_args, timeout=timeout)


def start_envoy_expect_failure(filter_config, **kwargs):
    """Start Envoy with a config it must reject; its whole log once it exited.

    Envoy 1.40 exits with code 1 at startup when a static listener's wasm
    filter fails to load or its proxy_on_configure returns false (fail_open is
    false). Raises EnvoyStartError if Envoy becomes ready instead or hangs.
    Keyword arguments as for start_envoy.
    """
    try:
        envoy = start_envoy(filter_config, **kwargs)
    except EnvoyStartError as err:
        if err.exit_code is None:
            raise
        return err.log
    envoy.stop()
    raise EnvoyStartError("envoy accepted a config it should have rejected", envoy.log())


def start_bootstrap(bootstrap, *, concurrency=2, log_level="info", workdir=None, extra_args=(),
                    timeout=START_TIMEOUT_S):
    """Start Envoy from a bootstrap dict a test shaped itself (e.g. with
    render_bootstrap plus a jwt_authn filter, or a listener served from a
    file) and wait until it is ready; as start_envoy otherwise."""
    envoy = EnvoyProcess(bootstrap, concurrency=concurrency, log_level=log_level,
                         extra_args=extra_args, workdir=workdir)
    try:
        envoy._wait_ready(timeout)
    except BaseException:
        envoy.stop()
        raise
    return envoy
