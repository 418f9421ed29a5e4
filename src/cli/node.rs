//! `taskmesh node`: one peer of the mesh.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use taskmesh::builtin::{EchoWorker, WorkerArg};
use taskmesh::{identity, Multiaddr, Node, Worker};

use super::{secs, MeshArgs};

/// Options of `taskmesh node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to listen on (repeatable). Use tcp/0 for any free port.
    #[arg(
        long = "listen",
        value_name = "MULTIADDR",
        default_value = "/ip4/0.0.0.0/tcp/7411"
    )]
    pub listen: Vec<Multiaddr>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Identity file (ed25519, created with mode 0600 if missing): the peer
    /// id survives restarts.
    #[arg(long, value_name = "FILE", conflicts_with = "seed")]
    pub key: Option<PathBuf>,
    /// Derive the identity from a number (demos and tests; not secret).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Built-in worker NAME:ROLE:SKILL[:SLOTS] (repeatable): works for
    /// difficulty × --work-ms, then echoes its input.
    #[arg(long = "worker", value_name = "NAME:ROLE:SKILL[:SLOTS]")]
    pub workers: Vec<WorkerArg>,
    /// Milliseconds a built-in worker spends per point of difficulty.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub work_ms: u64,
    /// Never become admin.
    #[arg(long)]
    pub no_admin: bool,
    /// Preference to be admin (0-255; higher wins elections).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub admin_priority: u8,
    /// Seconds a task may wait for a capable worker before failing.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub no_worker_timeout: f64,
    /// Seconds to let running tasks finish on Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub grace: f64,
}

pub async fn run(a: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = a.mesh.config()?;
    cfg.listen = a.listen.clone();
    cfg.keypair = Some(match (&a.key, a.seed) {
        (Some(path), _) => load_or_create_key(path)?,
        (None, Some(seed)) => taskmesh::keypair_from_seed(seed),
        (None, None) => identity::Keypair::generate_ed25519(),
    });
    cfg.election.eligible = !a.no_admin;
    cfg.election.priority = a.admin_priority;
    cfg.scheduler.no_worker_timeout = secs(a.no_worker_timeout).context("--no-worker-timeout")?;
    let grace = secs(a.grace).context("--grace")?;
    let step = Duration::from_millis(a.work_ms);
    let workers: Vec<Arc<dyn Worker>> = a
        .workers
        .iter()
        .map(|spec| {
            Arc::new(EchoWorker {
                spec: spec.clone(),
                step,
            }) as Arc<dyn Worker>
        })
        .collect();
    let node = Node::start(cfg, workers).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "peer id: {}", node.peer_id())?;
        for addr in node.listen_addrs() {
            writeln!(out, "listening on {addr}")?;
        }
        for w in &a.workers {
            writeln!(
                out,
                "worker {} (role {}, skill {}, slots {})",
                w.name, w.role, w.skill, w.slots
            )?;
        }
        out.flush()?;
    }
    wait_for_signal().await?;
    tracing::info!(?grace, "signal received; shutting down");
    node.shutdown_with_grace(grace).await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Reads an identity file, or creates one (mode 0600) when it is missing.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<identity::Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => identity::Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a taskmesh key file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = identity::Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().context("encoding the new key")?;
            write_private(path, &bytes)
                .with_context(|| format!("cannot create key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new identity");
            Ok(key)
        }
        Err(e) => bail!("cannot read key file {}: {e}", path.display()),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
