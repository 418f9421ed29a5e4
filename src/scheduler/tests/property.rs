//! Randomized property test: random DAGs over random worker pools, driven to
//! the end by simulated workers, checked against the scheduler's promises.

use std::collections::BTreeSet;

use super::*;

/// How hostile the simulated mesh is.
#[derive(Clone, Copy, Debug)]
struct Profile {
    /// Most milliseconds a message or a run takes (0: everything instant).
    max_delay: u64,
    /// Percent of answers to announcements that never come.
    silent: u64,
    /// Percent of awards refused.
    refuse: u64,
    /// Percent of runs that end in an error.
    fail: u64,
    /// Percent chance, per delivered message, that a node drops out for a while.
    churn: u64,
    /// Percent of tasks with a run timeout shorter than some runs.
    timeouts: u64,
}

const INSTANT: Profile = Profile {
    max_delay: 0,
    silent: 0,
    refuse: 0,
    fail: 15,
    churn: 0,
    timeouts: 0,
};
const ROUGH: Profile = Profile {
    max_delay: 20,
    silent: 10,
    refuse: 10,
    fail: 15,
    churn: 2,
    timeouts: 10,
};

enum Msg {
    Submit(Vec<Task>),
    Bids(NodeId, Vec<Bid>),
    Answer(NodeId, TaskId, u32, bool),
    Report(NodeId, Report),
    Rejoin(NodeId),
}

struct Sim {
    rng: Rng,
    p: Profile,
    s: Scheduler,
    now: Duration,
    /// Messages in flight, by delivery time, then sending order.
    queue: BTreeMap<(Duration, u64), Msg>,
    seq: u64,
    /// Every node's workers, whether it is connected or not.
    nodes: BTreeMap<NodeId, Vec<WorkerSpec>>,
    online: BTreeSet<NodeId>,
    tasks: BTreeMap<TaskId, Task>,
    pending_submits: usize,
    /// Every assignment per task, in order, with whether the worker took it.
    awards: BTreeMap<TaskId, Vec<(Assignment, bool)>>,
    /// Statuses announced per task.
    changes: BTreeMap<TaskId, Vec<TaskStatus>>,
    log: Vec<String>,
}

fn output_bytes(id: TaskId, attempt: u32) -> Vec<u8> {
    let mut v = id.0.as_bytes().to_vec();
    v.extend(attempt.to_le_bytes());
    v
}

impl Sim {
    fn new(seed: u64, p: Profile) -> Self {
        let mut rng = Rng(seed);
        let cfg = SchedulerConfig {
            bid_window: ms(5),
            no_worker_timeout: ms(300),
            auction_backoff: ms(10),
            max_auction_backoff: ms(40),
            lease: Duration::from_secs(3600),
            max_scan: [1, 2, 4096][rng.range(0, 2) as usize],
            ..SchedulerConfig::default()
        };
        let mut sim = Sim {
            rng,
            p,
            s: Scheduler::new(cfg),
            now: Duration::ZERO,
            queue: BTreeMap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            online: BTreeSet::new(),
            tasks: BTreeMap::new(),
            pending_submits: 0,
            awards: BTreeMap::new(),
            changes: BTreeMap::new(),
            log: Vec::new(),
        };
        sim.make_workers();
        sim.make_tasks();
        sim
    }

    /// One to three nodes with up to three workers each, of roles "a" and
    /// "b" (nobody serves role "c").
    fn make_workers(&mut self) {
        for n in 0..self.rng.range(1, 4) {
            let node = NodeId::new(format!("node{n}"));
            let workers: Vec<WorkerSpec> = (0..self.rng.range(1, 3))
                .map(|i| WorkerSpec {
                    name: format!("w{i}"),
                    role: if self.rng.percent(50) { "a" } else { "b" }.into(),
                    skill: self.rng.range(3, 10) as u32,
                    capacity: self.rng.range(1, 3) as u32,
                })
                .collect();
            self.nodes.insert(node.clone(), workers.clone());
            // Some nodes join only after work arrived.
            let delay = if self.rng.percent(30) {
                self.rng.range(0, 100)
            } else {
                0
            };
            self.send(delay, Msg::Rejoin(node));
        }
    }

