//! The admin's brain, as a pure, event-sourced state machine.
//!
//! The scheduler owns the submitted tasks and their dependency DAG, the
//! registered workers and their load, and every open auction. It is driven by
//! [`Input`]s together with the current wall-clock time and answers with
//! [`Output`]s; it never reads a clock, touches the network or draws a
//! random number, so every run is reproducible. Every change to its durable
//! state is an [`Event`] applied by [`Scheduler::apply`] (see [`events`]).
//!
//! A task's life:
//!
//! 1. **Submitted** in a batch validated whole (ids, dependencies, cycles,
//!    sizes, numeric ranges; see [`dag`]), defaults resolved. It waits while
//!    dependencies run.
//! 2. **Ready** once its trigger rule fires (by default: every dependency
//!    completed). Ready tasks of a role queue by priority with ageing. A task
//!    no registered worker could take is *parked* until one registers or its
//!    capable-worker deadline passes.
//! 3. **Announced** while capable workers have free slots; bids arrive; the
//!    auction closes when every worker of the role answered or the bid
//!    window ends; the [`AwardPolicy`] picks the winner.
//! 4. **Assigned**, then **Running** under a *lease* that the worker's node
//!    renews. A lost lease, the node leaving or the execution timeout ends
//!    the attempt; a lost attempt is awarded again (up to `max_attempts`), a
//!    retryable failure is retried after an exponential backoff (up to
//!    `retries`), preferring another worker. A stale attempt's report is
//!    ignored: one recorded result per task.
//! 5. **Finished**: completed, failed, cancelled or skipped; dependents
//!    follow their trigger rules. Finished tasks are evicted after their
//!    retention, once no unfinished dependent needs their output.
//!
//! Where each part lives: this file holds the inputs, outputs and queries;
//! `events` the ledger and `apply`; `state` the records; `lifecycle`
//! submissions, answers, reports, retries, cancellation and timers; `queue`
//! readiness, priorities and parking; `bidding` the auctions with
//! [`auction`] holding the award policies; `workers` the registry, leases
//! and slot accounting; `retention` eviction.

pub mod auction;
mod bidding;
pub mod dag;
pub mod events;
mod lifecycle;
mod messages;
mod queue;
mod retention;
mod state;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

pub use auction::{AwardPolicy, BestFit, Candidate, Lot};
pub use dag::SubmitError;
pub use events::{AttemptEnd, BidSeen, Event, TaskEnd, EVENT_VERSION};
pub use messages::{Announcement, Assignment, Bid, DepOutput, Failure, Report};

use crate::task::{
    AttemptOutcome, AttemptRecord, AuctionRecord, BidRecord, NodeId, Task, TaskId, TaskReport, TaskStatus,
    WorkerInfo,
};
use state::{
    Award, End, Entry, Phase, QueueKey, Role, RoleId, Slot, Stage, TimerKind, WorkerId, WorkerState,
};

/// How many task ids a status call without ids can list: the most recent.
pub const RECENT: usize = 1000;

/// How long finished tasks are kept. A finished task is evicted when any
/// limit is passed (oldest first), but never while an unfinished dependent
/// may still need its output.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Most finished tasks kept. Default 100,000.
    pub max_tasks: usize,
    /// Longest a finished task is kept. Default one hour.
    pub max_age: Duration,
    /// Most bytes of inputs and outputs of finished tasks kept. Default
    /// 256 MiB.
    pub max_bytes: usize,
    /// How many evicted ids are remembered, so that asking for one says
    /// "evicted" rather than "unknown". Default 100,000 (about 3 MiB).
    pub remember_evicted: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_tasks: 100_000,
            max_age: Duration::from_secs(3600),
            max_bytes: 256 << 20,
            remember_evicted: 100_000,
        }
    }
}

