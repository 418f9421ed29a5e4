//! A whole mesh simulated around the replicated scheduler: three voters
//! ([`Ledger`]s), two worker nodes and a client, on a virtual clock, with
//! message loss, pauses, cut-off voters, one voter killed for good, and
//! voters that crash and start again from what they wrote to disk (a
//! durable ledger), sometimes all of them at once. Deterministic per seed;
//! a failure names its seed.
//!
//! The workers and the client behave as the real nodes do: they talk to the
//! admin with the highest term they can reach, register and report their
//! holdings to each new admin, renew leases, keep results until the admin
//! acknowledges them (once committed), and the client submits again, with
//! the same ids, a batch whose acknowledgement it never got.
//!
//! After the faults stop, every run must end with one admin, every
//! acknowledged task completed exactly once (one completed attempt, whose
//! output is the last attempt's), and every voter agreeing on it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use raft::eraftpb::Message;

use super::{Ledger, LedgerConfig, LogImage, OfficeChange, ReplicaConfig};
use crate::scheduler::{Assignment, Bid, Input, Output, Report, SchedulerConfig, SubmitError};
use crate::task::{AttemptOutcome, NodeId, Payload, Task, TaskId, TaskStatus, WorkerSpec};

/// Virtual milliseconds per step.
const STEP: u64 = 10;
/// Steps per Raft tick (50 ms).
const TICK_EVERY: u64 = 5;
const LEASE: u64 = 400;
const RENEW: u64 = 100;
/// Faults happen before this time; afterwards the mesh heals.
const FAULTS_UNTIL: u64 = 12_000;
/// A run that has not settled by then fails.
const GIVE_UP: u64 = 90_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::task::mix64(self.0)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// One voter and what the network does to it.
struct Voter {
    ledger: Ledger,
    cfg: LedgerConfig,
    /// What it wrote to disk: all that survives a crash.
    disk: LogImage,
    /// Crashed, and starting again from its disk at this time.
    down_until: u64,
    /// Paused until then: no ticks, messages kept for later.
    paused_until: u64,
    /// Cut off from everyone until then: messages lost.
    cut_until: u64,
    dead: bool,
    /// Messages that arrived while paused.
    kept: Vec<Message>,
}

impl Voter {
    fn up(&self, now: u64) -> bool {
        !self.dead && self.paused_until <= now && self.down_until <= now
    }

    /// Crashes: everything in memory is lost; it starts again, at
    /// `until`, from its disk.
    fn crash(&mut self, until: u64, now: Duration) {
        let store = self.disk.reopen().expect("the disk holds a consistent log");
        let (ledger, step) = Ledger::reopen(self.cfg.clone(), store, now).expect("the disk reads back");
        assert!(
            step.outputs.is_empty() && step.office.is_none(),
            "a reopened replica decides nothing"
        );
        self.ledger = ledger;
        self.down_until = until;
        self.kept.clear();
    }
    fn reachable(&self, now: u64) -> bool {
        self.up(now) && self.cut_until <= now
    }
}

/// What a worker node sends an admin.
enum ToAdmin {
    Register(Vec<WorkerSpec>),
    Bids(Vec<Bid>),
    Answer(TaskId, u32),
    Reports(Vec<Report>),
    Renew(Vec<(TaskId, u32)>),
}

/// A worker node hosting one worker.
struct WorkerNode {
    node: NodeId,
    spec: WorkerSpec,
    /// Attempts running, and when each ends.
    running: BTreeMap<(TaskId, u32), u64>,
    /// Results kept until acknowledged.
    unacked: BTreeMap<(TaskId, u32), Report>,
    /// The admin (voter index, term) it last registered with.
    admin: Option<(usize, u64)>,
    next_renew: u64,
}

/// An admin's answer to a batch of reports, given once what the reports
/// changed is committed.
struct PendingAck {
    voter: usize,
    term: u64,
    /// The log index the answer waits for.
    index: u64,
    worker: usize,
    attempts: Vec<(TaskId, u32)>,
}

/// A batch the client submitted, until acknowledged.
struct Submission {
    tasks: Vec<Task>,
    /// The admin it was sent to, the token, and when to give up on it.
    sent: Option<(usize, u64, u64, u64)>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    now: u64,
    voters: Vec<Voter>,
    workers: Vec<WorkerNode>,
    /// Raft messages in flight: (deliver at, message).
    wire: VecDeque<(u64, Message)>,
    /// Worker messages in flight: (deliver at, voter, worker, message).
    to_admin: VecDeque<(u64, usize, usize, ToAdmin)>,
    /// Admin messages in flight to workers.
    to_worker: VecDeque<(u64, usize, Assignment)>,
    aborts: VecDeque<(u64, usize, (TaskId, u32))>,
    /// Report acknowledgements waiting for a commit.
    acks: Vec<PendingAck>,
    loss: u64,
    submissions: Vec<Submission>,
    acked: BTreeSet<TaskId>,
    next_token: u64,
    /// Which voter was admin in each term.
    admins: BTreeMap<u64, usize>,
    killed: bool,
    /// Voter crashes, and whether all of them crashed at once.
    crashes: u64,
    all_crashed: bool,
    /// No faults and no loss at all.
    quiet: bool,
}

