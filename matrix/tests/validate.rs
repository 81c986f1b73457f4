//! `quota-matrix validate`: the filter's own errors with JSON paths (exit 1),
//! then smells as warnings (exit 0).

mod util;

use util::expect_transcript;

#[test]
fn the_demo_matrix_is_valid_without_warnings() {
    let r = expect_transcript("validate-demo", &["validate", "envoy/demo-config.json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "");
}

#[test]
fn a_soft_limit_above_hard_is_the_filters_error_with_its_path() {
    let r = expect_transcript("validate-soft-above-hard", &["validate", "matrix/tests/fixtures/soft-above-hard.json"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("tiers.free.limits.drafts.hard: must be greater than soft (21)"));
}

#[test]
fn a_typo_is_refused_not_ignored() {
    let r = expect_transcript("validate-unknown-field", &["validate", "matrix/tests/fixtures/unknown-field.json"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("tiers.free.limits.drafts.hrad: unknown field `hrad`"));
}

#[test]
fn a_string_where_a_number_belongs_is_refused() {
    let r = expect_transcript("validate-string-hard", &["validate", "matrix/tests/fixtures/string-hard.json"]);
    assert_eq!(r.code, 1);
}

#[test]
fn broken_json_says_where() {
    let r = expect_transcript("validate-not-json", &["validate", "matrix/tests/fixtures/not-json.json"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("line 5 column 3"));
}

#[test]
fn a_missing_file_is_named() {
    let r = expect_transcript("validate-missing-file", &["validate", "matrix/tests/fixtures/no-such-file.json"]);
    assert_eq!(r.code, 1);
}

#[test]
fn smells_are_warnings_with_json_paths() {
    let r = expect_transcript("validate-smells", &["validate", "matrix/tests/fixtures/smells.json"]);
    assert_eq!(r.code, 0);
    for path in [
        "warning: classes[1]: class \"drafts\" is unreachable",
        "warning: classes[2].match[1]: never matches",
        "warning: classes[3]: class \"export\" has no match rules",
        "warning: tiers.free.upgrade_url: missing",
        "warning: tiers.free.limits.chat.warn_at[1]: can never fire",
        "warning: tiers.pro.upgrade_url: never shown",
    ] {
        assert!(r.stderr.contains(path), "{path}");
    }
}

#[test]
fn a_config_using_every_behaviour_has_no_smells() {
    let r = expect_transcript("validate-features", &["validate", "matrix/tests/fixtures/features.json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[test]
fn a_matrix_of_stacked_limits_has_no_smells() {
    let r = expect_transcript("validate-stacked", &["validate", "matrix/tests/fixtures/stacked.json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[test]
fn smells_of_stacked_limits_name_the_limit() {
    let r = expect_transcript("validate-stacked-smells", &["validate", "matrix/tests/fixtures/stacked-smells.json"]);
    assert_eq!(r.code, 0);
    for smell in [
        "warning: tiers.pro.limits.chats[0].hard: 45 every 5 hours per user can never be exceeded: limit [1] lets through at most 20 a week per user",
        "warning: tiers.pro.limits.chats[1]: Max gives no more chats a week per user (20 vs 20)",
        "warning: tiers.pro.limits.drafts[1]: Max has no limit on drafts a day per member to compare with",
        "warning: tiers.pro.limits.drafts[1].warn_at[0]: can never fire",
        "warning: tiers.max.limits.drafts[1].hard: 500 a week per member can never be exceeded",
    ] {
        assert!(r.stderr.contains(smell), "{smell}");
    }
}

#[test]
fn command_line_mistakes_exit_2_with_the_reason() {
    let r = expect_transcript("validate-no-file", &["validate"]);
    assert_eq!(r.code, 2);
}

#[test]
fn a_priced_matrix_has_no_smells() {
    let r = expect_transcript("validate-priced", &["validate", "matrix/tests/fixtures/priced.json"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
}

#[test]
fn smells_of_money_classes_read_in_money_and_count_levels_as_the_filter_does() {
    let r = expect_transcript("validate-priced-smells", &["validate", "matrix/tests/fixtures/priced-smells.json"]);
    assert_eq!(r.code, 0);
    for smell in [
        // Levels are computed on the written cents, as the core computes them:
        // 0.999 of 500 cents rounds up to 500, the wall (not 4 995 000 micro-dollars).
        "warning: tiers.free.limits.standard.warn_at[1]: can never fire: 0.999 of $5.00 rounds up to $5.00, which is the hard limit",
        "warning: tiers.pro.limits.standard.warn_at[1]: never fires on its own: 0.7 of $5.00 rounds up to $3.50, the same level as warn_at[0] ($3.50)",
        "warning: tiers.free.limits.premium.hard: one request costs $0.08, more than the $0.05 this limit admits in a window (a class metered in money writes its limits in minor units: \"hard\": 5 is $0.05)",
        "warning: tiers.free.limits.standard: Pro gives no more budget ($5.00 vs $5.00): the wall offers no upgrade",
        "warning: tiers.team.limits.premium[0]: users reach the wall at $0.01 without a warning",
        "warning: tiers.team.limits.premium[1].hard: $25.00 a month per member can never be exceeded: limit [0] lets through at most $0.01 a day pooled per workspace, and a month overlaps at most 31 days (31 × $0.01 = $0.31)",
    ] {
        assert!(r.stderr.contains(smell), "{smell}");
    }
    assert!(!r.stderr.contains("000000"), "micro-units leaked into a warning");
}
