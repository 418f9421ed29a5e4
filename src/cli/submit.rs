//! Client commands: `submit`, `status` and `workers`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use taskmesh::{Node, TaskId, TaskReport};

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
    /// Task ids (uuids); none lists the most recent tasks (up to 1000).
    pub ids: Vec<TaskId>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `taskmesh peers`.
#[derive(Args, Debug)]
pub struct PeersArgs {
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
/// Fails fast when every `--join` address is unreachable and mDNS is off.
async fn client(mesh: &MeshArgs) -> anyhow::Result<Node> {
    if mesh.join.is_empty() && mesh.no_mdns {
        anyhow::bail!("nothing to join: give --join MULTIADDR or allow mDNS");
    }
    let mut cfg = mesh.config()?.not_admin();
    cfg.listen = vec![];
    let wait = cfg.admin_wait;
    let joins = cfg.join.len();
    let only_joins = !cfg.mdns;
    let node = Node::start(cfg, vec![]).await?;
    let state = node
        .wait_for_state(wait, |s| {
            s.admin.is_some() || (only_joins && s.failed_joins.len() == joins)
        })
        .await
        .map_err(|_| anyhow::anyhow!("no admin found within {wait:?}; is the mesh reachable?"))?;
    if state.admin.is_none() {
        let why: Vec<String> = state
            .failed_joins
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect();
        anyhow::bail!("cannot reach the mesh: {}", why.join("; "));
    }
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
    let wait = follow(&node, ids);
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
    if a.ids.is_empty() {
        known.extend(reports.into_iter().flatten());
    } else {
        for (id, r) in a.ids.iter().zip(reports) {
            match r {
                Some(r) => known.push(r),
                None => {
                    eprintln!("error: unknown task id {id}");
                    unknown = true;
                }
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

/// Waits for every task, showing progress on stderr as tasks finish: a bar
/// on a terminal, one line per finished task otherwise.
async fn follow(node: &Node, ids: Vec<TaskId>) -> anyhow::Result<Vec<TaskReport>> {
    let mut progress = Progress::new(ids.len());
    let mut done: HashMap<TaskId, TaskReport> = HashMap::new();
    let mut pending = ids.clone();
    while !pending.is_empty() {
        for r in node.wait_any(pending.clone()).await? {
            progress.finished(&r);
            done.insert(r.id, r);
        }
        pending.retain(|id| !done.contains_key(id));
        // Each round names every pending id: pace the rounds so a large
        // batch does not turn progress into a flood of requests.
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    progress.close();
    Ok(ids.iter().filter_map(|id| done.remove(id)).collect())
}

/// Progress on stderr.
struct Progress {
    total: usize,
    ok: usize,
    failed: usize,
    bar: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = std::io::stderr().is_terminal();
        let p = Progress {
            total,
            ok: 0,
            failed: 0,
            bar,
        };
        p.draw();
        p
    }

    fn finished(&mut self, r: &TaskReport) {
        if r.succeeded() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        if self.bar {
            return self.draw();
        }
        let who = r.worker.as_deref().unwrap_or("-");
        let n = self.ok + self.failed;
        eprintln!(
            "[{n}/{}] {} {} (worker {who}, {} ms)",
            self.total, r.name, r.status, r.elapsed_ms
        );
    }

    fn draw(&self) {
        if !self.bar {
            return;
        }
        const WIDTH: usize = 30;
        let done = self.ok + self.failed;
        let filled = (done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
        let (bar, rest) = ("#".repeat(filled), ".".repeat(WIDTH - filled));
        eprint!(
            "\r[{bar}{rest}] {done}/{} done, {} failed",
            self.total, self.failed
        );
        let _ = std::io::stderr().flush();
    }

    fn close(&self) {
        if self.bar {
            eprintln!();
        }
    }
}

pub async fn peers(a: PeersArgs) -> anyhow::Result<ExitCode> {
    let node = client(&a.mesh).await?;
    let peers = node.peers().await?;
    node.shutdown().await;
    if a.json {
        output::json_lines(&peers)?;
    } else {
        output::peer_table(&peers);
    }
    Ok(ExitCode::SUCCESS)
}
