"""What the SDK tests count: the requests a client sent through Envoy (its
own responses, seen by an httpx event hook), the requests that reached the
mock upstream, and a caller's usage as the usage endpoint reports it."""

import json
import uuid

from conftest import request


class Seen:
    """Every response the SDK's HTTP client received, in order: an httpx
    `response` event hook (the SDKs' retries each go through it)."""

    def __init__(self):
        self.responses = []

    def hook(self, response):
        self.responses.append((response.status_code, dict(response.headers)))

    def statuses(self):
        return [status for status, _ in self.responses]

    def header(self, name):
        return [headers.get(name) for _, headers in self.responses]


def mock_id():
    """A fresh id for the mock's `x-mock-id` (what reached the upstream)."""
    return f"sdk-{uuid.uuid4().hex}"


def reached_upstream(upstream, mid):
    """How many requests with `x-mock-id: mid` reached the mock upstream."""
    return json.loads(request(upstream, "GET", f"/__mock/seen/{mid}").body)["seen"]


def used(proxy, user, class_name):
    """`used` of one class in the caller's usage report (GET /v1/quota)."""
    report = request(proxy, "GET", "/v1/quota", headers={"x-user-id": user}).json()
    return {c["class"]: c.get("used") for c in report["classes"]}[class_name]


def downstream_requests(proxy):
    """Requests Envoy received from clients (its own stat)."""
    return proxy.stats(filter=r"^http\.ingress_http\.downstream_rq_total$")["http.ingress_http.downstream_rq_total"]
