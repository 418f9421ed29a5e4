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

/// What changed in a [`LogStore`] since the driver last wrote it to disk
/// ([`LogStore::take_changes`]), for a durable ledger. Written in this
/// order: the snapshot (and every entry at or below its index dropped),
/// every entry from `truncate_from` on dropped, `entries` put, the hard
/// state put. The configuration is the snapshot's: on a restart, the
/// committed entries after the snapshot are applied again, membership
/// changes included, as on any replica that installs a snapshot.
#[derive(Clone, Debug, Default)]
pub struct LogChanges {
    /// A new snapshot (taken here or received from the leader).
    pub snapshot: Option<Snapshot>,
    /// Entries at this index and above are gone (replaced or cleared).
    pub truncate_from: Option<u64>,
    /// Entries to put, in index order.
    pub entries: Vec<Entry>,
    /// The hard state (term, vote, commit), when it changed.
    pub hard_state: Option<HardState>,
}

impl LogChanges {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
    }
}

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
    /// What changed since [`LogStore::take_changes`], when tracked.
    changes: Option<LogChanges>,
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

    /// A log read back from disk: its latest snapshot, the entries after
    /// it and the hard state. The configuration is the snapshot's (see
    /// [`LogChanges`]). Fails, naming what is wrong, when the entries do
    /// not follow the snapshot one by one, or the snapshot is missing.
    pub fn reopened(snapshot: Snapshot, entries: Vec<Entry>, hard_state: HardState) -> Result<Self, String> {
        let offset = snapshot.get_metadata().index;
        if offset == 0 {
            return Err("no snapshot".into());
        }
        for (i, e) in entries.iter().enumerate() {
            if e.index != offset + 1 + i as u64 {
                return Err(format!(
                    "entry {} found where {} belongs",
                    e.index,
                    offset + 1 + i as u64
                ));
            }
        }
        let last = offset + entries.len() as u64;
        if hard_state.commit < offset || hard_state.commit > last {
            return Err(format!(
                "commit index {} outside the log ({offset}..={last})",
                hard_state.commit
            ));
        }
        Ok(LogStore {
            hard_state,
            conf_state: snapshot.get_metadata().get_conf_state().clone(),
            snapshot,
            bytes: data_bytes(&entries),
            entries,
            changes: None,
        })
    }

    /// Starts recording what changes, for [`LogStore::take_changes`]. With
    /// `whole`, the first changes are the whole store, so that a log
    /// written from them alone is this one (a new log); without, they
    /// start empty (a log read back from disk).
    pub fn track_changes(&mut self, whole: bool) {
        self.changes = Some(if whole {
            LogChanges {
                snapshot: Some(self.snapshot.clone()),
                truncate_from: Some(self.offset() + 1),
                entries: self.entries.clone(),
                hard_state: Some(self.hard_state.clone()),
            }
        } else {
            LogChanges::default()
        });
    }

    /// What changed since the last call (empty when not tracked).
    pub fn take_changes(&mut self) -> LogChanges {
        match self.changes.as_mut() {
            Some(c) => std::mem::take(c),
            None => LogChanges::default(),
        }
    }

    /// Records a new hard state among the changes.
    fn hard_state_changed(&mut self) {
        if let Some(c) = self.changes.as_mut() {
            c.hard_state = Some(self.hard_state.clone());
        }
    }

    /// Records a new snapshot among the changes; with `cleared`, every
    /// entry after it is gone too.
    fn snapshot_changed(&mut self, cleared: bool) {
        let index = self.offset();
        if let Some(c) = self.changes.as_mut() {
            c.snapshot = Some(self.snapshot.clone());
            c.entries.retain(|e| e.index > index);
            if cleared {
                c.entries.clear();
                c.truncate_from = Some(index + 1);
            }
        }
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
        if let Some(c) = self.changes.as_mut() {
            c.entries.retain(|e| e.index < first.index);
            c.truncate_from = Some(c.truncate_from.map_or(first.index, |t| t.min(first.index)));
            c.entries.extend(ents.iter().map(|e| (*e).clone()));
        }
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
        self.hard_state_changed();
    }

    /// Records a new commit index (from a `LightReady`).
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
        self.hard_state_changed();
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
        let cleared = !(matches && pos as usize <= self.entries.len());
        if cleared {
            self.entries.clear();
            self.bytes = 0;
        } else {
            self.bytes -= data_bytes(&self.entries[..pos as usize]);
            self.entries.drain(..pos as usize);
        }
        self.snapshot = snap;
        self.snapshot_changed(cleared);
        self.hard_state_changed();
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
        self.snapshot_changed(false);
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

