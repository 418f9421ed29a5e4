//! Announcements, bids and awards.

use super::*;
use crate::task::BidVerdict;

const CEYLON: &[Spec] = &[
    ("junior", "worker", 3, 1),
    ("intermediate", "worker", 6, 1),
    ("senior", "worker", 9, 1),
];

fn ceylon_tasks() -> Vec<Task> {
    vec![
        named(2, "easy", "worker", 2),
        named(5, "medium", "worker", 5),
        named(8, "hard", "worker", 8),
        named(10, "impossible", "worker", 10),
    ]
}

#[test]
fn ceylon_tutorial() {
    let mut h = Harness::with(SchedulerConfig::default());
    h.register("n1", CEYLON);
    let ids = h.submit(ceylon_tasks());
    let [easy, medium, hard, impossible] = ids[..] else {
        unreachable!()
    };

    // One batch with the three tasks someone can do; the tenth waits.
    assert_eq!(h.last_announces(), vec![vec![easy, medium, hard]]);

    // Every worker answers every announcement: all auctions close at once.
    h.bid_all();
    assert_eq!(h.winner(easy), Some("junior"), "best fit when all are idle");
    assert_eq!(h.winner(medium), Some("intermediate"));
    assert_eq!(h.winner(hard), Some("senior"));
    for id in [easy, medium, hard] {
        assert_eq!(h.status(id), Some(TaskStatus::Assigned));
        h.accept(id);
        h.report_ok(id, b"done");
        assert_eq!(h.status(id), Some(TaskStatus::Completed));
        assert_eq!(h.assign_count(id), 1);
    }

    // Nobody can do difficulty 10: it fails at the capable-worker deadline.
    h.advance(4_999);
    assert_eq!(h.status(impossible), Some(TaskStatus::Pending));
    h.advance(1);
    assert_eq!(
        h.error(impossible),
        Some(TaskError::NoCapableWorker {
            role: "worker".into(),
            difficulty: 10,
            best_skill: Some(9),
            waited_ms: 5_000,
        })
    );
    assert_eq!(h.assign_count(impossible), 0);
    assert_eq!(h.s.unfinished(), 0);
    assert!(h.s.workers().iter().all(|w| w.load == 0));
}

/// The awards do not depend on the order in which answers arrive.
#[test]
fn ceylon_awards_are_the_same_for_every_answer_order() {
    let perms: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    for workers in perms {
        for reverse_tasks in [false, true] {
            let mut h = Harness::new();
            h.register("n1", CEYLON);
            let ids = h.submit(ceylon_tasks());
            let mut anns = std::mem::take(&mut h.inbox);
            if reverse_tasks {
                anns.reverse();
            }
            // Each worker sends its answers to every task in one message.
            for &w in &workers {
                let (name, _, skill, _) = CEYLON[w];
                let bids = anns
                    .iter()
                    .map(|a| Bid {
                        task: a.task,
                        round: a.round,
                        worker: name.into(),
                        skill,
                        load: 0,
                        capacity: 1,
                        willing: skill >= a.difficulty,
                    })
                    .collect();
                h.step(Input::Bids {
                    node: NodeId::new("n1"),
                    bids,
                });
            }
            let winners: Vec<_> = ids[..3].iter().map(|id| h.winner(*id)).collect();
            assert_eq!(
                winners,
                [Some("junior"), Some("intermediate"), Some("senior")],
                "workers {workers:?} reversed {reverse_tasks}"
            );
            for (node, a) in &h.assign_log {
                let skill = h.worker(node.as_str(), &a.worker).unwrap().skill;
                assert!(skill >= a.difficulty);
            }
            assert!(ids[..3].iter().all(|id| h.assign_count(*id) == 1));
        }
    }
}

#[test]
fn auction_closes_early_once_every_worker_of_the_role_answered() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 5, 1)]);
    h.register("n2", &[("cook", "kitchen", 9, 1)]); // another role: not waited for
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };

    h.bid("n1", "a", t, false); // an unwilling answer counts as an answer
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    h.bid("n1", "b", t, true);
    assert_eq!(
        h.status(t),
        Some(TaskStatus::Assigned),
        "closed without waiting for the window"
    );
    assert_eq!(h.winner(t), Some("b"));
    assert_eq!(h.now, Duration::ZERO);
}

