//! Helpers shared by the SockJS integration tests: a protocol test server on
//! 127.0.0.1 port 0 and a reader for streaming bodies that waits, with a
//! timeout, for each frame.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::StreamExt;
use sigway_sockjs::Options;
use sigway_sockjs::echo::ProtocolTestServer;

/// Longest wait for anything the server should send promptly.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn options() -> Options {
    Options {
        response_limit: 4096,
        ..Options::default()
    }
}

pub fn start(options: Options) -> ProtocolTestServer {
    ProtocolTestServer::start(options, "127.0.0.1", 0).expect("server starts")
}

/// One client per test thread (each test has its own runtime and thread),
/// so that its connection pool never outlives the runtime that made it.
pub fn client() -> reqwest::Client {
    thread_local! {
        static CLIENT: reqwest::Client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
    }
    CLIENT.with(Clone::clone)
}

/// A fresh session URL under `endpoint` (e.g. `/echo`).
pub fn session_url(server: &ProtocolTestServer, endpoint: &str) -> String {
    server.http_url(&format!("{endpoint}/000/{:016x}", rand_id()))
}

pub fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ NEXT.fetch_add(1, Ordering::Relaxed).rotate_left(40)
}

pub async fn post(url: &str, body: &str) -> reqwest::Response {
    tokio::time::timeout(WAIT, client().post(url).body(body.to_owned()).send())
        .await
        .expect("answer in time")
        .expect("request")
}

pub async fn post_text(url: &str, body: &str) -> (u16, String) {
    let response = post(url, body).await;
    let status = response.status().as_u16();
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("body in time")
        .expect("body");
    (status, text)
}

pub async fn get_text(url: &str) -> (u16, String) {
    let response = tokio::time::timeout(WAIT, client().get(url).send())
        .await
        .expect("answer in time")
        .expect("request");
    let status = response.status().as_u16();
    let text = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("body in time")
        .expect("body");
    (status, text)
}

/// Reads a streaming body piece by piece.
pub struct StreamReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    pub chunks: usize,
}

impl StreamReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            chunks: 0,
        }
    }

    /// Everything up to and including the next `terminator`.
    pub async fn read_until(&mut self, terminator: &str) -> String {
        self.try_read_until(terminator, WAIT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no {terminator:?} within {WAIT:?}; have {:?}",
                    String::from_utf8_lossy(&self.buffer)
                )
            })
    }

    /// Like `read_until`, None when the body ends or `wait` passes first.
    pub async fn try_read_until(&mut self, terminator: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = find(&self.buffer, terminator.as_bytes()) {
                let rest = self.buffer.split_off(at + terminator.len());
                let piece = std::mem::replace(&mut self.buffer, rest);
                return Some(String::from_utf8(piece).expect("utf-8 body"));
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.chunks += 1;
                    self.buffer.extend_from_slice(&chunk);
                }
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// True when the body ends (with nothing more in it) within `WAIT`.
    pub async fn ends(&mut self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        match tokio::time::timeout(WAIT, self.stream.next()).await {
            Ok(None) => true,
            Ok(Some(Err(_))) => true,
            Ok(Some(Ok(chunk))) => {
                self.buffer.extend_from_slice(&chunk);
                false
            }
            Err(_) => false,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Opens an xhr_streaming receiver and reads its prelude.
pub async fn open_streaming(url: &str) -> (reqwest::header::HeaderMap, StreamReader) {
    let response = post(&format!("{url}/xhr_streaming"), "").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let mut reader = StreamReader::new(response);
    let prelude = reader.read_until("\n").await;
    assert_eq!(prelude, format!("{}\n", "h".repeat(2048)));
    (headers, reader)
}
