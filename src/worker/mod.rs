//! Workers: the [`Worker`] trait users implement, and the runtime that bids
//! for announced tasks and runs awarded ones with bounded concurrency.
//!
//! - this module: the user-facing contract ([`Worker`], [`TaskRequest`],
//!   [`ProcessError`], [`Cancel`]).
//! - `runtime`: which attempts run on this node (slots, refusals,
//!   cancellation, lease renewals), with limits from [`RuntimeConfig`].
//! - `attempt`: one attempt under its cancel signal, execution timeout,
//!   kill grace and output limit, turned into a report.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::scheduler::{DepOutput, Failure};
use crate::task::{Payload, PayloadError, TaskId};

mod attempt;
mod runtime;
#[cfg(test)]
mod tests;

pub use runtime::RuntimeConfig;
pub(crate) use runtime::WorkerRuntime;

/// Longest error text a report carries, in bytes (64 KiB). A worker's error
/// message (or panic text) beyond it is cut on a character boundary and
/// ends with how many bytes were cut, so that a report always fits a frame
/// ([`crate::protocol::DEFAULT_MAX_FRAME`]): a report too large to send
/// would leave its task running for good.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// The error a worker returns from [`Worker::process`]: a message, and
/// whether another attempt might succeed.
///
/// A retryable error is retried as long as the task's `retries` allow (on
/// another capable worker when there is one); a permanent one fails the task
/// at once. Any `std::error::Error` converts into a *retryable* error, so `?`
/// works in `process`; say [`ProcessError::permanent`] when retrying cannot
/// help (bad input, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessError {
    message: String,
    retryable: bool,
}

impl ProcessError {
    /// A retryable error with this message (the same as
    /// [`ProcessError::retryable`]).
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::retryable(message)
    }

    /// An error another attempt might not repeat (a transient fault).
    pub fn retryable(message: impl fmt::Display) -> Self {
        ProcessError {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// An error no retry can fix: the task fails at once, whatever its
    /// `retries`.
    pub fn permanent(message: impl fmt::Display) -> Self {
        ProcessError {
            message: message.to_string(),
            retryable: false,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when a retry might succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for ProcessError {
    fn from(e: E) -> Self {
        ProcessError::retryable(e)
    }
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Self {
        Failure {
            message: e.message,
            retryable: e.retryable,
            timeout_ms: None,
        }
    }
}

/// Tells a running attempt that it should stop: the task was cancelled,
/// passed its deadline or its execution timeout, or was given to another
/// worker. Cheap to clone; every clone sees the same signal.
#[derive(Clone, Debug, Default)]
pub struct Cancel(tokio_util::sync::CancellationToken);

impl Cancel {
    /// Resolves once the attempt is asked to stop. A worker that does not
    /// return within the node's [`RuntimeConfig::kill_grace`] after that is
    /// dropped mid-flight, so anything it must clean up belongs in a `Drop`.
    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }

    /// True once the attempt was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Asks the attempt to stop.
    pub(crate) fn cancel(&self) {
        self.0.cancel()
    }
}

/// What a worker sees of an announced task when deciding whether to bid.
#[derive(Clone, Debug)]
pub struct Offer<'a> {
    /// The task's name.
    pub name: &'a str,
    /// Its difficulty.
    pub difficulty: u32,
    /// Input size in bytes.
    pub input_len: u64,
    /// Tasks this worker holds now.
    pub load: u32,
}

/// One task handed to [`Worker::process`], with typed access to its input
/// and to its dependencies' outputs.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// The task's id.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its difficulty.
    pub difficulty: u32,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// The raw input.
    pub input: Payload,
    /// Outcomes of the task's dependencies, in dependency order (only a
    /// fallback or cleanup task sees failed ones).
    pub deps: Vec<DepOutput>,
    /// Fires when the attempt should stop (cancellation, timeout, deadline).
    pub cancel: Cancel,
}

impl TaskRequest {
    /// The input decoded as `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.input.decode()
    }

    /// The output of the dependency named `name`, decoded as `T`.
    pub fn dependency<T: DeserializeOwned>(&self, name: &str) -> Result<T, PayloadError> {
        let dep = self.deps.iter().find(|d| d.name == name);
        let dep = dep.ok_or_else(|| PayloadError::NoSuchDependency(name.to_string()))?;
        dep_output(dep)?.decode()
    }

    /// Every dependency output decoded as `T`, with the dependency's name;
    /// fails on the first dependency that did not complete.
    pub fn dependencies<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, PayloadError> {
        self.deps
            .iter()
            .map(|d| Ok((d.name.clone(), dep_output(d)?.decode()?)))
            .collect()
    }

    /// True once the attempt is asked to stop; see [`Cancel`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

fn dep_output(dep: &DepOutput) -> Result<&Payload, PayloadError> {
    dep.outcome
        .as_ref()
        .map_err(|error| PayloadError::DependencyFailed {
            name: dep.name.clone(),
            error: error.clone(),
        })
}

/// A task processor. Its name must be unique on its node; its role says which
/// tasks it bids for; its skill how hard a task it can take.
#[async_trait::async_trait]
pub trait Worker: Send + Sync + 'static {
    /// The worker's name, unique on its node.
    fn name(&self) -> &str;
    /// The role it serves: it only sees tasks of this role.
    fn role(&self) -> &str;
    /// Its skill level: the admin awards a task only if `skill >= difficulty`.
    fn skill(&self) -> u32;
    /// How many tasks it may run at once.
    fn slots(&self) -> u32 {
        1
    }
    /// Whether to bid for an announced task of this worker's role. The
    /// default bids when skilled enough and a slot is free.
    fn bid(&self, offer: &Offer<'_>) -> bool {
        offer.difficulty <= self.skill() && offer.load < self.slots()
    }
    /// The worker's standing bid: the hardest task of its role it takes
    /// without an auction. While one of its slots is free, the admin awards
    /// it a ready task up to this difficulty (and its skill) at once, with
    /// no announcement and no bid round trip, choosing among the standing
    /// bids as among an auction's bids (by default the least loaded, then
    /// the lowest sufficient skill). Harder tasks, and any task while no
    /// standing bid fits, go to an open auction answered by
    /// [`Worker::bid`].
    ///
    /// The default stands for every task up to the worker's skill, which is
    /// what the default `bid` would say whenever a slot is free. A worker
    /// whose `bid` is pickier (by name, input size or anything else)
    /// should return `None` here, or the difficulty up to which it takes
    /// anything.
    fn standing_bid(&self) -> Option<u32> {
        Some(self.skill())
    }
    /// Processes one task: an output, or an error for the task's report.
    ///
    /// Should return soon after `request.cancel` fires; the runtime drops the
    /// future when it does not (see [`Cancel`]). An output over the node's
    /// [`RuntimeConfig::max_output`] fails the attempt permanently, and a
    /// panic is a permanent failure too.
    async fn process(&self, request: TaskRequest) -> Result<Payload, ProcessError>;
}
