//! Readiness in the auction layer: per-role queues of ready tasks ordered by
//! priority with ageing, parking of tasks no registered worker could take,
//! and the pump that turns queued tasks into auctions while capable workers
//! have free slots.

use std::time::Duration;

use super::state::{QueueKey, RoleId, Slot, Stage, TimerKind};
use super::Scheduler;
use crate::task::TaskStatus;

impl Scheduler {
    /// Puts a task waiting for an award in its role's queue, or parks it
    /// when no registered worker could take it (the queue is only pumped
    /// while the role has room, so a task nobody can take must not wait
    /// there).
    pub(super) fn enqueue(&mut self, slot: Slot, now: Duration) {
        self.leave_auction(slot);
        let role = self.tasks[slot].role;
        if !self.capable_exists(role, self.tasks[slot].task.difficulty) {
            self.park(slot, now);
            return;
        }
        let key = QueueKey {
            rank: self.rank(slot),
            seq: self.next_seq(),
        };
        self.tasks[slot].soft.stage = Stage::Queued { key };
        self.queues.entry(role).or_default().insert((key, slot));
    }

    /// Where a task stands in line: when it became ready, moved earlier by
    /// one ageing step per priority level. A task of priority `p` thus goes
    /// before one of priority `p + k` that became ready more than `k` steps
    /// after it, so a stream of high-priority work delays low-priority work
    /// by a bounded time and never starves it.
    fn rank(&self, slot: Slot) -> i64 {
        let e = &self.tasks[slot];
        let ready = e.ready_at.as_millis().min(i64::MAX as u128 / 4) as i64;
        let step = self.cfg.priority_ageing.as_millis().min(1 << 32) as i64;
        ready.saturating_sub(i64::from(e.task.priority).saturating_mul(step))
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Takes an unawarded task out of line until `now + delay`, when its
    /// backoff timer puts it back.
    pub(super) fn back_off(&mut self, slot: Slot, delay: Duration, now: Duration) {
        self.leave_auction(slot);
        let until = now + delay;
        let e = &mut self.tasks[slot];
        e.soft.stage = Stage::Backoff { until };
        self.set_timer(until, TimerKind::Backoff, slot);
        self.changed(slot, TaskStatus::Pending);
    }

    /// Puts an unawarded task back in line for another auction.
    pub(super) fn requeue(&mut self, slot: Slot, now: Duration) {
        self.enqueue(slot, now);
        self.changed(slot, TaskStatus::Pending);
    }

    /// The wait before the `n`th auction retry in a row: `auction_backoff`,
    /// doubling each time up to `max_auction_backoff`.
    pub(super) fn auction_delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(16);
        (self.cfg.auction_backoff * (1u32 << shift)).min(self.cfg.max_auction_backoff)
    }

    pub(super) fn park(&mut self, slot: Slot, now: Duration) {
        self.leave_auction(slot);
        let seq = self.next_seq();
        let e = &mut self.tasks[slot];
        let at = (e.ready_at + self.cfg.no_worker_timeout).max(now);
        e.soft.stage = Stage::Parked { seq, deadline: at };
        e.soft.no_bids_for = Duration::ZERO;
        let role = e.role;
        self.parked.entry(role).or_default().insert((seq, slot));
        self.set_timer(at, TimerKind::NoWorker, slot);
    }

    /// Moves parked tasks whose role now has a capable worker back to their
    /// queues, oldest first. They keep their wait start, so the deadline
    /// stays honest. Looks only at parked tasks.
    pub(super) fn unpark(&mut self, now: Duration) {
        let roles: Vec<RoleId> = self.parked.keys().copied().collect();
        for role in roles {
            let Some(best) = self.best_skill(role) else {
                continue;
            };
            let parked = self
                .parked
                .get(&role)
                .map(|p| p.iter().map(|&(_, s)| s).collect::<Vec<_>>());
            for slot in parked.unwrap_or_default() {
                if self.tasks[slot].task.difficulty <= best {
                    self.enqueue(slot, now);
                }
            }
        }
    }

    /// Parks queued tasks that no registered worker can take any more
    /// (after workers left or re-registered with less skill).
    pub(super) fn park_stranded(&mut self, now: Duration) {
        let mut stranded = Vec::new();
        for (&role, queue) in &self.queues {
            let best = self.best_skill(role);
            for &(_, slot) in queue {
                if best.is_none_or(|s| s < self.tasks[slot].task.difficulty) {
                    stranded.push(slot);
                }
            }
        }
        for slot in stranded {
            self.park(slot, now);
        }
    }

    /// Announces queued tasks while capable workers have free slots.
    pub(super) fn pump(&mut self, now: Duration) {
        self.pump_again = None;
        let mut next = RoleId(0);
        while let Some((&role, _)) = self.queues.range(next..).next() {
            next = RoleId(role.0 + 1);
            self.pump_role(role, now);
        }
    }

    fn pump_role(&mut self, role: RoleId, now: Duration) {
        let mut scanned = 0;
        let mut awarded = false;
        let mut after = None;
        while self.role_has_room(role) {
            let Some(queue) = self.queues.get(&role) else {
                break;
            };
            let next = match after {
                None => queue.first().copied(),
                Some(k) => queue
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some((key, slot)) = next else { break };
            if scanned == self.cfg.max_scan {
                // Work enough for one step. The next step goes on if this
                // one got anywhere (each goes further, so it ends); if
                // none of these fit, the next input pumps again.
                if awarded {
                    self.pump_again = Some(now);
                }
                break;
            }
            scanned += 1;
            if self.standing_award(slot, now) {
                awarded = true;
                continue;
            }
            let difficulty = self.tasks[slot].task.difficulty;
            match self.reserve(role, difficulty, slot) {
                Some(worker) => {
                    awarded = true;
                    self.open_auction(slot, worker, now);
                }
                // No free slot fits this task: it keeps its place in line.
                None => after = Some((key, slot)),
            }
        }
    }
}
