//! One replica of the ledger: a raft-rs `RawNode` over a [`LogStore`],
//! driven step by step. Inputs are ticks, messages from other replicas and
//! proposals of event batches; each step returns the messages to send and
//! the committed batches to apply to the scheduler, in log order. Pure: no
//! clock (time is the number of ticks), no network, no threads.
//!
//! A committed entry is a batch of scheduler events encoded with bincode
//! and the event format's version ([`EVENT_VERSION`]).

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message, MessageType};
use raft::{Config, RawNode, SnapshotStatus, StateRole};
use slog::{o, Discard, Logger};

use super::LogStore;
use crate::scheduler::{Event, EVENT_VERSION};

/// What can go wrong with a replica.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// Only the leader takes proposals.
    #[error("this replica is not the leader")]
    NotLeader,
    /// raft-rs refused (bad configuration, a proposal dropped).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A batch of events could not be encoded.
    #[error("cannot encode events: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// A snapshot from the leader cannot be restored.
    #[error("cannot restore the leader's snapshot")]
    Snapshot(#[source] crate::scheduler::SnapshotError),
    /// A membership change is still being committed; one at a time.
    #[error("a membership change is already under way")]
    ChangePending,
    /// A committed entry is not a batch this version can read: the replicas
    /// run incompatible versions.
    #[error("committed entry {index} cannot be read (another event version?)")]
    Unreadable {
        /// The entry's log index.
        index: u64,
    },
}

/// How a replica is set up. Ticks are the unit of time: the driver calls
/// [`Replica::tick`] at a fixed interval (say 100 ms).
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This replica's Raft id (not 0, unique in the mesh).
    pub id: u64,
    /// The voters of a new mesh; empty for a replica that joins one.
    pub voters: Vec<u64>,
    /// Ticks without a leader before a follower starts a (pre-)vote.
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Record what the log store changes, for the driver to write to disk
    /// ([`Replica::take_changes`]).
    pub durable: bool,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            id: 1,
            voters: vec![1],
            election_ticks: 10,
            heartbeat_ticks: 2,
            durable: false,
        }
    }
}

/// Bytes of entries one append carries (one larger entry goes alone).
const APPEND_BYTES: u64 = 1 << 20;
/// Appends in flight to one follower before further entries wait for an
/// answer.
const APPENDS_IN_FLIGHT: usize = 2;

/// A committed batch of events and its place in the log.
#[derive(Debug)]
pub struct Committed {
    /// The entry's log index.
    pub index: u64,
    /// The events, to apply in order.
    pub events: Vec<Event>,
}

/// A change of the replicas taking part, proposed by the leader and
/// applied by every replica once committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// A new replica follows the log without a vote.
    AddLearner,
    /// A learner becomes a voter.
    Promote,
    /// A replica leaves the configuration.
    Remove,
}

/// A committed membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// The entry's log index.
    pub index: u64,
    /// What changed.
    pub change: MemberChange,
    /// The replica it concerns.
    pub id: u64,
    /// What the proposer attached (the driver's address of the replica).
    pub context: Vec<u8>,
}

/// What one step produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Messages for other replicas (`Message::to`), in order.
    pub messages: Vec<Message>,
    /// A snapshot from the leader replaced this replica's log up to this
    /// index: the scheduler restores its data
    /// ([`Replica::snapshot`]) before applying `committed`.
    pub installed: Option<u64>,
    /// Committed event batches, in log order, to apply to the scheduler.
    pub committed: Vec<Committed>,
    /// Committed membership changes, in log order (already in force).
    pub members: Vec<Membership>,
    /// Entries that could not be read (see [`ConsensusError::Unreadable`]).
    pub unreadable: Vec<u64>,
}

/// See the module documentation.
pub struct Replica {
    node: RawNode<LogStore>,
    election_ticks: usize,
}

impl Replica {
    /// A replica with pre-vote and check-quorum on, so that a paused or
    /// cut-off replica cannot depose a leader that still has a quorum.
    /// With voters named, it starts a new mesh from a first snapshot whose
    /// data is `initial` (see [`LogStore::founded`]); without, it starts
    /// empty and joins.
    pub fn new(cfg: &ReplicaConfig, initial: Vec<u8>) -> Result<Self, ConsensusError> {
        let store = if cfg.voters.is_empty() {
            LogStore::default()
        } else {
            LogStore::founded(cfg.voters.clone(), initial)
        };
        let mut r = Self::over(cfg, store)?;
        if cfg.durable {
            r.node.mut_store().track_changes(true);
        }
        Ok(r)
    }

