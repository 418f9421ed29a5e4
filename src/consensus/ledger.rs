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
//!   majority of voters — but announcements, which only invite bids.
//! - **Leaving office.** A leader that loses its term drops what it held
//!   and rebuilds its scheduler from the snapshot and the committed
//!   entries: decisions not committed are undone here as they are on the
//!   other replicas, and the new admin may or may not have them.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};

use super::{Committed, ConsensusError, MemberChange, Replica, ReplicaConfig, Step};
use crate::scheduler::{Event, Input, Observation, Output, Scheduler, SchedulerConfig};

/// Bytes of log after the latest snapshot that make a new one due, however
/// few the entries: 64 MiB.
pub const MAX_LOG_BYTES: usize = 64 << 20;

/// How a [`Ledger`] is set up.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The Raft replica (id, initial voters, ticks).
    pub replica: ReplicaConfig,
    /// The scheduler's settings, used while this replica is admin.
    pub scheduler: SchedulerConfig,
    /// Log entries after the latest snapshot before a new one is taken,
    /// once their bytes are also half the latest snapshot's. Default
    /// 1,024.
    pub snapshot_every: u64,
    /// How many voters the admin keeps when enough replicas have joined
    /// (the others follow as learners). Default 3: one voter may fail.
    pub voters: usize,
    /// A voter not heard from for this long is replaced by a learner that
    /// is up to date, if there is one. Default 20 s.
    pub voter_timeout: Duration,
    /// A replica's preference to be admin (0–255; higher is preferred),
    /// read from what it joined with (its membership context). The admin
    /// promotes the preferred learners first, hands its office to the
    /// preferred voter when it stops, and hands it to a voter preferred
    /// over itself once that voter holds the whole log. Default: 0 for
    /// all.
    pub priority_of: fn(&[u8]) -> u8,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            replica: ReplicaConfig::default(),
            scheduler: SchedulerConfig::default(),
            snapshot_every: 1024,
            voters: 3,
            voter_timeout: Duration::from_secs(20),
            priority_of: |_| 0,
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

impl LedgerStep {
    /// Appends a later step's work to this one.
    pub fn merge(&mut self, later: LedgerStep) {
        self.messages.extend(later.messages);
        self.outputs.extend(later.outputs);
        self.office = later.office.or(self.office);
    }
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
    /// The replicas in the configuration, with what the driver attached
    /// when each joined (its address): replicated with the log.
    members: BTreeMap<u64, Vec<u8>>,
    /// When the admin last heard from each replica.
    heard: BTreeMap<u64, Duration>,
    target_voters: usize,
    voter_timeout: Duration,
    /// Members whose node came back as a new replica (a restart without
    /// its log): replaced as soon as a learner can take their place.
    superseded_members: std::collections::BTreeSet<u64>,
    /// Ledgers this one replaced (see [`Ledger::recover`]), replicated in
    /// its snapshots.
    superseded: Vec<u64>,
    /// The log is written to disk: every snapshot carries the state, even
    /// a lone replica's (it is read back on a restart).
    durable: bool,
    priority_of: fn(&[u8]) -> u8,
    /// When the admin last handed its office to a preferred voter.
    preferred_at: Option<Duration>,
    /// Replicas that asked to join while another change was committing,
    /// oldest first, with what they joined with and when they asked: added
    /// one per tick once no change is under way (at most
    /// [`WAITING_JOINS`], each for `voter_timeout`).
    pub(super) waiting_joins: VecDeque<(u64, Vec<u8>, Duration)>,
    /// What the admin's decisions were, gathered for metrics while
    /// [`Ledger::observe`] is on (`None`: off, nothing is gathered).
    observed: Option<Vec<Observation>>,
}

/// Joins an admin keeps waiting while another membership change commits;
/// past this the oldest is dropped (its replica asks again).
pub(super) const WAITING_JOINS: usize = 64;

