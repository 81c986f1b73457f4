"""Stacked limits in real Envoy: a team pool with member caps, two windows
on one class, an admin's member cap, and refusals that name the limit."""

import http.client
import json
import threading
import time
from collections import Counter

import harness
from conftest import request
from quota_configs import CHAT, chat, one_class

SECRET = "s3cret-s3cret-s3cret-s3cret"


def stacked(limits, **top_level):
    """one_class's drafts with a stack of limits in the free tier."""
    config = one_class(**top_level)
    config["tiers"]["free"]["limits"]["drafts"] = limits
    return config


def team_pool(pool=300, member=50, **top_level):
    return stacked([
        {"scope": "workspace", "hard": pool, "window": "day"},
        {"scope": "user", "hard": member, "window": "day", "admin_cap": True},
    ], admin={"path": "/quota/admin", "secret": SECRET}, **top_level)


def send(proxy, user, workspace="acme", **headers):
    return request(proxy, "POST", CHAT, headers={"x-user-id": user, "x-workspace-id": workspace, **headers},
                   json=chat())


def flood(ports, jobs):
    """Send every (user, count) job on its own keep-alive connection, all at
    once, the connections spread over `ports` (one Envoy's, or several);
    returns (user, status, x-quota-scope) of every response."""
    ports = ports if isinstance(ports, list) else [ports]
    results, lock = [], threading.Lock()
    body = json.dumps(chat())

    def run(port, user, count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen = []
        try:
            for _ in range(count):
                conn.request("POST", CHAT, body=body, headers={
                    "x-user-id": user, "x-workspace-id": "acme", "content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                seen.append((user, resp.status, resp.getheader("x-quota-scope")))
        finally:
            conn.close()
            with lock:
                results.extend(seen)

    threads = [threading.Thread(target=run, args=(ports[i % len(ports)], *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_team_pool_with_member_caps_is_exact_under_parallel_clients(envoy):
    proxy = envoy(team_pool(), concurrency=2)
    exactly_50_then_300(proxy, [proxy.port])


def test_a_team_pool_in_redis_is_exact_across_two_envoys(envoy, redis_stack):
    _, webdis = redis_stack()
    config = stacked([
        {"scope": "workspace", "hard": 300, "window": "day"},
        {"scope": "user", "hard": 50, "window": "day"},
    ], counters=harness.redis_counters())
    clusters = [harness.webdis_cluster(webdis.port)]
    a, b = (envoy(config, concurrency=2, extra_clusters=clusters) for _ in range(2))
    exactly_50_then_300(a, [a.port, b.port])
    # The other Envoy reads the same counters.
    report = json.loads(request(b, "GET", "/v1/quota", headers={"x-user-id": "m0", "x-workspace-id": "acme"}).body)
    assert [(l["scope"], l["used"]) for l in report["classes"][0]["limits"]] == [("workspace", 300), ("user", 50)]
    for proxy in (a, b):
        stats = proxy.stats(filter=r"wasmcustom\.quota\.store\.")
        assert stats.get("wasmcustom.quota.store.errors", 0) == 0, stats
        assert stats.get("wasmcustom.quota.store.mismatches", 0) == 0, stats


def exactly_50_then_300(proxy, ports):
    """A pool of 300 with member caps of 50, reached through `ports`."""
    # One member, eight connections, 80 requests: exactly the cap of 50.
    first = flood(ports, [("m0", 10)] * 8)
    assert Counter(status for _, status, _ in first) == {200: 50, 429: 30}
    assert {scope for _, status, scope in first if status == 429} == {"user"}
    # Six more members, 60 requests each at once: the pool's other 250.
    rest = flood(ports, [(f"m{i}", 30) for i in range(1, 7) for _ in range(2)])
    admitted = Counter(user for user, status, _ in rest if status == 200)
    assert sum(admitted.values()) == 250, admitted
    assert all(n <= 50 for n in admitted.values()), admitted
    assert {scope for _, status, scope in rest if status == 429} <= {"user", "workspace"}
    # The pool holds 300, and every member of it is refused now, by the pool.
    last = send(proxy, "m7")
    assert (last.status, last.headers["x-quota-scope"], last.headers["x-quota-used"]) == (429, "workspace", "300")
    report = json.loads(request(proxy, "GET", "/v1/quota", headers={"x-user-id": "m0", "x-workspace-id": "acme"}).body)
    drafts = report["classes"][0]
    assert [(l["scope"], l["used"], l["limit"]) for l in drafts["limits"]] == [("workspace", 300, 300), ("user", 50, 50)]


def test_a_short_window_and_a_long_one_bind_in_turn(envoy):
    proxy = envoy(stacked([{"hard": 2, "window": "5s"}, {"hard": 3, "window": "120s"}]))
    assert [send(proxy, "ada").status for _ in range(2)] == [200, 200]
    short = send(proxy, "ada")
    assert (short.status, short.headers["x-quota-window"]) == (429, "5s")
    assert short.headers["ratelimit"].startswith('"drafts.user.5s";r=0;')
    assert short.headers["ratelimit-policy"] == '"drafts.user.5s";q=2;w=5, "drafts.user.120s";q=3;w=120'
    assert short.json()["error"]["message"].startswith("You've used your 2 drafts in this 5-second window.")
    # Once the five seconds are over, the long window has one left, then binds.
    time.sleep(int(short.headers["retry-after"]) + 0.3)
    assert send(proxy, "ada").status == 200
    long_ = send(proxy, "ada")
    assert (long_.status, long_.headers["x-quota-window"]) == (429, "120s")
    assert long_.headers["ratelimit"].startswith('"drafts.user.120s";r=0;')
    assert long_.json()["error"]["message"].startswith("You've used your 3 drafts in this 2-minute window.")


def test_each_refusal_names_its_limit_in_every_body_format(envoy):
    proxy = envoy(team_pool(pool=3, member=2))
    assert [send(proxy, "ada").status for _ in range(2)] == [200, 200]
    assert send(proxy, "bo").status == 200
    cases = [("ada", "user", "drafts.user.day", "You've used your 2 drafts of your team's allowance for today."),
             ("bo", "workspace", "drafts.workspace.day", "Your team has used its 3 drafts for today.")]
    for user, scope, policy, sentence in cases:
        openai = send(proxy, user)
        assert (openai.status, openai.headers["x-quota-scope"]) == (429, scope)
        assert openai.headers["ratelimit"].startswith(f'"{policy}";r=0;')
        assert openai.headers["ratelimit-policy"] == '"drafts.workspace.day";q=3;w=86400, "drafts.user.day";q=2;w=86400'
        error = openai.json()["error"]
        assert error["message"].startswith(sentence)
        assert error["quota"]["policy"] == policy
        assert [(l["policy"], l["binding"]) for l in error["quota"]["limits"]] == [
            ("drafts.workspace.day", policy == "drafts.workspace.day"), ("drafts.user.day", policy == "drafts.user.day")]
        problem = send(proxy, user, accept="application/problem+json")
        assert problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["violated-policies"] == [policy]
        assert problem.json()["detail"].startswith(sentence)
        html = send(proxy, user, accept="text/html")
        assert html.headers["content-type"].startswith("text/html")
        assert sentence.replace("'", "&#39;") in html.text


def test_an_admin_member_cap_takes_effect_and_is_cleared(envoy):
    proxy = envoy(team_pool(pool=10, member=4))
    admin = {"authorization": f"Bearer {SECRET}"}

    def cap(value):
        query = f"class=drafts&workspace=acme&user=ada&cap={value}"
        return request(proxy, "POST", f"/quota/admin?{query}", headers=admin)

    set_ = cap(2)
    assert (set_.status, set_.json()) == (200, {"class": "drafts", "workspace": "acme", "user": "ada", "cap": 2})
    assert [send(proxy, "ada").status for _ in range(3)] == [200, 200, 429]
    capped = send(proxy, "ada")
    assert (capped.headers["x-quota-limit"], capped.headers["x-quota-scope"]) == ("2", "user")
    # Bo keeps the plan's 4; a cap above the pool is refused; no secret, no endpoint.
    assert [send(proxy, "bo").status for _ in range(5)] == [200, 200, 200, 200, 429]
    assert cap(11).status == 400
    assert request(proxy, "POST", "/quota/admin?class=drafts&workspace=acme&user=ada&cap=none").status == 404
    cleared = cap("none")
    assert (cleared.status, cleared.json()["cap"]) == (200, None)
    assert [send(proxy, "ada").status for _ in range(3)] == [200, 200, 429]
    assert send(proxy, "ada").headers["x-quota-limit"] == "4"


def test_an_admin_member_cap_in_redis_is_enforced_by_another_envoy_and_cleared(envoy, redis_stack):
    _, webdis = redis_stack()
    config = team_pool(pool=10, member=4, counters=harness.redis_counters())
    clusters = [harness.webdis_cluster(webdis.port)]
    a, b = (envoy(config, extra_clusters=clusters) for _ in range(2))
    admin = {"authorization": f"Bearer {SECRET}"}

    def cap(value):
        query = f"class=drafts&workspace=acme&user=ada&cap={value}"
        return request(a, "POST", f"/quota/admin?{query}", headers=admin)

    # Set through one Envoy, in Redis: the other enforces it.
    set_ = cap(2)
    assert (set_.status, set_.json()) == (200, {"class": "drafts", "workspace": "acme", "user": "ada", "cap": 2})
    assert [send(b, "ada").status for _ in range(3)] == [200, 200, 429]
    capped = send(b, "ada")
    assert (capped.headers["x-quota-limit"], capped.headers["x-quota-scope"]) == ("2", "user")
    report = json.loads(request(b, "GET", "/v1/quota", headers={"x-user-id": "ada", "x-workspace-id": "acme"}).body)
    assert [(l["scope"], l["used"], l["limit"]) for l in report["classes"][0]["limits"]] == [
        ("workspace", 2, 10), ("user", 2, 2)]
    # Bo keeps the plan's 4, on either Envoy; a cap above the pool is refused.
    assert [send(p, "bo").status for p in (a, b, a, b, a)] == [200, 200, 200, 200, 429]
    assert cap(11).status == 400
    # Cleared: the plan's 4 again, everywhere.
    cleared = cap("none")
    assert (cleared.status, cleared.json()["cap"]) == (200, None)
    assert [send(b, "ada").status for _ in range(3)] == [200, 200, 429]
    assert send(a, "ada").headers["x-quota-limit"] == "4"
    for proxy in (a, b):
        stats = proxy.stats(filter=r"wasmcustom\.quota\.store\.")
        assert stats.get("wasmcustom.quota.store.errors", 0) == 0, stats
        assert stats.get("wasmcustom.quota.store.mismatches", 0) == 0, stats
