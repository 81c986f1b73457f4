"""The ceiling holds against a hostile caller: for each way a caller tried to
be charged less, or elsewhere, the attack sent through real Envoy and what it
now gets (status, class, units charged, what the upstream received), beside a
control that shows the normal path still works."""

import http.client
import json
import socket
import time
import uuid

import harness
from conftest import request
from local_jwt import jwt, with_jwt_authn
from quota_configs import CHAT, chat, demo, one_class

FREE = {"x-user-id": "mallory"}


def fresh_id():
    return uuid.uuid4().hex


def seen(upstream, mock_id):
    """What of the requests sent with `x-mock-id: mock_id` reached the upstream."""
    return request(upstream, "GET", f"/__mock/seen/{mock_id}").json()


def used(proxy, user, cls="drafts", **headers):
    report = request(proxy, "GET", "/v1/quota", headers={"x-user-id": user, **headers}).json()
    return next(c for c in report["classes"] if c["class"] == cls).get("used")


def post(proxy, body, headers, path=CHAT):
    """POST raw bytes (json.dumps would refuse NaN or lone surrogates)."""
    return request(proxy, "POST", path, headers={"content-type": "application/json", **headers}, body=body)


# --- 1. A body the filter cannot read is never cheaper -----------------------


def test_a_body_padded_past_the_cap_is_refused_not_classified_cheaper(envoy, upstream):
    proxy = envoy(demo(), hold_headers=True)
    mock = fresh_id()
    padded = {"model": "o3-deep-research", "messages": [{"role": "user", "content": "x" * 300_000}]}
    resp = request(proxy, "POST", CHAT, headers={**FREE, "x-mock-id": mock}, json=padded)
    assert resp.status == 413, resp
    assert resp.json()["error"]["code"] == "body_too_large"
    assert "256 KB" in resp.json()["error"]["message"]
    assert seen(upstream, mock)["seen"] == 0
    # Control: the same model in a small body is refused as outside the plan,
    # and a plan model goes through as a draft.
    small = request(proxy, "POST", CHAT, headers={**FREE, "x-mock-id": mock}, json=chat("o3-deep-research"))
    assert (small.status, small.json()["error"]["code"]) == (403, "not_included_in_plan")
    ok = request(proxy, "POST", CHAT, headers={**FREE, "x-mock-id": mock}, json=chat())
    assert (ok.status, ok.headers["x-quota-class"]) == (200, "drafts")
    assert seen(upstream, mock) == {"seen": 1, "models": ["gpt-4o"]}


def test_json_that_upstreams_accept_is_read_as_they_read_it(envoy, upstream):
    proxy = envoy(demo(), hold_headers=True)
    mock = fresh_id()
    headers = {**FREE, "x-mock-id": mock}
    tricks = {
        "NaN": b'{"model": "o3-deep-research", "temperature": NaN, "messages": []}',
        "Infinity": b'{"model": "o3-deep-research", "top_p": -Infinity, "messages": []}',
        "lone surrogate": b'{"model": "o3-deep-research", "messages": [{"role": "user", "content": "\\ud800"}]}',
    }
    for name, body in tricks.items():
        resp = post(proxy, body, headers)
        assert (resp.status, resp.headers.get("x-quota-class")) == (403, "deep_research"), name
    # Deeper than the filter reads: refused, nothing forwarded.
    deep = b'{"model": "o3-deep-research", "messages": ' + b"[" * 200 + b"]" * 200 + b"}"
    resp = post(proxy, deep, headers)
    assert (resp.status, resp.json()["error"]["code"]) == (400, "unreadable_body"), resp
    assert seen(upstream, mock)["seen"] == 0
    # Control: the same lenient JSON with a plan model is a draft, forwarded as sent.
    resp = post(proxy, b'{"model": "gpt-4o", "temperature": NaN, "messages": []}', headers)
    assert (resp.status, resp.headers["x-quota-class"]) == (200, "drafts")
    assert seen(upstream, mock) == {"seen": 1, "models": ["gpt-4o"]}


def test_a_model_multiplier_cannot_be_skipped_by_an_unreadable_body(envoy):
    config = one_class(hard=20, hold_headers_for_body=True)
    config["classes"][0]["cost"] = {"fixed": 1, "models": {"o3": 5}}
    proxy = envoy(config, hold_headers=True)
    resp = post(proxy, b'{"model": "o3", "temperature": NaN, "messages": []}', {"x-user-id": "mo"})
    assert (resp.status, resp.headers["x-quota-cost"]) == (200, "5")
    padded = json.dumps({"model": "o3", "messages": [{"role": "user", "content": "x" * 300_000}]})
    assert post(proxy, padded, {"x-user-id": "mo"}).status == 413
    assert used(proxy, "mo") == 5
    # Control: a readable body is charged its multiplier.
    assert request(proxy, "POST", CHAT, headers={"x-user-id": "mo"}, json=chat("o3")).headers["x-quota-cost"] == "5"


