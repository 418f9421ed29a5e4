//! The records the scheduler keeps: one [`Entry`] per task, one
//! [`WorkerState`] per worker, one [`Role`] per role name. They live in
//! vectors and refer to each other by index ([`Slot`], [`WorkerId`],
//! [`RoleId`]), so the hot paths neither hash nor clone strings.
//!
//! Each record has two parts. The *ledger* part (phase, attempts, outputs,
//! the worker registry) changes only in `events::apply`, so the same events
//! rebuild it anywhere. The *auction* part ([`Soft`], reservations, leases)
//! is this admin's own bookkeeping of rounds in flight; a new admin starts
//! it afresh.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::task::{NodeId, Payload, Task, TaskError, TaskId, Trigger, WorkerSpec};

/// A task's index in the scheduler's task table. Slots of evicted tasks are
/// reused, so anything that outlives a task (timers) names it by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct Slot(pub(super) u32);

/// A worker's index in the registry: the order in which registrations
/// first named it. Events refer to workers this way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) struct WorkerId(pub(super) u32);

/// A role's index in the scheduler's role list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct WorkerState {
    pub(super) node: NodeId,
    pub(super) spec: WorkerSpec,
    pub(super) role: RoleId,
    /// Tasks awarded to this worker whose attempt has not ended (ledger).
    pub(super) load: u32,
    /// False once the worker left (ledger).
    pub(super) present: bool,
    /// Open auctions counting on one of this worker's free slots, each
    /// holding one (auction).
    #[serde(skip)]
    pub(super) reserved: Vec<Slot>,
    /// Attempts the admin ended (aborted, timed out, lost) that the worker
    /// may still be stopping: their slots stay taken until the worker
    /// reports them stopped, or a lease has passed (auction).
    #[serde(skip)]
    pub(super) draining: u32,
    /// Its standing bid is not used until its node is heard from again: an
    /// award it was given that way was lost or refused (auction).
    #[serde(skip)]
    pub(super) standing_off: bool,
}

impl WorkerState {
    /// Slots neither running an attempt, stopping one, nor reserved.
    pub(super) fn free(&self) -> u32 {
        self.spec.capacity.saturating_sub(self.busy() + self.held())
    }

    /// Slots held for open auctions.
    pub(super) fn held(&self) -> u32 {
        u32::try_from(self.reserved.len()).unwrap_or(u32::MAX)
    }

    /// True when its standing bid takes a task of `difficulty` unasked: it
    /// is present, skilled enough, its standing bid reaches that far, and
    /// the bid is not set aside.
    pub(super) fn stands_for(&self, difficulty: u32) -> bool {
        let reaches = self.spec.standing.is_some_and(|d| d >= difficulty);
        reaches && !self.standing_off && self.present && self.spec.skill >= difficulty
    }

    /// Places for an award unasked (from its standing bid): free slots,
    /// then its queue.
    pub(super) fn room_unasked(&self) -> u32 {
        let places = self.spec.capacity.saturating_add(self.spec.queue);
        places.saturating_sub(self.busy() + self.held())
    }

    /// Slots running an attempt or stopping one.
    pub(super) fn busy(&self) -> u32 {
        self.load + self.draining
    }
}

/// A role shared by tasks and workers (`role_ids` maps names to roles).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Role {
    /// The role's name (tasks keep only the role's id).
    pub(super) name: Box<str>,
    /// The registered workers of the role: an auction closes once they all
    /// answered.
    pub(super) workers: Vec<WorkerId>,
}

/// Where a task is, as the ledger says. Each phase carries its own data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Phase {
    /// Waiting for `on` dependencies to finish (for `all_success`, to
    /// complete).
    Waiting {
        on: u32,
    },
    /// Waiting for an award; the auction layer decides how (see [`Stage`]).
    Ready,
    /// A failed attempt will be retried at `until`; ready from then on.
    Retrying {
        until: Duration,
    },
    /// Awarded to `worker` as `attempt`; the worker has not yet accepted.
    Assigned {
        worker: WorkerId,
        attempt: u32,
    },
    /// The worker accepted `attempt` and is processing it.
    Running {
        worker: WorkerId,
        attempt: u32,
    },
    Completed {
        output: Payload,
    },
    Failed {
        error: Box<TaskError>,
    },
    Cancelled {
        reason: Box<str>,
    },
    Skipped {
        reason: Box<str>,
    },
}

