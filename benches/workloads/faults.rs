//! W9 and W10: what the lifecycle work promises, measured (never asserted).
//!
//! - **W9, memory per unfinished task and after tasks finish.** A fresh
//!   admin process (`--w9-process`, no workers, so nothing runs) is sent
//!   1,000,000 trivial tasks in batches of 10,000 through its node handle;
//!   bytes per unfinished task = (`VmRSS` after − `VmRSS` before) / tasks.
//!   Then every task is cancelled (finished), which lets retention evict
//!   all but the newest 100,000 (the default; 5,000 of the 50,000 tasks
//!   with `--quick`), and the next round starts once the newest task it
//!   must drop is gone. Five more rounds of the same size show whether
//!   memory stays flat once tasks finish (peak `VmHWM` of each round; from
//!   round 2 on, the table also holds the finished tasks retention keeps).
//! - **W10, failure detection.** On a fresh mesh (this process is the
//!   admin; 2 worker processes), a 60 s task runs; the worker process that
//!   holds it is killed (`SIGKILL`) or paused (`SIGSTOP`), and the time
//!   until the admin records the attempt as lost is measured by polling the
//!   task's history every 5 ms.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use taskmesh::scheduler::Lookup;
use taskmesh::{AttemptOutcome, Node, NodeConfig, NodeHandle, Task, TaskId};

use crate::bodies::hold;
use crate::mesh::{child_runtime, exit_when_stdin_closes, Mesh, Proc};
use crate::util::{ms, proc_status_bytes, Line, MIB};
use crate::Plan;

const BATCH: usize = 10_000;
/// Rounds of W9: the first measures, the later ones show whether memory
/// stays flat.
const ROUNDS: usize = 6;

pub fn w9(plan: &Plan) -> anyhow::Result<Line> {
    let mut per_task = vec![];
    let mut rounds: Vec<Value> = vec![];
    for run in 0..plan.runs {
        let args = vec![
            "--w9-process".to_string(),
            plan.w9_tasks.to_string(),
            plan.w9_retention.to_string(),
        ];
        let mut child = Proc::spawn("w9-admin", &args, true)?;
        let line = BufReader::new(child.stdout().context("W9 stdout")?)
            .lines()
            .next()
            .ok_or_else(|| anyhow!("W9 child exited early"))??;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("W9 child: {line}"))?;
        let b = v["bytes_per_unfinished_task"].as_f64().context("W9 figure")?;
        eprintln!(
            "[W9] run {}/{}: {b:.0} bytes per unfinished task ({line})",
            run + 1,
            plan.runs
        );
        per_task.push(b);
        rounds.push(v);
    }
    Ok(Line::new("W9", plan.runs, "bytes_per_unfinished_task", &per_task)
        .with("tasks", json!(plan.w9_tasks))
        .with("retention_tasks", json!(plan.w9_retention))
        .with("rounds", json!(rounds))
        .with(
            "method",
            json!("fresh admin process; VmRSS delta over the tasks while all are unfinished; then all cancelled, eviction down to the retention awaited, and five more rounds of the same size"),
        ))
}

