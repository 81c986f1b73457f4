"""The monitoring parts (monitoring/), tested against real Envoy and real
Prometheus: the stats tags the README tells users to put in their bootstrap,
the recording rules and alerts (promtool's checks and unit tests), and a
scripted day of traffic scraped by Debian's Prometheus, whose counters,
recording rules, alerts and dashboard queries are then read back through
its HTTP API.

The day, compressed: three Envoys with the demo matrix, scraped every second
and evaluated every second by one Prometheus.
- quota-demo (envoy/demo-config.json as `make run` serves it): callers warned,
  blocked, refused a class outside their plan, and requests without identity.
- quota-fail-open: the same matrix with its counters in a Redis that is down
  and `on_error: fail_open`, and an analytics collector that holds the first
  batch, so the queue behind it overflows.
- quota-fail-closed: the same with `on_error: fail_closed`.
Every count is driven deterministically; waits poll Prometheus' API until
what it shows was computed from the final scrape (no fixed sleeps)."""

import calendar
import http.server
import json
import math
import re
import socket
import subprocess
import threading
import time
from typing import NamedTuple

import harness
import pytest
import yaml
from conftest import MIDNIGHT_MARGIN_S, request
from quota_configs import CHAT, DEMO_PATH, chat, demo

MONITORING = harness.REPO_ROOT / "monitoring"
RECORDING_RULES = MONITORING / "quota-recording-rules.yml"
ALERT_RULES = MONITORING / "quota-alerts.yml"
RULE_TESTS = sorted(MONITORING.glob("*_test.yml"))
DASHBOARD = MONITORING / "grafana-dashboard.json"
STATS_TAGS = MONITORING / "envoy-stats-tags.yaml"
EXAMPLE_CONFIG = MONITORING / "prometheus.yml"
RECORDING_GROUP = "quota-filter-rates"
ALERT_GROUP = "quota-filter-alerts"
WAIT_S = 30.0
# Prometheus' scrape and rule evaluation interval in the scripted day.
INTERVAL_S = 1

# Requests each store-down Envoy gets, and the analytics queue of the fail-open one.
STORE_DOWN_REQUESTS = 20
ANALYTICS_QUEUE = 4


