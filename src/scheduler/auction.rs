//! Award policies: given the bids of one auction, pick the winner and say why.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::task::{BidRecord, BidVerdict, NodeId, Ranked, TaskId};

/// One capable bid as the policy sees it. `load` is the admin's own count of
/// tasks the worker holds now, which is fresher than the load in the bid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The worker's name.
    pub worker: &'a str,
    /// The node hosting it.
    pub node: &'a NodeId,
    /// The worker's skill.
    pub skill: u32,
    /// Tasks the worker holds now (admin's view).
    pub load: u32,
    /// How many tasks it may hold at once.
    pub capacity: u32,
}

/// The task being auctioned, as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Lot<'a> {
    /// The task's name.
    pub name: &'a str,
    /// The task's role.
    pub role: &'a str,
    /// The task's difficulty.
    pub difficulty: u32,
}

/// Why a policy picked its winner. The ledger records these numbers, not
/// text: an award costs no string in the ledger, its snapshots or its
/// followers. It is rendered (`Display`) when a report is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Choice {
    /// The only capable bidder, of `skill` for a task of `difficulty`.
    OnlyCapable {
        /// The winner's skill.
        skill: u32,
        /// The task's difficulty.
        difficulty: u32,
    },
    /// [`BestFit`]'s pick among `among` capable bidders: the least loaded
    /// (`load` of `capacity` tasks held), then the lowest sufficient skill.
    LeastLoaded {
        /// Tasks the winner held.
        load: u32,
        /// How many it may hold at once.
        capacity: u32,
        /// The winner's skill.
        skill: u32,
        /// The task's difficulty.
        difficulty: u32,
        /// Capable bidders it was chosen among.
        among: u32,
    },
    /// Another policy's own words.
    Said(Box<str>),
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(f, "with room")
    }
}

impl Choice {
    /// The choice in words; `room` says where the candidates had room
    /// ("with room", or "with room in their queues" for an award into a
    /// queue).
    fn render(&self, f: &mut fmt::Formatter<'_>, room: &str) -> fmt::Result {
        match self {
            Choice::OnlyCapable { skill, difficulty } => {
                write!(
                    f,
                    "only capable bidder {room} (skill {skill} >= difficulty {difficulty})"
                )
            }
            Choice::LeastLoaded {
                load,
                capacity,
                skill,
                difficulty,
                among,
            } => write!(
                f,
                "least loaded ({load}/{capacity}) with the lowest sufficient skill \
                 ({skill} >= {difficulty}) among {among} capable bidders {room}"
            ),
            Choice::Said(words) => f.write_str(words),
        }
    }
}

/// How the winning bid reached the admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BidPath {
    /// In answer to the task's announced auction.
    Announced,
    /// A standing bid, made before the task was ready.
    Standing,
    /// Late for `round`, which had closed without an award.
    Late {
        /// The round it was late for.
        round: u32,
    },
}

/// Why a task went to its winner, as its award event records it: how the
/// bid came and the policy's [`Choice`]. Rendered as the report's reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwardReason {
    /// How the winning bid came.
    pub path: BidPath,
    /// Why the policy chose it.
    pub choice: Choice,
    /// Standing bids that reached the task but could not take it and are
    /// not among the recorded bids (an award records at most 8 of them).
    pub omitted: u32,
    /// The names of the tasks whose open auctions held a bidder's slot
    /// ([`BidVerdict::Held`]), as they were at the award: the report names
    /// them the same way whenever it is read. Empty in most awards.
    pub held: Box<[(TaskId, Box<str>)]>,
    /// No capable worker had a free slot: the task went into the winner's
    /// queue, to start when one of its slots frees (standing bids only).
    pub queued: bool,
}

impl fmt::Display for AwardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path {
            BidPath::Announced => {}
            BidPath::Standing if self.queued => {
                f.write_str("standing bid, into its queue (no capable worker had a free slot): ")?
            }
            BidPath::Standing => f.write_str("standing bid: ")?,
            BidPath::Late { round } => write!(
                f,
                "late bid for round {round}, which had closed without an award: "
            )?,
        }
        match self.queued {
            true => self.choice.render(f, "with room in its queue"),
            false => self.choice.fmt(f),
        }
    }
}

