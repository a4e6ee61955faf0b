//! Store URLs, and passwords: never shown by an error, a `Debug` or a `Display`, whatever the
//! file looks like, in time linear in its size.

use super::{json_error, toml_error, toml_service};
use crate::config::{QuotaFile, StoreUrl};

#[test]
fn store_urls() {
    let parse = |text: &str| text.parse::<StoreUrl>();
    assert_eq!(parse("memory:"), Ok(StoreUrl::Memory));
    assert_eq!(
        parse("file:quota.json"),
        Ok(StoreUrl::File("quota.json".into()))
    );
    assert_eq!(
        parse("file:///var/lib/q.json"),
        Ok(StoreUrl::File("/var/lib/q.json".into()))
    );
    assert_eq!(parse("file:/q.json"), Ok(StoreUrl::File("/q.json".into())));
    // A host (and maybe a password) is not a local path: refused, the password not shown.
    assert!(parse("file://").is_err());
    assert_eq!(
        parse("file://localhost/var/q.json"),
        Ok(StoreUrl::File("/var/q.json".into()))
    );
    for text in [
        "file://backup:secret@nas/q.json",
        "file://nas/q.json",
        "file:////backup:secret@nas/q.json",
        "file://///nas/q.json",
        "file:/\u{2f}backup:secret@nas/q.json",
    ] {
        let error = parse(text).expect_err(text);
        let shown = format!("{error} {error:?}");
        assert!(
            shown.contains("file:// with a host is not a local file"),
            "{shown}"
        );
        assert!(!shown.contains("secret"), "{shown}");
    }
    let error = QuotaFile::from_toml_str(&format!(
        "store = \"file://backup:secret@nas/q.json\"\n{}",
        toml_service("")
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("line 1") && !error.contains("secret"),
        "{error}"
    );
    for (text, shown, tls) in [
        ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379", false),
        ("redis://h/2", "redis://h/2", false),
        (
            "redis://user:pa%40ss@h:6379/0",
            "redis://user:<redacted>@h:6379/0",
            false,
        ),
        ("rediss://:s3cret@h", "rediss://:<redacted>@h", true),
        // The last `@` of the host part ends the user information, as URL parsers read it.
        ("redis://u:p@ss@h", "redis://u:<redacted>@h", false),
    ] {
        let Ok(StoreUrl::Redis(url)) = parse(text) else {
            panic!("{text} should be a Redis URL");
        };
        assert_eq!(url.expose_secret(), text);
        assert_eq!(url.to_string(), shown);
        assert_eq!(StoreUrl::Redis(url.clone()).to_string(), shown);
        assert_eq!(format!("{url:?}"), format!("RedisUrl({shown:?})"));
        assert_eq!(url.is_tls(), tls);
    }
    for (text, why) in [
        ("", "expected memory:"),
        ("memory", "expected memory:"),
        ("file:", "needs a path"),
        ("postgres://u:hunter2@db", "expected memory:"),
        ("REDIS://u:hunter2@h", "expected memory:"),
        ("redis://", "no host"),
        ("redis://u:hunter2@", "no host"),
        ("redis://u:hunter2@:6379", "no host"),
        ("redis://u:hun/ter2@h", "percent-encode"),
        ("redis://u:hunter2@h /0", "no spaces"),
    ] {
        let error = parse(text).expect_err(text).to_string();
        assert!(error.contains(why), "{text:?}: {error}");
        assert!(
            !error.contains("hunter2") && !error.contains("ter2"),
            "{error}"
        );
    }
}

#[test]
fn passwords_never_appear_in_errors_or_debug() {
    const SECRET: &str = "hunter2-Zq9";
    let service = toml_service("");
    let bad_toml = [
        // The store itself is refused, for many reasons.
        format!("store = \"redis://app:{SECRET}@\"\n{service}"),
        format!("store = \"redis://app:{SECRET}@h /0\"\n{service}"),
        format!("store = \"redis://app:{SECRET}@h/@x\"\n{service}"),
        format!("store = \"postgres://app:{SECRET}@h\"\n{service}"),
        format!("store = \"redis://app:{SECRET}@h\n{service}"),
        format!("store = redis://app:{SECRET}@h\n{service}"),
        format!("store = \"redis://app:{SECRET}@h\"\nstore = \"memory:\"\n{service}"),
        // A URL quoted where a parser echoes the value.
        format!("store = \"redis://app:{SECRET}@h\"\n[[services]]\nname = \"svc\"\nlimit = \"redis://app:{SECRET}@h\"\nperiod = \"day\"\n"),
        format!("{service}period = \"redis://app:{SECRET}@h\"\n"),
        format!("{service}admission = \"redis://app:{SECRET}@h\"\n"),
        format!("{service}\"redis://app:{SECRET}@h\" = 1\n"),
        format!("store = \"redis://app:{SECRET}@h\"\n[[services]]\nname = \"{SECRET}\"\nlimit = 0\nperiod = \"day\"\n"),
        format!("store = \"redis://app:{SECRET}@h\"\n[[services]]\nname = \"svc\"\nlimit = 1\nperiod = \"{SECRET}\"\n"),
        // Escapes that spell the password only once decoded.
        format!("{service}period = \"redis://app:hunter\\u0032-Zq9@h\"\n"),
        format!("{service}period = 'redis://app:{SECRET}@h'\n"),
        format!("{service}period = \"\"\"redis://app:{SECRET}@h/x\"\"\"\n"),
        // Percent-encoded in the URL, decoded in an echo.
        format!("store = \"redis://app:hunter%32-Zq9@h\"\n[[services]]\nname = \"svc\"\nlimit = 1\nperiod = \"{SECRET}\"\n"),
    ];
    let object = r#"{"name": "svc", "limit": 10, "period": "day"}"#;
    let bad_json = [
        format!("{{\"store\": \"redis://app:{SECRET}@\", \"services\": [{object}]}}"),
        format!("{{\"store\": \"redis://app:{SECRET}@h\", \"services\": [{{\"name\": \"svc\", \"limit\": \"redis://app:{SECRET}@h\"}}]}}"),
        r#"{"services": [{"name": "svc", "limit": "redis://app:hunter\u0032-Zq9@h"}"#.to_string(),
        r#"{"services": [{"name": "svc", "limit": 1, "period": "redis://app:hunter2-\"Zq9@h"}]}"#.to_string(),
        format!("{{\"redis://app:{SECRET}@h\": 1, \"services\": [{object}]}}"),
        format!("{{\"store\": \"redis://app:{SECRET}@h\", \"services\": [{{\"name\": \"{SECRET}\", \"limit\": 0, \"period\": \"day\"}}]}}"),
        format!("{{\"store\": \"redis://app:{SECRET}@h\", \"services\": [{{\"name\": \"svc\", \"limit\": 1, \"period\": \"{SECRET}\"}}]}} x"),
    ];
    let errors = bad_toml
        .iter()
        .map(|text| toml_error(text))
        .chain(bad_json.iter().map(|text| json_error(text)));
    for error in errors {
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
    // The Debug of a file that parsed.
    let file = QuotaFile::from_toml_str(&format!(
        "store = \"rediss://app:{SECRET}@redis.internal:6380\"\n{service}"
    ))
    .unwrap();
    let store = file.store.as_ref().unwrap();
    assert_eq!(
        store.to_string(),
        "rediss://app:<redacted>@redis.internal:6380"
    );
    assert!(!format!("{file:?}").contains(SECRET));
    assert!(!format!("{file:#?}").contains(SECRET));
    let StoreUrl::Redis(url) = store else {
        panic!()
    };
    assert!(url.expose_secret().contains(SECRET));
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[test]
fn a_redis_store_opens_lazily_with_the_feature() {
    use crate::config::ConfigError;
    let url: StoreUrl = "redis://app:hunter2@127.0.0.1:1".parse().unwrap();
    assert!(
        url.open().is_ok(),
        "RedisStore::new connects at its first call"
    );
    // A URL the Redis client refuses: its error, redacted.
    let url: StoreUrl = "redis://app:hunter2@h:port".parse().unwrap();
    let error = url.open().err().expect("not a port");
    assert!(matches!(error, ConfigError::Store { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(text.contains("redis://app:<redacted>@h:port"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn many_urls_cost_linear_time() {
    // 10,000 URL-like texts, each read only up to the next: an error still comes at once.
    let urls: String = (0..10_000).map(|i| format!("://u:p{i}@")).collect();
    let started = std::time::Instant::now();
    for text in [
        format!("store = \"{urls}\"\n{}", toml_service("")),
        format!("{}period = \"{urls}\"\n", toml_service("")),
        format!("{{\"store\": \"{urls}\", \"services\": []}}"),
    ] {
        assert!(QuotaFile::from_toml_str(&text).is_err());
        assert!(QuotaFile::from_json_str(&text).is_err());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