    /// A random DAG (dependencies only on earlier tasks) in one to three
    /// batches, each listed in random order.
    fn make_tasks(&mut self) {
        let count = self.rng.range(1, 40) as u128;
        let mut all: Vec<Task> = Vec::new();
        for i in 0..count {
            let role = match self.rng.range(0, 39) {
                0 => "c",
                r if r % 2 == 0 => "a",
                _ => "b",
            };
            let mut t = named(i + 1, &format!("t{}", i + 1), role, self.rng.range(1, 9) as u32);
            t.input = Payload::from_bytes(vec![i as u8; self.rng.range(0, 4) as usize]);
            if i > 0 {
                for _ in 0..self.rng.range(0, 3).saturating_sub(1) {
                    t = t.depends_on(tid(self.rng.range(1, i as u64) as u128));
                }
            }
            if self.rng.percent(self.p.timeouts) {
                t.timeout_ms = Some(self.rng.range(5, 30));
            }
            all.push(t);
        }
        let batches = self.rng.range(1, 3) as usize;
        let mut at = 0;
        let mut rest = all.as_slice();
        for b in 0..batches {
            let take = if b + 1 == batches {
                rest.len()
            } else {
                self.rng.range(0, rest.len() as u64) as usize
            };
            let mut batch = rest[..take].to_vec();
            rest = &rest[take..];
            self.rng.shuffle(&mut batch);
            for t in &batch {
                self.tasks.insert(t.id, t.clone());
            }
            self.pending_submits += 1;
            // Submitted in order: the queue keeps sending order for equal times.
            self.queue.insert((ms(at), self.seq), Msg::Submit(batch));
            self.seq += 1;
            at += self.rng.range(0, 60);
        }
    }

    fn send(&mut self, delay: u64, msg: Msg) {
        self.queue.insert((self.now + ms(delay), self.seq), msg);
        self.seq += 1;
    }

    fn delay(&mut self) -> u64 {
        self.rng.range(0, self.p.max_delay)
    }

    fn step(&mut self, input: Input) {
        let mut out = Vec::new();
        self.s.handle(input, self.now, &mut out);
        for o in out {
            self.log.push(format!("{:?} {o:?}", self.now));
            self.react(o);
        }
        for w in self.s.workers() {
            assert!(w.load <= w.capacity, "{w:?} over capacity");
        }
    }

    /// The simulated workers' side of each output.
    fn react(&mut self, o: Output) {
        match o {
            Output::Submitted { result, .. } => {
                result.expect("random DAGs are valid");
            }
            Output::Changed { id, status } => self.changes.entry(id).or_default().push(status),
            Output::Abort { .. } | Output::Cancelled { .. } => {}
            Output::Announce(anns) => {
                let workers = self.s.workers();
                for node in self.online.clone() {
                    let mut bids = Vec::new();
                    for a in &anns {
                        for w in workers.iter().filter(|w| w.node == node && w.role == a.role) {
                            if self.rng.percent(self.p.silent) {
                                continue;
                            }
                            bids.push(default_bid(w, a));
                        }
                    }
                    if !bids.is_empty() {
                        let d = self.delay();
                        self.send(d, Msg::Bids(node, bids));
                    }
                }
            }
            Output::Assign { node, assignments } => {
                for a in assignments {
                    self.check_award(&node, &a);
                    let take = !self.rng.percent(self.p.refuse);
                    let d = self.delay();
                    self.send(d, Msg::Answer(node.clone(), a.task, a.attempt, take));
                    if take {
                        let mut outcome = if self.rng.percent(self.p.fail) {
                            Err(Failure::retryable("boom"))
                        } else {
                            Ok(Payload::from_bytes(output_bytes(a.task, a.attempt)))
                        };
                        let mut run = d + self.delay();
                        // The worker enforces the execution timeout.
                        if let Some(limit) = a.timeout_ms.filter(|&t| run > d + t) {
                            run = d + limit;
                            outcome = Err(Failure {
                                timeout_ms: Some(limit),
                                ..Failure::retryable("timed out")
                            });
                        }
                        let r = Report {
                            task: a.task,
                            attempt: a.attempt,
                            worker: a.worker.clone(),
                            outcome,
                            run_ms: run,
                        };
                        self.send(run, Msg::Report(node.clone(), r));
                    }
                    self.awards.entry(a.task).or_default().push((a, take));
                }
            }
        }
    }

