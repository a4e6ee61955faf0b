//! A real HTTP server on 127.0.0.1 for the middleware and layer suites: it counts the requests
//! it receives, and answers with the status and headers each request asks for (`x-echo-status:
//! 429`, `x-echo-retry-after: 30`: a header `x-echo-NAME` comes back as `NAME`;
//! `x-echo-delay-ms: 500` answers half a second late).
//!
//! Under `/v1/body/KIND/TOKENS` it answers with a body reporting `TOKENS` as an LLM API does
//! (`{"usage":{"total_tokens":TOKENS}}`), see [`body`]: `json` at once, `chunked` three bytes
//! at a time (the number split across chunks), `sse` as OpenAI's streamed completions,
//! `missing` without usage, `huge` after 8 MiB of text, `hang` half of it and then nothing,
//! `broken` half of it and then a failed connection (with the `x-echo-*` headers' status and
//! headers).

#![allow(dead_code)]

use axum::body::Body;
use axum::extract::State;
use axum::http::Uri;
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
        async fn echo(
            State(received): State<Arc<AtomicU64>>,
            uri: Uri,
            headers: HeaderMap,
        ) -> Response {
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
            if let Some(rest) = uri.path().strip_prefix("/v1/body/") {
                let mut response = body(rest);
                *response.status_mut() = status;
                response.headers_mut().extend(out);
                return response;
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

    /// The URL of a body endpoint: `kind` reporting `tokens`.
    pub fn body_url(&self, kind: &str, tokens: u64) -> String {
        self.url
            .replace("/v1/items", &format!("/v1/body/{kind}/{tokens}"))
    }
}

/// What the body endpoints send: chunks, each after a short pause, then the end, or an error
/// (`Err`), or nothing more for an hour (`hang`).
enum Then {
    End,
    Fail,
    Hang,
}

/// `/v1/body/KIND/TOKENS`.
fn body(rest: &str) -> Response {
    let (kind, tokens) = rest.split_once('/').unwrap();
    let tokens: u64 = tokens.parse().unwrap();
    let usage = format!(
        r#"{{"id":"chat-1","choices":[{{"text":"a \"usage\": {{}}"}}],"usage":{{"prompt_tokens":3,"completion_tokens":4,"total_tokens":{tokens}}}}}"#
    );
    let json = "application/json";
    let (content_type, chunks, then) = match kind {
        "json" => (json, vec![usage], Then::End),
        "missing" => (
            json,
            vec![r#"{"id":"chat-1","usage":null}"#.to_owned()],
            Then::End,
        ),
        "chunked" => (json, split(&usage, 3), Then::End),
        "sse" => {
            let events = [
                ": keep-alive\n\n".to_owned(),
                "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n"
                    .to_owned(),
                format!("data: {usage}\n\n"),
                "data: [DONE]\n\n".to_owned(),
            ]
            .concat();
            ("text/event-stream", split(&events, 7), Then::End)
        }
        "huge" => {
            let mut chunks = vec![r#"{"pad":""#.to_owned()];
            chunks.extend((0..128).map(|_| "x".repeat(64 * 1024)));
            chunks.push(format!(r#"","usage":{{"total_tokens":{tokens}}}}}"#));
            (json, chunks, Then::End)
        }
        "hang" => (json, split(&usage, usage.len() / 2), Then::Hang),
        "broken" => (json, split(&usage, usage.len() / 2), Then::Fail),
        _ => panic!("no body kind {kind}"),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let count = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let last = i + 1 == count;
            if !last || matches!(then, Then::End) {
                if tx.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        match then {
            Then::End => {}
            Then::Fail => drop(tx.send(Err(std::io::Error::other("cut off"))).await),
            Then::Hang => {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
                drop(tx);
            }
        }
    });
    Response::builder()
        .header("content-type", content_type)
        .body(Body::new(Chunks(rx)))
        .unwrap()
}

/// `text` in pieces of `size` bytes.
fn split(text: &str, size: usize) -> Vec<String> {
    text.as_bytes()
        .chunks(size.max(1))
        .map(|piece| String::from_utf8_lossy(piece).into_owned())
        .collect()
}

/// A body of the chunks a task sends, each its own frame.
struct Chunks(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(http_body::Frame::data)))
    }
}