impl Phase {
    pub(super) fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::Completed { .. } | Phase::Failed { .. } | Phase::Cancelled { .. } | Phase::Skipped { .. }
        )
    }

    /// The worker and attempt holding the task, if one does.
    pub(super) fn holder(&self) -> Option<(WorkerId, u32)> {
        match *self {
            Phase::Assigned { worker, attempt } | Phase::Running { worker, attempt } => {
                Some((worker, attempt))
            }
            _ => None,
        }
    }

    /// True while the task waits for an award (now or after a retry delay).
    pub(super) fn awaits_award(&self) -> bool {
        matches!(self, Phase::Ready | Phase::Retrying { .. })
    }
}

/// How an attempt ended, compactly (expanded into `AttemptOutcome` for
/// reports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum End {
    Running,
    Completed,
    Failed {
        message: Box<str>,
        retryable: bool,
    },
    TimedOut {
        timeout_ms: u64,
    },
    Lost {
        reason: Box<str>,
    },
    Aborted {
        reason: Box<str>,
    },
    /// Never ran: awarded by an admin that lost its office before sending
    /// it, or still queued when its worker was lost.
    Undelivered {
        reason: Box<str>,
    },
}

/// One attempt in a task's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Attempt {
    pub(super) number: u32,
    pub(super) worker: WorkerId,
    /// Wall-clock milliseconds at the award.
    pub(super) started_ms: u64,
    /// Milliseconds until it ended.
    pub(super) duration_ms: Option<u64>,
    pub(super) end: End,
}

/// One answer in an auction, with the bidder's registered skill and
/// capacity at the time and the load it declared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct SeenBid {
    pub(super) worker: WorkerId,
    pub(super) skill: u32,
    pub(super) load: u32,
    pub(super) capacity: u32,
    pub(super) willing: bool,
}

/// How a task was last awarded; expanded into an `AuctionRecord` when a
/// report asks for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Award {
    /// The willing bids of the deciding round, as the award event has them.
    pub(super) bids: Box<[super::events::BidSeen]>,
    pub(super) reason: super::AwardReason,
    pub(super) rounds: u32,
}

/// A task as submitted (defaults resolved), without what the ledger keeps
/// elsewhere: its role (an [`Entry`]'s `role`) and its dependencies (its
/// `deps`). Fields mean what they mean on [`Task`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredTask {
    pub(super) id: TaskId,
    pub(super) name: String,
    pub(super) difficulty: u32,
    pub(super) input: Payload,
    pub(super) timeout_ms: Option<u64>,
    pub(super) queue_timeout_ms: Option<u64>,
    pub(super) deadline_ms: Option<u64>,
    pub(super) retries: Option<u32>,
    pub(super) max_attempts: Option<u32>,
    pub(super) priority: i32,
    pub(super) trigger: Trigger,
}

impl StoredTask {
    /// Keeps `t`'s fields but its role and dependencies.
    pub(super) fn new(t: Task) -> Self {
        StoredTask {
            id: t.id,
            name: t.name,
            difficulty: t.difficulty,
            input: t.input,
            timeout_ms: t.timeout_ms,
            queue_timeout_ms: t.queue_timeout_ms,
            deadline_ms: t.deadline_ms,
            retries: t.retries,
            max_attempts: t.max_attempts,
            priority: t.priority,
            trigger: t.trigger,
        }
    }

    /// The same, from a borrowed task.
    pub(super) fn copied(t: &Task) -> Self {
        StoredTask {
            name: t.name.clone(),
            input: t.input.clone(),
            ..StoredTask::new(Task {
                name: String::new(),
                role: String::new(),
                input: Payload::default(),
                dependencies: Vec::new(),
                ..*t
            })
        }
    }
}

