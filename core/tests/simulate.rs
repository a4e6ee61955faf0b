//! The native simulator, through the `simulate` example's own code: locked mode counts every
//! unit across threads.

#[allow(dead_code)] // its `main` is the example's entry point, unused here
#[path = "../examples/simulate.rs"]
mod simulate;

use quota_core::sim::{threads, Mode, Workload};
use quota_core::TrackerConfig;

fn run_cli(args: &[&str]) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let mut out = Vec::new();
    simulate::cli(&args, &mut out)?;
    Ok(String::from_utf8(out).expect("the report is UTF-8"))
}

/// The report's rows as (service, issued, recorded, lost, transitions).
fn rows(report: &str) -> Vec<(String, u64, u64, u64, u64)> {
    report
        .lines()
        .skip(2)
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields[i].parse::<u64>().expect("a whole number");
            (
                fields[0].to_owned(),
                number(1),
                number(2),
                number(3),
                number(4),
            )
        })
        .collect()
}

#[test]
fn locked_mode_gives_exact_totals() {
    let report = run_cli(&[
        "--workers",
        "8",
        "--calls",
        "30000",
        "--mode",
        "locked",
        "--seed",
        "7",
        "--max-size",
        "3",
    ])
    .unwrap();
    assert!(report.starts_with("mode locked, 8 workers, 30000 calls, seed 7"));
    let rows = rows(&report);
    let names: Vec<&str> = rows.iter().map(|row| row.0.as_str()).collect();
    assert_eq!(names, ["tiingo", "finnhub", "sendgrid", "total"]);
    for (service, issued, recorded, lost, transitions) in &rows {
        assert!(
            *issued >= 10_000,
            "{service}: {issued} units from 30000 calls"
        );
        assert_eq!(recorded, issued, "{service}");
        assert_eq!(*lost, 0, "{service}");
        assert!(
            *transitions >= 3,
            "{service}: only {transitions} transitions"
        );
    }
    let total = rows.last().unwrap();
    let services = &rows[..3];
    assert_eq!(total.1, services.iter().map(|row| row.1).sum::<u64>());
}

#[test]
fn same_seed_issues_the_same_units() {
    let config = TrackerConfig::defaults();
    let workload = Workload {
        workers: 4,
        ..Workload::even(&config)
    };
    let issued = |seed| {
        let mut workload = workload.clone();
        workload.seed = seed;
        let report = threads::run(&config, &workload, Mode::Locked, 4_000).unwrap();
        report
            .services
            .iter()
            .map(|service| service.counts.issued)
            .collect::<Vec<_>>()
    };
    assert_eq!(issued(7), issued(7));
    assert_ne!(issued(7), issued(8));
}

#[test]
fn racy_mode_never_records_more_than_was_issued() {
    let report = run_cli(&["--workers", "4", "--calls", "8000", "--mode", "racy"]).unwrap();
    for (service, issued, recorded, lost, _) in rows(&report) {
        assert!(recorded <= issued, "{service}");
        assert_eq!(lost, issued - recorded, "{service}");
    }
}

#[test]
fn bad_arguments_are_reported() {
    let error = run_cli(&["--mode", "fast"]).unwrap_err();
    assert!(error.contains("unknown mode \"fast\""), "{error}");
    let error = run_cli(&["--workers", "65"]).unwrap_err();
    assert!(
        error.contains("workers must be in 1..=64 (got 65)"),
        "{error}"
    );
    let error = run_cli(&["--calls"]).unwrap_err();
    assert!(error.contains("--calls needs a value"), "{error}");
    assert!(run_cli(&["--help"]).unwrap().starts_with("usage:"));
}
