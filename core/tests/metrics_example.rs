//! The `metrics` example's server, through its own code: the Prometheus exporter installed as
//! the process's recorder (global: the one test here that installs one), scraped
//! over HTTP on a free loopback port; and the README's Metrics section, which is that example.

#[allow(dead_code)] // its `main` is the example's entry point, unused here
#[path = "../examples/metrics.rs"]
mod example;
#[path = "support/prometheus.rs"]
mod prometheus;
#[path = "support/timeout.rs"]
mod timeout;

use metrics_exporter_prometheus::PrometheusBuilder;
use prometheus::value;
use quota_core::{
    ManualClock, MemoryStore, Period, QuotaTracker, ServiceConfig, SyncPolicy, TrackerConfig,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// `GET path` over HTTP/1.0: the status line, the headers and the body.
fn get(address: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("headers, then a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_lowercase(), body.to_owned())
}

#[test]
fn the_example_serves_prometheus_text_with_the_numbers() {
    timeout::within(60, || {
        let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
        let clock = ManualClock::new(1_718_000_000_000);
        let store = MemoryStore::new();
        let tracker = Arc::new(
            QuotaTracker::builder(TrackerConfig::new([
                ServiceConfig::new("search", 10, Period::Minute),
                ServiceConfig::new("mail", 100, Period::Day),
            ]))
            .clock(clock.clone())
            .store(store.clone())
            // One try per flush: the test fails one on purpose.
            .sync_policy(SyncPolicy {
                flush_timeout_ms: 0,
                ..SyncPolicy::default()
            })
            .build()
            .unwrap(),
        );
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let address = server.server_addr().to_ip().unwrap();
        let serving = {
            let (server, tracker) = (Arc::clone(&server), Arc::clone(&tracker));
            std::thread::spawn(move || example::serve(&server, &tracker, &prometheus))
        };

        // Plain calls: no metric was set by them, the scrape's refresh shows them.
        tracker.record_call("mail", 7).unwrap();
        let (status, headers, body) = get(address, "/metrics");
        assert_eq!(status, "HTTP/1.0 200 OK");
        assert!(
            headers.contains("content-type: text/plain; version=0.0.4"),
            "{headers}"
        );
        let s = prometheus::samples(&body);
        assert_eq!(value(&s, "quota_used", &[("service", "mail")]), Some(7.0));
        assert_eq!(
            value(&s, "quota_remaining", &[("service", "mail")]),
            Some(93.0)
        );
        assert_eq!(
            value(&s, "quota_limit", &[("service", "search")]),
            Some(10.0)
        );
        assert_eq!(
            value(&s, "quota_level", &[("service", "search")]),
            Some(0.0)
        );
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(0.0));
        // The counters are there before anything happened, at 0.
        let at_critical = [("service", "search"), ("reason", "critical")];
        assert_eq!(value(&s, "quota_denied_total", &at_critical), Some(0.0));
        let to_critical = [("service", "search"), ("to", "critical")];
        assert_eq!(
            value(&s, "quota_transitions_total", &to_critical),
            Some(0.0)
        );

        // Critical (a forced sync), a denial, a failed sync.
        tracker.record_call("search", 9).unwrap();
        tracker.try_record("search", 1).unwrap_err();
        store.fail_next(1);
        tracker.flush().unwrap_err();
        let (_, _, body) = get(address, "/metrics");
        let s = prometheus::samples(&body);
        let search = [("service", "search")];
        assert_eq!(value(&s, "quota_used", &search), Some(9.0));
        assert_eq!(value(&s, "quota_level", &search), Some(2.0));
        assert_eq!(
            value(&s, "quota_transitions_total", &to_critical),
            Some(1.0)
        );
        assert_eq!(value(&s, "quota_denied_total", &at_critical), Some(1.0));
        assert_eq!(value(&s, "quota_saves_total", &[]), Some(1.0));
        assert_eq!(value(&s, "quota_save_failures_total", &[]), Some(1.0));
        assert_eq!(value(&s, "quota_reduced_rate", &[]), Some(0.0));
        assert!(body.contains("# TYPE quota_used gauge"));
        assert!(body.contains("# TYPE quota_transitions_total counter"));

        // The next minute, seen by the scrape's own refresh.
        clock.advance(60_000);
        let (_, _, body) = get(address, "/metrics");
        let s = prometheus::samples(&body);
        assert_eq!(value(&s, "quota_used", &search), Some(0.0));
        assert_eq!(value(&s, "quota_level", &search), Some(0.0));
        let to_normal = [("service", "search"), ("to", "normal")];
        assert_eq!(value(&s, "quota_transitions_total", &to_normal), Some(1.0));

        let (status, _, _) = get(address, "/elsewhere");
        assert_eq!(status, "HTTP/1.0 404 Not Found");
        server.unblock();
        serving.join().unwrap();
    });
}

#[test]
fn the_readme_metrics_section_is_the_example() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/metrics.rs");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .expect("README has a Metrics section");
    let code = section
        .split_once("```rust,ignore\n")
        .and_then(|(_, rest)| rest.split_once("\n```\n"))
        .map(|(code, _)| code)
        .expect("the section shows the example");
    assert_eq!(
        format!("{code}\n"),
        example,
        "README's Metrics code drifted from examples/metrics.rs"
    );
}