    /// An award goes to a registered, capable worker of the task's role, for
    /// a task whose dependencies all completed, with their outputs in order.
    fn check_award(&self, node: &NodeId, a: &Assignment) {
        let t = &self.tasks[&a.task];
        let w = self
            .s
            .workers()
            .into_iter()
            .find(|w| &w.node == node && w.name == a.worker);
        let w = w.unwrap_or_else(|| panic!("{a:?} went to an unregistered worker"));
        assert!(
            w.role == t.role && w.skill >= t.difficulty,
            "{a:?} to incapable {w:?}"
        );
        let earlier = self.awards.get(&a.task).map_or(0, Vec::len);
        assert_eq!(a.attempt as usize, earlier + 1, "attempts count awards");
        let deps: Vec<TaskId> = a.deps.iter().map(|d| d.id).collect();
        assert_eq!(deps, t.dependencies, "dependency outputs in dependency order");
        for d in &a.deps {
            assert_eq!(
                self.s.status(&d.id),
                Some(TaskStatus::Completed),
                "{} ran before {}",
                t.name,
                d.name
            );
            let dep = self.s.report_of(&d.id, self.now).unwrap();
            assert_eq!(
                (d.outcome.as_ref().ok(), &d.name),
                (dep.output.as_ref(), &dep.name)
            );
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Submit(batch) => {
                self.pending_submits -= 1;
                self.step(Input::Submit {
                    token: 0,
                    tasks: batch,
                });
            }
            Msg::Bids(node, bids) => self.step(Input::Bids { node, bids }),
            Msg::Answer(node, task, attempt, accepted) => self.step(Input::AssignAnswer {
                node,
                task,
                attempt,
                accepted,
            }),
            Msg::Report(node, r) => self.step(Input::Reports {
                node,
                reports: vec![r],
            }),
            Msg::Rejoin(node) => {
                self.online.insert(node.clone());
                let workers = self.nodes[&node].clone();
                self.step(Input::Register { node, workers });
            }
        }
        if self.rng.percent(self.p.churn) && !self.online.is_empty() {
            let i = self.rng.range(0, self.online.len() as u64 - 1) as usize;
            let node = self.online.iter().nth(i).unwrap().clone();
            self.online.remove(&node);
            self.step(Input::NodeLeft(node.clone()));
            let back = self.rng.range(1, 400);
            self.send(back, Msg::Rejoin(node));
        }
    }

