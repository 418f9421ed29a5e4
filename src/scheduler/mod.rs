//! The admin's brain, as a pure state machine.
//!
//! The scheduler owns the submitted tasks and their dependency DAG, the
//! registered workers and their load, and every open auction. It is driven by
//! [`Input`]s together with the current time and answers with [`Output`]s;
//! it never reads a clock, touches the network or draws a random number, so
//! every run is reproducible.
//!
//! A task's life:
//!
//! 1. **Submitted** in a batch that is validated whole (ids, dependencies,
//!    cycles, sizes; see [`dag`]). It waits while dependencies run.
//! 2. **Ready** once every dependency completed: it joins its role's queue.
//!    A task that no registered worker could ever take (no worker of its role
//!    with enough skill) is *parked* until one registers or its deadline
//!    passes.
//! 3. **Announced**: the queue is pumped only while some capable worker has a
//!    free slot, so work waits at the admin instead of flooding the mesh.
//!    Announcements made in one step go out as one batch.
//! 4. **Auction**: bids arrive; the auction closes when every worker of the
//!    role has answered or when the bid window ends. The [`AwardPolicy`]
//!    picks the winner among willing bidders with `skill >= difficulty` and
//!    room. No winner: back to the queue (after a backoff if capable workers
//!    had room but did not bid; failing after `no_worker_timeout`). A
//!    willing bid for that closed round arriving before the next one opens
//!    still wins at once if its worker can take the task and has a free slot.
//! 5. **Assigned** to the winner with an attempt number and its dependencies'
//!    outputs; **Running** once the worker accepts. A refusal backs the task
//!    off like an auction without a usable bid (longer with each refusal in
//!    a row), and the refuser wins its next award only if no other capable
//!    worker bids.
//! 6. **Completed** or **Failed** from the worker's report. A failure fails
//!    every dependent with an error naming the failed dependency. A worker
//!    that leaves fails what it held. Reports for a stale attempt are ignored.
//!
//! Where each part lives: this file holds the inputs and outputs, the state
//! and the queries; `lifecycle` steps 1, 5 and 6 and the timers; `queue`
//! steps 2 and 3; `bidding` step 4 with [`auction`] holding the award
//! policies; `workers` the registry and slot accounting; `messages` what
//! workers send and receive.

pub mod auction;
mod bidding;
pub mod dag;
mod lifecycle;
mod messages;
mod queue;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

pub use auction::{AwardPolicy, BestFit, Candidate, Lot};
pub use dag::SubmitError;
pub use messages::{Announcement, Assignment, Bid, DepOutput, Report};

use crate::task::{
    AuctionRecord, BidRecord, NodeId, Payload, Task, TaskError, TaskId, TaskReport, TaskStatus, WorkerInfo,
    WorkerSpec,
};

/// Tunables of the scheduler.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How long an auction stays open when not every worker of the role has
    /// answered (it closes at once when all have). Default 50 ms: a bid
    /// crosses one gossip hop and one request, about 1–2 ms in a release
    /// build on loopback and ~10 ms in a debug build; the margin is for
    /// loaded machines.
    pub bid_window: Duration,
    /// How long a ready task may wait without a capable worker before failing.
    pub no_worker_timeout: Duration,
    /// Per-attempt run timeout for tasks that set none.
    pub default_task_timeout: Option<Duration>,
    /// Largest task input accepted.
    pub max_payload: usize,
    /// Most tasks in one submitted batch.
    pub max_batch: usize,
    /// Most unfinished tasks held at once; submissions beyond are refused.
    pub max_unfinished: usize,
    /// First retry delay after an auction that drew no usable bid; doubles
    /// each round up to `max_retry_backoff`.
    pub retry_backoff: Duration,
    /// Longest retry delay.
    pub max_retry_backoff: Duration,
    /// How many queued tasks one pump looks at, bounding work per step.
    pub max_scan: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            bid_window: Duration::from_millis(50),
            no_worker_timeout: Duration::from_secs(5),
            default_task_timeout: None,
            max_payload: 8 << 20,
            max_batch: 100_000,
            max_unfinished: 1_000_000,
            retry_backoff: Duration::from_millis(10),
            max_retry_backoff: Duration::from_millis(500),
            max_scan: 4096,
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
        workers: Vec<WorkerSpec>,
    },
    /// A node disconnected: its workers are gone with what they held.
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
    /// Time passed; due timers fire.
    Tick,
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
    /// A task changed status (final statuses included).
    Changed {
        /// The task.
        id: TaskId,
        /// Its new status.
        status: TaskStatus,
    },
}

type WorkerKey = (NodeId, String);

#[derive(Debug)]
struct WorkerState {
    spec: WorkerSpec,
    /// Tasks awarded to this worker and not yet reported.
    load: u32,
    /// Auctions counting on one of this worker's free slots.
    reserved: u32,
}

