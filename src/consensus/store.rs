//! The Raft log kept in memory: entries after the latest snapshot, the
//! hard state (term, vote, commit), the configuration (voters, learners)
//! and the snapshot itself, with its data (an encoded scheduler state).
//!
//! It implements [`raft::Storage`] for a [`raft::RawNode`]; the driver
//! appends what each `Ready` hands it before sending the messages that
//! depend on it, as raft-rs requires. Indexes follow Raft's: the first
//! entry is 1, and the snapshot stands for every entry up to its index.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    /// Stands for every entry up to `snapshot.metadata.index`.
    snapshot: Snapshot,
    /// `entries[i]` has index `snapshot index + 1 + i`.
    entries: Vec<Entry>,
    /// Bytes of entry data held (what compaction frees).
    bytes: usize,
}

impl LogStore {
    /// The log of a new mesh: a first snapshot, at index 1 of term 1,
    /// whose configuration names `voters` (Raft ids) and whose data is the
    /// state machine's empty state. A joining replica starts from
    /// [`LogStore::default`] (empty) and, since the log begins after this
    /// snapshot, receives it first: that is how it learns the
    /// configuration.
    pub fn founded(voters: Vec<u64>, data: Vec<u8>) -> Self {
        let mut store = LogStore::default();
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.mut_conf_state().voters = voters;
        store.apply_snapshot(snap);
        store
    }

    /// Index of the snapshot: every entry up to it is compacted.
    fn offset(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// Index of the last entry (the snapshot's when the log is empty).
    pub fn last(&self) -> u64 {
        self.offset() + self.entries.len() as u64
    }

    /// Appends entries handed over by a `Ready`, replacing any conflicting
    /// suffix (a new leader overwrites what an old one could not commit).
    /// Entries at or below the snapshot are already in it and are skipped.
    pub fn append(&mut self, ents: &[Entry]) {
        let keep = ents.iter().skip_while(|e| e.index <= self.offset());
        let ents: Vec<&Entry> = keep.collect();
        let Some(first) = ents.first() else { return };
        // Entries from `first.index` on are replaced.
        let from = (first.index - self.offset() - 1) as usize;
        let cut = from.min(self.entries.len());
        self.bytes -= data_bytes(&self.entries[cut..]);
        self.entries.truncate(cut);
        self.bytes += ents.iter().map(|e| e.data.len()).sum::<usize>();
        self.entries.extend(ents.into_iter().cloned());
    }

    /// The snapshot's index and data.
    pub fn snapshot_data(&self) -> (u64, &[u8]) {
        (self.offset(), &self.snapshot.data)
    }

    /// True when the configuration changed since the latest snapshot, so a
    /// replica that joined since cannot be sent it.
    pub fn snapshot_predates_members(&self) -> bool {
        self.snapshot.get_metadata().get_conf_state() != &self.conf_state
    }

    /// Entries from index `low` to `high` (both included), as far as the
    /// log holds them.
    pub fn entries_from(&self, low: u64, high: u64) -> &[Entry] {
        let start = low.saturating_sub(self.offset() + 1) as usize;
        let end = (high.saturating_sub(self.offset()) as usize).min(self.entries.len());
        &self.entries[start.min(end)..end]
    }

    /// Bytes of entry data after the snapshot.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when the snapshot stands for entries but carries no state: the
    /// log of a replica that was alone in its configuration, compacted
    /// without encoding its state (nobody could ask for it).
    pub fn snapshot_is_placeholder(&self) -> bool {
        self.offset() > 1 && self.snapshot.data.is_empty()
    }

    /// Records the hard state handed over by a `Ready`.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Records a new commit index (from a `LightReady`).
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Records the configuration after a committed change.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// The configuration now in force.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Replaces the log by a snapshot received from the leader (older
    /// snapshots change nothing).
    pub fn apply_snapshot(&mut self, snap: Snapshot) {
        let meta = snap.get_metadata();
        if meta.index <= self.offset() {
            return;
        }
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        // Entries after the snapshot that match it stay; the rest go.
        let pos = meta.index - self.offset();
        let matches = self.term(meta.index).is_ok_and(|t| t == meta.term);
        if matches && pos as usize <= self.entries.len() {
            self.bytes -= data_bytes(&self.entries[..pos as usize]);
            self.entries.drain(..pos as usize);
        } else {
            self.entries.clear();
            self.bytes = 0;
        }
        self.snapshot = snap;
    }

    /// Compacts the log up to `index` (at most the commit index) into a
    /// snapshot whose data is `data`, the state machine as of `index`.
    /// Returns false, changing nothing, for an index not in the log or not
    /// committed.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> bool {
        if index <= self.offset() || index > self.hard_state.commit || index > self.last() {
            return false;
        }
        let Ok(term) = self.term(index) else { return false };
        let drop = (index - self.offset()) as usize;
        self.bytes -= data_bytes(&self.entries[..drop]);
        self.entries.drain(..drop);
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        self.snapshot = snap;
        true
    }
}

