//! The IETF rate-limit fields of draft-ietf-httpapi-ratelimit-headers-09 (March 2025):
//! `RateLimit-Policy: "burst";q=100;w=60` (a policy's quota `q` per window of `w` seconds)
//! and `RateLimit: "burst";r=45;t=30` (that policy's remaining `r`, and the seconds `t` until
//! it resets), each a Structured Field List (RFC 8941) of policies named by string or token.
//! Read leniently: a field that does not parse, or an item without a whole `r`, is ignored.

use crate::headers::{ProviderWord, Remaining};
use http::header::{HeaderMap, HeaderName};

/// `RateLimit`: the current state of each policy.
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy`: each policy's quota and window.
static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One member of a List: its name (a string or a token) and its parameters, whole numbers as
/// `Some`, anything else as `None`.
#[derive(Debug, PartialEq, Eq)]
struct Item {
    name: String,
    params: Params,
}

/// An item's parameters, in order: each key and its value if a whole number.
type Params = Vec<(String, Option<u64>)>;

impl Item {
    fn param(&self, key: &str) -> Option<u64> {
        self.params.iter().find(|(k, _)| k == key)?.1
    }
}

/// Adds each policy `RateLimit` reports to `word`: remaining `r`, its reset `t` seconds from
/// `now_ms`, and its quota `q` if `RateLimit-Policy` names it (the provider's count is then
/// `q - r`, whatever our limit). A `t` gives a 429 its reset too, when no other header did.
pub(crate) fn read_into(word: &mut ProviderWord, headers: &HeaderMap, now_ms: u64) {
    let Some(current) = list(headers, &RATELIMIT) else {
        return;
    };
    let policies = list(headers, &POLICY).unwrap_or_default();
    for item in current {
        let Some(remaining) = item.param("r") else {
            continue;
        };
        let resets_at_ms = item
            .param("t")
            .and_then(|t| t.checked_mul(1_000))
            .and_then(|ms| now_ms.checked_add(ms));
        let quota = policies
            .iter()
            .find(|policy| policy.name == item.name)
            .and_then(|policy| policy.param("q"));
        word.remaining.push(Remaining {
            remaining,
            resets_at_ms,
            quota,
        });
        if word.resets_at_ms.is_none() {
            word.resets_at_ms = resets_at_ms;
        }
    }
}

/// Every line of field `name`, joined as one List (RFC 8941 §3.1: lines combine with commas);
/// `None` if absent, not ASCII, or not a List.
fn list(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<Item>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let text = lines
        .map(|line| line.to_str().ok())
        .collect::<Option<Vec<&str>>>()?
        .join(",");
    parse_list(&text)
}

/// A Structured Field List of items whose bare item is a string or a token.
fn parse_list(text: &str) -> Option<Vec<Item>> {
    let mut rest = text.trim_matches([' ', '\t']);
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (name, after) = bare_name(rest)?;
        let (params, after) = parameters(after)?;
        items.push(Item { name, params });
        let after = after.trim_start_matches([' ', '\t']);
        rest = match after.strip_prefix(',') {
            Some(next) => {
                let next = next.trim_start_matches([' ', '\t']);
                // A trailing comma is an error (RFC 8941 §4.2.1).
                if next.is_empty() {
                    return None;
                }
                next
            }
            None if after.is_empty() => after,
            None => return None,
        };
    }
    Some(items)
}

/// A string (`"..."`, with `\"` and `\\`) or a token at the start of `text`, and the rest.
fn bare_name(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Some((name, &quoted[at + 1..])),
                '\\' => match chars.next() {
                    Some((_, escaped @ ('"' | '\\'))) => name.push(escaped),
                    _ => return None,
                },
                ' '..='~' => name.push(c),
                _ => return None,
            }
        }
        return None;
    }
    let first = text.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '*') {
        return None;
    }
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || ":/!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(text.len());
    Some((text[..end].to_owned(), &text[end..]))
}

/// `;key=value` parameters at the start of `text` (a key alone is `?1`), and the rest. A
/// value that is a whole number of at most 15 digits is `Some`; other values are skipped.
fn parameters(mut text: &str) -> Option<(Params, &str)> {
    let mut params = Vec::new();
    while let Some(after) = text.strip_prefix(';') {
        let after = after.trim_start_matches(' ');
        let first = after.chars().next()?;
        if !(first.is_ascii_lowercase() || first == '*') {
            return None;
        }
        let end = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.*".contains(c)))
            .unwrap_or(after.len());
        let key = after[..end].to_owned();
        let (value, rest) = match after[end..].strip_prefix('=') {
            None => (None, &after[end..]),
            Some(value) => param_value(value)?,
        };
        params.push((key, value));
        text = rest;
    }
    Some((params, text))
}

