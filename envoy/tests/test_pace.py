"""Callers far ahead of the window's pace are flagged, in a header and the usage endpoint."""

import json

from conftest import request
from quota_configs import CHAT, chat, one_class


def test_burning_through_a_long_window_early_is_flagged(envoy):
    config = one_class(hard=4, window="7d")
    config["tiers"]["free"]["limits"]["drafts"]["pace"] = {"used": 0.5, "before": 0.5}
    proxy = envoy(config)
    first = request(proxy, "POST", CHAT, headers={"x-user-id": "ama"}, json=chat())
    assert "x-quota-pace" not in first.headers
    second = request(proxy, "POST", CHAT, headers={"x-user-id": "ama"}, json=chat())
    assert second.headers["x-quota-pace"] == "ahead"
    usage = request(proxy, "GET", "/v1/quota", headers={"x-user-id": "ama"}).json()
    pace = usage["classes"][0]["pace"]
    assert pace["ahead"] is True
    assert pace["used_share"] == 0.5
    assert pace["message"].startswith("You've used 50% of your 4 drafts in this 7-day window, with ")
    assert "exhausted_at" in pace  # None here: both requests fell in the same second
    proxy.wait_for_log(r"quota-event \{\"event\":\"pace_ahead\"")
    events = [json.loads(line.split("quota-event ", 1)[1]) for line in proxy.log().splitlines() if "quota-event " in line]
    assert [e["event"] for e in events].count("pace_ahead") == 1
