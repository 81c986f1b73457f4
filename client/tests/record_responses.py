#!/usr/bin/env python3
"""Records real responses of Envoy with the quota filter and the demo matrix
(envoy/demo-config.json) into client/tests/recorded.json, for the Node tests
of the client package (client/tests/*.test.mjs).

    make build && .venv/bin/python client/tests/record_responses.py

Each entry: the request sent, and the status, headers (as received, in order)
and body of the response. Times in them are those of the recording.
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


def main():
    config = (harness.REPO_ROOT / "envoy" / "demo-config.json").read_text()
    recorded = {}
    with harness.start_mock_upstream() as upstream, \
            harness.start_envoy(config, upstream_port=upstream.port, hold_headers=True) as envoy:
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
    OUT.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"wrote {len(recorded)} responses to {OUT}")


if __name__ == "__main__":
    main()
