"""The Kubernetes examples (deploy/istio/, deploy/envoy-gateway/), through
what their control planes hand Envoy (envoy/controlplane.py): the plugin
config serialised as Istio and Envoy Gateway serialise it (keys sorted,
Istio's numbers doubles), their vm_id, root_id and failure policy, no
allow_on_headers_stop_iteration, and their token check in front. Then the
user journey against the mock upstream."""

import hashlib
import hmac
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import controlplane as cp
import harness
from conftest import request
from local_jwt import KEY, b64
from quota_configs import CHAT

ISTIO = harness.REPO_ROOT / "deploy" / "istio"
GATEWAY = harness.REPO_ROOT / "deploy" / "envoy-gateway"
ISSUER = "https://auth.example.com"  # the examples' issuer
JWKS = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": b64(KEY)}]})
DIGEST_PLACEHOLDER = "REPLACE_WITH_THE_IMAGE_MANIFEST_DIGEST"
PREMIUM = "/v1/premium/chat/completions"


def token(sub, plan, workspace=None):
    """The authorization header of a token the examples' issuer signed."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"iss": ISSUER, "sub": sub, "plan": plan, "exp": int(time.time()) + 600}
    if workspace:
        claims["workspace"] = workspace
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"Bearer {header}.{payload}.{signature}"


def as_applied(path, digest):
    """The example's documents as a user applies them: placeholders filled."""
    text = path.read_text().replace(DIGEST_PLACEHOLDER, digest)
    return cp.load_yaml(text.replace("OWNER", "example").replace("VERSION", "1.0.0"))


def one(docs, kind):
    (doc,) = [d for d in docs if d.get("kind") == kind]
    return doc


def digest_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def http_filters(bootstrap):
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def virtual_host(bootstrap):
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]


def configuration(wasm_typed_config):
    """The configuration text a wasm filter config carries."""
    return wasm_typed_config["config"]["configuration"]["value"]


# --------------------------------------------------------------------------
# Envoy as each control plane configures it
# --------------------------------------------------------------------------

def istio_bootstrap(upstream, plugin, auth, wasm):
    """Envoy as Istio's gateway runs a WasmPlugin in phase STATS: Istio's
    jwt_authn first (the RequestAuthentication), then the quota filter (the
    module as istio-agent stores it: a local file)."""
    assert plugin["spec"]["phase"] == "STATS"
    wasm_filter = cp.istio_filter(plugin, wasm_file=wasm)
    config = json.loads(configuration(wasm_filter["typed_config"]))
    bootstrap = harness.render_bootstrap(upstream_port=upstream.port, filter_config=config)
    chain = http_filters(bootstrap)
    chain[0] = {"name": wasm_filter["name"], "typed_config": wasm_filter["typed_config"]}
    chain.insert(0, cp.istio_jwt_filter(auth, jwks=JWKS))
    return bootstrap


class WasmServer:
    """Stands for Envoy Gateway's own HTTP server, from which its Envoys fetch
    the module it pulled (cluster `wasm_cluster`). A context manager."""

    def __init__(self, files):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def cluster(self):
        return {**harness.webdis_cluster(self.port, name=cp.GATEWAY_WASM_CLUSTER), "connect_timeout": "1s"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def gateway_bootstrap(upstream, policy, security, wasm_server, digest):
    """Envoy as Envoy Gateway configures it for an EnvoyExtensionPolicy on
    the HTTPRoute `ai-api` (PathPrefix /v1): the quota filter in the listener's
    chain but disabled, enabled on the route the policy targets; the module
    fetched from Envoy Gateway's server with the .wasm's sha256; its
    jwt_authn (the SecurityPolicy on the same route) before it."""
    (entry,) = cp.gateway_filters(policy, serving_url=wasm_server.url(f"/{digest}.wasm"), wasm_sha256=digest)
    assert [ref["name"] for ref in entry["target_refs"]] == ["ai-api"]
    config = json.loads(configuration(entry["filter"]["typed_config"]))
    bootstrap = harness.render_bootstrap(upstream_port=upstream.port, filter_config=config)
    chain = http_filters(bootstrap)
    chain[0] = entry["filter"]
    chain.insert(0, cp.gateway_jwt_filter(security, jwks=JWKS, prefix="/v1"))
    virtual_host(bootstrap)["routes"] = [
        {"match": {"path_separated_prefix": "/v1"}, "route": {"cluster": "upstream"},
         "typed_per_filter_config": entry["route_config"]},
        # A route no policy targets: the filter stays off there.
        {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}},
    ]
    bootstrap["static_resources"]["clusters"].append(wasm_server.cluster())
    return bootstrap


