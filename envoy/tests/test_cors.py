"""A browser app on another origin than the API: Envoy's CORS filter in front
of the quota filter, as envoy/examples/cors.yaml configures it.

Every test runs that file itself (through Envoy's --config-yaml), with only
its ports, the allowed origin and the .wasm path swapped for the test's, and
for some tests one line changed on purpose (named where it is done), so the
README's example is what was tested.

What is proved: preflights are answered by Envoy and never classified,
charged or refused for identity, whatever identity headers they carry; every
answer to an allowed origin carries Access-Control-Allow-Origin and the
expose list, the quota filter's own answers (usage endpoint, 429, 401)
included; CORS is not an auth boundary (an origin the policy does not allow
is counted and refused like any caller); and in headless Chromium
(client/tests/browser/cross_origin.mjs) a page on a second origin draws the
meters from the API's headers, or, without expose_headers, says the headers
are hidden rather than "not classified". Screenshots: target/screenshots/.
"""

import json
import os
import subprocess
from http.server import ThreadingHTTPServer

import pytest

from conftest import request
from local_jwt import PAYLOAD, jwt, with_jwt_authn
import harness

EXAMPLE = harness.REPO_ROOT / "envoy" / "examples" / "cors.yaml"
PAGE_DIR = harness.REPO_ROOT / "envoy" / "examples" / "cors-page"
SCRIPT = harness.REPO_ROOT / "client" / "tests" / "browser" / "cross_origin.mjs"
PLAYWRIGHT = harness.REPO_ROOT / "client" / "node_modules" / "playwright-core"
SCREENSHOTS = harness.REPO_ROOT / "target" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# The example's own origin; the tests allow theirs instead.
EXAMPLE_ORIGIN = "https://app.example.com"
APP = "http://127.0.0.1:4100"
FOREIGN = "http://evil.example"
CHAT = "/v1/chat/completions"
USAGE = "/v1/quota"