fn output_of(task: TaskId, attempt: u32) -> Payload {
    let mut bytes = task.0.as_bytes().to_vec();
    bytes.extend_from_slice(&attempt.to_le_bytes());
    Payload::from_bytes(bytes)
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let voters = (1..=3)
            .map(|id| {
                let cfg = LedgerConfig {
                    replica: ReplicaConfig {
                        id,
                        voters: vec![1, 2, 3],
                        election_ticks: 10,
                        heartbeat_ticks: 2,
                        durable: true,
                    },
                    scheduler: SchedulerConfig {
                        lease: Duration::from_millis(LEASE),
                        bid_window: Duration::from_millis(20),
                        default_max_attempts: 1_000,
                        ..SchedulerConfig::default()
                    },
                    snapshot_every: rng.range(4, 64),
                    ..LedgerConfig::default()
                };
                let mut ledger = Ledger::new(cfg.clone()).expect("valid config");
                let mut disk = LogImage::default();
                disk.write(&ledger.take_changes());
                Voter {
                    ledger,
                    cfg,
                    disk,
                    down_until: 0,
                    paused_until: 0,
                    cut_until: 0,
                    dead: false,
                    kept: Vec::new(),
                }
            })
            .collect();
        let workers = (0..2)
            .map(|i| WorkerNode {
                node: NodeId::new(format!("node-{i}")),
                spec: WorkerSpec {
                    name: format!("w{i}"),
                    role: "w".into(),
                    skill: 5,
                    capacity: 2,
                    // One worker stands for every task it can take, the
                    // other bids on announcements.
                    standing: (i == 0).then_some(5),
                    queue: if i == 0 { 2 } else { 0 },
                },
                running: BTreeMap::new(),
                unacked: BTreeMap::new(),
                admin: None,
                next_renew: 0,
            })
            .collect();
        let mut submissions = Vec::new();
        for b in 0..rng.range(4, 10) {
            let mut tasks: Vec<Task> = Vec::new();
            for i in 0..rng.range(1, 8) {
                let id = TaskId(uuid::Uuid::from_u64_pair(seed, b * 100 + i));
                let mut t = Task::with_id(id, format!("b{b}t{i}"), "w", 1);
                if i > 0 && rng.percent(60) {
                    t.dependencies.push(tasks[rng.range(0, i - 1) as usize].id);
                }
                tasks.push(t);
            }
            submissions.push(Submission { tasks, sent: None });
        }
        Sim {
            seed,
            loss: rng.range(0, 10),
            rng,
            now: 0,
            voters,
            workers,
            wire: VecDeque::new(),
            to_admin: VecDeque::new(),
            to_worker: VecDeque::new(),
            aborts: VecDeque::new(),
            acks: Vec::new(),
            submissions,
            acked: BTreeSet::new(),
            next_token: 0,
            admins: BTreeMap::new(),
            killed: false,
            crashes: 0,
            all_crashed: false,
            quiet: false,
        }
    }

    fn wall(&self) -> Duration {
        Duration::from_millis(self.now)
    }

    fn faulty(&self) -> bool {
        !self.quiet && self.now < FAULTS_UNTIL
    }

    /// The reachable admin with the highest term.
    fn admin(&self) -> Option<(usize, u64)> {
        let up = self
            .voters
            .iter()
            .enumerate()
            .filter(|(_, v)| v.reachable(self.now));
        up.filter_map(|(i, v)| v.ledger.admin().map(|t| (i, t)))
            .max_by_key(|&(_, t)| t)
    }

    fn lost(&mut self) -> bool {
        self.faulty() && self.rng.percent(self.loss)
    }

    fn run(&mut self) {
        while !self.settled() {
            assert!(
                self.now < GIVE_UP,
                "seed {}: not settled: {}",
                self.seed,
                self.state()
            );
            self.step();
        }
        self.check_end();
    }

    fn step(&mut self) {
        self.now += STEP;
        if self.faulty() {
            self.inject_faults();
        }
        let wall = self.wall();
        for i in 0..self.voters.len() {
            if !self.voters[i].up(self.now) {
                continue;
            }
            let kept = std::mem::take(&mut self.voters[i].kept);
            for m in kept {
                let step = self.voters[i].ledger.receive(m, wall);
                self.carry_out(i, step);
            }
            if self.now.is_multiple_of(STEP * TICK_EVERY) {
                let step = self.voters[i].ledger.tick(wall);
                self.carry_out(i, step);
            }
        }
        self.deliver_raft();
        self.deliver_to_admin();
        self.client();
        self.run_workers();
        for i in 0..self.voters.len() {
            if self.voters[i].up(self.now) && self.voters[i].ledger.admin().is_some() {
                self.feed(i, Input::Tick);
                let step = self.voters[i].ledger.flush(wall);
                self.carry_out(i, step);
            }
        }
        self.send_acks();
        self.check_admins();
    }

    fn inject_faults(&mut self) {
        let now = self.now;
        if self.rng.percent(1) {
            let v = self.rng.range(0, 2) as usize;
            let until = now + self.rng.range(200, 3000);
            if self.rng.percent(50) {
                self.voters[v].paused_until = self.voters[v].paused_until.max(until);
            } else {
                self.voters[v].cut_until = self.voters[v].cut_until.max(until);
            }
        }
        if self.rng.next().is_multiple_of(400) {
            let v = self.rng.range(0, 2) as usize;
            let until = now + self.rng.range(100, 2000);
            self.crash(v, until);
        }
        if !self.all_crashed && self.rng.next().is_multiple_of(3000) {
            // The whole mesh stops and starts again.
            self.all_crashed = true;
            let until = now + self.rng.range(100, 1500);
            for v in 0..self.voters.len() {
                self.crash(v, until);
            }
        }
        if !self.killed && self.rng.next().is_multiple_of(2000) {
            // At most one voter dies for good, and only while the other two
            // can still make a majority.
            let v = self.rng.range(0, 2) as usize;
            self.voters[v].dead = true;
            self.killed = true;
        }
    }

    fn crash(&mut self, v: usize, until: u64) {
        if self.voters[v].dead || self.voters[v].down_until > self.now {
            return;
        }
        let wall = self.wall();
        self.voters[v].crash(until, wall);
        self.crashes += 1;
        self.forget_calls_to(v);
    }

    /// Calls held by an admin that left go unanswered: the client and the
    /// workers find the next admin and send again.
    fn forget_calls_to(&mut self, v: usize) {
        for s in &mut self.submissions {
            if s.sent.is_some_and(|x| x.0 == v) {
                s.sent = None;
            }
        }
        self.acks.retain(|a| a.voter != v);
    }

    fn feed(&mut self, v: usize, input: Input) {
        let wall = self.wall();
        // Only the admin takes inputs; anything else is dropped, as a
        // node that is not admin refuses (the sender tries again).
        let _ = self.voters[v].ledger.handle(input, wall);
    }

    /// Carries out what a voter's ledger said.
    fn carry_out(&mut self, v: usize, step: super::LedgerStep) {
        // Written before anything leaves, as the node does.
        let changes = self.voters[v].ledger.take_changes();
        self.voters[v].disk.write(&changes);
        for m in step.messages {
            let at = self.now + STEP;
            self.wire.push_back((at, m));
        }
        for o in step.outputs {
            self.output(v, o);
        }
        if let Some(change) = step.office {
            if let OfficeChange::Took { term } = change {
                if let Some(&other) = self.admins.get(&term) {
                    assert_eq!(other, v, "seed {}: two admins in term {term}", self.seed);
                }
                self.admins.insert(term, v);
            }
            self.forget_calls_to(v);
        }
    }

    fn output(&mut self, v: usize, o: Output) {
        let at = self.now + STEP;
        match o {
            Output::Submitted { token, result } => {
                let Some(s) = self
                    .submissions
                    .iter_mut()
                    .find(|s| s.sent.is_some_and(|x| x.1 == token && x.0 == v))
                else {
                    return;
                };
                match result {
                    Ok(_) => {
                        self.acked.extend(s.tasks.iter().map(|t| t.id));
                        s.tasks.clear();
                    }
                    // Sent again after an acknowledgement was lost: the
                    // first one was committed.
                    Err(SubmitError::DuplicateId { .. }) => {
                        let sched = self.voters[v].ledger.scheduler();
                        let all = s.tasks.iter().all(|t| sched.status(&t.id).is_some());
                        assert!(all, "seed {}: a batch accepted in part", self.seed);
                        self.acked.extend(s.tasks.iter().map(|t| t.id));
                        s.tasks.clear();
                    }
                    Err(e) => panic!("seed {}: batch refused: {e}", self.seed),
                }
                s.sent = None;
            }
            Output::Announce(anns) => {
                for (w, node) in self.workers.iter().enumerate() {
                    let bids = anns
                        .iter()
                        .map(|a| Bid {
                            task: a.task,
                            round: a.round,
                            worker: node.spec.name.clone(),
                            skill: node.spec.skill,
                            load: node.running.len() as u32,
                            capacity: node.spec.capacity,
                            willing: (node.running.len() as u32) < node.spec.capacity,
                        })
                        .collect();
                    self.to_admin.push_back((at, v, w, ToAdmin::Bids(bids)));
                }
            }
            Output::Assign { node, assignments } => {
                let Some(w) = self.workers.iter().position(|x| x.node == node) else {
                    return;
                };
                for a in assignments {
                    self.to_worker.push_back((at, w, a));
                }
            }
            Output::Abort { node, attempts } => {
                if let Some(w) = self.workers.iter().position(|x| x.node == node) {
                    self.aborts.extend(attempts.into_iter().map(|a| (at, w, a)));
                }
            }
            Output::Cancelled { .. } | Output::Changed { .. } => {}
        }
    }

    fn deliver_raft(&mut self) {
        while self.wire.front().is_some_and(|m| m.0 <= self.now) {
            let (_, m) = self.wire.pop_front().expect("checked");
            let (from, to) = (m.from as usize - 1, m.to as usize - 1);
            let now = self.now;
            let gone = self.voters[to].dead || self.voters[to].down_until > now;
            if self.lost() || !self.voters[from].reachable(now) || gone {
                continue;
            }
            if self.voters[to].cut_until > now {
                continue;
            }
            if self.voters[to].paused_until > now {
                self.voters[to].kept.push(m);
                continue;
            }
            let wall = self.wall();
            let step = self.voters[to].ledger.receive(m, wall);
            self.carry_out(to, step);
        }
    }

    fn deliver_to_admin(&mut self) {
        while self.to_admin.front().is_some_and(|m| m.0 <= self.now) {
            let (_, v, w, msg) = self.to_admin.pop_front().expect("checked");
            if self.lost() || !self.voters[v].reachable(self.now) {
                if matches!(msg, ToAdmin::Register(_)) {
                    // The request failed: the node registers again.
                    self.workers[w].admin = None;
                }
                continue;
            }
            let node = self.workers[w].node.clone();
            let input = match msg {
                ToAdmin::Register(workers) => Input::Register { node, workers },
                ToAdmin::Bids(bids) => Input::Bids { node, bids },
                ToAdmin::Answer(task, attempt) => Input::AssignAnswer {
                    node,
                    task,
                    attempt,
                    accepted: true,
                },
                ToAdmin::Renew(held) => Input::Renew {
                    node,
                    held,
                    waiting: Vec::new(),
                },
                ToAdmin::Reports(reports) => {
                    let attempts = reports.iter().map(|r| (r.task, r.attempt)).collect();
                    let Some(term) = self.voters[v].ledger.admin() else {
                        continue;
                    };
                    self.feed(v, Input::Reports { node, reports });
                    let index = self.voters[v].ledger.applied();
                    self.acks.push(PendingAck {
                        voter: v,
                        term,
                        index,
                        worker: w,
                        attempts,
                    });
                    continue;
                }
            };
            self.feed(v, input);
        }
    }

    /// Acknowledges reports whose effects are committed, as the admin's
    /// answer to a report batch waits for.
    fn send_acks(&mut self) {
        let mut i = 0;
        while i < self.acks.len() {
            let a = &self.acks[i];
            let ledger = &self.voters[a.voter].ledger;
            if ledger.admin() != Some(a.term) {
                self.acks.swap_remove(i);
            } else if ledger.committed(a.index) && !self.lost() {
                let a = self.acks.swap_remove(i);
                for k in a.attempts {
                    self.workers[a.worker].unacked.remove(&k);
                }
            } else {
                i += 1;
            }
        }
    }

    fn client(&mut self) {
        let Some((v, term)) = self.admin() else { return };
        for i in 0..self.submissions.len() {
            let s = &self.submissions[i];
            let due = s.sent.is_none_or(|x| x.3 <= self.now || x.2 != term);
            // Batches go out one at a time, a quarter of a second apart.
            if s.tasks.is_empty() || !due || self.now < i as u64 * 250 {
                continue;
            }
            self.next_token += 1;
            let token = self.next_token;
            let tasks = s.tasks.clone();
            self.submissions[i].sent = Some((v, token, term, self.now + 2_000));
            self.feed(v, Input::Submit { token, tasks });
        }
    }

    fn run_workers(&mut self) {
        let admin = self.admin();
        let now = self.now;
        // Awards and aborts that arrived.
        while self.to_worker.front().is_some_and(|m| m.0 <= now) {
            let (_, w, a) = self.to_worker.pop_front().expect("checked");
            if self.lost() {
                continue;
            }
            let run = self.rng.range(20, 300);
            let node = &mut self.workers[w];
            node.running.insert((a.task, a.attempt), now + run);
            if let Some((v, _)) = admin {
                self.to_admin
                    .push_back((now + STEP, v, w, ToAdmin::Answer(a.task, a.attempt)));
            }
        }
        while self.aborts.front().is_some_and(|m| m.0 <= now) {
            let (_, w, key) = self.aborts.pop_front().expect("checked");
            let node = &mut self.workers[w];
            if node.running.remove(&key).is_some() {
                let report = Report {
                    task: key.0,
                    attempt: key.1,
                    worker: node.spec.name.clone(),
                    outcome: Err(crate::scheduler::Failure::retryable("stopped")),
                    run_ms: 0,
                };
                node.unacked.insert(key, report);
            }
        }
        for w in 0..self.workers.len() {
            let node = &mut self.workers[w];
            let done: Vec<(TaskId, u32)> = node
                .running
                .iter()
                .filter(|r| *r.1 <= now)
                .map(|r| *r.0)
                .collect();
            for key in done {
                node.running.remove(&key);
                let report = Report {
                    task: key.0,
                    attempt: key.1,
                    worker: node.spec.name.clone(),
                    outcome: Ok(output_of(key.0, key.1)),
                    run_ms: 10,
                };
                node.unacked.insert(key, report);
            }
            let Some((v, term)) = admin else { continue };
            let at = now + STEP;
            if node.admin != Some((v, term)) {
                // First contact with a new admin: who we are, then what
                // we hold.
                node.admin = Some((v, term));
                node.next_renew = now;
                self.to_admin
                    .push_back((at, v, w, ToAdmin::Register(vec![node.spec.clone()])));
            }
            if node.next_renew <= now {
                node.next_renew = now + RENEW;
                let held = node.running.keys().chain(node.unacked.keys()).copied().collect();
                self.to_admin.push_back((at, v, w, ToAdmin::Renew(held)));
                if !node.unacked.is_empty() {
                    let reports = node.unacked.values().cloned().collect();
                    self.to_admin.push_back((at, v, w, ToAdmin::Reports(reports)));
                }
            }
        }
    }

    /// Every batch acknowledged, every acknowledged task final on the
    /// admin, and nothing in flight.
    fn settled(&self) -> bool {
        if self.now < FAULTS_UNTIL {
            return false;
        }
        let Some((v, _)) = self.admin() else { return false };
        let sched = self.voters[v].ledger.scheduler();
        self.submissions.iter().all(|s| s.tasks.is_empty())
            && self
                .acked
                .iter()
                .all(|id| sched.status(id).is_some_and(|s| s.is_final()))
            && self
                .workers
                .iter()
                .all(|w| w.running.is_empty() && w.unacked.is_empty())
            && self.voters.iter().filter(|x| !x.dead).all(|x| {
                x.ledger.applied() == self.voters[v].ledger.applied()
                    && x.ledger.committed(x.ledger.applied())
            })
    }

    fn check_admins(&self) {
        let mut terms = BTreeSet::new();
        for (i, v) in self.voters.iter().enumerate() {
            if let Some(t) = v.ledger.admin() {
                assert!(
                    terms.insert(t),
                    "seed {}: two admins in term {t} (voter {i})",
                    self.seed
                );
            }
        }
    }

    fn check_end(&self) {
        let live: Vec<usize> = (0..3).filter(|&i| !self.voters[i].dead).collect();
        let admins: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| self.voters[i].ledger.admin().is_some())
            .collect();
        assert_eq!(
            admins.len(),
            1,
            "seed {}: admins at the end: {admins:?}",
            self.seed
        );
        let admin = self.voters[admins[0]].ledger.scheduler();
        let wall = self.wall();
        let submitted: usize = self.acked.len();
        assert!(submitted > 0, "seed {}: nothing was submitted", self.seed);
        for id in &self.acked {
            let r = admin.report_of(id, wall).expect("an acknowledged task is kept");
            assert_eq!(
                r.status,
                TaskStatus::Completed,
                "seed {}: {} {r:?}",
                self.seed,
                r.name
            );
            let completed = r
                .history
                .iter()
                .filter(|h| h.outcome == AttemptOutcome::Completed);
            assert_eq!(
                completed.count(),
                1,
                "seed {}: {} completed twice",
                self.seed,
                r.name
            );
            let last = r.history.last().expect("ran").number;
            assert_eq!(
                r.output,
                Some(output_of(*id, last)),
                "seed {}: {}",
                self.seed,
                r.name
            );
            for &i in &live {
                let other = self.voters[i].ledger.scheduler().report_of(id, wall);
                let other = other.unwrap_or_else(|| panic!("seed {}: voter {i} lacks {}", self.seed, r.name));
                assert_eq!(
                    (&other.status, &other.output, other.attempts),
                    (&r.status, &r.output, r.attempts),
                    "seed {}: voter {i} disagrees on {}",
                    self.seed,
                    r.name
                );
            }
        }
    }

    fn state(&self) -> String {
        let voters: Vec<String> = self
            .voters
            .iter()
            .map(|v| {
                format!(
                    "admin {:?} term {} commit {} dead {}",
                    v.ledger.admin(),
                    v.ledger.replica().term(),
                    v.ledger.replica().commit_index(),
                    v.dead
                )
            })
            .collect();
        let waiting = self.submissions.iter().filter(|s| !s.tasks.is_empty()).count();
        let unfinished = self
            .admin()
            .map(|(v, _)| self.voters[v].ledger.scheduler().unfinished());
        format!("voters {voters:?}, batches unacknowledged {waiting}, unfinished on the admin {unfinished:?}")
    }
}

