"""Refusals in the format the client asks for."""

import pytest

from conftest import request
from quota_configs import CHAT, chat, one_class


@pytest.fixture
def exhausted(envoy):
    proxy = envoy(one_class(hard=1))
    request(proxy, "POST", CHAT, headers={"x-user-id": "xia"}, json=chat())
    return proxy


def blocked(proxy, accept):
    headers = {"x-user-id": "xia"}
    if accept:
        headers["accept"] = accept
    resp = request(proxy, "POST", CHAT, headers=headers, json=chat())
    assert resp.status == 429
    return resp


def test_the_default_is_an_openai_error_envelope(exhausted):
    for accept in [None, "*/*", "application/json"]:
        resp = blocked(exhausted, accept)
        assert resp.headers["content-type"] == "application/json"
        error = resp.json()["error"]
        assert error["message"].startswith("You've used your 1 draft for today. It resets in ")
        assert (error["type"], error["code"], error["param"]) == ("quota_exceeded", "quota_exceeded", None)


def test_problem_details_carry_the_quota_exceeded_type_and_violated_policy(exhausted):
    resp = blocked(exhausted, "application/problem+json")
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert problem["status"] == 429
    assert problem["violated-policies"] == ["drafts"]
    assert problem["detail"].startswith("You've used your 1 draft for today.")
    assert problem["quota"]["limit"] == 1


def test_browsers_get_a_small_page(exhausted):
    resp = blocked(exhausted, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    page = resp.text
    assert '<html lang="en">' in page
    assert "<h1>You&#39;ve reached your limit for drafts</h1>" in page
    assert "You&#39;ve used your 1 draft for today." in page
    assert f'<time datetime="{resp.headers["x-quota-reset"]}">' in page
