//! A room's inbox: how the room's members (its own sessions, and the
//! members of other nodes the cluster forwards) reach the room actor,
//! without the actor mailbox's two allocations per message.
//!
//! actix's `do_send` boxes every message in an envelope and links it into
//! its queue with another box: about 470 instructions per relayed message,
//! an eighth of the whole relay path (callgrind, `benches/instructions.sh`).
//! The inbox is a `VecDeque` behind a mutex, drained by a future spawned in
//! the room's own context: a push moves the message into a buffer that is
//! reused while the room is busy (and freed when it falls idle), and wakes
//! the room only when it sleeps. Attaches, events and
//! leaves all travel through it, so a member's events are handled after
//! its attach and before its leave, whatever threads they come from.
//! Everything else a room is told (cluster bookkeeping) keeps the mailbox.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use actix::prelude::*;

use super::{Attach, MemberId, Room};

/// At most this many messages are handled per turn of the room's task, so
/// one busy room does not starve the other actors of its thread.
const MAX_PER_TURN: usize = 64;

/// Messages an inbox with no buffer makes room for at its first push.
const FIRST_ROOM: usize = 8;

/// What a member hands its room.
pub(crate) enum Inbound<R: Room> {
    /// The member enters (sent by the registry only, see [`super::Rooms`]).
    /// Boxed: an attach carries the member's whole entry and is rare, and
    /// the inbox's buffer is sized by its largest message.
    Attach(Box<Attach<R>>),
    /// Something the member said.
    Event(R::Event),
    /// The member is gone.
    Leave(MemberId),
}

/// The sending side, shared by the registry and every member's
/// [`super::RoomRef`].
pub(crate) struct Inbox<R: Room> {
    state: Mutex<State<R>>,
}

struct State<R: Room> {
    queue: VecDeque<Inbound<R>>,
    /// The room's task, while it waits for messages.
    sleeping: Option<Waker>,
    /// Whether the room still runs; pushes to a stopped room are dropped,
    /// as `do_send` to a stopped actor was.
    open: bool,
}

impl<R: Room> Inbox<R> {
    /// Starts `room` with its inbox drained in its own context.
    pub(super) fn start(room: R) -> (Addr<R>, Arc<Self>) {
        let inbox = Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sleeping: None,
                open: true,
            }),
        });
        let drain = Drain {
            inbox: inbox.clone(),
            taken: VecDeque::new(),
        };
        let addr = R::create(move |ctx| {
            ctx.spawn(drain);
            room
        });
        (addr, inbox)
    }

    fn state(&self) -> MutexGuard<'_, State<R>> {
        // Every update under the lock is one push, swap or flag: a panic
        // elsewhere cannot leave it half done, so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `message` for the room, waking it if it sleeps.
    pub(crate) fn push(&self, message: Inbound<R>) {
        let waker = {
            let mut state = self.state();
            if !state.open {
                return;
            }
            if state.queue.capacity() == 0 {
                // An idle room keeps no buffer (see `Drain`): room for a
                // burst at once rather than growing it 4, 8, 16.
                state.queue.reserve(FIRST_ROOM);
            }
            state.queue.push_back(message);
            state.sleeping.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The receiving side, a future in the room's context. Takes the whole
/// queue at once (one lock per batch) and hands each message to the room.
struct Drain<R: Room> {
    inbox: Arc<Inbox<R>>,
    /// Messages taken from the inbox, not handled yet; its buffer is
    /// swapped back into the inbox, so a busy room allocates at most once
    /// per time it falls asleep, never per message.
    taken: VecDeque<Inbound<R>>,
}

// Nothing in a drain is pinned: it owns queued messages, never polls them.
impl<R: Room> Unpin for Drain<R> {}

impl<R: Room> ActorFuture<R> for Drain<R> {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        room: &mut R,
        ctx: &mut Context<R>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..MAX_PER_TURN {
            if !ctx.state().alive() {
                return Poll::Ready(());
            }
            if ctx.waiting() {
                // The room waits on a future of its own: messages keep
                // their turn until it is done.
                task.waker().wake_by_ref();
                return Poll::Pending;
            }
            let message = match this.taken.pop_front() {
                Some(message) => message,
                None => {
                    let mut state = this.inbox.state();
                    if state.queue.is_empty() {
                        match &state.sleeping {
                            Some(waker) if waker.will_wake(task.waker()) => {}
                            _ => state.sleeping = Some(task.waker().clone()),
                        }
                        // An idle room keeps no buffer: most rooms are idle
                        // most of the time (one per pair of idle videre
                        // users), and a busy one parks rarely.
                        if state.queue.capacity() > 0 {
                            state.queue = VecDeque::new();
                        }
                        if this.taken.capacity() > 0 {
                            this.taken = VecDeque::new();
                        }
                        return Poll::Pending;
                    }
                    std::mem::swap(&mut state.queue, &mut this.taken);
                    continue;
                }
            };
            match message {
                Inbound::Attach(attach) => {
                    <R as Handler<Attach<R>>>::handle(room, *attach, ctx);
                }
                Inbound::Event(event) => room.handle_event(event, ctx),
                Inbound::Leave(member) => room.handle_leave(member, ctx),
            }
        }
        // More may be waiting: come back after the other tasks had a turn.
        task.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<R: Room> Drop for Drain<R> {
    /// The room stopped: what is still queued is dropped (with the credit
    /// or reply handles it carries), and later pushes are too.
    fn drop(&mut self) {
        let queued = {
            let mut state = self.inbox.state();
            state.open = false;
            state.sleeping = None;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }
}
