//! The replicated scheduler: a [`Replica`] and the [`Scheduler`] it feeds,
//! driven together. Pure: inputs, Raft messages and the current time in;
//! messages, released outputs and changes of office out.
//!
//! - **Following.** The scheduler applies committed batches only, so it is
//!   always the committed ledger, ready to take over. Snapshots of it
//!   compact the log.
//! - **Taking office.** A replica that leads and has committed an entry of
//!   its own term (so every earlier entry is committed and applied) makes
//!   its scheduler take office ([`Scheduler::take_office`]): waiting tasks
//!   are auctioned again and held attempts get fresh leases.
//! - **Admin.** Inputs are handled at once: the scheduler decides and
//!   applies its events, and what it answers is *held*. [`Ledger::flush`]
//!   proposes the events gathered since the last flush as one entry; the
//!   outputs that came with them are released once that entry is
//!   committed. Nothing leaves the admin (an acknowledgement, an award, a
//!   final report) before the decision behind it is in the ledger of a
//!   majority of voters.
//! - **Leaving office.** A leader that loses its term drops what it held
//!   and rebuilds its scheduler from the snapshot and the committed
//!   entries: decisions not committed are undone here as they are on the
//!   other replicas, and the new admin may or may not have them.

use std::collections::VecDeque;
use std::time::Duration;

use raft::eraftpb::Message;

use super::{Committed, ConsensusError, Replica, ReplicaConfig, Step};
use crate::scheduler::{Event, Input, Output, Scheduler, SchedulerConfig};

/// How a [`Ledger`] is set up.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The Raft replica (id, initial voters, ticks).
    pub replica: ReplicaConfig,
    /// The scheduler's settings, used while this replica is admin.
    pub scheduler: SchedulerConfig,
    /// Log entries after the latest snapshot before a new one is taken.
    /// Default 1,024.
    pub snapshot_every: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            replica: ReplicaConfig::default(),
            scheduler: SchedulerConfig::default(),
            snapshot_every: 1024,
        }
    }
}

/// A change of this replica's office.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfficeChange {
    /// This replica is now the admin, for `term`.
    Took {
        /// The Raft term.
        term: u64,
    },
    /// This replica is no longer the admin: every call it held is
    /// unanswered, and the driver tells its callers so.
    Left,
}

/// What the driver carries out after a call.
#[derive(Debug, Default)]
pub struct LedgerStep {
    /// Raft messages for other replicas (`Message::to`).
    pub messages: Vec<Message>,
    /// Scheduler outputs whose events are committed, in order.
    pub outputs: Vec<Output>,
    /// A change of office, if one happened.
    pub office: Option<OfficeChange>,
}

/// See the module documentation.
pub struct Ledger {
    replica: Replica,
    sched: Scheduler,
    /// The highest log index the scheduler reflects.
    applied: u64,
    /// The term this replica is admin for.
    admin: Option<u64>,
    /// Events decided since the last flush, and the outputs that came with
    /// them.
    unproposed: Vec<Event>,
    unreleased: Vec<Output>,
    /// Outputs waiting for the entry at their index to commit.
    held: VecDeque<(u64, Vec<Output>)>,
    snapshot_every: u64,
    /// Set when the committed log cannot be read: this replica stops
    /// applying and never takes office.
    broken: Option<ConsensusError>,
    /// Snapshots from the leader restored so far.
    installed: u64,
}

impl Ledger {
    /// A replica of a new mesh (`cfg.replica.voters` named) or of one it
    /// joins (no voters: it learns them from the leader).
    pub fn new(cfg: LedgerConfig) -> Result<Self, ConsensusError> {
        let replica = Replica::new(&cfg.replica)?;
        let mut sched = Scheduler::new(cfg.scheduler);
        sched.record_events();
        Ok(Ledger {
            replica,
            sched,
            applied: 0,
            admin: None,
            unproposed: Vec::new(),
            unreleased: Vec::new(),
            held: VecDeque::new(),
            snapshot_every: cfg.snapshot_every.max(1),
            broken: None,
            installed: 0,
        })
    }

    /// `Some(term)` while this replica is the admin.
    pub fn admin(&self) -> Option<u64> {
        self.admin
    }

    /// The Raft replica, for what it knows (leader, term, voters).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The scheduler: the committed ledger on a follower, the admin's
    /// (committed and pending decisions) on the admin.
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// The scheduler, for the driver's bookkeeping that is not a decision
    /// (`watch`, `unwatch`).
    pub fn scheduler_mut(&mut self) -> &mut Scheduler {
        &mut self.sched
    }

    /// The highest log index the scheduler reflects; on the admin, its
    /// pending decisions included. An answer drawn from the scheduler's
    /// state (a report acknowledged, a status) is safe to give once
    /// [`Ledger::committed`] holds for it.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// True once the entry at `index` is committed.
    pub fn committed(&self, index: u64) -> bool {
        self.replica.commit_index() >= index
    }

    /// How many snapshots from the leader this replica restored (it fell
    /// behind the leader's compacted log).
    pub fn snapshots_installed(&self) -> u64 {
        self.installed
    }

    /// Why this replica stopped following, if it did.
    pub fn broken(&self) -> Option<&ConsensusError> {
        self.broken.as_ref()
    }

    /// When the admin's scheduler must next see [`Input::Tick`].
    pub fn next_deadline(&self) -> Option<Duration> {
        self.admin.and(self.sched.next_deadline())
    }

    /// One Raft tick (the driver's fixed interval) at wall-clock `now`.
    pub fn tick(&mut self, now: Duration) -> LedgerStep {
        let step = self.replica.tick();
        self.absorb(step, now)
    }

