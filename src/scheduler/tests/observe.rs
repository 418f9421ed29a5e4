//! What metrics read off the scheduler: the census and the observations of
//! its decisions.

use super::*;

/// The observations of the events of the harness's last step.
fn observed(h: &Harness, since: usize) -> Vec<Observation> {
    let mut out = Vec::new();
    for e in &h.events[since..] {
        h.s.observe(e, &mut out);
    }
    out
}

#[test]
fn the_census_counts_tasks_by_role_and_status_the_ready_queue_and_slots() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 2), ("x", "other", 5, 1)]);
    let ids = h.submit(vec![
        task(1, 1),
        task(2, 1),
        task(3, 9),
        named(4, "o", "other", 1),
    ]);
    let c = h.s.census();
    let count = |role: &str, status: &str| c.tasks.get(&(role.to_string(), status.to_string())).copied();
    assert_eq!(count("worker", "announced"), Some(2), "{c:?}");
    assert_eq!(count("worker", "pending"), Some(1), "no capable worker: {c:?}");
    assert_eq!(count("other", "announced"), Some(1), "{c:?}");
    assert_eq!(c.ready.get("worker"), Some(&3));
    assert_eq!((c.workers, c.slots_used, c.slots_free), (2, 0, 3));
    h.bid_all();
    h.accept(ids[0]);
    h.report_ok(ids[0], b"done");
    let c = h.s.census();
    assert_eq!(
        c.tasks.get(&("worker".into(), "completed".into())),
        Some(&1),
        "{c:?}"
    );
    assert_eq!(
        c.tasks.get(&("worker".into(), "assigned".into())),
        Some(&1),
        "{c:?}"
    );
    assert_eq!(c.ready.get("worker"), Some(&1), "only the one nobody can take");
    assert_eq!((c.slots_used, c.slots_free), (2, 1), "t2 on w, t4 on x");
}

#[test]
fn each_decision_is_observed_with_its_role_and_timing() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let mut t = task(1, 1);
    t.retries = Some(1);
    let [id] = h.submit(vec![t])[..] else {
        unreachable!()
    };
    assert_eq!(
        observed(&h, 0),
        [Observation::Submitted {
            role: "worker".into(),
            count: 1
        }]
    );
    h.advance(3);
    let before = h.events.len();
    h.bid_all();
    let awarded = observed(&h, before);
    assert_eq!(
        awarded,
        [Observation::Awarded {
            role: "worker".into(),
            path: BidPath::Announced,
            waited: ms(3),
            rounds: 1
        }]
    );
    h.accept(id);
    h.advance(7);
    let before = h.events.len();
    h.report_err(id, "flaky");
    let failed = observed(&h, before);
    assert_eq!(
        failed,
        [
            Observation::AttemptEnded {
                role: "worker".into(),
                how: "failed",
                ran: ms(7)
            },
            Observation::Retried {
                role: "worker".into()
            },
        ]
    );
    // After the retry delay, the next announcement is answered at once.
    for _ in 0..5_000 {
        h.advance(1);
        h.bid_all();
        if h.status(id) == Some(TaskStatus::Assigned) {
            break;
        }
    }
    assert_eq!(h.status(id), Some(TaskStatus::Assigned), "{:?}", h.changes(id));
    h.accept(id);
    let before = h.events.len();
    h.report_ok(id, b"ok");
    let done = observed(&h, before);
    assert!(
        matches!(&done[..], [Observation::AttemptEnded { how: "completed", .. }]),
        "{done:?}"
    );
}

/// Every end counts in the census, those a dependency caused included.
#[test]
fn the_census_counts_every_finished_task_by_role_and_status() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let mut fallback = task(3, 1).depends_on(tid(1));
    fallback.trigger = Trigger::OneFailed;
    let ids = h.submit(vec![
        task(1, 1),
        task(2, 1).depends_on(tid(1)),
        fallback,
        task(4, 1),
    ]);
    h.bid_all();
    h.accept(ids[0]);
    h.report_ok(ids[0], b"ok");
    h.cancel(&[ids[3]]);
    let c = h.s.census();
    let finished = |status: &str| {
        c.finished
            .get(&("worker".to_string(), status.to_string()))
            .copied()
    };
    assert_eq!(finished("completed"), Some(1), "{c:?}");
    assert_eq!(finished("skipped"), Some(1), "the fallback, not triggered: {c:?}");
    assert_eq!(finished("cancelled"), Some(1), "{c:?}");
    assert_eq!(c.ready.get("worker"), Some(&1), "t2 waits for an award: {c:?}");
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let ids = h.submit(vec![
        task(1, 1),
        task(2, 1).depends_on(tid(1)),
        task(3, 1).depends_on(tid(2)),
    ]);
    h.cancel(&[ids[0]]);
    let c = h.s.census();
    let n: u64 = c.finished.values().sum();
    assert_eq!(n, 3, "the dependents a cancellation ended count too: {c:?}");
    assert_eq!(
        c.ready.get("worker"),
        Some(&0),
        "a known role reads 0, not nothing"
    );
}