@pytest.fixture
def started():
    """Envoys a test started with start(bootstrap); stopped after it (their
    logs shown if it failed)."""
    envoys = []

    def start(bootstrap):
        envoy = harness.start_bootstrap(bootstrap)
        envoys.append(envoy)
        return envoy

    yield start
    for envoy in envoys:
        envoy.stop()
        print(harness.without_inventory(envoy.log()))


def refused(bootstrap):
    """Envoy's log when it refuses to start with `bootstrap`."""
    try:
        envoy = harness.start_bootstrap(bootstrap)
    except harness.EnvoyStartError as err:
        assert err.exit_code is not None, err
        return err.log
    envoy.stop()
    pytest.fail(f"Envoy accepted the config:\n{harness.without_inventory(envoy.log())}")


@pytest.fixture
def wasm_digest(wasm_path):
    return digest_of(wasm_path)


@pytest.fixture
def istio(upstream, wasm_path, wasm_digest, started):
    """Envoy running deploy/istio/ as applied."""
    docs = as_applied(ISTIO / "wasmplugin.yaml", wasm_digest) + as_applied(
        ISTIO / "requestauthentication.yaml", wasm_digest)
    plugin, auth = one(docs, "WasmPlugin"), one(docs, "RequestAuthentication")
    return started(istio_bootstrap(upstream, plugin, auth, wasm_path))


@pytest.fixture
def wasm_server(wasm_path, wasm_digest):
    with WasmServer({f"/{wasm_digest}.wasm": wasm_path.read_bytes()}) as server:
        yield server


@pytest.fixture
def gateway(upstream, wasm_server, wasm_digest, started):
    """Envoy running deploy/envoy-gateway/ as applied."""
    docs = [doc for name in ("extensionpolicy.yaml", "securitypolicy.yaml", "httproute.yaml")
            for doc in as_applied(GATEWAY / name, wasm_digest)]
    policy, security = one(docs, "EnvoyExtensionPolicy"), one(docs, "SecurityPolicy")
    route = one(docs, "HTTPRoute")
    assert route["metadata"]["name"] == "ai-api"
    assert route["spec"]["rules"][0]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/v1"}
    return started(gateway_bootstrap(upstream, policy, security, wasm_server, wasm_digest))


# --------------------------------------------------------------------------
# The journey, through either control plane
# --------------------------------------------------------------------------

def draft(model="gpt-4o"):
    return {"model": model, "messages": [{"role": "user", "content": "Draft a note to the team."}]}


