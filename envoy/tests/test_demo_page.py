"""The demo page (envoy/demo/) in headless Chromium against real Envoy.

The page is served by Envoy beside the API (same origin, the quota filter off
for /demo/), imports the client package built by `make client`, and is driven
by client/tests/browser/demo_page.mjs (playwright-core, Debian's Chromium): a
free user writes drafts until the wall; the page must show the meter filling,
the warnings, the block message with its reset time and upgrade link, and,
with the drafts window shortened to 20 seconds here, the reset by itself; a
Pro user asks the premium model (client/tests/browser/money_meter.mjs) and the
meter reads money.
Screenshots land in .run/screenshots/.
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import request
import harness

SCRIPT = harness.REPO_ROOT / "client" / "tests" / "browser" / "demo_page.mjs"
STACKED_SCRIPT = harness.REPO_ROOT / "client" / "tests" / "browser" / "stacked_meters.mjs"
MONEY_SCRIPT = harness.REPO_ROOT / "client" / "tests" / "browser" / "money_meter.mjs"
PLAYWRIGHT = harness.REPO_ROOT / "client" / "node_modules" / "playwright-core"
SCREENSHOTS = harness.REPO_ROOT / ".run" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DEMO_CONFIG = harness.REPO_ROOT / "envoy" / "demo-config.json"


def demo_config(**changes):
    config = json.loads(DEMO_CONFIG.read_text())
    config.update(changes)
    return config


def require_browser_tools():
    missing = []
    if not (harness.CLIENT_PKG / "quota_client.js").exists():
        missing.append(f"{harness.CLIENT_PKG}/quota_client.js (`make client`)")
    if not PLAYWRIGHT.exists():
        missing.append(f"{PLAYWRIGHT} (`make setup-node`)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (`make setup-browser`)")
    if shutil.which("node") is None:
        missing.append("node (Node.js 20)")
    if missing:
        pytest.fail("the browser test needs: " + "; ".join(missing), pytrace=False)


def test_the_page_is_served_beside_the_api_and_never_counted(envoy):
    # Even with a default class that would count every request, the page's
    # files pass untouched: the filter is off for the /demo/ route.
    with harness.start_demo_server() as demo:
        proxy = envoy(demo_config(default_class="drafts"), demo_port=demo.port, hold_headers=True)
        page = request(proxy, "GET", harness.DEMO_PREFIX, headers={"x-user-id": "vi"})
        script = request(proxy, "GET", harness.DEMO_PREFIX + "demo.js")
        redirect = request(proxy, "GET", harness.DEMO_PREFIX.rstrip("/"))
        usage = request(proxy, "GET", "/v1/quota", headers={"x-user-id": "vi"})
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Your AI allowance</h1>" in page.text
    assert not [name for name in page.headers if name.startswith("x-quota-")]
    assert script.headers["content-type"].startswith("text/javascript")
    assert (redirect.status, redirect.headers["location"].endswith(harness.DEMO_PREFIX)) == (301, True)
    drafts = next(c for c in usage.json()["classes"] if c["class"] == "drafts")
    assert drafts["used"] == 0


def test_a_free_user_fills_the_meter_sees_the_warnings_the_block_and_the_reset(envoy):
    require_browser_tools()
    config = demo_config()
    config["tiers"]["free"]["limits"]["drafts"]["window"] = "20s"
    with harness.start_demo_server() as demo:
        proxy = envoy(config, demo_port=demo.port, hold_headers=True)
        run = subprocess.run(
            ["node", str(SCRIPT), "--url", proxy.url(harness.DEMO_PREFIX),
             "--screenshots", str(SCREENSHOTS), "--chromium", CHROMIUM],
            capture_output=True, text=True, timeout=180, cwd=harness.REPO_ROOT,
        )
    print(run.stdout)
    print(run.stderr)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "demo page: all steps passed" in run.stdout
    for shot in ("demo-page-blocked.png", "demo-page-after-reset.png"):
        assert (SCREENSHOTS / shot).stat().st_size > 10_000, shot


def test_a_team_member_sees_one_meter_per_stacked_limit(envoy):
    # The Team plan's drafts as a stack: a pool of 6 a day for the workspace,
    # of which a member may use 4. The page draws a meter for each and marks
    # the binding one: the member's share, then the team's pool. Pro's
    # summaries: 3 every 5 hours and 5 every 7 days, each with its own reset.
    require_browser_tools()
    config = demo_config()
    config["tiers"]["team"]["limits"]["drafts"] = [
        {"scope": "workspace", "soft": 4, "hard": 6, "window": "day"},
        {"scope": "user", "hard": 4, "window": "day"},
    ]
    config["tiers"]["pro"]["limits"]["summaries"] = [
        {"hard": 3, "window": "5h"},
        {"hard": 5, "window": "7d"},
    ]
    with harness.start_demo_server() as demo:
        proxy = envoy(config, demo_port=demo.port, hold_headers=True)
        run = subprocess.run(
            ["node", str(STACKED_SCRIPT), "--url", proxy.url(harness.DEMO_PREFIX),
             "--screenshots", str(SCREENSHOTS), "--chromium", CHROMIUM],
            capture_output=True, text=True, timeout=180, cwd=harness.REPO_ROOT,
        )
    print(run.stdout)
    print(run.stderr)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "stacked meters: all steps passed" in run.stdout
    for shot in ("demo-page-stacked-member.png", "demo-page-stacked-pool.png"):
        assert (SCREENSHOTS / shot).stat().st_size > 10_000, shot


def test_a_pro_user_sees_the_premium_chat_meter_in_money(envoy):
    # The demo matrix as `make run` serves it: Premium chat is metered in
    # dollars ($3.00 soft, $5.00 hard a month on Pro). The card shows the
    # reservation from the response's headers, then the settled amount.
    require_browser_tools()
    with harness.start_demo_server() as demo:
        proxy = envoy(demo_config(), demo_port=demo.port, hold_headers=True)
        run = subprocess.run(
            ["node", str(MONEY_SCRIPT), "--url", proxy.url(harness.DEMO_PREFIX),
             "--screenshots", str(SCREENSHOTS), "--chromium", CHROMIUM],
            capture_output=True, text=True, timeout=180, cwd=harness.REPO_ROOT,
        )
    print(run.stdout)
    print(run.stderr)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert "money meter: all steps passed" in run.stdout
    assert (SCREENSHOTS / "demo-page-money.png").stat().st_size > 10_000