/// Child mode `--w9-process <tasks> <retention>`: see the module
/// documentation. Prints one JSON line.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let [n, keep] = args else {
        bail!("usage: --w9-process <tasks> <retention>")
    };
    let n: usize = n.parse().context("tasks")?;
    exit_when_stdin_closes();
    let mut cfg = NodeConfig::default().prefer_admin().with_seed(4000);
    let keep: usize = keep.parse().context("retention")?;
    cfg.scheduler.retention.max_tasks = keep;
    // Measured right after the cancellations, not 10 s later.
    cfg.scheduler.retention.min_age = Duration::ZERO;
    // Nothing serves the tasks' role: they wait, unfinished, until cancelled.
    cfg.scheduler.no_worker_timeout = Duration::from_secs(24 * 3600);
    child_runtime()?.block_on(async move {
        let node = Node::start(cfg, Vec::new()).await?;
        node.wait_for_state(Duration::from_secs(30), |s| s.is_admin)
            .await?;
        let h = node.handle();
        let me = std::process::id();
        let rss = |f: &str| proc_status_bytes(me, f).unwrap_or(0) as f64;
        let mut out = json!({});
        let heap = || live_heap_bytes() / MIB;
        for round in 1..=ROUNDS {
            let before = rss("VmRSS");
            let t = Instant::now();
            let ids = submit_all(&h, n).await?;
            let submit_s = t.elapsed().as_secs_f64();
            let unfinished = rss("VmRSS");
            let heap_unfinished = heap();
            let t = Instant::now();
            for chunk in ids.chunks(BATCH) {
                h.cancel(chunk.to_vec()).await?;
            }
            let cancel_s = t.elapsed().as_secs_f64();
            // Retention evicts in bounded steps, oldest first: wait until the
            // newest task it must drop is gone (bounded), so the next round
            // starts after eviction.
            let t = Instant::now();
            let last_to_go = ids[n.saturating_sub(keep + 1)];
            let mut evicted = false;
            while !evicted && t.elapsed() < Duration::from_secs(60) {
                // Evicted, or evicted so long ago that it is forgotten.
                let found = h.lookup(vec![last_to_go]).await?;
                evicted = !matches!(found.first(), Some(Lookup::Found(_)));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let evict_s = t.elapsed().as_secs_f64();
            out[format!("round{round}")] = json!({
                "rss_before_mib": before / MIB,
                "rss_unfinished_mib": unfinished / MIB,
                "heap_unfinished_mib": heap_unfinished,
                "rss_after_finish_mib": rss("VmRSS") / MIB,
                "heap_after_finish_mib": heap(),
                "peak_rss_mib": rss("VmHWM") / MIB,
                "submit_s": submit_s,
                "cancel_s": cancel_s,
                "evict_s": evict_s,
                "evicted_to_retention": evicted,
            });
            if round == 1 {
                out["bytes_per_unfinished_task"] = json!((unfinished - before) / n as f64);
            }
        }
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{out}")?;
        stdout.flush()?;
        futures::future::pending::<anyhow::Result<()>>().await
    })
}

/// Bytes in use in glibc's heap, every arena and mmapped block.
fn live_heap_bytes() -> f64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as f64
}

async fn submit_all(h: &NodeHandle, n: usize) -> anyhow::Result<Vec<TaskId>> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let k = BATCH.min(n - ids.len());
        let batch: Vec<Task> = (0..k).map(|i| Task::new(format!("t{i}"), "nobody", 1)).collect();
        ids.extend(h.submit_batch(batch).await?);
    }
    Ok(ids)
}

pub async fn w10(plan: &Plan) -> anyhow::Result<Line> {
    let mut killed = vec![];
    let mut paused = vec![];
    for run in 0..plan.runs {
        for (signal, out) in [(Signal::SIGKILL, &mut killed), (Signal::SIGSTOP, &mut paused)] {
            let d = detect(signal, run).await?;
            eprintln!(
                "[W10] run {}/{}: {signal} detected in {:.1} ms",
                run + 1,
                plan.runs,
                ms(d)
            );
            out.push(ms(d));
        }
    }
    Ok(Line::new("W10", plan.runs, "killed_worker_detected_ms", &killed)
        .figure("paused_worker_detected_ms", &paused)
        .with(
            "method",
            json!("fresh mesh per run (admin here, 2 worker processes), default lease 2 s renewed every 500 ms; time from the signal to the attempt recorded as lost"),
        ))
}

/// One run: the time from `signal` on the holder to the admin's verdict.
async fn detect(signal: Signal, run: usize) -> anyhow::Result<Duration> {
    let mesh = Mesh::start(2, &format!("bench-w10-{}-{run}-{signal}", std::process::id()), 1).await?;
    let node = mesh.node.handle();
    let id = node.submit(hold(60_000)).await?;
    let holder = loop {
        let r = node.task(id).await?;
        if let (Some(w), 1) = (r.worker.clone(), r.attempts) {
            if r.status == taskmesh::TaskStatus::Running {
                break w;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let pid = mesh.pid_of(&holder).context("holder process")?;
    let t0 = Instant::now();
    kill(Pid::from_raw(pid as i32), signal)?;
    let lost = loop {
        let r = node.task(id).await?;
        if matches!(
            r.history.first().map(|a| &a.outcome),
            Some(AttemptOutcome::Lost { .. })
        ) {
            break t0.elapsed();
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(30),
            "W10: {signal} not detected in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if signal == Signal::SIGSTOP {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
    }
    node.cancel(vec![id]).await?;
    drop(mesh);
    Ok(lost)
}
