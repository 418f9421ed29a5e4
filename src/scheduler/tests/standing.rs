//! Standing bids: awards at once, without an announcement; and queues
//! (pipelining) filled from them.

use super::*;

const JUNIOR: Spec = ("junior", "worker", 3, 1);
const SENIOR: Spec = ("senior", "worker", 9, 1);

fn assigned_in(out: &[Output]) -> Vec<TaskId> {
    let each = out.iter().filter_map(|o| match o {
        Output::Assign { assignments, .. } => Some(assignments.iter().map(|a| a.task)),
        _ => None,
    });
    each.flatten().collect()
}

#[test]
fn a_ready_task_goes_at_once_to_the_best_fitting_standing_bid() {
    let mut h = Harness::new();
    h.register_standing("n1", &[(JUNIOR, Some(3)), (SENIOR, Some(9))]);
    let ids = h.submit(vec![named(1, "easy", "worker", 2), named(2, "hard", "worker", 8)]);
    // Awarded in the submission's own step: no announcement, no bids.
    assert_eq!(assigned_in(&h.last), ids);
    assert!(announce_batches(&h.last).is_empty(), "{:?}", h.last);
    assert_eq!(h.winner(ids[0]), Some("junior"), "the lowest sufficient skill");
    assert_eq!(h.winner(ids[1]), Some("senior"), "skill >= difficulty");
    let auction = h.report_of(ids[0]).auction.expect("an award record");
    assert!(auction.reason.starts_with("standing bid: "), "{}", auction.reason);
    assert_eq!(auction.bids.len(), 2, "both standing bids are recorded");
    assert_eq!(auction.rounds, 0, "no auction round");
    // Full: the next task waits for an auction, which nobody can answer
    // with a free slot yet.
    let [third] = h.submit(vec![named(3, "third", "worker", 1)])[..] else {
        unreachable!()
    };
    assert_eq!(h.status(third), Some(TaskStatus::Pending));
    assert!(assigned_in(&h.last).is_empty());
    // A result frees the slot: the waiting task follows in the same step.
    h.accept(ids[0]);
    h.report_ok(ids[0], b"ok");
    assert_eq!(assigned_in(&h.last), vec![third]);
    assert_eq!(h.winner(third), Some("junior"));
}

#[test]
fn tasks_beyond_a_standing_bid_go_to_an_open_auction() {
    let mut h = Harness::new();
    // Skilled to 9, standing for 4 at most; a second worker bids only.
    h.register_standing("n1", &[(SENIOR, Some(4)), (("mid", "worker", 6, 1), None)]);
    let ids = h.submit(vec![
        named(1, "easy", "worker", 4),
        named(2, "medium", "worker", 5),
    ]);
    assert_eq!(assigned_in(&h.last), vec![ids[0]]);
    assert_eq!(h.winner(ids[0]), Some("senior"));
    assert_eq!(h.last_announces(), vec![vec![ids[1]]], "over the standing bid");
    h.bid_all();
    assert_eq!(h.winner(ids[1]), Some("mid"));
    assert!(!h
        .report_of(ids[1])
        .auction
        .unwrap()
        .reason
        .starts_with("standing"));
}

#[test]
fn a_standing_bid_over_the_skill_counts_up_to_the_skill() {
    let mut h = Harness::new();
    h.register_standing("n1", &[(JUNIOR, Some(100))]);
    let ids = h.submit(vec![named(1, "hard", "worker", 4)]);
    assert!(
        assigned_in(&h.last).is_empty(),
        "a task over the skill is never awarded"
    );
    assert_eq!(h.status(ids[0]), Some(TaskStatus::Pending));
}

