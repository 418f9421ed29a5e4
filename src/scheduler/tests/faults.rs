//! Workers leaving, missing bids, waiting, timeouts and re-registration.

use super::*;

/// The last attempt of a task ended as lost.
fn last_lost(h: &Harness, id: TaskId) -> bool {
    let r = h.report_of(id);
    matches!(
        r.history.last().map(|a| &a.outcome),
        Some(AttemptOutcome::Lost { .. })
    )
}

#[test]
fn node_left_loses_held_attempts_and_awards_them_again() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 3)]);
    h.register("n2", &[("v", "worker", 1, 1)]); // too weak for difficulty 5
    let [running, assigned, announced, after] = h.submit(vec![
        task(1, 5),
        task(2, 5),
        task(3, 5),
        task(4, 1).depends_on(tid(1)),
    ])[..] else {
        unreachable!()
    };
    assert_eq!(h.last_announces(), vec![vec![running, assigned, announced]]);
    for t in [running, assigned] {
        h.bid("n1", "w", t, true);
        h.bid("n2", "v", t, false);
    }
    h.bid("n2", "v", announced, false); // w stays silent: the auction stays open
    h.accept(running);
    assert_eq!(h.load("n1", "w"), 2);

    h.leave("n1");
    // Both held attempts are lost; no capable worker is left, so they wait
    // (parked) for one, and so does the dependent.
    for t in [running, assigned] {
        assert_eq!(h.status(t), Some(TaskStatus::Pending));
        assert!(last_lost(&h, t), "{t:?}");
    }
    assert_eq!(h.status(after), Some(TaskStatus::Pending));
    assert_eq!(h.status(announced), Some(TaskStatus::Announced));
    assert_eq!(h.s.workers().len(), 1, "only v is left");

    // The open auction closes with nobody able: parked, and says so.
    h.advance(5);
    assert_eq!(h.status(announced), Some(TaskStatus::Pending));
    assert_eq!(h.changes(announced).last(), Some(&TaskStatus::Pending));

    // Late messages from the lost worker change nothing.
    h.report_ok(running, b"late");
    assert_eq!(h.status(running), Some(TaskStatus::Pending));

    // w comes back: all three of its slots are free again, and the three
    // parked tasks are announced, oldest first.
    h.advance(100);
    h.register("n1", &[("w", "worker", 5, 3)]);
    assert_eq!(h.load("n1", "w"), 0);
    assert_eq!(h.last_announces().concat().len(), 3);
    h.run_ready();
    let more = h.submit(vec![task(5, 5), task(6, 5), task(7, 5)]);
    h.run_ready();
    for id in more.iter().chain([&running, &assigned, &announced, &after]) {
        assert_eq!(h.status(*id), Some(TaskStatus::Completed), "{id:?}");
    }
    assert_eq!(h.report_of(running).attempts, 2, "lost, then completed");
    assert_eq!(h.s.unfinished(), 0);
}

