//! The worker registry: registration, departures, leases, and the questions
//! the rest of the scheduler asks about capacity (who could take a task, who
//! has a free slot) with the slot reservations that pace announcements.

use std::time::Duration;

use super::events::{AttemptEnd, Event};
use super::state::{LeaseCheck, Role, RoleId, RunSeen, Slot, TimerKind, WorkerId, WorkerState};
use super::Scheduler;
use crate::task::{NodeId, TaskId, WorkerSpec};

impl Scheduler {
    /// The registered worker `name` on `node`.
    pub(super) fn worker_id(&self, node: &NodeId, name: &str) -> Option<WorkerId> {
        self.by_node.get(node)?.get(name).copied()
    }

    /// The role called `name`, made on first use.
    pub(super) fn role_id(&mut self, name: &str) -> RoleId {
        if let Some(&id) = self.role_ids.get(name) {
            return id;
        }
        let id = RoleId(self.roles.len() as u32);
        self.roles.push(Role {
            name: name.into(),
            workers: Vec::new(),
        });
        self.role_ids.insert(name.to_string(), id);
        id
    }

    pub(super) fn register(&mut self, node: NodeId, mut specs: Vec<WorkerSpec>, now: Duration) {
        // A name listed twice counts once (the first). A worker whose name
        // or role a node could not have started with (`check_name`: empty,
        // too long, control characters) is not registered: only a peer that
        // is not a taskmesh node sends one.
        let mut seen = std::collections::BTreeSet::new();
        specs.retain(|s| {
            let valid = crate::task::check_name(&s.name).is_ok() && crate::task::check_name(&s.role).is_ok();
            valid && seen.insert(s.name.clone())
        });
        let keep = |name: &str| specs.iter().any(|s| s.name == name);
        let gone: Vec<WorkerId> = self.by_node.get(&node).map_or_else(Vec::new, |names| {
            let gone = names.iter().filter(|(name, _)| !keep(name));
            gone.map(|(_, &id)| id).collect()
        });
        for id in gone {
            self.worker_gone(id, "its node re-registered without it", now);
        }
        for s in &mut specs {
            s.capacity = s.capacity.clamp(1, crate::task::MAX_WORKER_SLOTS);
            s.queue = s.queue.min(crate::task::MAX_WORKER_QUEUE);
            s.standing = s.standing.map(|d| d.min(s.skill));
        }
        self.emit(Event::WorkersRegistered { node, workers: specs });
    }

    pub(super) fn node_left(&mut self, node: &NodeId, now: Duration) {
        self.node_gone(node, "its node disconnected", now);
    }

    /// A node's workers leave the registry, `why` (what they held is lost).
    pub(super) fn node_gone(&mut self, node: &NodeId, why: &str, now: Duration) {
        let Some(names) = self.by_node.get(node) else {
            return;
        };
        let ids: Vec<WorkerId> = names.values().copied().collect();
        for id in ids {
            self.worker_gone(id, why, now);
        }
        self.emit(Event::NodeLeft { node: node.clone() });
    }

    /// A worker is about to leave the registry: what it held is lost. (Its
    /// answers in open auctions stop counting by themselves: auctions judge
    /// bids by who is registered when they close.)
    fn worker_gone(&mut self, id: WorkerId, why: &str, now: Duration) {
        let held: Vec<Slot> = self.held_by(id);
        for slot in held {
            let reason = format!("worker {}: {why}", self.workers[id].spec.name);
            self.attempt_lost(slot, reason, now);
        }
    }

    /// Tasks whose current attempt `id` holds.
    pub(super) fn held_by(&self, id: WorkerId) -> Vec<Slot> {
        let Some(set) = self.holding.get(&id) else {
            return Vec::new();
        };
        let mut held: Vec<Slot> = set.iter().copied().collect();
        held.sort_unstable(); // a stable order for the events that follow
        held
    }

