"""Counters in Redis, shared by two Envoys: exactness under parallel load,
one global state in headers and the usage endpoint, grants and refunds,
the fail policies while Redis is down, recovery, and persistence.

Each test starts its own redis-server and webdis (Debian's, installed by
`make setup-redis`) on loopback ports, and Envoys whose filter reaches Redis
through the `webdis` cluster."""

import json
import threading
import time
from collections import Counter

import harness
import pytest
from conftest import hammer, request
from quota_configs import CHAT, chat, one_class

SECRET = "test-admin-secret-0123456789"


def redis_config(*, on_error="fail_open", **kwargs):
    return one_class(counters=harness.redis_counters(on_error=on_error), **kwargs)


def two_envoys(envoy, webdis, config, concurrency=2):
    clusters = [harness.webdis_cluster(webdis.port)]
    return [envoy(config, concurrency=concurrency, extra_clusters=clusters) for _ in range(2)]


def draft(proxy, user, **headers):
    return request(proxy, "POST", CHAT, headers={"x-user-id": user, **headers}, json=chat())


def usage(proxy, user):
    resp = request(proxy, "GET", "/v1/quota", headers={"x-user-id": user})
    assert resp.status == 200, resp.body
    return next(c for c in json.loads(resp.body)["classes"] if c["class"] == "drafts")


def store_stats(proxy):
    return proxy.stats(filter=r"wasmcustom\.quota\.store\.")


