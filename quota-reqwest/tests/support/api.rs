//! A real HTTP server on 127.0.0.1 for the middleware and layer suites: it counts the requests
//! it receives, and answers with the status and headers each request asks for (`x-echo-status:
//! 429`, `x-echo-retry-after: 30`: a header `x-echo-NAME` comes back as `NAME`;
//! `x-echo-delay-ms: 500` answers half a second late).

#![allow(dead_code)]

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

/// The API: counts every request and echoes `x-echo-*` headers back.
pub struct Api {
    pub url: String,
    received: Arc<AtomicU64>,
}

impl Api {
    pub async fn start() -> Api {
        async fn echo(State(received): State<Arc<AtomicU64>>, headers: HeaderMap) -> Response {
            received.fetch_add(1, SeqCst);
            let mut status = StatusCode::OK;
            let mut out = HeaderMap::new();
            for (name, value) in &headers {
                let Some(name) = name.as_str().strip_prefix("x-echo-") else {
                    continue;
                };
                if name == "status" {
                    status = value.to_str().unwrap().parse().unwrap();
                } else if name == "delay-ms" {
                    let ms = value.to_str().unwrap().parse().unwrap();
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                } else {
                    out.append(
                        HeaderName::from_bytes(name.as_bytes()).unwrap(),
                        value.clone(),
                    );
                }
            }
            (status, out, "answer").into_response()
        }
        let received = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .fallback(echo)
            .with_state(Arc::clone(&received));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/items", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { url, received }
    }

    pub fn received(&self) -> u64 {
        self.received.load(SeqCst)
    }
}
