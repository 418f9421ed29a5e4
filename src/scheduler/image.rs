//! Snapshots of the ledger, and the two ways a scheduler that was not
//! handling inputs starts to: restoring a snapshot, and taking office.
//!
//! A snapshot holds the ledger part of every record (see `state`): the
//! task table with its free slots, the worker registry, the roles, the
//! eviction line, the recently evicted and submitted ids, and the ledger's
//! timers. Everything else is derived again on restore (indexes, holdings,
//! counters) or belongs to the auction layer, which a new admin starts
//! afresh. Restoring a snapshot and then applying the events that followed
//! it gives the same ledger as applying every event from the start: the
//! consensus layer compacts its log this way.
//!
//! A snapshot is bincode, after the event format's version
//! ([`EVENT_VERSION`]). Restoring checks every index it holds against the
//! table it indexes, so a damaged or hostile snapshot is refused, never a
//! panic.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt, HashSet};
use serde::{Deserialize, Serialize};

use super::state::{Entry, Phase, Role, RoleId, Slot, Timer, TimerKind, WorkerId, WorkerState};
use super::{AttemptEnd, Input, Scheduler, Takeover, EVENT_VERSION};
use crate::task::{NodeId, TaskId};

/// Largest snapshot [`Scheduler::restore`] reads: 1 GiB.
pub const MAX_SNAPSHOT: usize = 1 << 30;

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Written by another version of the event format.
    #[error("snapshot of event version {found}, this node reads version {EVENT_VERSION}")]
    Version {
        /// The version the snapshot names.
        found: u16,
    },
    /// Not a snapshot, or cut short.
    #[error("cannot decode the snapshot")]
    Decode(#[source] bincode::error::DecodeError),
    /// Bytes after the snapshot's end.
    #[error("{0} bytes after the snapshot's end")]
    Trailing(usize),
    /// An index in the snapshot points outside its table.
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(&'static str),
    /// The snapshot could not be written.
    #[error("cannot encode the snapshot")]
    Encode(#[source] bincode::error::EncodeError),
}

/// The ledger as written: borrowed from a scheduler.
#[derive(Serialize)]
struct ImageRef<'a> {
    tasks: &'a [Entry],
    inserted: u64,
    free: &'a [Slot],
    workers: &'a [WorkerState],
    roles: &'a [Role],
    evictable: &'a VecDeque<(Slot, TaskId)>,
    evicted_order: &'a VecDeque<TaskId>,
    recent: &'a VecDeque<TaskId>,
    timers: Vec<(Duration, TimerKind, Slot)>,
}

/// The ledger as read: the same fields, owned.
#[derive(Deserialize)]
struct Image {
    tasks: Vec<Entry>,
    inserted: u64,
    free: Vec<Slot>,
    workers: Vec<WorkerState>,
    roles: Vec<Role>,
    evictable: VecDeque<(Slot, TaskId)>,
    evicted_order: VecDeque<TaskId>,
    recent: VecDeque<TaskId>,
    timers: Vec<(Duration, TimerKind, Slot)>,
}

/// Timers that `apply` sets (the rest belong to the auction layer).
fn ledger_timer(kind: &TimerKind) -> bool {
    matches!(
        kind,
        TimerKind::Retry | TimerKind::QueueTimeout | TimerKind::Deadline | TimerKind::RunTimeout { .. }
    )
}

impl Scheduler {
    /// The ledger as bytes (see the module documentation): what
    /// [`Scheduler::restore`] reads back. Its size grows with the tasks and
    /// workers held, not with the events applied.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let timers = self.timers.iter().filter(|t| ledger_timer(&t.kind));
        let image = ImageRef {
            tasks: &self.tasks,
            inserted: self.inserted,
            free: &self.free,
            workers: &self.workers,
            roles: &self.roles,
            evictable: &self.evictable,
            evicted_order: &self.evicted_order,
            recent: &self.recent,
            timers: timers.map(|t| (t.at, t.kind, t.slot)).collect(),
        };
        bincode::serde::encode_to_vec((EVENT_VERSION, image), crate::task::bincode_config())
            .map_err(SnapshotError::Encode)
    }

    /// Replaces this scheduler's ledger with a snapshot's, keeping its
    /// configuration, award policy and event recording. The auction layer
    /// starts empty and clients' watches are dropped; call
    /// [`Scheduler::take_office`] before handling inputs. On error nothing
    /// changes.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let cfg = crate::task::bincode_config().with_limit::<MAX_SNAPSHOT>();
        let (version, used): (u16, usize) =
            bincode::serde::decode_from_slice(bytes, cfg).map_err(SnapshotError::Decode)?;
        if version != EVENT_VERSION {
            return Err(SnapshotError::Version { found: version });
        }
        let (image, more): (Image, usize) =
            bincode::serde::decode_from_slice(&bytes[used..], cfg).map_err(SnapshotError::Decode)?;
        if used + more != bytes.len() {
            return Err(SnapshotError::Trailing(bytes.len() - used - more));
        }
        image.check()?;
        self.reset();
        self.load(image);
        Ok(())
    }

    /// Empties the ledger and the auction layer, keeping the configuration,
    /// the award policy and event recording (events recorded and not yet
    /// taken are dropped).
    pub fn reset(&mut self) {
        let policy = std::mem::replace(&mut self.policy, Box::new(super::BestFit));
        let recording = self.recorded.is_some();
        *self = Scheduler::with_policy(self.cfg.clone(), policy);
        if recording {
            self.record_events();
        }
    }

    /// Fills an empty scheduler from a checked image, deriving the rest.
    fn load(&mut self, image: Image) {
        let free: HashSet<Slot> = image.free.iter().copied().collect();
        for (i, e) in image.tasks.iter().enumerate() {
            let slot = Slot(i as u32);
            if free.contains(&slot) {
                continue;
            }
            self.index.insert(e.task.id, slot);
            if let Some((worker, _)) = e.phase.holder() {
                self.holding.entry(worker).or_default().insert(slot);
            }
            if e.phase.is_final() {
                self.finished_bytes += e.bytes();
            } else {
                self.unfinished += 1;
            }
        }
        for (i, w) in image.workers.iter().enumerate().filter(|(_, w)| w.present) {
            let names = self.by_node.entry(w.node.clone()).or_default();
            names.insert(w.spec.name.clone(), WorkerId(i as u32));
        }
        for (i, r) in image.roles.iter().enumerate() {
            self.role_ids.insert(r.name.to_string(), RoleId(i as u32));
        }
        for (at, kind, slot) in image.timers {
            let id = image.tasks[slot].task.id;
            self.timers.insert(Timer { at, kind, slot, id });
        }
        self.evicted = image.evicted_order.iter().copied().collect();
        self.inserted = image.inserted;
        self.tasks = image.tasks;
        self.free = image.free;
        self.workers = image.workers;
        self.roles = image.roles;
        self.evictable = image.evictable;
        self.evicted_order = image.evicted_order;
        self.recent = image.recent;
        self.roster_changed = true;
    }

    /// Starts handling inputs after a time of only applying events (a
    /// replica that follows the log becomes the admin, or a snapshot was
    /// restored): every task waiting for an award joins its queue, and every
    /// attempt a worker holds gets a fresh lease from `now`, so its node
    /// has a whole lease to find the new admin and renew it. Costs one pass
    /// over the task table, once per change of admin.
    ///
    /// Then it waits to hear from each worker's node (nodes register and
    /// renew at once when their admin changes): a node's first renewal
    /// says which of the attempts the ledger gives it it really holds, and
    /// the others — awarded by the old admin but never delivered — are
    /// awarded again at once, without counting as a lost attempt. A node
    /// not heard from within two leases is taken for gone (its workers
    /// leave, what they held is lost), so that a node that died with the
    /// old admin leaves no worker behind.
    pub fn take_office(&mut self, now: Duration) {
        self.ready.clear();
        self.changes.clear();
        let mut held = Vec::new();
        for (i, e) in self.tasks.iter().enumerate() {
            let slot = Slot(i as u32);
            if self.index.get(&e.task.id) != Some(&slot) || e.soft.0.is_some() {
                continue; // a free slot, or already in the auction layer
            }
            match e.phase {
                Phase::Ready => self.ready.push(slot),
                Phase::Assigned { attempt, .. } | Phase::Running { attempt, .. } => {
                    held.push((slot, attempt));
                }
                _ => {}
            }
        }
        let mut inherited: BTreeMap<NodeId, Vec<(TaskId, u32)>> = BTreeMap::new();
        for (slot, attempt) in held {
            self.start_lease(slot, attempt, now);
            if let Some((worker, _)) = self.tasks[slot].phase.holder() {
                let node = self.workers[worker].node.clone();
                inherited
                    .entry(node)
                    .or_default()
                    .push((self.tasks[slot].task.id, attempt));
            }
        }
        let silent = self.by_node.keys().cloned().collect();
        self.takeover = Some(Takeover {
            by: now + 2 * self.cfg.lease,
            silent,
            inherited,
        });
        self.roster_changed = true;
    }

    /// A node was heard from: its workers' standing bids count again; after
    /// a change of admin (see [`Scheduler::take_office`]), its first
    /// renewal settles what it holds.
    pub(super) fn heard_from(&mut self, input: &Input, now: Duration) {
        let node = match input {
            Input::Register { node, .. }
            | Input::Bids { node, .. }
            | Input::AssignAnswer { node, .. }
            | Input::Reports { node, .. }
            | Input::Renew { node, .. } => node,
            _ => return,
        };
        for &id in self.by_node.get(node).into_iter().flat_map(|w| w.values()) {
            self.workers[id].standing_off = false;
        }
        let Some(t) = self.takeover.as_mut() else { return };
        t.silent.remove(node);
        let Input::Renew { held, .. } = input else { return };
        let Some(inherited) = t.inherited.remove(node) else {
            return;
        };
        for (task, attempt) in inherited {
            if held.contains(&(task, attempt)) {
                continue;
            }
            let Some(slot) = self.slot(&task) else { continue };
            let current = self.tasks[slot]
                .phase
                .holder()
                .is_some_and(|(w, a)| a == attempt && self.workers[w].node == *node);
            if current {
                let reason =
                    "its node does not hold it: the award was not delivered before the admin changed";
                if self.record_end(
                    slot,
                    AttemptEnd::Undelivered {
                        reason: reason.into(),
                    },
                    now,
                ) {
                    self.after_attempt(slot, now);
                }
            }
        }
    }

    /// Two leases after taking office: nodes never heard from are gone.
    pub(super) fn takeover_due(&mut self, now: Duration) {
        if self.takeover.as_ref().is_none_or(|t| t.by > now) {
            return;
        }
        let Some(t) = self.takeover.take() else { return };
        for node in t.silent {
            self.node_gone(&node, "not heard from since the admin changed", now);
        }
    }

    /// Drops what applying events left for a driver (status changes, tasks
    /// newly ready, the eviction line's stale front) when nobody handles
    /// inputs: a replica that only follows the log calls it after each
    /// batch it applies, so that following stays bounded in memory.
    pub fn forget_step(&mut self) {
        self.changes.clear();
        self.ready.clear();
        self.churn = 0;
        while let Some(&(slot, id)) = self.evictable.front() {
            if self.index.get(&id) == Some(&slot) && self.tasks[slot].holders == 0 {
                break;
            }
            self.evictable.pop_front();
        }
    }
}

