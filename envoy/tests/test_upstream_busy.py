"""A provider's own capacity refusal (429, 503, 529 from the upstream) through
real Envoy: answered as "busy, not your quota" in the format the client reads,
with the provider's status and Retry-After, x-should-retry: true, and no
charge. Only the upstream's status decides: nothing a caller sends makes an
ordinary answer look busy."""

import pytest

from conftest import request
from quota_configs import CHAT, MESSAGES, chat, sdk_classes
from sdk_helpers import used

BUSY = "The model is busy right now, so this request didn't go through."


def post(proxy, path, user, **headers):
    return request(proxy, "POST", path, headers={"x-user-id": user, **headers}, json=chat())


@pytest.mark.parametrize("status", ["429", "503", "529"])
def test_every_busy_status_is_answered_friendly_and_charged_nothing(envoy, status):
    proxy = envoy(sdk_classes())
    post(proxy, CHAT, "cy")
    resp = post(proxy, CHAT, "cy", **{"x-mock-status": status, "x-mock-retry-after": "4"})
    assert resp.status == int(status)
    assert resp.headers["retry-after"] == "4"
    assert resp.headers["x-should-retry"] == "true"
    assert resp.headers["content-type"] == "application/json"
    assert (resp.headers["x-quota-used"], resp.headers["x-quota-cost"]) == ("1", "0")
    error = resp.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_busy", "upstream_busy")
    assert error["message"] == BUSY + " It didn't count against your allowance. Try again in 4 s."
    assert error["quota"]["upstream_status"] == int(status)
    assert "mock upstream error" not in resp.body.decode()
    assert used(proxy, "cy", "drafts") == 1


def test_the_answer_follows_accept_and_the_api_the_client_speaks(envoy):
    proxy = envoy(sdk_classes())
    busy = {"x-mock-status": "529"}
    resp = post(proxy, MESSAGES, "di", **busy)
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "overloaded_error"
    assert resp.headers["retry-after"] == "2", "the configured wait: the provider said none"
    resp = post(proxy, MESSAGES, "di", accept="application/problem+json", **busy)
    assert resp.headers["content-type"] == "application/problem+json"
    assert (resp.json()["status"], resp.json()["code"]) == (529, "upstream_busy")
    resp = post(proxy, CHAT, "di", accept="text/html", **busy)
    assert resp.headers["content-type"].startswith("text/html")
    assert "<h1>The model is busy right now</h1>" in resp.body.decode()
    assert used(proxy, "di", "messages") == 0 and used(proxy, "di", "drafts") == 0


def test_a_busy_answer_without_a_body_still_gets_one(envoy):
    proxy = envoy(sdk_classes())
    resp = post(proxy, CHAT, "ed", **{"x-mock-status": "503", "x-mock-empty": "1"})
    assert resp.status == 503
    assert resp.json()["error"]["code"] == "upstream_busy", resp
    assert resp.headers["x-should-retry"] == "true"
    assert used(proxy, "ed", "drafts") == 0


def test_a_caller_cannot_make_an_answer_look_busy(envoy):
    # Everything a caller controls says "busy"; the provider answers 200.
    proxy = envoy(sdk_classes())
    claims = {"x-should-retry": "true", "retry-after": "1", "x-quota-state": "upstream_busy",
              "x-quota-cost": "0", "accept": "application/json"}
    for n in range(1, 4):
        resp = post(proxy, CHAT, "fay", **claims)
        assert resp.status == 200, resp
        assert resp.headers["x-quota-used"] == str(n)
        assert "x-should-retry" not in resp.headers
    assert used(proxy, "fay", "drafts") == 3
    assert post(proxy, CHAT, "fay").status == 429
    # Once the three admitted requests and the refusal are in the stats.
    counted = proxy.wait_for_stats(r"wasmcustom\.quota\.drafts\.free\.(requests|blocked|upstream_busy)$",
                                   lambda s: (s["wasmcustom.quota.drafts.free.requests"],
                                              s["wasmcustom.quota.drafts.free.blocked"]) == (3, 1))
    assert (counted["wasmcustom.quota.drafts.free.requests"], counted["wasmcustom.quota.drafts.free.blocked"]) == (3, 1)
    stats = {k: v for k, v in counted.items() if k.endswith("upstream_busy")}
    assert stats == {"wasmcustom.quota.drafts.free.upstream_busy": 0}


def test_a_non_busy_upstream_error_is_passed_through(envoy):
    proxy = envoy(sdk_classes())
    resp = post(proxy, CHAT, "gus", **{"x-mock-status": "500"})
    assert resp.status == 500
    assert resp.json()["error"]["code"] == "mock_error"
    # Busy answers off: the provider's 429 passes as it was (refunded as any 4xx).
    proxy = envoy(sdk_classes(upstream_busy={"enabled": False}))
    resp = post(proxy, CHAT, "gus", **{"x-mock-status": "429"})
    assert (resp.status, resp.json()["error"]["code"]) == (429, "mock_error")
    assert "x-should-retry" not in resp.headers
    assert used(proxy, "gus", "drafts") == 0


def test_openai_ratelimit_headers_when_switched_on(envoy):
    proxy = envoy(sdk_classes(response_headers={"openai_ratelimit": True}))
    resp = post(proxy, CHAT, "hal")
    assert resp.headers["x-ratelimit-limit-requests"] == "3"
    assert resp.headers["x-ratelimit-remaining-requests"] == "2"
    reset = resp.headers["x-ratelimit-reset-requests"]
    assert reset.endswith("s") and ("h" in reset or "m" in reset or reset[:-1].isdigit()), reset
    assert "x-ratelimit-limit-tokens" not in resp.headers
    proxy = envoy(sdk_classes())
    assert "x-ratelimit-limit-requests" not in post(proxy, CHAT, "hal").headers