    /// A replica over a log read back from disk ([`LogStore::reopened`]),
    /// with the step that hands out the entries committed after its
    /// snapshot (the driver restores the snapshot's data first).
    pub fn reopen(cfg: &ReplicaConfig, store: LogStore) -> Result<(Self, Step), ConsensusError> {
        let mut r = Self::over(cfg, store)?;
        if cfg.durable {
            r.node.mut_store().track_changes(false);
        }
        let step = r.drain();
        Ok((r, step))
    }

    fn over(cfg: &ReplicaConfig, store: LogStore) -> Result<Self, ConsensusError> {
        let config = Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            pre_vote: true,
            check_quorum: true,
            // Replication in batches: an append carries every entry not yet
            // sent (up to 1 MiB, or one larger entry), at most 2 appends are
            // in flight to a follower, and those a step makes for one
            // follower are merged; under load, entries wait for an append
            // slot and go together instead of one message each way per
            // entry (raft-rs's default of one entry per message).
            max_size_per_msg: APPEND_BYTES,
            max_inflight_msgs: APPENDS_IN_FLIGHT,
            batch_append: true,
            ..Config::default()
        };
        let node = RawNode::new(&config, store, &Logger::root(Discard, o!()))?;
        let mut r = Replica {
            node,
            election_ticks: cfg.election_ticks,
        };
        r.pin_election_timeout();
        Ok(r)
    }

    /// What the log store changed since the last call, when
    /// [`ReplicaConfig::durable`]: the driver writes it to disk before it
    /// sends the step's messages or outputs.
    pub fn take_changes(&mut self) -> crate::consensus::LogChanges {
        self.node.mut_store().take_changes()
    }

    /// This replica's Raft id.
    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// `Some(term)` while this replica leads.
    pub fn leading(&self) -> Option<u64> {
        (self.node.raft.state == StateRole::Leader).then_some(self.node.raft.term)
    }

    /// The leader this replica knows of (0: none).
    pub fn leader(&self) -> u64 {
        self.node.raft.leader_id
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// True when this replica leads and has committed an entry of its own
    /// term, so every entry of earlier terms it holds is committed (and
    /// handed out in [`Step::committed`]): only then may the admin decide.
    pub fn ready_to_lead(&self) -> bool {
        self.leading().is_some() && self.node.raft.commit_to_current_term()
    }

    /// The highest log index known committed.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// The highest log index handed out in [`Step::committed`] (or covered
    /// by a snapshot).
    pub fn applied_index(&self) -> u64 {
        self.node.raft.raft_log.applied()
    }

    /// The voters' Raft ids, as the configuration in force says.
    pub fn voters(&self) -> Vec<u64> {
        self.node.store().conf_state().voters.clone()
    }

    /// The learners' Raft ids (they follow the log without a vote).
    pub fn learners(&self) -> Vec<u64> {
        self.node.store().conf_state().learners.clone()
    }

    /// The highest index a replica is known to hold (leader only; 0 when
    /// unknown).
    pub fn matched(&self, id: u64) -> u64 {
        self.node.raft.prs().get(id).map_or(0, |p| p.matched)
    }

    /// Proposes a membership change (leader only), one at a time:
    /// [`ConsensusError::ChangePending`] while an earlier one is not yet
    /// applied. `context` comes back with the committed change.
    pub fn propose_change(
        &mut self,
        change: MemberChange,
        id: u64,
        context: Vec<u8>,
    ) -> Result<Step, ConsensusError> {
        if self.leading().is_none() {
            return Err(ConsensusError::NotLeader);
        }
        if self.node.raft.pending_conf_index > self.node.raft.raft_log.applied() {
            return Err(ConsensusError::ChangePending);
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(match change {
            MemberChange::AddLearner => ConfChangeType::AddLearnerNode,
            MemberChange::Promote => ConfChangeType::AddNode,
            MemberChange::Remove => ConfChangeType::RemoveNode,
        });
        cc.node_id = id;
        self.node.propose_conf_change(context, cc)?;
        Ok(self.drain())
    }

    /// Starts an election at once (a lone voter that founds a mesh need not
    /// wait out an election timeout).
    pub fn campaign(&mut self) -> Step {
        let _ = self.node.campaign();
        self.drain()
    }

    /// Asks the leader to hand leadership to voter `to` (a graceful stop).
    pub fn transfer_leader(&mut self, to: u64) -> Step {
        self.node.transfer_leader(to);
        self.drain()
    }

    /// The latest snapshot's index and data (an encoded scheduler).
    pub fn snapshot(&self) -> (u64, &[u8]) {
        self.node.store().snapshot_data()
    }

    /// The event batches committed after the latest snapshot, up to the
    /// commit index, in log order: with [`Replica::snapshot`], how to
    /// rebuild the committed state.
    pub fn committed_since_snapshot(&self) -> Result<Vec<Committed>, ConsensusError> {
        let store = self.node.store();
        let entries = store.entries_from(store.snapshot_data().0 + 1, self.commit_index());
        let mut step = Step::default();
        read_batches(entries, &mut step);
        match step.unreadable.first() {
            Some(&index) => Err(ConsensusError::Unreadable { index }),
            None => Ok(step.committed),
        }
    }

    /// Compacts the log up to `index` (committed, and applied to the
    /// scheduler whose snapshot `data` is). False, changing nothing, for
    /// an index not committed or already compacted.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> bool {
        self.node.mut_store().compact(index, data)
    }

    /// True when the latest snapshot was taken before the configuration
    /// last changed: a fresh one is needed for replicas that joined since.
    pub fn snapshot_predates_members(&self) -> bool {
        self.node.store().snapshot_predates_members()
    }

    /// Bytes of entry data after the latest snapshot.
    pub fn log_bytes(&self) -> usize {
        self.node.store().bytes()
    }

    /// True when the latest snapshot carries no state (see
    /// [`LogStore::snapshot_is_placeholder`]).
    pub fn snapshot_is_placeholder(&self) -> bool {
        self.node.store().snapshot_is_placeholder()
    }

    /// True when this replica is the only one in its configuration.
    pub fn alone(&self) -> bool {
        let cs = self.node.store().conf_state();
        cs.voters == [self.id()] && cs.learners.is_empty()
    }

    /// Asks the leader for a snapshot (a replica whose own state cannot be
    /// rebuilt).
    pub fn request_snapshot(&mut self) -> Step {
        let _ = self.node.request_snapshot();
        self.drain()
    }

    /// The index of the last entry in the log.
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// Entries after the latest snapshot.
    pub fn log_len(&self) -> u64 {
        let store = self.node.store();
        store.last() - store.snapshot_data().0
    }

    /// One tick of time.
    pub fn tick(&mut self) -> Step {
        self.node.tick();
        self.drain()
    }

    /// A message from another replica. Stale or malformed messages are
    /// dropped by Raft itself.
    pub fn receive(&mut self, m: Message) -> Step {
        let _ = self.node.step(m);
        self.drain()
    }

    /// Proposes a batch of events (leader only), and returns the log index
    /// it was given with the step. Every replica, this one included, hands
    /// it out once committed: see [`Step::committed`].
    pub fn propose(&mut self, events: &[Event]) -> Result<(u64, Step), ConsensusError> {
        if self.leading().is_none() {
            return Err(ConsensusError::NotLeader);
        }
        let data = bincode::serde::encode_to_vec((EVENT_VERSION, events), crate::task::bincode_config())?;
        self.node.propose(vec![], data)?;
        let index = self.node.raft.raft_log.last_index();
        Ok((index, self.drain()))
    }

    /// Handles every `Ready` in the order raft-rs requires: messages that
    /// need no persistence go first; entries and the hard state are stored
    /// before the messages that depend on them; committed entries are
    /// decoded for the scheduler.
    fn drain(&mut self) -> Step {
        let mut step = Step::default();
        while self.node.has_ready() {
            let mut rd = self.node.ready();
            step.messages.extend(rd.take_messages());
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                step.installed = Some(snap.get_metadata().index);
                // Batches handed out before it are covered by it.
                step.committed.clear();
                self.node.mut_store().apply_snapshot(snap);
            }
            let committed = rd.take_committed_entries();
            self.decode(committed, &mut step);
            self.node.mut_store().append(rd.entries());
            if let Some(hs) = rd.hs() {
                self.node.mut_store().set_hard_state(hs.clone());
            }
            step.messages.extend(rd.take_persisted_messages());
            let mut light = self.node.advance(rd);
            if let Some(commit) = light.commit_index() {
                self.node.mut_store().set_commit(commit);
            }
            step.messages.extend(light.take_messages());
            let committed = light.take_committed_entries();
            self.decode(committed, &mut step);
            self.node.advance_apply();
        }
        // A snapshot counts as sent once handed out: if it is lost, the
        // follower refuses the next append and the leader sends it again.
        // (Left in raft-rs's snapshot state, the leader would wait forever
        // for a snapshot the network dropped.)
        for m in &step.messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.node.report_snapshot(m.to, SnapshotStatus::Finish);
            }
        }
        self.pin_election_timeout();
        step
    }

    /// raft-rs draws each election timeout from the thread's random
    /// generator; this replaces it with one drawn from (id, term), in the
    /// same range (`[election, 2 × election)` ticks), so runs repeat
    /// exactly while replicas still time out at different moments.
    fn pin_election_timeout(&mut self) {
        let e = self.election_ticks.max(1) as u64;
        let raft = &mut self.node.raft;
        let draw = crate::task::mix64(raft.id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ raft.term);
        raft.set_randomized_election_timeout((e + draw % e) as usize);
    }
}