/// A snapshot's data: the members and the scheduler's snapshot.
#[derive(Serialize, Deserialize)]
struct Image {
    members: Vec<(u64, Vec<u8>)>,
    #[serde(with = "serde_bytes")]
    scheduler: Vec<u8>,
    /// Ledgers this one replaced (see [`Ledger::recover`]).
    superseded: Vec<u64>,
}

/// A snapshot's data for these members, scheduler and superseded ledgers.
fn encode_image(
    members: &BTreeMap<u64, Vec<u8>>,
    sched: &Scheduler,
    superseded: &[u64],
) -> Result<Vec<u8>, crate::scheduler::SnapshotError> {
    let scheduler = sched.snapshot()?;
    let members = members.iter().map(|(id, c)| (*id, c.clone())).collect();
    let image = Image {
        members,
        scheduler,
        superseded: superseded.to_vec(),
    };
    bincode::serde::encode_to_vec(image, crate::task::bincode_config())
        .map_err(crate::scheduler::SnapshotError::Encode)
}

impl Image {
    fn decode(bytes: &[u8]) -> Result<Image, ConsensusError> {
        let cfg = crate::task::bincode_config().with_limit::<{ crate::scheduler::MAX_SNAPSHOT }>();
        use crate::scheduler::SnapshotError;
        match bincode::serde::decode_from_slice(bytes, cfg) {
            Ok((image, used)) if used == bytes.len() => Ok(image),
            Ok((_, used)) => Err(ConsensusError::Snapshot(SnapshotError::Trailing(
                bytes.len() - used,
            ))),
            Err(e) => Err(ConsensusError::Snapshot(SnapshotError::Decode(e))),
        }
    }
}

impl Ledger {
    /// A replica of a new mesh (`cfg.replica.voters` named) or of one it
    /// joins (no voters: it learns them from the leader).
    pub fn new(cfg: LedgerConfig) -> Result<Self, ConsensusError> {
        Self::with_members(cfg, BTreeMap::new())
    }

    /// A replica whose first snapshot (when it names voters) holds these
    /// members.
    fn with_members(cfg: LedgerConfig, members: BTreeMap<u64, Vec<u8>>) -> Result<Self, ConsensusError> {
        let mut sched = Scheduler::new(cfg.scheduler.clone());
        sched.record_events();
        Self::with_state(cfg, members, sched, Vec::new())
    }

    /// A replica whose first snapshot (when it names voters) holds these
    /// members and this scheduler's state.
    fn with_state(
        cfg: LedgerConfig,
        members: BTreeMap<u64, Vec<u8>>,
        sched: Scheduler,
        superseded: Vec<u64>,
    ) -> Result<Self, ConsensusError> {
        let image = encode_image(&members, &sched, &superseded);
        let replica = Replica::new(&cfg.replica, image.map_err(ConsensusError::Snapshot)?)?;
        let mut ledger = Self::assemble(&cfg, replica, sched, members);
        ledger.superseded = superseded;
        Ok(ledger)
    }

    /// A replica over a log read back from disk (a durable ledger's node
    /// restarted): the scheduler is restored from the log's snapshot and
    /// the entries committed after it are applied again; the step carries
    /// what that produced. It leads again only by winning an election.
    /// Fails when the snapshot cannot be restored or an entry read.
    pub fn reopen(
        cfg: LedgerConfig,
        store: super::LogStore,
        now: Duration,
    ) -> Result<(Self, LedgerStep), ConsensusError> {
        let (index, data) = store.snapshot_data();
        let image = Image::decode(data)?;
        let mut sched = Scheduler::new(cfg.scheduler.clone());
        sched.record_events();
        sched
            .restore(&image.scheduler)
            .map_err(ConsensusError::Snapshot)?;
        let members = image.members.into_iter().collect();
        let (replica, step) = Replica::reopen(&cfg.replica, store)?;
        let mut ledger = Self::assemble(&cfg, replica, sched, members);
        ledger.superseded = image.superseded;
        ledger.applied = index;
        let step = ledger.absorb(step, now);
        match ledger.broken.take() {
            Some(e) => Err(e),
            None => Ok((ledger, step)),
        }
    }

