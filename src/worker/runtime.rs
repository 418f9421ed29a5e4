//! The worker runtime: which attempts run on this node.
//!
//! Every accepted attempt is held under its task id (a node runs at most one
//! attempt of a task at a time, so the id is enough; the attempt number is
//! checked on every lookup) until its future really ends. It holds a worker
//! slot for that whole time, also while a cancelled attempt winds down, so a
//! worker never runs more than [`Worker::slots`] futures at once.
//!
//! Awards beyond a worker's free slots wait in its queue (up to
//! [`RuntimeConfig::queue`], in award order) and start the moment a slot
//! frees, without a round trip to the admin: pipelining, as Celery's
//! prefetch and Ray's worker leases do.
//!
//! A queued award starts only while its lease is known to hold: the admin
//! awards it again elsewhere once its lease ends unrenewed (a node paused
//! or cut off for longer), so a node that wakes from such a pause must not
//! start it. Each queued award is valid for three quarters of the lease
//! from its arrival, and each renewal answered before that runs out
//! extends it to three quarters of a lease from when that renewal was sent
//! ([`WorkerRuntime::renewed`]); an award past its validity is dropped
//! unstarted ([`WorkerRuntime::expire_queued`], and at the moment it would
//! start). The admin awards it again when its lease ends, without counting
//! a lost attempt. The node assumes the admin's lease is its own
//! [`SchedulerConfig::lease`](crate::scheduler::SchedulerConfig::lease).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::{attempt, Cancel, Offer, Worker};
use crate::protocol::AssignAnswer;
use crate::scheduler::{Announcement, Assignment, Bid, Report};
use crate::task::{TaskId, WorkerSpec};

/// A finished attempt, ready to be reported.
pub(crate) type Finished = Report;

/// Limits the runtime puts on every attempt it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Largest output an attempt may return, in bytes (default 8 MiB). A
    /// larger output fails the attempt permanently, with both sizes in the
    /// message. Keep it under the wire's frame limit, or the report cannot
    /// be sent.
    pub max_output: usize,
    /// How long an attempt asked to stop (cancelled, or past its execution
    /// timeout) may take to return before its future is dropped (default
    /// 5 s). Dropping a command worker's future kills its process group.
    pub kill_grace: Duration,
    /// Awarded tasks each worker may hold waiting beyond its slots
    /// (default 8): they start as slots free, with no round trip to the
    /// admin. The admin fills queues only from standing bids, and only when
    /// no worker whose standing bid fits has a free slot; renewals tell it
    /// which attempts wait, so that its execution-timeout backstop counts
    /// from their start. 0 turns pipelining off.
    pub queue: u32,
}

/// Default [`RuntimeConfig::queue`].
pub const DEFAULT_QUEUE: u32 = 8;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_output: 8 << 20,
            kill_grace: Duration::from_secs(5),
            queue: DEFAULT_QUEUE,
        }
    }
}

/// One hosted worker and the attempts it holds.
struct Slot {
    worker: Arc<dyn Worker>,
    /// Attempts whose futures have not ended, cancelled ones included.
    load: u32,
    /// Awards waiting for a free slot, oldest first.
    queue: VecDeque<Queued>,
}

/// An award waiting for a free slot.
struct Queued {
    award: Assignment,
    /// Until when it may start (see the module documentation).
    valid_until: Instant,
}

/// An attempt whose future has not ended yet.
struct Held {
    /// Index of its worker in `slots`.
    worker: usize,
    attempt: u32,
    cancel: Cancel,
    /// Set by [`WorkerRuntime::cancel`]: its report will be dropped.
    cancelled: bool,
    /// Its task in the join set, to find it when the task fails to join;
    /// `None` while it waits in its worker's queue.
    id: Option<Id>,
}

/// Runs the workers hosted by one node: answers announcements with bids,
/// accepts or refuses awards, and runs accepted attempts in a [`JoinSet`]
/// that is aborted when the runtime is dropped (which drops every running
/// `process` future, killing command workers' process groups).
pub(crate) struct WorkerRuntime {
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    /// Every attempt whose future has not ended, by task.
    held: HashMap<TaskId, Held>,
    running: JoinSet<Finished>,
    /// Reports of queued attempts cancelled before they started, to hand
    /// out before any other.
    stopped: VecDeque<Finished>,
    cfg: RuntimeConfig,
    /// Set while shutting down: no new bids, awards refused.
    draining: bool,
    /// How long a queued award stays valid from its arrival or from the
    /// sending of a renewal answered in time: three quarters of the lease.
    valid_for: Duration,
    /// Set when a queued award started, until taken.
    started_from_queue: bool,
}

