//! Assignments, reports, the DAG and submissions.

use super::*;

fn payload(s: &str) -> Payload {
    Payload::from_bytes(s.as_bytes())
}

#[test]
fn assignments_carry_attempts_and_dependency_outputs_in_dependency_order() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 4)]);
    let a = named(1, "a", "worker", 1);
    let b = named(2, "b", "worker", 1);
    // c lists b before a; its worker gets the outputs in that order.
    let c = named(3, "c", "worker", 1)
        .after(&b)
        .after(&a)
        .with_payload(payload("in"));
    let (ia, ib, ic) = (a.id, b.id, c.id);
    h.submit(vec![c, a, b]);
    h.bid_all();
    h.accept(ia);
    h.accept(ib);
    h.report_ok(ia, b"A");
    assert_eq!(h.status(ic), Some(TaskStatus::Pending), "still waiting for b");
    h.report_ok(ib, b"B");
    assert_eq!(h.last_announces(), vec![vec![ic]]);
    h.bid_all();

    let (node, first) = h.assigned[&ic].clone();
    assert_eq!(node, NodeId::new("n1"));
    assert_eq!(
        first,
        Assignment {
            task: ic,
            attempt: 1,
            worker: "w".into(),
            name: "c".into(),
            role: "worker".into(),
            difficulty: 1,
            input: payload("in"),
            deps: vec![
                DepOutput {
                    id: ib,
                    name: "b".into(),
                    outcome: Ok(payload("B"))
                },
                DepOutput {
                    id: ia,
                    name: "a".into(),
                    outcome: Ok(payload("A"))
                },
            ],
            timeout_ms: None,
        }
    );

    // A refusal puts the task back in line after a backoff; the next award
    // is attempt 2.
    h.refuse(ic);
    assert_eq!(h.status(ic), Some(TaskStatus::Pending));
    assert_eq!(h.load("n1", "w"), 0);
    assert_eq!(h.report_of(ic).worker, None);
    h.advance(10);
    assert_eq!(h.status(ic), Some(TaskStatus::Announced));
    h.bid_all();
    assert_eq!(h.assigned[&ic].1.attempt, 2);
    assert_eq!(h.assigned[&ic].1.deps, first.deps);
    // The refused award leaves no trace in the history; numbers go on.
    let r = h.report_of(ic);
    assert_eq!((r.attempts, r.history[0].number), (1, 2));
    assert_eq!(
        h.changes(ic),
        [
            TaskStatus::Pending,
            TaskStatus::Announced,
            TaskStatus::Assigned,
            TaskStatus::Pending,
            TaskStatus::Announced,
            TaskStatus::Assigned,
        ]
    );

    // A report for the refused attempt is stale.
    let stale = Report {
        task: ic,
        attempt: 1,
        worker: "w".into(),
        outcome: Ok(payload("x")),
        run_ms: 1,
    };
    h.step(Input::Reports {
        node: NodeId::new("n1"),
        reports: vec![stale],
    });
    assert_eq!(h.status(ic), Some(TaskStatus::Assigned));
    h.accept(ic);
    h.report_ok(ic, b"C");
    assert_eq!(h.report_of(ic).output, Some(payload("C")));
}

