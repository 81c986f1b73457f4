"""Fixtures and HTTP helpers for the Envoy end-to-end tests.

Fixtures: `wasm_path`, `upstream` (the mock, one per session), `envoy` and
`envoy_expect_failure` (factories). Helpers, imported by tests with
`from conftest import request, sse_events` (and `post_streaming` for bodies
too large to hold):

    def test_blocked(envoy):
        proxy = envoy(config)  # a dict, or a str passed to the filter verbatim
        resp = request(proxy, "POST", "/v1/chat/completions",
                       headers={"x-user": "u1"}, json={"model": "m", "messages": []})
        assert resp.status == 429
        assert resp.headers["x-quota-state"] == "blocked"
        assert resp.json()["error"]["message"]

Every Envoy and the mock bind ports the kernel picks, so tests can run in
parallel with each other and with other runs.
"""

import http.client
import json as jsonlib
import select
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402  (lives in envoy/, beside this directory)
from quota_configs import CHAT, chat  # noqa: E402


# The longest any one test runs against a day window, with room to spare.
MIDNIGHT_MARGIN_S = 120


@pytest.fixture(autouse=True)
def clear_of_midnight():
    """Many tests count in `day` windows (and week and month windows turn at
    a midnight too) and expect a reset at the next UTC midnight: a test that
    would straddle one waits for it to pass first, so no result depends on
    the time of day the suite runs."""
    to_midnight = 86400 - time.time() % 86400
    if to_midnight < MIDNIGHT_MARGIN_S:
        time.sleep(to_midnight + 1)


@pytest.fixture(scope="session")
def wasm_path():
    """The built filter; fails the test, naming the build command, if missing."""
    if not harness.DEFAULT_WASM.exists():
        pytest.fail(f"{harness.DEFAULT_WASM} is missing: run `make build`", pytrace=False)
    return harness.DEFAULT_WASM


@pytest.fixture(scope="session")
def upstream():
    """The mock upstream (harness.MockUpstream: .port, .url(path))."""
    with harness.start_mock_upstream() as mock:
        yield mock


@pytest.fixture
def envoy(request, upstream):
    """Factory: envoy(filter_config, **start_envoy kwargs) -> EnvoyProcess.

    Defaults to the built filter (wasm_path) in front of the mock upstream;
    wasm=None starts Envoy without the filter. Every Envoy started is stopped
    at the end of the test; a failed test shows their logs.
    """
    started = []

    def start(filter_config, **kwargs):
        kwargs.setdefault("upstream_port", upstream.port)
        if "wasm" not in kwargs:
            # Looked up only here, so tests with wasm=None run without a build.
            kwargs["wasm"] = request.getfixturevalue("wasm_path")
        proxy = harness.start_envoy(filter_config, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
        # pytest shows captured teardown output only for failed tests.
        print(f"----- envoy log (listener port {proxy.port}) -----")
        print(harness.without_inventory(proxy.log()))


@pytest.fixture
def redis_stack():
    """Factory: redis_stack(persistent=False) -> (redis, webdis) on loopback ports
    (Debian's redis-server and webdis); both stopped after the test."""
    started = []

    def start(persistent=False):
        redis = harness.start_redis(persistent=persistent)
        started.append(redis)
        webdis = harness.start_webdis(redis.port)
        started.append(webdis)
        return redis, webdis

    yield start
    for thing in reversed(started):
        if isinstance(thing, harness.RedisServer):
            thing.close()
        else:
            thing.stop()


@pytest.fixture
def envoy_expect_failure(request, upstream):
    """Factory: envoy_expect_failure(filter_config, **start_envoy kwargs) -> log.

    Starts Envoy with a config it must reject and returns its whole log once it
    has exited; raises harness.EnvoyStartError if Envoy starts instead.
    """

    def start(filter_config, **kwargs):
        kwargs.setdefault("upstream_port", upstream.port)
        if "wasm" not in kwargs:
            kwargs["wasm"] = request.getfixturevalue("wasm_path")
        return harness.start_envoy_expect_failure(filter_config, **kwargs)

    return start


class Headers(Mapping):
    """Response headers: names case-insensitive. h[name] joins repeated fields
    with ", " (as RFC 9110 allows); h.get_all(name) keeps them apart."""

    def __init__(self, pairs):
        self._fields = {}
        for name, value in pairs:
            self._fields.setdefault(name.lower(), []).append(value)

    def __getitem__(self, name):
        return ", ".join(self._fields[name.lower()])

    def get_all(self, name):
        return list(self._fields.get(name.lower(), []))

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)

    def __repr__(self):
        return f"Headers({self._fields!r})"


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.body)

    def __repr__(self):
        return f"Response({self.status}, {self.headers!r}, {self.body[:500]!r})"