/// Tunables of the scheduler. The `default_*` values fill task fields left
/// unset at submission (see [`Task`] for their meaning and ranges).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How long an auction stays open when not every worker of the role has
    /// answered (it closes at once when all have). Default 50 ms.
    pub bid_window: Duration,
    /// How long a ready task may wait without a capable worker before
    /// failing. Default 5 s.
    pub no_worker_timeout: Duration,
    /// Execution timeout of an attempt for tasks that set none; `None`: no
    /// limit (the default).
    pub default_timeout: Option<Duration>,
    /// Queue timeout for tasks that set none; `None`: no limit (default).
    pub default_queue_timeout: Option<Duration>,
    /// Total deadline for tasks that set none; `None`: none (default).
    pub default_deadline: Option<Duration>,
    /// Retries of retryable failures for tasks that set none. Default 0.
    pub default_retries: u32,
    /// Lost attempts allowed for tasks that set none. Default 3.
    pub default_max_attempts: u32,
    /// Delay before the first retry of a failed attempt; doubles with each
    /// retry up to `max_retry_delay`, with up to ±25 % jitter. Default 200 ms.
    pub retry_delay: Duration,
    /// Longest delay between retries. Default 30 s.
    pub max_retry_delay: Duration,
    /// How long an attempt's lease lasts from its award or last renewal.
    /// Nodes renew every quarter of it by default
    /// (`NodeConfig::renew_interval`), so a dead or paused worker is found
    /// within this time. Default 2 s.
    pub lease: Duration,
    /// Waiting this long raises a ready task's effective priority by one.
    /// Default 1 s.
    pub priority_ageing: Duration,
    /// Largest task input accepted, in bytes. Default 8 MiB.
    pub max_payload: usize,
    /// Largest input plus dependency outputs one award may carry, in bytes;
    /// a task over it fails with `InputsTooLarge`. Default 15 MiB (under the
    /// 16 MiB frame).
    pub max_award: usize,
    /// Most tasks in one submitted batch.
    pub max_batch: usize,
    /// Most unfinished tasks held at once; submissions beyond are refused.
    pub max_unfinished: usize,
    /// First delay after an auction that drew no usable bid or an award the
    /// worker refused; doubles each round up to `max_auction_backoff`.
    pub auction_backoff: Duration,
    /// Longest such delay.
    pub max_auction_backoff: Duration,
    /// How many queued tasks one pump looks at, bounding work per step.
    pub max_scan: usize,
    /// How long finished tasks are kept.
    pub retention: Retention,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            bid_window: Duration::from_millis(50),
            no_worker_timeout: Duration::from_secs(5),
            default_timeout: None,
            default_queue_timeout: None,
            default_deadline: None,
            default_retries: 0,
            default_max_attempts: 3,
            retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(30),
            lease: Duration::from_secs(2),
            priority_ageing: Duration::from_secs(1),
            max_payload: 8 << 20,
            max_award: 15 << 20,
            max_batch: 100_000,
            max_unfinished: 1_000_000,
            auction_backoff: Duration::from_millis(10),
            max_auction_backoff: Duration::from_millis(500),
            max_scan: 4096,
            retention: Retention::default(),
        }
    }
}

