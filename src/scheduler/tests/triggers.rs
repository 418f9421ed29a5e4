//! Trigger rules: how a dependent reacts to the way its dependencies ended.

use super::*;

use Trigger::{AllDone, AllSuccess, OneFailed};

/// How dependency `b` ends in a case (dependency `a` always completes).
#[derive(Clone, Copy, Debug)]
enum Ends {
    Completes,
    Fails,
    IsCancelled,
    IsSkipped,
}

/// What becomes of the dependent.
#[derive(Debug, PartialEq)]
enum Then {
    Runs,
    Ends(TaskStatus),
}

/// Drives `a` and `b` to their ends, then returns the harness and the
/// dependent's id. `b` is skipped by being a fallback of a task that
/// completes.
fn play(rule: Trigger, b_ends: Ends) -> (Harness, TaskId) {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 4)]);
    let a = named(1, "a", "worker", 1);
    let pre = named(2, "pre", "worker", 1);
    let mut b = named(3, "b", "worker", 1);
    if let Ends::IsSkipped = b_ends {
        b = b.after(&pre).with_trigger(OneFailed);
    }
    let dependent = named(4, "dep", "worker", 1)
        .after(&a)
        .after(&b)
        .with_trigger(rule);
    let ids = h.submit(vec![a, pre, b, dependent]);
    let (a, pre, b, dependent) = (ids[0], ids[1], ids[2], ids[3]);
    h.bid_all();
    h.accept(a);
    h.report_ok(a, b"A");
    h.accept(pre);
    h.report_ok(pre, b"P");
    match b_ends {
        Ends::Completes | Ends::Fails => {
            h.accept(b);
            let outcome = match b_ends {
                Ends::Completes => Ok(Payload::from_bytes(*b"B")),
                _ => Err(Failure::permanent("bad input")),
            };
            h.report(b, outcome);
        }
        Ends::IsCancelled => assert_eq!(h.cancel(&[b]), [CancelOutcome::Cancelled]),
        Ends::IsSkipped => assert_eq!(h.status(b), Some(TaskStatus::Skipped)),
    }
    (h, dependent)
}

#[test]
fn trigger_rules_table() {
    use TaskStatus::{Cancelled, Failed, Skipped};
    let cases = [
        (AllSuccess, Ends::Completes, Then::Runs),
        (AllSuccess, Ends::Fails, Then::Ends(Failed)),
        (AllSuccess, Ends::IsCancelled, Then::Ends(Cancelled)),
        (AllSuccess, Ends::IsSkipped, Then::Ends(Skipped)),
        (OneFailed, Ends::Completes, Then::Ends(Skipped)),
        (OneFailed, Ends::Fails, Then::Runs),
        (OneFailed, Ends::IsCancelled, Then::Ends(Cancelled)),
        (OneFailed, Ends::IsSkipped, Then::Ends(Skipped)),
        (AllDone, Ends::Completes, Then::Runs),
        (AllDone, Ends::Fails, Then::Runs),
        (AllDone, Ends::IsCancelled, Then::Runs),
        (AllDone, Ends::IsSkipped, Then::Runs),
    ];
    for (rule, b_ends, then) in cases {
        let what = format!("{rule} when b {b_ends:?}");
        let (mut h, dep) = play(rule, b_ends);
        let status = h.status(dep).unwrap();
        if status.is_final() {
            assert_eq!(Then::Ends(status), then, "{what}");
            assert_eq!(h.report_of(dep).attempts, 0, "{what}");
            continue;
        }
        assert_eq!(then, Then::Runs, "{what}: {status:?}");
        assert_eq!(status, TaskStatus::Announced, "{what}");
        h.bid_all();
        // The worker gets every dependency's outcome, errors as text.
        let deps: Vec<_> = h.assigned[&dep]
            .1
            .deps
            .iter()
            .map(|d| (d.name.clone(), d.outcome.clone()))
            .collect();
        let b_outcome = match b_ends {
            Ends::Completes => Ok(Payload::from_bytes(*b"B")),
            Ends::Fails => Err("worker w failed: bad input".to_string()),
            Ends::IsCancelled => Err("cancelled: cancelled by a client".to_string()),
            Ends::IsSkipped => {
                Err("skipped: trigger rule one_failed did not fire (no dependency failed)".to_string())
            }
        };
        assert_eq!(
            deps,
            [
                ("a".into(), Ok(Payload::from_bytes(*b"A"))),
                ("b".into(), b_outcome)
            ],
            "{what}"
        );
        h.accept(dep);
        h.report_ok(dep, b"ran");
        assert_eq!(h.status(dep), Some(TaskStatus::Completed), "{what}");
    }
}

/// What the dependents that did not run say, and that all_success decides
/// at the first failure while the other rules wait for every dependency.
#[test]
fn rules_wait_for_every_dependency_except_all_success_on_a_failure() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 4)]);
    let a = named(1, "a", "worker", 1);
    let slow = named(2, "slow", "worker", 1);
    let strict = named(3, "strict", "worker", 1).after(&a).after(&slow);
    let fallback = named(4, "fallback", "worker", 1)
        .after(&a)
        .after(&slow)
        .with_trigger(OneFailed);
    let cleanup = named(5, "cleanup", "worker", 1)
        .after(&a)
        .after(&slow)
        .with_trigger(AllDone);
    let (ia, islow, istrict, ifallback, icleanup) = (a.id, slow.id, strict.id, fallback.id, cleanup.id);
    h.submit(vec![a, slow, strict, fallback, cleanup]);
    h.bid_all();
    h.accept(ia);
    h.accept(islow);
    h.report(ia, Err(Failure::permanent("bad input")));
    assert_eq!(
        h.error(istrict),
        Some(TaskError::DependencyFailed {
            id: ia,
            name: "a".into()
        }),
        "all_success fails at once"
    );
    for t in [ifallback, icleanup] {
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "waits for slow");
    }
    h.report_ok(islow, b"S");
    assert_eq!(h.last_announces(), vec![vec![ifallback, icleanup]]);

    // A fallback whose dependencies all completed is skipped, and says why.
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 4)]);
    let a = named(1, "a", "worker", 1);
    let fallback = named(2, "fallback", "worker", 1)
        .after(&a)
        .with_trigger(OneFailed);
    let after_fallback = named(3, "next", "worker", 1).after(&fallback);
    let ids = h.submit(vec![a, fallback, after_fallback]);
    h.run_ready();
    let r = h.report_of(ids[1]);
    assert_eq!(r.status, TaskStatus::Skipped);
    let reason = "no dependency failed".to_string();
    assert_eq!(
        r.error,
        Some(TaskError::NotTriggered {
            rule: OneFailed,
            reason
        })
    );
    let reason = format!("dependency \"fallback\" ({}) was skipped", ids[1]);
    let r = h.report_of(ids[2]);
    assert_eq!(
        (r.status, r.error),
        (
            TaskStatus::Skipped,
            Some(TaskError::NotTriggered {
                rule: AllSuccess,
                reason
            })
        )
    );
}
