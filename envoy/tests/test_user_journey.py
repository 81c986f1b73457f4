"""A free user's day: warned twice before the wall, then a block that names
the class, when it resets and what an upgrade gives; one event per crossing."""

import json
import re

from conftest import request
from quota_configs import CHAT, chat, demo


def test_a_free_user_is_warned_twice_before_the_block(envoy):
    proxy = envoy(demo(), hold_headers=True)
    warnings = []
    for _ in range(10):
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": "uma"}, json=chat())
        assert resp.status == 200
        if "x-quota-warning" in resp.headers:
            warnings.append(resp.headers["x-quota-warning"])
    # Warned from the soft limit (5th draft) on; the texts change as the wall nears.
    assert len(warnings) == 6
    assert warnings[0].startswith("You've used 5 of your 10 drafts for today. They reset in ")
    assert warnings[-2].startswith("You have 1 draft left for today.")
    assert warnings[-1].startswith("That was the last of your 10 drafts for today.")
    assert len(set(warnings)) >= 5

    blocked = request(proxy, "POST", CHAT, headers={"x-user-id": "uma"}, json=chat())
    assert blocked.status == 429
    message = blocked.json()["error"]["message"]
    # "4 h 12 min" most of the day, "45 min" in its last hour, "30 s" in its last minute.
    assert re.fullmatch(r"You've used your 10 drafts for today\. They reset in "
                        r"(\d+ h( \d+ min)?|\d+ min|\d+ s)\. "
                        r"Pro includes 100 a day: https://example\.com/upgrade\?plan=pro", message), message
    assert blocked.json()["error"]["quota"]["reset"] == blocked.headers["x-quota-reset"]

    # Each threshold is reported once, as a structured event.
    events = [json.loads(line.split("quota-event ", 1)[1])
              for line in proxy.wait_for_log(r"quota-event \{\"event\":\"blocked\"") and proxy.log().splitlines()
              if "quota-event " in line]
    assert [(e["event"], e.get("level"), e.get("at")) for e in events] == [
        ("warned", 0, 5), ("warned", 1, 7), ("blocked", None, None)]


def test_copy_can_be_overridden_per_tier(envoy):
    config = demo()
    config["tiers"]["free"]["copy"] = {
        "blocked": "That's all {count_limit} on {tier} {window}: back in {reset_in}. {next_tier} has {next_limit}.",
        "warning": "{count_remaining} left {window}.",
    }
    proxy = envoy(config, hold_headers=True)
    for i in range(10):
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": "vic"}, json=chat())
    assert resp.headers["x-quota-warning"] == "0 drafts left for today."
    blocked = request(proxy, "POST", CHAT, headers={"x-user-id": "vic"}, json=chat())
    assert re.fullmatch(r"That's all 10 drafts on Free for today: back in .+\. Pro has 100\.",
                        blocked.json()["error"]["message"])
    # Pro keeps the default copy.
    pro = request(proxy, "POST", CHAT, headers={"x-user-id": "wes", "x-plan": "pro"}, json=chat())
    assert "x-quota-warning" not in pro.headers