/// Bytes of entry data in `entries`.
fn data_bytes(entries: &[Entry]) -> usize {
    entries.iter().map(|e| e.data.len()).sum()
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.offset() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let (lo, hi) = (
            (low - self.offset() - 1) as usize,
            (high - self.offset() - 1) as usize,
        );
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.offset() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < self.offset() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((idx - self.offset() - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// The latest snapshot, unless it is older than asked for or was taken
    /// before replica `to` joined (restoring it, `to` would find itself in
    /// no configuration and ignore it): then raft-rs asks again later, and
    /// the driver takes a fresh snapshot meanwhile
    /// ([`LogStore::snapshot_predates_members`]).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf = self.snapshot.get_metadata().get_conf_state();
        let knows = conf.voters.contains(&to) || conf.learners.contains(&to);
        if self.offset() < request_index || !knows {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn appends_replace_a_conflicting_suffix() {
        let mut s = LogStore::default();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        s.append(&[entry(2, 2)]);
        assert_eq!(s.last(), 2);
        assert_eq!(s.bytes(), 2, "the replaced suffix's bytes are gone");
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.term(1).unwrap(), 1);
        assert!(s.term(3).is_err());
        let got = s.entries(1, 3, None, ctx()).unwrap();
        assert_eq!(
            got.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            [(1, 1), (2, 2)]
        );
    }

    #[test]
    fn compaction_keeps_the_terms_needed_for_matching_and_refuses_uncommitted() {
        let mut s = LogStore::default();
        s.set_conf_state(ConfState {
            voters: vec![1, 2],
            ..Default::default()
        });
        s.append(&(1..=5).map(|i| entry(i, 1 + i / 3)).collect::<Vec<_>>());
        assert!(!s.compact(3, b"state".to_vec()), "not committed yet");
        s.set_commit(4);
        assert!(s.compact(3, b"state".to_vec()));
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.term(3).unwrap(), 2, "the snapshot's term stays known");
        assert!(matches!(
            s.entries(3, 5, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(s.entries(4, 6, None, ctx()).unwrap().len(), 2);
        let snap = s.snapshot(3, 2).unwrap();
        assert_eq!(&snap.data[..], b"state");
        assert_eq!(snap.get_metadata().get_conf_state().voters, [1, 2]);
        assert!(s.snapshot(3, 9).is_err(), "not for a replica it does not name");
        assert!(!s.compact(5, vec![]), "past the commit index");
        assert_eq!(s.bytes(), data_bytes(&s.entries), "bytes follow the entries held");
    }

    #[test]
    fn a_received_snapshot_replaces_what_it_covers() {
        let mut s = LogStore::default();
        s.append(&[entry(1, 1), entry(2, 1)]);
        let mut snap = Snapshot {
            data: b"s".to_vec().into(),
            ..Default::default()
        };
        snap.mut_metadata().index = 5;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.apply_snapshot(snap.clone());
        assert_eq!((s.first_index().unwrap(), s.last()), (6, 5));
        assert_eq!(s.conf_state().voters, [1, 2, 3]);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 5);
        // An older snapshot changes nothing.
        snap.mut_metadata().index = 4;
        s.apply_snapshot(snap);
        assert_eq!(s.first_index().unwrap(), 6);
    }
}
