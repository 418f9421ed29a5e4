//! Building a random run: the workers, the DAG and its batches, the
//! profile's faults on each task, and cancellations at random times.

use super::*;

impl Sim {
    pub(super) fn new(seed: u64, p: Profile) -> Self {
        let mut rng = Rng(seed);
        let mut cfg = SchedulerConfig {
            bid_window: ms(5),
            no_worker_timeout: ms(300),
            auction_backoff: ms(10),
            max_auction_backoff: ms(40),
            lease: Duration::from_secs(3600),
            retry_delay: ms(20),
            max_retry_delay: ms(80),
            max_scan: [1, 2, 4096][rng.range(0, 2) as usize],
            ..SchedulerConfig::default()
        };
        let lease = p.lease.map(|(lo, hi)| rng.range(lo, hi));
        if let Some(l) = lease {
            cfg.lease = ms(l);
        }
        if p.priorities {
            cfg.priority_ageing = ms(rng.range(5, 100));
        }
        if p.retention {
            cfg.retention = Retention {
                max_tasks: rng.range(3, 20) as usize,
                max_age: ms(rng.range(50, 400)),
                max_bytes: rng.range(40, 400) as usize,
                min_age: ms(rng.range(0, 30)),
                ..Retention::default()
            };
        }
        let mut s = Scheduler::new(cfg.clone());
        s.record_events();
        let mut sim = Sim {
            rng,
            p,
            s,
            replica: Scheduler::new(cfg.clone()),
            keeper: Scheduler::new(cfg),
            events: Vec::new(),
            steps: 0,
            now: Duration::ZERO,
            queue: BTreeMap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            online: BTreeSet::new(),
            lease,
            held: BTreeMap::new(),
            paused: BTreeSet::new(),
            dropped: BTreeSet::new(),
            tasks: BTreeMap::new(),
            submitted: BTreeSet::new(),
            refused: BTreeSet::new(),
            pending_submits: 0,
            pending_cancels: 0,
            cancelled: BTreeSet::new(),
            evicted: BTreeSet::new(),
            current: BTreeMap::new(),
            awards: BTreeMap::new(),
            assign_nodes: BTreeMap::new(),
            changes: BTreeMap::new(),
            cover: BTreeMap::new(),
            log: Vec::new(),
        };
        sim.make_workers();
        sim.make_tasks();
        sim.make_cancels();
        sim
    }

    /// One to three nodes with up to three workers each, of roles "a" and
    /// "b" (nobody serves role "c").
    pub(super) fn make_workers(&mut self) {
        for n in 0..self.rng.range(1, 4) {
            let node = NodeId::new(format!("node{n}"));
            let workers: Vec<WorkerSpec> = (0..self.rng.range(1, 3))
                .map(|i| WorkerSpec {
                    name: format!("w{i}"),
                    role: if self.rng.percent(50) { "a" } else { "b" }.into(),
                    skill: self.rng.range(3, 10) as u32,
                    capacity: self.rng.range(1, 3) as u32,
                    // Half the workers take tasks unasked up to a
                    // difficulty, sometimes over their skill (capped).
                    standing: self.rng.percent(50).then(|| self.rng.range(1, 12) as u32),
                    queue: self.rng.range(0, 3) as u32,
                })
                .collect();
            self.nodes.insert(node.clone(), workers.clone());
            // Some nodes join only after work arrived.
            let delay = if self.rng.percent(30) {
                self.rng.range(0, 100)
            } else {
                0
            };
            self.send(delay, Msg::Rejoin(node.clone()));
            if let Some(lease) = self.lease {
                self.send(lease / 3, Msg::RenewTick(node));
            }
        }
    }

    /// A random DAG (dependencies only on earlier tasks) in one to three
    /// batches, each listed in random order.
    pub(super) fn make_tasks(&mut self) {
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
            self.add_faults(&mut t);
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

    /// The profile's random task settings.
    pub(super) fn add_faults(&mut self, t: &mut Task) {
        let (p, rng) = (self.p, &mut self.rng);
        if p.priorities {
            t.priority = rng.range(0, 6) as i32 - 3;
        }
        if !t.dependencies.is_empty() && rng.percent(p.triggers) {
            t.trigger = [Trigger::OneFailed, Trigger::AllDone][rng.range(0, 1) as usize];
        }
        if rng.percent(p.retries) {
            t.retries = Some(rng.range(1, 3) as u32);
        }
        if rng.percent(p.max_attempts) {
            t.max_attempts = Some(rng.range(1, 3) as u32);
        }
        if rng.percent(p.queue_timeouts) {
            t.queue_timeout_ms = Some(rng.range(5, 100));
        }
        if rng.percent(p.deadlines) {
            t.deadline_ms = Some(rng.range(20, 400));
        }
    }

    /// Cancellations of one task each (sometimes with an unknown id too) at
    /// random times, whatever the task is doing then.
    pub(super) fn make_cancels(&mut self) {
        for _ in 0..self.rng.range(0, self.p.cancels) {
            let n = self.rng.range(1, self.tasks.len() as u64) as u128;
            let mut ids = vec![tid(n)];
            if self.rng.percent(20) {
                ids.push(tid(STRANGER));
            }
            let at = self.rng.range(0, 400);
            self.pending_cancels += 1;
            self.send(at, Msg::Cancel(ids));
        }
    }
}
