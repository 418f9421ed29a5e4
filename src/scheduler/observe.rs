//! What a node's metrics read off the scheduler: a [`Census`] of what it
//! holds at a moment, and an [`Observation`] of each decision its events
//! record. Both are read-only: nothing here changes the scheduler.

use std::collections::BTreeMap;
use std::time::Duration;

use super::events::{AttemptEnd, Event};
use super::{BidPath, Scheduler};
use crate::task::TaskStatus;

/// What the scheduler holds at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Tasks held, finished ones included until they are evicted, by role
    /// and status (`TaskStatus`'s text: `pending`, `running`, `completed`…).
    pub tasks: BTreeMap<(String, String), u64>,
    /// Tasks waiting for an award (ready, or waiting out a retry delay), by
    /// role: the ready queue's depth (every role the admin knows, 0
    /// included).
    pub ready: BTreeMap<String, u64>,
    /// Tasks that finished since this replica began applying the ledger
    /// (evicted ones included), by role and final status (`completed`,
    /// `failed`, `cancelled`, `skipped`): a counter for each, which starts
    /// again from 0 on a replica restored from a snapshot.
    pub finished: BTreeMap<(String, String), u64>,
    /// Present workers.
    pub workers: u64,
    /// Slots of present workers running or stopping an attempt.
    pub slots_used: u64,
    /// Slots of present workers free for an award (reserved ones count as
    /// free: no attempt holds them).
    pub slots_free: u64,
}

/// One decision of the scheduler, as metrics count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// `count` tasks of `role` were submitted.
    Submitted {
        /// The tasks' role.
        role: String,
        /// How many.
        count: u64,
    },
    /// A task of `role` was awarded, `waited` after it became ready (or
    /// after its retry delay ended), by `path`, after `rounds` auction
    /// rounds (0 from a standing bid).
    Awarded {
        /// The task's role.
        role: String,
        /// How the winning bid came.
        path: BidPath,
        /// From ready to award.
        waited: Duration,
        /// Auction rounds it took.
        rounds: u32,
    },
    /// An attempt at a task of `role` ended `how` (`completed`, `failed`,
    /// `timed_out`, `lost`, `aborted`, `undelivered`), `ran` after its award.
    AttemptEnded {
        /// The task's role.
        role: String,
        /// How it ended.
        how: &'static str,
        /// From award to the end.
        ran: Duration,
    },
    /// A retryable failure of a task of `role` will be retried.
    Retried {
        /// The task's role.
        role: String,
    },
}

/// The final statuses, in the order [`final_index`] numbers them.
const FINAL: [&str; 4] = ["completed", "failed", "cancelled", "skipped"];

/// A final status's place in [`FINAL`] (an unfinished one counts as failed:
/// never asked).
pub(super) fn final_index(status: &TaskStatus) -> u8 {
    match status {
        TaskStatus::Completed => 0,
        TaskStatus::Cancelled => 2,
        TaskStatus::Skipped => 3,
        _ => 1,
    }
}

impl Scheduler {
    /// What the scheduler holds now (one pass over its tasks and workers).
    pub fn census(&self) -> Census {
        let mut c = Census::default();
        for &slot in self.index.values() {
            let e = &self.tasks[slot];
            let role = self.roles[e.role].name.to_string();
            if e.phase.awaits_award() {
                *c.ready.entry(role.clone()).or_default() += 1;
            }
            let status = self.status_at(e).to_string();
            *c.tasks.entry((role, status)).or_default() += 1;
        }
        for role in &self.roles {
            c.ready.entry(role.name.to_string()).or_default();
        }
        for (&(role, kind), &n) in &self.ended {
            let key = (
                self.roles[role].name.to_string(),
                FINAL[usize::from(kind)].to_string(),
            );
            c.finished.insert(key, n);
        }
        for w in self.workers.iter().filter(|w| w.present) {
            c.workers += 1;
            let used = w.busy().min(w.spec.capacity);
            c.slots_used += u64::from(used);
            c.slots_free += u64::from(w.spec.capacity - used);
        }
        c
    }

    /// What `event`, just applied, decided, added to `out`. Read after the
    /// event is applied: a finished task's status is its final one.
    pub fn observe(&self, event: &Event, out: &mut Vec<Observation>) {
        let role_of = |id| {
            let e = &self.tasks[self.slot(id)?];
            Some((e, self.roles[e.role].name.to_string()))
        };
        match event {
            Event::TasksSubmitted { tasks, .. } => {
                let mut by_role: BTreeMap<&str, u64> = BTreeMap::new();
                for t in tasks {
                    *by_role.entry(t.role.as_str()).or_default() += 1;
                }
                out.extend(by_role.into_iter().map(|(role, count)| Observation::Submitted {
                    role: role.to_string(),
                    count,
                }));
            }
            Event::AttemptAwarded {
                at_ms,
                task,
                reason,
                rounds,
                ..
            } => {
                if let Some((e, role)) = role_of(task) {
                    out.push(Observation::Awarded {
                        role,
                        path: reason.path,
                        waited: Duration::from_millis(*at_ms).saturating_sub(e.ready_at),
                        rounds: *rounds,
                    });
                }
            }
            Event::AttemptFinished {
                at_ms,
                task,
                attempt,
                end,
                ..
            } => {
                let Some((e, role)) = role_of(task) else { return };
                let started = e.history.iter().find(|a| a.number == *attempt);
                let ran = started.map_or(0, |a| at_ms.saturating_sub(a.started_ms));
                let how = match end {
                    AttemptEnd::Completed(_) => "completed",
                    AttemptEnd::Failed(_) => "failed",
                    AttemptEnd::TimedOut { .. } => "timed_out",
                    AttemptEnd::Lost { .. } => "lost",
                    AttemptEnd::Aborted { .. } => "aborted",
                    AttemptEnd::Undelivered { .. } => "undelivered",
                };
                out.push(Observation::AttemptEnded {
                    role,
                    how,
                    ran: Duration::from_millis(ran),
                });
            }
            Event::RetryScheduled { task, .. } => {
                if let Some((_, role)) = role_of(task) {
                    out.push(Observation::Retried { role });
                }
            }
            Event::TaskEnded { .. }
            | Event::WorkersRegistered { .. }
            | Event::NodeLeft { .. }
            | Event::AttemptAccepted { .. }
            | Event::AttemptRefused { .. }
            | Event::TasksEvicted { .. } => {}
        }
    }
}
