//! A tiny plain-text table formatter: left-aligned columns separated by two
//! spaces, header in upper case, no trailing whitespace.

/// Gap between columns.
pub const GAP: &str = "  ";

/// A table built row by row and rendered at once, so that every column is as
/// wide as its widest cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles (upper-cased).
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Table {
            header: header
                .into_iter()
                .map(|h| h.as_ref().to_uppercase())
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Appends one row; cells are rendered with `Display`.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The width of each column: its widest cell, header included.
    pub fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = Vec::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            if w.len() < line.len() {
                w.resize(line.len(), 0);
            }
            for (i, cell) in line.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        w
    }

    /// The header line (unless there are no titles) then one line per row,
    /// each ending in a newline.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        if !self.header.is_empty() {
            out.push_str(&format_line(&self.header, &widths));
            out.push('\n');
        }
        for row in &self.rows {
            out.push_str(&format_line(row, &widths));
            out.push('\n');
        }
        out
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// One line of cells padded to `widths` (a cell wider than its column just
/// pushes the rest right), without a trailing newline or trailing spaces.
pub fn format_line<S: AsRef<str>>(cells: &[S], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = cell.as_ref();
        if i > 0 {
            line.push_str(GAP);
        }
        line.push_str(cell);
        let w = widths.get(i).copied().unwrap_or(0);
        let len = cell.chars().count();
        if len < w {
            line.extend(std::iter::repeat_n(' ', w - len));
        }
    }
    line.truncate(line.trim_end().len());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_left_aligned_with_two_spaces() {
        let mut t = Table::new(["name", "Kind", "port-id"]);
        t.row(["p0", "vhost-server", "0"]);
        t.row(["a-long-name", "tap", "12"]);
        assert_eq!(
            t.render(),
            "NAME         KIND          PORT-ID\n\
             p0           vhost-server  0\n\
             a-long-name  tap           12\n"
        );
    }

    #[test]
    fn header_only_when_no_rows() {
        let t = Table::new(["mac", "port", "age"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "MAC  PORT  AGE\n");
    }

    #[test]
    fn no_trailing_whitespace_even_with_empty_last_cell() {
        let mut t = Table::new(["a", "bbbb"]);
        t.row(["xxxxx", ""]);
        let s = t.render();
        assert_eq!(s, "A      BBBB\nxxxxx\n");
        assert!(s.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn ragged_rows_and_display() {
        let mut t = Table::new(["a"]);
        t.row([1, 22, 333]);
        t.row([4444]);
        assert_eq!(t.widths(), vec![4, 2, 3]);
        assert_eq!(t.to_string(), "A\n1     22  333\n4444\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let mut t = Table::new(["x", "y"]);
        t.row(["é", "1"]);
        assert_eq!(t.render(), "X  Y\né  1\n");
    }

    #[test]
    fn format_line_with_fixed_widths() {
        assert_eq!(
            format_line(&["p0", "10", "0"], &[6, 8, 3]),
            "p0      10        0"
        );
        assert_eq!(format_line(&["too-long", "1"], &[3, 3]), "too-long  1");
    }
}