#[test]
fn stale_and_foreign_reports_and_answers_are_ignored() {
    let setup = || {
        let mut h = Harness::new();
        h.register("n1", &[("w", "worker", 5, 1)]);
        h.register("n2", &[("v", "worker", 5, 1)]);
        let [t] = h.submit(vec![task(1, 3)])[..] else {
            unreachable!()
        };
        h.bid("n1", "w", t, true);
        h.bid("n2", "v", t, false);
        assert_eq!(h.winner(t), Some("w"));
        (h, t)
    };
    // (what, node, task, worker, attempt)
    let reports: &[(&str, &str, Option<u128>, &str, u32)] = &[
        ("wrong node", "n2", None, "w", 1),
        ("unknown node", "n9", None, "w", 1),
        ("wrong worker", "n1", None, "v", 1),
        ("wrong attempt", "n1", None, "w", 2),
        ("attempt zero", "n1", None, "w", 0),
        ("unknown task", "n1", Some(77), "w", 1),
    ];
    for &(what, node, other, worker, attempt) in reports {
        for accept_first in [false, true] {
            let (mut h, t) = setup();
            if accept_first {
                h.accept(t);
            }
            let before = h.status(t);
            let task = other.map_or(t, tid);
            let r = Report {
                task,
                attempt,
                worker: worker.into(),
                outcome: Err(Failure::retryable("boom")),
                run_ms: 1,
            };
            h.step(Input::Reports {
                node: NodeId::new(node),
                reports: vec![r],
            });
            assert_eq!(h.status(t), before, "{what}");
            assert_eq!(h.load("n1", "w"), 1, "{what}");
            // The real holder can still finish it (even before accepting).
            h.report_ok(t, b"ok");
            assert_eq!(h.status(t), Some(TaskStatus::Completed), "{what}");
            assert_eq!(h.load("n1", "w"), 0);
        }
    }

    // Assignment answers: (what, node, attempt)
    let answers: &[(&str, &str, u32)] = &[("wrong node", "n2", 1), ("wrong attempt", "n1", 2)];
    for &(what, node, attempt) in answers {
        for accepted in [false, true] {
            let (mut h, t) = setup();
            h.step(Input::AssignAnswer {
                node: NodeId::new(node),
                task: t,
                attempt,
                accepted,
            });
            assert_eq!(h.status(t), Some(TaskStatus::Assigned), "{what} {accepted}");
            assert_eq!(h.load("n1", "w"), 1);
        }
    }

    // Answers and reports after the fact change nothing.
    let (mut h, t) = setup();
    h.accept(t);
    h.refuse(t); // a refusal of an attempt already running
    assert_eq!(h.status(t), Some(TaskStatus::Running));
    assert_eq!(h.load("n1", "w"), 1);
    h.report_ok(t, b"first");
    h.report_ok(t, b"second");
    h.report_err(t, "third");
    h.accept(t);
    let r = h.report_of(t);
    assert_eq!(
        (r.status, r.output, r.error),
        (TaskStatus::Completed, Some(payload("first")), None)
    );
    assert_eq!(
        h.load("n1", "w"),
        0,
        "a duplicate report must not free a slot twice"
    );
    assert_eq!(h.s.unfinished(), 0);
}

#[test]
fn a_batch_in_any_order_runs_in_dependency_order() {
    // a -> b, a -> c, (b, c) -> d, listed backwards.
    let a = task(1, 1);
    let b = task(2, 1).after(&a);
    let c = task(3, 1).after(&a);
    let d = task(4, 1).after(&b).after(&c);
    let (ia, ib, ic, id) = (a.id, b.id, c.id, d.id);
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 4)]);
    assert_eq!(
        h.submit(vec![d, c, b, a]),
        [id, ic, ib, ia],
        "ids in submission order"
    );
    assert_eq!(h.last_announces(), vec![vec![ia]]);
    h.bid_all();
    h.accept(ia);
    h.report_ok(ia, b"a");
    assert_eq!(
        h.last_announces(),
        vec![vec![ic, ib]],
        "both dependents in one batch"
    );
    h.bid_all();
    h.accept(ib);
    h.report_ok(ib, b"b");
    assert_eq!(h.status(id), Some(TaskStatus::Pending));
    h.accept(ic);
    h.report_ok(ic, b"c");
    assert_eq!(h.last_announces(), vec![vec![id]]);
    h.run_ready();
    assert_eq!(h.status(id), Some(TaskStatus::Completed));
    let order: Vec<TaskId> = h.assign_log.iter().map(|(_, a)| a.task).collect();
    assert_eq!(order, [ia, ic, ib, id]);
}

