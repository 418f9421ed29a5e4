//! One auction round: announce, collect bids, close (early once every
//! worker of the role answered, or when the bid window ends), then award
//! through the [`AwardPolicy`](super::AwardPolicy) or back off.

use std::time::Duration;

use super::events::{BidSeen, Event};
use super::state::{End, SeenBid, Slot, Stage, TimerKind, WorkerId};
use super::{
    Announcement, Assignment, AwardReason, Bid, BidPath, Candidate, Choice, DepOutput, Lot, Scheduler,
};
use crate::task::{BidVerdict, NodeId, Ranked, TaskError, TaskId, TaskStatus, Trigger};

/// Most standing bids an award records beyond the candidates: the ones that
/// could not take the task (busy, held, set aside). The rest are counted in
/// [`AwardReason::omitted`], so that an award among hundreds of standing
/// workers does not write hundreds of bids into the ledger.
pub(super) const MAX_EXCLUDED_STANDING: usize = 8;

impl Scheduler {
    pub(super) fn open_auction(&mut self, slot: Slot, reserved: WorkerId, now: Duration) {
        self.leave_auction(slot);
        let e = &mut self.tasks[slot];
        e.soft.round += 1;
        let closes_at = now + self.cfg.bid_window;
        e.soft.stage = Stage::Announced {
            closes_at,
            reserved: Some(reserved),
        };
        self.set_timer(closes_at, TimerKind::CloseAuction, slot);
        let e = &self.tasks[slot];
        self.announce.push(Announcement {
            task: e.task.id,
            round: e.soft.round,
            name: e.task.name.clone(),
            role: self.roles[e.role].name.to_string(),
            difficulty: e.task.difficulty,
            input_len: e.task.input.len() as u64,
        });
        self.changed(slot, TaskStatus::Announced);
    }

    pub(super) fn bid(&mut self, node: &NodeId, bid: Bid, now: Duration) {
        let Some(id) = self.worker_id(node, &bid.worker) else {
            return;
        };
        let Some(slot) = self.slot(&bid.task) else { return };
        let w = &self.workers[id];
        let e = &mut self.tasks[slot];
        if w.role != e.role || !e.phase.awaits_award() {
            return;
        }
        let round = e.soft.round;
        let current = bid.round == round;
        match e.soft.stage {
            Stage::Announced { .. } if current => {}
            // A willing bid that missed the previous round still says the
            // worker wants the task: on a slow network, rounds would
            // otherwise keep closing just before their bids arrive.
            Stage::Announced { .. } if bid.willing && bid.round > 0 && bid.round + 1 == round => {}
            // The auction of this round closed without an award (its bid
            // window ended, or every capable worker was busy).
            Stage::Backoff { .. } | Stage::Queued { .. } if current && round > 0 => {
                return self.late_bid(slot, id, bid, now)
            }
            _ => return,
        }
        if e.soft.bids.iter().any(|b| b.worker == id) {
            return;
        }
        e.soft.bids.push(SeenBid {
            worker: id,
            // The registered skill is authoritative: a bid cannot inflate it.
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
            willing: bid.willing,
        });
        if self.answered_by_all(slot) {
            self.close_auction(slot, now);
        }
    }

    /// Every worker registered for the task's role has answered its
    /// auction (bids of workers that left or changed role since do not
    /// count; they are rare, so they are only looked for when the count of
    /// bids says every worker may have answered).
    fn answered_by_all(&self, slot: Slot) -> bool {
        let e = &self.tasks[slot];
        let n = self.roles[e.role].workers.len();
        if e.soft.bids.len() < n {
            return false;
        }
        let current = |b: &&SeenBid| {
            let w = &self.workers[b.worker];
            w.present && w.role == e.role
        };
        e.soft.bids.iter().filter(current).count() >= n
    }

    /// A bid for the round that just closed without an award. A willing
    /// worker that can take the task and has an unreserved free slot wins at
    /// once, instead of the task waiting for its backoff and a new round.
    fn late_bid(&mut self, slot: Slot, id: WorkerId, bid: Bid, now: Duration) {
        let w = &self.workers[id];
        let e = &self.tasks[slot];
        // The worker that refused the task, or whose attempt at it just
        // failed or was lost, cannot take it back early: the next round lets
        // another capable worker win first.
        let refused = e.soft.refused_by == Some(id) || self.last_failed_worker(slot) == Some(id);
        if !bid.willing || refused || w.spec.skill < e.task.difficulty || w.free() == 0 {
            return;
        }
        let lot = Lot {
            name: &e.task.name,
            role: &self.roles[e.role].name,
            difficulty: e.task.difficulty,
        };
        let Some((0, choice)) = self.policy.choose(&lot, &[self.candidate(id)]) else {
            return;
        };
        let reason = AwardReason {
            path: BidPath::Late { round: e.soft.round },
            choice,
            omitted: 0,
            held: Box::default(),
            queued: false,
        };
        let seen = BidSeen {
            worker: id.0,
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
            verdict: BidVerdict::Won,
        };
        self.tasks[slot].soft.bids.clear();
        self.award(slot, id, reason, vec![seen], now);
    }

