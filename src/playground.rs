//! Ceylon's `TaskProcessingPlayground`, in Rust: a node that prefers to be
//! the admin, runs the given workers, and cleans up when its scope ends.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use taskmesh::{Playground, Task, Worker};
//! # async fn demo(workers: Vec<Arc<dyn Worker>>) -> Result<(), taskmesh::Error> {
//! let playground = Playground::play(workers).await?;
//! let report = playground.add_and_execute_task(Task::new("t", "worker", 2), true).await?;
//! println!("{} -> {:?}", report.name, report.status);
//! playground.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::node::{Node, NodeConfig, NodeHandle};
use crate::worker::Worker;
use crate::Error;

/// A running playground: the admin of its own mesh (other nodes may join it)
/// plus its local workers. Derefs to [`NodeHandle`] for every call:
/// `add_and_execute_task`, `submit`, `wait`, `execute_batch`, `task`,
/// `connected_workers`.
pub struct Playground {
    node: Node,
}

impl Playground {
    /// Starts a playground on loopback with these workers and waits until it
    /// is admin with its workers registered.
    pub async fn play(workers: Vec<Arc<dyn Worker>>) -> Result<Playground, Error> {
        Self::play_with(NodeConfig::default(), workers).await
    }

    /// Like [`Playground::play`] with a custom node configuration (the
    /// admin preference is added to it).
    pub async fn play_with(cfg: NodeConfig, workers: Vec<Arc<dyn Worker>>) -> Result<Playground, Error> {
        let expected = workers.len();
        let node = Node::start(cfg.prefer_admin(), workers).await?;
        let me = node.peer_id();
        node.wait_for_state(Duration::from_secs(30), |s| s.admin == Some(me) && s.is_admin)
            .await?;
        node.wait_for_workers(expected, Duration::from_secs(10)).await?;
        Ok(Playground { node })
    }

    /// Runs `body` with a playground and shuts it down afterwards, whatever
    /// `body` returns: Ceylon's `async with playground.play(...)`.
    pub async fn scope<R>(
        workers: Vec<Arc<dyn Worker>>,
        body: impl AsyncFnOnce(&Playground) -> R,
    ) -> Result<R, Error> {
        let pg = Self::play(workers).await?;
        let r = body(&pg).await;
        pg.shutdown().await;
        Ok(r)
    }

    /// The underlying node (its peer id, listen addresses, state).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Stops every worker and the node, letting running tasks finish first.
    pub async fn shutdown(self) {
        self.node.shutdown().await
    }
}

impl std::ops::Deref for Playground {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.node
    }
}