/// Setup shared by the parking tests: `others` on n1, a senior on n2 busy
/// with `hard1`, `hard2` queued behind it; optionally a junior kept busy.
fn senior_busy(others: &[Spec], junior_busy: bool) -> (Harness, TaskId, TaskId) {
    let mut h = Harness::new();
    h.register("n1", others);
    h.register("n2", &[("senior", "worker", 9, 1)]);
    if junior_busy {
        let [easy] = h.submit(vec![task(100, 2)])[..] else {
            unreachable!()
        };
        h.bid_all();
        assert_eq!(h.winner(easy), Some("junior"));
        h.accept(easy);
    }
    let [hard1, hard2] = h.submit(vec![task(1, 8), task(2, 8)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(hard1);
    assert_eq!(h.winner(hard1), Some("senior"));
    assert_eq!(h.status(hard2), Some(TaskStatus::Pending));
    (h, hard1, hard2)
}

#[test]
fn queued_tasks_are_parked_when_their_only_capable_worker_leaves() {
    let junior: &[Spec] = &[("junior", "worker", 3, 1)];
    // (what, workers on n1, junior busy, best skill left)
    let cases = [
        ("no other worker", &[][..], false, None),
        ("an idle junior", junior, false, Some(3)),
        ("a busy junior", junior, true, Some(3)),
    ];
    for (what, others, junior_busy, best_skill) in cases {
        let (mut h, hard1, hard2) = senior_busy(others, junior_busy);
        h.advance(100);
        h.leave("n2");
        assert!(last_lost(&h, hard1), "{what}");
        assert_eq!(h.status(hard1), Some(TaskStatus::Pending), "{what}");
        assert_eq!(h.status(hard2), Some(TaskStatus::Pending), "{what}");

        // The capable-worker deadline counts from when hard2 became ready.
        h.advance_to(999);
        assert_eq!(h.status(hard2), Some(TaskStatus::Pending), "{what}");
        h.advance(1);
        let want = TaskError::NoCapableWorker {
            role: "worker".into(),
            difficulty: 8,
            best_skill,
            waited_ms: 1000,
        };
        assert_eq!(h.error(hard2), Some(want), "{what}");
        // hard1 became ready again when its attempt was lost, at 100 ms.
        h.advance(100);
        assert!(
            matches!(
                h.error(hard1),
                Some(TaskError::NoCapableWorker { waited_ms: 1000, .. })
            ),
            "{what}: {:?}",
            h.error(hard1)
        );
        assert_eq!(h.s.unfinished(), usize::from(junior_busy), "{what}");
    }
}

#[test]
fn a_capable_worker_registering_before_the_deadline_unparks_the_task() {
    for junior_busy in [false, true] {
        let (mut h, hard1, hard2) = senior_busy(&[("junior", "worker", 3, 1)], junior_busy);
        h.leave("n2");
        h.advance_to(500);
        assert!(h.announce_times(hard2).is_empty());
        // hard1, lost with n2, and hard2 are both waiting for a senior.
        h.register("n3", &[("senior2", "worker", 9, 2)]);
        assert_eq!(h.last_announces(), vec![vec![hard1, hard2]]);
        h.bid_all();
        assert_eq!(h.winner(hard2), Some("senior2"));
        h.accept(hard2);
        h.advance(5_000); // well past the old deadline
        assert_eq!(h.status(hard2), Some(TaskStatus::Running));
        h.report_ok(hard2, b"done");
        assert_eq!(h.status(hard2), Some(TaskStatus::Completed));
    }
}

#[test]
fn a_worker_losing_skill_parks_the_tasks_it_alone_could_do() {
    for junior_busy in [false, true] {
        let (mut h, hard1, hard2) = senior_busy(&[("junior", "worker", 3, 1)], junior_busy);
        h.register("n2", &[("senior", "worker", 5, 1)]);
        assert_eq!(h.status(hard1), Some(TaskStatus::Running), "held work goes on");
        h.advance_to(1000);
        assert!(
            matches!(
                h.error(hard2),
                Some(TaskError::NoCapableWorker {
                    best_skill: Some(5),
                    ..
                })
            ),
            "junior busy: {junior_busy}: {:?}",
            h.report_of(hard2)
        );
    }
}

#[test]
fn tasks_for_a_role_nobody_serves_fail_at_the_deadline() {
    let mut h = Harness::new();
    let [ghost] = h.submit(vec![named(1, "g", "ghost", 1)])[..] else {
        unreachable!()
    };
    h.register("n1", &[("w", "worker", 9, 1)]);
    h.advance(999);
    assert_eq!(h.status(ghost), Some(TaskStatus::Pending));
    h.advance(1);
    let want = TaskError::NoCapableWorker {
        role: "ghost".into(),
        difficulty: 1,
        best_skill: None,
        waited_ms: 1000,
    };
    assert_eq!(h.error(ghost), Some(want));
    assert!(h
        .error(ghost)
        .unwrap()
        .to_string()
        .contains("no worker of that role"));
}

#[test]
fn tasks_submitted_before_any_worker_are_announced_in_submission_order() {
    let mut h = Harness::new();
    let mut ids = h.submit((1..=8).rev().map(|n| task(n, 1)).collect());
    h.advance(100);
    ids.extend(h.submit((20..=23).map(|n| task(n, 1)).collect()));
    h.advance(100);
    h.register("n1", &[("w", "worker", 5, 1)]);
    assert_eq!(h.last_announces(), vec![vec![ids[0]]]);
    h.run_ready();
    let order: Vec<TaskId> = h.assign_log.iter().map(|(_, a)| a.task).collect();
    assert_eq!(order, ids);
}

#[test]
fn no_bids_while_capable_workers_have_room_backs_off_then_fails() {
    // (bid window, first backoff, max backoff, deadline, announce times, failure time)
    type Case = (u64, u64, u64, u64, &'static [u64], u64);
    let cases: &[Case] = &[
        (5, 10, 40, 200, &[0, 15, 40, 85, 130, 175, 220], 225),
        (5, 1, 1000, 50, &[0, 6, 13, 22, 35, 56], 61),
        (5, 100, 100, 10, &[0, 105], 110),
    ];
    for &(window, backoff, max_backoff, deadline, times, fail_at) in cases {
        let cfg = SchedulerConfig {
            bid_window: ms(window),
            auction_backoff: ms(backoff),
            max_auction_backoff: ms(max_backoff),
            no_worker_timeout: ms(deadline),
            ..SchedulerConfig::default()
        };
        let mut h = Harness::with(cfg);
        h.register("n1", &[("w", "worker", 5, 1)]);
        let [t] = h.submit(vec![task(1, 3)])[..] else {
            unreachable!()
        };
        h.advance_to(fail_at - 1);
        assert_eq!(h.status(t), Some(TaskStatus::Announced));
        h.advance(1);
        assert_eq!(h.announce_times(t), times);
        let want = TaskError::NoBids {
            role: "worker".into(),
            difficulty: 3,
            waited_ms: fail_at,
        };
        assert_eq!(h.error(t), Some(want));
        assert_eq!(h.report_of(t).elapsed_ms, fail_at);
    }
}

#[test]
fn a_bid_in_a_retry_round_wins() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 3)])[..] else {
        unreachable!()
    };
    h.advance(15); // round 1 drew nothing; round 2 is open
    assert_eq!(h.rounds[&t], 2);
    h.bid("n1", "w", t, true);
    assert_eq!(h.winner(t), Some("w"));
    assert_eq!(h.report_of(t).auction.unwrap().rounds, 2);
    h.advance(10_000);
    assert_eq!(h.status(t), Some(TaskStatus::Assigned), "stale timers do nothing");
}

