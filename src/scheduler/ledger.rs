//! What `apply` does to the records, beyond the event itself: inserting
//! submitted tasks, trigger rules and cascades when a task finishes, worker
//! load and holdings, eviction, and the registry. Only `apply` calls these
//! (with `changed`, `slot` and `leave_auction`, which the handlers use too).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::events::{at, status_of};
use super::state::{Entry, Phase, RoleId, Slot, Stage, StoredTask, Timer, TimerKind, WorkerId};
use super::Scheduler;
use crate::task::{NodeId, Task, TaskError, TaskId, TaskStatus, Trigger, WorkerSpec};

impl Scheduler {
    /// The slot of a task the ledger holds.
    pub(super) fn slot(&self, id: &TaskId) -> Option<Slot> {
        self.index.get(id).copied()
    }

    /// Sets a timer for the task in `slot`.
    pub(super) fn set_timer(&mut self, at: Duration, kind: TimerKind, slot: Slot) {
        let id = self.tasks[slot].task.id;
        self.timers.insert(Timer { at, kind, slot, id });
    }

    /// Removes a timer set with [`Scheduler::set_timer`].
    pub(super) fn clear_timer(&mut self, at: Duration, kind: TimerKind, slot: Slot) {
        let id = self.tasks[slot].task.id;
        self.timers.remove(&Timer { at, kind, slot, id });
    }

    /// The worker no longer holds the task's attempt (its timers go too).
    /// Releasing what the worker does not hold (again) changes nothing.
    pub(super) fn release_worker(&mut self, worker: WorkerId, slot: Slot) {
        self.drop_lease(slot);
        let e = &self.tasks[slot];
        if let (Some(a), Some(t)) = (e.history.last(), e.task.timeout_ms.filter(|&t| t > 0)) {
            let due = at(a.started_ms) + at(t) + self.cfg.lease;
            let kind = TimerKind::RunTimeout { attempt: a.number };
            self.clear_timer(due, kind, slot);
        }
        let Some(set) = self.holding.get_mut(&worker) else {
            return;
        };
        if !set.remove(&slot) {
            return;
        }
        if set.is_empty() {
            self.holding.remove(&worker);
        }
        let w = &mut self.workers[worker];
        w.load = w.load.saturating_sub(1);
    }

    /// Removes the timers of a task's wait for an award (queue timeout,
    /// retry delay): it was awarded, or it ended.
    pub(super) fn stop_waiting(&mut self, slot: Slot) {
        let e = &self.tasks[slot];
        let queue_due = e
            .task
            .queue_timeout_ms
            .filter(|&t| t > 0)
            .map(|t| e.ready_at + at(t));
        let retry_due = match e.phase {
            Phase::Retrying { until } => Some(until),
            _ => None,
        };
        if let Some(due) = queue_due {
            self.clear_timer(due, TimerKind::QueueTimeout, slot);
        }
        if let Some(until) = retry_due {
            self.clear_timer(until, TimerKind::Retry, slot);
        }
    }

    /// Marks when a task (again) waits for an award; its queue timeout
    /// counts from here.
    pub(super) fn set_ready_at(&mut self, slot: Slot, when: Duration) {
        let e = &mut self.tasks[slot];
        e.ready_at = when;
        if let Some(t) = e.task.queue_timeout_ms.filter(|&t| t > 0) {
            self.set_timer(when + at(t), TimerKind::QueueTimeout, slot);
        }
    }

    /// Adds one task whose dependencies are already in the table.
    pub(super) fn insert(&mut self, t: Cow<'_, Task>, now: Duration) {
        let deps: Box<[Slot]> = t.dependencies.iter().filter_map(|d| self.slot(d)).collect();
        let role = self.role_id(&t.role);
        let task = match t {
            Cow::Owned(t) => StoredTask::new(t),
            Cow::Borrowed(t) => StoredTask::copied(t),
        };
        let id = task.id;
        let deadline = task.deadline_ms.filter(|&d| d > 0);
        let slot = self.alloc(Entry::new(task, deps.clone(), role, 0, now));
        self.index.insert(id, slot);
        self.unfinished += 1;
        self.churn += 1;
        self.recent.push_back(id);
        if self.recent.len() > super::RECENT {
            self.recent.pop_front();
        }
        if let Some(d) = deadline {
            self.set_timer(now + at(d), TimerKind::Deadline, slot);
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
    pub(super) fn settle(&mut self, slot: Slot, now: Duration) {
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
    pub(super) fn inherit(&self, d: Slot) -> Phase {
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
    pub(super) fn finish(&mut self, slot: Slot, phase: Phase, now: Duration) {
        // Most ends cascade nowhere: the stack allocates only when one does.
        let mut stack = Vec::new();
        let mut next = Some((slot, phase));
        while let Some((slot, phase)) = next.take().or_else(|| stack.pop()) {
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
            self.tasks[slot].soft.0 = None; // a finished task bids no more
            let e = &self.tasks[slot];
            if let Some(d) = e.task.deadline_ms.filter(|&d| d > 0) {
                self.clear_timer(e.submitted_at + at(d), TimerKind::Deadline, slot);
            }
            let status = status_of(&phase);
            let kind = super::observe::final_index(&status);
            *self.ended.entry((self.tasks[slot].role, kind)).or_default() += 1;
            let e = &mut self.tasks[slot];
            e.phase = phase;
            e.finished_at = Some(now);
            let dependents = std::mem::take(&mut e.dependents);
            self.unfinished -= 1;
            self.churn += 1;
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
    pub(super) fn maybe_evictable(&mut self, slot: Slot) {
        let e = &self.tasks[slot];
        if e.holders == 0 && e.phase.is_final() {
            self.evictable.push_back((slot, e.task.id));
        }
    }

    pub(super) fn evict(&mut self, id: &TaskId) {
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

    pub(super) fn alloc(&mut self, mut e: Entry) -> Slot {
        e.seq = self.inserted;
        self.inserted += 1;
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
    pub(super) fn set_workers(&mut self, node: &NodeId, specs: &[WorkerSpec]) {
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
        if e.soft.0.is_none() {
            return; // never in the auction layer
        }
        let stage = std::mem::take(&mut e.soft.stage);
        e.soft.bids = Vec::new(); // freed: most tasks never bid again
        let role = e.role;
        match stage {
            Stage::Idle => {}
            Stage::Backoff { until } => {
                self.clear_timer(until, TimerKind::Backoff, slot);
            }
            Stage::Queued { key } => remove_from(&mut self.queues, role, &(key, slot)),
            Stage::Parked { seq, deadline } => {
                self.clear_timer(deadline, TimerKind::NoWorker, slot);
                remove_from(&mut self.parked, role, &(seq, slot));
            }
            Stage::Announced { reserved, closes_at } => {
                self.clear_timer(closes_at, TimerKind::CloseAuction, slot);
                self.release(reserved, slot);
            }
        }
    }
}

/// Removes `key` from `role`'s set, and the set once it is empty.
fn remove_from<K: Ord>(sets: &mut BTreeMap<RoleId, BTreeSet<K>>, role: RoleId, key: &K) {
    if let Some(set) = sets.get_mut(&role) {
        set.remove(key);
        if set.is_empty() {
            sets.remove(&role);
        }
    }
}
