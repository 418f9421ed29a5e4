//! Driving a run: every input goes through `step`, which records the
//! events, checks the step and plays the simulated workers' side of the
//! outputs; messages wait in a queue ordered by delivery time.

use super::*;

impl Sim {
    pub(super) fn send(&mut self, delay: u64, msg: Msg) {
        self.queue.insert((self.now + ms(delay), self.seq), msg);
        self.seq += 1;
    }

    pub(super) fn delay(&mut self) -> u64 {
        self.rng.range(0, self.p.max_delay)
    }

    pub(super) fn count(&mut self, what: &'static str) {
        *self.cover.entry(what).or_default() += 1;
    }

    /// Feeds one input, keeps its events, checks the step and plays the
    /// simulated workers' side of its outputs.
    pub(super) fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.s.handle(input, self.now, &mut out);
        let events = self.s.take_events();
        for e in &events {
            if let Event::AttemptAwarded { task, .. } = e {
                // The keeper is where the ledger was when the award was made.
                self.check_rule_at_award(task);
            }
            self.replica.apply(e);
            if !matches!(e, Event::TasksEvicted { .. }) {
                self.keeper.apply(e);
            }
        }
        for e in &events {
            self.note_event(e);
        }
        for o in &out {
            self.log.push(format!("{:?} {o:?}", self.now));
            match o {
                Output::Changed { id, status } => self.changes.entry(*id).or_default().push(status.clone()),
                // Known before the step's checks: a task may end, and even be
                // evicted, in the step that submits it.
                Output::Submitted { result: Ok(ids), .. } => self.submitted.extend(ids.iter().copied()),
                _ => {}
            }
        }
        self.check_step(&events, &out);
        self.events.extend(events);
        self.steps += 1;
        if self.steps.is_multiple_of(64) {
            let (a, b) = (
                render_ledger(&self.replica, self.now),
                render_ledger(&self.s, self.now),
            );
            assert_same_text(&a, &b, "ledger rebuilt step by step");
        }
        for o in out.clone() {
            self.react(o);
        }
        out
    }

    /// Which attempt holds each task, from one event.
    pub(super) fn note_event(&mut self, e: &Event) {
        match e {
            Event::AttemptAwarded {
                task,
                attempt,
                worker,
                ..
            } => {
                let node = self.s.workers[*worker as usize].node.clone();
                self.current.insert(*task, (node, *attempt));
            }
            Event::AttemptRefused { task, attempt } | Event::AttemptFinished { task, attempt, .. }
                if self.current.get(task).is_some_and(|c| c.1 == *attempt) =>
            {
                self.current.remove(task);
            }
            Event::TaskEnded { task, .. } => {
                self.current.remove(task);
            }
            _ => {}
        }
    }

    /// The simulated workers' side of each output.
    pub(super) fn react(&mut self, o: Output) {
        match o {
            Output::Submitted { .. } | Output::Changed { .. } | Output::Cancelled { .. } => {}
            Output::Abort { node, attempts } => {
                for run in attempts {
                    let current = self.current.get(&run.0) == Some(&(node.clone(), run.1));
                    assert!(!current, "{run:?} aborted although it is current");
                    if let Some(held) = self.held.get_mut(&node) {
                        held.remove(&run);
                    }
                    // An aborted worker may still send what it had.
                    if self.rng.percent(50) {
                        self.dropped.insert(run);
                    }
                }
            }
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
                    self.assign_nodes.insert((a.task, a.attempt), node.clone());
                    let take = !self.rng.percent(self.p.refuse);
                    let d = self.delay();
                    self.send(d, Msg::Answer(node.clone(), a.task, a.attempt, take));
                    if take {
                        self.run(&node, &a, d);
                    }
                    self.awards.entry(a.task).or_default().push((a, take));
                }
            }
        }
    }

    /// A worker runs a task it took (`d`: its answer's delay) and reports.
    pub(super) fn run(&mut self, node: &NodeId, a: &Assignment, d: u64) {
        let mut outcome = if !self.rng.percent(self.p.fail) {
            Ok(Payload::from_bytes(output_bytes(a.task, a.attempt)))
        } else if self.rng.percent(self.p.permanent) {
            Err(Failure::permanent("broken"))
        } else {
            Err(Failure::retryable("boom"))
        };
        let mut run = d + self.delay();
        if let Some(lease) = self.lease.filter(|_| self.rng.percent(self.p.long_runs)) {
            run += self.rng.range(lease, 3 * lease);
        }
        // The worker enforces the execution timeout.
        if let Some(limit) = a.timeout_ms.filter(|&t| run > d + t) {
            run = d + limit;
            outcome = Err(Failure {
                timeout_ms: Some(limit),
                ..Failure::retryable("timed out")
            });
        }
        let mut resume = self.now;
        if let Some(lease) = self.lease.filter(|_| self.rng.percent(self.p.pause)) {
            // Stops renewing; wakes up after its lease ran out.
            let pause = lease + self.rng.range(1, lease);
            resume = self.now + ms(pause);
            run = pause + self.delay();
            self.paused.insert((a.task, a.attempt));
        }
        let held = self.held.entry(node.clone()).or_default();
        held.insert((a.task, a.attempt), resume);
        let r = Report {
            task: a.task,
            attempt: a.attempt,
            worker: a.worker.clone(),
            outcome,
            run_ms: run,
        };
        self.send(run, Msg::Report(node.clone(), r));
    }

    pub(super) fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Submit(batch) => self.submit(batch),
            Msg::Bids(node, bids) => {
                self.step(Input::Bids { node, bids });
            }
            Msg::Answer(node, task, attempt, accepted) => {
                self.step(Input::AssignAnswer {
                    node,
                    task,
                    attempt,
                    accepted,
                });
            }
            Msg::Report(node, r) => self.report(node, r),
            Msg::Rejoin(node) => {
                self.online.insert(node.clone());
                let workers = self.nodes[&node].clone();
                self.step(Input::Register { node, workers });
            }
            Msg::RenewTick(node) => {
                let lease = self.lease.expect("renewals only with leases");
                self.send(lease / 3, Msg::RenewTick(node.clone()));
                let held = self.held.get(&node).into_iter().flatten();
                let awake: Vec<Run> = held
                    .filter(|(_, &r)| r <= self.now)
                    .map(|(&run, _)| run)
                    .collect();
                if self.online.contains(&node) && !awake.is_empty() {
                    let d = self.delay();
                    self.send(d, Msg::Renew(node, awake));
                }
            }
            Msg::Renew(node, held) => self.renew(node, held),
            Msg::Cancel(ids) => self.cancel(ids),
        }
        if self.rng.percent(self.p.churn) && !self.online.is_empty() {
            let i = self.rng.range(0, self.online.len() as u64 - 1) as usize;
            let node = self.online.iter().nth(i).unwrap().clone();
            self.online.remove(&node);
            // The node crashed: what it ran is gone (reports already on
            // their way still arrive).
            self.held.remove(&node);
            self.step(Input::NodeLeft(node.clone()));
            let back = self.rng.range(1, 400);
            self.send(back, Msg::Rejoin(node));
        }
    }

    /// Runs until every task is final and every request answered, ticking
    /// exactly when asked to.
    pub(super) fn run_all(&mut self) {
        loop {
            assert!(self.now < Duration::from_secs(120), "did not settle");
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
            if self.pending_submits + self.pending_cancels == 0 && self.s.unfinished() == 0 {
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
    }
}