#[test]
fn a_lost_or_refused_award_sets_the_standing_bid_aside_until_the_node_speaks() {
    let mut h = super::leases::leased();
    h.register_standing("n1", &[(JUNIOR, Some(3))]);
    let [first] = h.submit(vec![named(1, "first", "worker", 1)])[..] else {
        unreachable!()
    };
    assert_eq!(h.winner(first), Some("junior"));
    // Its node goes silent (paused): the lease runs out and the attempt is
    // lost. Once its slot counts as free again (a lease later), the task is
    // announced for an auction instead of handed back unasked.
    h.advance(2 * super::leases::LEASE + 10);
    assert_eq!(h.report_of(first).history.len(), 1, "{:?}", h.changes(first));
    assert_eq!(h.assign_count(first), 1, "not awarded again unasked");
    assert!(!h.announce_times(first).is_empty(), "{:?}", h.changes(first));
    // The worker whose attempt was lost takes the task back only through
    // the auction (a retry prefers another worker); its bid is its node
    // speaking again, so its standing bid counts from then on.
    for _ in 0..50 {
        if h.assign_count(first) == 2 {
            break;
        }
        h.bid_all();
        h.advance(5);
    }
    assert_eq!(h.assign_count(first), 2, "{:?}", h.changes(first));
    let reason = h.report_of(first).auction.unwrap().reason;
    assert!(!reason.starts_with("standing bid: "), "{reason}");
    h.accept(first);
    h.report_ok(first, b"ok");
    let [second] = h.submit(vec![named(2, "second", "worker", 1)])[..] else {
        unreachable!()
    };
    assert_eq!(assigned_in(&h.last), vec![second], "standing again");

    // A refusal sets it aside too, until the node's next message.
    let mut h = Harness::new();
    h.register_standing("n1", &[(JUNIOR, Some(3)), (("other", "worker", 3, 1), Some(3))]);
    let ids = h.submit(vec![named(1, "a", "worker", 1)]);
    let first_winner = h.winner(ids[0]).unwrap().to_string();
    h.refuse(ids[0]);
    let more = h.submit(vec![named(2, "b", "worker", 1), named(3, "c", "worker", 1)]);
    let given: Vec<_> = more.iter().filter_map(|&t| h.winner(t)).collect();
    assert!(
        !given.contains(&first_winner.as_str()),
        "{first_winner} refused and got {given:?} unasked"
    );
}

#[test]
fn a_lost_award_sets_the_standing_bid_aside_for_every_task() {
    let mut h = super::leases::leased();
    h.register_standing("n1", &[(("junior", "worker", 3, 2), Some(3))]);
    let [first] = h.submit(vec![named(1, "first", "worker", 1)])[..] else {
        unreachable!()
    };
    assert_eq!(h.winner(first), Some("junior"));
    // The node is silent past the lease: the attempt is lost. A new task
    // then waits for an auction too, though a slot is free.
    h.advance(2 * super::leases::LEASE + 10);
    let [other] = h.submit(vec![named(2, "other", "worker", 1)])[..] else {
        unreachable!()
    };
    assert!(assigned_in(&h.last).is_empty(), "{:?}", h.changes(other));
    assert_eq!(h.status(other), Some(TaskStatus::Announced));
}

#[test]
fn queues_fill_only_when_no_fitting_standing_bid_has_a_free_slot() {
    let mut h = Harness::new();
    let a = (("a", "worker", 5, 1), Some(5), 2);
    let b = (("b", "worker", 5, 1), Some(5), 0);
    h.register_queued("n1", &[a, b]);
    let ids = h.submit((1..=5).map(|n| named(n, "t", "worker", 1)).collect());
    let winners: Vec<_> = ids.iter().map(|&t| h.winner(t)).collect();
    // Free slots first (a, then b: least loaded), then a's queue; the
    // fifth waits: nobody has room.
    assert_eq!(winners, [Some("a"), Some("b"), Some("a"), Some("a"), None]);
    assert_eq!(h.load("n1", "a"), 3, "one running, two waiting");
    let queued = h.report_of(ids[2]).auction.unwrap();
    assert!(
        queued
            .reason
            .starts_with("standing bid, into its queue (no capable worker had a free slot): ")
            && queued.reason.ends_with("; b was busy"),
        "{}",
        queued.reason
    );
    let first = h.report_of(ids[0]).auction.unwrap();
    assert!(first.reason.starts_with("standing bid: "), "{}", first.reason);
    // Taken into a's queue: queued, not running, until a's node says it
    // started.
    for &t in &ids[..4] {
        h.accept(t);
    }
    let statuses: Vec<_> = ids[..4].iter().map(|&t| h.status(t)).collect();
    use TaskStatus::{Queued, Running};
    assert_eq!(
        statuses,
        [Some(Running), Some(Running), Some(Queued), Some(Queued)]
    );
    let held: Vec<(TaskId, u32)> = [ids[0], ids[2], ids[3]].iter().map(|&t| (t, 1)).collect();
    h.renew_waiting("n1", &held, &held[1..]);
    assert_eq!(h.status(ids[2]), Some(Queued), "still waiting, as its node says");
    h.renew_waiting("n1", &held, &held[2..]);
    assert_eq!(h.status(ids[2]), Some(Running), "started, as its node says");
    assert_eq!(h.status(ids[3]), Some(Queued));
    // The first result frees a place in a's queue: the fifth goes there.
    h.accept(ids[0]);
    h.report_ok(ids[0], b"ok");
    assert_eq!(h.winner(ids[4]), Some("a"));
}

