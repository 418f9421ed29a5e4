//! Client commands: `submit`, `status` and `workers`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use taskmesh::{Node, TaskId};

use super::output;
use super::{existing, secs, MeshArgs};

/// Options of `taskmesh submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The task file (TOML, or JSON).
    pub file: PathBuf,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Print one JSON object per task instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print the task ids and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Before submitting, wait until the admin lists this many workers.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub wait_workers: usize,
    /// Give up waiting for results after this many seconds (exit 1).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// Options of `taskmesh status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Task ids (uuids).
    #[arg(required = true)]
    pub ids: Vec<TaskId>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `taskmesh workers`.
#[derive(Args, Debug)]
pub struct WorkersArgs {
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Starts a client node (no workers, never admin) and waits for an admin.
async fn client(mesh: &MeshArgs) -> anyhow::Result<Node> {
    if mesh.join.is_empty() && mesh.no_mdns {
        anyhow::bail!("nothing to join: give --join MULTIADDR or allow mDNS");
    }
    let mut cfg = mesh.config()?.not_admin();
    cfg.listen = vec![];
    let wait = cfg.admin_wait;
    let node = Node::start(cfg, vec![]).await?;
    node.wait_for_admin(wait)
        .await
        .with_context(|| format!("no admin found within {wait:?}"))?;
    Ok(node)
}

pub async fn run(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    existing(&a.file, "task file")?;
    let tasks = taskmesh::taskfile::load(&a.file)?;
    let node = client(&a.mesh).await?;
    if a.wait_workers > 0 {
        node.wait_for_workers(a.wait_workers, Duration::from_secs(30))
            .await
            .with_context(|| format!("fewer than {} workers joined within 30 s", a.wait_workers))?;
    }
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let ids = node.submit_batch(tasks).await?;
    if a.no_wait {
        for (id, name) in ids.iter().zip(&names) {
            println!("{id}\t{name}");
        }
        node.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    let wait = node.wait_all(ids);
    let reports = match a.timeout {
        Some(t) => {
            let limit = secs(t).context("--timeout")?;
            tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| anyhow::anyhow!("results not ready within {t} s"))??
        }
        None => wait.await?,
    };
    if a.json {
        output::json_lines(&reports)?;
    } else {
        output::task_table(&reports);
    }
    node.shutdown().await;
    let ok = reports.iter().all(|r| r.succeeded());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let node = client(&a.mesh).await?;
    let reports = node.tasks(a.ids.clone()).await?;
    node.shutdown().await;
    let mut known = Vec::new();
    let mut unknown = false;
    for (id, r) in a.ids.iter().zip(reports) {
        match r {
            Some(r) => known.push(r),
            None => {
                eprintln!("error: unknown task id {id}");
                unknown = true;
            }
        }
    }
    if a.json {
        output::json_lines(&known)?;
    } else {
        output::task_table(&known);
    }
    Ok(if unknown {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn workers(a: WorkersArgs) -> anyhow::Result<ExitCode> {
    let node = client(&a.mesh).await?;
    let workers = node.connected_workers().await?;
    node.shutdown().await;
    if a.json {
        output::json_lines(&workers)?;
    } else {
        output::worker_table(&workers);
    }
    Ok(ExitCode::SUCCESS)
}