    /// Runs until every task is final, ticking exactly when asked to.
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            if let Some(entry) = self.queue.first_entry() {
                if entry.key().0 <= self.now {
                    let msg = entry.remove();
                    self.deliver(msg);
                    continue;
                }
            }
            if self.s.next_deadline().is_some_and(|d| d <= self.now) {
                self.step(Input::Tick);
                continue;
            }
            if self.pending_submits == 0 && self.s.unfinished() == 0 {
                return;
            }
            let next_msg = self.queue.keys().next().map(|k| k.0);
            let next = [next_msg, self.s.next_deadline()].into_iter().flatten().min();
            let Some(next) = next else {
                panic!(
                    "stuck at {:?} with {} unfinished tasks and nothing scheduled",
                    self.now,
                    self.s.unfinished()
                );
            };
            self.now = next;
        }
        panic!("did not settle");
    }

    fn check_end(&self) {
        assert_eq!(self.s.unfinished(), 0);
        for w in self.s.workers() {
            assert_eq!(w.load, 0, "{w:?} still loaded");
        }
        let best = |role: &str| {
            self.nodes
                .values()
                .flatten()
                .filter(|w| w.role == role)
                .map(|w| w.skill)
                .max()
        };
        for (id, t) in &self.tasks {
            let r = self.s.report_of(id, self.now).expect("submitted task is known");
            assert!(r.status.is_final(), "{} ended {:?}", t.name, r.status);
            self.check_changes(t, &r.status);
            let awards = self.awards.get(id).map_or(&[][..], Vec::as_slice);
            let taken = awards.iter().filter(|(_, take)| *take).count();
            let lost = r
                .history
                .iter()
                .filter(|a| matches!(a.outcome, AttemptOutcome::Lost { .. }));
            let lost = lost.count();
            // Only a lost attempt is run again (at-least-once execution).
            assert!(taken <= 1 + lost, "{} taken {taken} times, lost {lost}", t.name);
            // The history holds every award not refused.
            assert!(r.attempts as usize <= awards.len(), "{}", t.name);
            let numbers: Vec<u32> = r.history.iter().map(|a| a.number).collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{}: {numbers:?}", t.name);
            let failed_dep = t
                .dependencies
                .iter()
                .find(|d| self.s.status(d) == Some(TaskStatus::Failed));
            match r.status {
                TaskStatus::Completed => {
                    assert!(taken >= 1, "{} completed without being taken", t.name);
                    if self.p.refuse == 0 && lost == 0 {
                        assert_eq!(awards.len(), 1, "{} awarded more than once", t.name);
                    }
                    let last = &awards.last().unwrap().0;
                    assert_eq!(
                        r.output,
                        Some(Payload::from_bytes(output_bytes(*id, last.attempt)))
                    );
                    assert_eq!(r.worker.as_deref(), Some(last.worker.as_str()));
                    assert!(failed_dep.is_none());
                    for d in &t.dependencies {
                        assert_eq!(self.s.status(d), Some(TaskStatus::Completed));
                    }
                }
                _ => self.check_failure(t, &r, failed_dep.copied(), best(&t.role)),
            }
        }
    }

    fn check_failure(&self, t: &Task, r: &TaskReport, failed_dep: Option<TaskId>, best: Option<u32>) {
        let err = r.error.clone().expect("failed task has an error");
        if let TaskError::DependencyFailed { id, name } = &err {
            assert!(t.dependencies.contains(id), "{} blames a non-dependency", t.name);
            assert_eq!(self.s.status(id), Some(TaskStatus::Failed));
            assert_eq!(name, &self.tasks[id].name);
            assert_eq!(r.attempts, 0, "{} ran although a dependency failed", t.name);
        } else {
            // A task fails for its own reason only if its dependencies succeeded.
            assert_eq!(
                failed_dep, None,
                "{}: dependent of a failed task ended {err:?}",
                t.name
            );
        }
        if best.is_none_or(|b| b < t.difficulty) {
            assert!(
                matches!(&err, TaskError::NoCapableWorker { best_skill, .. } if *best_skill <= best)
                    || matches!(err, TaskError::DependencyFailed { .. }),
                "{} is beyond every worker but ended {err:?}",
                t.name
            );
        }
        if self.p.max_delay == 0 && self.p.silent == 0 && self.p.churn == 0 {
            assert!(
                matches!(
                    err,
                    TaskError::Processing { .. }
                        | TaskError::DependencyFailed { .. }
                        | TaskError::NoCapableWorker { .. }
                ),
                "{}: {err:?} with instant workers",
                t.name
            );
        }
    }

    /// Announced statuses follow the life cycle and end where the task is.
    fn check_changes(&self, t: &Task, end: &TaskStatus) {
        use TaskStatus::*;
        let changes = &self.changes[&t.id];
        assert_eq!(changes.first(), Some(&Pending));
        assert_eq!(changes.last(), Some(end), "{}: {changes:?}", t.name);
        for pair in changes.windows(2) {
            let ok = matches!(
                (&pair[0], &pair[1]),
                // A late bid awards a task backing off without a new round.
                (Pending, Announced | Assigned | Failed)
                    | (Announced, Assigned | Pending | Failed)
                    | (Assigned, Running | Pending | Completed | Failed)
                    // A lost attempt goes back to waiting for an award.
                    | (Running, Completed | Failed | Pending)
            );
            assert!(ok, "{}: {:?} -> {:?} in {changes:?}", t.name, pair[0], pair[1]);
        }
    }
}