#[test]
fn a_failure_cascades_to_all_dependents_naming_the_direct_dependency() {
    // a -> b -> c -> d, x -> d, e on its own.
    let a = named(1, "a", "worker", 1);
    let b = named(2, "b", "worker", 1).after(&a);
    let c = named(3, "c", "worker", 1).after(&b);
    let x = named(4, "x", "worker", 1);
    let d = named(5, "d", "worker", 1).after(&x).after(&c);
    let e = named(6, "e", "worker", 1);
    let (ia, ib, ic, ix, id, ie) = (a.id, b.id, c.id, x.id, d.id, e.id);
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.submit(vec![a, b, c, x, d, e]);
    // One slot: a first, then x, then e.
    h.bid_all();
    h.accept(ia);
    h.report_err(ia, "boom");
    assert_eq!(
        h.error(ia),
        Some(TaskError::Processing {
            worker: "w".into(),
            message: "boom".into()
        })
    );
    let dep_failed = |id, name: &str| {
        Some(TaskError::DependencyFailed {
            id,
            name: name.into(),
        })
    };
    assert_eq!(h.error(ib), dep_failed(ia, "a"));
    assert_eq!(h.error(ic), dep_failed(ib, "b"));
    assert_eq!(h.error(id), dep_failed(ic, "c"));
    for t in [ib, ic, id] {
        assert_eq!(h.changes(t), [TaskStatus::Pending, TaskStatus::Failed]);
        assert_eq!(h.report_of(t).attempts, 0);
    }
    // Unrelated work goes on.
    h.run_ready();
    assert_eq!(h.status(ix), Some(TaskStatus::Completed));
    assert_eq!(h.status(ie), Some(TaskStatus::Completed));
    assert_eq!(h.s.unfinished(), 0);

    // New tasks that depend on the failed ones fail at once, and so do their
    // dependents in the same batch; a completed dependency is satisfied.
    let f = named(7, "f", "worker", 1).after(&task(4, 1)).depends_on(ic);
    let g = named(8, "g", "worker", 1).depends_on(f.id);
    let k = named(9, "k", "worker", 1).depends_on(ix).depends_on(ie);
    let (i_f, ig, ik) = (f.id, g.id, k.id);
    h.submit(vec![g, f, k]);
    assert_eq!(h.error(i_f), dep_failed(ic, "c"));
    assert_eq!(h.error(ig), dep_failed(i_f, "f"));
    assert_eq!(h.last_announces(), vec![vec![ik]], "ready at once");
    assert_eq!(h.s.unfinished(), 1);
}

#[test]
fn refused_batches_keep_nothing() {
    let cfg = SchedulerConfig {
        max_payload: 8,
        max_batch: 4,
        max_unfinished: 6,
        ..cfg()
    };
    let known = task(50, 1);
    let cycle_a = task(1, 1).depends_on(tid(2));
    let cycle_b = task(2, 1).depends_on(tid(1));
    let mut dup_known = task(3, 1);
    dup_known.id = known.id;
    let mut twice = task(1, 1).depends_on(known.id);
    twice.dependencies.push(known.id);
    let big = task(1, 1).with_payload(Payload::from_bytes(vec![0; 9]));
    type Check = fn(&SubmitError) -> bool;
    let cases: Vec<(&str, Vec<Task>, Check)> = vec![
        ("cycle", vec![task(9, 1), cycle_a, cycle_b], |e| {
            matches!(e, SubmitError::Cycle { .. })
        }),
        ("self cycle", vec![task(1, 1).depends_on(tid(1))], |e| {
            matches!(e, SubmitError::Cycle { .. })
        }),
        (
            "unknown dependency",
            vec![task(1, 1), task(2, 1).depends_on(tid(77))],
            |e| matches!(e, SubmitError::UnknownDependency { dependency, .. } if *dependency == tid(77)),
        ),
        (
            "duplicate in batch",
            vec![task(1, 1), task(2, 1), task(1, 1)],
            |e| matches!(e, SubmitError::DuplicateId { id, .. } if *id == tid(1)),
        ),
        ("duplicate of a known task", vec![task(1, 1), dup_known], |e| {
            matches!(e, SubmitError::DuplicateId { .. })
        }),
        ("dependency listed twice", vec![task(2, 1), twice], |e| {
            matches!(e, SubmitError::Invalid { .. })
        }),
        ("oversize", vec![task(2, 1), big], |e| {
            matches!(e, SubmitError::Oversize { size: 9, max: 8, .. })
        }),
        ("empty role", vec![named(1, "r", "", 1)], |e| {
            matches!(e, SubmitError::Invalid { .. })
        }),
        ("too many", (1..=5).map(|n| task(n, 1)).collect(), |e| {
            matches!(e, SubmitError::TooMany { count: 5, max: 4 })
        }),
    ];
    for (what, batch, check) in cases {
        let mut h = Harness::with(cfg.clone());
        h.register("n1", &[("w", "worker", 5, 1)]);
        let k = h.submit(vec![known.clone()])[0];
        let ids: Vec<TaskId> = batch.iter().map(|t| t.id).filter(|id| *id != k).collect();
        let err = h.try_submit(batch).unwrap_err();
        assert!(check(&err), "{what}: {err:?}");
        assert_eq!(h.last.len(), 1, "{what}: only the answer, got {:?}", h.last);
        for id in ids {
            assert_eq!(h.status(id), None, "{what}: nothing of a refused batch is kept");
        }
        assert_eq!(h.s.unfinished(), 1, "{what}");
        assert_eq!(
            h.status(k),
            Some(TaskStatus::Announced),
            "{what}: the known task is untouched"
        );
    }

    // Full: the limit counts unfinished tasks, and frees up as they finish.
    let mut h = Harness::with(cfg);
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.submit((1..=4).map(|n| task(n, 1)).collect());
    let err = h.try_submit((5..=7).map(|n| task(n, 1)).collect()).unwrap_err();
    assert_eq!(err, SubmitError::Full { held: 4, max: 6 });
    assert_eq!(h.status(tid(5)), None);
    h.run_ready();
    assert_eq!(h.s.unfinished(), 0);
    assert!(h.try_submit((5..=7).map(|n| task(n, 1)).collect()).is_ok());
}