def promtool(*args):
    result = subprocess.run(["promtool", *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_promtool_checks_the_rules_and_the_example_config():
    out = promtool("check", "rules", RECORDING_RULES.name, ALERT_RULES.name)
    for path in (RECORDING_RULES, ALERT_RULES):
        assert f"Checking {path.name}\n  SUCCESS: {len(rules_of(path))} rules found" in out, out
    promtool("check", "config", EXAMPLE_CONFIG.name)


def test_promtool_unit_tests_of_the_rules_pass():
    assert [p.name for p in RULE_TESTS] == ["quota-alerts_test.yml", "quota-recording-rules_test.yml"]
    out = promtool("test", "rules", *(p.name for p in RULE_TESTS))
    assert out.count("SUCCESS") == len(RULE_TESTS), out


def rules_of(path):
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_every_rule_has_a_unit_test():
    """Each recording rule is checked by value, each alert both firing and quiet."""
    recorded = [r["record"] for r in rules_of(RECORDING_RULES)]
    unit = yaml.safe_load((MONITORING / "quota-recording-rules_test.yml").read_text())
    checked = {t["expr"] for case in unit["tests"] for t in case["promql_expr_test"] if t["exp_samples"]}
    assert set(recorded) <= checked, set(recorded) - checked

    alerts = [r["alert"] for r in rules_of(ALERT_RULES)]
    unit = yaml.safe_load((MONITORING / "quota-alerts_test.yml").read_text())
    cases = [t for case in unit["tests"] for t in case["alert_rule_test"]]
    firing = {t["alertname"] for t in cases if t["exp_alerts"]}
    quiet = {t["alertname"] for t in cases if not t["exp_alerts"]}
    assert set(alerts) == firing == quiet
    for rule in rules_of(ALERT_RULES):
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_stats_tags_users_are_told_to_use_are_the_ones_the_tests_run_with():
    bootstrap = harness.render_bootstrap(upstream_port=1, filter_config=demo(), wasm=harness.DEFAULT_WASM)
    assert yaml.safe_load(STATS_TAGS.read_text()) == {"stats_config": bootstrap["stats_config"]}


# --------------------------------------------------------------------------
# The dashboard
# --------------------------------------------------------------------------

def dashboard():
    return json.loads(DASHBOARD.read_text())


def panels():
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries():
    """(panel title, refId, expr) of every query in the dashboard."""
    return [(p["title"], t["refId"], t["expr"]) for p in panels() for t in p["targets"]]


# What each template variable stands for when a query runs: "All" (Grafana
# sends the variable's allValue) or one concrete choice.
# (No one job of the day has every panel's series: only the Redis Envoys
# have store errors, only the demo Envoy's shared data can be full.)
ALL = {"job": ".*", "class": ".*", "tier": ".*"}
ONE = {"job": ".*", "class": "drafts", "tier": "free"}
# What the variables offer once the day has been scraped.
DAY_VALUES = {
    "job": {"quota-demo", "quota-fail-open", "quota-fail-closed"},
    "class": {"deep_research", "summaries", "drafts", "batch_records", "premium_chat"},
    "tier": {"free", "pro", "team", "enterprise"},
}
INTERVALS = {"__rate_interval": "1m", "__range": "5m"}


def substitute(expr, choice):
    values = {**choice, **INTERVALS}

    def value(match):
        name = match.group(1) or match.group(2)
        assert name in values, f"the test does not know the variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def test_the_dashboard_is_a_grafana_dashboard_with_class_and_tier_variables():
    board = dashboard()
    assert board["schemaVersion"] >= 41 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "class", "tier"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"], name
        assert variables[name]["allValue"] == ".*", name
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    recorded = {r["record"] for r in rules_of(RECORDING_RULES)}
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["description"] and panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            # A recording rule the dashboard reads must exist (a rename breaks this).
            for name in re.findall(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b", target["expr"]):
                assert name in recorded, (panel["title"], name)
    exprs = " ".join(expr for _, _, expr in dashboard_queries())
    for shown in ("quota_hard_limit_hits", "quota_soft_limit_hits", "quota_requests", "quota_blocked",
                  "quota_warned", "fail_open", "fail_closed", "quota_store_errors", "identity",
                  "analytics_dropped", "quota_upstream_busy"):
        assert shown in exprs, shown
    # Per class x tier panels filter on both variables.
    hit_rate = next(p for p in panels() if p["title"] == "Hard-limit hit rate")
    assert 'quota_class=~"$class"' in hit_rate["targets"][0]["expr"]
    assert 'quota_tier=~"$tier"' in hit_rate["targets"][0]["expr"]


# --------------------------------------------------------------------------
# A scripted day of traffic, scraped by Prometheus
# --------------------------------------------------------------------------

class HoldingCollector(http.server.ThreadingHTTPServer):
    """An analytics endpoint that holds the first batch until `release` is
    set and then answers it 500; later batches get 204. `batches` lists the
    number of events in each batch received; `answered` counts answers sent."""

    def __init__(self):
        self.batches, self.answered = [], 0
        self.received, self.release = threading.Condition(), threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.received:
                    outer.batches.append(len(json.loads(body)))
                    first = len(outer.batches) == 1
                    outer.received.notify_all()
                if first:
                    outer.release.wait(WAIT_S)
                self.send_response(500 if first else 204)
                self.send_header("content-length", "0")
                self.end_headers()
                with outer.received:
                    outer.answered += 1
                    outer.received.notify_all()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def wait(self, predicate, what):
        with self.received:
            assert self.received.wait_for(lambda: predicate(self), WAIT_S), f"collector: {what} ({self.batches})"

    def close(self):
        self.release.set()
        self.shutdown()
        self.server_close()


def static_cluster(name, port):
    return {
        "name": name, "type": "STATIC", "connect_timeout": "0.5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def wait_for(predicate, what, timeout=WAIT_S, interval=0.1):
    """Polls `predicate` until it returns a true value, which is returned.
    `what` (a string, or a function giving one) says what never came."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(interval)


def draft(proxy, user, **headers):
    return request(proxy, "POST", CHAT, headers={"x-user-id": user, **headers}, json=chat("gpt-4o"))


def run_demo_traffic(proxy):
    """The demo Envoy's share of the day; returns the stats it should move."""
    statuses = [draft(proxy, "ana").status for _ in range(12)]        # free drafts: soft 5, hard 10
    assert statuses == [200] * 10 + [429] * 2
    assert [draft(proxy, "ben").status for _ in range(3)] == [200] * 3
    # A caller who would like a plan, a series or a label of their own: an
    # unknown tier is the default tier here, and labels come from the config.
    for plan in ('enterprise",quota_tier="platinum', "quota.drafts.platinum.requests", "../pro"):
        assert draft(proxy, "mallory", **{"x-plan": plan}).status == 200
    summaries = [request(proxy, "POST", CHAT, headers={"x-user-id": "cy"}, json=chat("gpt-4o-mini")).status
                 for _ in range(4)]                                    # free summaries: soft 3, hard 5
    assert summaries == [200] * 4
    # The provider busy: answered as such, given back, counted apart.
    busy = [request(proxy, "POST", CHAT, headers={"x-user-id": "hal", "x-mock-status": "503"},
                    json=chat("gpt-4o-mini")) for _ in range(2)]
    assert [(r.status, r.json()["error"]["code"]) for r in busy] == [(503, "upstream_busy")] * 2
    research = [request(proxy, "POST", "/v1/research/start", headers={"x-user-id": "dee", "x-plan": "pro"},
                        json={}).status for _ in range(4)]             # pro deep research: soft 2, hard 3
    assert research == [200] * 3 + [429]
    assert request(proxy, "POST", "/v1/research/start", headers={"x-user-id": "eve"}, json={}).status == 403
    assert [request(proxy, "POST", CHAT, json=chat()).status for _ in range(3)] == [401] * 3
    return {
        ("requests", "drafts", "free"): 16, ("units", "drafts", "free"): 16,
        ("warned", "drafts", "free"): 2, ("blocked", "drafts", "free"): 2,
        ("requests", "summaries", "free"): 6, ("units", "summaries", "free"): 6,
        ("upstream_busy", "summaries", "free"): 2,
        ("warned", "summaries", "free"): 2,                             # levels 3 and 4
        ("requests", "deep_research", "pro"): 3, ("units", "deep_research", "pro"): 3,
        ("warned", "deep_research", "pro"): 1, ("blocked", "deep_research", "pro"): 1,  # one level: 2
        ("not_included", "deep_research", "free"): 1,
        ("identity_missing", None, None): 3,
    }


def run_fail_open_traffic(proxy, collector):
    """Redis down, fail_open, analytics behind a collector that holds the first batch."""
    first = draft(proxy, "fay")
    assert (first.status, first.headers["x-quota-state"]) == (200, "unavailable")
    # The first event leaves in a batch of its own and stays in flight
    # (max_in_flight 1): the queue behind it keeps 4 and drops the rest.
    collector.wait(lambda c: c.batches == [1], "the first batch")
    assert [draft(proxy, "fay").status for _ in range(STORE_DOWN_REQUESTS - 1)] == [200] * (STORE_DOWN_REQUESTS - 1)
    collector.release.set()  # the first batch fails (500); the 4 queued go in a second one
    collector.wait(lambda c: c.batches == [1, ANALYTICS_QUEUE] and c.answered == 2, "the second batch")
    return {
        ("requests", "drafts", "free"): STORE_DOWN_REQUESTS, ("fail_open", "drafts", "free"): STORE_DOWN_REQUESTS,
        ("store_errors", None, None): STORE_DOWN_REQUESTS,
        ("analytics_sent", None, None): 1, ("analytics_failed", None, None): 1,
        ("analytics_dropped", None, None): STORE_DOWN_REQUESTS - 1 - ANALYTICS_QUEUE,
    }


def run_fail_closed_traffic(proxy):
    statuses = [draft(proxy, "gus").status for _ in range(STORE_DOWN_REQUESTS)]
    assert statuses == [503] * STORE_DOWN_REQUESTS
    return {("fail_closed", "drafts", "free"): STORE_DOWN_REQUESTS, ("store_errors", None, None): STORE_DOWN_REQUESTS}


def envoy_counts(proxy):
    """The filter's non-zero stats as Envoy's admin shows them, keyed like the scripts' counts."""
    counts = {}
    for name, value in proxy.stats(filter=r"^wasmcustom\.quota\.").items():
        parts = name.removeprefix("wasmcustom.quota.").split(".")
        if value and len(parts) == 3:
            counts[(parts[2], parts[0], parts[1])] = value
        elif value:
            counts[("_".join(parts), None, None)] = value
    return counts


def prometheus_counts(prom, job, at=None):
    """The filter's non-zero counters as Prometheus shows them for a job: the
    last sample of each series in the minute before `at` (raw samples, so a
    scrape that timed out on a loaded machine, which marks the series stale,
    does not hide them)."""
    counts = {}
    for series in prom.query(f'{{__name__=~"quota_.+", __name__!~".*:.*", job="{job}"}}[1m]', at):
        labels, value = series["metric"], float(series["values"][-1][1])
        if value:
            key = (labels["__name__"].removeprefix("quota_"), labels.get("quota_class"), labels.get("quota_tier"))
            counts[key] = value
    return counts


class Day(NamedTuple):
    prom: harness.Prometheus
    counts: dict      # job -> {(metric, class, tier): count}
    evaluated: float  # a recording-rule evaluation done after the final scrape (Unix s)


def prometheus_config(targets):
    """The example monitoring/prometheus.yml, pointed at these Envoys, with the
    committed rules and one-second intervals."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["global"] = {"scrape_interval": f"{INTERVAL_S}s", "scrape_timeout": f"{INTERVAL_S}s",
                        "evaluation_interval": f"{INTERVAL_S}s"}
    config["rule_files"] = [str(MONITORING / name) for name in config["rule_files"]]
    template = config["scrape_configs"][0]
    config["scrape_configs"] = [
        {**template, "job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{proxy.admin_port}"]}]}
        for job, proxy in targets.items()
    ]
    return config


def rule_group(prom, name):
    return next(g for g in prom.api("rules")["groups"] if g["name"] == name)


def evaluated_at(group):
    """When the group's last completed evaluation started (Unix seconds);
    Prometheus writes it as RFC 3339 with up to nanoseconds."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", group["lastEvaluation"])
    assert match, group["lastEvaluation"]
    whole, fraction, zone = match.groups()
    offset = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - offset + float("0" + (fraction or ""))


@pytest.fixture(scope="module")
def day(wasm_path, upstream):
    # Day windows: a day that straddles midnight would count differently.
    to_midnight = 86400 - time.time() % 86400
    if to_midnight < MIDNIGHT_MARGIN_S:
        time.sleep(to_midnight + 1)
    running, collector = [], HoldingCollector()
    # A port bound but not listening: every connection to "Redis" is refused.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    try:
        def start(config, *clusters):
            proxy = harness.start_envoy(config, upstream_port=upstream.port, wasm=wasm_path, concurrency=1,
                                        hold_headers=True, extra_clusters=clusters)
            running.append(proxy)
            return proxy

        store = harness.webdis_cluster(dead.getsockname()[1])
        envoys = {
            "quota-demo": start(DEMO_PATH.read_text()),  # as `make run` serves it
            "quota-fail-open": start(
                demo(counters=harness.redis_counters(on_error="fail_open"),
                     observability={"analytics": {"cluster": "analytics", "path": "/events", "max_in_flight": 1,
                                                  "max_queue": ANALYTICS_QUEUE, "timeout_ms": 60000}}),
                store, static_cluster("analytics", collector.server_address[1])),
            "quota-fail-closed": start(demo(counters=harness.redis_counters(on_error="fail_closed")), store),
        }
        prom = harness.start_prometheus(prometheus_config(envoys))
        running.append(prom)

        # Every counter's first sample is 0: scraped before any traffic.
        def scraped_all():
            jobs = {s["metric"]["job"] for s in prom.query("quota_identity_missing == 0")}
            return jobs == set(envoys)
        wait_for(scraped_all, "a first scrape of every Envoy")

        counts = {
            "quota-demo": run_demo_traffic(envoys["quota-demo"]),
            "quota-fail-open": run_fail_open_traffic(envoys["quota-fail-open"], collector),
            "quota-fail-closed": run_fail_closed_traffic(envoys["quota-fail-closed"]),
        }
        # Envoy counts what the scripts say (the fail-open one once the
        # collector's answers have reached the filter).
        for job in ("quota-demo", "quota-fail-closed"):
            # The filter adds its counts to Envoy's on its tick.
            wait_for(lambda: envoy_counts(envoys[job]) == counts[job],
                     lambda: f"{job}'s stats: {envoy_counts(envoys[job])}")
            assert envoy_counts(envoys[job]) == counts[job], job
        opened = envoys["quota-fail-open"]
        wait_for(lambda: envoy_counts(opened) == counts["quota-fail-open"],
                 lambda: f"the analytics stats: {envoy_counts(opened)}")

        # Prometheus has scraped the final counts once every job shows them...
        wait_for(lambda: all(prometheus_counts(prom, job) == counts[job] for job in envoys), "the final scrape")
        # ...and no later scrape may bring a sample. A group evaluates its rules
        # one after another, each reading what has been written by then: a scrape
        # stamped before the evaluation that lands between two of its rules gives
        # them different last samples, so rates of the same counts stretched to
        # the window's end by different factors. With the Envoys gone, each job's
        # next scrape fails (up 0, stamped when it started) and marks the series
        # stale, which rates skip: every rule then reads the same samples.
        for proxy in envoys.values():
            proxy.stop()
        stopped = time.time()
        wait_for(lambda: {s["metric"]["job"] for s in prom.query(f"timestamp(up) > {stopped:.3f}")} == set(envoys),
                 "a scrape of every Envoy after they stopped")
        final = time.time()
        # ...and an evaluation of the recording rules that started after that
        # has completed; its timestamp is when every rule is read back.
        def rule_stamp():
            stamps = [float(s["value"][1]) for s in prom.query("timestamp(job:quota_decisions:rate5m)")]
            return len(stamps) == len(envoys) and min(stamps) > final and min(stamps)
        evaluated = wait_for(rule_stamp, "a recording-rule evaluation after the final scrape")
        wait_for(lambda: evaluated_at(rule_group(prom, RECORDING_GROUP)) >= evaluated,
                 "that evaluation to complete")
        # The alerts read the recorded series as of their own evaluation
        # timestamp, the last interval boundary before the evaluation started:
        # wait for one that started an interval after those values were written.
        written = time.time()
        wait_for(lambda: evaluated_at(rule_group(prom, ALERT_GROUP)) > written + INTERVAL_S, "an alert evaluation")
        yield Day(prom, counts, evaluated)
    finally:
        collector.close()
        dead.close()
        for thing in reversed(running):
            thing.stop()
        for thing in running:
            if isinstance(thing, harness.Prometheus):
                print("----- prometheus log -----")
                print(thing.log()[-20000:])


def test_prometheus_shows_the_counters_the_script_moved_with_class_and_tier_labels(day):
    for job, counts in day.counts.items():
        assert prometheus_counts(day.prom, job, day.evaluated) == counts, job
    # Every class x tier counter is there from the start, zero or not, and no
    # request adds a series or a label: classes and tiers are the config's.
    config = demo()
    cells = {(c["name"], t) for c in config["classes"] for t in config["tiers"]}
    for job in day.counts:
        series = [s["metric"] for s in day.prom.query(f'{{__name__=~"quota_.+", __name__!~".*:.*", job="{job}"}}[1m]',
                                                      day.evaluated)]
        assert all(set(m) <= {"__name__", "job", "instance", "quota_class", "quota_tier"} for m in series), job
        per_class = [m for m in series if "quota_class" in m]
        assert {(m["quota_class"], m["quota_tier"]) for m in per_class} == cells, job
        assert len(per_class) == len(cells) * len(CLASS_EVENTS), job
        assert {m["__name__"] for m in per_class} == {f"quota_{e}" for e in CLASS_EVENTS}, job


# The filter's per-class counters (ClassMetric in core/src/events.rs).
CLASS_EVENTS = ("requests", "units", "warned", "blocked", "confirmation_required", "too_large", "not_included",
                "workspace_required", "pace_ahead", "fail_open", "fail_closed", "upstream_busy")

# The expected value of every recording rule, per job, from the scripts' counts.
CLASS_RATES = ("requests", "units", "warned", "blocked", "fail_open", "fail_closed", "upstream_busy", "refused",
               "decisions")
REFUSALS = ("blocked", "confirmation_required", "too_large", "not_included", "workspace_required", "fail_closed")
RATIOS = {"soft_limit_hits": "warned", "hard_limit_hits": "blocked", "fail_open": "fail_open",
          "fail_closed": "fail_closed"}


def expected_rules(counts):
    """{(rule, class, tier or instance-free key): expected count or ratio}: counts for
    the rate rules (Prometheus' value is count x one factor per job, see below),
    exact values for the ratio rules."""
    cells = {(c, t) for (_, c, t) in counts if c is not None}
    per_cell = {}
    for cell in cells:
        got = {m: counts.get((m, *cell), 0) for m in CLASS_EVENTS}
        got["refused"] = sum(got[m] for m in REFUSALS)
        got["decisions"] = got["requests"] + got["refused"]
        per_cell[cell] = got
    rates, ratios = {}, {}
    for cell, got in per_cell.items():
        for m in CLASS_RATES:
            rates[(f"job_class_tier:quota_{m}:rate5m", *cell)] = got[m]
        for ratio, m in RATIOS.items():
            ratios[(f"job_class_tier:quota_{ratio}:ratio_rate5m", *cell)] = got[m] / got["decisions"]
        if got["requests"]:
            ratios[("job_class_tier:quota_upstream_busy:ratio_rate5m", *cell)] = got["upstream_busy"] / got["requests"]
    decisions = sum(got["decisions"] for got in per_cell.values())
    rates[("job:quota_decisions:rate5m", None, None)] = decisions
    for m in ("fail_open", "fail_closed"):
        ratios[(f"job:quota_{m}:ratio_rate5m", None, None)] = sum(g[m] for g in per_cell.values()) / decisions
    identity = sum(counts.get((m, None, None), 0) for m in ("identity_missing", "identity_invalid", "unknown_tier"))
    rates[("instance:quota_identity_refusals:rate5m", None, None)] = identity
    ratios[("job:quota_identity_refusals:ratio_rate5m", None, None)] = identity / (identity + decisions)
    if ("store_errors", None, None) in counts:
        rates[("instance:quota_store_errors:rate5m", None, None)] = counts[("store_errors", None, None)]
    if ("analytics_sent", None, None) in counts:
        rates[("instance:quota_analytics_dropped:rate5m", None, None)] = counts[("analytics_dropped", None, None)]
        sent, failed = counts[("analytics_sent", None, None)], counts[("analytics_failed", None, None)]
        ratios[("job:quota_analytics_failed:ratio_rate5m", None, None)] = failed / (sent + failed)
    return rates, ratios


def test_every_recording_rule_evaluates_to_what_the_script_sent(day):
    recorded = {r["record"] for r in rules_of(RECORDING_RULES)}
    seen = set()
    for job, counts in day.counts.items():
        rates, ratios = expected_rules(counts)
        got = {}
        for series in day.prom.query(f'{{__name__=~".+:.+:.+", job="{job}"}}', day.evaluated):
            labels = series["metric"]
            assert float(series["value"][0]) == day.evaluated, labels
            got[(labels["__name__"], labels.get("quota_class"), labels.get("quota_tier"))] = float(series["value"][1])
        # Class x tier rules with no traffic are there (rates, all 0), ratios are not.
        zero_cells = {k for k in got if k[1] is not None and k not in rates and k not in ratios}
        assert all(got[k] == 0 and k[0].endswith(":rate5m") for k in zero_cells), zero_cells
        assert set(rates) | set(ratios) <= set(got), (set(rates) | set(ratios)) - set(got)
        assert not {k for k in got if k[0].endswith(":ratio_rate5m")} - set(ratios)
        # A rate over 5 minutes of a counter that went from 0 to n within them
        # is n/300 stretched by Prometheus' extrapolation to the window's end:
        # one factor for every series of the job (they share scrape times, and
        # no scrape landed after the last one with data, see `day`).
        factor = got[("job:quota_decisions:rate5m", None, None)] * 300 / rates[("job:quota_decisions:rate5m", None, None)]
        assert 1 - 1e-9 <= factor < 2.5, factor
        for key, count in rates.items():
            assert math.isclose(got[key], count * factor / 300, rel_tol=1e-9, abs_tol=1e-12), (job, key, got[key], count)
        for key, ratio in ratios.items():
            assert math.isclose(got[key], ratio, rel_tol=1e-9, abs_tol=1e-12), (job, key, got[key], ratio)
        seen |= {k[0] for k in rates} | {k[0] for k in ratios}
    assert seen == recorded, recorded ^ seen


def test_alerts_the_day_provoked_are_pending_and_the_others_quiet(day):
    group = rule_group(day.prom, ALERT_GROUP)
    active = {}
    for rule in group["rules"]:
        for alert in rule["alerts"]:
            labels = {k: v for k, v in alert["labels"].items() if k not in ("alertname", "severity", "instance")}
            active.setdefault(rule["name"], []).append((labels, alert["state"]))
    assert {name: sorted(tuple(sorted(labels.items())) for labels, _ in alerts)
            for name, alerts in active.items()} == {
        "QuotaFailingOpen": [(("job", "quota-fail-open"),)],
        "QuotaFailingClosed": [(("job", "quota-fail-closed"),)],
        "QuotaStoreErrors": [(("job", "quota-fail-closed"),), (("job", "quota-fail-open"),)],
        "QuotaAnalyticsDropping": [(("job", "quota-fail-open"),)],
        "QuotaAnalyticsFailing": [(("job", "quota-fail-open"),)],
        "QuotaIdentityRefusalsHigh": [(("job", "quota-demo"),)],
        # 2 of 18 free drafts blocked; pro deep research (1 of 4) is below the volume floor.
        "QuotaHardLimitHitRateHigh": [(("job", "quota-demo"), ("quota_class", "drafts"), ("quota_tier", "free"))],
    }
    # Every one waits out its `for:` first.
    assert {state for alerts in active.values() for _, state in alerts} == {"pending"}


@pytest.mark.parametrize("choice", [ALL, ONE], ids=["all", "drafts-free"])
def test_every_dashboard_query_parses_and_returns_data(day, choice):
    empty = []
    for title, ref, expr in dashboard_queries():
        query = substitute(expr, choice)
        if not day.prom.query(query, day.evaluated):
            empty.append((title, ref, query))
    assert not empty
    # The variables' own queries (Grafana's label_values(series, label), which
    # Grafana asks Prometheus' label-values API) offer the day's values.
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
        assert match and variable["query"]["query"] == variable["definition"], variable["name"]
        series, label = match.groups()
        values = day.prom.api(f"label/{label}/values", **{"match[]": substitute(series, choice)})
        assert set(values) == DAY_VALUES[variable["name"]], (variable["name"], values)
