//! After the run: every task ended once, as its rule, its dependencies and
//! its limits say, with at most one recorded result, and the event log
//! agrees.

use super::checks::fired;
use super::requests::event_task;
use super::*;
use crate::scheduler::events::AttemptEnd;

impl Sim {
    /// Every task ended once, as its rule and its limits
    /// say, with one recorded result at most.
    pub(super) fn check_end(&mut self) {
        assert_eq!(self.s.unfinished(), 0);
        for w in self.s.workers() {
            assert_eq!(w.load, 0, "{w:?} still loaded");
        }
        assert_eq!(self.submitted.len() + self.refused.len(), self.tasks.len());
        for id in self.submitted.clone() {
            let r = self
                .keeper
                .report_of(&id, self.now)
                .expect("submitted task is kept");
            if self.evicted.contains(&id) {
                assert_eq!(self.s.lookup(&id, self.now), Lookup::Evicted);
            } else {
                // The same report, but for dependencies evicted since.
                let mut kept = r.clone();
                kept.dependencies.retain(|d| !self.evicted.contains(d));
                assert_eq!(self.s.report_of(&id, self.now).as_ref(), Some(&kept));
            }
            let t = self.tasks[&id].clone();
            assert!(r.status.is_final(), "{} ended {:?}", t.name, r.status);
            self.check_changes(&t, &r.status);
            self.check_history(&t, &r);
            self.check_rule(&t, &r);
            self.check_limits(&t, &r);
        }
        self.check_event_log();
    }

    /// Announced statuses follow the life cycle, with exactly one final
    /// status, the last.
    pub(super) fn check_changes(&self, t: &Task, end: &TaskStatus) {
        use TaskStatus::*;
        let changes = &self.changes[&t.id];
        assert_eq!(changes.first(), Some(&Pending));
        assert_eq!(changes.last(), Some(end), "{}: {changes:?}", t.name);
        let finals = changes.iter().filter(|s| s.is_final()).count();
        assert_eq!(finals, 1, "{} ended more than once: {changes:?}", t.name);
        for pair in changes.windows(2) {
            let ok = matches!(
                (&pair[0], &pair[1]),
                // A late bid awards a task backing off without a new round.
                (Pending, Announced | Assigned | Failed | Cancelled | Skipped)
                    | (Announced, Assigned | Pending | Failed | Cancelled)
                    | (Assigned, Running | Queued | Pending | Completed | Failed)
                    // A lost attempt goes back to waiting for an award.
                    | (Running, Completed | Failed | Pending)
                    // Taken into a queue: running once its node says so,
                    // or ended before it said so.
                    | (Queued, Running | Completed | Failed | Pending)
            );
            assert!(ok, "{}: {:?} -> {:?} in {changes:?}", t.name, pair[0], pair[1]);
        }
    }

