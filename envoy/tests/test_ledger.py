"""The ledger through real Envoy: one line of JSON per classified request in
the connection manager's access log (harness.LEDGER_FORMAT), read back and
checked field by field after a short day on the demo matrix: a free user
warned twice and blocked, an upgrade, a premium chat streamed and another
answered whole (metered in tokens, priced in dollars), a refund, a busy
upstream, a refusal outside the plan, a client that leaves, an unclassified request (no record),
hostile ids and models, and a config that hashes ids."""

import json
import math
import socket
import time

import harness
from conftest import request, sse_events
from quota_configs import CHAT, demo
from test_observability import Collector, analytics_cluster, wait_for

PREMIUM = "/v1/premium/chat/completions"
CONTENT = "one two three four five six seven eight"  # the mock counts 8 prompt tokens
GPT_4O = (2_500_000, 10_000_000)  # the demo's gpt-4o prices: micro-dollars a million tokens (input, output)


def priced(input_tokens, output_tokens):
    """Micro-dollars for gpt-4o, as the filter prices them (rounded up once)."""
    return math.ceil((input_tokens * GPT_4O[0] + output_tokens * GPT_4O[1]) / 1_000_000)


def reserved(max_tokens):
    # The prompt estimated at 4 characters a token, the completion budget at the output price.
    return priced(math.ceil(len(CONTENT) / 4), max_tokens)


def records(path):
    """The access log's lines: a dict per ledger record, None for a `-`
    (a request the filter did not classify)."""
    lines = path.read_text().splitlines()
    return [None if line == "-" else json.loads(line) for line in lines]


def by_request_id(lines):
    found = {}
    for record in lines:
        if record is not None and "request_id" in record:
            assert record["request_id"] not in found, record
            found[record["request_id"]] = record
    return found


def post(proxy, path, rid, user, body, **headers):
    headers = {"x-user-id": user, "x-request-id": rid, **headers}
    return request(proxy, "POST", path, headers=headers, json=body)


def chat_body(model="gpt-4o", **more):
    return {"model": model, "messages": [{"role": "user", "content": CONTENT}], **more}


