//! Markup for the parts of the page drawn as HTML text rather than as Leptos views.
//!
//! Display-only parts that change as a whole (the chart, the counts tables, the sync stats, a
//! log entry) are drawn as one string of markup each: a reactive view per element costs a few
//! hundred bytes of `.wasm` apiece, a line of markup a few dozen. The parts whose numbers
//! change on every frame while the workers run (the service cards) stay fine-grained views:
//! redrawn as markup they cost more style, layout and paint per frame than they save in size.
//!
//! Every text that comes from outside the program (service names, error messages) goes
//! through [`escape`]; `web/tests/web.rs` checks that a service name is never read as markup.

use std::fmt::Write;

/// `text` for HTML markup (text or a quoted attribute value): `&`, `<`, `>`, `"` and `'`
/// escaped.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The columns of a counts table: the test-id stem of each (`issued` gives
/// `<prefix>issued-<service>` and `<prefix>issued-total`); the last one is the "lost" column,
/// and a row whose count there is above 0 is highlighted.
pub struct CountsTable<'a> {
    /// Prepended to every test id (`instances-`, or nothing).
    pub prefix: &'a str,
    /// The header of each column, with the test-id stem of its cells.
    pub columns: &'a [(&'a str, &'a str)],
}

impl CountsTable<'_> {
    /// The table's header, rows (a service's name and one number per column) and totals, as
    /// the inside of a `<table>`.
    pub fn markup<'r>(&self, rows: impl Iterator<Item = (&'r str, Vec<u64>)>) -> String {
        let mut html = String::from("<thead><tr><th scope=\"col\">Service</th>");
        for (header, _) in self.columns {
            let _ = write!(html, "<th scope=\"col\">{header}</th>");
        }
        html.push_str("</tr></thead><tbody>");
        let mut totals = vec![0u64; self.columns.len()];
        for (name, counts) in rows {
            for (total, count) in totals.iter_mut().zip(&counts) {
                *total += count;
            }
            let name = escape(name);
            self.row(&mut html, &name, &counts, &name);
        }
        html.push_str("</tbody><tfoot>");
        self.row(&mut html, "All services", &totals, "total");
        html.push_str("</tfoot>");
        html
    }

    /// One row: `header` (already escaped) and `counts`, whose cells' test ids end in `suffix`.
    fn row(&self, html: &mut String, header: &str, counts: &[u64], suffix: &str) {
        let lost = counts.last().is_some_and(|&lost| lost > 0);
        let _ = write!(
            html,
            "<tr{}><th scope=\"row\">{header}</th>",
            if lost { " class=\"lost\"" } else { "" }
        );
        for ((_, stem), count) in self.columns.iter().zip(counts) {
            let _ = write!(
                html,
                "<td data-testid=\"{}{stem}-{suffix}\">{count}</td>",
                self.prefix
            );
        }
        html.push_str("</tr>");
    }
}