impl WorkerRuntime {
    /// A runtime for these workers with the default [`RuntimeConfig`].
    ///
    /// Errors: [`crate::Error::Config`] when two workers share a name or a
    /// name or role fails [`crate::task::check_name`].
    #[cfg(test)]
    pub(crate) fn new(workers: Vec<Arc<dyn Worker>>) -> Result<Self, crate::Error> {
        Self::with_config(workers, RuntimeConfig::default())
    }

    /// A runtime for these workers with these limits; errors as
    /// [`WorkerRuntime::new`].
    pub(crate) fn with_config(
        workers: Vec<Arc<dyn Worker>>,
        cfg: RuntimeConfig,
    ) -> Result<Self, crate::Error> {
        let mut by_name = HashMap::new();
        for (i, w) in workers.iter().enumerate() {
            if by_name.insert(w.name().to_string(), i).is_some() {
                let name = w.name();
                return Err(crate::Error::Config(format!("two workers are named {name:?}")));
            }
            let name = w.name();
            for (what, value) in [("name", name), ("role", w.role())] {
                crate::task::check_name(value)
                    .map_err(|e| crate::Error::Config(format!("worker {name:?}: its {what} {e}")))?;
            }
        }
        let slots = workers
            .into_iter()
            .map(|worker| Slot {
                worker,
                load: 0,
                queue: VecDeque::new(),
            })
            .collect();
        Ok(WorkerRuntime {
            slots,
            by_name,
            held: HashMap::new(),
            running: JoinSet::new(),
            stopped: VecDeque::new(),
            cfg,
            draining: false,
            valid_for: valid_for(crate::scheduler::SchedulerConfig::default().lease),
            started_from_queue: false,
        })
    }

    /// Sets the admin's lease the validity of queued awards derives from
    /// (default: [`SchedulerConfig::lease`](crate::scheduler::SchedulerConfig::lease)'s default).
    pub(crate) fn set_lease(&mut self, lease: Duration) {
        self.valid_for = valid_for(lease);
    }

    /// True when this node hosts no workers.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The registration list for the admin.
    pub(crate) fn specs(&self) -> Vec<WorkerSpec> {
        self.slots
            .iter()
            .map(|s| WorkerSpec {
                name: s.worker.name().to_string(),
                role: s.worker.role().to_string(),
                skill: s.worker.skill(),
                capacity: s.worker.slots().max(1),
                standing: s.worker.standing_bid(),
                queue: self.cfg.queue,
            })
            .collect()
    }

    /// Answers every announcement of a matching role: a bid, or an unwilling
    /// answer so the auction can close without waiting.
    pub(crate) fn bids_for(&self, tasks: &[Announcement]) -> Vec<Bid> {
        let mut bids = Vec::new();
        for a in tasks {
            for s in self.slots.iter().filter(|s| s.worker.role() == a.role) {
                let load = s.load + s.queue.len() as u32;
                let offer = Offer {
                    name: &a.name,
                    difficulty: a.difficulty,
                    input_len: a.input_len,
                    load,
                };
                bids.push(Bid {
                    task: a.task,
                    round: a.round,
                    worker: s.worker.name().to_string(),
                    skill: s.worker.skill(),
                    load,
                    capacity: s.worker.slots().max(1),
                    willing: !self.draining && s.worker.bid(&offer),
                });
            }
        }
        bids
    }

    /// Takes or refuses one award; a taken one starts running at once, or
    /// waits in its worker's queue when every slot is busy.
    ///
    /// Refused while draining, for an unknown worker or one whose slots and
    /// queue are full, and for a task this node already holds under any
    /// attempt ("already running attempt N"; the admin sorts that out).
    pub(crate) fn accept(&mut self, a: Assignment) -> AssignAnswer {
        let (task, attempt) = (a.task, a.attempt);
        let answer = |reason: Option<String>| AssignAnswer {
            task,
            attempt,
            accepted: reason.is_none(),
            reason,
        };
        let worker = match self.admit(&a) {
            Ok(worker) => worker,
            Err(reason) => return answer(Some(reason)),
        };
        let held = Held {
            worker,
            attempt,
            cancel: Cancel::default(),
            cancelled: false,
            id: None,
        };
        self.held.insert(task, held);
        let slot = &mut self.slots[worker];
        if slot.load < slot.worker.slots().max(1) {
            self.start(worker, a);
        } else {
            slot.queue.push_back(Queued {
                award: a,
                valid_until: Instant::now() + self.valid_for,
            });
        }
        answer(None)
    }

