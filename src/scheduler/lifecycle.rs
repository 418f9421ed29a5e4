//! A task's life outside its auctions: submission, the worker's answer to
//! an award, its report, what follows a failed or lost attempt (retry,
//! poison, failure), cancellation, and the timers that end waits.

use std::time::Duration;

use super::events::{AttemptEnd, Event, TaskEnd};
use super::state::{End, LeaseCheck, Phase, RunSeen, Slot, Stage, TimerKind};
use super::{dag, CancelOutcome, Report, Scheduler, SubmitError};
use crate::task::{Task, TaskError, TaskId};

impl Scheduler {
    pub(super) fn submit(&mut self, tasks: Vec<Task>, now: Duration) -> Result<Vec<TaskId>, SubmitError> {
        if self.unfinished + tasks.len() > self.cfg.max_unfinished {
            return Err(SubmitError::Full {
                held: self.unfinished,
                max: self.cfg.max_unfinished,
            });
        }
        // An id stays taken after its task is evicted (while remembered).
        if let Some(t) = tasks.iter().find(|t| self.evicted.contains(&t.id)) {
            return Err(SubmitError::DuplicateId {
                id: t.id,
                name: t.name.clone(),
            });
        }
        let limits = dag::Limits {
            max_payload: self.cfg.max_payload,
            max_batch: self.cfg.max_batch,
        };
        let order = dag::validate(&tasks, |id| self.index.contains_key(id), limits).map_err(|e| match e {
            SubmitError::UnknownDependency { task, dependency } if self.evicted.contains(&dependency) => {
                SubmitError::EvictedDependency { task, dependency }
            }
            e => e,
        })?;
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let mut batch: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
        let ordered = order.iter().filter_map(|&i| batch[i].take());
        let tasks = ordered.map(|t| self.resolve_defaults(t)).collect();
        self.emit(Event::TasksSubmitted {
            at_ms: Self::ms(now),
            tasks,
        });
        Ok(ids)
    }

    /// Fills the fields a task left to the admin, so that the ledger says
    /// exactly what applies: `None` for a timeout means no limit.
    fn resolve_defaults(&self, mut t: Task) -> Task {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        let pick = |v: Option<u64>, default: Option<Duration>| v.or(ms(default)).filter(|&v| v > 0);
        t.timeout_ms = pick(t.timeout_ms, self.cfg.default_timeout);
        t.queue_timeout_ms = pick(t.queue_timeout_ms, self.cfg.default_queue_timeout);
        t.deadline_ms = pick(t.deadline_ms, self.cfg.default_deadline);
        t.retries = Some(t.retries.unwrap_or(self.cfg.default_retries));
        t.max_attempts = Some(t.max_attempts.unwrap_or(self.cfg.default_max_attempts).max(1));
        t
    }

    pub(super) fn assign_answer(
        &mut self,
        node: &crate::task::NodeId,
        id: TaskId,
        attempt: u32,
        accepted: bool,
        now: Duration,
    ) {
        let Some(slot) = self.slot(&id) else { return };
        let Phase::Assigned { worker, attempt: a } = self.tasks[slot].phase else {
            return;
        };
        if self.workers[worker].node != *node || a != attempt {
            return;
        }
        if accepted {
            self.tasks[slot].soft.refusals = 0;
            self.emit(Event::AttemptAccepted { task: id, attempt });
            return;
        }
        // Back off as after an auction without a usable bid, longer with
        // each refusal in a row, and let another bidder win next.
        self.emit(Event::AttemptRefused { task: id, attempt });
        let soft = &mut self.tasks[slot].soft;
        soft.refusals += 1;
        soft.refused_by = Some(worker);
        let refusals = soft.refusals;
        // Not given more unasked until its node says something again.
        self.workers[worker].standing_off = true;
        self.back_off(slot, self.auction_delay(refusals), now);
    }