def the_free_users_day(proxy):
    fay = token("fay", "free")
    # Headers cannot pick another user or a better plan: identity is the verified token.
    spoofed = {"authorization": fay, "x-user-id": "victim", "x-plan": "enterprise"}
    states, warnings = [], []
    for n in range(1, 11):
        resp = request(proxy, "POST", CHAT, headers=spoofed, json=draft())
        assert resp.status == 200, resp
        h = resp.headers
        assert (h["x-quota-class"], h["x-quota-tier"], h["x-quota-used"], h["x-quota-limit"]) == (
            "drafts", "free", str(n), "10")
        assert h["ratelimit-policy"] == '"drafts";q=10;w=86400'
        states.append(h["x-quota-state"])
        if "x-quota-warning" in h:
            warnings.append(h["x-quota-warning"])
    # Warned from the soft limit (5) on, more than twice, before the wall.
    assert states == ["ok"] * 4 + ["warning"] * 6
    assert len(warnings) == 6 and all("Pro includes 100 a day" in w for w in warnings), warnings

    blocked = request(proxy, "POST", CHAT, headers={"authorization": fay}, json=draft())
    assert (blocked.status, blocked.headers["x-quota-state"]) == (429, "blocked")
    assert int(blocked.headers["retry-after"]) > 0
    message = blocked.json()["error"]["message"]
    assert message.startswith("You've used your 10 drafts for today.")
    assert "Pro includes 100 a day: https://example.com/upgrade?plan=pro" in message

    # The same path with another model: the body decides the class (no held headers).
    summary = request(proxy, "POST", CHAT, headers={"authorization": fay}, json=draft("gpt-4o-mini"))
    assert (summary.status, summary.headers["x-quota-class"], summary.headers["x-quota-used"]) == (
        200, "summaries", "1")
    assert summary.json()["model"] == "gpt-4o-mini"  # the upstream got the whole body

    # Not in the plan: named with Pro's allowance, in money.
    premium = request(proxy, "POST", PREMIUM, headers={"authorization": fay}, json=draft())
    assert premium.status == 403
    assert "Pro includes $5.00 a month" in premium.json()["error"]["message"]

    # The usage endpoint, answered by the filter.
    usage = request(proxy, "GET", "/v1/quota", headers={"authorization": fay})
    assert usage.status == 200
    report = usage.json()
    classes = {c["class"]: c for c in report["classes"]}
    assert (report["user"], report["tier"]) == ("fay", "free")
    drafts = classes["drafts"]
    assert (drafts["used"], drafts["limit"], drafts["state"]) == (10, 10, "blocked")
    assert (drafts["upgrade"]["label"], drafts["upgrade"]["limit"]) == ("Pro", 100)
    assert classes["summaries"]["used"] == 1

    # Without a token the filter answers with its own friendly 401.
    anonymous = request(proxy, "POST", CHAT, json=draft())
    return anonymous


def each_plan_points_to_the_next(proxy):
    """Upgrade hints follow tier_order, whatever order the tiers reached the filter in."""
    expected = {"free": ("Pro", 50), "pro": ("Team", 100), "team": ("Enterprise", 1000), "enterprise": None}
    for plan, upgrade in expected.items():
        report = request(proxy, "GET", "/v1/quota", headers={"authorization": token(f"{plan}-user", plan, "ws1")})
        summaries = next(c for c in report.json()["classes"] if c["class"] == "summaries")
        got = summaries["upgrade"] and (summaries["upgrade"]["label"], summaries["upgrade"]["limit"])
        assert got == upgrade, (plan, summaries["upgrade"])


def test_istio_example_the_free_users_day(istio):
    anonymous = the_free_users_day(istio)
    # Istio's jwt_authn lets a request without a token through (RequestAuthentication
    # alone requires none); the filter refuses it, in words.
    assert anonymous.status == 401
    assert anonymous.json()["error"]["code"] == "missing_identity"
    # A token Istio cannot verify never reaches the filter.
    forged = request(istio, "POST", CHAT, headers={"authorization": "Bearer a.b.c"}, json=draft())
    assert forged.status == 401 and "x-quota-state" not in forged.headers


def test_envoy_gateway_example_the_free_users_day(gateway):
    anonymous = the_free_users_day(gateway)
    # Envoy Gateway's SecurityPolicy requires a token on the route.
    assert anonymous.status == 401 and "x-quota-state" not in anonymous.headers
    # A route the policy does not target is not metered.
    elsewhere = request(gateway, "POST", "/chat/completions", json=draft())
    assert elsewhere.status == 200 and "x-quota-class" not in elsewhere.headers


def test_istio_example_upgrade_hints_follow_tier_order(istio):
    each_plan_points_to_the_next(istio)


def test_envoy_gateway_example_upgrade_hints_follow_tier_order(gateway):
    each_plan_points_to_the_next(gateway)


# --------------------------------------------------------------------------
# What the control planes set, and what they do to the config
# --------------------------------------------------------------------------

def test_the_examples_run_the_same_matrix():
    """The two examples differ only where the token's claims are (Istio's
    jwt_authn metadata key `payload`, Envoy Gateway's the provider's name)."""
    plugin = one(cp.load_documents(ISTIO / "wasmplugin.yaml"), "WasmPlugin")
    policy = one(cp.load_documents(GATEWAY / "extensionpolicy.yaml"), "EnvoyExtensionPolicy")
    istio_config = plugin["spec"]["pluginConfig"]
    gateway_config = policy["spec"]["wasm"][0]["config"]
    as_istio = json.loads(json.dumps(gateway_config).replace('"auth"', '"payload"'))
    assert as_istio == istio_config
    assert istio_config["hold_headers_for_body"] is False


