//! Reads Prometheus text (exposition format 0.0.4) back into numbers, for the metrics tests.

use std::collections::BTreeMap;

/// Every sample of `text`, keyed `name{label="value",...}` with the labels sorted by name and
/// the values unescaped; comments (`# HELP`, `# TYPE`) skipped. Panics on a malformed line.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let (labels, rest) = labels(&line[open + 1..]);
                (key(&line[..open], &labels), rest)
            }
            None => {
                let (name, rest) = line.split_once(' ').expect("a sample has a value");
                (name.to_owned(), rest)
            }
        };
        let value = rest
            .split_whitespace()
            .next()
            .expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        assert!(
            samples.insert(series.clone(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

/// The key [`samples`] gives the series `name` with `labels`.
pub fn key(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let mut labels = labels.to_vec();
    labels.sort();
    let inner: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}={value:?}"))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// The value of the series `name` with `labels` in `samples`; `None` if absent.
pub fn value(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: Vec<(String, String)> = labels
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    samples.get(&key(name, &labels)).copied()
}

/// Parses `a="x",b="y"}` (after the `{`): the labels, and the rest of the line.
fn labels(mut text: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches(',');
        if let Some(rest) = text.strip_prefix('}') {
            return (labels, rest);
        }
        let (name, rest) = text.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        text = &rest[end + 1..];
    }
}
