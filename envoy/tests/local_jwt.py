"""Tokens signed here, as an identity provider would sign them, and Envoy's
jwt_authn in front of the quota filter to verify them."""

import base64
import hashlib
import hmac
import json
import time

KEY = b"a-local-signing-key-32-bytes-abc"
ISSUER = "https://auth.example"
# Where jwt_authn's `payload_in_metadata: jwt_payload` puts the claims.
PAYLOAD = ["metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload"]


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(sub, plan="free", key=KEY, signed=True):
    """A JWT for `sub` on `plan`: HS256 with `key`, or unsigned (`alg: none`)."""
    header = b64(json.dumps({"alg": "HS256" if signed else "none", "typ": "JWT"}).encode())
    claims = {"iss": ISSUER, "sub": sub, "plan": plan, "exp": int(time.time()) + 600}
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()) if signed else ""
    return f"{header}.{payload}.{signature}"


def with_jwt_authn(bootstrap, **provider):
    """Puts jwt_authn, trusting tokens signed with KEY, before every other
    HTTP filter of the bootstrap's listener; `provider` adds to its provider
    (e.g. forward=True, payload_in_metadata="jwt_payload")."""
    manager = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": b64(KEY)}]})
    manager["http_filters"].insert(0, {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {"local": {"issuer": ISSUER, "local_jwks": {"inline_string": jwks}, **provider}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "local"}}],
        },
    })
    return bootstrap
