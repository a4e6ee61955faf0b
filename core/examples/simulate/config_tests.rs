//! `--config`: run inside `core/tests/simulate.rs`, which includes the example.

use super::shared::shared_child;
use super::*;

fn run(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let mut out = Vec::new();
    cli(&args, &mut out, &relaunch)?;
    Ok(String::from_utf8(out).expect("the report is UTF-8"))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_example_config_runs_its_services_on_threads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../quota.toml");
    let report = run(&["--config", path, "--workers", "2", "--calls", "3000"]).unwrap();
    let names: Vec<&str> = report
        .lines()
        .skip(2)
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        ["tiingo", "finnhub", "sendgrid", "total", "every"],
        "{report}"
    );
}

#[test]
fn a_config_replaces_the_services_and_the_flags_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "q.json",
        r#"{"services": [{"name": "search", "limit": 100, "period": "minute"},
                         {"name": "email", "limit": 1000, "period": "day"}]}"#,
    );
    let report = run(&["--config", &path, "--workers", "2", "--calls", "2000"]).unwrap();
    assert!(
        report.contains("\nsearch ") && report.contains("\nemail "),
        "{report}"
    );
    assert!(!report.contains("tiingo"), "{report}");

    let options = parse(&["--config".into(), path, "--limit".into(), "7".into()]).unwrap();
    let setup = setup(&options).unwrap();
    assert!(setup.config.services.iter().all(|s| s.limit == 7));
    assert_eq!(setup.store, None);
}

#[test]
fn the_files_store_and_admission_share_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.json");
    let path = write(
        &dir,
        "q.toml",
        &format!(
            "store = {:?}\n[sync]\ninterval_ms = 10\n\n\
             [[services]]\nname = \"llm\"\nlimit = 100\nperiod = \"day\"\n\
             admission = {{ leased = 8 }}\n",
            format!("file:{}", counts.display())
        ),
    );
    let args: Vec<String> = ["--config", &path, "--calls", "400", "--processes", "2"]
        .map(String::from)
        .to_vec();
    let options = parse(&args).unwrap();
    let setup = setup(&options).unwrap();
    assert_eq!(setup.store, Some(StoreUrl::File(counts.clone())));
    assert_eq!(setup.sync.interval_ms, 10);
    assert_eq!(
        setup.config.services[0].admission,
        Admission::Leased { block: 8 }
    );
    // Two children, one after the other, in this process (a child is what each process
    // of the shared run does).
    let store = setup.store.clone().unwrap();
    let mut admitted = 0;
    for child in 0..2 {
        let mut out = Vec::new();
        shared_child(&options, &setup, &store, child, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields[..3], ["service", "0", "200"], "{out}");
        admitted += fields[3].parse::<u64>().unwrap();
    }
    // Leases stop at the Critical threshold (80 of 100): never over it, nothing lost.
    assert!(admitted > 0 && admitted <= 80, "{admitted}");
    let state = quota_core::FileStore::new(&counts).state().unwrap();
    let recorded: u64 = state.windows().map(|w| w.total).sum();
    assert_eq!(recorded, admitted);
}

#[test]
fn bad_configs_and_stores_are_reported_without_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let error = run(&["--config", "/no/such/quota.toml"]).unwrap_err();
    assert!(
        error.starts_with("could not read /no/such/quota.toml"),
        "{error}"
    );
    let bad = write(
        &dir,
        "bad.toml",
        "[[services]]\nname = \"x\"\nlimit = 0\nperiod = \"day\"\n",
    );
    let error = run(&["--config", &bad]).unwrap_err();
    assert!(
        error.contains("at line 3") && error.contains("limit"),
        "{error}"
    );
    let error = run(&["--store", "memory:"]).unwrap_err();
    assert!(error.contains("one process"), "{error}");
    // Redis: a URL its client refuses (with the feature), or no Redis (without).
    let error = run(&["--store", "redis://app:hunter2@h:port"]).unwrap_err();
    assert!(error.contains("redis://app:<redacted>@h:port"), "{error}");
    let error = run(&["--store", "redis://app:hunter2@"]).unwrap_err();
    assert!(error.starts_with("--store: invalid store URL"), "{error}");
    let secret = write(
        &dir,
        "secret.toml",
        "store = \"redis://app:hunter2@h:port\"\n[[services]]\nname = \"x\"\nlimit = 1\nperiod = \"hunter2\"\n",
    );
    let error = run(&["--config", &secret]).unwrap_err();
    assert!(error.contains("line 5"), "{error}");
    for error in [
        error,
        run(&["--store", "redis://app:hunter2@h:port"]).unwrap_err(),
    ] {
        assert!(!error.contains("hunter2"), "{error}");
    }
}
