//! `quota-matrix render`: the matrix as Markdown or a standalone HTML page.

mod util;

use util::{expect_stdout, expect_transcript, root, run};

#[test]
fn renders_the_demo_matrix_as_markdown() {
    expect_stdout("render-demo.md", &["render", "envoy/demo-config.json"]);
}

#[test]
fn renders_the_demo_matrix_as_an_accessible_html_page() {
    let r = expect_stdout("render-demo.html", &["render", "envoy/demo-config.json", "--format", "html"]);
    for part in [
        "<html lang=\"en\">",
        "<caption id=\"table-1\">",
        "<th scope=\"col\">Drafts</th>",
        "<th scope=\"row\">Free</th>",
    ] {
        assert!(r.stdout.contains(part), "{part}");
    }
}

#[test]
fn renders_costs_behaviours_and_overrides() {
    expect_stdout("render-features.md", &["render", "matrix/tests/fixtures/features.json"]);
}

#[test]
fn renders_every_limit_of_a_stacked_cell() {
    let r = expect_stdout("render-stacked.md", &["render", "matrix/tests/fixtures/stacked.json"]);
    for part in [
        // The matrix: each limit with its scope and window.
        "| Team | 100 every 5 hours + 2000 a week | 200 / 300 a day pooled per workspace + 50 a day per member, workspace admins may set each member's cap | 1000 a month pooled per organisation, then queued + 100 a month per member |",
        // The plan's table: a row per limit.
        "| Drafts (300 a day pooled per workspace) | 200 | 300 | daily at 00:00 | pooled per workspace | 200, 210, 285 | refused (429) | — |",
        "| Drafts (50 a day per member) | — | 50 | daily at 00:00 | per member (workspace admins may set each member's cap) | 35, 48 | refused (429) | — |",
        "| Exports (1000 a month pooled per organisation) | — | 1000 | the 1st of each month at 00:00 | pooled per organisation | 700, 950 | allowed, queued (x-quota-deferred: 1) | — |",
        // What users read: each limit's own copy and upgrade.
        "| Drafts (50 a day per member) | from 35 used: “You've used 35 of your 50 drafts of your team's allowance for today. They reset in 4 h 12 min. Enterprise includes 500 a day: https://example.com/contact-sales” | 429: “You've reached your own cap of 50 drafts for today. They reset in 4 h 12 min. A workspace admin can raise it.” |",
        "- Chats (900 a week per user), pace alert: ",
        "“pooled per organisation”: one counter for the whole organisation.",
    ] {
        assert!(r.stdout.contains(part), "{part}");
    }
    // The same rows in the HTML page, as row headers.
    let html = run(&["render", "matrix/tests/fixtures/stacked.json", "--format", "html"]);
    assert_eq!(html.code, 0);
    assert!(html.stdout.contains("<th scope=\"row\">Drafts (50 a day per member)</th>"));
}

#[test]
fn configs_without_stacks_say_nothing_of_them() {
    let md = run(&["render", "envoy/examples/seeds.json"]).stdout;
    assert!(!md.contains("stacked") && !md.contains("per member") && !md.contains("organisation"));
}

#[test]
fn markdown_is_the_default_format() {
    let md = run(&["render", "envoy/demo-config.json", "--format", "markdown"]);
    assert_eq!(md.stdout, run(&["render", "envoy/demo-config.json"]).stdout);
}

#[test]
fn a_broken_config_is_not_rendered() {
    let r = expect_transcript("render-soft-above-hard", &["render", "matrix/tests/fixtures/soft-above-hard.json"]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
}

#[test]
fn an_unknown_format_is_a_command_line_error() {
    let r = expect_transcript("render-bad-format", &["render", "envoy/demo-config.json", "--format", "pdf"]);
    assert_eq!(r.code, 2);
}

/// The README shows the demo matrix as `render` writes it.
#[test]
fn the_readme_shows_the_rendered_demo_matrix() {
    let out = run(&["render", "envoy/demo-config.json"]).stdout;
    let table: String = out
        .lines()
        .skip_while(|l| !l.starts_with("| Plan |"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(table.lines().count() > 2);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains(&table), "README.md does not show the demo matrix as rendered; paste this table:\n{table}");
}

#[test]
fn renders_money_classes_as_money_with_the_price_table() {
    let r = expect_stdout("render-priced.md", &["render", "matrix/tests/fixtures/priced.json"]);
    for part in [
        // The matrix: budgets in dollars, next to a class counted in units.
        "| Free | not included | $3.00 / $5.00 a month | not included | 5 / 10 a day |",
        "| Team | $80.00 / $100.00 a month pooled per workspace + $25.00 a month per member | $200.00 a month, pooled, confirm above 25% of what remains | $50.00 a month, pooled | 1000 a day |",
        "| Class | Name in the config | Unit | Cost per request | Counted when |",
        "| Standard actions | `standard` | action / actions | $0.004 |",
        "| Batch | `batch` | batch request / batch requests | 1 per item of the array `requests` (10 if absent), at $0.002 each |",
        // The prices, exactly as written, per million tokens.
        "| Model | Input | Cached input | Cache write | Output | Reasoning | Per request |",
        "| `gpt-4o-mini` | $0.15 | $0.075 | $0.15 | $0.60 | $0.60 | — |",
        "| `dall-e-3` | — | — | — | — | — | $0.04 |",
        "- Standard actions: $0.004",
        // The plans' tables and the samples.
        "| Premium actions | $15.00 | $20.00 | the 1st of each month at 00:00 | per user | $14.00, $15.00, $19.00 | allowed as overage, up to $5.00 more, then refused (429) |",
        "| Premium actions ($25.00 a month per member) | — | $25.00 |",
        "| Standard actions | from $3.00 used: “You've used $3.00 of your $5.00 for this month. It resets in 4 h 12 min.",
        "- Standard actions, confirmation (428) with $0.01 left: “This will use $0.004 of the $0.01 you have left",
    ] {
        assert!(r.stdout.contains(part), "{part}");
    }
    assert!(!r.stdout.contains("5000000"), "micro-units leaked into the page");
}

#[test]
fn configs_without_prices_have_no_price_table() {
    // The demo matrix has a class in money since Premium chat; these have none.
    for file in
        ["envoy/examples/seeds.json", "matrix/tests/fixtures/stacked.json", "matrix/tests/fixtures/features.json"]
    {
        let md = run(&["render", file]).stdout;
        assert!(!md.is_empty(), "{file}");
        assert!(!md.contains("## Prices") && !md.contains("Cost per request") && !md.contains('$'), "{file}");
    }
}

#[test]
fn the_demo_matrix_prices_its_premium_chat() {
    let md = run(&["render", "envoy/demo-config.json"]).stdout;
    for part in [
        "## Prices",
        "| `gpt-4o` | $2.50 | $1.25 | $2.50 | $10.00 | $10.00 | — |",
        "| `gpt-4o-mini` | $0.15 | $0.075 | $0.15 | $0.60 | $0.60 | — |",
    ] {
        assert!(md.contains(part), "{part}");
    }
    // Counted classes stay counts: no dollar sign in their rows.
    assert!(md.lines().filter(|l| l.starts_with("| Drafts")).all(|l| !l.contains('$')));
}
