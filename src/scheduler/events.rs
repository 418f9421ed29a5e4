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

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::state::{Attempt, Award, End, Phase, TimerKind, WorkerId};
use super::{AwardReason, Failure, Scheduler};
use crate::task::{NodeId, Payload, Task, TaskError, TaskId, TaskStatus, WorkerSpec};

/// Version of the event format; stored with every encoded event.
pub const EVENT_VERSION: u16 = 5;

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
        /// The bids of the deciding round (for an award from standing bids:
        /// the standing bids that reached the task), each with its verdict.
        bids: Vec<BidSeen>,
        /// Why the winner won.
        reason: AwardReason,
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
    /// Never ran: awarded by an admin that lost its office before the
    /// award was sent, or waiting in the queue of a worker that was lost
    /// (its node's renewals said it had not started). Awarded again; not a
    /// lost attempt (it does not count towards `max_attempts`).
    Undelivered {
        /// What was seen.
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

/// A bid as the award event records it, with how it fared.
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
    /// How it fared in the award.
    pub verdict: crate::task::BidVerdict,
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

/// Milliseconds of an event as the scheduler's time.
pub(super) fn at(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl Scheduler {
    /// Applies one event to the ledger state: the only code that changes it.
    /// Events that do not fit the state (a stale attempt, an unknown task)
    /// change nothing.
    pub fn apply(&mut self, event: &Event) {
        self.apply_event(Cow::Borrowed(event));
    }

    /// [`Scheduler::apply`], taking the event's payloads instead of copying
    /// them when it owns the event (the admin's own decisions): the same
    /// changes either way.
    pub(super) fn apply_event(&mut self, event: Cow<'_, Event>) {
        let event = match event {
            Cow::Owned(Event::TasksSubmitted { at_ms, tasks }) => {
                for t in tasks {
                    self.insert(Cow::Owned(t), at(at_ms));
                }
                return;
            }
            Cow::Owned(Event::AttemptAwarded {
                at_ms,
                task,
                attempt,
                worker,
                bids,
                reason,
                rounds,
            }) => {
                let award = Award {
                    bids: bids.into_boxed_slice(),
                    reason,
                    rounds,
                };
                return self.apply_award(at_ms, &task, attempt, WorkerId(worker), award);
            }
            Cow::Owned(Event::AttemptFinished {
                at_ms,
                task,
                attempt,
                end,
                run_ms,
            }) => return self.apply_attempt_finished(at_ms, &task, attempt, Cow::Owned(end), run_ms),
            event => event,
        };
        match &*event {
            Event::TasksSubmitted { at_ms, tasks } => {
                for t in tasks {
                    self.insert(Cow::Borrowed(t), at(*at_ms));
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
                let award = Award {
                    bids: bids.as_slice().into(),
                    reason: reason.clone(),
                    rounds: *rounds,
                };
                self.apply_award(*at_ms, task, *attempt, WorkerId(*worker), award);
            }
            Event::AttemptAccepted { task, attempt } => {
                let Some(slot) = self.slot(task) else { return };
                let e = &mut self.tasks[slot];
                if let Phase::Assigned { worker, attempt: a } = e.phase {
                    if a == *attempt {
                        e.phase = Phase::Running { worker, attempt: a };
                        // Running, or queued behind the worker's running tasks.
                        let status = self.status_at(&self.tasks[slot]);
                        self.changed(slot, status);
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
            } => self.apply_attempt_finished(*at_ms, task, *attempt, Cow::Borrowed(end), *run_ms),
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
                self.set_timer(until, TimerKind::Retry, slot);
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

    fn apply_award(&mut self, at_ms: u64, task: &TaskId, attempt: u32, worker: WorkerId, award: Award) {
        let Some(slot) = self.slot(task) else { return };
        if !self.tasks[slot].phase.awaits_award() || worker.0 as usize >= self.workers.len() {
            return;
        }
        self.leave_auction(slot);
        self.stop_waiting(slot);
        self.workers[worker].load += 1;
        self.holding.entry(worker).or_default().insert(slot);
        let timeout = self.tasks[slot].task.timeout_ms.filter(|&t| t > 0);
        let e = &mut self.tasks[slot];
        e.awards = attempt;
        e.phase = Phase::Assigned { worker, attempt };
        // Most tasks run once: no room for four attempts up front.
        e.history.reserve_exact(1);
        e.history.push(Attempt {
            number: attempt,
            worker,
            started_ms: at_ms,
            duration_ms: None,
            end: End::Running,
        });
        e.award = Some(Box::new(award));
        if let Some(t) = timeout {
            // Backstop: the worker enforces the timeout; this fires only if
            // its report never comes.
            let due = at(at_ms) + at(t) + self.cfg.lease;
            self.set_timer(due, TimerKind::RunTimeout { attempt }, slot);
        }
        self.changed(slot, TaskStatus::Assigned);
    }

    fn apply_attempt_finished(
        &mut self,
        at_ms: u64,
        task: &TaskId,
        attempt: u32,
        end: Cow<'_, AttemptEnd>,
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
            h.end = match &*end {
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
                AttemptEnd::Undelivered { reason } => End::Undelivered {
                    reason: reason.as_str().into(),
                },
            };
        }
        let output = match end {
            Cow::Owned(AttemptEnd::Completed(output)) => Some(output),
            Cow::Borrowed(AttemptEnd::Completed(output)) => Some(output.clone()),
            _ => None,
        };
        match output {
            Some(output) => self.finish(slot, Phase::Completed { output }, at(at_ms)),
            None => {
                self.tasks[slot].phase = Phase::Ready;
                self.set_ready_at(slot, at(at_ms));
                self.ready.push(slot);
                self.changed(slot, TaskStatus::Pending);
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
