//! The task bodies of benchmarks.md, hosted by every worker process, and the
//! builders of the tasks that use them. A body is picked by the task name's
//! prefix (the part before `-`): `identity`, `inc`, `prep`, `mid`, `agg`,
//! `sleep`, `blob`.

use std::time::Duration;

use taskmesh::{Payload, ProcessError, Task, TaskId, TaskReport, TaskRequest, Worker};

/// The role every bench worker serves.
pub const ROLE: &str = "bench";

/// One worker with one slot that runs every body.
pub struct BenchWorker {
    pub name: String,
}

#[async_trait::async_trait]
impl Worker for BenchWorker {
    fn name(&self) -> &str {
        &self.name
    }
    fn role(&self) -> &str {
        ROLE
    }
    fn skill(&self) -> u32 {
        1
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        let kind = req.name.split('-').next().unwrap_or_default();
        match kind {
            // identity(x) = x; a blob is the same on raw bytes.
            "identity" | "blob" => Ok(req.input),
            // inc(x) = x + 1, x from the one dependency or else the input.
            "inc" => {
                let x: u64 = match req.deps.first() {
                    Some(d) => d.outcome.as_ref().map_err(ProcessError::permanent)?.decode()?,
                    None => req.input()?,
                };
                Ok(Payload::encode(&(x + 1))?)
            }
            "prep" => Ok(Payload::encode(&1u64)?),
            // mid(p, i) = p + i, p from "prep".
            "mid" => {
                let p: u64 = req.dependency("prep")?;
                let i: u64 = req.input()?;
                Ok(Payload::encode(&(p + i))?)
            }
            // agg(xs) = sum(xs) over every dependency.
            "agg" => {
                let xs = req.dependencies::<u64>()?;
                Ok(Payload::encode(&xs.iter().map(|(_, x)| x).sum::<u64>())?)
            }
            // sleep(i): 100 ms, as Python's time.sleep does it (tokio's
            // timer rounds up to its next millisecond tick: 101 ms).
            "sleep" => {
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(100)))
                    .await
                    .map_err(|e| ProcessError::msg(format!("sleep: {e}")))?;
                Ok(req.input)
            }
            // hold(ms): busy for its input in milliseconds, until cancelled.
            "hold" => {
                let ms: u64 = req.input()?;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(req.input),
                    _ = req.cancel.cancelled() => Err(ProcessError::permanent("cancelled")),
                }
            }
            other => Err(ProcessError::msg(format!("unknown task kind {other:?}"))),
        }
    }
}

fn task(name: String, input: u64) -> Task {
    Task::new(name, ROLE, 1)
        .with_input(&input)
        .expect("a u64 always encodes")
}

/// identity(i).
pub fn identity(i: u64) -> Task {
    task(format!("identity-{i}"), i)
}

/// sleep(i).
pub fn sleep(i: u64) -> Task {
    task(format!("sleep-{i}"), i)
}

/// hold(ms): keeps its worker busy for `ms` milliseconds.
pub fn hold(ms: u64) -> Task {
    task(format!("hold-{ms}"), ms)
}

/// A chain inc(0) → inc → … of `n` tasks; the last one's output is `n`.
pub fn chain(n: usize) -> Vec<Task> {
    let mut tasks: Vec<Task> = Vec::with_capacity(n);
    for k in 0..n {
        let t = task(format!("inc-{k}"), 0);
        let t = match tasks.last() {
            Some(prev) => t.after(prev),
            None => t,
        };
        tasks.push(t);
    }
    tasks
}

/// prep → `n` × mid(p, i) → agg; the aggregate is `n + n(n-1)/2`. Returns
/// the tasks and the aggregate's id.
pub fn fan(n: usize) -> (Vec<Task>, TaskId) {
    let prep = Task::new("prep", ROLE, 1);
    let mids: Vec<Task> = (0..n as u64)
        .map(|i| task(format!("mid-{i}"), i).after(&prep))
        .collect();
    let agg = mids.iter().fold(Task::new("agg", ROLE, 1), |agg, m| agg.after(m));
    let agg_id = agg.id;
    let mut tasks = Vec::with_capacity(n + 2);
    tasks.push(prep);
    tasks.extend(mids);
    tasks.push(agg);
    (tasks, agg_id)
}

/// A task whose input (and so output) is these bytes.
pub fn blob(bytes: Vec<u8>) -> Task {
    Task::new("blob", ROLE, 1).with_payload(Payload::from_bytes(bytes))
}

/// A completed task's `u64` output, or what went wrong.
pub fn value(report: &TaskReport) -> anyhow::Result<u64> {
    report
        .output::<u64>()
        .map_err(|e| anyhow::anyhow!("task {} ({}): {e}", report.name, report.status))
}

/// Auction rounds beyond the first, summed: each one means an auction
/// closed without an award (e.g. a bid missed the window) and was retried.
pub fn extra_rounds(reports: &[TaskReport]) -> u64 {
    reports
        .iter()
        .filter_map(|r| r.auction.as_ref())
        .map(|a| u64::from(a.rounds.saturating_sub(1)))
        .sum()
}
