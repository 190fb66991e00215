//! One WebSocket connection driven by the task that owns it, with memory
//! paid only while bytes are in flight: the lean replacement of actix-ws's
//! session channel, message stream and HTTP/1 dispatcher for an upgraded
//! socket.
//!
//! [`WsConnection`] holds the socket, actix-http's own WebSocket
//! [`Codec`], a read buffer that exists only while a frame is being read
//! (an idle socket is read through a buffer on the stack, the heap buffer
//! gets exactly what arrived and is released as soon as decoding leaves
//! it empty) and a write buffer
//! that holds bytes only while the socket pushes back (written through at
//! once and released when empty). Writing a message never does I/O: it is
//! encoded, and [`WsConnection::next`], the one future a session loop polls
//! for its socket, pushes pending bytes out before it reads. Continuations
//! are aggregated into whole messages as actix-ws's aggregated stream did
//! (same size limit, same UTF-8 check), so sessions keep its message types.
//! Both the gateway's sigver sessions and the SockJS WebSocket transports
//! run on it; `upgrade` hands it the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::{AsyncRead, AsyncWrite, Decoder as _, Encoder as _, ReadBuf};
use actix_http::ws::{CloseReason, Codec, Frame, Item, Message};
use actix_ws::AggregatedMessage;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use bytestring::ByteString;

use crate::ws::ReadFailure;

/// What a WebSocket can be served over: plain TCP or TLS, boxed so that
/// sessions are not generic over the listener.
pub trait WsIo: AsyncRead + AsyncWrite + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + 'static> WsIo for T {}

/// Bytes read from an idle socket at once, into a buffer on the stack; the
/// heap buffer then gets exactly what arrived.
const PROBE_BYTES: usize = 8 * 1024;
/// The longest head of a server frame: two bytes and a 64-bit length.
pub const MAX_FRAME_HEAD: usize = 10;
/// Room made per read while a frame larger than one read is read.
const READ_CHUNK: usize = 32 * 1024;
/// A message cut from a read buffer larger than this, and smaller than half
/// of it, is copied out (see [`WsConnection::detached`]).
const SHARED_READ_MAX: usize = PROBE_BYTES;
/// actix-ws trims a close reason to what a control frame holds (125 bytes
/// less the code).
const MAX_CLOSE_REASON_BYTES: usize = 123;
/// A ping or pong payload is at most 125 bytes.
const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;
/// How long a closing socket is read (and what arrives dropped) after the
/// server's close went out, so that the client's own close does not meet a
/// closed socket and turn into a reset (actix's client disconnect timeout).
const LINGER: Duration = Duration::from_secs(1);

/// What the socket gave a session.
#[derive(Debug)]
pub enum Event {
    /// A whole message (continuations aggregated).
    Message(AggregatedMessage),
    /// Reading failed: the client broke the protocol or went away; the
    /// text says how (for logs).
    Failed(ReadFailure, String),
    /// The client closed its side without a close frame.
    Eof,
    /// Writing failed: the transport is gone.
    WriteFailed,
    /// Everything queued went out (after the socket pushed back or right
    /// away): a session that stopped taking messages meanwhile takes more.
    Drained,
}

/// A message being assembled from continuation frames: the parts are
/// copied in as they come, so that what it holds is its own size (kept as
/// slices, a thousand one-byte parts could each hold a read buffer).
#[derive(Debug)]
struct Continuation {
    text: bool,
    joined: BytesMut,
}

/// One upgraded WebSocket, server side.
pub struct WsConnection {
    io: Box<dyn WsIo>,
    codec: Codec,
    read_buf: BytesMut,
    /// The largest allocation `read_buf` has lived in since it last came
    /// from a probe read (saturating): what a message cut from it may hold.
    read_allocation: u32,
    write_buf: BytesMut,
    continuation: Option<Box<Continuation>>,
    max_message: usize,
    read_closed: bool,
    needs_flush: bool,
    /// Since when written bytes wait for a socket that takes none.
    stalled_since: Option<Instant>,
}

impl std::fmt::Debug for WsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnection")
            .field("read_buf", &self.read_buf.len())
            .field("write_buf", &self.write_buf.len())
            .finish_non_exhaustive()
    }
}

