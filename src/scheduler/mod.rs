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
//! Where each part lives: this file holds the inputs and outputs and the
//! queries; `state` the per-task, per-worker and per-role records;
//! `lifecycle` steps 1, 5 and 6 and the timers; `queue` steps 2 and 3;
//! `bidding` step 4 with [`auction`] holding the award policies; `workers`
//! the registry and slot accounting; `messages` what workers send and
//! receive.
//!
//! Costs: tasks live in a vector in submission order and refer to each
//! other, to workers and to roles by index, so a step hashes only the task
//! ids that arrive in inputs. Finished tasks are kept for their reports.

pub mod auction;
mod bidding;
pub mod dag;
mod lifecycle;
mod messages;
mod queue;
mod state;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

pub use auction::{AwardPolicy, BestFit, Candidate, Lot};
pub use dag::SubmitError;
pub use messages::{Announcement, Assignment, Bid, DepOutput, Report};

use crate::task::{
    AuctionRecord, BidRecord, NodeId, Task, TaskId, TaskReport, TaskStatus, WorkerInfo, WorkerSpec,
};
use state::{Award, Entry, Phase, Role, RoleId, Slot, TimerKind, WorkerId, WorkerState};

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

/// The scheduler. See the module documentation.
pub struct Scheduler {
    cfg: SchedulerConfig,
    policy: Box<dyn AwardPolicy>,
    /// Every task submitted, finished ones too (for their reports), in
    /// submission order.
    tasks: Vec<Entry>,
    /// Where each task is in `tasks`.
    index: HashMap<TaskId, Slot>,
    /// Every worker ever registered, present or gone.
    workers: Vec<WorkerState>,
    /// The registered workers, by node and name.
    by_node: BTreeMap<NodeId, BTreeMap<String, WorkerId>>,
    /// Every role seen on a task or a worker.
    roles: Vec<Role>,
    role_ids: HashMap<String, RoleId>,
    /// Ready tasks per role, oldest first; only non-empty queues are kept.
    queues: BTreeMap<RoleId, VecDeque<Slot>>,
    /// Timers, ordered by due time. An auction that closes early removes its
    /// own; other entries for tasks that moved on are dropped when they fire.
    timers: BTreeSet<(Duration, TimerKind, Slot)>,
    unfinished: usize,
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
            tasks: Vec::new(),
            index: HashMap::new(),
            workers: Vec::new(),
            by_node: BTreeMap::new(),
            roles: Vec::new(),
            role_ids: HashMap::new(),
            queues: BTreeMap::new(),
            timers: BTreeSet::new(),
            unfinished: 0,
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
        let e = &self.tasks[*self.index.get(id)?];
        let worker = e.worker.map(|w| &self.workers[w]);
        let end = e.finished_at.unwrap_or(now);
        Some(TaskReport {
            id: *id,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            status: status_of(&e.phase),
            worker: worker.map(|w| w.spec.name.clone()),
            node: worker.map(|w| w.node.clone()),
            attempts: e.attempts,
            auction: e.award.as_ref().map(|a| self.auction_record(a)),
            output: e.output.clone(),
            error: e.error.as_deref().cloned(),
            elapsed_ms: end.saturating_sub(e.submitted_at).as_millis() as u64,
            run_ms: e.run_ms,
        })
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

    /// The status of a task, cheaply.
    pub fn status(&self, id: &TaskId) -> Option<TaskStatus> {
        self.index.get(id).map(|&s| status_of(&self.tasks[s].phase))
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

    /// Tasks not yet completed or failed.
    pub fn unfinished(&self) -> usize {
        self.unfinished
    }

    /// Ids of the most recently submitted tasks, oldest first, at most `n`.
    pub fn recent(&self, n: usize) -> Vec<TaskId> {
        let skip = self.tasks.len().saturating_sub(n);
        self.tasks[skip..].iter().map(|e| e.task.id).collect()
    }

    /// Tells the driver a task's status changed.
    fn changed(&self, slot: Slot, status: TaskStatus, out: &mut Vec<Output>) {
        out.push(Output::Changed {
            id: self.tasks[slot].task.id,
            status,
        });
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
