//! Round trip through the bus alone (no gateway): two nodes on one Redis,
//! `pairs` payloads in flight, each echoed back by the other node; prints
//! p50/p99. Splits cross-node latency into the bus's share and the
//! gateway's (`benches/cluster.sh` measures the whole path).
//!
//! ```text
//! redis-server --port 6390 --save "" &
//! cargo run --release -p sigway-cluster --example bus_rtt -- redis://127.0.0.1:6390 10 5
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use sigway_cluster::{Bus, BusConfig, BusEvent, RedisTransport};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let pairs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
    let prefix = format!("busrtt{}", std::process::id());
    let a = RedisTransport::connect(std::slice::from_ref(&url), &prefix).await?;
    let b = RedisTransport::connect(std::slice::from_ref(&url), &prefix).await?;
    let (bus_a, mut events_a) = Bus::start(a, BusConfig::new(1, 1));
    let (bus_b, mut events_b) = Bus::start(b, BusConfig::new(2, 1));
    // Node 2 echoes everything back.
    let echo = bus_b.clone();
    tokio::spawn(async move {
        while let Some(event) = events_b.recv().await {
            if let BusEvent::Message { from, payload } = event {
                let _ = echo.send(from, payload);
            }
        }
    });
    let start = Instant::now();
    while !bus_a.alive_nodes().contains(&2) || !bus_b.alive_nodes().contains(&1) {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("nodes did not see each other".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent_at = vec![Instant::now(); pairs];
    for (i, at) in sent_at.iter_mut().enumerate() {
        *at = Instant::now();
        bus_a.send(2, Bytes::from(vec![i as u8; 100]))?;
    }
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), events_a.recv()).await
        else {
            return Err("no echo within 2 s".into());
        };
        if let BusEvent::Message { payload, .. } = event {
            let i = usize::from(payload[0]);
            samples.push(sent_at[i].elapsed());
            sent_at[i] = Instant::now();
            bus_a.send(2, payload)?;
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "bus rtt: pairs={pairs} n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
