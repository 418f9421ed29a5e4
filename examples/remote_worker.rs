//! Run with: cargo run --example remote_worker -- <MULTIADDR> [NAME:ROLE:SKILL[:SLOTS]]
//!
//! A worker-only node: joins an existing mesh by multiaddr, hosts one worker
//! that uppercases its text input (raw UTF-8, as `input = "..."` in a task
//! file gives it), never becomes admin, and runs until Ctrl-C or SIGTERM.
//!
//! ```text
//! taskmesh node --listen /ip4/127.0.0.1/tcp/0 --no-mdns      # prints "listening on ADDR"
//! cargo run --example remote_worker -- ADDR Upper:worker:5
//! taskmesh submit examples/pipeline.toml --join ADDR --no-mdns --wait-workers 1
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use taskmesh::builtin::WorkerArg;
use taskmesh::{Multiaddr, Node, NodeConfig, NodeHandle, Payload, ProcessError, TaskRequest, Worker};

const USAGE: &str = "usage: cargo run --example remote_worker -- <MULTIADDR> [NAME:ROLE:SKILL[:SLOTS]]
  MULTIADDR  an admin-eligible peer of the mesh, as `taskmesh node` prints it,
             e.g. /ip4/127.0.0.1/tcp/7411/p2p/12D3KooW...
  NAME:ROLE:SKILL[:SLOTS]  the worker to host (default Upper:worker:5)";

/// Uppercases the task's input text.
struct Upper(WorkerArg);

#[async_trait::async_trait]
impl Worker for Upper {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn role(&self) -> &str {
        &self.0.role
    }
    fn skill(&self) -> u32 {
        self.0.skill
    }
    fn slots(&self) -> u32 {
        self.0.slots
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        let text = std::str::from_utf8(req.input.as_bytes())?;
        println!(
            "{}: task {:?} (difficulty {}, attempt {})",
            self.0.name, req.name, req.difficulty, req.attempt
        );
        Ok(Payload::from_bytes(text.to_uppercase()))
    }
}

/// The multiaddr to join and the worker to host, from the command line.
fn parse_args(args: &[String]) -> anyhow::Result<(Multiaddr, WorkerArg)> {
    let (addr, spec) = match args {
        [addr] => (addr.as_str(), "Upper:worker:5"),
        [addr, spec] => (addr.as_str(), spec.as_str()),
        [] => bail!("missing the MULTIADDR of a peer to join"),
        _ => bail!("too many arguments"),
    };
    let addr: Multiaddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not a multiaddr"))?;
    if addr.is_empty() {
        bail!("the MULTIADDR is empty");
    }
    Ok((addr, spec.parse()?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let (addr, spec) = parse_args(&args).map_err(|e| anyhow!("{e:#}\n\n{USAGE}"))?;
    let cfg = NodeConfig::default().join(addr.clone()).not_admin();
    let node = Node::start(cfg, vec![Arc::new(Upper(spec.clone()))]).await?;
    println!("peer id: {}", node.peer_id());
    for a in node.listen_addrs() {
        println!("listening on {a}");
    }

    tokio::select! {
        r = register(&node, &addr, &spec) => r?,
        r = shutdown_signal() => {
            r?;
            node.shutdown().await;
            return Ok(());
        }
    }
    println!("running until Ctrl-C");
    shutdown_signal().await?;
    println!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// Waits until the admin lists this node's worker.
async fn register(node: &NodeHandle, addr: &Multiaddr, spec: &WorkerArg) -> anyhow::Result<()> {
    let wait = Duration::from_secs(10);
    let state = node
        .wait_for_state(wait, |s| !s.connected.is_empty() || !s.failed_joins.is_empty())
        .await
        .with_context(|| format!("cannot connect to {addr} within {wait:?}"))?;
    if let Some((_, why)) = state.failed_joins.first() {
        bail!("cannot connect to {addr}: {why}");
    }
    let admin = node
        .wait_for_admin(wait)
        .await
        .with_context(|| format!("no admin found within {wait:?}: is the address right and the mesh up?"))?;
    println!("admin: {admin}");
    let me = node.peer_id().to_base58();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let workers = node.connected_workers().await.unwrap_or_default();
        if workers
            .iter()
            .any(|w| w.node.as_str() == me && w.name == spec.name)
        {
            println!(
                "worker {} registered (role {}, skill {}, slots {})",
                spec.name, spec.role, spec.skill, spec.slots
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the admin did not list worker {} within {wait:?}", spec.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
