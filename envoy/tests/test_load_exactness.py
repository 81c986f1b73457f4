"""Exactness under load: two workers, 64 connections, a hard limit of 1,000
admits exactly 1,000 of 5,000 requests, ten times over."""

import threading
from collections import Counter

from conftest import hammer
from quota_configs import one_class

LIMIT, REQUESTS, CONNECTIONS, ROUNDS = 1000, 5000, 64, 10


def test_a_hard_limit_of_1000_admits_exactly_1000_every_round(envoy):
    proxy = envoy(one_class(hard=LIMIT), concurrency=2)
    per_connection = [REQUESTS // CONNECTIONS + (1 if i < REQUESTS % CONNECTIONS else 0) for i in range(CONNECTIONS)]
    for round_ in range(ROUNDS):
        results, lock = [], threading.Lock()
        user = f"load-{round_}"
        threads = [threading.Thread(target=hammer, args=(proxy.port, user, n, results, lock)) for n in per_connection]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert Counter(results) == {200: LIMIT, 429: REQUESTS - LIMIT}, f"round {round_}"
    workers = proxy.stats(filter=r"worker_\d+\.downstream_cx_total")
    assert len([v for v in workers.values() if v > 0]) == 2, workers
