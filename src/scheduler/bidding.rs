//! One auction round: announce, collect bids, close (early once every
//! worker of the role answered, or when the bid window ends), then award
//! through the [`AwardPolicy`](super::AwardPolicy) or back off.

use std::time::Duration;

use super::{
    Announcement, Assignment, Bid, Candidate, DepOutput, Lot, Output, Phase, Scheduler, TimerKind, WorkerKey,
    WorkerState,
};
use crate::task::{AuctionRecord, BidRecord, NodeId, TaskError, TaskId, TaskStatus};

impl Scheduler {
    pub(super) fn open_auction(
        &mut self,
        id: TaskId,
        reserved: WorkerKey,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let e = self.tasks.get_mut(&id).expect("auctioned task exists");
        e.round += 1;
        e.bids.clear();
        e.no_bids_since.get_or_insert(now);
        let closes_at = now + self.cfg.bid_window;
        e.phase = Phase::Announced {
            closes_at,
            reserved: Some(reserved),
        };
        self.timers.insert((closes_at, TimerKind::CloseAuction, id));
        self.announce.push(Announcement {
            task: id,
            round: e.round,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            input_len: e.task.input.len() as u64,
        });
        out.push(Output::Changed {
            id,
            status: TaskStatus::Announced,
        });
    }

    pub(super) fn bid(&mut self, node: &NodeId, bid: Bid, now: Duration, out: &mut Vec<Output>) {
        let key = (node.clone(), bid.worker.clone());
        let Some(w) = self.workers.get(&key) else { return };
        let Some(e) = self.tasks.get_mut(&bid.task) else {
            return;
        };
        if bid.round != e.round || w.spec.role != e.task.role {
            return;
        }
        match e.phase {
            Phase::Announced { .. } => {}
            // The auction of this round closed without an award (its bid
            // window ended, or every capable worker was busy).
            Phase::Backoff { .. } | Phase::Queued if e.round > 0 => return self.late_bid(key, bid, out),
            _ => return,
        }
        if e.bids
            .iter()
            .any(|(b, _)| b.node == *node && b.worker == bid.worker)
        {
            return;
        }
        let record = BidRecord {
            worker: bid.worker,
            node: node.clone(),
            // The registered skill is authoritative: a bid cannot inflate it.
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
        };
        e.bids.push((record, bid.willing));
        let role = e.task.role.clone();
        let answered = e.bids.len();
        let expected = self
            .workers
            .keys()
            .filter(|k| self.workers[*k].spec.role == role)
            .count();
        if answered >= expected {
            self.close_auction(bid.task, now, out);
        }
    }

    /// A bid for the round that just closed without an award. A willing
    /// worker that can take the task and has an unreserved free slot wins at
    /// once, instead of the task waiting for its backoff and a new round.
    fn late_bid(&mut self, key: WorkerKey, bid: Bid, out: &mut Vec<Output>) {
        let w = &self.workers[&key];
        let e = &self.tasks[&bid.task];
        // The worker that refused the task cannot take it back early.
        let refused = e.refused_by.as_ref() == Some(&key);
        if !bid.willing || refused || w.spec.skill < e.task.difficulty || w.free() == 0 {
            return;
        }
        let lot = Lot {
            name: &e.task.name,
            role: &e.task.role,
            difficulty: e.task.difficulty,
        };
        let only = Candidate {
            worker: &key.1,
            node: &key.0,
            skill: w.spec.skill,
            load: w.load,
            capacity: w.spec.capacity,
        };
        let Some((0, reason)) = self.policy.choose(&lot, &[only]) else {
            return;
        };
        let reason = format!(
            "late bid for round {}, which had closed without an award: {reason}",
            e.round
        );
        let record = BidRecord {
            worker: bid.worker,
            node: key.0.clone(),
            skill: w.spec.skill,
            load: bid.load,
            capacity: w.spec.capacity,
        };
        let e = self.tasks.get_mut(&bid.task).expect("checked above");
        e.bids.clear();
        e.bids.push((record, true));
        self.award(bid.task, key, reason, out);
    }