def test_the_examples_keep_the_demo_matrix():
    """The examples are the demo's matrix (envoy/demo-config.json), with the
    identity taken from verified tokens and the headers not held."""
    demo = json.loads((harness.REPO_ROOT / "envoy" / "demo-config.json").read_text())
    config = one(cp.load_documents(ISTIO / "wasmplugin.yaml"), "WasmPlugin")["spec"]["pluginConfig"]
    for key in ("classes", "tier_order", "tiers", "prices", "usage_endpoint", "max_body_bytes", "counters"):
        assert config[key] == demo[key], key


def test_istio_sets_no_vm_id_and_no_stop_iteration_flag(wasm_path, wasm_digest):
    plugin = one(as_applied(ISTIO / "wasmplugin.yaml", wasm_digest), "WasmPlugin")
    wasm_filter = cp.istio_filter(plugin, wasm_file=wasm_path)
    config = wasm_filter["typed_config"]["config"]
    assert wasm_filter["name"] == "extensions.istio.io/trafficextension/istio-system.quota~istio-translated-wasmplugin"
    assert config["name"] == "istio-system.quota~istio-translated-wasmplugin"
    assert "vm_id" not in config["vm_config"] and "root_id" not in config
    assert config["vm_config"]["code"] == {"local": {"filename": str(wasm_path)}}
    assert config["failure_policy"] == "FAIL_CLOSED"
    assert "allow_on_headers_stop_iteration" not in config
    older = cp.istio_filter(plugin, wasm_file=wasm_path, release=(1, 29))
    assert older["name"] == "extensions.istio.io/wasmplugin/istio-system.quota"


def test_envoy_gateway_sets_a_vm_id_per_policy_and_no_stop_iteration_flag(wasm_digest):
    policy = one(as_applied(GATEWAY / "extensionpolicy.yaml", wasm_digest), "EnvoyExtensionPolicy")
    (entry,) = cp.gateway_filters(policy, serving_url="http://eg/x.wasm", wasm_sha256=wasm_digest)
    config = entry["filter"]["typed_config"]["config"]
    assert entry["name"] == "envoy.filters.http.wasm/envoyextensionpolicy/default/quota/wasm/0"
    assert entry["filter"]["disabled"] is True
    assert config["vm_config"]["vm_id"] == "envoyextensionpolicy/default/quota/wasm/0"
    assert config["name"] == "quota" and "root_id" not in config
    assert config["vm_config"]["code"]["remote"]["sha256"] == wasm_digest
    assert "fail_open" not in config and "allow_on_headers_stop_iteration" not in config


@pytest.mark.parametrize("serialise", [cp.istio_configuration, cp.gateway_configuration])
def test_control_planes_sort_keys(serialise):
    text = serialise({"tiers": {"team": {}, "free": {}, "pro": {}}, "classes": [], "identity": {"b": 1, "a": 2}})
    assert text == '{"classes":[],"identity":{"a":2,"b":1},"tiers":{"free":{},"pro":{},"team":{}}}'


def test_istio_writes_every_number_as_a_double():
    numbers = [100, 86400, 1e21, 0.5, 100.0, 1e-7, 2 ** 53 + 1, 262144, 0.000001]
    assert cp.istio_configuration(numbers) == \
        "[100,86400,1e+21,0.5,100,1e-7,9007199254740992,262144,0.000001]"
    # Envoy Gateway keeps what the API server kept: int64s exact, other numbers doubles.
    assert cp.gateway_configuration(numbers) == \
        "[100,86400,1e+21,0.5,100,1e-7,9007199254740993,262144,0.000001]"
    # Strings as Go writes them: the same text once parsed.
    assert cp.istio_configuration({"url": "https://x/?a=1&b=<2>"}) == '{"url":"https://x/?a=1\\u0026b=\\u003c2\\u003e"}'


