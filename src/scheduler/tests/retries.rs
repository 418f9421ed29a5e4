//! Second chances: late bids for a round that closed without an award,
//! awards the worker refused, and the timers of earlier chances going stale.

use super::*;

/// An answer that misses its auction's window still wins the task when that
/// auction closed without an award, instead of the task waiting for its
/// backoff and a new round.
#[test]
fn a_late_bid_rescues_a_task_backing_off() {
    use TaskStatus::*;
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid("n1", "a", t, false);
    h.advance(5); // b stays silent: the window ends without a usable bid
    assert_eq!(h.status(t), Some(Pending));

    h.advance(2);
    h.bid("n1", "b", t, true); // b's answer to round 1 arrives now
    assert_eq!(h.winner(t), Some("b"));
    assert_eq!(h.announce_times(t), [0], "no second announcement");
    assert_eq!(h.changes(t), [Pending, Announced, Pending, Assigned]);
    let auction = h.report_of(t).auction.unwrap();
    assert_eq!(auction.rounds, 1);
    let bidders: Vec<_> = auction.bids.iter().map(|b| b.worker.as_str()).collect();
    assert_eq!(bidders, ["b"], "the late bid is on record");
    assert!(
        auction.reason.contains("late bid for round 1"),
        "{}",
        auction.reason
    );

    // Later answers and the backoff's timer change nothing.
    h.bid("n1", "a", t, true);
    h.advance(100);
    assert_eq!((h.status(t), h.assign_count(t)), (Some(Assigned), 1));
    h.accept(t);
    h.report_ok(t, b"done");
    assert_eq!(h.status(t), Some(Completed));
}

/// A late bid also rescues a task back in its queue that the pump has not
/// reached yet (here: one task looked at per step).
#[test]
fn a_late_bid_rescues_a_queued_task() {
    let mut h = Harness::with(SchedulerConfig { max_scan: 1, ..cfg() });
    h.register("n1", &[("w", "worker", 5, 3)]);
    let [t1] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.advance(14); // round 1 drew nothing; t1 retries at 15
                   // Of higher priority, t2 and t3 go before t1, which became ready first.
    let [t2, t3] = h.submit(vec![task(2, 3).with_priority(1), task(3, 3).with_priority(1)])[..] else {
        unreachable!()
    };
    assert_eq!(h.last_announces(), vec![vec![t2]]);
    // One step at 15 ms (a pump that stops at its scan bound goes on at
    // the next step; the bid below comes first).
    h.now += Duration::from_millis(1);
    h.step(Input::Tick);
    assert_eq!(
        h.last_announces(),
        vec![vec![t3]],
        "t1 is back in line, behind t3"
    );
    assert_eq!((h.status(t1), h.rounds[&t1]), (Some(TaskStatus::Pending), 1));

    h.bid("n1", "w", t1, true);
    assert_eq!(h.winner(t1), Some("w"));
    assert_eq!(h.announce_times(t1), [0]);
    assert_eq!(h.report_of(t1).attempts, 1);
}