    pub(super) fn close_auction(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        let e = self.tasks.get_mut(&id).expect("auction task exists");
        let Phase::Announced { reserved, .. } = &e.phase else {
            return;
        };
        let reserved = reserved.clone();
        e.phase = Phase::Queued; // placeholder: award or no_award sets the real phase
        self.release(&reserved);
        let e = &self.tasks[&id];
        let lot = Lot {
            name: &e.task.name,
            role: &e.task.role,
            difficulty: e.task.difficulty,
        };
        let mut candidates: Vec<Candidate> = e
            .bids
            .iter()
            .filter(|(_, willing)| *willing)
            .map(|(b, _)| b)
            .filter_map(|b| {
                // Judge the worker as registered now, not as it was when it bid.
                let w = self.workers.get(&(b.node.clone(), b.worker.clone()))?;
                let able = w.spec.role == lot.role && w.spec.skill >= lot.difficulty;
                (able && w.load < w.spec.capacity).then_some(Candidate {
                    worker: &b.worker,
                    node: &b.node,
                    skill: w.spec.skill,
                    load: w.load,
                    capacity: w.spec.capacity,
                })
            })
            .collect();
        if let Some((node, worker)) = &e.refused_by {
            let refuser = |c: &Candidate| c.node == node && c.worker == worker;
            if candidates.iter().any(|c| !refuser(c)) {
                candidates.retain(|c| !refuser(c));
            }
        }
        let choice = self
            .policy
            .choose(&lot, &candidates)
            .filter(|(i, _)| *i < candidates.len())
            .map(|(i, reason)| {
                (
                    (candidates[i].node.clone(), candidates[i].worker.to_string()),
                    reason,
                )
            });
        match choice {
            Some((key, reason)) => self.award(id, key, reason, out),
            None => self.no_award(id, now, out),
        }
    }

    fn award(&mut self, id: TaskId, key: WorkerKey, reason: String, out: &mut Vec<Output>) {
        let deps: Vec<DepOutput> = self.tasks[&id]
            .task
            .dependencies
            .iter()
            .filter_map(|d| {
                let dep = self.tasks.get(d)?;
                Some(DepOutput {
                    id: *d,
                    name: dep.task.name.clone(),
                    output: dep.output.clone()?,
                })
            })
            .collect();
        if let Some(w) = self.workers.get_mut(&key) {
            w.load += 1;
        }
        let timeout = self.run_timeout(&self.tasks[&id].task);
        let e = self.tasks.get_mut(&id).expect("awarded task exists");
        e.attempts += 1;
        e.no_bids_since = None;
        e.refused_by = None;
        let bids: Vec<BidRecord> = std::mem::take(&mut e.bids)
            .into_iter()
            .filter(|(_, willing)| *willing)
            .map(|(b, _)| b)
            .collect();
        e.auction = Some(AuctionRecord {
            bids,
            reason,
            rounds: e.round,
        });
        e.worker = Some(key.clone());
        e.phase = Phase::Assigned { worker: key.clone() };
        self.assign.entry(key.0.clone()).or_default().push(Assignment {
            task: id,
            attempt: e.attempts,
            worker: key.1,
            name: e.task.name.clone(),
            role: e.task.role.clone(),
            difficulty: e.task.difficulty,
            input: e.task.input.clone(),
            deps,
            timeout_ms: timeout.map(|d| d.as_millis() as u64),
        });
        out.push(Output::Changed {
            id,
            status: TaskStatus::Assigned,
        });
    }

    /// An auction closed without a winner.
    fn no_award(&mut self, id: TaskId, now: Duration, out: &mut Vec<Output>) {
        let e = &self.tasks[&id];
        let (role, difficulty) = (e.task.role.clone(), e.task.difficulty);
        let capable: Vec<&WorkerState> = self
            .workers
            .values()
            .filter(|w| w.spec.role == role && w.spec.skill >= difficulty)
            .collect();
        if capable.is_empty() {
            self.park(id, now);
            out.push(Output::Changed {
                id,
                status: TaskStatus::Pending,
            });
            return;
        }
        if capable.iter().all(|w| w.load >= w.spec.capacity) {
            // Everyone able is busy: wait in line for a slot, no deadline.
            self.tasks.get_mut(&id).expect("exists").no_bids_since = None;
            self.requeue(id, now, out);
            return;
        }
        let waited = now.saturating_sub(e.no_bids_since.unwrap_or(e.ready_at));
        if waited >= self.cfg.no_worker_timeout {
            let err = TaskError::NoBids {
                role,
                difficulty,
                waited_ms: waited.as_millis() as u64,
            };
            self.fail(id, err, now, out);
            return;
        }
        self.back_off(id, self.retry_delay(e.round), now, out);
    }
}