def tokens_config(**top_level):
    config = one_class(hard=20_000, hold_headers_for_body=True, **top_level)
    config["classes"][0]["cost"] = {"tokens": {"default_max_tokens": 100}}
    return config


def test_a_padded_streamed_prompt_is_refused_and_usage_is_always_asked_for(envoy, upstream):
    proxy = envoy(tokens_config(), hold_headers=True)
    mock = fresh_id()
    headers = {"x-user-id": "tia", "x-mock-id": mock}
    padded = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "word " * 60_000}]}
    for _ in range(3):
        resp = request(proxy, "POST", CHAT, headers=headers, json=padded)
        assert (resp.status, resp.json()["error"]["code"]) == (413, "body_too_large")
    assert seen(upstream, mock)["seen"] == 0
    assert used(proxy, "tia") == 0
    # A client that tries to switch the usage report off still gets it asked
    # for: the counter ends at what the upstream reported (4 prompt words + 7).
    message = [{"role": "user", "content": "one two three four"}]
    for options in [None, {"include_usage": False}, "no"]:
        user = fresh_id()
        body = {"model": "gpt-4o", "stream": True, "messages": message, "stream_options": options}
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": user}, json=body)
        assert resp.status == 200 and b'"usage"' in resp.body, options
        assert used(proxy, user) == 4 + 7, options


# --- 2. Identity comes only from the token jwt_authn verified ----------------

def jwt_claim_envoy(upstream):
    """The README's jwt_claim setup: jwt_authn (forward: true) in front."""
    config = one_class(hard=2, tiers=("free", "enterprise"))
    config["identity"] = {"user": [{"jwt_claim": "sub"}], "tier": [{"jwt_claim": "plan"}], "default_tier": "free"}
    bootstrap = harness.render_bootstrap(upstream_port=upstream.port, filter_config=config)
    with_jwt_authn(bootstrap, forward=True)
    return harness.start_bootstrap(bootstrap)


def test_a_second_token_beside_the_verified_one_charges_nobody_else(upstream):
    proxy = jwt_claim_envoy(upstream)
    try:
        mine = jwt("mallory", "free")
        victim = jwt("victim", "enterprise", signed=False)
        mock = fresh_id()
        attacks = [
            [("authorization", f"{victim} Bearer {mine}")],
            [("authorization", f"Bearer {victim}"), ("authorization", f"Bearer {mine}")],
            [("authorization", f"Bearer {mine}"), ("authorization", f"Bearer {victim}")],
        ]
        for attack in attacks:
            resp = request(proxy, "POST", CHAT, headers=attack + [("x-mock-id", mock)], json=chat())
            assert resp.status == 401, (attack, resp)
            assert resp.headers.get("x-quota-tier") is None
        assert seen(upstream, mock)["seen"] == 0
        # Control: the verified token alone is mallory on the free tier.
        ok = request(proxy, "POST", CHAT, headers={"authorization": f"Bearer {mine}"}, json=chat())
        assert (ok.status, ok.headers["x-quota-tier"], ok.headers["x-quota-used"]) == (200, "free", "1")
        report = request(proxy, "GET", "/v1/quota", headers={"authorization": f"Bearer {jwt('victim', 'free')}"})
        assert report.json()["classes"][0]["used"] == 0
    finally:
        proxy.stop()


# --- 3. A caller's UTC offset never buys a fresh window ----------------------


def offset_with_midnight_at(boundary):
    """The UTC offset ("+HH:MM"/"-HH:MM") whose local midnight falls at `boundary`
    (a Unix time on a whole minute)."""
    minutes = (-(boundary // 60)) % 1440
    if minutes > 720:
        minutes -= 1440
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def test_choosing_an_offset_just_before_midnight_opens_no_short_windows(envoy):
    config = one_class(hard=2, calendar={"user_utc_offset": [{"header": "x-user-utc-offset"}]})
    proxy = envoy(config)
    # A day that ends at the next whole minute (at least 3 s away) in the caller's calendar.
    first_end = (int(time.time()) + 3) // 60 * 60 + 60
    headers = {"x-user-id": "owl", "x-user-utc-offset": offset_with_midnight_at(first_end)}
    assert [request(proxy, "POST", CHAT, headers=headers, json=chat()).status for _ in range(3)] == [200, 200, 429]
    time.sleep(max(0.0, first_end - time.time()) + 1)
    # The day really ended: a new one opens, but it lasts a whole day from where
    # the last one ended, whatever offset the caller now claims.
    for attempt in range(3):
        boundary = (int(time.time()) + 60) // 60 * 60 + 60 * attempt
        headers["x-user-utc-offset"] = offset_with_midnight_at(boundary)
        resp = request(proxy, "POST", CHAT, headers=headers, json=chat())
        assert resp.headers["x-quota-reset"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first_end + 86400))
        assert resp.status == (200 if attempt < 2 else 429)


# --- 4. Every cost is bounded -------------------------------------------------


def test_an_absurd_token_budget_is_refused_and_moves_no_stat(envoy):
    config = tokens_config(tiers=("free",))
    config["tiers"]["free"]["limits"]["drafts"].update({"at_hard": "overage"})
    proxy = envoy(config, hold_headers=True)
    body = {"model": "gpt-4o", "messages": [], "max_tokens": 18446744073709551615}
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "max"}, json=body)
    assert (resp.status, resp.json()["error"]["code"]) == (413, "request_too_large"), resp
    assert "retry-after" not in resp.headers
    assert used(proxy, "max") == 0
    # Control: an ordinary request is charged its estimate, and the stats stay sane.
    ok = request(proxy, "POST", CHAT, headers={"x-user-id": "max"}, json={"model": "gpt-4o", "max_tokens": 50})
    assert ok.status == 200
    # Once the control's request is in the stats (the refused one is counted as too large).
    counted = proxy.wait_for_stats(r"^wasmcustom\.quota\.drafts\.free\.(requests|too_large|units)$",
                                   lambda s: s.get("wasmcustom.quota.drafts.free.requests") == 1
                                   and s.get("wasmcustom.quota.drafts.free.too_large") == 1)
    assert counted["wasmcustom.quota.drafts.free.requests"] == 1, counted
    units = counted["wasmcustom.quota.drafts.free.units"]
    assert 0 < units <= 20_000


