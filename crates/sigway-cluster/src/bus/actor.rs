//! The bus task: feeds what the subscription brings and the clock to the
//! pure liveness and link state machines, and carries out what they say
//! (publish through the publisher, events to the user). About 400 lines:
//! one event loop and the handlers of its five inputs, kept together so the
//! order in which they touch the links stays readable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sigway_core::cluster::link::{Envelope, Link, LinkOutput};
use sigway_core::cluster::liveness::{Announcement, ControlMessage, Liveness, LivenessEvent};
use tokio::sync::{mpsc, oneshot};

use super::publisher::{self, Job};
use super::{BusConfig, BusEvent, Command, Counted, Queue, Shared};
use crate::transport::{Delivery, NodeId, Transport};

const FIRST_RESUBSCRIBE: Duration = Duration::from_millis(100);
/// At most this many more commands, or deliveries, are taken in one turn
/// once one arrived: what queued up while the bus was busy goes out in
/// batch envelopes (the links flush at the end of the turn), yet timers and
/// the other input are not starved.
const TURN: usize = 256;
const MAX_RESUBSCRIBE: Duration = Duration::from_secs(5);
/// How long shutdown waits for `Bye` and the deregistration.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn spawn<T: Transport>(
    transport: Arc<T>,
    config: BusConfig,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<BusEvent>,
) {
    let (jobs, job_receiver) = mpsc::channel(publisher::QUEUE);
    tokio::spawn(publisher::run(Arc::clone(&transport), job_receiver));
    let now = Instant::now();
    let actor = Actor {
        liveness: Liveness::new(config.node, config.incarnation, config.dead_after)
            .with_recovery_grace(config.recovery_grace),
        links: HashMap::new(),
        subscription: None,
        subscribe_at: Some(now),
        subscribe_backoff: FIRST_RESUBSCRIBE,
        subscribed: false,
        announced: false,
        heartbeat_at: now,
        undecodable_logged_at: None,
        ready: false,
        pending_events: Vec::new(),
        transport,
        config,
        shared,
        jobs,
        events,
    };
    tokio::spawn(actor.run(commands));
}

/// How often an unreadable envelope is logged at most.
const UNDECODABLE_LOG_EVERY: Duration = Duration::from_secs(10);

struct Actor<T> {
    transport: Arc<T>,
    config: BusConfig,
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    events: mpsc::Sender<BusEvent>,
    liveness: Liveness,
    links: HashMap<NodeId, Link>,
    subscription: Option<mpsc::Receiver<Delivery>>,
    /// When to (re)subscribe, while there is no subscription.
    subscribe_at: Option<Instant>,
    subscribe_backoff: Duration,
    subscribed: bool,
    /// Whether `Hello` went out (the first announcement after subscribing).
    announced: bool,
    heartbeat_at: Instant,
    /// When an envelope this node cannot read was last logged (a node of
    /// another build: logged at most every [`UNDECODABLE_LOG_EVERY`]).
    undecodable_logged_at: Option<Instant>,
    ready: bool,
    /// Events for the user, in order, sent at the end of each turn.
    pending_events: Vec<BusEvent>,
}

impl<T: Transport> Actor<T> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let done = loop {
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => {
                    if let Some(stop) = self.on_commands(command, &mut commands) {
                        break stop;
                    }
                }
                delivery = next_delivery(&mut self.subscription) => {
                    self.on_delivery(delivery);
                    for _ in 1..TURN {
                        let Some(Ok(delivery)) = self.subscription.as_mut().map(mpsc::Receiver::try_recv) else {
                            break;
                        };
                        self.on_delivery(Some(delivery));
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            }
            self.on_timers().await;
            self.collect_link_outputs();
            for event in self.pending_events.drain(..) {
                // A full event queue holds the bus back (backpressure); a
                // dropped receiver means nobody listens any more.
                let _ = self.events.send(event).await;
            }
        };
        // What the last turn queued (before the shutdown) still goes out.
        self.collect_link_outputs();
        self.goodbye().await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn next_deadline(&self) -> Instant {
        let links = self.links.values().filter_map(Link::next_deadline);
        let heartbeat = (self.subscription.is_some()).then_some(self.heartbeat_at);
        [heartbeat, self.subscribe_at, self.liveness.next_deadline()]
            .into_iter()
            .flatten()
            .chain(links)
            .min()
            // Nothing scheduled: wake up once a heartbeat anyway.
            .unwrap_or_else(|| Instant::now() + self.config.heartbeat)
    }

