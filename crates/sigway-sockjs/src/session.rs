//! Sessions: the application side (one task per session that runs the app's
//! callbacks in order) and the shared state of polling/streaming sessions,
//! which outlive the HTTP requests that serve them.
//!
//! The app's session object is not `Send`, so [`spawn_app`] runs it on a
//! local task of the worker that opened it, after the app admitted it;
//! everything else reaches it through [`AppHandle`] (a bounded message
//! queue and a close signal).
//!
//! A [`PollingSession`] lives in the registry (`registry.rs`) under its id. Requests
//! for it may land on any worker thread: its state sits behind its own
//! short-held mutex. At most one receiver (a polling or streaming
//! response) is attached at a time; while one is, it owns the queue of
//! outgoing messages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use std::panic::AssertUnwindSafe;
use tokio::sync::{Notify, mpsc};

use crate::app::{SessionInfo, SockjsApp, SockjsSession};
use crate::error::{CLOSE_GO_AWAY, SockjsError};
use crate::frame;
use crate::link::{Outgoing, SessionLink};
use crate::outbox::Queue;
use crate::server::Server;

/// Messages from one client waiting for the app; bounds what a fast
/// client can pile up before its requests are slowed down.
const INBOUND_QUEUE: usize = 64;

/// Most bytes of messages put into one `a[...]` frame.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The app side of one session, usable from any thread.
#[derive(Clone)]
pub(crate) struct AppHandle {
    inbound: mpsc::Sender<Inbound>,
    closed: Arc<CloseSignal>,
}

/// What the app task takes from its queue.
enum Inbound {
    Message(String),
    /// Answered once every message queued before it has been handled.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

struct CloseSignal {
    fired: AtomicBool,
    notify: Notify,
}

impl AppHandle {
    /// Hands one message to the app, waiting while its queue is full.
    /// Returns false once the app side is gone.
    pub(crate) async fn deliver(&self, message: String) -> bool {
        !self.closed.fired.load(Ordering::Acquire)
            && self.inbound.send(Inbound::Message(message)).await.is_ok()
    }

    /// Hands `messages` to the app in order and waits until it has handled
    /// them (or is gone): what the app sends in answer is queued by then, as
    /// it is when sockjs-node's synchronous handlers return.
    pub(crate) async fn deliver_all(&self, messages: Vec<String>) {
        for message in messages {
            if !self.deliver(message).await {
                return;
            }
        }
        let (done, handled) = tokio::sync::oneshot::channel();
        if self.inbound.send(Inbound::Barrier(done)).await.is_ok() {
            let _ = handled.await;
        }
    }

    /// Ends the session for the app: messages already queued are handled,
    /// then `on_close` runs, once.
    pub(crate) fn close(&self) {
        if !self.closed.fired.swap(true, Ordering::AcqRel) {
            self.closed.notify.notify_one();
        }
    }
}

/// Runs one session's app side on a local task of the current worker:
/// admission first, then (admitted) the app's session, fed the messages in
/// order. Nothing is taken from the inbound queue before admission answered,
/// so no message can run before it; a refused session closes its link with
/// the refusal and its messages are dropped.
pub(crate) fn spawn_app<A: SockjsApp>(
    server: &Arc<Server<A>>,
    link: SessionLink,
    info: SessionInfo,
) -> AppHandle {
    let (inbound, queue) = mpsc::channel::<Inbound>(INBOUND_QUEUE);
    let closed = Arc::new(CloseSignal {
        fired: AtomicBool::new(false),
        notify: Notify::new(),
    });
    let signal = closed.clone();
    let server = server.clone();
    actix_web::rt::spawn(async move {
        match server.app.admit(&info).await {
            Ok(ticket) => {
                // The session owns the ticket: both end together.
                let mut session = server.app.open(link, info, ticket);
                run_queue(Some(&mut session), queue, &signal).await;
                session.on_close().await;
            }
            Err(refusal) => {
                tracing::debug!(session = %info.id, code = refusal.code, "sockjs session refused: {}", refusal.reason);
                link.close(refusal.code, &refusal.reason);
                run_queue::<A::Session>(None, queue, &signal).await;
            }
        }
    });
    AppHandle { inbound, closed }
}

/// Admits and opens a session on the caller's own task (the WebSocket
/// transports run their app inline, with no app task and no inbound
/// queue): `None` when the app refused it, whose link then carries the
/// refusal's close.
pub(crate) async fn open_inline<A: SockjsApp>(
    server: &Server<A>,
    link: SessionLink,
    info: SessionInfo,
) -> Option<A::Session> {
    match server.app.admit(&info).await {
        Ok(ticket) => Some(server.app.open(link, info, ticket)),
        Err(refusal) => {
            tracing::debug!(session = %info.id, code = refusal.code, "sockjs session refused: {}", refusal.reason);
            link.close(refusal.code, &refusal.reason);
            None
        }
    }
}

/// Hands queued messages to `session` (drops them when there is none, for
/// a refused session) until the close signal; what was accepted before the
/// close is still handled.
async fn run_queue<S: SockjsSession>(
    mut session: Option<&mut S>,
    mut queue: mpsc::Receiver<Inbound>,
    signal: &CloseSignal,
) {
    loop {
        tokio::select! {
            biased;
            item = queue.recv() => match item {
                Some(item) => take(session.as_deref_mut(), item).await,
                None => return,
            },
            _ = signal.notify.notified() => {
                queue.close();
                while let Ok(item) = queue.try_recv() {
                    take(session.as_deref_mut(), item).await;
                }
                return;
            }
        }
    }
}

async fn take<S: SockjsSession>(session: Option<&mut S>, item: Inbound) {
    match item {
        Inbound::Message(message) => {
            if let Some(session) = session {
                handle(session, message).await;
            }
        }
        Inbound::Barrier(done) => {
            let _ = done.send(());
        }
    }
}

/// Runs the app on one message. A panic in the app costs that message
/// only: the others of its batch and the session go on.
pub(crate) async fn handle<S: SockjsSession>(session: &mut S, message: String) {
    let handled = AssertUnwindSafe(session.on_message(message))
        .catch_unwind()
        .await;
    if handled.is_err() {
        tracing::error!("sockjs app panicked on a message; the message is dropped");
    }
}

/// Takes every message already queued after `first` (up to a batch size),
/// stopping at a close request, which is returned beside the batch.
pub(crate) fn drain_batch(
    first: bytestring::ByteString,
    outgoing: &mut Queue<Outgoing>,
) -> (
    Vec<bytestring::ByteString>,
    Option<(u16, bytestring::ByteString)>,
) {
    let mut size = first.len();
    let mut batch = vec![first];
    while size < MAX_BATCH_BYTES {
        match outgoing.try_recv() {
            Ok(Outgoing::Message(message)) => {
                size += message.len();
                batch.push(message);
            }
            Ok(Outgoing::Close { code, reason }) => return (batch, Some((code, reason))),
            Err(_) => break,
        }
    }
    (batch, None)
}

/// Where a polling session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Created, the open frame not yet sent.
    New,
    Open,
    /// Closed; receivers get this close frame until the session expires.
    Closed(Arc<str>),
}

