//! `quota-matrix generate` and `quota-matrix report`: a seeded month of
//! traffic under the demo matrix, and the experience of its limits.

mod util;

use std::sync::OnceLock;
use util::{compare, root, run, run_with_stdin, Run};

const DEMO: &str = "envoy/demo-config.json";
/// A small population, so the goldens stay readable and the tests quick.
const GENERATE: [&str; 11] =
    ["generate", "--config", DEMO, "--seed", "7", "--users", "30", "--days", "14", "--start", "2026-11-02"];

/// The demo ledger, generated once per test run.
fn ledger() -> &'static str {
    static LEDGER: OnceLock<String> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let r = run(&GENERATE);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    })
}

fn report(args: &[&str]) -> Run {
    let mut all = vec!["report", "-", "--config", DEMO];
    all.extend_from_slice(args);
    run_with_stdin(&all, Some(ledger()))
}

fn expect(file: &str, r: &Run) {
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "quota-matrix {}", r.args.join(" "));
    compare(&root().join("matrix/tests/expected").join(file), &r.stdout);
}

#[test]
fn the_same_seed_writes_the_same_ledger() {
    let again = run(&GENERATE);
    assert_eq!(again.stdout, ledger());
    assert_eq!(
        again.stderr,
        format!(
            "generate: generated {} records: 30 users over 14 days from 2026-11-02, seed 7\n",
            ledger().lines().count()
        )
    );
    let other =
        run(&["generate", "--config", DEMO, "--seed", "8", "--users", "30", "--days", "14", "--start", "2026-11-02"]);
    assert_ne!(other.stdout, ledger());
    // The first records, as the filter writes them.
    let head: String = ledger().lines().take(6).map(|l| format!("{l}\n")).collect();
    compare(&root().join("matrix/tests/expected/generate-demo-head.jsonl"), &head);
}

#[test]
fn reports_the_demo_month_as_a_table() {
    let r = report(&[]);
    expect("report-demo.txt", &r);
    for part in ["soft-limit hit", "hard-limit hit", "abandoned", "converted", "premium share", "batch share"] {
        assert!(r.stdout.contains(part), "{part}");
    }
}

#[test]
fn reports_the_demo_month_as_markdown() {
    let r = report(&["--format", "markdown"]);
    expect("report-demo.md", &r);
    assert!(r.stdout.contains("\n## Per day\n\n| day | requests |"));
}

#[test]
fn reports_the_demo_month_as_json() {
    let r = report(&["--format", "json"]);
    expect("report-demo.json", &r);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // Every record is counted once, in exactly one cell.
    let cells: u64 = doc["cells"].as_array().unwrap().iter().map(|c| c["requests"].as_u64().unwrap()).sum();
    assert_eq!(cells, ledger().lines().count() as u64);
    assert_eq!(doc["all"]["requests"].as_u64(), Some(cells));
    assert_eq!(doc["definitions"]["premium_classes"], serde_json::json!(["premium_chat"]));
    // The month has each thing the report is about.
    for (path, at_least) in [
        ("/all/soft_limit_hit/callers", 5),
        ("/all/hard_limit_hit/callers", 3),
        ("/all/abandoned/quota_errors", 1),
        ("/all/failed/requests", 1),
        ("/all/retried/requests", 1),
        ("/all/premium_share/requests", 1),
        ("/all/tokens/cached_input", 1),
        ("/funnel/upgraded", 1),
    ] {
        let n = doc.pointer(path).and_then(serde_json::Value::as_u64).unwrap_or(0);
        assert!(n >= at_least, "{path}: {n}");
    }
}

#[test]
fn reports_the_demo_month_as_a_standalone_page() {
    let r = report(&["--format", "html"]);
    expect("report-demo.html", &r);
    for part in
        ["<html lang=\"en\">", "<svg xmlns=\"http://www.w3.org/2000/svg\"", "role=\"img\"", "<th scope=\"col\">"]
    {
        assert!(r.stdout.contains(part), "{part}");
    }
    // Self-contained: nothing fetched from elsewhere.
    for part in ["<script", "<link", "@import", "src=\"http", "url("] {
        assert!(!r.stdout.contains(part), "{part}");
    }
}

#[test]
fn premium_and_batch_classes_can_be_named() {
    let r = report(&["--format", "json", "--premium", "deep_research,premium_chat", "--batch", "batch_records"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["definitions"]["premium_classes"], serde_json::json!(["deep_research", "premium_chat"]));
    assert_eq!(doc["definitions"]["premium_from"], "given with --premium");
    // Checked before the ledger is read.
    let r = run(&["report", "-", "--config", DEMO, "--premium", "deep-research"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: --premium: no class named \"deep-research\""), "{}", r.stderr);
}

#[test]
fn hostile_lines_are_skipped_and_named_not_fatal() {
    let good = ledger().lines().take(40).collect::<Vec<_>>();
    let mut lines: Vec<String> = good.iter().map(|l| l.to_string()).collect();
    lines.insert(3, "-".into());
    lines.insert(5, good[0].replace("\"units_settled\":", "\"units_settled\":-").replace(":-0", ":-1"));
    lines.insert(7, format!("{{\"v\":1,\"class\":\"drafts\",\"tier\":\"free\",\"note\":\"{}\"}}", "x".repeat(200_000)));
    lines.insert(9, "{\"v\":1,\"class\":\"drafts\",\"time\":".into());
    lines.insert(11, good[1].replace("\"status\":", "\"status\":1").replace(":1200", ":99999"));
    lines.insert(13, good[2].replace("\"time\":\"", "\"time\":\"9"));
    let text = lines.join("\n");
    let r = run_with_stdin(&["report", "-", "--config", DEMO], Some(&text));
    compare(&root().join("matrix/tests/expected/report-hostile.txt"), &r.transcript());
    assert_eq!(r.code, 0);
    assert!(r.stderr.starts_with("warning: standard input: skipped 5 lines that are not valid ledger records\n"));
    assert!(r.stdout.contains("40 requests"), "{}", r.stdout);
}

#[test]
fn a_file_without_records_is_an_error() {
    let r = run_with_stdin(
        &["report", "-", "--config", DEMO],
        Some("-\n-\n{\"v\":1,\"class\":\"drafts\",\"units_charged\":1e999}\n"),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(
            "error: standard input: no ledger records (3 lines read); a ledger has one JSON record per line"
        ),
        "{}",
        r.stderr
    );
    let missing = run(&["report", "matrix/tests/fixtures/no-such-ledger.jsonl", "--config", DEMO]);
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (1, "error: cannot read matrix/tests/fixtures/no-such-ledger.jsonl: no such file\n")
    );
}

#[test]
fn generate_needs_a_valid_config_and_sane_numbers() {
    let r = run(&["generate", "--config", "matrix/tests/fixtures/soft-above-hard.json"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("tiers.free.limits.drafts.hard: must be greater than soft (21)"), "{}", r.stderr);
    let r = run(&["generate", "--config", DEMO, "--users", "1000000"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("error: generate: --users must be a whole number from 1 to 100000"));
}