    /// A Raft message from another replica.
    pub fn receive(&mut self, m: Message, now: Duration) -> LedgerStep {
        let step = self.replica.receive(m);
        self.absorb(step, now)
    }

    /// Feeds the admin's scheduler one input. Its outputs are held until
    /// the next [`Ledger::flush`] has committed the events behind them.
    /// Fails with [`ConsensusError::NotLeader`] unless this replica is the
    /// admin.
    pub fn handle(&mut self, input: Input, now: Duration) -> Result<(), ConsensusError> {
        if self.admin.is_none() {
            return Err(ConsensusError::NotLeader);
        }
        self.sched.handle(input, now, &mut self.unreleased);
        self.unproposed.extend(self.sched.take_events());
        Ok(())
    }

    /// Proposes the events gathered since the last flush as one entry, and
    /// releases what is committed. Outputs that came without events (a
    /// refused batch, a status answer) wait for the entries before them,
    /// since they may tell of decisions not yet committed.
    pub fn flush(&mut self, now: Duration) -> LedgerStep {
        if self.admin.is_none() {
            return LedgerStep::default();
        }
        let outputs = std::mem::take(&mut self.unreleased);
        if self.unproposed.is_empty() {
            match self.held.back_mut() {
                Some((_, later)) => later.extend(outputs),
                None => {
                    return LedgerStep {
                        outputs,
                        ..LedgerStep::default()
                    };
                }
            }
            return LedgerStep::default();
        }
        let events = std::mem::take(&mut self.unproposed);
        match self.replica.propose(&events) {
            Ok((index, step)) => {
                self.applied = index;
                self.held.push_back((index, outputs));
                self.absorb(step, now)
            }
            // Leadership ended since the last call: what was decided is
            // undone with the rest.
            Err(_) => self.absorb(Step::default(), now),
        }
    }

    /// Carries out one replica step: committed batches are applied (a
    /// follower's) or confirm the admin's own decisions, held outputs
    /// whose entries committed are released, and the office follows the
    /// replica's role.
    fn absorb(&mut self, step: Step, now: Duration) -> LedgerStep {
        let mut out = LedgerStep {
            messages: step.messages,
            ..LedgerStep::default()
        };
        if let Some(index) = step.installed {
            self.restore_snapshot(index);
        }
        if let Some(&index) = step.unreadable.first() {
            self.break_off(ConsensusError::Unreadable { index });
        }
        for batch in step.committed {
            self.apply_committed(batch);
        }
        // Entries without events (a new leader's empty entry) count too.
        self.applied = self.applied.max(self.replica.applied_index());
        let commit = self.replica.commit_index();
        while self.held.front().is_some_and(|(i, _)| *i <= commit) {
            let (_, outputs) = self.held.pop_front().expect("checked");
            out.outputs.extend(outputs);
        }
        if let Some(term) = self.admin {
            if self.replica.leading() != Some(term) {
                // What committed was released above; the rest is undone.
                self.leave_office();
                out.office = Some(OfficeChange::Left);
            }
        } else if self.replica.ready_to_lead() && self.broken.is_none() && self.applied >= commit {
            self.sched.take_office(now);
            let term = self.replica.term();
            self.admin = Some(term);
            out.office = Some(OfficeChange::Took { term });
        }
        self.maybe_compact();
        out
    }

    /// Applies a committed batch, unless the admin's scheduler already
    /// reflects it (its own decision).
    fn apply_committed(&mut self, batch: Committed) {
        if batch.index <= self.applied || self.broken.is_some() {
            return;
        }
        for e in &batch.events {
            self.sched.apply(e);
        }
        if self.admin.is_none() {
            self.sched.forget_step();
        }
        self.applied = batch.index;
    }

    /// Replaces the scheduler by the snapshot the replica now holds.
    fn restore_snapshot(&mut self, index: u64) {
        let (_, data) = self.replica.snapshot();
        match self.sched.restore(data) {
            Ok(()) => {
                self.applied = index;
                self.installed += 1;
            }
            Err(e) => self.break_off(ConsensusError::Snapshot(e)),
        }
    }

    /// Drops the admin's pending work and rebuilds the committed ledger.
    fn leave_office(&mut self) {
        self.admin = None;
        self.held.clear();
        self.unproposed.clear();
        self.unreleased.clear();
        self.sched.take_events();
        let (index, data) = self.replica.snapshot();
        let restored = if data.is_empty() {
            self.sched.reset();
            Ok(())
        } else {
            self.sched.restore(data)
        };
        if let Err(e) = restored {
            return self.break_off(ConsensusError::Snapshot(e));
        }
        self.applied = index;
        match self.replica.committed_since_snapshot() {
            Ok(batches) => batches.into_iter().for_each(|b| self.apply_committed(b)),
            Err(e) => return self.break_off(e),
        }
        self.applied = self.applied.max(self.replica.applied_index());
    }

    fn break_off(&mut self, e: ConsensusError) {
        tracing::error!(error = %e, "this replica cannot follow the ledger");
        self.broken.get_or_insert(e);
    }

    /// Takes a snapshot once enough entries follow the latest one, when the
    /// scheduler is exactly the committed ledger (a follower, or an admin
    /// with nothing pending).
    fn maybe_compact(&mut self) {
        let (snap, _) = self.replica.snapshot();
        let settled = self.held.is_empty() && self.unproposed.is_empty();
        if self.broken.is_some()
            || !settled
            || self.applied > self.replica.commit_index()
            || self.applied < snap + self.snapshot_every
        {
            return;
        }
        match self.sched.snapshot() {
            Ok(data) => {
                self.replica.compact(self.applied, data);
            }
            Err(e) => tracing::warn!(error = %e, "cannot take a snapshot"),
        }
    }
}