    /// The history holds every taken award; every attempt but the last
    /// ended without a result; a completed task's output is its last
    /// attempt's.
    pub(super) fn check_history(&mut self, t: &Task, r: &TaskReport) {
        let awards = self.awards.get(&t.id).map_or(&[][..], Vec::as_slice);
        let numbers: Vec<u32> = r.history.iter().map(|a| a.number).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{}: {numbers:?}", t.name);
        for (a, take) in awards {
            let h = r.history.iter().find(|h| h.number == a.attempt);
            assert!(!take || h.is_some(), "{}: taken {a:?} missing", t.name);
        }
        for h in &r.history {
            let award = awards.iter().find(|(a, _)| a.attempt == h.number);
            let award = award.unwrap_or_else(|| panic!("{}: {h:?} never awarded", t.name));
            assert_eq!((&award.0.worker, &self.current_node(award)), (&h.worker, &h.node));
        }
        if self.p.refuse == 0 {
            assert_eq!(awards.len(), r.history.len(), "{}", t.name);
        }
        // The last award's record: exactly one bid won, the winner's; every
        // other bid says why it lost, and the reason names each of them.
        if let Some(a) = &r.auction {
            let won: Vec<&str> = a
                .bids
                .iter()
                .filter(|b| b.verdict == crate::task::BidVerdict::Won)
                .map(|b| b.worker.as_str())
                .collect();
            assert_eq!(won.len(), 1, "{}: {a:?}", t.name);
            if let Some((last, _)) = awards.last() {
                assert_eq!(won[0], last.worker, "{}: {a:?}", t.name);
            }
            for b in a
                .bids
                .iter()
                .filter(|b| b.verdict != crate::task::BidVerdict::Won)
            {
                assert!(
                    a.reason.contains(&b.worker),
                    "{}: {} unnamed in {:?}",
                    t.name,
                    b.worker,
                    a.reason
                );
            }
        }
        if let Some((last, earlier)) = r.history.split_last() {
            assert_ne!(last.outcome, AttemptOutcome::Running, "{}", t.name);
            for h in earlier {
                let ended = matches!(
                    h.outcome,
                    AttemptOutcome::Failed { .. }
                        | AttemptOutcome::TimedOut { .. }
                        | AttemptOutcome::Lost { .. }
                );
                assert!(
                    ended,
                    "{}: an attempt before the last ended {:?}",
                    t.name, h.outcome
                );
            }
        }
        let completed = r
            .history
            .iter()
            .filter(|h| h.outcome == AttemptOutcome::Completed);
        if r.status == TaskStatus::Completed {
            let last = r.history.last().expect("a completed task ran");
            assert_eq!(completed.count(), 1, "{}", t.name);
            assert_eq!(last.outcome, AttemptOutcome::Completed, "{}", t.name);
            let want = Payload::from_bytes(output_bytes(t.id, last.number));
            assert_eq!(r.output, Some(want), "{}", t.name);
            assert_eq!(r.worker.as_ref(), Some(&last.worker));
        } else {
            assert_eq!((completed.count(), &r.output), (0, &None), "{}", t.name);
        }
        for h in &r.history {
            let expired =
                matches!(&h.outcome, AttemptOutcome::Lost { reason } if reason.contains("lease expired"));
            let paused = self.paused.contains(&(t.id, h.number));
            if expired {
                // Nodes renew every third of a lease, and messages take less
                // than another third: only a paused run lets its lease run out.
                assert!(paused, "{}: attempt {} expired while renewed", t.name, h.number);
                self.count("lease expired");
            }
            if paused {
                assert_ne!(h.outcome, AttemptOutcome::Completed, "{}: a paused run", t.name);
                if expired {
                    self.count("paused run lost");
                }
            }
        }
    }

    /// The node an award went to.
    pub(super) fn current_node(&self, award: &(Assignment, bool)) -> NodeId {
        let log = self.assign_nodes.get(&(award.0.task, award.0.attempt));
        log.cloned().expect("every award is logged with its node")
    }

    /// The task ran only if its rule fired, and ended as the rule and its
    /// dependencies' statuses say, or for a reason of its own.
    pub(super) fn check_rule(&mut self, t: &Task, r: &TaskReport) {
        use TaskStatus::*;
        let deps: Vec<TaskStatus> = t
            .dependencies
            .iter()
            .map(|d| self.last_status(d).cloned().expect("dependencies are submitted"))
            .collect();
        let fired = fired(t.trigger, &deps);
        let ran = !r.history.is_empty();
        let what = format!(
            "{} ({}) ended {:?} after {deps:?}: {:?}",
            t.name, t.trigger, r.status, r.error
        );
        assert!(!ran || fired, "ran unfired: {what}");
        let by_client = self.cancelled.contains(&t.id);
        let any = |s: TaskStatus| deps.contains(&s);
        match (&r.status, &r.error) {
            (Completed, _) => assert!(ran, "{what}"),
            (Skipped, _) => {
                self.count("skipped");
                let why = match t.trigger {
                    Trigger::AllSuccess => any(Skipped),
                    Trigger::OneFailed => !any(Failed) && !any(Cancelled),
                    Trigger::AllDone => false,
                };
                assert!(why && !ran, "{what}");
            }
            (Cancelled, Some(TaskError::Cancelled { reason })) => {
                assert_eq!(by_client, reason == "cancelled by a client", "{what}");
                if !by_client {
                    self.count("cancelled with a dependency");
                    let why = match t.trigger {
                        Trigger::AllSuccess => any(Cancelled),
                        Trigger::OneFailed => !any(Failed) && any(Cancelled),
                        Trigger::AllDone => false,
                    };
                    assert!(why && !ran, "{what}");
                }
            }
            (Failed, Some(err)) => self.check_failure(t, r, err, fired, &what),
            _ => panic!("{what}"),
        }
        if !ran && !by_client && fired {
            let own = matches!(
                r.error,
                Some(
                    TaskError::QueueTimeout { .. }
                        | TaskError::DeadlineExceeded { .. }
                        | TaskError::NoCapableWorker { .. }
                        | TaskError::NoBids { .. }
                )
            );
            assert!(own, "fired but never ran: {what}");
        }
        assert!(by_client || r.status != Cancelled || !fired, "{what}");
    }

