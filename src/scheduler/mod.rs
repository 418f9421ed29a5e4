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
//! 3. **Awarded at once** from the *standing bids* of workers with a free
//!    slot whose standing bid and skill reach the task's difficulty (see
//!    `bidding::standing_award`), or else **announced** while capable
//!    workers have free slots; bids arrive; the auction closes when every
//!    worker of the role answered or the bid window ends. Either way the
//!    [`AwardPolicy`] picks the winner.
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
//! Where each part lives: this file holds the inputs and outputs;
//! `config` the tunables; `reports` the queries; `events` the ledger's
//! events and `apply`, with `ledger` what applying does to the records;
//! `image` snapshots of the ledger and taking office;
//! `state` the records; `lifecycle`
//! submissions, answers, reports, retries, cancellation and timers; `queue`
//! readiness, priorities and parking; `bidding` the auctions with
//! [`auction`] holding the award policies; `workers` the registry, leases
//! and slot accounting; `retention` eviction.

pub mod auction;
mod bidding;
mod config;
pub mod dag;
pub mod events;
mod image;
mod lease_line;
mod ledger;
mod lifecycle;
mod messages;
mod observe;
mod queue;
mod reports;
mod retention;
mod state;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use lease_line::LeaseLine;
use std::time::Duration;

pub use auction::{AwardPolicy, AwardReason, BestFit, BidPath, Candidate, Choice, Lot};
pub use config::{Retention, SchedulerConfig};
pub use dag::SubmitError;
pub use events::{AttemptEnd, BidSeen, Event, TaskEnd, EVENT_VERSION};
pub use image::{SnapshotError, MAX_SNAPSHOT};
pub use messages::{Announcement, Assignment, Bid, DepOutput, Failure, Report};
pub use observe::{Census, Observation};

use crate::task::{NodeId, Task, TaskId, TaskReport, TaskStatus};
use state::{Entry, Phase, QueueKey, Role, RoleId, Slot, Stage, Timer, WorkerId, WorkerState};

/// How many task ids a status call without ids can list: the most recent.
pub const RECENT: usize = 1000;

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
        /// Those of `held` waiting in a worker's queue, not started.
        waiting: Vec<(TaskId, u32)>,
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
    /// Tasks ever inserted: the next `Entry::seq` (in snapshots).
    inserted: u64,
    /// Tasks that finished, by role and final status (`observe::FINAL`'s
    /// order), counted as this replica applied their ends: for metrics,
    /// not in snapshots (a restored replica counts again from there).
    ended: BTreeMap<(RoleId, u8), u64>,
    /// Every worker ever registered, present or gone.
    workers: Vec<WorkerState>,
    /// The tasks each worker holds an attempt of.
    holding: HashMap<WorkerId, HashSet<Slot>>,
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
    timers: BTreeSet<Timer>,
    /// First lease checks of attempts, in award order (see `lease_line`).
    leases: LeaseLine,
    // ---- the auction layer: this admin's own bookkeeping ----
    /// Ready tasks per role, by priority with ageing.
    queues: BTreeMap<RoleId, BTreeSet<(QueueKey, Slot)>>,
    /// Tasks no registered worker could take, per role, oldest first.
    parked: BTreeMap<RoleId, BTreeSet<(u64, Slot)>>,
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
    /// When the latest retention timer is due, so that it is set once.
    retention_due: Option<Duration>,
    /// Attempts the admin ended whose worker may still be stopping them,
    /// with the worker (see `WorkerState::draining`), and when each stops
    /// counting (one lease after it ended; in order, since the lease is
    /// the same for all).
    draining: HashMap<(TaskId, u32), WorkerId>,
    drain_line: VecDeque<(Duration, TaskId, u32)>,
    /// Tasks inserted or finished since retention last ran: how far
    /// eviction may go beyond its per-step bound to keep pace.
    churn: usize,
    /// Set by [`Scheduler::take_office`] until every node was heard from.
    takeover: Option<Takeover>,
    /// Set when a pump stopped at [`SchedulerConfig::max_scan`] with room
    /// left: the step at which to pump again (the driver ticks at once).
    pump_again: Option<Duration>,
}

/// What a new admin waits to hear from each worker's node (see
/// [`Scheduler::take_office`]).
struct Takeover {
    /// When nodes still silent are taken for gone.
    by: Duration,
    /// Nodes with workers not heard from yet.
    silent: BTreeSet<NodeId>,
    /// Per node, the attempts its workers hold by the ledger, until the
    /// node's first renewal says which it really holds.
    inherited: BTreeMap<NodeId, Vec<(TaskId, u32)>>,
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
            inserted: 0,
            ended: BTreeMap::new(),
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
            leases: LeaseLine::default(),
            queues: BTreeMap::new(),
            parked: BTreeMap::new(),
            ready: Vec::new(),
            roster_changed: false,
            seq: 0,
            changes: Vec::new(),
            announce: Vec::new(),
            assign: BTreeMap::new(),
            abort: BTreeMap::new(),
            recorded: None,
            watched: HashMap::new(),
            retention_due: None,
            churn: 0,
            draining: HashMap::new(),
            drain_line: VecDeque::new(),
            takeover: None,
            pump_again: None,
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
        if self.recorded.is_none() {
            return self.apply_event(std::borrow::Cow::Owned(event));
        }
        self.apply(&event);
        if let Some(log) = &mut self.recorded {
            log.push(event);
        }
    }

    /// Feeds one input at wall-clock time `now`; outputs are appended to
    /// `out`.
    pub fn handle(&mut self, input: Input, now: Duration, out: &mut Vec<Output>) {
        self.heard_from(&input, now);
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
            Input::Renew { node, held, waiting } => self.renew(&node, &held, &waiting, now),
            Input::Cancel { token, ids } => {
                let outcomes = ids.iter().map(|id| self.cancel(id, now)).collect();
                out.push(Output::Cancelled { token, outcomes });
            }
            Input::Tick => {
                self.fire_timers(now);
                self.takeover_due(now);
            }
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
        self.expire_drains(now);
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
        let lease = self.leases.next_due();
        let drain = self.drain_line.front().map(|d| d.0);
        let timer = self.timers.first().map(|t| t.at);
        let takeover = self.takeover.as_ref().map(|t| t.by);
        [timer, lease, drain, takeover, self.pump_again]
            .into_iter()
            .flatten()
            .min()
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
