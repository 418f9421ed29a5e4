//! The ledger replicated with Raft (the failover work, in progress).
//!
//! The scheduler's events become entries of a Raft log kept by tikv's
//! raft-rs: its `RawNode` is a pure tick/step/ready state machine, so it
//! runs inside our event loop and our seeded simulator alike, with no
//! threads or timers of its own. The Raft leader is the admin.
//!
//! So far: the log store ([`LogStore`]) and one replica driven step by step
//! ([`Replica`]), which turns proposals of event batches into committed
//! batches on every replica. Nodes do not use them yet; wiring them between
//! the scheduler and the network comes next.

mod replica;
mod store;

pub use replica::{ConsensusError, Replica, ReplicaConfig, Step};
pub use store::LogStore;