/// How many seeds the simulation runs: `TASKMESH_SIM_SEEDS`, default 200.
fn seeds() -> u64 {
    std::env::var("TASKMESH_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

#[test]
fn every_acknowledged_task_completes_once_across_failovers() {
    // TASKMESH_SIM_SEED=n runs the one seed a failure named.
    let one = std::env::var("TASKMESH_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let seeds = one.map_or(0..seeds(), |s| s..s + 1);
    let runs = seeds.end - seeds.start;
    let (mut failovers, mut kills, mut installs, mut crashes, mut whole) = (0, 0, 0, 0, 0);
    for seed in seeds {
        let mut sim = Sim::new(seed);
        sim.run();
        failovers += sim.admins.len() as u64 - 1;
        kills += u64::from(sim.killed);
        crashes += sim.crashes;
        whole += u64::from(sim.all_crashed);
        installs += sim
            .voters
            .iter()
            .map(|v| v.ledger.snapshots_installed())
            .sum::<u64>();
    }
    // The faults must really happen, or the test proves nothing.
    if runs >= 100 {
        assert!(failovers >= runs, "only {failovers} failovers in {runs} runs");
        assert!(kills >= runs / 10, "only {kills} voters killed in {runs} runs");
        assert!(crashes >= runs, "only {crashes} voters crashed in {runs} runs");
        assert!(
            whole >= runs / 10,
            "the whole mesh crashed in only {whole} of {runs} runs"
        );
        assert!(
            installs >= runs / 10,
            "only {installs} snapshots installed in {runs} runs"
        );
    }
}

#[test]
fn a_quiet_mesh_keeps_its_first_admin_and_runs_everything() {
    let mut sim = Sim::new(7);
    sim.quiet = true;
    sim.run();
    assert_eq!(sim.admins.len(), 1, "one admin, never replaced: {:?}", sim.admins);
}

/// A few ledgers that grow from one founder by joins, on a network that
/// delivers everything at once except to and from the dead.
struct Growing {
    ledgers: BTreeMap<u64, Ledger>,
    dead: BTreeSet<u64>,
    now: u64,
    /// Replicas that asked to join; with `ask_once`, none asks again.
    asked: BTreeSet<u64>,
    ask_once: bool,
}

impl Growing {
    fn cfg(id: u64) -> LedgerConfig {
        LedgerConfig {
            replica: ReplicaConfig {
                id,
                voters: Vec::new(),
                election_ticks: 10,
                heartbeat_ticks: 2,
                durable: false,
            },
            voter_timeout: Duration::from_secs(2),
            // Small, so that the founder compacts while alone (without
            // encoding its state) and a real snapshot is taken for joiners.
            snapshot_every: 2,
            ..LedgerConfig::default()
        }
    }

    /// Replica 3 prefers to be admin (priority 9; the others 0).
    fn cfg_preferring_3(id: u64) -> LedgerConfig {
        LedgerConfig {
            priority_of: |c| if c == b"r3" { 9 } else { 0 },
            ..Self::cfg(id)
        }
    }

    fn found() -> Self {
        Self::found_with(Self::cfg)
    }

    /// The founder and replica 2, both voters: a change then takes a round
    /// trip to commit (a lone founder commits its own at once).
    fn two_voters() -> Self {
        let mut mesh = Self::found();
        mesh.ledgers.insert(2, Ledger::new(Self::cfg(2)).expect("valid"));
        mesh.run(1_000);
        assert_eq!(mesh.voters(), [1, 2]);
        mesh
    }

    fn found_with(cfg: fn(u64) -> LedgerConfig) -> Self {
        let (ledger, step) = Ledger::found(cfg(1), b"r1".to_vec(), Duration::ZERO).expect("founds");
        assert_eq!(
            step.office,
            Some(OfficeChange::Took {
                term: ledger.replica().term()
            })
        );
        Growing {
            ledgers: BTreeMap::from([(1, ledger)]),
            dead: BTreeSet::new(),
            now: 0,
            asked: BTreeSet::new(),
            ask_once: false,
        }
    }

    fn admin(&self) -> u64 {
        let admins: Vec<u64> = self
            .ledgers
            .iter()
            .filter(|(id, l)| !self.dead.contains(id) && l.admin().is_some())
            .map(|(id, _)| *id)
            .collect();
        assert!(admins.len() <= 1, "admins {admins:?}");
        admins.first().copied().unwrap_or(0)
    }

    fn deliver(&mut self, mut queue: VecDeque<Message>) {
        let wall = Duration::from_millis(self.now);
        while let Some(m) = queue.pop_front() {
            if self.dead.contains(&m.to) || self.dead.contains(&m.from) {
                continue;
            }
            let Some(l) = self.ledgers.get_mut(&m.to) else {
                continue;
            };
            queue.extend(l.receive(m, wall).messages);
        }
    }

    /// Runs `ms` of ticks, every 50 ms; new replicas ask to join.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms / 50 {
            self.now += 50;
            let wall = Duration::from_millis(self.now);
            let mut queue = VecDeque::new();
            let admin = self.admin();
            for (id, l) in &mut self.ledgers {
                if !self.dead.contains(id) {
                    queue.extend(l.tick(wall).messages);
                }
            }
            let joining: Vec<u64> = self
                .ledgers
                .iter()
                .filter(|(id, l)| !self.dead.contains(id) && !l.replica().learners().contains(id))
                .filter(|(id, l)| !l.replica().voters().contains(id))
                .filter(|(id, _)| !(self.ask_once && self.asked.contains(id)))
                .map(|(id, _)| *id)
                .collect();
            self.asked.extend(&joining);
            if let Some(a) = self.ledgers.get_mut(&admin) {
                for id in joining {
                    // While another change commits, it asks again next tick.
                    if let Ok(step) = a.join(id, format!("r{id}").into_bytes(), wall) {
                        queue.extend(step.messages);
                    }
                }
            }
            self.deliver(queue);
        }
    }

    fn voters(&self) -> Vec<u64> {
        let mut v = self.ledgers[&self.admin()].replica().voters();
        v.sort();
        v
    }
}

#[test]
fn joiners_become_voters_up_to_three_and_a_dead_voter_is_replaced() {
    let mut mesh = Growing::found();
    for id in 2..=4 {
        mesh.ledgers
            .insert(id, Ledger::new(Growing::cfg(id)).expect("valid"));
    }
    mesh.run(3_000);
    assert_eq!(mesh.admin(), 1, "the founder leads");
    let voters = mesh.voters();
    assert_eq!(voters.len(), 3, "three voters: {voters:?}");
    let learner = (2..=4).find(|id| !voters.contains(id)).expect("one left over");
    assert_eq!(mesh.ledgers[&1].replica().learners(), [learner]);
    // Every replica knows every member's address, from the log.
    for (id, l) in &mesh.ledgers {
        assert_eq!(
            l.members().get(&learner),
            Some(&format!("r{learner}").into_bytes()),
            "replica {id}: {:?}",
            l.members()
        );
    }
    // A voter dies: after the timeout the learner takes its place.
    let victim = voters[1];
    mesh.dead.insert(victim);
    mesh.run(4_000);
    let mut want: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|&v| v != victim)
        .chain([learner])
        .collect();
    want.sort();
    assert_eq!(mesh.voters(), want);
    // Then the admin dies: the two voters left elect one of them.
    mesh.dead.insert(1);
    mesh.run(3_000);
    let left: Vec<u64> = want.into_iter().filter(|&v| v != 1).collect();
    assert!(
        left.contains(&mesh.admin()),
        "a new admin among {left:?}: {}",
        mesh.admin()
    );
}

