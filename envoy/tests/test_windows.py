"""Windows really reset: a short first-use window in real time."""

import time

from conftest import request
from quota_configs import CHAT, chat, one_class


def test_a_first_use_window_resets_after_its_length(envoy):
    proxy = envoy(one_class(hard=2, window="3s"))
    send = lambda: request(proxy, "POST", CHAT, headers={"x-user-id": "rae"}, json=chat())  # noqa: E731
    first = send()
    assert first.headers["ratelimit-policy"] == '"drafts";q=2;w=3'
    assert send().status == 200
    blocked = send()
    assert blocked.status == 429
    wait = int(blocked.headers["retry-after"])
    assert 1 <= wait <= 3
    assert "in this 3-second window" in blocked.json()["error"]["message"]
    time.sleep(wait + 0.2)
    again = send()
    assert (again.status, again.headers["x-quota-used"]) == (200, "1")
