"""The official OpenAI Python SDK shows the filter's sentence as the error."""

import openai
import pytest

from quota_configs import demo, sdk_classes
from sdk_helpers import Seen, downstream_requests, mock_id, reached_upstream, used


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
    expected = {"wasmcustom.quota.summaries.free.blocked": 1}
    blocked = proxy.wait_for_stats(r"wasmcustom\.quota\.summaries\.free\.blocked", lambda s: s == expected)
    assert blocked == expected, blocked


def test_a_blocked_call_is_one_request_to_envoy(envoy, upstream):
    # At its default retries the SDK sends the refused request once: Envoy
    # saw one request, the upstream none, and the SDK raised at once (one
    # response, no backoff in between).
    proxy = envoy(sdk_classes())
    seen = Seen()
    mid = mock_id()
    client = openai.OpenAI(base_url=proxy.url("/v1"), api_key="unused",
                           default_headers={"x-user-id": "olga", "x-mock-id": mid},
                           http_client=openai.DefaultHttpxClient(event_hooks={"response": [seen.hook]}))
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Draft"}])
    before = downstream_requests(proxy)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Draft"}])
    assert downstream_requests(proxy) - before == 1
    assert seen.statuses() == [200, 200, 200, 429]
    assert reached_upstream(upstream, mid) == 3
    assert "You've used your 3 drafts for today." in str(caught.value)
    assert caught.value.body["code"] == "quota_exceeded"


def test_a_busy_provider_reaches_the_sdk_as_busy_and_never_counts(envoy, upstream):
    # The provider's own 429 (the mock's, steered by a header only the mock
    # reads): the SDK retries it (x-should-retry: true, after the upstream's
    # Retry-After), and every attempt leaves the caller's counter as it was.
    proxy = envoy(sdk_classes())
    seen = Seen()
    mid = mock_id()
    client = openai.OpenAI(base_url=proxy.url("/v1"), api_key="unused",
                           default_headers={"x-user-id": "pia", "x-mock-id": mid},
                           http_client=openai.DefaultHttpxClient(event_hooks={"response": [seen.hook]}))
    assert client.max_retries == 2
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Draft"}])
    assert used(proxy, "pia", "drafts") == 1
    busy = client.with_options(default_headers={"x-mock-status": "429", "x-mock-retry-after": "1"})
    requests_before = downstream_requests(proxy)
    with pytest.raises(openai.RateLimitError) as caught:
        busy.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Draft"}])
    err = caught.value
    assert "The model is busy right now" in str(err)
    assert "didn't count against your allowance" in str(err)
    assert err.body["code"] == "upstream_busy"
    assert err.body["quota"]["cost"] == 0
    assert err.response.headers["x-should-retry"] == "true"
    assert err.response.headers["retry-after"] == "1"
    # The first call, then the busy one and its two retries: all reached the provider.
    assert seen.statuses() == [200, 429, 429, 429]
    assert reached_upstream(upstream, mid) == 4
    assert downstream_requests(proxy) - requests_before == 3
    # Each busy answer showed the standing the 200 left, and so does the meter.
    assert seen.header("x-quota-used") == ["1", "1", "1", "1"]
    assert seen.header("x-quota-cost")[1:] == ["0", "0", "0"]
    assert used(proxy, "pia", "drafts") == 1
    expected = {"wasmcustom.quota.drafts.free.upstream_busy": 3, "wasmcustom.quota.drafts.free.blocked": 0}
    stats = proxy.wait_for_stats(r"wasmcustom\.quota\.drafts\.free\.(upstream_busy|blocked)$",
                                 lambda s: s == expected)
    assert stats == expected
    # The allowance is untouched: two more drafts fit before the wall.
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Draft"}])
    assert used(proxy, "pia", "drafts") == 3