impl Image {
    /// Every index points inside its table, so that loading and later use
    /// cannot index out of bounds.
    fn check(&self) -> Result<(), SnapshotError> {
        let slots = self.tasks.len();
        let workers = self.workers.len();
        let roles = self.roles.len();
        let slot_ok = |s: &Slot| (s.0 as usize) < slots;
        let worker_ok = |w: &WorkerId| (w.0 as usize) < workers;
        let role_ok = |r: &RoleId| (r.0 as usize) < roles;
        let bad = |what| Err(SnapshotError::Inconsistent(what));
        if slots > u32::MAX as usize || workers > u32::MAX as usize || roles > u32::MAX as usize {
            return bad("a table is too long");
        }
        if !self.free.iter().all(slot_ok) {
            return bad("a free slot outside the task table");
        }
        let free: HashSet<Slot> = self.free.iter().copied().collect();
        let mut ids = HashMap::with_capacity(slots);
        for (i, e) in self.tasks.iter().enumerate() {
            if free.contains(&Slot(i as u32)) {
                continue;
            }
            if ids.insert(e.task.id, i).is_some() {
                return bad("a task held twice");
            }
            if !role_ok(&e.role) {
                return bad("a task of an unknown role");
            }
            if !e.deps.iter().chain(&e.dependents).all(slot_ok) {
                return bad("a dependency outside the task table");
            }
            let holder = e.phase.holder().map(|h| h.0);
            if !e
                .history
                .iter()
                .map(|a| a.worker)
                .chain(holder)
                .all(|w| worker_ok(&w))
            {
                return bad("an attempt by an unknown worker");
            }
            let bids = e.award.iter().flat_map(|a| a.bids.iter());
            if !bids.map(|b| WorkerId(b.worker)).all(|w| worker_ok(&w)) {
                return bad("a bid by an unknown worker");
            }
        }
        if !self.workers.iter().all(|w| role_ok(&w.role)) {
            return bad("a worker of an unknown role");
        }
        if !self.roles.iter().flat_map(|r| r.workers.iter()).all(worker_ok) {
            return bad("a role lists an unknown worker");
        }
        if !self.evictable.iter().all(|(s, _)| slot_ok(s)) || !self.timers.iter().all(|t| slot_ok(&t.2)) {
            return bad("an eviction or a timer outside the task table");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Input, SchedulerConfig};
    use crate::task::{NodeId, Task, WorkerSpec};

    /// A scheduler holding a worker and two dependent tasks.
    fn busy() -> Scheduler {
        let mut s = Scheduler::new(SchedulerConfig::default());
        let mut out = Vec::new();
        let workers = vec![WorkerSpec {
            name: "w".into(),
            role: "r".into(),
            skill: 5,
            capacity: 1,
            standing: None,
            queue: 0,
        }];
        let node = NodeId::new("n");
        s.handle(Input::Register { node, workers }, Duration::ZERO, &mut out);
        let a = Task::new("a", "r", 1);
        let b = Task::new("b", "r", 1).depends_on(a.id);
        let tasks = vec![a, b];
        s.handle(Input::Submit { token: 1, tasks }, Duration::ZERO, &mut out);
        s
    }

    fn refused(bytes: &[u8]) -> SnapshotError {
        let mut s = busy();
        let before = s.snapshot().expect("encodes");
        let e = s.restore(bytes).expect_err("refused");
        assert_eq!(
            s.snapshot().expect("encodes"),
            before,
            "a refused snapshot changed the ledger"
        );
        e
    }

    #[test]
    fn garbage_and_cut_snapshots_are_refused() {
        let good = busy().snapshot().expect("encodes");
        assert!(matches!(refused(&[]), SnapshotError::Decode(_)));
        assert!(matches!(
            refused(&[0xff; 64]),
            SnapshotError::Version { .. } | SnapshotError::Decode(_)
        ));
        assert!(matches!(
            refused(&good[..good.len() - 3]),
            SnapshotError::Decode(_)
        ));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(refused(&longer), SnapshotError::Trailing(1)));
    }