#[test]
fn a_long_wait_for_a_busy_worker_does_not_count_as_missing_bids() {
    let mut h = Harness::new();
    h.register("n1", &[("senior", "worker", 9, 1)]);
    let [t1, t2] = h.submit(vec![task(1, 8), task(2, 8)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t1);
    h.advance(60_000);
    assert_eq!(h.status(t2), Some(TaskStatus::Pending));
    assert!(h.announce_times(t2).is_empty(), "work waits at the admin");

    h.report_ok(t1, b"");
    assert_eq!(h.last_announces(), vec![vec![t2]]);
    // The senior misses this round (say it still counted itself busy).
    h.bid("n1", "senior", t2, false);
    assert_eq!(
        h.status(t2),
        Some(TaskStatus::Pending),
        "backs off instead of failing"
    );
    h.advance(10);
    h.bid("n1", "senior", t2, true);
    assert_eq!(h.winner(t2), Some("senior"));
}

#[test]
fn a_silent_free_worker_beside_a_busy_one_does_not_fail_the_task() {
    // "ghost" is registered with a free slot but never answers (its node
    // is gone or paused, not yet dropped); "senior" is busy.
    let mut h = Harness::new();
    h.register("n1", &[("senior", "worker", 9, 1)]);
    h.register("n2", &[("ghost", "worker", 9, 1)]);
    let [t1, t2] = h.submit(vec![task(1, 8), task(2, 8)])[..] else {
        unreachable!()
    };
    h.bid("n1", "senior", t1, true);
    h.advance(100); // the ghost never answers: the window closes
    assert_eq!(h.winner(t1), Some("senior"));
    h.accept(t1);
    // Long past the no-worker timeout (5 s): t2 waits for the busy worker.
    h.advance(60_000);
    assert_ne!(h.status(t2), Some(TaskStatus::Failed), "{:?}", h.error(t2));
    h.report_ok(t1, b"");
    h.advance(100);
    h.bid("n1", "senior", t2, true);
    assert_eq!(h.winner(t2), Some("senior"));
}

#[test]
fn an_auction_lost_to_a_busy_worker_waits_in_line_without_deadline() {
    let mut h = Harness::new();
    h.register("n1", &[("mid", "worker", 6, 1), ("senior", "worker", 9, 1)]);
    let [x, y] = h.submit(vec![task(1, 5), task(2, 8)])[..] else {
        unreachable!()
    };
    assert_eq!(h.last_announces(), vec![vec![x, y]]);
    // The mid declines x, so the senior takes it; y's only capable worker is
    // now busy.
    h.bid("n1", "mid", x, false);
    h.bid("n1", "senior", x, true);
    assert_eq!(h.winner(x), Some("senior"));
    h.accept(x);
    h.bid("n1", "mid", y, false);
    h.bid("n1", "senior", y, true);
    assert_eq!(h.status(y), Some(TaskStatus::Pending));
    assert_eq!(h.assign_count(y), 0);

    h.advance(60_000);
    assert_eq!(h.status(y), Some(TaskStatus::Pending));
    assert_eq!(h.announce_times(y), [0]);
    h.report_ok(x, b"");
    assert_eq!(h.last_announces(), vec![vec![y]]);
    h.bid_all();
    assert_eq!(h.winner(y), Some("senior"));
}

#[test]
fn run_timeouts_table() {
    // (task timeout, default timeout, timeout in the assignment)
    let cases = [
        (Some(100), None, Some(100)),
        (None, Some(250), Some(250)),
        (Some(100), Some(250), Some(100)),
        (None, None, None),
    ];
    for (task_ms, default_ms, want) in cases {
        let cfg = SchedulerConfig {
            default_timeout: default_ms.map(ms),
            ..cfg()
        };
        let mut h = Harness::with(cfg);
        h.register("n1", &[("w", "worker", 5, 1)]);
        let mut t = task(1, 1);
        t.timeout_ms = task_ms;
        let dependent = task(2, 1).after(&t);
        let [t, dependent] = h.submit(vec![t, dependent])[..] else {
            unreachable!()
        };
        h.bid_all();
        assert_eq!(h.assigned[&t].1.timeout_ms, want);
        h.accept(t);
        let Some(limit) = want else {
            h.advance(3_000_000);
            assert_eq!(
                h.status(t),
                Some(TaskStatus::Running),
                "no timeout: runs as long as it takes"
            );
            continue;
        };
        // The worker enforces the timeout and says so in its report.
        h.advance(limit);
        h.report(
            t,
            Err(Failure {
                timeout_ms: Some(limit),
                ..Failure::retryable(format!("timed out after {limit} ms"))
            }),
        );
        assert_eq!(
            h.error(t),
            Some(TaskError::Timeout {
                worker: "w".into(),
                timeout_ms: limit
            })
        );
        assert_eq!(h.load("n1", "w"), 0);
        assert!(matches!(
            h.error(dependent),
            Some(TaskError::DependencyFailed { .. })
        ));
        h.report_ok(t, b"too late");
        assert_eq!(h.status(t), Some(TaskStatus::Failed));
        assert_eq!(h.load("n1", "w"), 0);
    }
}

/// The admin's backstop: a worker that keeps renewing its lease but never
/// reports past the execution timeout has its attempt timed out at
/// `timeout + lease` after the award, and told to stop.
#[test]
fn the_admin_backs_the_execution_timeout_when_no_report_comes() {
    let mut h = Harness::with(SchedulerConfig {
        lease: ms(300),
        ..cfg()
    });
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1).with_timeout(ms(1000))])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(t);
    for _ in 0..12 {
        h.advance(100);
        h.step(Input::Renew {
            node: NodeId::new("n1"),
            held: vec![(t, 1)],
            waiting: Vec::new(),
        });
    }
    assert_eq!(h.status(t), Some(TaskStatus::Running), "at 1200 ms");
    h.advance(100);
    assert_eq!(
        h.error(t),
        Some(TaskError::Timeout {
            worker: "w".into(),
            timeout_ms: 1000
        })
    );
    let aborts: Vec<_> = h
        .log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Abort { attempts, .. } => Some(attempts.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(aborts, vec![vec![(t, 1)]]);
}