    /// Awards a queued task at once from the standing bids of its role (see
    /// [`crate::worker::Worker::standing_bid`]): among the workers whose
    /// standing bid and skill reach the task's difficulty and that have a
    /// free slot (or, when none has, room in their queue), the award policy
    /// picks, as in an auction. Standing bids are set
    /// aside for the worker that refused the task or whose attempt at it
    /// failed (it may still win the open auction), for workers whose last
    /// award was lost or refused until their node speaks again, and for
    /// nodes a new admin has not heard from yet. True when the task was
    /// awarded (or ended: its inputs were too large).
    pub(super) fn standing_award(&mut self, slot: Slot, now: Duration) -> bool {
        let e = &self.tasks[slot];
        let difficulty = e.task.difficulty;
        let avoid = [e.soft.refused_by, self.last_failed_worker(slot)];
        let silent = |node| self.takeover.as_ref().is_some_and(|t| t.silent.contains(node));
        // The standing bids that reach the task, and why each that cannot
        // take it cannot (`None`: a candidate).
        let mut standing: Vec<(WorkerId, Option<BidVerdict>)> = Vec::new();
        for &id in &self.roles[e.role].workers {
            let w = &self.workers[id];
            if !(w.present && w.spec.standing.is_some_and(|d| d >= difficulty)) {
                continue;
            }
            let verdict = if avoid.contains(&Some(id)) {
                Some(BidVerdict::SetAside)
            } else if !w.stands_for(difficulty) || silent(&w.node) {
                Some(BidVerdict::Unheard)
            } else if w.room_unasked() == 0 {
                Some(self.no_room(id))
            } else {
                None
            };
            standing.push((id, verdict));
        }
        // A free slot first; a queue only when no fitting worker has one.
        let free = |&(w, v): &(WorkerId, Option<BidVerdict>)| v.is_none() && self.workers[w].free() > 0;
        let queued = !standing.iter().any(free);
        if !queued {
            for (w, verdict) in standing.iter_mut() {
                if verdict.is_none() && self.workers[*w].free() == 0 {
                    *verdict = Some(self.no_room(*w));
                }
            }
        }
        let able: Vec<WorkerId> = standing
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|&(w, _)| w)
            .collect();
        if able.is_empty() {
            return false;
        }
        let candidates: Vec<Candidate> = able.iter().map(|&w| self.candidate(w)).collect();
        let lot = Lot {
            name: &e.task.name,
            role: &self.roles[e.role].name,
            difficulty,
        };
        let Some((i, choice)) = self
            .policy
            .choose(&lot, &candidates)
            .filter(|(i, _)| *i < able.len())
        else {
            return false;
        };
        let winner = able[i];
        // The standing bids are the bids this award saw.
        let mut bids = Vec::with_capacity(standing.len().min(able.len() + MAX_EXCLUDED_STANDING));
        let (mut excluded, mut omitted) = (0, 0u32);
        for &(id, verdict) in &standing {
            let verdict = match verdict {
                Some(_) if excluded == MAX_EXCLUDED_STANDING => {
                    omitted += 1;
                    continue;
                }
                Some(v) => {
                    excluded += 1;
                    v
                }
                None => self.rival(id, winner, &choice),
            };
            let w = &self.workers[id];
            bids.push(BidSeen {
                worker: id.0,
                skill: w.spec.skill,
                load: w.load,
                capacity: w.spec.capacity,
                verdict,
            });
        }
        self.tasks[slot].soft.bids.clear();
        let reason = AwardReason {
            path: BidPath::Standing,
            choice,
            omitted,
            held: self.held_names(&bids),
            queued,
        };
        self.award(slot, winner, reason, bids, now);
        !self.tasks[slot].phase.awaits_award()
    }

    /// Why worker `id`, capable and willing, has no room for a task: every
    /// slot runs or stops a task, or a free one is held for another open
    /// auction (named).
    fn no_room(&self, id: WorkerId) -> BidVerdict {
        let w = &self.workers[id];
        match w.reserved.first() {
            Some(&held) if w.busy() < w.spec.capacity => BidVerdict::Held {
                task: self.tasks[held].task.id,
            },
            _ => BidVerdict::Busy,
        }
    }

    /// The names of the tasks that hold slots of `bids` marked
    /// [`BidVerdict::Held`], for the award's reason.
    fn held_names(&self, bids: &[BidSeen]) -> Box<[(TaskId, Box<str>)]> {
        let mut held: Vec<(TaskId, Box<str>)> = Vec::new();
        for b in bids {
            if let BidVerdict::Held { task } = b.verdict {
                if !held.iter().any(|(t, _)| *t == task) {
                    let name = self
                        .slot(&task)
                        .map_or_else(Default::default, |s| self.tasks[s].task.name.as_str().into());
                    held.push((task, name));
                }
            }
        }
        held.into_boxed_slice()
    }

    /// How a candidate that did not win ranked against `winner`, as the
    /// policy's `choice` explains it.
    fn rival(&self, id: WorkerId, winner: WorkerId, choice: &Choice) -> BidVerdict {
        if id == winner {
            return BidVerdict::Won;
        }
        let (r, w) = (&self.workers[id], &self.workers[winner]);
        let ranked = match choice {
            Choice::LeastLoaded { .. } if r.load > w.load => Ranked::MoreLoaded,
            Choice::LeastLoaded { .. } if r.load == w.load && r.spec.skill > w.spec.skill => {
                Ranked::MoreSkilled
            }
            Choice::LeastLoaded { .. } if r.load == w.load && r.spec.skill == w.spec.skill => {
                Ranked::TieBreak
            }
            _ => Ranked::ByPolicy,
        };
        BidVerdict::Outbid(ranked)
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

    pub(super) fn close_auction(&mut self, slot: Slot, now: Duration) {
        let e = &mut self.tasks[slot];
        let Stage::Announced { closes_at, reserved } = e.soft.stage else {
            return;
        };
        // The bids stay for the award; the stage is left by hand.
        e.soft.stage = Stage::Idle;
        self.clear_timer(closes_at, TimerKind::CloseAuction, slot);
        self.release(reserved, slot);
        let e = &self.tasks[slot];
        // Judge each bidder as registered now, not as it was when it bid.
        // (`verdict` says why each bid that is not a candidate is not.)
        let mut able: Vec<WorkerId> = e
            .soft
            .bids
            .iter()
            .filter(|b| {
                let w = &self.workers[b.worker];
                let fits = w.present && w.role == e.role && w.spec.skill >= e.task.difficulty;
                b.willing && fits && w.busy() < w.spec.capacity
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
        // The worker that refused the last award, or whose attempt failed or
        // was lost, wins only when no other capable worker bids.
        for avoid in [e.soft.refused_by, self.last_failed_worker(slot)]
            .into_iter()
            .flatten()
        {
            if able.iter().any(|&w| w != avoid) {
                able.retain(|&w| w != avoid);
            }
        }
        let candidates: Vec<Candidate> = able.iter().map(|&w| self.candidate(w)).collect();
        let lot = Lot {
            name: &e.task.name,
            role: &self.roles[e.role].name,
            difficulty: e.task.difficulty,
        };
        let choice = self.policy.choose(&lot, &candidates);
        match choice.filter(|(i, _)| *i < able.len()) {
            Some((i, choice)) => {
                let winner = able[i];
                let bids = e.soft.bids.iter().map(|b| BidSeen {
                    worker: b.worker.0,
                    skill: b.skill,
                    load: b.load,
                    capacity: b.capacity,
                    verdict: match able.contains(&b.worker) {
                        true => self.rival(b.worker, winner, &choice),
                        false => self.verdict(slot, b),
                    },
                });
                let bids: Vec<BidSeen> = bids.collect();
                let reason = AwardReason {
                    path: BidPath::Announced,
                    choice,
                    omitted: 0,
                    held: self.held_names(&bids),
                    queued: false,
                };
                self.award(slot, winner, reason, bids, now)
            }
            None => self.no_award(slot, closes_at, now),
        }
    }

    /// Why a bid in the auction of `slot` was not a candidate, checked in the
    /// order `close_auction` filters.
    fn verdict(&self, slot: Slot, b: &SeenBid) -> BidVerdict {
        let e = &self.tasks[slot];
        let w = &self.workers[b.worker];
        if !w.present || w.role != e.role {
            BidVerdict::Gone
        } else if !b.willing {
            BidVerdict::Declined
        } else if w.spec.skill < e.task.difficulty {
            BidVerdict::Unqualified
        } else if w.busy() >= w.spec.capacity || w.free() == 0 {
            self.no_room(b.worker)
        } else {
            // Capable and free, but it refused the task or the task's last
            // attempt failed on it, and another could take it.
            BidVerdict::SetAside
        }
    }

    /// The worker of the task's last attempt, when that attempt failed, timed
    /// out or was lost: a retry prefers another worker.
    fn last_failed_worker(&self, slot: Slot) -> Option<WorkerId> {
        let last = self.tasks[slot].history.last()?;
        let failed = matches!(
            last.end,
            End::Failed { .. } | End::TimedOut { .. } | End::Lost { .. }
        );
        failed.then_some(last.worker)
    }

    /// Awards the task of `slot` to worker `id`, recording `bids` (each with
    /// its verdict) and `reason` in the award event.
    fn award(&mut self, slot: Slot, id: WorkerId, reason: AwardReason, bids: Vec<BidSeen>, now: Duration) {
        let Some(deps) = self.dep_outcomes(slot) else {
            return;
        };
        let e = &self.tasks[slot];
        let size = e.task.input.len() + deps.iter().map(dep_size).sum::<usize>();
        if size > self.cfg.max_award {
            let max = self.cfg.max_award;
            return self.end_failed(slot, TaskError::InputsTooLarge { size, max }, now);
        }
        let attempt = e.awards + 1;
        let event = Event::AttemptAwarded {
            at_ms: Self::ms(now),
            task: e.task.id,
            attempt,
            worker: id.0,
            bids,
            reason,
            rounds: e.soft.round,
        };
        self.emit(event);
        let soft = &mut self.tasks[slot].soft;
        soft.no_bids_for = Duration::ZERO;
        soft.refused_by = None;
        self.start_lease(slot, attempt, now);
        let e = &self.tasks[slot];
        let w = &self.workers[id];
        self.assign.entry(w.node.clone()).or_default().push(Assignment {
            task: e.task.id,
            attempt,
            worker: w.spec.name.clone(),
            name: e.task.name.clone(),
            role: self.roles[e.role].name.to_string(),
            difficulty: e.task.difficulty,
            input: e.task.input.clone(),
            deps,
            timeout_ms: e.task.timeout_ms,
        });
    }

    /// What the task's worker gets of its dependencies: the outputs, and for
    /// a fallback or cleanup task the errors of those that did not complete.
    fn dep_outcomes(&self, slot: Slot) -> Option<Vec<DepOutput>> {
        let e = &self.tasks[slot];
        let all = e.task.trigger != Trigger::AllSuccess;
        let deps = e.deps.iter().filter_map(|&d| {
            let dep = &self.tasks[d];
            let outcome = match dep.output() {
                Some(o) => Ok(o.clone()),
                None if all => Err(self.error_of(dep)?.to_string()),
                None => return None,
            };
            Some(DepOutput {
                id: dep.task.id,
                name: dep.task.name.clone(),
                outcome,
            })
        });
        Some(deps.collect())
    }

    /// An auction closed without a winner.
    fn no_award(&mut self, slot: Slot, closes_at: Duration, now: Duration) {
        let e = &self.tasks[slot];
        let difficulty = e.task.difficulty;
        let capable = self.roles[e.role].workers.iter().map(|&w| (w, &self.workers[w]));
        let capable: Vec<_> = capable.filter(|(_, w)| w.spec.skill >= difficulty).collect();
        if capable.is_empty() {
            self.park(slot, now);
            self.changed(slot, TaskStatus::Pending);
            return;
        }
        let full = |w: &super::state::WorkerState| w.busy() >= w.spec.capacity;
        let answered = |id: WorkerId| e.soft.bids.iter().any(|b| b.worker == id);
        // Everyone able is busy — or busy but for workers that did not
        // answer at all (gone, paused or cut off: their lease or their
        // disconnection drops them soon): wait in line for a slot, no
        // deadline. Failing here would fail work a busy worker will take.
        let some_full = capable.iter().any(|(_, w)| full(w));
        if capable
            .iter()
            .all(|&(id, w)| full(w) || (some_full && !answered(id)))
        {
            self.tasks[slot].soft.no_bids_for = Duration::ZERO;
            self.requeue(slot, now);
            return;
        }
        // This round lasted from its announcement until now.
        let opened = closes_at.saturating_sub(self.cfg.bid_window);
        let waited = e.soft.no_bids_for + now.saturating_sub(opened);
        if waited >= self.cfg.no_worker_timeout {
            let err = TaskError::NoBids {
                role: self.roles[e.role].name.to_string(),
                difficulty,
                waited_ms: waited.as_millis() as u64,
            };
            return self.end_failed(slot, err, now);
        }
        let delay = self.auction_delay(e.soft.round);
        self.tasks[slot].soft.no_bids_for = waited + delay;
        self.back_off(slot, delay, now);
    }
}

fn dep_size(d: &DepOutput) -> usize {
    match &d.outcome {
        Ok(p) => p.len(),
        Err(e) => e.len(),
    }
}
