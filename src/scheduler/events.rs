//! The ledger: every change to the scheduler's durable state is an
//! [`Event`], and [`Scheduler::apply`] is the only code that makes it.
//!
//! Handlers (in the other files) *decide*: they look at inputs, the time,
//! the auction in flight and the award policy, and emit events. `apply`
//! *records*: it changes the ledger state exactly as the event says, plus
//! the consequences that follow from the ledger alone — a dependent becomes
//! ready when its last dependency completes, a failure cascades through the
//! dependents' trigger rules, a worker's load follows its attempts. The
//! same events in the same order therefore rebuild the same state on any
//! machine, which is what the next layer replicates.
//!
//! Where the line is drawn: auction rounds, bids in flight, slot
//! reservations, backoffs after rounds without a usable bid, and lease
//! renewals stay outside the ledger. They are this admin's own view of work
//! in progress, change many times per task, and a new admin rebuilds them
//! by simply auctioning again and granting every running attempt a fresh
//! lease. Every *decision* taken from them (an award, a lost attempt, a
//! timeout) is an event.
//!
//! Times in events are wall-clock milliseconds since the Unix epoch, given
//! to the scheduler as input; the scheduler never reads a clock.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{Attempt, Award, End, Entry, Phase, SeenBid, Slot, Stage, TimerKind, WorkerId};
use super::{Failure, Scheduler};
use crate::task::{NodeId, Payload, Task, TaskError, TaskId, TaskStatus, Trigger, WorkerSpec};

/// Version of the event format; stored with every encoded event.
pub const EVENT_VERSION: u16 = 1;

/// One change to the scheduler's ledger. See the module documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A batch was accepted whole. Tasks come in dependency order, with
    /// every default resolved, so a replica needs no configuration to read
    /// them.
    TasksSubmitted {
        /// Wall-clock milliseconds.
        at_ms: u64,
        /// The tasks.
        tasks: Vec<Task>,
    },
    /// A node declared the workers it hosts; this replaces its earlier list.
    /// Workers get registry numbers in the order they are first named.
    WorkersRegistered {
        /// The node.
        node: NodeId,
        /// Its workers (capacity at least 1).
        workers: Vec<WorkerSpec>,
    },
    /// A node is gone, with its workers. Their attempts ended before (as
    /// lost).
    NodeLeft {
        /// The node.
        node: NodeId,
    },
    /// A task was awarded to a worker as a new attempt.
    AttemptAwarded {
        /// Wall-clock milliseconds.
        at_ms: u64,
        /// The task.
        task: TaskId,
        /// The attempt number (one more than the task's previous award).
        attempt: u32,
        /// The winner's registry number.
        worker: u32,
        /// The willing bids of the deciding round.
        bids: Vec<BidSeen>,
        /// Why the winner won.
        reason: String,
        /// Auction rounds it took.
        rounds: u32,
    },
    /// The worker took the award and runs it.
    AttemptAccepted {
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
    },
    /// The worker refused the award (full, or shutting down): the task waits
    /// for another award, and the refused attempt leaves no trace in the
    /// task's history.
    AttemptRefused {
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
    },
    /// An attempt ended. `Completed` completes the task; any other end puts
    /// it back in wait for an award, unless a `RetryScheduled` or
    /// `TaskEnded` follows.
    AttemptFinished {
        /// Wall-clock milliseconds.
        at_ms: u64,
        /// The task.
        task: TaskId,
        /// The attempt.
        attempt: u32,
        /// How it ended.
        end: AttemptEnd,
        /// Milliseconds the worker says it spent, when it reported.
        run_ms: Option<u64>,
    },
    /// A retryable failure will be retried after a delay.
    RetryScheduled {
        /// The task.
        task: TaskId,
        /// Wall-clock milliseconds when it may be awarded again.
        until_ms: u64,
    },
    /// A task ended without completing: failed, cancelled or skipped. Its
    /// dependents follow their trigger rules.
    TaskEnded {
        /// Wall-clock milliseconds.
        at_ms: u64,
        /// The task.
        task: TaskId,
        /// How.
        end: TaskEnd,
    },
    /// Finished tasks dropped from memory after their retention.
    TasksEvicted {
        /// The tasks.
        ids: Vec<TaskId>,
    },
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AttemptEnd {
    /// The worker reported an output.
    Completed(Payload),
    /// The worker reported a failure.
    Failed(Failure),
    /// The admin's backstop for the execution timeout fired.
    TimedOut {
        /// The timeout.
        timeout_ms: u64,
    },
    /// The worker was lost: its node left, or its lease ran out.
    Lost {
        /// What was seen.
        reason: String,
    },
    /// Stopped by cancellation or by the task's deadline.
    Aborted {
        /// Why.
        reason: String,
    },
}

