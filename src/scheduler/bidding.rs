//! One auction round: announce, collect bids, close (early once every
//! worker of the role answered, or when the bid window ends), then award
//! through the [`AwardPolicy`](super::AwardPolicy) or back off.

use std::time::Duration;

use super::state::{Award, Phase, SeenBid, Slot, TimerKind, WorkerId};
use super::{Announcement, Assignment, Bid, Candidate, DepOutput, Lot, Output, Scheduler};
use crate::task::{NodeId, TaskError, TaskStatus};

impl Scheduler {
    pub(super) fn open_auction(
        &mut self,
        slot: Slot,
        reserved: WorkerId,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let e = &mut self.tasks[slot];
        e.round += 1;
        e.bids.clear();
        let closes_at = now + self.cfg.bid_window;
        e.phase = Phase::Announced {
            closes_at,
            reserved: Some(reserved),
        };
        self.timers.insert((closes_at, TimerKind::CloseAuction, slot));
        self.announce.push(Announcement {
            task: e.task.id,
            round: e.round,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            input_len: e.task.input.len() as u64,
        });
        self.changed(slot, TaskStatus::Announced, out);
    }

    pub(super) fn bid(&mut self, node: &NodeId, bid: Bid, now: Duration, out: &mut Vec<Output>) {
        let Some(id) = self.worker_id(node, &bid.worker) else {
            return;
        };
        let Some(&slot) = self.index.get(&bid.task) else {
            return;
        };
        let w = &self.workers[id];
        let e = &mut self.tasks[slot];
        if w.role != e.role {
            return;
        }
        let current = bid.round == e.round;
        match e.phase {
            Phase::Announced { .. } if current => {}
            // A willing bid that missed the previous round still says the
            // worker wants the task: on a slow network, rounds would
            // otherwise keep closing just before their bids arrive.
            Phase::Announced { .. } if bid.willing && bid.round > 0 && bid.round + 1 == e.round => {}
            // The auction of this round closed without an award (its bid
            // window ended, or every capable worker was busy).
            Phase::Backoff { .. } | Phase::Queued if current && e.round > 0 => {
                return self.late_bid(slot, id, bid, out)
            }
            _ => return,
        }
        if e.bids.iter().any(|b| b.worker == id) {
            return;
        }
        e.bids.push(SeenBid {
            worker: id,
            // The registered skill is authoritative: a bid cannot inflate it.
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
            willing: bid.willing,
        });
        if e.bids.len() >= self.roles[e.role].workers.len() {
            self.close_auction(slot, now, out);
        }
    }

    /// A bid for the round that just closed without an award. A willing
    /// worker that can take the task and has an unreserved free slot wins at
    /// once, instead of the task waiting for its backoff and a new round.
    fn late_bid(&mut self, slot: Slot, id: WorkerId, bid: Bid, out: &mut Vec<Output>) {
        let w = &self.workers[id];
        let e = &self.tasks[slot];
        // The worker that refused the task cannot take it back early.
        let refused = e.refused_by == Some(id);
        if !bid.willing || refused || w.spec.skill < e.task.difficulty || w.free() == 0 {
            return;
        }
        let lot = Lot {
            name: &e.task.name,
            role: &e.task.role,
            difficulty: e.task.difficulty,
        };
        let Some((0, reason)) = self.policy.choose(&lot, &[self.candidate(id)]) else {
            return;
        };
        let reason = format!(
            "late bid for round {}, which had closed without an award: {reason}",
            e.round
        );
        let seen = SeenBid {
            worker: id,
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
            willing: true,
        };
        let e = &mut self.tasks[slot];
        e.bids.clear();
        e.bids.push(seen);
        self.award(slot, id, reason, out);
    }

