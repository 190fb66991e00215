//! The SockJS protocol test server: sigway's SockJS layer with the four
//! endpoints the official sockjs-protocol suite (0.3.3) expects.
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
//! Against the 0.3.3 suite (Python 2.7, unittest2, websocket-client 0.59,
//! ws4py 0.5.1, with two shims in its helpers for those newer libraries:
//! ws4py reports closes through `closed()`, websocket-client renamed
//! `ConnectionClosedException`) 64 of its 68 tests pass. The other four: `test_haproxy`
//! needs hixie-76 WebSockets (pre-2011 browsers; not supported);
//! `XhrPolling.test_transport` cannot pass on any server (it compares a
//! space-stripped header with a string that has a space); the two
//! `WebsocketHixie76` close tests expect an old websocket-client that
//! returned `None` on close. sockjs-client 1.6 (websocket, xhr-streaming,
//! xhr-polling, eventsource) echoes and closes correctly against it.
//!
//! The port comes from the first argument, else `SOCKJS_PORT`, else 8081;
//! the host from `SOCKJS_HOST` (default 127.0.0.1). `RUST_LOG` sets the log
//! filter (default `info`).

use sigway::sockjs::Options;
use sigway::sockjs::echo::{ProtocolTestServer, protocol_test_options};

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