/// What the driver feeds the scheduler.
#[derive(Clone, Debug)]
pub enum Input {
    /// A client submits a batch; `token` comes back in [`Output::Submitted`].
    Submit {
        /// Correlates the answer.
        token: u64,
        /// The batch.
        tasks: Vec<Task>,
    },
    /// A node (re)declares the workers it hosts; replaces its previous list.
    Register {
        /// The node.
        node: NodeId,
        /// Its workers.
        workers: Vec<crate::task::WorkerSpec>,
    },
    /// A node disconnected: its workers are gone, and what they held is lost.
    NodeLeft(NodeId),
    /// Bids from one node.
    Bids {
        /// The node that sent them.
        node: NodeId,
        /// The bids.
        bids: Vec<Bid>,
    },
    /// A node's answer to an assignment.
    AssignAnswer {
        /// The node.
        node: NodeId,
        /// The task.
        task: TaskId,
        /// The attempt answered.
        attempt: u32,
        /// True when the worker took the task.
        accepted: bool,
    },
    /// Results from one node.
    Reports {
        /// The node that sent them.
        node: NodeId,
        /// The results.
        reports: Vec<Report>,
    },
    /// A node renews the leases of every attempt it holds (running, or
    /// finished with the result not yet acknowledged).
    Renew {
        /// The node.
        node: NodeId,
        /// `(task, attempt)` pairs it holds.
        held: Vec<(TaskId, u32)>,
    },
    /// A client cancels tasks; answered by [`Output::Cancelled`].
    Cancel {
        /// Correlates the answer.
        token: u64,
        /// The tasks.
        ids: Vec<TaskId>,
    },
    /// Time passed; due timers fire.
    Tick,
}

/// What became of one id in a cancellation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CancelOutcome {
    /// Cancelled now.
    Cancelled,
    /// Already finished with this status; nothing changed.
    AlreadyFinished(TaskStatus),
    /// Finished and evicted from memory.
    Evicted,
    /// Never known here.
    Unknown,
}

/// What the scheduler asks the driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The answer to a submission.
    Submitted {
        /// The token of the submission.
        token: u64,
        /// Ids in submission order, or why the whole batch was refused.
        result: Result<Vec<TaskId>, SubmitError>,
    },
    /// Publish these announcements (one batch).
    Announce(Vec<Announcement>),
    /// Send these assignments to a node (one batch per node).
    Assign {
        /// The node hosting the winners.
        node: NodeId,
        /// The awards.
        assignments: Vec<Assignment>,
    },
    /// Tell a node to stop these attempts (cancelled, past their deadline,
    /// or no longer theirs).
    Abort {
        /// The node.
        node: NodeId,
        /// `(task, attempt)` pairs.
        attempts: Vec<(TaskId, u32)>,
    },
    /// The answer to a cancellation, one outcome per id, in order.
    Cancelled {
        /// The token of the cancellation.
        token: u64,
        /// Outcomes.
        outcomes: Vec<CancelOutcome>,
    },
    /// A task changed status (final statuses included).
    Changed {
        /// The task.
        id: TaskId,
        /// Its new status.
        status: TaskStatus,
    },
}

/// What the scheduler knows of a task id.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Lookup {
    /// Its report.
    Found(Box<TaskReport>),
    /// It finished and was evicted after its retention.
    Evicted,
    /// Never known here.
    Unknown,
}

