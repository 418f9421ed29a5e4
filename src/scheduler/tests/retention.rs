//! Retention: finished tasks are evicted beyond a count, a size or an age,
//! oldest first, but never while an unfinished dependent needs them.

use super::*;

fn keeping(mut retention: Retention) -> Harness {
    retention.min_age = Duration::ZERO; // tested on its own below
    let mut h = Harness::with(SchedulerConfig { retention, ..cfg() });
    h.register("n1", &[("w", "worker", 5, 4)]);
    h
}

fn evicted_by_event(h: &Harness) -> Vec<TaskId> {
    let evicted = h.events.iter().filter_map(|e| match e {
        Event::TasksEvicted { ids } => Some(ids.clone()),
        _ => None,
    });
    evicted.flatten().collect()
}

/// Finished tasks the scheduler still holds.
fn finished_held(h: &Harness) -> usize {
    h.s.held() - h.s.unfinished()
}

fn run_one(h: &mut Harness, t: Task) -> TaskId {
    let id = h.submit(vec![t])[0];
    h.run_ready();
    assert_eq!(h.status(id), Some(TaskStatus::Completed));
    id
}

#[test]
fn finished_tasks_beyond_max_tasks_are_evicted_oldest_first() {
    let mut h = keeping(Retention {
        max_tasks: 2,
        ..Retention::default()
    });
    let t1 = run_one(&mut h, task(1, 1));
    let t2 = run_one(&mut h, task(2, 1));
    assert!(evicted_by_event(&h).is_empty(), "two are allowed");
    let t3 = run_one(&mut h, task(3, 1));
    assert_eq!(evicted_by_event(&h), [t1]);
    let t4 = run_one(&mut h, task(4, 1));
    assert_eq!(evicted_by_event(&h), [t1, t2]);

    // An evicted task is known as evicted, everywhere.
    assert_eq!(h.s.lookup(&t1, h.now), Lookup::Evicted);
    assert_eq!((h.status(t1), h.s.report_of(&t1, h.now)), (None, None));
    assert!(h.s.was_evicted(&t1));
    assert_eq!(
        h.cancel(&[t1, t3]),
        [
            CancelOutcome::Evicted,
            CancelOutcome::AlreadyFinished(TaskStatus::Completed)
        ]
    );
    assert_eq!(h.s.lookup(&tid(99), h.now), Lookup::Unknown);
    assert_eq!(h.s.recent(10), [t3, t4]);

    // A new task may not depend on it, and says so.
    let err = h.try_submit(vec![task(5, 1).depends_on(t1)]).unwrap_err();
    assert_eq!(
        err,
        SubmitError::EvictedDependency {
            task: "t5".into(),
            dependency: t1
        }
    );
}

#[test]
fn finished_tasks_beyond_max_bytes_are_evicted() {
    // Four input bytes and a four byte output: eight bytes a task.
    let mut h = keeping(Retention {
        max_bytes: 20,
        ..Retention::default()
    });
    let four = |n| task(n, 1).with_payload(Payload::from_bytes(*b"abcd"));
    let mut ids = Vec::new();
    for n in 1..=2 {
        ids.push(h.submit(vec![four(n)])[0]);
        h.bid_all();
        h.accept(ids[ids.len() - 1]);
        h.report_ok(ids[ids.len() - 1], b"done");
    }
    assert_eq!(h.s.finished_bytes, 16);
    assert!(evicted_by_event(&h).is_empty());
    ids.push(h.submit(vec![four(3)])[0]);
    h.bid_all();
    h.accept(ids[2]);
    h.report_ok(ids[2], b"done");
    assert_eq!(evicted_by_event(&h), [ids[0]], "24 bytes > 20: the oldest goes");
    assert_eq!(h.s.finished_bytes, 16);
}

#[test]
fn finished_tasks_older_than_max_age_are_evicted_on_time() {
    let mut h = keeping(Retention {
        max_age: ms(100),
        ..Retention::default()
    });
    let t1 = run_one(&mut h, task(1, 1));
    h.advance(40);
    let t2 = run_one(&mut h, task(2, 1));
    h.advance(59);
    assert_eq!(h.status(t1), Some(TaskStatus::Completed), "99 ms old");
    h.advance(1);
    assert_eq!(h.s.lookup(&t1, h.now), Lookup::Evicted, "100 ms old");
    assert_eq!(h.status(t2), Some(TaskStatus::Completed));
    h.advance(40);
    assert_eq!(h.s.lookup(&t2, h.now), Lookup::Evicted);
    assert_eq!(h.s.held(), 0);
}

/// A finished task stays while an unfinished dependent may still need its
/// output, whatever the limits say.
#[test]
fn holders_keep_a_dependency_until_every_dependent_finished() {
    let mut h = keeping(Retention {
        max_tasks: 0,
        ..Retention::default()
    });
    let a = named(1, "a", "worker", 1);
    let slow = named(2, "slow", "worker", 1);
    let b = named(3, "b", "worker", 1).after(&a).after(&slow);
    let c = named(4, "c", "worker", 1).after(&a);
    let (ia, islow, ib, ic) = (a.id, slow.id, b.id, c.id);
    h.submit(vec![a, slow, b, c]);
    h.bid_all();
    h.accept(ia);
    h.accept(islow);
    h.report_ok(ia, b"A");
    // c runs and finishes; b still waits for `slow`: a is kept for b.
    h.bid_all();
    h.accept(ic);
    h.report_ok(ic, b"C");
    assert_eq!(h.s.lookup(&ic, h.now), Lookup::Evicted, "nothing needs c");
    assert_eq!(h.status(ia), Some(TaskStatus::Completed), "b still needs a");
    let id = h.submit(vec![named(5, "d", "worker", 1).depends_on(ia)])[0];

    h.report_ok(islow, b"S");
    h.bid_all();
    let deps = &h.assigned[&ib].1.deps;
    assert_eq!(
        deps[0].outcome,
        Ok(Payload::from_bytes(*b"A")),
        "a's output reached b"
    );
    h.accept(ib);
    h.report_ok(ib, b"B");
    assert_eq!(h.status(ia), Some(TaskStatus::Completed), "d, running, holds a");
    h.accept(id);
    h.report_ok(id, b"D");
    assert_eq!(h.s.held(), 0, "all evicted once nothing is unfinished");
}

