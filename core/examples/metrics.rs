//! Serves a tracker's metrics as Prometheus text at http://127.0.0.1:9000/metrics while a
//! worker spends a quota (the default services' finnhub, 60 a minute): watch `quota_used`, then
//! the transitions, then `quota_denied_total`.
//! `cargo run -p quota-core --features metrics --example metrics [ADDRESS] [CONFIG]`
//!
//! With CONFIG (a config file, such as `quota.toml`) the tracker is the file's, the worker
//! spends its first service, and on Unix a SIGHUP (`kill -HUP <pid>`) reloads the file into the
//! running tracker ([`QuotaFile::reconfigure`]: counts kept; a file that does not load, or that
//! changes the store or the sync policy, changes nothing and is reported).
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use quota_core::{MemoryStore, QuotaFile, QuotaTracker, TrackerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Response, Server};

fn main() -> std::process::ExitCode {
    let address = std::env::args().nth(1);
    let config = std::env::args().nth(2).map(PathBuf::from);
    match run(address.as_deref().unwrap_or("127.0.0.1:9000"), config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("metrics: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves on `address` until the process ends; the address first, so a taken one fails
/// before anything is installed.
pub fn run(
    address: &str,
    config: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = Server::http(address).map_err(|error| {
        format!("cannot serve on {address}: {error} (pass another ADDRESS, like 127.0.0.1:9001)")
    })?;
    // The process's recorder: the exporter keeps the values and renders them as text.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let tracker = Arc::new(match &config {
        Some(path) => QuotaFile::load(path)?.build()?,
        None => QuotaTracker::builder(TrackerConfig::defaults())
            .store(MemoryStore::new())
            .build()?,
    });
    let from_file = config.is_some();
    let worker = Arc::clone(&tracker);
    std::thread::spawn(move || loop {
        // The file's first service as it is now (a reload may have changed it).
        let spent = if from_file {
            worker.config().services[0].name.clone()
        } else {
            "finnhub".to_owned()
        };
        // Denied once the service is Critical: counted in quota_denied_total.
        let _ = worker.try_record(&spent, 1);
        std::thread::sleep(Duration::from_millis(500));
    });
    #[cfg(unix)]
    if let Some(path) = config {
        reload_on_sighup(path, Arc::clone(&tracker))?;
    }
    println!("metrics at http://{}/metrics", server.server_addr());
    serve(&server, &tracker, &prometheus);
    Ok(())
}

/// Reloads `path` into `tracker` on every SIGHUP, from a thread of its own.
#[cfg(unix)]
pub fn reload_on_sighup(path: PathBuf, tracker: Arc<QuotaTracker>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            println!("{}", reload(&path, &tracker));
        }
    });
    Ok(())
}

/// Reloads the config file at `path` into `tracker`, and says what changed.
pub fn reload(path: &Path, tracker: &QuotaTracker) -> String {
    let reloaded = QuotaFile::load(path).and_then(|file| file.reconfigure(tracker));
    match reloaded {
        Ok(done) => format!(
            "reloaded {}: added {:?}, removed {:?}, changed {:?}",
            path.display(),
            done.added,
            done.removed,
            done.changed
        ),
        Err(error) => format!("not reloaded, nothing changed: {error}"),
    }
}

/// Answers `GET /metrics` with the tracker's gauges refreshed first (the recording path never
/// sets them), anything else with 404, until `server.unblock()`.
pub fn serve(server: &Server, tracker: &QuotaTracker, prometheus: &PrometheusHandle) {
    for request in server.incoming_requests() {
        let response = if *request.method() == Method::Get && request.url() == "/metrics" {
            tracker.publish_metrics();
            let text = "text/plain; version=0.0.4; charset=utf-8";
            let content_type = Header::from_bytes("Content-Type", text).expect("a valid header");
            Response::from_string(prometheus.render()).with_header(content_type)
        } else {
            Response::from_string("not found\n").with_status_code(404)
        };
        // A scraper that hung up early is no reason to stop serving.
        let _ = request.respond(response);
    }
}