/// A task as the ledger knows it, with its auction bookkeeping in `soft`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The task as submitted (defaults resolved).
    pub(super) task: StoredTask,
    /// The task's dependencies, in its order.
    pub(super) deps: Box<[Slot]>,
    pub(super) role: RoleId,
    pub(super) phase: Phase,
    /// Awards made so far: the last attempt number.
    pub(super) awards: u32,
    /// Every attempt the worker took, oldest first.
    pub(super) history: Vec<Attempt>,
    /// Tasks waiting for this one (a waiting task leaves the list when it
    /// finishes; emptied once this one finishes).
    pub(super) dependents: Vec<Slot>,
    /// Unfinished tasks that depend on this one: it is kept (not evicted)
    /// while they may still need its output.
    pub(super) holders: u32,
    pub(super) submitted_at: Duration,
    /// Its place in the order of every task ever inserted: a dependency
    /// comes before its dependents, and a slot reused after an eviction
    /// holds a later task (so a finished task's report can tell its
    /// dependencies from the tasks that took their slots).
    pub(super) seq: u64,
    /// When the task last became ready: its queue timeout counts from here.
    pub(super) ready_at: Duration,
    pub(super) finished_at: Option<Duration>,
    pub(super) award: Option<Box<Award>>,
    pub(super) run_ms: Option<u64>,
    /// Allocated only while the task is in the auction layer or holds a
    /// lease; freed when it finishes (most tasks of a large DAG are waiting
    /// or finished, and need none).
    #[serde(skip)]
    pub(super) soft: SoftBox,
}

impl Entry {
    pub(super) fn new(task: StoredTask, deps: Box<[Slot]>, role: RoleId, on: u32, now: Duration) -> Self {
        Entry {
            task,
            deps,
            role,
            phase: Phase::Waiting { on },
            awards: 0,
            history: Vec::new(),
            dependents: Vec::new(),
            holders: 0,
            submitted_at: now,
            seq: 0,
            ready_at: now,
            finished_at: None,
            award: None,
            run_ms: None,
            soft: SoftBox(None),
        }
    }

    /// A free slot's placeholder.
    pub(super) fn vacant() -> Self {
        let task = StoredTask::new(Task::with_id(TaskId(uuid::Uuid::nil()), "", "", 0));
        let mut e = Entry::new(task, Box::new([]), RoleId(0), 0, Duration::ZERO);
        e.phase = Phase::Cancelled { reason: "".into() };
        // Later than any task: never taken for anyone's dependency.
        e.seq = u64::MAX;
        e
    }

    /// Bytes of input and output held for this task.
    pub(super) fn bytes(&self) -> usize {
        self.task.input.len() + self.output().map_or(0, |o| o.len())
    }

    pub(super) fn output(&self) -> Option<&Payload> {
        match &self.phase {
            Phase::Completed { output } => Some(output),
            _ => None,
        }
    }
}

/// Where a task waiting for an award is in the auction layer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) enum Stage {
    /// Not in the auction layer (not awaiting an award, or a retry delay).
    #[default]
    Idle,
    /// In its role's queue under `key`.
    Queued { key: QueueKey },
    /// No registered worker could take it; waiting for one until
    /// `deadline`.
    Parked { seq: u64, deadline: Duration },
    /// Out of line after an auction without an award or a refusal, until
    /// its timer for `until` puts it back.
    Backoff { until: Duration },
    /// Auction open.
    Announced {
        closes_at: Duration,
        reserved: Option<WorkerId>,
    },
}

/// A place in a role's queue: lower first. `rank` is the time the task
/// became ready minus its priority times the ageing step, so a waiting task
/// gains one priority level per step and none starves; `seq` breaks ties
/// in arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct QueueKey {
    pub(super) rank: i64,
    pub(super) seq: u64,
}

