//! W7 of shared/benchmarks.md: the scheduler alone drives a random DAG of a
//! million tasks (up to three dependencies each) to completion with instant
//! bids, accepts and results. Ignored; run it in release, on its own:
//!
//! `cargo test --release --lib scheduler::tests::w7 -- --ignored --nocapture`
//!
//! (`W7_TASKS` and `W7_SLOTS` change the size and the slots per worker.)
//! Time is this thread's CPU time and memory the growth of the process's peak
//! resident set, both read from `/proc` (Linux): no clock is read in the
//! scheduler's directory, and CPU time is steadier than wall time on a
//! shared machine. Neither figure is asserted.

use std::collections::VecDeque;

use super::*;

/// Nanoseconds this thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux /proc");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat")
}

/// A memory figure of this process from `/proc/self/status`, in bytes.
fn vm_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = s.lines().find(|l| l.starts_with(field)).expect(field);
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect(field);
    kib * 1024
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tasks `t1..=tn`, each depending on up to three earlier ones, with a
/// four-byte input.
fn random_dag(n: usize, rng: &mut Rng) -> Vec<Task> {
    (1..=n as u128)
        .map(|i| {
            let input = Payload::from_bytes((i as u32).to_le_bytes());
            let mut t = named(i, &format!("t{i}"), "worker", 1).with_payload(input);
            if i > 1 {
                for _ in 0..rng.range(0, 3) {
                    t = t.depends_on(tid(rng.range(1, i as u64 - 1) as u128));
                }
            }
            t
        })
        .collect()
}

/// Workers that answer every announcement, accept every award and return
/// their input at once. Inputs are handled in the order they are made.
struct Mesh {
    s: Scheduler,
    now: Duration,
    inbox: VecDeque<Input>,
    /// `(node, worker)`, one worker per node.
    workers: Vec<(NodeId, String)>,
    slots: u32,
    out: Vec<Output>,
    inputs: u64,
    outputs: u64,
}

impl Mesh {
    /// Runs until every task is final.
    fn run(&mut self) {
        while !self.inbox.is_empty() || self.s.unfinished() > 0 {
            self.step();
        }
    }

    /// Handles the next input, or ticks when there is none.
    fn step(&mut self) {
        let input = self.inbox.pop_front().unwrap_or_else(|| {
            let at = self.s.next_deadline().expect("work left but nothing scheduled");
            self.now = self.now.max(at);
            Input::Tick
        });
        self.inputs += 1;
        let mut out = std::mem::take(&mut self.out); // reused, as a driver would
        self.s.handle(input, self.now, &mut out);
        self.outputs += out.len() as u64;
        for o in out.drain(..) {
            self.react(o);
        }
        self.out = out;
        self.now += Duration::from_micros(1);
    }

    fn react(&mut self, o: Output) {
        match o {
            Output::Submitted { result, .. } => {
                result.expect("the DAG is valid");
            }
            Output::Announce(anns) => {
                for (node, name) in &self.workers {
                    let bids = anns
                        .iter()
                        .map(|a| Bid {
                            task: a.task,
                            round: a.round,
                            worker: name.clone(),
                            skill: 5,
                            load: 0,
                            capacity: self.slots,
                            willing: true,
                        })
                        .collect();
                    self.inbox.push_back(Input::Bids {
                        node: node.clone(),
                        bids,
                    });
                }
            }
            Output::Assign { node, assignments } => {
                let mut reports = Vec::with_capacity(assignments.len());
                for a in assignments {
                    self.inbox.push_back(Input::AssignAnswer {
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
                self.inbox.push_back(Input::Reports { node, reports });
            }
            Output::Changed { .. } => {}
        }
    }
}

#[test]
#[ignore = "W7 measurement: run in release with --ignored --nocapture"]
fn w7_million_task_dag() {
    let n = env_or("W7_TASKS", 1_000_000);
    let slots = env_or("W7_SLOTS", 1) as u32;
    let rss_before = vm_bytes("VmRSS:");
    let tasks = random_dag(n, &mut Rng(7));
    let cfg = SchedulerConfig {
        max_batch: n,
        max_unfinished: n,
        ..SchedulerConfig::default()
    };
    let workers: Vec<(NodeId, String)> = (1..=3)
        .map(|i| (NodeId::new(format!("node{i}")), format!("w{i}")))
        .collect();
    let mut mesh = Mesh {
        s: Scheduler::new(cfg),
        now: Duration::ZERO,
        inbox: VecDeque::new(),
        workers: workers.clone(),
        slots,
        out: Vec::new(),
        inputs: 0,
        outputs: 0,
    };
    for (node, name) in workers {
        mesh.inbox.push_back(Input::Register {
            node,
            workers: vec![WorkerSpec {
                name,
                role: "worker".into(),
                skill: 5,
                capacity: slots,
            }],
        });
    }
    mesh.run(); // registrations

    let start = thread_cpu_ns();
    mesh.inbox.push_back(Input::Submit { token: 1, tasks });
    mesh.step();
    let submitted = thread_cpu_ns();
    mesh.run();
    let end = thread_cpu_ns();
    let peak = vm_bytes("VmHWM:").saturating_sub(rss_before);

    assert!((1..=n as u128).all(|i| mesh.s.status(&tid(i)) == Some(TaskStatus::Completed)));
    assert!(mesh.s.workers().iter().all(|w| w.load == 0));
    println!(
        "W7: {n} tasks, 3 workers x {slots} slots: {:.3} us/task (CPU; submit {:.3}, drive {:.3}), \
         {} bytes/task (peak RSS growth), {} inputs, {} outputs, virtual time {:?}",
        (end - start) as f64 / n as f64 / 1e3,
        (submitted - start) as f64 / n as f64 / 1e3,
        (end - submitted) as f64 / n as f64 / 1e3,
        peak / n as u64,
        mesh.inputs,
        mesh.outputs,
        mesh.now,
    );
}
