"""The recommended setup: Envoy's jwt_authn verifies a signed token and the
filter reads the caller from its metadata, so a client cannot choose its own
user id or tier."""

import harness
from conftest import request
from local_jwt import KEY, PAYLOAD, jwt, with_jwt_authn
from quota_configs import CHAT, chat, one_class


def token(sub, plan="free", key=KEY):
    """The authorization header of a token signed here."""
    return f"Bearer {jwt(sub, plan, key)}"


def jwt_protected_envoy(upstream, started):
    config = one_class(hard=2, tiers=("free", "pro"))
    config["identity"] = {
        "user": [{"property": PAYLOAD + ["sub"]}],
        "tier": [{"property": PAYLOAD + ["plan"]}],
        "default_tier": "free",
    }
    bootstrap = harness.render_bootstrap(upstream_port=upstream.port, filter_config=config)
    with_jwt_authn(bootstrap, payload_in_metadata="jwt_payload")
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