/// A parameter's value at the start of `text`: a whole number (`Some`), or a negative or
/// decimal number, string, token, byte sequence or boolean (`None`); and the rest.
fn param_value(text: &str) -> Option<(Option<u64>, &str)> {
    let end_of = |text: &str, allowed: &dyn Fn(char) -> bool| {
        text.find(|c: char| !allowed(c)).unwrap_or(text.len())
    };
    match text.chars().next()? {
        '0'..='9' | '-' => {
            let digits = text.strip_prefix('-').unwrap_or(text);
            let end = end_of(digits, &|c| c.is_ascii_digit() || c == '.');
            let number = &digits[..end];
            let rest = &digits[end..];
            let whole = (!text.starts_with('-')
                && !number.is_empty()
                && number.len() <= 15
                && number.bytes().all(|b| b.is_ascii_digit()))
            .then(|| number.parse().ok())
            .flatten();
            Some((whole, rest))
        }
        '"' => bare_name(text).map(|(_, rest)| (None, rest)),
        ':' => {
            let end = text[1..].find(':')?;
            Some((None, &text[end + 2..]))
        }
        '?' => match text.get(1..2)? {
            "0" | "1" => Some((None, &text[2..])),
            _ => None,
        },
        _ => bare_name(text).map(|(_, rest)| (None, rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: u64 = 1_718_000_000_000;

    fn item(name: &str, params: &[(&str, Option<u64>)]) -> Item {
        Item {
            name: name.to_owned(),
            params: params.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn lists_parse_as_rfc_8941_says_and_anything_else_is_refused() {
        assert_eq!(
            parse_list(r#""burst";q=100;w=60, "day";q=1000;w=86400;pk=:MGMz:"#),
            Some(vec![
                item("burst", &[("q", Some(100)), ("w", Some(60))]),
                item(
                    "day",
                    &[("q", Some(1000)), ("w", Some(86_400)), ("pk", None)]
                ),
            ])
        );
        assert_eq!(
            parse_list(r#"default;r=5;t=1.5;x="a\"b";ok;f=?0"#),
            Some(vec![item(
                "default",
                &[
                    ("r", Some(5)),
                    ("t", None),
                    ("x", None),
                    ("ok", None),
                    ("f", None)
                ]
            )])
        );
        assert_eq!(parse_list(""), Some(vec![]));
        for bad in [
            r#""open"#,
            "burst;r=5,",
            "burst;R=5",
            "5;r=1",
            "burst r=1",
            r#""a\x""#,
            "burst;f=?2",
        ] {
            assert_eq!(parse_list(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_list("b;r=-3;t=9999999999999999").map(|items| items[0].params.clone()),
            Some(vec![("r".to_owned(), None), ("t".to_owned(), None)])
        );
    }

    #[test]
    fn each_policy_reported_is_a_count_with_its_quota_and_reset() {
        let mut headers = HeaderMap::new();
        let mut add = |name: &'static str, value: &'static str| {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        };
        add("ratelimit-policy", r#""minute";q=50;w=60"#);
        add("ratelimit-policy", r#""day";q=1000;w=86400"#);
        add(
            "ratelimit",
            r#""minute";r=45;t=30, "day";r=900, "other";t=5"#,
        );
        let mut word = ProviderWord::default();
        read_into(&mut word, &headers, NOW);
        assert_eq!(
            word.remaining,
            [
                Remaining {
                    remaining: 45,
                    resets_at_ms: Some(NOW + 30_000),
                    quota: Some(50)
                },
                Remaining {
                    remaining: 900,
                    resets_at_ms: None,
                    quota: Some(1_000)
                },
            ]
        );
        assert_eq!(word.resets_at_ms, Some(NOW + 30_000));
        // A field that does not parse says nothing.
        let mut bad = HeaderMap::new();
        bad.append(RATELIMIT.clone(), HeaderValue::from_static("minute;r=45,"));
        let mut word = ProviderWord::default();
        read_into(&mut word, &bad, NOW);
        assert_eq!(word, ProviderWord::default());
    }
}
