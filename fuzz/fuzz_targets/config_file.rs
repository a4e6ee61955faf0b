//! `QuotaFile::from_toml_str` and `QuotaFile::from_json_str` on any text: a config file after a
//! hand edit, a bad merge or a truncated write.
//!
//! Checks, for both parsers:
//! - they never panic;
//! - every error is typed: `ConfigError::Parse`, or `ConfigError::Invalid` holding a
//!   `QuotaError::InvalidConfig`; a line or column it names is within the text;
//! - a file that parses passes `QuotaFile::validate` and `TrackerConfig::validate`, and a
//!   tracker builds from its services and sync policy (on a `MemoryStore`: the fuzzer opens no
//!   file and no connection);
//! - a URL password in the text (`scheme://user:PASSWORD@`, anywhere: PASSWORD of at least 6
//!   ASCII letters and digits, with both, so that no word of the messages themselves is one)
//!   never appears in an error's `Display` (nor in its `Debug`, checked where no escape can
//!   spell one), and a parsed Redis store's `Display` and `Debug` never show its password.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quota_core::{ConfigError, MemoryStore, QuotaError, QuotaFile, QuotaTracker, StoreUrl};

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 is replaced rather than dropped, so every input reaches the parsers.
    let text = String::from_utf8_lossy(data);
    let passwords = passwords(&text);
    for (format, parsed) in [
        ("TOML", QuotaFile::from_toml_str(&text)),
        ("JSON", QuotaFile::from_json_str(&text)),
    ] {
        match parsed {
            Ok(file) => check_file(&file, format),
            Err(error) => check_error(&error, &text, &passwords, format),
        }
    }
});

fn check_file(file: &QuotaFile, format: &str) {
    file.validate()
        .unwrap_or_else(|error| panic!("{format}: a parsed file fails validation: {error}"));
    file.tracker
        .validate()
        .unwrap_or_else(|error| panic!("{format}: parsed services fail validation: {error}"));
    QuotaTracker::builder(file.tracker.clone())
        .store(MemoryStore::new())
        .sync_policy(file.sync.clone())
        .build()
        .unwrap_or_else(|error| panic!("{format}: no tracker from a parsed file: {error}"));
    if let Some(StoreUrl::Redis(url)) = &file.store {
        let full = url.expose_secret();
        if let Some(password) = url_password(full).filter(|p| full.matches(p).count() == 1) {
            let store = file.store.as_ref().unwrap();
            for shown in [
                store.to_string(),
                format!("{store:?}"),
                url.to_string(),
                format!("{url:?}"),
            ] {
                assert!(
                    !shown.contains(password),
                    "{format}: the store shows its password: {shown}"
                );
            }
        }
    }
}

fn check_error(error: &ConfigError, text: &str, passwords: &[&str], format: &str) {
    let (line, column) = match error {
        ConfigError::Parse { line, column, .. } => (*line, *column),
        ConfigError::Invalid {
            line,
            column,
            error: invalid,
            ..
        } => {
            assert!(
                matches!(**invalid, QuotaError::InvalidConfig { .. }),
                "{format}: ConfigError::Invalid holds {invalid:?}"
            );
            (*line, *column)
        }
        other => panic!("{format}: parsing text returned {other:?}"),
    };
    if let Some(line) = line {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&line),
            "{format}: line {line} of {lines}: {error}"
        );
    }
    if let Some(column) = column {
        assert!(column >= 1, "{format}: column 0: {error}");
    }
    let display = error.to_string();
    // `Debug` escapes control and unprintable characters (`\n`, `\u{10ffff}`), and an escape
    // can spell letters and digits that are no password's; the text itself is the `Display`'s.
    let plain = display
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_control());
    let debug = if plain {
        format!("{error:?}")
    } else {
        String::new()
    };
    for shown in [display, debug] {
        for password in passwords {
            assert!(
                !shown.contains(password),
                "{format}: the error shows the password {password:?}: {shown}"
            );
        }
    }
}

/// Every `://user:PASSWORD@` of the text with a user of ASCII letters and digits and a
/// `distinctive` password.
fn passwords(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (index, _) in text.match_indices("://") {
        let rest = &text[index + 3..];
        let Some((user, after)) = rest.split_once(':') else {
            continue;
        };
        let Some((password, _)) = after.split_once('@') else {
            continue;
        };
        if user.bytes().all(|b| b.is_ascii_alphanumeric()) && distinctive(password) {
            found.push(password);
        }
    }
    found
}

/// A URL's password as URL parsers read it, when it is `distinctive`.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    distinctive(password).then_some(password)
}

/// At least 6 ASCII letters and digits, both kinds: no word or number of an error's own text
/// (`invalid config`, `admission`, `line 12`, `Leased { block: 0 }`, `<redacted>`) is one.
fn distinctive(password: &str) -> bool {
    password.len() >= 6
        && password.bytes().all(|b| b.is_ascii_alphanumeric())
        && password.bytes().any(|b| b.is_ascii_digit())
        && password.bytes().any(|b| b.is_ascii_alphabetic())
}
