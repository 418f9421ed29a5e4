//! The messages the scheduler exchanges with workers: announcements out,
//! bids in, assignments out, reports in. They cross the wire inside
//! `protocol` messages, so every field here is part of the wire format.

use serde::{Deserialize, Serialize};

use crate::task::{Payload, TaskId};

/// A worker's answer to one announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The announced task.
    pub task: TaskId,
    /// The auction round announced (stale rounds are ignored).
    pub round: u32,
    /// The bidding worker (its node comes from the transport).
    pub worker: String,
    /// The worker's skill.
    pub skill: u32,
    /// Tasks the worker holds, as it sees it.
    pub load: u32,
    /// Its slots.
    pub capacity: u32,
    /// False when the worker answers only to say it will not take the task,
    /// which lets the auction close early.
    pub willing: bool,
}

/// A worker's result for one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The task.
    pub task: TaskId,
    /// The attempt this result belongs to.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: String,
    /// The output, or why the attempt failed.
    pub outcome: Result<Payload, Failure>,
    /// Milliseconds spent processing.
    pub run_ms: u64,
}

/// A failed attempt, as its worker reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The error text.
    pub message: String,
    /// True when another attempt might succeed (a transient error, a
    /// timeout); false for a permanent failure, which is never retried.
    pub retryable: bool,
    /// Set when the attempt was stopped by its execution timeout (this many
    /// milliseconds).
    pub timeout_ms: Option<u64>,
}

impl Failure {
    /// A failure another attempt might fix.
    pub fn retryable(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: true,
            timeout_ms: None,
        }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            retryable: false,
            timeout_ms: None,
        }
    }
}

/// A task offered for bidding (the payload stays at the admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The task.
    pub task: TaskId,
    /// The auction round; bids quote it back.
    pub round: u32,
    /// The task's name.
    pub name: String,
    /// The role that may bid.
    pub role: String,
    /// The difficulty.
    pub difficulty: u32,
    /// Input size in bytes, so a worker can judge the transfer.
    pub input_len: u64,
}

/// One dependency's outcome, handed to a dependent task's worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepOutput {
    /// The dependency's id.
    pub id: TaskId,
    /// The dependency's name.
    pub name: String,
    /// Its output, or, for the dependencies of a fallback or cleanup task
    /// that did not complete, its error text.
    pub outcome: Result<Payload, String>,
}

/// An award: everything the winning worker needs to run the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// Attempt number (1 for the first award); quoted back in the report.
    pub attempt: u32,
    /// The worker that won, on the receiving node.
    pub worker: String,
    /// The task's name.
    pub name: String,
    /// The task's role.
    pub role: String,
    /// The difficulty.
    pub difficulty: u32,
    /// The input.
    pub input: Payload,
    /// Outputs of the task's dependencies, in the task's dependency order.
    pub deps: Vec<DepOutput>,
    /// Execution timeout of this attempt in milliseconds; `None`: no limit.
    pub timeout_ms: Option<u64>,
}