/// A model of the disk a durable ledger writes [`LogChanges`] to, with
/// the same meaning as the real store's writes: for the tests and the
/// simulator, which crash replicas and read them back.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct LogImage {
    snapshot: Snapshot,
    entries: std::collections::BTreeMap<u64, Entry>,
    hard_state: HardState,
}

#[cfg(test)]
impl LogImage {
    /// Writes changes in the documented order.
    pub(crate) fn write(&mut self, c: &LogChanges) {
        if let Some(snap) = &c.snapshot {
            self.snapshot = snap.clone();
            self.entries = self.entries.split_off(&(snap.get_metadata().index + 1));
        }
        if let Some(from) = c.truncate_from {
            self.entries.split_off(&from);
        }
        for e in &c.entries {
            self.entries.insert(e.index, e.clone());
        }
        if let Some(hs) = &c.hard_state {
            self.hard_state = hs.clone();
        }
    }

    /// The log read back.
    pub(crate) fn reopen(&self) -> Result<LogStore, String> {
        LogStore::reopened(
            self.snapshot.clone(),
            self.entries.values().cloned().collect(),
            self.hard_state.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of a store that must survive a restart.
    fn durable_parts(s: &LogStore) -> (Snapshot, Vec<Entry>, HardState) {
        (s.snapshot.clone(), s.entries.clone(), s.hard_state.clone())
    }

    /// Whatever sequence of appends, commits, compactions and received
    /// snapshots a store goes through, the changes it records, written to
    /// a disk after each operation, read back as the same log.
    #[test]
    fn recorded_changes_rebuild_the_same_log() {
        for seed in 0..300u64 {
            let mut rng = seed;
            let mut next = |n: u64| {
                rng = crate::task::mix64(rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
                rng % n
            };
            let mut s = LogStore::founded(vec![1, 2, 3], b"first".to_vec());
            s.track_changes(true);
            let mut disk = LogImage::default();
            disk.write(&s.take_changes());
            let mut term = 1;
            for _ in 0..40 {
                match next(5) {
                    0 | 1 => {
                        // Appends from somewhere at or after the commit
                        // index (a new leader overwriting the rest).
                        term += next(2);
                        let from = s.hard_state.commit + 1 + next(s.last() + 2 - s.hard_state.commit);
                        let from = from.min(s.last() + 1);
                        let n = 1 + next(4);
                        let ents: Vec<Entry> = (from..from + n).map(|i| entry(i, term)).collect();
                        s.append(&ents);
                    }
                    2 => {
                        let commit = s.hard_state.commit + next(s.last() - s.hard_state.commit + 1);
                        s.set_commit(commit);
                    }
                    3 => {
                        let at = s.offset() + next(s.hard_state.commit - s.offset() + 1);
                        s.compact(at, vec![at as u8]);
                    }
                    _ => {
                        let mut snap = Snapshot {
                            data: b"leader's".to_vec().into(),
                            ..Default::default()
                        };
                        snap.mut_metadata().index = s.last() + next(3);
                        snap.mut_metadata().term = term;
                        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
                        s.apply_snapshot(snap);
                    }
                }
                disk.write(&s.take_changes());
                let back = disk.reopen().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                assert_eq!(durable_parts(&back), durable_parts(&s), "seed {seed}");
                assert_eq!(back.bytes(), s.bytes(), "seed {seed}");
            }
        }
    }

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
