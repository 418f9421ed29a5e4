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
//!    had room but did not bid; failing after `no_worker_timeout`).
//! 5. **Assigned** to the winner with an attempt number and its dependencies'
//!    outputs; **Running** once the worker accepts (a refusal requeues it).
//! 6. **Completed** or **Failed** from the worker's report. A failure fails
//!    every dependent with an error naming the failed dependency. A worker
//!    that leaves fails what it held. Reports for a stale attempt are ignored.

pub mod auction;
pub mod dag;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auction::{AwardPolicy, BestFit, Candidate, Lot};
pub use dag::SubmitError;

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

/// A worker's answer to one announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The announced task.
    pub task: TaskId,
    /// The auction round announced (stale rounds are ignored).
    pub round: u32,
    /// The bidding worker (its node comes from the transport).
    pub worker: String,
    /// The worker's skill.
    pub skill: u32,
    /// Tasks the worker holds, as it sees it.
    pub load: u32,
    /// Its slots.
    pub capacity: u32,
    /// False when the worker answers only to say it will not take the task,
    /// which lets the auction close early.
    pub willing: bool,
}

/// A worker's result for one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The task.
    pub task: TaskId,
    /// The attempt this result belongs to.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: String,
    /// The output, or the worker's error text.
    pub outcome: Result<Payload, String>,
    /// Milliseconds spent processing.
    pub run_ms: u64,
}

/// A task offered for bidding (the payload stays at the admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The task.
    pub task: TaskId,
    /// The auction round; bids quote it back.
    pub round: u32,
    /// The task's name.
    pub name: String,
    /// The role that may bid.
    pub role: String,
    /// The difficulty.
    pub difficulty: u32,
    /// Input size in bytes, so a worker can judge the transfer.
    pub input_len: u64,
}

/// One dependency's output, handed to a dependent task's worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepOutput {
    /// The dependency's id.
    pub id: TaskId,
    /// The dependency's name.
    pub name: String,
    /// Its output.
    pub output: Payload,
}