    /// A registered worker as the award policy sees it.
    fn candidate(&self, id: WorkerId) -> Candidate<'_> {
        let w = &self.workers[id];
        Candidate {
            worker: &w.spec.name,
            node: &w.node,
            skill: w.spec.skill,
            load: w.load,
            capacity: w.spec.capacity,
        }
    }

    pub(super) fn close_auction(&mut self, slot: Slot, now: Duration, out: &mut Vec<Output>) {
        let e = &mut self.tasks[slot];
        let Phase::Announced { closes_at, reserved } = e.phase else {
            return;
        };
        e.phase = Phase::Queued; // placeholder: award or no_award sets the real phase
        self.timers.remove(&(closes_at, TimerKind::CloseAuction, slot));
        self.release(reserved);
        let e = &self.tasks[slot];
        // Judge each bidder as registered now, not as it was when it bid.
        let mut able: Vec<WorkerId> = e
            .bids
            .iter()
            .filter(|b| {
                let w = &self.workers[b.worker];
                let fits = w.present && w.role == e.role && w.spec.skill >= e.task.difficulty;
                b.willing && fits && w.load < w.spec.capacity
            })
            .map(|b| b.worker)
            .collect();
        // Prefer room that no other open auction holds: taking a slot
        // reserved elsewhere would leave that auction without its worker
        // while this one's own worker sits idle. Take such a slot only when
        // nothing else is left.
        if able.iter().any(|&w| self.workers[w].free() > 0) {
            able.retain(|&w| self.workers[w].free() > 0);
        }
        if let Some(refuser) = e.refused_by {
            if able.iter().any(|&w| w != refuser) {
                able.retain(|&w| w != refuser);
            }
        }
        let candidates: Vec<Candidate> = able.iter().map(|&w| self.candidate(w)).collect();
        let lot = Lot {
            name: &e.task.name,
            role: &e.task.role,
            difficulty: e.task.difficulty,
        };
        let choice = self.policy.choose(&lot, &candidates);
        match choice.filter(|(i, _)| *i < able.len()) {
            Some((i, reason)) => self.award(slot, able[i], reason, out),
            None => self.no_award(slot, closes_at, now, out),
        }
    }

    fn award(&mut self, slot: Slot, id: WorkerId, reason: String, out: &mut Vec<Output>) {
        let e = &self.tasks[slot];
        let deps: Vec<DepOutput> = e
            .deps
            .iter()
            .filter_map(|&d| {
                let dep = &self.tasks[d];
                Some(DepOutput {
                    id: dep.task.id,
                    name: dep.task.name.clone(),
                    output: dep.output.clone()?,
                })
            })
            .collect();
        let timeout_ms = self.run_timeout(&e.task).map(|d| d.as_millis() as u64);
        let w = &mut self.workers[id];
        w.load += 1;
        let node = w.node.clone();
        let worker = w.spec.name.clone();
        let e = &mut self.tasks[slot];
        e.attempts += 1;
        e.no_bids_for = Duration::ZERO;
        e.refused_by = None;
        let bids = std::mem::take(&mut e.bids)
            .into_iter()
            .filter(|b| b.willing)
            .collect();
        e.award = Some(Box::new(Award {
            bids,
            reason: reason.into_boxed_str(),
            rounds: e.round,
        }));
        e.worker = Some(id);
        e.phase = Phase::Assigned { worker: id };
        self.assign.entry(node).or_default().push(Assignment {
            task: e.task.id,
            attempt: e.attempts,
            worker,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            input: e.task.input.clone(),
            deps,
            timeout_ms,
        });
        self.changed(slot, TaskStatus::Assigned, out);
    }

    /// An auction closed without a winner.
    fn no_award(&mut self, slot: Slot, closes_at: Duration, now: Duration, out: &mut Vec<Output>) {
        let e = &self.tasks[slot];
        let difficulty = e.task.difficulty;
        let capable = self.roles[e.role].workers.iter().map(|&w| &self.workers[w]);
        let capable: Vec<_> = capable.filter(|w| w.spec.skill >= difficulty).collect();
        if capable.is_empty() {
            self.park(slot, now);
            self.changed(slot, TaskStatus::Pending, out);
            return;
        }
        if capable.iter().all(|w| w.load >= w.spec.capacity) {
            // Everyone able is busy: wait in line for a slot, no deadline.
            self.tasks[slot].no_bids_for = Duration::ZERO;
            self.requeue(slot, now, out);
            return;
        }
        // This round lasted from its announcement until now.
        let opened = closes_at.saturating_sub(self.cfg.bid_window);
        let waited = e.no_bids_for + now.saturating_sub(opened);
        if waited >= self.cfg.no_worker_timeout {
            let err = TaskError::NoBids {
                role: e.task.role.clone(),
                difficulty,
                waited_ms: waited.as_millis() as u64,
            };
            self.fail(slot, err, now, out);
            return;
        }
        let delay = self.retry_delay(e.round);
        self.tasks[slot].no_bids_for = waited + delay;
        self.back_off(slot, delay, now, out);
    }
}
