//! Workers: the [`Worker`] trait users implement, and the runtime that bids
//! for announced tasks and runs awarded ones with bounded concurrency.

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::protocol::AssignAnswer;
use crate::scheduler::{Announcement, Assignment, Bid, DepOutput, Report};
use crate::task::{Payload, PayloadError, TaskId, WorkerSpec};

/// The error a worker returns from [`Worker::process`]: a message that ends
/// up in the task's [`TaskError::Processing`](crate::TaskError::Processing).
///
/// Any `std::error::Error` converts into it, so `?` works in `process`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessError(pub String);

impl ProcessError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        ProcessError(message.to_string())
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for ProcessError {
    fn from(e: E) -> Self {
        ProcessError(e.to_string())
    }
}

/// What a worker sees of an announced task when deciding whether to bid.
#[derive(Clone, Debug)]
pub struct Offer<'a> {
    /// The task's name.
    pub name: &'a str,
    /// Its difficulty.
    pub difficulty: u32,
    /// Input size in bytes.
    pub input_len: u64,
    /// Tasks this worker holds now.
    pub load: u32,
}

/// One task handed to [`Worker::process`], with typed access to its input
/// and to its dependencies' outputs.
#[derive(Clone, Debug)]
pub struct TaskRequest {
    /// The task's id.
    pub id: TaskId,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its difficulty.
    pub difficulty: u32,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// The raw input.
    pub input: Payload,
    /// Outputs of the task's dependencies, in dependency order.
    pub deps: Vec<DepOutput>,
}

impl TaskRequest {
    /// The input decoded as `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.input.decode()
    }

    /// The output of the dependency named `name`, decoded as `T`.
    pub fn dependency<T: DeserializeOwned>(&self, name: &str) -> Result<T, PayloadError> {
        self.deps
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| PayloadError::NoSuchDependency(name.to_string()))?
            .output
            .decode()
    }

    /// Every dependency output decoded as `T`, with the dependency's name.
    pub fn dependencies<T: DeserializeOwned>(&self) -> Result<Vec<(String, T)>, PayloadError> {
        self.deps
            .iter()
            .map(|d| Ok((d.name.clone(), d.output.decode()?)))
            .collect()
    }
}

/// A task processor. Its name must be unique on its node; its role says which
/// tasks it bids for; its skill how hard a task it can take.
#[async_trait::async_trait]
pub trait Worker: Send + Sync + 'static {
    /// The worker's name, unique on its node.
    fn name(&self) -> &str;
    /// The role it serves: it only sees tasks of this role.
    fn role(&self) -> &str;
    /// Its skill level: the admin awards a task only if `skill >= difficulty`.
    fn skill(&self) -> u32;
    /// How many tasks it may run at once.
    fn slots(&self) -> u32 {
        1
    }
    /// Whether to bid for an announced task of this worker's role. The
    /// default bids when skilled enough and a slot is free.
    fn bid(&self, offer: &Offer<'_>) -> bool {
        offer.difficulty <= self.skill() && offer.load < self.slots()
    }
    /// Processes one task: an output, or an error for the task's report.
    async fn process(&self, request: TaskRequest) -> Result<Payload, ProcessError>;
}

/// A finished attempt, ready to be reported.
pub(crate) type Finished = Report;

struct Slot {
    worker: Arc<dyn Worker>,
    load: u32,
}

/// Runs the workers hosted by one node: answers announcements with bids,
/// accepts or refuses awards, and runs accepted tasks in a [`JoinSet`] that
/// is aborted when the runtime is dropped.
pub(crate) struct WorkerRuntime {
    slots: Vec<Slot>,
    by_name: HashMap<String, usize>,
    running: JoinSet<(usize, Finished)>,
    /// Set while shutting down: no new bids, awards refused.
    draining: bool,
}

impl WorkerRuntime {
    /// A runtime for these workers; names must be unique.
    pub(crate) fn new(workers: Vec<Arc<dyn Worker>>) -> Result<Self, crate::Error> {
        let mut by_name = HashMap::new();
        for (i, w) in workers.iter().enumerate() {
            if by_name.insert(w.name().to_string(), i).is_some() {
                return Err(crate::Error::Config(format!(
                    "two workers are named {:?}",
                    w.name()
                )));
            }
            if w.role().is_empty() {
                return Err(crate::Error::Config(format!(
                    "worker {:?} has an empty role",
                    w.name()
                )));
            }
        }
        let slots = workers
            .into_iter()
            .map(|worker| Slot { worker, load: 0 })
            .collect();
        Ok(WorkerRuntime {
            slots,
            by_name,
            running: JoinSet::new(),
            draining: false,
        })
    }

    /// True when this node hosts no workers.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The registration list for the admin.
    pub(crate) fn specs(&self) -> Vec<WorkerSpec> {
        self.slots
            .iter()
            .map(|s| WorkerSpec {
                name: s.worker.name().to_string(),
                role: s.worker.role().to_string(),
                skill: s.worker.skill(),
                capacity: s.worker.slots().max(1),
            })
            .collect()
    }

    /// Answers every announcement of a matching role: a bid, or an unwilling
    /// answer so the auction can close without waiting.
    pub(crate) fn bids_for(&self, tasks: &[Announcement]) -> Vec<Bid> {
        let mut bids = Vec::new();
        for a in tasks {
            for s in self.slots.iter().filter(|s| s.worker.role() == a.role) {
                let offer = Offer {
                    name: &a.name,
                    difficulty: a.difficulty,
                    input_len: a.input_len,
                    load: s.load,
                };
                let willing = !self.draining && s.worker.bid(&offer);
                bids.push(Bid {
                    task: a.task,
                    round: a.round,
                    worker: s.worker.name().to_string(),
                    skill: s.worker.skill(),
                    load: s.load,
                    capacity: s.worker.slots().max(1),
                    willing,
                });
            }
        }
        bids
    }

