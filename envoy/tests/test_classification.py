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


def test_a_body_that_is_not_json_is_refused_or_charged_the_strictest_class(proxy, envoy):
    # The model could pick deep research: a body the rules cannot read is
    # refused by default, and never falls back to a cheaper class.
    bodies = [b"not json", b'{"model": "o3-deep-research"', b"[" * 10000]
    for body in bodies:
        resp = send(proxy, "POST", CHAT, headers=PRO, body=body)
        assert (resp.status, resp.json()["error"]["code"]) == (400, "unreadable_body"), body[:40]
        assert "x-quota-class" not in resp.headers
    strictest = envoy(demo(unreadable_body="strictest"), hold_headers=True)
    for i, body in enumerate(bodies):
        # A user each: pro allows 3 deep-research calls a day.
        resp = send(strictest, "POST", CHAT, headers={"x-user-id": f"pia{i}", "x-plan": "pro"}, body=body)
        assert resp.status == 200
        assert resp.headers["x-quota-class"] == "deep_research"


@pytest.mark.parametrize("unreadable_body", ["refuse", "strictest"])
def test_a_body_over_the_cap_is_not_inspected(envoy, unreadable_body):
    proxy = envoy(demo(max_body_bytes=1024, hold_headers_for_body=True, unreadable_body=unreadable_body),
                  hold_headers=True)
    big = chat("o3-deep-research")
    big["messages"][0]["content"] = "x" * 4096
    resp = send(proxy, "POST", CHAT, headers=PRO, json=big)
    if unreadable_body == "refuse":
        assert (resp.status, resp.json()["error"]["code"]) == (413, "body_too_large")
        assert resp.json()["error"]["quota"]["max_body_bytes"] == 1024
        return
    # Not read, so charged as the strictest class the head allows; the bytes go on.
    assert resp.status == 200
    assert resp.headers["x-quota-class"] == "deep_research"
    assert resp.json()["mock_echo"]["body_len"] == len(json.dumps(big))


def test_a_blocked_body_request_never_reaches_the_upstream_even_with_headers_forwarded(envoy):
    proxy = envoy(demo(hold_headers_for_body=False))
    for _ in range(5):
        send(proxy, "POST", CHAT, headers={"x-user-id": "quinn"}, json=chat("gpt-4o-mini"))
    resp = send(proxy, "POST", CHAT, headers={"x-user-id": "quinn"}, json=chat("gpt-4o-mini"))
    assert resp.status == 429
    assert resp.json()["error"]["quota"]["class"] == "summaries"