#[test]
fn auction_with_only_unwilling_answers_closes_early_without_award() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid("n1", "a", t, false);
    h.bid("n1", "b", t, false);
    assert_eq!(h.status(t), Some(TaskStatus::Pending), "backing off");
    assert_eq!(
        h.changes(t),
        [TaskStatus::Pending, TaskStatus::Announced, TaskStatus::Pending]
    );
    // Re-announced after the first backoff (10 ms), in a new round.
    h.advance(10);
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    assert_eq!(h.rounds[&t], 2);
}

#[test]
fn auction_closes_on_the_bid_window_when_a_worker_stays_silent() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid("n1", "a", t, true);
    h.advance(4);
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    h.advance(1);
    assert_eq!(h.status(t), Some(TaskStatus::Assigned));
    assert_eq!(h.winner(t), Some("a"));
    assert_eq!(h.report_of(t).auction.unwrap().bids.len(), 1);
}

/// Answers that must neither count towards closing the auction nor win it.
#[test]
fn ignored_bids_table() {
    type Case = (&'static str, fn(TaskId) -> (&'static str, Bid));
    let cases: Vec<Case> = vec![
        ("stale round", |t| ("n1", mk(t, 0, "b"))),
        ("future round", |t| ("n1", mk(t, 2, "b"))),
        ("unregistered worker", |t| ("n1", mk(t, 1, "ghost"))),
        ("unregistered node", |t| ("n9", mk(t, 1, "b"))),
        ("worker named on the wrong node", |t| ("n2", mk(t, 1, "b"))),
        ("duplicate answer", |t| ("n1", mk(t, 1, "a"))),
        ("worker of another role", |t| ("n2", mk(t, 1, "cook"))),
        ("unknown task", |_| ("n1", mk(tid(999), 1, "b"))),
    ];
    fn mk(task: TaskId, round: u32, worker: &str) -> Bid {
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
    for (what, make) in cases {
        let mut h = Harness::new();
        h.register("n1", &[("a", "worker", 5, 1), ("b", "worker", 5, 1)]);
        h.register("n2", &[("cook", "kitchen", 9, 1)]);
        let [t] = h.submit(vec![task(1, 3)])[..] else {
            unreachable!()
        };
        h.bid("n1", "a", t, false);
        let (node, bid) = make(t);
        h.bid_raw(node, bid);
        assert_eq!(
            h.status(t),
            Some(TaskStatus::Announced),
            "{what}: must not close the auction"
        );
        h.advance(5);
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "{what}: must not win");
        assert_eq!(h.assign_count(t), 0, "{what}");
    }
}

#[test]
fn a_bid_cannot_inflate_the_registered_skill() {
    let mut h = Harness::new();
    h.register("n1", &[("junior", "worker", 3, 1), ("senior", "worker", 9, 1)]);
    let [t] = h.submit(vec![task(1, 5)])[..] else {
        unreachable!()
    };
    let round = h.rounds[&t];
    let lie = Bid {
        task: t,
        round,
        worker: "junior".into(),
        skill: 99,
        load: 0,
        capacity: 9,
        willing: true,
    };
    h.bid_raw("n1", lie.clone());
    h.bid("n1", "senior", t, false);
    assert_eq!(h.status(t), Some(TaskStatus::Pending), "no capable bidder");
    assert_eq!(h.assign_count(t), 0);

    // Next round: the senior wins, and the record shows the junior's real skill.
    h.advance(10);
    h.bid_raw(
        "n1",
        Bid {
            round: h.rounds[&t],
            ..lie
        },
    );
    h.bid("n1", "senior", t, true);
    assert_eq!(h.winner(t), Some("senior"));
    let auction = h.report_of(t).auction.unwrap();
    let junior = auction.bids.iter().find(|b| b.worker == "junior").unwrap();
    assert_eq!((junior.skill, junior.capacity), (3, 1));
    assert_eq!(auction.rounds, 2);
}