/// Late answers that must not win: round 1 of the task closed at 5 ms
/// without an award while "c" had room, so the task is backing off.
#[test]
fn late_bids_that_change_nothing() {
    fn late(task: TaskId, round: u32, worker: &str) -> Bid {
        Bid {
            task,
            round,
            worker: worker.into(),
            skill: 9,
            load: 0,
            capacity: 1,
            willing: true,
        }
    }
    type Case = (&'static str, fn(&mut Harness, TaskId));
    let cases: Vec<Case> = vec![
        ("unwilling", |h, t| h.bid("n1", "c", t, false)),
        ("from a worker without skill", |h, t| h.bid("n2", "weak", t, true)),
        ("from a worker without a free slot", |h, t| {
            h.bid("n1", "a", t, true)
        }),
        ("from an unregistered worker", |h, t| {
            h.bid_raw("n1", late(t, 1, "ghost"))
        }),
        ("for round 0", |h, t| h.bid_raw("n1", late(t, 0, "c"))),
        ("while announced again", |h, t| {
            h.advance_to(15);
            h.bid_raw("n1", late(t, 1, "c"));
        }),
        ("for an older round", |h, t| {
            h.advance_to(20); // round 2 closed empty too
            h.bid_raw("n1", late(t, 1, "c"));
        }),
    ];
    for (what, act) in cases {
        let mut h = Harness::new();
        h.register(
            "n1",
            &[
                ("a", "worker", 5, 1),
                ("b", "worker", 5, 1),
                ("c", "worker", 5, 1),
            ],
        );
        h.register("n2", &[("weak", "worker", 2, 1)]);
        let [busy] = h.submit(vec![task(9, 3)])[..] else {
            unreachable!()
        };
        h.bid_all();
        assert_eq!(h.winner(busy), Some("a"));
        h.accept(busy);
        let [t] = h.submit(vec![task(1, 3)])[..] else {
            unreachable!()
        };
        for (node, w) in [("n1", "a"), ("n1", "b"), ("n2", "weak")] {
            h.bid(node, w, t, false);
        }
        h.advance(5);
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "{what}: backing off");
        act(&mut h, t);
        assert_eq!(h.assign_count(t), 0, "{what}");
        assert_ne!(h.status(t), Some(TaskStatus::Assigned), "{what}");
    }
}

/// A refused award backs off instead of going straight back to auction, and
/// the next round goes to another capable bidder when there is one.
#[test]
fn a_refused_award_backs_off_and_goes_to_another_bidder() {
    use TaskStatus::*;
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 6, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid_all();
    assert_eq!(h.winner(t), Some("a"), "the lowest sufficient skill");
    h.refuse(t);
    assert_eq!((h.status(t), h.load("n1", "a")), (Some(Pending), 0));
    h.advance(9);
    assert_eq!(h.announce_times(t), [0], "no new round during the backoff");
    h.advance(1);
    assert_eq!(h.announce_times(t), [0, 10]);

    // a bids again and would win on skill, but just refused: b wins.
    h.bid_all();
    assert_eq!(h.winner(t), Some("b"));
    assert_eq!(h.assigned[&t].1.attempt, 2);
    let bidders = h.report_of(t).auction.unwrap().bids.len();
    assert_eq!(bidders, 2, "a's bid is still on record");

    // b refuses too: the second refusal in a row waits twice as long, and
    // now a may win again.
    h.refuse(t);
    h.advance(19);
    assert_eq!(h.announce_times(t), [0, 10]);
    h.advance(1);
    assert_eq!(h.announce_times(t), [0, 10, 30]);
    h.bid_all();
    assert_eq!(h.winner(t), Some("a"));
    h.accept(t);
    h.report_ok(t, b"done");
    assert_eq!(h.status(t), Some(Completed));
    assert_eq!(
        h.changes(t),
        [
            Pending, Announced, Assigned, Pending, Announced, Assigned, Pending, Announced, Assigned,
            Running, Completed
        ]
    );
}

