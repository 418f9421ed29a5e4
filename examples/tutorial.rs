//! Ceylon's task-playground tutorial, on taskmesh.
//!
//! Run with: `cargo run --example tutorial`
//!
//! Three workers of role "worker" with skills 3, 6 and 9 bid for tasks of
//! rising difficulty; the admin awards each task to the least loaded worker
//! with the lowest sufficient skill. Difficulty 10 finds no capable worker
//! and fails with an error that names the best skill on offer.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskmesh::{NodeConfig, Payload, Playground, ProcessError, Task, TaskRequest, Worker};

/// The tutorial's task input.
#[derive(Serialize, Deserialize, Debug)]
struct WorkTask {
    id: u32,
    description: String,
    difficulty: u32,
}

/// A worker that takes `difficulty` × 10 ms and reports what it did.
struct SkilledWorker {
    name: String,
    skill: u32,
}

#[async_trait::async_trait]
impl Worker for SkilledWorker {
    fn name(&self) -> &str {
        &self.name
    }
    fn role(&self) -> &str {
        "worker"
    }
    fn skill(&self) -> u32 {
        self.skill
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        let task: WorkTask = req.input()?;
        tokio::time::sleep(Duration::from_millis(10 * task.difficulty as u64)).await;
        Ok(Payload::encode(&format!(
            "{} finished {:?}",
            self.name, task.description
        ))?)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let workers: Vec<Arc<dyn Worker>> = [("Junior", 3), ("Intermediate", 6), ("Senior", 9)]
        .into_iter()
        .map(|(name, skill)| {
            Arc::new(SkilledWorker {
                name: name.into(),
                skill,
            }) as Arc<dyn Worker>
        })
        .collect();
    let mut cfg = NodeConfig::default();
    // Difficulty 10 has no capable worker: fail it after one second, not five.
    cfg.scheduler.no_worker_timeout = Duration::from_secs(1);
    let playground = Playground::play_with(cfg, workers).await?;

    let descriptions = [
        ("Simple data entry", 2),
        ("Data analysis", 5),
        ("Complex algorithm implementation", 8),
        ("Quantum computing simulation", 10),
        ("Write a report", 4),
        ("Review a pull request", 6),
        ("Tune the database", 7),
        ("Fix a typo", 1),
    ];
    let mut results = Vec::new();
    for (i, (description, difficulty)) in descriptions.into_iter().enumerate() {
        let input = WorkTask {
            id: i as u32,
            description: description.into(),
            difficulty,
        };
        let task = Task::new(description, "worker", difficulty).with_input(&input)?;
        let report = playground.add_and_execute_task(task, true).await?;
        println!("\n{} (difficulty {difficulty}): {}", report.name, report.status);
        if let Some(auction) = &report.auction {
            let bids: Vec<String> = auction
                .bids
                .iter()
                .map(|b| format!("{}({})", b.worker, b.skill))
                .collect();
            println!("  bids: {}", bids.join(", "));
            println!(
                "  winner: {} - {}",
                report.worker.as_deref().unwrap_or("-"),
                auction.reason
            );
        }
        match report.output::<String>() {
            Ok(out) => println!("  output: {out}"),
            Err(e) => println!("  error: {e}"),
        }
        results.push(report);
    }

    let total = results.len();
    let successful = results.iter().filter(|r| r.succeeded()).count();
    println!("\nTask results:");
    println!(
        "  total: {total}, successful: {successful}, failed: {}",
        total - successful
    );
    println!("  success rate: {:.1}%", 100.0 * successful as f64 / total as f64);
    playground.shutdown().await;
    Ok(())
}
