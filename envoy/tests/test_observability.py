"""Envoy stats per class x tier x event, event records, and the analytics
callout that never touches a request."""

import http.server
import json
import socket
import threading
import time

import pytest

from conftest import request
from quota_configs import CHAT, chat, demo


def test_stats_count_each_event_exactly(envoy):
    proxy = envoy(demo(), hold_headers=True)
    for _ in range(12):
        request(proxy, "POST", CHAT, headers={"x-user-id": "ana"}, json=chat("gpt-4o"))
    for _ in range(2):
        request(proxy, "POST", CHAT, headers={"x-user-id": "ben"}, json=chat("gpt-4o-mini"))
    request(proxy, "POST", "/v1/research/start", headers={"x-user-id": "ana"}, json={})
    request(proxy, "POST", CHAT, json=chat())
    expected = {
        "quota.drafts.free.requests": 10,
        "quota.drafts.free.units": 10,
        "quota.drafts.free.warned": 2,
        "quota.drafts.free.blocked": 2,
        "quota.summaries.free.requests": 2,
        "quota.summaries.free.units": 2,
        "quota.deep_research.free.not_included": 1,
        "quota.identity_missing": 1,
    }

    def moved(stats):
        return {k.removeprefix("wasmcustom."): v for k, v in stats.items() if v}
    stats = moved(proxy.wait_for_stats("^wasmcustom\\.quota\\.", lambda s: moved(s) == expected))
    assert stats == expected
    prometheus = proxy.admin_get("/stats/prometheus")
    assert 'quota_blocked{quota_class="drafts",quota_tier="free"} 2' in prometheus
    assert 'quota_requests{quota_class="summaries",quota_tier="free"} 2' in prometheus


class Collector(http.server.ThreadingHTTPServer):
    """A tiny analytics endpoint that keeps what it receives."""

    def __init__(self):
        self.events = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.events.extend(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def analytics_cluster(port):
    return {
        "name": "analytics",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": "analytics", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def observed(**analytics):
    return demo(observability={
        "ids": "hashed", "id_salt": "test-salt-123",
        "analytics": {"cluster": "analytics", "path": "/events", "flush_ms": 50, **analytics},
    })


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_events_reach_an_analytics_collector_with_hashed_ids(envoy):
    collector = Collector()
    try:
        # One worker: each worker's VM queues its own events and sends them on
        # its own tick, so with two the collector gets them in the order the
        # workers flushed, not the order they happened (seen: level 1 first).
        proxy = envoy(observed(), hold_headers=True, concurrency=1,
                      extra_clusters=[analytics_cluster(collector.server_address[1])])
        for _ in range(11):
            request(proxy, "POST", CHAT, headers={"x-user-id": "cleo", "x-workspace-id": "acme"}, json=chat())
        assert wait_for(lambda: len(collector.events) >= 3), collector.events
        assert [(e["event"], e.get("level")) for e in collector.events] == [("warned", 0), ("warned", 1), ("blocked", None)]
        first = collector.events[0]
        assert (first["class"], first["tier"], first["used"], first["limit"]) == ("drafts", "free", 5, 10)
        assert len(first["user"]) == 16 and first["user"] != "cleo"
        assert first["workspace"] != "acme"
        assert len({e["user"] for e in collector.events}) == 1  # stable per user
        # The log carries the same hashed record.
        assert "cleo" not in "".join(l for l in proxy.log().splitlines() if "quota-event" in l)
        assert wait_for(lambda: proxy.stats(filter="analytics").get("wasmcustom.quota.analytics.sent", 0) >= 1)
    finally:
        collector.shutdown()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("cluster", ["down", "missing"])
def test_a_failing_callout_never_affects_requests(envoy, cluster):
    clusters = [analytics_cluster(closed_port())] if cluster == "down" else []
    proxy = envoy(observed(), hold_headers=True, extra_clusters=clusters)
    started = time.monotonic()
    statuses = [request(proxy, "POST", CHAT, headers={"x-user-id": "dev"}, json=chat()).status for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert time.monotonic() - started < 5
    assert wait_for(lambda: proxy.stats(filter="analytics").get("wasmcustom.quota.analytics.failed", 0) >= 1)
    assert proxy.stats(filter="analytics").get("wasmcustom.quota.analytics.sent", 0) == 0
