//! Cancellation: one outcome per id, whatever the task is doing; a held
//! attempt is told to stop; dependents follow their trigger rules.

use super::*;

use CancelOutcome::{AlreadyFinished, Cancelled, Evicted, Unknown};

/// `t` (task 1) on n1's worker "w" (one slot), with an all_success
/// dependent (task 2) and an all_done cleanup (task 3).
fn setup(retention: Retention) -> Harness {
    let mut h = Harness::with(SchedulerConfig {
        retention: Retention {
            min_age: Duration::ZERO,
            ..retention
        },
        retry_delay: ms(100),
        ..cfg()
    });
    let t = task(1, 5).with_retries(1);
    let dependent = task(2, 1).after(&t);
    let cleanup = named(3, "cleanup", "cleaner", 1)
        .after(&t)
        .with_trigger(Trigger::AllDone);
    h.register("n2", &[("c", "cleaner", 5, 1)]);
    h.submit(vec![t, dependent, cleanup]);
    h
}

fn serve(h: &mut Harness) {
    h.register("n1", &[("w", "worker", 5, 1)]);
}

/// Brings task 1 to the phase named, at n1's worker where it is held.
fn bring_to(phase: &str) -> Harness {
    let t = tid(1);
    let mut h = setup(Retention {
        max_tasks: usize::from(phase != "evicted") * 100,
        ..Retention::default()
    });
    match phase {
        "waiting" => {
            // Waits for a dependency of its own.
            let mut h = setup(Retention::default());
            h.submit(vec![task(4, 1).depends_on(tid(2))]);
            return h;
        }
        "unknown" => {}
        // No worker yet: queued (parked) for one.
        "queued" => {}
        "announced" => serve(&mut h),
        "assigned" | "running" | "retrying" | "finished" | "evicted" => {
            serve(&mut h);
            h.bid_all();
            if phase != "assigned" {
                h.accept(t);
            }
            match phase {
                "retrying" => h.report_err(t, "flaky"),
                "finished" => h.report_ok(t, b"done"),
                // Evicted once its dependents, which hold it, are done too.
                "evicted" => {
                    h.report_ok(t, b"done");
                    h.run_ready();
                }
                _ => {}
            }
        }
        _ => unreachable!("{phase}"),
    }
    h
}

#[test]
fn cancellation_in_every_phase() {
    use TaskStatus::{Announced, Assigned, Completed, Pending, Running};
    // (phase, task cancelled, outcome, status before, aborted at n1)
    let cases: &[(&str, u128, CancelOutcome, Option<TaskStatus>, bool)] = &[
        ("waiting", 4, Cancelled, Some(Pending), false),
        ("queued", 1, Cancelled, Some(Pending), false),
        ("announced", 1, Cancelled, Some(Announced), false),
        ("assigned", 1, Cancelled, Some(Assigned), true),
        ("running", 1, Cancelled, Some(Running), true),
        ("retrying", 1, Cancelled, Some(Pending), false),
        ("finished", 1, AlreadyFinished(Completed), Some(Completed), false),
        ("evicted", 1, Evicted, None, false),
        ("unknown", 77, Unknown, None, false),
    ];
    for (phase, n, outcome, before, aborted) in cases {
        let mut h = bring_to(phase);
        let id = tid(*n);
        assert_eq!(h.status(id), *before, "{phase}");
        let awards = h.assign_count(id);
        assert_eq!(h.cancel(&[id]), std::slice::from_ref(outcome), "{phase}");
        let want_aborts = if *aborted { vec![(id, 1)] } else { vec![] };
        assert_eq!(h.last_aborts("n1"), want_aborts, "{phase}");
        if *outcome != Cancelled {
            continue;
        }
        let r = h.report_of(id);
        assert_eq!(r.status, TaskStatus::Cancelled, "{phase}");
        let reason = "cancelled by a client".to_string();
        assert_eq!(r.error, Some(TaskError::Cancelled { reason }), "{phase}");
        if *aborted {
            assert_eq!(h.load("n1", "w"), 0, "{phase}: the slot is free");
            let last = r.history.last().unwrap().outcome.clone();
            let reason = "the task was cancelled".to_string();
            assert_eq!(last, AttemptOutcome::Aborted { reason }, "{phase}");
        }
        // Nothing more happens to it: no award, no result, no retry.
        if h.worker("n1", "w").is_none() {
            serve(&mut h);
        }
        h.bid_all();
        let late = Report {
            task: id,
            attempt: 1,
            worker: "w".into(),
            outcome: Ok(Payload::from_bytes(*b"too late")),
            run_ms: 1,
        };
        h.step(Input::Reports {
            node: NodeId::new("n1"),
            reports: vec![late],
        });
        h.advance(1_000);
        assert_eq!(h.status(id), Some(TaskStatus::Cancelled), "{phase}");
        assert_eq!(h.assign_count(id), awards, "{phase}: never awarded again");
        let finals = h.changes(id).into_iter().filter(TaskStatus::is_final).count();
        assert_eq!(finals, 1, "{phase}: ended once: {:?}", h.changes(id));
    }
}