impl Replica {
    /// Hands out committed entries: event batches, and membership changes,
    /// which are put in force here (raft-rs leaves that to the driver).
    fn decode(&mut self, entries: Vec<Entry>, step: &mut Step) {
        for e in &entries {
            if e.get_entry_type() == EntryType::EntryConfChange {
                self.apply_change(e, step);
            }
        }
        read_batches(&entries, step);
    }

    fn apply_change(&mut self, e: &Entry, step: &mut Step) {
        let Ok(cc) = ConfChange::parse_from_bytes(&e.data) else {
            return step.unreadable.push(e.index);
        };
        let Ok(cs) = self.node.apply_conf_change(&cc) else {
            return; // refused by raft-rs (removing the last voter): no change
        };
        self.node.mut_store().set_conf_state(cs);
        let change = match cc.get_change_type() {
            ConfChangeType::AddLearnerNode => MemberChange::AddLearner,
            ConfChangeType::AddNode => MemberChange::Promote,
            ConfChangeType::RemoveNode => MemberChange::Remove,
        };
        step.members.push(Membership {
            index: e.index,
            change,
            id: cc.node_id,
            context: e.context.to_vec(),
        });
    }
}

/// Decodes committed normal entries into event batches.
fn read_batches(entries: &[Entry], step: &mut Step) {
    for e in entries {
        if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
            continue; // a new leader's empty entry, or a configuration change
        }
        let cfg = crate::task::bincode_config().with_limit::<{ 64 << 20 }>();
        let decoded: Result<((u16, Vec<Event>), usize), _> = bincode::serde::decode_from_slice(&e.data, cfg);
        match decoded {
            Ok(((EVENT_VERSION, events), used)) if used == e.data.len() => step.committed.push(Committed {
                index: e.index,
                events,
            }),
            _ => step.unreadable.push(e.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::scheduler::{Scheduler, SchedulerConfig};
    use crate::task::{Task, TaskStatus};

    /// Three replicas, each with its own scheduler fed only by committed
    /// batches, and a network that delivers every message at once except
    /// to and from a replica that is down.
    struct Mesh {
        replicas: Vec<(Replica, Scheduler)>,
        down: Option<u64>,
    }

    impl Mesh {
        fn new() -> Self {
            let replicas = (1..=3)
                .map(|id| {
                    let cfg = ReplicaConfig {
                        id,
                        voters: vec![1, 2, 3],
                        ..ReplicaConfig::default()
                    };
                    let r = Replica::new(&cfg, Vec::new()).expect("valid config");
                    (r, Scheduler::new(SchedulerConfig::default()))
                })
                .collect();
            Mesh { replicas, down: None }
        }

        fn deliver(&mut self, mut queue: VecDeque<Message>) {
            while let Some(m) = queue.pop_front() {
                if self.down == Some(m.to) || self.down == Some(m.from) {
                    continue;
                }
                let (r, s) = self
                    .replicas
                    .iter_mut()
                    .find(|(r, _)| r.id() == m.to)
                    .expect("known");
                let step = r.receive(m);
                apply(s, &step);
                queue.extend(step.messages);
            }
        }

        fn ticks(&mut self, n: usize) {
            for _ in 0..n {
                let mut queue = VecDeque::new();
                for (r, s) in &mut self.replicas {
                    if self.down != Some(r.id()) {
                        let step = r.tick();
                        apply(s, &step);
                        queue.extend(step.messages);
                    }
                }
                self.deliver(queue);
            }
        }

        /// Every replica's scheduler holds these tasks, pending.
        fn all_pending<'a>(&self, tasks: impl IntoIterator<Item = &'a Task> + Clone) {
            for (r, s) in &self.replicas {
                for t in tasks.clone() {
                    assert_eq!(
                        s.status(&t.id),
                        Some(TaskStatus::Pending),
                        "replica {} task {}",
                        r.id(),
                        t.name
                    );
                }
            }
        }

        fn leader(&self) -> Option<u64> {
            let up = self.replicas.iter().filter(|(r, _)| self.down != Some(r.id()));
            let leaders: Vec<u64> = up
                .filter(|(r, _)| r.leading().is_some())
                .map(|(r, _)| r.id())
                .collect();
            assert!(
                leaders.len() <= 1,
                "two leaders among the replicas up: {leaders:?}"
            );
            leaders.first().copied()
        }

        fn propose(&mut self, id: u64, events: &[Event]) {
            let (r, s) = self
                .replicas
                .iter_mut()
                .find(|(r, _)| r.id() == id)
                .expect("known");
            let (_, step) = r.propose(events).expect("the leader proposes");
            apply(s, &step);
            self.deliver(step.messages.into());
        }
    }

    fn apply(s: &mut Scheduler, step: &Step) {
        assert!(step.unreadable.is_empty());
        for batch in &step.committed {
            for e in &batch.events {
                s.apply(e);
            }
        }
    }

    fn submitted(tasks: Vec<Task>) -> Event {
        Event::TasksSubmitted { at_ms: 1, tasks }
    }

    #[test]
    fn committed_batches_reach_every_scheduler_across_a_failover() {
        let mut mesh = Mesh::new();
        mesh.ticks(50);
        let first = mesh.leader().expect("a leader");
        let a = Task::new("a", "w", 1);
        mesh.propose(first, &[submitted(vec![a.clone()])]);
        // The leader goes down; the two others elect a new leader, which
        // commits a second batch.
        mesh.down = Some(first);
        mesh.ticks(60);
        let second = mesh.leader().expect("a new leader");
        assert_ne!(second, first);
        let b = Task::new("b", "w", 1);
        mesh.propose(second, &[submitted(vec![b.clone()])]);
        // The old leader comes back and catches up, without deposing it.
        mesh.down = None;
        mesh.ticks(30);
        assert_eq!(mesh.leader(), Some(second));
        mesh.all_pending([&a, &b]);
    }

    #[test]
    fn entries_proposed_while_appends_are_in_flight_go_together() {
        let mut mesh = Mesh::new();
        mesh.ticks(50);
        let leader = mesh.leader().expect("a leader");
        let tasks: Vec<Task> = (0..10).map(|i| Task::new(format!("t{i}"), "w", 1)).collect();
        // Ten proposals before any answer comes back.
        let mut sent = VecDeque::new();
        let (r, s) = mesh.replicas.iter_mut().find(|(r, _)| r.id() == leader).unwrap();
        for t in &tasks {
            let (_, step) = r
                .propose(&[submitted(vec![t.clone()])])
                .expect("the leader proposes");
            apply(s, &step);
            sent.extend(step.messages);
        }
        for follower in (1..=3).filter(|&id| id != leader) {
            let appends = sent
                .iter()
                .filter(|m| m.to == follower && m.get_msg_type() == raft::eraftpb::MessageType::MsgAppend)
                .count();
            assert!(
                (1..=APPENDS_IN_FLIGHT).contains(&appends),
                "{appends} appends to replica {follower} for 10 entries"
            );
        }
        // The rest follow in the appends that answers free.
        mesh.deliver(sent);
        mesh.all_pending(&tasks);
    }

    /// Who led after each tick, for the first 100 ticks.
    fn leaders_over_time() -> Vec<Option<u64>> {
        let mut mesh = Mesh::new();
        (0..100)
            .map(|_| {
                mesh.ticks(1);
                mesh.leader()
            })
            .collect()
    }

    #[test]
    fn elections_repeat_exactly() {
        let first = leaders_over_time();
        assert!(
            first.last().is_some_and(|l| l.is_some()),
            "a leader within 100 ticks"
        );
        for _ in 0..5 {
            assert_eq!(leaders_over_time(), first);
        }
    }

    #[test]
    fn only_the_leader_takes_proposals() {
        let mut mesh = Mesh::new();
        mesh.ticks(50);
        let leader = mesh.leader().expect("a leader");
        let (follower, _) = mesh.replicas.iter_mut().find(|(r, _)| r.id() != leader).unwrap();
        let err = follower.propose(&[submitted(vec![])]).unwrap_err();
        assert!(matches!(err, ConsensusError::NotLeader), "{err}");
        assert_eq!(follower.leader(), leader);
    }

    #[test]
    fn an_entry_of_another_version_is_reported_not_applied() {
        let mut r = Replica::new(&ReplicaConfig::default(), Vec::new()).unwrap();
        for _ in 0..30 {
            r.tick();
        }
        assert!(r.leading().is_some(), "a lone voter leads");
        let data = bincode::serde::encode_to_vec(
            (EVENT_VERSION + 1, Vec::<Event>::new()),
            crate::task::bincode_config(),
        )
        .unwrap();
        r.node.propose(vec![], data).unwrap();
        let step = r.drain();
        assert!(step.committed.is_empty());
        assert_eq!(step.unreadable.len(), 1);
    }
}
