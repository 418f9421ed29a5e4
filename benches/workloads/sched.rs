//! W7: the pure scheduler alone, no network. A random DAG (each task has
//! 0–3 dependencies on uniformly chosen earlier tasks, from a seeded PRNG)
//! is submitted whole in batches of 10,000, then workers register and the
//! driver answers everything at once: every announcement gets a willing bid
//! from every worker, every award is accepted and reported `Ok` (identity).
//! The clock passed to the scheduler is real elapsed time, so its timers
//! (bid windows, retries) fire as they would in a node.
//!
//! Two paths, each in its own child per run: the figure (`us_per_task`) is
//! the default one, where every worker registers a standing bid for its
//! skill (as `Worker::standing_bid` does by default) and a ready
//! task is awarded at once; `announced_us_per_task` is the fallback, where
//! no worker stands and every task goes through an announced auction.
//!
//! Each run is a fresh child process (`--w7-process`), so its memory figures
//! start from a clean baseline and do not touch the mesh's. Bytes per task:
//! (peak RSS `VmHWM` at the end − `VmRSS` before the first task is built) /
//! tasks; the heap figures come from a counting allocator switched on for the
//! run: live heap at the end and peak live heap, per task.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use taskmesh::keypair_from_seed;
use taskmesh::scheduler::{Bid, Input, Output, Report, Retention, Scheduler, SchedulerConfig};
use taskmesh::task::{NodeId, Payload, Task, TaskId, TaskStatus, WorkerSpec};

use crate::bodies::ROLE;
use crate::heap::{counting_off, counting_on};
use crate::mesh::{exit_when_stdin_closes, Proc};
use crate::util::{mix, proc_status_bytes, Line, Rng};
use crate::Plan;

const BATCH: usize = 10_000;
const CAPACITY: u32 = 1 << 30;

