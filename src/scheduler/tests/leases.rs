//! Leases: an award starts one, a node's renewals extend it, and an attempt
//! whose lease runs out (or whose node leaves) is lost and awarded again,
//! until `max_attempts` losses make the task a poison task. Stale
//! renewals and reports change nothing but draw an abort.

use super::state::{Timer, TimerKind as Kind};
use super::*;

pub(super) const LEASE: u64 = 300;

pub(super) fn leased() -> Harness {
    Harness::with(SchedulerConfig {
        lease: ms(LEASE),
        ..cfg()
    })
}

/// One worker `w` on `n1` running task 1 (attempt 1) under a short lease.
pub(super) fn one_running() -> (Harness, TaskId) {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t);
    (h, t)
}

fn last_outcome(h: &Harness, id: TaskId) -> AttemptOutcome {
    h.report_of(id)
        .history
        .last()
        .expect("an attempt")
        .outcome
        .clone()
}

#[test]
fn a_lease_runs_out_exactly_one_lease_after_the_last_renewal() {
    let (mut h, t) = one_running();
    h.advance_to(100);
    assert_eq!(h.renew("n1", &[(t, 1)]), []);
    h.advance_to(250);
    assert_eq!(h.renew("n1", &[(t, 1)]), []);

    h.advance_to(LEASE - 1);
    assert_eq!(h.status(t), Some(TaskStatus::Running), "renewed at 250");
    h.advance_to(250 + LEASE - 1);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
    h.advance(1);
    let reason = format!("lease expired: no renewal from its node for {LEASE} ms");
    assert_eq!(last_outcome(&h, t), AttemptOutcome::Lost { reason });
    assert_eq!(h.last_aborts("n1"), [(t, 1)], "the node is told to stop");
    assert_eq!(h.load("n1", "w"), 0);
    // The paused node may still run it: its slot stays taken until the
    // node says the attempt stopped. Then the task is awarded again, to the
    // same worker since no other is there.
    assert_eq!(h.status(t), Some(TaskStatus::Pending));
    h.report_err(t, "cancelled");
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    h.bid_all();
    assert_eq!(h.assigned[&t].1.attempt, 2);
}

#[test]
fn renewals_keep_a_long_attempt_alive() {
    let (mut h, t) = one_running();
    for _ in 0..100 {
        h.advance(LEASE / 3);
        assert_eq!(h.renew("n1", &[(t, 1)]), []);
    }
    assert_eq!(h.status(t), Some(TaskStatus::Running), "at 10 s");
    h.report_ok(t, b"done");
    let r = h.report_of(t);
    assert_eq!((r.status, r.attempts), (TaskStatus::Completed, 1));
}

