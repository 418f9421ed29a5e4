//! W12: the same batches of trivial tasks on more single-slot worker peers
//! (issue 9's "many workers": more workers must not make it slower), and
//! W13: the CPU that an idle mesh of 4 nodes uses.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::mesh::Mesh;
use crate::network::{label, w2_run, warm_up};
use crate::util::{summary, Line};
use crate::Plan;

/// W12: for each worker count of `plan.w12_workers`, a fresh mesh of that
/// many single-slot worker processes (the ledger's voters as in W1–W5),
/// warmed up, then each batch size of `plan.w12_sizes` of trivial tasks at
/// once, `plan.runs` times; tasks/s per count and size. The headline figure
/// is the largest batch on the most workers; `gain` gives, per batch size,
/// the median on the most workers over the median on the fewest (above 1:
/// more workers are faster).
pub async fn w12(plan: &Plan) -> anyhow::Result<Line> {
    let mut figures: Vec<(String, Vec<f64>)> = Vec::new();
    let mut startup = serde_json::Map::new();
    for &workers in &plan.w12_workers {
        let t = Instant::now();
        let mesh = Mesh::start(
            workers,
            &format!("bench-w12-{workers}-{}", std::process::id()),
            plan.voters,
        )
        .await?;
        let up = t.elapsed().as_secs_f64();
        startup.insert(workers.to_string(), json!((up * 1e3).round() / 1e3));
        eprintln!("[W12] {workers} worker processes up in {up:.2} s");
        let node = mesh.node.handle();
        warm_up(&node).await?;
        for &n in &plan.w12_sizes {
            let mut rates = Vec::new();
            for run in 0..plan.runs {
                let (rate, _) = w2_run(&node, n).await?;
                eprintln!(
                    "[W12] {workers} workers, {n} tasks, run {}/{}: {rate:.0} tasks/s",
                    run + 1,
                    plan.runs
                );
                rates.push(rate);
            }
            figures.push((format!("tasks_per_s_{}_on_{workers}", label(n)), rates));
        }
        drop(mesh);
    }
    let (fewest, most) = (plan.w12_workers[0], plan.w12_workers[plan.w12_workers.len() - 1]);
    let median_of = |name: &str| figures.iter().find(|(n, _)| n == name).map(|(_, r)| summary(r).0);
    let mut gains = serde_json::Map::new();
    for &n in &plan.w12_sizes {
        let size = label(n);
        let on_fewest = median_of(&format!("tasks_per_s_{size}_on_{fewest}"));
        let on_most = median_of(&format!("tasks_per_s_{size}_on_{most}"));
        if let (Some(a), Some(b)) = (on_fewest, on_most) {
            gains.insert(
                format!("{size}_on_{most}_over_{fewest}"),
                json!((b / a * 1000.0).round() / 1000.0),
            );
        }
    }
    let largest = label(plan.w12_sizes[plan.w12_sizes.len() - 1]);
    let headline = format!("tasks_per_s_{largest}_on_{most}");
    let main = figures
        .iter()
        .position(|(name, _)| *name == headline)
        .unwrap_or(0);
    let (name, rates) = figures.remove(main);
    let mut line = Line::new("W12", plan.runs, &name, &rates).with("gain", json!(gains));
    for (name, rates) in &figures {
        line = line.figure(name, rates);
    }
    Ok(line
        .with("worker_counts", json!(plan.w12_workers))
        .with("mesh_up_s", json!(startup))
        .with(
            "note",
            json!("single-slot worker processes, standing bids and queues at their defaults"),
        ))
}

/// W13: a mesh of 4 nodes (this process as admin, 3 worker processes, the
/// ledger's voters as in W1–W5), warmed up and then left idle for 2 s;
/// then the CPU time of the 4 processes' threads (from their schedstat)
/// over `plan.w13_secs`, as a percentage of one core, `plan.runs` times.
pub async fn w13(plan: &Plan) -> anyhow::Result<Line> {
    let mesh = Mesh::start(3, &format!("bench-w13-{}", std::process::id()), plan.voters).await?;
    let node = mesh.node.handle();
    warm_up(&node).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = mesh.pids();
    let mut shares = Vec::new();
    for run in 0..plan.runs {
        let before = cpu_ns(&pids)?;
        let t = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(plan.w13_secs)).await;
        let ran = cpu_ns(&pids)?.saturating_sub(before);
        let share = ran as f64 / 1e9 / t.elapsed().as_secs_f64() * 100.0;
        eprintln!(
            "[W13] run {}/{}: {share:.3} % of one core over {:.1} s",
            run + 1,
            plan.runs,
            plan.w13_secs
        );
        shares.push(share);
    }
    drop(mesh);
    Ok(
        Line::new("W13", plan.runs, "idle_cpu_percent_of_one_core", &shares)
            .with("nodes", json!(pids.len()))
            .with("window_s", json!(plan.w13_secs))
            .with(
                "method",
                json!("time on CPU of every thread of the 4 processes (/proc/<pid>/task/<tid>/schedstat), over the window"),
            ),
    )
}

/// Nanoseconds the processes' threads have run on a CPU
/// (`/proc/<pid>/task/<tid>/schedstat`, first field): finer than the
/// 10 ms clock ticks of `/proc/<pid>/stat`. Threads that ended are not
/// counted; an idle mesh starts none.
fn cpu_ns(pids: &[u32]) -> anyhow::Result<u64> {
    let mut sum = 0;
    for pid in pids {
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let path = task?.path().join("schedstat");
            // A thread may end between the listing and the read.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            sum += text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .ok_or_else(|| anyhow::anyhow!("{} unreadable", path.display()))?;
        }
    }
    Ok(sum)
}
