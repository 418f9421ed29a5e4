//! Honest reasons: an award records every bid with how it fared, and its
//! reason says why the winner won over each other bidder.

use super::*;
use crate::scheduler::bidding::MAX_EXCLUDED_STANDING;
use crate::task::{BidVerdict, Ranked};

/// The verdict on each recorded bid of `id`'s award, by worker name.
fn verdicts(h: &Harness, id: TaskId) -> Vec<(String, BidVerdict)> {
    let auction = h.report_of(id).auction.expect("awarded");
    auction
        .bids
        .iter()
        .map(|b| (b.worker.clone(), b.verdict))
        .collect()
}

fn reason(h: &Harness, id: TaskId) -> String {
    h.report_of(id).auction.expect("awarded").reason
}

fn v(list: &[(&str, BidVerdict)]) -> Vec<(String, BidVerdict)> {
    list.iter().map(|&(n, v)| (n.to_string(), v)).collect()
}

/// Junior (3), mid (6) and senior (9), one slot each, bidding on
/// announcements.
fn trio() -> Harness {
    let mut h = Harness::new();
    let specs = [
        ("junior", "worker", 3, 1),
        ("mid", "worker", 6, 1),
        ("senior", "worker", 9, 1),
    ];
    h.register("n1", &specs);
    h
}

/// Submits task `n` of `difficulty` and lets every worker bid as it would.
fn auctioned(h: &mut Harness, n: u128, difficulty: u32) -> TaskId {
    let [t] = h.submit(vec![task(n, difficulty)])[..] else {
        unreachable!()
    };
    h.bid_all();
    t
}

#[test]
fn a_rival_with_room_is_outbid_and_the_reason_says_how() {
    let mut h = trio();
    let t = auctioned(&mut h, 1, 6);
    assert_eq!(h.winner(t), Some("mid"));
    use BidVerdict::*;
    assert_eq!(
        verdicts(&h, t),
        v(&[
            ("junior", Declined),
            ("mid", Won),
            ("senior", Outbid(Ranked::MoreSkilled))
        ])
    );
    assert_eq!(
        reason(&h, t),
        "least loaded (0/1) with the lowest sufficient skill (6 >= 6) among 2 capable bidders with room; \
         senior was more skilled, kept free for harder tasks; junior declined"
    );
}

/// The demo's case: capable bidders that were busy are named as busy, not
/// left out of an "only capable bidder" reason.
#[test]
fn capable_bidders_without_a_free_slot_are_named_busy() {
    let mut h = trio();
    let first = auctioned(&mut h, 1, 6);
    h.accept(first);
    let second = auctioned(&mut h, 2, 6);
    h.accept(second);
    assert_eq!((h.winner(first), h.winner(second)), (Some("mid"), Some("senior")));
    // Both wanted the next task when they bid, but neither has a slot when
    // its auction closes.
    let [third] = h.submit(vec![task(3, 2)])[..] else {
        unreachable!()
    };
    h.inbox.clear();
    for w in ["mid", "senior", "junior"] {
        h.bid("n1", w, third, true);
    }
    assert_eq!(h.winner(third), Some("junior"));
    use BidVerdict::*;
    assert_eq!(
        verdicts(&h, third),
        v(&[("mid", Busy), ("senior", Busy), ("junior", Won)])
    );
    assert_eq!(
        reason(&h, third),
        "only capable bidder with room (skill 3 >= difficulty 2); mid and senior were busy"
    );
}

#[test]
fn a_slot_held_for_another_open_auction_is_named_with_that_task() {
    let mut h = Harness::new();
    h.register("n1", &[("junior", "worker", 3, 1), ("senior", "worker", 9, 1)]);
    let ids = h.submit(vec![
        named(1, "complex-algorithm", "worker", 8),
        named(2, "data-entry", "worker", 2),
    ]);
    assert_eq!(h.last_announces(), vec![ids.clone()], "both auctions are open");
    h.inbox.clear();
    h.bid("n1", "senior", ids[1], true);
    h.bid("n1", "junior", ids[1], true);
    assert_eq!(h.winner(ids[1]), Some("junior"));
    assert_eq!(
        verdicts(&h, ids[1]),
        v(&[
            ("senior", BidVerdict::Held { task: ids[0] }),
            ("junior", BidVerdict::Won)
        ])
    );
    assert_eq!(
        reason(&h, ids[1]),
        "only capable bidder with room (skill 3 >= difficulty 2); senior was held for complex-algorithm"
    );
}