/// The scheduler. See the module documentation.
pub struct Scheduler {
    cfg: SchedulerConfig,
    policy: Box<dyn AwardPolicy>,
    // ---- the ledger state: changed only by `apply` ----
    /// The task table; evicted tasks' slots are reused (`free`).
    tasks: Vec<Entry>,
    free: Vec<Slot>,
    /// Where each task is in `tasks`.
    index: HashMap<TaskId, Slot>,
    /// Every worker ever registered, present or gone.
    workers: Vec<WorkerState>,
    /// The tasks each worker holds an attempt of.
    holding: HashMap<WorkerId, BTreeSet<Slot>>,
    /// The registered workers, by node and name.
    by_node: BTreeMap<NodeId, BTreeMap<String, WorkerId>>,
    /// Every role seen on a task or a worker.
    roles: Vec<Role>,
    role_ids: HashMap<String, RoleId>,
    unfinished: usize,
    /// Finished tasks nothing needs any more, roughly oldest first.
    evictable: VecDeque<(Slot, TaskId)>,
    /// Bytes of inputs and outputs of finished tasks held.
    finished_bytes: usize,
    /// Recently evicted ids (bounded by `Retention::remember_evicted`).
    evicted: HashSet<TaskId>,
    evicted_order: VecDeque<TaskId>,
    /// The most recent submissions, for status listings.
    recent: VecDeque<TaskId>,
    /// Timers, ordered by due time; a timer for a task that moved on is
    /// dropped when it fires. Ledger timers (deadlines, retries, execution
    /// backstops) are set by `apply`, auction timers by the handlers.
    timers: BTreeSet<(Duration, TimerKind, TaskId)>,
    // ---- the auction layer: this admin's own bookkeeping ----
    /// Ready tasks per role, by priority with ageing.
    queues: BTreeMap<RoleId, BTreeSet<(QueueKey, Slot)>>,
    /// Tasks no registered worker could take, per role, oldest first.
    parked: BTreeMap<RoleId, BTreeSet<(u64, Slot)>>,
    /// Open auctions per role.
    open: BTreeMap<RoleId, BTreeSet<Slot>>,
    /// Tasks that became ready in the ledger and wait to enter the auction
    /// layer.
    ready: Vec<Slot>,
    /// The registry changed: re-check parked and queued tasks.
    roster_changed: bool,
    /// Sequence for queue and parking order.
    seq: u64,
    /// Status changes and outputs gathered during one step.
    changes: Vec<(TaskId, TaskStatus)>,
    announce: Vec<Announcement>,
    assign: BTreeMap<NodeId, Vec<Assignment>>,
    abort: BTreeMap<NodeId, Vec<(TaskId, u32)>>,
    /// Events applied, kept when recording is on.
    recorded: Option<Vec<Event>>,
    /// Tasks clients wait on, with how many waits: never evicted meanwhile.
    watched: HashMap<TaskId, u32>,
}

impl Scheduler {
    /// A scheduler with the default award policy.
    pub fn new(cfg: SchedulerConfig) -> Self {
        Self::with_policy(cfg, Box::new(BestFit))
    }

    /// A scheduler with a custom award policy.
    pub fn with_policy(cfg: SchedulerConfig, policy: Box<dyn AwardPolicy>) -> Self {
        Scheduler {
            cfg,
            policy,
            tasks: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            workers: Vec::new(),
            holding: HashMap::new(),
            by_node: BTreeMap::new(),
            roles: Vec::new(),
            role_ids: HashMap::new(),
            unfinished: 0,
            evictable: VecDeque::new(),
            finished_bytes: 0,
            evicted: HashSet::new(),
            evicted_order: VecDeque::new(),
            recent: VecDeque::new(),
            timers: BTreeSet::new(),
            queues: BTreeMap::new(),
            parked: BTreeMap::new(),
            open: BTreeMap::new(),
            ready: Vec::new(),
            roster_changed: false,
            seq: 0,
            changes: Vec::new(),
            announce: Vec::new(),
            assign: BTreeMap::new(),
            abort: BTreeMap::new(),
            recorded: None,
            watched: HashMap::new(),
        }
    }

    /// Keeps every event applied from now on, for [`Scheduler::take_events`].
    pub fn record_events(&mut self) {
        self.recorded.get_or_insert_with(Vec::new);
    }