/// Task `i`'s id, recomputed instead of stored (a stored list would be
/// counted as the scheduler's memory).
fn task_id(seed: u64, i: u64) -> TaskId {
    let hi = mix(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let lo = mix(hi ^ i);
    TaskId(uuid::Uuid::from_u64_pair(hi, lo))
}

fn make_task(rng: &mut Rng, seed: u64, i: u64) -> Task {
    let mut dependencies = Vec::new();
    if i > 0 {
        for _ in 0..rng.below(4) {
            let d = task_id(seed, rng.below(i));
            if !dependencies.contains(&d) {
                dependencies.push(d);
            }
        }
    }
    Task {
        input: Payload::encode(&i).expect("u64 encodes"),
        dependencies,
        ..Task::with_id(task_id(seed, i), format!("t{i}"), ROLE, 1)
    }
}

/// Nanoseconds this thread has run on a CPU (0 if `/proc` says nothing).
fn thread_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The instant world around one scheduler: a queue of inputs that answers
/// every output at once, and what it counted.
struct Driver {
    sched: Scheduler,
    start: Instant,
    out: Vec<Output>,
    queue: VecDeque<Input>,
    tick_queued: bool,
    nodes: Vec<NodeId>,
    names: Vec<String>,
    /// Workers register standing bids (the default) rather than bidding on
    /// announcements.
    standing: bool,
    completed: usize,
    failed: usize,
    /// Announcements made (auction rounds opened).
    announced: u64,
    handle_calls: u64,
    in_handle: Duration,
}

impl Driver {
    fn new(workers: u64, standing: bool) -> Self {
        let nodes = (0..workers)
            .map(|k| NodeId::new(keypair_from_seed(3000 + k).public().to_peer_id().to_base58()))
            .collect();
        Driver {
            // Every task is kept to the end (W7 measures the memory of a held
            // DAG, and checks outputs at the end).
            sched: Scheduler::new(SchedulerConfig {
                retention: Retention {
                    max_tasks: usize::MAX,
                    max_bytes: usize::MAX,
                    ..Retention::default()
                },
                ..SchedulerConfig::default()
            }),
            start: Instant::now(),
            out: Vec::new(),
            queue: VecDeque::new(),
            tick_queued: false,
            nodes,
            names: (0..workers).map(|k| format!("worker-{k}")).collect(),
            standing,
            completed: 0,
            failed: 0,
            announced: 0,
            handle_calls: 0,
            in_handle: Duration::ZERO,
        }
    }

    /// Feeds one input at the real elapsed time; returns that time.
    fn step(&mut self, input: Input) -> Duration {
        let before = Instant::now();
        let now = before - self.start;
        self.sched.handle(input, now, &mut self.out);
        self.in_handle += before.elapsed();
        self.handle_calls += 1;
        now
    }

    /// Submits the whole DAG in batches; no worker is registered yet, so
    /// nothing runs.
    fn submit_dag(&mut self, n: u64, seed: u64) -> anyhow::Result<()> {
        let mut rng = Rng::new(seed);
        let mut next = 0;
        while next < n {
            let end = (next + BATCH as u64).min(n);
            let tasks: Vec<Task> = (next..end).map(|i| make_task(&mut rng, seed, i)).collect();
            self.step(Input::Submit { token: next, tasks });
            for o in self.out.drain(..) {
                if let Output::Submitted { result, .. } = o {
                    result.context("W7: batch refused")?;
                }
            }
            next = end;
        }
        Ok(())
    }

    /// Registers the workers, then answers everything until `n` tasks ended.
    fn drive(&mut self, n: u64) -> anyhow::Result<()> {
        for (node, name) in self.nodes.iter().zip(&self.names) {
            let spec = WorkerSpec {
                name: name.clone(),
                role: ROLE.into(),
                skill: 1,
                capacity: CAPACITY,
                standing: self.standing.then_some(1),
                queue: 0,
            };
            let node = node.clone();
            self.queue.push_back(Input::Register {
                node,
                workers: vec![spec],
            });
        }
        while self.completed + self.failed < n as usize {
            let input = self.next_input()?;
            let now = self.step(input);
            let mut out = std::mem::take(&mut self.out);
            for o in out.drain(..) {
                self.answer(o);
            }
            self.out = out;
            if !self.tick_queued && self.sched.next_deadline().is_some_and(|d| d <= now) {
                self.queue.push_back(Input::Tick);
                self.tick_queued = true;
            }
        }
        Ok(())
    }

    fn next_input(&mut self) -> anyhow::Result<Input> {
        match self.queue.pop_front() {
            Some(Input::Tick) => {
                self.tick_queued = false;
                Ok(Input::Tick)
            }
            Some(input) => Ok(input),
            // Nothing to answer: only a timer can move things on.
            None => match self.sched.next_deadline() {
                Some(at) => {
                    std::thread::sleep(at.saturating_sub(self.start.elapsed()));
                    Ok(Input::Tick)
                }
                None => bail!("W7 stuck at {} done: nothing to do, no timer", self.completed),
            },
        }
    }

    /// Every worker bids on every announcement; every award is accepted and
    /// reported done with its input as output.
    fn answer(&mut self, o: Output) {
        match o {
            Output::Announce(anns) => {
                self.announced += anns.len() as u64;
                for (node, name) in self.nodes.iter().zip(&self.names) {
                    let bids = anns.iter().map(|a| bid(a.task, a.round, name)).collect();
                    let node = node.clone();
                    self.queue.push_back(Input::Bids { node, bids });
                }
            }
            Output::Assign { node, assignments } => {
                let mut reports = Vec::with_capacity(assignments.len());
                for a in assignments {
                    self.queue.push_back(Input::AssignAnswer {
                        node: node.clone(),
                        task: a.task,
                        attempt: a.attempt,
                        accepted: true,
                    });
                    reports.push(Report {
                        task: a.task,
                        attempt: a.attempt,
                        worker: a.worker,
                        outcome: Ok(a.input),
                        run_ms: 0,
                    });
                }
                self.queue.push_back(Input::Reports { node, reports });
            }
            Output::Changed { status, .. } => match status {
                TaskStatus::Completed => self.completed += 1,
                TaskStatus::Failed => self.failed += 1,
                _ => {}
            },
            Output::Submitted { .. } | Output::Abort { .. } | Output::Cancelled { .. } => {}
        }
    }

    /// Every task completed, and a few outputs are the identity of inputs.
    fn check(&self, n: u64, seed: u64) -> anyhow::Result<()> {
        ensure!(self.failed == 0, "W7: {} tasks failed", self.failed);
        let unfinished = self.sched.unfinished();
        ensure!(unfinished == 0, "W7: {unfinished} unfinished");
        for i in [0, n / 2, n - 1] {
            let r = self.sched.report_of(&task_id(seed, i), self.start.elapsed());
            let r = r.context("W7: task missing")?;
            ensure!(r.output::<u64>()? == i, "W7: task {i} has a wrong output");
        }
        Ok(())
    }
}

fn bid(task: TaskId, round: u32, worker: &str) -> Bid {
    Bid {
        task,
        round,
        worker: worker.to_string(),
        skill: 1,
        load: 0,
        capacity: CAPACITY,
        willing: true,
    }
}

/// Child mode `--w7-process <tasks> <workers> <seed> standing|announced`:
/// one run, one JSON line.
pub fn child_main(args: &[String]) -> anyhow::Result<()> {
    let [n, workers, seed, path] = args else {
        bail!("usage: --w7-process <tasks> <workers> <seed> standing|announced");
    };
    let standing = match path.as_str() {
        "standing" => true,
        "announced" => false,
        _ => bail!("W7 path {path:?}: expected standing or announced"),
    };
    let (n, workers, seed): (u64, u64, u64) = (n.parse()?, workers.parse()?, seed.parse()?);
    exit_when_stdin_closes();
    let me = std::process::id();
    let rss_before = proc_status_bytes(me, "VmRSS").context("VmRSS")?;
    counting_on();
    let mut d = Driver::new(workers, standing);
    let cpu_start = thread_cpu_ns();
    d.start = Instant::now();
    d.submit_dag(n, seed)?;
    let submitted = d.start.elapsed();
    d.drive(n)?;
    let total = d.start.elapsed();
    let cpu = Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu_start));
    let (live, peak_heap) = counting_off();
    let hwm = proc_status_bytes(me, "VmHWM").context("VmHWM")?;
    let rss_end = proc_status_bytes(me, "VmRSS").context("VmRSS")?;
    d.check(n, seed)?;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let bytes = |b: i64| b as f64 / n as f64;
    let line = json!({
        "tasks": n,
        "workers": workers,
        "us_per_task": per(total),
        "cpu_us_per_task": per(cpu),
        "submit_us_per_task": per(submitted),
        "drive_us_per_task": per(total - submitted),
        "in_handle_us_per_task": per(d.in_handle),
        "handle_calls_per_task": d.handle_calls as f64 / n as f64,
        "rounds_per_task": d.announced as f64 / n as f64,
        "bytes_per_task": bytes(hwm as i64 - rss_before as i64),
        "rss_end_bytes_per_task": bytes(rss_end as i64 - rss_before as i64),
        "heap_live_bytes_per_task": bytes(live as i64),
        "heap_peak_bytes_per_task": bytes(peak_heap as i64),
    });
    println!("{line}");
    // Freeing a million tasks takes seconds and measures nothing.
    std::mem::forget(d);
    Ok(())
}

