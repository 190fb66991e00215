//! The floor of the benchmarks: a raw WebSocket echo server on
//! tokio-tungstenite, with nothing between the socket and the echo. Every
//! message a client sends comes straight back on the same socket, on any
//! path. `benches/compare.sh` and `benches/instructions.sh` measure sigway's
//! cost per relayed message against this server's cost per echoed message
//! (one message in and one out each): what the WebSocket stack alone costs.
//!
//! ```text
//! cargo run --release --example raw_echo -- --port 9000 [--workers 2]
//! ```
//! It listens on 127.0.0.1 only and exits cleanly on SIGTERM or Ctrl-C (so
//! that a profiler such as callgrind writes its results).

use clap::Parser;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[path = "support/floor.rs"]
mod floor;
use floor::Error;

#[derive(Parser)]
#[command(about = "Raw WebSocket echo (loopback only): the benchmarks' floor")]
struct Cli {
    /// Port on 127.0.0.1 (0: any free one, printed on stdout).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Runtime worker threads (0: one per core, as sigway's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// tungstenite's defaults give every connection a 128 KiB read buffer, which
/// would make this floor heavier per idle peer than the servers it is a
/// floor for; 4 KiB holds any benchmark message.
fn lean_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// Echoes every data message back until the peer closes. Messages that
/// arrived together are written together: it echoes what it can read at
/// once, then flushes, as any reasonable server would.
async fn echo_connection(stream: TcpStream) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(lean_config())).await?;
    while let Some(message) = ws.next().await {
        let mut message = message?;
        loop {
            if message.is_binary() || message.is_text() {
                ws.feed(message).await?;
            }
            // Pings are answered and closes echoed by tungstenite itself.
            match ws.next().now_or_never() {
                Some(Some(next)) => message = next?,
                Some(None) => return Ok(()),
                None => break,
            }
        }
        ws.flush().await?;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let cli = Cli::parse();
    floor::serve("raw echo", cli.port, cli.workers, |stream| async move {
        // A client that goes away mid-message is not our problem.
        let _ = echo_connection(stream).await;
    })
}