/// Replicas that ask to join at once, while the admin's first change
/// commits, each ask once: the admin keeps the ones it cannot add yet and
/// adds them in turn, so none depends on asking again.
#[test]
fn joiners_that_ask_once_together_are_all_admitted_in_turn() {
    let mut mesh = Growing::two_voters();
    mesh.ask_once = true;
    for id in 3..=5 {
        mesh.ledgers
            .insert(id, Ledger::new(Growing::cfg(id)).expect("valid"));
    }
    mesh.run(3_000);
    assert_eq!(mesh.asked, BTreeSet::from([2, 3, 4, 5]));
    let admin = &mesh.ledgers[&1];
    let mut members = admin.replica().voters();
    members.extend(admin.replica().learners());
    members.sort();
    assert_eq!(members, [1, 2, 3, 4, 5], "every joiner is a member");
    assert_eq!(mesh.voters().len(), 3);
    assert!(admin.waiting_joins.is_empty());
}

/// A join waits at most `voter_timeout`, and the waiting ones are bounded;
/// a replica that asks again is kept once.
#[test]
fn waiting_joins_are_bounded_deduplicated_and_expire() {
    let mut mesh = Growing::two_voters();
    // With voter 2 silent, no change can commit: the first join proposes
    // one, and the rest wait behind it.
    mesh.dead.insert(2);
    let wall = Duration::from_millis(mesh.now);
    let founder = mesh.ledgers.get_mut(&1).expect("founder");
    founder.join(3, b"r3".to_vec(), wall).expect("admin");
    let first = 4;
    let last = first + super::ledger::WAITING_JOINS as u64 + 9;
    for id in first..=last {
        founder.join(id, b"rx".to_vec(), wall).expect("admin");
        founder.join(id, b"rx".to_vec(), wall).expect("admin");
    }
    let waiting: Vec<u64> = founder.waiting_joins.iter().map(|w| w.0).collect();
    let kept: Vec<u64> = (last + 1 - super::ledger::WAITING_JOINS as u64..=last).collect();
    assert_eq!(waiting, kept, "the newest, once each");
    // Past `voter_timeout` none waits any longer.
    founder.tick(wall + Duration::from_millis(1_900));
    assert_eq!(founder.waiting_joins.len(), super::ledger::WAITING_JOINS);
    founder.tick(wall + Duration::from_secs(2));
    assert!(founder.waiting_joins.is_empty());
}