# --- 5. Odd spellings of a path are still metered -----------------------------

ODD_PATHS = ["/v1/chat/%63ompletions", "//v1/chat/completions", "/v1/chat/./completions",
             "/v1/chat/completions/", "/v1/chat/x/../completions", "/v1/chat%2Fcompletions"]


def test_odd_spellings_of_a_metered_path_are_metered(envoy):
    for normalize in (True, False):
        proxy = envoy(demo(), hold_headers=True, normalize_paths=normalize)
        user = fresh_id()
        for i, path in enumerate(ODD_PATHS, start=1):
            resp = request(proxy, "POST", path, headers={"x-user-id": user}, json=chat())
            assert (resp.headers.get("x-quota-class"), resp.headers.get("x-quota-used")) == ("drafts", str(i)), \
                (normalize, path, resp)
        # Control: a path no class names passes untouched.
        assert "x-quota-class" not in request(proxy, "GET", "/v1/models", headers={"x-user-id": user}).headers


# --- 6. Refunds only when the upstream did not do the work --------------------


def test_a_client_that_hangs_up_after_forwarding_keeps_its_charge(envoy, upstream):
    proxy = envoy(one_class(hard=5))
    mock = fresh_id()
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=0.5)
    body = json.dumps(chat())
    conn.request("POST", CHAT, body=body, headers={"x-user-id": "hal", "content-type": "application/json",
                                                   "x-mock-delay-ms": "1500", "x-mock-id": mock})
    try:
        conn.getresponse()
        raise AssertionError("the slow upstream answered within the client's timeout")
    except (socket.timeout, TimeoutError):
        pass
    conn.close()
    deadline = time.time() + 5
    while seen(upstream, mock)["seen"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    # Envoy saw the client leave mid-request: the stream has ended (its log
    # callback, where a refund would happen, runs on the same event).
    left = "http.ingress_http.downstream_cx_destroy_remote_active_rq"
    while proxy.stats(left).get(left, 0) == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert proxy.stats(left)[left] == 1
    assert seen(upstream, mock)["seen"] == 1
    assert used(proxy, "hal") == 1
    # Controls: an upstream that refuses the request gives the unit back.
    refused = request(proxy, "POST", CHAT, headers={"x-user-id": "hal", "x-mock-status": "503"}, json=chat())
    assert refused.status == 503
    assert used(proxy, "hal") == 1


def test_a_request_that_never_reached_an_upstream_is_refunded(envoy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    proxy = envoy(one_class(hard=5), upstream_port=closed_port)
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "una"}, json=chat())
    assert resp.status == 503
    assert used(proxy, "una") == 0


# --- 7. Pools follow their members, not the caller's shape --------------------


def test_a_member_without_a_workspace_gets_no_private_copy_of_the_pool(envoy, upstream):
    proxy = envoy(one_class(hard=2, scope="workspace"))
    mock = fresh_id()
    resp = request(proxy, "POST", CHAT, headers={"x-user-id": "sol", "x-mock-id": mock}, json=chat())
    assert (resp.status, resp.json()["error"]["code"]) == (403, "workspace_required"), resp
    assert seen(upstream, mock)["seen"] == 0
    # Control: with the workspace, the pool counts.
    ok = request(proxy, "POST", CHAT, headers={"x-user-id": "sol", "x-workspace-id": "acme"}, json=chat())
    assert (ok.status, ok.headers["x-quota-scope"], ok.headers["x-quota-used"]) == (200, "workspace", "1")


def test_a_pool_with_two_windows_is_refused_at_startup(envoy_expect_failure):
    config = one_class(hard=5, scope="workspace", tiers=("team", "enterprise"))
    config["tiers"]["enterprise"]["limits"]["drafts"]["window"] = "hour"
    log = envoy_expect_failure(config)
    assert "tiers.enterprise.limits.drafts.window" in log
