"""Classification by path and by the JSON body's model, with and without the
request headers held back while the body is read."""

import json

import pytest

from conftest import request as send
from quota_configs import CHAT, chat, demo


@pytest.fixture(params=[True, False], ids=["headers-held", "headers-forwarded"])
def proxy(request, envoy):
    hold = request.param
    return envoy(demo(hold_headers_for_body=hold), hold_headers=hold)


PRO = {"x-user-id": "pia", "x-plan": "pro"}


@pytest.mark.parametrize("model, expected", [
    ("o3-deep-research", "deep_research"),
    ("gpt-4o-mini", "summaries"),
    ("gpt-4o", "drafts"),
    ("some-new-model", "drafts"),
])
def test_the_body_model_picks_the_class(proxy, model, expected):
    resp = send(proxy, "POST", CHAT, headers=PRO, json=chat(model))
    assert resp.status == 200
    assert resp.headers["x-quota-class"] == expected
    # The upstream got the body intact.
    assert resp.json()["model"] == model


def test_paths_pick_the_class_without_a_body(proxy):
    resp = send(proxy, "POST", "/v1/projects/p7/drafts", headers=PRO, body=b"")
    assert resp.headers["x-quota-class"] == "drafts"
    resp = send(proxy, "POST", "/v1/batches", headers=PRO, json={"input_file_id": "f1"})
    assert resp.headers["x-quota-class"] == "batch_records"


UNREADABLE = [b"not json", b'{"model": "o3-deep-research"', b"[" * 10000]


@pytest.mark.parametrize("hold", [True, False], ids=["headers-held", "headers-forwarded"])
def test_a_body_that_is_not_json_is_refused_or_charged_the_strictest_class(envoy, hold):
    # A body the rules cannot read might name any model: by default the
    # filter refuses it, whether or not the headers went ahead.
    refusing = envoy(demo(hold_headers_for_body=hold), hold_headers=hold)
    for body in UNREADABLE:
        resp = send(refusing, "POST", CHAT, headers=PRO, body=body)
        assert (resp.status, resp.json()["error"]["code"]) == (400, "unreadable_body"), (body[:20], resp)
        assert "x-quota-class" not in resp.headers
    # With `strictest` it goes on, charged as the most restrictive class the
    # head allows (deep research, for a pro caller on this path).
    strictest = envoy(demo(hold_headers_for_body=hold, unreadable_body="strictest"), hold_headers=hold)
    for i, body in enumerate(UNREADABLE):
        resp = send(strictest, "POST", CHAT, headers={"x-user-id": f"pia{i}", "x-plan": "pro"}, body=body)
        assert (resp.status, resp.headers["x-quota-class"]) == (200, "deep_research"), (body[:20], resp)


def test_a_body_over_the_cap_is_refused_or_charged_the_strictest_class(envoy):
    big = chat("o3-deep-research")
    big["messages"][0]["content"] = "x" * 4096
    refusing = envoy(demo(max_body_bytes=1024, hold_headers_for_body=True), hold_headers=True)
    resp = send(refusing, "POST", CHAT, headers=PRO, json=big)
    assert (resp.status, resp.json()["error"]["code"]) == (413, "body_too_large"), resp
    assert resp.json()["error"]["quota"]["max_body_bytes"] == 1024
    strictest = envoy(demo(max_body_bytes=1024, hold_headers_for_body=True, unreadable_body="strictest"),
                      hold_headers=True)
    resp = send(strictest, "POST", CHAT, headers=PRO, json=big)
    assert (resp.status, resp.headers["x-quota-class"]) == (200, "deep_research"), resp
    # The bytes the filter did not read still reach the upstream whole.
    assert resp.json()["mock_echo"]["body_len"] == len(json.dumps(big))


def test_a_blocked_body_request_never_reaches_the_upstream_even_with_headers_forwarded(envoy):
    proxy = envoy(demo(hold_headers_for_body=False))
    for _ in range(5):
        send(proxy, "POST", CHAT, headers={"x-user-id": "quinn"}, json=chat("gpt-4o-mini"))
    resp = send(proxy, "POST", CHAT, headers={"x-user-id": "quinn"}, json=chat("gpt-4o-mini"))
    assert resp.status == 429
    assert resp.json()["error"]["quota"]["class"] == "summaries"
