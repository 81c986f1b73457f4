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

const STACKED: &str = "matrix/tests/fixtures/stacked.json";

#[test]
fn stacked_chats_bind_by_the_5_hour_window_then_by_the_week() {
    let r = expect_stdout(
        "simulate-stacked-chats.txt",
        &["simulate", STACKED, "--tier", "free", "--script", "matrix/tests/fixtures/stacked-chats.jsonl"],
    );
    let bound: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("    limit ")).collect();
    assert_eq!(
        bound,
        [
            "    limit    user/5h (1 of 2): 1 of 3 used",
            "    limit    user/5h (1 of 2): 2 of 3 used",
            "    limit    user/5h (1 of 2): 3 of 3 used",
            "    limit    user/5h (1 of 2): 3 of 3 used",
            "    limit    user/week (2 of 2): 4 of 5 used",
            "    limit    user/week (2 of 2): 5 of 5 used",
            "    limit    user/week (2 of 2): 5 of 5 used",
            "    limit    user/5h (1 of 2): 1 of 3 used",
        ]
    );
    assert!(r.stdout.contains("message  Chats 4/5 warning (user/5h 1/3 ok, user/week 4/5 warning);"));
}

#[test]
fn a_members_cap_binds_inside_the_team_pool() {
    let args = [
        "simulate",
        STACKED,
        "--tier",
        "team",
        "--user",
        "m1",
        "--workspace",
        "acme",
        "--organisation",
        "globex",
        "--script",
        "matrix/tests/fixtures/stacked-team.jsonl",
    ];
    let brief: Vec<&str> = args.iter().copied().chain(["--brief"]).collect();
    let r = expect_stdout("simulate-stacked-team-brief.txt", &brief);
    assert_eq!(r.stdout.lines().filter(|l| l.contains(" 429 blocked      [user/day] ")).count(), 2);
    assert!(r.stdout.contains("exports        200 ok           [user/month]"));
    let text = run(&args).stdout;
    assert!(text.starts_with("Replaying matrix/tests/fixtures/stacked-team.jsonl for user m1 of workspace acme in organisation globex on the Team plan (team)"));
    // JSON lines name the binding limit and the others.
    let json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let first: serde_json::Value = serde_json::from_str(run(&json).stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["limit"],
        serde_json::json!({"index": 1, "scope": "user", "window": "day", "used": 20, "hard": 50})
    );
    assert_eq!(
        first["others"],
        serde_json::json!([{"index": 0, "scope": "workspace", "window": "day", "used": 20, "hard": 300}])
    );
}

#[test]
fn an_organisation_pool_without_an_organisation_is_refused() {
    let r = run(&[
        "simulate",
        STACKED,
        "--tier",
        "team",
        "--workspace",
        "acme",
        "--script",
        "matrix/tests/fixtures/stacked-team.jsonl",
        "--brief",
    ]);
    assert!(r.stdout.contains(" 403 workspace_required [organisation/month] "), "{}", r.stdout);
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

const PRICED: &str = "matrix/tests/fixtures/priced.json";

#[test]
fn priced_requests_reserve_their_budget_and_settle_to_the_reported_usage() {
    let r = expect_stdout(
        "simulate-priced-pro.txt",
        &["simulate", PRICED, "--tier", "pro", "--script", "matrix/tests/fixtures/priced-pro.jsonl"],
    );
    for part in [
        // 11 prompt tokens at $2.50/M and 8000 at $10.00/M reserved; 1800 and 7550 reported.
        "    class    premium (cost $0.080028)\n    status   200 (forwarded to the upstream)\n    state    ok\n    settled  $0.08 (after the response)\n",
        // o3: 200 input at $2.00, 1000 cached at $0.50, 1500 output and 4500 reasoning at $8.00 a million.
        "    settled  $0.0489 (after the response)\n",
        // The stream's usage chunk: 150 at $2.50 and 420 at $10.00 a million.
        "    settled  $0.004575 (after the response)\n    upstream sees stream_options.include_usage: true\n",
        "    settled  $0.00 (given back after the response)\n",
        "    events   warned at $19.00\n",
        "             x-quota-currency: USD\n",
        "message  Premium actions $20.53/$20.00 overage; Standard actions $0.008/$50.00 ok;",
    ] {
        assert!(r.stdout.contains(part), "{part}");
    }
    // Without a response in the trace, the reservation stands.
    assert!(r.stdout.contains("    class    premium (cost $10.000013)\n    status   200 (forwarded to the upstream)\n    state    warning\n    message"));
}

#[test]
fn priced_json_lines_keep_micro_units_and_name_the_currency() {
    let r = expect_stdout(
        "simulate-priced-pro.jsonl",
        &["simulate", PRICED, "--tier", "pro", "--script", "matrix/tests/fixtures/priced-pro.jsonl", "--json"],
    );
    let first: serde_json::Value = serde_json::from_str(r.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&first["class"], &first["cost"], &first["settled"], &first["currency"]),
        (
            &serde_json::json!("premium"),
            &serde_json::json!(80_028),
            &serde_json::json!(80_000),
            &serde_json::json!("USD")
        )
    );
    let last: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!((last.get("currency"), last.get("settled")), (None, None));
}

#[test]
fn each_limit_of_a_priced_stack_reads_as_money() {
    let r = expect_stdout(
        "simulate-priced-team.txt",
        &[
            "simulate",
            PRICED,
            "--tier",
            "team",
            "--workspace",
            "acme",
            "--script",
            "matrix/tests/fixtures/priced-team.jsonl",
        ],
    );
    for part in [
        "    limit    user/month (2 of 2): $0.080028 of $25.00 used\n    also     workspace/month (1 of 2): $0.080028 of $100.00 used\n",
        "    class    batch (cost $0.006)\n",
        "Premium actions $0.08/$25.00 ok (workspace/month $0.08/$100.00 ok, user/month $0.08/$25.00 ok)",
    ] {
        assert!(r.stdout.contains(part), "{part}");
    }
}