/// How a task ended without completing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TaskEnd {
    /// Failed with this error.
    Failed(TaskError),
    /// Cancelled, for this reason.
    Cancelled(String),
}

/// A willing bid as the award event records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidSeen {
    /// The bidder's registry number.
    pub worker: u32,
    /// Its registered skill.
    pub skill: u32,
    /// The load it declared.
    pub load: u32,
    /// Its registered capacity.
    pub capacity: u32,
}

impl Event {
    /// Encodes the event with its version (bincode).
    pub fn encode(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
        bincode::serde::encode_to_vec((EVENT_VERSION, self), crate::task::bincode_config())
    }

    /// Decodes an event written by [`Event::encode`]; `None` for another
    /// version, garbage or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Option<Event> {
        let cfg = crate::task::bincode_config().with_limit::<{ 64 << 20 }>();
        let ((version, event), used): ((u16, Event), usize) =
            bincode::serde::decode_from_slice(bytes, cfg).ok()?;
        (version == EVENT_VERSION && used == bytes.len()).then_some(event)
    }
}

fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl Scheduler {
    /// Applies one event to the ledger state: the only code that changes it.
    /// Events that do not fit the state (a stale attempt, an unknown task)
    /// change nothing.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::TasksSubmitted { at_ms, tasks } => {
                for t in tasks {
                    self.insert(t.clone(), at(*at_ms));
                }
            }
            Event::WorkersRegistered { node, workers } => self.set_workers(node, workers),
            Event::NodeLeft { node } => self.set_workers(node, &[]),
            Event::AttemptAwarded {
                at_ms,
                task,
                attempt,
                worker,
                bids,
                reason,
                rounds,
            } => {
                let Some(slot) = self.slot(task) else { return };
                let worker = WorkerId(*worker);
                if !self.tasks[slot].phase.awaits_award() || worker.0 as usize >= self.workers.len() {
                    return;
                }
                self.leave_auction(slot);
                self.stop_waiting(slot);
                self.workers[worker].load += 1;
                self.holding.entry(worker).or_default().insert(slot);
                let timeout = self.tasks[slot].task.timeout_ms.filter(|&t| t > 0);
                let e = &mut self.tasks[slot];
                e.awards = *attempt;
                e.phase = Phase::Assigned {
                    worker,
                    attempt: *attempt,
                };
                e.history.push(Attempt {
                    number: *attempt,
                    worker,
                    started_ms: *at_ms,
                    duration_ms: None,
                    end: End::Running,
                });
                let bids = bids.iter().map(|b| SeenBid {
                    worker: WorkerId(b.worker),
                    skill: b.skill,
                    load: b.load,
                    capacity: b.capacity,
                    willing: true,
                });
                e.award = Some(Box::new(Award {
                    bids: bids.collect(),
                    reason: reason.as_str().into(),
                    rounds: *rounds,
                }));
                let id = e.task.id;
                if let Some(t) = timeout {
                    // Backstop: the worker enforces the timeout; this fires
                    // only if its report never comes.
                    let due = at(*at_ms) + at(t) + self.cfg.lease;
                    self.timers
                        .insert((due, TimerKind::RunTimeout { attempt: *attempt }, id));
                }
                self.changed(slot, TaskStatus::Assigned);
            }
            Event::AttemptAccepted { task, attempt } => {
                let Some(slot) = self.slot(task) else { return };
                let e = &mut self.tasks[slot];
                if let Phase::Assigned { worker, attempt: a } = e.phase {
                    if a == *attempt {
                        e.phase = Phase::Running { worker, attempt: a };
                        self.changed(slot, TaskStatus::Running);
                    }
                }
            }
            Event::AttemptRefused { task, attempt } => {
                let Some(slot) = self.slot(task) else { return };
                if let Phase::Assigned { worker, attempt: a } = self.tasks[slot].phase {
                    if a == *attempt {
                        self.release_worker(worker, slot);
                        let e = &mut self.tasks[slot];
                        e.history.pop();
                        e.phase = Phase::Ready;
                        // Still waiting since it became ready: its queue
                        // timer may have fired (and been dropped) meanwhile.
                        let since = e.ready_at;
                        self.set_ready_at(slot, since);
                        self.ready.push(slot);
                        self.changed(slot, TaskStatus::Pending);
                    }
                }
            }
            Event::AttemptFinished {
                at_ms,
                task,
                attempt,
                end,
                run_ms,
            } => self.apply_attempt_finished(*at_ms, task, *attempt, end, *run_ms),
            Event::RetryScheduled { task, until_ms } => {
                let Some(slot) = self.slot(task) else { return };
                let e = &mut self.tasks[slot];
                if e.phase != Phase::Ready {
                    return;
                }
                self.leave_auction(slot);
                self.stop_waiting(slot);
                let e = &mut self.tasks[slot];
                let until = at(*until_ms);
                e.phase = Phase::Retrying { until };
                let id = e.task.id;
                self.timers.insert((until, TimerKind::Retry, id));
                self.set_ready_at(slot, until);
                self.changed(slot, TaskStatus::Pending);
            }
            Event::TaskEnded { at_ms, task, end } => {
                let Some(slot) = self.slot(task) else { return };
                let phase = match end {
                    TaskEnd::Failed(error) => Phase::Failed {
                        error: Box::new(error.clone()),
                    },
                    TaskEnd::Cancelled(reason) => Phase::Cancelled {
                        reason: reason.as_str().into(),
                    },
                };
                self.finish(slot, phase, at(*at_ms));
            }
            Event::TasksEvicted { ids } => {
                for id in ids {
                    self.evict(id);
                }
            }
        }
    }

    fn apply_attempt_finished(
        &mut self,
        at_ms: u64,
        task: &TaskId,
        attempt: u32,
        end: &AttemptEnd,
        run_ms: Option<u64>,
    ) {
        let Some(slot) = self.slot(task) else { return };
        let Some((worker, a)) = self.tasks[slot].phase.holder() else {
            return;
        };
        if a != attempt {
            return;
        }
        self.release_worker(worker, slot);
        let e = &mut self.tasks[slot];
        e.run_ms = run_ms.or(e.run_ms);
        if let Some(h) = e.history.last_mut() {
            h.duration_ms = Some(at_ms.saturating_sub(h.started_ms));
            h.end = match end {
                AttemptEnd::Completed(_) => End::Completed,
                AttemptEnd::Failed(f) => End::Failed {
                    message: f.message.as_str().into(),
                    retryable: f.retryable,
                },
                AttemptEnd::TimedOut { timeout_ms } => End::TimedOut {
                    timeout_ms: *timeout_ms,
                },
                AttemptEnd::Lost { reason } => End::Lost {
                    reason: reason.as_str().into(),
                },
                AttemptEnd::Aborted { reason } => End::Aborted {
                    reason: reason.as_str().into(),
                },
            };
        }
        match end {
            AttemptEnd::Completed(output) => {
                let phase = Phase::Completed {
                    output: output.clone(),
                };
                self.finish(slot, phase, at(at_ms));
            }
            _ => {
                self.tasks[slot].phase = Phase::Ready;
                self.set_ready_at(slot, at(at_ms));
                self.ready.push(slot);
                self.changed(slot, TaskStatus::Pending);
            }
        }
    }

    /// The slot of a task the ledger holds.
    pub(super) fn slot(&self, id: &TaskId) -> Option<Slot> {
        self.index.get(id).copied()
    }

    /// The worker no longer holds the task's attempt (its timers go too).
    fn release_worker(&mut self, worker: WorkerId, slot: Slot) {
        self.drop_lease(slot);
        let e = &self.tasks[slot];
        if let (Some(a), Some(t)) = (e.history.last(), e.task.timeout_ms.filter(|&t| t > 0)) {
            let due = at(a.started_ms) + at(t) + self.cfg.lease;
            let kind = TimerKind::RunTimeout { attempt: a.number };
            self.timers.remove(&(due, kind, e.task.id));
        }
        let w = &mut self.workers[worker];
        w.load = w.load.saturating_sub(1);
        if let Some(set) = self.holding.get_mut(&worker) {
            set.remove(&slot);
            if set.is_empty() {
                self.holding.remove(&worker);
            }
        }
    }

    /// Removes the timers of a task's wait for an award (queue timeout,
    /// retry delay): it was awarded, or it ended.
    fn stop_waiting(&mut self, slot: Slot) {
        let e = &self.tasks[slot];
        let id = e.task.id;
        if let Some(t) = e.task.queue_timeout_ms.filter(|&t| t > 0) {
            self.timers
                .remove(&(e.ready_at + at(t), TimerKind::QueueTimeout, id));
        }
        if let Phase::Retrying { until } = e.phase {
            self.timers.remove(&(until, TimerKind::Retry, id));
        }
    }

    /// Marks when a task (again) waits for an award; its queue timeout
    /// counts from here.
    fn set_ready_at(&mut self, slot: Slot, when: Duration) {
        let e = &mut self.tasks[slot];
        e.ready_at = when;
        if let Some(t) = e.task.queue_timeout_ms.filter(|&t| t > 0) {
            let id = e.task.id;
            self.timers.insert((when + at(t), TimerKind::QueueTimeout, id));
        }
    }

    /// Adds one task whose dependencies are already in the table.
    fn insert(&mut self, mut task: Task, now: Duration) {
        let deps: Box<[Slot]> = task.dependencies.iter().filter_map(|d| self.slot(d)).collect();
        task.dependencies = Vec::new(); // kept as `deps`
        let role = self.role_id(&task.role);
        let id = task.id;
        let deadline = task.deadline_ms.filter(|&d| d > 0);
        let slot = self.alloc(Entry::new(task, deps.clone(), role, 0, now));
        self.index.insert(id, slot);
        self.unfinished += 1;
        self.recent.push_back(id);
        if self.recent.len() > super::RECENT {
            self.recent.pop_front();
        }
        if let Some(d) = deadline {
            self.timers.insert((now + at(d), TimerKind::Deadline, id));
        }
        let mut on = 0;
        for &d in deps.iter() {
            let dep = &mut self.tasks[d];
            dep.holders += 1;
            if !dep.phase.is_final() {
                dep.dependents.push(slot);
                on += 1;
            }
        }
        self.tasks[slot].phase = Phase::Waiting { on };
        self.changed(slot, TaskStatus::Pending);
        self.settle(slot, now);
    }

    /// Decides a waiting task's fate once its trigger rule can tell: ready,
    /// or ended because of how its dependencies ended. Called at insertion
    /// and whenever a dependency finishes.
    fn settle(&mut self, slot: Slot, now: Duration) {
        let e = &self.tasks[slot];
        let Phase::Waiting { on } = e.phase else { return };
        let rule = e.task.trigger;
        if on > 0 && rule != Trigger::AllSuccess {
            return; // the other rules decide once every dependency finished
        }
        let ended = |p: &Phase| !matches!(p, Phase::Completed { .. }) && p.is_final();
        let first_bad = || e.deps.iter().copied().find(|&d| ended(&self.tasks[d].phase));
        let outcome = match rule {
            // all_success decides at the first dependency that did not complete.
            Trigger::AllSuccess => match first_bad() {
                Some(d) => Some(self.inherit(d)),
                None if on > 0 => None,
                None => Some(Phase::Ready),
            },
            Trigger::AllDone => Some(Phase::Ready),
            Trigger::OneFailed => {
                let failed = e
                    .deps
                    .iter()
                    .any(|&d| matches!(self.tasks[d].phase, Phase::Failed { .. }));
                let cancelled = e
                    .deps
                    .iter()
                    .copied()
                    .find(|&d| matches!(self.tasks[d].phase, Phase::Cancelled { .. }));
                Some(match (failed, cancelled) {
                    (true, _) => Phase::Ready,
                    (false, Some(d)) => self.inherit(d),
                    (false, None) => Phase::Skipped {
                        reason: "no dependency failed".into(),
                    },
                })
            }
        };
        match outcome {
            None => {}
            Some(Phase::Ready) => {
                self.tasks[slot].phase = Phase::Ready;
                self.set_ready_at(slot, now);
                self.ready.push(slot);
            }
            Some(end) => self.finish(slot, end, now),
        }
    }

    /// What an `all_success` dependent becomes when dependency `d` did not
    /// complete.
    fn inherit(&self, d: Slot) -> Phase {
        let dep = &self.tasks[d];
        let (id, name) = (dep.task.id, dep.task.name.clone());
        match &dep.phase {
            Phase::Cancelled { .. } => Phase::Cancelled {
                reason: format!("dependency {name:?} ({id}) was cancelled").into(),
            },
            Phase::Skipped { .. } => Phase::Skipped {
                reason: format!("dependency {name:?} ({id}) was skipped").into(),
            },
            _ => Phase::Failed {
                error: Box::new(TaskError::DependencyFailed { id, name }),
            },
        }
    }

    /// Ends a task and lets its dependents react.
    fn finish(&mut self, slot: Slot, phase: Phase, now: Duration) {
        let mut stack = vec![(slot, phase)];
        while let Some((slot, phase)) = stack.pop() {
            if self.tasks[slot].phase.is_final() {
                continue;
            }
            if let Some((worker, _)) = self.tasks[slot].phase.holder() {
                self.release_worker(worker, slot);
            }
            self.leave_auction(slot);
            if self.tasks[slot].phase.awaits_award() {
                self.stop_waiting(slot);
            }
            let e = &self.tasks[slot];
            if let Some(d) = e.task.deadline_ms.filter(|&d| d > 0) {
                let id = e.task.id;
                self.timers
                    .remove(&(e.submitted_at + at(d), TimerKind::Deadline, id));
            }
            let status = status_of(&phase);
            let e = &mut self.tasks[slot];
            e.phase = phase;
            e.finished_at = Some(now);
            let dependents = std::mem::take(&mut e.dependents);
            self.unfinished -= 1;
            self.finished_bytes += self.tasks[slot].bytes();
            self.changed(slot, status);
            for i in 0..self.tasks[slot].deps.len() {
                let d = self.tasks[slot].deps[i];
                let dep = &mut self.tasks[d];
                dep.holders -= 1;
                // A finished task waits for nothing: it leaves the lists of
                // dependencies still running, which would otherwise notify
                // its slot after it is evicted and reused by another task.
                dep.dependents.retain(|&x| x != slot);
                self.maybe_evictable(d);
            }
            self.maybe_evictable(slot);
            let completed = matches!(self.tasks[slot].phase, Phase::Completed { .. });
            for d in dependents {
                let dep = &mut self.tasks[d];
                let Phase::Waiting { on } = &mut dep.phase else {
                    continue;
                };
                *on -= 1;
                let last = *on == 0;
                if dep.task.trigger == Trigger::AllSuccess && !completed {
                    stack.push((d, self.inherit(slot)));
                } else if last {
                    // Checked once, when the last dependency finished, so a
                    // wide fan-in stays linear.
                    self.settle(d, now);
                }
            }
        }
    }

    /// Queues a finished task for eviction once nothing still needs it.
    fn maybe_evictable(&mut self, slot: Slot) {
        let e = &self.tasks[slot];
        if e.holders == 0 && e.phase.is_final() {
            self.evictable.push_back((slot, e.task.id));
        }
    }

    fn evict(&mut self, id: &TaskId) {
        let Some(slot) = self.slot(id) else { return };
        let e = &self.tasks[slot];
        if !e.phase.is_final() || e.holders > 0 {
            return;
        }
        self.finished_bytes -= e.bytes();
        self.index.remove(id);
        self.free.push(slot);
        self.tasks[slot] = Entry::vacant();
        self.evicted.insert(*id);
        self.evicted_order.push_back(*id);
        if self.evicted_order.len() > self.cfg.retention.remember_evicted {
            if let Some(old) = self.evicted_order.pop_front() {
                self.evicted.remove(&old);
            }
        }
    }

    fn alloc(&mut self, e: Entry) -> Slot {
        match self.free.pop() {
            Some(slot) => {
                self.tasks[slot] = e;
                slot
            }
            None => {
                self.tasks.push(e);
                Slot(self.tasks.len() as u32 - 1)
            }
        }
    }

    /// Replaces a node's worker list in the registry.
    fn set_workers(&mut self, node: &NodeId, specs: &[WorkerSpec]) {
        let gone: Vec<WorkerId> = self.by_node.get(node).map_or_else(Vec::new, |names| {
            let gone = names.iter().filter(|(n, _)| !specs.iter().any(|s| &s.name == *n));
            gone.map(|(_, &id)| id).collect()
        });
        for id in gone {
            self.remove_worker(id);
        }
        for spec in specs {
            let role = self.role_id(&spec.role);
            let id = match self.worker_id(node, &spec.name) {
                Some(id) => id,
                None => self.add_worker(node.clone(), spec.name.clone(), role),
            };
            let old = std::mem::replace(&mut self.workers[id].role, role);
            if old != role {
                self.roles[old].workers.retain(|&w| w != id);
                self.roles[role].workers.push(id);
            }
            let mut spec = spec.clone();
            spec.capacity = spec.capacity.max(1);
            self.workers[id].spec = spec;
        }
        self.roster_changed = true;
    }

    /// Notes a status change for the driver (a repeat of the change just
    /// noted for the same task is dropped).
    pub(super) fn changed(&mut self, slot: Slot, status: TaskStatus) {
        let change = (self.tasks[slot].task.id, status);
        if self.changes.last() != Some(&change) {
            self.changes.push(change);
        }
    }

    /// Takes a task out of the auction layer (it no longer waits for an
    /// award, or waits for a retry delay).
    pub(super) fn leave_auction(&mut self, slot: Slot) {
        let e = &mut self.tasks[slot];
        let stage = std::mem::take(&mut e.soft.stage);
        e.soft.bids.clear();
        let (role, id) = (e.role, e.task.id);
        match stage {
            Stage::Idle => {}
            Stage::Backoff { until } => {
                self.timers.remove(&(until, TimerKind::Backoff, id));
            }
            Stage::Queued { key } => {
                if let Some(q) = self.queues.get_mut(&role) {
                    q.remove(&(key, slot));
                    if q.is_empty() {
                        self.queues.remove(&role);
                    }
                }
            }
            Stage::Parked { seq, deadline } => {
                self.timers.remove(&(deadline, TimerKind::NoWorker, id));
                if let Some(p) = self.parked.get_mut(&role) {
                    p.remove(&(seq, slot));
                    if p.is_empty() {
                        self.parked.remove(&role);
                    }
                }
            }
            Stage::Announced { reserved, closes_at } => {
                self.timers.remove(&(closes_at, TimerKind::CloseAuction, id));
                self.release(reserved);
                if let Some(o) = self.open.get_mut(&role) {
                    o.remove(&slot);
                }
            }
        }
    }
}

/// The status a client sees for a phase (the auction stage refines
/// `Ready`; see `Scheduler::status`).
pub(super) fn status_of(phase: &Phase) -> TaskStatus {
    match phase {
        Phase::Waiting { .. } | Phase::Ready | Phase::Retrying { .. } => TaskStatus::Pending,
        Phase::Assigned { .. } => TaskStatus::Assigned,
        Phase::Running { .. } => TaskStatus::Running,
        Phase::Completed { .. } => TaskStatus::Completed,
        Phase::Failed { .. } => TaskStatus::Failed,
        Phase::Cancelled { .. } => TaskStatus::Cancelled,
        Phase::Skipped { .. } => TaskStatus::Skipped,
    }
}
