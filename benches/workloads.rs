//! The workloads of `shared/benchmarks.md` (W1–W8), multi-process on
//! loopback, and five of our own: W9 (memory per unfinished task, and after
//! tasks finish), W10 (how fast a killed or paused worker is detected), W11
//! (how fast a new admin works after `kill -9` of the admin), W12 (the same
//! batches on 3, 10, 30 and 100 single-slot worker processes) and W13 (the
//! CPU an idle mesh of 4 nodes uses).
//!
//! Run with: `cargo bench --bench workloads` (add `-- --quick` for a short
//! smoke run, or name workloads: `-- W1 W3`; `--runs N` overrides the runs;
//! `--voters N` sets the ledger's voters for W1–W5 and W8, default 3).
//!
//! Prints one JSON line per workload on stdout; progress goes to stderr.
//! This process is the admin and the client; each of the 3 worker peers is
//! this binary re-executed with `--worker-process` (one slot each). W6 starts
//! fresh processes (`--admin-process` plus workers) per run; W7 runs the pure
//! scheduler in a fresh `--w7-process` per run; W9 a fresh `--w9-process`
//! admin; W10 a fresh mesh per run; W12 a fresh mesh per worker count; W13
//! one fresh mesh.

#[path = "workloads/bodies.rs"]
mod bodies;
#[path = "workloads/cold.rs"]
mod cold;
#[path = "workloads/failover.rs"]
mod failover;
#[path = "workloads/faults.rs"]
mod faults;
#[path = "workloads/heap.rs"]
mod heap;
#[path = "workloads/mesh.rs"]
mod mesh;
#[path = "workloads/network.rs"]
mod network;
#[path = "workloads/scale.rs"]
mod scale;
#[path = "workloads/sched.rs"]
mod sched;
#[path = "workloads/util.rs"]
mod util;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::bail;

/// What to run and how big.
pub struct Plan {
    pub runs: usize,
    pub w1_tasks: usize,
    pub w2_sizes: Vec<usize>,
    pub w3_len: usize,
    pub w4_fan: usize,
    pub w5_tasks: usize,
    pub w7_tasks: usize,
    pub w8_bytes: usize,
    pub w9_tasks: usize,
    /// Finished tasks W9's admin keeps.
    pub w9_retention: usize,
    /// Voters of the mesh's ledger for W1–W5 and W8 (`--voters N`,
    /// default 3: this process and two of the worker processes).
    pub voters: usize,
    /// W12's worker counts and batch sizes.
    pub w12_workers: Vec<usize>,
    pub w12_sizes: Vec<usize>,
    /// W13's window, in seconds.
    pub w13_secs: f64,
    /// Selected workloads (1..=13).
    pub selected: BTreeSet<u8>,
}

impl Plan {
    fn from_args(args: &[String]) -> anyhow::Result<Plan> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut plan = Plan {
            runs: if quick { 1 } else { 3 },
            w1_tasks: 200,
            w2_sizes: if quick {
                vec![100, 1_000]
            } else {
                vec![1_000, 10_000, 100_000]
            },
            w3_len: 100,
            w4_fan: 500,
            w5_tasks: 30,
            w7_tasks: if quick { 100_000 } else { 1_000_000 },
            w8_bytes: 1 << 20,
            w9_tasks: if quick { 50_000 } else { 1_000_000 },
            w9_retention: if quick { 5_000 } else { 100_000 },
            voters: 3,
            w12_workers: if quick { vec![3, 10] } else { vec![3, 10, 30, 100] },
            w12_sizes: if quick { vec![100] } else { vec![500, 10_000] },
            w13_secs: if quick { 2.0 } else { 10.0 },
            selected: BTreeSet::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" | "--bench" => {}
                "--runs" => match it.next().and_then(|n| n.parse().ok()) {
                    Some(n) if n > 0 => plan.runs = n,
                    _ => bail!("--runs needs a positive number"),
                },
                "--voters" => match it.next().and_then(|n| n.parse().ok()) {
                    Some(n @ 1..=4) => plan.voters = n,
                    _ => bail!("--voters needs 1 to 4"),
                },
                w => match w
                    .to_ascii_uppercase()
                    .strip_prefix('W')
                    .and_then(|n| n.parse().ok())
                {
                    Some(n @ 1..=13) => {
                        plan.selected.insert(n);
                    }
                    _ => bail!("unknown argument {w:?} (expected --quick, --runs N, --voters N, W1..W13)"),
                },
            }
        }
        if plan.selected.is_empty() {
            plan.selected = (1..=13).collect();
        }
        Ok(plan)
    }

    fn has(&self, w: u8) -> bool {
        self.selected.contains(&w)
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--worker-process") => return mesh::worker_main(&args[1..]),
        Some("--admin-process") => return cold::admin_main(&args[1..]),
        Some("--w7-process") => return sched::child_main(&args[1..]),
        Some("--w9-process") => return faults::child_main(&args[1..]),
        Some("--voter-process") => return failover::voter_main(&args[1..]),
        _ => {}
    }
    let plan = Plan::from_args(&args)?;
    let started = Instant::now();
    if plan.selected.iter().any(|w| matches!(w, 1..=5 | 8)) {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(on_the_mesh(&plan))?;
        rt.shutdown_timeout(Duration::from_secs(1));
    }
    if plan.has(6) {
        cold::w6(&plan)?.print();
    }
    if plan.has(7) {
        sched::w7(&plan)?.print();
    }
    if plan.has(9) {
        faults::w9(&plan)?.print();
    }
    if plan.has(10) {
        on_a_runtime(faults::w10(&plan))?;
    }
    if plan.has(11) {
        on_a_runtime(failover::w11(&plan))?;
    }
    if plan.has(12) {
        on_a_runtime(scale::w12(&plan))?;
    }
    if plan.has(13) {
        on_a_runtime(scale::w13(&plan))?;
    }
    eprintln!("[bench] done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a workload on a fresh runtime of its own and prints its line.
fn on_a_runtime(
    workload: impl std::future::Future<Output = anyhow::Result<util::Line>>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(workload)?.print();
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// W1–W5 and W8 on one mesh, after the warm-up.
async fn on_the_mesh(plan: &Plan) -> anyhow::Result<()> {
    let t = Instant::now();
    let mesh = mesh::Mesh::start(3, &format!("bench-{}", std::process::id()), plan.voters).await?;
    eprintln!(
        "[bench] mesh of 1 admin + 3 worker processes, {} voter(s), up in {:.3} s",
        plan.voters,
        t.elapsed().as_secs_f64()
    );
    let node = mesh.node.handle();
    network::warm_up(&node).await?;
    eprintln!("[bench] warmed up");
    if plan.has(1) {
        network::w1(&node, plan).await?.print();
    }
    if plan.has(2) {
        network::w2(&node, &mesh, plan).await?.print();
    }
    if plan.has(3) {
        network::w3(&node, plan).await?.print();
    }
    if plan.has(4) {
        network::w4(&node, plan).await?.print();
    }
    if plan.has(5) {
        network::w5(&node, plan).await?.print();
    }
    if plan.has(8) {
        network::w8(&node, plan).await?.print();
    }
    Ok(())
}
