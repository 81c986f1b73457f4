//! The document as a standalone, accessible HTML page: real table headers
//! with scopes, captions, a language, and no script.

use super::document::{Block, Document, Table};

pub fn html(doc: &Document) -> String {
    let mut body = String::new();
    let mut tables = 0;
    for block in &doc.blocks {
        match block {
            Block::Heading(level, text) => {
                body.push_str(&format!("<h{level}>{}</h{level}>\n", inline(text)));
            }
            Block::Paragraph(text) => body.push_str(&format!("<p>{}</p>\n", inline(text))),
            Block::Table(t) => {
                tables += 1;
                body.push_str(&table(t, tables));
            }
            Block::List(items) => {
                body.push_str("<ul>\n");
                for item in items {
                    body.push_str(&format!("<li>{}</li>\n", inline(item)));
                }
                body.push_str("</ul>\n");
            }
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n",
        title = inline(&doc.title),
    )
}

const STYLE: &str = "\
body{font:1rem/1.5 system-ui,sans-serif;color:#1b1b1b;background:#fff;margin:0}
main{max-width:72rem;margin:0 auto;padding:1.5rem}
.scroll{overflow-x:auto;margin:1rem 0}
.scroll:focus{outline:3px solid #0b57d0}
table{border-collapse:collapse;min-width:100%}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{border:1px solid #8a8a8a;padding:.4rem .6rem;text-align:left;vertical-align:top}
thead th{background:#e8eef7}
tbody th{background:#f4f4f4;font-weight:600}
code{font:.95em ui-monospace,monospace;background:#f0f0f0;padding:0 .2em}
";

/// A table in a focusable scroll region, so keyboard users can scroll it.
fn table(t: &Table, n: usize) -> String {
    let mut out = format!(
        "<div class=\"scroll\" role=\"region\" aria-labelledby=\"table-{n}\" tabindex=\"0\">\n\
         <table>\n<caption id=\"table-{n}\">{}</caption>\n<thead>\n<tr>",
        inline(&t.caption)
    );
    for c in &t.columns {
        out.push_str(&format!("<th scope=\"col\">{}</th>", inline(c)));
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            if i == 0 {
                out.push_str(&format!("<th scope=\"row\">{}</th>", inline(c)));
            } else {
                out.push_str(&format!("<td>{}</td>", inline(c)));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}

/// Escapes text and turns `code` spans into elements.
fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::with_capacity(escaped.len());
    let mut code = false;
    for ch in escaped.chars() {
        if ch == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        } else {
            out.push(ch);
        }
    }
    if code {
        out.push_str("</code>");
    }
    out
}

/// Text made safe inside HTML elements and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_marks_code() {
        assert_eq!(inline("<b> & `drafts` \"pooled\""), "&lt;b&gt; &amp; <code>drafts</code> &quot;pooled&quot;");
    }

    #[test]
    fn tables_have_scoped_headers_and_a_caption() {
        let t = Table {
            caption: "Limits".into(),
            columns: vec!["Plan".into(), "Drafts".into()],
            rows: vec![vec!["Free".into(), "5 / 10 a day".into()]],
        };
        let out = table(&t, 1);
        assert!(out.contains("<caption id=\"table-1\">Limits</caption>"));
        assert!(out.contains("<th scope=\"col\">Drafts</th>"));
        assert!(out.contains("<th scope=\"row\">Free</th><td>5 / 10 a day</td>"));
    }
}
