//! The records the scheduler keeps: one [`Entry`] per task, one
//! [`WorkerState`] per worker, one [`Role`] per role name. They live in
//! vectors and refer to each other by index ([`Slot`], [`WorkerId`],
//! [`RoleId`]), so the hot paths neither hash nor clone strings, and a
//! task's slot is also its submission order, which every scan follows.

use std::time::Duration;

use crate::task::{NodeId, Payload, Task, TaskError, WorkerSpec};

/// A task's index in the scheduler's task list: its submission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slot(pub(super) u32);

/// A worker's index in the scheduler's worker list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WorkerId(pub(super) u32);

/// A role's index in the scheduler's role list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct RoleId(pub(super) u32);

macro_rules! index_by {
    ($id:ty, $item:ty) => {
        impl std::ops::Index<$id> for Vec<$item> {
            type Output = $item;
            fn index(&self, i: $id) -> &$item {
                &self[i.0 as usize]
            }
        }
        impl std::ops::IndexMut<$id> for Vec<$item> {
            fn index_mut(&mut self, i: $id) -> &mut $item {
                &mut self[i.0 as usize]
            }
        }
    };
}

index_by!(Slot, Entry);
index_by!(WorkerId, WorkerState);
index_by!(RoleId, Role);

/// A worker as registered. The record stays after the worker leaves, so the
/// reports of tasks it ran can still name it; a worker that registers again
/// after leaving gets a fresh record.
#[derive(Debug)]
pub(super) struct WorkerState {
    pub(super) node: NodeId,
    pub(super) spec: WorkerSpec,
    pub(super) role: RoleId,
    /// Tasks awarded to this worker and not yet reported.
    pub(super) load: u32,
    /// Auctions counting on one of this worker's free slots.
    pub(super) reserved: u32,
    /// False once the worker left.
    pub(super) present: bool,
}

impl WorkerState {
    pub(super) fn free(&self) -> u32 {
        self.spec.capacity.saturating_sub(self.load + self.reserved)
    }
}

/// A role shared by tasks and workers (`role_ids` maps names to roles).
#[derive(Debug)]
pub(super) struct Role {
    /// The registered workers of the role: an auction closes once they all
    /// answered.
    pub(super) workers: Vec<WorkerId>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Phase {
    /// Waiting for dependencies.
    Waiting,
    /// In its role's queue.
    Queued,
    /// No registered worker could take it; waiting for one.
    Parked,
    /// Out of line after an auction without an award or a refusal, until
    /// its retry timer for `until` puts it back (earlier retry timers are
    /// stale).
    Backoff {
        until: Duration,
    },
    /// Auction open.
    Announced {
        closes_at: Duration,
        reserved: Option<WorkerId>,
    },
    /// Awarded, waiting for the worker to accept.
    Assigned {
        worker: WorkerId,
    },
    /// Being processed.
    Running {
        worker: WorkerId,
    },
    Completed,
    Failed,
}

/// One answer in an auction, with the bidder's registered skill and
/// capacity at the time and the load it declared.
#[derive(Clone, Copy, Debug)]
pub(super) struct SeenBid {
    pub(super) worker: WorkerId,
    pub(super) skill: u32,
    pub(super) load: u32,
    pub(super) capacity: u32,
    pub(super) willing: bool,
}

/// How a task was last awarded; expanded into an `AuctionRecord` when a
/// report asks for it.
#[derive(Debug)]
pub(super) struct Award {
    /// The willing bids of the deciding round.
    pub(super) bids: Box<[SeenBid]>,
    pub(super) reason: Box<str>,
    pub(super) rounds: u32,
}

#[derive(Debug)]
pub(super) struct Entry {
    /// The task as submitted, but for its dependencies, which are in `deps`.
    pub(super) task: Task,
    /// The task's dependencies, in its order.
    pub(super) deps: Box<[Slot]>,
    pub(super) role: RoleId,
    pub(super) phase: Phase,
    /// Dependencies not yet completed.
    pub(super) waiting_on: u32,
    pub(super) attempts: u32,
    pub(super) round: u32,
    /// Awards refused in a row; sets the backoff after a refusal.
    pub(super) refusals: u32,
    /// The worker that refused the latest award: until the task is awarded
    /// again it wins only when no other capable worker bids.
    pub(super) refused_by: Option<WorkerId>,
    /// The worker that holds the task, or ran it last.
    pub(super) worker: Option<WorkerId>,
    /// Tasks waiting for this one (emptied once it finishes).
    pub(super) dependents: Vec<Slot>,
    /// Answers in the open auction.
    pub(super) bids: Vec<SeenBid>,
    pub(super) submitted_at: Duration,
    /// When the task last became ready; its capable-worker deadline counts
    /// from here.
    pub(super) ready_at: Duration,
    /// Time spent in the current run of auctions that drew no usable bid,
    /// with their backoffs (reset by an award, by parking, or when every
    /// capable worker is busy). `NoBids` fires on this, so time spent
    /// queued while workers were busy is never held against the bidders.
    pub(super) no_bids_for: Duration,
    pub(super) award: Option<Box<Award>>,
    pub(super) output: Option<Payload>,
    pub(super) error: Option<Box<TaskError>>,
    pub(super) run_ms: Option<u64>,
    pub(super) finished_at: Option<Duration>,
}

impl Entry {
    /// A task waiting for `waiting_on` dependencies.
    pub(super) fn new(task: Task, deps: Box<[Slot]>, role: RoleId, waiting_on: u32, now: Duration) -> Self {
        Entry {
            task,
            deps,
            role,
            phase: Phase::Waiting,
            waiting_on,
            attempts: 0,
            round: 0,
            refusals: 0,
            refused_by: None,
            worker: None,
            dependents: Vec::new(),
            bids: Vec::new(),
            submitted_at: now,
            ready_at: now,
            no_bids_for: Duration::ZERO,
            award: None,
            output: None,
            error: None,
            run_ms: None,
            finished_at: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    /// An auction's bid window ends.
    CloseAuction,
    /// A backed-off task rejoins its queue.
    Retry,
    /// A parked task's capable-worker deadline.
    Deadline,
    /// A running attempt's timeout; stale once the task moved to another
    /// attempt.
    RunTimeout { attempt: u32 },
}