/// A worker with one slot and a queue of one, under a short lease, given
/// two tasks with a 100 ms timeout: the first runs, the second waits.
fn one_running_one_queued() -> (Harness, TaskId, TaskId) {
    let mut h = super::leases::leased();
    h.register_queued("n1", &[(("a", "worker", 5, 1), Some(5), 1)]);
    let mut tasks: Vec<Task> = (1..=2).map(|n| named(n, "t", "worker", 1)).collect();
    for t in &mut tasks {
        t.timeout_ms = Some(100);
    }
    let [first, second] = h.submit(tasks)[..] else {
        unreachable!()
    };
    h.accept(first);
    h.accept(second);
    (h, first, second)
}

#[test]
fn the_timeout_backstop_waits_while_an_attempt_waits_in_a_queue() {
    let (mut h, first, second) = one_running_one_queued();
    let attempt = |h: &Harness, t| (t, h.assigned[&t].1.attempt);
    let (held, waiting) = (
        vec![attempt(&h, first), attempt(&h, second)],
        vec![attempt(&h, second)],
    );
    // The node renews both, the second waiting behind the first (which
    // runs long): the backstop (timeout + lease after the award) passes
    // without failing the second.
    for _ in 0..10 {
        h.renew_waiting("n1", &held, &waiting);
        h.advance(200);
    }
    assert_eq!(
        h.status(second),
        Some(TaskStatus::Queued),
        "{:?}",
        h.changes(second)
    );
    // Once it is said to run, the backstop fires a timeout and lease after
    // that renewal, not sooner.
    for _ in 0..2 {
        h.renew_waiting("n1", &held, &[]);
        h.advance(175);
    }
    assert_eq!(
        h.status(second),
        Some(TaskStatus::Running),
        "{:?}",
        h.changes(second)
    );
    for _ in 0..5 {
        h.renew_waiting("n1", &held, &[]);
        h.advance(200);
    }
    let outcome = h.report_of(second).history[0].outcome.clone();
    assert!(
        matches!(outcome, AttemptOutcome::TimedOut { timeout_ms: 100 }),
        "{outcome:?}"
    );
}

#[test]
fn a_completed_attempt_frees_exactly_one_place() {
    let mut h = Harness::new();
    h.register_standing("n1", &[(("multi", "worker", 5, 3), Some(5))]);
    let ids = h.submit((1..=3).map(|n| named(n, "t", "worker", 1)).collect());
    assert_eq!(h.load("n1", "multi"), 3);
    h.accept(ids[0]);
    h.report_ok(ids[0], b"ok");
    assert_eq!(h.load("n1", "multi"), 2, "two attempts still run");
    h.accept(ids[1]);
    h.report_err(ids[1], "no");
    assert_eq!(h.load("n1", "multi"), 1);
}

#[test]
fn a_new_admin_waits_for_the_first_renewal_before_its_timeout_backstop() {
    let (mut h, first, second) = one_running_one_queued();
    let held = vec![(first, 1), (second, 1)];
    let renew = |h: &mut Harness| {
        h.renew_waiting("n1", &held, &[(second, 1)]);
    };
    for _ in 0..5 {
        renew(&mut h);
        h.advance(200);
    }
    // A new admin takes office past the backstop's first time (award +
    // timeout + lease): the node, not heard from yet, is waited for rather
    // than its queued attempt timed out.
    h.hand_over();
    h.advance(1);
    assert_eq!(
        h.status(second),
        Some(TaskStatus::Queued),
        "{:?}",
        h.changes(second)
    );
    renew(&mut h);
    h.advance(200);
    assert_eq!(
        h.status(second),
        Some(TaskStatus::Queued),
        "still waiting, as its node says: {:?}",
        h.changes(second)
    );
}

