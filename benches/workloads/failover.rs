//! W11: admin failover. A fresh mesh per run: three admin-eligible
//! processes (the founder, admin with no workers, and two voters hosting a
//! worker each) and this process as a client joined to a voter. Once the
//! three voters keep the ledger, the admin is killed (`SIGKILL`) and the
//! client at once submits one trivial task: the time from the kill to its
//! report is how long the mesh could not work (election, the new admin
//! taking office, the award and the run).

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use taskmesh::{Multiaddr, Node, NodeConfig, Task, TaskStatus, Worker};

use crate::bodies::BenchWorker;
use crate::mesh::{child_runtime, exit_when_stdin_closes, Proc};
use crate::util::{ms, Line};
use crate::Plan;

/// Child mode `--voter-process <join multiaddr | -> <worker name | -> <seed>
/// <mesh>`: an admin-eligible node, founding the ledger without a join
/// address. Prints `addr <multiaddr>` once listening and `voters <n>`
/// whenever its replica's voter count changes.
pub fn voter_main(args: &[String]) -> anyhow::Result<()> {
    let [join, name, seed, mesh] = args else {
        bail!("usage: --voter-process <join|-> <worker|-> <seed> <mesh>");
    };
    exit_when_stdin_closes();
    let mut cfg = NodeConfig {
        mesh: mesh.clone(),
        ..NodeConfig::default()
    }
    .with_seed(seed.parse().context("seed")?);
    if join != "-" {
        cfg = cfg.join(join.parse::<Multiaddr>().context("join multiaddr")?);
    }
    let workers: Vec<std::sync::Arc<dyn Worker>> = match name.as_str() {
        "-" => vec![],
        n => vec![std::sync::Arc::new(BenchWorker { name: n.to_string() })],
    };
    child_runtime()?.block_on(async move {
        let node = Node::start(cfg, workers).await?;
        crate::mesh::print_addr(&node)?;
        let mut out = std::io::stdout();
        let mut state = node.watch_state();
        let mut last = 0;
        loop {
            let voters = state.borrow_and_update().voters;
            if voters != last {
                writeln!(out, "voters {voters}")?;
                out.flush()?;
                last = voters;
            }
            if state.changed().await.is_err() {
                return Ok(());
            }
        }
    })
}

/// A voter process and its stdout lines.
struct Voter {
    proc: Proc,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Voter {
    fn spawn(
        join: Option<&Multiaddr>,
        worker: Option<&str>,
        seed: u64,
        mesh: &str,
    ) -> anyhow::Result<(Voter, Multiaddr)> {
        let args = vec![
            "--voter-process".to_string(),
            join.map_or("-".into(), |a| a.to_string()),
            worker.unwrap_or("-").to_string(),
            seed.to_string(),
            mesh.to_string(),
        ];
        let mut proc = Proc::spawn(worker.unwrap_or("admin"), &args, true)?;
        let lines = BufReader::new(proc.stdout().context("stdout")?).lines();
        let mut v = Voter { proc, lines };
        let first = v.next_line()?;
        let addr = first
            .strip_prefix("addr ")
            .ok_or_else(|| anyhow!("voter said {first:?}"))?
            .parse()?;
        Ok((v, addr))
    }

    fn next_line(&mut self) -> anyhow::Result<String> {
        self.lines
            .next()
            .ok_or_else(|| anyhow!("a voter process exited early"))?
            .context("reading a voter process")
    }

    /// Waits for `voters <n>` with at least `n` voters.
    fn wait_voters(&mut self, n: usize) -> anyhow::Result<()> {
        loop {
            let line = self.next_line()?;
            if line.strip_prefix("voters ").and_then(|v| v.parse::<usize>().ok()) >= Some(n) {
                return Ok(());
            }
        }
    }
}

pub async fn w11(plan: &Plan) -> anyhow::Result<Line> {
    let runs = plan.runs.max(5);
    let mut out = vec![];
    for run in 0..runs {
        let d = failover(run).await?;
        eprintln!(
            "[W11] run {}/{runs}: the new admin ran a task {:.1} ms after the kill",
            run + 1,
            ms(d)
        );
        out.push(ms(d));
    }
    Ok(Line::new("W11", runs, "kill_admin_to_first_task_ms", &out).with(
        "method",
        json!("fresh mesh per run: 3 admin-eligible processes (the admin, and 2 voters with a 1-slot worker each), this process a client joined to a voter; SIGKILL of the admin, then one task submitted at once; time from the kill to its final report (ticks of 200 ms; an election 5-10 ticks after the last heartbeat, which comes every 2 ticks)"),
    ))
}

/// One run: the time from `kill -9` of the admin to a task's report.
async fn failover(run: usize) -> anyhow::Result<Duration> {
    let mesh = format!("bench-w11-{}-{run}", std::process::id());
    let seed = 5000 + 10 * run as u64;
    let (mut admin, addr) = Voter::spawn(None, None, seed, &mesh)?;
    let (mut b, addr_b) = Voter::spawn(Some(&addr), Some("worker-1"), seed + 1, &mesh)?;
    let (mut c, _) = Voter::spawn(Some(&addr), Some("worker-2"), seed + 2, &mesh)?;
    for v in [&mut admin, &mut b, &mut c] {
        v.wait_voters(3)?;
    }
    let client = Node::start(
        NodeConfig {
            mesh: mesh.clone(),
            ..NodeConfig::default()
        }
        .not_admin()
        .join(addr_b),
        vec![],
    )
    .await?;
    client.wait_for_workers(2, Duration::from_secs(30)).await?;
    let t0 = Instant::now();
    kill(Pid::from_raw(admin.proc.pid() as i32), Signal::SIGKILL)?;
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        client.add_and_execute_task(Task::new("identity-after", crate::bodies::ROLE, 1), true),
    )
    .await
    .map_err(|_| anyhow!("W11: no report within 30 s of the kill"))??;
    let took = t0.elapsed();
    ensure!(report.status == TaskStatus::Completed, "W11: {report:?}");
    client.shutdown().await;
    drop((admin, b, c));
    Ok(took)
}
