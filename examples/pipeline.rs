//! Run with: cargo run --example pipeline
//!
//! A three-stage DAG whose outputs flow down the chain: `prep` splits the
//! numbers 1..=100 into five chunks, five `process` tasks (a fan-out) each
//! read prep's output and sum the squares of one chunk, and `aggregate`
//! reads all five partial sums. Then a failing task shows the failure
//! cascade: its dependent never runs and fails with `DependencyFailed`.

use std::sync::Arc;

use anyhow::ensure;
use serde::{Deserialize, Serialize};
use taskmesh::{Payload, Playground, ProcessError, Task, TaskError, TaskRequest, Worker};

const CHUNKS: usize = 5;

/// prep's output: the numbers, split into chunks.
#[derive(Serialize, Deserialize, Debug)]
struct Prepared {
    chunks: Vec<Vec<u64>>,
}

/// A process task's output: one chunk's share of the answer.
#[derive(Serialize, Deserialize, Debug)]
struct Partial {
    chunk: usize,
    count: usize,
    sum_of_squares: u64,
}

/// aggregate's output.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Summary {
    parts: usize,
    count: usize,
    sum_of_squares: u64,
}

/// prep: input `Vec<u64>`, output [`Prepared`]. Fails on an empty input.
fn prep(req: &TaskRequest) -> Result<Payload, ProcessError> {
    let numbers: Vec<u64> = req.input()?;
    if numbers.is_empty() {
        return Err(ProcessError::msg("nothing to prepare: the input is empty"));
    }
    let size = numbers.len().div_ceil(CHUNKS);
    let chunks = numbers.chunks(size).map(<[u64]>::to_vec).collect();
    Ok(Payload::encode(&Prepared { chunks })?)
}

/// process: input is a chunk index into prep's output; output [`Partial`].
fn process(req: &TaskRequest) -> Result<Payload, ProcessError> {
    let chunk: usize = req.input()?;
    let prepared: Prepared = req.dependency("prep")?;
    let numbers = prepared
        .chunks
        .get(chunk)
        .ok_or_else(|| ProcessError::msg(format!("prep made no chunk {chunk}")))?;
    Ok(Payload::encode(&Partial {
        chunk,
        count: numbers.len(),
        sum_of_squares: numbers.iter().map(|n| n * n).sum(),
    })?)
}

/// aggregate: no input; reads every dependency as a [`Partial`].
fn aggregate(req: &TaskRequest) -> Result<Payload, ProcessError> {
    let parts: Vec<(String, Partial)> = req.dependencies()?;
    Ok(Payload::encode(&Summary {
        parts: parts.len(),
        count: parts.iter().map(|(_, p)| p.count).sum(),
        sum_of_squares: parts.iter().map(|(_, p)| p.sum_of_squares).sum(),
    })?)
}

/// A worker that runs one stage function for tasks of its role.
struct Stage {
    name: String,
    role: &'static str,
    slots: u32,
    run: fn(&TaskRequest) -> Result<Payload, ProcessError>,
}

#[async_trait::async_trait]
impl Worker for Stage {
    fn name(&self) -> &str {
        &self.name
    }
    fn role(&self) -> &str {
        self.role
    }
    fn skill(&self) -> u32 {
        10
    }
    fn slots(&self) -> u32 {
        self.slots
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        (self.run)(&req)
    }
}

fn stage(
    name: &str,
    role: &'static str,
    slots: u32,
    run: fn(&TaskRequest) -> Result<Payload, ProcessError>,
) -> Arc<dyn Worker> {
    Arc::new(Stage {
        name: name.into(),
        role,
        slots,
        run,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let workers = vec![
        stage("preparer", "prep", 1, prep),
        stage("processor-a", "process", 3, process),
        stage("processor-b", "process", 3, process),
        stage("aggregator", "aggregate", 1, aggregate),
    ];
    let playground = Playground::play(workers).await?;

    // prep -> process-0..4 -> aggregate, submitted as one batch.
    let numbers: Vec<u64> = (1..=100).collect();
    let prep_task = Task::new("prep", "prep", 1).with_input(&numbers)?;
    let mut batch = vec![prep_task.clone()];
    let mut agg = Task::new("aggregate", "aggregate", 1);
    for i in 0..CHUNKS {
        let t = Task::new(format!("process-{i}"), "process", 1)
            .with_input(&i)?
            .after(&prep_task);
        agg = agg.after(&t);
        batch.push(t);
    }
    batch.push(agg);
    let reports = playground.execute_batch(batch).await?;

    let (prep_r, rest) = reports.split_first().expect("one report per task");
    let (agg_r, process_rs) = rest.split_last().expect("one report per task");
    let prepared: Prepared = prep_r.output()?;
    let sizes: Vec<usize> = prepared.chunks.iter().map(Vec::len).collect();
    println!(
        "prep      [{}] -> {} chunks of sizes {sizes:?}",
        worker(prep_r),
        sizes.len()
    );
    for r in process_rs {
        let p: Partial = r.output()?;
        println!(
            "{:9} [{}] -> chunk {}: {} numbers, sum of squares {}",
            r.name,
            worker(r),
            p.chunk,
            p.count,
            p.sum_of_squares
        );
    }
    let summary: Summary = agg_r.output()?;
    println!("aggregate [{}] -> {summary:?}", worker(agg_r));
    let expected = Summary {
        parts: CHUNKS,
        count: 100,
        sum_of_squares: 100 * 101 * 201 / 6,
    };
    ensure!(
        summary == expected,
        "wrong result: got {summary:?}, expected {expected:?}"
    );
    println!(
        "final value: sum of squares of 1..=100 = {} (correct)\n",
        summary.sum_of_squares
    );

    // Failure cascade: prep fails on an empty input, so process never runs.
    let bad_prep = Task::new("prep", "prep", 1).with_input(&Vec::<u64>::new())?;
    let dependent = Task::new("process-0", "process", 1)
        .with_input(&0usize)?
        .after(&bad_prep);
    let reports = playground.execute_batch(vec![bad_prep, dependent]).await?;
    for r in &reports {
        let error = r.error.as_ref().map_or("-".to_string(), ToString::to_string);
        println!("{:9} {:9} error: {error}", r.name, r.status.to_string());
    }
    let dependent = &reports[1];
    ensure!(
        matches!(dependent.error, Some(TaskError::DependencyFailed { .. })) && dependent.attempts == 0,
        "the dependent should fail with DependencyFailed without running: {dependent:?}"
    );

    playground.shutdown().await;
    Ok(())
}

fn worker(r: &taskmesh::TaskReport) -> &str {
    r.worker.as_deref().unwrap_or("-")
}