def test_a_hard_limit_across_two_envoys_admits_exactly_the_limit(envoy, redis_stack):
    _, webdis = redis_stack()
    limit, requests_, connections, rounds = 300, 1200, 64, 3
    proxies = two_envoys(envoy, webdis, redis_config(hard=limit))
    for round_ in range(rounds):
        user = f"crowd-{round_}"
        results, lock = [], threading.Lock()
        threads = [
            threading.Thread(target=hammer,
                             args=(proxies[i % 2].port, user, requests_ // connections, results, lock))
            for i in range(connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = requests_ // connections * connections
        assert Counter(results) == {200: limit, 429: sent - limit}, f"round {round_}"
        # Both Envoys read the same global counter.
        for proxy in proxies:
            seen = usage(proxy, user)
            assert (seen["used"], seen["remaining"], seen["state"]) == (limit, 0, "blocked"), seen
    for proxy in proxies:
        assert proxy.stats(filter=r"^http\.ingress_http\.downstream_rq_2xx$")["http.ingress_http.downstream_rq_2xx"] > 0
        stats = store_stats(proxy)
        assert stats.get("wasmcustom.quota.store.errors", 0) == 0, stats
        assert stats.get("wasmcustom.quota.store.mismatches", 0) == 0, stats


def test_headers_on_either_envoy_count_from_the_same_counter(envoy, redis_stack):
    _, webdis = redis_stack()
    a, b = two_envoys(envoy, webdis, redis_config(hard=4), concurrency=1)
    seen = []
    for proxy in [a, b, a, b]:
        resp = draft(proxy, "ann")
        assert resp.status == 200
        seen.append(resp.headers["x-quota-remaining"])
    assert seen == ["3", "2", "1", "0"]
    refused = draft(b, "ann", accept="application/json")
    assert refused.status == 429
    assert refused.headers["x-quota-state"] == "blocked"
    assert json.loads(refused.body)["error"]["code"] == "quota_exceeded"
    assert int(refused.headers["retry-after"]) > 0


def test_grants_and_refunds_reach_the_global_counter(envoy, redis_stack):
    _, webdis = redis_stack()
    config = redis_config(hard=1, admin={"path": "/quota/admin/grants", "secret": SECRET})
    a, b = two_envoys(envoy, webdis, config, concurrency=1)
    assert draft(a, "ida").status == 200
    assert draft(b, "ida").status == 429
    grant = request(a, "POST", "/quota/admin/grants?class=drafts&user=ida&units=2",
                    headers={"authorization": f"Bearer {SECRET}"})
    assert grant.status == 200, grant.body
    assert json.loads(grant.body)["grant"] == 2
    assert usage(b, "ida")["grant"] == 2
    assert draft(b, "ida").status == 200
    # The upstream fails: the unit comes back (queued, sent from the root's tick).
    assert draft(a, "ida", **{"x-mock-status": "500"}).status == 500
    deadline = time.monotonic() + 5
    while usage(b, "ida")["grant"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert usage(b, "ida")["grant"] == 1
    assert draft(b, "ida").status == 200
    assert draft(a, "ida").status == 429


def test_redis_down_applies_the_fail_policy_and_counting_resumes_when_it_returns(envoy, redis_stack):
    redis, webdis = redis_stack()
    clusters = [harness.webdis_cluster(webdis.port)]
    open_ = envoy(redis_config(hard=3, on_error="fail_open"), concurrency=1, extra_clusters=clusters)
    closed = envoy(redis_config(hard=3, on_error="fail_closed"), concurrency=1, extra_clusters=clusters)
    assert draft(open_, "kim").status == 200
    assert draft(closed, "kim").headers["x-quota-remaining"] == "1"

    redis.stop()
    admitted = draft(open_, "kim")
    assert admitted.status == 200
    assert admitted.headers["x-quota-state"] == "unavailable"
    refused = draft(closed, "kim", accept="application/json")
    assert refused.status == 503
    assert refused.headers["x-quota-state"] == "unavailable"
    assert usage(open_, "kim")["state"] == "unavailable"
    assert store_stats(open_)["wasmcustom.quota.store.errors"] >= 2

    # Redis comes back empty (no persistence here) and without the script:
    # the filter loads it again and counts from zero.
    redis.start()
    deadline = time.monotonic() + 10
    while (resp := draft(closed, "lea")).status == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resp.status == 200, resp.body
    assert resp.headers["x-quota-remaining"] == "2"
    assert draft(open_, "lea").headers["x-quota-remaining"] == "1"
    assert usage(closed, "lea")["used"] == 2


def test_a_persistent_redis_killed_and_restarted_loses_no_counter(envoy, redis_stack):
    redis, webdis = redis_stack(persistent=True)
    a, b = two_envoys(envoy, webdis, redis_config(hard=10), concurrency=1)
    for i in range(7):
        assert draft([a, b][i % 2], "max").status == 200
    redis.proc.kill()  # no shutdown, no final save: only the append-only file
    redis.proc.wait()
    redis.start()
    deadline = time.monotonic() + 10
    while (seen := usage(a, "max"))["state"] == "unavailable" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen["used"] == 7, seen
    assert [draft(b, "max").status for _ in range(4)] == [200, 200, 200, 429]
    assert usage(a, "max")["used"] == 10


@pytest.mark.parametrize("hold", [True, False], ids=["headers-held", "body-held"])
def test_a_body_read_for_the_decision_is_rewritten_after_the_redis_call(envoy, redis_stack, hold):
    _, webdis = redis_stack()
    config = redis_config(hard=2, at_hard="degrade", hold_headers_for_body=hold)
    config["tiers"]["free"]["limits"]["drafts"]["degrade"] = {"model": "gpt-4o-mini", "limit": 1}
    proxy = envoy(config, hold_headers=hold, extra_clusters=[harness.webdis_cluster(webdis.port)])
    models = [draft(proxy, "fay").json()["model"] for _ in range(3)]
    # The third request waited for Redis, then went on with the model rewritten.
    assert models == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    assert draft(proxy, "fay").status == 429


def test_reported_tokens_correct_the_global_counter(envoy, redis_stack):
    _, webdis = redis_stack()
    config = redis_config(hard=100000, hold_headers_for_body=True)
    config["classes"][0]["cost"] = {"tokens": {"default_max_tokens": 500}}
    proxy = envoy(config, hold_headers=True, extra_clusters=[harness.webdis_cluster(webdis.port)])
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
            "max_tokens": 300}
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "cal", "x-mock-completion-tokens": "21"}, json=body)
    assert resp.headers["x-quota-cost"] == str(10 + 300)
    deadline = time.monotonic() + 5
    while usage(proxy, "cal")["used"] != 29 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert usage(proxy, "cal")["used"] == 29


def test_approximate_mode_overshoots_within_its_bound_and_converges(envoy, redis_stack):
    redis, webdis = redis_stack()
    limit, requests_, connections = 300, 1200, 64
    counters = harness.redis_counters()
    counters["redis"].update(mode="approximate", sync_ms=100)
    proxies = two_envoys(envoy, webdis, one_class(hard=limit, counters=counters))
    results, lock = [], threading.Lock()
    threads = [threading.Thread(target=hammer, args=(proxies[i % 2].port, "swift", requests_ // connections,
                                                     results, lock))
               for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = Counter(results)[200]
    # Each Envoy admits from its own counter, which learns the other's usage
    # every sync: never fewer than the limit, at most each Envoy's full limit.
    assert limit <= admitted <= 2 * limit, admitted
    print(f"approximate mode: {admitted} admitted for a limit of {limit} (overshoot {admitted - limit})")
    # Once synced, Redis holds every admitted unit and both Envoys show it.
    deadline = time.monotonic() + 5
    while int(redis.cli("HGET", "quota:{u:swift}drafts", "u") or 0) != admitted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(redis.cli("HGET", "quota:{u:swift}drafts", "u")) == admitted
    for proxy in proxies:
        while usage(proxy, "swift")["used"] != admitted and time.monotonic() < deadline:
            draft(proxy, "swift")  # refused: only the sync moves the local counter now
            time.sleep(0.1)
        assert usage(proxy, "swift")["used"] == admitted
        assert draft(proxy, "swift").status == 429


def test_approximate_mode_refuses_grants(envoy_expect_failure):
    counters = harness.redis_counters()
    counters["redis"]["mode"] = "approximate"
    log = envoy_expect_failure(one_class(counters=counters, admin={"path": "/quota/admin/grants", "secret": SECRET}))
    assert "counters.redis.mode" in log
