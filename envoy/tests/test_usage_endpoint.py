"""The usage endpoint: answered by the filter, never forwarded."""

from conftest import request
from quota_configs import CHAT, chat, demo
from test_blocking import upstream_requests


def test_reports_every_class_of_the_callers_tier(envoy):
    proxy = envoy(demo(), hold_headers=True)
    for _ in range(3):
        request(proxy, "POST", CHAT, headers={"x-user-id": "sam"}, json=chat())
    before = upstream_requests(proxy)
    resp = request(proxy, "GET", "/v1/quota?fresh=1", headers={"x-user-id": "sam"})
    assert resp.status == 200
    assert resp.headers["cache-control"] == "no-store"
    report = resp.json()
    assert (report["user"], report["tier"], report["tier_label"]) == ("sam", "free", "Free")
    by_class = {c["class"]: c for c in report["classes"]}
    assert list(by_class) == ["deep_research", "summaries", "drafts", "batch_records", "premium_chat"]
    drafts = by_class["drafts"]
    assert (drafts["used"], drafts["limit"], drafts["soft_limit"], drafts["remaining"], drafts["state"]) == (3, 10, 5, 7, "ok")
    assert drafts["reset"].endswith("T00:00:00Z")
    assert by_class["summaries"]["used"] == 0
    research = by_class["deep_research"]
    assert (research["included"], research["state"]) == (False, "not_included")
    assert research["upgrade"]["text"] == "Pro includes 3 a day: https://example.com/upgrade?plan=pro"
    premium = by_class["premium_chat"]
    assert (premium["included"], premium["state"]) == (False, "not_included")
    assert premium["upgrade"]["text"] == "Pro includes $5.00 a month: https://example.com/upgrade?plan=pro"
    # Reading usage charges nothing and never reaches the upstream.
    assert upstream_requests(proxy) == before
    again = request(proxy, "GET", "/v1/quota", headers={"x-user-id": "sam"}).json()
    assert {c["class"]: c.get("used") for c in again["classes"]}["drafts"] == 3


def test_only_get_and_an_identity_are_accepted(envoy):
    proxy = envoy(demo(), hold_headers=True)
    assert request(proxy, "POST", "/v1/quota", headers={"x-user-id": "sam"}, json={}).status == 405
    assert request(proxy, "GET", "/v1/quota").status == 401
    assert upstream_requests(proxy) == 0
