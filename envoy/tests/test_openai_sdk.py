"""The official OpenAI Python SDK shows the filter's sentence as the error."""

import openai
import pytest

from quota_configs import demo


def test_the_sdk_surfaces_the_human_message(envoy):
    proxy = envoy(demo(), hold_headers=True)
    client = openai.OpenAI(base_url=proxy.url("/v1"), api_key="unused", max_retries=0,
                           default_headers={"x-user-id": "yara"})
    for _ in range(5):
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Sum up"}])
        assert reply.model == "gpt-4o-mini"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Sum up"}])
    err = caught.value
    assert err.status_code == 429
    assert err.message.startswith("Error code: 429 - ") or err.message.startswith("You've used")
    assert "You've used your 5 summaries for today. They reset in " in str(err)
    assert err.body["quota"]["class"] == "summaries"


def test_at_its_default_retries_the_sdk_asks_once_at_the_wall(envoy):
    # x-should-retry: false: the SDK's two automatic retries (with backoff)
    # are not spent on a wall that resets hours from now.
    proxy = envoy(demo(), hold_headers=True)
    client = openai.OpenAI(base_url=proxy.url("/v1"), api_key="unused", default_headers={"x-user-id": "zoe"})
    assert client.max_retries == 2
    for _ in range(5):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Sum up"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Sum up"}])
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert "You've used your 5 summaries for today." in str(caught.value)
    blocked = proxy.stats(filter=r"wasmcustom\.quota\.summaries\.free\.blocked")
    assert blocked == {"wasmcustom.quota.summaries.free.blocked": 1}, blocked