def example(*, origin, upstream_port, expose=True, forward_foreign_preflights=False, default_class=None,
            jwt_authn=False, cors_after_quota=False):
    """envoy/examples/cors.yaml with the test's ports, origin and .wasm.
    expose=False drops its expose_headers line; forward_foreign_preflights
    sets forward_not_matching_preflights to true (Envoy's default);
    default_class makes the filter classify every request, so that any
    request reaching it is charged; jwt_authn puts Envoy's jwt_authn
    (trusting local_jwt's key) between the CORS and the quota filter, and
    takes the caller from the verified token instead of x-user-id;
    cors_after_quota moves the CORS filter just before the router."""
    text = EXAMPLE.read_text()

    def swap(old, new):
        nonlocal text
        assert text.count(old) == 1, f"{old!r} is not in {EXAMPLE} exactly once"
        text = text.replace(old, new)

    swap("address: 127.0.0.1, port_value: 9901", "address: 127.0.0.1, port_value: 0")
    swap("address: 0.0.0.0, port_value: 10000", "address: 127.0.0.1, port_value: 0")
    swap("address: 127.0.0.1, port_value: 8000", f"address: 127.0.0.1, port_value: {upstream_port}")
    swap(f"- exact: {EXAMPLE_ORIGIN}", f"- exact: {origin}")
    swap("filename: target/wasm32-wasip1/release/quota_filter.wasm", f"filename: {harness.DEFAULT_WASM}")
    if not expose:
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if not line.lstrip().startswith("expose_headers:")]
        assert len(kept) == len(lines) - 1, "one expose_headers line"
        text = "".join(kept)
    if forward_foreign_preflights:
        swap("forward_not_matching_preflights: false", "forward_not_matching_preflights: true")
    if default_class:
        swap('"usage_endpoint": "/v1/quota"', f'"usage_endpoint": "/v1/quota", "default_class": "{default_class}"')
    if jwt_authn:
        swap('"user": [{ "header": "x-user-id" }]', f'"user": [{{ "property": {json.dumps(PAYLOAD + ["sub"])} }}]')
        swap('"tier": [{ "header": "x-plan" }]', f'"tier": [{{ "property": {json.dumps(PAYLOAD + ["plan"])} }}]')
        chain = {"static_resources": {"listeners": [{"filter_chains": [{"filters": [
            {"typed_config": {"http_filters": []}}]}]}]}}
        (verifier,) = with_jwt_authn(chain, payload_in_metadata="jwt_payload")[
            "static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
        wasm = "          - name: envoy.filters.http.wasm\n"
        swap(wasm, f"          - {json.dumps(verifier)}\n{wasm}")
    if cors_after_quota:
        cors = ("          - name: envoy.filters.http.cors\n"
                "            typed_config:\n"
                '              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n')
        router = "          - name: envoy.filters.http.router\n"
        swap(cors, "")
        swap(router, cors + router)
    return text


def exposed_list():
    """The example's expose_headers, as names."""
    (line,) = [l for l in EXAMPLE.read_text().splitlines() if l.lstrip().startswith("expose_headers:")]
    return [name.strip() for name in line.split(":", 1)[1].split(",")]


@pytest.fixture
def cors_envoy(request, upstream):
    """Factory: cors_envoy(origin=APP, **example kwargs) -> EnvoyProcess
    running the example in front of the mock upstream."""
    started = []

    def start(origin=APP, **kwargs):
        request.getfixturevalue("wasm_path")  # fails naming `make build` when missing
        text = example(origin=origin, upstream_port=upstream.port, **kwargs)
        # The whole bootstrap is the YAML; Envoy merges it over an empty one.
        proxy = harness.start_bootstrap({}, extra_args=["--config-yaml", text])
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
        print(f"----- envoy log (listener port {proxy.port}) -----")
        print(harness.without_inventory(proxy.log()))


def preflight(proxy, path, origin, **headers):
    return request(proxy, "OPTIONS", path, headers={
        "origin": origin,
        "access-control-request-method": "POST" if path != USAGE else "GET",
        "access-control-request-headers": "content-type, x-user-id, x-plan",
        **headers,
    })


def used(proxy, user, cls="drafts"):
    """What the usage endpoint says `user` used of `cls` (asked without an Origin)."""
    report = request(proxy, "GET", USAGE, headers={"x-user-id": user}).json()
    return next(c for c in report["classes"] if c["class"] == cls)["used"]


def saw(stats):
    """Requests the quota filter classified or refused, from its stats."""
    counted = sum(v for name, v in stats.items()
                  if name.endswith((".requests", ".blocked", ".not_included", ".too_large")))
    return counted + stats["wasmcustom.quota.identity_missing"] + stats["wasmcustom.quota.unknown_tier"]


def filter_saw(proxy, expected):
    """`saw` once it says `expected` (the filter adds its counts to Envoy's on
    its tick), or what it says when the wait ends."""
    return saw(proxy.wait_for_stats("wasmcustom", lambda s: saw(s) == expected))


def quota_headers(resp):
    return sorted(n for n in resp.headers if n.startswith("x-quota-") or n.startswith("ratelimit"))


def test_preflights_are_answered_by_envoy_and_charge_no_one(cors_envoy, upstream):
    # A default class: any request that reached the quota filter would be
    # charged. Preflights carry a forged identity, as an attacker's would;
    # none reaches the upstream either, so a preflight buys no model work.
    proxy = cors_envoy(default_class="drafts")
    forged = {"x-user-id": "victim", "x-plan": "pro"}
    for path in (CHAT, USAGE, "/v1/models"):
        for origin in (APP, FOREIGN):
            mock_id = f"preflight-{origin}-{path}"
            resp = preflight(proxy, path, origin, **forged, **{"x-mock-id": mock_id})
            assert resp.status == 200, (path, origin, resp)
            assert resp.body == b""
            assert quota_headers(resp) == [], (path, origin)
            assert request(upstream, "GET", f"/__mock/seen/{mock_id}").json()["seen"] == 0, (path, origin)
            if origin == APP:
                assert resp.headers["access-control-allow-origin"] == APP
                allowed = [h.strip() for h in resp.headers["access-control-allow-headers"].split(",")]
                for name in ("authorization", "content-type", "x-user-id", "x-plan", "x-quota-confirm"):
                    assert name in allowed, name
                assert resp.headers["access-control-max-age"] == "600"
            else:
                # Answered, but without the origin: the browser refuses the request.
                assert "access-control-allow-origin" not in resp.headers
    assert filter_saw(proxy, 0) == 0
    assert proxy.stats(filter="cors")["http.ingress_http.cors.origin_invalid"] == 3
    assert used(proxy, "victim") == 0


def test_with_envoys_default_a_foreign_preflight_would_reach_the_quota_filter(cors_envoy):
    # Why the example sets forward_not_matching_preflights: false. With
    # Envoy's default, a preflight from an origin the policy does not allow
    # goes down the chain, and a filter that classifies OPTIONS charges it.
    proxy = cors_envoy(default_class="drafts", forward_foreign_preflights=True)
    resp = preflight(proxy, CHAT, FOREIGN, **{"x-user-id": "victim"})
    assert resp.headers["x-quota-class"] == "drafts"
    assert used(proxy, "victim") == 1
    # An allowed origin's preflight is still Envoy's alone.
    preflight(proxy, CHAT, APP, **{"x-user-id": "other"})
    assert used(proxy, "other") == 0


def test_every_answer_to_an_allowed_origin_carries_the_cors_headers(cors_envoy):
    proxy = cors_envoy()
    app = {"origin": APP}
    answers = {
        "admitted": request(proxy, "POST", CHAT, headers={**app, "x-user-id": "ana"}, json={"model": "m", "messages": []}),
        "usage endpoint": request(proxy, "GET", USAGE, headers={**app, "x-user-id": "ana"}),
        "missing identity (401)": request(proxy, "POST", CHAT, headers=app, json={}),
        "not counted": request(proxy, "GET", "/v1/models", headers={**app, "x-user-id": "ana"}),
    }
    for _ in range(4):
        request(proxy, "POST", CHAT, headers={"x-user-id": "ana"}, json={})
    answers["blocked (429)"] = request(proxy, "POST", CHAT, headers={**app, "x-user-id": "ana"}, json={})
    expected = exposed_list()
    for what, resp in answers.items():
        assert resp.headers["access-control-allow-origin"] == APP, what
        assert [h.strip() for h in resp.headers["access-control-expose-headers"].split(",")] == expected, what
    assert [r.status for r in answers.values()] == [200, 200, 401, 200, 429]
    assert answers["admitted"].headers["x-quota-used"] == "1"
    assert answers["blocked (429)"].headers["x-quota-state"] == "blocked"
    assert answers["usage endpoint"].json()["user"] == "ana"
    # Every header the filter sent on the 429 is in the list a page may read.
    refused = [n for n in answers["blocked (429)"].headers if n.startswith(("x-quota-", "ratelimit", "retry-after"))]
    assert set(refused) <= set(expected), set(refused) - set(expected)


def test_after_the_quota_filter_cors_would_miss_the_filters_own_answers(cors_envoy):
    # Why the CORS filter comes first: a filter's local reply goes back only
    # through the filters before it. Last in the chain, CORS still decorates
    # upstream answers, but the usage endpoint and the refusals go out bare
    # (the page sees a network error), and the quota filter answers the
    # usage endpoint's preflight itself (405: only GET).
    proxy = cors_envoy(cors_after_quota=True)
    app = {"origin": APP}
    upstream_answer = request(proxy, "POST", CHAT, headers={**app, "x-user-id": "ana"}, json={})
    assert upstream_answer.headers["access-control-allow-origin"] == APP
    usage = request(proxy, "GET", USAGE, headers={**app, "x-user-id": "ana"})
    refused = request(proxy, "POST", CHAT, headers=app, json={})
    assert (usage.status, refused.status) == (200, 401)
    assert "access-control-allow-origin" not in usage.headers
    assert "access-control-allow-origin" not in refused.headers
    assert preflight(proxy, USAGE, APP).status == 405


def test_cors_is_no_boundary_another_origin_is_counted_and_refused(cors_envoy):
    # The CORS policy tells browsers what a page may read; a request from an
    # origin it does not allow still reaches the filter, is charged, and meets
    # the wall like any other (curl sends whatever Origin it likes).
    proxy = cors_envoy()
    foreign = {"origin": FOREIGN, "x-user-id": "mallory"}
    statuses, counts = [], []
    for _ in range(6):
        resp = request(proxy, "POST", CHAT, headers=foreign, json={})
        statuses.append(resp.status)
        counts.append(resp.headers["x-quota-used"])
        assert "access-control-allow-origin" not in resp.headers
    assert statuses == [200] * 5 + [429]
    assert counts == ["1", "2", "3", "4", "5", "5"]
    # One counter, whatever the origin: the allowed origin meets the same wall.
    assert request(proxy, "POST", CHAT, headers={"origin": APP, "x-user-id": "mallory"}, json={}).status == 429
    # Only an OPTIONS is a preflight: a POST dressed as one is a request, charged.
    dressed = {"origin": APP, "access-control-request-method": "POST", "x-user-id": "trudy"}
    assert request(proxy, "POST", CHAT, headers=dressed, json={}).headers["x-quota-used"] == "1"
    assert used(proxy, "mallory") == 5
    assert proxy.stats(filter="cors")["http.ingress_http.cors.origin_invalid"] == 6


def test_behind_jwt_authn_after_cors_a_preflight_needs_no_token_and_a_401_reaches_the_page(cors_envoy):
    # The usual browser app: a bearer token verified by jwt_authn, placed
    # after the CORS filter. A preflight carries no token (browsers never
    # send credentials on one): CORS answers it before jwt_authn could
    # refuse it. jwt_authn's own 401 goes back through CORS, so the page
    # reads the status instead of a network error.
    proxy = cors_envoy(jwt_authn=True)
    answer = preflight(proxy, CHAT, APP, **{"access-control-request-headers": "authorization, content-type"})
    assert (answer.status, answer.headers["access-control-allow-origin"]) == (200, APP)
    assert "authorization" in answer.headers["access-control-allow-headers"]

    signed = {"origin": APP, "authorization": f"Bearer {jwt('ana')}", "x-user-id": "someone-else"}
    admitted = request(proxy, "POST", CHAT, headers=signed, json={})
    assert (admitted.status, admitted.headers["x-quota-used"]) == (200, "1")
    assert admitted.headers["access-control-allow-origin"] == APP
    usage = request(proxy, "GET", USAGE, headers=signed).json()
    assert (usage["user"], usage["classes"][0]["used"]) == ("ana", 1)

    unsigned = request(proxy, "POST", CHAT, headers={"origin": APP, "x-user-id": "ana"}, json={})
    assert unsigned.status == 401
    assert unsigned.headers["access-control-allow-origin"] == APP
    assert [h.strip() for h in unsigned.headers["access-control-expose-headers"].split(",")] == exposed_list()
    assert filter_saw(proxy, 1) == 1


# --------------------------------------------------------------------------
# The page on a second origin, in headless Chromium
# --------------------------------------------------------------------------

def start_page_server():
    """envoy/examples/cors-page/ at / and the client package (`make client`)
    at /quota-client/, on a loopback port of its own: another origin than
    Envoy's."""
    handler = type("CorsPageFiles", (harness._StaticFiles,), {
        "mounts": {"/": PAGE_DIR, "/quota-client/": harness.CLIENT_PKG},
    })
    return harness.DemoServer(ThreadingHTTPServer(("127.0.0.1", 0), handler))


def require_browser_tools():
    missing = []
    if not (harness.CLIENT_PKG / "quota_client.js").exists():
        missing.append(f"{harness.CLIENT_PKG}/quota_client.js (`make client`)")
    if not PLAYWRIGHT.exists():
        missing.append(f"{PLAYWRIGHT} (`make setup-node`)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (`make setup-browser`)")
    if missing:
        pytest.fail("the browser test needs: " + "; ".join(missing), pytrace=False)


def run_page(cors_envoy, user, expect, **example_kwargs):
    """Serves the page, starts Envoy allowing the page's origin, drives the
    page; what it drew (the script's DRAWN line) and the Envoy."""
    require_browser_tools()
    with start_page_server() as pages:
        origin = f"http://127.0.0.1:{pages.port}"
        proxy = cors_envoy(origin=origin, **example_kwargs)
        url = f"{origin}/?api=http://127.0.0.1:{proxy.port}&user={user}&tier=free"
        run = subprocess.run(
            ["node", str(SCRIPT), "--url", url, "--screenshots", str(SCREENSHOTS),
             "--expect", expect, "--chromium", CHROMIUM],
            capture_output=True, text=True, timeout=180, cwd=harness.REPO_ROOT,
        )
    print(run.stdout)
    print(run.stderr)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert f"cross-origin page ({expect}): all steps passed" in run.stdout
    (drawn,) = [line[len("DRAWN "):] for line in run.stdout.splitlines() if line.startswith("DRAWN ")]
    assert (SCREENSHOTS / f"cors-page-{expect}.png").stat().st_size > 10_000
    return json.loads(drawn), proxy


def assert_drawn_as_counted(drawn, proxy, user):
    report = request(proxy, "GET", USAGE, headers={"x-user-id": user}).json()
    for c in report["classes"]:
        card = drawn[c["class"]]
        assert (card["value"], card["max"]) == (c["used"], c["limit"]), c["class"]
        assert card["numbers"] == f"{c['used']} of {c['limit']} used, {c['remaining']} left", c["class"]


def test_a_page_on_another_origin_draws_the_meters_from_the_apis_headers(cors_envoy):
    drawn, proxy = run_page(cors_envoy, "cora", "exposed")
    assert drawn["drafts"] == {"value": 5, "max": 5, "numbers": "5 of 5 used, 0 left", "state": "blocked"}
    assert drawn["summaries"]["value"] == 1
    assert_drawn_as_counted(drawn, proxy, "cora")
    stats = proxy.wait_for_stats("wasmcustom", lambda s: (
        s["wasmcustom.quota.drafts.free.requests"], s["wasmcustom.quota.drafts.free.blocked"],
        s["wasmcustom.quota.summaries.free.requests"]) == (5, 1, 1))
    assert (stats["wasmcustom.quota.drafts.free.requests"], stats["wasmcustom.quota.drafts.free.blocked"]) == (5, 1)
    assert stats["wasmcustom.quota.summaries.free.requests"] == 1
    # The browser's preflights never reached the filter (no identity refusals).
    assert stats["wasmcustom.quota.identity_missing"] == 0
    assert proxy.stats(filter="cors")["http.ingress_http.cors.origin_valid"] > 0


def test_without_expose_headers_the_page_says_the_headers_are_hidden(cors_envoy):
    drawn, proxy = run_page(cors_envoy, "hugo", "hidden", expose=False)
    # The page's meters come from the usage endpoint, and match the counters.
    assert drawn["drafts"] == {"value": 2, "max": 5, "numbers": "2 of 5 used, 3 left", "state": "ok"}
    assert_drawn_as_counted(drawn, proxy, "hugo")
    requests = "wasmcustom.quota.drafts.free.requests"
    assert proxy.wait_for_stats("wasmcustom", lambda s: s[requests] == 2)[requests] == 2
