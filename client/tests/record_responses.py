#!/usr/bin/env python3
"""Records real responses of Envoy with the quota filter and the demo matrix
(envoy/demo-config.json) into client/tests/recorded.json, for the Node tests
of the client package (client/tests/*.test.mjs).

    make build && .venv/bin/python client/tests/record_responses.py

Each entry: the request sent, and the status, headers (as received, in order)
and body of the response. Times in them are those of the recording.

The `stacked_*` entries come from a second Envoy whose matrix is the demo's
with two stacked cells (see stacked_config): on the Team plan, drafts from a
pool of 6 a day of which a member may use 4; on Pro, summaries capped at 3
every 5 hours and 5 a week.
"""

import http.client
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "envoy"))
import harness  # noqa: E402

OUT = HERE / "recorded.json"
DRAFT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Draft a note."}]}


def send(envoy, method, path, headers, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", envoy.port, timeout=10)
    try:
        data = json.dumps(body) if body is not None else None
        sent = dict(headers)
        if data is not None:
            sent["content-type"] = "application/json"
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        return {
            "request": {"method": method, "path": path, "headers": sent, "body": body},
            "status": resp.status,
            "headers": [[name, value] for name, value in resp.getheaders()],
            "body": resp.read().decode(),
        }
    finally:
        conn.close()


def record_demo(envoy, recorded):
    dana = {"x-user-id": "dana"}
    names = {1: "draft_ok", 5: "draft_first_warning", 9: "draft_one_left", 10: "draft_last",
             11: "draft_blocked"}
    for i in range(1, 12):
        resp = send(envoy, "POST", "/v1/chat/completions", dana, DRAFT)
        if i in names:
            recorded[names[i]] = resp
    recorded["draft_blocked_problem"] = send(
        envoy, "POST", "/v1/chat/completions",
        {**dana, "accept": "application/problem+json"}, DRAFT)
    recorded["draft_blocked_html"] = send(
        envoy, "POST", "/v1/chat/completions", {**dana, "accept": "text/html"}, DRAFT)
    recorded["usage_free_blocked"] = send(envoy, "GET", "/v1/quota", dana)
    recorded["research_not_included"] = send(
        envoy, "POST", "/v1/research/start", {"x-user-id": "erin"}, {"topic": "t"})
    recorded["research_pro"] = send(
        envoy, "POST", "/v1/research/start", {"x-user-id": "erin", "x-plan": "pro"},
        {"topic": "t"})
    recorded["usage_pro"] = send(
        envoy, "GET", "/v1/quota", {"x-user-id": "erin", "x-plan": "pro"})
    recorded["draft_team_pooled"] = send(
        envoy, "POST", "/v1/chat/completions",
        {"x-user-id": "carol", "x-plan": "team", "x-workspace-id": "acme"}, DRAFT)
    recorded["unclassified"] = send(envoy, "GET", "/v1/models", dana)


def stacked_config(demo):
    """The demo matrix (as text) with two cells made of several limits."""
    config = json.loads(demo)
    tiers = config["tiers"]
    tiers["team"]["limits"]["drafts"] = [
        {"scope": "workspace", "soft": 4, "hard": 6, "window": "day"},
        {"scope": "user", "hard": 4, "window": "day"},
    ]
    tiers["pro"]["limits"]["summaries"] = [
        {"soft": 2, "hard": 3, "window": "5h"},
        {"hard": 5, "window": "week"},
    ]
    return config


def record_stacked(envoy, recorded):
    def member(user):
        return {"x-user-id": user, "x-plan": "team", "x-workspace-id": "acme"}

    def drafts(user, n, **extra):
        for _ in range(n):
            resp = send(envoy, "POST", "/v1/chat/completions", {**member(user), **extra}, DRAFT)
        return resp

    # Alice reaches her own cap of 4 while the team still has 2.
    recorded["stacked_member_ok"] = drafts("alice", 1)
    recorded["stacked_member_last"] = drafts("alice", 3)
    recorded["stacked_member_blocked"] = drafts("alice", 1)
    recorded["stacked_member_blocked_problem"] = drafts(
        "alice", 1, accept="application/problem+json")
    recorded["stacked_usage_member"] = send(envoy, "GET", "/v1/quota", member("alice"))
    # Bob's first leaves the team 1; his third finds the pool empty.
    recorded["stacked_pool_warning"] = drafts("bob", 1)
    drafts("bob", 1)
    recorded["stacked_pool_blocked"] = drafts("bob", 1)
    recorded["stacked_usage_pool"] = send(envoy, "GET", "/v1/quota", member("carol"))
    # Summaries on Pro: 3 every 5 hours, 5 a week.
    erin = {"x-user-id": "erin", "x-plan": "pro"}
    summary = {"text": "A long thread."}
    recorded["stacked_windows_ok"] = send(envoy, "POST", "/v1/summaries", erin, summary)
    for _ in range(3):
        resp = send(envoy, "POST", "/v1/summaries", erin, summary)
    recorded["stacked_windows_blocked"] = resp
    recorded["stacked_usage_windows"] = send(envoy, "GET", "/v1/quota", erin)


def main():
    config = (harness.REPO_ROOT / "envoy" / "demo-config.json").read_text()
    recorded = {}
    with harness.start_mock_upstream() as upstream:
        with harness.start_envoy(config, upstream_port=upstream.port, hold_headers=True) as envoy:
            record_demo(envoy, recorded)
        with harness.start_envoy(stacked_config(config), upstream_port=upstream.port,
                                 hold_headers=True) as envoy:
            record_stacked(envoy, recorded)
    OUT.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"wrote {len(recorded)} responses to {OUT}")


if __name__ == "__main__":
    main()