/// Why the winner won over each other bid, in words: the bids grouped by
/// verdict in the order they first appear ("Intermediate and Senior were
/// busy; Junior was not skilled enough (3 < 6)"), then the count of
/// standing bids the award did not record (`reason.omitted`); a held slot's
/// task is named from `reason.held`. Empty when the winner was the only bid.
pub fn others(bids: &[BidRecord], difficulty: u32, reason: &AwardReason) -> String {
    let held_for = |id: &TaskId| match reason.held.iter().find(|(t, _)| t == id) {
        Some((_, name)) => name.to_string(),
        None => format!("task {id}"),
    };
    let omitted = reason.omitted;
    let mut groups: Vec<(BidVerdict, Vec<&BidRecord>)> = Vec::new();
    for b in bids.iter().filter(|b| b.verdict != BidVerdict::Won) {
        match groups.iter_mut().find(|(v, _)| *v == b.verdict) {
            Some((_, members)) => members.push(b),
            None => groups.push((b.verdict, vec![b])),
        }
    }
    // Rivals first (they lost on the policy's terms), then those that had
    // no room, then those that could not or would not take the task.
    groups.sort_by_key(|(verdict, _)| match verdict {
        BidVerdict::Won => 0,
        BidVerdict::Outbid(_) => 1,
        BidVerdict::Busy | BidVerdict::Held { .. } => 2,
        BidVerdict::SetAside | BidVerdict::Unheard => 3,
        BidVerdict::Unqualified => 4,
        BidVerdict::Declined => 5,
        BidVerdict::Gone => 6,
    });
    let mut parts: Vec<String> = groups
        .iter()
        .map(|(verdict, members)| {
            let names = listed(members.iter().map(|b| b.worker.as_str()));
            let was = if members.len() == 1 { "was" } else { "were" };
            match verdict {
                BidVerdict::Won => String::new(),
                BidVerdict::Outbid(Ranked::MoreLoaded) => format!("{names} {was} more loaded"),
                BidVerdict::Outbid(Ranked::MoreSkilled) if reason.queued => {
                    format!("{names} {was} as busy and more skilled")
                }
                BidVerdict::Outbid(Ranked::MoreSkilled) => {
                    format!("{names} {was} more skilled, kept free for harder tasks")
                }
                BidVerdict::Outbid(Ranked::TieBreak) => {
                    format!("{names} {was} as loaded and skilled, and came later by node and name")
                }
                BidVerdict::Outbid(Ranked::ByPolicy) => {
                    format!("{names} {was} ranked lower by the award policy")
                }
                BidVerdict::Declined => format!("{names} declined"),
                BidVerdict::Unqualified => {
                    let skills = listed(members.iter().map(|b| b.skill.to_string()));
                    format!("{names} {was} not skilled enough ({skills} < {difficulty})")
                }
                BidVerdict::Busy => format!("{names} {was} busy"),
                BidVerdict::Held { task } => format!("{names} {was} held for {}", held_for(task)),
                BidVerdict::SetAside => {
                    format!("{names} {was} set aside (it refused or failed this task before)")
                }
                BidVerdict::Unheard => {
                    let node = if members.len() == 1 {
                        "its node is"
                    } else {
                        "their nodes are"
                    };
                    format!("{names} {was} set aside until {node} heard from")
                }
                BidVerdict::Gone => format!("{names} left"),
            }
        })
        .collect();
    if omitted > 0 {
        let bids = if omitted == 1 {
            "standing bid"
        } else {
            "standing bids"
        };
        parts.push(format!("{omitted} more {bids} could not take it"));
    }
    parts.join("; ")
}

/// "a", "a and b", "a, b and c".
fn listed<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<S> = items.collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.as_ref().to_string(),
        Some((last, rest)) => {
            let rest: Vec<&str> = rest.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", rest.join(", "), last.as_ref())
        }
    }
}

/// Decides which bid wins an auction. Implementations must be deterministic:
/// the same lot and candidates give the same answer.
pub trait AwardPolicy: Send + 'static {
    /// Picks a winner among `candidates` (all willing, with `skill >=
    /// difficulty` and a free slot) and says why; `None` leaves the task
    /// unawarded this round.
    fn choose(&self, lot: &Lot<'_>, candidates: &[Candidate<'_>]) -> Option<(usize, Choice)>;
}

/// The default policy: the least loaded capable bidder, then the lowest skill
/// that suffices (keeping senior workers free for hard tasks), then the node
/// id and worker name, so ties break the same way everywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct BestFit;