#[test]
fn a_founder_alone_encodes_no_snapshot_yet_a_joiner_gets_the_whole_ledger() {
    let mut mesh = Growing::found();
    let wall = Duration::ZERO;
    let founder = mesh.ledgers.get_mut(&1).expect("founder");
    for token in 0..5 {
        let tasks = vec![Task::new(format!("t{token}"), "w", 1)];
        founder
            .handle(Input::Submit { token, tasks }, wall)
            .expect("admin");
        let _ = founder.flush(wall);
    }
    assert!(
        founder.replica().snapshot_is_placeholder(),
        "compacted, nothing encoded"
    );
    mesh.ledgers
        .insert(2, Ledger::new(Growing::cfg(2)).expect("valid"));
    mesh.run(2_000);
    let ids = mesh.ledgers[&1].scheduler().recent(10);
    assert_eq!(ids.len(), 5);
    for id in &ids {
        assert!(
            mesh.ledgers[&2].scheduler().status(id).is_some(),
            "the joiner lacks {id}"
        );
    }
    assert!(!mesh.ledgers[&1].replica().snapshot_is_placeholder());
}

#[test]
fn a_voter_back_without_its_log_is_replaced_at_once_not_after_the_timeout() {
    let mut mesh = Growing::found();
    for id in 2..=3 {
        mesh.ledgers
            .insert(id, Ledger::new(Growing::cfg(id)).expect("valid"));
    }
    mesh.run(2_000);
    assert_eq!(mesh.voters(), [1, 2, 3]);
    // Voter 3's node restarts without its log, as replica 5.
    mesh.dead.insert(3);
    mesh.ledgers
        .insert(5, Ledger::new(Growing::cfg(5)).expect("valid"));
    mesh.ledgers.get_mut(&1).expect("admin").supersede(3);
    // Well within the 2 s voter timeout.
    mesh.run(600);
    assert_eq!(mesh.voters(), [1, 2, 5]);
}

