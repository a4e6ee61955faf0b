//! A forwarding HTTP proxy between headless Chromium and wasm-bindgen-test-runner's page server.
//!
//! The runner serves the test page with tiny_http 0.12, whose thread pool can lose a wake-up: when
//! two connections are queued before the thread woken for the first counts itself busy, the second
//! waits for a thread to come free. Chromium keeps every connection it opened alive while the page
//! lives, and each one holds a tiny_http thread, so with five connections at once the queued one's
//! request is never read: the page stays at "Loading scripts..." and chromedriver gives up after
//! 300 s ("Timed out receiving message from renderer"). Through this proxy every request reaches the
//! server on a connection of its own that closes after the response, so each server thread is free
//! again once its response is sent, and a queued connection is served.

use crate::run::root;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// How long one side may stay silent before its connection is dropped.
const IDLE: Duration = Duration::from_secs(120);

/// Starts the proxy (once per xtask process) and writes a chromedriver capabilities file that
/// sends Chromium's loopback requests through it; its path is for `WASM_BINDGEN_TEST_WEBDRIVER_JSON`.
pub fn webdriver_json() -> Result<PathBuf, String> {
    static STARTED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    STARTED.get_or_init(start).clone()
}

fn start() -> Result<PathBuf, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("browser proxy: could not listen on loopback: {error}"))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("browser proxy: {error}"))?;
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(move || {
                // A failed exchange only fails that request; Chromium reports it on the page.
                let _ = forward(client);
            });
        }
    });
    // `<-loopback>` lifts Chromium's rule that loopback addresses never use a proxy.
    let capabilities = format!(
        r#"{{ "goog:chromeOptions": {{ "args": ["--proxy-server=http://{address}", "--proxy-bypass-list=<-loopback>"] }} }}"#
    );
    let dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
    .join("xtask");
    let path = dir.join(format!("webdriver-{}.json", std::process::id()));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, capabilities))
        .map_err(|error| format!("browser proxy: could not write {}: {error}", path.display()))?;
    Ok(path)
}

/// One request from Chromium, sent upstream with `Connection: close`; the response goes back
/// with `Connection: close` too, and both connections end with it.
fn forward(client: TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(IDLE))?;
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut client = client;
    let request = read_head(&mut from_client)?;
    let Some((request_line, headers)) = request.split_first() else {
        return Ok(()); // Chromium closed an idle connection.
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return refuse(&mut client, "400 Bad Request");
    };
    let Some((authority, path)) = target.strip_prefix("http://").map(split_target) else {
        return refuse(&mut client, "501 Not Implemented");
    };
    let loopback = ["127.0.0.1:", "localhost:", "[::1]:"];
    if !loopback.iter().any(|prefix| authority.starts_with(prefix)) {
        return refuse(&mut client, "403 Forbidden");
    }
    if header(headers, "transfer-encoding").is_some() {
        return refuse(&mut client, "501 Not Implemented");
    }
    let length: u64 = match header(headers, "content-length").map(str::parse) {
        None => 0,
        Some(Ok(length)) => length,
        Some(Err(_)) => return refuse(&mut client, "400 Bad Request"),
    };

    let upstream = TcpStream::connect(authority)?;
    upstream.set_read_timeout(Some(IDLE))?;
    let mut to_upstream = upstream.try_clone()?;
    let mut head = format!("{method} {path} {version}\r\n");
    push_headers(&mut head, headers);
    to_upstream.write_all(head.as_bytes())?;
    io::copy(&mut (&mut from_client).take(length), &mut to_upstream)?;

    let mut from_upstream = BufReader::new(upstream);
    let response = read_head(&mut from_upstream)?;
    let Some((status_line, headers)) = response.split_first() else {
        return refuse(&mut client, "502 Bad Gateway");
    };
    let mut head = format!("{status_line}\r\n");
    push_headers(&mut head, headers);
    client.write_all(head.as_bytes())?;
    io::copy(&mut from_upstream, &mut client)?;
    client.shutdown(Shutdown::Both)
}

/// `127.0.0.1:8000/run.js` → (`127.0.0.1:8000`, `/run.js`).
fn split_target(target: &str) -> (&str, &str) {
    match target.find('/') {
        Some(slash) => target.split_at(slash),
        None => (target, "/"),
    }
}

/// The lines up to the blank one that ends an HTTP head; none at end of stream.
fn read_head(reader: &mut impl BufRead) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(Vec::new());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line.to_owned());
    }
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The headers but those about the connection itself, then `Connection: close` and the blank line.
fn push_headers(head: &mut String, headers: &[String]) {
    const HOP_BY_HOP: [&str; 3] = ["connection", "proxy-connection", "keep-alive"];
    for line in headers {
        let key = line.split(':').next().unwrap_or_default().trim();
        if !HOP_BY_HOP.iter().any(|hop| key.eq_ignore_ascii_case(hop)) {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
}

fn refuse(client: &mut TcpStream, status: &str) -> io::Result<()> {
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    client.write_all(response.as_bytes())?;
    client.shutdown(Shutdown::Both)
}