    pub(super) fn report(&mut self, node: &crate::task::NodeId, r: Report, now: Duration) {
        let current = self.slot(&r.task).and_then(|slot| {
            let (worker, attempt) = self.tasks[slot].phase.holder()?;
            let w = &self.workers[worker];
            let same = w.node == *node && w.spec.name == r.worker && attempt == r.attempt;
            same.then_some((slot, attempt))
        });
        let Some((slot, attempt)) = current else {
            // A stale attempt (one recorded result per task); if the admin
            // ended it, its slot is free now.
            return self.drained(node, r.task, r.attempt);
        };
        let end = match r.outcome {
            Ok(output) => AttemptEnd::Completed(output),
            Err(f) => match f.timeout_ms {
                Some(timeout_ms) => AttemptEnd::TimedOut { timeout_ms },
                None => AttemptEnd::Failed(f),
            },
        };
        let completed = matches!(end, AttemptEnd::Completed(_));
        self.emit(Event::AttemptFinished {
            at_ms: Self::ms(now),
            task: r.task,
            attempt,
            end,
            run_ms: Some(r.run_ms),
        });
        if !completed {
            self.after_attempt(slot, now);
        }
    }

    /// Decides what follows an attempt that ended without completing: a
    /// retry, another award, or the end of the task.
    pub(super) fn after_attempt(&mut self, slot: Slot, now: Duration) {
        let e = &self.tasks[slot];
        let Some(last) = e.history.last() else { return };
        let worker = self.workers[last.worker].spec.name.clone();
        let task = e.task.id;
        let error = match &last.end {
            End::Lost { .. } => {
                let lost = e
                    .history
                    .iter()
                    .filter(|a| matches!(a.end, End::Lost { .. }))
                    .count() as u32;
                let max_attempts = e.task.max_attempts.unwrap_or(1);
                if lost < max_attempts {
                    return; // back in wait for another award
                }
                TaskError::Poison {
                    max_attempts,
                    attempts: self.history_of(e),
                }
            }
            End::Failed { message, retryable } => {
                let error = TaskError::Processing {
                    worker,
                    message: message.to_string(),
                };
                match self.retry_after(slot, *retryable) {
                    Some(delay) => return self.schedule_retry(task, now + delay),
                    None => error,
                }
            }
            End::TimedOut { timeout_ms } => {
                let error = TaskError::Timeout {
                    worker,
                    timeout_ms: *timeout_ms,
                };
                match self.retry_after(slot, true) {
                    Some(delay) => return self.schedule_retry(task, now + delay),
                    None => error,
                }
            }
            // Back in wait for another award, not counted as lost.
            End::Undelivered { .. } => return,
            End::Running | End::Completed | End::Aborted { .. } => return,
        };
        self.emit(Event::TaskEnded {
            at_ms: Self::ms(now),
            task,
            end: TaskEnd::Failed(error),
        });
    }

    fn schedule_retry(&mut self, task: TaskId, until: Duration) {
        let until_ms = Self::ms(until);
        self.emit(Event::RetryScheduled { task, until_ms });
    }

    /// The delay before the next retry of a failed attempt, or `None` when
    /// no retry is left (or the failure was permanent): `retry_delay`
    /// doubling per failure up to `max_retry_delay`, with ±25 % jitter drawn
    /// from the task id and failure count (no randomness in the core).
    fn retry_after(&self, slot: Slot, retryable: bool) -> Option<Duration> {
        let e = &self.tasks[slot];
        let failed = |a: &&super::state::Attempt| matches!(a.end, End::Failed { .. } | End::TimedOut { .. });
        let failures = e.history.iter().filter(failed).count() as u32;
        if !retryable || failures > e.task.retries.unwrap_or(0) {
            return None;
        }
        let base = self
            .cfg
            .retry_delay
            .saturating_mul(1 << failures.saturating_sub(1).min(20));
        let base = base.min(self.cfg.max_retry_delay);
        let (hi, lo) = e.task.id.0.as_u64_pair();
        let h = crate::task::mix64(hi ^ lo ^ u64::from(failures));
        // 0.75 + 0.5 * h/2^64, in thousandths.
        let per_mille = 750 + (h % 501);
        Some((base * per_mille as u32 / 1000).min(self.cfg.max_retry_delay))
    }