struct State {
    phase: Phase,
    /// Messages from the app; taken by the attached receiver.
    outgoing: Option<Queue<Outgoing>>,
    attached: bool,
    /// Since when no receiver is attached (only meaningful when detached).
    detached_since: Instant,
}

/// A session of the HTTP transports, shared by the requests serving it.
pub(crate) struct PollingSession {
    pub id: Arc<str>,
    pub app: AppHandle,
    pub link: SessionLink,
    state: Mutex<State>,
}

/// What a new receiver finds when it asks to attach.
pub(crate) enum Attach {
    /// It is the receiver now; `send_open` when it must send the open frame.
    Attached {
        outgoing: Queue<Outgoing>,
        send_open: bool,
    },
    /// Another receiver is attached: it gets `c[2010,...]` and ends.
    Busy,
    /// The session is closed: it gets the close frame and ends.
    Closed(Arc<str>),
}

impl PollingSession {
    /// A new session, its open frame not sent yet, `outgoing` waiting for
    /// the first receiver.
    pub(crate) fn new(
        id: Arc<str>,
        app: AppHandle,
        link: SessionLink,
        outgoing: Queue<Outgoing>,
    ) -> Self {
        Self {
            id,
            app,
            link,
            state: Mutex::new(State {
                phase: Phase::New,
                outgoing: Some(outgoing),
                attached: false,
                detached_since: Instant::now(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half
        // updated (every update is a few assignments), so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn attach(&self) -> Attach {
        let mut state = self.state();
        if state.attached {
            return Attach::Busy;
        }
        let send_open = match &state.phase {
            Phase::Closed(frame) => {
                let frame = frame.clone();
                // Serving the close frame restarts the expiry timer, as in
                // sockjs-node.
                state.detached_since = Instant::now();
                return Attach::Closed(frame);
            }
            Phase::New => {
                state.phase = Phase::Open;
                true
            }
            Phase::Open => false,
        };
        let Some(outgoing) = state.outgoing.take() else {
            // Unreachable while detached; treat as closed rather than panic.
            let frame: Arc<str> = frame::close(CLOSE_GO_AWAY, "Go away!").into();
            state.phase = Phase::Closed(frame.clone());
            return Attach::Closed(frame);
        };
        state.attached = true;
        Attach::Attached {
            outgoing,
            send_open,
        }
    }

    /// The attached receiver leaves; the outgoing queue waits for the next.
    pub(crate) fn detach(&self, outgoing: Queue<Outgoing>) {
        let mut state = self.state();
        state.attached = false;
        state.detached_since = Instant::now();
        if !matches!(state.phase, Phase::Closed(_)) {
            state.outgoing = Some(outgoing);
        }
    }

    /// Closes the session with `code`/`reason` unless it is closed already;
    /// returns the close frame receivers get from now on.
    pub(crate) fn close(&self, code: u16, reason: &str) -> Arc<str> {
        let frame = {
            let mut state = self.state();
            if let Phase::Closed(frame) = &state.phase {
                return frame.clone();
            }
            let frame: Arc<str> = frame::close(code, reason).into();
            state.phase = Phase::Closed(frame.clone());
            // Dropping the queue makes the app's further sends fail.
            state.outgoing = None;
            frame
        };
        self.app.close();
        frame
    }

    pub(crate) fn close_with(&self, error: &SockjsError) -> Arc<str> {
        let close = error.close();
        self.close(close.code, &close.reason)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.state().phase, Phase::Closed(_))
    }

    /// Detached for longer than `delay` at `now`.
    pub(crate) fn expired(&self, delay: Duration, now: Instant) -> bool {
        let state = self.state();
        !state.attached && now.saturating_duration_since(state.detached_since) >= delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    /// An app handle with no task behind it: tests watch its close flag.
    fn detached_app() -> AppHandle {
        let (inbound, _queue) = mpsc::channel(1);
        AppHandle {
            inbound,
            closed: Arc::new(CloseSignal {
                fired: AtomicBool::new(false),
                notify: Notify::new(),
            }),
        }
    }

    fn open(registry: &Registry, id: &str) -> Arc<PollingSession> {
        registry.get_or_open(id, (8, usize::MAX), |_, _| detached_app())
    }

    #[test]
    fn batches_take_queued_messages_up_to_a_close() {
        let (link, mut outgoing) = SessionLink::channel(8);
        for text in ["b", "c"] {
            link.send(text.into()).expect("room");
        }
        link.close(3000, "bye");
        link.send("after".into()).expect("room");
        let (batch, close) = drain_batch("a".into(), &mut outgoing);
        assert_eq!(batch, ["a", "b", "c"]);
        assert_eq!(close, Some((3000, "bye".into())));
        let (rest, none) = drain_batch("x".into(), &mut outgoing);
        assert_eq!((rest.len(), none), (2, None));
    }

    #[test]
    fn a_full_link_fails_and_raises_overflow() {
        let (link, _outgoing) = SessionLink::channel(1);
        assert!(link.send("a".into()).is_ok());
        assert!(!link.overflowed());
        assert!(link.send("b".into()).is_err());
        assert!(link.overflowed());
    }

    #[test]
    fn the_first_receiver_opens_and_a_second_is_busy() {
        let registry = Registry::default();
        let session = open(&registry, "s");
        let Attach::Attached {
            outgoing,
            send_open,
        } = session.attach()
        else {
            panic!("first receiver attaches");
        };
        assert!(send_open);
        assert!(matches!(session.attach(), Attach::Busy));
        session.detach(outgoing);
        assert!(matches!(
            session.attach(),
            Attach::Attached {
                send_open: false,
                ..
            }
        ));
    }

    #[test]
    fn removing_forgets_only_that_very_session() {
        let registry = Registry::default();
        let first = open(&registry, "s");
        registry.remove(&first);
        assert!(registry.get("s").is_none());
        // A newer session under the same id is not removed by the old one.
        let second = open(&registry, "s");
        registry.remove(&first);
        assert!(registry.get("s").is_some_and(|s| Arc::ptr_eq(&s, &second)));
    }

    #[test]
    fn the_same_id_finds_the_same_session() {
        let registry = Registry::default();
        let first = open(&registry, "s");
        let again = open(&registry, "s");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(registry.len(), 1);
        assert!(registry.get("other").is_none());
    }

    #[test]
    fn a_closed_session_serves_its_first_close_frame_and_closes_the_app_once() {
        let registry = Registry::default();
        let session = open(&registry, "s");
        let frame = session.close(3000, "Go away!");
        assert_eq!(&*frame, r#"c[3000,"Go away!"]"#);
        assert_eq!(&*session.close(1002, "later"), r#"c[3000,"Go away!"]"#);
        assert!(session.app.closed.fired.load(Ordering::Acquire));
        match session.attach() {
            Attach::Closed(served) => assert_eq!(served, frame),
            _ => panic!("a closed session serves its close frame"),
        }
        assert!(session.is_closed());
    }

    #[test]
    fn an_attached_receiver_keeps_the_session_alive() {
        let registry = Registry::default();
        let session = open(&registry, "s");
        let Attach::Attached { outgoing, .. } = session.attach() else {
            panic!("attaches");
        };
        let later = Instant::now() + Duration::from_secs(60);
        assert!(!session.expired(Duration::from_secs(5), later));
        session.detach(outgoing);
        assert!(session.expired(Duration::from_secs(5), later));
        assert!(!session.expired(Duration::from_secs(5), Instant::now()));
    }

    #[test]
    fn sweeping_closes_and_forgets_expired_sessions_only() {
        let registry = Registry::default();
        let idle = open(&registry, "idle");
        let busy = open(&registry, "busy");
        let _receiver = busy.attach();
        std::thread::sleep(Duration::from_millis(20));
        registry.sweep(Duration::from_millis(10));
        assert!(registry.get("idle").is_none());
        assert!(registry.get("busy").is_some());
        assert!(idle.is_closed() && idle.app.closed.fired.load(Ordering::Acquire));
        assert!(!busy.is_closed());
    }
}