/// The refuser still wins when it is the only capable bidder, and a worker
/// that keeps refusing is offered the task at a bounded pace, not in a
/// tight loop.
#[test]
fn a_lone_refusing_worker_is_retried_with_growing_backoff() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1), ("weak", "worker", 1, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    // Backoffs of 10, 20, 40 (the maximum), 40 ms.
    for backoff in [10, 20, 40, 40] {
        h.bid_all(); // weak answers too, unwilling
        assert_eq!(h.winner(t), Some("w"));
        h.refuse(t);
        h.advance(backoff - 1);
        assert_eq!(h.status(t), Some(TaskStatus::Pending));
        h.advance(1);
        assert_eq!(h.status(t), Some(TaskStatus::Announced));
    }
    assert_eq!(h.announce_times(t), [0, 10, 30, 70, 110]);
    assert_eq!(h.assign_count(t), 4);
    h.bid_all();
    h.accept(t);
    h.report_ok(t, b"");
    assert_eq!(h.status(t), Some(TaskStatus::Completed));

    // Refusals count per task: another task's first refusal waits the first
    // backoff.
    let [u] = h.submit(vec![task(2, 3)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.refuse(u);
    h.advance(10);
    assert_eq!(h.status(u), Some(TaskStatus::Announced));
}

/// A late bid from the worker that refused the task does not undo the
/// backoff; another worker's does.
#[test]
fn a_refuser_cannot_take_the_task_back_with_a_late_bid() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 6, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid("n1", "a", t, true);
    h.advance(5); // b never answered round 1
    assert_eq!(h.winner(t), Some("a"));
    h.refuse(t);
    h.bid("n1", "a", t, true);
    assert_eq!(h.status(t), Some(TaskStatus::Pending), "a refused it");
    h.bid("n1", "b", t, true);
    assert_eq!(h.winner(t), Some("b"));
    assert_eq!(h.announce_times(t), [0]);
}

/// A backoff's retry timer is stale once the task left that backoff: it
/// must not cut a later, longer backoff short.
#[test]
fn a_retry_timer_from_an_earlier_backoff_does_not_fire() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 6, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid("n1", "a", t, false);
    h.advance(5); // round 1 closes empty: retry at 15
    h.advance(2);
    h.bid("n1", "b", t, true); // late, and wins
    h.advance(1);
    h.refuse(t); // backs off again: retry at 18
    h.advance_to(17);
    assert_eq!(
        h.status(t),
        Some(TaskStatus::Pending),
        "the retry for 15 is stale"
    );
    h.advance(1);
    assert_eq!(h.announce_times(t), [0, 18]);
}

/// A run timeout belongs to the attempt that was running when it was set.
/// The admin's execution-timeout backstop of an attempt that was lost does
/// not fire on the next attempt.
#[test]
fn a_run_timeout_for_an_earlier_attempt_does_not_fire() {
    let mut h = Harness::with(SchedulerConfig {
        lease: ms(1000),
        ..cfg()
    });
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.register("n2", &[("v", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_timeout(ms(5000))])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t);
    h.leave(h.assigned[&t].0.clone().as_str());
    h.advance(1);
    h.bid_all();
    h.accept(t);
    assert_eq!(h.report_of(t).attempts, 2);
    // Keep the second attempt's lease alive past the first one's backstop.
    for _ in 0..8 {
        h.advance(700);
        let node = h.assigned[&t].0.clone();
        h.step(Input::Renew {
            node,
            held: vec![(t, 2)],
            waiting: Vec::new(),
        });
    }
    assert_eq!(h.status(t), Some(TaskStatus::Running), "{:?}", h.report_of(t));
}

/// Time a task spends queued behind busy workers between two unanswered
/// rounds is not held against the bidders: only rounds and their backoffs
/// count towards `NoBids`.
#[test]
fn queue_time_between_unanswered_rounds_does_not_count_towards_no_bids() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [late] = h.submit(vec![task(2, 1)])[..] else {
        unreachable!()
    };
    h.advance(5); // round 1 closes unanswered: backoff
    assert_eq!(h.status(late), Some(TaskStatus::Pending));
    let [busy] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    h.bid("n1", "w", busy, true);
    assert_eq!(h.winner(busy), Some("w"));
    h.accept(busy);
    h.advance(60_000); // `late` waits in line while w works
    assert_eq!(h.status(late), Some(TaskStatus::Pending));
    h.report_ok(busy, b"");
    h.advance(5); // round 2 closes unanswered too
    assert_eq!(
        h.status(late),
        Some(TaskStatus::Pending),
        "backs off, does not fail"
    );
    assert!(h.report_of(late).error.is_none());
}