/// After a run, two voters are lost for good; the third, recovered from
/// its disk alone, leads a new ledger that holds every acknowledged task
/// as the mesh had it.
#[test]
fn a_voter_recovered_alone_from_its_disk_keeps_every_committed_task() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed);
        sim.run();
        let wall = sim.wall();
        let survivor = (0..3).find(|&i| !sim.voters[i].dead).expect("a live voter");
        let v = &sim.voters[survivor];
        let mut cfg = v.cfg.clone();
        cfg.replica.id = 99;
        let store = v.disk.reopen().expect("a consistent log");
        let (ledger, step) = Ledger::recover(cfg, store, b"me".to_vec(), 41, wall).expect("recovered");
        assert_eq!(ledger.superseded(), [41]);
        assert_eq!(
            ledger.admin(),
            Some(ledger.replica().term()),
            "seed {seed}: it leads at once"
        );
        assert_eq!(
            step.office,
            Some(OfficeChange::Took {
                term: ledger.replica().term()
            })
        );
        assert_eq!(ledger.replica().voters(), [99]);
        let before = v.ledger.scheduler();
        for id in &sim.acked {
            let (old, new) = (before.report_of(id, wall), ledger.scheduler().report_of(id, wall));
            let (old, new) = (old.expect("known before"), new.expect("known after"));
            assert_eq!((old.status, old.output), (new.status, new.output), "seed {seed}");
        }
    }
}