impl WorkerState {
    fn free(&self) -> u32 {
        self.spec.capacity.saturating_sub(self.load + self.reserved)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Waiting for dependencies.
    Waiting,
    /// In its role's queue.
    Queued,
    /// No registered worker could take it; waiting for one.
    Parked,
    /// Out of line after an auction without an award or a refusal, until
    /// its retry timer for `until` puts it back (earlier retry timers are
    /// stale).
    Backoff {
        until: Duration,
    },
    /// Auction open.
    Announced {
        closes_at: Duration,
        reserved: Option<WorkerKey>,
    },
    /// Awarded, waiting for the worker to accept.
    Assigned {
        worker: WorkerKey,
    },
    /// Being processed.
    Running {
        worker: WorkerKey,
    },
    Completed,
    Failed,
}

#[derive(Debug)]
struct Entry {
    task: Task,
    phase: Phase,
    /// Dependencies not yet completed.
    waiting_on: u32,
    dependents: Vec<TaskId>,
    /// Submission order, so that scans over `tasks` act in a stable order.
    seq: u64,
    submitted_at: Duration,
    /// When the task last became ready; its capable-worker deadline counts
    /// from here.
    ready_at: Duration,
    /// When the current run of auctions without a usable bid started (reset
    /// by an award, or when every capable worker is busy); `NoBids` counts
    /// from here, so time spent waiting for a busy worker is not held
    /// against the bidders.
    no_bids_since: Option<Duration>,
    attempts: u32,
    round: u32,
    /// Awards refused in a row; sets the backoff after a refusal.
    refusals: u32,
    /// The worker that refused the latest award: until the task is awarded
    /// again it wins only when no other capable worker bids.
    refused_by: Option<WorkerKey>,
    /// Answers in the open auction, with whether each bidder is willing.
    bids: Vec<(BidRecord, bool)>,
    auction: Option<AuctionRecord>,
    worker: Option<WorkerKey>,
    output: Option<Payload>,
    error: Option<TaskError>,
    run_ms: Option<u64>,
    finished_at: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// An auction's bid window ends.
    CloseAuction,
    /// A backed-off task rejoins its queue.
    Retry,
    /// A parked task's capable-worker deadline.
    Deadline,
    /// A running attempt's timeout; stale once the task moved to another
    /// attempt.
    RunTimeout { attempt: u32 },
}

/// The scheduler. See the module documentation.
pub struct Scheduler {
    cfg: SchedulerConfig,
    policy: Box<dyn AwardPolicy>,
    tasks: HashMap<TaskId, Entry>,
    workers: BTreeMap<WorkerKey, WorkerState>,
    /// Ready tasks per role, oldest first.
    queues: BTreeMap<String, VecDeque<TaskId>>,
    /// Timers, ordered by due time; entries for tasks that moved on are
    /// dropped when they fire.
    timers: BTreeSet<(Duration, TimerKind, TaskId)>,
    unfinished: usize,
    /// Sequence number for the next submitted task.
    next_seq: u64,
    /// Announcements and awards gathered during one step, flushed at its end.
    announce: Vec<Announcement>,
    assign: BTreeMap<NodeId, Vec<Assignment>>,
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
            tasks: HashMap::new(),
            workers: BTreeMap::new(),
            queues: BTreeMap::new(),
            timers: BTreeSet::new(),
            unfinished: 0,
            next_seq: 0,
            announce: Vec::new(),
            assign: BTreeMap::new(),
        }
    }

    /// Feeds one input at time `now`; outputs are appended to `out`.
    pub fn handle(&mut self, input: Input, now: Duration, out: &mut Vec<Output>) {
        match input {
            Input::Submit { token, tasks } => {
                let result = self.submit(tasks, now, out);
                out.push(Output::Submitted { token, result });
            }
            Input::Register { node, workers } => self.register(node, workers, now, out),
            Input::NodeLeft(node) => self.node_left(&node, now, out),
            Input::Bids { node, bids } => {
                for bid in bids {
                    self.bid(&node, bid, now, out);
                }
            }
            Input::AssignAnswer {
                node,
                task,
                attempt,
                accepted,
            } => self.assign_answer(&node, task, attempt, accepted, now, out),
            Input::Reports { node, reports } => {
                for r in reports {
                    self.report(&node, r, now, out);
                }
            }
            Input::Tick => self.fire_timers(now, out),
        }
        self.pump(now, out);
        self.flush(out);
    }

    /// When the driver must next send [`Input::Tick`].
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.first().map(|t| t.0)
    }

    /// Everything known about a task.
    pub fn report_of(&self, id: &TaskId, now: Duration) -> Option<TaskReport> {
        let e = self.tasks.get(id)?;
        let end = e.finished_at.unwrap_or(now);
        Some(TaskReport {
            id: *id,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            status: status_of(&e.phase),
            worker: e.worker.as_ref().map(|w| w.1.clone()),
            node: e.worker.as_ref().map(|w| w.0.clone()),
            attempts: e.attempts,
            auction: e.auction.clone(),
            output: e.output.clone(),
            error: e.error.clone(),
            elapsed_ms: end.saturating_sub(e.submitted_at).as_millis() as u64,
            run_ms: e.run_ms,
        })
    }

    /// The status of a task, cheaply.
    pub fn status(&self, id: &TaskId) -> Option<TaskStatus> {
        self.tasks.get(id).map(|e| status_of(&e.phase))
    }

    /// The registered workers with their current load.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers
            .iter()
            .map(|((node, _), w)| WorkerInfo {
                name: w.spec.name.clone(),
                role: w.spec.role.clone(),
                skill: w.spec.skill,
                capacity: w.spec.capacity,
                load: w.load,
                node: node.clone(),
            })
            .collect()
    }

    /// Tasks not yet completed or failed.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Emits the announcements and awards gathered during one step.
    fn flush(&mut self, out: &mut Vec<Output>) {
        if !self.announce.is_empty() {
            out.push(Output::Announce(std::mem::take(&mut self.announce)));
        }
        for (node, assignments) in std::mem::take(&mut self.assign) {
            out.push(Output::Assign { node, assignments });
        }
    }
}

fn status_of(phase: &Phase) -> TaskStatus {
    match phase {
        Phase::Waiting | Phase::Queued | Phase::Parked | Phase::Backoff { .. } => TaskStatus::Pending,
        Phase::Announced { .. } => TaskStatus::Announced,
        Phase::Assigned { .. } => TaskStatus::Assigned,
        Phase::Running { .. } => TaskStatus::Running,
        Phase::Completed => TaskStatus::Completed,
        Phase::Failed => TaskStatus::Failed,
    }
}