/// A renewal names what the node holds; whatever of it is not the node's
/// current attempt is aborted, and only that.
#[test]
fn stale_renewals_draw_an_abort() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.register("n2", &[("v", "worker", 6, 1)]);
    let [t, done] = h.submit(vec![task(1, 1), task(2, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    assert_eq!((h.winner(t), h.winner(done)), (Some("w"), Some("v")));
    h.accept(t);
    h.accept(done);
    h.report_ok(done, b"");
    // (what, node, held pairs, aborted pairs)
    type Case = (&'static str, &'static str, Vec<(TaskId, u32)>, Vec<(TaskId, u32)>);
    let cases: &[Case] = &[
        ("the current attempt", "n1", vec![(t, 1)], vec![]),
        ("another attempt number", "n1", vec![(t, 1), (t, 7)], vec![(t, 7)]),
        ("from another node", "n2", vec![(t, 1)], vec![(t, 1)]),
        ("a finished task", "n2", vec![(done, 1)], vec![(done, 1)]),
        ("an unknown task", "n1", vec![(tid(99), 1)], vec![(tid(99), 1)]),
    ];
    for (what, node, held, aborted) in cases {
        assert_eq!(&h.renew(node, held), aborted, "{what}");
        assert_eq!(h.status(t), Some(TaskStatus::Running), "{what}");
    }

    // n1 pauses past its lease: the attempt is lost, and the task goes to v.
    h.advance(LEASE);
    assert!(matches!(last_outcome(&h, t), AttemptOutcome::Lost { .. }));
    h.bid_all();
    assert_eq!(h.winner(t), Some("v"));
    h.accept(t);
    // n1 wakes up and renews what it still holds: told to drop it.
    assert_eq!(h.renew("n1", &[(t, 1)]), [(t, 1)]);
    assert_eq!(h.renew("n2", &[(t, 2)]), []);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
}

/// A paused worker's report, arriving after its attempt was lost, is
/// ignored, whether or not the task was awarded again meanwhile: one
/// recorded result per task.
#[test]
fn a_late_report_after_a_loss_is_ignored() {
    let late = |attempt| Report {
        task: tid(1),
        attempt,
        worker: "w".into(),
        outcome: Ok(Payload::from_bytes(*b"late")),
        run_ms: 1,
    };
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.register("n2", &[("v", "worker", 6, 1)]);
    let [t] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    assert_eq!(h.winner(t), Some("w"));
    h.accept(t);
    h.advance(LEASE);
    assert!(matches!(last_outcome(&h, t), AttemptOutcome::Lost { .. }));
    assert_eq!(h.status(t), Some(TaskStatus::Announced));

    // Before the next award...
    h.step(Input::Reports {
        node: NodeId::new("n1"),
        reports: vec![late(1)],
    });
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    // ...and after it.
    h.bid_all();
    assert_eq!(h.winner(t), Some("v"), "the lost worker is avoided");
    h.accept(t);
    h.step(Input::Reports {
        node: NodeId::new("n1"),
        reports: vec![late(1)],
    });
    assert_eq!(h.status(t), Some(TaskStatus::Running));
    assert_eq!((h.load("n1", "w"), h.load("n2", "v")), (0, 1));

    h.report_ok(t, b"fresh");
    let r = h.report_of(t);
    assert_eq!(r.output, Some(Payload::from_bytes(*b"fresh")));
    let outcomes: Vec<_> = r.history.iter().map(|a| (a.number, a.worker.as_str())).collect();
    assert_eq!(outcomes, [(1, "w"), (2, "v")]);
    assert!(matches!(r.history[0].outcome, AttemptOutcome::Lost { .. }));
}

/// After `max_attempts` losses (default 3) the task fails as a poison
/// task, and the error lists every attempt.
#[test]
fn poison_after_max_attempts_losses_lists_every_attempt() {
    let mut h = leased();
    for n in ["n1", "n2", "n3"] {
        h.register(n, &[("w", "worker", 5, 1)]);
    }
    let [t] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    // Lost twice with its node, once by its lease.
    for (node, lose) in [("n1", "leave"), ("n2", "leave"), ("n3", "expire")] {
        h.bid_all();
        assert_eq!(h.assigned[&t].0, NodeId::new(node), "lowest node id first");
        h.accept(t);
        h.advance(10);
        match lose {
            "leave" => h.leave(node),
            _ => h.advance(LEASE),
        }
    }
    let r = h.report_of(t);
    assert_eq!(r.status, TaskStatus::Failed);
    let Some(TaskError::Poison {
        max_attempts,
        attempts,
    }) = r.error.clone()
    else {
        panic!("{:?}", r.error)
    };
    assert_eq!((max_attempts, attempts.clone()), (3, r.history.clone()));
    let listed: Vec<_> = attempts.iter().map(|a| (a.number, a.node.to_string())).collect();
    assert_eq!(listed, [(1, "n1".into()), (2, "n2".into()), (3, "n3".into())]);
    assert!(attempts
        .iter()
        .all(|a| matches!(a.outcome, AttemptOutcome::Lost { .. })));
    let text = r.error.unwrap().to_string();
    for part in [
        "3 attempts lost",
        "attempt 1 on w at node n1: lost: worker w: its node disconnected",
        "attempt 3 on w at node n3: lost: lease expired",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

/// `max_attempts` is per task; one lost attempt can be enough.
#[test]
fn max_attempts_one_fails_at_the_first_loss() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_max_attempts(1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.leave("n1"); // lost before it even accepted
    assert!(matches!(
        h.error(t),
        Some(TaskError::Poison { max_attempts: 1, .. })
    ));
}

#[test]
fn ended_attempts_leave_no_lease_checks_behind() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.submit((1..=200).map(|i| task(i, 1)).collect());
    h.run_ready();
    assert_eq!(h.s.unfinished(), 0);
    // Ended attempts void their checks, which leave the line at once when
    // nothing still running is ahead of them.
    assert_eq!(h.s.leases.len(), 0);
    h.advance(LEASE + 1);
    assert_eq!(h.s.leases.len(), 0);
    let left: Vec<_> = h.s.timers.iter().filter(|t| t.kind != Kind::Retention).collect();
    assert_eq!(left, [] as [&Timer; 0], "only retention's timer is left");
}

#[test]
fn a_clock_that_steps_back_delays_lease_checks_but_loses_none() {
    let mut h = leased();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 5, 1)]);
    h.advance_to(1_000);
    let [t1] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t1);
    // The wall clock steps back 500 ms before the next award.
    h.now = ms(500);
    let [t2] = h.submit(vec![task(2, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t2);
    // t2's lease ends at 800 by its own clock; its check waits behind t1's
    // (at 1,300), and then finds it lost.
    h.advance_to(1_000 + LEASE);
    for t in [t1, t2] {
        assert!(matches!(last_outcome(&h, t), AttemptOutcome::Lost { .. }), "{t}");
    }
}
