"""Limits in money: a $1.00 daily budget spent by a mix of models, JSON and
streamed, reserved at admission from the price table, settled to the price of
what the upstream reported, and refused before it runs when it cannot fit."""

import http.client
import json
import math

from conftest import request, sse_events
from quota_configs import CHAT, one_class

PRICES = {  # dollars per million tokens: (input, output)
    "gpt-4o": ("2.50", "10.00"),
    "gpt-4o-mini": ("0.15", "0.60"),
}
CONTENT = "one two three four five six seven eight"  # the mock counts 8 prompt tokens


def micros_per_million(text):
    whole, _, cents = text.partition(".")
    return int(whole) * 1_000_000 + int(cents.ljust(6, "0"))


def price(model, input_tokens, output_tokens):
    """What the filter charges, in micro-dollars: each kind at its price per
    million tokens, summed, divided once and rounded up."""
    p_in, p_out = (micros_per_million(p) for p in PRICES[model])
    return math.ceil((input_tokens * p_in + output_tokens * p_out) / 1_000_000)


def reservation(model, max_tokens):
    # The prompt estimated at 4 characters a token, the budget at the output price.
    return price(model, math.ceil(len(CONTENT) / 4), max_tokens)


def decimal_text(micros):
    """The filter's decimal text of an amount: cents, and more digits only when needed."""
    whole, frac = divmod(micros, 1_000_000)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{whole}.{digits}"


def dollars(micros, down=False):
    """The copy's "$0.47": cents, half up (down for what is left); a cost is
    written exactly ("$0.500025")."""
    cents = micros // 10_000 if down else (micros + 5_000) // 10_000
    return f"${cents // 100}.{cents % 100:02d}"


def priced_config():
    config = one_class(hard=100, hold_headers_for_body=True)  # 100 cents: $1.00 a day
    config["prices"] = {"currency": "USD", "models": {m: {"input": i, "output": o} for m, (i, o) in PRICES.items()}}
    drafts = config["classes"][0]
    drafts["match"][0]["body"] = [{"field": "model", "one_of": list(PRICES)}]
    drafts["cost"] = {"price": {"default_max_tokens": 1000}}
    return config


def ask(proxy, model, max_tokens, completion, stream=False):
    body = {"model": model, "messages": [{"role": "user", "content": CONTENT}], "max_tokens": max_tokens,
            "stream": stream}
    headers = {"x-user-id": "mia", "x-mock-completion-tokens": str(completion), "x-mock-chunk-delay-ms": "0",
               "content-type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request("POST", CHAT, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def usage(proxy):
    report = request(proxy, "GET", "/v1/quota", headers={"x-user-id": "mia"}).json()
    return report["classes"][0]


def test_a_dollar_a_day_is_spent_at_the_price_of_what_the_upstream_reported(envoy):
    proxy = envoy(priced_config(), hold_headers=True)
    spent = 0
    mix = [("gpt-4o", 2000, 1500, False), ("gpt-4o-mini", 4000, 3800, True), ("gpt-4o", 8000, 7000, True),
           ("gpt-4o-mini", 1000, 900, False), ("gpt-4o", 20000, 19000, False), ("gpt-4o", 30000, 25000, True)]
    for model, max_tokens, completion, stream in mix:
        status, headers, body = ask(proxy, model, max_tokens, completion, stream)
        assert status == 200, body
        # Reserved at admission, in dollars: the prompt and the whole budget.
        assert headers["x-quota-currency"] == "USD"
        assert headers["x-quota-cost"] == decimal_text(reservation(model, max_tokens))
        if stream:
            assert sse_events(body)[-1] == "[DONE]"
        # Settled to the price of the reported usage: 8 prompt tokens, `completion` out.
        spent += price(model, 8, completion)
        assert usage(proxy)["used"] == spent
    cls = usage(proxy)
    assert cls["money"]["currency"] == "USD"
    assert cls["money"]["limit"] == "$1.00"
    # The budget left cannot take a 50,000-token gpt-4o answer: refused
    # before it runs, in dollars, and nothing more is spent.
    left = 1_000_000 - spent
    needs = reservation("gpt-4o", 50000)
    assert needs > left
    status, headers, body = ask(proxy, "gpt-4o", 50000, 1)
    assert status == 429, body
    error = json.loads(body)["error"]
    assert error["message"].startswith(
        f"This needs ${decimal_text(needs)}, but you have {dollars(left, down=True)} left for today."), error
    assert error["quota"]["money"]["remaining"] == dollars(left, down=True)
    assert headers["ratelimit"].startswith(f'"drafts";r={left // 10_000};')
    assert headers["ratelimit-policy"] == '"drafts";q=100;w=86400'
    assert usage(proxy)["used"] == spent
    # A small gpt-4o-mini request still fits.
    status, _, _ = ask(proxy, "gpt-4o-mini", 1000, 10)
    assert status == 200
    assert usage(proxy)["used"] == spent + price("gpt-4o-mini", 8, 10)