def request(target, method, path, headers=None, json=None, body=None, timeout=10.0):
    """Send one HTTP/1.1 request to 127.0.0.1:target.port (an EnvoyProcess or
    the mock upstream) and read the whole response.

    headers: a dict, or (name, value) pairs to send a header more than once.
    json: serialised as the body, with content-type application/json unless
    headers set one. body: bytes or str, sent as is.
    """
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or [])
    if json is not None:
        body = jsonlib.dumps(json)
        if not any(name.lower() == "content-type" for name, _ in pairs):
            pairs.append(("content-type", "application/json"))
    if isinstance(body, str):
        body = body.encode()

    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=timeout)
    try:
        conn.putrequest(method, path)
        for name, value in pairs:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return Response(resp.status, Headers(resp.getheaders()), resp.read())
    finally:
        conn.close()


def hammer(port, user, count, results, lock):
    """Send `count` chat completions (quota_configs.chat) from `user` on one
    keep-alive connection to 127.0.0.1:port; append their statuses to
    `results` (under `lock`). For load tests: one thread per connection."""
    body = jsonlib.dumps(chat())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = []
    try:
        for _ in range(count):
            conn.request("POST", CHAT, body=body, headers={"x-user-id": user, "content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
    finally:
        conn.close()
        with lock:
            results.extend(statuses)


def crowd(ports, user, connections, per_connection):
    """`connections` threads, each on its own connection to one of `ports`
    in turn, each sending `per_connection` of `hammer`'s requests from
    `user`: the statuses, counted."""
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=hammer, args=(ports[i % len(ports)], user, per_connection, results, lock))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Counter(results)


def sse_events(body):
    """The `data:` payloads of a text/event-stream body, in order, as strings."""
    text = body.decode() if isinstance(body, bytes) else body
    return [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]


class Streamed(NamedTuple):
    """What post_streaming got back: `error` says why there is no answer (a
    reset, a timeout); `whole_body_sent` is False when the answer came first."""
    status: int | None
    headers: dict
    body: bytes
    whole_body_sent: bool
    error: str | None


def _send_unless_answered(sock, data, timeout):
    """Sends `data`, unless an answer arrives first; whether all of it went."""
    view = memoryview(data)
    while view:
        readable, writable, _ = select.select([sock], [sock], [], timeout)
        if readable:
            return False
        if not writable:
            raise TimeoutError(f"Envoy neither read nor answered for {timeout} s")
        view = view[sock.send(view):]
    return True


def post_streaming(target, path, headers, pieces, *, length=None, timeout=60.0):
    """POST a body made piece by piece (a generator: nothing is held) to
    127.0.0.1:target.port over HTTP/1.1: with a content-length when `length`
    is given, else chunked. Stops sending once an answer arrives (a refusal
    need not wait for the rest of the body), then reads the answer. Never
    raises for what the peer did: see Streamed.error."""
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"POST {path} HTTP/1.1\r\nhost: quota.test\r\n{head}{framing}\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=timeout)
    try:
        sock.sendall(head)
        whole = True
        for piece in pieces:
            data = piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece)
            if piece and not _send_unless_answered(sock, data, timeout):
                whole = False
                break
        if whole and length is None:
            whole = _send_unless_answered(sock, b"0\r\n\r\n", timeout)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
        return Streamed(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, whole, None)
    except (OSError, http.client.HTTPException) as err:
        return Streamed(None, {}, b"", False, f"{type(err).__name__}: {err}")
    finally:
        sock.close()
