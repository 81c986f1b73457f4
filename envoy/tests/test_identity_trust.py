"""The recommended setup: Envoy's jwt_authn verifies a signed token and the
filter reads the caller from its metadata, so a client cannot choose its own
user id or tier."""

import base64
import hashlib
import hmac
import json
import time

import harness
from conftest import request
from quota_configs import CHAT, chat, one_class

KEY = b"a-local-signing-key-32-bytes-abc"
ISSUER = "https://auth.example"
PAYLOAD = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload"]


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(sub, plan="free", key=KEY):
    """An HS256 JWT signed here, as an identity provider would."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"iss": ISSUER, "sub": sub, "plan": plan, "exp": int(time.time()) + 600}
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"Bearer {header}.{payload}.{signature}"


def jwt_protected_envoy(upstream, started):
    config = one_class(hard=2, tiers=("free", "pro"))
    config["identity"] = {
        "user": [{"property": PAYLOAD + ["sub"]}],
        "tier": [{"property": PAYLOAD + ["plan"]}],
        "default_tier": "free",
    }
    bootstrap = harness.render_bootstrap(upstream_port=upstream.port, filter_config=config)
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": b64(KEY)}]})
    manager["http_filters"].insert(0, {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"local": {"issuer": ISSUER, "local_jwks": {"inline_string": jwks},
                                    "payload_in_metadata": "jwt_payload"}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "local"}}],
        },
    })
    envoy = harness.start_bootstrap(bootstrap)
    started.append(envoy)
    return envoy


def test_the_caller_is_who_the_verified_token_says(upstream):
    started = []
    try:
        proxy = jwt_protected_envoy(upstream, started)
        mallory = token("mallory", plan="free")
        # Headers a client sends cannot pick another user or a better tier.
        resp = request(proxy, "POST", CHAT, json=chat(),
                       headers={"authorization": mallory, "x-user-id": "victim", "x-plan": "pro"})
        assert (resp.status, resp.headers["x-quota-tier"], resp.headers["x-quota-used"]) == (200, "free", "1")
        assert request(proxy, "GET", "/v1/quota", headers={"authorization": mallory}).json()["user"] == "mallory"
        victim = request(proxy, "GET", "/v1/quota", headers={"authorization": token("victim")}).json()
        assert victim["classes"][0]["used"] == 0
        # The plan claim sets the tier.
        pro = request(proxy, "POST", CHAT, json=chat(), headers={"authorization": token("pia", plan="pro")})
        assert pro.headers["x-quota-tier"] == "pro"
        # A token this issuer did not sign, or none, never reaches the filter.
        forged = token("mallory", plan="pro", key=b"x" * 32)
        assert request(proxy, "POST", CHAT, json=chat(), headers={"authorization": forged}).status == 401
        assert request(proxy, "POST", CHAT, json=chat()).status == 401
    finally:
        for envoy in started:
            envoy.stop()