#[test]
fn a_registration_cannot_claim_unbounded_slots_or_queue() {
    use crate::task::{MAX_WORKER_QUEUE, MAX_WORKER_SLOTS};
    let mut h = Harness::new();
    h.register_queued("n1", &[(("wide", "worker", 5, u32::MAX), None, 0)]);
    h.register_queued("n2", &[(("greedy", "worker", 5, 1), Some(5), u32::MAX)]);
    let wide = h.worker("n1", "wide").expect("registered");
    assert_eq!(wide.capacity, MAX_WORKER_SLOTS);
    // The slot and the queue take what they may, though that is more than
    // one pump looks at in a step; the rest waits.
    let n = (1 + MAX_WORKER_QUEUE + 10) as u128;
    h.submit((1..=n).map(|i| named(i, "t", "worker", 1)).collect());
    h.advance(1);
    assert_eq!(h.load("n2", "greedy"), 1 + MAX_WORKER_QUEUE);
}

#[test]
fn a_registration_of_names_no_node_could_start_with_is_dropped() {
    let mut h = Harness::new();
    let long = "w".repeat(crate::task::MAX_NAME_BYTES + 1);
    h.register(
        "n1",
        &[
            ("ok", "worker", 5, 1),
            ("a\nb", "worker", 5, 1),
            ("\u{202E}evil", "worker", 5, 1),
            ("tab", "work\ter", 5, 1),
            ("", "worker", 5, 1),
            (&long, "worker", 5, 1),
            ("role", "", 5, 1),
        ],
    );
    let names: Vec<String> = h.s.workers().into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["ok"]);
}

#[test]
fn an_award_still_waiting_in_a_lost_workers_queue_is_not_a_lost_attempt() {
    let mut h = super::leases::leased();
    h.register_queued("n1", &[(("a", "worker", 5, 1), Some(5), 1)]);
    h.register_queued("n2", &[(("b", "worker", 5, 1), Some(5), 1)]);
    let mut tasks: Vec<Task> = (1..=4).map(|n| named(n, "t", "worker", 1)).collect();
    for t in &mut tasks {
        t.max_attempts = Some(1);
    }
    let ids = h.submit(tasks);
    let on_a: Vec<TaskId> = ids
        .iter()
        .copied()
        .filter(|&t| h.winner(t) == Some("a"))
        .collect();
    let [running, queued] = on_a[..] else {
        panic!("a holds one running and one queued: {on_a:?}")
    };
    for &t in &ids {
        h.accept(t);
    }
    let attempt = |h: &Harness, t| (t, h.assigned[&t].1.attempt);
    h.renew_waiting(
        "n1",
        &[attempt(&h, running), attempt(&h, queued)],
        &[attempt(&h, queued)],
    );
    h.step(Input::NodeLeft(NodeId::new("n1")));
    // The running one was lost with its only attempt; the queued one never
    // ran, and waits for another award.
    assert_eq!(h.status(running), Some(TaskStatus::Failed));
    assert_ne!(
        h.status(queued),
        Some(TaskStatus::Failed),
        "{:?}",
        h.changes(queued)
    );
    let history = h.report_of(queued).history;
    let AttemptOutcome::Lost { reason } = &history[0].outcome else {
        panic!("{history:?}")
    };
    assert!(reason.contains("before it started"), "{reason}");
    // b finishes its work; the queued task goes to b and completes.
    let on_b: Vec<TaskId> = ids
        .iter()
        .copied()
        .filter(|&t| h.winner(t) == Some("b"))
        .collect();
    for t in on_b {
        h.report_ok(t, b"ok");
    }
    h.accept(queued);
    h.report_ok(queued, b"ok");
    assert_eq!(h.status(queued), Some(TaskStatus::Completed));
}