def wait_seen(upstream, mock_id, timeout=10.0):
    """Polls the mock until a request tagged `mock_id` reached it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if request(upstream, "GET", f"/__mock/seen/{mock_id}").json()["seen"]:
            return
        time.sleep(0.02)
    raise AssertionError(f"{mock_id} never reached the upstream")


def stop_when_logged(proxy, timeout=10.0):
    """Stops Envoy once every request it took is done (logged: the
    connection manager counts a stream active until after its access logs
    ran), so the file holds every line: Envoy writes what it buffered as it
    stops."""
    deadline = time.monotonic() + timeout
    while proxy.stats(filter="downstream_rq_active").get("http.ingress_http.downstream_rq_active", 0):
        assert time.monotonic() < deadline, "requests still active"
        time.sleep(0.02)
    proxy.stop()


def leave_early(proxy, upstream, rid, user):
    """Sends a draft the upstream answers slowly, and hangs up once the
    upstream has it."""
    body = json.dumps(chat_body()).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nhost: quota.test\r\nx-user-id: {user}\r\nx-request-id: {rid}\r\n"
            f"x-mock-id: {rid}\r\nx-mock-delay-ms: 3000\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head + body)
        wait_seen(upstream, rid)


def test_a_day_on_the_demo_matrix_is_in_the_access_log_record_by_record(envoy, upstream, tmp_path):
    log = tmp_path / "ledger.log"
    proxy = envoy(demo(), hold_headers=True, access_log_path=log)

    # A free user: ten drafts (warned at the 5th and the 7th), then the wall.
    statuses = [post(proxy, CHAT, f"ana-{i}", "ana", chat_body()).status for i in range(1, 12)]
    assert statuses == [200] * 10 + [429]
    # Not part of the free plan.
    assert post(proxy, "/v1/research", "ana-research", "ana", chat_body()).status == 403
    # The upgrade: the same user on pro.
    assert post(proxy, CHAT, "ana-pro", "ana", chat_body(), **{"x-plan": "pro"}).status == 200
    # Premium chats on pro, priced in dollars from the tokens the upstream reports.
    streamed = post(proxy, PREMIUM, "ana-stream", "ana", chat_body(stream=True, max_tokens=50),
                    **{"x-plan": "pro", "x-mock-chunk-delay-ms": "0"})
    assert streamed.status == 200 and sse_events(streamed.body)[-1] == "[DONE]"
    whole = post(proxy, PREMIUM, "ana-whole", "ana", chat_body(max_tokens=50),
                 **{"x-plan": "pro", "x-mock-completion-tokens": "40"})
    assert whole.status == 200
    # The upstream fails a draft: it is given back.
    assert post(proxy, CHAT, "cy-500", "cy", chat_body(), **{"x-mock-status": "500"}).status == 500
    # The upstream is busy: its capacity, not the caller's quota; given back too.
    assert post(proxy, CHAT, "cy-busy", "cy", chat_body(), **{"x-mock-status": "529"}).status == 529
    # Not classified: the usage endpoint and another route.
    assert request(proxy, "GET", "/v1/quota", headers={"x-user-id": "ana"}).status == 200
    assert request(proxy, "GET", "/v1/models", headers={"x-user-id": "ana"}).status == 200
    # A client that leaves once the upstream has its draft.
    leave_early(proxy, upstream, "dee-left", "dee")
    stop_when_logged(proxy)

    lines = records(log)
    found = by_request_id(lines)
    # Two lines without a record (the unclassified requests), one per other request.
    assert lines.count(None) == 2
    assert len(lines) == len(found) + 2 == 20

    drafts = [found[f"ana-{i}"] for i in range(1, 12)]
    assert [(r["status"], r["state"], r.get("warning_level"), r.get("warned", False), r.get("upgrade_to"))
            for r in drafts] == [
        (200, "ok", None, False, None)] * 4 + [
        (200, "warning", 0, True, "pro"),
        (200, "warning", 0, False, "pro"),
        (200, "warning", 1, True, "pro")] + [
        (200, "warning", 1, False, "pro")] * 3 + [
        (429, "blocked", 1, False, "pro")]
    first, wall = drafts[0], drafts[-1]
    assert set(first) == {"v", "time", "request_id", "user", "tier", "class", "method", "route", "model_asked",
                          "model_served", "units_requested", "units_charged", "units_settled", "status",
                          "upstream_status", "upstream_reached", "state", "duration_ms"}, first
    assert (first["v"], first["user"], first["tier"], first["class"], first["method"], first["route"]) == (
        1, "ana", "free", "drafts", "POST", CHAT)
    assert (first["model_asked"], first["model_served"]) == ("gpt-4o", "gpt-4o")
    assert (first["units_requested"], first["units_charged"], first["units_settled"]) == (1, 1, 1)
    assert (first["upstream_status"], first["upstream_reached"]) == (200, True)
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-03T09:15:02.250Z")
    assert isinstance(first["duration_ms"], int) and first["duration_ms"] >= 0
    assert (wall["units_requested"], wall["units_charged"], wall["units_settled"]) == (1, 0, 0)
    assert (wall["upstream_reached"], "upstream_status" in wall) == (False, False)

    research = found["ana-research"]
    assert (research["class"], research["status"], research["state"], research["upgrade_to"],
            research["units_charged"], research["upstream_reached"]) == (
        "deep_research", 403, "not_included", "pro", 0, False)

    upgraded = found["ana-pro"]
    assert (upgraded["tier"], upgraded["class"], upgraded["state"], upgraded["status"]) == ("pro", "drafts", "ok", 200)

    stream = found["ana-stream"]
    assert (stream["class"], stream["tier"], stream["stream"], stream["currency"]) == ("premium_chat", "pro", True, "USD")
    assert stream["tokens"] == {"input": 8, "output": 7, "cached_input": 0, "reasoning": 0}
    assert (stream["units_requested"], stream["units_charged"], stream["units_settled"]) == (
        reserved(50), reserved(50), priced(8, 7))
    assert (stream["model_asked"], stream["model_served"], stream["upstream_status"]) == ("gpt-4o", "gpt-4o", 200)

    answered = found["ana-whole"]
    assert "stream" not in answered
    assert answered["tokens"] == {"input": 8, "output": 40, "cached_input": 0, "reasoning": 0}
    assert (answered["units_charged"], answered["units_settled"]) == (reserved(50), priced(8, 40))

    refunded = found["cy-500"]
    assert (refunded["status"], refunded["upstream_status"], refunded["upstream_reached"]) == (500, 500, True)
    assert (refunded["units_charged"], refunded["units_settled"], refunded["state"]) == (1, 0, "ok")

    busy = found["cy-busy"]
    assert (busy["status"], busy["upstream_status"], busy["state"]) == (529, 529, "busy")
    assert (busy["units_charged"], busy["units_settled"]) == (1, 0)

    left = found["dee-left"]
    # No answer reached the client; the upstream had the draft, so it stays charged.
    assert (left["status"], "upstream_status" in left, left["upstream_reached"]) == (0, False, True)
    assert (left["units_charged"], left["units_settled"]) == (1, 1)


def test_hostile_ids_and_models_stay_one_bounded_record_each(envoy, tmp_path):
    log = tmp_path / "ledger.log"
    proxy = envoy(demo(), hold_headers=True, access_log_path=log)
    user = 'eve"},{"user":"root","units_settled":0,"x":"\\'
    model = 'gpt-4o"\n{"injected": true}\u2028\u0085'
    assert post(proxy, CHAT, "eve-1", user, chat_body(model=model)).status == 200
    huge = "m" * 100_000
    assert post(proxy, CHAT, "eve-2", "eve", chat_body(model=huge)).status == 200
    stop_when_logged(proxy)

    raw = log.read_bytes()
    # Two requests, two lines, every byte of them printable: the JSON escapes the rest.
    assert raw.count(b"\n") == 2
    text = raw.decode()
    assert len(text.splitlines()) == 2, text  # str.splitlines breaks at U+2028 and U+0085 too
    found = by_request_id(records(log))
    assert (found["eve-1"]["user"], found["eve-1"]["model_asked"]) == (user, model)
    assert "x" not in found["eve-1"] and found["eve-1"]["units_settled"] == 1
    bounded = found["eve-2"]["model_asked"]
    assert bounded == "m" * 256 + "…"
    assert len(text.splitlines()[1]) < 2048


def test_hashed_ids_are_hashed_in_the_ledger(envoy, tmp_path):
    log = tmp_path / "ledger.log"
    hashed = demo(observability={"ids": "hashed", "id_salt": "ledger-test-salt"})
    proxy = envoy(hashed, hold_headers=True, access_log_path=log)
    for rid, user in [("h-1", "ana"), ("h-2", "ana"), ("h-3", "bo")]:
        assert post(proxy, CHAT, rid, user, chat_body(), **{"x-workspace-id": "acme"}).status == 200
    stop_when_logged(proxy)

    found = by_request_id(records(log))
    users = [found[rid]["user"] for rid in ("h-1", "h-2", "h-3")]
    for shown in users + [found["h-1"]["workspace"]]:
        assert len(shown) == 16 and all(c in "0123456789abcdef" for c in shown), shown
    # Stable per id, distinct between ids, never the id itself.
    assert users[0] == users[1] != users[2]
    assert "ana" not in log.read_text() and "acme" not in log.read_text()


def test_a_ledger_turned_off_writes_no_record(envoy, tmp_path):
    log = tmp_path / "ledger.log"
    proxy = envoy(demo(observability={"ledger": False}), hold_headers=True, access_log_path=log)
    assert post(proxy, CHAT, "off-1", "ana", chat_body()).status == 200
    assert request(proxy, "POST", "/v1/research", headers={"x-user-id": "ana"}, json=chat_body()).status == 403
    stop_when_logged(proxy)
    assert log.read_text() == "-\n-\n"


def test_records_are_posted_to_the_analytics_cluster_when_asked(envoy, tmp_path):
    log = tmp_path / "ledger.log"
    collector = Collector()
    try:
        config = demo(observability={"ledger_analytics": True, "log_events": False,
                                     "analytics": {"cluster": "analytics", "path": "/events", "flush_ms": 50}})
        proxy = envoy(config, hold_headers=True, access_log_path=log,
                      extra_clusters=[analytics_cluster(collector.server_address[1])])
        for i in range(1, 4):
            assert post(proxy, CHAT, f"an-{i}", "ana", chat_body()).status == 200
        assert request(proxy, "GET", "/v1/models").status == 200
        assert wait_for(lambda: len(collector.events) >= 3), collector.events
        stop_when_logged(proxy)
    finally:
        collector.shutdown()
    posted = {e["request_id"]: e for e in collector.events}
    assert [e["event"] for e in collector.events] == ["ledger"] * 3
    # The same record the access log holds, marked as a ledger event.
    for rid, record in by_request_id(records(log)).items():
        assert posted[rid] == {"event": "ledger", **record}


EXAMPLE = harness.REPO_ROOT / "envoy" / "examples" / "ledger.yaml"


def test_the_example_config_logs_only_classified_requests(upstream, wasm_path, tmp_path):
    """envoy/examples/ledger.yaml with the test's ports and paths: its file
    sink gets one record per classified request and nothing else. (Its
    OpenTelemetry and gRPC sinks point at a port nothing listens on: Envoy
    accepts them and drops what it cannot send.)"""
    log = tmp_path / "ledger.log"
    text = EXAMPLE.read_text()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = closed.getsockname()[1]
    for old, new in [("port_value: 9901", "port_value: 0"),
                     ("address: 0.0.0.0, port_value: 10000", "address: 127.0.0.1, port_value: 0"),
                     ("port_value: 8000", f"port_value: {upstream.port}"),
                     ("port_value: 4317", f"port_value: {nowhere}"),
                     ("port_value: 9001", f"port_value: {nowhere}"),
                     ("path: /tmp/quota-ledger.log", f"path: {log}"),
                     ("filename: target/wasm32-wasip1/release/quota_filter.wasm", f"filename: {wasm_path}")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    proxy = harness.start_bootstrap({}, extra_args=["--config-yaml", text])
    try:
        assert post(proxy, CHAT, "ex-1", "ana", chat_body()).status == 200
        assert request(proxy, "GET", "/v1/models").status == 200
        stop_when_logged(proxy)
    finally:
        proxy.stop()
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert (record["request_id"], record["class"], record["status"], record["units_charged"]) == ("ex-1", "drafts", 200, 1)
    assert record["user"] != "ana" and len(record["user"]) == 16  # the example hashes ids
