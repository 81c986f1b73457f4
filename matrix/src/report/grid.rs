//! A table of text cells, written as aligned columns for a terminal or as
//! a Markdown table (`report` and `whatif` both use it).

/// Columns, rows, and which columns hold numbers (right-aligned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub columns: Vec<String>,
    /// Right-align the column (numbers).
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

impl Grid {
    /// A grid with these column names; a name starting with `>` is a
    /// numeric column (the `>` is not shown).
    pub fn new(columns: &[&str]) -> Grid {
        Grid {
            columns: columns.iter().map(|c| c.trim_start_matches('>').to_string()).collect(),
            numeric: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Aligned columns, two spaces apart, the header underlined.
    pub fn text(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(self.columns.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                if self.numeric.get(i).copied().unwrap_or(false) {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(&self.columns);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    /// A Markdown table (pipes in cells escaped).
    pub fn markdown(&self) -> String {
        let cell = |c: &str| c.replace('|', "\\|");
        let mut out = String::from("|");
        for c in &self.columns {
            out.push_str(&format!(" {} |", cell(c)));
        }
        out.push_str("\n|");
        for numeric in &self.numeric {
            out.push_str(if *numeric { " ---: |" } else { " --- |" });
        }
        out.push('\n');
        for r in &self.rows {
            out.push('|');
            for i in 0..self.columns.len() {
                out.push_str(&format!(" {} |", cell(r.get(i).map_or("", String::as_str))));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_text_and_numbers() {
        let mut g = Grid::new(&["class", ">requests"]);
        g.row(vec!["drafts".into(), "12".into()]);
        g.row(vec!["deep research".into(), "3".into()]);
        assert_eq!(
            g.text(),
            "class          requests\n-------------  --------\ndrafts               12\ndeep research         3\n"
        );
        assert_eq!(g.markdown(), "| class | requests |\n| --- | ---: |\n| drafts | 12 |\n| deep research | 3 |\n");
    }

    #[test]
    fn pipes_in_cells_do_not_break_markdown() {
        let mut g = Grid::new(&["a"]);
        g.row(vec!["x|y".into()]);
        assert!(g.markdown().contains("| x\\|y |"));
    }
}
