//! Requests whose answers the simulator checks at once: submissions,
//! reports, lease renewals and cancellations.

use super::*;

impl Sim {
    /// Submits a batch. A batch is refused only for a dependency evicted
    /// meanwhile (or one in a batch refused for that reason).
    pub(super) fn submit(&mut self, batch: Vec<Task>) {
        self.pending_submits -= 1;
        let ids: Vec<TaskId> = batch.iter().map(|t| t.id).collect();
        let out = self.step(Input::Submit {
            token: 0,
            tasks: batch,
        });
        let result = out.iter().find_map(|o| match o {
            Output::Submitted { result, .. } => Some(result.clone()),
            _ => None,
        });
        match result.expect("every submission is answered") {
            Ok(got) => assert_eq!(got, ids, "ids in submission order"),
            Err(e) => {
                match &e {
                    SubmitError::EvictedDependency { dependency, .. } => {
                        assert!(self.evicted.contains(dependency), "{e:?}");
                        self.count("evicted dependency refused");
                    }
                    SubmitError::UnknownDependency { dependency, .. } => {
                        assert!(self.refused.contains(dependency), "{e:?}");
                    }
                    e => panic!("random DAGs are valid: {e:?}"),
                }
                self.refused.extend(ids);
            }
        }
    }

    /// Delivers a worker's report, unless the worker dropped it when told
    /// to abort. A report for an attempt that is no longer current must
    /// change nothing.
    pub(super) fn report(&mut self, node: NodeId, r: Report) {
        let run = (r.task, r.attempt);
        if let Some(held) = self.held.get_mut(&node) {
            held.remove(&run);
        }
        if self.dropped.contains(&run) {
            return;
        }
        let stale = self.current.get(&r.task) != Some(&(node.clone(), r.attempt));
        let before = self.events.len();
        let task = r.task;
        let out = self.step(Input::Reports {
            node,
            reports: vec![r],
        });
        if stale {
            // The pump may announce the task, or award it from a standing
            // bid, in any step (it looks at a bounded number of queued
            // tasks per step), nothing else.
            let pump = |e: &Event| matches!(e, Event::TasksEvicted { .. } | Event::AttemptAwarded { .. });
            let touched = self.events[before..]
                .iter()
                .find(|e| !pump(e) && event_task(e) == Some(task));
            assert_eq!(touched, None, "a stale report of {run:?} was recorded");
            let pumped = |s: &TaskStatus| matches!(s, TaskStatus::Announced | TaskStatus::Assigned);
            let changed = out
                .iter()
                .any(|o| matches!(o, Output::Changed { id, status } if *id == task && !pumped(status)));
            assert!(!changed, "a stale report of {run:?} changed the task");
            self.count("late report ignored");
        }
    }

    /// Delivers a node's renewal: every pair it holds that is not its
    /// current attempt draws an abort, and nothing else does.
    pub(super) fn renew(&mut self, node: NodeId, held: Vec<Run>) {
        let stale: BTreeSet<Run> = held
            .iter()
            .filter(|(t, a)| self.current.get(t) != Some(&(node.clone(), *a)))
            .copied()
            .collect();
        let out = self.step(Input::Renew {
            node: node.clone(),
            held,
            waiting: Vec::new(),
        });
        let aborted: BTreeSet<Run> = out
            .iter()
            .filter_map(|o| match o {
                Output::Abort { node: n, attempts } if *n == node => Some(attempts.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(aborted, stale, "renewal from {node:?} at {:?}", self.now);
        if !stale.is_empty() {
            self.count("stale renewal aborted");
        }
    }

    /// Cancels tasks; the answer says, per id, what the outputs so far
    /// said of it, and a held attempt is told to stop.
    pub(super) fn cancel(&mut self, ids: Vec<TaskId>) {
        self.pending_cancels -= 1;
        let mut want = Vec::new();
        let mut aborts = Vec::new();
        for id in &ids {
            let status = self.last_status(id).cloned();
            want.push(match status {
                _ if self.evicted.contains(id) => CancelOutcome::Evicted,
                _ if !self.submitted.contains(id) => CancelOutcome::Unknown,
                Some(s) if s.is_final() => CancelOutcome::AlreadyFinished(s),
                _ => {
                    if let Some((node, attempt)) = self.current.get(id) {
                        aborts.push((node.clone(), (*id, *attempt)));
                    }
                    CancelOutcome::Cancelled
                }
            });
        }
        let out = self.step(Input::Cancel {
            token: 1,
            ids: ids.clone(),
        });
        let got = out.iter().find_map(|o| match o {
            Output::Cancelled { outcomes, .. } => Some(outcomes.clone()),
            _ => None,
        });
        assert_eq!(got, Some(want.clone()), "cancelling {ids:?} at {:?}", self.now);
        for (node, run) in aborts {
            let told = out.iter().any(
                |o| matches!(o, Output::Abort { node: n, attempts } if *n == node && attempts.contains(&run)),
            );
            assert!(told, "cancelled {run:?} was not aborted on {node:?}");
            self.count("cancelled running");
        }
        for (id, outcome) in ids.iter().zip(want) {
            match outcome {
                CancelOutcome::Cancelled => {
                    self.cancelled.insert(*id);
                    self.count("cancelled by a client");
                }
                CancelOutcome::AlreadyFinished(_) => self.count("cancel: already finished"),
                CancelOutcome::Evicted => self.count("cancel: evicted"),
                CancelOutcome::Unknown => self.count("cancel: unknown"),
            }
        }
    }

    /// The last status the outputs gave a task.
    pub(super) fn last_status(&self, id: &TaskId) -> Option<&TaskStatus> {
        self.changes.get(id).and_then(|c| c.last())
    }

    /// After the run: a task depending on an evicted one is refused, naming
    /// it, and the evicted ids look up as evicted.
    pub(super) fn probe_evicted(&mut self) {
        let Some(&gone) = self.evicted.iter().next() else {
            return;
        };
        for id in &self.evicted {
            assert_eq!(self.s.lookup(id, self.now), Lookup::Evicted);
            assert_eq!(self.s.status(id), None);
        }
        let late = named(STRANGER + 1, "late", "a", 1).depends_on(gone);
        let out = self.step(Input::Submit {
            token: 2,
            tasks: vec![late],
        });
        let want = Err(SubmitError::EvictedDependency {
            task: "late".into(),
            dependency: gone,
        });
        assert!(
            out.contains(&Output::Submitted {
                token: 2,
                result: want
            }),
            "{out:?}"
        );
    }
}

/// The task an event is about, for events about one task.
pub(super) fn event_task(e: &Event) -> Option<TaskId> {
    match e {
        Event::AttemptAwarded { task, .. }
        | Event::AttemptAccepted { task, .. }
        | Event::AttemptRefused { task, .. }
        | Event::AttemptFinished { task, .. }
        | Event::RetryScheduled { task, .. }
        | Event::TaskEnded { task, .. } => Some(*task),
        _ => None,
    }
}