    fn assemble(
        cfg: &LedgerConfig,
        replica: Replica,
        sched: Scheduler,
        members: BTreeMap<u64, Vec<u8>>,
    ) -> Self {
        let applied = replica.applied_index();
        Ledger {
            replica,
            sched,
            applied,
            admin: None,
            unproposed: Vec::new(),
            unreleased: Vec::new(),
            observed: None,
            held: VecDeque::new(),
            snapshot_every: cfg.snapshot_every.max(1),
            broken: None,
            installed: 0,
            members,
            heard: BTreeMap::new(),
            target_voters: cfg.voters.max(1),
            voter_timeout: cfg.voter_timeout,
            superseded_members: std::collections::BTreeSet::new(),
            durable: cfg.replica.durable,
            superseded: Vec::new(),
            priority_of: cfg.priority_of,
            preferred_at: None,
            waiting_joins: VecDeque::new(),
        }
    }

    /// What the log changed since the last call, for a durable ledger
    /// ([`super::ReplicaConfig::durable`]): the driver writes it to disk
    /// before it carries out the step (its messages and outputs).
    pub fn take_changes(&mut self) -> super::LogChanges {
        self.replica.take_changes()
    }

    /// A replica that founds a mesh as its only voter and leads it at once
    /// (`context` is its own address, as [`Ledger::join`] takes it).
    pub fn found(
        mut cfg: LedgerConfig,
        context: Vec<u8>,
        now: Duration,
    ) -> Result<(Self, LedgerStep), ConsensusError> {
        cfg.replica.voters = vec![cfg.replica.id];
        let members = BTreeMap::from([(cfg.replica.id, context)]);
        let mut ledger = Ledger::with_members(cfg, members)?;
        let step = ledger.replica.campaign();
        let step = ledger.absorb(step, now);
        Ok((ledger, step))
    }

    /// The operator's way out after a majority of voters is lost for good:
    /// a new ledger whose only voter is this replica (`cfg.replica.id`,
    /// `context` its address) and whose first snapshot is everything the
    /// log kept on disk had committed. It leads at once; other nodes join
    /// it as they would a new ledger. Entries this replica had not seen
    /// committed are not in it: what the lost voters committed after this
    /// replica last heard from them is gone. The new ledger records that it
    /// supersedes ledger `old_id` (and those the old one superseded): see
    /// [`Ledger::superseded`]. Fails as [`Ledger::reopen`].
    pub fn recover(
        mut cfg: LedgerConfig,
        store: super::LogStore,
        context: Vec<u8>,
        old_id: u64,
        now: Duration,
    ) -> Result<(Self, LedgerStep), ConsensusError> {
        let (old, _) = Self::reopen(cfg.clone(), store, now)?;
        cfg.replica.voters = vec![cfg.replica.id];
        let members = BTreeMap::from([(cfg.replica.id, context)]);
        let mut superseded = old.superseded;
        superseded.push(old_id);
        let mut ledger = Self::with_state(cfg, members, old.sched, superseded)?;
        let step = ledger.replica.campaign();
        let step = ledger.absorb(step, now);
        Ok((ledger, step))
    }

    /// The ledgers (by the driver's ids) this one superseded when an
    /// operator recovered it: replicas of those must follow this one, not
    /// lead their own.
    pub fn superseded(&self) -> &[u64] {
        &self.superseded
    }

    /// The replicas in the configuration and what each joined with.
    pub fn members(&self) -> &BTreeMap<u64, Vec<u8>> {
        &self.members
    }

