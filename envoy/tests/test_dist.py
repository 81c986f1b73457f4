"""The release in target/dist/ (`make dist`, which `make test-e2e` runs
first), used as a user who never builds anything would: Envoy loads the
released .wasm from a file and by URL with its sha256 (and refuses another
binary under that checksum), the OCI image goes through a registry to the
bytes released, the npm tarball installs and reads a response, the
quota-matrix binary validates a matrix, and SHA256SUMS covers it all."""

import functools
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import tomllib
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

import harness
from conftest import request
from quota_configs import CHAT, DEMO_PATH, chat, demo

DIST = harness.REPO_ROOT / "target" / "dist"
IMAGE = "quota-filter-oci"
WASM = "quota_filter.wasm"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
# Envoy's retries of a failed remote fetch, set in every remote config here.
REMOTE_RETRIES = 1
# Envoy's stdout is its log (harness): one line per request, with Envoy's
# own word for why it answered what it did.
ACCESS_LOG = [{
    "name": "envoy.access_loggers.stdout",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": {
            "inline_string": "access %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n"}},
    },
}]


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


class Release:
    """Paths and values of target/dist, read as a user reads them."""

    def __init__(self, root):
        self.root = root
        self.version = tomllib.loads(
            (harness.REPO_ROOT / "filter" / "Cargo.toml").read_text())["package"]["version"]
        self.wasm = root / WASM
        # The checksum as published (sha256sum format), not recomputed.
        self.wasm_sha256 = (root / (WASM + ".sha256")).read_text().split()[0]
        self.layout = root / IMAGE
        self.archive = root / (IMAGE + ".tar")
        self.digest = (root / (IMAGE + ".digest")).read_text().strip()


@pytest.fixture(scope="session")
def release():
    """target/dist; fails the test, naming the command, when it is missing."""
    if not (DIST / "SHA256SUMS").exists():
        pytest.fail(f"{DIST} is missing: run `make dist`", pytrace=False)
    return Release(DIST)


def run(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=120,
                          **kwargs)


# --------------------------------------------------------------------------
# What a user does after the download
# --------------------------------------------------------------------------

def test_sha256sums_covers_every_artifact_and_each_checks(release):
    listed = [line.split("  ", 1)[1] for line in
              (release.root / "SHA256SUMS").read_text().splitlines()]
    files = sorted(p.name for p in release.root.iterdir() if p.is_file())
    assert sorted(listed) == [name for name in files if name != "SHA256SUMS"]
    triple = next(name for name in files if name.startswith("quota-matrix-")
                  and not name.endswith(".sha256"))
    assert set(files) == {
        "SHA256SUMS", "LICENSE", WASM, WASM + ".sha256",
        IMAGE + ".tar", IMAGE + ".digest",
        triple, triple + ".sha256", f"quota-client-{release.version}.tgz",
    }
    assert run("sha256sum", "--strict", "-c", "SHA256SUMS", cwd=release.root).returncode == 0
    for single in (WASM + ".sha256", triple + ".sha256"):
        assert run("sha256sum", "--strict", "-c", single, cwd=release.root).returncode == 0


