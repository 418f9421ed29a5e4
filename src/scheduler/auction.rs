//! Award policies: given the bids of one auction, pick the winner and say why.

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

/// Decides which bid wins an auction. Implementations must be deterministic:
/// the same lot and candidates give the same answer.
pub trait AwardPolicy: Send + 'static {
    /// Picks a winner among `candidates` (all willing, with `skill >=
    /// difficulty` and a free slot) and explains the choice; `None` leaves the
    /// task unawarded this round.
    fn choose(&self, lot: &Lot<'_>, candidates: &[Candidate<'_>]) -> Option<(usize, String)>;
}

/// The default policy: the least loaded capable bidder, then the lowest skill
/// that suffices (keeping senior workers free for hard tasks), then the node
/// id and worker name, so ties break the same way everywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct BestFit;

impl AwardPolicy for BestFit {
    fn choose(&self, lot: &Lot<'_>, candidates: &[Candidate<'_>]) -> Option<(usize, String)> {
        let (i, c) = candidates.iter().enumerate().min_by(|(_, a), (_, b)| {
            (a.load, a.skill, a.node, a.worker).cmp(&(b.load, b.skill, b.node, b.worker))
        })?;
        let reason = if candidates.len() == 1 {
            format!(
                "only capable bidder (skill {} >= difficulty {})",
                c.skill, lot.difficulty
            )
        } else {
            format!(
                "least loaded ({}/{}) with the lowest sufficient skill ({} >= {}) among {} capable bidders",
                c.load,
                c.capacity,
                c.skill,
                lot.difficulty,
                candidates.len()
            )
        };
        Some((i, reason))
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
            let (i, reason) = BestFit.choose(&lot, &cands).unwrap();
            assert_eq!(cands[i].worker, want, "{cands:?}");
            assert!(!reason.is_empty());
        }
        assert!(BestFit.choose(&lot, &[]).is_none());
    }
}