/// Regression: a task can be in the eviction line twice (it finished, then
/// a dependent submitted later finished too). One step must choose it once:
/// counting it twice evicted one task too few.
#[test]
fn a_task_in_the_eviction_line_twice_is_evicted_once() {
    let mut h = keeping(Retention {
        max_tasks: 3,
        ..Retention::default()
    });
    let x = run_one(&mut h, task(1, 1));
    let a = run_one(&mut h, task(2, 1));
    let b = run_one(&mut h, task(3, 1).depends_on(a));
    assert_eq!(finished_held(&h), 3);
    // f fails, and its two dependents with it: six finished, three over.
    let f = task(4, 1).with_retries(0);
    let g = task(5, 1).after(&f);
    let k = task(6, 1).after(&f);
    let fid = h.submit(vec![f, g, k])[0];
    h.bid_all();
    h.accept(fid);
    h.report(fid, Err(Failure::permanent("broken")));
    assert_eq!(evicted_by_event(&h), [x, a, b]);
    assert_eq!(finished_held(&h), 3);
}

/// Regression: a dependent that finished before its dependency (cancelled
/// here) stayed in that dependency's list of waiting tasks. Once evicted,
/// its slot went to a new task, which the dependency then woke up when it
/// finished: the new task ran before its own dependency had completed.
#[test]
fn an_evicted_dependents_reused_slot_is_not_woken_by_the_old_dependency() {
    let mut h = keeping(Retention {
        max_tasks: 0,
        ..Retention::default()
    });
    let d = named(1, "d", "worker", 1);
    let e = named(2, "e", "worker", 1);
    let (id, ie) = (d.id, e.id);
    h.submit(vec![d, e]);
    h.bid_all();
    h.accept(id);
    h.accept(ie);
    let s = h.submit(vec![named(3, "s", "worker", 1).depends_on(id)])[0];
    assert_eq!(h.cancel(&[s]), [CancelOutcome::Cancelled]);
    assert_eq!(h.s.lookup(&s, h.now), Lookup::Evicted);
    // t takes the slot s left, and waits for e only.
    let t = h.submit(vec![named(4, "t", "worker", 1).depends_on(ie)])[0];

    h.report_ok(id, b"D");
    assert!(h.announce_times(t).is_empty(), "t must wait for e");
    assert_eq!(h.status(t), Some(TaskStatus::Pending));
    h.report_ok(ie, b"E");
    h.bid_all();
    let deps: Vec<_> = h.assigned[&t].1.deps.iter().map(|d| d.id).collect();
    assert_eq!(deps, [ie]);
}

/// A finished task is kept at least `min_age`, whatever the other limits.
#[test]
fn a_finished_task_is_kept_at_least_min_age() {
    let mut h = Harness::with(SchedulerConfig {
        retention: Retention {
            max_tasks: 0,
            min_age: ms(500),
            ..Retention::default()
        },
        ..cfg()
    });
    h.register("n1", &[("w", "worker", 5, 4)]);
    let id = run_one(&mut h, task(1, 1));
    h.advance(499);
    assert_eq!(h.status(id), Some(TaskStatus::Completed), "too young to evict");
    h.advance(1);
    assert!(matches!(h.s.lookup(&id, h.now), Lookup::Evicted));
}

/// A task a client waits on is not evicted before the client has its
/// answer, even with a retention of nothing; `unwatch` lets it go.
#[test]
fn a_watched_task_is_kept_until_unwatched() {
    let mut h = keeping(Retention {
        max_tasks: 0,
        ..Retention::default()
    });
    let id = h.submit(vec![task(1, 1)])[0];
    h.s.watch(id);
    h.s.watch(id);
    h.run_ready();
    h.advance(10);
    assert_eq!(h.status(id), Some(TaskStatus::Completed), "kept while watched");
    h.s.unwatch(&id);
    h.advance(10);
    assert_eq!(h.status(id), Some(TaskStatus::Completed), "one watch is left");
    h.s.unwatch(&id);
    h.step(Input::Tick);
    assert!(matches!(h.s.lookup(&id, h.now), Lookup::Evicted));
    let other = h.submit(vec![task(2, 1)])[0];
    h.run_ready();
    assert_eq!(h.s.status(&other), None, "unwatched: evicted in its step");
}

#[test]
fn eviction_keeps_pace_with_large_batches_without_extra_steps() {
    let mut h = keeping(Retention {
        max_tasks: 1_000,
        ..Retention::default()
    });
    for round in 0..3u128 {
        // Difficulty 9: no worker can take them, so they wait until cancelled.
        let batch = (0..20_000).map(|i| task(round * 100_000 + i, 9)).collect();
        let ids = h.submit(batch);
        h.cancel(&ids);
        // The step that finished 20,000 tasks also evicted all but 1,000,
        // with no tick in between: memory does not creep from round to round.
        assert_eq!(finished_held(&h), 1_000, "round {round}");
    }
}
