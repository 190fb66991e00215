//! The snapshot writer: writes rooms' snapshots in order, coalescing
//! those of one room that queued up meanwhile, fenced by the claim's epoch.
//! A write Redis could not take (unreachable, or a Cluster slot not served
//! yet after a restart) is tried again until it lands or a newer snapshot
//! of the room replaces it: an adopter must find the last state, and a
//! directory Redis lost is claimed back this way. A room this node no
//! longer owns at that epoch (given up, or moved) is not written any more:
//! after Redis lost the directory, its write would claim it back.

use super::*;

/// First pause before writing failed snapshots again; it doubles up to
/// [`LONGEST_RETRY`] while they keep failing.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// Whether this node still owns a room at an epoch (and is not giving it
/// up).
pub(super) type StillOwned = Box<dyn Fn(&RoomName, u64) -> bool + Send>;

/// Writes the snapshots asked for, in order, coalescing those of one room
/// that queued up meanwhile (only the last counts), while `still_owned`.
pub(super) async fn write_snapshots(
    directory: Arc<dyn Directory>,
    still_owned: StillOwned,
    mut jobs: mpsc::UnboundedReceiver<SnapshotJob>,
) {
    let mut pending: HashMap<RoomName, (u64, Bytes)> = HashMap::new();
    let mut order: VecDeque<RoomName> = VecDeque::new();
    // Rooms whose last write failed, tried again at `retry_at` (a deadline,
    // so that a steady flow of new jobs does not keep postponing it).
    let mut failed: Vec<RoomName> = Vec::new();
    let mut retry_in = FIRST_RETRY;
    let mut retry_at = tokio::time::Instant::now();
    let mut flushes = Vec::new();
    loop {
        // The first job, or `None` when it is time to retry failed writes.
        let first = if failed.is_empty() {
            Some(jobs.recv().await)
        } else {
            tokio::select! {
                job = jobs.recv() => Some(job),
                () = tokio::time::sleep_until(retry_at) => None,
            }
        };
        let mut next = match first {
            Some(None) => return,
            Some(Some(job)) => Some(job),
            None => {
                order.extend(failed.drain(..));
                retry_in = (retry_in * 2).min(LONGEST_RETRY);
                jobs.try_recv().ok()
            }
        };
        while let Some(job) = next {
            match job {
                SnapshotJob::Write {
                    room,
                    epoch,
                    snapshot,
                } => {
                    // A room is queued once, in `order` or in `failed`,
                    // while it has a pending snapshot.
                    if pending.insert(room.clone(), (epoch, snapshot)).is_none() {
                        order.push_back(room);
                    }
                }
                SnapshotJob::Flush(done) => flushes.push(done),
            }
            next = jobs.try_recv().ok();
        }
        let mut failures = 0usize;
        let mut last_error = None;
        while let Some(room) = order.pop_front() {
            let Some((epoch, snapshot)) = pending.remove(&room) else {
                continue;
            };
            if !still_owned(&room, epoch) {
                tracing::debug!(
                    kind = room.0,
                    epoch,
                    "snapshot dropped: the room is no longer owned here"
                );
                continue;
            }
            match directory
                .write_snapshot(group_of(&room), epoch, snapshot.clone())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(
                        kind = room.0,
                        epoch,
                        "snapshot not written: the room changed hands"
                    );
                }
                Err(error) => {
                    // Kept (nothing newer can have been queued during the
                    // write: this task is the only reader of the queue).
                    pending.insert(room.clone(), (epoch, snapshot));
                    failed.push(room);
                    failures += 1;
                    last_error = Some(error);
                }
            }
        }
        // One line per round, however many rooms an outage holds back.
        if let Some(error) = last_error {
            if failures == failed.len() {
                // The first failures since the last retry: it is due then.
                retry_at = tokio::time::Instant::now() + retry_in;
            }
            tracing::warn!(
                %error,
                rooms = failures,
                retry_in_ms = retry_at
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_millis() as u64,
                "snapshots not written; trying again"
            );
        }
        if failed.is_empty() {
            retry_in = FIRST_RETRY;
        }
        // A flush waits until every snapshot asked for is written, failed
        // ones included: an adopter given an older one than the notices
        // this node already sent would repeat them. (Who flushes bounds the
        // wait: a graceful stop must not hang on an unreachable Redis.)
        if failed.is_empty() {
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A directory whose snapshot writes fail while `down`, and that
    /// counts the writes that landed.
    #[derive(Default)]
    struct FlakyDirectory {
        down: AtomicBool,
        written: AtomicUsize,
    }

    impl Directory for FlakyDirectory {
        fn claim(
            &self,
            _group: GroupHash,
            _expected: Option<(NodeId, u64)>,
        ) -> BoxFuture<Result<Claim, TransportError>> {
            Box::pin(async { Err(TransportError::Protocol("not used".into())) })
        }

        fn release(
            &self,
            _group: GroupHash,
            _epoch: u64,
        ) -> BoxFuture<Result<bool, TransportError>> {
            Box::pin(async { Ok(true) })
        }

        fn write_snapshot(
            &self,
            _group: GroupHash,
            _epoch: u64,
            _snapshot: Bytes,
        ) -> BoxFuture<Result<bool, TransportError>> {
            let result = if self.down.load(Ordering::Acquire) {
                Err(TransportError::Unreachable("down".into()))
            } else {
                self.written.fetch_add(1, Ordering::AcqRel);
                Ok(true)
            };
            Box::pin(async move { result })
        }
    }

    fn write(room: &str, epoch: u64) -> SnapshotJob {
        SnapshotJob::Write {
            room: ("sigver", Arc::from(room)),
            epoch,
            snapshot: Bytes::from_static(b"state"),
        }
    }

    async fn flush(jobs: &mpsc::UnboundedSender<SnapshotJob>) {
        let (done, flushed) = oneshot::channel();
        jobs.send(SnapshotJob::Flush(done)).expect("writer runs");
        tokio::time::timeout(Duration::from_secs(10), flushed)
            .await
            .expect("flushed in time")
            .expect("answered");
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_while_owned_and_dropped_once_given_up() {
        let directory = Arc::new(FlakyDirectory::default());
        directory.down.store(true, Ordering::Release);
        let owned = Arc::new(AtomicBool::new(true));
        let still = owned.clone();
        let still_owned: StillOwned = Box::new(move |room, epoch| {
            still.load(Ordering::Acquire) && &*room.1 == "kept" && epoch == 3
        });
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_snapshots(directory.clone(), still_owned, queue));

        // Redis is down: both writes fail and wait for a retry.
        jobs.send(write("kept", 3)).expect("queued");
        jobs.send(write("moved", 3)).expect("queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(directory.written.load(Ordering::Acquire), 0);

        // Back up: the owned room's write lands on the retry, the one no
        // longer owned at that epoch is not written.
        directory.down.store(false, Ordering::Release);
        flush(&jobs).await;
        assert_eq!(directory.written.load(Ordering::Acquire), 1);

        // Given up meanwhile: a failed write is not retried into a claim.
        directory.down.store(true, Ordering::Release);
        jobs.send(write("kept", 3)).expect("queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
        owned.store(false, Ordering::Release);
        directory.down.store(false, Ordering::Release);
        flush(&jobs).await;
        assert_eq!(directory.written.load(Ordering::Acquire), 1);
    }
}
