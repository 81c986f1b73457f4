"""A costly action asks first: 428 with the projected cost and what remains,
then the same request with the confirmation header goes through."""

from conftest import request
from quota_configs import CHAT, chat, one_class


def test_a_costly_request_is_refused_then_accepted_with_the_header(envoy):
    config = one_class(hard=20)
    config["classes"][0]["cost"] = {"fixed": 5}
    config["tiers"]["free"]["limits"]["drafts"]["confirm_above"] = 0.2
    proxy = envoy(config)
    ask = request(proxy, "POST", CHAT, headers={"x-user-id": "zed"}, json=chat())
    assert ask.status == 428
    assert ask.headers["x-quota-state"] == "confirmation_required"
    assert ask.headers["x-quota-used"] == "0"
    error = ask.json()["error"]
    assert error["code"] == "confirmation_required"
    assert error["message"] == ("This will use 5 drafts of the 20 you have left for today. "
                                "To go ahead, send it again with the header x-quota-confirm: yes.")
    assert (error["quota"]["requested"], error["quota"]["remaining"], error["quota"]["confirm_header"]) == (5, 20, "x-quota-confirm")

    go = request(proxy, "POST", CHAT, headers={"x-user-id": "zed", "x-quota-confirm": "yes"}, json=chat())
    assert (go.status, go.headers["x-quota-used"], go.headers["x-quota-cost"]) == (200, "5", "5")
    # The confirmation header is the filter's: the upstream never sees it.
    assert "x-quota-confirm" not in go.json()["mock_echo"]["headers"]
    # "no" is not a confirmation.
    assert request(proxy, "POST", CHAT, headers={"x-user-id": "zed", "x-quota-confirm": "no"}, json=chat()).status == 428
