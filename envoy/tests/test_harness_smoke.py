"""The test harness itself: Envoy without the quota filter, and the mock
upstream. Needs no build of the filter."""

import json

import pytest

from conftest import request, sse_events


def test_request_reaches_upstream_through_envoy(envoy):
    # Two Envoys at once: ports and process state must not collide.
    proxies = [envoy(None, wasm=None), envoy(None, wasm=None)]
    assert proxies[0].port != proxies[1].port
    for proxy in proxies:
        resp = request(proxy, "POST", "/v1/embeddings?dims=8",
                       headers={"X-Smoke": "hello"}, json={"model": "embed-small", "input": "hi"})
        assert resp.status == 200, resp
        echo = resp.json()["mock_echo"]
        assert echo["method"] == "POST"
        assert echo["path"] == "/v1/embeddings?dims=8"
        assert echo["headers"]["x-smoke"] == "hello"
        assert echo["model"] == "embed-small"
        assert resp.json()["received"] == {"model": "embed-small", "input": "hi"}
        assert proxy.stats(filter="upstream_rq_total")["cluster.upstream.upstream_rq_total"] == 1


def test_envoy_rejecting_its_config_returns_the_log(envoy_expect_failure):
    log = envoy_expect_failure({}, wasm="/nonexistent/quota.wasm")
    assert "Invalid path: /nonexistent/quota.wasm" in log


def test_mock_chat_completion_reports_usage(upstream):
    resp = request(upstream, "POST", "/v1/chat/completions",
                   headers={"x-mock-completion-tokens": "11"},
                   json={"model": "big", "messages": [
                       {"role": "system", "content": "be brief"},
                       {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
                   ]})
    assert resp.status == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "big"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 11, "total_tokens": 16}


def test_mock_error_status(upstream):
    resp = request(upstream, "POST", "/v1/responses", headers={"x-mock-status": "500"},
                   json={"model": "m"})
    assert resp.status == 500
    assert resp.json()["error"]["code"] == "mock_error"
    assert resp.json()["mock_echo"]["path"] == "/v1/responses"


@pytest.mark.parametrize("via_envoy", [False, True], ids=["direct", "via-envoy"])
@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
def test_mock_streams_chat_completion_chunks(upstream, envoy, via_envoy, include_usage):
    target = envoy(None, wasm=None) if via_envoy else upstream
    body = {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "a b"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    resp = request(target, "POST", "/v1/chat/completions", headers={"x-quota-user": "u1"},
                   json=body)

    assert resp.status == 200
    assert resp.headers["content-type"] == "text/event-stream"
    echo = json.loads(resp.headers["x-mock-echo"])
    assert echo["model"] == "fast"
    assert echo["headers"]["x-quota-user"] == "u1"

    events = sse_events(resp.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "fast" for c in chunks)
    if include_usage:
        usage_chunk = chunks.pop()
        assert usage_chunk["choices"] == []
        assert usage_chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": 7,
                                        "total_tokens": 9}
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "This is a mock reply."