#[test]
fn unqualified_declined_set_aside_and_gone_bids_each_say_so() {
    let mut h = Harness::new();
    h.register(
        "n1",
        &[
            ("x", "worker", 5, 1),
            ("y", "worker", 5, 1),
            ("weak", "worker", 2, 1),
        ],
    );
    h.register("n2", &[("leaver", "worker", 9, 1)]);
    let [t] = h.submit(vec![task(1, 4)])[..] else {
        unreachable!()
    };
    h.bid_all();
    assert_eq!(h.winner(t), Some("x"), "a tie goes by node, then name");
    h.refuse(t);
    // The next round, at once: x refused it, weak bids though unable,
    // leaver leaves after bidding.
    for _ in 0..100 {
        if h.status(t) == Some(TaskStatus::Announced) {
            break;
        }
        h.advance(1);
    }
    assert_eq!(h.status(t), Some(TaskStatus::Announced));
    h.inbox.clear();
    h.bid("n2", "leaver", t, true);
    h.leave("n2");
    h.bid("n1", "weak", t, true);
    h.bid("n1", "x", t, true);
    h.bid("n1", "y", t, true);
    assert_eq!(h.winner(t), Some("y"));
    use BidVerdict::*;
    assert_eq!(
        verdicts(&h, t),
        v(&[
            ("leaver", Gone),
            ("weak", Unqualified),
            ("x", SetAside),
            ("y", Won)
        ])
    );
    assert_eq!(
        reason(&h, t),
        "only capable bidder with room (skill 5 >= difficulty 4); \
         x was set aside (it refused or failed this task before); weak was not skilled enough (2 < 4); leaver left"
    );
}

#[test]
fn standing_awards_name_the_busy_the_more_loaded_and_the_tie_break() {
    let mut h = Harness::new();
    h.register_standing(
        "n1",
        &[(("a", "worker", 5, 2), Some(5)), (("b", "worker", 5, 2), Some(5))],
    );
    let ids = h.submit(vec![task(1, 1), task(2, 1), task(3, 1), task(4, 1), task(5, 1)]);
    use BidVerdict::*;
    assert_eq!(
        verdicts(&h, ids[0]),
        v(&[("a", Won), ("b", Outbid(Ranked::TieBreak))])
    );
    assert!(
        reason(&h, ids[0]).ends_with("; b was as loaded and skilled, and came later by node and name"),
        "{}",
        reason(&h, ids[0])
    );
    assert_eq!(
        verdicts(&h, ids[1]),
        v(&[("a", Outbid(Ranked::MoreLoaded)), ("b", Won)])
    );
    assert!(
        reason(&h, ids[1]).ends_with("; a was more loaded"),
        "{}",
        reason(&h, ids[1])
    );
    // Both full after four: the fifth waits for an auction.
    assert_eq!(h.status(ids[4]), Some(TaskStatus::Pending));
    h.accept(ids[0]);
    h.report_ok(ids[0], b"ok");
    assert_eq!(h.winner(ids[4]), Some("a"));
    assert_eq!(verdicts(&h, ids[4]), v(&[("a", Won), ("b", Busy)]));
    assert_eq!(
        reason(&h, ids[4]),
        "standing bid: only capable bidder with room (skill 5 >= difficulty 1); b was busy"
    );
}

#[test]
fn an_award_among_many_standing_bids_records_a_few_and_counts_the_rest() {
    let mut h = Harness::new();
    let names: Vec<String> = (0..12).map(|i| format!("w{i:02}")).collect();
    let specs: Vec<(Spec, Option<u32>)> = names
        .iter()
        .map(|n| ((n.as_str(), "worker", 5, 1), Some(5)))
        .collect();
    h.register_standing("n1", &specs);
    let ids = h.submit((1..=12).map(|n| task(n, 1)).collect());
    let last = verdicts(&h, ids[11]);
    assert_eq!(last.len(), 1 + MAX_EXCLUDED_STANDING, "{last:?}");
    assert_eq!(
        last.iter().filter(|(_, v)| *v == BidVerdict::Busy).count(),
        MAX_EXCLUDED_STANDING
    );
    assert!(
        reason(&h, ids[11]).ends_with("; 3 more standing bids could not take it"),
        "{}",
        reason(&h, ids[11])
    );
}
