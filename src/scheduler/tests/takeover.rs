//! Taking over: a scheduler that only followed the log (or restored a
//! snapshot of it) becomes the admin. Waiting tasks are auctioned again,
//! and attempts the workers hold keep running under a fresh lease, lost
//! only if their node never renews with the new admin.

use super::leases::{leased, one_running, LEASE};
use super::*;

impl Harness {
    /// Hands the admin's office to a scheduler built like a replica's: the
    /// events applied so far, from a snapshot of a follower, then
    /// `take_office` now. The old admin's auction layer is gone.
    pub(super) fn hand_over(&mut self) {
        self.events.extend(self.s.take_events());
        let mut follower = Scheduler::new(self.s.cfg.clone());
        for e in &self.events {
            follower.apply(e);
            follower.forget_step();
        }
        let bytes = follower.snapshot().expect("snapshot encodes");
        let mut next = Scheduler::new(self.s.cfg.clone());
        next.record_events();
        next.restore(&bytes).expect("snapshot restores");
        next.take_office(self.now);
        self.s = next;
        self.inbox.clear();
        self.last.clear();
    }
}

#[test]
fn a_held_attempt_keeps_running_under_a_fresh_lease_from_the_takeover() {
    let (mut h, t) = one_running();
    h.advance_to(250);
    h.hand_over();
    // The old admin's lease would have ended at 300; the new one counts
    // from the takeover.
    h.advance_to(250 + LEASE - 1);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
    assert_eq!(h.renew("n1", &[(t, 1)]), [], "the holder is confirmed");
    h.report_ok(t, b"done");
    assert_eq!(h.status(t), Some(TaskStatus::Completed));
    assert_eq!(h.report_of(t).attempts, 1, "not run twice");
}

#[test]
fn an_attempt_whose_node_never_comes_back_is_lost_one_lease_after_the_takeover() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.register("n2", &[("v", "worker", 5, 1)]);
    let [t] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    h.bid("n1", "w", t, true);
    h.advance(5);
    let holder = h.winner(t).expect("awarded").to_string();
    h.accept(t);
    h.advance_to(100);
    h.hand_over();
    h.advance_to(100 + LEASE - 1);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
    h.advance(1);
    let outcome = h.report_of(t).history[0].outcome.clone();
    assert!(matches!(outcome, AttemptOutcome::Lost { .. }), "{outcome:?}");
    // Awarded again, as attempt 2 (to whichever worker bids).
    h.bid_all();
    h.accept(t);
    assert_eq!(h.report_of(t).history.len(), 2);
    assert_eq!(h.report_of(t).history[0].worker, holder);
}

#[test]
fn a_stale_attempt_a_node_still_holds_is_told_to_stop() {
    let (mut h, t) = one_running();
    h.hand_over();
    // The node claims an attempt the ledger never awarded (the old admin
    // sent it, but its award was not committed).
    assert_eq!(h.renew("n1", &[(t, 1), (t, 7)]), [(t, 7)]);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
}

#[test]
fn waiting_tasks_are_auctioned_again_by_the_new_admin() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let ids = h.submit(vec![task(1, 1), task(2, 1), task(3, 9)]);
    // Task 3 needs skill 9: no worker can take it; it waits, parked.
    h.advance(2);
    h.hand_over();
    assert!(h.last_announces().is_empty());
    h.step(Input::Tick);
    let announced: Vec<TaskId> = h.last_announces().concat();
    assert_eq!(announced, ids[..1], "one free slot: the first in line");
    h.bid_all();
    h.accept(ids[0]);
    h.report_ok(ids[0], b"1");
    h.bid_all();
    h.accept(ids[1]);
    h.report_ok(ids[1], b"2");
    h.register("n2", &[("s", "worker", 9, 1)]);
    h.bid_all();
    h.accept(ids[2]);
    h.report_ok(ids[2], b"3");
    for id in ids {
        assert_eq!(h.status(id), Some(TaskStatus::Completed));
    }
}

#[test]
fn a_node_never_heard_from_after_the_takeover_leaves_with_its_workers() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.register("n2", &[("ghost", "worker", 5, 1)]);
    h.advance_to(100);
    h.hand_over();
    // n1 registers again with the new admin; n2 died with the old one.
    h.register("n1", &[("w", "worker", 5, 1)]);
    h.advance_to(100 + 2 * LEASE - 1);
    assert!(h.worker("n2", "ghost").is_some(), "not yet");
    h.advance(1);
    assert!(
        h.worker("n2", "ghost").is_none(),
        "gone two leases after the takeover"
    );
    assert!(h.worker("n1", "w").is_some());
}

#[test]
fn an_award_its_node_never_got_is_awarded_again_at_once_without_counting_as_lost() {
    let mut h = leased();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let mut t = task(1, 1);
    t.max_attempts = Some(1);
    let [t] = h.submit(vec![t])[..] else {
        unreachable!()
    };
    h.bid_all();
    // Awarded (committed), but the old admin fell before sending it.
    assert_eq!(h.status(t), Some(TaskStatus::Assigned));
    h.advance_to(50);
    h.hand_over();
    // The node's first renewal with the new admin holds nothing.
    assert_eq!(h.renew("n1", &[]), []);
    assert_eq!(
        h.status(t),
        Some(TaskStatus::Announced),
        "auctioned again at once"
    );
    let outcome = h.report_of(t).history[0].outcome.clone();
    assert!(
        matches!(&outcome, AttemptOutcome::Lost { reason } if reason.contains("not delivered")),
        "{outcome:?}"
    );
    // One attempt allowed, yet it runs: the undelivered one did not count.
    h.bid_all();
    h.accept(t);
    h.report_ok(t, b"done");
    assert_eq!(h.status(t), Some(TaskStatus::Completed));
    assert_eq!(h.report_of(t).attempts, 2);
}

#[test]
fn a_renewal_after_the_first_does_not_judge_what_the_node_holds() {
    let (mut h, t) = one_running();
    h.hand_over();
    assert_eq!(h.renew("n1", &[(t, 1)]), [], "confirmed");
    // Later renewals that leave it out do not end it (the lease does).
    assert_eq!(h.renew("n1", &[]), []);
    assert_eq!(h.status(t), Some(TaskStatus::Running));
}
