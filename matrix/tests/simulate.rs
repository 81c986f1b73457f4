//! `quota-matrix simulate`: a trace replayed through the filter's core.

mod util;

use util::{expect_stdout, expect_transcript, run, run_with_stdin};

const DEMO: &str = "envoy/demo-config.json";
const DAY: &str = "matrix/examples/free-user-day.jsonl";

#[test]
fn a_free_users_day_reaches_the_wall_and_resets_after_midnight() {
    let r = expect_stdout("simulate-free-user-day.txt", &["simulate", DEMO, "--tier", "free", "--script", DAY]);
    assert!(r.stdout.contains("status   429 (answered by the filter)"));
    assert!(r.stdout.contains("x-quota-reset: 2026-11-24T00:00:00Z"));
}

#[test]
fn brief_prints_one_line_per_request() {
    let r = expect_stdout(
        "simulate-free-user-day-brief.txt",
        &["simulate", DEMO, "--tier", "free", "--script", DAY, "--brief"],
    );
    assert_eq!(r.stdout.lines().count(), 17);
}

#[test]
fn json_prints_one_object_per_request() {
    let r =
        expect_stdout("simulate-free-user-day.jsonl", &["simulate", DEMO, "--tier", "free", "--script", DAY, "--json"]);
    let states: Vec<String> =
        r.stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["state"].to_string()).collect();
    assert_eq!(states.iter().filter(|s| *s == "\"warning\"").count(), 6);
    assert_eq!(states.iter().filter(|s| *s == "\"blocked\"").count(), 2);
}

#[test]
fn costs_degrade_confirmation_and_grants_on_the_starter_plan() {
    expect_stdout(
        "simulate-features-starter.txt",
        &[
            "simulate",
            "matrix/tests/fixtures/features.json",
            "--tier",
            "starter",
            "--script",
            "matrix/tests/fixtures/features-starter.jsonl",
        ],
    );
}

#[test]
fn overage_queue_and_caps_on_the_scale_plan() {
    expect_stdout(
        "simulate-features-scale.txt",
        &[
            "simulate",
            "matrix/tests/fixtures/features.json",
            "--tier",
            "Scale",
            "--workspace",
            "acme",
            "--script",
            "matrix/tests/fixtures/features-scale.jsonl",
            "--brief",
        ],
    );
}

#[test]
fn the_trace_can_come_from_standard_input() {
    let trace = std::fs::read_to_string(util::root().join(DAY)).unwrap();
    let piped = run_with_stdin(&["simulate", DEMO, "--tier", "free", "--script", "-", "--brief"], Some(&trace));
    let from_file = run(&["simulate", DEMO, "--tier", "free", "--script", DAY, "--brief"]);
    assert_eq!((piped.code, &piped.stdout), (0, &from_file.stdout));
}

#[test]
fn an_unknown_tier_lists_the_tiers() {
    let r = expect_transcript("simulate-unknown-tier", &["simulate", DEMO, "--tier", "gold", "--script", DAY]);
    assert_eq!(r.code, 1);
}

#[test]
fn a_trace_line_that_is_not_json_is_named() {
    let r = expect_transcript(
        "simulate-trace-not-json",
        &["simulate", DEMO, "--tier", "free", "--script", "matrix/tests/fixtures/trace-not-json.jsonl"],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("trace-not-json.jsonl:2:"));
}

#[test]
fn a_missing_trace_is_named() {
    let r =
        expect_transcript("simulate-missing-trace", &["simulate", DEMO, "--tier", "free", "--script", "nope.jsonl"]);
    assert_eq!(r.code, 1);
}

#[test]
fn a_broken_config_is_not_simulated() {
    let r = expect_transcript(
        "simulate-broken-config",
        &["simulate", "matrix/tests/fixtures/string-hard.json", "--tier", "free", "--script", DAY],
    );
    assert_eq!(r.code, 1);
}

#[test]
fn unreadable_bodies_are_charged_as_the_strictest_class_the_path_allows() {
    let r = expect_stdout(
        "simulate-strictest-pro.txt",
        &[
            "simulate",
            "matrix/tests/fixtures/strictest.json",
            "--tier",
            "pro",
            "--script",
            "matrix/tests/fixtures/unreadable.jsonl",
        ],
    );
    // Too deep to read: deep research (3 a day) rather than chat.
    assert!(r
        .stdout
        .contains("[3] 2026-11-22T09:02:00Z POST /v1/chat/completions  (line 8)\n    class    deep_research (cost 1)"));
    assert!(r.stdout.contains("upstream sees stream_options.include_usage: true"));
}

#[test]
fn unreadable_bodies_are_refused_as_a_class_outside_the_plan_the_path_allows() {
    let r = expect_stdout(
        "simulate-strictest-free-brief.txt",
        &[
            "simulate",
            "matrix/tests/fixtures/strictest.json",
            "--tier",
            "free",
            "--script",
            "matrix/tests/fixtures/unreadable.jsonl",
            "--brief",
        ],
    );
    assert_eq!(r.stdout.lines().filter(|l| l.contains(" 403 not_included ")).count(), 2);
}