#[test]
fn register_replaces_the_node_worker_list() {
    let mut h = Harness::new();
    h.register(
        "n1",
        &[
            ("a", "worker", 5, 1),
            ("b", "worker", 5, 1),
            ("c", "worker", 5, 1),
        ],
    );
    h.register("n2", &[("z", "worker", 1, 1)]);
    let [ta, tb] = h.submit(vec![task(1, 5), task(2, 5)])[..] else {
        unreachable!()
    };
    for (t, w) in [(ta, "a"), (tb, "b")] {
        for other in ["a", "b", "c"] {
            h.bid("n1", other, t, other == w);
        }
        h.bid("n2", "z", t, false);
        assert_eq!(h.winner(t), Some(w));
    }
    h.accept(ta);

    h.register("n1", &[("b", "worker", 7, 2), ("d", "worker", 5, 1)]);
    assert!(last_lost(&h, ta), "a left with ta");
    assert_eq!(h.status(ta), Some(TaskStatus::Announced), "ta is auctioned again");
    let mut listed: Vec<_> =
        h.s.workers()
            .into_iter()
            .map(|w| (w.node.to_string(), w.name, w.skill, w.capacity, w.load))
            .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("n1".into(), "b".into(), 7, 2, 1),
            ("n1".into(), "d".into(), 5, 1, 0),
            ("n2".into(), "z".into(), 1, 1, 0)
        ]
    );
    // b keeps its task and can finish it.
    h.accept(tb);
    h.report_ok(tb, b"");
    assert_eq!(h.status(tb), Some(TaskStatus::Completed));
    assert_eq!(h.load("n1", "b"), 0);

    // Capacity 0 is read as 1; an empty list removes the node's workers.
    h.register("n2", &[("z", "worker", 1, 0)]);
    assert_eq!(h.worker("n2", "z").unwrap().capacity, 1);
    h.register("n1", &[]);
    assert_eq!(h.s.workers().len(), 1);
}

/// The same inputs give the same outputs, in the same order, whatever the
/// hash seeds of the process.
#[test]
fn runs_are_reproducible() {
    fn script() -> Vec<(Duration, Output)> {
        let mut h = Harness::new();
        h.register("n1", &[("w", "worker", 5, 64)]);
        h.register("n2", &[("v", "worker", 5, 64)]);
        let ids = h.submit((1..=40).map(|n| task(n, 3)).collect());
        let chained = h.submit((41..=60).map(|n| task(n, 3).depends_on(tid(n - 40))).collect());
        h.bid_all();
        for id in &ids {
            h.accept(*id);
        }
        h.leave("n1");
        h.leave("n2");
        h.submit((61..=80).map(|n| task(n, 3)).collect());
        h.register("n1", &[("w", "worker", 5, 1)]);
        h.advance(2_000);
        assert!(chained
            .iter()
            .all(|id| h.status(*id) != Some(TaskStatus::Completed)));
        std::mem::take(&mut h.log)
    }
    let first = script();
    for run in 0..4 {
        assert_same_log(&script(), &first, &format!("run {run}"));
    }
}
