//! The document as GitHub-flavoured Markdown.

use super::document::{Block, Document, Table};

pub fn markdown(doc: &Document) -> String {
    let mut out = format!("# {}\n", doc.title);
    for block in &doc.blocks {
        out.push('\n');
        match block {
            Block::Heading(level, text) => {
                out.push_str(&"#".repeat(usize::from(*level)));
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
            Block::Paragraph(text) => {
                out.push_str(text);
                out.push('\n');
            }
            Block::Table(table) => out.push_str(&self::table(table)),
            Block::List(items) => {
                for item in items {
                    out.push_str("- ");
                    out.push_str(item);
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn table(t: &Table) -> String {
    let row = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = row(&t.columns);
    out.push_str(&format!("|{}\n", "---|".repeat(t.columns.len())));
    for r in &t.rows {
        out.push_str(&row(r));
    }
    out
}

/// A table cell: a `|` would end it early, a line break would end the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_pipes() {
        let doc = Document {
            title: "T".into(),
            blocks: vec![Block::Table(Table {
                caption: "c".into(),
                columns: vec!["a".into(), "b".into()],
                rows: vec![vec!["x|y".into(), "z".into()]],
            })],
        };
        assert_eq!(markdown(&doc), "# T\n\n| a | b |\n|---|---|\n| x\\|y | z |\n");
    }
}