    pub(super) fn check_failure(
        &mut self,
        t: &Task,
        r: &TaskReport,
        err: &TaskError,
        fired: bool,
        what: &str,
    ) {
        let ran = !r.history.is_empty();
        match err {
            TaskError::DependencyFailed { id, name } => {
                assert_eq!(t.trigger, Trigger::AllSuccess, "{what}");
                assert!(t.dependencies.contains(id), "{what}");
                assert_eq!(self.last_status(id), Some(&TaskStatus::Failed), "{what}");
                assert_eq!(name, &self.tasks[id].name);
                assert!(!ran, "{what}");
            }
            TaskError::Processing { .. } | TaskError::Timeout { .. } | TaskError::Poison { .. } => {
                assert!(ran, "{what}")
            }
            TaskError::QueueTimeout { timeout_ms } => {
                assert_eq!(Some(*timeout_ms), t.queue_timeout_ms, "{what}");
                assert!(fired, "{what}");
            }
            TaskError::DeadlineExceeded { deadline_ms } => {
                assert_eq!(Some(*deadline_ms), t.deadline_ms, "{what}");
                assert_eq!(r.elapsed_ms, *deadline_ms, "{what}");
                let aborted = r.history.last().map(|h| &h.outcome);
                if matches!(aborted, Some(AttemptOutcome::Aborted { .. })) {
                    self.count("deadline aborted a run");
                }
            }
            TaskError::NoCapableWorker { .. } | TaskError::NoBids { .. } => assert!(fired, "{what}"),
            _ => panic!("unexpected error: {what}"),
        }
        let best = self
            .nodes
            .values()
            .flatten()
            .filter(|w| w.role == t.role)
            .map(|w| w.skill)
            .max();
        if best.is_none_or(|b| b < t.difficulty) {
            assert!(
                !ran && !matches!(err, TaskError::NoBids { .. }),
                "beyond every worker: {what}"
            );
        }
        if self.p.max_delay == 0 && self.p.silent == 0 && self.p.churn == 0 {
            let instant = matches!(
                err,
                TaskError::Processing { .. }
                    | TaskError::DependencyFailed { .. }
                    | TaskError::NoCapableWorker { .. }
            );
            assert!(instant, "with instant workers: {what}");
        }
    }

    /// Failures are retried `retries` times, unless permanent; lost
    /// attempts are awarded again up to `max_attempts`.
    pub(super) fn check_limits(&mut self, t: &Task, r: &TaskReport) {
        let count =
            |f: fn(&AttemptOutcome) -> bool| r.history.iter().filter(|h| f(&h.outcome)).count() as u32;
        let failures =
            count(|o| matches!(o, AttemptOutcome::Failed { .. } | AttemptOutcome::TimedOut { .. }));
        let lost = count(|o| matches!(o, AttemptOutcome::Lost { .. }));
        let retries = t.retries.unwrap_or(0);
        let max_attempts = t.max_attempts.unwrap_or(3);
        assert!(
            failures <= retries + 1 && lost <= max_attempts,
            "{}: {r:?}",
            t.name
        );
        let last = r.history.last().map(|h| &h.outcome);
        match &r.error {
            Some(TaskError::Processing { .. }) => {
                let Some(AttemptOutcome::Failed { retryable, .. }) = last else {
                    panic!("{}: {r:?}", t.name)
                };
                assert!(!retryable || failures == retries + 1, "{}: {r:?}", t.name);
                if !retryable {
                    self.count("permanent failure");
                }
            }
            Some(TaskError::Timeout { .. }) => {
                assert!(
                    matches!(last, Some(AttemptOutcome::TimedOut { .. })),
                    "{}",
                    t.name
                );
                assert_eq!(failures, retries + 1, "{}: {r:?}", t.name);
            }
            Some(TaskError::Poison {
                max_attempts: m,
                attempts,
            }) => {
                assert_eq!((*m, lost), (max_attempts, max_attempts), "{}", t.name);
                assert_eq!(attempts, &r.history, "{}: poison lists every attempt", t.name);
            }
            _ => {}
        }
        if r.status == TaskStatus::Completed {
            assert!(failures <= retries && lost < max_attempts, "{}: {r:?}", t.name);
        }
    }