def test_yaml_numbers_are_read_as_kubectl_reads_them():
    doc = cp.load_yaml("a: 1e21\nb: 100.0\nc: 2024-01-01\nd: '0.5'\ne: 0x10\n")[0]
    assert doc == {"a": 1e21, "b": 100.0, "c": "2024-01-01", "d": "0.5", "e": 16}


# --------------------------------------------------------------------------
# Sorted keys and tier_order, through Envoy
# --------------------------------------------------------------------------

# Plans named so that sorting reverses them: max < plus < starter.
SORTED_BACKWARDS = """
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: quota, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  url: oci://ghcr.io/example/quota-filter:1.0.0
  phase: STATS
  pluginConfig:
    identity:
      user: [{property: [metadata, filter_metadata, envoy.filters.http.jwt_authn, payload, sub]}]
      tier: [{property: [metadata, filter_metadata, envoy.filters.http.jwt_authn, payload, plan]}]
      default_tier: starter
    classes:
      - {name: drafts, label: Drafts, unit: draft, match: [{methods: [POST], path: {exact: /v1/chat/completions}}]}
    tier_order: [starter, plus, max]
    tiers:
      starter: {label: Starter, limits: {drafts: {hard: 2, window: day}}}
      plus: {label: Plus, limits: {drafts: {hard: 20.0, window: day}}}
      max: {label: Max, limits: {drafts: {hard: 200, window: day}}}
    usage_endpoint: /v1/quota
"""


def sorted_backwards(digest):
    docs = cp.load_yaml(SORTED_BACKWARDS)
    auth = one(as_applied(ISTIO / "requestauthentication.yaml", digest), "RequestAuthentication")
    return one(docs, "WasmPlugin"), auth


def test_sorted_tiers_keep_their_upgrade_order(upstream, wasm_path, wasm_digest, started):
    plugin, auth = sorted_backwards(wasm_digest)
    bootstrap = istio_bootstrap(upstream, plugin, auth, wasm_path)
    text = configuration(http_filters(bootstrap)[1]["typed_config"])
    # What the filter is given: tiers sorted, against their upgrade order.
    assert list(json.loads(text)["tiers"]) == ["max", "plus", "starter"]
    assert '"hard":20,' in text  # 20.0 as the Struct's double is written
    proxy = started(bootstrap)

    sam = token("sam", "starter")
    for _ in range(2):
        assert request(proxy, "POST", CHAT, headers={"authorization": sam}, json=draft()).status == 200
    blocked = request(proxy, "POST", CHAT, headers={"authorization": sam}, json=draft())
    assert blocked.status == 429
    assert "Plus includes 20 a day" in blocked.json()["error"]["message"]
    for plan, upgrade in {"starter": ("Plus", 20), "plus": ("Max", 200), "max": None}.items():
        report = request(proxy, "GET", "/v1/quota", headers={"authorization": token(f"{plan}-1", plan)}).json()
        hint = report["classes"][0]["upgrade"]
        assert (hint and (hint["label"], hint["limit"])) == upgrade, (plan, hint)


@pytest.mark.parametrize("example", ["sorted_backwards", "istio"])
def test_without_tier_order_the_config_is_refused(example, upstream, wasm_path, wasm_digest):
    if example == "istio":
        docs = as_applied(ISTIO / "wasmplugin.yaml", wasm_digest)
        plugin = one(docs, "WasmPlugin")
        auth = one(as_applied(ISTIO / "requestauthentication.yaml", wasm_digest), "RequestAuthentication")
    else:
        plugin, auth = sorted_backwards(wasm_digest)
    del plugin["spec"]["pluginConfig"]["tier_order"]
    log = refused(istio_bootstrap(upstream, plugin, auth, wasm_path))
    (line,) = {m.group(1) for m in re.finditer(r"quota: invalid configuration: (.*)", log)}
    assert "tier_order" in line, line


# --------------------------------------------------------------------------
# Numbers as the Struct writes them, through Envoy
# --------------------------------------------------------------------------

