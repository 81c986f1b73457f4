"""The wall: a friendly 429 at the hard limit, per class and per tier."""

from conftest import request
from quota_configs import CHAT, chat, demo


def upstream_requests(proxy):
    return proxy.stats(filter=r"^cluster\.upstream\.upstream_rq_total$").get("cluster.upstream.upstream_rq_total", 0)


def test_blocks_at_the_hard_limit_with_a_friendly_429(envoy):
    proxy = envoy(demo(), hold_headers=True)
    for _ in range(10):
        assert request(proxy, "POST", CHAT, headers={"x-user-id": "kai"}, json=chat()).status == 200
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "kai"}, json=chat())
    assert resp.status == 429
    h = resp.headers
    assert h["retry-after"] == h["x-quota-reset-after"]
    assert int(h["retry-after"]) > 0
    assert h["x-quota-state"] == "blocked"
    assert h["x-quota-used"] == "10"
    assert h["x-quota-remaining"] == "0"
    assert h["x-quota-cost"] == "0"
    assert h["content-type"] == "application/json"
    assert h["ratelimit"].startswith('"drafts";r=0;t=')
    error = resp.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["message"].startswith("You've used your 10 drafts for today. They reset in ")
    assert error["message"].endswith("Pro includes 100 a day: https://example.com/upgrade?plan=pro")
    quota = error["quota"]
    assert (quota["class"], quota["tier"], quota["used"], quota["limit"], quota["remaining"]) == ("drafts", "free", 10, 10, 0)
    assert quota["reset"] == h["x-quota-reset"]
    assert quota["upgrade"] == {"tier": "pro", "label": "Pro", "limit": 100, "url": "https://example.com/upgrade?plan=pro"}
    # The blocked request never reached the upstream.
    assert upstream_requests(proxy) == 10


def test_classes_and_tiers_are_counted_separately(envoy):
    proxy = envoy(demo(), hold_headers=True)
    for _ in range(10):
        request(proxy, "POST", CHAT, headers={"x-user-id": "lea"}, json=chat("gpt-4o"))
    assert request(proxy, "POST", CHAT, headers={"x-user-id": "lea"}, json=chat("gpt-4o")).status == 429
    # Another class, another counter.
    summary = request(proxy, "POST", CHAT, headers={"x-user-id": "lea"}, json=chat("gpt-4o-mini"))
    assert (summary.status, summary.headers["x-quota-class"], summary.headers["x-quota-used"]) == (200, "summaries", "1")
    # Another user, another counter.
    other = request(proxy, "POST", CHAT, headers={"x-user-id": "max"}, json=chat("gpt-4o"))
    assert (other.status, other.headers["x-quota-used"]) == (200, "1")
    # The same user on Pro: the same counter, a bigger limit.
    pro = request(proxy, "POST", CHAT, headers={"x-user-id": "lea", "x-plan": "pro"}, json=chat("gpt-4o"))
    assert (pro.status, pro.headers["x-quota-tier"], pro.headers["x-quota-used"], pro.headers["x-quota-limit"]) == (200, "pro", "11", "100")


def test_a_class_outside_the_plan_is_refused_with_an_upgrade_hint(envoy):
    proxy = envoy(demo(), hold_headers=True)
    resp = request(proxy, "POST", "/v1/research/start", headers={"x-user-id": "ned"}, json={"topic": "tides"})
    assert resp.status == 403
    assert resp.headers["x-quota-state"] == "not_included"
    error = resp.json()["error"]
    assert error["code"] == "not_included_in_plan"
    assert error["message"] == ("Deep research isn't included in the Free plan. "
                                "Pro includes 3 a day: https://example.com/upgrade?plan=pro")
    resp = request(proxy, "POST", "/v1/research/start", headers={"x-user-id": "ned", "x-plan": "pro"}, json={})
    assert (resp.status, resp.headers["x-quota-class"]) == (200, "deep_research")


def test_a_request_without_identity_gets_a_friendly_401(envoy):
    proxy = envoy(demo(), hold_headers=True)
    resp = request(proxy, "POST", CHAT, json=chat())
    assert resp.status == 401
    assert resp.json()["error"]["code"] == "missing_identity"
    assert "Sign in and try again" in resp.json()["error"]["message"]
    assert upstream_requests(proxy) == 0


def test_the_user_id_can_come_from_a_jwt_claim(envoy):
    # {"alg":"none"}.{"sub":"ola"} — the demo trusts jwt_authn in front to verify it.
    token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJvbGEifQ."
    proxy = envoy(demo(), hold_headers=True)
    request(proxy, "POST", CHAT, headers={"authorization": f"Bearer {token}"}, json=chat())
    resp = request(proxy, "GET", "/v1/quota", headers={"authorization": f"Bearer {token}"})
    assert resp.json()["user"] == "ola"