    /// Starts a held attempt on a free slot of worker `worker`.
    fn start(&mut self, worker: usize, a: Assignment) {
        let Some(held) = self.held.get_mut(&a.task) else {
            return;
        };
        let slot = &mut self.slots[worker];
        slot.load += 1;
        let run = attempt::run(slot.worker.clone(), a, held.cancel.clone(), self.cfg);
        held.id = Some(self.running.spawn(run).id());
    }

    /// The index of the worker that may take `a`, or why none may.
    fn admit(&self, a: &Assignment) -> Result<usize, String> {
        if self.draining {
            return Err("node is shutting down".into());
        }
        let Some(&i) = self.by_name.get(&a.worker) else {
            return Err("no such worker on this node".into());
        };
        if let Some(h) = self.held.get(&a.task) {
            return Err(format!("already running attempt {}", h.attempt));
        }
        let slot = &self.slots[i];
        let room = slot.worker.slots().max(1).saturating_add(self.cfg.queue);
        if slot.load + slot.queue.len() as u32 >= room {
            return Err("worker is full".into());
        }
        Ok(i)
    }

    /// Stops one attempt: fires its [`Cancel`], and drops its future if it
    /// has not returned within [`RuntimeConfig::kill_grace`]. Its slot is
    /// freed once its future has really ended, and only then does its report
    /// come (a retryable "cancelled" failure, unless it finished first): the
    /// admin, which ended the attempt, ignores the result but learns that
    /// the slot is free.
    ///
    /// Returns true when this call stopped a held attempt; false (and does
    /// nothing) when that attempt is unknown, finished or already cancelled.
    ///
    /// An attempt still in its worker's queue never starts: it leaves the
    /// queue and reports at once.
    pub(crate) fn cancel(&mut self, task: TaskId, attempt: u32) -> bool {
        match self.held.get_mut(&task) {
            Some(h) if h.attempt == attempt && !h.cancelled => {
                h.cancelled = true;
                h.cancel.cancel();
                if h.id.is_none() {
                    let worker = h.worker;
                    self.held.remove(&task);
                    self.slots[worker].queue.retain(|q| q.award.task != task);
                    self.stopped.push_back(Report {
                        task,
                        attempt,
                        worker: self.slots[worker].worker.name().to_string(),
                        outcome: Err(crate::scheduler::Failure::retryable(
                            "cancelled before it started",
                        )),
                        run_ms: 0,
                    });
                }
                true
            }
            _ => false,
        }
    }

    /// Every attempt accepted and neither finished nor cancelled, for lease
    /// renewals. Costs one pass over the held attempts (at most the sum of
    /// the workers' slots).
    pub(crate) fn held(&self) -> Vec<(TaskId, u32)> {
        self.held
            .iter()
            .filter(|(_, h)| !h.cancelled)
            .map(|(task, h)| (*task, h.attempt))
            .collect()
    }

    /// The held attempts still waiting in a queue (not started), for
    /// renewals.
    pub(crate) fn waiting(&self) -> Vec<(TaskId, u32)> {
        let queued = self.slots.iter().flat_map(|s| s.queue.iter());
        queued.map(|q| (q.award.task, q.award.attempt)).collect()
    }

    /// A renewal sent at `sent` was answered now: the queued awards still
    /// valid are valid until `sent` plus three quarters of the lease (the
    /// admin took the renewal while their leases held, so it extended them
    /// from no earlier than `sent`). An award that came after `sent` is
    /// valid longer already.
    pub(crate) fn renewed(&mut self, sent: Instant) {
        let now = Instant::now();
        let until = sent + self.valid_for;
        for q in self.slots.iter_mut().flat_map(|s| s.queue.iter_mut()) {
            if q.valid_until >= now {
                q.valid_until = q.valid_until.max(until);
            }
        }
    }

