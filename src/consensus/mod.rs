//! The ledger replicated with Raft: the scheduler's events are the entries
//! of a Raft log kept by tikv's raft-rs, whose leader is the admin. Its
//! `RawNode` is a pure tick/step/ready state machine, so it runs inside the
//! event loop and the seeded simulator alike, with no threads or timers of
//! its own. Pure: no clock, no network, no disk.
//!
//! - [`LogStore`]: the log (entries after the latest snapshot, hard state,
//!   configuration); for a durable replica it records what changed
//!   ([`LogChanges`]) for the driver to write to disk first.
//! - [`Replica`]: one Raft replica driven step by step; proposals of event
//!   batches in, committed batches and membership changes out.
//! - [`Ledger`]: the replicated scheduler. The admin's scheduler decides
//!   at once and holds its outputs until their events commit; a follower's
//!   applies what is committed and takes office with it; membership
//!   (learners, up to N voters, silent voters replaced, the preferred
//!   voter leading), snapshots, reopening from disk and the operator's
//!   recovery.
//!
//! A whole-mesh simulator (`sim.rs`, tests only) runs three ledgers, worker
//! nodes and a client through kills, pauses, partitions, message loss and
//! crashes with restarts from disk, over hundreds of seeds.

mod ledger;
mod replica;
#[cfg(test)]
mod sim;
mod store;

pub use ledger::{Ledger, LedgerConfig, LedgerStep, OfficeChange};
pub use replica::{Committed, ConsensusError, MemberChange, Membership, Replica, ReplicaConfig, Step};
#[cfg(test)]
pub(crate) use store::LogImage;
pub use store::{LogChanges, LogStore};
