"""What Istio and Envoy Gateway hand Envoy for the quota filter.

Reads Kubernetes YAML (an Istio `WasmPlugin`, an Envoy Gateway
`EnvoyExtensionPolicy`) and returns the Envoy HTTP wasm filter those control
planes build from it, with the plugin configuration serialised exactly as they
serialise it. The end-to-end tests (tests/test_kubernetes.py) start Envoy with
it; you can run it to see what your filter will be given:

    .venv/bin/python envoy/controlplane.py deploy/envoy-gateway/extensionpolicy.yaml
    .venv/bin/python envoy/controlplane.py --configuration deploy/istio/wasmplugin.yaml > quota.json
    cargo run -q -p quota-matrix -- validate quota.json

What the control planes do to the configuration (the README's "Istio and
Envoy Gateway: the examples" names the sources):

- Every JSON object reaches the filter with its keys sorted (byte order): the
  Kubernetes API server keeps custom resources as Go maps and writes them with
  encoding/json, which sorts map keys; Istio's Struct is written by jsonpb,
  which sorts them too. The order you wrote is gone.
- Istio: `pluginConfig` is a google.protobuf.Struct, so every number is a
  double, written as Go's encoding/json writes a float64: 100 -> 100,
  86400 -> 86400, 0.5 -> 0.5, 1e21 -> 1e+21, 1e-7 -> 1e-7, and integers past
  2^53 rounded (9007199254740993 -> 9007199254740992).
- Envoy Gateway: `config` is raw JSON, as the API server stored it: integers
  that fit an int64 exact, every other number a float64 written as above
  (100.0 -> 100).
- Strings as Go writes them: `<`, `>` and `&` as \\u003c, \\u003e, \\u0026
  (the same text once parsed).
"""

import argparse
import hashlib
import json
import math
import re
import sys
from decimal import Decimal
from pathlib import Path

import yaml

WASM_FILTER = "envoy.filters.http.wasm"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
ROUTE_FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
V8 = "envoy.wasm.runtime.v8"

# Istio (istio/istio pilot/pkg/model/extensions.go, pkg/wasm/convert.go).
ISTIO_PHASES = ("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS")
ISTIO_FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}
# Since 1.30 a WasmPlugin becomes a TrafficExtension named <name> + this
# (pilot/pkg/config/kube/extensions/translate.go), and the plugin name with it.
ISTIO_TRANSLATED_SUFFIX = "~istio-translated-wasmplugin"
# Where istio-agent keeps the modules it pulled (pkg/wasm/cache.go).
ISTIO_MODULE_DIR = "/var/lib/istio/data"
# Istio's jwt_authn puts a verified token's claims here (pilot/pkg/xds/filters/filters.go).
ISTIO_JWT_PAYLOAD = "payload"

# Envoy Gateway (envoyproxy/gateway internal/xds/translator/wasm.go).
GATEWAY_WASM_CLUSTER = "wasm_cluster"
GATEWAY_FETCH_TIMEOUT = "10s"
GATEWAY_FETCH_RETRIES = {"num_retries": 10, "retry_back_off": {"base_interval": "1s", "max_interval": "30s"}}

INT64 = range(-(2 ** 63), 2 ** 63)
SHA256_HEX = re.compile(r"^[a-f0-9]{64}$")


class ControlPlaneError(ValueError):
    """A resource the control plane would refuse (or drop with a warning)."""


# --------------------------------------------------------------------------
# YAML as kubectl reads it
# --------------------------------------------------------------------------

class KubeYamlLoader(yaml.SafeLoader):
    """YAML 1.1 as kubectl reads it (go-yaml): like PyYAML's safe loader, but
    `1e21` is a float (go-yaml needs no dot) and dates stay strings."""


KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))
KubeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in KubeYamlLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text):
    """Every non-empty YAML document of `text`, in order."""
    return [doc for doc in yaml.load_all(text, Loader=KubeYamlLoader) if doc]


