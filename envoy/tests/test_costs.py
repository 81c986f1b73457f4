"""What a request costs: records in a batch, and tokens reconciled from the
upstream's reported usage, for JSON and for streamed responses."""

import http.client
import json
import time

from conftest import request, sse_events
from quota_configs import CHAT, one_class

PROMPT = {"role": "user", "content": "one two three four five six seven eight"}  # the mock counts 8 prompt tokens


def tokens_config(**cost):
    config = one_class(hard=100000, hold_headers_for_body=True)
    config["classes"][0]["cost"] = {"tokens": {"default_max_tokens": 500, **cost}}
    return config


def used(proxy, user):
    return request(proxy, "GET", "/v1/quota", headers={"x-user-id": user}).json()["classes"][0]["used"]


def test_a_batch_of_250_records_costs_250(envoy):
    config = one_class(hard=1000)
    config["classes"][0]["cost"] = {"records": {"field": "requests"}}
    proxy = envoy(config)
    body = {"model": "gpt-4o", "requests": [{"custom_id": str(i)} for i in range(250)]}
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "bea"}, json=body)
    assert (resp.status, resp.headers["x-quota-cost"], resp.headers["x-quota-used"]) == (200, "250", "250")
    # The body reached the upstream whole.
    assert resp.json()["mock_echo"]["body_len"] == len(json.dumps(body))


def test_tokens_are_estimated_then_corrected_from_a_json_usage(envoy, hold=True):
    proxy = envoy(tokens_config(), hold_headers=True)
    body = {"model": "gpt-4o", "messages": [PROMPT], "max_tokens": 300}
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "cal", "x-mock-completion-tokens": "21"}, json=body)
    # Admission charged the estimate: 37 characters / 4, rounded up, + max_tokens.
    assert resp.headers["x-quota-cost"] == str(10 + 300)
    assert resp.json()["usage"]["total_tokens"] == 8 + 21
    # The counter ends at what the upstream reported.
    assert used(proxy, "cal") == 29


def test_a_class_can_count_output_tokens_only(envoy):
    # 500 output tokens a day: the prompt is free, the answer counts.
    config = tokens_config(count="output")
    config["tiers"]["free"]["limits"]["drafts"]["hard"] = 500
    proxy = envoy(config, hold_headers=True)
    long_prompt = {"role": "user", "content": "word " * 2000}

    def ask(max_tokens, completion, stream=False):
        body = {"model": "gpt-4o", "messages": [long_prompt], "max_tokens": max_tokens, "stream": stream}
        headers = {"x-user-id": "ola", "x-mock-completion-tokens": str(completion)}
        return request(proxy, "POST", CHAT, headers=headers, json=body)

    # Reserved at the budget asked for (the 2,000-word prompt costs nothing),
    # settled at what the upstream reports as output.
    first = ask(100, 300)
    assert (first.status, first.headers["x-quota-cost"]) == (200, "100")
    assert used(proxy, "ola") == 300
    streamed = ask(100, 50, stream=True)
    assert (streamed.status, streamed.headers["x-quota-cost"]) == (200, "100")
    assert used(proxy, "ola") == 350
    # A budget that would cross 500 is refused before it runs.
    refused = ask(200, 1)
    assert (refused.status, refused.headers["x-quota-used"], refused.headers["x-quota-remaining"]) == (429, "350", "150")
    assert ask(150, 150).status == 200
    assert used(proxy, "ola") == 500


def test_streamed_usage_is_read_as_it_passes_and_bytes_arrive_unchanged(envoy, upstream):
    proxy = envoy(tokens_config(), hold_headers=True)
    body = {"model": "gpt-4o", "messages": [PROMPT], "stream": True}
    headers = {"x-user-id": "dex", "x-mock-completion-tokens": "13", "x-mock-chunk-delay-ms": "150",
               "content-type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    started = time.monotonic()
    conn.request("POST", CHAT, body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200
    # The filter asked the upstream to report usage in the stream.
    echo = json.loads(resp.getheader("x-mock-echo"))
    assert echo["body_len"] > len(json.dumps(body))
    first = resp.read1()
    first_at = time.monotonic() - started
    rest = resp.read()
    total = time.monotonic() - started
    conn.close()
    # Events arrive as the upstream sends them, not all at the end.
    assert first_at < total / 2, (first_at, total)
    streamed = first + rest
    events = sse_events(streamed)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["total_tokens"] == 8 + 13
    # Byte for byte what the upstream sent (same request straight to the mock).
    direct = request(upstream, "POST", CHAT, headers={**headers, "x-mock-chunk-delay-ms": "0"},
                     json={**body, "stream_options": {"include_usage": True}})
    assert streamed == direct.body
    assert used(proxy, "dex") == 21


def test_a_failed_upstream_call_is_refunded(envoy):
    proxy = envoy(one_class(hard=5))
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "eli", "x-mock-status": "500"}, json={"model": "m"})
    assert (resp.status, resp.headers["x-quota-used"]) == (500, "1")
    assert used(proxy, "eli") == 0
    ok = request(proxy, "POST", CHAT, headers={"x-user-id": "eli"}, json={"model": "m"})
    assert ok.headers["x-quota-used"] == "1"
