//! # taskmesh
//!
//! A peer-to-peer task-processing mesh: Ceylon's *TaskProcessingPlayground*,
//! done for real over libp2p.
//!
//! Module map, top to bottom (each layer depends only on those above it):
//!
//! - [`task`]: plain data: ids, tasks, payloads, statuses, reports.
//! - [`scheduler`]: the admin's brain, a pure state machine (DAG, auctions,
//!   awards, worker liveness). No I/O, no clock.
//! - [`consensus`]: the ledger: the scheduler's events replicated with Raft
//!   (raft-rs) among a few voters; the Raft leader is the admin. Pure.
//! - [`protocol`]: every message on the wire and its size-limited codec.
//! - [`worker`]: the [`Worker`] trait users implement, and the runtime that
//!   runs accepted tasks with bounded concurrency.
//! - [`net`]: the libp2p swarm and the one event loop per node that feeds the
//!   state machines and carries out their outputs.
//! - [`node`] and [`playground`]: the public API, built on cheap handles.

#![warn(missing_docs)]

pub mod access;
pub mod builtin;
pub mod calls;
pub mod config;
pub mod consensus;
mod disk;
pub mod metrics;
pub mod net;
pub mod node;
pub mod playground;
pub mod protocol;
pub mod scheduler;
pub mod task;
pub mod taskfile;
pub mod web;
pub mod worker;

pub use disk::{load_or_create_key, DiskError};
pub use node::{keypair_from_seed, AdminConfig, Node, NodeConfig, NodeHandle};
pub use playground::Playground;
pub use task::{
    check_name, AttemptOutcome, AttemptRecord, NameError, NodeId, Payload, PayloadError, Task, TaskError,
    TaskId, TaskReport, TaskStatus, Trigger, WorkerInfo, MAX_NAME_BYTES, MAX_WORKER_QUEUE, MAX_WORKER_SLOTS,
};
pub use worker::{Cancel, Offer, ProcessError, TaskRequest, Worker};

/// Re-exported so users can name multiaddrs and peer ids without adding
/// libp2p themselves.
pub use libp2p::{identity, Multiaddr, PeerId};

use std::time::Duration;

/// Everything that can go wrong in the library's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node's event loop has stopped (shut down or crashed).
    #[error("the node is shut down")]
    NodeGone,
    /// A task ended in failure.
    #[error("task failed")]
    Task(#[from] TaskError),
    /// A task's output was asked for before it finished.
    #[error("task {0} is not finished (status: {1})")]
    NotFinished(TaskId, TaskStatus),
    /// A payload could not be encoded or decoded.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The admin refused a submitted batch.
    #[error("submission refused")]
    Submit(#[from] scheduler::SubmitError),
    /// This node knew of no admin within the wait: none was elected, or
    /// no peer it reaches knows one (a client that joined only the admin
    /// loses the mesh with it; join more than one node).
    #[error(
        "no admin known within {0:?}: none was elected, or no node this one reaches knows of one \
         (is the mesh reachable? a client that joined only the admin loses the mesh with it: join more than one node)"
    )]
    NoAdmin(Duration),
    /// This side of the mesh reaches too few of the ledger's voters to have
    /// an admin (a partition, or voters down): new work is refused at once.
    #[error("no admin on this side of the mesh: it reaches {reached} of the ledger's {voters} voters, and a majority ({}) is needed", voters / 2 + 1)]
    NoQuorum {
        /// Voters reached (this node included, when it is one).
        reached: usize,
        /// Voters of the ledger.
        voters: usize,
    },
    /// The admin that held the call went away.
    #[error("the admin was lost: {0}")]
    AdminLost(String),
    /// The admin does not know this task id.
    #[error("unknown task id {0}")]
    UnknownTask(TaskId),
    /// The task finished and was evicted from the admin's memory after its
    /// retention.
    #[error("task {0} finished and was evicted after its retention")]
    Evicted(TaskId),
    /// A network failure (dial, listen, request).
    #[error("network: {0}")]
    Transport(String),
    /// The peer understood the request but refused it.
    #[error("refused: {0}")]
    Refused(String),
    /// A peer answered something that makes no sense here.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The node or its workers are set up wrongly.
    #[error("configuration: {0}")]
    Config(String),
    /// A bounded wait ran out.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The data directory ([`NodeConfig::data_dir`]) cannot be used.
    #[error("data directory")]
    Disk(#[from] DiskError),
}
