//! The worker registry: registration, departures, and the questions the
//! rest of the scheduler asks about capacity (who could take a task, who has
//! a free slot) and the slot reservations that pace announcements.

use std::collections::BTreeSet;
use std::time::Duration;

use super::state::{Phase, Role, RoleId, Slot, WorkerId, WorkerState};
use super::{Output, Scheduler};
use crate::task::{NodeId, TaskError, WorkerSpec};

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
        self.roles.push(Role { workers: Vec::new() });
        self.role_ids.insert(name.to_string(), id);
        id
    }

    pub(super) fn register(
        &mut self,
        node: NodeId,
        specs: Vec<WorkerSpec>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let keep: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<WorkerId> = self.by_node.get(&node).map_or_else(Vec::new, |names| {
            let gone = names.iter().filter(|(name, _)| !keep.contains(name.as_str()));
            gone.map(|(_, &id)| id).collect()
        });
        for id in gone {
            self.remove_worker(id, now, out);
        }
        for mut spec in specs {
            spec.capacity = spec.capacity.max(1);
            let role = self.role_id(&spec.role);
            let id = match self.worker_id(&node, &spec.name) {
                Some(id) => id,
                None => self.add_worker(node.clone(), spec.name.clone(), role),
            };
            let old = std::mem::replace(&mut self.workers[id].role, role);
            if old != role {
                self.roles[old].workers.retain(|&w| w != id);
                self.roles[role].workers.push(id);
            }
            self.workers[id].spec = spec;
        }
        self.park_stranded(now);
        self.unpark(now);
    }

    /// A new worker of `role`, not yet described (the caller sets its spec).
    fn add_worker(&mut self, node: NodeId, name: String, role: RoleId) -> WorkerId {
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
            },
            role,
            load: 0,
            reserved: 0,
            present: true,
        });
        id
    }

    pub(super) fn node_left(&mut self, node: &NodeId, now: Duration, out: &mut Vec<Output>) {
        let ids: Vec<WorkerId> = self
            .by_node
            .get(node)
            .map_or_else(Vec::new, |names| names.values().copied().collect());
        for id in ids {
            self.remove_worker(id, now, out);
        }
        self.park_stranded(now);
    }

    /// Unregisters a worker: what it held fails, and its answers in open
    /// auctions no longer count.
    fn remove_worker(&mut self, id: WorkerId, now: Duration, out: &mut Vec<Output>) {
        let w = &mut self.workers[id];
        w.present = false;
        let (node, name) = (w.node.clone(), w.spec.name.clone());
        self.roles[w.role].workers.retain(|&x| x != id);
        if let Some(names) = self.by_node.get_mut(&node) {
            names.remove(&name);
            if names.is_empty() {
                self.by_node.remove(&node);
            }
        }
        for slot in (0..self.tasks.len() as u32).map(Slot) {
            let e = &mut self.tasks[slot];
            match &mut e.phase {
                Phase::Announced { reserved, .. } => {
                    if *reserved == Some(id) {
                        *reserved = None;
                    }
                    e.bids.retain(|b| b.worker != id);
                }
                Phase::Assigned { worker } | Phase::Running { worker } if *worker == id => {
                    let err = TaskError::WorkerLost {
                        worker: name.clone(),
                        node: node.to_string(),
                    };
                    self.fail(slot, err, now, out);
                }
                _ => {}
            }
        }
    }

    pub(super) fn best_skill(&self, role: RoleId) -> Option<u32> {
        let workers = self.roles[role].workers.iter();
        workers.map(|&w| self.workers[w].spec.skill).max()
    }

    pub(super) fn capable_exists(&self, role: RoleId, difficulty: u32) -> bool {
        self.best_skill(role).is_some_and(|s| s >= difficulty)
    }

    pub(super) fn role_has_room(&self, role: RoleId) -> bool {
        self.roles[role]
            .workers
            .iter()
            .any(|&w| self.workers[w].free() > 0)
    }

    /// Reserves a free slot of some capable worker for an auction: the
    /// tightest fit, so easy tasks do not use up the seniors' slots.
    pub(super) fn reserve(&mut self, role: RoleId, difficulty: u32) -> Option<WorkerId> {
        let fits = self.roles[role].workers.iter().copied().filter(|&id| {
            let w = &self.workers[id];
            w.spec.skill >= difficulty && w.free() > 0
        });
        let id = fits.min_by(|&a, &b| {
            let (a, b) = (&self.workers[a], &self.workers[b]);
            (a.spec.skill, &a.node, &a.spec.name).cmp(&(b.spec.skill, &b.node, &b.spec.name))
        })?;
        self.workers[id].reserved += 1;
        Some(id)
    }

    pub(super) fn release(&mut self, reserved: Option<WorkerId>) {
        if let Some(id) = reserved {
            let w = &mut self.workers[id];
            w.reserved = w.reserved.saturating_sub(1);
        }
    }
}