impl Sim {
    /// How each task ended, by kind: "completed", or the error variant.
    fn outcomes(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for id in self.tasks.keys() {
            let kind = match self.s.report_of(id, self.now).and_then(|r| r.error) {
                None => "completed",
                Some(TaskError::Processing { .. }) => "processing",
                Some(TaskError::NoCapableWorker { .. }) => "no capable worker",
                Some(TaskError::NoBids { .. }) => "no bids",
                Some(TaskError::DependencyFailed { .. }) => "dependency failed",
                Some(TaskError::Poison { .. }) => "poison",
                Some(TaskError::Timeout { .. }) => "timeout",
                Some(_) => "other",
            };
            *counts.entry(kind).or_default() += 1;
        }
        let refused = self.awards.values().flatten().filter(|(_, take)| !take).count();
        *counts.entry("refused awards").or_default() += refused;
        counts
    }
}

fn run_seed(seed: u64, p: Profile) -> Vec<String> {
    let mut sim = Sim::new(seed, p);
    sim.run();
    sim.check_end();
    sim.log
}

/// Runs every seed, naming the one that fails, and returns how tasks ended
/// over all of them.
fn for_seeds(p: Profile, seeds: std::ops::Range<u64>) -> BTreeMap<&'static str, usize> {
    let mut total = BTreeMap::new();
    for seed in seeds {
        let result = std::panic::catch_unwind(|| {
            let mut sim = Sim::new(seed, p);
            sim.run();
            sim.check_end();
            sim.outcomes()
        });
        match result {
            Ok(counts) => {
                for (k, n) in counts {
                    *total.entry(k).or_default() += n;
                }
            }
            Err(e) => {
                eprintln!("failing seed: {seed} with {p:?}");
                std::panic::resume_unwind(e);
            }
        }
    }
    total
}

/// The random runs must keep reaching every path they are meant to check.
fn assert_covers(total: &BTreeMap<&'static str, usize>, kinds: &[&str]) {
    for k in kinds {
        assert!(
            total.get(k).copied().unwrap_or(0) > 0,
            "no run ended with {k:?}: {total:?}"
        );
    }
}

#[test]
fn random_dags_with_instant_workers() {
    let total = for_seeds(INSTANT, 0..1_000);
    assert_covers(
        &total,
        &[
            "completed",
            "processing",
            "dependency failed",
            "no capable worker",
        ],
    );
}

#[test]
fn random_dags_with_slow_unreliable_workers() {
    let total = for_seeds(ROUGH, 1_000..2_000);
    assert_covers(
        &total,
        &[
            "completed",
            "processing",
            "dependency failed",
            "no capable worker",
            "poison",
            "timeout",
            "refused awards",
        ],
    );
}

#[test]
fn random_runs_are_reproducible() {
    for seed in 0..25 {
        for p in [INSTANT, ROUGH] {
            assert_same_log(&run_seed(seed, p), &run_seed(seed, p), &format!("seed {seed}"));
        }
    }
}
