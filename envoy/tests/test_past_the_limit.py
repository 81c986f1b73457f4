"""Past the hard limit: degrade to a cheaper model, overage for billing, a
deferred queue, and grants spent after the plan."""

from conftest import request
from quota_configs import CHAT, chat, one_class

SECRET = "test-admin-secret-0123456789"


def test_degrade_rewrites_the_model_up_to_its_ceiling(envoy):
    config = one_class(hard=2, at_hard="degrade", hold_headers_for_body=True)
    config["tiers"]["free"]["limits"]["drafts"]["degrade"] = {"model": "gpt-4o-mini", "limit": 2}
    proxy = envoy(config, hold_headers=True)
    send = lambda: request(proxy, "POST", CHAT, headers={"x-user-id": "fay"}, json=chat("gpt-4o"))  # noqa: E731
    first = send()
    assert [first.json()["model"], send().json()["model"]] == ["gpt-4o", "gpt-4o"]
    degraded = send()
    assert degraded.status == 200
    assert degraded.headers["x-quota-state"] == "degraded"
    assert degraded.headers["x-quota-degraded-to"] == "gpt-4o-mini"
    # The rewrite reached the upstream (the mock answers with the model it got).
    assert degraded.json()["model"] == "gpt-4o-mini"
    # With the headers held, the upstream gets the body framed as the client
    # framed it, with a content-length: the client's own, or the rewritten body's.
    for resp in (first, degraded):
        seen = resp.json()["mock_echo"]
        assert "transfer-encoding" not in seen["headers"], seen
        assert int(seen["headers"]["content-length"]) == seen["body_len"], seen
    assert degraded.headers["x-quota-warning"].startswith("You've used your 2 drafts for today, so this one was answered by gpt-4o-mini.")
    assert send().status == 200
    assert send().status == 429


def test_overage_admits_and_counts_then_blocks_at_its_cap(envoy):
    config = one_class(hard=2, at_hard="overage")
    config["tiers"]["free"]["limits"]["drafts"]["overage"] = {"cap": 2}
    proxy = envoy(config)
    responses = [request(proxy, "POST", CHAT, headers={"x-user-id": "gus"}, json=chat()) for _ in range(5)]
    assert [r.status for r in responses] == [200, 200, 200, 200, 429]
    assert [r.headers.get("x-quota-overage") for r in responses[2:4]] == ["1", "2"]
    assert responses[3].headers["x-quota-state"] == "overage"
    drafts = request(proxy, "GET", "/v1/quota", headers={"x-user-id": "gus"}).json()["classes"][0]
    assert (drafts["used"], drafts["over"], drafts["state"]) == (4, 2, "blocked")


def test_queue_defers_the_work_and_says_so(envoy):
    proxy = envoy(one_class(hard=1, at_hard="queue"))
    request(proxy, "POST", CHAT, headers={"x-user-id": "hal"}, json=chat())
    queued = request(proxy, "POST", CHAT, headers={"x-user-id": "hal"}, json=chat())
    assert (queued.status, queued.headers["x-quota-state"]) == (200, "queued")
    assert queued.json()["mock_echo"]["headers"]["x-quota-deferred"] == "1"
    assert "queued and will run when capacity frees up" in queued.headers["x-quota-warning"]


def test_grants_are_added_by_a_trusted_caller_and_spent_after_the_plan(envoy):
    proxy = envoy(one_class(hard=1, admin={"path": "/quota/admin/grants", "secret": SECRET}))
    grant = "/quota/admin/grants?class=drafts&user=ida&units=2"
    assert request(proxy, "POST", grant).status == 404
    assert request(proxy, "POST", grant, headers={"authorization": "Bearer wrong"}).status == 404
    assert request(proxy, "GET", grant, headers={"authorization": f"Bearer {SECRET}"}).status == 404
    added = request(proxy, "POST", grant, headers={"authorization": f"Bearer {SECRET}"})
    assert added.status == 200
    assert added.json() == {"class": "drafts", "scope": "user", "id": "ida", "added": 2, "grant": 2}
    bad = request(proxy, "POST", "/quota/admin/grants?class=drafts&user=ida&units=0",
                  headers={"authorization": f"Bearer {SECRET}"})
    assert bad.status == 400
    assert bad.json()["error"]["message"] == '"units" must be a whole number from 1 to 1000000000'
    statuses = [request(proxy, "POST", CHAT, headers={"x-user-id": "ida"}, json=chat()) for _ in range(4)]
    assert [r.status for r in statuses] == [200, 200, 200, 429]
    assert [r.headers.get("x-quota-grant") for r in statuses[:3]] == ["2", "1", "0"]