    /// Registry side of a worker leaving (from `apply`).
    pub(super) fn remove_worker(&mut self, id: WorkerId) {
        let w = &mut self.workers[id];
        if !w.present {
            return;
        }
        w.present = false;
        let (node, name) = (w.node.clone(), w.spec.name.clone());
        self.roles[w.role].workers.retain(|&x| x != id);
        if let Some(names) = self.by_node.get_mut(&node) {
            names.remove(&name);
            if names.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// A new worker of `role`, not yet described (the caller sets its spec).
    pub(super) fn add_worker(&mut self, node: NodeId, name: String, role: RoleId) -> WorkerId {
        let id = WorkerId(self.workers.len() as u32);
        self.by_node
            .entry(node.clone())
            .or_default()
            .insert(name.clone(), id);
        self.roles[role].workers.push(id);
        self.workers.push(WorkerState {
            node,
            spec: WorkerSpec {
                name,
                role: String::new(),
                skill: 0,
                capacity: 1,
                standing: None,
                queue: 0,
            },
            role,
            load: 0,
            present: true,
            reserved: Vec::new(),
            draining: 0,
            standing_off: false,
        });
        id
    }

    /// A node renews the leases of what it holds. Attempts it holds that
    /// are no longer its own (lost, cancelled, re-awarded) are aborted.
    /// `node` holds `held`, of which `waiting` wait in queues: their leases
    /// are extended; attempts it holds that are not its own are aborted.
    pub(super) fn renew(
        &mut self,
        node: &NodeId,
        held: &[(TaskId, u32)],
        waiting: &[(TaskId, u32)],
        now: Duration,
    ) {
        let until = now + self.cfg.lease;
        let mut waiting = waiting.to_vec();
        waiting.sort_unstable();
        for &(task, attempt) in held {
            let current = self.slot(&task).and_then(|slot| {
                let (worker, a) = self.tasks[slot].phase.holder()?;
                (a == attempt && self.workers[worker].node == *node).then_some(slot)
            });
            match current {
                Some(slot) => {
                    let award = self.tasks[slot].history.last().map_or(0, |a| a.started_ms);
                    let takeover = self.takeover.is_some();
                    let before = self.status_at(&self.tasks[slot]);
                    let soft = &mut self.tasks[slot].soft;
                    soft.lease_until = until;
                    soft.run = match (waiting.binary_search(&(task, attempt)).is_ok(), soft.run) {
                        (true, _) => RunSeen::Waiting,
                        (false, RunSeen::Started(since)) => RunSeen::Started(since),
                        // First heard of as running: it ran from its award as
                        // far as this admin can tell; a new admin counts from
                        // now (the time it waited in a queue is unknown).
                        (false, _) if takeover => RunSeen::Started(now),
                        (false, _) => RunSeen::Started(Duration::from_millis(award)),
                    };
                    // A queued award its node now says started is running.
                    let after = self.status_at(&self.tasks[slot]);
                    if after != before {
                        self.changed(slot, after);
                    }
                }
                None => self.abort.entry(node.clone()).or_default().push((task, attempt)),
            }
        }
    }

    /// Starts the lease of a fresh award.
    pub(super) fn start_lease(&mut self, slot: Slot, attempt: u32, now: Duration) {
        let until = now + self.cfg.lease;
        let seq = self.leases.push(until, slot, attempt);
        let soft = &mut self.tasks[slot].soft;
        soft.lease_until = until;
        soft.lease_check = Some(LeaseCheck::Line { seq });
    }

    /// Voids the lease check of an attempt that ended.
    pub(super) fn drop_lease(&mut self, slot: Slot) {
        let e = &mut self.tasks[slot];
        if e.soft.0.is_none() {
            return; // never leased
        }
        match e.soft.lease_check.take() {
            Some(LeaseCheck::Line { seq }) => self.leases.void(seq),
            Some(LeaseCheck::Timer { due, attempt }) => {
                self.clear_timer(due, TimerKind::Lease { attempt }, slot);
            }
            None => {}
        }
    }

    /// A lease check of `attempt` came due (`check` as it was set): the
    /// attempt is lost unless renewed meanwhile, in which case it is checked
    /// again when the renewed lease ends.
    pub(super) fn lease_due(&mut self, slot: Slot, check: LeaseCheck, attempt: u32, now: Duration) {
        let e = &self.tasks[slot];
        if e.soft.0.is_none()
            || e.soft.lease_check != Some(check)
            || e.phase.holder().map(|h| h.1) != Some(attempt)
        {
            return; // the attempt ended, or its check moved
        }
        let until = e.soft.lease_until;
        if until > now {
            self.tasks[slot].soft.lease_check = Some(LeaseCheck::Timer { due: until, attempt });
            self.set_timer(until, TimerKind::Lease { attempt }, slot);
            return;
        }
        self.tasks[slot].soft.lease_check = None;
        let lease_ms = self.cfg.lease.as_millis();
        let reason = format!("lease expired: no renewal from its node for {lease_ms} ms");
        self.attempt_lost(slot, reason, now);
    }

    /// Ends the current attempt as lost, and either awards the task again
    /// or, past `max_attempts` losses, fails it as a poison task.
    ///
    /// The worker's standing bid is set aside until its node is heard from
    /// again: a paused or cut-off node takes no more awards unasked.
    pub(super) fn attempt_lost(&mut self, slot: Slot, reason: String, now: Duration) {
        let Some((worker, _)) = self.tasks[slot].phase.holder() else {
            return;
        };
        self.workers[worker].standing_off = true;
        // An award its node's renewals said was still waiting in the
        // worker's queue never ran: awarded again without counting as a
        // lost attempt (as one that never reached its worker); its node is
        // still told to drop it.
        let end = if self.tasks[slot].soft.run == RunSeen::Waiting {
            AttemptEnd::Undelivered {
                reason: format!("{reason}, before it started (it waited in the worker's queue)"),
            }
        } else {
            AttemptEnd::Lost { reason }
        };
        if self.end_attempt(slot, end, now) {
            self.after_attempt(slot, now);
        }
    }

    pub(super) fn best_skill(&self, role: RoleId) -> Option<u32> {
        let workers = self.roles[role].workers.iter();
        workers.map(|&w| self.workers[w].spec.skill).max()
    }

    pub(super) fn capable_exists(&self, role: RoleId, difficulty: u32) -> bool {
        self.best_skill(role).is_some_and(|s| s >= difficulty)
    }

    /// True while some worker of the role has a free slot, or room in its
    /// queue for an award from its standing bid.
    pub(super) fn role_has_room(&self, role: RoleId) -> bool {
        self.roles[role].workers.iter().any(|&w| {
            let w = &self.workers[w];
            w.free() > 0 || (w.stands_for(0) && w.room_unasked() > 0)
        })
    }

    /// Reserves a free slot of some capable worker for an auction: the
    /// tightest fit, so easy tasks do not use up the seniors' slots.
    pub(super) fn reserve(&mut self, role: RoleId, difficulty: u32, slot: Slot) -> Option<WorkerId> {
        let fits = self.roles[role].workers.iter().copied().filter(|&id| {
            let w = &self.workers[id];
            w.spec.skill >= difficulty && w.free() > 0
        });
        let id = fits.min_by(|&a, &b| {
            let (a, b) = (&self.workers[a], &self.workers[b]);
            (a.spec.skill, &a.node, &a.spec.name).cmp(&(b.spec.skill, &b.node, &b.spec.name))
        })?;
        self.workers[id].reserved.push(slot);
        Some(id)
    }

    /// The admin ended `attempt` of `task` on `worker`, whose node may still
    /// be stopping it: its slot counts as taken until [`Scheduler::drained`]
    /// or one lease from `now`.
    pub(super) fn start_drain(&mut self, worker: WorkerId, task: TaskId, attempt: u32, now: Duration) {
        if !self.workers[worker].present || self.draining.contains_key(&(task, attempt)) {
            return;
        }
        self.workers[worker].draining += 1;
        self.draining.insert((task, attempt), worker);
        self.drain_line.push_back((now + self.cfg.lease, task, attempt));
    }

    /// `node` reported `attempt` of `task` stopped (or sent its stale
    /// result): the slot it took is free. Only the node that ran it can
    /// say so.
    pub(super) fn drained(&mut self, node: &NodeId, task: TaskId, attempt: u32) {
        match self.draining.get(&(task, attempt)) {
            Some(&worker) if self.workers[worker].node == *node => self.end_drain(task, attempt),
            _ => {}
        }
    }

    fn end_drain(&mut self, task: TaskId, attempt: u32) {
        if let Some(worker) = self.draining.remove(&(task, attempt)) {
            let w = &mut self.workers[worker];
            w.draining = w.draining.saturating_sub(1);
        }
    }

    /// Slots still draining a lease after their attempt ended are taken to
    /// be free (the node never said; a refusal will tell if it is wrong).
    pub(super) fn expire_drains(&mut self, now: Duration) {
        while let Some(&(due, task, attempt)) = self.drain_line.front() {
            if due > now {
                break;
            }
            self.drain_line.pop_front();
            self.end_drain(task, attempt);
        }
    }

    pub(super) fn release(&mut self, reserved: Option<WorkerId>, slot: Slot) {
        if let Some(id) = reserved {
            let held = &mut self.workers[id].reserved;
            if let Some(i) = held.iter().position(|&s| s == slot) {
                held.swap_remove(i);
            }
        }
    }
}