def test_a_changed_byte_fails_the_published_checksum(release, tmp_path):
    tampered = bytearray(release.wasm.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    (tmp_path / WASM).write_bytes(bytes(tampered))
    shutil.copy(release.root / (WASM + ".sha256"), tmp_path)
    result = run("sha256sum", "-c", WASM + ".sha256", cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert f"{WASM}: FAILED" in result.stdout


def test_the_license_is_apache_2_0_as_the_manifests_say(release):
    text = (harness.REPO_ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert (release.root / "LICENSE").read_text() == text
    cargo = tomllib.loads((harness.REPO_ROOT / "Cargo.toml").read_text())
    assert cargo["workspace"]["package"]["license"] == "Apache-2.0"
    package = json.loads((harness.REPO_ROOT / "client" / "package.json").read_text())
    assert package["license"] == "Apache-2.0"


# --------------------------------------------------------------------------
# Envoy and the released .wasm
# --------------------------------------------------------------------------

def assert_a_free_users_day(proxy, user):
    """Quota headers on a classified request, warnings from the soft limit,
    the friendly 429 at the wall, the usage endpoint: the filter works."""
    for used in range(1, 11):
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": user}, json=chat())
        assert resp.status == 200
        assert resp.headers["x-quota-class"] == "drafts"
        assert resp.headers["x-quota-used"] == str(used)
        assert resp.headers["x-quota-limit"] == "10"
        assert resp.headers["ratelimit-policy"] == '"drafts";q=10;w=86400'
    assert resp.headers["x-quota-warning"].startswith("That was the last of your 10 drafts")
    blocked = request(proxy, "POST", CHAT, headers={"x-user-id": user}, json=chat())
    assert blocked.status == 429
    assert blocked.headers["x-quota-state"] == "blocked"
    assert int(blocked.headers["retry-after"]) > 0
    assert blocked.json()["error"]["message"].startswith("You've used your 10 drafts for today.")
    usage = request(proxy, "GET", "/v1/quota", headers={"x-user-id": user})
    assert usage.status == 200
    drafts = next(c for c in usage.json()["classes"] if c["class"] == "drafts")
    assert drafts["used"] == 10


def test_envoy_runs_the_released_wasm_from_a_file(envoy, release):
    proxy = envoy(demo(), wasm=release.wasm, hold_headers=True)
    assert_a_free_users_day(proxy, "fay")


class _CountingFiles(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gets = None  # {path: count}, per server

    def do_GET(self):
        self.gets[self.path] = self.gets.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, format, *args):
        pass


class FileServer:
    """A directory over HTTP on loopback (as a release download, an object
    store or an nginx would serve it), counting the GETs per path."""

    def __init__(self, directory):
        self.gets = {}
        handler = functools.partial(type("Files", (_CountingFiles,), {"gets": self.gets}),
                                    directory=str(directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def file_server():
    servers = []

    def start(directory):
        servers.append(FileServer(directory))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def connection_manager(bootstrap):
    """The http_connection_manager's typed_config in a render_bootstrap dict."""
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def vm_config(bootstrap):
    """The quota filter's vm_config in a render_bootstrap dict."""
    return connection_manager(bootstrap)["http_filters"][0]["typed_config"]["config"]["vm_config"]


def remote_bootstrap(upstream_port, server, path, sha256):
    """render_bootstrap's config with the filter fetched by Envoy from
    server's `path` and checked against sha256, and an access log."""
    bootstrap = harness.render_bootstrap(upstream_port=upstream_port, filter_config=demo(),
                                         hold_headers=True)
    connection_manager(bootstrap)["access_log"] = ACCESS_LOG
    vm_config(bootstrap)["code"] = {"remote": {
        "http_uri": {"uri": server.url(path), "cluster": "wasm_download", "timeout": "10s"},
        "sha256": sha256,
        "retry_policy": {"num_retries": REMOTE_RETRIES,
                         "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.2s"}},
    }}
    bootstrap["static_resources"]["clusters"].append({
        "name": "wasm_download",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "wasm_download", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": server.port}}}},
        ]}]},
    })
    return bootstrap


@pytest.fixture
def envoy_from(upstream):
    """Factory: envoy_from(bootstrap, **start_bootstrap kwargs); stopped after
    the test, its log printed for a failed one."""
    started = []

    def start(bootstrap, **kwargs):
        started.append(harness.start_bootstrap(bootstrap, **kwargs))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()
        print(f"----- envoy log (listener port {proxy.port}) -----")
        print(harness.without_inventory(proxy.log()))


def test_envoy_fetches_the_released_wasm_by_url_with_its_sha256(envoy_from, upstream, release,
                                                               file_server):
    server = file_server(release.root)
    proxy = envoy_from(remote_bootstrap(upstream.port, server, "/" + WASM, release.wasm_sha256))
    # Ready means fetched, checked and started: one download was enough.
    assert server.gets == {"/" + WASM: 1}
    assert "failed to load" not in proxy.log()
    assert_a_free_users_day(proxy, "gus")