    #[test]
    fn a_snapshot_of_another_version_is_refused() {
        let mut other = busy().snapshot().expect("encodes");
        let version =
            bincode::serde::encode_to_vec(EVENT_VERSION + 1, crate::task::bincode_config()).unwrap();
        other.splice(..version.len(), version);
        let e = refused(&other);
        assert!(
            matches!(e, SnapshotError::Version { found } if found == EVENT_VERSION + 1),
            "{e}"
        );
    }

    #[test]
    fn an_index_outside_its_table_is_refused_not_a_panic() {
        let s = busy();
        let deps = [Slot(7)];
        let mut tasks: Vec<Entry> = Vec::new();
        for e in &s.tasks {
            let bytes = bincode::serde::encode_to_vec(e, crate::task::bincode_config()).unwrap();
            let (copy, _): (Entry, usize) =
                bincode::serde::decode_from_slice(&bytes, crate::task::bincode_config()).unwrap();
            tasks.push(copy);
        }
        tasks[1].deps = deps.into();
        let image = ImageRef {
            tasks: &tasks,
            inserted: s.inserted,
            free: &s.free,
            workers: &s.workers,
            roles: &s.roles,
            evictable: &s.evictable,
            evicted_order: &s.evicted_order,
            recent: &s.recent,
            timers: Vec::new(),
        };
        let bytes =
            bincode::serde::encode_to_vec((EVENT_VERSION, image), crate::task::bincode_config()).unwrap();
        let e = refused(&bytes);
        assert!(matches!(e, SnapshotError::Inconsistent(_)), "{e}");
    }

    #[test]
    fn a_restored_scheduler_reports_what_the_original_did() {
        let s = busy();
        let mut copy = Scheduler::new(SchedulerConfig::default());
        copy.restore(&s.snapshot().expect("encodes")).expect("restores");
        let now = Duration::from_secs(1);
        for id in s.recent(10) {
            let mut want = s.report_of(&id, now).expect("kept");
            // An open auction is the old admin's; the ledger says pending.
            if want.status == crate::task::TaskStatus::Announced {
                want.status = crate::task::TaskStatus::Pending;
            }
            assert_eq!(copy.report_of(&id, now), Some(want));
        }
        assert_eq!(copy.workers(), s.workers());
    }
}
