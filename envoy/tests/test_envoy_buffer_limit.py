"""A body the filter reads never outgrows what Envoy will hold.

Envoy adds each chunk of a paused body to what it holds before the filter sees
it, and answers a plain `413 Payload Too Large` itself the moment that passes
the stream's buffer limit. The filter holds at most max_body_bytes and none of
a body whose content-length is over the cap; the configs harness.py renders
give the stream room for max_body_bytes plus one read from the client (see the
README's "Envoy's buffer limit"). So a body over the cap to a class that reads
the body gets the filter's answer every time: with `unreadable_body:
"strictest"` it is charged and streams on, byte for byte; with "refuse" it gets
the filter's JSON 413 `body_too_large`. Never Envoy's own 413, never a reset.

Bodies go out as HTTP/1.1 with a content-length and chunked (no length, so
the filter holds up to the cap before it knows), streamed from a generator.
"""

import json
import zlib
from collections import Counter

import pytest

from conftest import post_streaming
from quota_configs import CHAT, MAX_BODY_BYTES_LIMIT, body_classes

MB = 1_000_000
PIECE = 1024 * 1024
SENDS = 50


def chat_pieces(size):
    """A chat request of exactly `size` bytes, valid JSON (the prompt padded
    with x), in pieces of at most PIECE bytes, made as they are sent."""
    head = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    full, rest = divmod(size - len(head) - len(tail), PIECE)
    padding = b"x" * PIECE
    yield head
    for _ in range(full):
        yield padding
    yield padding[:rest]
    yield tail


def crc32_of(size):
    crc = 0
    for piece in chat_pieces(size):
        crc = zlib.crc32(piece, crc)
    return crc


def post(proxy, size, *, chunked, user="ann"):
    """POSTs a `size`-byte chat request, counted (not echoed) by the mock."""
    headers = {"x-user-id": user, "content-type": "application/json", "x-mock-count-body": "1"}
    return post_streaming(proxy, CHAT, headers, chat_pieces(size), length=None if chunked else size)


def outcome(sent, size, crc):
    """What one send came to, as a comparable tuple."""
    if sent.error:
        return ("error", sent.error)
    if sent.headers.get("content-type") != "application/json":
        return (sent.status, "not the filter's answer", sent.body[:80])
    doc = json.loads(sent.body)
    if sent.status == 200:
        echo = doc["mock_echo"]
        every_byte = sent.whole_body_sent and (echo["body_len"], echo["body_crc32"]) == (size, crc)
        return (200, sent.headers.get("x-quota-class"), "every byte upstream" if every_byte else echo["body_len"])
    return (sent.status, doc["error"]["code"])


def send_many(proxy, size):
    """SENDS posts of `size` bytes, alternately with a content-length and
    chunked; how many came to each outcome."""
    crc = crc32_of(size)
    return Counter(outcome(post(proxy, size, chunked=i % 2 == 1), size, crc) for i in range(SENDS))


def stream_ends(proxy):
    """Envoy's own 413s (downstream_rq_too_large), the streams it reset
    (tx_reset) and those the client cut (rx_reset: under "refuse" the client
    stops sending once it has the filter's answer, and hangs up)."""
    stats = proxy.stats(filter=r"^http\.ingress_http\.downstream_rq_(too_large|rx_reset|tx_reset)$")
    return {name.rsplit(".", 1)[1]: value for name, value in stats.items()}


# (max_body_bytes, hold_headers_for_body): the default cap with the headers
# held (the demo's) or sent ahead of the body, and the largest cap there is.
SETUPS = {
    "default cap": (None, True),
    "default cap, headers ahead": (None, False),
    "maximum cap": (MAX_BODY_BYTES_LIMIT, True),
}


def start(envoy, setup, **top_level):
    cap, hold = SETUPS[setup]
    config = body_classes(hold_headers_for_body=hold, **top_level)
    if cap is not None:
        config["max_body_bytes"] = cap
    # Holding headers needs the plugin's allow_on_headers_stop_iteration.
    return envoy(config, hold_headers=hold)


@pytest.mark.parametrize("setup", SETUPS)
def test_a_body_over_the_cap_streams_on_under_strictest(envoy, setup):
    proxy = start(envoy, setup, unreadable_body="strictest")
    # 2 MB is over the default cap (charged as the strictest class, research)
    # and under the maximum (read: its model makes it chat); 100 MB is over both.
    small_class = "chat" if setup == "maximum cap" else "research"
    assert send_many(proxy, 2 * MB) == {(200, small_class, "every byte upstream"): SENDS}
    assert send_many(proxy, 100 * MB) == {(200, "research", "every byte upstream"): SENDS}
    assert stream_ends(proxy) == {"downstream_rq_too_large": 0, "downstream_rq_tx_reset": 0, "downstream_rq_rx_reset": 0}


@pytest.mark.parametrize("setup", SETUPS)
def test_a_body_over_the_cap_gets_the_filters_413_under_refuse(envoy, setup):
    proxy = start(envoy, setup)
    # Under the maximum cap 2 MB is read, and charged as its model says.
    small = {(200, "chat", "every byte upstream"): SENDS} if setup == "maximum cap" else {(413, "body_too_large"): SENDS}
    assert send_many(proxy, 2 * MB) == small
    assert send_many(proxy, 100 * MB) == {(413, "body_too_large"): SENDS}
    ends = stream_ends(proxy)
    assert (ends["downstream_rq_too_large"], ends["downstream_rq_tx_reset"]) == (0, 0)