#[test]
fn report_of_follows_the_task_through_every_phase() {
    let mut h = Harness::new();
    let t = task(1, 4).with_payload(payload("input"));
    let id = h.submit(vec![t])[0];
    let r = h.report_of(id);
    assert_eq!(
        (r.id, r.name.as_str(), r.role.as_str(), r.difficulty),
        (id, "t1", "worker", 4)
    );
    assert_eq!(r.status, TaskStatus::Pending);
    assert_eq!((r.worker, r.node, r.attempts), (None, None, 0));
    assert_eq!((r.auction, r.output, r.error, r.run_ms), (None, None, None, None));
    assert_eq!(r.elapsed_ms, 0);

    h.advance(3);
    h.register("n1", &[("w", "worker", 5, 2)]);
    h.register("n2", &[("v", "worker", 7, 1)]);
    let r = h.report_of(id);
    assert_eq!((r.status, r.elapsed_ms), (TaskStatus::Announced, 3));

    h.bid("n2", "v", id, true);
    h.bid("n1", "w", id, true);
    let r = h.report_of(id);
    assert_eq!(r.status, TaskStatus::Assigned);
    assert_eq!(
        (r.worker.as_deref(), r.node),
        (Some("w"), Some(NodeId::new("n1")))
    );
    assert_eq!(r.attempts, 1);
    let auction = r.auction.unwrap();
    assert_eq!(auction.rounds, 1);
    let bidders: Vec<_> = auction
        .bids
        .iter()
        .map(|b| (b.worker.as_str(), b.node.as_str(), b.skill))
        .collect();
    assert_eq!(bidders, [("v", "n2", 7), ("w", "n1", 5)]);
    assert!(auction.reason.contains("5 >= 4"), "{}", auction.reason);

    h.accept(id);
    assert_eq!(h.report_of(id).status, TaskStatus::Running);
    h.advance(7);
    let (node, a) = h.assigned[&id].clone();
    let done = Report {
        task: id,
        attempt: a.attempt,
        worker: a.worker,
        outcome: Ok(payload("out")),
        run_ms: 6,
    };
    h.step(Input::Reports {
        node,
        reports: vec![done],
    });
    let r = h.report_of(id);
    assert_eq!(r.status, TaskStatus::Completed);
    assert!(r.output::<()>().is_err(), "typed decode of the wrong type fails");
    assert_eq!(
        (r.output, r.error, r.run_ms, r.elapsed_ms),
        (Some(payload("out")), None, Some(6), 10)
    );
    h.advance(100);
    assert_eq!(h.report_of(id).elapsed_ms, 10, "elapsed stops at the end");

    // A failed task carries its error and no output.
    let id = h.submit(vec![task(2, 1)])[0];
    h.bid_all();
    h.accept(id);
    h.report_err(id, "nope");
    let r = h.report_of(id);
    assert!(!r.succeeded());
    assert_eq!(
        (r.status, r.output, r.run_ms),
        (TaskStatus::Failed, None, Some(1))
    );
    assert!(matches!(r.error, Some(TaskError::Processing { ref message, .. }) if message == "nope"));
    assert_eq!(h.s.report_of(&tid(12345), h.now), None);
}
