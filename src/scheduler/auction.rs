//! Award policies: given the bids of one auction, pick the winner and say why.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::task::NodeId;

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
        match self {
            Choice::OnlyCapable { skill, difficulty } => {
                write!(
                    f,
                    "only capable bidder (skill {skill} >= difficulty {difficulty})"
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
                 ({skill} >= {difficulty}) among {among} capable bidders"
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
}

impl fmt::Display for AwardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path {
            BidPath::Announced => {}
            BidPath::Standing => f.write_str("standing bid: ")?,
            BidPath::Late { round } => write!(
                f,
                "late bid for round {round}, which had closed without an award: "
            )?,
        }
        self.choice.fmt(f)
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
                "least loaded (1/2) with the lowest sufficient skill (6 >= 5) among 3 capable bidders",
            ),
            (
                BidPath::Standing,
                only.clone(),
                "standing bid: only capable bidder (skill 9 >= difficulty 6)",
            ),
            (
                BidPath::Late { round: 4 },
                only,
                "late bid for round 4, which had closed without an award: \
                 only capable bidder (skill 9 >= difficulty 6)",
            ),
            (BidPath::Announced, Choice::Said("mine".into()), "mine"),
        ];
        for (path, choice, text) in cases {
            assert_eq!(AwardReason { path, choice }.to_string(), text);
        }
    }
}