/// The dependents of a cancelled task follow their rules: an all_success
/// dependent is cancelled with it, a cleanup runs and sees why.
#[test]
fn dependents_of_a_cancelled_task_follow_their_trigger_rules() {
    let mut h = bring_to("running");
    let (t, dependent, cleanup) = (tid(1), tid(2), tid(3));
    assert_eq!(h.cancel(&[t]), [Cancelled]);
    let reason = format!("dependency \"t1\" ({t}) was cancelled");
    assert_eq!(h.error(dependent), Some(TaskError::Cancelled { reason }));
    assert_eq!(h.changes(dependent), [TaskStatus::Pending, TaskStatus::Cancelled]);

    assert_eq!(h.status(cleanup), Some(TaskStatus::Announced));
    h.bid_all();
    let deps = &h.assigned[&cleanup].1.deps;
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].outcome, Err("cancelled: cancelled by a client".into()));
}

/// One answer per id, in order, repeats included.
#[test]
fn one_outcome_per_id_in_order() {
    let mut h = bring_to("finished");
    let outcomes = h.cancel(&[tid(77), tid(2), tid(2), tid(1)]);
    assert_eq!(
        outcomes,
        [
            Unknown,
            Cancelled,
            AlreadyFinished(TaskStatus::Cancelled),
            AlreadyFinished(TaskStatus::Completed)
        ]
    );
}

/// Worker "w" (one slot) runs task 10; task 11 (priority 0) and, later,
/// task 12 (priority 5) wait in line for the slot.
fn one_slot_busy(lease: Duration) -> (Harness, [TaskId; 3]) {
    let mut h = Harness::with(SchedulerConfig { lease, ..cfg() });
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [running] = h.submit(vec![task(10, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(running);
    let [low] = h.submit(vec![task(11, 1)])[..] else {
        unreachable!()
    };
    h.advance(1);
    let [high] = h.submit(vec![task(12, 1).with_priority(5)])[..] else {
        unreachable!()
    };
    (h, [running, low, high])
}

#[test]
fn a_cancelled_attempts_slot_stays_taken_until_its_node_reports_it_stopped() {
    let (mut h, [running, low, high]) = one_slot_busy(Duration::from_secs(3600));
    assert_eq!(h.cancel(&[running]), [Cancelled]);
    // The node may still be stopping it: nothing else is announced yet.
    for t in [low, high] {
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "{t}");
    }
    // Its (stale) report says it stopped: the slot goes to the higher
    // priority first.
    h.report_err(running, "cancelled");
    assert_eq!(h.status(running), Some(TaskStatus::Cancelled));
    assert_eq!(h.status(high), Some(TaskStatus::Announced));
    assert_eq!(h.status(low), Some(TaskStatus::Pending));
    h.bid_all();
    assert_eq!(h.winner(high), Some("w"));
}

#[test]
fn a_stopped_report_from_another_node_frees_nothing() {
    let (mut h, [running, low, high]) = one_slot_busy(Duration::from_secs(3600));
    h.register("n2", &[("x", "other", 5, 1)]);
    h.cancel(&[running]);
    let (_, a) = h.assigned[&running].clone();
    h.step(Input::Reports {
        node: NodeId::new("n2"),
        reports: vec![Report {
            task: running,
            attempt: a.attempt,
            worker: a.worker,
            outcome: Err(Failure::retryable("cancelled")),
            run_ms: 1,
        }],
    });
    for t in [low, high] {
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "{t}");
    }
}

#[test]
fn a_slot_whose_node_never_says_is_free_again_one_lease_later() {
    let (mut h, [running, _, high]) = one_slot_busy(ms(300));
    // Keep the running attempt's lease alive until the cancel.
    h.renew("n1", &[(running, 1)]);
    h.cancel(&[running]);
    h.advance(299);
    assert_eq!(h.status(high), Some(TaskStatus::Pending));
    h.advance(1);
    assert_eq!(h.status(high), Some(TaskStatus::Announced));
}
