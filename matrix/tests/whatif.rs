//! `quota-matrix whatif`: a generated month replayed through the demo
//! matrix and a proposed one, side by side.

mod util;

use std::sync::OnceLock;
use util::{compare, root, run, run_with_stdin, Run};

const DEMO: &str = "envoy/demo-config.json";
const PROPOSED: &str = "matrix/examples/demo-proposed.json";

fn ledger() -> &'static str {
    static LEDGER: OnceLock<String> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let r = run(&[
            "generate",
            "--config",
            DEMO,
            "--seed",
            "7",
            "--users",
            "30",
            "--days",
            "14",
            "--start",
            "2026-11-02",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
    })
}

fn whatif(proposed: &str, args: &[&str]) -> Run {
    let mut all = vec!["whatif", "-", "--config", DEMO, "--proposed", proposed];
    all.extend_from_slice(args);
    run_with_stdin(&all, Some(ledger()))
}

fn expect(file: &str, r: &Run) {
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "quota-matrix {}", r.args.join(" "));
    compare(&root().join("matrix/tests/expected").join(file), &r.stdout);
}

#[test]
fn the_same_matrix_changes_nothing() {
    let r = whatif(DEMO, &["--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let records = ledger().lines().count() as u64;
    assert_eq!(doc["current_reproduces"]["records"].as_u64(), Some(records));
    assert_eq!(doc["current_reproduces"]["of"].as_u64(), Some(records));
    for cell in doc["cells"].as_array().unwrap() {
        assert_eq!(cell["current"], cell["proposed"], "{cell}");
    }
}

#[test]
fn a_smaller_free_allowance_blocks_more_and_a_larger_pro_one_fewer() {
    let r = whatif(PROPOSED, &[]);
    expect("whatif-demo.txt", &r);
    let doc: serde_json::Value = serde_json::from_str(&whatif(PROPOSED, &["--format", "json"]).stdout).unwrap();
    let cell = |class: &str, tier: &str| {
        doc["cells"].as_array().unwrap().iter().find(|c| c["class"] == class && c["tier"] == tier).unwrap().clone()
    };
    let n = |c: &serde_json::Value, side: &str, what: &str| c[side][what].as_u64().unwrap();
    let drafts = cell("drafts", "free");
    assert!(n(&drafts, "proposed", "blocked") > n(&drafts, "current", "blocked"));
    assert!(n(&drafts, "proposed", "spend_units") < n(&drafts, "current", "spend_units"));
    let research = cell("deep_research", "pro");
    assert!(n(&research, "proposed", "blocked") < n(&research, "current", "blocked"));
    assert!(n(&research, "proposed", "spend_units") > n(&research, "current", "spend_units"));
    // Cells the proposal leaves alone do not move.
    assert_eq!(cell("summaries", "free")["current"], cell("summaries", "free")["proposed"]);
}

#[test]
fn writes_markdown_and_json() {
    expect("whatif-demo.md", &whatif(PROPOSED, &["--format", "markdown"]));
    expect("whatif-demo.json", &whatif(PROPOSED, &["--format", "json"]));
}

#[test]
fn a_broken_proposal_is_the_filters_error() {
    // Checked before the ledger is read.
    let r = run(&["whatif", "-", "--config", DEMO, "--proposed", "matrix/tests/fixtures/soft-above-hard.json"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("tiers.free.limits.drafts.hard: must be greater than soft (21)"), "{}", r.stderr);
}
