//! The worker registry: registration, departures, and the questions the
//! rest of the scheduler asks about capacity (who could take a task, who has
//! a free slot) and the slot reservations that pace announcements.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Output, Phase, Scheduler, WorkerKey, WorkerState};
use crate::task::{NodeId, TaskError, TaskId, WorkerSpec};

impl Scheduler {
    pub(super) fn register(
        &mut self,
        node: NodeId,
        specs: Vec<WorkerSpec>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let keep: BTreeSet<String> = specs.iter().map(|s| s.name.clone()).collect();
        let gone: Vec<WorkerKey> = self
            .workers
            .range((node.clone(), String::new())..)
            .take_while(|(k, _)| k.0 == node)
            .filter(|(k, _)| !keep.contains(&k.1))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            self.remove_worker(&key, now, out);
        }
        for mut spec in specs {
            spec.capacity = spec.capacity.max(1);
            let key = (node.clone(), spec.name.clone());
            match self.workers.get_mut(&key) {
                Some(w) => w.spec = spec,
                None => {
                    self.workers.insert(
                        key,
                        WorkerState {
                            spec,
                            load: 0,
                            reserved: 0,
                        },
                    );
                }
            }
        }
        self.park_stranded(now);
        self.unpark(now);
    }

    pub(super) fn node_left(&mut self, node: &NodeId, now: Duration, out: &mut Vec<Output>) {
        let keys: Vec<WorkerKey> = self
            .workers
            .range((node.clone(), String::new())..)
            .take_while(|(k, _)| &k.0 == node)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.remove_worker(&key, now, out);
        }
        self.park_stranded(now);
    }

    fn remove_worker(&mut self, key: &WorkerKey, now: Duration, out: &mut Vec<Output>) {
        self.workers.remove(key);
        let mut held: Vec<(u64, TaskId)> = self
            .tasks
            .iter()
            .filter(|(_, e)| match &e.phase {
                Phase::Assigned { worker } | Phase::Running { worker } => worker == key,
                Phase::Announced { .. } => true,
                _ => false,
            })
            .map(|(id, e)| (e.seq, *id))
            .collect();
        // `tasks` is a hash map: act in submission order so runs repeat.
        held.sort_unstable();
        for (_, id) in held {
            let e = self.tasks.get_mut(&id).expect("listed");
            if let Phase::Announced { reserved, .. } = &mut e.phase {
                if reserved.as_ref() == Some(key) {
                    *reserved = None;
                }
                // A gone worker's answer no longer counts towards closing.
                e.bids.retain(|(b, _)| b.node != key.0 || b.worker != key.1);
                continue;
            }
            let err = TaskError::WorkerLost {
                worker: key.1.clone(),
                node: key.0.to_string(),
            };
            self.fail(id, err, now, out);
        }
    }

    pub(super) fn best_skill(&self, role: &str) -> Option<u32> {
        self.workers
            .values()
            .filter(|w| w.spec.role == role)
            .map(|w| w.spec.skill)
            .max()
    }

    pub(super) fn capable_exists(&self, role: &str, difficulty: u32) -> bool {
        self.best_skill(role).is_some_and(|s| s >= difficulty)
    }

    pub(super) fn role_has_room(&self, role: &str) -> bool {
        self.workers.values().any(|w| w.spec.role == role && w.free() > 0)
    }

    /// Reserves a free slot of some capable worker for an auction: the
    /// tightest fit, so easy tasks do not use up the seniors' slots.
    pub(super) fn reserve(&mut self, role: &str, difficulty: u32) -> Option<WorkerKey> {
        let key = self
            .workers
            .iter()
            .filter(|(_, w)| w.spec.role == role && w.spec.skill >= difficulty && w.free() > 0)
            .min_by_key(|(k, w)| (w.spec.skill, *k))
            .map(|(k, _)| k.clone())?;
        self.workers.get_mut(&key).expect("found").reserved += 1;
        Some(key)
    }

    pub(super) fn release(&mut self, key: &Option<WorkerKey>) {
        if let Some(w) = key.as_ref().and_then(|k| self.workers.get_mut(k)) {
            w.reserved = w.reserved.saturating_sub(1);
        }
    }
}