#[test]
fn announcements_are_batched_and_limited_to_free_capable_slots() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 3)]);
    let ids = h.submit((1..=5).map(|n| task(n, 1)).collect());

    // One Announce output, with as many tasks as the worker has slots.
    assert_eq!(h.last_announces(), vec![ids[..3].to_vec()]);
    assert_eq!(h.status(ids[3]), Some(TaskStatus::Pending));
    h.bid_all();
    assert!(ids[..3].iter().all(|id| h.winner(*id) == Some("w")));
    // All three awards to one node travel in one Assign output.
    let assigns = h
        .last
        .iter()
        .filter(|o| matches!(o, Output::Assign { .. }))
        .count();
    assert_eq!(assigns, 1);
    assert_eq!(h.load("n1", "w"), 3);

    // A second worker joining takes both remaining tasks in one batch.
    h.register("n2", &[("v", "worker", 5, 2)]);
    assert_eq!(h.last_announces(), vec![ids[3..].to_vec()]);

    // A freed slot is used at once.
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let ids = h.submit((1..=3).map(|n| task(n, 1)).collect());
    h.run_ready();
    assert_eq!(h.status(ids[0]), Some(TaskStatus::Completed));
    assert!(ids.iter().all(|id| h.status(*id) == Some(TaskStatus::Completed)));
    assert_eq!(h.announce_times(ids[2]), [0]);
}

