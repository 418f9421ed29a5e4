//! Readiness: per-role queues of ready tasks, parking of tasks no registered
//! worker could take, and the pump that turns queued tasks into auctions
//! while capable workers have free slots.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Output, Phase, Scheduler, TimerKind};
use crate::task::{TaskId, TaskStatus};

impl Scheduler {
    pub(super) fn make_ready(&mut self, id: TaskId, now: Duration) {
        self.tasks.get_mut(&id).expect("ready task exists").ready_at = now;
        self.enqueue(id, now);
    }

    /// Puts a ready task at the back of its role's queue, or parks it when
    /// no registered worker could take it (the queue is only pumped while
    /// the role has room, so a task nobody can take must not wait there).
    pub(super) fn enqueue(&mut self, id: TaskId, now: Duration) {
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
    pub(super) fn requeue(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
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

    /// Takes an unawarded task out of line until `now + delay`, when its
    /// retry timer puts it back.
    pub(super) fn back_off(&mut self, id: TaskId, delay: Duration, now: Duration, out: &mut Vec<Output>) {
        let e = self.tasks.get_mut(&id).expect("backed-off task exists");
        let until = now + delay;
        e.phase = Phase::Backoff { until };
        e.bids.clear();
        self.timers.insert((until, TimerKind::Retry, id));
        out.push(Output::Changed {
            id,
            status: TaskStatus::Pending,
        });
    }

    /// The wait before the `n`th retry in a row: `retry_backoff`, doubling
    /// each time up to `max_retry_backoff`.
    pub(super) fn retry_delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(16);
        (self.cfg.retry_backoff * (1u32 << shift)).min(self.cfg.max_retry_backoff)
    }

    pub(super) fn park(&mut self, id: TaskId, now: Duration) {
        let e = self.tasks.get_mut(&id).expect("parked task exists");
        e.phase = Phase::Parked;
        e.no_bids_since = None;
        let at = (e.ready_at + self.cfg.no_worker_timeout).max(now);
        self.timers.insert((at, TimerKind::Deadline, id));
    }

    /// Moves parked tasks whose role now has a capable worker back to queues,
    /// in submission order. They keep their original wait start so the
    /// deadline stays honest.
    pub(super) fn unpark(&mut self, now: Duration) {
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
    pub(super) fn park_stranded(&mut self, now: Duration) {
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

    /// Announces queued tasks while capable workers have free slots.
    pub(super) fn pump(&mut self, now: Duration, out: &mut Vec<Output>) {
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
}
