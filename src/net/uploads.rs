//! Batches arriving in parts (`Request::SubmitPart`), staged at the admin
//! until their last part. A pure unit: the loop passes the sender, the
//! part and the time (since the loop started), and gets back what to
//! answer.
//!
//! Bounds, per sender: at most [`MAX_UPLOADS_PER_PEER`] open uploads and
//! [`MAX_STAGED_BYTES`] staged; for all senders, [`MAX_STAGED_TOTAL`]
//! staged; an upload with no part for [`UPLOAD_IDLE`] is dropped.

use std::collections::HashMap;
use std::time::Duration;

use crate::task::Task;

/// How long a partly uploaded batch is kept without a new part.
pub(crate) const UPLOAD_IDLE: Duration = Duration::from_secs(30);
/// Most bytes of task inputs one sender may have staged.
pub(crate) const MAX_STAGED_BYTES: usize = 256 << 20;
/// Most uploads one sender may have open.
pub(crate) const MAX_UPLOADS_PER_PEER: usize = 4;
/// Most bytes staged for all senders together.
pub(crate) const MAX_STAGED_TOTAL: usize = 4 * MAX_STAGED_BYTES;

struct Upload {
    tasks: Vec<Task>,
    bytes: usize,
    touched: Duration,
}

/// What to do with a part.
#[derive(Debug, PartialEq)]
pub(crate) enum PartOutcome {
    /// Staged; answer `Ok` and wait for more.
    Staged,
    /// The last part: submit this whole batch.
    Complete(Vec<Task>),
    /// Refused (the upload is dropped), for this reason.
    Refused(String),
}

/// Staged uploads by sender (any key the loop uses for a peer) and upload
/// number.
pub(crate) struct Uploads<P> {
    staged: HashMap<(P, u64), Upload>,
}

impl<P: Eq + std::hash::Hash + Clone> Default for Uploads<P> {
    fn default() -> Self {
        Uploads {
            staged: HashMap::new(),
        }
    }
}

impl<P: Eq + std::hash::Hash + Clone> Uploads<P> {
    /// One part of upload `upload` from `peer` at time `now`.
    pub(crate) fn part(
        &mut self,
        peer: P,
        upload: u64,
        tasks: Vec<Task>,
        last: bool,
        now: Duration,
    ) -> PartOutcome {
        self.staged.retain(|_, u| now < u.touched + UPLOAD_IDLE);
        let mine = self.staged.iter().filter(|(k, _)| k.0 == peer);
        let (open, staged) = mine.fold((0, 0), |(n, b), (_, u)| (n + 1, b + u.bytes));
        let bytes: usize = tasks.iter().map(|t| t.input.len() + 256).sum();
        let key = (peer, upload);
        let new = !self.staged.contains_key(&key);
        if new && open >= MAX_UPLOADS_PER_PEER {
            return PartOutcome::Refused(format!(
                "too many batches in parts at once (at most {MAX_UPLOADS_PER_PEER})"
            ));
        }
        if staged + bytes > MAX_STAGED_BYTES {
            self.staged.remove(&key);
            return PartOutcome::Refused(format!(
                "batch in parts is over {MAX_STAGED_BYTES} bytes; submit it in smaller batches"
            ));
        }
        let total: usize = self.staged.values().map(|u| u.bytes).sum();
        if total + bytes > MAX_STAGED_TOTAL {
            self.staged.remove(&key);
            return PartOutcome::Refused(format!(
                "the admin holds {total} bytes of batches in parts already (limit {MAX_STAGED_TOTAL}); try again later"
            ));
        }
        let u = self.staged.entry(key.clone()).or_insert_with(|| Upload {
            tasks: Vec::new(),
            bytes: 0,
            touched: now,
        });
        u.tasks.extend(tasks);
        u.bytes += bytes;
        u.touched = now;
        if !last {
            return PartOutcome::Staged;
        }
        let whole = self.staged.remove(&key).map(|u| u.tasks).unwrap_or_default();
        PartOutcome::Complete(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Payload;

    fn tasks(n: usize, bytes: usize) -> Vec<Task> {
        (0..n)
            .map(|i| Task::new(format!("t{i}"), "w", 1).with_payload(Payload(vec![0; bytes])))
            .collect()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parts_make_one_batch_in_order() {
        let mut u = Uploads::default();
        let (a, b) = (tasks(2, 1), tasks(3, 1));
        let want: Vec<_> = a.iter().chain(&b).map(|t| t.id).collect();
        assert_eq!(u.part("p", 1, a, false, secs(0)), PartOutcome::Staged);
        let PartOutcome::Complete(whole) = u.part("p", 1, b, true, secs(1)) else {
            panic!("the last part completes the batch")
        };
        assert_eq!(whole.iter().map(|t| t.id).collect::<Vec<_>>(), want);
    }

    #[test]
    fn senders_are_bounded_in_uploads_and_bytes_and_idle_uploads_go() {
        let mut u = Uploads::default();
        for n in 0..MAX_UPLOADS_PER_PEER as u64 {
            assert_eq!(u.part("p", n, tasks(1, 1), false, secs(0)), PartOutcome::Staged);
        }
        let refused = u.part("p", 99, tasks(1, 1), false, secs(0));
        assert!(matches!(refused, PartOutcome::Refused(ref why) if why.contains("too many")));
        // Another sender has its own bounds.
        assert_eq!(u.part("q", 99, tasks(1, 1), false, secs(0)), PartOutcome::Staged);
        // After the idle time, the old uploads are gone and room is back.
        assert_eq!(
            u.part("p", 99, tasks(1, 1), false, UPLOAD_IDLE),
            PartOutcome::Staged
        );
        let big = tasks(1, MAX_STAGED_BYTES);
        let refused = u.part("p", 100, big, false, UPLOAD_IDLE);
        assert!(matches!(refused, PartOutcome::Refused(ref why) if why.contains("smaller batches")));
    }
}
