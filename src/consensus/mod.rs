//! The ledger replicated with Raft (the failover work, in progress).
//!
//! The scheduler's events become entries of a Raft log kept by tikv's
//! raft-rs: its `RawNode` is a pure tick/step/ready state machine, so it
//! runs inside our event loop and our seeded simulator alike, with no
//! threads or timers of its own. The Raft leader is the admin.
//!
//! So far: the log store ([`LogStore`]); one replica driven step by step
//! ([`Replica`]), which turns proposals of event batches into committed
//! batches on every replica; and the replicated scheduler ([`Ledger`]),
//! where the leader's scheduler decides, holds its outputs until their
//! events commit, and a follower's takes office with the committed ledger.
//! Nodes do not use them yet; wiring them into the network comes next.

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
