//! Redirects, followed by the middleware one hop at a time, so that each hop passes through
//! the rules and is counted against its own host's service.
//!
//! The next hop is built as reqwest's own redirect policy (tower-http's `FollowRedirect`)
//! builds it: 303, and 301 / 302 for a POST, become a GET without body; 307 / 308 send the
//! method and body again; Authorization, Cookie and Proxy-Authorization are dropped when the
//! host or port changes.

use crate::error::RedirectError;
use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, LOCATION,
    PROXY_AUTHORIZATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{Method, StatusCode};
use reqwest::{Request, Response, Url};

/// How the middleware follows redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Redirects {
    pub(crate) follow: bool,
    pub(crate) max: usize,
}

impl Default for Redirects {
    /// Followed, at most 10 in a row (reqwest's default).
    fn default() -> Self {
        Redirects {
            follow: true,
            max: 10,
        }
    }
}

/// A copy of a hop's request, kept to build the next hop from.
pub(crate) struct Kept {
    request: Request,
    /// The body is a stream: `request` has none, and cannot be sent with it again.
    body_lost: bool,
}

impl Kept {
    /// A copy of `request` (the body too, when it is bytes).
    pub(crate) fn of(request: &mut Request) -> Kept {
        if let Some(copy) = request.try_clone() {
            return Kept {
                request: copy,
                body_lost: false,
            };
        }
        // A stream: copy the rest, which `try_clone` always can without a body.
        let body = request.body_mut().take();
        let head = request.try_clone().unwrap_or_else(|| {
            let mut head = Request::new(request.method().clone(), request.url().clone());
            *head.headers_mut() = request.headers().clone();
            head
        });
        *request.body_mut() = body;
        Kept {
            request: head,
            body_lost: true,
        }
    }
}

/// What follows a hop's response.
pub(crate) enum Then {
    /// The response is the answer: not a redirect, or one without a usable `Location`.
    Answer,
    /// A redirect to follow with this request.
    Follow(Request),
    /// A redirect that cannot be followed.
    Refuse(RedirectError),
}

/// What follows `response`, the answer to `kept`, after `followed` redirects in a row.
pub(crate) fn next_hop(kept: Kept, response: &Response, followed: usize, max: usize) -> Then {
    let status = response.status();
    if !matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    ) {
        return Then::Answer;
    }
    let Kept {
        mut request,
        body_lost,
    } = kept;
    let previous = request.url().clone();
    // Relative to the hop's URL; a Location that is no http(s) URL is not followed.
    let Some(location) = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| previous.join(value).ok())
        .filter(|url| matches!(url.scheme(), "http" | "https"))
    else {
        return Then::Answer;
    };
    if followed >= max {
        return Then::Refuse(RedirectError::TooMany {
            max,
            location: shown(&location),
        });
    }
    let method = request.method().clone();
    let to_get = match status {
        StatusCode::SEE_OTHER => true,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => method == Method::POST,
        _ => false,
    };
    if to_get {
        if method != Method::HEAD {
            *request.method_mut() = Method::GET;
        }
        *request.body_mut() = None;
        let headers = request.headers_mut();
        for name in [
            CONTENT_TYPE,
            CONTENT_LENGTH,
            CONTENT_ENCODING,
            TRANSFER_ENCODING,
        ] {
            headers.remove(name);
        }
    } else if body_lost {
        return Then::Refuse(RedirectError::BodyNotReplayable {
            status,
            method,
            location: shown(&location),
        });
    }
    let cross_host = location.host_str() != previous.host_str()
        || location.port_or_known_default() != previous.port_or_known_default();
    if cross_host {
        let headers = request.headers_mut();
        for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE] {
            headers.remove(name);
        }
        headers.remove("cookie2");
    }
    *request.url_mut() = location;
    Then::Follow(request)
}

/// The URL a response built from an `http::Response` without one carries (reqwest's
/// placeholder): not an answer from elsewhere.
const NO_URL: &str = "http://no.url.provided.local/";

/// Whether `response` comes from another URL than `sent`: the client followed redirects.
pub(crate) fn client_followed(sent: &Url, response: &Response) -> Option<RedirectError> {
    let answered = response.url();
    // Only where the request went: a later middleware may add a query (an API key as
    // `?token=...`) or a fragment, which no redirect is.
    let place = |url: &Url| {
        (
            url.scheme().to_owned(),
            url.host_str().map(str::to_owned),
            url.port_or_known_default(),
            url.path().to_owned(),
        )
    };
    let moved = place(answered) != place(sent);
    (moved && answered.as_str() != NO_URL).then(|| RedirectError::ClientFollowed {
        sent: shown(sent),
        answered: shown(answered),
    })
}

/// `url` without what may carry a key: user info, query, fragment.
fn shown(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url
}