/// An award: everything the winning worker needs to run the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// Attempt number (1 for the first award); quoted back in the report.
    pub attempt: u32,
    /// The worker that won, on the receiving node.
    pub worker: String,
    /// The task's name.
    pub name: String,
    /// The task's role.
    pub role: String,
    /// The difficulty.
    pub difficulty: u32,
    /// The input.
    pub input: Payload,
    /// Outputs of the task's dependencies, in the task's dependency order.
    pub deps: Vec<DepOutput>,
    /// Run timeout for this attempt, if any.
    pub timeout_ms: Option<u64>,
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
    /// Auction lost for lack of bids; retried at the given time.
    Backoff,
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
    /// A running attempt's timeout.
    RunTimeout,
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

    // ---- inputs -------------------------------------------------------------

    fn submit(
        &mut self,
        tasks: Vec<Task>,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> Result<Vec<TaskId>, SubmitError> {
        if self.unfinished + tasks.len() > self.cfg.max_unfinished {
            return Err(SubmitError::Full {
                held: self.unfinished,
                max: self.cfg.max_unfinished,
            });
        }
        let limits = dag::Limits {
            max_payload: self.cfg.max_payload,
            max_batch: self.cfg.max_batch,
        };
        let order = dag::validate(&tasks, |id| self.tasks.contains_key(id), limits)?;
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let mut slots: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
        for i in order {
            let Some(task) = slots[i].take() else { continue };
            self.insert(task, now, out);
        }
        Ok(ids)
    }

    /// Adds one validated task whose batch dependencies are already inserted.
    fn insert(&mut self, task: Task, now: Duration, out: &mut Vec<Output>) {
        let id = task.id;
        let mut waiting_on = 0;
        let mut failed_dep = None;
        for d in &task.dependencies {
            let dep = self.tasks.get_mut(d).expect("validated dependency");
            match dep.phase {
                Phase::Completed => {}
                Phase::Failed => {
                    failed_dep.get_or_insert((*d, dep.task.name.clone()));
                }
                _ => {
                    waiting_on += 1;
                    dep.dependents.push(id);
                }
            }
        }
        self.unfinished += 1;
        self.next_seq += 1;
        self.tasks.insert(
            id,
            Entry {
                task,
                phase: Phase::Waiting,
                waiting_on,
                dependents: Vec::new(),
                seq: self.next_seq,
                submitted_at: now,
                ready_at: now,
                no_bids_since: None,
                attempts: 0,
                round: 0,
                bids: Vec::new(),
                auction: None,
                worker: None,
                output: None,
                error: None,
                run_ms: None,
                finished_at: None,
            },
        );
        out.push(Output::Changed {
            id,
            status: TaskStatus::Pending,
        });
        if let Some((dep, name)) = failed_dep {
            self.fail(id, TaskError::DependencyFailed { id: dep, name }, now, out);
        } else if waiting_on == 0 {
            self.make_ready(id, now);
        }
    }

    fn register(&mut self, node: NodeId, specs: Vec<WorkerSpec>, now: Duration, out: &mut Vec<Output>) {
        let keep: BTreeSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        let gone: Vec<WorkerKey> = self
            .workers
            .range((node.clone(), String::new())..)
            .take_while(|(k, _)| k.0 == node)
            .filter(|(k, _)| !keep.contains(&k.1))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.remove_worker(&key, now, out);
        }
        for mut spec in specs {
            spec.capacity = spec.capacity.max(1);
            let key = (node.clone(), spec.name.clone());
            match self.workers.get_mut(&key) {
                Some(w) => w.spec = spec,
                None => {
                    self.workers.insert(
                        key,
                        WorkerState {
                            spec,
                            load: 0,
                            reserved: 0,
                        },
                    );
                }
            }
        }
        self.park_stranded(now);
        self.unpark(now);
    }

    fn node_left(&mut self, node: &NodeId, now: Duration, out: &mut Vec<Output>) {
        let keys: Vec<WorkerKey> = self
            .workers
            .range((node.clone(), String::new())..)
            .take_while(|(k, _)| &k.0 == node)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.remove_worker(&key, now, out);
        }
        self.park_stranded(now);
    }

    fn remove_worker(&mut self, key: &WorkerKey, now: Duration, out: &mut Vec<Output>) {
        self.workers.remove(key);
        let mut held: Vec<(u64, TaskId)> = self
            .tasks
            .iter()
            .filter(|(_, e)| match &e.phase {
                Phase::Assigned { worker } | Phase::Running { worker } => worker == key,
                Phase::Announced { .. } => true,
                _ => false,
            })
            .map(|(id, e)| (e.seq, *id))
            .collect();
        // `tasks` is a hash map: act in submission order so runs repeat.
        held.sort_unstable();
        for (_, id) in held {
            let e = self.tasks.get_mut(&id).expect("listed");
            if let Phase::Announced { reserved, .. } = &mut e.phase {
                if reserved.as_ref() == Some(key) {
                    *reserved = None;
                }
                // A gone worker's answer no longer counts towards closing.
                e.bids.retain(|(b, _)| b.node != key.0 || b.worker != key.1);
                continue;
            }
            let err = TaskError::WorkerLost {
                worker: key.1.clone(),
                node: key.0.to_string(),
            };
            self.fail(id, err, now, out);
        }
    }

    fn bid(&mut self, node: &NodeId, bid: Bid, now: Duration, out: &mut Vec<Output>) {
        let key = (node.clone(), bid.worker.clone());
        let Some(w) = self.workers.get(&key) else { return };
        let Some(e) = self.tasks.get_mut(&bid.task) else {
            return;
        };
        if bid.round != e.round || !matches!(e.phase, Phase::Announced { .. }) || w.spec.role != e.task.role {
            return;
        }
        if e.bids
            .iter()
            .any(|(b, _)| b.node == *node && b.worker == bid.worker)
        {
            return;
        }
        let record = BidRecord {
            worker: bid.worker,
            node: node.clone(),
            // The registered skill is authoritative: a bid cannot inflate it.
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
        };
        e.bids.push((record, bid.willing));
        let role = e.task.role.clone();
        let answered = e.bids.len();
        let expected = self
            .workers
            .keys()
            .filter(|k| self.workers[*k].spec.role == role)
            .count();
        if answered >= expected {
            self.close_auction(bid.task, now, out);
        }
    }

    fn assign_answer(
        &mut self,
        node: &NodeId,
        id: TaskId,
        attempt: u32,
        accepted: bool,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(e) = self.tasks.get(&id) else { return };
        let Phase::Assigned { worker } = &e.phase else {
            return;
        };
        if &worker.0 != node || e.attempts != attempt {
            return;
        }
        let worker = worker.clone();
        let timeout = self.run_timeout(&e.task);
        let e = self.tasks.get_mut(&id).expect("checked above");
        if accepted {
            e.phase = Phase::Running { worker };
            if let Some(t) = timeout {
                self.timers.insert((now + t, TimerKind::RunTimeout, id));
            }
            out.push(Output::Changed {
                id,
                status: TaskStatus::Running,
            });
        } else {
            if let Some(w) = self.workers.get_mut(&worker) {
                w.load = w.load.saturating_sub(1);
            }
            e.worker = None;
            self.requeue(id, now, out);
        }
    }

    fn report(&mut self, node: &NodeId, r: Report, now: Duration, out: &mut Vec<Output>) {
        let Some(e) = self.tasks.get_mut(&r.task) else {
            return;
        };
        let holder = match &e.phase {
            Phase::Assigned { worker } | Phase::Running { worker } => worker,
            _ => return,
        };
        if &holder.0 != node || holder.1 != r.worker || e.attempts != r.attempt {
            return;
        }
        let key = holder.clone();
        e.run_ms = Some(r.run_ms);
        if let Some(w) = self.workers.get_mut(&key) {
            w.load = w.load.saturating_sub(1);
        }
        match r.outcome {
            Ok(output) => self.complete(r.task, output, now, out),
            Err(message) => self.fail(
                r.task,
                TaskError::Processing {
                    worker: r.worker,
                    message,
                },
                now,
                out,
            ),
        }
    }

    fn fire_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
        while let Some(&(at, kind, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(e) = self.tasks.get(&id) else { continue };
            match (kind, &e.phase) {
                (TimerKind::CloseAuction, Phase::Announced { closes_at, .. }) if *closes_at == at => {
                    self.close_auction(id, now, out)
                }
                (TimerKind::Retry, Phase::Backoff) => self.enqueue(id, now),
                (TimerKind::Deadline, Phase::Parked) => self.deadline(id, now, out),
                (TimerKind::RunTimeout, Phase::Running { worker }) => {
                    let worker = worker.clone();
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.load = w.load.saturating_sub(1);
                    }
                    let timeout_ms = self.run_timeout(&e.task).map_or(0, |d| d.as_millis() as u64);
                    self.fail(
                        id,
                        TaskError::Timeout {
                            worker: worker.1,
                            timeout_ms,
                        },
                        now,
                        out,
                    );
                }
                _ => {}
            }
        }
    }

    // ---- transitions --------------------------------------------------------

    fn make_ready(&mut self, id: TaskId, now: Duration) {
        self.tasks.get_mut(&id).expect("ready task exists").ready_at = now;
        self.enqueue(id, now);
    }

    /// Puts a ready task at the back of its role's queue, or parks it when
    /// no registered worker could take it (the queue is only pumped while
    /// the role has room, so a task nobody can take must not wait there).
    fn enqueue(&mut self, id: TaskId, now: Duration) {
        let e = &self.tasks[&id];
        if !self.capable_exists(&e.task.role, e.task.difficulty) {
            self.park(id, now);
            return;
        }
        let e = self.tasks.get_mut(&id).expect("enqueued task exists");
        e.phase = Phase::Queued;
        self.queues.entry(e.task.role.clone()).or_default().push_back(id);
    }

    /// Puts an unawarded task back in line for another auction.
    fn requeue(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        self.tasks
            .get_mut(&id)
            .expect("requeued task exists")
            .bids
            .clear();
        self.enqueue(id, now);
        out.push(Output::Changed {
            id,
            status: TaskStatus::Pending,
        });
    }

    /// Moves parked tasks whose role now has a capable worker back to queues,
    /// in submission order. They keep their original wait start so the
    /// deadline stays honest.
    fn unpark(&mut self, now: Duration) {
        let mut parked: Vec<(u64, TaskId)> = self
            .tasks
            .iter()
            .filter(|(_, e)| e.phase == Phase::Parked)
            .map(|(id, e)| (e.seq, *id))
            .collect();
        parked.sort_unstable();
        for (_, id) in parked {
            let e = &self.tasks[&id];
            if self.capable_exists(&e.task.role, e.task.difficulty) {
                self.enqueue(id, now);
            }
        }
    }

    /// Parks queued tasks that no registered worker can take any more (after
    /// workers left or re-registered with less skill).
    fn park_stranded(&mut self, now: Duration) {
        let mut stranded = Vec::new();
        for queue in self.queues.values_mut() {
            queue.retain(|id| {
                let Some(e) = self.tasks.get(id) else { return false };
                if e.phase != Phase::Queued {
                    return false; // stale entry
                }
                let capable = self
                    .workers
                    .values()
                    .any(|w| w.spec.role == e.task.role && w.spec.skill >= e.task.difficulty);
                if !capable {
                    stranded.push(*id);
                }
                capable
            });
        }
        self.queues.retain(|_, q| !q.is_empty());
        for id in stranded {
            self.park(id, now);
        }
    }

    fn run_timeout(&self, task: &Task) -> Option<Duration> {
        task.timeout_ms
            .map(Duration::from_millis)
            .or(self.cfg.default_task_timeout)
    }

    fn best_skill(&self, role: &str) -> Option<u32> {
        self.workers
            .values()
            .filter(|w| w.spec.role == role)
            .map(|w| w.spec.skill)
            .max()
    }

    fn capable_exists(&self, role: &str, difficulty: u32) -> bool {
        self.best_skill(role).is_some_and(|s| s >= difficulty)
    }

    /// Announces queued tasks while capable workers have free slots.
    fn pump(&mut self, now: Duration, out: &mut Vec<Output>) {
        let roles: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(r, _)| r.clone())
            .collect();
        for role in roles {
            let mut queue = self.queues.remove(&role).unwrap_or_default();
            let mut skipped = VecDeque::new();
            let mut scanned = 0;
            while let Some(id) = queue.pop_front() {
                if scanned >= self.cfg.max_scan || !self.role_has_room(&role) {
                    queue.push_front(id);
                    break;
                }
                scanned += 1;
                let Some(e) = self.tasks.get(&id) else { continue };
                if e.phase != Phase::Queued {
                    continue; // stale queue entry
                }
                let difficulty = e.task.difficulty;
                if self.best_skill(&role).is_none_or(|s| s < difficulty) {
                    self.park(id, now);
                    continue;
                }
                match self.reserve(&role, difficulty) {
                    Some(key) => self.open_auction(id, key, now, out),
                    None => skipped.push_back(id),
                }
            }
            // Skipped tasks keep their place at the head of the line.
            while let Some(id) = skipped.pop_back() {
                queue.push_front(id);
            }
            if !queue.is_empty() {
                self.queues.insert(role, queue);
            }
        }
    }

    fn role_has_room(&self, role: &str) -> bool {
        self.workers.values().any(|w| w.spec.role == role && w.free() > 0)
    }

    /// Reserves a free slot of some capable worker for an auction: the
    /// tightest fit, so easy tasks do not use up the seniors' slots.
    fn reserve(&mut self, role: &str, difficulty: u32) -> Option<WorkerKey> {
        let key = self
            .workers
            .iter()
            .filter(|(_, w)| w.spec.role == role && w.spec.skill >= difficulty && w.free() > 0)
            .min_by_key(|(k, w)| (w.spec.skill, *k))
            .map(|(k, _)| k.clone())?;
        self.workers.get_mut(&key).expect("found").reserved += 1;
        Some(key)
    }

    fn release(&mut self, key: &Option<WorkerKey>) {
        if let Some(w) = key.as_ref().and_then(|k| self.workers.get_mut(k)) {
            w.reserved = w.reserved.saturating_sub(1);
        }
    }

    fn park(&mut self, id: TaskId, now: Duration) {
        let e = self.tasks.get_mut(&id).expect("parked task exists");
        e.phase = Phase::Parked;
        e.no_bids_since = None;
        let at = (e.ready_at + self.cfg.no_worker_timeout).max(now);
        self.timers.insert((at, TimerKind::Deadline, id));
    }

    fn open_auction(&mut self, id: TaskId, reserved: WorkerKey, now: Duration, out: &mut Vec<Output>) {
        let e = self.tasks.get_mut(&id).expect("auctioned task exists");
        e.round += 1;
        e.bids.clear();
        e.no_bids_since.get_or_insert(now);
        let closes_at = now + self.cfg.bid_window;
        e.phase = Phase::Announced {
            closes_at,
            reserved: Some(reserved),
        };
        self.timers.insert((closes_at, TimerKind::CloseAuction, id));
        self.announce.push(Announcement {
            task: id,
            round: e.round,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            input_len: e.task.input.len() as u64,
        });
        out.push(Output::Changed {
            id,
            status: TaskStatus::Announced,
        });
    }

    fn close_auction(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        let e = self.tasks.get_mut(&id).expect("auction task exists");
        let Phase::Announced { reserved, .. } = &e.phase else {
            return;
        };
        let reserved = reserved.clone();
        e.phase = Phase::Queued; // placeholder: award or no_award sets the real phase
        self.release(&reserved);
        let e = &self.tasks[&id];
        let lot = Lot {
            name: &e.task.name,
            role: &e.task.role,
            difficulty: e.task.difficulty,
        };
        let candidates: Vec<Candidate> = e
            .bids
            .iter()
            .filter(|(_, willing)| *willing)
            .map(|(b, _)| b)
            .filter_map(|b| {
                // Judge the worker as registered now, not as it was when it bid.
                let w = self.workers.get(&(b.node.clone(), b.worker.clone()))?;
                let able = w.spec.role == lot.role && w.spec.skill >= lot.difficulty;
                (able && w.load < w.spec.capacity).then_some(Candidate {
                    worker: &b.worker,
                    node: &b.node,
                    skill: w.spec.skill,
                    load: w.load,
                    capacity: w.spec.capacity,
                })
            })
            .collect();
        let choice = self
            .policy
            .choose(&lot, &candidates)
            .filter(|(i, _)| *i < candidates.len())
            .map(|(i, reason)| {
                (
                    (candidates[i].node.clone(), candidates[i].worker.to_string()),
                    reason,
                )
            });
        match choice {
            Some((key, reason)) => self.award(id, key, reason, out),
            None => self.no_award(id, now, out),
        }
    }

    fn award(&mut self, id: TaskId, key: WorkerKey, reason: String, out: &mut Vec<Output>) {
        let deps: Vec<DepOutput> = self.tasks[&id]
            .task
            .dependencies
            .iter()
            .filter_map(|d| {
                let dep = self.tasks.get(d)?;
                Some(DepOutput {
                    id: *d,
                    name: dep.task.name.clone(),
                    output: dep.output.clone()?,
                })
            })
            .collect();
        if let Some(w) = self.workers.get_mut(&key) {
            w.load += 1;
        }
        let timeout = self.run_timeout(&self.tasks[&id].task);
        let e = self.tasks.get_mut(&id).expect("awarded task exists");
        e.attempts += 1;
        e.no_bids_since = None;
        let bids: Vec<BidRecord> = std::mem::take(&mut e.bids)
            .into_iter()
            .filter(|(_, willing)| *willing)
            .map(|(b, _)| b)
            .collect();
        e.auction = Some(AuctionRecord {
            bids,
            reason,
            rounds: e.round,
        });
        e.worker = Some(key.clone());
        e.phase = Phase::Assigned { worker: key.clone() };
        self.assign.entry(key.0.clone()).or_default().push(Assignment {
            task: id,
            attempt: e.attempts,
            worker: key.1,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            input: e.task.input.clone(),
            deps,
            timeout_ms: timeout.map(|d| d.as_millis() as u64),
        });
        out.push(Output::Changed {
            id,
            status: TaskStatus::Assigned,
        });
    }

    /// An auction closed without a winner.
    fn no_award(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        let e = &self.tasks[&id];
        let (role, difficulty) = (e.task.role.clone(), e.task.difficulty);
        let capable: Vec<&WorkerState> = self
            .workers
            .values()
            .filter(|w| w.spec.role == role && w.spec.skill >= difficulty)
            .collect();
        if capable.is_empty() {
            self.park(id, now);
            out.push(Output::Changed {
                id,
                status: TaskStatus::Pending,
            });
            return;
        }
        if capable.iter().all(|w| w.load >= w.spec.capacity) {
            // Everyone able is busy: wait in line for a slot, no deadline.
            self.tasks.get_mut(&id).expect("exists").no_bids_since = None;
            self.requeue(id, now, out);
            return;
        }
        let waited = now.saturating_sub(e.no_bids_since.unwrap_or(e.ready_at));
        if waited >= self.cfg.no_worker_timeout {
            let err = TaskError::NoBids {
                role,
                difficulty,
                waited_ms: waited.as_millis() as u64,
            };
            self.fail(id, err, now, out);
            return;
        }
        let shift = e.round.saturating_sub(1).min(16);
        let delay = (self.cfg.retry_backoff * (1u32 << shift)).min(self.cfg.max_retry_backoff);
        let e = self.tasks.get_mut(&id).expect("exists");
        e.phase = Phase::Backoff;
        e.bids.clear();
        self.timers.insert((now + delay, TimerKind::Retry, id));
        out.push(Output::Changed {
            id,
            status: TaskStatus::Pending,
        });
    }

    fn deadline(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        let e = &self.tasks[&id];
        let best_skill = self.best_skill(&e.task.role);
        let err = TaskError::NoCapableWorker {
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            best_skill,
            waited_ms: now.saturating_sub(e.ready_at).as_millis() as u64,
        };
        self.fail(id, err, now, out);
    }

    fn complete(&mut self, id: TaskId, output: Payload, now: Duration, out: &mut Vec<Output>) {
        let e = self.tasks.get_mut(&id).expect("completed task exists");
        e.phase = Phase::Completed;
        e.output = Some(output);
        e.finished_at = Some(now);
        self.unfinished -= 1;
        out.push(Output::Changed {
            id,
            status: TaskStatus::Completed,
        });
        for d in std::mem::take(&mut e.dependents) {
            let Some(dep) = self.tasks.get_mut(&d) else {
                continue;
            };
            if dep.phase != Phase::Waiting {
                continue;
            }
            dep.waiting_on -= 1;
            if dep.waiting_on == 0 {
                self.make_ready(d, now);
            }
        }
    }

    /// Fails a task and, transitively, everything that depends on it.
    fn fail(&mut self, id: TaskId, error: TaskError, now: Duration, out: &mut Vec<Output>) {
        let mut stack = vec![(id, error)];
        while let Some((id, error)) = stack.pop() {
            let Some(e) = self.tasks.get_mut(&id) else {
                continue;
            };
            if matches!(e.phase, Phase::Completed | Phase::Failed) {
                continue;
            }
            let reserved = match &e.phase {
                Phase::Announced { reserved, .. } => reserved.clone(),
                _ => None,
            };
            e.phase = Phase::Failed;
            e.error = Some(error);
            e.finished_at = Some(now);
            let name = e.task.name.clone();
            let dependents = std::mem::take(&mut e.dependents);
            self.unfinished -= 1;
            self.release(&reserved);
            out.push(Output::Changed {
                id,
                status: TaskStatus::Failed,
            });
            for d in dependents {
                stack.push((
                    d,
                    TaskError::DependencyFailed {
                        id,
                        name: name.clone(),
                    },
                ));
            }
        }
    }

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
        Phase::Waiting | Phase::Queued | Phase::Parked | Phase::Backoff => TaskStatus::Pending,
        Phase::Announced { .. } => TaskStatus::Announced,
        Phase::Assigned { .. } => TaskStatus::Assigned,
        Phase::Running { .. } => TaskStatus::Running,
        Phase::Completed => TaskStatus::Completed,
        Phase::Failed => TaskStatus::Failed,
    }
}
