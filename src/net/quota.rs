//! What each submitting peer has at the admin: unfinished tasks and the
//! bytes of their inputs, against [`crate::access::Limits`]. A pure unit:
//! the loop charges a batch when it is submitted, and releases each task
//! when it is final (or the whole batch when it is refused).
//!
//! Counted per admin term: a new admin starts from zero, so a peer may
//! have up to a limit's worth more while an office changes hands.

use std::collections::HashMap;
use std::hash::Hash;

use crate::task::TaskId;

/// Unfinished tasks and their bytes, per submitting peer.
#[derive(Debug)]
pub(crate) struct Quotas<P> {
    /// Each charged task: its submitter and input bytes.
    tasks: HashMap<TaskId, (P, u64)>,
    /// Per submitter: tasks and bytes charged.
    load: HashMap<P, (usize, u64)>,
}

impl<P> Default for Quotas<P> {
    fn default() -> Self {
        Quotas {
            tasks: HashMap::new(),
            load: HashMap::new(),
        }
    }
}

impl<P: Clone + Eq + Hash + std::fmt::Display> Quotas<P> {
    /// Charges `batch` (`(id, input bytes)` pairs) to `peer`, or refuses it
    /// whole, with the reason, when it would take the peer over
    /// `max_tasks` unfinished tasks or `max_bytes` of input.
    pub(crate) fn charge(
        &mut self,
        peer: &P,
        batch: &[(TaskId, u64)],
        max_tasks: usize,
        max_bytes: u64,
    ) -> Result<(), String> {
        let (tasks, bytes) = self.load.get(peer).copied().unwrap_or_default();
        let add_bytes: u64 = batch.iter().map(|b| b.1).sum();
        if tasks.saturating_add(batch.len()) > max_tasks {
            return Err(format!(
                "peer {peer} has {tasks} unfinished tasks at this admin; {} more would pass its limit of {max_tasks}",
                batch.len()
            ));
        }
        if bytes.saturating_add(add_bytes) > max_bytes {
            return Err(format!(
                "peer {peer} has {bytes} bytes of input in unfinished tasks at this admin; {add_bytes} more would pass its limit of {max_bytes}"
            ));
        }
        for &(id, b) in batch {
            if self.tasks.insert(id, (peer.clone(), b)).is_none() {
                let l = self.load.entry(peer.clone()).or_default();
                l.0 += 1;
                l.1 += b;
            }
        }
        Ok(())
    }

    /// A task is final (or was never accepted): its submitter gets its
    /// share back.
    pub(crate) fn release(&mut self, id: &TaskId) {
        let Some((peer, b)) = self.tasks.remove(id) else {
            return;
        };
        if let Some(l) = self.load.get_mut(&peer) {
            l.0 = l.0.saturating_sub(1);
            l.1 = l.1.saturating_sub(b);
            if l.0 == 0 {
                self.load.remove(&peer);
            }
        }
    }

    /// Tasks and bytes charged to `peer`.
    #[cfg(test)]
    fn load(&self, peer: &P) -> (usize, u64) {
        self.load.get(peer).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, bytes: u64) -> Vec<(TaskId, u64)> {
        (0..n).map(|_| (TaskId::random(), bytes)).collect()
    }

    #[test]
    fn a_peer_is_held_to_its_limits_and_others_are_not() {
        let mut q = Quotas::default();
        let first = ids(3, 10);
        q.charge(&"a", &first, 4, 100).unwrap();
        let err = q.charge(&"a", &ids(2, 1), 4, 100).unwrap_err();
        assert!(
            err.contains("3 unfinished") && err.contains("limit of 4"),
            "{err}"
        );
        let err = q.charge(&"a", &ids(1, 71), 4, 100).unwrap_err();
        assert!(err.contains("30 bytes") && err.contains("limit of 100"), "{err}");
        assert_eq!(q.load(&"a"), (3, 30), "a refused batch charges nothing");
        q.charge(&"b", &ids(4, 25), 4, 100).unwrap();
        for (id, _) in &first {
            q.release(id);
            q.release(id); // twice is once
        }
        assert_eq!(q.load(&"a"), (0, 0));
        assert!(!q.load.contains_key(&"a"), "an idle peer leaves no entry");
        q.charge(&"a", &ids(4, 25), 4, 100).unwrap();
    }
}
