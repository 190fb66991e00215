//! The snapshot writer: writes rooms' snapshots in order, coalescing
//! those of one room that queued up meanwhile, fenced by the claim's epoch.
//! A write Redis could not take (unreachable, or a Cluster slot not served
//! yet after a restart) is tried again until it lands or a newer snapshot
//! of the room replaces it: an adopter must find the last state, and a
//! directory Redis lost is claimed back this way.

use super::*;

/// First pause before writing failed snapshots again; it doubles up to
/// [`LONGEST_RETRY`] while they keep failing.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(2);

/// Writes the snapshots asked for, in order, coalescing those of one room
/// that queued up meanwhile (only the last counts).
pub(super) async fn write_snapshots(
    directory: Arc<dyn Directory>,
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
