//! A task's life outside its auctions: submission into the DAG, the
//! worker's answer to an award, its report, completion (which readies
//! dependents), failure (which cascades to them) and the timers that end
//! waits.

use std::time::Duration;

use super::state::{Entry, Phase, Slot, TimerKind};
use super::{dag, Output, Report, Scheduler, SubmitError};
use crate::task::{NodeId, Payload, Task, TaskError, TaskId, TaskStatus};

impl Scheduler {
    pub(super) fn submit(
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
        let plan = dag::plan(&tasks, |id| self.index.contains_key(id), limits)?;
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        self.tasks.reserve(tasks.len());
        self.index.reserve(tasks.len());
        // Batch index -> slot; dependency order fills it before it is read.
        let mut slot_of = vec![Slot(0); tasks.len()];
        let mut batch: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
        for &i in &plan.order {
            let Some(task) = batch[i].take() else { continue };
            let deps = plan.deps_of(i).iter().zip(&task.dependencies);
            let deps = deps.map(|(&j, id)| {
                if j == dag::KNOWN {
                    self.index[id]
                } else {
                    slot_of[j]
                }
            });
            let deps = deps.collect();
            slot_of[i] = self.insert(task, deps, now, out);
        }
        Ok(ids)
    }

    /// Adds one validated task whose dependencies (`deps`, in its order) are
    /// already inserted.
    fn insert(&mut self, mut task: Task, deps: Box<[Slot]>, now: Duration, out: &mut Vec<Output>) -> Slot {
        let slot = Slot(self.tasks.len() as u32);
        let mut waiting_on = 0;
        let mut failed_dep = None;
        for &d in &deps {
            let dep = &mut self.tasks[d];
            match dep.phase {
                Phase::Completed => {}
                Phase::Failed => {
                    failed_dep.get_or_insert((dep.task.id, dep.task.name.clone()));
                }
                _ => {
                    waiting_on += 1;
                    dep.dependents.push(slot);
                }
            }
        }
        self.unfinished += 1;
        self.index.insert(task.id, slot);
        let role = self.role_id(&task.role);
        task.dependencies = Vec::new(); // kept as `deps`
        self.tasks.push(Entry::new(task, deps, role, waiting_on, now));
        self.changed(slot, TaskStatus::Pending, out);
        if let Some((dep, name)) = failed_dep {
            self.fail(slot, TaskError::DependencyFailed { id: dep, name }, now, out);
        } else if waiting_on == 0 {
            self.make_ready(slot, now);
        }
        slot
    }

    pub(super) fn assign_answer(
        &mut self,
        node: &NodeId,
        id: TaskId,
        attempt: u32,
        accepted: bool,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let Some(&slot) = self.index.get(&id) else { return };
        let e = &mut self.tasks[slot];
        let Phase::Assigned { worker } = e.phase else {
            return;
        };
        if self.workers[worker].node != *node || e.attempts != attempt {
            return;
        }
        if accepted {
            e.refusals = 0;
            e.phase = Phase::Running { worker };
            if let Some(t) = self.run_timeout(&self.tasks[slot].task) {
                let kind = TimerKind::RunTimeout { attempt };
                self.timers.insert((now + t, kind, slot));
            }
            self.changed(slot, TaskStatus::Running, out);
        } else {
            // Back off as after an auction without a usable bid, longer
            // with each refusal in a row, and let another bidder win next.
            let w = &mut self.workers[worker];
            w.load = w.load.saturating_sub(1);
            e.worker = None;
            e.refusals += 1;
            e.refused_by = Some(worker);
            let refusals = e.refusals;
            self.back_off(slot, self.retry_delay(refusals), now, out);
        }
    }

    pub(super) fn report(&mut self, node: &NodeId, r: Report, now: Duration, out: &mut Vec<Output>) {
        let Some(&slot) = self.index.get(&r.task) else {
            return;
        };
        let e = &mut self.tasks[slot];
        let (Phase::Assigned { worker } | Phase::Running { worker }) = e.phase else {
            return;
        };
        let w = &mut self.workers[worker];
        if w.node != *node || w.spec.name != r.worker || e.attempts != r.attempt {
            return;
        }
        e.run_ms = Some(r.run_ms);
        w.load = w.load.saturating_sub(1);
        match r.outcome {
            Ok(output) => self.complete(slot, output, now, out),
            Err(message) => {
                let err = TaskError::Processing {
                    worker: r.worker,
                    message,
                };
                self.fail(slot, err, now, out);
            }
        }
    }

    fn complete(&mut self, slot: Slot, output: Payload, now: Duration, out: &mut Vec<Output>) {
        let e = &mut self.tasks[slot];
        e.phase = Phase::Completed;
        e.output = Some(output);
        e.finished_at = Some(now);
        let dependents = std::mem::take(&mut e.dependents);
        self.unfinished -= 1;
        self.changed(slot, TaskStatus::Completed, out);
        for d in dependents {
            let dep = &mut self.tasks[d];
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
    pub(super) fn fail(&mut self, slot: Slot, error: TaskError, now: Duration, out: &mut Vec<Output>) {
        let mut stack = vec![(slot, error)];
        while let Some((slot, error)) = stack.pop() {
            let e = &mut self.tasks[slot];
            if matches!(e.phase, Phase::Completed | Phase::Failed) {
                continue;
            }
            let reserved = match e.phase {
                Phase::Announced { reserved, .. } => reserved,
                _ => None,
            };
            e.phase = Phase::Failed;
            e.error = Some(Box::new(error));
            e.finished_at = Some(now);
            let (id, name) = (e.task.id, e.task.name.clone());
            let dependents = std::mem::take(&mut e.dependents);
            self.unfinished -= 1;
            self.release(reserved);
            self.changed(slot, TaskStatus::Failed, out);
            for d in dependents {
                let name = name.clone();
                stack.push((d, TaskError::DependencyFailed { id, name }));
            }
        }
    }

    pub(super) fn fire_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
        while let Some(&(at, kind, slot)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let e = &self.tasks[slot];
            match (kind, e.phase) {
                (TimerKind::CloseAuction, Phase::Announced { closes_at, .. }) if closes_at == at => {
                    self.close_auction(slot, now, out)
                }
                (TimerKind::Retry, Phase::Backoff { until }) if until == at => self.enqueue(slot, now),
                (TimerKind::Deadline, Phase::Parked) => self.deadline(slot, now, out),
                (TimerKind::RunTimeout { attempt }, Phase::Running { worker }) if attempt == e.attempts => {
                    let timeout_ms = self.run_timeout(&e.task).map_or(0, |d| d.as_millis() as u64);
                    let w = &mut self.workers[worker];
                    w.load = w.load.saturating_sub(1);
                    let worker = w.spec.name.clone();
                    self.fail(slot, TaskError::Timeout { worker, timeout_ms }, now, out);
                }
                _ => {}
            }
        }
    }

    fn deadline(&mut self, slot: Slot, now: Duration, out: &mut Vec<Output>) {
        let e = &self.tasks[slot];
        let err = TaskError::NoCapableWorker {
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            best_skill: self.best_skill(e.role),
            waited_ms: now.saturating_sub(e.ready_at).as_millis() as u64,
        };
        self.fail(slot, err, now, out);
    }

    pub(super) fn run_timeout(&self, task: &Task) -> Option<Duration> {
        task.timeout_ms
            .map(Duration::from_millis)
            .or(self.cfg.default_task_timeout)
    }
}
