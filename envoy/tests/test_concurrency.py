"""A hard limit of N admits exactly N across Envoy's workers: the counters are
shared by every worker's VM and updated with compare-and-swap."""

import http.client
import json
import threading
from collections import Counter

from quota_configs import CHAT, chat, one_class

LIMIT = 300
REQUESTS = 1200
CLIENTS = 48


def hammer(port, per_client, results):
    body = json.dumps(chat())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(per_client):
            conn.request("POST", CHAT, body=body, headers={"x-user-id": "crowd", "content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            results.append(resp.status)
    finally:
        conn.close()


def test_exactly_the_hard_limit_is_admitted_under_parallel_load(envoy):
    proxy = envoy(one_class(hard=LIMIT), concurrency=2)
    results = []
    threads = [threading.Thread(target=hammer, args=(proxy.port, REQUESTS // CLIENTS, results)) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(results) == {200: LIMIT, 429: REQUESTS - LIMIT}
    # Both workers served connections, so the count crossed VMs.
    workers = proxy.stats(filter=r"worker_\d+\.downstream_cx_total")
    assert len([v for v in workers.values() if v > 0]) == 2, workers
