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
