"""The seed's measurement end to end: a scripted population through the demo
Envoy, its ledger read back from Envoy's own access log, and `quota-matrix
report` on it giving the hit rates, abandonment and conversion the script
made happen (known in advance); `quota-matrix whatif` replaying that ledger
under the same matrix gives every record its own outcome; the report's HTML
page rendered by headless Chromium, the screenshot kept as an artifact.
"""

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness
from conftest import request
from quota_configs import CHAT, DEMO_PATH, chat, demo

REPO = DEMO_PATH.parent.parent
QUOTA_MATRIX = REPO / "target" / "release" / "quota-matrix"
SCREENSHOTS = REPO / "target" / "screenshots"
# The report's abandonment window: no request within 60 s of a quota error.
ABANDON_S = 60


@pytest.fixture(scope="module")
def quota_matrix():
    if not QUOTA_MATRIX.exists():
        pytest.fail(f"{QUOTA_MATRIX} is missing: run `make dist` (or cargo build --release -p quota-matrix)",
                    pytrace=False)
    return QUOTA_MATRIX


def drafts(proxy, user, n, plan="free"):
    """n drafts from user; the statuses."""
    statuses = []
    for _ in range(n):
        resp = request(proxy, "POST", CHAT, headers={"x-user-id": user, "x-plan": plan}, json=chat())
        statuses.append(resp.status)
    return statuses


def summary(proxy, user, plan="free"):
    resp = request(proxy, "POST", "/v1/summaries",
                   headers={"x-user-id": user, "x-plan": plan}, json={"text": "a short text"})
    return resp.status


def run(tool, *args):
    done = subprocess.run([str(tool), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_report_measures_what_a_scripted_population_did(envoy, quota_matrix):
    work = Path(tempfile.mkdtemp(prefix="experience-"))
    ledger = work / "ledger.log"
    proxy = envoy(demo(), hold_headers=True, access_log_path=ledger)

    # The demo's Free drafts: warnings from the 5th, the wall after the 10th.
    assert drafts(proxy, "calm-1", 1) == [200]
    assert drafts(proxy, "calm-2", 2) == [200] * 2
    assert drafts(proxy, "warned", 6) == [200] * 6
    assert drafts(proxy, "leaver", 11) == [200] * 10 + [429]            # ...and never comes back
    assert drafts(proxy, "returner", 11) == [200] * 10 + [429]
    assert summary(proxy, "returner") == 200                             # back within the minute
    assert drafts(proxy, "upgrader", 11) == [200] * 10 + [429]
    last_refusal = time.monotonic()
    assert drafts(proxy, "upgrader", 1, plan="pro") == [200]            # upgraded, and carries on
    # The leaver's minute must be over in the ledger for their refusal to
    # count as abandoned (a refusal in the ledger's last minute is left out):
    # one more caller after it.
    time.sleep(max(0.0, ABANDON_S + 1 - (time.monotonic() - last_refusal)))
    assert summary(proxy, "late") == 200
    proxy.stop()  # flushes the access log

    lines = ledger.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == 1 + 2 + 6 + 11 + 11 + 1 + 11 + 1 + 1
    assert {r["state"] for r in records if r["user"] == "leaver"} == {"ok", "warning", "blocked"}

    report = json.loads(run(quota_matrix, "report", ledger, "--config", DEMO_PATH, "--format", "json"))
    cell = next(c for c in report["cells"] if (c["class"], c["tier"]) == ("drafts", "free"))
    assert cell["requests"] == 1 + 2 + 6 + 11 * 3
    assert cell["callers"] == 6
    # warned, leaver, returner, upgrader reached the soft limit...
    assert (cell["soft_limit_hit"]["callers"], cell["soft_limit_hit"]["of"]) == (4, 6)
    # ...three of them the wall...
    assert (cell["hard_limit_hit"]["callers"], cell["hard_limit_hit"]["of"]) == (3, 6)
    # ...of whose three quota errors only the leaver's was followed by silence...
    assert (cell["abandoned"]["quota_errors"], cell["abandoned"]["of"]) == (1, 3)
    # ...and of the four shown an upgrade, one was later seen on Pro.
    assert (cell["converted"]["callers"], cell["converted"]["of"]) == (1, 4)
    assert report["skipped_lines"] == 0

    whatif = run(quota_matrix, "whatif", ledger, "--config", DEMO_PATH, "--proposed", DEMO_PATH)
    assert f"reproduces {len(records)} of {len(records)} recorded outcomes" in whatif

    html = work / "report.html"
    html.write_text(run(quota_matrix, "report", ledger, "--config", DEMO_PATH, "--format", "html"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "experience-report.png"
    shot.unlink(missing_ok=True)
    profile = work / "chromium-profile"
    subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
         "--window-size=1280,2400", f"--screenshot={shot}", html.as_uri()],
        capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 2400)
    # A page of charts and tables, not a blank one: a blank PNG compresses to a few KB.
    assert len(png) > 40_000, len(png)
    shutil.rmtree(work, ignore_errors=True)
