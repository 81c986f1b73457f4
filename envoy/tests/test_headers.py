"""The wire contract on every response of a classified request."""

from datetime import datetime, timedelta, timezone

from conftest import request
from quota_configs import CHAT, chat, demo


def next_utc_midnight():
    now = datetime.now(timezone.utc)
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def test_every_classified_response_carries_the_quota_contract(envoy):
    proxy = envoy(demo(), hold_headers=True)
    for used in (1, 2, 3):
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": "hana"}, json=chat("gpt-4o"))
        assert resp.status == 200
        h = resp.headers
        assert h["x-quota-class"] == "drafts"
        assert h["x-quota-tier"] == "free"
        assert h["x-quota-scope"] == "user"
        assert h["x-quota-used"] == str(used)
        assert h["x-quota-limit"] == "10"
        assert h["x-quota-soft-limit"] == "5"
        assert h["x-quota-remaining"] == str(10 - used)
        assert h["x-quota-state"] == "ok"
        assert h["x-quota-cost"] == "1"
        assert "x-quota-warning" not in h
        reset = next_utc_midnight()
        assert h["x-quota-reset"] == reset.strftime("%Y-%m-%dT%H:%M:%SZ")
        reset_after = int(h["x-quota-reset-after"])
        expected = (reset - datetime.now(timezone.utc)).total_seconds()
        assert abs(reset_after - expected) <= 2
        assert h["ratelimit-policy"] == '"drafts";q=10;w=86400'
        assert h["ratelimit"] == f'"drafts";r={10 - used};t={reset_after}'


def test_warning_headers_start_at_the_soft_limit(envoy):
    proxy = envoy(demo(), hold_headers=True)
    states = []
    for _ in range(10):
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": "ivo"}, json=chat())
        states.append(resp.headers["x-quota-state"])
    assert states == ["ok"] * 4 + ["warning"] * 6
    assert resp.headers["x-quota-warning"].startswith("That was the last of your 10 drafts for today.")
    assert resp.headers["x-quota-upgrade"] == "https://example.com/upgrade?plan=pro"


def test_unclassified_requests_pass_untouched(envoy):
    proxy = envoy(demo(), hold_headers=True)
    resp = request(proxy, "GET", "/v1/models", headers={"x-user-id": "hana"})
    assert resp.status == 200
    assert not [name for name in resp.headers if name.startswith("x-quota-") or name.startswith("ratelimit")]
    # No identity is needed where no class applies.
    assert request(proxy, "GET", "/v1/models").status == 200


def test_client_sent_quota_headers_never_reach_the_upstream(envoy):
    proxy = envoy(demo(), hold_headers=True)
    spoofed = [("x-user-id", "jo"), ("X-Quota-Used", "0"), ("x-quota-tier", "enterprise"),
               ("x-quota-remaining", "999"), ("x-quota-state", "ok")]
    for method, path, body in [("POST", CHAT, chat()), ("GET", "/v1/models", None)]:
        resp = request(proxy, method, path, headers=spoofed, json=body)
        assert resp.status == 200
        seen = resp.json()["mock_echo"]["headers"]
        assert [n for n in seen if n.startswith("x-quota-")] == []
        assert seen["x-user-id"] == "jo"
    # And they change nothing about the caller's standing.
    assert resp.headers.get("x-quota-tier") is None
    resp = request(proxy, "POST", CHAT, headers=spoofed, json=chat())
    assert resp.headers["x-quota-tier"] == "free"
    assert resp.headers["x-quota-used"] == "2"