    /// Admits a replica that asks to join (admin only): it follows the log
    /// as a learner, and is promoted to voter while fewer than the wanted
    /// voters are up. Nothing happens for a member. While another change
    /// commits (Raft makes one at a time), the join waits and is added by
    /// a later [`Ledger::tick`]; a replica that asks again meanwhile is not
    /// queued twice. Fails with [`ConsensusError::NotLeader`] unless this
    /// replica is the admin.
    pub fn join(&mut self, id: u64, context: Vec<u8>, now: Duration) -> Result<LedgerStep, ConsensusError> {
        if self.admin.is_none() {
            return Err(ConsensusError::NotLeader);
        }
        if id == 0 || self.replica.voters().contains(&id) || self.replica.learners().contains(&id) {
            return Ok(LedgerStep::default());
        }
        self.waiting_joins.retain(|(waiting, ..)| *waiting != id);
        match self
            .replica
            .propose_change(MemberChange::AddLearner, id, context.clone())
        {
            Ok(step) => {
                self.heard.insert(id, now);
                Ok(self.absorb(step, now))
            }
            Err(ConsensusError::ChangePending) => {
                if self.waiting_joins.len() >= WAITING_JOINS {
                    self.waiting_joins.pop_front();
                }
                self.waiting_joins.push_back((id, context, now));
                Ok(LedgerStep::default())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts handing the admin's office to the voter that holds the most
    /// of the log (a graceful stop). `None` when there is no other voter:
    /// nothing to hand over to.
    pub fn hand_over(&mut self, now: Duration) -> Option<LedgerStep> {
        self.admin?;
        let me = self.replica.id();
        let last = self.replica.last_index();
        // One that holds the whole log first, then the preferred, then
        // the most up to date.
        let to = self
            .replica
            .voters()
            .into_iter()
            .filter(|&v| v != me)
            .max_by_key(|&v| {
                (
                    self.replica.matched(v) >= last,
                    self.priority(v),
                    self.replica.matched(v),
                )
            })?;
        let step = self.replica.transfer_leader(to);
        Some(self.absorb(step, now))
    }

    /// Marks member `id` as superseded: its node came back as another
    /// replica (restarted without its log, under a new Raft id), so the old
    /// one will never answer again. It is replaced at once instead of after
    /// `voter_timeout`.
    pub fn supersede(&mut self, id: u64) {
        if id != self.replica.id() {
            self.superseded_members.insert(id);
        }
    }

    /// The admin's care of the configuration, once per tick: a voter
    /// silent for `voter_timeout` is removed when an up-to-date learner can
    /// take its place, and up-to-date learners are promoted while voters
    /// are fewer than wanted. One change at a time.
    fn tend_members(&mut self, now: Duration) -> Option<Step> {
        self.admin?;
        let me = self.replica.id();
        let voters = self.replica.voters();
        let commit = self.replica.commit_index();
        let live = |id: &u64| self.live(*id, now);
        let ready = self
            .replica
            .learners()
            .into_iter()
            .filter(|id| live(id) && self.replica.matched(*id) >= commit)
            .max_by_key(|id| (self.priority(*id), std::cmp::Reverse(*id)));
        let dead = voters
            .iter()
            .copied()
            .find(|id| *id != me && (!live(id) || self.superseded_members.contains(id)));
        let (change, id) = match (dead, ready) {
            (Some(dead), Some(_)) => (MemberChange::Remove, dead),
            (_, Some(learner)) if voters.len() < self.target_voters => (MemberChange::Promote, learner),
            _ => return self.admit_waiting(now),
        };
        let context = self.members.get(&id).cloned().unwrap_or_default();
        self.replica.propose_change(change, id, context).ok()
    }

    /// Adds the oldest waiting join as a learner, once no other change is
    /// under way; joins waiting longer than `voter_timeout` are dropped
    /// (their replica stopped asking, or asks again).
    fn admit_waiting(&mut self, now: Duration) -> Option<Step> {
        let timeout = self.voter_timeout;
        let (voters, learners) = (self.replica.voters(), self.replica.learners());
        self.waiting_joins.retain(|&(id, _, asked)| {
            now.saturating_sub(asked) < timeout && !voters.contains(&id) && !learners.contains(&id)
        });
        let (id, context, _) = self.waiting_joins.front().cloned()?;
        let step = self
            .replica
            .propose_change(MemberChange::AddLearner, id, context)
            .ok()?;
        self.waiting_joins.pop_front();
        self.heard.insert(id, now);
        Some(step)
    }

    /// True when the admin heard from replica `id` within `voter_timeout`.
    fn live(&self, id: u64, now: Duration) -> bool {
        self.heard
            .get(&id)
            .is_some_and(|&t| now.saturating_sub(t) < self.voter_timeout)
    }

    /// A member's preference to be admin (see [`LedgerConfig::priority_of`]).
    fn priority(&self, id: u64) -> u8 {
        self.members.get(&id).map_or(0, |c| (self.priority_of)(c))
    }

    /// The admin hands its office to a live voter preferred over itself
    /// that holds the whole log, at most once every `voter_timeout`.
    fn prefer(&mut self, now: Duration) -> Option<Step> {
        self.admin?;
        if self
            .preferred_at
            .is_some_and(|t| now.saturating_sub(t) < self.voter_timeout)
        {
            return None;
        }
        let me = self.replica.id();
        let (mine, last) = (self.priority(me), self.replica.last_index());
        let to = self
            .replica
            .voters()
            .into_iter()
            .filter(|v| *v != me && self.live(*v, now) && self.replica.matched(*v) >= last)
            .filter(|v| self.priority(*v) > mine)
            .max_by_key(|v| self.priority(*v))?;
        self.preferred_at = Some(now);
        Some(self.replica.transfer_leader(to))
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

    /// True while the admin holds decisions or outputs that the next
    /// [`Ledger::flush`] proposes or releases: [`Ledger::applied`] does not
    /// count them yet.
    pub fn unflushed(&self) -> bool {
        self.admin.is_some() && (!self.unproposed.is_empty() || !self.unreleased.is_empty())
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
        let mut out = self.absorb(step, now);
        if let Some(step) = self.tend_members(now) {
            let more = self.absorb(step, now);
            out.merge(more);
        }
        if let Some(step) = self.prefer(now) {
            let more = self.absorb(step, now);
            out.merge(more);
        }
        out
    }

    /// A Raft message from another replica.
    pub fn receive(&mut self, m: Message, now: Duration) -> LedgerStep {
        self.heard.insert(m.from, now);
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
        let decided = self.unproposed.len();
        self.unproposed.extend(self.sched.take_events());
        if let Some(observed) = self.observed.as_mut() {
            for event in &self.unproposed[decided..] {
                self.sched.observe(event, observed);
            }
        }
        Ok(())
    }

    /// Turns gathering [`Observation`]s of the admin's decisions on or off
    /// (off by default: it costs a few allocations per decision).
    pub fn observe(&mut self, on: bool) {
        match (on, self.observed.is_some()) {
            (true, false) => self.observed = Some(Vec::new()),
            (false, true) => self.observed = None,
            _ => {}
        }
    }

    /// The observations gathered since the last call (see
    /// [`Ledger::observe`]).
    pub fn take_observations(&mut self) -> Vec<Observation> {
        self.observed.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Proposes the events gathered since the last flush as one entry, and
    /// releases what is committed. Outputs that came without events (a
    /// refused batch, a cancellation's answer) wait for the entries before
    /// them, since they may tell of decisions not yet committed.
    /// Announcements are released at once.
    pub fn flush(&mut self, now: Duration) -> LedgerStep {
        if self.admin.is_none() {
            return LedgerStep::default();
        }
        // Announcements go at once: a bid commits nothing, and a task whose
        // submission is undone is simply not awarded.
        let (announce, outputs): (Vec<Output>, Vec<Output>) = std::mem::take(&mut self.unreleased)
            .into_iter()
            .partition(|o| matches!(o, Output::Announce(_)));
        let mut step = if self.unproposed.is_empty() {
            match self.held.back_mut() {
                Some((_, later)) => {
                    later.extend(outputs);
                    LedgerStep::default()
                }
                None => LedgerStep {
                    outputs,
                    ..LedgerStep::default()
                },
            }
        } else {
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
        };
        if self.admin.is_some() {
            step.outputs.splice(0..0, announce);
        }
        step
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
        for m in step.members {
            match m.change {
                MemberChange::Remove => {
                    self.members.remove(&m.id);
                }
                _ if m.context.is_empty() => {}
                _ => {
                    self.members.insert(m.id, m.context);
                }
            }
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
            // Every member starts with a whole timeout to be heard from.
            self.heard = self.members.keys().map(|&id| (id, now)).collect();
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
        let restored = Image::decode(data).and_then(|image| {
            self.members = image.members.into_iter().collect();
            self.superseded = image.superseded;
            self.sched
                .restore(&image.scheduler)
                .map_err(ConsensusError::Snapshot)
        });
        match restored {
            Ok(()) => {
                self.applied = index;
                self.installed += 1;
            }
            Err(e) => self.break_off(e),
        }
    }

    /// Drops the admin's pending work and rebuilds the committed ledger.
    fn leave_office(&mut self) {
        self.admin = None;
        self.held.clear();
        self.waiting_joins.clear();
        self.unproposed.clear();
        self.unreleased.clear();
        self.sched.take_events();
        let (index, data) = self.replica.snapshot();
        if self.replica.snapshot_is_placeholder() {
            // Compacted while alone, and the configuration grew and lost
            // this leader before a real snapshot was taken: nothing to
            // rebuild the committed state from. Never seen; refused loudly.
            let why = crate::scheduler::SnapshotError::Inconsistent("no state behind the compacted log");
            return self.break_off(ConsensusError::Snapshot(why));
        }
        let restored = if data.is_empty() {
            self.sched.reset();
            Ok(())
        } else {
            Image::decode(data).and_then(|image| {
                self.sched
                    .restore(&image.scheduler)
                    .map_err(ConsensusError::Snapshot)
            })
        };
        if let Err(e) = restored {
            return self.break_off(e);
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

    /// Takes a snapshot once enough entries follow the latest one and
    /// their bytes reach half the latest snapshot's (so that encoding the
    /// whole state, which grows with the tasks held, costs each entry's
    /// bytes a bounded amount however large the state is), or the
    /// configuration changed since it (a replica that joined since needs a
    /// snapshot that names it), when the scheduler is exactly the
    /// committed ledger (a follower, or an admin with nothing pending).
    fn maybe_compact(&mut self) {
        let (snap, data) = self.replica.snapshot();
        let settled = self.held.is_empty() && self.unproposed.is_empty();
        let log_bytes = self.replica.log_bytes();
        let due = (self.applied >= snap + self.snapshot_every && log_bytes >= data.len() / 2)
            || log_bytes >= MAX_LOG_BYTES
            || (self.replica.snapshot_predates_members() && self.applied > snap);
        if self.broken.is_some() || !settled || self.applied > self.replica.commit_index() || !due {
            return;
        }
        if self.replica.alone() && !self.durable {
            // Nobody can ask for this replica's state: drop the log without
            // encoding it. A replica that joins later makes the
            // configuration change, and a real snapshot is taken then.
            self.replica.compact(self.applied, Vec::new());
            return;
        }
        match encode_image(&self.members, &self.sched, &self.superseded) {
            Ok(data) => {
                self.replica.compact(self.applied, data);
            }
            Err(e) => tracing::warn!(error = %e, "cannot take a snapshot"),
        }
    }
}
