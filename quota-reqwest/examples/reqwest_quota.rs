//! Counts a reqwest client's calls against the quotas of a config file:
//! `cargo run -p quota-reqwest --example reqwest_quota -- --config quota.toml`
//! (`--service NAME`: the file's first service by default; `--calls N` per task, 10).
//! The API is a stand-in on 127.0.0.1 that counts what it receives.

use axum::{extract::State, routing::get, Router};
use quota_core::QuotaFile;
use quota_reqwest::{QuotaExceeded, QuotaMiddleware};
use reqwest_middleware::ClientBuilder;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one run did.
#[derive(Debug)]
pub struct Report {
    /// Requests the tracker let through, and that were answered.
    pub sent: u64,
    /// Requests denied before sending.
    pub denied: u64,
    /// Requests the server received.
    pub received: u64,
}

/// 8 tasks, `calls` requests each, counted against `service` of the config file at `config`.
pub async fn run(config: &str, service: Option<&str>, calls: u64) -> Result<Report, Error> {
    let tracker = QuotaFile::load(config)?.build()?;
    let service = match service {
        Some(name) => name.to_owned(),
        None => match tracker.config().services.first() {
            Some(first) => first.name.clone(),
            None => return Err(format!("{config} has no service").into()),
        },
    };

    // The API: counts the requests it receives.
    let received = Arc::new(AtomicU64::new(0));
    let api = Router::new()
        .route(
            "/",
            get(|State(n): State<Arc<AtomicU64>>| async move {
                n.fetch_add(1, SeqCst);
                "ok"
            }),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, api).await });

    // Requests to 127.0.0.1 count against `service`; a denied one is never sent. The
    // middleware follows redirects itself, counting each hop: the client must not.
    let middleware = QuotaMiddleware::new(tracker).host("127.0.0.1", &service)?;
    let reqwest = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let client = ClientBuilder::new(reqwest).with(middleware).build();

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let (mut sent, mut denied) = (0, 0);
                for _ in 0..calls {
                    match client.get(&url).send().await {
                        Ok(response) => sent += u64::from(response.status().is_success()),
                        Err(error) => match QuotaExceeded::find(&error) {
                            Some(_) => denied += 1,
                            None => return Err(Error::from(error)),
                        },
                    }
                }
                Ok((sent, denied))
            })
        })
        .collect();
    let (mut sent, mut denied) = (0, 0);
    for task in tasks {
        let (s, d) = task.await??;
        (sent, denied) = (sent + s, denied + d);
    }
    let received = received.load(SeqCst);
    Ok(Report {
        sent,
        denied,
        received,
    })
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let result = match (
        value("--config"),
        value("--calls").map(|n| n.parse::<u64>()),
    ) {
        (None, _) => Err("usage: reqwest_quota --config FILE [--service NAME] [--calls N]".into()),
        (_, Some(Err(error))) => Err(format!("--calls: {error}").into()),
        (Some(config), calls) => {
            let service = value("--service").map(String::as_str);
            run(config, service, calls.map_or(10, Result::unwrap_or_default)).await
        }
    };
    match result {
        Ok(report) => {
            println!(
                "sent {}, denied {} (never sent); the API received {}",
                report.sent, report.denied, report.received
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("reqwest_quota: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