def load_documents(*paths):
    """Every non-empty YAML document of the files, in order."""
    return [doc for path in paths for doc in load_yaml(Path(path).read_text(encoding="utf-8"))]


# --------------------------------------------------------------------------
# JSON as Go writes it
# --------------------------------------------------------------------------

def go_float(value):
    """A float64 as Go's encoding/json writes it (ES6 style): plain digits
    from 1e-6 up to 1e21, else an exponent; the shortest digits that read
    back as the same double."""
    try:
        f = float(value)
    except OverflowError:
        raise ControlPlaneError(f"{value} is too large for a double") from None
    if math.isnan(f) or math.isinf(f):
        raise ControlPlaneError(f"{value!r} is not a JSON number")
    digits = Decimal(repr(f)).normalize()
    if f == 0 or 1e-6 <= abs(f) < 1e21:
        return format(digits, "f")
    sign, mantissa, exponent = digits.as_tuple()
    text = "".join(map(str, mantissa))
    power = exponent + len(text) - 1
    body = text[0] + ("." + text[1:] if len(text) > 1 else "")
    # strconv writes at least two exponent digits; encoding/json drops the 0 of e-07.
    written = f"{'-' if sign else ''}{body}e{'-' if power < 0 else '+'}{abs(power):02d}"
    return re.sub(r"e-0(\d)$", r"e-\1", written)


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def go_string(text):
    """A string as Go's encoding/json writes it (HTML-safe, the default)."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch in "<>&\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def go_json(value, number):
    """Compact JSON with object keys sorted, strings as Go writes them, and
    each number written by `number` (an int or a float -> text)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, list):
        return "[" + ",".join(go_json(v, number) for v in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ControlPlaneError(f"object key {key!r} is not a string (quote it in the YAML)")
        # Go compares strings bytewise; for valid UTF-8 that is code point order.
        return "{" + ",".join(f"{go_string(k)}:{go_json(value[k], number)}" for k in sorted(value)) + "}"
    raise ControlPlaneError(f"{value!r} ({type(value).__name__}) cannot be written as JSON")


def struct_number(value):
    """google.protobuf.Struct keeps every number as a double."""
    return go_float(value)


def kube_number(value):
    """The API server keeps an integer that fits an int64 as one, any other
    number as a float64 (sigs.k8s.io/json's UnmarshalCaseSensitivePreserveInts)."""
    if isinstance(value, int) and value in INT64:
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
        return str(int(value))  # `100.0` in YAML reaches the API server as `100`
    return go_float(value)


def istio_configuration(plugin_config):
    """The configuration text Istio gives the filter for a WasmPlugin's pluginConfig."""
    return go_json(plugin_config, struct_number)


def gateway_configuration(config):
    """The configuration text Envoy Gateway gives the filter for a Wasm's config."""
    return go_json(config, kube_number)


# --------------------------------------------------------------------------
# Istio WasmPlugin
# --------------------------------------------------------------------------

def _metadata(doc):
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ControlPlaneError(f"{doc.get('kind')} without metadata.name")
    return name, meta.get("namespace", "default")


def istio_filter(doc, *, wasm_file, release=(1, 30)):
    """The HTTP filter Istio's proxy runs for a WasmPlugin: Envoy gets it by
    ECDS; istio-agent pulls the module first and points Envoy at its local
    copy (`wasm_file`, which stands for that copy here).

    Returns {"name", "phase", "priority", "typed_config"}: the filter as Envoy
    sees it once the agent rewrote it, plus where Istio puts it.
    release: Istio's minor version; from 1.30 the plugin name carries the
    suffix of the TrafficExtension the WasmPlugin is translated into.
    """
    if doc.get("kind") != "WasmPlugin" or not str(doc.get("apiVersion", "")).startswith("extensions.istio.io/"):
        raise ControlPlaneError(f"not an Istio WasmPlugin: {doc.get('apiVersion')}/{doc.get('kind')}")
    name, namespace = _metadata(doc)
    spec = doc.get("spec") or {}
    url = spec.get("url")
    if not url:
        raise ControlPlaneError("spec.url is required")
    scheme = url.split("://", 1)[0] if "://" in url else "oci"
    if scheme not in ("oci", "file", "http", "https"):
        raise ControlPlaneError(f"spec.url: scheme {scheme!r} is not one of oci, file, http, https")
    sha256 = spec.get("sha256", "")
    if sha256 and not SHA256_HEX.match(sha256):
        raise ControlPlaneError(f"spec.sha256 must be 64 lowercase hex digits, got {sha256!r}")
    if spec.get("type", "HTTP") not in ("HTTP", "UNSPECIFIED_PLUGIN_TYPE"):
        raise ControlPlaneError("spec.type must be HTTP for an HTTP filter")
    phase = spec.get("phase", "UNSPECIFIED_PHASE")
    if phase not in ISTIO_PHASES:
        raise ControlPlaneError(f"spec.phase must be one of {', '.join(ISTIO_PHASES)}, got {phase!r}")
    fail = spec.get("failStrategy", "FAIL_CLOSE")
    if fail not in ISTIO_FAILURE_POLICY:
        raise ControlPlaneError(f"spec.failStrategy must be one of {', '.join(ISTIO_FAILURE_POLICY)}")

    resource = name + (ISTIO_TRANSLATED_SUFFIX if release >= (1, 30) else "")
    plugin_config = spec.get("pluginConfig")
    if plugin_config is not None and not isinstance(plugin_config, dict):
        raise ControlPlaneError("spec.pluginConfig must be an object (a google.protobuf.Struct)")
    config = {"name": f"{namespace}.{resource}"}
    if spec.get("pluginName"):
        config["root_id"] = spec["pluginName"]
    # No vm_id: Istio has no field for one; every WasmPlugin runs with vm_id "".
    vm_config = {"runtime": V8, "code": {"local": {"filename": str(wasm_file)}}}
    env = (spec.get("vmConfig") or {}).get("env") or []
    inline = {e["name"]: e.get("value", "") for e in env if e.get("valueFrom", "INLINE") == "INLINE"}
    host = [e["name"] for e in env if e.get("valueFrom") == "HOST"]
    if inline or host:
        vm_config["environment_variables"] = {
            **({"key_values": inline} if inline else {}), **({"host_env_keys": host} if host else {})}
    config["vm_config"] = vm_config
    if plugin_config:
        config["configuration"] = {"@type": STRING_VALUE, "value": istio_configuration(plugin_config)}
    config["failure_policy"] = ISTIO_FAILURE_POLICY[fail]
    # No allow_on_headers_stop_iteration: neither WasmPlugin nor Istio sets it.
    kind = "trafficextension" if release >= (1, 30) else "wasmplugin"
    return {
        "name": f"extensions.istio.io/{kind}/{namespace}.{resource}",
        "phase": phase,
        "priority": spec.get("priority", 0),
        "typed_config": {"@type": WASM_TYPE, "config": config},
    }


def istio_module_path(url, digest):
    """Where istio-agent keeps a pulled module (pkg/wasm/cache.go): a
    directory named by the sha256 of the module's name (an oci:// URL without
    its tag or digest), the file by the module's checksum."""
    name = url if "://" in url else "oci://" + url
    if name.startswith("oci://"):
        name = name.split("@", 1)[0]
        head, _, last = name.rpartition("/")
        name = f"{head}/{last.split(':', 1)[0]}"
    return f"{ISTIO_MODULE_DIR}/{hashlib.sha256(name.encode()).hexdigest()}/{digest}.wasm"


# --------------------------------------------------------------------------
# Envoy Gateway EnvoyExtensionPolicy
# --------------------------------------------------------------------------

def gateway_filters(doc, *, serving_url, wasm_sha256):
    """The HTTP filters Envoy Gateway adds for an EnvoyExtensionPolicy: one
    per entry of spec.wasm, in the listener's filter chain disabled, and
    enabled on each route the policy targets (`route_config`).

    Envoy Gateway pulls the module itself and serves it to Envoy from its own
    HTTP server (cluster `wasm_cluster`) with the sha256 of the .wasm file:
    `serving_url` and `wasm_sha256` stand for those.
    Returns [{"name", "filter", "route_config", "target_refs"}].
    """
    if doc.get("kind") != "EnvoyExtensionPolicy" or not str(doc.get("apiVersion", "")).startswith(
            "gateway.envoyproxy.io/"):
        raise ControlPlaneError(f"not an EnvoyExtensionPolicy: {doc.get('apiVersion')}/{doc.get('kind')}")
    name, namespace = _metadata(doc)
    spec = doc.get("spec") or {}
    wasms = spec.get("wasm") or []
    if not wasms:
        raise ControlPlaneError("spec.wasm is empty")
    out = []
    for index, wasm in enumerate(wasms):
        code = wasm.get("code") or {}
        kind = code.get("type")
        if kind not in ("HTTP", "Image"):
            raise ControlPlaneError(f"spec.wasm[{index}].code.type must be HTTP or Image")
        if not (code.get("http") if kind == "HTTP" else code.get("image")):
            raise ControlPlaneError(f"spec.wasm[{index}].code: type {kind} needs its {kind.lower()} field")
        ir_name = f"envoyextensionpolicy/{namespace}/{name}/wasm/{index}"
        config = {"name": wasm.get("name") or ir_name}
        if wasm.get("rootID"):
            config["root_id"] = wasm["rootID"]
        vm_config = {
            "vm_id": ir_name,  # one VM (and one shared-data namespace) per policy entry
            "runtime": V8,
            "code": {"remote": {
                "http_uri": {"uri": serving_url, "cluster": GATEWAY_WASM_CLUSTER, "timeout": GATEWAY_FETCH_TIMEOUT},
                "sha256": wasm_sha256,
                "retry_policy": GATEWAY_FETCH_RETRIES,
            }},
        }
        host_keys = (wasm.get("env") or {}).get("hostKeys")
        if host_keys:
            vm_config["environment_variables"] = {"host_env_keys": host_keys}
        config["vm_config"] = vm_config
        raw = wasm.get("config")
        config["configuration"] = {"@type": STRING_VALUE,
                                   "value": "" if raw is None else gateway_configuration(raw)}
        if wasm.get("failOpen"):
            config["fail_open"] = True
        # No allow_on_headers_stop_iteration: the Wasm type has no field for it.
        filter_name = f"{WASM_FILTER}/{ir_name}"
        out.append({
            "name": filter_name,
            "filter": {"name": filter_name, "disabled": True,
                       "typed_config": {"@type": WASM_TYPE, "config": config}},
            "route_config": {filter_name: {"@type": ROUTE_FILTER_CONFIG, "config": {}}},
            "target_refs": spec.get("targetRefs") or ([spec["targetRef"]] if spec.get("targetRef") else []),
        })
    return out


# --------------------------------------------------------------------------
# The token checks in front of the filter
# --------------------------------------------------------------------------

JWT_FILTER = "envoy.filters.http.jwt_authn"
JWT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"


def istio_jwt_filter(doc, *, jwks):
    """Istio's jwt_authn for a RequestAuthentication (pilot/pkg/security/authn/
    policy_applier.go): each rule a provider `origins-<i>` whose claims go to
    metadata key `payload`; a bad token is refused, a missing one allowed.
    `jwks` (JSON text) stands for the keys istiod or Envoy fetch from jwksUri."""
    if doc.get("kind") != "RequestAuthentication":
        raise ControlPlaneError(f"not a RequestAuthentication: {doc.get('kind')}")
    providers, any_of = {}, []
    for i, rule in enumerate((doc.get("spec") or {}).get("jwtRules") or []):
        name = f"origins-{i}"
        providers[name] = {
            "issuer": rule["issuer"],
            **({"audiences": rule["audiences"]} if rule.get("audiences") else {}),
            "forward": bool(rule.get("forwardOriginalToken", False)),
            "payload_in_metadata": ISTIO_JWT_PAYLOAD,
            "local_jwks": {"inline_string": jwks},
        }
        any_of.append({"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}})
    if not providers:
        raise ControlPlaneError("spec.jwtRules is empty")
    requires = any_of[0] if len(any_of) == 1 else {"requires_all": {"requirements": any_of}}
    return {"name": JWT_FILTER, "typed_config": {
        "@type": JWT_TYPE, "providers": providers,
        "rules": [{"match": {"prefix": "/"}, "requires": requires}]}}


def gateway_jwt_filter(doc, *, jwks, prefix="/"):
    """Envoy Gateway's jwt_authn for a SecurityPolicy's jwt providers
    (internal/xds/translator/jwt.go): the claims go to metadata under the
    provider's name, the token is forwarded, and a request without a valid
    token is refused (on the routes under `prefix`, standing for the policy's
    targets). `jwks` (JSON text) stands for the keys fetched from remoteJWKS."""
    if doc.get("kind") != "SecurityPolicy":
        raise ControlPlaneError(f"not a SecurityPolicy: {doc.get('kind')}")
    providers = {}
    for provider in ((doc.get("spec") or {}).get("jwt") or {}).get("providers") or []:
        providers[provider["name"]] = {
            "issuer": provider.get("issuer", ""),
            **({"audiences": provider["audiences"]} if provider.get("audiences") else {}),
            "forward": True,
            "payload_in_metadata": provider["name"],
            "local_jwks": {"inline_string": jwks},
        }
    if not providers:
        raise ControlPlaneError("spec.jwt.providers is empty")
    names = list(providers)
    requires = ({"provider_name": names[0]} if len(names) == 1 else
                {"requires_any": {"requirements": [{"provider_name": n} for n in names]}})
    return {"name": JWT_FILTER, "typed_config": {
        "@type": JWT_TYPE, "providers": providers,
        "rules": [{"match": {"prefix": prefix}, "requires": requires}]}}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def configurations(doc):
    """The configuration text(s) a resource's filter gets (no other checks)."""
    spec = doc.get("spec") or {}
    if doc.get("kind") == "WasmPlugin":
        return [istio_configuration(spec["pluginConfig"])] if spec.get("pluginConfig") else [""]
    if doc.get("kind") == "EnvoyExtensionPolicy":
        return ["" if w.get("config") is None else gateway_configuration(w["config"]) for w in spec.get("wasm") or []]
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="Kubernetes YAML files")
    parser.add_argument("--configuration", action="store_true",
                        help="print only the configuration text the filter gets, one per line")
    parser.add_argument("--wasm", default="target/wasm32-wasip1/release/quota_filter.wasm",
                        help="the .wasm file (its sha256 stands for the one Envoy checks)")
    parser.add_argument("--istio-release", default="1.30", help="Istio's minor version (default 1.30)")
    args = parser.parse_args(argv)
    release = tuple(int(p) for p in args.istio_release.split(".")[:2])
    wasm = Path(args.wasm)
    digest = hashlib.sha256(wasm.read_bytes()).hexdigest() if wasm.exists() else "0" * 64
    try:
        for doc in load_documents(*args.files):
            if args.configuration:
                for text in configurations(doc):
                    print(text)
                continue
            if doc.get("kind") == "WasmPlugin":
                spec = doc.get("spec") or {}
                path = istio_module_path(spec.get("url", ""), spec.get("sha256") or digest)
                print(json.dumps(istio_filter(doc, wasm_file=path, release=release), indent=2))
            elif doc.get("kind") == "EnvoyExtensionPolicy":
                url = f"https://envoy-gateway.envoy-gateway-system.svc.cluster.local:18002/{digest}.wasm"
                for entry in gateway_filters(doc, serving_url=url, wasm_sha256=digest):
                    print(json.dumps({"http_filter": entry["filter"], "route": entry["route_config"]}, indent=2))
    except (ControlPlaneError, KeyError, yaml.YAMLError) as err:
        print(f"controlplane.py: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
