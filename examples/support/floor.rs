//! What the benchmarks' two floor servers share (`examples/raw_echo.rs`,
//! `examples/minimal_relay.rs`): a runtime with the asked number of worker
//! threads, a loopback listener, one task per connection, and a clean exit
//! on SIGTERM or Ctrl-C (so that a profiler such as callgrind writes its
//! results). Included by each with `#[path]`: examples share no crate.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs `connection` on every connection accepted on 127.0.0.1:`port` (0:
/// any free port; the address is printed as "`name` listening on ADDR")
/// with `workers` runtime threads (0: one per core, as sigway's default),
/// until SIGTERM or Ctrl-C. Connections still open are not waited for.
pub fn serve<F, Fut>(name: &str, port: u16, workers: usize, connection: F) -> Result<(), Error>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        runtime.worker_threads(workers);
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("{name} listening on {}", listener.local_addr()?);
        let mut terminate = signal(SignalKind::terminate())?;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    tokio::spawn(connection(stream));
                }
                _ = terminate.recv() => return Ok::<(), Error>(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })?;
    runtime.shutdown_background();
    Ok(())
}
