"""Team pooling: a workspace-scoped cell is one counter for the whole team."""

from conftest import request
from quota_configs import CHAT, chat, one_class


def send(proxy, user, workspace=None):
    headers = {"x-user-id": user}
    if workspace:
        headers["x-workspace-id"] = workspace
    return request(proxy, "POST", CHAT, headers=headers, json=chat())


def test_a_workspace_shares_one_counter(envoy):
    proxy = envoy(one_class(hard=4, scope="workspace"))
    statuses = [send(proxy, user, "acme").status for user in ["ada", "bo", "ada", "cy"]]
    assert statuses == [200] * 4
    blocked = send(proxy, "dee", "acme")
    assert (blocked.status, blocked.headers["x-quota-scope"], blocked.headers["x-quota-used"]) == (429, "workspace", "4")
    # Another workspace has its own pool.
    other = send(proxy, "ada", "globex")
    assert (other.status, other.headers["x-quota-used"]) == (200, "1")


def test_a_caller_without_a_workspace_is_refused_the_pool(envoy):
    proxy = envoy(one_class(hard=1, scope="workspace"))
    refused = send(proxy, "solo")
    assert (refused.status, refused.headers["x-quota-state"], refused.headers["x-quota-scope"]) == (
        403, "workspace_required", "workspace")
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("workspace_required", "permission_error")
    assert error["message"].startswith("Your drafts are shared across your workspace")
    # Nothing was charged: the workspace's pool is whole.
    assert send(proxy, "solo", "acme").status == 200


def test_a_caller_without_a_workspace_counts_alone(envoy):
    config = one_class(hard=1, scope="workspace")
    config["identity"]["missing_workspace"] = "user"
    proxy = envoy(config)
    assert send(proxy, "solo").headers["x-quota-scope"] == "user"
    assert send(proxy, "solo").status == 429
    assert send(proxy, "other").status == 200