    /// Cancels one task: a running attempt is aborted, dependents follow
    /// their trigger rules.
    pub(super) fn cancel(&mut self, id: &TaskId, now: Duration) -> CancelOutcome {
        let Some(slot) = self.slot(id) else {
            return match self.evicted.contains(id) {
                true => CancelOutcome::Evicted,
                false => CancelOutcome::Unknown,
            };
        };
        if self.tasks[slot].phase.is_final() {
            return CancelOutcome::AlreadyFinished(self.status_at(&self.tasks[slot]));
        }
        self.abort_attempt(slot, "the task was cancelled", now);
        self.emit(Event::TaskEnded {
            at_ms: Self::ms(now),
            task: *id,
            end: TaskEnd::Cancelled("cancelled by a client".into()),
        });
        CancelOutcome::Cancelled
    }

    /// Stops the current attempt, if any: the worker is told, the ledger
    /// records it as aborted.
    fn abort_attempt(&mut self, slot: Slot, reason: &str, now: Duration) {
        let reason = reason.to_string();
        self.end_attempt(slot, AttemptEnd::Aborted { reason }, now);
    }

    /// Ends the current attempt, if any, as the admin decided (lost, timed
    /// out, aborted, or never started): the worker's node is told to stop
    /// it, and the ledger records how it ended. False when no attempt was
    /// held.
    pub(super) fn end_attempt(&mut self, slot: Slot, end: AttemptEnd, now: Duration) -> bool {
        let Some((worker, attempt)) = self.tasks[slot].phase.holder() else {
            return false;
        };
        let task = self.tasks[slot].task.id;
        let node = self.workers[worker].node.clone();
        self.abort.entry(node).or_default().push((task, attempt));
        self.start_drain(worker, task, attempt, now);
        self.record_end(slot, end, now)
    }

    /// Records how the current attempt ended, if any, without telling its
    /// node: for an attempt its node says it never got, which needs no
    /// stopping. False when no attempt was held.
    pub(super) fn record_end(&mut self, slot: Slot, end: AttemptEnd, now: Duration) -> bool {
        let Some((_, attempt)) = self.tasks[slot].phase.holder() else {
            return false;
        };
        let task = self.tasks[slot].task.id;
        self.emit(Event::AttemptFinished {
            at_ms: Self::ms(now),
            task,
            attempt,
            end,
            run_ms: None,
        });
        true
    }

    /// Fires every timer and first lease check due by `now`, earliest
    /// first.
    pub(super) fn fire_timers(&mut self, now: Duration) {
        loop {
            let timer = self.timers.first().map(|t| t.at).filter(|&at| at <= now);
            let lease = self.leases.next_due().filter(|&at| at <= now);
            match (timer, lease) {
                (Some(t), Some(l)) if t <= l => self.fire_timer(now),
                (_, Some(_)) => {
                    if let Some(d) = self.leases.pop_due(now) {
                        let check = LeaseCheck::Line { seq: d.seq };
                        self.lease_due(d.slot, check, d.attempt, now);
                    }
                }
                (Some(_), None) => self.fire_timer(now),
                (None, None) => break,
            }
        }
    }

    /// Fires the first timer of the timer set.
    fn fire_timer(&mut self, now: Duration) {
        let Some(t) = self.timers.pop_first() else { return };
        if t.kind == TimerKind::Retention {
            if self.retention_due == Some(t.at) {
                self.retention_due = None;
            }
            return; // `retain` runs after every step
        }
        // The task may have been evicted, and its slot reused.
        if self
            .tasks
            .get(t.slot.0 as usize)
            .is_some_and(|e| e.task.id == t.id)
        {
            self.timer(t.slot, t.at, t.kind, now);
        }
    }

