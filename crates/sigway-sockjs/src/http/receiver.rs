//! Receivers: the polling and streaming responses of a session. Each is a
//! response body fed by a local task that attaches to the session, writes
//! wrapped frames (each its own chunk) and ends the body when the transport
//! says so: after one frame for polling, after `response_limit` characters
//! for streaming, on a close, or when the client goes away (which, as in
//! sockjs-node, ends the session at once).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpRequest;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::BODY_CHUNKS;
use crate::app::{SessionInfo, SockjsApp};
use crate::error::{Close, SockjsError};
use crate::frame::{self, Wrapping};
use crate::link::{Outgoing, SessionLink};
use crate::outbox::Queue;
use crate::registry::Registry;
use crate::route::Transport;
use crate::server::Server;
use crate::session::{Attach, PollingSession, drain_batch, spawn_app};
use crate::ws::FINAL_WRITE;

/// The response body of a receiver: chunks from its task.
pub(super) struct ChannelBody {
    chunks: mpsc::Receiver<Bytes>,
    /// A chunk taken early by [`ChannelBody::wait_first`].
    first: Option<Bytes>,
}

impl ChannelBody {
    pub(super) fn new(chunks: mpsc::Receiver<Bytes>) -> Self {
        Self {
            chunks,
            first: None,
        }
    }

    /// Waits for the first chunk, so that a poll's head goes out with its
    /// frame, as sockjs-node's does (Node sends the head with the first
    /// write). A client that leaves meanwhile drops this future, and the
    /// receiver sees it.
    pub(super) async fn wait_first(&mut self) {
        if self.first.is_none() {
            self.first = self.chunks.recv().await;
        }
    }
}

impl futures_util::Stream for ChannelBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.chunks.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// How a receiver writes and when it stops.
struct ReceiverSpec {
    wrapping: Wrapping,
    streaming: bool,
    response_limit: usize,
    heartbeat: Duration,
}

pub(super) fn open_receiver<A: SockjsApp>(
    server: &Arc<Server<A>>,
    req: &HttpRequest,
    session_id: &str,
    transport: Transport,
    wrapping: Wrapping,
    streaming: bool,
    prelude: Option<String>,
) -> ChannelBody {
    let options = &server.options;
    let remote = options.edge.client_addr(req);
    let origin = crate::edge::origin_of(req);
    let session = server
        .registry
        .get_or_open(
            session_id,
            (options.outbound_queue, options.outbound_queue_bytes),
            |link, id| {
            tracing::debug!(session = %id, transport = transport.protocol(), "sockjs session opened");
            spawn_app(
                server,
                link,
                SessionInfo {
                    id,
                    remote,
                    transport: transport.protocol(),
                    origin,
                },
            )
            },
        );
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    if let Some(prelude) = prelude {
        // The channel is empty: this cannot fail.
        let _ = tx.try_send(Bytes::from(prelude));
    }
    let spec = ReceiverSpec {
        wrapping,
        streaming,
        response_limit: options.response_limit,
        heartbeat: options.heartbeat,
    };
    actix_web::rt::spawn(run_receiver(
        session,
        server.registry.clone(),
        spec,
        tx,
        server.shutdown_signal(),
    ));
    ChannelBody::new(rx)
}

/// Writes wrapped frames into a receiver's body.
struct Writer {
    out: mpsc::Sender<Bytes>,
    spec: ReceiverSpec,
    /// What the frames written so far weigh against the response limit:
    /// JavaScript string length (UTF-16 units), as sockjs-node counts.
    written: usize,
    link: SessionLink,
}

/// Why a receiver stopped before finishing its response.
enum Stop {
    /// The client went away mid-response.
    Gone,
    /// The client does not read and the app's queue filled up meanwhile.
    Overflow,
}

impl Writer {
    /// Writes one frame; waits while the client is slow, unless the app's
    /// queue overflows meanwhile.
    async fn frame(&mut self, frame: &str) -> Result<(), Stop> {
        let wrapped = self.spec.wrapping.wrap(frame);
        self.written += wrapped.encode_utf16().count();
        tokio::select! {
            biased;
            sent = self.out.send(Bytes::from(wrapped)) => sent.map_err(|_| Stop::Gone),
            _ = self.link.wait_overflow() => Err(Stop::Overflow),
        }
    }

    /// Writes the frame that ends the response, if the client takes it soon.
    async fn last_frame(&mut self, frame: &str) {
        let wrapped = Bytes::from(self.spec.wrapping.wrap(frame));
        let _ = tokio::time::timeout(FINAL_WRITE, self.out.send(wrapped)).await;
    }

    /// This response has carried all it may: the client must reopen.
    fn done(&self) -> bool {
        !self.spec.streaming || self.written >= self.spec.response_limit
    }
}

