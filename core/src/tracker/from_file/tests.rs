//! Building a tracker from a config file: the store opened, `require_store`, and validation
//! that is the tracker's own.

use crate::config::tests::{toml_error, toml_service};
use crate::config::SyncPolicy;
use crate::config::{ConfigError, QuotaFile, ServiceConfig, TrackerConfig};
use crate::error::QuotaError;
use crate::store::StoreError;
use crate::tracker::QuotaTracker;
use crate::window::Period;
use std::path::Path;

#[test]
fn validation_is_the_trackers_own() {
    // The same error as building that config in code.
    let text = "[[services]]\nname = \"svc\"\nperiod = \"day\"\nlimit = 0\n";
    let ConfigError::Invalid { error, .. } = toml_error(text) else {
        panic!()
    };
    let code = TrackerConfig::new([ServiceConfig::new("svc", 0, Period::Day)]);
    assert_eq!(Err(*error.clone()), code.validate());
    assert_eq!(
        QuotaTracker::new(code).err(),
        Some(*error),
        "the tracker refuses it alike"
    );
    // And the sync policy's, through the builder.
    let mut file = QuotaFile::from_toml_str(&toml_service("")).unwrap();
    file.sync.reduced_rate.fraction = 0.0;
    let Err(ConfigError::Invalid {
        error, line: None, ..
    }) = file.build()
    else {
        panic!("expected the sync policy to be refused");
    };
    assert!(
        matches!(
            *error,
            QuotaError::InvalidConfig {
                field: "sync.reduced_rate.fraction",
                ..
            }
        ),
        "{error:?}"
    );
}

