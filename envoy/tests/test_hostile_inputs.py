"""Hostile input gets a clear, documented answer, and the wasm never traps:
every case is followed by a normal request, and the log must show no panic."""

import json
import socket

import pytest

from conftest import post_streaming, request
from quota_configs import CHAT, chat, demo


def raw_request(port, head: bytes, body: bytes = b"") -> int:
    """Send bytes as they are (no client-side validation); return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + b"\r\n" + body)
        reply = s.recv(65536)
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def post(user_header: bytes, body: bytes = b'{"model": "gpt-4o"}', extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" + user_header
            + extra + b"content-length: " + str(len(body)).encode() + b"\r\n")


def assert_healthy(proxy):
    ok = request(proxy, "POST", CHAT, headers={"x-user-id": "healthy"}, json=chat())
    assert ok.status == 200
    log = proxy.log()
    assert "panic" not in log and "Wasm VM failed" not in log and "wasm trap" not in log.lower()


def test_hostile_identities_are_refused_or_ignored_never_trapped(envoy):
    proxy = envoy(demo(), hold_headers=True)
    cases = {
        # Envoy's HTTP/1 codec refuses these before any filter runs.
        "nul": (post(b"x-user-id: a\x00b\r\n"), {400}),
        # Envoy's codec ends the header at a bare CR: the filter sees "a", a usable id.
        "cr": (post(b"x-user-id: a\rb\r\n"), {200, 400}),
        # Ids the filter cannot use count as absent: a friendly 401.
        "not utf-8": (post(b"x-user-id: \xff\xfe\xfd\r\n"), {401}),
        "10 KB": (post(b"x-user-id: " + b"u" * 10_000 + b"\r\n"), {401}),
        # Past Envoy's header size limit: refused by Envoy.
        "1 MB": (post(b"x-user-id: " + b"u" * 1_000_000 + b"\r\n"), {431, 400, 0}),
        "jwt not base64": (post(b"authorization: Bearer a.!!!.c\r\n"), {401}),
        "jwt not json": (post(b"authorization: Bearer eyJhIjoxfQ.bm90IGpzb24.x\r\n"), {401}),
        "jwt huge": (post(b"authorization: Bearer a." + b"A" * 40_000 + b".c\r\n"), {401}),
        "jwt nested": (post(b"authorization: Bearer a." + b"W" * 2000 + b".c\r\n"), {401}),
    }
    for name, (head, expected) in cases.items():
        assert raw_request(proxy.port, head, b'{"model": "gpt-4o"}') in expected, name
        assert_healthy(proxy)


def test_hostile_bodies_are_refused_or_charged_the_strictest_class(envoy):
    # The class depends on the body (deep research is chosen by its model), so
    # a body the rules cannot read is never cheaper than the head allows.
    bodies = {
        "not json": b"hello",
        "truncated": b'{"model": "o3-deep-research", "messages": [',
        "nested 10^5": b"[" * 100_000 + b"]" * 100_000,
        "nested object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    }
    # The nested object is 300 KB: over the 256 KiB the filter reads.
    refusals = {name: (400, "unreadable_body") for name in bodies} | {"nested object": (413, "body_too_large")}
    refusing = envoy(demo(), hold_headers=True)
    for name, body in bodies.items():
        resp = request(refusing, "POST", CHAT, headers={"x-user-id": "nia", "x-plan": "pro"}, body=body)
        assert (resp.status, resp.json()["error"]["code"]) == refusals[name], name
    assert_healthy(refusing)

    strictest = envoy(demo(unreadable_body="strictest"), hold_headers=True)
    for i, (name, body) in enumerate(bodies.items()):
        # A user each: pro allows 3 deep-research calls a day.
        resp = request(strictest, "POST", CHAT, headers={"x-user-id": f"nia{i}", "x-plan": "pro"}, body=body)
        assert (resp.status, resp.headers.get("x-quota-class")) == (200, "deep_research"), name
    assert_healthy(strictest)


@pytest.mark.parametrize("unreadable_body", ["refuse", "strictest"])
def test_a_100_mb_body_is_not_buffered_past_the_cap(envoy, unreadable_body):
    proxy = envoy(demo(unreadable_body=unreadable_body), hold_headers=True)
    size = 100 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)
    headers = {"x-user-id": "oz", "x-plan": "pro", "content-type": "application/json", "x-mock-count-body": "1"}
    for length in (size, None):  # a content-length, then chunked
        resp = post_streaming(proxy, CHAT, headers, (chunk for _ in range(size // len(chunk))), length=length)
        assert resp.error is None, resp.error
        # Over max_body_bytes the body is not read: refused by the filter (not by
        # Envoy, whose own 413 is plain text), or charged as the strictest class
        # the head allows, with the bytes streaming on.
        if unreadable_body == "refuse":
            assert (resp.status, json.loads(resp.body)["error"]["code"]) == (413, "body_too_large"), resp.body[:200]
        else:
            assert (resp.status, resp.headers.get("x-quota-class")) == (200, "deep_research"), resp.body[:200]
            assert (resp.whole_body_sent, json.loads(resp.body)["mock_echo"]["body_len"]) == (True, size)
    assert proxy.stats(filter=r"downstream_rq_too_large$")["http.ingress_http.downstream_rq_too_large"] == 0
    assert_healthy(proxy)