    /// Takes `first` and what else is waiting (up to a turn's worth);
    /// returns `Some` when the bus must stop (with whom to tell).
    fn on_commands(
        &mut self,
        first: Option<Command>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Option<oneshot::Sender<()>>> {
        let now = Instant::now();
        let mut command = first;
        for taken in 1.. {
            match command {
                Some(Command::Send {
                    to,
                    payload,
                    counted,
                }) => {
                    self.on_send(to, payload, now);
                    match counted {
                        Counted::Queue(queue, bytes) => {
                            queue.waiting.fetch_sub(bytes, Ordering::AcqRel);
                        }
                        Counted::Paced(taken) => taken.taken(),
                    }
                }
                Some(Command::StartOver(to, queue)) => {
                    if let Some(link) = self.links.get_mut(&to) {
                        link.start_over();
                    }
                    queue.starting_over.store(false, Ordering::Release);
                }
                Some(Command::Shutdown(done)) => return Some(Some(done)),
                None => return Some(None),
            }
            if taken == TURN {
                break;
            }
            command = match commands.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
        }
        None
    }

    fn on_send(&mut self, to: NodeId, payload: Bytes, now: Instant) {
        match self.links.get_mut(&to) {
            Some(link) => {
                // Published when the turn ends, with what else this turn
                // queued for the same node.
                link.queue(payload, now);
                self.shared
                    .counters
                    .messages_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
            // It went down after the handle accepted the payload.
            None => tracing::debug!(node = to, "cluster payload to a node gone down dropped"),
        }
    }

    fn on_delivery(&mut self, delivery: Option<Delivery>) {
        let now = Instant::now();
        match delivery {
            Some(Delivery::Inbox(bytes)) => self.on_envelope(bytes, now),
            Some(Delivery::Control(bytes)) => match ControlMessage::decode(&bytes) {
                Ok(message) => {
                    if message.announcement == Announcement::Hello
                        && message.node != self.config.node
                    {
                        // Answer at once so the newcomer need not wait a period.
                        self.heartbeat_at = now;
                    }
                    let events = self.liveness.on_control(message, now);
                    self.apply_liveness(events);
                }
                Err(error) => tracing::debug!(%error, "cluster control message ignored"),
            },
            Some(Delivery::Interrupted) => {
                tracing::warn!("cluster subscription interrupted");
                self.subscribed = false;
            }
            Some(Delivery::Resubscribed) => {
                tracing::info!("cluster subscription restored");
                self.subscribed = true;
                // Only a heartbeat heard on the new subscription proves it.
                self.liveness.forget_own();
                self.heartbeat_at = now;
            }
            None => {
                tracing::warn!("cluster subscription closed; subscribing again");
                self.subscription = None;
                self.subscribed = false;
                self.subscribe_at = Some(now);
            }
        }
        self.update_ready(now);
    }

    fn on_envelope(&mut self, bytes: Bytes, now: Instant) {
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                // Its sender's link will resend it forever: say so where an
                // operator looks, without flooding the log.
                if self
                    .undecodable_logged_at
                    .is_none_or(|at| now.duration_since(at) >= UNDECODABLE_LOG_EVERY)
                {
                    self.undecodable_logged_at = Some(now);
                    tracing::warn!(
                        %error,
                        "cluster envelope this build cannot read ignored: do all nodes run compatible builds?"
                    );
                }
                return;
            }
        };
        // Only the run liveness knows: a newer run is taken once its Hello
        // is heard (its link resends meanwhile), an older one is stale.
        if self.liveness.incarnation_of(envelope.from) != Some(envelope.incarnation) {
            return;
        }
        if let Some(link) = self.links.get_mut(&envelope.from) {
            link.on_envelope(envelope, now);
        }
    }

    fn apply_liveness(&mut self, events: Vec<LivenessEvent>) {
        // What a link delivered comes before the news that its peer left.
        self.collect_link_outputs();
        for event in events {
            match event {
                LivenessEvent::NodeUp { node, incarnation } => {
                    tracing::info!(node, incarnation, "cluster node up");
                    let link = Link::new(
                        self.config.link,
                        self.config.node,
                        self.config.incarnation,
                        node,
                        incarnation,
                    );
                    self.links.insert(node, link);
                    super::write(&self.shared.alive).insert(node, Arc::new(Queue::default()));
                    self.shared
                        .counters
                        .nodes_up
                        .fetch_add(1, Ordering::Relaxed);
                    self.queue_event(BusEvent::NodeUp(node));
                }
                LivenessEvent::NodeDown {
                    node,
                    incarnation,
                    why,
                } => {
                    tracing::info!(node, incarnation, ?why, "cluster node down");
                    self.links.remove(&node);
                    super::write(&self.shared.alive).remove(&node);
                    self.queue_event(BusEvent::NodeDown(node));
                }
            }
        }
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.subscription.is_none() && self.subscribe_at.is_some_and(|at| at <= now) {
            self.subscribe(now).await;
        }
        if self.subscription.is_some() && self.heartbeat_at <= now {
            let announcement = if self.announced {
                Announcement::Heartbeat
            } else {
                Announcement::Hello
            };
            self.announced = true;
            self.announce(announcement);
            self.publish(Job::Register(self.config.node));
            self.heartbeat_at = now + self.config.heartbeat;
        }
        let events = self.liveness.sweep(now);
        self.apply_liveness(events);
        for link in self.links.values_mut() {
            if link.next_deadline().is_some_and(|at| at <= now) {
                link.poll(now);
            }
        }
        self.update_ready(now);
    }

