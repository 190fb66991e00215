//! The snapshot writer: writes rooms' snapshots in order, coalescing
//! those of one room that queued up meanwhile, fenced by the claim's epoch.

use super::*;

/// Writes the snapshots asked for, in order, coalescing those of one room
/// that queued up meanwhile (only the last counts).
pub(super) async fn write_snapshots(
    directory: Arc<dyn Directory>,
    mut jobs: mpsc::UnboundedReceiver<SnapshotJob>,
) {
    let mut pending: HashMap<RoomName, (u64, Bytes)> = HashMap::new();
    let mut order: VecDeque<RoomName> = VecDeque::new();
    let mut flushes = Vec::new();
    while let Some(job) = jobs.recv().await {
        let mut next = Some(job);
        while let Some(job) = next {
            match job {
                SnapshotJob::Write {
                    room,
                    epoch,
                    snapshot,
                } => {
                    if pending.insert(room.clone(), (epoch, snapshot)).is_none() {
                        order.push_back(room);
                    }
                }
                SnapshotJob::Flush(done) => flushes.push(done),
            }
            next = jobs.try_recv().ok();
        }
        while let Some(room) = order.pop_front() {
            let Some((epoch, snapshot)) = pending.remove(&room) else {
                continue;
            };
            match directory
                .write_snapshot(group_of(&room), epoch, snapshot)
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
                Err(error) => tracing::warn!(%error, kind = room.0, "snapshot not written"),
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