def test_envoy_refuses_another_wasm_under_the_released_sha256(envoy_from, upstream, release,
                                                             file_server, tmp_path):
    # A working filter (the unoptimised build), served where the release was:
    # only the checksum can tell them apart.
    assert harness.DEFAULT_WASM.read_bytes() != release.wasm.read_bytes()
    shutil.copy(harness.DEFAULT_WASM, tmp_path / WASM)
    server = file_server(tmp_path)
    uri = server.url("/" + WASM)
    proxy = envoy_from(remote_bootstrap(upstream.port, server, "/" + WASM, release.wasm_sha256),
                       extra_args=["--component-log-level", "config:debug"])

    # Envoy stays up with its listener, having tried the download and its
    # retry; it names the URI whose data did not match (Envoy 1.40 logs the
    # mismatch at debug on `config`, not the checksum itself), then gives up
    # on the plugin.
    assert server.gets == {"/" + WASM: 1 + REMOTE_RETRIES}
    log = proxy.log()
    assert log.count(f"fetch remote data [uri = {uri}]: data is invalid") == 1 + REMOTE_RETRIES
    assert "Retry limit exceeded for fetching data from remote data source." in log
    assert "Plugin quota failed to load" in log
    assert "Plugin configured to fail closed failed to load" in log
    assert "quota: configured" not in log  # the substitute never ran

    # fail_open: false, so every request is refused by Envoy, classified or
    # not, and none reaches the upstream.
    for method, path, body in [("POST", CHAT, chat()), ("GET", "/v1/quota", None),
                               ("GET", "/v1/models", None)]:
        resp = request(proxy, method, path, json=body,
                       headers={"x-user-id": "hal", "x-mock-id": "refused-wasm"})
        assert resp.status == 503, (path, resp)
        assert resp.body == b""
        assert not [name for name in resp.headers if name.startswith("x-quota-")]
    assert request(upstream, "GET", "/__mock/seen/refused-wasm").json()["seen"] == 0
    # Envoy's own word for the 503s (its access log is flushed every second).
    for path in (CHAT, "/v1/quota", "/v1/models"):
        assert proxy.wait_for_log(rf"access {path} 503 wasm_fail_stream"), path


def test_envoy_answers_503_when_the_wasm_cannot_be_downloaded(envoy_from, upstream, release,
                                                             file_server, tmp_path):
    server = file_server(tmp_path)  # nothing there: 404
    uri = server.url("/" + WASM)
    proxy = envoy_from(remote_bootstrap(upstream.port, server, "/" + WASM, release.wasm_sha256),
                       extra_args=["--component-log-level", "config:debug"])
    assert server.gets == {"/" + WASM: 1 + REMOTE_RETRIES}
    log = proxy.log()
    assert f"fetch remote data [uri = {uri}]: response status code 404" in log
    assert "Plugin quota failed to load" in log
    resp = request(proxy, "POST", CHAT, json=chat(),
                   headers={"x-user-id": "ida", "x-mock-id": "no-wasm"})
    assert (resp.status, resp.body) == (503, b"")
    assert request(upstream, "GET", "/__mock/seen/no-wasm").json()["seen"] == 0
    assert proxy.wait_for_log(rf"access {CHAT} 503 wasm_fail_stream")


def test_envoy_will_not_fetch_the_wasm_without_a_sha256(upstream, release, file_server):
    server = file_server(release.root)
    bootstrap = remote_bootstrap(upstream.port, server, "/" + WASM, release.wasm_sha256)
    del vm_config(bootstrap)["code"]["remote"]["sha256"]
    with pytest.raises(harness.EnvoyStartError) as refused:
        harness.start_bootstrap(bootstrap).stop()
    assert refused.value.exit_code == 1
    assert ("RemoteDataSourceValidationError.Sha256: value length must be at least 1 characters"
            in refused.value.log)
    assert server.gets == {}


# --------------------------------------------------------------------------
# The OCI image (Istio WasmPlugin, Envoy Gateway EnvoyExtensionPolicy)
# --------------------------------------------------------------------------