#[test]
fn the_preferred_replica_is_promoted_first_and_then_leads() {
    let mut mesh = Growing::found_with(Growing::cfg_preferring_3);
    for id in 2..=4 {
        let l = Ledger::new(Growing::cfg_preferring_3(id)).expect("valid");
        mesh.ledgers.insert(id, l);
    }
    mesh.run(3_000);
    assert_eq!(mesh.voters().len(), 3);
    assert!(mesh.voters().contains(&3), "the preferred learner was promoted");
    assert_eq!(
        mesh.admin(),
        3,
        "the founder handed its office to the preferred voter"
    );
    // Stopping, the preferred admin hands its office to a voter that holds
    // the whole log; nobody is preferred over it, so it stays with that one.
    let wall = Duration::from_millis(mesh.now);
    let step = mesh
        .ledgers
        .get_mut(&3)
        .unwrap()
        .hand_over(wall)
        .expect("another voter");
    mesh.deliver(step.messages.into());
    mesh.dead.insert(3);
    mesh.run(1_000);
    let next = mesh.admin();
    assert!(next != 0 && next != 3, "a new admin: {next}");
}

/// Encoding the whole state for a snapshot costs as much as the state is
/// large: a snapshot waits until the log after the latest one holds half
/// its bytes, however many entries that takes, so that a large state is
/// not encoded again every few entries.
#[test]
fn a_snapshot_waits_for_log_bytes_worth_half_the_latest() {
    let mut mesh = Growing::found();
    mesh.ledgers
        .insert(2, Ledger::new(Growing::cfg(2)).expect("valid"));
    mesh.run(2_000);
    let mut token = 0;
    let mut submit = |mesh: &mut Growing, count: usize| {
        let wall = Duration::from_millis(mesh.now);
        let admin = mesh.ledgers.get_mut(&1).expect("admin");
        let tasks = (0..count)
            .map(|i| Task::new(format!("t{token}-{i}"), "w", 1))
            .collect();
        admin.handle(Input::Submit { token, tasks }, wall).expect("admin");
        let _ = admin.flush(wall);
        token += 1;
        mesh.run(50);
    };
    // A large state, then entries far smaller than it.
    submit(&mut mesh, 2_000);
    let (mut at, mut size) = {
        let (i, d) = mesh.ledgers[&1].replica().snapshot();
        (i, d.len())
    };
    let mut waited = 0;
    let mut taken = 0;
    for _ in 0..400 {
        let before = mesh.ledgers[&1].replica().log_bytes();
        submit(&mut mesh, 1);
        let (i, d) = mesh.ledgers[&1].replica().snapshot();
        if i == at {
            waited += 1;
            continue;
        }
        assert!(
            before >= size / 2,
            "a snapshot of {size} bytes was followed by one after {before} bytes of log"
        );
        taken += 1;
        (at, size) = (i, d.len());
    }
    assert!(size > 100_000, "the state is large: {size} bytes");
    assert!(
        waited > 100,
        "snapshots wait for bytes, not entries alone: {waited}"
    );
    assert!(taken >= 1, "and come once the bytes are there");
}
