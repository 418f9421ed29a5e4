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
    assert_eq!(done.len(), 2, "{done:?}");
    assert_eq!(
        done[1],
        Observation::Finished {
            role: "worker".into(),
            status: "completed".into()
        }
    );
    let mut c = task(2, 1);
    c.role = "worker".into();
    let [cancelled] = h.submit(vec![c])[..] else {
        unreachable!()
    };
    let before = h.events.len();
    h.cancel(&[cancelled]);
    assert!(
        observed(&h, before).contains(&Observation::Finished {
            role: "worker".into(),
            status: "cancelled".into()
        }),
        "{:?}",
        observed(&h, before)
    );
}
