//! What a Redis store never shows: the password of its URL. The store's only redaction, in one
//! place, so that it can move to a shared reader of URL passwords as a whole.

/// The texts to hide: the password as written in the URL (percent-encoded) and decoded.
#[derive(Clone)]
pub(super) struct Secrets(Vec<String>);

impl Secrets {
    /// The password in `url`'s user information, read by hand so that even a URL the parser
    /// rejects has it redacted.
    pub(super) fn in_url(url: &str) -> Secrets {
        Secrets(password_in_url(url))
    }

    /// These and `password`, the one the client parsed from the URL, ready for every later
    /// message.
    pub(super) fn and(mut self, password: Option<&str>) -> Secrets {
        let secrets = &mut self.0;
        if let Some(password) = password {
            secrets.push(password.to_owned());
        }
        secrets.retain(|secret| !secret.is_empty());
        // Longest first, so that no secret is left half replaced by a shorter one.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        self
    }

    /// `text` with every secret replaced by `<redacted>`.
    pub(super) fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.0.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    }
}

/// The password in a URL's user information, as written (percent-encoded) and decoded.
fn password_in_url(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return Vec::new();
    };
    vec![password.to_owned(), percent_decode(password)]
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
