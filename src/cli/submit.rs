//! Client commands: `submit`, `status`, `workers` and `peers`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use taskmesh::scheduler::Lookup;
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
    /// Task ids (uuids); none lists the most recent tasks (up to 1000, and
    /// fewer when their reports exceed one 8 MiB answer).
    #[arg(value_parser = super::task_id)]
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

pub async fn run(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    existing(&a.file, "task file")?;
    let tasks = taskmesh::taskfile::load(&a.file)?;
    let node = a.mesh.client().await?;
    if a.wait_workers > 0 {
        node.wait_for_workers(a.wait_workers, Duration::from_secs(30))
            .await
            .with_context(|| format!("fewer than {} workers joined within 30 s", a.wait_workers))?;
    }
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let ids = node.submit_batch(tasks).await?;
    let names: HashMap<TaskId, String> = ids.iter().copied().zip(names).collect();
    if a.no_wait {
        for id in &ids {
            println!("{id}\t{}", names[id]);
        }
        node.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = match a.timeout {
        Some(t) => Some((tokio::time::Instant::now() + secs(t).context("--timeout")?, t)),
        None => None,
    };
    let done = follow(&node, ids, deadline).await;
    done.print(a.json, &names)?;
    node.shutdown().await;
    if let Some(e) = done.error {
        // What finished is printed above; the rest is named on stderr.
        return Err(e);
    }
    Ok(if done.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Exit 1 when some id is unknown; an evicted id is reported, not an error.
pub async fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let node = a.mesh.client().await?;
    let lookups = node.lookup(a.ids.clone()).await;
    node.shutdown().await;
    let (mut known, mut evicted, mut unknown) = (Vec::new(), Vec::new(), false);
    // Without ids the admin lists recent tasks, all found.
    let ids = a.ids.iter().map(Some).chain(std::iter::repeat(None));
    for (id, lookup) in ids.zip(lookups?) {
        match (lookup, id) {
            (Lookup::Found(r), _) => known.push(*r),
            (Lookup::Evicted, Some(&id)) => evicted.push(id),
            (Lookup::Unknown, Some(id)) => {
                eprintln!("error: unknown task id {id}");
                unknown = true;
            }
            (_, None) => {}
        }
    }
    if a.json {
        output::json_lines(&known)?;
        output::evicted_lines(&evicted)?;
    } else {
        if a.ids.is_empty() || !known.is_empty() {
            output::task_table(&known);
        }
        for id in &evicted {
            println!("{id}  finished, and was evicted after its retention: its report is no longer kept");
        }
    }
    Ok(if unknown {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn workers(a: WorkersArgs) -> anyhow::Result<ExitCode> {
    let node = a.mesh.client().await?;
    let workers = node.connected_workers().await?;
    node.shutdown().await;
    if a.json {
        output::json_lines(&workers)?;
    } else {
        output::worker_table(&workers);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `follow` saw: the reports in submission order, the tasks that
/// finished but were evicted before their reports were read, and, when
/// the wait ended early (an error, `--timeout`), why and what was left.
struct Followed {
    reports: Vec<TaskReport>,
    evicted: Vec<TaskId>,
    unfinished: Vec<TaskId>,
    error: Option<anyhow::Error>,
}

impl Followed {
    /// Every task completed or was skipped, and none went unread.
    fn succeeded(&self) -> bool {
        self.evicted.is_empty() && self.reports.iter().all(|r| r.status.is_success())
    }

    /// Results on stdout (a table, or JSON lines); unread tasks on stderr.
    fn print(&self, json: bool, names: &HashMap<TaskId, String>) -> anyhow::Result<()> {
        if json {
            output::json_lines(&self.reports)?;
            output::evicted_lines(&self.evicted)?;
        } else {
            output::task_table(&self.reports);
        }
        for id in &self.evicted {
            let name = names.get(id).map_or("?", |n| n.as_str());
            eprintln!("task {name} ({id}) finished, but the admin evicted it before its report was read");
        }
        for id in &self.unfinished {
            let name = names.get(id).map_or("?", |n| n.as_str());
            eprintln!(
                "task {name} ({id}) not finished when the wait ended (`taskmesh status {id}` tells later)"
            );
        }
        Ok(())
    }
}

/// Waits for every task, showing progress on stderr as tasks finish: a bar
/// on a terminal, one line per finished task otherwise. Stops early on an
/// error or at `deadline` (and the `--timeout` seconds it came from),
/// keeping what finished.
async fn follow(node: &Node, ids: Vec<TaskId>, deadline: Option<(tokio::time::Instant, f64)>) -> Followed {
    let mut progress = Progress::new(ids.len());
    let mut done: HashMap<TaskId, TaskReport> = HashMap::new();
    let mut evicted = Vec::new();
    let mut pending = ids.clone();
    let mut error = None;
    while !pending.is_empty() {
        let wait = node.wait_any(pending.clone());
        let waited = match deadline {
            Some((at, secs)) => match tokio::time::timeout_at(at, wait).await {
                Ok(r) => r,
                Err(_) => {
                    error = Some(anyhow::anyhow!("results not ready within {secs} s"));
                    break;
                }
            },
            None => wait.await,
        };
        match waited {
            Ok(reports) => {
                for r in reports {
                    progress.finished(&r);
                    done.insert(r.id, r);
                }
            }
            // No admin to ask: asking which tasks were evicted would only
            // wait for one again.
            Err(
                e @ (taskmesh::Error::NoAdmin(_)
                | taskmesh::Error::NoQuorum { .. }
                | taskmesh::Error::AdminLost(_)
                | taskmesh::Error::NodeGone
                | taskmesh::Error::Timeout(_)),
            ) => {
                error = Some(e.into());
                break;
            }
            // A task evicted before we read it (a short retention) fails
            // the wait; anything else is a real error.
            Err(e) => {
                let gone = evicted_among(node, &pending).await;
                if gone.is_empty() {
                    error = Some(e.into());
                    break;
                }
                progress.evicted(gone.len());
                evicted.extend(gone);
            }
        }
        pending.retain(|id| !done.contains_key(id) && !evicted.contains(id));
        // Each round names every pending id: pace the rounds so a large
        // batch does not turn progress into a flood of requests.
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    progress.close();
    let reports = ids.iter().filter_map(|id| done.remove(id)).collect();
    Followed {
        reports,
        evicted,
        unfinished: pending,
        error,
    }
}

/// The ids among `ids` that the admin says were evicted.
async fn evicted_among(node: &Node, ids: &[TaskId]) -> Vec<TaskId> {
    let Ok(lookups) = node.lookup(ids.to_vec()).await else {
        return Vec::new();
    };
    let gone = ids.iter().zip(lookups).filter(|(_, l)| *l == Lookup::Evicted);
    gone.map(|(id, _)| *id).collect()
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
        if r.status.is_success() {
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
            "[{n}/{}] {} {} (worker {who}, {} ms, attempts {})",
            self.total, r.name, r.status, r.elapsed_ms, r.attempts
        );
    }

    /// Tasks finished without a report to show count as not successful.
    fn evicted(&mut self, n: usize) {
        self.failed += n;
        self.draw();
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
            "\r[{bar}{rest}] {done}/{} done, {} not successful",
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
    let node = a.mesh.client().await?;
    let peers = node.peers().await?;
    node.shutdown().await;
    if a.json {
        output::json_lines(&peers)?;
    } else {
        output::peer_table(&peers);
    }
    Ok(ExitCode::SUCCESS)
}
