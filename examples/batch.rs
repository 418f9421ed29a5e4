//! Run with: cargo run --example batch
//!
//! A pool of four "compute" workers with two slots each runs a batch of 100
//! tasks in parallel with `execute_batch`. Each task takes about 20 ms, so
//! with eight slots the batch needs about 250 ms of wall time. Prints the
//! throughput and how many tasks each worker ran, and checks every result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use taskmesh::{Payload, Playground, ProcessError, Task, TaskRequest, Worker};

const WORKERS: usize = 4;
const SLOTS: u32 = 2;
const TASKS: u64 = 100;
const WORK: Duration = Duration::from_millis(20);

/// Squares its input after [`WORK`] of simulated effort.
struct Compute {
    name: String,
}

#[async_trait::async_trait]
impl Worker for Compute {
    fn name(&self) -> &str {
        &self.name
    }
    fn role(&self) -> &str {
        "compute"
    }
    fn skill(&self) -> u32 {
        5
    }
    fn slots(&self) -> u32 {
        SLOTS
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        let n: u64 = req.input()?;
        tokio::time::sleep(WORK).await;
        Ok(Payload::encode(&(n * n))?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let workers: Vec<Arc<dyn Worker>> = (1..=WORKERS)
        .map(|i| {
            Arc::new(Compute {
                name: format!("compute-{i}"),
            }) as Arc<dyn Worker>
        })
        .collect();
    let playground = Playground::play(workers).await?;

    let tasks = (0..TASKS)
        .map(|n| Task::new(format!("square-{n}"), "compute", 1 + (n % 5) as u32).with_input(&n))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let reports = playground.execute_batch(tasks).await?;
    let elapsed = started.elapsed();

    let mut per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, r) in (0..TASKS).zip(&reports) {
        let square: u64 = r.output()?;
        ensure!(square == n * n, "{}: got {square}, expected {}", r.name, n * n);
        ensure!(r.attempts == 1, "{} ran {} times", r.name, r.attempts);
        *per_worker.entry(r.worker.as_deref().unwrap_or("-")).or_default() += 1;
    }
    let ideal = WORK * (TASKS as u32).div_ceil(WORKERS as u32 * SLOTS);
    println!(
        "{} tasks on {WORKERS} workers x {SLOTS} slots in {elapsed:.2?} ({:.0} tasks/s; ideal {ideal:?})",
        reports.len(),
        reports.len() as f64 / elapsed.as_secs_f64()
    );
    for (worker, count) in &per_worker {
        println!("  {worker}: {count} tasks");
    }
    println!("all {} tasks succeeded with the right result", reports.len());
    playground.shutdown().await;
    Ok(())
}
