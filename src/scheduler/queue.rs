//! Readiness: per-role queues of ready tasks, parking of tasks no registered
//! worker could take, and the pump that turns queued tasks into auctions
//! while capable workers have free slots.

use std::time::Duration;

use super::state::{Phase, RoleId, Slot, TimerKind};
use super::{Output, Scheduler};
use crate::task::TaskStatus;

impl Scheduler {
    pub(super) fn make_ready(&mut self, slot: Slot, now: Duration) {
        self.tasks[slot].ready_at = now;
        self.enqueue(slot, now);
    }

    /// Puts a ready task at the back of its role's queue, or parks it when
    /// no registered worker could take it (the queue is only pumped while
    /// the role has room, so a task nobody can take must not wait there).
    pub(super) fn enqueue(&mut self, slot: Slot, now: Duration) {
        let role = self.tasks[slot].role;
        if !self.capable_exists(role, self.tasks[slot].task.difficulty) {
            self.park(slot, now);
            return;
        }
        self.tasks[slot].phase = Phase::Queued;
        self.queues.entry(role).or_default().push_back(slot);
    }

    /// Puts an unawarded task back in line for another auction.
    pub(super) fn requeue(&mut self, slot: Slot, now: Duration, out: &mut Vec<Output>) {
        self.tasks[slot].bids.clear();
        self.enqueue(slot, now);
        self.changed(slot, TaskStatus::Pending, out);
    }

    /// Takes an unawarded task out of line until `now + delay`, when its
    /// retry timer puts it back.
    pub(super) fn back_off(&mut self, slot: Slot, delay: Duration, now: Duration, out: &mut Vec<Output>) {
        let e = &mut self.tasks[slot];
        let until = now + delay;
        e.phase = Phase::Backoff { until };
        e.bids.clear();
        self.timers.insert((until, TimerKind::Retry, slot));
        self.changed(slot, TaskStatus::Pending, out);
    }

    /// The wait before the `n`th retry in a row: `retry_backoff`, doubling
    /// each time up to `max_retry_backoff`.
    pub(super) fn retry_delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(16);
        (self.cfg.retry_backoff * (1u32 << shift)).min(self.cfg.max_retry_backoff)
    }

    pub(super) fn park(&mut self, slot: Slot, now: Duration) {
        let e = &mut self.tasks[slot];
        e.phase = Phase::Parked;
        e.no_bids_for = Duration::ZERO;
        let at = (e.ready_at + self.cfg.no_worker_timeout).max(now);
        self.timers.insert((at, TimerKind::Deadline, slot));
    }

    /// Moves parked tasks whose role now has a capable worker back to queues,
    /// in submission order. They keep their original wait start so the
    /// deadline stays honest.
    pub(super) fn unpark(&mut self, now: Duration) {
        for slot in (0..self.tasks.len() as u32).map(Slot) {
            let e = &self.tasks[slot];
            if e.phase == Phase::Parked && self.capable_exists(e.role, e.task.difficulty) {
                self.enqueue(slot, now);
            }
        }
    }

    /// Parks queued tasks that no registered worker can take any more (after
    /// workers left or re-registered with less skill).
    pub(super) fn park_stranded(&mut self, now: Duration) {
        let mut stranded = Vec::new();
        for (&role, queue) in self.queues.iter_mut() {
            let best = self.roles[role]
                .workers
                .iter()
                .map(|&w| self.workers[w].spec.skill)
                .max();
            queue.retain(|&slot| {
                let e = &self.tasks[slot];
                if e.phase != Phase::Queued {
                    return false; // stale entry
                }
                let capable = best.is_some_and(|s| s >= e.task.difficulty);
                if !capable {
                    stranded.push(slot);
                }
                capable
            });
        }
        self.queues.retain(|_, q| !q.is_empty());
        for slot in stranded {
            self.park(slot, now);
        }
    }

    /// Announces queued tasks while capable workers have free slots.
    pub(super) fn pump(&mut self, now: Duration, out: &mut Vec<Output>) {
        let mut next = RoleId(0);
        while let Some((&role, _)) = self.queues.range(next..).next() {
            next = RoleId(role.0 + 1);
            self.pump_role(role, now, out);
        }
    }

    fn pump_role(&mut self, role: RoleId, now: Duration, out: &mut Vec<Output>) {
        let mut skipped = Vec::new();
        let mut scanned = 0;
        while scanned < self.cfg.max_scan && self.role_has_room(role) {
            let Some(slot) = self.queues.get_mut(&role).and_then(|q| q.pop_front()) else {
                break;
            };
            scanned += 1;
            let e = &self.tasks[slot];
            if e.phase != Phase::Queued {
                continue; // stale queue entry
            }
            let difficulty = e.task.difficulty;
            if !self.capable_exists(role, difficulty) {
                self.park(slot, now);
                continue;
            }
            match self.reserve(role, difficulty) {
                Some(worker) => self.open_auction(slot, worker, now, out),
                None => skipped.push(slot),
            }
        }
        let queue = self.queues.entry(role).or_default();
        // Skipped tasks keep their place at the head of the line.
        for slot in skipped.into_iter().rev() {
            queue.push_front(slot);
        }
        if queue.is_empty() {
            self.queues.remove(&role);
        }
    }
}