/// A task's auction bookkeeping, allocated on first write: reading an
/// unallocated one sees [`IDLE`].
#[derive(Debug, Default)]
pub(super) struct SoftBox(pub(super) Option<Box<Soft>>);

/// The bookkeeping of a task the auction layer has not touched.
static IDLE: Soft = Soft {
    stage: Stage::Idle,
    round: 0,
    bids: Vec::new(),
    refusals: 0,
    refused_by: None,
    no_bids_for: Duration::ZERO,
    lease_until: Duration::ZERO,
    lease_check: None,
    run: RunSeen::Unknown,
};

impl std::ops::Deref for SoftBox {
    type Target = Soft;
    fn deref(&self) -> &Soft {
        self.0.as_deref().unwrap_or(&IDLE)
    }
}

impl std::ops::DerefMut for SoftBox {
    fn deref_mut(&mut self) -> &mut Soft {
        self.0.get_or_insert_with(Box::default)
    }
}

/// The auction layer's bookkeeping for one task.
#[derive(Debug, Default)]
pub(super) struct Soft {
    pub(super) stage: Stage,
    pub(super) round: u32,
    /// Answers in the open auction.
    pub(super) bids: Vec<SeenBid>,
    /// Awards refused in a row; sets the backoff after a refusal.
    pub(super) refusals: u32,
    /// The worker that refused the latest award: until the task is awarded
    /// again it wins only when no other capable worker bids.
    pub(super) refused_by: Option<WorkerId>,
    /// Time spent in the current run of auctions that drew no usable bid,
    /// with their backoffs (reset by an award, by parking, or when every
    /// capable worker is busy). `NoBids` fires on this.
    pub(super) no_bids_for: Duration,
    /// When the current holder's lease ends unless renewed.
    pub(super) lease_until: Duration,
    /// The pending check of the holder's lease; `None` once the attempt
    /// ended, which voids its entry in the line of first checks.
    pub(super) lease_check: Option<LeaseCheck>,
    /// What the holder's node said of the attempt in its renewals: the
    /// execution-timeout backstop counts from its start.
    pub(super) run: RunSeen,
}

/// Whether an attempt has started, as its node's renewals tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum RunSeen {
    /// No renewal of it yet (under this admin).
    #[default]
    Unknown,
    /// Waiting in its worker's queue.
    Waiting,
    /// Running since at most this time (the renewal that first said so).
    Started(Duration),
}

/// Where the holder's lease is next checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaseCheck {
    /// In the scheduler's line of first checks, as entry `seq`.
    Line { seq: u64 },
    /// A renewed lease, by a `TimerKind::Lease` timer of `attempt` due at
    /// `due`.
    Timer { due: Duration, attempt: u32 },
}

/// A timer in the scheduler's timer set, ordered by due time. It names its
/// task by slot, for cheap ordering and access, and by id: a timer whose
/// task was evicted (and its slot reused) is recognised and dropped when it
/// fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timer {
    pub(super) at: Duration,
    pub(super) kind: TimerKind,
    pub(super) slot: Slot,
    pub(super) id: TaskId,
}

/// What a timer is for. Timers name tasks by id and carry what they fence
/// on, so a timer for a task that moved on is simply dropped when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) enum TimerKind {
    /// An auction's bid window ends.
    CloseAuction,
    /// A backed-off task rejoins its queue.
    Backoff,
    /// A retry delay ends.
    Retry,
    /// A parked task's capable-worker deadline.
    NoWorker,
    /// The queue timeout of a ready task.
    QueueTimeout,
    /// The total deadline from submission.
    Deadline,
    /// The admin's backstop for an attempt's execution timeout.
    RunTimeout { attempt: u32 },
    /// The backstop again, put off because the attempt waited in a queue,
    /// started later, or its node was not heard from yet (auction layer:
    /// set from renewals, not from the ledger).
    RunCheck { attempt: u32 },
    /// A renewed lease may have run out.
    Lease { attempt: u32 },
    /// Finished tasks may be due for eviction.
    Retention,
}