    /// Drops, unstarted, the queued awards past their validity (their
    /// leases may have ended and the tasks gone to other workers); returns
    /// them. Renewals no longer name them, so the admin awards them again
    /// once their leases end, without counting a lost attempt.
    pub(crate) fn expire_queued(&mut self) -> Vec<(TaskId, u32)> {
        self.expire_in(0..self.slots.len())
    }

    /// As [`Self::expire_queued`], for the queues of the slots in `range`
    /// only (a freed slot needs no look at the others').
    fn expire_in(&mut self, range: std::ops::Range<usize>) -> Vec<(TaskId, u32)> {
        let now = Instant::now();
        let mut expired = Vec::new();
        for slot in &mut self.slots[range] {
            slot.queue.retain(|q| {
                let valid = q.valid_until >= now;
                if !valid {
                    expired.push((q.award.task, q.award.attempt));
                }
                valid
            });
        }
        for (task, _) in &expired {
            self.held.remove(task);
        }
        if !expired.is_empty() {
            tracing::debug!(
                count = expired.len(),
                "queued awards expired unstarted: their leases were not renewed in time"
            );
        }
        expired
    }

    /// Waits for the next finished attempt's report (pending forever when
    /// idle, so it can sit in a `select!`; cancel-safe). Cancelled attempts
    /// report too, once stopped (see [`WorkerRuntime::cancel`]).
    pub(crate) async fn next_finished(&mut self) -> Finished {
        if let Some(report) = self.stopped.pop_front() {
            return report;
        }
        loop {
            match self.running.join_next_with_id().await {
                Some(joined) => {
                    if let Some(report) = self.settle(joined) {
                        return report;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Reports of attempts finished right now, without waiting.
    pub(crate) fn try_finished(&mut self) -> Vec<Finished> {
        let mut out: Vec<Finished> = self.stopped.drain(..).collect();
        while let Some(joined) = self.running.try_join_next_with_id() {
            out.extend(self.settle(joined));
        }
        out
    }

    /// Frees the slot of an ended attempt; its report.
    fn settle(&mut self, joined: Result<(Id, Report), JoinError>) -> Option<Report> {
        let task = match &joined {
            Ok((_, report)) => report.task,
            // Panics are caught in `attempt::run` and aborts only happen on
            // drop, so this is not expected; still, never leak a slot.
            Err(e) => *self.held.iter().find(|(_, h)| h.id == Some(e.id()))?.0,
        };
        let held = self.held.remove(&task)?;
        let slot = &mut self.slots[held.worker];
        slot.load = slot.load.saturating_sub(1);
        // The freed slot takes the next award waiting for it, once those
        // past their validity are dropped.
        self.expire_in(held.worker..held.worker + 1);
        if let Some(next) = self.slots[held.worker].queue.pop_front() {
            self.start(held.worker, next.award);
            self.started_from_queue = true;
        }
        joined.ok().map(|(_, report)| report)
    }

    /// Stops bidding and taking awards; running attempts go on. Awards
    /// waiting in queues are dropped, unstarted, and returned: renewals no
    /// longer hold them, so the admin awards them again once their leases
    /// end, without counting a lost attempt (its renewals said they were
    /// waiting).
    pub(crate) fn drain(&mut self) -> Vec<(TaskId, u32)> {
        self.draining = true;
        let mut returned = Vec::new();
        for slot in &mut self.slots {
            for q in slot.queue.drain(..) {
                self.held.remove(&q.award.task);
                returned.push((q.award.task, q.award.attempt));
            }
        }
        returned
    }

    /// True once when a queued award has started since the last call: the
    /// node renews soon, so that the admin learns it started (renewals name
    /// the attempts still waiting).
    pub(crate) fn take_started_from_queue(&mut self) -> bool {
        std::mem::take(&mut self.started_from_queue)
    }

    /// Attempts whose futures have not ended (cancelled ones included),
    /// and those waiting in queues to start.
    pub(crate) fn running(&self) -> usize {
        self.running.len() + self.slots.iter().map(|s| s.queue.len()).sum::<usize>()
    }
}

/// Three quarters of `lease`: the last quarter is kept for a renewal's way
/// to the admin and for clocks that run at slightly different rates.
fn valid_for(lease: Duration) -> Duration {
    lease - lease / 4
}
