//! Serves a tracker's metrics as Prometheus text at http://127.0.0.1:9000/metrics while a
//! worker spends the finnhub quota (60 a minute): watch `quota_used`, then the transitions, then
//! `quota_denied_total`. `cargo run -p quota-core --features metrics --example metrics [ADDRESS]`
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use quota_core::{MemoryStore, QuotaTracker, TrackerConfig};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Response, Server};

fn main() -> std::process::ExitCode {
    let address = std::env::args().nth(1);
    match run(address.as_deref().unwrap_or("127.0.0.1:9000")) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("metrics: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves on `address` until the process ends; the address first, so a taken one fails
/// before anything is installed.
pub fn run(address: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let server = Server::http(address).map_err(|error| {
        format!("cannot serve on {address}: {error} (pass another ADDRESS, like 127.0.0.1:9001)")
    })?;
    // The process's recorder: the exporter keeps the values and renders them as text.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let tracker = Arc::new(
        QuotaTracker::builder(TrackerConfig::defaults())
            .store(MemoryStore::new())
            .build()?,
    );
    let worker = Arc::clone(&tracker);
    std::thread::spawn(move || loop {
        // Denied once finnhub is Critical: counted in quota_denied_total.
        let _ = worker.try_record("finnhub", 1);
        std::thread::sleep(Duration::from_millis(500));
    });
    println!("metrics at http://{}/metrics", server.server_addr());
    serve(&server, &tracker, &prometheus);
    Ok(())
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