    /// The events applied since the last call (with recording on).
    pub fn take_events(&mut self) -> Vec<Event> {
        self.recorded.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Applies a decision: the one way handlers change the ledger.
    fn emit(&mut self, event: Event) {
        self.apply(&event);
        if let Some(log) = &mut self.recorded {
            log.push(event);
        }
    }

    /// Feeds one input at wall-clock time `now`; outputs are appended to
    /// `out`.
    pub fn handle(&mut self, input: Input, now: Duration, out: &mut Vec<Output>) {
        match input {
            Input::Submit { token, tasks } => {
                let result = self.submit(tasks, now);
                out.push(Output::Submitted { token, result });
            }
            Input::Register { node, workers } => self.register(node, workers, now),
            Input::NodeLeft(node) => self.node_left(&node, now),
            Input::Bids { node, bids } => {
                for bid in bids {
                    self.bid(&node, bid, now);
                }
            }
            Input::AssignAnswer {
                node,
                task,
                attempt,
                accepted,
            } => self.assign_answer(&node, task, attempt, accepted, now),
            Input::Reports { node, reports } => {
                for r in reports {
                    self.report(&node, r, now);
                }
            }
            Input::Renew { node, held } => self.renew(&node, &held, now),
            Input::Cancel { token, ids } => {
                let outcomes = ids.iter().map(|id| self.cancel(id, now)).collect();
                out.push(Output::Cancelled { token, outcomes });
            }
            Input::Tick => self.fire_timers(now),
        }
        self.settle_auctions(now);
        self.flush(out);
    }

    /// Brings the auction layer up to date with the ledger: newly ready
    /// tasks join their queues, registry changes re-park or unpark tasks,
    /// and queued tasks are announced while capable workers have room.
    fn settle_auctions(&mut self, now: Duration) {
        for slot in std::mem::take(&mut self.ready) {
            if self.tasks[slot].phase == Phase::Ready && self.tasks[slot].soft.stage == Stage::Idle {
                self.enqueue(slot, now);
            }
        }
        if std::mem::take(&mut self.roster_changed) {
            self.park_stranded(now);
            self.unpark(now);
        }
        self.pump(now);
        self.retain(now);
    }

    /// Keeps a task from eviction while a client waits on it (the driver
    /// answers waiters after the step in which their tasks finished, and
    /// eviction must not take the report first). Each `watch` needs one
    /// [`Scheduler::unwatch`].
    pub fn watch(&mut self, id: TaskId) {
        *self.watched.entry(id).or_default() += 1;
    }

    /// Ends one `watch`; the last one lets the task be evicted again.
    pub fn unwatch(&mut self, id: &TaskId) {
        let Some(n) = self.watched.get_mut(id) else { return };
        *n -= 1;
        if *n == 0 {
            self.watched.remove(id);
            if let Some(slot) = self.slot(id) {
                if self.tasks[slot].phase.is_final() && self.tasks[slot].holders == 0 {
                    self.evictable.push_back((slot, *id));
                }
            }
        }
    }

    /// When the driver must next send [`Input::Tick`].
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.first().map(|t| t.0)
    }

    /// Everything known about a task, or whether it was evicted.
    pub fn lookup(&self, id: &TaskId, now: Duration) -> Lookup {
        match self.report_of(id, now) {
            Some(r) => Lookup::Found(Box::new(r)),
            None if self.evicted.contains(id) => Lookup::Evicted,
            None => Lookup::Unknown,
        }
    }

    /// Everything known about a task (`None` when unknown or evicted).
    pub fn report_of(&self, id: &TaskId, now: Duration) -> Option<TaskReport> {
        let e = &self.tasks[self.slot(id)?];
        let last = e.history.last().map(|a| &self.workers[a.worker]);
        let end = e.finished_at.unwrap_or(now);
        let (output, error) = match &e.phase {
            Phase::Completed { output } => (Some(output.clone()), None),
            Phase::Failed { error } => (None, Some((**error).clone())),
            Phase::Cancelled { reason } => (
                None,
                Some(crate::task::TaskError::Cancelled {
                    reason: reason.to_string(),
                }),
            ),
            Phase::Skipped { reason } => (
                None,
                Some(crate::task::TaskError::NotTriggered {
                    rule: e.task.trigger,
                    reason: reason.to_string(),
                }),
            ),
            _ => (None, None),
        };
        Some(TaskReport {
            id: *id,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            status: self.status_at(e),
            worker: last.map(|w| w.spec.name.clone()),
            node: last.map(|w| w.node.clone()),
            attempts: e.history.len() as u32,
            history: e.history.iter().map(|a| self.attempt_record(a)).collect(),
            auction: e.award.as_ref().map(|a| self.auction_record(a)),
            output,
            error,
            elapsed_ms: end.saturating_sub(e.submitted_at).as_millis() as u64,
            run_ms: e.run_ms,
        })
    }