def test_a_number_past_what_a_field_holds_is_refused_with_its_path(upstream, wasm_path, wasm_digest):
    """1e21 reaches the filter as `1e+21` (a double): still a clear refusal."""
    plugin, auth = sorted_backwards(wasm_digest)
    plugin["spec"]["pluginConfig"]["max_body_bytes"] = 1e21
    bootstrap = istio_bootstrap(upstream, plugin, auth, wasm_path)
    assert '"max_body_bytes":1e+21' in configuration(http_filters(bootstrap)[1]["typed_config"])
    log = refused(bootstrap)
    (line,) = {m.group(1) for m in re.finditer(r"quota: invalid configuration: (.*)", log)}
    assert line.startswith("max_body_bytes"), line


# --------------------------------------------------------------------------
# Who shares the counters
# --------------------------------------------------------------------------

def listener_port(envoy, name):
    listeners = json.loads(envoy.admin_get("/listeners?format=json"))["listener_statuses"]
    return next(li["local_address"]["socket_address"]["port_value"] for li in listeners if li["name"] == name)


class Port:
    def __init__(self, port):
        self.port = port


def test_every_istio_wasmplugin_in_a_proxy_shares_the_counters(upstream, wasm_path, wasm_digest, started):
    """Istio sets no vm_id, so every WasmPlugin in a proxy runs with vm_id ""
    and reads the same shared data: a second WasmPlugin of this filter (here
    on a second listener, with other limits) sees the first one's counts."""
    plugin, auth = sorted_backwards(wasm_digest)
    other = json.loads(json.dumps(plugin))
    other["metadata"]["name"] = "quota-canary"
    other["spec"]["pluginConfig"]["tiers"]["starter"]["limits"]["drafts"]["hard"] = 5
    bootstrap = istio_bootstrap(upstream, plugin, auth, wasm_path)
    second = json.loads(json.dumps(bootstrap["static_resources"]["listeners"][0]))
    second["name"] = "second"
    canary = cp.istio_filter(other, wasm_file=wasm_path)
    assert "vm_id" not in canary["typed_config"]["config"]["vm_config"]
    second["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][1] = {
        "name": canary["name"], "typed_config": canary["typed_config"]}
    bootstrap["static_resources"]["listeners"].append(second)
    proxy = started(bootstrap)
    canary_port = Port(listener_port(proxy, "second"))

    sam = {"authorization": token("sam", "starter")}
    assert request(proxy, "POST", CHAT, headers=sam, json=draft()).headers["x-quota-used"] == "1"
    assert request(proxy, "POST", CHAT, headers=sam, json=draft()).headers["x-quota-used"] == "2"
    # The other plugin counts on from the first one's 2, against its own limit.
    third = request(canary_port, "POST", CHAT, headers=sam, json=draft())
    assert (third.status, third.headers["x-quota-used"], third.headers["x-quota-limit"]) == (200, "3", "5")
    assert request(proxy, "POST", CHAT, headers=sam, json=draft()).status == 429


# --------------------------------------------------------------------------
# Edits: Istio delivers the filter by ECDS
# --------------------------------------------------------------------------

class Ecds:
    """The quota filter delivered as Istio delivers it, by ECDS (here from a
    watched file): write() replaces the extension config, as istiod does when
    the WasmPlugin is edited."""

    def __init__(self, directory, wasm_filter):
        self.directory = directory
        self.path = directory / "ecds.json"
        self.name = wasm_filter["name"]
        self.version = 0
        self.write(wasm_filter)

    def write(self, wasm_filter):
        assert wasm_filter["name"] == self.name
        self.version += 1
        resource = {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "name": self.name, "typed_config": wasm_filter["typed_config"]}
        staging = self.directory / "ecds.json.new"
        staging.write_text(json.dumps({"version_info": str(self.version), "resources": [resource]}))
        staging.rename(self.path)  # atomic: Envoy reads whole files only

    def http_filter(self):
        return {"name": self.name, "config_discovery": {
            "config_source": {"resource_api_version": "V3", "path_config_source": {
                "path": str(self.path), "watched_directory": {"path": str(self.directory)}}},
            "type_urls": [cp.WASM_TYPE]}}

    def active_version(self, envoy):
        dump = json.loads(envoy.admin_get("/config_dump?resource=ecds_filters"))
        versions = [c.get("version_info") for c in dump.get("configs", [])]
        return versions[0] if versions else None


