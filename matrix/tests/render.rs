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
