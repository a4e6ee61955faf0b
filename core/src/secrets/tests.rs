//! Finding URL passwords and redacting them: what config files need (every candidate in any
//! text) and what the Redis store needs (one URL's password, as its parser reads it, plus the
//! one the parser found).

use super::*;

#[test]
fn one_url_as_its_parser_reads_it() {
    // As written and percent-decoded.
    let secrets = Secrets::of_url("redis://user:pa%40ss@h:6379/0");
    assert_eq!(
        secrets.redact("pa%40ss then pa@ss"),
        "<redacted> then <redacted>"
    );
    // The last `@` of the authority ends the user information.
    let secrets = Secrets::of_url("redis://u:p@ss@h");
    assert_eq!(secrets.redact("p@ss"), "<redacted>");
    assert_eq!(secrets.redact("p and ss"), "p and ss");
    // No password, an empty one, or none before the path: nothing to hide.
    for url in [
        "redis://h:6379",
        "redis://user@h",
        "redis://u:@h",
        "redis://u:hun/ter2@h",
        "no scheme",
    ] {
        let secrets = Secrets::of_url(url);
        assert_eq!(secrets.redact(url), url);
    }
    // Even a URL a parser refuses.
    let secrets = Secrets::of_url("redis://app:hunter2@h:port");
    assert_eq!(
        secrets.redact("invalid port in redis://app:hunter2@h:port"),
        "invalid port in redis://app:<redacted>@h:port"
    );
    // What the URL's parser read is added (`and`), empty ones left out.
    let secrets = Secrets::of_url("rediss://:s3cret@h").and([String::new(), "t0ken".into()]);
    assert_eq!(
        secrets.redact("s3cret t0ken secret"),
        "<redacted> <redacted> secret"
    );
}

#[test]
fn every_candidate_in_a_text() {
    let secrets = Secrets::in_text("a redis://u:one@h and rediss://v:two%21@h/x");
    assert_eq!(
        secrets.redact("one two%21 two! three"),
        "<redacted> <redacted> <redacted> three"
    );
    // Up to the first `@` as well as the last: a text may not be a URL at all.
    let secrets = Secrets::in_text("redis://u:p@ss@h");
    assert_eq!(secrets.redact("p@ss"), "<redacted>");
    assert_eq!(secrets.redact("up"), "u<redacted>");
    // As `Debug` escapes it.
    let secrets = Secrets::in_text("redis://u:a\"b@h");
    assert_eq!(secrets.redact("\"a\\\"b\""), "\"<redacted>\"");
}

#[test]
fn a_raw_text_ends_a_url_at_a_quote_or_a_space() {
    let mut found = Vec::new();
    url_passwords("store = \"redis://u:pw@h\" x@y", true, &mut found);
    assert_eq!(Secrets::new(found).redact("pw\" x"), "<redacted>\" x");
    let mut found = Vec::new();
    url_passwords("store = \"redis://u:pw@h\" x@y", false, &mut found);
    // Read on to the last `@`: `pw@h" x` is hidden too.
    assert_eq!(Secrets::new(found).redact("pw@h\" x"), "<redacted>");
}

#[test]
fn longer_secrets_go_first() {
    let secrets = Secrets::new(vec!["ab".into(), "abc".into(), "ab".into(), String::new()]);
    assert_eq!(secrets.redact("xabcx ab"), "x<redacted>x <redacted>");
    assert_eq!(Secrets::default().redact("abc"), "abc");
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode("a%40b%2Fc%zz%4"), "a@b/c%zz%4");
    assert_eq!(percent_decode("%FF"), "\u{fffd}");
}
