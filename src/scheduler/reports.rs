//! Queries: what the scheduler tells clients about tasks and workers.

use std::time::Duration;

use super::state::{self, Award, End, Entry, Phase, Stage, WorkerId};
use super::{events, Lookup, Scheduler};
use crate::task::{
    AttemptOutcome, AttemptRecord, AuctionRecord, BidRecord, TaskId, TaskReport, TaskStatus, WorkerInfo,
};

impl Scheduler {
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
        let output = e.output().cloned();
        let error = self.error_of(e);
        Some(TaskReport {
            id: *id,
            name: e.task.name.clone(),
            role: self.roles[e.role].name.to_string(),
            difficulty: e.task.difficulty,
            status: self.status_at(e),
            worker: last.map(|w| w.spec.name.clone()),
            node: last.map(|w| w.node.clone()),
            attempts: e.history.len() as u32,
            history: self.history_of(e),
            auction: e
                .award
                .as_ref()
                .map(|a| self.auction_record(a, e.task.difficulty)),
            output,
            error,
            elapsed_ms: end.saturating_sub(e.submitted_at).as_millis() as u64,
            run_ms: e.run_ms,
            // A slot evicted and reused holds a later task: never one of
            // this task's dependencies, which came before it.
            dependencies: e
                .deps
                .iter()
                .map(|&d| &self.tasks[d])
                .filter(|d| d.seq < e.seq)
                .map(|d| d.task.id)
                .collect(),
        })
    }

    /// The error a finished task ended with (cancelled and skipped tasks
    /// included), `None` for any other phase.
    pub(super) fn error_of(&self, e: &Entry) -> Option<crate::task::TaskError> {
        use crate::task::TaskError;
        match &e.phase {
            Phase::Failed { error } => Some((**error).clone()),
            Phase::Cancelled { reason } => Some(TaskError::Cancelled {
                reason: reason.to_string(),
            }),
            Phase::Skipped { reason } => Some(TaskError::NotTriggered {
                rule: e.task.trigger,
                reason: reason.to_string(),
            }),
            _ => None,
        }
    }

    /// Every attempt of a task, as reports list them.
    pub(super) fn history_of(&self, e: &Entry) -> Vec<AttemptRecord> {
        e.history.iter().map(|a| self.attempt_record(a)).collect()
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
            // Reported as lost, with its reason; it did not count as one.
            End::Undelivered { reason } => AttemptOutcome::Lost {
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

    fn auction_record(&self, award: &Award, difficulty: u32) -> AuctionRecord {
        let bids: Vec<BidRecord> = award
            .bids
            .iter()
            .map(|b| {
                let w = &self.workers[WorkerId(b.worker)];
                BidRecord {
                    worker: w.spec.name.clone(),
                    node: w.node.clone(),
                    skill: b.skill,
                    load: b.load,
                    capacity: b.capacity,
                    verdict: b.verdict,
                }
            })
            .collect();
        let others = super::auction::others(&bids, difficulty, &award.reason);
        let mut reason = award.reason.to_string();
        if !others.is_empty() {
            reason.push_str("; ");
            reason.push_str(&others);
        }
        AuctionRecord {
            bids,
            reason,
            rounds: award.rounds,
            queued: award.reason.queued,
        }
    }

    /// The status of a task, cheaply (`None` when unknown or evicted).
    pub fn status(&self, id: &TaskId) -> Option<TaskStatus> {
        self.slot(id).map(|s| self.status_at(&self.tasks[s]))
    }

    pub(super) fn status_at(&self, e: &Entry) -> TaskStatus {
        match e.soft.stage {
            Stage::Announced { .. } if e.phase.awaits_award() => TaskStatus::Announced,
            // Awarded into the worker's queue, and not said to have started.
            _ if matches!(e.phase, Phase::Running { .. })
                && e.award.as_ref().is_some_and(|a| a.reason.queued)
                && !matches!(e.soft.run, state::RunSeen::Started(_)) =>
            {
                TaskStatus::Queued
            }
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
    /// at most `n` (and at most [`RECENT`](super::RECENT)).
    pub fn recent(&self, n: usize) -> Vec<TaskId> {
        let held = self.recent.iter().filter(|id| self.index.contains_key(id));
        let ids: Vec<TaskId> = held.copied().collect();
        ids[ids.len().saturating_sub(n)..].to_vec()
    }
}