def plugin_wasm(layer):
    """The compat variant's reading of a layer, as Istio and Envoy Gateway
    do it: gunzip, untar, the member named plugin.wasm."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        names = tar.getnames()
        assert names == ["plugin.wasm"]
        return tar.extractfile("plugin.wasm").read()


def read_layout(layout, tag):
    """(manifest bytes, {digest: blob}) of the image tagged `tag` in an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    [entry] = [m for m in index["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    blobs = {f"sha256:{p.name}": p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}
    return blobs[entry["digest"]], blobs


def test_the_image_is_the_compat_variant_holding_the_released_wasm(release):
    manifest_bytes, blobs = read_layout(release.layout, release.version)
    assert "sha256:" + sha256_hex(manifest_bytes) == release.digest
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == MANIFEST_TYPE
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == LAYER_TYPE
    # Every blob is what its name and descriptor say.
    for digest, blob in blobs.items():
        assert "sha256:" + sha256_hex(blob) == digest
    assert len(blobs[layer["digest"]]) == layer["size"]
    assert plugin_wasm(blobs[layer["digest"]]) == release.wasm.read_bytes()


def test_skopeo_reads_the_layout_and_the_archive_as_one_image(release):
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{release.layout}:{release.version}"],
                         check=True, capture_output=True, timeout=60).stdout
    assert "sha256:" + sha256_hex(raw) == release.digest
    for ref in (f"oci:{release.layout}:{release.version}",
                f"oci-archive:{release.archive}:{release.version}"):
        inspected = json.loads(run("skopeo", "inspect", ref).stdout)
        assert inspected["Digest"] == release.digest
        assert inspected["Layers"] == [json.loads(raw)["layers"][0]["digest"]]


@pytest.fixture
def skopeo_policy(tmp_path):
    """A signature policy that accepts these local, unsigned images (skopeo
    copy wants one; the machine's /etc/containers/policy.json may differ)."""
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return str(path)


def test_skopeo_refuses_an_image_whose_layer_was_changed(release, tmp_path, skopeo_policy):
    layout = tmp_path / "tampered"
    shutil.copytree(release.layout, layout)
    manifest_bytes, _ = read_layout(layout, release.version)
    digest = json.loads(manifest_bytes)["layers"][0]["digest"]
    layer = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0x01  # same name, same size, other bytes
    layer.write_bytes(bytes(data))
    result = run("skopeo", "copy", "--policy", skopeo_policy,
                 f"oci:{layout}:{release.version}", f"dir:{tmp_path / 'out'}", check=False)
    assert result.returncode != 0
    assert f"Digest did not match, expected {digest}" in result.stderr, result.stderr


class Registry:
    """Debian's docker-registry (the CNCF distribution registry) on a free
    loopback port, storage in a temporary directory; plain HTTP, as a
    registry inside a cluster's network often is."""

    def __init__(self, workdir):
        self.port = harness._free_port()
        config = workdir / "registry.yml"
        # YAML is a superset of JSON.
        config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }))
        self._log = open(workdir / "registry.log", "wb")
        self.proc = harness._popen(["docker-registry", "serve", str(config)],
                                   stdout=self._log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        harness._wait_for_port(self.port, self.proc, "docker-registry")
        self.host = f"127.0.0.1:{self.port}"

    def get(self, path, accept=None):
        """(headers, body) of a registry API GET."""
        req = urllib.request.Request(f"http://{self.host}{path}",
                                     headers={"accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.headers, resp.read()

    def stop(self):
        harness._terminate(self.proc)
        self._log.close()


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path)
    yield reg
    reg.stop()


def test_the_image_goes_through_a_registry_to_the_released_bytes(release, registry, tmp_path,
                                                                skopeo_policy):
    ref = f"{registry.host}/quota-filter:{release.version}"
    run("skopeo", "copy", "--policy", skopeo_policy, "--dest-tls-verify=false",
        f"oci-archive:{release.archive}:{release.version}", f"docker://{ref}")

    # What Istio and Envoy Gateway do with `oci://<ref>`: the manifest (its
    # digest is what their `sha256` field checks), then the last layer,
    # which must be a gzipped tar holding plugin.wasm.
    headers, manifest_bytes = registry.get(f"/v2/quota-filter/manifests/{release.version}",
                                           accept=MANIFEST_TYPE)
    assert headers["docker-content-digest"] == release.digest
    assert "sha256:" + sha256_hex(manifest_bytes) == release.digest
    manifest = json.loads(manifest_bytes)
    layer_descriptor = manifest["layers"][-1]
    assert layer_descriptor["mediaType"] == LAYER_TYPE
    _, layer = registry.get(f"/v2/quota-filter/blobs/{layer_descriptor['digest']}")
    assert sha256_hex(plugin_wasm(layer)) == release.wasm_sha256

    # Pinned by digest, as a WasmPlugin's url may be.
    pinned = json.loads(run("skopeo", "inspect", "--tls-verify=false",
                            f"docker://{registry.host}/quota-filter@{release.digest}").stdout)
    assert pinned["Digest"] == release.digest

    # And pulled back by a standard tool: the same image, the same bytes.
    pulled = tmp_path / "pulled"
    run("skopeo", "copy", "--policy", skopeo_policy, "--src-tls-verify=false",
        f"docker://{ref}", f"oci:{pulled}:{release.version}")
    pulled_manifest, blobs = read_layout(pulled, release.version)
    assert "sha256:" + sha256_hex(pulled_manifest) == release.digest
    layer_digest = json.loads(pulled_manifest)["layers"][0]["digest"]
    assert sha256_hex(plugin_wasm(blobs[layer_digest])) == release.wasm_sha256


# --------------------------------------------------------------------------
# The npm tarball and the quota-matrix binary
# --------------------------------------------------------------------------

NPM_FILES = ["package/LICENSE", "package/package.json", "package/pkg/quota_client.d.ts",
             "package/pkg/quota_client.js", "package/pkg/quota_client_bg.wasm",
             "package/pkg/quota_client_bg.wasm.d.ts"]


def test_the_npm_tarball_holds_the_built_package_and_nothing_else(release):
    tgz = release.root / f"quota-client-{release.version}.tgz"
    with tarfile.open(tgz) as tar:
        assert sorted(tar.getnames()) == NPM_FILES
        files = {name: tar.extractfile(name).read() for name in NPM_FILES}
    assert files["package/LICENSE"] == (harness.REPO_ROOT / "LICENSE").read_bytes()
    client = harness.REPO_ROOT / "client"
    assert files["package/package.json"] == (client / "package.json").read_bytes()
    for name in NPM_FILES[2:]:
        assert files[name] == (client / name.removeprefix("package/")).read_bytes(), name


READ_A_RESPONSE = """
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { fromHeaders, initSync } from "quota-client";

initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("quota-client/quota_client_bg.wasm"))) });
const recorded = JSON.parse(readFileSync(process.argv[2], "utf8")).draft_first_warning;
console.log(JSON.stringify(fromHeaders(new Headers(recorded.headers))));
"""


def test_the_npm_tarball_installs_offline_and_reads_a_response(release, tmp_path):
    tgz = release.root / f"quota-client-{release.version}.tgz"
    (tmp_path / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    run("npm", "install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", str(tgz),
        cwd=tmp_path)
    (tmp_path / "read.mjs").write_text(READ_A_RESPONSE)
    recorded = harness.REPO_ROOT / "client" / "tests" / "recorded.json"
    state = json.loads(run("node", "read.mjs", str(recorded), cwd=tmp_path).stdout)
    assert (state["class"], state["state"], state["used"], state["limit"]) == (
        "drafts", "warning", 5, 10)


def test_the_quota_matrix_binary_validates_a_matrix(release):
    [binary] = [p for p in release.root.glob("quota-matrix-*") if p.suffix != ".sha256"]
    ok = run(str(binary), "validate", str(DEMO_PATH))
    assert ok.stdout.startswith(f"{DEMO_PATH}: valid (5 classes, 4 tiers)")
    bad = harness.REPO_ROOT / "matrix" / "tests" / "fixtures" / "soft-above-hard.json"
    refused = run(str(binary), "validate", str(bad), check=False)
    assert refused.returncode == 1
    assert "tiers.free.limits.drafts.hard: must be greater than soft (21)" in refused.stderr