def test_istio_edits_keep_the_counters_and_a_bad_edit_is_refused(upstream, wasm_path, wasm_digest, started,
                                                                    tmp_path):
    plugin, auth = sorted_backwards(wasm_digest)
    bootstrap = istio_bootstrap(upstream, plugin, auth, wasm_path)
    ecds = Ecds(tmp_path, cp.istio_filter(plugin, wasm_file=wasm_path))
    http_filters(bootstrap)[1] = ecds.http_filter()
    bootstrap["node"] = {"id": "istio-ingressgateway", "cluster": "istio-ingressgateway"}
    proxy = started(bootstrap)
    sam = {"authorization": token("sam", "starter")}
    assert request(proxy, "POST", CHAT, headers=sam, json=draft()).headers["x-quota-used"] == "1"

    def edit(change):
        edited = json.loads(json.dumps(plugin))
        change(edited["spec"]["pluginConfig"])
        ecds.write(cp.istio_filter(edited, wasm_file=wasm_path))

    # A raised limit: the count carries over.
    edit(lambda c: c["tiers"]["starter"]["limits"]["drafts"].update(hard=4))
    deadline = time.monotonic() + 15
    while ecds.active_version(proxy) != "2":
        assert time.monotonic() < deadline, "Envoy did not take the edit"
        time.sleep(0.05)
    resp = request(proxy, "POST", CHAT, headers=sam, json=draft())
    assert (resp.headers["x-quota-used"], resp.headers["x-quota-limit"]) == ("2", "4")

    # An edit the filter refuses: Envoy keeps the last good config, and says why.
    edit(lambda c: c.pop("tier_order"))
    assert proxy.wait_for_log(r"quota: invalid configuration: .*tier_order", timeout=15), proxy.log()
    assert proxy.wait_for_log(r"config update rejected", timeout=15), proxy.log()
    resp = request(proxy, "POST", CHAT, headers=sam, json=draft())
    assert (resp.status, resp.headers["x-quota-used"], resp.headers["x-quota-limit"]) == (200, "3", "4")


# --------------------------------------------------------------------------
# Why the examples do not hold the headers
# --------------------------------------------------------------------------

def test_holding_headers_without_the_flag_stalls_requests_the_body_classifies(upstream, wasm_path, wasm_digest,
                                                                             started):
    """What `"hold_headers_for_body": true` does where the control plane cannot
    set allow_on_headers_stop_iteration: Envoy gives the filter no body after
    it held the headers, so a request whose class depends on its body goes
    nowhere until the stream idle timeout (here 1 s; Istio sets none at all).
    A request the head alone classifies is not held and goes through."""
    docs = as_applied(ISTIO / "wasmplugin.yaml", wasm_digest) + as_applied(
        ISTIO / "requestauthentication.yaml", wasm_digest)
    plugin, auth = one(docs, "WasmPlugin"), one(docs, "RequestAuthentication")
    plugin["spec"]["pluginConfig"]["hold_headers_for_body"] = True
    bootstrap = istio_bootstrap(upstream, plugin, auth, wasm_path)
    assert "allow_on_headers_stop_iteration" not in http_filters(bootstrap)[1]["typed_config"]["config"]
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "stream_idle_timeout"] = "1s"
    proxy = started(bootstrap)
    fay = token("fay", "free")

    stalled = request(proxy, "POST", CHAT, json=draft(),
                      headers={"authorization": fay, "x-mock-id": "held"})
    assert (stalled.status, stalled.body) == (504, b"stream timeout")
    assert proxy.stats(filter="downstream_rq_idle_timeout")["http.ingress_http.downstream_rq_idle_timeout"] == 1
    assert request(upstream, "GET", "/__mock/seen/held").json()["seen"] == 0  # the upstream saw nothing

    by_path = request(proxy, "POST", "/v1/summaries", json=draft(),
                      headers={"authorization": fay, "x-mock-id": "by-path"})
    assert (by_path.status, by_path.headers["x-quota-class"]) == (200, "summaries")
    assert request(upstream, "GET", "/__mock/seen/by-path").json()["seen"] == 1
