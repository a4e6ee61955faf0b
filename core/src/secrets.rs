//! URL passwords: found in a text (`scheme://user:password@host`) and replaced by `<redacted>`
//! in every message that could quote one. One reading for config files and the Redis store.
//!
//! No imports from the rest of the crate: the stores and the config reader both use it.

/// Texts never shown (URL passwords, as written, percent-decoded and as `Debug` escapes them):
/// replaced by `<redacted>` wherever they appear in a message.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The passwords of every `scheme://user:password@` in `text` (one string).
    pub(crate) fn in_text(text: &str) -> Secrets {
        let mut found = Vec::new();
        url_passwords(text, false, &mut found);
        Secrets::new(found)
    }

    /// The password of one URL as URL parsers read it (the user information ends at the last
    /// `@` before the path, query or fragment), as written and percent-decoded. Read by hand,
    /// so that even a URL the parser rejects has it redacted.
    #[cfg_attr(
        not(all(feature = "redis", not(target_arch = "wasm32"))),
        allow(dead_code)
    )]
    pub(crate) fn of_url(url: &str) -> Secrets {
        let password = url
            .split_once("://")
            .and_then(|(_, rest)| parsed_password(rest));
        Secrets::new(password.map_or_else(Vec::new, |password| {
            vec![password.to_owned(), percent_decode(password)]
        }))
    }

    /// These and `more` (a password the URL's parser read).
    #[cfg_attr(
        not(all(feature = "redis", not(target_arch = "wasm32"))),
        allow(dead_code)
    )]
    pub(crate) fn and(self, more: impl IntoIterator<Item = String>) -> Secrets {
        let mut found = self.0;
        found.extend(more);
        Secrets::new(found)
    }

    pub(crate) fn new(mut found: Vec<String>) -> Secrets {
        found.retain(|secret| !secret.is_empty());
        // Longest first, so that no secret is left half replaced by a shorter one.
        found.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        found.dedup();
        Secrets(found)
    }

    /// The secrets themselves (to add to another set).
    #[cfg_attr(
        not(all(feature = "redis", not(target_arch = "wasm32"))),
        allow(dead_code)
    )]
    pub(crate) fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// Whether there are none.
    #[cfg_attr(
        not(all(feature = "redis", not(target_arch = "wasm32"))),
        allow(dead_code)
    )]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }
}

/// The password in `tail`, a URL's text after `://`, as URL parsers read it: the user
/// information ends at the last `@` of the authority.
fn parsed_password(tail: &str) -> Option<&str> {
    let authority = &tail[..tail.find(['/', '?', '#']).unwrap_or(tail.len())];
    authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| password_of(userinfo))
}

/// The text after the first `:` of a URL's user information.
fn password_of(userinfo: &str) -> Option<&str> {
    userinfo.split_once(':').map(|(_, password)| password)
}

/// Adds the password candidates of each `://` in `text`: the text between the first `:` of
/// the user information and its end, taking the user information to end at the last `@` of
/// the authority (as URL parsers do), at the first `@` and at the last `@` before the next
/// `://`; each as written, percent-decoded and `Debug`-escaped. In a file's raw text (`raw`), a
/// URL also ends at a quote, a space or a control character. (Each URL is read only up to the
/// next, so the work stays linear in the text.)
pub(crate) fn url_passwords(text: &str, raw: bool, found: &mut Vec<String>) {
    let starts: Vec<usize> = text.match_indices("://").map(|(i, _)| i + 3).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(text.len(), |next| next - 3);
        let mut tail = text.get(start..end.max(start)).unwrap_or_default();
        if raw {
            let stop = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\'';
            tail = &tail[..tail.find(stop).unwrap_or(tail.len())];
        }
        let passwords = [
            parsed_password(tail),
            tail.split_once('@')
                .and_then(|(userinfo, _)| password_of(userinfo)),
            tail.rsplit_once('@')
                .and_then(|(userinfo, _)| password_of(userinfo)),
        ];
        for password in passwords.into_iter().flatten() {
            for form in [password.to_owned(), percent_decode(password)] {
                let escaped = format!("{form:?}");
                let escaped = &escaped[1..escaped.len() - 1];
                if escaped != form {
                    found.push(escaped.to_owned());
                }
                found.push(form);
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) => match (hex(high), hex(low)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