impl AwardPolicy for BestFit {
    fn choose(&self, lot: &Lot<'_>, candidates: &[Candidate<'_>]) -> Option<(usize, Choice)> {
        let (i, c) = candidates.iter().enumerate().min_by(|(_, a), (_, b)| {
            (a.load, a.skill, a.node, a.worker).cmp(&(b.load, b.skill, b.node, b.worker))
        })?;
        let choice = if candidates.len() == 1 {
            Choice::OnlyCapable {
                skill: c.skill,
                difficulty: lot.difficulty,
            }
        } else {
            Choice::LeastLoaded {
                load: c.load,
                capacity: c.capacity,
                skill: c.skill,
                difficulty: lot.difficulty,
                among: u32::try_from(candidates.len()).unwrap_or(u32::MAX),
            }
        };
        Some((i, choice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(node: &'a NodeId, worker: &'a str, skill: u32, load: u32) -> Candidate<'a> {
        Candidate {
            worker,
            node,
            skill,
            load,
            capacity: 2,
        }
    }

    #[test]
    fn best_fit_table() {
        let a = NodeId::new("a");
        let b = NodeId::new("b");
        let lot = Lot {
            name: "t",
            role: "w",
            difficulty: 5,
        };
        // (candidates, expected winner worker)
        let cases: Vec<(Vec<Candidate>, &str)> = vec![
            (vec![cand(&a, "senior", 9, 0), cand(&a, "mid", 6, 0)], "mid"),
            (vec![cand(&a, "senior", 9, 0), cand(&a, "mid", 6, 1)], "senior"),
            (vec![cand(&b, "x", 6, 0), cand(&a, "y", 6, 0)], "y"),
            (vec![cand(&a, "y", 6, 0), cand(&a, "x", 6, 0)], "x"),
            (vec![cand(&a, "only", 5, 1)], "only"),
        ];
        for (cands, want) in cases {
            let (i, choice) = BestFit.choose(&lot, &cands).unwrap();
            assert_eq!(cands[i].worker, want, "{cands:?}");
            let c = &cands[i];
            let (skill, difficulty) = (c.skill, lot.difficulty);
            let expected = match cands.len() {
                1 => Choice::OnlyCapable { skill, difficulty },
                n => Choice::LeastLoaded {
                    load: c.load,
                    capacity: c.capacity,
                    skill,
                    difficulty,
                    among: n as u32,
                },
            };
            assert_eq!(choice, expected);
        }
        assert!(BestFit.choose(&lot, &[]).is_none());
    }

    #[test]
    fn other_bids_are_grouped_by_verdict_with_rivals_first() {
        use crate::task::{BidRecord, BidVerdict::*, Ranked::*};
        let node = NodeId::new("n");
        let bid = |worker: &str, skill, verdict| BidRecord {
            worker: worker.into(),
            node: node.clone(),
            skill,
            load: 0,
            capacity: 1,
            verdict,
        };
        let (held, other) = (TaskId(uuid::Uuid::from_u128(7)), TaskId(uuid::Uuid::from_u128(8)));
        let reason = AwardReason {
            path: BidPath::Announced,
            choice: Choice::Said("mine".into()),
            omitted: 1,
            held: vec![(held, "complex-algorithm".into())].into(),
            queued: false,
        };
        let bids = [
            bid("gone", 9, Gone),
            bid("no", 9, Declined),
            bid("t1", 1, Unqualified),
            bid("t2", 2, Unqualified),
            bid("quiet", 9, Unheard),
            bid("again", 9, SetAside),
            bid("h1", 9, Held { task: held }),
            bid("h2", 9, Held { task: other }),
            bid("b1", 9, Busy),
            bid("b2", 9, Busy),
            bid("b3", 9, Busy),
            bid("tie", 5, Outbid(TieBreak)),
            bid("pol", 5, Outbid(ByPolicy)),
            bid("skilled", 9, Outbid(MoreSkilled)),
            bid("loaded", 5, Outbid(MoreLoaded)),
            bid("me", 5, Won),
        ];
        let text = others(&bids, 4, &reason);
        let want = [
            "tie was as loaded and skilled, and came later by node and name",
            "pol was ranked lower by the award policy",
            "skilled was more skilled, kept free for harder tasks",
            "loaded was more loaded",
            "h1 was held for complex-algorithm",
            "h2 was held for task 00000000-0000-0000-0000-000000000008",
            "b1, b2 and b3 were busy",
            "quiet was set aside until its node is heard from",
            "again was set aside (it refused or failed this task before)",
            "t1 and t2 were not skilled enough (1 and 2 < 4)",
            "no declined",
            "gone left",
            "1 more standing bid could not take it",
        ];
        assert_eq!(text, want.join("; "));
        assert_eq!(
            others(&[bid("me", 5, Won)], 4, &AwardReason { omitted: 0, ..reason }),
            ""
        );
    }

    /// Each reason reads as the reports have always said it.
    #[test]
    fn reasons_render_as_text() {
        let least = Choice::LeastLoaded {
            load: 1,
            capacity: 2,
            skill: 6,
            difficulty: 5,
            among: 3,
        };
        let only = Choice::OnlyCapable {
            skill: 9,
            difficulty: 6,
        };
        let cases = [
            (
                BidPath::Announced,
                least.clone(),
                "least loaded (1/2) with the lowest sufficient skill (6 >= 5) among 3 capable bidders with room",
            ),
            (
                BidPath::Standing,
                only.clone(),
                "standing bid: only capable bidder with room (skill 9 >= difficulty 6)",
            ),
            (
                BidPath::Late { round: 4 },
                only,
                "late bid for round 4, which had closed without an award: \
                 only capable bidder with room (skill 9 >= difficulty 6)",
            ),
            (BidPath::Announced, Choice::Said("mine".into()), "mine"),
        ];
        let queued = AwardReason {
            path: BidPath::Standing,
            choice: Choice::OnlyCapable {
                skill: 3,
                difficulty: 1,
            },
            omitted: 0,
            held: Box::default(),
            queued: true,
        };
        assert_eq!(
            queued.to_string(),
            "standing bid, into its queue (no capable worker had a free slot): \
             only capable bidder with room in its queue (skill 3 >= difficulty 1)"
        );
        for (path, choice, text) in cases {
            let (omitted, held, queued) = (0, Box::default(), false);
            assert_eq!(
                AwardReason {
                    path,
                    choice,
                    omitted,
                    held,
                    queued
                }
                .to_string(),
                text
            );
        }
    }
}
