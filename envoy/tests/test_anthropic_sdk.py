"""The official Anthropic Python SDK, at its default retries, against the
filter on Anthropic's Messages path: the filter's refusals come in
Anthropic's error envelope, so the SDK raises the error class it would for
the API itself with the filter's sentence, and asks once at the wall; a
provider's own busy answer reaches it as "busy", retried, never charged."""

import anthropic
import pytest

from quota_configs import sdk_classes
from sdk_helpers import Seen, downstream_requests, mock_id, reached_upstream, used


def client_for(proxy, user, seen, **headers):
    return anthropic.Anthropic(
        base_url=proxy.url(""), api_key="unused",
        default_headers={"x-user-id": user, **headers},
        http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [seen.hook]}),
    )


def ask(client):
    return client.messages.create(model="claude-mock-1", max_tokens=64,
                                  messages=[{"role": "user", "content": "Sum up the meeting"}])


def test_at_its_default_retries_the_sdk_asks_once_at_the_wall(envoy, upstream):
    proxy = envoy(sdk_classes())
    seen = Seen()
    mid = mock_id()
    client = client_for(proxy, "ada", seen, **{"x-mock-id": mid})
    assert client.max_retries == 2
    for _ in range(2):
        reply = ask(client)
        assert reply.content[0].text == "This is a mock reply."
    before = downstream_requests(proxy)
    with pytest.raises(anthropic.RateLimitError) as caught:
        ask(client)
    err = caught.value
    # One request reached Envoy, none the provider, and one response came back.
    assert downstream_requests(proxy) - before == 1
    assert reached_upstream(upstream, mid) == 2
    assert seen.statuses() == [200, 200, 429]
    assert err.status_code == 429
    assert err.response.headers["x-should-retry"] == "false"
    # Anthropic's envelope: the SDK reads its type and message.
    assert err.body["type"] == "error"
    assert err.body["error"]["type"] == "rate_limit_error"
    assert err.body["error"]["message"].startswith("You've used your 2 messages for today. They reset in ")
    assert "You've used your 2 messages for today." in str(err)
    assert err.body["error"]["quota"]["class"] == "messages"
    assert err.body["error"]["quota"]["used"] == 2
    expected = {"wasmcustom.quota.messages.free.blocked": 1}
    stats = proxy.wait_for_stats(r"wasmcustom\.quota\.messages\.free\.blocked$", lambda s: s == expected)
    assert stats == expected


@pytest.mark.parametrize("status, error_class, kind", [
    ("529", anthropic.OverloadedError, "overloaded_error"),
    ("429", anthropic.RateLimitError, "rate_limit_error"),
])
def test_a_busy_provider_reaches_the_sdk_as_busy_and_never_counts(envoy, upstream, status, error_class, kind):
    proxy = envoy(sdk_classes())
    seen = Seen()
    mid = mock_id()
    client = client_for(proxy, "bo", seen, **{"x-mock-id": mid})
    ask(client)
    assert used(proxy, "bo", "messages") == 1
    busy = client.with_options(default_headers={"x-mock-status": status, "x-mock-retry-after": "1"})
    before = downstream_requests(proxy)
    with pytest.raises(error_class) as caught:
        ask(busy)
    err = caught.value
    assert err.status_code == int(status)
    assert err.body["error"]["type"] == kind
    assert err.body["error"]["code"] == "upstream_busy"
    assert err.body["error"]["message"].startswith("The model is busy right now")
    assert "didn't count against your allowance" in str(err)
    assert err.response.headers["x-should-retry"] == "true"
    # The busy call and the SDK's two retries all reached the provider and
    # each left the counter where the first call put it.
    assert downstream_requests(proxy) - before == 3
    assert reached_upstream(upstream, mid) == 4
    assert seen.statuses() == [200] + [int(status)] * 3
    assert seen.header("x-quota-used") == ["1"] * 4
    assert used(proxy, "bo", "messages") == 1
    expected = {"wasmcustom.quota.messages.free.upstream_busy": 3}
    stats = proxy.wait_for_stats(r"wasmcustom\.quota\.messages\.free\.upstream_busy$", lambda s: s == expected)
    assert stats == expected
    # The allowance is whole: one more message fits.
    ask(client)
    assert used(proxy, "bo", "messages") == 2