    async fn subscribe(&mut self, now: Instant) {
        match self.transport.subscribe(self.config.node).await {
            Ok(subscription) => {
                tracing::info!(node = self.config.node, "cluster subscription made");
                self.subscription = Some(subscription);
                self.subscribe_at = None;
                self.subscribe_backoff = FIRST_RESUBSCRIBE;
                self.subscribed = true;
                self.liveness.forget_own();
                self.heartbeat_at = now;
            }
            Err(error) => {
                tracing::warn!(
                    retry_in_ms = self.subscribe_backoff.as_millis() as u64,
                    %error,
                    "cluster subscription failed"
                );
                self.subscribe_at = Some(now + self.subscribe_backoff);
                self.subscribe_backoff = (self.subscribe_backoff * 2).min(MAX_RESUBSCRIBE);
            }
        }
    }

    fn announce(&mut self, announcement: Announcement) {
        let message = ControlMessage {
            announcement,
            node: self.config.node,
            incarnation: self.config.incarnation,
        };
        self.publish(Job::Control(Bytes::copy_from_slice(&message.encode())));
    }

    fn publish(&self, job: Job) {
        if let Err(error) = self.jobs.try_send(job) {
            // The publisher is saturated: the link resends what mattered.
            tracing::debug!(%error, "cluster publish dropped");
        }
    }

    /// Carries out every link's outputs (publishes now, events queued).
    fn collect_link_outputs(&mut self) {
        let events = &mut self.pending_events;
        let counters = &self.shared.counters;
        for (peer, link) in &mut self.links {
            link.flush();
            while let Some(output) = link.pop_output() {
                match output {
                    LinkOutput::Publish(envelope) => {
                        if let Err(error) = self.jobs.try_send(Job::Inbox(*peer, envelope.encode()))
                        {
                            tracing::debug!(%error, "cluster publish dropped");
                        }
                    }
                    LinkOutput::Deliver(payload) => {
                        counters.messages_received.fetch_add(1, Ordering::Relaxed);
                        events.push(BusEvent::Message {
                            from: *peer,
                            payload,
                        });
                    }
                    LinkOutput::Reset(reset) => {
                        tracing::warn!(peer, ?reset, "cluster link reset");
                        counters.link_resets.fetch_add(1, Ordering::Relaxed);
                        events.push(BusEvent::LinkReset { peer: *peer });
                    }
                }
            }
            counters
                .retransmits
                .fetch_add(link.take_retransmits(), Ordering::Relaxed);
        }
    }

    fn queue_event(&mut self, event: BusEvent) {
        self.pending_events.push(event);
    }

    fn update_ready(&mut self, now: Instant) {
        let ready = self.subscribed && self.liveness.receiving(now);
        if ready != self.ready {
            self.ready = ready;
            self.shared.ready.store(ready, Ordering::Release);
            tracing::info!(ready, "cluster readiness changed");
            self.queue_event(BusEvent::Ready(ready));
        }
    }

    async fn goodbye(&mut self) {
        self.ready = false;
        self.shared.ready.store(false, Ordering::Release);
        super::write(&self.shared.alive).clear();
        let bye = ControlMessage {
            announcement: Announcement::Bye,
            node: self.config.node,
            incarnation: self.config.incarnation,
        };
        let transport = &self.transport;
        let node = self.config.node;
        let said = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            transport
                .publish_control(Bytes::copy_from_slice(&bye.encode()))
                .await?;
            transport.deregister(node).await
        })
        .await;
        match said {
            Ok(Ok(())) => tracing::info!(node, "cluster bus stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "cluster bus stopped without saying bye"),
            Err(_) => tracing::warn!("cluster bus stopped: bye timed out"),
        }
    }
}

async fn next_delivery(subscription: &mut Option<mpsc::Receiver<Delivery>>) -> Option<Delivery> {
    match subscription {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
