//! Retries of failed attempts: a retryable failure (or a timeout) is retried
//! up to `retries` times after `retry_delay * 2^(n-1)`, capped by
//! `max_retry_delay`, with ±25 % jitter, preferring another worker; a
//! permanent failure fails the task at once.

use super::*;

fn retrying() -> Harness {
    Harness::with(SchedulerConfig {
        retry_delay: ms(100),
        max_retry_delay: ms(400),
        ..cfg()
    })
}

#[test]
fn retries_back_off_exponentially_with_jitter_within_a_quarter() {
    let mut h = retrying();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_retries(5)])[..] else {
        unreachable!()
    };
    for (n, base) in [(1, 100), (2, 200), (3, 400), (4, 400), (5, 400)] {
        h.bid_all();
        h.accept(t);
        h.advance(7);
        let failed_at = h.now.as_millis() as u64;
        h.report_err(t, "flaky");
        let until = h.retry_until(t).expect("a retry is scheduled");
        let delay = until - failed_at;
        assert!(
            (base * 3 / 4..=base * 5 / 4).contains(&delay),
            "retry {n}: {delay} ms, base {base}"
        );
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "retry {n}");
        h.advance_to(until - 1);
        assert_eq!(
            h.status(t),
            Some(TaskStatus::Pending),
            "retry {n}: waits its delay"
        );
        h.advance_to(until);
        assert_eq!(h.changes(t).last(), Some(&TaskStatus::Announced), "retry {n}");
        assert_eq!(
            h.status(t),
            Some(TaskStatus::Announced),
            "retry {n}: as announced"
        );
    }
    // The sixth failure is one too many.
    h.bid_all();
    h.accept(t);
    h.report_err(t, "flaky");
    let want = TaskError::Processing {
        worker: "w".into(),
        message: "flaky".into(),
    };
    assert_eq!(h.error(t), Some(want));
    let r = h.report_of(t);
    let numbers: Vec<u32> = r.history.iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    assert!(r
        .history
        .iter()
        .all(|a| matches!(a.outcome, AttemptOutcome::Failed { retryable: true, .. })));
}

/// The jitter is drawn from the task id and the failure count: the same
/// for the same task, spread within ±25 % over tasks.
#[test]
fn retry_jitter_is_deterministic_and_spread() {
    let first_delays = || {
        let mut h = retrying();
        h.register("n1", &[("w", "worker", 5, 64)]);
        let ids = h.submit((1..=40).map(|n| task(n, 1).with_retries(1)).collect());
        h.bid_all();
        ids.iter()
            .map(|&t| {
                h.accept(t);
                h.report_err(t, "flaky");
                h.retry_until(t).unwrap()
            })
            .collect::<Vec<u64>>()
    };
    let delays = first_delays();
    assert_eq!(delays, first_delays());
    assert!(delays.iter().all(|d| (75..=125).contains(d)), "{delays:?}");
    let (lo, hi) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    assert!(*lo < 90 && *hi > 110, "spread over the range: {delays:?}");
}

#[test]
fn a_retry_prefers_another_worker_than_the_one_that_failed() {
    let mut h = retrying();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 6, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_retries(3)])[..] else {
        unreachable!()
    };
    h.bid_all();
    assert_eq!(h.winner(t), Some("a"), "the lowest sufficient skill");
    for (failed, next) in [("a", "b"), ("b", "a")] {
        h.accept(t);
        h.report_err(t, "flaky");
        let until = h.retry_until(t).unwrap();
        h.advance_to(until);
        h.bid_all(); // both bid
        assert_eq!(h.winner(t), Some(next), "{failed} failed last");
    }
    h.accept(t);
    h.report_err(t, "flaky");

    // The worker that failed still wins when it is the only one bidding.
    let until = h.retry_until(t).unwrap();
    h.advance_to(until);
    h.bid("n1", "b", t, false);
    h.bid("n1", "a", t, true);
    assert_eq!(h.winner(t), Some("a"));
    assert_eq!(h.assigned[&t].1.attempt, 4);
}

#[test]
fn a_permanent_failure_is_not_retried() {
    let mut h = retrying();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let t = task(1, 1).with_retries(3);
    let dependent = task(2, 1).after(&t);
    let [t, dependent] = h.submit(vec![t, dependent])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t);
    h.report(t, Err(Failure::permanent("bad input")));
    assert_eq!(h.retry_until(t), None);
    let want = TaskError::Processing {
        worker: "w".into(),
        message: "bad input".into(),
    };
    assert_eq!(h.error(t), Some(want));
    let outcome = h.report_of(t).history[0].outcome.clone();
    let message = "bad input".to_string();
    assert_eq!(
        outcome,
        AttemptOutcome::Failed {
            message,
            retryable: false
        }
    );
    assert!(matches!(
        h.error(dependent),
        Some(TaskError::DependencyFailed { .. })
    ));
}

/// A timeout, reported by the worker, counts as a retryable failure
/// whatever the report's `retryable` says.
#[test]
fn a_timed_out_attempt_is_retried_then_fails_as_a_timeout() {
    let mut h = retrying();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_retries(1).with_timeout(ms(50))])[..] else {
        unreachable!()
    };
    let timed_out = Failure {
        timeout_ms: Some(50),
        ..Failure::permanent("timed out")
    };
    h.bid_all();
    h.accept(t);
    h.report(t, Err(timed_out.clone()));
    h.advance_to(h.retry_until(t).expect("retried"));
    h.bid_all();
    h.accept(t);
    h.report(t, Err(timed_out));
    let want = TaskError::Timeout {
        worker: "w".into(),
        timeout_ms: 50,
    };
    assert_eq!(h.error(t), Some(want));
    let outcomes: Vec<_> = h.report_of(t).history.into_iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::TimedOut { timeout_ms: 50 },
            AttemptOutcome::TimedOut { timeout_ms: 50 }
        ]
    );
}

/// Refused awards leave no attempt in the history; retried ones do.
#[test]
fn the_history_lists_every_accepted_attempt() {
    let mut h = retrying();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_retries(1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.refuse(t); // attempt 1
    h.advance(10); // the backoff after a refusal
    h.bid_all();
    h.accept(t); // attempt 2
    h.report_err(t, "flaky");
    h.advance_to(h.retry_until(t).unwrap());
    h.bid_all();
    h.accept(t); // attempt 3
    h.report_ok(t, b"done");
    let r = h.report_of(t);
    let numbers: Vec<u32> = r.history.iter().map(|a| a.number).collect();
    assert_eq!((r.attempts, numbers), (2, vec![2, 3]));
    assert_eq!(r.history[1].outcome, AttemptOutcome::Completed);
}