/// Holds the session's outgoing queue while attached; gives it back on drop,
/// whatever way the receiver ends.
struct Attached {
    session: Arc<PollingSession>,
    outgoing: Option<Queue<Outgoing>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(outgoing) = self.outgoing.take() {
            self.session.detach(outgoing);
        }
    }
}

async fn run_receiver(
    session: Arc<PollingSession>,
    registry: Arc<Registry>,
    spec: ReceiverSpec,
    out: mpsc::Sender<Bytes>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut writer = Writer {
        out,
        spec,
        written: 0,
        link: session.link.clone(),
    };
    match session.attach() {
        Attach::Busy => {
            writer
                .last_frame(&frame::close_for(&SockjsError::AnotherConnection))
                .await;
        }
        Attach::Closed(close) => writer.last_frame(&close).await,
        Attach::Attached {
            outgoing,
            send_open,
        } => {
            let mut attached = Attached {
                session: session.clone(),
                outgoing: Some(outgoing),
            };
            match serve(&session, &mut attached, send_open, &mut writer, shutdown).await {
                Ok(()) => {}
                Err(Stop::Gone) => {
                    // sockjs-node's `didAbort`: the session ends at once and
                    // is forgotten; the same id later opens a new one.
                    tracing::debug!(session = %session.id, "sockjs receiver interrupted");
                    session.close_with(&SockjsError::Interrupted);
                    registry.remove(&session);
                }
                Err(Stop::Overflow) => {
                    tracing::info!(session = %session.id, "sockjs client does not keep up: closing");
                    let close = session.close_with(&SockjsError::OutboundQueueFull);
                    writer.last_frame(&close).await;
                }
            }
            drop(attached);
        }
    }
}

/// Serves an attached receiver until its response is complete: what was
/// queued before it attached goes out as one batch, then each message as
/// its own frame (sockjs-node flushes on every send while a receiver is
/// attached).
async fn serve(
    session: &PollingSession,
    attached: &mut Attached,
    send_open: bool,
    writer: &mut Writer,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Stop> {
    if send_open {
        writer.frame(frame::OPEN).await?;
        if writer.done() {
            return Ok(());
        }
    }
    let Some(outgoing) = attached.outgoing.as_mut() else {
        return Ok(());
    };
    if session.link.overflowed() {
        return Err(Stop::Overflow);
    }
    if let Ok(first) = outgoing.try_recv() {
        let (batch, close) = match first {
            Outgoing::Message(first) => drain_batch(first, outgoing),
            Outgoing::Close { code, reason } => (Vec::new(), Some((code, reason))),
        };
        if let Some(end) = send_batch(session, writer, &batch, close).await? {
            return end;
        }
    }
    let mut app_gone = false;
    let mut shutdown = std::pin::pin!(shutdown);
    // Heartbeats keep their period whatever is sent meanwhile, as in
    // sockjs-node.
    let period = writer.spec.heartbeat;
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            biased;
            _ = writer.out.closed() => return Err(Stop::Gone),
            _ = &mut shutdown => {
                let going_away = Close::going_away();
                let close = session.close(going_away.code, &going_away.reason);
                writer.last_frame(&close).await;
                return Ok(());
            }
            _ = session.link.wait_overflow() => return Err(Stop::Overflow),
            item = outgoing.recv(), if !app_gone => match item {
                None => app_gone = true,
                Some(Outgoing::Message(message)) => {
                    if let Some(end) = send_batch(session, writer, &[message], None).await? {
                        return end;
                    }
                }
                Some(Outgoing::Close { code, reason }) => {
                    let close = session.close(code, &reason);
                    writer.last_frame(&close).await;
                    return Ok(());
                }
            },
            _ = heartbeat.tick() => {
                writer.frame(frame::HEARTBEAT).await?;
                if writer.done() {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes `batch` (if any) and then the close that followed it (if any);
/// `Some(result)` when the response is complete.
async fn send_batch(
    session: &PollingSession,
    writer: &mut Writer,
    batch: &[bytestring::ByteString],
    close: Option<(u16, bytestring::ByteString)>,
) -> Result<Option<Result<(), Stop>>, Stop> {
    if !batch.is_empty() {
        writer.frame(&frame::messages(batch)).await?;
    }
    if let Some((code, reason)) = close {
        let close = session.close(code, &reason);
        // A polling response that carried the batch is complete: the close
        // frame waits for the next request, as in sockjs-node.
        if batch.is_empty() || !writer.done() {
            writer.last_frame(&close).await;
        }
        return Ok(Some(Ok(())));
    }
    Ok(writer.done().then_some(Ok(())))
}