#[cfg(not(all(feature = "redis", not(target_arch = "wasm32"))))]
#[test]
fn a_redis_store_without_the_feature_is_a_clear_error() {
    let file = QuotaFile::from_toml_str(&format!(
        "store = \"redis://app:hunter2@127.0.0.1:1\"\n{}",
        toml_service("")
    ))
    .unwrap();
    let error = file.build().expect_err("no Redis in this build");
    assert!(
        matches!(error, ConfigError::Unsupported { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("feature `redis`"), "{text}");
    assert!(
        text.contains("redis://app:<redacted>@127.0.0.1:1"),
        "{text}"
    );
    assert!(!format!("{text}{error:?}").contains("hunter2"));
}

#[test]
fn build_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counts.json");
    let text = format!(
        "store = {:?}\n{}",
        format!("file:{}", path.display()),
        toml_service("admission = { leased = 2 }\n")
    );
    let file = QuotaFile::from_toml_str(&text).unwrap();
    let tracker = file.build().unwrap();
    tracker.try_record("svc", 1).unwrap();
    tracker.flush().unwrap();
    drop(tracker);
    // A second tracker on the same file continues the count.
    assert_eq!(file.build().unwrap().usage("svc").unwrap().used, 1);

    let memory = QuotaFile::from_toml_str(&format!(
        "store = \"memory:\"\n{}",
        toml_service("admission = \"exact\"\n")
    ))
    .unwrap();
    let tracker = memory.builder().unwrap().build().unwrap();
    tracker.try_record("svc", 3).unwrap();
    assert_eq!(tracker.usage("svc").unwrap().used, 3);
    assert_eq!(tracker.stats().loads, 1, "it has a store");
}

#[test]
fn require_store_fails_the_build_when_the_first_read_fails() {
    let dir = tempfile::tempdir().unwrap();
    // A store under a plain file: every read fails (not a directory).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let store = format!("file:{}", blocker.join("quota.json").display());
    let text = |require: &str| format!("store = {store:?}\n{require}{}", toml_service(""));

    let file = QuotaFile::from_toml_str(&text("require_store = true\n")).unwrap();
    assert!(file.require_store);
    let error = file.build().expect_err("the store cannot be read");
    let ConfigError::Store {
        store: named,
        error: cause,
    } = &error
    else {
        panic!("not a store error: {error:?}");
    };
    assert_eq!(named, &store);
    assert!(matches!(cause, StoreError::Io(_)), "{cause:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot open store {store}: store I/O failed")),
        "{error}"
    );

    // Without it the tracker starts from zero and says so in its stats.
    let file = QuotaFile::from_toml_str(&text("")).unwrap();
    assert!(!file.require_store);
    let tracker = file.build().unwrap();
    assert_eq!(tracker.stats().load_failures, 1);
    tracker.record_call("svc", 1).unwrap();

    // A store that can be read builds either way.
    let good = format!(
        "store = {:?}\nrequire_store = true\n{}",
        format!("file:{}", dir.path().join("ok.json").display()),
        toml_service("")
    );
    QuotaFile::from_toml_str(&good).unwrap().build().unwrap();
    // Nothing to require: an error at the field.
    let text = format!("require_store = true\n{}", toml_service(""));
    let error = toml_error(&text).to_string();
    assert_eq!(
        error,
        "invalid config at line 1, column 1: require_store needs a store to require (set \
         `store`: file:PATH or redis://HOST) (got true)"
    );
    // A wrong type is a parse error at its line.
    let error = toml_error(&format!("require_store = \"yes\"\n{}", toml_service("")));
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[cfg(all(feature = "redis", not(target_arch = "wasm32")))]
#[test]
fn require_store_with_an_unreachable_redis_names_it_redacted() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let text = format!(
        "store = \"redis://app:hunter2@127.0.0.1:1\"\nrequire_store = true\n{}",
        toml_service("")
    );
    let error = QuotaFile::from_toml_str(&text)
        .unwrap()
        .build()
        .expect_err("nothing listens");
    assert!(matches!(error, ConfigError::Store { .. }), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(
        text.contains("redis://app:<redacted>@127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn the_example_quota_toml_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../quota.toml");
    let file = QuotaFile::load(&path).unwrap();
    assert_eq!(file.tracker, TrackerConfig::defaults());
    assert_eq!(file.store, None);
    assert_eq!(file.sync, SyncPolicy::default());
    file.validate().unwrap();
    let tracker = file.build().unwrap();
    tracker.record_call("finnhub", 1).unwrap();
}

#[test]
fn a_reloaded_file_reconfigures_the_running_tracker_and_keeps_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file:{}", dir.path().join("quota.json").display());
    let file = |services: &str, interval: u64| {
        QuotaFile::from_toml_str(&format!(
            "store = \"{store}\"\n[sync]\ninterval_ms = {interval}\n{services}"
        ))
        .unwrap()
    };
    let api =
        |limit: u64| format!("[[services]]\nname = \"api\"\nlimit = {limit}\nperiod = \"day\"\n");
    let first = file(&api(100), 1_000);
    let tracker = first.build().unwrap();
    tracker.record_call("api", 40).unwrap();

    let more = format!(
        "{}[[services]]\nname = \"mail\"\nlimit = 5\nperiod = \"hour\"\n",
        api(50)
    );
    let done = file(&more, 1_000).reconfigure(&tracker).unwrap();
    assert_eq!(
        (done.changed, done.added),
        (vec!["api".to_owned()], vec!["mail".to_owned()])
    );
    let usage = tracker.usage("api").unwrap();
    assert_eq!((usage.used, usage.limit), (40, 50));
    tracker.record_call("mail", 1).unwrap();

    // The store and the sync policy are the tracker's: a file changing them changes nothing.
    let refused = |file: QuotaFile, field: &str| {
        let ConfigError::Invalid { error, .. } = file.reconfigure(&tracker).unwrap_err() else {
            panic!()
        };
        let QuotaError::InvalidConfig {
            field: got, reason, ..
        } = *error
        else {
            panic!()
        };
        assert_eq!(got, field);
        assert!(
            reason.contains("cannot change while the tracker runs"),
            "{reason}"
        );
    };
    refused(file(&api(10), 5_000), "sync");
    refused(QuotaFile::from_toml_str(&api(10)).unwrap(), "store");
    let paris = QuotaFile::from_toml_str(&format!(
        "store = \"{store}\"\n[sync]\ninterval_ms = 1000\n{}",
        api(10).replace(
            "period = \"day\"",
            "period = \"day\"\ntimezone = \"Europe/Paris\""
        )
    ))
    .unwrap();
    // A valid reload that changes the window: fresh counts in the new window.
    paris.reconfigure(&tracker).unwrap();
    assert_eq!(tracker.usage("api").unwrap().used, 0);
    assert!(
        matches!(tracker.usage("mail"), Err(QuotaError::UnknownService(_))),
        "removed"
    );
    // The calls of the windows left behind are in the store.
    tracker.flush().unwrap();
    let stored: u64 = crate::store::FileStore::new(dir.path().join("quota.json"))
        .state()
        .unwrap()
        .windows()
        .map(|w| w.total)
        .sum();
    assert_eq!(stored, 41);
}
