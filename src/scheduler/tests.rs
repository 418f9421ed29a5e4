//! Deterministic tests of the scheduler.
//!
//! [`Harness`] owns a [`Scheduler`], a virtual clock and everything the
//! scheduler said, and plays the workers' side with small helpers (`bid`,
//! `accept`, `report_ok`, ...). It records the scheduler's events, and when
//! a test ends it checks that they rebuild the same ledger (see `ledger`).
//! Scenario tests in the submodules read top to bottom; `property` drives
//! random DAGs over random worker pools on a faulty simulated mesh.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::task::{
    AttemptOutcome, Payload, Task, TaskError, TaskId, TaskReport, TaskStatus, Trigger, WorkerInfo, WorkerSpec,
};

mod awards;
mod cancel;
mod faults;
mod leases;
mod ledger;
mod lifecycle;
mod observe;
mod priority;
mod property;
mod reasons;
mod retention;
mod retries;
mod retrying;
mod standing;
mod takeover;
mod timeouts;
mod triggers;

// ---- building blocks ------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A deterministic id; `n` shows in both the leading digits (which `Debug`
/// prints) and the trailing ones.
fn tid(n: u128) -> TaskId {
    TaskId(uuid::Uuid::from_u128((n << 96) | n))
}

/// Asserts two logs are equal, showing only the first difference.
fn assert_same_log<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T], what: &str) {
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!("{what}: logs differ at entry {i}:\n{:?}\n{:?}", a[i], b[i]);
    }
    assert_eq!(a.len(), b.len(), "{what}: logs differ in length");
}

/// A worker as the tests declare it: `(name, role, skill, capacity)`.
type Spec<'a> = (&'a str, &'a str, u32, u32);

/// A task with a deterministic id, named `t{n}`, of role "worker".
fn task(n: u128, difficulty: u32) -> Task {
    named(n, &format!("t{n}"), "worker", difficulty)
}

fn named(n: u128, name: &str, role: &str, difficulty: u32) -> Task {
    Task {
        id: tid(n),
        ..Task::new(name, role, difficulty)
    }
}

/// The bid a worker with the default `Worker::bid` makes for `a`, judged
/// by the admin's view of the worker.
fn default_bid(w: &WorkerInfo, a: &Announcement) -> Bid {
    Bid {
        task: a.task,
        round: a.round,
        worker: w.name.clone(),
        skill: w.skill,
        load: w.load,
        capacity: w.capacity,
        willing: w.skill >= a.difficulty && w.load < w.capacity,
    }
}

/// Short timers so scenarios stay readable: a 5 ms bid window, retries after
/// 10, 20, 40, 40 ... ms and a one second capable-worker deadline.
fn cfg() -> SchedulerConfig {
    SchedulerConfig {
        bid_window: ms(5),
        no_worker_timeout: ms(1000),
        auction_backoff: ms(10),
        max_auction_backoff: ms(40),
        // Scenario tests do not renew leases; lease tests set their own.
        lease: Duration::from_secs(3600),
        ..SchedulerConfig::default()
    }
}

/// splitmix64: tiny, seedable and well mixed; enough for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.range(0, i as u64) as usize);
        }
    }
}

// ---- the harness ------------------------------------------------------------

/// A scheduler on a virtual clock, with a record of everything it said.
struct Harness {
    s: Scheduler,
    now: Duration,
    /// Every output, with the time it was produced.
    log: Vec<(Duration, Output)>,
    /// Outputs of the most recent input.
    last: Vec<Output>,
    /// Announcements not yet answered by [`Harness::bid_all`].
    inbox: Vec<Announcement>,
    /// The current auction round of every announced task.
    rounds: BTreeMap<TaskId, u32>,
    /// The latest assignment of every task, with the node it went to.
    assigned: BTreeMap<TaskId, (NodeId, Assignment)>,
    /// Every assignment, in order.
    assign_log: Vec<(NodeId, Assignment)>,
    /// Every event the scheduler applied, in order.
    events: Vec<Event>,
    token: u64,
}

