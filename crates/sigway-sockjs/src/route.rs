//! The SockJS URL scheme under a prefix, as a pure function of path and
//! method (sockjs-node's dispatcher table).
//!
//! Every path ends in at most one optional slash. Session URLs are
//! `/<server>/<session>/<transport>` where server and session are non-empty
//! segments without dots. A path that names a route with another method is
//! a 405 whose `Allow` lists the methods in sockjs-node's dispatcher order
//! (`POST, OPTIONS` for the xhr transports); anything else under the prefix
//! is a 404.

use actix_web::http::Method;

/// The transports of session URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `websocket`: the framed WebSocket.
    Websocket,
    /// `xhr`: xhr polling, the receiving half.
    Xhr,
    /// `xhr_send`: what the xhr transports send.
    XhrSend,
    /// `xhr_streaming`.
    XhrStreaming,
    /// `eventsource`.
    EventSource,
    /// `htmlfile`.
    HtmlFile,
    /// `jsonp`: jsonp polling, the receiving half.
    Jsonp,
    /// `jsonp_send`: what jsonp polling sends.
    JsonpSend,
}

impl Transport {
    fn from_segment(segment: &str) -> Option<Self> {
        Some(match segment {
            "websocket" => Transport::Websocket,
            "xhr" => Transport::Xhr,
            "xhr_send" => Transport::XhrSend,
            "xhr_streaming" => Transport::XhrStreaming,
            "eventsource" => Transport::EventSource,
            "htmlfile" => Transport::HtmlFile,
            "jsonp" => Transport::Jsonp,
            "jsonp_send" => Transport::JsonpSend,
            _ => return None,
        })
    }

    /// The protocol name sockjs-node gives connections (`conn.protocol`),
    /// also the app's `SessionInfo::transport`.
    pub(crate) fn protocol(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Xhr | Transport::XhrSend => "xhr-polling",
            Transport::XhrStreaming => "xhr-streaming",
            Transport::EventSource => "eventsource",
            Transport::HtmlFile => "htmlfile",
            Transport::Jsonp | Transport::JsonpSend => "jsonp-polling",
        }
    }

    /// The URL segment of the transport.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Xhr => "xhr",
            Transport::XhrSend => "xhr_send",
            Transport::XhrStreaming => "xhr_streaming",
            Transport::EventSource => "eventsource",
            Transport::HtmlFile => "htmlfile",
            Transport::Jsonp => "jsonp",
            Transport::JsonpSend => "jsonp_send",
        }
    }

    /// Methods the transport answers (OPTIONS is the CORS preflight), in
    /// sockjs-node's dispatcher order.
    fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const POST: &[Method] = &[Method::POST];
        const CORS_POST: &[Method] = &[Method::POST, Method::OPTIONS];
        match self {
            Transport::Websocket
            | Transport::EventSource
            | Transport::HtmlFile
            | Transport::Jsonp => GET,
            Transport::JsonpSend => POST,
            Transport::Xhr | Transport::XhrSend | Transport::XhrStreaming => CORS_POST,
        }
    }
}

/// What a request under the prefix asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// The prefix itself: `Welcome to SockJS!`.
    Greeting,
    /// `GET /info`.
    Info,
    /// `OPTIONS /info`, its CORS preflight.
    InfoOptions,
    /// The iframe page (`/iframe*.html`).
    Iframe,
    /// `chunking_test` (POST), which old SockJS clients use to probe
    /// whether streaming works through the proxies in between.
    ChunkingTest,
    /// Its CORS preflight.
    ChunkingTestOptions,
    /// `/websocket`: the raw WebSocket, no SockJS framing.
    RawWebsocket,
    /// A session transport; `preflight` for OPTIONS.
    Session {
        /// The `<session>` segment.
        session: &'a str,
        /// The last segment.
        transport: Transport,
        /// The request is the transport's CORS preflight (OPTIONS).
        preflight: bool,
    },
    /// 405, with the `Allow` header's value.
    MethodNotAllowed(&'static str),
    /// 404.
    NotFound,
}

fn allow_header(methods: &[Method]) -> &'static str {
    match methods {
        [Method::GET] => "GET",
        [Method::POST] => "POST",
        [Method::POST, Method::OPTIONS] => "POST, OPTIONS",
        [Method::OPTIONS, Method::POST] => "OPTIONS, POST",
        [Method::OPTIONS, Method::GET] => "OPTIONS, GET",
        _ => "GET",
    }
}