    /// Takes or refuses one award; a taken one starts running at once.
    pub(crate) fn accept(&mut self, a: Assignment) -> AssignAnswer {
        let refuse = |reason: &str| AssignAnswer {
            task: a.task,
            attempt: a.attempt,
            accepted: false,
            reason: Some(reason.to_string()),
        };
        if self.draining {
            return refuse("node is shutting down");
        }
        let Some(&i) = self.by_name.get(&a.worker) else {
            return refuse("no such worker on this node");
        };
        let slot = &mut self.slots[i];
        if slot.load >= slot.worker.slots().max(1) {
            return refuse("worker is full");
        }
        slot.load += 1;
        let worker = slot.worker.clone();
        let answer = AssignAnswer {
            task: a.task,
            attempt: a.attempt,
            accepted: true,
            reason: None,
        };
        self.running.spawn(async move { (i, run(worker, a).await) });
        answer
    }

    /// Waits for the next finished attempt (pending forever when idle, so it
    /// can sit in a `select!`).
    pub(crate) async fn next_finished(&mut self) -> Finished {
        loop {
            match self.running.join_next().await {
                Some(Ok((i, report))) => {
                    self.slots[i].load = self.slots[i].load.saturating_sub(1);
                    return report;
                }
                // Panics are caught inside `run`; a join error here means the
                // task was aborted, which only happens on drop.
                Some(Err(_)) => continue,
                None => futures::future::pending::<()>().await,
            }
        }
    }

    /// Finished attempts available right now, without waiting.
    pub(crate) fn try_finished(&mut self) -> Vec<Finished> {
        let mut out = Vec::new();
        while let Some(res) = self.running.try_join_next() {
            if let Ok((i, report)) = res {
                self.slots[i].load = self.slots[i].load.saturating_sub(1);
                out.push(report);
            }
        }
        out
    }

    /// Stops bidding and taking awards; running tasks go on.
    pub(crate) fn drain(&mut self) {
        self.draining = true;
    }

    /// Tasks running now.
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

/// Runs one attempt, turning errors, panics and timeouts into a report.
async fn run(worker: Arc<dyn Worker>, a: Assignment) -> Finished {
    let name = worker.name().to_string();
    let request = TaskRequest {
        id: a.task,
        name: a.name,
        role: a.role,
        difficulty: a.difficulty,
        attempt: a.attempt,
        input: a.input,
        deps: a.deps,
    };
    let started = Instant::now();
    let work = AssertUnwindSafe(worker.process(request)).catch_unwind();
    let outcome = match a.timeout_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), work).await {
            Ok(r) => r,
            Err(_) => Ok(Err(ProcessError(format!("timed out after {ms} ms")))),
        },
        None => work.await,
    };
    let outcome = match outcome {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(e.0),
        Err(panic) => Err(format!("worker panicked: {}", panic_text(&panic))),
    };
    Report {
        task: a.task,
        attempt: a.attempt,
        worker: name,
        outcome,
        run_ms: started.elapsed().as_millis() as u64,
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(&'static str, u32);

    #[async_trait::async_trait]
    impl Worker for Echo {
        fn name(&self) -> &str {
            self.0
        }
        fn role(&self) -> &str {
            "w"
        }
        fn skill(&self) -> u32 {
            self.1
        }
        async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
            if req.name == "panic" {
                panic!("boom");
            }
            if req.name == "fail" {
                return Err(ProcessError::msg("nope"));
            }
            Ok(req.input)
        }
    }

    fn assignment(name: &str, worker: &str) -> Assignment {
        Assignment {
            task: TaskId::random(),
            attempt: 1,
            worker: worker.into(),
            name: name.into(),
            role: "w".into(),
            difficulty: 1,
            input: Payload::from_bytes(vec![7]),
            deps: vec![],
            timeout_ms: None,
        }
    }

    #[tokio::test]
    async fn runs_refuses_and_reports() {
        let mut rt = WorkerRuntime::new(vec![Arc::new(Echo("a", 5))]).unwrap();
        assert!(rt.accept(assignment("ok", "a")).accepted);
        let full = rt.accept(assignment("ok", "a"));
        assert_eq!(full.reason.as_deref(), Some("worker is full"));
        assert!(!rt.accept(assignment("ok", "ghost")).accepted);
        let r = rt.next_finished().await;
        assert_eq!(r.outcome, Ok(Payload::from_bytes(vec![7])));
        assert!(rt.accept(assignment("panic", "a")).accepted);
        let r = rt.next_finished().await;
        assert!(r.outcome.unwrap_err().contains("panicked: boom"));
        assert!(rt.accept(assignment("fail", "a")).accepted);
        assert_eq!(rt.next_finished().await.outcome, Err("nope".into()));
        rt.drain();
        assert!(!rt.accept(assignment("ok", "a")).accepted);
    }

    #[test]
    fn bids_follow_role_skill_and_load() {
        let rt = WorkerRuntime::new(vec![Arc::new(Echo("a", 5)), Arc::new(Echo("b", 2))]).unwrap();
        let ann = |difficulty, role: &str| Announcement {
            task: TaskId::random(),
            round: 1,
            name: "t".into(),
            role: role.into(),
            difficulty,
            input_len: 0,
        };
        let bids = rt.bids_for(&[ann(4, "w"), ann(1, "other")]);
        let willing: Vec<_> = bids.iter().map(|b| (b.worker.as_str(), b.willing)).collect();
        assert_eq!(willing, [("a", true), ("b", false)]);
        assert!(WorkerRuntime::new(vec![Arc::new(Echo("a", 1)), Arc::new(Echo("a", 2))]).is_err());
    }
}