/// A test that ends well also shows that its events rebuild its ledger.
impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        self.events.extend(self.s.take_events());
        ledger::assert_replays(&self.s, &self.events, self.now);
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(cfg())
    }

    fn with(cfg: SchedulerConfig) -> Self {
        let mut s = Scheduler::new(cfg);
        s.record_events();
        Harness {
            s,
            now: Duration::ZERO,
            log: Vec::new(),
            last: Vec::new(),
            inbox: Vec::new(),
            rounds: BTreeMap::new(),
            assigned: BTreeMap::new(),
            assign_log: Vec::new(),
            events: Vec::new(),
            token: 0,
        }
    }

    /// Feeds one input at the current time and records what came out.
    fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.s.handle(input, self.now, &mut out);
        for o in &out {
            match o {
                Output::Announce(anns) => {
                    for a in anns {
                        self.rounds.insert(a.task, a.round);
                    }
                    self.inbox.extend(anns.iter().cloned());
                }
                Output::Assign { node, assignments } => {
                    for a in assignments {
                        self.assigned.insert(a.task, (node.clone(), a.clone()));
                        self.assign_log.push((node.clone(), a.clone()));
                    }
                }
                _ => {}
            }
        }
        self.events.extend(self.s.take_events());
        self.log.extend(out.iter().map(|o| (self.now, o.clone())));
        self.last = out.clone();
        out
    }

    fn try_submit(&mut self, tasks: Vec<Task>) -> Result<Vec<TaskId>, SubmitError> {
        self.token += 1;
        let token = self.token;
        let out = self.step(Input::Submit { token, tasks });
        out.into_iter()
            .find_map(|o| match o {
                Output::Submitted { token: t, result } if t == token => Some(result),
                _ => None,
            })
            .expect("every submission is answered")
    }

    fn submit(&mut self, tasks: Vec<Task>) -> Vec<TaskId> {
        self.try_submit(tasks).expect("batch accepted")
    }

    /// Declares a node's workers as `(name, role, skill, capacity)`, each
    /// bidding on announcements (no standing bid).
    fn register(&mut self, node: &str, workers: &[Spec]) {
        let workers: Vec<_> = workers.iter().map(|&spec| (spec, None)).collect();
        self.register_standing(node, &workers);
    }

    /// Declares a node's workers, each with its standing bid.
    fn register_standing(&mut self, node: &str, workers: &[(Spec, Option<u32>)]) {
        let workers: Vec<_> = workers
            .iter()
            .map(|&(spec, standing)| (spec, standing, 0))
            .collect();
        self.register_queued(node, &workers);
    }

    /// Declares a node's workers, each with its standing bid and queue.
    fn register_queued(&mut self, node: &str, workers: &[(Spec, Option<u32>, u32)]) {
        let workers = workers
            .iter()
            .map(|&((name, role, skill, capacity), standing, queue)| WorkerSpec {
                name: name.into(),
                role: role.into(),
                skill,
                capacity,
                standing,
                queue,
            })
            .collect();
        self.step(Input::Register {
            node: NodeId::new(node),
            workers,
        });
    }

    fn leave(&mut self, node: &str) {
        self.step(Input::NodeLeft(NodeId::new(node)));
    }

    /// Moves the clock forward, ticking exactly when the scheduler asks to.
    fn advance(&mut self, millis: u64) {
        let target = self.now + ms(millis);
        let mut ticks = 0;
        while let Some(at) = self.s.next_deadline() {
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            self.step(Input::Tick);
            ticks += 1;
            assert!(ticks < 1_000_000, "timers never settle");
        }
        self.now = target;
    }

    /// Advances to an absolute time.
    fn advance_to(&mut self, millis: u64) {
        let delta = ms(millis).checked_sub(self.now).expect("time only moves forward");
        self.advance(delta.as_millis() as u64);
    }

    /// One worker answers the current round of `task`, quoting its
    /// registered skill and capacity.
    fn bid(&mut self, node: &str, worker: &str, task: TaskId, willing: bool) {
        let info = self.worker(node, worker);
        let (skill, load, capacity) = info.map_or((1, 0, 1), |w| (w.skill, w.load, w.capacity));
        let round = self.rounds.get(&task).copied().unwrap_or(0);
        let bid = Bid {
            task,
            round,
            worker: worker.into(),
            skill,
            load,
            capacity,
            willing,
        };
        self.bid_raw(node, bid);
    }

    fn bid_raw(&mut self, node: &str, bid: Bid) {
        self.step(Input::Bids {
            node: NodeId::new(node),
            bids: vec![bid],
        });
    }

    /// Every registered worker of the role answers every unanswered
    /// announcement, willing when it is skilled enough and has room (as the
    /// admin sees it). One `Bids` input per node.
    fn bid_all(&mut self) {
        let anns = std::mem::take(&mut self.inbox);
        let workers = self.s.workers();
        let mut per_node: BTreeMap<NodeId, Vec<Bid>> = BTreeMap::new();
        for a in &anns {
            for w in workers.iter().filter(|w| w.role == a.role) {
                per_node
                    .entry(w.node.clone())
                    .or_default()
                    .push(default_bid(w, a));
            }
        }
        for (node, bids) in per_node {
            self.step(Input::Bids { node, bids });
        }
    }

    fn answer(&mut self, id: TaskId, accepted: bool) {
        let (node, a) = self.assigned[&id].clone();
        self.step(Input::AssignAnswer {
            node,
            task: id,
            attempt: a.attempt,
            accepted,
        });
    }

    fn accept(&mut self, id: TaskId) {
        self.answer(id, true);
    }

    fn refuse(&mut self, id: TaskId) {
        self.answer(id, false);
    }

    /// The holder of the latest assignment reports an outcome.
    fn report(&mut self, id: TaskId, outcome: Result<Payload, Failure>) {
        let (node, a) = self.assigned[&id].clone();
        let report = Report {
            task: id,
            attempt: a.attempt,
            worker: a.worker,
            outcome,
            run_ms: 1,
        };
        self.step(Input::Reports {
            node,
            reports: vec![report],
        });
    }

    fn report_ok(&mut self, id: TaskId, output: &[u8]) {
        self.report(id, Ok(Payload::from_bytes(output)));
    }

    fn report_err(&mut self, id: TaskId, message: &str) {
        self.report(id, Err(Failure::retryable(message)));
    }

    /// Bids, accepts and completes (with output = the task's name) every
    /// announced task, until nothing is left to do at this instant.
    fn run_ready(&mut self) {
        loop {
            let before = self.assign_log.len();
            self.bid_all();
            let new: Vec<TaskId> = self.assign_log[before..].iter().map(|(_, a)| a.task).collect();
            if new.is_empty() {
                return;
            }
            for id in &new {
                self.accept(*id);
            }
            for id in new {
                let name = self.assigned[&id].1.name.clone();
                self.report_ok(id, name.as_bytes());
            }
        }
    }

    /// A node renews the leases of `held`; returns the pairs the scheduler
    /// told it to abort.
    fn renew(&mut self, node: &str, held: &[(TaskId, u32)]) -> Vec<(TaskId, u32)> {
        self.renew_waiting(node, held, &[])
    }

    /// As [`Harness::renew`], saying which of `held` wait in a queue.
    fn renew_waiting(
        &mut self,
        node: &str,
        held: &[(TaskId, u32)],
        waiting: &[(TaskId, u32)],
    ) -> Vec<(TaskId, u32)> {
        let node = NodeId::new(node);
        let out = self.step(Input::Renew {
            node: node.clone(),
            held: held.to_vec(),
            waiting: waiting.to_vec(),
        });
        aborts_to(&out, &node)
    }

    /// Cancels `ids`; returns one outcome per id.
    fn cancel(&mut self, ids: &[TaskId]) -> Vec<CancelOutcome> {
        self.token += 1;
        let token = self.token;
        let out = self.step(Input::Cancel {
            token,
            ids: ids.to_vec(),
        });
        out.into_iter()
            .find_map(|o| match o {
                Output::Cancelled { token: t, outcomes } if t == token => Some(outcomes),
                _ => None,
            })
            .expect("every cancellation is answered")
    }

    /// Pairs the most recent input told `node` to abort.
    fn last_aborts(&self, node: &str) -> Vec<(TaskId, u32)> {
        aborts_to(&self.last, &NodeId::new(node))
    }

    /// When the task's latest retry may start, from the ledger's events.
    fn retry_until(&self, id: TaskId) -> Option<u64> {
        self.events.iter().rev().find_map(|e| match e {
            Event::RetryScheduled { task, until_ms } if *task == id => Some(*until_ms),
            _ => None,
        })
    }

    fn status(&self, id: TaskId) -> Option<TaskStatus> {
        self.s.status(&id)
    }

    fn report_of(&self, id: TaskId) -> TaskReport {
        self.s.report_of(&id, self.now).expect("known task")
    }

    fn error(&self, id: TaskId) -> Option<TaskError> {
        self.report_of(id).error
    }

    /// The worker holding (or that last held) the task's latest assignment.
    fn winner(&self, id: TaskId) -> Option<&str> {
        self.assigned.get(&id).map(|(_, a)| a.worker.as_str())
    }

    fn worker(&self, node: &str, name: &str) -> Option<WorkerInfo> {
        self.s
            .workers()
            .into_iter()
            .find(|w| w.node.as_str() == node && w.name == name)
    }

    fn load(&self, node: &str, name: &str) -> u32 {
        self.worker(node, name).expect("registered worker").load
    }

    /// Task ids of each `Announce` output of the most recent input.
    fn last_announces(&self) -> Vec<Vec<TaskId>> {
        announce_batches(&self.last)
    }

    /// How many times each task was assigned so far.
    fn assign_count(&self, id: TaskId) -> usize {
        self.assign_log.iter().filter(|(_, a)| a.task == id).count()
    }

    /// Times at which the task was announced.
    fn announce_times(&self, id: TaskId) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Announce(a) if a.iter().any(|a| a.task == id)))
            .map(|(t, _)| t.as_millis() as u64)
            .collect()
    }

    /// Statuses the scheduler announced for the task, in order.
    fn changes(&self, id: TaskId) -> Vec<TaskStatus> {
        self.log
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Changed { id: i, status } if *i == id => Some(status.clone()),
                _ => None,
            })
            .collect()
    }
}

fn aborts_to(out: &[Output], node: &NodeId) -> Vec<(TaskId, u32)> {
    let aborts = out.iter().filter_map(|o| match o {
        Output::Abort { node: n, attempts } if n == node => Some(attempts.clone()),
        _ => None,
    });
    aborts.flatten().collect()
}

fn announce_batches(out: &[Output]) -> Vec<Vec<TaskId>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Announce(a) => Some(a.iter().map(|a| a.task).collect()),
            _ => None,
        })
        .collect()
}