/// `iframe.html` and versioned variants like `iframe-0.3.4.html`: sockjs-node's
/// `iframe[0-9-.a-z_]*.html`, whose dot before `html` is a regex wildcard
/// (so `iframexhtml` is the page too).
fn is_iframe(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix("iframe") else {
        return false;
    };
    let Some(before_html) = rest.strip_suffix("html") else {
        return false;
    };
    // One character of any kind, after any number of version characters.
    let mut chars = before_html.chars();
    chars.next_back().is_some()
        && chars.as_str().bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_lowercase() || matches!(b, b'-' | b'.' | b'_')
        })
}

fn valid_id(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains('.')
}

/// Routes `rest`, the path after the prefix (empty or starting with `/`).
pub fn route<'a>(rest: &'a str, method: &Method) -> Route<'a> {
    // One optional trailing slash, as sockjs-node's `[/]?$`.
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else if let Some(path) = trimmed.strip_prefix('/') {
        path.split('/').collect()
    } else {
        return Route::NotFound;
    };
    let (found, methods): (Route<'a>, &[Method]) = match segments.as_slice() {
        [] => (Route::Greeting, &[Method::GET]),
        ["info"] => {
            let found = if method == Method::OPTIONS {
                Route::InfoOptions
            } else {
                Route::Info
            };
            (found, &[Method::OPTIONS, Method::GET])
        }
        ["websocket"] => (Route::RawWebsocket, &[Method::GET]),
        ["chunking_test"] => {
            let found = if method == Method::OPTIONS {
                Route::ChunkingTestOptions
            } else {
                Route::ChunkingTest
            };
            (found, &[Method::OPTIONS, Method::POST])
        }
        [file] if is_iframe(file) => (Route::Iframe, &[Method::GET]),
        [server, session, transport] if valid_id(server) && valid_id(session) => {
            let Some(transport) = Transport::from_segment(transport) else {
                return Route::NotFound;
            };
            let found = Route::Session {
                session,
                transport,
                preflight: method == Method::OPTIONS,
            };
            (found, transport.methods())
        }
        _ => return Route::NotFound,
    };
    if methods.contains(method) {
        found
    } else {
        Route::MethodNotAllowed(allow_header(methods))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Route<'_> {
        route(path, &Method::GET)
    }

    #[test]
    fn greeting_with_and_without_slash() {
        assert_eq!(get(""), Route::Greeting);
        assert_eq!(get("/"), Route::Greeting);
        assert_eq!(get("//"), Route::NotFound);
    }

    #[test]
    fn protocol_suite_not_found_paths() {
        for path in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"] {
            assert_eq!(get(path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn iframe_variants() {
        for path in [
            "/iframe.html",
            "/iframe-a.html",
            "/iframe-.html",
            "/iframe-0.1.2.html",
            "/iframe-0.1.2abc-dirty.2144.html",
            "/iframexhtml",
            "/iframe-1_html",
        ] {
            assert_eq!(get(path), Route::Iframe, "{path}");
        }
        for path in [
            "/iframe.htm",
            "/iframe",
            "/IFRAME.HTML",
            "/IFRAME",
            "/iframe.HTML",
            "/iframe.xml",
            "/iframe-/x.html",
            "/iframehtml",
        ] {
            assert_eq!(get(path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn session_urls() {
        assert_eq!(
            route("/000/abc/xhr", &Method::POST),
            Route::Session {
                session: "abc",
                transport: Transport::Xhr,
                preflight: false
            }
        );
        assert_eq!(
            route("/000/abc/xhr_send/", &Method::OPTIONS),
            Route::Session {
                session: "abc",
                transport: Transport::XhrSend,
                preflight: true
            }
        );
        for path in [
            "///xhr",
            "/a./a/xhr",
            "/a/a./xhr",
            "/./././xhr",
            "//xhr",
            "////xhr",
            "/a/a/nope",
        ] {
            assert_eq!(route(path, &Method::POST), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        assert_eq!(
            route("/0/0/websocket", &Method::POST),
            Route::MethodNotAllowed("GET")
        );
        assert_eq!(get("/0/0/xhr"), Route::MethodNotAllowed("POST, OPTIONS"));
        assert_eq!(
            get("/chunking_test"),
            Route::MethodNotAllowed("OPTIONS, POST")
        );
        assert_eq!(route("/chunking_test", &Method::POST), Route::ChunkingTest);
        assert_eq!(
            route("/info", &Method::POST),
            Route::MethodNotAllowed("OPTIONS, GET")
        );
        assert_eq!(route("/info", &Method::OPTIONS), Route::InfoOptions);
    }
}