    fn timer(&mut self, slot: Slot, at: Duration, kind: TimerKind, now: Duration) {
        let e = &self.tasks[slot];
        match kind {
            TimerKind::CloseAuction => {
                if matches!(e.soft.stage, Stage::Announced { closes_at, .. } if closes_at == at) {
                    self.close_auction(slot, now);
                }
            }
            TimerKind::Backoff => {
                if e.soft.stage == (Stage::Backoff { until: at }) {
                    self.enqueue(slot, now);
                }
            }
            TimerKind::Retry => {
                if e.phase == (Phase::Retrying { until: at }) && e.soft.stage == Stage::Idle {
                    self.enqueue(slot, now);
                }
            }
            TimerKind::NoWorker => {
                if matches!(e.soft.stage, Stage::Parked { .. }) {
                    self.no_capable_worker(slot, now);
                }
            }
            TimerKind::QueueTimeout => {
                let limit = e.task.queue_timeout_ms.unwrap_or(0);
                if e.phase.awaits_award() && e.ready_at + Duration::from_millis(limit) == at {
                    self.end_failed(slot, TaskError::QueueTimeout { timeout_ms: limit }, now);
                }
            }
            TimerKind::Deadline => {
                if !e.phase.is_final() {
                    let deadline_ms = e.task.deadline_ms.unwrap_or(0);
                    self.abort_attempt(slot, "the task passed its deadline", now);
                    self.end_failed(slot, TaskError::DeadlineExceeded { deadline_ms }, now);
                }
            }
            TimerKind::RunTimeout { attempt } | TimerKind::RunCheck { attempt } => {
                if e.phase.holder().map(|h| h.1) == Some(attempt) {
                    self.run_timeout(slot, now);
                }
            }
            TimerKind::Lease { attempt } => {
                self.lease_due(slot, LeaseCheck::Timer { due: at, attempt }, attempt, now);
            }
            TimerKind::Retention => {}
        }
    }

    /// The admin's backstop: the worker's report of a timed-out attempt
    /// never came. It counts from the attempt's start, as the worker does:
    /// an attempt its node says waits in a queue, or says started later
    /// than its award, is checked again one timeout and lease after that;
    /// so is one whose node a new admin has not heard from yet.
    fn run_timeout(&mut self, slot: Slot, now: Duration) {
        let timeout_ms = self.tasks[slot].task.timeout_ms.unwrap_or(0);
        let Some((worker, attempt)) = self.tasks[slot].phase.holder() else {
            return;
        };
        let span = Duration::from_millis(timeout_ms) + self.cfg.lease;
        let node = &self.workers[worker].node;
        let unheard = self.takeover.as_ref().is_some_and(|t| t.silent.contains(node));
        let later = match self.tasks[slot].soft.run {
            RunSeen::Waiting => Some(now + span),
            RunSeen::Started(since) => Some(since + span).filter(|&due| due > now),
            RunSeen::Unknown => unheard.then_some(now + self.cfg.lease),
        };
        if let Some(due) = later {
            return self.set_timer(due, TimerKind::RunCheck { attempt }, slot);
        }
        if self.end_attempt(slot, AttemptEnd::TimedOut { timeout_ms }, now) {
            self.after_attempt(slot, now);
        }
    }

    pub(super) fn end_failed(&mut self, slot: Slot, error: TaskError, now: Duration) {
        let task = self.tasks[slot].task.id;
        self.emit(Event::TaskEnded {
            at_ms: Self::ms(now),
            task,
            end: TaskEnd::Failed(error),
        });
    }

    fn no_capable_worker(&mut self, slot: Slot, now: Duration) {
        let e = &self.tasks[slot];
        let err = TaskError::NoCapableWorker {
            role: self.roles[e.role].name.to_string(),
            difficulty: e.task.difficulty,
            best_skill: self.best_skill(e.role),
            waited_ms: now.saturating_sub(e.ready_at).as_millis() as u64,
        };
        self.end_failed(slot, err, now);
    }
}
