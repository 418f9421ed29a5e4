//! A task's life outside its auctions: submission into the DAG, the
//! worker's answer to an award, its report, completion (which readies
//! dependents), failure (which cascades to them) and the timers that end
//! waits.

use std::time::Duration;

use super::{dag, Entry, Output, Phase, Report, Scheduler, SubmitError, TimerKind};
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
        let order = dag::validate(&tasks, |id| self.tasks.contains_key(id), limits)?;
        let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
        let mut slots: Vec<Option<Task>> = tasks.into_iter().map(Some).collect();
        for i in order {
            let Some(task) = slots[i].take() else { continue };
            self.insert(task, now, out);
        }
        Ok(ids)
    }

    /// Adds one validated task whose batch dependencies are already inserted.
    fn insert(&mut self, task: Task, now: Duration, out: &mut Vec<Output>) {
        let id = task.id;
        let mut waiting_on = 0;
        let mut failed_dep = None;
        for d in &task.dependencies {
            let dep = self.tasks.get_mut(d).expect("validated dependency");
            match dep.phase {
                Phase::Completed => {}
                Phase::Failed => {
                    failed_dep.get_or_insert((*d, dep.task.name.clone()));
                }
                _ => {
                    waiting_on += 1;
                    dep.dependents.push(id);
                }
            }
        }
        self.unfinished += 1;
        self.next_seq += 1;
        self.tasks.insert(
            id,
            Entry {
                task,
                phase: Phase::Waiting,
                waiting_on,
                dependents: Vec::new(),
                seq: self.next_seq,
                submitted_at: now,
                ready_at: now,
                no_bids_since: None,
                attempts: 0,
                round: 0,
                refusals: 0,
                refused_by: None,
                bids: Vec::new(),
                auction: None,
                worker: None,
                output: None,
                error: None,
                run_ms: None,
                finished_at: None,
            },
        );
        out.push(Output::Changed {
            id,
            status: TaskStatus::Pending,
        });
        if let Some((dep, name)) = failed_dep {
            self.fail(id, TaskError::DependencyFailed { id: dep, name }, now, out);
        } else if waiting_on == 0 {
            self.make_ready(id, now);
        }
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
        let Some(e) = self.tasks.get(&id) else { return };
        let Phase::Assigned { worker } = &e.phase else {
            return;
        };
        if &worker.0 != node || e.attempts != attempt {
            return;
        }
        let worker = worker.clone();
        let timeout = self.run_timeout(&e.task);
        let e = self.tasks.get_mut(&id).expect("checked above");
        if accepted {
            e.refusals = 0;
            e.phase = Phase::Running { worker };
            if let Some(t) = timeout {
                let kind = TimerKind::RunTimeout { attempt };
                self.timers.insert((now + t, kind, id));
            }
            out.push(Output::Changed {
                id,
                status: TaskStatus::Running,
            });
        } else {
            if let Some(w) = self.workers.get_mut(&worker) {
                w.load = w.load.saturating_sub(1);
            }
            // Back off as after an auction without a usable bid, longer
            // with each refusal in a row, and let another bidder win next.
            e.worker = None;
            e.refusals += 1;
            let refusals = e.refusals;
            e.refused_by = Some(worker);
            self.back_off(id, self.retry_delay(refusals), now, out);
        }
    }

    pub(super) fn report(&mut self, node: &NodeId, r: Report, now: Duration, out: &mut Vec<Output>) {
        let Some(e) = self.tasks.get_mut(&r.task) else {
            return;
        };
        let holder = match &e.phase {
            Phase::Assigned { worker } | Phase::Running { worker } => worker,
            _ => return,
        };
        if &holder.0 != node || holder.1 != r.worker || e.attempts != r.attempt {
            return;
        }
        let key = holder.clone();
        e.run_ms = Some(r.run_ms);
        if let Some(w) = self.workers.get_mut(&key) {
            w.load = w.load.saturating_sub(1);
        }
        match r.outcome {
            Ok(output) => self.complete(r.task, output, now, out),
            Err(message) => self.fail(
                r.task,
                TaskError::Processing {
                    worker: r.worker,
                    message,
                },
                now,
                out,
            ),
        }
    }

    fn complete(&mut self, id: TaskId, output: Payload, now: Duration, out: &mut Vec<Output>) {
        let e = self.tasks.get_mut(&id).expect("completed task exists");
        e.phase = Phase::Completed;
        e.output = Some(output);
        e.finished_at = Some(now);
        self.unfinished -= 1;
        out.push(Output::Changed {
            id,
            status: TaskStatus::Completed,
        });
        for d in std::mem::take(&mut e.dependents) {
            let Some(dep) = self.tasks.get_mut(&d) else {
                continue;
            };
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
    pub(super) fn fail(&mut self, id: TaskId, error: TaskError, now: Duration, out: &mut Vec<Output>) {
        let mut stack = vec![(id, error)];
        while let Some((id, error)) = stack.pop() {
            let Some(e) = self.tasks.get_mut(&id) else {
                continue;
            };
            if matches!(e.phase, Phase::Completed | Phase::Failed) {
                continue;
            }
            let reserved = match &e.phase {
                Phase::Announced { reserved, .. } => reserved.clone(),
                _ => None,
            };
            e.phase = Phase::Failed;
            e.error = Some(error);
            e.finished_at = Some(now);
            let name = e.task.name.clone();
            let dependents = std::mem::take(&mut e.dependents);
            self.unfinished -= 1;
            self.release(&reserved);
            out.push(Output::Changed {
                id,
                status: TaskStatus::Failed,
            });
            for d in dependents {
                stack.push((
                    d,
                    TaskError::DependencyFailed {
                        id,
                        name: name.clone(),
                    },
                ));
            }
        }
    }

    pub(super) fn fire_timers(&mut self, now: Duration, out: &mut Vec<Output>) {
        while let Some(&(at, kind, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(e) = self.tasks.get(&id) else { continue };
            match (kind, &e.phase) {
                (TimerKind::CloseAuction, Phase::Announced { closes_at, .. }) if *closes_at == at => {
                    self.close_auction(id, now, out)
                }
                (TimerKind::Retry, Phase::Backoff { until }) if *until == at => self.enqueue(id, now),
                (TimerKind::Deadline, Phase::Parked) => self.deadline(id, now, out),
                (TimerKind::RunTimeout { attempt }, Phase::Running { worker }) if attempt == e.attempts => {
                    let worker = worker.clone();
                    if let Some(w) = self.workers.get_mut(&worker) {
                        w.load = w.load.saturating_sub(1);
                    }
                    let timeout_ms = self.run_timeout(&e.task).map_or(0, |d| d.as_millis() as u64);
                    self.fail(
                        id,
                        TaskError::Timeout {
                            worker: worker.1,
                            timeout_ms,
                        },
                        now,
                        out,
                    );
                }
                _ => {}
            }
        }
    }

    fn deadline(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        let e = &self.tasks[&id];
        let best_skill = self.best_skill(&e.task.role);
        let err = TaskError::NoCapableWorker {
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            best_skill,
            waited_ms: now.saturating_sub(e.ready_at).as_millis() as u64,
        };
        self.fail(id, err, now, out);
    }

    pub(super) fn run_timeout(&self, task: &Task) -> Option<Duration> {
        task.timeout_ms
            .map(Duration::from_millis)
            .or(self.cfg.default_task_timeout)
    }
}