/// One fresh child run of W7 on `path` (`standing` or `announced`).
fn run_child(plan: &Plan, run: usize, path: &str) -> anyhow::Result<Value> {
    let args: Vec<String> = vec![
        "--w7-process".into(),
        plan.w7_tasks.to_string(),
        "3".into(),
        (7 + run).to_string(),
        path.into(),
    ];
    let mut child = Proc::spawn("w7", &args, true)?;
    let stdout = child.stdout().context("w7 stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .context("W7 child printed nothing")??;
    let v: Value = serde_json::from_str(&line).with_context(|| format!("W7 child: {line}"))?;
    eprintln!(
        "[W7] run {}/{}, {path}: {:.3} µs/task, {:.0} bytes/task",
        run + 1,
        plan.runs,
        v["us_per_task"].as_f64().unwrap_or(f64::NAN),
        v["bytes_per_task"].as_f64().unwrap_or(f64::NAN)
    );
    Ok(v)
}

/// The parent side: `plan.runs` fresh child runs of each path, summarised.
pub fn w7(plan: &Plan) -> anyhow::Result<Line> {
    let mut runs: Vec<Value> = vec![];
    let mut announced: Vec<f64> = vec![];
    for run in 0..plan.runs {
        runs.push(run_child(plan, run, "standing")?);
        let v = run_child(plan, run, "announced")?;
        announced.push(v["us_per_task"].as_f64().unwrap_or(f64::NAN));
    }
    let col = |k: &str| -> Vec<f64> { runs.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect() };
    let mut line = Line::new("W7", plan.runs, "us_per_task", &col("us_per_task"));
    for k in [
        "bytes_per_task",
        "cpu_us_per_task",
        "in_handle_us_per_task",
        "submit_us_per_task",
        "drive_us_per_task",
        "handle_calls_per_task",
        "rounds_per_task",
        "rss_end_bytes_per_task",
        "heap_live_bytes_per_task",
        "heap_peak_bytes_per_task",
    ] {
        line = line.figure(k, &col(k));
    }
    line = line.figure("announced_us_per_task", &announced);
    Ok(line
        .with("tasks", json!(plan.w7_tasks))
        .with("workers", json!(3))
        .with(
            "paths",
            json!("figures from standing bids (the default); announced_us_per_task: every task through an announced auction"),
        )
        .with(
            "bytes_method",
            json!("(VmHWM at end - VmRSS before building tasks) / tasks, fresh process per run"),
        ))
}