    fn attempt_record(&self, a: &state::Attempt) -> AttemptRecord {
        let w = &self.workers[a.worker];
        let outcome = match &a.end {
            End::Running => AttemptOutcome::Running,
            End::Completed => AttemptOutcome::Completed,
            End::Failed { message, retryable } => AttemptOutcome::Failed {
                message: message.to_string(),
                retryable: *retryable,
            },
            End::TimedOut { timeout_ms } => AttemptOutcome::TimedOut {
                timeout_ms: *timeout_ms,
            },
            End::Lost { reason } => AttemptOutcome::Lost {
                reason: reason.to_string(),
            },
            End::Aborted { reason } => AttemptOutcome::Aborted {
                reason: reason.to_string(),
            },
        };
        AttemptRecord {
            number: a.number,
            worker: w.spec.name.clone(),
            node: w.node.clone(),
            started_ms: a.started_ms,
            duration_ms: a.duration_ms,
            outcome,
        }
    }

    fn auction_record(&self, award: &Award) -> AuctionRecord {
        let bids = award.bids.iter().map(|b| {
            let w = &self.workers[b.worker];
            BidRecord {
                worker: w.spec.name.clone(),
                node: w.node.clone(),
                skill: b.skill,
                load: b.load,
                capacity: b.capacity,
            }
        });
        AuctionRecord {
            bids: bids.collect(),
            reason: award.reason.to_string(),
            rounds: award.rounds,
        }
    }

    /// The status of a task, cheaply (`None` when unknown or evicted).
    pub fn status(&self, id: &TaskId) -> Option<TaskStatus> {
        self.slot(id).map(|s| self.status_at(&self.tasks[s]))
    }

    fn status_at(&self, e: &Entry) -> TaskStatus {
        match e.soft.stage {
            Stage::Announced { .. } if e.phase.awaits_award() => TaskStatus::Announced,
            _ => events::status_of(&e.phase),
        }
    }

    /// True when the id belonged to a task evicted after its retention.
    pub fn was_evicted(&self, id: &TaskId) -> bool {
        self.evicted.contains(id)
    }

    /// The registered workers with their current load.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let ids = self.by_node.values().flat_map(|names| names.values());
        ids.map(|&id| {
            let w = &self.workers[id];
            WorkerInfo {
                name: w.spec.name.clone(),
                role: w.spec.role.clone(),
                skill: w.spec.skill,
                capacity: w.spec.capacity,
                load: w.load,
                node: w.node.clone(),
            }
        })
        .collect()
    }

    /// Tasks not yet finished.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Tasks held in memory, finished ones included.
    pub fn held(&self) -> usize {
        self.index.len()
    }

    /// Ids of the most recently submitted tasks still held, oldest first,
    /// at most `n` (and at most [`RECENT`]).
    pub fn recent(&self, n: usize) -> Vec<TaskId> {
        let held = self.recent.iter().filter(|id| self.index.contains_key(id));
        let ids: Vec<TaskId> = held.copied().collect();
        ids[ids.len().saturating_sub(n)..].to_vec()
    }

    /// Emits what one step gathered.
    fn flush(&mut self, out: &mut Vec<Output>) {
        for (id, status) in self.changes.drain(..) {
            out.push(Output::Changed { id, status });
        }
        if !self.announce.is_empty() {
            out.push(Output::Announce(std::mem::take(&mut self.announce)));
        }
        for (node, assignments) in std::mem::take(&mut self.assign) {
            out.push(Output::Assign { node, assignments });
        }
        for (node, attempts) in std::mem::take(&mut self.abort) {
            out.push(Output::Abort { node, attempts });
        }
    }

    /// Milliseconds of `now`, as events carry time.
    fn ms(now: Duration) -> u64 {
        now.as_millis() as u64
    }
}