impl WsConnection {
    /// A connection over `io`; `already_read` is what the client sent
    /// after its handshake in the same read (it is copied, so the HTTP
    /// layer's buffer is freed). Frames and messages are limited to 1 MiB
    /// until [`WsConnection::limit`] says otherwise.
    pub fn new(io: Box<dyn WsIo>, already_read: &[u8]) -> Self {
        Self {
            io,
            codec: Codec::new().max_size(1024 * 1024),
            read_buf: BytesMut::from(already_read),
            read_allocation: saturating_u32(already_read.len()),
            write_buf: BytesMut::new(),
            continuation: None,
            max_message: 1024 * 1024,
            read_closed: false,
            needs_flush: false,
            stalled_since: None,
        }
    }

    /// Limits a frame, and a message of continuations, to `max_bytes`.
    pub fn limit(mut self, max_bytes: usize) -> Self {
        self.codec = self.codec.max_size(max_bytes);
        self.max_message = max_bytes;
        self
    }

    /// Queues `message` for the client (encoded now, written by the next
    /// poll of [`WsConnection::next`] or [`WsConnection::close`]). Close
    /// reasons and control payloads are trimmed to what a control frame
    /// holds, as actix-ws did.
    pub fn send(&mut self, message: Message) {
        let message = match message {
            Message::Close(Some(mut reason)) => {
                if let Some(text) = reason.description.as_mut()
                    && text.len() > MAX_CLOSE_REASON_BYTES
                {
                    let mut end = MAX_CLOSE_REASON_BYTES;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                }
                Message::Close(Some(reason))
            }
            Message::Ping(bytes) if bytes.len() > MAX_CONTROL_PAYLOAD_BYTES => {
                Message::Ping(bytes.slice(..MAX_CONTROL_PAYLOAD_BYTES))
            }
            Message::Pong(bytes) if bytes.len() > MAX_CONTROL_PAYLOAD_BYTES => {
                Message::Pong(bytes.slice(..MAX_CONTROL_PAYLOAD_BYTES))
            }
            other => other,
        };
        let payload = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
            _ => MAX_CONTROL_PAYLOAD_BYTES,
        };
        self.reserve(MAX_FRAME_HEAD + payload);
        // Encoding a server frame into memory cannot fail.
        if let Err(error) = self.codec.encode(message, &mut self.write_buf) {
            tracing::debug!("websocket frame not encoded: {error}");
        }
    }

    /// Queues one binary message.
    pub fn send_binary(&mut self, bytes: Bytes) {
        self.send(Message::Binary(bytes));
    }

    /// Queues one binary message made of `head` then `data`, written
    /// straight into the write buffer: a relayed message is never
    /// assembled in a buffer of its own. The frame is what
    /// [`WsConnection::send_binary`] writes for the two parts joined.
    pub fn send_binary_parts(&mut self, head: &[u8], data: &[u8]) {
        let len = head.len() + data.len();
        // A server frame: FIN and the binary opcode, no mask, then the
        // length in 7 bits, or 126 and 16 bits, or 127 and 64 bits
        // (RFC 6455 §5.2).
        self.reserve(MAX_FRAME_HEAD + len);
        self.write_buf.put_u8(0x82);
        if len < 126 {
            self.write_buf.put_u8(len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            self.write_buf.put_u8(126);
            self.write_buf.put_u16(short);
        } else {
            self.write_buf.put_u8(127);
            self.write_buf.put_u64(len as u64);
        }
        self.write_buf.extend_from_slice(head);
        self.write_buf.extend_from_slice(data);
    }

    /// Makes room for `bytes` more bytes of frames at once. A session that
    /// knows it is about to queue several messages says so first: growing
    /// the buffer frame by frame cost several reallocations per wake-up, a
    /// tenth of the instructions of a relayed message at 16 in flight
    /// (callgrind, `benches/instructions.sh`). The buffer is released
    /// once the socket took everything, as always.
    pub fn reserve(&mut self, bytes: usize) {
        if self.write_buf.capacity() == 0 {
            // Exactly what is asked: a lone frame's allocation stays small
            // (and cheap to make and free).
            self.write_buf = BytesMut::with_capacity(bytes);
        } else {
            self.write_buf.reserve(bytes);
        }
    }

    /// Queues one text message.
    pub fn send_text(&mut self, text: ByteString) {
        self.send(Message::Text(text));
    }

    /// Bytes queued that the socket has not taken yet.
    pub fn pending_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Since when queued bytes wait for a socket that takes none (`None`
    /// while nothing waits or the socket keeps taking).
    pub fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Writes what is queued, then (when `read`) waits for the next
    /// message. Pending with nothing to do. Cancel-safe: partial writes and
    /// partial frames stay where they are.
    pub async fn next(&mut self, read: bool) -> Event {
        std::future::poll_fn(|cx| self.poll_next(cx, read)).await
    }

    /// [`WsConnection::next`] for a session that polls its sources by hand
    /// (one poll per wake-up, no future re-created per message).
    pub fn poll_next(&mut self, cx: &mut Context<'_>, read: bool) -> Poll<Event> {
        let had_pending = !self.write_buf.is_empty();
        if self.poll_write(cx).is_err() {
            return Poll::Ready(Event::WriteFailed);
        }
        if had_pending && self.write_buf.is_empty() {
            return Poll::Ready(Event::Drained);
        }
        if !read {
            return Poll::Pending;
        }
        loop {
            match self.decode() {
                Ok(Some(message)) => return Poll::Ready(Event::Message(message)),
                Ok(None) => {}
                Err((failure, detail)) => return Poll::Ready(Event::Failed(failure, detail)),
            }
            if self.read_closed {
                return Poll::Ready(Event::Eof);
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => self.read_closed = true,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => {
                    return Poll::Ready(Event::Failed(ReadFailure::Gone, error.to_string()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Pushes queued bytes out while the socket takes them; releases the
    /// buffer once it is empty.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.write_buf.is_empty() {
            match Pin::new(&mut *self.io).poll_write(cx, &self.write_buf) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => {
                    // Not `split_to`, which would make the buffer shared
                    // (an allocation) to hand out bytes nobody wants.
                    self.write_buf.advance(written);
                    self.stalled_since = None;
                    self.needs_flush = true;
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(());
                }
            }
        }
        if self.write_buf.capacity() > 0 {
            self.write_buf = BytesMut::new();
        }
        if self.needs_flush {
            match Pin::new(&mut *self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Reads what the socket has. With no partial frame, through a buffer
    /// on the stack, keeping exactly what arrived, so that an idle socket
    /// holds no read buffer (the copy costs less than keeping 8 KiB per
    /// idle peer); while a frame is partly read, straight into its buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.read_buf.is_empty() {
            self.read_buf.reserve(READ_CHUNK);
            self.read_allocation = self
                .read_allocation
                .max(saturating_u32(self.read_buf.capacity()));
            return tokio_util::io::poll_read_buf(Pin::new(&mut *self.io), cx, &mut self.read_buf);
        }
        // Uninitialised: zeroing 8 KiB per read would cost more than the
        // frame it reads.
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); PROBE_BYTES];
        let mut buf = ReadBuf::uninit(&mut probe);
        std::task::ready!(Pin::new(&mut *self.io).poll_read(cx, &mut buf))?;
        let filled = buf.filled();
        self.read_buf = BytesMut::from(filled);
        self.read_allocation = saturating_u32(filled.len());
        Poll::Ready(Ok(filled.len()))
    }

    /// The next whole message in the read buffer, if there is one.
    fn decode(&mut self) -> Result<Option<AggregatedMessage>, (ReadFailure, String)> {
        loop {
            let frame = match self.codec.decode(&mut self.read_buf) {
                Ok(frame) => frame,
                Err(error) => {
                    let failure = match error {
                        actix_http::ws::ProtocolError::Overflow => ReadFailure::TooBig,
                        _ => ReadFailure::Invalid,
                    };
                    return Err((failure, error.to_string()));
                }
            };
            if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
                // Frames already taken keep their bytes; the buffer goes.
                self.read_buf = BytesMut::new();
            }
            let Some(frame) = frame else {
                return Ok(None);
            };
            let message = match frame {
                Frame::Text(bytes) => AggregatedMessage::Text(text(self.detached(bytes))?),
                Frame::Binary(bytes) => AggregatedMessage::Binary(self.detached(bytes)),
                Frame::Ping(bytes) => AggregatedMessage::Ping(bytes),
                Frame::Pong(bytes) => AggregatedMessage::Pong(bytes),
                Frame::Close(reason) => AggregatedMessage::Close(reason),
                Frame::Continuation(item) => match self.continue_message(item)? {
                    Some(message) => message,
                    None => continue,
                },
            };
            return Ok(Some(message));
        }
    }

    /// A message's bytes as it leaves the read buffer. They share the
    /// read's allocation (no copy: sigver relays them as they are), unless
    /// that allocation is more than [`SHARED_READ_MAX`] and more than twice
    /// the message: then they are copied out. So a message queued for a
    /// slow reader holds at most 8 KiB or twice its size, and the queue's
    /// byte bound means what it says, whatever the client packed around it
    /// (a small frame read behind a 1 MiB one would otherwise hold the
    /// whole megabyte for as long as it waits).
    fn detached(&self, bytes: Bytes) -> Bytes {
        let allocation = self.read_allocation as usize;
        if allocation > SHARED_READ_MAX && bytes.len() < allocation / 2 {
            Bytes::copy_from_slice(&bytes)
        } else {
            bytes
        }
    }

    /// Adds a continuation frame; the message once its last part came.
    fn continue_message(
        &mut self,
        item: Item,
    ) -> Result<Option<AggregatedMessage>, (ReadFailure, String)> {
        let (first_text, bytes, last) = match item {
            Item::FirstText(bytes) => (Some(true), bytes, false),
            Item::FirstBinary(bytes) => (Some(false), bytes, false),
            Item::Continue(bytes) => (None, bytes, false),
            Item::Last(bytes) => (None, bytes, true),
        };
        let part = self.continuation.get_or_insert_with(|| {
            Box::new(Continuation {
                text: false,
                joined: BytesMut::new(),
            })
        });
        if let Some(text) = first_text {
            part.text = text;
        }
        if part.joined.len() + bytes.len() > self.max_message {
            self.continuation = None;
            return Err((
                ReadFailure::TooBig,
                "Exceeded maximum continuation size".to_owned(),
            ));
        }
        part.joined.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let Some(whole) = self.continuation.take() else {
            return Ok(None);
        };
        let joined = whole.joined.freeze();
        Ok(Some(if whole.text {
            AggregatedMessage::Text(text(joined)?)
        } else {
            AggregatedMessage::Binary(joined)
        }))
    }

    /// Sends `reason` as the close frame (`None`: an empty one), pushes out
    /// what is queued for at most `within`, shuts the socket down and
    /// drops what the client still sends for a moment (its own close).
    pub async fn close(mut self, reason: Option<CloseReason>, within: Duration) {
        self.send(Message::Close(reason));
        let flushed = tokio::time::timeout(within, self.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) {
            return;
        }
        let _ = tokio::time::timeout(
            within,
            std::future::poll_fn(|cx| Pin::new(&mut *self.io).poll_shutdown(cx)),
        )
        .await;
        let _ = tokio::time::timeout(LINGER, self.drain()).await;
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            self.poll_write(cx)?;
            if self.write_buf.is_empty() && !self.needs_flush {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Reads and drops until the client closes its side.
    async fn drain(&mut self) {
        std::future::poll_fn(|cx| {
            loop {
                let mut probe = [0u8; 1024];
                let mut buf = ReadBuf::new(&mut probe);
                match Pin::new(&mut *self.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
    }
}

/// `bytes` as a `u32`, `u32::MAX` past it.
fn saturating_u32(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A text message's bytes, which must be UTF-8.
fn text(bytes: Bytes) -> Result<ByteString, (ReadFailure, String)> {
    // Worded as actix-ws worded it (an I/O error of invalid data).
    ByteString::try_from(bytes)
        .map_err(|error| (ReadFailure::InvalidUtf8, format!("I/O error: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    const WAIT: Duration = Duration::from_secs(2);

    /// A server connection and the client's raw end of the pipe.
    fn pair(pipe_bytes: usize) -> (WsConnection, DuplexStream) {
        let (server, client) = tokio::io::duplex(pipe_bytes);
        (WsConnection::new(Box::new(server), b""), client)
    }

    /// Client frames are masked: encoded with the client-side codec.
    fn client_frames(messages: Vec<Message>) -> BytesMut {
        let mut codec = Codec::new().client_mode();
        let mut out = BytesMut::new();
        for message in messages {
            codec.encode(message, &mut out).expect("encodes");
        }
        out
    }

    async fn next(connection: &mut WsConnection) -> Event {
        tokio::time::timeout(WAIT, connection.next(true))
            .await
            .expect("an event in time")
    }

    #[tokio::test]
    async fn a_read_frame_leaves_no_read_buffer_behind() {
        let (mut server, mut client) = pair(64 * 1024);
        let bytes = client_frames(vec![Message::Binary(Bytes::from_static(b"hello"))]);
        client.write_all(&bytes).await.expect("written");
        match next(&mut server).await {
            Event::Message(AggregatedMessage::Binary(payload)) => {
                assert_eq!(&payload[..], b"hello")
            }
            other => panic!("expected the binary frame, got {other:?}"),
        }
        assert_eq!(server.read_buf.capacity(), 0, "released once empty");
        assert_eq!(
            server.write_buf.capacity(),
            0,
            "nothing written, nothing held"
        );
    }

    #[tokio::test]
    async fn bytes_after_the_handshake_are_read_first() {
        let (io, _client) = tokio::io::duplex(1024);
        let early = client_frames(vec![Message::Text("early".into())]);
        let mut server = WsConnection::new(Box::new(io), &early);
        match next(&mut server).await {
            Event::Message(AggregatedMessage::Text(text)) => assert_eq!(&*text, "early"),
            other => panic!("expected the early text, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn continuations_are_joined_and_bounded() {
        let (server, mut client) = pair(64 * 1024);
        let mut server = server.limit(8);
        let parts = client_frames(vec![
            Message::Continuation(Item::FirstText(Bytes::from_static(b"ab"))),
            Message::Continuation(Item::Continue(Bytes::from_static(b"cd"))),
            Message::Continuation(Item::Last(Bytes::from_static(b"ef"))),
            Message::Continuation(Item::FirstBinary(Bytes::from_static(b"12345"))),
            Message::Continuation(Item::Last(Bytes::from_static(b"6789"))),
        ]);
        client.write_all(&parts).await.expect("written");
        match next(&mut server).await {
            Event::Message(AggregatedMessage::Text(text)) => assert_eq!(&*text, "abcdef"),
            other => panic!("expected the joined text, got {other:?}"),
        }
        match next(&mut server).await {
            Event::Failed(ReadFailure::TooBig, _) => {}
            other => panic!("expected too big, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_small_message_read_behind_a_large_one_does_not_hold_its_buffer() {
        let (mut server, mut client) = pair(512 * 1024);
        let large = Bytes::from(vec![7u8; 20 * 1024]);
        let small = Bytes::from_static(b"sixteen bytes!!!");
        let frames = client_frames(vec![
            Message::Binary(large.clone()),
            Message::Binary(small.clone()),
        ]);
        client.write_all(&frames).await.expect("written");
        let mut received = Vec::new();
        for _ in 0..2 {
            match next(&mut server).await {
                Event::Message(AggregatedMessage::Binary(payload)) => received.push(payload),
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
        assert_eq!(received[0], large);
        assert_eq!(received[1], small);
        // Both came in one read buffer of about 40 KiB (the 20 KiB frame was
        // read in parts): the small message must not keep a share of it.
        assert!(
            received[1].is_unique(),
            "the small message shares the large one's read buffer"
        );
        // A message of continuations holds its own bytes only.
        let parts: Vec<Message> = std::iter::once(Message::Continuation(Item::FirstBinary(
            Bytes::from_static(b"a"),
        )))
        .chain((0..998).map(|_| Message::Continuation(Item::Continue(Bytes::from_static(b"b")))))
        .chain(std::iter::once(Message::Continuation(Item::Last(
            Bytes::from_static(b"c"),
        ))))
        .collect();
        client
            .write_all(&client_frames(parts))
            .await
            .expect("written");
        match next(&mut server).await {
            Event::Message(AggregatedMessage::Binary(payload)) => {
                assert_eq!(payload.len(), 1000);
                assert!(payload[1..999].iter().all(|&byte| byte == b'b'));
            }
            other => panic!("expected the joined message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_text_frame_that_is_not_utf8_is_reported_as_such() {
        let (mut server, mut client) = pair(1024);
        let mut codec = Codec::new().client_mode();
        let mut bad = BytesMut::new();
        codec
            .encode(Message::Binary(Bytes::from_static(b"\xff\xfe")), &mut bad)
            .expect("encodes");
        // Turn the binary opcode into a text one.
        bad[0] = (bad[0] & 0xf0) | 0x1;
        client.write_all(&bad).await.expect("written");
        match next(&mut server).await {
            Event::Failed(ReadFailure::InvalidUtf8, detail) => assert!(detail.contains("utf-8")),
            other => panic!("expected invalid UTF-8, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unmasked_frame_is_a_protocol_error_and_eof_is_reported() {
        let (mut server, mut client) = pair(1024);
        let mut codec = Codec::new();
        let mut unmasked = BytesMut::new();
        codec
            .encode(Message::Binary(Bytes::from_static(b"x")), &mut unmasked)
            .expect("encodes");
        client.write_all(&unmasked).await.expect("written");
        assert!(matches!(
            next(&mut server).await,
            Event::Failed(ReadFailure::Invalid, _)
        ));
        let (mut server, client) = pair(1024);
        drop(client);
        assert!(matches!(next(&mut server).await, Event::Eof));
    }

    #[tokio::test]
    async fn writes_go_out_at_once_and_wait_only_while_the_socket_pushes_back() {
        let (mut server, mut client) = pair(1024);
        server.send_binary(Bytes::from(vec![7u8; 4000]));
        assert!(server.pending_bytes() > 4000);
        // Nothing to read: the poll only writes what the pipe takes.
        let polled = tokio::time::timeout(Duration::from_millis(50), server.next(true)).await;
        assert!(
            polled.is_err(),
            "no event: the client sent nothing, the pipe is full"
        );
        assert!(server.pending_bytes() > 0, "the pipe holds only 1 KiB");
        assert!(server.stalled_since().is_some());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 4004];
            client.read_exact(&mut got).await.expect("the whole frame");
            got
        });
        assert!(matches!(next(&mut server).await, Event::Drained));
        let got = reader.await.expect("reader");
        assert_eq!(
            &got[..4],
            &[0x82, 126, 0x0f, 0xa0],
            "one binary frame of 4000 bytes"
        );
        assert_eq!(server.pending_bytes(), 0);
        assert_eq!(server.write_buf.capacity(), 0, "released once written");
        assert!(server.stalled_since().is_none());
    }

    #[test]
    fn a_message_in_two_parts_is_the_frame_of_the_parts_joined() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for cut in [0, len / 3, len] {
                let (head, data) = payload.split_at(cut);
                let (mut parts, _client) = pair(1024);
                parts.send_binary_parts(head, data);
                let mut whole = BytesMut::new();
                Codec::new()
                    .encode(Message::Binary(Bytes::from(payload.clone())), &mut whole)
                    .expect("encodes");
                assert_eq!(parts.write_buf, whole, "length {len}, cut at {cut}");
            }
        }
    }

    #[tokio::test]
    async fn close_sends_the_trimmed_reason_and_shuts_the_socket() {
        let (server, mut client) = pair(1024);
        let reason = CloseReason {
            code: actix_http::ws::CloseCode::from(4743),
            description: Some("é".repeat(100)),
        };
        let mut got = Vec::new();
        let reading = async {
            tokio::time::timeout(WAIT, client.read_to_end(&mut got))
                .await
                .expect("in time")
                .expect("read");
            drop(client);
        };
        tokio::join!(server.close(Some(reason), WAIT), reading);
        let mut codec = Codec::new().client_mode();
        let mut buf = BytesMut::from(&got[..]);
        match codec.decode(&mut buf).expect("a frame") {
            Some(Frame::Close(Some(reason))) => {
                assert_eq!(u16::from(reason.code), 4743);
                let text = reason.description.expect("a reason");
                assert!(
                    text.len() <= MAX_CLOSE_REASON_BYTES && text.len() >= 122,
                    "{}",
                    text.len()
                );
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}
