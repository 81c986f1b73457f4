"""Calls to Redis that outlive the request: a client that hangs up while
Redis charges its request is not charged (the charge is cancelled by its
id, in whichever order the charge and its cancel reach Redis), and a
refund reaches Redis at once, not on a timer.

A gate between Envoy and webdis holds a charge (its request, or its
answer) until the test lets it go, so every step is ordered by events the
test waits for, never by sleeping."""

import json
import socket
import struct
import threading
import time

from pathlib import Path

import harness
import pytest
from conftest import request
from quota_configs import CHAT, chat, one_class


SCRIPT = Path(__file__).resolve().parents[2] / "core" / "src" / "redis" / "quota.lua"


class Gate:
    """A TCP proxy to webdis that passes everything but a charge: with
    hold="request" a charge waits before webdis sees it, with "response"
    webdis runs it and its answer waits, until `release()`. Events say what
    went through."""

    def __init__(self, webdis_port, hold):
        self.webdis_port = webdis_port
        self.hold = hold
        self.released = threading.Event()
        self.charge_seen = threading.Event()
        self.charge_answered = threading.Event()
        self.cancel_answered = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self):
        self.released.set()

    def close(self):
        self.closed = True
        self.released.set()
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                envoy_side, _ = self.listener.accept()
            except OSError:
                return
            webdis_side = socket.create_connection(("127.0.0.1", self.webdis_port))
            # What the connection's current request is: "charge", "cancel" or other.
            state = {"op": None}
            threading.Thread(target=self._up, args=(envoy_side, webdis_side, state), daemon=True).start()
            threading.Thread(target=self._down, args=(webdis_side, envoy_side, state), daemon=True).start()

    def _up(self, src, dst, state):
        while (chunk := _recv(src)):
            if b"/charge/" in chunk:
                state["op"] = "charge"
                self.charge_seen.set()
                if self.hold == "request":
                    self.released.wait()
            elif chunk.endswith(b"/cancel") or b"/cancel/" in chunk:
                state["op"] = "cancel"
            elif b"POST" in chunk:
                state["op"] = None
            if not _send(dst, chunk):
                break
        _close(dst)

    def _down(self, src, dst, state):
        while (chunk := _recv(src)):
            op = state["op"]
            if op == "charge" and self.hold == "response":
                self.released.wait()
            if not _send(dst, chunk):
                break
            if op == "charge":
                self.charge_answered.set()
            elif op == "cancel":
                self.cancel_answered.set()
        _close(dst)


def _recv(sock):
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock, data):
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _close(sock):
    try:
        sock.close()
    except OSError:
        pass


@pytest.fixture
def stack():
    """Factory: stack(hold) -> (redis, gate): Redis, webdis and a gate in front of it."""
    started = []

    def start(hold):
        redis = harness.start_redis()
        started.append(redis.close)
        # Loaded beforehand: the charge's first answer is not a NOSCRIPT.
        redis.cli("SCRIPT", "LOAD", SCRIPT.read_text())
        webdis = harness.start_webdis(redis.port)
        started.append(webdis.stop)
        gate = Gate(webdis.port, hold)
        started.append(gate.close)
        return redis, gate

    yield start
    for stop in reversed(started):
        stop()


def wait_for(condition, what, timeout=10.0):
    """Polls `condition` (a state Envoy or Redis reaches, not a time) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def used(redis, user):
    return int(redis.cli("HGET", f"quota:{{u:{user}}}drafts", "u").strip() or 0)


def hang_up_mid_charge(proxy, gate, user, before=lambda: None):
    """Sends a request and resets the connection once its charge reached the
    gate and `before()` returned."""
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    body = json.dumps(chat()).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nhost: api\r\nx-user-id: {user}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    assert gate.charge_seen.wait(10), "the charge never reached the gate"
    before()
    # SO_LINGER 0: close with a reset, as a client that gives up does.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("hold", ["request", "response"],
                         ids=["cancel-reaches-redis-first", "charge-reaches-redis-first"])
def test_a_client_that_hangs_up_while_redis_charges_is_not_charged(envoy, stack, hold):
    redis, gate = stack(hold)
    counters = harness.redis_counters(on_error="fail_closed", timeout_ms=10000)
    proxy = envoy(one_class(hard=5, counters=counters), concurrency=1,
                  extra_clusters=[harness.webdis_cluster(gate.port)])
    if hold == "response":
        # Redis ran the charge; only its answer waits.
        hang_up_mid_charge(proxy, gate, "gus", before=lambda: wait_for(lambda: used(redis, "gus") == 1, "the charge"))
    else:
        hang_up_mid_charge(proxy, gate, "gus")
        assert used(redis, "gus") == 0
    # The stream ended with its charge out: its cancel goes to Redis at once.
    assert gate.cancel_answered.wait(10), "no cancel reached Redis"
    gate.release()
    assert gate.charge_answered.wait(10)
    # Cancelled once, in either order: nothing charged.
    assert used(redis, "gus") == 0
    # The VM serves the next request, whose charge counts.
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "gus"}, json=chat())
    assert resp.status == 200, resp.body
    assert resp.headers["x-quota-remaining"] == "4"
    stats = proxy.stats(filter=r"wasmcustom\.quota\.store\.")
    assert stats.get("wasmcustom.quota.store.corrections_dropped", 0) == 0, stats
