"""The lease mode through real Envoys and one Redis (webdis in front): many
Envoys admit from blocks reserved in Redis, never past a hard limit, at most
the stated bound short of it under load, every unit spent once the idle
blocks come back; the usage as fresh as each Envoy's last call; a Redis
outage ridden out on the block held for its lifetime, then the fail policy.

The same mode against a Redis Cluster over TLS is in test_redis_cluster.py."""

import json
import time

import harness
from conftest import crowd, request
from quota_configs import CHAT, chat, one_class


def lease_config(*, hard, fraction=0.1, lease_ms=1000, on_error="fail_open", max_units=None):
    counters = harness.redis_counters(on_error=on_error)
    counters["redis"].update({"mode": "lease", "lease_ms": lease_ms, "lease_fraction": fraction})
    if max_units is not None:
        counters["redis"]["lease_max_units"] = max_units
    return one_class(hard=hard, counters=counters)


def refusal_bound(hard, fraction, envoys, max_units=None):
    """quota_core::lease::refusal_bound: two blocks per other Envoy."""
    block = max(1, -(-hard * round(fraction * 1_000_000) // 1_000_000))
    if max_units is not None:
        block = min(block, max_units)
    return 2 * block * (envoys - 1)


def envoys(envoy, webdis, config, count, concurrency=2):
    clusters = [harness.webdis_cluster(webdis.port)]
    return [envoy(config, concurrency=concurrency, extra_clusters=clusters) for _ in range(count)]


def draft(proxy, user):
    return request(proxy, "POST", CHAT, headers={"x-user-id": user}, json=chat())


def usage(proxy, user):
    resp = request(proxy, "GET", "/v1/quota", headers={"x-user-id": user})
    assert resp.status == 200, resp.body
    return next(c for c in json.loads(resp.body)["classes"] if c["class"] == "drafts")


def load(proxies, user, connections, per_connection):
    return crowd([p.port for p in proxies], user, connections, per_connection)


def drain(proxies, user, limit, timeout=30.0):
    """One request at a time, round robin, until `limit` more are refused in
    a row on every Envoy after the idle blocks had time to come back;
    returns how many were admitted."""
    admitted, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [draft(p, user).status for p in proxies]
        assert set(statuses) <= {200, 429}, statuses
        admitted += statuses.count(200)
        if admitted >= limit:
            return admitted
        if 200 not in statuses:
            # Units still held by an idle Envoy come back after the block's lifetime.
            time.sleep(0.1)
    return admitted


def store_errors(proxy):
    stats = proxy.stats(filter=r"wasmcustom\.quota\.store\.")
    return stats.get("wasmcustom.quota.store.errors", 0), stats.get("wasmcustom.quota.store.mismatches", 0)


def test_three_envoys_never_admit_past_the_limit_and_idle_blocks_come_back(envoy, redis_stack):
    redis, webdis = redis_stack()
    hard, fraction = 200, 0.1
    proxies = envoys(envoy, webdis, lease_config(hard=hard, fraction=fraction), 3)
    bound = refusal_bound(hard, fraction, 3)
    for round_ in range(3):
        user = f"crowd-{round_}"
        counts = load(proxies, user, connections=48, per_connection=12)
        admitted = counts[200]
        print(f"round {round_}: {admitted} of {hard} admitted at full load across 3 Envoys (bound {bound})")
        assert set(counts) <= {200, 429}, counts
        assert hard - bound <= admitted <= hard, counts
        # Once the blocks left unspent come back, every unit is spent, none twice.
        rest = drain(proxies, user, hard - admitted)
        assert admitted + rest == hard, (admitted, rest)
        for proxy in proxies:
            assert draft(proxy, user).status == 429
        assert int(redis.cli("HGET", f"quota:{{u:{user}}}drafts", "u")) == hard
        # Every Envoy's last call reported its spending: the usage is exact.
        seen = usage(proxies[round_ % 3], user)
        assert (seen["used"], seen["remaining"], seen["state"]) == (hard, 0, "blocked"), seen
    for proxy in proxies:
        assert store_errors(proxy) == (0, 0)


def script_calls(redis):
    """EVAL and EVALSHA calls Redis has run."""
    calls = 0
    for line in redis.cli("INFO", "commandstats").splitlines():
        name, _, fields = line.partition(":")
        if name in ("cmdstat_eval", "cmdstat_evalsha"):
            calls += int(dict(f.split("=") for f in fields.split(","))["calls"])
    return calls


def test_most_requests_are_admitted_without_waiting_for_redis(envoy, redis_stack):
    redis, webdis = redis_stack()
    (proxy,) = envoys(envoy, webdis, lease_config(hard=1000, fraction=0.1), 1)
    before = script_calls(redis)
    counts = load([proxy], "steady", connections=4, per_connection=50)
    assert counts == {200: 200}
    # Blocks are a tenth of what is left (100, 90, ...): 200 requests take a
    # few calls (a renewal when a block runs half empty), not 200.
    calls = script_calls(redis) - before
    assert 1 <= calls <= 20, calls


def test_the_usage_is_each_envoys_spending_as_last_reported(envoy, redis_stack):
    _, webdis = redis_stack()
    a, b = envoys(envoy, webdis, lease_config(hard=100, lease_ms=500), 2, concurrency=1)
    for proxy in [a, a, a, b, b]:
        assert draft(proxy, "ann").status == 200
    # A's own headers count its own spending exactly.
    resp = draft(a, "ann")
    assert resp.status == 200
    assert int(resp.headers["x-quota-used"]) >= 4
    # Once both are idle past the block's lifetime they give their blocks
    # back, reporting what they spent: the usage endpoint is then exact.
    deadline = time.monotonic() + 10
    while usage(a, "ann")["used"] != 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert usage(a, "ann")["used"] == 6
    assert usage(b, "ann")["used"] == 6
    # A request after that hears the others' spending with its block.
    resp = draft(b, "ann")
    assert (resp.status, resp.headers["x-quota-used"], resp.headers["x-quota-remaining"]) == (200, "7", "93")
    # The releases were answered and taken as answers (none retried, none dropped).
    for proxy in (a, b):
        assert store_errors(proxy) == (0, 0)
        assert proxy.stats(filter=r"corrections_dropped").get("wasmcustom.quota.store.corrections_dropped", 0) == 0


def test_a_redis_outage_is_ridden_out_on_the_block_held_for_its_lifetime(envoy, redis_stack):
    redis, webdis = redis_stack()
    hard, fraction, lease_ms = 100, 0.2, 4000
    (proxy,) = envoys(envoy, webdis, lease_config(hard=hard, fraction=fraction, lease_ms=lease_ms,
                                                  on_error="fail_closed"), 1, concurrency=1)
    for _ in range(3):
        assert draft(proxy, "rio").status == 200
    redis.stop()
    # Within the block's lifetime, requests are admitted from it, never more than it holds.
    block = int(hard * fraction)
    admitted_during = 0
    statuses = []
    for _ in range(block + 5):
        status = draft(proxy, "rio").status
        statuses.append(status)
        if status == 200:
            admitted_during += 1
    assert 3 + admitted_during <= block, statuses
    assert admitted_during >= 1, statuses
    # A caller with no block is refused at once (fail closed).
    assert draft(proxy, "newcomer").status == 503
    # Past the lifetime, the fail policy applies to everyone.
    deadline = time.monotonic() + lease_ms / 1000 + 10
    while draft(proxy, "rio").status != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert draft(proxy, "rio").status == 503
    redis.start()
    deadline = time.monotonic() + 10
    while draft(proxy, "rio").status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert draft(proxy, "rio").status == 200
