//! The SockJS protocol test server: sigway's SockJS layer with the four
//! endpoints the official sockjs-protocol suite (0.3.3) expects, mounted
//! with the options of sockjs-node's own test server
//! (`tests/reference/sockjs/server.js` is the Node twin).
//!
//! - `/echo`: echoes every message;
//! - `/close`: closes every session right after opening it (`c[3000,"Go away!"]`);
//! - `/disabled_websocket_echo`: echo with the WebSocket transports off;
//! - `/cookie_needed_echo`: echo that sets `JSESSIONID` cookies.
//!
//! Streaming responses end after 4 KiB, as the suite expects; other
//! timings are sockjs-node's defaults (heartbeat 25 s, sessions expire 5 s
//! after their last receiver left).
//!
//! ```text
//! cargo run --example sockjs_test_server -- 8081      # or SOCKJS_PORT=8081
//! # then, in a checkout of sockjs-protocol:
//! SOCKJS_URL=http://localhost:8081 ./venv/bin/python sockjs-protocol-0.3.3.py
//! ```
//!
//! sigway's SockJS layer answers byte for byte as sockjs-node 0.3.24 (the
//! server videre-server ran) does, which `tests/sockjs_node_diff.rs`
//! checks against the real thing. Where the official 0.3.3 suite and
//! sockjs-node disagree, sockjs-node wins, so these suite checks fail
//! against this server exactly as they fail against sockjs-node 0.3.24
//! (from reading the suite; it needs Python 2.7 to run):
//!
//! - `verify_not_cached` wants `Cache-Control: no-store, no-cache,
//!   must-revalidate, max-age=0`; sockjs-node adds `no-transform`
//!   (`InfoTest.test_basic`, `XhrStreaming.test_transport`,
//!   `EventSource.test_transport`, `HtmlFile.test_transport`,
//!   `JsonPolling.test_transport`);
//! - `verify_cors` wants `Access-Control-Allow-Credentials: true` without
//!   an Origin and `*` for `Origin: null`; sockjs-node sends credentials
//!   only with an Origin and echoes `null` (`InfoTest.test_options`,
//!   `InfoTest.test_options_null_origin`, `XhrPolling.test_options`,
//!   `XhrPolling.test_request_headers_cors`, `XhrStreaming.test_options`);
//! - the iframe page is sockjs-node's, not the suite's `_sockjs_onload`
//!   one (`IframePage.test_simpleUrl`, `test_versionedUrl`,
//!   `test_queriedUrl`);
//! - jsonp answers start with `/**/` (`JsonPolling.test_transport`,
//!   `test_invalid_json`, `test_content_types`, `test_close`,
//!   `JsessionidCookie.test_jsonp`);
//! - eventsource's Content-Type is `text/event-stream` without a charset
//!   (`EventSource.test_transport`);
//! - plain HTTP on a WebSocket URL gets `Not a valid websocket request`,
//!   not `Can "Upgrade" only to "WebSocket".` (`WebsocketHttpErrors.
//!   test_httpMethod`), and only WebSocket version 13 is accepted
//!   (`WebsocketHybi10.test_headersSanity` for 7 and 8,
//!   `test_firefox_602_connection_header`).
//!
//! Besides those, as before: `test_haproxy` and the two
//! `WebsocketHixie76` close tests need hixie-76 WebSockets or an old
//! websocket-client, and `XhrPolling.test_transport` cannot pass on any
//! server (it compares a space-stripped header with a string that has a
//! space). An aborted receiver now ends its session (the suite accepts
//! that as well as `c[1002,...]`). sockjs-client 1.6.1 echoes through it
//! over every transport (`tests/sockjs_client_node.rs` in Node,
//! `tests/e2e` in Chromium).
//!
//! The port comes from the first argument, else `SOCKJS_PORT`, else 8081;
//! the host from `SOCKJS_HOST` (default 127.0.0.1). `RUST_LOG` sets the log
//! filter (default `info`).

use sigway_sockjs::Options;
use sigway_sockjs::echo::{ProtocolTestServer, protocol_test_options};

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let port = match std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SOCKJS_PORT").ok())
    {
        Some(port) => port
            .parse::<u16>()
            .map_err(|e| std::io::Error::other(format!("invalid port {port:?}: {e}")))?,
        None => 8081,
    };
    let host = std::env::var("SOCKJS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let server = ProtocolTestServer::start(protocol_test_options(Options::default()), &host, port)?;
    tracing::info!(
        "SockJS protocol test server on http://{}: /echo /close /disabled_websocket_echo /cookie_needed_echo",
        server.addr()
    );
    server.join();
    Ok(())
}