    /// In the event log: one ending per task at most, and each retry
    /// awarded no earlier than its backoff, `retry_delay * 2^(n-1)` capped
    /// by `max_retry_delay`, with ±25 % jitter.
    pub(super) fn check_event_log(&mut self) {
        let cfg = self.s.cfg.clone();
        let mut ends: BTreeMap<TaskId, u32> = BTreeMap::new();
        let mut failures: BTreeMap<TaskId, (u32, u64)> = BTreeMap::new();
        let mut retry_at: BTreeMap<TaskId, u64> = BTreeMap::new();
        for e in &self.events {
            let task = event_task(e);
            match e {
                Event::AttemptFinished { at_ms, end, .. } => match end {
                    AttemptEnd::Completed(_) => *ends.entry(task.unwrap()).or_default() += 1,
                    AttemptEnd::Failed(_) | AttemptEnd::TimedOut { .. } => {
                        let f = failures.entry(task.unwrap()).or_default();
                        *f = (f.0 + 1, *at_ms);
                    }
                    _ => {}
                },
                Event::TaskEnded { .. } => *ends.entry(task.unwrap()).or_default() += 1,
                Event::RetryScheduled { until_ms, .. } => {
                    let (n, failed_at) = failures[&task.unwrap()];
                    let base = (cfg.retry_delay * (1 << (n - 1))).min(cfg.max_retry_delay);
                    let base = base.as_millis() as u64;
                    let delay = until_ms - failed_at;
                    assert!(
                        (base * 750 / 1000..=base * 1250 / 1000).contains(&delay),
                        "retry {n} after {delay} ms, base {base} ms"
                    );
                    retry_at.insert(task.unwrap(), *until_ms);
                }
                Event::AttemptAwarded { at_ms, .. } => {
                    if let Some(until) = retry_at.remove(&task.unwrap()) {
                        assert!(*at_ms >= until, "retried at {at_ms} ms before {until} ms");
                    }
                }
                _ => {}
            }
        }
        let retried = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::RetryScheduled { .. }));
        *self.cover.entry("retried").or_default() += retried.count();
        for (id, n) in ends {
            assert!(n <= 1, "{id:?} ended {n} times in the event log");
        }
    }

    /// How each task ended, by kind, with the paths counted on the way.
    pub(super) fn outcomes(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = self.cover.clone();
        for id in &self.submitted {
            let r = self.keeper.report_of(id, self.now).expect("kept");
            let kind = match r.error {
                None => "completed",
                Some(TaskError::Processing { .. }) => "processing",
                Some(TaskError::NoCapableWorker { .. }) => "no capable worker",
                Some(TaskError::NoBids { .. }) => "no bids",
                Some(TaskError::DependencyFailed { .. }) => "dependency failed",
                Some(TaskError::Poison { .. }) => "poison",
                Some(TaskError::Timeout { .. }) => "timeout",
                Some(TaskError::QueueTimeout { .. }) => "queue timeout",
                Some(TaskError::DeadlineExceeded { .. }) => "deadline",
                Some(TaskError::Cancelled { .. }) => "cancelled",
                Some(TaskError::NotTriggered { .. }) => "skipped",
                Some(_) => "other",
            };
            *counts.entry(kind).or_default() += 1;
        }
        let refused = self.awards.values().flatten().filter(|(_, take)| !take).count();
        *counts.entry("refused awards").or_default() += refused;
        counts
    }
}