#[test]
fn easy_tasks_are_not_blocked_behind_a_hard_one_waiting_for_the_senior() {
    let mut h = Harness::new();
    h.register("n1", &[("junior", "worker", 3, 1), ("senior", "worker", 9, 1)]);
    let [hard1] = h.submit(vec![task(1, 8)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(hard1);
    assert_eq!(h.winner(hard1), Some("senior"));

    let [hard2, easy] = h.submit(vec![task(2, 8), task(3, 2)])[..] else {
        unreachable!()
    };
    assert_eq!(h.last_announces(), vec![vec![easy]], "hard2 waits at the admin");
    h.bid_all();
    assert_eq!(h.winner(easy), Some("junior"));
    assert_eq!(h.status(hard2), Some(TaskStatus::Pending));

    h.advance(60_000); // waiting for a busy capable worker never fails
    assert_eq!(h.status(hard2), Some(TaskStatus::Pending));
    assert!(h.announce_times(hard2).is_empty());

    h.report_ok(hard1, b"");
    assert_eq!(h.last_announces(), vec![vec![hard2]]);
    h.bid_all();
    assert_eq!(h.winner(hard2), Some("senior"));
}

#[test]
fn reservations_keep_the_senior_for_the_hard_task() {
    // Queue order easy, hard: easy reserves the junior, hard the senior.
    let mut h = Harness::new();
    h.register("n1", &[("junior", "worker", 3, 1), ("senior", "worker", 9, 1)]);
    let [easy, hard] = h.submit(vec![task(1, 2), task(2, 8)])[..] else {
        unreachable!()
    };
    assert_eq!(h.last_announces(), vec![vec![easy, hard]]);
    h.bid_all();
    assert_eq!((h.winner(easy), h.winner(hard)), (Some("junior"), Some("senior")));
}

#[test]
fn least_loaded_capable_bidder_wins_then_lowest_skill_then_name() {
    // (workers (name, skill, capacity, preloaded tasks), difficulty, winner)
    type Case = (&'static [(&'static str, u32, u32, u32)], u32, &'static str);
    let cases: &[Case] = &[
        (&[("mid", 6, 2, 0), ("senior", 9, 2, 0)], 5, "mid"),
        (&[("mid", 6, 2, 1), ("senior", 9, 2, 0)], 5, "senior"),
        (&[("b", 6, 2, 0), ("a", 6, 2, 0)], 5, "a"),
        (&[("low", 4, 2, 0), ("mid", 6, 2, 0)], 5, "mid"),
    ];
    for &(workers, difficulty, want) in cases {
        let mut h = Harness::new();
        let specs: Vec<_> = workers.iter().map(|&(n, s, c, _)| (n, "worker", s, c)).collect();
        h.register("n1", &specs);
        // Preload: give each worker its running tasks directly.
        let mut next = 100;
        for &(name, _, _, preload) in workers {
            for _ in 0..preload {
                next += 1;
                let [id] = h.submit(vec![task(next, 0)])[..] else {
                    unreachable!()
                };
                for (other, ..) in workers {
                    h.bid("n1", other, id, *other == name);
                }
                assert_eq!(h.winner(id), Some(name));
                h.accept(id);
            }
        }
        h.inbox.clear();
        let [t] = h.submit(vec![task(1, difficulty)])[..] else {
            unreachable!()
        };
        h.bid_all();
        assert_eq!(h.winner(t), Some(want), "{workers:?}");
        assert!(!h.report_of(t).auction.unwrap().reason.is_empty());
    }
}

#[test]
fn answers_from_a_worker_that_left_do_not_count_towards_closing() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1)]);
    h.register("n2", &[("b", "worker", 5, 1), ("c", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.bid("n1", "a", t, true);
    h.leave("n1");
    h.bid("n2", "b", t, false);
    assert_eq!(h.status(t), Some(TaskStatus::Announced), "c has not answered yet");
    h.bid("n2", "c", t, true);
    assert_eq!(h.winner(t), Some("c"));
    let auction = h.report_of(t).auction.unwrap();
    let verdicts: Vec<(&str, BidVerdict)> = auction
        .bids
        .iter()
        .map(|b| (b.worker.as_str(), b.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("a", BidVerdict::Gone),
            ("b", BidVerdict::Declined),
            ("c", BidVerdict::Won)
        ],
        "every bid is on record with how it fared"
    );
    assert!(
        auction.reason.ends_with("; b declined; a left"),
        "{}",
        auction.reason
    );
}

/// A worker that re-registers while an auction is open is judged as it is
/// now, not as it was when it bid.
#[test]
fn bidders_are_judged_by_their_current_registration() {
    // (what, the bidder's new registration)
    let cases: &[(&str, Spec)] = &[
        ("lost skill", ("w", "worker", 3, 1)),
        ("changed role", ("w", "kitchen", 9, 1)),
    ];
    for &(what, now) in cases {
        let mut h = Harness::new();
        h.register("n1", &[("w", "worker", 9, 1)]);
        h.register("n2", &[("v", "worker", 9, 1)]);
        let [t] = h.submit(vec![task(1, 8)])[..] else {
            unreachable!()
        };
        h.bid("n1", "w", t, true);
        h.register("n1", &[now]);
        h.advance(5);
        assert_eq!(h.assign_count(t), 0, "{what}: w is no longer able");
        assert_eq!(h.status(t), Some(TaskStatus::Pending), "{what}");
    }
}

/// On a slow network a willing bid can miss its round; it still counts in
/// the next one, so the task is not starved by bids that always arrive late.
#[test]
fn a_willing_bid_from_the_previous_round_counts_in_the_next() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.advance(5); // round 1 closes unanswered: backoff
    assert_eq!(h.status(t), Some(TaskStatus::Pending));
    h.advance(10); // round 2 opens
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    let late = Bid {
        task: t,
        round: 1,
        worker: "a".into(),
        skill: 5,
        load: 0,
        capacity: 1,
        willing: true,
    };
    h.bid_raw("n1", late.clone());
    assert_eq!(
        h.status(t),
        Some(TaskStatus::Assigned),
        "the only worker answered, if late"
    );
    assert_eq!(h.winner(t), Some("a"));
    // An unwilling answer from an old round says nothing about this one.
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.advance(15);
    h.bid_raw(
        "n1",
        Bid {
            willing: false,
            task: t,
            ..late
        },
    );
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
}

/// Two auctions open at once, each holding a different worker's slot: the
/// one that closes first must not take the other's worker when its own is
/// free, or the other closes without an award while a worker idles.
#[test]
fn an_auction_prefers_its_own_reserved_worker_over_one_held_elsewhere() {
    let mut h = Harness::new();
    h.register("n1", &[("a", "worker", 5, 1)]);
    h.register("n2", &[("b", "worker", 5, 1)]);
    let [x, z] = h.submit(vec![task(1, 1), task(2, 1)])[..] else {
        unreachable!()
    };
    assert_eq!(h.last_announces(), vec![vec![x, z]]);
    // z closes first; a (held for x) would win the tie on node id.
    h.bid("n1", "a", z, true);
    h.bid("n2", "b", z, true);
    assert_eq!(h.winner(z), Some("b"));
    h.bid("n1", "a", x, true);
    h.bid("n2", "b", x, true);
    assert_eq!(h.winner(x), Some("a"), "both tasks placed in one round");
}
