//! Timeouts and defaults: the queue timeout (ready until awarded), the total
//! deadline (from submission), what absent and zero mean, and the ranges
//! checked at submission.

use super::*;
use crate::task::{MAX_PRIORITY, MAX_RETRIES, MAX_TIMEOUT_MS};

/// The tasks of the latest `TasksSubmitted` event.
fn submitted(h: &Harness) -> Vec<Task> {
    h.events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::TasksSubmitted { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .expect("a submission")
}

#[test]
fn the_queue_timeout_counts_from_when_the_task_became_ready() {
    let mut h = Harness::new();
    h.register("n1", &[("junior", "worker", 1, 1), ("senior", "worker", 5, 1)]);
    let hog = task(1, 5);
    let first = task(2, 1);
    let queued = task(3, 5).after(&first).with_queue_timeout(ms(100));
    let [hog, first, queued] = h.submit(vec![hog, first, queued])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(hog); // the senior, the only one able to run `queued`, is busy
    h.accept(first);
    h.advance(50);
    h.report_ok(first, b""); // `queued` is ready from 50 ms
    h.advance_to(149);
    assert_eq!(h.status(queued), Some(TaskStatus::Pending));
    h.advance(1);
    assert_eq!(h.error(queued), Some(TaskError::QueueTimeout { timeout_ms: 100 }));
    assert_eq!(h.report_of(queued).elapsed_ms, 150);
    assert_eq!(h.status(hog), Some(TaskStatus::Running));
}

/// An award the worker refused leaves no trace, so it does not stop the
/// queue timeout: the task still fails once it has waited that long for an
/// award that holds.
#[test]
fn a_refused_award_does_not_stop_the_queue_timeout() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_queue_timeout(ms(100))])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.advance(150); // the answer takes its time...
    h.refuse(t); // ...and is no; `t` backs off.
                 // The worker takes something else meanwhile, and keeps it.
    let [other] = h.submit(vec![task(2, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(other);
    h.advance(10_000);
    assert_eq!(h.error(t), Some(TaskError::QueueTimeout { timeout_ms: 100 }));
    let r = h.report_of(t);
    assert_eq!((r.attempts, r.elapsed_ms), (0, 150));
}

#[test]
fn the_queue_timeout_starts_again_when_an_attempt_is_lost() {
    let mut h = Harness::with(SchedulerConfig {
        lease: ms(300),
        ..cfg()
    });
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_queue_timeout(ms(100))])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t);
    h.advance(300); // lost, waits again from 300 ms
    assert!(matches!(
        h.report_of(t).history[0].outcome,
        AttemptOutcome::Lost { .. }
    ));
    h.advance_to(399);
    assert_eq!(h.error(t), None, "still waiting for an award");
    h.advance(1);
    assert_eq!(h.error(t), Some(TaskError::QueueTimeout { timeout_ms: 100 }));
}

#[test]
fn the_deadline_aborts_a_running_attempt_and_fails_the_task() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let t = task(1, 1).with_deadline(ms(500)).with_retries(3);
    let dependent = task(2, 1).after(&t);
    let [t, dependent] = h.submit(vec![t, dependent])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t);
    h.advance_to(499);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
    h.advance(1);
    assert_eq!(h.last_aborts("n1"), [(t, 1)]);
    let r = h.report_of(t);
    assert_eq!(r.error, Some(TaskError::DeadlineExceeded { deadline_ms: 500 }));
    let reason = "the task passed its deadline".to_string();
    assert_eq!(r.history[0].outcome, AttemptOutcome::Aborted { reason });
    assert_eq!(h.load("n1", "w"), 0);
    assert!(matches!(
        h.error(dependent),
        Some(TaskError::DependencyFailed { .. })
    ));
    h.report_ok(t, b"too late");
    assert_eq!(h.status(t), Some(TaskStatus::Failed));
}

/// The deadline counts from submission, through waiting for dependencies.
#[test]
fn the_deadline_counts_from_submission() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let slow = task(1, 1);
    let t = task(2, 1).after(&slow).with_deadline(ms(200));
    let [slow, t] = h.submit(vec![slow, t])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(slow);
    h.advance(200);
    assert_eq!(h.error(t), Some(TaskError::DeadlineExceeded { deadline_ms: 200 }));
    assert_eq!(h.report_of(t).attempts, 0);
    h.report_ok(slow, b"");
    assert_eq!(h.status(t), Some(TaskStatus::Failed));
}

/// Absent numbers take the node's defaults, zero timeouts mean "none", and
/// the ledger says exactly what applies.
#[test]
fn defaults_are_resolved_into_the_submitted_event() {
    let mut h = Harness::with(SchedulerConfig {
        default_timeout: Some(ms(300)),
        default_queue_timeout: Some(ms(1000)),
        default_deadline: Some(ms(5000)),
        default_retries: 2,
        default_max_attempts: 4,
        ..cfg()
    });
    let mut zero = task(2, 1)
        .with_timeout(ms(0))
        .with_queue_timeout(ms(0))
        .with_deadline(ms(0));
    zero.retries = Some(0);
    zero.max_attempts = Some(1);
    let set = task(3, 1)
        .with_timeout(ms(10))
        .with_queue_timeout(ms(20))
        .with_deadline(ms(30))
        .with_retries(5)
        .with_max_attempts(6);
    h.submit(vec![task(1, 1), zero, set]);
    let got: Vec<_> = submitted(&h)
        .iter()
        .map(|t| {
            (
                t.timeout_ms,
                t.queue_timeout_ms,
                t.deadline_ms,
                t.retries,
                t.max_attempts,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some(300), Some(1000), Some(5000), Some(2), Some(4)),
            (None, None, None, Some(0), Some(1)),
            (Some(10), Some(20), Some(30), Some(5), Some(6)),
        ]
    );
}

#[test]
fn out_of_range_numbers_are_refused_naming_the_task() {
    type Set = fn(&mut Task);
    let cases: &[(&str, Set)] = &[
        ("timeout_ms", |t| t.timeout_ms = Some(MAX_TIMEOUT_MS + 1)),
        ("queue_timeout_ms", |t| {
            t.queue_timeout_ms = Some(MAX_TIMEOUT_MS + 1)
        }),
        ("deadline_ms", |t| t.deadline_ms = Some(u64::MAX)),
        ("retries", |t| t.retries = Some(MAX_RETRIES + 1)),
        ("max_attempts", |t| t.max_attempts = Some(0)),
        ("max_attempts", |t| t.max_attempts = Some(MAX_RETRIES + 1)),
        ("priority", |t| t.priority = -MAX_PRIORITY - 1),
    ];
    for (field, set) in cases {
        let mut h = Harness::new();
        let mut bad = named(2, "bad one", "worker", 1);
        set(&mut bad);
        let Err(SubmitError::Invalid { task, reason }) = h.try_submit(vec![task(1, 1), bad]) else {
            panic!("{field}: accepted")
        };
        assert_eq!(task, "bad one", "{field}");
        assert!(reason.starts_with(&format!("{field} = ")), "{field}: {reason}");
        assert_eq!(h.s.held(), 0, "{field}");
    }
    // The limits themselves are fine.
    let mut h = Harness::new();
    let mut edge = task(1, 1)
        .with_retries(MAX_RETRIES)
        .with_max_attempts(MAX_RETRIES);
    edge.deadline_ms = Some(MAX_TIMEOUT_MS);
    edge.priority = MAX_PRIORITY;
    assert!(h.try_submit(vec![edge]).is_ok());
}