#[test]
fn a_taken_address_is_a_message_naming_it_before_anything_is_installed() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let error = example::run(&address, None).expect_err("the address is taken");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("cannot serve on {address}: "))
            && text.ends_with("(pass another ADDRESS, like 127.0.0.1:9001)"),
        "{text}"
    );
}

/// Where `metrics_process` finds its config file.
const CONFIG_ENV: &str = "QUOTA_METRICS_EXAMPLE_CONFIG";

/// The example as a process of its own (`reloads_its_config_file_on_sighup` starts it): serves
/// on a free loopback port until killed.
#[test]
#[ignore = "a process of the SIGHUP test, not a test"]
fn metrics_process() {
    let config = std::env::var(CONFIG_ENV).expect("started by the SIGHUP test");
    example::run("127.0.0.1:0", Some(config.into())).unwrap();
}

#[cfg(unix)]
#[test]
fn reloads_its_config_file_on_sighup() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    timeout::within(120, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quota.toml");
        let service = |name: &str, limit: u64| {
            format!("[[services]]\nname = \"{name}\"\nlimit = {limit}\nperiod = \"day\"\n")
        };
        std::fs::write(&path, service("api", 1_000)).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "metrics_process",
                "--nocapture",
                "--quiet",
            ])
            .env(CONFIG_ENV, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, said) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        let next_line = |prefix: &str| loop {
            let line = said.recv_timeout(Duration::from_secs(30)).unwrap();
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        };
        let address: SocketAddr = next_line("metrics at http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap();
        let limit = |service: &str| {
            let (_, _, body) = get(address, "/metrics");
            value(
                &prometheus::samples(&body),
                "quota_limit",
                &[("service", service)],
            )
        };
        assert_eq!(limit("api"), Some(1_000.0));
        let hang_up = || {
            let status = Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        };

        std::fs::write(&path, service("api", 500) + &service("mail", 20)).unwrap();
        hang_up();
        assert_eq!(
            next_line("reloaded "),
            format!(
                "{}: added [\"mail\"], removed [], changed [\"api\"]",
                path.display()
            )
        );
        assert_eq!((limit("api"), limit("mail")), (Some(500.0), Some(20.0)));

        // A file the tracker refuses changes nothing.
        std::fs::write(&path, service("api", 0)).unwrap();
        hang_up();
        let refused = next_line("not reloaded, nothing changed: ");
        assert!(refused.contains("limit must be at least 1"), "{refused}");
        assert_eq!(limit("api"), Some(500.0));

        child.kill().unwrap();
        child.wait().unwrap();
    });
}
